/**
 * The production storage layout (Pulumi.prod.yaml) as validated config and
 * as the plain plans the storage templates take, plus the lab's export
 * (Pulumi.lab.yaml: a virtual disk), a variant on sparse files and an
 * ssh:// sync variant.
 */
import { join } from "node:path";
import { DEFAULT_HEALTH } from "../config/health";
import { loadStack } from "../config/load";
import { ExportConfig, FleetConfig, HostConfig, MountConfig, SyncConfig } from "../config/types";
import { SftpPlan } from "../templates/sftp";
import { MountPlan } from "../templates/sshfs";
import { SyncPlan } from "../templates/unison";
import { SnapshotPlan, ZfsPlan } from "../templates/zfs";
import { fakeBytes } from "../offline/mockRuntime";
import { UNBOOTED } from "../lab/fleet";

/** A well-formed ed25519 public key line whose key bytes derive from `seed`. */
export function fakePublicKey(seed: string, comment = seed): string {
  const header = Buffer.from("0000000b7373682d6564323535313900000020", "hex");
  return `ssh-ed25519 ${Buffer.concat([header, fakeBytes(seed, 32)]).toString("base64")} ${comment}`;
}

function hcloudHost(name: string, extra: Partial<HostConfig> = {}): HostConfig {
  return {
    name,
    hcloud: { serverType: "cx23", location: "nbg1", image: "debian-12" },
    wireguard: "kernel",
    keyRotation: "",
    routes: [],
    ...extra,
  };
}

/** The `swarm:` config of `Pulumi.<stack>.yaml` as validation returns it, after `edit` changed the raw values. */
function validatedStack(
  stack: string,
  edit: (raw: Record<string, unknown>) => Record<string, unknown> = (raw) => raw,
): FleetConfig {
  return loadStack(stack, { dir: join(__dirname, ".."), pinHostKeys: UNBOOTED, edit }).config;
}

const PROD = validatedStack("prod");

export const PROD_EXPORT: ExportConfig = PROD.exports[0];

/** The lab's export: OpenZFS on a virtual disk of the VM. */
export const LAB_EXPORT: ExportConfig = validatedStack("lab").exports[0];

/** The lab's export on a pool of sparse files that the script creates (pool.fileSize). */
export const FILE_EXPORT: ExportConfig = validatedStack("lab", (raw) => {
  const [exported] = raw.exports as Record<string, unknown>[];
  const pool = { name: "tank", devices: ["/var/lib/swarm/tank.img"], fileSize: "1G" };
  return { ...raw, exports: [{ ...exported, pool }] };
}).exports[0];

export const PROD_MOUNTS: readonly MountConfig[] = PROD.mounts;

export const PROD_SYNC: SyncConfig = PROD.syncs[0];

/** The same wiki, reached with unison's ssh:// mode from a host that does not mount the export. */
export const SSH_SYNC: SyncConfig = {
  ...PROD_SYNC,
  host: "archive",
  name: "wiki-copy",
  local: "/srv/wiki",
  remote: { export: "meshfs", path: "wiki" },
  user: "root",
  watch: true,
};

export const STORAGE_FLEET: FleetConfig = {
  hosts: [
    hcloudHost("anchor", {
      meshAddress: "10.8.0.1",
      hcloud: { serverType: "cx23", location: "nbg1", image: "debian-12", volumeSize: 50 },
    }),
    hcloudHost("satellite", { meshAddress: "10.8.0.2" }),
    hcloudHost("hetzner-native", { meshAddress: "10.8.0.3" }),
  ],
  mesh: { cidr: "10.8.0.0/24", listenPort: 51820, topology: "hub", hub: "anchor" },
  admin: { sshPublicKey: fakePublicKey("admin"), sshSourceCidrs: ["198.51.100.0/24"] },
  exports: [PROD_EXPORT],
  mounts: PROD_MOUNTS,
  syncs: [PROD_SYNC],
  health: DEFAULT_HEALTH,
};

export const VOLUME_DEVICE = "/dev/disk/by-id/scsi-0HC_Volume_1001";

export const PROD_ZFS: ZfsPlan = {
  host: "anchor",
  exportName: "meshfs",
  pool: "tank",
  devices: [VOLUME_DEVICE],
  dataset: PROD_EXPORT.dataset,
  mountpoint: PROD_EXPORT.mountpoint,
  properties: PROD_EXPORT.properties,
};

export const LAB_ZFS: ZfsPlan = {
  ...PROD_ZFS,
  devices: LAB_EXPORT.pool.devices,
  properties: LAB_EXPORT.properties,
};

export const FILE_ZFS: ZfsPlan = {
  ...LAB_ZFS,
  devices: FILE_EXPORT.pool.devices,
  fileSize: FILE_EXPORT.pool.fileSize,
};

export const PROD_SNAPSHOTS: SnapshotPlan = {
  exportName: "meshfs",
  dataset: PROD_EXPORT.dataset,
  interval: PROD_EXPORT.snapshots.interval,
  keep: PROD_EXPORT.snapshots.keep,
};

export const PROD_SFTP: SftpPlan = {
  host: "anchor",
  exportName: "meshfs",
  user: "meshfs",
  meshAddress: "10.8.0.1",
  mountpoint: "/tank/meshfs/state",
  clients: [
    { name: "satellite", meshAddress: "10.8.0.2", publicKey: fakePublicKey("meshfs-satellite") },
    { name: "hetzner-native", meshAddress: "10.8.0.3", publicKey: fakePublicKey("meshfs-hetzner-native") },
  ],
  unisonClients: [],
  directories: ["wiki"],
};

export const SSH_SFTP: SftpPlan = {
  ...PROD_SFTP,
  unisonClients: [
    {
      name: "archive",
      meshAddress: "10.8.0.4",
      publicKey: fakePublicKey("meshfs-archive"),
      sync: "wiki-copy",
      path: "wiki",
    },
  ],
};

export const PROD_MOUNT_PLANS: readonly MountPlan[] = PROD_MOUNTS.map((m) => ({
  exportName: "meshfs",
  user: "meshfs",
  serverMeshAddress: "10.8.0.1",
  path: m.path,
  idleTimeout: m.idleTimeout,
  owner: m.owner,
  wireguardUnit: "wg-quick@wg0.service",
}));

export const PROD_SYNC_PLAN: SyncPlan = {
  name: "wiki",
  user: "ai-streamer",
  local: "/home/ai-streamer/wiki",
  remote: { kind: "mount", path: "/mnt/meshfs/wiki", mountPath: "/mnt/meshfs", exportName: "meshfs" },
  interval: 60,
  timeout: 600,
  ignore: PROD_SYNC.ignore,
  watch: false,
};

export const SSH_SYNC_PLAN: SyncPlan = {
  name: "wiki-copy",
  user: "root",
  local: "/srv/wiki",
  remote: {
    kind: "ssh",
    exportName: "meshfs",
    exportUser: "meshfs",
    serverMeshAddress: "10.8.0.1",
    serverPath: "/tank/meshfs/state/wiki",
  },
  interval: 60,
  timeout: 600,
  ignore: PROD_SYNC.ignore,
  watch: true,
};

export const HOST_KEY = fakePublicKey("anchor-host-key", "root@anchor");

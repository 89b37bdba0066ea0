/**
 * The production storage layout (Pulumi.prod.yaml) as validated config and
 * as the plain plans the storage templates take, plus a lab variant
 * (zfs-fuse on a file) and an ssh:// sync variant.
 */
import { DEFAULT_HEALTH } from "../config/health";
import { ExportConfig, FleetConfig, HostConfig, MountConfig, SyncConfig } from "../config/types";
import { SftpPlan } from "../templates/sftp";
import { MountPlan } from "../templates/sshfs";
import { SyncPlan } from "../templates/unison";
import { SnapshotPlan, ZfsPlan } from "../templates/zfs";
import { fakeBytes } from "./mocks";

/** A well-formed ed25519 public key line whose key bytes derive from `seed`. */
export function fakePublicKey(seed: string, comment = seed): string {
  const header = Buffer.from("0000000b7373682d6564323535313900000020", "hex");
  return `ssh-ed25519 ${Buffer.concat([header, fakeBytes(seed, 32)]).toString("base64")} ${comment}`;
}

function hcloudHost(name: string, extra: Partial<HostConfig> = {}): HostConfig {
  return {
    name,
    hcloud: { serverType: "cx22", location: "nbg1", image: "debian-12" },
    wireguard: "kernel",
    keyRotation: "",
    routes: [],
    ...extra,
  };
}

export const PROD_EXPORT: ExportConfig = {
  name: "meshfs",
  host: "anchor",
  pool: { name: "tank", devices: ["volume"], implementation: "openzfs" },
  dataset: "tank/meshfs/state",
  mountpoint: "/tank/meshfs/state",
  properties: { compression: "lz4", atime: "off", snapdir: "hidden", refquota: "100G" },
  snapshots: { interval: 3600, keep: 48 },
  clients: ["satellite", "hetzner-native"],
  user: "meshfs",
};

export const LAB_EXPORT: ExportConfig = {
  ...PROD_EXPORT,
  pool: { name: "tank", devices: ["/var/lib/swarm/tank.img"], fileSize: "1G", implementation: "zfs-fuse" },
  properties: { compression: "on", atime: "off", snapdir: "hidden", refquota: "512M" },
};

export const PROD_MOUNTS: readonly MountConfig[] = [
  { host: "satellite", export: "meshfs", path: "/mnt/meshfs", idleTimeout: 600, owner: "root" },
  { host: "hetzner-native", export: "meshfs", path: "/mnt/meshfs", idleTimeout: 600, owner: "ai-streamer" },
];

export const PROD_SYNC: SyncConfig = {
  host: "hetzner-native",
  name: "wiki",
  local: "/home/ai-streamer/wiki",
  remote: { mountPath: "/mnt/meshfs/wiki" },
  interval: 60,
  user: "ai-streamer",
  conflicts: "keep-both",
  ignore: ["Name *.swp", "Name .#*", "Name *~"],
  watch: false,
  timeout: 600,
};

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
      hcloud: { serverType: "cx22", location: "nbg1", image: "debian-12", volumeSize: 50 },
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
  implementation: "openzfs",
  dataset: PROD_EXPORT.dataset,
  mountpoint: PROD_EXPORT.mountpoint,
  properties: PROD_EXPORT.properties,
};

export const LAB_ZFS: ZfsPlan = {
  ...PROD_ZFS,
  devices: ["/var/lib/swarm/tank.img"],
  fileSize: "1G",
  implementation: "zfs-fuse",
  properties: LAB_EXPORT.properties,
};

export const PROD_SNAPSHOTS: SnapshotPlan = {
  exportName: "meshfs",
  dataset: PROD_EXPORT.dataset,
  implementation: "openzfs",
  interval: 3600,
  keep: 48,
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

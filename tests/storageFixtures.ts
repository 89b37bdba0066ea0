/**
 * The production storage layout (Pulumi.prod.yaml) as validated config and
 * as the plans its steps hand the storage templates, plus the lab's export
 * (Pulumi.lab.yaml: a virtual disk), a variant on sparse files and an
 * ssh:// sync variant: every one raw stack values run through validation
 * and `planFleet`, never a typed object built by hand.
 */
import { join } from "node:path";
import { planFleet } from "../config/model";
import { ExportStep, MountStep, SyncStep, stepsOf } from "../config/plan";
import { loadStack } from "../config/load";
import { FleetConfig, SyncConfig } from "../config/types";
import { WatchPlan } from "../templates/meshfsWatch";
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

export type Raw = Record<string, unknown>;
export type Edit = (raw: Raw) => Raw;

/** The `swarm:` config of `Pulumi.<stack>.yaml` as validation returns it, after `edit` changed the raw values. */
function validatedStack(stack: string, edit: Edit = (raw) => raw): FleetConfig {
  return loadStack(stack, { dir: join(__dirname, ".."), pinHostKeys: UNBOOTED, edit }).config;
}

/** Replaces the entries of the raw list `key` by what `each` makes of them. */
function mapList(raw: Raw, key: string, each: (item: Raw, index: number) => Raw): Raw {
  return { ...raw, [key]: (raw[key] as Raw[]).map(each) };
}

/**
 * Prod's storage on fixed mesh addresses (10.8.0.1–3), every server in
 * nbg1, no keepalive, and an admin key of the tests' own; then `edit`.
 */
export function storageFleet(edit: Edit = (raw) => raw): FleetConfig {
  return validatedStack("prod", (prod) => {
    const hosts = mapList(prod, "hosts", (h, i) => ({
      ...h,
      meshAddress: `10.8.0.${i + 1}`,
      hcloud: { ...(h.hcloud as Raw), location: "nbg1" },
    }));
    const mesh = { ...(prod.mesh as Raw) };
    delete mesh.persistentKeepalive;
    const admin = { sshPublicKey: fakePublicKey("admin"), sshSourceCidrs: ["198.51.100.0/24"] };
    return edit({ ...hosts, mesh, admin });
  });
}

export const STORAGE_FLEET: FleetConfig = storageFleet();

/**
 * Adds `archive` (10.8.0.4), a client of meshfs that does not mount it and
 * syncs the wiki as `wiki-copy` with unison's ssh:// mode.
 */
export const withSshSync: Edit = (raw) => {
  const [wiki] = raw.syncs as Raw[];
  const archive = {
    name: "archive",
    meshAddress: "10.8.0.4",
    hcloud: { serverType: "cx23", location: "nbg1" },
  };
  const copy = {
    ...wiki,
    host: "archive",
    name: "wiki-copy",
    local: "/srv/wiki",
    remote: { export: "meshfs", path: "wiki" },
    user: "root",
    watch: true,
  };
  return mapList(
    { ...raw, hosts: [...(raw.hosts as Raw[]), archive], syncs: [...(raw.syncs as Raw[]), copy] },
    "exports",
    (e) => ({ ...e, clients: [...(e.clients as string[]), "archive"] }),
  );
};

/** The storage fleet with the ssh:// sync. */
export const SSH_FLEET: FleetConfig = storageFleet(withSshSync);

const PROD = planFleet(STORAGE_FLEET).steps;
const SSH = planFleet(SSH_FLEET).steps;
const [PROD_EXPORT_STEP]: ExportStep[] = stepsOf(PROD, "export");
const [SSH_EXPORT_STEP]: ExportStep[] = stepsOf(SSH, "export");
const syncStep = (steps: typeof PROD, name: string): SyncStep =>
  stepsOf(steps, "sync").find((s) => s.sync.name === name) as SyncStep;

/** The lab stack: its export is OpenZFS on a virtual disk of the VM. */
const LAB: FleetConfig = validatedStack("lab");

/** Puts the export's pool on the lab's virtual disk. */
export const onLabDisk: Edit = (raw) =>
  mapList(raw, "exports", (e) => ({ ...e, pool: { ...LAB.exports[0].pool } }));

/** Makes the export a pool of sparse files that the script creates (pool.fileSize). */
export const onSparseFiles: Edit = (raw) =>
  mapList(raw, "exports", (e) => ({
    ...e,
    pool: { name: "tank", devices: ["/var/lib/swarm/tank.img"], fileSize: "1G" },
  }));

export const PROD_SYNC: SyncConfig = syncStep(PROD, "wiki").sync;

export const VOLUME_DEVICE = "/dev/disk/by-id/scsi-0HC_Volume_1001";

/** The export step's zfs plan with the volume device in place of `volume`, as the export component does. */
function zfsPlan(step: ExportStep): ZfsPlan {
  return { ...step.zfs, devices: step.zfs.devices.map((d) => (d === "volume" ? VOLUME_DEVICE : d)) };
}

export const PROD_ZFS: ZfsPlan = zfsPlan(PROD_EXPORT_STEP);

export const LAB_ZFS: ZfsPlan = zfsPlan(stepsOf(planFleet(LAB).steps, "export")[0]);

export const FILE_ZFS: ZfsPlan = zfsPlan(
  stepsOf(planFleet(validatedStack("lab", onSparseFiles)).steps, "export")[0],
);

export const PROD_SNAPSHOTS: SnapshotPlan = PROD_EXPORT_STEP.snapshots;

/**
 * The export step's sftp plan with each client's key, as the export
 * component fills them in: the clients in the step's order (by name).
 */
function sftpPlan(step: ExportStep): SftpPlan {
  const keyOf = (host: string) => fakePublicKey(`${step.export.name}-${host}`);
  return {
    ...step.sftp,
    clients: step.clients.map((c) => ({ ...c, publicKey: keyOf(c.name) })),
    unisonClients: step.syncServers.map((c) => ({ ...c, publicKey: keyOf(c.name) })),
  };
}

export const PROD_SFTP: SftpPlan = sftpPlan(PROD_EXPORT_STEP);

export const SSH_SFTP: SftpPlan = sftpPlan(SSH_EXPORT_STEP);

export const PROD_MOUNT_PLANS: readonly MountPlan[] = stepsOf(PROD, "mount").map((m: MountStep) => m.units);

export const PROD_SYNC_PLAN: SyncPlan = syncStep(PROD, "wiki").units;

export const SSH_SYNC_PLAN: SyncPlan = syncStep(SSH, "wiki-copy").units;

export const HOST_KEY = fakePublicKey("anchor-host-key", "root@anchor");

/** Prod's wiki (through the mount) and archive's wiki-copy (ssh://), both in watch mode. */
export const WATCHED_FLEET: FleetConfig = storageFleet((raw) =>
  withSshSync({ ...raw, syncs: (raw.syncs as Raw[]).map((s) => ({ ...s, watch: true })) }),
);

const WATCHED = planFleet(WATCHED_FLEET).steps;
const [WATCHED_EXPORT_STEP]: ExportStep[] = stepsOf(WATCHED, "export");

/** The export step's watch plan with each watched sync's key, as the export component fills them in. */
export const WATCH_PLAN: WatchPlan = {
  host: WATCHED_EXPORT_STEP.host,
  exportName: WATCHED_EXPORT_STEP.export.name,
  meshAddress: WATCHED_EXPORT_STEP.server.meshAddress,
  mountpoint: WATCHED_EXPORT_STEP.export.mountpoint,
  clients: WATCHED_EXPORT_STEP.watchers.map((w) => ({
    ...w,
    publicKey: fakePublicKey(`${w.name}-${w.sync}-watch`),
  })),
};

/** Prod's wiki sync in watch mode: its remote root is through the mount. */
export const WATCHED_SYNC_PLAN: SyncPlan = syncStep(WATCHED, "wiki").units;

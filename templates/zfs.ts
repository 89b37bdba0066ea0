/**
 * The export host's ZFS side (OpenZFS): the script that converges pool,
 * dataset, properties, mount and sentinel, and the snapshot timer with its
 * pruning script.
 */
import { Seconds } from "../config/types";
import { hostScript, script, shellQuote, writeFile } from "./shell";
import { execLine, renderUnit, timespan, unitHeader } from "./systemd";

export const UNIT_DIR = "/etc/systemd/system";
export const LIB_DIR = "/usr/local/lib/swarm";
/** Name of the file at the dataset root that proves a path shows the dataset, not an empty mountpoint. */
export const EXPORT_SENTINEL = ".swarm-meshfs";
export const SNAPSHOT_SCRIPT = `${LIB_DIR}/zfs-snapshot`;
/** Prefix of every snapshot swarm takes; pruning never touches any other snapshot. */
export const SNAPSHOT_PREFIX = "swarm-";

/** Names the host in the messages of the prelude's `fail`: the first part of every script that calls it. */
export function failFunction(host: string): string {
  return `swarm_host=${shellQuote(host)}\n`;
}

export interface ZfsPlan {
  /** Host name, for messages. */
  readonly host: string;
  readonly exportName: string;
  readonly pool: string;
  /** Absolute device paths (`volume` already resolved); empty: the pool must exist. */
  readonly devices: readonly string[];
  /** Size of sparse files created for missing devices, e.g. `1G`; absent: a missing device is an error. */
  readonly fileSize?: string;
  readonly dataset: string;
  readonly mountpoint: string;
  readonly properties: Readonly<Record<string, string>>;
}

function dirname(path: string): string {
  const cut = path.lastIndexOf("/");
  return cut <= 0 ? "/" : path.slice(0, cut);
}

/** What converging a pool needs to know: the export names the owner in messages. */
export type PoolPlan = Pick<ZfsPlan, "exportName" | "pool" | "devices" | "fileSize">;

/** Loads OpenZFS or finds it loaded; fails naming the export otherwise. */
export function modulePart(plan: Pick<ZfsPlan, "exportName">): string {
  return `# OpenZFS needs its kernel module: loaded here, or, in a container (the lab's hosts), loaded by the
# kernel outside and given as /dev/zfs.
if ! modprobe zfs 2>/dev/null && ! [ -e /dev/zfs ]; then
  fail "the OpenZFS kernel module does not load (modprobe zfs) and there is no /dev/zfs: install zfs-dkms (with the running kernel's headers) for export ${plan.exportName}, or boot a kernel that has the module"
fi
command -v zpool >/dev/null || fail "zpool is missing: install zfsutils-linux"
`;
}

/** Imports the pool, or creates it on its devices when none of them holds anything. */
export function poolPart(plan: PoolPlan): string {
  const q = shellQuote;
  const pool = q(plan.pool);
  const importDirs = [...new Set(plan.devices.map(dirname))].sort();
  const importArgs = importDirs.map((d) => `-d ${q(d)} `).join("");
  if (plan.devices.length === 0) {
    return `if ! zpool list -H -o name ${pool} >/dev/null 2>&1; then
  zpool import ${pool} || fail "pool ${plan.pool} is neither imported nor importable, and pool.devices of export ${plan.exportName} is empty: create the pool, or list its devices"
  echo "swarm: imported pool ${plan.pool}"
fi
`;
  }
  const prepare = plan.devices
    .map((device) => {
      const d = q(device);
      const missing =
        plan.fileSize === undefined
          ? `  fail "device ${device} of pool ${plan.pool} does not exist: fix pool.devices of export ${plan.exportName}"`
          : `  # Only a missing folder is created: an existing one keeps its mode (others may need to cross it).
  [ -d ${q(dirname(device))} ] || install -d -m 0700 ${q(dirname(device))}
  truncate -s ${q(plan.fileSize)} ${d}
  echo "swarm: created sparse file ${device} (${plan.fileSize}) for pool ${plan.pool}"`;
      return `if [ ! -e ${d} ]; then
${missing}
fi
# Never create a pool over data: any signature (a file system, a partition table, another pool) stops here.
rc=0
found=$(blkid -p -o export ${d} 2>&1) || rc=$?
case $rc in
  0) fail "refusing to create pool ${plan.pool} on ${device}: it already holds $(echo "$found" | grep -E '^(TYPE|PTTYPE|LABEL)=' | tr '\\n' ' ')(blkid -p); import that pool, point pool.devices elsewhere, or wipe the device deliberately (wipefs -a ${device})" ;;
  2) ;;
  *) fail "cannot probe ${device} with blkid (exit $rc): $found" ;;
esac
`;
    })
    .join("");
  return `if ! zpool list -H -o name ${pool} >/dev/null 2>&1; then
  if zpool import ${importArgs}${pool} >/dev/null 2>&1; then
    echo "swarm: imported pool ${plan.pool}"
  else
${indent(prepare, 4)}    zpool create ${pool} ${plan.devices.map(q).join(" ")} || fail "zpool create ${plan.pool} failed"
    echo "swarm: created pool ${plan.pool} on ${plan.devices.join(" ")}"
  fi
fi
`;
}

function indent(text: string, spaces: number): string {
  const pad = " ".repeat(spaces);
  return text
    .split("\n")
    .map((line) => (line === "" ? line : pad + line))
    .join("\n");
}

/**
 * Properties libzfs applies to a mounted dataset by remounting it (with their short names).
 * OpenZFS before 2.1.13 (Debian 12 has 2.1.11) remounts after a `zfs set` of several
 * properties only when the last one is among these (openzfs/zfs#15000), so they go last.
 */
const REMOUNT_PROPERTIES = new Set([
  "atime",
  "relatime",
  "devices",
  "exec",
  "setuid",
  "readonly",
  "rdonly",
  "xattr",
  "nbmand",
]);

/** The order properties are set in: the rest by name, then those that need a remount, by name. */
export function propertyOrder(names: readonly string[]): string[] {
  const sorted = [...names].sort();
  return [
    ...sorted.filter((n) => !REMOUNT_PROPERTIES.has(n)),
    ...sorted.filter((n) => REMOUNT_PROPERTIES.has(n)),
  ];
}

const ZFS_CONVERGE = hostScript("zfs-converge.sh");

function datasetPart(plan: ZfsPlan): string {
  const q = shellQuote;
  const ds = q(plan.dataset);
  // An export is mounted and, unless its properties say otherwise, writable. Both are set here
  // because a replica promoted to the export (docs/replicas.md, Failover) arrives with
  // canmount=noauto and readonly=on, as every receive leaves it.
  const properties: Record<string, string> = { readonly: "off", ...plan.properties, canmount: "on" };
  const pairs = propertyOrder(Object.keys(properties).filter((k) => k !== "mountpoint"))
    .map((k) => q(`${k}=${properties[k]}`))
    .join(" ");
  const propertiesHint = `fix properties of export ${plan.exportName} (zfs names the one it refused above)`;
  const mountpointHint = `ZFS unmounts ${plan.dataset} to move it, which fails while it is in use: stop the clients of export ${plan.exportName}, or fix its mountpoint`;
  return `if ! zfs list -H -o name ${ds} >/dev/null 2>&1; then
  zfs create -p ${ds} || fail "zfs create -p ${plan.dataset} failed"
  echo "swarm: created dataset ${plan.dataset}"
fi
${ZFS_CONVERGE}# The mountpoint has a zfs set of its own: moving the dataset unmounts it first, and should the kernel then refuse
# another property of the same zfs set, OpenZFS 2.1 leaves the dataset unmounted; a busy dataset would also hold
# back every other property.
zfs_converge ${ds} ${q(mountpointHint)} ${q(`mountpoint=${plan.mountpoint}`)}
zfs_converge ${ds} ${q(propertiesHint)} ${pairs}
if [ "$(zfs get -H -o value mounted ${ds})" != yes ]; then
  zfs mount ${ds} || fail "cannot mount ${plan.dataset} at ${plan.mountpoint}: ZFS will not mount over a non-empty directory, move what is in ${plan.mountpoint} away"
  echo "swarm: mounted ${plan.dataset} at ${plan.mountpoint}"
fi
mountpoint -q ${q(plan.mountpoint)} || fail "${plan.mountpoint} is not a mount point although ${plan.dataset} says it is mounted"
# The sentinel is what clients and syncs look for before they trust the directory: the export's name,
# then the dataset and its guid, which no other dataset has (a replica received from it neither), so a
# sync can tell when the directory it knows is now another copy (unison-guard).
guid=$(zfs get -H -o value guid ${ds}) || fail "cannot read the guid of ${plan.dataset}"
swarm_write ${q(`${plan.mountpoint}/${EXPORT_SENTINEL}`)} 0644 root:root < <(printf '%s\\n' ${q(plan.exportName)} "dataset ${plan.dataset} guid $guid")
`;
}

/** Converges pool, dataset, properties, mount and sentinel. Idempotent; prints each change. */
export function zfsScript(plan: ZfsPlan): string {
  return script(failFunction(plan.host), modulePart(plan), poolPart(plan), datasetPart(plan));
}

/**
 * `zfs-snapshot [--dry-run] DATASET TIER=N...`: takes `DATASET@swarm-<UTC time>`
 * and destroys each swarm snapshot no retention tier keeps, except the newest,
 * the one just taken and any with a `zfs hold`. Snapshots with any other name
 * are never touched. `--dry-run` prints what a run now would do, and does nothing.
 */
export function snapshotScript(): string {
  return SNAPSHOT_PROGRAM;
}

const SNAPSHOT_PROGRAM = hostScript("zfs-snapshot.sh", { SNAPSHOT_PREFIX });

/** The retention tiers `zfs-snapshot` knows, in the order it reports them; config/schema.ts declares each. */
export const RETENTION_TIERS = ["frequent", "hourly", "daily", "weekly", "monthly"] as const;
export type RetentionTier = (typeof RETENTION_TIERS)[number];
/** How many snapshots (frequent) or periods with a snapshot (the others) each tier keeps; 0: none. */
export type Retention = Readonly<Record<RetentionTier, number>>;

/** `zfs-snapshot`'s tier arguments: `hourly=48 daily=30`, the tiers that keep something. */
export function retentionArgs(retention: Retention): string[] {
  return RETENTION_TIERS.filter((t) => retention[t] > 0).map((t) => `${t}=${retention[t]}`);
}

/** The full command line of a run, or with `--dry-run` of its plan: what the service and an admin run. */
export function snapshotCommand(plan: SnapshotPlan, dryRun = false): string[] {
  return [SNAPSHOT_SCRIPT, ...(dryRun ? ["--dry-run"] : []), plan.dataset, ...retentionArgs(plan.retention)];
}

export interface SnapshotPlan {
  readonly exportName: string;
  readonly dataset: string;
  readonly interval: Seconds;
  readonly retention: Retention;
}

export function snapshotUnitName(exportName: string, suffix: "service" | "timer"): string {
  return `swarm-snapshot-${exportName}.${suffix}`;
}

export function snapshotService(plan: SnapshotPlan): string {
  return renderUnit(unitHeader(`Snapshots of export ${plan.exportName}.`), [
    {
      name: "Unit",
      settings: [
        [
          "Description",
          `Snapshot ${plan.dataset} and prune swarm snapshots to ${retentionArgs(plan.retention).join(" ")} (held ones stay)`,
        ],
        ["After", "zfs.target"],
      ],
    },
    {
      name: "Service",
      settings: [
        ["Type", "oneshot"],
        ["ExecStart", execLine("", ...snapshotCommand(plan))],
      ],
    },
  ]);
}

export function snapshotTimer(plan: SnapshotPlan): string {
  return renderUnit(unitHeader(`Snapshots of export ${plan.exportName}.`), [
    {
      name: "Unit",
      settings: [["Description", `Snapshot ${plan.dataset} every ${timespan(plan.interval)}`]],
    },
    {
      name: "Timer",
      settings: [
        ["OnBootSec", timespan(plan.interval)],
        ["OnUnitActiveSec", timespan(plan.interval)],
        ["AccuracySec", "1min"],
      ],
    },
    { name: "Install", settings: [["WantedBy", "timers.target"]] },
  ]);
}

/**
 * Installs the snapshot script and units and starts the timer, then prints
 * what the timer's next run would destroy under this retention, so that
 * `pulumi up` shows it before it happens (only the destroy lines and the summary).
 */
export function snapshotsInstallScript(host: string, plan: SnapshotPlan): string {
  const service = `${UNIT_DIR}/${snapshotUnitName(plan.exportName, "service")}`;
  const timer = `${UNIT_DIR}/${snapshotUnitName(plan.exportName, "timer")}`;
  const timerName = snapshotUnitName(plan.exportName, "timer");
  const dryRun = snapshotCommand(plan, true).map(shellQuote).join(" ");
  return script(
    failFunction(host),
    writeFile({ path: SNAPSHOT_SCRIPT, content: snapshotScript(), mode: "0755" }),
    writeFile({ path: service, content: snapshotService(plan), mode: "0644" }),
    writeFile({ path: timer, content: snapshotTimer(plan), mode: "0644" }),
    `swarm_activate ${shellQuote(timerName)} ${shellQuote(timer)}\n`,
    `# A plan only: the prune it describes is the timer's.
if next_prune=$(${dryRun} 2>&1); then
  printf '%s\\n' "$next_prune" | grep -E '^(destroy|swarm: a run)' || true
else
  echo "swarm: cannot tell what the next prune of ${plan.dataset} would destroy: $next_prune"
fi
`,
  );
}

/** Stops and removes the snapshot timer; the snapshots themselves stay. */
export function snapshotsTeardownScript(exportName: string): string {
  const service = snapshotUnitName(exportName, "service");
  const timer = snapshotUnitName(exportName, "timer");
  return `systemctl disable --now ${timer} 2>/dev/null || true
rm -f ${UNIT_DIR}/${timer} ${UNIT_DIR}/${service}
systemctl daemon-reload
echo "swarm: removed ${timer}; existing snapshots are kept"
`;
}

/**
 * The export host's ZFS side: the zfs-fuse daemon unit, the script that
 * converges pool, dataset, properties, mount and sentinel, and the snapshot
 * timer with its pruning script.
 */
import { Seconds, ZfsImplementation } from "../config/types";
import { script, shellQuote, writeFile } from "./shell";
import { execLine, renderUnit, timespan, unitHeader } from "./systemd";

export const UNIT_DIR = "/etc/systemd/system";
export const LIB_DIR = "/usr/local/lib/swarm";
/** Name of the file at the dataset root that proves a path shows the dataset, not an empty mountpoint. */
export const EXPORT_SENTINEL = ".swarm-meshfs";
export const ZFS_FUSE_UNIT = "swarm-zfs-fuse.service";
export const SNAPSHOT_SCRIPT = `${LIB_DIR}/zfs-snapshot`;
/** Prefix of every snapshot swarm takes; pruning never touches any other snapshot. */
export const SNAPSHOT_PREFIX = "swarm-";
const ZFS_FUSE_SOCKET = "/var/run/zfs/zfs_socket";

/** A shell function that stops the script with a message naming the host. */
export function failFunction(host: string): string {
  return `fail() {\n  echo "swarm: ${host}: $*" >&2\n  exit 1\n}\n`;
}

/** The unit that runs zfs-fuse in the foreground (Debian's init script fails in containers). */
export function zfsFuseUnit(): string {
  const waitForSocket =
    `for i in $(seq 1 300); do [ -S ${ZFS_FUSE_SOCKET} ] && exit 0; sleep 0.1; done; ` +
    `echo "zfs-fuse did not open ${ZFS_FUSE_SOCKET} within 30 s" >&2; exit 1`;
  return renderUnit(
    unitHeader(
      "The zfs-fuse daemon, in the foreground under systemd: Debian's zfs-fuse.service",
      "runs an init script that writes oom_score_adj, which containers refuse.",
    ),
    [
      {
        name: "Unit",
        settings: [
          ["Description", "ZFS on FUSE daemon (swarm)"],
          ["Documentation", "man:zfs-fuse(8)"],
          ["After", "local-fs.target"],
          ["Conflicts", "zfs-fuse.service"],
        ],
      },
      {
        name: "Service",
        settings: [
          ["Type", "simple"],
          ["ExecStart", execLine("", "/usr/sbin/zfs-fuse", "--no-daemon")],
          // Pools come back from zpool.cache when the daemon starts; their datasets still need mounting.
          ["ExecStartPost", execLine("", "/bin/sh", "-c", waitForSocket)],
          ["ExecStartPost", execLine("-", "/usr/sbin/zfs", "mount", "-a")],
          ["ExecStop", execLine("-", "/usr/sbin/zfs", "unmount", "-a")],
          ["LimitMEMLOCK", "infinity"],
          ["LimitSTACK", "infinity"],
          ["Restart", "on-failure"],
          ["RestartSec", "5s"],
        ],
      },
      { name: "Install", settings: [["WantedBy", "multi-user.target"]] },
    ],
  );
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
  readonly implementation: ZfsImplementation;
  readonly dataset: string;
  readonly mountpoint: string;
  readonly properties: Readonly<Record<string, string>>;
}

function dirname(path: string): string {
  const cut = path.lastIndexOf("/");
  return cut <= 0 ? "/" : path.slice(0, cut);
}

function implementationPart(plan: ZfsPlan): string {
  if (plan.implementation === "openzfs") {
    return `# OpenZFS: the kernel module must load; containers cannot load it, labs use zfs-fuse.
if ! modprobe zfs 2>/dev/null && ! [ -e /dev/zfs ]; then
  fail "the OpenZFS kernel module does not load (modprobe zfs): install zfsutils-linux and zfs-dkms, or set pool.implementation: zfs-fuse for export ${plan.exportName}"
fi
command -v zpool >/dev/null || fail "zpool is missing: install zfsutils-linux"
`;
  }
  return `# zfs-fuse: swarm runs the daemon from its own unit and keeps Debian's away.
command -v zfs-fuse >/dev/null || fail "zfs-fuse is missing: install the zfs-fuse package"
${writeFile({ path: `${UNIT_DIR}/${ZFS_FUSE_UNIT}`, content: zfsFuseUnit(), mode: "0644" })}
if [ "$(systemctl is-enabled zfs-fuse.service 2>/dev/null || true)" != masked ]; then
  systemctl stop zfs-fuse.service 2>/dev/null || true
  systemctl mask --quiet zfs-fuse.service
  echo "swarm: masked Debian's zfs-fuse.service (${ZFS_FUSE_UNIT} runs the daemon)"
fi
if swarm_changed ${shellQuote(`${UNIT_DIR}/${ZFS_FUSE_UNIT}`)}; then
  systemctl daemon-reload
fi
if ! systemctl is-enabled --quiet ${ZFS_FUSE_UNIT}; then
  systemctl enable --quiet ${ZFS_FUSE_UNIT}
  echo "swarm: enabled ${ZFS_FUSE_UNIT}"
fi
if ! systemctl is-active --quiet ${ZFS_FUSE_UNIT}; then
  systemctl start ${ZFS_FUSE_UNIT} || fail "${ZFS_FUSE_UNIT} does not start: see journalctl -u ${ZFS_FUSE_UNIT}"
  echo "swarm: started ${ZFS_FUSE_UNIT}"
elif swarm_changed ${shellQuote(`${UNIT_DIR}/${ZFS_FUSE_UNIT}`)}; then
  # Restarting the daemon unmounts every dataset under the clients' feet: leave it to a reboot or an operator.
  echo "swarm: ${ZFS_FUSE_UNIT} changed; it applies when the daemon next restarts"
fi
`;
}

function poolPart(plan: ZfsPlan): string {
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

function datasetPart(plan: ZfsPlan): string {
  const q = shellQuote;
  const ds = q(plan.dataset);
  const properties = Object.keys(plan.properties)
    .filter((k) => k !== "mountpoint")
    .sort()
    .map((k) => `zfs_converge ${q(k)} ${q(plan.properties[k])}`)
    .join("\n");
  return `if ! zfs list -H -o name ${ds} >/dev/null 2>&1; then
  zfs create -p ${ds} || fail "zfs create -p ${plan.dataset} failed"
  echo "swarm: created dataset ${plan.dataset}"
fi
# zfs_converge PROPERTY VALUE: one zfs set per property (zfs-fuse takes no more), and only when it differs.
zfs_converge() {
  local have
  have=$(zfs get -H -o value "$1" ${ds}) || fail "cannot read property $1 of ${plan.dataset}"
  if [ "$have" != "$2" ]; then
    zfs set "$1=$2" ${ds} || fail "zfs set $1=$2 on ${plan.dataset} failed: fix properties of export ${plan.exportName} (zfs-fuse knows compression=on|lzjb|gzip|zle, not lz4)"
    echo "swarm: set $1=$2 on ${plan.dataset} (was $have)"
  fi
}
zfs_converge mountpoint ${q(plan.mountpoint)}
${properties}
if [ "$(zfs get -H -o value mounted ${ds})" != yes ]; then
  zfs mount ${ds} || fail "cannot mount ${plan.dataset} at ${plan.mountpoint}: ZFS will not mount over a non-empty directory, move what is in ${plan.mountpoint} away"
  echo "swarm: mounted ${plan.dataset} at ${plan.mountpoint}"
fi
mountpoint -q ${q(plan.mountpoint)} || fail "${plan.mountpoint} is not a mount point although ${plan.dataset} says it is mounted"
# The sentinel is what clients and syncs look for before they trust the directory.
${writeFile({ path: `${plan.mountpoint}/${EXPORT_SENTINEL}`, content: plan.exportName, mode: "0644" })}`;
}

/** Converges pool, dataset, properties, mount and sentinel. Idempotent; prints each change. */
export function zfsScript(plan: ZfsPlan): string {
  return script(failFunction(plan.host), implementationPart(plan), poolPart(plan), datasetPart(plan));
}

/**
 * `zfs-snapshot DATASET KEEP`: takes `DATASET@swarm-<UTC time>` and destroys the
 * oldest swarm snapshots beyond KEEP. Snapshots with any other name are never touched.
 */
export function snapshotScript(): string {
  return `#!/bin/bash
# Installed by swarm. Usage: zfs-snapshot DATASET KEEP
set -euo pipefail
export LC_ALL=C
dataset=$1
keep=$2
case $keep in '' | *[!0-9]*)
  echo "zfs-snapshot: KEEP must be a number, not '$keep'" >&2
  exit 2
  ;;
esac
name="$dataset@${SNAPSHOT_PREFIX}$(date -u +%Y%m%dT%H%M%SZ)"
zfs snapshot "$name"
echo "swarm: took snapshot $name"
# The UTC time stamp in the name sorts like the creation time; the pattern skips anything not taken here.
mapfile -t ours < <(zfs list -H -t snapshot -o name -d 1 "$dataset" |
  grep -E '@${SNAPSHOT_PREFIX}[0-9]{8}T[0-9]{6}Z$' | grep -F -- "$dataset@" | sort)
excess=$((\${#ours[@]} - keep))
for ((i = 0; i < excess; i++)); do
  case \${ours[i]} in "$dataset@${SNAPSHOT_PREFIX}"*) ;; *) continue ;; esac
  zfs destroy "\${ours[i]}"
  echo "swarm: destroyed snapshot \${ours[i]} (keeping the newest $keep)"
done
`;
}

export interface SnapshotPlan {
  readonly exportName: string;
  readonly dataset: string;
  readonly implementation: ZfsImplementation;
  readonly interval: Seconds;
  readonly keep: number;
}

export function snapshotUnitName(exportName: string, suffix: "service" | "timer"): string {
  return `swarm-snapshot-${exportName}.${suffix}`;
}

export function snapshotService(plan: SnapshotPlan): string {
  const zfsUnit = plan.implementation === "zfs-fuse" ? ZFS_FUSE_UNIT : "zfs.target";
  return renderUnit(unitHeader(`Snapshots of export ${plan.exportName}.`), [
    {
      name: "Unit",
      settings: [
        ["Description", `Snapshot ${plan.dataset} and keep the newest ${plan.keep} swarm snapshots`],
        ["After", zfsUnit],
        ["Requires", plan.implementation === "zfs-fuse" ? ZFS_FUSE_UNIT : undefined],
      ],
    },
    {
      name: "Service",
      settings: [
        ["Type", "oneshot"],
        ["ExecStart", execLine("", SNAPSHOT_SCRIPT, plan.dataset, String(plan.keep))],
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

/** Installs the snapshot script and units and starts the timer. */
export function snapshotsInstallScript(host: string, plan: SnapshotPlan): string {
  const service = `${UNIT_DIR}/${snapshotUnitName(plan.exportName, "service")}`;
  const timer = `${UNIT_DIR}/${snapshotUnitName(plan.exportName, "timer")}`;
  const timerName = snapshotUnitName(plan.exportName, "timer");
  return script(
    failFunction(host),
    writeFile({ path: SNAPSHOT_SCRIPT, content: snapshotScript(), mode: "0755" }),
    writeFile({ path: service, content: snapshotService(plan), mode: "0644" }),
    writeFile({ path: timer, content: snapshotTimer(plan), mode: "0644" }),
    `if swarm_changed ${shellQuote(service)} ${shellQuote(timer)}; then
  systemctl daemon-reload
fi
if ! systemctl is-enabled --quiet ${timerName}; then
  systemctl enable --quiet ${timerName}
  echo "swarm: enabled ${timerName}"
fi
if ! systemctl is-active --quiet ${timerName}; then
  systemctl start ${timerName} || fail "${timerName} does not start"
  echo "swarm: started ${timerName}"
elif swarm_changed ${shellQuote(timer)}; then
  systemctl restart ${timerName}
  echo "swarm: restarted ${timerName}"
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

/**
 * Replicas of an export's dataset on other hosts (docs/replicas.md): on the
 * replica host, a pool, a user that can receive into one dataset and nothing
 * else, and the forced command that receives and prunes; on the export host,
 * the sending key, the replica's pinned host key, and a timer that runs
 * `zfs-replica-send` every interval.
 */
import { Seconds } from "../config/types";
import { ScrubPlan, scrubInstallPart, scrubTeardownPart } from "./scrub";
import {
  AUTHORIZED_KEYS_DIR,
  dropinHeader,
  ed25519Key,
  forcedCommandUserPart,
  LOCKED_SESSION,
  meshOnlyMatch,
  SSHD_DROPIN_DIR,
  sshdDropinParts,
  sshdWord,
} from "./sftp";
import { hostScript, script, shellQuote, writeFile } from "./shell";
import { execLine, renderUnit, timespan, unitHeader } from "./systemd";
import {
  failFunction,
  LIB_DIR,
  modulePart,
  PoolPlan,
  poolPart,
  Retention,
  retentionArgs,
  SNAPSHOT_SCRIPT,
  snapshotScript,
  UNIT_DIR,
} from "./zfs";

export const RECEIVE_PROGRAM = `${LIB_DIR}/zfs-replica-recv`;
export const SEND_PROGRAM = `${LIB_DIR}/zfs-replica-send`;
/** Root-owned settings of both sides: `<export>.conf` on a replica host, `<export>.to-<host>.*` on an export host. */
export const REPLICA_CONF_DIR = "/etc/swarm/replicas";
/** Where each replication run leaves its result, one file per export and replica host. */
export const REPLICATION_STATUS_DIR = "/var/lib/swarm/replication";

export interface ReplicaPlan {
  readonly exportName: string;
  /** The export host: it sends. */
  readonly source: { readonly host: string; readonly meshAddress: string; readonly dataset: string };
  /** The replica host: it receives. */
  readonly host: string;
  readonly meshAddress: string;
  /** The pool on the replica host (`volume` already resolved). */
  readonly pool: PoolPlan;
  /** The dataset the replica is received into. */
  readonly target: string;
  readonly interval: Seconds;
  readonly retention: Retention;
  readonly maxLag: Seconds;
  /** The replica pool's scrub; absent with `scrub: off`. */
  readonly scrub?: ScrubPlan;
}

/** How far behind the replica may be before the export host's gate fails: `maxLag`, else four intervals. */
export function replicaMaxLag(replica: { readonly interval: Seconds; readonly maxLag?: Seconds }): Seconds {
  return replica.maxLag ?? 4 * replica.interval;
}

/** The tiers a replica keeps: its own `retention`, else its export's. */
export function replicaRetention(
  exported: { readonly snapshots: { readonly retention: Retention } },
  replica: { readonly retention?: Retention },
): Retention {
  return replica.retention ?? exported.snapshots.retention;
}

/** The replica host's user for an export: it can receive into the replica's dataset and nothing else. */
export function replicaUser(exportName: string): string {
  return `${exportName}-replica`;
}

export function replicaHome(exportName: string): string {
  return `/var/lib/swarm/replica/${exportName}`;
}

export function replicaDropinPath(exportName: string): string {
  return `${SSHD_DROPIN_DIR}/swarm-replica-${exportName}.conf`;
}

export function replicaKeysPath(exportName: string): string {
  return `${AUTHORIZED_KEYS_DIR}/${replicaUser(exportName)}`;
}

/** The command the sender's key can run on the replica host, whatever it asks for. */
export function receiveCommand(exportName: string): string {
  return `${RECEIVE_PROGRAM} ${exportName}`;
}

/** Files of the sending side, per export and replica host. */
export function senderFiles(exportName: string, host: string) {
  const stem = `${REPLICA_CONF_DIR}/${exportName}.to-${host}`;
  return {
    conf: `${stem}.conf`,
    key: `${stem}.key`,
    knownHosts: `${stem}.known_hosts`,
    status: `${REPLICATION_STATUS_DIR}/${exportName}.to-${host}`,
  };
}

export function replicateUnitName(exportName: string, host: string, suffix: "service" | "timer"): string {
  return `swarm-replicate-${exportName}-to-${host}.${suffix}`;
}

/** The tag of the hold that keeps the base of the next send on the export host. */
export function holdTag(host: string): string {
  return `swarm-replica-${host}`;
}

/** The replica host's hold on its newest snapshot, the base of the next send (zfs-replica-recv). */
export const BASE_HOLD_TAG = "swarm-replica-base";

const RECEIVE_TEXT = hostScript("zfs-replica-recv.sh", {
  CONF_DIR: REPLICA_CONF_DIR,
  SNAPSHOT_PROGRAM: SNAPSHOT_SCRIPT,
  HOLD_TAG: BASE_HOLD_TAG,
});
const SEND_TEXT = hostScript("zfs-replica-send.sh");

/** The parent of a dataset: the pool's root for `pool/x`. */
function parentOf(dataset: string): string {
  return dataset.slice(0, dataset.lastIndexOf("/"));
}

/** The replica's `CONF_DIR/<export>.conf`: what the forced command receives into and keeps. */
export function receiveConf(plan: ReplicaPlan): string {
  return [
    `# Installed by swarm: the replica of export ${plan.exportName} from ${plan.source.host}.`,
    `TARGET=${shellQuote(plan.target)}`,
    `RETENTION=${shellQuote(retentionArgs(plan.retention).join(" "))}`,
    "",
  ].join("\n");
}

/** The replica user's `authorized_keys`: the export host's key, from its mesh address, forced to receive. */
export function replicaAuthorizedKeys(plan: ReplicaPlan, senderKey: string): string {
  const key = ed25519Key(senderKey, `the replication key of export ${plan.exportName}`);
  return [
    `# Installed by swarm: ${plan.source.host} sends export ${plan.exportName} here, and can do nothing else.`,
    `restrict,from="${plan.source.meshAddress}/32",command="${receiveCommand(plan.exportName)}" ${key} ${plan.source.host}`,
    "",
  ].join("\n");
}

/** sshd lets the replica user in only from the export host, only over the mesh, only for the forced command. */
export function replicaDropin(plan: ReplicaPlan): string {
  const user = replicaUser(plan.exportName);
  return [
    ...dropinHeader(`the replica of export ${plan.exportName}`),
    ...meshOnlyMatch(
      user,
      `the export host ${plan.source.host}`,
      [`${plan.source.meshAddress}/32`],
      plan.meshAddress,
    ),
    "# The sender: a key from the swarm file, nothing but the receive.",
    `Match User ${user}`,
    `\tAuthorizedKeysFile ${sshdWord(replicaKeysPath(plan.exportName))}`,
    `\tForceCommand ${receiveCommand(plan.exportName)}`,
    ...LOCKED_SESSION,
    "",
  ].join("\n");
}

/**
 * The replica host's side: pool, the dataset's parent, the replica user
 * with the ZFS permissions of a receive and a prune delegated on that parent
 * (the dataset itself is made by the first receive), the programs, the
 * settings, the sender's key and the sshd drop-in, reloaded after `sshd -t`.
 */
export function receiveScript(plan: ReplicaPlan, senderKey: string, record: string): string {
  const q = shellQuote;
  const user = replicaUser(plan.exportName);
  const home = replicaHome(plan.exportName);
  const parent = parentOf(plan.target);
  const dropin = replicaDropinPath(plan.exportName);
  const owner = { exportName: `${plan.exportName} (its replica)` };
  const dropinParts = sshdDropinParts(dropin, replicaDropin(plan));
  return script(
    failFunction(plan.host),
    modulePart(owner),
    poolPart({ ...plan.pool, exportName: owner.exportName }),
    `command -v sshd >/dev/null || fail "sshd is missing: install openssh-server"
if ! zfs list -H -o name ${q(parent)} >/dev/null 2>&1; then
  zfs create -p -o canmount=off ${q(parent)} || fail "zfs create -p ${parent} failed"
  echo "swarm: created ${parent}, the parent of the replica"
fi
${forcedCommandUserPart(user, home)}# What a receive and a prune need, on the parent (to create the replica) and below it; the forced
# command narrows it to the replica's own dataset and its swarm snapshots.
# A writable dataset there is not a replica swarm received (each receive sets readonly=on): most
# likely this host's own export before a failover, with what was written on it since the last
# replication. A receive would fail on it, or with -F destroy it: it is left alone, and said so.
if zfs list -H -o name ${q(plan.target)} >/dev/null 2>&1 &&
  [ "$(zfs get -H -o value readonly ${q(plan.target)})" != on ]; then
  fail "${plan.target} exists and is writable, so it is not a replica of export ${plan.exportName} but a dataset of its own (this host's old export, after a failover?): keep what was written on it (docs/replicas.md, Failover), then rename it away (zfs rename ${plan.target} ${parent}/<a new name>) or point replicas[].dataset elsewhere"
fi
zfs allow -l -u "$user" create,mount,receive,readonly,canmount ${q(parent)}
zfs allow -d -u "$user" create,destroy,hold,mount,readonly,receive,release,canmount ${q(parent)}
`,
    writeFile({ path: SNAPSHOT_SCRIPT, content: snapshotScript(), mode: "0755" }),
    writeFile({ path: RECEIVE_PROGRAM, content: RECEIVE_TEXT, mode: "0755" }),
    writeFile({
      path: `${REPLICA_CONF_DIR}/${plan.exportName}.conf`,
      content: receiveConf(plan),
      mode: "0644",
    }),
    writeFile({
      path: replicaKeysPath(plan.exportName),
      content: replicaAuthorizedKeys(plan, senderKey),
      mode: "0644",
    }),
    ...dropinParts.slice(0, 2),
    `${dropinParts[2]}effective=$(sshd -T -C ${q(`user=${user},host=${plan.source.host},addr=${plan.source.meshAddress},laddr=${plan.meshAddress},lport=22`)})
grep -qx ${q(`forcecommand ${receiveCommand(plan.exportName)}`)} <<<"$effective" ||
  fail "sshd does not apply ${dropin}: make /etc/ssh/sshd_config Include ${SSHD_DROPIN_DIR}/*.conf at its top"
`,
    scrubInstallPart(plan.scrub, record),
  );
}

/** Takes the replica host's side away: the key, the drop-in and the settings. The replica's data stays. */
export function receiveTeardownScript(
  plan: Pick<ReplicaPlan, "exportName" | "target">,
  record: string,
): string {
  const q = shellQuote;
  const target = q(plan.target);
  return `# The hold kept the base of the next send; without a sender it would only keep a snapshot forever
# (and make zfs destroy of the dataset fail).
if zfs list -H -o name ${target} >/dev/null 2>&1; then
  zfs list -H -t snapshot -o name -d 1 ${target} | xargs -r zfs holds -H |
    awk -F '\t' '$2 == "${BASE_HOLD_TAG}" { print $1 }' | while read -r snapshot; do
      zfs release ${BASE_HOLD_TAG} "$snapshot"
      echo "swarm: released $snapshot"
    done
fi
rm -f ${q(replicaDropinPath(plan.exportName))} ${q(replicaKeysPath(plan.exportName))} ${q(`${REPLICA_CONF_DIR}/${plan.exportName}.conf`)}
sshd -t && systemctl reload ssh.service
echo "swarm: no longer receives export ${plan.exportName}; user ${replicaUser(plan.exportName)} and the replica's dataset are kept"
${scrubTeardownPart(record)}`;
}

/** The replica host's key, pinned under its name (the sender connects with HostKeyAlias). */
export function replicaKnownHosts(plan: ReplicaPlan, hostKey: string): string {
  return `${plan.host} ${ed25519Key(hostKey, `the host key of ${plan.host}`)}\n`;
}

/** The sender's settings (`zfs-replica-send CONF`). */
export function sendConf(plan: ReplicaPlan): string {
  const files = senderFiles(plan.exportName, plan.host);
  const values: [string, string][] = [
    ["EXPORT", plan.exportName],
    ["DATASET", plan.source.dataset],
    ["REPLICA", plan.host],
    ["ADDRESS", plan.meshAddress],
    ["LOGIN", replicaUser(plan.exportName)],
    ["KEY", files.key],
    ["KNOWN_HOSTS", files.knownHosts],
    ["STATUS", files.status],
    ["HOLD_TAG", holdTag(plan.host)],
  ];
  return [
    `# Installed by swarm: export ${plan.exportName} is replicated to ${plan.host}.`,
    ...values.map(([k, v]) => `${k}=${shellQuote(v)}`),
    "",
  ].join("\n");
}

export function replicateService(plan: ReplicaPlan, wireguardUnit: string): string {
  return renderUnit(unitHeader(`Replication of export ${plan.exportName} to ${plan.host}.`), [
    {
      name: "Unit",
      settings: [
        ["Description", `Send ${plan.source.dataset} to its replica ${plan.target} on ${plan.host}`],
        ["Documentation", `file:${SEND_PROGRAM}`],
        ["After", `zfs.target ${wireguardUnit}`],
        ["Wants", wireguardUnit],
      ],
    },
    {
      name: "Service",
      settings: [
        ["Type", "oneshot"],
        ["ExecStart", execLine("", SEND_PROGRAM, senderFiles(plan.exportName, plan.host).conf)],
        // A first send of a large dataset takes long, but a run that hangs must not hold the timer
        // for ever: one cut off here resumes where it stopped (zfs receive -s).
        ["TimeoutStartSec", "12h"],
        ["Nice", "10"],
        ["IOSchedulingClass", "idle"],
      ],
    },
  ]);
}

export function replicateTimer(plan: ReplicaPlan): string {
  return renderUnit(unitHeader(`Replication of export ${plan.exportName} to ${plan.host}.`), [
    {
      name: "Unit",
      settings: [
        ["Description", `Replicate ${plan.source.dataset} to ${plan.host} every ${timespan(plan.interval)}`],
      ],
    },
    {
      name: "Timer",
      settings: [
        ["OnActiveSec", "30s"],
        // Counted from the start of the previous run (systemd's timer_enter_waiting: the base is the
        // service's inactive_exit_timestamp), so a snapshot is taken every interval however long the
        // sends take: a loss between runs loses at most one interval of writes. A run longer than
        // the interval is not doubled: the next starts one interval after the timer elapsed.
        ["OnUnitActiveSec", timespan(plan.interval)],
        ["AccuracySec", "1s"],
      ],
    },
    { name: "Install", settings: [["WantedBy", "timers.target"]] },
  ]);
}

/** The sending key's file on the export host: its content arrives on stdin, a secret. */
export function sendKeyScript(plan: Pick<ReplicaPlan, "exportName" | "host">): string {
  return script(`install -d -m 0755 ${REPLICA_CONF_DIR}
swarm_write ${shellQuote(senderFiles(plan.exportName, plan.host).key)} 0600 root:root
`);
}

/** The export host's side: program, settings, pinned host key, units; the timer starts. */
export function sendScript(plan: ReplicaPlan, hostKey: string, wireguardUnit: string): string {
  const files = senderFiles(plan.exportName, plan.host);
  const service = replicateUnitName(plan.exportName, plan.host, "service");
  const timer = replicateUnitName(plan.exportName, plan.host, "timer");
  return script(
    failFunction(plan.source.host),
    `command -v ssh >/dev/null || fail "ssh is missing: install openssh-client"
install -d -m 0755 ${REPLICATION_STATUS_DIR}
`,
    writeFile({ path: SEND_PROGRAM, content: SEND_TEXT, mode: "0755" }),
    writeFile({ path: files.conf, content: sendConf(plan), mode: "0644" }),
    writeFile({ path: files.knownHosts, content: replicaKnownHosts(plan, hostKey), mode: "0644" }),
    writeFile({
      path: `${UNIT_DIR}/${service}`,
      content: replicateService(plan, wireguardUnit),
      mode: "0644",
    }),
    writeFile({ path: `${UNIT_DIR}/${timer}`, content: replicateTimer(plan), mode: "0644" }),
    `swarm_activate ${shellQuote(timer)} ${shellQuote(`${UNIT_DIR}/${timer}`)}\n`,
  );
}

/** Stops replicating; the hold on the last replicated snapshot is released, so it can be pruned. */
export function sendTeardownScript(plan: Pick<ReplicaPlan, "exportName" | "host" | "source">): string {
  const q = shellQuote;
  const files = senderFiles(plan.exportName, plan.host);
  const timer = replicateUnitName(plan.exportName, plan.host, "timer");
  const service = replicateUnitName(plan.exportName, plan.host, "service");
  const tag = holdTag(plan.host);
  // The service too: a run in progress would write its status and move the hold after they are gone.
  return `systemctl disable --now ${q(timer)} 2>/dev/null || true
systemctl stop ${q(service)} 2>/dev/null || true
rm -f ${q(`${UNIT_DIR}/${timer}`)} ${q(`${UNIT_DIR}/${service}`)} ${q(files.conf)} ${q(files.key)} ${q(files.knownHosts)} ${q(files.status)}
systemctl daemon-reload
if zfs list -H -o name ${q(plan.source.dataset)} >/dev/null 2>&1; then
  zfs list -H -t snapshot -o name -d 1 ${q(plan.source.dataset)} | xargs -r zfs holds -H |
    while IFS=$'\\t' read -r name tag _; do
      [ "$tag" != ${q(tag)} ] || zfs release ${q(tag)} "$name"
    done
fi
echo "swarm: export ${plan.exportName} is no longer replicated to ${plan.host}; the replica keeps what it has"
`;
}

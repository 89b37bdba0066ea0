/**
 * The health program every host carries (`swarm-health`), the drift
 * program it runs (`swarm-drift`), the per-host expectation file it reads,
 * the units that refresh its Prometheus metrics, and the scripts that
 * install them and run the gate.
 *
 * The programs are the same text on every host: what a host is expected to
 * have (peers, mounts, syncs, datasets, scrubbed pools, thresholds) is in its expectation
 * file, so a change of one host's expectations rewrites one small file.
 */
import { HealthConfig } from "../config/health";
import { FleetPlan } from "../config/model";
import { normalizePath, renderUnit, systemdEscapePath, timespan, unitHeader } from "./systemd";
import { hostScript, OWNED_DIR, script, shellQuote, writeFile } from "./shell";
import { WG_INTERFACE, WG_UNIT } from "./wireguard";
import { stateDir, statusPath, syncUnitNames } from "./unison";
import {
  EXPORT_SENTINEL,
  failFunction,
  retentionArgs,
  SNAPSHOT_PREFIX,
  SNAPSHOT_SCRIPT,
  snapshotUnitName,
} from "./zfs";
import { scrubPeriod, scrubStatusPath, scrubUnitName } from "./scrub";
import { replicaMaxLag, replicaRetention, replicateUnitName, senderFiles } from "./replica";

export const HEALTH_PROGRAM_PATH = "/usr/local/lib/swarm/swarm-health";
/** The program that compares the host with what swarm's steps recorded installing there; swarm-health runs it. */
export const DRIFT_PROGRAM_PATH = "/usr/local/lib/swarm/swarm-drift";
export const HEALTH_CONFIG_PATH = "/etc/swarm/health.conf";
export const METRICS_UNIT = "swarm-health-metrics";
export const METRICS_SERVICE_PATH = `/etc/systemd/system/${METRICS_UNIT}.service`;
export const METRICS_TIMER_PATH = `/etc/systemd/system/${METRICS_UNIT}.timer`;
/** The file the node exporter's textfile collector picks up in the textfile directory. */
export const METRICS_FILE = "swarm.prom";
export interface HealthPeer {
  readonly name: string;
  readonly publicKey: string;
  readonly meshAddress: string;
  /** Its IPv6 mesh address, on a dual-stack mesh: the gate pings both. */
  readonly meshAddress6?: string;
}

/** A host reached through the hub rather than over a tunnel of its own (hub routing). */
export interface HealthRoutedHost {
  readonly name: string;
  readonly meshAddress: string;
  /** Its IPv6 mesh address, on a dual-stack mesh: the gate pings both. */
  readonly meshAddress6?: string;
  /** The hub that forwards to it. */
  readonly via: string;
}

export interface HealthMount {
  /** Normalized absolute mount path. */
  readonly path: string;
  /** The `.automount` unit of the path. */
  readonly automountUnit: string;
}

export interface HealthExport {
  readonly dataset: string;
  /** The timer that snapshots the dataset. */
  readonly snapshotTimer: string;
}

/** A pool of the host that a timer scrubs. */
export interface HealthPool {
  readonly name: string;
  /** The schedule's word (`monthly`), for messages. */
  readonly schedule: string;
  /** The longest time between two scrubs of the schedule: a scrub is overdue after twice this. */
  readonly period: number;
  readonly timerUnit: string;
  readonly serviceUnit: string;
  /** Where the scrub program records the last finished scrub. */
  readonly statusFile: string;
}

/** A dataset of the host that a timer prunes: the export's, or a replica kept here. */
export interface HealthPrune {
  readonly dataset: string;
  /** The arguments of `zfs-snapshot` that print what its next run would do. */
  readonly dryRunArgs: readonly string[];
}

/** A replica of one of the host's exports on another host. */
export interface HealthReplica {
  readonly exportName: string;
  /** The replica host. */
  readonly host: string;
  /** The timer that runs the sends. */
  readonly timerUnit: string;
  /** Where each run records how it ended. */
  readonly statusFile: string;
  /** Seconds the replica may be behind before the gate fails. */
  readonly maxLag: number;
}

export interface HealthSync {
  readonly name: string;
  readonly timerUnit: string;
  readonly serviceUnit: string;
  /** Where the service records how its last run ended. */
  readonly statusFile: string;
  /** unison's log, which counts the conflicts a run skipped. */
  readonly log: string;
}

/** What one host is expected to have: the content of its expectation file. */
export interface HealthExpectations {
  readonly host: string;
  readonly thresholds: HealthConfig;
  /** Sorted by name. */
  readonly peers: readonly HealthPeer[];
  /** Hosts reached through the hub, sorted by name. */
  readonly routed: readonly HealthRoutedHost[];
  /** Sorted by path. */
  readonly mounts: readonly HealthMount[];
  /** Sorted by name. */
  readonly syncs: readonly HealthSync[];
  /** Exports served by the host, sorted by dataset. */
  readonly exports: readonly HealthExport[];
  /** Pools of those exports and of the replicas kept here that a timer scrubs, each once, sorted by name. */
  readonly pools: readonly HealthPool[];
  /** Replicas of the host's exports, sorted by export, then host. */
  readonly replicas: readonly HealthReplica[];
  /** Datasets whose next prune `swarm-health json` shows, sorted by dataset. */
  readonly prunes: readonly HealthPrune[];
}

/** The IPv6 mesh address as an optional field: absent, not undefined, on an IPv4-only mesh. */
function address6(host: { readonly meshAddress6?: string }): { meshAddress6?: string } {
  return host.meshAddress6 === undefined ? {} : { meshAddress6: host.meshAddress6 };
}

function byKey<T>(key: (item: T) => string): (a: T, b: T) => number {
  return (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}

/**
 * A host's expectations from the fleet plan and the resolved WireGuard
 * public keys of its peers. Throws when a peer's key is missing, which is a
 * wiring mistake rather than a config error.
 */
export function healthExpectations(
  plan: FleetPlan,
  hostName: string,
  thresholds: HealthConfig,
  publicKeys: Readonly<Record<string, string>>,
): HealthExpectations {
  const host = plan.byName.get(hostName);
  if (host === undefined) {
    throw new Error(`no host ${hostName} in the fleet plan`);
  }
  const peers = host.peers.map((peer) => {
    const publicKey = publicKeys[peer.name];
    const planned = plan.byName.get(peer.name);
    if (publicKey === undefined || planned === undefined) {
      throw new Error(
        `the health expectations of ${hostName} need the public key and address of peer ${peer.name}`,
      );
    }
    return { name: peer.name, publicKey, meshAddress: planned.meshAddress, ...address6(planned) };
  });
  return {
    host: host.name,
    thresholds,
    peers: peers.sort(byKey((p) => p.name)),
    routed: host.routed.map((r) => ({
      name: r.name,
      meshAddress: r.meshAddress,
      ...address6(r),
      via: r.via,
    })),
    mounts: host.mounts
      .map((m) => ({ path: normalizePath(m.path), automountUnit: `${systemdEscapePath(m.path)}.automount` }))
      .sort(byKey((m) => m.path)),
    syncs: host.syncs
      .map((s) => {
        const units = syncUnitNames(s.name);
        return {
          name: s.name,
          timerUnit: units.timer,
          serviceUnit: units.service,
          statusFile: statusPath(s.name),
          log: `${stateDir(s.name)}/unison.log`,
        };
      })
      .sort(byKey((s) => s.name)),
    exports: host.exports
      .map((e) => ({ dataset: e.dataset, snapshotTimer: snapshotUnitName(e.name, "timer") }))
      .sort(byKey((e) => e.dataset)),
    pools: [...new Map([...host.exports, ...host.replicas].map((e) => [e.pool.name, e.pool])).values()]
      .flatMap(({ name, scrub }) =>
        scrub === "off"
          ? []
          : [
              {
                name,
                schedule: scrub,
                period: scrubPeriod(scrub),
                timerUnit: scrubUnitName(name, "timer"),
                serviceUnit: scrubUnitName(name, "service"),
                statusFile: scrubStatusPath(name),
              },
            ],
      )
      .sort(byKey((p) => p.name)),
    replicas: host.exports
      .flatMap((e) =>
        e.replicas.map((r) => ({
          exportName: e.name,
          host: r.host,
          timerUnit: replicateUnitName(e.name, r.host, "timer"),
          statusFile: senderFiles(e.name, r.host).status,
          maxLag: replicaMaxLag(r),
        })),
      )
      .sort(byKey((r) => `${r.exportName}\t${r.host}`)),
    prunes: [
      ...host.exports.map((e) => ({
        dataset: e.dataset,
        dryRunArgs: ["--dry-run", e.dataset, ...retentionArgs(e.snapshots.retention)],
      })),
      ...plan.config.exports.flatMap((e) =>
        e.replicas
          .filter((r) => r.host === host.name)
          .map((r) => ({
            dataset: r.dataset,
            dryRunArgs: ["--dry-run", "--no-snapshot", r.dataset, ...retentionArgs(replicaRetention(e, r))],
          })),
      ),
    ].sort(byKey((p) => p.dataset)),
  };
}

function bashArray(name: string, values: readonly string[]): string {
  if (values.length === 0) {
    return `${name}=()`;
  }
  return `${name}=(\n${values.map((v) => `  ${shellQuote(v)}`).join("\n")}\n)`;
}

/** A table as bash arrays, one per column, in the order given: `NAME=(...)` for each. */
function bashColumns<T>(rows: readonly T[], columns: Readonly<Record<string, (row: T) => string>>): string[] {
  return Object.entries(columns).map(([name, cell]) => bashArray(name, rows.map(cell)));
}

/**
 * The expectation file `swarm-health` sources: bash assignments, one array
 * per field so no value is ever split on spaces. Deterministic.
 */
export function renderHealthConfig(values: HealthExpectations): string {
  const t = values.thresholds;
  // An IPv4-only mesh's file stays as it was before IPv6 mesh addresses existed.
  const dualStack = [...values.peers, ...values.routed].some((h) => h.meshAddress6 !== undefined);
  const six = dualStack ? ", IPv6 mesh address ('' for none)" : "";
  return `${[
    "# What swarm-health expects of this host.",
    "# Installed by swarm; changes made here are overwritten on the next deploy.",
    `HOST=${shellQuote(values.host)}`,
    `WG_INTERFACE=${WG_INTERFACE}`,
    `WG_UNIT=${WG_UNIT}.service`,
    `HANDSHAKE_WAIT=${t.handshakeWait}`,
    `MAX_HANDSHAKE_AGE=${t.maxHandshakeAge}`,
    `PING_COUNT=${t.pingCount}`,
    `MOUNT_TIMEOUT=${t.mountTimeout}`,
    `SYNC_WAIT=${t.syncWait}`,
    `TEXTFILE_DIR=${shellQuote(t.textfileDir)}`,
    `SENTINEL=${shellQuote(EXPORT_SENTINEL)}`,
    `# Peers on ${WG_INTERFACE}: name, public key, mesh address${six}.`,
    ...bashColumns(values.peers, {
      PEER_NAMES: (p) => p.name,
      PEER_KEYS: (p) => p.publicKey,
      PEER_ADDRESSES: (p) => p.meshAddress,
      ...(dualStack ? { PEER_ADDRESSES6: (p: HealthPeer) => p.meshAddress6 ?? "" } : {}),
    }),
    `# Hosts reached through the hub: name, mesh address${six}, hub.`,
    ...bashColumns(values.routed, {
      ROUTED_NAMES: (r) => r.name,
      ROUTED_ADDRESSES: (r) => r.meshAddress,
      ...(dualStack ? { ROUTED_ADDRESSES6: (r: HealthRoutedHost) => r.meshAddress6 ?? "" } : {}),
      ROUTED_VIA: (r) => r.via,
    }),
    "# Automounted exports: mount path, automount unit.",
    ...bashColumns(values.mounts, { MOUNT_PATHS: (m) => m.path, MOUNT_UNITS: (m) => m.automountUnit }),
    "# Syncs: name, timer, service, status file, unison log.",
    ...bashColumns(values.syncs, {
      SYNC_NAMES: (s) => s.name,
      SYNC_TIMERS: (s) => s.timerUnit,
      SYNC_SERVICES: (s) => s.serviceUnit,
      SYNC_STATUS_FILES: (s) => s.statusFile,
      SYNC_LOGS: (s) => s.log,
    }),
    "# Exports of this host: ZFS dataset, snapshot timer.",
    ...bashColumns(values.exports, { DATASETS: (e) => e.dataset, SNAPSHOT_TIMERS: (e) => e.snapshotTimer }),
    `SNAPSHOT_PREFIX=${shellQuote(SNAPSHOT_PREFIX)}`,
    "# Scrubbed pools: name, schedule, its longest period in seconds, timer, service, status file.",
    ...bashColumns(values.pools, {
      POOLS: (p) => p.name,
      SCRUB_SCHEDULES: (p) => p.schedule,
      SCRUB_PERIODS: (p) => String(p.period),
      SCRUB_TIMERS: (p) => p.timerUnit,
      SCRUB_SERVICES: (p) => p.serviceUnit,
      SCRUB_STATUS_FILES: (p) => p.statusFile,
    }),
    "# Replicas of this host's exports: export, replica host, timer, status file, maxLag in seconds.",
    ...bashColumns(values.replicas, {
      REPLICA_EXPORTS: (r) => r.exportName,
      REPLICA_HOSTS: (r) => r.host,
      REPLICA_TIMERS: (r) => r.timerUnit,
      REPLICA_STATUS_FILES: (r) => r.statusFile,
      REPLICA_MAX_LAGS: (r) => String(r.maxLag),
    }),
    "# Pruned datasets: dataset, the arguments of zfs-snapshot that print its next prune.",
    ...bashColumns(values.prunes, {
      PRUNE_DATASETS: (p) => p.dataset,
      PRUNE_ARGS: (p) => p.dryRunArgs.join(" "),
    }),
  ].join("\n")}\n`;
}

/** The oneshot service that rewrites the metrics file. */
export function renderMetricsService(): string {
  return renderUnit(unitHeader("Writes this host's swarm health as node exporter textfile metrics."), [
    {
      name: "Unit",
      settings: [
        ["Description", "swarm health metrics for the node exporter textfile collector"],
        ["Documentation", `file:${HEALTH_PROGRAM_PATH}`],
      ],
    },
    {
      name: "Service",
      settings: [
        ["Type", "oneshot"],
        ["ExecStart", `${HEALTH_PROGRAM_PATH} metrics`],
        ["Nice", 10],
        // Pings to unreachable peers take a second or two each; a hung sshfs must not hold the timer.
        ["TimeoutStartSec", "2min"],
      ],
    },
  ]);
}

/** The timer that runs the metrics service every `interval` seconds. */
export function renderMetricsTimer(interval: number): string {
  return renderUnit(unitHeader(`Refreshes the swarm health metrics every ${timespan(interval)}.`), [
    { name: "Unit", settings: [["Description", `Refresh swarm health metrics every ${timespan(interval)}`]] },
    {
      name: "Timer",
      settings: [
        // Enabled after boot, OnBootSec has passed already, so the first run is immediate.
        ["OnBootSec", timespan(interval)],
        ["OnUnitActiveSec", timespan(interval)],
        // The default accuracy of 1 min would let the file go stale for up to twice the interval.
        ["AccuracySec", "1s"],
      ],
    },
    { name: "Install", settings: [["WantedBy", "timers.target"]] },
  ]);
}

/**
 * Installs the program, the host's expectation file and the metrics units,
 * and enables the timer. When the textfile directory moved, the old metrics
 * file is removed so no collector keeps reading stale values. With `gate`,
 * the gate runs last (see `healthGateStep`), so one command installs and checks.
 */
export function healthInstallScript(values: HealthExpectations, gate = false): string {
  const dir = values.thresholds.textfileDir;
  return script(
    failFunction(values.host),
    `old_dir=$(sed -n 's/^TEXTFILE_DIR=//p' ${HEALTH_CONFIG_PATH} 2>/dev/null | tr -d "'" || true)
if [ -n "$old_dir" ] && [ "$old_dir" != ${shellQuote(dir)} ] && [ -e "$old_dir/${METRICS_FILE}" ]; then
  rm -f "$old_dir/${METRICS_FILE}"
  echo "swarm: removed $old_dir/${METRICS_FILE} (metrics now go to ${dir})"
fi
`,
    writeFile({ path: HEALTH_PROGRAM_PATH, mode: "0755", content: renderHealthProgram() }),
    writeFile({ path: DRIFT_PROGRAM_PATH, mode: "0755", content: renderDriftProgram() }),
    writeFile({ path: HEALTH_CONFIG_PATH, mode: "0644", content: renderHealthConfig(values) }),
    writeFile({ path: METRICS_SERVICE_PATH, mode: "0644", content: renderMetricsService() }),
    writeFile({
      path: METRICS_TIMER_PATH,
      mode: "0644",
      content: renderMetricsTimer(values.thresholds.metricsInterval),
    }),
    `if [ ! -d ${shellQuote(dir)} ]; then
  install -d -m 0755 ${shellQuote(dir)}
  echo "swarm: created ${dir}"
fi
swarm_activate ${shellQuote(`${METRICS_UNIT}.timer`)} ${METRICS_TIMER_PATH}
for program in ${HEALTH_PROGRAM_PATH} ${DRIFT_PROGRAM_PATH}; do
  bash -n "$program" || fail "$program does not parse with this host's bash; swarm-health needs bash 4.4 or later"
done
`,
    ...(gate ? [healthGateStep(values.host)] : []),
  );
}

/** Removes everything the install script put on the host. */
export function healthTeardownScript(textfileDir: string): string {
  return `systemctl disable --now --quiet ${METRICS_UNIT}.timer 2>/dev/null || true
rm -f ${METRICS_SERVICE_PATH} ${METRICS_TIMER_PATH} ${HEALTH_PROGRAM_PATH} ${DRIFT_PROGRAM_PATH} ${HEALTH_CONFIG_PATH} ${shellQuote(`${textfileDir}/${METRICS_FILE}`)}
systemctl daemon-reload
echo "swarm: removed swarm-health and its metrics"
`;
}

/** The last step of the install script: runs the gate, whose exit code fails the command and whose output names what is broken. */
export function healthGateStep(host: string): string {
  return `# Gate for ${host}: every peer answers with a fresh handshake, every mount comes up, every sync is on time.
${HEALTH_PROGRAM_PATH} gate
`;
}

/** The `swarm-health` program: the same text on every host. */
export function renderHealthProgram(): string {
  return HEALTH_PROGRAM;
}

/** The `swarm-drift` program: the same text on every host. */
export function renderDriftProgram(): string {
  return DRIFT_PROGRAM;
}

const HEALTH_PROGRAM = hostScript("swarm-health.sh", {
  HEALTH_PROGRAM: HEALTH_PROGRAM_PATH,
  DRIFT_PROGRAM: DRIFT_PROGRAM_PATH,
  SNAPSHOT_PROGRAM: SNAPSHOT_SCRIPT,
});
const DRIFT_PROGRAM = hostScript("swarm-drift.sh", { OWNED_DIR });

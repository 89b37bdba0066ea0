/**
 * What a host reports (`swarm-health json`) and how the admin's tools reach
 * every host of a stack to ask for it: addresses from the stack (existing
 * hosts) or its outputs (Hetzner hosts), the admin key from `--key` /
 * `SWARM_SSH_KEY` (a file, or the key itself), every host key checked
 * against the stack's pin, else against `--known-hosts` or the user's
 * known_hosts; an unknown key is refused, never learnt. The lab reaches its
 * hosts through its VM with its own key, unless a key is given. Shared by
 * `npm run status` and `npm run repair`.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadStack } from "../config/load";
import { FleetConfig } from "../config/types";
import { hostKeyMismatch } from "../components/hostKey";
import { LAB_KEY, SSH_CONFIG, labHostKeys } from "../lab/fleet";
import { HEALTH_PROGRAM_PATH } from "../templates/health";

export type Level = "ok" | "WARN" | "FAIL";

export interface PeerReport {
  readonly name: string;
  readonly address: string;
  /** The IPv6 mesh address: null on an IPv4-only mesh, absent from hosts whose health program predates it. */
  readonly address6?: string | null;
  /** Seconds since the latest handshake; null when there has been none. */
  readonly handshakeAge: number | null;
  readonly pingsAnswered: number;
  /** Pings answered at `address6`; null without one, absent like it. */
  readonly pingsAnswered6?: number | null;
  readonly rxBytes: number | null;
  readonly txBytes: number | null;
  readonly level: Level;
  readonly detail: string;
}

export interface MountReport {
  readonly path: string;
  readonly mounted: boolean;
  readonly level: Level;
  readonly detail: string;
}

export interface SyncReport {
  readonly name: string;
  readonly timerActive: boolean;
  readonly lastExitCode: number | null;
  /** When the last run ended (seconds since the epoch); null before the first. */
  readonly lastRun: number | null;
  readonly lastSuccess: number | null;
  /** Conflicts the last run skipped; null when unknown. */
  readonly conflicts: number | null;
  readonly level: Level;
  readonly detail: string;
}

export interface DatasetReport {
  readonly name: string;
  readonly usedBytes: number | null;
  readonly availableBytes: number | null;
  readonly snapshots: number;
  readonly level: Level;
}

/** A pool that a timer scrubs, and what its last finished scrub found. */
export interface PoolReport {
  readonly name: string;
  /** When the last finished scrub ended (seconds since the epoch); null before the first. */
  readonly lastScrub: number | null;
  /** Errors that scrub could not repair; null before the first. */
  readonly scrubErrors: number | null;
  /** Bytes that scrub repaired, as exact as zpool prints them; null before the first. */
  readonly scrubRepairedBytes: number | null;
  readonly level: Level;
  readonly detail: string;
}

function isPoolReport(value: unknown): value is PoolReport {
  const pool = value as Record<string, unknown> | null;
  const count = (v: unknown) => v === null || (typeof v === "number" && Number.isInteger(v) && v >= 0);
  return (
    typeof pool === "object" &&
    pool !== null &&
    typeof pool.name === "string" &&
    typeof pool.detail === "string" &&
    ["ok", "WARN", "FAIL"].includes(pool.level as string) &&
    count(pool.lastScrub) &&
    count(pool.scrubErrors) &&
    count(pool.scrubRepairedBytes)
  );
}

export interface CheckReport {
  readonly level: Level;
  readonly what: string;
  readonly detail: string;
}

/** What a host holds differently from what a step of swarm installed there (`swarm-drift`). */
export interface DriftItem {
  /** The remote command that installed it, by resource name: what `swarm:repairs` names. */
  readonly step: string;
  readonly kind: "file" | "unit" | "peer" | "zfs" | "user";
  /** The path, unit, `wg0 peer <name>` or `<dataset> <property>`. */
  readonly item: string;
  readonly detail: string;
}

/** The kinds of drift, in the order the status table counts them. */
export const DRIFT_KINDS = [
  "file",
  "unit",
  "peer",
  "zfs",
  "user",
] as const satisfies readonly DriftItem["kind"][];

function isDriftItem(value: unknown): value is DriftItem {
  const item = value as Record<string, unknown> | null;
  return (
    typeof item === "object" &&
    item !== null &&
    ["step", "item", "detail"].every((key) => typeof item[key] === "string") &&
    (DRIFT_KINDS as readonly unknown[]).includes(item.kind)
  );
}

/** A replica of one of the host's exports, as its last replication run left it. */
export interface ReplicaReport {
  readonly export: string;
  /** The replica host. */
  readonly host: string;
  /** Seconds the replica is behind: since its newest snapshot was taken (null before any run). */
  readonly lagSeconds: number | null;
  readonly maxLagSeconds: number | null;
  /** The last run's result: ok, failed or diverged; empty before the first. */
  readonly result: string;
  readonly bytes: number | null;
  readonly finished: number | null;
  readonly level: Level;
  readonly detail: string;
}

function isReplicaReport(value: unknown): value is ReplicaReport {
  const r = value as Record<string, unknown> | null;
  const count = (v: unknown) => v === null || typeof v === "number";
  return (
    typeof r === "object" &&
    r !== null &&
    ["export", "host", "result", "level", "detail"].every((key) => typeof r[key] === "string") &&
    ["lagSeconds", "maxLagSeconds", "bytes", "finished"].every((key) => count(r[key]))
  );
}

/** What the next prune of one dataset of the host would destroy (`zfs-snapshot --dry-run`). */
export interface PruneReport {
  readonly dataset: string;
  /** null when the dry run failed (`error` says why). */
  readonly destroy: readonly { readonly snapshot: string; readonly why: string }[] | null;
  readonly error?: string;
}

function isPruneReport(value: unknown): value is PruneReport {
  const p = value as Record<string, unknown> | null;
  if (typeof p !== "object" || p === null || typeof p.dataset !== "string") {
    return false;
  }
  if (p.destroy === null) {
    return typeof p.error === "string";
  }
  return (
    Array.isArray(p.destroy) &&
    p.destroy.every(
      (d: Record<string, unknown> | null) =>
        typeof d === "object" && d !== null && typeof d.snapshot === "string" && typeof d.why === "string",
    )
  );
}

/** What `swarm-health json` prints. */
export interface HostReport {
  readonly host: string;
  /** The host's clock when it answered: ages are measured against it, not the admin's clock. */
  readonly time: number;
  readonly maxHandshakeAge: number;
  readonly pingCount: number;
  readonly peers: readonly PeerReport[];
  readonly mounts: readonly MountReport[];
  readonly syncs: readonly SyncReport[];
  readonly datasets: readonly DatasetReport[];
  /** Scrubbed pools; absent from hosts whose health program predates scrubs. */
  readonly pools?: readonly PoolReport[];
  /** The next prune of each dataset; absent from hosts whose health program predates it. */
  readonly prunes?: readonly PruneReport[];
  /** Replicas of the host's exports; absent from hosts whose health program predates replicas. */
  readonly replicas?: readonly ReplicaReport[];
  readonly checks: readonly CheckReport[];
  /** Drifted items; absent from hosts whose health program predates drift detection. */
  readonly drift?: readonly DriftItem[];
}

/** One host of the table: its report, or why there is none. */
export interface StatusRow {
  readonly host: string;
  readonly report?: HostReport;
  readonly error?: string;
}

/** Parses the output of `swarm-health json`; throws saying what is wrong with it. */
export function parseHostReport(text: string): HostReport {
  const line = text.trim().split("\n").pop() ?? "";
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new Error(`swarm-health printed no JSON report: ${JSON.stringify(line.slice(0, 200))}`);
  }
  const report = value as HostReport;
  const lists = ["peers", "mounts", "syncs", "datasets", "checks"] as const;
  if (
    typeof report !== "object" ||
    report === null ||
    typeof report.host !== "string" ||
    typeof report.time !== "number" ||
    lists.some((key) => !Array.isArray(report[key]))
  ) {
    throw new Error(
      "swarm-health printed a report without host, time, peers, mounts, syncs, datasets and checks",
    );
  }
  if (report.pools !== undefined && !(Array.isArray(report.pools) && report.pools.every(isPoolReport))) {
    throw new Error(
      "swarm-health printed a pool list whose items are not {name, lastScrub, scrubErrors, scrubRepairedBytes (each a count or null), level, detail}",
    );
  }
  if (report.prunes !== undefined && !(Array.isArray(report.prunes) && report.prunes.every(isPruneReport))) {
    throw new Error(
      "swarm-health printed a prune list whose items are not {dataset, destroy: [{snapshot, why}] or null with an error}",
    );
  }
  if (
    report.replicas !== undefined &&
    !(Array.isArray(report.replicas) && report.replicas.every(isReplicaReport))
  ) {
    throw new Error(
      "swarm-health printed a replica list whose items are not {export, host, lagSeconds, maxLagSeconds, result, bytes, finished, level, detail}",
    );
  }
  if (report.drift !== undefined && !(Array.isArray(report.drift) && report.drift.every(isDriftItem))) {
    throw new Error(
      `swarm-health printed a drift list whose items are not {step, kind (${DRIFT_KINDS.join(", ")}), item, detail}`,
    );
  }
  return report;
}

/** Whether a row counts as healthy: reachable, and no check failed (warnings are fine). */
export function rowHealthy(row: StatusRow): boolean {
  return row.report !== undefined && row.report.checks.every((c) => c.level !== "FAIL");
}

/** How to reach one host over SSH. */
export interface SshTarget {
  readonly host: string;
  readonly address: string;
  readonly port: number;
  readonly user: string;
  /** The host key the stack pins for the host, when it has one. */
  readonly hostKey?: string;
}

/**
 * Where each host of the stack is reached: existing hosts from the config,
 * Hetzner hosts from the stack outputs (`hosts.<name>.ssh` = `user@address:port`).
 * Hosts with no known address are returned with the reason.
 */
export function sshTargets(
  config: FleetConfig,
  outputs: Record<string, unknown> | undefined,
  outputsProblem: string,
): { targets: SshTarget[]; missing: StatusRow[] } {
  const targets: SshTarget[] = [];
  const missing: StatusRow[] = [];
  const hosts = (outputs?.hosts ?? {}) as Record<string, { ssh?: unknown; hostKey?: unknown } | undefined>;
  for (const host of config.hosts) {
    if (host.existing !== undefined) {
      targets.push({ host: host.name, ...host.existing });
      continue;
    }
    const ssh = hosts[host.name]?.ssh;
    const hostKey = hosts[host.name]?.hostKey;
    const match = typeof ssh === "string" ? /^([^@]+)@(.+):(\d+)$/.exec(ssh) : null;
    if (match) {
      targets.push({
        host: host.name,
        user: match[1],
        address: match[2].replace(/^\[(.*)\]$/, "$1"),
        port: Number(match[3]),
        ...(typeof hostKey === "string" ? { hostKey } : {}),
      });
    } else {
      missing.push({
        host: host.name,
        error:
          outputs === undefined
            ? `a Hetzner host's address is in the stack outputs, which could not be read: ${outputsProblem}`
            : `the stack outputs have no hosts.${host.name}.ssh: run pulumi up for this stack first`,
      });
    }
  }
  return { targets, missing };
}

export interface SshOptions {
  /** The ssh program. Defaults to `ssh` on PATH. */
  readonly ssh?: string;
  /** Private key file. */
  readonly key?: string;
  /** known_hosts file to check host keys against (instead of the user's), for hosts the stack pins no key for. */
  readonly knownHosts?: string;
  /** known_hosts file written by `writePinnedKeys`: every pinned key under its host's alias. */
  readonly pinnedKeys?: string;
  /** ssh_config file to use instead of the user's (the lab's reaches its hosts through the lab VM). */
  readonly sshConfig?: string;
}

/** The `ssh` arguments that run `swarm-health json` on a host. Host keys are always checked. */
export function sshArgs(target: SshTarget, opts: SshOptions): string[] {
  const args = opts.sshConfig === undefined ? [] : ["-F", opts.sshConfig];
  args.push("-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=yes");
  if (opts.key !== undefined) {
    args.push("-i", opts.key, "-o", "IdentitiesOnly=yes");
  }
  if (target.hostKey !== undefined && opts.pinnedKeys !== undefined) {
    // The key and only its algorithm, as the provider pins it.
    args.push("-o", `UserKnownHostsFile=${opts.pinnedKeys}`, "-o", "GlobalKnownHostsFile=/dev/null");
    args.push("-o", `HostKeyAlias=${pinnedAlias(target.host)}`);
    args.push("-o", `HostKeyAlgorithms=${target.hostKey.trim().split(/\s+/)[0]}`);
  } else if (opts.knownHosts !== undefined) {
    args.push("-o", `UserKnownHostsFile=${opts.knownHosts}`, "-o", "GlobalKnownHostsFile=/dev/null");
  }
  const remote = `${target.user === "root" ? "" : "sudo -n "}${HEALTH_PROGRAM_PATH} json`;
  args.push("-p", String(target.port), "--", `${target.user}@${target.address}`, remote);
  return args;
}

const pinnedAlias = (host: string) => `swarm-host-${host}`;

/** A known_hosts text with the key of every target that has one, under its host's alias. */
export function pinnedKnownHosts(targets: readonly SshTarget[]): string {
  return targets
    .filter((t) => t.hostKey !== undefined)
    .map((t) => `${pinnedAlias(t.host)} ${(t.hostKey as string).trim()}\n`)
    .join("");
}

/** Asks one host for its report. Never throws: a failure becomes the row's error. */
export function askHost(target: SshTarget, opts: SshOptions, timeoutMs = 90_000): Promise<StatusRow> {
  return new Promise((resolve) => {
    const child = spawn(opts.ssh ?? "ssh", sshArgs(target, opts), { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ host: target.host, error: `cannot run ssh: ${e.message}` });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString().trim();
      const where = `${target.user}@${target.address}:${target.port}`;
      if (signal !== null) {
        resolve({ host: target.host, error: `${where} did not answer within ${timeoutMs / 1000}s` });
      } else if (code === 255) {
        const mismatch = hostKeyMismatch(
          { host: target.address, port: target.port, hostKey: target.hostKey },
          stderr,
        );
        resolve({
          host: target.host,
          error: mismatch ?? `ssh ${where} failed: ${lastLine(stderr) || "no message"}`,
        });
      } else {
        try {
          resolve({ host: target.host, report: parseHostReport(Buffer.concat(out).toString()) });
        } catch (e) {
          const hint =
            code === 127
              ? `${HEALTH_PROGRAM_PATH} is not installed: converge the host with pulumi up first`
              : lastLine(stderr);
          resolve({ host: target.host, error: `${(e as Error).message}${hint ? ` (${hint})` : ""}` });
        }
      }
    });
  });
}

function lastLine(text: string): string {
  return (
    text
      .split("\n")
      .filter((l) => l.trim() !== "")
      .pop() ?? ""
  );
}

/** The stack's outputs from the Pulumi CLI, or why they could not be read. */
function stackOutputs(stack: string, root: string): { outputs?: Record<string, unknown>; problem: string } {
  const candidates = ["pulumi", path.join(root, "node_modules", ".bin", "pulumi")];
  let problem =
    "no Pulumi CLI found: install it (https://www.pulumi.com/docs/install/) and log in to the stack's backend";
  for (const cli of candidates) {
    const result = spawnSync(cli, ["stack", "output", "--json", "--stack", stack], {
      cwd: root,
      encoding: "utf8",
      timeout: 60_000,
    });
    if (result.error !== undefined) {
      continue;
    }
    if (result.status === 0) {
      try {
        return { outputs: JSON.parse(result.stdout) as Record<string, unknown>, problem: "" };
      } catch {
        return { problem: `pulumi stack output printed no JSON` };
      }
    }
    problem = `pulumi stack output --stack ${stack} failed: ${lastLine(result.stderr) || `exit ${result.status}`}`;
  }
  return { problem };
}

/** A key given as text (SWARM_SSH_KEY holding the key itself) goes to a private temporary file. */
function keyFile(key: string | undefined): { file?: string; cleanup: () => void } {
  if (key === undefined || !key.includes("PRIVATE KEY-----")) {
    return { file: key, cleanup: () => undefined };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-status-"));
  const file = path.join(dir, "key");
  fs.writeFileSync(file, key.endsWith("\n") ? key : `${key}\n`, { mode: 0o600 });
  return { file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export interface AskFleetOptions {
  /** Where the stack files live. */
  readonly root: string;
  /** The admin's private key: a file, or the key itself (`SWARM_SSH_KEY`). */
  readonly key?: string;
  /** known_hosts for the hosts the stack pins no key for. */
  readonly knownHosts?: string;
  /** The ssh program; `ssh` on PATH unless given (tests give a stand-in). */
  readonly ssh?: string;
}

/** The stack's validated config and one row per host: its report, or why there is none. */
export interface FleetAnswers {
  readonly config: FleetConfig;
  readonly rows: StatusRow[];
}

/**
 * Loads the stack (throwing `loadStack`'s StackLoadError when it is missing
 * or invalid) and asks every host. Never throws for a host: an unreachable
 * one is a row with an error.
 */
export async function askFleet(stack: string, opts: AskFleetOptions): Promise<FleetAnswers> {
  // The lab keeps its admin key, the hosts' keys and the route through its VM in its state directory.
  const isLab = stack === "lab" && fs.existsSync(LAB_KEY);
  const { config } = loadStack(stack, { dir: opts.root, pinHostKeys: isLab ? labHostKeys() : undefined });
  const labRoute = isLab && opts.key === undefined;
  const key = labRoute ? LAB_KEY : opts.key;
  const sshConfig = labRoute ? SSH_CONFIG : undefined;
  const needsOutputs = config.hosts.some((h) => h.existing === undefined);
  const { outputs, problem } = needsOutputs ? stackOutputs(stack, opts.root) : { outputs: {}, problem: "" };
  const { targets, missing } = sshTargets(config, outputs, problem);
  const secretKey = keyFile(key);
  const pinDir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-ask-"));
  const pinnedKeys = path.join(pinDir, "known_hosts");
  fs.writeFileSync(pinnedKeys, pinnedKnownHosts(targets), { mode: 0o600 });
  try {
    const asked = await Promise.all(
      targets.map((t) =>
        askHost(t, {
          ssh: opts.ssh,
          key: secretKey.file,
          knownHosts: opts.knownHosts,
          pinnedKeys,
          sshConfig,
        }),
      ),
    );
    return { config, rows: [...asked, ...missing] };
  } finally {
    secretKey.cleanup();
    fs.rmSync(pinDir, { recursive: true, force: true });
  }
}

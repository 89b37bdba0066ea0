/**
 * `npm run status -- <stack> [--drift] [--key FILE] [--known-hosts FILE]`:
 * asks every host of a stack for its health over SSH (`swarm-health json`,
 * in parallel) and prints one table, host by host: mesh peers up and the
 * worst handshake age, mounts, last sync, conflicts, dataset usage, and how
 * many things differ from what swarm installed (drift); `--drift` lists
 * each of them. Exits 1 when a check failed or a host could not be asked
 * (drift is a warning).
 *
 * Addresses: existing hosts from the stack's config, Hetzner hosts from the
 * stack's outputs (`pulumi stack output`). The SSH key comes from `--key` or
 * `SWARM_SSH_KEY` (a file, or the key itself), else from ssh's own defaults.
 * Host keys are always checked: against the key the stack pins for the host
 * (existing hosts' `hostKey` in config, Hetzner hosts' `hosts.<name>.hostKey`
 * output), or, for a host the stack has none for, against `--known-hosts` or
 * the user's known_hosts. An unknown key is refused, never learnt.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { StackLoadError, loadStack } from "../config/load";
import { FleetConfig } from "../config/types";
import { hostKeyMismatch } from "../components/hostKey";
import { LAB_KEY, SSH_CONFIG, labHostKeys } from "../lab/fleet";
import { HEALTH_PROGRAM_PATH } from "../templates/health";
import { EXIT, Io, parseCommandLine, positionalsAs, processIo, argumentsOrUsage } from "./commandLine";

export type Level = "ok" | "WARN" | "FAIL";

export interface PeerReport {
  readonly name: string;
  readonly address: string;
  /** Seconds since the latest handshake; null when there has been none. */
  readonly handshakeAge: number | null;
  readonly pingsAnswered: number;
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

export interface CheckReport {
  readonly level: Level;
  readonly what: string;
  readonly detail: string;
}

/** What a host holds differently from what a step of swarm installed there (`swarm-drift`). */
export interface DriftItem {
  /** The remote command that installed it, by resource name: what `swarm:repairs` names. */
  readonly step: string;
  readonly kind: "file" | "unit" | "peer" | "zfs";
  /** The path, unit, `wg0 peer <name>` or `<dataset> <property>`. */
  readonly item: string;
  readonly detail: string;
}

/** The kinds of drift, in the order the status table counts them. */
export const DRIFT_KINDS = ["file", "unit", "peer", "zfs"] as const satisfies readonly DriftItem["kind"][];

function isDriftItem(value: unknown): value is DriftItem {
  const item = value as Record<string, unknown> | null;
  return (
    typeof item === "object" &&
    item !== null &&
    ["step", "item", "detail"].every((key) => typeof item[key] === "string") &&
    (DRIFT_KINDS as readonly unknown[]).includes(item.kind)
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

/** A duration as the table shows it: `42s`, `12m`, `5h`, `3d`. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) {
    return `${s}s`;
  }
  if (s < 2 * 3600) {
    return `${Math.floor(s / 60)}m`;
  }
  if (s < 2 * 86400) {
    return `${Math.floor(s / 3600)}h`;
  }
  return `${Math.floor(s / 86400)}d`;
}

/** Bytes with a binary unit and one decimal: `27.0G`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "K", "M", "G", "T", "P"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value}B` : `${value.toFixed(1)}${units[unit]}`;
}

type Tone = "ok" | "warn" | "fail" | "plain";

interface Cell {
  readonly text: string;
  readonly tone: Tone;
}

const COLORS: Record<Tone, string> = { ok: "\x1b[32m", warn: "\x1b[33m", fail: "\x1b[31m", plain: "" };
const RESET = "\x1b[0m";
const BOLD = "\x1b[1m";

function toneOf(levels: readonly Level[]): Tone {
  return levels.includes("FAIL") ? "fail" : levels.includes("WARN") ? "warn" : "ok";
}

const NONE: Cell = { text: "-", tone: "plain" };

/** Drifted items per kind, the kinds with none left out: `file 2, unit 1`. */
function driftCounts(drift: readonly DriftItem[]): string {
  return DRIFT_KINDS.map((kind) => [kind, drift.filter((d) => d.kind === kind).length] as const)
    .filter(([, count]) => count > 0)
    .map(([kind, count]) => `${kind} ${count}`)
    .join(", ");
}

/** `0`, `3 (file 2, unit 1)`, or `?` from a host whose swarm-health could not say. */
function driftCell(drift: readonly DriftItem[] | undefined): Cell {
  if (drift === undefined) {
    return { text: "?", tone: "plain" };
  }
  if (drift.length === 0) {
    return { text: "0", tone: "ok" };
  }
  return { text: `${drift.length} (${driftCounts(drift)})`, tone: "warn" };
}

function cellsOf(report: HostReport): Cell[] {
  const peers = report.peers;
  const up = peers.filter((p) => p.level === "ok").length;
  const ages = peers.map((p) => p.handshakeAge);
  const worst = ages.includes(null) ? "never" : formatAge(Math.max(...(ages as number[])));
  const conflicts = report.syncs.map((s) => s.conflicts);
  const knownConflicts = conflicts.filter((c): c is number => c !== null).reduce((a, b) => a + b, 0);
  return [
    peers.length === 0 ? NONE : { text: `${up}/${peers.length}`, tone: toneOf(peers.map((p) => p.level)) },
    peers.length === 0
      ? NONE
      : {
          text: worst,
          tone: ages.some((a) => a === null || a > report.maxHandshakeAge) ? "fail" : "ok",
        },
    report.mounts.length === 0
      ? NONE
      : {
          text: report.mounts.map((m) => `${m.path} ${m.level === "ok" ? "up" : "DOWN"}`).join(", "),
          tone: toneOf(report.mounts.map((m) => m.level)),
        },
    report.syncs.length === 0
      ? NONE
      : {
          text: report.syncs
            .map((s) => {
              if (s.lastRun === null) {
                return `${s.name} never`;
              }
              const exit = s.lastExitCode !== null && s.lastExitCode !== 0 ? ` exit ${s.lastExitCode}` : "";
              return `${s.name} ${formatAge(report.time - s.lastRun)} ago${exit}`;
            })
            .join(", "),
          tone: toneOf(report.syncs.map((s) => s.level)),
        },
    report.syncs.length === 0
      ? NONE
      : {
          text: conflicts.includes(null)
            ? knownConflicts > 0
              ? `${knownConflicts}+`
              : "?"
            : `${knownConflicts}`,
          tone: knownConflicts > 0 || conflicts.includes(null) ? "warn" : "ok",
        },
    report.datasets.length === 0
      ? NONE
      : {
          text: report.datasets
            .map((d) => {
              if (d.usedBytes === null) {
                return `${d.name} missing`;
              }
              const total = d.usedBytes + (d.availableBytes ?? 0);
              const share = total > 0 ? ` ${Math.round((100 * d.usedBytes) / total)}%` : "";
              return `${d.name} ${formatBytes(d.usedBytes)}${share} ${d.snapshots} snaps`;
            })
            .join(", "),
          tone: toneOf(report.datasets.map((d) => d.level)),
        },
    driftCell(report.drift),
  ];
}

const HEADERS = [
  "HOST",
  "PEERS UP",
  "HANDSHAKE",
  "MOUNT",
  "LAST SYNC",
  "CONFLICTS",
  "DATASET",
  "DRIFT",
  "STATE",
];

const byHost = (a: StatusRow, b: StatusRow) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0);

/**
 * One line per drifted item, host by host (sorted), host and step in
 * aligned columns: `anchor  mesh-anchor-config  file /etc/wireguard/wg0.conf.public: content changed`.
 * Hosts without a report or a drift list add no line. Pure.
 */
export function driftLines(rows: readonly StatusRow[]): string[] {
  const items = [...rows]
    .sort(byHost)
    .flatMap((row) => (row.report?.drift ?? []).map((d) => ({ host: row.host, ...d })));
  const hostWidth = Math.max(0, ...items.map((i) => i.host.length));
  const stepWidth = Math.max(0, ...items.map((i) => i.step.length));
  return items.map(
    (i) => `${i.host.padEnd(hostWidth)}  ${i.step.padEnd(stepWidth)}  ${i.kind} ${i.item}: ${i.detail}`,
  );
}

export interface TableOptions {
  /** ANSI colour. */
  readonly color: boolean;
  /** List every drifted item below the table (`--drift`), instead of one line per host that has drift. */
  readonly drift?: boolean;
  /** The stack, for the commands the table suggests; `<stack>` when not given. */
  readonly stack?: string;
}

/** A check that is one drifted item (`drift <step> <kind> <item>`), which the DRIFT column and `--drift` show instead. */
const isDriftItemCheck = (check: CheckReport) => check.what.startsWith("drift ");

/**
 * The status table, then one line per warning, failure or unreachable host
 * (drift summed up per host), then, with `drift`, every drifted item.
 * Pure: rows sorted by host name, colour (ANSI) only when asked for.
 */
export function formatStatusTable(rows: readonly StatusRow[], opts: TableOptions): string {
  const paint = (text: string, tone: Tone) =>
    opts.color && tone !== "plain" ? `${COLORS[tone]}${text}${RESET}` : text;
  const stack = opts.stack ?? "<stack>";
  const sorted = [...rows].sort(byHost);
  const table: Cell[][] = sorted.map((row) => {
    const host: Cell = { text: row.host, tone: "plain" };
    if (row.report === undefined) {
      return [host, ...HEADERS.slice(1, -1).map(() => NONE), { text: "unreachable", tone: "fail" }];
    }
    const levels = row.report.checks.map((c) => c.level);
    const state = levels.includes("FAIL") ? "FAIL" : levels.includes("WARN") ? "WARN" : "ok";
    return [host, ...cellsOf(row.report), { text: state, tone: toneOf(levels) }];
  });
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...table.map((cells) => cells[i].text.length)));
  const line = (cells: Cell[]) =>
    cells
      .map((cell, i) => {
        // Padding goes outside the colour, so escape codes never count towards a width.
        const padding = i === cells.length - 1 ? "" : " ".repeat(widths[i] - cell.text.length);
        return `${paint(cell.text, cell.tone)}${padding}`;
      })
      .join("  ")
      .trimEnd();
  const header = HEADERS.map((h, i) => (i === HEADERS.length - 1 ? h : h.padEnd(widths[i]))).join("  ");
  const out = [opts.color ? `${BOLD}${header}${RESET}` : header, ...table.map(line)];

  const problems: string[] = [];
  for (const row of sorted) {
    if (row.report === undefined) {
      problems.push(`${paint("unreachable", "fail")} ${row.host}: ${row.error ?? "no report"}`);
      continue;
    }
    for (const check of row.report.checks) {
      if (check.level !== "ok" && !isDriftItemCheck(check)) {
        problems.push(
          `${paint(check.level, check.level === "FAIL" ? "fail" : "warn")} ${row.host} ${check.what}: ${check.detail}`,
        );
      }
    }
    const drift = row.report.drift ?? [];
    if (drift.length > 0 && !opts.drift) {
      problems.push(
        `${paint("WARN", "warn")} ${row.host} drift: ${drift.length} item(s) differ from what swarm installed (${driftCounts(drift)}): npm run status -- ${stack} --drift lists them, npm run repair -- ${stack} then pulumi up restores them`,
      );
    }
  }
  if (problems.length > 0) {
    out.push("", ...problems);
  }
  if (opts.drift) {
    const lines = driftLines(sorted);
    const unknown = sorted.filter((r) => r.report !== undefined && r.report.drift === undefined);
    out.push(
      "",
      ...(lines.length > 0
        ? [`drift (npm run repair -- ${stack} then pulumi up restores it):`, ...lines]
        : ["no drift"]),
      ...unknown.map(
        (r) =>
          `${r.host}: drift unknown: its swarm-health has no drift list (pulumi up installs one that has) or swarm-drift failed (see its warning above)`,
      ),
    );
  }
  const healthy = sorted.filter(rowHealthy).length;
  out.push("", `${healthy}/${sorted.length} hosts healthy`);
  return `${out.join("\n")}\n`;
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

export interface Arguments {
  readonly stack: string;
  readonly key?: string;
  readonly knownHosts?: string;
  /** List every drifted item below the table. */
  readonly drift: boolean;
}

/** Parses `<stack> [--drift] [--key FILE] [--known-hosts FILE]`; throws a UsageError on anything else. */
export function parseArguments(argv: readonly string[], env: NodeJS.ProcessEnv): Arguments {
  const { values, positionals } = parseCommandLine(argv, {
    options: { key: { type: "string" }, "known-hosts": { type: "string" }, drift: { type: "boolean" } },
    allowPositionals: true,
  });
  const [stack] = positionalsAs(positionals, ["stack"]);
  const key = values.key ?? (env.SWARM_SSH_KEY === "" ? undefined : env.SWARM_SSH_KEY);
  return { stack, key, knownHosts: values["known-hosts"], drift: values.drift ?? false };
}

export const USAGE =
  "usage: npm run status -- <stack> [--drift] [--key FILE] [--known-hosts FILE]  (key also from SWARM_SSH_KEY)";

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

/**
 * Asks every host; resolves to the exit code: 0 every host healthy, 1 a
 * check failed, a host could not be asked or the stack is invalid, 2 usage.
 * `root` is where stack files live.
 */
export async function main(
  argv: readonly string[],
  io: Io = processIo,
  env: NodeJS.ProcessEnv = process.env,
  root = path.resolve(__dirname, ".."),
): Promise<number> {
  const parsed = argumentsOrUsage(() => parseArguments(argv, env), USAGE, io);
  if ("exit" in parsed) {
    return parsed.exit;
  }
  const args = parsed.args;
  // The lab keeps its admin key, the hosts' keys and the route through its VM in its state directory.
  const isLab = args.stack === "lab" && fs.existsSync(LAB_KEY);
  let config: FleetConfig;
  try {
    ({ config } = loadStack(args.stack, { dir: root, pinHostKeys: isLab ? labHostKeys() : undefined }));
  } catch (e) {
    if (e instanceof StackLoadError) {
      e.message.split("\n").forEach((line) => io.err(line));
      return EXIT.failed;
    }
    throw e;
  }
  let key = args.key;
  let sshConfig: string | undefined;
  if (isLab && key === undefined) {
    key = LAB_KEY;
    sshConfig = SSH_CONFIG;
  }
  const needsOutputs = config.hosts.some((h) => h.existing === undefined);
  const { outputs, problem } = needsOutputs ? stackOutputs(args.stack, root) : { outputs: {}, problem: "" };
  const { targets, missing } = sshTargets(config, outputs, problem);
  const secretKey = keyFile(key);
  const pinDir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-status-"));
  const pinnedKeys = path.join(pinDir, "known_hosts");
  fs.writeFileSync(pinnedKeys, pinnedKnownHosts(targets), { mode: 0o600 });
  try {
    const asked = await Promise.all(
      targets.map((t) =>
        askHost(t, { key: secretKey.file, knownHosts: args.knownHosts, pinnedKeys, sshConfig }),
      ),
    );
    const rows = [...asked, ...missing];
    const color = io === processIo && process.stdout.isTTY === true && !env.NO_COLOR;
    io.out(formatStatusTable(rows, { color, drift: args.drift, stack: args.stack }).replace(/\n$/, ""));
    return rows.every(rowHealthy) ? EXIT.ok : EXIT.failed;
  } finally {
    secretKey.cleanup();
    fs.rmSync(pinDir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`status failed: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(EXIT.failed);
    },
  );
}

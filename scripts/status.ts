/**
 * `npm run status -- <stack> [--drift] [--prune] [--key FILE] [--known-hosts FILE]`:
 * asks every host of a stack for its health over SSH (`swarm-health json`,
 * in parallel) and prints one table, host by host: mesh peers up and the
 * worst handshake age, mounts, last sync, conflicts, dataset usage, each
 * pool's last scrub, each replica's lag, and how many things differ from what
 * swarm installed (drift); `--drift` lists each of them, `--prune` what the
 * next prune of every dataset would destroy. Exits 1 when a check failed or a host could not be asked
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
import * as path from "node:path";
import { StackLoadError } from "../config/load";
import {
  CheckReport,
  DRIFT_KINDS,
  DriftItem,
  HostReport,
  Level,
  StatusRow,
  askFleet,
  rowHealthy,
} from "./hostReports";
import { EXIT, Io, parseCommandLine, positionalsAs, processIo, argumentsOrUsage } from "./commandLine";

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

/**
 * A column of things an export host lists: `-` when there are none, `?` from a host with datasets
 * whose swarm-health predates the list, else each item's text, coloured by the worst level.
 */
function listCell<T extends { readonly level: Level }>(
  report: HostReport,
  items: readonly T[] | undefined,
  text: (item: T) => string,
): Cell {
  if (items === undefined) {
    return report.datasets.length === 0 ? NONE : { text: "?", tone: "plain" };
  }
  if (items.length === 0) {
    return NONE;
  }
  return { text: items.map(text).join(", "), tone: toneOf(items.map((item) => item.level)) };
}

/** Each scrubbed pool's last scrub: `tank 24d ago`, `tank 5d ago 3 errors`, `tank never`. */
function scrubCell(report: HostReport): Cell {
  return listCell(report, report.pools, (p) => {
    if (p.lastScrub === null) {
      return `${p.name} never`;
    }
    const errors = p.scrubErrors !== null && p.scrubErrors > 0 ? ` ${p.scrubErrors} errors` : "";
    return `${p.name} ${formatAge(report.time - p.lastScrub)} ago${errors}`;
  });
}

/**
 * Each replica of the host's exports: `hetzner-native 4m behind`, `hetzner-native 2h behind diverged`,
 * `hetzner-native pending` before the first run.
 */
function replicaCell(report: HostReport): Cell {
  return listCell(report, report.replicas, (r) => {
    const lag = r.lagSeconds === null ? "pending" : `${formatAge(r.lagSeconds)} behind`;
    const result = r.result === "" || r.result === "ok" ? "" : ` ${r.result}`;
    return `${r.host} ${lag}${result}`;
  });
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
    scrubCell(report),
    replicaCell(report),
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
  "SCRUB",
  "REPLICA",
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

/**
 * What the next prune of each dataset would destroy, host by host (sorted):
 * `anchor  tank/meshfs/state  destroy swarm-20261130T100000Z: no tier keeps it`, a line saying
 * nothing would go, or why the host could not say. Pure.
 */
export function pruneLines(rows: readonly StatusRow[]): string[] {
  const entries = [...rows]
    .sort(byHost)
    .flatMap((row) => (row.report?.prunes ?? []).map((p) => ({ host: row.host, ...p })));
  const hostWidth = Math.max(0, ...entries.map((e) => e.host.length));
  const datasetWidth = Math.max(0, ...entries.map((e) => e.dataset.length));
  return entries.flatMap((e) => {
    const lead = `${e.host.padEnd(hostWidth)}  ${e.dataset.padEnd(datasetWidth)}  `;
    if (e.destroy === null) {
      return [`${lead}unknown: ${e.error ?? "the dry run failed"}`];
    }
    if (e.destroy.length === 0) {
      return [`${lead}destroys nothing`];
    }
    return e.destroy.map((d) => `${lead}destroy ${d.snapshot.slice(d.snapshot.indexOf("@") + 1)}: ${d.why}`);
  });
}

export interface TableOptions {
  /** ANSI colour. */
  readonly color: boolean;
  /** List every drifted item below the table (`--drift`), instead of one line per host that has drift. */
  readonly drift?: boolean;
  /** List what the next prune of every dataset would destroy (`--prune`). */
  readonly prune?: boolean;
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
  if (opts.prune) {
    const lines = pruneLines(sorted);
    const unknown = sorted.filter((r) => r.report !== undefined && r.report.prunes === undefined);
    out.push(
      "",
      ...(lines.length > 0
        ? ["next prune (each snapshot timer's next run; held snapshots and other names never go):", ...lines]
        : ["no dataset is pruned"]),
      ...unknown.map(
        (r) =>
          `${r.host}: next prune unknown: its swarm-health predates the prune preview (pulumi up installs it)`,
      ),
    );
  }
  const healthy = sorted.filter(rowHealthy).length;
  out.push("", `${healthy}/${sorted.length} hosts healthy`);
  return `${out.join("\n")}\n`;
}

export interface Arguments {
  readonly stack: string;
  readonly key?: string;
  readonly knownHosts?: string;
  /** List every drifted item below the table. */
  readonly drift: boolean;
  /** List what the next prune of every dataset would destroy. */
  readonly prune: boolean;
}

/** Parses `<stack> [--drift] [--prune] [--key FILE] [--known-hosts FILE]`; throws a UsageError on anything else. */
export function parseArguments(argv: readonly string[], env: NodeJS.ProcessEnv): Arguments {
  const { values, positionals } = parseCommandLine(argv, {
    options: {
      key: { type: "string" },
      "known-hosts": { type: "string" },
      drift: { type: "boolean" },
      prune: { type: "boolean" },
    },
    allowPositionals: true,
  });
  const [stack] = positionalsAs(positionals, ["stack"]);
  const key = values.key ?? (env.SWARM_SSH_KEY === "" ? undefined : env.SWARM_SSH_KEY);
  return {
    stack,
    key,
    knownHosts: values["known-hosts"],
    drift: values.drift ?? false,
    prune: values.prune ?? false,
  };
}

export const USAGE =
  "usage: npm run status -- <stack> [--drift] [--prune] [--key FILE] [--known-hosts FILE]  (key also from SWARM_SSH_KEY)";

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
  let rows: StatusRow[];
  try {
    ({ rows } = await askFleet(args.stack, { root, key: args.key, knownHosts: args.knownHosts }));
  } catch (e) {
    if (e instanceof StackLoadError) {
      e.message.split("\n").forEach((line) => io.err(line));
      return EXIT.failed;
    }
    throw e;
  }
  const color = io === processIo && process.stdout.isTTY === true && !env.NO_COLOR;
  io.out(
    formatStatusTable(rows, { color, drift: args.drift, prune: args.prune, stack: args.stack }).replace(
      /\n$/,
      "",
    ),
  );
  return rows.every(rowHealthy) ? EXIT.ok : EXIT.failed;
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

/**
 * `npm run repair -- <stack> [--key FILE] [--known-hosts FILE] [--dry-run]`:
 * asks every host of a stack for what drifted (as `npm run status` reaches
 * them), and for every step with drift raises its repair generation in
 * `Pulumi.<stack>.yaml` (`swarm:repairs.<step>`, current or 0, plus 1),
 * keeping the file's comments and layout. The next `pulumi up` then
 * replaces exactly those commands: each runs its step again and nothing
 * else runs (docs/drift.md).
 *
 * Exit 0: repaired (or nothing drifted, the file untouched); 1: a host could
 * not be asked or reported no drift list, the stack is invalid, or a drifted
 * step is no command of the stack; 2: usage. Nothing is written unless every
 * host answered.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Document, YAMLMap, isMap, isScalar, parseDocument } from "yaml";
import { OWNED_DIR } from "../templates/shell";
import { StackLoadError } from "../config/load";
import { FleetPlan, planFleet } from "../config/model";
import { remoteCommandNames, stepCommandNames, stepsOf } from "../config/plan";
import { EXIT, Io, argumentsOrUsage, parseCommandLine, positionalsAs, processIo } from "./commandLine";
import { DriftItem, FleetAnswers, StatusRow, askFleet } from "./hostReports";

/** The stack file key that holds the repair generations. */
export const REPAIRS_KEY = "swarm:repairs";

/** One step that drifted on one host, with what drifted. */
export interface DriftedStep {
  readonly host: string;
  readonly step: string;
  readonly items: readonly DriftItem[];
}

const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Every step with drift, host by host and step by step (sorted), each with its items. */
export function driftedSteps(rows: readonly StatusRow[]): DriftedStep[] {
  const steps = new Map<string, { host: string; step: string; items: DriftItem[] }>();
  for (const row of rows) {
    for (const item of row.report?.drift ?? []) {
      const id = `${row.host}\0${item.step}`;
      const entry = steps.get(id) ?? { host: row.host, step: item.step, items: [] };
      entry.items.push(item);
      steps.set(id, entry);
    }
  }
  return [...steps.values()].sort((a, b) => byText(a.host, b.host) || byText(a.step, b.step));
}

/**
 * The repair generations to write: for every step that drifted on any host,
 * its current generation (0 when it has none) plus 1, by step name, sorted.
 * Pure; empty when nothing drifted.
 */
export function repairEdits(
  rows: readonly StatusRow[],
  currentRepairs: Readonly<Record<string, number>>,
): Record<string, number> {
  const steps = [...new Set(driftedSteps(rows).map((d) => d.step))].sort(byText);
  return Object.fromEntries(steps.map((step) => [step, (currentRepairs[step] ?? 0) + 1]));
}

/** How the stack file is written back: long lines and flow lists exactly as a person wrote them. */
const AS_WRITTEN = { lineWidth: 0, flowCollectionPadding: false } as const;

/**
 * The text of a stack file with `swarm:repairs.<step>` set to each of
 * `edits`, everything else as it was: comments, order, quoting and layout
 * (the `yaml` package's Document API). A new entry goes where it sorts
 * among the others; `swarm:repairs` is added at the end of `config:` when
 * the file has none. Throws when the file has no `config:` mapping.
 */
export function withRepairs(text: string, edits: Readonly<Record<string, number>>): string {
  const document = parseDocument(text);
  const config = document.get("config", true);
  if (!isMap(config)) {
    throw new Error("the stack file has no config: mapping to add swarm:repairs to");
  }
  const found: unknown = config.get(REPAIRS_KEY, true);
  const map = isMap(found) ? found : new YAMLMap();
  if (map !== found) {
    config.set(REPAIRS_KEY, map);
  }
  if (map.items.length === 0) {
    // `swarm:repairs: {}` grows into a block mapping like the rest of the file.
    map.flow = false;
  }
  for (const [step, generation] of Object.entries(edits).sort(([a], [b]) => byText(a, b))) {
    const existing = map.items.find((pair) => isScalar(pair.key) && pair.key.value === step);
    if (existing !== undefined) {
      if (isScalar(existing.value)) {
        existing.value.value = generation;
      } else {
        existing.value = document.createNode(generation);
      }
      continue;
    }
    const pair = document.createPair(step, generation);
    const at = map.items.findIndex((p) => isScalar(p.key) && byText(String(p.key.value), step) > 0);
    map.items.splice(at < 0 ? map.items.length : at, 0, pair);
  }
  const written = document.toString(AS_WRITTEN);
  assertOnlyRepairsChanged(text, written);
  return written;
}

/** The plain values of a stack file without its repairs: what an edit of the repairs must leave alone. */
function withoutRepairs(text: string): unknown {
  const value = (parseDocument(text) as Document).toJS() as { config?: Record<string, unknown> };
  const config = { ...value.config };
  delete config[REPAIRS_KEY];
  return { ...value, config };
}

function assertOnlyRepairsChanged(before: string, after: string): void {
  if (JSON.stringify(withoutRepairs(before)) !== JSON.stringify(withoutRepairs(after))) {
    throw new Error("writing swarm:repairs would change other values of the stack file: nothing written");
  }
}

/** The table of what is repaired: host, step, the generation it gets, and each drifted item. */
export function formatRepairTable(
  steps: readonly DriftedStep[],
  edits: Readonly<Record<string, number>>,
): string {
  const headers = ["HOST", "STEP", "REPAIR", "DRIFTED"];
  const lines: string[][] = steps.flatMap((d) => {
    const generation = edits[d.step];
    const repair = generation > 1 ? `${generation} (was ${generation - 1})` : `${generation}`;
    return d.items.map((item, i) => [
      i === 0 ? d.host : "",
      i === 0 ? d.step : "",
      i === 0 ? repair : "",
      `${item.kind} ${item.item}: ${item.detail}`,
    ]);
  });
  const widths = headers.map((h, i) => Math.max(h.length, ...lines.map((cells) => cells[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(headers), ...lines.map(line)].join("\n");
}

/**
 * What `pulumi preview` shows after the edits: the repaired commands
 * replaced, and, when the gate is on, the health command of each of their
 * hosts, which runs the gate again after any change on its host (its owner
 * hash holds every command's trigger there).
 */
export function expectedPreview(
  plan: FleetPlan,
  steps: readonly DriftedStep[],
  edits: Readonly<Record<string, number>>,
): string {
  const repaired = Object.keys(edits).sort(byText);
  const hosts = new Set(steps.map((d) => d.host));
  const gates = plan.config.health.gate
    ? stepsOf(plan.steps, "health")
        .filter((h) => hosts.has(h.host))
        .flatMap(stepCommandNames)
        .filter((name) => !repaired.includes(name))
    : [];
  const also =
    gates.length === 0
      ? ""
      : `, and the health gate${gates.length === 1 ? "" : "s"} ${gates.join(", ")}, which run${gates.length === 1 ? "s" : ""} again after any change on ${gates.length === 1 ? "its host" : "their hosts"}`;
  return `pulumi preview shows exactly these commands replaced: ${repaired.join(", ")}${also}`;
}

export interface Arguments {
  readonly stack: string;
  readonly key?: string;
  readonly knownHosts?: string;
  readonly dryRun: boolean;
}

/** Parses `<stack> [--key FILE] [--known-hosts FILE] [--dry-run]`; throws a UsageError on anything else. */
export function parseArguments(argv: readonly string[], env: NodeJS.ProcessEnv): Arguments {
  const { values, positionals } = parseCommandLine(argv, {
    options: {
      key: { type: "string" },
      "known-hosts": { type: "string" },
      "dry-run": { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const [stack] = positionalsAs(positionals, ["stack"]);
  const key = values.key ?? (env.SWARM_SSH_KEY === "" ? undefined : env.SWARM_SSH_KEY);
  return { stack, key, knownHosts: values["known-hosts"], dryRun: values["dry-run"] };
}

export const USAGE =
  "usage: npm run repair -- <stack> [--key FILE] [--known-hosts FILE] [--dry-run]  (key also from SWARM_SSH_KEY)";

/** What `main` reaches the hosts with: tests give a stand-in for ssh. */
export interface RepairDependencies {
  readonly ssh?: string;
}

/**
 * Asks every host, then raises the repair generation of every drifted step
 * in the stack file; resolves to the exit code. `root` is where the stack
 * files live.
 */
export async function main(
  argv: readonly string[],
  io: Io = processIo,
  env: NodeJS.ProcessEnv = process.env,
  root = path.resolve(__dirname, ".."),
  deps: RepairDependencies = {},
): Promise<number> {
  const parsed = argumentsOrUsage(() => parseArguments(argv, env), USAGE, io);
  if ("exit" in parsed) {
    return parsed.exit;
  }
  const args = parsed.args;
  let answers: FleetAnswers;
  try {
    answers = await askFleet(args.stack, { root, key: args.key, knownHosts: args.knownHosts, ssh: deps.ssh });
  } catch (e) {
    if (e instanceof StackLoadError) {
      e.message.split("\n").forEach((line) => io.err(line));
      return EXIT.failed;
    }
    throw e;
  }
  const { config, rows } = answers;
  const file = `Pulumi.${args.stack}.yaml`;

  // A repair from part of the fleet would leave the rest drifted without a word: all hosts or nothing.
  const unanswered = [...rows]
    .sort((a, b) => byText(a.host, b.host))
    .flatMap((row) =>
      row.report === undefined
        ? [`${row.host}: ${row.error ?? "no report"}`]
        : row.report.drift === undefined
          ? [
              `${row.host}: its swarm-health reports no drift list (installed before drift detection): run pulumi up to update it, then repair again`,
            ]
          : [],
    );
  if (unanswered.length > 0) {
    unanswered.forEach((line) => io.err(`cannot repair ${line}`));
    io.err(`${file} not changed: every host must answer for a repair`);
    return EXIT.failed;
  }

  const plan = planFleet(config);
  const commands = new Set(remoteCommandNames(plan));
  const drifted = driftedSteps(rows);
  const unknown = drifted.filter((d) => !commands.has(d.step));
  const repairable = drifted.filter((d) => commands.has(d.step));
  for (const d of unknown) {
    io.err(
      `not repaired: ${d.host} records step ${d.step}, which is no remote command of ${file}: if the step was removed from the config, pulumi up deletes it and its record; otherwise the record ${OWNED_DIR}/${d.step} on ${d.host} is left over and can be removed`,
    );
  }
  if (repairable.length === 0) {
    if (unknown.length === 0) {
      io.out(`no drift on any host of ${args.stack}: nothing to repair, ${file} not changed`);
      return EXIT.ok;
    }
    return EXIT.failed;
  }

  const edits = Object.fromEntries(
    Object.entries(repairEdits(rows, config.repairs)).filter(([step]) => commands.has(step)),
  );
  io.out(formatRepairTable(repairable, edits));
  io.out("");
  const steps = Object.keys(edits);
  const settings = steps.map((step) => `${REPAIRS_KEY}.${step}: ${edits[step]}`).join(", ");
  if (args.dryRun) {
    io.out(`--dry-run: ${file} not changed; without it, repair would set ${settings}`);
    return unknown.length > 0 ? EXIT.failed : EXIT.ok;
  }
  const stackFile = path.join(root, file);
  const text = withRepairs(fs.readFileSync(stackFile, "utf8"), edits);
  // Written whole or not at all: a rename replaces the file in one step.
  const temporary = `${stackFile}.repair-${process.pid}`;
  fs.writeFileSync(temporary, text, { mode: fs.statSync(stackFile).mode & 0o777 });
  fs.renameSync(temporary, stackFile);
  io.out(`${file}: set ${settings}`);
  io.out(`run pulumi up: ${expectedPreview(plan, repairable, edits)}`);
  return unknown.length > 0 ? EXIT.failed : EXIT.ok;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`repair failed: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(EXIT.failed);
    },
  );
}

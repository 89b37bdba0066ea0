/**
 * `npm run bench [-- --quick] [--only eval,changes,converge,sync] [--json FILE]`:
 * measures how fast the fleet is declared, converged and kept in sync, and
 * prints Markdown tables (BENCHMARKS.md holds a full run's). Offline parts run
 * each evaluation in a fresh child process; lab parts hold the lab lock
 * (`flock /tmp/swarm-lab.lock`) and leave the lab down. Progress on stderr.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  EXIT,
  Io,
  UsageError,
  parseCommandLine,
  positionalsAs,
  processIo,
  argumentsOrUsage,
} from "../scripts/commandLine";
import { CHANGED_MOUNT_HOST, Topology, belongsTo, hostName } from "./fleets";
import type {
  BulkRun,
  ChangesResult,
  ConvergeRun,
  FloorResult,
  GraphResult,
  LatencySeries,
  ProfileResult,
  ProgramResult,
  Rerun,
  SyncBench,
  TypeCount,
} from "./results";

const ROOT = path.resolve(__dirname, "..");
const LAB_LOCK = "/tmp/swarm-lab.lock";
const SECTIONS = ["eval", "changes", "converge", "sync"] as const;
type Section = (typeof SECTIONS)[number];

export interface Options {
  readonly quick: boolean;
  readonly only: ReadonlySet<Section>;
  readonly json?: string;
}

interface Plan {
  readonly sizes: readonly number[];
  readonly runs: number;
  /** Fleets profiled for the program's own work. */
  readonly profile: (hosts: number, topology: Topology) => boolean;
  readonly cappedRuns: number;
  readonly convergeRuns: number;
  readonly writes: number;
  readonly bulkRuns: number;
  readonly files: number;
  readonly mb: number;
  readonly rescans: number;
}

const FULL: Plan = {
  sizes: [3, 25, 100, 250],
  runs: 5,
  profile: () => true,
  cappedRuns: 3,
  convergeRuns: 3,
  writes: 20,
  bulkRuns: 3,
  files: 10000,
  mb: 200,
  rescans: 3,
};

const QUICK: Plan = {
  sizes: [3, 25, 250],
  runs: 1,
  profile: (hosts, topology) => hosts === 250 && topology === "full",
  cappedRuns: 1,
  convergeRuns: 1,
  writes: 6,
  bulkRuns: 1,
  files: 2000,
  mb: 40,
  rescans: 1,
};

/** Heap cap for the run that shows how much the evaluation really needs. */
const CAPPED_HEAP_MB = 640;

const say = (line: string) => process.stderr.write(`bench: ${line}\n`);

export const USAGE = "usage: npm run bench [-- --quick] [--only eval,changes,converge,sync] [--json FILE]";

/** Parses `[--quick] [--only SECTIONS] [--json FILE]`; throws a UsageError on anything else. */
export function parseArguments(argv: readonly string[]): Options {
  const { values, positionals } = parseCommandLine(argv, {
    options: { quick: { type: "boolean" }, only: { type: "string" }, json: { type: "string" } },
    allowPositionals: true,
  });
  positionalsAs(positionals, []);
  let only: Set<Section> = new Set(SECTIONS);
  if (values.only !== undefined) {
    const wanted = values.only.split(",").filter(Boolean);
    const unknown = wanted.filter((w) => !(SECTIONS as readonly string[]).includes(w));
    if (wanted.length === 0 || unknown.length > 0) {
      throw new UsageError(`--only takes a comma-separated list of ${SECTIONS.join(", ")}`);
    }
    only = new Set(wanted as Section[]);
  }
  return { quick: values.quick === true, only, ...(values.json !== undefined ? { json: values.json } : {}) };
}

/** Runs a child; resolves with its stdout and wall time. stderr passes through (progress). */
function child(command: string, args: readonly string[]): Promise<{ stdout: string; seconds: number }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    const out: Buffer[] = [];
    proc.stdout.on("data", (d: Buffer) => out.push(d));
    proc.on("error", reject);
    proc.on("close", (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code !== 0) {
        reject(new Error(`${command} ${args.join(" ")} exited with ${code}`));
      } else {
        resolve({ stdout: Buffer.concat(out).toString(), seconds });
      }
    });
  });
}

function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as T;
}

async function evaluate<T>(
  args: readonly string[],
  nodeFlags: readonly string[] = [],
): Promise<T & { wall: number }> {
  const { stdout, seconds } = await child(process.execPath, [
    ...nodeFlags,
    "--import",
    "tsx",
    path.join("bench", "evaluate.ts"),
    ...args,
  ]);
  return { ...lastJson<T>(stdout), wall: seconds };
}

async function underLabLock<T>(args: readonly string[]): Promise<T> {
  const { stdout } = await child("flock", [
    LAB_LOCK,
    process.execPath,
    "--import",
    "tsx",
    path.join("bench", "lab.ts"),
    ...args,
  ]);
  return lastJson<T>(stdout);
}

// ---------- statistics and formatting ----------

function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

function median(values: readonly number[]): number {
  const s = sorted(values);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Nearest-rank percentile. */
function percentile(values: readonly number[], p: number): number {
  const s = sorted(values);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
}

function fixed(value: number, digits: number): string {
  return value.toFixed(digits);
}

/** `median [min–max]`, or the value alone for a single run. */
function spread(values: readonly number[], digits = 2): string {
  if (values.length === 0) {
    return "–";
  }
  const [min, max] = [Math.min(...values), Math.max(...values)];
  const m = fixed(median(values), digits);
  return values.length === 1 ? m : `${m} [${fixed(min, digits)}–${fixed(max, digits)}]`;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

const verdict = (ok: boolean) => (ok ? "✓ met" : "✗ missed");

// ---------- machine ----------

function machine(): string {
  const cpuinfo = fs.existsSync("/proc/cpuinfo") ? fs.readFileSync("/proc/cpuinfo", "utf8") : "";
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? "unknown";
  return [
    `- CPUs (nproc): ${os.availableParallelism()}, ${model}`,
    `- Memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- Node.js ${process.versions.node}, ${os.type()} ${os.release()}`,
  ].join("\n");
}

// ---------- 1. evaluation at scale ----------

interface EvalRow {
  readonly hosts: number;
  readonly topology: Topology;
  readonly program: (ProgramResult & { wall: number })[];
  readonly floor: (FloorResult & { wall: number })[];
  /** The same registrations with the program's dependencies and trivial values (bench/evaluate.ts graphfloor). */
  readonly graphFloor: (FloorResult & { wall: number })[];
  readonly graph: GraphResult;
  readonly profile?: ProfileResult;
}

const total = (types: readonly TypeCount[], custom?: boolean) =>
  types.filter((t) => custom === undefined || t.custom === custom).reduce((n, t) => n + t.count, 0);

async function evalSection(
  plan: Plan,
): Promise<{ rows: EvalRow[]; capped: (ProgramResult & { wall: number })[] }> {
  const rows: EvalRow[] = [];
  for (const hosts of plan.sizes) {
    for (const topology of ["full", "hub"] as const) {
      const program: EvalRow["program"] = [];
      const floor: EvalRow["floor"] = [];
      const graphFloor: EvalRow["graphFloor"] = [];
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-bench-graph-"));
      try {
        const file = path.join(dir, "graph.json");
        const graph = await evaluate<GraphResult>(["graph", String(hosts), topology, file]);
        for (let run = 1; run <= plan.runs; run++) {
          say(`evaluate ${hosts} hosts ${topology}, run ${run}/${plan.runs}`);
          const p = await evaluate<ProgramResult>(["program", String(hosts), topology]);
          program.push(p);
          floor.push(await evaluate<FloorResult>(["floor", JSON.stringify(p.types)]));
          const g = await evaluate<FloorResult & { sameGraph: boolean }>(["graphfloor", file]);
          if (!g.sameGraph) {
            throw new Error(
              `the graph floor of ${hosts} hosts ${topology} registered other dependencies than the program`,
            );
          }
          graphFloor.push(g);
        }
        const profile = plan.profile(hosts, topology)
          ? await evaluate<ProfileResult>(["profile", String(hosts), topology])
          : undefined;
        rows.push({ hosts, topology, program, floor, graphFloor, graph, profile });
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  const capped: (ProgramResult & { wall: number })[] = [];
  const largest = Math.max(...plan.sizes);
  for (let run = 1; run <= plan.cappedRuns; run++) {
    say(
      `evaluate ${largest} hosts full with the heap capped at ${CAPPED_HEAP_MB} MB, run ${run}/${plan.cappedRuns}`,
    );
    capped.push(
      await evaluate<ProgramResult>(
        ["program", String(largest), "full"],
        [`--max-old-space-size=${CAPPED_HEAP_MB}`],
      ),
    );
  }
  return { rows, capped };
}

function evalReport(result: { rows: EvalRow[]; capped: (ProgramResult & { wall: number })[] }): string {
  const { rows, capped } = result;
  const shape = rows.map((r) => {
    const p = r.program[0];
    const custom = total(p.types, true);
    const components = total(p.types, false);
    const meshOnly = (kind: string) => {
      const host = p.meshOnly.find((m) => m.kind === kind);
      return host === undefined ? "–" : `${total(host.types, true)} + ${total(host.types, false)}`;
    };
    return [
      String(r.hosts),
      r.topology,
      `${custom} + ${components}`,
      fixed(custom / r.hosts, 2),
      meshOnly("existing"),
      meshOnly("hcloud"),
      String(p.commands),
      fixed(p.renderedBytes / 1024, 0),
      fixed(p.renderedBytes / 1024 / r.hosts, 1),
    ];
  });
  const timing = rows.map((r) => {
    const evalS = r.program.map((p) => p.evalSeconds);
    const floorS = r.floor.map((f) => f.evalSeconds);
    const overhead = (median(evalS) / median(floorS) - 1) * 100;
    const own = r.profile
      ? `${fixed(r.profile.own, 2)} (${fixed((r.profile.own / median(floorS)) * 100, 0)} %)`
      : "–";
    return [
      String(r.hosts),
      r.topology,
      spread(evalS),
      spread(r.program.map((p) => p.wall)),
      spread(
        r.program.map((p) => p.maxRssMb),
        0,
      ),
      spread(floorS),
      spread(
        r.floor.map((f) => f.maxRssMb),
        0,
      ),
      `${fixed(overhead, 0)} %`,
      own,
    ];
  });
  const graphs = rows.map((r) => {
    const evalS = median(r.program.map((p) => p.evalSeconds));
    const graphS = r.graphFloor.map((f) => f.evalSeconds);
    return [
      String(r.hosts),
      r.topology,
      String(r.graph.dependencies),
      String(r.graph.propertyDependencies),
      spread(graphS),
      spread(
        r.graphFloor.map((f) => f.maxRssMb),
        0,
      ),
      `${fixed(evalS / median(graphS), 2)}×`,
      `${fixed(median(r.program.map((p) => p.maxRssMb)) / median(r.graphFloor.map((f) => f.maxRssMb)), 2)}×`,
    ];
  });
  const profiles = rows
    .filter((r) => r.profile)
    .map((r) => {
      const p = r.profile as ProfileResult;
      return [
        String(r.hosts),
        r.topology,
        ...[p.own, p.sdk, p.gc, p.harness, p.other].map((v) => fixed(v, 2)),
      ];
    });
  const largest = rows.filter((r) => r.topology === "full").sort((a, b) => b.hosts - a.hosts)[0];
  const lines: string[] = [];
  lines.push("### 1. Program evaluation at scale", "");
  lines.push(
    "Resources are counted as custom resources + component resources (a `pulumi preview` summary counts both). " +
      "Custom resources are what providers act on; components only group them. " +
      "`per host` is custom resources per host; a mesh-only host is one that neither exports, mounts nor syncs. " +
      "Rendered = the sum of every command's create script.",
    "",
  );
  lines.push(
    table(
      [
        "hosts",
        "topology",
        "resources",
        "custom per host",
        "mesh-only existing host",
        "mesh-only hcloud host",
        "commands",
        "rendered KB",
        "KB per host",
      ],
      shape,
    ),
    "",
  );
  lines.push(
    "Each evaluation is a fresh child process: validation + `defineFleet` under the mock runtime until every registration is answered (`eval s`), " +
      "the child's whole life including loading modules (`wall s`), and its peak RSS (`process.resourceUsage().maxRSS`). " +
      "The floor registers the same number of bare resources of the same types with trivial inputs under the same mock runtime. " +
      "`own work` is the CPU time of the program's own code (validation, planning, templates, hashing, key derivation) in a profiled run, and its share of the floor's eval time.",
    "",
  );
  lines.push(
    table(
      [
        "hosts",
        "topology",
        "eval s",
        "wall s",
        "peak RSS MB",
        "floor eval s",
        "floor RSS MB",
        "program vs floor",
        "own work s (of floor)",
      ],
      timing,
    ),
    "",
  );
  lines.push(
    "The graph floor registers the same resources with the dependencies the program registered for each, in all and by input (`dependencies`, `by input`: URNs summed over the registrations), and trivial values: " +
      "what a fleet of this shape costs the SDK whatever the program computes. A full mesh's dependencies grow with the square of its hosts.",
    "",
  );
  lines.push(
    table(
      [
        "hosts",
        "topology",
        "dependencies",
        "by input",
        "graph floor eval s",
        "graph floor RSS MB",
        "program vs graph floor, eval",
        "peak RSS",
      ],
      graphs,
    ),
    "",
  );
  if (profiles.length > 0) {
    lines.push(
      "Where the profiled evaluation's CPU time goes (seconds; leaf-first attribution to the first JavaScript frame that is not Node's own):",
      "",
    );
    lines.push(
      table(["hosts", "topology", "own", "SDK and packages", "GC", "mock runtime", "other"], profiles),
      "",
    );
  }
  if (capped.length > 0 && largest) {
    lines.push(
      `With V8's old space capped at ${CAPPED_HEAP_MB} MB (\`node --max-old-space-size=${CAPPED_HEAP_MB}\`), ${largest.hosts} hosts full mesh: ` +
        `eval ${spread(capped.map((c) => c.evalSeconds))} s, wall ${spread(capped.map((c) => c.wall))} s, peak RSS ${spread(
          capped.map((c) => c.maxRssMb),
          0,
        )} MB.`,
      "",
    );
  }
  if (largest) {
    const wall = median(largest.program.map((p) => p.wall));
    const rss = median(largest.program.map((p) => p.maxRssMb));
    const own = largest.profile ? largest.profile.own / median(largest.floor.map((f) => f.evalSeconds)) : NaN;
    const meshOnly = largest.program[0].meshOnly.find((m) => m.kind === "existing");
    // Linear: every host added between two fleet sizes adds the same number of resources, whatever
    // the topology (hosts alternate between existing, 5 resources, and Hetzner, 8 resources).
    const counts = new Map(
      rows.filter((r) => r.topology === "full").map((r) => [r.hosts, total(r.program[0].types, true)]),
    );
    const sizes = [...counts.keys()].filter((n) => n >= 5).sort((a, b) => a - b);
    const marginal = sizes
      .slice(1)
      .map((n, i) => ((counts.get(n) as number) - (counts.get(sizes[i]) as number)) / (n - sizes[i]));
    const sameForHub = rows.every(
      (r) => total(r.program[0].types, true) === counts.get(r.hosts) || r.topology === "full",
    );
    const linear = marginal.length > 0 && Math.max(...marginal) - Math.min(...marginal) < 0.1 && sameForHub;
    lines.push("Targets:", "");
    lines.push(
      table(
        ["target", "measured", "verdict"],
        [
          [
            `${largest.hosts} hosts full mesh within 12 s`,
            `${fixed(wall, 1)} s wall (${fixed(median(largest.program.map((p) => p.evalSeconds)), 1)} s eval)`,
            verdict(wall <= 12),
          ],
          [
            `${largest.hosts} hosts full mesh within 800 MB`,
            `${fixed(rss, 0)} MB peak RSS`,
            verdict(rss <= 800),
          ],
          [
            "program's own work ≤ 10 % above the floor",
            Number.isNaN(own) ? "not profiled" : `${fixed(own * 100, 0)} % (${largest.hosts} full)`,
            verdict(own <= 0.1),
          ],
          [
            "≤ 5 resources for a host that only joins the mesh",
            meshOnly
              ? `${total(meshOnly.types, true)} custom (+ ${total(meshOnly.types, false)} components), existing host`
              : "–",
            verdict(meshOnly !== undefined && total(meshOnly.types, true) <= 5),
          ],
          [
            "resource count linear in hosts",
            `each added host adds ${marginal.map((v) => fixed(v, 2)).join(", ")} custom resources (${sizes.join(" → ")} hosts)${sameForHub ? "; the same counts in a hub" : "; a hub differs"}`,
            verdict(linear),
          ],
        ],
      ),
      "",
    );
  }
  return lines.join("\n");
}

// ---------- 2. no-op and one-change cost ----------

interface ChangesRow {
  readonly hosts: number;
  readonly topology: Topology;
  readonly result: ChangesResult;
}

async function changesSection(plan: Plan): Promise<ChangesRow[]> {
  const rows: ChangesRow[] = [];
  for (const hosts of plan.sizes) {
    for (const topology of ["full", "hub"] as const) {
      say(`changes ${hosts} hosts ${topology}`);
      rows.push({
        hosts,
        topology,
        result: await evaluate<ChangesResult>(["changes", String(hosts), topology]),
      });
    }
  }
  return rows;
}

/** A command's role: its name with host names taken out (`mesh-H-config`). */
function role(name: string): string {
  return name.replace(/host-\d{3}/g, "H");
}

function summarize(reruns: readonly Rerun[]): string {
  const counts = new Map<string, number>();
  for (const r of reruns) {
    const key = `${role(r.name)}${r.why === "changed" ? "" : ` (${r.why})`}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts.entries()].map(([k, n]) => `${n} × \`${k}\``).join(", ") || "none";
}

function changesReport(rows: readonly ChangesRow[]): string {
  const body = rows.map(({ hosts, topology, result }) => {
    const none = result.changes.none;
    const mount = result.changes["mount-option"];
    const mountBeyond = mount.filter((r) => !belongsTo(r.name, CHANGED_MOUNT_HOST));
    const added = result.changes["add-host"];
    const newHost = hostName(hosts);
    const onNew = added.filter((r) => belongsTo(r.name, newHost));
    const wireguard = added.filter(
      (r) => !belongsTo(r.name, newHost) && /^mesh-.*-config$/.test(r.name) && r.why === "changed",
    );
    const beyond = added.filter((r) => !onNew.includes(r) && !wireguard.includes(r));
    const peers = topology === "full" ? hosts : 1;
    return [
      String(hosts),
      topology,
      String(result.commands),
      String(none.length),
      `${mount.length} (${summarize(mount)})`,
      String(mountBeyond.length),
      String(added.length),
      String(onNew.length),
      `${wireguard.length} of ${peers}`,
      `${beyond.length}${beyond.length > 0 ? ` (${summarize(beyond)})` : ""}`,
    ];
  });
  return [
    "### 2. No-op and one-change cost",
    "",
    "Each fleet is evaluated, then evaluated again with a change, and every remote command's inputs are compared with the rule `LabEngine` uses " +
      "(create, delete, stdin, triggers, connection): a command whose inputs differ, or that is new, re-runs. " +
      `(b) changes the automount idle timeout of ${CHANGED_MOUNT_HOST}; (c) appends one host (an existing host when the count is odd, a Hetzner host when even).`,
    "",
    table(
      [
        "hosts",
        "topology",
        "commands",
        "(a) no change",
        "(b) mount option: re-runs",
        "(b) beyond that host",
        "(c) add host: re-runs",
        "on the new host",
        "WireGuard updates on peers",
        "(c) beyond target",
      ],
      body,
    ),
    "",
  ].join("\n");
}

// ---------- 3. convergence in the lab ----------

const PHASES: readonly [string, RegExp][] = [
  ["bootstrap", /-bootstrap$/],
  ["mesh", /^mesh-/],
  ["storage", /(^meshfs-|-mount-)/],
  ["sync", /-sync-/],
  ["health", /-health-/],
];

function phaseOf(name: string): string {
  return PHASES.find(([, pattern]) => pattern.test(name))?.[0] ?? "other";
}

function convergeReport(runs: readonly ConvergeRun[]): string {
  const phaseRows = [...PHASES.map(([p]) => p), "other"]
    .map((phase) => {
      const per = runs.map((run) => {
        const mine = run.first.timings.filter((t) => phaseOf(t.name) === phase);
        const start = Math.min(...mine.map((t) => t.start));
        const end = Math.max(...mine.map((t) => t.start + t.seconds));
        return {
          count: mine.length,
          busy: mine.reduce((s, t) => s + t.seconds, 0),
          start,
          end,
          slowest: mine.reduce((a, t) => (t.seconds > a.seconds ? t : a), { name: "", seconds: 0 }),
        };
      });
      if (per[0].count === 0) {
        return undefined;
      }
      return [
        phase,
        String(per[0].count),
        spread(
          per.map((p) => p.busy),
          1,
        ),
        spread(
          per.map((p) => p.start),
          1,
        ),
        spread(
          per.map((p) => p.end),
          1,
        ),
        `\`${per[0].slowest.name}\` ${fixed(median(per.map((p) => p.slowest.seconds)), 1)} s`,
      ];
    })
    .filter((r): r is string[] => r !== undefined);
  return [
    "### 3. Convergence in the lab",
    "",
    `The lab stack (Pulumi.lab.yaml: anchor, satellite, hetzner-native; hub mesh over kernel WireGuard (wireguard-go on satellite), an OpenZFS export on a virtual disk, two sshfs mounts, one sync) on freshly booted hosts, ${runs.length} run(s). ` +
      "Converged by `LabEngine` (the real program under the mock runtime, every command over SSH, in dependency order, concurrently where the graph allows). " +
      "The first converge ends when the last health gate has passed: a healthy fleet.",
    "",
    table(
      ["", "seconds"],
      [
        [
          "boot the VM and the 3 hosts in it (vm.sh up, not part of the converge)",
          spread(
            runs.map((r) => r.bootSeconds),
            1,
          ),
        ],
        [
          "first converge, booted hosts → healthy fleet",
          spread(
            runs.map((r) => r.first.seconds),
            1,
          ),
        ],
        [
          `second converge (no-op): commands run`,
          spread(
            runs.map((r) => r.second.ran),
            0,
          ),
        ],
        [
          "second converge (no-op)",
          spread(
            runs.map((r) => r.second.seconds),
            2,
          ),
        ],
      ],
    ),
    "",
    "Per phase of the first converge (phases overlap: each host moves on as soon as its own dependencies are done). " +
      "`busy s` sums the phase's command times; `from`/`until` are seconds after the converge started.",
    "",
    table(["phase", "commands", "busy s", "from s", "until s", "slowest command"], phaseRows),
    "",
  ].join("\n");
}

// ---------- 4. sync ----------

function syncReport(runs: SyncBench): string {
  const latency = runs.latency.map((s: LatencySeries) => [
    s.mode === "timer" ? `timer (${runs.interval} s)` : `watch (timer ${runs.interval} s as fallback)`,
    s.direction,
    String(s.seconds.length + s.lost),
    s.seconds.length ? fixed(percentile(s.seconds, 50), 1) : "–",
    s.seconds.length ? fixed(percentile(s.seconds, 95), 1) : "–",
    s.seconds.length ? fixed(Math.max(...s.seconds), 1) : "–",
    String(s.lost),
  ]);
  const groups = new Map<string, BulkRun[]>();
  for (const b of runs.bulk) {
    const key = `${b.dataset}|${b.root}`;
    groups.set(key, [...(groups.get(key) ?? []), b]);
  }
  const bulk = [...groups.values()].map((g) => [
    g[0].dataset === "small"
      ? `${g[0].files} small files`
      : `${fixed(g[0].bytes / 2 ** 20, 0)} MiB in ${g[0].files} files`,
    g[0].root === "mount" ? "sshfs mount root" : "unison ssh:// root",
    String(g.length),
    spread(
      g.map((b) => b.initialSeconds),
      1,
    ),
    spread(
      g.flatMap((b) => b.rescanSeconds),
      2,
    ),
    spread(
      g.map((b) => b.idleRescanSeconds),
      2,
    ),
  ]);
  return [
    "### 4. Sync in the lab",
    "",
    "The bench's own variant of the lab stack (bench/lab.ts `benchConfig`): the wiki sync through the sshfs mount at prod's 60 s, a watch-mode sync through the mount, " +
      "and four on-demand syncs: two through the mount root on hetzner-native, two through unison's `ssh://` root on satellite (which mounts nothing there). " +
      `Latency: each series writes files at random offsets within one interval (seeded, so every run writes on the same schedule) and notes when each appears on the other side (polled every 0.1 s; one kernel, one clock). ` +
      "Timer-mode directions run together; watch-mode directions run one after the other, because a run started by a local write also carries remote changes along.",
    "",
    table(["mode", "direction", "writes", "p50 s", "p95 s", "max s", "lost"], latency),
    "",
    "Bulk: the tree is written on the client, then the sync's oneshot service is started and timed on the host until it exits (initial sync); " +
      "then started again with nothing changed (rescan), at once and after 25 s idle (past sshfs's 20 s attribute cache, as a run of a 60 s timer meets the tree). " +
      "Checked: the same number of files and bytes arrive on the export host. Timers are stopped meanwhile.",
    "",
    table(
      ["tree", "remote root", "runs", "initial sync s", "no-change rescan s", "rescan after 25 s idle s"],
      bulk,
    ),
    "",
  ].join("\n");
}

// ---------- main ----------

/** Runs the benchmark; resolves to the exit code: 0 done, 1 a part failed, 2 usage. The report goes to `io.out`. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const parsed = argumentsOrUsage(() => parseArguments(argv), USAGE, io);
  if ("exit" in parsed) {
    return parsed.exit;
  }
  const options = parsed.args;
  const plan = options.quick ? QUICK : FULL;
  const started = Date.now();
  const raw: Record<string, unknown> = { quick: options.quick, plan: { ...plan, profile: undefined } };
  const report: string[] = [`## Benchmark run${options.quick ? " (--quick)" : ""}`, "", machine(), ""];
  if (options.only.has("eval")) {
    const result = await evalSection(plan);
    raw.eval = result;
    report.push(evalReport(result));
  }
  if (options.only.has("changes")) {
    const result = await changesSection(plan);
    raw.changes = result;
    report.push(changesReport(result));
  }
  if (options.only.has("converge")) {
    say("lab: converge (waits for the lab lock)");
    const result = await underLabLock<ConvergeRun[]>(["converge", String(plan.convergeRuns)]);
    raw.converge = result;
    report.push(convergeReport(result));
  }
  if (options.only.has("sync")) {
    say("lab: sync (waits for the lab lock)");
    const result = await underLabLock<SyncBench>([
      "sync",
      String(plan.writes),
      String(plan.bulkRuns),
      String(plan.files),
      String(plan.mb),
      String(plan.rescans),
    ]);
    raw.sync = result;
    report.push(syncReport(result));
  }
  report.push(`Total benchmark time: ${fixed((Date.now() - started) / 60000, 1)} min.`, "");
  if (options.json) {
    fs.writeFileSync(options.json, `${JSON.stringify(raw, null, 1)}\n`);
  }
  io.out(report.join("\n"));
  return EXIT.ok;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(EXIT.failed);
    },
  );
}

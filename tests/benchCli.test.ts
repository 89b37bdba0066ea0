/**
 * The bench's command lines: `npm run bench` and the two entry points it
 * runs in child processes: their parsing and usage answers, and the graph
 * floor, which must register exactly the dependencies the program did.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as evaluate from "../bench/evaluate";
import * as lab from "../bench/lab";
import * as run from "../bench/run";

async function answer(main: typeof run.main, argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

describe("npm run bench", () => {
  test.each([
    [[], { quick: false, only: ["eval", "changes", "converge", "sync"] }],
    [["--quick"], { quick: true, only: ["eval", "changes", "converge", "sync"] }],
    [["--only", "eval"], { quick: false, only: ["eval"] }],
    [
      ["--only=eval,changes", "--json", "out.json"],
      { quick: false, only: ["eval", "changes"], json: "out.json" },
    ],
    [
      ["--json=out.json", "--quick"],
      { quick: true, only: ["eval", "changes", "converge", "sync"], json: "out.json" },
    ],
  ])("%j", (argv, expected) => {
    const options = run.parseArguments(argv);
    expect({ ...options, only: [...options.only] }).toEqual(expected);
  });

  test.each([
    [["--only", "eval,lab"], "--only takes a comma-separated list of eval, changes, converge, sync"],
    [["--only="], "--only takes a comma-separated list of eval, changes, converge, sync"],
    [["--json"], "Option '--json <value>' argument missing"],
    [["--fast"], "Unknown option '--fast'"],
    [["eval"], "unexpected argument eval"],
  ])("answers %j with what is wrong and the usage line, exit 2", async (argv, message) => {
    expect(await answer(run.main, argv)).toEqual({ code: 2, out: [], err: [message, run.USAGE] });
  });
});

describe("bench/evaluate.ts", () => {
  test.each([
    [["program", "25", "full"], { mode: "program", shape: { hosts: 25, topology: "full" } }],
    [["profile", "250", "hub"], { mode: "profile", shape: { hosts: 250, topology: "hub" } }],
    [["changes", "3", "hub"], { mode: "changes", shape: { hosts: 3, topology: "hub" } }],
    [
      ["floor", '[{"type":"command:remote:Command","count":2}]'],
      { mode: "floor", types: [{ type: "command:remote:Command", count: 2 }] },
    ],
    [
      ["graph", "250", "full", "/tmp/g.json"],
      { mode: "graph", shape: { hosts: 250, topology: "full" }, file: "/tmp/g.json" },
    ],
    [["graphfloor", "/tmp/g.json"], { mode: "graphfloor", file: "/tmp/g.json" }],
  ])("%j", (argv, expected) => {
    expect(evaluate.parseArguments(argv)).toEqual(expected);
  });

  test.each([
    [[], "name the mode"],
    [["plan", "3", "full"], "unknown mode plan"],
    [["program", "3"], "name the TOPOLOGY"],
    [["program", "three", "full"], "HOSTS is a number of hosts, not three"],
    [["program", "3", "ring"], "TOPOLOGY is full or hub, not ring"],
    [["program", "3", "full", "x"], "unexpected argument x"],
    [["floor", "{"], "COUNTS_JSON is not JSON: {"],
    [["graph", "3", "full"], "name the FILE"],
    [["graph", "3", "mesh", "g.json"], "TOPOLOGY is full or hub, not mesh"],
    [["graphfloor"], "name the FILE"],
  ])("answers %j with what is wrong and the usage line, exit 2", async (argv, message) => {
    expect(await answer(evaluate.main, argv)).toEqual({ code: 2, out: [], err: [message, evaluate.USAGE] });
  });
});

describe("the graph floor", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-graph-test-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const json = async (argv: string[]) => {
    const { code, out, err } = await answer(evaluate.main, argv);
    expect({ code, err }).toEqual({ code: 0, err: [] });
    return JSON.parse(out[out.length - 1]) as Record<string, unknown>;
  };

  test("registers the program's resources with the same dependencies, in all and by input", async () => {
    const file = path.join(dir, "graph.json");
    const graph = await json(["graph", "4", "full", file]);
    expect(graph).toMatchObject({ kind: "graph" });
    expect(graph.propertyDependencies).toBeGreaterThan(0);
    const floor = await json(["graphfloor", file]);
    expect(floor).toMatchObject({ kind: "floor", resources: graph.resources, sameGraph: true });
  });

  test("tells when the floor's dependencies differ from the graph's", async () => {
    const file = path.join(dir, "graph.json");
    await json(["graph", "4", "full", file]);
    const entries = JSON.parse(fs.readFileSync(file, "utf8")) as {
      dependencies: string[];
      propertyDependencies: Record<string, string[]>;
    }[];
    // An input's dependency dropped from the resource's own list: the floor registers it anyway.
    const entry = entries.find(
      (e) => (e.propertyDependencies.create ?? []).length > 0,
    ) as (typeof entries)[number];
    const [dropped] = entry.propertyDependencies.create;
    entry.dependencies = entry.dependencies.filter((urn) => urn !== dropped);
    fs.writeFileSync(file, JSON.stringify(entries));
    const floor = await json(["graphfloor", file]);
    expect(floor.sameGraph).toBe(false);
  });
});

describe("bench/lab.ts", () => {
  test.each([
    [["converge"], { mode: "converge", runs: 1 }],
    [["converge", "3"], { mode: "converge", runs: 3 }],
    [["sync"], { mode: "sync", options: { writes: 20, runs: 1, files: 10000, mb: 200, rescans: 3 } }],
    [
      ["sync", "6", "1", "2000", "40", "1"],
      { mode: "sync", options: { writes: 6, runs: 1, files: 2000, mb: 40, rescans: 1 } },
    ],
  ])("%j", (argv, expected) => {
    expect(lab.parseArguments(argv)).toEqual(expected);
  });

  test.each([
    [[], "name the mode"],
    [["boot"], "unknown mode boot"],
    [["converge", "3", "4"], "unexpected argument 4"],
    [["sync", "many"], "WRITES is a whole number, not many"],
  ])(
    "answers %j with what is wrong and the usage line, exit 2, before anything is booted",
    async (argv, message) => {
      expect(await answer(lab.main, argv)).toEqual({ code: 2, out: [], err: [message, lab.USAGE] });
    },
  );
});

/**
 * The bench's command lines: `npm run bench` and the two entry points it
 * runs in child processes. Only the parsing and usage answers: nothing is
 * evaluated or booted.
 */
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
  ])("answers %j with what is wrong and the usage line, exit 2", async (argv, message) => {
    expect(await answer(evaluate.main, argv)).toEqual({ code: 2, out: [], err: [message, evaluate.USAGE] });
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

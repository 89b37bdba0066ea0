/**
 * zfs-snapshot's retention, run for real (the rendered program, under bash)
 * against a stand-in zfs that keeps the dataset's snapshots and holds in
 * files: each tier, their union, holds, other snapshots, the newest, the
 * dry run, failures of zfs, and a property over random histories that
 * holds the program against a model of the tiers written here.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { RETENTION_TIERS, Retention, RetentionTier, retentionArgs, snapshotScript } from "../templates/zfs";

const DATASET = "tank/meshfs/state";

/** Just enough of zfs(8) for the program, every call logged; `list` gives more than -d 1 would. */
const STAND_IN_ZFS = `#!/bin/bash
set -euo pipefail
state=$(dirname "$0")
printf '%s\\n' "$*" >>"$state/calls"
case $1 in
  snapshot)
    if grep -qxF -- "$2" "$state/snapshots"; then
      echo "cannot create snapshot '$2': dataset already exists" >&2
      exit 1
    fi
    printf '%s\\n' "$2" >>"$state/snapshots"
    ;;
  list)
    [ ! -e "$state/fail-list" ] || { echo "cannot open '\${!#}': dataset does not exist" >&2; exit 1; }
    cat "$state/snapshots"
    ;;
  holds)
    [ ! -e "$state/fail-holds" ] || { echo "cannot get holds" >&2; exit 1; }
    shift
    [ "$1" = -H ] || exit 3
    shift
    for snapshot in "$@"; do
      awk -F'\\t' -v s="$snapshot" '$1 == s { print $1 "\\t" $2 "\\tMon Jan  1 00:00 2024" }' "$state/holds"
    done
    ;;
  destroy)
    [ "$#" -eq 2 ] || { echo "unexpected: zfs $*" >&2; exit 3; }
    # zfs refuses a held snapshot; "refused" lists holds placed after the program asked.
    if cut -f1 "$state/holds" "$state/refused" | grep -qxF -- "$2"; then
      echo "cannot destroy snapshot $2: dataset is busy" >&2
      exit 1
    fi
    grep -qxF -- "$2" "$state/snapshots" || { echo "could not find any snapshots to destroy" >&2; exit 1; }
    grep -vxF -- "$2" "$state/snapshots" >"$state/snapshots.new" || true
    mv "$state/snapshots.new" "$state/snapshots"
    ;;
  *) echo "unexpected: zfs $*" >&2; exit 3 ;;
esac
`;

/** `2024-03-01T12:00:00` as swarm names it: `tank/meshfs/state@swarm-20240301T120000Z`. */
function swarm(iso: string, dataset = DATASET): string {
  return `${dataset}@swarm-${iso.replace(/[-:]/g, "")}Z`;
}

const seconds = (iso: string) => Date.parse(`${iso}Z`) / 1000;

function stampOf(time: number): string {
  return new Date(time * 1000).toISOString().slice(0, 19);
}

interface Outcome {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The dataset's snapshots afterwards, in the stand-in's order. */
  readonly snapshots: string[];
  /** Each zfs call, as its arguments. */
  readonly calls: string[];
}

let programDir: string;
let program: string;

beforeAll(() => {
  programDir = mkdtempSync(join(tmpdir(), "swarm-zfs-snapshot-"));
  program = join(programDir, "zfs-snapshot");
  writeFileSync(program, snapshotScript(), { mode: 0o755 });
});

afterAll(() => rmSync(programDir, { recursive: true, force: true }));

/** A dataset's snapshots and holds, and a stand-in zfs that keeps them. */
class StandIn {
  readonly dir = mkdtempSync(join(programDir, "state-"));

  constructor(snapshots: readonly string[], holds: Readonly<Record<string, string>> = {}) {
    writeFileSync(join(this.dir, "zfs"), STAND_IN_ZFS, { mode: 0o755 });
    writeFileSync(join(this.dir, "snapshots"), snapshots.map((s) => `${s}\n`).join(""));
    const holdLines = Object.entries(holds).map(([name, tag]) => `${name}\t${tag}\n`);
    writeFileSync(join(this.dir, "holds"), holdLines.join(""));
    writeFileSync(join(this.dir, "refused"), "");
  }

  /** Sets a stand-in file: `refused`, `fail-list`, `fail-holds`. */
  set(file: string, text = ""): void {
    writeFileSync(join(this.dir, file), text);
  }

  snapshots(): string[] {
    return lines(readFileSync(join(this.dir, "snapshots"), "utf8"));
  }

  /** Runs the program with the clock at `now` (an ISO time, UTC). */
  run(args: readonly string[], now: string | number): Outcome {
    writeFileSync(join(this.dir, "calls"), "");
    const result = spawnSync("bash", [program, ...args], {
      encoding: "utf8",
      // Passed whole: a child sees only the env it is given.
      env: {
        PATH: `${this.dir}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        SWARM_NOW: String(typeof now === "number" ? now : seconds(now)),
      },
    });
    return {
      status: result.status,
      stdout: result.stdout,
      stderr: result.stderr,
      snapshots: this.snapshots(),
      calls: lines(readFileSync(join(this.dir, "calls"), "utf8")),
    };
  }
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

const tiers = (t: Partial<Retention>): string[] =>
  retentionArgs({ frequent: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0, ...t });

/** The plan lines of a dry run, as [action, snapshot, why]. */
function planOf(stdout: string): string[][] {
  return lines(stdout)
    .filter((l) => !l.startsWith("swarm: "))
    .map((l) => l.split("\t"));
}

const destroyedBy = (stdout: string) =>
  planOf(stdout)
    .filter(([a]) => a === "destroy")
    .map(([, s]) => s);

/** Every hour from `from` for `count` hours, as swarm names them. */
function hourly(from: string, count: number, step = 3600): string[] {
  return Array.from({ length: count }, (_, i) => swarm(stampOf(seconds(from) + i * step)));
}

describe("zfs-snapshot keeps what its tiers select", () => {
  it.each<{ what: string; history: string[]; now: string; retention: Partial<Retention>; left: string[] }>([
    {
      what: "frequent: the N newest, whatever their age",
      history: [swarm("2023-01-01T00:00:00"), swarm("2024-01-01T00:00:00"), swarm("2024-03-01T11:59:00")],
      now: "2024-03-01T12:00:00",
      retention: { frequent: 3 },
      left: [swarm("2024-01-01T00:00:00"), swarm("2024-03-01T11:59:00"), swarm("2024-03-01T12:00:00")],
    },
    {
      what: "hourly: the newest of each hour that has one, an outage not counting",
      history: [
        swarm("2024-03-01T08:10:00"),
        swarm("2024-03-01T09:10:00"),
        swarm("2024-03-01T09:40:00"),
        // The host was off for three days.
        swarm("2024-03-04T10:05:00"),
        swarm("2024-03-04T10:50:00"),
      ],
      now: "2024-03-04T11:00:00",
      retention: { hourly: 3 },
      left: [swarm("2024-03-01T09:40:00"), swarm("2024-03-04T10:50:00"), swarm("2024-03-04T11:00:00")],
    },
    {
      what: "daily: the newest of each UTC day",
      history: [
        swarm("2024-02-28T23:59:59"),
        swarm("2024-02-29T00:00:00"),
        swarm("2024-02-29T12:00:00"),
        swarm("2024-02-29T23:59:59"),
        swarm("2024-03-01T00:00:00"),
      ],
      now: "2024-03-01T06:00:00",
      retention: { daily: 2 },
      left: [swarm("2024-02-29T23:59:59"), swarm("2024-03-01T06:00:00")],
    },
    {
      what: "weekly: the newest of each week, Monday to Sunday",
      history: [
        swarm("2023-12-31T12:00:00"), // a Sunday
        swarm("2024-01-01T00:00:00"), // Monday: a new week
        swarm("2024-01-07T23:00:00"), // its Sunday
        swarm("2024-01-08T01:00:00"), // Monday
      ],
      now: "2024-01-09T00:00:00",
      retention: { weekly: 2 },
      left: [swarm("2024-01-07T23:00:00"), swarm("2024-01-09T00:00:00")],
    },
    {
      what: "monthly: the newest of each calendar month, across a year's end",
      history: [
        swarm("2023-11-30T23:00:00"),
        swarm("2023-12-01T00:00:00"),
        swarm("2023-12-31T23:59:59"),
        swarm("2024-01-31T00:00:00"),
      ],
      now: "2024-02-01T00:00:00",
      retention: { monthly: 3 },
      left: [swarm("2023-12-31T23:59:59"), swarm("2024-01-31T00:00:00"), swarm("2024-02-01T00:00:00")],
    },
    {
      what: "tiers together: a snapshot any tier keeps stays",
      history: hourly("2024-01-30T20:00:00", 60),
      now: "2024-02-02T08:00:00",
      retention: { frequent: 2, hourly: 3, daily: 2, monthly: 2 },
      left: [
        swarm("2024-01-31T23:00:00"), // monthly 2: January
        swarm("2024-02-01T23:00:00"), // daily 2
        swarm("2024-02-02T06:00:00"), // hourly 3
        swarm("2024-02-02T07:00:00"), // frequent 2, hourly 2
        swarm("2024-02-02T08:00:00"), // the one taken: frequent 1, hourly 1, daily 1, monthly 1
      ],
    },
  ])("$what", ({ history, now, retention, left }) => {
    const zfs = new StandIn(history);
    const outcome = zfs.run([DATASET, ...tiers(retention)], now);
    expect(outcome.stderr).toBe("");
    expect(outcome.status).toBe(0);
    expect([...outcome.snapshots].sort()).toEqual(left);
    expect(outcome.calls.filter((c) => c.startsWith("destroy "))).toEqual(
      [...history]
        .filter((s) => !left.includes(s))
        .sort()
        .reverse()
        .map((s) => `destroy ${s}`),
    );
  });

  it("never destroys a held snapshot, and says it kept it for its hold", () => {
    const old = swarm("2024-01-01T00:00:00");
    const zfs = new StandIn([old, swarm("2024-01-01T01:00:00")], { [old]: "replica\nsecond" });
    zfs.set("holds", `${old}\treplica\n${old}\tkeep-me\n`);
    const outcome = zfs.run([DATASET, "frequent=1"], "2024-01-01T02:00:00");
    expect(outcome.status).toBe(0);
    expect(outcome.snapshots).toEqual([old, swarm("2024-01-01T02:00:00")]);
    expect(outcome.calls).not.toContain(`destroy ${old}`);
    expect(outcome.stdout).toContain(
      `swarm: kept snapshot ${old}: held (replica, keep-me); no tier keeps it\n`,
    );
    expect(outcome.stdout).toContain("destroyed 1 of 3 swarm snapshots, kept 2 (1 only for a hold)");
  });

  it("never touches a snapshot of another name or another dataset", () => {
    const others = [
      `${DATASET}@manual-before-upgrade`,
      `${DATASET}@swarm-notatime`,
      `${DATASET}@swarm-20241301T000000Z`, // no 13th month: not a name swarm writes
      `${DATASET}@swarm-20240101T000000Z-copy`,
      `${DATASET}@autosnap_2024-01-01_00:00:00_hourly`,
      swarm("2024-01-01T00:00:00", "tank/meshfs/other"),
      swarm("2024-01-01T00:00:00", `${DATASET}/child`),
      swarm("2024-01-01T00:00:00", "tank/meshfs"),
    ];
    const zfs = new StandIn([...others, swarm("2024-01-01T00:00:00")]);
    const outcome = zfs.run([DATASET, "frequent=1"], "2024-01-02T00:00:00");
    expect(outcome.status).toBe(0);
    expect(outcome.snapshots).toEqual([...others, swarm("2024-01-02T00:00:00")]);
    // Those of other datasets, which zfs list -d 1 does not list, are not counted either.
    expect(outcome.stdout).toContain("5 other snapshots (not named by swarm) never touched");
  });

  it("never destroys the newest, nor the one it took, when the clock went back", () => {
    const history = [swarm("2024-05-01T00:00:00"), swarm("2024-05-02T00:00:00")];
    const zfs = new StandIn(history);
    const outcome = zfs.run([DATASET, "frequent=1"], "2024-04-01T00:00:00");
    expect(outcome.status).toBe(0);
    expect(outcome.snapshots).toEqual([swarm("2024-05-02T00:00:00"), swarm("2024-04-01T00:00:00")]);
  });

  it("takes the snapshot first, and names it by the UTC clock", () => {
    const zfs = new StandIn([]);
    const outcome = zfs.run([DATASET, "hourly=48"], "2024-07-04T09:08:07");
    expect(outcome.calls[0]).toBe(`snapshot ${DATASET}@swarm-20240704T090807Z`);
    expect(outcome.stdout).toMatch(/^swarm: took snapshot tank\/meshfs\/state@swarm-20240704T090807Z\n/);
  });
});

describe("zfs-snapshot --dry-run", () => {
  const history = [
    swarm("2024-02-28T10:00:00"),
    swarm("2024-02-29T09:00:00"),
    swarm("2024-02-29T10:00:00"),
    swarm("2024-03-01T10:00:00"),
    swarm("2024-03-01T11:00:00"),
    `${DATASET}@before-upgrade`,
  ];
  const holds = { [swarm("2024-02-28T10:00:00")]: "replica" };

  it("prints what a run now would take, keep and destroy, and why, newest first", () => {
    const zfs = new StandIn(history, holds);
    const outcome = zfs.run(["--dry-run", DATASET, "hourly=2", "daily=2"], "2024-03-01T12:00:00");
    expect(outcome.stderr).toBe("");
    expect(outcome.status).toBe(0);
    expect(outcome.stdout).toBe(
      [
        "swarm: dry run of a run at 20240301T120000Z on tank/meshfs/state (frequent=0 hourly=2 daily=2 weekly=0 monthly=0): nothing is taken or destroyed",
        "take\ttank/meshfs/state@swarm-20240301T120000Z\tnewest; taken by this run; hourly 1 of 2, daily 1 of 2",
        "keep\ttank/meshfs/state@swarm-20240301T110000Z\thourly 2 of 2",
        "destroy\ttank/meshfs/state@swarm-20240301T100000Z\tno tier keeps it",
        "keep\ttank/meshfs/state@swarm-20240229T100000Z\tdaily 2 of 2",
        "destroy\ttank/meshfs/state@swarm-20240229T090000Z\tno tier keeps it",
        "keep\ttank/meshfs/state@swarm-20240228T100000Z\theld (replica); no tier keeps it",
        "ignore\ttank/meshfs/state@before-upgrade\tnot a swarm snapshot name: never pruned",
        "swarm: a run at 20240301T120000Z would take 1 snapshot, destroy 2 of 6 swarm snapshots and keep 4 (1 only for a hold); 1 other snapshot (not named by swarm) never touched",
        "",
      ].join("\n"),
    );
  });

  it("takes and destroys nothing, and asks zfs only to list", () => {
    const zfs = new StandIn(history, holds);
    const outcome = zfs.run(["--dry-run", DATASET, "frequent=1"], "2024-03-01T12:00:00");
    expect(outcome.status).toBe(0);
    expect(outcome.snapshots).toEqual(history);
    expect(outcome.calls.map((c) => c.split(" ")[0])).toEqual(["list", "holds"]);
  });

  it("destroys exactly what the run then destroys", () => {
    const dry = new StandIn(history, holds).run(["--dry-run", DATASET, "daily=1"], "2024-03-02T00:30:00");
    const run = new StandIn(history, holds).run([DATASET, "daily=1"], "2024-03-02T00:30:00");
    const destroyed = run.calls.filter((c) => c.startsWith("destroy ")).map((c) => c.slice(8));
    expect(destroyed.length).toBeGreaterThan(0);
    expect(destroyedBy(dry.stdout)).toEqual(destroyed);
    expect(run.stdout).toContain(`swarm: destroyed snapshot ${destroyed[0]}: no tier keeps it\n`);
  });
});

describe("zfs-snapshot when zfs fails or is used wrongly", () => {
  const history = hourly("2024-01-01T00:00:00", 5);

  it("goes on past a destroy zfs refuses (a hold placed meanwhile), and fails the run", () => {
    const zfs = new StandIn(history);
    zfs.set("refused", `${history[1]}\n`);
    const outcome = zfs.run([DATASET, "frequent=1"], "2024-01-02T00:00:00");
    expect(outcome.status).toBe(1);
    expect(outcome.snapshots).toEqual([history[1], swarm("2024-01-02T00:00:00")]);
    expect(outcome.stderr).toContain(
      `zfs-snapshot: zfs destroy ${history[1]} failed; it stays until the next run`,
    );
    expect(outcome.stderr).toContain("zfs-snapshot: 1 of 5 destroys failed");
  });

  it.each(["fail-list", "fail-holds"])("destroys nothing when zfs cannot answer (%s)", (file) => {
    const zfs = new StandIn(history);
    zfs.set(file);
    const outcome = zfs.run([DATASET, "frequent=1"], "2024-01-02T00:00:00");
    expect(outcome.status).toBe(1);
    expect(outcome.stderr).toContain("failed (see above): nothing is destroyed");
    expect(outcome.calls.filter((c) => c.startsWith("destroy"))).toEqual([]);
  });

  it.each([
    { args: [DATASET], message: "give a dataset and at least one tier" },
    { args: [DATASET, "hourly=0", "daily=0"], message: "every tier is 0: that keeps no snapshot" },
    { args: [DATASET, "yearly=2"], message: "'yearly=2' is not TIER=N" },
    { args: [DATASET, "hourly"], message: "'hourly' is not TIER=N" },
    { args: [DATASET, "hourly=-1"], message: "N must be a whole number" },
    { args: [DATASET, "hourly=2", "hourly=3"], message: "hourly is given twice" },
    { args: [`${DATASET}@x`, "hourly=2"], message: "is not a dataset name" },
    { args: ["-r", "hourly=2"], message: "is not a dataset name" },
  ])("refuses $args with exit 2, before any zfs call", ({ args, message }) => {
    const zfs = new StandIn(history);
    const outcome = zfs.run(args, "2024-01-02T00:00:00");
    expect(outcome.status).toBe(2);
    expect(outcome.stderr).toContain(message);
    expect(outcome.stderr).toContain("usage: zfs-snapshot [--dry-run] [--no-snapshot] DATASET TIER=N...");
    expect(outcome.calls).toEqual([]);
  });

  it("refuses a clock that is not seconds since the epoch", () => {
    const outcome = new StandIn(history).run([DATASET, "hourly=2"], "soon" as unknown as number);
    expect(outcome.status).toBe(2);
    expect(outcome.calls).toEqual([]);
  });
});

// ---------------------------------------------------------------- the property

/** What each tier selects, written independently of the program: periods from JavaScript's UTC calendar. */
function modelKeeps(times: readonly number[], retention: Retention): Set<number> {
  const newestFirst = [...times].sort((a, b) => b - a);
  const periodOf: Record<Exclude<RetentionTier, "frequent">, (t: number) => number> = {
    hourly: (t) => Math.floor(t / 3600),
    daily: (t) => Math.floor(t / 86400),
    weekly: (t) => Math.floor(t / 86400) - ((new Date(t * 1000).getUTCDay() + 6) % 7),
    monthly: (t) => new Date(t * 1000).getUTCFullYear() * 12 + new Date(t * 1000).getUTCMonth(),
  };
  const kept = new Set(newestFirst.slice(0, retention.frequent));
  for (const tier of RETENTION_TIERS.filter((t) => t !== "frequent")) {
    const seen = new Set<number>();
    for (const t of newestFirst) {
      const period = periodOf[tier](t);
      if (!seen.has(period) && seen.size < retention[tier]) {
        seen.add(period);
        kept.add(t);
      }
    }
  }
  return kept;
}

interface History {
  readonly times: number[];
  readonly held: number[];
  readonly foreign: string[];
  readonly retention: Retention;
  readonly now: number;
}

const START = seconds("2023-06-01T00:00:00");
const GAP = fc.oneof(
  fc.integer({ min: 1, max: 3600 }),
  fc.integer({ min: 3600, max: 2 * 86400 }),
  fc.integer({ min: 86400, max: 45 * 86400 }),
);
const FOREIGN = [
  `${DATASET}@manual`,
  `${DATASET}@swarm-20241301T000000Z`,
  swarm("2024-01-01T00:00:00", `${DATASET}/child`),
  swarm("2024-01-01T00:00:00", "tank/other"),
];

const histories: fc.Arbitrary<History> = fc
  .record({
    start: fc.integer({ min: START, max: START + 365 * 86400 }),
    gaps: fc.array(GAP, { maxLength: 30 }),
    foreign: fc.subarray(FOREIGN),
    retention: fc
      .record({
        frequent: fc.integer({ min: 0, max: 5 }),
        hourly: fc.integer({ min: 0, max: 6 }),
        daily: fc.integer({ min: 0, max: 6 }),
        weekly: fc.integer({ min: 0, max: 4 }),
        monthly: fc.integer({ min: 0, max: 4 }),
      })
      .filter((r) => Object.values(r).some((n) => n > 0)),
    after: fc.oneof(
      { weight: 5, arbitrary: fc.integer({ min: 1, max: 40 * 86400 }) },
      // A clock that went back.
      { weight: 1, arbitrary: fc.integer({ min: -30 * 86400, max: -1 }) },
    ),
  })
  .chain(({ start, gaps, foreign, retention, after }) => {
    const times = gaps.reduce((acc, gap) => [...acc, acc[acc.length - 1] + gap], [start]);
    const now = Math.max(START, times[times.length - 1] + after);
    return fc.subarray(times).map((held): History => ({
      times,
      held,
      foreign,
      retention,
      now: times.includes(now) ? now + 1 : now,
    }));
  });

describe("zfs-snapshot over random histories", () => {
  it("destroys only swarm snapshots no tier keeps, never a held one or the newest, exactly as its dry run said, and a second prune nothing", () => {
    fc.assert(
      fc.property(histories, ({ times, held, foreign, retention, now }) => {
        const name = (t: number) => swarm(stampOf(t));
        const before = [...foreign, ...times.map(name)];
        const holds = Object.fromEntries(held.map((t) => [name(t), "replica"]));
        const args = [DATASET, ...retentionArgs(retention)];

        const zfs = new StandIn(before, holds);
        const dry = zfs.run(["--dry-run", ...args], now);
        expect(dry.status).toBe(0);
        expect(zfs.snapshots()).toEqual(before);
        const run = zfs.run(args, now);
        expect(run.stderr).toBe("");
        expect(run.status).toBe(0);

        const all = [...times, now];
        const expected = new Set([
          ...foreign,
          ...held.map(name),
          ...[...modelKeeps(all, retention), Math.max(...all), now].map(name),
        ]);
        expect(new Set(run.snapshots)).toEqual(expected);
        const destroyed = before.filter((s) => !run.snapshots.includes(s));
        expect(destroyedBy(dry.stdout).sort()).toEqual(destroyed.sort());

        const again = zfs.run(["--dry-run", ...args], now);
        expect(destroyedBy(again.stdout)).toEqual([]);
        expect(again.snapshots).toEqual(run.snapshots);
      }),
      { numRuns: 25 },
    );
  });
});

/**
 * Scrubs: the plan's scrub per export, the units and the scrub program
 * (golden, through systemd-analyze verify, and run for real against a
 * stand-in zpool), the retiring of units no export asks for any more (run
 * for real against stand-in records and systemctl), and the export
 * component that installs and removes them with its snapshots step.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { MeshfsExport } from "../components/meshfsExport";
import { DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT } from "../components/remote";
import { planFleet } from "../config/model";
import { stepsOf } from "../config/plan";
import { FleetConfig } from "../config/types";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { installMocks, MockFleet, promiseOf, RecordedResource, settle } from "../offline/mockRuntime";
import {
  commandRecord,
  SCRUB_PROGRAM,
  scrubInstallPart,
  scrubProgram,
  scrubService,
  scrubStatusPath,
  scrubTeardownPart,
  scrubTimer,
  scrubUnitName,
  ScrubPlan,
} from "../templates/scrub";
import { extractFiles, hostScript, OWNED_DIR, SCRIPT_PRELUDE, unwrapRootCommand } from "../templates/shell";
import { Sandbox } from "./sandbox";
import { Raw, STORAGE_FLEET, VOLUME_DEVICE, fakePublicKey, storageFleet } from "./storageFixtures";

const MONTHLY: ScrubPlan = { pool: "tank", schedule: "monthly" };
const RECORD = commandRecord("meshfs-snapshots");

/** The first export of the raw config with its pool changed by `change`. */
const poolOf =
  (change: (pool: Raw) => Raw) =>
  (raw: Raw): Raw => {
    const [first, ...rest] = raw.exports as Raw[];
    return { ...raw, exports: [{ ...first, pool: change(first.pool as Raw) }, ...rest] };
  };

describe("the plan", () => {
  const exportStep = (config: FleetConfig) => stepsOf(planFleet(config).steps, "export")[0];

  test("an export's step carries its pool's scrub, monthly by default, none when off", () => {
    expect(exportStep(STORAGE_FLEET).scrub).toEqual({ pool: "tank", schedule: "monthly" });
    expect(exportStep(storageFleet(poolOf((p) => ({ ...p, scrub: "weekly" })))).scrub).toEqual({
      pool: "tank",
      schedule: "weekly",
    });
    expect(exportStep(storageFleet(poolOf((p) => ({ ...p, scrub: "off" })))).scrub).toBeUndefined();
  });
});

describe("templates", () => {
  const GOLDEN: Record<string, () => string> = {
    [SCRUB_PROGRAM]: () => scrubProgram(),
    [scrubUnitName("tank", "service")]: () => scrubService(MONTHLY),
    [scrubUnitName("tank", "timer")]: () => scrubTimer(MONTHLY),
    "snapshots step part, scrub monthly": () => scrubInstallPart(MONTHLY, RECORD),
    "snapshots step part, scrub off": () => scrubInstallPart(undefined, RECORD),
    "snapshots step teardown part": () => scrubTeardownPart(RECORD),
  };

  test.each(Object.keys(GOLDEN))("%s", (name) => {
    const text = GOLDEN[name]();
    expect(text.endsWith("\n")).toBe(true);
    expect(text).toMatchSnapshot();
  });

  test.each([
    ["the program", scrubProgram()],
    ["the install part after the prelude", `${SCRIPT_PRELUDE}\n${scrubInstallPart(MONTHLY, RECORD)}`],
    ["the off part after the prelude", `${SCRIPT_PRELUDE}\n${scrubInstallPart(undefined, RECORD)}`],
    ["the teardown part", `set -euo pipefail\n${scrubTeardownPart(RECORD)}`],
  ])("%s is valid bash", (_, text) => {
    const result = spawnSync("bash", ["-n"], { input: text, encoding: "utf8" });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  test("the timer is a persistent calendar timer, spread over a day at a fixed offset per host", () => {
    const timer = scrubTimer({ pool: "tank", schedule: "weekly" });
    expect(timer).toContain(
      "\nOnCalendar=weekly\nPersistent=yes\nRandomizedDelaySec=1d\nFixedRandomDelay=yes\n",
    );
    expect(scrubService(MONTHLY)).toContain(`\nExecStart=${SCRUB_PROGRAM} tank\n`);
  });

  test("the install part writes the program and the units, starts the timer, then retires the others", () => {
    const part = scrubInstallPart(MONTHLY, RECORD);
    expect(extractFiles(part).map((f) => [f.path, f.mode])).toEqual([
      [SCRUB_PROGRAM, "0755"],
      ["/etc/systemd/system/swarm-scrub-tank.service", "0644"],
      ["/etc/systemd/system/swarm-scrub-tank.timer", "0644"],
    ]);
    const lines = part.split("\n");
    expect(
      lines.indexOf("swarm_activate 'swarm-scrub-tank.timer' '/etc/systemd/system/swarm-scrub-tank.timer'"),
    ).toBeLessThan(lines.indexOf(`swarm_scrub_retire '${RECORD}' 'swarm-scrub-tank.timer'`));
    expect(lines).toContain(`swarm_scrub_retire '${RECORD}' 'swarm-scrub-tank.timer'`);
    const off = scrubInstallPart(undefined, RECORD);
    expect(extractFiles(off)).toEqual([]);
    expect(off.endsWith(`\nswarm_scrub_retire '${RECORD}'\n`)).toBe(true);
    expect(RECORD).toBe(`${OWNED_DIR}/meshfs-snapshots`);
  });

  test("the units pass systemd-analyze verify without a word about them", () => {
    const root = mkdtempSync(join(tmpdir(), "swarm-scrub-units-"));
    try {
      for (const dir of ["usr/lib/systemd", "etc/systemd/system", "usr/local/lib/swarm"]) {
        mkdirSync(join(root, dir), { recursive: true });
      }
      for (const link of ["bin", "sbin", "lib"]) {
        symlinkSync(`usr/${link}`, join(root, link));
      }
      cpSync("/usr/lib/systemd/system", join(root, "usr/lib/systemd/system"), { recursive: true });
      writeFileSync(join(root, SCRUB_PROGRAM), scrubProgram(), { mode: 0o755 });
      const units: Record<string, string> = {
        [scrubUnitName("tank", "service")]: scrubService(MONTHLY),
        [scrubUnitName("tank", "timer")]: scrubTimer(MONTHLY),
        [scrubUnitName("big.pool:2", "timer")]: scrubTimer({ pool: "big.pool:2", schedule: "quarterly" }),
        [scrubUnitName("big.pool:2", "service")]: scrubService({ pool: "big.pool:2", schedule: "quarterly" }),
        // A unit that cannot be right proves the check can fail.
        "swarm-scrub-broken.timer": "[Timer]\nOnCalendar=every full moon\n",
      };
      for (const [name, text] of Object.entries(units)) {
        writeFileSync(join(root, "etc/systemd/system", name), text);
      }
      const verify = (name: string) => {
        const result = spawnSync(
          "systemd-analyze",
          ["verify", "--man=no", `--root=${root}`, join(root, "etc/systemd/system", name)],
          { encoding: "utf8" },
        );
        const stem = name.replace(/\.[a-z]+$/, "");
        return `${result.stdout}${result.stderr}`.split("\n").filter((line) => line.includes(stem));
      };
      for (const name of Object.keys(units).filter((n) => !n.includes("broken"))) {
        expect([name, verify(name)]).toEqual([name, []]);
      }
      expect(verify("swarm-scrub-broken.timer")).not.toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("zfs-scrub, for real against a stand-in zpool", () => {
  const FINISHED = "scrub repaired 1.50M in 1 days 02:03:04 with 2 errors on Sat Nov  1 07:18:22 2025";

  /**
   * Runs zfs-scrub with a zpool that knows `status -p`, `scrub -w` and `wait -t scrub`: its scan line is
   * `before` until a scrub or a wait ends, then `after`; `scrub -w` fails when `scrubFails` is set, and
   * then a scrub is `startedMeanwhile` when that is set.
   */
  function runScrub(opts: {
    before: string;
    after: string;
    scrubFails?: boolean;
    startedMeanwhile?: boolean;
    args?: string[];
    status?: string;
  }) {
    const dir = mkdtempSync(join(tmpdir(), "swarm-scrub-"));
    try {
      writeFileSync(join(dir, "scan"), `${opts.before}\n`);
      writeFileSync(join(dir, "after"), `${opts.after}\n`);
      writeFileSync(join(dir, "calls"), "");
      mkdirSync(join(dir, "status"));
      if (opts.status !== undefined) {
        writeFileSync(join(dir, "status", "tank"), opts.status);
      }
      writeFileSync(
        join(dir, "zpool"),
        `#!/bin/bash
set -euo pipefail
dir=${dir}
echo "zpool $*" >>"$dir/calls"
case "$1 $2" in
  "status -p")
    printf '  pool: %s\\n state: ONLINE\\n  scan: %s\\nconfig:\\n\\n\\tNAME STATE READ WRITE CKSUM\\n\\t%s ONLINE 0 0 0\\n\\nerrors: No known data errors\\n' "$3" "$(cat "$dir/scan")" "$3" ;;
  "scrub -w")
    if [ "${opts.scrubFails ? 1 : 0}" = 1 ]; then
      [ "${opts.startedMeanwhile ? 1 : 0}" = 0 ] || echo "scrub in progress since Sat Nov  1 07:12:00 2025" >"$dir/scan"
      echo "cannot scrub $3: currently resilvering" >&2
      exit 1
    fi
    cp "$dir/after" "$dir/scan" ;;
  "wait -t") cp "$dir/after" "$dir/scan" ;;
  *) exit 2 ;;
esac
`,
        { mode: 0o755 },
      );
      writeFileSync(join(dir, "zfs-scrub"), scrubProgram(), { mode: 0o755 });
      const before = Math.floor(Date.now() / 1000);
      const result = spawnSync(join(dir, "zfs-scrub"), opts.args ?? ["tank"], {
        encoding: "utf8",
        env: { PATH: `${dir}:${process.env.PATH}`, TZ: "UTC", SWARM_SCRUB_STATUS_DIR: join(dir, "status") },
      });
      const statusFile = join(dir, "status", "tank");
      return {
        code: result.status,
        stdout: result.stdout,
        stderr: result.stderr,
        calls: readFileSync(join(dir, "calls"), "utf8")
          .trim()
          .split("\n")
          .filter((l) => l !== ""),
        // When it started is the clock's: within the run, and written as STARTED.
        status: existsSync(statusFile)
          ? readFileSync(statusFile, "utf8").replace(/^started=(\d+)\n/, (line, at: string) =>
              Number(at) >= before && Number(at) <= Date.now() / 1000 ? "started=STARTED\n" : line,
            )
          : undefined,
        leftovers: spawnSync("ls", ["-A", join(dir, "status")], { encoding: "utf8" })
          .stdout.trim()
          .split("\n"),
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  test("scrubs, waits, and records the end, the errors and the bytes repaired", () => {
    const run = runScrub({
      before: "scrub repaired 0B in 00:06:22 with 0 errors on Wed Oct  1 07:18:22 2025",
      after: FINISHED,
    });
    expect(run.stderr).toBe("zfs-scrub: tank: 2 error(s): zpool status -v tank names the damaged files\n");
    expect(run.code).toBe(0);
    expect(run.calls).toEqual(["zpool status -p tank", "zpool scrub -w tank", "zpool status -p tank"]);
    expect(run.status).toBe(
      `started=STARTED\nended=1761981502\nerrors=2\nrepaired_bytes=1572864\nscan=${FINISHED}\n`,
    );
    // Written through a dot file, so a reader never sees half of it.
    expect(run.leftovers).toEqual(["tank"]);
  });

  test.each([
    ["0B", 0],
    ["512B", 512],
    ["12K", 12288],
    ["1.50M", 1572864],
    ["3.2G", 3435973837],
  ])("reads %s repaired as %i bytes", (size, bytes) => {
    const run = runScrub({
      before: "none requested",
      after: `scrub repaired ${size} in 00:00:01 with 0 errors on Sat Nov  1 07:18:22 2025`,
    });
    expect(run.code).toBe(0);
    expect(run.status).toContain(`\nrepaired_bytes=${bytes}\n`);
  });

  test("waits for a scrub that is running already instead of starting one", () => {
    const run = runScrub({ before: "scrub in progress since Sat Nov  1 07:12:00 2025", after: FINISHED });
    expect(run.code).toBe(0);
    expect(run.calls).toEqual(["zpool status -p tank", "zpool wait -t scrub tank", "zpool status -p tank"]);
    expect(run.stdout).toContain(
      "a scrub of tank is running already (in progress since Sat Nov  1 07:12:00 2025)",
    );
    expect(run.status).toContain("ended=1761981502\n");
  });

  test("waits for a scrub that started between its look and its start", () => {
    const run = runScrub({
      before: "none requested",
      after: FINISHED,
      scrubFails: true,
      startedMeanwhile: true,
    });
    expect(run.code).toBe(0);
    expect(run.calls).toEqual([
      "zpool status -p tank",
      "zpool scrub -w tank",
      "zpool status -p tank",
      "zpool wait -t scrub tank",
      "zpool status -p tank",
    ]);
    expect(run.status).toContain("errors=2\n");
  });

  test("a scrub that cannot start fails, and records only that it started", () => {
    const run = runScrub({ before: "none requested", after: FINISHED, scrubFails: true });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("zfs-scrub: zpool scrub tank failed");
    expect(run.status).toBe("started=STARTED\n");
  });

  test("a canceled scrub fails and leaves the last finished scrub's lines as they were, after its own start", () => {
    const finished = "ended=1759303102\nerrors=0\nrepaired_bytes=0\nscan=earlier\n";
    const previous = `started=1759300000\n${finished}`;
    const run = runScrub({
      before: "none requested",
      after: "scrub canceled on Sat Nov  1 07:14:00 2025",
      status: previous,
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      "zfs-scrub: the scrub of tank did not finish: scrub canceled on Sat Nov  1 07:14:00 2025\n",
    );
    // started later than ended: health says this scrub did not finish.
    expect(run.status).toBe(`started=STARTED\n${finished}`);
  });

  test.each([[[]], [["tank", "other"]]])("refuses %j as arguments", (args) => {
    const run = runScrub({ before: "none requested", after: FINISHED, args });
    expect(run.code).toBe(2);
    expect(run.stderr).toBe("usage: zfs-scrub POOL\n");
    expect(run.calls).toEqual([]);
  });
});

describe("retiring scrub units, for real against stand-in records and systemctl", () => {
  /**
   * Runs swarm_scrub_retire RECORD [KEEP] with the step's record `own`, other steps' records `others`
   * (by command name) and the units and program in place; returns what is left and what systemctl did.
   */
  function retire(own: string | undefined, others: Record<string, string>, keep?: string) {
    const dir = mkdtempSync(join(tmpdir(), "swarm-scrub-retire-"));
    try {
      const units = join(dir, "units");
      const owned = join(dir, "owned");
      const program = join(dir, "zfs-scrub");
      mkdirSync(units);
      mkdirSync(owned);
      mkdirSync(join(dir, "bin"));
      for (const pool of ["tank", "old", "shared"]) {
        writeFileSync(join(units, scrubUnitName(pool, "timer")), "");
        writeFileSync(join(units, scrubUnitName(pool, "service")), "");
      }
      writeFileSync(program, "");
      const fill = (text: string) => text.replace(/PROGRAM/g, program);
      if (own !== undefined) {
        writeFileSync(join(owned, "meshfs-snapshots"), fill(own));
      }
      for (const [name, text] of Object.entries(others)) {
        writeFileSync(join(owned, name), fill(text));
      }
      writeFileSync(
        join(dir, "bin", "systemctl"),
        `#!/bin/bash\necho "systemctl $*" >>${join(dir, "calls")}\n`,
      );
      // Pool "old" is gone (exported, or renamed away); the others are imported.
      writeFileSync(
        join(dir, "bin", "zfs"),
        `#!/bin/bash\ncase $1 in list) [ "$5" != old ] ;; *) echo "zfs $*" >>${join(dir, "calls")} ;; esac\n`,
      );
      chmodSync(join(dir, "bin", "systemctl"), 0o755);
      chmodSync(join(dir, "bin", "zfs"), 0o755);
      const fn = hostScript("scrub-retire.sh", { SCRUB_PROGRAM: program, SCRUB_UNIT_DIR: units });
      const record = join(owned, "meshfs-snapshots");
      const result = spawnSync(
        "bash",
        ["-c", `set -euo pipefail\n${fn}swarm_scrub_retire "$@"`, "retire", record, ...(keep ? [keep] : [])],
        // stdin not a socket: bash would take itself for sshd's and read ~/.bashrc.
        {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "pipe"],
          env: { PATH: `${join(dir, "bin")}:${process.env.PATH}` },
        },
      );
      return {
        code: result.status,
        stdout: result.stdout,
        stderr: result.stderr,
        units: spawnSync("ls", [units], { encoding: "utf8" })
          .stdout.trim()
          .split("\n")
          .filter((l) => l !== ""),
        program: existsSync(program),
        calls: existsSync(join(dir, "calls"))
          ? readFileSync(join(dir, "calls"), "utf8").trim().split("\n")
          : [],
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const line = (...fields: string[]) => `${fields.join("\t")}\n`;
  const OWN =
    line("file", "PROGRAM", "abc", "755", "root:root") +
    line("unit", "swarm-scrub-old.timer") +
    line("unit", "swarm-scrub-tank.timer") +
    line("unit", "swarm-snapshot-meshfs.timer");

  test("a pool renamed: the old pool's units go, the kept ones and the program stay", () => {
    const run = retire(OWN, {}, "swarm-scrub-tank.timer");
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.units).toEqual([
      "swarm-scrub-shared.service",
      "swarm-scrub-shared.timer",
      "swarm-scrub-tank.service",
      "swarm-scrub-tank.timer",
    ]);
    expect(run.calls).toEqual([
      "systemctl disable --now --quiet swarm-scrub-old.timer",
      "systemctl daemon-reload",
    ]);
    expect(run.program).toBe(true);
  });

  test("turned off (or torn down): every scrub unit of the step and the program go, never the snapshot timer", () => {
    const run = retire(OWN, {});
    expect(run.code).toBe(0);
    expect(run.units).toEqual(["swarm-scrub-shared.service", "swarm-scrub-shared.timer"]);
    // Debian's own scrub gets back the pool that is still there (old is gone).
    expect(run.calls).toEqual([
      "systemctl disable --now --quiet swarm-scrub-old.timer",
      "systemctl disable --now --quiet swarm-scrub-tank.timer",
      "zfs inherit org.debian:periodic-scrub tank",
      "systemctl daemon-reload",
    ]);
    expect(run.program).toBe(false);
    expect(run.stdout).toContain("the pool is untouched");
    expect(run.stdout).toContain(
      "swarm: tank is left to the distribution's own scrub schedule again (org.debian:periodic-scrub inherited)",
    );
  });

  test("what another export of the pool still has stays: units and program", () => {
    const other = line("file", "PROGRAM", "abc", "755", "root:root") + line("unit", "swarm-scrub-tank.timer");
    const run = retire(OWN, {
      "archive-snapshots": other,
      ".archive-snapshots.x1": line("unit", "swarm-scrub-old.timer"),
    });
    expect(run.code).toBe(0);
    // The dot file is a record still being written: it keeps nothing.
    expect(run.units).not.toContain("swarm-scrub-old.timer");
    expect(run.units).toContain("swarm-scrub-tank.timer");
    expect(run.calls).toEqual([
      "systemctl disable --now --quiet swarm-scrub-old.timer",
      "systemctl daemon-reload",
    ]);
    expect(run.program).toBe(true);
    expect(run.stdout).toContain("swarm-scrub-tank.timer stays: another export of its pool still has it");
  });

  test("a step without a record (its first run) retires nothing", () => {
    const run = retire(undefined, { "archive-snapshots": OWN });
    expect(run.code).toBe(0);
    expect(run.calls).toEqual([]);
    expect(run.units).toHaveLength(6);
    expect(run.program).toBe(true);
  });
});

describe("the export component", () => {
  const connection = pulumi.secret({
    host: "203.0.113.1",
    port: 22,
    user: "root",
    privateKey: "ADMIN-KEY-TEXT",
    hostKey: fixtureHostKey("anchor"),
    dialErrorLimit: DIAL_ERROR_LIMIT,
    perDialTimeout: PER_DIAL_TIMEOUT,
  });

  async function snapshotsCommand(
    config: FleetConfig,
  ): Promise<{ mocks: MockFleet; command: RecordedResource }> {
    const mocks = await installMocks();
    const [step] = stepsOf(planFleet(config).steps, "export");
    const exported = new MeshfsExport(step.name, {
      step,
      clientKeys: new Map(
        [...step.clients, ...step.syncServers].map((c) => [c.name, pulumi.output(fakePublicKey(c.name))]),
      ),
      connection,
      user: "root",
      volumeDevice: pulumi.output(VOLUME_DEVICE),
    });
    await promiseOf(exported.hostKey);
    await settle();
    return { mocks, command: mocks.named("meshfs-snapshots") };
  }
  const create = (c: RecordedResource) => unwrapRootCommand(String(c.inputs.create));
  const remove = (c: RecordedResource) => unwrapRootCommand(String(c.inputs.delete));

  test("the snapshots step installs the pool's scrub and records it where it retires from", async () => {
    const { mocks, command } = await snapshotsCommand(STORAGE_FLEET);
    const script = create(command);
    const files = extractFiles(script);
    expect(files.map((f) => f.path)).toEqual(
      expect.arrayContaining([
        SCRUB_PROGRAM,
        "/etc/systemd/system/swarm-scrub-tank.service",
        "/etc/systemd/system/swarm-scrub-tank.timer",
      ]),
    );
    expect(files.find((f) => f.path === SCRUB_PROGRAM)?.content).toBe(scrubProgram());
    expect(script).toContain(`swarm_scrub_retire '${RECORD}' 'swarm-scrub-tank.timer'\n`);
    // Debian's monthly cron scrub of every pool leaves this one to swarm's timer (and swarm-drift watches that).
    expect(script).toMatch(/\nzfs_converge 'tank' '[^']*' 'org\.debian:periodic-scrub=disable'\n/);
    // The record the step writes is the one it retires from.
    expect(script).toContain(`swarm_record '${RECORD}'\n`);
    // The teardown removes the units (unless another export of the pool has them), never the pool.
    const teardown = remove(command);
    expect(teardown).toContain(`swarm_scrub_retire '${RECORD}'\n`);
    expect(teardown).not.toMatch(/zpool (destroy|export|scrub -s)/);
    // Only the snapshots step carries the scrub.
    for (const other of mocks.ofType("command:remote:Command").filter((c) => c.name !== "meshfs-snapshots")) {
      expect(create(other)).not.toContain("swarm-scrub");
    }
  });

  test("off: no scrub installed, and the one installed before is retired", async () => {
    const { command } = await snapshotsCommand(storageFleet(poolOf((p) => ({ ...p, scrub: "off" }))));
    const script = create(command);
    expect(
      extractFiles(script)
        .map((f) => f.path)
        .filter((p) => p.includes("scrub")),
    ).toEqual([]);
    expect(script).toContain(`swarm_scrub_retire '${RECORD}'\n`);
  });

  test("a new schedule re-runs the snapshots step", async () => {
    const triggers = async (config: FleetConfig) => (await snapshotsCommand(config)).command.inputs.triggers;
    const monthly = await triggers(STORAGE_FLEET);
    expect(await triggers(storageFleet(poolOf((p) => ({ ...p, scrub: "monthly" }))))).toEqual(monthly);
    expect(await triggers(storageFleet(poolOf((p) => ({ ...p, scrub: "weekly" }))))).not.toEqual(monthly);
  });

  test("the step for real in a sandbox: installs, changes nothing the second time, retires when off, and its teardown removes it", async () => {
    // systemctl keeps enabled and active units in state files; zfs knows the one property.
    const sandbox = new Sandbox(["/etc/systemd/system", "/usr/local/lib", "/var/lib"], {
      systemctl: `state=$SANDBOX/state
case $1 in
  is-enabled) grep -qxF -- "$3" "$state/enabled" 2>/dev/null ;;
  is-active) grep -qxF -- "$3" "$state/active" 2>/dev/null ;;
  enable) echo "$3" >>"$state/enabled" ;;
  start) echo "$2" >>"$state/active" ;;
  disable) grep -vxF -- "$4" "$state/enabled" >"$state/e" || true; mv "$state/e" "$state/enabled"
    grep -vxF -- "$4" "$state/active" >"$state/a" || true; mv "$state/a" "$state/active" ;;
  *) exit 0 ;;
esac`,
      zfs: `case $1 in
  list) exit 0 ;;
  get) cat "$SANDBOX/state/property" 2>/dev/null || echo - ;;
  set) echo "\${2#*=}" >"$SANDBOX/state/property" ;;
  inherit) echo - >"$SANDBOX/state/property" ;;
  *) exit 1 ;;
esac`,
    });
    try {
      const run = (script: string) => {
        const result = sandbox.run(script);
        expect(result.stderr).toBe("");
        expect(result.status).toBe(0);
        return result.stdout;
      };
      const monthly = (await snapshotsCommand(STORAGE_FLEET)).command;
      const off = (await snapshotsCommand(storageFleet(poolOf((p) => ({ ...p, scrub: "off" }))))).command;
      const timer = "/etc/systemd/system/swarm-scrub-tank.timer";

      const first = run(create(monthly));
      expect(first).toContain(`swarm: wrote ${timer}\n`);
      expect(first).toContain("swarm: set org.debian:periodic-scrub=disable on tank (was -)\n");
      expect(sandbox.state("enabled")).toContain("swarm-scrub-tank.timer\n");
      expect(sandbox.read(SCRUB_PROGRAM)).toBe(scrubProgram());
      expect(sandbox.read(RECORD)).toContain("unit\tswarm-scrub-tank.timer\n");
      expect(sandbox.read(RECORD)).toContain("zfs\ttank\torg.debian:periodic-scrub\tdisable\n");

      // The second run changes nothing (the snapshot part may still say what its next prune would do).
      expect(
        run(create(monthly)).match(/^swarm: (wrote|set|enabled|started|restarted|removed) .*$/gm),
      ).toBeNull();

      const retired = run(create(off));
      expect(retired).toContain("swarm: removed swarm-scrub-tank.timer and swarm-scrub-tank.service");
      expect(retired).toContain(`swarm: removed ${SCRUB_PROGRAM}\n`);
      expect(sandbox.exists(timer)).toBe(false);
      expect(sandbox.exists(SCRUB_PROGRAM)).toBe(false);
      expect(sandbox.state("property")).toBe("-\n");
      expect(sandbox.read(RECORD)).not.toContain("scrub");
      // The snapshot timer is the step's too, and stays.
      expect(sandbox.exists("/etc/systemd/system/swarm-snapshot-meshfs.timer")).toBe(true);

      run(create(monthly));
      expect(sandbox.exists(timer)).toBe(true);
      const teardown = run(remove(monthly));
      expect(teardown).toContain("swarm: removed swarm-scrub-tank.timer and swarm-scrub-tank.service");
      expect(sandbox.exists(timer)).toBe(false);
      expect(sandbox.exists(RECORD)).toBe(false);
      expect(sandbox.state("property")).toBe("-\n");
      expect(sandbox.calls().filter((c) => /^zpool|zfs (destroy|export)/.test(c))).toEqual([]);
    } finally {
      sandbox.dispose();
    }
  });

  test("where health looks for the result is where the program writes it", () => {
    expect(scrubProgram()).toContain(`STATUS_DIR='${scrubStatusPath("tank").replace(/\/tank$/, "")}'\n`);
  });
});

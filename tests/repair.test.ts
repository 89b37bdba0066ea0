/**
 * `npm run repair`: which generations it raises, how it edits a stack file
 * (comments and layout kept), and the command end to end against a
 * stand-in for ssh that answers for each host as `swarm-health json` would.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { loadStack, readRuntimeConfig, readStackFile } from "../config/load";
import { planFleet } from "../config/model";
import { validateFleetConfig } from "../config/validate";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import {
  driftedSteps,
  expectedPreview,
  formatRepairTable,
  main,
  parseArguments,
  repairEdits,
  withRepairs,
} from "../scripts/repair";
import { DriftItem, HostReport, StatusRow } from "../scripts/hostReports";

const ROOT = path.join(__dirname, "..");

/** A host's answer: a healthy report, with `drift` as given (left out when undefined, as older hosts do). */
function report(host: string, drift: readonly DriftItem[] | undefined): HostReport {
  return {
    host,
    time: 1_767_000_000,
    maxHandshakeAge: 180,
    pingCount: 3,
    peers: [],
    mounts: [],
    syncs: [],
    datasets: [],
    checks: [],
    ...(drift === undefined ? {} : { drift }),
  };
}

const drift = (step: string, kind: DriftItem["kind"], item: string, detail: string): DriftItem => ({
  step,
  kind,
  item,
  detail,
});

const WG_CONF = drift("mesh-anchor-config", "file", "/etc/wireguard/wg0.conf.public", "content changed");
const ROGUE = drift(
  "mesh-anchor-config",
  "peer",
  "wg0 peer AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg=",
  "not in the plan (AllowedIPs 10.8.0.250/32)",
);
const AUTHORIZED = drift("meshfs-sftp", "file", "/home/meshfs/.ssh/authorized_keys", "content changed");
const TIMER = drift("hetzner-native-wiki-sync-units", "unit", "swarm-sync-wiki.timer", "disabled");

const ROWS: StatusRow[] = [
  { host: "hetzner-native", report: report("hetzner-native", [TIMER]) },
  { host: "anchor", report: report("anchor", [WG_CONF, ROGUE, AUTHORIZED]) },
  { host: "satellite", report: report("satellite", []) },
];

describe("repairEdits", () => {
  test("raises every drifted step once, from 0 or from its current generation", () => {
    expect(repairEdits(ROWS, { "meshfs-sftp": 2, "satellite-meshfs-mount-units": 4 })).toEqual({
      "hetzner-native-wiki-sync-units": 1,
      "mesh-anchor-config": 1,
      "meshfs-sftp": 3,
    });
  });

  test("nothing when nothing drifted, or a host had no report", () => {
    expect(repairEdits([{ host: "anchor", report: report("anchor", []) }], {})).toEqual({});
    expect(repairEdits([{ host: "anchor", error: "timed out" }], { "meshfs-sftp": 1 })).toEqual({});
  });

  test("steps grouped by host and step, sorted, each with its items in order", () => {
    expect(driftedSteps(ROWS)).toEqual([
      { host: "anchor", step: "mesh-anchor-config", items: [WG_CONF, ROGUE] },
      { host: "anchor", step: "meshfs-sftp", items: [AUTHORIZED] },
      { host: "hetzner-native", step: "hetzner-native-wiki-sync-units", items: [TIMER] },
    ]);
  });
});

describe("formatRepairTable", () => {
  test("one line per drifted item, the host, step and generation on its step's first", () => {
    const edits = repairEdits(ROWS, { "meshfs-sftp": 2 });
    expect(formatRepairTable(driftedSteps(ROWS), edits).split("\n")).toEqual([
      "HOST            STEP                            REPAIR     DRIFTED",
      "anchor          mesh-anchor-config              1          file /etc/wireguard/wg0.conf.public: content changed",
      "                                                           peer wg0 peer AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg=: not in the plan (AllowedIPs 10.8.0.250/32)",
      "anchor          meshfs-sftp                     3 (was 2)  file /home/meshfs/.ssh/authorized_keys: content changed",
      "hetzner-native  hetzner-native-wiki-sync-units  1          unit swarm-sync-wiki.timer: disabled",
    ]);
  });
});

describe("withRepairs", () => {
  const prod = fs.readFileSync(path.join(ROOT, "Pulumi.prod.yaml"), "utf8");

  test("adds swarm:repairs at the end of config, sorted, leaving every line of the file as it was", () => {
    const text = withRepairs(prod, { "meshfs-sftp": 1, "mesh-anchor-config": 1 });
    expect(text.startsWith(prod)).toBe(true);
    expect(text.slice(prod.length)).toBe("  swarm:repairs:\n    mesh-anchor-config: 1\n    meshfs-sftp: 1\n");
  });

  test("the edited prod stack validates, with the generations written", () => {
    const text = withRepairs(prod, { "meshfs-sftp": 1, "mesh-anchor-config": 1 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-repair-"));
    try {
      fs.writeFileSync(path.join(dir, "Pulumi.prod.yaml"), text);
      const { raw, secretKeys, otherKeys } = readStackFile(path.join(dir, "Pulumi.prod.yaml"));
      const { config, errors } = validateFleetConfig(raw, { secretKeys, otherKeys });
      expect(errors).toEqual([]);
      expect(config?.repairs).toEqual({ "mesh-anchor-config": 1, "meshfs-sftp": 1 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("raises an entry in place and puts a new one where it sorts, keeping comments", () => {
    const before = [
      "# the lab",
      "config:",
      "  swarm:mesh:",
      "    cidr: 10.8.0.0/24 # the block",
      "  # Repairs so far; never remove an entry.",
      "  swarm:repairs:",
      "    anchor-bootstrap: 1",
      "    # the tunnel, after a hand edit",
      "    mesh-anchor-config: 2 # first repair in March",
      "    satellite-health-install: 1",
      "  swarm:health:",
      "    gate: false",
      "",
    ].join("\n");
    expect(withRepairs(before, { "mesh-anchor-config": 3, "meshfs-sftp": 1 })).toBe(
      [
        "# the lab",
        "config:",
        "  swarm:mesh:",
        "    cidr: 10.8.0.0/24 # the block",
        "  # Repairs so far; never remove an entry.",
        "  swarm:repairs:",
        "    anchor-bootstrap: 1",
        "    # the tunnel, after a hand edit",
        "    mesh-anchor-config: 3 # first repair in March",
        "    meshfs-sftp: 1",
        "    satellite-health-install: 1",
        "  swarm:health:",
        "    gate: false",
        "",
      ].join("\n"),
    );
  });

  test("an empty or blank swarm:repairs becomes a block mapping", () => {
    for (const empty of ["{}", ""]) {
      const text = `config:\n  swarm:repairs: ${empty}\n  swarm:mesh:\n    cidr: 10.8.0.0/24\n`.replace(
        ": \n",
        ":\n",
      );
      expect(withRepairs(text, { "meshfs-sftp": 1 })).toBe(
        "config:\n  swarm:repairs:\n    meshfs-sftp: 1\n  swarm:mesh:\n    cidr: 10.8.0.0/24\n",
      );
    }
  });

  test("refuses a file without a config: mapping", () => {
    expect(() => withRepairs("# nothing yet\n", { "meshfs-sftp": 1 })).toThrow(/no config: mapping/);
    expect(() => withRepairs("config: []\n", { "meshfs-sftp": 1 })).toThrow(/no config: mapping/);
  });
});

test("the running program reads the generations repair writes", () => {
  // What pulumi up hands the program: the stack file's values, structured ones as JSON text.
  const { raw } = readStackFile(path.join(ROOT, "Pulumi.prod.yaml"));
  const repairs = { "mesh-anchor-config": 2, "meshfs-sftp": 1 };
  const engine = { ...raw, repairs };
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(engine).map(([key, value]) => [`swarm:${key}`, JSON.stringify(value)])),
  );
  try {
    expect(validateFleetConfig(readRuntimeConfig()).config?.repairs).toEqual(repairs);
  } finally {
    pulumi.runtime.setAllConfig({});
  }
});

describe("expectedPreview", () => {
  const { config } = loadStack("prod", { dir: ROOT });
  const plan = planFleet(config);

  test("names the repaired commands and the gate of each of their hosts", () => {
    const steps = driftedSteps(ROWS);
    expect(expectedPreview(plan, steps, repairEdits(ROWS, {}))).toBe(
      "pulumi preview shows exactly these commands replaced: hetzner-native-wiki-sync-units, mesh-anchor-config, meshfs-sftp, and the health gates anchor-health-install, hetzner-native-health-install, which run again after any change on their hosts",
    );
  });

  test("a repaired gate is named once; without the gate, only the repaired commands", () => {
    const rows = [
      {
        host: "anchor",
        report: report("anchor", [
          drift("anchor-health-install", "unit", "swarm-metrics.timer", "inactive (dead)"),
        ]),
      },
    ];
    expect(expectedPreview(plan, driftedSteps(rows), repairEdits(rows, {}))).toBe(
      "pulumi preview shows exactly these commands replaced: anchor-health-install",
    );
    const ungated = planFleet({ ...config, health: { ...config.health, gate: false } });
    expect(expectedPreview(ungated, driftedSteps(ROWS), repairEdits(ROWS, {}))).toBe(
      "pulumi preview shows exactly these commands replaced: hetzner-native-wiki-sync-units, mesh-anchor-config, meshfs-sftp",
    );
  });
});

describe("arguments", () => {
  test.each([
    [["lab"], {}, { stack: "lab", dryRun: false }],
    [["prod", "--dry-run"], {}, { stack: "prod", dryRun: true }],
    [["prod"], { SWARM_SSH_KEY: "/env/key" }, { stack: "prod", key: "/env/key", dryRun: false }],
    [
      ["prod", "--key", "/k", "--known-hosts", "/kh"],
      { SWARM_SSH_KEY: "/env/key" },
      { stack: "prod", key: "/k", knownHosts: "/kh", dryRun: false },
    ],
  ])("%j with %j", (argv, env, expected) => {
    expect(parseArguments(argv, env)).toEqual(expect.objectContaining(expected));
  });

  test.each([
    [[], /name the stack/],
    [["prod", "--key"], /--key <value>' argument missing/],
    [["prod", "--force"], /Unknown option '--force'/],
    [["prod", "staging"], /unexpected argument staging/],
  ])("rejects %j", (argv, message) => {
    expect(() => parseArguments(argv, {})).toThrow(message);
  });
});

describe("npm run repair", () => {
  /** The recorded fleet's layout on existing hosts, as a person writes a stack file. */
  const STACK = `# A fleet of three existing hosts.
config:
  swarm:hosts:
    - name: anchor
      meshAddress: 10.8.0.1
      existing: {address: 203.0.113.1, hostKey: ${fixtureHostKey("anchor")}}
    - name: satellite # the small one
      existing: {address: 203.0.113.2, hostKey: ${fixtureHostKey("satellite")}}
    - name: hetzner-native
      existing: {address: 203.0.113.3, hostKey: ${fixtureHostKey("hetzner-native")}}
  swarm:mesh:
    cidr: 10.8.0.0/24
  swarm:exports:
    - name: meshfs
      host: anchor
      pool: {name: tank, devices: [/dev/sdb]}
      dataset: tank/meshfs/state
      mountpoint: /tank/meshfs/state
      clients: [satellite, hetzner-native]
  swarm:mounts:
    - {host: satellite, export: meshfs, path: /mnt/meshfs}
    - {host: hetzner-native, export: meshfs, path: /mnt/meshfs, owner: ai-streamer}
  swarm:syncs:
    - host: hetzner-native
      name: wiki
      local: /home/ai-streamer/wiki
      remote: {mountPath: /mnt/meshfs/wiki}
      user: ai-streamer
`;
  const ADDRESSES: Record<string, string> = {
    anchor: "203.0.113.1",
    satellite: "203.0.113.2",
    "hetzner-native": "203.0.113.3",
  };

  let root: string;
  let answers: string;
  let ssh: string;
  let stackFile: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-repair-cli-"));
    answers = path.join(root, "answers");
    fs.mkdirSync(answers);
    stackFile = path.join(root, "Pulumi.test.yaml");
    fs.writeFileSync(stackFile, STACK);
    // A stand-in for ssh: prints the answer written for the address it is asked to reach, or fails as ssh does.
    ssh = path.join(root, "ssh");
    fs.writeFileSync(
      ssh,
      `#!/bin/bash
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
address="\${2#*@}"
if [ -f "${answers}/$address" ]; then cat "${answers}/$address"; exit 0; fi
echo "ssh: connect to host $address port 22: Connection refused" >&2
exit 255
`,
      { mode: 0o755 },
    );
  });
  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  /** Each host answers with `drift` (undefined: no drift list); a host left out does not answer. */
  function hostsAnswer(drifts: Record<string, readonly DriftItem[] | undefined>): void {
    for (const [host, items] of Object.entries(drifts)) {
      fs.writeFileSync(path.join(answers, ADDRESSES[host]), `${JSON.stringify(report(host, items))}\n`);
    }
  }

  async function run(argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    const code = await main(argv, io, {}, root, { ssh });
    return { code, out, err };
  }

  test.each([[[]], [["test", "--force"]], [["test", "staging"]]])(
    "answers %j with what is wrong and the usage line, exit 2",
    async (argv) => {
      const { code, out, err } = await run(argv);
      expect({ code, out }).toEqual({ code: 2, out: [] });
      expect(err).toHaveLength(2);
      expect(err[1]).toMatch(/^usage: npm run repair -- <stack> /);
    },
  );

  test("raises each drifted step's generation in the stack file, keeping the rest of it, exit 0", async () => {
    hostsAnswer({ anchor: [WG_CONF, ROGUE, AUTHORIZED], satellite: [], "hetzner-native": [TIMER] });
    const { code, out, err } = await run(["test"]);
    expect({ code, err }).toEqual({ code: 0, err: [] });
    expect(out.join("\n")).toContain(formatRepairTable(driftedSteps(ROWS), repairEdits(ROWS, {})));
    expect(out.slice(-2)).toEqual([
      "Pulumi.test.yaml: set swarm:repairs.hetzner-native-wiki-sync-units: 1, swarm:repairs.mesh-anchor-config: 1, swarm:repairs.meshfs-sftp: 1",
      "run pulumi up: pulumi preview shows exactly these commands replaced: hetzner-native-wiki-sync-units, mesh-anchor-config, meshfs-sftp, and the health gates anchor-health-install, hetzner-native-health-install, which run again after any change on their hosts",
    ]);
    const text = fs.readFileSync(stackFile, "utf8");
    expect(text).toBe(
      `${STACK}  swarm:repairs:\n    hetzner-native-wiki-sync-units: 1\n    mesh-anchor-config: 1\n    meshfs-sftp: 1\n`,
    );
    expect(loadStack("test", { dir: root }).config.repairs).toEqual({
      "hetzner-native-wiki-sync-units": 1,
      "mesh-anchor-config": 1,
      "meshfs-sftp": 1,
    });

    // The same drift again, as when the hand edit came back: one more generation each.
    const again = await run(["test"]);
    expect(again.code).toBe(0);
    expect(again.out.join("\n")).toContain("meshfs-sftp                     2 (was 1)");
    expect(loadStack("test", { dir: root }).config.repairs).toEqual({
      "hetzner-native-wiki-sync-units": 2,
      "mesh-anchor-config": 2,
      "meshfs-sftp": 2,
    });
  });

  test("no drift: says so, exit 0, the file untouched", async () => {
    hostsAnswer({ anchor: [], satellite: [], "hetzner-native": [] });
    expect(await run(["test"])).toEqual({
      code: 0,
      out: ["no drift on any host of test: nothing to repair, Pulumi.test.yaml not changed"],
      err: [],
    });
    expect(fs.readFileSync(stackFile, "utf8")).toBe(STACK);
  });

  test("--dry-run prints what it would set and writes nothing", async () => {
    hostsAnswer({ anchor: [AUTHORIZED], satellite: [], "hetzner-native": [] });
    const { code, out, err } = await run(["test", "--dry-run"]);
    expect({ code, err }).toEqual({ code: 0, err: [] });
    expect(out[out.length - 1]).toBe(
      "--dry-run: Pulumi.test.yaml not changed; without it, repair would set swarm:repairs.meshfs-sftp: 1",
    );
    expect(fs.readFileSync(stackFile, "utf8")).toBe(STACK);
  });

  test("a host that cannot be asked: error, exit 1, the file untouched, though others drifted", async () => {
    hostsAnswer({ anchor: [AUTHORIZED], "hetzner-native": [TIMER] });
    const { code, out, err } = await run(["test"]);
    expect({ code, out }).toEqual({ code: 1, out: [] });
    expect(err).toEqual([
      "cannot repair satellite: ssh root@203.0.113.2:22 failed: ssh: connect to host 203.0.113.2 port 22: Connection refused",
      "Pulumi.test.yaml not changed: every host must answer for a repair",
    ]);
    expect(fs.readFileSync(stackFile, "utf8")).toBe(STACK);
  });

  test("a host whose health program reports no drift list: told to converge first, exit 1, nothing written", async () => {
    hostsAnswer({ anchor: [AUTHORIZED], satellite: undefined, "hetzner-native": [] });
    const { code, err } = await run(["test"]);
    expect(code).toBe(1);
    expect(err[0]).toMatch(/^cannot repair satellite: .*run pulumi up to update it, then repair again$/);
    expect(fs.readFileSync(stackFile, "utf8")).toBe(STACK);
  });

  test("a step the stack has no command for is not written, the others are, exit 1", async () => {
    const gone = drift("satellite-notes-sync-units", "unit", "swarm-sync-notes.timer", "disabled");
    hostsAnswer({ anchor: [AUTHORIZED], satellite: [gone], "hetzner-native": [] });
    const { code, err } = await run(["test"]);
    expect(code).toBe(1);
    expect(err).toEqual([
      expect.stringMatching(
        /^not repaired: satellite records step satellite-notes-sync-units, which is no remote command of Pulumi.test.yaml: .*\/var\/lib\/swarm\/owned\/satellite-notes-sync-units on satellite/,
      ),
    ]);
    expect(loadStack("test", { dir: root }).config.repairs).toEqual({ "meshfs-sftp": 1 });
  });

  test("an invalid stack: every error, exit 1, no host asked", async () => {
    fs.writeFileSync(stackFile, `${STACK}  swarm:repairs:\n    meshfs-stfp: 1\n`);
    const { code, out, err } = await run(["test"]);
    expect({ code, out }).toEqual({ code: 1, out: [] });
    expect(err).toEqual([
      "Pulumi.test.yaml is invalid:",
      "swarm:repairs.meshfs-stfp: is not a remote command of this stack: did you mean meshfs-sftp? Rename the entry to it",
    ]);
  });
});

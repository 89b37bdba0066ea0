/**
 * `npm run status`: the table (from real `swarm-health json` reports made on
 * recorded outputs), how hosts are found and reached, and what a failed
 * ask turns into.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  DriftItem,
  HostReport,
  ReplicaReport,
  StatusRow,
  askHost,
  parseHostReport,
  rowHealthy,
  sshArgs,
  pinnedKnownHosts,
  sshTargets,
} from "../scripts/hostReports";
import {
  USAGE,
  driftLines,
  pruneLines,
  formatAge,
  formatBytes,
  formatStatusTable,
  main,
  parseArguments,
} from "../scripts/status";
import { HEALTH_PROGRAM_PATH } from "../templates/health";
import { DUAL_STACK_PLAN, FLEET, MESH_ADDRESSES6, fleetWith, runHealth } from "./fixtures/health/fleet";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { sshFingerprint } from "../components/hostKey";

const report = (host: string, scenario?: string): HostReport =>
  parseHostReport(runHealth(host, "json", { scenario }).stdout);

/** anchor healthy, hetzner-native with skipped conflicts, satellite whose mount did not come up, edge unreachable. */
function fleetRows(): StatusRow[] {
  return [
    { host: "satellite", report: report("satellite") },
    { host: "anchor", report: report("anchor") },
    { host: "hetzner-native", report: report("hetzner-native", "sync-conflicts") },
    {
      host: "edge",
      error: "ssh root@203.0.113.9:22 failed: ssh: connect to host 203.0.113.9 port 22: Connection timed out",
    },
  ];
}

const ANSI = /\x1b\[[0-9;]*m/g;

describe("formatStatusTable", () => {
  test("without colour", () => {
    const table = formatStatusTable(fleetRows(), { color: false });
    expect(table).not.toMatch(ANSI);
    expect(table).toMatchSnapshot();
  });

  test("with colour: the same table once the colour is taken out, states painted by level", () => {
    const rows = fleetRows();
    const coloured = formatStatusTable(rows, { color: true });
    expect(coloured.replace(ANSI, "")).toBe(formatStatusTable(rows, { color: false }));
    const line = (host: string) =>
      coloured.split("\n").find((l) => l.replace(ANSI, "").startsWith(`${host} `)) ?? "";
    expect(line("anchor")).toMatch(/\x1b\[32mok\x1b\[0m$/);
    expect(line("hetzner-native")).toMatch(/\x1b\[33mWARN\x1b\[0m$/);
    expect(line("satellite")).toMatch(/\x1b\[31mFAIL\x1b\[0m$/);
    expect(line("edge")).toMatch(/\x1b\[31munreachable\x1b\[0m$/);
    expect(line("satellite")).toContain("\x1b[31m/mnt/meshfs DOWN\x1b[0m");
    expect(line("hetzner-native")).toContain("\x1b[33m2\x1b[0m");
  });

  test("the columns line up whatever the hosts are called", () => {
    const rows = fleetRows().map((r, i) => ({ ...r, host: `${"h".repeat(i * 7 + 1)}` }));
    const lines = formatStatusTable(rows, { color: false })
      .split("\n")
      .slice(0, rows.length + 1);
    const stateColumn = lines[0].indexOf("STATE");
    for (const line of lines) {
      expect(line.slice(stateColumn)).toMatch(/^(STATE|ok|WARN|FAIL|unreachable)$/);
    }
  });

  test("rows are sorted by host, and every complaint is listed below the table", () => {
    const table = formatStatusTable(fleetRows(), { color: false });
    const hosts = table
      .split("\n")
      .slice(1, 5)
      .map((l) => l.split(" ")[0]);
    expect(hosts).toEqual(["anchor", "edge", "hetzner-native", "satellite"]);
    expect(table).toContain(
      "\nFAIL satellite mount /mnt/meshfs: did not mount within 20s of access: see journalctl -u mnt-meshfs.mount\n",
    );
    expect(table).toContain("\nunreachable edge: ssh root@203.0.113.9:22 failed:");
    expect(table.endsWith("\n2/4 hosts healthy\n")).toBe(true);
  });

  test("peers that never handshook show as never, and count as down", () => {
    const table = formatStatusTable(
      [{ host: "hetzner-native", report: report("hetzner-native", "peer-no-handshake") }],
      {
        color: false,
      },
    );
    expect(table.split("\n")[1]).toMatch(
      /^hetzner-native {2}1\/2 +never +\/mnt\/meshfs up +wiki 25s ago +0 +- +- +- +0 +FAIL$/,
    );
  });
});

describe("the SCRUB column", () => {
  const column = (table: string, host: string) => {
    const lines = table.split("\n");
    const start = lines[0].indexOf("SCRUB");
    const end = lines[0].indexOf("REPLICA");
    return (lines.find((l) => l.startsWith(`${host} `)) ?? "").slice(start, end).trim();
  };
  const scrubOf = (scenario?: string, edit: (r: HostReport) => HostReport = (r) => r) =>
    column(
      formatStatusTable([{ host: "anchor", report: edit(report("anchor", scenario)) }], { color: false }),
      "anchor",
    );

  test("each scrubbed pool's last scrub: its age, its errors, or never", () => {
    expect(scrubOf()).toBe("tank 24d ago");
    expect(scrubOf("scrub-errors")).toBe("tank 5d ago 3 errors");
    expect(scrubOf("scrub-none-yet")).toBe("tank never");
    expect(scrubOf("scrub-overdue")).toBe("tank 70d ago");
  });

  test("- for a host without scrubbed pools; ? for an export host whose swarm-health predates scrubs", () => {
    const withoutPools = (r: HostReport): HostReport =>
      Object.fromEntries(Object.entries(r).filter(([key]) => key !== "pools")) as unknown as HostReport;
    expect(scrubOf(undefined, withoutPools)).toBe("?");
    const table = formatStatusTable([{ host: "satellite", report: withoutPools(report("satellite")) }], {
      color: false,
    });
    expect(column(table, "satellite")).toBe("-");
    expect(
      column(
        formatStatusTable([{ host: "satellite", report: report("satellite") }], { color: false }),
        "satellite",
      ),
    ).toBe("-");
  });

  test("a warning paints the cell yellow, lists the check below the table, and leaves the host healthy", () => {
    const rows = [{ host: "anchor", report: report("anchor", "scrub-errors") }];
    const coloured = formatStatusTable(rows, { color: true });
    expect(coloured).toContain("\x1b[33mtank 5d ago 3 errors\x1b[0m");
    expect(formatStatusTable(rows, { color: false })).toContain(
      "\nWARN anchor scrub tank: the last scrub finished 5d ago and found 3 error(s) it could not repair:",
    );
    expect(rowHealthy(rows[0])).toBe(true);
    expect(formatStatusTable([{ host: "anchor", report: report("anchor") }], { color: true })).toContain(
      "\x1b[32mtank 24d ago\x1b[0m",
    );
  });
});

describe("drift", () => {
  /** A report as a host whose swarm-health predates drift detection sends it: no drift list. */
  const withoutDrift = (r: HostReport): HostReport =>
    Object.fromEntries(Object.entries(r).filter(([key]) => key !== "drift")) as unknown as HostReport;
  /** anchor without a drift list, hetzner-native drifted, satellite clean, edge unreachable. */
  const rows = (): StatusRow[] => [
    { host: "satellite", report: report("satellite") },
    { host: "hetzner-native", report: report("hetzner-native", "drift") },
    { host: "anchor", report: withoutDrift(report("anchor")) },
    { host: "edge", error: "timed out" },
  ];
  const column = (table: string, host: string) => {
    const lines = table.split("\n");
    const start = lines[0].indexOf("DRIFT");
    const end = lines[0].indexOf("STATE");
    return (lines.find((l) => l.startsWith(`${host} `)) ?? "").slice(start, end).trim();
  };

  test("the DRIFT column: the count by kind, 0, ? without a drift list, - when unreachable", () => {
    const table = formatStatusTable(rows(), { color: false });
    expect(["anchor", "edge", "hetzner-native", "satellite"].map((h) => column(table, h))).toEqual([
      "?",
      "-",
      "5 (file 2, unit 1, peer 2)",
      "0",
    ]);
  });

  test("drift is a warning: painted yellow, the host WARN and still healthy", () => {
    const coloured = formatStatusTable(rows(), { color: true });
    const line = coloured.split("\n").find((l) => l.replace(ANSI, "").startsWith("hetzner-native ")) ?? "";
    expect(line).toContain("\x1b[33m5 (file 2, unit 1, peer 2)\x1b[0m");
    expect(line).toMatch(/\x1b\[33mWARN\x1b\[0m$/);
    const satellite = coloured.split("\n").find((l) => l.replace(ANSI, "").startsWith("satellite ")) ?? "";
    expect(satellite).toContain("\x1b[32m0\x1b[0m");
    expect(rowHealthy(rows()[1])).toBe(true);
  });

  test("without --drift: one line per host with drift, saying how to list and restore it, and no line per item", () => {
    const table = formatStatusTable(rows(), { color: false, stack: "prod" });
    expect(table.split("\n").filter((l) => l.includes("drift"))).toEqual([
      "WARN hetzner-native drift: 5 item(s) differ from what swarm installed (file 2, unit 1, peer 2): npm run status -- prod --drift lists them, npm run repair -- prod then pulumi up restores them",
    ]);
    expect(table).not.toContain("wg0.key");
  });

  test("with --drift: every drifted item below the table, and the hosts that could not say", () => {
    const table = formatStatusTable(rows(), { color: false, drift: true, stack: "prod" });
    const below = table.split("\n\n").slice(-2)[0];
    expect(below.split("\n")).toEqual([
      "drift (npm run repair -- prod then pulumi up restores it):",
      "hetzner-native  hetzner-native-wiki-sync-units  unit swarm-sync-wiki.timer: disabled",
      "hetzner-native  mesh-hetzner-native-config      file /etc/wireguard/wg0.conf.public: content changed",
      "hetzner-native  mesh-hetzner-native-config      peer wg0 peer AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/AbCd0=: not in the plan (AllowedIPs 10.8.0.250/32)",
      "hetzner-native  mesh-hetzner-native-config      peer wg0 peer satellite: AllowedIPs 10.8.0.0/24, expected 10.8.0.2/32",
      "hetzner-native  mesh-hetzner-native-key         file /etc/wireguard/wg0.key: mode 644, expected 600",
      "anchor: drift unknown: its swarm-health has no drift list (pulumi up installs one that has) or swarm-drift failed (see its warning above)",
    ]);
    expect(table).not.toContain("WARN hetzner-native drift");
    expect(table.endsWith("\n2/4 hosts healthy\n")).toBe(true);
    const clean = formatStatusTable([{ host: "anchor", report: report("anchor") }], {
      color: false,
      drift: true,
    });
    expect(clean).toContain("\n\nno drift\n\n1/1 hosts healthy\n");
  });

  test("swarm-drift failing on a host is one warning, listed as it is", () => {
    const table = formatStatusTable(
      [{ host: "hetzner-native", report: report("hetzner-native", "drift-unreadable") }],
      { color: false },
    );
    expect(column(table, "hetzner-native")).toBe("?");
    expect(table).toContain(
      "\nWARN hetzner-native drift: cannot compare this host with what swarm installed: /usr/local/lib/swarm/swarm-drift exited 2; run it to see why\n",
    );
  });

  test("driftLines: host by host, host and step aligned, items in the order the host sent them", () => {
    const item = (step: string, kind: DriftItem["kind"], what: string, detail: string): DriftItem => ({
      step,
      kind,
      item: what,
      detail,
    });
    const base = report("satellite");
    expect(
      driftLines([
        {
          host: "satellite",
          report: {
            ...base,
            drift: [item("satellite-meshfs-mount-units", "unit", "mnt-meshfs.automount", "disabled")],
          },
        },
        { host: "edge", error: "timed out" },
        {
          host: "anchor",
          report: {
            ...base,
            drift: [
              item("mesh-anchor-config", "file", "/etc/wireguard/wg0.conf.public", "content changed"),
              item("meshfs-zfs", "zfs", "tank/meshfs/state compression", "off, expected lz4"),
            ],
          },
        },
        { host: "hetzner-native", report: withoutDrift(base) },
      ]),
    ).toEqual([
      "anchor     mesh-anchor-config            file /etc/wireguard/wg0.conf.public: content changed",
      "anchor     meshfs-zfs                    zfs tank/meshfs/state compression: off, expected lz4",
      "satellite  satellite-meshfs-mount-units  unit mnt-meshfs.automount: disabled",
    ]);
    expect(driftLines([{ host: "anchor", report: base }])).toEqual([]);
  });
});

describe("a dual-stack mesh", () => {
  const dualReport = (scenario: string) =>
    parseHostReport(runHealth("hetzner-native", "json", { plan: DUAL_STACK_PLAN, scenario }).stdout);

  test("a peer silent at its IPv6 mesh address counts as down; the line below names both addresses and the silent one", () => {
    const table = formatStatusTable(
      [{ host: "hetzner-native", report: dualReport("dual-stack-ipv6-silent") }],
      {
        color: false,
      },
    );
    expect(table).toMatchSnapshot();
    expect(table.split("\n")[1]).toMatch(/^hetzner-native {2}1\/2 /);
    expect(table).toContain(
      `\nFAIL hetzner-native peer anchor (10.8.0.1, ${MESH_ADDRESSES6.anchor}): handshake 12s ago, but ${MESH_ADDRESSES6.anchor} did not answer ping while 10.8.0.1 did:`,
    );
  });

  test("every peer answering at both addresses: all up, nothing listed below the table", () => {
    const report = dualReport("dual-stack");
    expect(report.peers.map((p) => [p.address6, p.pingsAnswered6])).toEqual([
      [MESH_ADDRESSES6.anchor, 3],
      [MESH_ADDRESSES6.satellite, 3],
    ]);
    const table = formatStatusTable([{ host: "hetzner-native", report }], { color: false });
    expect(table.split("\n")[1]).toMatch(/^hetzner-native {2}2\/2 .* ok$/);
    expect(table.endsWith("\n\n1/1 hosts healthy\n")).toBe(true);
  });
});

describe("rowHealthy", () => {
  test.each([
    ["a healthy host", { host: "anchor", report: report("anchor") }, true],
    ["a host with warnings only", { host: "n", report: report("hetzner-native", "sync-conflicts") }, true],
    ["a host with a failed check", { host: "n", report: report("hetzner-native", "sync-failed") }, false],
    ["an unreachable host", { host: "edge", error: "timed out" }, false],
  ])("%s: %s", (_, row, healthy) => {
    expect(rowHealthy(row)).toBe(healthy);
  });
});

describe("formatting numbers", () => {
  test.each([
    [0, "0s"],
    [59, "59s"],
    [119, "119s"],
    [120, "2m"],
    [7199, "119m"],
    [7200, "2h"],
    [3 * 86400, "3d"],
    [-4, "0s"],
  ])("age %d is %s", (seconds, text) => {
    expect(formatAge(seconds)).toBe(text);
  });

  test.each([
    [0, "0B"],
    [1023, "1023B"],
    [1024, "1.0K"],
    [29041238016, "27.0G"],
    [5 * 1024 ** 4, "5.0T"],
  ])("%d bytes is %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe("parseHostReport", () => {
  test.each([
    ["nothing", ""],
    ["an error message", "swarm-health: cannot read /etc/swarm/health.conf"],
    ["JSON that is not a report", '{"host":"a"}'],
    ["a list", "[]"],
  ])("rejects %s", (_, text) => {
    expect(() => parseHostReport(text)).toThrow(/swarm-health printed/);
  });

  test.each([
    ["a drift list that is not a list", { drift: "none" }],
    [
      "a drifted item of an unknown kind",
      { drift: [{ step: "s", kind: "socket", item: "ssh.socket", detail: "x" }] },
    ],
    ["a drifted item without detail", { drift: [{ step: "s", kind: "file", item: "/etc/x" }] }],
  ])("rejects %s", (_, extra) => {
    const json = JSON.stringify({ ...JSON.parse(runHealth("anchor", "json").stdout), ...extra });
    expect(() => parseHostReport(json)).toThrow(/swarm-health printed a drift list whose items are not/);
  });

  test.each([
    ["a pool list that is not a list", { pools: "tank" }],
    [
      "a pool without detail",
      {
        pools: [{ name: "tank", lastScrub: null, scrubErrors: null, scrubRepairedBytes: null, level: "ok" }],
      },
    ],
    [
      "a pool whose last scrub is not a time",
      {
        pools: [
          {
            name: "tank",
            lastScrub: "yesterday",
            scrubErrors: 0,
            scrubRepairedBytes: 0,
            level: "ok",
            detail: "",
          },
        ],
      },
    ],
    [
      "a pool with a negative count of errors",
      {
        pools: [
          { name: "tank", lastScrub: 1, scrubErrors: -1, scrubRepairedBytes: 0, level: "ok", detail: "" },
        ],
      },
    ],
  ])("rejects %s", (_, extra) => {
    const json = JSON.stringify({ ...JSON.parse(runHealth("anchor", "json").stdout), ...extra });
    expect(() => parseHostReport(json)).toThrow(/swarm-health printed a pool list whose items are not/);
  });

  test("a report without a pool list is an older host's, not an error", () => {
    const { pools, ...old } = JSON.parse(runHealth("anchor", "json").stdout) as HostReport;
    expect(pools).toHaveLength(1);
    expect(parseHostReport(JSON.stringify(old)).pools).toBeUndefined();
  });

  test("a report without a drift list is an older host's, not an error", () => {
    const { drift, ...old } = JSON.parse(runHealth("anchor", "json").stdout) as HostReport;
    expect(drift).toEqual([]);
    expect(parseHostReport(JSON.stringify(old)).drift).toBeUndefined();
  });

  test("takes the last line, after anything a login shell printed", () => {
    const json = runHealth("anchor", "json").stdout;
    expect(parseHostReport(`Welcome to anchor\n${json}`).host).toBe("anchor");
  });
});

describe("finding hosts", () => {
  const hcloudFleet = fleetWith((raw) => ({
    ...raw,
    hosts: (raw.hosts as Record<string, unknown>[]).map((h) =>
      h.name === "anchor"
        ? { name: h.name, meshAddress: h.meshAddress, hcloud: { serverType: "cx23", location: "nbg1" } }
        : h,
    ),
    admin: { ...(raw.admin as Record<string, unknown>), sshSourceCidrs: ["198.51.100.0/24"] },
  }));

  test("existing hosts come from the config", () => {
    const { targets, missing } = sshTargets(FLEET, undefined, "no CLI");
    expect(missing).toEqual([]);
    expect(targets).toEqual([
      { host: "anchor", address: "203.0.113.1", port: 22, user: "root", hostKey: fixtureHostKey("anchor") },
      {
        host: "satellite",
        address: "203.0.113.2",
        port: 22,
        user: "root",
        hostKey: fixtureHostKey("satellite"),
      },
      {
        host: "hetzner-native",
        address: "203.0.113.3",
        port: 22,
        user: "root",
        hostKey: fixtureHostKey("hetzner-native"),
      },
    ]);
  });

  test("Hetzner hosts come from the stack outputs", () => {
    const outputs = { hosts: { anchor: { ssh: "root@198.51.100.7:22", meshAddress: "10.8.0.1" } } };
    const { targets } = sshTargets(hcloudFleet, outputs, "");
    expect(targets[0]).toEqual({ host: "anchor", address: "198.51.100.7", port: 22, user: "root" });
  });

  test("a Hetzner host without outputs is reported with the reason, the others are still asked", () => {
    const { targets, missing } = sshTargets(hcloudFleet, undefined, "no Pulumi CLI found: install it");
    expect(targets.map((t) => t.host)).toEqual(["satellite", "hetzner-native"]);
    expect(missing).toEqual([
      {
        host: "anchor",
        error: expect.stringMatching(/stack outputs, which could not be read: no Pulumi CLI found/),
      },
    ]);
    const noEntry = sshTargets(hcloudFleet, { hosts: {} }, "");
    expect(noEntry.missing[0].error).toMatch(/no hosts.anchor.ssh: run pulumi up/);
  });
});

describe("ssh", () => {
  const target = { host: "anchor", address: "127.0.0.1", port: 2222, user: "root" };

  test("host keys are always checked, against the given known_hosts", () => {
    const args = sshArgs(target, { key: "/k/id", knownHosts: "/k/known_hosts" });
    expect(args.join(" ")).toContain("-o StrictHostKeyChecking=yes");
    expect(args.join(" ")).not.toMatch(
      /StrictHostKeyChecking=(no|accept-new)|UserKnownHostsFile=\/dev\/null/,
    );
    expect(args).toEqual(expect.arrayContaining(["-i", "/k/id", "-o", "IdentitiesOnly=yes"]));
    expect(args).toEqual(expect.arrayContaining(["-o", "UserKnownHostsFile=/k/known_hosts"]));
    expect(args.slice(-5)).toEqual(["-p", "2222", "--", "root@127.0.0.1", `${HEALTH_PROGRAM_PATH} json`]);
  });

  test("a key the stack pins is checked under the host's alias, with its algorithm only", () => {
    const hostKey = fixtureHostKey("anchor");
    const pinned = { ...target, hostKey };
    const args = sshArgs(pinned, { knownHosts: "/k/known_hosts", pinnedKeys: "/tmp/pins" });
    expect(args).toEqual(expect.arrayContaining(["-o", "UserKnownHostsFile=/tmp/pins"]));
    expect(args).toEqual(expect.arrayContaining(["-o", "HostKeyAlias=swarm-host-anchor"]));
    expect(args).toEqual(expect.arrayContaining(["-o", "HostKeyAlgorithms=ssh-ed25519"]));
    expect(args.join(" ")).not.toContain("/k/known_hosts");
    expect(pinnedKnownHosts([pinned, { ...target, host: "satellite" }])).toBe(
      `swarm-host-anchor ${hostKey}\n`,
    );
    // A host the stack pins no key for is checked against the given known_hosts.
    expect(sshArgs(target, { knownHosts: "/k/known_hosts", pinnedKeys: "/tmp/pins" })).toEqual(
      expect.arrayContaining(["-o", "UserKnownHostsFile=/k/known_hosts"]),
    );
  });

  test("a user that is not root asks through sudo; without a key ssh uses its own", () => {
    const args = sshArgs({ ...target, user: "admin" }, {});
    expect(args[args.length - 1]).toBe(`sudo -n ${HEALTH_PROGRAM_PATH} json`);
    expect(args).not.toContain("-i");
  });

  test.each([
    [["lab"], {}, { stack: "lab", drift: false }],
    [["prod", "--drift"], {}, { stack: "prod", drift: true }],
    [["--drift", "prod", "--key", "/k"], {}, { stack: "prod", key: "/k", drift: true }],
    [["prod", "--key", "/k"], {}, { stack: "prod", key: "/k" }],
    [["prod"], { SWARM_SSH_KEY: "/env/key" }, { stack: "prod", key: "/env/key" }],
    [
      ["prod", "--key", "/k", "--known-hosts", "/kh"],
      { SWARM_SSH_KEY: "/env/key" },
      { stack: "prod", key: "/k", knownHosts: "/kh" },
    ],
  ])("arguments %j with %j", (argv, env, expected) => {
    expect(parseArguments(argv, env)).toEqual(expect.objectContaining(expected));
  });

  test.each([
    [[], /name the stack/],
    [["prod", "--key"], /--key <value>' argument missing/],
    [["prod", "--insecure"], /Unknown option '--insecure'/],
    [["prod", "staging"], /unexpected argument staging/],
    [["prod", "--drift=yes"], /--drift' does not take an argument/],
  ])("rejects arguments %j", (argv, message) => {
    expect(() => parseArguments(argv, {})).toThrow(message);
  });
});

describe("npm run status", () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-status-cli-"));
  });
  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  async function run(argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) }, {}, root);
    return { code, out, err };
  }

  test("the usage line names every option", () => {
    expect(USAGE).toBe(
      "usage: npm run status -- <stack> [--drift] [--prune] [--key FILE] [--known-hosts FILE]  (key also from SWARM_SSH_KEY)",
    );
  });

  test.each([[[]], [["prod", "--insecure"]], [["prod", "staging"]]])(
    "answers %j with what is wrong and the usage line, exit 2, asking no host",
    async (argv) => {
      const { code, out, err } = await run(argv);
      expect({ code, out }).toEqual({ code: 2, out: [] });
      expect(err).toHaveLength(2);
      expect(err[1]).toMatch(/^usage: npm run status -- <stack> /);
    },
  );

  test("names a missing stack file, exit 1", async () => {
    expect(await run(["nowhere"])).toEqual({
      code: 1,
      out: [],
      err: ["Pulumi.nowhere.yaml does not exist: create it, or name an existing stack (Pulumi.<stack>.yaml)"],
    });
  });

  test("lists every config error of an invalid stack under its file name, exit 1, asking no host", async () => {
    fs.writeFileSync(
      path.join(root, "Pulumi.broken.yaml"),
      "config:\n  swarm:hosts:\n    - name: Anchor\n      existing: {address: 192.0.2.1}\n  swarm:mesh:\n    cidr: 10.8.0.1/24\n",
    );
    const { code, out, err } = await run(["broken"]);
    expect({ code, out }).toEqual({ code: 1, out: [] });
    expect(err[0]).toBe("Pulumi.broken.yaml is invalid:");
    expect(err.slice(1)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^swarm:hosts\[0\]\.name: "Anchor" is not a valid host name/),
        expect.stringMatching(/^swarm:mesh\.cidr: 10\.8\.0\.1\/24 has host bits set/),
      ]),
    );
  });
});

describe("askHost", () => {
  // A stand-in for ssh: it prints what the test wrote and exits with the code it was given.
  let dir: string;
  let ssh: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-status-ssh-"));
    ssh = path.join(dir, "ssh");
    fs.writeFileSync(
      ssh,
      `#!/bin/bash\nprintf '%s\\n' "$*" > "${dir}/args"\ncat "${dir}/stdout"\ncat "${dir}/stderr" >&2\nexit "$(cat "${dir}/code")"\n`,
      { mode: 0o755 },
    );
  });
  const answer = (stdout: string, stderr: string, code: number) => {
    fs.writeFileSync(path.join(dir, "stdout"), stdout);
    fs.writeFileSync(path.join(dir, "stderr"), stderr);
    fs.writeFileSync(path.join(dir, "code"), String(code));
  };
  const target = { host: "anchor", address: "127.0.0.1", port: 22, user: "root" };

  test("a report", async () => {
    answer(runHealth("anchor", "json").stdout, "", 0);
    const row = await askHost(target, { ssh, key: "/k" });
    expect(row.report?.host).toBe("anchor");
    expect(fs.readFileSync(path.join(dir, "args"), "utf8")).toContain(" -i /k ");
  });

  test("ssh's own failure", async () => {
    answer("", "Host key verification failed.\n", 255);
    expect(await askHost(target, { ssh })).toEqual({
      host: "anchor",
      error: "ssh root@127.0.0.1:22 failed: Host key verification failed.",
    });
  });

  test("a pinned key the host no longer offers: both fingerprints and what to do", async () => {
    const hostKey = fixtureHostKey("anchor");
    answer(
      "",
      "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n" +
        "The fingerprint for the ED25519 key sent by the remote host is\n" +
        "SHA256:bSfLGzmfH0clEef/znutAdQT0H5pGf6DcEAzr6z5sB8.\n" +
        "Host key for swarm-host-anchor has changed and you have requested strict checking.\n" +
        "Host key verification failed.\n",
      255,
    );
    const row = await askHost({ ...target, hostKey }, { ssh, pinnedKeys: "/tmp/pins" });
    expect(row.error).toContain("host key mismatch at 127.0.0.1:22");
    expect(row.error).toContain("offered SHA256:bSfLGzmfH0clEef/znutAdQT0H5pGf6DcEAzr6z5sB8,");
    expect(row.error).toContain(`pins ${sshFingerprint(hostKey)}`);
  });

  test("a host that was never converged", async () => {
    answer("", `bash: line 1: ${HEALTH_PROGRAM_PATH}: No such file or directory\n`, 127);
    const row = await askHost(target, { ssh });
    expect(row.error).toMatch(/is not installed: converge the host with pulumi up first/);
  });

  test("a host that does not answer in time", async () => {
    const slow = path.join(dir, "slow-ssh");
    fs.writeFileSync(slow, "#!/bin/bash\nexec sleep 5\n", { mode: 0o755 });
    expect((await askHost(target, { ssh: slow }, 200)).error).toBe(
      "root@127.0.0.1:22 did not answer within 0.2s",
    );
  });
});

describe("the REPLICA column", () => {
  const replica = (over: Partial<ReplicaReport>): ReplicaReport => ({
    export: "meshfs",
    host: "hetzner-native",
    lagSeconds: 240,
    maxLagSeconds: 3600,
    result: "ok",
    bytes: 1024,
    finished: 1,
    level: "ok",
    detail: "",
    ...over,
  });
  const replicaOf = (replicas: readonly ReplicaReport[] | undefined) => {
    const base = report("anchor");
    const edited = Object.fromEntries(
      Object.entries({ ...base, replicas }).filter(
        ([key, value]) => key !== "replicas" || value !== undefined,
      ),
    ) as unknown as HostReport;
    const lines = formatStatusTable([{ host: "anchor", report: edited }], { color: false }).split("\n");
    const start = lines[0].indexOf("REPLICA");
    const end = lines[0].indexOf("DRIFT");
    return (lines.find((l) => l.startsWith("anchor ")) ?? "").slice(start, end).trim();
  };

  test("each replica's lag, and a run that did not succeed", () => {
    expect(replicaOf([replica({})])).toBe("hetzner-native 4m behind");
    expect(replicaOf([replica({ result: "diverged", lagSeconds: 7200, level: "FAIL" })])).toBe(
      "hetzner-native 2h behind diverged",
    );
    expect(replicaOf([replica({ result: "", lagSeconds: null })])).toBe("hetzner-native pending");
  });

  test("- without replicas; ? from an export host whose swarm-health predates replicas", () => {
    expect(replicaOf([])).toBe("-");
    expect(replicaOf(undefined)).toBe("?");
  });
});

describe("--prune", () => {
  const withPrunes = (host: string, prunes: HostReport["prunes"]): StatusRow => ({
    host,
    report: { ...report(host === "anchor" ? "anchor" : "satellite"), host, prunes },
  });

  test("lists, host by host, what the next prune of each dataset would destroy, or why it cannot say", () => {
    const rows = [
      withPrunes("hetzner-native", [{ dataset: "backup/meshfs", destroy: [] }]),
      withPrunes("anchor", [
        {
          dataset: "tank/meshfs/state",
          destroy: [
            { snapshot: "tank/meshfs/state@swarm-20251123T150000Z", why: "no tier keeps it" },
            { snapshot: "tank/meshfs/state@swarm-20251123T140000Z", why: "no tier keeps it" },
          ],
        },
      ]),
      withPrunes("vault", [
        { dataset: "vault/x", destroy: null, error: "zfs-snapshot --dry-run exited 1: no pool" },
      ]),
    ];
    expect(pruneLines(rows)).toEqual([
      "anchor          tank/meshfs/state  destroy swarm-20251123T150000Z: no tier keeps it",
      "anchor          tank/meshfs/state  destroy swarm-20251123T140000Z: no tier keeps it",
      "hetzner-native  backup/meshfs      destroys nothing",
      "vault           vault/x            unknown: zfs-snapshot --dry-run exited 1: no pool",
    ]);
    const table = formatStatusTable(rows, { color: false, prune: true });
    expect(table).toContain(
      "\nnext prune (each snapshot timer's next run; held snapshots and other names never go):\nanchor ",
    );
    expect(formatStatusTable(rows, { color: false })).not.toContain("next prune");
  });

  test("says when a host's swarm-health predates the preview", () => {
    const table = formatStatusTable([withPrunes("anchor", undefined)], { color: false, prune: true });
    expect(table).toContain("anchor: next prune unknown: its swarm-health predates the prune preview");
  });

  test("is an option of the command line", () => {
    expect(parseArguments(["lab", "--prune"], {})).toMatchObject({ stack: "lab", prune: true, drift: false });
  });
});

/**
 * The fleet, for real: the lab's systemd hosts, inside a VM that runs
 * Debian's stock kernel (kernel WireGuard, autofs, OpenZFS), are converged
 * by the real program (mock runtime, every remote command run over SSH
 * through the VM), then each promise swarm makes is checked on the hosts
 * themselves. What a check looks for comes from the config through the
 * product's own functions (unit names, paths), so it holds for any valid
 * lab stack.
 */
import { spawnSync } from "node:child_process";
import { isIPv4, isIPv6 } from "node:net";
import * as fs from "node:fs";
import { FleetConfig } from "../../config/types";
import { hostPort } from "../../config/endpoints";
import { FleetPlan, planFleet } from "../../config/model";
import { SyncRemote, SyncStep, stepsOf } from "../../config/plan";
import { sshFingerprint } from "../../components/hostKey";
import { CommandFailed, ConvergeResult, LabEngine, sshRun } from "../../lab/engine";
import {
  LAB_KEY,
  SSH_CONFIG,
  UNBOOTED,
  labConfig,
  labHostKeys,
  labUpArgs,
  seedHosts,
  vmSh,
} from "../../lab/fleet";
import { DRIFT_PROGRAM_PATH, HEALTH_PROGRAM_PATH, METRICS_UNIT } from "../../templates/health";
import {
  clientKeyPath,
  hostKeyAlias,
  knownHostsPath,
  mountSource,
  mountUnitNames,
} from "../../templates/sshfs";
import { normalizePath } from "../../templates/systemd";
import { stateDir, syncUnitNames } from "../../templates/unison";
import { EXPORT_SENTINEL, SNAPSHOT_PREFIX, snapshotCommand } from "../../templates/zfs";
import { unwrapRootCommand } from "../../templates/shell";
import {
  WG_CHECK_FUNCTIONS,
  HUB_RULE_COMMENTS,
  HUB_TABLE,
  WG_CONF_PATH,
  WG_DIR,
  WG_INTERFACE,
  WG_KEY_PATH,
  WG_PUBLIC_CONF_PATH,
} from "../../templates/wireguard";
import { authorizedKeysPath } from "../../templates/sftp";
import { DRIFT_KINDS, askFleet, parseHostReport } from "../../scripts/hostReports";
import { DEBIAN_SCRUB_PROPERTY, scrubStatusPath, scrubUnitName } from "../../templates/scrub";
import { repairEdits } from "../../scripts/repair";
import { reveal } from "../../offline/mockRuntime";
import {
  PingTarget,
  pingLogPath,
  pingOutcome,
  pingProblems,
  startPingsScript,
  stopPingsScript,
} from "./pings";
import {
  holdTag,
  replicaDropinPath,
  replicaKeysPath,
  replicateUnitName,
  replicaUser,
  senderFiles,
} from "../../templates/replica";

const phases: [string, number][] = [];
let phaseStart = Date.now();
function phase(name: string): void {
  const now = Date.now();
  phases.push([name, (now - phaseStart) / 1000]);
  phaseStart = now;
}

let config: FleetConfig;
let plan: FleetPlan;
let engine: LabEngine;
let first: ConvergeResult;
let adminKey: string;

/** Runs a bash script as root on a lab host; resolves with stdout, rejects naming the host on failure. */
async function onHost(host: string, script: string, opts: { allowFail?: boolean } = {}) {
  const h = config.hosts.find((x) => x.name === host);
  if (!h?.existing) {
    throw new Error(`no lab host ${host}`);
  }
  const { address, port, hostKey } = h.existing;
  const conn = { host: address, port, user: "root", privateKey: adminKey, hostKey };
  const result = await sshRun(
    conn,
    `bash -c ${quote(`set -euo pipefail\n${script}`)}`,
    undefined,
    SSH_CONFIG,
  );
  if (result.code !== 0 && !opts.allowFail) {
    throw new Error(
      `on ${host}: exit ${result.code}\n${script}\n--- stderr ---\n${result.stderr}${result.stdout}`,
    );
  }
  return result;
}
const run = async (host: string, script: string) => (await onHost(host, script)).stdout;

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

async function waitFor(what: string, seconds: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (await check()) {
      return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`timed out after ${seconds}s waiting for ${what}`);
}

/**
 * Keeps a ping going from `from` to every target while `body` runs, and fails when any request sent
 * meanwhile went unanswered or drew an ICMP error (tests/lab/pings.ts says how they are read).
 */
async function pingingThrough<T>(
  from: string,
  tag: string,
  targets: readonly PingTarget[],
  during: string,
  atLeast: number,
  body: () => Promise<T>,
): Promise<T> {
  await run(from, startPingsScript(tag, targets));
  let result: T;
  try {
    result = await body();
  } finally {
    await run(from, stopPingsScript(tag, targets));
  }
  const problems: string[] = [];
  for (const target of targets) {
    const log = await run(from, `cat ${pingLogPath(tag, target)}`);
    const o = pingOutcome(log);
    process.stdout.write(
      `${from} → ${target.name} ${during}: ${o.summary}${o.lost.length > 0 ? `, ${o.lost.length} unanswered` : ""}\n`,
    );
    problems.push(...pingProblems(from, target, log, atLeast));
  }
  if (problems.length > 0) {
    throw new Error(`lost packets ${during}:\n${problems.join("\n")}`);
  }
  return result;
}

/**
 * The runs of a oneshot service a journal excerpt shows (`journalctl -o short-unix`, systemd's
 * Starting, Finished and "Failed to start" lines): each ended run's duration in seconds, and how
 * many of them failed.
 */
function runDurations(journal: string): { durations: number[]; failed: number } {
  const durations: number[] = [];
  let failed = 0;
  let started: number | undefined;
  for (const line of journal.split("\n")) {
    const m = /^(\d+\.\d+) \S+ systemd\[1\]: (Starting|Finished|Failed to start) /.exec(line);
    if (!m) {
      continue;
    }
    const at = Number(m[1]);
    if (m[2] === "Starting") {
      started = at;
    } else if (started !== undefined) {
      durations.push(at - started);
      failed += m[2] === "Finished" ? 0 : 1;
      started = undefined;
    }
  }
  return { durations, failed };
}

/** The runs of a oneshot service in a journal excerpt: "N runs (M failed), each p50 …, p95 …, max …". */
function syncRunSummary(journal: string): string {
  const { durations, failed } = runDurations(journal);
  if (durations.length === 0) {
    return "no run recorded";
  }
  const sorted = [...durations].sort((x, y) => x - y);
  const s = (x: number) => `${x.toFixed(1)} s`;
  return `${durations.length} runs (${failed} failed), each p50 ${s(percentile(sorted, 0.5))}, p95 ${s(percentile(sorted, 0.95))}, max ${s(sorted[sorted.length - 1])}`;
}

/** Every pair of peers pings over wg0 and has a recent handshake; hosts are checked concurrently. */
async function checkMesh(): Promise<void> {
  await Promise.all(
    plan.hosts.map(async (host) => {
      for (const peer of host.peers) {
        const address = plan.byName.get(peer.name)!.meshAddress;
        const ping = await onHost(host.name, `ping -c 3 -i 0.2 -W 2 ${address}`, { allowFail: true });
        if (ping.code !== 0) {
          throw new Error(
            `${host.name} cannot ping ${peer.name} at ${address} over wg0:\n${ping.stdout}\n${await tunnelReport(host.name)}`,
          );
        }
        const key = await run(peer.name, "wg show wg0 public-key");
        const handshakes = await run(host.name, "wg show wg0 latest-handshakes; echo; date +%s");
        const lines = handshakes.trim().split("\n");
        const now = Number(lines[lines.length - 1]);
        const line = lines.find((l) => l.startsWith(key.trim()));
        const at = Number(line?.split("\t")[1] ?? 0);
        if (!(at > 0 && now - at < 180)) {
          throw new Error(
            `${host.name} has no recent handshake with ${peer.name} (latest ${at}, now ${now})`,
          );
        }
      }
    }),
  );
}

/**
 * What a host knows of its tunnel when a check through it fails: the link, the interface's unit and
 * its journal since boot, the boot's age and the jobs still queued. A tunnel that is gone after the
 * boot finished can only be told apart from one that never came up by these.
 */
async function tunnelReport(host: string): Promise<string> {
  const report = await onHost(
    host,
    [
      "uptime",
      `ip -brief link show dev ${WG_INTERFACE}`,
      `systemctl status --no-pager --lines=0 wg-quick@${WG_INTERFACE}.service`,
      `journalctl --boot --no-pager --lines=40 --unit=wg-quick@${WG_INTERFACE}.service`,
      "systemctl list-jobs --no-pager",
    ]
      .map((c) => `echo "# ${c}"; ${c} 2>&1`)
      .join("; "),
    { allowFail: true },
  );
  return `what ${host} reports:\n${report.stdout}${report.stderr}`;
}

/**
 * Reboots a lab host (its container: systemd powers it off, its supervisor
 * boots it again) and waits until it has finished booting. /run is a tmpfs
 * of the container, so a marker there tells the new boot from the old.
 */
async function reboot(host: string): Promise<void> {
  await run(host, "touch /run/swarm-lab-before-reboot && systemctl --no-block reboot");
  await waitFor(`${host} to reboot`, 300, async () => {
    const r = await onHost(
      host,
      "test ! -e /run/swarm-lab-before-reboot && timeout 120 systemctl is-system-running --wait",
      { allowFail: true },
    );
    if (r.code !== 0 && r.stdout.trim() === "degraded") {
      const failed = await run(host, "systemctl --failed --no-legend --plain");
      throw new Error(`${host} came back degraded:\n${failed}`);
    }
    return r.code === 0;
  });
}

/** Whether a unit is enabled on a host. */
async function isEnabled(host: string, unit: string): Promise<string> {
  return (await onHost(host, `systemctl is-enabled ${unit}`, { allowFail: true })).stdout.trim();
}

/** Whether a unit is active on a host. */
async function isActive(host: string, unit: string): Promise<string> {
  return (await onHost(host, `systemctl is-active ${unit}`, { allowFail: true })).stdout.trim();
}

const exported = () => config.exports[0];
/** The lab's sync as the plan resolved it: through a mount of its host to the export on its server. */
function wikiStep(): SyncStep & { readonly remote: Extract<SyncRemote, { kind: "mount" }> } {
  const [step] = stepsOf(plan.steps, "sync");
  if (step.remote.kind !== "mount") {
    throw new Error(`the lab's sync ${step.name} does not go through a mount`);
  }
  return { ...step, remote: step.remote };
}
const wiki = () => wikiStep().sync;

beforeAll(async () => {
  if (process.getuid?.() !== 0) {
    throw new Error("the lab suite needs root (network namespaces, systemd-nspawn): run it as root");
  }
  vmSh("preflight");
  vmSh("up", ...labUpArgs(labConfig("lab", UNBOOTED)));
  config = labConfig();
  plan = planFleet(config);
  adminKey = fs.readFileSync(LAB_KEY, "utf8");
  seedHosts(config);
  phase("boot lab hosts");
  engine = new LabEngine({
    sshConfig: SSH_CONFIG,
    progress: (l) => process.stdout.write(`${l}\n`),
  });
  first = await engine.converge(config, adminKey);
  phase("first converge");
}, 900_000);

afterAll(() => {
  try {
    // The VM's load, memory and kernel warnings, and each host's state, as the suite left them.
    process.stdout.write(`\nlab at the end:\n${vmSh("status")}`);
  } catch (error) {
    process.stdout.write(`\nlab at the end: ${String(error)}\n`);
  }
  try {
    vmSh("down");
  } finally {
    phase("lab down");
    process.stdout.write(
      `\nlab phases:\n${phases.map(([n, s]) => `  ${n.padEnd(40)} ${s.toFixed(1)}s`).join("\n")}\n`,
    );
  }
}, 300_000);

/**
 * What every host's own health gate finds wrong, each gate bounded by `seconds`: empty when the
 * whole fleet is healthy. A host that does not answer over SSH is listed too.
 */
async function fleetProblems(seconds: number): Promise<string[]> {
  const found = await Promise.all(
    plan.hosts.map(async (host) => {
      const gate = await onHost(host.name, `timeout ${seconds} ${HEALTH_PROGRAM_PATH} gate`, {
        allowFail: true,
      });
      return gate.code === 0 ? [] : [`${host.name} (exit ${gate.code}):\n${gate.stdout}${gate.stderr}`];
    }),
  );
  return found.flat();
}

/** The check that failed last, or ran out of time, as the suite's environment (environment.ts) saw it. */
const failedCheck = () => (globalThis as { labFailedCheck?: string }).labFailedCheck;
/** The failed check the fleet was last probed after. */
let probedAfter: string | undefined;
/** Why the fleet was found broken after a check failed: every later check fails at once with it. */
let broken: string | undefined;

// The checks share one fleet, so a check that fails half way can leave it broken (a host down, a
// tunnel stopped), and every later check would then wait out its timeout. After a failed check,
// the next one first asks whether the VM still answers, then runs every host's health gate: when
// the VM or the fleet is not whole again, that check and all later ones fail at once, naming the
// check that broke it (and with the VM's console when the VM is the trouble). A suite without
// failures never runs this probe.
beforeEach(async () => {
  if (broken !== undefined) {
    throw new Error(broken);
  }
  const failed = failedCheck();
  if (failed !== undefined && failed !== probedAfter) {
    probedAfter = failed;
    // The VM first: one that stopped (qemu exited) or stopped answering (its kernel locked up, say)
    // fails the rest at once with its console, instead of every host's gate waiting out its SSH
    // retries.
    let vm: string;
    try {
      vm = vmSh("status");
    } catch (error) {
      vm = error instanceof Error ? error.message : String(error);
      // vm.sh status fails when the VM's sshd does not answer, and on any other error.
      const what = /its sshd does not answer/.test(vm) ? "stopped answering" : "could not be asked";
      broken = `not run: the lab VM ${what} after "${failed}" failed:\n${vm}`;
      throw new Error(broken);
    }
    if (/^VM: not running/m.test(vm)) {
      broken = `not run: the lab VM stopped after "${failed}" failed:\n${vm}${vmSh("console", "40")}`;
      throw new Error(broken);
    }
    const problems = await fleetProblems(120);
    if (problems.length > 0) {
      broken = `not run: the lab fleet is still unhealthy after "${failed}" failed:\n${problems.join("\n")}\n${vm}`;
      throw new Error(broken);
    }
  }
}, 300_000);

test("the first converge ran every command once", () => {
  expect(first.created.length).toBeGreaterThan(0);
  expect(new Set(first.created).size).toBe(first.created.length);
  expect(first.unchanged).toEqual([]);
  expect(first.updated).toEqual([]);
});

test("1. every pair of peers has a recent handshake and pings over the mesh", async () => {
  await checkMesh();
  phase("check mesh");
});

test("1b. each host runs the WireGuard its config names: the kernel's, or wireguard-go's TUN device", async () => {
  const kinds = await Promise.all(
    config.hosts.map(async (h) => {
      const details = await run(h.name, "ip -d -o link show wg0");
      return [
        h.name,
        /\btun type tun\b/.test(details)
          ? "wireguard-go"
          : /\bwireguard\b/.test(details)
            ? "kernel"
            : details,
      ];
    }),
  );
  expect(Object.fromEntries(kinds)).toEqual(
    Object.fromEntries(config.hosts.map((h) => [h.name, h.wireguard])),
  );
});

test("1c. every tunnel runs between the addresses the plan dials: IPv6 to and from a host reached only over IPv6, IPv4 elsewhere", async () => {
  const sixOnly = config.hosts.filter((h) => isIPv6(h.existing?.address ?? ""));
  expect(sixOnly.map((h) => h.name)).not.toEqual([]);
  for (const h of sixOnly) {
    // The lab gives its uplink no IPv4 address: nothing reaches it but over IPv6.
    expect(await run(h.name, "ip -4 -o address show dev eth0")).toBe("");
  }
  const dialled = (name: string, family: string) => {
    const existing = config.hosts.find((h) => h.name === name)?.existing;
    const address = family === "IPv6" ? (existing?.ipv6Address ?? existing?.address) : existing?.address;
    return hostPort(address ?? "", config.mesh.listenPort);
  };
  for (const host of plan.hosts) {
    const endpoints = (await run(host.name, `wg show ${WG_INTERFACE} endpoints`))
      .trim()
      .split("\n")
      .map((line) => line.split("\t")[1])
      .sort();
    process.stdout.write(`${host.name}: ${endpoints.join(" ")}\n`);
    expect({ host: host.name, endpoints }).toEqual({
      host: host.name,
      endpoints: host.peers.map((p) => dialled(p.name, p.endpointFamily)).sort(),
    });
  }
  phase("check endpoints");
});

/**
 * Every host pings every other's IPv6 mesh address, `count` times; spokes reach each other through
 * the hub. Returns one line per pair that did not get every reply.
 */
async function checkMesh6(count = 3): Promise<string[]> {
  const pairs = plan.hosts.flatMap((from) =>
    plan.hosts.filter((to) => to !== from).map((to) => [from, to] as const),
  );
  const results = await Promise.all(
    pairs.map(async ([from, to]) => {
      const ping = await onHost(from.name, `ping -6 -n -q -c ${count} -i 0.2 -W 2 ${to.meshAddress6}`, {
        allowFail: true,
      });
      const received = Number(/(\d+) received/.exec(ping.stdout)?.[1] ?? 0);
      const via = from.routed.some((r) => r.name === to.name) ? ` through ${config.mesh.hub}` : "";
      process.stdout.write(`${from.name} → ${to.name} (${to.meshAddress6})${via}: ${received}/${count}\n`);
      return received === count
        ? []
        : [`${from.name} → ${to.name} (${to.meshAddress6}): ${received}/${count}`];
    }),
  );
  return results.flat();
}

test("1d. a dual-stack mesh: every host reaches every other's IPv6 mesh address, spokes through the hub, and the hub forwards no IPv6 out of the mesh", async () => {
  const prefix = config.mesh.ipv6Prefix;
  const hubName = config.mesh.hub;
  if (prefix === undefined || hubName === undefined) {
    throw new Error("the lab stack must be dual-stack (mesh.ipv6Prefix) with a hub");
  }
  for (const host of plan.hosts) {
    expect(await run(host.name, `ip -6 -o address show dev ${WG_INTERFACE} scope global`)).toContain(
      ` inet6 ${host.meshAddress6}/64 `,
    );
  }
  expect(await checkMesh6()).toEqual([]);

  // Out of the mesh: spoke a sends spoke b's uplink IPv6 address into the tunnel. The hub takes
  // the packets (their source is a's mesh address) and drops them instead of forwarding them to
  // its uplink, where b would answer.
  const table = `${HUB_TABLE.family} ${HUB_TABLE.name}`;
  const outCount = async () => {
    const text = await run(hubName, `nft list chain ${table} forward`);
    return Number(
      new RegExp(`counter packets (\\d+) bytes \\d+ \\w+ comment "${HUB_RULE_COMMENTS.out}"`).exec(text)?.[1],
    );
  };
  const [a, b] = plan.hosts.filter((h) => h.name !== hubName);
  const uplink = (await run(b.name, "ip -6 -o address show dev eth0 scope global"))
    .split(/\s+/)[3]
    ?.split("/")[0];
  if (uplink === undefined || !isIPv6(uplink)) {
    throw new Error(`${b.name} has no IPv6 uplink address`);
  }
  // Without the tunnel the two reach each other on the lab's bridge.
  expect((await onHost(a.name, `ping -6 -n -q -c 1 -W 2 ${uplink}`, { allowFail: true })).stdout).toMatch(
    / 1 received/,
  );
  const hubKey = (await run(a.name, `wg show ${WG_INTERFACE} peers`)).trim();
  const allowedBefore = await run(a.name, `wg show ${WG_INTERFACE} allowed-ips`);
  const original = allowedBefore.trim().split(/\s+/).slice(1).join(",");
  const before = await outCount();
  let escaped;
  try {
    await run(
      a.name,
      `wg set ${WG_INTERFACE} peer ${hubKey} allowed-ips ${original},${uplink}/128
ip -6 route add ${uplink}/128 dev ${WG_INTERFACE}`,
    );
    escaped = await onHost(a.name, `ping -6 -n -q -c 3 -i 0.2 -W 1 ${uplink}`, { allowFail: true });
  } finally {
    await run(
      a.name,
      `ip -6 route del ${uplink}/128 dev ${WG_INTERFACE} || true
wg set ${WG_INTERFACE} peer ${hubKey} allowed-ips ${original}`,
    );
  }
  process.stdout.write(`${a.name} → ${uplink} (${b.name}'s uplink) through ${hubName}:\n${escaped.stdout}`);
  expect(escaped.stdout).toMatch(/ 0 received/);
  expect((await outCount()) - before).toBeGreaterThanOrEqual(3);
  expect(await run(a.name, `wg show ${WG_INTERFACE} allowed-ips`)).toBe(allowedBefore);
  phase("dual-stack mesh");
});

test("1e. dual-stack turned off and on again by config: IPv6 addresses and AllowedIPs change in place, no interface restarts, no IPv4 packet is lost", async () => {
  const hubName = config.mesh.hub ?? plan.hosts[0].name;
  const before = config;
  const invocations = async () =>
    Object.fromEntries(
      await Promise.all(
        plan.hosts.map(async (h) => [
          h.name,
          (await run(h.name, "systemctl show -p InvocationID --value wg-quick@wg0")).trim(),
        ]),
      ),
    );
  const started = await invocations();
  const spokes = plan.hosts
    .filter((h) => h.name !== hubName)
    .map((h) => ({ name: h.name, address: h.meshAddress }));
  await pingingThrough(hubName, "1e", spokes, "while dual-stack went off and on", 50, async () => {
    try {
      // The stack as it was before dual-stack: no prefix, no pinned IPv6 address.
      const mesh4 = (({ ipv6Prefix: _prefix, ...rest }: FleetConfig["mesh"]) => rest)(before.mesh);
      config = {
        ...before,
        mesh: mesh4,
        hosts: before.hosts.map(({ meshAddress6: _address, ...h }) => h),
      };
      const off = await engine.converge(config, adminKey);
      process.stdout.write(`dual-stack off: updated ${[...off.updated, ...off.created].join(", ")}\n`);
      for (const host of plan.hosts) {
        expect({
          host: host.name,
          six: await run(host.name, `ip -6 -o address show dev ${WG_INTERFACE} scope global`),
        }).toEqual({
          host: host.name,
          six: "",
        });
        const allowed = await run(host.name, `wg show ${WG_INTERFACE} allowed-ips`);
        expect({ host: host.name, ipv6: allowed.includes(":") }).toEqual({ host: host.name, ipv6: false });
      }
      await checkMesh();
      config = before;
      const on = await engine.converge(config, adminKey);
      process.stdout.write(`dual-stack on: updated ${[...on.updated, ...on.created].join(", ")}\n`);
      expect(await checkMesh6()).toEqual([]);
    } finally {
      if (config !== before) {
        config = before;
        await engine.converge(config, adminKey);
      }
    }
  });
  expect(await invocations()).toEqual(started);
  phase("dual-stack off and on in place");
}, 900_000);

/**
 * What one run of `churn` saw: how many times the peer's AllowedIPs changed while the host pinged
 * every 2 ms, and how many pings went unanswered.
 */
interface Churn {
  changes: number;
  transmitted: number;
  lost: number;
  /** Whether the interface's AllowedIPs are afterwards what they were before. */
  restored: boolean;
}

/**
 * On `host`, pings `address` 10,000 times every 2 ms through the peer `key`, and meanwhile gives
 * that peer 192.0.2.0/24 (a documentation prefix, routed nowhere) and takes it away again and
 * again: `inPlace` as the apply script does (wg-allowed-add, then a throwaway peer takes it away),
 * otherwise with wg set, which has the kernel replace the peer's AllowedIPs each time.
 */
async function churn(host: string, address: string, key: string, inPlace: boolean): Promise<Churn> {
  const before = await run(host, `wg show ${WG_INTERFACE} allowed-ips`);
  const kept = before
    .split("\n")
    .find((l) => l.startsWith(`${key}\t`))
    ?.split(/\s+/)
    .slice(1)
    .join(",");
  if (kept === undefined || kept === "(none)") {
    throw new Error(`${host} has no AllowedIPs for ${key}`);
  }
  const change = inPlace
    ? `swarm_wg_allowed_add ${WG_INTERFACE} "$key" 192.0.2.0/24
  swarm_wg_take_away 192.0.2.0/24`
    : `wg set ${WG_INTERFACE} peer "$key" allowed-ips "${kept},192.0.2.0/24"
  wg set ${WG_INTERFACE} peer "$key" allowed-ips "${kept}"`;
  let out: string;
  let restored = false;
  try {
    out = await run(
      host,
      `${WG_CHECK_FUNCTIONS}
key=${key}
ping -q -n -i 0.002 -c 10000 ${address} >/tmp/swarm-churn.ping 2>&1 & pinger=$!
changes=0
while kill -0 "$pinger" 2>/dev/null; do
  ${change}
  changes=$((changes + 2))
done
wait "$pinger" || true
echo "$changes changes"
cat /tmp/swarm-churn.ping`,
    );
  } finally {
    const now = await run(host, `wg show ${WG_INTERFACE} allowed-ips`);
    // wg keeps no order among a peer's AllowedIPs: compare them as sets.
    const words = (text: string) => text.split(/\s+/).sort().join(" ");
    restored = words(now) === words(before);
    if (now.includes("192.0.2.0/24")) {
      await run(host, `wg set ${WG_INTERFACE} peer ${key} allowed-ips ${kept}`);
    }
  }
  const changes = /^(\d+) changes$/m.exec(out);
  const pings = /(\d+) packets transmitted, (\d+) received/.exec(out);
  if (!changes || !pings) {
    throw new Error(`${host}: no count of changes or pings in:\n${out}`);
  }
  process.stdout.write(`${host}, AllowedIPs ${inPlace ? "changed in place" : "replaced"}: ${out}`);
  return {
    changes: Number(changes[1]),
    transmitted: Number(pings[1]),
    lost: Number(pings[1]) - Number(pings[2]),
    restored,
  };
}

test("1f. a peer's AllowedIPs change in place without losing a packet, where replacing them (wg set, wg syncconf) loses some", async () => {
  const hubName = config.mesh.hub;
  if (hubName === undefined) {
    throw new Error("the lab stack must have a hub");
  }
  const hubAddress = plan.byName.get(hubName)!.meshAddress;
  const spokes = config.hosts.filter((h) => h.name !== hubName);
  const kernel = spokes.find((h) => h.wireguard === "kernel");
  if (kernel === undefined || !spokes.some((h) => h.wireguard === "wireguard-go")) {
    throw new Error("the lab stack must have a spoke on each WireGuard");
  }
  // The control: on this kernel, a packet meets no peer while the peer's AllowedIPs are replaced.
  const hubKey = async (host: string) => (await run(host, `wg show ${WG_INTERFACE} peers`)).trim();
  const replaced = await churn(kernel.name, hubAddress, await hubKey(kernel.name), false);
  expect(replaced.changes).toBeGreaterThanOrEqual(40);
  expect(replaced.lost).toBeGreaterThan(0);
  for (const spoke of spokes) {
    const inPlace = await churn(spoke.name, hubAddress, await hubKey(spoke.name), true);
    // The throwaway peer took 192.0.2.0/24 away each time: the hub peer ends as it began.
    expect({
      host: spoke.name,
      enough: inPlace.changes >= 20,
      lost: inPlace.lost,
      restored: inPlace.restored,
    }).toEqual({ host: spoke.name, enough: true, lost: 0, restored: true });
  }
  await checkMesh();
  phase("AllowedIPs changed in place");
});

test("2. the export is a ZFS dataset with the configured properties and a sentinel", async () => {
  const e = exported();
  const type = await run(e.host, `zfs get -H -o value type ${e.dataset}`);
  expect(type.trim()).toBe("filesystem");
  expect((await run(e.host, `zfs get -H -o value mountpoint ${e.dataset}`)).trim()).toBe(e.mountpoint);
  for (const [property, value] of Object.entries(e.properties)) {
    const actual = (await run(e.host, `zfs get -H -o value ${property} ${e.dataset}`)).trim();
    if (actual !== value) {
      throw new Error(`${e.host}: ${e.dataset} has ${property}=${actual}, expected ${value}`);
    }
  }
  await run(e.host, `test -f ${e.mountpoint}/${EXPORT_SENTINEL}`);
  // OpenZFS in the kernel, on the disk the host was given: the pool's vdev is that device.
  const vdevs = await run(e.host, `zpool list -v -H -P -o name ${e.pool.name}`);
  for (const device of e.pool.devices) {
    expect(vdevs).toContain(device);
  }
  phase("check dataset");
});

test("2b. the pool's scrub timer is active, a scrub run now is recorded, and health reports it", async () => {
  const e = exported();
  // The lab stack scrubs its pool (the default, monthly): this check needs it.
  expect(e.pool.scrub).not.toBe("off");
  const pool = e.pool.name;
  expect(await isActive(e.host, scrubUnitName(pool, "timer"))).toBe("active");
  // Debian's own monthly scrub of every pool leaves this one to swarm's timer.
  expect((await run(e.host, `zfs get -H -o value ${DEBIAN_SCRUB_PROPERTY} ${pool}`)).trim()).toBe("disable");
  // The service waits for the scrub (zpool scrub -w); the lab's pool is small.
  await run(e.host, `systemctl start ${scrubUnitName(pool, "service")}`);
  const recorded = await run(e.host, `cat ${scrubStatusPath(pool)}`);
  expect(recorded).toMatch(
    /^started=\d+\nended=\d+\nerrors=0\nrepaired_bytes=\d+\nscan=scrub repaired \S+ in .+ with 0 errors on .+\n$/,
  );
  const [, started, ended] = /^started=(\d+)\nended=(\d+)\n/.exec(recorded) ?? [];
  expect(Number(ended)).toBeGreaterThanOrEqual(Number(started));
  const report = parseHostReport(await run(e.host, `${HEALTH_PROGRAM_PATH} json`));
  expect(report.pools).toEqual([
    expect.objectContaining({ name: pool, lastScrub: Number(ended), scrubErrors: 0, level: "ok" }),
  ]);
  const metrics = await run(
    e.host,
    `${HEALTH_PROGRAM_PATH} metrics && cat ${config.health.textfileDir}/swarm.prom`,
  );
  expect(metrics).toContain(`swarm_zfs_scrub_last_timestamp_seconds{pool="${pool}"} ${ended}\n`);
  expect(metrics).toContain(`swarm_zfs_scrub_errors{pool="${pool}"} 0\n`);
  phase("check scrub");
});

test("2c. snapshot retention on OpenZFS: a run destroys exactly what its dry run listed, never a held, the newest or a foreign snapshot", async () => {
  const [step] = stepsOf(plan.steps, "export");
  const { host } = step;
  const { dataset } = step.snapshots;
  // A run at 2030-01-10 12:00 UTC, after a history written by hand: hours and days back from it.
  const now = Date.UTC(2030, 0, 10, 12, 0, 0) / 1000;
  const history = [
    "20300110T110000Z",
    "20300110T100000Z",
    "20300110T090000Z",
    "20300109T120000Z",
    "20300108T120000Z",
    "20291231T120000Z",
  ];
  const snap = (stamp: string) => `${dataset}@${SNAPSHOT_PREFIX}${stamp}`;
  const held = snap("20291231T120000Z");
  const foreign = `${dataset}@before-upgrade`;
  const taken = snap("20300110T120000Z");
  const retention = { ...step.snapshots.retention, frequent: 0, hourly: 2, daily: 2, weekly: 0, monthly: 0 };
  const command = (dryRun: boolean) =>
    `SWARM_NOW=${now} ${snapshotCommand({ ...step.snapshots, retention }, dryRun).join(" ")}`;
  const swarmSnapshots = async () =>
    (await run(host, `zfs list -H -t snapshot -o name -d 1 ${dataset}`))
      .split("\n")
      .filter((n) => n.startsWith(`${dataset}@${SNAPSHOT_PREFIX}`))
      .sort();
  // Replication takes and holds snapshots of the same dataset: paused, so that this run is the only one.
  const replicaTimers = stepsOf(plan.steps, "replica")
    .filter((r) => r.server.name === host)
    .map((r) => replicateUnitName(r.replica.exportName, r.host, "timer"));
  await pauseReplication(host, replicaTimers);
  await run(
    host,
    [
      ...history.map((h) => `zfs snapshot ${snap(h)}`),
      `zfs snapshot ${foreign}`,
      `zfs hold swarm-lab ${held}`,
    ].join("\n"),
  );
  try {
    const before = await swarmSnapshots();
    const dry = await run(host, command(true));
    process.stdout.write(`${host}: ${command(true)}\n${dry}`);
    const listed = (action: string) =>
      dry
        .split("\n")
        .filter((l) => l.startsWith(`${action}\t`))
        .map((l) => l.split("\t")[1]);
    const doomed = listed("destroy").sort();
    // The dry run changed nothing.
    expect(await swarmSnapshots()).toEqual(before);
    expect(doomed.length).toBeGreaterThan(0);
    expect(doomed).not.toContain(held);
    expect(listed("keep")).toContain(held);
    expect(listed("ignore")).toContain(foreign);
    expect(listed("take")).toEqual([taken]);

    const real = await run(host, command(false));
    process.stdout.write(`${host}: ${command(false)}\n${real}`);
    const after = await swarmSnapshots();
    // Exactly the dry run's destroy lines went; the run's own snapshot, the held one and the foreign one stay.
    expect(before.filter((n) => !after.includes(n)).sort()).toEqual(doomed);
    expect(after).toContain(taken);
    expect(after).toContain(held);
    expect((await run(host, `zfs list -H -t snapshot -o name -d 1 ${dataset}`)).split("\n")).toContain(
      foreign,
    );
    // The kept hourly and daily ones: the two newest hours and the newest of the two newest days.
    expect(after).toEqual(expect.arrayContaining([snap("20300110T110000Z"), snap("20300109T120000Z")]));
  } finally {
    // The lab's dataset goes on with the timer's own snapshots only.
    await run(
      host,
      `zfs release swarm-lab ${held} 2>/dev/null || true
for s in ${[...history.map(snap), taken, foreign].join(" ")}; do zfs destroy "$s" 2>/dev/null || true; done`,
    );
    await run(host, replicaTimers.map((t) => `systemctl start ${t}`).join("\n") || "true");
  }
  phase("check snapshot retention");
});

/** The lab's replica: its step, the hosts at both ends, and the sender's units and files there. */
function labReplica() {
  const [step] = stepsOf(plan.steps, "replica");
  if (step === undefined) {
    throw new Error("the lab stack declares no replica");
  }
  const { replica } = step;
  const target = step.host;
  return {
    step,
    replica,
    source: step.server.name,
    target,
    service: replicateUnitName(replica.exportName, target, "service"),
    timer: replicateUnitName(replica.exportName, target, "timer"),
    files: senderFiles(replica.exportName, target),
  };
}

/**
 * Stops replication timers and waits for a run in progress to end: a oneshot service is
 * `activating` while it runs (`systemctl is-active` is false then), and a `systemctl start` now
 * would join that run instead of starting one.
 */
async function pauseReplication(host: string, timers: readonly string[]): Promise<void> {
  for (const timer of timers) {
    const service = timer.replace(/\.timer$/, ".service");
    await run(
      host,
      `systemctl stop ${timer}
while case $(systemctl show -p ActiveState --value ${service}) in activating | active | deactivating | reloading) true ;; *) false ;; esac; do
  sleep 1
done`,
    );
  }
}

test("2d. replication: the replica gets every file, only the sender's key can reach it and only to receive, a diverged replica stops it, and health sees the lag", async () => {
  const { replica, source, target, service, timer, files } = labReplica();
  const user = replicaUser(replica.exportName);
  const mountpoint = exported().mountpoint;
  // The timer is running from the first converge: the replica exists already.
  expect(await isActive(source, timer)).toBe("active");
  await pauseReplication(source, [timer]);
  try {
    // Files with known checksums, then one run, as the timer would start it.
    const dir = `${mountpoint}/replica-check`;
    const written = await run(
      source,
      `install -d ${dir}
for i in 1 2 3; do head -c $((i * 100000)) /dev/urandom > ${dir}/file-$i; done
cd ${dir} && sha256sum file-* | sort`,
    );
    await run(source, `systemctl start ${service}`);
    const status = await run(source, `cat ${files.status}`);
    expect(status).toMatch(/^result=ok$/m);
    const newest = /^replicated=(.+)$/m.exec(status)?.[1] as string;
    expect(Number(/^bytes=(\d+)$/m.exec(status)?.[1])).toBeGreaterThan(300000);
    // The replica: read-only, never mounted, and its newest snapshot holds the same files.
    const props = await run(
      target,
      `zfs get -H -o property,value readonly,canmount,mounted ${replica.target}`,
    );
    expect(props).toBe("readonly\ton\ncanmount\tnoauto\nmounted\tno\n");
    const copy = await run(
      target,
      `d=$(mktemp -d); mount -t zfs ${replica.target}@${newest} "$d"
(cd "$d/replica-check" && sha256sum file-* | sort); umount "$d"; rmdir "$d"`,
    );
    expect(copy).toBe(written);
    // The base of the next send is held on both sides, and only it.
    const heldOn = async (host: string, dataset: string) =>
      (await run(host, `zfs list -H -t snapshot -o name -d 1 ${dataset} | xargs -r zfs holds -H | cut -f1,2`))
        .trim()
        .split("\n")
        .filter((l) => l.includes("swarm-replica"));
    expect(await heldOn(source, replica.source.dataset)).toEqual([
      `${replica.source.dataset}@${newest}\t${holdTag(target)}`,
    ]);
    expect(await heldOn(target, replica.target)).toEqual([`${replica.target}@${newest}\tswarm-replica-base`]);

    // The sender's key, as the sender uses it: the receive program and nothing else.
    const targetMesh = plan.byName.get(target)!.meshAddress;
    const ssh = (extra: string) =>
      `ssh -F /dev/null -i ${files.key} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=${files.knownHosts} ` +
      `-o HostKeyAlias=${target} -o StrictHostKeyChecking=yes -o ConnectTimeout=5 ${extra} ${user}@${targetMesh}`;
    const ask = (what: string) => onHost(source, `${ssh("")} ${what} 2>&1`, { allowFail: true });
    const state = await ask("state");
    expect(state.code).toBe(0);
    expect(state.stdout).toContain(`snap\t${newest}\t`);
    for (const attempt of [
      "zfs destroy -r " + replica.target,
      "id",
      "sh -c id",
      "receive; id",
      "state && id",
    ]) {
      const refused = await ask(quote(attempt));
      expect({ attempt, code: refused.code }).toEqual({ attempt, code: 2 });
      expect(refused.stdout).toContain("zfs-replica-recv: refused");
    }
    const plan1 = await ask("prune-plan");
    expect(plan1.code).toBe(0);
    expect(plan1.stdout).toMatch(/^keep\t/m);
    const forward = await onHost(source, `timeout 15 ${ssh("-W 127.0.0.1:22")} </dev/null 2>&1`, {
      allowFail: true,
    });
    expect(forward.code).not.toBe(124);
    expect(forward.code).not.toBe(0);
    expect(forward.stdout).not.toMatch(/^SSH-2\.0/m);
    // The same key from another mesh host, and from outside the mesh: refused by sshd.
    const other = plan.hosts.find((h) => h.name !== source && h.name !== target)!.name;
    const key = await run(source, `cat ${files.key}`);
    const pinned = await run(source, `cat ${files.knownHosts}`);
    await run(
      other,
      `install -m 0600 /dev/null /root/stolen.key\ncat > /root/stolen.key <<'EOF'\n${key.trim()}\nEOF\ncat > /root/stolen.kh <<'EOF'\n${pinned.trim()}\nEOF`,
    );
    try {
      const stolen = await onHost(
        other,
        `ssh -F /dev/null -i /root/stolen.key -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=/root/stolen.kh ` +
          `-o HostKeyAlias=${target} -o StrictHostKeyChecking=yes -o ConnectTimeout=5 ${user}@${targetMesh} state 2>&1`,
        { allowFail: true },
      );
      expect(stolen.code).not.toBe(0);
      expect(stolen.stdout).toMatch(/Permission denied/);
    } finally {
      await run(other, "rm -f /root/stolen.key /root/stolen.kh");
    }
    const underlay = config.hosts.find((h) => h.name === target)!.existing!.address;
    const outside = await onHost(source, `${ssh("").replace(`@${targetMesh}`, `@${underlay}`)} state 2>&1`, {
      allowFail: true,
    });
    expect(outside.code).not.toBe(0);
    expect(outside.stdout).toMatch(/Permission denied/);

    // A snapshot taken on the replica makes it diverge: the next run sends nothing and rolls nothing back.
    await run(target, `zfs snapshot ${replica.target}@taken-by-hand`);
    const diverged = await onHost(source, `systemctl start ${service}`, { allowFail: true });
    expect(diverged.code).not.toBe(0);
    const divergedStatus = await run(source, `cat ${files.status}`);
    expect(divergedStatus).toMatch(/^result=diverged$/m);
    expect(divergedStatus).toMatch(/taken-by-hand is not a snapshot of/);
    expect(divergedStatus).toContain(`replicated=${newest}\n`);
    expect(await run(target, `zfs list -H -o name -t snapshot -d 1 ${replica.target}`)).toContain(
      "@taken-by-hand",
    );
    const warned = parseHostReport(await run(source, `${HEALTH_PROGRAM_PATH} json`));
    expect(warned.replicas).toEqual([
      expect.objectContaining({
        export: replica.exportName,
        host: target,
        result: "diverged",
        level: "WARN",
      }),
    ]);
    // Lag past maxLag fails the gate, naming the replica (the status file aged by hand).
    const aged = Math.floor(Date.now() / 1000) - replica.maxLag - 600;
    await run(source, `sed -i 's/^replicated_at=.*/replicated_at=${aged}/' ${files.status}`);
    const gate = await onHost(source, `${HEALTH_PROGRAM_PATH} gate`, { allowFail: true });
    expect(gate.code).not.toBe(0);
    expect(`${gate.stdout}${gate.stderr}`).toMatch(
      new RegExp(
        `FAIL ${source} replica ${replica.exportName} on ${target}: the replica on ${target} is .* behind`,
      ),
    );
    const metrics = await run(
      source,
      `${HEALTH_PROGRAM_PATH} metrics && cat ${config.health.textfileDir}/swarm.prom`,
    );
    expect(metrics).toMatch(
      new RegExp(`swarm_replica_lag_seconds\\{export="${replica.exportName}",replica="${target}"\\} \\d+`),
    );
    expect(metrics).toContain(
      `swarm_replica_last_run_success{export="${replica.exportName}",replica="${target}"} 0`,
    );

    // Undone by hand, the next run catches up.
    await run(target, `zfs destroy ${replica.target}@taken-by-hand`);
    await run(source, `systemctl start ${service}`);
    expect(await run(source, `cat ${files.status}`)).toMatch(/^result=ok$/m);
    await run(source, `systemctl start ${timer}`);
    const healthy = parseHostReport(await run(source, `${HEALTH_PROGRAM_PATH} json`));
    expect(healthy.replicas).toEqual([expect.objectContaining({ result: "ok", level: "ok" })]);
    await run(source, `rm -rf ${dir}`);
  } finally {
    await run(source, `systemctl start ${timer}`);
  }
  phase("check replication");
  // 4 to 5 minutes on a loaded machine.
}, 600_000);

test("2e. a replica taken out of the config: the sender stops and lets go of its hold, the replica host forgets the key and keeps the data; put back, replication goes on", async () => {
  const { step, replica, source, target, service, timer, files } = labReplica();
  const commands = [`${step.name}-receive`, `${step.name}-key`, `${step.name}-send`];
  const tagged = async () =>
    (
      await run(
        source,
        `zfs list -H -t snapshot -o name -d 1 ${replica.source.dataset} | xargs -r zfs holds -H | cut -f2`,
      )
    )
      .split("\n")
      .filter((tag) => tag === holdTag(target));
  // No run in progress: one holds the new snapshot a moment before it releases the old one.
  await pauseReplication(source, [timer]);
  expect(await tagged()).toHaveLength(1);
  const kept = await run(target, `zfs list -H -t snapshot -o name -d 1 ${replica.target}`);

  const without: FleetConfig = { ...config, exports: config.exports.map((e) => ({ ...e, replicas: [] })) };
  const removed = await engine.converge(without, adminKey);
  expect(removed.deleted).toEqual(expect.arrayContaining(commands));
  expect(await isActive(source, timer)).not.toBe("active");
  expect(
    await run(
      source,
      `for f in ${files.conf} ${files.key} ${files.knownHosts} ${files.status}; do test ! -e $f; done; echo gone`,
    ),
  ).toBe("gone\n");
  expect(await tagged()).toEqual([]);
  expect(
    await run(
      target,
      `test ! -e ${replicaDropinPath(replica.exportName)}; test ! -e ${replicaKeysPath(replica.exportName)}; echo gone`,
    ),
  ).toBe("gone\n");
  // The data and the user stay: removing a replica from the config never destroys it.
  expect(await run(target, `zfs list -H -t snapshot -o name -d 1 ${replica.target}`)).toBe(kept);
  await run(target, `getent passwd ${replicaUser(replica.exportName)} >/dev/null`);

  const back = await engine.converge(config, adminKey);
  expect(back.created).toEqual(expect.arrayContaining(commands));
  await pauseReplication(source, [timer]);
  try {
    const log = await run(
      source,
      `since=$(date +%s); systemctl start ${service}; journalctl -u ${service} -o cat --no-pager --since "@$since"`,
    );
    const status = await run(source, `cat ${files.status}`);
    expect(status).toMatch(/^result=ok$/m);
    // It went on from what the replica had: an incremental send, not a second whole copy.
    expect(log).toContain("received into");
    const newest = /^replicated=(.+)$/m.exec(status)?.[1] as string;
    expect(await run(target, `zfs list -H -t snapshot -o name -d 1 ${replica.target}`)).toContain(
      `@${newest}`,
    );
    expect(await run(source, `journalctl -u ${service} -o cat --no-pager -n 20`)).not.toMatch(
      /has no replica yet/,
    );
    expect(await tagged()).toHaveLength(1);
  } finally {
    await run(source, `systemctl start ${timer}`);
  }
  phase("replica removed and put back");
  // 4 to 5 minutes on a loaded machine.
}, 600_000);

test("3. first access mounts the export through the automount unit", async () => {
  const e = exported();
  const probe = `probe-${Date.now()}`;
  await run(e.host, `echo hello-from-${e.host} > ${e.mountpoint}/${probe}`);
  const sources = new Map(
    stepsOf(plan.steps, "mount").map((m) => [`${m.host}:${m.mount.path}`, mountSource(m.units)]),
  );
  for (const mount of config.mounts) {
    const unit = mountUnitNames(mount.path).automount;
    expect(await isActive(mount.host, unit)).toBe("active");
    const content = await run(mount.host, `cat ${mount.path}/${probe}`);
    if (content.trim() !== `hello-from-${e.host}`) {
      throw new Error(`${mount.host}: ${mount.path}/${probe} reads ${JSON.stringify(content)}`);
    }
    // The automount's autofs stays underneath; the sshfs mount sits on top of it.
    const stacked = await run(mount.host, `findmnt -n -o FSTYPE --mountpoint ${mount.path}`);
    expect(stacked.trim().split("\n")).toEqual(["autofs", "fuse.sshfs"]);
    // The mount table names the source as the unit does: a converge moves a mount only when they differ.
    expect(await run(mount.host, `findmnt -n -o SOURCE -t fuse.sshfs --mountpoint ${mount.path}`)).toBe(
      `${sources.get(`${mount.host}:${mount.path}`)}\n`,
    );
  }
  await run(e.host, `rm -f ${e.mountpoint}/${probe}`);
  phase("check automount");
});

/** The path of the sync's remote root as seen on the export host. */
function remoteRootOnServer(): { host: string; dir: string } {
  const { remote } = wikiStep();
  return { host: remote.server.name, dir: normalizePath(`${remote.export.mountpoint}/${remote.path}`) };
}

/** The sync's unit name without its suffix (`.service`, `.timer` are appended where used). */
const syncUnit = () => syncUnitNames(wiki().name).service.replace(/\.service$/, "");

/** The units that start the sync's runs on their own: its timer and, in watch mode, both watchers. */
function runStarters(): string {
  const units = syncUnitNames(wiki().name);
  return [units.timer, ...(wiki().watch ? [units.watch, units.remoteWatch] : [])].join(" ");
}

/** Nearest-rank percentile of a sorted list. */
function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
}

test("4. the sync converges both ways within two timer intervals", async () => {
  const s = wiki();
  const remote = remoteRootOnServer();
  const stamp = Date.now();
  const within = 2 * s.interval + 30;
  await run(
    s.host,
    `echo local-${stamp} > ${s.local}/from-local-${stamp}.md && chown ${s.user}: ${s.local}/from-local-${stamp}.md`,
  );
  await waitFor(`from-local-${stamp}.md in ${remote.host}:${remote.dir}`, within, async () => {
    const r = await onHost(remote.host, `cat ${remote.dir}/from-local-${stamp}.md`, { allowFail: true });
    return r.code === 0 && r.stdout.trim() === `local-${stamp}`;
  });
  await run(remote.host, `echo meshfs-${stamp} > ${remote.dir}/from-meshfs-${stamp}.md`);
  await waitFor(`from-meshfs-${stamp}.md in ${s.host}:${s.local}`, within, async () => {
    const r = await onHost(s.host, `cat ${s.local}/from-meshfs-${stamp}.md`, { allowFail: true });
    return r.code === 0 && r.stdout.trim() === `meshfs-${stamp}`;
  });
  phase("check sync both ways");
});

test("5. a file edited on both sides keeps both versions and logs the conflict", async () => {
  const s = wiki();
  const remote = remoteRootOnServer();
  const file = `conflict-${Date.now()}.md`;
  // The watchers too: a run started by the first edit would carry it over before the second.
  await run(s.host, `systemctl stop ${runStarters()}`);
  try {
    await run(s.host, `echo base > ${s.local}/${file} && chown ${s.user}: ${s.local}/${file}`);
    await run(s.host, `systemctl start ${syncUnit()}.service`);
    await run(remote.host, `test "$(cat ${remote.dir}/${file})" = base`);
    await run(s.host, `echo local-edit > ${s.local}/${file}`);
    await run(remote.host, `echo meshfs-edit > ${remote.dir}/${file}`);
    await run(s.host, `systemctl start ${syncUnit()}.service`);
    const holdsLocal =
      (await onHost(s.host, `grep -rqs local-edit ${s.local}`, { allowFail: true })).code === 0 ||
      (await onHost(remote.host, `grep -rqs local-edit ${remote.dir}`, { allowFail: true })).code === 0;
    const holdsRemote =
      (await onHost(s.host, `grep -rqs meshfs-edit ${s.local}`, { allowFail: true })).code === 0 ||
      (await onHost(remote.host, `grep -rqs meshfs-edit ${remote.dir}`, { allowFail: true })).code === 0;
    expect({ file, holdsLocal, holdsRemote }).toEqual({ file, holdsLocal: true, holdsRemote: true });
    const log = await run(s.host, `journalctl -u ${syncUnit()}.service --no-pager -n 200 -o cat`);
    expect(log).toMatch(
      new RegExp(
        `conflict[\\s\\S]*${file.replace(/\./g, "\\.")}|${file.replace(/\./g, "\\.")}[\\s\\S]*conflict`,
        "i",
      ),
    );
  } finally {
    await run(s.host, `systemctl start ${runStarters()}`);
  }
  phase("check conflict");
});

test("5b. a watched sync follows changes on both sides within seconds", async () => {
  const s = wiki();
  expect(s.watch).toBe(true);
  const remote = remoteRootOnServer();
  const units = syncUnitNames(s.name);
  const WRITES = 20;
  const SPACING_S = 8;
  // A file written just after a run has scanned waits for that run and the next: on a loaded CI
  // machine a run took up to 16 s.
  const GIVE_UP_S = 60;
  // The remote watcher may be reconnecting after an earlier check: wait for its session.
  await waitFor(`${units.watch} and ${units.remoteWatch} on ${s.host}`, 60, async () => {
    const states = await Promise.all([isActive(s.host, units.watch), isActive(s.host, units.remoteWatch)]);
    return states.every((state) => state === "active");
  });
  const stamp = Date.now();
  const names = (side: string) => Array.from({ length: WRITES }, (_, i) => `watch-${side}-${stamp}-${i}.md`);
  /**
   * One series: a writer on one side writes a file every SPACING_S seconds (each holding its own
   * name) and prints each write's time; a poller on the other side prints each file's arrival time
   * once it holds that content, giving up after the last write plus GIVE_UP_S. Both sides read one
   * clock (the VM's hosts share its kernel), in µs from bash's EPOCHREALTIME: no process is started
   * per check. The two series run at once, offset by half a spacing, as a busy wiki would write.
   */
  const series = async (
    direction: string,
    from: { host: string; dir: string; chown: string },
    to: { host: string; dir: string },
    files: string[],
    delayS: number,
  ) => {
    const list = files.map(quote).join(" ");
    const poller = onHost(
      to.host,
      `end=$(( \${EPOCHREALTIME%.*} + ${delayS + WRITES * SPACING_S + GIVE_UP_S} ))
left=(${list})
# A pause that starts no process: a sleep forked 10 times a second would compete with the sync it
# measures for the VM's emulated CPUs.
exec {nap}<> <(:)
while [ \${#left[@]} -gt 0 ] && [ "\${EPOCHREALTIME%.*}" -lt "$end" ]; do
  still=()
  for f in "\${left[@]}"; do
    line=
    { read -r line <${quote(to.dir)}/"$f"; } 2>/dev/null || true
    if [ "$line" = "$f" ]; then echo "$f \${EPOCHREALTIME/./}"; else still+=("$f"); fi
  done
  left=(\${still[@]+"\${still[@]}"})
  read -r -t 0.1 -u "$nap" _ || true
done`,
    );
    const writer = onHost(
      from.host,
      `sleep ${delayS}
for f in ${list}; do
  t=\${EPOCHREALTIME/./}
  printf '%s\\n' "$f" >${quote(from.dir)}/"$f"
  ${from.chown}
  echo "$f $t"
  sleep ${SPACING_S}
done`,
    );
    const times = (out: string) =>
      new Map(
        out
          .trim()
          .split("\n")
          .filter(Boolean)
          .map((l) => l.split(" ") as [string, string]),
      );
    const written = times((await writer).stdout);
    const seen = times((await poller).stdout);
    const latencies = files.map((f) => {
      const [w, a] = [written.get(f), seen.get(f)];
      return w !== undefined && a !== undefined
        ? Math.round((Number(a) - Number(w)) / 1000)
        : GIVE_UP_S * 1000;
    });
    const missing = files.filter((f) => !seen.has(f));
    if (missing.length > 0) {
      const journal = await run(
        s.host,
        `journalctl -u ${units.service} -u ${units.watch} -u ${units.remoteWatch} -o short-precise --no-pager --since @${Math.floor(stamp / 1000)} | tail -80`,
      );
      process.stdout.write(
        `${direction}: ${missing.join(" ")} did not arrive; the sync host's journal:\n${journal}\n`,
      );
    }
    const sorted = [...latencies].sort((x, y) => x - y);
    const result = {
      direction,
      p50: percentile(sorted, 0.5),
      p95: percentile(sorted, 0.95),
      max: sorted[sorted.length - 1],
    };
    process.stdout.write(
      `watched sync ${s.name}, ${direction}: ${WRITES} writes ${SPACING_S} s apart, p50 ${result.p50} ms, ` +
        `p95 ${result.p95} ms, max ${result.max} ms (all: ${latencies.join(" ")})\n`,
    );
    return { direction, allArrived: missing.length === 0 };
  };
  // Only the watchers start runs meanwhile.
  await run(s.host, `systemctl stop ${units.timer}`);
  try {
    const chown = `chown ${s.user}: ${quote(s.local)}/"$f"`;
    const results = await Promise.all([
      series("local → remote", { host: s.host, dir: s.local, chown }, remote, names("l"), 0),
      series(
        "remote → local",
        { ...remote, chown: "" },
        { host: s.host, dir: s.local },
        names("r"),
        SPACING_S / 2,
      ),
    ]);
    // What the latency is made of: how many runs the watchers started, and how long each took
    // (the guard and unison, from systemd's Starting to its Finished or Failed line).
    const journal = await run(
      s.host,
      `journalctl -u ${units.service} -o short-unix --no-pager --since @${Math.floor(stamp / 1000)} | grep -E 'systemd\\[1\\]: (Starting|Finished|Failed to start) ' || true`,
    );
    process.stdout.write(`watched sync ${s.name}: ${syncRunSummary(journal)}\n`);
    // With the timer stopped, only the watchers start runs: every file arrives, both ways. The
    // figures go to BENCHMARKS.md (a run takes 1.1-1.8 s in an idle VM under its emulation).
    expect(results).toEqual([
      { direction: "local → remote", allArrived: true },
      { direction: "remote → local", allArrived: true },
    ]);
  } finally {
    await run(s.host, `systemctl start ${units.timer}`);
  }
  phase("check watched sync latency");
  // Two series of 20 writes 8 s apart, at once, and up to 60 s for a file that is late.
}, 600_000);

test("6. with the tunnel blocked, a sync run deletes nothing and fails", async () => {
  const s = wiki();
  const remote = remoteRootOnServer();
  const server = plan.byName.get(remote.host)!.meshAddress;
  const mount = wikiStep().remote.mount.mount;
  const mountUnit = mountUnitNames(mount.path).mount;
  const listLocal = `cd ${s.local} && find . -path ./.unison -prune -o -print | sort`;
  const listRemote = `cd ${remote.dir} && find . -print | sort`;
  let blocked = false;
  try {
    // Nothing starts or holds a run meanwhile (a run a watcher started keeps the mount busy), and
    // the export is not mounted (the automount's autofs stays): the run must reach the server
    // through the blocked tunnel.
    await run(
      s.host,
      `systemctl stop ${runStarters()}; systemctl stop ${syncUnit()}.service; systemctl stop ${mountUnit}
if findmnt -n -o FSTYPE --mountpoint ${mount.path} | grep -qx fuse.sshfs; then
  echo "${mount.path} is still mounted" >&2
  exit 1
fi`,
    );
    const before = [await run(s.host, listLocal), await run(remote.host, listRemote)];
    await run(s.host, `ip rule add to ${server} prohibit priority 100`);
    blocked = true;
    const attempt = await onHost(s.host, `systemctl start ${syncUnit()}.service`, { allowFail: true });
    if (attempt.code === 0) {
      process.stdout.write(
        `check 6: the run succeeded with the tunnel blocked; its journal:\n${await run(
          s.host,
          `journalctl -u ${syncUnit()}.service -o short-precise --no-pager -n 60; findmnt ${mount.path} || true`,
        )}\n`,
      );
    }
    expect(attempt.code).not.toBe(0);
    const state = await run(s.host, `systemctl show -p ActiveState,Result ${syncUnit()}.service`);
    expect(state).toMatch(/ActiveState=failed|Result=(?!success)/);
    const after = [await run(s.host, listLocal), await run(remote.host, listRemote)];
    expect(after).toEqual(before);
  } finally {
    // Whatever failed above, the tunnel and the run starters come back: later checks need them.
    if (blocked) {
      await run(s.host, `ip rule del to ${server} prohibit priority 100`);
    }
    await run(s.host, `systemctl reset-failed ${syncUnit()}.service; systemctl start ${runStarters()}`);
  }
  phase("check blocked tunnel");
});

test("7. the sftp-only user gets no shell, no forwarding, and nothing from outside the mesh", async () => {
  const e = exported();
  const client = e.clients[0];
  const server = plan.byName.get(e.host)!;
  const underlay = config.hosts.find((h) => h.name === e.host)!.existing!.address;
  // The client's own key, pinned host key and alias, where the product puts them.
  const ssh = (target: string, extra: string) =>
    `ssh -F /dev/null -i ${clientKeyPath(e.name)} -o IdentitiesOnly=yes -o BatchMode=yes ` +
    `-o UserKnownHostsFile=${knownHostsPath(e.name)} -o HostKeyAlias=${hostKeyAlias(e.name)} ` +
    `-o StrictHostKeyChecking=yes -o ConnectTimeout=5 ${extra} ${e.user}@${target}`;
  const shell = await onHost(client, `${ssh(server.meshAddress, "")} id 2>&1`, { allowFail: true });
  expect(shell.stdout).not.toMatch(/uid=/);
  // -W opens a direct-tcpip channel at once: exactly what a port forward asks the server for.
  const forward = await onHost(
    client,
    `timeout 15 ${ssh(server.meshAddress, "-W 127.0.0.1:22")} </dev/null 2>&1`,
    {
      allowFail: true,
    },
  );
  expect(forward.code).not.toBe(124); // 124: the channel was still open when timeout stopped it
  expect(forward.code).not.toBe(0);
  expect(forward.stdout).not.toMatch(/^SSH-2\.0/m);
  const outside = await onHost(client, `${ssh(underlay, "")} true 2>&1`, { allowFail: true });
  expect(outside.code).not.toBe(0);
  expect(outside.stdout).toMatch(/Permission denied|Connection closed|refused/i);
  phase("check sftp user");
});

/** `npm run status -- lab`, as a person would run it. */
function status(...flags: string[]): { code: number; out: string } {
  const result = spawnSync("npx", ["tsx", "scripts/status.ts", "lab", ...flags], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
    timeout: 120_000,
  });
  return { code: result.status ?? 1, out: `${result.stdout}${result.stderr}` };
}

test("health: the gate passes on every host and status shows a healthy fleet", async () => {
  for (const host of plan.hosts) {
    const gate = await onHost(host.name, `${HEALTH_PROGRAM_PATH} gate`, { allowFail: true });
    if (gate.code !== 0) {
      throw new Error(`the health gate fails on ${host.name}:\n${gate.stdout}${gate.stderr}`);
    }
  }
  const healthy = status();
  process.stdout.write(`\nnpm run status -- lab (healthy):\n${healthy.out}\n`);
  expect(healthy.code).toBe(0);
  for (const host of plan.hosts) {
    expect(healthy.out).toContain(host.name);
  }
  phase("health gate and status (healthy)");
});

test("health: with the hub's WireGuard stopped, the gate fails naming host and peer, and status shows it", async () => {
  const hub = plan.byName.get(config.mesh.hub ?? plan.hosts[0].name)!;
  const spoke = plan.hosts.find((h) => h.peers.some((p) => p.name === hub.name))!;
  // Stopped, then masked for the check, as an operator stops it for maintenance: units that need
  // the mesh want wg-quick@wg0 (the replication service on this export host does), and a run
  // starting would bring it back up in the middle of the check. (Masked first, it would have no
  // ExecStop left to take the interface down.)
  await run(
    hub.name,
    `systemctl stop wg-quick@wg0
systemctl mask --runtime --quiet wg-quick@wg0
! ip link show ${WG_INTERFACE} >/dev/null 2>&1`,
  );
  try {
    const gate = await onHost(spoke.name, `${HEALTH_PROGRAM_PATH} gate`, { allowFail: true });
    expect(gate.code).not.toBe(0);
    expect(`${gate.stdout}${gate.stderr}`).toContain(
      `FAIL ${spoke.name} peer ${hub.name} (${[hub.meshAddress, hub.meshAddress6].filter(Boolean).join(", ")})`,
    );
    const broken = status();
    process.stdout.write(`\nnpm run status -- lab (${hub.name} WireGuard stopped):\n${broken.out}\n`);
    expect(broken.code).not.toBe(0);
  } finally {
    await run(hub.name, "systemctl unmask --runtime --quiet wg-quick@wg0\nsystemctl start wg-quick@wg0");
  }
  // The tunnels come back on their own: every spoke answers again within the gate's wait.
  for (const host of plan.hosts) {
    await run(host.name, `${HEALTH_PROGRAM_PATH} gate >/dev/null`);
  }
  phase("health gate (hub WireGuard stopped)");
});

test("8. converging again changes nothing", async () => {
  const again = await engine.converge(config, adminKey);
  expect(again.created).toEqual([]);
  expect(again.updated).toEqual([]);
  expect(again.deleted).toEqual([]);
  expect(again.unchanged.length).toBe(first.created.length);
  phase("second converge (no-op)");
});

test("9. a fourth host joins the mesh over kernel WireGuard while existing tunnels lose no packet", async () => {
  const template = config.hosts.find((h) => h.wireguard === "kernel" && h.name !== config.mesh.hub)!;
  // edge's host key exists once it has booted; the config pins it from then on.
  const grownWith = (hostKey: string): FleetConfig => ({
    ...config,
    hosts: [
      ...config.hosts,
      {
        ...template,
        name: "edge",
        meshAddress: undefined,
        wireguard: "kernel",
        existing: { address: "10.231.0.14", user: "root", port: 22, hostKey },
      },
    ],
  });
  // Every tunnel of the hub carries a ping while edge joins: kernel WireGuard and wireguard-go peers alike.
  const a = plan.byName.get(config.mesh.hub ?? plan.hosts[0].name)!;
  const peers = a.peers.map((p) => ({ name: p.name, address: plan.byName.get(p.name)!.meshAddress }));
  await pingingThrough(a.name, "9", peers, "while edge joined", 10, async () => {
    vmSh("up", "edge=10.231.0.14");
    const grown = grownWith(labHostKeys()("10.231.0.14") ?? "");
    config = grown;
    seedHosts(grown);
    const result = await engine.converge(grown, adminKey);
    expect(result.created.some((n) => n.includes("edge"))).toBe(true);
    plan = planFleet(grown);
    const edge = plan.byName.get("edge")!;
    for (const peer of edge.peers) {
      await run("edge", `ping -c 3 -i 0.2 -W 2 ${plan.byName.get(peer.name)!.meshAddress}`);
    }
    // Kernel WireGuard: the interface is the kernel's, not a wireguard-go TUN device.
    expect((await run("edge", "ip -d link show wg0")).split("\n")[2] ?? "").toMatch(/^\s*wireguard\b/);
  });
  phase("add a fourth host");
  // 3 to 4 minutes on a loaded machine.
}, 600_000);

test("10. a restarted client host gets its automount, sync timer and metrics timer back, and the next sync loses nothing", async () => {
  const s = wiki();
  const remote = remoteRootOnServer();
  const mount = wikiStep().remote.mount.mount;
  const stamp = Date.now();
  const listLocal = `cd ${s.local} && find . -path ./.unison -prune -o -type f -print | sort`;
  const listRemote = `cd ${remote.dir} && find . -type f -print | sort`;
  // Changes on both sides that no sync has seen yet when the host goes down.
  await run(s.host, `systemctl stop ${runStarters()}`);
  await run(
    s.host,
    `echo before-reboot > ${s.local}/local-${stamp}.md && chown ${s.user}: ${s.local}/local-${stamp}.md`,
  );
  await run(remote.host, `echo before-reboot > ${remote.dir}/remote-${stamp}.md`);
  const before = { local: await run(s.host, listLocal), remote: await run(remote.host, listRemote) };
  await reboot(s.host);
  const watchers = s.watch ? [syncUnitNames(s.name).watch] : [];
  const units = [
    mountUnitNames(mount.path).automount,
    `${syncUnit()}.timer`,
    ...watchers,
    `${METRICS_UNIT}.timer`,
  ];
  const states = await Promise.all(units.map((u) => isActive(s.host, u)));
  expect(Object.fromEntries(units.map((u, i) => [u, states[i]]))).toEqual(
    Object.fromEntries(units.map((u) => [u, "active"])),
  );
  await run(s.host, `systemctl start ${syncUnit()}.service`);
  const after = { local: await run(s.host, listLocal), remote: await run(remote.host, listRemote) };
  const lines = (text: string) => text.split("\n").filter((l) => l !== "");
  for (const file of [...lines(before.local), ...lines(before.remote)]) {
    expect({ file, local: lines(after.local).includes(file) }).toEqual({ file, local: true });
    expect({ file, remote: lines(after.remote).includes(file) }).toEqual({ file, remote: true });
  }
  phase("restart a client host");
});

test("11. a restarted hub brings every tunnel and the export back without a converge", async () => {
  const hub = config.mesh.hub ?? plan.hosts[0].name;
  const e = exported();
  await reboot(hub);
  await checkMesh();
  if (e.host === hub) {
    expect((await run(hub, `zfs get -H -o value mounted ${e.dataset}`)).trim()).toBe("yes");
    await run(hub, `test -f ${e.mountpoint}/${EXPORT_SENTINEL}`);
  }
  // Every host's own health gate agrees, clients' mounts included.
  const problems = await fleetProblems(120);
  if (problems.length > 0) {
    throw new Error(`after ${hub} restarted, the health gate fails on ${problems.join("\n")}`);
  }
  phase("restart the hub");
});

test("12. a host whose SSH key changed is refused: nothing runs on it, and the error names both keys", async () => {
  const s = wiki();
  const host = config.hosts.find((h) => h.name === s.host)!.existing!;
  const timer = `/etc/systemd/system/${syncUnit()}.timer`;
  const timerBefore = await run(s.host, `cat ${timer}`);
  // A new Ed25519 key, as a reinstall (or another machine answering at the address) would offer.
  const offered = (
    await run(
      s.host,
      [
        "cp -a /etc/ssh/ssh_host_ed25519_key /run/swarm-hostkey.bak",
        "cp -a /etc/ssh/ssh_host_ed25519_key.pub /run/swarm-hostkey.pub.bak",
        "rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub",
        "ssh-keygen -q -t ed25519 -N '' -C '' -f /etc/ssh/ssh_host_ed25519_key",
        "systemctl reload ssh && sleep 2",
        "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub",
      ].join("\n"),
    )
  ).trim();
  const restore = [
    "mv -f /run/swarm-hostkey.bak /etc/ssh/ssh_host_ed25519_key",
    "mv -f /run/swarm-hostkey.pub.bak /etc/ssh/ssh_host_ed25519_key.pub",
    "systemctl reload ssh && sleep 2",
  ].join("; ");
  try {
    const changed: FleetConfig = {
      ...config,
      syncs: config.syncs.map((x) => (x === s ? { ...x, interval: x.interval + 5 } : x)),
    };
    const failure = await engine.converge(changed, adminKey).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(CommandFailed);
    const message = (failure as Error).message;
    process.stdout.write(`${message}\n`);
    expect(message).toContain(`host key mismatch at ${hostPort(host.address, host.port)}`);
    expect(message).toContain(`the host offered ${sshFingerprint(offered)}`);
    expect(message).toContain(`the program pins ${sshFingerprint(host.hostKey)}`);
  } finally {
    // Through a connection that pins the key the host offers now.
    const result = await sshRun(
      { host: host.address, port: host.port, user: "root", privateKey: adminKey, hostKey: offered },
      `bash -c ${quote(restore)}`,
      undefined,
      SSH_CONFIG,
    );
    expect(result).toMatchObject({ code: 0 });
  }
  // Nothing ran there, and the engine kept its state: the unchanged fleet converges with nothing to do.
  expect(await run(s.host, `cat ${timer}`)).toBe(timerBefore);
  const again = await engine.converge(config, adminKey);
  expect([...again.created, ...again.updated, ...again.deleted]).toEqual([]);
  phase("a changed host key is refused");
});

test("13. a broken WireGuard config fed through the apply script is refused and rolled back: every tunnel stays up", async () => {
  const hub = plan.byName.get(config.mesh.hub ?? plan.hosts[0].name)!;
  // The hub's apply script exactly as the program rendered it for the last converge.
  const name = `mesh-${hub.name}-config`;
  const state = engine.snapshot().find((s) => s.name === name);
  if (state === undefined) {
    throw new Error(`the engine holds no command ${name}`);
  }
  const applyScript = unwrapRootCommand(reveal(state.inputs.create) as string);
  const opening = `swarm_write '${WG_PUBLIC_CONF_PATH}' 0644 root:root <<'SWARM_EOF'\n`;
  const start = applyScript.indexOf(opening) + opening.length;
  const end = applyScript.indexOf("SWARM_EOF\n", start);
  expect(applyScript.indexOf(opening)).toBeGreaterThan(0);
  // The written configuration, as [Interface] and one block per peer; the plan's peers in the script stay as rendered.
  const blocks = applyScript.slice(start, end).replace(/\n$/, "").split("\n\n");
  expect(blocks.length).toBe(hub.peers.length + 1);
  const delivering = (written: readonly string[]) =>
    `${applyScript.slice(0, start)}${written.join("\n\n")}\n${applyScript.slice(end)}`;

  const files = `sha256sum ${WG_CONF_PATH} ${WG_PUBLIC_CONF_PATH}; ls -A ${WG_DIR}`;
  const live = `wg show ${WG_INTERFACE} allowed-ips | sort`;
  const before = { files: await run(hub.name, files), live: await run(hub.name, live) };
  const unchanged = async (what: string) => {
    expect({ what, files: await run(hub.name, files) }).toEqual({ what, files: before.files });
    expect({ what, live: await run(hub.name, live) }).toEqual({ what, live: before.live });
  };

  // A ping on every tunnel of the hub for the whole check.
  const peers = hub.peers.map((p) => ({ name: p.name, address: plan.byName.get(p.name)!.meshAddress }));
  await pingingThrough(hub.name, "13", peers, "during the broken applies", 5, async () => {
    // A delivery fault that truncates the peer list: refused before wg or wg-quick reads it.
    for (const keep of [0, 1]) {
      const refused = await onHost(hub.name, delivering(blocks.slice(0, keep + 1)), { allowFail: true });
      process.stdout.write(`${hub.name}, ${keep} peer(s) delivered: exit ${refused.code}\n${refused.stderr}`);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        `swarm: ${hub.name}: refused the new ${WG_CONF_PATH}: it holds ${keep} peer(s), the plan has ${hub.peers.length}; missing: `,
      );
      for (const peer of hub.peers.slice(keep)) {
        expect(refused.stderr).toContain(peer.name);
      }
      await unchanged(`after delivering ${keep} peer(s)`);
    }

    // A configuration wg accepts but the plan does not: the first peer carries an extra block.
    // It is applied in place (that peer gains the block), found to differ from the plan, and rolled back.
    const [widenedPeer] = hub.peers;
    const widened = blocks.map((b) =>
      b.includes(`\n# ${widenedPeer.name}\n`) ? b.replace(/^(AllowedIPs = .*)$/m, "$1, 192.0.2.0/24") : b,
    );
    expect(widened).not.toEqual(blocks);
    const rolledBack = await onHost(hub.name, delivering(widened), { allowFail: true });
    process.stdout.write(
      `${hub.name}, a widened peer delivered: exit ${rolledBack.code}\n${rolledBack.stderr}`,
    );
    expect(rolledBack.code).toBe(1);
    expect(rolledBack.stdout).toContain(
      `swarm: ${hub.name}: updated ${WG_INTERFACE} in place (wg set: 0 peer(s) added, 1 changed, 0 removed)`,
    );
    expect(rolledBack.stderr).toMatch(
      new RegExp(
        `swarm: ${hub.name}: peer ${widenedPeer.name} \\(\\S+\\) has AllowedIPs \\S*192\\.0\\.2\\.0/24\\S*, the plan has `,
      ),
    );
    expect(rolledBack.stderr).toContain(
      `swarm: ${hub.name}: rolled ${WG_INTERFACE} back to the previous ${WG_CONF_PATH} (wg set: 0 peer(s) added, 1 changed, 0 removed)`,
    );
    await unchanged("after the rollback");

    // The script as rendered still converges to the same files and interface.
    await run(hub.name, applyScript);
    await unchanged("after the script as rendered");
  });
  await checkMesh();
  phase("a broken WireGuard config is refused and rolled back");
});

test("14. spokes reach each other through the hub, and the hub forwards nothing else", async () => {
  const hubName = config.mesh.hub;
  if (config.mesh.topology !== "hub" || !config.mesh.hubRouting || hubName === undefined) {
    throw new Error("the lab stack must use topology hub with hubRouting");
  }
  // b is a spoke with an IPv4 uplink address (the mesh and the hub's forwarding are IPv4): a sends
  // it into the tunnel below.
  const uplinkOf = (name: string) => config.hosts.find((h) => h.name === name)?.existing?.address ?? "";
  const spokes = plan.hosts.filter((h) => h.name !== hubName);
  const [a, b] = isIPv4(uplinkOf(spokes[1].name)) ? spokes : [spokes[1], spokes[0]];
  const table = `${HUB_TABLE.family} ${HUB_TABLE.name}`;

  // Each spoke's single peer is the hub, carrying the mesh block, so wg-quick routes the block to it.
  for (const [spoke, other] of [
    [a, b],
    [b, a],
  ]) {
    const allowed = (await run(spoke.name, `wg show ${WG_INTERFACE} allowed-ips`)).trim().split("\n");
    expect({ spoke: spoke.name, allowed: allowed.map((l) => l.split(/\s+/).slice(1).sort()) }).toEqual({
      spoke: spoke.name,
      allowed: [[...spoke.peers[0].allowedIps].sort()],
    });
    expect(spoke.peers[0].allowedIps).toContain(config.mesh.cidr);
    expect(await run(spoke.name, `ip -4 route get ${other.meshAddress}`)).toContain(`dev ${WG_INTERFACE}`);
  }

  // The hub: forwarding on wg0, and the swarm table with its three counted rules.
  expect(await run(hubName, `sysctl -n net.ipv4.conf.${WG_INTERFACE}.forwarding`)).toBe("1\n");
  const listed = await run(hubName, `nft list table ${table}`);
  process.stdout.write(`${hubName}: nft list table ${table}\n${listed}`);
  const counters = async () => {
    const text = await run(hubName, `nft list chain ${table} forward`);
    const count = (comment: string) => {
      const match = new RegExp(`counter packets (\\d+) bytes \\d+ \\w+ comment "${comment}"`).exec(text);
      if (!match) {
        throw new Error(`no counted rule "${comment}" in ${table} on ${hubName}:\n${text}`);
      }
      return Number(match[1]);
    };
    return { between: count(HUB_RULE_COMMENTS.between), out: count(HUB_RULE_COMMENTS.out) };
  };
  const start = await counters();

  // Spoke to spoke and back, through the hub.
  for (const [from, to] of [
    [a, b],
    [b, a],
  ]) {
    const ping = await onHost(from.name, `ping -n -q -c 5 -i 0.2 -W 2 ${to.meshAddress}`, {
      allowFail: true,
    });
    process.stdout.write(`${from.name} → ${to.name} (${to.meshAddress}) through ${hubName}:\n${ping.stdout}`);
    const received = Number(/(\d+) received/.exec(ping.stdout)?.[1] ?? 0);
    expect({ from: from.name, to: to.name, received: received > 0 }).toEqual({
      from: from.name,
      to: to.name,
      received: true,
    });
  }
  const meshed = await counters();
  expect(meshed.between).toBeGreaterThan(start.between);

  // Out of the mesh: a spoke only routes the mesh block to the hub, so for a moment spoke a also
  // sends b's uplink address into the tunnel. The hub accepts the packets (their source is a's
  // mesh address) and would forward them to its uplink: the swarm table drops them and counts them.
  const outside = uplinkOf(b.name);
  if (!isIPv4(outside)) {
    throw new Error(`the lab stack needs a spoke with an IPv4 address; ${b.name} has ${outside}`);
  }
  const hubKey = (await run(a.name, `wg show ${WG_INTERFACE} peers`)).trim();
  const allowedBefore = await run(a.name, `wg show ${WG_INTERFACE} allowed-ips`);
  const original = allowedBefore.trim().split(/\s+/).slice(1).join(",");
  let escaped;
  try {
    await run(
      a.name,
      `wg set ${WG_INTERFACE} peer ${hubKey} allowed-ips ${original},${outside}/32
ip -4 route add ${outside}/32 dev ${WG_INTERFACE}`,
    );
    escaped = await onHost(a.name, `ping -n -q -c 3 -i 0.2 -W 1 ${outside}`, { allowFail: true });
  } finally {
    await run(
      a.name,
      `ip -4 route del ${outside}/32 dev ${WG_INTERFACE} || true
wg set ${WG_INTERFACE} peer ${hubKey} allowed-ips ${original}`,
    );
  }
  process.stdout.write(`${a.name} → ${outside} (${b.name}'s uplink) through ${hubName}:\n${escaped.stdout}`);
  expect(escaped.stdout).toMatch(/ 0 received/);
  const dropped = await counters();
  expect(dropped.out - meshed.out).toBeGreaterThanOrEqual(3);
  expect(await run(a.name, `wg show ${WG_INTERFACE} allowed-ips`)).toBe(allowedBefore);
  await checkMesh();
  phase("spokes reach each other through the hub, which forwards nothing else");
});

test("14b. a route given to a spoke is routed through the hub's tunnel in place, reached from the other spoke through the hub, and taken away is gone, while the hub's other tunnel loses no packet", async () => {
  const hubName = config.mesh.hub;
  if (hubName === undefined) {
    throw new Error("the lab stack must name a hub");
  }
  const [spoke, other] = plan.hosts.filter((h) => h.name !== hubName);
  // A network behind the spoke: 10.77.0.1 on its loopback (a dummy interface would need a module).
  const lan = "10.77.0.0/24";
  const behind = "10.77.0.1";
  const before = config;
  const withRoute = (routes: readonly string[]): FleetConfig => ({
    ...before,
    hosts: before.hosts.map((h) => (h.name === spoke.name ? { ...h, routes: [...routes] } : h)),
  });
  const routeOnHub = () => run(hubName, `ip -4 route show dev ${WG_INTERFACE} exact ${lan}`);
  expect(await routeOnHub()).toBe("");
  await run(spoke.name, `ip address add ${behind}/32 dev lo`);
  const target = { name: other.name, address: other.meshAddress };
  await pingingThrough(hubName, "14b", [target], "while the route came and went", 10, async () => {
    try {
      config = withRoute([...(before.hosts.find((h) => h.name === spoke.name)?.routes ?? []), lan]);
      const added = await engine.converge(config, adminKey);
      process.stdout.write(`route ${lan} to ${spoke.name}: updated ${added.updated.join(", ")}\n`);
      // Only WireGuard configurations are replaced (the new command runs the apply in place, the old
      // one's teardown finds another owner and leaves wg0 alone), and the health gate of a host whose
      // configuration was (a gate runs again after any step of its host changed); nothing else is
      // created or deleted.
      const replacedOnly = (r: ConvergeResult) => {
        expect([...r.created].sort()).toEqual([...r.deleted].sort());
        const configs = r.created.filter((n) => /^mesh-.+-config$/.test(n));
        const gates = configs.map((n) => `${n.replace(/^mesh-(.+)-config$/, "$1")}-health-install`);
        expect(r.created.filter((n) => !configs.includes(n) && !gates.includes(n))).toEqual([]);
      };
      replacedOnly(added);
      // No restart: the hub's interface changed in place, and wg-quick's route for the CIDR is there.
      expect(await routeOnHub()).toMatch(new RegExp(`^${lan.replace(/\./g, "\\.")} `));
      expect(await run(hubName, `ip -4 route get ${behind}`)).toContain(`dev ${WG_INTERFACE}`);
      const reached = await onHost(hubName, `ping -n -q -c 3 -i 0.2 -W 2 ${behind}`, { allowFail: true });
      process.stdout.write(`${hubName} → ${behind} (behind ${spoke.name}):\n${reached.stdout}`);
      expect(reached.stdout).toMatch(/ 3 received/);
      // The other spoke routes it to the hub, which forwards it to the spoke, and takes the replies
      // from the hub: its only peer carries every other spoke's routes.
      expect(await run(other.name, `ip -4 route get ${behind}`)).toContain(`dev ${WG_INTERFACE}`);
      const across = await onHost(other.name, `ping -n -q -c 3 -i 0.2 -W 2 ${behind}`, { allowFail: true });
      process.stdout.write(
        `${other.name} → ${behind} (behind ${spoke.name}) through ${hubName}:\n${across.stdout}`,
      );
      expect(across.stdout).toMatch(/ 3 received/);

      config = before;
      const removed = await engine.converge(config, adminKey);
      replacedOnly(removed);
      expect(await routeOnHub()).toBe("");
      // Without the route the address goes to the uplink, or nowhere: never into the tunnel.
      for (const host of [hubName, other.name]) {
        const gone = await onHost(host, `ip -4 route get ${behind}`, { allowFail: true });
        expect({ host, route: `${gone.stdout}${gone.stderr}`.includes(`dev ${WG_INTERFACE}`) }).toEqual({
          host,
          route: false,
        });
      }
    } finally {
      if (config !== before) {
        config = before;
        await engine.converge(config, adminKey);
      }
      await run(spoke.name, `ip address del ${behind}/32 dev lo || true`);
    }
  });
  await checkMesh();
  phase("a route given to a spoke and taken away in place");
}, 900_000);

test("14c. a route through the tunnel deleted by hand is drift of the host's WireGuard config, and gone once it is back", async () => {
  const hubName = config.mesh.hub;
  const spoke = plan.hosts.find((h) => h.name !== hubName);
  if (spoke === undefined) {
    throw new Error("the lab needs a host besides the hub");
  }
  // Whatever route through wg0 holds the spoke's first AllowedIPs block (the mesh block routed to the
  // hub, held by the route the interface's address gives it).
  const [block] = spoke.peers[0].allowedIps;
  const route = (await run(spoke.name, `ip -4 route show dev ${WG_INTERFACE} match ${block}`))
    .trim()
    .split("\n")[0];
  expect(route).toMatch(/^\S+ /);
  const drift = async () =>
    (await run(spoke.name, `${DRIFT_PROGRAM_PATH}`))
      .split("\n")
      .filter((l) => l.includes(`\t${WG_INTERFACE} route `));
  expect(await drift()).toEqual([]);
  const destination = route.split(" ")[0];
  const rest = route.slice(destination.length).trim();
  try {
    await run(spoke.name, `ip -4 route del ${destination} dev ${WG_INTERFACE}`);
    expect(await drift()).toEqual([
      `mesh-${spoke.name}-config\tpeer\t${WG_INTERFACE} route ${block}\tnot routed through ${WG_INTERFACE} (AllowedIPs of peer ${spoke.peers[0].name}): its traffic goes elsewhere`,
    ]);
  } finally {
    await run(
      spoke.name,
      `ip -4 route show dev ${WG_INTERFACE} exact ${destination} | grep -q . || ip -4 route add ${destination} dev ${WG_INTERFACE} ${rest}`,
    );
  }
  expect(await drift()).toEqual([]);
  await checkMesh();
  phase("a route deleted by hand is drift");
});

test("15. drift made by hand is reported by status and metrics, and a repair re-runs exactly the drifted steps", async () => {
  const root = `${__dirname}/../..`;
  const drifted = async () =>
    (await askFleet("lab", { root })).rows.map((row) => {
      if (row.report?.drift === undefined) {
        throw new Error(
          `${row.host} gave no drift report: ${row.error ?? "its health program predates drift"}`,
        );
      }
      return { host: row.host, drift: row.report.drift };
    });
  // A fleet that has synced, snapshotted, rebooted and rolled back a WireGuard apply holds no drift:
  // runtime state is not drift.
  const clean = await drifted();
  expect(clean.length).toBeGreaterThanOrEqual(3);
  expect(clean.filter((r) => r.drift.length > 0)).toEqual([]);
  // A refresh (each host's drift resource read again) finds nothing to change either.
  expect(await engine.refresh()).toEqual([]);

  const [mesh] = stepsOf(plan.steps, "mesh");
  const [exportStep] = stepsOf(plan.steps, "export");
  const sync = wikiStep();
  const hub = config.mesh.hub ?? plan.hosts[0].name;
  const keyHost = plan.hosts.find((h) => h.name !== exportStep.host && h.name !== sync.host)?.name;
  if (keyHost === undefined || hub !== exportStep.host) {
    throw new Error("the lab needs its hub to be the export host, and a third host");
  }
  const dataset = exportStep.zfs.dataset;
  const atime = exportStep.zfs.properties.atime;
  if (atime === undefined) {
    throw new Error(`the lab's export must set atime on ${dataset}`);
  }
  const keys = authorizedKeysPath(exportStep.export.user);
  const timer = syncUnitNames(sync.sync.name).timer;
  const used = new Set(plan.hosts.map((h) => h.meshAddress));
  const rogueAddress = plan.hosts[0].meshAddress.replace(/\.\d+$/, ".250");
  expect(used.has(rogueAddress)).toBe(false);
  const rogueKey = (await run(hub, "wg genkey | wg pubkey")).trim();
  const keysBefore = await run(hub, `cat ${keys}`);
  const publicBefore = await run(hub, `cat ${WG_PUBLIC_CONF_PATH}`);

  // (a) the hub's wg0.conf.public edited and a peer added with wg set; (b) a sync timer disabled;
  // (c) a private key made world-readable; (d) a dataset property changed; (e) a key line added.
  await run(
    hub,
    `printf '# edited by hand\\n' >>${WG_PUBLIC_CONF_PATH}
wg set ${WG_INTERFACE} peer ${rogueKey} allowed-ips ${rogueAddress}/32
zfs set atime=${atime === "off" ? "on" : "off"} ${dataset}
printf '%s\\n' 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHandAddedKeyThatSwarmDidNotPutHere0000000 hand' >>${keys}`,
  );
  await run(sync.host, `systemctl disable --quiet ${timer}`);
  await run(keyHost, `chmod 0644 ${WG_KEY_PATH}`);

  const expected = {
    [hub]: [
      [`${mesh.name}-${hub}-config`, "file", WG_PUBLIC_CONF_PATH],
      [`${mesh.name}-${hub}-config`, "peer", `${WG_INTERFACE} peer ${rogueKey}`],
      [`${exportStep.name}-zfs`, "zfs", `${dataset} atime`],
      [`${exportStep.name}-sftp`, "file", keys],
    ],
    [sync.host]: [[`${sync.name}-units`, "unit", timer]],
    [keyHost]: [[`${mesh.name}-${keyHost}-key`, "file", WG_KEY_PATH]],
  };
  const found = await drifted();
  process.stdout.write(`drift found:\n${JSON.stringify(found, null, 2)}\n`);
  for (const { host, drift } of found) {
    expect({ host, drift: drift.map((d) => [d.step, d.kind, d.item]).sort() }).toEqual({
      host,
      drift: (expected[host] ?? []).sort(),
    });
  }

  // pulumi preview --refresh: each drift resource's read returns the items, and the refresh shows
  // the resource of each drifted host with its output drift changed; no other resource changes.
  const refreshed = await engine.refresh();
  process.stdout.write(
    `refresh:\n${refreshed.map((c) => `  ~ ${c.name}: drift ${JSON.stringify(c.after.drift)}`).join("\n")}\n`,
  );
  expect(refreshed.map((c) => c.name).sort()).toEqual(
    Object.keys(expected)
      .map((h) => `${h}-health-drift`)
      .sort(),
  );
  for (const change of refreshed) {
    const host = change.name.replace(/-health-drift$/, "");
    expect(change.before.drift).toEqual([]);
    const items = (change.after.drift as { step: string; kind: string; item: string }[]).map((d) => [
      d.step,
      d.kind,
      d.item,
    ]);
    expect(items.sort()).toEqual([...expected[host]].sort());
  }

  // Status names each host and item; the metrics count each kind.
  const shown = status("--drift");
  process.stdout.write(`\nnpm run status -- lab --drift (drifted):\n${shown.out}\n`);
  for (const [host, items] of Object.entries(expected)) {
    for (const [step, , item] of items) {
      expect(shown.out).toMatch(
        new RegExp(`${host}\\s+${step}\\s+\\S+\\s+${item.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`),
      );
    }
  }
  for (const [host, items] of Object.entries(expected)) {
    await run(host, `${HEALTH_PROGRAM_PATH} metrics`);
    const metrics = await run(host, `grep '^swarm_drift_items' ${config.health.textfileDir}/swarm.prom`);
    for (const kind of DRIFT_KINDS) {
      const count = items.filter(([, k]) => k === kind).length;
      expect({ host, kind, line: metrics.includes(`swarm_drift_items{kind="${kind}"} ${count}\n`) }).toEqual({
        host,
        kind,
        line: true,
      });
    }
  }
  phase("drift reported");

  // The repair: the generations npm run repair writes, then a converge of the stack with them.
  const edits = repairEdits((await askFleet("lab", { root })).rows, config.repairs);
  const steps = [...new Set(Object.values(expected).flatMap((items) => items.map(([step]) => step)))].sort();
  expect(Object.keys(edits).sort()).toEqual(steps);
  const repaired: FleetConfig = { ...config, repairs: { ...config.repairs, ...edits } };
  const result = await engine.converge(repaired, adminKey);
  // Each repaired step is replaced (its create runs again; the old half's delete finds a newer marker),
  // and so is the health gate of each host it ran on; nothing else runs.
  const gates = config.health.gate ? Object.keys(expected).map((host) => `${host}-health-install`) : [];
  expect([...result.created].sort()).toEqual([...steps, ...gates].sort());
  expect([...result.deleted].sort()).toEqual([...steps, ...gates].sort());
  // The drift resources of those hosts are read again after the change there: nothing is left.
  expect([...result.updated].sort()).toEqual(
    Object.keys(expected)
      .map((h) => `${h}-health-drift`)
      .sort(),
  );
  expect(await engine.refresh()).toEqual([]);
  config = repaired;

  expect(await run(hub, `cat ${WG_PUBLIC_CONF_PATH}`)).toBe(publicBefore);
  expect(await run(hub, `wg show ${WG_INTERFACE} peers`)).not.toContain(rogueKey);
  expect(await run(hub, `zfs get -H -o value atime ${dataset}`)).toBe(`${atime}\n`);
  expect(await run(hub, `cat ${keys}`)).toBe(keysBefore);
  expect(await isEnabled(sync.host, timer)).toBe("enabled");
  expect(await run(keyHost, `stat -c %a ${WG_KEY_PATH}`)).toBe("600\n");
  expect((await drifted()).filter((r) => r.drift.length > 0)).toEqual([]);
  await checkMesh();
  const again = await engine.converge(config, adminKey);
  expect([...again.created, ...again.updated, ...again.deleted]).toEqual([]);
  phase("drift repaired");
  // Three askFleet rounds, status, metrics on three hosts, a repair converge and a no-op one: 10 to
  // 11 minutes on a loaded machine.
}, 1_200_000);

/**
 * What the failover runbook (docs/replicas.md) asks of an operator, as config: the export moves to
 * the replica's host, onto the replica's pool and dataset; that host's own mount of it goes (an
 * export host reads its dataset directly), and so does the replica.
 */
function promote(from: FleetConfig, exportName: string, replicaHost: string): FleetConfig {
  return {
    ...from,
    exports: from.exports.map((x) => {
      if (x.name !== exportName) {
        return x;
      }
      const replica = x.replicas.find((r) => r.host === replicaHost)!;
      return {
        ...x,
        host: replica.host,
        pool: replica.pool,
        dataset: replica.dataset,
        clients: x.clients.filter((c) => c !== replica.host),
        replicas: x.replicas.filter((r) => r !== replica),
      };
    }),
    mounts: from.mounts.filter((m) => !(m.host === replicaHost && m.export === exportName)),
  };
}

test("16. failover: the export host loses its pool, the replica is promoted by a config change, every replicated file is intact, the sync deletes nothing and resumes, and the old host comes back as the new replica", async () => {
  const { replica, source: oldHost, target: newHost, service: replicateService, files } = labReplica();
  const e = exported();
  const sync = wikiStep();
  const s = sync.sync;
  if (sync.remote.server.name !== oldHost || s.host === newHost || replica.exportName !== e.name) {
    throw new Error("the lab needs its sync on a third host, through a mount of the replicated export");
  }
  const replicaConfig = e.replicas.find((r) => r.host === newHost)!;
  const syncService = syncUnitNames(s.name).service;
  const syncTimer = syncUnitNames(s.name).timer;
  const remoteRoot = normalizePath(`${e.mountpoint}/${sync.remote.path}`);
  const stamp = Date.now();
  const sha = (dir: string) => `cd ${dir} && find . -type f -print0 | sort -z | xargs -0r sha256sum`;
  const statusOf = async () => {
    // No file before the first run has ended.
    const text = await run(oldHost, `cat ${files.status} 2>/dev/null || true`);
    return {
      replicated: /^replicated=(.*)$/m.exec(text)?.[1] ?? "",
      at: Number(/^replicated_at=(\d+)$/m.exec(text)?.[1] ?? 0),
      text,
    };
  };

  // Files with known checksums in meshfs, and a page written on the sync's client.
  const dir = `${e.mountpoint}/failover-check`;
  const written = await run(
    oldHost,
    `install -d ${dir}
for i in 1 2 3 4 5; do head -c $((i * 70000)) /dev/urandom > ${dir}/file-$i; done
${sha(dir)}`,
  );
  const clientPage = `failover-client-${stamp}.md`;
  await run(
    s.host,
    `echo client-${stamp} > ${s.local}/${clientPage} && chown ${s.user}: ${s.local}/${clientPage}`,
  );
  await waitFor(`${clientPage} on ${oldHost}`, 2 * s.interval + 30, async () => {
    return (await onHost(oldHost, `test -f ${remoteRoot}/${clientPage}`, { allowFail: true })).code === 0;
  });

  // Writes every second until the loss, each logged outside the pool when it succeeded.
  const writerUnit = `swarm-lab-writer-${stamp}`;
  const seqDir = `${e.mountpoint}/failover-seq`;
  const writerLog = `/var/tmp/${writerUnit}.log`;
  await run(
    oldHost,
    `install -d ${seqDir}
systemd-run --quiet --unit ${writerUnit} bash -c 'while :; do t=$(date +%s%3N); echo $t > ${seqDir}/$t && echo $t >> ${writerLog}; sleep 1; done'`,
  );
  // Runs start one interval apart (OnUnitActiveSec, or when the previous one ends if it took
  // longer), each with its snapshot: the replica is at most that plus the run in flight behind. A
  // run ends; right after it a page is written in meshfs, and the loss comes once the client has
  // synced it, before another run has ended: what only the client still has after the loss.
  let lateStatus = "";
  const latePage = `failover-late-${stamp}.md`;
  try {
    // A run that took its snapshot after everything above was written (a run already going when
    // the files were written ends with a snapshot that lacks them).
    const writtenBy = Number(await run(oldHost, "date +%s")) + 1;
    await waitFor(
      "a replication run that took its snapshot after the files were written",
      2 * replica.interval + 180,
      async () => (await statusOf()).at > writtenBy,
    );
    const { replicated } = await statusOf();
    await run(oldHost, `echo late-${stamp} > ${remoteRoot}/${latePage}`);
    await waitFor(`${latePage} on ${s.host}`, 2 * s.interval + 30, async () => {
      return (await onHost(s.host, `test -f ${s.local}/${latePage}`, { allowFail: true })).code === 0;
    });
    lateStatus = (await statusOf()).replicated;
    expect({ replicatedSince: lateStatus !== replicated }).toEqual({ replicatedSince: false });
  } finally {
    // The export host's side of the loss: the pool goes (its sftp sessions with it), the writer stops.
    // The sessions' PIDs are looked up and stopped in one script, so none can end and be reused in
    // between. A stopped session lets go of the dataset only once it has exited, and the clients'
    // sshfs reconnect at once: the sessions are stopped and the pool destroyed again until the
    // destroy finds it free (the loss is the moment it went).
    const destroyed = await run(
      oldHost,
      `for attempt in $(seq 100); do
  pids=$(pgrep -u ${e.user} || true)
  # shellcheck disable=SC2086 # one PID per word
  [ -z "$pids" ] || kill -KILL $pids || true
  if zpool destroy -f ${e.pool.name} 2> /var/tmp/${writerUnit}.destroy; then
    break
  fi
  if [ "$attempt" = 100 ]; then
    cat /var/tmp/${writerUnit}.destroy >&2
    fuser -vm ${e.mountpoint} >&2 || true
    exit 1
  fi
  sleep 0.2
done
date +%s%3N > /var/tmp/${writerUnit}.lost
echo "pool ${e.pool.name} destroyed at attempt $attempt"
systemctl stop ${writerUnit}`,
    );
    process.stdout.write(`failover: ${destroyed}`);
  }
  // No run ended between the late page and the loss: the replica never got it.
  expect((await statusOf()).replicated).toBe(lateStatus);
  const lostAt = Number(await run(oldHost, `cat /var/tmp/${writerUnit}.lost`));
  const lossStarted = Date.now();
  phase("failover: written, replicated, pool lost");

  // While the export is gone the sync refuses to run, and the client keeps every file.
  const localBefore = (await run(s.host, `cd ${s.local} && find . -type f | sort`)).split("\n");
  const refused = await onHost(s.host, `systemctl start ${syncService}`, { allowFail: true });
  expect(refused.code).not.toBe(0);
  expect(await run(s.host, `cd ${s.local} && find . -type f | sort`)).toBe(localBefore.join("\n"));

  // The promotion: a config change and a converge.
  const promoted = promote(config, e.name, newHost);
  const t0 = Date.now();
  const result = await engine.converge(promoted, adminKey);
  const convergeSeconds = (Date.now() - t0) / 1000;
  config = promoted;
  plan = planFleet(config);
  process.stdout.write(
    `failover converge: ${convergeSeconds.toFixed(0)}s, created ${result.created.length}, updated ${result.updated.length}, deleted ${result.deleted.length}\n`,
  );

  // The replica is the export now: mounted, writable, with every replicated file as written.
  expect(await run(newHost, `zfs get -H -o property,value canmount,readonly,mounted ${replica.target}`)).toBe(
    "canmount\ton\nreadonly\toff\nmounted\tyes\n",
  );
  expect(await run(newHost, `${sha(dir)}`)).toBe(written);
  expect(await run(newHost, `cat ${e.mountpoint}/${EXPORT_SENTINEL}`)).toMatch(
    new RegExp(`^${e.name}\\ndataset ${replica.target} guid \\d+\\n$`),
  );
  // Its receive step is gone and let go of its hold: the snapshots are the export's to prune.
  expect(
    await run(
      newHost,
      `zfs list -H -t snapshot -o name -d 1 ${replica.target} | xargs -r zfs holds -H | cut -f2`,
    ),
  ).toBe("");

  // The data lost: what was written after the newest snapshot the replica had, measured.
  const kept = (await run(newHost, `ls ${seqDir}`)).split("\n").filter(Boolean).map(Number);
  const logged = (await run(oldHost, `cat ${writerLog}`)).split("\n").filter(Boolean).map(Number);
  const newestKept = Math.max(...kept);
  const lost = logged.filter((t) => t > newestKept);
  const lossSeconds = (lostAt - newestKept) / 1000;
  // How long the replication runs took (every run that ended since the check began).
  const runs = runDurations(
    await run(
      oldHost,
      `journalctl -u ${replicateService} -o short-unix --no-pager --since @${Math.floor(stamp / 1000)} | grep -E 'systemd\\[1\\]: (Starting|Finished|Failed to start) ' || true`,
    ),
  ).durations;
  const runSeconds = Math.max(...runs);
  process.stdout.write(
    `failover: ${logged.length} writes, ${kept.length} on the replica, ${lost.length} lost: the last ${lossSeconds.toFixed(1)}s before the loss (interval ${replica.interval}s; the ${runs.length} runs since the check began took ${runs.map((r) => r.toFixed(1)).join(", ")}s); promoted ${((Date.now() - lossStarted) / 1000).toFixed(0)}s after the loss\n`,
  );
  expect(kept.every((t) => logged.includes(t))).toBe(true);
  // At most one interval (or a run, when runs take longer) plus the run in flight, which the loss
  // cut short: the longest run stands in for both, with a second for the timer's accuracy.
  expect(runs.length).toBeGreaterThan(0);
  expect(lossSeconds).toBeLessThanOrEqual(Math.max(replica.interval, runSeconds) + runSeconds + 1);

  // The client's mount follows the export; the next sync merges instead of deleting, and brings back
  // the page the replica never got.
  expect(await run(s.host, `cat ${sync.remote.mount.mount.path}/${EXPORT_SENTINEL}`)).toContain(
    `dataset ${replica.target} guid`,
  );
  // Whichever ran first after the promotion (the converge's install of the sync, its watcher, its
  // timer) found the other copy and moved unison's archives aside, once.
  await run(s.host, `systemctl start ${syncService}`);
  expect(
    (await run(s.host, `ls ${stateDir(s.name)}`))
      .split("\n")
      .filter((f) => f.startsWith("replaced-archives-")),
  ).toHaveLength(1);
  expect(await run(s.host, `cat ${stateDir(s.name)}/export-dataset`)).toMatch(
    new RegExp(`^dataset ${replica.target} guid \\d+\\n$`),
  );
  const localAfter = await run(s.host, `cd ${s.local} && find . -type f | sort`);
  if (localAfter !== localBefore.join("\n")) {
    // What ran on the client and happened to the new export's dataset since the loss.
    const since = `--since @${Math.floor(lostAt / 1000)}`;
    const units = syncUnitNames(s.name);
    process.stdout.write(
      `failover: the client's files changed after the promotion. Its sync since the loss:\n${await run(
        s.host,
        `journalctl -u ${units.service} -u ${units.watch} -u ${units.remoteWatch} -u ${mountUnitNames(sync.remote.mount.mount.path).mount} -o short-precise --no-pager ${since} | tail -250; ls -la ${stateDir(s.name)}; tail -120 ${stateDir(s.name)}/unison.log`,
      )}\n${newHost}'s pool since the loss:\n${await run(
        newHost,
        `zpool history -il ${replica.target.split("/")[0]} | tail -60; journalctl -o short-precise --no-pager ${since} -g 'swarm|zfs|mount' | tail -120`,
      )}\n`,
    );
  }
  expect(localAfter).toBe(localBefore.join("\n"));
  const newRoot = normalizePath(`${e.mountpoint}/${sync.remote.path}`);
  expect(await run(newHost, `cat ${newRoot}/${latePage} ${newRoot}/${clientPage}`)).toBe(
    `late-${stamp}\nclient-${stamp}\n`,
  );
  // And it goes on both ways on its timer.
  expect(await isActive(s.host, syncTimer)).toBe("active");
  await run(newHost, `echo after-${stamp} > ${newRoot}/failover-after-${stamp}.md`);
  await run(
    s.host,
    `echo local-after-${stamp} > ${s.local}/failover-local-after-${stamp}.md && chown ${s.user}: ${s.local}/failover-local-after-${stamp}.md`,
  );
  await waitFor("the sync both ways after the failover", 2 * s.interval + 30, async () => {
    const there = await onHost(newHost, `cat ${newRoot}/failover-local-after-${stamp}.md`, {
      allowFail: true,
    });
    const here = await onHost(s.host, `cat ${s.local}/failover-after-${stamp}.md`, { allowFail: true });
    return there.stdout === `local-after-${stamp}\n` && here.stdout === `after-${stamp}\n`;
  });
  for (const host of [newHost, s.host]) {
    const gate = await onHost(host, `${HEALTH_PROGRAM_PATH} gate`, { allowFail: true });
    expect({ host, gate: gate.code, out: gate.code === 0 ? "" : `${gate.stdout}${gate.stderr}` }).toEqual({
      host,
      gate: 0,
      out: "",
    });
  }
  phase("failover: promoted");

  // The old host comes back with its pool (here: the destroyed pool imported again), holding what was
  // written after the last replication. Declared as the new replica over it, swarm refuses.
  await run(oldHost, `zpool import -D -f ${e.pool.name} >/dev/null`);
  expect(await run(oldHost, `cat ${remoteRoot}/${latePage}`)).toBe(`late-${stamp}\n`);
  const back = (from: FleetConfig): FleetConfig => ({
    ...from,
    exports: from.exports.map((x) =>
      x.name !== e.name
        ? x
        : {
            ...x,
            replicas: [{ ...replicaConfig, host: oldHost, pool: e.pool, dataset: e.dataset }],
          },
    ),
  });
  // The runbook keeps the writes first: the files changed since the newest snapshot both sides
  // have, copied into the new export beside the live ones.
  const changed = await run(
    oldHost,
    `zfs diff -H -F ${e.dataset}@${lateStatus} ${e.dataset} | awk -F '\\t' '($1 == "+" || $1 == "M") && $2 == "F" { print $3 }' | sort`,
  );
  expect(changed).toContain(`${remoteRoot}/${latePage}`);
  expect(changed.split("\n").filter((l) => l.startsWith(`${seqDir}/`)).length).toBe(lost.length);
  const rescued = `${e.mountpoint}/recovered-${stamp}`;
  const archive = await run(
    oldHost,
    `zfs diff -H -F ${e.dataset}@${lateStatus} ${e.dataset} | awk -F '\\t' '($1 == "+" || $1 == "M") && $2 == "F" { print $3 }' |
  sed 's|^${e.mountpoint}/||' | tar -C ${e.mountpoint} -czf - -T - | base64 -w0`,
  );
  await run(
    newHost,
    `install -d ${rescued} && echo ${archive.trim()} | base64 -d | tar -C ${rescued} -xzf -`,
  );
  expect(await run(newHost, `ls ${rescued}/${seqDir.slice(e.mountpoint.length + 1)} | wc -l`)).toBe(
    `${lost.length}\n`,
  );
  await expect(engine.converge(back(config), adminKey)).rejects.toThrow(
    new RegExp(`${e.dataset} exists and is writable, so it is not a replica of export ${e.name}`),
  );
  // Then renamed away, kept, and the converge makes the old host the new replica.
  await run(oldHost, `zfs rename ${e.dataset} ${e.dataset}-before-failover-${stamp}`);
  const withReplica = back(config);
  await engine.converge(withReplica, adminKey);
  config = withReplica;
  plan = planFleet(config);
  await run(newHost, `systemctl start ${replicateUnitName(e.name, oldHost, "service")}`);
  const status = await run(newHost, `cat ${senderFiles(e.name, oldHost).status}`);
  expect(status).toMatch(/^result=ok$/m);
  const newest = /^replicated=(.+)$/m.exec(status)?.[1] as string;
  const copy = await run(
    oldHost,
    `d=$(mktemp -d); mount -t zfs ${e.dataset}@${newest} "$d"
(${sha(`"$d"/failover-check`)}); test -f "$d/recovered-${stamp}/${sync.remote.path}/${latePage}" && echo rescued
umount "$d"; rmdir "$d"`,
  );
  expect(copy).toBe(`${written}rescued\n`);
  phase("failover: old host is the new replica");
}, 1_200_000);

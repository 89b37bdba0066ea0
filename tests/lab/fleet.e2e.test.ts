/**
 * The fleet, for real: the lab's systemd hosts are converged by the real
 * program (mock runtime, every remote command run over SSH), then each
 * promise swarm makes is checked on the hosts themselves.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { FleetConfig } from "../../config/types";
import { FleetPlan, planFleet } from "../../config/model";
import { ConvergeResult, LabEngine, sshRun } from "../../lab/engine";
import { KNOWN_HOSTS, LAB_KEY, labConfig, labHosts, labSh, seedHosts } from "../../lab/cli";

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
  const conn = { host: h.existing.address, port: h.existing.port, user: "root", privateKey: adminKey };
  const result = await sshRun(
    conn,
    `bash -c ${quote(`set -euo pipefail\n${script}`)}`,
    undefined,
    KNOWN_HOSTS,
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

const exported = () => config.exports[0];
const wiki = () => config.syncs[0];

beforeAll(async () => {
  if (process.getuid?.() !== 0) {
    throw new Error("the lab suite needs root (network namespaces, systemd-nspawn): run it as root");
  }
  labSh("preflight");
  config = labConfig();
  plan = planFleet(config);
  labSh("up", ...labHosts(config));
  adminKey = fs.readFileSync(LAB_KEY, "utf8");
  seedHosts(config);
  phase("boot lab hosts");
  engine = new LabEngine({ knownHosts: KNOWN_HOSTS, progress: (l) => process.stdout.write(`${l}\n`) });
  first = await engine.converge(config, adminKey);
  phase("first converge");
}, 900_000);

afterAll(() => {
  try {
    labSh("down");
  } finally {
    phase("lab down");
    process.stdout.write(
      `\nlab phases:\n${phases.map(([n, s]) => `  ${n.padEnd(40)} ${s.toFixed(1)}s`).join("\n")}\n`,
    );
  }
}, 300_000);

test("the first converge ran every command once", () => {
  expect(first.created.length).toBeGreaterThan(0);
  expect(new Set(first.created).size).toBe(first.created.length);
  expect(first.unchanged).toEqual([]);
});

test("1. every pair of peers has a recent handshake and pings over the mesh", async () => {
  for (const host of plan.hosts) {
    for (const peer of host.peers) {
      const address = plan.byName.get(peer.name)!.meshAddress;
      const ping = await onHost(host.name, `ping -c 3 -i 0.2 -W 2 ${address}`, { allowFail: true });
      if (ping.code !== 0) {
        throw new Error(`${host.name} cannot ping ${peer.name} at ${address} over wg0:\n${ping.stdout}`);
      }
      const key = await run(peer.name, "wg show wg0 public-key");
      const handshakes = await run(host.name, "wg show wg0 latest-handshakes");
      const line = handshakes.split("\n").find((l) => l.startsWith(key.trim()));
      const at = Number(line?.split("\t")[1] ?? 0);
      const now = Number((await run(host.name, "date +%s")).trim());
      if (!(at > 0 && now - at < 180)) {
        throw new Error(`${host.name} has no recent handshake with ${peer.name} (latest ${at}, now ${now})`);
      }
    }
  }
  phase("check mesh");
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
  await run(e.host, `test -f ${e.mountpoint}/.swarm-meshfs`);
  phase("check dataset");
});

test("3. first access mounts the export through the automount unit", async () => {
  const e = exported();
  const probe = `probe-${Date.now()}`;
  await run(e.host, `echo hello-from-${e.host} > ${e.mountpoint}/${probe}`);
  for (const mount of config.mounts) {
    const unit = (await run(mount.host, `systemd-escape --path --suffix=automount ${mount.path}`)).trim();
    expect((await run(mount.host, `systemctl is-active ${unit}`)).trim()).toBe("active");
    const content = await run(mount.host, `cat ${mount.path}/${probe}`);
    if (content.trim() !== `hello-from-${e.host}`) {
      throw new Error(`${mount.host}: ${mount.path}/${probe} reads ${JSON.stringify(content)}`);
    }
    // The automount's autofs stays underneath; the sshfs mount sits on top of it.
    const stacked = await run(mount.host, `findmnt -n -o FSTYPE --mountpoint ${mount.path}`);
    expect(stacked.trim().split("\n")).toEqual(["autofs", "fuse.sshfs"]);
  }
  await run(e.host, `rm -f ${e.mountpoint}/${probe}`);
  phase("check automount");
});

/** The path of the sync's remote root as seen on the export host. */
function remoteRootOnServer(): { host: string; dir: string } {
  const s = wiki();
  const mount = config.mounts.find((m) => m.host === s.host && s.remote.mountPath!.startsWith(m.path))!;
  const e = config.exports.find((x) => x.name === mount.export)!;
  return { host: e.host, dir: `${e.mountpoint}${s.remote.mountPath!.slice(mount.path.length)}` };
}

const syncUnit = () => `swarm-sync-${wiki().name}`;

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
  await run(s.host, `systemctl stop ${syncUnit()}.timer`);
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
    await run(s.host, `systemctl start ${syncUnit()}.timer`);
  }
  phase("check conflict");
});

test("6. with the tunnel blocked, a sync run deletes nothing and fails", async () => {
  const s = wiki();
  const remote = remoteRootOnServer();
  const server = plan.byName.get(remote.host)!.meshAddress;
  const mount = config.mounts.find((m) => m.host === s.host)!;
  const mountUnit = (await run(s.host, `systemd-escape --path --suffix=mount ${mount.path}`)).trim();
  const listLocal = `cd ${s.local} && find . -path ./.unison -prune -o -print | sort`;
  const listRemote = `cd ${remote.dir} && find . -print | sort`;
  await run(s.host, `systemctl stop ${syncUnit()}.timer; systemctl stop ${mountUnit} || true`);
  const before = [await run(s.host, listLocal), await run(remote.host, listRemote)];
  await run(s.host, `ip rule add to ${server} prohibit priority 100`);
  try {
    const attempt = await onHost(s.host, `systemctl start ${syncUnit()}.service`, { allowFail: true });
    expect(attempt.code).not.toBe(0);
    const state = await run(s.host, `systemctl show -p ActiveState,Result ${syncUnit()}.service`);
    expect(state).toMatch(/ActiveState=failed|Result=(?!success)/);
  } finally {
    await run(s.host, `ip rule del to ${server} prohibit priority 100`);
  }
  const after = [await run(s.host, listLocal), await run(remote.host, listRemote)];
  expect(after).toEqual(before);
  await run(s.host, `systemctl reset-failed ${syncUnit()}.service; systemctl start ${syncUnit()}.timer`);
  phase("check blocked tunnel");
});

test("7. the sftp-only user gets no shell, no forwarding, and nothing from outside the mesh", async () => {
  const e = exported();
  const client = e.clients[0];
  const server = plan.byName.get(e.host)!;
  const underlay = config.hosts.find((h) => h.name === e.host)!.existing!.address;
  const ssh = (target: string, extra: string) =>
    `ssh -F /dev/null -i /etc/swarm/meshfs/${e.name}.key -o IdentitiesOnly=yes -o BatchMode=yes ` +
    `-o UserKnownHostsFile=/etc/swarm/meshfs/${e.name}.known_hosts -o HostKeyAlias=swarm-${e.name} ` +
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
function status(): { code: number; out: string } {
  const result = spawnSync("npx", ["tsx", "scripts/status.ts", "lab"], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
    timeout: 120_000,
  });
  return { code: result.status ?? 1, out: `${result.stdout}${result.stderr}` };
}

test("health: the gate passes on every host and status shows a healthy fleet", async () => {
  for (const host of plan.hosts) {
    const gate = await onHost(host.name, "/usr/local/lib/swarm/swarm-health gate", { allowFail: true });
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
  await run(hub.name, "systemctl stop wg-quick@wg0");
  try {
    const gate = await onHost(spoke.name, "/usr/local/lib/swarm/swarm-health gate", { allowFail: true });
    expect(gate.code).not.toBe(0);
    expect(`${gate.stdout}${gate.stderr}`).toContain(
      `FAIL ${spoke.name} peer ${hub.name} (${hub.meshAddress})`,
    );
    const broken = status();
    process.stdout.write(`\nnpm run status -- lab (${hub.name} WireGuard stopped):\n${broken.out}\n`);
    expect(broken.code).not.toBe(0);
  } finally {
    await run(hub.name, "systemctl start wg-quick@wg0");
  }
  // The tunnels come back on their own: every spoke answers again within the gate's wait.
  for (const host of plan.hosts) {
    await run(host.name, "/usr/local/lib/swarm/swarm-health gate >/dev/null");
  }
  phase("health gate (hub WireGuard stopped)");
});

test("8. converging again changes nothing", async () => {
  const again = await engine.converge(config, adminKey);
  expect(again.created).toEqual([]);
  expect(again.deleted).toEqual([]);
  expect(again.unchanged.length).toBe(first.created.length);
  phase("second converge (no-op)");
});

test("9. a fourth host joins the mesh while existing tunnels lose no packet", async () => {
  const grown: FleetConfig = {
    ...config,
    hosts: [
      ...config.hosts,
      {
        ...config.hosts[1],
        name: "edge",
        meshAddress: undefined,
        existing: { address: "10.231.0.14", user: "root", port: 22 },
      },
    ],
  };
  const [a, b] = [plan.hosts[0], plan.hosts[0].peers[0]];
  const target = plan.byName.get(b.name)!.meshAddress;
  await run(
    a.name,
    `rm -f /run/swarm-ping.*; nohup ping -i 0.2 ${target} > /run/swarm-ping.log 2>&1 & echo $! > /run/swarm-ping.pid`,
  );
  try {
    labSh("up", "edge=10.231.0.14");
    config = grown;
    seedHosts(grown);
    const result = await engine.converge(grown, adminKey);
    expect(result.created.some((n) => n.includes("edge"))).toBe(true);
    plan = planFleet(grown);
    const edge = plan.byName.get("edge")!;
    for (const peer of edge.peers) {
      await run("edge", `ping -c 3 -i 0.2 -W 2 ${plan.byName.get(peer.name)!.meshAddress}`);
    }
  } finally {
    await run(a.name, `kill -INT "$(cat /run/swarm-ping.pid)"; sleep 1`);
  }
  const stats = await run(a.name, "cat /run/swarm-ping.log");
  const match = /(\d+) packets transmitted, (\d+) received/.exec(stats);
  if (!match || match[1] !== match[2] || Number(match[1]) < 10) {
    throw new Error(
      `${a.name} → ${b.name} lost packets while edge joined:\n${stats.split("\n").slice(-4).join("\n")}`,
    );
  }
  phase("add a fourth host");
});

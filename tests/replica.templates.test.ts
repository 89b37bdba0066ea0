/**
 * The replica templates: golden files for the production stack's replica
 * (meshfs from anchor to hetzner-native), the units through
 * `systemd-analyze verify`, the sshd drop-in through sshd itself, and the
 * scripts through bash -n. The programs themselves run in
 * replicaScripts.test.ts; the whole path runs in the lab (check 2d).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { LOCKED_SETTINGS, lockedSessionOf, SshdHarness } from "./sshdHarness";
import { loadStack } from "../config/load";
import { planFleet } from "../config/model";
import { stepsOf } from "../config/plan";
import {
  receiveConf,
  receiveScript,
  receiveTeardownScript,
  replicaAuthorizedKeys,
  replicaDropin,
  replicaKnownHosts,
  replicateService,
  replicateTimer,
  sendConf,
  sendKeyScript,
  sendScript,
  sendTeardownScript,
} from "../templates/replica";
import { commandRecord } from "../templates/scrub";

const SENDER_KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBOMk2m3P5kvZVxkqHxwZ6gQp4fV2Hn1lqMZk9bD3LgW swarm-meshfs@anchor";
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF6NX6jWXUNMpFM8Ffg3wvvMI/9ABsWk6Bt3gKyAdPGr";

const { config } = loadStack("prod", { dir: path.join(__dirname, "..") });
const [step] = stepsOf(planFleet(config).steps, "replica");
const plan = step.replica;
const record = commandRecord(`${step.name}-receive`);

test("the production stack keeps a replica of meshfs on hetzner-native, on its volume", () => {
  expect(step.name).toBe("meshfs-replica-hetzner-native");
  expect(step.usesVolume).toBe(true);
  expect(plan).toMatchObject({
    source: { host: "anchor", meshAddress: "10.8.0.1", dataset: "tank/meshfs/state" },
    host: "hetzner-native",
    target: "backup/meshfs",
    interval: 900,
    maxLag: 3600,
    retention: { frequent: 0, hourly: 48, daily: 30, weekly: 0, monthly: 0 },
  });
});

describe("golden files", () => {
  test.each([
    ["/etc/swarm/replicas/meshfs.conf (replica host)", () => receiveConf(plan)],
    ["/etc/ssh/swarm-authorized-keys/meshfs-replica", () => replicaAuthorizedKeys(plan, SENDER_KEY)],
    ["/etc/ssh/sshd_config.d/swarm-replica-meshfs.conf", () => replicaDropin(plan)],
    ["/etc/swarm/replicas/meshfs.to-hetzner-native.conf (export host)", () => sendConf(plan)],
    ["/etc/swarm/replicas/meshfs.to-hetzner-native.known_hosts", () => replicaKnownHosts(plan, HOST_KEY)],
    [
      "swarm-replicate-meshfs-to-hetzner-native.service",
      () => replicateService(plan, "wg-quick@wg0.service"),
    ],
    ["swarm-replicate-meshfs-to-hetzner-native.timer", () => replicateTimer(plan)],
    ["receive script", () => receiveScript(plan, SENDER_KEY, record)],
    ["receive teardown", () => receiveTeardownScript(plan, record)],
    ["key script", () => sendKeyScript(plan)],
    ["send script", () => sendScript(plan, HOST_KEY, "wg-quick@wg0.service")],
    ["send teardown", () => sendTeardownScript(plan)],
  ])("%s", (_, render) => {
    expect(render()).toMatchSnapshot();
  });

  test("every script parses with bash", () => {
    for (const text of [
      receiveScript(plan, SENDER_KEY, record),
      receiveTeardownScript(plan, record),
      sendKeyScript(plan),
      sendScript(plan, HOST_KEY, "wg-quick@wg0.service"),
      sendTeardownScript(plan),
    ]) {
      const result = spawnSync("bash", ["-n"], { input: text, encoding: "utf8" });
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
    }
  });

  test("the sender's key line is bound to the export host's mesh address and the receive command", () => {
    expect(replicaAuthorizedKeys(plan, SENDER_KEY)).toContain(
      `restrict,from="10.8.0.1/32",command="/usr/local/lib/swarm/zfs-replica-recv meshfs" ${SENDER_KEY.split(" ").slice(0, 2).join(" ")} anchor\n`,
    );
    expect(() => replicaAuthorizedKeys(plan, "ssh-rsa AAAA")).toThrow(/not an ssh-ed25519 public key/);
  });
});

describe("the replica's sshd drop-in, through sshd", () => {
  let sshd: SshdHarness;
  const replicaMesh = plan.meshAddress;

  beforeAll(() => {
    sshd = new SshdHarness("swarm-replica-sshd-");
    sshd.dropin("swarm-replica-meshfs.conf", replicaDropin(plan));
  });

  afterAll(() => sshd.remove());

  const effective = (connection: string) => sshd.effective(connection);

  test("passes sshd -t", () => {
    expect(sshd.check()).toEqual({ status: 0, stderr: "" });
  });

  test("lets the export host in over the mesh for the receive command only, with no forwarding", () => {
    const settings = effective(`user=meshfs-replica,addr=10.8.0.1,laddr=${replicaMesh}`);
    expect(settings.get("denyusers")).toBeUndefined();
    expect(settings.get("forcecommand")).toBe("/usr/local/lib/swarm/zfs-replica-recv meshfs");
    expect(settings.get("authorizedkeysfile")).toBe("/etc/ssh/swarm-authorized-keys/meshfs-replica");
    expect(lockedSessionOf(settings)).toEqual(LOCKED_SETTINGS);
  });

  test.each([
    ["another mesh host", `addr=10.8.0.2,laddr=${replicaMesh}`],
    ["the export host, outside the mesh", "addr=10.8.0.1,laddr=203.0.113.7"],
    ["an address outside the mesh", `addr=198.51.100.9,laddr=${replicaMesh}`],
  ])("refuses the replica user from %s", (_, connection) => {
    expect(effective(`user=meshfs-replica,${connection}`).get("denyusers")).toBe("*");
  });

  test("leaves every other user alone", () => {
    const root = effective(`user=root,addr=10.8.0.2,laddr=${replicaMesh}`);
    expect(root.get("forcecommand")).toBe("none");
    expect(root.get("denyusers")).toBeUndefined();
  });
});

describe("systemd-analyze verify", () => {
  test.each([
    ["swarm-replicate-meshfs-to-hetzner-native.service", replicateService(plan, "wg-quick@wg0.service")],
    ["swarm-replicate-meshfs-to-hetzner-native.timer", replicateTimer(plan)],
  ])("%s has no setting systemd does not know", (name, text) => {
    const dir = mkdtempSync(path.join(tmpdir(), "swarm-replica-units-"));
    try {
      writeFileSync(path.join(dir, name), text);
      // Parsing only: the program and the service the timer names live on the host.
      const result = spawnSync("systemd-analyze", ["verify", "--man=no", path.join(dir, name)], {
        encoding: "utf8",
      });
      expect(result.error).toBeUndefined();
      const output = `${result.stdout}${result.stderr}`;
      expect(
        output.split("\n").filter((l) => /Unknown (key|section)|Failed to parse|Invalid/.test(l)),
      ).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The drift resource as Pulumi would run it: its provider is the text the
 * SDK serialized into its inputs, loaded the way the dynamic provider host
 * loads it, and it reaches the host with an `ssh` that a test puts first on
 * PATH (it records its arguments and prints what swarm-drift would).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { hostDriftProvider, HostDriftInputs } from "../components/hostDrift";
import { LabEngine, RemoteRun, loadSerializedProvider } from "../lab/engine";
import { labConfig, UNBOOTED } from "../lab/fleet";
import { defineFleet } from "../program";
import { installMocks, isWrappedSecret, offlineRunner, settle } from "../offline/mockRuntime";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { DRIFT_PROGRAM_PATH } from "../templates/health";

let bin: string;
let savedPath: string | undefined;
beforeEach(() => {
  bin = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-drift-test-"));
  savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${process.env.PATH}`;
  // What the fake ssh prints (swarm-drift's lines), and where it records its arguments and key mode.
  fs.writeFileSync(
    path.join(bin, "ssh"),
    `#!/bin/bash
printf '%s\\n' "$@" >"${bin}/args"
prev=
for a in "$@"; do
  if [ "$prev" = -i ]; then stat -c %a "$a" >"${bin}/key-mode"; fi
  case $a in UserKnownHostsFile=*) cat "\${a#UserKnownHostsFile=}" >"${bin}/known-hosts" ;; esac
  prev=$a
done
if [ -e "${bin}/refuse" ]; then echo "Host key verification failed." >&2; exit 255; fi
cat "${bin}/drift" 2>/dev/null || true
`,
    { mode: 0o755 },
  );
});
/** The tests reach no host: every ssh the provider starts must be the fake above. */
function expectFakeSsh(): void {
  const which = spawnSync("bash", ["-c", "command -v ssh"], { encoding: "utf8", env: process.env });
  expect(which.stdout.trim()).toBe(path.join(bin, "ssh"));
}

afterEach(() => {
  process.env.PATH = savedPath;
  fs.rmSync(bin, { recursive: true, force: true });
});

const inputs = (user = "root"): HostDriftInputs => ({
  host: "anchor",
  connection: {
    host: "127.0.0.1",
    port: 2222,
    user,
    privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key\n-----END OPENSSH PRIVATE KEY-----",
    hostKey: fixtureHostKey("anchor"),
    dialErrorLimit: 40,
    perDialTimeout: 15,
  },
  program: DRIFT_PROGRAM_PATH,
  after: "h1",
});

describe("the drift provider", () => {
  it("runs swarm-drift over ssh with the host key pinned and the key file private, and parses its lines", async () => {
    expectFakeSsh();
    fs.writeFileSync(
      path.join(bin, "drift"),
      "mesh-anchor-config\tfile\t/etc/wireguard/wg0.conf.public\tcontent changed\n" +
        "meshfs-zfs\tzfs\ttank/meshfs atime\ton, expected off\n",
    );
    const read = await hostDriftProvider.read!("anchor", inputs());
    expect(read.props.drift).toEqual([
      {
        step: "mesh-anchor-config",
        kind: "file",
        item: "/etc/wireguard/wg0.conf.public",
        detail: "content changed",
      },
      { step: "meshfs-zfs", kind: "zfs", item: "tank/meshfs atime", detail: "on, expected off" },
    ]);
    const args = fs.readFileSync(path.join(bin, "args"), "utf8").trim().split("\n");
    expect(args).toContain("StrictHostKeyChecking=yes");
    expect(args).toContain("HostKeyAlias=swarm-drift-anchor");
    expect(args).toContain("HostKeyAlgorithms=ssh-ed25519");
    expect(args.slice(-2)).toEqual(["root@127.0.0.1", DRIFT_PROGRAM_PATH]);
    expect(args[args.indexOf("-p") + 1]).toBe("2222");
    expect(fs.readFileSync(path.join(bin, "key-mode"), "utf8")).toBe("600\n");
    expect(fs.readFileSync(path.join(bin, "known-hosts"), "utf8")).toBe(
      `swarm-drift-anchor ${fixtureHostKey("anchor")}\n`,
    );
  });

  it("runs it through sudo for a user other than root, and reads no drift as an empty list", async () => {
    const read = await hostDriftProvider.read!("anchor", inputs("admin"));
    expect(read.props.drift).toEqual([]);
    const args = fs.readFileSync(path.join(bin, "args"), "utf8").trim().split("\n");
    expect(args.slice(-2)).toEqual(["admin@127.0.0.1", `sudo -n ${DRIFT_PROGRAM_PATH}`]);
  });

  it("fails naming the host and what ssh said when the host cannot be asked", async () => {
    fs.writeFileSync(path.join(bin, "refuse"), "");
    await expect(hostDriftProvider.read!("anchor", inputs())).rejects.toThrow(
      "cannot read the drift of anchor (root@127.0.0.1:2222): Host key verification failed.",
    );
  });

  it("reads again only when the host, its connection, the program or what ran there changed", async () => {
    const diff = hostDriftProvider.diff!;
    const before = { ...inputs(), drift: [{ step: "x", kind: "file", item: "/x", detail: "missing" }] };
    expect((await diff("anchor", before, inputs())).changes).toBe(false);
    expect((await diff("anchor", before, { ...inputs(), after: "h2" })).changes).toBe(true);
    expect((await diff("anchor", before, inputs("admin"))).changes).toBe(true);
  });
});

describe("the drift resource in a fleet", () => {
  it("carries its provider as the text the SDK serialized, which loads as the dynamic provider host loads it", async () => {
    const mocks = await installMocks(offlineRunner, "lab");
    await defineFleet(labConfig("lab", UNBOOTED), { sshPrivateKey: pulumi.secret("not-a-key") });
    await settle();
    const drifts = mocks.resources.filter((r) => r.type === "pulumi-nodejs:dynamic/swarm:HostDrift");
    expect(drifts.map((r) => r.name).sort()).toEqual([
      "anchor-health-drift",
      "hetzner-native-health-drift",
      "satellite-health-drift",
    ]);
    for (const r of drifts) {
      // The connection carries the admin key: secret in the inputs (and in the outputs, additionalSecretOutputs).
      expect(isWrappedSecret(r.inputs.connection)).toBe(true);
    }
    const text = drifts[0].plain.__provider;
    expect(typeof text).toBe("string");
    expect(new Set(drifts.map((r) => r.plain.__provider)).size).toBe(1);
    // Loaded as the provider host loads it: every method the engine calls is there, and diff runs
    // (the methods that reach a host are exercised on the lab's hosts).
    const provider = loadSerializedProvider(text as string);
    expect(Object.keys(provider).sort()).toEqual(["create", "diff", "read", "update"]);
    expect(await provider.diff!("anchor", inputs(), { ...inputs(), after: "h2" })).toEqual({ changes: true });
    expect(text).toContain("swarm-drift-");
  });

  it("is created by a converge, left alone by the next, and a refresh shows what it reads", async () => {
    const run: RemoteRun = async (_c, script) => ({
      code: 0,
      stdout: script.includes("-f1,2") ? (await offlineRunner("meshfs-hostkey")).stdout : "",
      stderr: "",
    });
    expectFakeSsh();
    const loaded: string[] = [];
    const engine = new LabEngine({
      run,
      // The serialized provider is the one this test imports (and whose ssh is the fake).
      loadProvider: (text) => {
        loaded.push(text);
        expect(loadSerializedProvider(text).diff).toBeDefined();
        return hostDriftProvider;
      },
    });
    const config = labConfig("lab", UNBOOTED);
    const first = await engine.converge(config, "not-a-key");
    expect(first.created).toEqual(expect.arrayContaining(["anchor-health-drift", "satellite-health-drift"]));
    expect(loaded).toHaveLength(1);
    const again = await engine.converge(config, "not-a-key");
    expect([...again.created, ...again.updated]).toEqual([]);
    expect(again.unchanged).toContain("anchor-health-drift");
    expect(await engine.refresh()).toEqual([]);

    fs.writeFileSync(
      path.join(bin, "drift"),
      "hetzner-native-wiki-sync-units\tunit\tswarm-sync-wiki.timer\tdisabled\n",
    );
    const changes = await engine.refresh();
    expect(changes.map((c) => c.name).sort()).toEqual([
      "anchor-health-drift",
      "hetzner-native-health-drift",
      "satellite-health-drift",
    ]);
    expect(changes[0].before.drift).toEqual([]);
    expect(changes[0].after.drift).toEqual([
      {
        step: "hetzner-native-wiki-sync-units",
        kind: "unit",
        item: "swarm-sync-wiki.timer",
        detail: "disabled",
      },
    ]);
    // A refresh changes outputs only: the converge after it runs nothing.
    const after = await engine.converge(config, "not-a-key");
    expect([...after.created, ...after.updated, ...after.deleted]).toEqual([]);
  });
});

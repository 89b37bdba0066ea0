/**
 * The program as `pulumi up` runs it: index.ts reads the stack config through
 * Pulumi, validates it, and either wires the fleet or stops before a single
 * resource is registered.
 */
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { readStackFile } from "../config/load";
import { installMocks, MockFleet, promiseOf, settle } from "../offline/mockRuntime";

/** The stack outputs the program resolves to. */
type Program = Awaited<ReturnType<typeof import("../index")>>;

/**
 * Loads index.ts afresh under mocks with `raw` as the `swarm:` config, as
 * `pulumi preview` runs it (the example stacks hold documentation
 * placeholders, which only an up refuses), or as `pulumi up`.
 */
async function runIndex(
  raw: Record<string, unknown>,
  run: "preview" | "up" = "preview",
): Promise<{ mocks: MockFleet; program?: Program; error?: unknown }> {
  const mocks = await installMocks(undefined, "prod", run === "preview");
  const config: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    config[`swarm:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  }
  config["swarm:sshPrivateKey"] =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n(test)\n-----END OPENSSH PRIVATE KEY-----\n";
  pulumi.runtime.setAllConfig(config, ["swarm:sshPrivateKey"]);
  let main: (() => Promise<Program>) | undefined;
  let program: Program | undefined;
  let error: unknown;
  jest.isolateModules(() => {
    try {
      // index.ts validates the config when loaded, so it must be required inside the isolated registry.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      main = require("../index") as () => Promise<Program>;
    } catch (e) {
      error = e;
    }
  });
  // What the SDK's runner does with an exported function: call it and await its outputs.
  try {
    program = await main?.();
  } catch (e) {
    error = e;
  }
  await settle();
  return { mocks, program, error };
}

const prod = () => readStackFile(path.join(__dirname, "..", "Pulumi.prod.yaml")).raw;

test("the prod stack exports every host's mesh address, public key and endpoint, and the topology", async () => {
  const { program, error } = await runIndex(prod());
  expect(error).toBeUndefined();
  const hosts = program!.hosts;
  expect(Object.keys(hosts).sort()).toEqual(["anchor", "hetzner-native", "satellite"]);
  expect(hosts.anchor.meshAddress).toBe("10.8.0.1");
  expect(await promiseOf(hosts.anchor.publicKey)).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  expect(await promiseOf(hosts.satellite.endpoint)).toMatch(/^\d+\.\d+\.\d+\.\d+:51820$/);
  expect(program!.topology).toMatch(/^flowchart LR\n/);
  expect(program!.topology).toContain("exports meshfs");
});

test("the admin private key reaches the program as a secret", async () => {
  const { mocks } = await runIndex(prod());
  const bootstrap = mocks.named("anchor-bootstrap");
  const connection = bootstrap.inputs.connection;
  // The whole connection is wrapped as a secret by the runtime because it holds the key.
  expect(JSON.stringify(connection)).toContain("4dabf18193072939515e22adb298388d");
});

test("an up refuses the example stack's placeholders before any resource is registered; a preview shows it", async () => {
  const { mocks, error } = await runIndex(prod(), "up");
  expect(error).toBeInstanceOf(Error);
  const message = (error as Error).message;
  expect(message).toContain("swarm:admin.sshPublicKey");
  expect(message).toContain("swarm:admin.sshSourceCidrs[0]");
  expect(mocks.resources).toEqual([]);

  const raw = prod() as Record<string, Record<string, unknown>>;
  const own = {
    ...raw,
    admin: {
      sshPublicKey:
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKcfp+1S8cYF6Qy1B16GvSNtOm1B2oXyoh0BB/Ghtl3x ops@example",
      sshSourceCidrs: ["185.12.64.0/24"],
    },
  };
  const deployed = await runIndex(own, "up");
  expect(deployed.error).toBeUndefined();
  expect(deployed.mocks.resources.length).toBeGreaterThan(20);
});

test("bad config stops the program with every error before any resource is registered", async () => {
  const raw = prod() as Record<string, unknown>;
  const hosts = raw.hosts as Record<string, unknown>[];
  const broken = {
    ...raw,
    hosts: [...hosts, { ...hosts[1], meshAddress: "10.8.0.1" }],
    mesh: { ...(raw.mesh as object), listenPort: 70000 },
    mounts: [...(raw.mounts as object[]), { host: "nowhere", export: "meshfs", path: "etc" }],
  };
  const { mocks, error } = await runIndex(broken);
  expect(error).toBeInstanceOf(Error);
  const message = (error as Error).message;
  expect(message).toContain("swarm:hosts[3].name");
  expect(message).toContain("swarm:hosts[3].meshAddress");
  expect(message).toContain("swarm:mesh.listenPort");
  expect(message).toContain("swarm:mounts[2]");
  expect(mocks.resources).toEqual([]);
});

describe("SSH host keys are pinned from the first connection", () => {
  test("every remote command of the prod stack carries the host key of the server it runs on", async () => {
    const { mocks } = await runIndex(prod());
    const commands = mocks.resources.filter((r) => r.type === "command:remote:Command");
    expect(commands.length).toBeGreaterThan(20);
    const servers = mocks.resources.filter((r) => r.type === "hcloud:index/server:Server");
    const pinned = new Set<string>();
    for (const c of commands) {
      const connection = c.plain.connection as Record<string, unknown>;
      expect([c.name, connection.hostKey]).toEqual([
        c.name,
        expect.stringMatching(/^ssh-ed25519 [A-Za-z0-9+/]{68}$/),
      ]);
      expect(connection.dialErrorLimit).toBeGreaterThanOrEqual(30);
      pinned.add(`${String(connection.host)} ${String(connection.hostKey)}`);
    }
    // One key per server, each the one its cloud-init user data installs.
    expect(pinned.size).toBe(servers.length);
    for (const server of servers) {
      const userData = server.plain.userData as string;
      const publicLine = /^ {2}ed25519_public: (ssh-ed25519 \S+) root@/m.exec(userData)?.[1];
      expect(publicLine).toBeDefined();
      expect([...pinned].some((p) => p.endsWith(` ${publicLine}`))).toBe(true);
    }
  });

  test("the host private keys are secret in the servers' user data, and the public ones are exported in the clear", async () => {
    const { mocks, program } = await runIndex(prod());
    for (const server of mocks.resources.filter((r) => r.type === "hcloud:index/server:Server")) {
      expect(server.plain.userData).toContain("-----BEGIN OPENSSH PRIVATE KEY-----");
      expect(JSON.stringify(server.inputs.userData)).toContain("4dabf18193072939515e22adb298388d");
    }
    const hostKey = program!.hosts.anchor.hostKey;
    expect(await pulumi.isSecret(hostKey)).toBe(false);
    expect(await promiseOf(hostKey)).toMatch(/^ssh-ed25519 /);
  });

  test("a server created before swarm generated host keys keeps the key pinned in config, and gets no user data", async () => {
    const raw = prod() as Record<string, unknown>;
    const hosts = raw.hosts as Record<string, Record<string, unknown>>[];
    const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKcfp+1S8cYF6Qy1B16GvSNtOm1B2oXyoh0BB/Ghtl3x";
    const pinnedAnchor = { ...hosts[0], hcloud: { ...hosts[0].hcloud, hostKey: key } };
    const { mocks, error } = await runIndex({ ...raw, hosts: [pinnedAnchor, ...hosts.slice(1)] });
    expect(error).toBeUndefined();
    expect(mocks.named("anchor-server").plain.userData).toBeUndefined();
    expect(mocks.resources.some((r) => r.name === "anchor-host-key")).toBe(false);
    expect((mocks.named("anchor-bootstrap").plain.connection as Record<string, unknown>).hostKey).toBe(key);
  });
});

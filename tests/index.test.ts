/**
 * The program as `pulumi up` runs it: index.ts reads the stack config through
 * Pulumi, validates it, and either wires the fleet or stops before a single
 * resource is registered.
 */
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { readStackFile } from "../config/load";
import { installMocks, MockFleet, promiseOf, settle } from "../offline/mockRuntime";

type Program = typeof import("../index");

/** Loads index.ts afresh under mocks with `raw` as the `swarm:` config. */
async function runIndex(
  raw: Record<string, unknown>,
): Promise<{ mocks: MockFleet; program?: Program; error?: unknown }> {
  const mocks = await installMocks(undefined, "prod");
  const config: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    config[`swarm:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  }
  config["swarm:sshPrivateKey"] =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n(test)\n-----END OPENSSH PRIVATE KEY-----\n";
  pulumi.runtime.setAllConfig(config, ["swarm:sshPrivateKey"]);
  let program: Program | undefined;
  let error: unknown;
  jest.isolateModules(() => {
    try {
      // index.ts runs the program when loaded, so it must be required inside the isolated registry.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      program = require("../index") as Program;
    } catch (e) {
      error = e;
    }
  });
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

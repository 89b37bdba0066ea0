import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { HetznerHost } from "../components/hetznerHost";
import { WireGuardKeypair } from "../components/wireguardKeypair";
import { MeshMember, WireGuardMesh } from "../components/wireguardMesh";
import { FleetPlan } from "../config/model";
import { stepsOf } from "../config/plan";
import { FleetConfig } from "../config/types";
import { sha256 } from "../templates/shell";
import {
  PeerIdentity,
  renderWireGuardConfig,
  wireguardApplyScript,
  wireguardConfigValues,
} from "../templates/wireguard";
import { GraphRecorder } from "./graph";
import { FULL_FLEET, HUB_FLEET, plan } from "./meshFixtures";
import { installMocks, MockFleet, promiseOf } from "../offline/mockRuntime";

const ADMIN_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nfake admin key for tests\n-----END OPENSSH PRIVATE KEY-----\n";

interface Evaluation {
  readonly mocks: MockFleet;
  readonly graph: GraphRecorder;
  readonly plan: FleetPlan;
  readonly mesh: WireGuardMesh;
  readonly hosts: ReadonlyMap<string, HetznerHost>;
  readonly keypairs: ReadonlyMap<string, WireGuardKeypair>;
  /** Resolved private and public keys per host. */
  readonly keys: ReadonlyMap<string, { privateKey: string; publicKey: string }>;
}

/** Wires hosts, key pairs and the mesh the way the program does, and waits for every command. */
async function evaluate(config: FleetConfig): Promise<Evaluation> {
  const mocks = await installMocks();
  const graph = new GraphRecorder();
  const root = new pulumi.ComponentResource(
    "test:index:Fleet",
    "fleet",
    {},
    { transformations: [graph.transformation] },
  );
  const fleetPlan = plan(config);
  const sshKey = new hcloud.SshKey("admin", { publicKey: config.admin.sshPublicKey }, { parent: root });
  const hosts = new Map<string, HetznerHost>();
  const keypairs = new Map<string, WireGuardKeypair>();
  const members = new Map<string, MeshMember>();
  for (const host of fleetPlan.hosts) {
    const machine = new HetznerHost(
      host.name,
      {
        step: stepsOf(host.steps, "bootstrap")[0],
        sshKeyId: sshKey.id,
        sshPrivateKey: pulumi.secret(ADMIN_KEY),
        labels: {},
      },
      { parent: root },
    );
    const keypair = new WireGuardKeypair(
      `${host.name}-wg`,
      { rotation: host.config.keyRotation },
      { parent: root },
    );
    hosts.set(host.name, machine);
    keypairs.set(host.name, keypair);
    members.set(host.name, {
      connection: machine.connection,
      user: machine.user,
      endpoint: machine.publicAddress,
      endpoint6: machine.publicAddress6,
      keypair,
      bootstrap: machine.bootstrap,
    });
  }
  const [step] = stepsOf(fleetPlan.steps, "mesh");
  const mesh = await WireGuardMesh.define("mesh", { step, members }, { parent: root });
  await Promise.all([...mesh.members.values()].map((c) => promiseOf(c.stdout)));
  const keys = new Map<string, { privateKey: string; publicKey: string }>();
  for (const [name, keypair] of keypairs) {
    keys.set(name, {
      privateKey: await promiseOf(keypair.privateKey),
      publicKey: await promiseOf(keypair.publicKey),
    });
  }
  return { mocks, graph, plan: fleetPlan, mesh, hosts, keypairs, keys };
}

/** `triggers` of every remote command, by name. */
function triggers(evaluation: Evaluation): Record<string, unknown> {
  return Object.fromEntries(
    evaluation.mocks.ofType("command:remote:Command").map((c) => [c.name, c.inputs.triggers]),
  );
}

function withHost(
  config: FleetConfig,
  name: string,
  change: (h: FleetConfig["hosts"][number]) => object,
): FleetConfig {
  return { ...config, hosts: config.hosts.map((h) => (h.name === name ? { ...h, ...change(h) } : h)) };
}

describe.each([
  { fleet: "hub", config: HUB_FLEET },
  { fleet: "full", config: FULL_FLEET },
])("the $fleet mesh", ({ config }) => {
  let ev: Evaluation;
  beforeAll(async () => {
    ev = await evaluate(config);
  });

  it("has a key and a config command per host, children of the mesh", () => {
    const expected = config.hosts.flatMap((h) => [`mesh-${h.name}-key`, `mesh-${h.name}-config`]);
    expect(ev.graph.childrenOf(ev.mesh)).toEqual(expected);
    expect(ev.graph.named("mesh").type).toBe("swarm:wireguard:Mesh");
    expect([...ev.mesh.members.keys()]).toEqual(config.hosts.map((h) => h.name));
    for (const [name, command] of ev.mesh.members) {
      expect(command).toBe(ev.graph.named(`mesh-${name}-config`).resource);
    }
  });

  it("gives every child of every component its component as parent", () => {
    for (const [name, host] of ev.hosts) {
      expect(ev.graph.childrenOf(host).every((child) => child.startsWith(`${name}-`))).toBe(true);
    }
    for (const [name, keypair] of ev.keypairs) {
      expect(ev.graph.childrenOf(keypair)).toEqual([`${name}-wg-seed`]);
    }
    const components = new Set<pulumi.Resource>([...ev.hosts.values(), ...ev.keypairs.values(), ev.mesh]);
    for (const r of ev.graph.registrations.filter(
      (r) => r.type.startsWith("hcloud:") && r.name !== "admin",
    )) {
      expect(components.has(r.parent as pulumi.Resource)).toBe(true);
    }
    for (const r of ev.graph.registrations.filter((r) => r.type === "command:remote:Command")) {
      expect(components.has(r.parent as pulumi.Resource)).toBe(true);
    }
  });

  it("configures WireGuard only after the host's bootstrap and key", () => {
    const order = ev.mocks.resources.map((r) => r.name);
    for (const host of config.hosts) {
      const configCommand = ev.graph.named(`mesh-${host.name}-config`);
      const key = ev.graph.named(`mesh-${host.name}-key`);
      const bootstrap = ev.hosts.get(host.name)?.bootstrap;
      expect(configCommand.dependsOn).toEqual([key.resource, bootstrap]);
      expect(key.dependsOn).toEqual([bootstrap]);
      expect(order.indexOf(`${host.name}-bootstrap`)).toBeLessThan(order.indexOf(`mesh-${host.name}-key`));
      expect(order.indexOf(`mesh-${host.name}-key`)).toBeLessThan(order.indexOf(`mesh-${host.name}-config`));
    }
  });

  it("keeps every private key secret", async () => {
    for (const [name, keypair] of ev.keypairs) {
      expect(await pulumi.isSecret(keypair.privateKey)).toBe(true);
      expect(await pulumi.isSecret(ev.hosts.get(name)?.connection as pulumi.Output<unknown>)).toBe(true);
      const key = ev.graph.named(`mesh-${name}-key`);
      expect(await pulumi.isSecret(key.props.stdin as pulumi.Output<string>)).toBe(true);
      expect(key.opts.additionalSecretOutputs).toEqual(expect.arrayContaining(["stdout", "stderr"]));
      expect(ev.mocks.named(`mesh-${name}-key`).inputs.logging).toBe("none");
    }
  });

  it("delivers each private key only on the standard input of its host's key command", () => {
    for (const [name, { privateKey }] of ev.keys) {
      for (const resource of ev.mocks.resources) {
        const { stdin, ...rest } = resource.inputs;
        expect(JSON.stringify(rest)).not.toContain(privateKey);
        if (resource.name === `mesh-${name}-key`) {
          // The mock runtime sees the value still wrapped as a secret.
          expect(stdin).toEqual({
            [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig,
            value: `${privateKey}\n`,
          });
        } else {
          expect(JSON.stringify(stdin ?? "")).not.toContain(privateKey);
        }
      }
    }
  });

  it("re-runs the key command exactly when the public key changes", () => {
    for (const [name, { publicKey }] of ev.keys) {
      expect(ev.mocks.named(`mesh-${name}-key`).inputs.triggers).toEqual([sha256(publicKey)]);
    }
  });

  it("pushes the configuration rendered from the plan, resolved keys and public addresses", async () => {
    const identities: Record<string, PeerIdentity> = {};
    for (const [name, host] of ev.hosts) {
      identities[name] = {
        publicKey: ev.keys.get(name)?.publicKey as string,
        endpoint: await promiseOf(host.publicAddress),
        endpoint6: host.publicAddress6 && (await promiseOf(host.publicAddress6)),
      };
    }
    for (const host of ev.plan.hosts) {
      const values = wireguardConfigValues(ev.plan, host.name, identities);
      const publicKey = identities[host.name].publicKey;
      const { inputs } = ev.mocks.named(`mesh-${host.name}-config`);
      const script = wireguardApplyScript({
        host: host.name,
        config: values,
        publicKey,
        implementation: host.config.wireguard,
        forwards: host.forwards,
      });
      expect(inputs.create as string).toContain(script.split("'").join(`'\\''`));
      const hubRouting = host.forwards ? ["hub routing"] : [];
      expect(inputs.triggers).toEqual([
        sha256([renderWireGuardConfig(values), publicKey, host.config.wireguard, ...hubRouting].join("\n")),
      ]);
      expect(inputs.delete as string).toContain("systemctl disable --now --quiet wg-quick@wg0");
    }
  });

  it("exposes every host's public key", async () => {
    for (const [name, { publicKey }] of ev.keys) {
      expect(await promiseOf(ev.mesh.publicKeys.get(name) as pulumi.Output<string>)).toBe(publicKey);
    }
  });

  it("yields identical triggers when the same config is evaluated again", async () => {
    const first = triggers(ev);
    const second = triggers(await evaluate(config));
    expect(second).toEqual(first);
  });
});

describe("a Hetzner server without IPv4 in a hub", () => {
  const sixOnly: FleetConfig = {
    ...HUB_FLEET,
    hosts: HUB_FLEET.hosts.map((h) =>
      h.name === "satellite" && h.hcloud !== undefined ? { ...h, hcloud: { ...h.hcloud, ipv4: false } } : h,
    ),
  };
  let ev: Evaluation;
  beforeAll(async () => {
    ev = await evaluate(sixOnly);
  });
  const endpointsIn = (host: string) =>
    [...(ev.mocks.named(`mesh-${host}-config`).inputs.create as string).matchAll(/^Endpoint = (\S+)$/gm)].map(
      (m) => m[1],
    );

  it("is dialled at its IPv6 address, in brackets, and dials the hub's IPv6 address", async () => {
    const satellite = await promiseOf((ev.hosts.get("satellite") as HetznerHost).publicAddress);
    const anchor = ev.hosts.get("anchor") as HetznerHost;
    expect(satellite).toMatch(/^2001:db8:/);
    expect(endpointsIn("anchor")).toContain(`[${satellite}]:51820`);
    expect(endpointsIn("satellite")).toEqual([
      `[${await promiseOf(anchor.publicAddress6 as pulumi.Output<string>)}]:51820`,
    ]);
  });

  it("leaves the IPv4 endpoints of the other hosts as they were", async () => {
    const anchor = await promiseOf((ev.hosts.get("anchor") as HetznerHost).publicAddress);
    expect(anchor).toMatch(/^203\.0\.113\./);
    for (const host of ev.plan.hosts.filter((h) => h.name !== "anchor" && h.name !== "satellite")) {
      expect(endpointsIn(host.name)).toEqual([`${anchor}:51820`]);
    }
  });
});

describe("a change to one host", () => {
  it.each([
    {
      fleet: "hub",
      config: HUB_FLEET,
      // The hub peers with the satellite; the other spoke routes the satellite's networks to the hub.
      changed: ["mesh-anchor-config", "mesh-hetzner-native-config"],
    },
    {
      fleet: "hub without hub routing",
      config: { ...HUB_FLEET, mesh: { ...HUB_FLEET.mesh, hubRouting: false } },
      // Only the hub peers with the satellite.
      changed: ["mesh-anchor-config"],
    },
    {
      fleet: "full",
      config: FULL_FLEET,
      changed: ["mesh-anchor-config", "mesh-hetzner-native-config", "mesh-lab-1-config"],
    },
  ])("re-runs only the $fleet mesh commands of hosts that peer with it", async ({ config, changed }) => {
    const before = triggers(await evaluate(config));
    const after = triggers(
      await evaluate(withHost(config, "satellite", () => ({ routes: ["10.99.0.0/24"] }))),
    );
    const differing = Object.keys(before).filter(
      (name) => JSON.stringify(before[name]) !== JSON.stringify(after[name]),
    );
    expect(differing.sort()).toEqual(changed);
  });

  it("re-runs the host's key and config commands and its peers' configs when its key rotates", async () => {
    const before = await evaluate(HUB_FLEET);
    const rotated = await evaluate(withHost(HUB_FLEET, "satellite", () => ({ keyRotation: "2025-06" })));
    expect(rotated.mocks.named("satellite-wg-seed").inputs.keepers).toEqual({ rotation: "2025-06" });
    expect(rotated.keys.get("satellite")?.publicKey).not.toBe(before.keys.get("satellite")?.publicKey);
    const [a, b] = [triggers(before), triggers(rotated)];
    const differing = Object.keys(a).filter((name) => JSON.stringify(a[name]) !== JSON.stringify(b[name]));
    expect(differing.sort()).toEqual(["mesh-anchor-config", "mesh-satellite-config", "mesh-satellite-key"]);
  });
});

describe("removing a host", () => {
  it("removes it from every peer list", async () => {
    const full = await evaluate(FULL_FLEET);
    const removedKey = full.keys.get("lab-1")?.publicKey as string;
    const smaller = await evaluate({
      ...FULL_FLEET,
      hosts: FULL_FLEET.hosts.filter((h) => h.name !== "lab-1"),
    });
    const commands = smaller.mocks.ofType("command:remote:Command");
    expect(commands.filter((c) => c.name.includes("lab-1"))).toEqual([]);
    for (const command of commands) {
      expect(command.inputs.create as string).not.toContain(removedKey);
      expect(command.inputs.create as string).not.toContain("# lab-1");
    }
    expect(smaller.mocks.named("mesh-anchor-config").inputs.create as string).toContain("# satellite");
  });
});

/**
 * The CrossGuard pack (policy/): each policy against resources that pass and
 * resources that violate it, built by hand, and against what the real
 * components register under Pulumi's mock runtime.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import fc from "fast-check";
import { unknownCheckingProxy } from "@pulumi/policy";
import { HetznerHost } from "../components/hetznerHost";
import { hostCommand } from "../components/remote";
import { WireGuardKeypair } from "../components/wireguardKeypair";
import { WireGuardMesh } from "../components/wireguardMesh";
import { planFleet } from "../config/model";
import { stepsOf } from "../config/plan";
import { FleetConfig } from "../config/types";
import { evaluatePolicies, ResourceRecord, urnOf, Violation } from "../policy/harness";
import {
  carriesPrivateKey,
  FIREWALL,
  FIREWALL_ATTACHMENT,
  fleetLabels,
  LABELLED_HCLOUD_TYPES,
  MESH_COMPONENT,
  noPlainPrivateKeys,
  noPublicSsh,
  policies,
  portRange,
  REMOTE_COMMAND,
  SERVER,
  stdinIsPrivateKey,
  addressBlock,
  wireguardAllowedIpsDisjoint,
  wireguardPortsOnMeshHosts,
} from "../policy/policies";
import { FULL_FLEET, HUB_FLEET } from "./meshFixtures";
import { installMocks, offlineRunner, settle } from "../offline/mockRuntime";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT } from "../components/remote";

const STACK = "prod";
/**
 * The sentinels a preview sends for values computed during the update. The
 * SDK marks them internal, so they are read from the module that defines them.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const sentinels = require("@pulumi/policy/proxy") as {
  unknownStringValue: string;
  unknownObjectValue: string;
  unknownArrayValue: string;
};
const UNKNOWN_STRING = sentinels.unknownStringValue;
const UNKNOWN_OBJECT = sentinels.unknownObjectValue;
const UNKNOWN_ARRAY = sentinels.unknownArrayValue;

const wireguardKey = (): string => randomBytes(32).toString("base64");
const pemKey = (): string =>
  generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const OPENSSH_KEY = [
  "-----BEGIN OPENSSH PRIVATE KEY-----",
  "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW",
  "QyNTUxOQAAACBFakeKeyMaterialForPolicyTestsOnlyAAAAAAAAAAAAAAAAAAAAAAAA",
  "-----END OPENSSH PRIVATE KEY-----",
  "",
].join("\n");

function record(
  type: string,
  name: string,
  props: Record<string, unknown>,
  extra: Partial<Omit<ResourceRecord, "type" | "name" | "props">> = {},
  stack = STACK,
): ResourceRecord {
  return { type, name, props, urn: urnOf(stack, type, name, extra.parent), ...extra };
}

async function violationsOf(
  policy: (typeof policies)[number],
  records: readonly ResourceRecord[],
): Promise<Violation[]> {
  return evaluatePolicies([policy], records);
}

const LABELS = { fleet: "swarm", stack: STACK, host: "anchor" };
const ADMIN_SSH = { direction: "in", protocol: "tcp", port: "22", sourceIps: ["198.51.100.0/24"] };
const WIREGUARD = { direction: "in", protocol: "udp", port: "51820", sourceIps: ["0.0.0.0/0", "::/0"] };
const firewall = (rules: unknown[], name = "anchor-firewall") =>
  record(FIREWALL, name, { labels: LABELS, rules });

describe("no-public-ssh", () => {
  it.each([
    ["SSH from the admin network only", [ADMIN_SSH]],
    [
      "WireGuard and ICMP from anywhere",
      [WIREGUARD, { direction: "in", protocol: "icmp", sourceIps: ["0.0.0.0/0"] }],
    ],
    [
      "HTTPS from anywhere",
      [{ direction: "in", protocol: "tcp", port: "443", sourceIps: ["0.0.0.0/0", "::/0"] }],
    ],
    [
      "a range below 22 from anywhere",
      [{ direction: "in", protocol: "tcp", port: "1-21", sourceIps: ["::/0"] }],
    ],
    [
      "outbound SSH anywhere",
      [{ direction: "out", protocol: "tcp", port: "22", destinationIps: ["0.0.0.0/0"] }],
    ],
    [
      "UDP 22 from anywhere (not SSH)",
      [{ direction: "in", protocol: "udp", port: "22", sourceIps: ["0.0.0.0/0"] }],
    ],
  ])("passes a firewall with %s", async (_, rules) => {
    expect(await violationsOf(noPublicSsh, [firewall(rules)])).toEqual([]);
  });

  it.each([
    ["port 22 from 0.0.0.0/0", { port: "22", sourceIps: ["198.51.100.0/24", "0.0.0.0/0"] }, "0.0.0.0/0"],
    ["port 22 from ::/0", { port: "22", sourceIps: ["::/0"] }, "::/0"],
    ["a range containing 22", { port: "20-30", sourceIps: ["0.0.0.0/0"] }, "0.0.0.0/0"],
    ["any port", { port: "any", sourceIps: ["0.0.0.0/0"] }, "0.0.0.0/0"],
    ["no port at all", { sourceIps: ["::/0"] }, "::/0"],
    ["another /0 spelling", { port: "22", sourceIps: ["0::/0"] }, "0::/0"],
  ])("rejects SSH opened on %s", async (_, rule, cidr) => {
    const violations = await violationsOf(noPublicSsh, [
      firewall([WIREGUARD, { direction: "in", protocol: "tcp", description: "ssh", ...rule }]),
    ]);
    expect(violations).toHaveLength(1);
    expect(violations[0].message).toContain(`firewall anchor-firewall rule 1 ("ssh") opens TCP`);
    expect(violations[0].message).toContain(cidr);
    expect(violations[0].message).toContain("swarm:admin.sshSourceCidrs");
  });

  it("leaves a rule whose sources are not known yet to the update, and checks the others", async () => {
    const rules = [
      { direction: "in", protocol: "tcp", port: "22", sourceIps: UNKNOWN_ARRAY },
      { direction: "in", protocol: "tcp", port: "22", sourceIps: ["::/0"] },
    ];
    const violations = await violationsOf(noPublicSsh, [
      record(FIREWALL, "fw", unknownCheckingProxy({ rules })),
    ]);
    expect(violations.map((v) => v.message)).toEqual([
      expect.stringContaining("rule 1 opens TCP 22 (SSH) to ::/0"),
    ]);
  });

  it("ignores resources that are not firewalls", async () => {
    expect(
      await violationsOf(noPublicSsh, [
        record(SERVER, "s", { rules: [{ port: "22", sourceIps: ["0.0.0.0/0"] }] }),
      ]),
    ).toEqual([]);
  });
});

describe("portRange", () => {
  it.each([
    ["22", [22, 22]],
    [" 80-85 ", [80, 85]],
    ["any", [1, 65535]],
    [undefined, [1, 65535]],
    ["ssh", [1, 65535]],
  ] as const)("reads %p as %p", (port, range) => {
    expect(portRange(port)).toEqual(range);
  });
});

describe("fleet-labels", () => {
  it.each([
    ["a server with fleet, stack and host", SERVER, { labels: LABELS }],
    [
      "an SSH key with fleet and stack",
      "hcloud:index/sshKey:SshKey",
      { labels: { fleet: "swarm", stack: STACK } },
    ],
    ["a firewall attachment, which takes no labels", FIREWALL_ATTACHMENT, {}],
    ["a remote command", REMOTE_COMMAND, { create: "true" }],
    [
      "a volume whose labels are not known yet",
      "hcloud:index/volume:Volume",
      unknownCheckingProxy({ labels: UNKNOWN_OBJECT }),
    ],
  ])("passes %s", async (_, type, props) => {
    expect(await violationsOf(fleetLabels, [record(type, "r", props as Record<string, unknown>)])).toEqual(
      [],
    );
  });

  it.each([
    ["no labels at all", SERVER, {}, "fleet=swarm, stack=prod"],
    [
      "the wrong fleet",
      "hcloud:index/volume:Volume",
      { labels: { fleet: "other", stack: STACK } },
      "fleet=swarm",
    ],
    [
      "another stack's label",
      "hcloud:index/firewall:Firewall",
      { labels: { fleet: "swarm", stack: "staging" } },
      "stack=prod",
    ],
    [
      "an empty stack label",
      "hcloud:index/network:Network",
      { labels: { fleet: "swarm", stack: "" } },
      "stack=prod",
    ],
  ])("rejects %s", async (_, type, props, missing) => {
    const violations = await violationsOf(fleetLabels, [record(type, "r", props)]);
    expect(violations).toHaveLength(1);
    expect(violations[0].message).toContain(`lacks the label`);
    expect(violations[0].message).toContain(missing);
  });

  it("lists every @pulumi/hcloud resource whose arguments take labels", () => {
    const root = path.dirname(require.resolve("@pulumi/hcloud/package.json"));
    const labelled: string[] = [];
    for (const file of fs.readdirSync(root).filter((f) => f.endsWith(".d.ts") && !f.startsWith("get"))) {
      const text = fs.readFileSync(path.join(root, file), "utf8");
      const args = /export interface (\w+)Args \{([\s\S]*?)\n\}/.exec(text);
      if (args && /\n {4}labels\?:/.test(args[2])) {
        const cls = (hcloud as unknown as Record<string, { __pulumiType?: string }>)[args[1]];
        labelled.push(cls.__pulumiType as string);
      }
    }
    expect(labelled.length).toBeGreaterThan(10);
    expect([...labelled].sort()).toEqual([...LABELLED_HCLOUD_TYPES].sort());
  });
});

describe("no-plain-private-keys", () => {
  const secretKeyCommand = (stdin: string) =>
    record(
      REMOTE_COMMAND,
      "mesh-anchor-key",
      { create: "bash -c 'install key'", stdin, logging: "none", triggers: ["abc"] },
      { additionalSecretOutputs: ["stdout", "stderr", "connection"] },
    );

  it.each([
    ["a WireGuard key on stdin of a secret command", () => secretKeyCommand(`${wireguardKey()}\n`)],
    ["an SSH key on stdin of a secret command", () => secretKeyCommand(OPENSSH_KEY)],
    [
      "a script that assembles PrivateKey = from a variable",
      () =>
        record(REMOTE_COMMAND, "mesh-anchor-config", { create: "printf 'PrivateKey = %s\\n' \"$wg_key\"" }),
    ],
    [
      "a script that only names the PEM armour",
      () =>
        record(REMOTE_COMMAND, "check", { create: "grep -q -- '-----BEGIN OPENSSH PRIVATE KEY-----' key" }),
    ],
    [
      "a key in the connection, where the provider keeps it secret",
      () =>
        record(REMOTE_COMMAND, "c", {
          connection: { host: "203.0.113.1", privateKey: OPENSSH_KEY },
          create: "true",
        }),
    ],
    ["plain text on stdin", () => record(REMOTE_COMMAND, "c", { create: "cat", stdin: "hello\n" })],
    [
      "a stdin whose value is not known yet",
      () => record(REMOTE_COMMAND, "c", unknownCheckingProxy({ create: "cat", stdin: UNKNOWN_STRING })),
    ],
  ])("passes %s", async (_, make) => {
    expect(await violationsOf(noPlainPrivateKeys, [make()])).toEqual([]);
  });

  it.each([
    ["create", () => ({ create: `cat > /root/.ssh/id <<'EOF'\n${OPENSSH_KEY}EOF\n` })],
    ["update", () => ({ create: "true", update: `echo '${pemKey()}' > key` })],
    [
      "delete",
      () => ({ create: "true", delete: `wg set wg0 private-key <(echo 'PrivateKey = ${wireguardKey()}')` }),
    ],
    [
      "environment",
      () => ({ create: "true", environment: { WG: `[Interface]\nPrivateKey = ${wireguardKey()}\n` } }),
    ],
    ["triggers", () => ({ create: "true", triggers: ["hash", { key: pemKey() }] })],
  ])("rejects a private key in %s, without quoting it", async (field, props) => {
    const made = props();
    const violations = await violationsOf(noPlainPrivateKeys, [record(REMOTE_COMMAND, "leaky", made)]);
    expect(violations).toHaveLength(1);
    expect(violations[0].message).toContain(`command leaky carries a private key in ${field}`);
    expect(violations[0].message).not.toMatch(/BEGIN|PrivateKey =/);
  });

  it.each([
    ["logs its output", { logging: "stdoutAndStderr" }, ["stdout", "stderr"], 'logging is "stdoutAndStderr"'],
    ["leaves logging at its default", {}, ["stdout", "stderr"], "logging is not set"],
    [
      "keeps stdout and stderr plain",
      { logging: "none" },
      ["connection"],
      "stdout and stderr are not marked secret",
    ],
    ["keeps stderr plain", { logging: "none" }, ["stdout"], "stderr is not marked secret"],
  ])("rejects a command that reads a key on stdin but %s", async (_, props, secretOutputs, problem) => {
    const key = wireguardKey();
    const violations = await violationsOf(noPlainPrivateKeys, [
      record(
        REMOTE_COMMAND,
        "mesh-anchor-key",
        { create: "install", stdin: `${key}\n`, ...props },
        { additionalSecretOutputs: secretOutputs },
      ),
    ]);
    expect(violations).toHaveLength(1);
    expect(violations[0].message).toContain(problem);
    expect(violations[0].message).not.toContain(key);
  });

  it("recognises every WireGuard key and every PEM key, and no public key line", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const key = Buffer.from(bytes).toString("base64");
        return stdinIsPrivateKey(`${key}\n`) && carriesPrivateKey(`[Interface]\nPrivateKey = ${key}\n`);
      }),
    );
    expect(carriesPrivateKey(pemKey())).toBe(true);
    expect(carriesPrivateKey(OPENSSH_KEY)).toBe(true);
    expect(
      stdinIsPrivateKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeAdminKeyForTestsOnly admin@swarm\n"),
    ).toBe(false);
    expect(carriesPrivateKey(`PublicKey = ${wireguardKey()}`)).toBe(false);
  });
});

describe("wireguard-ports-on-mesh-hosts", () => {
  const server = (host: string | undefined, extra: Partial<ResourceRecord> = {}) =>
    record(
      SERVER,
      `${host ?? "nameless"}-server`,
      { labels: host ? { ...LABELS, host } : { fleet: "swarm", stack: STACK } },
      extra,
    );
  const attach = (fw: ResourceRecord, servers: ResourceRecord[], props: Record<string, unknown> = {}) =>
    record(FIREWALL_ATTACHMENT, `${fw.name}-attachment`, props, {
      propertyDependencies: { firewallId: [fw.urn], serverIds: servers.map((s) => s.urn) },
    });
  const mesh = record(MESH_COMPONENT, "mesh", {});
  const meshConfig = (host: string, listenPort: number | string = 51820) =>
    record(
      REMOTE_COMMAND,
      `mesh-${host}-config`,
      {
        create:
          typeof listenPort === "number"
            ? `[Interface]\nAddress = 10.8.0.1/24\nListenPort = ${listenPort}\n`
            : listenPort,
      },
      { parent: mesh.urn },
    );

  it("passes a host whose firewall opens its WireGuard listen port", async () => {
    const fw = firewall([ADMIN_SSH, WIREGUARD]);
    const anchor = server("anchor");
    expect(
      await violationsOf(wireguardPortsOnMeshHosts, [
        fw,
        anchor,
        attach(fw, [anchor]),
        mesh,
        meshConfig("anchor"),
      ]),
    ).toEqual([]);
  });

  it("passes a firewall applied through the server's firewallIds or a label selector", async () => {
    const byServer = firewall([WIREGUARD], "fw-a");
    const a = server("anchor", { propertyDependencies: { firewallIds: [byServer.urn] } });
    const bySelector = firewall([WIREGUARD], "fw-b");
    const b = server("satellite");
    const selector = record(
      FIREWALL_ATTACHMENT,
      "fw-b-attachment",
      { labelSelectors: ["fleet=swarm,host=satellite"] },
      {
        propertyDependencies: { firewallId: [bySelector.urn] },
      },
    );
    const records = [
      byServer,
      a,
      bySelector,
      b,
      selector,
      mesh,
      meshConfig("anchor"),
      meshConfig("satellite"),
    ];
    expect(await violationsOf(wireguardPortsOnMeshHosts, records)).toEqual([]);
  });

  it("passes while the listen port is not known yet (first preview)", async () => {
    const fw = firewall([WIREGUARD]);
    const anchor = server("anchor");
    const config = record(
      REMOTE_COMMAND,
      "mesh-anchor-config",
      unknownCheckingProxy({ create: UNKNOWN_STRING }),
      {
        parent: mesh.urn,
      },
    );
    expect(
      await violationsOf(wireguardPortsOnMeshHosts, [fw, anchor, attach(fw, [anchor]), mesh, config]),
    ).toEqual([]);
  });

  it("passes a firewall without UDP rules, attached or not", async () => {
    expect(await violationsOf(wireguardPortsOnMeshHosts, [firewall([ADMIN_SSH])])).toEqual([]);
  });

  it.each([
    ["attached to no server", () => [firewall([WIREGUARD])], "is attached to no server"],
    [
      "on a server without a host label",
      () => {
        const fw = firewall([WIREGUARD]);
        const s = server(undefined);
        return [fw, s, attach(fw, [s])];
      },
      "which has no host label",
    ],
    [
      "on a host that runs no WireGuard peer",
      () => {
        const fw = firewall([WIREGUARD]);
        const s = server("bastion");
        return [fw, s, attach(fw, [s]), mesh, meshConfig("anchor")];
      },
      "on host bastion, which runs no WireGuard peer",
    ],
    [
      "on a host whose config command is not the mesh's",
      () => {
        const fw = firewall([WIREGUARD]);
        const s = server("anchor");
        return [
          fw,
          s,
          attach(fw, [s]),
          record(REMOTE_COMMAND, "mesh-anchor-config", { create: "ListenPort = 51820" }),
        ];
      },
      "which runs no WireGuard peer",
    ],
    [
      "for a port other than the listen port",
      () => {
        const fw = firewall([{ ...WIREGUARD, port: "51821" }]);
        const s = server("anchor");
        return [fw, s, attach(fw, [s]), mesh, meshConfig("anchor")];
      },
      "opens UDP 51821 on host anchor, whose WireGuard listens on 51820 only",
    ],
    [
      "for a range around the listen port",
      () => {
        const fw = firewall([{ ...WIREGUARD, port: "51000-52000" }]);
        const s = server("anchor");
        return [fw, s, attach(fw, [s]), mesh, meshConfig("anchor")];
      },
      "opens UDP 51000-52000",
    ],
  ])("rejects UDP opened %s", async (_, make, message) => {
    const records = make();
    const violations = await violationsOf(wireguardPortsOnMeshHosts, records);
    expect(violations).toHaveLength(1);
    expect(violations[0].message).toContain(message);
    expect(violations[0].urn).toBe(records[0].urn);
  });
});

/**
 * Records every registration the way the engine would describe it to a
 * policy pack: the mock runtime's monitor is wrapped to keep the parent,
 * `additionalSecretOutputs` and property dependencies of each request, and
 * the inputs come from the mocks.
 */
async function recordComponents(build: () => unknown, stack = STACK): Promise<ResourceRecord[]> {
  const mocks = await installMocks(offlineRunner, stack);
  // The monitor is internal to the SDK; wrapping it is the only way to see resource options under mocks.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const settings = require("@pulumi/pulumi/runtime/settings") as { getMonitor(): Monitor };
  const monitor = settings.getMonitor();
  const requests: Omit<ResourceRecord, "props">[] = [];
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (request, callback) =>
    register(request, (err, response) => {
      const propertyDependencies: Record<string, string[]> = {};
      request.getPropertydependenciesMap().forEach((deps, key) => {
        propertyDependencies[key] = deps.getUrnsList();
      });
      requests.push({
        type: request.getType(),
        name: request.getName(),
        urn: response?.getUrn() ?? "",
        parent: request.getParent() || undefined,
        additionalSecretOutputs: request.getAdditionalsecretoutputsList(),
        propertyDependencies,
      });
      callback(err, response);
    });
  await build();
  await settle();
  return requests.map((r) => {
    const inputs = mocks.resources.find((m) => m.type === r.type && m.name === r.name)?.inputs ?? {};
    return { ...r, props: unwrapSecrets(inputs) as Record<string, unknown> };
  });
}

/** The mocks see secrets wrapped; a policy pack sees them as plain values (see policy/policies.ts). */
function unwrapSecrets(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.map(unwrapSecrets);
  }
  if (typeof value === "object" && value !== null) {
    const object = value as Record<string, unknown>;
    if (object[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig) {
      return unwrapSecrets(object.value);
    }
    return Object.fromEntries(Object.entries(object).map(([key, item]) => [key, unwrapSecrets(item)]));
  }
  return value;
}

interface Monitor {
  registerResource(
    request: RegisterRequest,
    callback: (err: unknown, response?: { getUrn(): string }) => void,
  ): unknown;
}
interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getAdditionalsecretoutputsList(): string[];
  getPropertydependenciesMap(): {
    forEach(fn: (deps: { getUrnsList(): string[] }, key: string) => void): void;
  };
}

/** The hosts and the mesh, wired the way program.ts wires them. */
async function buildMesh(config: FleetConfig): Promise<void> {
  const plan = planFleet(config);
  const labels = { fleet: "swarm", stack: pulumi.getStack() };
  const sshKey = new hcloud.SshKey("admin", { publicKey: config.admin.sshPublicKey, labels });
  const sshPrivateKey = pulumi.secret(OPENSSH_KEY);
  const members = new Map(
    plan.hosts.map((host) => {
      const machine = new HetznerHost(host.name, {
        step: stepsOf(host.steps, "bootstrap")[0],
        sshKeyId: sshKey.id,
        sshPrivateKey,
        labels,
      });
      const keypair = new WireGuardKeypair(`${host.name}-wg`, { rotation: host.config.keyRotation });
      return [
        host.name,
        {
          connection: machine.connection,
          user: machine.user,
          endpoint: machine.publicAddress,
          keypair,
          bootstrap: machine.bootstrap,
        },
      ] as const;
    }),
  );
  await WireGuardMesh.define("mesh", { step: stepsOf(plan.steps, "mesh")[0], members });
}

describe("wireguard-allowedips-disjoint", () => {
  const mesh = record(MESH_COMPONENT, "mesh", {});
  /** A config command whose script writes a wg0.conf with these peers (name → AllowedIPs). */
  const config = (peers: Record<string, string>, address = "10.8.0.1/24, fd31:a7c9:5e04:8::1/64") =>
    record(
      REMOTE_COMMAND,
      "mesh-anchor-config",
      {
        create: [
          "bash -c 'swarm_write /etc/wireguard/wg0.conf.public 0644 root:root <<'\\''SWARM_EOF'\\''",
          "[Interface]",
          `Address = ${address}`,
          "ListenPort = 51820",
          ...Object.entries(peers).flatMap(([name, ips]) => [
            "",
            "[Peer]",
            `# ${name}`,
            "PublicKey = K=",
            `AllowedIPs = ${ips}`,
          ]),
          "SWARM_EOF",
          "# AllowedIPs = 10.8.0.0/8 (script text after the file is not read)",
          "'",
        ].join("\n"),
      },
      { parent: mesh.urn },
    );
  const judged = async (peers: Record<string, string>, address?: string) =>
    (await violationsOf(wireguardAllowedIpsDisjoint, [mesh, config(peers, address)])).map((v) => v.message);

  it.each([
    [
      "one /32 and one /128 per peer",
      { a: "10.8.0.2/32, fd31:a7c9:5e04:8::2/128", b: "10.8.0.3/32, fd31:a7c9:5e04:8::3/128" },
    ],
    [
      "a peer's own routes beside each other",
      { a: "10.8.0.2/32, 192.168.0.0/24, 192.168.1.0/24", b: "10.8.0.3/32" },
    ],
    ["the same numbers in the two families", { a: "10.8.0.2/32", b: "::a08:2/128" }],
    [
      "the mesh block and prefix on a lone peer (a spoke routed through the hub)",
      { hub: "10.8.0.0/24, fd31:a7c9:5e04:8::/64" },
    ],
  ])("passes %s", async (_, peers) => {
    expect(await judged(peers)).toEqual([]);
  });

  it.each([
    [
      "two peers with one IPv6 address",
      { a: "10.8.0.2/32, fd31:a7c9:5e04:8::2/128", b: "10.8.0.3/32, fd31:a7c9:5e04:8::2/128" },
      "AllowedIPs fd31:a7c9:5e04:8::2/128 of a and fd31:a7c9:5e04:8::2/128 of b overlap",
    ],
    [
      "an IPv6 block holding another peer's /128",
      { a: "fd31:a7c9:5e04:8::2/128", b: "fd31:a7c9:5e04:8::/120" },
      "AllowedIPs fd31:a7c9:5e04:8::/120 of b and fd31:a7c9:5e04:8::2/128 of a overlap",
    ],
    [
      "an IPv4 route over another peer's /32",
      { a: "10.8.0.2/32", b: "10.8.0.0/30" },
      "AllowedIPs 10.8.0.0/30 of b and 10.8.0.2/32 of a overlap",
    ],
    [
      "the IPv6 prefix beside a second peer",
      { a: "fd31:a7c9:5e04:8::/64", b: "10.8.0.3/32" },
      "AllowedIPs fd31:a7c9:5e04:8::/64 of a hold the interface's own address fd31:a7c9:5e04:8::1",
    ],
    [
      "an entry that is no block",
      { a: "fd31::1::2/128" },
      "AllowedIPs entry of a is not an IPv4 or IPv6 block",
    ],
  ])("rejects %s", async (_, peers, message) => {
    const messages = await judged(peers);
    expect(messages).toContainEqual(expect.stringContaining(`mesh-anchor-config: ${message}`));
  });

  it("reads blocks the way wg does: host bits masked, a bare address one address, IPv6 apart from IPv4", () => {
    expect(addressBlock("10.8.0.7/24")).toEqual({ start: 0x0a080000n, end: 0x0a0800ffn });
    expect(addressBlock("fd00::7")).toEqual({
      start: (1n << 128n) + ((0xfd00n << 112n) | 7n),
      end: (1n << 128n) + ((0xfd00n << 112n) | 7n),
    });
    expect([addressBlock("10.8.0.7/33"), addressBlock("fd00::/129"), addressBlock("10.8.0/24")]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
  });
});

describe("the pack against the real components", () => {
  it.each([
    [true, []],
    [false, ["no-plain-private-keys"]],
  ])("judges a hostCommand with a key on stdin and secret %p", async (secret, expected) => {
    const records = await recordComponents(() => {
      hostCommand(
        "anchor-key",
        {
          connection: pulumi.secret({
            host: "203.0.113.1",
            port: 22,
            user: "root",
            privateKey: OPENSSH_KEY,
            hostKey: fixtureHostKey("anchor"),
            dialErrorLimit: DIAL_ERROR_LIMIT,
            perDialTimeout: PER_DIAL_TIMEOUT,
          }),
          user: "root",
          text: { script: "install -m 0600 /dev/stdin /etc/wireguard/wg0.key", ownerHash: "0123" },
          stdin: pulumi.secret(`${wireguardKey()}\n`),
          secret,
        },
        {},
      );
    });
    expect((await evaluatePolicies(policies, records)).map((v) => v.policy)).toEqual(expected);
  });

  it.each([
    ["a hub fleet with a volume and an existing host", HUB_FLEET],
    ["a full mesh", FULL_FLEET],
    ["a mesh on another listen port", { ...HUB_FLEET, mesh: { ...HUB_FLEET.mesh, listenPort: 41641 } }],
    [
      "a dual-stack hub fleet",
      { ...HUB_FLEET, mesh: { ...HUB_FLEET.mesh, ipv6Prefix: "fd31:a7c9:5e04:8::/64" } },
    ],
    [
      "a dual-stack full mesh",
      { ...FULL_FLEET, mesh: { ...FULL_FLEET.mesh, ipv6Prefix: "fd31:a7c9:5e04:8::/64" } },
    ],
  ])("finds no violation in %s", async (_, config) => {
    const records = await recordComponents(() => buildMesh(config));
    expect(records.filter((r) => r.type === FIREWALL).length).toBeGreaterThan(0);
    // The key commands are what no-plain-private-keys judges: their stdin must read as a key.
    const keyCommands = records.filter((r) => r.type === REMOTE_COMMAND && r.name.endsWith("-key"));
    expect(keyCommands).toHaveLength(config.hosts.length);
    expect(keyCommands.every((r) => stdinIsPrivateKey(String(r.props.stdin)))).toBe(true);
    expect(await evaluatePolicies(policies, records)).toEqual([]);
  });

  it("catches two peers given one IPv6 mesh address even when config validation is bypassed", async () => {
    const twice: FleetConfig = {
      ...HUB_FLEET,
      mesh: { ...HUB_FLEET.mesh, ipv6Prefix: "fd31:a7c9:5e04:8::/64" },
      hosts: HUB_FLEET.hosts.map((h) =>
        h.name === "anchor" ? h : { ...h, meshAddress6: "fd31:a7c9:5e04:8::7" },
      ),
    };
    const violations = await evaluatePolicies(policies, await recordComponents(() => buildMesh(twice)));
    expect(violations.map((v) => [v.policy, v.message])).toEqual([
      [
        "wireguard-allowedips-disjoint",
        expect.stringContaining(
          "mesh-anchor-config: AllowedIPs fd31:a7c9:5e04:8::7/128 of hetzner-native and fd31:a7c9:5e04:8::7/128 of satellite overlap",
        ),
      ],
    ]);
  });

  it("catches SSH opened to the internet even when config validation is bypassed", async () => {
    const open = { ...HUB_FLEET, admin: { ...HUB_FLEET.admin, sshSourceCidrs: ["0.0.0.0/0"] } };
    const violations = await evaluatePolicies(policies, await recordComponents(() => buildMesh(open)));
    const hcloudHosts = HUB_FLEET.hosts.filter((h) => h.hcloud !== undefined).map((h) => h.name);
    expect(violations.map((v) => v.policy)).toEqual(hcloudHosts.map(() => "no-public-ssh"));
  });
});

/**
 * The pack as the Pulumi engine runs it: `policy/` started by the SDK's
 * policy-pack runner (TypeScript compiled on the fly, as `--policy-pack`
 * does), served over gRPC on loopback, and sent the requests the engine
 * sends, secrets wrapped the way the engine marshals them.
 */
/** A message or service of the generated gRPC code, which carries no types. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Untyped = any;

describe("the pack served to the engine", () => {
  /* eslint-disable @typescript-eslint/no-require-imports -- the generated gRPC modules are untyped CommonJS. */
  const grpc = require("@grpc/grpc-js") as typeof import("@grpc/grpc-js");
  const services = require("@pulumi/pulumi/proto/analyzer_grpc_pb") as Untyped;
  const messages = require("@pulumi/pulumi/proto/analyzer_pb") as Untyped;
  const { Struct } = require("google-protobuf/google/protobuf/struct_pb") as Untyped;
  const { Empty } = require("google-protobuf/google/protobuf/empty_pb") as Untyped;
  /* eslint-enable @typescript-eslint/no-require-imports */

  const root = path.resolve(__dirname, "..");
  let pack: import("node:child_process").ChildProcess | undefined;
  let client: Untyped;

  beforeAll(async () => {
    const { spawn } = await import("node:child_process");
    const runner = require.resolve("@pulumi/pulumi/cmd/run-policy-pack");
    // The engine address is only dialled to log; nothing listens on port 1, and nothing is logged.
    pack = spawn(process.execPath, [runner, "127.0.0.1:1", "."], {
      cwd: path.join(root, "policy"),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const port = await new Promise<string>((resolve, reject) => {
      let stderr = "";
      pack?.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      pack?.stdout?.once("data", (chunk: Buffer) => resolve(chunk.toString().trim()));
      pack?.once("exit", (code) => reject(new Error(`the policy pack exited with ${code}: ${stderr}`)));
    });
    expect(port).toMatch(/^\d+$/);
    client = new services.AnalyzerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  }, 120_000);

  afterAll(() => {
    client?.close();
    pack?.kill();
  });

  const call = <T>(method: string, request: unknown): Promise<T> =>
    new Promise((resolve, reject) =>
      client[method](request, (err: Error | null, response: T) => (err ? reject(err) : resolve(response))),
    );
  const secret = (value: unknown) => ({
    [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig,
    value,
  });
  const options = (secretOutputs: string[] = []) => {
    const opts = new messages.AnalyzerResourceOptions();
    opts.setAdditionalsecretoutputsList(secretOutputs);
    return opts;
  };
  const diagnostics = (response: Untyped): { policy: string; mandatory: boolean; message: string }[] =>
    response.getDiagnosticsList().map((d: Untyped) => ({
      policy: d.getPolicyname(),
      mandatory: d.getEnforcementlevel() === messages.EnforcementLevel.MANDATORY,
      message: d.getMessage(),
    }));
  const analyze = async (
    type: string,
    name: string,
    props: Record<string, unknown>,
    secretOutputs?: string[],
  ) => {
    const request = new messages.AnalyzeRequest();
    request.setType(type);
    request.setName(name);
    request.setUrn(urnOf(STACK, type, name));
    request.setProperties(Struct.fromJavaScript(props));
    request.setOptions(options(secretOutputs));
    return diagnostics(await call("analyze", request));
  };

  it("announces the swarm pack with its four policies, all mandatory", async () => {
    const info: Untyped = await call("getAnalyzerInfo", new Empty());
    expect(info.getName()).toBe("swarm");
    const announced = info.getPoliciesList().map((p: Untyped) => [p.getName(), p.getEnforcementlevel()]);
    expect(announced).toEqual(policies.map((p) => [p.name, messages.EnforcementLevel.MANDATORY]));
  });

  it("passes a key command whose key arrives as a secret and whose output is secret", async () => {
    const props = { create: "install", stdin: secret(`${wireguardKey()}\n`), logging: "none" };
    expect(await analyze(REMOTE_COMMAND, "mesh-anchor-key", props, ["stdout", "stderr"])).toEqual([]);
  });

  it("sees through a secret: a key in a secret create is still a key in create", async () => {
    const props = { create: secret(`echo '${pemKey()}' > /root/key`) };
    const found = await analyze(REMOTE_COMMAND, "leaky", props);
    expect(found).toEqual([
      { policy: "no-plain-private-keys", mandatory: true, message: expect.stringContaining("in create") },
    ]);
  });

  it("blocks SSH opened to the internet", async () => {
    const props = { labels: LABELS, rules: [{ ...ADMIN_SSH, sourceIps: ["0.0.0.0/0"] }] };
    const found = await analyze(FIREWALL, "anchor-firewall", props);
    expect(found.map((d) => [d.policy, d.mandatory])).toEqual([["no-public-ssh", true]]);
  });

  it("checks the stack: UDP only where a WireGuard peer listens", async () => {
    const resource = (r: ResourceRecord) => {
      const message = new messages.AnalyzerResource();
      message.setType(r.type);
      message.setName(r.name);
      message.setUrn(r.urn);
      message.setParent(r.parent ?? "");
      message.setProperties(Struct.fromJavaScript(r.props));
      message.setOptions(options());
      for (const [key, urns] of Object.entries(r.propertyDependencies ?? {})) {
        const deps = new messages.AnalyzerPropertyDependencies();
        deps.setUrnsList([...urns]);
        message.getPropertydependenciesMap().set(key, deps);
      }
      message.setDependenciesList(Object.values(r.propertyDependencies ?? {}).flat());
      return message;
    };
    const fw = firewall([ADMIN_SSH, { ...WIREGUARD, port: "51821" }]);
    const server = record(SERVER, "anchor-server", { labels: LABELS });
    const attachment = record(
      FIREWALL_ATTACHMENT,
      "anchor-firewall-attachment",
      {},
      {
        propertyDependencies: { firewallId: [fw.urn], serverIds: [server.urn] },
      },
    );
    const mesh = record(MESH_COMPONENT, "mesh", {});
    const config = record(
      REMOTE_COMMAND,
      "mesh-anchor-config",
      { create: "ListenPort = 51820\n" },
      { parent: mesh.urn },
    );
    const request = new messages.AnalyzeStackRequest();
    request.setResourcesList([fw, server, attachment, mesh, config].map(resource));
    const found = diagnostics(await call("analyzeStack", request));
    expect(found).toEqual([
      {
        policy: "wireguard-ports-on-mesh-hosts",
        mandatory: true,
        message: expect.stringContaining("whose WireGuard listens on 51820 only"),
      },
    ]);
  });
});

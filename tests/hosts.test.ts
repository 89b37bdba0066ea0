import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { HetznerHost, serverIpv4 } from "../components/hetznerHost";
import { stepsOf } from "../config/plan";
import { HostPlan } from "../config/model";
import { FleetConfig } from "../config/types";
import { bootstrapScript } from "../templates/bootstrap";
import { sha256 } from "../templates/shell";
import { GraphRecorder } from "./graph";
import { HUB_FLEET, plan } from "./meshFixtures";
import { installMocks, MockFleet, promiseOf } from "../offline/mockRuntime";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT } from "../components/remote";

const ADMIN_KEY =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nfake admin key for tests\n-----END OPENSSH PRIVATE KEY-----\n";

interface Built {
  readonly mocks: MockFleet;
  readonly graph: GraphRecorder;
  readonly host: HetznerHost;
  readonly sshKey: hcloud.SshKey;
}

async function build(name: string, config: FleetConfig = HUB_FLEET): Promise<Built> {
  const mocks = await installMocks();
  const graph = new GraphRecorder();
  const sshKey = new hcloud.SshKey("admin", { publicKey: config.admin.sshPublicKey });
  const host = new HetznerHost(
    name,
    {
      step: stepsOf((plan(config).byName.get(name) as HostPlan).steps, "bootstrap")[0],
      sshKeyId: sshKey.id,
      sshPrivateKey: pulumi.secret(ADMIN_KEY),
      labels: { owner: "ops" },
    },
    { transformations: [graph.transformation] },
  );
  // Wait for every child to be registered with the mock runtime.
  await promiseOf(host.bootstrap.stdout);
  return { mocks, graph, host, sshKey };
}

describe("a Hetzner Cloud host with a volume", () => {
  let built: Built;
  beforeAll(async () => {
    built = await build("anchor");
  });

  it("creates host key, server, firewall, attachment, volume and bootstrap as children of the host", () => {
    expect(built.graph.childrenOf(built.host)).toEqual([
      "anchor-host-key",
      "anchor-server",
      "anchor-firewall",
      "anchor-firewall-attachment",
      "anchor-volume",
      "anchor-volume-attachment",
      "anchor-bootstrap",
    ]);
    expect(built.graph.named("anchor").type).toBe("swarm:host:HetznerHost");
  });

  it("labels every Hetzner resource with fleet, stack, host and the extra labels", () => {
    const hcloudResources = built.mocks.resources.filter(
      (r) => r.type.startsWith("hcloud:") && r.name !== "admin",
    );
    expect(hcloudResources.map((r) => r.type).sort()).toEqual([
      "hcloud:index/firewall:Firewall",
      "hcloud:index/firewallAttachment:FirewallAttachment",
      "hcloud:index/server:Server",
      "hcloud:index/volume:Volume",
      "hcloud:index/volumeAttachment:VolumeAttachment",
    ]);
    const labels = { fleet: "swarm", stack: "test", host: "anchor", owner: "ops" };
    for (const type of ["server:Server", "firewall:Firewall", "volume:Volume"]) {
      expect(built.mocks.ofType(`hcloud:index/${type}`)[0].inputs.labels).toEqual(labels);
    }
  });

  it("creates the server from config with the fleet's admin key, ignoring create-only fields", async () => {
    const server = built.mocks.named("anchor-server").inputs;
    expect(server).toMatchObject({
      serverType: "cx33",
      location: "fsn1",
      image: "debian-12",
      sshKeys: [await promiseOf(built.sshKey.id)],
      keepDisk: true,
      ignoreRemoteFirewallIds: true,
    });
    expect(server.publicNets).toBeUndefined();
    expect(built.graph.named("anchor-server").opts.ignoreChanges).toEqual([
      "image",
      "sshKeys",
      "userData",
      "publicNets",
    ]);
  });

  it("opens WireGuard to the world and SSH only to the admin networks", () => {
    const rules = built.mocks.named("anchor-firewall").inputs.rules as Record<string, unknown>[];
    const strip = (rule: Record<string, unknown>) => ({ ...rule, description: undefined });
    expect(rules.map(strip)).toEqual([
      {
        direction: "in",
        protocol: "udp",
        port: "51820",
        sourceIps: ["0.0.0.0/0", "::/0"],
        description: undefined,
      },
      {
        direction: "in",
        protocol: "tcp",
        port: "22",
        sourceIps: ["198.51.100.0/24", "2001:db8:1::/48"],
        description: undefined,
      },
      { direction: "in", protocol: "icmp", sourceIps: ["0.0.0.0/0", "::/0"], description: undefined },
    ]);
    const ssh = rules.filter((r) => r.protocol === "tcp");
    expect(ssh.every((r) => !(r.sourceIps as string[]).some((c) => c === "0.0.0.0/0" || c === "::/0"))).toBe(
      true,
    );
  });

  it("attaches the firewall and an unformatted, unmounted volume to the server", () => {
    const idOf = (name: string) => Number(built.mocks.named(name).id);
    expect(built.mocks.named("anchor-firewall-attachment").inputs).toEqual({
      firewallId: idOf("anchor-firewall"),
      serverIds: [idOf("anchor-server")],
    });
    const volume = built.mocks.named("anchor-volume").inputs;
    expect(volume).toMatchObject({ size: 40, location: "fsn1", automount: false });
    expect(volume.format).toBeUndefined();
    expect(built.mocks.named("anchor-volume-attachment").inputs).toEqual({
      volumeId: idOf("anchor-volume"),
      serverId: idOf("anchor-server"),
      automount: false,
    });
  });

  it("exposes a secret root connection to the server's address and the volume's device", async () => {
    expect(await pulumi.isSecret(built.host.connection)).toBe(true);
    const address = await promiseOf(built.host.publicAddress);
    expect(address).toMatch(/^203\.0\.113\.\d+$/);
    // Its IPv6 address is where peers without IPv4 reach it.
    expect(await promiseOf(built.host.publicAddress6 as pulumi.Output<string>)).toMatch(
      /^2001:db8:0:\w+::1$/,
    );
    expect(await promiseOf(built.host.connection)).toEqual({
      host: address,
      port: 22,
      user: "root",
      privateKey: ADMIN_KEY,
      hostKey: await promiseOf(built.host.hostKey),
      dialErrorLimit: DIAL_ERROR_LIMIT,
      perDialTimeout: PER_DIAL_TIMEOUT,
    });
    expect(await promiseOf(built.host.hostKey)).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]{68}$/);
    expect(built.host.user).toBe("root");
    expect(await promiseOf(built.host.volumeDevice as pulumi.Output<string>)).toMatch(
      /^\/dev\/disk\/by-id\//,
    );
  });

  it("bootstraps after the server, firewall and volume are attached", () => {
    const bootstrap = built.graph.named("anchor-bootstrap");
    const deps = bootstrap.dependsOn.map(
      (d) => built.graph.registrations.find((r) => r.resource === d)?.name,
    );
    expect(deps).toEqual([
      "anchor-server",
      "anchor-firewall",
      "anchor-firewall-attachment",
      "anchor-volume",
      "anchor-volume-attachment",
    ]);
    const order = built.mocks.resources.map((r) => r.name);
    for (const dep of deps) {
      expect(order.indexOf(dep as string)).toBeLessThan(order.indexOf("anchor-bootstrap"));
    }
  });

  it("runs the bootstrap script as root, re-run when the package list changes", () => {
    const { inputs } = built.mocks.named("anchor-bootstrap");
    const body = bootstrapScript({
      host: "anchor",
      packages: plan(HUB_FLEET).byName.get("anchor")?.packages ?? [],
    });
    expect(inputs.triggers).toEqual([sha256(body)]);
    expect(inputs.create as string).toMatch(/^bash -c '/);
    expect(inputs.create as string).toContain("cloud-init status --wait");
    expect(inputs.logging).toBe("stdoutAndStderr");
  });
});

describe("a Hetzner Cloud host without a volume", () => {
  it("creates no volume and exposes no volume device", async () => {
    const { mocks, host } = await build("satellite");
    expect(mocks.ofType("hcloud:index/volume:Volume")).toEqual([]);
    expect(mocks.ofType("hcloud:index/volumeAttachment:VolumeAttachment")).toEqual([]);
    expect(host.volumeDevice).toBeUndefined();
  });
});

describe("an existing host", () => {
  it("creates no cloud resource and connects as the configured user through sudo", async () => {
    const { mocks, graph, host } = await build("hetzner-native");
    expect(mocks.resources.filter((r) => r.type.startsWith("hcloud:") && r.name !== "admin")).toEqual([]);
    expect(graph.childrenOf(host)).toEqual(["hetzner-native-bootstrap"]);
    expect(await pulumi.isSecret(host.connection)).toBe(true);
    expect(await promiseOf(host.connection)).toEqual({
      host: "198.51.100.7",
      port: 2222,
      user: "admin",
      privateKey: ADMIN_KEY,
      hostKey: fixtureHostKey("hetzner-native"),
      dialErrorLimit: DIAL_ERROR_LIMIT,
      perDialTimeout: PER_DIAL_TIMEOUT,
    });
    expect(host.user).toBe("admin");
    expect(await promiseOf(host.publicAddress)).toBe("198.51.100.7");
    expect(mocks.named("hetzner-native-bootstrap").inputs.create as string).toMatch(/^sudo -n bash -c '/);
  });
});

describe("a Hetzner Cloud host without IPv4", () => {
  const sixOnly: FleetConfig = {
    ...HUB_FLEET,
    hosts: HUB_FLEET.hosts.map((h) =>
      h.name === "satellite" && h.hcloud !== undefined ? { ...h, hcloud: { ...h.hcloud, ipv4: false } } : h,
    ),
  };

  it("is created with IPv6 only and reached at the first address of its /64", async () => {
    const { mocks, host } = await build("satellite", sixOnly);
    expect(mocks.named("satellite-server").inputs.publicNets).toEqual([
      { ipv4Enabled: false, ipv6Enabled: true },
    ]);
    const address = await promiseOf(host.publicAddress);
    expect(address).toMatch(/^2001:db8:0:\w+::1$/);
    expect(host.publicAddress6).toBeUndefined();
    expect((await promiseOf(host.connection)).host).toBe(address);
  });

  it("fails, naming the fix, when config asks for IPv4 the server was created without", () => {
    // The provider reads a server without IPv4 back with no ipv4Address.
    for (const address of [undefined, ""]) {
      expect(() => serverIpv4("satellite", address)).toThrow(
        "satellite has no public IPv4 address: it was created with hcloud.ipv4: false, which is read only when the server is created; set it back to false, or replace the server",
      );
    }
    expect(serverIpv4("satellite", "203.0.113.9")).toBe("203.0.113.9");
  });
});

import * as command from "@pulumi/command";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { BootstrapStep } from "../config/plan";
import { bootstrapScript } from "../templates/bootstrap";
import { renderCloudConfig } from "../templates/cloudInit";
import { DIAL_ERROR_LIMIT, hashedText, hostCommand, PER_DIAL_TIMEOUT, SshConnection } from "./remote";
import { SshKeypair } from "./sshKeypair";

const ANYWHERE = ["0.0.0.0/0", "::/0"];

export interface HetznerHostArgs {
  /** The host's bootstrap step: its machine, packages, firewall ports. */
  readonly step: BootstrapStep;
  /**
   * ID of the fleet's admin SSH key in Hetzner Cloud, shared by all hosts
   * (Hetzner rejects the same key twice). Required for `hcloud` hosts, unused for `existing` ones.
   */
  readonly sshKeyId?: pulumi.Input<string>;
  /** The admin SSH private key the program connects with. Secret. */
  readonly sshPrivateKey: pulumi.Input<string>;
  /** Extra labels on every Hetzner resource, besides `fleet`, `stack` and `host`. */
  readonly labels: Record<string, string>;
  /** The stack's `swarm:repairs`: raising a command's generation re-runs that command. */
  readonly repairs?: Readonly<Record<string, number>>;
}

/** What a machine gives the rest of the host: how to reach it, and what the bootstrap waits for. */
interface Reachable {
  readonly user: string;
  readonly port: number;
  readonly publicAddress: pulumi.Input<string>;
  /** The IPv6 address peers without IPv4 reach it at, when it has one beside an IPv4 address. */
  readonly publicAddress6?: pulumi.Input<string>;
  readonly hostKey: pulumi.Input<string>;
  readonly volumeDevice?: pulumi.Output<string>;
  readonly ready: pulumi.Resource[];
}

/**
 * A Hetzner Cloud server with its firewall, a generated and pinned host key
 * (unless config pins the server's own) and an optional raw volume for a ZFS
 * pool. Internal; exported for testing.
 */
export function cloudServer(
  name: string,
  parent: pulumi.Resource,
  step: BootstrapStep & { readonly machine: { readonly kind: "hcloud" } },
  sshKeyId: pulumi.Input<string>,
  extraLabels: Record<string, string>,
): Reachable {
  const cloud = step.machine.config;
  // A server created before swarm generated host keys keeps the key it has, pinned in config.
  let hostKey: pulumi.Input<string>;
  let userData: pulumi.Output<string> | undefined;
  if (cloud.hostKey !== undefined) {
    hostKey = cloud.hostKey;
  } else {
    const generated = new SshKeypair(`${name}-host-key`, { comment: `root@${step.host}` }, { parent });
    hostKey = generated.publicKey.apply((key) => key.split(" ").slice(0, 2).join(" "));
    userData = pulumi.secret(
      pulumi
        .all([generated.privateKey, generated.publicKey])
        .apply(([privateKey, publicKey]) => renderCloudConfig({ privateKey, publicKey })),
    );
  }
  const labels = { fleet: "swarm", stack: pulumi.getStack(), host: step.host, ...extraLabels };
  const server = new hcloud.Server(
    `${name}-server`,
    {
      serverType: cloud.serverType,
      location: cloud.location,
      image: cloud.image,
      sshKeys: [sshKeyId],
      userData,
      labels,
      // The ZFS pool lives on the volume, so the root disk need not grow with
      // the server type; keeping it allows moving back down to a smaller type.
      keepDisk: true,
      shutdownBeforeDeletion: true,
      // The firewall is attached by the FirewallAttachment below; without this
      // the server would try to detach it again on every update.
      ignoreRemoteFirewallIds: true,
      // Without IPv4 the server has only its IPv6 /64. Hetzner creates both when this is absent,
      // which is how every server created before the setting existed was made.
      ...(cloud.ipv4 ? {} : { publicNets: [{ ipv4Enabled: false, ipv6Enabled: true }] }),
    },
    {
      parent,
      // Hetzner applies image, SSH keys and user data only when a server is
      // created, so a change to them would replace a running server and lose
      // its disk. They are ignored: rebuilding is a deliberate act (`pulumi up
      // --replace <server urn>`), not a side effect of editing config. The
      // provider changes publicNets in place by powering the server off (a hard
      // stop under a ZFS pool) to unassign or assign its primary IPs: the same.
      ignoreChanges: ["image", "sshKeys", "userData", "publicNets"],
    },
  );
  const rules: hcloud.types.input.FirewallRule[] = [
    {
      description: "WireGuard from anywhere: peers roam",
      direction: "in",
      protocol: "udp",
      port: String(step.listenPort),
      sourceIps: ANYWHERE,
    },
    // Validation requires at least one SSH source: Hetzner rejects a rule without sources.
    {
      description: "SSH from the admin networks only",
      direction: "in",
      protocol: "tcp",
      port: "22",
      sourceIps: [...step.sshSourceCidrs],
    },
    {
      description: "ICMP (ping, path MTU discovery)",
      direction: "in",
      protocol: "icmp",
      sourceIps: ANYWHERE,
    },
  ];
  const firewall = new hcloud.Firewall(`${name}-firewall`, { labels, rules }, { parent });
  const attachment = new hcloud.FirewallAttachment(
    `${name}-firewall-attachment`,
    { firewallId: firewall.id.apply(Number), serverIds: [server.id.apply(Number)] },
    { parent },
  );
  const ready: pulumi.Resource[] = [server, firewall, attachment];
  let volumeDevice: pulumi.Output<string> | undefined;
  if (cloud.volumeSize !== undefined) {
    // No filesystem and no automount: ZFS takes the raw device.
    const volume = new hcloud.Volume(
      `${name}-volume`,
      { size: cloud.volumeSize, location: cloud.location, labels, automount: false },
      { parent },
    );
    const volumeAttachment = new hcloud.VolumeAttachment(
      `${name}-volume-attachment`,
      { volumeId: volume.id.apply(Number), serverId: server.id.apply(Number), automount: false },
      { parent },
    );
    ready.push(volume, volumeAttachment);
    volumeDevice = volume.linuxDevice;
  }
  // A server created with IPv4 and then set to ipv4: false keeps its IPv4 address (publicNets is
  // ignored), and is reached at its IPv6 address from then on.
  const publicAddress = cloud.ipv4
    ? server.ipv4Address.apply((address: string | undefined) => serverIpv4(step.host, address))
    : server.ipv6Address;
  // Hetzner gives every server an IPv6 /64 unless told not to, so ipv6Address is set.
  const publicAddress6 = cloud.ipv4 ? server.ipv6Address : undefined;
  return { user: "root", port: 22, publicAddress, publicAddress6, hostKey, volumeDevice, ready };
}

/**
 * The IPv4 address of a server that config says has one. A server created without IPv4 and then set
 * to `ipv4: true` has none (publicNets is ignored once it exists, and the provider reads the address
 * back as nil): fail with the fix rather than connect to no host. Exported for testing.
 */
export function serverIpv4(host: string, address: string | undefined): string {
  if (address === undefined || address === "") {
    throw new Error(
      `${host} has no public IPv4 address: it was created with hcloud.ipv4: false, which is read only when the server is created; set it back to false, or replace the server (docs/ipv6.md)`,
    );
  }
  return address;
}

/**
 * One host of the fleet: a Hetzner Cloud server with its firewall and an
 * optional raw volume for a ZFS pool, or an `existing` host given by address
 * (no cloud resources). Either way it exposes the SSH connection and a
 * bootstrap command that installs the packages the host's roles need.
 */
export class HetznerHost extends pulumi.ComponentResource {
  /** How the program reaches the host over SSH. Secret: it carries the admin private key. */
  public readonly connection: pulumi.Output<SshConnection>;
  /** The SSH user: `root` on Hetzner servers, the configured user on existing hosts. */
  public readonly user: string;
  /** The host's SSH host key (`ssh-ed25519 AAAA...`), pinned on every connection. */
  public readonly hostKey: pulumi.Output<string>;
  /** Public address: the server's IPv4 address (IPv6 without one), or the existing host's address. */
  public readonly publicAddress: pulumi.Output<string>;
  /** The IPv6 address beside an IPv4 `publicAddress`, when the host has one: where peers without IPv4 reach it. */
  public readonly publicAddress6?: pulumi.Output<string>;
  /** Linux device of the attached Hetzner volume, when the host has one. */
  public readonly volumeDevice?: pulumi.Output<string>;
  /** Installs the host's packages; everything else on the host runs after it. */
  public readonly bootstrap: command.remote.Command;

  constructor(name: string, args: HetznerHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:host:HetznerHost", name, {}, opts);
    const { step } = args;
    const machine: Reachable =
      step.machine.kind === "hcloud"
        ? cloudServer(
            name,
            this,
            { ...step, machine: step.machine },
            args.sshKeyId as pulumi.Input<string>,
            args.labels,
          )
        : {
            user: step.machine.config.user,
            port: step.machine.config.port,
            publicAddress: step.machine.config.address,
            publicAddress6: step.machine.config.ipv6Address,
            hostKey: step.machine.config.hostKey,
            ready: [],
          };
    this.user = machine.user;
    this.hostKey = pulumi.output(machine.hostKey);
    this.publicAddress = pulumi.output(machine.publicAddress);
    this.publicAddress6 =
      machine.publicAddress6 !== undefined ? pulumi.output(machine.publicAddress6) : undefined;
    this.volumeDevice = machine.volumeDevice;
    this.connection = sshConnection(machine, args.sshPrivateKey);
    const body = bootstrapScript({ host: step.host, packages: step.packages });
    this.bootstrap = hostCommand(
      `${name}-bootstrap`,
      {
        connection: this.connection,
        user: this.user,
        repairs: args.repairs,
        text: hashedText(body),
      },
      { parent: this, dependsOn: machine.ready },
    );
    this.registerOutputs({
      connection: this.connection,
      hostKey: this.hostKey,
      publicAddress: this.publicAddress,
      volumeDevice: this.volumeDevice,
      bootstrap: this.bootstrap,
    });
  }
}

/** The connection to a machine, secret as it carries the admin private key. */
function sshConnection(
  machine: Reachable,
  sshPrivateKey: pulumi.Input<string>,
): pulumi.Output<SshConnection> {
  return pulumi.secret(
    pulumi
      .all([machine.publicAddress, sshPrivateKey, machine.hostKey])
      .apply(([address, privateKey, hostKey]): SshConnection => ({
        host: address,
        port: machine.port,
        user: machine.user,
        privateKey,
        hostKey,
        dialErrorLimit: DIAL_ERROR_LIMIT,
        perDialTimeout: PER_DIAL_TIMEOUT,
      })),
  );
}

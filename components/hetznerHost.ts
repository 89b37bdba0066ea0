import * as command from "@pulumi/command";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { HostPlan } from "../config/model";
import { AdminConfig } from "../config/types";
import { bootstrapScript } from "../templates/bootstrap";
import { sha256 } from "../templates/shell";
import { renderCloudConfig } from "../templates/cloudInit";
import { DIAL_ERROR_LIMIT, hostCommand, PER_DIAL_TIMEOUT, SshConnection } from "./remote";
import { SshKeypair } from "./sshKeypair";

const ANYWHERE = ["0.0.0.0/0", "::/0"];

export interface HetznerHostArgs {
  /** The host's plan: name, `hcloud` or `existing` config, packages. */
  readonly host: HostPlan;
  /** Admin SSH key and the CIDRs allowed to reach SSH. */
  readonly admin: AdminConfig;
  /**
   * ID of the fleet's admin SSH key in Hetzner Cloud, shared by all hosts
   * (Hetzner rejects the same key twice). Required for `hcloud` hosts, unused for `existing` ones.
   */
  readonly sshKeyId?: pulumi.Input<string>;
  /** The admin SSH private key the program connects with. Secret. */
  readonly sshPrivateKey: pulumi.Input<string>;
  /** WireGuard UDP port opened in the firewall. */
  readonly listenPort: number;
  /** Extra labels on every Hetzner resource, besides `fleet`, `stack` and `host`. */
  readonly labels: Record<string, string>;
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
  /** Public address: the server's IPv4 address, or the existing host's address. */
  public readonly publicAddress: pulumi.Output<string>;
  /** Linux device of the attached Hetzner volume, when the host has one. */
  public readonly volumeDevice?: pulumi.Output<string>;
  /** Installs the host's packages; everything else on the host runs after it. */
  public readonly bootstrap: command.remote.Command;

  constructor(name: string, args: HetznerHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:host:HetznerHost", name, {}, opts);
    const { host } = args;
    let port: number;
    let ready: pulumi.Resource[] = [];
    if (host.config.hcloud !== undefined) {
      const cloud = host.config.hcloud;
      if (args.sshKeyId === undefined) {
        throw new pulumi.ResourceError(
          `host ${host.name} is a Hetzner Cloud server but no admin SSH key was passed; pass the fleet's hcloud SSH key ID as sshKeyId`,
          this,
        );
      }
      // A server created before swarm generated host keys keeps the key it has, pinned in config.
      let userData: pulumi.Output<string> | undefined;
      if (cloud.hostKey !== undefined) {
        this.hostKey = pulumi.output(cloud.hostKey);
      } else {
        const generated = new SshKeypair(
          `${name}-host-key`,
          { comment: `root@${host.name}` },
          { parent: this },
        );
        this.hostKey = generated.publicKey.apply((key) => key.split(" ").slice(0, 2).join(" "));
        userData = pulumi.secret(
          pulumi
            .all([generated.privateKey, generated.publicKey])
            .apply(([privateKey, publicKey]) => renderCloudConfig({ privateKey, publicKey })),
        );
      }
      const labels = { fleet: "swarm", stack: pulumi.getStack(), host: host.name, ...args.labels };
      const server = new hcloud.Server(
        `${name}-server`,
        {
          serverType: cloud.serverType,
          location: cloud.location,
          image: cloud.image,
          sshKeys: [args.sshKeyId],
          userData,
          labels,
          // The ZFS pool lives on the volume, so the root disk need not grow with
          // the server type; keeping it allows moving back down to a smaller type.
          keepDisk: true,
          shutdownBeforeDeletion: true,
          // The firewall is attached by the FirewallAttachment below; without this
          // the server would try to detach it again on every update.
          ignoreRemoteFirewallIds: true,
        },
        {
          parent: this,
          // Hetzner applies image, SSH keys and user data only when a server is
          // created, so a change to them would replace a running server and lose
          // its disk. They are ignored: rebuilding is a deliberate act (`pulumi up
          // --replace <server urn>`), not a side effect of editing config.
          ignoreChanges: ["image", "sshKeys", "userData"],
        },
      );
      const rules: hcloud.types.input.FirewallRule[] = [
        {
          description: "WireGuard from anywhere: peers roam",
          direction: "in",
          protocol: "udp",
          port: String(args.listenPort),
          sourceIps: ANYWHERE,
        },
        {
          description: "ICMP (ping, path MTU discovery)",
          direction: "in",
          protocol: "icmp",
          sourceIps: ANYWHERE,
        },
      ];
      // Validation requires at least one SSH source; Hetzner rejects a rule without sources.
      if (args.admin.sshSourceCidrs.length > 0) {
        rules.splice(1, 0, {
          description: "SSH from the admin networks only",
          direction: "in",
          protocol: "tcp",
          port: "22",
          sourceIps: [...args.admin.sshSourceCidrs],
        });
      }
      const firewall = new hcloud.Firewall(`${name}-firewall`, { labels, rules }, { parent: this });
      const attachment = new hcloud.FirewallAttachment(
        `${name}-firewall-attachment`,
        { firewallId: firewall.id.apply(Number), serverIds: [server.id.apply(Number)] },
        { parent: this },
      );
      ready = [server, firewall, attachment];
      if (cloud.volumeSize !== undefined) {
        // No filesystem and no automount: ZFS takes the raw device.
        const volume = new hcloud.Volume(
          `${name}-volume`,
          { size: cloud.volumeSize, location: cloud.location, labels, automount: false },
          { parent: this },
        );
        const volumeAttachment = new hcloud.VolumeAttachment(
          `${name}-volume-attachment`,
          { volumeId: volume.id.apply(Number), serverId: server.id.apply(Number), automount: false },
          { parent: this },
        );
        ready.push(volume, volumeAttachment);
        this.volumeDevice = volume.linuxDevice;
      }
      this.user = "root";
      port = 22;
      this.publicAddress = server.ipv4Address;
    } else if (host.config.existing !== undefined) {
      this.user = host.config.existing.user;
      port = host.config.existing.port;
      this.publicAddress = pulumi.output(host.config.existing.address);
      this.hostKey = pulumi.output(host.config.existing.hostKey);
    } else {
      throw new pulumi.ResourceError(
        `host ${host.name} has neither hcloud nor existing; give it exactly one of them`,
        this,
      );
    }
    const user = this.user;
    this.connection = pulumi.secret(
      pulumi
        .all([this.publicAddress, args.sshPrivateKey, this.hostKey])
        .apply(([address, privateKey, hostKey]): SshConnection => ({
          host: address,
          port,
          user,
          privateKey,
          hostKey,
          dialErrorLimit: DIAL_ERROR_LIMIT,
          perDialTimeout: PER_DIAL_TIMEOUT,
        })),
    );
    const body = bootstrapScript({ host: host.name, packages: host.packages });
    this.bootstrap = hostCommand(
      `${name}-bootstrap`,
      { connection: this.connection, user, script: body, ownerHash: sha256(body) },
      { parent: this, dependsOn: ready },
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

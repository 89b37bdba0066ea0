import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { FleetPlan, HostPlan } from "../config/model";
import { sha256 } from "../templates/shell";
import {
  PeerIdentity,
  renderWireGuardConfig,
  wireguardApplyScript,
  wireguardConfigValues,
  wireguardKeyScript,
  wireguardKeyTeardownScript,
  wireguardTeardownScript,
} from "../templates/wireguard";
import { hostCommand, SshConnection } from "./remote";
import { WireGuardKeypair } from "./wireguardKeypair";

/** What the mesh needs to know about one host. */
export interface MeshMember {
  /** The host's SSH connection (secret). */
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user; scripts run through `sudo -n` unless it is root. */
  readonly user: string;
  /** Public address peers reach the host's WireGuard port at, without port. */
  readonly endpoint: pulumi.Input<string>;
  readonly keypair: WireGuardKeypair;
  /** The host's bootstrap (packages): WireGuard is configured after it. */
  readonly bootstrap: pulumi.Resource;
}

export interface WireGuardMeshArgs {
  /** The fleet plan: mesh settings, and per host its mesh address and peers. */
  readonly plan: FleetPlan;
  /** Every host of the plan, by name. */
  readonly hosts: ReadonlyMap<string, MeshMember>;
}

/**
 * The WireGuard mesh: on every host, the private key in `wg0.key` and the
 * interface `wg0` configured with one peer per host of the topology.
 * Each command's trigger is a hash of what it installs, so a host whose
 * configuration did not change runs nothing.
 */
export class WireGuardMesh extends pulumi.ComponentResource {
  /** The command that configures `wg0` on each host: depend on it to run after the tunnel is up. */
  public readonly members: ReadonlyMap<string, command.remote.Command>;
  /** Each host's WireGuard public key. */
  public readonly publicKeys: ReadonlyMap<string, pulumi.Output<string>>;

  constructor(name: string, args: WireGuardMeshArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:wireguard:Mesh", name, {}, opts);
    const { plan } = args;
    const memberOf = (host: string): MeshMember => {
      const member = args.hosts.get(host);
      if (member === undefined) {
        throw new pulumi.ResourceError(
          `the mesh plan has host ${host} but no member was passed for it; pass every planned host in hosts`,
          this,
        );
      }
      return member;
    };
    const members = new Map<string, command.remote.Command>();
    const publicKeys = new Map<string, pulumi.Output<string>>();
    const identityOf = new Map(
      plan.hosts.map((h) => {
        const member = memberOf(h.name);
        return [
          h.name,
          pulumi
            .all([member.keypair.publicKey, member.endpoint])
            .apply(([publicKey, endpoint]): PeerIdentity => ({ publicKey, endpoint })),
        ];
      }),
    );
    // Every host's identity, resolved once. A host that peers with every other host (a full mesh, or
    // the hub) reads its peers from it: combining the peers' Outputs host by host would build
    // hosts² Outputs, which dominated evaluation time and memory in large full meshes. Its
    // dependencies are the same, as the host's own key and address are inputs of its command anyway.
    let everyone: pulumi.Output<Record<string, PeerIdentity>> | undefined;
    const identitiesOf = (host: HostPlan): pulumi.Output<Record<string, PeerIdentity>> => {
      if (host.peers.length === plan.hosts.length - 1) {
        everyone ??= pulumi.all(Object.fromEntries(identityOf));
        return everyone;
      }
      return pulumi
        .all(host.peers.map((peer) => identityOf.get(peer.name) as pulumi.Output<PeerIdentity>))
        .apply((resolved) => Object.fromEntries(host.peers.map((peer, i) => [peer.name, resolved[i]])));
    };
    for (const host of plan.hosts) {
      const member = memberOf(host.name);
      publicKeys.set(host.name, member.keypair.publicKey);
      const key = hostCommand(
        `${name}-${host.name}-key`,
        {
          connection: member.connection,
          user: member.user,
          script: wireguardKeyScript(host.name),
          stdin: member.keypair.privateKey.apply((k) => `${k}\n`),
          teardown: wireguardKeyTeardownScript(),
          // The public key changes exactly when the private key does, and reveals nothing about it.
          ownerHash: member.keypair.publicKey.apply(sha256),
          secret: true,
        },
        { parent: this, dependsOn: [member.bootstrap] },
      );
      const identities = identitiesOf(host);
      const implementation = host.config.wireguard;
      const rendered = pulumi.all([member.keypair.publicKey, identities]).apply(([publicKey, resolved]) => {
        const config = wireguardConfigValues(plan, host.name, resolved);
        return {
          script: wireguardApplyScript({ host: host.name, config, publicKey, implementation }),
          ownerHash: sha256([renderWireGuardConfig(config), publicKey, implementation].join("\n")),
        };
      });
      const config = hostCommand(
        `${name}-${host.name}-config`,
        {
          connection: member.connection,
          user: member.user,
          script: rendered.script,
          teardown: wireguardTeardownScript(),
          ownerHash: rendered.ownerHash,
        },
        { parent: this, dependsOn: [key, member.bootstrap] },
      );
      members.set(host.name, config);
    }
    this.members = members;
    this.publicKeys = publicKeys;
    this.registerOutputs({ publicKeys: Object.fromEntries(publicKeys) });
  }
}

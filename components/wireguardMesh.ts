import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { MeshStep, WireGuardConfigStep } from "../config/plan";
import { sha256 } from "../templates/shell";
import {
  PeerIdentity,
  renderWireGuardConfig,
  wireguardApplyScript,
  wireguardKeyScript,
  wireguardKeyTeardownScript,
  wireguardTeardownScript,
  wireguardValues,
} from "../templates/wireguard";
import { hostCommand, SshConnection, StepText } from "./remote";
import { nextTurn } from "./turns";
import { WireGuardKeypair } from "./wireguardKeypair";

/** What the mesh needs to know about one host: what exists only as Outputs, and its bootstrap. */
export interface MeshMember {
  /** The host's SSH connection (secret). */
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user; scripts run through `sudo -n` unless it is root. */
  readonly user: string;
  /** The stack's `swarm:repairs`: raising a command's generation re-runs that command. */
  readonly repairs?: Readonly<Record<string, number>>;
  /** Public address peers reach the host's WireGuard port at, without port. */
  readonly endpoint: pulumi.Input<string>;
  /** The host's IPv6 address beside an IPv4 `endpoint`, for peers without IPv4. */
  readonly endpoint6?: pulumi.Input<string>;
  readonly keypair: WireGuardKeypair;
  /** The host's bootstrap (packages): WireGuard is configured after it. */
  readonly bootstrap: pulumi.Resource;
}

export interface WireGuardMeshArgs {
  /** Every host's WireGuard configuration, resolved. */
  readonly step: MeshStep;
  /** Every host of the step, by name. */
  readonly members: ReadonlyMap<string, MeshMember>;
}

/**
 * `wg0.key` and `wg0.conf` on one host, as children of `parent`. Internal;
 * exported for testing.
 */
export function meshMemberCommands(
  name: string,
  parent: pulumi.Resource,
  step: WireGuardConfigStep,
  member: MeshMember,
  identities: pulumi.Output<Record<string, PeerIdentity>>,
): { readonly key: command.remote.Command; readonly config: command.remote.Command } {
  const common = { connection: member.connection, user: member.user, repairs: member.repairs };
  const key = hostCommand(
    `${name}-${step.host}-key`,
    {
      ...common,
      stdin: member.keypair.privateKey.apply((k) => `${k}\n`),
      // The public key changes exactly when the private key does, and reveals nothing about it.
      text: member.keypair.publicKey.apply((publicKey) => ({
        script: wireguardKeyScript(step.host),
        ownerHash: sha256(publicKey),
        teardown: wireguardKeyTeardownScript(),
      })),
      secret: true,
    },
    { parent, dependsOn: [member.bootstrap] },
  );
  const { implementation, forwards } = step;
  const render = (publicKey: string, resolved: Readonly<Record<string, PeerIdentity>>): StepText => {
    const config = wireguardValues(step, resolved);
    return {
      script: wireguardApplyScript({ host: step.host, config, publicKey, implementation, forwards }),
      ownerHash: sha256(
        [renderWireGuardConfig(config), publicKey, implementation, ...(forwards ? ["hub routing"] : [])].join(
          "\n",
        ),
      ),
      teardown: wireguardTeardownScript(),
    };
  };
  // A host that peers with every host finds its own key among everyone's, whose dependencies cover
  // it: adding the key with pulumi.all would copy the Output that carries every host's dependencies
  // into three more, on every host.
  const text = step.everyHost
    ? identities.apply((resolved) => render((resolved[step.host] as PeerIdentity).publicKey, resolved))
    : pulumi
        .all([member.keypair.publicKey, identities])
        .apply(([publicKey, resolved]) => render(publicKey, resolved));
  const config = hostCommand(
    `${name}-${step.host}-config`,
    { ...common, text },
    { parent, dependsOn: [key, member.bootstrap] },
  );
  return { key, config };
}

/**
 * The WireGuard mesh: on every host, the private key in `wg0.key` and the
 * interface `wg0` configured with one peer per host of the topology.
 * Each command's trigger is a hash of what it installs, so a host whose
 * configuration did not change runs nothing. Made with `WireGuardMesh.define`.
 */
export class WireGuardMesh extends pulumi.ComponentResource {
  /** The command that configures `wg0` on each host: depend on it to run after the tunnel is up. */
  public readonly members: ReadonlyMap<string, command.remote.Command>;
  /** Both commands of each host (its key, then its configuration): what its health gate watches. */
  public readonly commands: ReadonlyMap<string, readonly command.remote.Command[]>;
  /** Each host's WireGuard public key. */
  public readonly publicKeys: ReadonlyMap<string, pulumi.Output<string>>;
  private readonly configs = new Map<string, command.remote.Command>();
  private readonly both = new Map<string, readonly command.remote.Command[]>();

  /**
   * The mesh and its commands, host by host in the step's order, letting each
   * host's registrations go on before the next host's commands are defined
   * (see `nextTurn`): a full mesh of 250 hosts defines 500 commands here, each
   * configuration listing every peer.
   */
  static async define(
    name: string,
    args: WireGuardMeshArgs,
    opts?: pulumi.ComponentResourceOptions,
  ): Promise<WireGuardMesh> {
    const mesh = new WireGuardMesh(name, args, opts);
    const identities = meshIdentities(args);
    for (const h of args.step.hosts) {
      await nextTurn();
      const c = meshMemberCommands(name, mesh, h, args.members.get(h.host) as MeshMember, identities(h));
      mesh.configs.set(h.host, c.config);
      mesh.both.set(h.host, [c.key, c.config]);
    }
    mesh.registerOutputs({ publicKeys: Object.fromEntries(mesh.publicKeys) });
    return mesh;
  }

  private constructor(name: string, args: WireGuardMeshArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:wireguard:Mesh", name, {}, opts);
    this.members = this.configs;
    this.commands = this.both;
    this.publicKeys = new Map(
      args.step.hosts.map((h) => [h.host, (args.members.get(h.host) as MeshMember).keypair.publicKey]),
    );
  }
}

/**
 * The peers' keys and endpoints each host's configuration is rendered from,
 * as one Output per host.
 */
function meshIdentities(
  args: WireGuardMeshArgs,
): (step: WireGuardConfigStep) => pulumi.Output<Record<string, PeerIdentity>> {
  const member = (host: string) => args.members.get(host) as MeshMember;
  const identityOf = new Map(
    args.step.hosts.map((h) => [
      h.host,
      pulumi
        .all([member(h.host).keypair.publicKey, member(h.host).endpoint, member(h.host).endpoint6])
        .apply(([publicKey, endpoint, endpoint6]): PeerIdentity => ({
          publicKey,
          endpoint,
          ...(endpoint6 !== undefined ? { endpoint6 } : {}),
        })),
    ]),
  );
  // Every host's identity, resolved once. A host that peers with every other host (a full mesh, or
  // the hub) reads its peers from it: combining the peers' Outputs host by host would build
  // hosts² Outputs, which dominated evaluation time and memory in large full meshes. Its
  // dependencies are the same, as the host's own key and address are inputs of its command anyway.
  let everyone: pulumi.Output<Record<string, PeerIdentity>> | undefined;
  return (step) => {
    if (step.everyHost) {
      everyone ??= pulumi.all(Object.fromEntries(identityOf));
      return everyone;
    }
    return pulumi.all(
      Object.fromEntries(
        step.peers.map((p) => [p.name, identityOf.get(p.name) as pulumi.Output<PeerIdentity>]),
      ),
    );
  };
}

import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { HealthConfig } from "../config/health";
import { FleetPlan, HostPlan } from "../config/model";
import {
  healthExpectations,
  healthGateStep,
  healthInstallScript,
  healthTeardownScript,
  renderHealthConfig,
  renderHealthProgram,
  renderMetricsService,
  renderMetricsTimer,
} from "../templates/health";
import { sha256 } from "../templates/shell";
import { hostCommand, SshConnection } from "./remote";

export interface HealthGateArgs {
  /** The host the gate checks. */
  readonly host: HostPlan;
  /** The fleet plan: the mesh addresses of the host's peers. */
  readonly plan: FleetPlan;
  /** Thresholds, metrics settings, and whether the gate runs at all. */
  readonly health: HealthConfig;
  /** WireGuard public key of every host (at least of this host's peers), by host name. */
  readonly publicKeys: ReadonlyMap<string, pulumi.Input<string>>;
  /** The host's SSH connection (secret). */
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user; scripts run through `sudo -n` unless it is root. */
  readonly user: string;
  /**
   * What changed on the host in this deployment: the trigger of every
   * command of the host (see `commandChanges`). The gate re-runs when any of
   * them changes, and only then, so a converge that changes nothing checks
   * nothing. Defaults to none: the gate then re-runs only when its own
   * expectations change.
   */
  readonly changes?: pulumi.Input<string>[];
}

/**
 * What identifies the current version of each command among `resources`, for
 * `HealthGate.changes`: its triggers (hostCommand's owner hash). Resources
 * that are not remote commands (components, servers) are skipped.
 */
export function commandChanges(resources: readonly pulumi.Resource[]): pulumi.Output<string>[] {
  return resources
    .filter((r): r is command.remote.Command => r instanceof command.remote.Command)
    .map((c) => c.triggers.apply((t) => JSON.stringify(t ?? [])));
}

const resolvedKeys = new WeakMap<
  ReadonlyMap<string, pulumi.Input<string>>,
  pulumi.Output<Readonly<Record<string, string>>>
>();

/** Every key of `publicKeys` resolved into one record, once per map: the gates of a fleet share it. */
function everyKey(
  publicKeys: ReadonlyMap<string, pulumi.Input<string>>,
): pulumi.Output<Readonly<Record<string, string>>> {
  let resolved = resolvedKeys.get(publicKeys);
  if (resolved === undefined) {
    resolved = pulumi.output(Object.fromEntries(publicKeys)) as pulumi.Output<
      Readonly<Record<string, string>>
    >;
    resolvedKeys.set(publicKeys, resolved);
  }
  return resolved;
}

/**
 * Health of one host: installs `swarm-health` with the host's expectations
 * and the timer that exports its state as node exporter textfile metrics,
 * then (unless disabled) runs the gate, which fails the deployment naming
 * every peer, mount or sync that is not healthy.
 *
 * Pass every command of the host (and the mesh commands of its peers) in
 * `opts.dependsOn`: the gate must run after the host has converged and its
 * peers can answer a handshake.
 */
export class HealthGate extends pulumi.ComponentResource {
  /**
   * Installs the program, the expectation file and the metrics units, then
   * (unless `health.gate` is false) runs `swarm-health gate`.
   */
  public readonly install: command.remote.Command;

  constructor(name: string, args: HealthGateArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:health:Gate", name, {}, opts);
    const { host, plan, health } = args;
    const keys = host.peers.map((peer) => {
      const key = args.publicKeys.get(peer.name);
      if (key === undefined) {
        throw new pulumi.ResourceError(
          `the health gate of ${host.name} needs the WireGuard public key of its peer ${peer.name}; pass every host's key in publicKeys`,
          this,
        );
      }
      return key;
    });
    // A host that peers with every other host reads its peers' keys from all keys resolved once
    // (see everyKey): combining them gate by gate would build hosts² Outputs in a full mesh. Its
    // dependencies gain only its own key, which its WireGuard command, and so its gate, depends on.
    const peerKeys: pulumi.Output<Readonly<Record<string, string>>> =
      host.peers.length === plan.hosts.length - 1
        ? everyKey(args.publicKeys)
        : pulumi
            .all(keys)
            .apply((resolved) => Object.fromEntries(host.peers.map((peer, i) => [peer.name, resolved[i]])));
    const expectations = peerKeys.apply((keys) => healthExpectations(plan, host.name, health, keys));
    // A component's dependencies do not hold back its children, so the command waits for them
    // itself; the SDK flattens nested lists and Outputs of dependencies.
    const after = [opts?.dependsOn ?? []] as unknown as pulumi.Input<pulumi.Resource>[];

    const installHash = expectations.apply((values) =>
      sha256(
        [
          renderHealthProgram(),
          renderHealthConfig(values),
          renderMetricsService(),
          renderMetricsTimer(values.thresholds.metricsInterval),
        ].join("\0"),
      ),
    );
    // One command installs and then gates: the install step is idempotent, so running it again
    // whenever the gate runs costs nothing, and a host has one health command instead of two. It
    // keeps the install command's name, so a stack converged with two commands keeps its owner
    // marker and the install's teardown never runs on the way.
    const ownerHash = health.gate
      ? pulumi
          .all([installHash, ...(args.changes ?? [])])
          .apply(([install, ...changes]) =>
            sha256([healthGateStep(host.name), install, ...changes].join("\0")),
          )
      : installHash;
    this.install = hostCommand(
      `${name}-install`,
      {
        connection: args.connection,
        user: args.user,
        script: expectations.apply((values) => healthInstallScript(values, health.gate)),
        teardown: healthTeardownScript(health.textfileDir),
        ownerHash,
      },
      { parent: this, dependsOn: after },
    );
    this.registerOutputs({ install: this.install });
  }
}

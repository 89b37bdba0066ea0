import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { HealthStep } from "../config/plan";
import {
  DRIFT_PROGRAM_PATH,
  HealthExpectations,
  healthGateStep,
  healthInstallScript,
  healthTeardownScript,
  renderDriftProgram,
  renderHealthConfig,
  renderHealthProgram,
  renderMetricsService,
  renderMetricsTimer,
} from "../templates/health";
import { sha256 } from "../templates/shell";
import { HostDrift } from "./hostDrift";
import { hostCommand, SshConnection, StepText } from "./remote";

export interface HealthGateArgs {
  /** The host's expectations and thresholds, resolved; its peers' keys are filled in here. */
  readonly step: HealthStep;
  /** WireGuard public key of every host (at least of this host's peers), by host name. */
  readonly publicKeys: ReadonlyMap<string, pulumi.Input<string>>;
  /** The host's SSH connection (secret). */
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user; scripts run through `sudo -n` unless it is root. */
  readonly user: string;
  /** The stack's `swarm:repairs`: raising a command's generation re-runs that command. */
  readonly repairs?: Readonly<Record<string, number>>;
  /**
   * What changed on the host in this deployment: the trigger of every
   * command of the host (see `commandChanges`). The gate re-runs when any of
   * them changes, and only then, so a converge that changes nothing checks
   * nothing. Defaults to none: the gate then re-runs only when its own
   * expectations change.
   */
  readonly changes?: pulumi.Output<readonly string[]>;
  /**
   * What the gate runs after: every command of the host and the WireGuard
   * command of every peer. Only the gate's command depends on them; the
   * component would hold nothing back with them (a component's
   * dependencies do not hold back its children), and registering them
   * twice doubled the hosts² dependencies of a full mesh.
   */
  readonly after?: readonly pulumi.Resource[];
}

/** The install script of a host's health step and the hash of what it installs, once its peers' keys are known. */
export function healthInstall(
  step: HealthStep,
  keys: Readonly<Record<string, string>>,
): { readonly script: string; readonly installHash: string } {
  const values: HealthExpectations = {
    ...step.expectations,
    peers: step.expectations.peers.map((p) => ({ ...p, publicKey: keys[p.name] })),
  };
  return {
    script: healthInstallScript(values, step.health.gate),
    installHash: sha256(
      [
        renderHealthProgram(),
        renderDriftProgram(),
        renderHealthConfig(values),
        renderMetricsService(),
        renderMetricsTimer(values.thresholds.metricsInterval),
      ].join("\0"),
    ),
  };
}

/**
 * What identifies the current version of each command among `resources`, for
 * `HealthGate.changes`: its triggers (hostCommand's owner hash). Resources
 * that are not remote commands (components, servers) are skipped.
 */
export function commandChanges(resources: readonly pulumi.Resource[]): pulumi.Output<readonly string[]> {
  const commands = resources.filter((r): r is command.remote.Command => r instanceof command.remote.Command);
  return pulumi.all(commands.map((c) => c.triggers)).apply((all) => all.map(triggerText));
}

/** A command's triggers as one string. */
const triggerText = (triggers: readonly unknown[] | undefined) => JSON.stringify(triggers ?? []);

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
 * `args.after`: the gate must run after the host has converged and its
 * peers can answer a handshake.
 */
export class HealthGate extends pulumi.ComponentResource {
  /**
   * Installs the program, the expectation file and the metrics units, then
   * (unless `health.gate` is false) runs `swarm-health gate`.
   */
  public readonly install: command.remote.Command;
  /** What differs on the host from what swarm installed, read after each change there and by every refresh. */
  public readonly drift: HostDrift;

  constructor(name: string, args: HealthGateArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:health:Gate", name, {}, opts);
    const { step } = args;
    // A host that peers with every other host reads its peers' keys from all keys resolved once
    // (see everyKey): combining them gate by gate would build hosts² Outputs in a full mesh. Its
    // dependencies gain only its own key, which its WireGuard command, and so its gate, depends on.
    const peerKeys: pulumi.Output<Readonly<Record<string, string>>> = step.everyHost
      ? everyKey(args.publicKeys)
      : pulumi.all(
          Object.fromEntries(
            step.expectations.peers.map((p) => [p.name, args.publicKeys.get(p.name) as pulumi.Input<string>]),
          ),
        );
    const teardown = healthTeardownScript(step.health.textfileDir);
    const changes = args.changes ?? pulumi.output([] as readonly string[]);
    // One command installs and then gates: the install step is idempotent, so running it again
    // whenever the gate runs costs nothing, and a host has one health command instead of two. It
    // keeps the install command's name, so a stack converged with two commands keeps its owner
    // marker and the install's teardown never runs on the way. Its script, owner hash and
    // teardown are one Output, so the command carries its peers' dependencies in one Output per
    // property.
    const text: pulumi.Output<StepText> = step.health.gate
      ? pulumi.all([peerKeys, changes]).apply(([keys, changed]) => {
          const { script, installHash } = healthInstall(step, keys);
          return {
            script,
            ownerHash: sha256([healthGateStep(step.host), installHash, ...changed].join("\0")),
            teardown,
          };
        })
      : peerKeys.apply((keys) => {
          const { script, installHash } = healthInstall(step, keys);
          return { script, ownerHash: installHash, teardown };
        });
    this.install = hostCommand(
      `${name}-install`,
      {
        connection: args.connection,
        user: args.user,
        repairs: args.repairs,
        text,
      },
      { parent: this, dependsOn: [...(args.after ?? [])] },
    );
    // Read after every change on the host (and so after every repair), and by every refresh.
    this.drift = new HostDrift(
      `${name}-drift`,
      {
        host: step.host,
        connection: args.connection,
        program: DRIFT_PROGRAM_PATH,
        after: pulumi
          .all([this.install.triggers, changes])
          .apply(([triggers, changed]) => sha256([triggerText(triggers), ...changed].join("\0"))),
      },
      { parent: this, dependsOn: [this.install], additionalSecretOutputs: ["connection"] },
    );
    this.registerOutputs({ install: this.install, drift: this.drift });
  }
}

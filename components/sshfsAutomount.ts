import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { MountStep } from "../config/plan";
import {
  automountScript,
  automountTeardownScript,
  clientKeyScript,
  clientKeyTeardownScript,
  mountUnitNames,
} from "../templates/sshfs";
import { hashedText, hostCommand, keyText, SshConnection } from "./remote";
import { SshKeypair } from "./sshKeypair";

export interface SshfsAutomountArgs {
  /** The mount, its export and server, resolved. */
  readonly step: MountStep;
  /** The export host's SSH host key (`MeshfsExport.hostKey`), pinned on this host. */
  readonly serverHostKey: pulumi.Input<string>;
  /** This host's key for the export; the export authorizes its public half. */
  readonly clientKey: SshKeypair;
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user of the connection; scripts run through sudo unless it is root. */
  readonly user: string;
  /** The stack's `swarm:repairs`: raising a command's generation re-runs that command. */
  readonly repairs?: Readonly<Record<string, number>>;
}

/**
 * An export mounted on a client by systemd: a `.mount` unit (sshfs over the
 * mesh, the server's host key pinned, bound to the WireGuard unit) and an
 * `.automount` unit that mounts it on first access and unmounts it when idle.
 */
export class SshfsAutomount extends pulumi.ComponentResource {
  /** The units command: depend on it to use the mount. */
  public readonly ready: pulumi.Resource;
  /** Every remote command of the component, in order: the health gate re-runs when any of them changes. */
  public readonly commands: readonly command.remote.Command[];
  /** The automount unit, e.g. `mnt-meshfs.automount`. */
  public readonly unitName: string;
  /** The mount unit, e.g. `mnt-meshfs.mount`. */
  public readonly mountUnitName: string;

  constructor(name: string, args: SshfsAutomountArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:meshfs:Automount", name, {}, opts);
    const { step } = args;
    const plan = step.units;
    const exportName = step.export.name;
    const units = mountUnitNames(plan.path);
    const common = { connection: args.connection, user: args.user, repairs: args.repairs };

    const keyScript = clientKeyScript(exportName);
    const key = hostCommand(
      `${name}-key`,
      {
        ...common,
        stdin: args.clientKey.privateKey,
        text: keyText(keyScript, args.clientKey.publicKey, clientKeyTeardownScript(exportName)),
        secret: true,
      },
      { parent: this },
    );

    const script = pulumi
      .output(args.serverHostKey)
      .apply((hostKey) => automountScript(step.host, plan, hostKey));
    const unitsCommand = hostCommand(
      `${name}-units`,
      { ...common, text: hashedText(script, automountTeardownScript(plan)) },
      { parent: this, dependsOn: [key] },
    );

    this.ready = unitsCommand;
    this.commands = [key, unitsCommand];
    this.unitName = units.automount;
    this.mountUnitName = units.mount;
    this.registerOutputs({ unitName: this.unitName, mountUnitName: this.mountUnitName });
  }
}

import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { SyncStep } from "../config/plan";
import {
  syncInstallScript,
  syncKeyScript,
  syncTeardownScript,
  syncUnitNames,
  syncWatchKeyScript,
  syncWatchKeyTeardownScript,
} from "../templates/unison";
import { hashedText, hostCommand, keyText, SshConnection } from "./remote";
import { SshKeypair } from "./sshKeypair";

export interface UnisonSyncArgs {
  /** The sync, its remote root, mount, export and server, resolved. */
  readonly step: SyncStep;
  /** In ssh:// mode: the export host's SSH host key (`MeshfsExport.hostKey`) and this host's key for the export. */
  readonly ssh?: {
    readonly serverHostKey: pulumi.Input<string>;
    readonly clientKey: SshKeypair;
  };
  /** In watch mode: the key that follows the remote root on the export host, which authorizes its public half. */
  readonly watchKey?: SshKeypair;
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user of the connection; scripts run through sudo unless it is root. */
  readonly user: string;
  /** The stack's `swarm:repairs`: raising a command's generation re-runs that command. */
  readonly repairs?: Readonly<Record<string, number>>;
}

/**
 * A two-way unison sync on a host: a profile, a guarded oneshot service and
 * a timer (and, in watch mode, watchers that start the service on changes to
 * the local root and, through the export host, to the remote root). Conflicts are skipped and recorded, never resolved by
 * overwriting; a root that is missing, unmounted or replaced stops the sync.
 */
export class UnisonSync extends pulumi.ComponentResource {
  /** The units command: the sync is installed and its timer started. */
  public readonly ready: pulumi.Resource;
  /** Every remote command of the component, in order: the health gate re-runs when any of them changes. */
  public readonly commands: readonly command.remote.Command[];
  /** The timer unit, e.g. `swarm-sync-wiki.timer`. */
  public readonly timerName: string;
  /** The service unit, e.g. `swarm-sync-wiki.service`. */
  public readonly serviceName: string;

  constructor(name: string, args: UnisonSyncArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:sync:Unison", name, {}, opts);
    const { step, ssh } = args;
    const sync = step.sync;
    const common = { connection: args.connection, user: args.user, repairs: args.repairs };

    const dependsOn: command.remote.Command[] = [];
    if (ssh !== undefined) {
      const keyScript = syncKeyScript(sync.host, sync.name, sync.user);
      const key = hostCommand(
        `${name}-key`,
        {
          ...common,
          stdin: ssh.clientKey.privateKey,
          text: keyText(keyScript, ssh.clientKey.publicKey),
          secret: true,
        },
        { parent: this },
      );
      dependsOn.push(key);
    }
    if (args.watchKey !== undefined) {
      const watchKey = args.watchKey;
      const keyScript = syncWatchKeyScript(sync.name);
      dependsOn.push(
        hostCommand(
          `${name}-watch-key`,
          {
            ...common,
            stdin: watchKey.privateKey,
            text: keyText(keyScript, watchKey.publicKey, syncWatchKeyTeardownScript(sync.name)),
            secret: true,
          },
          { parent: this },
        ),
      );
    }

    const teardown = syncTeardownScript(sync.name);
    const unitsCommand = hostCommand(
      `${name}-units`,
      {
        ...common,
        text: hashedText(
          ssh === undefined
            ? syncInstallScript(sync.host, step.units, undefined)
            : pulumi.output(ssh.serverHostKey).apply((key) => syncInstallScript(sync.host, step.units, key)),
          teardown,
        ),
      },
      { parent: this, dependsOn },
    );

    const units = syncUnitNames(sync.name);
    this.ready = unitsCommand;
    this.commands = [...dependsOn, unitsCommand];
    this.timerName = units.timer;
    this.serviceName = units.service;
    this.registerOutputs({ timerName: this.timerName, serviceName: this.serviceName });
  }
}

import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ExportConfig, MountConfig, SyncConfig } from "../config/types";
import { sha256 } from "../templates/shell";
import { normalizePath } from "../templates/systemd";
import {
  RemoteRoot,
  syncInstallScript,
  syncKeyScript,
  SyncPlan,
  syncTeardownScript,
  syncUnitNames,
} from "../templates/unison";
import { hostCommand, SshConnection } from "./remote";
import { SshKeypair } from "./sshKeypair";

/** The export a sync reaches with unison's `ssh://` mode. */
export interface UnisonRemoteExport {
  readonly export: ExportConfig;
  readonly serverMeshAddress: string;
  /** The export host's SSH host key (`MeshfsExport.hostKey`), pinned for the sync. */
  readonly serverHostKey: pulumi.Input<string>;
  /** This host's key for the export; the export authorizes its public half for `unison -server`. */
  readonly clientKey: SshKeypair;
}

export interface UnisonSyncArgs {
  readonly sync: SyncConfig;
  /** The mount of this host that holds `sync.remote.mountPath`. Required in mount mode. */
  readonly mount?: MountConfig;
  /** The export reached over `ssh://`. Required when `sync.remote.export` is set. */
  readonly remoteExport?: UnisonRemoteExport;
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user of the connection; scripts run through sudo unless it is root. */
  readonly user: string;
}

function isInside(path: string, root: string): boolean {
  return path === root || path.startsWith(root === "/" ? "/" : `${root}/`);
}

/**
 * A two-way unison sync on a host: a profile, a guarded oneshot service and
 * a timer (and, in watch mode, a watcher that starts the service on local
 * changes). Conflicts are skipped and recorded, never resolved by
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
    const sync = args.sync;
    const remote = this.remoteRoot(args);
    const plan: SyncPlan = {
      name: sync.name,
      user: sync.user,
      local: normalizePath(sync.local),
      remote,
      interval: sync.interval,
      timeout: sync.timeout,
      ignore: sync.ignore,
      watch: sync.watch,
    };
    const units = syncUnitNames(sync.name);
    const common = { connection: args.connection, user: args.user };

    const dependsOn: command.remote.Command[] = [];
    let hostKey: pulumi.Input<string | undefined> = undefined;
    if (args.remoteExport !== undefined) {
      const keyScript = syncKeyScript(sync.host, sync.name, sync.user);
      const key = hostCommand(
        `${name}-key`,
        {
          ...common,
          script: keyScript,
          stdin: args.remoteExport.clientKey.privateKey,
          ownerHash: args.remoteExport.clientKey.publicKey.apply((publicKey) =>
            sha256(`${keyScript}\n${publicKey}`),
          ),
          secret: true,
        },
        { parent: this },
      );
      dependsOn.push(key);
      hostKey = args.remoteExport.serverHostKey;
    }

    const script = pulumi.output(hostKey).apply((key) => syncInstallScript(sync.host, plan, key));
    const unitsCommand = hostCommand(
      `${name}-units`,
      {
        ...common,
        script,
        teardown: syncTeardownScript(sync.name),
        ownerHash: script.apply(sha256),
      },
      { parent: this, dependsOn },
    );

    this.ready = unitsCommand;
    this.commands = [...dependsOn, unitsCommand];
    this.timerName = units.timer;
    this.serviceName = units.service;
    this.registerOutputs({ timerName: this.timerName, serviceName: this.serviceName });
  }

  private remoteRoot(args: UnisonSyncArgs): RemoteRoot {
    const sync = args.sync;
    const where = `sync ${sync.name} on ${sync.host}`;
    if (sync.remote.mountPath !== undefined) {
      const path = normalizePath(sync.remote.mountPath);
      const mount = args.mount;
      if (mount === undefined || !isInside(path, normalizePath(mount.path))) {
        throw new pulumi.ResourceError(
          `${where} has its remote root ${path} in no mount of ${sync.host}: add a mount of the export there, or fix remote.mountPath`,
          this,
        );
      }
      return { kind: "mount", path, mountPath: normalizePath(mount.path), exportName: mount.export };
    }
    const remote = args.remoteExport;
    if (
      sync.remote.export === undefined ||
      remote === undefined ||
      remote.export.name !== sync.remote.export
    ) {
      throw new pulumi.ResourceError(
        `${where} names neither a mount path nor a reachable export: set remote.mountPath, or remote.export and remote.path`,
        this,
      );
    }
    const relative = (sync.remote.path ?? "").replace(/^\/+/, "");
    return {
      kind: "ssh",
      exportName: remote.export.name,
      exportUser: remote.export.user,
      serverMeshAddress: remote.serverMeshAddress,
      serverPath: normalizePath(`${remote.export.mountpoint}/${relative}`),
    };
  }
}

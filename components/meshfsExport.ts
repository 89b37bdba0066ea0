import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ExportStep, ExportWatcher } from "../config/plan";
import { watchInstallScript, watchTeardownScript } from "../templates/meshfsWatch";
import { ed25519Key, sftpScript, sftpTeardownScript } from "../templates/sftp";
import { shellQuote } from "../templates/shell";
import { snapshotsInstallScript, snapshotsTeardownScript, zfsScript } from "../templates/zfs";
import { commandRecord, scrubInstallPart, scrubTeardownPart } from "../templates/scrub";
import { hashedText, hostCommand, SshConnection } from "./remote";

export interface MeshfsExportArgs {
  /** The export, its clients, its ssh:// sync servers and its directories, resolved. */
  readonly step: ExportStep;
  /** Each client's and sync server's key for this export (`ssh-ed25519 AAAA...`), by host name. */
  readonly clientKeys: ReadonlyMap<string, pulumi.Input<string>>;
  /** Each watched sync's watch key (`ssh-ed25519 AAAA...`), by `exportWatcherId` of the step's watchers. */
  readonly watchKeys?: ReadonlyMap<string, pulumi.Input<string>>;
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user of the connection; scripts run through sudo unless it is root. */
  readonly user: string;
  /** The stack's `swarm:repairs`: raising a command's generation re-runs that command. */
  readonly repairs?: Readonly<Record<string, number>>;
  /** The host's volume device, which stands for `volume` in `pool.devices`. */
  readonly volumeDevice?: pulumi.Input<string>;
}

/** The sftp step's script, from the export step and the clients' public keys. */
export function exportSftpScript(step: ExportStep, keys: Readonly<Record<string, string>>): string {
  return sftpScript({
    ...step.sftp,
    clients: step.clients.map((c) => ({ ...c, publicKey: keys[c.name] })),
    unisonClients: step.syncServers.map((c) => ({ ...c, publicKey: keys[c.name] })),
  });
}

/** A watched sync's key among an export's watch keys: its host and name. */
export function exportWatcherId(watcher: Pick<ExportWatcher, "name" | "sync">): string {
  return `${watcher.name}/${watcher.sync}`;
}

/** The watch step's script, from the export step and the watched syncs' public keys by `exportWatcherId`. */
export function exportWatchScript(step: ExportStep, keys: Readonly<Record<string, string>>): string {
  return watchInstallScript({
    host: step.host,
    exportName: step.export.name,
    meshAddress: step.server.meshAddress,
    mountpoint: step.export.mountpoint,
    clients: step.watchers.map((w) => ({ ...w, publicKey: keys[exportWatcherId(w)] })),
  });
}

const HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub";

/** Prints the export host's ed25519 host key, which clients pin. */
function readHostKeyScript(host: string): string {
  return `set -euo pipefail
[ -s ${HOST_KEY_FILE} ] || { echo "swarm: ${host}: ${HOST_KEY_FILE} is missing: run ssh-keygen -A" >&2; exit 1; }
cut -d' ' -f1,2 ${shellQuote(HOST_KEY_FILE)}
`;
}

/**
 * A ZFS (OpenZFS) dataset on its host, served to the mesh over sftp: pool and
 * dataset converged (the properties that differ in one `zfs set`), a
 * sentinel at the dataset root, a snapshot timer that prunes only its own
 * snapshots, a scrub timer for the pool, an export user whose keys work
 * only from the clients' mesh addresses, only over the mesh, and only for
 * sftp inside the dataset, and, while syncs in watch mode follow it, a watch
 * user whose keys can only report that something changed in their directory.
 */
export class MeshfsExport extends pulumi.ComponentResource {
  /** The export host's SSH host key, `ssh-ed25519 AAAA...`: clients pin it. */
  public readonly hostKey: pulumi.Output<string>;
  /** The last step: depend on it to use the export. */
  public readonly ready: pulumi.Resource;
  /** Every remote command of the component, in order: the health gate re-runs when any of them changes. */
  public readonly commands: readonly command.remote.Command[];

  constructor(name: string, args: MeshfsExportArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:meshfs:Export", name, {}, opts);
    const { step } = args;
    const common = { connection: args.connection, user: args.user, repairs: args.repairs };

    const zfs = step.usesVolume
      ? pulumi
          .output(args.volumeDevice as pulumi.Input<string>)
          .apply((volume) =>
            zfsScript({ ...step.zfs, devices: step.zfs.devices.map((d) => (d === "volume" ? volume : d)) }),
          )
      : zfsScript(step.zfs);
    const zfsCommand = hostCommand(
      `${name}-zfs`,
      // No teardown: removing an export from the config must never destroy its data.
      { ...common, text: hashedText(zfs) },
      { parent: this },
    );

    const hosts = [...step.clients, ...step.syncServers].map((c) => c.name);
    const sftp = pulumi
      .all(Object.fromEntries(hosts.map((h) => [h, args.clientKeys.get(h) as pulumi.Input<string>])))
      .apply((keys) => exportSftpScript(step, keys));
    const sftpCommand = hostCommand(
      `${name}-sftp`,
      {
        ...common,
        text: hashedText(sftp, sftpTeardownScript(step.export.name, step.export.user)),
      },
      { parent: this, dependsOn: [zfsCommand] },
    );

    // Watched syncs follow the dataset through a user of their own; the command exists while one does,
    // and its teardown takes the keys and the drop-in away when the last one goes.
    const watchCommands: command.remote.Command[] = [];
    if (step.watchers.length > 0) {
      const ids = step.watchers.map(exportWatcherId);
      const watch = pulumi
        .all(Object.fromEntries(ids.map((id) => [id, args.watchKeys?.get(id) as pulumi.Input<string>])))
        .apply((keys) => exportWatchScript(step, keys));
      watchCommands.push(
        hostCommand(
          `${name}-watch`,
          {
            ...common,
            text: hashedText(watch, watchTeardownScript(step.export.name)),
          },
          // The watched directories are the sftp step's.
          { parent: this, dependsOn: [sftpCommand] },
        ),
      );
    }

    // The pool's scrub rides along: it is the pool's upkeep as the snapshots are the dataset's, and
    // both are timers whose teardown must go with the export.
    const snapshotsName = `${name}-snapshots`;
    const record = commandRecord(snapshotsName);
    const snapshots = `${snapshotsInstallScript(step.host, step.snapshots)}\n${scrubInstallPart(step.scrub, record)}`;
    const snapshotsCommand = hostCommand(
      snapshotsName,
      {
        ...common,
        text: hashedText(
          snapshots,
          `${snapshotsTeardownScript(step.export.name)}${scrubTeardownPart(record)}`,
        ),
      },
      { parent: this, dependsOn: [zfsCommand] },
    );

    const readHostKey = readHostKeyScript(step.host);
    const hostKeyCommand: command.remote.Command = hostCommand(
      `${name}-hostkey`,
      { ...common, text: hashedText(readHostKey) },
      { parent: this, dependsOn: [sftpCommand, ...watchCommands, snapshotsCommand] },
    );
    this.hostKey = hostKeyCommand.stdout.apply((out) =>
      ed25519Key(out, `the host key of ${step.host} (${HOST_KEY_FILE})`),
    );
    this.ready = hostKeyCommand;
    this.commands = [zfsCommand, sftpCommand, ...watchCommands, snapshotsCommand, hostKeyCommand];
    this.registerOutputs({ hostKey: this.hostKey });
  }
}

import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { HostPlan } from "../config/model";
import { ExportConfig, FleetConfig } from "../config/types";
import { ed25519Key, SftpPlan, sftpScript, sftpTeardownScript } from "../templates/sftp";
import { sha256, shellQuote } from "../templates/shell";
import { snapshotsInstallScript, snapshotsTeardownScript, zfsScript } from "../templates/zfs";
import { hostCommand, SshConnection } from "./remote";

/** A host that mounts the export with sshfs. */
export interface MeshfsClient {
  /** Host name. */
  readonly name: string;
  readonly meshAddress: string;
  /** The host's client key for this export, `ssh-ed25519 AAAA...`. */
  readonly publicKey: pulumi.Input<string>;
}

/** A host that syncs with the export in unison's `ssh://` mode (it must not also mount the export). */
export interface MeshfsSyncServer extends MeshfsClient {
  /** Name of the sync on that host. */
  readonly sync: string;
  /** The sync's remote root, relative to the dataset root, e.g. `wiki`. */
  readonly path: string;
}

export interface MeshfsExportArgs {
  readonly export: ExportConfig;
  /** The export host. */
  readonly host: HostPlan;
  /** Hosts that mount the export: each gets an sftp-only key line limited to its mesh address. */
  readonly clients: readonly MeshfsClient[];
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user of the connection; scripts run through sudo unless it is root. */
  readonly user: string;
  /** The host's volume device, which stands for `volume` in `pool.devices`. Required when that is used. */
  readonly volumeDevice?: pulumi.Input<string>;
  /** Hosts reaching the export with unison's `ssh://` mode. Defaults to none. */
  readonly syncServers?: readonly MeshfsSyncServer[];
  /**
   * Directories inside the dataset (relative paths) created for the export user, typically the
   * remote roots of syncs (see `exportDirectories`): clients cannot create entries at the dataset
   * root, which sshd requires to be root-owned for the chroot. Defaults to none.
   */
  readonly directories?: readonly string[];
}

function normalizeRelative(path: string): string {
  return path
    .split("/")
    .filter((p) => p !== "" && p !== ".")
    .join("/");
}

/**
 * The directories of an export that syncs on its clients use as remote roots,
 * relative to the dataset root and sorted: what `MeshfsExportArgs.directories`
 * should be. A sync whose remote root is the mount root itself needs none.
 */
export function exportDirectories(config: FleetConfig, exportName: string): string[] {
  const found = new Set<string>();
  for (const sync of config.syncs) {
    const mountPath = sync.remote.mountPath;
    if (mountPath === undefined) {
      continue;
    }
    const mount = config.mounts.find(
      (m) =>
        m.host === sync.host &&
        m.export === exportName &&
        (mountPath === m.path || mountPath.startsWith(`${m.path}/`)),
    );
    const relative = mount === undefined ? "" : normalizeRelative(mountPath.slice(mount.path.length));
    if (relative !== "") {
      found.add(relative);
    }
  }
  // ssh:// roots are not listed: the sftp step creates and marks them itself (`syncServers`), and a
  // directory made here first would look like an emptied root it must not mark.
  return [...found].sort();
}

/** Each directory and its parents, so every level is created for the export user. */
function withParents(directories: readonly string[]): string[] {
  const all = new Set<string>();
  for (const dir of directories) {
    const parts = normalizeRelative(dir).split("/");
    if (parts.includes("..")) {
      throw new Error(
        `export directory ${JSON.stringify(dir)} must stay inside the dataset: remove the ".."`,
      );
    }
    parts.forEach((_, i) => all.add(parts.slice(0, i + 1).join("/")));
  }
  return [...all].filter((d) => d !== "").sort();
}

/**
 * A ZFS (OpenZFS) dataset on its host, served to the mesh over sftp: pool and
 * dataset converged (the properties that differ in one `zfs set`), a
 * sentinel at the dataset root, a snapshot timer that prunes only its own
 * snapshots, and an export user whose keys work only from the clients' mesh
 * addresses, only over the mesh, and only for sftp inside the dataset.
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
    const exported = args.export;
    const host = args.host.name;
    const usesVolume = exported.pool.devices.includes("volume");
    if (usesVolume && args.volumeDevice === undefined) {
      throw new pulumi.ResourceError(
        `export ${exported.name} puts pool ${exported.pool.name} on "volume", but host ${host} has no volume: ` +
          `set hcloud.volumeSize on ${host}, or list device paths in pool.devices`,
        this,
      );
    }
    const common = { connection: args.connection, user: args.user };

    const zfs = pulumi.output(args.volumeDevice ?? "").apply((volume) =>
      zfsScript({
        host,
        exportName: exported.name,
        pool: exported.pool.name,
        devices: exported.pool.devices.map((d) => (d === "volume" ? volume : d)),
        fileSize: exported.pool.fileSize,
        dataset: exported.dataset,
        mountpoint: exported.mountpoint,
        properties: exported.properties,
      }),
    );
    const zfsCommand = hostCommand(
      `${name}-zfs`,
      // No teardown: removing an export from the config must never destroy its data.
      { ...common, script: zfs, ownerHash: zfs.apply(sha256) },
      { parent: this },
    );

    // A host that mounts the export at two paths still has one key and one line.
    const clients = args.clients.filter((c, i) => args.clients.findIndex((d) => d.name === c.name) === i);
    const syncServers = args.syncServers ?? [];
    const sftp = pulumi
      .all([pulumi.all(clients.map((c) => c.publicKey)), pulumi.all(syncServers.map((c) => c.publicKey))])
      .apply(([clientKeys, serverKeys]) => {
        const plan: SftpPlan = {
          host,
          exportName: exported.name,
          user: exported.user,
          meshAddress: args.host.meshAddress,
          mountpoint: exported.mountpoint,
          clients: clients.map((c, i) => ({
            name: c.name,
            meshAddress: c.meshAddress,
            publicKey: clientKeys[i],
          })),
          unisonClients: syncServers.map((c, i) => ({
            name: c.name,
            meshAddress: c.meshAddress,
            publicKey: serverKeys[i],
            sync: c.sync,
            path: normalizeRelative(c.path),
          })),
          directories: withParents(args.directories ?? []),
        };
        return sftpScript(plan);
      });
    const sftpCommand = hostCommand(
      `${name}-sftp`,
      {
        ...common,
        script: sftp,
        teardown: sftpTeardownScript(exported.name, exported.user),
        ownerHash: sftp.apply(sha256),
      },
      { parent: this, dependsOn: [zfsCommand] },
    );

    const snapshots = snapshotsInstallScript(host, {
      exportName: exported.name,
      dataset: exported.dataset,
      interval: exported.snapshots.interval,
      keep: exported.snapshots.keep,
    });
    const snapshotsCommand = hostCommand(
      `${name}-snapshots`,
      {
        ...common,
        script: snapshots,
        teardown: snapshotsTeardownScript(exported.name),
        ownerHash: sha256(snapshots),
      },
      { parent: this, dependsOn: [zfsCommand] },
    );

    const hostKeyFile = "/etc/ssh/ssh_host_ed25519_key.pub";
    const readHostKey = `set -euo pipefail
[ -s ${hostKeyFile} ] || { echo "swarm: ${host}: ${hostKeyFile} is missing: run ssh-keygen -A" >&2; exit 1; }
cut -d' ' -f1,2 ${shellQuote(hostKeyFile)}
`;
    const hostKeyCommand: command.remote.Command = hostCommand(
      `${name}-hostkey`,
      { ...common, script: readHostKey, ownerHash: sha256(readHostKey) },
      { parent: this, dependsOn: [sftpCommand, snapshotsCommand] },
    );
    this.hostKey = hostKeyCommand.stdout.apply((out) =>
      ed25519Key(out, `the host key of ${host} (${hostKeyFile})`),
    );
    this.ready = hostKeyCommand;
    this.commands = [zfsCommand, sftpCommand, snapshotsCommand, hostKeyCommand];
    this.registerOutputs({ hostKey: this.hostKey });
  }
}

/**
 * The fleet resolved into steps: per host, what it runs, as plain data with
 * every cross-reference resolved (a sync carries its mount, export and
 * server; a mount its export and server; an export its clients, its ssh://
 * sync servers and its directories). What is left to the components is only
 * what exists as a Pulumi Output: keys, host keys, connections and cloud
 * addresses.
 *
 * The lookups (sync → mount → export → server, "is this path inside that
 * one") are written here once; `resolveSyncRemote`, `mountHolding` and
 * `exportNamed` are exported so that validation can walk the same way and
 * report instead of throw.
 */
import type { HealthExpectations } from "../templates/health";
import type { SftpPlan } from "../templates/sftp";
import type { MountPlan } from "../templates/sshfs";
import { isInside, normalizePath } from "../templates/systemd";
import { hostKeyAlias, knownHostsPath } from "../templates/sshfs";
import { syncKnownHostsPath, type RemoteRoot, type SyncPlan } from "../templates/unison";
import { watchUser } from "../templates/meshfsWatch";
import type { SnapshotPlan, ZfsPlan } from "../templates/zfs";
import type { ScrubPlan } from "../templates/scrub";
import { replicaMaxLag, replicaRetention, type ReplicaPlan } from "../templates/replica";
import type { HealthConfig } from "./health";
import type { PeerPlan } from "./model";
import type {
  ExistingHostConfig,
  ExportConfig,
  FleetConfig,
  HcloudHostConfig,
  MountConfig,
  SyncConfig,
  WireGuardImplementation,
} from "./types";

/** The WireGuard unit everything that rides the mesh is ordered after. */
export const WIREGUARD_UNIT = "wg-quick@wg0.service";

/** Another host, as a step refers to it. */
export interface HostRef {
  readonly name: string;
  readonly meshAddress: string;
}

/** Where a host comes from: a Hetzner Cloud server the program creates, or a host given by address. */
export type Machine =
  | { readonly kind: "hcloud"; readonly config: HcloudHostConfig }
  | { readonly kind: "existing"; readonly config: ExistingHostConfig };

/** The host itself (cloud resources for an hcloud host) and the packages its roles need. */
export interface BootstrapStep {
  readonly kind: "bootstrap";
  /** Component name. */
  readonly name: string;
  readonly host: string;
  readonly machine: Machine;
  /** Debian packages, sorted. */
  readonly packages: readonly string[];
  /** WireGuard UDP port, opened in a cloud firewall. */
  readonly listenPort: number;
  /** CIDRs allowed to reach SSH through a cloud firewall. */
  readonly sshSourceCidrs: readonly string[];
}

/** The host's WireGuard key pair, generated in the program. */
export interface WireGuardKeyStep {
  readonly kind: "wireguardKey";
  readonly name: string;
  readonly host: string;
  /** Change to rotate the key. */
  readonly rotation: string;
}

/** A peer on a host's interface. */
export interface WireGuardPeerStep extends PeerPlan {
  readonly meshAddress: string;
}

/** `wg0.key` and `wg0.conf` on one host: everything but the keys and the peers' endpoints. */
export interface WireGuardConfigStep {
  readonly kind: "wireguardConfig";
  readonly host: string;
  readonly implementation: WireGuardImplementation;
  /** The host's mesh address with the mesh prefix, e.g. `10.8.0.1/24`. */
  readonly address: string;
  /** Its IPv6 mesh address with the /64, e.g. `fd31:a7c9:5e04:8::1/64`, with `mesh.ipv6Prefix`. */
  readonly address6?: string;
  readonly listenPort: number;
  readonly mtu?: number;
  readonly persistentKeepalive?: number;
  /** Sorted by name. */
  readonly peers: readonly WireGuardPeerStep[];
  /** The host peers with every other host (a full mesh, or the hub). */
  readonly everyHost: boolean;
  /** The host is the hub of hub routing: it forwards between its peers. */
  readonly forwards: boolean;
}

/** The mesh as one component: every host's WireGuard configuration. */
export interface MeshStep {
  readonly kind: "mesh";
  readonly name: string;
  /** In host order. */
  readonly hosts: readonly WireGuardConfigStep[];
}

/** A host that reaches an export with unison's ssh:// mode. */
export interface ExportSyncServer extends HostRef {
  /** The sync's name on that host. */
  readonly sync: string;
  /** The sync's remote root, relative to the dataset root, e.g. `wiki`. */
  readonly path: string;
}

/** A sync in watch mode whose remote root is on an export: its host follows changes there. */
export interface ExportWatcher extends HostRef {
  /** The sync's name on that host. */
  readonly sync: string;
  /** The sync's remote root on the export host, absolute and normalized. */
  readonly directory: string;
}

/** A ZFS dataset served to the mesh over sftp. */
export interface ExportStep {
  readonly kind: "export";
  readonly name: string;
  readonly host: string;
  readonly export: ExportConfig;
  readonly server: HostRef;
  /** `pool.devices` names the host's volume: the component puts the device path in its place. */
  readonly usesVolume: boolean;
  /** What the zfs step converges; `volume` still stands for the volume device. */
  readonly zfs: ZfsPlan;
  readonly snapshots: SnapshotPlan;
  /**
   * The pool's scrub, which the snapshots step installs; absent with `scrub: off`. Every export
   * of a pool carries it (validation makes them agree), and the last of them to go removes it.
   */
  readonly scrub?: ScrubPlan;
  /** What the sftp step installs, without the clients' public keys. */
  readonly sftp: Omit<SftpPlan, "clients" | "unisonClients">;
  /** Hosts that mount the export, one each, sorted by name. */
  readonly clients: readonly HostRef[];
  /** Hosts that sync with it over ssh://, in config order. */
  readonly syncServers: readonly ExportSyncServer[];
  /** Syncs in watch mode with their remote root on it (through a mount or ssh://), in config order. */
  readonly watchers: readonly ExportWatcher[];
}

/** A replica of an export on another host: received there, sent by the export host. */
export interface ReplicaStep {
  readonly kind: "replica";
  readonly name: string;
  /** The replica host. */
  readonly host: string;
  readonly export: ExportConfig;
  /** The export host, which sends. */
  readonly server: HostRef;
  /** `pool.devices` names the replica host's volume: the component puts the device path in its place. */
  readonly usesVolume: boolean;
  readonly replica: ReplicaPlan;
}

/** An export mounted with sshfs automount units. */
export interface MountStep {
  readonly kind: "mount";
  readonly name: string;
  readonly host: string;
  readonly mount: MountConfig;
  readonly export: ExportConfig;
  readonly server: HostRef;
  /** What the units step installs, without the server's host key. */
  readonly units: MountPlan;
}

/** A sync's remote root, resolved: inside a mount of its host, or on the export host over ssh://. */
export type SyncRemote =
  | {
      readonly kind: "mount";
      readonly mount: MountStep;
      readonly export: ExportConfig;
      readonly server: HostRef;
      /** The remote root relative to the mount (and so to the dataset root), normalized. */
      readonly path: string;
    }
  | {
      readonly kind: "ssh";
      readonly export: ExportConfig;
      readonly server: HostRef;
      /** The remote root relative to the dataset root, normalized (`""` for the root itself). */
      readonly path: string;
    };

/** A two-way unison sync. */
export interface SyncStep {
  readonly kind: "sync";
  readonly name: string;
  readonly host: string;
  readonly sync: SyncConfig;
  readonly remote: SyncRemote;
  /** What the units step installs, without the server's host key. */
  readonly units: SyncPlan;
}

/** The host's health program and gate. */
export interface HealthStep {
  readonly kind: "health";
  readonly name: string;
  readonly host: string;
  readonly health: HealthConfig;
  /** The host's expectations; its peers' `publicKey`s are empty: the component fills them in. */
  readonly expectations: HealthExpectations;
  /** The host peers with every other host. */
  readonly everyHost: boolean;
}

/** What one host runs, in order. */
export type HostStep =
  | BootstrapStep
  | WireGuardKeyStep
  | WireGuardConfigStep
  | ExportStep
  | ReplicaStep
  | MountStep
  | SyncStep
  | HealthStep;

/** What the program declares, in order: one entry per component it creates. */
export type FleetStep =
  BootstrapStep | WireGuardKeyStep | MeshStep | ExportStep | ReplicaStep | MountStep | SyncStep | HealthStep;

/** Names of a path's components below a root, joined with `/`: `/a//./b/` is `a/b`. */
export function relativePath(path: string): string {
  return normalizePath(path).slice(1);
}

/** The mount of `host` that holds `path`: validation refuses nested mounts, so at most one does. */
export function mountHolding<M extends Pick<MountConfig, "host" | "path">>(
  mounts: readonly M[],
  host: string,
  path: string,
): M | undefined {
  const wanted = normalizePath(path);
  return mounts.find((m) => m.host === host && isInside(wanted, normalizePath(m.path)));
}

/** The export called `name` (a mount's `export`, a sync's `remote.export`): validation refuses duplicate names. */
export function exportNamed<E extends { readonly name?: string }>(
  exports: readonly E[],
  name: string,
): E | undefined {
  return exports.find((e) => e.name === name);
}

/** A sync's remote, resolved against the config: undefined when it names no mount or export it can reach. */
export type ResolvedRemote =
  | {
      readonly kind: "mount";
      readonly mount: MountConfig;
      readonly export: ExportConfig;
      readonly path: string;
    }
  | { readonly kind: "ssh"; readonly export: ExportConfig; readonly path: string };

/**
 * Resolves sync → mount → export: in mount mode, the mount of the sync's
 * host holding `remote.mountPath` and the export it mounts, with the root's
 * path relative to the mount; in ssh:// mode, the export named and the
 * normalized relative path. Undefined when a reference does not resolve.
 */
export function resolveSyncRemote(
  config: Pick<FleetConfig, "exports" | "mounts">,
  sync: Pick<SyncConfig, "host" | "remote">,
): ResolvedRemote | undefined {
  if (sync.remote.mountPath !== undefined) {
    const mount = mountHolding(config.mounts, sync.host, sync.remote.mountPath);
    const exported = mount === undefined ? undefined : exportNamed(config.exports, mount.export);
    if (mount === undefined || exported === undefined) {
      return undefined;
    }
    const path = normalizePath(sync.remote.mountPath).slice(normalizePath(mount.path).length);
    return { kind: "mount", mount, export: exported, path: relativePath(path) };
  }
  const exported =
    sync.remote.export === undefined ? undefined : exportNamed(config.exports, sync.remote.export);
  return exported === undefined
    ? undefined
    : { kind: "ssh", export: exported, path: relativePath(sync.remote.path ?? "") };
}

/** Each directory and its parents, sorted, so every level is created for the export user. */
function withParents(directories: Iterable<string>): string[] {
  const all = new Set<string>();
  for (const dir of directories) {
    const parts = dir.split("/");
    parts.forEach((_, i) => all.add(parts.slice(0, i + 1).join("/")));
  }
  return [...all].filter((d) => d !== "").sort();
}

/** What a plan step needs to know about every host. */
export interface PlannedHost {
  readonly name: string;
  readonly meshAddress: string;
  readonly meshAddress6?: string;
  readonly peers: readonly PeerPlan[];
  readonly forwards: boolean;
  readonly packages: readonly string[];
}

/** A step the config guarantees exists did not resolve: the config skipped validation. */
function unresolved(what: string): never {
  throw new Error(`${what} does not resolve: the config was not validated (see config/validate.ts)`);
}

/**
 * Every step of the fleet from validated config and its hosts' addresses,
 * peers and packages. `healthOf` gives a host's expectations (peer keys left
 * empty). Pure and deterministic.
 */
export function planSteps(
  config: FleetConfig,
  hosts: readonly PlannedHost[],
  healthOf: (host: string) => HealthExpectations,
): { fleet: FleetStep[]; byHost: Map<string, HostStep[]> } {
  const byName = new Map(hosts.map((h) => [h.name, h]));
  const ref = (name: string): HostRef => ({
    name,
    meshAddress: (byName.get(name) ?? unresolved(`host ${name}`)).meshAddress,
  });
  const prefix = config.mesh.cidr.split("/")[1];
  const configHosts = new Map(config.hosts.map((h) => [h.name, h]));

  const bootstraps = hosts.map((h): BootstrapStep => {
    const hostConfig = configHosts.get(h.name) ?? unresolved(`host ${h.name}`);
    const machine: Machine =
      hostConfig.hcloud !== undefined
        ? { kind: "hcloud", config: hostConfig.hcloud }
        : { kind: "existing", config: hostConfig.existing ?? unresolved(`the machine of host ${h.name}`) };
    return {
      kind: "bootstrap",
      name: h.name,
      host: h.name,
      machine,
      packages: h.packages,
      listenPort: config.mesh.listenPort,
      sshSourceCidrs: config.admin.sshSourceCidrs,
    };
  });
  const keys = hosts.map((h): WireGuardKeyStep => ({
    kind: "wireguardKey",
    name: `${h.name}-wg`,
    host: h.name,
    rotation: (configHosts.get(h.name) as (typeof config.hosts)[number]).keyRotation,
  }));
  const wireguard = hosts.map((h): WireGuardConfigStep => ({
    kind: "wireguardConfig",
    host: h.name,
    implementation: (configHosts.get(h.name) as (typeof config.hosts)[number]).wireguard,
    address: `${h.meshAddress}/${prefix}`,
    ...(h.meshAddress6 === undefined ? {} : { address6: `${h.meshAddress6}/64` }),
    listenPort: config.mesh.listenPort,
    mtu: config.mesh.mtu,
    persistentKeepalive: config.mesh.persistentKeepalive,
    peers: h.peers.map((p) => ({ ...p, meshAddress: ref(p.name).meshAddress })),
    everyHost: h.peers.length === hosts.length - 1,
    forwards: h.forwards,
  }));

  // The mounts a watched sync goes through, by the resolved mount.
  const watchedMounts = new Set(
    config.syncs.flatMap((sync) => {
      const resolved = sync.watch ? resolveSyncRemote(config, sync) : undefined;
      return resolved?.kind === "mount" ? [resolved.mount] : [];
    }),
  );
  const mounts = config.mounts.map((mount): MountStep => {
    const exported = exportNamed(config.exports, mount.export) ?? unresolved(`export ${mount.export}`);
    const server = ref(exported.host);
    return {
      kind: "mount",
      name: `${mount.host}-${mount.export}-mount`,
      host: mount.host,
      mount,
      export: exported,
      server,
      units: {
        exportName: exported.name,
        user: exported.user,
        serverMeshAddress: server.meshAddress,
        path: normalizePath(mount.path),
        idleTimeout: mount.idleTimeout,
        owner: mount.owner,
        wireguardUnit: WIREGUARD_UNIT,
        watched: watchedMounts.has(mount),
      },
    };
  });

  const syncs = config.syncs.map((sync): SyncStep => {
    const resolved =
      resolveSyncRemote(config, sync) ?? unresolved(`the remote of sync ${sync.name} on ${sync.host}`);
    const server = ref(resolved.export.host);
    let remote: SyncRemote;
    let root: RemoteRoot;
    // The watcher trusts the export host's key where the sync already pins it.
    let knownHosts: string;
    if (resolved.kind === "mount") {
      const mount = mounts[config.mounts.indexOf(resolved.mount)];
      remote = { kind: "mount", mount, export: resolved.export, server, path: resolved.path };
      root = {
        kind: "mount",
        path: normalizePath(sync.remote.mountPath as string),
        mountPath: mount.units.path,
        exportName: resolved.export.name,
      };
      knownHosts = knownHostsPath(resolved.export.name);
    } else {
      remote = { kind: "ssh", export: resolved.export, server, path: resolved.path };
      root = {
        kind: "ssh",
        exportName: resolved.export.name,
        exportUser: resolved.export.user,
        serverMeshAddress: server.meshAddress,
        serverPath: normalizePath(`${resolved.export.mountpoint}/${resolved.path}`),
      };
      knownHosts = syncKnownHostsPath(sync.name);
    }
    return {
      kind: "sync",
      name: `${sync.host}-${sync.name}-sync`,
      host: sync.host,
      sync,
      remote,
      units: {
        name: sync.name,
        user: sync.user,
        local: normalizePath(sync.local),
        remote: root,
        interval: sync.interval,
        timeout: sync.timeout,
        ignore: sync.ignore,
        watch: sync.watch,
        ...(sync.watch
          ? {
              remoteWatch: {
                login: watchUser(resolved.export.name),
                serverMeshAddress: server.meshAddress,
                directory: normalizePath(`${resolved.export.mountpoint}/${resolved.path}`),
                hostKeyAlias: hostKeyAlias(resolved.export.name),
                knownHosts,
                wireguardUnit: WIREGUARD_UNIT,
              },
            }
          : {}),
      },
    };
  });

  const exportSteps = config.exports.map((exported): ExportStep => {
    const server = ref(exported.host);
    const clients = [...new Set(mounts.filter((m) => m.export.name === exported.name).map((m) => m.host))]
      .sort()
      .map(ref);
    const syncServers = syncs.flatMap((s): ExportSyncServer[] =>
      s.remote.kind === "ssh" && s.remote.export.name === exported.name
        ? [{ ...ref(s.host), sync: s.sync.name, path: s.remote.path }]
        : [],
    );
    const watchers = syncs.flatMap((s): ExportWatcher[] =>
      s.units.remoteWatch !== undefined && s.remote.export.name === exported.name
        ? [{ ...ref(s.host), sync: s.sync.name, directory: s.units.remoteWatch.directory }]
        : [],
    );
    // The remote roots of syncs through mounts; ssh:// roots are not listed: the sftp step creates and
    // marks them itself, and a directory made here first would look like an emptied root it must not mark.
    const directories = withParents(
      syncs.flatMap((s) =>
        s.remote.kind === "mount" && s.remote.export.name === exported.name ? [s.remote.path] : [],
      ),
    );
    return {
      kind: "export",
      name: exported.name,
      host: exported.host,
      export: exported,
      server,
      usesVolume: exported.pool.devices.includes("volume"),
      zfs: {
        host: exported.host,
        exportName: exported.name,
        pool: exported.pool.name,
        devices: exported.pool.devices,
        fileSize: exported.pool.fileSize,
        dataset: exported.dataset,
        mountpoint: exported.mountpoint,
        properties: exported.properties,
      },
      snapshots: {
        exportName: exported.name,
        dataset: exported.dataset,
        interval: exported.snapshots.interval,
        retention: exported.snapshots.retention,
      },
      ...(exported.pool.scrub === "off"
        ? {}
        : { scrub: { pool: exported.pool.name, schedule: exported.pool.scrub } }),
      sftp: {
        host: exported.host,
        exportName: exported.name,
        user: exported.user,
        meshAddress: server.meshAddress,
        mountpoint: exported.mountpoint,
        directories,
      },
      clients,
      syncServers,
      watchers,
    };
  });

  const replicas = config.exports.flatMap((exported) =>
    exported.replicas.map((r): ReplicaStep => {
      const server = ref(exported.host);
      const target = ref(r.host);
      const interval = r.interval;
      return {
        kind: "replica",
        name: `${exported.name}-replica-${r.host}`,
        host: r.host,
        export: exported,
        server,
        usesVolume: r.pool.devices.includes("volume"),
        replica: {
          exportName: exported.name,
          source: { host: exported.host, meshAddress: server.meshAddress, dataset: exported.dataset },
          host: r.host,
          meshAddress: target.meshAddress,
          pool: {
            exportName: exported.name,
            pool: r.pool.name,
            devices: r.pool.devices,
            fileSize: r.pool.fileSize,
          },
          target: r.dataset,
          interval,
          retention: replicaRetention(exported, r),
          maxLag: replicaMaxLag(r),
          ...(r.pool.scrub === "off" ? {} : { scrub: { pool: r.pool.name, schedule: r.pool.scrub } }),
        },
      };
    }),
  );

  const health = hosts.map((h): HealthStep => ({
    kind: "health",
    name: `${h.name}-health`,
    host: h.name,
    health: config.health,
    expectations: healthOf(h.name),
    everyHost: h.peers.length === hosts.length - 1,
  }));

  const byHost = new Map<string, HostStep[]>(hosts.map((h) => [h.name, []]));
  const add = (step: HostStep) => (byHost.get(step.host) ?? unresolved(`host ${step.host}`)).push(step);
  [...bootstraps, ...keys, ...wireguard, ...exportSteps, ...replicas, ...mounts, ...syncs, ...health].forEach(
    add,
  );
  const fleet: FleetStep[] = [
    ...bootstraps,
    ...keys,
    { kind: "mesh", name: "mesh", hosts: wireguard },
    ...exportSteps,
    ...replicas,
    ...mounts,
    ...syncs,
    ...health,
  ];
  return { fleet, byHost };
}

/** The steps of one kind among `steps`, in order. */
export function stepsOf<S extends { readonly kind: string }, K extends S["kind"]>(
  steps: readonly S[],
  kind: K,
): Extract<S, { kind: K }>[] {
  return steps.filter((s): s is Extract<S, { kind: K }> => s.kind === kind);
}

/**
 * The resource names of the remote commands (`command:remote:Command`) the
 * program creates for one step, as the components name them: what a host's
 * drift records and `swarm:repairs` are keyed by. tests/plan.commands.test.ts
 * holds this against the URNs the program registers for the example stacks.
 */
export function stepCommandNames(step: FleetStep): string[] {
  switch (step.kind) {
    case "bootstrap":
      return [`${step.name}-bootstrap`];
    case "wireguardKey":
      return [];
    case "mesh":
      return step.hosts.flatMap((h) => [`${step.name}-${h.host}-key`, `${step.name}-${h.host}-config`]);
    case "export":
      // The watch step exists while a sync in watch mode follows the export.
      return ["zfs", "sftp", ...(step.watchers.length > 0 ? ["watch"] : []), "snapshots", "hostkey"].map(
        (role) => `${step.name}-${role}`,
      );
    case "replica":
      return [`${step.name}-receive`, `${step.name}-key`, `${step.name}-send`];
    case "mount":
      return [`${step.name}-key`, `${step.name}-units`];
    case "sync":
      // Only ssh:// mode installs a key of its own: through a mount, the mount's key is used. Watch
      // mode adds the key that follows the remote root.
      return [
        ...(step.remote.kind === "ssh" ? [`${step.name}-key`] : []),
        ...(step.sync.watch ? [`${step.name}-watch-key`] : []),
        `${step.name}-units`,
      ];
    case "health":
      // One command installs the health program and then runs the gate.
      return [`${step.name}-install`];
  }
}

/** Every remote command's resource name for a plan, sorted. */
export function remoteCommandNames(plan: { readonly steps: readonly FleetStep[] }): string[] {
  return plan.steps.flatMap(stepCommandNames).sort();
}

import type { HealthConfig } from "./health";

/**
 * The stack configuration of a fleet, as it stands in `Pulumi.<stack>.yaml`
 * under the `swarm:` namespace, after validation and defaults.
 *
 * Raw YAML is `unknown` until `validateFleetConfig` has checked it; every
 * type here describes a value that has passed validation, so components can
 * trust it without re-checking.
 */

/** A duration written as `60s`, `5min`, `1h`, `2d`; stored in seconds. */
export type Seconds = number;

/** WireGuard implementation on a host: the kernel module, or the userspace `wireguard-go`. */
export type WireGuardImplementation = "kernel" | "wireguard-go";

export interface HcloudHostConfig {
  /** Hetzner server type, e.g. `cx23`. */
  readonly serverType: string;
  /** Hetzner location, e.g. `nbg1`. */
  readonly location: string;
  /** Image name. Defaults to `debian-12`. */
  readonly image: string;
  /** Size in GB of an attached volume that backs a ZFS pool; absent means no volume. */
  readonly volumeSize?: number;
  /**
   * The server's SSH host key (`ssh-ed25519 AAAA...`), for a server created
   * before swarm generated host keys: absent, the program generates the key,
   * gives it to the server at creation and pins it.
   */
  readonly hostKey?: string;
}

export interface ExistingHostConfig {
  /** Address (IP or DNS name) the admin reaches the host at over SSH, and peers reach its WireGuard port at. */
  readonly address: string;
  /** SSH user with passwordless sudo or root. Defaults to `root`. */
  readonly user: string;
  /** SSH port. Defaults to 22. */
  readonly port: number;
  /** The host's SSH host key (`ssh-ed25519 AAAA...`), pinned on every connection. */
  readonly hostKey: string;
}

export interface HostConfig {
  /** Unique host name: lower-case letters, digits and `-`, used in resource names and hostnames. */
  readonly name: string;
  /** Exactly one of `hcloud` or `existing`. */
  readonly hcloud?: HcloudHostConfig;
  readonly existing?: ExistingHostConfig;
  /** Mesh address; allocated deterministically from the mesh CIDR when absent. */
  readonly meshAddress?: string;
  /** WireGuard implementation. Defaults to `kernel`. */
  readonly wireguard: WireGuardImplementation;
  /** Change this value to rotate the host's WireGuard key. Defaults to `""`. */
  readonly keyRotation: string;
  /** Extra IPv4 CIDRs routed to this host through the mesh (added to its AllowedIPs on its peers). Defaults to none. */
  readonly routes: readonly string[];
}

export type Topology = "full" | "hub";

export interface MeshConfig {
  /** IPv4 CIDR all mesh addresses come from, e.g. `10.8.0.0/24`. */
  readonly cidr: string;
  /** WireGuard UDP listen port on every host. Defaults to 51820. */
  readonly listenPort: number;
  /** `full`: every host peers with every other; `hub`: every host peers with the hub only. Defaults to `full`. */
  readonly topology: Topology;
  /** Name of the hub host; required when topology is `hub`. */
  readonly hub?: string;
  /** Interface MTU; absent lets wg-quick choose. */
  readonly mtu?: number;
  /** PersistentKeepalive in seconds; absent or 0 disables it. */
  readonly persistentKeepalive?: Seconds;
}

export interface AdminConfig {
  /** OpenSSH public key of the admin key pair, installed on Hetzner servers. */
  readonly sshPublicKey: string;
  /** CIDRs allowed to reach SSH (port 22) through the Hetzner firewall. */
  readonly sshSourceCidrs: readonly string[];
}

export interface PoolConfig {
  /** ZFS pool name, e.g. `tank`. */
  readonly name: string;
  /**
   * Devices the pool is created on when it does not exist: absolute paths, or
   * `volume` for the host's Hetzner volume. Empty means the pool must already exist.
   */
  readonly devices: readonly string[];
  /** When set, each device path that does not exist is created as a sparse file of this size (e.g. `1G`): for labs. */
  readonly fileSize?: string;
}

export interface SnapshotConfig {
  /** How often a snapshot is taken. Defaults to 1 h. */
  readonly interval: Seconds;
  /** How many snapshots taken by swarm are kept; older ones are destroyed. Defaults to 48. */
  readonly keep: number;
}

export interface ExportConfig {
  /** Export name, referenced by mounts and syncs. */
  readonly name: string;
  /** Host that holds the pool and serves the dataset. */
  readonly host: string;
  readonly pool: PoolConfig;
  /** Dataset, e.g. `tank/meshfs/state`; must be inside the pool. */
  readonly dataset: string;
  /** Absolute mountpoint of the dataset, e.g. `/tank/meshfs/state`. */
  readonly mountpoint: string;
  /** ZFS properties; those that differ are converged in one `zfs set`. Defaults to compression=lz4, atime=off, snapdir=hidden. */
  readonly properties: Readonly<Record<string, string>>;
  readonly snapshots: SnapshotConfig;
  /** Hosts allowed to mount the export (by name). */
  readonly clients: readonly string[];
  /** The sftp-only user that clients connect as. Defaults to `meshfs`. */
  readonly user: string;
}

export interface MountConfig {
  /** Host on which the export is mounted. */
  readonly host: string;
  /** Name of the export. */
  readonly export: string;
  /** Absolute mount path, e.g. `/mnt/meshfs`. */
  readonly path: string;
  /** Idle time after which the automount unmounts. Defaults to 10 min; 0 keeps it mounted. */
  readonly idleTimeout: Seconds;
  /** Local user that owns the files seen through the mount. Defaults to `root`. */
  readonly owner: string;
}

export type ConflictPolicy = "keep-both";

export interface SyncRemoteConfig {
  /** Absolute path inside a mount of this host, e.g. `/mnt/meshfs/wiki`. */
  readonly mountPath?: string;
  /** Or: the export reached with unison's `ssh://` mode, and a relative path inside it. */
  readonly export?: string;
  readonly path?: string;
}

export interface SyncConfig {
  /** Host the sync runs on. */
  readonly host: string;
  /** Sync name, unique per host: names the profile and the units. */
  readonly name: string;
  /** Absolute local root. */
  readonly local: string;
  readonly remote: SyncRemoteConfig;
  /** Timer interval. Defaults to 60 s. */
  readonly interval: Seconds;
  /** Local user the sync runs as. Defaults to `root`. */
  readonly user: string;
  /** Conflict policy. Only `keep-both` exists: both versions survive and the conflict is logged. */
  readonly conflicts: ConflictPolicy;
  /** Unison ignore patterns, e.g. `Name *.tmp`. */
  readonly ignore: readonly string[];
  /** Also run unison in watch mode for near-instant propagation, the timer as fallback. Defaults to false. */
  readonly watch: boolean;
  /** Longest a single run may take before it is stopped. Defaults to 10 min. */
  readonly timeout: Seconds;
}

export interface FleetConfig {
  readonly hosts: readonly HostConfig[];
  readonly mesh: MeshConfig;
  readonly admin: AdminConfig;
  readonly exports: readonly ExportConfig[];
  readonly mounts: readonly MountConfig[];
  readonly syncs: readonly SyncConfig[];
  /** Health gate thresholds and metrics; see config/health.ts. */
  readonly health: HealthConfig;
}

/** One validation failure: the config path it concerns and a message that says how to fix it. */
export interface ConfigError {
  /** e.g. `swarm:hosts[2].meshAddress`. */
  readonly path: string;
  readonly message: string;
}

import type { z } from "zod";
import type { DeepReadonly } from "./schemaKit";
import type {
  adminSchema,
  existingSchema,
  exportSchema,
  fleetSchema,
  hcloudSchema,
  hostSchema,
  meshSchema,
  mountSchema,
  poolSchema,
  replicaSchema,
  retentionSchema,
  snapshotSchema,
  syncRemoteSchema,
  syncSchema,
} from "./schema";

/**
 * The stack configuration of a fleet, as it stands in `Pulumi.<stack>.yaml`
 * under the `swarm:` namespace, after validation and defaults. Each type is
 * the output of its schema in schema.ts, where every field is declared,
 * described and defaulted.
 *
 * Raw YAML is `unknown` until `validateFleetConfig` has checked it; every
 * type here describes a value that has passed validation, so components can
 * trust it without re-checking.
 */
type Config<S extends z.ZodType> = DeepReadonly<z.output<S>>;

/** A duration written as `60s`, `5min`, `1h`, `2d`; stored in seconds. */
export type Seconds = number;

export type HcloudHostConfig = Config<typeof hcloudSchema>;
export type ExistingHostConfig = Config<typeof existingSchema>;
export type HostConfig = Config<typeof hostSchema>;
/** WireGuard implementation on a host: the kernel module, or the userspace `wireguard-go`. */
export type WireGuardImplementation = HostConfig["wireguard"];
export type MeshConfig = Config<typeof meshSchema>;
export type Topology = MeshConfig["topology"];
export type AdminConfig = Config<typeof adminSchema>;
export type PoolConfig = Config<typeof poolSchema>;
export type RetentionConfig = Config<typeof retentionSchema>;
export type SnapshotConfig = Config<typeof snapshotSchema>;
export type ReplicaConfig = Config<typeof replicaSchema>;
export type ExportConfig = Config<typeof exportSchema>;
export type MountConfig = Config<typeof mountSchema>;
export type SyncRemoteConfig = Config<typeof syncRemoteSchema>;
export type SyncConfig = Config<typeof syncSchema>;
export type ConflictPolicy = SyncConfig["conflicts"];
/** The whole `swarm:` config; `sshPrivateKey` is read by index.ts as a secret, not kept here. */
export type FleetConfig = Omit<Config<typeof fleetSchema>, "sshPrivateKey">;

/** One validation failure: the config path it concerns and a message that says how to fix it. */
export interface ConfigError {
  /** e.g. `swarm:hosts[2].meshAddress`. */
  readonly path: string;
  readonly message: string;
}

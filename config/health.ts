import { healthSchema } from "./schema";
import { readSection } from "./schemaKit";
import { ConfigError } from "./types";
import type { z } from "zod";
import type { DeepReadonly } from "./schemaKit";

/**
 * `swarm:health`: what the health gate run after each converge waits for and
 * tolerates, and where the Prometheus textfile metrics go. Its fields, their
 * defaults and limits are declared in schema.ts.
 */
export type HealthConfig = DeepReadonly<z.output<typeof healthSchema>>;

/**
 * Reads `swarm:health` (absent means all defaults). Every problem is pushed
 * onto `errors` with its path; fields with errors fall back to their default
 * so validation can go on.
 */
export function readHealth(raw: unknown, path: string, errors: ConfigError[]): HealthConfig {
  const read = readSection(healthSchema, raw ?? {}, path, errors)?.value ?? {};
  return { ...DEFAULT_HEALTH, ...read };
}

export const DEFAULT_HEALTH: HealthConfig = healthSchema.parse({});

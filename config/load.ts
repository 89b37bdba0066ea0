/**
 * Where raw `swarm:` config comes from: the stack file on disk (offline
 * tools) or the Pulumi engine (a running program). Both yield the same
 * shape for `validateFleetConfig`: the keys with the `swarm:` prefix
 * stripped, values as YAML/JSON decoded them.
 */
import { existsSync, readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { ConfigError } from "./types";

const NAMESPACE = "swarm:";

/** Keys the running program reads as structured objects. */
const OBJECT_KEYS = ["hosts", "mesh", "admin", "exports", "mounts", "syncs", "health"] as const;

/** A stack file that is missing or is not a Pulumi stack file. */
export class StackFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StackFileError";
  }
}

/**
 * Reads `Pulumi.<stack>.yaml` without the Pulumi CLI. Secrets are never
 * decrypted: a `{secure: ...}` value is kept as present and its key listed
 * in `secretKeys`.
 */
export function readStackFile(file: string): { raw: Record<string, unknown>; secretKeys: string[] } {
  if (!existsSync(file)) {
    throw new StackFileError(
      `${file} does not exist: create it, or name an existing stack (Pulumi.<stack>.yaml)`,
    );
  }
  let document: unknown;
  try {
    document = parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new StackFileError(`${file} is not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
  if (document === null || document === undefined) {
    return { raw: {}, secretKeys: [] };
  }
  if (!isMapping(document)) {
    throw new StackFileError(`${file} must be a YAML mapping with a config: section`);
  }
  const config = document.config ?? {};
  if (!isMapping(config)) {
    throw new StackFileError(`${file}: config must be a mapping of keys such as swarm:hosts`);
  }
  const raw: Record<string, unknown> = {};
  const secretKeys: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (!key.startsWith(NAMESPACE)) {
      continue;
    }
    const name = key.slice(NAMESPACE.length);
    raw[name] = value;
    if (isMapping(value) && Object.keys(value).length === 1 && typeof value.secure === "string") {
      secretKeys.push(name);
    }
  }
  return { raw, secretKeys: secretKeys.sort() };
}

/**
 * The `swarm:` config of the running program. Structured keys are read with
 * `getObject`; any other `swarm:` key is passed on by name only, its value
 * never read: `sshPrivateKey` is read by index.ts with `requireSecret`, and
 * an unknown key only needs its name for validation to reject it.
 */
export function readRuntimeConfig(): Record<string, unknown> {
  const config = new pulumi.Config("swarm");
  const raw: Record<string, unknown> = {};
  for (const key of OBJECT_KEYS) {
    const value = config.getObject<unknown>(key);
    if (value !== undefined) {
      raw[key] = value;
    }
  }
  for (const fullKey of Object.keys(pulumi.runtime.allConfig())) {
    if (!fullKey.startsWith(NAMESPACE)) {
      continue;
    }
    const key = fullKey.slice(NAMESPACE.length);
    if (!(key in raw)) {
      raw[key] = null;
    }
  }
  return raw;
}

/** One `path: message` line per error, in the order found. */
export function formatErrors(errors: readonly ConfigError[]): string[] {
  return errors.map((e) => `${e.path}: ${e.message}`);
}

/** Thrown by the program before it registers any resource when the config is invalid. */
export class ConfigValidationError extends Error {
  constructor(readonly errors: readonly ConfigError[]) {
    super(
      `the swarm stack configuration has ${errors.length} error${errors.length === 1 ? "" : "s"}:\n` +
        formatErrors(errors)
          .map((line) => `  ${line}`)
          .join("\n"),
    );
    this.name = "ConfigValidationError";
  }
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

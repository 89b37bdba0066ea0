/**
 * Where raw `swarm:` config comes from: the stack file on disk (offline
 * tools) or the Pulumi engine (a running program). Both yield the same
 * shape for `validateFleetConfig`: the keys with the `swarm:` prefix
 * stripped, values as YAML/JSON decoded them.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { Document, Pair, isMap, isNode, isPair, isScalar, isSeq, parseAllDocuments, visit } from "yaml";
import { fleetSchema } from "./schema";
import { fieldsOf } from "./schemaKit";
import { ConfigError, FleetConfig } from "./types";
import { validateFleetConfig } from "./validate";

const NAMESPACE = "swarm:";

/** Keys the running program reads as structured objects. */
/** The `swarm:` keys read as structured values: every key of the schema but the secrets (index.ts reads those). */
const OBJECT_KEYS = fieldsOf(fleetSchema)
  .filter(([, f]) => !f.info.secret)
  .map(([key]) => key);

/** A stack file that is missing or is not a Pulumi stack file. */
export class StackFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StackFileError";
  }
}

/** What a stack file holds for validation. */
export interface StackConfig {
  /** The `swarm:` keys, prefix stripped. */
  readonly raw: Record<string, unknown>;
  /** The `swarm:` keys (prefix stripped) whose value is a `{secure: ...}` secret, sorted. */
  readonly secretKeys: string[];
  /** Every other key of the config section, as written (`hcloud:token`, `swram:hosts`), sorted. */
  readonly otherKeys: string[];
}

/**
 * Reads `Pulumi.<stack>.yaml` without the Pulumi CLI. Secrets are never
 * decrypted: a `{secure: ...}` value is kept as present and its key listed
 * in `secretKeys`. Every YAML error is reported at once, with its line and
 * the config key it is in.
 */
export function readStackFile(file: string): StackConfig {
  if (!existsSync(file)) {
    throw new StackFileError(
      `${file} does not exist: create it, or name an existing stack (Pulumi.<stack>.yaml)`,
    );
  }
  const document = parseStackYaml(file, readFileSync(file, "utf8"));
  if (document === null || document === undefined) {
    return { raw: {}, secretKeys: [], otherKeys: [] };
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
  const otherKeys: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (!key.startsWith(NAMESPACE)) {
      otherKeys.push(key);
      continue;
    }
    const name = key.slice(NAMESPACE.length);
    raw[name] = value;
    if (isMapping(value) && Object.keys(value).length === 1 && typeof value.secure === "string") {
      secretKeys.push(name);
    }
  }
  return { raw, secretKeys: secretKeys.sort(), otherKeys: otherKeys.sort() };
}

/**
 * The one document of a stack file as plain values. YAML errors become one
 * `file:line: in <key>: problem: fix` line each, in place of the parser's
 * own advice (which, for a second document, is to parse several).
 */
function parseStackYaml(file: string, text: string): unknown {
  const documents = parseAllDocuments(text, { prettyErrors: false });
  if (!Array.isArray(documents) || documents.length === 0) {
    return null;
  }
  const lines = new LineCounter(text);
  const problems: string[] = [];
  const at = (offset: number) => `${file}:${lines.lineOf(offset)}: ${where(documents[0], offset)}`;
  for (const error of documents.flatMap((d) => d.errors)) {
    const offset = error.pos[0];
    if (error.code === "DUPLICATE_KEY") {
      const duplicate = duplicateKey(documents[0], offset, lines);
      problems.push(`${file}:${lines.lineOf(offset)}: ${duplicate.message}`);
    } else {
      const message = error.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, "");
      problems.push(`${at(offset)}is not valid YAML: ${message}`);
    }
  }
  for (const extra of documents.slice(1)) {
    problems.push(
      `${file}:${lines.lineOf(extra.range[0])}: a second YAML document starts here: a stack file is one document, and Pulumi reads only the first, ignoring what follows; remove the --- line and merge what follows into the config: section above`,
    );
  }
  if (problems.length > 0) {
    throw new StackFileError(problems.join("\n"));
  }
  return documents[0].toJS();
}

/** Line numbers of offsets in a text. */
class LineCounter {
  private readonly starts: number[] = [0];

  constructor(text: string) {
    for (let i = 0; i < text.length; i++) {
      if (text[i] === "\n") {
        this.starts.push(i + 1);
      }
    }
  }

  /** The 1-based line of `offset`. */
  lineOf(offset: number): number {
    let line = 0;
    while (line + 1 < this.starts.length && this.starts[line + 1] <= offset) {
      line++;
    }
    return line + 1;
  }
}

/** `in swarm:hosts: ` when `offset` lies in the value of a config key, else nothing. */
function where(document: Document, offset: number): string {
  const key = configPairAt(document, offset)?.key;
  return isScalar(key) && typeof key.value === "string" ? `in ${key.value}: ` : "";
}

function configPairAt(document: Document, offset: number): Pair | undefined {
  const root = document.contents;
  const config = isMap(root)
    ? root.items.find((p) => isScalar(p.key) && p.key.value === "config")
    : undefined;
  if (!config || !isMap(config.value)) {
    return undefined;
  }
  return config.value.items.find((p) => {
    const start = isNode(p.key) ? p.key.range?.[0] : undefined;
    const end = isNode(p.value) ? p.value.range?.[2] : isNode(p.key) ? p.key.range?.[2] : undefined;
    return start !== undefined && end !== undefined && offset >= start && offset <= end;
  });
}

/** `swarm:hosts[0].existing` for a node below a key of config, from its ancestors as `visit` gives them. */
function configPath(ancestors: readonly unknown[], node: unknown): string | undefined {
  const chain = [...ancestors, node];
  const config = chain.findIndex((n) => isPair(n) && isScalar(n.key) && n.key.value === "config");
  if (config < 0 || chain.length < config + 3) {
    return undefined;
  }
  let text = "";
  for (let i = config + 2; i < chain.length; i++) {
    const n = chain[i];
    const parent = chain[i - 1];
    if (isPair(n) && isScalar(n.key)) {
      text += text === "" ? String(n.key.value) : `.${String(n.key.value)}`;
    } else if (isSeq(parent)) {
      text += `[${parent.items.indexOf(n as never)}]`;
    }
  }
  return text === "" ? undefined : text;
}

/**
 * What a duplicate key at `offset` is, where its first occurrence is, and
 * how to resolve it. `merge` is set for a key of config itself (or of the
 * file's top level), whose two values are to be merged.
 */
function duplicateKey(
  document: Document,
  offset: number,
  lines: LineCounter,
): { message: string; merge: boolean } {
  let found: { key: string; first: number; merge: boolean; within?: string } | undefined;
  visit(document, {
    Map(_, map, path) {
      const keys = map.items.map((p) => (isScalar(p.key) ? p.key : undefined));
      const second = keys.find((k) => k?.range?.[0] === offset);
      const first = keys.find((k) => k !== undefined && k.value === second?.value);
      if (second && first?.range) {
        const parent = path[path.length - 1];
        const merge =
          path.length === 1 ||
          (path.length === 3 && isPair(parent) && isScalar(parent.key) && parent.key.value === "config");
        found = { key: String(second.value), first: first.range[0], merge, within: configPath(path, map) };
        return visit.BREAK;
      }
      return undefined;
    },
  });
  if (found === undefined) {
    return {
      message: "a key appears twice in one mapping, which Pulumi refuses: keep one of them",
      merge: false,
    };
  }
  const line = lines.lineOf(found.first);
  return found.merge
    ? {
        message: `${found.key} is set twice (first on line ${line}), which Pulumi refuses: merge the two into one ${found.key}`,
        merge: true,
      }
    : {
        message: `${found.within !== undefined ? `in ${found.within}: ` : ""}${found.key} appears twice in one mapping (first on line ${line}), which Pulumi refuses: keep one, or, if they belong to two list entries, start the second entry with "- "`,
        merge: false,
      };
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

/** The SSH host key of a host at an address, or undefined when there is none to pin. */
export type HostKeyLookup = (address: string) => string | undefined;

/**
 * Raw stack config with each existing host's `hostKey` set from `keyOf`
 * where the stack file leaves it out: what `pulumi config set --path
 * 'swarm:hosts[N].existing.hostKey'` does for a real host.
 */
export function pinHostKeys(raw: Record<string, unknown>, keyOf: HostKeyLookup): Record<string, unknown> {
  if (!Array.isArray(raw.hosts)) {
    return raw;
  }
  const hosts: unknown[] = raw.hosts.map((host: unknown) => {
    const existing = (host as { existing?: unknown } | null)?.existing as Record<string, unknown> | undefined;
    if (typeof existing !== "object" || existing === null || existing.hostKey !== undefined) {
      return host;
    }
    const key = typeof existing.address === "string" ? keyOf(existing.address) : undefined;
    return key === undefined ? host : { ...(host as object), existing: { ...existing, hostKey: key } };
  });
  return { ...raw, hosts };
}

export interface LoadStackOptions {
  /** The folder that holds `Pulumi.<stack>.yaml`. */
  readonly dir: string;
  /** Host keys for the existing hosts whose `hostKey` the stack file leaves out (the lab's, known only once booted). */
  readonly pinHostKeys?: HostKeyLookup;
  /** Changes the raw `swarm:` values before validation: variants of a stack for tests and the bench. */
  readonly edit?: (raw: Record<string, unknown>) => Record<string, unknown>;
}

/** A stack file, read and validated. */
export interface LoadedStack {
  /** `Pulumi.<stack>.yaml`, without its folder. */
  readonly file: string;
  readonly config: FleetConfig;
  /** What `pulumi up` would refuse (documentation placeholders); fine offline. */
  readonly warnings: readonly ConfigError[];
}

/**
 * A stack file that cannot be read, or whose config does not validate:
 * every problem as one line, naming the file without its folder.
 */
export class StackLoadError extends Error {
  constructor(
    /** `Pulumi.<stack>.yaml`. */
    readonly file: string,
    /** `Pulumi.x.yaml:3: ...` lines for the file, `path: message` lines for the config. */
    readonly problems: readonly string[],
    readonly invalidConfig: boolean,
  ) {
    super(invalidConfig ? `${file} is invalid:\n${problems.join("\n")}` : problems.join("\n"));
    this.name = "StackLoadError";
  }
}

/**
 * Reads `<dir>/Pulumi.<stack>.yaml` and validates its `swarm:` config as
 * the offline tools (validate, render, status, the lab, the bench) see it;
 * throws a StackLoadError with every problem at once.
 */
export function loadStack(stack: string, options: LoadStackOptions): LoadedStack {
  const path = join(options.dir, `Pulumi.${stack}.yaml`);
  const file = basename(path);
  let stackFile: StackConfig;
  try {
    stackFile = readStackFile(path);
  } catch (err) {
    if (err instanceof StackFileError) {
      throw new StackLoadError(
        file,
        err.message.split("\n").map((line) => line.replaceAll(path, file)),
        false,
      );
    }
    throw err;
  }
  const edited = options.edit === undefined ? stackFile.raw : options.edit(stackFile.raw);
  const raw = options.pinHostKeys === undefined ? edited : pinHostKeys(edited, options.pinHostKeys);
  const { config, errors, warnings } = validateFleetConfig(raw, stackFile);
  if (config === undefined) {
    throw new StackLoadError(file, formatErrors(errors), true);
  }
  return { file, config, warnings };
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

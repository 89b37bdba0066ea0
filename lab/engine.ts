/**
 * Converges a fleet without a Pulumi CLI: the real program runs under
 * Pulumi's mock runtime, and every `command:remote:Command` it registers is
 * executed over real SSH against the hosts, with its real stdout and stderr.
 * Between runs the engine keeps what a Pulumi state file would (each
 * command's URN, inputs and outputs), and decides what to run as `pulumi up`
 * would. Each rule below was read from the sources: pulumi/pulumi at tag
 * v3.250.0 (the CLI in package.json), pulumi/pulumi-command at v1.2.1 (the
 * provider @pulumi/command ~1.2.1 downloads) and the pulumi-go-provider
 * v1.3.0 its go.mod pins.
 *
 * Identity. A resource is its URN: pkg/resource/deploy/deployment.go
 * `generateURN` → sdk/go/common/resource/urn/urn.go `New` (stack, project,
 * the parent's whole qualified type `$` the type, name; the root stack's
 * type left out). Moving a command under a parent of another type, or
 * renaming an ancestor's type, is a new URN: the old one is deleted and the
 * new one created. The SDK's MockMonitor keeps only the parent's last type
 * and tells `newResource` no URN; `resourceUrn` and `useEngineUrns` in
 * offline/mockRuntime.ts do as the engine does.
 *
 * Diff. pulumi-go-provider infer/resource.go `diff` (the command provider has
 * no custom Diff) compares every old input with every new one,
 * `PropertyMap.Diff` in sdk/go/common/resource/properties_diff.go; the
 * engine hands secrets to the provider as secrets
 * (sdk/go/common/resource/plugin/provider_plugin.go `Diff`: KeepSecrets, as
 * pulumi-go-provider provider.go answers AcceptSecrets), and `DeepEquals`
 * says a secret never equals a plain value, so a value that became or
 * stopped being secret is a change. A null input is the same as an absent one. Here:
 * `changedInputs`.
 *
 * Replace or update. infer `Diff` forces a replace only for inputs tagged
 * `replaceOnChanges` (provider/pkg/provider/common/inputs.go: `triggers`
 * only), and the SDK's `replaceOnChanges: ["triggers[*]"]`
 * (node_modules/@pulumi/command/remote/command.js) covers element changes
 * (step_generator.go `applyReplaceOnChanges`); any other change is an
 * update (pkg/resource/deploy/step_generator.go `continueStepsFromDiff`).
 * Here: `planStep`.
 *
 * Update. provider/pkg/provider/remote/commandController.go `Update` runs
 * `update` if set, else `create`, else nothing (keeping the old
 * stdout/stderr), with the new inputs; it never runs `delete`.
 *
 * Replace. No DeleteBeforeReplace (infer leaves it unset): the new command
 * is created in place of the old (step_generator.go
 * `NewCreateReplacementStep`, "the delete
 * step is generated later on, after all creates/updates finish"); the old
 * one is marked pending delete and deleted by `GenerateDeletes`.
 *
 * Deletes. `GenerateDeletes` gathers the removed resources and the pending
 * deletes of replacements; `ScheduleDeletes` orders them by the previous
 * state's dependency graph, reversed: dependents before their dependencies.
 * The mock runtime does not report dependencies, but the engine records
 * commands in the order their registrations complete, and a registration
 * completes only after everything it depends on: the reverse of that order
 * is a valid reverse dependency order. Here: `deleteOrder`. Like the step
 * executor without --continue-on-error, the first failed delete stops the
 * rest; what was not deleted stays in the state, after the creates and
 * updates of the run, which are recorded first.
 *
 * Sessions. provider/pkg/provider/remote/commandOutputs.go `run`: the
 * connection, `environment`, `stdin` (only when non-empty) and, unless
 * `addPreviousOutputInEnv` is false, PULUMI_COMMAND_STDOUT/STDERR from the
 * stored outputs when they are non-empty. Create starts with no outputs;
 * update has the old outputs; `Delete` runs `props.run` on the stored
 * state: its `delete`, its `stdin`, its environment and outputs. A run keeps
 * stdout/stderr less one trailing newline. A failed create records nothing (infer `Create` returns an empty
 * response on an error that is not ResourceInitFailedError), a failed update
 * keeps the old state. Here: `createSession`, `updateSession`,
 * `deleteSession`.
 *
 * Known differences. `sshRun` sends environment variables with OpenSSH's
 * SetEnv, which an sshd without a matching AcceptEnv drops silently, where
 * the Go provider fails on `environment` and warns on PULUMI_COMMAND_*.
 * Every delete runs in turn, where Pulumi runs each antichain of the
 * dependency graph in parallel. A dial that fails is tried again as the
 * provider does (`sshRun`), except after a host key mismatch.
 *
 * Failures. After a failed create or update no other command starts
 * (pkg/resource/deploy/step_executor.go `cancelDueToError`: no new step
 * unless --continue-on-error), the ones running finish, and nothing is
 * deleted.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { hostKeyMismatch } from "../components/hostKey";
import { FleetConfig } from "../config/types";
import { FleetOutputs, defineFleet } from "../program";
import {
  CommandResult,
  CommandRunner,
  DynamicRunner,
  installMocks,
  reveal,
  settle,
} from "../offline/mockRuntime";

/** The provider's `connection` input, as far as the lab acts on it. */
export interface Connection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly privateKey: string;
  /** `ssh-ed25519 AAAA...`: the only key the host may offer (connection.go SSHConfig: FixedHostKey). */
  readonly hostKey?: string;
}

/** A command's inputs as Pulumi stores and diffs them: every input the program set, secrets still wrapped. */
export type CommandInputs = Readonly<Record<string, unknown>>;

/** The inputs the provider acts on, secrets revealed. */
interface CommandArgs {
  readonly connection: Connection;
  readonly create?: string;
  readonly update?: string;
  readonly delete?: string;
  readonly stdin?: string;
  readonly environment?: Readonly<Record<string, string>>;
  readonly addPreviousOutputInEnv?: boolean;
}

/** What the engine remembers of a command between runs, as a Pulumi state file would. */
export interface CommandState {
  /** Its identity. */
  readonly urn: string;
  readonly name: string;
  readonly inputs: CommandInputs;
  readonly stdout: string;
  readonly stderr: string;
  /** The old half of a replacement, waiting for its delete (Pulumi's `delete: true`). */
  readonly pendingDelete?: boolean;
  /** A dynamic resource (`pulumi-nodejs:dynamic...`) rather than a command: its id and outputs. */
  readonly dynamic?: { readonly id: string; readonly outputs: Readonly<Record<string, unknown>> };
}

/** A dynamic resource whose outputs a refresh changed: what the state held, and what its read returned. */
export interface RefreshChange {
  readonly name: string;
  readonly before: Readonly<Record<string, unknown>>;
  readonly after: Readonly<Record<string, unknown>>;
}

export interface ConvergeResult<T = FleetOutputs> {
  readonly outputs: T;
  /** Commands created (new, or the new half of a replacement), in completion order. */
  readonly created: readonly string[];
  /** Commands updated in place (their `update`, else their `create`, ran again), in completion order. */
  readonly updated: readonly string[];
  /** Commands left alone because nothing changed. */
  readonly unchanged: readonly string[];
  /** Commands deleted (removed, or the old half of a replacement), in the order deleted; each one's `delete` ran if it has one. */
  readonly deleted: readonly string[];
  readonly seconds: number;
  /** Every script that ran, in completion order: when it started (seconds after the converge began) and how long it took. */
  readonly timings: readonly CommandTiming[];
}

export interface CommandTiming {
  readonly name: string;
  readonly step: "create" | "update" | "delete";
  /** Address of the host it ran on. */
  readonly host: string;
  readonly start: number;
  readonly seconds: number;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `command` on the connection's host, `stdin` on its standard input, `env` set in its environment. */
export type RemoteRun = (
  connection: Connection,
  command: string,
  stdin: string | undefined,
  env: Readonly<Record<string, string>>,
) => Promise<RunResult>;

interface CommonOptions {
  /** Called with a progress line for every command run. */
  readonly progress?: (line: string) => void;
}

/** Run every command over SSH (`sshRun`), each host's key pinned by its connection's `hostKey`. */
export interface SshOptions extends CommonOptions {
  /** ssh_config file for every connection (the lab's routes hosts through its VM); default none. */
  readonly sshConfig?: string;
}

/** Run every command with `run` instead (the unit tests record them). */
export interface RunnerOptions extends CommonOptions {
  readonly run: RemoteRun;
  /**
   * Run dynamic providers too, each loaded from its serialized text with
   * this (the tests give back a provider that reaches no host); by default a
   * dynamic resource's outputs are its inputs.
   */
  readonly loadProvider?: (serialized: string) => pulumi.dynamic.ResourceProvider;
}

export type EngineOptions = SshOptions | RunnerOptions;

export class CommandFailed extends Error {
  constructor(
    readonly command: string,
    readonly host: string,
    readonly code: number,
    readonly stderr: string,
  ) {
    super(`${command} failed on ${host} with exit code ${code}:\n${stderr.trim()}`);
  }
}

/** `-o SetEnv=…` for `env`, quoted for ssh's own argument splitting. */
function setEnvOption(env: Readonly<Record<string, string>>): string[] {
  const pairs = Object.entries(env).map(([k, v]) => `${k}="${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`);
  // ssh takes the first SetEnv it reads: every variable goes in one.
  return pairs.length === 0 ? [] : ["-o", `SetEnv=${pairs.join(" ")}`];
}

/** The alias the pinned key is stored under, whatever address and port the host is dialled at. */
const PINNED = "swarm-pinned-host";

/**
 * What OpenSSH prints when it could not reach the host or open a session
 * there, before any command ran: a dial that failed.
 */
const DIAL_FAILURE =
  /^(ssh: connect to host .*|kex_exchange_identification: .*|Connection (closed|reset) by .*|Connection timed out during banner exchange|Stdio forwarding request failed: .*|channel \d+: open failed: .*)$/m;

/**
 * The provider dials up to `dialErrorLimit` times (10 by default), waiting
 * 100 ms before the second attempt and 1.5 times longer before each next one,
 * at most 5 s (provider/pkg/provider/remote/connection.go `dialWithRetry`,
 * sdk/go/common/util/retry `Until`); it never runs a command twice. Here a
 * run is tried again only when ssh exits 255 having printed nothing but a
 * dial failure. Unlike the provider, a host key mismatch is not dialled
 * again: it would fail the same way ten times.
 */
export const DIAL_ATTEMPTS = 10;
function dialDelay(attempt: number): number {
  return Math.min(100 * 1.5 ** (attempt - 1), 5000);
}

/**
 * Runs `command` on a host over SSH with the connection's key; `stdin` goes
 * to its standard input. The host must offer exactly `connection.hostKey`,
 * with that key's algorithm only, as the provider checks it; a connection
 * without one is refused where the provider would trust any key. A dial
 * that fails is tried again as the provider does (`DIAL_ATTEMPTS`).
 */
export async function sshRun(
  connection: Connection,
  command: string,
  stdin: string | undefined,
  sshConfig = "/dev/null",
  env: Readonly<Record<string, string>> = {},
): Promise<RunResult> {
  for (let attempt = 1; ; attempt++) {
    const result = await sshRunOnce(connection, command, stdin, sshConfig, env);
    const dialFailed = result.code === 255 && result.stdout === "" && DIAL_FAILURE.test(result.stderr);
    if (!dialFailed || attempt >= DIAL_ATTEMPTS) {
      return attempt > 1 && dialFailed
        ? { ...result, stderr: `after ${attempt} failed attempts: ${result.stderr}` }
        : result;
    }
    await new Promise((r) => setTimeout(r, dialDelay(attempt)));
  }
}

async function sshRunOnce(
  connection: Connection,
  command: string,
  stdin: string | undefined,
  sshConfig = "/dev/null",
  env: Readonly<Record<string, string>> = {},
): Promise<RunResult> {
  if (connection.hostKey === undefined || connection.hostKey.trim() === "") {
    return {
      code: 255,
      stdout: "",
      stderr:
        `the connection to ${connection.host} pins no host key: the provider would accept any key there ` +
        "and send the command, with its secrets, to whoever answers; set connection.hostKey",
    };
  }
  const [keyType] = connection.hostKey.trim().split(/\s+/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-ssh-"));
  const knownHosts = path.join(dir, "known_hosts");
  fs.writeFileSync(knownHosts, `${PINNED} ${connection.hostKey.trim()}\n`, { mode: 0o600 });
  const keyFile = path.join(dir, "key");
  fs.writeFileSync(
    keyFile,
    connection.privateKey.endsWith("\n") ? connection.privateKey : `${connection.privateKey}\n`,
    {
      mode: 0o600,
    },
  );
  try {
    return await new Promise((resolve, reject) => {
      const child = spawn(
        "ssh",
        [
          "-F",
          sshConfig,
          "-i",
          keyFile,
          "-p",
          String(connection.port),
          "-o",
          "BatchMode=yes",
          "-o",
          "IdentitiesOnly=yes",
          "-o",
          "StrictHostKeyChecking=yes",
          "-o",
          `UserKnownHostsFile=${knownHosts}`,
          "-o",
          `HostKeyAlias=${PINNED}`,
          "-o",
          `HostKeyAlgorithms=${keyType}`,
          "-o",
          "GlobalKnownHostsFile=/dev/null",
          "-o",
          "ConnectTimeout=30",
          "-o",
          "LogLevel=ERROR",
          ...setEnvOption(env),
          `${connection.user}@${connection.host}`,
          command,
        ],
        { stdio: ["pipe", "pipe", "pipe"] },
      );
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (d: Buffer) => out.push(d));
      child.stderr.on("data", (d: Buffer) => err.push(d));
      child.on("error", reject);
      child.on("close", (code, signal) => {
        // Killed by a signal, ssh leaves no exit status: say so rather than pass for a dial failure.
        const stderr =
          Buffer.concat(err).toString() +
          (code === null ? `ssh was killed by ${signal ?? "a signal"}\n` : "");
        resolve({
          code: code ?? 255,
          stdout: Buffer.concat(out).toString(),
          stderr: (code === 255 ? hostKeyMismatch(connection, stderr) : undefined) ?? stderr,
        });
      });
      // ssh that exits before it reads its input (no connection, a refused key) closes the pipe:
      // the write fails with EPIPE, and the exit code and stderr tell why.
      child.stdin.on("error", (error: NodeJS.ErrnoException) => {
        if (error.code !== "EPIPE") {
          reject(error);
        }
      });
      child.stdin.end(stdin ?? "");
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A command's inputs, from the inputs the mock runtime hands over (secrets still wrapped). */
export function commandInputs(inputs: Record<string, unknown>): CommandInputs {
  return Object.fromEntries(Object.entries(inputs).filter(([, v]) => v !== undefined && v !== null));
}

/** Whether two input values are equal as Pulumi's `PropertyValue.DeepEquals` has it: a secret never equals a plain value. */
function sameValue(a: unknown, b: unknown): boolean {
  const absent = (v: unknown) => v === undefined || v === null;
  if (absent(a) || absent(b)) {
    return absent(a) && absent(b);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return (
      Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => sameValue(v, b[i]))
    );
  }
  if (typeof a === "object" && typeof b === "object") {
    const x = a as Record<string, unknown>;
    const y = b as Record<string, unknown>;
    return [...new Set([...Object.keys(x), ...Object.keys(y)])].every((k) => sameValue(x[k], y[k]));
  }
  return a === b;
}

/** The inputs whose values differ between a command's stored inputs and the program's: Pulumi's diff of every input. */
export function changedInputs(old: CommandInputs, wanted: CommandInputs): string[] {
  return [...new Set([...Object.keys(old), ...Object.keys(wanted)])]
    .filter((k) => !sameValue(old[k], wanted[k]))
    .sort();
}

/** Whether a command with inputs `wanted` is left alone after one stored with `old`. */
export function sameInputs(old: CommandInputs, wanted: CommandInputs): boolean {
  return changedInputs(old, wanted).length === 0;
}

export type Step = "create" | "same" | "update" | "replace";

/** What `pulumi up` does with a command registered with `wanted`, given what the state holds for its URN. */
export function planStep(old: CommandInputs | undefined, wanted: CommandInputs): Step {
  if (old === undefined) {
    return "create";
  }
  const changed = changedInputs(old, wanted);
  if (changed.length === 0) {
    return "same";
  }
  return changed.includes("triggers") ? "replace" : "update";
}

/** A script to run on a host and how the provider runs it. */
export interface Session {
  readonly connection: Connection;
  readonly command: string;
  readonly stdin: string | undefined;
  readonly env: Readonly<Record<string, string>>;
}

function session(
  args: CommandArgs,
  command: string | undefined,
  outputs: { readonly stdout: string; readonly stderr: string },
): Session | undefined {
  if (command === undefined) {
    return undefined;
  }
  const env: Record<string, string> = { ...args.environment };
  if (args.addPreviousOutputInEnv !== false) {
    if (outputs.stdout !== "") {
      env.PULUMI_COMMAND_STDOUT = outputs.stdout;
    }
    if (outputs.stderr !== "") {
      env.PULUMI_COMMAND_STDERR = outputs.stderr;
    }
  }
  return {
    connection: args.connection,
    command,
    stdin: args.stdin === undefined || args.stdin === "" ? undefined : args.stdin,
    env,
  };
}

const argsOf = (inputs: CommandInputs) => reveal(inputs) as CommandArgs;

/** The provider's Create: `create`, with no previous outputs; nothing if there is no `create`. */
export function createSession(wanted: CommandInputs): Session | undefined {
  const args = argsOf(wanted);
  return session(args, args.create, { stdout: "", stderr: "" });
}

/** The provider's Update: `update`, else `create`, with the new inputs and the old outputs; never `delete`. */
export function updateSession(old: CommandState, wanted: CommandInputs): Session | undefined {
  const args = argsOf(wanted);
  return session(args, args.update ?? args.create, old);
}

/** The provider's Delete: the stored `delete`, with the stored inputs (stdin too) and outputs. */
export function deleteSession(old: CommandState): Session | undefined {
  const args = argsOf(old.inputs);
  return session(args, args.delete, old);
}

/** The order to delete `doomed` in: the reverse of their order in the state, which is dependency order. */
export function deleteOrder(
  state: readonly CommandState[],
  doomed: ReadonlySet<CommandState>,
): CommandState[] {
  return state.filter((s) => doomed.has(s)).reverse();
}

/**
 * The error a registration fails with when the engine will not run its
 * command: gRPC's CANCELLED, which the SDK takes for the engine cancelling
 * the deployment. It rejects the resource's outputs and lets the program
 * finish; an error without that code would be an unhandled rejection.
 */
function cancelled(message: string): Error {
  return Object.assign(new Error(message), { code: 1 });
}

/** The provider keeps a run's output less one trailing newline (strings.TrimSuffix). */
const trimNewline = (text: string) => (text.endsWith("\n") ? text.slice(0, -1) : text);

/** The key under which the SDK stores a dynamic resource's serialized provider. */
const PROVIDER_KEY = "__provider";

/** `require-from-string`, the module Pulumi's dynamic provider host loads providers with, found from the SDK. */
function requireFromString(code: string): Record<string, unknown> {
  const from = require.resolve("require-from-string", { paths: [require.resolve("@pulumi/pulumi")] });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require(from) as (text: string) => Record<string, unknown>)(code);
}

/** Loads a serialized dynamic provider as Pulumi's dynamic provider host does: `requireFromString(text).handler()`. */
export function loadSerializedProvider(text: string): pulumi.dynamic.ResourceProvider {
  return (requireFromString(text) as { handler(): pulumi.dynamic.ResourceProvider }).handler();
}

/**
 * The `process` code loaded from a string runs with: Node's own. A test
 * runner may give the program another (jest's, whose env never reaches
 * Node's), so the lab hands the providers their environment through this one.
 */
function providerProcess(): NodeJS.Process {
  return requireFromString("module.exports = process") as unknown as NodeJS.Process;
}

/** JSON with every object's keys sorted: equal values print the same. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

/** What a dynamic provider receives: plain values (it accepts no secrets), its own key left in. */
const providerProps = (inputs: Readonly<Record<string, unknown>>) =>
  reveal(commandInputs({ ...inputs })) as Record<string, unknown>;

export class LabEngine {
  private state: CommandState[] = [];
  private readonly run: RemoteRun;
  private readonly providers = new Map<string, pulumi.dynamic.ResourceProvider>();

  /** A dynamic resource's provider, from the text in its inputs, loaded once per text as the provider host does. */
  private provider(inputs: Readonly<Record<string, unknown>>): pulumi.dynamic.ResourceProvider {
    const text = inputs[PROVIDER_KEY];
    if (typeof text !== "string") {
      throw new Error("a dynamic resource without its serialized provider (__provider)");
    }
    let provider = this.providers.get(text);
    if (provider === undefined) {
      const load = "loadProvider" in this.options ? this.options.loadProvider : undefined;
      provider = (load ?? loadSerializedProvider)(text);
      this.providers.set(text, provider);
    }
    return provider;
  }

  /**
   * A dynamic provider runs in the dynamic provider host, which inherits the
   * CLI's environment: the lab's route to its hosts reaches the providers as
   * `SWARM_SSH_CONFIG`, as an operator's jump host would.
   */
  private withProviderEnvironment<T>(body: () => Promise<T>): Promise<T> {
    const sshConfig = "sshConfig" in this.options ? this.options.sshConfig : undefined;
    if (sshConfig === undefined) {
      return body();
    }
    const env = providerProcess().env;
    const before = env.SWARM_SSH_CONFIG;
    env.SWARM_SSH_CONFIG = sshConfig;
    return body().finally(() => {
      if (before === undefined) {
        delete env.SWARM_SSH_CONFIG;
      } else {
        env.SWARM_SSH_CONFIG = before;
      }
    });
  }

  constructor(private readonly options: EngineOptions) {
    this.run =
      "run" in options
        ? options.run
        : (connection, command, stdin, env) => sshRun(connection, command, stdin, options.sshConfig, env);
  }

  /** The state to persist between processes (it holds the admin key: store it 0600). */
  snapshot(): CommandState[] {
    return [...this.state];
  }

  /** Takes back what `snapshot` gave; state from before commands were keyed by URN is refused. */
  restore(states: readonly CommandState[]): void {
    const unkeyed = states.filter((s) => typeof s.urn !== "string" || typeof s.inputs !== "object");
    if (unkeyed.length > 0) {
      const names = unkeyed.slice(0, 3).map((s) => s.name);
      const more = unkeyed.length > names.length ? ", …" : "";
      throw new Error(
        `the saved lab engine state has ${unkeyed.length} command(s) without a URN (${names.join(", ")}${more}): ` +
          "it was written by an engine that keyed commands by name. " +
          "Delete it (converge-state.json in the lab's state directory, $SWARM_LAB_STATE or /var/lib/swarm-lab) " +
          "and converge again: every command runs once more, and each is idempotent.",
      );
    }
    this.state = [...states];
  }

  /** Names of the commands the engine holds state for (not those only waiting for their delete). */
  get commands(): string[] {
    return this.state
      .filter((s) => !s.pendingDelete)
      .map((s) => s.name)
      .sort();
  }

  /**
   * `pulumi refresh` for what a refresh can see: each dynamic resource's
   * provider reads it (ReadRequest properties: its stored outputs) and the
   * state takes what the read returned. Commands are left as they are, as
   * the command provider has no read. Returns the resources whose outputs
   * changed, which is what `pulumi preview --refresh` shows.
   */
  async refresh(): Promise<RefreshChange[]> {
    return this.withProviderEnvironment(() => this.readAll());
  }

  private async readAll(): Promise<RefreshChange[]> {
    const changes: RefreshChange[] = [];
    const refreshed: CommandState[] = [];
    for (const entry of this.state) {
      if (entry.dynamic === undefined || entry.pendingDelete) {
        refreshed.push(entry);
        continue;
      }
      const props = providerProps(entry.dynamic.outputs);
      const provider = this.provider(props);
      if (provider.read === undefined) {
        refreshed.push(entry);
        continue;
      }
      const result = await provider.read(entry.dynamic.id, props);
      const after = { ...(result.props ?? {}), [PROVIDER_KEY]: props[PROVIDER_KEY] };
      if (canonical(after) !== canonical(props)) {
        changes.push({ name: entry.name, before: props, after });
      }
      refreshed.push({ ...entry, dynamic: { id: result.id ?? entry.dynamic.id, outputs: after } });
    }
    this.state = refreshed;
    return changes;
  }

  async converge(config: FleetConfig, sshPrivateKey: string, stack = "lab"): Promise<ConvergeResult> {
    return this.withProviderEnvironment(() =>
      this.apply(() => defineFleet(config, { sshPrivateKey: pulumi.secret(sshPrivateKey) }), stack),
    );
  }

  /** Runs `program` under the mock runtime for project swarm, stack `stack`, and converges the commands it registers. */
  async apply<T>(program: () => T | Promise<T>, stack: string): Promise<ConvergeResult<T>> {
    const started = Date.now();
    const previous = this.state;
    const live = new Map(previous.filter((s) => !s.pendingDelete).map((s) => [s.urn, s]));
    // This run's commands, in the order their registrations completed: dependency order.
    const next: CommandState[] = [];
    // Previous entries this run carries on (same or updated) or replaced.
    const superseded = new Set<CommandState>();
    const replaced = new Set<CommandState>();
    const created: string[] = [];
    const updated: string[] = [];
    const unchanged: string[] = [];
    const deleted: string[] = [];
    const failures: Error[] = [];
    const timings: CommandTiming[] = [];
    const say = this.options.progress ?? (() => undefined);

    // After a failed registration the SDK's RPC queue never drains, so `settle` never returns and,
    // with nothing else pending, node would exit 0 mid-run. A run ends when the queue drains, or
    // when a command has failed and none is still running.
    let running = 0;
    let stopAfterFailure: () => void = () => undefined;
    const failedAndIdle = new Promise<void>((resolve) => (stopAfterFailure = resolve));
    const checkIdle = () => {
      if (failures.length > 0 && running === 0) {
        stopAfterFailure();
      }
    };

    const execute = async (name: string, step: CommandTiming["step"], s: Session): Promise<CommandResult> => {
      const t0 = Date.now();
      running++;
      let result: RunResult;
      try {
        result = await this.run(s.connection, s.command, s.stdin, s.env);
      } finally {
        running--;
      }
      const seconds = (Date.now() - t0) / 1000;
      const label = step === "create" ? name : `${name} (${step})`;
      if (result.code !== 0) {
        say(`  ✗ ${label} (${seconds.toFixed(1)}s)`);
        throw new CommandFailed(label, s.connection.host, result.code, result.stderr || result.stdout);
      }
      say(`  ${step === "delete" ? "−" : "✓"} ${label} (${seconds.toFixed(1)}s)`);
      timings.push({ name, step, host: s.connection.host, start: (t0 - started) / 1000, seconds });
      return { stdout: trimNewline(result.stdout), stderr: trimNewline(result.stderr) };
    };

    const runner: CommandRunner = async (name, _plain, resource): Promise<CommandResult> => {
      const wanted = commandInputs(resource.inputs);
      const old = live.get(resource.urn);
      const step = planStep(old?.inputs, wanted);
      if (old !== undefined && step === "same") {
        next.push(old);
        superseded.add(old);
        unchanged.push(name);
        return { stdout: old.stdout, stderr: old.stderr };
      }
      if (failures.length > 0) {
        // The step executor starts no step after one failed (without --continue-on-error).
        throw cancelled(`${name} not run: ${failures[0].message.split("\n")[0]}`);
      }
      const update = old !== undefined && step === "update";
      const s = update ? updateSession(old, wanted) : createSession(wanted);
      // With no script to run, an update keeps the old outputs and a create has none.
      let outputs: CommandResult = update
        ? { stdout: old.stdout, stderr: old.stderr }
        : { stdout: "", stderr: "" };
      if (s !== undefined) {
        try {
          outputs = await execute(name, update ? "update" : "create", s);
        } catch (e) {
          // Like a failed `pulumi up` step: nothing is recorded, the old state (if any) stays.
          failures.push(e as Error);
          checkIdle();
          throw cancelled(`${name} failed`);
        } finally {
          checkIdle();
        }
      }
      next.push({ urn: resource.urn, name, inputs: wanted, ...outputs });
      if (old !== undefined) {
        (update ? superseded : replaced).add(old);
      }
      (update ? updated : created).push(name);
      return outputs;
    };

    // A dynamic resource, as the engine and the dynamic provider host do it: created once, then
    // diffed by the provider against its stored outputs (DiffRequest olds), updated only when the
    // provider says it changed; its outputs keep the provider key (resultIncludingProvider).
    const dynamicRunner: DynamicRunner = async (resource) => {
      const wanted = commandInputs(resource.inputs);
      const old = live.get(resource.urn);
      const news = providerProps(wanted);
      const provider = this.provider(news);
      const withKey = (outs: Record<string, unknown> | undefined) => ({
        ...(outs ?? {}),
        [PROVIDER_KEY]: news[PROVIDER_KEY],
      });
      if (old?.dynamic !== undefined) {
        const diff = provider.diff ? await provider.diff(old.dynamic.id, old.dynamic.outputs, news) : {};
        if (diff.changes !== true) {
          next.push(old);
          superseded.add(old);
          unchanged.push(resource.name);
          return old.dynamic.outputs;
        }
      }
      if (failures.length > 0) {
        throw cancelled(`${resource.name} not run: ${failures[0].message.split("\n")[0]}`);
      }
      let id: string;
      let outputs: Record<string, unknown>;
      running++;
      try {
        if (old?.dynamic !== undefined) {
          const result = provider.update
            ? await provider.update(old.dynamic.id, old.dynamic.outputs, news)
            : {};
          id = old.dynamic.id;
          outputs = withKey(result.outs);
        } else {
          const result = await provider.create(news);
          id = result.id;
          outputs = withKey(result.outs);
        }
      } catch (e) {
        failures.push(e as Error);
        throw cancelled(`${resource.name} failed`);
      } finally {
        running--;
        checkIdle();
      }
      say(`  ✓ ${resource.name}${old ? " (update)" : ""}`);
      next.push({
        urn: resource.urn,
        name: resource.name,
        inputs: wanted,
        stdout: "",
        stderr: "",
        dynamic: { id, outputs },
      });
      if (old !== undefined) {
        superseded.add(old);
      }
      (old ? updated : created).push(resource.name);
      return outputs;
    };

    const runsProviders = !("run" in this.options) || this.options.loadProvider !== undefined;
    await installMocks(runner, stack, false, runsProviders ? dynamicRunner : undefined);
    const outputs = await program();
    const alive = setInterval(() => undefined, 60_000);
    try {
      await Promise.race([settle(), failedAndIdle]);
    } finally {
      clearInterval(alive);
    }

    // Creates and updates are recorded before any delete runs; what is not yet deleted stays, after them.
    const remaining = new Set(previous.filter((s) => !superseded.has(s)));
    const record = () => {
      this.state = [
        ...next,
        ...previous
          .filter((s) => remaining.has(s))
          .map((s) => (replaced.has(s) && !s.pendingDelete ? { ...s, pendingDelete: true } : s)),
      ];
    };
    record();
    if (failures.length > 0) {
      throw failures[0];
    }
    for (const old of deleteOrder(previous, remaining)) {
      // A dynamic provider without a delete (swarm's have none) only drops the resource from the state.
      const s = old.dynamic === undefined ? deleteSession(old) : undefined;
      if (s !== undefined) {
        // A failure throws with this command and the ones after it still recorded.
        await execute(old.name, "delete", s);
      }
      remaining.delete(old);
      record();
      deleted.push(old.name);
    }
    return {
      outputs,
      created,
      updated,
      unchanged,
      deleted,
      seconds: (Date.now() - started) / 1000,
      timings,
    };
  }
}

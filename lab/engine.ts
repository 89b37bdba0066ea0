/**
 * Converges a fleet without a Pulumi CLI: the real program runs under
 * Pulumi's mock runtime, and every `command:remote:Command` it registers is
 * executed over real SSH against the hosts, in registration (dependency)
 * order, with its real stdout and stderr. Between runs the engine keeps what
 * a Pulumi state file would (each command's inputs and outputs), so it
 * re-runs a command only when Pulumi would: when its inputs changed, running
 * the old delete after a replacement, and the delete of a command that is gone.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { FleetConfig } from "../config/types";
import { FleetOutputs, defineFleet } from "../program";
import { CommandResult, installMocks, settle } from "../tests/mocks";

interface Connection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly privateKey: string;
}

/** What the engine remembers of a command between runs: its inputs and its outputs. */
export interface CommandState {
  readonly name: string;
  readonly connection: Connection;
  readonly create: string;
  readonly delete?: string;
  readonly stdin?: string;
  readonly triggers: readonly unknown[];
  readonly stdout: string;
  readonly stderr: string;
}

export interface ConvergeResult {
  readonly outputs: FleetOutputs;
  /** Commands whose create ran, in completion order. */
  readonly created: readonly string[];
  /** Commands left alone because nothing changed. */
  readonly unchanged: readonly string[];
  /** Commands whose delete ran (removed, or the old half of a replacement). */
  readonly deleted: readonly string[];
  readonly seconds: number;
  /** Every create that ran, in completion order: when it started (seconds after the converge began) and how long it took. */
  readonly timings: readonly CommandTiming[];
}

export interface CommandTiming {
  readonly name: string;
  /** Address of the host it ran on. */
  readonly host: string;
  readonly start: number;
  readonly seconds: number;
}

export interface EngineOptions {
  /** known_hosts file pinning every lab host's SSH key. */
  readonly knownHosts: string;
  /** ssh_config file for every connection (the lab's routes hosts through its VM); default none. */
  readonly sshConfig?: string;
  /** Called with a progress line for every command run. */
  readonly progress?: (line: string) => void;
}

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

/** Runs `command` on a host over SSH with the connection's key; `stdin` goes to its standard input. */
export async function sshRun(
  connection: Connection,
  command: string,
  stdin: string | undefined,
  knownHosts: string,
  sshConfig = "/dev/null",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-ssh-"));
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
          "GlobalKnownHostsFile=/dev/null",
          "-o",
          "ConnectTimeout=10",
          "-o",
          "LogLevel=ERROR",
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
      child.on("close", (code) =>
        resolve({
          code: code ?? 255,
          stdout: Buffer.concat(out).toString(),
          stderr: Buffer.concat(err).toString(),
        }),
      );
      child.stdin.end(stdin ?? "");
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The inputs of a command that decide whether it runs: what `sameInputs` compares. */
export type CommandInputs = Omit<CommandState, "stdout" | "stderr">;

/** A command's deciding inputs, from the (unwrapped) inputs the mock runtime hands over. */
export function commandInputs(name: string, inputs: Record<string, unknown>): CommandInputs {
  return {
    name,
    connection: inputs.connection as Connection,
    create: String(inputs.create ?? ""),
    delete: inputs.delete === undefined ? undefined : String(inputs.delete),
    stdin: inputs.stdin === undefined ? undefined : String(inputs.stdin),
    triggers: (inputs.triggers as unknown[] | undefined) ?? [],
  };
}

/** Whether a command with inputs `b` would run again after one that ran with `a`: Pulumi's diff of its inputs. */
export function sameInputs(a: CommandInputs, b: CommandInputs): boolean {
  return (
    a.create === b.create &&
    a.delete === b.delete &&
    a.stdin === b.stdin &&
    JSON.stringify(a.connection) === JSON.stringify(b.connection) &&
    JSON.stringify(a.triggers) === JSON.stringify(b.triggers)
  );
}

export class LabEngine {
  private state = new Map<string, CommandState>();

  constructor(private readonly options: EngineOptions) {}

  /** The state to persist between processes (it holds the admin key: store it 0600). */
  snapshot(): CommandState[] {
    return [...this.state.values()];
  }

  restore(states: readonly CommandState[]): void {
    this.state = new Map(states.map((s) => [s.name, s]));
  }

  /** Names of the commands the engine holds state for. */
  get commands(): string[] {
    return [...this.state.keys()].sort();
  }

  async converge(config: FleetConfig, sshPrivateKey: string, stack = "lab"): Promise<ConvergeResult> {
    const started = Date.now();
    const previous = this.state;
    const next = new Map<string, CommandState>();
    const created: string[] = [];
    const unchanged: string[] = [];
    const replaced: CommandState[] = [];
    const failures: Error[] = [];
    const timings: CommandTiming[] = [];
    const say = this.options.progress ?? (() => undefined);

    const runner = async (name: string, inputs: Record<string, unknown>): Promise<CommandResult> => {
      const wanted = commandInputs(name, inputs);
      const old = previous.get(name);
      if (old && sameInputs(old, wanted)) {
        next.set(name, old);
        unchanged.push(name);
        return { stdout: old.stdout, stderr: old.stderr };
      }
      const t0 = Date.now();
      const result = await sshRun(
        wanted.connection,
        wanted.create,
        wanted.stdin,
        this.options.knownHosts,
        this.options.sshConfig,
      );
      const elapsed = (Date.now() - t0) / 1000;
      const secs = elapsed.toFixed(1);
      if (result.code !== 0) {
        const failure = new CommandFailed(
          name,
          wanted.connection.host,
          result.code,
          result.stderr || result.stdout,
        );
        failures.push(failure);
        say(`  ✗ ${name} (${secs}s)`);
        throw failure;
      }
      say(`  ✓ ${name} (${secs}s)`);
      if (old && JSON.stringify(old.triggers) !== JSON.stringify(wanted.triggers)) {
        replaced.push(old);
      }
      next.set(name, { ...wanted, stdout: result.stdout, stderr: result.stderr });
      created.push(name);
      timings.push({ name, host: wanted.connection.host, start: (t0 - started) / 1000, seconds: elapsed });
      return { stdout: result.stdout, stderr: result.stderr };
    };

    await installMocks(runner, stack);
    const outputs = defineFleet(config, { sshPrivateKey: pulumi.secret(sshPrivateKey) });
    await settle();
    if (failures.length > 0) {
      // Like a failed `pulumi up`: what succeeded is kept, what failed will be retried.
      this.state = new Map([...previous, ...next]);
      throw failures[0];
    }

    const deleted: string[] = [];
    const removed = [...previous.values()].filter((s) => !next.has(s.name));
    for (const old of [...replaced, ...removed]) {
      if (old.delete !== undefined) {
        const result = await sshRun(
          old.connection,
          old.delete,
          undefined,
          this.options.knownHosts,
          this.options.sshConfig,
        );
        if (result.code !== 0) {
          throw new CommandFailed(`${old.name} (delete)`, old.connection.host, result.code, result.stderr);
        }
        say(`  − ${old.name}`);
        deleted.push(old.name);
      }
    }
    this.state = next;
    return { outputs, created, unchanged, deleted, seconds: (Date.now() - started) / 1000, timings };
  }
}

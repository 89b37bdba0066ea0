/**
 * What every CLI of the project (validate, render, status, lab, bench) does
 * with its arguments: Node's `parseArgs`, strict, and a wrong command line
 * reported as a UsageError, which the CLI prints with its usage line and
 * answers with exit code 2.
 */
import { ParseArgsConfig, parseArgs } from "node:util";

/** Exit codes of every CLI. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** Where a CLI's output lines go: stdout and stderr, or a test's arrays. */
export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

export const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** A command line the CLI cannot run; the message says what is wrong with it. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * `parseArgs` with `strict` on, its errors as UsageErrors with a short
 * message (Node's own advises `--` for an unknown option, which no CLI here
 * takes).
 */
export function parseCommandLine<T extends Omit<ParseArgsConfig, "strict" | "args">>(
  argv: readonly string[],
  config: T,
): ReturnType<typeof parseArgs<T & { args: string[]; strict: true }>> {
  try {
    return parseArgs({ ...config, args: [...argv], strict: true });
  } catch (e) {
    // Node's own TypeError, which under a test runner's sandbox is not an instance of its Error.
    const message =
      typeof (e as { message?: unknown })?.message === "string" ? (e as Error).message : String(e);
    throw new UsageError(message.replace(/\. To specify a positional argument[\s\S]*$/, ""));
  }
}

/** Positional arguments beyond `names`, or too few of them, as a UsageError. */
export function positionalsAs(positionals: readonly string[], names: readonly string[]): string[] {
  if (positionals.length < names.length) {
    throw new UsageError(`name the ${names[positionals.length]}`);
  }
  if (positionals.length > names.length) {
    throw new UsageError(`unexpected argument ${positionals[names.length]}`);
  }
  return [...positionals];
}

/**
 * `parse()`'s arguments, or, when the command line is wrong, what is wrong
 * and the usage line printed on `io.err` and the exit code to return.
 */
export function argumentsOrUsage<T>(
  parse: () => T,
  usage: string,
  io: Io,
): { readonly args: T } | { readonly exit: number } {
  try {
    return { args: parse() };
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(e.message);
      io.err(usage);
      return { exit: EXIT.usage };
    }
    throw e;
  }
}

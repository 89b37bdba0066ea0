/**
 * `npm run validate -- <stack>`: checks `Pulumi.<stack>.yaml` offline, with
 * no Pulumi CLI and no network. Exit 0 with a one-line summary (after one
 * `warning: path: message` line per placeholder that `pulumi up` would
 * refuse), or exit 1 with one `path: message` line per error on stderr.
 */
import { LoadedStack, StackLoadError, formatErrors, loadStack } from "../config/load";
import { FleetConfig } from "../config/types";
import { labStackHostKeys } from "../lab/fleet";
import { EXIT, Io, parseCommandLine, positionalsAs, processIo, argumentsOrUsage } from "./commandLine";

export const USAGE = "usage: npm run validate -- <stack>   (checks Pulumi.<stack>.yaml)";

/** The stack named by `<stack>`; throws saying what is wrong with the arguments. */
export function parseArguments(argv: readonly string[]): string {
  const { positionals } = parseCommandLine(argv, { options: {}, allowPositionals: true });
  return positionalsAs(positionals, ["stack"])[0];
}

/** Runs the check; returns the exit code: 0 valid, 1 invalid, 2 usage. `dir` is where stack files live. */
export function main(argv: readonly string[], io: Io = processIo, dir = "."): number {
  const parsed = argumentsOrUsage(() => parseArguments(argv), USAGE, io);
  if ("exit" in parsed) {
    return parsed.exit;
  }
  const stack = parsed.args;
  let loaded: LoadedStack;
  try {
    loaded = loadStack(stack, { dir, pinHostKeys: labStackHostKeys(stack) });
  } catch (err) {
    if (err instanceof StackLoadError) {
      err.problems.forEach((line) => io.err(line));
      return EXIT.failed;
    }
    throw err;
  }
  const { file, config, warnings } = loaded;
  for (const line of formatErrors(warnings)) {
    io.err(`warning: ${line}`);
  }
  const refused =
    warnings.length > 0
      ? `, with the ${count(warnings.length, "warning")} above to fix before deploying`
      : "";
  io.out(`${file}: ${summarize(config)}: valid${refused}`);
  return EXIT.ok;
}

/** e.g. `3 hosts, mesh 10.8.0.0/24 (hub anchor), 1 export, 1 replica, 2 mounts, 1 sync`. */
export function summarize(config: FleetConfig): string {
  const topology = config.mesh.topology === "hub" ? `hub ${config.mesh.hub}` : "full";
  return [
    count(config.hosts.length, "host"),
    `mesh ${config.mesh.cidr} (${topology})`,
    count(config.exports.length, "export"),
    ...(config.exports.some((e) => e.replicas.length > 0)
      ? [
          count(
            config.exports.reduce((n, e) => n + e.replicas.length, 0),
            "replica",
          ),
        ]
      : []),
    count(config.mounts.length, "mount"),
    count(config.syncs.length, "sync"),
  ].join(", ");
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

if (require.main === module) {
  process.exitCode = main(process.argv.slice(2));
}

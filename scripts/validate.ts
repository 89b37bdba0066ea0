/**
 * `npm run validate -- <stack>`: checks `Pulumi.<stack>.yaml` offline, with
 * no Pulumi CLI and no network. Exit 0 with a one-line summary (after one
 * `warning: path: message` line per placeholder that `pulumi up` would
 * refuse), or exit 1 with one `path: message` line per error on stderr.
 */
import { basename } from "node:path";
import { StackConfig, StackFileError, formatErrors, readStackFile } from "../config/load";
import { FleetConfig } from "../config/types";
import { validateFleetConfig } from "../config/validate";
import { withLabHostKeys } from "../lab/fleet";

export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** Runs the check; returns the exit code. `dir` is where stack files live. */
export function main(argv: readonly string[], io: Io = processIo, dir = "."): number {
  const [stack, ...rest] = argv;
  if (!stack || rest.length > 0 || stack.startsWith("-")) {
    io.err("usage: npm run validate -- <stack>   (checks Pulumi.<stack>.yaml)");
    return 2;
  }
  const file = `${dir}/Pulumi.${stack}.yaml`;
  let stackFile: StackConfig;
  try {
    stackFile = readStackFile(file);
  } catch (err) {
    if (err instanceof StackFileError) {
      for (const line of err.message.split("\n")) {
        io.err(line.replaceAll(file, basename(file)));
      }
      return 1;
    }
    throw err;
  }
  const { config, errors, warnings } = validateFleetConfig(withLabHostKeys(stack, stackFile.raw), stackFile);
  if (config === undefined) {
    for (const line of formatErrors(errors)) {
      io.err(line);
    }
    return 1;
  }
  for (const line of formatErrors(warnings)) {
    io.err(`warning: ${line}`);
  }
  const refused =
    warnings.length > 0
      ? `, with the ${count(warnings.length, "warning")} above to fix before deploying`
      : "";
  io.out(`${basename(file)}: ${summarize(config)}: valid${refused}`);
  return 0;
}

/** e.g. `3 hosts, mesh 10.8.0.0/24 (hub anchor), 1 export, 2 mounts, 1 sync`. */
export function summarize(config: FleetConfig): string {
  const topology = config.mesh.topology === "hub" ? `hub ${config.mesh.hub}` : "full";
  return [
    count(config.hosts.length, "host"),
    `mesh ${config.mesh.cidr} (${topology})`,
    count(config.exports.length, "export"),
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

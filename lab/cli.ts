/**
 * `npm run lab -- up|converge|status|ssh|down`: a fleet of real systemd hosts
 * in a VM on this machine, converged by the real program. The machinery is
 * shell: lab/vm.sh boots the VM (Debian's kernel, under qemu) and runs
 * lab/lab.sh inside it (namespaces, nspawn hosts). This file is the CLI:
 * it boots and seeds the lab of the lab stack (lab/fleet.ts says what that
 * is) and converges it through the VM.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { FleetConfig } from "../config/types";
import { CommandState, LabEngine } from "./engine";
import {
  EXIT,
  Io,
  UsageError,
  parseCommandLine,
  positionalsAs,
  processIo,
  argumentsOrUsage,
} from "../scripts/commandLine";
import { LAB_KEY, SSH_CONFIG, STATE, VM_SH, labConfig, UNBOOTED, vmSh, labUpArgs, seedHosts } from "./fleet";

const ENGINE_STATE = path.join(STATE, "converge-state.json");

function loadEngine(): LabEngine {
  const engine = new LabEngine({
    sshConfig: SSH_CONFIG,
    progress: (line) => process.stdout.write(`${line}\n`),
  });
  if (fs.existsSync(ENGINE_STATE)) {
    engine.restore(JSON.parse(fs.readFileSync(ENGINE_STATE, "utf8")) as CommandState[]);
  }
  return engine;
}

/** Converges the lab without a Pulumi CLI (see lab/engine.ts); its state holds keys, so it is 0600. */
async function converge(config: FleetConfig): Promise<void> {
  const engine = loadEngine();
  const result = await engine.converge(config, fs.readFileSync(LAB_KEY, "utf8"));
  fs.writeFileSync(ENGINE_STATE, JSON.stringify(engine.snapshot()), { mode: 0o600 });
  process.stdout.write(
    `converged in ${result.seconds.toFixed(1)}s: ${result.created.length} created, ` +
      `${result.updated.length} updated, ${result.unchanged.length} unchanged, ${result.deleted.length} deleted\n`,
  );
}

/**
 * Why the lab converges under the mock runtime and not with `pulumi up`: the
 * lab's hosts live inside its VM, reachable only through the VM's sshd, and
 * the program's connections go straight to each host's address.
 */
const ENGINE_NOTE = `Converging with the program under Pulumi's mock runtime: every remote command runs over SSH through the lab VM, as pulumi up would run it, and the lab's state is kept in ${STATE}. "npm run lab -- converge" converges again at any time and runs only what changed.`;

const VERBS = ["up", "converge", "status", "ssh", "down"] as const;
type Verb = (typeof VERBS)[number];

export const USAGE = "usage: npm run lab -- up | converge | status | ssh HOST [cmd] | down";

const HELP = [
  USAGE,
  "  up        boot the lab VM and the hosts of Pulumi.lab.yaml in it, then converge them",
  "  converge  converge the booted lab without a Pulumi CLI (mock runtime + real SSH through the VM)",
  "  status    the VM, then one line per host",
  "  ssh       a shell (or a command) on a lab host, its host key pinned",
  "  down      stop the VM and remove every file, process and disk the lab made",
];

/** What to do: a verb and what follows it (for `ssh`, the host and the command, passed on as they are). */
export type LabCommand =
  { readonly verb: "help" } | { readonly verb: Verb; readonly rest: readonly string[] };

/** Parses `[--help] VERB [...]`; throws a UsageError naming what is wrong. */
export function parseArguments(argv: readonly string[]): LabCommand {
  // Options go before the verb: what follows `ssh HOST` is the remote command, its dashes its own.
  const at = argv.findIndex((arg) => !arg.startsWith("-"));
  const { values } = parseCommandLine(at < 0 ? argv : argv.slice(0, at), {
    options: { help: { type: "boolean", short: "h" } },
  });
  if (values.help === true || at < 0) {
    return { verb: "help" };
  }
  const verb = argv[at];
  const rest = argv.slice(at + 1);
  if (verb === "help") {
    positionalsAs(rest, []);
    return { verb: "help" };
  }
  if (!(VERBS as readonly string[]).includes(verb)) {
    throw new UsageError(`unknown command ${verb}: use one of ${VERBS.join(", ")}`);
  }
  if (verb === "ssh") {
    if (rest.length === 0 || rest[0].startsWith("-")) {
      throw new UsageError("ssh needs the lab host to reach, e.g. ssh satellite");
    }
    return { verb, rest };
  }
  const { positionals } = parseCommandLine(rest, { options: {}, allowPositionals: true });
  positionalsAs(positionals, []);
  return { verb: verb as Verb, rest: [] };
}

/**
 * Runs a lab command; resolves to the exit code: 0 done, 1 failed (for
 * `ssh`, the remote command's own code), 2 usage. A usage error or `help`
 * touches nothing of the lab.
 */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const parsed = argumentsOrUsage(() => parseArguments(argv), USAGE, io);
  if ("exit" in parsed) {
    return parsed.exit;
  }
  const command = parsed.args;
  const print = (text: string) => io.out(text.replace(/\n$/, ""));
  switch (command.verb) {
    case "help":
      HELP.forEach((line) => io.out(line));
      return EXIT.ok;
    case "up": {
      vmSh("up", ...labUpArgs(labConfig("lab", UNBOOTED)));
      // Booted, every host has its SSH key: the config pins them from here on.
      const config = labConfig();
      seedHosts(config);
      print(`\n${ENGINE_NOTE}\n`);
      await converge(config);
      print(vmSh("status"));
      return EXIT.ok;
    }
    case "converge": {
      const config = labConfig();
      await converge(config);
      print(vmSh("status"));
      return EXIT.ok;
    }
    case "down":
      // The engine's state describes hosts that are about to go: it goes first, so nothing of the lab is left.
      fs.rmSync(ENGINE_STATE, { force: true });
      vmSh("down");
      return EXIT.ok;
    case "status":
      print(vmSh("status"));
      return EXIT.ok;
    case "ssh": {
      const result = spawnSync("bash", [VM_SH, "ssh", ...command.rest], { stdio: "inherit" });
      return result.status ?? EXIT.failed;
    }
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`lab: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(EXIT.failed);
    },
  );
}

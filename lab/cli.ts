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

async function main(argv: string[]): Promise<number> {
  const [verb = "help", ...rest] = argv;
  switch (verb) {
    case "up": {
      vmSh("up", ...labUpArgs(labConfig("lab", UNBOOTED)));
      // Booted, every host has its SSH key: the config pins them from here on.
      const config = labConfig();
      seedHosts(config);
      process.stdout.write(`\n${ENGINE_NOTE}\n\n`);
      await converge(config);
      process.stdout.write(vmSh("status"));
      return 0;
    }
    case "converge": {
      const config = labConfig();
      await converge(config);
      process.stdout.write(vmSh("status"));
      return 0;
    }
    case "down":
      // The engine's state describes hosts that are about to go: it goes first, so nothing of the lab is left.
      fs.rmSync(ENGINE_STATE, { force: true });
      vmSh("down");
      return 0;
    case "status":
      process.stdout.write(vmSh("status"));
      return 0;
    case "ssh": {
      const result = spawnSync("bash", [VM_SH, "ssh", ...rest], { stdio: "inherit" });
      return result.status ?? 1;
    }
    default:
      process.stdout.write(
        "usage: npm run lab -- up | converge | status | ssh HOST [cmd] | down\n" +
          "  up        boot the lab VM and the hosts of Pulumi.lab.yaml in it, then converge them\n" +
          "  converge  converge the booted lab without a Pulumi CLI (mock runtime + real SSH through the VM)\n" +
          "  status    the VM, then one line per host\n" +
          "  ssh       a shell (or a command) on a lab host, its host key pinned\n" +
          "  down      stop the VM and remove every file, process and disk the lab made\n",
      );
      return verb === "help" ? 0 : 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`lab: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}

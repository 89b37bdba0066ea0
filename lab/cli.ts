/**
 * `npm run lab -- up|converge|status|ssh|down`: a fleet of real systemd hosts
 * in a VM on this machine, converged by the real program. The machinery is
 * shell: lab/vm.sh boots the VM (Debian's kernel, under qemu) and runs
 * lab/lab.sh inside it (namespaces, nspawn hosts). This file reads the lab
 * stack, prepares the hosts the way the production hosts already are, and
 * converges them through the VM.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { formatErrors, readStackFile } from "../config/load";
import { FleetConfig } from "../config/types";
import { validateFleetConfig } from "../config/validate";
import { CommandState, LabEngine } from "./engine";

const ROOT = path.resolve(__dirname, "..");
export const VM_SH = path.join(ROOT, "lab", "vm.sh");
export const STATE = process.env.SWARM_LAB_STATE ?? "/var/lib/swarm-lab";
export const LAB_KEY = path.join(STATE, "id_ed25519");
export const KNOWN_HOSTS = path.join(STATE, "known_hosts");
/** ssh_config that reaches the lab hosts through the lab VM, every host key pinned (written by vm.sh up). */
export const SSH_CONFIG = path.join(STATE, "ssh_config");
const ENGINE_STATE = path.join(STATE, "converge-state.json");

/** Runs lab/vm.sh; progress goes straight to the terminal. Throws on failure. */
export function labSh(...args: string[]): string {
  const result = spawnSync("bash", [VM_SH, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  if (result.status !== 0) {
    throw new Error(`lab/vm.sh ${args.join(" ")} failed (exit ${result.status ?? result.signal})`);
  }
  return result.stdout;
}

/** The lab stack's validated config, or a thrown error listing every problem. */
export function labConfig(stack = "lab"): FleetConfig {
  const { raw } = readStackFile(path.join(ROOT, `Pulumi.${stack}.yaml`));
  const { config, errors } = validateFleetConfig(raw);
  if (config === undefined) {
    throw new Error(`Pulumi.${stack}.yaml is invalid:\n${formatErrors(errors).join("\n")}`);
  }
  return config;
}

/** Pool devices that name a disk of the lab VM: `/dev/disk/by-id/virtio-SERIAL`, as qemu names it. */
const VM_DISK = /^\/dev\/disk\/by-id\/virtio-([A-Za-z0-9_-]{1,20})$/;

/**
 * `--disk HOST=SERIAL` for every pool device of the config that is a disk of
 * the lab VM: vm.sh attaches one virtual disk per serial and gives it to that
 * host, where it appears as a Hetzner volume does, as a whole block device.
 */
export function labDisks(config: FleetConfig): string[] {
  const disks = new Set<string>();
  for (const e of config.exports) {
    for (const device of e.pool.devices) {
      const serial = VM_DISK.exec(device)?.[1];
      if (serial !== undefined) {
        disks.add(`${e.host}=${serial}`);
      }
    }
  }
  return [...disks].sort().flatMap((d) => ["--disk", d]);
}

/**
 * `--no-kernel-wireguard HOST` for every host on `wireguard-go`: the lab's
 * kernel has WireGuard, and wg-quick uses wireguard-go only where the kernel
 * has none, so such a host is booted as if its kernel had none.
 */
export function labUserspaceWireGuard(config: FleetConfig): string[] {
  return config.hosts
    .filter((h) => h.wireguard === "wireguard-go")
    .flatMap((h) => ["--no-kernel-wireguard", h.name]);
}

/** What `vm.sh up` takes to boot the lab of `config`: its disks and kernels, then its hosts. */
export function labUpArgs(config: FleetConfig): string[] {
  return [...labDisks(config), ...labUserspaceWireGuard(config), ...labHosts(config)];
}

/** `NAME=ADDR` for every existing host of the config: what lab.sh boots. */
export function labHosts(config: FleetConfig): string[] {
  return config.hosts.map((h) => {
    if (h.existing === undefined) {
      throw new Error(`host ${h.name} is not an existing host: the lab can only boot existing hosts`);
    }
    return `${h.name}=${h.existing.address}`;
  });
}

/**
 * What the production hosts have before swarm touches them: the users that
 * syncs and mounts run as, and the sync roots with their data. swarm does not
 * create users or local sync roots (they belong to the host), so the lab does.
 */
export function seedScript(config: FleetConfig, host: string): string {
  const users = new Set<string>();
  const lines = ["set -euo pipefail"];
  for (const m of config.mounts.filter((m) => m.host === host)) {
    users.add(m.owner);
  }
  for (const s of config.syncs.filter((s) => s.host === host)) {
    users.add(s.user);
  }
  for (const user of [...users].sort().filter((u) => u !== "root")) {
    lines.push(`id -u ${user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash ${user}`);
  }
  for (const s of config.syncs.filter((s) => s.host === host)) {
    lines.push(`install -d -o ${s.user} -g ${s.user} ${s.local}`);
    lines.push(
      `[ -e ${s.local}/README.md ] || { echo "# ${s.name}" > ${s.local}/README.md; chown ${s.user}: ${s.local}/README.md; }`,
    );
  }
  return lines.join("\n");
}

export function seedHosts(config: FleetConfig): void {
  for (const host of config.hosts) {
    labSh("ssh", host.name, seedScript(config, host.name));
  }
}

function loadEngine(): LabEngine {
  const engine = new LabEngine({
    knownHosts: KNOWN_HOSTS,
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
      const config = labConfig();
      labSh("up", ...labUpArgs(config));
      seedHosts(config);
      process.stdout.write(`\n${ENGINE_NOTE}\n\n`);
      await converge(config);
      process.stdout.write(labSh("status"));
      return 0;
    }
    case "converge": {
      const config = labConfig();
      await converge(config);
      process.stdout.write(labSh("status"));
      return 0;
    }
    case "down":
      // The engine's state describes hosts that are about to go: it goes first, so nothing of the lab is left.
      fs.rmSync(ENGINE_STATE, { force: true });
      labSh("down");
      return 0;
    case "status":
      process.stdout.write(labSh("status"));
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

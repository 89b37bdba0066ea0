/**
 * The lab's view of a stack: what to boot (the existing hosts of
 * Pulumi.lab.yaml, their disks and which of them run wireguard-go), how to
 * reach it (lab/vm.sh, the lab key, known_hosts and ssh_config under the
 * lab's state directory), and how to seed it (what the production hosts have
 * before swarm touches them).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { HostKeyLookup, loadStack } from "../config/load";
import { FleetConfig } from "../config/types";
import { routingHub } from "../config/model";
import { fixtureHostKey } from "../offline/fixtureHostKeys";

const ROOT = path.resolve(__dirname, "..");
export const VM_SH = path.join(ROOT, "lab", "vm.sh");
export const STATE = process.env.SWARM_LAB_STATE ?? "/var/lib/swarm-lab";
export const LAB_KEY = path.join(STATE, "id_ed25519");
export const KNOWN_HOSTS = path.join(STATE, "known_hosts");
/** ssh_config that reaches the lab hosts through the lab VM, every host key pinned (written by vm.sh up). */
export const SSH_CONFIG = path.join(STATE, "ssh_config");

/** Runs lab/vm.sh; progress goes straight to the terminal. Throws on failure. */
export function vmSh(...args: string[]): string {
  const result = spawnSync("bash", [VM_SH, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  if (result.status !== 0) {
    // What it printed before failing (vm.sh status: the console of a VM that stopped answering).
    const printed = result.stdout ? `:\n${result.stdout}` : "";
    throw new Error(`lab/vm.sh ${args.join(" ")} failed (exit ${result.status ?? result.signal})${printed}`);
  }
  return result.stdout;
}

/**
 * The Ed25519 host key of every booted lab host, by address, from the
 * known_hosts `vm.sh up` writes: each host's keys are generated when it is
 * first booted, so the lab stack file cannot hold them.
 */
export function labHostKeys(file = KNOWN_HOSTS): HostKeyLookup {
  if (!fs.existsSync(file)) {
    throw new Error(
      `${file} does not exist: the lab hosts' SSH keys are made when they boot; run npm run lab -- up first`,
    );
  }
  const keys = new Map<string, string>();
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const [address, type, blob] = line.trim().split(/\s+/);
    if (type === "ssh-ed25519" && blob !== undefined) {
      keys.set(address, `${type} ${blob}`);
    }
  }
  return (address) => keys.get(address);
}

/**
 * Host keys for deciding what to boot, before any lab host has one. They
 * satisfy validation and pin nothing real: a converge with them is refused.
 */
export const UNBOOTED: HostKeyLookup = (address) => fixtureHostKey(address);

/**
 * The host keys the offline tools (validate, render) pin for a stack: for
 * the lab stack, the booted lab's, or while it is down UNBOOTED ones; none
 * for any other stack, whose existing hosts have theirs in the stack file.
 */
export function labStackHostKeys(stack: string): HostKeyLookup | undefined {
  if (stack !== "lab") {
    return undefined;
  }
  return fs.existsSync(KNOWN_HOSTS) ? labHostKeys() : UNBOOTED;
}

/**
 * The lab stack's validated config, its existing hosts' keys pinned from
 * `hostKeys` (by default the booted lab's), or a thrown StackLoadError listing every problem.
 */
export function labConfig(stack = "lab", hostKeys: HostKeyLookup = labHostKeys()): FleetConfig {
  return loadStack(stack, { dir: ROOT, pinHostKeys: hostKeys }).config;
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
  const pools = config.exports.flatMap((e) =>
    [e, ...e.replicas].map((p) => ({ host: p.host, pool: p.pool })),
  );
  for (const { host, pool } of pools) {
    for (const device of pool.devices) {
      const serial = VM_DISK.exec(device)?.[1];
      if (serial !== undefined) {
        disks.add(`${host}=${serial}`);
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

/**
 * `--router HUB` for the hub of hub routing: nspawn keeps a container's
 * /proc/sys/net read-only when it did not make the network namespace, so the
 * lab turns forwarding on (for interfaces made later, such as wg0) before the
 * hub boots, where a real host lets the hub's apply script do it.
 */
export function labRouters(config: FleetConfig): string[] {
  const hub = routingHub(config.mesh);
  return hub === undefined ? [] : ["--router", hub];
}

/** What `vm.sh up` takes to boot the lab of `config`: its disks, kernels and routers, then its hosts. */
export function labUpArgs(config: FleetConfig): string[] {
  return [...labDisks(config), ...labUserspaceWireGuard(config), ...labRouters(config), ...labHosts(config)];
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
    vmSh("ssh", host.name, seedScript(config, host.name));
  }
}

/**
 * Generated fleets for the benchmarks: raw `swarm:` config, exactly as a
 * stack file would hold it, so evaluation includes validation.
 *
 * Half the hosts are Hetzner Cloud servers, half existing hosts. The first
 * host is the hub and exports meshfs from a volume; the next few mount it,
 * one of them keeps a directory in sync through the mount, and (from 5 hosts
 * on) one more host syncs with the export over unison's `ssh://` root. Every
 * other host only joins the mesh.
 */
import { fixtureHostKey } from "../offline/fixtureHostKeys";

export type Topology = "full" | "hub";

export interface FleetShape {
  readonly hosts: number;
  readonly topology: Topology;
}

/** Changes the benchmarks make to a fleet to count what re-runs. */
export type Change = "none" | "mount-option" | "add-host";

/** Name of the i-th host: sortable, so the plan's order is the config's. */
export function hostName(i: number): string {
  return `host-${String(i).padStart(3, "0")}`;
}

/** Whether a resource name belongs to a host: `host-007-...`, `mesh-host-007-...`, `meshfs-host-007-client`. */
export function belongsTo(name: string, host: string): boolean {
  return name === host || name.startsWith(`${host}-`) || name.includes(`-${host}-`);
}

/** How many hosts mount the export. */
export function mountingHosts(shape: FleetShape): number {
  return Math.min(3, shape.hosts - 1);
}

/** The host whose mount the `mount-option` change edits. */
export const CHANGED_MOUNT_HOST = hostName(1);

/** Whether the i-th host is an existing host (odd) or a Hetzner server (even). */
function isExisting(i: number): boolean {
  return i % 2 === 1;
}

/** Hosts with a role besides the mesh: the export, the mounts and the ssh:// sync. */
function rolesEnd(shape: FleetShape): number {
  return mountingHosts(shape) + (shape.hosts >= 5 ? 2 : 1);
}

/** The last host of each kind that only joins the mesh (none in fleets too small to have one). */
export function meshOnlyHosts(shape: FleetShape): { kind: "existing" | "hcloud"; name: string }[] {
  const found: { kind: "existing" | "hcloud"; name: string }[] = [];
  for (const kind of ["existing", "hcloud"] as const) {
    for (let i = shape.hosts - 1; i >= rolesEnd(shape); i--) {
      if (isExisting(i) === (kind === "existing")) {
        found.push({ kind, name: hostName(i) });
        break;
      }
    }
  }
  return found;
}

function rawHost(i: number): Record<string, unknown> {
  const name = hostName(i);
  if (isExisting(i)) {
    // Documentation ranges only (RFC 5737).
    const block = i < 254 ? "198.51.100" : "192.0.2";
    return { name, existing: { address: `${block}.${(i % 254) + 1}`, hostKey: fixtureHostKey(name) } };
  }
  return {
    name,
    hcloud:
      i === 0
        ? { serverType: "cx33", location: "nbg1", volumeSize: 50 }
        : { serverType: "cx23", location: "fsn1" },
  };
}

/** The raw `swarm:` config of a generated fleet, with `change` applied. */
export function rawFleet(shape: FleetShape, change: Change = "none"): Record<string, unknown> {
  const count = shape.hosts + (change === "add-host" ? 1 : 0);
  const hosts = Array.from({ length: count }, (_, i) => rawHost(i));
  const hub = hostName(0);
  const clients = Array.from({ length: mountingHosts(shape) }, (_, i) => hostName(i + 1));
  const mounts = clients.map((host) => ({
    host,
    export: "meshfs",
    path: "/mnt/meshfs",
    idleTimeout: host === CHANGED_MOUNT_HOST && change === "mount-option" ? "15min" : "10min",
  }));
  const syncs: Record<string, unknown>[] = [
    {
      host: clients[clients.length - 1],
      name: "wiki",
      local: "/srv/wiki",
      remote: { mountPath: "/mnt/meshfs/wiki" },
      interval: "60s",
      ignore: ["Name *.swp"],
    },
  ];
  if (shape.hosts >= 5) {
    syncs.push({
      host: hostName(clients.length + 1),
      name: "notes",
      local: "/srv/notes",
      remote: { export: "meshfs", path: "notes" },
      interval: "60s",
    });
  }
  return {
    hosts,
    mesh: {
      cidr: "10.8.0.0/16",
      topology: shape.topology,
      ...(shape.topology === "hub" ? { hub } : {}),
      persistentKeepalive: "25s",
    },
    admin: {
      sshPublicKey:
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF6NX6jWXUNMpFM8Ffg3wvvMI/9ABsWk6Bt3gKyAdPGr admin@swarm",
      sshSourceCidrs: ["198.51.100.0/24"],
    },
    exports: [
      {
        name: "meshfs",
        host: hub,
        pool: { name: "tank", devices: ["volume"] },
        dataset: "tank/meshfs/state",
        mountpoint: "/tank/meshfs/state",
        properties: { compression: "lz4", atime: "off", snapdir: "hidden" },
        clients: [...clients, ...(shape.hosts >= 5 ? [hostName(clients.length + 1)] : [])],
      },
    ],
    mounts,
    syncs,
  };
}

import { createHash } from "node:crypto";
import { EndpointFamily, endpointFamily } from "./endpoints";
import { healthExpectations } from "../templates/health";
import { Cidr, formatAddress, hostRange, parseAddress, parseCidr } from "./ipv4";
import { formatAddress6, parseAddress6, parsePrefixed6 } from "./ipv6";
import { FleetStep, HostStep, planSteps, resolveSyncRemote } from "./plan";
import { ExportConfig, FleetConfig, HostConfig, MountConfig, ReplicaConfig, SyncConfig } from "./types";

/** What one host's WireGuard interface says about one peer. */
export interface PeerPlan {
  readonly name: string;
  /**
   * AllowedIPs for the peer: its mesh address as a /32, its IPv6 mesh address as a /128 (with
   * `mesh.ipv6Prefix`), then its routes sorted. On a host routed through the hub, the hub's
   * entries are the whole mesh block and the IPv6 prefix instead.
   */
  readonly allowedIps: readonly string[];
  /**
   * Which of the peer's public addresses this host dials: its IPv4 one when both hosts have IPv4,
   * else its IPv6 one; `name` for a peer given by DNS name (config/endpoints.ts).
   */
  readonly endpointFamily: EndpointFamily;
}

/** Another host that `host` reaches through the hub rather than over a tunnel of its own. */
export interface RoutedHost {
  readonly name: string;
  readonly meshAddress: string;
  /** Its IPv6 mesh address, with `mesh.ipv6Prefix`. */
  readonly meshAddress6?: string;
  /** The hub, which forwards the traffic. */
  readonly via: string;
}

/** Everything the program derives for one host from validated config. */
export interface HostPlan {
  readonly name: string;
  readonly config: HostConfig;
  readonly meshAddress: string;
  /** The IPv6 mesh address, with `mesh.ipv6Prefix`. */
  readonly meshAddress6?: string;
  /** Peers on this host's interface, sorted by name. */
  readonly peers: readonly PeerPlan[];
  /** The hosts this one reaches through the hub (hub routing, on a host other than the hub), sorted by name. */
  readonly routed: readonly RoutedHost[];
  /** This host is the hub of hub routing: it forwards between its WireGuard peers. */
  readonly forwards: boolean;
  /** Exports served by this host. */
  readonly exports: readonly ExportConfig[];
  /** Exports mounted on this host. */
  readonly mounts: readonly MountConfig[];
  /** Syncs run on this host. */
  readonly syncs: readonly SyncConfig[];
  /** Replicas of exports kept on this host. */
  readonly replicas: readonly ReplicaConfig[];
  /** Syncs in watch mode (on any host) whose remote root is on an export of this host. */
  readonly watchedBy: readonly SyncConfig[];
  /** Debian packages the host's roles need, sorted. */
  readonly packages: readonly string[];
  /** What the host runs, in order, every reference resolved (see config/plan.ts). */
  readonly steps: readonly HostStep[];
}

export interface FleetPlan {
  readonly config: FleetConfig;
  /** In config order. */
  readonly hosts: readonly HostPlan[];
  readonly byName: ReadonlyMap<string, HostPlan>;
  /** One entry per component the program creates, in the order it creates them. */
  readonly steps: readonly FleetStep[];
}

/**
 * Mesh addresses for every host: explicit ones as given, the rest allocated.
 *
 * An allocated address depends only on the host's name and the addresses
 * already taken, never on list order: each host starts at a slot derived from
 * a hash of its name and probes upwards past taken addresses. Hosts are placed
 * in (slot, name) order, so adding a host moves no existing host unless the
 * newcomer's slot is the one an existing host had probed into. Pin an address
 * with `meshAddress` to rule that out entirely.
 *
 * Expects validated config: explicit addresses inside the CIDR and unique.
 * Throws when the block has no free address left.
 */
export function allocateMeshAddresses(
  hosts: readonly Pick<HostConfig, "name" | "meshAddress">[],
  cidrText: string,
): Map<string, string> {
  const cidr = parseCidr(cidrText) as Cidr;
  const { first, last } = hostRange(cidr);
  const size = last - first + 1;
  const taken = new Set<number>();
  const result = new Map<string, string>();
  for (const host of hosts) {
    if (host.meshAddress !== undefined) {
      taken.add(parseAddress(host.meshAddress) as number);
      result.set(host.name, host.meshAddress);
    }
  }
  const pending = hosts
    .filter((h) => h.meshAddress === undefined)
    .map((h) => ({ name: h.name, slot: hashSlot(h.name, size) }))
    .sort((a, b) => a.slot - b.slot || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const { name, slot } of pending) {
    let offset = 0;
    while (offset < size && taken.has(first + ((slot + offset) % size))) {
      offset++;
    }
    if (offset === size) {
      throw new Error(`the mesh ${cidrText} has no free address left for host ${name}`);
    }
    const address = first + ((slot + offset) % size);
    taken.add(address);
    result.set(name, formatAddress(address));
  }
  return result;
}

/**
 * IPv6 mesh addresses inside the /64 `prefixText`, as `allocateMeshAddresses` allocates IPv4 ones:
 * explicit ones as given; the rest start at the interface identifier made of the first 64 bits of
 * the SHA-256 of the name and probe upwards past taken ones. Identifier 0 is never given: it is the
 * subnet-router anycast address (RFC 4291 2.6.1). With 2^64 identifiers, two hashes meet with a
 * chance of about n²/2^65, so in practice no host ever probes and adding one moves none.
 *
 * Expects validated config: explicit addresses inside the prefix, canonical and unique.
 */
export function allocateMeshAddresses6(
  hosts: readonly Pick<HostConfig, "name" | "meshAddress6">[],
  prefixText: string,
): Map<string, string> {
  const prefix = parsePrefixed6(prefixText);
  if (prefix === undefined || prefix.prefix !== 64) {
    throw new Error(`${prefixText} is not an IPv6 /64`);
  }
  const network = prefix.address - (prefix.address % IDENTIFIERS);
  const taken = new Set<bigint>();
  const result = new Map<string, string>();
  for (const host of hosts) {
    if (host.meshAddress6 !== undefined) {
      taken.add((parseAddress6(host.meshAddress6) as bigint) % IDENTIFIERS);
      result.set(host.name, host.meshAddress6);
    }
  }
  const pending = hosts
    .filter((h) => h.meshAddress6 === undefined)
    .map((h) => ({ name: h.name, slot: createHash("sha256").update(h.name).digest().readBigUInt64BE(0) }))
    .sort((a, b) =>
      a.slot < b.slot ? -1 : a.slot > b.slot ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
  for (const { name, slot } of pending) {
    let identifier = slot;
    while (identifier === 0n || taken.has(identifier)) {
      identifier = (identifier + 1n) % IDENTIFIERS;
    }
    taken.add(identifier);
    result.set(name, formatAddress6(network + identifier));
  }
  return result;
}

/** Interface identifiers in a /64. */
const IDENTIFIERS = 1n << 64n;

function hashSlot(name: string, size: number): number {
  const digest = createHash("sha256").update(name).digest();
  return digest.readUInt32BE(0) % size;
}

/** The hosts `host` peers with under the mesh topology, sorted by name. */
export function peerNames(config: FleetConfig, host: string): string[] {
  const names = config.hosts.map((h) => h.name).filter((n) => n !== host);
  if (config.mesh.topology === "hub") {
    const hub = config.mesh.hub as string;
    return (host === hub ? names : names.filter((n) => n === hub)).sort();
  }
  return names.sort();
}

/** The hub when the mesh routes between the hosts through it (topology hub with hubRouting), else undefined. */
export function routingHub(mesh: FleetConfig["mesh"]): string | undefined {
  return mesh.topology === "hub" && mesh.hubRouting ? mesh.hub : undefined;
}

/** Packages a host needs for its roles; `forwards`: it is the hub of hub routing. */
export function hostPackages(
  host: HostConfig,
  roles: {
    exports: readonly ExportConfig[];
    mounts: readonly MountConfig[];
    syncs: readonly SyncConfig[];
    replicas?: readonly ReplicaConfig[];
    /** Syncs in watch mode, on any host, whose remote root is on one of this host's exports. */
    watchedBy?: readonly SyncConfig[];
  },
  forwards = false,
): string[] {
  const packages = new Set(["wireguard-tools", "openssh-server", "util-linux"]);
  if (host.wireguard === "wireguard-go") {
    packages.add("wireguard-go");
  }
  if (forwards) {
    // The hub's forward filter (table inet swarm_hub) and the sysctl that enables forwarding on wg0.
    packages.add("nftables");
    packages.add("procps");
  }
  if (roles.exports.length > 0 || (roles.replicas?.length ?? 0) > 0) {
    packages.add("zfsutils-linux");
  }
  if ((roles.watchedBy?.length ?? 0) > 0) {
    // meshfs-watch follows the watched syncs' directories with inotifywait.
    packages.add("inotify-tools");
  }
  if (roles.mounts.length > 0) {
    packages.add("sshfs");
  }
  if (roles.syncs.length > 0) {
    packages.add("unison");
    if (roles.syncs.some((s) => s.remote.export !== undefined || s.watch)) {
      packages.add("openssh-client");
    }
    if (roles.syncs.some((s) => s.watch)) {
      // unison-watch waits for local changes with inotifywait; unison-remote-watch follows the
      // export host over ssh.
      packages.add("inotify-tools");
    }
  }
  return [...packages].sort();
}

/**
 * Every host's plan without its steps: addresses, peers with their AllowedIPs
 * and endpoint families, roles and packages. What the AllowedIPs collision
 * check reads; `planFleet` adds the steps.
 */
export function planHosts(config: FleetConfig): HostPlan[] {
  const addresses = allocateMeshAddresses(config.hosts, config.mesh.cidr);
  const prefix6 = config.mesh.ipv6Prefix;
  const addresses6 =
    prefix6 === undefined ? new Map<string, string>() : allocateMeshAddresses6(config.hosts, prefix6);
  const own6 = (name: string) => {
    const address = addresses6.get(name);
    return address === undefined ? [] : [`${address}/128`];
  };
  const routesOf = new Map(config.hosts.map((h) => [h.name, h.routes]));
  const configOf = new Map(config.hosts.map((h) => [h.name, h]));
  const hub = routingHub(config.mesh);
  return config.hosts.map((host): HostPlan => {
    const roles = {
      exports: config.exports.filter((e) => e.host === host.name),
      mounts: config.mounts.filter((m) => m.host === host.name),
      syncs: config.syncs.filter((s) => s.host === host.name),
      replicas: config.exports.flatMap((e) => e.replicas.filter((r) => r.host === host.name)),
      watchedBy: config.syncs.filter(
        (s) => s.watch && resolveSyncRemote(config, s)?.export.host === host.name,
      ),
    };
    const routedVia = hub !== undefined && host.name !== hub ? hub : undefined;
    // Validation refuses peers without a family in common, so the fallback is never taken.
    const dials = (name: string): EndpointFamily =>
      endpointFamily(host, configOf.get(name) as HostConfig) ?? "IPv4";
    const peers = peerNames(config, host.name).map((name) =>
      name === routedVia
        ? {
            name,
            endpointFamily: dials(name),
            // wg-quick routes the whole block to the hub, which forwards to the other hosts, and
            // with it the routes of the hub and of every other spoke: the hub forwards those too.
            allowedIps: [
              config.mesh.cidr,
              ...(prefix6 === undefined ? [] : [prefix6]),
              ...config.hosts
                .filter((h) => h.name !== host.name)
                .flatMap((h) => h.routes)
                .sort(),
            ],
          }
        : {
            name,
            allowedIps: [
              `${addresses.get(name)}/32`,
              ...own6(name),
              ...[...(routesOf.get(name) ?? [])].sort(),
            ],
            endpointFamily: dials(name),
          },
    );
    const routed = config.hosts
      .filter((h) => routedVia !== undefined && h.name !== host.name && h.name !== routedVia)
      .map((h) => ({
        name: h.name,
        meshAddress: addresses.get(h.name) as string,
        ...(addresses6.has(h.name) ? { meshAddress6: addresses6.get(h.name) } : {}),
        via: routedVia as string,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const forwards = host.name === hub;
    return {
      name: host.name,
      config: host,
      meshAddress: addresses.get(host.name) as string,
      ...(addresses6.has(host.name) ? { meshAddress6: addresses6.get(host.name) } : {}),
      peers,
      routed,
      forwards,
      ...roles,
      packages: hostPackages(host, roles, forwards),
      steps: [] as HostStep[],
    };
  });
}

/** Derives the per-host plan and its steps from validated config. Pure and deterministic. */
export function planFleet(config: FleetConfig): FleetPlan {
  const hosts = planHosts(config);
  const byName = new Map(hosts.map((h) => [h.name, h]));
  const steps: FleetStep[] = [];
  const plan: FleetPlan = { config, hosts, byName, steps };
  // Peer keys exist only as Outputs: the health step leaves them empty for the component to fill in.
  const noKeys = (host: string) =>
    Object.fromEntries((byName.get(host) as HostPlan).peers.map((p) => [p.name, ""]));
  const resolved = planSteps(config, hosts, (host) =>
    healthExpectations(plan, host, config.health, noKeys(host)),
  );
  steps.push(...resolved.fleet);
  for (const host of hosts) {
    (host.steps as HostStep[]).push(...(resolved.byHost.get(host.name) ?? []));
  }
  return plan;
}

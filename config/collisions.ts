/**
 * The cryptokey routing collision check.
 *
 * WireGuard picks the peer for an outgoing packet by longest-prefix match
 * over the AllowedIPs of every peer on the interface. When two peers claim
 * overlapping AllowedIPs, part of one peer's traffic silently goes to the
 * other (or the later `wg set` steals the range). Nothing fails loudly, so
 * the program refuses such a configuration before it is pushed.
 */
import { Cidr, blockSize, broadcast, formatCidr, parseAddress } from "./ipv4";

/** One peer as a host's interface sees it. */
export interface InterfacePeer {
  readonly name: string;
  readonly allowedIps: readonly string[];
}

/** One host's interface: its name, its own mesh address and its peers. */
export interface InterfacePlan {
  readonly name: string;
  /** The interface's own address. When given, a peer whose AllowedIPs hold it collides with the host itself. */
  readonly meshAddress?: string;
  readonly peers: readonly InterfacePeer[];
}

/**
 * Two peers on one host's interface whose AllowedIPs entries overlap, or a
 * peer whose entry holds the host's own address: then `peers[0]` is the
 * host and `allowedIps[0]` its address as a /32.
 */
export interface Collision {
  /** The host whose interface lists both peers. */
  readonly host: string;
  /** The two peers, in the order they appear on the interface (the host first). */
  readonly peers: readonly [string, string];
  /** The overlapping entries, as written: `allowedIps[0]` belongs to `peers[0]`. */
  readonly allowedIps: readonly [string, string];
}

/**
 * Parses one AllowedIPs entry the way `wg` does: `a.b.c.d/n`, or a bare
 * address meaning `/32`; host bits are masked off.
 */
export function parseAllowedIp(entry: string): Cidr {
  const match = /^([0-9.]+)(?:\/(\d{1,2}))?$/.exec(entry.trim());
  const address = match ? parseAddress(match[1]) : undefined;
  const prefix = match?.[2] === undefined ? 32 : Number(match[2]);
  if (address === undefined || prefix > 32) {
    throw new Error(`${JSON.stringify(entry)} is not an IPv4 AllowedIPs entry such as 10.8.0.2/32`);
  }
  const size = blockSize(prefix);
  return { network: address - (address % size), prefix };
}

/**
 * Every pair of entries, on every interface, that belong to two different
 * peers and overlap. Works on any AllowedIPs lists, not only the ones the
 * fleet plan produces. Deterministic: per interface, the entries that hold
 * its own address first, then the pairs, in the order the entries are
 * listed (interface, then peer, then entry).
 *
 * A sweep over the entries sorted by start address keeps it near-linear on
 * large full meshes (250 hosts see 250 × 249 entries): CIDR blocks either
 * nest or are disjoint, so the blocks still open at an entry's start all
 * contain it, and every one of them overlaps it.
 */
export function findAllowedIpCollisions(plan: {
  readonly hosts: readonly InterfacePlan[];
  /** The mesh block: see `isTransitEntry`. */
  readonly meshCidr?: string;
}): Collision[] {
  const collisions: Collision[] = [];
  const mesh = plan.meshCidr === undefined ? undefined : parseAllowedIp(plan.meshCidr);
  for (const host of plan.hosts) {
    collisions.push(...selfCollisions(host, mesh));
    const entries = host.peers.flatMap((peer, peerIndex) =>
      peer.allowedIps.map((text) => {
        const cidr = parseAllowedIp(text);
        return { peerIndex, peer: peer.name, text, start: cidr.network, end: broadcast(cidr) };
      }),
    );
    const order = entries
      .map((_, i) => i)
      .sort((i, j) => entries[i].start - entries[j].start || entries[j].end - entries[i].end || i - j);
    const open: number[] = [];
    const pairs: [number, number][] = [];
    for (const i of order) {
      while (open.length > 0 && entries[open[open.length - 1]].end < entries[i].start) {
        open.pop();
      }
      for (const j of open) {
        if (entries[i].peerIndex !== entries[j].peerIndex) {
          pairs.push(i < j ? [i, j] : [j, i]);
        }
      }
      open.push(i);
    }
    pairs.sort(([a1, b1], [a2, b2]) => a1 - a2 || b1 - b2);
    for (const [i, j] of pairs) {
      const [a, b] = [entries[i], entries[j]];
      collisions.push({ host: host.name, peers: [a.peer, b.peer], allowedIps: [a.text, b.text] });
    }
  }
  return collisions;
}

/** The part two overlapping blocks share: the smaller block (CIDR blocks either nest or are disjoint). */
export function sharedBlock(a: string, b: string): string {
  const x = parseAllowedIp(a);
  const y = parseAllowedIp(b);
  return formatCidr(x.prefix >= y.prefix ? x : y);
}

/**
 * The one entry allowed to hold the host's own address: the whole mesh block
 * on an interface whose only peer carries it. That is a host routed through
 * the hub: its single peer forwards to every other host, and no other peer
 * is there to lose traffic to it.
 */
export function isTransitEntry(host: InterfacePlan, entry: Cidr, mesh: Cidr | undefined): boolean {
  return (
    mesh !== undefined &&
    host.peers.length === 1 &&
    entry.network === mesh.network &&
    entry.prefix === mesh.prefix
  );
}

/** Entries that hold the host's own address, except a transit entry. In entry order. */
function selfCollisions(host: InterfacePlan, mesh: Cidr | undefined): Collision[] {
  if (host.meshAddress === undefined) {
    return [];
  }
  const own = parseAllowedIp(host.meshAddress).network;
  const self = `${host.meshAddress}/32`;
  return host.peers.flatMap((peer) =>
    peer.allowedIps
      .filter((text) => {
        const cidr = parseAllowedIp(text);
        return cidr.network <= own && own <= broadcast(cidr) && !isTransitEntry(host, cidr, mesh);
      })
      .map((text): Collision => ({
        host: host.name,
        peers: [host.name, peer.name],
        allowedIps: [self, text],
      })),
  );
}

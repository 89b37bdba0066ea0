/**
 * The cryptokey routing collision check.
 *
 * WireGuard picks the peer for an outgoing packet by longest-prefix match
 * over the AllowedIPs of every peer on the interface. When two peers claim
 * overlapping AllowedIPs, part of one peer's traffic silently goes to the
 * other (or the later `wg set` steals the range). Nothing fails loudly, so
 * the program refuses such a configuration before it is pushed.
 */
import { Cidr, blockSize, formatCidr, parseAddress } from "./ipv4";
import { Cidr6, blockSize6, formatCidr6, parseAddress6 } from "./ipv6";

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
  /** The interface's own IPv6 address, likewise. */
  readonly meshAddress6?: string;
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
 * Parses one IPv6 AllowedIPs entry the way `wg` does: `address/n`, or a bare address meaning `/128`;
 * host bits are masked off.
 */
export function parseAllowedIp6(entry: string): Cidr6 {
  const match = /^([0-9a-fA-F:.]+)(?:\/(\d{1,3}))?$/.exec(entry.trim());
  const address = match ? parseAddress6(match[1]) : undefined;
  const prefix = match?.[2] === undefined ? 128 : Number(match[2]);
  if (address === undefined || prefix > 128) {
    throw new Error(`${JSON.stringify(entry)} is not an IPv6 AllowedIPs entry such as fd00::2/128`);
  }
  return { network: address - (address % blockSize6(prefix)), prefix };
}

/** IPv6 entries sit above every IPv4 one, so that one sweep keeps the two families apart. */
const SIX = 1n << 128n;

/** An entry as a closed range of one space holding both families: IPv4 below 2^32, IPv6 from 2^128. */
function parseBlock(entry: string): {
  readonly start: bigint;
  readonly end: bigint;
  readonly prefix: number;
} {
  if (entry.includes(":")) {
    const cidr = parseAllowedIp6(entry);
    return {
      start: SIX + cidr.network,
      end: SIX + cidr.network + blockSize6(cidr.prefix) - 1n,
      prefix: cidr.prefix,
    };
  }
  const cidr = parseAllowedIp(entry);
  const start = BigInt(cidr.network);
  return { start, end: start + BigInt(blockSize(cidr.prefix)) - 1n, prefix: cidr.prefix };
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
  /** The mesh's IPv6 prefix, likewise. */
  readonly meshPrefix6?: string;
}): Collision[] {
  const collisions: Collision[] = [];
  const transit = [plan.meshCidr, plan.meshPrefix6].flatMap((t) => (t === undefined ? [] : [parseBlock(t)]));
  const compare = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
  for (const host of plan.hosts) {
    collisions.push(...selfCollisions(host, transit));
    const entries = host.peers.flatMap((peer, peerIndex) =>
      peer.allowedIps.map((text) => ({ peerIndex, peer: peer.name, text, ...parseBlock(text) })),
    );
    const order = entries
      .map((_, i) => i)
      .sort(
        (i, j) =>
          compare(entries[i].start, entries[j].start) || compare(entries[j].end, entries[i].end) || i - j,
      );
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
  if (a.includes(":")) {
    const x = parseAllowedIp6(a);
    const y = parseAllowedIp6(b);
    return formatCidr6(x.prefix >= y.prefix ? x : y);
  }
  const x = parseAllowedIp(a);
  const y = parseAllowedIp(b);
  return formatCidr(x.prefix >= y.prefix ? x : y);
}

/**
 * The one entry allowed to hold the host's own address: the whole mesh block
 * (or the mesh's IPv6 prefix) on an interface whose only peer carries it.
 * That is a host routed through the hub: its single peer forwards to every
 * other host, and no other peer is there to lose traffic to it.
 */
function isTransitEntry(
  host: InterfacePlan,
  entry: { readonly start: bigint; readonly end: bigint },
  transit: readonly { readonly start: bigint; readonly end: bigint }[],
): boolean {
  return host.peers.length === 1 && transit.some((t) => t.start === entry.start && t.end === entry.end);
}

/** Entries that hold one of the host's own addresses, except a transit entry. In entry order. */
function selfCollisions(
  host: InterfacePlan,
  transit: readonly { readonly start: bigint; readonly end: bigint }[],
): Collision[] {
  const own = [host.meshAddress, host.meshAddress6].flatMap((address) =>
    address === undefined
      ? []
      : [{ at: parseBlock(address).start, self: `${address}/${address.includes(":") ? 128 : 32}` }],
  );
  return host.peers.flatMap((peer) =>
    peer.allowedIps.flatMap((text) => {
      const block = parseBlock(text);
      return own
        .filter(({ at }) => block.start <= at && at <= block.end && !isTransitEntry(host, block, transit))
        .map(({ self }): Collision => ({
          host: host.name,
          peers: [host.name, peer.name],
          allowedIps: [self, text],
        }));
    }),
  );
}

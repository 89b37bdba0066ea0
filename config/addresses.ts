/**
 * IPv4 ranges with a special meaning (RFC 6890, RFC 5737) and Hetzner's,
 * and what each one does to a fleet when it turns up where it does not
 * belong: in the mesh, a route, an endpoint or the admin's SSH sources.
 */
import { Cidr, broadcast, contains, overlaps, parseCidr } from "./ipv4";
import { Cidr6, formatCidr6, overlaps6, parsePrefixed6 } from "./ipv6";

/** A range with a special meaning, of either family. */
export interface Special<C> {
  readonly cidr: C;
  /** What the range is, e.g. `the loopback range 127.0.0.0/8`. */
  readonly name: string;
  /** Why an address in it is not a host's, e.g. `is the machine that runs pulumi itself`. */
  readonly why: string;
}

export type SpecialRange = Special<Cidr>;

/** `text` parsed by `parse` (which refuses anything but the canonical form) as a named range. */
function special<C>(
  parse: (text: string) => C | undefined,
  text: string,
  name: string,
  why: string,
): Special<C> {
  const cidr = parse(text);
  if (cidr === undefined) {
    throw new Error(`${text} is not a CIDR in canonical form`);
  }
  return { cidr, name: `the ${name} ${text}`, why };
}

const range = (text: string, name: string, why: string): SpecialRange => special(parseCidr, text, name, why);

/**
 * Addresses that never name a remote host: nothing in them can be a peer's
 * endpoint, and routing them into the mesh takes them from the kernel (or,
 * for 169.254.169.254, from cloud-init's metadata service).
 */
export const NON_UNICAST_RANGES: readonly SpecialRange[] = [
  range("0.0.0.0/8", "this-network range", "means this machine, not a remote one"),
  range("127.0.0.0/8", "loopback range", "is the machine that runs pulumi itself"),
  range(
    "169.254.0.0/16",
    "link-local range",
    "reaches only the same network segment, and 169.254.169.254 is the cloud's metadata service",
  ),
  range("224.0.0.0/4", "multicast range", "is a group address, not a host's"),
  range(
    "240.0.0.0/4",
    "reserved range",
    "is not assigned to hosts (255.255.255.255 is the broadcast address)",
  ),
];

/** RFC 5737: addresses for examples. No host has one and no connection comes from one. */
export const DOCUMENTATION_RANGES: readonly SpecialRange[] = [
  range("192.0.2.0/24", "documentation range", "is reserved for examples (RFC 5737)"),
  range("198.51.100.0/24", "documentation range", "is reserved for examples (RFC 5737)"),
  range("203.0.113.0/24", "documentation range", "is reserved for examples (RFC 5737)"),
];

/**
 * Private (RFC 1918) and carrier-grade NAT (RFC 6598) space: a server's
 * public address never sees a connection from it, so a firewall rule for
 * it never matches.
 */
export const PRIVATE_RANGES: readonly SpecialRange[] = [
  range("10.0.0.0/8", "private range", "is private"),
  range("172.16.0.0/12", "private range", "is private"),
  range("192.168.0.0/16", "private range", "is private"),
  range("100.64.0.0/10", "carrier-grade NAT range", "is shared address space behind a provider's NAT"),
];

/** The default gateway of every Hetzner Cloud server, reached on-link through eth0. */
export const HETZNER_GATEWAY: Cidr = { network: 0xac1f0101, prefix: 32 };

/**
 * The shortest prefix a mesh, a route or an SSH source may have. A /8 is the
 * largest block ever assigned to one organisation, so no network one admin
 * connects from, and no network behind one host, needs more; every shorter
 * prefix covers a good part of the internet (0.0.0.0/1 and 128.0.0.0/1 are
 * the whole of it in two pieces).
 */
export const WIDEST_PREFIX = 8;

/**
 * How many addresses SSH sources may open together: half the IPv4 space.
 * Only a list of more than a hundred /8s reaches it, which is the internet
 * in pieces, not a set of admin networks.
 */
export const WIDEST_UNION = 2 ** 31;

/** The first range of `ranges` that `cidr` overlaps. */
export function overlappedRange(cidr: Cidr, ranges: readonly SpecialRange[]): SpecialRange | undefined {
  return ranges.find((r) => overlaps(cidr, r.cidr));
}

/** The range of `ranges` that holds `address`. */
export function rangeOf(address: number, ranges: readonly SpecialRange[]): SpecialRange | undefined {
  return ranges.find((r) => contains(r.cidr, address));
}

/** How many addresses the blocks cover together, overlaps counted once. */
export function unionSize(cidrs: readonly Cidr[]): number {
  const sorted = [...cidrs].sort((a, b) => a.network - b.network || a.prefix - b.prefix);
  let total = 0;
  let end = -1;
  for (const cidr of sorted) {
    const last = broadcast(cidr);
    if (last <= end) {
      continue;
    }
    total += last - Math.max(cidr.network, end + 1) + 1;
    end = last;
  }
  return total;
}

/** e.g. `2147483648 addresses (2^31)`. */
export function describeSize(addresses: number): string {
  const power = Math.log2(addresses);
  return Number.isInteger(power) ? `${addresses} addresses (2^${power})` : `${addresses} addresses`;
}

/** An IPv6 range with a special meaning (RFC 6890's IPv6 table, RFC 4193, RFC 3849). */
export type SpecialRange6 = Special<Cidr6>;

/** An IPv6 CIDR written in RFC 5952 form, or undefined. */
function parseCanonical6(text: string): Cidr6 | undefined {
  const parsed = parsePrefixed6(text);
  const cidr = parsed && { network: parsed.address, prefix: parsed.prefix };
  return cidr && formatCidr6(cidr) === text ? cidr : undefined;
}

const range6 = (text: string, name: string, why: string): SpecialRange6 =>
  special(parseCanonical6, text, name, why);

/** IPv6 addresses that never name a remote host, as NON_UNICAST_RANGES for IPv4. */
export const NON_UNICAST_RANGES6: readonly SpecialRange6[] = [
  range6("::/128", "unspecified address", "means this machine, not a remote one"),
  range6("::1/128", "loopback address", "is the machine that runs pulumi itself"),
  range6(
    "::ffff:0:0/96",
    "IPv4-mapped range",
    "is how an IPv4 address looks to an IPv6 socket (write its IPv4 CIDR instead)",
  ),
  range6("fe80::/10", "link-local range", "reaches only the same network segment"),
  range6("ff00::/8", "multicast range", "is a group address, not a host's"),
];

/** RFC 3849: IPv6 addresses for examples. */
export const DOCUMENTATION_RANGES6: readonly SpecialRange6[] = [
  range6("2001:db8::/32", "documentation range", "is reserved for examples (RFC 3849)"),
];

/** Unique local addresses (RFC 4193): IPv6's private space. */
export const PRIVATE_RANGES6: readonly SpecialRange6[] = [
  range6("fc00::/7", "unique local range", "is private (RFC 4193)"),
];

/**
 * The shortest IPv6 prefix an SSH source may have: a /32 is what a provider is allocated, and an
 * admin's site gets a /48 or a /56 from it; anything shorter is a good part of the IPv6 internet.
 */
export const WIDEST_PREFIX6 = 32;

/** The first range of `ranges` that `cidr` overlaps. */
export function overlappedRange6(cidr: Cidr6, ranges: readonly SpecialRange6[]): SpecialRange6 | undefined {
  return ranges.find((r) => overlaps6(cidr, r.cidr));
}

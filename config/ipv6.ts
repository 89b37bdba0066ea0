/**
 * IPv6 arithmetic for the admin's SSH sources: addresses as bigints, no dependencies. Addresses are
 * written the way RFC 5952 prints them, the form Hetzner's API stores a firewall's source in (the
 * hcloud Terraform provider normalizes locally for that reason: terraform-provider-hcloud#870).
 */
import { parseAddress } from "./ipv4";

export interface Cidr6 {
  /** Network address as an unsigned 128-bit number. */
  readonly network: bigint;
  readonly prefix: number;
}

const GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Parses an IPv6 address in any valid form (`::`, a trailing dotted quad); undefined when it is not one. */
export function parseAddress6(text: string): bigint | undefined {
  let groups = text;
  const quad = /(?:^|:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const v4 = parseAddress(quad[1]);
    if (v4 === undefined) {
      return undefined;
    }
    groups = `${text.slice(0, text.length - quad[1].length)}${Math.floor(v4 / 65536).toString(16)}:${(v4 % 65536).toString(16)}`;
  }
  const halves = groups.split("::");
  if (halves.length > 2) {
    return undefined;
  }
  const split = (part: string) => (part === "" ? [] : part.split(":"));
  const head = split(halves[0]);
  const tail = halves.length === 2 ? split(halves[1]) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) {
    return undefined;
  }
  const all = [...head, ...Array<string>(missing).fill("0"), ...tail];
  if (!all.every((g) => GROUP.test(g))) {
    return undefined;
  }
  return all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** RFC 5952: lower case, no leading zeros, the longest run of two or more zero groups (the first of equals) as `::`. */
export function formatAddress6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { start: -1, length: 0 };
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) {
      j++;
    }
    if (j - i > best.length) {
      best = { start: i, length: j - i };
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (best.length < 2) {
    return hex(groups);
  }
  return `${hex(groups.slice(0, best.start))}::${hex(groups.slice(best.start + best.length))}`;
}

export function blockSize6(prefix: number): bigint {
  return 1n << BigInt(128 - prefix);
}

/** Parses `address/n` (n ≤ 128) without asking for the network address; undefined when it is not one. */
export function parsePrefixed6(text: string): { address: bigint; prefix: number } | undefined {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(text);
  const address = match ? parseAddress6(match[1]) : undefined;
  const prefix = match ? Number(match[2]) : NaN;
  return address === undefined || !(prefix <= 128) ? undefined : { address, prefix };
}

/** The network of `address/prefix`: its host bits cleared. */
export function networkOf6(address: bigint, prefix: number): bigint {
  return address - (address % blockSize6(prefix));
}

export function formatCidr6(cidr: Cidr6): string {
  return `${formatAddress6(cidr.network)}/${cidr.prefix}`;
}

/** Two blocks overlap exactly when one contains the other's network address. */
export function overlaps6(a: Cidr6, b: Cidr6): boolean {
  const inside = (outer: Cidr6, address: bigint) =>
    address >= outer.network && address < outer.network + blockSize6(outer.prefix);
  return inside(a, b.network) || inside(b, a.network);
}

/** IPv4 arithmetic for mesh addressing: plain numbers, no dependencies. */

export interface Cidr {
  /** Network address as an unsigned 32-bit number. */
  readonly network: number;
  readonly prefix: number;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Parses a dotted-quad address; undefined when it is not one. */
export function parseAddress(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) {
    return undefined;
  }
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatAddress(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

/** Parses `a.b.c.d/n`; undefined unless the address is the network address of the prefix. */
export function parseCidr(text: string): Cidr | undefined {
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!match) {
    return undefined;
  }
  const address = parseAddress(match[1]);
  const prefix = Number(match[2]);
  if (address === undefined || prefix > 32) {
    return undefined;
  }
  if (address % blockSize(prefix) !== 0) {
    return undefined;
  }
  return { network: address, prefix };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatAddress(cidr.network)}/${cidr.prefix}`;
}

export function blockSize(prefix: number): number {
  return 2 ** (32 - prefix);
}

export function broadcast(cidr: Cidr): number {
  return cidr.network + blockSize(cidr.prefix) - 1;
}

export function contains(cidr: Cidr, address: number): boolean {
  return address >= cidr.network && address <= broadcast(cidr);
}

/** Two CIDR blocks overlap exactly when one contains the other's network address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  return contains(a, b.network) || contains(b, a.network);
}

/** Usable host addresses of a block: all but network and broadcast (both usable in /31 and /32). */
export function hostRange(cidr: Cidr): { first: number; last: number } {
  if (cidr.prefix >= 31) {
    return { first: cidr.network, last: broadcast(cidr) };
  }
  return { first: cidr.network + 1, last: broadcast(cidr) - 1 };
}

/**
 * Which address family each pair of peers reaches each other's WireGuard port in. A host has a
 * public address in IPv4, IPv6 or both: a Hetzner server has both unless it is created without
 * IPv4 (`hcloud.ipv4: false`); an existing host has the family of its `address`, plus IPv6 when
 * `existing.ipv6Address` is set. A DNS name is whatever its records say, which the plan cannot know.
 */
import { isIPv4, isIPv6 } from "node:net";

export type Family = "IPv4" | "IPv6";

/** `host:port` as WireGuard, ssh and URLs write it: an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** How a peer's endpoint is written on another host's interface: an address of one family, or the peer's DNS name. */
export type EndpointFamily = Family | "name";

/** What the families of a host's public addresses depend on: the fields of its config, validated or not. */
export interface PublicAddressing {
  readonly hcloud?: { readonly ipv4?: boolean };
  readonly existing?: { readonly address?: string; readonly ipv6Address?: string };
}

/** The families the host has a public address in, IPv4 first; undefined for an existing host given by DNS name. */
export function publicFamilies(host: PublicAddressing): readonly Family[] | undefined {
  if (host.hcloud !== undefined) {
    return host.hcloud.ipv4 === false ? ["IPv6"] : ["IPv4", "IPv6"];
  }
  const address = host.existing?.address ?? "";
  if (isIPv6(address)) {
    return ["IPv6"];
  }
  if (isIPv4(address)) {
    return host.existing?.ipv6Address !== undefined ? ["IPv4", "IPv6"] : ["IPv4"];
  }
  return undefined;
}

/**
 * The family `from` dials `to`'s endpoint in: IPv4 when both have it (what a fleet without IPv6
 * hosts always used), else IPv6; `name` when `to` is a DNS name; undefined when the two have no
 * family in common, so that no packet of one can reach the other.
 */
export function endpointFamily(from: PublicAddressing, to: PublicAddressing): EndpointFamily | undefined {
  const theirs = publicFamilies(to);
  if (theirs === undefined) {
    return "name";
  }
  const ours = publicFamilies(from);
  return theirs.find((family) => ours === undefined || ours.includes(family));
}

/** Small fleets built by hand for the host, WireGuard and bootstrap tests. */
import { createHash } from "node:crypto";
import { clampPrivateKey, wireguardPublicKey } from "../components/wireguardKeypair";
import { DEFAULT_HEALTH } from "../config/health";
import { FleetPlan, planFleet } from "../config/model";
import { FleetConfig, HostConfig, MeshConfig } from "../config/types";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { PeerIdentity } from "../templates/wireguard";

type HostOverrides = Partial<HostConfig> & Pick<HostConfig, "name">;

export function host(overrides: HostOverrides): HostConfig {
  return {
    hcloud: overrides.existing
      ? undefined
      : { serverType: "cx23", location: "nbg1", image: "debian-12", ipv4: true },
    wireguard: "kernel",
    keyRotation: "",
    routes: [],
    ...overrides,
  };
}

export function fleet(hosts: readonly HostConfig[], mesh: Partial<MeshConfig> = {}): FleetConfig {
  return {
    hosts,
    mesh: { cidr: "10.8.0.0/24", listenPort: 51820, topology: "full", hubRouting: true, ...mesh },
    admin: {
      sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeAdminKeyForTestsOnly admin@swarm",
      sshSourceCidrs: ["198.51.100.0/24", "2001:db8:1::/48"],
    },
    exports: [],
    mounts: [],
    syncs: [],
    health: DEFAULT_HEALTH,
    repairs: {},
  };
}

/** The design's fleet as a hub: `anchor` at 10.8.0.1 with a volume, a satellite, and an existing host. */
export const HUB_FLEET: FleetConfig = fleet(
  [
    host({
      name: "anchor",
      meshAddress: "10.8.0.1",
      hcloud: { serverType: "cx33", location: "fsn1", image: "debian-12", ipv4: true, volumeSize: 40 },
    }),
    host({ name: "satellite", routes: ["10.20.0.0/24"] }),
    host({
      name: "hetzner-native",
      existing: {
        address: "198.51.100.7",
        user: "admin",
        port: 2222,
        hostKey: fixtureHostKey("hetzner-native"),
      },
      wireguard: "wireguard-go",
    }),
  ],
  { topology: "hub", hub: "anchor", mtu: 1420, persistentKeepalive: 25 },
);

/** Four hosts, every one peering with every other; one reached over IPv6, one in userspace. */
export const FULL_FLEET: FleetConfig = fleet([
  host({ name: "anchor", meshAddress: "10.8.0.1" }),
  host({ name: "satellite", routes: ["10.20.0.0/24", "10.21.0.0/24"] }),
  host({
    name: "hetzner-native",
    existing: {
      address: "198.51.100.7",
      // lab-1 has only IPv6: it dials this host here, and the Hetzner servers at their IPv6 addresses.
      ipv6Address: "2001:db8::7",
      user: "root",
      port: 22,
      hostKey: fixtureHostKey("hetzner-native"),
    },
  }),
  host({
    name: "lab-1",
    existing: { address: "2001:db8::10", user: "root", port: 22, hostKey: fixtureHostKey("lab-1") },
    wireguard: "wireguard-go",
  }),
]);

/** A deterministic private key per host name, as the mock runtime would make one. */
export function privateKeyOf(name: string): string {
  return clampPrivateKey(createHash("sha256").update(`key:${name}`).digest()).toString("base64");
}

export function publicKeyOf(name: string): string {
  return wireguardPublicKey(privateKeyOf(name));
}

/** Public addresses used as endpoints: documentation ranges only, as the mock runtime gives servers. */
export function endpointOf(config: FleetConfig, name: string): string {
  const index = config.hosts.findIndex((h) => h.name === name);
  const found = config.hosts[index];
  if (found?.existing) {
    return found.existing.address;
  }
  return found?.hcloud?.ipv4 === false ? ipv6Of(index) : `203.0.113.${index + 1}`;
}

const ipv6Of = (index: number) => `2001:db8:0:${(index + 1).toString(16)}::1`;

export function identitiesOf(config: FleetConfig): Record<string, PeerIdentity> {
  return Object.fromEntries(
    config.hosts.map((h, index) => {
      const endpoint6 = h.existing
        ? h.existing.ipv6Address
        : h.hcloud?.ipv4 !== false
          ? ipv6Of(index)
          : undefined;
      const identity: PeerIdentity = { publicKey: publicKeyOf(h.name), endpoint: endpointOf(config, h.name) };
      return [h.name, endpoint6 !== undefined ? { ...identity, endpoint6 } : identity];
    }),
  );
}

export function plan(config: FleetConfig): FleetPlan {
  return planFleet(config);
}

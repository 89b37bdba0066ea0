import fc from "fast-check";
import { isIPv4, isIPv6 } from "node:net";
import { PublicAddressing, endpointFamily, publicFamilies } from "../config/endpoints";
import { planFleet } from "../config/model";
import { validateFleetConfig } from "../config/validate";
import { FleetConfig } from "../config/types";
import { fixtureHostKey } from "../offline/fixtureHostKeys";

/** Every way a host's public addresses can be declared. */
const addressing: fc.Arbitrary<PublicAddressing> = fc.oneof(
  fc.boolean().map((ipv4) => ({ hcloud: { ipv4 } })),
  fc.constantFrom(
    { existing: { address: "192.0.2.7" } },
    { existing: { address: "192.0.2.7", ipv6Address: "2001:db8::7" } },
    { existing: { address: "2001:db8::8" } },
    { existing: { address: "host.example.org" } },
  ),
);

describe("the family one peer dials another in", () => {
  it("is one both have, IPv4 when both have IPv4, a name only for a peer given by name", () => {
    fc.assert(
      fc.property(addressing, addressing, (from, to) => {
        const family = endpointFamily(from, to);
        const ours = publicFamilies(from);
        const theirs = publicFamilies(to);
        if (theirs === undefined) {
          return family === "name";
        }
        if (family === undefined) {
          // No family in common: both are known and disjoint.
          return ours !== undefined && !theirs.some((f) => ours.includes(f));
        }
        return (
          family !== "name" &&
          theirs.includes(family) &&
          (ours === undefined || ours.includes(family)) &&
          (family === "IPv4" || !theirs.includes("IPv4") || (ours !== undefined && !ours.includes("IPv4")))
        );
      }),
    );
  });

  it("exists one way exactly when it exists the other way", () => {
    fc.assert(
      fc.property(addressing, addressing, (a, b) => {
        return (endpointFamily(a, b) === undefined) === (endpointFamily(b, a) === undefined);
      }),
    );
  });
});

describe("a fleet of hosts reached over IPv4, IPv6 or both", () => {
  const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF6NX6jWXUNMpFM8Ffg3wvvMI/9ABsWk6Bt3gKyAdPGr admin@swarm";
  /** Existing hosts only (no admin section needed): IPv4, IPv6, both, or a name. */
  const kinds = ["4", "6", "46", "name"] as const;
  const hostOf = (kind: (typeof kinds)[number], i: number) => {
    const existing: Record<string, unknown> = {
      hostKey: fixtureHostKey(`h${i}`),
      address:
        kind === "6"
          ? `2a01:4f8:0:${i + 1}::1`
          : kind === "name"
            ? `h${i}.example.org`
            : `192.168.7.${i + 1}`,
    };
    if (kind === "46") {
      existing.ipv6Address = `2a01:4f8:0:${i + 1}::1`;
    }
    return { name: `h${i}`, existing };
  };
  const fleets = fc.record({
    kinds: fc.array(fc.constantFrom(...kinds), { minLength: 2, maxLength: 8 }),
    topology: fc.constantFrom("full", "hub"),
    hub: fc.nat(),
  });

  it("is accepted exactly when every pair of peers shares a family, and then every endpoint is in one", () => {
    fc.assert(
      fc.property(fleets, ({ kinds: chosen, topology, hub }) => {
        const hosts = chosen.map(hostOf);
        const hubName = hosts[hub % hosts.length].name;
        const raw = {
          hosts,
          mesh: { cidr: "10.8.0.0/24", topology, ...(topology === "hub" ? { hub: hubName } : {}) },
          admin: { sshPublicKey: KEY, sshSourceCidrs: ["198.51.100.0/24"] },
        };
        const { config, errors } = validateFleetConfig(raw);
        const family = (i: number) => chosen[i];
        const apart = (i: number, j: number) =>
          (family(i) === "6" && family(j) === "4") || (family(i) === "4" && family(j) === "6");
        const peers = (i: number, j: number) =>
          i !== j && (topology === "full" || hosts[i].name === hubName || hosts[j].name === hubName);
        const expectRefused = chosen.some((_, i) => chosen.some((__, j) => peers(i, j) && apart(i, j)));
        if (expectRefused) {
          expect(config).toBeUndefined();
          expect(errors.length).toBeGreaterThan(0);
          expect(
            errors.every((e) => /has only an IPv6 address, and its peers? .* only IPv4/.test(e.message)),
          ).toBe(true);
          return;
        }
        expect(errors).toEqual([]);
        const plan = planFleet(config as FleetConfig);
        for (const host of plan.hosts) {
          for (const peer of host.peers) {
            const existing = plan.byName.get(peer.name)?.config.existing;
            const dialled =
              peer.endpointFamily === "IPv6"
                ? (existing?.ipv6Address ?? existing?.address)
                : existing?.address;
            const ok =
              peer.endpointFamily === "name"
                ? !isIPv4(dialled ?? "") && !isIPv6(dialled ?? "")
                : peer.endpointFamily === "IPv6"
                  ? isIPv6(dialled ?? "")
                  : isIPv4(dialled ?? "");
            expect({ host: host.name, peer: peer.name, family: peer.endpointFamily, ok }).toEqual({
              host: host.name,
              peer: peer.name,
              family: peer.endpointFamily,
              ok: true,
            });
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});

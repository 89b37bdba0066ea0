import { createHash } from "node:crypto";
import fc from "fast-check";
import {
  blockSize,
  broadcast,
  contains,
  formatAddress,
  formatCidr,
  parseAddress,
  parseCidr,
} from "../config/ipv4";
import { formatAddress6, parseAddress6 } from "../config/ipv6";
import { allocateMeshAddresses, allocateMeshAddresses6 } from "../config/model";

interface Case {
  readonly cidr: string;
  readonly hosts: { name: string; meshAddress?: string }[];
}

/**
 * A mesh block (/22 to /30) and up to as many hosts as it has usable
 * addresses, some of them pinned to distinct explicit addresses.
 */
const meshCase: fc.Arbitrary<Case> = fc
  .record({ prefix: fc.integer({ min: 22, max: 30 }), seed: fc.integer({ min: 0, max: 2 ** 32 - 1 }) })
  .chain(({ prefix, seed }) => {
    const network = seed - (seed % blockSize(prefix));
    const usable = blockSize(prefix) - 2;
    return fc
      .uniqueArray(fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/), {
        minLength: 1,
        maxLength: Math.min(usable, 40),
      })
      .chain((names) =>
        fc.uniqueArray(fc.integer({ min: 1, max: usable }), { maxLength: names.length }).chain((offsets) =>
          fc
            .shuffledSubarray(names, { minLength: offsets.length, maxLength: offsets.length })
            .map((pinned) => ({
              cidr: formatCidr({ network, prefix }),
              hosts: names.map((name) => {
                const i = pinned.indexOf(name);
                return i < 0 ? { name } : { name, meshAddress: formatAddress(network + offsets[i]) };
              }),
            })),
        ),
      );
  });

describe("allocateMeshAddresses", () => {
  it("gives every host a distinct address", () => {
    fc.assert(
      fc.property(meshCase, ({ cidr, hosts }) => {
        const addresses = [...allocateMeshAddresses(hosts, cidr).values()];
        expect(addresses).toHaveLength(hosts.length);
        expect(new Set(addresses).size).toBe(hosts.length);
      }),
    );
  });

  it("stays inside the block and never hands out its network or broadcast address", () => {
    fc.assert(
      fc.property(meshCase, ({ cidr, hosts }) => {
        const block = parseCidr(cidr)!;
        for (const address of allocateMeshAddresses(hosts, cidr).values()) {
          const value = parseAddress(address)!;
          expect(contains(block, value)).toBe(true);
          expect(value).not.toBe(block.network);
          expect(value).not.toBe(broadcast(block));
        }
      }),
    );
  });

  it("keeps explicit addresses and never hands one to another host", () => {
    fc.assert(
      fc.property(meshCase, ({ cidr, hosts }) => {
        const result = allocateMeshAddresses(hosts, cidr);
        const explicit = new Set(hosts.flatMap((h) => (h.meshAddress ? [h.meshAddress] : [])));
        for (const host of hosts) {
          if (host.meshAddress) {
            expect(result.get(host.name)).toBe(host.meshAddress);
          } else {
            expect(explicit.has(result.get(host.name)!)).toBe(false);
          }
        }
      }),
    );
  });

  it("does not depend on the order hosts are listed in", () => {
    fc.assert(
      fc.property(
        meshCase.chain((c) =>
          fc.shuffledSubarray(c.hosts, { minLength: c.hosts.length }).map((s) => [c, s] as const),
        ),
        ([{ cidr, hosts }, shuffled]) => {
          const a = allocateMeshAddresses(hosts, cidr);
          const b = allocateMeshAddresses(shuffled, cidr);
          expect(new Map([...b].sort())).toEqual(new Map([...a].sort()));
        },
      ),
    );
  });

  it("fills a block exactly and refuses one host more", () => {
    const names = ["a", "b", "c", "d", "e", "f"];
    expect(
      new Set(
        allocateMeshAddresses(
          names.map((name) => ({ name })),
          "10.8.0.0/29",
        ).values(),
      ).size,
    ).toBe(6);
    expect(() =>
      allocateMeshAddresses(
        [...names, "g"].map((name) => ({ name })),
        "10.8.0.0/29",
      ),
    ).toThrow(/no free address left for host/);
  });
});

/** The interface identifier a name hashes to, computed apart from the code under test. */
function hashedIdentifier(name: string): bigint {
  return BigInt(`0x${createHash("sha256").update(name).digest("hex").slice(0, 16)}`);
}

const PREFIX6 = "fd31:a7c9:5e04:8::/64";
const NETWORK6 = parseAddress6("fd31:a7c9:5e04:8::")!;

/**
 * Up to 40 hosts in the mesh's /64, some pinned: at random identifiers, or at the identifier another
 * host's name hashes to (or the one after it), so that probing past taken addresses is exercised.
 */
const meshCase6 = fc
  .uniqueArray(fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/), { minLength: 1, maxLength: 40 })
  .chain((names) =>
    fc
      .array(
        fc.record({
          host: fc.nat(names.length - 1),
          at: fc.oneof(
            fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
            fc
              .record({ of: fc.nat(names.length - 1), plus: fc.constantFrom(0n, 1n) })
              .map(({ of, plus }) => (hashedIdentifier(names[of]) + plus) % (1n << 64n) || 1n),
          ),
        }),
        { maxLength: names.length },
      )
      .map((pins) => {
        const pinned = new Map<number, bigint>();
        const used = new Set<bigint>();
        for (const { host, at } of pins) {
          if (!pinned.has(host) && !used.has(at)) {
            pinned.set(host, at);
            used.add(at);
          }
        }
        return names.map((name, i) =>
          pinned.has(i) ? { name, meshAddress6: formatAddress6(NETWORK6 + pinned.get(i)!) } : { name },
        );
      }),
  );

describe("allocateMeshAddresses6", () => {
  it("gives every host a distinct address inside the prefix, never identifier 0, and keeps pinned ones", () => {
    fc.assert(
      fc.property(meshCase6, (hosts) => {
        const result = allocateMeshAddresses6(hosts, PREFIX6);
        const values = [...result.values()].map((a) => parseAddress6(a)!);
        expect(new Set(values).size).toBe(hosts.length);
        for (const value of values) {
          expect(value >> 64n).toBe(NETWORK6 >> 64n);
          expect(value).not.toBe(NETWORK6);
        }
        for (const host of hosts) {
          if (host.meshAddress6 !== undefined) {
            expect(result.get(host.name)).toBe(host.meshAddress6);
          }
        }
        // Canonical, as `wg` and `ip` print them.
        expect([...result.values()].every((a) => formatAddress6(parseAddress6(a)!) === a)).toBe(true);
      }),
    );
  });

  it("puts a host whose hashed identifier is free exactly there", () => {
    fc.assert(
      fc.property(meshCase6, (hosts) => {
        const result = allocateMeshAddresses6(hosts, PREFIX6);
        const taken = new Set(hosts.flatMap((h) => (h.meshAddress6 ? [h.meshAddress6] : [])));
        const hashed = hosts
          .filter((h) => h.meshAddress6 === undefined)
          .map((h) => ({ name: h.name, at: formatAddress6(NETWORK6 + hashedIdentifier(h.name)) }));
        for (const { name, at } of hashed) {
          if (!taken.has(at) && hashed.filter((h) => h.at === at).length === 1) {
            expect(result.get(name)).toBe(at);
          }
        }
      }),
    );
  });

  it("does not depend on the order hosts are listed in, and adding a host moves no other", () => {
    fc.assert(
      fc.property(
        meshCase6.chain((hosts) =>
          fc.shuffledSubarray(hosts, { minLength: hosts.length }).map((s) => [hosts, s]),
        ),
        ([hosts, shuffled]) => {
          const a = allocateMeshAddresses6(hosts, PREFIX6);
          expect(new Map([...allocateMeshAddresses6(shuffled, PREFIX6)].sort())).toEqual(
            new Map([...a].sort()),
          );
          const grown = allocateMeshAddresses6([...hosts, { name: "zz-newcomer" }], PREFIX6);
          for (const [name, address] of a) {
            expect(grown.get(name)).toBe(address);
          }
        },
      ),
    );
  });
});

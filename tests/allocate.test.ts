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
import { allocateMeshAddresses } from "../config/model";

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

import fc from "fast-check";
import {
  Collision,
  InterfacePlan,
  findAllowedIpCollisions,
  parseAllowedIp,
  parseAllowedIp6,
} from "../config/collisions";
import { planFleet } from "../config/model";
import { loadStack } from "../config/load";
import { validateFleetConfig } from "../config/validate";
import { fixtureHostKey } from "../offline/fixtureHostKeys";

/** Every address of a block inside 10.0.0.0/24, listed one by one: the oracle never does prefix arithmetic. */
function addressesOf(entry: string): Set<number> {
  const [address, prefix] = entry.split("/");
  const last = Number(address.split(".")[3]);
  const size = 2 ** (32 - Number(prefix));
  const first = last - (last % size);
  return new Set(Array.from({ length: size }, (_, i) => first + i));
}

/** Inclusive range of an entry anywhere in IPv4, with BigInt so no 32-bit arithmetic is shared with the code. */
function rangeOf(entry: string): [bigint, bigint] {
  const [address, prefix] = entry.split("/");
  const value = address.split(".").reduce((acc, octet) => acc * 256n + BigInt(octet), 0n);
  const size = 2n ** BigInt(32 - Number(prefix));
  const start = value - (value % size);
  return [start, start + size - 1n];
}

/**
 * Every address of a block, one by one, tagged with its family: IPv4 inside 10.0.0.0/24, IPv6
 * inside fd00::/120 (written `fd00::N/p`, N in hex). The oracle never does prefix arithmetic.
 */
function familyAddresses(entry: string): Set<string> {
  if (!entry.includes(":")) {
    return new Set([...addressesOf(entry)].map((a) => `4:${a}`));
  }
  const [address, prefix] = entry.split("/");
  const last = Number.parseInt(address.slice(6) || "0", 16);
  const size = 2 ** (128 - Number(prefix));
  const first = last - (last % size);
  return new Set(Array.from({ length: size }, (_, i) => `6:${first + i}`));
}

/** Inclusive range of an IPv6 entry written with all eight groups. */
function rangeOf6(entry: string): [bigint, bigint] {
  const [address, prefix] = entry.split("/");
  const value = BigInt(
    `0x${address
      .split(":")
      .map((g) => g.padStart(4, "0"))
      .join("")}`,
  );
  const size = 2n ** BigInt(128 - Number(prefix));
  const start = value - (value % size);
  return [start, start + size - 1n];
}

const PREFIX6 = "fd31:a7c9:5e04:8::/64";

/** Inside fd00::/120, mostly in its first 32 addresses, so that overlaps and duplicates are common. */
const smallEntry6 = fc
  .record({ last: fc.integer({ min: 0, max: 31 }), prefix: fc.integer({ min: 123, max: 128 }) })
  .map(({ last, prefix }) => `fd00::${(last - (last % 2 ** (128 - prefix))).toString(16)}/${prefix}`);

/** Anywhere in IPv6, often near a few bases (both ends of the space among them); all eight groups written. */
const anyEntry6 = fc
  .record({
    value: fc.oneof(
      fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }),
      fc
        .constantFrom(0n, 0xfd31a7c95e040008n << 64n, (1n << 128n) - 256n)
        .chain((base) => fc.bigInt({ min: base, max: base + 15n })),
    ),
    prefix: fc.integer({ min: 0, max: 128 }),
  })
  .map(({ value, prefix }) => {
    const network = value - (value % (1n << BigInt(128 - prefix)));
    const groups = Array.from({ length: 8 }, (_, i) =>
      ((network >> BigInt(112 - 16 * i)) & 0xffffn).toString(16),
    );
    return `${groups.join(":")}/${prefix}`;
  });

function key(c: Collision): string {
  return JSON.stringify([c.host, c.peers, c.allowedIps]);
}

/** All cross-peer entry pairs of a plan, in the order the function under test visits them. */
function crossPairs(plan: { hosts: InterfacePlan[] }) {
  return plan.hosts.flatMap((host) =>
    host.peers.flatMap((p, i) =>
      host.peers.slice(i + 1).flatMap((q) =>
        p.allowedIps.flatMap((a) =>
          q.allowedIps.map((b) => ({
            host: host.name,
            peers: [p.name, q.name] as const,
            allowedIps: [a, b] as const,
          })),
        ),
      ),
    ),
  );
}

/** Inside 10.0.0.0/24, mostly in its first 32 addresses so that overlaps and exact duplicates are common. */
const smallEntry = fc
  .oneof(
    fc.record({ last: fc.integer({ min: 0, max: 31 }), prefix: fc.integer({ min: 27, max: 32 }) }),
    fc.record({ last: fc.integer({ min: 0, max: 255 }), prefix: fc.integer({ min: 24, max: 32 }) }),
  )
  .map(({ last, prefix }) => `10.0.0.${last - (last % 2 ** (32 - prefix))}/${prefix}`);

/** Anywhere in IPv4, but often near a few bases (including both ends of the space) so that overlaps are common. */
const anyValue = fc.oneof(
  fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  fc
    .constantFrom(0, 0x0a080000, 0xc0a80100, 2 ** 32 - 256)
    .chain((base) => fc.integer({ min: base, max: base + 15 })),
);

const anyEntry = fc
  .record({ value: anyValue, prefix: fc.integer({ min: 0, max: 32 }) })
  .map(({ value, prefix }) => {
    const network = value - (value % 2 ** (32 - prefix));
    return `${[24, 16, 8, 0].map((s) => Math.floor(network / 2 ** s) % 256).join(".")}/${prefix}`;
  });

function planOf(entry: fc.Arbitrary<string>): fc.Arbitrary<{ hosts: InterfacePlan[] }> {
  const peer = fc.record({
    name: fc.constantFrom("a", "b", "c", "d", "e"),
    allowedIps: fc.array(entry, { maxLength: 3 }),
  });
  const host = fc.record({
    name: fc.constantFrom("h1", "h2", "h3"),
    peers: fc.uniqueArray(peer, { maxLength: 4, selector: (p) => p.name }),
  });
  return fc.record({ hosts: fc.array(host, { maxLength: 3 }) });
}

/** Like `planOf`, with each interface's own address in 10.0.0.0/24 and the mesh block sometimes given. */
const ownedPlan = fc.record({
  meshCidr: fc.constantFrom(undefined, "10.0.0.0/24"),
  hosts: fc.array(
    fc.record({
      name: fc.constantFrom("h1", "h2", "h3"),
      meshAddress: fc.integer({ min: 0, max: 31 }).map((last) => `10.0.0.${last}`),
      peers: fc.uniqueArray(
        fc.record({
          name: fc.constantFrom("a", "b", "c", "d", "e"),
          // The mesh block itself is common, so that the transit case and its neighbours come up.
          allowedIps: fc.array(fc.oneof(smallEntry, fc.constant("10.0.0.0/24")), { maxLength: 3 }),
        }),
        { maxLength: 3, selector: (p) => p.name },
      ),
    }),
    { maxLength: 3 },
  ),
});

/** Like `ownedPlan`, in IPv6: own addresses in fd00::/123 and the prefix fd00::/120 sometimes given. */
const ownedPlan6 = fc.record({
  meshPrefix6: fc.constantFrom(undefined, "fd00::/120"),
  hosts: fc.array(
    fc.record({
      name: fc.constantFrom("h1", "h2", "h3"),
      meshAddress6: fc.integer({ min: 0, max: 31 }).map((last) => `fd00::${last.toString(16)}`),
      peers: fc.uniqueArray(
        fc.record({
          name: fc.constantFrom("a", "b", "c", "d", "e"),
          allowedIps: fc.array(fc.oneof(smallEntry6, fc.constant("fd00::/120"), smallEntry), {
            maxLength: 3,
          }),
        }),
        { maxLength: 3, selector: (p) => p.name },
      ),
    }),
    { maxLength: 3 },
  ),
});

/**
 * A validated hub fleet of `count` existing hosts, `hub` the index of the hub; each host whose
 * index is in `routed` gets the route `192.168.<index>.0/24`.
 */
function hubFleet(
  count: number,
  hub: number,
  hubRouting: boolean,
  routed: readonly number[] = [],
  ipv6Prefix?: string,
) {
  const names = Array.from({ length: count }, (_, i) => `h${i}`);
  const { config, errors } = validateFleetConfig({
    hosts: names.map((name, i) => ({
      name,
      existing: { address: `203.0.113.${i + 1}`, hostKey: fixtureHostKey(name) },
      ...(routed.includes(i) ? { routes: [`192.168.${i}.0/24`] } : {}),
    })),
    mesh: {
      cidr: "10.8.0.0/24",
      topology: "hub",
      hub: names[hub],
      hubRouting,
      ...(ipv6Prefix ? { ipv6Prefix } : {}),
    },
  });
  expect(errors).toEqual([]);
  return {
    config: config as NonNullable<typeof config>,
    plan: planFleet(config as NonNullable<typeof config>),
  };
}

const hubFleets = fc
  .integer({ min: 2, max: 7 })
  .chain((count) => fc.record({ count: fc.constant(count), hub: fc.integer({ min: 0, max: count - 1 }) }));

/** Hub fleets where some hosts, the hub among them or not, have a route. */
const routedHubFleets = hubFleets.chain(({ count, hub }) =>
  fc.record({
    count: fc.constant(count),
    hub: fc.constant(hub),
    routed: fc.subarray(Array.from({ length: count }, (_, i) => i)),
  }),
);

describe("findAllowedIpCollisions", () => {
  it("finds exactly the pairs of peers whose AllowedIPs share an address (brute-force oracle)", () => {
    fc.assert(
      fc.property(planOf(smallEntry), (plan) => {
        const expected = crossPairs(plan).filter(({ allowedIps: [a, b] }) => {
          const x = addressesOf(a);
          return [...addressesOf(b)].some((address) => x.has(address));
        });
        expect(findAllowedIpCollisions(plan).map(key).sort()).toEqual(expected.map(key).sort());
      }),
      { numRuns: 300 },
    );
  });

  it("never reports a disjoint pair, and misses no overlapping one, anywhere in IPv4", () => {
    fc.assert(
      fc.property(planOf(anyEntry), (plan) => {
        const found = new Set(findAllowedIpCollisions(plan).map(key));
        for (const pair of crossPairs(plan)) {
          const [[s1, e1], [s2, e2]] = pair.allowedIps.map(rangeOf);
          expect(found.has(key(pair))).toBe(s1 <= e2 && s2 <= e1);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("also finds exactly the entries that hold the interface's own address, but the mesh block on a lone peer (brute-force oracle)", () => {
    fc.assert(
      fc.property(ownedPlan, (plan) => {
        const own = (host: (typeof plan.hosts)[number]) =>
          host.peers.flatMap((peer) =>
            peer.allowedIps
              .filter((entry) => addressesOf(entry).has(Number(host.meshAddress.split(".")[3])))
              .filter((entry) => !(plan.meshCidr === entry && host.peers.length === 1))
              .map((entry) => ({
                host: host.name,
                peers: [host.name, peer.name] as const,
                allowedIps: [`${host.meshAddress}/32`, entry] as const,
              })),
          );
        const pairs = crossPairs(plan).filter(({ allowedIps: [a, b] }) => {
          const x = addressesOf(a);
          return [...addressesOf(b)].some((address) => x.has(address));
        });
        const expected = [...plan.hosts.flatMap(own), ...pairs];
        expect(findAllowedIpCollisions(plan).map(key).sort()).toEqual(expected.map(key).sort());
      }),
      { numRuns: 300 },
    );
  });

  it("accepts a hub-routed fleet, whose hosts route the mesh block and every other host's routes to the hub as their only peer", () => {
    fc.assert(
      fc.property(routedHubFleets, ({ count, hub, routed }) => {
        const { config, plan } = hubFleet(count, hub, true, routed);
        const route = (i: number) => `192.168.${i}.0/24`;
        for (const [i, host] of plan.hosts.entries()) {
          if (i === hub) {
            // The hub reaches each spoke, and the spoke's route, directly.
            for (const peer of host.peers) {
              const j = Number(peer.name.slice(1));
              expect(peer.allowedIps).toEqual([
                `${plan.byName.get(peer.name)!.meshAddress}/32`,
                ...(routed.includes(j) ? [route(j)] : []),
              ]);
            }
            continue;
          }
          const others = routed.filter((j) => j !== i).map(route);
          expect(host.peers).toEqual([
            { name: config.mesh.hub, allowedIps: ["10.8.0.0/24", ...others.sort()], endpointFamily: "IPv4" },
          ]);
        }
        expect(findAllowedIpCollisions({ hosts: plan.hosts, meshCidr: config.mesh.cidr })).toEqual([]);
      }),
      { numRuns: 80 },
    );
  });

  it("without hub routing, a spoke's only peer carries the hub's routes and no other spoke's", () => {
    fc.assert(
      fc.property(routedHubFleets, ({ count, hub, routed }) => {
        const { plan } = hubFleet(count, hub, false, routed);
        for (const [i, host] of plan.hosts.entries()) {
          if (i !== hub) {
            expect(host.peers.flatMap((p) => p.allowedIps).filter((e) => e.startsWith("192.168."))).toEqual(
              routed.includes(hub) ? [`192.168.${hub}.0/24`] : [],
            );
          }
        }
      }),
      { numRuns: 50 },
    );
  });

  it("rejects the mesh block anywhere else: on the hub, beside a second peer, or another block holding the host", () => {
    const moved = fc.record({
      fleet: hubFleets,
      host: fc.nat(),
      move: fc.constantFrom("hub carries it", "second peer", "wider block", "narrower block"),
      address: fc.integer({ min: 1, max: 254 }),
    });
    fc.assert(
      fc.property(moved, ({ fleet: { count, hub }, host: pick, move, address }) => {
        const { config, plan } = hubFleet(count, hub, true);
        const hosts = plan.hosts.map((h) => ({
          name: h.name,
          meshAddress: h.meshAddress,
          peers: h.peers.map(({ name, allowedIps }) => ({ name, allowedIps })),
        }));
        const hubHost = hosts[hub];
        const spokes = hosts.filter((h) => h !== hubHost);
        const spoke = spokes[pick % spokes.length];
        const own = Number(spoke.meshAddress.split(".")[3]);
        // With two hosts the hub has a lone peer too, and may carry the block like any host routed through it.
        if (move === "hub carries it" && hubHost.peers.length > 1) {
          hubHost.peers[pick % hubHost.peers.length] = { name: spoke.name, allowedIps: ["10.8.0.0/24"] };
        } else if (move === "second peer" || move === "hub carries it") {
          spoke.peers.push({ name: "zz-extra", allowedIps: [`10.8.0.${address}/32`] });
        } else if (move === "wider block") {
          spoke.peers[0] = { name: config.mesh.hub as string, allowedIps: ["10.8.0.0/23"] };
        } else {
          const half = own < 128 ? "10.8.0.0/25" : "10.8.0.128/25";
          spoke.peers[0] = { name: config.mesh.hub as string, allowedIps: [half] };
        }
        expect(findAllowedIpCollisions({ hosts, meshCidr: config.mesh.cidr })).not.toEqual([]);
      }),
      { numRuns: 200 },
    );
  });

  it("without hub routing, every host carries only /32s and none holds its own address", () => {
    fc.assert(
      fc.property(hubFleets, ({ count, hub }) => {
        const { config, plan } = hubFleet(count, hub, false);
        expect(
          plan.hosts.flatMap((h) => h.peers.flatMap((p) => p.allowedIps)).every((e) => e.endsWith("/32")),
        ).toBe(true);
        expect(findAllowedIpCollisions({ hosts: plan.hosts, meshCidr: config.mesh.cidr })).toEqual([]);
      }),
      { numRuns: 30 },
    );
  });

  it("ignores overlaps between the entries of one peer", () => {
    const plan = {
      hosts: [{ name: "h", peers: [{ name: "a", allowedIps: ["10.1.0.0/16", "10.1.2.0/24"] }] }],
    };
    expect(findAllowedIpCollisions(plan)).toEqual([]);
  });

  it("reads entries the way wg does: a bare address is a /32, host bits are masked", () => {
    expect(parseAllowedIp("10.8.0.7")).toEqual({ network: 0x0a080007, prefix: 32 });
    expect(parseAllowedIp("10.8.0.7/24")).toEqual({ network: 0x0a080000, prefix: 24 });
    const plan = {
      hosts: [
        {
          name: "h",
          peers: [
            { name: "a", allowedIps: ["10.8.0.7"] },
            { name: "b", allowedIps: ["10.8.0.9/24"] },
          ],
        },
      ],
    };
    expect(findAllowedIpCollisions(plan)).toEqual([
      { host: "h", peers: ["a", "b"], allowedIps: ["10.8.0.7", "10.8.0.9/24"] },
    ]);
  });

  it("refuses an entry that is not an address block", () => {
    const refused = (entry: string) => () =>
      findAllowedIpCollisions({ hosts: [{ name: "h", peers: [{ name: "a", allowedIps: [entry] }] }] });
    expect(refused("fd00::/129")).toThrow('"fd00::/129" is not an IPv6 AllowedIPs entry');
    expect(refused("fd00:::1/128")).toThrow("is not an IPv6 AllowedIPs entry");
    expect(refused("10.8.0.0/33")).toThrow('"10.8.0.0/33" is not an IPv4 AllowedIPs entry');
  });

  it("reads IPv6 entries the way wg does: a bare address is a /128, host bits are masked", () => {
    expect(parseAllowedIp6("fd00::7")).toEqual({ network: (0xfd00n << 112n) | 7n, prefix: 128 });
    expect(parseAllowedIp6("fd00::7/64")).toEqual({ network: 0xfd00n << 112n, prefix: 64 });
  });

  it("finds exactly the overlapping pairs when both families are mixed; an IPv4 and an IPv6 entry never collide (brute-force oracle)", () => {
    fc.assert(
      fc.property(planOf(fc.oneof(smallEntry, smallEntry6)), (plan) => {
        const expected = crossPairs(plan).filter(({ allowedIps: [a, b] }) => {
          const x = familyAddresses(a);
          return [...familyAddresses(b)].some((address) => x.has(address));
        });
        expect(findAllowedIpCollisions(plan).map(key).sort()).toEqual(expected.map(key).sort());
      }),
      { numRuns: 300 },
    );
  });

  it("never reports a disjoint pair, and misses no overlapping one, anywhere in IPv6", () => {
    fc.assert(
      fc.property(planOf(anyEntry6), (plan) => {
        const found = new Set(findAllowedIpCollisions(plan).map(key));
        for (const pair of crossPairs(plan)) {
          const [[s1, e1], [s2, e2]] = pair.allowedIps.map(rangeOf6);
          expect(found.has(key(pair))).toBe(s1 <= e2 && s2 <= e1);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("finds exactly the entries that hold the interface's own IPv6 address, but the mesh prefix on a lone peer (brute-force oracle)", () => {
    fc.assert(
      fc.property(ownedPlan6, (plan) => {
        const own = (host: (typeof plan.hosts)[number]) =>
          host.peers.flatMap((peer) =>
            peer.allowedIps
              .filter((entry) =>
                familyAddresses(entry).has(`6:${Number.parseInt(host.meshAddress6.slice(6), 16)}`),
              )
              .filter((entry) => !(plan.meshPrefix6 === entry && host.peers.length === 1))
              .map((entry) => ({
                host: host.name,
                peers: [host.name, peer.name] as const,
                allowedIps: [`${host.meshAddress6}/128`, entry] as const,
              })),
          );
        const pairs = crossPairs(plan).filter(({ allowedIps: [a, b] }) => {
          const x = familyAddresses(a);
          return [...familyAddresses(b)].some((address) => x.has(address));
        });
        expect(findAllowedIpCollisions(plan).map(key).sort()).toEqual(
          [...plan.hosts.flatMap(own), ...pairs].map(key).sort(),
        );
      }),
      { numRuns: 300 },
    );
  });

  it("accepts a dual-stack hub-routed fleet, whose spokes route the mesh block and prefix to the hub, and rejects the prefix anywhere else", () => {
    const moved = fc.record({
      fleet: hubFleets,
      host: fc.nat(),
      move: fc.constantFrom("second peer", "wider prefix", "narrower prefix", "hub carries it"),
    });
    fc.assert(
      fc.property(moved, ({ fleet: { count, hub }, host: pick, move }) => {
        const { config, plan } = hubFleet(count, hub, true, [], PREFIX6);
        const mesh = { meshCidr: config.mesh.cidr, meshPrefix6: PREFIX6 };
        for (const [i, host] of plan.hosts.entries()) {
          expect(host.meshAddress6?.startsWith("fd31:a7c9:5e04:8:")).toBe(true);
          if (i !== hub) {
            expect(host.peers.map((p) => p.allowedIps)).toEqual([["10.8.0.0/24", PREFIX6]]);
          }
        }
        expect(findAllowedIpCollisions({ hosts: plan.hosts, ...mesh })).toEqual([]);
        const hosts = plan.hosts.map((h) => ({
          name: h.name,
          meshAddress: h.meshAddress,
          meshAddress6: h.meshAddress6,
          peers: h.peers.map(({ name, allowedIps }) => ({ name, allowedIps: [...allowedIps] })),
        }));
        const hubHost = hosts[hub];
        const spokes = hosts.filter((h) => h !== hubHost);
        const spoke = spokes[pick % spokes.length];
        if (move === "hub carries it" && hubHost.peers.length > 1) {
          hubHost.peers[pick % hubHost.peers.length].allowedIps.push(PREFIX6);
        } else if (move === "second peer" || move === "hub carries it") {
          spoke.peers.push({ name: "zz-extra", allowedIps: ["fd31:a7c9:5e04:8::ffff/128"] });
        } else {
          spoke.peers[0].allowedIps[1] =
            move === "wider prefix" ? "fd31:a7c9:5e04::/48" : `${spoke.meshAddress6}/127`;
        }
        expect(findAllowedIpCollisions({ hosts, ...mesh })).not.toEqual([]);
      }),
      { numRuns: 150 },
    );
  });

  it("finds none in the production plan", () => {
    const { config } = loadStack("prod", { dir: `${__dirname}/..` });
    const plan = planFleet(config);
    expect(plan.hosts.flatMap((h) => h.peers)).not.toHaveLength(0);
    expect(plan.hosts.find((h) => h.name === "satellite")?.peers).toEqual([
      { name: "anchor", allowedIps: ["10.8.0.0/24"], endpointFamily: "IPv4" },
    ]);
    expect(findAllowedIpCollisions({ hosts: plan.hosts, meshCidr: config.mesh.cidr })).toEqual([]);
  });
});

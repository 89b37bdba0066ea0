import { DEFAULT_HEALTH } from "../config/health";
import { readStackFile } from "../config/load";
import { FleetPlan, planFleet } from "../config/model";
import { stepsOf } from "../config/plan";
import { ConfigError, FleetConfig } from "../config/types";
import { ValidateOptions, meshCollisionErrors, validateFleetConfig } from "../config/validate";
import { retentionSchema } from "../config/schema";
import { RETENTION_TIERS } from "../templates/zfs";
import { parse } from "yaml";
import { fixtureHostKey } from "../offline/fixtureHostKeys";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF6NX6jWXUNMpFM8Ffg3wvvMI/9ABsWk6Bt3gKyAdPGr admin@swarm";

/** A valid fleet shaped like prod; each table row breaks one thing in a fresh copy. */
function base(): Record<string, unknown> {
  return {
    hosts: [
      {
        name: "anchor",
        meshAddress: "10.8.0.1",
        hcloud: { serverType: "cx23", location: "nbg1", volumeSize: 50 },
      },
      { name: "satellite", hcloud: { serverType: "cx23", location: "nbg1" } },
      { name: "hetzner-native", hcloud: { serverType: "cx23", location: "fsn1" } },
    ],
    mesh: {
      cidr: "10.8.0.0/24",
      topology: "hub",
      hub: "anchor",
      listenPort: 51820,
      persistentKeepalive: "25s",
    },
    admin: { sshPublicKey: KEY, sshSourceCidrs: ["198.51.100.0/24"] },
    exports: [
      {
        name: "meshfs",
        host: "anchor",
        pool: { name: "tank", devices: ["volume"] },
        dataset: "tank/meshfs/state",
        mountpoint: "/tank/meshfs/state",
        properties: { refquota: "100G" },
        snapshots: { interval: "1h", retention: { hourly: 48 } },
        clients: ["satellite", "hetzner-native"],
      },
    ],
    mounts: [
      { host: "satellite", export: "meshfs", path: "/mnt/meshfs" },
      { host: "hetzner-native", export: "meshfs", path: "/mnt/meshfs", owner: "ai-streamer" },
    ],
    syncs: [
      {
        host: "hetzner-native",
        name: "wiki",
        local: "/home/ai-streamer/wiki",
        remote: { mountPath: "/mnt/meshfs/wiki" },
        user: "ai-streamer",
      },
    ],
  };
}

/** Sets (or, with `undefined`, deletes) the value at a path such as `hosts[0].hcloud.volumeSize`. */
function setPath(root: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(/\.|(?=\[)/).map((k) => (k.startsWith("[") ? Number(k.slice(1, -1)) : k));
  let node = root as Record<string | number, unknown>;
  for (const key of keys.slice(0, -1)) {
    node = node[key] as Record<string | number, unknown>;
  }
  const last = keys[keys.length - 1];
  if (value === undefined) {
    delete node[last];
  } else {
    node[last] = value;
  }
}

function withChanges(changes: Record<string, unknown>, from = base): Record<string, unknown> {
  const raw = from();
  for (const [path, value] of Object.entries(changes)) {
    setPath(raw, path, value);
  }
  return raw;
}

const existingHost = (name: string, address: string) => withExisting(name, { address });
/** An existing host with a valid pinned host key and the given fields. */
function withExisting(name: string, existing: Record<string, unknown>): Record<string, unknown> {
  return { name, existing: { hostKey: fixtureHostKey(name), ...existing } };
}
const fullMesh = { "mesh.topology": "full", "mesh.hub": undefined };

describe("validateFleetConfig", () => {
  it("accepts the base fleet and applies every default", () => {
    const { config, errors } = validateFleetConfig(base());
    expect(errors).toEqual([]);
    expect(config?.hosts[1]).toEqual({
      name: "satellite",
      hcloud: { serverType: "cx23", location: "nbg1", image: "debian-12", ipv4: true },
      wireguard: "kernel",
      keyRotation: "",
      routes: [],
    });
    expect(config?.mesh).toEqual({
      cidr: "10.8.0.0/24",
      listenPort: 51820,
      topology: "hub",
      hub: "anchor",
      hubRouting: true,
      persistentKeepalive: 25,
    });
    expect(config?.exports[0]).toMatchObject({
      pool: { name: "tank", devices: ["volume"] },
      properties: { atime: "off", compression: "lz4", refquota: "100G", snapdir: "hidden" },
      snapshots: { interval: 3600, retention: { frequent: 0, hourly: 48, daily: 0, weekly: 0, monthly: 0 } },
      user: "meshfs",
    });
    expect(config?.mounts[0]).toEqual({
      host: "satellite",
      export: "meshfs",
      path: "/mnt/meshfs",
      idleTimeout: 600,
      owner: "root",
    });
    expect(config?.syncs[0]).toMatchObject({
      interval: 60,
      timeout: 600,
      conflicts: "keep-both",
      ignore: [],
      watch: false,
    });
  });

  it("applies the defaults of a minimal fleet: full mesh, no storage, existing hosts", () => {
    const { config, errors } = validateFleetConfig({
      hosts: [existingHost("a", "192.0.2.1"), existingHost("b", "b.example.org")],
      mesh: { cidr: "10.9.0.0/24" },
      admin: { sshPublicKey: KEY },
    });
    expect(errors).toEqual([]);
    expect(config).toEqual({
      hosts: [
        {
          name: "a",
          existing: { address: "192.0.2.1", user: "root", port: 22, hostKey: fixtureHostKey("a") },
          wireguard: "kernel",
          keyRotation: "",
          routes: [],
        },
        {
          name: "b",
          existing: { address: "b.example.org", user: "root", port: 22, hostKey: fixtureHostKey("b") },
          wireguard: "kernel",
          keyRotation: "",
          routes: [],
        },
      ],
      mesh: { cidr: "10.9.0.0/24", listenPort: 51820, topology: "full", hubRouting: true },
      admin: { sshPublicKey: KEY, sshSourceCidrs: [] },
      exports: [],
      mounts: [],
      syncs: [],
      health: DEFAULT_HEALTH,
      repairs: {},
    });
  });

  it("needs no admin section for a fleet of existing hosts only", () => {
    const { config, errors } = validateFleetConfig({
      hosts: [existingHost("a", "192.0.2.1"), existingHost("b", "192.0.2.2")],
      mesh: { cidr: "10.9.0.0/24" },
    });
    expect(errors).toEqual([]);
    expect(config?.admin).toEqual({ sshPublicKey: "", sshSourceCidrs: [] });
  });

  it("requires the admin section as soon as one host is a Hetzner server", () => {
    const raw = base();
    delete (raw as Record<string, unknown>).admin;
    expect(validateFleetConfig(raw).errors).toEqual([
      expect.objectContaining({ path: "swarm:admin", message: expect.stringMatching(/^is required/) }),
    ]);
  });

  it("lets user properties override the ZFS defaults and extend them", () => {
    const { config } = validateFleetConfig(
      withChanges({ "exports[0].properties": { compression: "zstd", "org.example:backup": "yes" } }),
    );
    expect(config?.exports[0].properties).toEqual({
      atime: "off",
      compression: "zstd",
      "org.example:backup": "yes",
      snapdir: "hidden",
    });
  });

  it("accepts a stack written for zfs-fuse once pool.implementation is removed, as its error says", () => {
    const fuseStack = {
      "exports[0].properties.compression": "on",
      "exports[0].pool.devices": ["/var/lib/tank.img"],
    };
    const before = validateFleetConfig(
      withChanges({ ...fuseStack, "exports[0].pool.implementation": "zfs-fuse" }),
    );
    expect(before.errors.map((e) => e.path)).toEqual(["swarm:exports[0].pool.implementation"]);
    const { config, errors } = validateFleetConfig(withChanges(fuseStack));
    expect(errors).toEqual([]);
    expect(config?.exports[0].pool).toEqual({
      name: "tank",
      devices: ["/var/lib/tank.img"],
      scrub: "monthly",
    });
    expect(config?.exports[0].properties.compression).toBe("on");
  });

  it.each(["weekly", "monthly", "quarterly", "off"])("accepts pool.scrub %s", (scrub) => {
    const { config, errors } = validateFleetConfig(withChanges({ "exports[0].pool.scrub": scrub }));
    expect(errors).toEqual([]);
    expect(config?.exports[0].pool.scrub).toBe(scrub);
  });

  it("scrubs a pool monthly by default, and accepts two exports of one pool that agree on it", () => {
    const { config, errors } = validateFleetConfig(
      withChanges({
        "exports[0].pool.scrub": "quarterly",
        "exports[1]": {
          name: "other",
          host: "anchor",
          pool: { name: "tank", devices: ["volume"], scrub: "quarterly" },
          dataset: "tank/other",
          mountpoint: "/tank/other",
        },
      }),
    );
    expect(errors).toEqual([]);
    expect(config?.exports.map((e) => e.pool.scrub)).toEqual(["quarterly", "quarterly"]);
    expect(validateFleetConfig(base()).config?.exports[0].pool.scrub).toBe("monthly");
  });

  it("knows sshPrivateKey without interpreting it", () => {
    const raw = { ...base(), sshPrivateKey: { secure: "v1:abc" } };
    expect(validateFleetConfig(raw).errors).toEqual([]);
  });

  it("reads swarm:health in the same pass, reporting its errors with the rest", () => {
    const raw = { ...base(), health: { anything: 1, handshakeWait: "soon" }, mesh: { cidr: "10.8.0.0/33" } };
    expect(
      validateFleetConfig(raw)
        .errors.map((e) => e.path)
        .sort(),
    ).toEqual(["swarm:health.anything", "swarm:health.handshakeWait", "swarm:mesh.cidr"]);
  });

  it("reads values the way the Pulumi engine hands them over (numbers and booleans as strings)", () => {
    const { config, errors } = validateFleetConfig(
      withChanges({ "mesh.listenPort": "51821", "syncs[0].watch": "true", "hosts[0].keyRotation": 2 }),
    );
    expect(errors).toEqual([]);
    expect(config?.mesh.listenPort).toBe(51821);
    expect(config?.syncs[0].watch).toBe(true);
    expect(config?.hosts[0].keyRotation).toBe("2");
  });

  it("accepts the production stack file as it is", () => {
    const { raw } = readStackFile(`${__dirname}/../Pulumi.prod.yaml`);
    const { config, errors } = validateFleetConfig(raw);
    expect(errors).toEqual([]);
    expect(config?.hosts.map((h) => h.name)).toEqual(["anchor", "satellite", "hetzner-native"]);
    expect(config?.mesh).toMatchObject({ topology: "hub", hub: "anchor", persistentKeepalive: 25 });
    expect(config?.exports[0]).toMatchObject({
      host: "anchor",
      dataset: "tank/meshfs/state",
      mountpoint: "/tank/meshfs/state",
      properties: { compression: "lz4", atime: "off", snapdir: "hidden", refquota: "100G" },
      clients: ["satellite", "hetzner-native"],
    });
    expect(config?.syncs[0]).toMatchObject({
      host: "hetzner-native",
      local: "/home/ai-streamer/wiki",
      remote: { mountPath: "/mnt/meshfs/wiki" },
      interval: 60,
      user: "ai-streamer",
    });
  });

  it("returns every error of a badly broken config at once", () => {
    const raw = withChanges({
      "hosts[0].name": "Anchor",
      "hosts[1].meshAddress": "10.9.0.1",
      "hosts[2].hcloud": undefined,
      "mesh.mtu": 100,
      "admin.sshSourceCidrs": ["0.0.0.0/0"],
      "exports[0].mountpoint": "tank",
      "mounts[0].path": "/etc",
      "syncs[0].interval": "5s",
      colour: "blue",
    });
    const { config, errors } = validateFleetConfig(raw);
    expect(config).toBeUndefined();
    expect(errors.map((e) => e.path)).toEqual(
      expect.arrayContaining([
        "swarm:hosts[0].name",
        "swarm:hosts[1].meshAddress",
        "swarm:hosts[2]",
        "swarm:mesh.mtu",
        "swarm:admin.sshSourceCidrs[0]",
        "swarm:exports[0].mountpoint",
        "swarm:mounts[0].path",
        "swarm:syncs[0].interval",
        "swarm:colour",
      ]),
    );
    expect(errors.length).toBeGreaterThanOrEqual(9);
  });

  it("reports a problem once, not once per interface that would see it", () => {
    const raw = withChanges({ ...fullMesh, "hosts[1].routes": ["10.8.0.0/25"] });
    expect(validateFleetConfig(raw).errors).toHaveLength(1);
  });
});

interface Row {
  readonly what: string;
  readonly changes: Record<string, unknown>;
  readonly path: string;
  readonly message: string;
  /** The fleet the changes apply to: `base` unless given. */
  readonly from?: () => Record<string, unknown>;
  readonly options?: ValidateOptions;
}

const rows: Row[] = [
  // top level
  {
    what: "unknown top-level key",
    changes: { host: [] },
    path: "swarm:host",
    message: "did you mean hosts?",
  },
  { what: "missing hosts", changes: { hosts: undefined }, path: "swarm:hosts", message: "is required" },
  { what: "no hosts", changes: { hosts: [] }, path: "swarm:hosts", message: "is empty" },
  {
    what: "hosts not a list",
    changes: { hosts: { anchor: {} } },
    path: "swarm:hosts",
    message: "must be a list",
  },
  { what: "missing mesh", changes: { mesh: undefined }, path: "swarm:mesh", message: "is required" },
  { what: "missing admin", changes: { admin: undefined }, path: "swarm:admin", message: "is required" },
  // hosts
  {
    what: "host not a mapping",
    changes: { "hosts[2]": "x" },
    path: "swarm:hosts[2]",
    message: "must be an object",
  },
  {
    what: "unknown host key",
    changes: { "hosts[1].meshAdress": "10.8.0.2" },
    path: "swarm:hosts[1].meshAdress",
    message: "did you mean meshAddress?",
  },
  {
    what: "missing host name",
    changes: { "hosts[1].name": undefined },
    path: "swarm:hosts[1].name",
    message: "is required",
  },
  {
    what: "invalid host name",
    changes: { "hosts[1].name": "Satellite_1" },
    path: "swarm:hosts[1].name",
    message: "is not a valid host name",
  },
  {
    what: "duplicate host name",
    changes: {
      "hosts[2].name": "satellite",
      syncs: [],
      "mounts[1]": undefined,
      "exports[0].clients": ["satellite"],
    },
    path: "swarm:hosts[2].name",
    message: "satellite is already the name of swarm:hosts[1]",
  },
  {
    what: "both hcloud and existing",
    changes: { "hosts[1].existing": { address: "192.0.2.10", hostKey: fixtureHostKey("satellite") } },
    path: "swarm:hosts[1]",
    message: "sets both hcloud and existing",
  },
  {
    what: "neither hcloud nor existing",
    changes: { "hosts[1].hcloud": undefined },
    path: "swarm:hosts[1]",
    message: "needs hcloud",
  },
  {
    what: "missing server type",
    changes: { "hosts[1].hcloud.serverType": undefined },
    path: "swarm:hosts[1].hcloud.serverType",
    message: "is required: set a Hetzner server type",
  },
  {
    what: "bad location",
    changes: { "hosts[1].hcloud.location": "Nuremberg 1" },
    path: "swarm:hosts[1].hcloud.location",
    message: "is not a Hetzner location",
  },
  {
    what: "bad image",
    changes: { "hosts[1].hcloud.image": "Debian 12" },
    path: "swarm:hosts[1].hcloud.image",
    message: "is not an image name",
  },
  {
    what: "volume too small",
    changes: { "hosts[0].hcloud.volumeSize": 5 },
    path: "swarm:hosts[0].hcloud.volumeSize",
    message: "5 is out of range: use a value from 10 to 10240",
  },
  {
    what: "misspelt hcloud key",
    changes: { "hosts[1].hcloud.serverTyp": "cx23" },
    path: "swarm:hosts[1].hcloud.serverTyp",
    message: "did you mean serverType?",
  },
  {
    what: "existing host without address",
    changes: { "hosts[3]": { name: "lab", existing: { user: "admin", hostKey: fixtureHostKey("lab") } } },
    path: "swarm:hosts[3].existing.address",
    message: "is required",
  },
  {
    what: "existing address neither IPv4 nor DNS",
    changes: { "hosts[3]": existingHost("lab", "10.0.0.300") },
    path: "swarm:hosts[3].existing.address",
    message: "neither an IPv4 or IPv6 address nor a DNS name",
  },
  {
    what: "existing port out of range",
    changes: { "hosts[3]": withExisting("lab", { address: "192.0.2.7", port: 70000 }) },
    path: "swarm:hosts[3].existing.port",
    message: "70000 is out of range: use a value from 1 to 65535",
  },
  {
    what: "existing user invalid",
    changes: { "hosts[3]": withExisting("lab", { address: "192.0.2.7", user: "Admin!" }) },
    path: "swarm:hosts[3].existing.user",
    message: "is not a valid user name",
  },
  {
    what: "existing address inside the mesh",
    changes: { "hosts[3]": existingHost("lab", "10.8.0.200") },
    path: "swarm:hosts[3].existing.address",
    message:
      "is inside the mesh 10.8.0.0/24: peers would route this host's WireGuard endpoint into the tunnel",
  },
  {
    what: "existing address inside a route",
    changes: { "hosts[1].routes": ["192.168.0.0/16"], "hosts[3]": existingHost("lab", "192.168.4.4") },
    path: "swarm:hosts[3].existing.address",
    message: "is inside 192.168.0.0/16, routed through the mesh to satellite",
  },
  {
    what: "mesh address not IPv4",
    changes: { "hosts[1].meshAddress": "10.8.0" },
    path: "swarm:hosts[1].meshAddress",
    message: "is not an IPv4 address",
  },
  {
    what: "mesh address outside the CIDR",
    changes: { "hosts[1].meshAddress": "10.9.0.1" },
    path: "swarm:hosts[1].meshAddress",
    message: "10.9.0.1 is outside the mesh 10.8.0.0/24: pick an address in 10.8.0.1–10.8.0.254",
  },
  {
    what: "mesh address is the network address",
    changes: { "hosts[1].meshAddress": "10.8.0.0" },
    path: "swarm:hosts[1].meshAddress",
    message: "10.8.0.0 is the network address of 10.8.0.0/24",
  },
  {
    what: "mesh address is the broadcast address",
    changes: { "hosts[1].meshAddress": "10.8.0.255" },
    path: "swarm:hosts[1].meshAddress",
    message: "10.8.0.255 is the broadcast address of 10.8.0.0/24",
  },
  {
    what: "duplicate mesh address",
    changes: { "hosts[2].meshAddress": "10.8.0.1" },
    path: "swarm:hosts[2].meshAddress",
    message:
      "10.8.0.1 is already used by swarm:hosts[0] (anchor): pick a free address in 10.8.0.0/24, or remove meshAddress to allocate one",
  },
  {
    what: "an IPv6 address beside IPv4 that is another host's IPv6 address",
    changes: {
      "hosts[3]": withExisting("lab", { address: "192.0.2.40", ipv6Address: "2001:db8::13" }),
      "hosts[4]": withExisting("lab6", { address: "2001:db8::13" }),
    },
    path: "swarm:hosts[4].existing.address",
    message:
      "2001:db8::13 is already where swarm:hosts[3] (lab) is reached (existing.ipv6Address): swarm would configure one machine as both hosts",
  },
  {
    what: "two hosts given one ipv6Address",
    changes: {
      "hosts[3]": withExisting("lab", { address: "192.0.2.40", ipv6Address: "2001:db8::13" }),
      "hosts[4]": withExisting("lab2", { address: "192.0.2.41", ipv6Address: "2001:db8::13" }),
    },
    path: "swarm:hosts[4].existing.ipv6Address",
    message: "2001:db8::13 is already where swarm:hosts[3] (lab) is reached (existing.ipv6Address)",
  },
  {
    what: "IPv6 mesh prefix that is not a prefix",
    changes: { "mesh.ipv6Prefix": "fd31::a7c9::/64" },
    path: "swarm:mesh.ipv6Prefix",
    message: '"fd31::a7c9::/64" is not an IPv6 prefix: write a unique local /64 such as fd',
  },
  {
    what: "IPv6 mesh prefix outside fd00::/8",
    changes: { "mesh.ipv6Prefix": "2001:db8:8::/64" },
    path: "swarm:mesh.ipv6Prefix",
    message:
      "2001:db8:8::/64 is not a unique local prefix (fd00::/8): mesh addresses must never be routed on the Internet; use a /64 such as fd",
  },
  {
    what: "IPv6 mesh prefix in fc00::/8, which RFC 4193 leaves undefined",
    changes: { "mesh.ipv6Prefix": "fc00:1:2:3::/64" },
    path: "swarm:mesh.ipv6Prefix",
    message: "fc00:1:2:3::/64 is not a unique local prefix (fd00::/8)",
  },
  {
    what: "IPv6 mesh prefix that is a /48",
    changes: { "mesh.ipv6Prefix": "fd31:a7c9:5e04::/48" },
    path: "swarm:mesh.ipv6Prefix",
    message: "fd31:a7c9:5e04::/48 is a /48: the mesh is one IPv6 link, a /64; use fd31:a7c9:5e04::/64",
  },
  {
    what: "IPv6 mesh prefix with host bits",
    changes: { "mesh.ipv6Prefix": "fd31:a7c9:5e04:8::1/64" },
    path: "swarm:mesh.ipv6Prefix",
    message:
      "fd31:a7c9:5e04:8::1/64 is not written as RFC 5952 prints the network: write fd31:a7c9:5e04:8::/64",
  },
  {
    what: "IPv6 mesh prefix not in RFC 5952 form",
    changes: { "mesh.ipv6Prefix": "FD31:A7C9:5E04:0008::/64" },
    path: "swarm:mesh.ipv6Prefix",
    message: "write fd31:a7c9:5e04:8::/64",
  },
  {
    what: "IPv6 mesh address that is not an address",
    changes: { "mesh.ipv6Prefix": "fd31:a7c9:5e04:8::/64", "hosts[1].meshAddress6": "fd31:a7c9:5e04:8::g" },
    path: "swarm:hosts[1].meshAddress6",
    message: '"fd31:a7c9:5e04:8::g" is not an IPv6 address: write one inside mesh.ipv6Prefix',
  },
  {
    what: "IPv6 mesh address not in RFC 5952 form",
    changes: {
      "mesh.ipv6Prefix": "fd31:a7c9:5e04:8::/64",
      "hosts[1].meshAddress6": "fd31:a7c9:5e04:8:0:0:0:2",
    },
    path: "swarm:hosts[1].meshAddress6",
    message: "fd31:a7c9:5e04:8:0:0:0:2 is not written as RFC 5952 prints it: write fd31:a7c9:5e04:8::2",
  },
  {
    what: "IPv6 mesh address without an IPv6 prefix",
    changes: { "hosts[1].meshAddress6": "fd31:a7c9:5e04:8::2" },
    path: "swarm:hosts[1].meshAddress6",
    message:
      "is set but mesh.ipv6Prefix is not: set mesh.ipv6Prefix to fd31:a7c9:5e04:8::/64, or remove meshAddress6",
  },
  {
    what: "IPv6 mesh address outside the prefix",
    changes: { "mesh.ipv6Prefix": "fd31:a7c9:5e04:8::/64", "hosts[1].meshAddress6": "fd31:a7c9:5e04:9::2" },
    path: "swarm:hosts[1].meshAddress6",
    message:
      "fd31:a7c9:5e04:9::2 is outside mesh.ipv6Prefix fd31:a7c9:5e04:8::/64: pick an address in fd31:a7c9:5e04:8::/64, or remove meshAddress6 to allocate one",
  },
  {
    what: "IPv6 mesh address with interface identifier 0",
    changes: { "mesh.ipv6Prefix": "fd31:a7c9:5e04:8::/64", "hosts[1].meshAddress6": "fd31:a7c9:5e04:8::" },
    path: "swarm:hosts[1].meshAddress6",
    message:
      "fd31:a7c9:5e04:8:: is the subnet-router anycast address of fd31:a7c9:5e04:8::/64 (interface identifier 0)",
  },
  {
    what: "duplicate IPv6 mesh address",
    changes: {
      "mesh.ipv6Prefix": "fd31:a7c9:5e04:8::/64",
      "hosts[0].meshAddress6": "fd31:a7c9:5e04:8::1",
      "hosts[2].meshAddress6": "fd31:a7c9:5e04:8::1",
    },
    path: "swarm:hosts[2].meshAddress6",
    message:
      "fd31:a7c9:5e04:8::1 is already used by swarm:hosts[0] (anchor): pick a free address in fd31:a7c9:5e04:8::/64, or remove meshAddress6 to allocate one",
  },
  {
    what: "existing address inside the IPv6 mesh prefix",
    changes: {
      "mesh.ipv6Prefix": "fd31:a7c9:5e04:8::/64",
      "hosts[3]": existingHost("lab", "fd31:a7c9:5e04:8::13"),
    },
    path: "swarm:hosts[3].existing.address",
    message:
      "fd31:a7c9:5e04:8::13 is inside mesh.ipv6Prefix fd31:a7c9:5e04:8::/64: peers would route this host's WireGuard endpoint into the tunnel itself",
  },
  {
    what: "unknown WireGuard implementation",
    changes: { "hosts[1].wireguard": "boringtun" },
    path: "swarm:hosts[1].wireguard",
    message: "choose one of kernel, wireguard-go",
  },
  {
    what: "route not a CIDR",
    changes: { "hosts[1].routes": ["192.168.1.0/33"] },
    path: "swarm:hosts[1].routes[0]",
    message: "is not an IPv4 CIDR",
  },
  {
    what: "route with host bits",
    changes: { "hosts[1].routes": ["192.168.1.1/24"] },
    path: "swarm:hosts[1].routes[0]",
    message: "did you mean 192.168.1.0/24?",
  },
  {
    what: "route overlapping the mesh",
    changes: { "hosts[1].routes": ["10.8.0.0/16"] },
    path: "swarm:hosts[1].routes[0]",
    message: "10.8.0.0/16 overlaps the mesh 10.8.0.0/24",
  },
  {
    what: "routes of two hosts overlapping (cryptokey routing collision)",
    changes: { "hosts[1].routes": ["192.168.0.0/16"], "hosts[2].routes": ["192.168.1.0/24"] },
    path: "swarm:hosts[2].routes[0]",
    message:
      "192.168.1.0/24 overlaps 192.168.0.0/16, routed to satellite (swarm:hosts[1].routes[0]): WireGuard would send 192.168.1.0/24 to only one of the two peers (cryptokey routing collision)",
  },
  {
    what: "routes of one host overlapping",
    changes: { "hosts[1].routes": ["192.168.0.0/16", "192.168.1.0/24"] },
    path: "swarm:hosts[1].routes[1]",
    message: "on the same host",
  },
  // mesh
  {
    what: "mesh CIDR not a CIDR",
    changes: { "mesh.cidr": "10.8.0.0" },
    path: "swarm:mesh.cidr",
    message: "is not an IPv4 CIDR",
  },
  {
    what: "mesh CIDR with host bits",
    changes: { "mesh.cidr": "10.8.0.1/24" },
    path: "swarm:mesh.cidr",
    message: "did you mean 10.8.0.0/24?",
  },
  {
    what: "mesh CIDR prefix too long",
    changes: { "mesh.cidr": "10.8.0.0/31", "hosts[0].meshAddress": undefined },
    path: "swarm:mesh.cidr",
    message: "use a prefix of /30 or shorter",
  },
  {
    what: "mesh too small for the hosts",
    changes: { "mesh.cidr": "10.8.0.0/30", "hosts[0].meshAddress": undefined },
    path: "swarm:mesh.cidr",
    message:
      "10.8.0.0/30 has 2 usable addresses but there are 3 hosts: use a larger block such as 10.8.0.0/29",
  },
  {
    what: "hub topology without a hub",
    changes: { "mesh.hub": undefined },
    path: "swarm:mesh.hub",
    message: "is required when topology is hub",
  },
  {
    what: "hub that is not a host",
    changes: { "mesh.hub": "ankor" },
    path: "swarm:mesh.hub",
    message: '"ankor" is not a host: use one of anchor, satellite, hetzner-native',
  },
  {
    what: "hub without hub topology",
    changes: { "mesh.topology": "full" },
    path: "swarm:mesh.hub",
    message: "only applies with topology hub",
  },
  {
    what: "unknown topology",
    changes: { "mesh.topology": "star" },
    path: "swarm:mesh.topology",
    message: "choose one of full, hub",
  },
  {
    what: "listen port out of range",
    changes: { "mesh.listenPort": 0 },
    path: "swarm:mesh.listenPort",
    message: "0 is out of range: use a value from 1 to 65535",
  },
  {
    what: "MTU out of range",
    changes: { "mesh.mtu": 1000 },
    path: "swarm:mesh.mtu",
    message: "1000 is out of range: use a value from 1280 to 9000",
  },
  {
    what: "keepalive not a duration",
    changes: { "mesh.persistentKeepalive": "25 parsecs" },
    path: "swarm:mesh.persistentKeepalive",
    message: "is not a duration",
  },
  {
    what: "keepalive out of range",
    changes: { "mesh.persistentKeepalive": "1d" },
    path: "swarm:mesh.persistentKeepalive",
    message: "is out of range",
  },
  {
    what: "unknown mesh key",
    changes: { "mesh.keepalive": "25s" },
    path: "swarm:mesh.keepalive",
    message: "unknown key",
  },
  // admin
  {
    what: "missing public key",
    changes: { "admin.sshPublicKey": undefined },
    path: "swarm:admin.sshPublicKey",
    message: "is required",
  },
  {
    what: "public key not OpenSSH",
    changes: { "admin.sshPublicKey": "AAAAC3NzaC1lZDI1NTE5" },
    path: "swarm:admin.sshPublicKey",
    message: "is not an OpenSSH public key",
  },
  {
    what: "private key pasted as the public key",
    changes: { "admin.sshPublicKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n" },
    path: "swarm:admin.sshPublicKey",
    message: "is a private key: set it with pulumi config set --secret swarm:sshPrivateKey",
  },
  {
    what: "public key whose data does not match its type",
    changes: { "admin.sshPublicKey": KEY.replace("ssh-ed25519", "ssh-rsa") },
    path: "swarm:admin.sshPublicKey",
    message: "does not match its type ssh-rsa",
  },
  {
    what: "SSH open to the internet",
    changes: { "admin.sshSourceCidrs": ["0.0.0.0/0"] },
    path: "swarm:admin.sshSourceCidrs[0]",
    message: "0.0.0.0/0 opens SSH to the whole internet",
  },
  {
    what: "SSH source given as an address",
    changes: { "admin.sshSourceCidrs": ["203.0.113.7"] },
    path: "swarm:admin.sshSourceCidrs[0]",
    message: "did you mean 203.0.113.7/32?",
  },
  {
    what: "SSH source not a CIDR",
    changes: { "admin.sshSourceCidrs": ["office"] },
    path: "swarm:admin.sshSourceCidrs[0]",
    message:
      "is not an IPv4 or IPv6 CIDR: write a network address and prefix such as 203.0.113.7/32 or 2001:db8:1234::/48",
  },
  {
    what: "no SSH sources for hcloud hosts",
    changes: { "admin.sshSourceCidrs": [] },
    path: "swarm:admin.sshSourceCidrs",
    message: "is empty",
  },
  {
    what: "missing SSH sources for hcloud hosts",
    changes: { "admin.sshSourceCidrs": undefined },
    path: "swarm:admin.sshSourceCidrs",
    message: "is required",
  },
  // exports
  {
    what: "export name invalid",
    changes: { "exports[0].name": "Mesh FS" },
    path: "swarm:exports[0].name",
    message: "is not a valid name",
  },
  {
    what: "export name duplicate",
    changes: {
      "exports[1]": {
        name: "meshfs",
        host: "anchor",
        pool: { name: "tank", devices: ["volume"] },
        dataset: "tank/other",
        mountpoint: "/tank/other",
      },
    },
    path: "swarm:exports[1].name",
    message: "meshfs is already the name of swarm:exports[0]",
  },
  {
    what: "export host unknown",
    changes: { "exports[0].host": "anker" },
    path: "swarm:exports[0].host",
    message: '"anker" is not a host',
  },
  {
    what: "pool missing",
    changes: { "exports[0].pool": undefined },
    path: "swarm:exports[0].pool",
    message: "is required",
  },
  {
    what: "pool name invalid",
    changes: { "exports[0].pool.name": "1tank" },
    path: "swarm:exports[0].pool.name",
    message: "is not a ZFS pool name",
  },
  {
    what: "pool name reserved",
    changes: { "exports[0].pool.name": "mirror", "exports[0].dataset": "mirror/meshfs" },
    path: "swarm:exports[0].pool.name",
    message: "is reserved by ZFS",
  },
  {
    what: "pool scrubbed daily (not a schedule swarm offers)",
    changes: { "exports[0].pool.scrub": "daily" },
    path: "swarm:exports[0].pool.scrub",
    message: '"daily" is not allowed: choose one of weekly, monthly, quarterly, off',
  },
  {
    what: "pool scrub written as a duration",
    changes: { "exports[0].pool.scrub": "30d" },
    path: "swarm:exports[0].pool.scrub",
    message:
      '"30d" is not a schedule: scrubs run on the calendar, so that a scrub missed while the host was off runs after boot; choose one of weekly, monthly, quarterly, off',
  },
  {
    what: "pool scrub written as a number",
    changes: { "exports[0].pool.scrub": 30 },
    path: "swarm:exports[0].pool.scrub",
    message: "30 is not a schedule",
  },
  {
    what: "pool scrub turned off with false",
    changes: { "exports[0].pool.scrub": false },
    path: "swarm:exports[0].pool.scrub",
    message: "must be a schedule, got boolean false: write off to turn scrubs off",
  },
  {
    what: "pool scrub in another case",
    changes: { "exports[0].pool.scrub": "Monthly" },
    path: "swarm:exports[0].pool.scrub",
    message: "choose one of weekly, monthly, quarterly, off",
  },
  {
    what: "device path relative",
    changes: { "exports[0].pool.devices": ["dev/sdb"] },
    path: "swarm:exports[0].pool.devices[0]",
    message: '"dev/sdb" is relative: write an absolute path such as /dev/sdb, or write volume',
  },
  {
    what: "device listed twice",
    changes: { "exports[0].pool.devices": ["/dev/sdb", "/dev/sdb"] },
    path: "swarm:exports[0].pool.devices",
    message: "lists /dev/sdb twice",
  },
  {
    what: "volume device without a volume",
    changes: { "hosts[0].hcloud.volumeSize": undefined },
    path: "swarm:exports[0].pool.devices",
    message: "volume needs a Hetzner volume on anchor: set swarm:hosts[0].hcloud.volumeSize",
  },
  {
    what: "volume device on an existing host",
    changes: {
      "hosts[0].hcloud": undefined,
      "hosts[0].existing": { address: "192.0.2.1", hostKey: fixtureHostKey("anchor") },
    },
    path: "swarm:exports[0].pool.devices",
    message: "anchor is an existing host: list its block devices instead",
  },
  {
    what: "file size malformed",
    changes: { "exports[0].pool.devices": ["/var/lib/tank.img"], "exports[0].pool.fileSize": "10GB" },
    path: "swarm:exports[0].pool.fileSize",
    message: "is not a size: write a whole number and a unit K, M, G or T",
  },
  {
    what: "file size for a volume",
    changes: { "exports[0].pool.fileSize": "10G" },
    path: "swarm:exports[0].pool.fileSize",
    message: "volume is a block device",
  },
  {
    what: "file size without devices",
    changes: { "exports[0].pool.devices": [], "exports[0].pool.fileSize": "10G" },
    path: "swarm:exports[0].pool.fileSize",
    message: "devices is empty",
  },
  {
    what: "a pool on zfs-fuse (swarm runs OpenZFS only)",
    changes: { "exports[0].pool.implementation": "zfs-fuse", "exports[0].properties.compression": "on" },
    path: "swarm:exports[0].pool.implementation",
    message:
      'is no longer a setting (got string "zfs-fuse"): remove implementation. swarm runs OpenZFS only, so anchor needs the OpenZFS kernel module',
  },
  {
    what: "pool.implementation set to openzfs (no longer a setting)",
    changes: { "exports[0].pool.implementation": "openzfs" },
    path: "swarm:exports[0].pool.implementation",
    message: 'is no longer a setting (got string "openzfs"): remove implementation',
  },
  {
    what: "dataset outside the pool",
    changes: { "exports[0].dataset": "data/meshfs/state" },
    path: "swarm:exports[0].dataset",
    message: "data/meshfs/state is not inside pool tank: start it with tank/, e.g. tank/meshfs/state",
  },
  {
    what: "dataset name invalid",
    changes: { "exports[0].dataset": "tank/mesh fs" },
    path: "swarm:exports[0].dataset",
    message: "is not a ZFS dataset name",
  },
  {
    what: "mountpoint relative",
    changes: { "exports[0].mountpoint": "tank/meshfs/state" },
    path: "swarm:exports[0].mountpoint",
    message: "is relative",
  },
  {
    what: "mountpoint not normalized",
    changes: { "exports[0].mountpoint": "/tank/meshfs/../state" },
    path: "swarm:exports[0].mountpoint",
    message: "is not a normalized path",
  },
  {
    what: "mountpoint on a system path",
    changes: { "exports[0].mountpoint": "/var" },
    path: "swarm:exports[0].mountpoint",
    message: "/var is the system path /var",
  },
  {
    what: "ZFS property name invalid",
    changes: { "exports[0].properties": { Compression: "lz4" } },
    path: "swarm:exports[0].properties.Compression",
    message: "is not a ZFS property name",
  },
  {
    what: "ZFS mountpoint property",
    changes: { "exports[0].properties": { mountpoint: "/x" } },
    path: "swarm:exports[0].properties.mountpoint",
    message: "use swarm:exports[].mountpoint",
  },
  {
    what: "ZFS canmount property",
    changes: { "exports[0].properties": { canmount: "noauto" } },
    path: "swarm:exports[0].properties.canmount",
    message: "an export is always mounted",
  },
  {
    what: "ZFS property value with spaces",
    changes: { "exports[0].properties": { refquota: "100 G" } },
    path: "swarm:exports[0].properties.refquota",
    message: "must be a single word",
  },
  {
    what: "snapshot interval too short",
    changes: { "exports[0].snapshots.interval": "10s" },
    path: "swarm:exports[0].snapshots.interval",
    message: "is out of range: use from 1min to 30d",
  },
  {
    what: "snapshots.keep of an older stack, hourly",
    changes: { "exports[0].snapshots": { interval: "1h", keep: 48 } },
    path: "swarm:exports[0].snapshots.keep",
    message:
      "is no longer a setting: replace keep: 48 with retention: { hourly: 48 }, which keeps the same 48 snapshots",
  },
  {
    what: "snapshots.keep of an older stack, every 6 h",
    changes: { "exports[0].snapshots": { interval: "6h", keep: 8 } },
    path: "swarm:exports[0].snapshots.keep",
    message: "replace keep: 8 with retention: { frequent: 8 }, which keeps the same 8 snapshots",
  },
  {
    what: "snapshots.keep of an older stack, daily, as the engine hands it over",
    changes: { "exports[0].snapshots": { interval: "1d", keep: "7" } },
    path: "swarm:exports[0].snapshots.keep",
    message: "replace keep: 7 with retention: { daily: 7 }",
  },
  {
    what: "snapshots.keep beside retention",
    changes: { "exports[0].snapshots.keep": 48 },
    path: "swarm:exports[0].snapshots.keep",
    message: "is no longer a setting, and retention (written too) decides which snapshots stay: remove keep",
  },
  {
    what: "snapshots.keep of 0",
    changes: { "exports[0].snapshots": { interval: "1h", keep: 0 } },
    path: "swarm:exports[0].snapshots.keep",
    message:
      "is no longer a setting (got number 0): remove it and set retention, e.g. retention: { hourly: 48 }",
  },
  {
    what: "snapshot retention that keeps nothing",
    changes: { "exports[0].snapshots.retention": { hourly: 0, monthly: 0 } },
    path: "swarm:exports[0].snapshots.retention",
    message: "keeps no snapshot: every tier is 0",
  },
  {
    what: "snapshot retention written empty",
    changes: { "exports[0].snapshots.retention": {} },
    path: "swarm:exports[0].snapshots.retention",
    message: "keep at least one tier, e.g. retention: { hourly: 48 }",
  },
  {
    what: "snapshot retention tier negative",
    changes: { "exports[0].snapshots.retention.daily": -1 },
    path: "swarm:exports[0].snapshots.retention.daily",
    message: "-1 is out of range: use a value from 0 to 10000",
  },
  {
    what: "snapshot retention tier unknown",
    changes: { "exports[0].snapshots.retention": { yearly: 2 } },
    path: "swarm:exports[0].snapshots.retention.yearly",
    message: "unknown key",
  },
  {
    what: "snapshot retention tier shorter than the interval",
    changes: { "exports[0].snapshots": { interval: "1d", retention: { hourly: 48, daily: 30 } } },
    path: "swarm:exports[0].snapshots.retention.hourly",
    message:
      "hourly is shorter than the interval 1d: every snapshot has an hour of its own, so hourly: 48 would keep the 48 newest whatever their age (48d of snapshots, not 48 hours); write retention: { daily: 48 }",
  },
  {
    what: "default snapshot retention shorter than the interval",
    changes: { "exports[0].snapshots": { interval: "6h" } },
    path: "swarm:exports[0].snapshots.retention",
    message: "is { hourly: 48 } by default; hourly is shorter than the interval 6h",
  },
  {
    what: "client not a host",
    changes: { "exports[0].clients": ["satellite", "hetzner-native", "laptop"] },
    path: "swarm:exports[0].clients[2]",
    message: '"laptop" is not a host',
  },
  {
    what: "export host among its clients",
    changes: { "exports[0].clients": ["satellite", "hetzner-native", "anchor"] },
    path: "swarm:exports[0].clients[2]",
    message: "anchor serves this export itself",
  },
  {
    what: "client listed twice",
    changes: { "exports[0].clients": ["satellite", "hetzner-native", "satellite"] },
    path: "swarm:exports[0].clients[2]",
    message: "satellite is listed twice",
  },
  {
    what: "client without a tunnel to the export host under hub topology without hub routing",
    changes: { "mesh.hub": "satellite", "mesh.hubRouting": false },
    path: "swarm:exports[0].clients[1]",
    message:
      "under topology hub without hub routing hetzner-native peers only with satellite, so it cannot reach anchor over the mesh: serve the export from the hub, set mesh.hubRouting to true",
  },
  {
    what: "export user root",
    changes: { "exports[0].user": "root" },
    path: "swarm:exports[0].user",
    message: "must not be root",
  },
  {
    what: "export user invalid",
    changes: { "exports[0].user": "Mesh FS" },
    path: "swarm:exports[0].user",
    message: "is not a valid user name",
  },
  {
    what: "dataset exported twice",
    changes: {
      "exports[1]": {
        name: "again",
        host: "anchor",
        pool: { name: "tank", devices: ["volume"] },
        dataset: "tank/meshfs/state",
        mountpoint: "/srv/again",
      },
    },
    path: "swarm:exports[1].dataset",
    message: "tank/meshfs/state is already exported by swarm:exports[0]",
  },
  {
    what: "one pool declared two ways",
    changes: {
      "exports[1]": {
        name: "other",
        host: "anchor",
        pool: { name: "tank", devices: ["/dev/sdc"] },
        dataset: "tank/other",
        mountpoint: "/tank/other",
      },
    },
    path: "swarm:exports[1].pool",
    message: "pool tank on anchor is also declared by swarm:exports[0]",
  },
  {
    what: "one pool scrubbed on two schedules",
    changes: {
      "exports[1]": {
        name: "other",
        host: "anchor",
        pool: { name: "tank", devices: ["volume"], scrub: "weekly" },
        dataset: "tank/other",
        mountpoint: "/tank/other",
      },
    },
    path: "swarm:exports[1].pool",
    message:
      "pool tank on anchor is also declared by swarm:exports[0] with other devices, fileSize or scrub: declare the pool the same way in both exports",
  },
  {
    what: "two pools on one volume",
    changes: {
      "exports[1]": {
        name: "other",
        host: "anchor",
        pool: { name: "scratch", devices: ["volume"] },
        dataset: "scratch/x",
        mountpoint: "/scratch/x",
      },
    },
    path: "swarm:exports[1].pool.devices",
    message: "the volume of anchor already backs pool tank",
  },
  {
    what: "nested export mountpoints",
    changes: {
      "exports[1]": {
        name: "inner",
        host: "anchor",
        pool: { name: "tank", devices: ["volume"] },
        dataset: "tank/inner",
        mountpoint: "/tank/meshfs/state/inner",
      },
    },
    path: "swarm:exports[1].mountpoint",
    message: "overlaps /tank/meshfs/state of swarm:exports[0]",
  },
  // mounts
  {
    what: "mount host unknown",
    changes: { "mounts[0].host": "satelite" },
    path: "swarm:mounts[0].host",
    message: '"satelite" is not a host',
  },
  {
    what: "mount of an unknown export",
    changes: { "mounts[0].export": "meshfs2" },
    path: "swarm:mounts[0].export",
    message: '"meshfs2" is not an export: use one of meshfs',
  },
  {
    what: "mount of an export that does not list the host",
    changes: { "exports[0].clients": ["hetzner-native"] },
    path: "swarm:mounts[0].export",
    message: "export meshfs does not list satellite in clients: add satellite to swarm:exports[0].clients",
  },
  {
    what: "mount on the export host",
    changes: { "mounts[0].host": "anchor" },
    path: "swarm:mounts[0].host",
    message: "anchor serves export meshfs itself",
  },
  {
    what: "mount path relative",
    changes: { "mounts[0].path": "mnt/meshfs" },
    path: "swarm:mounts[0].path",
    message: "is relative",
  },
  {
    what: "mount path shadowing /home",
    changes: { "mounts[0].path": "/home" },
    path: "swarm:mounts[0].path",
    message: "/home is the system path /home",
  },
  {
    what: "mount path shadowing the root",
    changes: { "mounts[0].path": "/" },
    path: "swarm:mounts[0].path",
    message: "/ is the system path /",
  },
  {
    what: "mount path inside a kernel file system",
    changes: { "mounts[0].path": "/run/meshfs" },
    path: "swarm:mounts[0].path",
    message: "/run/meshfs is inside /run, a kernel file system",
  },
  {
    what: "idle timeout not a duration",
    changes: { "mounts[0].idleTimeout": "soon" },
    path: "swarm:mounts[0].idleTimeout",
    message: "is not a duration",
  },
  {
    what: "mount owner invalid",
    changes: { "mounts[0].owner": "AI Streamer" },
    path: "swarm:mounts[0].owner",
    message: "is not a valid user name",
  },
  {
    what: "two mounts at one path",
    changes: { "mounts[2]": { host: "satellite", export: "meshfs", path: "/mnt/meshfs" } },
    path: "swarm:mounts[2].path",
    message: "satellite already mounts meshfs at /mnt/meshfs (swarm:mounts[0])",
  },
  {
    what: "nested mounts",
    changes: { "mounts[2]": { host: "satellite", export: "meshfs", path: "/mnt/meshfs/inner" } },
    path: "swarm:mounts[2].path",
    message: "automounts cannot nest",
  },
  // syncs
  {
    what: "sync host unknown",
    changes: { "syncs[0].host": "native" },
    path: "swarm:syncs[0].host",
    message: '"native" is not a host',
  },
  {
    what: "sync name invalid",
    changes: { "syncs[0].name": "Wiki" },
    path: "swarm:syncs[0].name",
    message: "is not a valid name",
  },
  {
    what: "sync name duplicate on one host",
    changes: {
      "syncs[1]": {
        host: "hetzner-native",
        name: "wiki",
        local: "/srv/notes",
        remote: { mountPath: "/mnt/meshfs/notes" },
        user: "ai-streamer",
      },
    },
    path: "swarm:syncs[1].name",
    message: "hetzner-native already has a sync named wiki",
  },
  {
    what: "sync local root relative",
    changes: { "syncs[0].local": "wiki" },
    path: "swarm:syncs[0].local",
    message: "is relative",
  },
  {
    what: "sync local root a system path",
    changes: { "syncs[0].local": "/etc" },
    path: "swarm:syncs[0].local",
    message: "/etc is the system path /etc",
  },
  {
    what: "sync without remote",
    changes: { "syncs[0].remote": undefined },
    path: "swarm:syncs[0].remote",
    message: "is required",
  },
  {
    what: "sync remote with both mountPath and export",
    changes: { "syncs[0].remote.export": "meshfs" },
    path: "swarm:syncs[0].remote",
    message: "sets both mountPath and export",
  },
  {
    what: "sync remote with neither mountPath nor export",
    changes: { "syncs[0].remote": {} },
    path: "swarm:syncs[0].remote",
    message: "needs mountPath",
  },
  {
    what: "sync remote path outside every mount",
    changes: { "syncs[0].remote.mountPath": "/srv/wiki" },
    path: "swarm:syncs[0].remote.mountPath",
    message: "host hetzner-native has no mount containing /srv/wiki; add a swarm:mounts entry",
  },
  {
    what: "sync remote mountPath relative",
    changes: { "syncs[0].remote.mountPath": "mnt/meshfs/wiki" },
    path: "swarm:syncs[0].remote.mountPath",
    message: "is relative",
  },
  {
    what: "sync remote export unknown",
    changes: { "syncs[0].remote": { export: "wikifs", path: "wiki" } },
    path: "swarm:syncs[0].remote.export",
    message: '"wikifs" is not an export',
  },
  {
    what: "sync remote export that does not list the host",
    changes: {
      "syncs[0].remote": { export: "meshfs", path: "wiki" },
      "exports[0].clients": ["satellite"],
      "mounts[1]": undefined,
    },
    path: "swarm:syncs[0].remote.export",
    message: "export meshfs does not list hetzner-native in clients",
  },
  {
    what: "sync remote export path escaping the export",
    changes: { "syncs[0].remote": { export: "meshfs", path: "../etc" }, "mounts[1]": undefined },
    path: "swarm:syncs[0].remote.path",
    message: "must stay inside the export",
  },
  {
    what: "sync remote export path absolute",
    changes: { "syncs[0].remote": { export: "meshfs", path: "/wiki" }, "mounts[1]": undefined },
    path: "swarm:syncs[0].remote.path",
    message: "is absolute",
  },
  {
    what: "sync remote path without export",
    changes: { "syncs[0].remote.path": "wiki" },
    path: "swarm:syncs[0].remote.path",
    message: "only applies with remote.export",
  },
  {
    what: "sync roots nested",
    changes: {
      "mounts[1].path": "/data/meshfs",
      "syncs[0].remote.mountPath": "/data/meshfs/wiki",
      "syncs[0].local": "/data",
    },
    path: "swarm:syncs[0].local",
    message: "unison would sync a tree into itself",
  },
  {
    what: "sync local root on the sshfs mount",
    changes: { "syncs[0].local": "/mnt/meshfs/old-wiki" },
    path: "swarm:syncs[0].local",
    message: "is on the sshfs mount /mnt/meshfs (swarm:mounts[1])",
  },
  {
    what: "two syncs writing the same local root",
    changes: {
      "syncs[1]": {
        host: "hetzner-native",
        name: "wiki2",
        local: "/home/ai-streamer/wiki",
        remote: { mountPath: "/mnt/meshfs/wiki2" },
        user: "ai-streamer",
      },
    },
    path: "swarm:syncs[1].local",
    message: "/home/ai-streamer/wiki is already the local root of swarm:syncs[0]",
  },
  {
    what: "two syncs with nested local roots",
    changes: {
      "syncs[1]": {
        host: "hetzner-native",
        name: "all",
        local: "/home/ai-streamer",
        remote: { mountPath: "/mnt/meshfs/home" },
        user: "ai-streamer",
      },
    },
    path: "swarm:syncs[1].local",
    message: "two syncs would write the same files",
  },
  {
    what: "sync interval too short",
    changes: { "syncs[0].interval": "5s" },
    path: "swarm:syncs[0].interval",
    message: '"5s" is out of range: use from 10s to 1d',
  },
  {
    what: "sync timeout not a duration",
    changes: { "syncs[0].timeout": "-1" },
    path: "swarm:syncs[0].timeout",
    message: "is not a duration",
  },
  {
    what: "sync user invalid",
    changes: { "syncs[0].user": "AI" },
    path: "swarm:syncs[0].user",
    message: "is not a valid user name",
  },
  {
    what: "sync user cannot write the mount",
    changes: { "mounts[1].owner": undefined },
    path: "swarm:syncs[0].user",
    message: "the sync runs as ai-streamer, but /mnt/meshfs is mapped to owner root",
  },
  {
    what: "unknown conflict policy",
    changes: { "syncs[0].conflicts": "newer-wins" },
    path: "swarm:syncs[0].conflicts",
    message: "choose one of keep-both",
  },
  {
    what: "ignore pattern without a kind",
    changes: { "syncs[0].ignore": ["*.swp"] },
    path: "swarm:syncs[0].ignore[0]",
    message: "start it with Name, Path, Regex or BelowPath",
  },
  {
    what: "watch not a boolean",
    changes: { "syncs[0].watch": "sometimes" },
    path: "swarm:syncs[0].watch",
    message: "must be true or false",
  },
  {
    what: "a watched sync of an export whose watch user's name is too long",
    changes: {
      "exports[0].name": "meshfs-of-the-whole-company",
      "mounts[0].export": "meshfs-of-the-whole-company",
      "mounts[1].export": "meshfs-of-the-whole-company",
      "syncs[0].watch": true,
    },
    path: "swarm:syncs[0].watch",
    message:
      "hetzner-native follows it on the export host as user meshfs-of-the-whole-company-watch, and a user name has at most 32 characters; shorten the export's name to 26 characters or fewer, or set watch: false",
  },
  {
    what: "unknown sync key",
    changes: { "syncs[0].intervall": "60s" },
    path: "swarm:syncs[0].intervall",
    message: "did you mean interval?",
  },
  // repairs
  {
    what: "repairs not a mapping",
    changes: { repairs: ["mesh-anchor-config"] },
    path: "swarm:repairs",
    message: "must be an object (a YAML mapping) of remote command names to repair generations",
  },
  {
    what: "repair generation 0",
    changes: { repairs: { "mesh-anchor-config": 0 } },
    path: "swarm:repairs.mesh-anchor-config",
    message:
      "must be a whole number from 1 up (a repair generation, which npm run repair counts up), got number 0",
  },
  {
    what: "repair generation negative",
    changes: { repairs: { "meshfs-sftp": -2 } },
    path: "swarm:repairs.meshfs-sftp",
    message: "must be a whole number from 1 up",
  },
  {
    what: "repair generation not whole",
    changes: { repairs: { "meshfs-sftp": 1.5 } },
    path: "swarm:repairs.meshfs-sftp",
    message: "got number 1.5",
  },
  {
    what: "repair generation not a number",
    changes: { repairs: { "meshfs-sftp": "next" } },
    path: "swarm:repairs.meshfs-sftp",
    message: 'got string "next"',
  },
  {
    what: "repair of a command with a typo",
    changes: { repairs: { "mesh-anchor-confg": 1 } },
    path: "swarm:repairs.mesh-anchor-confg",
    message: "is not a remote command of this stack: did you mean mesh-anchor-config? Rename the entry to it",
  },
  {
    what: "repair named by its URN",
    changes: {
      repairs: { "urn:pulumi:prod::swarm::swarm:meshfs:Export$command:remote:Command::meshfs-sftp": 1 },
    },
    path: "swarm:repairs.urn:pulumi:prod::swarm::swarm:meshfs:Export$command:remote:Command::meshfs-sftp",
    message: "did you mean meshfs-sftp?",
  },
  {
    what: "repair of a command the stack does not have",
    changes: { repairs: { "satellite-notes-sync-units": 1 } },
    path: "swarm:repairs.satellite-notes-sync-units",
    message:
      "is not a remote command of this stack: remove the entry (a step the stack no longer has needs no repair); its remote commands are anchor-bootstrap, anchor-health-install,",
  },
  {
    what: "repair of a sync key the sync through a mount does not have",
    changes: { repairs: { "hetzner-native-wiki-sync-key": 1 } },
    path: "swarm:repairs.hetzner-native-wiki-sync-key",
    message: "is not a remote command of this stack: remove the entry",
  },
];

/** Each row breaks one thing, and the error at `path` is the only one. */
function rejectsEach(table: readonly Row[]): void {
  describe.each(table)("rejects $what", ({ changes, path, message, from, options }) => {
    const { config, errors } = validateFleetConfig(withChanges(changes, from), options);

    it(`at ${path}`, () => {
      expect(config).toBeUndefined();
      expect(errors).toContainEqual({ path, message: expect.stringContaining(message) });
    });

    it("and reports nothing else", () => {
      expect(errors.filter((e) => e.path !== path)).toEqual([]);
      expect(errors).toHaveLength(1);
    });
  });
}

describe.each(rows)("rejects $what", ({ changes, path, message }) => {
  const { config, errors } = validateFleetConfig(withChanges(changes));

  it(`at ${path}`, () => {
    expect(config).toBeUndefined();
    expect(errors).toContainEqual({ path, message: expect.stringContaining(message) });
  });

  it("and reports nothing else", () => {
    expect(errors.filter((e) => e.path !== path)).toEqual([]);
    expect(errors).toHaveLength(1);
  });
});

describe("meshCollisionErrors", () => {
  const byName = new Map([
    ["a", { path: "swarm:hosts[0]" }],
    ["b", { path: "swarm:hosts[1]" }],
    ["c", { path: "swarm:hosts[2]" }],
  ]);
  const peer = (name: string, allowedIps: string[]) => ({ name, allowedIps });
  const plan = (hosts: { name: string; peers: { name: string; allowedIps: string[] }[] }[]) =>
    ({ hosts }) as unknown as Pick<FleetPlan, "hosts">;

  it("names both peers, every interface they meet on, and blames the broader entry", () => {
    const errors: ConfigError[] = meshCollisionErrors(
      plan([
        { name: "a", peers: [peer("b", ["10.8.0.2/32", "10.8.0.0/24"]), peer("c", ["10.8.0.3/32"])] },
        { name: "d", peers: [peer("b", ["10.8.0.2/32", "10.8.0.0/24"]), peer("c", ["10.8.0.3/32"])] },
      ]),
      { byName },
    );
    expect(errors).toEqual([
      {
        path: "swarm:hosts[1].routes",
        message:
          "AllowedIPs 10.8.0.0/24 of peer b and 10.8.0.3/32 of peer c overlap on the WireGuard interface of a, d: WireGuard would send 10.8.0.3/32 to only one of them (cryptokey routing collision); give every peer disjoint AllowedIPs",
      },
    ]);
  });

  it("names a peer whose AllowedIPs hold the host's own address, and lets the lone hub carry the mesh block", () => {
    const owned = (peers: { name: string; allowedIps: string[] }[]) => ({
      hosts: [{ name: "a", meshAddress: "10.8.0.1", peers }],
      meshCidr: "10.8.0.0/24",
    });
    expect(meshCollisionErrors(owned([peer("b", ["10.8.0.0/24"])]), { byName })).toEqual([]);
    expect(meshCollisionErrors(owned([peer("b", ["10.8.0.0/25"])]), { byName })).toEqual([
      {
        path: "swarm:hosts[1].routes",
        message:
          "AllowedIPs 10.8.0.0/25 of peer b on the WireGuard interface of a hold a's own address 10.8.0.1/32 (cryptokey routing collision): only a host whose single peer is the hub routes the whole mesh block to it; route only networks outside the mesh",
      },
    ]);
    expect(
      meshCollisionErrors(owned([peer("b", ["10.8.0.0/24"]), peer("c", ["192.168.9.0/24"])]), { byName }).map(
        (e) => e.path,
      ),
    ).toEqual(["swarm:hosts[1].routes"]);
  });

  it("finds nothing when every peer has its own addresses", () => {
    const errors = meshCollisionErrors(
      plan([
        { name: "a", peers: [peer("b", ["10.8.0.2/32", "192.168.1.0/24"]), peer("c", ["10.8.0.3/32"])] },
      ]),
      { byName },
    );
    expect(errors).toEqual([]);
  });
});

// ---------------------------------------------------------------- configs that lock the admin out or lose data

/** A fleet of existing hosts on one LAN, administered from another LAN (no Hetzner firewall involved). */
function lanFleet(): Record<string, unknown> {
  return {
    hosts: [
      withExisting("a", { address: "192.168.1.10" }),
      withExisting("b", { address: "192.168.1.11", user: "admin", port: 2222 }),
      withExisting("c", { address: "c.example.org" }),
    ],
    mesh: { cidr: "10.8.0.0/24" },
    admin: { sshSourceCidrs: ["192.168.50.0/24"] },
  };
}

/** The base fleet plus a second export, served by satellite and mounted and synced on anchor. */
function twoExports(): Record<string, unknown> {
  return withChanges({
    "exports[1]": {
      name: "notes",
      host: "satellite",
      pool: { name: "data", devices: ["/dev/sdb"] },
      dataset: "data/notes",
      mountpoint: "/data/notes",
      clients: ["anchor"],
    },
    "mounts[2]": { host: "anchor", export: "notes", path: "/mnt/notes" },
    "syncs[1]": { host: "anchor", name: "notes", local: "/srv/notes", remote: { mountPath: "/mnt/notes/x" } },
  });
}

const RSA_KEY =
  "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCigyd30DH3fBlex/t0uFpK6PInxc+oh05t7pqEnbKBfGUDw52rTvFiiSxHhK2PTXse21jbbACCH+kDkRDh/uMkmXEmCS4Pr3eGYlgFxwVFxnIWnleskx1Z7qfduBpCUrFLjuBIqzC/n3fVYOWIDqoNgbS+h54lGQGz7rZnU6tHcw==";
const ECDSA_KEY =
  "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJUiT2yxuW0HvHj4NLcV0nQWy1PaPium7zVG9Ve8CGQ9cmz8dcOBdj+Pr5mx3Gir6QQnsrVuz7IdaH76MOPYvvw=";
/** An admin key that is not the example one. */
const OWN_KEY = `${fixtureHostKey("admin")} admin@office`;

/** `key` with `cut` base64 characters dropped from the end of its data (padding put back where needed). */
function truncated(key: string, cut: number): string {
  const [type, blob, ...rest] = key.split(" ");
  return [type, blob.replace(/=+$/, "").slice(0, -cut), ...rest].join(" ");
}

/** `key` with `extra` bytes appended to its data, re-encoded. */
function extended(key: string, extra: number): string {
  const [type, blob, ...rest] = key.split(" ");
  const data = Buffer.concat([Buffer.from(blob, "base64"), Buffer.alloc(extra, 1)]);
  return [type, data.toString("base64"), ...rest].join(" ");
}

describe("special-purpose ranges in the mesh", () => {
  const noMeshAddress = { "hosts[0].meshAddress": undefined };
  rejectsEach([
    ...["0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1", "64.0.0.0/2", "8.0.0.0/7"].map((cidr) => ({
      what: `mesh ${cidr}, a large part of the internet`,
      changes: { ...noMeshAddress, "mesh.cidr": cidr },
      path: "swarm:mesh.cidr",
      message: cidr === "0.0.0.0/0" ? "the whole internet" : "a large part of the internet",
    })),
    ...[
      ["127.0.0.0/24", "loopback"],
      ["127.0.0.0/8", "loopback"],
      ["0.0.0.0/24", "this-network"],
      ["169.254.0.0/16", "link-local"],
      ["169.254.169.0/24", "link-local"],
      ["224.0.0.0/24", "multicast"],
      ["239.255.255.0/24", "multicast"],
      ["240.0.0.0/24", "reserved"],
      ["255.255.255.0/24", "reserved"],
    ].map(([cidr, name]) => ({
      what: `mesh ${cidr} in the ${name} range`,
      changes: { ...noMeshAddress, "mesh.cidr": cidr },
      path: "swarm:mesh.cidr",
      message: `overlaps the ${name} range`,
    })),
    ...["172.31.1.0/24", "172.31.0.0/16", "172.16.0.0/12", "172.31.1.0/30"].map((cidr) => ({
      what: `mesh ${cidr} holding Hetzner's gateway`,
      changes: { ...noMeshAddress, "mesh.cidr": cidr },
      path: "swarm:mesh.cidr",
      message: "contains 172.31.1.1, the default gateway of every Hetzner Cloud server",
    })),
    ...[
      ["192.168.50.0/26", "192.168.50.0/24"],
      ["192.168.0.0/16", "192.168.50.0/24"],
      ["10.8.0.0/24", "10.8.0.7/32"],
    ].map(([cidr, admin]) => ({
      what: `mesh ${cidr} where the admin connects from (${admin})`,
      from: lanFleet,
      changes: {
        "mesh.cidr": cidr,
        "admin.sshSourceCidrs": [admin],
        "hosts[0].existing.address": "198.18.0.10",
        "hosts[1].existing.address": "198.18.0.11",
      },
      path: "swarm:mesh.cidr",
      message: `overlaps ${admin}, where the admin connects from (swarm:admin.sshSourceCidrs[0]): every host would send its SSH replies to the admin into the mesh`,
    })),
  ]);

  it("suggests a mesh block that the admin networks and routes leave free, and that block validates", () => {
    const raw = withChanges(
      {
        "mesh.cidr": "10.8.0.0/16",
        "admin.sshSourceCidrs": ["10.8.0.0/24"],
        "hosts[0].existing.address": "198.18.0.10",
        "hosts[1].existing.address": "198.18.0.11",
        "hosts[1].routes": ["10.99.0.0/24"],
      },
      lanFleet,
    );
    const { errors } = validateFleetConfig(raw);
    expect(errors).toEqual([
      {
        path: "swarm:mesh.cidr",
        message: expect.stringMatching(/use a private block such as 172\.20\.0\.0\/24$/),
      },
    ]);
    setPath(raw, "mesh.cidr", "172.20.0.0/24");
    expect(validateFleetConfig(raw).errors).toEqual([]);
  });

  it("accepts Hetzner's 172.31.0.0/16 in a fleet without Hetzner servers, and /8 meshes", () => {
    expect(validateFleetConfig(withChanges({ "mesh.cidr": "172.31.1.0/24" }, lanFleet)).errors).toEqual([]);
    expect(validateFleetConfig(withChanges({ "mesh.cidr": "10.0.0.0/8" }, lanFleet)).errors).toEqual([]);
    expect(validateFleetConfig(withChanges({ "mesh.cidr": "100.64.0.0/10" }, lanFleet)).errors).toEqual([]);
  });
});

describe("special-purpose ranges in host routes", () => {
  rejectsEach([
    ...["0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1", "0.0.0.0/5", "192.0.0.0/2", "32.0.0.0/3"].map((route) => ({
      what: `route ${route}, a large part of the internet`,
      changes: { "hosts[1].routes": [route] },
      path: "swarm:hosts[1].routes[0]",
      message:
        route === "0.0.0.0/0"
          ? "covers 4294967296 addresses (2^32), the whole internet"
          : "a large part of the internet",
    })),
    ...[
      ["127.0.0.0/8", "loopback"],
      ["127.0.0.1/32", "loopback"],
      ["0.0.0.0/32", "this-network"],
      ["169.254.169.254/32", "link-local"],
      ["224.0.0.0/8", "multicast"],
      ["239.255.255.250/32", "multicast"],
      ["255.255.255.255/32", "reserved"],
      ["240.0.0.0/8", "reserved"],
    ].map(([route, name]) => ({
      what: `route ${route} in the ${name} range`,
      changes: { "hosts[2].routes": [route] },
      path: "swarm:hosts[2].routes[0]",
      message: `overlaps the ${name} range`,
    })),
    ...["172.31.1.1/32", "172.31.0.0/16", "172.31.1.0/24"].map((route) => ({
      what: `route ${route} holding Hetzner's gateway`,
      changes: { "hosts[1].routes": [route] },
      path: "swarm:hosts[1].routes[0]",
      message: "contains 172.31.1.1, the default gateway of every Hetzner Cloud server",
    })),
    ...[
      ["198.51.0.0/16", "198.51.100.0/24"],
      ["198.51.100.128/25", "198.51.100.0/24"],
      ["198.51.100.7/32", "198.51.100.0/24"],
    ].map(([route, admin]) => ({
      what: `route ${route} where the admin connects from (${admin})`,
      changes: { "hosts[1].routes": [route] },
      path: "swarm:hosts[1].routes[0]",
      message: `overlaps ${admin}, where the admin connects from (swarm:admin.sshSourceCidrs[0]): every host would send its SSH replies to the admin into the route to satellite`,
    })),
    {
      what: "route of a LAN host covering the admin's LAN",
      from: lanFleet,
      changes: { "hosts[1].routes": ["192.168.48.0/21"] },
      path: "swarm:hosts[1].routes[0]",
      message: "overlaps 192.168.50.0/24, where the admin connects from",
    },
  ]);

  it("accepts a /8 route and routes next to the admin's networks", () => {
    const raw = withChanges({ "hosts[1].routes": ["20.0.0.0/9"], "hosts[2].routes": ["198.51.101.0/24"] });
    expect(validateFleetConfig(raw).errors).toEqual([]);
    expect(validateFleetConfig(withChanges({ "hosts[1].routes": ["11.0.0.0/8"] })).errors).toEqual([]);
  });
});

describe("IPv6 endpoints", () => {
  /** anchor (the hub) is reached over IPv4 and IPv6, hetzner-native only over IPv6. */
  const sixOnly = (overrides: Record<string, unknown> = {}) =>
    withChanges({
      "hosts[0]": withExisting("anchor", { address: "192.0.2.1", ipv6Address: "2001:db8::1" }),
      "hosts[0].meshAddress": "10.8.0.1",
      "hosts[2]": withExisting("hetzner-native", { address: "2001:db8::3" }),
      "exports[0].pool.devices": ["/dev/disk/by-id/virtio-tank"],
      ...overrides,
    });

  it("accepts an existing host reached only over IPv6 whose hub has IPv6, and plans IPv6 between them", () => {
    const { config, errors } = validateFleetConfig(sixOnly());
    expect(errors).toEqual([]);
    const plan = planFleet(config as FleetConfig);
    const peer = (on: string, of: string) => plan.byName.get(on)?.peers.find((p) => p.name === of);
    expect(peer("anchor", "hetzner-native")?.endpointFamily).toBe("IPv6");
    expect(peer("hetzner-native", "anchor")?.endpointFamily).toBe("IPv6");
    // satellite is a Hetzner server with both families: IPv4 between it and the hub, as before.
    expect(peer("anchor", "satellite")?.endpointFamily).toBe("IPv4");
    expect(peer("satellite", "anchor")?.endpointFamily).toBe("IPv4");
  });

  it("accepts a Hetzner server without IPv4 when the admin has an IPv6 network", () => {
    const raw = withChanges({
      "hosts[2].hcloud.ipv4": false,
      "admin.sshSourceCidrs": ["198.51.100.0/24", "2a01:4f8:1234::/48"],
    });
    const { config, errors } = validateFleetConfig(raw);
    expect(errors).toEqual([]);
    const plan = planFleet(config as FleetConfig);
    expect(plan.byName.get("hetzner-native")?.peers).toEqual([
      expect.objectContaining({ name: "anchor", endpointFamily: "IPv6" }),
    ]);
    expect(plan.byName.get("anchor")?.peers.map((p) => [p.name, p.endpointFamily])).toEqual([
      ["hetzner-native", "IPv6"],
      ["satellite", "IPv4"],
    ]);
  });

  it("lets a host given by DNS name peer with one reached only over IPv6", () => {
    const raw = sixOnly({ "hosts[0]": withExisting("anchor", { address: "anchor.example.org" }) });
    const { config, errors } = validateFleetConfig(raw);
    expect(errors).toEqual([]);
    const plan = planFleet(config as FleetConfig);
    expect(plan.byName.get("anchor")?.peers.find((p) => p.name === "hetzner-native")?.endpointFamily).toBe(
      "IPv6",
    );
    expect(plan.byName.get("hetzner-native")?.peers[0].endpointFamily).toBe("name");
  });

  it("accepts an IPv4-only spoke beside an IPv6-only one: spokes peer only with the hub", () => {
    const raw = sixOnly({ "hosts[1]": withExisting("satellite", { address: "192.0.2.2" }) });
    expect(validateFleetConfig(raw).errors).toEqual([]);
  });

  rejectsEach([
    ...[
      ["[2001:db8::3]", "is bracketed: write the bare address, 2001:db8::3"],
      [
        "[2001:db8::3]:2222",
        "is bracketed with a port: write the bare address, 2001:db8::3, and the SSH port in existing.port",
      ],
      [
        "2001:DB8::3",
        "is not written as RFC 5952 prints it, the form wg and ssh report it in: write 2001:db8::3",
      ],
      ["2001:db8:0:0:0:0:0:3", "write 2001:db8::3"],
      ["2001:db8::g", "is not an IPv6 address: write one such as 2001:db8::10"],
      ["2001:db8:::3", "is not an IPv6 address"],
      ["::1", "is in the loopback address ::1/128, which is the machine that runs pulumi itself"],
      ["fe80::1", "is in the link-local range fe80::/10, which reaches only the same network segment"],
      ["ff02::1", "multicast range"],
      ["::ffff:192.0.2.7", "IPv4-mapped range"],
      ["::", "unspecified address"],
    ].map(([address, message]) => ({
      what: `existing IPv6 address ${address}`,
      changes: { "hosts[3]": existingHost("lab", address) },
      path: "swarm:hosts[3].existing.address",
      message,
    })),
    {
      what: "ipv6Address beside an IPv6 address",
      changes: { "hosts[3]": withExisting("lab", { address: "2a01:4f8::3", ipv6Address: "2a01:4f8::4" }) },
      path: "swarm:hosts[3].existing.ipv6Address",
      message:
        "goes only beside an IPv4 address, and address 2a01:4f8::3 is IPv6 already: remove ipv6Address",
    },
    {
      what: "ipv6Address beside a DNS name",
      changes: {
        "hosts[3]": withExisting("lab", { address: "lab.example.org", ipv6Address: "2a01:4f8::4" }),
      },
      path: "swarm:hosts[3].existing.ipv6Address",
      message: "is a DNS name, which peers resolve to whatever its records say: give the name an AAAA record",
    },
    {
      what: "ipv6Address that is IPv4",
      changes: { "hosts[3]": withExisting("lab", { address: "192.168.7.3", ipv6Address: "192.168.7.4" }) },
      path: "swarm:hosts[3].existing.ipv6Address",
      message: '"192.168.7.4" is not an IPv6 address',
    },
    {
      what: "ipv6Address not canonical",
      changes: { "hosts[3]": withExisting("lab", { address: "192.168.7.3", ipv6Address: "2A01:4F8::4" }) },
      path: "swarm:hosts[3].existing.ipv6Address",
      message: "write 2a01:4f8::4",
    },
    {
      what: "ipv6Address link-local",
      changes: { "hosts[3]": withExisting("lab", { address: "192.168.7.3", ipv6Address: "fe80::4" }) },
      path: "swarm:hosts[3].existing.ipv6Address",
      message: "link-local range",
    },
    {
      what: "an IPv6-only spoke whose hub has only IPv4",
      changes: {
        "hosts[0]": withExisting("anchor", { address: "192.168.7.1" }),
        "hosts[0].meshAddress": "10.8.0.1",
        "hosts[2]": withExisting("hetzner-native", { address: "2a01:4f8::3" }),
        "exports[0].pool.devices": ["/dev/disk/by-id/virtio-tank"],
      },
      path: "swarm:hosts[2].existing.address",
      message:
        "hetzner-native has only an IPv6 address, and its peer anchor only IPv4: WireGuard has no path between them; give anchor an IPv6 address (existing.ipv6Address), or reach hetzner-native at an IPv4 address",
    },
    {
      what: "a Hetzner server without IPv4 in a full mesh with IPv4-only hosts",
      changes: {
        ...fullMesh,
        "hosts[2].hcloud.ipv4": false,
        "hosts[3]": existingHost("lab", "192.168.7.3"),
        "hosts[4]": existingHost("lab2", "192.168.7.4"),
        "admin.sshSourceCidrs": ["198.51.100.0/24", "2a01:4f8:1234::/48"],
      },
      path: "swarm:hosts[2].hcloud.ipv4",
      message:
        "hetzner-native has only an IPv6 address, and its peers lab, lab2 only IPv4: WireGuard has no path between them; give each of them an IPv6 address (existing.ipv6Address), or create hetzner-native with hcloud.ipv4: true",
    },
    {
      what: "a Hetzner server without IPv4 and only IPv4 SSH sources",
      changes: { "hosts[1].hcloud.ipv4": false, "hosts[2].hcloud.ipv4": false },
      path: "swarm:admin.sshSourceCidrs",
      message:
        "lists only IPv4 networks, and satellite, hetzner-native have no IPv4 address (hcloud.ipv4: false): the Hetzner firewall would let no SSH reach them; add the IPv6 network you run pulumi from",
    },
    {
      what: "hcloud.ipv4 not a boolean",
      changes: { "hosts[2].hcloud.ipv4": "no" },
      path: "swarm:hosts[2].hcloud.ipv4",
      message: "must be true or false",
    },
  ]);
});

describe("existing hosts' addresses", () => {
  rejectsEach([
    ...[
      ["127.0.0.1", "is in the loopback range 127.0.0.0/8, which is the machine that runs pulumi itself"],
      ["127.1.2.3", "loopback range"],
      ["0.0.0.0", "is in the this-network range 0.0.0.0/8"],
      ["0.1.2.3", "this-network range"],
      ["169.254.10.10", "link-local range"],
      ["169.254.169.254", "link-local range"],
      ["224.0.0.1", "multicast range"],
      ["239.1.1.1", "multicast range"],
      ["255.255.255.255", "255.255.255.255 is the broadcast address"],
      ["240.0.0.1", "reserved range"],
      ["localhost", "localhost is the machine that runs pulumi itself"],
      ["LOCALHOST", "is the machine that runs pulumi itself"],
      ["db.localhost", "is the machine that runs pulumi itself"],
    ].map(([address, message]) => ({
      what: `existing address ${address}`,
      changes: { "hosts[3]": existingHost("lab", address) },
      path: "swarm:hosts[3].existing.address",
      message,
    })),
    ...[
      ["192.0.2.7", "192.0.2.7", 22, 22],
      ["host.example.org", "HOST.example.org", 22, 22],
      ["HOST.EXAMPLE.ORG", "host.example.org", 22, 22],
      ["192.0.2.7", "192.0.2.7", 2222, 2222],
    ].map(([first, second, port1, port2]) => ({
      what: `two hosts at ${String(second)} port ${String(port2)}`,
      changes: {
        "hosts[3]": withExisting("lab", { address: first, port: port1 }),
        "hosts[4]": withExisting("lab2", { address: second, port: port2 }),
      },
      path: "swarm:hosts[4].existing.address",
      message: `port ${String(port2)} is already where swarm:hosts[3] (lab) is reached`,
    })),
  ]);

  it("accepts two hosts behind one address on different SSH ports", () => {
    const raw = withChanges({
      "hosts[3]": withExisting("lab", { address: "192.0.2.7", port: 2222 }),
      "hosts[4]": withExisting("lab2", { address: "192.0.2.7", port: 2223 }),
    });
    expect(validateFleetConfig(raw).errors).toEqual([]);
  });
});

/** 128 public /8s: half the IPv4 space, in pieces no bigger than an admin network may be. */
const HALF_THE_INTERNET = Array.from({ length: 223 }, (_, i) => i + 1)
  .filter((octet) => ![10, 100, 127, 169, 172, 192].includes(octet))
  .slice(0, 128)
  .map((octet) => `${octet}.0.0.0/8`);

describe("the admin's SSH sources", () => {
  rejectsEach([
    ...["0.0.0.0/1", "128.0.0.0/1", "0.0.0.0/2", "192.0.0.0/2", "8.0.0.0/7", "64.0.0.0/3"].map((cidr) => ({
      what: `SSH source ${cidr}, a large part of the internet`,
      changes: { "admin.sshSourceCidrs": ["198.51.100.0/24", cidr] },
      path: "swarm:admin.sshSourceCidrs[1]",
      message: `${cidr} opens SSH to`,
    })),
    ...[
      ["127.0.0.1/32", "loopback"],
      ["0.0.0.0/8", "this-network"],
      ["169.254.0.0/16", "link-local"],
      ["224.0.0.0/8", "multicast"],
      ["255.255.255.255/32", "reserved"],
    ].map(([cidr, name]) => ({
      what: `SSH source ${cidr} in the ${name} range`,
      changes: { "admin.sshSourceCidrs": [cidr] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message: `overlaps the ${name} range`,
    })),
    ...["10.0.0.0/8", "192.168.1.0/24", "172.16.5.0/24", "100.64.0.0/10", "10.1.2.3/32"].map((cidr) => ({
      what: `private SSH source ${cidr} behind the Hetzner firewall`,
      changes: { "admin.sshSourceCidrs": [cidr] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message: "the Hetzner firewall filters the servers' public addresses",
    })),
    {
      what: "SSH opened to half the internet in /8 pieces",
      changes: { "admin.sshSourceCidrs": HALF_THE_INTERNET },
      path: "swarm:admin.sshSourceCidrs",
      message: "together open SSH to 2147483648 addresses (2^31), half the internet or more",
    },
  ]);

  rejectsEach([
    {
      what: "IPv6 SSH source open to the whole internet",
      changes: { "admin.sshSourceCidrs": ["::/0"] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message: "::/0 opens SSH to the whole IPv6 internet",
    },
    ...["2000::/3", "2a00::/12", "2a01:4f8::/31"].map((cidr) => ({
      what: `IPv6 SSH source ${cidr}, a large part of the internet`,
      changes: { "admin.sshSourceCidrs": ["198.51.100.0/24", cidr] },
      path: "swarm:admin.sshSourceCidrs[1]",
      message: `${cidr} opens SSH to a large part of the IPv6 internet (a provider is allocated a /32`,
    })),
    {
      what: "IPv6 SSH source given as an address",
      changes: { "admin.sshSourceCidrs": ["2a01:4f8:c17:1::7"] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message: "is an address, not a CIDR: did you mean 2a01:4f8:c17:1::7/128?",
    },
    ...["2a01:4f8:::/48", "2a01:4f8::/129", "2a01:4f8::g/64", "2a01:4f8::/", "1:2:3:4:5:6:7:8:9/128"].map(
      (text) => ({
        what: `IPv6 SSH source ${text}, not a CIDR`,
        changes: { "admin.sshSourceCidrs": [text] },
        path: "swarm:admin.sshSourceCidrs[0]",
        message: "is not an IPv6 CIDR: write a network address and prefix such as 2001:db8:1234::/48",
      }),
    ),
    {
      what: "IPv6 SSH source with host bits set",
      changes: { "admin.sshSourceCidrs": ["2a01:4f8:c17:1::7/64"] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message: "2a01:4f8:c17:1::7/64 has host bits set: did you mean 2a01:4f8:c17:1::/64?",
    },
    ...[
      ["::1/128", "loopback address"],
      ["::/128", "unspecified address"],
      ["::ffff:203.0.113.0/120", "IPv4-mapped range"],
      ["fe80::/64", "link-local range"],
      ["ff02::1/128", "multicast range"],
    ].map(([cidr, name]) => ({
      what: `IPv6 SSH source ${cidr} in the ${name}`,
      changes: { "admin.sshSourceCidrs": [cidr] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message: `overlaps the ${name}`,
    })),
    {
      what: "unique local IPv6 SSH source behind the Hetzner firewall",
      changes: { "admin.sshSourceCidrs": ["fd12:3456:789a::/48"] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message:
        "is inside the unique local range fc00::/7, which is private (RFC 4193): the Hetzner firewall filters",
    },
    ...[
      ["2A01:4F8:C17::/48", "2a01:4f8:c17::/48"],
      ["2a01:04f8:0c17:0000::/64", "2a01:4f8:c17::/64"],
      ["2a01:0:0:1:0:0:0:0/64", "2a01:0:0:1::/64"],
      ["2a01:0:0:1:2::3/128", "2a01::1:2:0:0:3/128"],
    ].map(([text, canonical]) => ({
      what: `IPv6 SSH source ${text}, not as Hetzner stores it`,
      changes: { "admin.sshSourceCidrs": [text] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message: `is not written as Hetzner stores it, so every run would show the firewall as changed: write ${canonical}`,
    })),
  ]);

  it("accepts public IPv6 sources beside IPv4 ones, and unique local ones where no Hetzner firewall is involved", () => {
    const raw = withChanges({
      "admin.sshSourceCidrs": [
        "185.12.64.7/32",
        "2a01:4f8:c17:1::/64",
        "2a01:4f8::/32",
        "2a01:4f8:c17:1::7/128",
      ],
    });
    expect(validateFleetConfig(raw).errors).toEqual([]);
    const lan = withChanges(
      { admin: { sshPublicKey: KEY, sshSourceCidrs: ["fd12:3456:789a::/48"] } },
      lanFleet,
    );
    expect(validateFleetConfig(lan).errors).toEqual([]);
  });

  it("accepts private SSH sources where no Hetzner firewall is involved, and 127 public /8s", () => {
    expect(validateFleetConfig(lanFleet()).errors).toEqual([]);
    const raw = withChanges({ "admin.sshSourceCidrs": HALF_THE_INTERNET.slice(1) });
    expect(validateFleetConfig(raw).errors).toEqual([]);
  });
});

describe("paths beneath system directories and on file systems emptied at boot", () => {
  const beneath = [
    ["/etc/meshfs", "is inside /etc, the system's configuration"],
    ["/etc/ssh/meshfs", "is inside /etc"],
    ["/usr/local/meshfs", "is inside /usr, the operating system"],
    ["/usr/share/meshfs", "is inside /usr"],
    ["/boot/efi/meshfs", "is inside /boot, the kernel and the boot loader"],
    ["/bin/meshfs", "is inside /bin, the system's programs"],
    ["/sbin/meshfs", "is inside /sbin"],
    ["/lib/meshfs", "is inside /lib"],
    ["/lib64/meshfs", "is inside /lib64"],
    ["/libx32/meshfs", "is inside /libx32"],
    ["/var/lib/swarm", "is /var/lib/swarm, swarm's own state"],
    ["/var/lib/swarm/meshfs", "is inside /var/lib/swarm"],
    ["/var/lib/dpkg/meshfs", "is inside /var/lib/dpkg, the package manager's state"],
    ["/var/lib/systemd/meshfs", "is inside /var/lib/systemd"],
    ["/sys/fs/meshfs", "is inside /sys, a kernel file system"],
    ["/proc/meshfs", "is inside /proc, a kernel file system"],
    ["/dev/shm/meshfs", "is inside /dev, a kernel file system"],
    ["/run/user/0/meshfs", "is inside /run, a kernel file system (tmpfs) emptied at every boot"],
  ];
  const ephemeral = ["/tmp/wiki", "/tmp/a/b", "/var/tmp/wiki"];
  rejectsEach([
    ...beneath.map(([path, message]) => ({
      what: `mount path ${path}`,
      changes: { "mounts[0].path": path },
      path: "swarm:mounts[0].path",
      message,
    })),
    ...beneath.map(([path, message]) => ({
      what: `sync local root ${path}`,
      changes: { "syncs[0].local": path },
      path: "swarm:syncs[0].local",
      message,
    })),
    ...beneath.map(([path, message]) => ({
      what: `export mountpoint ${path}`,
      changes: { "exports[0].mountpoint": path },
      path: "swarm:exports[0].mountpoint",
      message,
    })),
    ...ephemeral.map((path) => ({
      what: `sync local root ${path}, emptied at boot`,
      changes: { "syncs[0].local": path },
      path: "swarm:syncs[0].local",
      message: "the sync would then delete the same files on every replica",
    })),
    ...ephemeral.map((path) => ({
      what: `export mountpoint ${path}, emptied at boot`,
      changes: { "exports[0].mountpoint": path },
      path: "swarm:exports[0].mountpoint",
      message: "the dataset would be hidden when the directory is mounted afresh at boot",
    })),
  ]);

  it.each([
    "/srv/wiki",
    "/home/ai-streamer/notes",
    "/root/wiki",
    "/opt/wiki/data",
    "/var/lib/wiki",
    "/var/www/wiki",
    "/etcetera/wiki",
    "/usr2/wiki",
  ])("accepts %s as a sync root, a mount path and a mountpoint", (path) => {
    expect(validateFleetConfig(withChanges({ "syncs[0].local": path })).errors).toEqual([]);
    expect(validateFleetConfig(withChanges({ "mounts[0].path": path })).errors).toEqual([]);
    expect(validateFleetConfig(withChanges({ "exports[0].mountpoint": path })).errors).toEqual([]);
  });

  it("accepts a mount below /tmp: nothing is kept there", () => {
    expect(validateFleetConfig(withChanges({ "mounts[0].path": "/tmp/meshfs" })).errors).toEqual([]);
  });
});

describe("mounts, sync roots and datasets that hide or copy each other", () => {
  rejectsEach([
    ...[
      ["/srv/data", "/srv/data/meshfs"],
      ["/home/ai-streamer", "/home/ai-streamer/meshfs"],
      ["/srv/data", "/srv/data/a/b/c"],
    ].map(([local, mount]) => ({
      what: `sync local root ${local} holding the mount ${mount}`,
      changes: {
        "mounts[2]": { host: "hetzner-native", export: "meshfs", path: mount, owner: "ai-streamer" },
        "syncs[0].local": local,
      },
      path: "swarm:syncs[0].local",
      message: `${local} contains the sshfs mount ${mount} (swarm:mounts[2]): unison would copy the export into the local root`,
    })),
    ...["/tank", "/tank/meshfs", "/tank/meshfs/state"].map((local) => ({
      what: `sync local root ${local} holding the host's own dataset`,
      from: twoExports,
      changes: { "syncs[1].local": local },
      path: "swarm:syncs[1].local",
      message: `${local} contains /tank/meshfs/state, where anchor mounts the dataset of export meshfs`,
    })),
    ...["/tank/meshfs/state/notes", "/tank", "/tank/meshfs/state"].map((path) => ({
      what: `mount ${path} nested with the host's own export mountpoint`,
      from: twoExports,
      changes: { "mounts[2].path": path, "syncs[1].remote.mountPath": `${path}/x` },
      path: "swarm:mounts[2].path",
      message: "where anchor mounts the dataset of export meshfs (swarm:exports[0]), nest",
    })),
  ]);

  it("accepts the two-export fleet it starts from", () => {
    expect(validateFleetConfig(twoExports()).errors).toEqual([]);
  });
});

describe("an export user that is the account swarm logs in with", () => {
  const existingAnchor = (user: string) => ({
    "hosts[0].hcloud": undefined,
    "hosts[0].existing": { address: "192.0.2.1", user, hostKey: fixtureHostKey("anchor") },
    "exports[0].pool.devices": ["/dev/sdb"],
  });
  rejectsEach([
    ...["admin", "deploy", "debian"].map((user) => ({
      what: `export user ${user}, the login of its existing host`,
      changes: { ...existingAnchor(user), "exports[0].user": user },
      path: "swarm:exports[0].user",
      message: `${user} is the account swarm logs in to anchor with (swarm:hosts[0].existing.user): the export makes it an sftp-only account`,
    })),
    {
      what: "the default export user meshfs as the login of its existing host",
      changes: existingAnchor("meshfs"),
      path: "swarm:exports[0].user",
      message: "set swarm:exports[0].user to an account of its own, such as meshfs-sftp",
    },
  ]);

  it("accepts the fix the message names", () => {
    const raw = withChanges({ ...existingAnchor("meshfs"), "exports[0].user": "meshfs-sftp" });
    expect(validateFleetConfig(raw).errors).toEqual([]);
  });
});

describe("keys outside the swarm: namespace", () => {
  rejectsEach([
    ...[
      ["swram:hosts", "swarm:hosts"],
      ["Swarm:hosts", "swarm:hosts"],
      ["SWARM:mesh", "swarm:mesh"],
      ["swarm.syncs", "swarm:syncs"],
      ["swarm/mounts", "swarm:mounts"],
      ["swarn:mesh", "swarm:mesh"],
      ["swarms:syncs", "swarm:syncs"],
      ["warm:exports", "swarm:exports"],
      ["sawrm:health", "swarm:health"],
      ["swarm.sshPrivateKey", "swarm:sshPrivateKey"],
      ["swram:host", "swarm:hosts"],
      ["Swarm:colour", "swarm:colour"],
    ].map(([key, rename]) => ({
      what: `the key ${key}`,
      changes: {},
      options: { otherKeys: ["hcloud:token", key] },
      path: key,
      message: `is not in the swarm: namespace, so the program never reads it: rename it to ${rename}`,
    })),
    {
      what: "swarm keys nested under one swarm mapping",
      changes: {},
      options: { otherKeys: ["swarm"] },
      path: "swarm",
      message: "write swarm:hosts, swarm:mesh and the others there",
    },
  ]);

  it("says when the renamed key is to be merged with one already there", () => {
    const { errors } = validateFleetConfig(base(), { otherKeys: ["swram:hosts"] });
    expect(errors).toEqual([
      {
        path: "swram:hosts",
        message: expect.stringMatching(
          /rename it to swarm:hosts, merged into the swarm:hosts already there$/,
        ),
      },
    ]);
  });

  it("leaves other providers' namespaces alone", () => {
    const otherKeys = [
      "hcloud:token",
      "aws:region",
      "command:x",
      "random:y",
      "pulumi:tags",
      "swarmish:hosts",
      "sw:x",
    ];
    expect(validateFleetConfig(base(), { otherKeys }).errors).toEqual([]);
  });

  it("reports a section lost to a typo with the required error it causes, and renaming fixes both", () => {
    const raw = base();
    const { hosts, ...rest } = raw;
    const before = validateFleetConfig(rest, { otherKeys: ["swram:hosts"] });
    expect(before.errors.map((e) => e.path)).toEqual(["swram:hosts", "swarm:hosts"]);
    expect(validateFleetConfig({ ...rest, hosts }, { otherKeys: [] }).errors).toEqual([]);
  });
});

describe("private keys in plain text", () => {
  const privateKey =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----\n";
  rejectsEach([
    {
      what: "sshPrivateKey written in plain text",
      changes: { sshPrivateKey: privateKey },
      options: { secretKeys: [] },
      path: "swarm:sshPrivateKey",
      message: "is written in plain text in the stack file",
    },
    {
      what: "sshPrivateKey in plain text among other secrets",
      changes: { sshPrivateKey: privateKey },
      options: { secretKeys: ["health"] },
      path: "swarm:sshPrivateKey",
      message: "replace the key pair",
    },
    {
      what: "sshPrivateKey as a plain path",
      changes: { sshPrivateKey: "~/.ssh/id_ed25519" },
      options: { secretKeys: [] },
      path: "swarm:sshPrivateKey",
      message: "set it as a secret with pulumi config set --secret swarm:sshPrivateKey < path/to/private_key",
    },
  ]);

  it.each([
    ["health", { textfileDir: privateKey }, "swarm:health.textfileDir"],
    ["mounts[0].owner", privateKey, "swarm:mounts[0].owner"],
    ["syncs[0].ignore", [`Name ${privateKey}`], "swarm:syncs[0].ignore[0]"],
    ["hosts[1].privateKey", privateKey, "swarm:hosts[1].privateKey"],
  ])("names a private key pasted into %s, besides what is wrong with the value", (at, value, path) => {
    const { errors } = validateFleetConfig(withChanges({ [at]: value }));
    expect(errors).toContainEqual({
      path,
      message: expect.stringMatching(/^holds a private key in plain text/),
    });
    expect(errors.filter((e) => e.path !== path)).toEqual([]);
  });

  it("accepts sshPrivateKey stored as a secret, and does not look when the secrets are not known", () => {
    const raw = { ...base(), sshPrivateKey: { secure: "v1:abc" } };
    expect(validateFleetConfig(raw, { secretKeys: ["sshPrivateKey"] }).errors).toEqual([]);
    expect(validateFleetConfig({ ...base(), sshPrivateKey: null }).errors).toEqual([]);
  });

  it("names a private key in an existing host's hostKey once", () => {
    const raw = withChanges({
      "hosts[3]": withExisting("lab", { address: "192.0.2.9", hostKey: privateKey }),
    });
    const { errors } = validateFleetConfig(raw);
    expect(errors).toEqual([
      { path: "swarm:hosts[3].existing.hostKey", message: expect.stringMatching(/^is a private key/) },
    ]);
  });
});

describe("public keys and host keys", () => {
  const hostKey = fixtureHostKey("lab");
  const lab = (key: unknown) => ({ "hosts[3]": withExisting("lab", { address: "192.0.2.9", hostKey: key }) });
  const at = "swarm:hosts[3].existing.hostKey";
  rejectsEach([
    {
      what: "existing host without hostKey",
      changes: { "hosts[3]": { name: "lab", existing: { address: "192.0.2.9", port: 2222 } } },
      path: at,
      message:
        "is required: pin the host's SSH host key, so that no connection trusts whoever answers: read it with ssh-keyscan -t ed25519 192.0.2.9 -p 2222",
    },
    ...["lab.example.org", "192.0.2.9", "[192.0.2.9]:2222"].map((name) => ({
      what: `hostKey pasted with the host name ${name} of an ssh-keyscan line`,
      changes: lab(`${name} ${hostKey}`),
      path: at,
      message: `starts with ${JSON.stringify(name)}, the host name of an ssh-keyscan line: drop it`,
    })),
    ...["-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n", "-----BEGIN EC PRIVATE KEY-----"].map((key) => ({
      what: `hostKey that is a private key (${key.split("\n")[0]})`,
      changes: lab(key),
      path: at,
      message: "is a private key, which must never be in a stack file",
    })),
    {
      what: "hostKey of type ssh-rsa",
      changes: lab(RSA_KEY),
      path: at,
      message: "is an ssh-rsa key, which the SSH provider would verify with SHA-1 signatures",
    },
    ...[1, 4, 8, 40].map((cut) => ({
      what: `hostKey with ${cut} characters cut off its data`,
      changes: lab(truncated(hostKey, cut)),
      path: at,
      message: "truncated or mangled",
    })),
    {
      what: "hostKey with bytes appended to its data",
      changes: lab(extended(hostKey, 3)),
      path: at,
      message:
        "the key data is truncated or mangled (an ssh-ed25519 key is 68 characters of base64, this one has 72)",
    },
    {
      what: "hostKey that is not a key",
      changes: lab("AAAAC3NzaC1lZDI1NTE5"),
      path: at,
      message: "is not an OpenSSH public key: read it with ssh-keyscan",
    },
    {
      what: "hostKey of an hcloud server cut short",
      changes: { "hosts[1].hcloud.hostKey": truncated(hostKey, 2) },
      path: "swarm:hosts[1].hcloud.hostKey",
      message: "truncated or mangled",
    },
    ...[
      [truncated(KEY, 1), "this one has 67"],
      [truncated(KEY, 5), "this one has 63"],
      [truncated(KEY, 12), "truncated or mangled"],
      [truncated(RSA_KEY, 4), "truncated or mangled"],
      [truncated(RSA_KEY, 100), "truncated or mangled"],
      [truncated(ECDSA_KEY, 2), "truncated or mangled"],
      [extended(ECDSA_KEY, 1), "truncated or mangled"],
    ].map(([key, message], i) => ({
      what: `admin key cut or mangled (${i + 1})`,
      changes: { "admin.sshPublicKey": key },
      path: "swarm:admin.sshPublicKey",
      message,
    })),
  ]);

  it.each([
    ["ed25519", KEY],
    ["ed25519 without comment", KEY.split(" ").slice(0, 2).join(" ")],
    ["rsa", RSA_KEY],
    ["ecdsa", ECDSA_KEY],
  ])("accepts a whole %s admin key", (_, key) => {
    expect(validateFleetConfig(withChanges({ "admin.sshPublicKey": key })).errors).toEqual([]);
  });

  it.each([
    ["ed25519", hostKey],
    ["ecdsa", ECDSA_KEY],
    ["ed25519 with a comment", `${hostKey} root@lab`],
  ])("accepts a whole %s host key and pins it without its comment", (_, key) => {
    const { config, errors } = validateFleetConfig(withChanges(lab(key)));
    expect(errors).toEqual([]);
    expect(config?.hosts[3].existing?.hostKey).toBe(key.split(" ").slice(0, 2).join(" "));
  });
});

describe("documentation placeholders", () => {
  const deploying: ValidateOptions = { deploying: true };
  const placeholders = [
    {
      what: "the example admin key",
      changes: { "admin.sshPublicKey": KEY },
      path: "swarm:admin.sshPublicKey",
      message: "is the example key from the repository's stack files",
    },
    {
      what: "the example admin key with another comment",
      changes: { "admin.sshPublicKey": KEY.replace("admin@swarm", "me@laptop") },
      path: "swarm:admin.sshPublicKey",
      message: "is the example key",
    },
    ...["192.0.2.0/24", "198.51.100.7/32", "203.0.113.0/25", "198.51.100.0/23"].map((cidr) => ({
      what: `SSH source ${cidr} from the documentation ranges`,
      changes: { "admin.sshSourceCidrs": [cidr] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message:
        "which is reserved for examples (RFC 5737): no connection comes from it, so the Hetzner firewall would lock the admin out",
    })),
    ...["2001:db8::/32", "2001:db8:1234::/48", "2001:db8::7/128"].map((cidr) => ({
      what: `IPv6 SSH source ${cidr} from the documentation range`,
      changes: { "admin.sshSourceCidrs": [cidr] },
      path: "swarm:admin.sshSourceCidrs[0]",
      message:
        "which is reserved for examples (RFC 3849): no connection comes from it, so the Hetzner firewall would lock the admin out",
    })),
    ...["192.0.2.10", "198.51.100.200", "203.0.113.5"].map((address) => ({
      what: `existing address ${address} from the documentation ranges`,
      changes: { "hosts[3]": existingHost("lab", address) },
      path: "swarm:hosts[3].existing.address",
      message: "which is reserved for examples (RFC 5737): no host answers there",
    })),
  ];
  /** The base fleet with its own admin key and network: placeholders come only from each row. */
  const real = () =>
    withChanges({ "admin.sshPublicKey": OWN_KEY, "admin.sshSourceCidrs": ["185.12.64.7/32"] });

  describe.each(placeholders)("$what", ({ changes, path, message }) => {
    it("is a warning while previewing", () => {
      const { config, errors, warnings } = validateFleetConfig(withChanges(changes, real));
      expect(errors).toEqual([]);
      expect(config).toBeDefined();
      expect(warnings).toEqual([{ path, message: expect.stringContaining(message) }]);
    });

    it("is the only error when deploying", () => {
      const { config, errors, warnings } = validateFleetConfig(withChanges(changes, real), deploying);
      expect(config).toBeUndefined();
      expect(errors).toEqual([{ path, message: expect.stringContaining(message) }]);
      expect(warnings).toEqual([]);
    });
  });

  it("names both placeholders of the example stacks, and replacing them deploys", () => {
    for (const stack of ["prod", "staging"]) {
      const { raw } = readStackFile(`${__dirname}/../Pulumi.${stack}.yaml`);
      expect(validateFleetConfig(raw).warnings.map((w) => w.path)).toEqual([
        "swarm:admin.sshPublicKey",
        "swarm:admin.sshSourceCidrs[0]",
      ]);
      expect(validateFleetConfig(raw, deploying).config).toBeUndefined();
      raw.admin = { sshPublicKey: OWN_KEY, sshSourceCidrs: ["185.12.64.7/32"] };
      expect(validateFleetConfig(raw, deploying)).toEqual(
        expect.objectContaining({ errors: [], warnings: [] }),
      );
    }
  });

  it("leaves the example key and documentation sources alone in a fleet without Hetzner servers", () => {
    const raw = withChanges({ admin: { sshPublicKey: KEY, sshSourceCidrs: ["198.51.100.0/24"] } }, lanFleet);
    expect(validateFleetConfig(raw, deploying)).toEqual(
      expect.objectContaining({ errors: [], warnings: [] }),
    );
  });
});

describe("swarm:repairs", () => {
  it("keeps every generation by command name, numbers written as text too, and defaults to none", () => {
    const { config, errors } = validateFleetConfig(
      withChanges({ repairs: { "meshfs-sftp": "3", "mesh-anchor-config": 2 } }),
    );
    expect(errors).toEqual([]);
    expect(config?.repairs).toEqual({ "mesh-anchor-config": 2, "meshfs-sftp": 3 });
    expect(validateFleetConfig(base()).config?.repairs).toEqual({});
    expect(validateFleetConfig(withChanges({ repairs: null })).config?.repairs).toEqual({});
  });

  it("takes the name of every remote command of the stack", () => {
    const names = [
      "anchor-bootstrap",
      "mesh-satellite-key",
      "mesh-hetzner-native-config",
      "meshfs-zfs",
      "meshfs-hostkey",
      "satellite-meshfs-mount-key",
      "hetzner-native-meshfs-mount-units",
      "hetzner-native-wiki-sync-units",
      "satellite-health-install",
    ];
    const { errors } = validateFleetConfig(
      withChanges({ repairs: Object.fromEntries(names.map((n) => [n, 1])) }),
    );
    expect(errors).toEqual([]);
  });

  it("reports wrong generations with the other errors, and names once the rest is valid", () => {
    const raw = withChanges({
      "mesh.cidr": "10.8.0.1/24",
      repairs: { "meshfs-sftp": 0, "no-such-command": 1 },
    });
    expect(validateFleetConfig(raw).errors.map((e) => e.path)).toEqual([
      "swarm:mesh.cidr",
      "swarm:repairs.meshfs-sftp",
    ]);
    setPath(raw, "mesh.cidr", "10.8.0.0/24");
    setPath(raw, "repairs", { "meshfs-sftp": 1, "no-such-command": 1 });
    expect(validateFleetConfig(raw).errors.map((e) => e.path)).toEqual(["swarm:repairs.no-such-command"]);
  });

  it("a typo of a command that has an entry already is removed, not renamed onto it", () => {
    const raw = withChanges({ repairs: { "meshfs-sftp": 2, "meshfs-stfp": 3 } });
    expect(validateFleetConfig(raw).errors).toEqual([
      {
        path: "swarm:repairs.meshfs-stfp",
        message:
          "is not a remote command of this stack: did you mean meshfs-sftp? It has an entry already: remove this one, and raise the generation of meshfs-sftp by 1 to repair that step",
      },
    ]);
    setPath(raw, "repairs", { "meshfs-sftp": 3 });
    expect(validateFleetConfig(raw).errors).toEqual([]);
  });

  it("following a did-you-mean validates", () => {
    const raw = withChanges({ repairs: { "mesh-anchr-config": 1 } });
    const [error] = validateFleetConfig(raw).errors;
    const suggested = /did you mean (\S+)\?/.exec(error.message)?.[1] as string;
    setPath(raw, "repairs", { [suggested]: 1 });
    expect(validateFleetConfig(raw).errors).toEqual([]);
  });
});

describe("every error leads to a config that validates", () => {
  /** Applies `fix` to `raw` and returns the errors before and after. */
  function follow(raw: Record<string, unknown>, fix: Record<string, unknown>) {
    const before = validateFleetConfig(raw).errors;
    for (const [path, value] of Object.entries(fix)) {
      setPath(raw, path, value);
    }
    return { before, after: validateFleetConfig(raw).errors };
  }

  it("a sync over ssh:// on the export's own host is moved to a client, then through its mount", () => {
    const raw = withChanges({
      "syncs[1]": {
        host: "anchor",
        name: "notes",
        local: "/srv/notes",
        remote: { export: "meshfs", path: "notes" },
      },
    });
    const first = validateFleetConfig(raw).errors;
    expect(first).toEqual([
      {
        path: "swarm:syncs[1].host",
        message:
          "anchor serves export meshfs itself, so this sync has no other side to reach: run it on a client of meshfs (satellite, hetzner-native), or remove it and use /tank/meshfs/state/notes directly",
      },
    ]);
    expect(first[0].message).not.toMatch(/add anchor to/);
    const { before, after } = follow(raw, { "syncs[1].host": "satellite" });
    expect(before).toEqual(first);
    expect(after).toEqual([
      {
        path: "swarm:syncs[1].remote",
        message: expect.stringMatching(
          /sync through the mount instead, with remote: \{mountPath: \/mnt\/meshfs\/notes\}$/,
        ),
      },
    ]);
    expect(follow(raw, { "syncs[1].remote": { mountPath: "/mnt/meshfs/notes" } }).after).toEqual([]);
  });

  it("adding the export host to clients, as the old message said, does not help", () => {
    const raw = withChanges({
      "syncs[1]": { host: "anchor", name: "notes", local: "/srv/notes", remote: { export: "meshfs" } },
      "exports[0].clients": ["satellite", "hetzner-native", "anchor"],
    });
    expect(validateFleetConfig(raw).errors.map((e) => e.path)).toEqual([
      "swarm:exports[0].clients[2]",
      "swarm:syncs[1].host",
    ]);
  });

  it("a sync on the export host inside its own mountpoint is told to move or go, not to add a mount", () => {
    const raw = withChanges({
      "syncs[1]": {
        host: "anchor",
        name: "notes",
        local: "/srv/notes",
        remote: { mountPath: "/tank/meshfs/state/notes" },
      },
    });
    const { before, after } = follow(raw, {
      "syncs[1].host": "satellite",
      "syncs[1].remote.mountPath": "/mnt/meshfs/notes",
    });
    expect(before).toEqual([
      {
        path: "swarm:syncs[1].remote.mountPath",
        message: expect.stringContaining(
          "which anchor serves itself, so there is no other side to sync with: run the sync on a client of it (satellite, hetzner-native)",
        ),
      },
    ]);
    expect(after).toEqual([]);
  });

  it("a mount on the export host and the sync through it are both named, and removing both validates", () => {
    const raw = withChanges({
      "mounts[2]": { host: "anchor", export: "meshfs", path: "/mnt/meshfs" },
      "syncs[1]": {
        host: "anchor",
        name: "notes",
        local: "/srv/notes",
        remote: { mountPath: "/mnt/meshfs/notes" },
      },
    });
    const errors = validateFleetConfig(raw).errors;
    expect(errors).toEqual([
      {
        path: "swarm:mounts[2].host",
        message: expect.stringContaining("remove this mount (and swarm:syncs[1], which sync through it)"),
      },
      { path: "swarm:syncs[1].host", message: expect.stringContaining("run the sync on a client of meshfs") },
    ]);
    // Removing only the mount, as its message alone would have it, is not a loop back to "add a mount".
    const mountless = withChanges({
      "syncs[1]": {
        host: "anchor",
        name: "notes",
        local: "/srv/notes",
        remote: { mountPath: "/mnt/meshfs/notes" },
      },
    });
    expect(validateFleetConfig(mountless).errors).toEqual([
      {
        path: "swarm:syncs[1].remote.mountPath",
        message:
          "host anchor has no mount containing /mnt/meshfs/notes, and every export is served by anchor itself: run the sync on another host, or remove it",
      },
    ]);
    const syncs = raw.syncs as unknown[];
    const mounts = raw.mounts as unknown[];
    expect(follow(raw, { syncs: syncs.slice(0, 1), mounts: mounts.slice(0, 2) }).after).toEqual([]);
  });

  it.each(["/etc/meshfs", "/mnt", "/var/lib/swarm/meshfs", "/run/meshfs"])(
    "a sync under a refused mount path %s is told to move with it, not that there is no mount",
    (refused) => {
      const raw = withChanges({ "mounts[1].path": refused, "syncs[0].remote.mountPath": `${refused}/wiki` });
      const { before, after } = follow(raw, {
        "mounts[1].path": "/srv/meshfs",
        "syncs[0].remote.mountPath": "/srv/meshfs/wiki",
      });
      expect(before).toEqual([
        { path: "swarm:mounts[1].path", message: expect.any(String) },
        {
          path: "swarm:syncs[0].remote.mountPath",
          message: `${refused}/wiki is inside ${refused}, the refused path of swarm:mounts[1]: when you move that mount, move this path inside its new path too`,
        },
      ]);
      expect(after).toEqual([]);
    },
  );

  it("two syncs through one mount as different users are told one owner, not each their own", () => {
    const raw = withChanges({
      "syncs[1]": {
        host: "hetzner-native",
        name: "notes",
        local: "/srv/notes",
        remote: { mountPath: "/mnt/meshfs/notes" },
        user: "bob",
      },
    });
    const errors = validateFleetConfig(raw).errors;
    expect(errors).toEqual([
      {
        path: "swarm:syncs[1].user",
        message:
          "the sync runs as bob, but /mnt/meshfs (swarm:mounts[1]) maps its files to one owner, and swarm:syncs[0] writes there as ai-streamer: run this sync as ai-streamer too, or mount meshfs a second time at a path of its own with owner bob and point remote.mountPath there",
      },
    ]);
    expect(follow(structuredClone(raw), { "syncs[1].user": "ai-streamer" }).after).toEqual([]);
    const twoMounts = follow(structuredClone(raw), {
      "mounts[2]": { host: "hetzner-native", export: "meshfs", path: "/srv/meshfs-bob", owner: "bob" },
      "syncs[1].remote.mountPath": "/srv/meshfs-bob/notes",
    });
    expect(twoMounts.after).toEqual([]);
  });

  it("with a root-owned mount, every sync is told the same owner to set", () => {
    const raw = withChanges({
      "mounts[1].owner": undefined,
      "syncs[1]": {
        host: "hetzner-native",
        name: "notes",
        local: "/srv/notes",
        remote: { mountPath: "/mnt/meshfs/notes" },
        user: "bob",
      },
    });
    const errors = validateFleetConfig(raw).errors;
    expect(errors.map((e) => e.path)).toEqual(["swarm:syncs[0].user", "swarm:syncs[1].user"]);
    expect(errors[0].message).toContain("set that owner to ai-streamer");
    expect(errors[1].message).toContain("run this sync as ai-streamer too");
    expect(follow(raw, { "mounts[1].owner": "ai-streamer", "syncs[1].user": "ai-streamer" }).after).toEqual(
      [],
    );
  });

  it("a host that mounts an export and also syncs with it over ssh:// is sent to the mount", () => {
    const raw = withChanges({ "syncs[0].remote": { export: "meshfs", path: "wiki" } });
    const { before, after } = follow(raw, { "syncs[0].remote": { mountPath: "/mnt/meshfs/wiki" } });
    expect(before).toEqual([
      {
        path: "swarm:syncs[0].remote",
        message:
          "hetzner-native also mounts export meshfs at /mnt/meshfs (swarm:mounts[1]), and sshd gives one client address one kind of session: sync through the mount instead, with remote: {mountPath: /mnt/meshfs/wiki}",
      },
    ]);
    expect(after).toEqual([]);
  });

  it("a sync whose host has no mount is told which export it can mount, and that validates", () => {
    const raw = withChanges({
      "syncs[0].host": "satellite",
      "syncs[0].user": "root",
      "syncs[0].remote.mountPath": "/srv/meshfs/wiki",
    });
    const { before, after } = follow(raw, {
      "mounts[2]": { host: "satellite", export: "meshfs", path: "/srv/meshfs" },
    });
    expect(before).toEqual([
      {
        path: "swarm:syncs[0].remote.mountPath",
        message:
          "host satellite has no mount containing /srv/meshfs/wiki; add a swarm:mounts entry for satellite whose path contains it (of export meshfs)",
      },
    ]);
    expect(after).toEqual([]);
  });
});

describe("snapshot retention", () => {
  const snapshotsOf = (snapshots: Record<string, unknown>) =>
    withChanges({ "exports[0].snapshots": snapshots });

  it("takes the tiers as written, a tier not written keeping nothing", () => {
    const { config, errors } = validateFleetConfig(
      snapshotsOf({ interval: "1h", retention: { hourly: 24, daily: "30", monthly: 6 } }),
    );
    expect(errors).toEqual([]);
    expect(config?.exports[0].snapshots).toEqual({
      interval: 3600,
      retention: { frequent: 0, hourly: 24, daily: 30, weekly: 0, monthly: 6 },
    });
  });

  it("keeps hourly: 48 when snapshots or retention is not written", () => {
    const raw = withChanges({ "exports[0].snapshots": undefined });
    expect(validateFleetConfig(raw).config?.exports[0].snapshots).toEqual({
      interval: 3600,
      retention: { frequent: 0, hourly: 48, daily: 0, weekly: 0, monthly: 0 },
    });
  });

  it("declares the tiers zfs-snapshot knows, in its order", () => {
    expect(Object.keys(retentionSchema.shape)).toEqual([...RETENTION_TIERS]);
  });

  it("reports an older stack's keep with every other error", () => {
    const raw = withChanges({
      "exports[0].snapshots": { interval: "1h", keep: 48 },
      "mesh.mtu": 100,
      "syncs[0].interval": "5s",
    });
    expect(validateFleetConfig(raw).errors.map((e) => e.path)).toEqual(
      expect.arrayContaining([
        "swarm:mesh.mtu",
        "swarm:exports[0].snapshots.keep",
        "swarm:syncs[0].interval",
      ]),
    );
  });

  /** The `retention: { ... }` an error tells to write. */
  const suggested = (message: string): Record<string, number> => {
    const match = /retention: (\{[^}]*\})/.exec(message);
    expect(match).not.toBeNull();
    return parse((match as RegExpExecArray)[1]) as Record<string, number>;
  };

  it.each([
    { snapshots: { interval: "1h", keep: 48 }, fixed: { hourly: 48 } },
    { snapshots: { interval: "6h", keep: 8 }, fixed: { frequent: 8 } },
    { snapshots: { interval: "1d", keep: 7 }, fixed: { daily: 7 } },
    { snapshots: { interval: "7d", keep: 52 }, fixed: { weekly: 52 } },
    { snapshots: { interval: "10min", keep: 0 }, fixed: { frequent: 48 } },
    { snapshots: { interval: "1h", retention: {} }, fixed: { hourly: 48 } },
    { snapshots: { interval: "1d", retention: { hourly: 48, daily: 30 } }, fixed: { daily: 48 } },
    { snapshots: { interval: "6h" }, fixed: { frequent: 48 } },
    { snapshots: { interval: "2h", retention: { frequent: 60, hourly: 48 } }, fixed: { frequent: 60 } },
    {
      snapshots: { interval: "14d", retention: { daily: 10, weekly: 4, monthly: 6 } },
      fixed: { frequent: 10, monthly: 6 },
    },
  ])("$snapshots: the retention each error suggests, $fixed, validates", ({ snapshots, fixed }) => {
    const { errors } = validateFleetConfig(snapshotsOf(snapshots));
    expect(errors.length).toBeGreaterThan(0);
    for (const error of errors) {
      expect(error.path).toMatch(/^swarm:exports\[0\]\.snapshots\./);
      expect(suggested(error.message)).toEqual(fixed);
    }
    const after = validateFleetConfig(snapshotsOf({ interval: snapshots.interval, retention: fixed }));
    expect(after.errors).toEqual([]);
  });
});

describe("replicas", () => {
  /** The base fleet with a replica of meshfs on hetzner-native's own volume. */
  const withReplica = () =>
    withChanges({
      "hosts[2].hcloud.volumeSize": 50,
      "exports[0].replicas": [
        { host: "hetzner-native", pool: { name: "backup", devices: ["volume"] }, dataset: "backup/meshfs" },
      ],
    });

  it("accepts a replica and fills in its defaults: 15 min, the export's retention, four intervals of lag", () => {
    const { config, errors } = validateFleetConfig(withReplica());
    expect(errors).toEqual([]);
    expect(config?.exports[0].replicas).toEqual([
      {
        host: "hetzner-native",
        pool: { name: "backup", devices: ["volume"], scrub: "monthly" },
        dataset: "backup/meshfs",
        interval: 900,
      },
    ]);
    const step = stepsOf(planFleet(config as FleetConfig).steps, "replica")[0];
    expect(step.replica.retention).toEqual(config?.exports[0].snapshots.retention);
    expect(step.replica.maxLag).toBe(3600);
    expect(step.replica.source).toEqual({
      host: "anchor",
      meshAddress: "10.8.0.1",
      dataset: "tank/meshfs/state",
    });
  });

  it("accepts, through a hub that routes, a spoke mounting another spoke's export and a replica on a third spoke", () => {
    const raw = withChanges({ "mesh.hub": "satellite" }, withReplica);
    const { config, errors } = validateFleetConfig(raw);
    expect(errors).toEqual([]);
    const plan = planFleet(config as FleetConfig);
    // hetzner-native reaches anchor's export through satellite: its one peer carries the mesh block.
    expect(plan.byName.get("hetzner-native")?.peers).toEqual([
      { name: "satellite", allowedIps: ["10.8.0.0/24"], endpointFamily: "IPv4" },
    ]);
    expect(stepsOf(plan.steps, "mount").map((m) => [m.host, m.server.name])).toEqual([
      ["satellite", "anchor"],
      ["hetzner-native", "anchor"],
    ]);
  });

  rejectsEach([
    {
      what: "a replica on a spoke the export host has no tunnel to, the hub not routing",
      from: withReplica,
      changes: {
        "mesh.hub": "satellite",
        "mesh.hubRouting": false,
        "exports[0].clients": ["satellite"],
        mounts: [{ host: "satellite", export: "meshfs", path: "/mnt/meshfs" }],
        syncs: [],
      },
      path: "swarm:exports[0].replicas[0].host",
      message:
        "under topology hub without hub routing hetzner-native peers only with satellite, so anchor cannot send to it over the mesh",
    },
    {
      what: "a replica on the export's own host",
      from: withReplica,
      changes: { "exports[0].replicas[0].host": "anchor" },
      path: "swarm:exports[0].replicas[0].host",
      message: "anchor is the export's own host: a replica there is lost with it",
    },
    {
      what: "a replica on a host the fleet does not have",
      from: withReplica,
      changes: { "exports[0].replicas[0].host": "hetzner-nativ" },
      path: "swarm:exports[0].replicas[0].host",
      message: "hetzner-nativ",
    },
    {
      what: "two replicas on one host",
      from: withReplica,
      changes: {
        "exports[0].replicas[1]": {
          host: "hetzner-native",
          pool: { name: "backup", devices: ["volume"] },
          dataset: "backup/meshfs2",
        },
      },
      path: "swarm:exports[0].replicas[1].host",
      message: "hetzner-native already keeps a replica of export meshfs: one replica per host",
    },
    {
      what: "a replica on volume of a host without one",
      from: withReplica,
      changes: { "hosts[2].hcloud.volumeSize": undefined },
      path: "swarm:exports[0].replicas[0].pool.devices",
      message: "volume needs a Hetzner volume on hetzner-native: set swarm:hosts[2].hcloud.volumeSize",
    },
    {
      what: "a replica's dataset outside its pool",
      from: withReplica,
      changes: { "exports[0].replicas[0].dataset": "tank/meshfs" },
      path: "swarm:exports[0].replicas[0].dataset",
      message: "tank/meshfs is not inside pool backup: start it with backup/",
    },
    {
      what: "a replica received into the pool's root dataset",
      from: withReplica,
      changes: { "exports[0].replicas[0].dataset": "backup" },
      path: "swarm:exports[0].replicas[0].dataset",
      message: "is the pool's root dataset: a replica is received into a dataset of its own",
    },
    {
      what: "a replica's maxLag within one interval",
      from: withReplica,
      changes: { "exports[0].replicas[0].interval": "15min", "exports[0].replicas[0].maxLag": "10min" },
      path: "swarm:exports[0].replicas[0].maxLag",
      message: "10min is not longer than the interval 15min",
    },
    {
      what: "a replica's retention that keeps nothing",
      from: withReplica,
      changes: { "exports[0].replicas[0].retention": { hourly: 0 } },
      path: "swarm:exports[0].replicas[0].retention",
      message: "keeps no snapshot: every tier is 0",
    },
    {
      what: "a replica without a dataset",
      from: withReplica,
      changes: { "exports[0].replicas[0].dataset": undefined },
      path: "swarm:exports[0].replicas[0].dataset",
      message: "name the replica's dataset, e.g. backup/meshfs",
    },
    {
      what: "a replica sent more often than every minute",
      from: withReplica,
      changes: { "exports[0].replicas[0].interval": "30s" },
      path: "swarm:exports[0].replicas[0].interval",
      message: "30s",
    },
    {
      what: "an unknown key in a replica",
      from: withReplica,
      changes: { "exports[0].replicas[0].intervall": "1h" },
      path: "swarm:exports[0].replicas[0].intervall",
      message: "did you mean interval?",
    },
    {
      what: "an export name too long for its replica user",
      from: withReplica,
      changes: {
        "exports[0].name": "meshfs-of-the-whole-company",
        "mounts[0].export": "meshfs-of-the-whole-company",
        "mounts[1].export": "meshfs-of-the-whole-company",
      },
      path: "swarm:exports[0].name",
      message: "is too long for an export with replicas",
    },
  ]);
});

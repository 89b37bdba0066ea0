import { DEFAULT_HEALTH } from "../config/health";
import { readStackFile } from "../config/load";
import { FleetPlan } from "../config/model";
import { ConfigError } from "../config/types";
import { meshCollisionErrors, validateFleetConfig } from "../config/validate";

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
        snapshots: { interval: "1h", keep: 48 },
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

function withChanges(changes: Record<string, unknown>): Record<string, unknown> {
  const raw = base();
  for (const [path, value] of Object.entries(changes)) {
    setPath(raw, path, value);
  }
  return raw;
}

const existingHost = (name: string, address: string) => ({ name, existing: { address } });
const fullMesh = { "mesh.topology": "full", "mesh.hub": undefined };

describe("validateFleetConfig", () => {
  it("accepts the base fleet and applies every default", () => {
    const { config, errors } = validateFleetConfig(base());
    expect(errors).toEqual([]);
    expect(config?.hosts[1]).toEqual({
      name: "satellite",
      hcloud: { serverType: "cx23", location: "nbg1", image: "debian-12" },
      wireguard: "kernel",
      keyRotation: "",
      routes: [],
    });
    expect(config?.mesh).toEqual({
      cidr: "10.8.0.0/24",
      listenPort: 51820,
      topology: "hub",
      hub: "anchor",
      persistentKeepalive: 25,
    });
    expect(config?.exports[0]).toMatchObject({
      pool: { name: "tank", devices: ["volume"] },
      properties: { atime: "off", compression: "lz4", refquota: "100G", snapdir: "hidden" },
      snapshots: { interval: 3600, keep: 48 },
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
          existing: { address: "192.0.2.1", user: "root", port: 22 },
          wireguard: "kernel",
          keyRotation: "",
          routes: [],
        },
        {
          name: "b",
          existing: { address: "b.example.org", user: "root", port: 22 },
          wireguard: "kernel",
          keyRotation: "",
          routes: [],
        },
      ],
      mesh: { cidr: "10.9.0.0/24", listenPort: 51820, topology: "full" },
      admin: { sshPublicKey: KEY, sshSourceCidrs: [] },
      exports: [],
      mounts: [],
      syncs: [],
      health: DEFAULT_HEALTH,
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
    expect(config?.exports[0].pool).toEqual({ name: "tank", devices: ["/var/lib/tank.img"] });
    expect(config?.exports[0].properties.compression).toBe("on");
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
    changes: { "hosts[1].existing": { address: "192.0.2.10" } },
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
    changes: { "hosts[3]": { name: "lab", existing: { user: "admin" } } },
    path: "swarm:hosts[3].existing.address",
    message: "is required",
  },
  {
    what: "existing address neither IPv4 nor DNS",
    changes: { "hosts[3]": existingHost("lab", "10.0.0.300") },
    path: "swarm:hosts[3].existing.address",
    message: "neither an IPv4 address nor a DNS name",
  },
  {
    what: "existing port out of range",
    changes: { "hosts[3]": { name: "lab", existing: { address: "192.0.2.7", port: 70000 } } },
    path: "swarm:hosts[3].existing.port",
    message: "70000 is out of range: use a value from 1 to 65535",
  },
  {
    what: "existing user invalid",
    changes: { "hosts[3]": { name: "lab", existing: { address: "192.0.2.7", user: "Admin!" } } },
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
    message: "is not an IPv4 CIDR",
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
    changes: { "hosts[0].hcloud": undefined, "hosts[0].existing": { address: "192.0.2.1" } },
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
    what: "snapshot retention zero",
    changes: { "exports[0].snapshots.keep": 0 },
    path: "swarm:exports[0].snapshots.keep",
    message: "0 is out of range",
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
    what: "client without a tunnel to the export host under hub topology",
    changes: { "mesh.hub": "satellite" },
    path: "swarm:exports[0].clients[1]",
    message: "under topology hub hetzner-native peers only with satellite, so it cannot reach anchor",
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
    changes: { "syncs[0].remote": { export: "meshfs", path: "../etc" } },
    path: "swarm:syncs[0].remote.path",
    message: "must stay inside the export",
  },
  {
    what: "sync remote export path absolute",
    changes: { "syncs[0].remote": { export: "meshfs", path: "/wiki" } },
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
    what: "unknown sync key",
    changes: { "syncs[0].intervall": "60s" },
    path: "swarm:syncs[0].intervall",
    message: "did you mean interval?",
  },
];

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

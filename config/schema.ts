/**
 * Every field of the `swarm:` stack config, declared once: its type, default,
 * limits and description. The types in types.ts, the shape checks of
 * validation, the `config:` section of Pulumi.yaml, the README's reference
 * and schema/stack.schema.json all come from here (`npm run generate`).
 * Rules that relate fields to each other (collisions, references between
 * hosts, exports, mounts and syncs, address ranges, paths) are code, in
 * validate.ts.
 */
import { z } from "zod";
import {
  boolean,
  describe,
  duration,
  field,
  fieldInfo,
  formatDuration,
  integer,
  list,
  oneOf,
  parseDuration,
  text,
} from "./schemaKit";
import { Seconds } from "./types";

const HOST_NAME = /^[a-z][a-z0-9-]{0,62}$/;
const HOST_NAME_HINT =
  "is not a valid host name: use lower-case letters, digits and -, starting with a letter, at most 63 characters";
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const USER_NAME_HINT =
  "is not a valid user name: use lower-case letters, digits, _ and -, starting with a letter or _, at most 32 characters";
const UNIT_NAME = /^[a-z][a-z0-9-]*$/;
const UNIT_NAME_HINT = "is not a valid name: use lower-case letters, digits and -, starting with a letter";
const POOL_NAME = /^[A-Za-z][A-Za-z0-9_.:-]*$/;
const RESERVED_POOL_NAMES = /^(mirror|raidz\d?|draid\d?|spare|log|c\d.*)$/;
const DATASET_NAME = /^[A-Za-z][A-Za-z0-9_.:-]*(\/[A-Za-z0-9_.:-]+)*$/;
const FILE_SIZE = /^[1-9]\d*[KMGT]$/;
const IGNORE_PREFIXES = ["Name ", "Path ", "Regex ", "BelowPath "] as const;

const IGNORE_HINT =
  'is not a unison ignore pattern: start it with Name, Path, Regex or BelowPath, e.g. "Name *.swp"';

const userName = () => text({ pattern: USER_NAME, patternHint: USER_NAME_HINT });

export const DEFAULT_ZFS_PROPERTIES: Readonly<Record<string, string>> = {
  compression: "lz4",
  atime: "off",
  snapdir: "hidden",
};

/** WireGuard's REKEY_AFTER_TIME plus its retry window: a busy tunnel's handshake may be this old. */
export const MIN_HANDSHAKE_AGE: Seconds = 150;

// ---------------------------------------------------------------- hosts

export const hcloudSchema = z.object({
  serverType: field(
    text({
      pattern: /^[a-z][a-z0-9-]*$/,
      patternHint: "is not a Hetzner server type: use a name such as cx23 or cax11",
    }),
    "Hetzner server type, e.g. `cx23`",
    { hint: "set a Hetzner server type such as cx23" },
  ),
  location: field(
    text({
      pattern: /^[a-z][a-z0-9-]*$/,
      patternHint: "is not a Hetzner location: use a name such as nbg1, fsn1 or hel1",
    }),
    "Hetzner location, e.g. `nbg1`",
    { hint: "set a Hetzner location such as nbg1, fsn1 or hel1" },
  ),
  image: field(
    text({
      pattern: /^[a-z0-9][a-z0-9._-]*$/,
      patternHint: "is not an image name: use a name such as debian-12",
    }).default("debian-12"),
    "image name",
  ),
  volumeSize: field(
    integer(10, 10240).optional(),
    "GB of an attached volume that backs a ZFS pool (10–10240)",
    {
      defaultText: "none",
    },
  ),
  ipv4: field(
    boolean().default(true),
    "`false` creates the server without a public IPv4 address: it is reached (SSH, WireGuard) at the first address of its IPv6 /64, and peers only with hosts that have IPv6. Read when the server is created: to change it on a running server, replace the server (see [docs/ipv6.md](docs/ipv6.md))",
  ),
  hostKey: field(
    text().optional(),
    "the server's `ssh-ed25519 AAAA...` host key, only for a server created before swarm generated host keys (see [docs/host-keys.md](docs/host-keys.md)); absent, the program generates it and pins it",
    { defaultText: "generated" },
  ),
});

export const existingSchema = z.object({
  address: field(
    text(),
    "IPv4 or IPv6 address (IPv6 as RFC 5952 writes it, without brackets) or DNS name the admin reaches the host at over SSH, and peers its WireGuard port at",
    {
      hint: "set the IPv4 or IPv6 address or DNS name the host is reached at",
    },
  ),
  ipv6Address: field(
    text().optional(),
    "the host's IPv6 address beside an IPv4 `address`: peers without IPv4 reach its WireGuard port there (see [docs/ipv6.md](docs/ipv6.md))",
    { defaultText: "none" },
  ),
  user: field(userName().default("root"), "SSH user: root, or one with passwordless sudo"),
  port: field(integer(1, 65535).default(22), "SSH port"),
  hostKey: field(
    text(),
    "the host's `ssh-ed25519 AAAA...` key, pinned on every connection: read it with `ssh-keyscan` and check it on the host's console",
    { requiredElsewhere: true },
  ),
});

export const hostSchema = z.object({
  name: field(
    text({ pattern: HOST_NAME, patternHint: HOST_NAME_HINT }),
    "unique host name, `[a-z][a-z0-9-]*`, at most 63 characters; used in resource names and hostnames",
    { hint: "give the host a name such as anchor" },
  ),
  hcloud: field(hcloudSchema.optional(), "a Hetzner Cloud server this program creates"),
  existing: field(existingSchema.optional(), "a machine you have, reached at an address"),
  meshAddress: field(
    text().optional(),
    "the host's mesh address; allocated from a hash of the name when absent (pin it to be sure it never moves)",
    { defaultText: "allocated" },
  ),
  meshAddress6: field(
    text().optional(),
    "the host's IPv6 mesh address inside `mesh.ipv6Prefix`, written as RFC 5952 prints it; allocated from a hash of the name when absent",
    { defaultText: "allocated with `mesh.ipv6Prefix`" },
  ),
  wireguard: field(
    oneOf(["kernel", "wireguard-go"]).default("kernel"),
    "`kernel`, or `wireguard-go` (userspace, for kernels without the module)",
  ),
  keyRotation: field(text({ numbers: true }).default(""), "change it to give the host a new WireGuard key"),
  routes: field(
    list(
      text({ notString: (v) => `must be a CIDR string such as 192.168.10.0/24, got ${describe(v)}` }),
    ).default([]),
    "extra IPv4 CIDRs routed to this host through the mesh (added to its AllowedIPs on its peers; with hub routing, to the hub's on every other spoke)",
  ),
});

// ---------------------------------------------------------------- mesh and admin

export const meshSchema = z.object({
  cidr: field(text(), "IPv4 block of mesh addresses, e.g. `10.8.0.0/24`", {
    hint: "set the mesh block, e.g. 10.8.0.0/24",
  }),
  ipv6Prefix: field(
    text().optional(),
    "a unique local IPv6 /64 (inside `fd00::/8`, written as RFC 5952 prints it, e.g. `fd31:a7c9:5e04:8::/64`): every host gets an IPv6 mesh address in it beside its IPv4 one (see [docs/ipv6.md](docs/ipv6.md))",
    { defaultText: "none: an IPv4-only mesh" },
  ),
  listenPort: field(integer(1, 65535).default(51820), "WireGuard UDP port on every host"),
  topology: field(
    oneOf(["full", "hub"]).default("full"),
    "`full` (every host peers with every other) or `hub` (every host peers with the hub only)",
  ),
  hub: field(text().optional(), "the hub host; required for `hub`"),
  hubRouting: field(
    boolean().default(true),
    "with `hub`: the other hosts reach each other, and each other's `routes`, through the hub, which forwards between its WireGuard peers and nothing else; `false` keeps them apart",
  ),
  mtu: field(integer(1280, 9000).optional(), "interface MTU, 1280–9000", { defaultText: "wg-quick" }),
  persistentKeepalive: field(duration(0, 65535).optional(), "e.g. `25s` for hosts behind NAT", {
    defaultText: "off",
  }),
});

export const adminSchema = z.object({
  sshPublicKey: field(
    text().default(""),
    "the admin key pair's OpenSSH public key line; installed on Hetzner servers",
    { defaultText: "required with hcloud" },
  ),
  sshSourceCidrs: field(
    list(
      text({
        notString: (v) =>
          `must be a CIDR string such as 203.0.113.7/32 or 2001:db8:1234::/48, got ${describe(v)}`,
      }),
    ).default([]),
    "public IPv4 or IPv6 CIDRs the Hetzner firewall lets reach SSH: none wider than a /8 (IPv6: a /32), no private or special-purpose range, none overlapping the mesh or a route; IPv6 written as RFC 5952 prints it (2001:db8:1234::/48), the form Hetzner stores",
    { defaultText: "required with hcloud" },
  ),
});

// ---------------------------------------------------------------- storage

/**
 * The scrub schedules, as systemd's calendar words (`OnCalendar=`), each with
 * the longest time between two of its runs: a calendar timer can be
 * `Persistent=` (a scrub missed while the host was off runs after boot), where
 * a duration could not, and health still knows when a scrub is overdue.
 */
export const SCRUB_PERIODS = {
  weekly: 7 * 86400,
  monthly: 31 * 86400,
  quarterly: 92 * 86400,
} as const satisfies Readonly<Record<string, Seconds>>;

export type ScrubSchedule = keyof typeof SCRUB_PERIODS;

const SCRUB_CHOICES = [...(Object.keys(SCRUB_PERIODS) as ScrubSchedule[]), "off"] as const;

/** One of the scrub schedules, or `off`; a duration or a boolean is answered with what to write instead. */
function scrubSchedule() {
  const choices = SCRUB_CHOICES.join(", ");
  return z.enum(SCRUB_CHOICES as unknown as [ScrubSchedule | "off", ...(ScrubSchedule | "off")[]], {
    error: (iss) =>
      typeof iss.input === "boolean"
        ? `must be a schedule, got ${describe(iss.input)}: write off to turn scrubs off, or one of ${choices}`
        : parseDuration(iss.input) !== undefined
          ? `${JSON.stringify(iss.input)} is not a schedule: scrubs run on the calendar, so that a scrub missed while the host was off runs after boot; choose one of ${choices}`
          : typeof iss.input === "string"
            ? `${JSON.stringify(iss.input)} is not allowed: choose one of ${choices}`
            : `must be a string, got ${describe(iss.input)}`,
  });
}

export const poolSchema = z.object({
  name: field(
    text({
      pattern: POOL_NAME,
      patternHint: "is not a ZFS pool name: start with a letter, then letters, digits, _ . : or -",
      problem: (name) =>
        RESERVED_POOL_NAMES.test(name)
          ? `${JSON.stringify(name)} is reserved by ZFS: choose another pool name such as tank`
          : undefined,
    }),
    "ZFS pool name, e.g. `tank`",
    { hint: "name the ZFS pool, e.g. tank" },
  ),
  devices: field(
    list(text({ notString: (v) => `must be a device path or volume, got ${describe(v)}` })).default([]),
    "devices the pool is created on when it does not exist: absolute paths, or `volume` for the host's Hetzner volume; empty, the pool must exist",
  ),
  fileSize: field(
    text({
      pattern: FILE_SIZE,
      patternHint: "is not a size: write a whole number and a unit K, M, G or T, such as 512M or 10G",
    }).optional(),
    "create each missing device file as a sparse file of this size (e.g. `1G`): for labs",
  ),
  scrub: field(
    scrubSchedule().default("monthly"),
    "how often a timer scrubs the pool: `weekly`, `monthly` or `quarterly` (systemd calendar words; each host at a fixed random offset of up to a day, and a scrub missed while the host was off runs after boot), or `off`. Health warns when a scrub found errors or none finished in twice that time; exports that share a pool must agree",
  ),
});
fieldInfo.add(poolSchema, { removedKeys: ["implementation"] });

/**
 * How many of swarm's own snapshots each tier keeps. A tier counts periods
 * that hold a snapshot, not calendar periods back from now: `hourly: 48` is
 * 48 snapshots an hour apart even after the host was off for a week, so an
 * outage or a clock that jumps never empties the dataset of snapshots.
 */
const tier = (what: string) => field(integer(0, 10000).default(0), `${what} (0–10000)`);

export const retentionSchema = z.object({
  frequent: tier("the newest N swarm snapshots, whatever their age"),
  hourly: tier("the newest swarm snapshot of each of the last N UTC hours that have one"),
  daily: tier("the newest swarm snapshot of each of the last N UTC days that have one"),
  weekly: tier("the newest swarm snapshot of each of the last N weeks (Monday to Sunday, UTC) that have one"),
  monthly: tier("the newest swarm snapshot of each of the last N UTC calendar months that have one"),
});

export const snapshotSchema = z.object({
  interval: field(duration(60, 30 * 86400).default(3600), "how often the dataset is snapshotted (1min–30d)"),
  retention: field(
    retentionSchema.prefault({ hourly: 48 }),
    "tiers of swarm's own snapshots to keep; each run destroys the rest, but never the newest, a held one (`zfs hold`) or a snapshot of another name. A tier not written keeps none. The default is what `keep: 48` kept at the 1h interval, so upgrading changes nothing; a longer history (`daily: 30, monthly: 6`) keeps deleted files on the pool as long, so it is yours to ask for. See [docs/snapshots.md](docs/snapshots.md)",
    { defaultText: "`hourly: 48`" },
  ),
});
fieldInfo.add(snapshotSchema, { removedKeys: ["keep"] });

/**
 * A copy of an export's dataset on another host of the fleet, kept by
 * incremental `zfs send`/`zfs receive` over the mesh (docs/replicas.md).
 */
export const replicaSchema = z.object({
  host: field(
    text(),
    "the host that keeps the replica: another host of the fleet, best in another location",
    {
      hint: "name the host that keeps the replica",
    },
  ),
  pool: field(
    poolSchema,
    "the ZFS pool on that host the replica lives in; on an hcloud host write `volume` for its own volume",
    { hint: "set pool.name (e.g. backup) and, to create it, pool.devices" },
  ),
  dataset: field(
    text({
      pattern: DATASET_NAME,
      patternHint: "is not a ZFS dataset name: write pool/child, e.g. backup/meshfs",
    }),
    "the dataset the replica is received into, inside that pool, e.g. `backup/meshfs`: made by the first receive, read-only and never mounted",
    { hint: "name the replica's dataset, e.g. backup/meshfs" },
  ),
  interval: field(
    duration(60, 86400).default(900),
    "how often the export host snapshots the dataset and sends the replica what it lacks (1min–1d), counted from the start of one run to the next: a loss of the export host between runs takes at most this much of its writes",
  ),
  retention: field(
    retentionSchema.optional(),
    "tiers of swarm's snapshots the replica keeps, pruned after each receive; never the newest, which the next send starts from",
    { defaultText: "the export's `snapshots.retention`" },
  ),
  maxLag: field(
    duration(60, 30 * 86400).optional(),
    "the export host's health gate fails when the newest snapshot on the replica is older than this (1min–30d)",
    { defaultText: "four intervals" },
  ),
});

export const exportSchema = z.object({
  name: field(
    text({ pattern: UNIT_NAME, patternHint: UNIT_NAME_HINT }),
    "export name, referenced by mounts and syncs",
    {
      hint: "name the export, e.g. meshfs",
    },
  ),
  host: field(text(), "the host that holds the pool and serves the dataset", {
    hint: "name the host that holds the pool",
  }),
  pool: field(poolSchema, "the ZFS pool; OpenZFS only, so the host needs its kernel module", {
    hint: "set pool.name (e.g. tank) and, to create it, pool.devices",
  }),
  dataset: field(
    text({
      pattern: DATASET_NAME,
      patternHint: "is not a ZFS dataset name: write pool/child, e.g. tank/meshfs/state",
    }),
    "the dataset to export, inside the pool, e.g. `tank/meshfs/state`",
    { hint: "name the dataset to export, e.g. tank/meshfs/state" },
  ),
  mountpoint: field(text(), "absolute mountpoint of the dataset, e.g. `/tank/meshfs/state`", {
    hint: "set the dataset's absolute mountpoint, e.g. /tank/meshfs/state",
  }),
  properties: field(
    z.record(z.string(), z.string()).default(DEFAULT_ZFS_PROPERTIES),
    "ZFS properties, each overridable (`readonly` is `off` unless set here; `mountpoint` and `canmount` are the export's own); those that differ are set in one `zfs set` (the mountpoint in one of its own)",
    { custom: true, defaultText: "`compression: lz4`, `atime: off`, `snapdir: hidden`" },
  ),
  snapshots: field(
    snapshotSchema.prefault({}),
    "a timer snapshots the dataset and prunes its own snapshots by `retention`",
  ),
  clients: field(
    list(text({ notString: (v) => `must be a host name, got ${describe(v)}` })).default([]),
    "the hosts allowed to mount it",
  ),
  replicas: field(
    list(replicaSchema).default([]),
    "copies of the dataset on other hosts, kept by incremental zfs send over the mesh; see [docs/replicas.md](docs/replicas.md)",
  ),
  user: field(
    text({
      pattern: USER_NAME,
      patternHint: USER_NAME_HINT,
      problem: (user) =>
        user === "root"
          ? "must not be root: clients log in as this sftp-only user; keep the default meshfs or pick another"
          : undefined,
    }).default("meshfs"),
    "the sftp-only user clients connect as",
  ),
});

export const mountSchema = z.object({
  host: field(text(), "where it is mounted; must be in the export's `clients`", {
    hint: "name the host the export is mounted on",
  }),
  export: field(text(), "the export's name", { hint: "name the export to mount, e.g. meshfs" }),
  path: field(text(), "absolute mount path, not in or above a system directory, e.g. `/mnt/meshfs`", {
    hint: "set the absolute mount path, e.g. /mnt/meshfs",
  }),
  idleTimeout: field(
    duration(0, 7 * 86400).default(600),
    "unmount after this long unused; `0` keeps it mounted",
  ),
  owner: field(userName().default("root"), "the local user the files appear to belong to"),
});

export const syncRemoteSchema = z.object({
  mountPath: field(text().optional(), "a path inside a mount of the same host, e.g. `/mnt/meshfs/wiki`"),
  export: field(text().optional(), "or: an export reached with unison's `ssh://` mode, no mount"),
  path: field(text().optional(), "with `export`: a relative path inside it, e.g. `wiki`"),
});

export const syncSchema = z.object({
  host: field(text(), "where unison runs", { hint: "name the host the sync runs on" }),
  name: field(
    text({ pattern: UNIT_NAME, patternHint: UNIT_NAME_HINT }),
    "unique per host; names the profile and the units `swarm-sync-<name>.{service,timer}`",
    { hint: "name the sync, e.g. wiki (it names the profile and units)" },
  ),
  local: field(
    text(),
    "absolute local root, not under /tmp or /var/tmp; created (as `user`) at the first deploy if missing, never after the first sync",
    { hint: "set the absolute local root, e.g. /home/ai-streamer/wiki" },
  ),
  remote: field(syncRemoteSchema, "the other side: `mountPath`, or `export` + `path`", {
    hint: "set remote.mountPath (a path inside a mount) or remote.export with remote.path",
  }),
  interval: field(
    duration(10, 86400).default(60),
    "time from the end of one run to the start of the next (10s–1d)",
  ),
  user: field(userName().default("root"), "the local user unison runs as"),
  conflicts: field(
    oneOf(["keep-both"]).default("keep-both"),
    "the only policy: both versions stay, the conflict is logged and shown by `status`",
  ),
  ignore: field(
    list(
      text({
        notString: (v) => `${describe(v)} ${IGNORE_HINT}`,
        problem: (item) =>
          !IGNORE_PREFIXES.some((p) => item.startsWith(p) && item.length > p.length)
            ? `${JSON.stringify(item)} ${IGNORE_HINT}`
            : /[\n\r]/.test(item)
              ? "must be a single line: split it into one pattern per entry"
              : undefined,
      }),
    ).default([]),
    "unison ignore patterns, e.g. `Name *.swp`; `.zfs` is always ignored",
  ),
  watch: field(
    boolean().default(false),
    "also start a run within seconds of a change on either side, the timer as fallback: `inotifywait` watches the local root, and the host follows the remote root over ssh as the export's `<export>-watch` user, with a key of the sync's own that can only report that something changed there (`inotify-tools` is installed on both hosts)",
  ),
  timeout: field(duration(10, 86400).default(600), "a run that takes longer is stopped (10s–1d)"),
});

// ---------------------------------------------------------------- health

export const healthSchema = z.object({
  gate: field(
    boolean().default(true),
    "run the health gate after each converge; a failure fails `pulumi up`",
  ),
  handshakeWait: field(
    duration(1, 3600).default(60),
    "how long the gate waits for each peer to answer over the mesh with a fresh handshake",
  ),
  maxHandshakeAge: field(
    duration(1, 86400, {
      problem: (age) =>
        age < MIN_HANDSHAKE_AGE
          ? `${age}s is too short: WireGuard re-handshakes only every 2 min, so a healthy peer's handshake can be that old; use ${MIN_HANDSHAKE_AGE}s or more`
          : undefined,
    }).default(180),
    `older handshakes count as down (at least ${formatDuration(MIN_HANDSHAKE_AGE)})`,
  ),
  pingCount: field(
    integer(1, 100).default(3),
    "echo requests sent to each peer's mesh address per check (peers are pinged 32 at a time)",
  ),
  mountTimeout: field(
    duration(1, 600).default(20),
    "how long an automount may take to come up on first access",
  ),
  syncWait: field(
    duration(1, 3600).default(120),
    "how long the gate waits for a re-run of a sync whose last run failed",
  ),
  metricsInterval: field(
    duration(10, 86400).default(60),
    "how often `<textfileDir>/swarm.prom` is rewritten",
  ),
  textfileDir: field(
    text({
      pattern: /^(?:\/[A-Za-z0-9._@+-]+)+\/?$/,
      patternHint:
        "must be an absolute directory path of letters, digits and . _ @ + -, e.g. /var/lib/prometheus/node-exporter",
      problem: (dir) =>
        dir.split("/").includes("..")
          ? `${JSON.stringify(dir)} must not contain "..": write the directory plainly`
          : undefined,
    })
      .transform((dir) => dir.replace(/(.)\/+$/, "$1"))
      .default("/var/lib/prometheus/node-exporter"),
    "the node exporter's textfile collector directory",
  ),
});

// ---------------------------------------------------------------- repairs

/**
 * A repair generation: a whole number from 1 up. `npm run repair` writes 1
 * for a step's first repair and counts up from there.
 */
export function repairGeneration(): z.ZodType<number> {
  const problem = (iss: { input?: unknown }) =>
    `must be a whole number from 1 up (a repair generation, which npm run repair counts up), got ${describe(iss.input)}`;
  return z.preprocess(
    (v) => (typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v),
    z.number({ error: problem }).int({ error: problem, abort: true }).min(1, { error: problem }),
  ) as unknown as z.ZodType<number>;
}

// ---------------------------------------------------------------- the stack

/** One entry per `swarm:` key of a stack file. */
export const fleetSchema = z.object({
  hosts: field(list(hostSchema), "The hosts. Each has exactly one of `hcloud` and `existing`.", {
    hint: "declare the fleet's hosts, each with a name and hcloud or existing",
  }),
  mesh: field(meshSchema, "The WireGuard mesh.", { hint: "set at least mesh.cidr, e.g. 10.8.0.0/24" }),
  admin: field(
    adminSchema.prefault({}),
    "The admin key pair and SSH access. Required as soon as one host is a Hetzner server; a fleet of existing hosts needs none.",
  ),
  sshPrivateKey: field(
    text().optional(),
    "The admin's OpenSSH private key matching swarm:admin.sshPublicKey, used to reach every host. A stack secret: pulumi config set --secret swarm:sshPrivateKey < path/to/private_key",
    { custom: true, secret: true },
  ),
  exports: field(list(exportSchema).default([]), "meshfs exports on OpenZFS."),
  mounts: field(list(mountSchema).default([]), "sshfs automounts of exports."),
  syncs: field(list(syncSchema).default([]), "Two-way unison syncs."),
  health: field(healthSchema.prefault({}), "Health gate and metrics; every key is optional."),
  repairs: field(
    z.record(z.string(), repairGeneration()).default({}),
    "Repair generations by remote command name (e.g. `mesh-anchor-config: 2`), written by `npm run repair` for the steps that drifted on a host: raising a command's number makes the next `pulumi up` replace that command, which runs its step again (secrets on stdin as at creation) and nothing else. Keep an entry once written: removing it re-runs its step once more, which is harmless. A name that is no longer a command of the stack is refused: remove that entry.",
    { custom: true, defaultText: "`{}`" },
  ),
});

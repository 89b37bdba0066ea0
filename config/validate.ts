/**
 * Validation of the `swarm:` stack configuration.
 *
 * `validateFleetConfig` is pure: raw values in, either a fully defaulted
 * `FleetConfig` or every error found out. It never stops at the first
 * problem, so one `npm run validate` shows everything there is to fix, each
 * with its config path and the remedy.
 */
import { createHash } from "node:crypto";
import { DEFAULT_HEALTH, HealthConfig } from "./health";
import { findAllowedIpCollisions, sharedBlock } from "./collisions";
import {
  Cidr,
  blockSize,
  broadcast,
  contains,
  formatAddress,
  formatCidr,
  hostRange,
  overlaps,
  parseAddress,
  parseCidr,
} from "./ipv4";
import {
  DOCUMENTATION_RANGES,
  DOCUMENTATION_RANGES6,
  HETZNER_GATEWAY,
  NON_UNICAST_RANGES,
  NON_UNICAST_RANGES6,
  PRIVATE_RANGES,
  PRIVATE_RANGES6,
  Special,
  WIDEST_PREFIX,
  WIDEST_PREFIX6,
  WIDEST_UNION,
  describeSize,
  overlappedRange,
  overlappedRange6,
  rangeOf,
  unionSize,
} from "./addresses";
import {
  Cidr6,
  formatAddress6,
  formatCidr6,
  networkOf6,
  overlaps6,
  parseAddress6,
  parsePrefixed6,
} from "./ipv6";
import { PublicAddressing, endpointFamily, publicFamilies } from "./endpoints";
import { planFleet, planHosts } from "./model";
import { exportNamed, mountHolding, remoteCommandNames } from "./plan";
import {
  DEFAULT_ZFS_PROPERTIES,
  adminSchema,
  exportSchema,
  fleetSchema,
  hostSchema,
  meshSchema,
  mountSchema,
  syncSchema,
} from "./schema";
import { Item, Section, describe, formatDuration, readSection, typoDistance, unwrap } from "./schemaKit";
import { isInside } from "../templates/systemd";
import { replicaUser } from "../templates/replica";
import { watchUser } from "../templates/meshfsWatch";
import { RETENTION_TIERS, Retention, RetentionTier, retentionArgs } from "../templates/zfs";
import {
  AdminConfig,
  ConfigError,
  ExistingHostConfig,
  ExportConfig,
  FleetConfig,
  HcloudHostConfig,
  HostConfig,
  MeshConfig,
  MountConfig,
  PoolConfig,
  Seconds,
  SyncConfig,
  SyncRemoteConfig,
  WireGuardImplementation,
} from "./types";
import { z } from "zod";

export { DEFAULT_ZFS_PROPERTIES };

const ZFS_PROPERTY = /^([a-z][a-z0-9_]*|[a-z0-9][a-z0-9_.+-]*:[a-z0-9_.:+-]+)$/;
const ZFS_VALUE = /^[^\s"'`\\$]+$/;
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * Paths a mount or a sync root must neither be nor contain: mounting over
 * them hides the system, syncing them would propagate it. Paths inside the
 * kernel's virtual file systems are refused altogether.
 */
export const SYSTEM_PATHS = [
  "/",
  "/bin",
  "/boot",
  "/dev",
  "/etc",
  "/home",
  "/lib",
  "/lib32",
  "/lib64",
  "/media",
  "/mnt",
  "/opt",
  "/proc",
  "/root",
  "/run",
  "/sbin",
  "/srv",
  "/sys",
  "/tmp",
  "/usr",
  "/usr/bin",
  "/usr/lib",
  "/usr/local",
  "/usr/sbin",
  "/var",
  "/var/lib",
  "/var/log",
] as const;

/**
 * Directories whose whole tree belongs to the system or to swarm: a mount,
 * sync root or export inside one would hide, overwrite or replicate what
 * the system keeps there. The kernel's file systems come first, as they
 * are refused even where they are also a `SYSTEM_PATHS` entry. /home,
 * /root, /srv, /mnt, /media, /opt and the rest of /var stay open below
 * their top: that is where data lives.
 */
const SYSTEM_TREES: readonly { readonly root: string; readonly what: string }[] = [
  { root: "/dev", what: "a kernel file system" },
  { root: "/proc", what: "a kernel file system" },
  { root: "/sys", what: "a kernel file system" },
  {
    root: "/run",
    what: "a kernel file system (tmpfs) emptied at every boot, where services keep their runtime state",
  },
  ...["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"].map((root) => ({
    root,
    what: "the system's programs and libraries (on Debian a link into /usr)",
  })),
  { root: "/boot", what: "the kernel and the boot loader" },
  { root: "/etc", what: "the system's configuration, written by its packages and by swarm" },
  {
    root: "/usr",
    what: "the operating system, owned by its packages (swarm's own programs are in /usr/local/lib/swarm)",
  },
  { root: "/var/lib/apt", what: "the package manager's state" },
  { root: "/var/lib/dpkg", what: "the package manager's state" },
  { root: "/var/lib/swarm", what: "swarm's own state on the host (keys, owners, unison archives)" },
  { root: "/var/lib/systemd", what: "systemd's state" },
];
const KERNEL_TREES = 4;

/**
 * Directories whose files do not last: a sync root there loses its files
 * and the sync then deletes them on every replica; an export mounted there
 * is hidden when the directory is mounted afresh at boot.
 */
const EPHEMERAL_TREES: readonly { readonly root: string; readonly what: string }[] = [
  {
    root: "/tmp",
    what: "emptied at every boot on Debian 12 and a tmpfs from Debian 13 on, where files unused for 10 days are deleted too",
  },
  {
    root: "/var/tmp",
    what: "where systemd-tmpfiles deletes files unused for 30 days (Debian from 13 on, and most other distributions)",
  },
];

/** What each section's schema reads, before the checks of this file. */
type Fields<S extends z.ZodObject> = z.output<S>;
type FleetFields = Fields<typeof fleetSchema>;
type HostFields = Fields<typeof hostSchema>;
type MeshFields = Fields<typeof meshSchema>;
type AdminFields = Fields<typeof adminSchema>;
type ExportFields = Fields<typeof exportSchema>;
type ReplicaFields = ExportFields["replicas"][number];
type PoolFields = ExportFields["pool"];
type MountFields = Fields<typeof mountSchema>;
type SyncFields = Fields<typeof syncSchema>;

/**
 * What the cross checks know of one entry: `fields` holds what its section
 * read and the checks kept (it becomes the entry's config when everything
 * is valid), the rest names what the cross checks compare.
 */
interface HostDraft {
  readonly path: string;
  fields: Partial<HostFields>;
  name?: string;
  hcloud?: HcloudHostConfig;
  existing?: ExistingHostConfig;
  /** Which kind was given, even if some of its fields were wrong. */
  isExisting: boolean;
  isHcloud: boolean;
  /** `hcloud.volumeSize` was given, even if out of range. */
  hasVolume: boolean;
  existingAddress?: string;
  /** `existing.ipv6Address`, when valid. */
  existingAddress6?: string;
  /** What says which families the host's public addresses are in, from the fields that are valid. */
  addressing?: PublicAddressing;
  /** The account swarm logs in with: root on Hetzner servers, `existing.user` (root) on existing hosts. */
  loginUser?: string;
  /** `existing.port` with its default, when valid. */
  existingPort?: number;
  meshAddress?: string;
  /** `meshAddress6`, when it is a canonical IPv6 address. */
  meshAddress6?: string;
  wireguard?: WireGuardImplementation;
  keyRotation?: string;
  routes: { readonly text: string; readonly cidr?: Cidr; readonly path: string }[];
}

interface MeshDraft extends Partial<MeshFields> {
  readonly fields?: Partial<MeshFields>;
  /** `topology` was given but is not a known one: checks that depend on it are skipped. */
  badTopology?: boolean;
  badHub?: boolean;
  parsed?: Cidr;
  /** `ipv6Prefix`, when it is a unique local /64 written canonically. */
  parsed6?: Cidr6;
  /** `ipv6Prefix` was given but refused: its error says it all. */
  badIpv6Prefix?: boolean;
}

interface ExportDraft {
  readonly path: string;
  fields: Partial<ExportFields>;
  name?: string;
  host?: string;
  pool?: Partial<PoolConfig>;
  dataset?: string;
  mountpoint?: string;
  clients?: { readonly name: string; readonly path: string }[];
  user?: string;
  replicas: ReplicaDraft[];
}

interface ReplicaDraft {
  readonly path: string;
  host?: string;
  pool?: Partial<PoolConfig>;
  dataset?: string;
}

interface MountDraft {
  readonly path: string;
  fields: Partial<MountFields>;
  host?: string;
  export?: string;
  mountPath?: string;
  /** `path` as written when it was refused, so that syncs below it are not told the host has no mount. */
  refusedPath?: string;
  idleTimeout?: number;
  owner?: string;
}

interface SyncDraft {
  readonly path: string;
  fields: Partial<SyncFields>;
  host?: string;
  name?: string;
  local?: string;
  remote?: SyncRemoteConfig;
  interval?: number;
  user?: string;
  timeout?: number;
}

/** What the caller knows beyond the `swarm:` values themselves. */
export interface ValidateOptions {
  /**
   * The program is about to change real hosts (`pulumi up`, not a preview):
   * documentation placeholders are errors, not warnings.
   */
  readonly deploying?: boolean;
  /** Every key of the stack's config outside `swarm:`, as written (`swram:hosts`), to catch a misspelt namespace. */
  readonly otherKeys?: readonly string[];
  /** The `swarm:` keys (prefix stripped) stored as secrets; when given, a plain-text `sshPrivateKey` is refused. */
  readonly secretKeys?: readonly string[];
}

export interface ValidationResult {
  /** The defaulted config, present exactly when `errors` is empty. */
  readonly config?: FleetConfig;
  readonly errors: ConfigError[];
  /**
   * What is fine to render or preview but must not reach real hosts
   * (documentation placeholders); with `deploying`, these are errors instead.
   */
  readonly warnings: ConfigError[];
}

/**
 * Checks the `swarm:` keys of a stack (prefix stripped) and applies every
 * default. `config` is present exactly when `errors` is empty.
 */
export function validateFleetConfig(
  raw: Record<string, unknown>,
  options: ValidateOptions = {},
): ValidationResult {
  const errors: ConfigError[] = namespaceErrors(options.otherKeys ?? [], Object.keys(raw));
  const top = readSection(fleetSchema, raw, "swarm", errors) as Section<FleetFields>;

  const hosts = top.items("hosts").map((item) => readHost(item, errors));
  if (Array.isArray(raw.hosts) && raw.hosts.length === 0) {
    top.error("hosts", "is empty: declare at least one host");
  }
  const meshSection = top.sub("mesh");
  const mesh = meshSection ? readMesh(meshSection, errors) : {};
  // Only Hetzner servers need the admin key and CIDRs: existing hosts already trust the admin's key.
  if (!top.has("admin") && hosts.some((h) => h.isHcloud)) {
    top.error(
      "admin",
      "is required: set admin.sshPublicKey and admin.sshSourceCidrs (needed to create Hetzner servers)",
    );
  }
  const exports = top.items("exports").map((item) => readExport(item, errors));
  const mounts = top.items("mounts").map((item) => readMount(item));
  const syncs = top.items("syncs").map((item) => readSync(item));

  const fleet = new FleetIndex(hosts, mesh);
  const adminSection = top.has("admin") ? top.sub("admin") : undefined;
  const adminDraft = adminSection ? readAdmin(adminSection, hosts, errors) : undefined;
  const admin = adminDraft?.config;
  checkHosts(fleet, errors);
  checkMesh(fleet, adminDraft?.sources ?? [], errors);
  checkMesh6(fleet, errors);
  checkPublicFamilies(fleet, adminDraft, errors);
  const meshIsClean = !errors.some((e) => isMeshPath(e.path));
  checkExports(fleet, exports, errors);
  checkReplicas(fleet, exports, errors);
  checkMounts(fleet, exports, mounts, syncs, errors);
  checkSyncs(fleet, exports, mounts, syncs, errors);
  errors.push(...privateKeyErrors(raw, options.secretKeys, errors));
  const repairs = readRepairs(raw.repairs, errors);

  if (meshIsClean) {
    const meshOnly = assemble(hosts, mesh, undefined, [], [], [], DEFAULT_HEALTH, {});
    errors.push(
      ...meshCollisionErrors(
        { hosts: planHosts(meshOnly), meshCidr: meshOnly.mesh.cidr, meshPrefix6: meshOnly.mesh.ipv6Prefix },
        fleet,
      ),
    );
  }

  const placeholders = placeholderFindings(hosts, adminDraft);
  const warnings = options.deploying ? [] : placeholders;
  if (options.deploying) {
    errors.push(...placeholders);
  }
  if (errors.length > 0) {
    return { errors, warnings };
  }
  const health = top.value.health as HealthConfig;
  const config = assemble(hosts, mesh, admin, exports, mounts, syncs, health, repairs);
  // The names a repair may use are the plan's commands, so they are checked once the rest is valid
  // (and only when there are repairs: planning a large fleet is not free).
  const unknown =
    Object.keys(repairs).length === 0 ? [] : unknownRepairs(repairs, remoteCommandNames(planFleet(config)));
  return unknown.length > 0 ? { errors: unknown, warnings } : { config, errors, warnings };
}

/**
 * `swarm:repairs` as written: every generation that is a whole number from
 * 1 up, by command name; every other value reported with its path.
 */
function readRepairs(value: unknown, errors: ConfigError[]): Record<string, number> {
  const path = "swarm:repairs";
  if (value === undefined || value === null) {
    return {};
  }
  if (typeof value !== "object" || Array.isArray(value)) {
    errors.push({
      path,
      message: `must be an object (a YAML mapping) of remote command names to repair generations, such as {mesh-anchor-config: 1}, got ${describe(value)}`,
    });
    return {};
  }
  const generation = (unwrap(fleetSchema.shape.repairs).inner as z.ZodRecord<z.ZodString, z.ZodType<number>>)
    .valueType;
  const repairs: Record<string, number> = {};
  for (const [name, given] of Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const read = generation.safeParse(given);
    if (read.success) {
      repairs[name] = read.data;
    } else {
      errors.push({ path: `${path}.${name}`, message: read.error.issues[0].message });
    }
  }
  return repairs;
}

/**
 * Each `swarm:repairs` entry that names no remote command of the stack, with
 * the name it was probably meant to be: a typo, or a URN pasted whole.
 */
function unknownRepairs(
  repairs: Readonly<Record<string, number>>,
  commands: readonly string[],
): ConfigError[] {
  return Object.keys(repairs)
    .filter((name) => !commands.includes(name))
    .map((name) => {
      const tail = name.slice(name.lastIndexOf("::") + 2);
      const near = commands.includes(tail) ? tail : nearestName(name, commands);
      const fix =
        near === undefined
          ? `remove the entry (a step the stack no longer has needs no repair); its remote commands are ${commands.join(", ")}`
          : near in repairs
            ? `did you mean ${near}? It has an entry already: remove this one, and raise the generation of ${near} by 1 to repair that step`
            : `did you mean ${near}? Rename the entry to it`;
      return { path: `swarm:repairs.${name}`, message: `is not a remote command of this stack: ${fix}` };
    });
}

/** The known name `name` is a typo of (as config keys' did-you-mean decides), the closest first. */
function nearestName(name: string, known: readonly string[]): string | undefined {
  return known
    .map((k) => ({ k, distance: k.toLowerCase() === name.toLowerCase() ? 0 : typoDistance(k, name) }))
    .filter((c) => c.distance <= 2)
    .sort((a, b) => a.distance - b.distance)[0]?.k;
}

/** The public half of the example admin key in the repository's stack files, which are examples. */
const EXAMPLE_ADMIN_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIF6NX6jWXUNMpFM8Ffg3wvvMI/9ABsWk6Bt3gKyAdPGr";

/**
 * Values copied from the examples that are fine to render and preview but
 * would break a real deployment: documentation addresses (RFC 5737) as an
 * admin network or a host's address, and the example admin key on servers
 * this program creates.
 */
function placeholderFindings(hosts: readonly HostDraft[], admin: AdminDraft | undefined): ConfigError[] {
  const found: ConfigError[] = [];
  const onHetzner = hosts.some((h) => h.isHcloud);
  if (onHetzner && admin?.sshPublicKey?.split(/\s+/)[1] === EXAMPLE_ADMIN_KEY) {
    found.push({
      path: "swarm:admin.sshPublicKey",
      message:
        "is the example key from the repository's stack files: the Hetzner servers would trust it and not your key; put the .pub line of your admin key pair here, and its private half in pulumi config set --secret swarm:sshPrivateKey",
    });
  }
  const documentation = onHetzner
    ? [
        ...(admin?.sources ?? []).map((s) => ({
          ...s,
          range: overlappedRange(s.cidr, DOCUMENTATION_RANGES),
        })),
        ...(admin?.sources6 ?? []).map((s) => ({
          ...s,
          range: overlappedRange6(s.cidr, DOCUMENTATION_RANGES6),
        })),
      ]
    : [];
  for (const { range, ...source } of documentation) {
    if (range) {
      found.push({
        path: source.path,
        message: `${source.text} is in ${range.name}, which ${range.why}: no connection comes from it, so the Hetzner firewall would lock the admin out of the servers; list the public addresses you run pulumi from`,
      });
    }
  }
  for (const host of hosts) {
    const addresses = [
      { field: "address", text: host.existingAddress },
      { field: "ipv6Address", text: host.existingAddress6 },
    ];
    for (const { field, text } of addresses) {
      const range = text !== undefined ? documentationRange(text) : undefined;
      if (range) {
        found.push({
          path: `${host.path}.existing.${field}`,
          message: `${text} is in ${range.name}, which ${range.why}: no host answers there; write the address swarm reaches ${host.name ?? "the host"} at`,
        });
      }
    }
  }
  return found;
}

/** The documentation range (RFC 5737, RFC 3849) an IPv4 or IPv6 address is in, if any. */
function documentationRange(text: string): { readonly name: string; readonly why: string } | undefined {
  const four = parseAddress(text);
  if (four !== undefined) {
    return rangeOf(four, DOCUMENTATION_RANGES);
  }
  const six = parseAddress6(text);
  return six !== undefined
    ? overlappedRange6({ network: six, prefix: 128 }, DOCUMENTATION_RANGES6)
    : undefined;
}

/**
 * Namespaces a key of the stack may be in by mistake for `swarm:`: the
 * engine hands a program only its own namespace, so such a key would be
 * dropped without a word.
 */
function namespaceErrors(otherKeys: readonly string[], present: readonly string[]): ConfigError[] {
  const known = Object.keys(fleetSchema.shape);
  const errors: ConfigError[] = [];
  for (const key of otherKeys) {
    if (key.toLowerCase() === "swarm") {
      errors.push({
        path: key,
        message:
          "is not read: the engine takes config keys as namespace:key, each directly under config; write swarm:hosts, swarm:mesh and the others there instead of nesting them under swarm",
      });
      continue;
    }
    const match = /^([^:./]+)[:./](.+)$/.exec(key);
    if (!match) {
      continue;
    }
    const [, namespace, name] = match;
    const intended = known.find((k) => k.toLowerCase() === name.toLowerCase() || typoDistance(k, name) <= 2);
    const swarmish =
      namespace.toLowerCase() === "swarm" || typoDistance(namespace.toLowerCase(), "swarm") <= 1;
    if (!swarmish || (intended === undefined && namespace.toLowerCase() !== "swarm")) {
      continue;
    }
    const rename = `swarm:${intended ?? name}`;
    const merge =
      intended !== undefined && present.includes(intended) ? `, merged into the ${rename} already there` : "";
    errors.push({
      path: key,
      message: `is not in the swarm: namespace, so the program never reads it: rename it to ${rename}${merge}`,
    });
  }
  return errors;
}

/**
 * Private keys written in plain text in the stack: `sshPrivateKey` not
 * stored as a secret, or a private key pasted into any other value. Values
 * whose reader already called them a private key are not reported twice.
 */
function privateKeyErrors(
  raw: Record<string, unknown>,
  secretKeys: readonly string[] | undefined,
  found: readonly ConfigError[],
): ConfigError[] {
  const errors: ConfigError[] = [];
  const rotate =
    "and, as the key is now in the file's history, replace the key pair (the public half is swarm:admin.sshPublicKey)";
  const value = raw.sshPrivateKey;
  if (
    secretKeys !== undefined &&
    value !== undefined &&
    value !== null &&
    !secretKeys.includes("sshPrivateKey")
  ) {
    errors.push({
      path: "swarm:sshPrivateKey",
      message: `is written in plain text in the stack file, where everyone who can read the repository can use it: remove it with pulumi config rm swarm:sshPrivateKey and set it as a secret with pulumi config set --secret swarm:sshPrivateKey < path/to/private_key${typeof value === "string" && /PRIVATE KEY/.test(value) ? `, ${rotate}` : ""}`,
    });
  }
  const visit = (node: unknown, path: string): void => {
    if (typeof node === "string") {
      if (/PRIVATE KEY/.test(node) && !found.some((e) => e.path === path && /private key/.test(e.message))) {
        errors.push({
          path,
          message: `holds a private key in plain text: remove it (swarm needs no private key in its config except swarm:sshPrivateKey, set with pulumi config set --secret), ${rotate.replace(" (the public half is swarm:admin.sshPublicKey)", "")}`,
        });
      }
    } else if (Array.isArray(node)) {
      node.forEach((item, i) => visit(item, `${path}[${i}]`));
    } else if (typeof node === "object" && node !== null) {
      for (const [key, item] of Object.entries(node)) {
        visit(item, `${path}.${key}`);
      }
    }
  };
  for (const [key, item] of Object.entries(raw)) {
    if (key !== "sshPrivateKey") {
      visit(item, `swarm:${key}`);
    }
  }
  return errors;
}

function isMeshPath(path: string): boolean {
  return path.startsWith("swarm:hosts") || path.startsWith("swarm:mesh");
}

/**
 * Builds the typed config from the fields each section read, defaults
 * applied. Only called with drafts that passed validation, so every field
 * is set or defaulted.
 */
function assemble(
  hosts: readonly HostDraft[],
  mesh: MeshDraft,
  admin: AdminConfig | undefined,
  exports: readonly ExportDraft[],
  mounts: readonly MountDraft[],
  syncs: readonly SyncDraft[],
  health: HealthConfig,
  repairs: Readonly<Record<string, number>>,
): FleetConfig {
  return {
    health,
    repairs,
    hosts: hosts.map((h) => h.fields as HostConfig),
    mesh: (mesh.fields ?? {}) as MeshConfig,
    admin: admin ?? (adminSchema.parse({}) as AdminConfig),
    exports: exports.map((e) => e.fields as ExportConfig),
    mounts: mounts.map((m) => m.fields as MountConfig),
    syncs: syncs.map((s) => s.fields as SyncConfig),
  };
}

// ---------------------------------------------------------------- readers
//
// Each section has been read against its schema (types, required fields,
// defaults, limits, patterns, unknown keys); these add the checks of
// values a pattern cannot express, and drop a field they refuse.

/**
 * `hostKey`: the host's SSH host key, pinned on every connection. The
 * provider pins with the key's own algorithm (HostKeyAlgorithms = [type]), so
 * an `ssh-rsa` pin would ask for SHA-1 signatures, which OpenSSH 8.8+ refuses.
 */
function checkHostKey(
  r: Section<{ hostKey?: string }>,
  required: boolean,
  where: string,
): string | undefined {
  const read = `read it with ssh-keyscan -t ed25519 ${where}, check its fingerprint (ssh-keyscan ... | ssh-keygen -lf -) against ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the host's console, and paste the ssh-ed25519 AAAA... part`;
  const key = r.value.hostKey;
  if (!r.has("hostKey")) {
    if (required) {
      r.error(
        "hostKey",
        `is required: pin the host's SSH host key, so that no connection trusts whoever answers: ${read}`,
      );
    }
    return undefined;
  }
  if (key === undefined) {
    return undefined;
  }
  const problem = hostKeyProblem(key, read);
  if (problem !== undefined) {
    r.error("hostKey", problem);
    r.drop("hostKey");
    return undefined;
  }
  // The comment is not part of the key; keep the pin to what the provider compares.
  const [type, blob] = key.trim().split(/\s+/);
  r.value.hostKey = `${type} ${blob}`;
  return r.value.hostKey;
}

function hostKeyProblem(key: string, read: string): string | undefined {
  if (/PRIVATE KEY/.test(key)) {
    return `is a private key, which must never be in a stack file (remove it, and replace that key on the host: it is in the file's history); pin the public key: ${read}`;
  }
  const fields = key.trim().split(/\s+/);
  if (fields.length >= 3 && HOST_KEY_TYPES.includes(fields[1]) && !KEY_TYPES.includes(fields[0])) {
    return `starts with ${JSON.stringify(fields[0])}, the host name of an ssh-keyscan line: drop it and keep ${fields[1]} ${fields[2].slice(0, 12)}...`;
  }
  const problem = publicKeyProblem(key, `${read}`);
  if (problem !== undefined) {
    return problem;
  }
  if (!HOST_KEY_TYPES.includes(fields[0])) {
    return `is an ${fields[0]} key, which the SSH provider would verify with SHA-1 signatures that OpenSSH refuses: pin the host's Ed25519 key instead; ${read}`;
  }
  return undefined;
}

function readHost(item: Item<HostFields>, errors: ConfigError[]): HostDraft {
  const draft: HostDraft = {
    path: item.path,
    fields: {},
    isExisting: false,
    isHcloud: false,
    hasVolume: false,
    routes: [],
  };
  const r = item.section;
  if (!r) {
    return draft;
  }
  draft.fields = r.value;
  draft.name = r.value.name;
  if (r.has("hcloud") && r.has("existing")) {
    r.error(
      undefined,
      "sets both hcloud and existing: keep hcloud for a server this program creates, or existing for one it only configures",
    );
  } else if (!r.has("hcloud") && !r.has("existing")) {
    r.error(
      undefined,
      "needs hcloud (a Hetzner Cloud server this program creates) or existing (a host reached at an address)",
    );
  }
  const hcloud = r.sub("hcloud");
  if (hcloud) {
    draft.isHcloud = true;
    draft.loginUser = "root";
    draft.hasVolume = hcloud.has("volumeSize");
    draft.addressing = { hcloud: { ipv4: hcloud.value.ipv4 } };
    checkHostKey(hcloud, false, "the server's address");
    if (hcloud.value.serverType !== undefined && hcloud.value.location !== undefined) {
      draft.hcloud = hcloud.value as HcloudHostConfig;
    }
  }
  const existing = r.sub("existing");
  if (existing) {
    draft.isExisting = true;
    const { address, user, port, ipv6Address } = existing.value;
    const addressProblem = address === undefined ? undefined : hostAddressProblem(address);
    if (addressProblem !== undefined) {
      existing.error("address", addressProblem);
      existing.drop("address");
    }
    if (ipv6Address !== undefined) {
      const problem =
        address === undefined || addressProblem !== undefined
          ? undefined
          : address.includes(":")
            ? `goes only beside an IPv4 address, and address ${address} is IPv6 already: remove ipv6Address`
            : parseAddress(address) === undefined
              ? `goes only beside an IPv4 address, and address ${address} is a DNS name, which peers resolve to whatever its records say: give the name an AAAA record and remove ipv6Address, or write address as the host's IPv4 address`
              : !ipv6Address.includes(":")
                ? `${JSON.stringify(ipv6Address)} is not an IPv6 address: write the host's public or LAN IPv6 address, such as 2001:db8::10`
                : address6Problem(ipv6Address);
      if (problem !== undefined) {
        existing.error("ipv6Address", problem);
        existing.drop("ipv6Address");
      } else {
        draft.existingAddress6 = ipv6Address;
      }
    }
    if (address !== undefined && addressProblem === undefined) {
      draft.addressing = { existing: { address, ipv6Address: draft.existingAddress6 } };
    }
    const where = `${address !== undefined && addressProblem === undefined ? address : "ADDRESS"}${port !== undefined && port !== 22 ? ` -p ${port}` : ""}`;
    const hostKey = checkHostKey(existing, true, where);
    draft.existingPort = port ?? 22;
    draft.loginUser = user;
    if (address !== undefined && addressProblem === undefined && hostKey !== undefined) {
      draft.existingAddress = address;
      draft.existing = existing.value as ExistingHostConfig;
    }
  }
  const meshAddress = r.value.meshAddress;
  if (meshAddress !== undefined) {
    if (parseAddress(meshAddress) === undefined) {
      r.error(
        "meshAddress",
        `${JSON.stringify(meshAddress)} is not an IPv4 address: write one such as 10.8.0.2, or remove meshAddress to allocate one`,
      );
      r.drop("meshAddress");
    } else {
      draft.meshAddress = meshAddress;
    }
  }
  const meshAddress6 = r.value.meshAddress6;
  if (meshAddress6 !== undefined) {
    const parsed = parseAddress6(meshAddress6);
    if (parsed === undefined || formatAddress6(parsed) !== meshAddress6) {
      r.error(
        "meshAddress6",
        parsed === undefined
          ? `${JSON.stringify(meshAddress6)} is not an IPv6 address: write one inside mesh.ipv6Prefix such as fd31:a7c9:5e04:8::2, or remove meshAddress6 to allocate one`
          : `${meshAddress6} is not written as RFC 5952 prints it: write ${formatAddress6(parsed)}`,
      );
      r.drop("meshAddress6");
    } else {
      draft.meshAddress6 = meshAddress6;
    }
  }
  draft.wireguard = r.value.wireguard;
  draft.keyRotation = r.value.keyRotation;
  draft.routes = r.elements("routes").map((route) => ({
    text: route.value,
    cidr: readCidr(route.value, route.path, errors, { example: "192.168.10.0/24" }),
    path: route.path,
  }));
  return draft;
}

function readMesh(r: Section<MeshFields>, errors: ConfigError[]): MeshDraft {
  const draft: MeshDraft = { ...r.value, fields: r.value };
  if (draft.cidr !== undefined) {
    draft.parsed = readCidr(draft.cidr, r.at("cidr"), errors, {
      example: "10.8.0.0/24",
      maxPrefix: 30,
    });
    if (draft.parsed === undefined) {
      draft.cidr = undefined;
      r.drop("cidr");
    }
  }
  if (draft.ipv6Prefix !== undefined) {
    const problem = meshPrefix6Problem(draft.ipv6Prefix);
    if (problem === undefined) {
      const parsed = parsePrefixed6(draft.ipv6Prefix) as { address: bigint; prefix: number };
      draft.parsed6 = { network: parsed.address, prefix: parsed.prefix };
    } else {
      r.error("ipv6Prefix", problem);
      r.drop("ipv6Prefix");
      draft.ipv6Prefix = undefined;
      draft.badIpv6Prefix = true;
    }
  }
  draft.badTopology = draft.topology === undefined;
  draft.badHub = r.has("hub") && draft.hub === undefined;
  return draft;
}

/** One entry of `admin.sshSourceCidrs` that parsed, kept for the checks that need the whole fleet. */
interface SshSource {
  readonly text: string;
  readonly cidr: Cidr;
  readonly path: string;
}

/** An IPv6 entry of `admin.sshSourceCidrs`: it can overlap no IPv4 mesh or route, only special ranges. */
interface SshSource6 {
  readonly text: string;
  readonly cidr: Cidr6;
  readonly path: string;
}

interface AdminDraft {
  /** Present when the section is valid. */
  readonly config?: AdminConfig;
  /** The trimmed public key, when it is one. */
  readonly sshPublicKey?: string;
  readonly sources: readonly SshSource[];
  readonly sources6: readonly SshSource6[];
}

function readAdmin(r: Section<AdminFields>, hosts: readonly HostDraft[], errors: ConfigError[]): AdminDraft {
  const needsCidrs = hosts.some((h) => h.isHcloud);
  if (needsCidrs && !r.has("sshPublicKey")) {
    r.error(
      "sshPublicKey",
      "is required: paste the admin's OpenSSH public key line (the contents of id_ed25519.pub)",
    );
  }
  const key = r.has("sshPublicKey") ? r.value.sshPublicKey : undefined;
  const keyProblem = key !== undefined ? publicKeyProblem(key) : undefined;
  if (keyProblem) {
    r.error("sshPublicKey", keyProblem);
  }
  if (needsCidrs && !r.has("sshSourceCidrs")) {
    r.error(
      "sshSourceCidrs",
      "is required: list the CIDRs the admin connects from (e.g. 203.0.113.7/32): the Hetzner firewall allows SSH only from them",
    );
  }
  const sources: SshSource[] = [];
  const sources6: SshSource6[] = [];
  for (const { value: item, path } of r.elements("sshSourceCidrs")) {
    if (item.includes(":")) {
      const six = readSshSource6(item, path, needsCidrs, errors);
      if (six !== undefined) {
        sources6.push(six);
      }
      continue;
    }
    if (parseAddress(item) !== undefined) {
      errors.push({
        path,
        message: `${JSON.stringify(item)} is an address, not a CIDR: did you mean ${item}/32?`,
      });
      continue;
    }
    const cidr = readCidr(item, path, errors, {
      example: "203.0.113.7/32 or 2001:db8:1234::/48",
      family: "IPv4 or IPv6",
    });
    if (cidr === undefined) {
      continue;
    }
    const problem = sshSourceProblem(item, cidr, needsCidrs);
    if (problem !== undefined) {
      errors.push({ path, message: problem });
      continue;
    }
    sources.push({ text: item, cidr, path });
  }
  if (needsCidrs && Array.isArray(r.raw.sshSourceCidrs) && r.raw.sshSourceCidrs.length === 0) {
    r.error(
      "sshSourceCidrs",
      "is empty, so the Hetzner firewall would block the SSH this program provisions hosts over: add the admin's CIDR",
    );
  }
  const opened = unionSize(sources.map((s) => s.cidr));
  if (opened >= WIDEST_UNION) {
    r.error(
      "sshSourceCidrs",
      `together open SSH to ${describeSize(opened)}, half the internet or more (0.0.0.0/1 and 128.0.0.0/1 are all of it): list only the networks the admin connects from, e.g. 203.0.113.7/32`,
    );
  }
  const sshPublicKey = key !== undefined && keyProblem === undefined ? key.trim() : undefined;
  const wrong = errors.some((e) => e.path === r.path || e.path.startsWith(`${r.path}.`));
  if (wrong || r.value.sshPublicKey === undefined) {
    return { sshPublicKey, sources, sources6 };
  }
  const config = { ...r.value, sshPublicKey: r.value.sshPublicKey.trim() } as AdminConfig;
  return { config, sshPublicKey, sources, sources6 };
}

/**
 * Reads an IPv6 SSH source: a network address and prefix, no wider than a provider's /32, in no
 * special-purpose range (nor, behind the Hetzner firewall, the unique local one), and written as
 * RFC 5952 prints it, the form Hetzner's API stores (any other would show as a change on every run).
 */
function readSshSource6(
  text: string,
  path: string,
  firewalled: boolean,
  errors: ConfigError[],
): SshSource6 | undefined {
  const fail = (message: string) => {
    errors.push({ path, message });
    return undefined;
  };
  const bare = parseAddress6(text);
  if (bare !== undefined) {
    return fail(
      `${JSON.stringify(text)} is an address, not a CIDR: did you mean ${formatAddress6(bare)}/128?`,
    );
  }
  const parsed = parsePrefixed6(text);
  if (parsed === undefined) {
    return fail(
      `${JSON.stringify(text)} is not an IPv6 CIDR: write a network address and prefix such as 2001:db8:1234::/48`,
    );
  }
  const cidr: Cidr6 = { network: networkOf6(parsed.address, parsed.prefix), prefix: parsed.prefix };
  if (cidr.network !== parsed.address) {
    return fail(`${text} has host bits set: did you mean ${formatCidr6(cidr)}?`);
  }
  if (cidr.prefix === 0) {
    return fail(
      `${text} opens SSH to the whole IPv6 internet: list only the networks the admin connects from, e.g. 2001:db8:1234::/48`,
    );
  }
  if (cidr.prefix < WIDEST_PREFIX6) {
    return fail(
      `${text} opens SSH to a large part of the IPv6 internet (a provider is allocated a /${WIDEST_PREFIX6}, a site a /48 or a /56): list only the networks the admin connects from, e.g. 2001:db8:1234::/48`,
    );
  }
  const special = overlappedRange6(cidr, NON_UNICAST_RANGES6);
  if (special) {
    return fail(sshFromSpecialRange(text, special));
  }
  const inside = PRIVATE_RANGES6.find((p) => p.cidr.prefix <= cidr.prefix && overlaps6(p.cidr, cidr));
  if (firewalled && inside) {
    return fail(sshFromPrivateRange(text, inside, ""));
  }
  const canonical = formatCidr6(cidr);
  if (canonical !== text) {
    return fail(
      `${text} is not written as Hetzner stores it, so every run would show the firewall as changed: write ${canonical}`,
    );
  }
  return { text, cidr, path };
}

/**
 * Why SSH must not be allowed from `cidr`: it opens SSH to a large part of
 * the internet, or it can never be where the admin connects from, so a
 * firewall that allows only it locks the admin out.
 */
function sshSourceProblem(text: string, cidr: Cidr, firewalled: boolean): string | undefined {
  if (cidr.prefix === 0) {
    return `${text} opens SSH to the whole internet: list only the addresses the admin connects from, e.g. 203.0.113.7/32`;
  }
  if (cidr.prefix < WIDEST_PREFIX) {
    return `${text} opens SSH to ${describeSize(blockSize(cidr.prefix))}, a large part of the internet (no admin network is wider than a /${WIDEST_PREFIX}): list only the addresses the admin connects from, e.g. 203.0.113.7/32`;
  }
  const special = overlappedRange(cidr, NON_UNICAST_RANGES);
  if (special) {
    return sshFromSpecialRange(text, special);
  }
  const inside = PRIVATE_RANGES.find((p) => p.cidr.prefix <= cidr.prefix && overlaps(p.cidr, cidr));
  if (firewalled && inside) {
    return sshFromPrivateRange(text, inside, " (the one your NAT or VPN exit has)");
  }
  return undefined;
}

/** An admin SSH source that overlaps a range no connection comes from, of either family. */
function sshFromSpecialRange(text: string, special: Special<unknown>): string {
  return `${text} overlaps ${special.name}, which ${special.why}: no SSH connection comes from there; list the public addresses the admin connects from`;
}

/** An admin SSH source inside a private range, which the Hetzner firewall never sees. */
function sshFromPrivateRange(text: string, inside: Special<unknown>, hint: string): string {
  return `${text} is inside ${inside.name}, which ${inside.why}: the Hetzner firewall filters the servers' public addresses, which see the admin's public address, never a private one; list that public address${hint}`;
}

function readExport(item: Item<ExportFields>, errors: ConfigError[]): ExportDraft {
  const draft: ExportDraft = { path: item.path, fields: {}, replicas: [] };
  const r = item.section;
  if (!r) {
    return draft;
  }
  const v = r.value;
  draft.fields = v;
  draft.name = v.name;
  draft.host = v.host;
  const pool = r.sub("pool");
  if (pool) {
    draft.pool = readPool(pool, errors, draft.host);
  }
  draft.dataset = v.dataset;
  pushIf(errors, r.at("dataset"), datasetOutsidePool(draft.dataset, draft.pool?.name));
  draft.mountpoint = checkPath(r, "mountpoint", {
    example: "/tank/meshfs/state",
    system: true,
    lasting:
      "the dataset would be hidden when the directory is mounted afresh at boot, and its clients would see an empty export",
  });
  v.properties = readProperties(r, errors);
  const snapshots = r.sub("snapshots");
  if (snapshots) {
    errors.push(...snapshotProblems(snapshots));
  }
  draft.clients = r.elements("clients").map((client) => ({ name: client.value, path: client.path }));
  draft.user = v.user;
  draft.replicas = r.items("replicas").map((replica) => readReplica(replica, errors));
  return draft;
}

function readReplica(item: Item<ReplicaFields>, errors: ConfigError[]): ReplicaDraft {
  const draft: ReplicaDraft = { path: item.path };
  const r = item.section;
  if (!r) {
    return draft;
  }
  draft.host = r.value.host;
  const pool = r.sub("pool");
  if (pool) {
    draft.pool = readPool(pool, errors, draft.host);
  }
  draft.dataset = r.value.dataset;
  const dataset = draft.dataset;
  const poolName = draft.pool?.name;
  pushIf(errors, r.at("dataset"), datasetOutsidePool(dataset, poolName));
  if (dataset !== undefined && poolName !== undefined && dataset === poolName) {
    r.error(
      "dataset",
      `is the pool's root dataset: a replica is received into a dataset of its own, e.g. ${poolName}/meshfs`,
    );
  }
  const retention = r.sub("retention");
  const tiers = retention?.value;
  if (retention && tiers && RETENTION_TIERS.every((t) => tiers[t] === 0)) {
    errors.push({
      path: retention.path,
      message: `keeps no snapshot: every tier is 0; keep at least one tier, e.g. retention: ${formatRetention(only("hourly", 48))}, or remove retention to keep what the export keeps`,
    });
  }
  const { interval, maxLag } = r.value;
  if (interval !== undefined && maxLag !== undefined && maxLag <= interval) {
    r.error(
      "maxLag",
      `${formatDuration(maxLag)} is not longer than the interval ${formatDuration(interval)}: the replica is always up to one interval behind, so the gate would fail between runs; give at least two intervals, e.g. maxLag: ${formatDuration(interval * 4)}`,
    );
  }
  return draft;
}

/** Why a dataset cannot live in a pool of that name, or undefined. */
function datasetOutsidePool(dataset: string | undefined, pool: string | undefined): string | undefined {
  if (dataset === undefined || pool === undefined || dataset === pool || dataset.startsWith(`${pool}/`)) {
    return undefined;
  }
  return `${dataset} is not inside pool ${pool}: start it with ${pool}/, e.g. ${pool}/${dataset.split("/").slice(1).join("/") || "meshfs"}`;
}

function readPool(
  pool: Section<PoolFields>,
  errors: ConfigError[],
  host: string | undefined,
): Partial<PoolConfig> {
  const devices: string[] = [];
  for (const { value: device, path } of pool.elements("devices")) {
    const problem = device === "volume" ? undefined : absolutePathProblem(device, "/dev/sdb");
    if (problem) {
      errors.push({ path, message: `${problem}, or write volume for the host's Hetzner volume` });
    } else {
      devices.push(device);
    }
  }
  devices.forEach((device, i) => {
    if (devices.indexOf(device) !== i) {
      pool.error("devices", `lists ${device} twice: list each device once`);
    }
  });
  const { fileSize } = pool.value;
  if (fileSize !== undefined && devices.length === 0) {
    pool.error(
      "fileSize",
      "creates missing device files, but devices is empty: list the file paths, or remove fileSize",
    );
  }
  if (fileSize !== undefined && devices.includes("volume")) {
    pool.error(
      "fileSize",
      "creates sparse files, but volume is a block device: remove fileSize, or list file paths instead of volume",
    );
  }
  // A removed key, explained: "unknown key" would not tell an older stack what to do.
  const implementation = pool.raw.implementation;
  if (implementation !== undefined) {
    pool.error("implementation", implementationRemoved(implementation, host));
  }
  return {
    name: pool.value.name,
    devices,
    ...(fileSize !== undefined ? { fileSize } : {}),
    scrub: pool.value.scrub,
  };
}

/**
 * Why `pool.implementation` is refused: swarm runs OpenZFS only since the FUSE
 * port was dropped, so the key has nothing left to choose, whatever its value.
 */
function implementationRemoved(value: unknown, host: string | undefined): string {
  return (
    `is no longer a setting (got ${describe(value)}): remove implementation. swarm runs OpenZFS only, so ` +
    `${host ?? "the export host"} needs the OpenZFS kernel module (Debian: zfs-dkms and the kernel's ` +
    "headers); an existing pool is imported as it is"
  );
}

/**
 * The shortest time each tier's period lasts (a month: the longest, as what
 * matters is whether one period can hold two snapshots). `frequent` has no
 * period.
 */
const TIER_PERIODS: Readonly<Record<Exclude<RetentionTier, "frequent">, Seconds>> = {
  hourly: 3600,
  daily: 86400,
  weekly: 7 * 86400,
  monthly: 31 * 86400,
};

const TIER_UNITS: Readonly<Record<RetentionTier, { name: string; one: string; many: string }>> = {
  frequent: { name: "run", one: "a run", many: "runs" },
  hourly: { name: "hour", one: "an hour", many: "hours" },
  daily: { name: "day", one: "a day", many: "days" },
  weekly: { name: "week", one: "a week", many: "weeks" },
  monthly: { name: "month", one: "a month", many: "months" },
};

/** `{ hourly: 48, daily: 30 }`: the tiers that keep something, as a stack file writes them. */
function formatRetention(retention: Retention): string {
  return `{ ${retentionArgs(retention)
    .map((arg) => arg.replace("=", ": "))
    .join(", ")} }`;
}

/** The tier whose period is `interval` (`hourly` for 1h, `daily` for 1d), else `frequent`. */
function tierOfInterval(interval: Seconds | undefined): RetentionTier {
  return (Object.keys(TIER_PERIODS) as RetentionTier[]).find((t) => tierPeriod(t) === interval) ?? "frequent";
}

function tierPeriod(tier: RetentionTier): Seconds | undefined {
  return tier === "frequent" ? undefined : TIER_PERIODS[tier];
}

/** A retention of one tier. */
function only(tier: RetentionTier, n: number): Retention {
  return { ...(Object.fromEntries(RETENTION_TIERS.map((t) => [t, 0])) as Retention), [tier]: n };
}

/**
 * `retention` with every tier shorter than `interval` folded into the tier of
 * the interval (`tierOfInterval`): with every snapshot alone in its period,
 * such a tier keeps the N newest, and so does the replacement.
 */
function retentionForInterval(retention: Retention, interval: Seconds): Retention {
  const target = tierOfInterval(interval);
  const folded: Record<RetentionTier, number> = { ...retention };
  for (const t of RETENTION_TIERS) {
    const period = tierPeriod(t);
    if (period !== undefined && period < interval) {
      folded[target] = Math.max(folded[target], folded[t]);
      folded[t] = 0;
    }
  }
  return folded;
}

/**
 * What is wrong with an export's `snapshots`: the removed `keep`, with the
 * retention that keeps the same snapshots; a retention that keeps nothing;
 * a tier shorter than the interval, with the retention that says what it
 * does. Each fix leads to a retention none of these refuses.
 */
function snapshotProblems(s: Section<ExportFields["snapshots"]>): ConfigError[] {
  const problems: ConfigError[] = [];
  const interval = s.value.interval;
  const written = s.has("retention");
  const keep = s.raw.keep;
  if (keep !== undefined && keep !== null) {
    const n = typeof keep === "number" || typeof keep === "string" ? Number(keep) : NaN;
    const same = Number.isInteger(n) && n >= 1;
    const replacement = formatRetention(only(tierOfInterval(interval), same ? n : 48));
    s.error(
      "keep",
      written
        ? `is no longer a setting, and retention (written too) decides which snapshots stay: remove keep`
        : same
          ? `is no longer a setting: replace keep: ${n} with retention: ${replacement}, which keeps the same ${n} snapshots`
          : `is no longer a setting (got ${describe(keep)}): remove it and set retention, e.g. retention: ${replacement}`,
    );
    if (!written) {
      // The default retention stands in for keep until the stack is fixed: it is not the user's to correct.
      return problems;
    }
  }
  const section = s.sub("retention");
  const tiers = section?.value;
  // A wrong or unknown tier is reported already, and may be the one meant to keep something.
  const known = (key: string) => (RETENTION_TIERS as readonly string[]).includes(key);
  if (
    !section ||
    !tiers ||
    RETENTION_TIERS.some((t) => tiers[t] === undefined) ||
    !Object.keys(section.raw).every(known)
  ) {
    return problems;
  }
  const retention = tiers as Retention;
  if (RETENTION_TIERS.every((t) => retention[t] === 0)) {
    const example = formatRetention(only(tierOfInterval(interval ?? 3600), 48));
    problems.push({
      path: section.path,
      message: `keeps no snapshot: every tier is 0, and each run would leave only the snapshot it took; keep at least one tier, e.g. retention: ${example}`,
    });
    return problems;
  }
  if (interval === undefined) {
    return problems;
  }
  const fixed = formatRetention(retentionForInterval(retention, interval));
  for (const t of RETENTION_TIERS) {
    const n = retention[t];
    const period = tierPeriod(t);
    if (n > 0 && period !== undefined && period < interval) {
      const unit = TIER_UNITS[t];
      problems.push({
        path: written ? `${section.path}.${t}` : section.path,
        message:
          `${written ? "" : `is { ${t}: ${n} } by default; `}${t} is shorter than the interval ` +
          `${formatDuration(interval)}: every snapshot has ${unit.one} of its own, so ${t}: ${n} would keep the ${n} ` +
          `newest whatever their age (${formatDuration(n * interval)} of snapshots, not ${n} ${unit.many}); write ` +
          `retention: ${fixed}, which keeps the same snapshots, or snapshot at least every ${unit.name} (interval: ${formatDuration(period)})`,
      });
    }
  }
  return problems;
}

function readProperties(r: Section<ExportFields>, errors: ConfigError[]): Record<string, string> {
  const merged: Record<string, string> = { ...DEFAULT_ZFS_PROPERTIES };
  const props = r.raw.properties;
  const path = r.at("properties");
  if (props !== undefined && props !== null) {
    if (typeof props !== "object" || Array.isArray(props)) {
      errors.push({ path, message: `must be an object (a YAML mapping), got ${describe(props)}` });
      return merged;
    }
    for (const [name, value] of Object.entries(props)) {
      const at = `${path}.${name}`;
      if (!ZFS_PROPERTY.test(name)) {
        errors.push({
          path: at,
          message: `${JSON.stringify(name)} is not a ZFS property name: use a native property such as recordsize, or a user property such as org.example:backup`,
        });
        continue;
      }
      if (name === "mountpoint") {
        errors.push({
          path: at,
          message:
            "is set by the export itself: use swarm:exports[].mountpoint and remove it from properties",
        });
        continue;
      }
      if (name === "canmount") {
        errors.push({
          path: at,
          message: "is set by the export itself (an export is always mounted): remove it from properties",
        });
        continue;
      }
      const text = typeof value === "number" && Number.isFinite(value) ? String(value) : value;
      if (typeof text !== "string" || !ZFS_VALUE.test(text)) {
        errors.push({
          path: at,
          message: `must be a single word such as lz4, off or 100G (no spaces or quotes), got ${describe(value)}`,
        });
        continue;
      }
      merged[name] = text;
    }
  }
  return Object.fromEntries(Object.entries(merged).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function readMount(item: Item<MountFields>): MountDraft {
  const draft: MountDraft = { path: item.path, fields: {} };
  const r = item.section;
  if (!r) {
    return draft;
  }
  draft.fields = r.value;
  draft.host = r.value.host;
  draft.export = r.value.export;
  draft.mountPath = checkPath(r, "path", { example: "/mnt/meshfs", system: true });
  const rawPath = r.raw.path;
  if (draft.mountPath === undefined && typeof rawPath === "string" && rawPath.startsWith("/")) {
    draft.refusedPath = rawPath;
  }
  draft.idleTimeout = r.value.idleTimeout;
  // A wrong owner stays unset rather than defaulting, so the sync-user check does not compare against a guess.
  draft.owner = r.value.owner;
  return draft;
}

function readSync(item: Item<SyncFields>): SyncDraft {
  const draft: SyncDraft = { path: item.path, fields: {} };
  const r = item.section;
  if (!r) {
    return draft;
  }
  draft.fields = r.value;
  draft.host = r.value.host;
  draft.name = r.value.name;
  draft.local = checkPath(r, "local", {
    example: "/home/ai-streamer/wiki",
    system: true,
    lasting: "the sync would then delete the same files on every replica",
  });
  const remote = r.sub("remote");
  if (remote) {
    const mountPath = checkPath(remote, "mountPath", { example: "/mnt/meshfs/wiki" });
    const { export: exportName, path: relative } = remote.value;
    const hasMountPath = remote.has("mountPath");
    const hasExport = remote.has("export");
    if (hasMountPath && hasExport) {
      remote.error(undefined, "sets both mountPath and export: keep exactly one of them");
    } else if (!hasMountPath && !hasExport) {
      remote.error(
        undefined,
        "needs mountPath (a path inside a swarm:mounts path on this host) or export (reached with unison's ssh:// mode)",
      );
    }
    if (remote.has("path") && !hasExport) {
      remote.error("path", "only applies with remote.export: remove it, or set remote.export");
    }
    if (relative !== undefined) {
      const problem = relativePathProblem(relative);
      if (problem) {
        remote.error("path", problem);
      }
    }
    if (hasMountPath && !hasExport && mountPath !== undefined) {
      draft.remote = { mountPath };
    } else if (hasExport && !hasMountPath && exportName !== undefined) {
      draft.remote = { export: exportName, ...(relative !== undefined ? { path: relative } : {}) };
    }
  }
  draft.interval = r.value.interval;
  draft.timeout = r.value.timeout;
  draft.user = r.value.user;
  return draft;
}

// ---------------------------------------------------------------- cross checks

/** What the cross checks need to know about hosts and the mesh. */
class FleetIndex {
  readonly byName = new Map<string, HostDraft>();
  /**
   * Every host has a usable name. When one does not, references to it would
   * be reported as unknown hosts too: noise on top of the real error.
   */
  readonly complete: boolean;

  constructor(
    readonly hosts: readonly HostDraft[],
    readonly mesh: MeshDraft,
  ) {
    for (const host of hosts) {
      if (host.name !== undefined && !this.byName.has(host.name)) {
        this.byName.set(host.name, host);
      }
    }
    this.complete = hosts.length > 0 && hosts.every((h) => h.name !== undefined);
  }

  has(name: string | undefined): name is string {
    return name !== undefined && this.byName.has(name);
  }

  /** Undefined when the host exists (or the host list is too broken to tell), else a message naming the choices. */
  unknownHost(name: string): string | undefined {
    if (this.byName.has(name) || !this.complete) {
      return undefined;
    }
    const names = [...this.byName.keys()];
    return names.length === 0
      ? `${JSON.stringify(name)} is not a host: declare it in swarm:hosts`
      : `${JSON.stringify(name)} is not a host: use one of ${names.join(", ")}, or declare it in swarm:hosts`;
  }

  /**
   * Whether `a` and `b` reach each other over the mesh: a tunnel of their own (a full mesh, or one
   * of them is the hub), or two spokes through the hub when it routes between them (hubRouting).
   */
  adjacent(a: string, b: string): boolean {
    if (this.mesh.topology !== "hub" || !this.has(this.mesh.hub) || this.mesh.hubRouting !== false) {
      return true;
    }
    return a === this.mesh.hub || b === this.mesh.hub;
  }
}

function checkHosts(fleet: FleetIndex, errors: ConfigError[]): void {
  const firstByName = new Map<string, HostDraft>();
  for (const host of fleet.hosts) {
    if (host.name === undefined) {
      continue;
    }
    const first = firstByName.get(host.name);
    if (first) {
      errors.push({
        path: `${host.path}.name`,
        message: `${host.name} is already the name of ${first.path}: host names must be unique, rename one of them`,
      });
    } else {
      firstByName.set(host.name, host);
    }
  }
  const firstAt = new Map<string, HostDraft>();
  for (const host of fleet.hosts) {
    if (host.existingAddress === undefined || host.existingPort === undefined) {
      continue;
    }
    const key = `${host.existingAddress.toLowerCase()}:${host.existingPort}`;
    const first = firstAt.get(key);
    if (first) {
      errors.push({
        path: `${host.path}.existing.address`,
        message: `${host.existingAddress} port ${host.existingPort} is already where ${first.path}${first.name ? ` (${first.name})` : ""} is reached: swarm would configure one machine as both hosts; declare each machine once, or give each host the address (or, behind a NAT that forwards one port per host, the SSH port) it is reached at`,
      });
    } else {
      firstAt.set(key, host);
    }
  }
  // Every peer dials an IPv6 endpoint at the same listen port: two hosts at one IPv6 address are one machine.
  const firstAt6 = new Map<bigint, { readonly host: HostDraft; readonly field: string }>();
  for (const host of fleet.hosts) {
    for (const [field, text] of [
      ["address", host.existingAddress],
      ["ipv6Address", host.existingAddress6],
    ] as const) {
      const address = text === undefined ? undefined : parseAddress6(text);
      if (address === undefined) {
        continue;
      }
      const first = firstAt6.get(address);
      // Two `address`es are the check above's, which lets hosts behind one NAT differ by SSH port.
      if (first && first.host !== host && (field !== "address" || first.field !== "address")) {
        errors.push({
          path: `${host.path}.existing.${field}`,
          message: `${text} is already where ${first.host.path}${first.host.name ? ` (${first.host.name})` : ""} is reached (existing.${first.field}): swarm would configure one machine as both hosts; declare each machine once, or give each host its own IPv6 address`,
        });
      } else if (!first) {
        firstAt6.set(address, { host, field });
      }
    }
  }
}

function checkMesh(fleet: FleetIndex, sources: readonly SshSource[], errors: ConfigError[]): void {
  const { mesh, hosts } = fleet;
  const onHetzner = hosts.some((h) => h.isHcloud);
  if (mesh.badTopology) {
    // The topology error says it all; hub checks would only guess.
  } else if (mesh.topology === "hub" && mesh.hub === undefined && !mesh.badHub) {
    errors.push({
      path: "swarm:mesh.hub",
      message: "is required when topology is hub: name the host every other host peers with",
    });
  }
  if (mesh.hub !== undefined && !mesh.badTopology) {
    if (mesh.topology !== "hub") {
      errors.push({
        path: "swarm:mesh.hub",
        message: "only applies with topology hub: set mesh.topology to hub, or remove hub",
      });
    }
    const unknown = fleet.unknownHost(mesh.hub);
    if (unknown) {
      errors.push({ path: "swarm:mesh.hub", message: unknown });
    }
  }

  const meshProblem =
    mesh.parsed !== undefined ? tunnelledBlockProblem(mesh.parsed, "mesh", onHetzner, sources) : undefined;
  if (meshProblem !== undefined) {
    errors.push({
      path: "swarm:mesh.cidr",
      message: `${mesh.cidr ?? ""} ${meshProblem}; use a private block such as ${freeMeshBlock(hosts, sources)}`,
    });
  }
  const cidr = meshProblem === undefined ? mesh.parsed : undefined;
  if (cidr !== undefined) {
    const { first, last } = hostRange(cidr);
    const usable = last - first + 1;
    if (hosts.length > usable) {
      const prefix = prefixFor(hosts.length);
      const larger = formatCidr({ network: cidr.network - (cidr.network % blockSize(prefix)), prefix });
      errors.push({
        path: "swarm:mesh.cidr",
        message: `${formatCidr(cidr)} has ${usable} usable addresses but there are ${hosts.length} hosts: use a larger block such as ${larger}`,
      });
    }
    const takenBy = new Map<number, HostDraft>();
    for (const host of hosts) {
      if (host.meshAddress === undefined) {
        continue;
      }
      const address = parseAddress(host.meshAddress) as number;
      const path = `${host.path}.meshAddress`;
      const range = `${formatAddress(first)}–${formatAddress(last)}`;
      if (!contains(cidr, address)) {
        errors.push({
          path,
          message: `${host.meshAddress} is outside the mesh ${formatCidr(cidr)}: pick an address in ${range}, or remove meshAddress to allocate one`,
        });
        continue;
      }
      if (address === cidr.network || address === broadcast(cidr)) {
        const which = address === cidr.network ? "network" : "broadcast";
        errors.push({
          path,
          message: `${host.meshAddress} is the ${which} address of ${formatCidr(cidr)}: pick an address in ${range}, or remove meshAddress to allocate one`,
        });
        continue;
      }
      const owner = takenBy.get(address);
      if (owner) {
        errors.push({
          path,
          message: `${host.meshAddress} is already used by ${owner.path}${owner.name ? ` (${owner.name})` : ""}: pick a free address in ${formatCidr(cidr)}, or remove meshAddress to allocate one`,
        });
        continue;
      }
      takenBy.set(address, host);
    }
  }

  // Routes: every peer's AllowedIPs must be disjoint from the mesh and from every other route.
  const routes = hosts.flatMap((host) =>
    host.routes.flatMap((route) => {
      if (route.cidr === undefined) {
        return [];
      }
      const problem = tunnelledBlockProblem(
        route.cidr,
        `route to ${host.name ?? "this host"}`,
        onHetzner,
        sources,
      );
      if (problem !== undefined) {
        errors.push({
          path: route.path,
          message: `${route.text} ${problem}; route only the networks behind ${host.name ?? "this host"}`,
        });
        return [];
      }
      return [{ ...route, host, cidr: route.cidr }];
    }),
  );
  routes.forEach((route, i) => {
    if (cidr !== undefined && overlaps(route.cidr, cidr)) {
      errors.push({
        path: route.path,
        message: `${route.text} overlaps the mesh ${formatCidr(cidr)}: peers would send mesh traffic for ${sharedBlock(route.text, formatCidr(cidr))} to ${route.host.name ?? "this host"} (cryptokey routing collision); route only networks outside the mesh`,
      });
    }
    for (const earlier of routes.slice(0, i)) {
      if (overlaps(route.cidr, earlier.cidr)) {
        const sameHost = earlier.host === route.host;
        errors.push({
          path: route.path,
          message: sameHost
            ? `${route.text} overlaps ${earlier.text} (${earlier.path}) on the same host: merge them into one route, or remove one`
            : `${route.text} overlaps ${earlier.text}, routed to ${earlier.host.name ?? earlier.host.path} (${earlier.path}): WireGuard would send ${sharedBlock(route.text, earlier.text)} to only one of the two peers (cryptokey routing collision); make the routes disjoint`,
        });
      }
    }
  });

  // An endpoint inside the tunnel would be routed into the tunnel it is meant to carry.
  for (const host of hosts) {
    const address = host.existingAddress !== undefined ? parseAddress(host.existingAddress) : undefined;
    if (address === undefined) {
      continue;
    }
    const path = `${host.path}.existing.address`;
    if (cidr !== undefined && contains(cidr, address)) {
      errors.push({
        path,
        message: `${host.existingAddress} is inside the mesh ${formatCidr(cidr)}: peers would route this host's WireGuard endpoint into the tunnel itself; use its public or LAN address`,
      });
      continue;
    }
    const route = routes.find((r) => contains(r.cidr, address));
    if (route) {
      errors.push({
        path,
        message: `${host.existingAddress} is inside ${route.text}, routed through the mesh to ${route.host.name ?? route.host.path} (${route.path}): peers would send this host's WireGuard endpoint into the tunnel; use an address outside every route, or narrow the route`,
      });
    }
  }
}

/** The unique local block (RFC 4193): mesh addresses must never be routed anywhere else. */
const ULA = { network: 0xfdn << 120n, prefix: 8 } as const;

/**
 * What is wrong with `text` as `mesh.ipv6Prefix`, with the fix; undefined when it is a unique local
 * /64 written as RFC 5952 prints it. A /64 is one IPv6 link, which is what the mesh is, and leaves
 * 64-bit interface identifiers for hashed addresses; a wider prefix would be spent on one interface
 * and, under hub routing, sent whole into every spoke's tunnel.
 */
export function meshPrefix6Problem(text: string): string | undefined {
  const parsed = parsePrefixed6(text);
  if (parsed === undefined) {
    return `${JSON.stringify(text)} is not an IPv6 prefix: write a unique local /64 such as ${suggestMeshPrefix6(text)}`;
  }
  const network = networkOf6(parsed.address, parsed.prefix);
  if (!overlaps6({ network, prefix: parsed.prefix }, ULA) || parsed.prefix < ULA.prefix) {
    return `${text} is not a unique local prefix (fd00::/8): mesh addresses must never be routed on the Internet; use a /64 such as ${suggestMeshPrefix6(text)}`;
  }
  if (parsed.prefix !== 64) {
    return `${text} is a /${parsed.prefix}: the mesh is one IPv6 link, a /64; use ${formatCidr6({ network: networkOf6(parsed.address, 64), prefix: 64 })}`;
  }
  const canonical = formatCidr6({ network, prefix: 64 });
  if (canonical !== text) {
    return `${text} is not written as RFC 5952 prints the network: write ${canonical}`;
  }
  return undefined;
}

/**
 * A unique local /64 for `seed`: RFC 4193 wants the 40-bit Global ID pseudo-random, so it comes from
 * a hash of what was written (the same text always gets the same suggestion), subnet 0.
 */
export function suggestMeshPrefix6(seed: string): string {
  const id = BigInt(`0x${createHash("sha256").update(seed).digest("hex").slice(0, 10)}`);
  return formatCidr6({ network: (ULA.network | (id << 80n)) as bigint, prefix: 64 });
}

/**
 * The IPv6 mesh addresses: set only with `mesh.ipv6Prefix`, inside it, never interface identifier
 * 0 (the subnet-router anycast address), one per host; no host's public address inside the prefix.
 */
function checkMesh6(fleet: FleetIndex, errors: ConfigError[]): void {
  const { mesh, hosts } = fleet;
  const prefix = mesh.parsed6;
  const takenBy = new Map<bigint, HostDraft>();
  for (const host of hosts) {
    if (host.meshAddress6 === undefined) {
      continue;
    }
    const path = `${host.path}.meshAddress6`;
    if (prefix === undefined) {
      if (!mesh.badIpv6Prefix) {
        const own = formatCidr6({
          network: networkOf6(parseAddress6(host.meshAddress6) as bigint, 64),
          prefix: 64,
        });
        errors.push({
          path,
          message:
            meshPrefix6Problem(own) === undefined
              ? `is set but mesh.ipv6Prefix is not: set mesh.ipv6Prefix to ${own}, or remove meshAddress6`
              : `is set but mesh.ipv6Prefix is not: set mesh.ipv6Prefix to a unique local /64 such as ${suggestMeshPrefix6(mesh.cidr ?? "swarm")} and pick meshAddress6 inside it, or remove meshAddress6`,
        });
      }
      continue;
    }
    const address = parseAddress6(host.meshAddress6) as bigint;
    const where = formatCidr6(prefix);
    if (networkOf6(address, 64) !== prefix.network) {
      errors.push({
        path,
        message: `${host.meshAddress6} is outside mesh.ipv6Prefix ${where}: pick an address in ${where}, or remove meshAddress6 to allocate one`,
      });
      continue;
    }
    if (address === prefix.network) {
      errors.push({
        path,
        message: `${host.meshAddress6} is the subnet-router anycast address of ${where} (interface identifier 0): pick another address in ${where}, or remove meshAddress6 to allocate one`,
      });
      continue;
    }
    const owner = takenBy.get(address);
    if (owner) {
      errors.push({
        path,
        message: `${host.meshAddress6} is already used by ${owner.path}${owner.name ? ` (${owner.name})` : ""}: pick a free address in ${where}, or remove meshAddress6 to allocate one`,
      });
      continue;
    }
    takenBy.set(address, host);
  }
  if (prefix === undefined) {
    return;
  }
  // A public address inside the prefix would send the host's WireGuard endpoint into the tunnel.
  for (const host of hosts) {
    for (const [field, text] of [
      ["address", host.existingAddress],
      ["ipv6Address", host.existingAddress6],
    ] as const) {
      const address = text === undefined ? undefined : parseAddress6(text);
      if (address !== undefined && networkOf6(address, 64) === prefix.network) {
        errors.push({
          path: `${host.path}.existing.${field}`,
          message: `${text} is inside mesh.ipv6Prefix ${formatCidr6(prefix)}: peers would route this host's WireGuard endpoint into the tunnel itself; use its public or LAN address, or another mesh.ipv6Prefix`,
        });
      }
    }
  }
}

/**
 * Peers need a public address family in common, and the admin an SSH source in the family of each
 * Hetzner server's address: a server without IPv4 is out of reach of IPv4 sources.
 */
function checkPublicFamilies(fleet: FleetIndex, admin: AdminDraft | undefined, errors: ConfigError[]): void {
  const { mesh, hosts } = fleet;
  const sixOnly = hosts.filter(
    (h) => h.addressing && publicFamilies(h.addressing)?.includes("IPv4") === false,
  );
  if (sixOnly.length === 0) {
    return;
  }
  const hub = mesh.topology === "hub" && !mesh.badHub ? mesh.hub : undefined;
  const peers = (a: HostDraft, b: HostDraft) =>
    a !== b && (hub === undefined ? mesh.topology !== "hub" : a.name === hub || b.name === hub);
  for (const host of sixOnly) {
    const apart = hosts.filter(
      (other) =>
        !mesh.badTopology &&
        peers(host, other) &&
        other.addressing !== undefined &&
        endpointFamily(host.addressing as PublicAddressing, other.addressing) === undefined,
    );
    if (apart.length === 0) {
      continue;
    }
    const names = apart.map((h) => h.name ?? h.path).join(", ");
    const fix = host.isHcloud
      ? `create ${host.name} with hcloud.ipv4: true`
      : `reach ${host.name} at an IPv4 address`;
    errors.push({
      path: `${host.path}.${host.isHcloud ? "hcloud.ipv4" : "existing.address"}`,
      message: `${host.name} has only an IPv6 address, and its peer${apart.length > 1 ? "s" : ""} ${names} only IPv4: WireGuard has no path between them; give ${apart.length > 1 ? "each of them" : names} an IPv6 address (existing.ipv6Address), or ${fix}`,
    });
  }
  const servers = sixOnly.filter((h) => h.isHcloud);
  if (servers.length > 0 && admin !== undefined && admin.sources.length > 0 && admin.sources6.length === 0) {
    errors.push({
      path: "swarm:admin.sshSourceCidrs",
      message: `lists only IPv4 networks, and ${servers.map((h) => h.name ?? h.path).join(", ")} ${servers.length > 1 ? "have" : "has"} no IPv4 address (hcloud.ipv4: false): the Hetzner firewall would let no SSH reach ${servers.length > 1 ? "them" : "it"}; add the IPv6 network you run pulumi from, e.g. 2001:db8:1234::/48`,
    });
  }
}

/**
 * Why a block that every host routes into the tunnel (the mesh, or a route
 * to one host) would cut hosts off: it takes in a large part of the
 * internet, addresses the kernel or the cloud use locally, Hetzner's
 * gateway, or the networks the admin reaches the hosts from, whose replies
 * would then go into the tunnel instead of back to the admin.
 */
function tunnelledBlockProblem(
  cidr: Cidr,
  what: string,
  onHetzner: boolean,
  sources: readonly SshSource[],
): string | undefined {
  if (cidr.prefix < WIDEST_PREFIX) {
    return `covers ${describeSize(blockSize(cidr.prefix))}, ${cidr.prefix === 0 ? "the whole internet" : "a large part of the internet"}: every host would send that traffic, its SSH replies to the admin and the peers' endpoints included, into the ${what} (no block needs to be wider than a /${WIDEST_PREFIX})`;
  }
  const special = overlappedRange(cidr, NON_UNICAST_RANGES);
  if (special) {
    return `overlaps ${special.name}, which every host keeps for itself: routing it into the ${what} breaks the hosts' own networking`;
  }
  if (onHetzner && contains(cidr, HETZNER_GATEWAY.network)) {
    return `contains 172.31.1.1, the default gateway of every Hetzner Cloud server: routing it into the ${what} cuts the servers off from the internet and from the admin`;
  }
  const admin = sources.find((s) => overlaps(s.cidr, cidr));
  if (admin) {
    return `overlaps ${admin.text}, where the admin connects from (${admin.path}): every host would send its SSH replies to the admin into the ${what}, locking the admin out`;
  }
  return undefined;
}

/** A private /24 for the mesh that no route and no admin network overlaps, to suggest in a message. */
function freeMeshBlock(hosts: readonly HostDraft[], sources: readonly SshSource[]): string {
  const taken = [
    ...sources.map((s) => s.cidr),
    ...hosts.flatMap((h) => h.routes.flatMap((r) => r.cidr ?? [])),
  ];
  const candidates = ["10.8.0.0/24", "10.99.0.0/24", "172.20.0.0/24", "192.168.240.0/24"];
  return (
    candidates.find((text) => !taken.some((cidr) => overlaps(cidr, parseCidr(text) as Cidr))) ?? candidates[0]
  );
}

/** The longest prefix whose block holds `hosts` usable addresses. */
function prefixFor(hosts: number): number {
  let prefix = 30;
  while (prefix > 0 && blockSize(prefix) - 2 < hosts) {
    prefix--;
  }
  return prefix;
}

/**
 * Turns collisions found in the plan into config errors, one per pair of
 * overlapping entries, naming every interface where they meet. The field
 * checks above already refuse every overlap the current plan can produce;
 * this is the last guard on the plan itself, so a change to how AllowedIPs
 * are derived can never ship a collision.
 */
export function meshCollisionErrors(
  plan: Parameters<typeof findAllowedIpCollisions>[0],
  fleet: { readonly byName: ReadonlyMap<string, { readonly path: string }> },
): ConfigError[] {
  const grouped = new Map<string, { peers: [string, string]; ips: [string, string]; on: string[] }>();
  const own: ConfigError[] = [];
  for (const c of findAllowedIpCollisions(plan)) {
    if (c.peers[0] === c.host) {
      const [address, entry] = c.allowedIps;
      own.push({
        path: `${fleet.byName.get(c.peers[1])?.path ?? "swarm:hosts"}.routes`,
        message: `AllowedIPs ${entry} of peer ${c.peers[1]} on the WireGuard interface of ${c.host} hold ${c.host}'s own address ${address} (cryptokey routing collision): only a host whose single peer is the hub routes the whole mesh block to it; route only networks outside the mesh`,
      });
      continue;
    }
    const [a, b] = c.peers[0] < c.peers[1] ? [0, 1] : [1, 0];
    const key = `${c.peers[a]} ${c.allowedIps[a]} ${c.peers[b]} ${c.allowedIps[b]}`;
    const entry = grouped.get(key) ?? {
      peers: [c.peers[a], c.peers[b]],
      ips: [c.allowedIps[a], c.allowedIps[b]],
      on: [],
    };
    entry.on.push(c.host);
    grouped.set(key, entry);
  }
  const pairs = [...grouped.values()].map(({ peers, ips, on }): ConfigError => {
    // Blame the broader entry: it is the one that swallows the other peer's traffic.
    const wide = prefixOf(ips[0]) <= prefixOf(ips[1]) ? 0 : 1;
    const path = fleet.byName.get(peers[wide])?.path ?? "swarm:hosts";
    return {
      path: `${path}.routes`,
      message: `AllowedIPs ${ips[0]} of peer ${peers[0]} and ${ips[1]} of peer ${peers[1]} overlap on the WireGuard interface of ${on.join(", ")}: WireGuard would send ${sharedBlock(ips[0], ips[1])} to only one of them (cryptokey routing collision); give every peer disjoint AllowedIPs`,
    };
  });
  return [...pairs, ...own];
}

function prefixOf(entry: string): number {
  const slash = entry.indexOf("/");
  return slash >= 0 ? Number(entry.slice(slash + 1)) : entry.includes(":") ? 128 : 32;
}

function checkExports(fleet: FleetIndex, exports: readonly ExportDraft[], errors: ConfigError[]): void {
  const byName = new Map<string, ExportDraft>();
  const poolOwner = new Map<string, ExportDraft>();
  for (const e of exports) {
    if (e.name !== undefined) {
      const first = byName.get(e.name);
      if (first) {
        errors.push({
          path: `${e.path}.name`,
          message: `${e.name} is already the name of ${first.path}: export names must be unique, rename one`,
        });
      } else {
        byName.set(e.name, e);
      }
    }
    if (e.host === undefined) {
      continue;
    }
    const unknown = fleet.unknownHost(e.host);
    if (unknown) {
      errors.push({ path: `${e.path}.host`, message: unknown });
    }
    const host = fleet.byName.get(e.host);
    pushIf(errors, `${e.path}.pool.devices`, volumeProblem(host, e.pool));
    if (e.pool?.name !== undefined) {
      const key = `${e.host} ${e.pool.name}`;
      const first = poolOwner.get(key);
      if (first && !samePool(first.pool ?? {}, e.pool)) {
        errors.push({
          path: `${e.path}.pool`,
          message: `pool ${e.pool.name} on ${e.host} is also declared by ${first.path} with other devices, fileSize or scrub: declare the pool the same way in both exports`,
        });
      } else if (!first) {
        poolOwner.set(key, e);
      }
    }
    for (const other of exports) {
      if (other === e) {
        break;
      }
      if (other.host !== e.host) {
        continue;
      }
      if (
        other.pool?.name !== e.pool?.name &&
        other.pool?.devices?.includes("volume") &&
        e.pool?.devices?.includes("volume")
      ) {
        errors.push({
          path: `${e.path}.pool.devices`,
          message: `the volume of ${e.host} already backs pool ${other.pool?.name} (${other.path}): a host has one volume, put both datasets in that pool`,
        });
      }
      if (other.dataset !== undefined && other.dataset === e.dataset) {
        errors.push({
          path: `${e.path}.dataset`,
          message: `${e.dataset} is already exported by ${other.path}: export each dataset once and mount it on several clients`,
        });
      }
      if (
        other.mountpoint !== undefined &&
        e.mountpoint !== undefined &&
        nested(other.mountpoint, e.mountpoint)
      ) {
        errors.push({
          path: `${e.path}.mountpoint`,
          message: `${e.mountpoint} overlaps ${other.mountpoint} of ${other.path} on the same host: give each dataset its own mountpoint, neither inside the other`,
        });
      }
    }
    if (host?.loginUser !== undefined && e.user === host.loginUser && e.user !== "root") {
      errors.push({
        path: `${e.path}.user`,
        message: `${e.user} is the account swarm logs in to ${e.host} with (${host.path}.existing.user): the export makes it an sftp-only account, which would lock swarm out of ${e.host}; set ${e.path}.user to an account of its own, such as ${e.user === "meshfs" ? "meshfs-sftp" : "meshfs"}`,
      });
    }
    const seen = new Set<string>();
    for (const client of e.clients ?? []) {
      const unknownClient = fleet.unknownHost(client.name);
      if (unknownClient) {
        errors.push({ path: client.path, message: unknownClient });
      } else if (client.name === e.host) {
        errors.push({
          path: client.path,
          message: `${client.name} serves this export itself: remove it from clients (it uses ${e.mountpoint ?? "the mountpoint"} directly)`,
        });
      } else if (seen.has(client.name)) {
        errors.push({ path: client.path, message: `${client.name} is listed twice: list each client once` });
      } else if (fleet.has(e.host) && fleet.has(client.name) && !fleet.adjacent(client.name, e.host)) {
        errors.push({
          path: client.path,
          message: `under topology hub without hub routing ${client.name} peers only with ${fleet.mesh.hub}, so it cannot reach ${e.host} over the mesh: serve the export from the hub, set mesh.hubRouting to true (the hub forwards between spokes), or use topology full`,
        });
      }
      seen.add(client.name);
    }
  }
}

/** Why a pool cannot use `volume` on its host, or undefined. */
function volumeProblem(
  host: HostDraft | undefined,
  pool: Partial<PoolConfig> | undefined,
): string | undefined {
  if (!host || !pool?.devices?.includes("volume")) {
    return undefined;
  }
  if (host.isExisting) {
    return `volume means the host's Hetzner volume, but ${host.name} is an existing host: list its block devices instead, e.g. /dev/sdb`;
  }
  if (host.isHcloud && !host.hasVolume) {
    return `volume needs a Hetzner volume on ${host.name}: set ${host.path}.hcloud.volumeSize (in GB), or list device paths`;
  }
  return undefined;
}

/** One dataset is the other or inside it. */
function sameTree(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/**
 * A replica lives on another host that reaches the export host over the
 * mesh, in a pool declared the same way wherever that host's pools are
 * declared, in a dataset of its own: not one exported or replicated there
 * already, nor inside or above one.
 */
function checkReplicas(fleet: FleetIndex, exports: readonly ExportDraft[], errors: ConfigError[]): void {
  // Everything that claims a pool or a dataset on a host, exports first: what a replica must agree with.
  const claims: { host: string; path: string; pool?: Partial<PoolConfig>; dataset?: string; what: string }[] =
    exports.flatMap((e) =>
      e.host === undefined
        ? []
        : [{ host: e.host, path: e.path, pool: e.pool, dataset: e.dataset, what: "exported" }],
    );
  for (const e of exports) {
    const seen = new Set<string>();
    if (e.replicas.length > 0 && e.name !== undefined && replicaUser(e.name).length > 32) {
      errors.push({
        path: `${e.path}.name`,
        message: `${e.name} is too long for an export with replicas: the replica hosts receive it as user ${replicaUser(e.name)}, and a user name has at most 32 characters; shorten the name to ${32 - "-replica".length} characters or fewer`,
      });
    }
    for (const replica of e.replicas) {
      const { host } = replica;
      if (host === undefined) {
        continue;
      }
      const at = (key: string) => `${replica.path}.${key}`;
      const unknown = fleet.unknownHost(host);
      if (unknown) {
        errors.push({ path: at("host"), message: unknown });
        continue;
      }
      if (host === e.host) {
        errors.push({
          path: at("host"),
          message: `${host} is the export's own host: a replica there is lost with it; name another host, best in another location`,
        });
        continue;
      }
      if (seen.has(host)) {
        errors.push({
          path: at("host"),
          message: `${host} already keeps a replica of export ${e.name ?? ""}: one replica per host, remove one`,
        });
        continue;
      }
      seen.add(host);
      if (e.host !== undefined && fleet.has(e.host) && !fleet.adjacent(host, e.host)) {
        errors.push({
          path: at("host"),
          message: `under topology hub without hub routing ${host} peers only with ${fleet.mesh.hub}, so ${e.host} cannot send to it over the mesh: keep the replica on the hub, set mesh.hubRouting to true (the hub forwards between spokes), or use topology full`,
        });
      }
      pushIf(errors, at("pool.devices"), volumeProblem(fleet.byName.get(host), replica.pool));
      for (const other of claims) {
        if (other.host !== host) {
          continue;
        }
        if (replica.pool?.name !== undefined && other.pool?.name === replica.pool.name) {
          if (!samePool(other.pool, replica.pool)) {
            errors.push({
              path: at("pool"),
              message: `pool ${replica.pool.name} on ${host} is also declared by ${other.path} with other devices, fileSize or scrub: declare the pool the same way in both`,
            });
          }
        } else if (other.pool?.devices?.includes("volume") && replica.pool?.devices?.includes("volume")) {
          errors.push({
            path: at("pool.devices"),
            message: `the volume of ${host} already backs pool ${other.pool.name} (${other.path}): a host has one volume, put the replica in that pool`,
          });
        }
        if (
          replica.dataset !== undefined &&
          other.dataset !== undefined &&
          sameTree(replica.dataset, other.dataset)
        ) {
          errors.push({
            path: at("dataset"),
            message: `${replica.dataset} ${replica.dataset === other.dataset ? "is" : "overlaps"} ${other.dataset}, ${other.what} on ${host} by ${other.path}: a replica needs a dataset of its own, neither inside nor above another, e.g. ${replica.pool?.name ?? "backup"}/${e.name ?? "meshfs"}`,
          });
        }
      }
      claims.push({
        host,
        path: replica.path,
        pool: replica.pool,
        dataset: replica.dataset,
        what: "a replica",
      });
    }
  }
}

function pushIf(errors: ConfigError[], path: string, message: string | undefined): void {
  if (message !== undefined) {
    errors.push({ path, message });
  }
}

function samePool(a: Partial<PoolConfig>, b: Partial<PoolConfig>): boolean {
  return (
    JSON.stringify(a.devices ?? []) === JSON.stringify(b.devices ?? []) &&
    a.fileSize === b.fileSize &&
    // A scrub value already refused (left out of the draft) is not a second complaint.
    (a.scrub === undefined || b.scrub === undefined || a.scrub === b.scrub)
  );
}

function checkMounts(
  fleet: FleetIndex,
  exports: readonly ExportDraft[],
  mounts: readonly MountDraft[],
  syncs: readonly SyncDraft[],
  errors: ConfigError[],
): void {
  mounts.forEach((m, i) => {
    if (m.host !== undefined) {
      const unknown = fleet.unknownHost(m.host);
      if (unknown) {
        errors.push({ path: `${m.path}.host`, message: unknown });
      }
    }
    if (m.export !== undefined) {
      const target = exportNamed(exports, m.export);
      if (!target) {
        pushIf(errors, `${m.path}.export`, unknownExport(m.export, exports));
      } else if (m.host !== undefined && target.host === m.host) {
        const through = syncs.filter((s) => syncMount(s, [m]) !== undefined).map((s) => s.path);
        errors.push({
          path: `${m.path}.host`,
          message: `${m.host} serves export ${m.export} itself: use its mountpoint ${target.mountpoint ?? ""} directly and remove this mount${through.length > 0 ? ` (and ${through.join(", ")}, which sync through it)` : ""}`,
        });
      } else if (fleet.has(m.host) && !(target.clients ?? []).some((c) => c.name === m.host)) {
        errors.push({
          path: `${m.path}.export`,
          message: `export ${m.export} does not list ${m.host} in clients: add ${m.host} to ${target.path}.clients`,
        });
      }
    }
    if (m.host === undefined || m.mountPath === undefined) {
      return;
    }
    for (const other of mounts.slice(0, i)) {
      if (other.host !== m.host || other.mountPath === undefined) {
        continue;
      }
      if (other.mountPath === m.mountPath) {
        errors.push({
          path: `${m.path}.path`,
          message: `${m.host} already mounts ${other.export ?? "an export"} at ${m.mountPath} (${other.path}): one mount per path, pick another path`,
        });
      } else if (nested(other.mountPath, m.mountPath)) {
        errors.push({
          path: `${m.path}.path`,
          message: `${m.mountPath} and ${other.mountPath} (${other.path}) nest on ${m.host}: automounts cannot nest, use sibling paths such as /mnt/a and /mnt/b`,
        });
      }
    }
    const served = exports.find(
      (e) =>
        e.host === m.host &&
        e.name !== m.export &&
        e.mountpoint !== undefined &&
        nested(e.mountpoint, m.mountPath as string),
    );
    if (served) {
      errors.push({
        path: `${m.path}.path`,
        message: `${m.mountPath} and ${served.mountpoint}, where ${m.host} mounts the dataset of export ${served.name ?? served.path} (${served.path}), nest: the sshfs automount and the dataset would hide each other; use sibling paths such as /mnt/meshfs and /tank/meshfs/state`,
      });
    }
  });
}

/** The mount on the sync's host whose path holds the sync's remote.mountPath: the plan's lookup, over the mounts read so far. */
function syncMount(s: SyncDraft, mounts: readonly MountDraft[]): MountDraft | undefined {
  const mountPath = s.remote?.mountPath;
  if (mountPath === undefined || s.host === undefined) {
    return undefined;
  }
  const placed = mounts.flatMap((m) =>
    m.host !== undefined && m.mountPath !== undefined ? [{ host: m.host, path: m.mountPath, draft: m }] : [],
  );
  return mountHolding(placed, s.host, mountPath)?.draft;
}

function checkSyncs(
  fleet: FleetIndex,
  exports: readonly ExportDraft[],
  mounts: readonly MountDraft[],
  syncs: readonly SyncDraft[],
  errors: ConfigError[],
): void {
  syncs.forEach((s, i) => {
    if (s.host !== undefined) {
      const unknown = fleet.unknownHost(s.host);
      if (unknown) {
        errors.push({ path: `${s.path}.host`, message: unknown });
      }
    }
    const host = s.host;
    if (!fleet.has(host)) {
      return;
    }
    for (const other of syncs.slice(0, i)) {
      if (other.host !== host) {
        continue;
      }
      if (s.name !== undefined && other.name === s.name) {
        errors.push({
          path: `${s.path}.name`,
          message: `${host} already has a sync named ${s.name} (${other.path}): sync names must be unique per host`,
        });
      }
      if (s.local !== undefined && other.local !== undefined && nested(s.local, other.local)) {
        errors.push({
          path: `${s.path}.local`,
          message:
            s.local === other.local
              ? `${s.local} is already the local root of ${other.path} on ${host}: two syncs would write the same files, merge them into one sync`
              : `${s.local} and ${other.local} (${other.path}) nest on ${host}: two syncs would write the same files, use disjoint local roots`,
        });
      }
    }
    const hostMounts = mounts.filter((m) => m.host === host && m.mountPath !== undefined);
    const served = exports.filter((e) => e.host === host);
    if (s.local !== undefined) {
      const local = s.local;
      // A root that holds the sync's own remote.mountPath is reported below, as a tree synced into itself.
      const ownRemote = s.remote?.mountPath;
      const onMount = hostMounts.find(
        (m) => nested(local, m.mountPath as string) && !(ownRemote !== undefined && nested(local, ownRemote)),
      );
      const dataset = served.find((e) => e.mountpoint !== undefined && isInside(e.mountpoint, local));
      if (onMount) {
        errors.push({
          path: `${s.path}.local`,
          message: isInside(local, onMount.mountPath as string)
            ? `${local} is on the sshfs mount ${onMount.mountPath} (${onMount.path}): the local root must be on ${host}'s own disk`
            : `${local} contains the sshfs mount ${onMount.mountPath} (${onMount.path}): unison would copy the export into the local root as its own files; use a local root beside the mount, not above it`,
        });
      } else if (dataset) {
        errors.push({
          path: `${s.path}.local`,
          message: `${local} contains ${dataset.mountpoint}, where ${host} mounts the dataset of export ${dataset.name ?? dataset.path} (${dataset.path}): unison would copy that export into the sync as its own files; use a local root beside it, not above it`,
        });
      }
    }
    const remote = s.remote;
    if (remote?.mountPath !== undefined) {
      const mountPath = remote.mountPath;
      const mount = syncMount(s, hostMounts);
      if (!mount) {
        pushIf(errors, `${s.path}.remote.mountPath`, noMountProblem(host, mountPath, exports, mounts));
      } else if (mount.export !== undefined && exportNamed(exports, mount.export)?.host === host) {
        errors.push({
          path: `${s.path}.host`,
          message: `${host} serves export ${mount.export} itself, so ${mount.path} is refused and this sync has no other side to reach: run the sync on a client of ${mount.export}, or remove both and use the files in its mountpoint directly`,
        });
      } else {
        pushIf(errors, `${s.path}.user`, ownerProblem(s, mount, syncs, mounts));
      }
      if (s.local !== undefined && nested(s.local, mountPath)) {
        errors.push({
          path: `${s.path}.local`,
          message:
            s.local === mountPath
              ? `${s.local} is also remote.mountPath: the two roots must be different directories`
              : `${s.local} and remote.mountPath ${mountPath} nest: unison would sync a tree into itself, use two disjoint roots`,
        });
      }
    }
    if (remote?.export !== undefined) {
      const target = exportNamed(exports, remote.export);
      if (!target) {
        pushIf(errors, `${s.path}.remote.export`, unknownExport(remote.export, exports));
      } else if (target.host === host) {
        errors.push({
          path: `${s.path}.host`,
          message: `${host} serves export ${remote.export} itself, so this sync has no other side to reach: run it on a client of ${remote.export}${clientList(target)}, or remove it and use ${target.mountpoint ?? "the export's mountpoint"}${remote.path !== undefined ? `/${remote.path}` : ""} directly`,
        });
      } else if (!(target.clients ?? []).some((c) => c.name === host)) {
        errors.push({
          path: `${s.path}.remote.export`,
          message: `export ${remote.export} does not list ${host} in clients: add ${host} to ${target.path}.clients`,
        });
      } else {
        const mounted = hostMounts.find((m) => m.export === remote.export);
        if (mounted) {
          errors.push({
            path: `${s.path}.remote`,
            message: `${host} also mounts export ${remote.export} at ${mounted.mountPath} (${mounted.path}), and sshd gives one client address one kind of session: sync through the mount instead, with remote: {mountPath: ${mounted.mountPath}${remote.path !== undefined ? `/${remote.path}` : ""}}`,
          });
        }
      }
    }
    const watched =
      s.fields.watch === true
        ? remote?.mountPath !== undefined
          ? syncMount(s, hostMounts)?.export
          : remote?.export
        : undefined;
    if (watched !== undefined && watchUser(watched).length > 32) {
      errors.push({
        path: `${s.path}.watch`,
        message: `export ${watched} has too long a name for a sync in watch mode: ${host} follows it on the export host as user ${watchUser(watched)}, and a user name has at most 32 characters; shorten the export's name to ${32 - "-watch".length} characters or fewer, or set watch: false`,
      });
    }
  });
}

function clientList(e: ExportDraft): string {
  const names = (e.clients ?? []).map((c) => c.name);
  return names.length > 0 ? ` (${names.join(", ")})` : "";
}

/** Why no mount of `host` holds `mountPath`, with the change that gives it one. */
function noMountProblem(
  host: string,
  mountPath: string,
  exports: readonly ExportDraft[],
  mounts: readonly MountDraft[],
): string | undefined {
  const refused = mounts.find(
    (m) => m.host === host && m.refusedPath !== undefined && isInside(mountPath, m.refusedPath),
  );
  if (refused) {
    return `${mountPath} is inside ${refused.refusedPath}, the refused path of ${refused.path}: when you move that mount, move this path inside its new path too`;
  }
  const own = exports.find(
    (e) => e.host === host && e.mountpoint !== undefined && isInside(mountPath, e.mountpoint),
  );
  if (own) {
    return `${mountPath} is inside the mountpoint of export ${own.name ?? own.path}, which ${host} serves itself, so there is no other side to sync with: run the sync on a client of it${clientList(own)}, or remove it and use the files directly`;
  }
  const mountable = exports.filter((e) => e.host !== undefined && e.host !== host && e.name !== undefined);
  if (mountable.length === 0) {
    return exports.some((e) => e.name === undefined || e.host === undefined)
      ? undefined
      : `host ${host} has no mount containing ${mountPath}, and every export is served by ${host} itself: run the sync on another host, or remove it`;
  }
  return `host ${host} has no mount containing ${mountPath}; add a swarm:mounts entry for ${host} whose path contains it (of export ${mountable.map((e) => e.name).join(" or ")})`;
}

/**
 * Why the sync's user cannot write through its mount. A mount maps every
 * file to one owner, so syncs that write through it as different users
 * cannot all be satisfied by changing the owner: the first one's user is the
 * owner to set, and the others are told to use it or a mount of their own.
 */
function ownerProblem(
  s: SyncDraft,
  mount: MountDraft,
  syncs: readonly SyncDraft[],
  mounts: readonly MountDraft[],
): string | undefined {
  if (mount.owner === undefined || s.user === undefined || s.user === "root" || mount.owner === s.user) {
    return undefined;
  }
  const writers = syncs.filter(
    (o) => o.user !== undefined && o.user !== "root" && syncMount(o, mounts) === mount,
  );
  const owner = writers.some((w) => w.user === mount.owner) ? mount.owner : writers[0].user;
  if (owner === s.user) {
    return `the sync runs as ${s.user}, but ${mount.mountPath} is mapped to owner ${mount.owner} (${mount.path}.owner): set that owner to ${s.user} so the sync can write`;
  }
  const first = writers.find((w) => w.user === owner) as SyncDraft;
  return `the sync runs as ${s.user}, but ${mount.mountPath} (${mount.path}) maps its files to one owner, and ${first.path} writes there as ${owner}: run this sync as ${owner} too, or mount ${mount.export ?? "the export"} a second time at a path of its own with owner ${s.user} and point remote.mountPath there`;
}

function unknownExport(name: string, exports: readonly ExportDraft[]): string | undefined {
  if (exports.some((e) => e.name === undefined)) {
    return undefined;
  }
  const names = exports.flatMap((e) => (e.name !== undefined ? [e.name] : []));
  return names.length === 0
    ? `${JSON.stringify(name)} is not an export: declare it in swarm:exports`
    : `${JSON.stringify(name)} is not an export: use one of ${names.join(", ")}, or declare it in swarm:exports`;
}

// ---------------------------------------------------------------- values

/** Reads a CIDR, explaining the usual mistakes (host bits set, prefix too long). */
function readCidr(
  text: string,
  path: string,
  errors: ConfigError[],
  opts: { example: string; maxPrefix?: number; family?: string },
): Cidr | undefined {
  const match = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  const address = match ? parseAddress(match[1]) : undefined;
  const prefix = match ? Number(match[2]) : NaN;
  if (address === undefined || !(prefix >= 0 && prefix <= 32)) {
    errors.push({
      path,
      message: `${JSON.stringify(text)} is not an ${opts.family ?? "IPv4"} CIDR: write a network address and prefix such as ${opts.example}`,
    });
    return undefined;
  }
  const cidr = parseCidr(text);
  if (cidr === undefined) {
    const network = address - (address % blockSize(prefix));
    errors.push({
      path,
      message: `${text} has host bits set: did you mean ${formatAddress(network)}/${prefix}?`,
    });
    return undefined;
  }
  if (opts.maxPrefix !== undefined && prefix > opts.maxPrefix) {
    errors.push({
      path,
      message: `${text} leaves no room for hosts: use a prefix of /${opts.maxPrefix} or shorter, such as ${opts.example}`,
    });
    return undefined;
  }
  return cidr;
}

const UNUSABLE_FIX = "use the public or LAN address swarm reaches the host at";

/** Why a host's address (IPv4, IPv6 or DNS name) cannot be where swarm reaches it, or undefined. */
function hostAddressProblem(text: string): string | undefined {
  if (text.includes(":")) {
    return address6Problem(text);
  }
  if (/^[0-9.]+$/.test(text) ? parseAddress(text) === undefined : !DNS_NAME.test(text)) {
    return `${JSON.stringify(text)} is neither an IPv4 or IPv6 address nor a DNS name: write e.g. 192.0.2.10, 2001:db8::10 or host.example.org`;
  }
  if (/^localhost\.?$|\.localhost\.?$/i.test(text)) {
    return `${text} is the machine that runs pulumi itself: ${UNUSABLE_FIX}`;
  }
  const address = parseAddress(text);
  const special = address !== undefined ? rangeOf(address, NON_UNICAST_RANGES) : undefined;
  return special ? `${text} is in ${special.name}, which ${special.why}: ${UNUSABLE_FIX}` : undefined;
}

/** Why `text` is not an IPv6 address a host can be reached at, written as RFC 5952 prints it; or undefined. */
function address6Problem(text: string): string | undefined {
  const bracketed = /^\[(.*)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    return `${JSON.stringify(text)} is bracketed${bracketed[2] !== undefined ? " with a port" : ""}: write the bare address, ${bracketed[1]}${bracketed[2] !== undefined ? `, and the SSH port in existing.port` : ""} (swarm brackets it where an endpoint needs it)`;
  }
  const value = parseAddress6(text);
  if (value === undefined) {
    return `${JSON.stringify(text)} is not an IPv6 address: write one such as 2001:db8::10`;
  }
  const special = overlappedRange6({ network: value, prefix: 128 }, NON_UNICAST_RANGES6);
  if (special) {
    return `${text} is in ${special.name}, which ${special.why}: ${UNUSABLE_FIX}`;
  }
  const canonical = formatAddress6(value);
  return canonical !== text
    ? `${text} is not written as RFC 5952 prints it, the form wg and ssh report it in: write ${canonical}`
    : undefined;
}

/** Why `text` is not a clean absolute path, or undefined when it is one. */
export function absolutePathProblem(text: string, example: string): string | undefined {
  if (!text.startsWith("/")) {
    return `${JSON.stringify(text)} is relative: write an absolute path such as ${example}`;
  }
  if (/[\u0000-\u001f\u007f]/.test(text)) {
    return `${JSON.stringify(text)} contains control characters: write a plain absolute path such as ${example}`;
  }
  const segments = text.split("/").slice(1);
  if (text !== "/" && segments.some((s) => s === "" || s === "." || s === "..")) {
    return `${JSON.stringify(text)} is not a normalized path: write it without //, ., .. or a trailing /, such as ${example}`;
  }
  return undefined;
}

function relativePathProblem(text: string): string | undefined {
  if (text.startsWith("/")) {
    return `${JSON.stringify(text)} is absolute: write a path relative to the export's mountpoint, such as wiki`;
  }
  const segments = text.split("/");
  if (segments.some((s) => s === "" || s === "." || s === "..")) {
    return `${JSON.stringify(text)} must stay inside the export: write it without .., ., // or a trailing /, such as wiki`;
  }
  return undefined;
}

/** Why `path` would hide or expose part of the system, or undefined. */
export function systemPathProblem(path: string): string | undefined {
  const fix = "use a dedicated directory such as /mnt/meshfs or /srv/data";
  const inside = (trees: readonly { root: string; what: string }[]) =>
    trees.find((tree) => isInside(path, tree.root));
  const kernel = inside(SYSTEM_TREES.slice(0, KERNEL_TREES));
  if (kernel) {
    return `${path} is inside ${kernel.root}, ${kernel.what}: use a path such as /mnt/meshfs or /srv/data`;
  }
  const hidden = SYSTEM_PATHS.find((system) => isInside(system, path));
  if (hidden) {
    return `${path} ${hidden === path ? "is" : "contains"} the system path ${hidden}: ${fix}`;
  }
  const tree = inside(SYSTEM_TREES);
  if (tree) {
    return `${path} is ${path === tree.root ? "" : "inside "}${tree.root}, ${tree.what}: ${fix}`;
  }
  return undefined;
}

/** Why files kept at `path` would not last, or undefined. `what` says what is kept there. */
export function ephemeralPathProblem(path: string, what: string): string | undefined {
  const tree = EPHEMERAL_TREES.find((t) => isInside(path, t.root));
  return tree
    ? `${path} is inside ${tree.root}, ${tree.what}: ${what}; use a directory on disk such as /srv/data`
    : undefined;
}

/** Refuses (and drops) a path field that is not a clean absolute path, or would hide or lose files. */
function checkPath<K extends string>(
  r: Section<{ [key in K]?: string }>,
  key: K,
  opts: {
    example: string;
    system?: boolean;
    /** What would be lost if the path's files did not last: refuses directories emptied at boot. */
    lasting?: string;
  },
): string | undefined {
  const text = r.value[key];
  if (text === undefined) {
    return undefined;
  }
  const problem =
    absolutePathProblem(text, opts.example) ??
    (opts.system ? systemPathProblem(text) : undefined) ??
    (opts.lasting !== undefined ? ephemeralPathProblem(text, opts.lasting) : undefined);
  if (problem) {
    r.error(key, problem);
    r.drop(key);
    return undefined;
  }
  return text;
}

function nested(a: string, b: string): boolean {
  return isInside(a, b) || isInside(b, a);
}

const KEY_TYPES = [
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
];

/**
 * The fields after the type name in each key type's wire format (RFC 4253,
 * RFC 5656, RFC 8709, OpenSSH PROTOCOL.u2f): their exact lengths, 0 where
 * the length varies.
 */
const KEY_SHAPES: Readonly<Record<string, readonly number[]>> = {
  "ssh-ed25519": [32],
  "ssh-rsa": [0, 0],
  "ecdsa-sha2-nistp256": [8, 65],
  "ecdsa-sha2-nistp384": [8, 97],
  "ecdsa-sha2-nistp521": [8, 133],
  "sk-ssh-ed25519@openssh.com": [32, 0],
  "sk-ecdsa-sha2-nistp256@openssh.com": [8, 65, 0],
};

/** The length-prefixed strings of an SSH wire-format blob, up to the first that does not fit. */
function wireStrings(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at + 4 <= bytes.length) {
    const length = bytes.readUInt32BE(at);
    if (at + 4 + length > bytes.length) {
      break;
    }
    out.push(bytes.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return out;
}

/** Host key types the SSH provider can pin: it asks for the key's own algorithm, and `ssh-rsa` means SHA-1. */
const HOST_KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"];

/** Why `line` is not an OpenSSH public key line, or undefined when it is one. */
export function publicKeyProblem(
  line: string,
  fix = "paste one line from the .pub file, e.g. ssh-ed25519 AAAAC3Nza... admin@example",
): string | undefined {
  if (/PRIVATE KEY/.test(line)) {
    return "is a private key: set it with pulumi config set --secret swarm:sshPrivateKey, and put the .pub line here";
  }
  const [type, blob, ...rest] = line.trim().split(/\s+/);
  if (!KEY_TYPES.includes(type) || blob === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) {
    return `is not an OpenSSH public key: ${fix}`;
  }
  const bytes = Buffer.from(blob, "base64");
  const fields = wireStrings(bytes);
  if (fields[0]?.toString() !== type) {
    return `the key data does not match its type ${type} (truncated or mangled when copied): ${fix}`;
  }
  const shape = KEY_SHAPES[type];
  const lengths = fields.slice(1).map((f) => f.length);
  const complete =
    blob.length % 4 === 0 &&
    fields.reduce((sum, f) => sum + 4 + f.length, 0) === bytes.length &&
    lengths.length === shape.length &&
    shape.every((want, i) => (want === 0 ? lengths[i] > 0 : lengths[i] === want));
  if (!complete) {
    const whole =
      type === "ssh-ed25519"
        ? ` (an ssh-ed25519 key is 68 characters of base64, this one has ${blob.length})`
        : "";
    return `the key data is truncated or mangled${whole}: copy the whole line again; ${fix}`;
  }
  if (rest.some((part) => /[\n\r]/.test(part))) {
    return `must be a single line: ${fix}`;
  }
  return undefined;
}

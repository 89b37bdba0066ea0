/**
 * The swarm CrossGuard policies, kept apart from `index.ts` (which serves
 * them to the Pulumi engine as soon as it is loaded) so tests can call them.
 *
 * What a policy sees: `@pulumi/policy` unwraps secrets into plain values
 * before `validateResource` and `validateStack` run, so a policy cannot tell
 * a secret input from a plain one. The policies therefore speak about plain
 * text (a private key must never appear where it is not expected at all) and
 * about what is visible: a command's `logging` and its resource option
 * `additionalSecretOutputs`. Messages never quote a value, since that value
 * may be a secret. Values still unknown during a preview are skipped: the
 * same policies run again with every value known at `pulumi up`.
 */
import {
  PolicyResource,
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationPolicy,
  UnknownValueError,
} from "@pulumi/policy";

export const FIREWALL = "hcloud:index/firewall:Firewall";
export const FIREWALL_ATTACHMENT = "hcloud:index/firewallAttachment:FirewallAttachment";
export const SERVER = "hcloud:index/server:Server";
export const REMOTE_COMMAND = "command:remote:Command";
/** The component that owns every host's WireGuard commands (components/wireguardMesh.ts). */
export const MESH_COMPONENT = "swarm:wireguard:Mesh";

/** The labels every labelled Hetzner resource of the fleet carries, so the fleet can be found and billed per stack. */
export const FLEET_LABEL = { key: "fleet", value: "swarm" } as const;
export const STACK_LABEL = "stack";

/**
 * Every `@pulumi/hcloud` resource type whose arguments take `labels`
 * (tests/policy.test.ts checks this list against the installed provider SDK).
 */
export const LABELLED_HCLOUD_TYPES: readonly string[] = [
  "hcloud:index/certificate:Certificate",
  "hcloud:index/firewall:Firewall",
  "hcloud:index/floatingIp:FloatingIp",
  "hcloud:index/loadBalancer:LoadBalancer",
  "hcloud:index/managedCertificate:ManagedCertificate",
  "hcloud:index/network:Network",
  "hcloud:index/placementGroup:PlacementGroup",
  "hcloud:index/primaryIp:PrimaryIp",
  "hcloud:index/server:Server",
  "hcloud:index/snapshot:Snapshot",
  "hcloud:index/sshKey:SshKey",
  "hcloud:index/storageBox:StorageBox",
  "hcloud:index/storageBoxSnapshot:StorageBoxSnapshot",
  "hcloud:index/storageBoxSubaccount:StorageBoxSubaccount",
  "hcloud:index/uploadedCertificate:UploadedCertificate",
  "hcloud:index/volume:Volume",
  "hcloud:index/zone:Zone",
  "hcloud:index/zoneRrset:ZoneRrset",
];

const SSH_PORT = 22;

/** A Hetzner firewall rule as the policy sees it (inputs or outputs of `hcloud.Firewall`). */
export interface FirewallRule {
  readonly description?: string;
  readonly direction?: string;
  readonly protocol?: string;
  readonly port?: string;
  readonly sourceIps?: readonly string[];
}

/** The value read, or undefined when it is not known yet (a preview of a value computed during the update). */
export function known<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (err) {
    if (err instanceof UnknownValueError) {
      return undefined;
    }
    throw err;
  }
}

/**
 * The inclusive port range of a rule's `port`: `22`, `80-85`, or `any`.
 * A rule without a port, or one that does not parse, is read as every port,
 * so a malformed rule is judged by what it could open.
 */
export function portRange(port: string | undefined): [number, number] {
  const text = port?.trim();
  const single = text === undefined ? null : /^(\d+)$/.exec(text);
  if (single) {
    return [Number(single[1]), Number(single[1])];
  }
  const range = text === undefined ? null : /^(\d+)\s*-\s*(\d+)$/.exec(text);
  if (range) {
    return [Number(range[1]), Number(range[2])];
  }
  return [1, 65535];
}

/** A CIDR with prefix length 0 (`0.0.0.0/0`, `::/0`, or any other `/0`) covers a whole address family. */
export function isWholeInternet(cidr: string): boolean {
  return /\/0+$/.test(cidr.trim());
}

function isInbound(rule: FirewallRule): boolean {
  return (rule.direction ?? "in") === "in";
}

function ruleName(rule: FirewallRule, index: number): string {
  return rule.description ? `rule ${index} (${JSON.stringify(rule.description)})` : `rule ${index}`;
}

/** The firewall's rules as plain values; a rule with a part not known yet is left for `pulumi up` to check. */
function rulesOf(props: Record<string, unknown>): readonly { rule: FirewallRule; index: number }[] {
  const rules = known(() => props.rules);
  if (!Array.isArray(rules)) {
    return [];
  }
  return rules.flatMap((rule: FirewallRule, index: number) => {
    const plain = known((): FirewallRule => ({
      description: rule.description,
      direction: rule.direction,
      protocol: rule.protocol,
      port: rule.port,
      sourceIps: rule.sourceIps === undefined ? undefined : [...rule.sourceIps],
    }));
    return plain === undefined ? [] : [{ rule: plain, index }];
  });
}

/** The stack name in a URN `urn:pulumi:<stack>::<project>::<type>::<name>`. */
export function stackOfUrn(urn: string): string | undefined {
  const match = /^urn:pulumi:([^:]+)::/.exec(urn);
  return match ? match[1] : undefined;
}

// ------------------------------------------------------------------ private keys

/** An OpenSSH or PEM private key: the armour line followed by key material. */
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\s+[A-Za-z0-9+/]{20,}/;
/** A base64 Curve25519 key (32 bytes: 43 characters, the last limited by the unused bits, then `=`). */
const CURVE25519_KEY = "[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=";
/** A WireGuard configuration line with a real key (not a template such as `PrivateKey = %s`). */
const WIREGUARD_PRIVATE_KEY = new RegExp(`PrivateKey\\s*=\\s*${CURVE25519_KEY}`);
/** Standard input holding nothing but a base64 Curve25519 key: how a WireGuard private key travels. */
const BARE_CURVE25519_KEY = new RegExp(`^\\s*${CURVE25519_KEY}\\s*$`);

/** Whether text carries private key material (an SSH/PEM key or a WireGuard `PrivateKey = ` line). */
export function carriesPrivateKey(text: string): boolean {
  return PEM_PRIVATE_KEY.test(text) || WIREGUARD_PRIVATE_KEY.test(text);
}

/** Whether a command's standard input is a private key: any of the above, or a bare WireGuard key. */
export function stdinIsPrivateKey(text: string): boolean {
  return carriesPrivateKey(text) || BARE_CURVE25519_KEY.test(text);
}

/** The fields of a remote command that end up in the state, the logs or the process list as plain text. */
const PLAIN_COMMAND_FIELDS = ["create", "update", "delete", "environment", "triggers"] as const;

function textsOf(value: unknown): string[] {
  if (value === undefined || value === null) {
    return [];
  }
  if (typeof value === "string") {
    return [value];
  }
  if (Array.isArray(value)) {
    return value.flatMap((item) => known(() => textsOf(item)) ?? []);
  }
  if (typeof value === "object") {
    return Object.keys(value).flatMap(
      (key) => known(() => textsOf((value as Record<string, unknown>)[key])) ?? [],
    );
  }
  return [String(value)];
}

// ------------------------------------------------------------------ policies

export const noPublicSsh: ResourceValidationPolicy = {
  name: "no-public-ssh",
  description: "No Hetzner firewall rule opens SSH (TCP 22, or a range containing it) to the whole internet.",
  remediationSteps:
    "List only the networks the admin connects from in swarm:admin.sshSourceCidrs (e.g. 203.0.113.7/32); never 0.0.0.0/0 or ::/0.",
  validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
    if (args.type !== FIREWALL) {
      return;
    }
    rulesOf(args.props).forEach(({ rule, index }) => {
      if (!isInbound(rule) || (rule.protocol ?? "").toLowerCase() !== "tcp") {
        return;
      }
      const [from, to] = portRange(rule.port);
      if (SSH_PORT < from || SSH_PORT > to) {
        return;
      }
      const open = (rule.sourceIps ?? []).filter(isWholeInternet);
      if (open.length > 0) {
        reportViolation(
          `firewall ${args.name} ${ruleName(rule, index)} opens TCP ${rule.port ?? "any"} (SSH) to ${open.join(", ")}: ` +
            "allow SSH only from the admin networks in swarm:admin.sshSourceCidrs, e.g. 203.0.113.7/32",
        );
      }
    });
  },
};

export const fleetLabels: ResourceValidationPolicy = {
  name: "fleet-labels",
  description: `Every Hetzner resource that takes labels carries ${FLEET_LABEL.key}=${FLEET_LABEL.value} and ${STACK_LABEL}=<stack>.`,
  remediationSteps:
    'Pass the fleet labels ({ fleet: "swarm", stack: pulumi.getStack() }) to every hcloud resource that takes labels.',
  validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
    if (!LABELLED_HCLOUD_TYPES.includes(args.type)) {
      return;
    }
    // A key that is present but reads as undefined holds a value not known until the update.
    const labels = known(() => args.props.labels);
    if (labels === undefined && "labels" in args.props) {
      return;
    }
    const plain = (typeof labels === "object" && labels !== null ? labels : {}) as Record<string, unknown>;
    const stack = stackOfUrn(args.urn);
    const missing: string[] = [];
    const fleet = known(() => plain[FLEET_LABEL.key]);
    if (fleet !== FLEET_LABEL.value && !(fleet === undefined && FLEET_LABEL.key in plain)) {
      missing.push(`${FLEET_LABEL.key}=${FLEET_LABEL.value}`);
    }
    const stackLabel = known(() => plain[STACK_LABEL]);
    const stackUnknown = stackLabel === undefined && STACK_LABEL in plain;
    if (
      !stackUnknown &&
      (typeof stackLabel !== "string" || stackLabel === "" || stackLabel !== (stack ?? stackLabel))
    ) {
      missing.push(`${STACK_LABEL}=${stack ?? "<stack>"}`);
    }
    if (missing.length > 0) {
      reportViolation(
        `${args.type.split(":").pop()} ${args.name} lacks the label${missing.length === 1 ? "" : "s"} ${missing.join(", ")}: ` +
          'pass labels { fleet: "swarm", stack: pulumi.getStack() } (and host=<name> for a host\'s resources)',
      );
    }
  },
};

export const noPlainPrivateKeys: ResourceValidationPolicy = {
  name: "no-plain-private-keys",
  description:
    "No remote command carries a private key outside a secret: never in create/update/delete/environment/triggers, and a key on stdin only with logging off and stdout/stderr secret.",
  remediationSteps:
    "Deliver keys on the command's stdin through hostCommand(..., { secret: true }), which turns logging off and marks stdout and stderr secret.",
  validateResource: (args: ResourceValidationArgs, reportViolation: ReportViolation) => {
    if (args.type !== REMOTE_COMMAND) {
      return;
    }
    for (const field of PLAIN_COMMAND_FIELDS) {
      const texts = known(() => textsOf(args.props[field])) ?? [];
      if (texts.some(carriesPrivateKey)) {
        reportViolation(
          `command ${args.name} carries a private key in ${field}, which is stored and shown as plain text: ` +
            "pass the key on stdin (hostCommand with secret: true) and read it there",
        );
      }
    }
    const stdin = known(() => args.props.stdin);
    if (typeof stdin !== "string" || !stdinIsPrivateKey(stdin)) {
      return;
    }
    const logging = known(() => args.props.logging);
    const secretOutputs = args.opts.additionalSecretOutputs ?? [];
    const problems: string[] = [];
    if (logging !== undefined && logging !== "none") {
      problems.push(`logging is ${JSON.stringify(logging)}`);
    } else if (logging === undefined && !("logging" in args.props)) {
      problems.push("logging is not set (it defaults to stdout and stderr)");
    }
    const exposed = ["stdout", "stderr"].filter((o) => !secretOutputs.includes(o));
    if (exposed.length > 0) {
      problems.push(`${exposed.join(" and ")} ${exposed.length === 1 ? "is" : "are"} not marked secret`);
    }
    if (problems.length > 0) {
      reportViolation(
        `command ${args.name} reads a private key on stdin but ${problems.join(", ")}: ` +
          "create it with hostCommand(..., { secret: true }) so its output never reaches logs or state in plain text",
      );
    }
  },
};

/** The resources a property of `resource` was computed from (its property dependencies). */
function fromProperty(resource: PolicyResource, property: string): readonly PolicyResource[] {
  return resource.propertyDependencies[property] ?? [];
}

function labelsOf(resource: PolicyResource): Record<string, string> {
  const labels = known(() => resource.props.labels);
  return typeof labels === "object" && labels !== null ? (labels as Record<string, string>) : {};
}

/** Whether a server matches a Hetzner label selector of `key=value` terms joined by commas. */
function matchesSelector(labels: Record<string, string>, selector: string): boolean {
  return selector
    .split(",")
    .map((term) => term.trim())
    .every((term) => {
      const [key, value] = term.split("=").map((part) => part.trim());
      return value === undefined ? key in labels : labels[key] === value;
    });
}

/** The servers a firewall applies to: through FirewallAttachments (server ids or label selectors) or a server's own firewallIds. */
function serversOf(firewall: PolicyResource, resources: readonly PolicyResource[]): PolicyResource[] {
  const servers = resources.filter((r) => r.type === SERVER);
  const found = new Map<string, PolicyResource>();
  for (const attachment of resources.filter((r) => r.type === FIREWALL_ATTACHMENT)) {
    if (!fromProperty(attachment, "firewallId").some((r) => r.urn === firewall.urn)) {
      continue;
    }
    for (const server of fromProperty(attachment, "serverIds").filter((r) => r.type === SERVER)) {
      found.set(server.urn, server);
    }
    const selectors = known(() => attachment.props.labelSelectors);
    for (const selector of Array.isArray(selectors) ? (selectors as string[]) : []) {
      for (const server of servers.filter((s) => matchesSelector(labelsOf(s), selector))) {
        found.set(server.urn, server);
      }
    }
  }
  for (const server of servers) {
    if (fromProperty(server, "firewallIds").some((r) => r.urn === firewall.urn)) {
      found.set(server.urn, server);
    }
  }
  return [...found.values()];
}

/** The command that writes a host's `wg0.conf`: `<mesh>-<host>-config` under a WireGuard mesh component. */
function meshConfigCommand(host: string, resources: readonly PolicyResource[]): PolicyResource | undefined {
  return resources.find(
    (r) =>
      r.type === REMOTE_COMMAND &&
      r.parent?.type === MESH_COMPONENT &&
      r.name === `${r.parent.name}-${host}-config`,
  );
}

/** The `ListenPort` of the `wg0.conf` a mesh config command writes, when known. */
function listenPortOf(command: PolicyResource): number | undefined {
  const create = known(() => command.props.create);
  const match = typeof create === "string" ? /^ListenPort = (\d+)$/m.exec(create) : null;
  return match ? Number(match[1]) : undefined;
}

export const wireguardPortsOnMeshHosts: StackValidationPolicy = {
  name: "wireguard-ports-on-mesh-hosts",
  description:
    "A firewall rule opening a UDP port exists only on servers that run a WireGuard peer of the mesh, and opens exactly its listen port.",
  remediationSteps:
    "Open UDP only in a host's own firewall (HetznerHost), for swarm:mesh.listenPort, and attach it to that host's server.",
  validateStack: (args, reportViolation) => {
    const { resources } = args;
    for (const firewall of resources.filter((r) => r.type === FIREWALL)) {
      const udp = rulesOf(firewall.props).filter(
        ({ rule }) => isInbound(rule) && (rule.protocol ?? "").toLowerCase() === "udp",
      );
      if (udp.length === 0) {
        continue;
      }
      const ports = udp.map(({ rule }) => rule.port ?? "any").join(", ");
      const servers = serversOf(firewall, resources);
      if (servers.length === 0) {
        reportViolation(
          `firewall ${firewall.name} opens UDP ${ports} but is attached to no server: ` +
            "attach it to the host it belongs to with a FirewallAttachment, or remove the UDP rule",
          firewall.urn,
        );
        continue;
      }
      for (const server of servers) {
        const host = labelsOf(server).host;
        if (host === undefined) {
          reportViolation(
            `firewall ${firewall.name} opens UDP ${ports} on server ${server.name}, which has no host label: ` +
              "label the server host=<name> as HetznerHost does, so its WireGuard peer can be found",
            firewall.urn,
          );
          continue;
        }
        const config = meshConfigCommand(host, resources);
        if (config === undefined) {
          reportViolation(
            `firewall ${firewall.name} opens UDP ${ports} on host ${host}, which runs no WireGuard peer: ` +
              "add the host to the mesh (swarm:hosts), or remove the UDP rule",
            firewall.urn,
          );
          continue;
        }
        const listenPort = listenPortOf(config);
        if (listenPort === undefined) {
          continue;
        }
        for (const { rule, index } of udp) {
          const [from, to] = portRange(rule.port);
          if (from !== listenPort || to !== listenPort) {
            reportViolation(
              `firewall ${firewall.name} ${ruleName(rule, index)} opens UDP ${rule.port ?? "any"} on host ${host}, ` +
                `whose WireGuard listens on ${listenPort} only: open exactly swarm:mesh.listenPort (${listenPort})`,
              firewall.urn,
            );
          }
        }
      }
    }
  },
};

/**
 * An address or CIDR as a closed range of one space that holds both families, IPv6 above 2^128 so
 * the two never meet; host bits masked as `wg` masks them. Undefined when it is neither family.
 * Written here, not imported, so that the pack reads the rendered files on its own terms.
 */
export function addressBlock(text: string): { readonly start: bigint; readonly end: bigint } | undefined {
  const [address, prefixText, extra] = text.trim().split("/");
  const six = address.includes(":");
  const bits = six ? 128 : 32;
  const prefix = prefixText === undefined ? bits : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  const value = six ? ipv6Value(address) : ipv4Value(address);
  if (value === undefined || extra !== undefined || !(prefix >= 0 && prefix <= bits)) {
    return undefined;
  }
  const size = 1n << BigInt(bits - prefix);
  const start = value - (value % size) + (six ? 1n << 128n : 0n);
  return { start, end: start + size - 1n };
}

function ipv4Value(text: string): bigint | undefined {
  const octets = text.split(".");
  if (octets.length !== 4 || !octets.every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255)) {
    return undefined;
  }
  return octets.reduce((acc, o) => (acc << 8n) | BigInt(o), 0n);
}

function ipv6Value(text: string): bigint | undefined {
  const halves = text.split("::");
  const groups = (part: string) => (part === "" ? [] : part.split(":"));
  if (halves.length > 2) {
    return undefined;
  }
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) {
    return undefined;
  }
  const all = [...head, ...Array<string>(missing).fill("0"), ...tail];
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) {
    return undefined;
  }
  return all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** A host's interface as its rendered `wg0.conf` says: its addresses, and each peer (by its name comment) with its AllowedIPs. */
export function interfaceOf(
  create: string,
): { addresses: string[]; peers: { name: string; allowedIps: string[] }[] } | undefined {
  const lines = create.split("\n");
  const first = lines.indexOf("[Interface]");
  if (first < 0) {
    return undefined;
  }
  const addresses: string[] = [];
  const peers: { name: string; allowedIps: string[] }[] = [];
  for (const line of lines.slice(first + 1)) {
    if (/^SWARM_[A-Z_]*EOF/.test(line)) {
      break;
    }
    const [key, value] = [line.slice(0, line.indexOf(" = ")), line.slice(line.indexOf(" = ") + 3)];
    if (line === "[Peer]") {
      peers.push({ name: `peer ${peers.length + 1}`, allowedIps: [] });
    } else if (line.startsWith("# ") && peers.length > 0 && peers[peers.length - 1].allowedIps.length === 0) {
      peers[peers.length - 1].name = line.slice(2);
    } else if (key === "Address" && peers.length === 0) {
      addresses.push(...value.split(",").map((a) => a.trim()));
    } else if (key === "AllowedIPs" && peers.length > 0) {
      peers[peers.length - 1].allowedIps.push(
        ...value
          .split(",")
          .map((a) => a.trim())
          .filter((a) => a !== ""),
      );
    }
  }
  return { addresses, peers };
}

export const wireguardAllowedIpsDisjoint: StackValidationPolicy = {
  name: "wireguard-allowedips-disjoint",
  description:
    "On every host's WireGuard interface, no two peers' AllowedIPs overlap, IPv4 or IPv6, and no peer's holds the interface's own address unless it is the only peer (a host routed through the hub).",
  remediationSteps:
    "Give every peer disjoint AllowedIPs: one /32 and one /128 per peer, routes that overlap neither the mesh nor each other; only a host whose single peer is the hub routes the whole mesh block and IPv6 prefix to it.",
  validateStack: (args, reportViolation) => {
    for (const command of args.resources) {
      if (
        command.type !== REMOTE_COMMAND ||
        command.parent?.type !== MESH_COMPONENT ||
        !/-config$/.test(command.name)
      ) {
        continue;
      }
      const create = known(() => command.props.create);
      const iface = typeof create === "string" ? interfaceOf(create) : undefined;
      if (iface === undefined) {
        continue;
      }
      const entries = iface.peers.flatMap((peer, index) =>
        peer.allowedIps.map((text) => ({ index, peer: peer.name, text, block: addressBlock(text) })),
      );
      for (const entry of entries.filter((e) => e.block === undefined)) {
        reportViolation(
          `${command.name}: AllowedIPs entry of ${entry.peer} is not an IPv4 or IPv6 block: render the configuration from validated config`,
          command.urn,
        );
      }
      const blocks = entries.flatMap((e) => (e.block === undefined ? [] : [{ ...e, block: e.block }]));
      if (iface.peers.length > 1) {
        for (const address of iface.addresses) {
          const own = addressBlock(address.split("/")[0]);
          const holder = own && blocks.find((e) => e.block.start <= own.start && own.start <= e.block.end);
          if (holder) {
            reportViolation(
              `${command.name}: AllowedIPs ${holder.text} of ${holder.peer} hold the interface's own address ${address.split("/")[0]}: ` +
                "only an interface whose single peer is the hub carries the mesh block",
              command.urn,
            );
          }
        }
      }
      // Blocks nest or are disjoint: sorted by start (the wider first), each overlaps the open block that holds it.
      const sorted = [...blocks].sort((a, b) =>
        a.block.start < b.block.start
          ? -1
          : a.block.start > b.block.start
            ? 1
            : a.block.end > b.block.end
              ? -1
              : a.block.end < b.block.end
                ? 1
                : 0,
      );
      const open: typeof sorted = [];
      for (const entry of sorted) {
        while (open.length > 0 && open[open.length - 1].block.end < entry.block.start) {
          open.pop();
        }
        const other = open.find((o) => o.index !== entry.index);
        if (other !== undefined) {
          reportViolation(
            `${command.name}: AllowedIPs ${other.text} of ${other.peer} and ${entry.text} of ${entry.peer} overlap: ` +
              "WireGuard would send the shared addresses to only one of them (cryptokey routing collision)",
            command.urn,
          );
        }
        open.push(entry);
      }
    }
  },
};

/** Every policy of the pack, in the order the engine reports them. */
export const policies = [
  noPublicSsh,
  fleetLabels,
  noPlainPrivateKeys,
  wireguardPortsOnMeshHosts,
  wireguardAllowedIpsDisjoint,
];

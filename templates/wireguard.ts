/**
 * WireGuard interface `wg0`: its configuration file and the scripts that
 * install the private key, apply the configuration and tear it down.
 *
 * The rendered configuration is the public part only. The private key
 * travels separately on a command's standard input into `wg0.key`, and the
 * apply script splices it into `wg0.conf` on the host with bash builtins, so
 * it never appears in a process argument, a rendered file or plain state.
 */
import { FleetPlan } from "../config/model";
import { WireGuardImplementation } from "../config/types";
import { script, shellQuote, writeFile } from "./shell";

export const WG_INTERFACE = "wg0";
export const WG_DIR = "/etc/wireguard";
export const WG_KEY_PATH = `${WG_DIR}/${WG_INTERFACE}.key`;
export const WG_CONF_PATH = `${WG_DIR}/${WG_INTERFACE}.conf`;
export const WG_PUBLIC_CONF_PATH = `${WG_DIR}/${WG_INTERFACE}.conf.public`;
export const WG_UNIT = `wg-quick@${WG_INTERFACE}`;
export const WG_USERSPACE_DROPIN = `/etc/systemd/system/${WG_UNIT}.service.d/swarm-userspace.conf`;

/** A base64 Curve25519 key: 32 bytes, so 43 characters and one `=`, the last character carrying 2 zero bits. */
const KEY_PATTERN = "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";

export interface WireGuardPeerValues {
  /** Peer host name, written as a comment above its keys. */
  readonly name: string;
  readonly publicKey: string;
  /** AllowedIPs: the peer's mesh address as a /32, then its routes. */
  readonly allowedIps: readonly string[];
  /** Public address of the peer (IPv4, IPv6 or DNS name), without port. */
  readonly endpointAddress: string;
  readonly endpointPort: number;
  /** PersistentKeepalive in seconds; absent or 0 leaves it out. */
  readonly persistentKeepalive?: number;
}

export interface WireGuardConfigValues {
  /** The host's mesh address with the mesh prefix, e.g. `10.8.0.1/24`. */
  readonly address: string;
  readonly listenPort: number;
  /** Interface MTU; absent lets wg-quick choose. */
  readonly mtu?: number;
  /** Peers in any order; rendered sorted by name. */
  readonly peers: readonly WireGuardPeerValues[];
}

/** What a host's configuration needs to know about each peer once the program has resolved it. */
export interface PeerIdentity {
  readonly publicKey: string;
  /** Public address, without port. */
  readonly endpoint: string;
}

/**
 * The configuration values of `host`'s interface: its mesh address with the
 * mesh prefix, and one peer per host of its topology with AllowedIPs from
 * the plan (the peer's /32, then its routes).
 */
export function wireguardConfigValues(
  plan: FleetPlan,
  host: string,
  identities: Readonly<Record<string, PeerIdentity>>,
): WireGuardConfigValues {
  const hostPlan = plan.byName.get(host);
  if (hostPlan === undefined) {
    throw new Error(`host ${host} is not in the fleet plan`);
  }
  const mesh = plan.config.mesh;
  return {
    address: `${hostPlan.meshAddress}/${mesh.cidr.split("/")[1]}`,
    listenPort: mesh.listenPort,
    mtu: mesh.mtu,
    peers: hostPlan.peers.map((peer) => {
      const identity = identities[peer.name];
      if (identity === undefined) {
        throw new Error(`host ${host} peers with ${peer.name}, whose public key and endpoint are unknown`);
      }
      return {
        name: peer.name,
        publicKey: identity.publicKey,
        allowedIps: peer.allowedIps,
        endpointAddress: identity.endpoint,
        endpointPort: mesh.listenPort,
        persistentKeepalive: mesh.persistentKeepalive,
      };
    }),
  };
}

/** `addr:port`, with IPv6 addresses bracketed as WireGuard expects. */
export function formatEndpoint(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * The public part of `wg0.conf`: everything but the `PrivateKey` line. Pure
 * and deterministic: peers sorted by name.
 */
export function renderWireGuardConfig(values: WireGuardConfigValues): string {
  const lines = ["[Interface]", `Address = ${values.address}`, `ListenPort = ${values.listenPort}`];
  if (values.mtu !== undefined) {
    lines.push(`MTU = ${values.mtu}`);
  }
  const peers = [...values.peers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const peer of peers) {
    lines.push(
      "",
      "[Peer]",
      `# ${peer.name}`,
      `PublicKey = ${peer.publicKey}`,
      `AllowedIPs = ${peer.allowedIps.join(", ")}`,
      `Endpoint = ${formatEndpoint(peer.endpointAddress, peer.endpointPort)}`,
    );
    if (peer.persistentKeepalive !== undefined && peer.persistentKeepalive > 0) {
      lines.push(`PersistentKeepalive = ${peer.persistentKeepalive}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/**
 * Installs the private key read from standard input as `wg0.key` (0600).
 * The key is checked for shape before anything is written.
 */
export function wireguardKeyScript(host: string): string {
  return script(
    `swarm_host=${shellQuote(host)}
wg_key=
IFS= read -r wg_key || true
if ! [[ $wg_key =~ ${KEY_PATTERN} ]]; then
  echo "swarm: $swarm_host: standard input does not hold a base64 Curve25519 private key; the key command must receive the host's WireGuard private key" >&2
  exit 1
fi
swarm_write ${WG_KEY_PATH} 0600 root:root < <(printf '%s\\n' "$wg_key")
# swarm_write makes parent directories 0755; the WireGuard directory stays private.
chmod 0700 ${WG_DIR}
`,
  );
}

/** Removes the private key. */
export function wireguardKeyTeardownScript(): string {
  return `rm -f ${WG_KEY_PATH}\necho "swarm: removed ${WG_KEY_PATH}"\n`;
}

export interface WireGuardApplyValues {
  /** Host name, used in every message. */
  readonly host: string;
  readonly config: WireGuardConfigValues;
  /** The public key the host's private key must yield. */
  readonly publicKey: string;
  readonly implementation: WireGuardImplementation;
}

/**
 * Applies `wg0.conf` on a host without dropping other tunnels: brings the
 * interface up the first time, restarts it only when its address, MTU or
 * implementation changed, and otherwise updates peers in place with
 * `wg syncconf`. Fails unless the running interface has the expected key.
 */
export function wireguardApplyScript(values: WireGuardApplyValues): string {
  const publicConfig = renderWireGuardConfig(values.config);
  const dropinDir = WG_USERSPACE_DROPIN.slice(0, WG_USERSPACE_DROPIN.lastIndexOf("/"));
  const implementation =
    values.implementation === "wireguard-go"
      ? `# wg-quick falls back to this userspace implementation when the kernel has no WireGuard module.
${writeFile({
  path: WG_USERSPACE_DROPIN,
  mode: "0644",
  content: "[Service]\nEnvironment=WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go\n",
})}if swarm_changed ${WG_USERSPACE_DROPIN}; then
  systemctl daemon-reload
  wg_restart=1
fi
`
      : `if [ -e ${WG_USERSPACE_DROPIN} ]; then
  rm -f ${WG_USERSPACE_DROPIN}
  rmdir --ignore-fail-on-non-empty ${dropinDir}
  systemctl daemon-reload
  echo "swarm: removed ${WG_USERSPACE_DROPIN}"
  wg_restart=1
fi
`;
  const mtuCheck =
    values.config.mtu === undefined
      ? ""
      : `  local link
  link=$(ip -o link show dev ${WG_INTERFACE})
  [[ $link == *" mtu ${values.config.mtu} "* ]] || return 1
`;
  return script(
    `swarm_host=${shellQuote(values.host)}
wg_expected=${shellQuote(values.publicKey)}
wg_restart=0
if [ ! -f ${WG_KEY_PATH} ]; then
  echo "swarm: $swarm_host: ${WG_KEY_PATH} is missing; it is written by the host's WireGuard key command, run pulumi up again" >&2
  exit 1
fi
wg_key=
IFS= read -r wg_key <${WG_KEY_PATH} || true
if ! [[ $wg_key =~ ${KEY_PATTERN} ]]; then
  echo "swarm: $swarm_host: ${WG_KEY_PATH} does not hold a base64 Curve25519 private key; delete it and run pulumi up again" >&2
  exit 1
fi
# The key reaches wg on standard input, never as an argument.
wg_derived=$(wg pubkey <${WG_KEY_PATH})
if [ "$wg_derived" != "$wg_expected" ]; then
  echo "swarm: $swarm_host: ${WG_KEY_PATH} holds the key of $wg_derived, expected $wg_expected; run pulumi up again so the key command rewrites it" >&2
  exit 1
fi

${writeFile({ path: WG_PUBLIC_CONF_PATH, mode: "0644", content: publicConfig })}
# The full configuration is the public part with the private key after [Interface],
# assembled with builtins only.
swarm_wg_assemble() {
  local line
  while IFS= read -r line; do
    printf '%s\\n' "$line"
    if [ "$line" = "[Interface]" ]; then
      printf 'PrivateKey = %s\\n' "$wg_key"
    fi
  done <${WG_PUBLIC_CONF_PATH}
}
swarm_write ${WG_CONF_PATH} 0600 root:root < <(swarm_wg_assemble)
chmod 0700 ${WG_DIR}

${implementation}
# wg syncconf applies peers and the listen port; address and MTU need the interface recreated.
swarm_wg_interface_matches() {
  local addresses
  addresses=$(ip -4 -o address show dev ${WG_INTERFACE})
  [[ $addresses == *" inet ${values.config.address} "* ]] || return 1
${mtuCheck}  return 0
}
if ! ip link show dev ${WG_INTERFACE} >/dev/null 2>&1; then
  systemctl enable --now --quiet ${WG_UNIT}
  echo "swarm: $swarm_host: started ${WG_UNIT}"
elif [ "$wg_restart" = 1 ] || ! swarm_wg_interface_matches; then
  systemctl restart ${WG_UNIT}
  echo "swarm: $swarm_host: restarted ${WG_UNIT}: its address, MTU or implementation changed"
elif swarm_changed ${WG_CONF_PATH}; then
  # Stripped first so that a failing wg-quick stops the script instead of
  # handing wg an empty configuration, which would remove every peer.
  wg_stripped=$(wg-quick strip ${WG_INTERFACE})
  wg syncconf ${WG_INTERFACE} <(printf '%s\\n' "$wg_stripped")
  echo "swarm: $swarm_host: updated ${WG_INTERFACE} in place with wg syncconf"
fi
systemctl enable --quiet ${WG_UNIT}

wg_running=$(wg show ${WG_INTERFACE} public-key 2>/dev/null) || wg_running="none (${WG_INTERFACE} is not up)"
if [ "$wg_running" != "$wg_expected" ]; then
  echo "swarm: $swarm_host: ${WG_INTERFACE} runs public key $wg_running, expected $wg_expected" >&2
  exit 1
fi
echo "swarm: $swarm_host: ${WG_INTERFACE} is up with public key $wg_expected and ${values.config.peers.length} peer(s)"
`,
  );
}

/** Stops and disables the interface and removes what the apply script wrote. */
export function wireguardTeardownScript(): string {
  return `if systemctl cat ${WG_UNIT} >/dev/null 2>&1; then
  systemctl disable --now --quiet ${WG_UNIT}
  echo "swarm: stopped and disabled ${WG_UNIT}"
fi
rm -f ${WG_CONF_PATH} ${WG_PUBLIC_CONF_PATH}
if [ -e ${WG_USERSPACE_DROPIN} ]; then
  rm -f ${WG_USERSPACE_DROPIN}
  rmdir --ignore-fail-on-non-empty ${WG_USERSPACE_DROPIN.slice(0, WG_USERSPACE_DROPIN.lastIndexOf("/"))}
  systemctl daemon-reload
fi
echo "swarm: removed ${WG_CONF_PATH}"
`;
}

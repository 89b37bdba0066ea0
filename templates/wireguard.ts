/**
 * WireGuard interface `wg0`: its configuration file and the scripts that
 * install the private key, apply the configuration and tear it down.
 *
 * The rendered configuration is the public part only. The private key
 * travels separately on a command's standard input into `wg0.key`, and the
 * apply script splices it into `wg0.conf` on the host with bash builtins, so
 * it never appears in a process argument, a rendered file or plain state.
 */
import { isIPv4, isIPv6 } from "node:net";
import { FleetPlan } from "../config/model";
import { EndpointFamily, hostPort } from "../config/endpoints";
import type { WireGuardConfigStep } from "../config/plan";
import { WireGuardImplementation } from "../config/types";
import { hostScript, script, shellQuote, writeFile } from "./shell";

export const WG_INTERFACE = "wg0";
export const WG_DIR = "/etc/wireguard";
export const WG_KEY_PATH = `${WG_DIR}/${WG_INTERFACE}.key`;
export const WG_CONF_PATH = `${WG_DIR}/${WG_INTERFACE}.conf`;
export const WG_PUBLIC_CONF_PATH = `${WG_DIR}/${WG_INTERFACE}.conf.public`;
export const WG_UNIT = `wg-quick@${WG_INTERFACE}`;
export const WG_USERSPACE_DROPIN = `/etc/systemd/system/${WG_UNIT}.service.d/swarm-userspace.conf`;
/** On the hub of hub routing: re-applies forwarding and the forward filter each time the interface comes up. */
export const HUB_ROUTING_DROPIN = `/etc/systemd/system/${WG_UNIT}.service.d/swarm-hub-routing.conf`;
/** The hub's forward filter, loaded with `nft -f`. */
export const HUB_RULESET_PATH = `${WG_DIR}/${WG_INTERFACE}-hub-routing.nft`;
/**
 * On a hub that did not forward IPv6 before the mesh was dual-stack: the rule that keeps forwarded
 * IPv6 inside the mesh, included by the ruleset (`hostscripts/hub-routing.sh` writes it).
 */
export const HUB_KEEPOUT6_PATH = `${WG_DIR}/${WG_INTERFACE}-hub-routing-ipv6.nft`;
/** The nftables table swarm owns on the hub: `inet swarm_hub`. */
export const HUB_TABLE = { family: "inet", name: "swarm_hub" } as const;
/** The comments of the hub's forward rules, which name each rule (and its counter) in `nft list`. */
export const HUB_RULE_COMMENTS = {
  between: "between mesh peers",
  out: "from the mesh to anywhere else",
  in: "from anywhere else into the mesh",
} as const;

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
  /** The host's IPv6 mesh address with its /64, in a dual-stack mesh. */
  readonly address6?: string;
  readonly listenPort: number;
  /** Interface MTU; absent lets wg-quick choose. */
  readonly mtu?: number;
  /** Peers in any order; rendered sorted by name. */
  readonly peers: readonly WireGuardPeerValues[];
}

/** What a host's configuration needs to know about each peer once the program has resolved it. */
export interface PeerIdentity {
  readonly publicKey: string;
  /** Public address, without port: IPv4 when the host has it, else IPv6, or a DNS name. */
  readonly endpoint: string;
  /** The host's IPv6 address beside an IPv4 `endpoint`, when it has one: peers without IPv4 dial it. */
  readonly endpoint6?: string;
}

/** The address a host dials `identity`'s WireGuard port at, in the family the plan chose for the pair. */
export function dialledAddress(identity: PeerIdentity, family: EndpointFamily): string {
  return family === "IPv6" ? (identity.endpoint6 ?? identity.endpoint) : identity.endpoint;
}

/** The configuration values of a host's interface, from its step and its peers' keys and endpoints. */
export function wireguardValues(
  step: WireGuardConfigStep,
  identities: Readonly<Record<string, PeerIdentity>>,
): WireGuardConfigValues {
  return {
    address: step.address,
    ...(step.address6 === undefined ? {} : { address6: step.address6 }),
    listenPort: step.listenPort,
    mtu: step.mtu,
    peers: step.peers.map((peer) => {
      const identity = identities[peer.name];
      if (identity === undefined) {
        throw new Error(
          `host ${step.host} peers with ${peer.name}, whose public key and endpoint are unknown`,
        );
      }
      return {
        name: peer.name,
        publicKey: identity.publicKey,
        allowedIps: peer.allowedIps,
        endpointAddress: dialledAddress(identity, peer.endpointFamily),
        endpointPort: step.listenPort,
        persistentKeepalive: step.persistentKeepalive,
      };
    }),
  };
}

/** `wireguardValues` of `host`'s WireGuard config step in the plan. */
export function wireguardConfigValues(
  plan: FleetPlan,
  host: string,
  identities: Readonly<Record<string, PeerIdentity>>,
): WireGuardConfigValues {
  const step = plan.byName
    .get(host)
    ?.steps.find((s): s is WireGuardConfigStep => s.kind === "wireguardConfig");
  if (step === undefined) {
    throw new Error(`host ${host} is not in the fleet plan`);
  }
  return wireguardValues(step, identities);
}

/**
 * The public part of `wg0.conf`: everything but the `PrivateKey` line. Pure
 * and deterministic: peers sorted by name.
 */
export function renderWireGuardConfig(values: WireGuardConfigValues): string {
  const address = values.address6 === undefined ? values.address : `${values.address}, ${values.address6}`;
  const lines = ["[Interface]", `Address = ${address}`, `ListenPort = ${values.listenPort}`];
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
      `Endpoint = ${hostPort(peer.endpointAddress, peer.endpointPort)}`,
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

/** How `wg show` prints a peer's endpoint once set from `address`: literal addresses canonical, IPv6 in brackets; `*` for a DNS name, whose resolved address the plan does not know. */
export function endpointAsShown(address: string, port: number): string {
  if (isIPv4(address)) {
    return `${address}:${port}`;
  }
  if (isIPv6(address)) {
    // The URL parser writes IPv6 the way the kernel and wireguard-go print it (RFC 5952).
    return `${new URL(`http://[${address}]/`).hostname}:${port}`;
  }
  return "*";
}

/**
 * The plan's peers as the apply script reads them, one a line: name, public
 * key, AllowedIPs sorted (byte order, as `sort` has it under `LC_ALL=C`) and
 * comma-separated as `wg show dump` writes them, and the endpoint as
 * `endpointAsShown`. Sorted by name.
 */
export function planPeerLines(config: WireGuardConfigValues): string {
  return [...config.peers]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map(
      (peer) =>
        `${peer.name} ${peer.publicKey} ${[...peer.allowedIps].sort().join(",")} ${endpointAsShown(peer.endpointAddress, peer.endpointPort)}\n`,
    )
    .join("");
}

export interface WireGuardApplyValues {
  /** Host name, used in every message. */
  readonly host: string;
  readonly config: WireGuardConfigValues;
  /** The public key the host's private key must yield. */
  readonly publicKey: string;
  readonly implementation: WireGuardImplementation;
  /** The host is the hub of hub routing: it forwards between its peers. */
  readonly forwards: boolean;
}

const WG_CONF_NAME = WG_CONF_PATH.slice(WG_DIR.length + 1);
const WG_PUBLIC_CONF_NAME = WG_PUBLIC_CONF_PATH.slice(WG_DIR.length + 1);

/**
 * `functions` with `hostscripts/wg-allowed-add.pl` in place of the one line
 * of the here-document that `swarm_wg_allowed_add` hands to perl.
 */
function withAllowedAdd(functions: string): string {
  const placeholder = /^die "wg-allowed-add: this copy of the script was not given .*\n/m;
  const program = hostScript("wg-allowed-add.pl");
  if (!placeholder.test(functions) || /^WG_ALLOWED_ADD$/m.test(program) || !program.endsWith("\n")) {
    throw new Error("wireguard-check.sh and wg-allowed-add.pl no longer fit: see swarm_wg_allowed_add");
  }
  return functions.replace(placeholder, () => program);
}

/**
 * Functions of the apply script that read the plan's peers, the files and
 * the running interface, change it in place, and undo an apply. They use the
 * variables the script sets before them: `wg_previous`, `wg_stripped`,
 * `wg_plan_order`, `wg_plan_*`. (The lab runs `swarm_wg_allowed_add` and
 * `swarm_wg_take_away` from here as they are.)
 */
export const WG_CHECK_FUNCTIONS = withAllowedAdd(
  hostScript("wireguard-check.sh", {
    wg_interface: WG_INTERFACE,
    wg_dir: WG_DIR,
    wg_conf_name: WG_CONF_NAME,
    wg_public_conf_name: WG_PUBLIC_CONF_NAME,
    wg_conf_path: WG_CONF_PATH,
    wg_unit: WG_UNIT,
  }),
);

/** Functions that turn hub routing on and off (`hostscripts/hub-routing.sh`); `ipv6`: the mesh is dual-stack. */
function hubRoutingFunctions(ipv6: boolean): string {
  return hostScript("hub-routing.sh", {
    wg_interface: WG_INTERFACE,
    hub_dropin: HUB_ROUTING_DROPIN,
    hub_ruleset: HUB_RULESET_PATH,
    hub_keepout6: HUB_KEEPOUT6_PATH,
    hub_family: HUB_TABLE.family,
    hub_table: HUB_TABLE.name,
    hub_ipv6: ipv6 ? "1" : "0",
  });
}

/**
 * The hub's forward filter. Loading it replaces the table whole (the empty
 * declaration makes the delete succeed on the first load) and nothing else.
 */
export function renderHubRuleset(ipv6 = false): string {
  const table = `table ${HUB_TABLE.family} ${HUB_TABLE.name}`;
  return `# Installed by swarm: ${WG_INTERFACE} forwards between its WireGuard peers and nowhere else.
${table}
delete ${table}
${table} {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "${WG_INTERFACE}" oifname "${WG_INTERFACE}" counter accept comment "${HUB_RULE_COMMENTS.between}"
		iifname "${WG_INTERFACE}" counter drop comment "${HUB_RULE_COMMENTS.out}"
		oifname "${WG_INTERFACE}" counter drop comment "${HUB_RULE_COMMENTS.in}"
	}
}
${
  ipv6
    ? `# Present only where the hub turned IPv6 forwarding on; a pattern that matches nothing is no error.
include "${HUB_KEEPOUT6_PATH}*"
`
    : ""
}`;
}

/** The drop-in that applies hub routing each time `wg0` comes up; a failure is logged and never takes `wg0` down. */
export function renderHubRoutingDropin(ipv6 = false): string {
  return `[Service]
ExecStartPost=-nft -f ${HUB_RULESET_PATH}
ExecStartPost=-sysctl -q -w net.ipv4.conf.${WG_INTERFACE}.forwarding=1 net.ipv4.conf.${WG_INTERFACE}.send_redirects=0
${
  ipv6
    ? `ExecStartPost=-/bin/sh -c 'test -e ${HUB_KEEPOUT6_PATH} || exit 0; for f in /proc/sys/net/ipv6/conf/*/accept_ra; do [ "$$(cat "$$f")" != 1 ] || echo 2 >"$$f"; done; sysctl -q -w net.ipv6.conf.all.forwarding=1'
`
    : ""
}`;
}

/** Hub routing in the apply script: the files on the hub (applied once the interface runs as planned), their removal elsewhere. */
function hubRoutingFiles(forwards: boolean, ipv6: boolean): string {
  return forwards
    ? `${writeFile({ path: HUB_RULESET_PATH, mode: "0644", content: renderHubRuleset(ipv6) })}${writeFile({
        path: HUB_ROUTING_DROPIN,
        mode: "0644",
        content: renderHubRoutingDropin(ipv6),
      })}swarm_reload
`
    : "swarm_hub_routing_off\n";
}

/**
 * The interface's IPv6 address set in place when the interface was neither started nor restarted
 * (dual-stack turned on or off, or the address changed): on a change, a failure to undo is the sync
 * rollback's, which puts the previous addresses back too.
 */
function readdress6(address6: string | undefined): string {
  return `if [ -z "$wg_failed" ] && { [ -z "$wg_applied" ] || [ "$wg_applied" = sync ]; }; then
  if ! swarm_wg_readdress6 ${address6 === undefined ? "" : shellQuote(address6)}; then
    wg_applied=sync
    wg_failed="ip refused to change the IPv6 address of ${WG_INTERFACE} (above)"
  elif [ -n "$wg_readdressed" ]; then
    wg_applied=sync
    echo "swarm: $swarm_host: changed the IPv6 address of ${WG_INTERFACE} in place:$wg_readdressed"
  fi
fi`;
}

/**
 * Applies `wg0.conf` on a host without dropping other tunnels: brings the
 * interface up the first time, restarts it only when its address, MTU or
 * implementation changed, and otherwise changes in place only the peers
 * that differ (`swarm_wg_sync` in `hostscripts/wireguard-check.sh`: unlike
 * `wg syncconf`, it leaves unchanged peers alone, and never replaces a
 * peer's AllowedIPs: it adds and takes away only the CIDRs that change, so
 * those the peer keeps never stop matching). A new configuration that lacks a peer of the plan is
 * refused before anything runs it; once applied, the running interface is
 * compared with the plan (public key, peers, AllowedIPs, endpoints), and on
 * any difference the previous configuration is put back and the command
 * fails naming each difference.
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
# The plan's peers, one a line: name, public key, AllowedIPs, endpoint ("*": a DNS name).
# The new configuration and the running interface are checked against them.
mapfile -t wg_plan_peers <<'SWARM_PLAN_EOF'
${planPeerLines(values.config)}SWARM_PLAN_EOF
wg_plan_order=()
declare -A wg_plan_name=() wg_plan_allowed=() wg_plan_endpoint=()
for wg_line in "\${wg_plan_peers[@]}"; do
  read -r wg_name wg_peer wg_allowed wg_endpoint <<<"$wg_line"
  wg_plan_order+=("$wg_peer")
  wg_plan_name[$wg_peer]=$wg_name
  wg_plan_allowed[$wg_peer]=$wg_allowed
  wg_plan_endpoint[$wg_peer]=$wg_endpoint
done
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

${WG_CHECK_FUNCTIONS}
${hubRoutingFunctions(values.config.address6 !== undefined)}
# The files as they were, to put back when the new ones are refused or do not run as planned.
# mktemp -d makes the directory 0700 and cp -p keeps ${WG_CONF_NAME} 0600.
wg_previous=$(mktemp -d ${WG_DIR}/.${WG_INTERFACE}.previous.XXXXXX)
trap 'rm -rf "$wg_previous"' EXIT
for wg_file in ${WG_CONF_PATH} ${WG_PUBLIC_CONF_PATH}; do
  if [ -f "$wg_file" ]; then
    cp -p "$wg_file" "$wg_previous/"
  fi
done
# The IPv6 addresses the interface runs now, to put back if this run is undone.
swarm_wg_addresses6
wg_addresses6_before=("\${wg_live6[@]}")
declare -A wg_endpoint_before=() wg_endpoint_now=()
while read -r wg_peer wg_endpoint; do
  wg_endpoint_before[$wg_peer]=$wg_endpoint
done < <(swarm_wg_file_endpoints "$wg_previous/${WG_PUBLIC_CONF_NAME}")

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
while read -r wg_peer wg_endpoint; do
  wg_endpoint_now[$wg_peer]=$wg_endpoint
done < <(swarm_wg_file_endpoints ${WG_PUBLIC_CONF_PATH})

# An update removes the running peers the file lacks, and wg-quick starts with whatever the file
# holds: a truncated or empty configuration (a rendering or delivery fault) would drop every tunnel
# at once. What wg would read must name every peer of the plan before anything reads it.
if ! wg_stripped=$(wg-quick strip ${WG_INTERFACE}); then
  swarm_wg_restore_files
  fail "wg-quick cannot read the new ${WG_CONF_PATH} (above); ${WG_INTERFACE} keeps its running configuration and the previous files are back"
fi
declare -A wg_file_peers=()
while IFS= read -r wg_line; do
  case $wg_line in "PublicKey = "*) wg_file_peers[\${wg_line#PublicKey = }]=1 ;; esac
done < <(printf '%s\\n' "$wg_stripped")
wg_missing=()
for wg_peer in "\${wg_plan_order[@]}"; do
  [ -n "\${wg_file_peers[$wg_peer]-}" ] || wg_missing+=("\${wg_plan_name[$wg_peer]} ($wg_peer)")
done
if [ \${#wg_missing[@]} -gt 0 ]; then
  swarm_wg_restore_files
  fail "refused the new ${WG_CONF_PATH}: it holds \${#wg_file_peers[@]} peer(s), the plan has \${#wg_plan_order[@]}; missing: \${wg_missing[*]}. ${WG_INTERFACE} keeps its running configuration and the previous files are back; run pulumi up again"
fi

${implementation}${hubRoutingFiles(values.forwards, values.config.address6 !== undefined)}
# Peers, the key and the listen port change in place; address and MTU need the interface recreated.
swarm_wg_interface_matches() {
  local addresses
  addresses=$(ip -4 -o address show dev ${WG_INTERFACE})
  [[ $addresses == *" inet ${values.config.address} "* ]] || return 1
${mtuCheck}  return 0
}
wg_applied=
wg_failed=
declare -A wg_rx_before=()
if ! ip link show dev ${WG_INTERFACE} >/dev/null 2>&1; then
  wg_applied=start
  if systemctl enable --now --quiet ${WG_UNIT}; then
    echo "swarm: $swarm_host: started ${WG_UNIT}"
  else
    wg_failed="${WG_UNIT} did not start: see journalctl -u ${WG_UNIT}"
  fi
elif [ "$wg_restart" = 1 ] || ! swarm_wg_interface_matches; then
  wg_applied=restart
  if systemctl restart ${WG_UNIT}; then
    echo "swarm: $swarm_host: restarted ${WG_UNIT}: its address, MTU or implementation changed"
  else
    wg_failed="${WG_UNIT} did not restart: see journalctl -u ${WG_UNIT}"
  fi
elif swarm_changed ${WG_CONF_PATH} || ! swarm_wg_live_as_planned; then
  # Files unchanged but the interface not as planned: a peer added or changed by hand (drift).
  wg_applied=sync
  if swarm_wg_read_live; then
    for wg_peer in "\${!wg_live_rx[@]}"; do
      wg_rx_before[$wg_peer]=\${wg_live_rx[$wg_peer]}
    done
  fi
  if swarm_wg_sync "$wg_stripped"; then
    echo "swarm: $swarm_host: updated ${WG_INTERFACE} in place ($wg_sync_done)"
  else
    wg_failed="wg or ip refused a change the new ${WG_CONF_PATH} makes (above)"
  fi
elif ! swarm_wg_routes "" "\${wg_plan_allowed[*]}"; then
  # Nothing to change on the interface; a route wg-quick would have set up is missing (a CIDR
  # added to a peer in place by an earlier version) and could not be added.
  wg_failed="a route through ${WG_INTERFACE} could not be added (above)"
fi

${readdress6(values.config.address6)}
# The running interface against the plan. Endpoints: WireGuard moves a peer's endpoint to the
# address an authenticated packet came from (a spoke behind NAT shows on the hub at its NAT
# address), so a live endpoint that differs from the plan is normal for a peer that has spoken.
# Every peer must have one (the plan gives each an Endpoint, and roaming replaces an endpoint,
# never removes it); and a peer whose Endpoint this run changed or added must show the planned
# one unless it has received since the apply (its bytes received grew), which only a packet
# from the peer itself can cause. A DNS name is only checked for being set.
wg_differences=()
[ -z "$wg_failed" ] || wg_differences+=("$wg_failed")
if ! swarm_wg_read_live; then
  wg_differences+=("${WG_INTERFACE} is not up")
else
  if [ "$wg_live_key" != "$wg_expected" ]; then
    wg_differences+=("${WG_INTERFACE} runs public key $wg_live_key, expected $wg_expected")
  fi
  swarm_wg_addresses6
  if [ "\${wg_live6[*]}" != ${shellQuote(values.config.address6 ?? "")} ]; then
    wg_differences+=("${WG_INTERFACE} has IPv6 address(es) \${wg_live6[*]:-(none)}, the plan has ${values.config.address6 ?? "none"}")
  fi
  for wg_peer in "\${wg_plan_order[@]}"; do
    wg_name="peer \${wg_plan_name[$wg_peer]} ($wg_peer)"
    if [ -z "\${wg_live_allowed[$wg_peer]+set}" ]; then
      wg_differences+=("$wg_name is missing from ${WG_INTERFACE}")
      continue
    fi
    if [ "\${wg_live_allowed[$wg_peer]}" != "\${wg_plan_allowed[$wg_peer]}" ]; then
      wg_differences+=("$wg_name has AllowedIPs \${wg_live_allowed[$wg_peer]}, the plan has \${wg_plan_allowed[$wg_peer]}")
    fi
    wg_endpoint=\${wg_live_endpoint[$wg_peer]}
    wg_planned=\${wg_plan_endpoint[$wg_peer]}
    if [ "$wg_endpoint" = "(none)" ]; then
      wg_differences+=("$wg_name has no endpoint, the plan has $wg_planned")
    elif [ "$wg_planned" != "*" ] && [ "$wg_endpoint" != "$wg_planned" ] &&
      [ "\${wg_endpoint_before[$wg_peer]-}" != "\${wg_endpoint_now[$wg_peer]-}" ] &&
      [ "\${wg_live_rx[$wg_peer]}" = "\${wg_rx_before[$wg_peer]-0}" ]; then
      wg_differences+=("$wg_name has endpoint $wg_endpoint, the plan has $wg_planned")
    fi
  done
  for wg_peer in "\${!wg_live_allowed[@]}"; do
    if [ -z "\${wg_plan_name[$wg_peer]+set}" ]; then
      wg_differences+=("${WG_INTERFACE} has peer $wg_peer, which the plan does not name")
    fi
  done
fi
if [ \${#wg_differences[@]} -gt 0 ]; then
  for wg_difference in "\${wg_differences[@]}"; do
    echo "swarm: $swarm_host: $wg_difference" >&2
  done
  if [ -n "$wg_applied" ]; then
    swarm_wg_rollback "$wg_applied"
    fail "${WG_INTERFACE} did not run the new ${WG_CONF_PATH} as planned (above); the previous configuration is back"
  fi
  fail "${WG_INTERFACE} differs from the plan (above), and this run applied nothing to it"
fi
systemctl enable --quiet ${WG_UNIT}
# What swarm owns here beside the files: the unit, and each planned peer with its AllowedIPs.
swarm_own unit ${WG_UNIT}.service
swarm_own interface ${WG_INTERFACE} "$wg_expected"
for wg_peer in "\${wg_plan_order[@]}"; do
  swarm_own peer ${WG_INTERFACE} "\${wg_plan_name[$wg_peer]}" "$wg_peer" "\${wg_plan_allowed[$wg_peer]}"
done
${values.forwards ? "swarm_hub_routing_on\n" : ""}echo "swarm: $swarm_host: ${WG_INTERFACE} is up with public key $wg_expected and \${#wg_plan_order[@]} peer(s) as planned"
`,
  );
}

/** Stops and disables the interface and removes what the apply script wrote. */
export function wireguardTeardownScript(): string {
  return `${hubRoutingFunctions(false)}swarm_hub_routing_off
if systemctl cat ${WG_UNIT} >/dev/null 2>&1; then
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

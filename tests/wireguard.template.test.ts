import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { routingHub } from "../config/model";
import { FleetConfig } from "../config/types";
import {
  endpointAsShown,
  HUB_KEEPOUT6_PATH,
  HUB_ROUTING_DROPIN,
  HUB_RULESET_PATH,
  renderHubRoutingDropin,
  renderHubRuleset,
  planPeerLines,
  renderWireGuardConfig,
  WireGuardApplyValues,
  wireguardApplyScript,
  wireguardConfigValues,
  wireguardKeyScript,
  wireguardKeyTeardownScript,
  wireguardTeardownScript,
  WG_CONF_PATH,
  WG_KEY_PATH,
  WG_PUBLIC_CONF_PATH,
  WG_USERSPACE_DROPIN,
} from "../templates/wireguard";
import {
  FULL_FLEET,
  HUB_FLEET,
  fleet,
  host,
  identitiesOf,
  plan,
  privateKeyOf,
  publicKeyOf,
} from "./meshFixtures";
import { Sandbox } from "./sandbox";
import fc from "fast-check";
import { hostPort } from "../config/endpoints";
import { hostScript } from "../templates/shell";

/** `text` matched literally inside a RegExp. */
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function applyValues(config: FleetConfig, name: string): WireGuardApplyValues {
  const fleetPlan = plan(config);
  return {
    host: name,
    config: wireguardConfigValues(fleetPlan, name, identitiesOf(config)),
    publicKey: publicKeyOf(name),
    implementation: fleetPlan.byName.get(name)?.config.wireguard ?? "kernel",
    forwards: fleetPlan.byName.get(name)?.forwards ?? false,
  };
}

const FLEETS = [
  { fleet: "hub", config: HUB_FLEET },
  { fleet: "full", config: FULL_FLEET },
];
const HOSTS = FLEETS.flatMap(({ fleet: f, config }) =>
  config.hosts.map((h) => ({ fleet: f, config, host: h.name })),
);

describe.each(HOSTS)("$fleet fleet, host $host", ({ config, host: name }) => {
  const values = applyValues(config, name);
  const publicConfig = renderWireGuardConfig(values.config);

  it("renders wg0.conf.public", () => {
    expect(publicConfig).toMatchSnapshot();
  });

  it("renders the apply script", () => {
    expect(wireguardApplyScript(values)).toMatchSnapshot();
  });

  it("has no private key, one /32 per peer (the mesh block for the hub it routes through), peers sorted, and ends with a newline", () => {
    expect(publicConfig).not.toMatch(/PrivateKey/);
    for (const h of config.hosts) {
      expect(publicConfig).not.toContain(privateKeyOf(h.name));
    }
    const peers = [...publicConfig.matchAll(/^# (.+)$/gm)].map((m) => m[1]);
    expect(peers).toEqual([...peers].sort());
    expect(peers).toEqual(
      plan(config)
        .byName.get(name)
        ?.peers.map((p) => p.name),
    );
    const firsts = [...publicConfig.matchAll(/^AllowedIPs = ([^,\n]+)/gm)].map((m) => m[1]);
    const hub = routingHub(config.mesh);
    const routedVia = name === hub ? undefined : hub;
    expect(firsts).toEqual(
      peers.map((p) =>
        p === routedVia ? config.mesh.cidr : `${plan(config).byName.get(p)?.meshAddress}/32`,
      ),
    );
    expect(publicConfig.endsWith("\n")).toBe(true);
  });

  it("embeds the expected public key in the apply script, and no private key", () => {
    const text = wireguardApplyScript(values);
    expect(text).toContain(`wg_expected='${publicKeyOf(name)}'`);
    for (const h of config.hosts) {
      expect(text).not.toContain(privateKeyOf(h.name));
    }
  });
});

describe("renderWireGuardConfig", () => {
  it("sorts peers by name whatever order they come in", () => {
    const values = applyValues(FULL_FLEET, "anchor").config;
    const reversed = { ...values, peers: [...values.peers].reverse() };
    expect(renderWireGuardConfig(reversed)).toBe(renderWireGuardConfig(values));
  });

  it("leaves out MTU when unset and PersistentKeepalive when 0", () => {
    const text = renderWireGuardConfig(
      wireguardConfigValues(
        plan(fleet([host({ name: "a" }), host({ name: "b" })], { persistentKeepalive: 0 })),
        "a",
        identitiesOf(fleet([host({ name: "a" }), host({ name: "b" })])),
      ),
    );
    expect(text).not.toMatch(/MTU|PersistentKeepalive/);
  });

  it("lists the peer's mesh /32 first, then its routes", () => {
    const text = renderWireGuardConfig(applyValues(FULL_FLEET, "anchor").config);
    const satellite = plan(FULL_FLEET).byName.get("satellite")?.meshAddress;
    expect(text).toContain(`AllowedIPs = ${satellite}/32, 10.20.0.0/24, 10.21.0.0/24\n`);
  });

  it.each([
    ["203.0.113.1", "203.0.113.1:51820"],
    ["2001:db8::10", "[2001:db8::10]:51820"],
    ["vpn.example.org", "vpn.example.org:51820"],
  ])("writes endpoint %s as %s", (address, endpoint) => {
    expect(hostPort(address, 51820)).toBe(endpoint);
  });

  it.each([
    ["203.0.113.1", "203.0.113.1:51820"],
    ["2001:DB8:0:0::10", "[2001:db8::10]:51820"],
    ["vpn.example.org", "*"],
  ])("expects wg to show endpoint %s as %s", (address, shown) => {
    expect(endpointAsShown(address, 51820)).toBe(shown);
  });

  it("gives the apply script the plan's peers with their AllowedIPs sorted as sort and wg's dump have them", () => {
    const values = applyValues(FULL_FLEET, "anchor").config;
    const satellite = plan(FULL_FLEET).byName.get("satellite")?.meshAddress;
    expect(planPeerLines(values).split("\n")).toEqual([
      `hetzner-native ${publicKeyOf("hetzner-native")} ${plan(FULL_FLEET).byName.get("hetzner-native")?.meshAddress}/32 198.51.100.7:51820`,
      `lab-1 ${publicKeyOf("lab-1")} ${plan(FULL_FLEET).byName.get("lab-1")?.meshAddress}/32 [2001:db8::10]:51820`,
      `satellite ${publicKeyOf("satellite")} 10.20.0.0/24,10.21.0.0/24,${satellite}/32 203.0.113.2:51820`,
      "",
    ]);
  });

  it("fails naming the peer whose key is unknown", () => {
    const identities = identitiesOf(HUB_FLEET);
    delete identities.satellite;
    expect(() => wireguardConfigValues(plan(HUB_FLEET), "anchor", identities)).toThrow(/satellite/);
  });
});

describe("host scripts", () => {
  const scripts = {
    key: wireguardKeyScript("anchor"),
    keyTeardown: wireguardKeyTeardownScript(),
    teardown: wireguardTeardownScript(),
    ...Object.fromEntries(
      HOSTS.map(({ fleet: f, config, host: h }) => [
        `apply ${f} ${h}`,
        wireguardApplyScript(applyValues(config, h)),
      ]),
    ),
  };

  it.each(Object.entries(scripts))("%s passes bash -n and shellcheck", (_name, text) => {
    expect(spawnSync("bash", ["-n"], { input: text, encoding: "utf8" }).stderr).toBe("");
    const check = spawnSync("shellcheck", ["-s", "bash", "-"], { input: text, encoding: "utf8" });
    expect(check.error).toBeUndefined();
    expect(check.stdout).toBe("");
  });

  it("renders the key script", () => {
    expect(scripts.key).toMatchSnapshot();
  });

  it("renders the teardown scripts", () => {
    expect(scripts.teardown).toMatchSnapshot();
    expect(scripts.keyTeardown).toMatchSnapshot();
  });
});

/**
 * The scripts run for real in a sandbox: files land in shadowed directories,
 * `systemctl`, `ip` and the interface-facing `wg` subcommands are stubs that
 * behave like a host whose wg-quick brings the interface up from wg0.conf.
 * `wg pubkey` and `wg-quick strip` are the real ones.
 */
describe("the scripts on a host", () => {
  // IPv4 routes through wg0 in $state/routes, one CIDR a line (those wg-quick or the script added);
  // the interface's own subnet ($state/address) is routed by the kernel.
  const routing = `to_int() { local IFS=.; read -r a b c d <<<"$1"; echo $(((a << 24) | (b << 16) | (c << 8) | d)); }
inside() {
  local mask=$(((0xffffffff << (32 - \${2#*/})) & 0xffffffff))
  [ "\${1#*/}" -ge "\${2#*/}" ] && [ $(($(to_int "\${1%/*}") & mask)) = $(($(to_int "\${2%/*}") & mask)) ]
}
covered() {
  local route
  if [[ $1 == *:* ]]; then
    # IPv6: the interface's /64 (the test fleets' prefix has no zero groups before "::").
    [ -s "$state/address6" ] && [[ $1 == "$(sed 's/::.*//' "$state/address6"):"* ]] && return 0
    grep -qxF "$1" "$state/routes"
    return
  fi
  inside "$1" "$(cat "$state/address")" && return 0
  while read -r route; do inside "$1" "$route" && return 0; done <"$state/routes"
  return 1
}`;
  // The running interface's peers, shared by the wg and wg-allowed-add stubs. adopt FILE: wg0 runs
  // the dump FILE from then on. take KEY CIDRS: no peer but KEY holds any of CIDRS, as the kernel
  // moves a CIDR that another peer held to the peer it is given to.
  const fakeKernel = `state=$SANDBOX/state
adopt() {
  local private key rest
  IFS=$'\\t' read -r private key rest <"$1"
  printf '%s\\n' "$key" >"$state/running-key"
  tail -n +2 "$1" >"$state/peers"
  rm -f "$1"
}
take() {
  awk -F'\\t' -v OFS='\\t' -v k="$1" -v ips="$2" '
    BEGIN { n = split(ips, list, ","); for (i = 1; i <= n; i++) moved[list[i]] = 1 }
    $1 != k && $4 != "(none)" {
      m = split($4, own, ","); kept = ""
      for (i = 1; i <= m; i++) if (!(own[i] in moved)) kept = kept (kept == "" ? "" : ",") own[i]
      $4 = kept == "" ? "(none)" : kept
    }
    { print }' "$state/peers" >"$state/peers.take"
  mv "$state/peers.take" "$state/peers"
}`;
  // The calls that change wg0, the key of the peer made to take AllowedIPs away written "SINK" (it
  // is new at every run): only the fixtures' peers are named by their keys.
  const FIXTURE_PEERS = ["anchor", "satellite", "hetzner-native", "edge", "intruder", "satellite-rekeyed"];
  const changes = (calls: readonly string[]) => {
    const known = new Set(FIXTURE_PEERS.map(publicKeyOf));
    return calls
      .filter((c) => c.startsWith("wg set") || c.startsWith("perl "))
      .map((c) =>
        c.replace(/^(wg set wg0 peer )(\S+)/, (all, set: string, key: string) =>
          known.has(key) ? all : `${set}SINK`,
        ),
      );
  };
  const stubs = {
    // A start or restart brings wg0 up with what wg0.conf holds: the running key, and the peers
    // as wg show dump lines in $state/peers.
    systemctl: `state=$SANDBOX/state
${routing}
case " $* " in
*" cat "*) exit 0 ;;
*" disable --now "* | *" stop "*) rm -f "$state/up" ;;
*" disable "*) ;;
*" --now "* | *" restart "*)
  /usr/bin/wg pubkey </etc/wireguard/wg0.key >"$state/running-key"
  address=$(sed -n 's/^Address = //p' /etc/wireguard/wg0.conf)
  echo "\${address%%,*}" >"$state/address"
  : >"$state/address6"
  [[ $address != *,* ]] || echo "\${address#*, }" >"$state/address6"
  sed -n 's/^MTU = //p' /etc/wireguard/wg0.conf >"$state/mtu"
  awk '
    function flush() { if (key != "") printf "%s\\t(none)\\t%s\\t%s\\t0\\t0\\t0\\t%s\\n", key, ep, ips, ka; key = "" }
    /^\\[Peer\\]$/ { flush(); ep = "(none)"; ips = "(none)"; ka = "off" }
    /^PublicKey = / { key = substr($0, 13) }
    /^AllowedIPs = / { ips = substr($0, 14); gsub(/, */, ",", ips) }
    /^Endpoint = / { ep = substr($0, 12) }
    /^PersistentKeepalive = / { ka = substr($0, 23) }
    END { flush() }' /etc/wireguard/wg0.conf >"$state/peers"
  # wg-quick routes each AllowedIPs CIDR no route through wg0 covers yet.
  : >"$state/routes"
  for cidr in $(cut -f4 "$state/peers" | tr ',' ' '); do
    covered "$cidr" || echo "$cidr" >>"$state/routes"
  done
  touch "$state/up"
  ;;
esac`,
    ip: `state=$SANDBOX/state
${routing}
[ -e "$state/up" ] || exit 1
mtu=$(cat "$state/mtu"); mtu=\${mtu:-1420}
case "$*" in
"link show dev wg0" | "-o link show dev wg0") echo "5: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu $mtu qdisc noqueue state UNKNOWN" ;;
"-4 -o address show dev wg0") echo "5: wg0    inet $(cat "$state/address") scope global wg0\\       valid_lft forever" ;;
"-6 -o address show dev wg0 scope global")
  while read -r a; do echo "5: wg0    inet6 $a scope global \\       valid_lft forever preferred_lft forever"; done <"$state/address6" ;;
"-6 address add "*" dev wg0") echo "$4" >>"$state/address6" ;;
"-6 address del "*" dev wg0") grep -vxF "$4" "$state/address6" >"$state/address6.new" || true; mv "$state/address6.new" "$state/address6" ;;
"-"[46]" route show dev wg0 match "*) if covered "$7"; then echo "$7 scope link"; fi ;;
"-"[46]" route show dev wg0 exact "*" proto boot") if grep -qxF "$7" "$state/routes"; then echo "$7 scope link"; fi ;;
"-"[46]" route add "*" dev wg0") echo "$4" >>"$state/routes" ;;
"-"[46]" route del "*" dev wg0") grep -vxF "$4" "$state/routes" >"$state/routes.new" || true; mv "$state/routes.new" "$state/routes" ;;
*) exit 2 ;;
esac`,
    // The running interface, changed by wg set as the kernel would be. A test sets $state/live to
    // a whole dump for wg0 to run from then on, or $state/live-after-set for wg0 to run once the
    // next wg set is done (a kernel that did not do what it was asked); every peer shows having
    // received $state/rx bytes unless its line says otherwise.
    wg: `${fakeKernel}
case "$1" in
pubkey | genkey) exec /usr/bin/wg "$1" ;;
show)
  [ "$*" = "show wg0 dump" ] || exit 2
  [ -e "$state/up" ] || exit 1
  if [ -e "$state/live" ]; then adopt "$state/live"; fi
  printf '(private)\\t%s\\t%s\\toff\\n' "$(cat "$state/running-key")" "$(cat "$state/port" 2>/dev/null || echo 51820)"
  awk -F'\\t' -v OFS='\\t' -v rx="$(cat "$state/rx" 2>/dev/null || echo 0)" '$6 == 0 { $6 = rx } { print }' "$state/peers"
  ;;
set)
  [ "$2" = wg0 ] && [ -e "$state/up" ] || exit 1
  if [ -e "$state/live" ]; then adopt "$state/live"; fi
  shift 2
  while [ $# -gt 0 ]; do
    case $1 in
    private-key) /usr/bin/wg pubkey <"$2" >"$state/running-key"; shift 2 ;;
    listen-port) printf '%s\\n' "$2" >"$state/port"; shift 2 ;;
    peer)
      key=$2
      shift 2
      line=$(awk -F'\\t' -v k="$key" '$1 == k' "$state/peers")
      if [ -n "$line" ]; then
        IFS=$'\\t' read -r _ psk ep ips hs rx tx ka <<<"$line"
      else
        psk='(none)' ep='(none)' ips='(none)' hs=0 rx=0 tx=0 ka=off
      fi
      remove=0
      while [ $# -gt 0 ] && [ "$1" != peer ]; do
        case $1 in
        remove) remove=1; shift ;;
        allowed-ips) ips=$2; [ -n "$ips" ] || ips='(none)'; shift 2 ;;
        endpoint) ep=$2; shift 2 ;;
        persistent-keepalive) ka=$2; [ "$ka" != 0 ] || ka=off; shift 2 ;;
        *) exit 2 ;;
        esac
      done
      awk -F'\\t' -v k="$key" '$1 != k' "$state/peers" >"$state/peers.new"
      if [ "$remove" = 0 ]; then
        printf '%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' "$key" "$psk" "$ep" "$ips" "$hs" "$rx" "$tx" "$ka" >>"$state/peers.new"
      fi
      mv "$state/peers.new" "$state/peers"
      [ "$ips" = "(none)" ] || [ "$remove" = 1 ] || take "$key" "$ips"
      ;;
    *) exit 2 ;;
    esac
  done
  if [ -e "$state/live-after-set" ]; then adopt "$state/live-after-set"; fi
  ;;
*) exit 2 ;;
esac`,
    // wg-allowed-add, read from stdin: each peer that exists gains the CIDRs, and keeps its own.
    // ($state/live-after-set waits for a wg set.)
    perl: `${fakeKernel}
case $(cat) in *WG_CMD_SET_DEVICE*) ;; *) exit 3 ;; esac
[ "$1" = - ] && [ "$2" = wg0 ] && [ -e "$state/up" ] || exit 1
if [ -e "$state/live" ]; then adopt "$state/live"; fi
shift 2
while [ $# -gt 1 ]; do
  own=$(awk -F'\\t' -v k="$1" '$1 == k { print $4 }' "$state/peers")
  if [ -n "$own" ]; then
    ips=$own
    for cidr in \${2//,/ }; do
      case ",$ips," in *",$cidr,"*) ;; *) ips="$ips,$cidr" ;; esac
    done
    ips=\${ips#(none),}
    awk -F'\\t' -v OFS='\\t' -v k="$1" -v ips="$ips" '$1 == k { $4 = ips } { print }' "$state/peers" >"$state/peers.new"
    mv "$state/peers.new" "$state/peers"
    take "$1" "$2"
  fi
  shift 2
done`,
  };
  // The hub's forward filter and sysctls: one state file for the table, one per key.
  const hubStubs = {
    nft: `state=$SANDBOX/state
case "$1" in
list) [ -e "$state/nft-table" ] ;;
-f) cp "$2" "$state/nft-table" ;;
delete) rm -f "$state/nft-table" ;;
*) exit 2 ;;
esac`,
    sysctl: `state=$SANDBOX/state
case "$1" in
-n) cat "$state/sysctl-$2" 2>/dev/null || echo 0 ;;
-q)
  if [ -e "$state/sysctl-readonly" ]; then
    echo "sysctl: permission denied on key \${3%%=*}" >&2
    exit 1
  fi
  shift 2
  for setting in "$@"; do printf '%s\\n' "\${setting#*=}" >"$state/sysctl-\${setting%%=*}"; done
  ;;
*) exit 2 ;;
esac`,
  };
  let sandbox: Sandbox;
  beforeEach(() => {
    sandbox = new Sandbox(["/etc/wireguard", "/etc/systemd/system"], { ...stubs, ...hubStubs });
  });
  afterEach(() => sandbox.dispose());

  const installKey = (name: string) => {
    const result = sandbox.run(wireguardKeyScript(name), `${privateKeyOf(name)}\n`, true);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    return result;
  };

  it("refuses a malformed key on standard input and writes nothing", () => {
    const result = sandbox.run(wireguardKeyScript("anchor"), "not-a-key\n");
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /^swarm: anchor: standard input does not hold a base64 Curve25519 private key/,
    );
    expect(sandbox.exists(WG_KEY_PATH)).toBe(false);
  });

  it("installs the key 0600 in a private directory, never passing it as an argument", () => {
    const result = installKey("anchor");
    expect(result.stdout).toContain(`swarm: wrote ${WG_KEY_PATH}`);
    expect(sandbox.read(WG_KEY_PATH)).toBe(`${privateKeyOf("anchor")}\n`);
    expect(sandbox.mode(WG_KEY_PATH)).toBe("600");
    expect(sandbox.mode("/etc/wireguard")).toBe("700");
    expect(result.exec).toContain("execve(");
    expect(result.exec).not.toContain(privateKeyOf("anchor"));
    expect(sandbox.run(wireguardKeyScript("anchor"), `${privateKeyOf("anchor")}\n`).stdout).toBe("");
  });

  it("brings wg0 up the first time, assembling wg0.conf with the key only on the host", () => {
    installKey("hetzner-native");
    const values = applyValues(HUB_FLEET, "hetzner-native");
    const result = sandbox.run(wireguardApplyScript(values), "", true);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const publicConfig = renderWireGuardConfig(values.config);
    expect(sandbox.read(WG_PUBLIC_CONF_PATH)).toBe(publicConfig);
    expect(sandbox.read(WG_CONF_PATH)).toBe(
      publicConfig.replace("[Interface]\n", `[Interface]\nPrivateKey = ${privateKeyOf("hetzner-native")}\n`),
    );
    expect(sandbox.mode(WG_CONF_PATH)).toBe("600");
    expect(sandbox.read(WG_USERSPACE_DROPIN)).toBe(
      "[Service]\nEnvironment=WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go\n",
    );
    expect(sandbox.calls().filter((c) => c.startsWith("systemctl"))).toEqual([
      "systemctl daemon-reload",
      "systemctl enable --now --quiet wg-quick@wg0",
      "systemctl enable --quiet wg-quick@wg0",
    ]);
    expect(result.stdout).toContain("swarm: hetzner-native: started wg-quick@wg0");
    expect(result.exec).not.toContain(privateKeyOf("hetzner-native"));
  });

  it("changes nothing when run again", () => {
    installKey("satellite");
    const script = wireguardApplyScript(applyValues(HUB_FLEET, "satellite"));
    expect(sandbox.run(script).status).toBe(0);
    sandbox.calls();
    const again = sandbox.run(script);
    expect(again.status).toBe(0);
    expect(again.stdout).not.toContain("wrote");
    expect(sandbox.calls().filter((c) => !c.startsWith("ip ") && !c.startsWith("wg "))).toEqual([
      "systemctl enable --quiet wg-quick@wg0",
    ]);
  });

  it("changes the one peer whose AllowedIPs changed, adding and taking away CIDRs without replacing those it keeps, touching no other peer and not restarting", () => {
    installKey("anchor");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor"))).status).toBe(0);
    sandbox.calls();
    const changed: FleetConfig = {
      ...HUB_FLEET,
      hosts: HUB_FLEET.hosts.map((h) => (h.name === "satellite" ? { ...h, routes: ["10.30.0.0/24"] } : h)),
    };
    const result = sandbox.run(wireguardApplyScript(applyValues(changed, "anchor")), "", true);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(
      "swarm: anchor: updated wg0 in place (wg set: 0 peer(s) added, 1 changed, 0 removed)",
    );
    const calls = sandbox.calls();
    // wg syncconf, or wg set with allowed-ips, would have the kernel replace the peer's AllowedIPs:
    // here satellite gains 10.30.0.0/24 and a new peer takes 10.20.0.0/24 away with it.
    expect(changes(calls)).toEqual([
      `perl - wg0 ${publicKeyOf("satellite")} 10.30.0.0/24`,
      "wg set wg0 peer SINK allowed-ips 10.20.0.0/24",
      "wg set wg0 peer SINK remove",
    ]);
    // Every peer runs as planned, and the peer that took 10.20.0.0/24 away is gone.
    const sorted = (key: string, endpoint: string, ips: string) =>
      [key, endpoint, ips.split(",").sort().join(",")].join(" ");
    expect(
      runningPeers()
        .map((l) => l.split("\t"))
        .map(([key, , endpoint, ips]) => sorted(key, endpoint, ips))
        .sort(),
    ).toEqual(
      livePeersOf(applyValues(changed, "anchor"))
        .map((p) => sorted(p.publicKey, p.endpoint, p.allowedIps))
        .sort(),
    );
    expect(calls.some((c) => c.includes("restart") || c.includes("--now"))).toBe(false);
    expect(result.exec).not.toContain(privateKeyOf("anchor"));
  });

  it("moves a route from one peer to another in one step: nothing is taken away, so it never falls through", () => {
    anchorRunning();
    const moved: FleetConfig = {
      ...HUB_FLEET,
      hosts: HUB_FLEET.hosts.map((h) =>
        h.name === "satellite"
          ? { ...h, routes: [] }
          : h.name === "hetzner-native"
            ? { ...h, routes: ["10.20.0.0/24"] }
            : h,
      ),
    };
    const result = sandbox.run(wireguardApplyScript(applyValues(moved, "anchor")));
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
    expect(result.stdout).toContain("(wg set: 0 peer(s) added, 2 changed, 0 removed)");
    expect(changes(sandbox.calls())).toEqual([`perl - wg0 ${publicKeyOf("hetzner-native")} 10.20.0.0/24`]);
    const running = new Map(runningPeers().map((l) => [l.split("\t")[0], l.split("\t")[3]]));
    expect(running.get(publicKeyOf("hetzner-native"))?.split(",").sort()).toEqual(
      ["10.20.0.0/24", `${plan(moved).byName.get("hetzner-native")?.meshAddress}/32`].sort(),
    );
    expect(running.get(publicKeyOf("satellite"))).toBe(
      `${plan(moved).byName.get("satellite")?.meshAddress}/32`,
    );
  });

  it("adds a joining peer with one wg set and touches no running peer", () => {
    installKey("anchor");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor"))).status).toBe(0);
    const before = runningPeers();
    sandbox.calls();
    const grown: FleetConfig = {
      ...HUB_FLEET,
      hosts: [
        ...HUB_FLEET.hosts,
        {
          ...(HUB_FLEET.hosts.find((h) => h.name === "satellite") as FleetConfig["hosts"][number]),
          name: "edge",
          meshAddress: undefined,
          // satellite's routes stay satellite's: AllowedIPs of two peers never overlap.
          routes: [],
        },
      ],
    };
    const values = applyValues(grown, "anchor");
    const edge = values.config.peers.find((p) => p.name === "edge");
    expect(edge).toBeDefined();
    const result = sandbox.run(wireguardApplyScript(values));
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
    expect(result.stdout).toContain("(wg set: 1 peer(s) added, 0 changed, 0 removed)");
    const sets = sandbox.calls().filter((c) => c.startsWith("wg set"));
    expect(sets).toHaveLength(1);
    expect(sets[0]).toMatch(
      new RegExp(`^wg set wg0 peer ${escapeRegExp(publicKeyOf("edge"))} allowed-ips \\S+ endpoint \\S+`),
    );
    // Every peer that ran before runs exactly as it did.
    const after = runningPeers();
    for (const line of before) {
      expect(after).toContain(line);
    }
    expect(after).toHaveLength(before.length + 1);
  });

  it("moves AllowedIPs to a peer's new key before it removes the old key", () => {
    const before = anchorRunning();
    const rekeyed: WireGuardApplyValues = {
      ...applyValues(HUB_FLEET, "anchor"),
      config: {
        ...applyValues(HUB_FLEET, "anchor").config,
        peers: applyValues(HUB_FLEET, "anchor").config.peers.map((p) =>
          p.name === "satellite" ? { ...p, publicKey: publicKeyOf("satellite-rekeyed") } : p,
        ),
      },
    };
    const result = sandbox.run(wireguardApplyScript(rekeyed));
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
    const sets = sandbox.calls().filter((c) => c.startsWith("wg set"));
    expect(sets.map((c) => c.split(" ").slice(0, 7).join(" "))).toEqual([
      `wg set wg0 peer ${publicKeyOf("satellite-rekeyed")} allowed-ips ${before.peers
        .find((l) => l.startsWith(satellite))
        ?.split("\t")[3]
        .split(",")
        .sort()
        .join(",")}`,
      `wg set wg0 peer ${satellite} remove`,
    ]);
  });

  it("leaves a roamed endpoint alone when the plan did not move it, and sets a keepalive that changed", () => {
    anchorRunning();
    // satellite speaks from behind NAT: wg shows it at the address its packets came from.
    sandbox.state(
      "live",
      dumpOf(
        publicKeyOf("anchor"),
        livePeersOf(applyValues(HUB_FLEET, "anchor")).map((p) =>
          p.publicKey === satellite ? { ...p, endpoint: "198.51.100.200:40000", rx: 148 } : p,
        ),
      ),
    );
    const values = applyValues(ROUTED, "anchor");
    const kept: WireGuardApplyValues = {
      ...values,
      config: {
        ...values.config,
        peers: values.config.peers.map((p) =>
          p.name === "satellite" ? { ...p, persistentKeepalive: 17 } : p,
        ),
      },
    };
    const result = sandbox.run(wireguardApplyScript(kept));
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
    expect(changes(sandbox.calls())).toEqual([
      `wg set wg0 peer ${satellite} persistent-keepalive 17`,
      `perl - wg0 ${satellite} 10.30.0.0/24`,
      "wg set wg0 peer SINK allowed-ips 10.20.0.0/24",
      "wg set wg0 peer SINK remove",
    ]);
    expect(
      runningPeers()
        .find((l) => l.startsWith(satellite))
        ?.split("\t")[2],
    ).toBe("198.51.100.200:40000");
  });

  it("restarts the interface when its address changes", () => {
    installKey("satellite");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "satellite"))).status).toBe(0);
    sandbox.calls();
    const moved: FleetConfig = {
      ...HUB_FLEET,
      hosts: HUB_FLEET.hosts.map((h) => (h.name === "satellite" ? { ...h, meshAddress: "10.8.0.99" } : h)),
    };
    const result = sandbox.run(wireguardApplyScript(applyValues(moved, "satellite")));
    expect(result.status).toBe(0);
    expect(sandbox.calls()).toContain("systemctl restart wg-quick@wg0");
    expect(sandbox.state("address")).toBe("10.8.0.99/24\n");
  });

  it("removes the userspace drop-in and restarts when a host goes back to the kernel implementation", () => {
    installKey("hetzner-native");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "hetzner-native"))).status).toBe(0);
    sandbox.calls();
    const kernel = { ...applyValues(HUB_FLEET, "hetzner-native"), implementation: "kernel" as const };
    const result = sandbox.run(wireguardApplyScript(kernel));
    expect(result.status).toBe(0);
    expect(sandbox.exists(WG_USERSPACE_DROPIN)).toBe(false);
    expect(sandbox.calls().filter((c) => c.startsWith("systemctl"))).toEqual([
      "systemctl daemon-reload",
      "systemctl restart wg-quick@wg0",
      "systemctl enable --quiet wg-quick@wg0",
    ]);
  });

  it("routes a CIDR a peer gains in place through wg0 and stops routing the one it loses, as wg-quick does at start", () => {
    anchorRunning();
    // wg-quick routed satellite's extra CIDR at start; the mesh /32s are on wg0's subnet.
    expect(sandbox.state("routes")).toBe("10.20.0.0/24\n");
    const result = sandbox.run(wireguardApplyScript(routed));
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
    expect(result.stdout).toContain("swarm: anchor: routed 10.30.0.0/24 through wg0\n");
    expect(result.stdout).toContain("swarm: anchor: no longer routes 10.20.0.0/24 through wg0\n");
    expect(
      sandbox.calls().filter((c) => c.startsWith("ip -4 route add") || c.startsWith("ip -4 route del")),
    ).toEqual(["ip -4 route add 10.30.0.0/24 dev wg0", "ip -4 route del 10.20.0.0/24 dev wg0"]);
    expect(sandbox.state("routes")).toBe("10.30.0.0/24\n");
  });

  it("adds a route wg-quick would have set up when it is missing, though wg0 runs as planned", () => {
    anchorRunning();
    sandbox.state("routes", "");
    const result = sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor")));
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
    expect(result.stdout).toContain("swarm: anchor: routed 10.20.0.0/24 through wg0\n");
    const calls = sandbox.calls();
    expect(calls.filter((c) => c.startsWith("wg set") || c.startsWith("ip -4 route add"))).toEqual([
      "ip -4 route add 10.20.0.0/24 dev wg0",
    ]);
    expect(sandbox.state("routes")).toBe("10.20.0.0/24\n");
  });

  it("puts the planned key back with wg set, through a pipe, when wg0 runs another key (drift)", () => {
    installKey("anchor");
    const script = wireguardApplyScript(applyValues(HUB_FLEET, "anchor"));
    expect(sandbox.run(script).status).toBe(0);
    sandbox.calls();
    sandbox.state("running-key", `${publicKeyOf("intruder")}\n`);
    const result = sandbox.run(script, "", true);
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
    expect(result.stdout).toContain(
      "swarm: anchor: updated wg0 in place (wg set: 0 peer(s) added, 0 changed, 0 removed, its key or listen port set)",
    );
    expect(sandbox.state("running-key")).toBe(`${publicKeyOf("anchor")}\n`);
    const calls = sandbox.calls();
    expect(calls.filter((c) => c.startsWith("wg set"))).toEqual([
      expect.stringMatching(/^wg set wg0 private-key \/dev\/fd\/\d+$/),
    ]);
    expect(calls.filter((c) => c.startsWith("systemctl"))).toEqual(["systemctl enable --quiet wg-quick@wg0"]);
    expect(result.exec).not.toContain(privateKeyOf("anchor"));
  });

  it("fails before touching wg0 when wg0.key is not the expected key", () => {
    installKey("anchor");
    const result = sandbox.run(
      wireguardApplyScript({ ...applyValues(HUB_FLEET, "anchor"), publicKey: publicKeyOf("x") }),
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^swarm: anchor: \/etc\/wireguard\/wg0.key holds the key of /);
    expect(sandbox.exists(WG_CONF_PATH)).toBe(false);
    expect(sandbox.calls().some((c) => c.startsWith("systemctl"))).toBe(false);
  });

  it("fails naming the host when the key was never installed", () => {
    const result = sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor")));
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^swarm: anchor: \/etc\/wireguard\/wg0.key is missing/);
  });

  /** The apply script with the written wg0.conf.public cut to its first `keep` peers, the plan's peers untouched: a delivery fault. */
  const withWrittenPeers = (text: string, keep: number) => {
    const opening = `swarm_write '${WG_PUBLIC_CONF_PATH}' 0644 root:root <<'SWARM_EOF'\n`;
    const start = text.indexOf(opening) + opening.length;
    const end = text.indexOf("SWARM_EOF\n", start);
    const blocks = text.slice(start, end).split("\n\n");
    expect(blocks.length).toBeGreaterThan(keep + 1);
    const kept = blocks.slice(0, keep + 1).join("\n\n");
    return `${text.slice(0, start)}${kept.endsWith("\n") ? kept : `${kept}\n`}${text.slice(end)}`;
  };

  interface LivePeer {
    readonly publicKey: string;
    readonly endpoint: string;
    readonly allowedIps: string;
    readonly rx?: number;
    /** PersistentKeepalive as the dump writes it: seconds, or "off". */
    readonly keepalive?: string;
  }
  /** `wg show wg0 dump` of an interface running `publicKey` with `peers`. */
  const dumpOf = (publicKey: string, peers: readonly LivePeer[]) =>
    [
      `(private)\t${publicKey}\t51820\toff`,
      ...peers.map(
        (p) =>
          `${p.publicKey}\t(none)\t${p.endpoint}\t${p.allowedIps}\t0\t${p.rx ?? 0}\t0\t${p.keepalive ?? "off"}`,
      ),
    ].join("\n") + "\n";
  /** The peers `values` plans, as wg shows them running: AllowedIPs in the configuration's order. */
  const livePeersOf = (values: WireGuardApplyValues): LivePeer[] =>
    values.config.peers.map((p) => ({
      publicKey: p.publicKey,
      endpoint: hostPort(p.endpointAddress, p.endpointPort),
      allowedIps: p.allowedIps.join(","),
      keepalive: p.persistentKeepalive ? String(p.persistentKeepalive) : "off",
    }));

  /** anchor up with HUB_FLEET's configuration, then the update that routes 10.30.0.0/24 to satellite. */
  const ROUTED: FleetConfig = {
    ...HUB_FLEET,
    hosts: HUB_FLEET.hosts.map((h) => (h.name === "satellite" ? { ...h, routes: ["10.30.0.0/24"] } : h)),
  };
  const anchorRunning = () => {
    installKey("anchor");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor"))).status).toBe(0);
    sandbox.calls();
    return {
      conf: sandbox.read(WG_CONF_PATH),
      publicConf: sandbox.read(WG_PUBLIC_CONF_PATH),
      peers: runningPeers(),
      key: sandbox.state("running-key"),
    };
  };
  /** The peers wg0 runs, as wg show dump lines with AllowedIPs in sort order (wg keeps no order), sorted. */
  const runningPeers = () =>
    (sandbox.state("peers") ?? "")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) =>
        l
          .split("\t")
          .map((field, i) => (i === 3 ? field.split(",").sort().join(",") : field))
          .join("\t"),
      )
      .sort();
  const leftovers = () => readdirSync(sandbox.outside("/etc/wireguard")).filter((f) => f.startsWith("."));

  it.each([
    { keep: 0, missing: ["hetzner-native", "satellite"] },
    { keep: 1, missing: ["satellite"] },
  ])(
    "refuses a new wg0.conf with $keep of the plan's 2 peers: no wg set, the previous files back",
    ({ keep, missing }) => {
      const before = anchorRunning();
      const result = sandbox.run(withWrittenPeers(wireguardApplyScript(applyValues(ROUTED, "anchor")), keep));
      expect(result.status).toBe(1);
      const named = missing.map((m) => `${m} (${publicKeyOf(m)})`).join(" ");
      expect(result.stderr).toBe(
        `swarm: anchor: refused the new ${WG_CONF_PATH}: it holds ${keep} peer(s), the plan has 2; missing: ${named}. wg0 keeps its running configuration and the previous files are back; run pulumi up again\n`,
      );
      expect(sandbox.calls().filter((c) => c.startsWith("systemctl") || c.startsWith("wg set"))).toEqual([]);
      expect(sandbox.read(WG_CONF_PATH)).toBe(before.conf);
      expect(sandbox.mode(WG_CONF_PATH)).toBe("600");
      expect(sandbox.read(WG_PUBLIC_CONF_PATH)).toBe(before.publicConf);
      expect(runningPeers()).toEqual(before.peers);
      expect(leftovers()).toEqual([]);
    },
  );

  const routed = applyValues(ROUTED, "anchor");
  const satellite = publicKeyOf("satellite");
  const planned = livePeersOf(routed);
  const others = planned.filter((p) => p.publicKey !== satellite);
  const satellitePlanned = planned.find((p) => p.publicKey === satellite) as LivePeer;
  const satelliteAddress = plan(ROUTED).byName.get("satellite")?.meshAddress;
  it.each([
    {
      difference: "a missing peer",
      live: dumpOf(publicKeyOf("anchor"), others),
      message: `peer satellite (${satellite}) is missing from wg0`,
    },
    {
      difference: "other AllowedIPs",
      live: dumpOf(publicKeyOf("anchor"), [
        ...others,
        { ...satellitePlanned, allowedIps: `${satelliteAddress}/32,10.20.0.0/24` },
      ]),
      message: `peer satellite (${satellite}) has AllowedIPs 10.20.0.0/24,${satelliteAddress}/32, the plan has 10.30.0.0/24,${satelliteAddress}/32`,
    },
    {
      difference: "another public key",
      live: dumpOf(publicKeyOf("intruder"), planned),
      message: `wg0 runs public key ${publicKeyOf("intruder")}, expected ${publicKeyOf("anchor")}`,
    },
    {
      difference: "a peer the plan does not name",
      live: dumpOf(publicKeyOf("anchor"), [
        ...planned,
        { publicKey: publicKeyOf("intruder"), endpoint: "192.0.2.9:51820", allowedIps: "10.8.0.200/32" },
      ]),
      message: `wg0 has peer ${publicKeyOf("intruder")}, which the plan does not name`,
    },
    {
      difference: "a peer without endpoint",
      live: dumpOf(publicKeyOf("anchor"), [...others, { ...satellitePlanned, endpoint: "(none)" }]),
      message: `peer satellite (${satellite}) has no endpoint, the plan has ${satellitePlanned.endpoint}`,
    },
  ])(
    "rolls back with wg set to the previous configuration when wg0 runs $difference",
    ({ live, message }) => {
      const before = anchorRunning();
      sandbox.state("live-after-set", live);
      const result = sandbox.run(wireguardApplyScript(routed), "", true);
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(
        new RegExp(
          `^${escapeRegExp(`swarm: anchor: ${message}\n`)}` +
            `${escapeRegExp(`swarm: anchor: rolled wg0 back to the previous ${WG_CONF_PATH} (wg set: `)}.*\\)\n` +
            `${escapeRegExp(`swarm: anchor: wg0 did not run the new ${WG_CONF_PATH} as planned (above); the previous configuration is back\n`)}$`,
        ),
      );
      const calls = sandbox.calls();
      // The apply's calls (satellite gains 10.30.0.0/24, 10.20.0.0/24 is taken away); the rollback's
      // change only what differs from the previous configuration.
      expect(changes(calls).slice(0, 2)).toEqual([
        `perl - wg0 ${satellite} 10.30.0.0/24`,
        "wg set wg0 peer SINK allowed-ips 10.20.0.0/24",
      ]);
      expect(calls.some((c) => c.startsWith("systemctl"))).toBe(false);
      // wg0 runs again exactly what it ran before: the key and every peer as it was.
      expect(sandbox.state("running-key")).toBe(before.key);
      expect(runningPeers()).toEqual(before.peers);
      expect(result.exec).not.toContain(privateKeyOf("anchor"));
      expect(sandbox.read(WG_CONF_PATH)).toBe(before.conf);
      expect(sandbox.mode(WG_CONF_PATH)).toBe("600");
      expect(sandbox.read(WG_PUBLIC_CONF_PATH)).toBe(before.publicConf);
      expect(leftovers()).toEqual([]);
    },
  );

  it("accepts a running wg0 that matches the plan, whatever order wg lists AllowedIPs in", () => {
    anchorRunning();
    const reordered = planned.map((p) => ({ ...p, allowedIps: p.allowedIps.split(",").reverse().join(",") }));
    sandbox.state("live-after-set", dumpOf(publicKeyOf("anchor"), reordered));
    const result = sandbox.run(wireguardApplyScript(routed));
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("swarm: anchor: wg0 is up with public key");
    expect(changes(sandbox.calls())).toEqual([
      `perl - wg0 ${satellite} 10.30.0.0/24`,
      "wg set wg0 peer SINK allowed-ips 10.20.0.0/24",
      "wg set wg0 peer SINK remove",
    ]);
    expect(sandbox.read(WG_PUBLIC_CONF_PATH)).toBe(renderWireGuardConfig(routed.config));
  });

  it.each([
    {
      drift: "a peer added by hand",
      live: dumpOf(publicKeyOf("anchor"), [
        ...livePeersOf(applyValues(HUB_FLEET, "anchor")),
        { publicKey: publicKeyOf("intruder"), endpoint: "(none)", allowedIps: "10.8.0.250/32" },
      ]),
      sets: [`wg set wg0 peer ${publicKeyOf("intruder")} remove`],
      done: "0 peer(s) added, 0 changed, 1 removed",
    },
    {
      drift: "AllowedIPs widened by hand",
      live: dumpOf(
        publicKeyOf("anchor"),
        livePeersOf(applyValues(HUB_FLEET, "anchor")).map((p) =>
          p.publicKey === satellite ? { ...p, allowedIps: "10.8.0.0/24" } : p,
        ),
      ),
      // What satellite lacks is added, and the /24 is taken away: its /32 never falls through.
      sets: [
        `perl - wg0 ${satellite} ${livePeersOf(applyValues(HUB_FLEET, "anchor"))
          .find((p) => p.publicKey === satellite)
          ?.allowedIps.split(",")
          .sort()
          .join(",")}`,
        "wg set wg0 peer SINK allowed-ips 10.8.0.0/24",
        "wg set wg0 peer SINK remove",
      ],
      done: "0 peer(s) added, 1 changed, 0 removed",
    },
  ])(
    "with unchanged files, undoes a wg0 that runs $drift, changing only what differs",
    ({ live, sets, done }) => {
      const before = anchorRunning();
      sandbox.state("live", live);
      const result = sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor")));
      expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
      expect(result.stdout).toContain(`swarm: anchor: updated wg0 in place (wg set: ${done})`);
      expect(result.stdout).not.toContain("swarm: wrote");
      expect(changes(sandbox.calls())).toEqual(sets);
      expect(sandbox.state("live")).toBeUndefined();
      expect(runningPeers().map((l) => l.split("\t").slice(0, 4).join("\t"))).toEqual(
        before.peers.map((l) => l.split("\t").slice(0, 4).join("\t")),
      );
      expect(sandbox.read(WG_CONF_PATH)).toBe(before.conf);
    },
  );

  it("with unchanged files and wg0 as planned, applies nothing", () => {
    anchorRunning();
    const result = sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor")));
    expect(result.status).toBe(0);
    expect(
      sandbox.calls().filter((c) => c.startsWith("wg set") || c.startsWith("systemctl restart")),
    ).toEqual([]);
  });

  // satellite moves to 203.0.113.99 in the plan; wg shows it at a NAT address, 198.51.100.200:40000.
  const moved: WireGuardApplyValues = {
    ...routed,
    config: {
      ...routed.config,
      peers: routed.config.peers.map((p) =>
        p.name === "satellite" ? { ...p, endpointAddress: "203.0.113.99" } : p,
      ),
    },
  };
  const roamed = (peer: string, rx: number) =>
    dumpOf(
      publicKeyOf("anchor"),
      livePeersOf(moved).map((p) =>
        p.publicKey === publicKeyOf(peer) ? { ...p, endpoint: "198.51.100.200:40000", rx } : p,
      ),
    );
  it.each([
    { case: "a peer this run moved, which has sent nothing since", live: roamed("satellite", 0), ok: false },
    {
      case: "a peer this run moved, which has sent since (it roamed)",
      live: roamed("satellite", 148),
      ok: true,
    },
    {
      case: "a peer whose endpoint this run did not change (it roamed earlier)",
      live: roamed("hetzner-native", 0),
      ok: true,
    },
  ])("an endpoint other than the plan's, on $case: accepted $ok", ({ live, ok }) => {
    const before = anchorRunning();
    sandbox.state("live-after-set", live);
    const result = sandbox.run(wireguardApplyScript(moved));
    if (ok) {
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      return;
    }
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      `swarm: anchor: peer satellite (${satellite}) has endpoint 198.51.100.200:40000, the plan has 203.0.113.99:51820\n`,
    );
    expect(sandbox.read(WG_CONF_PATH)).toBe(before.conf);
  });

  describe("hub routing", () => {
    const forwarding = "sysctl-net.ipv4.conf.wg0.forwarding";
    const redirects = "sysctl-net.ipv4.conf.wg0.send_redirects";

    it("on the hub: installs the drop-in and the table, turns forwarding on for wg0, and changes nothing when run again", () => {
      installKey("anchor");
      const script = wireguardApplyScript(applyValues(HUB_FLEET, "anchor"));
      const result = sandbox.run(script);
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      expect(sandbox.read(HUB_ROUTING_DROPIN)).toBe(renderHubRoutingDropin());
      expect(sandbox.read(HUB_RULESET_PATH)).toBe(renderHubRuleset());
      expect(sandbox.state("nft-table")).toBe(renderHubRuleset());
      expect([sandbox.state(forwarding), sandbox.state(redirects)]).toEqual(["1\n", "0\n"]);
      expect(result.stdout).toContain("swarm: anchor: loaded nftables table inet swarm_hub");
      expect(result.stdout).toContain("swarm: anchor: enabled forwarding on wg0\n");
      sandbox.calls();
      const again = sandbox.run(script);
      expect(again.status).toBe(0);
      expect(again.stdout).not.toMatch(/wrote|loaded|enabled forwarding/);
      expect(sandbox.calls().filter((c) => c.startsWith("nft -f") || c.startsWith("sysctl -q"))).toEqual([]);
    });

    it("fails naming the host and the fix when forwarding cannot be written, after wg0 is up as planned", () => {
      installKey("anchor");
      sandbox.state("sysctl-readonly", "");
      const result = sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor")));
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        "swarm: anchor: cannot enable forwarding on wg0: sysctl: permission denied on key net.ipv4.conf.wg0.forwarding. /proc/sys/net must be writable",
      );
      expect(sandbox.state("up")).toBe("");
    });

    it("on a host that is no longer the hub, and on teardown: removes the table, the drop-in and the ruleset", () => {
      installKey("anchor");
      expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor"))).status).toBe(0);
      const apart: FleetConfig = { ...HUB_FLEET, mesh: { ...HUB_FLEET.mesh, hubRouting: false } };
      const result = sandbox.run(wireguardApplyScript(applyValues(apart, "anchor")));
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      expect(result.stdout).toContain("swarm: removed hub routing (nftables table inet swarm_hub");
      expect([sandbox.exists(HUB_ROUTING_DROPIN), sandbox.exists(HUB_RULESET_PATH)]).toEqual([false, false]);
      expect(sandbox.calls()).toContain("nft delete table inet swarm_hub");

      expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor"))).status).toBe(0);
      const teardown = sandbox.run(`set -euo pipefail\n${wireguardTeardownScript()}`);
      expect(teardown.status).toBe(0);
      expect([sandbox.exists(HUB_ROUTING_DROPIN), sandbox.exists(HUB_RULESET_PATH)]).toEqual([false, false]);
      expect(sandbox.calls()).toContain("nft delete table inet swarm_hub");
    });

    it("leaves a host that never was the hub without any of it", () => {
      installKey("satellite");
      expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "satellite"))).status).toBe(0);
      expect(sandbox.calls().filter((c) => c.startsWith("nft") || c.startsWith("sysctl"))).toEqual([]);
      expect(sandbox.exists(HUB_ROUTING_DROPIN)).toBe(false);
    });
  });

  describe("dual-stack", () => {
    const PREFIX6 = "fd31:a7c9:5e04:8::/64";
    const dual: FleetConfig = {
      ...HUB_FLEET,
      mesh: { ...HUB_FLEET.mesh, ipv6Prefix: PREFIX6 },
      hosts: HUB_FLEET.hosts.map((h) =>
        h.name === "anchor" ? { ...h, meshAddress6: "fd31:a7c9:5e04:8::1" } : h,
      ),
    };
    const forwarding6 = "sysctl-net.ipv6.conf.all.forwarding";
    /** The hub script with its per-interface IPv6 settings in the sandbox's state: eth0 takes RAs (1), lo does not (0). */
    const onHub = (config: FleetConfig) => {
      const conf = `${sandbox.dir}/state/ipv6conf`;
      for (const [name, value] of [
        ["eth0", "1"],
        ["lo", "0"],
        ["all", "1"],
      ]) {
        mkdirSync(`${conf}/${name}`, { recursive: true });
        if (!existsSync(`${conf}/${name}/accept_ra`)) {
          writeFileSync(`${conf}/${name}/accept_ra`, `${value}\n`);
        }
      }
      return wireguardApplyScript(applyValues(config, "anchor")).replace(
        "hub_ipv6_conf=/proc/sys/net/ipv6/conf",
        `hub_ipv6_conf=${conf}`,
      );
    };
    const acceptRa = (name: string) => sandbox.state(`ipv6conf/${name}/accept_ra`);

    it("renders both addresses on wg0 and one /128 beside each /32", () => {
      const values = applyValues(dual, "anchor");
      const text = renderWireGuardConfig(values.config);
      const six = plan(dual).byName.get("satellite")?.meshAddress6;
      expect(text).toContain("Address = 10.8.0.1/24, fd31:a7c9:5e04:8::1/64\n");
      expect(text).toContain(
        `AllowedIPs = ${plan(dual).byName.get("satellite")?.meshAddress}/32, ${six}/128, 10.20.0.0/24\n`,
      );
      const spoke = renderWireGuardConfig(applyValues(dual, "satellite").config);
      expect(spoke).toContain(`AllowedIPs = 10.8.0.0/24, ${PREFIX6}\n`);
    });

    it("on the hub: starts wg0 with both addresses, turns IPv6 forwarding on with the keep-out rule and accept_ra 2, and changes nothing when run again", () => {
      installKey("anchor");
      const script = onHub(dual);
      const result = sandbox.run(script);
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      expect(sandbox.state("address6")).toBe("fd31:a7c9:5e04:8::1/64\n");
      expect(sandbox.read(HUB_RULESET_PATH)).toBe(renderHubRuleset(true));
      expect(renderHubRuleset(true)).toContain(`include "${HUB_KEEPOUT6_PATH}*"`);
      expect(sandbox.read(HUB_ROUTING_DROPIN)).toBe(renderHubRoutingDropin(true));
      const keepout = sandbox.read(HUB_KEEPOUT6_PATH);
      expect(keepout).toContain(
        'add rule inet swarm_hub forward meta nfproto ipv6 iifname != "wg0" oifname != "wg0" counter drop',
      );
      expect(keepout).toContain("# accept_ra changed from 1 to 2: eth0\n");
      expect([acceptRa("eth0"), acceptRa("lo"), acceptRa("all")]).toEqual(["2\n", "0\n", "1\n"]);
      expect(sandbox.state(forwarding6)).toBe("1\n");
      // The keep-out rule was loaded before forwarding went on.
      const calls = sandbox.calls();
      expect(calls.indexOf(`nft -f ${HUB_RULESET_PATH}`)).toBeLessThan(
        calls.indexOf("sysctl -q -w net.ipv6.conf.all.forwarding=1"),
      );
      expect(result.stdout).toContain(
        "swarm: anchor: enabled IPv6 forwarding; forwarded IPv6 that does not go through wg0 is dropped",
      );
      const again = sandbox.run(script);
      expect(again.status).toBe(0);
      expect(again.stdout).not.toMatch(/wrote|loaded|enabled|IPv6 address/);
    });

    it("leaves a hub that forwarded IPv6 already as it was: no keep-out rule, accept_ra untouched", () => {
      installKey("anchor");
      sandbox.state(forwarding6, "1\n");
      const result = sandbox.run(onHub(dual));
      expect(result.status).toBe(0);
      expect(sandbox.exists(HUB_KEEPOUT6_PATH)).toBe(false);
      expect(acceptRa("eth0")).toBe("1\n");
    });

    it("turns dual-stack on and off in place: the address is added and removed without a restart, and the hub puts IPv6 forwarding back", () => {
      const before = anchorRunning();
      const on = sandbox.run(onHub(dual));
      expect(on.stderr).toBe("");
      expect(on.status).toBe(0);
      expect(on.stdout).toContain(
        "swarm: anchor: changed the IPv6 address of wg0 in place: added fd31:a7c9:5e04:8::1/64\n",
      );
      let calls = sandbox.calls();
      expect(calls.filter((c) => c.startsWith("systemctl restart"))).toEqual([]);
      expect(calls).toContain("ip -6 address add fd31:a7c9:5e04:8::1/64 dev wg0");
      expect(
        runningPeers()
          .map((l) => l.split("\t")[3])
          .sort(),
      ).toEqual(
        (plan(dual).byName.get("anchor")?.peers ?? []).map((p) => [...p.allowedIps].sort().join(",")).sort(),
      );
      expect(sandbox.state(forwarding6)).toBe("1\n");

      const off = sandbox.run(onHub(HUB_FLEET));
      expect(off.stderr).toBe("");
      expect(off.status).toBe(0);
      expect(off.stdout).toContain(
        "changed the IPv6 address of wg0 in place: removed fd31:a7c9:5e04:8::1/64",
      );
      expect(off.stdout).toContain(
        "swarm: turned IPv6 forwarding off again and removed " + HUB_KEEPOUT6_PATH,
      );
      calls = sandbox.calls();
      expect(calls.filter((c) => c.startsWith("systemctl restart"))).toEqual([]);
      expect([sandbox.state("address6"), sandbox.state(forwarding6), acceptRa("eth0")]).toEqual([
        "",
        "0\n",
        "1\n",
      ]);
      expect(sandbox.exists(HUB_KEEPOUT6_PATH)).toBe(false);
      expect(sandbox.read(WG_CONF_PATH)).toBe(before.conf);
      expect(runningPeers()).toEqual(before.peers);
    });

    it("puts the previous IPv6 address back when the interface does not run the new configuration as planned", () => {
      anchorRunning();
      expect(sandbox.run(onHub(dual)).status).toBe(0);
      const moved: FleetConfig = {
        ...dual,
        // The hub's own address and a peer's: the peer's AllowedIPs change with wg set.
        hosts: dual.hosts.map((h) =>
          h.name === "anchor"
            ? { ...h, meshAddress6: "fd31:a7c9:5e04:8::99" }
            : h.name === "satellite"
              ? { ...h, meshAddress6: "fd31:a7c9:5e04:8::98" }
              : h,
        ),
      };
      // A kernel that drops every peer at the next wg set.
      sandbox.state("live-after-set", dumpOf(publicKeyOf("anchor"), []));
      const result = sandbox.run(onHub(moved));
      expect(result.status).toBe(1);
      expect(result.stderr).toContain("rolled wg0 back to the previous /etc/wireguard/wg0.conf");
      expect(result.stderr).toContain(
        "IPv6 address: removed fd31:a7c9:5e04:8::99/64 added fd31:a7c9:5e04:8::1/64",
      );
      expect(sandbox.state("address6")).toBe("fd31:a7c9:5e04:8::1/64\n");
    });
  });

  it("stops wg0 again and removes the files it wrote when a first start does not run as planned", () => {
    installKey("anchor");
    sandbox.state("live", dumpOf(publicKeyOf("anchor"), []));
    const result = sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor")));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`swarm: anchor: peer satellite (${satellite}) is missing from wg0\n`);
    expect(result.stderr).toContain(
      "swarm: anchor: stopped wg-quick@wg0 again: it was not running before this run\n",
    );
    expect(sandbox.calls().filter((c) => c.startsWith("systemctl"))).toEqual([
      // The hub's routing drop-in, written before the first start.
      "systemctl daemon-reload",
      "systemctl enable --now --quiet wg-quick@wg0",
      "systemctl stop wg-quick@wg0",
      "systemctl disable --quiet wg-quick@wg0",
    ]);
    expect(sandbox.exists(WG_CONF_PATH)).toBe(false);
    expect(sandbox.exists(WG_PUBLIC_CONF_PATH)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it("restarts wg0 with the previous configuration when a restart does not run as planned", () => {
    const before = anchorRunning();
    const readdressed: FleetConfig = {
      ...HUB_FLEET,
      hosts: HUB_FLEET.hosts.map((h) => (h.name === "anchor" ? { ...h, meshAddress: "10.8.0.99" } : h)),
    };
    sandbox.state("live", dumpOf(publicKeyOf("anchor"), []));
    const result = sandbox.run(wireguardApplyScript(applyValues(readdressed, "anchor")));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      "swarm: anchor: restarted wg-quick@wg0 with the previous /etc/wireguard/wg0.conf\n",
    );
    expect(sandbox.calls().filter((c) => c.startsWith("systemctl"))).toEqual([
      "systemctl restart wg-quick@wg0",
      "systemctl restart wg-quick@wg0",
    ]);
    expect(sandbox.read(WG_CONF_PATH)).toBe(before.conf);
    expect(sandbox.state("address")).toBe("10.8.0.1/24\n");
  });

  it("tears everything down", () => {
    installKey("hetzner-native");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "hetzner-native"))).status).toBe(0);
    sandbox.calls();
    const result = sandbox.run(
      `set -euo pipefail\n${wireguardTeardownScript()}${wireguardKeyTeardownScript()}`,
    );
    expect(result.status).toBe(0);
    expect(sandbox.calls()).toContain("systemctl disable --now --quiet wg-quick@wg0");
    for (const path of [WG_CONF_PATH, WG_PUBLIC_CONF_PATH, WG_KEY_PATH, WG_USERSPACE_DROPIN]) {
      expect(sandbox.exists(path)).toBe(false);
    }
  });
});

describe("the rendered configuration", () => {
  it("is accepted by wg-quick strip, which leaves only what wg itself reads", () => {
    const sandbox = new Sandbox(["/etc/wireguard"], {});
    try {
      const values = applyValues(FULL_FLEET, "satellite");
      const conf = renderWireGuardConfig(values.config).replace(
        "[Interface]\n",
        `[Interface]\nPrivateKey = ${privateKeyOf("satellite")}\n`,
      );
      sandbox.write(WG_CONF_PATH, conf, 0o600);
      const result = sandbox.run("wg-quick strip wg0");
      expect(result.stderr).toBe("");
      const keys = [...result.stdout.matchAll(/^(\w+) = /gm)].map((m) => m[1]);
      expect(new Set(keys)).toEqual(
        new Set(["PrivateKey", "ListenPort", "PublicKey", "AllowedIPs", "Endpoint"]),
      );
      expect(result.stdout.match(/^\[Peer\]$/gm)).toHaveLength(3);
    } finally {
      sandbox.dispose();
    }
  });

  it("derives public keys with node:crypto that equal wg pubkey", () => {
    for (const name of ["anchor", "satellite"]) {
      const wg = execFileSync("wg", ["pubkey"], { input: `${privateKeyOf(name)}\n` })
        .toString()
        .trim();
      expect(publicKeyOf(name)).toBe(wg);
    }
  });
});

describe("swarm_wg_sort, which orders a peer's AllowedIPs without starting a process", () => {
  it("orders them as the plan does (byte order), whatever blanks and order wg prints them in", () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const cidr = fc
      .tuple(octet, octet, octet, octet, fc.integer({ min: 8, max: 32 }))
      .map(([a, b, c, d, p]) => `${a}.${b}.${c}.${d}/${p}`);
    const lists = fc.array(
      fc.tuple(fc.array(cidr, { maxLength: 6 }), fc.boolean()).map(([items, blanks]) => ({
        items,
        written: items.join(blanks ? ", " : ","),
      })),
      { minLength: 50, maxLength: 50 },
    );
    fc.assert(
      fc.property(lists, (cases) => {
        // One bash for every case: LC_ALL=C as the prelude sets it.
        const script = `export LC_ALL=C
${hostScript("wireguard-check.sh")}
while IFS= read -r line; do
  swarm_wg_sort "$line"
  printf '%s\\n' "$wg_sorted"
done`;
        const out = execFileSync("bash", ["-c", script], {
          input: cases.map((c) => `${c.written}\n`).join(""),
          encoding: "utf8",
        });
        expect(out.split("\n").slice(0, -1)).toEqual(cases.map((c) => [...c.items].sort().join(",")));
      }),
      { numRuns: 20 },
    );
  });

  it("keeps wg's word for no AllowedIPs", () => {
    const out = execFileSync(
      "bash",
      ["-c", `${hostScript("wireguard-check.sh")}\nswarm_wg_sort "(none)"; printf '%s' "$wg_sorted"`],
      { encoding: "utf8" },
    );
    expect(out).toBe("(none)");
  });
});

describe("wg-allowed-add, which adds AllowedIPs to a peer without replacing those it has", () => {
  const add = (...args: string[]) =>
    spawnSync("perl", ["-", ...args], { input: hostScript("wg-allowed-add.pl"), encoding: "utf8" });
  const key = publicKeyOf("satellite");

  it.each([
    { args: [], says: "usage: wg-allowed-add INTERFACE PUBLIC_KEY CIDRS [PUBLIC_KEY CIDRS]...\n" },
    { args: ["wg0", key], says: "usage: wg-allowed-add INTERFACE PUBLIC_KEY CIDRS [PUBLIC_KEY CIDRS]...\n" },
    {
      args: ["wg0", "not-a-key", "10.0.0.0/24"],
      says: "wg-allowed-add: not-a-key is not a WireGuard public key\n",
    },
    // 43 characters whose last leaves bits over: no key encodes to it.
    {
      args: ["wg0", `${key.slice(0, 42)}B=`, "10.0.0.0/24"],
      says: `wg-allowed-add: ${key.slice(0, 42)}B= is not a WireGuard public key\n`,
    },
    { args: ["wg0", key, "10.0.0.0/33"], says: "wg-allowed-add: 10.0.0.0/33 is not a CIDR\n" },
    { args: ["wg0", key, "10.0.0.0"], says: "wg-allowed-add: 10.0.0.0 is not a CIDR\n" },
    { args: ["wg0", key, "10.0.0.0/24,fd00::/129"], says: "wg-allowed-add: fd00::/129 is not a CIDR\n" },
    { args: ["wg0", key, "10.0.0.256/32"], says: "wg-allowed-add: 10.0.0.256/32 is not a CIDR\n" },
  ])("refuses $args before it asks anything: $says", ({ args, says }) => {
    const result = add(...args);
    expect(result.stderr).toBe(says);
    expect(result.status).not.toBe(0);
  });

  it("reaches the kernel over generic netlink, which answers for an interface it does not have", () => {
    // This machine's kernel may have no WireGuard at all; either answer comes from netlink.
    const result = add("swarm-absent0", key, "10.0.0.0/24,fd00::/64");
    expect(result.stderr).toMatch(
      /^wg-allowed-add: (the kernel's WireGuard family: No such file or directory|swarm-absent0: No such device)\n$/,
    );
    expect(result.status).not.toBe(0);
  });
});

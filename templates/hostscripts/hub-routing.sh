# shellcheck shell=bash
# Hub routing: the hub of a hub topology forwards between its WireGuard peers and nowhere else,
# so the hosts that route the mesh block to it reach each other. Forwarding is enabled on wg0
# only (IPv4 forwards what arrives on an interface whose forwarding is on), and the swarm-owned
# table below drops everything else wg0 would forward; no other table is touched.
# The names below are the TypeScript's constants (templates/wireguard.ts).
wg_interface=wg0
hub_dropin=/etc/systemd/system/wg-quick@wg0.service.d/swarm-hub-routing.conf
hub_ruleset=/etc/wireguard/wg0-hub-routing.nft
hub_family=inet
hub_table=swarm_hub

# swarm_hub_routing_on: loads the table when the ruleset changed or the table is missing, and
# turns forwarding on for wg0 (and its ICMP redirects off: the peers reach each other only
# through the hub). The drop-in does the same each time wg0 comes up.
# shellcheck disable=SC2154 # swarm_host: set by the apply script, which these functions are part of
swarm_hub_routing_on() {
  local error
  if swarm_changed "$hub_ruleset" || ! nft list table "$hub_family" "$hub_table" >/dev/null 2>&1; then
    if ! error=$(nft -f "$hub_ruleset" 2>&1); then
      fail "nft cannot load $hub_ruleset: $error; the hosts routed through this hub cannot reach each other until it loads"
    fi
    echo "swarm: $swarm_host: loaded nftables table $hub_family $hub_table: $wg_interface forwards between its peers only"
  fi
  if [ "$(sysctl -n "net.ipv4.conf.$wg_interface.forwarding")" != 1 ] ||
    [ "$(sysctl -n "net.ipv4.conf.$wg_interface.send_redirects")" != 0 ]; then
    if ! error=$(sysctl -q -w "net.ipv4.conf.$wg_interface.forwarding=1" "net.ipv4.conf.$wg_interface.send_redirects=0" 2>&1); then
      fail "cannot enable forwarding on $wg_interface: $error. /proc/sys/net must be writable (a container needs its own network namespace with /proc/sys/net mounted read-write); the hosts routed through this hub cannot reach each other until it is"
    fi
    echo "swarm: $swarm_host: enabled forwarding on $wg_interface"
  fi
}

# swarm_hub_routing_off: on a host that was the hub (its drop-in is there), removes the drop-in,
# the ruleset and the table, and turns forwarding on wg0 off. Needs no other function.
swarm_hub_routing_off() {
  [ -e "$hub_dropin" ] || return 0
  rm -f "$hub_dropin" "$hub_ruleset"
  rmdir --ignore-fail-on-non-empty "${hub_dropin%/*}"
  systemctl daemon-reload
  if command -v nft >/dev/null && nft list table "$hub_family" "$hub_table" >/dev/null 2>&1; then
    nft delete table "$hub_family" "$hub_table"
  fi
  if [ -e "/proc/sys/net/ipv4/conf/$wg_interface" ]; then
    sysctl -q -w "net.ipv4.conf.$wg_interface.forwarding=0" || true
  fi
  echo "swarm: removed hub routing (nftables table $hub_family $hub_table, $hub_dropin, $hub_ruleset)"
}

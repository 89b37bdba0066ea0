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
hub_keepout6=/etc/wireguard/wg0-hub-routing-ipv6.nft
# 1 when the mesh is dual-stack: the hub forwards IPv6 between its peers too.
hub_ipv6=0
# Where each interface's IPv6 settings are (accept_ra).
hub_ipv6_conf=/proc/sys/net/ipv6/conf

# swarm_hub_routing_on: loads the table when the ruleset changed or the table is missing, and
# turns forwarding on for wg0 (and its ICMP redirects off: the peers reach each other only
# through the hub). The drop-in does the same each time wg0 comes up.
# shellcheck disable=SC2154 # swarm_host: set by the apply script, which these functions are part of
#
# IPv6 is forwarded only with net.ipv6.conf.all.forwarding on (the per-interface switch does not
# forward), which turns forwarding on between every interface and stops interfaces whose accept_ra
# is 1 from taking router advertisements. When it is off, the hub turns it on and keeps the rest as
# it was: the keep-out file, which the ruleset includes, drops forwarded IPv6 that does not go
# through wg0, and accept_ra 1 becomes 2 (accept them while forwarding). The file records which
# interfaces changed, so that turning it off puts them back. A host that forwarded IPv6 already is
# a router: it is left as it is.
swarm_hub_routing_on() {
  local error file name turn_on6=0
  local -a ra_changed=()
  if [ "$hub_ipv6" != 1 ] && [ -e "$hub_keepout6" ]; then
    swarm_hub_ipv6_off
  fi
  if [ "$hub_ipv6" = 1 ] && [ "$(sysctl -n net.ipv6.conf.all.forwarding)" != 1 ]; then
    turn_on6=1
    for file in "$hub_ipv6_conf"/*/accept_ra; do
      name=${file%/accept_ra}
      name=${name##*/}
      [ "$name" = all ] || [ "$(<"$file")" != 1 ] || ra_changed+=("$name")
    done
    swarm_write "$hub_keepout6" 0644 root:root <<SWARM_KEEPOUT_EOF
# Installed by swarm: IPv6 forwarding was off on this host before it became the hub of a dual-stack
# mesh. Forwarded IPv6 that does not go through $wg_interface is dropped, as when it was off.
# accept_ra changed from 1 to 2: ${ra_changed[*]}
add rule $hub_family $hub_table forward meta nfproto ipv6 iifname != "$wg_interface" oifname != "$wg_interface" counter drop comment "IPv6 forwarding is for the mesh only"
SWARM_KEEPOUT_EOF
  fi
  if swarm_changed "$hub_ruleset" || [ "$turn_on6" = 1 ] ||
    ! nft list table "$hub_family" "$hub_table" >/dev/null 2>&1; then
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
  if [ "$turn_on6" = 1 ]; then
    for name in "${ra_changed[@]}"; do
      echo 2 >"$hub_ipv6_conf/$name/accept_ra" || true
    done
    if ! error=$(sysctl -q -w net.ipv6.conf.all.forwarding=1 2>&1); then
      fail "cannot enable IPv6 forwarding: $error. /proc/sys/net must be writable; the hosts routed through this hub cannot reach each other over IPv6 until it is"
    fi
    echo "swarm: $swarm_host: enabled IPv6 forwarding; forwarded IPv6 that does not go through $wg_interface is dropped ($hub_keepout6)${ra_changed[*]:+, accept_ra 2 on ${ra_changed[*]}}"
  fi
}

# swarm_hub_ipv6_off: turns off the IPv6 forwarding the hub turned on (the keep-out file says it
# did), puts accept_ra back where it changed it, and removes the file; the ruleset is reloaded by
# whoever changed it.
swarm_hub_ipv6_off() {
  local line name
  [ -e "$hub_keepout6" ] || return 0
  sysctl -q -w net.ipv6.conf.all.forwarding=0 || true
  while IFS= read -r line; do
    [[ $line == "# accept_ra changed from 1 to 2:"* ]] || continue
    for name in ${line#*:}; do
      [ ! -e "$hub_ipv6_conf/$name/accept_ra" ] || echo 1 >"$hub_ipv6_conf/$name/accept_ra" || true
    done
  done <"$hub_keepout6"
  rm -f "$hub_keepout6"
  echo "swarm: turned IPv6 forwarding off again and removed $hub_keepout6"
}

# swarm_hub_routing_off: on a host that was the hub (its drop-in is there), removes the drop-in,
# the ruleset and the table, and turns forwarding on wg0 off, and IPv6 forwarding where the hub
# turned it on. Needs no function but these.
swarm_hub_routing_off() {
  [ -e "$hub_dropin" ] || return 0
  swarm_hub_ipv6_off
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

# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # swarm_host, wg_previous, wg_expected, wg_plan_*, wg_addresses6_before: set by the apply script before these functions run; wg_live_*: read by it after
# Functions of the WireGuard apply script that read the plan's peers, the files and the running
# interface, and undo an apply. The names below are the TypeScript's constants (templates/wireguard.ts).
wg_interface=wg0
wg_dir=/etc/wireguard
wg_conf_name=wg0.conf
wg_public_conf_name=wg0.conf.public
wg_conf_path=/etc/wireguard/wg0.conf
wg_unit=wg-quick@wg0
# swarm_wg_file_endpoints FILE: each peer's public key and the Endpoint FILE gives it, one a line.
swarm_wg_file_endpoints() {
  local line key=
  [ -f "$1" ] || return 0
  while IFS= read -r line; do
    case $line in
    "PublicKey = "*) key=${line#PublicKey = } ;;
    "Endpoint = "*) printf '%s %s\n' "$key" "${line#Endpoint = }" ;;
    esac
  done <"$1"
}
# swarm_wg_sort LIST: AllowedIPs as wg show dump (or wg-quick strip, with blanks) writes them,
# sorted as the plan lists them (byte order: the prelude sets LC_ALL=C), in $wg_sorted. It runs once
# per peer, so it starts no process: an insertion sort of the few entries a peer has.
wg_sorted=
swarm_wg_sort() {
  local -a items=()
  local item i j
  IFS=, read -ra items <<<"${1// /}"
  for ((i = 1; i < ${#items[@]}; i++)); do
    item=${items[i]}
    for ((j = i - 1; j >= 0; j--)); do
      [[ ${items[j]} > $item ]] || break
      items[j + 1]=${items[j]}
    done
    items[j + 1]=$item
  done
  local IFS=,
  wg_sorted="${items[*]}"
}
# swarm_wg_read_live: the running interface's public key and, per peer, AllowedIPs, endpoint and
# bytes received; false when the interface is not up. The dump's first line holds the private key:
# it stays in this function's variables.
declare -A wg_live_allowed=() wg_live_endpoint=() wg_live_rx=() wg_live_keepalive=()
wg_live_key=
wg_live_port=
swarm_wg_read_live() {
  local first=1 key psk endpoint allowed rx keepalive
  wg_live_key=
  wg_live_port=
  wg_live_allowed=() wg_live_endpoint=() wg_live_rx=() wg_live_keepalive=()
  while IFS=$'\t' read -r key psk endpoint allowed _ rx _ keepalive; do
    if [ "$first" = 1 ]; then
      # The interface's line: private key, public key, listen port, fwmark.
      first=0
      wg_live_key=$psk
      wg_live_port=$endpoint
      continue
    fi
    swarm_wg_sort "$allowed"
    wg_live_allowed[$key]=$wg_sorted
    wg_live_endpoint[$key]=$endpoint
    wg_live_rx[$key]=$rx
    wg_live_keepalive[$key]=$keepalive
  done < <(wg show ${wg_interface} dump 2>/dev/null)
  [ "$first" = 0 ]
}
# swarm_wg_allowed_add INTERFACE PUBLIC_KEY CIDRS [PUBLIC_KEY CIDRS]...: hostscripts/wg-allowed-add.pl,
# which the TypeScript puts in place of the here-document's one line.
swarm_wg_allowed_add() {
  perl - "$@" <<'WG_ALLOWED_ADD'
die "wg-allowed-add: this copy of the script was not given hostscripts/wg-allowed-add.pl\n";
WG_ALLOWED_ADD
}
# swarm_wg_take_away CIDR...: no peer holds any CIDR given any more. A peer made for that purpose
# takes them in one step, then is removed with them: nothing else is taken from any peer. Its key is
# new, its private half never kept (nothing can ever answer as it), and it has no endpoint.
swarm_wg_take_away() {
  local sink
  sink=$(wg genkey | wg pubkey) || return 1
  wg set ${wg_interface} peer "$sink" allowed-ips "$(IFS=,; echo "$*")" || return 1
  wg set ${wg_interface} peer "$sink" remove
}
# swarm_wg_missing A B: the CIDRs of the list A that the list B lacks (lists as swarm_wg_sort
# writes them; "(none)" is empty), in the array wg_missing.
wg_missing=()
swarm_wg_missing() {
  local -a items=()
  local item
  wg_missing=()
  [ "$1" != "(none)" ] || return 0
  IFS=, read -ra items <<<"$1"
  for item in "${items[@]}"; do
    case ",$2," in
    *",$item,"*) ;;
    *) wg_missing+=("$item") ;;
    esac
  done
}
# swarm_wg_sync TEXT: makes the running interface run TEXT (what wg-quick strip prints) by changing
# only what differs. wg syncconf, and wg set with allowed-ips, flag each peer "replace AllowedIPs":
# the kernel removes all of the peer's AllowedIPs before it adds the new list, and a packet to or
# from the peer in between matches no peer and is dropped (on a lab host pinging every 2 ms, about
# one such change in 20 lost a packet). So no AllowedIPs are ever replaced here:
# - a peer that stays as it is gets no call at all;
# - AllowedIPs a peer gains are added to the ones it keeps (wg-allowed-add, as the wg of newer
#   releases does with "+"); a CIDR that moves from another peer moves in one step;
# - AllowedIPs a peer loses are taken away by swarm_wg_take_away: nothing is taken from the CIDRs
#   the peer keeps;
# - peers added or changed go first and peers removed last, so AllowedIPs that move to another key
#   never fall through.
# An Endpoint is set for a new peer, a peer that has none, and a peer whose Endpoint the
# configuration moved (wg_endpoint_before/now); otherwise a peer keeps the endpoint it roamed to.
# Sets wg_sync_done to what it did; false when the interface is not up or a change was refused.
wg_sync_done=
swarm_wg_sync() {
  local line key value peer='' port='' private='' foreign='' ips set_interface=0
  local -A allowed=() endpoint=() keepalive=()
  local -a order=() args=() gained=() dropped=() unplanned=()
  local n_added=0 n_changed=0 n_removed=0 allowed_changed reread=0
  # Read as wg reads a configuration: no comments, no white space, keys in any case.
  while IFS= read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [ -n "$line" ] || continue
    key=${line%%=*}
    key=${key,,}
    value=${line#*=}
    case $key in
    "[interface]") ;;
    "[peer]") peer='' ;;
    privatekey) private=$value ;;
    listenport) port=$value ;;
    publickey)
      peer=$value
      order+=("$peer")
      allowed[$peer]=''
      endpoint[$peer]=''
      keepalive[$peer]=off
      ;;
    allowedips)
      if [ -n "$peer" ]; then
        swarm_wg_sort "$value"
        allowed[$peer]=$wg_sorted
      fi
      ;;
    endpoint) [ -z "$peer" ] || endpoint[$peer]=$value ;;
    persistentkeepalive) [ -z "$peer" ] || [ "$value" = 0 ] || keepalive[$peer]=$value ;;
    *) foreign=$key ;;
    esac
  done <<<"$1"
  if [ -n "$foreign" ]; then
    # Only the setting's name: its value may be a secret (a preshared key).
    echo "swarm: $swarm_host: ${wg_interface} is not changed: the configuration sets $foreign, which swarm never writes" >&2
    return 1
  fi
  swarm_wg_read_live || return 1
  local routed_before="${wg_live_allowed[*]}"
  for peer in "${!wg_live_allowed[@]}"; do
    [ -n "${allowed[$peer]+set}" ] || unplanned+=("$peer")
  done
  if [ -n "$private" ] && [ "$(wg pubkey <<<"$private")" != "$wg_live_key" ]; then
    # The key reaches wg through a pipe, never as an argument.
    wg set ${wg_interface} private-key <(printf '%s\n' "$private") || return 1
    set_interface=1
  fi
  if [ -n "$port" ] && [ "$port" != "$wg_live_port" ]; then
    wg set ${wg_interface} listen-port "$port" || return 1
    set_interface=1
  fi
  for peer in "${order[@]}"; do
    args=()
    # wg show dump writes no AllowedIPs as "(none)".
    ips=${allowed[$peer]:-(none)}
    if [ -z "${wg_live_allowed[$peer]+set}" ]; then
      args+=(allowed-ips "${allowed[$peer]}")
      [ -z "${endpoint[$peer]}" ] || args+=(endpoint "${endpoint[$peer]}")
      [ "${keepalive[$peer]}" = off ] || args+=(persistent-keepalive "${keepalive[$peer]}")
      wg set ${wg_interface} peer "$peer" "${args[@]}" || return 1
      n_added=$((n_added + 1))
      continue
    fi
    if [ "${wg_live_allowed[$peer]}" != "$ips" ]; then
      swarm_wg_missing "${allowed[$peer]}" "${wg_live_allowed[$peer]}"
      [ ${#wg_missing[@]} -eq 0 ] || gained+=("$peer" "$(IFS=,; echo "${wg_missing[*]}")")
      allowed_changed=1
      reread=1
    else
      allowed_changed=0
    fi
    if [ -n "${endpoint[$peer]}" ] && [ "${wg_live_endpoint[$peer]}" != "${endpoint[$peer]}" ] &&
      { [ "${wg_live_endpoint[$peer]}" = "(none)" ] ||
        [ "${wg_endpoint_before[$peer]-}" != "${wg_endpoint_now[$peer]-}" ]; }; then
      args+=(endpoint "${endpoint[$peer]}")
    fi
    [ "${wg_live_keepalive[$peer]}" = "${keepalive[$peer]}" ] ||
      args+=(persistent-keepalive "${keepalive[$peer]}")
    if [ ${#args[@]} -gt 0 ]; then
      wg set ${wg_interface} peer "$peer" "${args[@]}" || return 1
    fi
    if [ ${#args[@]} -gt 0 ] || [ "$allowed_changed" = 1 ]; then
      n_changed=$((n_changed + 1))
    fi
  done
  if [ ${#gained[@]} -gt 0 ]; then
    swarm_wg_allowed_add ${wg_interface} "${gained[@]}" || return 1
  fi
  # What the peers hold now that the CIDRs they gained (some taken from another peer) are in place;
  # only a running peer whose AllowedIPs differed can hold one too many.
  if [ "$reread" = 1 ]; then
    swarm_wg_read_live || return 1
    for peer in "${order[@]}"; do
      # A peer the interface does not run after all: the comparison with the plan names it.
      [ -n "${wg_live_allowed[$peer]+set}" ] || continue
      swarm_wg_missing "${wg_live_allowed[$peer]}" "${allowed[$peer]}"
      dropped+=("${wg_missing[@]}")
    done
  fi
  if [ ${#dropped[@]} -gt 0 ]; then
    swarm_wg_take_away "${dropped[@]}" || return 1
  fi
  for peer in "${unplanned[@]}"; do
    wg set ${wg_interface} peer "$peer" remove || return 1
    n_removed=$((n_removed + 1))
  done
  wg_sync_done="wg set: $n_added peer(s) added, $n_changed changed, $n_removed removed"
  [ "$set_interface" = 0 ] || wg_sync_done+=", its key or listen port set"
  swarm_wg_routes "$routed_before" "${allowed[*]}"
}
# swarm_wg_routes BEFORE AFTER: the routes through the interface that wg-quick sets up when it
# starts (one for each AllowedIPs CIDR that no route through the interface covers yet: the mesh's
# own /32s are on the interface's subnet, a host's extra routes are not), kept true after a change
# in place: wg set changes peers, never routes, so a CIDR added to a peer's AllowedIPs would never
# enter the tunnel and one taken away would go on being sent into it. AFTER: the AllowedIPs now,
# BEFORE: those the interface had (the routes it may have for them); lists of CIDRs separated by
# commas or spaces. Only routes as wg-quick adds them (proto boot) are removed.
swarm_wg_routes() {
  local cidr
  local -a list
  local -A before=() after=()
  read -ra list <<<"${1//,/ }"
  for cidr in "${list[@]}"; do before[$cidr]=1; done
  read -ra list <<<"${2//,/ }"
  for cidr in "${list[@]}"; do after[$cidr]=1; done
  unset 'before[(none)]' 'after[(none)]'
  for cidr in "${!after[@]}"; do
    if [ -z "$(swarm_wg_route "$cidr" show dev ${wg_interface} match "$cidr" 2>/dev/null)" ]; then
      swarm_wg_route "$cidr" add "$cidr" dev ${wg_interface} || return 1
      echo "swarm: $swarm_host: routed $cidr through ${wg_interface}"
    fi
  done
  for cidr in "${!before[@]}"; do
    if [ -z "${after[$cidr]-}" ] &&
      [ -n "$(swarm_wg_route "$cidr" show dev ${wg_interface} exact "$cidr" proto boot 2>/dev/null)" ]; then
      swarm_wg_route "$cidr" del "$cidr" dev ${wg_interface} || return 1
      echo "swarm: $swarm_host: no longer routes $cidr through ${wg_interface}"
    fi
  done
}
# swarm_wg_route CIDR ARGS...: ip route ARGS in CIDR's address family.
swarm_wg_route() {
  if [[ $1 == *:* ]]; then
    ip -6 route "${@:2}"
  else
    ip -4 route "${@:2}"
  fi
}
# swarm_wg_live_as_planned: true when the running interface has the planned public key and exactly
# the planned peers with their AllowedIPs (a peer added with wg set, or AllowedIPs changed by hand,
# make it false: the apply script then applies the files again). Endpoints roam: not compared.
swarm_wg_live_as_planned() {
  local peer
  swarm_wg_read_live || return 1
  [ "$wg_live_key" = "$wg_expected" ] || return 1
  [ "${#wg_live_allowed[@]}" = "${#wg_plan_order[@]}" ] || return 1
  for peer in "${wg_plan_order[@]}"; do
    [ "${wg_live_allowed[$peer]-}" = "${wg_plan_allowed[$peer]}" ] || return 1
  done
}
# swarm_wg_addresses6: the interface's global IPv6 addresses with their prefix length, in
# wg_live6 (empty when it has none or is down).
wg_live6=()
swarm_wg_addresses6() {
  local address
  wg_live6=()
  while read -r _ _ _ address _; do
    wg_live6+=("$address")
  done < <(ip -6 -o address show dev ${wg_interface} scope global 2>/dev/null)
}
# swarm_wg_readdress6 WANTED...: makes the WANTED addresses (address/prefix) the interface's only
# global IPv6 addresses, in place: wg-quick sets Address only when the interface starts, and a
# restart would drop every tunnel to change an address that none of them depends on. Sets
# wg_readdressed to what it did; false when ip refused a change.
wg_readdressed=
swarm_wg_readdress6() {
  local address
  local -A wanted=()
  for address in "$@"; do wanted[$address]=1; done
  wg_readdressed=
  swarm_wg_addresses6
  for address in "${wg_live6[@]}"; do
    if [ -n "${wanted[$address]-}" ]; then
      unset "wanted[$address]"
    else
      ip -6 address del "$address" dev ${wg_interface} || return 1
      wg_readdressed+=" removed $address"
    fi
  done
  for address in "${!wanted[@]}"; do
    ip -6 address add "$address" dev ${wg_interface} || return 1
    wg_readdressed+=" added $address"
  done
}
# Puts back the files this run replaced (or removes the ones it created).
swarm_wg_restore_files() {
  local name
  for name in ${wg_conf_name} ${wg_public_conf_name}; do
    if [ -f "$wg_previous/$name" ]; then
      mv -f "$wg_previous/$name" "${wg_dir}/$name"
    else
      rm -f "${wg_dir}/$name"
    fi
  done
}
# swarm_wg_rollback HOW: restores the previous files and the interface as it ran before HOW
# (sync, restart or start) applied the new ones.
swarm_wg_rollback() {
  local previous=0 stripped
  [ -f "$wg_previous/${wg_conf_name}" ] && previous=1
  swarm_wg_restore_files
  case $1 in
  sync)
    if [ "$previous" = 1 ] && stripped=$(wg-quick strip ${wg_interface}) && swarm_wg_sync "$stripped" &&
      swarm_wg_readdress6 "${wg_addresses6_before[@]}"; then
      echo "swarm: $swarm_host: rolled ${wg_interface} back to the previous ${wg_conf_path} ($wg_sync_done${wg_readdressed:+; IPv6 address:$wg_readdressed})" >&2
    else
      echo "swarm: $swarm_host: could not roll ${wg_interface} back: there is no previous ${wg_conf_path}, or wg refused it" >&2
    fi
    ;;
  restart)
    if [ "$previous" = 1 ] && systemctl restart ${wg_unit}; then
      echo "swarm: $swarm_host: restarted ${wg_unit} with the previous ${wg_conf_path}" >&2
    else
      systemctl stop ${wg_unit} || true
      echo "swarm: $swarm_host: stopped ${wg_unit}: there is no previous ${wg_conf_path} it starts with" >&2
    fi
    ;;
  start)
    # The interface was down before this run: it goes down again.
    systemctl stop ${wg_unit} || true
    [ "$previous" = 1 ] || systemctl disable --quiet ${wg_unit} || true
    echo "swarm: $swarm_host: stopped ${wg_unit} again: it was not running before this run" >&2
    ;;
  esac
}

#!/bin/bash
# swarm-drift: what on this host differs from what swarm installed (installed by swarm; do not edit).
#
# Every step of swarm records what it installed in one file under $SWARM_OWNED_DIR (default
# /var/lib/swarm/owned), named after the step, one tab-separated line per thing it owns:
#
#   file  PATH  SHA256  MODE  USER:GROUP     the file's content, mode (stat %a) and owner
#   unit  UNIT                               enabled and active
#   peer  INTERFACE  NAME  KEY  ALLOWED-IPS  a WireGuard peer (AllowedIPs comma-separated); a live
#                                            peer on INTERFACE that no record names is drift too,
#                                            and so is a block of ALLOWED-IPS (IPv4 or IPv6) that
#                                            no route through INTERFACE holds
#   interface  INTERFACE  KEY                the public key INTERFACE runs (reported as kind peer)
#   zfs   DATASET  PROPERTY  VALUE           a dataset property, as `zfs get` prints it
#   user  USER  HOME  SHELL                  a user swarm created, its home and login shell
#
# This program compares the host with every record and prints one line per drifted item,
# tab-separated and sorted: STEP KIND ITEM DETAIL. It exits 0 with or without drift (the lines
# say it), and 2 when it cannot read the records; no record directory means no records.
# Runtime state is never compared: endpoints, handshakes, byte counters, snapshots, dataset
# contents, sync logs and status files, owner markers.
#
# SWARM_DRIFT_SKIP_OWNER_OF=PATH leaves out the record that holds the file PATH: the health gate
# runs inside the health step, whose record is rewritten only after the gate, so that record
# still describes the files this run is replacing.
set -euo pipefail
export LC_ALL=C

OWNED_DIR=/var/lib/swarm/owned
records=${SWARM_OWNED_DIR:-$OWNED_DIR}
skip_owner_of=${SWARM_DRIFT_SKIP_OWNER_OF:-}

# ---------------------------------------------------------------- sources
# Every look at the host goes through one of these, so a test can put fakes of systemctl, wg and
# zfs on PATH.

# Files and units are looked at in one call each for the whole host, not one per record: a host
# with many records then starts four processes, not four per record.

# src_sha256s PATH...: per readable file, "SHA256  PATH" NUL-terminated (sha256sum -z: no escaping
# of the name); nothing for a file that cannot be read.
src_sha256s() {
  sha256sum -z -- "$@" 2>/dev/null || true
}

# src_stats PATH...: per file, "MODE<TAB>USER:GROUP<TAB>PATH" NUL-terminated, the mode as stat's
# %a (no leading zero); nothing for a file that is gone.
src_stats() {
  stat --printf '%a\t%U:%G\t%n\0' -- "$@" 2>/dev/null || true
}

# src_units UNIT...: `systemctl show` of LoadState, UnitFileState and ActiveState, one block per
# unit in the order given, blocks separated by an empty line.
src_units() {
  systemctl show -p LoadState,UnitFileState,ActiveState -- "$@" 2>/dev/null
}

# src_wg_dump INTERFACE: `wg show INTERFACE dump`; fails when the interface is down.
src_wg_dump() {
  wg show "$1" dump 2>/dev/null
}

# src_routes INTERFACE: the IPv4 routes through INTERFACE in the main table, as `ip -4 route show
# dev` prints them: the destination first (`10.8.0.0/24 proto kernel scope link src 10.8.0.1`,
# `10.20.0.0/24 scope link`, `default via ...`).
src_routes() {
  ip -4 route show dev "$1" 2>/dev/null || true
}

# src_routes6 INTERFACE: the IPv6 routes through INTERFACE in the main table, as `ip -6 route show
# dev` prints them (`fd31:a7c9:5e04:8::/64 proto kernel metric 256 pref medium`).
src_routes6() {
  ip -6 route show dev "$1" 2>/dev/null || true
}

# src_passwd USER: the user's passwd entry (getent); fails when there is none.
src_passwd() {
  getent passwd -- "$1" 2>/dev/null
}

# src_zfs_get DATASET PROPERTY: the property's value, as `zfs get` prints it.
src_zfs_get() {
  zfs get -H -o value "$2" "$1" 2>/dev/null
}

# ---------------------------------------------------------------- helpers

cannot_read() {
  echo "swarm-drift: cannot read $1: $2" >&2
  exit 2
}

drift=()
# found STEP KIND ITEM DETAIL: one drifted item.
found() {
  drift+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"$4")
}

# joined SEPARATOR ITEM...: the items, SEPARATOR between each two.
joined() {
  local separator=$1 out=$2 item
  shift 2
  for item in "$@"; do
    out+=$separator$item
  done
  printf '%s' "$out"
}

# mode_of MODE: an octal mode without leading zeros, so 0600 and 600 compare equal; in $mode.
mode_of() {
  mode=${1#"${1%%[!0]*}"}
  mode=${mode:-0}
}

# address_list LIST: AllowedIPs as a sorted, comma-separated list; "(none)", as wg prints an
# empty list, and "" are the empty list.
address_list() {
  [ "$1" != "(none)" ] || return 0
  printf '%s' "$1" | tr ',' '\n' | awk 'NF' | sort -uV | paste -sd, -
}

# ipv4_block CIDR: the first and last address of an IPv4 CIDR (a bare address is a /32, host bits
# are masked, `default` is 0.0.0.0/0) as numbers, in $block_first and $block_last; fails on
# anything else (an IPv6 block).
ipv4_block() {
  local cidr=$1 prefix=32 a b c d size
  [ "$cidr" != default ] || cidr=0.0.0.0/0
  [[ $cidr =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(/([0-9]{1,2}))?$ ]] || return 1
  a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]} d=${BASH_REMATCH[4]}
  [ -z "${BASH_REMATCH[6]}" ] || prefix=$((10#${BASH_REMATCH[6]}))
  [ "$prefix" -le 32 ] || return 1
  size=$((1 << (32 - prefix)))
  block_first=$((((10#$a << 24) | (10#$b << 16) | (10#$c << 8) | 10#$d) / size * size))
  block_last=$((block_first + size - 1))
}

# ipv6_block CIDR: for an IPv6 CIDR (a bare address is a /128, `default` is ::/0), sets block6 to
# its prefix length followed by its eight 16-bit groups in decimal; false when it is not one. Bash
# arithmetic has 64 bits, so a block is compared group by group (holds6), never as one number.
block6=
ipv6_block() {
  local cidr=$1 address prefix=128 head tail missing i
  local -a first=() last=() groups=()
  [ "$cidr" != default ] || cidr=::/0
  [[ $cidr == *:* ]] || return 1
  address=${cidr%/*}
  if [[ $cidr == */* ]]; then
    [[ ${cidr#*/} =~ ^[0-9]{1,3}$ ]] || return 1
    prefix=$((10#${cidr#*/}))
  fi
  [ "$prefix" -le 128 ] || return 1
  head=$address tail=
  if [[ $address == *::* ]]; then
    head=${address%%::*} tail=${address#*::}
  fi
  [ -z "$head" ] || IFS=: read -ra first <<<"$head"
  [ -z "$tail" ] || IFS=: read -ra last <<<"$tail"
  missing=$((8 - ${#first[@]} - ${#last[@]}))
  if [[ $address == *::* ]]; then
    [ "$missing" -ge 1 ] || return 1
  else
    [ "$missing" -eq 0 ] || return 1
  fi
  groups=("${first[@]}")
  for ((i = 0; i < missing; i++)); do groups+=(0); done
  groups+=("${last[@]}")
  for i in "${!groups[@]}"; do
    [[ ${groups[i]} =~ ^[0-9a-fA-F]{1,4}$ ]] || return 1
    groups[i]=$((16#${groups[i]}))
  done
  block6="$prefix ${groups[*]}"
}

# holds6 OUTER INNER: whether the IPv6 block OUTER holds INNER (both as ipv6_block sets block6).
holds6() {
  local -a outer inner
  local i bits mask
  read -ra outer <<<"$1"
  read -ra inner <<<"$2"
  [ "${outer[0]}" -le "${inner[0]}" ] || return 1
  for ((i = 0; i < 8; i++)); do
    bits=$((outer[0] - 16 * i))
    [ "$bits" -gt 0 ] || return 0
    [ "$bits" -le 16 ] || bits=16
    mask=$(((0xffff << (16 - bits)) & 0xffff))
    [ $((outer[i + 1] & mask)) -eq $((inner[i + 1] & mask)) ] || return 1
  done
}

# ---------------------------------------------------------------- comparisons

# Records of files and units, collected from every record first and compared in one pass.
file_steps=() file_paths=() file_sums=() file_modes=() file_owners=()
unit_steps=() unit_names=()

# check_files: every file record against the file.
check_files() {
  local i path rec sum now_mode now_owner expected_mode mode details
  local -A sums=() stats=()
  local readable=()
  [ "${#file_paths[@]}" -gt 0 ] || return 0
  for path in "${file_paths[@]}"; do
    [ -L "$path" ] || [ ! -f "$path" ] || readable+=("$path")
  done
  if [ "${#readable[@]}" -gt 0 ]; then
    while IFS= read -r -d '' rec; do
      sums[${rec#*  }]=${rec%%  *}
    done < <(src_sha256s "${readable[@]}")
    while IFS= read -r -d '' rec; do
      path=${rec#*$'\t'*$'\t'}
      stats[$path]=${rec%$'\t'"$path"}
    done < <(src_stats "${readable[@]}")
  fi
  for i in "${!file_paths[@]}"; do
    path=${file_paths[$i]}
    if [ ! -e "$path" ] && [ ! -L "$path" ]; then
      found "${file_steps[$i]}" file "$path" missing
      continue
    fi
    if [ -L "$path" ] || [ ! -f "$path" ]; then
      found "${file_steps[$i]}" file "$path" "not a regular file"
      continue
    fi
    if [ -z "${sums[$path]+set}" ] || [ -z "${stats[$path]+set}" ]; then
      found "${file_steps[$i]}" file "$path" "unreadable"
      continue
    fi
    details=()
    now_mode=${stats[$path]%%$'\t'*} now_owner=${stats[$path]#*$'\t'}
    sum=${sums[$path]}
    [ "$sum" = "${file_sums[$i]}" ] || details+=("content changed")
    mode_of "${file_modes[$i]}"
    expected_mode=$mode
    mode_of "$now_mode"
    [ "$mode" = "$expected_mode" ] || details+=("mode $mode, expected $expected_mode")
    [ "$now_owner" = "${file_owners[$i]}" ] || details+=("owner $now_owner, expected ${file_owners[$i]}")
    [ "${#details[@]}" -eq 0 ] || found "${file_steps[$i]}" file "$path" "$(joined "; " "${details[@]}")"
  done
}

# check_units: every unit record: enabled (in any state systemctl is-enabled counts as enabled:
# enabled, static, alias, ...; swarm leaves those alone) and active.
check_units() {
  local i=0 line details
  local load=() file=() active=()
  [ "${#unit_names[@]}" -gt 0 ] || return 0
  while IFS= read -r line; do
    case $line in
      "") i=$((i + 1)) ;;
      LoadState=*) load[i]=${line#*=} ;;
      UnitFileState=*) file[i]=${line#*=} ;;
      ActiveState=*) active[i]=${line#*=} ;;
    esac
  done < <(src_units "${unit_names[@]}" || true)
  for i in "${!unit_names[@]}"; do
    details=()
    case ${file[i]:-}/${load[i]:-} in
      enabled/* | enabled-runtime/* | static/* | alias/* | indirect/* | generated/* | transient/*) ;;
      /* | */not-found) details+=("not installed") ;;
      masked/* | masked-runtime/*) details+=(masked) ;;
      *) details+=("${file[i]}") ;;
    esac
    case ${active[i]:-} in
      active | reloading) ;;
      inactive) details+=(inactive) ;;
      *) details+=("inactive (${active[i]:-unknown})") ;;
    esac
    [ "${#details[@]}" -eq 0 ] || found "${unit_steps[$i]}" unit "${unit_names[$i]}" "$(joined ", " "${details[@]}")"
  done
}

# check_zfs STEP DATASET PROPERTY VALUE
check_zfs() {
  local step=$1 dataset=$2 property=$3 value=$4 now
  if ! now=$(src_zfs_get "$dataset" "$property"); then
    found "$step" zfs "$dataset $property" "unreadable (zfs get failed), expected $value"
  elif [ "$now" != "$value" ]; then
    found "$step" zfs "$dataset $property" "$now, expected $value"
  fi
}

# check_user STEP USER HOME SHELL: a user swarm created, with the home and shell it gave it.
check_user() {
  local step=$1 user=$2 home=$3 shell=$4 entry details=()
  if ! entry=$(src_passwd "$user"); then
    found "$step" user "$user" missing
    return
  fi
  local now_home now_shell
  IFS=: read -r _ _ _ _ _ now_home now_shell <<<"$entry"
  [ "$now_home" = "$home" ] || details+=("home $now_home, expected $home")
  [ "$now_shell" = "$shell" ] || details+=("shell $now_shell, expected $shell")
  [ "${#details[@]}" -eq 0 ] || found "$step" user "$user" "$(joined "; " "${details[@]}")"
}

# Peer records, one entry per record: step, interface, name, key, AllowedIPs.
peer_steps=() peer_interfaces=() peer_names=() peer_keys=() peer_addresses=()
# Interface records: the public key each interface must run, and the step that recorded it.
declare -A interface_keys=() interface_key_steps=()

# check_peers: every recorded peer against its interface, and every live peer against the records.
check_peers() {
  local interface i step dump key allowed now line first unplanned
  local -A interface_step=() planned=() live=()
  for i in "${!peer_interfaces[@]}"; do
    interface=${peer_interfaces[$i]}
    # Records are read in name order, so a rogue peer goes to the same step every time.
    [ -n "${interface_step[$interface]:-}" ] || interface_step[$interface]=${peer_steps[$i]}
    planned[$interface/${peer_keys[$i]}]=1
  done
  # An interface recorded with its key but no peer is compared too.
  for interface in "${!interface_keys[@]}"; do
    [ -n "${interface_step[$interface]:-}" ] || interface_step[$interface]=${interface_key_steps[$interface]}
  done
  for interface in "${!interface_step[@]}"; do
    step=${interface_step[$interface]}
    if ! dump=$(src_wg_dump "$interface"); then
      found "$step" peer "$interface" "interface down (wg show $interface failed): no peer can be compared"
      continue
    fi
    live=()
    first=1
    # The first line is the interface itself; then per peer: public key, preshared key,
    # endpoint, AllowedIPs, latest handshake, received, sent, keepalive. Only the key and the
    # AllowedIPs are swarm's: the rest is runtime state.
    while IFS= read -r line; do
      if [ "$first" = 1 ]; then
        first=0
        # The interface line: its private key (never kept) and its public key.
        IFS=$'\t' read -r _ key _ <<<"$line"
        if [ -n "${interface_keys[$interface]:-}" ] && [ "$key" != "${interface_keys[$interface]}" ]; then
          found "${interface_key_steps[$interface]}" peer "$interface" \
            "runs public key $key, expected ${interface_keys[$interface]}"
        fi
        continue
      fi
      IFS=$'\t' read -r key _ _ allowed _ <<<"$line"
      [ -n "$key" ] || continue
      # As wg printed them; put in order only when they differ from the record's.
      live[$key]=$allowed
      if [ -z "${planned[$interface/$key]:-}" ]; then
        unplanned=$(address_list "$allowed")
        found "$step" peer "$interface peer $key" "not in the plan (AllowedIPs ${unplanned:-(none)})"
      fi
    done <<<"$dump"
    for i in "${!peer_interfaces[@]}"; do
      [ "${peer_interfaces[$i]}" = "$interface" ] || continue
      key=${peer_keys[$i]}
      if [ -z "${live[$key]+set}" ]; then
        found "${peer_steps[$i]}" peer "$interface peer ${peer_names[$i]}" missing
        continue
      fi
      [ "${live[$key]}" != "${peer_addresses[$i]}" ] || continue
      allowed=$(address_list "${peer_addresses[$i]}")
      now=$(address_list "${live[$key]}")
      if [ "$now" != "$allowed" ]; then
        found "${peer_steps[$i]}" peer "$interface peer ${peer_names[$i]}" \
          "AllowedIPs ${now:-(none)}, expected ${allowed:-(none)}"
      fi
    done
    check_routes "$interface"
  done
}

# check_routes INTERFACE: every block (IPv4 or IPv6) of the recorded peers' AllowedIPs is routed through
# INTERFACE, by a route for it or one that holds it (as wg-quick sets them up: the interface's own
# subnet holds the mesh addresses, a host's extra routes get one each). Without it, what WireGuard
# would carry to that peer goes wherever the rest of the routing table sends it.
check_routes() {
  local interface=$1 i line block routes6_read=0
  local -a blocks=() firsts=() lasts=() routes6=()
  while read -r line _; do
    ! ipv4_block "$line" || firsts+=("$block_first") lasts+=("$block_last")
  done < <(src_routes "$interface")
  for i in "${!peer_interfaces[@]}"; do
    [ "${peer_interfaces[$i]}" = "$interface" ] || continue
    IFS=, read -ra blocks <<<"${peer_addresses[$i]}"
    for block in "${blocks[@]}"; do
      if ipv6_block "$block"; then
        # The IPv6 routes are read once, and only on an interface that carries IPv6.
        if [ "$routes6_read" = 0 ]; then
          routes6_read=1
          local six=$block6
          while read -r line _; do
            ! ipv6_block "$line" || routes6+=("$block6")
          done < <(src_routes6 "$interface")
          block6=$six
        fi
        if ! routed_through6 "$block6"; then
          found "${peer_steps[$i]}" peer "$interface route $block" \
            "not routed through $interface (AllowedIPs of peer ${peer_names[$i]}): its traffic goes elsewhere"
        fi
        continue
      fi
      ipv4_block "$block" || continue
      if ! routed_through "$block_first" "$block_last"; then
        found "${peer_steps[$i]}" peer "$interface route $block" \
          "not routed through $interface (AllowedIPs of peer ${peer_names[$i]}): its traffic goes elsewhere"
      fi
    done
  done
}

# routed_through FIRST LAST: whether one of check_routes' routes holds the block FIRST..LAST.
routed_through() {
  local r
  for r in "${!firsts[@]}"; do
    [ "${firsts[$r]}" -gt "$1" ] || [ "${lasts[$r]}" -lt "$2" ] || return 0
  done
  return 1
}

# routed_through6 BLOCK: whether one of check_routes' IPv6 routes holds BLOCK (as block6).
routed_through6() {
  local r
  for r in "${routes6[@]}"; do
    ! holds6 "$r" "$1" || return 0
  done
  return 1
}

# ---------------------------------------------------------------- main

if [ ! -e "$records" ] && [ ! -L "$records" ]; then
  exit 0
fi
[ -d "$records" ] || cannot_read "$records" "not a directory"
if [ ! -r "$records" ] || [ ! -x "$records" ]; then
  cannot_read "$records" "permission denied"
fi

# Name order (LC_ALL=C); a dot file is not a step's record.
for record in "$records"/*; do
  [ -e "$record" ] || [ -L "$record" ] || continue
  step=${record##*/}
  [ -f "$record" ] || cannot_read "$record" "not a regular file"
  { text=$(<"$record"); } 2>/dev/null || cannot_read "$record" "permission denied"
  if [ -n "$skip_owner_of" ] && [[ $'\n'$text == *$'\nfile\t'"$skip_owner_of"$'\t'* ]]; then
    continue
  fi
  n=0
  while IFS= read -r line; do
    n=$((n + 1))
    [ -n "$line" ] || continue
    IFS=$'\t' read -r -a fields <<<"$line"
    case ${fields[0]}/${#fields[@]} in
      file/5)
        file_steps+=("$step") file_paths+=("${fields[1]}") file_sums+=("${fields[2]}")
        file_modes+=("${fields[3]}") file_owners+=("${fields[4]}")
        ;;
      unit/2) unit_steps+=("$step") unit_names+=("${fields[1]}") ;;
      zfs/4) check_zfs "$step" "${fields[@]:1}" ;;
      user/4) check_user "$step" "${fields[@]:1}" ;;
      interface/3)
        interface_keys[${fields[1]}]=${fields[2]}
        interface_key_steps[${fields[1]}]=$step
        ;;
      peer/5 | peer/4)
        # An empty AllowedIPs list leaves the fifth field empty, which read drops.
        peer_steps+=("$step") peer_interfaces+=("${fields[1]}") peer_names+=("${fields[2]}")
        peer_keys+=("${fields[3]}") peer_addresses+=("${fields[4]:-}")
        ;;
      *) echo "swarm-drift: $record:$n: not a record swarm-drift knows, skipped: $line" >&2 ;;
    esac
  done <<<"$text"
done
check_files
check_units
check_peers

[ "${#drift[@]}" -eq 0 ] || printf '%s\n' "${drift[@]}" | sort -u

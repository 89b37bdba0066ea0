#!/bin/bash
# swarm-health: the health of this host as swarm declared it (installed by swarm; do not edit).
#
#   swarm-health gate     wait for every peer (and every host reached through the hub),
#                         trigger every mount, check every sync and every pool's last
#                         scrub, report drift;
#                         one line per check, exit 1 naming every broken thing
#   swarm-health metrics  write Prometheus textfile metrics to $TEXTFILE_DIR/swarm.prom
#   swarm-health json     one JSON object describing this host (for `npm run status`), with
#                         what the next prune of each dataset would destroy
#
# What to expect comes from /etc/swarm/health.conf (SWARM_HEALTH_CONFIG overrides it). What
# differs from what swarm installed comes from swarm-drift (SWARM_DRIFT overrides its path): each
# drifted item is a warning, never a failure.
# Every read of the system goes through one src_* function. When SWARM_HEALTH_FIXTURES
# names a directory, each reads the recorded output of its command there instead
# (`<source>`, with its exit code in `<source>.rc`), and time only passes in sleeps,
# so every decision below can be tested on recorded outputs.
set -euo pipefail
export LC_ALL=C

config=${SWARM_HEALTH_CONFIG:-/etc/swarm/health.conf}
fixtures=${SWARM_HEALTH_FIXTURES:-}
HEALTH_PROGRAM=/usr/local/lib/swarm/swarm-health
DRIFT_PROGRAM=/usr/local/lib/swarm/swarm-drift
SNAPSHOT_PROGRAM=/usr/local/lib/swarm/zfs-snapshot
drift_program=${SWARM_DRIFT:-$DRIFT_PROGRAM}
if [ ! -r "$config" ]; then
  echo "swarm-health: cannot read $config: converge this host with swarm (pulumi up) first" >&2
  exit 2
fi
HOST=$(hostname 2>/dev/null || echo unknown)
WG_INTERFACE=wg0
HANDSHAKE_WAIT=60
MAX_HANDSHAKE_AGE=180
PING_COUNT=3
# Peers pinged at once: a full mesh of hundreds of hosts is checked in seconds, not minutes.
PING_PARALLEL=32
MOUNT_TIMEOUT=20
SYNC_WAIT=120
TEXTFILE_DIR=/var/lib/prometheus/node-exporter
SENTINEL=.swarm-meshfs
PEER_NAMES=() PEER_KEYS=() PEER_ADDRESSES=() PEER_ADDRESSES6=()
ROUTED_NAMES=() ROUTED_ADDRESSES=() ROUTED_ADDRESSES6=() ROUTED_VIA=()
MOUNT_PATHS=() MOUNT_UNITS=()
SYNC_NAMES=() SYNC_TIMERS=() SYNC_SERVICES=() SYNC_STATUS_FILES=() SYNC_LOGS=()
DATASETS=() SNAPSHOT_TIMERS=()
POOLS=() SCRUB_SCHEDULES=() SCRUB_PERIODS=() SCRUB_TIMERS=() SCRUB_SERVICES=() SCRUB_STATUS_FILES=()
REPLICA_EXPORTS=() REPLICA_HOSTS=() REPLICA_TIMERS=() REPLICA_STATUS_FILES=() REPLICA_MAX_LAGS=()
PRUNE_DATASETS=() PRUNE_ARGS=()
SNAPSHOT_PREFIX=swarm-
# shellcheck source=/dev/null
. "$config"

# ---------------------------------------------------------------- sources

# fixture NAME: the recorded output of a source, and its recorded exit code (0 when
# there is no NAME.rc; 1 when the source was not recorded at all).
fixture() {
  local file=$fixtures/$1 rc=0
  # After a unit was run (src_run_unit), the recording of what followed takes precedence.
  if [ -n "$rerun_overlay" ] && { [ -e "$rerun_overlay/$1" ] || [ -e "$rerun_overlay/$1.rc" ]; }; then
    file=$rerun_overlay/$1
  fi
  if [ ! -e "$file" ] && [ ! -e "$file.rc" ]; then
    return 1
  fi
  [ ! -e "$file" ] || cat "$file"
  [ ! -e "$file.rc" ] || rc=$(<"$file.rc")
  return "$rc"
}

rerun_overlay=""

# Virtual seconds slept while replaying fixtures: the recorded clock advances by them.
slept=0

# src_now: seconds since the epoch.
src_now() {
  if [ -n "$fixtures" ]; then
    echo $(($(fixture date) + slept))
    return
  fi
  date +%s
}

# swarm_sleep SECONDS
swarm_sleep() {
  if [ -n "$fixtures" ]; then
    slept=$((slept + $1))
    return
  fi
  sleep "$1"
}

# src_wg_dump: `wg show <interface> dump` without its first line, which holds the private key.
src_wg_dump() {
  if [ -n "$fixtures" ]; then
    fixture wg-dump | sed 1d
    return
  fi
  wg show "$WG_INTERFACE" dump | sed 1d
}

# src_ping ADDRESS: the summary of `ping -q` (its "N received" line is what counts); ADDRESS
# is IPv4 or IPv6, which ping tells apart by itself.
src_ping() {
  if [ -n "$fixtures" ]; then
    # The recording holds one `ping -q` output per address, each starting with its PING line:
    # `PING 10.8.0.1 (10.8.0.1) 56(84) bytes of data.`, `PING fd00::1(fd00::1) 56 data bytes`.
    fixture ping | awk -v a="$1" '/^PING /{x = $2; sub(/\(.*/, "", x); on = (x == a)} on'
    return
  fi
  ping -n -q -c "$PING_COUNT" -i 0.2 -W 1 -- "$1" 2>&1
}

# src_access PATH: reads the sentinel below a mount path, which makes systemd mount it;
# exits 124 when that takes longer than MOUNT_TIMEOUT.
src_access() {
  if [ -n "$fixtures" ]; then
    # The recording holds "PATH EXIT-CODE" lines; a path not listed was readable.
    local rc
    rc=$(fixture access 2>/dev/null | awk -v p="$1" '$1 == p {print $2}') || true
    return "${rc:-0}"
  fi
  timeout -k 5 "$MOUNT_TIMEOUT" stat -c %n -- "$1/$SENTINEL" >/dev/null 2>&1
}

# src_findmnt: every mount as "FSTYPE TARGET" (raw: a space in a target reads \x20).
src_findmnt() {
  if [ -n "$fixtures" ]; then
    fixture findmnt
    return
  fi
  findmnt -rn -o FSTYPE,TARGET
}

# src_systemctl_show UNIT...: their state, one block per unit, blocks separated by a blank line.
src_systemctl_show() {
  if [ -n "$fixtures" ]; then
    fixture systemctl-show
    return
  fi
  [ "$#" -gt 0 ] || return 0
  systemctl show --timestamp=unix \
    -p Id,LoadState,ActiveState,SubState,Result,ExecMainStatus,ExecMainExitTimestamp -- "$@"
}

# src_run_unit UNIT: runs a oneshot unit and waits until it has finished, at most SYNC_WAIT seconds.
# Recorded as rerun/: the recordings of everything read after the run.
src_run_unit() {
  if [ -n "$fixtures" ]; then
    [ ! -d "$fixtures/rerun" ] || rerun_overlay=$fixtures/rerun
    return 0
  fi
  timeout -k 5 "$SYNC_WAIT" systemctl start -- "$1"
}

# src_file PATH: a file swarm keeps on the host (a sync's status file, unison's log).
# Recorded as files/PATH.
src_file() {
  if [ -n "$fixtures" ]; then
    fixture "files$1"
    return
  fi
  cat -- "$1"
}

# src_zfs_snapshots: the name of every snapshot.
src_zfs_snapshots() {
  if [ -n "$fixtures" ]; then
    fixture zfs-list
    return
  fi
  zfs list -H -t snapshot -o name
}

# src_zfs_get DATASET...: "NAME PROPERTY BYTES" for used and available; a missing dataset is left out.
src_zfs_get() {
  if [ -n "$fixtures" ]; then
    fixture zfs-get
    return
  fi
  [ "$#" -gt 0 ] || return 0
  zfs get -Hp -o name,property,value used,available -- "$@" 2>/dev/null
}

# src_scrub POOL FILE: what zfs-scrub recorded in FILE: when it last started, and the last finished
# scrub (started, ended, errors, repaired_bytes, scan: key=value lines, times in seconds since the
# epoch); fails when it never ran. Recorded as scrub/POOL.
src_scrub() {
  if [ -n "$fixtures" ]; then
    fixture "scrub/$1"
    return
  fi
  cat -- "$2"
}

# src_replica EXPORT HOST FILE: what zfs-replica-send recorded in FILE (result, message, started,
# finished, first_attempt, bytes, replicated, replicated_at: key=value lines, times in seconds since the
# epoch); fails when no run finished yet. Recorded as replica/EXPORT.to-HOST.
src_replica() {
  if [ -n "$fixtures" ]; then
    fixture "replica/$1.to-$2"
    return
  fi
  cat -- "$3"
}

# src_prune DATASET ARGS: what the next prune of DATASET would do (zfs-snapshot --dry-run ARGS:
# ACTION<tab>SNAPSHOT<tab>WHY lines). Recorded as prune/DATASET with / as _.
src_prune() {
  if [ -n "$fixtures" ]; then
    fixture "prune/${1//\//_}"
    return
  fi
  # shellcheck disable=SC2086 # ARGS are words: options, the dataset and TIER=N
  "$SNAPSHOT_PROGRAM" $2
}

# src_drift [gate]: swarm-drift's lines (step, kind, item, detail; tab-separated), exit 2 when it
# cannot read the records. The gate runs inside the health step, before that step's record is
# rewritten: it leaves that record out (the one holding this program) rather than report as drift
# the files this very run replaced.
src_drift() {
  if [ -n "$fixtures" ]; then
    fixture drift
    return
  fi
  if [ "${1:-}" = gate ]; then
    SWARM_DRIFT_SKIP_OWNER_OF=$HEALTH_PROGRAM "$drift_program"
  else
    "$drift_program"
  fi
}

# ---------------------------------------------------------------- reading state

declare -A wg_handshake wg_rx wg_tx
wg_up=0
read_wireguard() {
  local dump key latest rx tx
  wg_handshake=() wg_rx=() wg_tx=() wg_up=0
  dump=$(src_wg_dump 2>/dev/null) || return 0
  wg_up=1
  # public-key preshared-key endpoint allowed-ips latest-handshake rx tx keepalive
  while IFS=$'\t' read -r key _ _ _ latest rx tx _; do
    [ -n "$key" ] || continue
    wg_handshake[$key]=$latest wg_rx[$key]=$rx wg_tx[$key]=$tx
  done <<<"$dump"
}

declare -A unit_prop
# read_units UNIT...: fills unit_prop[UNIT.Property].
read_units() {
  local out line block=() id entry
  unit_prop=()
  out=$(src_systemctl_show "$@" 2>/dev/null) || true
  # systemctl prints the unit type's properties before Id, so a block is stored when it ends.
  while IFS= read -r line || [ -n "$line" ] || [ "${#block[@]}" -gt 0 ]; do
    if [ -n "$line" ]; then
      block+=("$line")
      continue
    fi
    id=
    for entry in "${block[@]}"; do
      [[ $entry != Id=* ]] || id=${entry#Id=}
    done
    if [ -n "$id" ]; then
      for entry in "${block[@]}"; do
        unit_prop[$id.${entry%%=*}]=${entry#*=}
      done
    fi
    block=()
  done <<<"$out"
}

# unit UNIT PROPERTY: the property, empty when unknown.
unit() {
  printf '%s' "${unit_prop[$1.$2]:-}"
}

declare -A mounted_fstypes
read_mounts() {
  local fstype target
  mounted_fstypes=()
  while read -r fstype target; do
    [ -n "$target" ] || continue
    # findmnt -r writes unsafe characters of a target (a space, a backslash) as \xNN.
    printf -v target '%b' "$target"
    mounted_fstypes[$target]="${mounted_fstypes[$target]:-}${mounted_fstypes[$target]:+,}$fstype"
  done < <(src_findmnt 2>/dev/null || true)
}

# ---------------------------------------------------------------- checks

# Each check records a level (ok, WARN, FAIL), what it concerns and a detail.
check_level=() check_what=() check_detail=()
record() {
  check_level+=("$1") check_what+=("$2") check_detail+=("$3")
}

# pings_answered ADDRESS: how many of PING_COUNT pings ADDRESS answered.
pings_answered() {
  local out received
  out=$(src_ping "$1") || true
  received=$(awk '/ packets transmitted, /{print $4}' <<<"$out")
  printf '%s' "${received:-0}"
}

# ping_all ADDRESS...: pings the addresses PING_PARALLEL at a time and prints one line
# "ADDRESS COUNT" per address (in the order they finish), COUNT being pings_answered's.
ping_all() {
  local address pids=()
  for address in "$@"; do
    # One short line per write: lines from parallel pings never interleave.
    { printf '%s %s\n' "$address" "$(pings_answered "$address")"; } &
    pids+=("$!")
    if [ "${#pids[@]}" -ge "$PING_PARALLEL" ]; then
      wait "${pids[@]}"
      pids=()
    fi
  done
  [ "${#pids[@]}" -eq 0 ] || wait "${pids[@]}"
}

# Per peer: ping replies at its mesh address and at its IPv6 one (on a dual-stack mesh), and
# the evaluated handshake.
declare -A peer_received peer_received6 peer_level peer_detail peer_age
# peer_done KEY NOW ADDRESS6: a fresh handshake, and every mesh address of the peer answered.
peer_done() {
  local key=$1 now=$2 address6=$3 latest=${wg_handshake[$1]:-}
  [ "$wg_up" = 1 ] && [ -n "$latest" ] && [ "$latest" -gt 0 ] &&
    [ $((now - latest)) -le "$MAX_HANDSHAKE_AGE" ] && [ "${peer_received[$key]:-0}" -gt 0 ] &&
    { [ -z "$address6" ] || [ "${peer_received6[$key]:-0}" -gt 0 ]; }
}

# check_peers WAIT: pings every peer (at each of its mesh addresses) and waits up to WAIT
# seconds until each has answered with a handshake younger than MAX_HANDSHAKE_AGE. A ping is
# what makes WireGuard handshake with an idle peer, so it comes before the handshake is read.
check_peers() {
  local wait=$1 start now i name key address address6 pending received received6 latest count
  local -a unanswered
  local -A got
  start=$(src_now)
  peer_received=() peer_received6=() peer_level=() peer_detail=() peer_age=()
  while :; do
    pending=0
    # Every address that has not answered yet is pinged again, all of them at once.
    unanswered=() got=()
    for i in "${!PEER_NAMES[@]}"; do
      key=${PEER_KEYS[$i]} address=${PEER_ADDRESSES[$i]} address6=${PEER_ADDRESSES6[$i]:-}
      [ "${peer_received[$key]:-0}" -gt 0 ] || unanswered+=("$address")
      if [ -n "$address6" ] && [ "${peer_received6[$key]:-0}" -eq 0 ]; then
        unanswered+=("$address6")
      fi
    done
    while read -r address count; do
      got[$address]=$count
    done < <(ping_all "${unanswered[@]}")
    for i in "${!PEER_NAMES[@]}"; do
      key=${PEER_KEYS[$i]} address=${PEER_ADDRESSES[$i]} address6=${PEER_ADDRESSES6[$i]:-}
      [ -z "${got[$address]:-}" ] || peer_received[$key]=${got[$address]}
      [ -z "$address6" ] || [ -z "${got[$address6]:-}" ] || peer_received6[$key]=${got[$address6]}
    done
    read_wireguard
    now=$(src_now)
    for i in "${!PEER_NAMES[@]}"; do
      peer_done "${PEER_KEYS[$i]}" "$now" "${PEER_ADDRESSES6[$i]:-}" || pending=$((pending + 1))
    done
    if [ "$pending" -eq 0 ] || [ $((now - start)) -ge "$wait" ]; then
      break
    fi
    swarm_sleep 2
  done
  local within="" fresh answered silent
  [ "$wait" -eq 0 ] || within=" within ${wait}s"
  for i in "${!PEER_NAMES[@]}"; do
    name=${PEER_NAMES[$i]} key=${PEER_KEYS[$i]} address=${PEER_ADDRESSES[$i]} address6=${PEER_ADDRESSES6[$i]:-}
    received=${peer_received[$key]:-0} received6=${peer_received6[$key]:-0}
    latest=${wg_handshake[$key]:-}
    fresh=0
    if [ -n "$latest" ] && [ "$latest" -gt 0 ]; then
      peer_age[$key]=$((now - latest))
      [ "${peer_age[$key]}" -gt "$MAX_HANDSHAKE_AGE" ] || fresh=1
    fi
    # The mesh addresses that answered ping and those that did not ("a", or "a and b").
    answered=() silent=()
    if [ "$received" -gt 0 ]; then answered+=("$address"); else silent+=("$address"); fi
    if [ -n "$address6" ] && [ "$received6" -gt 0 ]; then answered+=("$address6"); fi
    if [ -n "$address6" ] && [ "$received6" -eq 0 ]; then silent+=("$address6"); fi
    local what="peer $name ($address${address6:+, $address6})" level=FAIL detail
    if [ "$wg_up" = 0 ]; then
      detail="$WG_INTERFACE is not up (wg show $WG_INTERFACE failed): see systemctl status ${WG_UNIT:-wg-quick@$WG_INTERFACE.service}"
    elif [ -z "$latest" ]; then
      detail="not a peer of $WG_INTERFACE (no public key $key): converge this host again"
    elif [ "$fresh" = 1 ] && [ "${#silent[@]}" -eq 0 ] && [ -z "$address6" ]; then
      level=ok detail="handshake ${peer_age[$key]}s ago, $received/$PING_COUNT pings answered"
    elif [ "$fresh" = 1 ] && [ "${#silent[@]}" -eq 0 ]; then
      level=ok detail="handshake ${peer_age[$key]}s ago, $received/$PING_COUNT pings answered over IPv4, $received6/$PING_COUNT over IPv6"
    elif [ "$fresh" = 1 ] && [ "${#answered[@]}" -eq 0 ]; then
      detail="handshake ${peer_age[$key]}s ago, but ${silent[0]}${silent[1]:+ and ${silent[1]}} did not answer ping$within: is WireGuard still up on $name?"
    elif [ "$fresh" = 1 ]; then
      # The tunnel carries one family: the other's address is missing on one end or in AllowedIPs.
      detail="handshake ${peer_age[$key]}s ago, but ${silent[0]} did not answer ping$within while ${answered[0]} did: is ${silent[0]} on $name's $WG_INTERFACE (ip address show dev $WG_INTERFACE there), and among $name's AllowedIPs here (wg show $WG_INTERFACE allowed-ips)?"
    elif [ "${#answered[@]}" -gt 0 ]; then
      detail="answers ping, but no handshake younger than ${MAX_HANDSHAKE_AGE}s$within: traffic to ${answered[0]}${answered[1]:+ and ${answered[1]}} does not go through $WG_INTERFACE"
    elif [ "$latest" -eq 0 ]; then
      detail="no handshake$within and no reply to ping: is WireGuard up on $name, and its UDP port reachable from here?"
    else
      detail="latest handshake ${peer_age[$key]}s ago (older than ${MAX_HANDSHAKE_AGE}s), no reply to ping$within"
    fi
    peer_level[$key]=$level peer_detail[$key]=$detail
    record "$level" "$what" "$detail"
  done
}

# Per host reached through the hub (hub routing): ping replies, by mesh address (either family).
declare -A routed_received
# check_routed WAIT: pings every host this one reaches through the hub, at each of its mesh
# addresses, until each has answered or WAIT seconds have passed. The hub's own peer check says
# whether the tunnel to the hub is up; this one says whether the hub forwards each family.
check_routed() {
  local wait=$1 start now i name address via pending received forwarding count
  local -a unanswered
  start=$(src_now)
  routed_received=()
  while :; do
    pending=0
    unanswered=()
    for i in "${!ROUTED_NAMES[@]}"; do
      for address in "${ROUTED_ADDRESSES[$i]}" ${ROUTED_ADDRESSES6[$i]:+"${ROUTED_ADDRESSES6[$i]}"}; do
        [ "${routed_received[$address]:-0}" -gt 0 ] || unanswered+=("$address")
      done
    done
    while read -r address count; do
      routed_received[$address]=$count
      [ "$count" -gt 0 ] || pending=$((pending + 1))
    done < <(ping_all "${unanswered[@]}")
    now=$(src_now)
    if [ "$pending" -eq 0 ] || [ $((now - start)) -ge "$wait" ]; then
      break
    fi
    swarm_sleep 2
  done
  local within=""
  [ "$wait" -eq 0 ] || within=" within ${wait}s"
  for i in "${!ROUTED_NAMES[@]}"; do
    name=${ROUTED_NAMES[$i]} via=${ROUTED_VIA[$i]}
    for address in "${ROUTED_ADDRESSES[$i]}" ${ROUTED_ADDRESSES6[$i]:+"${ROUTED_ADDRESSES6[$i]}"}; do
      received=${routed_received[$address]:-0}
      if [ "$received" -gt 0 ]; then
        record ok "host $name ($address) through $via" "$received/$PING_COUNT pings answered"
        continue
      fi
      # IPv4 forwards what arrives on an interface whose forwarding is on; IPv6 has one switch for all.
      if [[ $address == *:* ]]; then
        forwarding="IPv6 between its WireGuard peers (nft list table inet swarm_hub, sysctl net.ipv6.conf.all.forwarding)"
      else
        forwarding="between its WireGuard peers (nft list table inet swarm_hub, sysctl net.ipv4.conf.$WG_INTERFACE.forwarding)"
      fi
      record FAIL "host $name ($address) through $via" "no reply to ping$within: is $via forwarding $forwarding, and is WireGuard up on $name?"
    done
  done
}

# Per mount path: whether sshfs is mounted there, the level and detail.
declare -A mount_up mount_level mount_detail
# check_mounts TRIGGER: with TRIGGER=1 each mount is first accessed, which makes
# systemd mount it; without, an idle automount is left alone (and reads not mounted).
check_mounts() {
  local trigger=$1 i path unit state load level detail fstypes
  local -A access=()
  mount_up=() mount_level=() mount_detail=()
  if [ "$trigger" = 1 ]; then
    for i in "${!MOUNT_PATHS[@]}"; do
      path=${MOUNT_PATHS[$i]} unit=${MOUNT_UNITS[$i]}
      access[$path]=0
      src_access "$path" || access[$path]=$?
    done
  fi
  read_mounts
  for i in "${!MOUNT_PATHS[@]}"; do
    path=${MOUNT_PATHS[$i]} unit=${MOUNT_UNITS[$i]}
    fstypes=${mounted_fstypes[$path]:-}
    mount_up[$path]=0
    [[ ,$fstypes, != *,fuse.sshfs,* ]] || mount_up[$path]=1
    load=$(unit "$unit" LoadState) state=$(unit "$unit" ActiveState)
    level=FAIL
    if [ "$load" != loaded ]; then
      detail="automount unit $unit is not installed (LoadState=${load:-unknown}): converge this host again"
    elif [ "$state" != active ]; then
      detail="automount unit $unit is $state: systemctl start $unit, and see journalctl -u $unit"
    elif [ "$trigger" = 0 ]; then
      level=ok detail=$([ "${mount_up[$path]}" = 1 ] && echo "mounted" || echo "automount armed, not mounted now")
    elif [ "${access[$path]}" = 124 ]; then
      detail="did not mount within ${MOUNT_TIMEOUT}s of access: see journalctl -u ${unit%.automount}.mount"
    elif [ "${mount_up[$path]}" = 0 ]; then
      detail="not mounted after access (findmnt: ${fstypes:-nothing} at $path): see journalctl -u ${unit%.automount}.mount"
    elif [ "${access[$path]}" != 0 ]; then
      detail="mounted, but $path/$SENTINEL is missing: the export's dataset is not mounted on its server"
    else
      level=ok detail="fuse.sshfs mounted, $SENTINEL present"
    fi
    mount_level[$path]=$level mount_detail[$path]=$detail
    record "$level" "mount $path" "$detail"
  done
}

# last_metric NAME LABEL VALUE: the value of a sample in the previous metrics file, which is
# how the time of the last successful sync outlives a failed run.
last_metric() {
  awk -v sample="$1{$2=\"$(prom_label "$3")\"}" '$1 == sample {print $2}' \
    "$TEXTFILE_DIR/swarm.prom" 2>/dev/null || true
}

# skipped_in_last_run: the "N skipped" of the last run in a unison log on stdin. Each run
# opens with "log started"; a run with nothing to do logs nothing after it, and skipped nothing.
skipped_in_last_run() {
  awk '/ log started at /{n = 0}
    /^Synchronization (complete|incomplete) at / && match($0, /[0-9]+ skipped/) {n = substr($0, RSTART, RLENGTH) + 0}
    END {print n + 0}'
}

# read_sync I: how the last run of sync I ended, into result, code, ended and summary.
read_sync() {
  local key value finished="" status_file=${SYNC_STATUS_FILES[$1]} service=${SYNC_SERVICES[$1]}
  result="" code="" ended="" summary=""
  # The status file, written after every run (ExecStopPost), says how the last run ended.
  while IFS='=' read -r key value; do
    case $key in
      result) result=$value ;;
      exit) code=$value ;;
      finished) finished=$value ;;
      summary) summary=$value ;;
    esac
  done < <(src_file "$status_file" 2>/dev/null || true)
  if [ -n "$finished" ]; then
    ended=$(date -u -d "$finished" +%s 2>/dev/null || true)
  else
    # No status file: systemd's record of the last run says less, but enough.
    result=$(unit "$service" Result) code=$(unit "$service" ExecMainStatus)
    ended=$(unit "$service" ExecMainExitTimestamp)
    ended=${ended#@}
    [ -n "$ended" ] || result="" code=""
  fi
  [ "$code" != none ] || code=""
}

# Exit 1 merged everything but the conflicts: a success, as the unit's SuccessExitStatus=1 says.
run_succeeded() {
  [ "$result" = success ] && { [ "$code" = 0 ] || [ "$code" = 1 ]; }
}

# Per sync name: timer state, last run, level and detail.
declare -A sync_timer sync_exit sync_last_run sync_last_success sync_conflicts sync_level sync_detail
# check_syncs RERUN: with RERUN=1 a sync whose last run failed is run once more and judged by
# that run, so a failure from before this converge (which may have fixed it) does not count.
check_syncs() {
  local rerun=$1 now i name timer service log level detail state result code ended summary ago again
  sync_timer=() sync_exit=() sync_last_run=() sync_last_success=() sync_conflicts=() sync_level=() sync_detail=()
  for i in "${!SYNC_NAMES[@]}"; do
    name=${SYNC_NAMES[$i]} timer=${SYNC_TIMERS[$i]} service=${SYNC_SERVICES[$i]} log=${SYNC_LOGS[$i]}
    state=$(unit "$timer" ActiveState)
    read_sync "$i"
    again=""
    if [ "$rerun" = 1 ] && [ "$state" = active ] && [ -n "$ended" ] && ! run_succeeded; then
      src_run_unit "$service" >/dev/null 2>&1 || true
      read_all_units
      state=$(unit "$timer" ActiveState)
      read_sync "$i"
      again="; it was re-run by the gate after a failed run"
    fi
    now=$(src_now)
    sync_exit[$name]=$code sync_last_run[$name]=$ended
    sync_last_success[$name]=$(last_metric swarm_sync_last_success_timestamp_seconds sync "$name")
    if [ -n "$ended" ] && run_succeeded; then
      sync_last_success[$name]=$ended
    fi
    case $code in
      0) sync_conflicts[$name]=0 ;;
      1) sync_conflicts[$name]=$(src_file "$log" 2>/dev/null | skipped_in_last_run || true) ;;
    esac
    sync_timer[$name]=0
    [ "$state" != active ] || sync_timer[$name]=1
    ago=""
    [ -z "$ended" ] || ago=" $((now - ended))s ago"
    level=FAIL
    if [ "$(unit "$timer" LoadState)" != loaded ]; then
      detail="timer $timer is not installed (LoadState=$(unit "$timer" LoadState)): converge this host again"
    elif [ "$state" != active ]; then
      detail="timer $timer is ${state:-unknown}: systemctl enable --now $timer"
    elif [ -z "$result" ] && [ -z "$ended" ]; then
      level=WARN detail="has not run yet (timer $timer is active)"
    elif run_succeeded && [ "$code" = 0 ]; then
      level=ok detail="last run$ago succeeded$again"
    elif run_succeeded; then
      level=WARN
      detail="last run$ago skipped ${sync_conflicts[$name]:-some} conflicting change(s) (unison exit 1): both sides kept their version$again; resolve them, see journalctl -u $service"
    else
      detail="last run$ago ${summary:-failed (${result:-unknown}${code:+, unison exit $code})}$again; see journalctl -u $service"
    fi
    sync_level[$name]=$level sync_detail[$name]=$detail
    record "$level" "sync $name" "$detail"
  done
}

# human_bytes N: N bytes as KiB, MiB, GiB or TiB with one decimal.
human_bytes() {
  awk -v n="$1" 'BEGIN { split("B KiB MiB GiB TiB PiB", u, " "); i = 1
    while (n >= 1024 && i < 6) { n /= 1024; i++ }
    printf (i == 1 ? "%d %s" : "%.1f %s"), n, u[i] }'
}

# Per dataset: used and available bytes, snapshots taken by swarm, and its snapshot timer.
declare -A ds_used ds_available ds_snapshots ds_level
check_datasets() {
  local i ds timer name property value snap level detail state
  ds_used=() ds_available=() ds_snapshots=() ds_level=()
  [ "${#DATASETS[@]}" -gt 0 ] || return 0
  while IFS=$'\t' read -r name property value; do
    case $property in
      used) ds_used[$name]=$value ;;
      available) ds_available[$name]=$value ;;
    esac
  done < <(src_zfs_get "${DATASETS[@]}" || true)
  for ds in "${DATASETS[@]}"; do
    ds_snapshots[$ds]=0
  done
  while IFS= read -r snap; do
    ds=${snap%%@*}
    if [ -n "${ds_snapshots[$ds]:-}" ] && [[ ${snap#*@} == "$SNAPSHOT_PREFIX"* ]]; then
      ds_snapshots[$ds]=$((ds_snapshots[$ds] + 1))
    fi
  done < <(src_zfs_snapshots 2>/dev/null || true)
  for i in "${!DATASETS[@]}"; do
    ds=${DATASETS[$i]} timer=${SNAPSHOT_TIMERS[$i]:-}
    state=$(unit "$timer" ActiveState)
    level=FAIL
    if [ -z "${ds_used[$ds]:-}" ]; then
      detail="does not exist, or zfs cannot read it: see zpool status and zfs list"
    elif [ -n "$timer" ] && [ "$state" != active ]; then
      detail="snapshot timer $timer is ${state:-unknown}: systemctl enable --now $timer"
    else
      level=ok
      detail="$(human_bytes "${ds_used[$ds]}") used, $(human_bytes "${ds_available[$ds]:-0}") available, ${ds_snapshots[$ds]} snapshots by swarm"
    fi
    ds_level[$ds]=$level
    record "$level" "dataset $ds" "$detail"
  done
}

# human_age SECONDS: 42s, 12min, 5h or 3d, as the status table writes ages.
human_age() {
  local s=$1
  if [ "$s" -lt 120 ]; then
    printf '%ss' "$((s < 0 ? 0 : s))"
  elif [ "$s" -lt 7200 ]; then
    printf '%smin' "$((s / 60))"
  elif [ "$s" -lt 172800 ]; then
    printf '%sh' "$((s / 3600))"
  else
    printf '%sd' "$((s / 86400))"
  fi
}

# Per pool: the last finished scrub (when it ended, errors, bytes repaired), level and detail.
declare -A scrub_ended scrub_errors scrub_repaired scrub_level scrub_detail
# check_scrubs: a scrub that found errors it could not repair, one that started and did not finish,
# and one overdue (none finished in twice the schedule's period) are warnings, never failures: a
# scrub protects nothing that a deploy changes, and a failed gate would hold back the deploy that
# repairs the damage (a restore, a failover). The errors stay reported until a scrub finds none.
check_scrubs() {
  local i pool schedule period timer service key value started ended errors repaired now level detail last state
  scrub_ended=() scrub_errors=() scrub_repaired=() scrub_level=() scrub_detail=()
  now=$(src_now)
  for i in "${!POOLS[@]}"; do
    pool=${POOLS[$i]} schedule=${SCRUB_SCHEDULES[$i]} period=${SCRUB_PERIODS[$i]}
    timer=${SCRUB_TIMERS[$i]} service=${SCRUB_SERVICES[$i]}
    started="" ended="" errors="" repaired=""
    while IFS='=' read -r key value; do
      case $key in
        started) started=$value ;;
        ended) ended=$value ;;
        errors) errors=$value ;;
        repaired_bytes) repaired=$value ;;
      esac
    done < <(src_scrub "$pool" "${SCRUB_STATUS_FILES[$i]}" 2>/dev/null || true)
    # A status file that does not read as numbers counts as none.
    if ! [[ $ended =~ ^[0-9]+$ && $errors =~ ^[0-9]+$ && $repaired =~ ^[0-9]+$ ]]; then
      ended="" errors="" repaired=""
    fi
    # When zfs-scrub last started (kept across reboots, unlike the service's result; a timer's
    # LastTriggerUSec is no help: systemd stamps a persistent timer when it is first started).
    [[ $started =~ ^[0-9]+$ ]] || started=""
    scrub_ended[$pool]=$ended scrub_errors[$pool]=$errors scrub_repaired[$pool]=$repaired
    last=""
    [ -z "$ended" ] || last="the last scrub finished $(human_age $((now - ended))) ago"
    level=WARN
    if [ "$(unit "$timer" LoadState)" != loaded ]; then
      detail="scrub timer $timer is not installed (LoadState=$(unit "$timer" LoadState)): converge this host again"
    elif [ "$(unit "$timer" ActiveState)" != active ]; then
      state=$(unit "$timer" ActiveState)
      detail="scrub timer $timer is ${state:-unknown}: systemctl enable --now $timer"
    elif [ "${errors:-0}" -gt 0 ]; then
      detail="$last and found $errors error(s) it could not repair: zpool status -v $pool names the damaged files; restore them from a snapshot or a replica, then zpool clear $pool and scrub again (systemctl start $service)"
    elif [ "$(unit "$service" ActiveState)" = activating ]; then
      level=ok detail="scrubbing now${last:+; $last}"
    elif [ -n "$started" ] && { [ -z "$ended" ] || [ "$started" -gt "$ended" ]; }; then
      detail="the scrub started $(human_age $((now - started))) ago did not finish (canceled, failed, or cut off by a reboot): see journalctl -u $service; systemctl start $service waits for a scrub still running and records it${last:+; $last}"
    elif [ -z "$ended" ]; then
      level=ok detail="no scrub has finished yet: $timer starts the first ($schedule)"
    elif [ $((now - ended)) -gt $((2 * period)) ]; then
      detail="$last, more than twice the $schedule period: see systemctl list-timers $timer and journalctl -u $service"
    else
      level=ok detail="$last, repaired $(human_bytes "$repaired"), 0 errors"
    fi
    scrub_level[$pool]=$level scrub_detail[$pool]=$detail
    record "$level" "scrub $pool" "$detail"
  done
}

# Per replica (EXPORT.to-HOST): lag in seconds, last run's result and bytes, when it finished, level, detail.
declare -A replica_lag replica_result replica_bytes replica_finished replica_level replica_detail
# check_replicas: the gate fails when the newest snapshot on the replica is older than its maxLag (or,
# before any snapshot arrived, when the first attempt is): the replica no longer protects what it
# should. A failed run within the bound is a warning, as is a timer that is not running.
check_replicas() {
  local i id exported host timer max key value result message finished first bytes replicated at now level detail age
  replica_lag=() replica_result=() replica_bytes=() replica_finished=() replica_level=() replica_detail=()
  now=$(src_now)
  for i in "${!REPLICA_EXPORTS[@]}"; do
    exported=${REPLICA_EXPORTS[$i]} host=${REPLICA_HOSTS[$i]} timer=${REPLICA_TIMERS[$i]} max=${REPLICA_MAX_LAGS[$i]}
    id="$exported.to-$host"
    result="" message="" finished="" first="" bytes="" replicated="" at=""
    while IFS='=' read -r key value; do
      case $key in
        result) result=$value ;;
        message) message=$value ;;
        finished) finished=$value ;;
        first_attempt) first=$value ;;
        bytes) bytes=$value ;;
        replicated) replicated=$value ;;
        replicated_at) at=$value ;;
      esac
    done < <(src_replica "$exported" "$host" "${REPLICA_STATUS_FILES[$i]}" 2>/dev/null || true)
    [[ $finished =~ ^[0-9]+$ ]] || finished=""
    [[ $first =~ ^[0-9]+$ ]] || first=""
    [[ $bytes =~ ^[0-9]+$ ]] || bytes=""
    [[ $at =~ ^[0-9]+$ ]] || at=""
    age=""
    if [ -n "$at" ]; then
      age=$((now - at))
    elif [ -n "$first" ]; then
      age=$((now - first))
    fi
    replica_lag[$id]=$age replica_result[$id]=$result replica_bytes[$id]=$bytes replica_finished[$id]=$finished
    level=ok
    if [ -z "$result" ]; then
      detail="no run has finished yet: $timer starts the first"
      if [ "$(unit "$timer" LoadState)" != loaded ]; then
        level=WARN detail="replication timer $timer is not installed: converge this host again"
      fi
    elif [ -n "$age" ] && [ "$age" -gt "$max" ]; then
      level=FAIL
      if [ -n "$at" ]; then
        detail="the replica on $host is $(human_age "$age") behind (newest there: $replicated), more than maxLag $(human_age "$max")"
      else
        detail="no snapshot has reached $host in $(human_age "$age") of trying, more than maxLag $(human_age "$max")"
      fi
      detail+="; last run: $result${message:+: $message}; see journalctl -u ${timer%.timer}.service"
    elif [ "$result" != ok ]; then
      level=WARN detail="the last run $result${message:+: $message}${at:+; the replica is $(human_age "$age") behind}"
    elif [ "$(unit "$timer" ActiveState)" != active ]; then
      level=WARN detail="replication timer $timer is $(unit "$timer" ActiveState): systemctl enable --now $timer; the replica is $(human_age "$age") behind"
    else
      detail="$host has $replicated, $(human_age "$age") behind; the last run sent $(human_bytes "${bytes:-0}")"
    fi
    replica_level[$id]=$level replica_detail[$id]=$detail
    record "$level" "replica $exported on $host" "$detail"
  done
}

# What differs from what swarm installed, one entry per drifted item; drift_known=0 when
# swarm-drift could not say.
drift_known=0 drift_steps=() drift_kinds=() drift_items=() drift_details=()
DRIFT_KINDS=(file unit peer zfs user)
# check_drift [gate]
check_drift() {
  local out rc=0 step kind item detail
  drift_known=0 drift_steps=() drift_kinds=() drift_items=() drift_details=()
  out=$(src_drift "$@") || rc=$?
  if [ "$rc" = 127 ]; then
    record WARN drift "$drift_program is not installed: converge this host again (pulumi up)"
    return 0
  elif [ "$rc" != 0 ]; then
    record WARN drift "cannot compare this host with what swarm installed: $drift_program exited $rc; run it to see why"
    return 0
  fi
  drift_known=1
  while IFS=$'\t' read -r step kind item detail; do
    [[ " ${DRIFT_KINDS[*]} " == *" $kind "* ]] || continue
    drift_steps+=("$step") drift_kinds+=("$kind") drift_items+=("$item") drift_details+=("$detail")
    record WARN "drift $step $kind $item" \
      "$detail; to restore what swarm installed: npm run repair -- <stack>, then pulumi up"
  done <<<"$out"
}

# drift_count KIND: how many drifted items are of KIND.
drift_count() {
  local n=0 kind
  for kind in ${drift_kinds[@]+"${drift_kinds[@]}"}; do
    [ "$kind" != "$1" ] || n=$((n + 1))
  done
  printf '%s' "$n"
}

# read_all_units: one systemctl call for every unit the checks look at.
read_all_units() {
  read_units "${MOUNT_UNITS[@]}" "${SYNC_TIMERS[@]}" "${SYNC_SERVICES[@]}" "${SNAPSHOT_TIMERS[@]}" \
    "${SCRUB_TIMERS[@]}" "${SCRUB_SERVICES[@]}" "${REPLICA_TIMERS[@]}"
}

# ---------------------------------------------------------------- modes

mode_gate() {
  read_all_units
  check_peers "$HANDSHAKE_WAIT"
  check_routed "$HANDSHAKE_WAIT"
  check_mounts 1
  check_syncs 1
  check_datasets
  check_scrubs
  check_replicas
  check_drift gate
  local i failed=()
  for i in "${!check_level[@]}"; do
    printf '%s %s %s: %s\n' "${check_level[$i]}" "$HOST" "${check_what[$i]}" "${check_detail[$i]}"
    [ "${check_level[$i]}" != FAIL ] || failed+=("$i")
  done
  if [ "${#failed[@]}" -gt 0 ]; then
    {
      echo "swarm-health: $HOST is unhealthy, ${#failed[@]} check(s) failed:"
      for i in "${failed[@]}"; do
        printf 'FAIL %s %s: %s\n' "$HOST" "${check_what[$i]}" "${check_detail[$i]}"
      done
    } >&2
    return 1
  fi
  local warnings=0
  for i in "${!check_level[@]}"; do
    [ "${check_level[$i]}" != WARN ] || warnings=$((warnings + 1))
  done
  echo "swarm-health: $HOST is healthy (${#check_level[@]} checks, $warnings warning(s))"
}

# JSON string, with every character JSON requires escaped.
json_string() {
  local s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      '"') out+='\"' ;;
      \\) out+="\\\\" ;;
      $'\n') out+='\n' ;;
      $'\t') out+='\t' ;;
      $'\r') out+='\r' ;;
      [[:cntrl:]]) out+=$(printf '\\u%04x' "'$c") ;;
      *) out+=$c ;;
    esac
  done
  printf '"%s"' "$out"
}

# A JSON string, or null when empty.
json_string_or_null() {
  if [ -n "$1" ]; then json_string "$1"; else printf 'null'; fi
}

# A number, or null when empty.
json_number() {
  if [[ ${1:-} =~ ^-?[0-9]+$ ]]; then printf '%s' "$1"; else printf 'null'; fi
}

mode_json() {
  local now i name key address address6 path unit timer service status_file ds sep pool plan destroy dsep action why rc
  read_all_units
  check_peers 0
  check_mounts 1
  check_syncs 0
  check_datasets
  check_scrubs
  check_replicas
  check_drift
  now=$(src_now)
  printf '{"host":%s,"time":%s,"maxHandshakeAge":%s,"pingCount":%s,"peers":[' \
    "$(json_string "$HOST")" "$now" "$MAX_HANDSHAKE_AGE" "$PING_COUNT"
  sep=""
  for i in "${!PEER_NAMES[@]}"; do
    name=${PEER_NAMES[$i]} key=${PEER_KEYS[$i]} address=${PEER_ADDRESSES[$i]} address6=${PEER_ADDRESSES6[$i]:-}
    printf '%s{"name":%s,"address":%s,"address6":%s,"handshakeAge":%s,"pingsAnswered":%s,"pingsAnswered6":%s,"rxBytes":%s,"txBytes":%s,"level":%s,"detail":%s}' \
      "$sep" "$(json_string "$name")" "$(json_string "$address")" "$(json_string_or_null "$address6")" \
      "$(json_number "${peer_age[$key]:-}")" "$(json_number "${peer_received[$key]:-0}")" \
      "$(json_number "${address6:+${peer_received6[$key]:-0}}")" "$(json_number "${wg_rx[$key]:-}")" \
      "$(json_number "${wg_tx[$key]:-}")" "$(json_string "${peer_level[$key]}")" \
      "$(json_string "${peer_detail[$key]}")"
    sep=,
  done
  printf '],"mounts":['
  sep=""
  for i in "${!MOUNT_PATHS[@]}"; do
    path=${MOUNT_PATHS[$i]} unit=${MOUNT_UNITS[$i]}
    printf '%s{"path":%s,"mounted":%s,"level":%s,"detail":%s}' "$sep" "$(json_string "$path")" \
      "$([ "${mount_up[$path]}" = 1 ] && echo true || echo false)" \
      "$(json_string "${mount_level[$path]}")" "$(json_string "${mount_detail[$path]}")"
    sep=,
  done
  printf '],"syncs":['
  sep=""
  for i in "${!SYNC_NAMES[@]}"; do
    name=${SYNC_NAMES[$i]} timer=${SYNC_TIMERS[$i]} service=${SYNC_SERVICES[$i]} status_file=${SYNC_STATUS_FILES[$i]}
    printf '%s{"name":%s,"timerActive":%s,"lastExitCode":%s,"lastRun":%s,"lastSuccess":%s,"conflicts":%s,"level":%s,"detail":%s}' \
      "$sep" "$(json_string "$name")" "$([ "${sync_timer[$name]}" = 1 ] && echo true || echo false)" \
      "$(json_number "${sync_exit[$name]:-}")" "$(json_number "${sync_last_run[$name]:-}")" \
      "$(json_number "${sync_last_success[$name]:-}")" "$(json_number "${sync_conflicts[$name]:-}")" \
      "$(json_string "${sync_level[$name]}")" "$(json_string "${sync_detail[$name]}")"
    sep=,
  done
  printf '],"datasets":['
  sep=""
  for ds in "${DATASETS[@]}"; do
    printf '%s{"name":%s,"usedBytes":%s,"availableBytes":%s,"snapshots":%s,"level":%s}' "$sep" \
      "$(json_string "$ds")" "$(json_number "${ds_used[$ds]:-}")" "$(json_number "${ds_available[$ds]:-}")" \
      "$(json_number "${ds_snapshots[$ds]}")" "$(json_string "${ds_level[$ds]}")"
    sep=,
  done
  printf '],"pools":['
  sep=""
  for pool in "${POOLS[@]}"; do
    printf '%s{"name":%s,"lastScrub":%s,"scrubErrors":%s,"scrubRepairedBytes":%s,"level":%s,"detail":%s}' \
      "$sep" "$(json_string "$pool")" "$(json_number "${scrub_ended[$pool]}")" \
      "$(json_number "${scrub_errors[$pool]}")" "$(json_number "${scrub_repaired[$pool]}")" \
      "$(json_string "${scrub_level[$pool]}")" "$(json_string "${scrub_detail[$pool]}")"
    sep=,
  done
  printf '],"prunes":['
  sep=""
  for i in "${!PRUNE_DATASETS[@]}"; do
    ds=${PRUNE_DATASETS[$i]}
    destroy="" dsep="" rc=0
    plan=$(src_prune "$ds" "${PRUNE_ARGS[$i]}" 2>&1) || rc=$?
    if [ "$rc" != 0 ]; then
      printf '%s{"dataset":%s,"destroy":null,"error":%s}' "$sep" "$(json_string "$ds")" \
        "$(json_string "zfs-snapshot --dry-run exited $rc: $(tail -n 1 <<<"$plan")")"
    else
      while IFS=$'\t' read -r action name why; do
        [ "$action" = destroy ] || continue
        destroy+="$dsep{\"snapshot\":$(json_string "$name"),\"why\":$(json_string "$why")}"
        dsep=,
      done <<<"$plan"
      printf '%s{"dataset":%s,"destroy":[%s]}' "$sep" "$(json_string "$ds")" "$destroy"
    fi
    sep=,
  done
  printf '],"replicas":['
  sep=""
  for i in "${!REPLICA_EXPORTS[@]}"; do
    key="${REPLICA_EXPORTS[$i]}.to-${REPLICA_HOSTS[$i]}"
    printf '%s{"export":%s,"host":%s,"lagSeconds":%s,"maxLagSeconds":%s,"result":%s,"bytes":%s,"finished":%s,"level":%s,"detail":%s}' \
      "$sep" "$(json_string "${REPLICA_EXPORTS[$i]}")" "$(json_string "${REPLICA_HOSTS[$i]}")" \
      "$(json_number "${replica_lag[$key]}")" "$(json_number "${REPLICA_MAX_LAGS[$i]}")" \
      "$(json_string "${replica_result[$key]}")" "$(json_number "${replica_bytes[$key]}")" \
      "$(json_number "${replica_finished[$key]}")" "$(json_string "${replica_level[$key]}")" \
      "$(json_string "${replica_detail[$key]}")"
    sep=,
  done
  printf ']'
  # No drift list when swarm-drift could not say: absent reads as unknown, [] as none.
  if [ "$drift_known" = 1 ]; then
    printf ',"drift":['
    sep=""
    for i in "${!drift_steps[@]}"; do
      printf '%s{"step":%s,"kind":%s,"item":%s,"detail":%s}' "$sep" "$(json_string "${drift_steps[$i]}")" \
        "$(json_string "${drift_kinds[$i]}")" "$(json_string "${drift_items[$i]}")" \
        "$(json_string "${drift_details[$i]}")"
      sep=,
    done
    printf ']'
  fi
  printf ',"checks":['
  sep=""
  for i in "${!check_level[@]}"; do
    printf '%s{"level":%s,"what":%s,"detail":%s}' "$sep" "$(json_string "${check_level[$i]}")" \
      "$(json_string "${check_what[$i]}")" "$(json_string "${check_detail[$i]}")"
    sep=,
  done
  printf ']}\n'
}

# Prometheus text format: a label value with \, " and newline escaped.
prom_label() {
  local v=${1//\\/\\\\}
  v=${v//\"/\\\"}
  printf '%s' "${v//$'\n'/\\n}"
}

declare -A metric_help metric_type
metric_samples=()
# metric NAME TYPE HELP: declares a family.
metric() {
  metric_type[$1]=$2 metric_help[$1]=$3
}
# sample NAME LABEL VALUE-OF-LABEL [LABEL VALUE-OF-LABEL]... VALUE
sample() {
  local name=$1 labels="" sep=""
  shift
  while [ "$#" -gt 1 ]; do
    labels+="$sep$1=\"$(prom_label "$2")\""
    sep=,
    shift 2
  done
  metric_samples+=("$name{$labels} $1")
}

mode_metrics() {
  local i name key address address6 path unit timer service status_file ds latest family tmp kind pool
  read_all_units
  check_peers 0
  check_mounts 0
  check_syncs 0
  check_datasets
  check_scrubs
  check_replicas
  check_drift
  metric swarm_wireguard_handshake_age_seconds gauge \
    "Seconds since the latest WireGuard handshake with the peer (+Inf: none, or the interface is down)."
  metric swarm_wireguard_peer_up gauge \
    "1 when the peer answered ping over the mesh and its handshake is younger than the configured maximum."
  metric swarm_wireguard_pings_answered gauge \
    "Pings the peer answered at its mesh address of the family, of health.pingCount sent (dual-stack meshes only; peer_up needs both)."
  metric swarm_wireguard_rx_bytes counter "Bytes received from the peer since the interface came up."
  metric swarm_wireguard_tx_bytes counter "Bytes sent to the peer since the interface came up."
  metric swarm_mount_up gauge "1 when the sshfs mount is mounted now (an idle automount reads 0)."
  metric swarm_automount_up gauge "1 when the automount unit of the mount path is active."
  metric swarm_sync_timer_active gauge "1 when the sync's timer is active."
  metric swarm_sync_last_success_timestamp_seconds gauge \
    "When the last run that merged every change ended (exit 0 or 1); 0 before the first."
  metric swarm_sync_last_exit_code gauge "Exit code of the last unison run: 1 means conflicts were skipped."
  metric swarm_sync_conflicts_pending gauge "Conflicts the last unison run skipped; both versions are kept."
  metric swarm_zfs_snapshots gauge "Snapshots of the dataset taken by swarm."
  metric swarm_zfs_used_bytes gauge "Bytes used by the dataset and its descendants."
  metric swarm_zfs_available_bytes gauge "Bytes still available to the dataset."
  metric swarm_zfs_scrub_last_timestamp_seconds gauge \
    "When the pool's last finished scrub ended (as its scrub timer recorded it); 0 before the first."
  metric swarm_zfs_scrub_errors gauge \
    "Errors the pool's last finished scrub could not repair; zpool status -v names the damaged files."
  metric swarm_zfs_scrub_repaired_bytes gauge \
    "Bytes the pool's last finished scrub repaired, as exact as zpool prints them (three digits)."
  metric swarm_replica_lag_seconds gauge \
    "Seconds since the newest snapshot on the replica was taken (before the first: since the first attempt)."
  metric swarm_replica_max_lag_seconds gauge "The replica's maxLag: the health gate fails above it."
  metric swarm_replica_last_run_success gauge "1 when the last replication run left the replica current."
  metric swarm_replica_last_run_timestamp_seconds gauge "When the last replication run finished."
  metric swarm_replica_last_run_bytes gauge "Bytes the last replication run sent (zfs send stream)."
  metric swarm_drift_items gauge \
    "Items (file, unit, peer, zfs property) that differ from what swarm installed; npm run repair restores them."
  for i in "${!PEER_NAMES[@]}"; do
    name=${PEER_NAMES[$i]} key=${PEER_KEYS[$i]} address=${PEER_ADDRESSES[$i]} address6=${PEER_ADDRESSES6[$i]:-}
    latest=${peer_age[$key]:-+Inf}
    [ "$wg_up" = 1 ] || latest=+Inf
    sample swarm_wireguard_handshake_age_seconds peer "$name" "$latest"
    sample swarm_wireguard_peer_up peer "$name" "$([ "${peer_level[$key]}" = ok ] && echo 1 || echo 0)"
    # An IPv4-only mesh keeps the series it always had: peer_up says whether ping was answered.
    if [ -n "$address6" ]; then
      sample swarm_wireguard_pings_answered peer "$name" family IPv4 "${peer_received[$key]:-0}"
      sample swarm_wireguard_pings_answered peer "$name" family IPv6 "${peer_received6[$key]:-0}"
    fi
    if [ -n "${wg_rx[$key]:-}" ]; then
      sample swarm_wireguard_rx_bytes peer "$name" "${wg_rx[$key]}"
      sample swarm_wireguard_tx_bytes peer "$name" "${wg_tx[$key]}"
    fi
  done
  for i in "${!MOUNT_PATHS[@]}"; do
    path=${MOUNT_PATHS[$i]} unit=${MOUNT_UNITS[$i]}
    sample swarm_mount_up path "$path" "${mount_up[$path]}"
    sample swarm_automount_up path "$path" "$([ "$(unit "$unit" ActiveState)" = active ] && echo 1 || echo 0)"
  done
  for i in "${!SYNC_NAMES[@]}"; do
    name=${SYNC_NAMES[$i]} timer=${SYNC_TIMERS[$i]} service=${SYNC_SERVICES[$i]} status_file=${SYNC_STATUS_FILES[$i]}
    sample swarm_sync_timer_active sync "$name" "${sync_timer[$name]}"
    sample swarm_sync_last_success_timestamp_seconds sync "$name" "${sync_last_success[$name]:-0}"
    [ -z "${sync_exit[$name]:-}" ] || sample swarm_sync_last_exit_code sync "$name" "${sync_exit[$name]}"
    [ -z "${sync_conflicts[$name]:-}" ] || sample swarm_sync_conflicts_pending sync "$name" "${sync_conflicts[$name]}"
  done
  for ds in "${DATASETS[@]}"; do
    sample swarm_zfs_snapshots dataset "$ds" "${ds_snapshots[$ds]}"
    [ -z "${ds_used[$ds]:-}" ] || sample swarm_zfs_used_bytes dataset "$ds" "${ds_used[$ds]}"
    [ -z "${ds_available[$ds]:-}" ] || sample swarm_zfs_available_bytes dataset "$ds" "${ds_available[$ds]}"
  done
  for pool in "${POOLS[@]}"; do
    sample swarm_zfs_scrub_last_timestamp_seconds pool "$pool" "${scrub_ended[$pool]:-0}"
    [ -z "${scrub_errors[$pool]}" ] || sample swarm_zfs_scrub_errors pool "$pool" "${scrub_errors[$pool]}"
    [ -z "${scrub_repaired[$pool]}" ] || sample swarm_zfs_scrub_repaired_bytes pool "$pool" "${scrub_repaired[$pool]}"
  done
  for i in "${!REPLICA_EXPORTS[@]}"; do
    name=${REPLICA_EXPORTS[$i]} address=${REPLICA_HOSTS[$i]} key="$name.to-$address"
    [ -z "${replica_lag[$key]}" ] || sample swarm_replica_lag_seconds export "$name" replica "$address" "${replica_lag[$key]}"
    sample swarm_replica_max_lag_seconds export "$name" replica "$address" "${REPLICA_MAX_LAGS[$i]}"
    if [ -n "${replica_result[$key]}" ]; then
      sample swarm_replica_last_run_success export "$name" replica "$address" \
        "$([ "${replica_result[$key]}" = ok ] && echo 1 || echo 0)"
      [ -z "${replica_finished[$key]}" ] ||
        sample swarm_replica_last_run_timestamp_seconds export "$name" replica "$address" "${replica_finished[$key]}"
      [ -z "${replica_bytes[$key]}" ] ||
        sample swarm_replica_last_run_bytes export "$name" replica "$address" "${replica_bytes[$key]}"
    fi
  done
  # Every kind, 0 included, so an alert can compare; none at all when swarm-drift could not say.
  if [ "$drift_known" = 1 ]; then
    for kind in "${DRIFT_KINDS[@]}"; do
      sample swarm_drift_items kind "$kind" "$(drift_count "$kind")"
    done
  fi
  install -d -m 0755 "$TEXTFILE_DIR"
  # The collector reads only *.prom files, so the half-written file is invisible until the rename.
  tmp=$(mktemp "$TEXTFILE_DIR/.swarm.prom.XXXXXX")
  # Samples sorted once and grouped by family; families in name order, each with its samples.
  local -A family_samples=()
  local line
  if [ "${#metric_samples[@]}" -gt 0 ]; then
    while IFS= read -r line; do
      family_samples[${line%%\{*}]+=$line$'\n'
    done < <(printf '%s\n' "${metric_samples[@]}" | sort)
  fi
  {
    while IFS= read -r family; do
      [ -n "${family_samples[$family]:-}" ] || continue
      printf '# HELP %s %s\n# TYPE %s %s\n%s' "$family" "${metric_help[$family]}" "$family" \
        "${metric_type[$family]}" "${family_samples[$family]}"
    done < <(printf '%s\n' "${!metric_type[@]}" | sort)
  } >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$TEXTFILE_DIR/swarm.prom"
}

case ${1:-} in
  gate) mode_gate ;;
  metrics) mode_metrics ;;
  json) mode_json ;;
  *)
    echo "usage: swarm-health gate|metrics|json" >&2
    exit 2
    ;;
esac

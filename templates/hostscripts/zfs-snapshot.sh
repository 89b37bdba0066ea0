#!/bin/bash
# Installed by swarm. Usage: zfs-snapshot [--dry-run] [--no-snapshot] DATASET TIER=N...
#   TIER: frequent (the N newest swarm snapshots), hourly, daily, weekly or monthly (the newest swarm snapshot
#   of each of the last N UTC hours, days, weeks from Monday, calendar months that have one).
# A run takes DATASET@swarm-<UTC yyyymmddTHHMMSSZ>, then destroys each swarm snapshot of DATASET that no tier
# keeps, except the newest, the one it took and any with a zfs hold. Snapshots of any other name are never
# touched. --no-snapshot prunes without taking one (a replica's snapshots come from its source).
# --dry-run takes and destroys nothing: it prints what a run now would do, one line per snapshot of
# DATASET, newest first: ACTION<tab>SNAPSHOT<tab>WHY, ACTION being take, keep, destroy or ignore.
# SWARM_NOW (seconds since the epoch), only when set, stands in for the clock.
# Exit: 0 done; 1 zfs failed or refused a destroy; 2 usage.
set -euo pipefail
export LC_ALL=C
# Prefix of every snapshot swarm takes; pruning never touches any other snapshot.
SNAPSHOT_PREFIX='swarm-'
TIERS=(frequent hourly daily weekly monthly)
# Only names this program writes: a valid UTC time. It also keeps out the names zfs destroy reads as several
# snapshots (a%b is a range, a,b a list).
STAMP='(19[7-9][0-9]|2[0-9]{3})(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]Z'

usage() {
  echo "zfs-snapshot: $1" >&2
  echo "usage: zfs-snapshot [--dry-run] [--no-snapshot] DATASET TIER=N... (TIER: ${TIERS[*]})" >&2
  exit 2
}

# Every zfs call goes through here: one place to see what the program asks of zfs.
run_zfs() {
  zfs "$@"
}

dry_run=false take=true
while [ "$#" -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=true ;;
    --no-snapshot) take=false ;;
    *) break ;;
  esac
  shift
done
[ "$#" -ge 2 ] || usage "give a dataset and at least one tier, e.g. tank/meshfs/state hourly=48"
dataset=$1
shift
[[ $dataset =~ ^[A-Za-z][A-Za-z0-9_.:-]*(/[A-Za-z0-9_.:-]+)*$ ]] || usage "'$dataset' is not a dataset name"
declare -A keep=()
for arg in "$@"; do
  tier=${arg%%=*}
  count=${arg#*=}
  [[ $arg == *=* && " ${TIERS[*]} " == *" $tier "* ]] || usage "'$arg' is not TIER=N with TIER one of ${TIERS[*]}"
  [[ $count =~ ^[0-9]{1,6}$ ]] || usage "'$arg': N must be a whole number"
  [ -z "${keep[$tier]:-}" ] || usage "$tier is given twice"
  keep[$tier]=$((10#$count))
done
total=0
for tier in "${TIERS[@]}"; do
  keep[$tier]=${keep[$tier]:-0}
  total=$((total + keep[$tier]))
done
[ "$total" -gt 0 ] || usage "every tier is 0: that keeps no snapshot; keep at least one, e.g. hourly=48"
settings=$(for tier in "${TIERS[@]}"; do printf '%s=%s ' "$tier" "${keep[$tier]}"; done)
settings=${settings% }

if [ -n "${SWARM_NOW+set}" ]; then
  [[ $SWARM_NOW =~ ^[0-9]+$ ]] || usage "SWARM_NOW must be seconds since the epoch, not '$SWARM_NOW'"
  stamp=$(date -u -d "@$SWARM_NOW" +%Y%m%dT%H%M%SZ)
else
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
fi
taken="$dataset@$SNAPSHOT_PREFIX$stamp"
$take || taken=''

if $dry_run; then
  echo "swarm: dry run of a run at $stamp on $dataset ($settings): nothing is taken or destroyed"
elif $take; then
  run_zfs snapshot "$taken"
  echo "swarm: took snapshot $taken"
fi

# A zfs that fails stops the run before anything is destroyed (a process substitution would hide its exit).
zfs_or_stop() {
  local out
  out=$(run_zfs "$@") || {
    echo "zfs-snapshot: zfs $1 failed (see above): nothing is destroyed" >&2
    exit 1
  }
  [ -z "$out" ] || printf '%s\n' "$out"
}

# The snapshots of the dataset itself (-d 1), swarm's and the others.
ours=() others=()
listing=$(zfs_or_stop list -H -t snapshot -o name -d 1 "$dataset")
while IFS= read -r name; do
  if [[ $name == "$dataset@"* && ${name#"$dataset@"} =~ ^${SNAPSHOT_PREFIX}${STAMP}$ ]]; then
    ours+=("$name")
  elif [[ $name == "$dataset@"* ]]; then
    others+=("$name")
  fi
done <<<"$listing"
existing=("${ours[@]}")
if ! $take; then
  :
elif $dry_run && [[ " ${ours[*]} " != *" $taken "* ]]; then
  ours+=("$taken")
elif ! $dry_run && [[ " ${ours[*]} " != *" $taken "* ]]; then
  echo "zfs-snapshot: $taken is not in zfs list after it was taken: nothing is destroyed" >&2
  exit 1
fi
# The UTC time in the name sorts like the time it was taken: newest first.
if [ "${#ours[@]}" -gt 0 ]; then
  mapfile -t ours < <(printf '%s\n' "${ours[@]}" | sort -r)
fi

# Held snapshots (zfs holds -H: NAME<tab>TAG<tab>TIME), with their tags.
declare -A held=()
if [ "${#existing[@]}" -gt 0 ]; then
  holds=$(zfs_or_stop holds -H "${existing[@]}")
  while IFS=$'\t' read -r name tag _; do
    [ -n "$name" ] || continue
    held[$name]="${held[$name]:+${held[$name]}, }$tag"
  done <<<"$holds"
fi

# period TIER STAMP: sets $period to the key of the UTC period of that tier the time falls in.
period() {
  local y=$((10#${2:0:4})) m=$((10#${2:4:2})) d=$((10#${2:6:2})) era yoe doy days
  case $1 in
    hourly) period=${2:0:11} ;;
    daily) period=${2:0:8} ;;
    monthly) period=${2:0:6} ;;
    weekly)
      # Days since 1970-01-01 (a Thursday; days_from_civil, H. Hinnant), then weeks from Monday 1969-12-29.
      y=$((y - (m <= 2)))
      era=$((y / 400))
      yoe=$((y - era * 400))
      doy=$(((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1))
      days=$((era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468))
      period=$(((days + 3) / 7))
      ;;
  esac
}

# Why each swarm snapshot is kept, by tier: the newest of each period, newest periods first.
declare -A why=()
n=${#ours[@]}
for ((i = 0; i < n && i < keep[frequent]; i++)); do
  why[${ours[i]}]="frequent $((i + 1)) of ${keep[frequent]}"
done
for tier in hourly daily weekly monthly; do
  seen=0 last=''
  for ((i = 0; i < n && seen < keep[$tier]; i++)); do
    period "$tier" "${ours[i]#*@"$SNAPSHOT_PREFIX"}"
    [ "$period" != "$last" ] || continue
    last=$period
    seen=$((seen + 1))
    why[${ours[i]}]="${why[${ours[i]}]:+${why[${ours[i]}]}, }$tier $seen of ${keep[$tier]}"
  done
done

destroyed=0 kept=0 kept_for_hold=0 failed=0
for ((i = 0; i < n; i++)); do
  name=${ours[i]}
  reasons=()
  [ "$i" -ne 0 ] || reasons+=("newest")
  [ "$name" != "$taken" ] || reasons+=("taken by this run")
  [ -z "${why[$name]:-}" ] || reasons+=("${why[$name]}")
  if [ -n "${held[$name]:-}" ]; then
    reasons+=("held (${held[$name]})")
    [ -n "${why[$name]:-}" ] || reasons+=("no tier keeps it")
  fi
  action=keep
  if [ "${#reasons[@]}" -eq 0 ]; then
    action=destroy
    reasons=("no tier keeps it")
  elif [ "$name" = "$taken" ] && $dry_run; then
    action=take
  fi
  because=${reasons[0]}
  for reason in "${reasons[@]:1}"; do
    because+="; $reason"
  done
  if [ "$action" = destroy ]; then
    destroyed=$((destroyed + 1))
  else
    kept=$((kept + 1))
    if [ -n "${held[$name]:-}" ] && [ -z "${why[$name]:-}" ] && [ "$i" -ne 0 ] && [ "$name" != "$taken" ]; then
      kept_for_hold=$((kept_for_hold + 1))
    fi
  fi
  if $dry_run; then
    printf '%s\t%s\t%s\n' "$action" "$name" "$because"
  elif [ "$action" = destroy ]; then
    # One exact name per call, never -r, -R or -d: zfs itself refuses a snapshot held since it was listed.
    if run_zfs destroy "$name"; then
      echo "swarm: destroyed snapshot $name: $because"
    else
      echo "zfs-snapshot: zfs destroy $name failed; it stays until the next run" >&2
      failed=$((failed + 1))
    fi
  elif [ -n "${held[$name]:-}" ] && [ -z "${why[$name]:-}" ]; then
    echo "swarm: kept snapshot $name: $because"
  fi
done
if $dry_run; then
  for name in "${others[@]}"; do
    printf 'ignore\t%s\t%s\n' "$name" "not a swarm snapshot name: never pruned"
  done
fi

others_note="${#others[@]} other snapshot$([ "${#others[@]}" -eq 1 ] || echo s) (not named by swarm) never touched"
if $dry_run; then
  echo "swarm: a run at $stamp would take $($take && echo 1 || echo no) snapshot, destroy $destroyed of $n swarm snapshots and keep $kept ($kept_for_hold only for a hold); $others_note"
else
  echo "swarm: pruned $dataset ($settings): destroyed $((destroyed - failed)) of $n swarm snapshots, kept $((kept + failed)) ($kept_for_hold only for a hold); $others_note"
fi
if [ "$failed" -gt 0 ]; then
  echo "zfs-snapshot: $failed of $destroyed destroys failed (see above)" >&2
  exit 1
fi

#!/bin/bash
# Installed by swarm: checks that the roots of a sync are really there before unison runs.
# It runs before every run of the sync, and a watched sync's latency is made of runs: when nothing
# changed it starts no process (each costs tens of milliseconds on a small or emulated host).
set -euo pipefail
export LC_ALL=C
# The file at an export's root that proves a path shows its dataset.
EXPORT_SENTINEL='.swarm-meshfs'
init=0
state=
mount=
export_name=
sentinel=
while [ $# -gt 0 ]; do
  case $1 in
    --init) init=1; shift ;;
    --state) state=$2; shift 2 ;;
    --mount) mount=$2; shift 2 ;;
    --export) export_name=$2; shift 2 ;;
    --sentinel) sentinel=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "unison-guard: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ -z "$sentinel" ] || [ $# -eq 0 ]; then
  echo "usage: unison-guard [--init] [--state DIR] [--mount PATH --export NAME] --sentinel FILE ROOT..." >&2
  exit 2
fi
refuse() {
  echo "swarm: not syncing: $*" >&2
  exit 1
}
has_archive() {
  [ -n "$state" ] && compgen -G "$state/ar[0-9a-f]*" >/dev/null
}
# Sets the variable named $1 to what $(cat FILE) would give (trailing newlines dropped), without
# starting a process; fails when FILE cannot be read.
slurp() {
  local -n slurp_into=$1
  local slurp_lines=()
  { mapfile -t slurp_lines <"$2"; } 2>/dev/null || return 1
  printf -v slurp_into '%s\n' "${slurp_lines[@]}"
  while [[ $slurp_into == *$'\n' ]]; do slurp_into=${slurp_into%$'\n'}; done
}
# Sets types to the types of what is mounted at $1, comma-separated (e.g. autofs,fuse.sshfs for an
# automount that has mounted), from the mount table findmnt reads; the kernel writes a mount point
# there with space, tab, newline and backslash as octal escapes. SWARM_MOUNTINFO stands in for it
# in tests.
mount_types() {
  local want=$1 point rest
  want=${want//\\/\\134}
  want=${want// /\\040}
  want=${want//$'\t'/\\011}
  want=${want//$'\n'/\\012}
  types=
  while read -r _ _ _ _ point rest; do
    if [ "$point" = "$want" ]; then
      rest=${rest#* - }
      types+=${types:+,}${rest%% *}
    fi
  done <"${SWARM_MOUNTINFO:-/proc/self/mountinfo}"
}
if [ -n "$mount" ]; then
  # Walking through the mount point is what makes an automount mount it.
  [ -d "$mount/." ] || refuse "cannot read $mount (see journalctl -u $(systemd-escape --path "$mount" 2>/dev/null).mount)"
  mount_types "$mount"
  case ,$types, in
    *,fuse.sshfs,*) ;;
    *) refuse "$mount is not an sshfs mount (found: ${types:-no mount at all})" ;;
  esac
  # The sentinel's first line names the export, its second the dataset behind it and its guid.
  seen=
  slurp seen "$mount/$EXPORT_SENTINEL" || refuse "$mount has no $EXPORT_SENTINEL: the export's dataset is not mounted on its host"
  if [ -n "$export_name" ] && [ "${seen%%$'\n'*}" != "$export_name" ]; then
    refuse "$mount shows export '${seen%%$'\n'*}', not $export_name"
  fi
fi
for root in "$@"; do
  if [ ! -d "$root" ]; then
    if [ "$init" = 1 ] && ! has_archive; then
      mkdir -p "$root"
      echo "swarm: created root $root"
    else
      refuse "root $root is missing"
    fi
  fi
  if [ ! -e "$root/$sentinel" ]; then
    if [ "$init" = 1 ] && ! has_archive; then
      : >"$root/$sentinel"
      echo "swarm: marked $root with $sentinel"
    else
      refuse "root $root has no $sentinel, so it may not be the directory unison knows (an unmounted or replaced one). If it is, and its content is intact, mark it: touch '$root/$sentinel'"
    fi
  fi
done
# unison's archive says what both roots held after the last run, and a file the archive knows that a
# root lacks is a deletion to propagate. When the mount shows another dataset than last time (the
# export failed over to a replica, which lacks what was written after its last snapshot), that
# would delete, on this side, the newest files: the archives of the old dataset are moved aside, so
# this run merges both sides (a file only one side has is copied, none is deleted, files that
# differ are conflicts, each side keeps its own).
# Sets now to the sentinel's lines after the export's name when they name a dataset, else empty.
dataset_line() {
  now=
  case $1 in
    *$'\n'dataset\ *) now=${1#*$'\n'} ;;
  esac
}
if [ -n "$mount" ] && [ -n "$state" ]; then
  dataset_line "$seen"
  known=
  slurp known "$state/export-dataset" || known=
  if [ -n "$now" ] && [ "$now" != "$known" ]; then
    # The guard runs before each run of the sync and in the step that installs it, which may be
    # while the service runs: unison's own lock (the service's flock) keeps a run and a second guard
    # from seeing the archives while they move, and the comparison and the move are one step under
    # it. (When the dataset is the one the last run saw, nothing moves and no lock is needed: the
    # record is written, atomically, only once the archives have moved.)
    exec {lock}>>"$state/lock"
    flock "$lock"
    slurp known "$state/export-dataset" || known=
    if [ "$now" != "$known" ]; then
      shopt -s nullglob
      archives=("$state"/ar[0-9a-f]* "$state"/fp[0-9a-f]*)
      shopt -u nullglob
      if [ -n "$known" ] && [ ${#archives[@]} -gt 0 ]; then
        aside="$state/replaced-archives-$(date -u +%Y%m%dT%H%M%SZ)"
        mkdir -p "$aside"
        mv -- "${archives[@]}" "$aside"/
        echo "swarm: $mount shows another copy of export ${seen%%$'\n'*} ($now; it was $known): unison's archives moved to $aside, so this run merges both sides and deletes nothing"
      fi
      printf '%s\n' "$now" >"$state/export-dataset.new"
      mv -f "$state/export-dataset.new" "$state/export-dataset"
    fi
    exec {lock}>&-
  fi
fi

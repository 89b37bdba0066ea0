#!/bin/bash
# Installed by swarm: checks that the roots of a sync are really there before unison runs.
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
  echo "usage: unison-guard [--init --state DIR] [--mount PATH --export NAME] --sentinel FILE ROOT..." >&2
  exit 2
fi
refuse() {
  echo "swarm: not syncing: $*" >&2
  exit 1
}
has_archive() {
  [ -n "$state" ] && compgen -G "$state/ar*" >/dev/null
}
if [ -n "$mount" ]; then
  # Reading the directory is what makes an automount mount it.
  ls -A "$mount" >/dev/null 2>&1 || refuse "cannot read $mount (see journalctl -u $(systemd-escape --path "$mount" 2>/dev/null).mount)"
  types=$(findmnt -n -o FSTYPE --mountpoint "$mount" | paste -sd, -) || true
  case ,$types, in
    *,fuse.sshfs,*) ;;
    *) refuse "$mount is not an sshfs mount (found: ${types:-no mount at all})" ;;
  esac
  seen=$(cat "$mount/$EXPORT_SENTINEL" 2>/dev/null) || refuse "$mount has no $EXPORT_SENTINEL: the export's dataset is not mounted on its host"
  if [ -n "$export_name" ] && [ "$seen" != "$export_name" ]; then
    refuse "$mount shows export '$seen', not $export_name"
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

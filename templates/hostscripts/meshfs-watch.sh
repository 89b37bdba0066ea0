#!/bin/bash
# Installed by swarm on an export host. The forced command of each watched sync's key in the
# authorized_keys of the export's watch user (command="meshfs-watch DIR"), run as that user
# (<export>-watch), who can read the export's directories and write none of them. Usage:
# meshfs-watch DIR, with SSH_ORIGINAL_COMMAND empty or "watch". It prints TOKEN once when it
# starts (changes made while nobody watched are then picked up by the sync it starts) and then
# once per change below DIR: never a file name, so the client learns when, not what.
# Anything else is refused: the export's mountpoint, which DIR must be inside, comes from
# CONF_DIR/<export>.conf, which root owns.
# Exit: 1 cannot watch; 2 refused.
set -euo pipefail
export LC_ALL=C
CONF_DIR=/etc/swarm/watch
TOKEN=change

user=$(id -un)
client=${SSH_CLIENT:-}
client=${client%% *}

refuse() {
  echo "meshfs-watch: refused: $*" >&2
  logger -t swarm-watch -p auth.warning "refused $user from ${client:-?}: $*" 2>/dev/null || true
  exit 2
}

case ${SSH_ORIGINAL_COMMAND:-} in
  "" | watch) ;;
  *) refuse "command not allowed: only watch" ;;
esac
[ "$#" -eq 1 ] || refuse "usage: meshfs-watch DIR"
export_name=${user%-watch}
if [ "$export_name" = "$user" ] || ! [[ $export_name =~ ^[a-z][a-z0-9-]*$ ]]; then
  refuse "$user is not the watch user of an export"
fi
conf=$CONF_DIR/$export_name.conf
[ -f "$conf" ] || refuse "export $export_name is not watched here"
# The file sets MOUNTPOINT, the export's dataset root.
MOUNTPOINT=''
# shellcheck source=/dev/null
. "$conf"
mountpoint=$(realpath -e -- "$MOUNTPOINT" 2>/dev/null) || refuse "$conf sets no MOUNTPOINT that exists"
# Symlinks resolved: a link planted inside the dataset cannot lead the watch outside it.
dir=$(realpath -e -- "$1" 2>/dev/null) || refuse "$1 does not exist"
case $dir/ in
  "${mountpoint%/}"/*) ;;
  *) refuse "$1 is not inside the export's mountpoint $MOUNTPOINT" ;;
esac
[ -d "$dir" ] || refuse "$1 is not a directory"
if ! [ -r "$dir" ] || ! [ -x "$dir" ]; then
  echo "meshfs-watch: $user cannot read $dir" >&2
  logger -t swarm-watch -p daemon.err "$user cannot read $dir" 2>/dev/null || true
  exit 1
fi
command -v inotifywait >/dev/null || { echo "meshfs-watch: inotifywait is missing: install inotify-tools" >&2; exit 1; }

# inotify can only watch what it can read: a directory kept from this user (mode 0700) is left
# out, and its changes wait for the sync's timer; snapshots (.zfs) are never walked.
skip=("@${mountpoint%/}/.zfs")
while IFS= read -r -d '' private; do
  skip+=("@$private")
  logger -t swarm-watch "$user does not watch $private: it is not readable by $user" 2>/dev/null || true
done < <(find "$dir" -mindepth 1 -xdev -type d \( ! -readable -o ! -executable \) -prune -print0 2>/dev/null || true)

logger -t swarm-watch "$user from ${client:-?} watches $dir" 2>/dev/null || true
echo "$TOKEN"
# Its own errors (a new directory it cannot read) name files: they go to the log, not the client.
exec inotifywait -m -r -q -e close_write,create,delete,move,attrib \
  --exclude '/\.(unison\.|swarm-sync-)' --format "$TOKEN" "$dir" "${skip[@]}" \
  2> >(logger -t swarm-watch 2>/dev/null || cat >/dev/null)

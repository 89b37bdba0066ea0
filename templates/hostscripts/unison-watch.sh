#!/bin/bash
# Installed by swarm: starts a sync when its local root changes. The sync's own service does the
# work, so a watched change and the timer can never run unison twice at once.
set -euo pipefail
unit=$1
root=$2
command -v inotifywait >/dev/null || { echo "unison-watch: inotifywait is missing: install inotify-tools" >&2; exit 1; }
inotifywait -m -r -q -e close_write,create,delete,move,attrib \
  --exclude '/\.(unison\.|swarm-sync-)' --format '%w%f' "$root" |
  while read -r _; do
    while read -r -t 2 _; do :; done
    systemctl start --no-block "$unit"
  done

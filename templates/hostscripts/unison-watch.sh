#!/bin/bash
# Installed by swarm: starts a sync when one of its roots changes. The sync's own service does the
# work, so a watched change and the timer can never run unison twice at once.
# Usage: unison-watch UNIT ROOT (inotifywait on the local root), or unison-watch UNIT - (one line
# per change on standard input: unison-remote-watch feeds it the export host's changes).
set -euo pipefail
unit=$1
root=$2
# A burst of changes (an editor's write, rename and chmod; a copy of many files) starts one run:
# the run starts after SETTLE seconds without a change, or MAX_SETTLE seconds into a steady stream.
# SETTLE is short because each second of it is latency: a run is wanted within 3 s of a change.
# The remote watcher asks for a longer one (SWARM_WATCH_SETTLE): see unison-remote-watch.
SETTLE=${SWARM_WATCH_SETTLE:-0.5}
MAX_SETTLE=5

start_run() {
  # A start while a run is in progress joins that run's job, and the run may have looked at the
  # root before this change; one while the run's status is recorded (deactivating) can end with
  # it, unrun. Wait until the unit is at rest, then start another.
  while case $(systemctl is-active "$unit" 2>/dev/null || true) in activating | deactivating | reloading) true ;; *) false ;; esac; do
    sleep 0.2
  done
  systemctl start --no-block "$unit"
}

follow() {
  local until
  while read -r _; do
    until=$((SECONDS + MAX_SETTLE))
    while [ "$SECONDS" -lt "$until" ] && read -r -t "$SETTLE" _; do :; done
    start_run
  done
}

if [ "$root" = - ]; then
  follow
  exit 0
fi
command -v inotifywait >/dev/null || { echo "unison-watch: inotifywait is missing: install inotify-tools" >&2; exit 1; }
inotifywait -m -r -q -e close_write,create,delete,move,attrib \
  --exclude '/\.(unison\.|swarm-sync-)' --format '%w%f' "$root" | follow

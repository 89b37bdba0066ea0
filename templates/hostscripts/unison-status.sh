#!/bin/bash
# Installed by swarm: records the outcome of the last run of a sync (systemd ExecStopPost).
# It runs after every run, and the sync's next run waits for it: it starts as few processes as it can.
set -euo pipefail
export LC_ALL=C TZ=UTC0
# The status directory is root's alone (0755): a fixed name for the file being written is safe.
umask 022
sync=$1
file=$2
log=${3-}
result=${SERVICE_RESULT:-unknown}
status=${EXIT_STATUS:-}
case $result/$status in
  success/0) summary="ok" ;;
  success/1) summary="conflicts skipped: each side kept its version; see journalctl -u swarm-sync-$sync and resolve them" ;;
  */2) summary="failed: some files were not synced (unison exit 2)" ;;
  */3) summary="failed: unison stopped before syncing (exit 3): a root, its sentinel or the connection is missing" ;;
  exit-code/) summary="refused: the guard found a root, a sentinel or the mount missing" ;;
  timeout/*) summary="failed: the run took longer than its timeout" ;;
  *) summary="failed: $result ${EXIT_CODE:-} $status" ;;
esac
printf -v finished '%(%Y-%m-%dT%H:%M:%SZ)T' -1
printf 'sync=%s\nresult=%s\nexit=%s\nsummary=%s\nfinished=%s\n' \
  "$sync" "$result" "${status:-none}" "$summary" "$finished" >"$file.new"
mv -f "$file.new" "$file"
if [ "$summary" != ok ]; then
  echo "swarm: sync $sync: $summary"
fi
# unison appends to its log on every run and reopens it each time: rotate it past 1 MiB.
if [ -n "$log" ] && [ -f "$log" ] && [ "$(stat -c %s "$log")" -gt 1048576 ]; then
  mv -f "$log" "$log.1"
fi

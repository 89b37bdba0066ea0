#!/bin/bash
# Installed by swarm on a replica host. The forced command of each sending host's key
# (authorized_keys: command="zfs-replica-recv EXPORT"), run as the replica user, to whom ZFS
# delegates (zfs allow) only what receiving into the replica's dataset and pruning its
# snapshots need. Usage: zfs-replica-recv EXPORT, with the request in SSH_ORIGINAL_COMMAND:
#   state         token<tab>TOKEN or -, exists<tab>yes|no, then snap<tab>NAME<tab>GUID<tab>CREATION
#                 for each snapshot of the replica, oldest first
#   receive       zfs receive -s -u the stream on stdin into the replica, hold the snapshot received
#                 last (where the next send starts) and release the one held before, then prune the
#                 replica's swarm snapshots to its retention (never a held one)
#   abort-resume  zfs receive -A: discards a cut-off receive that can no longer resume
#   prune-plan    what the next prune would destroy (zfs-snapshot --dry-run --no-snapshot)
# Anything else is refused: the dataset, the retention and the zfs options come from
# CONF_DIR/EXPORT.conf, which root owns, never from the sender.
# Exit: 0 done; 1 zfs failed; 2 refused.
set -euo pipefail
export LC_ALL=C
CONF_DIR=/etc/swarm/replicas
SNAPSHOT_PROGRAM=/usr/local/lib/swarm/zfs-snapshot
# The hold on the replica's newest snapshot, the base of the next send.
HOLD_TAG=swarm-replica-base

refuse() {
  echo "zfs-replica-recv: refused: $*" >&2
  local client=${SSH_CLIENT:-}
  logger -t swarm-replica -p auth.warning "refused from ${client%% *}: $*" 2>/dev/null || true
  exit 2
}

if [ "$#" -ne 1 ] || ! [[ $1 =~ ^[a-z][a-z0-9-]*$ ]]; then
  refuse "usage: zfs-replica-recv EXPORT"
fi
conf=$CONF_DIR/$1.conf
[ -f "$conf" ] || refuse "no replica of export $1 is kept here"
# The file sets TARGET (the replica's dataset) and RETENTION (TIER=N words).
TARGET='' RETENTION=''
# shellcheck source=/dev/null
. "$conf"
if [ -z "$TARGET" ] || [ -z "$RETENTION" ]; then
  refuse "$conf sets no TARGET or RETENTION"
fi

request=${SSH_ORIGINAL_COMMAND:-}
case $request in
  state)
    token=-
    if zfs list -H -o name "$TARGET" >/dev/null 2>&1; then
      token=$(zfs get -H -o value receive_resume_token "$TARGET")
      [ "$token" != - ] && [ -n "$token" ] || token=-
      printf 'token\t%s\nexists\tyes\n' "$token"
      zfs list -H -p -t snapshot -o name,guid,creation -s createtxg -d 1 "$TARGET" |
        while IFS=$'\t' read -r name guid creation; do
          printf 'snap\t%s\t%s\t%s\n' "${name#*@}" "$guid" "$creation"
        done
    else
      # A first receive that was cut off leaves a hidden partial dataset: its token resumes it.
      partial=$(zfs get -H -o value receive_resume_token "$TARGET/%recv" 2>/dev/null || true)
      [ -n "$partial" ] || partial=-
      printf 'token\t%s\nexists\tno\n' "$partial"
    fi
    ;;
  receive)
    # -s: a cut-off stream can resume; -u: never mounted. A new replica is read-only and not mounted
    # even by zfs mount -a; the options do nothing to a replica that exists.
    zfs receive -s -u -o readonly=on -o canmount=noauto "$TARGET"
    echo "zfs-replica-recv: received into $TARGET"
    # The snapshot received last is where the next send starts: held, so that no prune takes it, even one
    # that orders snapshots by the time in their names when a clock ran wrong.
    newest=$(zfs list -H -t snapshot -o name -s createtxg -d 1 "$TARGET" | tail -n 1)
    if ! zfs holds -H "$newest" | cut -f2 | grep -qxF "$HOLD_TAG"; then
      zfs hold "$HOLD_TAG" "$newest"
    fi
    zfs list -H -t snapshot -o name -d 1 "$TARGET" | xargs -r zfs holds -H |
      while IFS=$'\t' read -r name tag _; do
        if [ "$tag" = "$HOLD_TAG" ] && [ "$name" != "$newest" ]; then
          zfs release "$HOLD_TAG" "$name" || echo "zfs-replica-recv: zfs release $HOLD_TAG $name failed" >&2
        fi
      done
    # shellcheck disable=SC2086 # RETENTION is TIER=N words
    "$SNAPSHOT_PROGRAM" --no-snapshot "$TARGET" $RETENTION | grep -v '^swarm: kept' || true
    ;;
  abort-resume)
    # A cut-off receive whose stream cannot resume (its source snapshot is gone): discard what it left.
    zfs receive -A "$TARGET"
    echo "zfs-replica-recv: discarded the cut-off receive into $TARGET"
    ;;
  prune-plan)
    # shellcheck disable=SC2086 # RETENTION is TIER=N words
    "$SNAPSHOT_PROGRAM" --dry-run --no-snapshot "$TARGET" $RETENTION
    ;;
  *)
    refuse "'${request:0:80}' is not a request of this key (state, receive, abort-resume or prune-plan)"
    ;;
esac

#!/bin/bash
# Installed by swarm on an export host. Usage: zfs-replica-send CONF
# One replication run of a dataset to one replica host, over the mesh, as its timer runs it:
#   1. takes DATASET@swarm-<UTC time> (what the run sends; the snapshot timer's prune keeps or drops it
#      later like any other swarm snapshot);
#   2. asks the replica for its state; a receive that was cut off is resumed first (zfs send -t);
#   3. sends what the replica lacks: everything when it has nothing, else zfs send -I from its newest
#      snapshot, which must be a snapshot of DATASET (same guid), or the replica has diverged and
#      nothing is sent or rolled back;
#   4. holds the snapshot the replica now ends with (zfs hold HOLD_TAG) and releases the tag from
#      every other: the base of the next send can never be pruned.
# Compressed blocks travel compressed (-c); an encrypted dataset travels raw (-w), its key never sent.
# Every run writes STATUS (key=value lines): health, status and metrics read it.
# Exit: 0 the replica is current; 1 a run failed (STATUS says why); 2 usage.
set -euo pipefail
export LC_ALL=C
SNAPSHOT_PREFIX='swarm-'

if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
  echo "usage: zfs-replica-send CONF (a file of /etc/swarm/replicas)" >&2
  exit 2
fi
# The file sets these (templates/replica.ts renders it).
EXPORT='' DATASET='' REPLICA='' ADDRESS='' LOGIN='' KEY='' KNOWN_HOSTS='' STATUS='' HOLD_TAG=''
# shellcheck source=/dev/null
. "$1"
for var in EXPORT DATASET REPLICA ADDRESS LOGIN KEY KNOWN_HOSTS STATUS HOLD_TAG; do
  [ -n "${!var}" ] || {
    echo "zfs-replica-send: $1 sets no $var" >&2
    exit 2
  }
done

started=$(date +%s)
work=$(mktemp -d)
finished=0
# A run that stops anywhere else (a zfs or a shell error) still says so in STATUS.
# shellcheck disable=SC2317 # run by the EXIT trap
on_exit() {
  local rc=$?
  rm -rf "$work"
  if [ "$finished" = 0 ]; then
    finished=1
    finish failed "stopped unexpectedly (exit $rc): see journalctl -u swarm-replicate-$EXPORT-to-$REPLICA"
  fi
}
trap on_exit EXIT

# What the last good run left, kept through failures so that the lag keeps growing.
replicated='' replicated_at='' first_attempt=$started
if [ -f "$STATUS" ]; then
  replicated=$(sed -n 's/^replicated=//p' "$STATUS")
  replicated_at=$(sed -n 's/^replicated_at=//p' "$STATUS")
  first_attempt=$(sed -n 's/^first_attempt=//p' "$STATUS")
  [ -n "$first_attempt" ] || first_attempt=$started
fi
bytes=0

# finish RESULT MESSAGE: writes STATUS and exits (0 for ok).
finish() {
  local result=$1 message=$2 tmp
  finished=1
  tmp=$(mktemp "$STATUS.XXXXXX")
  {
    printf 'result=%s\n' "$result"
    printf 'message=%s\n' "${message//$'\n'/ }"
    printf 'started=%s\nfinished=%s\nfirst_attempt=%s\n' "$started" "$(date +%s)" "$first_attempt"
    printf 'bytes=%s\n' "$bytes"
    printf 'replicated=%s\nreplicated_at=%s\n' "$replicated" "$replicated_at"
  } >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$STATUS"
  if [ "$result" = ok ]; then
    echo "swarm: $EXPORT → $REPLICA: $message"
    exit 0
  fi
  echo "zfs-replica-send: $EXPORT → $REPLICA: $result: $message" >&2
  exit 1
}

# The replica's sshd, its key pinned, over the mesh, nothing read from ssh_config; the key can do
# nothing but the forced command.
replica() {
  ssh -F none -i "$KEY" -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
    -o UserKnownHostsFile="$KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o HostKeyAlgorithms=ssh-ed25519 -o HostKeyAlias="$REPLICA" \
    -o ConnectTimeout=20 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 \
    -o ClearAllForwardings=yes -o ForwardAgent=no -o ForwardX11=no \
    "$LOGIN@$ADDRESS" "$@"
}

# try_stream ZFS-SEND-ARGS...: zfs send | (count bytes) | the replica's receive; on failure, false with
# the reason in $stream_error.
try_stream() {
  local counted rc=0
  zfs send "$@" 2>"$work/send.err" | dd bs=1M iflag=fullblock 2>"$work/dd.err" |
    replica receive >"$work/recv.out" 2>"$work/recv.err" || rc=$?
  counted=$(sed -n 's/^\([0-9]*\) bytes.*/\1/p' "$work/dd.err" | tail -n 1)
  bytes=$((bytes + ${counted:-0}))
  sed 's/^/replica: /' "$work/recv.out"
  stream_error="zfs send $* failed: $(cat "$work/send.err" "$work/recv.err" | tail -n 3)"
  return "$rc"
}

# send_stream ZFS-SEND-ARGS...: try_stream, or the run fails.
send_stream() {
  try_stream "$@" || finish failed "$stream_error"
}

# ask_state: the replica's state into $token, $exists and the arrays replica_snaps (names) and
# replica_guids, oldest first.
ask_state() {
  local kind a b
  replica state >"$work/state" 2>"$work/state.err" ||
    finish failed "cannot ask $REPLICA ($ADDRESS) for its state: $(tail -n 2 "$work/state.err")"
  token=- exists=no replica_snaps=() replica_guids=()
  while IFS=$'\t' read -r kind a b _; do
    case $kind in
      token) token=$a ;;
      exists) exists=$a ;;
      snap)
        replica_snaps+=("$a")
        replica_guids+=("$b")
        ;;
    esac
  done <"$work/state"
}

flags=(-c)
if [ "$(zfs get -H -o value encryption "$DATASET")" != off ]; then
  flags=(-w)
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
newest="$SNAPSHOT_PREFIX$stamp"
zfs list -H -o name "$DATASET@$newest" >/dev/null 2>&1 || zfs snapshot "$DATASET@$newest" ||
  finish failed "zfs snapshot $DATASET@$newest failed"

ask_state
if [ "$token" != - ]; then
  echo "swarm: resuming the receive $REPLICA had cut off"
  if ! try_stream -t "$token"; then
    # The stream cannot go on (its snapshot was pruned here, say): the replica discards the partial
    # receive and this run sends again from the replica's newest snapshot.
    echo "swarm: the cut-off receive cannot resume ($stream_error); $REPLICA discards it"
    replica abort-resume >/dev/null 2>"$work/abort.err" ||
      finish failed "$REPLICA cannot discard the cut-off receive: $(tail -n 2 "$work/abort.err")"
  fi
  ask_state
fi

# The source's snapshots (every name: zfs send -I sends the ones between too), oldest first.
declare -A source_guid=() guid_name=() creations=()
while IFS=$'\t' read -r name guid creation; do
  source_guid[${name#*@}]=$guid
  guid_name[$guid]=${name#*@}
  creations[$guid]=$creation
done < <(zfs list -H -p -t snapshot -o name,guid,creation -s createtxg -d 1 "$DATASET")
newest_guid=${source_guid[$newest]}

if [ "${#replica_snaps[@]}" -eq 0 ]; then
  if [ "$exists" = yes ]; then
    finish diverged "the replica's dataset exists on $REPLICA but holds no snapshot: nothing was sent; if it holds nothing of value, destroy it there (zfs destroy) and the next run sends everything"
  fi
  echo "swarm: $REPLICA has no replica yet: sending $DATASET@$newest whole"
  send_stream "${flags[@]}" "$DATASET@$newest"
else
  last=$((${#replica_snaps[@]} - 1))
  base_guid=${replica_guids[$last]}
  base=${guid_name[$base_guid]:-}
  if [ -z "$base" ]; then
    common=''
    for guid in "${replica_guids[@]}"; do
      [ -z "${guid_name[$guid]:-}" ] || common=${guid_name[$guid]}
    done
    if [ -n "$common" ]; then
      finish diverged "the replica's newest snapshot ${replica_snaps[$last]} is not a snapshot of $DATASET (it was taken on the replica, or the source was rolled back past it): nothing was sent or rolled back; the newest common snapshot is $common"
    fi
    finish diverged "the replica has no snapshot in common with $DATASET (its base was destroyed here, or it is a copy of another dataset): nothing was sent or rolled back; to start over, destroy the replica's dataset on $REPLICA and the next run sends everything"
  fi
  if [ "$base_guid" = "$newest_guid" ]; then
    echo "swarm: $REPLICA already has $newest"
  else
    send_stream "${flags[@]}" -I "$DATASET@$base" "$DATASET@$newest"
  fi
fi

# The replica now ends with $newest: hold it here, and let go of the one held before.
ask_state
last=$((${#replica_snaps[@]} - 1))
if [ "$last" -lt 0 ] || [ "${replica_guids[$last]}" != "$newest_guid" ]; then
  finish failed "after the send, $REPLICA's newest snapshot is ${replica_snaps[$last]:-none}, not $newest"
fi
if ! zfs holds -H "$DATASET@$newest" | cut -f2 | grep -qxF "$HOLD_TAG"; then
  zfs hold "$HOLD_TAG" "$DATASET@$newest" || finish failed "zfs hold $HOLD_TAG $DATASET@$newest failed"
fi
while IFS=$'\t' read -r name tag _; do
  if [ "$tag" = "$HOLD_TAG" ] && [ "$name" != "$DATASET@$newest" ]; then
    zfs release "$HOLD_TAG" "$name" || echo "zfs-replica-send: zfs release $HOLD_TAG $name failed" >&2
  fi
done < <(zfs list -H -t snapshot -o name -d 1 "$DATASET" | xargs -r zfs holds -H)
replicated=$newest
replicated_at=${creations[$newest_guid]}
finish ok "$REPLICA has $DATASET@$newest ($bytes bytes sent)"

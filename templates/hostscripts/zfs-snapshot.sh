#!/bin/bash
# Installed by swarm. Usage: zfs-snapshot DATASET KEEP
set -euo pipefail
export LC_ALL=C
# Prefix of every snapshot swarm takes; pruning never touches any other snapshot.
SNAPSHOT_PREFIX='swarm-'
dataset=$1
keep=$2
case $keep in '' | *[!0-9]*)
  echo "zfs-snapshot: KEEP must be a number, not '$keep'" >&2
  exit 2
  ;;
esac
name="$dataset@$SNAPSHOT_PREFIX$(date -u +%Y%m%dT%H%M%SZ)"
zfs snapshot "$name"
echo "swarm: took snapshot $name"
# The UTC time stamp in the name sorts like the creation time; the pattern skips anything not taken here.
mapfile -t ours < <(zfs list -H -t snapshot -o name -d 1 "$dataset" |
  grep -E "@${SNAPSHOT_PREFIX}[0-9]{8}T[0-9]{6}Z\$" | grep -F -- "$dataset@" | sort)
excess=$((${#ours[@]} - keep))
for ((i = 0; i < excess; i++)); do
  case ${ours[i]} in "$dataset@$SNAPSHOT_PREFIX"*) ;; *) continue ;; esac
  zfs destroy "${ours[i]}"
  echo "swarm: destroyed snapshot ${ours[i]} (keeping the newest $keep)"
done

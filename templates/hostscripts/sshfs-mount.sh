# shellcheck shell=bash
# Functions of the script that installs a client's sshfs automount (templates/sshfs.ts); they use
# fail from prelude.sh.

# swarm_sshfs_source WHERE: the source of the sshfs mount at WHERE (user@address:/), from the
# mount table, which is read without touching the mount; nothing when none is mounted there.
swarm_sshfs_source() {
  findmnt -n -o SOURCE -t fuse.sshfs --mountpoint "$1" | tail -n 1 || true
}

# swarm_sshfs_unmount WHERE UNIT: unmounts the sshfs mount at WHERE now; its automount mounts it
# again at the next access. A busy mount is detached (umount -l): what holds a file in it keeps
# that file until it lets go, and everything else sees the next mount.
swarm_sshfs_unmount() {
  local where=$1 unit=$2
  if ! systemctl stop "$unit" 2>/dev/null && [ -n "$(swarm_sshfs_source "$where")" ]; then
    umount -l "$where" || fail "cannot unmount $where: see journalctl -u $unit"
    echo "swarm: detached $where, which was busy; what still holds it keeps it until it lets go"
  fi
  # A refused stop leaves the unit failed; the automount starts it afresh either way.
  systemctl reset-failed "$unit" 2>/dev/null || true
}

# swarm_sshfs_check WHERE UNIT EXPORT: reads the export's sentinel through the mount at WHERE
# (the first access mounts it) and fails unless it names EXPORT. A mount that is there but does not
# answer (its server went away, or its session died and cannot come back) is unmounted and mounted
# again once before the check fails.
swarm_sshfs_check() {
  local where=$1 unit=$2 export=$3 seen source
  if ! seen=$(timeout 60 cat "$where/$EXPORT_SENTINEL" 2>&1); then
    source=$(swarm_sshfs_source "$where")
    [ -n "$source" ] || fail "$where does not show export $export ($seen): see journalctl -u $unit"
    echo "swarm: $where, mounted from $source, does not answer ($seen); mounting it again"
    swarm_sshfs_unmount "$where" "$unit"
    seen=$(timeout 60 cat "$where/$EXPORT_SENTINEL" 2>&1) ||
      fail "$where does not show export $export ($seen): see journalctl -u $unit"
  fi
  # Its first line names the export; the second names the dataset behind it.
  [ "${seen%%$'\n'*}" = "$export" ] || fail "$where shows export '${seen%%$'\n'*}', not $export"
}

# The name of the sentinel file at the root of every export.
EXPORT_SENTINEL=.swarm-meshfs

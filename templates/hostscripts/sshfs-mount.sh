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

# swarm_sshfs_pause_syncs MOUNT_UNIT: stops every sync whose runs use the mount (a sync's service
# is ordered after it, and has a timer of its own), with what starts its runs (its timer and
# watchers), and prints the units it stopped that were active, for swarm_sshfs_resume_syncs. A run
# whose guard checked the old copy of an export must not go on against the new one: unison's
# archive of the old copy would turn what the new copy lacks into deletions on the other side.
swarm_sshfs_pause_syncs() {
  local mount_unit=$1 service base unit
  local -a stop=()
  while read -r service _; do
    base=${service%.service}
    [ -e "$UNIT_DIR/$base.timer" ] || continue
    systemctl show -p After --value "$service" 2>/dev/null | tr ' ' '\n' | grep -qxF "$mount_unit" || continue
    for unit in "$base.timer" "$base-watch.service" "$base-remote-watch.service"; do
      if systemctl is-active --quiet "$unit"; then
        printf '%s\n' "$unit"
        stop+=("$unit")
      fi
    done
    stop+=("$service")
  done < <(systemctl list-unit-files --no-legend --type=service "$SYNC_UNIT_PREFIX*.service" 2>/dev/null || true)
  if [ "${#stop[@]}" -gt 0 ]; then
    systemctl stop "${stop[@]}" || true
    echo "swarm: paused the syncs that use $mount_unit: ${stop[*]}" >&2
  fi
}

# swarm_sshfs_resume_syncs UNIT...: starts again what swarm_sshfs_pause_syncs stopped.
swarm_sshfs_resume_syncs() {
  [ "$#" -gt 0 ] || return 0
  systemctl start "$@" || fail "cannot start $* again: see systemctl status $*"
  echo "swarm: resumed $*"
}

# The name of the sentinel file at the root of every export.
EXPORT_SENTINEL=.swarm-meshfs
# Where units are installed, and how the units of a sync are named.
UNIT_DIR=/etc/systemd/system
SYNC_UNIT_PREFIX=swarm-sync-

# shellcheck shell=bash
set -euo pipefail
umask 022
export LC_ALL=C
# The host as swarm names it, for messages; each script that calls fail sets it.
swarm_host=$HOSTNAME
changed=()
# What this run installed, for the step's record of what swarm owns on the host (swarm_record):
# every file it wrote or found as planned, every unit it activated, and lines of other kinds.
swarm_owned_files=() swarm_owned_lines=()
# Whether this run wrote a unit file that systemd has not read yet.
units_written=0
# fail MESSAGE...: stops the script, naming the host.
fail() {
  echo "swarm: $swarm_host: $*" >&2
  exit 1
}
# swarm_write PATH MODE OWNER:GROUP < content: atomic, and only when something differs.
swarm_write() {
  local path=$1 mode=$2 owner=$3 tmp
  # Create missing parents only: an existing directory keeps its mode (/etc/wireguard stays 0700).
  [ -d "$(dirname "$path")" ] || install -d -m 0755 "$(dirname "$path")"
  swarm_owned_files+=("$path")
  tmp=$(mktemp "$path.swarm.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  chown "$owner" "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path" &&
    [ "$(stat -c %a:%U:%G "$path")" = "$(stat -c %a:%U:%G "$tmp")" ]; then
    rm -f "$tmp"
    return 0
  fi
  mv -f "$tmp" "$path"
  changed+=("$path")
  case $path in /etc/systemd/system/*) units_written=1 ;; esac
  echo "swarm: wrote $path"
}
# swarm_changed PATH...: true when this run wrote any of them.
swarm_changed() {
  local c p
  for c in "${changed[@]}"; do
    for p in "$@"; do
      [ "$c" = "$p" ] && return 0
    done
  done
  return 1
}
# swarm_reload: makes systemd read the unit files this run wrote, if any since the last reload.
swarm_reload() {
  if [ "$units_written" = 1 ]; then
    systemctl daemon-reload
    units_written=0
  fi
}
# swarm_activate UNIT [PATH...]: after systemd has read this run's unit files, enables UNIT,
# starts it when it is not active, and restarts it when this run wrote any PATH (its unit
# file, the program it runs) while it was active.
swarm_activate() {
  local unit=$1
  shift
  swarm_own unit "$unit"
  swarm_reload
  if ! systemctl is-enabled --quiet "$unit"; then
    systemctl enable --quiet "$unit"
    echo "swarm: enabled $unit"
  fi
  if ! systemctl is-active --quiet "$unit"; then
    systemctl start "$unit" || fail "$unit does not start: see journalctl -u $unit"
    echo "swarm: started $unit"
  elif swarm_changed "$@"; then
    systemctl restart "$unit" || fail "$unit does not restart: see journalctl -u $unit"
    echo "swarm: restarted $unit"
  fi
}
# swarm_own KIND FIELD...: records that swarm owns something other than a written file (a unit it
# keeps enabled and active, a WireGuard peer, a dataset property), one tab-separated line.
swarm_own() {
  local IFS=$'\t'
  swarm_owned_lines+=("$*")
}

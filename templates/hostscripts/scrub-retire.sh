# shellcheck shell=bash
# The scrub program and the directory of the scrub units (templates/scrub.ts fills them in).
SCRUB_PROGRAM=/usr/local/lib/swarm/zfs-scrub
SCRUB_UNIT_DIR=/etc/systemd/system
# What Debian's own monthly scrub of every pool reads on the pool's root dataset (disable: not this pool).
DEBIAN_SCRUB_PROPERTY=org.debian:periodic-scrub
# swarm_scrub_retire RECORD [TIMER]: stops and removes each scrub timer (and its service) that the step
# whose record is RECORD installed before, as the record lists it, except TIMER, the one the step keeps;
# without TIMER, also the scrub program. Exports that share a pool both install its scrub: what another
# step's record still lists stays, so the last step to let go of it removes it. A scrub running now goes
# on; the pool's data and the result of its last scrub are never touched, and the pool is Debian's to
# scrub again (its property inherited). Needs nothing of prelude.sh: a teardown runs it too.
swarm_scrub_retire() {
  local record=$1 keep=${2:-} other kind item pool removed=0
  local others=()
  [ -f "$record" ] || return 0
  # Every other step's record (dot files are records being written).
  for other in "${record%/*}"/*; do
    [ "$other" = "$record" ] || [ ! -f "$other" ] || others+=("$other")
  done
  while IFS=$'\t' read -r kind item _; do
    if [ "$kind" != unit ] || [[ $item != swarm-scrub-*.timer ]] || [ "$item" = "$keep" ]; then
      continue
    fi
    if [ "${#others[@]}" -gt 0 ] && grep -qxF "unit"$'\t'"$item" "${others[@]}"; then
      echo "swarm: $item stays: another export of its pool still has it"
      continue
    fi
    systemctl disable --now --quiet "$item" 2>/dev/null || true
    rm -f "$SCRUB_UNIT_DIR/$item" "$SCRUB_UNIT_DIR/${item%.timer}.service"
    removed=1
    echo "swarm: removed $item and ${item%.timer}.service (a scrub running now goes on; the pool is untouched)"
    pool=${item#swarm-scrub-}
    pool=${pool%.timer}
    if command -v zfs >/dev/null && zfs list -H -o name "$pool" >/dev/null 2>&1 &&
      zfs inherit "$DEBIAN_SCRUB_PROPERTY" "$pool"; then
      echo "swarm: $pool is left to the distribution's own scrub schedule again ($DEBIAN_SCRUB_PROPERTY inherited)"
    fi
  done <"$record"
  [ "$removed" = 0 ] || systemctl daemon-reload
  if [ -z "$keep" ] && grep -qF "file"$'\t'"$SCRUB_PROGRAM"$'\t' "$record" && [ -f "$SCRUB_PROGRAM" ] &&
    ! { [ "${#others[@]}" -gt 0 ] && grep -qF "file"$'\t'"$SCRUB_PROGRAM"$'\t' "${others[@]}"; }; then
    rm -f "$SCRUB_PROGRAM"
    echo "swarm: removed $SCRUB_PROGRAM"
  fi
}

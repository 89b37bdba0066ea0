#!/bin/bash
# Installed by swarm. Usage: zfs-scrub POOL
# Scrubs POOL and waits for the scrub to end (zpool scrub -w). A scrub already running, started by
# hand or by the distribution's own schedule, is waited for, not restarted; a paused one is resumed.
# STATUS_DIR/POOL, read by swarm-health (which so never parses zpool's dates), says when this
# program last started, and what the last finished scrub found, which it writes when the scrub ends:
#   started=<seconds since the epoch>
#   ended=<seconds since the epoch>
#   errors=<blocks the scrub could not read or repair>
#   repaired_bytes=<bytes repaired, as exact as zpool prints them: three digits>
#   scan=<zpool status's scan line, for people>
# A scrub that was canceled or did not finish leaves the last finished one's lines as they were
# (started later than ended says so) and exits 1. The scrub itself runs in the kernel: stopping
# this program (or its unit) stops the waiting, not the scrub.
set -euo pipefail
export LC_ALL=C
# Where the result of each pool's last finished scrub is kept, one file per pool.
STATUS_DIR=/var/lib/swarm/scrub
status_dir=${SWARM_SCRUB_STATUS_DIR:-$STATUS_DIR}
pool=${1:-}
if [ -z "$pool" ] || [ "$#" -ne 1 ]; then
  echo "usage: zfs-scrub POOL" >&2
  exit 2
fi

# scan_line: the scan line of `zpool status` without its label: "scrub repaired 0B in 00:01:02 with 0
# errors on Sun Nov 23 00:24:02 2025", "scrub in progress since ...", "none requested", ...
scan_line() {
  zpool status -p "$pool" | sed -n 's/^ *scan: //p' | head -n 1
}

# write_status LINE...: the pool's status file, through a dot file and a rename.
write_status() {
  local tmp
  [ -d "$status_dir" ] || install -d -m 0755 "$status_dir"
  tmp=$(mktemp "$status_dir/.$pool.XXXXXX")
  printf '%s\n' "$@" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$status_dir/$pool"
}

# bytes NUMBER UNIT: zpool's rounded size (1.50M, 12K, 0B) in bytes.
bytes() {
  awk -v n="$1" -v u="$2" 'BEGIN { printf "%.0f\n", n * 1024 ^ (index("BKMGTPE", u) - 1) }'
}

line=$(scan_line) || {
  echo "zfs-scrub: cannot read the status of pool $pool (zpool status $pool)" >&2
  exit 1
}
# The last finished scrub's lines stay until this one finishes.
started=$(date +%s)
mapfile -t finished_before < <(grep -E '^(ended|errors|repaired_bytes|scan)=' "$status_dir/$pool" 2>/dev/null || true)
write_status "started=$started" ${finished_before[@]+"${finished_before[@]}"}
if [[ $line == "scrub in progress since "* ]]; then
  echo "zfs-scrub: a scrub of $pool is running already (${line#scrub }): waiting for it to end"
  zpool wait -t scrub "$pool"
else
  echo "zfs-scrub: scrubbing $pool"
  if ! zpool scrub -w "$pool"; then
    # Another scrub may have started between the look and the start: that one is waited for.
    [[ $(scan_line) == "scrub in progress since "* ]] || {
      echo "zfs-scrub: zpool scrub $pool failed (see its message above; a resilver must end first)" >&2
      exit 1
    }
    echo "zfs-scrub: a scrub of $pool started meanwhile: waiting for it to end"
    zpool wait -t scrub "$pool"
  fi
fi

line=$(scan_line)
finished='^scrub repaired ([0-9]+(\.[0-9]+)?)([BKMGTPE]) in .+ with ([0-9]+) errors on (.+)$'
if ! [[ $line =~ $finished ]]; then
  echo "zfs-scrub: the scrub of $pool did not finish: $line" >&2
  exit 1
fi
repaired=$(bytes "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}")
errors=${BASH_REMATCH[4]}
# zpool prints the end in local time, as ctime(3) does; date reads it back in the same zone.
ended=$(date -d "${BASH_REMATCH[5]}" +%s) || {
  echo "zfs-scrub: cannot read the end time of the scrub of $pool: ${BASH_REMATCH[5]}" >&2
  exit 1
}
write_status "started=$started" "ended=$ended" "errors=$errors" "repaired_bytes=$repaired" "scan=$line"
echo "zfs-scrub: $pool: $line"
if [ "$errors" -gt 0 ]; then
  echo "zfs-scrub: $pool: $errors error(s): zpool status -v $pool names the damaged files" >&2
fi

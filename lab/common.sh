# shellcheck shell=bash
# common.sh: what lab.sh (inside the lab VM) and vm.sh (on the machine) share:
# messages, a manifest of everything they create, process identity by start
# time, and careful unmounting. Sourced, never run; the sourcing script sets
# MANIFEST before using the manifest functions.

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() {
    warn "$*"
    exit 1
}

# The Debian mirror this machine's apt already uses for bookworm, so that an
# image is built from the same place as the machine's own packages.
# SWARM_LAB_MIRROR overrides it.
default_mirror() {
    local uri
    if [[ -n ${SWARM_LAB_MIRROR-} ]]; then
        printf '%s\n' "$SWARM_LAB_MIRROR"
        return 0
    fi
    # deb822 sources: the URIs of the stanza whose Suites name bookworm, not -security
    uri=$(awk '
        /^URIs:/ { uris = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") ok = 1 }
        /^$/ { if (ok && uris != "") { print uris; exit } ok = 0; uris = "" }
        END { if (ok && uris != "") print uris }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    if [[ -z $uri ]]; then
        uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
    fi
    [[ -n $uri ]] || die "no Debian bookworm source in this machine's apt configuration: set SWARM_LAB_MIRROR"
    printf '%s\n' "${uri%/}"
}

# ---------------------------------------------------------------------------
# mounts
# ---------------------------------------------------------------------------
# Unmount everything at or below DIR (deepest first), lazily if busy.
umount_below() {
    local dir=$1 t
    findmnt -n -l -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' |
        sort -r | while read -r t; do
        umount "$t" 2>/dev/null || umount -l "$t" || warn "cannot unmount $t"
    done
}

# Remove DIR, refusing while anything is mounted at or below it.
remove_tree() {
    local dir=$1
    [[ -e $dir ]] || return 0
    if findmnt -n -l -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' | grep -q .; then
        warn "not removing $dir: something is still mounted below it"
        return 1
    fi
    rm -rf --one-file-system "$dir"
}

# ---------------------------------------------------------------------------
# manifest: one resource per line, "KIND HOST VALUE..." (HOST "-" = global).
# A resource is recorded *before* it is created, so a crashed run leaves a
# manifest that names everything it may have made.
# ---------------------------------------------------------------------------
record() { printf '%s\n' "$*" >>"$MANIFEST"; }
recorded() { [[ -f $MANIFEST ]] && grep -qxF "$*" "$MANIFEST"; }

# Drop exactly one line (first exact match) from the manifest.
unrecord() {
    local line="$*" tmpf
    [[ -f $MANIFEST ]] || return 0
    tmpf=$MANIFEST.tmp
    awk -v l="$line" '!done && $0 == l { done = 1; next } { print }' "$MANIFEST" >"$tmpf"
    mv -f "$tmpf" "$MANIFEST"
}

# Whole manifest lines of KIND (and of HOST, if given).
entries() { # KIND [HOST]
    [[ -f $MANIFEST ]] || return 0
    awk -v k="$1" -v h="${2-}" '$1 == k && (h == "" || $2 == h)' "$MANIFEST"
}

# ---------------------------------------------------------------------------
# processes: a PID is "ours" only if its start time matches the recorded one
# ---------------------------------------------------------------------------
# Fields of /proc/PID/stat after "(comm)" (comm may hold spaces and parens):
# $1 = state (field 3), $20 = start time (field 22).
proc_stat() { # PID
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    printf '%s\n' "${stat##*) }"
}

proc_starttime() { # PID
    local f
    f=$(proc_stat "$1") || return 1
    awk '{ print $20 }' <<<"$f"
}

proc_alive() { # PID STARTTIME: same process as recorded, and not a zombie
    local f
    f=$(proc_stat "$1") || return 1
    awk -v st="$2" '$20 == st && $1 != "Z" { ok = 1 } END { exit !ok }' <<<"$f"
}

# Stop the recorded process PID (start time START): TERM, then KILL after SECONDS.
stop_proc() { # PID START SECONDS WHAT
    local pid=$1 st=$2 secs=$3 what=$4 i
    proc_alive "$pid" "$st" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        proc_alive "$pid" "$st" || return 0
        sleep 0.1
    done
    warn "$what (pid $pid) still running after ${secs}s, killing"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        proc_alive "$pid" "$st" || return 0
        sleep 0.1
    done
    return 1
}

# The script's header comment (from line 2 to `set -euo`), as its usage.
usage() {
    sed -n '2,/^set -euo/{/^#/!d;s/^# \{0,1\}//;p}' "$0"
}

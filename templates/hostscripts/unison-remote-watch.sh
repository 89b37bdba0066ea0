#!/bin/bash
# Installed by swarm: starts a sync when its remote root changes on the export host.
# Usage: unison-remote-watch UNIT SSH_ARGUMENT... The ssh arguments log in as the export's watch
# user, whose forced command (meshfs-watch) prints TOKEN when it starts watching and once per
# change; unison-watch coalesces them and starts UNIT. When the connection ends (ServerAlive
# notices a dead tunnel within 15 s) this exits with ssh's status and systemd starts it again.
set -euo pipefail
WATCH=/usr/local/lib/swarm/unison-watch
TOKEN=change
unit=$1
shift
# Only the token counts: nothing the export host sends can become an argument or a command here.
# A run waits a second after the last change, so that a mount's caches (sshfs's dcache_timeout=0
# and the kernel's 1 s attribute cache) no longer hold what the export host had before it.
ssh "$@" </dev/null | grep --line-buffered -x -F -e "$TOKEN" | SWARM_WATCH_SETTLE=1 "$WATCH" "$unit" -

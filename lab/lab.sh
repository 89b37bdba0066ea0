#!/usr/bin/env bash
# lab.sh — the swarm local lab: Debian bookworm hosts booted with
# systemd-nspawn, each in its own network namespace, joined by a bridge.
#
#   lab.sh preflight                    check this machine can run the lab
#   lab.sh image                        build (or reuse) the cached image; prints its path
#   lab.sh up [--device NAME=PATH]... NAME=ADDR [NAME=ADDR...]
#                                       boot hosts (idempotent; adds new ones); --device
#                                       gives host NAME the block device PATH (a disk of
#                                       the lab VM) under the same path, with /dev/zfs;
#                                       --no-kernel-wireguard NAME boots NAME as if its
#                                       kernel had no WireGuard module; --router NAME:
#                                       interfaces made on NAME forward (the hub of hub
#                                       routing; nspawn keeps /proc/sys/net read-only)
#   lab.sh status                       table: host, address, pid, running, ssh, state
#   lab.sh hosts                        machine-readable: NAME ADDR per line
#   lab.sh env                          shell-sourceable paths (key, known_hosts)
#   lab.sh ssh NAME [cmd...]            ssh root@host with the lab key
#   lab.sh down                         remove everything `up` made (idempotent)
#
# It runs inside the lab VM (lab/vm.sh boots it and calls this script there),
# except `image`, which vm.sh runs on the machine to build the host image.
#
# Environment: SWARM_LAB_CACHE (default /var/cache/swarm-lab),
# SWARM_LAB_STATE (default /var/lib/swarm-lab), SWARM_LAB_MIRROR (Debian
# mirror for debootstrap; default: the one this machine's apt uses),
# SWARM_LAB_IMAGE (a ready host image: `image` and `up` use it instead of
# building one), SWARM_LAB_BOOT_TIMEOUT (seconds, default 120).
#
# Progress lines ("==> ...") go to stderr; data (status table, hosts, env,
# ssh output) goes to stdout.
#
# Every resource `up` creates (bridge, netns, veth, cgroup, mount, process,
# directory) is written to $STATE/manifest *before* it is created (after
# checking that nothing of that name exists already), so `down` removes
# exactly those, even after a crashed `up`, and never anything else.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lab/common.sh
. "$LAB_DIR/common.sh"
CACHE=${SWARM_LAB_CACHE:-/var/cache/swarm-lab}
STATE=${SWARM_LAB_STATE:-/var/lib/swarm-lab}
BOOT_TIMEOUT=${SWARM_LAB_BOOT_TIMEOUT:-120}
STOP_TIMEOUT=30
SUITE=bookworm

BRIDGE=swlab0
BRIDGE_ADDR=10.231.0.1
SUBNET_PREFIX=10.231.0. # the lab is 10.231.0.0/24
# and fd31:a7c9:5e04::/64, a unique local prefix (RFC 4193) of its own: host 10.231.0.N has
# fd31:a7c9:5e04::N beside it, and a host given fd31:a7c9:5e04::N has that address only.
SUBNET6_PREFIX=fd31:a7c9:5e04::
BRIDGE_ADDR6=${SUBNET6_PREFIX}1
NETNS_PREFIX=swlab-
CGROUP_DIR=swarm-lab # per-host cgroups live in <hierarchy>/swarm-lab/NAME

MANIFEST=$STATE/manifest
HOSTS_DIR=$STATE/hosts
LOGS_DIR=$STATE/logs # console logs: kept by `down` for post-mortems
KEY=$STATE/id_ed25519
KNOWN_HOSTS=$STATE/known_hosts

PACKAGES_FILE=$LAB_DIR/image-packages.txt
CUSTOMISE_FILE=$LAB_DIR/image-customise.sh

export LC_ALL=C

# Paths end up in mount options and manifest lines: keep them simple.
case "$CACHE$STATE" in
*[[:space:],:]*) die "SWARM_LAB_CACHE/SWARM_LAB_STATE must not contain spaces, commas or colons" ;;
esac
[[ $CACHE == /* && $STATE == /* ]] || die "SWARM_LAB_CACHE and SWARM_LAB_STATE must be absolute paths"

# ---------------------------------------------------------------------------
# ssh
# ---------------------------------------------------------------------------
# -F /dev/null: the user's ~/.ssh/config must not change what the lab does.
SSH_OPTS=(
    -F /dev/null
    -i "$KEY"
    -o IdentitiesOnly=yes
    -o UserKnownHostsFile="$KNOWN_HOSTS"
    -o GlobalKnownHostsFile=/dev/null
    -o StrictHostKeyChecking=yes
    -o BatchMode=yes
    -o ConnectTimeout=5
    -o LogLevel=ERROR
)

lab_ssh() { # ADDR [cmd...]
    local addr=$1
    shift
    # shellcheck disable=SC2029 # the command is meant to run remotely as given
    ssh "${SSH_OPTS[@]}" "root@$addr" "$@"
}

# ---------------------------------------------------------------------------
# preflight
# ---------------------------------------------------------------------------
cmd_preflight() {
    local missing=0 c
    miss() {
        printf 'preflight: %s\n' "$*" >&2
        missing=1
    }
    [[ $(id -u) == 0 ]] || miss "not root (the lab creates network namespaces, mounts and containers)"
    for c in ip systemd-nspawn ssh ssh-keygen flock setsid findmnt mount umount mknod sha256sum timeout; do
        command -v "$c" >/dev/null || miss "command '$c' not found (the lab VM image installs it: see lab/vm-packages.txt)"
    done
    if command -v ip >/dev/null && ! ip netns list >/dev/null 2>&1; then
        miss "'ip netns list' fails: network namespaces unavailable"
    fi
    # The hosts share this kernel: what they need must be in it (lab/vm-customise.sh loads it at boot).
    [[ -c /dev/net/tun ]] || miss "/dev/net/tun missing (wireguard-go needs it; modprobe tun)"
    [[ -c /dev/fuse ]] || miss "/dev/fuse missing (sshfs needs it; modprobe fuse)"
    [[ -c /dev/autofs ]] || modprobe autofs4 2>/dev/null || true
    [[ -c /dev/autofs ]] || miss "/dev/autofs missing (automount units need it): this kernel has no autofs; run the lab in its VM (lab/vm.sh)"
    [[ -d /sys/module/wireguard ]] || modprobe wireguard 2>/dev/null || true
    [[ -d /sys/module/wireguard ]] || miss "no WireGuard in this kernel (modprobe wireguard): run the lab in its VM (lab/vm.sh)"
    # nftables for the hub's forward filter: loaded here, not left to the kernel's autoload from a container
    [[ -d /sys/module/nf_tables ]] || modprobe nf_tables 2>/dev/null || true
    [[ -d /sys/module/nf_tables ]] || miss "no nftables in this kernel (modprobe nf_tables): the hub of hub routing needs it"
    if ! grep -qw overlay /proc/filesystems; then
        modprobe overlay 2>/dev/null || true
        grep -qw overlay /proc/filesystems || miss "overlayfs not available (modprobe overlay)"
    fi
    [[ -n $(cgroup_hierarchies) ]] || miss "no usable cgroup hierarchy under /sys/fs/cgroup"
    [[ -n ${SWARM_LAB_IMAGE-} || ( -r $PACKAGES_FILE && -r $CUSTOMISE_FILE ) ]] || miss "$PACKAGES_FILE or $CUSTOMISE_FILE missing"
    ((missing == 0)) || return 1
    say "preflight ok"
}

# ---------------------------------------------------------------------------
# image
# ---------------------------------------------------------------------------
# All packages, as written (some prefixed "apt:").
image_packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$PACKAGES_FILE"; }
# Those debootstrap installs, and those apt-get installs afterwards.
debootstrap_packages() { image_packages | grep -v '^apt:' | paste -sd, -; }
apt_packages() { image_packages | sed -n 's/^apt://p'; }

image_hash() {
    {
        printf 'suite=%s variant=minbase components=main,contrib\n' "$SUITE"
        image_packages
        cat "$CUSTOMISE_FILE"
    } | sha256sum | cut -c1-16
}

cmd_image() {
    if [[ -n ${SWARM_LAB_IMAGE-} ]]; then
        [[ -d $SWARM_LAB_IMAGE/etc ]] || die "SWARM_LAB_IMAGE=$SWARM_LAB_IMAGE is not an image (no etc/)"
        printf '%s\n' "$SWARM_LAB_IMAGE"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "image: must run as root"
    command -v debootstrap >/dev/null || die "image: debootstrap not installed"
    local img hash tmp log rc=0 mirror
    hash=$(image_hash)
    img=$CACHE/image-$hash
    if [[ -d $img ]]; then
        say "image $img (cached)"
        printf '%s\n' "$img"
        return 0
    fi
    mkdir -p "$CACHE/debs"
    # one builder at a time; a second caller waits, then finds the image
    exec 8>>"$CACHE/.image.lock"
    flock -w 900 8 || die "image: timed out waiting for another image build"
    if [[ -d $img ]]; then
        exec 8<&-
        printf '%s\n' "$img"
        return 0
    fi
    tmp=$CACHE/.build-$hash.$$
    log=$CACHE/build-$hash.log
    mirror=$(default_mirror)
    say "building the lab host image (about two minutes): $img"
    say "  debootstrap $SUITE, log in $log"
    # debootstrap mounts /proc, /sys (and may bind /dev) inside the target and
    # can leave them mounted when it fails: unmount before removing anything.
    trap 'umount_below "$tmp"; rm -rf --one-file-system "$tmp"' EXIT
    debootstrap --variant=minbase --merged-usr --components=main,contrib \
        --include="$(debootstrap_packages)" \
        --cache-dir="$CACHE/debs" \
        "$SUITE" "$tmp" "$mirror" >"$log" 2>&1 || rc=$?
    umount_below "$tmp"
    if ((rc != 0)); then
        cat "$tmp/debootstrap/debootstrap.log" >>"$log" 2>/dev/null || true
        tail -n 30 "$log" >&2
        die "image: debootstrap failed (exit $rc), see $log"
    fi
    say "  customising (apt-get install: $(apt_packages | paste -sd' ' -))"
    mount -t proc proc "$tmp/proc"
    # shellcheck disable=SC2046 # one argument per package
    LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$tmp" /bin/sh -s -- $(apt_packages) <"$CUSTOMISE_FILE" >>"$log" 2>&1 || rc=$?
    umount_below "$tmp"
    if ((rc != 0)); then
        tail -n 30 "$log" >&2
        die "image: customisation failed (exit $rc), see $log"
    fi
    {
        printf 'hash=%s\nbuilt=%s\n' "$hash" "$(date -u +%FT%TZ)"
        # shellcheck disable=SC2016 # a dpkg-query format, not shell
        chroot "$tmp" dpkg-query -W -f '${Package}=${Version}\n'
    } >"$tmp/etc/swarm-lab-image"
    # atomic: an image directory either exists complete or not at all
    mv -T "$tmp" "$img"
    trap - EXIT
    exec 8<&-
    say "image ready: $img"
    printf '%s\n' "$img"
}

# ---------------------------------------------------------------------------
# manifest: one resource per line, "KIND HOST VALUE..." (HOST "-" = global)
# ---------------------------------------------------------------------------
hosts_in_manifest() { entries host | awk '{ print $2 }'; }
# every host name with any resource (a crashed `up` may not have written "host")
manifest_hosts() { [[ -f $MANIFEST ]] && awk '$2 != "-" && !seen[$2]++ { print $2 }' "$MANIFEST"; }
host_addr() { entries host "$1" | awk '{ print $3; exit }'; }

lock_state() {
    mkdir -p "$STATE"
    chmod 0700 "$STATE"
    exec 9<"$STATE"
    flock -w 600 9 || die "timed out waiting for another lab.sh on $STATE"
}

# ---------------------------------------------------------------------------
# processes: a PID is "ours" only if its start time matches the recorded one
# ---------------------------------------------------------------------------
host_pid() { entries pid "$1" | awk '{ print $3; exit }'; }

host_running() { # NAME
    local line
    line=$(entries pid "$1" | head -n1)
    [[ -n $line ]] || return 1
    # shellcheck disable=SC2086 # fields: pid NAME PID START
    set -- $line
    proc_alive "$3" "$4"
}

# ---------------------------------------------------------------------------
# cgroups: each host gets its own cgroup so that two containers never share
# one (nspawn --keep-unit uses the caller's cgroup as the container's), and
# so that `down` can find and kill every process of a host even if nspawn
# itself died.
# ---------------------------------------------------------------------------
cgroup_hierarchies() {
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
        echo /sys/fs/cgroup # unified (cgroup v2 only)
    else
        # hybrid / legacy: systemd's own hierarchy, plus the unified one if any
        [[ -d /sys/fs/cgroup/systemd ]] && echo /sys/fs/cgroup/systemd
        [[ -f /sys/fs/cgroup/unified/cgroup.procs ]] && echo /sys/fs/cgroup/unified
    fi
    return 0
}

cgroup_procs() { # DIR -> all PIDs in DIR and below
    [[ -d $1 ]] || return 0
    find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------
ensure_key() {
    [[ -f $KEY ]] && return 0
    record file - "$KEY"
    record file - "$KEY.pub"
    ssh-keygen -q -t ed25519 -N '' -C swarm-lab-admin -f "$KEY"
    chmod 0600 "$KEY"
}

ensure_bridge() {
    if entries bridge - | grep -q .; then
        ip link show "$BRIDGE" >/dev/null 2>&1 || die "bridge $BRIDGE is in the manifest but gone; run lab.sh down first"
        return 0
    fi
    ip link show "$BRIDGE" >/dev/null 2>&1 &&
        die "a bridge $BRIDGE exists that this lab did not create; not touching it"
    [[ -z $(ip -o -4 addr show to "${SUBNET_PREFIX}0/24") ]] ||
        die "an interface already has an address in ${SUBNET_PREFIX}0/24; not creating $BRIDGE"
    [[ -z $(ip -o -6 addr show to "${SUBNET6_PREFIX}/64") ]] ||
        die "an interface already has an address in ${SUBNET6_PREFIX}/64; not creating $BRIDGE"
    say "creating bridge $BRIDGE ${BRIDGE_ADDR}/24 ${BRIDGE_ADDR6}/64"
    record bridge - "$BRIDGE"
    ip link add "$BRIDGE" type bridge
    # If br_netfilter is loaded, bridged lab traffic would go through the
    # host's iptables FORWARD chain (e.g. Docker's DROP policy): opt this
    # bridge (only) out.
    ip link set "$BRIDGE" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0 2>/dev/null || true
    ip addr add "${BRIDGE_ADDR}/24" dev "$BRIDGE"
    # nodad: no host of the lab can hold the address, and the 1-2 s of duplicate address detection
    # would only delay the first connection.
    ip -6 addr add "${BRIDGE_ADDR6}/64" dev "$BRIDGE" nodad
    ip link set "$BRIDGE" up
}

# The number N of a lab address, 10.231.0.N or fd31:a7c9:5e04::N; 0 when it is neither.
addr_number() { # ADDR
    if [[ $1 =~ ^10\.231\.0\.([1-9][0-9]{0,2})$ ]] || [[ $1 =~ ^fd31:a7c9:5e04::([1-9][0-9]{0,2})$ ]]; then
        echo "${BASH_REMATCH[1]}"
    else
        echo 0
    fi
}

veth_name() { printf 'swl%s\n' "$(printf '%s' "$1" | sha256sum | cut -c1-10)"; }

new_machine_id() { tr -d '-' </proc/sys/kernel/random/uuid; }

# The nspawn arguments that give a host block device PATH (a disk of the VM)
# under the same path, and /dev/zfs. Its partitions, which a pool created on
# the whole disk adds (zpool waits for udev to link them), appear in the
# host as they do in the VM: /dev/disk and udev's database are the VM's,
# read-only, and nodes for the disk and each partition it can have are
# made in advance (virtio disks have 16 minors: the disk and 15 partitions).
device_args() { # NAME PATH...
    local name=$1 path real major minor i nodes=$HOSTS_DIR/$1/dev
    shift
    install -d -m 0755 "$nodes"
    for path in "$@"; do
        real=$(readlink -f "$path")
        [[ -b $real ]] || die "$name: device $path is not a block device in the VM"
        major=$((16#$(stat -c %t "$real")))
        minor=$((16#$(stat -c %T "$real")))
        ((minor % 16 == 0)) || die "$name: device $path is not a whole virtio disk"
        for ((i = 0; i < 16; i++)); do
            local node=${real##*/}
            ((i == 0)) || node+=$i
            [[ -e $nodes/$node ]] || mknod -m 0660 "$nodes/$node" b "$major" $((minor + i))
            printf -- '--bind=%s:/dev/%s\n' "$nodes/$node" "$node"
        done
    done
    printf -- '--bind-ro=/dev/disk\n--bind-ro=/run/udev\n--bind=/dev/zfs\n'
}

# A host that sees the kernel as one without WireGuard, the case wireguard-go
# is for (the kernel is shared, and has the module): no /sys/module, and an
# `ip` that fails `ip link add ... type wireguard` as such a kernel does, in
# place of /usr/bin/ip (wg-quick puts its own directory first on PATH).
# wg-quick then falls back to WG_QUICK_USERSPACE_IMPLEMENTATION. The modules
# of OpenZFS stay visible (libzfs looks for /sys/module/zfs before it opens
# /dev/zfs), so such a host can still keep a pool. Prints the nspawn arguments.
without_kernel_wireguard() { # MERGED_ROOT
    install -d -m 0755 "$1/usr/local/lib/swarm-lab"
    cp -p "$1/usr/bin/ip" "$1/usr/local/lib/swarm-lab/ip"
    cat >"$1/usr/bin/ip.swarm-lab" <<'IP'
#!/bin/sh
# swarm lab: this host's kernel is to look as if it had no WireGuard module.
if [ "${1-}" = link ] && [ "${2-}" = add ]; then
    for arg in "$@"; do
        if [ "$arg" = wireguard ]; then
            echo "Error: Unknown device type." >&2
            exit 2
        fi
    done
fi
exec /usr/local/lib/swarm-lab/ip "$@"
IP
    chmod 0755 "$1/usr/bin/ip.swarm-lab"
    mv -f "$1/usr/bin/ip.swarm-lab" "$1/usr/bin/ip"
    printf -- '--tmpfs=/sys/module\n'
    # nspawn mounts in the order of their paths: these go on top of the tmpfs.
    local module
    for module in spl zfs; do
        [[ ! -d /sys/module/$module ]] || printf -- '--bind-ro=/sys/module/%s\n' "$module"
    done
}

# Create everything for one host and start it. Prints nothing on stdout.
create_host() { # NAME ADDR IMAGE [DEVICE...]
    local name=$1 addr=$2 img=$3
    shift 3
    local ns=$NETNS_PREFIX$name veth dir merged h cg pid st
    veth=$(veth_name "$name")
    dir=$HOSTS_DIR/$name
    merged=$dir/merged

    [[ ! -e /run/netns/$ns ]] || die "$name: netns $ns exists but is not in the manifest; not touching it"
    ! ip link show "$veth" >/dev/null 2>&1 || die "$name: link $veth exists but is not in the manifest"
    [[ ! -e $dir ]] || die "$name: $dir exists but is not in the manifest"

    say "$name: creating $ns, $veth, overlay root"
    record host "$name" "$addr"

    record dir "$name" "$dir"
    mkdir -p "$dir/upper" "$dir/work" "$merged"

    mkdir -p "$LOGS_DIR"
    : >"$LOGS_DIR/$name.console.log"

    # `ip netns add` creates /run/netns and bind-mounts it onto itself the
    # first time: undo that too when the lab is down (if nobody else uses it).
    if ! mountpoint -q /run/netns 2>/dev/null && ! entries netnsroot - | grep -q .; then
        if [[ -e /run/netns ]]; then record netnsroot - existed; else record netnsroot - created; fi
    fi
    record netns "$name" "$ns"
    ip netns add "$ns"
    record veth "$name" "$veth"
    # The host end joins the bridge; the other end becomes eth0 in the netns.
    # No default route: lab hosts reach the lab subnet and nothing else.
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    if [[ $addr == *:* ]]; then
        # Reached over IPv6 only: no IPv4 address at all, so nothing can reach it another way.
        ip -n "$ns" -6 addr add "$addr/64" dev eth0 nodad
    else
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" -6 addr add "${SUBNET6_PREFIX}$(addr_number "$addr")/64" dev eth0 nodad
    fi
    ip -n "$ns" link set eth0 up
    if [[ $ROUTERS == *" $name "* ]]; then
        # nspawn mounts /proc/sys/net read-only in a namespace it did not make
        # itself, so a router's forwarding is set here, as a real host lets the
        # hub script set it: interfaces made later (wg0) forward, and send no
        # ICMP redirects. The hub script finds them set and leaves them. IPv6
        # forwards only with all.forwarding on (for a dual-stack mesh), and
        # accept_ra 2 is what the hub script would set beside it.
        ip netns exec "$ns" sysctl -q -w net.ipv4.conf.default.forwarding=1 \
            net.ipv4.conf.default.send_redirects=0 \
            net.ipv6.conf.default.accept_ra=2 net.ipv6.conf.all.accept_ra=2 \
            net.ipv6.conf.all.forwarding=1
    fi

    record mount "$name" "$merged"
    mount -t overlay "swarm-lab-$name" \
        -o "lowerdir=$img,upperdir=$dir/upper,workdir=$dir/work" "$merged"

    # Identity, written through the overlay (so directory modes are copied up
    # correctly, e.g. /root stays 0700).
    printf '%s\n' "$name" >"$merged/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        "$name" >"$merged/etc/hosts"
    new_machine_id >"$merged/etc/machine-id"
    ssh-keygen -q -A -f "$merged" >/dev/null
    install -d -m 0700 "$merged/root/.ssh"
    install -m 0600 "$KEY.pub" "$merged/root/.ssh/authorized_keys"
    # Each SSH login of a user with no other session starts that user's systemd manager
    # (pam_systemd) and stops it 10 s after the last one ends: microseconds on a real host, but
    # about 4 s of the VM's emulated CPU per login, and the suite, the engine, sshfs and the
    # replica's sender log in thousands of times. A lab host keeps a manager once started.
    install -d -m 0755 "$merged/etc/systemd/logind.conf.d"
    printf '[Login]\nUserStopDelaySec=infinity\n' >"$merged/etc/systemd/logind.conf.d/swarm-lab.conf"

    # Extra nspawn arguments of this host, one per line, read by its supervisor.
    : >"$dir/nspawn-args"
    if (($# > 0)); then
        [[ -c /dev/zfs ]] || die "$name: has devices but the kernel has no /dev/zfs (modprobe zfs)"
        # What zfsutils-linux's udev rule (90-zfs.rules: MODE="0666") does on a real host, which the
        # VM, without zfsutils, lacks: ZFS checks delegated permissions (zfs allow) itself, so
        # unprivileged users such as a replica's receiver may open the device.
        chmod 0666 /dev/zfs
        device_args "$name" "$@" >"$dir/nspawn-args"
    fi
    if [[ $NO_KERNEL_WIREGUARD == *" $name "* ]]; then
        without_kernel_wireguard "$merged" >>"$dir/nspawn-args"
    fi

    for h in $(cgroup_hierarchies); do
        if [[ ! -d $h/$CGROUP_DIR ]]; then
            record cgroup - "$h/$CGROUP_DIR"
            mkdir "$h/$CGROUP_DIR"
        fi
        cg=$h/$CGROUP_DIR/$name
        [[ ! -d $cg ]] || die "$name: cgroup $cg exists but is not in the manifest"
        record cgroup "$name" "$cg"
        mkdir "$cg"
    done

    # nspawn keeps per-machine state in /run/systemd/nspawn, and cannot
    # remove it when /run is not a tmpfs (as on these machines).
    if [[ ! -e /run/systemd/nspawn ]]; then
        recorded dir - /run/systemd/nspawn || record dir - /run/systemd/nspawn
    elif [[ ! -e /run/systemd/nspawn/propagate/$name ]]; then
        record dir "$name" "/run/systemd/nspawn/propagate/$name"
    fi

    say "$name: booting ($addr), log in $LOGS_DIR/$name.console.log"
    # The subshell moves itself into the host's cgroups, drops the state lock
    # (fd 9) and becomes the host's supervisor (`lab.sh _boot NAME`, see
    # cmd_boot) in a new session: $! is the supervisor's PID.
    (
        for h in $(cgroup_hierarchies); do
            echo "$BASHPID" >"$h/$CGROUP_DIR/$name/cgroup.procs"
        done
        exec 9<&-
        exec setsid "$LAB_DIR/lab.sh" _boot "$name" </dev/null >>"$LOGS_DIR/$name.console.log" 2>&1
    ) &
    pid=$!
    # the start time makes the PID unambiguous for `down`, even after reuse
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        st=$(proc_starttime "$pid") && break
        sleep 0.1
    done
    [[ -n ${st-} ]] || die "$name: supervisor exited immediately, see $LOGS_DIR/$name.console.log"
    record pid "$name" "$pid" "$st"
}

# The supervisor of one host (runs in the host's cgroups, output to its
# console.log): boots it with systemd-nspawn and boots it again when the host
# reboots (nspawn exits 133 on a reboot), so that reboot tests work. SIGTERM
# is passed on to nspawn, which turns it into an orderly poweroff of the
# container (SIGRTMIN+3 to its systemd).
cmd_boot() {
    local name=$1 child='' stopping=0 rc
    local merged=$HOSTS_DIR/$name/merged ns=$NETNS_PREFIX$name
    local -a extra=()
    mapfile -t extra <"$HOSTS_DIR/$name/nspawn-args"
    trap 'stopping=1; [[ -z $child ]] || kill -TERM "$child" 2>/dev/null || true' TERM INT HUP
    while :; do
        # --register=no --keep-unit: there is no system bus / machined here.
        # --capability=CAP_NET_ADMIN: nspawn drops it even with a network
        #   namespace of our own; wireguard-go needs it for the TUN device.
        # --bind=/dev/...: TUN for wireguard-go, FUSE for sshfs, autofs for
        #   .automount units; a host with a disk also gets it (device_args).
        # --resolv-conf/--timezone/--link-journal: leave the image's files
        #   alone and keep nothing of the host's in the container.
        systemd-nspawn \
            --register=no --keep-unit \
            --boot \
            --directory="$merged" \
            --machine="$name" \
            --network-namespace-path="/run/netns/$ns" \
            --capability=CAP_NET_ADMIN \
            --bind=/dev/net/tun \
            --bind=/dev/fuse \
            --bind=/dev/autofs \
            --resolv-conf=off \
            --timezone=off \
            --link-journal=no \
            --console=read-only \
            "${extra[@]}" \
            </dev/null &
        child=$!
        rc=0
        wait "$child" || rc=$?
        # `wait` returns early when a trapped signal arrives: wait again
        while kill -0 "$child" 2>/dev/null; do
            rc=0
            wait "$child" || rc=$?
        done
        child=''
        if ((rc == 133 && !stopping)); then
            printf '==> %s: rebooting\n' "$name"
            continue
        fi
        printf '==> %s: systemd-nspawn exited with %s\n' "$name" "$rc"
        exit "$rc"
    done
}

# Rebuild known_hosts from the host keys generated for every host.
write_known_hosts() {
    local name addr f tmpf=$KNOWN_HOSTS.tmp
    : >"$tmpf"
    for name in $(hosts_in_manifest); do
        addr=$(host_addr "$name")
        for f in "$HOSTS_DIR/$name"/upper/etc/ssh/ssh_host_*_key.pub; do
            [[ -f $f ]] || continue
            awk -v h="$addr" '{ print h, $1, $2 }' "$f" >>"$tmpf"
        done
    done
    recorded file - "$KNOWN_HOSTS" || record file - "$KNOWN_HOSTS"
    mv -f "$tmpf" "$KNOWN_HOSTS"
}

# Wait until every named host answers ssh and has finished booting.
wait_hosts() { # DEADLINE NAME...
    local deadline=$1 name addr state failed=0 now last
    shift
    for name in "$@"; do
        addr=$(host_addr "$name")
        last=0
        # 1. sshd is up
        while ! lab_ssh "$addr" true 2>/dev/null; do
            host_running "$name" || {
                tail -n 20 "$LOGS_DIR/$name.console.log" >&2
                die "$name: systemd-nspawn exited, see $LOGS_DIR/$name.console.log"
            }
            now=$(date +%s)
            if ((now >= deadline)); then
                warn "$name: ssh to $addr not up after ${BOOT_TIMEOUT}s"
                failed=1
                continue 2
            fi
            if ((now - last >= 10)); then
                say "$name: waiting for ssh on $addr ($((BOOT_TIMEOUT - (deadline - now)))s)"
                last=$now
            fi
            sleep 1
        done
        # 2. boot finished
        now=$(date +%s)
        state=$(timeout $((deadline > now ? deadline - now : 1)) \
            ssh "${SSH_OPTS[@]}" "root@$addr" systemctl is-system-running --wait 2>/dev/null) || true
        case $state in
        running) say "$name: up ($addr): running" ;;
        degraded)
            say "$name: up ($addr): degraded; failed units:"
            lab_ssh "$addr" systemctl --failed --no-legend --plain >&2 || true
            ;;
        *)
            warn "$name: system state '${state:-timeout}' after ${BOOT_TIMEOUT}s"
            lab_ssh "$addr" systemctl list-jobs --no-legend >&2 || true
            failed=1
            ;;
        esac
    done
    return "$failed"
}

cmd_up() {
    local arg name addr img deadline n seen=" " addrs=" "
    local -a new=() hosts=() devices=()
    NO_KERNEL_WIREGUARD=" "
    ROUTERS=" "
    while (($# > 0)); do
        if [[ $1 == --device ]]; then
            if (($# < 2)) || [[ $2 != *=/dev/* ]]; then
                die "up: --device needs NAME=/dev/PATH"
            fi
            devices+=("$2")
            shift 2
        elif [[ $1 == --no-kernel-wireguard ]]; then
            (($# >= 2)) || die "up: --no-kernel-wireguard needs a host name"
            NO_KERNEL_WIREGUARD+="$2 "
            shift 2
        elif [[ $1 == --router ]]; then
            (($# >= 2)) || die "up: --router needs a host name"
            ROUTERS+="$2 "
            shift 2
        else
            hosts+=("$1")
            shift
        fi
    done
    ((${#hosts[@]} > 0)) || die "usage: lab.sh up [--device NAME=PATH]... [--no-kernel-wireguard NAME]... [--router NAME]... NAME=ADDR [NAME=ADDR ...]"
    set -- "${hosts[@]}"
    cmd_preflight
    for arg in "$@"; do
        [[ $arg == *=* ]] || die "up: '$arg' is not NAME=ADDR"
        name=${arg%%=*}
        addr=${arg#*=}
        [[ $name =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]] ||
            die "up: host name '$name' must be lowercase letters, digits and '-' (max 32)"
        n=$(addr_number "$addr")
        ((n >= 2 && n <= 254)) ||
            die "up: address '$addr' for $name must be in ${SUBNET_PREFIX}2-254 or ${SUBNET6_PREFIX}2-254"
        [[ $seen != *" $name "* ]] || die "up: host $name given twice"
        # 10.231.0.N and fd31:a7c9:5e04::N are one host's.
        [[ $addrs != *" $n "* ]] || die "up: address $addr given twice (10.231.0.$n and ${SUBNET6_PREFIX}$n are one host's)"
        seen+="$name "
        addrs+="$n "
    done

    img=$(cmd_image)
    lock_state
    ensure_key
    ensure_bridge

    for arg in "$@"; do
        name=${arg%%=*}
        addr=${arg#*=}
        local other
        for other in $(hosts_in_manifest); do
            [[ $other != "$name" && $(addr_number "$(host_addr "$other")") == "$(addr_number "$addr")" ]] &&
                die "up: $addr is already used by lab host $other ($(host_addr "$other"))"
        done
        if host_running "$name"; then
            [[ $(host_addr "$name") == "$addr" ]] ||
                die "up: $name is running with address $(host_addr "$name"), not $addr (lab.sh down first)"
            say "$name: already running ($addr, pid $(host_pid "$name"))"
            continue
        fi
        if awk -v h="$name" '$2 == h { found = 1 } END { exit !found }' "$MANIFEST" 2>/dev/null; then
            say "$name: leftovers of a stopped host, removing them"
            down_host "$name" || die "$name: could not remove leftovers"
        fi
        local -a mine=()
        local device
        for device in "${devices[@]}"; do
            [[ ${device%%=*} != "$name" ]] || mine+=("${device#*=}")
        done
        create_host "$name" "$addr" "$img" "${mine[@]}"
        new+=("$name")
    done
    write_known_hosts
    ((${#new[@]} > 0)) || {
        say "nothing to boot"
        return 0
    }
    deadline=$(($(date +%s) + BOOT_TIMEOUT))
    wait_hosts "$deadline" "${new[@]}" || die "up: some hosts did not come up (lab.sh status; lab.sh down cleans up)"
    say "lab up: ${new[*]}"
}

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------
# Stop a host's processes; does not touch the manifest (runs in parallel).
stop_host_procs() { # NAME
    local name=$1 line pid st i cg procs
    while read -r line; do
        [[ -n $line ]] || continue
        # shellcheck disable=SC2086 # fields: pid NAME PID START
        set -- $line
        pid=$3 st=$4
        if proc_alive "$pid" "$st"; then
            # nspawn turns SIGTERM into SIGRTMIN+3 for the container's
            # systemd: an orderly poweroff.
            say "$name: stopping (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
                proc_alive "$pid" "$st" || break
                sleep 0.1
            done
            if proc_alive "$pid" "$st"; then
                warn "$name: still running after ${STOP_TIMEOUT}s, killing"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    done < <(entries pid "$name")
    # Anything left in the host's cgroups (e.g. the container's processes
    # after nspawn was SIGKILLed) is the host's, and nothing else is.
    for ((i = 0; i < 50; i++)); do
        procs=$(entries cgroup "$name" | while read -r _ _ cg; do cgroup_procs "$cg"; done)
        [[ -n $procs ]] || break
        # shellcheck disable=SC2086 # a list of PIDs
        kill -KILL $procs 2>/dev/null || true
        sleep 0.1
    done
    [[ -z ${procs-} ]] || warn "$name: processes left in its cgroups: $procs"
}

down_host() { # NAME
    local name=$1 rc=0 line kind value
    stop_host_procs "$name"
    # reverse order of creation
    while read -r line; do
        [[ -n $line ]] || continue
        kind=${line%% *}
        value=${line#* * }
        case $kind in
        mount)
            umount_below "$value"
            if findmnt -n -l -o TARGET | grep -qxF "$value"; then
                rc=1
                continue
            fi
            ;;
        veth)
            if ip link show "$value" >/dev/null 2>&1; then
                ip link del "$value" || {
                    rc=1
                    continue
                }
            fi
            ;;
        netns)
            if [[ -e /run/netns/$value ]]; then
                ip netns del "$value" || {
                    rc=1
                    continue
                }
            fi
            ;;
        cgroup)
            if [[ -d $value ]]; then
                find "$value" -depth -type d -exec rmdir {} + 2>/dev/null || true
                [[ ! -d $value ]] || {
                    warn "$name: cannot remove cgroup $value"
                    rc=1
                    continue
                }
            fi
            ;;
        dir)
            remove_tree "$value" || {
                rc=1
                continue
            }
            ;;
        pid)
            # shellcheck disable=SC2086 # fields: pid NAME PID START
            set -- $line
            if proc_alive "$3" "$4"; then
                warn "$name: pid $3 is still alive"
                rc=1
                continue
            fi
            ;;
        host) ;;
        *) warn "unknown manifest entry: $line" ;;
        esac
        unrecord "$line"
    done < <(awk -v h="$name" '$2 == h' "$MANIFEST" | tac)
    return "$rc"
}

cmd_down() {
    [[ $(id -u) == 0 ]] || die "down: must run as root"
    [[ -d $STATE ]] || {
        say "nothing to do ($STATE does not exist)"
        return 0
    }
    lock_state
    [[ -f $MANIFEST ]] || {
        say "nothing to do (no manifest)"
        return 0
    }
    local rc=0 name line kind value
    # stop all hosts in parallel (each stop may take a few seconds)
    local -a pids=()
    for name in $(manifest_hosts); do
        stop_host_procs "$name" &
        pids+=($!)
    done
    for line in "${pids[@]}"; do wait "$line" || rc=1; done
    for name in $(manifest_hosts); do
        down_host "$name" || rc=1
    done
    while read -r line; do
        [[ -n $line ]] || continue
        kind=${line%% *}
        value=${line#* * }
        case $kind in
        bridge)
            if ip link show "$value" >/dev/null 2>&1; then
                ip link del "$value" || {
                    rc=1
                    continue
                }
            fi
            ;;
        cgroup)
            [[ ! -d $value ]] || rmdir "$value" 2>/dev/null || {
                warn "cannot remove cgroup $value"
                rc=1
                continue
            }
            ;;
        file) rm -f "$value" ;;
        netnsroot)
            # only if no network namespace at all is left in it
            if [[ -z $(ls -A /run/netns 2>/dev/null) ]]; then
                ! mountpoint -q /run/netns || umount /run/netns || {
                    rc=1
                    continue
                }
                [[ $value != created ]] || rmdir /run/netns 2>/dev/null || true
            fi
            ;;
        dir)
            remove_tree "$value" || {
                rc=1
                continue
            }
            ;;
        *) warn "unknown manifest entry: $line" ;;
        esac
        unrecord "$line"
    done < <(awk '$2 == "-"' "$MANIFEST" | tac)
    if [[ -s $MANIFEST ]]; then
        warn "down: some resources could not be removed; they stay in $MANIFEST:"
        cat "$MANIFEST" >&2
        return 1
    fi
    rm -f "$MANIFEST"
    rmdir "$HOSTS_DIR" 2>/dev/null || true
    ((rc == 0)) || return 1
    say "lab down"
}

# ---------------------------------------------------------------------------
# status, hosts, env, ssh, clean
# ---------------------------------------------------------------------------
cmd_status() {
    local name addr pid running sshok state out rc
    printf '%-16s %-13s %-8s %-8s %-6s %s\n' HOST ADDRESS PID RUNNING SSH STATE
    for name in $(hosts_in_manifest); do
        addr=$(host_addr "$name")
        pid=$(host_pid "$name")
        running=no sshok=no state=-
        if host_running "$name"; then
            running=yes
            rc=0
            out=$(ssh "${SSH_OPTS[@]}" -o ConnectTimeout=3 "root@$addr" systemctl is-system-running 2>/dev/null) || rc=$?
            if ((rc != 255)); then
                sshok=yes
                state=${out:-unknown}
            fi
        fi
        printf '%-16s %-13s %-8s %-8s %-6s %s\n' "$name" "$addr" "${pid:--}" "$running" "$sshok" "$state"
    done
}

cmd_hosts() {
    local name
    for name in $(hosts_in_manifest); do
        printf '%s %s\n' "$name" "$(host_addr "$name")"
    done
}

cmd_env() {
    printf 'SWARM_LAB_STATE=%s\nSWARM_LAB_CACHE=%s\nSWARM_LAB_KEY=%s\nSWARM_LAB_KNOWN_HOSTS=%s\n' \
        "$STATE" "$CACHE" "$KEY" "$KNOWN_HOSTS"
}

cmd_ssh() {
    (($# >= 1)) || die "usage: lab.sh ssh NAME [cmd...]"
    local name=$1 addr
    shift
    addr=$(host_addr "$name")
    [[ -n $addr ]] || die "ssh: no lab host named '$name'"
    # arguments are joined by ssh itself, exactly like `ssh host cmd...`
    exec ssh "${SSH_OPTS[@]}" "root@$addr" "$@"
}

main() {
    local cmd=${1-}
    (($# > 0)) && shift
    case $cmd in
    preflight) cmd_preflight ;;
    image) cmd_image ;;
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    hosts) cmd_hosts ;;
    env) cmd_env ;;
    ssh) cmd_ssh "$@" ;;
    _boot) cmd_boot "$@" ;; # internal: the per-host supervisor
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"

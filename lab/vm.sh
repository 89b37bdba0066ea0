#!/usr/bin/env bash
# vm.sh — the swarm lab's VM. The lab hosts (lab.sh: systemd-nspawn
# containers, each in its own network namespace) run inside one qemu VM that
# boots Debian's stock kernel, so the lab has kernel WireGuard, autofs and
# OpenZFS whatever the kernel of this machine lacks. This script runs on the
# machine; lab.sh runs inside the VM.
#
#   vm.sh preflight                   check this machine can run the lab VM
#   vm.sh image                       build (or reuse) the cached VM and host images
#   vm.sh up [--disk HOST=SERIAL]... [--no-kernel-wireguard HOST]... [--router HOST]... NAME=ADDR...
#                                     boot the VM if needed, then the lab hosts in it;
#                                     --disk gives HOST a virtual disk, seen there as
#                                     /dev/disk/by-id/virtio-SERIAL (boot-time only);
#                                     --no-kernel-wireguard boots HOST as if its kernel
#                                     had no WireGuard (wg-quick falls back to wireguard-go);
#                                     --router HOST: interfaces made on HOST forward (the
#                                     hub of hub routing)
#   vm.sh status                      the VM, then one line per lab host
#   vm.sh console [LINES]             the last LINES (default 60) the VM's kernel wrote to
#                                     its console: a lockup or panic, even when the VM no
#                                     longer answers
#   vm.sh hosts                       machine-readable: NAME ADDR per line
#   vm.sh env                         shell-sourceable paths (key, known_hosts, ssh config)
#   vm.sh ssh NAME [cmd...]           ssh root@host through the VM, host keys pinned
#   vm.sh vm [cmd...]                 ssh root@ the VM itself
#   vm.sh down                        stop the VM and remove everything `up` made
#   vm.sh clean                       down, then remove the image caches
#
# Environment: SWARM_LAB_CACHE (default /var/cache/swarm-lab), SWARM_LAB_STATE
# (default /var/lib/swarm-lab), SWARM_LAB_MIRROR (Debian mirror for the
# builds; default: the one this machine's apt uses), SWARM_LAB_VM_MEMORY (MiB,
# default 4096), SWARM_LAB_VM_CPUS (default: this machine's cores, at most 4),
# SWARM_LAB_VM_BOOT_TIMEOUT (seconds, default 300).
#
# The VM's only network is qemu's user-mode network with restrict=on: it
# reaches nothing, and the machine reaches its sshd through one forward on
# 127.0.0.1. Every ssh connection, to the VM and through it to the lab hosts,
# checks a pinned host key. The VM's root disk is a throwaway overlay of the
# cached image; `down` deletes it with the VM.
#
# Progress lines ("==> ...") go to stderr; data goes to stdout.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lab/common.sh
. "$LAB_DIR/common.sh"

CACHE=${SWARM_LAB_CACHE:-/var/cache/swarm-lab}
STATE=${SWARM_LAB_STATE:-/var/lib/swarm-lab}
VM_MEMORY=${SWARM_LAB_VM_MEMORY:-4096}
# The VM's kernel prints warnings too (loglevel=5, not quiet): a soft lockup's backtrace is
# printed at that level, and with softlockup_all_cpu_backtrace every CPU's, so a VM that
# stops answering leaves on its console where it stopped (vm.sh console). panic=-1 with
# qemu's -no-reboot: a guest that panics stops.
VM_CMDLINE="root=LABEL=swlab-vm rw console=ttyS0 loglevel=5 systemd.show_status=error softlockup_all_cpu_backtrace=1 net.ifnames=0 panic=-1"
VM_CPUS=${SWARM_LAB_VM_CPUS:-$(($(nproc) > 4 ? 4 : $(nproc)))}
BOOT_TIMEOUT=${SWARM_LAB_VM_BOOT_TIMEOUT:-300}
SUITE=bookworm

VM_DIR=$STATE/vm
MANIFEST=$STATE/manifest
SSH_CONFIG=$STATE/ssh_config
KEY=$STATE/id_ed25519 # the lab hosts' admin key, copied out of the VM
KNOWN_HOSTS=$STATE/known_hosts
HOSTS_FILE=$STATE/hosts
LOGS_DIR=$CACHE/logs # consoles of the last lab, kept for post-mortems; replaced by the next up

# Inside the VM
IN_VM=/opt/swarm-lab
VM_IMAGE_MOUNT=/var/lib/swarm-lab-image
IMAGE_SERIAL=swarm-lab-image
POOL_DISK_SIZE=4G # sparse: only what the pool writes takes room
LAB_FILES=(lab.sh common.sh image-packages.txt image-customise.sh)

VM_PACKAGES=$LAB_DIR/vm-packages.txt
VM_CUSTOMISE=$LAB_DIR/vm-customise.sh

export LC_ALL=C

case "$CACHE$STATE" in
*[[:space:],:]*) die "SWARM_LAB_CACHE/SWARM_LAB_STATE must not contain spaces, commas or colons" ;;
esac
[[ $CACHE == /* && $STATE == /* ]] || die "SWARM_LAB_CACHE and SWARM_LAB_STATE must be absolute paths"

seconds_since() { echo $(($(date +%s) - $1)); }

# ---------------------------------------------------------------------------
# preflight
# ---------------------------------------------------------------------------
cmd_preflight() {
    local missing=0 c
    miss() {
        printf 'preflight: %s\n' "$*" >&2
        missing=1
    }
    [[ $(id -u) == 0 ]] || miss "not root (the lab builds images with debootstrap and chroot)"
    for c in qemu-system-x86_64 qemu-img debootstrap mkfs.ext4 ssh ssh-keygen flock findmnt chroot sha256sum truncate; do
        command -v "$c" >/dev/null || miss "command '$c' not found (apt-get install -y \$(sed 's/#.*//' lab/packages.txt))"
    done
    if command -v qemu-system-x86_64 >/dev/null && ! qemu-system-x86_64 -accel help 2>/dev/null | grep -qx tcg; then
        miss "qemu-system-x86_64 cannot emulate (no tcg accelerator): the lab VM cannot run on this machine"
    fi
    [[ -r $VM_PACKAGES && -r $VM_CUSTOMISE ]] || miss "$VM_PACKAGES or $VM_CUSTOMISE missing"
    ((missing == 0)) || return 1
    say "preflight ok"
}

# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------
vm_packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$VM_PACKAGES"; }

vm_hash() {
    {
        printf 'suite=%s variant=minbase components=main,contrib\n' "$SUITE"
        vm_packages
        cat "$VM_CUSTOMISE"
    } | sha256sum | cut -c1-16
}

# The host image (built natively by lab.sh), packed into an ext4 disk the VM mounts read-only.
host_image_disk() {
    local img disk tmp started
    img=$(bash "$LAB_DIR/lab.sh" image)
    disk=$img.ext4
    if [[ -f $disk ]]; then
        printf '%s\n' "$disk"
        return 0
    fi
    started=$(date +%s)
    tmp=$disk.tmp.$$
    # 3G sparse: the image is about 0.5 GB; the rest is never written (read-only).
    mkfs.ext4 -q -F -L swlab-image -d "$img" "$tmp" 3G >/dev/null
    mv -f "$tmp" "$disk"
    say "host image packed into $disk ($(seconds_since "$started")s)"
    printf '%s\n' "$disk"
}

# Build the VM image: debootstrap, the kernel, zfs-dkms (the long part),
# keys, packed into an ext4 disk. Prints the image directory.
build_vm_image() { # OUT
    local out=$1 tmp tree log rc=0 started t kernel
    tmp=$CACHE/.vm-build.$$
    tree=$tmp/tree
    log=$CACHE/vm-build-${out##*/vm-}.log
    started=$(date +%s)
    mkdir -p "$tree" "$CACHE/debs" "$CACHE/vm-apt"
    # shellcheck disable=SC2064 # expand now: the trap must clean this build's tree
    trap "umount_below '$tree'; rm -rf --one-file-system '$tmp'" EXIT
    say "building the lab VM image (5 to 10 min, most of it compiling the OpenZFS module), log in $log"
    t=$(date +%s)
    debootstrap --variant=minbase --merged-usr --components=main,contrib \
        --include="$(vm_packages | grep -v '^apt:' | paste -sd, -)" \
        --cache-dir="$CACHE/debs" \
        "$SUITE" "$tree" "$(default_mirror)" >"$log" 2>&1 || rc=$?
    umount_below "$tree"
    if ((rc != 0)); then
        cat "$tree/debootstrap/debootstrap.log" >>"$log" 2>/dev/null || true
        tail -n 30 "$log" >&2
        die "vm image: debootstrap failed (exit $rc), see $log"
    fi
    say "  debootstrap $(seconds_since "$t")s"
    t=$(date +%s)
    cp /etc/resolv.conf "$tree/etc/resolv.conf"
    mount -t proc proc "$tree/proc"
    mount -t sysfs sysfs "$tree/sys"
    mount --bind /dev "$tree/dev"
    mount --bind /dev/pts "$tree/dev/pts"
    # The .debs of the kernel, headers and compilers, kept between builds.
    mount --bind "$CACHE/vm-apt" "$tree/var/cache/apt/archives"
    # shellcheck disable=SC2046 # one argument per package
    LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$tree" /bin/sh -s -- $(vm_packages | sed -n 's/^apt://p') <"$VM_CUSTOMISE" >>"$log" 2>&1 || rc=$?
    umount_below "$tree"
    if ((rc != 0)); then
        tail -n 30 "$log" >&2
        die "vm image: customisation failed (exit $rc), see $log"
    fi
    : >"$tree/etc/resolv.conf"
    say "  kernel, OpenZFS module and configuration $(seconds_since "$t")s"
    t=$(date +%s)
    mkdir -p "$tmp/out"
    kernel=$(readlink "$tree/vmlinuz")
    cp "$tree/${kernel}" "$tmp/out/vmlinuz"
    cp "$tree/$(readlink "$tree/initrd.img")" "$tmp/out/initrd.img"
    # Keys of this image: its sshd's host key (pinned by the harness) and the
    # key the harness logs in with. The VM listens on loopback only.
    ssh-keygen -q -t ed25519 -N '' -C swarm-lab-vm -f "$tree/etc/ssh/ssh_host_ed25519_key"
    ssh-keygen -q -t ed25519 -N '' -C swarm-lab-harness -f "$tmp/out/id_ed25519"
    install -d -m 0700 "$tree/root/.ssh"
    install -m 0600 "$tmp/out/id_ed25519.pub" "$tree/root/.ssh/authorized_keys"
    awk '{ print "swarm-lab-vm", $1, $2 }' "$tree/etc/ssh/ssh_host_ed25519_key.pub" >"$tmp/out/known_hosts"
    {
        printf 'hash=%s\nkernel=%s\nbuilt=%s\n' "${out##*/vm-}" "${kernel#boot/vmlinuz-}" "$(date -u +%FT%TZ)"
        # shellcheck disable=SC2016 # a dpkg-query format, not shell
        chroot "$tree" dpkg-query -W -f '${Package}=${Version}\n'
    } >"$tmp/out/packages"
    # 8G sparse: the root of a VM that holds overlays of up to a few lab hosts.
    mkfs.ext4 -q -F -L swlab-vm -d "$tree" "$tmp/out/disk.img" 8G >/dev/null
    say "  keys and disk $(seconds_since "$t")s"
    mv -T "$tmp/out" "$out"
    rm -rf --one-file-system "$tmp"
    trap - EXIT
    say "lab VM image ready in $(seconds_since "$started")s: $out"
}

vm_image() {
    local out
    out=$CACHE/vm-$(vm_hash)
    if [[ -d $out ]]; then
        printf '%s\n' "$out"
        return 0
    fi
    mkdir -p "$CACHE"
    # one builder at a time; a second caller waits, then finds the image
    exec 8>>"$CACHE/.vm-image.lock"
    flock -w 3600 8 || die "image: timed out waiting for another image build"
    [[ -d $out ]] || build_vm_image "$out"
    exec 8<&-
    printf '%s\n' "$out"
}

# Remove images of other hashes (older inputs), unless a running VM may use them.
prune_images() { # VM_IMAGE HOST_IMAGE_DISK
    local keep_vm=$1 keep_host=${2%.ext4} d
    [[ -f $MANIFEST ]] && return 0
    for d in "$CACHE"/vm-* "$CACHE"/image-* "$CACHE"/build-*.log; do
        [[ -e $d && ${d##*/} =~ ^(vm|image|vm-build|build)-([0-9a-f]{16})(\.ext4|\.log)?$ ]] || continue
        [[ ${BASH_REMATCH[2]} != "${keep_vm##*-}" && ${BASH_REMATCH[2]} != "${keep_host##*-}" ]] || continue
        say "removing $d (built from older inputs)"
        umount_below "$d"
        rm -rf --one-file-system "$d"
    done
}

cmd_image() {
    [[ $(id -u) == 0 ]] || die "image: must run as root"
    local vmimg hostdisk
    vmimg=$(vm_image)
    hostdisk=$(host_image_disk)
    prune_images "$vmimg" "$hostdisk"
    printf '%s\n%s\n' "$vmimg" "$hostdisk"
}

# ---------------------------------------------------------------------------
# ssh
# ---------------------------------------------------------------------------
# One config for every connection: the VM by alias (its key pinned under that
# name, whatever the forwarded port), the lab hosts through it. The VM
# connection is shared (ControlMaster) so that a lab command costs one
# handshake, with the lab host, not two.
write_ssh_config() { # PORT VM_IMAGE
    local port=$1 vmimg=$2
    recorded file - "$SSH_CONFIG" || record file - "$SSH_CONFIG"
    cat >"$SSH_CONFIG" <<CONF
# written by lab/vm.sh up; removed by lab/vm.sh down
Host swarm-lab-vm
  HostName 127.0.0.1
  Port $port
  User root
  IdentityFile $vmimg/id_ed25519
  UserKnownHostsFile $vmimg/known_hosts
  HostKeyAlias swarm-lab-vm
  ControlMaster no
  ControlPath $VM_DIR/ssh-master
  ServerAliveInterval 15
  ServerAliveCountMax 4

Host 10.231.0.* fd31:a7c9:5e04:*
  User root
  IdentityFile $KEY
  UserKnownHostsFile $KNOWN_HOSTS
  ProxyJump swarm-lab-vm

Host *
  IdentitiesOnly yes
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 30
  LogLevel ERROR
CONF
}

vm_ssh() { # [cmd...]: on the VM, as root
    # shellcheck disable=SC2029 # the command is meant to run remotely as given
    ssh -F "$SSH_CONFIG" swarm-lab-vm "$@" 9<&-
}

# Runs lab.sh inside the VM with ARGS.
vm_lab() {
    vm_ssh "SWARM_LAB_IMAGE=$VM_IMAGE_MOUNT bash $IN_VM/lab.sh $(printf '%q ' "$@")"
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------
lock_state() {
    mkdir -p "$STATE"
    chmod 0700 "$STATE"
    exec 9<"$STATE"
    flock -w 600 9 || die "timed out waiting for another vm.sh on $STATE"
}

vm_running() {
    local line
    line=$(entries pid vm | head -n1)
    [[ -n $line ]] || return 1
    # shellcheck disable=SC2086 # fields: pid vm PID START
    set -- $line
    proc_alive "$3" "$4"
}

free_port() {
    local port i
    for ((i = 0; i < 50; i++)); do
        port=$((20000 + RANDOM % 40000))
        if [[ -z $(ss -Htln "sport = :$port" 2>/dev/null) ]]; then
            echo "$port"
            return 0
        fi
    done
    die "no free TCP port found on 127.0.0.1"
}

boot_vm() { # VM_IMAGE HOST_IMAGE_DISK SERIAL...
    local vmimg=$1 hostdisk=$2 serial port pid st started now last=0 state
    shift 2
    local -a drives=()
    started=$(date +%s)
    recorded dir - "$VM_DIR" || record dir - "$VM_DIR"
    mkdir -p "$VM_DIR" "$LOGS_DIR"
    record file - "$VM_DIR/root.qcow2"
    qemu-img create -q -f qcow2 -b "$vmimg/disk.img" -F raw "$VM_DIR/root.qcow2"
    for serial in "$@"; do
        record disk - "$serial" "$VM_DIR/disk-$serial.img"
        truncate -s "$POOL_DISK_SIZE" "$VM_DIR/disk-$serial.img"
        drives+=(-drive "file=$VM_DIR/disk-$serial.img,if=none,id=disk-$serial,format=raw,cache=unsafe"
            -device "virtio-blk-pci,drive=disk-$serial,serial=$serial")
    done
    port=$(free_port)
    write_ssh_config "$port" "$vmimg"
    : >"$LOGS_DIR/vm.console.log"
    : >"$LOGS_DIR/vm.qemu.log"
    : >"$LOGS_DIR/vm.ssh-master.log"
    record pidfile - "$VM_DIR/qemu.pid"
    say "VM: booting ($VM_CPUS CPUs, ${VM_MEMORY} MiB, TCG emulation; console in $LOGS_DIR/vm.console.log)"
    # -no-reboot: a guest that reboots or panics stops, and the harness sees it.
    qemu-system-x86_64 \
        -name swarm-lab-vm -nodefaults \
        -accel tcg,thread=multi -cpu max -smp "$VM_CPUS" -m "$VM_MEMORY" \
        -kernel "$vmimg/vmlinuz" -initrd "$vmimg/initrd.img" \
        -append "$VM_CMDLINE" \
        -drive "file=$VM_DIR/root.qcow2,if=none,id=root,format=qcow2,cache=unsafe" \
        -device virtio-blk-pci,drive=root \
        -drive "file=$hostdisk,if=none,id=image,format=raw,readonly=on" \
        -device "virtio-blk-pci,drive=image,serial=$IMAGE_SERIAL" \
        "${drives[@]}" \
        -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" \
        -device virtio-net-pci,netdev=n0 \
        -display none -monitor none -serial "file:$LOGS_DIR/vm.console.log" \
        -no-reboot -daemonize -pidfile "$VM_DIR/qemu.pid" \
        </dev/null >>"$LOGS_DIR/vm.qemu.log" 2>&1 9<&- ||
        die "VM: qemu failed to start: $(tail -n 5 "$LOGS_DIR/vm.qemu.log")"
    pid=$(cat "$VM_DIR/qemu.pid")
    st=$(proc_starttime "$pid") || die "VM: qemu exited at once, see $LOGS_DIR/vm.qemu.log"
    record pid vm "$pid" "$st"
    # sshd answers, then the boot finishes
    while ! ssh -F "$SSH_CONFIG" -o ConnectTimeout=5 swarm-lab-vm true 2>/dev/null 9<&-; do
        proc_alive "$pid" "$st" || {
            tail -n 30 "$LOGS_DIR/vm.console.log" >&2
            die "VM: qemu exited during boot, see $LOGS_DIR/vm.console.log"
        }
        now=$(date +%s)
        ((now - started < BOOT_TIMEOUT)) || {
            tail -n 30 "$LOGS_DIR/vm.console.log" >&2
            die "VM: no ssh after ${BOOT_TIMEOUT}s, see $LOGS_DIR/vm.console.log"
        }
        if ((now - last >= 15)); then
            say "VM: waiting for ssh ($((now - started))s)"
            last=$now
        fi
        sleep 1
    done
    state=$(timeout "$BOOT_TIMEOUT" ssh -F "$SSH_CONFIG" swarm-lab-vm systemctl is-system-running --wait 9<&-) || true
    if [[ $state != running ]]; then
        ssh -F "$SSH_CONFIG" swarm-lab-vm systemctl --failed --no-legend --plain >&2 9<&- || true
        die "VM: booted to '$state', not running"
    fi
    # The shared connection: started detached, its stdio closed, so that
    # nothing waiting on this script's output waits on it.
    ssh -F "$SSH_CONFIG" -o ControlMaster=yes -o ControlPersist=yes -f -N swarm-lab-vm \
        </dev/null >/dev/null 2>>"$LOGS_DIR/vm.ssh-master.log" 9<&-
    pid=$(ssh -F "$SSH_CONFIG" -O check swarm-lab-vm 2>&1 | sed -n 's/.*pid=\([0-9]*\).*/\1/p')
    if [[ -n $pid ]] && st=$(proc_starttime "$pid"); then
        record pid master "$pid" "$st"
    fi
    vm_ssh "uname -r; test -c /dev/autofs; test -c /dev/zfs; test -d /sys/module/wireguard" >/dev/null ||
        die "VM: the kernel lacks autofs, OpenZFS or WireGuard (see $LOGS_DIR/vm.console.log)"
    say "VM: up in $(seconds_since "$started")s (kernel $(vm_ssh uname -r), ssh on 127.0.0.1:$port)"
}

# Copy the lab's scripts into the VM and mount the host image there.
prepare_vm() {
    tar -C "$LAB_DIR" -cf - "${LAB_FILES[@]}" |
        vm_ssh "rm -rf $IN_VM && mkdir -p $IN_VM && tar -C $IN_VM -xf -"
    vm_ssh "mountpoint -q $VM_IMAGE_MOUNT || { mkdir -p $VM_IMAGE_MOUNT && mount -o ro /dev/disk/by-id/virtio-$IMAGE_SERIAL $VM_IMAGE_MOUNT; }"
}

# The lab hosts' admin key, their pinned host keys and their addresses, from the VM.
fetch_lab_identity() {
    local f
    for f in "$KEY" "$KNOWN_HOSTS" "$HOSTS_FILE"; do
        recorded file - "$f" || record file - "$f"
    done
    (umask 077 && vm_ssh cat /var/lib/swarm-lab/id_ed25519 >"$KEY.tmp") && mv -f "$KEY.tmp" "$KEY"
    vm_ssh cat /var/lib/swarm-lab/known_hosts >"$KNOWN_HOSTS.tmp" && mv -f "$KNOWN_HOSTS.tmp" "$KNOWN_HOSTS"
    vm_lab hosts >"$HOSTS_FILE.tmp" && mv -f "$HOSTS_FILE.tmp" "$HOSTS_FILE"
}

cmd_up() {
    local arg host serial vmimg hostdisk started
    local -a labargs=() serials=()
    started=$(date +%s)
    while (($# > 0)); do
        case $1 in
        --disk)
            (($# >= 2)) || die "up: --disk needs HOST=SERIAL"
            arg=$2
            shift 2
            [[ $arg =~ ^([a-z0-9-]+)=([A-Za-z0-9_-]{1,20})$ ]] ||
                die "up: --disk '$arg' is not HOST=SERIAL (a serial is at most 20 letters, digits, '-' or '_')"
            host=${BASH_REMATCH[1]} serial=${BASH_REMATCH[2]}
            [[ " ${serials[*]} " != *" $serial "* ]] || die "up: disk serial $serial given twice"
            serials+=("$serial")
            labargs+=(--device "$host=/dev/disk/by-id/virtio-$serial")
            ;;
        --no-kernel-wireguard | --router)
            (($# >= 2)) || die "up: $1 needs a host name"
            labargs+=("$1" "$2")
            shift 2
            ;;
        *)
            labargs+=("$1")
            shift
            ;;
        esac
    done
    cmd_preflight
    vmimg=$(vm_image)
    hostdisk=$(host_image_disk)
    lock_state
    if vm_running; then
        for serial in "${serials[@]}"; do
            entries disk - | awk -v s="$serial" '$3 == s { f = 1 } END { exit !f }' ||
                die "up: disk $serial is not attached to the running VM: disks are given at boot (vm.sh down, then up)"
        done
        say "VM: already running (pid $(entries pid vm | awk '{ print $3; exit }'))"
    else
        if [[ -s $MANIFEST ]]; then
            say "VM: leftovers of a stopped lab, removing them"
            down_all || die "could not remove the leftovers of a stopped lab"
            lock_state
        fi
        boot_vm "$vmimg" "$hostdisk" "${serials[@]}"
    fi
    prepare_vm
    vm_lab up "${labargs[@]}"
    fetch_lab_identity
    say "lab up in $(seconds_since "$started")s"
}

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------
down_all() {
    local rc=0 line kind pid value
    [[ -f $MANIFEST ]] || return 0
    # The hosts' consoles live in the VM: keep a copy for post-mortems.
    if vm_running && [[ -d $LOGS_DIR ]]; then
        timeout 30 ssh -F "$SSH_CONFIG" swarm-lab-vm 'tar -C /var/lib/swarm-lab/logs -cf - . 2>/dev/null' 9<&- |
            tar -C "$LOGS_DIR" -xf - 2>/dev/null || true
    fi
    while read -r line; do
        [[ -n $line ]] || continue
        # shellcheck disable=SC2086 # fields: KIND HOST VALUE...
        set -- $line
        kind=$1
        case $kind in
        pid)
            stop_proc "$3" "$4" 10 "$2" || {
                rc=1
                continue
            }
            ;;
        pidfile)
            # qemu wrote it: stop that PID only if it is this lab's qemu
            if [[ -f $3 ]] && pid=$(cat "$3") && [[ $pid =~ ^[0-9]+$ ]] &&
                tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$VM_DIR/root.qcow2"; then
                stop_proc "$pid" "$(proc_starttime "$pid")" 10 qemu || {
                    rc=1
                    continue
                }
            fi
            rm -f "$3"
            ;;
        disk) rm -f "$4" ;;
        file) rm -f "$3" ;;
        dir)
            value=$3
            remove_tree "$value" || {
                rc=1
                continue
            }
            ;;
        *) warn "unknown manifest entry: $line" ;;
        esac
        unrecord "$line"
    done < <(tac "$MANIFEST")
    if [[ -s $MANIFEST ]]; then
        warn "down: some resources could not be removed; they stay in $MANIFEST:"
        cat "$MANIFEST" >&2
        return 1
    fi
    rm -f "$MANIFEST"
    return "$rc"
}

cmd_down() {
    [[ $(id -u) == 0 ]] || die "down: must run as root"
    [[ -d $STATE ]] || {
        say "nothing to do ($STATE does not exist)"
        return 0
    }
    lock_state
    local started
    started=$(date +%s)
    [[ -f $MANIFEST ]] || {
        say "nothing to do (no manifest)"
        return 0
    }
    down_all || return 1
    rmdir "$STATE" 2>/dev/null || true
    say "lab down in $(seconds_since "$started")s"
}

# ---------------------------------------------------------------------------
# status, hosts, env, ssh, clean
# ---------------------------------------------------------------------------
host_addr() { awk -v h="$1" '$1 == h { print $2; exit }' "$HOSTS_FILE" 2>/dev/null; }

cmd_status() {
    if ! vm_running; then
        printf 'VM: not running\n'
        return 0
    fi
    local pid
    pid=$(entries pid vm | awk '{ print $3; exit }')
    # Bounded by timeout too: over the shared connection ConnectTimeout does not apply.
    if ! timeout 30 ssh -F "$SSH_CONFIG" -o ConnectTimeout=20 swarm-lab-vm true 2>/dev/null 9<&-; then
        printf 'VM: running, pid %s, but its sshd does not answer; the last of its console:\n' "$pid"
        cmd_console 40 | sed 's/^/VM console: /'
        return 1
    fi
    printf 'VM: running, pid %s, kernel %s\n' "$pid" "$(vm_ssh uname -r)"
    # Load, memory and the kernel's latest warnings: what a slow or failing lab host is
    # measured against.
    # shellcheck disable=SC2016 # expanded in the VM
    vm_ssh 'read -r one five fifteen _ </proc/loadavg
        printf "VM: load %s %s %s, " "$one" "$five" "$fifteen"
        free -m | awk '\''$1 == "Mem:" { printf "memory %s of %s MiB used, %s available\n", $3, $2, $7 }'\'''
    vm_ssh dmesg --level=emerg,alert,crit,err,warn | without_kernel_noise | tail -n 8 | sed 's/^/VM kernel: /'
    vm_lab status
}

# The console keeps what the kernel printed at warning level and above (loglevel=5), so a
# soft lockup's or an oops's backtrace is there, and every CPU's on a lockup.
cmd_console() {
    local lines=${1:-60}
    [[ $lines =~ ^[0-9]+$ ]] || die "usage: vm.sh console [LINES]"
    [[ -s $LOGS_DIR/vm.console.log ]] || {
        printf 'VM console: empty (%s)\n' "$LOGS_DIR/vm.console.log"
        return 0
    }
    # The serial console ends lines with CR LF.
    tr -d '\r' <"$LOGS_DIR/vm.console.log" | without_kernel_noise | tail -n "$lines"
}

# Drops the lines of the VM's kernel log that carry nothing: blank ones, and what its kernel always
# prints and is no fault here (it has no wireless regulatory database, nor any firmware, to load).
# Succeeds when it drops every line too.
without_kernel_noise() {
    grep -v -e '^[[:space:]]*$' -e regulatory -e 'Direct firmware load' -e 'wiki.debian.org/Firmware' || true
}

cmd_hosts() { [[ ! -f $HOSTS_FILE ]] || cat "$HOSTS_FILE"; }

cmd_env() {
    printf 'SWARM_LAB_STATE=%s\nSWARM_LAB_CACHE=%s\nSWARM_LAB_KEY=%s\nSWARM_LAB_KNOWN_HOSTS=%s\nSWARM_LAB_SSH_CONFIG=%s\n' \
        "$STATE" "$CACHE" "$KEY" "$KNOWN_HOSTS" "$SSH_CONFIG"
}

cmd_ssh() {
    (($# >= 1)) || die "usage: vm.sh ssh NAME [cmd...]"
    local name=$1 addr
    shift
    addr=$(host_addr "$name")
    [[ -n $addr ]] || die "ssh: no lab host named '$name' (vm.sh hosts lists them)"
    exec ssh -F "$SSH_CONFIG" "root@$addr" "$@"
}

cmd_vm() {
    vm_running || die "vm: the lab VM is not running (npm run lab -- up)"
    exec ssh -F "$SSH_CONFIG" swarm-lab-vm "$@"
}

cmd_clean() {
    cmd_down
    [[ -d $CACHE ]] || return 0
    umount_below "$CACHE"
    remove_tree "$CACHE"
    say "cache removed: $CACHE"
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
    console) cmd_console "$@" ;;
    hosts) cmd_hosts ;;
    env) cmd_env ;;
    ssh) cmd_ssh "$@" ;;
    vm) cmd_vm "$@" ;;
    clean) cmd_clean ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"

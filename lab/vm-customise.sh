#!/bin/sh
# Runs once inside the freshly debootstrapped lab VM tree (chroot, with /proc,
# /sys and /dev mounted), as root, with the `apt:` packages of
# vm-packages.txt as arguments. Its text is part of the VM image hash.
set -eu

# --- packages: the kernel and its headers, then zfs-dkms --------------------
# no service may start inside the build chroot
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
for pkg in "$@"; do
    # one at a time: DKMS builds zfs for the kernels whose headers are installed
    apt-get install -q -y --no-install-recommends "$pkg"
done
rm -f /usr/sbin/policy-rc.d

kernel=$(find /lib/modules -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n1)
[ -n "$kernel" ] || { echo "no kernel installed under /lib/modules" >&2; exit 1; }
if ! find "/lib/modules/$kernel" -name 'zfs.ko*' | grep -q .; then
    echo "zfs-dkms built no module for $kernel; see /var/lib/dkms/zfs/*/build/make.log" >&2
    exit 1
fi
depmod "$kernel"
ln -sf "boot/vmlinuz-$kernel" /vmlinuz
ln -sf "boot/initrd.img-$kernel" /initrd.img

# --- kernel modules the lab needs, loaded at boot --------------------------
cat >/etc/modules-load.d/swarm-lab.conf <<'CONF'
# the lab hosts share this kernel: load what they cannot load themselves
autofs4
fuse
tun
overlay
veth
bridge
wireguard
zfs
CONF
# Every lab pool lives in this one kernel: keep its cache small.
echo 'options zfs zfs_arc_max=268435456' >/etc/modprobe.d/swarm-lab-zfs.conf

# --- disks ------------------------------------------------------------------
# The root is a throwaway overlay of the cached image (see vm.sh).
printf 'LABEL=swlab-vm / ext4 rw,errors=remount-ro 0 1\n' >/etc/fstab

# --- network: the user-mode network's DHCP, and nothing else ---------------
mkdir -p /etc/systemd/network
cat >/etc/systemd/network/10-uplink.network <<'CONF'
[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no
CONF
systemctl enable systemd-networkd.service
systemctl disable systemd-networkd-wait-online.service 2>/dev/null || true
: >/etc/resolv.conf

# --- sshd: root by key only -------------------------------------------------
rm -f /etc/ssh/ssh_host_*
cat >/etc/ssh/sshd_config.d/10-swarm-lab-vm.conf <<'CONF'
# swarm lab VM: root by public key only; the harness jumps through it to the lab hosts
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
AllowTcpForwarding yes
MaxSessions 100
MaxStartups 100:30:200
CONF
sed -i 's/^AcceptEnv/#AcceptEnv/' /etc/ssh/sshd_config
systemctl enable ssh.service
systemctl disable ssh.socket 2>/dev/null || true

# --- quiet, quick boots -----------------------------------------------------
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer dkms.service; do
    systemctl disable "$unit" 2>/dev/null || true
done
systemctl mask systemd-timesyncd.service 2>/dev/null || true

# --- identity ---------------------------------------------------------------
echo swarm-lab-vm >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tswarm-lab-vm\n' >/etc/hosts
echo 'LANG=C.UTF-8' >/etc/default/locale
# A fixed machine-id: an empty one would make every boot a first boot, which
# applies the unit presets (enabling what this image disables).
tr -d '-' </proc/sys/kernel/random/uuid >/etc/machine-id

# --- size -------------------------------------------------------------------
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log

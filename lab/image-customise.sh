#!/bin/sh
# Runs once inside the freshly debootstrapped image (chroot), as root.
# Everything here is the same for every lab host; per-host identity (hostname,
# machine-id, SSH host keys, admin key) is written by lab.sh at `up` time into
# each host's overlay upper dir. Its text is part of the image hash.
set -eu

# --- packages debootstrap cannot install (arguments) ------------------------
if [ $# -gt 0 ]; then
    # no service may start inside the build chroot
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -q -y --no-install-recommends "$@"
    rm -f /usr/sbin/policy-rc.d
fi

# --- sshd: keys per host, root by key only --------------------------------
# Host keys are generated per host by lab.sh (into the overlay upper dir), so
# no two lab hosts share a key and known_hosts can be written from them.
rm -f /etc/ssh/ssh_host_*
cat > /etc/ssh/sshd_config.d/10-swarm-lab.conf <<'CONF'
# swarm lab: root by public key only, like the production hosts
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
CONF
# The client's LANG/LC_* would name locales the image does not have.
sed -i 's/^AcceptEnv/#AcceptEnv/' /etc/ssh/sshd_config
systemctl enable ssh.service
# socket activation would hide a broken sshd until the first connection
systemctl disable ssh.socket 2>/dev/null || true

# --- OpenZFS ----------------------------------------------------------------
# Every lab host has the tools; only a host given a disk (and /dev/zfs) by
# lab.sh has a pool. Debian enables the import and mount units, as on a real
# host: on the others they would fail without /dev/zfs, so they wait for it.
for unit in zfs-import-cache zfs-import-scan zfs-mount zfs-share zfs-volume-wait; do
    mkdir -p "/etc/systemd/system/$unit.service.d"
    printf '[Unit]\nConditionPathExists=/dev/zfs\n' >"/etc/systemd/system/$unit.service.d/swarm-lab.conf"
done
# The module is the VM kernel's, loaded before any host boots; a container
# cannot load modules (nor wait for udev, which this unit requires).
systemctl mask zfs-load-module.service

# --- identity: filled per host --------------------------------------------
# An empty machine-id in the image; lab.sh writes a fresh one per host.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -s /etc/machine-id /var/lib/dbus/machine-id
echo localhost > /etc/hostname

# --- environment ------------------------------------------------------------
# No locales package: C.UTF-8 is built into glibc.
echo 'LANG=C.UTF-8' > /etc/default/locale
# Lab hosts have no route out of the lab; resolve nothing but /etc/hosts.
: > /etc/resolv.conf

# --- size -----------------------------------------------------------------
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log

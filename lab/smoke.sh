#!/usr/bin/env bash
# Smoke test of the lab primitives the product relies on, by hand, through
# `lab.sh ssh` only: a wireguard-go tunnel anchor<->satellite (wg-quick@wg0 +
# drop-in, `wg syncconf`), zfs-fuse on anchor (pool, dataset, property),
# an sshfs .mount/.automount pair on satellite over the tunnel.
# Needs a lab with anchor=10.231.0.11 and satellite=10.231.0.12 freshly up:
#   lab/lab.sh up anchor=10.231.0.11 satellite=10.231.0.12 && lab/smoke.sh; lab/lab.sh down
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
L=lab/lab.sh
wgsetup() { # HOST
  $L ssh "$1" 'umask 077; mkdir -p /etc/wireguard; wg genkey > /etc/wireguard/private.key; wg pubkey < /etc/wireguard/private.key > /etc/wireguard/public.key'
}
wgsetup anchor; wgsetup satellite
AP=$($L ssh anchor cat /etc/wireguard/public.key); SP=$($L ssh satellite cat /etc/wireguard/public.key)
conf() { printf '[Interface]\nAddress = %s/24\nListenPort = 51820\nPrivateKey = %s\n\n[Peer]\nPublicKey = %s\nEndpoint = %s:51820\nAllowedIPs = %s/32\nPersistentKeepalive = 25\n' "$@"; }
conf 10.8.0.1 "$($L ssh anchor cat /etc/wireguard/private.key)" "$SP" 10.231.0.12 10.8.0.2 | $L ssh anchor 'umask 077; cat > /etc/wireguard/wg0.conf'
conf 10.8.0.2 "$($L ssh satellite cat /etc/wireguard/private.key)" "$AP" 10.231.0.11 10.8.0.1 | $L ssh satellite 'umask 077; cat > /etc/wireguard/wg0.conf'
for h in anchor satellite; do
  $L ssh $h 'mkdir -p /etc/systemd/system/wg-quick@wg0.service.d && printf "[Service]\nEnvironment=WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go\n" > /etc/systemd/system/wg-quick@wg0.service.d/userspace.conf && systemctl daemon-reload && systemctl enable --now wg-quick@wg0 2>/dev/null && systemctl is-active wg-quick@wg0'
done
$L ssh anchor 'ping -c2 -W2 10.8.0.2 | tail -1'
$L ssh anchor 'wg syncconf wg0 <(wg-quick strip wg0) && echo syncconf ok'
# zfs on anchor: the daemon from a unit (the packaged one fails in a container)
# shellcheck disable=SC2016 # expanded by the remote shell
$L ssh anchor 'cat > /etc/systemd/system/zfs-fuse.service <<"EOF"
[Unit]
Description=ZFS on FUSE daemon
Documentation=man:zfs-fuse(8)
After=local-fs.target
[Service]
Type=simple
ExecStart=/usr/sbin/zfs-fuse --no-daemon
ExecStartPost=/bin/sh -c "i=0; until zpool list >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.2; done; zfs mount -a"
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl enable --now zfs-fuse.service 2>/dev/null
truncate -s 512M /var/lib/tank.img && zpool create -m none tank /var/lib/tank.img && zfs create -o mountpoint=/tank/meshfs/state -p tank/meshfs/state && zfs set compression=on tank/meshfs/state && echo hello > /tank/meshfs/state/sentinel && zfs list -H -o name,mountpoint,mounted,compression'
# sshfs + automount on satellite (no After= on the .automount: ordering cycle)
$L ssh satellite 'umask 077; ssh-keygen -q -t ed25519 -N "" -C satellite-meshfs -f /root/.ssh/meshfs_ed25519; ssh-keyscan -T 5 -t ed25519 10.8.0.1 2>/dev/null | sed "s/^10.8.0.1/anchor-mesh/" > /root/.ssh/meshfs_known_hosts'
PUB=$($L ssh satellite cat /root/.ssh/meshfs_ed25519.pub)
$L ssh anchor "echo 'restrict,from=\"10.8.0.2\",command=\"internal-sftp\" $PUB' >> /root/.ssh/authorized_keys"
$L ssh satellite 'cat > /etc/systemd/system/mnt-meshfs.mount <<"EOF"
[Unit]
Description=meshfs from anchor over WireGuard (sshfs)
After=wg-quick@wg0.service
Requires=wg-quick@wg0.service
[Mount]
What=root@10.8.0.1:/tank/meshfs/state
Where=/mnt/meshfs
Type=fuse.sshfs
Options=_netdev,reconnect,ServerAliveInterval=15,ServerAliveCountMax=3,BatchMode=yes,IdentityFile=/root/.ssh/meshfs_ed25519,UserKnownHostsFile=/root/.ssh/meshfs_known_hosts,StrictHostKeyChecking=yes,HostKeyAlias=anchor-mesh,allow_other,default_permissions
TimeoutSec=30
EOF
cat > /etc/systemd/system/mnt-meshfs.automount <<"EOF"
[Unit]
Description=automount meshfs
[Automount]
Where=/mnt/meshfs
TimeoutIdleSec=600
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl enable --now mnt-meshfs.automount 2>/dev/null && cat /mnt/meshfs/sentinel && findmnt -R /mnt/meshfs -o TARGET,FSTYPE'
echo VERIFY OK

# shellcheck shell=bash
# shellcheck disable=SC2154 # swarm_host: the bootstrap sets it before these functions run
# swarm_wait_unlocked TIMEOUT PATH...: waits until no process holds a lock on any PATH.
# apt takes fcntl locks; /proc/locks lists every lock by device:inode, so this
# needs neither fuser nor lsof.
swarm_wait_unlocked() {
  local timeout=$1 waited=0 path inode held
  shift
  while :; do
    held=
    for path in "$@"; do
      [ -e "$path" ] || continue
      inode=$(stat -c %i "$path")
      if grep -Eq "^[0-9]+: .* [0-9a-f]+:[0-9a-f]+:$inode " /proc/locks; then
        held=$path
        break
      fi
    done
    [ -z "$held" ] && return 0
    if [ "$waited" -ge "$timeout" ]; then
      echo "swarm: $swarm_host: $held is still locked after $timeout s: another apt or dpkg run holds it; let it finish (or stop it), then run pulumi up again" >&2
      return 1
    fi
    if [ "$waited" -eq 0 ]; then
      echo "swarm: $swarm_host: waiting for $held, held by another apt or dpkg run"
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

# swarm_missing_packages PACKAGE...: prints the ones dpkg does not have installed, one a line.
swarm_missing_packages() {
  local pkg
  for pkg in "$@"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
      printf '%s\n' "$pkg"
    fi
  done
}

# swarm_enable_contrib APT_DIR: zfsutils-linux lives in Debian's contrib
# component, which Debian cloud images leave out. Adds contrib next to main on
# every Debian source (one-line and deb822) that lacks it; other sources stay as they are.
swarm_enable_contrib() {
  local dir=$1 file tmp
  for file in "$dir"/sources.list "$dir"/sources.list.d/*.list "$dir"/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    grep -q 'debian' "$file" || continue
    tmp=$(mktemp "$file.swarm.XXXXXX")
    case "$file" in
    *.sources)
      sed -E '/^Components:/{/[[:space:]]contrib([[:space:]]|$)/!s/[[:space:]]main([[:space:]]|$)/ main contrib\1/}' "$file" >"$tmp"
      ;;
    *)
      sed -E '/^[[:space:]]*deb(-src)?[[:space:]].*debian/{/[[:space:]]contrib([[:space:]]|$)/!s/[[:space:]]main([[:space:]]|$)/ main contrib\1/}' "$file" >"$tmp"
      ;;
    esac
    if cmp -s "$tmp" "$file"; then
      rm -f "$tmp"
    else
      chmod --reference="$file" "$tmp"
      mv -f "$tmp" "$file"
      echo "swarm: $swarm_host: enabled the contrib component in $file"
    fi
  done
}

# swarm_zfs_packages: what OpenZFS needs on Debian besides zfsutils-linux: the
# DKMS module, the headers to build it for the running kernel, and the kernel
# flavour's headers metapackage so that kernel updates rebuild it. Debian's
# mirror keeps only the newest kernel ABI: when the running kernel's headers
# are gone, the module can only be built for the newest kernel, so that
# kernel is installed too (and must be booted).
swarm_zfs_packages() {
  local arch kernel flavour
  arch=$(dpkg --print-architecture)
  kernel=$(uname -r)
  case "$kernel" in
  *-cloud-"$arch") flavour=cloud-$arch ;;
  *) flavour=$arch ;;
  esac
  if apt-cache show "linux-headers-$kernel" >/dev/null 2>&1; then
    printf '%s\n' "linux-headers-$kernel"
  else
    printf '%s\n' "linux-image-$flavour"
  fi
  printf '%s\n' "linux-headers-$flavour" zfs-dkms
}

/**
 * The bootstrap script of a host: waits for first boot to settle, then
 * installs the Debian packages the host's roles need.
 *
 * It touches the network only when a package is missing: on a host that
 * already has everything it reads the dpkg database and exits, so it runs
 * unchanged on hosts without a route to any package mirror.
 */
import { script, shellQuote } from "./shell";

export interface BootstrapValues {
  /** Host name, used in every message. */
  readonly host: string;
  /** Debian packages the host needs (sorted by the plan). */
  readonly packages: readonly string[];
}

/** Files apt and dpkg hold locks on while they run. */
export const APT_LOCKS = [
  "/var/lib/dpkg/lock-frontend",
  "/var/lib/dpkg/lock",
  "/var/lib/apt/lists/lock",
  "/var/cache/apt/archives/lock",
];

/** Seconds the bootstrap waits for another apt or dpkg run (unattended-upgrades on first boot) to finish. */
export const APT_LOCK_TIMEOUT = 600;

/**
 * Shell functions of the bootstrap, kept apart so tests can source them.
 * They expect `swarm_host` to hold the host name.
 */
export const APT_FUNCTIONS = `# swarm_wait_unlocked TIMEOUT PATH...: waits until no process holds a lock on any PATH.
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
    if [ "$(dpkg-query -W -f='\${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
      printf '%s\\n' "$pkg"
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
      sed -E '/^Components:/{/[[:space:]]contrib([[:space:]]|$)/!s/[[:space:]]main([[:space:]]|$)/ main contrib\\1/}' "$file" >"$tmp"
      ;;
    *)
      sed -E '/^[[:space:]]*deb(-src)?[[:space:]].*debian/{/[[:space:]]contrib([[:space:]]|$)/!s/[[:space:]]main([[:space:]]|$)/ main contrib\\1/}' "$file" >"$tmp"
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
    printf '%s\\n' "linux-headers-$kernel"
  else
    printf '%s\\n' "linux-image-$flavour"
  fi
  printf '%s\\n' "linux-headers-$flavour" zfs-dkms
}
`;

/** The bootstrap script for one host. Pure. */
export function bootstrapScript(values: BootstrapValues): string {
  const host = shellQuote(values.host);
  const packages = [...values.packages].sort().map(shellQuote).join(" ");
  const zfs = values.packages.includes("zfsutils-linux");
  const aptGet = `apt-get -q -y -o DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold`;
  const zfsSteps = zfs
    ? `
  if [[ " \${swarm_missing[*]} " == *" zfsutils-linux "* ]]; then
    swarm_enable_contrib /etc/apt
  fi`
    : "";
  const zfsInstall = zfs
    ? `
  if [[ " \${swarm_missing[*]} " == *" zfsutils-linux "* ]]; then
    # The module is built by DKMS while its headers are installed, so they go first.
    mapfile -t swarm_zfs < <(swarm_zfs_packages)
    ${aptGet} install --no-install-recommends "\${swarm_zfs[@]}"
    if ! modprobe zfs; then
      if [[ " \${swarm_zfs[*]} " == *" linux-headers-$(uname -r) "* ]]; then
        echo "swarm: $swarm_host: zfs-dkms built no loadable module for kernel $(uname -r); see dkms status and /var/lib/dkms/zfs/*/build/make.log" >&2
      else
        echo "swarm: $swarm_host: the mirror no longer has headers for the running kernel $(uname -r), so zfs was built for the newer kernel just installed; reboot the host, then run pulumi up again" >&2
      fi
      exit 1
    fi
  fi`
    : "";
  return script(
    `swarm_host=${host}
${APT_FUNCTIONS}
# Cloud images run cloud-init and apt on first boot; installing alongside them fails on the dpkg lock.
if command -v cloud-init >/dev/null 2>&1; then
  if ! cloud-init status --wait >/dev/null; then
    echo "swarm: $swarm_host: cloud-init finished with errors (see: cloud-init status --long); continuing" >&2
  fi
fi
swarm_wait_unlocked ${APT_LOCK_TIMEOUT} ${APT_LOCKS.join(" ")}

mapfile -t swarm_missing < <(swarm_missing_packages ${packages})
if [ \${#swarm_missing[@]} -eq 0 ]; then
  echo "swarm: $swarm_host bootstrap: already present: ${values.packages.length === 0 ? "(no packages)" : [...values.packages].sort().join(" ")}"
else
  export DEBIAN_FRONTEND=noninteractive${zfsSteps}
  ${aptGet} update${zfsInstall}
  ${aptGet} install --no-install-recommends "\${swarm_missing[@]}"
  mapfile -t swarm_still_missing < <(swarm_missing_packages "\${swarm_missing[@]}")
  if [ \${#swarm_still_missing[@]} -gt 0 ]; then
    echo "swarm: $swarm_host: apt-get finished but these packages are still not installed: \${swarm_still_missing[*]}; check the host's apt sources" >&2
    exit 1
  fi
  echo "swarm: $swarm_host bootstrap: installed \${swarm_missing[*]}"
fi
`,
  );
}

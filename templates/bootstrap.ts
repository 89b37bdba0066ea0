/**
 * The bootstrap script of a host: waits for first boot to settle, then
 * installs the Debian packages the host's roles need.
 *
 * It touches the network only when a package is missing: on a host that
 * already has everything it reads the dpkg database and exits, so it runs
 * unchanged on hosts without a route to any package mirror.
 */
import { hostScript, script, shellQuote } from "./shell";

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
export const APT_FUNCTIONS = hostScript("apt.sh");

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

/**
 * A client's side of an export: the pinned host key, the `.mount` and
 * `.automount` units, and the scripts that install them. systemd mounts the
 * export on first access and unmounts it when idle; no daemon of ours runs.
 */
import { Seconds } from "../config/types";
import { hostScript, script, shellQuote, writeFile } from "./shell";
import {
  normalizePath,
  renderUnit,
  SYNC_UNIT_PREFIX,
  systemdEscapePath,
  timespan,
  unitHeader,
} from "./systemd";
import { ed25519Key } from "./sftp";
import { EXPORT_SENTINEL, failFunction, UNIT_DIR } from "./zfs";

/** Functions of the install script (`hostscripts/sshfs-mount.sh`): move a mount, prove it shows the export. */
const SSHFS_FUNCTIONS = hostScript("sshfs-mount.sh", { EXPORT_SENTINEL, UNIT_DIR, SYNC_UNIT_PREFIX });

export const CLIENT_DIR = "/etc/swarm/meshfs";
/** Placeholders the install script replaces with the owner's numeric ids, which only the host knows. */
export const OWNER_UID = "@OWNER_UID@";
export const OWNER_GID = "@OWNER_GID@";

export function clientKeyPath(exportName: string): string {
  return `${CLIENT_DIR}/${exportName}.key`;
}

export function knownHostsPath(exportName: string): string {
  return `${CLIENT_DIR}/${exportName}.known_hosts`;
}

/** The name the export host's key is pinned under, independent of its address. */
export function hostKeyAlias(exportName: string): string {
  return `swarm-${exportName}`;
}

/** `mnt-meshfs.mount` and `mnt-meshfs.automount` for `/mnt/meshfs`. */
export function mountUnitNames(path: string): { mount: string; automount: string } {
  const stem = systemdEscapePath(path);
  return { mount: `${stem}.mount`, automount: `${stem}.automount` };
}

export interface MountPlan {
  readonly exportName: string;
  /** Export user on the server. */
  readonly user: string;
  readonly serverMeshAddress: string;
  /** Mount path on this host. */
  readonly path: string;
  readonly idleTimeout: Seconds;
  /** Local user that owns what the mount shows. */
  readonly owner: string;
  /** The WireGuard unit the mount rides on, e.g. `wg-quick@wg0.service`. */
  readonly wireguardUnit: string;
  /**
   * A watched sync goes through it: sshfs keeps what it read only within the second it read it,
   * not for its 20 s default, so a run a watcher starts sees a change made on the export host.
   */
  readonly watched: boolean;
}

/** The pinned host key of the export host, under its alias. */
export function knownHosts(exportName: string, hostKey: string): string {
  return `${hostKeyAlias(exportName)} ${ed25519Key(hostKey, `the host key of export ${exportName}`)}\n`;
}

/**
 * sshfs and ssh options of the mount. A dead tunnel is noticed within 15 s
 * (ServerAlive), a connection attempt gives up after 5 s, nothing prompts
 * (BatchMode), and only the pinned key is accepted for the server.
 */
export function mountOptions(plan: MountPlan, uid: string, gid: string): string {
  const options = [
    "_netdev",
    "reconnect",
    "ServerAliveInterval=5",
    "ServerAliveCountMax=3",
    "ConnectTimeout=5",
    "BatchMode=yes",
    `IdentityFile=${clientKeyPath(plan.exportName)}`,
    "IdentitiesOnly=yes",
    `UserKnownHostsFile=${knownHostsPath(plan.exportName)}`,
    "GlobalKnownHostsFile=/dev/null",
    `HostKeyAlias=${hostKeyAlias(plan.exportName)}`,
    "StrictHostKeyChecking=yes",
    // Root mounts; the owner reads and writes. default_permissions makes the kernel check modes
    // against the mapped owner, so other local users get only what the modes grant them.
    "allow_other",
    "default_permissions",
    "idmap=user",
    `uid=${uid}`,
    `gid=${gid}`,
    // sshfs's cache (cache.c) holds an entry while time() <= when it was read + the timeout: with
    // 0, until the second it was read in ends. The kernel's own attribute cache (libfuse's 1 s
    // default) adds at most a second; the remote watcher waits that long before it starts a run.
    ...(plan.watched ? ["dcache_timeout=0"] : []),
  ];
  for (const option of options) {
    if (/[,\s]/.test(option)) {
      throw new Error(`mount option ${JSON.stringify(option)} cannot hold a comma or a blank`);
    }
  }
  return options.join(",");
}

/** What the mount unit mounts, as the mount table shows it: the sftp session is chrooted into the dataset, whose root the server sees as `/`. */
export function mountSource(plan: Pick<MountPlan, "user" | "serverMeshAddress">): string {
  return `${plan.user}@${plan.serverMeshAddress}:/`;
}

/** The `.mount` unit; `uid`/`gid` default to the placeholders the install script fills in. */
export function mountUnit(plan: MountPlan, uid = OWNER_UID, gid = OWNER_GID): string {
  const where = normalizePath(plan.path);
  return renderUnit(
    unitHeader(
      `Export ${plan.exportName} of ${plan.serverMeshAddress}, over the mesh with sshfs.`,
      `Started by ${mountUnitNames(where).automount} on first access; bound to ${plan.wireguardUnit},`,
      "so it goes away with the tunnel instead of hanging on a dead one.",
    ),
    [
      {
        name: "Unit",
        settings: [
          ["Description", `meshfs export ${plan.exportName} from ${plan.serverMeshAddress}`],
          ["After", plan.wireguardUnit],
          ["BindsTo", plan.wireguardUnit],
        ],
      },
      {
        name: "Mount",
        settings: [
          ["What", mountSource(plan)],
          ["Where", where],
          ["Type", "fuse.sshfs"],
          ["Options", mountOptions(plan, uid, gid)],
          ["TimeoutSec", "30s"],
        ],
      },
    ],
  );
}

export function automountUnit(plan: MountPlan): string {
  const where = normalizePath(plan.path);
  return renderUnit(unitHeader(`Mounts export ${plan.exportName} at ${where} on first access.`), [
    {
      name: "Unit",
      settings: [["Description", `Automount of meshfs export ${plan.exportName} at ${where}`]],
    },
    {
      name: "Automount",
      settings: [
        ["Where", where],
        ["TimeoutIdleSec", timespan(plan.idleTimeout)],
      ],
    },
    { name: "Install", settings: [["WantedBy", "multi-user.target"]] },
  ]);
}

/** Writes the client key from standard input, readable by root only. */
export function clientKeyScript(exportName: string): string {
  return script(`install -d -m 0755 ${CLIENT_DIR}
swarm_write ${shellQuote(clientKeyPath(exportName))} 0600 root:root
`);
}

/** A file whose content passes through sed, so host-only values (numeric ids) can be filled in. */
function writeSubstituted(path: string, content: string, sed: string): string {
  const lines = new Set(content.split("\n"));
  let delimiter = "SWARM_UNIT_EOF";
  for (let n = 1; lines.has(delimiter); n++) {
    delimiter = `SWARM_UNIT_EOF_${n}`;
  }
  return `swarm_write ${shellQuote(path)} 0644 root:root < <(sed ${sed} <<'${delimiter}'\n${content}${delimiter}\n)\n`;
}

/**
 * Installs the pinned host key and the units, enables the automount and
 * proves the mount works by reading the export's sentinel through it. A
 * mount of another server (the export moved) is unmounted now, detached if
 * busy; other changed settings take effect at the next mount: an idle mount
 * is unmounted now, a busy one is left alone. A mount that does not answer is
 * mounted again once before the check fails.
 */
export function automountScript(host: string, plan: MountPlan, hostKey: string): string {
  const q = shellQuote;
  const where = normalizePath(plan.path);
  const units = mountUnitNames(where);
  const mountFile = `${UNIT_DIR}/${units.mount}`;
  const automountFile = `${UNIT_DIR}/${units.automount}`;
  return script(
    failFunction(host),
    `command -v sshfs >/dev/null || fail "sshfs is missing: install sshfs"
[ -s ${q(clientKeyPath(plan.exportName))} ] || fail "the client key ${clientKeyPath(plan.exportName)} is missing"
owner_uid=$(id -u ${q(plan.owner)}) || fail "mount ${where} belongs to ${plan.owner}, who does not exist here: create the user or change the mount's owner"
owner_gid=$(id -g ${q(plan.owner)})
`,
    writeFile({
      path: knownHostsPath(plan.exportName),
      content: knownHosts(plan.exportName, hostKey),
      mode: "0644",
    }),
    writeSubstituted(
      mountFile,
      mountUnit(plan),
      `-e "s/${OWNER_UID}/$owner_uid/g" -e "s/${OWNER_GID}/$owner_gid/g"`,
    ),
    writeFile({ path: automountFile, content: automountUnit(plan), mode: "0644" }),
    automountActivation(plan),
  );
}

/**
 * The end of the install script, after the files are written: moves a mount
 * whose server changed, activates the automount and proves the mount shows
 * the export.
 */
export function automountActivation(plan: MountPlan): string {
  const q = shellQuote;
  const where = normalizePath(plan.path);
  const units = mountUnitNames(where);
  const mountFile = `${UNIT_DIR}/${units.mount}`;
  const automountFile = `${UNIT_DIR}/${units.automount}`;
  return `${SSHFS_FUNCTIONS}
swarm_reload
live=$(swarm_sshfs_source ${q(where)})
paused=()
if [ -n "$live" ] && [ "$live" != ${q(mountSource(plan))} ]; then
  # The export moved: nothing may go on reading or writing the old host's copy, and no sync run
  # may span both copies.
  mapfile -t paused < <(swarm_sshfs_pause_syncs ${q(units.mount)})
  swarm_sshfs_unmount ${q(where)} ${q(units.mount)}
  echo "swarm: unmounted ${where} from $live; the next access mounts ${mountSource(plan)}"
elif swarm_changed ${q(mountFile)} && [ -n "$live" ]; then
  if systemctl stop ${q(units.mount)} 2>/dev/null; then
    echo "swarm: unmounted ${where}; the next access mounts it with the new settings"
  else
    echo "swarm: ${where} is busy; the new settings apply at its next mount"
  fi
fi
# An automount is not restarted under its mount: a changed one waits for the unmount.
if swarm_changed ${q(automountFile)} && systemctl is-active --quiet ${q(units.automount)} &&
  systemctl is-active --quiet ${q(units.mount)}; then
  echo "swarm: ${where} is mounted; ${units.automount} picks up its new settings when restarted after the unmount"
  swarm_activate ${q(units.automount)}
else
  swarm_activate ${q(units.automount)} ${q(automountFile)}
fi
# The first access mounts the export; its sentinel proves it is the right one and is really there.
# The paused syncs start again either way: their guards refuse a mount that is not right.
if ! (swarm_sshfs_check ${q(where)} ${q(units.mount)} ${q(plan.exportName)}); then
  swarm_sshfs_resume_syncs "\${paused[@]}"
  exit 1
fi
swarm_sshfs_resume_syncs "\${paused[@]}"
`;
}

/** Stops and removes the units and the pinned key; the client key goes with its own command. */
export function automountTeardownScript(plan: Pick<MountPlan, "path" | "exportName">): string {
  const q = shellQuote;
  const units = mountUnitNames(normalizePath(plan.path));
  return `systemctl disable --now ${q(units.automount)} 2>/dev/null || true
systemctl stop ${q(units.mount)} 2>/dev/null || true
rm -f ${q(`${UNIT_DIR}/${units.automount}`)} ${q(`${UNIT_DIR}/${units.mount}`)} ${q(knownHostsPath(plan.exportName))}
systemctl daemon-reload
echo "swarm: removed the automount of ${plan.path}"
`;
}

/** Removes the client key. */
export function clientKeyTeardownScript(exportName: string): string {
  return `rm -f ${shellQuote(clientKeyPath(exportName))}\necho "swarm: removed the client key of export ${exportName}"\n`;
}

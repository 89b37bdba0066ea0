/**
 * A two-way sync: the unison profile, the guard that keeps unison from
 * running against a root that is not really there, the oneshot service and
 * its timer, an optional watcher, and the script that installs them.
 *
 * Safety, in layers: the service requires the mounts of its local root
 * (`RequiresMountsFor=`) and is ordered after the automount of its sshfs root;
 * the guard triggers that automount, checks that the mount is sshfs and shows
 * the export, and that both roots carry the sync's sentinel; unison itself
 * aborts when a sentinel is missing (`mountpoint`) or a root was emptied
 * (`confirmbigdel`); and every file it overwrites or deletes is kept in a
 * backup directory. A sentinel is only ever created before the first
 * successful run (no archive yet): once unison remembers a root, a root
 * without its sentinel stops the sync until someone looks.
 */
import { Seconds } from "../config/types";
import { hostScript, script, shellQuote, writeFile } from "./shell";
import { syncSentinel } from "./sftp";
import { WATCH_TOKEN } from "./meshfsWatch";
import { hostKeyAlias, knownHosts } from "./sshfs";
import { execLine, renderUnit, SYNC_UNIT_PREFIX, systemdEscapePath, timespan, unitHeader } from "./systemd";
import { EXPORT_SENTINEL, failFunction, LIB_DIR, UNIT_DIR } from "./zfs";

export const PROFILE_DIR = "/etc/swarm/unison";
export const STATE_DIR = "/var/lib/swarm/unison";
export const GUARD = `${LIB_DIR}/unison-guard`;
export const STATUS = `${LIB_DIR}/unison-status`;
export const WATCH = `${LIB_DIR}/unison-watch`;
export const REMOTE_WATCH = `${LIB_DIR}/unison-remote-watch`;

/** Where the sync's remote root is: inside an sshfs mount of this host, or on the export host over ssh://. */
export type RemoteRoot =
  | {
      readonly kind: "mount";
      /** Absolute path of the root, inside the mount. */
      readonly path: string;
      /** The mount path (the automount's `Where=`). */
      readonly mountPath: string;
      readonly exportName: string;
    }
  | {
      readonly kind: "ssh";
      readonly exportName: string;
      readonly exportUser: string;
      readonly serverMeshAddress: string;
      /** Absolute path of the root on the export host. */
      readonly serverPath: string;
    };

export interface SyncPlan {
  readonly name: string;
  /** Local user unison runs as. */
  readonly user: string;
  /** Absolute local root. */
  readonly local: string;
  readonly remote: RemoteRoot;
  readonly interval: Seconds;
  readonly timeout: Seconds;
  /** Unison ignore patterns, e.g. `Name *.tmp`. */
  readonly ignore: readonly string[];
  readonly watch: boolean;
  /** In watch mode: how the sync host follows its remote root on the export host. */
  readonly remoteWatch?: RemoteWatch;
}

/**
 * The export host as a watched sync follows it: `ssh <login>@<address> watch`
 * with the sync's own key and the export host's key pinned in the file the
 * sync already trusts (the mount's, or the ssh:// profile's).
 */
export interface RemoteWatch {
  /** The export's watch user, `<export>-watch`. */
  readonly login: string;
  readonly serverMeshAddress: string;
  /** The remote root on the export host, absolute: what the export host watches. */
  readonly directory: string;
  /** The name the export host's key is pinned under. */
  readonly hostKeyAlias: string;
  /** The pinned known_hosts file. */
  readonly knownHosts: string;
  /** The WireGuard unit the connection rides on, e.g. `wg-quick@wg0.service`. */
  readonly wireguardUnit: string;
}

export function stateDir(sync: string): string {
  return `${STATE_DIR}/${sync}`;
}

export function profilePath(sync: string): string {
  return `${PROFILE_DIR}/${sync}.prf`;
}

export function statusPath(sync: string): string {
  return `${STATE_DIR}/${sync}.status`;
}

export function syncKeyPath(sync: string): string {
  return `${PROFILE_DIR}/${sync}.key`;
}

export function syncKnownHostsPath(sync: string): string {
  return `${PROFILE_DIR}/${sync}.known_hosts`;
}

/** The key a watched sync follows its remote root with, readable by root only. */
export function syncWatchKeyPath(sync: string): string {
  return `${PROFILE_DIR}/${sync}.watch.key`;
}

export function syncUnitNames(sync: string): {
  service: string;
  timer: string;
  watch: string;
  remoteWatch: string;
} {
  return {
    service: `${SYNC_UNIT_PREFIX}${sync}.service`,
    timer: `${SYNC_UNIT_PREFIX}${sync}.timer`,
    watch: `${SYNC_UNIT_PREFIX}${sync}-watch.service`,
    remoteWatch: `${SYNC_UNIT_PREFIX}${sync}-remote-watch.service`,
  };
}

/** The remote root as unison names it. */
export function remoteRoot(remote: RemoteRoot): string {
  return remote.kind === "mount"
    ? remote.path
    : `ssh://${remote.exportUser}@${remote.serverMeshAddress}/${remote.serverPath}`;
}

function profileLine(key: string, value: string): string {
  if (/[\n\r]/.test(value)) {
    throw new Error(`unison preference ${key} cannot hold a line break: ${JSON.stringify(value)}`);
  }
  return `${key} = ${value}`;
}

/** The unison profile. */
export function unisonProfile(plan: SyncPlan): string {
  const state = stateDir(plan.name);
  const sentinel = syncSentinel(plan.name);
  const ssh =
    plan.remote.kind === "ssh"
      ? [
          "",
          "# ssh:// mode: the pinned host key and the sync's own key, nothing from ssh_config.",
          profileLine(
            "sshargs",
            [
              "-F none",
              `-i ${syncKeyPath(plan.name)}`,
              "-o IdentitiesOnly=yes",
              `-o UserKnownHostsFile=${syncKnownHostsPath(plan.name)}`,
              "-o GlobalKnownHostsFile=/dev/null",
              `-o HostKeyAlias=${hostKeyAlias(plan.remote.exportName)}`,
              "-o StrictHostKeyChecking=yes",
              "-o BatchMode=yes",
              "-o ConnectTimeout=5",
              "-o ServerAliveInterval=5",
              "-o ServerAliveCountMax=3",
            ].join(" "),
          ),
        ]
      : [];
  const lines = [
    `# Installed by swarm: sync ${plan.name}. Run it as ${plan.user} with UNISON=${state}.`,
    profileLine("root", plan.local),
    profileLine("root", remoteRoot(plan.remote)),
    "# Archives are named after this, not after the host name: a renamed host keeps its archives.",
    profileLine("clientHostName", `swarm-sync-${plan.name}`),
    "",
    "# Never ask: non-conflicting changes propagate, conflicts are skipped (exit status 1),",
    "# and each side keeps its own version until someone resolves the conflict.",
    "batch = true",
    "auto = true",
    "terse = true",
    "contactquietly = true",
    "# Batch mode never resolves a conflict, so this acts only when a conflict is resolved by a",
    "# preference (an operator's -prefer): the losing version is kept as a copy beside the winner.",
    "copyonconflict = true",
    "",
    "# A root that is not really there must not look like a mass deletion.",
    profileLine("mountpoint", sentinel),
    "confirmbigdel = true",
    "",
    "# Every file unison overwrites or deletes is kept, outside both roots.",
    "backup = Name *",
    "backuplocation = central",
    profileLine("backupdir", `${state}/backup`),
    "maxbackups = 5",
    "log = true",
    profileLine("logfile", `${state}/unison.log`),
    "",
    "# sshfs invents inode numbers per connection; without this every remount looks like a change.",
    "ignoreinodenumbers = true",
    "fastcheck = true",
    "times = true",
    "# Permission bits are synced (the default); owners are not: sshfs shows every file as the",
    "# mount's owner, and files on the export belong to the export user.",
    "",
    "# Snapshots, markers and the caller's patterns.",
    "ignore = Name .zfs",
    profileLine("ignore", `Name ${EXPORT_SENTINEL}`),
    profileLine("ignore", `Path ${sentinel}`),
    ...plan.ignore.map((pattern) => profileLine("ignore", pattern)),
    ...ssh,
  ];
  return `${lines.join("\n")}\n`;
}

/**
 * `unison-guard [--init] [--state DIR] [--mount PATH --export NAME] --sentinel FILE ROOT...`
 *
 * Exits non-zero, saying why, unless the mount (when given) is an sshfs mount
 * showing the export, and every root is a directory holding the sentinel.
 * With `--init` it creates missing roots and sentinels, but only while DIR
 * holds no unison archive: before the first sync, a fresh root is harmless
 * (unison merges both sides); afterwards it could be an unmounted directory
 * whose emptiness unison would faithfully mirror. When the mount shows
 * another dataset of the export than the last run saw (a failover to a
 * replica), it moves unison's archives in DIR aside, so the run merges
 * instead of deleting what the replica never received.
 */
export function guardScript(): string {
  return GUARD_PROGRAM;
}

/**
 * `unison-status SYNC FILE [LOG]`, run by systemd after every run (as root):
 * records how the run ended in FILE and keeps unison's log bounded.
 */
export function statusScript(): string {
  return STATUS_PROGRAM;
}

/**
 * `unison-watch UNIT ROOT`: starts UNIT whenever something changes below
 * ROOT, bursts coalesced; `unison-watch UNIT -` does the same for each line
 * on standard input.
 */
export function watchScript(): string {
  return WATCH_PROGRAM;
}

/** `unison-remote-watch UNIT SSH_ARGUMENT...`: starts UNIT whenever the export host reports a change. */
export function remoteWatchScript(): string {
  return REMOTE_WATCH_PROGRAM;
}

const GUARD_PROGRAM = hostScript("unison-guard.sh", { EXPORT_SENTINEL });
const STATUS_PROGRAM = hostScript("unison-status.sh");
const WATCH_PROGRAM = hostScript("unison-watch.sh");
const REMOTE_WATCH_PROGRAM = hostScript("unison-remote-watch.sh", { WATCH, TOKEN: WATCH_TOKEN });

function guardArgs(plan: SyncPlan): string[] {
  const mount =
    plan.remote.kind === "mount"
      ? ["--mount", plan.remote.mountPath, "--export", plan.remote.exportName]
      : [];
  const roots = plan.remote.kind === "mount" ? [plan.local, plan.remote.path] : [plan.local];
  return ["--state", stateDir(plan.name), ...mount, "--sentinel", syncSentinel(plan.name), ...roots];
}

export function syncService(plan: SyncPlan): string {
  const state = stateDir(plan.name);
  // The local root is a plain directory: its mounts are hard requirements. The sshfs root is not:
  // with RequiresMountsFor= a mount that fails turns the run into a dependency failure, which leaves
  // the service inactive with Result=success and no status record, so a dead mount would go unseen.
  // Instead the automount is wanted and ordered first, and the guard (ExecStartPre) triggers it and
  // refuses to run without it: a failed unit, a status file, a health gate that notices.
  const automount =
    plan.remote.kind === "mount" ? `${systemdEscapePath(plan.remote.mountPath)}.automount` : undefined;
  const mountUnit =
    plan.remote.kind === "mount" ? `${systemdEscapePath(plan.remote.mountPath)}.mount` : undefined;
  const network = plan.remote.kind === "ssh" ? "network-online.target" : undefined;
  return renderUnit(
    unitHeader(
      `Sync ${plan.name}: ${plan.local} <-> ${remoteRoot(plan.remote)}.`,
      "Exit status 1 (conflicts skipped) is a success that is recorded; 2 and 3 fail the unit.",
    ),
    [
      {
        name: "Unit",
        settings: [
          ["Description", `Two-way sync ${plan.name}`],
          ["RequiresMountsFor", plan.local],
          ["Wants", network ?? automount],
          ["After", network ?? `${automount} ${mountUnit}`],
        ],
      },
      {
        name: "Service",
        settings: [
          ["Type", "oneshot"],
          ["User", plan.user],
          ["Environment", `UNISON=${state}`],
          ["ExecStartPre", execLine("", GUARD, ...guardArgs(plan))],
          // flock: unison run by hand with the same lock never overlaps a run of the service.
          ["ExecStart", execLine("", "/usr/bin/flock", `${state}/lock`, "/usr/bin/unison", plan.name)],
          ["ExecStopPost", execLine("+", STATUS, plan.name, statusPath(plan.name), `${state}/unison.log`)],
          ["SuccessExitStatus", "1"],
          ["TimeoutStartSec", timespan(plan.timeout)],
          // A sync on its timer yields the CPU to the host's own work. A watched one is someone
          // waiting for their change: at Nice=10 any busy process of the host (a build, a backup)
          // would stretch its seconds into tens of seconds, so it runs at the default priority.
          ["Nice", plan.watch ? undefined : "10"],
        ],
      },
    ],
  );
}

export function syncTimer(plan: SyncPlan): string {
  const every = timespan(plan.interval);
  return renderUnit(unitHeader(`Runs sync ${plan.name} ${every} after the previous run ended.`), [
    { name: "Unit", settings: [["Description", `Two-way sync ${plan.name} every ${every}`]] },
    {
      name: "Timer",
      settings: [
        ["OnBootSec", every],
        // Counted from the end of the last run, so a slow run never queues the next one.
        ["OnUnitInactiveSec", every],
        ["AccuracySec", "1s"],
      ],
    },
    { name: "Install", settings: [["WantedBy", "timers.target"]] },
  ]);
}

export function watchService(plan: SyncPlan): string {
  const units = syncUnitNames(plan.name);
  return renderUnit(
    unitHeader(
      `Starts sync ${plan.name} as soon as ${plan.local} changes;`,
      `${units.remoteWatch} does the same for the remote root.`,
    ),
    [
      {
        name: "Unit",
        settings: [
          ["Description", `Watch ${plan.local} for sync ${plan.name}`],
          ["After", units.timer],
        ],
      },
      {
        name: "Service",
        settings: [
          ["ExecStart", execLine("", WATCH, units.service, plan.local)],
          ["Restart", "always"],
          ["RestartSec", "10s"],
        ],
      },
      { name: "Install", settings: [["WantedBy", "multi-user.target"]] },
    ],
  );
}

function requireRemoteWatch(plan: SyncPlan): RemoteWatch {
  if (plan.remoteWatch === undefined) {
    throw new Error(`sync ${plan.name} is not in watch mode: it follows no remote root`);
  }
  return plan.remoteWatch;
}

/**
 * The ssh command line of the remote watcher: the sync's own watch key,
 * nothing from ssh_config, the export host's key pinned (never trusted on
 * first use), and a dead tunnel noticed within 15 s.
 */
export function remoteWatchSshArgs(plan: SyncPlan): string[] {
  const watch = requireRemoteWatch(plan);
  return [
    "-F",
    "/dev/null",
    "-i",
    syncWatchKeyPath(plan.name),
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-o",
    `UserKnownHostsFile=${watch.knownHosts}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    `HostKeyAlias=${watch.hostKeyAlias}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "ServerAliveInterval=5",
    "-o",
    "ServerAliveCountMax=3",
    `${watch.login}@${watch.serverMeshAddress}`,
    "watch",
  ];
}

/** Follows the remote root on the export host and starts the sync on each change there. */
export function remoteWatchService(plan: SyncPlan): string {
  const units = syncUnitNames(plan.name);
  const watch = requireRemoteWatch(plan);
  return renderUnit(
    unitHeader(
      `Starts sync ${plan.name} as soon as ${watch.directory} changes on ${watch.serverMeshAddress}, which`,
      "reports each change; the timer still runs it when this cannot connect.",
    ),
    [
      {
        name: "Unit",
        settings: [
          ["Description", `Follow the remote root of sync ${plan.name} on ${watch.serverMeshAddress}`],
          ["After", `${units.timer} ${watch.wireguardUnit}`],
          ["Wants", watch.wireguardUnit],
        ],
      },
      {
        name: "Service",
        settings: [
          ["ExecStart", execLine("", REMOTE_WATCH, units.service, ...remoteWatchSshArgs(plan))],
          // A connection that drops (the tunnel, the export host) is made again: every 5 s stays
          // under systemd's start limit (5 starts in 10 s), so it never gives up.
          ["Restart", "always"],
          ["RestartSec", "5s"],
        ],
      },
      { name: "Install", settings: [["WantedBy", "multi-user.target"]] },
    ],
  );
}

/** Writes the sync's watch key from standard input, readable by root (the remote watcher) only. */
export function syncWatchKeyScript(sync: string): string {
  return script(`install -d -m 0755 ${PROFILE_DIR}
swarm_write ${shellQuote(syncWatchKeyPath(sync))} 0600 root:root
`);
}

/** Removes the sync's watch key. */
export function syncWatchKeyTeardownScript(sync: string): string {
  return `rm -f ${shellQuote(syncWatchKeyPath(sync))}\necho "swarm: removed the watch key of sync ${sync}"\n`;
}

/** Writes the sync's ssh:// key from standard input, readable by the sync user only. */
export function syncKeyScript(host: string, sync: string, user: string): string {
  const q = shellQuote;
  return script(
    failFunction(host),
    `id -u ${q(user)} >/dev/null 2>&1 || fail "sync ${sync} runs as ${user}, who does not exist here"
install -d -m 0755 ${PROFILE_DIR}
swarm_write ${q(syncKeyPath(sync))} 0600 ${q(`${user}:`)}
`,
  );
}

function requireHostKey(sync: string, hostKey: string | undefined): string {
  if (hostKey === undefined) {
    throw new Error(`sync ${sync} reaches its export over ssh:// and needs the export host's key`);
  }
  return hostKey;
}

/** Installs profile, scripts and units, marks the roots on the first install, and starts the timer. */
export function syncInstallScript(host: string, plan: SyncPlan, hostKey?: string): string {
  const q = shellQuote;
  const state = stateDir(plan.name);
  const units = syncUnitNames(plan.name);
  const sshFiles =
    plan.remote.kind === "ssh"
      ? [
          `[ -s ${q(syncKeyPath(plan.name))} ] || fail "the key of sync ${plan.name} (${syncKeyPath(plan.name)}) is missing"\n`,
          writeFile({
            path: syncKnownHostsPath(plan.name),
            content: knownHosts(plan.remote.exportName, requireHostKey(plan.name, hostKey)),
            mode: "0644",
          }),
        ]
      : [];
  const remoteWatch = plan.watch ? requireRemoteWatch(plan) : undefined;
  const watchUnits = [units.watch, units.remoteWatch];
  const watch =
    remoteWatch !== undefined
      ? `swarm_activate ${q(units.watch)} ${q(`${UNIT_DIR}/${units.watch}`)} ${q(WATCH)}
[ -s ${q(syncWatchKeyPath(plan.name))} ] || fail "the watch key of sync ${plan.name} (${syncWatchKeyPath(plan.name)}) is missing"
[ -s ${q(remoteWatch.knownHosts)} ] || fail "${remoteWatch.knownHosts}, the pinned key of the export host, is missing"
swarm_activate ${q(units.remoteWatch)} ${[`${UNIT_DIR}/${units.remoteWatch}`, REMOTE_WATCH, WATCH].map(q).join(" ")}
`
      : `for unit in ${watchUnits.join(" ")}; do
  if [ -e "${UNIT_DIR}/$unit" ]; then
    systemctl disable --now "$unit" 2>/dev/null || true
    rm -f "${UNIT_DIR}/$unit"
    systemctl daemon-reload
    echo "swarm: removed $unit"
  fi
done
`;
  return script(
    failFunction(host),
    `cd /
user=${q(plan.user)}
id -u "$user" >/dev/null 2>&1 || fail "sync ${plan.name} runs as ${plan.user}, who does not exist here: create the user or set syncs[].user"
command -v unison >/dev/null || fail "unison is missing: install unison"
${plan.watch ? `command -v inotifywait >/dev/null || fail "watch mode of sync ${plan.name} needs inotifywait: install inotify-tools"\ncommand -v ssh >/dev/null || fail "watch mode of sync ${plan.name} follows the export host over ssh: install openssh-client"\n` : ""}install -d -m 0755 ${PROFILE_DIR} ${STATE_DIR}
if [ "$(stat -c %U:%a ${q(state)} 2>/dev/null)" != "$user:700" ]; then
  install -d -m 0700 -o "$user" -g "$(id -gn "$user")" ${q(state)}
  echo "swarm: ${state} belongs to $user"
fi
`,
    ...sshFiles,
    writeFile({ path: profilePath(plan.name), content: unisonProfile(plan), mode: "0644" }),
    `# unison finds profiles only in its own directory.
if [ "$(readlink ${q(`${state}/${plan.name}.prf`)} || true)" != ${q(profilePath(plan.name))} ]; then
  ln -sfn ${q(profilePath(plan.name))} ${q(`${state}/${plan.name}.prf`)}
  echo "swarm: linked the profile into ${state}"
fi
`,
    writeFile({ path: GUARD, content: guardScript(), mode: "0755" }),
    writeFile({ path: STATUS, content: statusScript(), mode: "0755" }),
    plan.watch ? writeFile({ path: WATCH, content: watchScript(), mode: "0755" }) : "",
    plan.watch ? writeFile({ path: REMOTE_WATCH, content: remoteWatchScript(), mode: "0755" }) : "",
    writeFile({ path: `${UNIT_DIR}/${units.service}`, content: syncService(plan), mode: "0644" }),
    writeFile({ path: `${UNIT_DIR}/${units.timer}`, content: syncTimer(plan), mode: "0644" }),
    plan.watch
      ? writeFile({ path: `${UNIT_DIR}/${units.watch}`, content: watchService(plan), mode: "0644" })
      : "",
    plan.watch
      ? writeFile({
          path: `${UNIT_DIR}/${units.remoteWatch}`,
          content: remoteWatchService(plan),
          mode: "0644",
        })
      : "",
    `swarm_reload
# Before the first sync, missing roots and sentinels are created; after it, the guard only checks.
runuser -u "$user" -- ${[GUARD, "--init", ...guardArgs(plan)].map(q).join(" ")} ||
  fail "sync ${plan.name} cannot start: see the message above"
swarm_activate ${q(units.timer)} ${q(`${UNIT_DIR}/${units.timer}`)}
${watch}`,
  );
}

/** Stops and removes the units and the profile; archives, backups and both roots stay. */
export function syncTeardownScript(sync: string): string {
  const q = shellQuote;
  const units = syncUnitNames(sync);
  return `systemctl disable --now ${units.timer} ${units.watch} ${units.remoteWatch} 2>/dev/null || true
rm -f ${[units.service, units.timer, units.watch, units.remoteWatch].map((u) => q(`${UNIT_DIR}/${u}`)).join(" ")}
rm -f ${q(profilePath(sync))} ${q(`${stateDir(sync)}/${sync}.prf`)} ${q(syncKnownHostsPath(sync))} ${q(syncKeyPath(sync))} ${q(syncWatchKeyPath(sync))}
systemctl daemon-reload
echo "swarm: removed sync ${sync}; ${stateDir(sync)} (archives, backups) and both roots are kept"
`;
}

/**
 * The export host's side of watched syncs (`syncs[].watch`): a user per
 * export, `<export>-watch`, that can read the export's directories and
 * write none of them; one key per watched sync in its `authorized_keys`,
 * usable only from the sync host's mesh address and forced to
 * `meshfs-watch <the sync's remote root>`, which prints one fixed token per
 * change (never a file name); and an sshd drop-in that lets the user in
 * only over the mesh, only from those hosts, with a key and nothing else.
 * The sync host keeps an ssh session open to it and starts its sync on each
 * token (templates/unison.ts, `remoteWatchService`).
 *
 * The key's `command=` is what forces the command: every line of the file
 * has one, and only this file is read. A `ForceCommand` in the drop-in
 * would take precedence over the key's (sshd's `do_exec`), and so could not
 * give each sync's key its own directory.
 */
import {
  authorizedKeysPath,
  dropinHeader,
  ed25519Key,
  forcedCommandUserPart,
  LOCKED_SESSION,
  meshOnlyMatch,
  SSHD_DROPIN_DIR,
  sshdDropinParts,
  sshdWord,
} from "./sftp";
import { hostScript, script, shellQuote, writeFile } from "./shell";
import { failFunction, LIB_DIR } from "./zfs";

export const MESHFS_WATCH_PROGRAM = `${LIB_DIR}/meshfs-watch`;
/** Root-owned settings of the forced command, one file per export. */
export const WATCH_CONF_DIR = "/etc/swarm/watch";
/** What `meshfs-watch` prints per change, and `unison-remote-watch` waits for. */
export const WATCH_TOKEN = "change";

const PROGRAM_TEXT = hostScript("meshfs-watch.sh", { CONF_DIR: WATCH_CONF_DIR, TOKEN: WATCH_TOKEN });

/** The export host's user that watched syncs log in as: it reads the export, and writes nothing. */
export function watchUser(exportName: string): string {
  return `${exportName}-watch`;
}

export function watchHome(exportName: string): string {
  return `/var/lib/swarm/watch/${exportName}`;
}

export function watchKeysPath(exportName: string): string {
  return authorizedKeysPath(watchUser(exportName));
}

export function watchDropinPath(exportName: string): string {
  return `${SSHD_DROPIN_DIR}/swarm-watch-${exportName}.conf`;
}

export function watchConfPath(exportName: string): string {
  return `${WATCH_CONF_DIR}/${exportName}.conf`;
}

/** A watched sync, as the export host sees it. */
export interface WatchClient {
  /** The sync's host. */
  readonly name: string;
  readonly meshAddress: string;
  /** The sync's name on that host. */
  readonly sync: string;
  /** The sync's remote root on the export host, absolute. */
  readonly directory: string;
  /** The sync's watch key, `ssh-ed25519 AAAA...` (a trailing comment is dropped). */
  readonly publicKey: string;
}

export interface WatchPlan {
  /** Export host name, for messages. */
  readonly host: string;
  readonly exportName: string;
  /** The export host's mesh address: sshd lets the watch user in only on it. */
  readonly meshAddress: string;
  /** Dataset mountpoint: every watched directory is inside it. */
  readonly mountpoint: string;
  /** At least one. */
  readonly clients: readonly WatchClient[];
}

/** The name a watched sync's key has, in its public key and in the export host's `authorized_keys`. */
export function watchKeyComment(host: string, sync: string): string {
  return `swarm-watch-${sync}@${host}`;
}

/**
 * The forced command of a sync's key: `meshfs-watch DIR`, run by the
 * user's shell. A directory that is not a plain word is shell-quoted; the
 * quotes of the `command="..."` option itself are escaped.
 */
export function watchCommand(directory: string): string {
  const word = /^[A-Za-z0-9_./@+-]+$/.test(directory) ? directory : shellQuote(directory);
  return `${MESHFS_WATCH_PROGRAM} ${word}`;
}

function sortedClients(plan: WatchPlan): WatchClient[] {
  const key = (c: WatchClient) => `${c.name}\0${c.sync}`;
  return [...plan.clients].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** The watch user's `authorized_keys`: one line per watched sync, sorted by host, then sync. */
export function watchAuthorizedKeys(plan: WatchPlan): string {
  const lines = [
    `# Installed by swarm for export ${plan.exportName}. One key per watched sync, usable only from`,
    "# that sync's host's mesh address and only to follow changes in the sync's directory.",
  ];
  for (const client of sortedClients(plan)) {
    if (/[\n\r]/.test(client.directory)) {
      throw new Error(`the directory of sync ${client.sync} cannot hold a line break`);
    }
    const key = ed25519Key(client.publicKey, `the watch key of sync ${client.sync} of ${client.name}`);
    const command = watchCommand(client.directory).replace(/\\/g, "\\\\").replace(/"/g, '\\"');
    lines.push(
      `restrict,from="${client.meshAddress}/32",command="${command}" ${key} ${watchKeyComment(client.name, client.sync)}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** sshd lets the watch user in only from the watching hosts, only over the mesh, with a key and nothing else. */
export function watchDropin(plan: WatchPlan): string {
  const user = watchUser(plan.exportName);
  const addresses = [...new Set(plan.clients.map((c) => `${c.meshAddress}/32`))].sort();
  return [
    ...dropinHeader(`the watched syncs of export ${plan.exportName}`),
    ...meshOnlyMatch(user, "a host with a watched sync of the export", addresses, plan.meshAddress),
    "# The watchers: a key from the swarm file, whose command= follows one directory; nothing else.",
    `Match User ${user}`,
    `\tAuthorizedKeysFile ${sshdWord(watchKeysPath(plan.exportName))}`,
    ...LOCKED_SESSION,
    "",
  ].join("\n");
}

/** `WATCH_CONF_DIR/<export>.conf`: what `meshfs-watch` checks a directory against. */
export function watchConf(plan: Pick<WatchPlan, "exportName" | "mountpoint">): string {
  return [
    `# Installed by swarm: watched syncs of export ${plan.exportName} follow directories inside it.`,
    `MOUNTPOINT=${shellQuote(plan.mountpoint)}`,
    "",
  ].join("\n");
}

/** `meshfs-watch DIR`: the forced command of every watch key. */
export function meshfsWatchProgram(): string {
  return PROGRAM_TEXT;
}

/**
 * Converges the watch user, the program, its settings, the keys and the
 * sshd drop-in (reloaded after `sshd -t`), after proving that the user can
 * read every watched directory: inotify watches only what it can read. The
 * sftp step makes those directories the export user's with mode 0755, so
 * the watch user reads them as anyone does, and writes nothing.
 */
export function watchInstallScript(plan: WatchPlan): string {
  const q = shellQuote;
  const user = watchUser(plan.exportName);
  const dropin = watchDropinPath(plan.exportName);
  const [probe] = sortedClients(plan);
  const readable = [...new Set(plan.clients.map((c) => c.directory))]
    .sort()
    .map(
      (dir) => `runuser -u "$user" -- test -r ${q(dir)} -a -x ${q(dir)} ||
  fail "$user cannot read ${dir}, which a sync watches: give it read and search to others (chmod o+rx), and search (o+x) on each parent"`,
    )
    .join("\n");
  const dropinParts = sshdDropinParts(dropin, watchDropin(plan));
  return script(
    failFunction(plan.host),
    `command -v sshd >/dev/null || fail "sshd is missing: install openssh-server"
command -v inotifywait >/dev/null || fail "watched syncs of export ${plan.exportName} need inotifywait here: install inotify-tools"
${forcedCommandUserPart(user, watchHome(plan.exportName))}${readable}
`,
    writeFile({ path: MESHFS_WATCH_PROGRAM, content: meshfsWatchProgram(), mode: "0755" }),
    writeFile({ path: watchConfPath(plan.exportName), content: watchConf(plan), mode: "0644" }),
    writeFile({ path: watchKeysPath(plan.exportName), content: watchAuthorizedKeys(plan), mode: "0644" }),
    ...dropinParts.slice(0, 2),
    `${dropinParts[2]}# Proves the drop-in is in effect (sshd_config must Include ${SSHD_DROPIN_DIR}/*.conf).
effective=$(sshd -T -C ${q(`user=${user},host=${probe.name},addr=${probe.meshAddress},laddr=${plan.meshAddress},lport=22`)})
grep -qx ${q(`authorizedkeysfile ${watchKeysPath(plan.exportName)}`)} <<<"$effective" ||
  fail "sshd does not apply ${dropin}: make /etc/ssh/sshd_config Include ${SSHD_DROPIN_DIR}/*.conf at its top"
outside=$(sshd -T -C ${q(`user=${user},host=outside,addr=192.0.2.1,laddr=${plan.meshAddress},lport=22`)})
grep -qx 'denyusers \\*' <<<"$outside" ||
  fail "sshd would let ${user} in from outside the mesh: check ${dropin}"
`,
  );
}

/**
 * No watched sync is left: the keys, the drop-in and the settings go, and
 * sessions still open end. The user stays, like the export's own.
 */
export function watchTeardownScript(exportName: string): string {
  const q = shellQuote;
  const user = watchUser(exportName);
  return `rm -f ${q(watchDropinPath(exportName))} ${q(watchKeysPath(exportName))} ${q(watchConfPath(exportName))}
sshd -t && systemctl reload ssh.service
pkill -u ${q(user)} -x inotifywait 2>/dev/null || true
echo "swarm: no sync watches export ${exportName} any more; user ${user} is kept"
`;
}

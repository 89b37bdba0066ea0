/**
 * The export host's SSH side: the export user, its `authorized_keys`, and a
 * `sshd_config.d` drop-in that lets it in only over the mesh, only from the
 * hosts that use the export, and only for sftp (sshfs) or `unison -server`.
 *
 * sshfs sessions are chrooted into the dataset: the key of a client host is
 * then good for the export's files and nothing else on the export host.
 * sshd demands that a ChrootDirectory and its parents be root-owned and not
 * writable by group or others, so the dataset root belongs to root (mode
 * 0755) and everything below it to the export user; clients write inside
 * top-level directories, not at the root itself. Unison's `ssh://` mode
 * runs a real program (`unison -server`), which cannot run inside that
 * chroot, so hosts reaching the export that way get their own Match block,
 * unchrooted, with the command forced; a host can not be both.
 */
import { EXPORT_SENTINEL, failFunction } from "./zfs";
import { script, shellQuote, writeFile } from "./shell";

export const AUTHORIZED_KEYS_DIR = "/etc/ssh/swarm-authorized-keys";
export const SSHD_DROPIN_DIR = "/etc/ssh/sshd_config.d";
/** Per-sync marker file in each root of a sync; unison refuses to run when a root lacks it. */
export function syncSentinel(syncName: string): string {
  return `.swarm-sync-${syncName}`;
}

export interface SftpClient {
  /** Client host name: the comment of its key line. */
  readonly name: string;
  readonly meshAddress: string;
  /** `ssh-ed25519 AAAA...` (a trailing comment is dropped). */
  readonly publicKey: string;
}

export interface UnisonClient extends SftpClient {
  /** Sync name on the client host. */
  readonly sync: string;
  /** Directory inside the dataset that is the sync's remote root, relative, e.g. `wiki`. */
  readonly path: string;
}

export interface SftpPlan {
  /** Export host name, for messages. */
  readonly host: string;
  readonly exportName: string;
  /** The export user clients log in as. */
  readonly user: string;
  /** The export host's mesh address: sshd serves the user only on it. */
  readonly meshAddress: string;
  /** Dataset mountpoint: the chroot of sftp sessions. */
  readonly mountpoint: string;
  /** Hosts that mount the export with sshfs. */
  readonly clients: readonly SftpClient[];
  /** Hosts that sync with the export in unison's ssh:// mode. */
  readonly unisonClients: readonly UnisonClient[];
  /** Directories (relative to the dataset root) created for the export user: clients cannot create entries at the root. */
  readonly directories: readonly string[];
}

export function authorizedKeysPath(user: string): string {
  return `${AUTHORIZED_KEYS_DIR}/${user}`;
}

export function sshdDropinPath(exportName: string): string {
  return `${SSHD_DROPIN_DIR}/swarm-${exportName}.conf`;
}

/** Home of the export user: holds the state of `unison -server` (archives, backups). */
export function exportHome(exportName: string): string {
  return `/var/lib/swarm/meshfs/${exportName}`;
}

/** The command sshd forces for unison clients: archive and backup locations pinned, host name fixed. */
export function unisonServerCommand(exportName: string): string {
  const state = `${exportHome(exportName)}/unison`;
  return `env UNISON=${state} UNISONBACKUPDIR=${state}/backup UNISONLOCALHOSTNAME=swarm-${exportName} /usr/bin/unison -server`;
}

/** `ssh-ed25519 <base64>` out of a public key line, checked. */
export function ed25519Key(line: string, what: string): string {
  const match = /^(ssh-ed25519) ([A-Za-z0-9+/]+={0,2})(\s.*)?$/.exec(line.trim());
  if (!match) {
    throw new Error(`${what} is not an ssh-ed25519 public key: ${JSON.stringify(line)}`);
  }
  return `${match[1]} ${match[2]}`;
}

/** An sshd_config word: quoted when it holds blanks; `%` doubled as sshd expands tokens. */
export function sshdWord(value: string): string {
  const escaped = value.replace(/%/g, "%%");
  return /[\s"]/.test(escaped) ? `"${escaped.replace(/"/g, '\\"')}"` : escaped;
}

function byName<T extends { name: string }>(items: readonly T[]): T[] {
  return [...items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Throws when a host is both an sshfs client and a unison client: one address gets one Match block. */
export function checkClientSets(plan: Pick<SftpPlan, "exportName" | "clients" | "unisonClients">): void {
  const sftp = new Set(plan.clients.map((c) => c.meshAddress));
  for (const u of plan.unisonClients) {
    if (sftp.has(u.meshAddress)) {
      throw new Error(
        `host ${u.name} both mounts export ${plan.exportName} and reaches it over unison's ssh:// mode (sync ${u.sync}); ` +
          `sshd can give one address one kind of session: point the sync at the mount (remote.mountPath) instead`,
      );
    }
  }
}

/** The `authorized_keys` file of the export user: one restricted line per client, sorted by host. */
export function authorizedKeys(plan: SftpPlan): string {
  checkClientSets(plan);
  const lines = [
    `# Installed by swarm for export ${plan.exportName}. One key per client host, usable only from`,
    "# that host's mesh address and only for the forced command.",
  ];
  for (const client of byName(plan.clients)) {
    const key = ed25519Key(client.publicKey, `the key of ${client.name}`);
    lines.push(`restrict,from="${client.meshAddress}/32",command="internal-sftp" ${key} ${client.name}`);
  }
  for (const client of byName(plan.unisonClients)) {
    const key = ed25519Key(client.publicKey, `the key of ${client.name}`);
    const command = unisonServerCommand(plan.exportName);
    lines.push(
      `restrict,from="${client.meshAddress}/32",command="${command}" ${key} ${client.name} sync ${client.sync}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** sshd settings of a user that gets in with a key from swarm's file and runs nothing but its forced command. */
export const LOCKED_SESSION: readonly string[] = [
  "\tAuthenticationMethods publickey",
  "\tPubkeyAuthentication yes",
  "\tPasswordAuthentication no",
  "\tKbdInteractiveAuthentication no",
  "\tHostbasedAuthentication no",
  "\tDisableForwarding yes",
  "\tAllowTcpForwarding no",
  "\tAllowAgentForwarding no",
  "\tAllowStreamLocalForwarding no",
  "\tX11Forwarding no",
  "\tPermitTTY no",
  "\tPermitTunnel no",
  "\tPermitUserRC no",
];

/** The lines every swarm sshd drop-in starts with; `what` completes "Installed by swarm for ...". */
export function dropinHeader(what: string): string[] {
  return [
    `# Installed by swarm for ${what}; sshd -t checked it before the reload.`,
    "# sshd takes the first value it meets for each keyword, so the refusals come first.",
    "",
  ];
}

/**
 * The refusals a drop-in starts with for a user the mesh alone may reach: not from one of `from`
 * (CIDRs), or not arriving at this host's `meshAddress`. `who` completes "Refused unless it comes
 * from ...".
 */
export function meshOnlyMatch(
  user: string,
  who: string,
  from: readonly string[],
  meshAddress: string,
): string[] {
  return [
    `# Refused unless it comes from ${who} ...`,
    `Match User ${user} Address ${from.map((a) => `!${a}`).join(",")},*`,
    "\tDenyUsers *",
    "# ... and arrives over the mesh.",
    `Match User ${user} LocalAddress !${meshAddress},*`,
    "\tDenyUsers *",
  ];
}

/**
 * Converges the system user of a forced command (`$user`, home `$home`): made if missing, with
 * password `*` (not locked: sshd without PAM refuses keys of a locked account) and /bin/sh (sshd
 * runs the forced command through the login shell), recorded as swarm's, its home 0700.
 */
export function forcedCommandUserPart(user: string, home: string): string {
  return `user=${shellQuote(user)}
home=${shellQuote(home)}
if ! getent passwd "$user" >/dev/null; then
  useradd --system --user-group --home-dir "$home" --no-create-home --shell /bin/sh "$user"
  echo "swarm: created user $user"
fi
# sshd refuses keys of a locked account ('!') when it runs without PAM; '*' means no password, not locked.
if [ "$(getent shadow "$user" | cut -d: -f2)" != '*' ]; then
  usermod -p '*' "$user"
fi
# sshd runs the forced command through the login shell.
if [ "$(getent passwd "$user" | cut -d: -f6-7)" != "$home:/bin/sh" ]; then
  usermod -d "$home" -s /bin/sh "$user"
  echo "swarm: $user has home $home and shell /bin/sh"
fi
swarm_own user "$user" "$home" /bin/sh
[ -d "$home" ] || install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home"
`;
}

/** The sshd drop-in for the export user. */
export function sshdDropin(plan: SftpPlan): string {
  checkClientSets(plan);
  const user = plan.user;
  const cidrs = (clients: readonly SftpClient[]) => byName(clients).map((c) => `${c.meshAddress}/32`);
  const sftp = cidrs(plan.clients);
  const unison = cidrs(plan.unisonClients);
  const allowed = [...sftp, ...unison];
  const lines = dropinHeader(`export ${plan.exportName}`);
  if (allowed.length === 0) {
    lines.push(
      "# No host uses the export: the user is refused everywhere.",
      `Match User ${user}`,
      "\tDenyUsers *",
    );
  } else {
    lines.push(...meshOnlyMatch(user, "a host that uses the export", allowed, plan.meshAddress));
  }
  if (sftp.length > 0) {
    lines.push(
      "# sshfs clients: sftp only, locked into the dataset.",
      `Match User ${user} Address ${sftp.join(",")}`,
      `\tChrootDirectory ${sshdWord(plan.mountpoint)}`,
      "\tForceCommand internal-sftp",
    );
  }
  if (unison.length > 0) {
    lines.push(
      "# unison ssh:// clients: unison -server only (it cannot run inside the chroot).",
      `Match User ${user} Address ${unison.join(",")}`,
      `\tForceCommand ${unisonServerCommand(plan.exportName)}`,
    );
  }
  lines.push(
    "# Whoever is left: a key from the swarm file, nothing but the forced command.",
    `Match User ${user}`,
    `\tAuthorizedKeysFile ${sshdWord(authorizedKeysPath(user))}`,
    ...LOCKED_SESSION,
  );
  return `${lines.join("\n")}\n`;
}

function parentsOf(path: string): string[] {
  const parts = path.split("/").filter((p) => p !== "");
  return parts.map((_, i) => `/${parts.slice(0, i + 1).join("/")}`);
}

/**
 * Converges the export user, ownership, directories, `authorized_keys` and
 * the sshd drop-in; sshd is reloaded only after `sshd -t` accepts the new
 * drop-in, and a rejected drop-in is put back as it was.
 */
export function sftpScript(plan: SftpPlan): string {
  const q = shellQuote;
  const mp = plan.mountpoint;
  const home = exportHome(plan.exportName);
  const shell = plan.unisonClients.length > 0 ? "/bin/sh" : "/usr/sbin/nologin";
  const dropin = sshdDropinPath(plan.exportName);
  const probe = plan.clients[0] ?? plan.unisonClients[0];
  const chrootParents = parentsOf(mp)
    .map(
      (p) => `owner=$(stat -c %U:%a ${q(p)})
case $owner in root:?[0145][0145]) ;; *) fail "sshd refuses the chroot ${mp}: ${p} is $owner, it must be root-owned and not writable by group or others" ;; esac`,
    )
    .join("\n");
  const directories = [...plan.directories].sort().map(
    (dir) => `if [ ! -d ${q(`${mp}/${dir}`)} ]; then
  install -d -m 0755 -o "$user" -g "$group" ${q(`${mp}/${dir}`)}
  echo "swarm: created ${mp}/${dir} for $user"
fi`,
  );
  const unisonRoots = byName(plan.unisonClients).map((client) => {
    const root = `${mp}/${client.path}`;
    const sentinel = `${root}/${syncSentinel(client.sync)}`;
    // An emptied root that gets its sentinel back would have unison mirror the emptiness: only mark a
    // directory created right here, or one that holds data.
    return `fresh=0
if [ ! -d ${q(root)} ]; then
  install -d -m 0755 -o "$user" -g "$group" ${q(root)}
  echo "swarm: created ${root} for sync ${client.sync} of ${client.name}"
  fresh=1
fi
if [ ! -e ${q(sentinel)} ]; then
  if [ "$fresh" = 1 ] || [ -n "$(ls -A ${q(root)})" ]; then
    install -m 0644 -o "$user" -g "$group" /dev/null ${q(sentinel)}
    echo "swarm: marked ${root} as a root of sync ${client.sync} of ${client.name}"
  else
    echo "swarm: WARNING: ${root} is empty and unmarked; sync ${client.sync} of ${client.name} will not run until it is marked deliberately: install -o $user -m 0644 /dev/null ${sentinel}"
  fi
fi`;
  });
  const verify =
    probe === undefined
      ? ""
      : `# Proves the drop-in is in effect (sshd_config must Include ${SSHD_DROPIN_DIR}/*.conf).
effective=$(sshd -T -C ${q(`user=${plan.user},host=${probe.name},addr=${probe.meshAddress},laddr=${plan.meshAddress},lport=22`)})
grep -qx ${q(`authorizedkeysfile ${authorizedKeysPath(plan.user)}`)} <<<"$effective" ||
  fail "sshd does not apply ${dropin}: make /etc/ssh/sshd_config Include ${SSHD_DROPIN_DIR}/*.conf at its top"
outside=$(sshd -T -C ${q(`user=${plan.user},host=outside,addr=192.0.2.1,laddr=${plan.meshAddress},lport=22`)})
grep -qx 'denyusers \\*' <<<"$outside" ||
  fail "sshd would let ${plan.user} in from outside the mesh: check ${dropin}"
`;
  const dropinParts = sshdDropinParts(dropin, sshdDropin(plan));
  return script(
    failFunction(plan.host),
    `user=${q(plan.user)}
home=${q(home)}
shell=${q(shell)}
command -v sshd >/dev/null || fail "sshd is missing: install openssh-server"
${plan.unisonClients.length > 0 ? `command -v unison >/dev/null || fail "unison is missing: install unison on the export host (sync clients reach it over ssh://)"\n` : ""}mountpoint -q ${q(mp)} && [ -f ${q(`${mp}/${EXPORT_SENTINEL}`)} ] ||
  fail "dataset of export ${plan.exportName} is not mounted at ${mp}"
if ! getent passwd "$user" >/dev/null; then
  useradd --system --user-group --home-dir "$home" --no-create-home --shell "$shell" "$user"
  echo "swarm: created user $user"
fi
group=$(id -gn "$user")
# sshd refuses keys of a locked account ('!') when it runs without PAM; '*' means no password, not locked.
if [ "$(getent shadow "$user" | cut -d: -f2)" != '*' ]; then
  usermod -p '*' "$user"
  echo "swarm: $user has no password"
fi
if [ "$(getent passwd "$user" | cut -d: -f6)" != "$home" ]; then
  usermod -d "$home" "$user"
  echo "swarm: home of $user is $home"
fi
# A login shell only when unison clients need sshd to run their forced command through it.
if [ "$(getent passwd "$user" | cut -d: -f7)" != "$shell" ]; then
  usermod -s "$shell" "$user"
  echo "swarm: shell of $user is $shell"
fi
swarm_own user "$user" "$home" "$shell"
if [ ! -d "$home" ]; then
  install -d -m 0700 -o "$user" -g "$group" "$home"
  echo "swarm: created $home"
fi
# The chroot: sshd insists on root-owned directories up to and including it.
if [ "$(stat -c %U:%G:%a ${q(mp)})" != root:root:755 ]; then
  chown root:root ${q(mp)}
  chmod 0755 ${q(mp)}
  echo "swarm: ${mp} is root-owned, mode 0755 (the sftp chroot)"
fi
${chrootParents}
# Everything below the root belongs to the export user, so clients can write it.
given=$(find ${q(mp)} -mindepth 1 -xdev \\( -path ${q(`${mp}/.zfs`)} -o -path ${q(`${mp}/${EXPORT_SENTINEL}`)} \\) -prune -o \\
  \\( ! -user "$user" -o ! -group "$group" \\) -printf . -exec chown -h "$user:$group" {} + | wc -c) ||
  fail "cannot hand ${mp} to $user"
if [ "$given" != 0 ]; then
  echo "swarm: gave $given entries in ${mp} to $user"
fi
${[...directories, ...unisonRoots].join("\n")}
`,
    writeFile({ path: authorizedKeysPath(plan.user), content: authorizedKeys(plan), mode: "0644" }),
    ...dropinParts.slice(0, 2),
    `${dropinParts[2]}${verify}`,
  );
}

/**
 * Script parts that install an sshd drop-in: written only when it differs, checked with `sshd -t`,
 * put back as it was when sshd rejects it, and sshd reloaded only when it changed.
 */
export function sshdDropinParts(dropin: string, content: string): [string, string, string] {
  const q = shellQuote;
  return [
    `previous=$(mktemp)
had_previous=0
if [ -f ${q(dropin)} ]; then
  cp -p ${q(dropin)} "$previous"
  had_previous=1
fi
`,
    writeFile({ path: dropin, content, mode: "0644" }),
    `if swarm_changed ${q(dropin)}; then
  if ! checked=$(sshd -t 2>&1); then
    if [ "$had_previous" = 1 ]; then mv -f "$previous" ${q(dropin)}; else rm -f ${q(dropin)} "$previous"; fi
    fail "sshd rejects ${dropin}, put back as it was: $checked"
  fi
  systemctl reload ssh.service || fail "reloading ssh.service failed: see journalctl -u ssh.service"
  echo "swarm: reloaded ssh.service"
fi
rm -f "$previous"
`,
  ];
}

/** Removes the drop-in and the keys (the user and the data stay) and reloads sshd. */
export function sftpTeardownScript(exportName: string, user: string): string {
  const q = shellQuote;
  return `rm -f ${q(sshdDropinPath(exportName))} ${q(authorizedKeysPath(user))}
sshd -t && systemctl reload ssh.service
echo "swarm: export ${exportName} no longer served over ssh; user ${user} and the data are kept"
`;
}

/**
 * A throwaway sshd configuration shaped like Debian's (the drop-ins included first, before its own
 * settings), to ask sshd itself what a swarm drop-in does: whether `sshd -t` accepts it, and the
 * effective settings of one connection (`sshd -T -C`).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class SshdHarness {
  readonly dir: string;
  readonly config: string;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    mkdirSync(join(this.dir, "sshd_config.d"));
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(this.dir, "host_key")]);
    // sshd -t and -T want their privilege separation directory.
    mkdirSync("/run/sshd", { recursive: true });
    this.config = join(this.dir, "sshd_config");
    const stock = existsSync("/etc/ssh/sshd_config")
      ? readFileSync("/etc/ssh/sshd_config", "utf8").replace(/^Include .*$/m, "")
      : "KbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\n";
    writeFileSync(
      this.config,
      `Include ${this.dir}/sshd_config.d/*.conf\nHostKey ${this.dir}/host_key\n${stock}`,
    );
  }

  /** Puts a drop-in in place, replacing one of that name. */
  dropin(name: string, content: string): void {
    writeFileSync(join(this.dir, "sshd_config.d", name), content);
  }

  /** `sshd -t`: its exit status and what it printed on stderr. */
  check(): { status: number | null; stderr: string } {
    const result = spawnSync("sshd", ["-t", "-f", this.config], { encoding: "utf8" });
    return { status: result.status, stderr: result.stderr };
  }

  /** The effective settings (lower-case keyword → value) of a connection, e.g. `user=u,addr=a,laddr=b`. */
  effective(connection: string): Map<string, string> {
    const text = execFileSync("sshd", ["-T", "-f", this.config, "-C", `${connection},host=h,lport=22`], {
      encoding: "utf8",
    });
    return new Map(
      text
        .trim()
        .split("\n")
        .map((line) => {
          const cut = line.indexOf(" ");
          return [line.slice(0, cut), line.slice(cut + 1)] as [string, string];
        }),
    );
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * What `sshd -T` shows for a user given swarm's locked session: keys only, no forwarding of any
 * kind, no tty, no rc file. Written out here rather than derived from the lines it checks.
 */
export const LOCKED_SETTINGS: Readonly<Record<string, string>> = {
  authenticationmethods: "publickey",
  pubkeyauthentication: "yes",
  passwordauthentication: "no",
  kbdinteractiveauthentication: "no",
  hostbasedauthentication: "no",
  disableforwarding: "yes",
  allowtcpforwarding: "no",
  allowagentforwarding: "no",
  allowstreamlocalforwarding: "no",
  x11forwarding: "no",
  permittty: "no",
  permittunnel: "no",
  permituserrc: "no",
};

/** The settings of `LOCKED_SETTINGS` as sshd applies them to one connection. */
export function lockedSessionOf(settings: ReadonlyMap<string, string>): Record<string, string | undefined> {
  return Object.fromEntries(Object.keys(LOCKED_SETTINGS).map((k) => [k, settings.get(k)]));
}

/**
 * SSH host key pins as the operator's tools check them: the fingerprint
 * OpenSSH shows, and what a mismatch means. The program's own connections
 * are checked by the provider (connection.hostKey).
 */
import { createHash } from "node:crypto";
import { hostPort } from "../config/endpoints";

/** OpenSSH's fingerprint of a public key line: `SHA256:` and the unpadded base64 of its blob's SHA-256. */
export function sshFingerprint(publicKey: string): string {
  const blob = Buffer.from(publicKey.trim().split(/\s+/)[1] ?? "", "base64");
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Where a pinned key was expected: the address dialled and the key pinned for it. */
export interface PinnedHost {
  readonly host: string;
  readonly port: number;
  readonly hostKey?: string;
}

/**
 * What a host key mismatch means and what to do, from OpenSSH's stderr when
 * it refused the key a host offered (in place of its banner); undefined when
 * ssh failed for another reason. The provider itself fails with "ssh:
 * handshake failed: ssh: host key mismatch" after its dial retries, naming
 * neither key.
 */
export function hostKeyMismatch(pinned: PinnedHost, stderr: string): string | undefined {
  if (!/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed/.test(stderr)) {
    return undefined;
  }
  const offered =
    /key sent by the remote host is\s*(SHA256:[A-Za-z0-9+/]+)/.exec(stderr)?.[1] ?? "(not reported)";
  const expected = sshFingerprint(pinned.hostKey ?? "");
  return (
    `host key mismatch at ${hostPort(pinned.host, pinned.port)}: the host offered ${offered}, ` +
    `but the program pins ${expected}, so nothing was sent to it. ` +
    "If the host was reinstalled or its key replaced on purpose, read the new key (ssh-keyscan -t ed25519, " +
    "then compare its fingerprint with ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the host's console) " +
    "and pin it in the host's existing.hostKey or hcloud.hostKey; otherwise something else answers at that " +
    "address: find out what before going on."
  );
}

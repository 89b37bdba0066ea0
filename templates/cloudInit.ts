/**
 * The cloud-init user data a Hetzner server is created with: the SSH host
 * key the program generated for it, so that the first connection already
 * pins the key and nothing is trusted on first use.
 */

export interface HostKeyPair {
  /** OpenSSH private key text (`-----BEGIN OPENSSH PRIVATE KEY-----`). */
  readonly privateKey: string;
  /** `ssh-ed25519 AAAA... comment`. */
  readonly publicKey: string;
}

/**
 * `#cloud-config` that installs `hostKey` as the server's only SSH host key.
 * cloud-init's ssh module (cc_ssh) deletes the image's host keys
 * (`ssh_deletekeys`), writes the keys given under `ssh_keys` and, because
 * some are given, generates none; `ssh_genkeytypes: []` says so as well.
 * The server's sshd starts after cloud-init's network stage has run it.
 */
export function renderCloudConfig(hostKey: HostKeyPair): string {
  if (!/^ssh-ed25519 [A-Za-z0-9+/]+=*( \S+)?$/.test(hostKey.publicKey)) {
    throw new Error(
      `a host key is one line, ssh-ed25519 AAAA... [comment]: ${JSON.stringify(hostKey.publicKey)}`,
    );
  }
  const privateLines = hostKey.privateKey.trimEnd().split("\n");
  if (privateLines[0] !== "-----BEGIN OPENSSH PRIVATE KEY-----") {
    throw new Error("a host key's private half is an OpenSSH private key");
  }
  return [
    "#cloud-config",
    "# The SSH host key swarm generated for this server and pins on every connection.",
    "ssh_deletekeys: true",
    "ssh_genkeytypes: []",
    "ssh_keys:",
    "  ed25519_private: |",
    ...privateLines.map((line) => `    ${line}`),
    `  ed25519_public: ${hostKey.publicKey}`,
    "",
  ].join("\n");
}

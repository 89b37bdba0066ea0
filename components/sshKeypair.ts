import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

/** PKCS#8 DER prefix of an Ed25519 private key; the 32-byte seed follows. */
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** An SSH wire-format `string`: 32-bit big-endian length, then the bytes. */
function sshString(value: string | Buffer): Buffer {
  const body = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

/** The raw 32-byte Ed25519 public key of a seed, derived with node:crypto. */
export function ed25519PublicKey(seed: Buffer): Buffer {
  if (seed.length !== 32) {
    throw new Error(`an Ed25519 seed is 32 bytes, not ${seed.length}`);
  }
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
    format: "der",
    type: "pkcs8",
  });
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return spki.subarray(spki.length - 32);
}

export interface OpenSshKeypair {
  /** Unencrypted `-----BEGIN OPENSSH PRIVATE KEY-----` text, ending with a newline. */
  readonly privateKey: string;
  /** `ssh-ed25519 AAAA... comment`, without a newline. */
  readonly publicKey: string;
}

/**
 * An Ed25519 key pair in OpenSSH's formats, as `ssh-keygen -t ed25519 -N ''`
 * writes them. Deterministic: the check integer that OpenSSH normally draws
 * at random is derived from the seed, so re-rendering the key from state
 * gives the same text and no spurious diff.
 */
export function ed25519OpenSsh(seed: Buffer, comment: string): OpenSshKeypair {
  if (/[\n\r]/.test(comment)) {
    throw new Error(`an SSH key comment must be one line: ${JSON.stringify(comment)}`);
  }
  const publicKey = ed25519PublicKey(seed);
  const publicBlob = Buffer.concat([sshString("ssh-ed25519"), sshString(publicKey)]);
  const checkInt = createHash("sha256")
    .update("swarm openssh check-int\0")
    .update(seed)
    .digest()
    .subarray(0, 4);
  const unpadded = Buffer.concat([
    checkInt,
    checkInt,
    sshString("ssh-ed25519"),
    sshString(publicKey),
    sshString(Buffer.concat([seed, publicKey])),
    sshString(comment),
  ]);
  // The cipher "none" has a block size of 8; padding bytes count 1, 2, 3, ...
  const padding = Buffer.from(Array.from({ length: (8 - (unpadded.length % 8)) % 8 }, (_, i) => i + 1));
  const keyCount = Buffer.alloc(4);
  keyCount.writeUInt32BE(1);
  const blob = Buffer.concat([
    Buffer.from("openssh-key-v1\0", "binary"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    keyCount,
    sshString(publicBlob),
    sshString(Buffer.concat([unpadded, padding])),
  ]);
  const lines = blob.toString("base64").match(/.{1,70}/g) as string[];
  return {
    privateKey: [
      "-----BEGIN OPENSSH PRIVATE KEY-----",
      ...lines,
      "-----END OPENSSH PRIVATE KEY-----",
      "",
    ].join("\n"),
    publicKey: `ssh-ed25519 ${publicBlob.toString("base64")}${comment === "" ? "" : ` ${comment}`}`,
  };
}

export interface SshKeypairArgs {
  /** Comment at the end of the public key, e.g. `swarm-meshfs-satellite`: it names the key in `authorized_keys`. */
  readonly comment: string;
}

/**
 * An Ed25519 SSH key pair generated in the program: 32 random bytes kept
 * (secret) in state, the key pair derived from them. Nothing is generated on
 * a host, so the public key is known before any host is touched and can be
 * authorized on the server in the same deploy.
 */
export class SshKeypair extends pulumi.ComponentResource {
  /** OpenSSH private key text. Secret. */
  public readonly privateKey: pulumi.Output<string>;
  /** `ssh-ed25519 AAAA... comment`. */
  public readonly publicKey: pulumi.Output<string>;

  constructor(name: string, args: SshKeypairArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:ssh:Keypair", name, {}, opts);
    const seed = new random.RandomBytes(`${name}-seed`, { length: 32 }, { parent: this });
    const pair = pulumi
      .all([seed.base64, args.comment])
      .apply(([base64, comment]) => ed25519OpenSsh(Buffer.from(base64, "base64"), comment));
    this.privateKey = pulumi.secret(pair.apply((p) => p.privateKey));
    // The seed is secret, and secrecy spreads to everything derived from it; the public half is not.
    this.publicKey = pulumi.unsecret(pair.apply((p) => p.publicKey));
    this.registerOutputs({ privateKey: this.privateKey, publicKey: this.publicKey });
  }
}

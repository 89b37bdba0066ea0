import { createPrivateKey, createPublicKey } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

/** PKCS#8 DER header of an X25519 private key; the 32 raw key bytes follow it. */
const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

/**
 * Clamps 32 random bytes into a Curve25519 private key the way `wg genkey`
 * does (RFC 7748 section 5): clear the 3 low bits, clear the top bit, set
 * the second-highest bit. Returns a new buffer; idempotent.
 */
export function clampPrivateKey(bytes: Buffer): Buffer {
  if (bytes.length !== 32) {
    throw new Error(`a Curve25519 private key is 32 bytes, got ${bytes.length}`);
  }
  const key = Buffer.from(bytes);
  key[0] &= 248;
  key[31] &= 127;
  key[31] |= 64;
  return key;
}

/** The base64 X25519 public key of a base64 private key, as `wg pubkey` prints it. */
export function wireguardPublicKey(privateKeyBase64: string): string {
  const raw = Buffer.from(privateKeyBase64, "base64");
  if (raw.length !== 32) {
    throw new Error(`a WireGuard private key is 32 bytes in base64, got ${raw.length} bytes`);
  }
  const privateKey = createPrivateKey({
    key: Buffer.concat([X25519_PKCS8_PREFIX, raw]),
    format: "der",
    type: "pkcs8",
  });
  const jwk = createPublicKey(privateKey).export({ format: "jwk" });
  return Buffer.from(jwk.x as string, "base64url").toString("base64");
}

export interface WireGuardKeypairArgs {
  /** Change this value to generate a new key pair. Use `""` for the first key. */
  readonly rotation: string;
}

/**
 * A WireGuard key pair generated in the program: 32 random bytes from
 * `random.RandomBytes` (kept in state as a secret), clamped into a private
 * key, and the public key derived with `node:crypto`. Changing `rotation`
 * replaces the random bytes and so both keys.
 */
export class WireGuardKeypair extends pulumi.ComponentResource {
  /** Base64 private key. Secret. */
  public readonly privateKey: pulumi.Output<string>;
  /** Base64 public key. Plain: peers and stack outputs need it. */
  public readonly publicKey: pulumi.Output<string>;

  constructor(name: string, args: WireGuardKeypairArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:wireguard:Keypair", name, {}, opts);
    const seed = new random.RandomBytes(
      `${name}-seed`,
      { length: 32, keepers: { rotation: args.rotation } },
      { parent: this },
    );
    this.privateKey = pulumi.secret(
      seed.base64.apply((b64) => clampPrivateKey(Buffer.from(b64, "base64")).toString("base64")),
    );
    // A public key reveals nothing about the private one, so it leaves the secret wrapper.
    this.publicKey = pulumi.unsecret(this.privateKey.apply(wireguardPublicKey));
    this.registerOutputs({ privateKey: this.privateKey, publicKey: this.publicKey });
  }
}

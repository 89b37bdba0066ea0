import { execFileSync } from "node:child_process";
import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as fc from "fast-check";
import { ed25519OpenSsh, ed25519PublicKey, SshKeypair } from "../components/sshKeypair";
import { fakeBytes, installMocks, promiseOf } from "../offline/mockRuntime";

const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** What OpenSSH itself derives from a private key file: `ssh-keygen -y`. */
function sshKeygenPublic(privateKey: string): string {
  const dir = mkdtempSync(join(tmpdir(), "swarm-key-"));
  try {
    const path = join(dir, "id_ed25519");
    writeFileSync(path, privateKey, { mode: 0o600 });
    return execFileSync("ssh-keygen", ["-y", "-f", path], { encoding: "utf8" }).trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("ed25519OpenSsh", () => {
  const seed = fakeBytes("ssh-keypair-test", 32);

  it("writes a private key that ssh-keygen reads back to the same public key", () => {
    const pair = ed25519OpenSsh(seed, "swarm-meshfs-satellite");
    expect(pair.privateKey).toMatch(
      /^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END OPENSSH PRIVATE KEY-----\n$/,
    );
    expect(pair.publicKey).toMatch(
      /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+=* swarm-meshfs-satellite$/,
    );
    expect(sshKeygenPublic(pair.privateKey)).toBe(pair.publicKey);
  });

  it("is deterministic, and different seeds give different keys", () => {
    expect(ed25519OpenSsh(seed, "c")).toEqual(ed25519OpenSsh(Buffer.from(seed), "c"));
    expect(ed25519OpenSsh(fakeBytes("other", 32), "c").publicKey).not.toBe(
      ed25519OpenSsh(seed, "c").publicKey,
    );
  });

  it("derives a key pair that signs and verifies with node:crypto", () => {
    const privateKey = createPrivateKey({
      key: Buffer.concat([PKCS8_PREFIX, seed]),
      format: "der",
      type: "pkcs8",
    });
    const message = Buffer.from("swarm");
    const signature = sign(null, message, privateKey);
    const blob = Buffer.from(ed25519OpenSsh(seed, "c").publicKey.split(" ")[1], "base64");
    const raw = blob.subarray(blob.length - 32);
    const publicKey = createPublicKey({
      key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]),
      format: "der",
      type: "spki",
    });
    expect(verify(null, message, publicKey, signature)).toBe(true);
    expect(verify(null, Buffer.from("other"), publicKey, signature)).toBe(false);
    expect(raw.equals(ed25519PublicKey(seed))).toBe(true);
  });

  it("round-trips through ssh-keygen for any seed and comment length (padding)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.stringMatching(/^[a-z0-9-]{0,12}$/),
        (bytes, comment) => {
          const pair = ed25519OpenSsh(Buffer.from(bytes), comment);
          expect(sshKeygenPublic(pair.privateKey)).toBe(pair.publicKey);
        },
      ),
      { numRuns: 12 },
    );
  });

  it.each([
    ["a short seed", Buffer.alloc(31), "c", /32 bytes/],
    ["a multi-line comment", Buffer.alloc(32), "a\nb", /one line/],
  ])("rejects %s", (_, bytes, comment, message) => {
    expect(() => ed25519OpenSsh(bytes, comment)).toThrow(message);
  });
});

describe("SshKeypair", () => {
  it("keeps the private key secret, the public key public, and derives both from its seed", async () => {
    const mocks = await installMocks();
    const pair = new SshKeypair("meshfs-satellite-key", { comment: "swarm-meshfs-satellite" });
    const [privateKey, publicKey] = await Promise.all([
      promiseOf(pair.privateKey),
      promiseOf(pair.publicKey),
    ]);
    expect(await pulumi.isSecret(pair.privateKey)).toBe(true);
    expect(await pulumi.isSecret(pair.publicKey)).toBe(false);
    const seed = mocks.named("meshfs-satellite-key-seed");
    expect(seed.type).toBe("random:index/randomBytes:RandomBytes");
    expect(seed.inputs.length).toBe(32);
    expect(ed25519OpenSsh(fakeBytes("meshfs-satellite-key-seed", 32), "swarm-meshfs-satellite")).toEqual({
      privateKey,
      publicKey,
    });
  });
});

import { execFileSync } from "node:child_process";
import { createPrivateKey, createPublicKey, diffieHellman, randomBytes } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as fc from "fast-check";
import { clampPrivateKey, WireGuardKeypair, wireguardPublicKey } from "../components/wireguardKeypair";
import { installMocks, promiseOf } from "../offline/mockRuntime";

const b64 = (hex: string): string => Buffer.from(hex, "hex").toString("base64");

// RFC 7748 section 6.1: the private keys are given unclamped; X25519 clamps them itself.
const RFC7748 = [
  {
    who: "Alice",
    privateKey: "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    publicKey: "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  },
  {
    who: "Bob",
    privateKey: "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    publicKey: "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
  },
];
const RFC7748_SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

describe("wireguardPublicKey", () => {
  it.each(RFC7748)("derives $who's RFC 7748 public key", ({ privateKey, publicKey }) => {
    expect(wireguardPublicKey(b64(privateKey))).toBe(b64(publicKey));
  });

  it.each(RFC7748)(
    "derives $who's public key from the clamped private key too",
    ({ privateKey, publicKey }) => {
      const clamped = clampPrivateKey(Buffer.from(privateKey, "hex")).toString("base64");
      expect(wireguardPublicKey(clamped)).toBe(b64(publicKey));
    },
  );

  it("yields keys that agree on the RFC 7748 shared secret", () => {
    const [alice, bob] = RFC7748;
    const der = (hex: string) =>
      createPrivateKey({
        key: Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), Buffer.from(hex, "hex")]),
        format: "der",
        type: "pkcs8",
      });
    const shared = diffieHellman({
      privateKey: der(alice.privateKey),
      publicKey: createPublicKey(der(bob.privateKey)),
    });
    expect(shared.toString("hex")).toBe(RFC7748_SHARED);
  });

  it("rejects a key that is not 32 bytes", () => {
    expect(() => wireguardPublicKey(Buffer.alloc(31).toString("base64"))).toThrow(/32 bytes/);
  });

  it("equals `wg pubkey` for random clamped keys", () => {
    // wireguard-tools is a test dependency (installed by .ci/run): this comparison always runs.
    for (let i = 0; i < 8; i++) {
      const privateKey = clampPrivateKey(randomBytes(32)).toString("base64");
      const wg = execFileSync("wg", ["pubkey"], { input: `${privateKey}\n` })
        .toString()
        .trim();
      expect(wireguardPublicKey(privateKey)).toBe(wg);
    }
  });

  it("equals `wg pubkey` for a key from `wg genkey`", () => {
    const privateKey = execFileSync("wg", ["genkey"]).toString().trim();
    const wg = execFileSync("wg", ["pubkey"], { input: `${privateKey}\n` })
      .toString()
      .trim();
    expect(wireguardPublicKey(privateKey)).toBe(wg);
    // wg genkey clamps; so does clampPrivateKey, and clamping a clamped key changes nothing.
    expect(clampPrivateKey(Buffer.from(privateKey, "base64")).toString("base64")).toBe(privateKey);
  });
});

describe("clampPrivateKey", () => {
  const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a));

  it("is idempotent", () => {
    fc.assert(
      fc.property(bytes32, (raw) => {
        const once = clampPrivateKey(raw);
        expect(clampPrivateKey(once).equals(once)).toBe(true);
      }),
    );
  });

  it("clears the 3 low bits and the top bit, sets bit 254, and touches nothing else", () => {
    fc.assert(
      fc.property(bytes32, (raw) => {
        const key = clampPrivateKey(raw);
        expect(key[0] & 7).toBe(0);
        expect(key[31] & 0x80).toBe(0);
        expect(key[31] & 0x40).toBe(0x40);
        expect(key.subarray(1, 31).equals(raw.subarray(1, 31))).toBe(true);
        expect(key[0]).toBe(raw[0] & 248);
        expect(key[31]).toBe((raw[31] & 127) | 64);
      }),
    );
  });

  it("does not modify its argument", () => {
    const raw = Buffer.alloc(32, 0xff);
    clampPrivateKey(raw);
    expect(raw.equals(Buffer.alloc(32, 0xff))).toBe(true);
  });

  it("rejects anything but 32 bytes", () => {
    expect(() => clampPrivateKey(Buffer.alloc(33))).toThrow(/32 bytes/);
  });
});

describe("WireGuardKeypair", () => {
  it("derives a clamped secret private key and its plain public key from 32 random bytes", async () => {
    const mocks = await installMocks();
    const keypair = new WireGuardKeypair("anchor-wg", { rotation: "2024-01" });
    const [privateKey, publicKey] = await Promise.all([
      promiseOf(keypair.privateKey),
      promiseOf(keypair.publicKey),
    ]);

    expect(await pulumi.isSecret(keypair.privateKey)).toBe(true);
    expect(await pulumi.isSecret(keypair.publicKey)).toBe(false);

    const seed = mocks.named("anchor-wg-seed");
    expect(seed.type).toBe("random:index/randomBytes:RandomBytes");
    expect(seed.inputs).toEqual({ length: 32, keepers: { rotation: "2024-01" } });

    const raw = Buffer.from(privateKey, "base64");
    expect(raw).toHaveLength(32);
    expect(clampPrivateKey(raw).equals(raw)).toBe(true);
    expect(publicKey).toBe(wireguardPublicKey(privateKey));
    const wg = execFileSync("wg", ["pubkey"], { input: `${privateKey}\n` })
      .toString()
      .trim();
    expect(publicKey).toBe(wg);
  });
});

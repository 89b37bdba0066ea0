/** The user data that gives a Hetzner server the SSH host key the program pins. */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { ed25519OpenSsh } from "../components/sshKeypair";
import { sshFingerprint } from "../components/hostKey";
import { renderCloudConfig } from "../templates/cloudInit";

const PAIR = ed25519OpenSsh(Buffer.alloc(32, 7), "root@anchor");

test("renders the host key as cloud-init's ssh_keys, and nothing else (golden)", () => {
  expect(renderCloudConfig(PAIR)).toMatchSnapshot();
});

test("is YAML that cloud-init reads as one Ed25519 host key, the image's keys deleted and none generated", () => {
  const text = renderCloudConfig(PAIR);
  expect(text.startsWith("#cloud-config\n")).toBe(true);
  expect(parse(text)).toEqual({
    ssh_deletekeys: true,
    ssh_genkeytypes: [],
    ssh_keys: { ed25519_private: PAIR.privateKey, ed25519_public: PAIR.publicKey },
  });
});

test("the private key it installs is the one whose public half is pinned (ssh-keygen agrees)", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-hostkey-"));
  try {
    const file = path.join(dir, "ssh_host_ed25519_key");
    const installed = (parse(renderCloudConfig(PAIR)) as { ssh_keys: { ed25519_private: string } }).ssh_keys;
    fs.writeFileSync(file, installed.ed25519_private, { mode: 0o600 });
    const derived = spawnSync("ssh-keygen", ["-y", "-f", file], { encoding: "utf8" });
    expect(derived.status).toBe(0);
    expect(derived.stdout.trim().split(" ").slice(0, 2)).toEqual(PAIR.publicKey.split(" ").slice(0, 2));
    fs.writeFileSync(`${file}.pub`, `${PAIR.publicKey}\n`);
    const listed = spawnSync("ssh-keygen", ["-l", "-f", `${file}.pub`], { encoding: "utf8" });
    expect(listed.stdout.split(" ")[1]).toBe(sshFingerprint(PAIR.publicKey));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.each([
  ["an RSA public key", { ...PAIR, publicKey: "ssh-rsa AAAAB3NzaC1yc2E root@anchor" }, /ssh-ed25519/],
  ["a public key over two lines", { ...PAIR, publicKey: `${PAIR.publicKey}\nx` }, /one line/],
  ["a PEM private key", { ...PAIR, privateKey: "-----BEGIN PRIVATE KEY-----\nx\n" }, /OpenSSH private key/],
])("refuses %s", (_, pair, message) => {
  expect(() => renderCloudConfig(pair)).toThrow(message);
});

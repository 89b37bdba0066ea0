/**
 * The lab engine's SSH runner against a real sshd on loopback: it pins the
 * host key the program's connection carries, as the provider does, and says
 * what a mismatch means instead of ssh's banner.
 */
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { hostKeyMismatch, sshFingerprint } from "../components/hostKey";
import { sshRun } from "../lab/engine";

const asRoot = process.getuid?.() === 0 && fs.existsSync("/usr/sbin/sshd");
const describeAsRoot = asRoot ? describe : describe.skip;

function keygen(file: string): string {
  const made = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", file]);
  expect(made.status).toBe(0);
  return fs.readFileSync(`${file}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

test("a connection without a host key is refused before anything is dialled", async () => {
  const result = await sshRun(
    { host: "192.0.2.1", port: 22, user: "root", privateKey: "unused" },
    "true",
    undefined,
  );
  expect(result.code).toBe(255);
  expect(result.stderr).toContain("pins no host key");
});

test("only ssh's mismatch is rewritten", () => {
  const connection = {
    host: "192.0.2.1",
    port: 22,
    user: "root",
    privateKey: "",
    hostKey: "ssh-ed25519 AAAA",
  };
  expect(
    hostKeyMismatch(connection, "ssh: connect to host 192.0.2.1 port 22: Connection refused"),
  ).toBeUndefined();
});

test("a mismatch at an IPv6 address names it in brackets, as ssh and the provider write it", () => {
  const pinned = { host: "2001:db8::1", port: 22, hostKey: "ssh-ed25519 AAAA" };
  const stderr =
    "@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n" +
    "The fingerprint for the ED25519 key sent by the remote host is\nSHA256:abc.\n";
  expect(hostKeyMismatch(pinned, stderr)).toMatch(
    /^host key mismatch at \[2001:db8::1\]:22: the host offered SHA256:abc/,
  );
});

describeAsRoot("against sshd on loopback", () => {
  let dir: string;
  let sshd: ChildProcess;
  let port: number;
  let hostKey: string;
  let otherKey: string;
  let adminKey: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-sshd-"));
    hostKey = keygen(path.join(dir, "host"));
    otherKey = keygen(path.join(dir, "other"));
    const admin = keygen(path.join(dir, "admin"));
    adminKey = fs.readFileSync(path.join(dir, "admin"), "utf8");
    fs.writeFileSync(path.join(dir, "authorized_keys"), `${admin}\n`, { mode: 0o600 });
    fs.mkdirSync("/run/sshd", { recursive: true });
    port = await freePort();
    sshd = spawn(
      "/usr/sbin/sshd",
      [
        "-D",
        "-e",
        "-f",
        "/dev/null",
        "-p",
        String(port),
        "-h",
        path.join(dir, "host"),
        "-o",
        "ListenAddress=127.0.0.1",
        "-o",
        `AuthorizedKeysFile=${path.join(dir, "authorized_keys")}`,
        "-o",
        "StrictModes=no",
        "-o",
        "PidFile=none",
      ],
      { stdio: "ignore" },
    );
    // Ready when it accepts a connection.
    for (let i = 0; i < 50; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const socket = net.connect(port, "127.0.0.1", () => {
          socket.end();
          resolve(true);
        });
        socket.on("error", () => resolve(false));
      });
      if (up) {
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("sshd did not start");
  });

  afterAll(() => {
    sshd?.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const connection = () => ({ host: "127.0.0.1", port, user: "root", privateKey: adminKey });

  test("runs the command when the host offers the pinned key", async () => {
    const result = await sshRun({ ...connection(), hostKey }, "echo pinned", "");
    expect(result).toMatchObject({ code: 0, stdout: "pinned\n" });
  });

  test("refuses a host that offers another key, naming both fingerprints and what to do", async () => {
    const result = await sshRun({ ...connection(), hostKey: otherKey }, "touch /should-not-exist", "");
    expect(result.code).toBe(255);
    expect(result.stderr).toContain(`host key mismatch at 127.0.0.1:${port}`);
    expect(result.stderr).toContain(`the host offered ${sshFingerprint(hostKey)}`);
    expect(result.stderr).toContain(`the program pins ${sshFingerprint(otherKey)}`);
    expect(result.stderr).toContain("ssh-keyscan -t ed25519");
    expect(sshFingerprint(hostKey)).not.toBe(sshFingerprint(otherKey));
  });

  test("dials again after connections that close before the handshake, as the provider does, and runs the command once", async () => {
    // A front that hangs up on the first two connections and hands the rest to sshd.
    let accepted = 0;
    const front = net.createServer((socket) => {
      accepted += 1;
      if (accepted <= 2) {
        socket.destroy();
        return;
      }
      const upstream = net.connect(port, "127.0.0.1");
      socket.pipe(upstream).pipe(socket);
      upstream.on("error", () => socket.destroy());
      socket.on("error", () => upstream.destroy());
    });
    const frontPort = await new Promise<number>((resolve) =>
      front.listen(0, "127.0.0.1", () => resolve((front.address() as net.AddressInfo).port)),
    );
    try {
      const marker = path.join(dir, "runs");
      const result = await sshRun(
        { ...connection(), port: frontPort, hostKey },
        `echo run >> ${marker}; echo dialled`,
        "",
      );
      expect(result).toMatchObject({ code: 0, stdout: "dialled\n" });
      expect(accepted).toBe(3);
      expect(fs.readFileSync(marker, "utf8")).toBe("run\n");
    } finally {
      front.close();
    }
  });

  test("gives up after the provider's ten dials, saying so", async () => {
    const closed = await freePort();
    const result = await sshRun({ ...connection(), port: closed, hostKey }, "true", "");
    expect(result.code).toBe(255);
    expect(result.stderr).toMatch(
      /^after 10 failed attempts: ssh: connect to host 127\.0\.0\.1 port \d+: Connection refused/,
    );
  }, 30_000);
});

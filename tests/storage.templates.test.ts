/**
 * The storage templates: golden files for the production layout, every unit
 * through `systemd-analyze verify`, the sshd drop-in through sshd itself, and
 * the guard, profile, status and zfs scripts run for real (the snapshot
 * program in snapshotRetention.test.ts).
 */
import { execFileSync, spawnSync, SpawnSyncReturns } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { LOCKED_SETTINGS, lockedSessionOf, SshdHarness } from "./sshdHarness";
import {
  authorizedKeys,
  checkClientSets,
  sftpScript,
  sftpTeardownScript,
  sshdDropin,
  syncSentinel,
} from "../templates/sftp";
import {
  automountActivation,
  automountScript,
  automountTeardownScript,
  automountUnit,
  clientKeyScript,
  knownHosts,
  mountOptions,
  mountSource,
  mountUnit,
  mountUnitNames,
} from "../templates/sshfs";
import { systemdEscapePath } from "../templates/systemd";
import { script } from "../templates/shell";
import {
  guardScript,
  statusScript,
  syncInstallScript,
  syncKeyScript,
  syncService,
  syncTeardownScript,
  syncTimer,
  syncUnitNames,
  unisonProfile,
  watchScript,
  watchService,
} from "../templates/unison";
import {
  EXPORT_SENTINEL,
  snapshotScript,
  snapshotService,
  snapshotsInstallScript,
  snapshotTimer,
  propertyOrder,
  snapshotUnitName,
  zfsScript,
  UNIT_DIR,
  ZfsPlan,
} from "../templates/zfs";
import { labConfig, UNBOOTED } from "../lab/fleet";
import { planFleet } from "../config/model";
import { stepsOf } from "../config/plan";
import { Sandbox } from "./sandbox";
import {
  FILE_ZFS,
  HOST_KEY,
  LAB_ZFS,
  PROD_MOUNT_PLANS,
  PROD_SFTP,
  PROD_SNAPSHOTS,
  PROD_SYNC_PLAN,
  PROD_ZFS,
  SSH_SFTP,
  SSH_SYNC_PLAN,
} from "./storageFixtures";

const [SATELLITE_MOUNT, NATIVE_MOUNT] = PROD_MOUNT_PLANS;

/** Every rendered file, by the name it has on its host. */
const GOLDEN: Record<string, () => string> = {
  "anchor zfs script (openzfs, volume)": () => zfsScript(PROD_ZFS),
  "lab anchor zfs script (openzfs, virtual disk)": () => zfsScript(LAB_ZFS),
  "anchor zfs script (openzfs, sparse files)": () => zfsScript(FILE_ZFS),
  "/usr/local/lib/swarm/zfs-snapshot": () => snapshotScript(),
  "swarm-snapshot-meshfs.service": () => snapshotService(PROD_SNAPSHOTS),
  "swarm-snapshot-meshfs.timer": () => snapshotTimer(PROD_SNAPSHOTS),
  "anchor snapshots script": () => snapshotsInstallScript("anchor", PROD_SNAPSHOTS),
  "/etc/ssh/sshd_config.d/swarm-meshfs.conf": () => sshdDropin(PROD_SFTP),
  "/etc/ssh/swarm-authorized-keys/meshfs": () => authorizedKeys(PROD_SFTP),
  "anchor sftp script": () => sftpScript(PROD_SFTP),
  "anchor sftp teardown": () => sftpTeardownScript("meshfs", "meshfs"),
  "ssh:// variant sshd drop-in": () => sshdDropin(SSH_SFTP),
  "ssh:// variant authorized_keys": () => authorizedKeys(SSH_SFTP),
  "/etc/swarm/meshfs/meshfs.known_hosts": () => knownHosts("meshfs", HOST_KEY),
  "satellite mnt-meshfs.mount": () => mountUnit(SATELLITE_MOUNT),
  "hetzner-native mnt-meshfs.mount": () => mountUnit(NATIVE_MOUNT),
  "mnt-meshfs.automount": () => automountUnit(NATIVE_MOUNT),
  "hetzner-native automount script": () => automountScript("hetzner-native", NATIVE_MOUNT, HOST_KEY),
  "client key script": () => clientKeyScript("meshfs"),
  "automount teardown": () => automountTeardownScript(NATIVE_MOUNT),
  "/etc/swarm/unison/wiki.prf": () => unisonProfile(PROD_SYNC_PLAN),
  "swarm-sync-wiki.service": () => syncService(PROD_SYNC_PLAN),
  "swarm-sync-wiki.timer": () => syncTimer(PROD_SYNC_PLAN),
  "hetzner-native sync script": () => syncInstallScript("hetzner-native", PROD_SYNC_PLAN),
  "sync teardown": () => syncTeardownScript("wiki"),
  "/usr/local/lib/swarm/unison-guard": () => guardScript(),
  "/usr/local/lib/swarm/unison-status": () => statusScript(),
  "/usr/local/lib/swarm/unison-watch": () => watchScript(),
  "ssh:// variant /etc/swarm/unison/wiki-copy.prf": () => unisonProfile(SSH_SYNC_PLAN),
  "ssh:// variant swarm-sync-wiki-copy.service": () => syncService(SSH_SYNC_PLAN),
  "ssh:// variant swarm-sync-wiki-copy-watch.service": () => watchService(SSH_SYNC_PLAN),
  "ssh:// variant sync script": () => syncInstallScript("archive", SSH_SYNC_PLAN, HOST_KEY),
  "ssh:// variant sync key script": () => syncKeyScript("archive", "wiki-copy", "root"),
};

describe("golden files", () => {
  it.each(Object.keys(GOLDEN))("%s", (name) => {
    const text = GOLDEN[name]();
    expect(text.endsWith("\n")).toBe(true);
    expect(text).toBe(GOLDEN[name]());
    expect(text).toMatchSnapshot();
  });

  it.each(Object.keys(GOLDEN).filter((n) => /script|teardown|zfs-snapshot|unison-/.test(n)))(
    "%s is valid bash",
    (name) => {
      const result = spawnSync("bash", ["-n"], { input: GOLDEN[name]() });
      expect(result.stderr.toString()).toBe("");
      expect(result.status).toBe(0);
    },
  );
});

/** The units of the production layout (and its variants), rendered with real numeric ids. */
const UNITS: Record<string, string> = {
  [snapshotUnitName("meshfs", "service")]: snapshotService(PROD_SNAPSHOTS),
  [snapshotUnitName("meshfs", "timer")]: snapshotTimer(PROD_SNAPSHOTS),
  [mountUnitNames("/mnt/meshfs").mount]: mountUnit(NATIVE_MOUNT, "1000", "1000"),
  [mountUnitNames("/mnt/meshfs").automount]: automountUnit(NATIVE_MOUNT),
  [syncUnitNames("wiki").service]: syncService(PROD_SYNC_PLAN),
  [syncUnitNames("wiki").timer]: syncTimer(PROD_SYNC_PLAN),
  [syncUnitNames("wiki-copy").service]: syncService(SSH_SYNC_PLAN),
  [syncUnitNames("wiki-copy").timer]: syncTimer(SSH_SYNC_PLAN),
  [syncUnitNames("wiki-copy").watch]: watchService(SSH_SYNC_PLAN),
  // A path that needs escaping, to prove Where= and the unit name agree.
  [mountUnitNames("/srv/mesh-fs data").mount]: mountUnit(
    { ...NATIVE_MOUNT, path: "/srv/mesh-fs data" },
    "0",
    "0",
  ),
  [mountUnitNames("/srv/mesh-fs data").automount]: automountUnit({
    ...NATIVE_MOUNT,
    path: "/srv/mesh-fs data",
  }),
};

/** Programs the units start; verify insists they exist and are executable. */
const EXECUTABLES = [
  "/usr/bin/unison",
  "/usr/bin/flock",
  "/usr/local/lib/swarm/unison-guard",
  "/usr/local/lib/swarm/unison-status",
  "/usr/local/lib/swarm/unison-watch",
  "/usr/local/lib/swarm/zfs-snapshot",
  "/usr/bin/sh",
  "/usr/bin/true",
];

describe("systemd-analyze verify", () => {
  let root: string;

  beforeAll(() => {
    // A root tree with the distribution's units (for targets like sysinit.target), a stand-in for
    // wg-quick@.service (wireguard-tools need not be installed here) and our units.
    root = mkdtempSync(join(tmpdir(), "swarm-units-"));
    for (const dir of [
      "usr/lib/systemd",
      "etc/systemd/system",
      "usr/bin",
      "usr/sbin",
      "usr/local/lib/swarm",
    ]) {
      mkdirSync(join(root, dir), { recursive: true });
    }
    for (const link of ["bin", "sbin", "lib"]) {
      symlinkSync(`usr/${link}`, join(root, link));
    }
    cpSync("/usr/lib/systemd/system", join(root, "usr/lib/systemd/system"), {
      recursive: true,
      dereference: false,
    });
    writeFileSync(
      join(root, "usr/lib/systemd/system/wg-quick@.service"),
      "[Unit]\nDescription=WireGuard via wg-quick(8) for %I\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/true\n",
    );
    for (const exe of EXECUTABLES) {
      writeFileSync(join(root, exe), "#!/bin/sh\n");
      chmodSync(join(root, exe), 0o755);
    }
    for (const [name, text] of Object.entries(UNITS)) {
      writeFileSync(join(root, "etc/systemd/system", name), text);
    }
  });

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it.each(Object.keys(UNITS))("%s passes without a word about it", (name) => {
    const path = join(root, "etc/systemd/system", name);
    const result = spawnSync("systemd-analyze", ["verify", "--man=no", `--root=${root}`, path], {
      encoding: "utf8",
    });
    const output = `${result.stdout}${result.stderr}`;
    const stem = name.replace(/\.[a-z]+$/, "");
    const aboutUs = output.split("\n").filter((line) => line.includes(stem) || line.includes(path));
    expect(aboutUs).toEqual([]);
    expect(result.status).toBe(0);
  });

  it("notices a broken unit (the check can fail)", () => {
    const name = "swarm-broken.automount";
    const path = join(root, "etc/systemd/system", name);
    writeFileSync(path, "[Automount]\nWhere=/mnt/elsewhere\nTimeoutIdleSec=soon\n");
    const result = spawnSync("systemd-analyze", ["verify", "--man=no", `--root=${root}`, path], {
      encoding: "utf8",
    });
    expect(`${result.stdout}${result.stderr}`).toMatch(/swarm-broken/);
  });

  it("names mount units as systemd-escape --path does, and Where= matches", () => {
    for (const path of ["/mnt/meshfs", "/srv/mesh-fs data"]) {
      const escaped = execFileSync("systemd-escape", ["--path", path], { encoding: "utf8" }).trim();
      expect(mountUnitNames(path)).toEqual({ mount: `${escaped}.mount`, automount: `${escaped}.automount` });
      expect(UNITS[`${escaped}.mount`]).toContain(`\nWhere=${path}\n`);
      expect(systemdEscapePath(path)).toBe(escaped);
    }
  });
});

describe("mount options", () => {
  const options = mountOptions(NATIVE_MOUNT, "1000", "1001").split(",");

  it("detect a dead tunnel, never prompt, and pin the host key", () => {
    expect(options).toEqual(
      expect.arrayContaining([
        "_netdev",
        "reconnect",
        "ServerAliveInterval=5",
        "ServerAliveCountMax=3",
        "ConnectTimeout=5",
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "HostKeyAlias=swarm-meshfs",
        "UserKnownHostsFile=/etc/swarm/meshfs/meshfs.known_hosts",
        "IdentityFile=/etc/swarm/meshfs/meshfs.key",
        "uid=1000",
        "gid=1001",
      ]),
    );
  });

  it("keep sshfs's 20 s cache, unless a watched sync goes through the mount", () => {
    expect(options.filter((o) => o.startsWith("dcache_") || o.startsWith("cache"))).toEqual([]);
    expect(mountOptions({ ...NATIVE_MOUNT, watched: true }, "1000", "1001").split(",")).toContain(
      "dcache_timeout=0",
    );
    // In the lab stack the wiki sync is watched: hetzner-native's mount follows the export host.
    const lab = planFleet(labConfig("lab", UNBOOTED));
    expect(stepsOf(lab.steps, "mount").map((m) => [m.host, m.units.watched])).toEqual([
      ["satellite", false],
      ["hetzner-native", true],
    ]);
  });

  it("never turn host key checking off, in any rendered file", () => {
    for (const render of Object.values(GOLDEN)) {
      expect(render()).not.toMatch(/StrictHostKeyChecking[= ]+(no|off|accept-new)/i);
    }
  });

  it("bind the mount to the WireGuard unit", () => {
    const unit = mountUnit(NATIVE_MOUNT);
    expect(unit).toContain("\nBindsTo=wg-quick@wg0.service\n");
    expect(unit).toContain("\nAfter=wg-quick@wg0.service\n");
    expect(automountUnit(NATIVE_MOUNT)).toContain("\nTimeoutIdleSec=10min\n");
    expect(automountUnit({ ...NATIVE_MOUNT, idleTimeout: 0 })).toContain("\nTimeoutIdleSec=0\n");
  });
});

describe("authorized_keys", () => {
  const lines = authorizedKeys(PROD_SFTP)
    .split("\n")
    .filter((l) => l !== "" && !l.startsWith("#"));

  it("lets exactly the mounting hosts in, each from its own mesh address, for sftp only", () => {
    const from = lines.map((l) => /from="([^"]+)"/.exec(l)?.[1]);
    expect(from.sort()).toEqual(PROD_SFTP.clients.map((c) => `${c.meshAddress}/32`).sort());
    for (const line of lines) {
      expect(line).toMatch(
        /^restrict,from="10\.8\.0\.\d+\/32",command="internal-sftp" ssh-ed25519 AAAA\S+ \S+$/,
      );
    }
  });

  it("gives unison clients unison -server and nothing else", () => {
    const unison = authorizedKeys(SSH_SFTP)
      .split("\n")
      .filter((l) => l.includes("10.8.0.4"));
    expect(unison).toHaveLength(1);
    expect(unison[0]).toMatch(
      /^restrict,from="10\.8\.0\.4\/32",command="env UNISON=\S+ .*\/usr\/bin\/unison -server" /,
    );
  });

  it("refuses a host that would be both an sshfs and a unison client", () => {
    const both = { ...SSH_SFTP, unisonClients: [{ ...SSH_SFTP.unisonClients[0], meshAddress: "10.8.0.2" }] };
    expect(() => checkClientSets(both)).toThrow(/both mounts export meshfs .*\(remote\.mountPath\)/);
  });

  it("refuses a key that is not ed25519", () => {
    const bad = { ...PROD_SFTP, clients: [{ ...PROD_SFTP.clients[0], publicKey: "ssh-rsa AAAAB3Nza x" }] };
    expect(() => authorizedKeys(bad)).toThrow(/not an ssh-ed25519 public key/);
  });
});

/** sshd's effective settings for one connection, from the drop-in under a stock Debian sshd_config. */
describe("sshd drop-in", () => {
  let sshd: SshdHarness;

  beforeAll(() => {
    sshd = new SshdHarness("swarm-sshd-");
  });

  afterAll(() => sshd.remove());

  function effective(dropin: string, connection: string): Map<string, string> {
    sshd.dropin("swarm-meshfs.conf", dropin);
    return sshd.effective(connection);
  }

  it("passes sshd -t", () => {
    for (const plan of [PROD_SFTP, SSH_SFTP, { ...PROD_SFTP, clients: [] }]) {
      sshd.dropin("swarm-meshfs.conf", sshdDropin(plan));
      expect(sshd.check()).toEqual({ status: 0, stderr: "" });
    }
  });

  it.each([
    ["satellite over the mesh", "user=meshfs,addr=10.8.0.2,laddr=10.8.0.1"],
    ["hetzner-native over the mesh", "user=meshfs,addr=10.8.0.3,laddr=10.8.0.1"],
  ])("lets %s in for sftp, chrooted, keys from the swarm file only", (_, connection) => {
    const settings = effective(sshdDropin(PROD_SFTP), connection);
    expect(settings.get("denyusers")).toBeUndefined();
    expect(settings.get("chrootdirectory")).toBe("/tank/meshfs/state");
    expect(settings.get("forcecommand")).toBe("internal-sftp");
    expect(settings.get("authorizedkeysfile")).toBe("/etc/ssh/swarm-authorized-keys/meshfs");
    expect(lockedSessionOf(settings)).toEqual(LOCKED_SETTINGS);
  });

  it.each([
    ["a mesh host that does not use the export", "user=meshfs,addr=10.8.0.9,laddr=10.8.0.1"],
    ["a client arriving outside the mesh", "user=meshfs,addr=10.8.0.2,laddr=203.0.113.1"],
    ["the internet", "user=meshfs,addr=192.0.2.1,laddr=203.0.113.1"],
  ])("refuses the export user from %s", (_, connection) => {
    expect(effective(sshdDropin(PROD_SFTP), connection).get("denyusers")).toBe("*");
  });

  it("leaves every other user alone", () => {
    const settings = effective(sshdDropin(PROD_SFTP), "user=root,addr=192.0.2.1,laddr=203.0.113.1");
    expect(settings.get("denyusers")).toBeUndefined();
    expect(settings.get("chrootdirectory")).toBe("none");
    expect(settings.get("forcecommand")).toBe("none");
  });

  it("runs unison clients unchrooted with unison -server forced", () => {
    const settings = effective(sshdDropin(SSH_SFTP), "user=meshfs,addr=10.8.0.4,laddr=10.8.0.1");
    expect(settings.get("denyusers")).toBeUndefined();
    expect(settings.get("chrootdirectory")).toBe("none");
    expect(settings.get("forcecommand")).toMatch(/^env UNISON=\S+ .*\/usr\/bin\/unison -server$/);
    expect(
      effective(sshdDropin(SSH_SFTP), "user=meshfs,addr=10.8.0.2,laddr=10.8.0.1").get("forcecommand"),
    ).toBe("internal-sftp");
  });

  it("refuses everyone when no host uses the export", () => {
    const none = { ...PROD_SFTP, clients: [] };
    expect(effective(sshdDropin(none), "user=meshfs,addr=10.8.0.2,laddr=10.8.0.1").get("denyusers")).toBe(
      "*",
    );
  });
});

/** Scripts run for real against temporary directories. */
describe("sync guard and profile, for real", () => {
  let dir: string;
  let guard: string;
  let status: string;
  const sentinel = syncSentinel("t");

  function run(file: string, args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
    return spawnSync(file, args, { encoding: "utf8", env: { ...process.env, ...env }, timeout: 20000 });
  }

  function fresh(): {
    local: string;
    remote: string;
    state: string;
    unison: (...args: string[]) => SpawnSyncReturns<string>;
  } {
    const base = mkdtempSync(join(dir, "sync-"));
    const local = join(base, "local");
    const remote = join(base, "remote");
    const state = join(base, "state");
    mkdirSync(local);
    mkdirSync(remote);
    mkdirSync(state);
    // The production profile, with its state paths moved into the temporary directory.
    const profile = unisonProfile({
      ...PROD_SYNC_PLAN,
      name: "t",
      local,
      remote: { kind: "mount", path: remote, mountPath: "/mnt/unused", exportName: "meshfs" },
    }).replace(/\/var\/lib\/swarm\/unison\/t/g, state);
    writeFileSync(join(state, "t.prf"), profile);
    return {
      local,
      remote,
      state,
      unison: (...args) => run("unison", ["t", ...args], { UNISON: state }),
    };
  }

  function guardRun(roots: string[], extra: string[] = []): SpawnSyncReturns<string> {
    return run(guard, [...extra, "--sentinel", sentinel, ...roots]);
  }

  function tree(root: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const name of readdirSync(root).sort()) {
      out[name] = readFileSync(join(root, name), "utf8");
    }
    return out;
  }

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "swarm-unison-"));
    guard = join(dir, "unison-guard");
    status = join(dir, "unison-status");
    writeFileSync(guard, guardScript(), { mode: 0o755 });
    writeFileSync(status, statusScript(), { mode: 0o755 });
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("marks fresh roots before the first sync, then syncs both ways", () => {
    const s = fresh();
    writeFileSync(join(s.local, "a.md"), "from local\n");
    writeFileSync(join(s.remote, "b.md"), "from remote\n");
    expect(guardRun([s.local, s.remote]).status).toBe(1);
    const init = guardRun([s.local, s.remote], ["--init", "--state", s.state]);
    expect(init.stdout).toContain(`marked ${s.local}`);
    expect(init.status).toBe(0);
    expect(guardRun([s.local, s.remote]).status).toBe(0);
    const first = s.unison();
    expect(first.status).toBe(0);
    expect(tree(s.local)).toEqual({ [sentinel]: "", "a.md": "from local\n", "b.md": "from remote\n" });
    expect(tree(s.remote)).toEqual(tree(s.local));
  });

  it("keeps both versions of a conflict and exits 1", () => {
    const s = fresh();
    writeFileSync(join(s.local, "page.md"), "base\n");
    guardRun([s.local, s.remote], ["--init", "--state", s.state]);
    expect(s.unison().status).toBe(0);
    writeFileSync(join(s.local, "page.md"), "edited on the local side\n");
    writeFileSync(join(s.remote, "page.md"), "edited on the remote side\n");
    writeFileSync(join(s.local, "other.md"), "unrelated\n");
    const result = s.unison();
    expect(result.status).toBe(1);
    expect(`${result.stdout}${result.stderr}`).toMatch(/skipped: page\.md/);
    expect(readFileSync(join(s.local, "page.md"), "utf8")).toBe("edited on the local side\n");
    expect(readFileSync(join(s.remote, "page.md"), "utf8")).toBe("edited on the remote side\n");
    // Non-conflicting changes still propagate in the same run.
    expect(readFileSync(join(s.remote, "other.md"), "utf8")).toBe("unrelated\n");
    // And the next run does the same: nothing is lost while the conflict waits for a person.
    expect(s.unison().status).toBe(1);
    expect(readFileSync(join(s.remote, "page.md"), "utf8")).toBe("edited on the remote side\n");
  });

  it("refuses to run against a missing root, and never recreates it once an archive exists", () => {
    const s = fresh();
    writeFileSync(join(s.local, "keep.md"), "precious\n");
    guardRun([s.local, s.remote], ["--init", "--state", s.state]);
    expect(s.unison().status).toBe(0);
    rmSync(s.remote, { recursive: true });
    const plain = guardRun([s.local, s.remote]);
    expect(plain.status).toBe(1);
    expect(plain.stderr).toMatch(/root .*remote is missing/);
    const init = guardRun([s.local, s.remote], ["--init", "--state", s.state]);
    expect(init.status).toBe(1);
    expect(existsSync(s.remote)).toBe(false);
    expect(tree(s.local)).toEqual({ [sentinel]: "", "keep.md": "precious\n" });
  });

  it("refuses a root without its sentinel, and unison on its own aborts without deleting anything", () => {
    const s = fresh();
    for (const name of ["a.md", "b.md", "c.md"]) {
      writeFileSync(join(s.local, name), `${name}\n`);
    }
    guardRun([s.local, s.remote], ["--init", "--state", s.state]);
    expect(s.unison().status).toBe(0);
    // The remote root is now an empty directory: what an unmounted mount point looks like.
    rmSync(s.remote, { recursive: true });
    mkdirSync(s.remote);
    const checked = guardRun([s.local, s.remote], ["--init", "--state", s.state]);
    expect(checked.status).toBe(1);
    expect(checked.stderr).toMatch(/has no \.swarm-sync-t/);
    expect(existsSync(join(s.remote, sentinel))).toBe(false);
    // Even if the guard were bypassed, the profile's mountpoint preference stops unison.
    const result = s.unison();
    expect(result.status).toBe(3);
    expect(Object.keys(tree(s.local))).toEqual([sentinel, "a.md", "b.md", "c.md"]);
  });

  it("carries permission bits across, so a private page stays private", () => {
    const s = fresh();
    writeFileSync(join(s.local, "private.md"), "secret\n", { mode: 0o600 });
    writeFileSync(join(s.local, "tool.sh"), "#!/bin/sh\n", { mode: 0o755 });
    guardRun([s.local, s.remote], ["--init", "--state", s.state]);
    expect(s.unison().status).toBe(0);
    const mode = (path: string) => statSync(path).mode & 0o777;
    expect(mode(join(s.remote, "private.md"))).toBe(0o600);
    expect(mode(join(s.remote, "tool.sh"))).toBe(0o755);
  });

  it("backs up what it overwrites", () => {
    const s = fresh();
    writeFileSync(join(s.local, "page.md"), "version 1\n");
    guardRun([s.local, s.remote], ["--init", "--state", s.state]);
    expect(s.unison().status).toBe(0);
    // A different size: fastcheck trusts size and modification time, and both runs fall in one second.
    writeFileSync(join(s.local, "page.md"), "version 2, longer\n");
    expect(s.unison().status).toBe(0);
    expect(readFileSync(join(s.remote, "page.md"), "utf8")).toBe("version 2, longer\n");
    expect(readFileSync(join(s.state, "backup", "page.md"), "utf8")).toBe("version 1\n");
  });

  it.each([
    ["a directory that is not a mount", () => dir, /not an sshfs mount \(found: no mount at all\)/],
    ["a mount of another type", () => "/proc", /not an sshfs mount \(found: proc\)/],
  ])("refuses a remote mount that is %s", (_, mount, message) => {
    const s = fresh();
    guardRun([s.local, s.remote], ["--init", "--state", s.state]);
    const result = guardRun([s.local, s.remote], ["--mount", mount(), "--export", "meshfs"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(message);
  });

  /** Lines of /proc/self/mountinfo for an automount at MOUNT with its sshfs mount on top. */
  function mountTable(mount: string, escaped = mount): string {
    return [
      "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw",
      `95 22 0:48 / ${escaped} rw,relatime shared:40 - autofs systemd-1 rw,fd=51,pgrp=1,timeout=0`,
      `99 95 0:51 / ${escaped} rw,nosuid,nodev,relatime shared:42 - fuse.sshfs meshfs@10.99.0.1:/srv/meshfs rw,user_id=0`,
      `101 22 0:53 / ${escaped}2 rw,relatime shared:44 - tmpfs tmpfs rw`,
      "",
    ].join("\n");
  }

  it.each([
    ["a plain path", "meshfs", "meshfs"],
    [
      "a space, a tab and a backslash, escaped as the kernel writes them",
      "mesh fs\tx\\y",
      "mesh\\040fs\\011x\\134y",
    ],
  ])("reads the mount table as findmnt does: %s", (_, name, escaped) => {
    const s = fresh();
    const base = dirname(s.remote);
    const mount = join(base, name);
    mkdirSync(mount);
    mkdirSync(`${mount}2`);
    const table = join(base, "mountinfo");
    writeFileSync(table, mountTable(mount, join(base, escaped)));
    const guardAt = (path: string) =>
      run(guard, ["--mount", path, "--export", "meshfs", "--sentinel", sentinel, s.local], {
        SWARM_MOUNTINFO: table,
      });
    // The guard takes it for the sshfs mount, and goes on to look for the export's sentinel there.
    expect(guardAt(mount).stderr).toMatch(/has no \.swarm-meshfs: the export's dataset is not mounted/);
    // A mount at a path that only starts with it is another mount.
    expect(guardAt(`${mount}2`).stderr).toMatch(/not an sshfs mount \(found: tmpfs\)/);
  });

  describe("after a failover, when the mount shows another copy of the export", () => {
    // The sync's remote root inside a directory the guard takes for the sshfs mount: the mount
    // table it reads holds an automount there with sshfs on top, and the export's sentinel sits at
    // its top.
    function mounted() {
      const s = fresh();
      const mount = dirname(s.remote);
      const table = join(mount, "mountinfo");
      writeFileSync(table, mountTable(mount));
      const env = { SWARM_MOUNTINFO: table };
      const sentinelOf = (text: string) => writeFileSync(join(mount, EXPORT_SENTINEL), text);
      const check = (...extra: string[]) =>
        run(
          guard,
          [
            ...extra,
            "--state",
            s.state,
            "--mount",
            mount,
            "--export",
            "meshfs",
            "--sentinel",
            sentinel,
            s.local,
            s.remote,
          ],
          env,
        );
      const aside = () => readdirSync(s.state).filter((f) => f.startsWith("replaced-archives-"));
      return { s, check, sentinelOf, aside };
    }

    function failover() {
      const m = mounted();
      const { s, check, sentinelOf } = m;
      sentinelOf("meshfs\ndataset tank/meshfs/state guid 1\n");
      writeFileSync(join(s.local, "old.md"), "replicated long ago\n");
      expect(check("--init").status).toBe(0);
      expect(s.unison().status).toBe(0);
      // Written on the client and synced to the export after the replica's last snapshot.
      writeFileSync(join(s.local, "late.md"), "newest\n");
      expect(check().status).toBe(0);
      expect(s.unison().status).toBe(0);
      expect(readFileSync(join(s.remote, "late.md"), "utf8")).toBe("newest\n");
      // The export host is lost; the mount now shows the replica, which never received late.md.
      rmSync(join(s.remote, "late.md"));
      sentinelOf("meshfs\ndataset backup/meshfs guid 2\n");
      return m;
    }

    it("moves unison's archives aside, so the next run copies the client's newer files back", () => {
      const { s, check, aside } = failover();
      const result = check();
      expect(result.status).toBe(0);
      expect(result.stdout).toContain(
        "shows another copy of export meshfs (dataset backup/meshfs guid 2; it was dataset tank/meshfs/state guid 1)",
      );
      expect(aside()).toHaveLength(1);
      expect(s.unison().status).toBe(0);
      expect(readFileSync(join(s.local, "late.md"), "utf8")).toBe("newest\n");
      expect(readFileSync(join(s.remote, "late.md"), "utf8")).toBe("newest\n");
      // Once: the next check finds the copy it knows.
      expect(check().stdout).toBe("");
      expect(aside()).toHaveLength(1);
    });

    it("starts no process when the dataset is the one the last run saw: it runs with an empty PATH", () => {
      const { s, check, sentinelOf, aside } = mounted();
      sentinelOf("meshfs\ndataset tank/meshfs/state guid 1\n");
      expect(check("--init").status).toBe(0);
      expect(s.unison().status).toBe(0);
      const empty = mkdtempSync(join(dir, "no-commands-"));
      const args = [
        guard,
        ...["--state", s.state, "--mount", dirname(s.remote), "--export", "meshfs"],
        ...["--sentinel", sentinel, s.local, s.remote],
      ];
      const env = { PATH: empty, SWARM_MOUNTINFO: join(dirname(s.remote), "mountinfo") };
      const steady = spawnSync("/bin/bash", args, { encoding: "utf8", env });
      expect({ status: steady.status, stderr: steady.stderr }).toEqual({ status: 0, stderr: "" });
      // The same guard without commands fails, and moves nothing, once it has work to do.
      sentinelOf("meshfs\ndataset backup/meshfs guid 2\n");
      const moved = spawnSync("/bin/bash", args, { encoding: "utf8", env });
      expect(moved.status).not.toBe(0);
      expect(moved.stderr).toMatch(/flock: command not found/);
      expect(aside()).toEqual([]);
    });

    it("moves the archives under unison's lock: it waits for a run, and of two guards at once one moves them and the other finds them moved", () => {
      const { s, aside } = failover();
      const args = (extra: string) =>
        `${extra} --state '${s.state}' --mount '${dirname(s.remote)}' --export meshfs --sentinel '${sentinel}' '${s.local}' '${s.remote}'`;
      // A run of the service holds the lock for 1 s (as flock(1) holds it around unison); two guards start meanwhile.
      const result = spawnSync(
        "bash",
        [
          "-c",
          `set -u
export SWARM_MOUNTINFO='${join(dirname(s.remote), "mountinfo")}'
flock '${s.state}/lock' sleep 1 &
sleep 0.2
start=$EPOCHREALTIME
'${guard}' ${args("")} >"$1/a.out" 2>&1 & a=$!
'${guard}' ${args("--init")} >"$1/b.out" 2>&1 & b=$!
wait "$a"; ra=$?; wait "$b"; rb=$?
echo "$ra $rb $(( (\${EPOCHREALTIME/./} - \${start/./}) / 1000 ))"`,
          "guards",
          s.state,
        ],
        { encoding: "utf8", timeout: 20000 },
      );
      const [a, b, waited] = result.stdout.trim().split(" ").map(Number);
      expect({ a, b, stderr: result.stderr }).toEqual({ a: 0, b: 0, stderr: "" });
      expect(waited).toBeGreaterThanOrEqual(600);
      const said = ["a.out", "b.out"].map((f) => readFileSync(join(s.state, f), "utf8"));
      expect(said.filter((out) => out.includes("unison's archives moved to"))).toHaveLength(1);
      expect(aside()).toHaveLength(1);
      expect(s.unison().status).toBe(0);
      expect(readFileSync(join(s.local, "late.md"), "utf8")).toBe("newest\n");
    });

    it("without that, unison would delete the client's newest file: the danger is real", () => {
      const { s } = failover();
      expect(s.unison().status).toBe(0);
      expect(existsSync(join(s.local, "late.md"))).toBe(false);
    });

    it("takes an export whose sentinel names no dataset yet as it is, and records the first one it sees", () => {
      const { s, check, sentinelOf, aside } = mounted();
      sentinelOf("meshfs\n");
      expect(check("--init").status).toBe(0);
      expect(existsSync(join(s.state, "export-dataset"))).toBe(false);
      expect(s.unison().status).toBe(0);
      sentinelOf("meshfs\ndataset tank/meshfs/state guid 1\n");
      expect(check().stdout).toBe("");
      expect(aside()).toEqual([]);
      expect(readFileSync(join(s.state, "export-dataset"), "utf8")).toBe(
        "dataset tank/meshfs/state guid 1\n",
      );
    });
  });

  it("records each outcome in the status file and rotates a large log", () => {
    const file = join(dir, "t.status");
    const log = join(dir, "unison.log");
    const cases: [Record<string, string>, RegExp][] = [
      [{ SERVICE_RESULT: "success", EXIT_CODE: "exited", EXIT_STATUS: "0" }, /^summary=ok$/m],
      [{ SERVICE_RESULT: "success", EXIT_CODE: "exited", EXIT_STATUS: "1" }, /^summary=conflicts skipped/m],
      [
        { SERVICE_RESULT: "exit-code", EXIT_CODE: "exited", EXIT_STATUS: "2" },
        /^summary=failed: some files/m,
      ],
      [
        { SERVICE_RESULT: "exit-code", EXIT_CODE: "exited", EXIT_STATUS: "3" },
        /^summary=failed: unison stopped/m,
      ],
      [{ SERVICE_RESULT: "exit-code" }, /^summary=refused: the guard/m],
      [
        { SERVICE_RESULT: "timeout", EXIT_CODE: "killed", EXIT_STATUS: "TERM" },
        /^summary=failed: the run took/m,
      ],
    ];
    for (const [env, summary] of cases) {
      writeFileSync(log, "x".repeat(2 * 1024 * 1024));
      const before = Math.floor(Date.now() / 1000) * 1000;
      // A local time zone far from UTC: the record is in UTC all the same.
      const result = run(status, ["t", file, log], { ...env, TZ: "Asia/Tokyo" });
      expect(result.status).toBe(0);
      const text = readFileSync(file, "utf8");
      expect(text).toMatch(summary);
      const finished = Date.parse(/^finished=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$/m.exec(text)?.[1] ?? "");
      expect(finished).toBeGreaterThanOrEqual(before);
      expect(finished).toBeLessThanOrEqual(Date.now());
      expect(statSync(file).mode & 0o777).toBe(0o644);
      expect(existsSync(`${file}.new`)).toBe(false);
      expect(existsSync(log)).toBe(false);
      expect(existsSync(`${log}.1`)).toBe(true);
    }
  });
});

describe("a client's mount after its export moved or went silent, for real in a sandbox", () => {
  // The mount table says what is mounted at /mnt/meshfs (state/source, absent: nothing); a stale
  // mount answers EIO (state/stale, and state/dead keeps it so after a remount); a busy one refuses
  // to stop (state/busy). Unmounting empties the mount table.
  const stubs = {
    findmnt: `[ "$*" = "-n -o SOURCE -t fuse.sshfs --mountpoint /mnt/meshfs" ] || exit 3
[ -f "$SANDBOX/state/source" ] || exit 1
cat "$SANDBOX/state/source"`,
    umount: `[ "$*" = "-l /mnt/meshfs" ] || exit 3
rm -f "$SANDBOX/state/source" "$SANDBOX/state/stale"`,
    systemctl: `case $1 in
  stop)
    [ ! -f "$SANDBOX/state/busy" ] || exit 1
    rm -f "$SANDBOX/state/source" "$SANDBOX/state/stale" ;;
  is-active) [ "$3" = mnt-meshfs.automount ] || [ -f "$SANDBOX/state/source" ] ;;
  is-enabled | reset-failed | start | daemon-reload | enable) exit 0 ;;
  *) exit 3 ;;
esac`,
    timeout: `[ "$1" = 60 ] || exit 3
shift
if [ -f "$SANDBOX/state/stale" ] || [ -f "$SANDBOX/state/dead" ]; then
  echo "cat: \${*: -1}: Input/output error" >&2
  exit 1
fi
exec "$@"`,
  };
  const planned = mountSource(NATIVE_MOUNT);
  const oldServer = mountSource({ ...NATIVE_MOUNT, serverMeshAddress: "10.8.0.9" });
  let sandbox: Sandbox;
  const run = () =>
    sandbox.run(
      script(`fail() { echo "swarm: hetzner-native: $*" >&2; exit 1; }`, automountActivation(NATIVE_MOUNT)),
    );
  const acts = () => sandbox.calls().filter((c) => /^(umount|systemctl (stop|reset-failed))/.test(c));
  beforeEach(() => {
    sandbox = new Sandbox(["/mnt"], stubs);
    sandbox.write(
      `/mnt/meshfs/${EXPORT_SENTINEL}`,
      `${NATIVE_MOUNT.exportName}\ndataset tank/meshfs/state guid 1\n`,
    );
  });
  afterEach(() => sandbox.dispose());

  it("leaves a mount of the planned server that answers alone", () => {
    sandbox.state("source", `${planned}\n`);
    const result = run();
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toBe("");
    expect(acts()).toEqual([]);
  });

  it("unmounts a mount of the old server, so the next access mounts the new one", () => {
    sandbox.state("source", `${oldServer}\n`);
    const result = run();
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(
      `swarm: unmounted /mnt/meshfs from ${oldServer}; the next access mounts ${planned}\n`,
    );
    expect(acts()).toEqual(["systemctl stop mnt-meshfs.mount", "systemctl reset-failed mnt-meshfs.mount"]);
  });

  it("detaches a busy mount of the old server instead of leaving it on the old copy", () => {
    sandbox.state("source", `${oldServer}\n`);
    sandbox.state("busy", "");
    const result = run();
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("swarm: detached /mnt/meshfs, which was busy");
    expect(acts()).toEqual([
      "systemctl stop mnt-meshfs.mount",
      "umount -l /mnt/meshfs",
      "systemctl reset-failed mnt-meshfs.mount",
    ]);
    expect(sandbox.state("source")).toBeUndefined();
  });

  it("mounts again a mount that answers EIO, once, and then passes", () => {
    sandbox.state("source", `${planned}\n`);
    sandbox.state("stale", "");
    const result = run();
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(
      `swarm: /mnt/meshfs, mounted from ${planned}, does not answer (cat: /mnt/meshfs/${EXPORT_SENTINEL}: Input/output error); mounting it again\n`,
    );
    expect(acts()).toEqual(["systemctl stop mnt-meshfs.mount", "systemctl reset-failed mnt-meshfs.mount"]);
  });

  it("fails naming the error when the mount still does not answer after one remount", () => {
    sandbox.state("source", `${planned}\n`);
    sandbox.state("dead", "");
    const result = run();
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `swarm: hetzner-native: /mnt/meshfs does not show export meshfs (cat: /mnt/meshfs/${EXPORT_SENTINEL}: Input/output error): see journalctl -u mnt-meshfs.mount\n`,
    );
    expect(sandbox.calls().filter((c) => c.startsWith("timeout "))).toHaveLength(2);
  });

  it("fails at once, unmounting nothing, when nothing is mounted and the export cannot be read", () => {
    sandbox.state("dead", "");
    const result = run();
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("/mnt/meshfs does not show export meshfs");
    expect(acts()).toEqual([]);
  });

  it("fails when the mount shows another export", () => {
    sandbox.state("source", `${planned}\n`);
    sandbox.write(`/mnt/meshfs/${EXPORT_SENTINEL}`, "scratch\ndataset tank/scratch guid 2\n");
    const result = run();
    expect(result.status).toBe(1);
    expect(result.stderr).toBe("swarm: hetzner-native: /mnt/meshfs shows export 'scratch', not meshfs\n");
  });
});

describe("a client's mount whose export moved pauses the syncs that use it, for real in a sandbox", () => {
  // Two syncs: wiki runs through the mount (its service is ordered after it; its timer and both
  // watchers are active), notes does not. The old server's mount is busy until the stop.
  const stubs = {
    findmnt: `[ -f "$SANDBOX/state/source" ] || exit 1
cat "$SANDBOX/state/source"`,
    umount: `rm -f "$SANDBOX/state/source"`,
    systemctl: `case $1 in
  list-unit-files) printf '%s enabled -\\n' swarm-sync-notes.service swarm-sync-wiki.service swarm-sync-wiki-watch.service ;;
  show) [ "$5" != swarm-sync-wiki.service ] || echo "system.slice mnt-meshfs.automount mnt-meshfs.mount" ;;
  is-active) [ "$3" = mnt-meshfs.automount ] || [ -f "$SANDBOX/state/active-$3" ] ;;
  stop)
    shift
    for unit in "$@"; do rm -f "$SANDBOX/state/active-$unit"; done
    [ "$1" != mnt-meshfs.mount ] || rm -f "$SANDBOX/state/source" ;;
  start)
    shift
    for unit in "$@"; do : >"$SANDBOX/state/active-$unit"; done ;;
  is-enabled | reset-failed | daemon-reload | enable) exit 0 ;;
  *) exit 3 ;;
esac`,
    timeout: `shift
exec "$@"`,
  };
  const oldServer = mountSource({ ...NATIVE_MOUNT, serverMeshAddress: "10.8.0.9" });
  let sandbox: Sandbox;
  beforeEach(() => {
    sandbox = new Sandbox(["/mnt", UNIT_DIR], stubs);
    sandbox.write(
      `/mnt/meshfs/${EXPORT_SENTINEL}`,
      `${NATIVE_MOUNT.exportName}\ndataset backup/meshfs guid 2\n`,
    );
    for (const unit of ["swarm-sync-wiki.timer", "swarm-sync-notes.timer", "swarm-sync-wiki.service"]) {
      sandbox.write(`${UNIT_DIR}/${unit}`, "");
    }
    for (const unit of [
      "swarm-sync-wiki.timer",
      "swarm-sync-wiki-watch.service",
      "swarm-sync-wiki-remote-watch.service",
      "swarm-sync-notes.timer",
    ]) {
      sandbox.state(`active-${unit}`, "");
    }
    sandbox.state("source", `${oldServer}\n`);
  });
  afterEach(() => sandbox.dispose());

  it("stops the run and what starts runs before the unmount, and starts them again once the new mount answers", () => {
    const result = sandbox.run(
      script(`fail() { echo "swarm: hetzner-native: $*" >&2; exit 1; }`, automountActivation(NATIVE_MOUNT)),
    );
    expect(result.status).toBe(0);
    expect(result.stderr).toBe(
      "swarm: paused the syncs that use mnt-meshfs.mount: swarm-sync-wiki.timer swarm-sync-wiki-watch.service swarm-sync-wiki-remote-watch.service swarm-sync-wiki.service\n",
    );
    const acts = sandbox.calls().filter((c) => /^(umount|systemctl (stop|start|reset-failed))/.test(c));
    expect(acts).toEqual([
      "systemctl stop swarm-sync-wiki.timer swarm-sync-wiki-watch.service swarm-sync-wiki-remote-watch.service swarm-sync-wiki.service",
      "systemctl stop mnt-meshfs.mount",
      "systemctl reset-failed mnt-meshfs.mount",
      "systemctl start swarm-sync-wiki.timer swarm-sync-wiki-watch.service swarm-sync-wiki-remote-watch.service",
    ]);
    expect(result.stdout).toContain(
      "swarm: resumed swarm-sync-wiki.timer swarm-sync-wiki-watch.service swarm-sync-wiki-remote-watch.service\n",
    );
    // The sync that does not use the mount was left alone.
    expect(sandbox.state("active-swarm-sync-notes.timer")).toBe("");
  });

  it("starts them again when the new mount does not show the export, and fails", () => {
    sandbox.write(`/mnt/meshfs/${EXPORT_SENTINEL}`, "scratch\ndataset tank/scratch guid 2\n");
    const result = sandbox.run(
      script(`fail() { echo "swarm: hetzner-native: $*" >&2; exit 1; }`, automountActivation(NATIVE_MOUNT)),
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      "swarm: hetzner-native: /mnt/meshfs shows export 'scratch', not meshfs\n",
    );
    expect(sandbox.calls()).toContain(
      "systemctl start swarm-sync-wiki.timer swarm-sync-wiki-watch.service swarm-sync-wiki-remote-watch.service",
    );
  });

  it("names the sync units as the sync templates do", () => {
    const units = syncUnitNames("wiki");
    expect([units.service, units.timer, units.watch, units.remoteWatch]).toEqual([
      "swarm-sync-wiki.service",
      "swarm-sync-wiki.timer",
      "swarm-sync-wiki-watch.service",
      "swarm-sync-wiki-remote-watch.service",
    ]);
  });
});

describe("the order of properties in one zfs set", () => {
  it("puts those that need a remount last, so that OpenZFS 2.1.11 remounts after any of them", () => {
    expect(propertyOrder(["snapdir", "atime", "readonly", "compression", "org.example:backup"])).toEqual([
      "compression",
      "org.example:backup",
      "snapdir",
      "atime",
      "readonly",
    ]);
  });
});

describe("the zfs script, for real in a sandbox against a stand-in zfs", () => {
  // The dataset's properties live in a state file, NAME=VALUE a line. Like OpenZFS, `zfs set` checks
  // every pair before it changes any; a value of "bogus" is refused.
  const stubs = {
    modprobe: "exit 0",
    zpool: "exit 0",
    mountpoint: "exit 0",
    zfs: `db=$SANDBOX/state/properties
case $1 in
  list) exit 0 ;;
  get)
    IFS=, read -ra names <<<"$5"
    for name in "\${names[@]}"; do
      case $name in compress) name=compression ;; mounted) echo yes; continue ;; guid) echo 4242; continue ;; esac
      grep -q "^$name=" "$db" || { echo "bad property list: invalid property '$name'" >&2; exit 2; }
      grep -m1 "^$name=" "$db" | cut -d= -f2-
    done ;;
  set)
    shift
    dataset=\${*: -1}
    pairs=("\${@:1:$#-1}")
    for pair in "\${pairs[@]}"; do
      case $pair in *=bogus) echo "cannot set property for '$dataset': bad value" >&2; exit 1 ;; esac
    done
    for pair in "\${pairs[@]}"; do
      { grep -v "^\${pair%%=*}=" "$db" || true; echo "$pair"; } >"$db.new"
      mv "$db.new" "$db"
    done ;;
  *) exit 1 ;;
esac`,
  };
  // The production plan, mounted where the sandbox can shadow a directory of this machine.
  const plan: ZfsPlan = { ...PROD_ZFS, mountpoint: "/mnt/meshfs" };
  let sandbox: Sandbox;
  // What every dataset has: mounted by zfs mount -a, writable.
  const properties = (...lines: string[]) =>
    sandbox.state("properties", `${["canmount=on", ...lines, "readonly=off"].join("\n")}\n`);
  const zfsSets = () => sandbox.calls().filter((c) => c.startsWith("zfs set "));
  beforeEach(() => {
    sandbox = new Sandbox(["/mnt"], stubs);
  });
  afterEach(() => sandbox.dispose());

  it("sets every property that differs in one zfs set, reports each, and then nothing", () => {
    properties("mountpoint=/mnt/meshfs", "atime=on", "compression=off", "refquota=none", "snapdir=hidden");
    const first = sandbox.run(zfsScript(plan));
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    expect(zfsSets()).toEqual(["zfs set compression=lz4 refquota=100G atime=off tank/meshfs/state"]);
    expect(first.stdout.split("\n").filter((l) => l.startsWith("swarm: set "))).toEqual([
      "swarm: set compression=lz4 on tank/meshfs/state (was off)",
      "swarm: set refquota=100G on tank/meshfs/state (was none)",
      "swarm: set atime=off on tank/meshfs/state (was on)",
    ]);
    expect(sandbox.read("/mnt/meshfs/.swarm-meshfs")).toBe("meshfs\ndataset tank/meshfs/state guid 4242\n");

    const second = sandbox.run(zfsScript(plan));
    expect(second.status).toBe(0);
    expect(second.stdout).toBe("");
    expect(zfsSets()).toEqual([]);
  });

  it("makes a received replica an export: mounted at boot and writable, in the same zfs set", () => {
    // What zfs receive -o readonly=on -o canmount=noauto leaves, on a replica being promoted.
    sandbox.state(
      "properties",
      "canmount=noauto\nmountpoint=/mnt/meshfs\natime=off\ncompression=lz4\nrefquota=100G\nsnapdir=hidden\nreadonly=on\n",
    );
    const result = sandbox.run(zfsScript(plan));
    expect(result.stderr).toBe("");
    expect(zfsSets()).toEqual(["zfs set canmount=on readonly=off tank/meshfs/state"]);
    expect(result.stdout).toContain("swarm: set canmount=on on tank/meshfs/state (was noauto)\n");
    expect(result.stdout).toContain("swarm: set readonly=off on tank/meshfs/state (was on)\n");
  });

  it("keeps an export read-only when its properties say so", () => {
    properties("mountpoint=/mnt/meshfs", "atime=off", "compression=lz4", "refquota=100G", "snapdir=hidden");
    const result = sandbox.run(zfsScript({ ...plan, properties: { ...plan.properties, readonly: "on" } }));
    expect(result.status).toBe(0);
    expect(zfsSets()).toEqual(["zfs set readonly=on tank/meshfs/state"]);
  });

  it("moves the dataset with a zfs set of its own", () => {
    properties("mountpoint=/tank/old", "atime=off", "compression=lz4", "refquota=100G", "snapdir=hidden");
    const result = sandbox.run(zfsScript(plan));
    expect(result.status).toBe(0);
    expect(zfsSets()).toEqual(["zfs set mountpoint=/mnt/meshfs tank/meshfs/state"]);
    expect(result.stdout).toContain(
      "swarm: set mountpoint=/mnt/meshfs on tank/meshfs/state (was /tank/old)\n",
    );
  });

  it("reads short names such as compress by position", () => {
    properties("mountpoint=/mnt/meshfs", "atime=off", "compression=lz4", "refquota=100G", "snapdir=hidden");
    const { compression, ...rest } = plan.properties;
    const result = sandbox.run(zfsScript({ ...plan, properties: { ...rest, compress: compression } }));
    expect(result.status).toBe(0);
    expect(zfsSets()).toEqual([]);
  });

  it("stops with the export's name when zfs refuses a value, having changed nothing", () => {
    const before = properties(
      "mountpoint=/mnt/meshfs",
      "atime=on",
      "compression=off",
      "refquota=none",
      "snapdir=hidden",
    );
    const result = sandbox.run(
      zfsScript({ ...plan, properties: { ...plan.properties, compression: "bogus" } }),
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      "swarm: anchor: zfs set compression=bogus refquota=100G atime=off on tank/meshfs/state failed: " +
        "fix properties of export meshfs (zfs names the one it refused above)",
    );
    expect(result.stdout).not.toContain("swarm: set ");
    expect(sandbox.state("properties")).toBe(before);
  });

  it("stops when zfs cannot read a property, naming the export", () => {
    properties("mountpoint=/mnt/meshfs", "atime=off", "compression=lz4", "refquota=100G", "snapdir=hidden");
    const result = sandbox.run(zfsScript({ ...plan, properties: { ...plan.properties, recordsze: "1M" } }));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      "cannot read canmount compression recordsze refquota snapdir atime readonly of tank/meshfs/state: fix properties of export meshfs",
    );
    expect(zfsSets()).toEqual([]);
  });
});

describe("the sync service's hold on its roots", () => {
  const unit = syncService(PROD_SYNC_PLAN);

  it("requires the local root's mounts", () => {
    expect(unit).toMatch(/^RequiresMountsFor=\/home\/ai-streamer\/wiki$/m);
  });

  it("pulls in the sshfs automount and runs after it, so a dead mount fails the unit itself", () => {
    // A RequiresMountsFor= on the sshfs root would make a dead mount a dependency failure that
    // leaves the service inactive and its Result success: nothing would see it.
    expect(unit).not.toMatch(/^RequiresMountsFor=.*\/mnt\/meshfs/m);
    expect(unit).toMatch(/^Wants=mnt-meshfs\.automount$/m);
    expect(unit).toMatch(/^After=mnt-meshfs\.automount mnt-meshfs\.mount$/m);
    expect(unit).toMatch(
      /^ExecStartPre=\/usr\/local\/lib\/swarm\/unison-guard --state \S+ --mount \/mnt\/meshfs /m,
    );
  });
});

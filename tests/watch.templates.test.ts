/**
 * The templates of watched syncs: golden files for both ends (the export
 * host's watch user, keys, drop-in and program; the sync host's unit,
 * program and key script), the drop-in through sshd itself, the unit
 * through `systemd-analyze verify`, and the scripts through bash -n. The
 * programs run in watchScripts.test.ts; the whole path runs in the lab
 * (check 5b).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { LOCKED_SETTINGS, lockedSessionOf, SshdHarness } from "./sshdHarness";
import {
  meshfsWatchProgram,
  watchAuthorizedKeys,
  watchCommand,
  watchConf,
  watchDropin,
  watchInstallScript,
  watchTeardownScript,
} from "../templates/meshfsWatch";
import {
  remoteWatchScript,
  remoteWatchService,
  syncInstallScript,
  syncService,
  syncTeardownScript,
  syncUnitNames,
  syncWatchKeyScript,
  syncWatchKeyTeardownScript,
} from "../templates/unison";
import { HOST_KEY, PROD_SYNC_PLAN, SSH_SYNC_PLAN, WATCH_PLAN, WATCHED_SYNC_PLAN } from "./storageFixtures";

const GOLDEN: Record<string, () => string> = {
  "/usr/local/lib/swarm/meshfs-watch": () => meshfsWatchProgram(),
  "/etc/swarm/watch/meshfs.conf": () => watchConf(WATCH_PLAN),
  "/etc/ssh/swarm-authorized-keys/meshfs-watch": () => watchAuthorizedKeys(WATCH_PLAN),
  "/etc/ssh/sshd_config.d/swarm-watch-meshfs.conf": () => watchDropin(WATCH_PLAN),
  "anchor watch script": () => watchInstallScript(WATCH_PLAN),
  "anchor watch teardown": () => watchTeardownScript("meshfs"),
  "/usr/local/lib/swarm/unison-remote-watch": () => remoteWatchScript(),
  "hetzner-native swarm-sync-wiki-remote-watch.service": () => remoteWatchService(WATCHED_SYNC_PLAN),
  "ssh:// variant swarm-sync-wiki-copy-remote-watch.service": () => remoteWatchService(SSH_SYNC_PLAN),
  "hetzner-native watched sync script": () => syncInstallScript("hetzner-native", WATCHED_SYNC_PLAN),
  "hetzner-native watch key script": () => syncWatchKeyScript("wiki"),
  "hetzner-native watch key teardown": () => syncWatchKeyTeardownScript("wiki"),
};

describe("golden files", () => {
  it.each(Object.keys(GOLDEN))("%s", (name) => {
    const text = GOLDEN[name]();
    expect(text.endsWith("\n")).toBe(true);
    expect(text).toMatchSnapshot();
  });

  it.each(Object.keys(GOLDEN).filter((n) => /script|teardown|meshfs-watch$|remote-watch$/.test(n)))(
    "%s is valid bash",
    (name) => {
      const result = spawnSync("bash", ["-n"], { input: GOLDEN[name](), encoding: "utf8" });
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
    },
  );

  test("each watched sync's key line is bound to its host's mesh address and forced to follow its directory", () => {
    const lines = watchAuthorizedKeys(WATCH_PLAN)
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("#"));
    expect(lines).toHaveLength(WATCH_PLAN.clients.length);
    for (const line of lines) {
      expect(line).toMatch(
        /^restrict,from="10\.8\.0\.\d+\/32",command="\/usr\/local\/lib\/swarm\/meshfs-watch \/tank\/meshfs\/state\/wiki" ssh-ed25519 [A-Za-z0-9+/=]+ swarm-watch-[a-z-]+@[a-z-]+$/,
      );
    }
    expect(lines[0]).toContain('from="10.8.0.4/32"');
    expect(lines[0]).toMatch(/ swarm-watch-wiki-copy@archive$/);
    expect(lines[1]).toContain('from="10.8.0.3/32"');
    expect(lines[1]).toMatch(/ swarm-watch-wiki@hetzner-native$/);
    const bad = { ...WATCH_PLAN, clients: [{ ...WATCH_PLAN.clients[0], publicKey: "ssh-rsa AAAA" }] };
    expect(() => watchAuthorizedKeys(bad)).toThrow(/not an ssh-ed25519 public key/);
  });

  test("a directory that is not a plain word is one quoted word for the user's shell, inside escaped quotes", () => {
    expect(watchCommand("/tank/meshfs/state/wiki")).toBe(
      "/usr/local/lib/swarm/meshfs-watch /tank/meshfs/state/wiki",
    );
    expect(watchCommand(`/tank/my "notes"; rm -rf /`)).toBe(
      `/usr/local/lib/swarm/meshfs-watch '/tank/my "notes"; rm -rf /'`,
    );
    const plan = {
      ...WATCH_PLAN,
      clients: [{ ...WATCH_PLAN.clients[0], directory: `/tank/meshfs/state/my "notes"` }],
    };
    expect(watchAuthorizedKeys(plan)).toContain(
      `command="/usr/local/lib/swarm/meshfs-watch '/tank/meshfs/state/my \\"notes\\"'" `,
    );
  });

  test("a watched sync runs at the default CPU priority, a sync on its timer at Nice=10", () => {
    expect(syncService(WATCHED_SYNC_PLAN)).not.toMatch(/^Nice=/m);
    expect(syncService(PROD_SYNC_PLAN)).toMatch(/^Nice=10$/m);
  });

  test("the sync host installs both watchers, and removes both when watch is off", () => {
    const units = syncUnitNames("wiki");
    const watched = syncInstallScript("hetzner-native", WATCHED_SYNC_PLAN);
    expect(watched).toContain(
      `swarm_activate '${units.remoteWatch}' '/etc/systemd/system/${units.remoteWatch}' '/usr/local/lib/swarm/unison-remote-watch' '/usr/local/lib/swarm/unison-watch'`,
    );
    expect(watched).not.toContain("StrictHostKeyChecking=no");
    const unwatched = syncInstallScript("hetzner-native", PROD_SYNC_PLAN);
    expect(unwatched).toContain(`for unit in ${units.watch} ${units.remoteWatch}; do`);
    expect(unwatched).not.toContain("unison-remote-watch");
    expect(syncTeardownScript("wiki")).toContain(units.remoteWatch);
    expect(syncTeardownScript("wiki")).toContain("/etc/swarm/unison/wiki.watch.key");
    // ssh:// mode pins the key in the profile's known_hosts, written by the same script.
    expect(syncInstallScript("archive", SSH_SYNC_PLAN, HOST_KEY)).toContain(
      "UserKnownHostsFile=/etc/swarm/unison/wiki-copy.known_hosts",
    );
  });
});

describe("the watch user's sshd drop-in, through sshd", () => {
  let sshd: SshdHarness;
  const exportMesh = WATCH_PLAN.meshAddress;

  beforeAll(() => {
    sshd = new SshdHarness("swarm-watch-sshd-");
    sshd.dropin("swarm-watch-meshfs.conf", watchDropin(WATCH_PLAN));
  });

  afterAll(() => sshd.remove());

  const effective = (connection: string) => sshd.effective(connection);

  test("passes sshd -t", () => {
    expect(sshd.check()).toEqual({ status: 0, stderr: "" });
  });

  test.each(["10.8.0.3", "10.8.0.4"])(
    "lets the watching host %s in over the mesh with a key from the swarm file only, with no forwarding",
    (address) => {
      const settings = effective(`user=meshfs-watch,addr=${address},laddr=${exportMesh}`);
      expect(settings.get("denyusers")).toBeUndefined();
      expect(settings.get("authorizedkeysfile")).toBe("/etc/ssh/swarm-authorized-keys/meshfs-watch");
      expect(lockedSessionOf(settings)).toEqual(LOCKED_SETTINGS);
      // The key's command= forces the command: a ForceCommand here would override every key's directory.
      expect(settings.get("forcecommand")).toBe("none");
    },
  );

  test.each([
    ["a mesh host with no watched sync", `addr=10.8.0.2,laddr=${exportMesh}`],
    ["a watching host, outside the mesh", "addr=10.8.0.3,laddr=203.0.113.7"],
    ["an address outside the mesh", `addr=198.51.100.9,laddr=${exportMesh}`],
  ])("refuses the watch user from %s", (_, connection) => {
    expect(effective(`user=meshfs-watch,${connection}`).get("denyusers")).toBe("*");
  });

  test("leaves every other user alone", () => {
    const root = effective(`user=root,addr=10.8.0.2,laddr=${exportMesh}`);
    expect(root.get("denyusers")).toBeUndefined();
    expect(root.get("authorizedkeysfile")).not.toContain("swarm-authorized-keys");
  });
});

describe("systemd-analyze verify", () => {
  test.each([
    ["swarm-sync-wiki-remote-watch.service", remoteWatchService(WATCHED_SYNC_PLAN)],
    ["swarm-sync-wiki-copy-remote-watch.service", remoteWatchService(SSH_SYNC_PLAN)],
  ])("%s has no setting systemd does not know", (name, text) => {
    const dir = mkdtempSync(path.join(tmpdir(), "swarm-watch-units-"));
    try {
      writeFileSync(path.join(dir, name), text);
      // Parsing only: the program and the sync's units live on the host.
      const result = spawnSync("systemd-analyze", ["verify", "--man=no", path.join(dir, name)], {
        encoding: "utf8",
      });
      expect(result.error).toBeUndefined();
      const output = `${result.stdout}${result.stderr}`;
      expect(
        output.split("\n").filter((l) => /Unknown (key|section)|Failed to parse|Invalid|Ignoring/.test(l)),
      ).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

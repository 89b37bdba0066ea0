/**
 * The two ends of a watched sync's remote watch, run for real (the rendered
 * programs, under bash, in a Sandbox): meshfs-watch, the forced command of
 * the export's watch user, with a stand-in inotifywait and id, and
 * unison-remote-watch feeding unison-watch, with a stand-in ssh that plays
 * the export host's lines on a schedule and a stand-in systemctl that
 * records when the sync would start. The lab runs both over a real mesh
 * (check 5b).
 */
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { watchConf, WATCH_TOKEN } from "../templates/meshfsWatch";
import { hostScript, shellQuote } from "../templates/shell";
import { remoteWatchSshArgs, WATCH } from "../templates/unison";
import { Sandbox } from "./sandbox";
import { WATCHED_SYNC_PLAN } from "./storageFixtures";

describe("meshfs-watch, the watch user's forced command", () => {
  let sandbox: Sandbox;
  let mountpoint: string;

  beforeEach(() => {
    sandbox = new Sandbox([], {
      // sshd runs the forced command as the export's watch user.
      id: `[ "$*" = -un ] || exit 3; cat "$SANDBOX/state/user"`,
      inotifywait: `printf '%s\\n' "$@" >"$SANDBOX/state/inotifywait-args"; printf 'change\\nchange\\n'`,
      logger: ":",
    });
    const dir = sandbox.dir;
    mountpoint = join(dir, "tank", "meshfs", "state");
    mkdirSync(join(mountpoint, "wiki", "pages"), { recursive: true });
    mkdirSync(join(dir, "tank", "meshfs", "state-other"), { recursive: true });
    symlinkSync("/etc", join(mountpoint, "wiki", "elsewhere"));
    mkdirSync(join(dir, "watch"));
    writeFileSync(join(dir, "watch", "meshfs.conf"), watchConf({ exportName: "meshfs", mountpoint }));
    writeFileSync(
      join(dir, "meshfs-watch.sh"),
      hostScript("meshfs-watch.sh", { CONF_DIR: join(dir, "watch") }),
    );
    sandbox.state("user", "meshfs-watch");
  });

  afterEach(() => sandbox.dispose());

  /** One session: `request` undefined leaves SSH_ORIGINAL_COMMAND unset, as `ssh host` without a command does. */
  function session(args: readonly string[], request?: string) {
    const env = [
      "SSH_CLIENT='10.8.0.3 50514 22'",
      ...(request === undefined ? [] : [`SSH_ORIGINAL_COMMAND=${shellQuote(request)}`]),
    ];
    const result = sandbox.run(
      `${env.join(" ")} exec bash "$SANDBOX/meshfs-watch.sh" ${args.map(shellQuote).join(" ")}\n`,
    );
    return { ...result, calls: sandbox.calls() };
  }

  test.each([undefined, "watch"])(
    "with the request %p, prints a token when it starts and one per change, never a name",
    (request) => {
      const run = session([join(mountpoint, "wiki")], request);
      expect(run.stderr).toBe("");
      expect(run.status).toBe(0);
      expect(run.stdout).toBe(`${WATCH_TOKEN}\n${WATCH_TOKEN}\n${WATCH_TOKEN}\n`);
      expect((sandbox.state("inotifywait-args") ?? "").split("\n").filter(Boolean)).toEqual([
        "-m",
        "-r",
        "-q",
        "-e",
        "close_write,create,delete,move,attrib",
        "--exclude",
        "/\\.(unison\\.|swarm-sync-)",
        "--format",
        WATCH_TOKEN,
        join(mountpoint, "wiki"),
        `@${mountpoint}/.zfs`,
      ]);
    },
  );

  test("follows the dataset's root itself (an ssh:// sync of the whole export), snapshots left out", () => {
    const run = session([mountpoint]);
    expect(run.status).toBe(0);
    expect(sandbox.state("inotifywait-args")).toContain(`${mountpoint}\n@${mountpoint}/.zfs\n`);
  });

  test.each(["sh", "watch /etc", "watch\nid", "internal-sftp", "/usr/bin/unison -server", "rm -rf /"])(
    "refuses the request %p, and logs it",
    (request) => {
      const run = session([join(mountpoint, "wiki")], request);
      expect(run.status).toBe(2);
      expect(run.stdout).toBe("");
      expect(run.stderr).toBe("meshfs-watch: refused: command not allowed: only watch\n");
      expect(run.calls.filter((c) => c.startsWith("logger "))).toEqual([
        "logger -t swarm-watch -p auth.warning refused meshfs-watch from 10.8.0.3: command not allowed: only watch",
      ]);
      expect(sandbox.state("inotifywait-args")).toBeUndefined();
    },
  );

  test.each<[string, () => string[], string]>([
    ["/etc", () => ["/etc"], "is not inside the export's mountpoint"],
    ["the dataset's parent", () => [join(mountpoint, "..")], "is not inside the export's mountpoint"],
    ["a path that climbs out", () => [join(mountpoint, "wiki", "..", "..", "state-other")], "is not inside"],
    ["a sibling that shares the prefix", () => [`${mountpoint}-other`], "is not inside"],
    ["a symlink inside that leads out", () => [join(mountpoint, "wiki", "elsewhere")], "is not inside"],
    ["a directory that does not exist", () => [join(mountpoint, "gone")], "does not exist"],
    ["a file", () => [join(mountpoint, "wiki", "page.md")], "is not a directory"],
    ["no directory", () => [], "usage: meshfs-watch DIR"],
    [
      "two directories",
      () => [join(mountpoint, "wiki"), join(mountpoint, "wiki")],
      "usage: meshfs-watch DIR",
    ],
  ])("refuses %s", (_, args, why) => {
    writeFileSync(join(mountpoint, "wiki", "page.md"), "# a page\n");
    const run = session(args(), "watch");
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^meshfs-watch: refused: /);
    expect(run.stderr).toContain(why);
    expect(run.calls.filter((c) => c.startsWith("logger "))).toEqual([
      expect.stringMatching(/^logger -t swarm-watch -p auth\.warning refused /),
    ]);
    expect(sandbox.state("inotifywait-args")).toBeUndefined();
  });

  test.each([
    ["root", "is not the watch user of an export"],
    ["meshfs", "is not the watch user of an export"],
    ["backup-watch", "export backup is not watched here"],
  ])("refuses to run as %s", (user, why) => {
    sandbox.state("user", user);
    const run = session([join(mountpoint, "wiki")], "watch");
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(why);
    expect(sandbox.state("inotifywait-args")).toBeUndefined();
  });
});

describe("unison-remote-watch, the sync host's end", () => {
  const UNIT = "swarm-sync-wiki.service";
  let sandbox: Sandbox;

  /**
   * `lines`: what the export host sends, `sleep SECONDS` lines between them, then ssh exits
   * with `exit`. systemctl answers `is-active` from the state file `states` (one answer per
   * call, the last one repeated) and notes the time of every start.
   */
  function setUp(lines: readonly string[], exit = 255, watchValues: Record<string, string> = {}) {
    const script = lines
      .map((l) => (l.startsWith("sleep ") ? l : `printf '%s\\n' ${shellQuote(l)}`))
      .join("\n");
    sandbox = new Sandbox([], {
      ssh: `date +%s%N >"$SANDBOX/state/ssh-started"\nprintf '%s\\n' "$@" >"$SANDBOX/state/ssh-args"\n${script}\nexit ${exit}`,
      systemctl: `s=$SANDBOX/state
case $1 in
  is-active) state=$(head -n 1 "$s/states"); [ "$(wc -l <"$s/states")" -le 1 ] || sed -i 1d "$s/states"
    echo "$state"; [ "$state" = active ] ;;
  start) date +%s%N >>"$s/starts" ;;
  *) exit 3 ;;
esac`,
    });
    const dir = sandbox.dir;
    writeFileSync(join(dir, "unison-watch"), hostScript("unison-watch.sh", watchValues));
    writeFileSync(
      join(dir, "remote-watch.sh"),
      hostScript("unison-remote-watch.sh", { WATCH: join(dir, "unison-watch"), TOKEN: WATCH_TOKEN }),
    );
    sandbox.state("states", "inactive\n");
  }

  afterEach(() => sandbox.dispose());

  function follow() {
    const args = remoteWatchSshArgs(WATCHED_SYNC_PLAN);
    const result = sandbox.run(
      `chmod +x "$SANDBOX/unison-watch"\nexec bash "$SANDBOX/remote-watch.sh" ${[UNIT, ...args].map(shellQuote).join(" ")}\n`,
    );
    // Milliseconds from the session's start (when ssh ran) to each start of the sync.
    const started = BigInt((sandbox.state("ssh-started") ?? "0").trim());
    const starts = (sandbox.state("starts") ?? "")
      .split("\n")
      .filter(Boolean)
      .map((ns) => Number((BigInt(ns) - started) / 1_000_000n));
    return { ...result, args, starts, calls: sandbox.calls() };
  }

  test("starts the sync once when watching begins and once per burst, ignoring any other line", () => {
    setUp([
      "change",
      "sleep 1.5",
      // An editor's save: write, rename, chmod, within milliseconds.
      "change",
      "change",
      "change",
      "sleep 0.2",
      "change",
      "sleep 1.5",
      "rm -rf /",
      "change; reboot",
      "sleep 1.2",
      "change",
    ]);
    const run = follow();
    // ssh's status: systemd restarts the unit after RestartSec.
    expect(run.status).toBe(255);
    expect(run.stderr).toBe("");
    expect(sandbox.state("ssh-args")).toBe(`${run.args.join("\n")}\n`);
    expect(run.calls.filter((c) => c.startsWith("systemctl start"))).toEqual([
      `systemctl start --no-block ${UNIT}`,
      `systemctl start --no-block ${UNIT}`,
      `systemctl start --no-block ${UNIT}`,
    ]);
    // The first start settles 0.5 s after the session's first line; the burst's start 0.5 s after
    // its last line (1.7 s), never before; the last comes with the end of the session.
    const [first, burst, last] = run.starts;
    expect(first).toBeGreaterThanOrEqual(500);
    expect(first).toBeLessThan(1400);
    expect(burst).toBeGreaterThanOrEqual(1700 + 500);
    expect(burst).toBeLessThan(1700 + 1400);
    expect(last).toBeGreaterThanOrEqual(1700 + 1500 + 1200);
  });

  test("waits for a run in progress, its status recorded too, before it starts the next, so no change is lost", () => {
    setUp(["change"], 0);
    sandbox.state("states", "activating\nactivating\ndeactivating\ninactive\n");
    const run = follow();
    expect(run.status).toBe(0);
    expect(run.calls.filter((c) => c.startsWith("systemctl "))).toEqual([
      `systemctl is-active ${UNIT}`,
      `systemctl is-active ${UNIT}`,
      `systemctl is-active ${UNIT}`,
      `systemctl is-active ${UNIT}`,
      `systemctl start --no-block ${UNIT}`,
    ]);
  });

  test("starts a run during a steady stream of changes, not only after it", () => {
    setUp([...Array.from({ length: 15 }, () => ["change", "sleep 0.2"]).flat()], 0, { MAX_SETTLE: "1" });
    const run = follow();
    expect(run.status).toBe(0);
    expect(run.starts.length).toBeGreaterThanOrEqual(2);
    // The first start comes about MAX_SETTLE into the stream, long before its end (3 s).
    expect(run.starts[0]).toBeLessThan(2500);
  });

  test("passes ssh the pinned host key, the sync's own key and nothing from ssh_config", () => {
    const args = remoteWatchSshArgs(WATCHED_SYNC_PLAN);
    expect(args.join(" ")).toBe(
      "-F /dev/null -i /etc/swarm/unison/wiki.watch.key -o IdentitiesOnly=yes -o BatchMode=yes " +
        "-o UserKnownHostsFile=/etc/swarm/meshfs/meshfs.known_hosts -o GlobalKnownHostsFile=/dev/null " +
        "-o HostKeyAlias=swarm-meshfs -o StrictHostKeyChecking=yes -o ConnectTimeout=5 " +
        "-o ServerAliveInterval=5 -o ServerAliveCountMax=3 meshfs-watch@10.8.0.1 watch",
    );
    expect(WATCH).toBe("/usr/local/lib/swarm/unison-watch");
  });
});

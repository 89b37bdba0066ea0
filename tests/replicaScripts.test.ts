/**
 * zfs-replica-send and zfs-replica-recv run together for real (the rendered
 * programs, under bash, in a Sandbox): a stand-in zfs keeps both hosts'
 * datasets, snapshots (guid, creation), holds and resume tokens in files, a
 * stand-in ssh runs the receiver as the replica's forced command, and the
 * clock stands still. Whole, incremental, resumed and raw sends, a diverged
 * replica, an unreachable one, and what the forced command refuses.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { holdTag, receiveConf, ReplicaPlan, sendConf, senderFiles } from "../templates/replica";
import { hostScript, shellQuote } from "../templates/shell";
import { retentionArgs } from "../templates/zfs";
import { Sandbox } from "./sandbox";

const DATASET = "tank/meshfs";
const TARGET = "backup/replicas/meshfs";
const PLAN: ReplicaPlan = {
  exportName: "meshfs",
  source: { host: "anchor", meshAddress: "10.8.0.1", dataset: DATASET },
  host: "vault",
  meshAddress: "10.8.0.2",
  pool: { exportName: "meshfs", pool: "backup", devices: [] },
  target: TARGET,
  interval: 900,
  retention: { frequent: 4, hourly: 24, daily: 7, weekly: 0, monthly: 3 },
  maxLag: 3600,
};
const STATUS = senderFiles("meshfs", "vault").status;
const TAG = holdTag("vault");
/** The receiver's hold on the replica's newest snapshot. */
const BASE_TAG = "swarm-replica-base";
const RECEIVE = `zfs receive -s -u -o readonly=on -o canmount=noauto ${TARGET}`;
const TIERS = retentionArgs(PLAN.retention).join(" ");
const KEYS = "result message started finished first_attempt bytes replicated replicated_at".split(" ");

/**
 * Just the zfs(8) calls of the two programs, strict about their flags. State: `datasets`
 * (name, encryption), `snapshots` (name, guid, creation; in createtxg order), `holds` (snapshot,
 * tag), `tokens` (dataset, token, guid the stream starts from or -, source snapshot it resumes).
 * A stream is a header line and a line per snapshot; the receive keeps the last in `stream`.
 */
const ZFS = `s=$SANDBOX/state
bad() { echo "fake zfs: unexpected: zfs $*" >&2; exit 3; }
missing() { echo "cannot open '$1': dataset does not exist" >&2; exit 1; }
has() { cut -f1 "$s/datasets" "$s/snapshots" | grep -qxF -- "$1"; }
snaps() { awk -F'\t' -v d="$1@" 'index($1, d) == 1' "$s/snapshots"; }
field() { awk -F'\t' -v k="$2" -v c="$3" '$1 == k { print $c }' "$s/$1"; }
short='{ print substr($1, index($1, "@") + 1) "\t" $2 "\t" $3 }'
n=$#
case "$*" in
  "get -H -o value encryption "*) [ $n = 6 ] || bad "$@"; has "$6" || missing "$6"; field datasets "$6" 2 ;;
  "get -H -o value receive_resume_token "*) [ $n = 6 ] || bad "$@"
    token=$(field tokens "$6" 2)
    [ -n "$token" ] || { has "$6" || missing "$6"; token=-; }
    echo "$token" ;;
  "list -H -o name "*) [ $n = 5 ] || bad "$@"; has "$5" || missing "$5"; echo "$5" ;;
  "list -H -p -t snapshot -o name,guid,creation -s createtxg -d 1 "*) [ $n = 12 ] || bad "$@"
    has "\${12}" || missing "\${12}"; snaps "\${12}" ;;
  "list -H -t snapshot -o name -d 1 "* | "list -H -t snapshot -o name -s createtxg -d 1 "*) d=\${!#}
    [ $n = 9 ] || [ $n = 11 ] || bad "$@"; has "$d" || missing "$d"; snaps "$d" | cut -f1 ;;
  "snapshot "*) [ $n = 2 ] || bad "$@"
    ! has "$2" || { echo "cannot create snapshot '$2': dataset already exists" >&2; exit 1; }
    guid=$(cat "$s/guid"); echo $((guid + 1)) >"$s/guid"
    printf '%s\t%s\t%s\n' "$2" "$guid" "$(cat "$s/now")" >>"$s/snapshots" ;;
  "send -t "*) [ $n = 3 ] || bad "$@"
    from=$(awk -F'\t' -v t="$3" '$2 == t { print $3 }' "$s/tokens")
    snapshot=$(awk -F'\t' -v t="$3" '$2 == t { print $4 }' "$s/tokens")
    [ -n "$from" ] || { echo "cannot resume send: invalid token" >&2; exit 1; }
    has "$snapshot" || { echo "cannot resume send: '$snapshot' used in the initial send no longer exists" >&2; exit 1; }
    echo "ZFS-STREAM resume from=$from"
    awk -F'\t' -v n="$snapshot" "\\$1 == n $short" "$s/snapshots" ;;
  "send -c "* | "send -w "*) flag=$2 base='' from=-; shift 2
    if [ "$1" = -I ]; then base=$2 from=$(field snapshots "$2" 2); shift 2; fi
    [ $# = 1 ] && [ -n "$from" ] || bad send "$@"
    has "$1" || missing "$1"
    echo "ZFS-STREAM $flag from=$from"
    snaps "\${1%@*}" | awk -F'\t' -v b="$base" -v t="$1" '$1 == b { on = 1; next }
      on || (b == "" && $1 == t) '"$short"' $1 == t { exit }' ;;
  "receive -s -u -o readonly=on -o canmount=noauto "*) [ $n = 8 ] || bad "$@"; t=$8
    cat >"$s/stream"
    read -r magic _ from <"$s/stream"
    [ "$magic" = ZFS-STREAM ] || { echo "cannot receive: invalid stream" >&2; exit 1; }
    if [ "$from" = from=- ]; then
      ! has "$t" || { echo "cannot receive new filesystem stream: destination '$t' exists, must specify -F to overwrite it" >&2; exit 1; }
      printf '%s\toff\n' "$t" >>"$s/datasets"
    elif [ "$from" != "from=$(snaps "$t" | tail -n 1 | cut -f2)" ]; then
      echo "cannot receive incremental stream: most recent snapshot of $t does not match incremental source" >&2; exit 1
    fi
    tail -n +2 "$s/stream" | sed "s|^|$t@|" >>"$s/snapshots"
    awk -F'\t' -v t="$t" '$1 != t && $1 != t "/%recv"' "$s/tokens" >"$s/tokens.new"; mv "$s/tokens.new" "$s/tokens" ;;
  "receive -A "*) [ $n = 3 ] || bad "$@"
    awk -F'\t' -v t="$3" '$1 != t && $1 != t "/%recv"' "$s/tokens" >"$s/tokens.new"; mv "$s/tokens.new" "$s/tokens" ;;
  "holds -H "*) shift 2
    for name in "$@"; do awk -F'\t' -v n="$name" '$1 == n { print $1 "\t" $2 "\tFri Mar  1 12:00 2024" }' "$s/holds"; done ;;
  "hold "*) [ $n = 3 ] || bad "$@"; has "$3" || missing "$3"
    ! grep -qxF -- "$3	$2" "$s/holds" || { echo "cannot hold snapshot '$3': tag already exists on this dataset" >&2; exit 1; }
    printf '%s\t%s\n' "$3" "$2" >>"$s/holds" ;;
  "release "*) [ $n = 3 ] || bad "$@"
    grep -qxF -- "$3	$2" "$s/holds" || { echo "cannot release hold from snapshot '$3': no such tag on this dataset" >&2; exit 1; }
    grep -vxF -- "$3	$2" "$s/holds" >"$s/holds.new" || true; mv "$s/holds.new" "$s/holds" ;;
  *) bad "$@" ;;
esac`;

const STUBS = {
  zfs: ZFS,
  // The replica's sshd: runs its forced command, the request in SSH_ORIGINAL_COMMAND.
  ssh: `[ ! -e "$SANDBOX/state/ssh-fail" ] || { echo "ssh: connect to host 10.8.0.2 port 22: Connection timed out" >&2; exit 255; }
SSH_CLIENT='10.8.0.1 50514 22' SSH_ORIGINAL_COMMAND=\${!#} exec bash "$SANDBOX/recv.sh" meshfs`,
  "zfs-snapshot": `echo "swarm: kept snapshot old: a tier keeps it"; echo "swarm: destroyed snapshot older"`,
  date: `exec /usr/bin/date -d "@$(cat "$SANDBOX/state/now")" "$@"`,
  dd: `exec /usr/bin/dd "$@"`,
  logger: ":",
};

const T0 = Date.parse("2024-03-01T12:00:00Z") / 1000;
/** The snapshot a run at `time` takes, e.g. swarm-20240301T120000Z. */
const nameAt = (time: number) =>
  `swarm-${new Date(time * 1000).toISOString().slice(0, 19).replace(/[-:]/g, "")}Z`;
const A = nameAt(T0 - 7200);
const B = nameAt(T0 - 3600);
const row = (dataset: string, name: string, guid: number, creation: number) =>
  `${dataset}@${name}\t${guid}\t${creation}\n`;
/** The source's A and B, and the datasets of both hosts. */
const SOURCE_AB = row(DATASET, A, 11, T0 - 7200) + row(DATASET, B, 12, T0 - 3600);
const BOTH = `${DATASET}\toff\n${TARGET}\toff\n`;

let sandbox: Sandbox;

beforeEach(() => {
  sandbox = new Sandbox(["/var/lib"], STUBS);
  const dir = sandbox.dir;
  [join(dir, "tmp"), join(dir, "replicas"), sandbox.outside(dirname(STATUS))].forEach((d) =>
    mkdirSync(d, { recursive: true }),
  );
  const receiver = { CONF_DIR: join(dir, "replicas"), SNAPSHOT_PROGRAM: join(dir, "bin", "zfs-snapshot") };
  writeFileSync(join(dir, "recv.sh"), hostScript("zfs-replica-recv.sh", receiver));
  writeFileSync(join(dir, "send.sh"), hostScript("zfs-replica-send.sh"));
  writeFileSync(join(dir, "replicas", "meshfs.conf"), receiveConf(PLAN));
  writeFileSync(join(dir, "send.conf"), sendConf(PLAN));
  sandbox.state("datasets", `${DATASET}\toff\n`);
  ["snapshots", "holds", "tokens"].forEach((file) => sandbox.state(file, ""));
  sandbox.state("guid", "500");
});

afterEach(() => sandbox.dispose());

/** The lines of a state file about a dataset's snapshots, split at tabs, the dataset@ left out. */
const about = (file: string, dataset: string) =>
  (sandbox.state(file) ?? "")
    .split("\n")
    .filter((l) => l.startsWith(`${dataset}@`))
    .map((l) => l.slice(dataset.length + 1).split("\t"));
/** A dataset's snapshots as [name, guid, creation], its holds as [snapshot, tag]. */
const snapshotsOf = (dataset: string) => about("snapshots", dataset);
const holds = (dataset: string) => about("holds", dataset).sort();

function outcome(result: { status: number | null; stdout: string; stderr: string }) {
  const calls = sandbox.calls();
  return {
    exit: result.status,
    stdout: result.stdout,
    stderr: result.stderr,
    zfs: calls.filter((c) => c.startsWith("zfs ")),
    /** The requests of each ssh call. */
    ssh: calls.filter((c) => c.startsWith("ssh ")).map((c) => c.slice(c.lastIndexOf(" ") + 1)),
    other: calls.filter((c) => /^(zfs-snapshot|logger) /.test(c)),
  };
}

/** One run of zfs-replica-send at `time`: its outcome and the STATUS it wrote. */
function send(time: number) {
  sandbox.state("now", String(time));
  const run = outcome(
    sandbox.run('export TMPDIR="$SANDBOX/tmp"\nexec bash "$SANDBOX/send.sh" "$SANDBOX/send.conf"\n'),
  );
  // Whatever happens: nothing is destroyed or rolled back, and a receive never forces (discarding a
  // cut-off receive of the replica's own dataset is the one other receive).
  const allowed = [RECEIVE, `zfs receive -A ${TARGET}`];
  expect(
    run.zfs.filter((c) => /^zfs (destroy|rollback)/.test(c) || (/^zfs rec/.test(c) && !allowed.includes(c))),
  ).toEqual([]);
  const lines = sandbox.read(STATUS).split("\n").filter(Boolean);
  const status: Record<string, string> = Object.fromEntries(lines.map((l) => l.split(/=(.*)/s).slice(0, 2)));
  expect(Object.keys(status)).toEqual(KEYS);
  expect(status.started).toBe(String(time));
  expect(status.finished).toBe(String(time));
  return { ...run, status };
}

/** zfs-replica-recv run as sshd runs the forced command: `request` undefined leaves SSH_ORIGINAL_COMMAND unset. */
function recv(args: readonly string[], request?: string, stdin = "", client = "10.8.0.1 50514 22") {
  const env = [
    ...(client ? [`SSH_CLIENT=${shellQuote(client)}`] : []),
    ...(request === undefined ? [] : [`SSH_ORIGINAL_COMMAND=${shellQuote(request)}`]),
  ];
  return outcome(
    sandbox.run(`${env.join(" ")} exec bash "$SANDBOX/recv.sh" ${args.map(shellQuote).join(" ")}\n`, stdin),
  );
}

const sends = (zfs: string[]) => zfs.filter((c) => c.startsWith("zfs send "));
const bytesOfStream = () => Buffer.byteLength(sandbox.state("stream") ?? "");

describe("zfs-replica-send with zfs-replica-recv", () => {
  test("a first run sends the snapshot it takes whole to an empty replica and holds it", () => {
    const n0 = nameAt(T0);
    const run = send(T0);
    expect(run.stderr).toBe("");
    expect(run.exit).toBe(0);
    expect(run.stdout).toContain(`swarm: vault has no replica yet: sending ${DATASET}@${n0} whole\n`);
    expect(run.stdout).toContain(`replica: zfs-replica-recv: received into ${TARGET}\n`);
    expect(run.ssh).toEqual(["state", "receive", "state"]);
    expect(run.zfs).toContain(`zfs snapshot ${DATASET}@${n0}`);
    expect(sends(run.zfs)).toEqual([`zfs send -c ${DATASET}@${n0}`]);
    expect(run.other).toEqual([`zfs-snapshot --no-snapshot ${TARGET} ${TIERS}`]);
    expect(snapshotsOf(TARGET)).toEqual([[n0, "500", String(T0)]]);
    expect(holds(DATASET)).toEqual([[n0, TAG]]);
    expect(holds(TARGET)).toEqual([[n0, BASE_TAG]]);
    expect(run.status).toMatchObject({
      result: "ok",
      message: `vault has ${DATASET}@${n0} (${bytesOfStream()} bytes sent)`,
      first_attempt: String(T0),
      bytes: String(bytesOfStream()),
      replicated: n0,
      replicated_at: String(T0),
    });
    expect(Number(run.status.bytes)).toBeGreaterThan(0);
  });

  test("the next run sends -I from the replica's newest, snapshots between included, and moves the hold", () => {
    send(T0);
    const [n0, between, n1] = [nameAt(T0), nameAt(T0 + 300), nameAt(T0 + 900)];
    // The snapshot timer took one in between; another tag holds the first.
    sandbox.state("snapshots", `${sandbox.state("snapshots")}${row(DATASET, between, 900, T0 + 300)}`);
    sandbox.state("holds", `${sandbox.state("holds")}${DATASET}@${n0}\tkeep\n`);
    const run = send(T0 + 900);
    expect(run.exit).toBe(0);
    expect(sends(run.zfs)).toEqual([`zfs send -c -I ${DATASET}@${n0} ${DATASET}@${n1}`]);
    expect(snapshotsOf(TARGET).map(([name]) => name)).toEqual([n0, between, n1]);
    expect(run.zfs).toContain(`zfs hold ${TAG} ${DATASET}@${n1}`);
    expect(run.zfs.filter((c) => c.startsWith("zfs release ")).sort()).toEqual([
      `zfs release ${BASE_TAG} ${TARGET}@${n0}`,
      `zfs release ${TAG} ${DATASET}@${n0}`,
    ]);
    expect(holds(DATASET)).toEqual([
      [n0, "keep"],
      [n1, TAG],
    ]);
    expect(holds(TARGET)).toEqual([[n1, BASE_TAG]]);
    expect(run.status).toMatchObject({
      result: "ok",
      first_attempt: String(T0),
      bytes: String(bytesOfStream()),
      replicated: n1,
      replicated_at: String(T0 + 900),
    });
  });

  test.each([
    {
      what: "an incremental receive cut off: resumed, then -I from what it resumed",
      replica: row(TARGET, A, 11, T0 - 7200),
      token: `${TARGET}\t1-abc\t11\t${DATASET}@${B}\n`,
      sent: ["zfs send -t 1-abc", `zfs send -c -I ${DATASET}@${B} ${DATASET}@${nameAt(T0)}`],
    },
    {
      what: "a first receive cut off (the partial dataset's token): resumed, then -I",
      replica: "",
      token: `${TARGET}/%recv\t1-def\t-\t${DATASET}@${A}\n`,
      sent: ["zfs send -t 1-def", `zfs send -c -I ${DATASET}@${A} ${DATASET}@${nameAt(T0)}`],
    },
  ])("$what", ({ replica, token, sent }) => {
    sandbox.state("datasets", replica ? BOTH : `${DATASET}\toff\n`);
    sandbox.state("snapshots", SOURCE_AB + replica);
    sandbox.state("holds", `${DATASET}@${A}\t${TAG}\n`);
    sandbox.state("tokens", token);
    const run = send(T0);
    expect(run.exit).toBe(0);
    expect(run.stdout).toContain("swarm: resuming the receive vault had cut off\n");
    expect(sends(run.zfs)).toEqual(sent);
    expect(run.ssh).toEqual(["state", "receive", "state", "receive", "state"]);
    expect(snapshotsOf(TARGET).map(([name]) => name)).toEqual([A, B, nameAt(T0)]);
    expect(sandbox.state("tokens")).toBe("");
    expect(holds(DATASET)).toEqual([[nameAt(T0), TAG]]);
    expect(holds(TARGET)).toEqual([[nameAt(T0), BASE_TAG]]);
    expect(run.status).toMatchObject({ result: "ok", replicated: nameAt(T0) });
  });

  test("a cut-off receive whose snapshot was pruned on the source: discarded on the replica, then -I from its newest", () => {
    sandbox.state("datasets", BOTH);
    sandbox.state("snapshots", SOURCE_AB + row(TARGET, A, 11, T0 - 7200));
    sandbox.state("holds", `${DATASET}@${A}\t${TAG}\n`);
    sandbox.state("tokens", `${TARGET}\t1-abc\t11\t${DATASET}@pruned\n`);
    const run = send(T0);
    expect(run.exit).toBe(0);
    expect(run.stdout).toContain("cannot resume");
    expect(run.stdout).toContain("vault discards it");
    expect(run.ssh).toEqual(["state", "receive", "abort-resume", "state", "receive", "state"]);
    expect(sends(run.zfs)).toEqual([
      "zfs send -t 1-abc",
      `zfs send -c -I ${DATASET}@${A} ${DATASET}@${nameAt(T0)}`,
    ]);
    expect(sandbox.state("tokens")).toBe("");
    expect(run.status).toMatchObject({ result: "ok", replicated: nameAt(T0) });
  });

  test("a replica whose newest snapshot is not the source's has diverged: nothing sent, the lag kept", () => {
    sandbox.state("datasets", BOTH);
    sandbox.state(
      "snapshots",
      SOURCE_AB + row(TARGET, A, 11, T0 - 7200) + row(TARGET, "swarm-there", 99, T0),
    );
    sandbox.state("holds", `${DATASET}@${A}\t${TAG}\n`);
    const before = `result=ok\nmessage=vault has ${A}\nstarted=1000\nfinished=1001\nfirst_attempt=1000\nbytes=7\nreplicated=${A}\nreplicated_at=${T0 - 7200}\n`;
    sandbox.write(STATUS, before);
    const run = send(T0);
    expect(run.exit).toBe(1);
    expect(run.stderr).toContain("zfs-replica-send: meshfs → vault: diverged: ");
    expect(run.ssh).toEqual(["state"]);
    expect(sends(run.zfs)).toEqual([]);
    expect(run.zfs.filter((c) => /^zfs (receive|hold|release) /.test(c))).toEqual([]);
    expect(holds(DATASET)).toEqual([[A, TAG]]);
    expect(run.status).toEqual({
      result: "diverged",
      message: `the replica's newest snapshot swarm-there is not a snapshot of ${DATASET} (it was taken on the replica, or the source was rolled back past it): nothing was sent or rolled back; the newest common snapshot is ${A}`,
      started: String(T0),
      finished: String(T0),
      first_attempt: "1000",
      bytes: "0",
      replicated: A,
      replicated_at: String(T0 - 7200),
    });
  });

  test.each([
    {
      what: "no snapshot in common",
      replica: row(TARGET, "swarm-y", 98, T0 - 99) + row(TARGET, "swarm-z", 99, T0 - 9),
      message: `the replica has no snapshot in common with ${DATASET} (its base was destroyed here, or it is a copy of another dataset): nothing was sent or rolled back; to start over, destroy the replica's dataset on vault and the next run sends everything`,
    },
    {
      what: "a replica dataset without snapshots",
      replica: "",
      message: `the replica's dataset exists on vault but holds no snapshot: nothing was sent; if it holds nothing of value, destroy it there (zfs destroy) and the next run sends everything`,
    },
  ])("$what: diverged, nothing sent", ({ replica, message }) => {
    sandbox.state("datasets", BOTH);
    sandbox.state("snapshots", SOURCE_AB + replica);
    const run = send(T0);
    expect(run.exit).toBe(1);
    expect(sends(run.zfs)).toEqual([]);
    expect(run.ssh).toEqual(["state"]);
    const kept = { bytes: "0", first_attempt: String(T0), replicated: "", replicated_at: "" };
    expect(run.status).toMatchObject({ result: "diverged", message, ...kept });
  });

  test("an encrypted dataset travels raw (-w), never -c", () => {
    sandbox.state("datasets", `${DATASET}\taes-256-gcm\n`);
    const first = send(T0);
    expect(first.zfs).toContain(`zfs get -H -o value encryption ${DATASET}`);
    expect(sends(first.zfs)).toEqual([`zfs send -w ${DATASET}@${nameAt(T0)}`]);
    const second = send(T0 + 900);
    expect(sends(second.zfs)).toEqual([
      `zfs send -w -I ${DATASET}@${nameAt(T0)} ${DATASET}@${nameAt(T0 + 900)}`,
    ]);
    expect(sandbox.state("stream")).toMatch(/^ZFS-STREAM -w from=500\n/);
    expect([first.exit, second.exit]).toEqual([0, 0]);
    expect(second.status).toMatchObject({ result: "ok", replicated: nameAt(T0 + 900) });
  });

  test("an unreachable replica: failed, saying it cannot ask it, nothing sent", () => {
    sandbox.state("ssh-fail", "");
    const run = send(T0);
    expect(run.exit).toBe(1);
    expect(sends(run.zfs)).toEqual([]);
    expect(run.status).toMatchObject({
      result: "failed",
      message:
        "cannot ask vault (10.8.0.2) for its state: ssh: connect to host 10.8.0.2 port 22: Connection timed out",
      first_attempt: String(T0),
      bytes: "0",
      replicated: "",
    });
    expect(run.stderr).toContain("zfs-replica-send: meshfs → vault: failed: cannot ask vault (10.8.0.2)");
  });

  test("a run that stops where nothing expected it (the source dataset gone) still records a failure", () => {
    sandbox.state("datasets", "");
    const run = send(T0);
    expect(run.exit).toBe(1);
    expect(sends(run.zfs)).toEqual([]);
    expect(run.status).toMatchObject({
      result: "failed",
      message: "stopped unexpectedly (exit 1): see journalctl -u swarm-replicate-meshfs-to-vault",
      first_attempt: String(T0),
    });
  });
});

describe("zfs-replica-recv, the forced command", () => {
  test.each([
    "zfs destroy backup/replicas/meshfs",
    "sh",
    "",
    "receive -F tank/other",
    "state; sh",
    undefined,
  ])("refuses the request %p", (request) => {
    const run = recv(["meshfs"], request);
    expect(run.exit).toBe(2);
    expect(run.stderr).toMatch(/^zfs-replica-recv: refused: '.*' is not a request of this key/);
    expect(run.zfs).toEqual([]);
    expect(run.other).toEqual([
      expect.stringMatching(/^logger -t swarm-replica -p auth\.warning refused from 10\.8\.0\.1: /),
    ]);
  });

  test.each([
    [["nothere"], "no replica of export nothere is kept here"],
    [["Meshfs"], "usage: zfs-replica-recv EXPORT"],
    [["../replicas/meshfs"], "usage: zfs-replica-recv EXPORT"],
    [["meshfs.conf"], "usage: zfs-replica-recv EXPORT"],
    [[], "usage: zfs-replica-recv EXPORT"],
    [["meshfs", "meshfs"], "usage: zfs-replica-recv EXPORT"],
  ])("refuses the export %p", (args, why) => {
    const run = recv(args, "state");
    expect(run.exit).toBe(2);
    expect(run.stderr).toBe(`zfs-replica-recv: refused: ${why}\n`);
    expect(run.zfs).toEqual([]);
  });

  // Bug: refuse() expands ${SSH_CLIENT%% *} under set -u; without SSH_CLIENT (run by hand, not by
  // sshd) bash stops there with "SSH_CLIENT: unbound variable", exit 1 instead of 2, nothing logged.
  test("refuses with exit 2 without SSH_CLIENT too", () => {
    const run = recv(["meshfs"], "sh", "", "");
    expect(run.stderr).not.toContain("unbound variable");
    expect(run.exit).toBe(2);
  });

  test("receive: into the conf's TARGET with fixed options, holds its newest, prunes to the conf's tiers", () => {
    const stream = `ZFS-STREAM -c from=-\n${A}\t11\t${T0}\n`;
    const run = recv(["meshfs"], "receive", stream);
    expect(run.exit).toBe(0);
    expect(run.zfs[0]).toBe(RECEIVE);
    expect(run.zfs.filter((c) => !c.includes(TARGET))).toEqual([]);
    expect(run.zfs.filter((c) => /^zfs (receive|hold|release|destroy|rollback) /.test(c))).toEqual([
      RECEIVE,
      `zfs hold ${BASE_TAG} ${TARGET}@${A}`,
    ]);
    expect(run.other).toEqual([`zfs-snapshot --no-snapshot ${TARGET} ${TIERS}`]);
    expect(run.stdout).toBe(`zfs-replica-recv: received into ${TARGET}\nswarm: destroyed snapshot older\n`);
    expect(snapshotsOf(TARGET)).toEqual([[A, "11", String(T0)]]);

    const state = recv(["meshfs"], "state");
    expect(state.stdout).toBe(`token\t-\nexists\tyes\nsnap\t${A}\t11\t${T0}\n`);
    const plan = recv(["meshfs"], "prune-plan");
    expect(plan.zfs).toEqual([]);
    expect(plan.other).toEqual([`zfs-snapshot --dry-run --no-snapshot ${TARGET} ${TIERS}`]);

    // A stream zfs refuses (the replica exists, a whole stream would need -F): exit 1, no prune.
    const again = recv(["meshfs"], "receive", stream);
    expect(again.exit).toBe(1);
    expect(again.stderr).toContain("must specify -F to overwrite it");
    expect(again.other).toEqual([]);

    // The dataset is the conf's alone.
    const elsewhere = receiveConf({ ...PLAN, target: "backup/elsewhere" });
    writeFileSync(join(sandbox.dir, "replicas", "meshfs.conf"), elsewhere);
    const there = recv(["meshfs"], "receive", stream);
    expect(there.zfs[0]).toBe("zfs receive -s -u -o readonly=on -o canmount=noauto backup/elsewhere");
    expect(there.zfs.filter((c) => !c.includes("backup/elsewhere"))).toEqual([]);
    expect(there.other).toEqual([`zfs-snapshot --no-snapshot backup/elsewhere ${TIERS}`]);
  });
});

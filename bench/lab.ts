/**
 * Lab benchmarks, run by bench/run.ts in a child process that holds the lab
 * lock (`flock /tmp/swarm-lab.lock`). Every mode boots the hosts it needs and
 * leaves the lab down. Progress goes to stderr, one JSON document to stdout.
 *
 *   converge RUNS                    first converge of the lab stack and a no-op second one, per command
 *   sync WRITES RUNS FILES MB RESCANS  propagation latency (timer, watch) and bulk syncs (mount vs ssh:// root)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { HostKeyLookup, StackLoadError, loadStack } from "../config/load";
import { FleetConfig } from "../config/types";
import { LabEngine, sshRun } from "../lab/engine";
import {
  LAB_KEY,
  SSH_CONFIG,
  UNBOOTED,
  labConfig,
  labHostKeys,
  labUpArgs,
  seedHosts,
  vmSh,
} from "../lab/fleet";
import { EXIT, Io, UsageError, parseCommandLine, processIo, argumentsOrUsage } from "../scripts/commandLine";
import { syncSentinel } from "../templates/sftp";
import { BulkRun, ConvergeRun, LatencySeries, SyncBench } from "./results";

const say = (line: string) => process.stderr.write(`bench: ${line}\n`);

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Runs bash as root on a lab host; rejects naming the host unless `allowFail`. */
async function onHost(
  config: FleetConfig,
  host: string,
  body: string,
  allowFail = false,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const h = config.hosts.find((x) => x.name === host)?.existing;
  if (h === undefined) {
    throw new Error(`no lab host ${host}`);
  }
  const key = fs.readFileSync(LAB_KEY, "utf8");
  const result = await sshRun(
    { host: h.address, port: h.port, user: "root", privateKey: key, hostKey: h.hostKey },
    `bash -c ${quote(`set -euo pipefail\n${body}`)}`,
    undefined,
    SSH_CONFIG,
  );
  if (result.code !== 0 && !allowFail) {
    throw new Error(
      `on ${host}: exit ${result.code}\n${body.slice(0, 400)}\n${result.stderr}${result.stdout}`,
    );
  }
  return result;
}

/**
 * Boots the hosts of `configOf` (the image is built first, so boot time is
 * boot time), seeds them, runs `body` with the config that pins their fresh
 * host keys, and always takes the lab down.
 */
async function withLab<T>(
  configOf: (hostKeys: HostKeyLookup) => FleetConfig,
  body: (config: FleetConfig, bootSeconds: number) => Promise<T>,
): Promise<T> {
  vmSh("image");
  try {
    const t0 = Date.now();
    vmSh("up", ...labUpArgs(configOf(UNBOOTED)));
    const bootSeconds = (Date.now() - t0) / 1000;
    const config = configOf(labHostKeys());
    seedHosts(config);
    return await body(config, bootSeconds);
  } finally {
    vmSh("down");
  }
}

function engine(): LabEngine {
  return new LabEngine({
    sshConfig: SSH_CONFIG,
    progress: (line) => process.stderr.write(`${line}\n`),
  });
}

async function convergeBench(runs: number): Promise<ConvergeRun[]> {
  const results: ConvergeRun[] = [];
  for (let run = 1; run <= runs; run++) {
    say(`converge run ${run}/${runs}`);
    results.push(
      await withLab(
        (hostKeys) => labConfig("lab", hostKeys),
        async (config, bootSeconds) => {
          // lab.sh up makes the admin key the first time.
          const key = fs.readFileSync(LAB_KEY, "utf8");
          const lab = engine();
          const first = await lab.converge(config, key);
          const second = await lab.converge(config, key);
          return {
            bootSeconds,
            first: { seconds: first.seconds, timings: first.timings },
            second: {
              seconds: second.seconds,
              ran: second.created.length + second.updated.length,
              unchanged: second.unchanged.length,
            },
          };
        },
      ),
    );
  }
  return results;
}

/** Where the benchmark syncs live. The mount root is on hetzner-native (as in prod); satellite, which mounts nothing here, syncs over ssh://. */
export const BENCH_SYNCS = {
  timer: { host: "hetzner-native", name: "wiki", local: "/home/ai-streamer/wiki", remote: "wiki" },
  watch: { host: "hetzner-native", name: "watch", local: "/home/ai-streamer/watch", remote: "watch" },
  mount: {
    small: {
      host: "hetzner-native",
      name: "mount-small",
      local: "/home/ai-streamer/mount-small",
      remote: "mount-small",
    },
    large: {
      host: "hetzner-native",
      name: "mount-large",
      local: "/home/ai-streamer/mount-large",
      remote: "mount-large",
    },
  },
  ssh: {
    small: { host: "satellite", name: "ssh-small", local: "/srv/ssh-small", remote: "ssh-small" },
    large: { host: "satellite", name: "ssh-large", local: "/srv/ssh-large", remote: "ssh-large" },
  },
} as const;

type SyncPlace = { host: string; name: string; local: string; remote: string };

/**
 * The bench's own variant of the lab stack: the wiki sync at prod's 60 s, a
 * watch-mode sync, and four bulk syncs (two through the sshfs mount, two
 * through unison's ssh:// root) that run only when started, on a larger pool.
 */
export function benchConfig(hostKeys: HostKeyLookup): FleetConfig {
  try {
    return loadStack("lab", { dir: path.resolve(__dirname, ".."), pinHostKeys: hostKeys, edit: benchVariant })
      .config;
  } catch (e) {
    if (e instanceof StackLoadError && e.invalidConfig) {
      throw new Error(`the bench's lab variant is invalid:\n${e.problems.join("\n")}`);
    }
    throw e;
  }
}

/** The raw lab stack with the bench's syncs and pool. */
function benchVariant(raw: Record<string, unknown>): Record<string, unknown> {
  const [exported] = raw.exports as Record<string, unknown>[];
  const properties = exported.properties as Record<string, unknown>;
  const ai = { user: "ai-streamer", conflicts: "keep-both" };
  const onDemand = { interval: "1d", timeout: "1h" };
  const viaMount = (p: SyncPlace, extra: object) => ({
    host: p.host,
    name: p.name,
    local: p.local,
    remote: { mountPath: `/mnt/meshfs/${p.remote}` },
    ...ai,
    ...extra,
  });
  const viaSsh = (p: SyncPlace) => ({
    host: p.host,
    name: p.name,
    local: p.local,
    remote: { export: "meshfs", path: p.remote },
    ...onDemand,
  });
  return {
    ...raw,
    exports: [
      // The lab's pool, on the VM's virtual disk (4 GB), with room for the bulk trees.
      { ...exported, properties: { ...properties, refquota: "3G" } },
    ],
    mounts: (raw.mounts as Record<string, unknown>[]).filter((m) => m.host !== "satellite"),
    syncs: [
      viaMount(BENCH_SYNCS.timer, { interval: "60s", ignore: ["Name *.swp"] }),
      viaMount(BENCH_SYNCS.watch, { interval: "60s", watch: true }),
      viaMount(BENCH_SYNCS.mount.small, onDemand),
      viaMount(BENCH_SYNCS.mount.large, onDemand),
      viaSsh(BENCH_SYNCS.ssh.small),
      viaSsh(BENCH_SYNCS.ssh.large),
    ],
  };
}

/** A small deterministic generator: the same write schedule on every run. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const DATASET = "/tank/meshfs/state";
const EXPORT_HOST = "anchor";
const EXPORT_USER = "meshfs";

interface Side {
  readonly host: string;
  readonly dir: string;
  readonly owner: string;
}

/**
 * Writes files on one side at the given offsets (seconds from the start) and
 * notes when each appears on the other side. Both sides are containers on one
 * kernel, so their clocks are the same clock.
 */
async function latency(
  config: FleetConfig,
  label: Omit<LatencySeries, "seconds" | "lost">,
  from: Side,
  to: Side,
  offsets: readonly number[],
  timeout: number,
): Promise<LatencySeries> {
  const tag = `${label.mode}-${label.direction.startsWith("local") ? "l2r" : "r2l"}`;
  const names = offsets.map((_, i) => `lat-${tag}-${i}.md`);
  const order = offsets.map((o, i) => [o, i] as const).sort((a, b) => a[0] - b[0]);
  let previous = 0;
  const writes = order
    .map(([offset, i]) => {
      const wait = (offset - previous).toFixed(3);
      previous = offset;
      return `sleep ${wait}; t=$(date +%s.%N); printf 'write %s\\n' ${i} > ${names[i]}; chown ${from.owner}: ${names[i]}; echo "${names[i]} $t"`;
    })
    .join("\n");
  const poll = `cd ${quote(to.dir)}
pending=(${names.join(" ")})
deadline=$((SECONDS + ${Math.ceil(previous + timeout)}))
while [ \${#pending[@]} -gt 0 ] && [ $SECONDS -lt $deadline ]; do
  rest=()
  for f in "\${pending[@]}"; do
    if [ -e "$f" ]; then echo "$f $(date +%s.%N)"; else rest+=("$f"); fi
  done
  pending=(\${rest[@]+"\${rest[@]}"})
  sleep 0.1
done`;
  const [arrived, written] = await Promise.all([
    onHost(config, to.host, poll),
    onHost(config, from.host, `cd ${quote(from.dir)}\n${writes}`),
  ]);
  const at = (text: string) =>
    new Map(
      text
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" ") as [string, string]),
    );
  const wrote = at(written.stdout);
  const seen = at(arrived.stdout);
  const seconds = names
    .filter((n) => seen.has(n))
    .map((n) => Number(seen.get(n)) - Number(wrote.get(n)))
    .sort((a, b) => a - b);
  say(
    `${label.mode} ${label.direction}: ${seconds.map((x) => x.toFixed(1)).join(" ")}${seconds.length < names.length ? `, ${names.length - seconds.length} lost` : ""}`,
  );
  return { ...label, seconds, lost: names.length - seconds.length };
}

/** Longer than sshfs's default cache_timeout (20 s). */
const IDLE_SECONDS = 25;

/** Starts the sync's oneshot service on its host and returns how long the run took, measured on the host. */
async function runSync(config: FleetConfig, place: SyncPlace): Promise<number> {
  const unit = `swarm-sync-${place.name}.service`;
  const result = await onHost(
    config,
    place.host,
    `t0=$(date +%s.%N)
rc=0
systemctl start ${unit} || rc=$?
t1=$(date +%s.%N)
if [ "$rc" != 0 ]; then
  journalctl -u ${unit} --no-pager -n 30 -o cat >&2
  exit "$rc"
fi
echo "$t0 $t1"`,
  );
  const [t0, t1] = result.stdout.trim().split(" ").map(Number);
  return t1 - t0;
}

/** Files and bytes below `dir` on `host`. */
async function tree(
  config: FleetConfig,
  host: string,
  dir: string,
): Promise<{ files: number; bytes: number }> {
  const out = (await onHost(config, host, `find ${quote(dir)} -type f -printf '%s\\n'`)).stdout;
  const sizes = out.split("\n").filter(Boolean).map(Number);
  return { files: sizes.length, bytes: sizes.reduce((a, b) => a + b, 0) };
}

async function bulk(
  config: FleetConfig,
  root: "mount" | "ssh",
  dataset: "small" | "large",
  run: number,
  shape: { files: number; mb: number; rescans: number },
): Promise<BulkRun> {
  const place: SyncPlace = BENCH_SYNCS[root][dataset];
  const owner = root === "mount" ? "ai-streamer" : "root";
  const dir = `run-${run}`;
  const make =
    dataset === "small"
      ? `pad=$(printf '%0900d' 0)
for ((d = 0; d < ${Math.ceil(shape.files / 100)}; d++)); do
  mkdir -p d$d
  for ((f = 0; f < 100 && d * 100 + f < ${shape.files}; f++)); do
    printf 'file %d/%d %s\\n' "$d" "$f" "$pad" > d$d/f$f.txt
  done
done`
      : `for ((i = 0; i < 20; i++)); do head -c ${Math.round((shape.mb * 1024 * 1024) / 20)} /dev/urandom > big$i.bin; done`;
  await onHost(
    config,
    place.host,
    `mkdir -p ${quote(`${place.local}/${dir}`)}\ncd ${quote(`${place.local}/${dir}`)}\n${make}\nchown -R ${owner}: ${quote(`${place.local}/${dir}`)}`,
  );
  const local = await tree(config, place.host, `${place.local}/${dir}`);
  say(
    `${root} ${dataset} run ${run}: initial sync of ${local.files} files, ${(local.bytes / 1e6).toFixed(0)} MB`,
  );
  const initialSeconds = await runSync(config, place);
  const remote = await tree(config, EXPORT_HOST, `${DATASET}/${place.remote}/${dir}`);
  if (remote.files !== local.files || remote.bytes !== local.bytes) {
    throw new Error(
      `${place.name}: ${local.files} files (${local.bytes} bytes) written, ${remote.files} (${remote.bytes}) arrived`,
    );
  }
  const rescanSeconds: number[] = [];
  for (let i = 0; i < shape.rescans; i++) {
    rescanSeconds.push(await runSync(config, place));
  }
  await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
  const idleRescanSeconds = await runSync(config, place);
  say(
    `${root} ${dataset} run ${run}: initial ${initialSeconds.toFixed(1)} s, rescans ${rescanSeconds.map((x) => x.toFixed(2)).join(" ")} s, after ${IDLE_SECONDS} s idle ${idleRescanSeconds.toFixed(2)} s`,
  );
  // Gone from both sides, then one run to forget it, so the next run starts from an empty root.
  // The sshfs mount is dropped first (the automount brings it back): it would otherwise answer
  // from its attribute cache for files removed behind its back.
  await onHost(config, place.host, `rm -rf ${quote(`${place.local}/${dir}`)}`);
  await onHost(config, EXPORT_HOST, `rm -rf ${quote(`${DATASET}/${place.remote}/${dir}`)}`);
  if (root === "mount") {
    await onHost(config, place.host, 'systemctl stop "$(systemd-escape --path --suffix=mount /mnt/meshfs)"');
  }
  await runSync(config, place);
  return {
    root,
    dataset,
    files: local.files,
    bytes: local.bytes,
    initialSeconds,
    rescanSeconds,
    idleRescanSeconds,
  };
}

/** How much the sync benchmark writes and how often it runs. */
export interface SyncOptions {
  readonly writes: number;
  readonly runs: number;
  readonly files: number;
  readonly mb: number;
  readonly rescans: number;
}

async function syncBench(opts: SyncOptions): Promise<SyncBench> {
  return withLab(benchConfig, async (config) => {
    const key = fs.readFileSync(LAB_KEY, "utf8");
    say("converging the bench's lab variant");
    const converged = await engine().converge(config, key);
    // The export creates an ssh:// sync's remote root as a plain export directory before it would
    // mark it, and then leaves the empty, unmarked root alone (reported). Marking it is the
    // deliberate step its warning asks for.
    for (const place of Object.values(BENCH_SYNCS.ssh)) {
      const sentinel = `${DATASET}/${place.remote}/${syncSentinel(place.name)}`;
      await onHost(
        config,
        EXPORT_HOST,
        `[ -e ${sentinel} ] || install -m 0644 -o ${EXPORT_USER} /dev/null ${sentinel}`,
      );
    }
    const interval = config.syncs.find((s) => s.name === BENCH_SYNCS.timer.name)?.interval ?? 60;
    const next = random(20240607);
    const offsets = (window: number) => Array.from({ length: opts.writes }, () => next() * window);
    const local = (p: SyncPlace): Side => ({ host: p.host, dir: p.local, owner: "ai-streamer" });
    const remote = (p: SyncPlace): Side => ({
      host: EXPORT_HOST,
      dir: `${DATASET}/${p.remote}`,
      owner: EXPORT_USER,
    });
    const timeout = 3 * interval + 30;
    say(`latency: ${opts.writes} writes per series at random offsets within ${interval} s`);
    // Timer mode: both directions at once (runs come from the timer alone). Watch mode: one
    // direction at a time, as a run started by a local write also carries remote changes along.
    const timer = Promise.all([
      latency(
        config,
        { mode: "timer", direction: "local → remote" },
        local(BENCH_SYNCS.timer),
        remote(BENCH_SYNCS.timer),
        offsets(interval),
        timeout,
      ),
      latency(
        config,
        { mode: "timer", direction: "remote → local" },
        remote(BENCH_SYNCS.timer),
        local(BENCH_SYNCS.timer),
        offsets(interval),
        timeout,
      ),
    ]);
    const watch = (async () => [
      await latency(
        config,
        { mode: "watch", direction: "local → remote" },
        local(BENCH_SYNCS.watch),
        remote(BENCH_SYNCS.watch),
        offsets(interval),
        timeout,
      ),
      await latency(
        config,
        { mode: "watch", direction: "remote → local" },
        remote(BENCH_SYNCS.watch),
        local(BENCH_SYNCS.watch),
        offsets(interval),
        timeout,
      ),
    ])();
    const series = [...(await timer), ...(await watch)];

    // Bulk runs alone on the fleet: the timers that could run meanwhile are stopped.
    await onHost(
      config,
      BENCH_SYNCS.timer.host,
      `systemctl stop swarm-sync-${BENCH_SYNCS.watch.name}-watch.service swarm-sync-${BENCH_SYNCS.watch.name}-remote-watch.service swarm-sync-${BENCH_SYNCS.watch.name}.timer swarm-sync-${BENCH_SYNCS.timer.name}.timer`,
    );
    const runs: BulkRun[] = [];
    for (let run = 1; run <= opts.runs; run++) {
      for (const dataset of ["small", "large"] as const) {
        for (const root of ["mount", "ssh"] as const) {
          runs.push(await bulk(config, root, dataset, run, opts));
        }
      }
    }
    return { convergeSeconds: converged.seconds, interval, latency: series, bulk: runs };
  });
}

export const USAGE = "usage: tsx bench/lab.ts converge RUNS | sync WRITES RUNS FILES MB RESCANS";

/** One lab benchmark to run. */
export type Job =
  | { readonly mode: "converge"; readonly runs: number }
  | { readonly mode: "sync"; readonly options: SyncOptions };

/** Parses `MODE COUNTS...`: every count a whole number, those left out at their defaults; throws a UsageError on anything else. */
export function parseArguments(argv: readonly string[]): Job {
  const { positionals } = parseCommandLine(argv, { options: {}, allowPositionals: true });
  const [mode, ...rest] = positionals;
  const names =
    mode === "converge" ? ["RUNS"] : mode === "sync" ? ["WRITES", "RUNS", "FILES", "MB", "RESCANS"] : [];
  if (names.length === 0) {
    throw new UsageError(mode === undefined ? "name the mode" : `unknown mode ${mode}`);
  }
  if (rest.length > names.length) {
    throw new UsageError(`unexpected argument ${rest[names.length]}`);
  }
  const n = rest.map((value, i) => {
    if (!/^\d+$/.test(value)) {
      throw new UsageError(`${names[i]} is a whole number, not ${value}`);
    }
    return Number(value);
  });
  return mode === "converge"
    ? { mode, runs: n[0] ?? 1 }
    : {
        mode: "sync",
        options: {
          writes: n[0] ?? 20,
          runs: n[1] ?? 1,
          files: n[2] ?? 10000,
          mb: n[3] ?? 200,
          rescans: n[4] ?? 3,
        },
      };
}

/**
 * Runs one lab benchmark (as root) and prints its result as one JSON line;
 * resolves to the exit code: 0 done, 2 usage or not root.
 */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const parsed = argumentsOrUsage(() => parseArguments(argv), USAGE, io);
  if ("exit" in parsed) {
    return parsed.exit;
  }
  const job = parsed.args;
  if (process.getuid?.() !== 0) {
    io.err("the lab benchmarks need root (network namespaces, systemd-nspawn)");
    return EXIT.usage;
  }
  const result = job.mode === "converge" ? await convergeBench(job.runs) : await syncBench(job.options);
  io.out(JSON.stringify(result));
  return EXIT.ok;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(EXIT.failed);
    },
  );
}

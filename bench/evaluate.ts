/**
 * One benchmark evaluation, run in a fresh child process by bench/run.ts so
 * its peak RSS is its own. Prints one JSON line on stdout.
 *
 *   program HOSTS TOPOLOGY   validate + evaluate the real program under the mock runtime, as render does
 *   profile HOSTS TOPOLOGY   the same under the CPU profiler: where the evaluation's time goes
 *   floor COUNTS_JSON        register the same number of bare resources of the same types, trivial inputs
 *   changes HOSTS TOPOLOGY   evaluate the fleet, then each change, and diff every command's inputs
 */
import { HostDrift } from "../components/hostDrift";
import type { SshConnection } from "../components/remote";
import * as command from "@pulumi/command";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as inspector from "node:inspector";
import * as fs from "node:fs";
import * as path from "node:path";
import { formatErrors } from "../config/load";
import { FleetConfig } from "../config/types";
import { validateFleetConfig } from "../config/validate";
import { CommandInputs, changedInputs, commandInputs, sameInputs } from "../lab/engine";
import { defineFleet } from "../program";
import { MockFleet, RecordedResource, installMocks, offlineRunner, settle } from "../offline/mockRuntime";
import {
  EXIT,
  Io,
  UsageError,
  parseCommandLine,
  positionalsAs,
  processIo,
  argumentsOrUsage,
} from "../scripts/commandLine";
import { Change, FleetShape, belongsTo, meshOnlyHosts, rawFleet } from "./fleets";
import {
  ChangesResult,
  FloorResult,
  GraphResult,
  ProfileResult,
  ProgramResult,
  Rerun,
  TypeCount,
} from "./results";

function validated(raw: Record<string, unknown>): FleetConfig {
  const { config, errors } = validateFleetConfig(raw);
  if (config === undefined) {
    throw new Error(`generated fleet is invalid:\n${formatErrors(errors).join("\n")}`);
  }
  return config;
}

function countTypes(
  resources: readonly RecordedResource[],
  custom: (r: RecordedResource) => boolean,
): TypeCount[] {
  const counts = new Map<string, TypeCount>();
  for (const r of resources) {
    const old = counts.get(r.type);
    counts.set(r.type, { type: r.type, custom: custom(r), count: (old?.count ?? 0) + 1 });
  }
  return [...counts.values()].sort((a, b) => (a.type < b.type ? -1 : 1));
}

/** Component types are the program's own `swarm:` tokens; everything else is a provider resource. */
const isCustom = (r: { type: string }) => !r.type.startsWith("swarm:");

function since(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const maxRssMb = () => process.resourceUsage().maxRSS / 1024;

interface Evaluation {
  readonly mocks: MockFleet;
  readonly validateSeconds: number;
  /** Seconds in the synchronous part: constructing every resource. */
  readonly defineSeconds: number;
}

async function evaluate(shape: FleetShape, change: Change = "none"): Promise<Evaluation> {
  const t0 = process.hrtime.bigint();
  const config = validated(rawFleet(shape, change));
  const validateSeconds = since(t0);
  const mocks = await installMocks(offlineRunner, "bench");
  const t1 = process.hrtime.bigint();
  await defineFleet(config, { sshPrivateKey: pulumi.secret("(bench)") });
  const defineSeconds = since(t1);
  await settle();
  return { mocks, validateSeconds, defineSeconds };
}

async function program(shape: FleetShape): Promise<ProgramResult> {
  const loadSeconds = process.uptime();
  const t0 = process.hrtime.bigint();
  const { mocks, validateSeconds, defineSeconds } = await evaluate(shape);
  const evalSeconds = since(t0);
  const commands = mocks.ofType("command:remote:Command");
  const meshOnly = meshOnlyHosts(shape).map(({ kind, name }) => ({
    kind,
    name,
    types: countTypes(
      mocks.resources.filter((r) => belongsTo(r.name, name)),
      isCustom,
    ),
  }));
  return {
    kind: "program",
    evalSeconds,
    validateSeconds,
    defineSeconds,
    loadSeconds,
    maxRssMb: maxRssMb(),
    types: countTypes(mocks.resources, isCustom),
    meshOnly,
    renderedBytes: commands.reduce((sum, c) => sum + Buffer.byteLength(String(c.plain.create ?? "")), 0),
    commands: commands.length,
  };
}

const ROOT = path.resolve(__dirname, "..");

type Owner = "own" | "sdk" | "harness" | "gc" | "other";

function ownerOf(url: string): Owner | undefined {
  const file = url.startsWith("file://") ? url.slice("file://".length) : url;
  if (!file.startsWith("/")) {
    return undefined; // node:internal, native, eval: charged to the caller
  }
  if (file.includes("/node_modules/")) {
    return "sdk";
  }
  if (
    !file.startsWith(`${ROOT}/`) ||
    file.startsWith(`${ROOT}/bench/`) ||
    file.endsWith("/offline/mockRuntime.ts")
  ) {
    return "harness";
  }
  return "own";
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

function attribute(profile: {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}): Record<Owner, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    for (const c of n.children ?? []) {
      parent.set(c, n.id);
    }
  }
  const owner = new Map<number, Owner>();
  const resolve = (id: number): Owner => {
    const known = owner.get(id);
    if (known !== undefined) {
      return known;
    }
    const node = byId.get(id) as ProfileNode;
    let result: Owner;
    if (node.callFrame.functionName === "(garbage collector)") {
      result = "gc";
    } else {
      const up = parent.get(id);
      result = ownerOf(node.callFrame.url) ?? (up === undefined ? "other" : resolve(up));
    }
    owner.set(id, result);
    return result;
  };
  const totals: Record<Owner, number> = { own: 0, sdk: 0, harness: 0, gc: 0, other: 0 };
  profile.samples.forEach((id, i) => {
    totals[resolve(id)] += profile.timeDeltas[i] / 1e6;
  });
  return totals;
}

async function profiled(shape: FleetShape): Promise<ProfileResult> {
  const session = new inspector.Session();
  session.connect();
  const post = <T>(method: string, params: object = {}) =>
    new Promise<T>((resolve, reject) =>
      session.post(method, params, (error, result) => (error ? reject(error) : resolve(result as T))),
    );
  await post("Profiler.enable");
  await post("Profiler.setSamplingInterval", { interval: 500 });
  await post("Profiler.start");
  const t0 = process.hrtime.bigint();
  await evaluate(shape);
  const evalSeconds = since(t0);
  const { profile } = await post<{ profile: Parameters<typeof attribute>[0] }>("Profiler.stop");
  session.disconnect();
  return { kind: "profile", evalSeconds, ...attribute(profile) };
}

const BARE_CONNECTION: SshConnection = {
  host: "192.0.2.1",
  port: 22,
  user: "root",
  privateKey: "",
  hostKey: "ssh-ed25519 AAAA",
  dialErrorLimit: 1,
  perDialTimeout: 1,
};

class BareComponent extends pulumi.ComponentResource {
  constructor(type: string, name: string, opts: pulumi.ComponentResourceOptions = {}) {
    super(type, name, {}, opts);
    this.registerOutputs({});
  }
}

/**
 * What a bare resource registers besides its trivial inputs: inputs that
 * depend on resources, and explicit dependencies. The plain floor has
 * neither; the graph floor gives each resource the dependencies the program
 * registered for it.
 */
interface BareGraph {
  readonly inputs?: Record<string, unknown>;
  readonly dependsOn?: pulumi.Resource[];
}

/** A bare resource of `type` with trivial inputs. */
function bare(type: string, name: string, graph: BareGraph = {}): pulumi.Resource {
  const extra = graph.inputs ?? {};
  const opts = { dependsOn: graph.dependsOn ?? [] };
  switch (type) {
    case "command:remote:Command":
      return new command.remote.Command(
        name,
        { connection: { host: "192.0.2.1" }, create: "true", ...extra },
        opts,
      );
    case "random:index/randomBytes:RandomBytes":
      return new random.RandomBytes(name, { length: 32, ...extra }, opts);
    case "hcloud:index/server:Server":
      return new hcloud.Server(name, { serverType: "cx23", ...extra }, opts);
    case "hcloud:index/firewall:Firewall":
      return new hcloud.Firewall(name, { ...extra }, opts);
    case "hcloud:index/firewallAttachment:FirewallAttachment":
      return new hcloud.FirewallAttachment(name, { firewallId: 1, ...extra }, opts);
    case "hcloud:index/volume:Volume":
      return new hcloud.Volume(name, { size: 10, ...extra }, opts);
    case "hcloud:index/volumeAttachment:VolumeAttachment":
      return new hcloud.VolumeAttachment(name, { serverId: 1, volumeId: 1, ...extra }, opts);
    case "hcloud:index/sshKey:SshKey":
      return new hcloud.SshKey(name, { publicKey: "ssh-ed25519 AAAA", ...extra }, opts);
    case "pulumi-nodejs:dynamic/swarm:HostDrift":
      // The SDK serializes the provider once per program: the floor pays for that too.
      return new HostDrift(
        name,
        { host: name, connection: BARE_CONNECTION, program: "true", after: "", ...extra },
        opts,
      );
    default:
      if (type.startsWith("swarm:")) {
        return new BareComponent(type, name, opts);
      }
      throw new Error(`the floor has no bare constructor for ${type}: add one to bench/evaluate.ts`);
  }
}

async function floor(types: readonly TypeCount[]): Promise<FloorResult> {
  const loadSeconds = process.uptime();
  const t0 = process.hrtime.bigint();
  await installMocks(offlineRunner, "bench");
  const t1 = process.hrtime.bigint();
  let n = 0;
  for (const { type, count } of types) {
    for (let i = 0; i < count; i++) {
      bare(type, `r${n++}`);
    }
  }
  const defineSeconds = since(t1);
  await settle();
  return {
    kind: "floor",
    evalSeconds: since(t0),
    defineSeconds,
    loadSeconds,
    maxRssMb: maxRssMb(),
    resources: n,
  };
}

/** One registration of the program as the graph floor repeats it: its type and what it depends on, by URN. */
interface GraphEntry {
  readonly urn: string;
  readonly type: string;
  readonly dependencies: readonly string[];
  readonly propertyDependencies: Readonly<Record<string, readonly string[]>>;
}

/** Evaluates the program and writes every registration's type and dependencies to `file`, in registration order. */
async function graph(shape: FleetShape, file: string): Promise<GraphResult> {
  const { mocks } = await evaluate(shape);
  const entries: GraphEntry[] = mocks.resources.map(({ urn, type, dependencies, propertyDependencies }) => ({
    urn,
    type,
    dependencies,
    propertyDependencies,
  }));
  fs.writeFileSync(file, JSON.stringify(entries));
  const sum = (counts: number[]) => counts.reduce((a, b) => a + b, 0);
  return {
    kind: "graph",
    resources: entries.length,
    dependencies: sum(entries.map((e) => e.dependencies.length)),
    propertyDependencies: sum(
      entries.map((e) => sum(Object.values(e.propertyDependencies).map((urns) => urns.length))),
    ),
  };
}

/** The SDK's Output constructor (not public): resources, value, known, secret, every resource. */
const OutputOf = pulumi.Output as unknown as new (
  resources: Set<pulumi.Resource>,
  value: Promise<unknown>,
  isKnown: Promise<boolean>,
  isSecret: Promise<boolean>,
  allResources: Promise<Set<pulumi.Resource>>,
) => pulumi.Output<unknown>;

/** A trivial value that depends on `resources`, as one Output: what an input of the program carries, without its value. */
function dependingOn(resources: Set<pulumi.Resource>, property: string): pulumi.Output<unknown> {
  const value = property === "connection" ? { host: "192.0.2.1" } : property === "triggers" ? ["x"] : "x";
  return new OutputOf(
    resources,
    Promise.resolve(value),
    Promise.resolve(true),
    Promise.resolve(false),
    Promise.resolve(new Set(resources)),
  );
}

/**
 * The graph floor: the program's registrations (read from `file`) as bare
 * resources with trivial inputs, each input that depended on resources
 * depending on the same ones, and the rest of each resource's dependencies
 * explicit. What a fleet of this shape costs the SDK whatever its values.
 * Components register bare and without children: the program's recorded
 * dependencies are already the custom resources the SDK expanded them to.
 */
async function graphFloor(file: string): Promise<FloorResult & { readonly sameGraph: boolean }> {
  const entries = JSON.parse(fs.readFileSync(file, "utf8")) as GraphEntry[];
  const loadSeconds = process.uptime();
  const t0 = process.hrtime.bigint();
  const mocks = await installMocks(offlineRunner, "bench");
  const t1 = process.hrtime.bigint();
  const byUrn = new Map<string, pulumi.Resource>();
  const resource = (urn: string) => byUrn.get(urn) as pulumi.Resource;
  entries.forEach((entry, n) => {
    const inputs: Record<string, unknown> = {};
    const throughInputs = new Set<string>();
    for (const [property, urns] of Object.entries(entry.propertyDependencies)) {
      // The dynamic provider's own input: the SDK sets it.
      if (property !== "__provider") {
        urns.forEach((urn) => throughInputs.add(urn));
        inputs[property] = dependingOn(new Set(urns.map(resource)), property);
      }
    }
    const dependsOn = entry.dependencies.filter((urn) => !throughInputs.has(urn)).map(resource);
    byUrn.set(entry.urn, bare(entry.type, `r${n}`, { inputs, dependsOn }));
  });
  const defineSeconds = since(t1);
  await settle();
  const evalSeconds = since(t0);
  return {
    kind: "floor",
    evalSeconds,
    defineSeconds,
    loadSeconds,
    maxRssMb: maxRssMb(),
    resources: entries.length,
    sameGraph: sameGraph(entries, mocks.resources),
  };
}

/** Whether the floor's registrations carry the program's dependencies: the same ones, in all and by input, URN for URN. */
function sameGraph(entries: readonly GraphEntry[], registered: readonly RecordedResource[]): boolean {
  const programUrn = new Map(registered.map((r) => [r.urn, entries[Number(r.name.slice(1))]?.urn]));
  const translate = (urns: readonly string[]) => JSON.stringify(urns.map((u) => programUrn.get(u)).sort());
  const byUrn = new Map(entries.map((e) => [e.urn, e]));
  return (
    registered.length === entries.length &&
    registered.every((r) => {
      const entry = byUrn.get(programUrn.get(r.urn) ?? "");
      const properties = Object.entries(entry?.propertyDependencies ?? {}).filter(
        ([p]) => p !== "__provider",
      );
      return (
        entry !== undefined &&
        translate(r.dependencies) === JSON.stringify([...entry.dependencies].sort()) &&
        properties.every(
          ([p, urns]) => translate(r.propertyDependencies[p] ?? []) === JSON.stringify([...urns].sort()),
        )
      );
    })
  );
}

interface Registered {
  readonly name: string;
  readonly inputs: CommandInputs;
}

/** Every command by URN, its identity as the engine has it. */
function inputsOf(mocks: MockFleet): Map<string, Registered> {
  return new Map(
    mocks
      .ofType("command:remote:Command")
      .map((r) => [r.urn, { name: r.name, inputs: commandInputs(r.inputs) }]),
  );
}

function diff(before: Map<string, Registered>, after: Map<string, Registered>): Rerun[] {
  const reruns: Rerun[] = [];
  for (const [urn, wanted] of after) {
    const old = before.get(urn);
    if (old === undefined) {
      reruns.push({ name: wanted.name, why: "new", fields: [] });
    } else if (!sameInputs(old.inputs, wanted.inputs)) {
      reruns.push({ name: wanted.name, why: "changed", fields: changedInputs(old.inputs, wanted.inputs) });
    }
  }
  for (const [urn, old] of before) {
    if (!after.has(urn)) {
      reruns.push({ name: old.name, why: "removed", fields: [] });
    }
  }
  return reruns;
}

async function changes(shape: FleetShape): Promise<ChangesResult> {
  const base = inputsOf((await evaluate(shape)).mocks);
  const result = {} as Record<Change, Rerun[]>;
  for (const change of ["none", "mount-option", "add-host"] as const) {
    result[change] = diff(base, inputsOf((await evaluate(shape, change)).mocks));
  }
  return { kind: "changes", commands: base.size, changes: result };
}

export const USAGE =
  "usage: tsx bench/evaluate.ts program|profile|changes HOSTS full|hub | floor COUNTS_JSON | graph HOSTS full|hub FILE | graphfloor FILE";

/** One evaluation to run. */
export type Job =
  | { readonly mode: "program" | "profile" | "changes"; readonly shape: FleetShape }
  | { readonly mode: "floor"; readonly types: readonly TypeCount[] }
  | { readonly mode: "graph"; readonly shape: FleetShape; readonly file: string }
  | { readonly mode: "graphfloor"; readonly file: string };

const SHAPED = ["program", "profile", "changes"] as const;

/** Parses `MODE ARGS...`; throws a UsageError on anything else. */
export function parseArguments(argv: readonly string[]): Job {
  const { positionals } = parseCommandLine(argv, { options: {}, allowPositionals: true });
  const [mode] = positionals;
  if (mode === "floor") {
    const [, counts] = positionalsAs(positionals, ["mode", "COUNTS_JSON"]);
    try {
      return { mode, types: JSON.parse(counts) as TypeCount[] };
    } catch {
      throw new UsageError(`COUNTS_JSON is not JSON: ${counts}`);
    }
  }
  if (mode === "graphfloor") {
    const [, file] = positionalsAs(positionals, ["mode", "FILE"]);
    return { mode, file };
  }
  if (mode === "graph") {
    const [, hosts, topology, file] = positionalsAs(positionals, ["mode", "HOSTS", "TOPOLOGY", "FILE"]);
    return { mode, shape: shapeOf(hosts, topology), file };
  }
  if (!(SHAPED as readonly string[]).includes(mode)) {
    throw new UsageError(mode === undefined ? "name the mode" : `unknown mode ${mode}`);
  }
  const [, hosts, topology] = positionalsAs(positionals, ["mode", "HOSTS", "TOPOLOGY"]);
  return { mode: mode as (typeof SHAPED)[number], shape: shapeOf(hosts, topology) };
}

function shapeOf(hosts: string, topology: string): FleetShape {
  if (!/^[1-9]\d*$/.test(hosts)) {
    throw new UsageError(`HOSTS is a number of hosts, not ${hosts}`);
  }
  if (topology !== "full" && topology !== "hub") {
    throw new UsageError(`TOPOLOGY is full or hub, not ${topology}`);
  }
  return { hosts: Number(hosts), topology };
}

function run(job: Job): Promise<unknown> {
  switch (job.mode) {
    case "program":
      return program(job.shape);
    case "profile":
      return profiled(job.shape);
    case "changes":
      return changes(job.shape);
    case "floor":
      return floor(job.types);
    case "graph":
      return graph(job.shape, job.file);
    case "graphfloor":
      return graphFloor(job.file);
  }
}

/** Runs one evaluation and prints its result as one JSON line; resolves to the exit code: 0 done, 2 usage. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const parsed = argumentsOrUsage(() => parseArguments(argv), USAGE, io);
  if ("exit" in parsed) {
    return parsed.exit;
  }
  const job = parsed.args;
  io.out(JSON.stringify(await run(job)));
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

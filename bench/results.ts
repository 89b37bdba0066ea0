/**
 * What the bench's child processes report, one JSON line each: the offline
 * evaluations (bench/evaluate.ts) and the lab benchmarks (bench/lab.ts), as
 * bench/run.ts reads them into its tables.
 */
import type { CommandTiming } from "../lab/engine";
import type { Change } from "./fleets";

export interface TypeCount {
  readonly type: string;
  readonly custom: boolean;
  readonly count: number;
}

export interface ProgramResult {
  readonly kind: "program";
  /** Seconds from reading the config to the last registration answered. */
  readonly evalSeconds: number;
  /** Seconds spent in validation alone. */
  readonly validateSeconds: number;
  /** Seconds constructing the resources (the synchronous part), before registrations are answered. */
  readonly defineSeconds: number;
  /** Seconds from process start to the start of the evaluation (loading modules). */
  readonly loadSeconds: number;
  readonly maxRssMb: number;
  readonly types: TypeCount[];
  /** Resources of the last existing host and the last Hetzner host that only join the mesh, by type. */
  readonly meshOnly: { kind: "existing" | "hcloud"; name: string; types: TypeCount[] }[];
  /** Sum of the lengths of every command's create script, bytes. */
  readonly renderedBytes: number;
  readonly commands: number;
}

export interface FloorResult {
  readonly kind: "floor";
  readonly evalSeconds: number;
  readonly defineSeconds: number;
  readonly loadSeconds: number;
  readonly maxRssMb: number;
  readonly resources: number;
}

/** What `graph` wrote: the program's registrations and the dependencies they carry, in all and by input. */
export interface GraphResult {
  readonly kind: "graph";
  readonly resources: number;
  readonly dependencies: number;
  readonly propertyDependencies: number;
}

/** CPU time of one evaluation, by whose code was running (leaf first: the first JavaScript frame that is not Node's own). */
export interface ProfileResult {
  readonly kind: "profile";
  readonly evalSeconds: number;
  /** The program's own code: validation, planning, templates, hashing, key derivation (and what they call in Node). */
  readonly own: number;
  /** The Pulumi SDK and the other packages: registration, Outputs, serialization. */
  readonly sdk: number;
  /** The mock runtime and the benchmark itself. */
  readonly harness: number;
  /** Garbage collection. */
  readonly gc: number;
  /** Native code with no JavaScript caller (the microtask loop, the compiler). */
  readonly other: number;
}

/** One command that re-runs: why, and on which host. */
export interface Rerun {
  readonly name: string;
  readonly why: "new" | "changed" | "removed";
  /** The input fields that differ, for changed commands. */
  readonly fields: string[];
}

export interface ChangesResult {
  readonly kind: "changes";
  readonly commands: number;
  readonly changes: Record<Change, Rerun[]>;
}

export interface ConvergeRun {
  readonly bootSeconds: number;
  readonly first: { readonly seconds: number; readonly timings: readonly CommandTiming[] };
  readonly second: { readonly seconds: number; readonly ran: number; readonly unchanged: number };
}

export interface LatencySeries {
  readonly mode: "timer" | "watch";
  readonly direction: "local → remote" | "remote → local";
  /** Seconds from each write to the file appearing on the other side. */
  readonly seconds: number[];
  /** Writes that never arrived within the timeout. */
  readonly lost: number;
}

export interface BulkRun {
  readonly root: "mount" | "ssh";
  readonly dataset: "small" | "large";
  readonly files: number;
  readonly bytes: number;
  readonly initialSeconds: number;
  /** Rescans right after the initial sync (sshfs answers from its attribute cache). */
  readonly rescanSeconds: number[];
  /** A rescan after the tree sat idle past sshfs's attribute cache (20 s), as a timer run at 60 s meets it. */
  readonly idleRescanSeconds: number;
}

export interface SyncBench {
  readonly convergeSeconds: number;
  readonly interval: number;
  readonly latency: LatencySeries[];
  readonly bulk: BulkRun[];
}

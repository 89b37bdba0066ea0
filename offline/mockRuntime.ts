/**
 * The mock runtime that runs the real program without a Pulumi engine, for
 * render, the lab engine, bench and tests: Pulumi's mock runtime, with
 * resources recorded in registration order under the URNs the engine would
 * give them, cloud resources given plausible outputs, and remote commands
 * answered by a pluggable runner (a canned answer offline, real SSH in the
 * lab).
 */
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { MockMonitor } from "@pulumi/pulumi/runtime/mocks";
import { hcloudInvoke } from "./hcloudCatalogue";

export interface RecordedResource {
  /** The URN the engine gives it: project, stack, every ancestor's type and its name (see `resourceUrn`). */
  readonly urn: string;
  readonly type: string;
  readonly name: string;
  /** Inputs as the mock runtime hands them over: secrets still wrapped, so tests can see them. */
  readonly inputs: Record<string, unknown>;
  /** The same inputs with every secret unwrapped: what a provider would act on. */
  readonly plain: Record<string, unknown>;
  readonly id: string;
  /**
   * The URNs the registration says the resource depends on, sorted: in all
   * (`dependencies`, what orders the engine's steps) and by input property.
   */
  readonly dependencies: readonly string[];
  readonly propertyDependencies: Readonly<Record<string, readonly string[]>>;
}

/** What a registration says about dependencies, as `RecordedResource` keeps it. */
type Dependencies = Pick<RecordedResource, "dependencies" | "propertyDependencies">;

export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs (or answers for) a `command:remote:Command` registration: `inputs`
 * are its plain inputs; `resource` is what was recorded of it, with its URN
 * and its inputs with secrets still wrapped.
 */
export type CommandRunner = (
  name: string,
  inputs: Record<string, unknown>,
  resource: RecordedResource,
) => Promise<CommandResult>;

/**
 * Creates or updates a dynamic resource (`pulumi-nodejs:dynamic...`) the way
 * Pulumi's dynamic provider host would, and answers with its outputs. Without
 * one, a dynamic resource's outputs are its inputs (offline: nothing is read).
 */
export type DynamicRunner = (resource: RecordedResource) => Promise<Record<string, unknown>>;

/** Deterministic bytes for a resource name: stable keys across runs, so renders and triggers are reproducible. */
export function fakeBytes(seed: string, length: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; out.length * 32 < length; i++) {
    out.push(createHash("sha256").update(`${seed}#${i}`).digest());
  }
  return Buffer.concat(out).subarray(0, length);
}

/** Offline answer for a command, from its name alone: the export host key is read back, the rest print nothing. */
export const offlineRunner = async (name: string, ..._registration: unknown[]): Promise<CommandResult> => {
  if (name.endsWith("-hostkey")) {
    const key = fakeBytes(name, 32);
    const blob = Buffer.concat([sshString("ssh-ed25519"), sshString(key)]);
    return { stdout: `ssh-ed25519 ${blob.toString("base64")}\n`, stderr: "" };
  }
  return { stdout: "", stderr: "" };
};

/** The runtime's marker for a secret value in serialized properties. */
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270";

/** Whether a serialized value is a wrapped secret. */
export function isWrappedSecret(value: unknown): value is { value: unknown } {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as Record<string, unknown>)[SECRET_SIG] === SECRET_VALUE
  );
}

/** `value` with every wrapped secret replaced by what it wraps. */
export function reveal(value: unknown): unknown {
  if (isWrappedSecret(value)) {
    return reveal(value.value);
  }
  if (Array.isArray(value)) {
    return value.map(reveal);
  }
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, reveal(v)]));
  }
  return value;
}

function sshString(value: string | Buffer): Buffer {
  const body = typeof value === "string" ? Buffer.from(value) : value;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

export class MockFleet implements pulumi.runtime.Mocks {
  readonly resources: RecordedResource[] = [];
  private servers = 0;

  constructor(
    private readonly runner: CommandRunner = offlineRunner,
    private readonly dynamicRunner?: DynamicRunner,
  ) {}

  /** `args.urn` is set by the monitor `installMocks` sets up; without it the resource is taken to have no parent. */
  async newResource(
    args: pulumi.runtime.MockResourceArgs & { readonly urn?: string } & Partial<Dependencies>,
  ): Promise<{ id: string; state: Record<string, unknown> }> {
    const urn = args.urn ?? resourceUrn(undefined, args.type, args.name);
    // Hetzner Cloud ids are numbers (attachments convert them with Number): derive one from the name.
    const id = args.type.startsWith("hcloud:")
      ? String(fakeBytes(args.name, 4).readUInt32BE(0))
      : `${args.name}-id`;
    const plain = reveal(args.inputs) as Record<string, unknown>;
    const recorded = {
      urn,
      type: args.type,
      name: args.name,
      inputs: args.inputs,
      plain,
      id,
      dependencies: args.dependencies ?? [],
      propertyDependencies: args.propertyDependencies ?? {},
    };
    this.resources.push(recorded);
    const state: Record<string, unknown> = { ...args.inputs };
    switch (args.type) {
      case "random:index/randomBytes:RandomBytes": {
        // Keepers re-seed the bytes, as a replacement would: a changed rotation yields a new key.
        const keepers = JSON.stringify(args.inputs.keepers ?? {});
        const seed = Object.values(args.inputs.keepers ?? {}).some((v) => v !== "")
          ? `${args.name}${keepers}`
          : args.name;
        const bytes = fakeBytes(seed, Number(args.inputs.length));
        state.base64 = bytes.toString("base64");
        state.hex = bytes.toString("hex");
        break;
      }
      case "hcloud:index/server:Server": {
        // TEST-NET-3 and RFC 3849 documentation addresses: never a real host. A server created
        // without IPv4 has no ipv4Address (the provider sets it to nil); its ipv6Address is the
        // first address of its /64 (the provider appends "1" to the network's address).
        this.servers++;
        const nets = (args.inputs.publicNets ?? []) as { ipv4Enabled?: boolean }[];
        if (!nets.some((n) => n.ipv4Enabled === false)) {
          state.ipv4Address = `203.0.113.${this.servers}`;
        }
        state.ipv6Address = `2001:db8:0:${this.servers.toString(16)}::1`;
        state.status = "running";
        break;
      }
      case "hcloud:index/volume:Volume":
        // Hetzner names the device after the volume id, so it does not depend on what registered first.
        state.linuxDevice = `/dev/disk/by-id/scsi-0HC_Volume_${id}`;
        break;
      case "command:remote:Command": {
        const result = await this.runner(args.name, plain, recorded);
        state.stdout = result.stdout;
        state.stderr = result.stderr;
        break;
      }
      default:
        if (args.type.startsWith("pulumi-nodejs:dynamic") && this.dynamicRunner !== undefined) {
          Object.assign(state, await this.dynamicRunner(recorded));
        }
    }
    return { id, state };
  }

  /** SSH keys already in the Hetzner project, as `getSshKeys` lists them: none unless a test adds some. */
  readonly hcloudSshKeys: Record<string, unknown>[] = [];

  /** Invokes: the hcloud catalogue and SSH keys (offline/hcloudCatalogue.ts); anything else echoes its inputs. */
  call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
    return hcloudInvoke(args.token, this.hcloudSshKeys) ?? args.inputs;
  }

  ofType(type: string): RecordedResource[] {
    return this.resources.filter((r) => r.type === type);
  }

  named(name: string): RecordedResource {
    const found = this.resources.find((r) => r.name === name);
    if (!found) {
      throw new Error(`no resource named ${name}; have: ${this.resources.map((r) => r.name).join(", ")}`);
    }
    return found;
  }
}

/**
 * The URN the engine gives a resource (pkg/resource/deploy/deployment.go
 * `generateURN`, sdk/go/common/resource/urn/urn.go `New`): its type is
 * prefixed with the parent's whole qualified type, every ancestor's type
 * joined by `$`, except the root stack's.
 */
export function resourceUrn(parent: string | undefined, type: string, name: string): string {
  const parentType = parent ? parent.split("::")[2] : "";
  const qualified = parentType && parentType !== "pulumi:pulumi:Stack" ? `${parentType}$${type}` : type;
  return `urn:pulumi:${pulumi.getStack()}::${pulumi.getProject()}::${qualified}::${name}`;
}

/** What the monitor's register and read requests carry that a URN is made of. */
interface ResourceRequest {
  getParent(): string;
  getType(): string;
  getName(): string;
  /** Register requests only. */
  getDependenciesList?(): string[];
  getPropertydependenciesMap?(): {
    forEach(each: (value: { getUrnsList(): string[] }, key: string) => void): void;
  };
}

/** The dependencies a register request carries, sorted. */
function dependenciesOf(req: ResourceRequest): Dependencies {
  const propertyDependencies: Record<string, string[]> = {};
  req.getPropertydependenciesMap?.().forEach((value, key) => {
    propertyDependencies[key] = [...value.getUrnsList()].sort();
  });
  return { dependencies: [...(req.getDependenciesList?.() ?? [])].sort(), propertyDependencies };
}

/**
 * Makes the SDK's mock monitor give every resource the URN the engine would
 * and hand it to `newResource`. Its own URNs keep only the parent's last
 * type (`parentType.split("$").pop()`), so the URN of a command two
 * components deep lost its grandparent's type; and `MockResourceArgs`
 * carries no URN or parent at all.
 */
function useEngineUrns(monitor: MockMonitor, mocks: MockFleet): void {
  for (const method of ["registerResource", "readResource"] as const) {
    const original = MockMonitor.prototype[method];
    monitor[method] = (req: ResourceRequest, callback) => {
      const urn = resourceUrn(req.getParent(), req.getType(), req.getName());
      const dependencies = dependenciesOf(req);
      // The original, run against this request's URN: it calls `this.mocks.newResource` and `this.newUrn`.
      const scope = Object.create(monitor, {
        newUrn: { value: () => urn },
        mocks: {
          value: {
            call: (args: pulumi.runtime.MockCallArgs) => mocks.call(args),
            newResource: (args: pulumi.runtime.MockResourceArgs) =>
              mocks.newResource({ ...args, urn, ...dependencies }),
          },
        },
      }) as MockMonitor;
      return original.call(scope, req, callback);
    };
  }
}

/** Installs a fresh mock runtime for project `swarm`, stack `stack`. */
export async function installMocks(
  runner?: CommandRunner,
  stack = "test",
  preview = false,
  dynamicRunner?: DynamicRunner,
): Promise<MockFleet> {
  const mocks = new MockFleet(runner, dynamicRunner);
  await pulumi.runtime.setMocks(mocks, "swarm", stack, preview);
  useEngineUrns(pulumi.runtime.getMonitor() as unknown as MockMonitor, mocks);
  return mocks;
}

/** The value of an Output once it resolves: what render writes out and what tests assert on. */
export function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((v) => resolve(v)));
}

/**
 * Waits until every resource registration started so far has finished:
 * under mocks, that is when every command has been answered (or run).
 */
export async function settle(): Promise<void> {
  // waitForRPCs is exported by the SDK's settings module but not typed; it drains the RPC queue.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const settings = require("@pulumi/pulumi/runtime/settings") as { waitForRPCs(): Promise<void> };
  await settings.waitForRPCs();
}

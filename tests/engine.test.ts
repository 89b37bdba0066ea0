/**
 * LabEngine's decisions, without SSH: tiny programs of remote commands (and
 * the lab fleet) converged with a recording runner, checked against what
 * `pulumi up` with @pulumi/command does (the sources are cited in
 * lab/engine.ts).
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { hostCommand } from "../components/remote";
import {
  CommandFailed,
  CommandState,
  LabEngine,
  RemoteRun,
  changedInputs,
  commandInputs,
} from "../lab/engine";
import { installMocks, offlineRunner, promiseOf, settle } from "../offline/mockRuntime";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT } from "../components/remote";
import { labConfig, UNBOOTED } from "../lab/fleet";

const connection = {
  host: "192.0.2.10",
  port: 22,
  user: "root",
  privateKey: "not-a-key",
  hostKey: fixtureHostKey("test"),
  dialErrorLimit: DIAL_ERROR_LIMIT,
  perDialTimeout: PER_DIAL_TIMEOUT,
};

interface Call {
  readonly command: string;
  readonly stdin: string | undefined;
  readonly env: Readonly<Record<string, string>>;
}

/** A runner that records every script and answers `ran <script>`; `fails` picks the scripts that exit 1. */
function recorder(fails: (script: string) => boolean = () => false) {
  const calls: Call[] = [];
  const run: RemoteRun = async (_connection, script, stdin, env) => {
    calls.push({ command: script, stdin, env: { ...env } });
    if (fails(script)) {
      return { code: 1, stdout: "", stderr: `${script}: no` };
    }
    // The host-key read of a meshfs export must print a key for the program to go on.
    const stdout = script.includes("-f1,2")
      ? (await offlineRunner("meshfs-hostkey")).stdout
      : `ran ${script}\n`;
    return { code: 0, stdout, stderr: "" };
  };
  return { calls, run, scripts: () => calls.map((c) => c.command) };
}

/** A remote command whose create and delete scripts name it. */
function cmd(
  name: string,
  args: Partial<command.remote.CommandArgs> = {},
  opts: pulumi.CustomResourceOptions = {},
): command.remote.Command {
  return new command.remote.Command(
    name,
    { connection, create: `create ${name}`, delete: `delete ${name}`, ...args },
    opts,
  );
}

class Group extends pulumi.ComponentResource {
  constructor(type: string, name: string, opts?: pulumi.ComponentResourceOptions) {
    super(type, name, {}, opts);
    this.registerOutputs({});
  }
}

/** Three commands, each depending on the one before. */
function chain(): void {
  const a = cmd("a");
  const b = cmd("b", {}, { dependsOn: [a] });
  cmd("c", {}, { dependsOn: [b] });
}

describe("deletes run after the creates and updates, in reverse dependency order", () => {
  test("removed commands: dependents before what they depend on", async () => {
    const { run, calls, scripts } = recorder();
    const engine = new LabEngine({ run });
    await engine.apply(chain, "test");
    expect(scripts()).toEqual(["create a", "create b", "create c"]);
    calls.length = 0;

    const result = await engine.apply(() => cmd("d"), "test");
    expect(scripts()).toEqual(["create d", "delete c", "delete b", "delete a"]);
    expect(result.deleted).toEqual(["c", "b", "a"]);
    expect(engine.commands).toEqual(["d"]);
  });

  test("replacements: create before delete, the old halves deleted last, dependents first", async () => {
    const { run, calls, scripts } = recorder();
    const engine = new LabEngine({ run });
    const program = (version: string, cStdin: string) => () => {
      const a = cmd("a", { triggers: [version] });
      const b = cmd("b", { triggers: [version] }, { dependsOn: [a] });
      cmd("c", { stdin: cStdin }, { dependsOn: [b] });
    };
    await engine.apply(program("1", "one"), "test");
    calls.length = 0;

    const result = await engine.apply(program("2", "two"), "test");
    // c's stdin changed: an update, which runs its create again and never its delete.
    expect(scripts()).toEqual(["create a", "create b", "create c", "delete b", "delete a"]);
    expect(result.created).toEqual(["a", "b"]);
    expect(result.updated).toEqual(["c"]);
    expect(result.deleted).toEqual(["b", "a"]);
  });
});

test("a delete gets the stdin stored with the command, as the provider replays it", async () => {
  const { run, calls } = recorder();
  const engine = new LabEngine({ run });
  await engine.apply(() => {
    cmd("a", { stdin: pulumi.secret("token-1"), triggers: ["1"] });
    cmd("b", { stdin: "input-b" });
  }, "test");
  calls.length = 0;

  await engine.apply(() => cmd("a", { stdin: pulumi.secret("token-2"), triggers: ["2"] }), "test");
  const deletes = calls.filter((c) => c.command.startsWith("delete"));
  expect(deletes).toHaveLength(2);
  // The old half of the replacement gets its own stdin, not the new one's; a removed command gets its last.
  expect(deletes).toContainEqual(expect.objectContaining({ command: "delete a", stdin: "token-1" }));
  expect(deletes).toContainEqual(expect.objectContaining({ command: "delete b", stdin: "input-b" }));
});

describe("every input is diffed; only triggers replace", () => {
  type Args = () => Partial<command.remote.CommandArgs>;
  const updates: [string, Args, Args, string][] = [
    ["logging", () => ({}), () => ({ logging: "none" }), "create a"],
    ["environment", () => ({}), () => ({ environment: { LANG: "C.UTF-8" } }), "create a"],
    ["addPreviousOutputInEnv", () => ({}), () => ({ addPreviousOutputInEnv: false }), "create a"],
    ["update (which then runs)", () => ({}), () => ({ update: "update a" }), "update a"],
    ["stdin becoming secret", () => ({ stdin: "x" }), () => ({ stdin: pulumi.secret("x") }), "create a"],
    ["stdin no longer secret", () => ({ stdin: pulumi.secret("x") }), () => ({ stdin: "x" }), "create a"],
    ["connection", () => ({}), () => ({ connection: { ...connection, port: 2222 } }), "create a"],
  ];

  test.each(updates)("a change of %s is an update: no delete", async (_, before, after, script) => {
    const { run, calls, scripts } = recorder();
    const engine = new LabEngine({ run });
    await engine.apply(() => cmd("a", before()), "test");
    calls.length = 0;

    const result = await engine.apply(() => cmd("a", after()), "test");
    expect(scripts()).toEqual([script]);
    expect(result).toMatchObject({ created: [], updated: ["a"], unchanged: [], deleted: [] });

    // And nothing runs once the state holds the new inputs.
    calls.length = 0;
    expect((await engine.apply(() => cmd("a", after()), "test")).unchanged).toEqual(["a"]);
    expect(calls).toEqual([]);
  });

  test("a change of triggers is a replacement: create the new, then delete the old", async () => {
    const { run, calls, scripts } = recorder();
    const engine = new LabEngine({ run });
    await engine.apply(() => cmd("a", { triggers: ["1"] }), "test");
    calls.length = 0;

    const result = await engine.apply(() => cmd("a", { triggers: ["2"] }), "test");
    expect(scripts()).toEqual(["create a", "delete a"]);
    expect(result).toMatchObject({ created: ["a"], updated: [], deleted: ["a"] });
  });

  test("changedInputs names each differing input; absent and null are the same", async () => {
    expect(changedInputs({ create: "x", delete: null }, { create: "x" })).toEqual([]);
    expect(changedInputs({ create: "x", triggers: ["1"] }, { create: "y", triggers: ["2"] })).toEqual([
      "create",
      "triggers",
    ]);
    const mocks = await installMocks();
    cmd("s", { create: "c", delete: "d", stdin: pulumi.secret("x") });
    cmd("p", { create: "c", delete: "d", stdin: "x" });
    await settle();
    expect(
      changedInputs(commandInputs(mocks.named("s").inputs), commandInputs(mocks.named("p").inputs)),
    ).toEqual(["stdin"]);
  });
});

describe("a command is its URN", () => {
  const nested = (outerType: string) => () => {
    const outer = new Group(outerType, "outer");
    const inner = new Group("test:index:Inner", "inner", { parent: outer });
    cmd("a", {}, { parent: inner });
  };

  test("renaming an ancestor's type deletes the command and creates it anew", async () => {
    const { run, calls, scripts } = recorder();
    const engine = new LabEngine({ run });
    await engine.apply(nested("test:index:Outer"), "test");
    expect(engine.snapshot().map((s) => s.urn)).toEqual([
      "urn:pulumi:test::swarm::test:index:Outer$test:index:Inner$command:remote:Command::a",
    ]);
    calls.length = 0;

    // Same name, same inputs, same parent type: only the grandparent's type differs.
    const result = await engine.apply(nested("test:index:Renamed"), "test");
    expect(scripts()).toEqual(["create a", "delete a"]);
    expect(result).toMatchObject({ created: ["a"], deleted: ["a"], unchanged: [] });
  });

  test("moving a command out of its parent deletes it and creates it anew", async () => {
    const { run, calls, scripts } = recorder();
    const engine = new LabEngine({ run });
    await engine.apply(() => cmd("a", {}, { parent: new Group("test:index:Box", "box") }), "test");
    calls.length = 0;

    await engine.apply(() => cmd("a"), "test");
    expect(scripts()).toEqual(["create a", "delete a"]);
    expect(engine.snapshot().map((s) => s.urn)).toEqual([
      "urn:pulumi:test::swarm::command:remote:Command::a",
    ]);
  });

  test("state from an engine that keyed commands by name is refused, saying how to start over", () => {
    const engine = new LabEngine({ run: recorder().run });
    const byName = [{ name: "a", connection, create: "x", triggers: [], stdout: "", stderr: "" }];
    expect(() => engine.restore(byName as unknown as CommandState[])).toThrow(
      /without a URN \(a\).*keyed commands by name.*Delete it/s,
    );
  });

  test("snapshot and restore carry the state to another engine", async () => {
    const first = recorder();
    const engine = new LabEngine({ run: first.run });
    await engine.apply(chain, "test");

    const second = recorder();
    const restored = new LabEngine({ run: second.run });
    restored.restore(JSON.parse(JSON.stringify(engine.snapshot())) as CommandState[]);
    const result = await restored.apply(chain, "test");
    expect(second.calls).toEqual([]);
    expect(result.unchanged).toEqual(["a", "b", "c"]);
  });
});

test("a failed delete keeps the creates of its run, and the command it could not delete", async () => {
  let refuse = true;
  const { run, calls, scripts } = recorder((script) => refuse && script === "delete a");
  const engine = new LabEngine({ run });
  await engine.apply(() => cmd("a"), "test");

  await expect(engine.apply(() => cmd("b"), "test")).rejects.toThrow(CommandFailed);
  expect(engine.commands).toEqual(["a", "b"]);

  refuse = false;
  calls.length = 0;
  const result = await engine.apply(() => cmd("b"), "test");
  expect(scripts()).toEqual(["delete a"]);
  expect(result).toMatchObject({ created: [], unchanged: ["b"], deleted: ["a"] });
  expect(engine.commands).toEqual(["b"]);
});

test("the old half of a replacement whose delete failed is deleted on the next run", async () => {
  let refuse = true;
  const { run, calls, scripts } = recorder((script) => refuse && script === "delete a");
  const engine = new LabEngine({ run });
  await engine.apply(() => cmd("a", { triggers: ["1"] }), "test");
  await expect(engine.apply(() => cmd("a", { triggers: ["2"] }), "test")).rejects.toThrow(CommandFailed);

  refuse = false;
  calls.length = 0;
  const result = await engine.apply(() => cmd("a", { triggers: ["2"] }), "test");
  expect(scripts()).toEqual(["delete a"]);
  expect(result).toMatchObject({ created: [], unchanged: ["a"], deleted: ["a"] });
});

test("a failed create records nothing and a failed update keeps the old state: both run again", async () => {
  let refuse = true;
  const { run, calls, scripts } = recorder((script) => refuse && script.endsWith("b"));
  const engine = new LabEngine({ run });
  await expect(engine.apply(() => cmd("b"), "test")).rejects.toThrow(CommandFailed);
  expect(engine.snapshot()).toEqual([]);

  refuse = false;
  await engine.apply(() => cmd("b"), "test");
  refuse = true;
  await expect(engine.apply(() => cmd("b", { update: "update b" }), "test")).rejects.toThrow(
    /b \(update\) failed on 192.0.2.10 with exit code 1:\nupdate b: no/,
  );
  expect(engine.snapshot()).toEqual([expect.objectContaining({ stdout: "ran create b" })]);
  expect(engine.snapshot()[0].inputs.update).toBeUndefined();

  refuse = false;
  calls.length = 0;
  expect((await engine.apply(() => cmd("b", { update: "update b" }), "test")).updated).toEqual(["b"]);
  expect(scripts()).toEqual(["update b"]);
});

test("after a failed command no other starts, as the step executor cancels the rest", async () => {
  const scripts: string[] = [];
  const run: RemoteRun = async (_connection, script) => {
    scripts.push(script);
    if (script === "create slow") {
      await new Promise((r) => setTimeout(r, 100));
    }
    return script === "create bad"
      ? { code: 2, stdout: "", stderr: "bad" }
      : { code: 0, stdout: "", stderr: "" };
  };
  const engine = new LabEngine({ run });
  await expect(
    engine.apply(() => {
      cmd("bad");
      cmd("after", {}, { dependsOn: [cmd("slow")] });
    }, "test"),
  ).rejects.toThrow(/bad failed on 192.0.2.10 with exit code 2:\nbad/);
  expect(scripts.sort()).toEqual(["create bad", "create slow"]);
  // What finished is kept.
  expect(engine.commands).toEqual(["slow"]);
});

describe("sessions as the provider opens them", () => {
  test("an update sees the previous output in PULUMI_COMMAND_STDOUT, unless hostCommand turned it off", async () => {
    const { run, calls } = recorder();
    const engine = new LabEngine({ run });
    const program = (stdin: string) => () => {
      cmd("raw", { stdin });
      hostCommand("host", { connection, user: "root", text: { script: "true", ownerHash: "h1" }, stdin }, {});
    };
    await engine.apply(program("one"), "test");
    expect(calls.map((c) => c.env)).toEqual([{}, {}]);
    calls.length = 0;

    // A new stdin leaves the owner hash, and so the triggers, alone: both are updates.
    const result = await engine.apply(program("two"), "test");
    expect([...result.updated].sort()).toEqual(["host", "raw"]);
    const raw = calls.find((c) => c.command === "create raw");
    const host = calls.find((c) => c.command !== "create raw");
    expect(raw?.env).toEqual({ PULUMI_COMMAND_STDOUT: "ran create raw" });
    expect(host?.env).toEqual({});
    expect(host?.stdin).toBe("two");
  });

  test("a run's stdout is kept less one trailing newline", async () => {
    const run: RemoteRun = async () => ({ code: 0, stdout: "key\n\n", stderr: "warn\n" });
    const engine = new LabEngine({ run });
    const result = await engine.apply(() => cmd("a").stdout, "test");
    expect(await promiseOf(result.outputs)).toBe("key\n");
    expect(engine.snapshot()[0]).toMatchObject({ stdout: "key\n", stderr: "warn" });
  });
});

test("the lab fleet converges, then a second run runs nothing", async () => {
  const config = labConfig("lab", UNBOOTED);
  const { run, calls } = recorder();
  const engine = new LabEngine({ run });
  const first = await engine.converge(config, "not-a-key");
  expect(first.created.length).toBeGreaterThan(0);
  expect(first.created).toHaveLength(calls.length);
  // hostCommand never asks for the previous output in the environment.
  expect(engine.snapshot().every((s) => s.inputs.addPreviousOutputInEnv === false)).toBe(true);

  calls.length = 0;
  const again = await engine.converge(config, "not-a-key");
  expect(calls).toEqual([]);
  expect(again.unchanged).toHaveLength(first.created.length);
});

test("a command failing in the lab fleet fails the run, with the commands that depend on it never started", async () => {
  const config = labConfig("lab", UNBOOTED);
  // The mesh config of the hub: most of the fleet waits on its output.
  const { run, calls } = recorder((script) => script.includes("/owners/mesh-anchor-config"));
  const engine = new LabEngine({ run });
  // Before the fix the run never finished: the SDK's RPC queue does not drain after a failed registration.
  await expect(engine.converge(config, "not-a-key")).rejects.toThrow(CommandFailed);
  expect(calls.length).toBeGreaterThan(0);
  expect(engine.commands).not.toContain("mesh-anchor-config");
});

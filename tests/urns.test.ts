/**
 * A deployed fleet's resources are known to the engine by URN (project,
 * stack, the types of every ancestor, the name): a component whose type,
 * parent or name changed makes `pulumi up` delete every resource under it
 * and create it again. The URNs of the example stacks are kept in
 * tests/golden/urns.<stack>.txt; none may disappear (unless the moved
 * resource is given an alias). New resources are fine: regenerate the
 * files deliberately with `UPDATE_URNS=1 npx jest tests/urns.test.ts`.
 * The same run writes tests/golden/dependencies.<stack>.json: what each
 * resource depends on, in all and by input property.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { loadStack } from "../config/load";
import { labStackHostKeys } from "../lab/fleet";
import { installMocks, RecordedResource, settle } from "../offline/mockRuntime";
import { defineFleet } from "../program";

async function resourcesOf(stack: string, preview: boolean): Promise<readonly RecordedResource[]> {
  const mocks = await installMocks(undefined, stack, preview);
  const { config } = loadStack(stack, {
    dir: path.join(__dirname, ".."),
    pinHostKeys: labStackHostKeys(stack),
  });
  await defineFleet(config, { sshPrivateKey: pulumi.secret("(test)") });
  await settle();
  return mocks.resources;
}

async function urnsOf(stack: string): Promise<string[]> {
  return [...new Set((await resourcesOf(stack, true)).map((r) => r.urn))].sort();
}

/** Every resource's dependencies as `pulumi up` registers them, by URN, as JSON with sorted keys. */
async function dependenciesOf(stack: string): Promise<string> {
  const resources = [...(await resourcesOf(stack, false))].sort((a, b) => (a.urn < b.urn ? -1 : 1));
  const byUrn = Object.fromEntries(
    resources.map((r) => [
      r.urn,
      {
        dependencies: r.dependencies,
        properties: Object.fromEntries(
          Object.entries(r.propertyDependencies)
            .filter(([, urns]) => urns.length > 0)
            .sort(([a], [b]) => (a < b ? -1 : 1)),
        ),
      },
    ]),
  );
  return `${JSON.stringify(byUrn, null, 1)}\n`;
}

describe.each(["prod", "staging", "lab"])("the %s stack", (stack) => {
  const golden = path.join(__dirname, "golden", `urns.${stack}.txt`);

  test("keeps the URN of every resource it had", async () => {
    const now = await urnsOf(stack);
    if (process.env.UPDATE_URNS === "1") {
      fs.writeFileSync(golden, `${now.join("\n")}\n`);
    }
    const before = fs
      .readFileSync(golden, "utf8")
      .split("\n")
      .filter((l) => l !== "");
    const gone = before.filter((urn) => !now.includes(urn));
    expect(gone).toEqual([]);
    // The file lists what exists now: a new resource is added to it on purpose.
    expect(now.filter((urn) => !before.includes(urn))).toEqual([]);
  });

  // The engine orders its steps (and a destroy) by these, and keeps them in state: a change to how
  // the program builds its inputs must not add or lose one. Regenerate with UPDATE_URNS=1 too.
  test("keeps every resource's dependencies, in all and by input", async () => {
    const file = path.join(__dirname, "golden", `dependencies.${stack}.json`);
    const now = await dependenciesOf(stack);
    if (process.env.UPDATE_URNS === "1") {
      fs.writeFileSync(file, now);
    }
    expect(now).toEqual(fs.readFileSync(file, "utf8"));
  });
});

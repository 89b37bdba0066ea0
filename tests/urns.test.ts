/**
 * A deployed fleet's resources are known to the engine by URN (project,
 * stack, the types of every ancestor, the name): a component whose type,
 * parent or name changed makes `pulumi up` delete every resource under it
 * and create it again. The URNs of the example stacks are kept in
 * tests/golden/urns.<stack>.txt; none may disappear (unless the moved
 * resource is given an alias). New resources are fine: regenerate the
 * files deliberately with `UPDATE_URNS=1 npx jest tests/urns.test.ts`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { loadStack } from "../config/load";
import { labStackHostKeys } from "../lab/fleet";
import { installMocks, settle } from "../offline/mockRuntime";
import { defineFleet } from "../program";

async function urnsOf(stack: string): Promise<string[]> {
  const mocks = await installMocks(undefined, stack, true);
  const { config } = loadStack(stack, {
    dir: path.join(__dirname, ".."),
    pinHostKeys: labStackHostKeys(stack),
  });
  defineFleet(config, { sshPrivateKey: pulumi.secret("(test)") });
  await settle();
  return [...new Set(mocks.resources.map((r) => r.urn))].sort();
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
});

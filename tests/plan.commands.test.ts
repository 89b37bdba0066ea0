/**
 * `remoteCommandNames` names the remote commands of a plan without Pulumi,
 * for validating `swarm:repairs` and for `npm run repair`. The names are
 * made in the components; this holds the two against the URNs the program
 * registers under mocks (tests/golden/urns.<stack>.txt, kept current by
 * tests/urns.test.ts), so either drifting fails here.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { loadStack } from "../config/load";
import { planFleet } from "../config/model";
import { remoteCommandNames } from "../config/plan";
import { labStackHostKeys } from "../lab/fleet";
import { installMocks, settle } from "../offline/mockRuntime";
import { defineFleet } from "../program";

const ROOT = path.join(__dirname, "..");
const COMMAND = "$command:remote:Command::";

/** The resource names of the remote commands among a stack's golden URNs, sorted. */
function goldenCommandNames(stack: string): string[] {
  return fs
    .readFileSync(path.join(__dirname, "golden", `urns.${stack}.txt`), "utf8")
    .split("\n")
    .filter((urn) => urn.includes(COMMAND))
    .map((urn) => urn.slice(urn.lastIndexOf("::") + 2))
    .sort();
}

describe.each(["prod", "staging", "lab"])("the %s stack", (stack) => {
  const { config } = loadStack(stack, { dir: ROOT, pinHostKeys: labStackHostKeys(stack) });

  test("has exactly the remote commands the program registers", () => {
    const golden = goldenCommandNames(stack);
    expect(golden.length).toBeGreaterThan(0);
    expect(remoteCommandNames(planFleet(config))).toEqual(golden);
  });

  test("names each command once: a repair names one command", () => {
    const names = remoteCommandNames(planFleet(config));
    expect(new Set(names).size).toBe(names.length);
  });
});

test("a sync over ssh:// has a key command of its own, as the program registers it", async () => {
  // No example stack syncs over ssh://: prod's satellite does here, in place of mounting the export.
  const { config } = loadStack("prod", {
    dir: ROOT,
    edit: (raw) => ({
      ...raw,
      mounts: (raw.mounts as { host: string }[]).filter((m) => m.host !== "satellite"),
      syncs: [
        ...(raw.syncs as unknown[]),
        {
          host: "satellite",
          name: "notes",
          local: "/srv/notes",
          remote: { export: "meshfs", path: "notes" },
        },
      ],
    }),
  });
  const mocks = await installMocks(undefined, "prod", true);
  await defineFleet(config, { sshPrivateKey: pulumi.secret("(test)") });
  await settle();
  const registered = mocks.ofType("command:remote:Command").map((r) => r.name);
  const names = remoteCommandNames(planFleet(config));
  expect(names).toContain("satellite-notes-sync-key");
  expect(names).toEqual([...new Set(registered)].sort());
});

/** Every shell file in the repository passes shellcheck (with the files it sources). */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import * as path from "node:path";

const ROOT = path.resolve(__dirname, "..");

function shellFiles(): string[] {
  const listed = spawnSync("git", ["ls-files", "-co", "--exclude-standard", "*.sh", ".ci/run"], {
    cwd: ROOT,
    encoding: "utf8",
  });
  if (listed.status !== 0) {
    throw new Error(`git ls-files failed: ${listed.stderr}`);
  }
  return listed.stdout.split("\n").filter((f) => f !== "" && !f.startsWith("node_modules/"));
}

describe("shell files", () => {
  const files = shellFiles();

  it("include the lab's and CI's scripts", () => {
    expect(files).toEqual(expect.arrayContaining(["lab/lab.sh", "lab/vm.sh", "lab/common.sh", ".ci/run"]));
  });

  it("include every script the templates install on hosts", () => {
    const hostScripts = readdirSync(path.join(ROOT, "templates/hostscripts")).map(
      (f) => `templates/hostscripts/${f}`,
    );
    expect(hostScripts).toEqual(
      expect.arrayContaining(["templates/hostscripts/prelude.sh", "templates/hostscripts/swarm-health.sh"]),
    );
    expect(files).toEqual(expect.arrayContaining(hostScripts));
  });

  it.each(files)("%s passes shellcheck", (file) => {
    const check = spawnSync("shellcheck", ["-x", file], { cwd: ROOT, encoding: "utf8" });
    expect(check.error).toBeUndefined();
    expect(`${check.stdout}${check.stderr}`).toBe("");
    expect(check.status).toBe(0);
  });
});

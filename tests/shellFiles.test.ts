/** Every shell file in the repository passes shellcheck (with the files it sources). */
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
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

  it("include every shell script the templates install on hosts", () => {
    const hostScripts = readdirSync(path.join(ROOT, "templates/hostscripts"))
      .filter((f) => !f.endsWith(".pl"))
      .map((f) => `templates/hostscripts/${f}`);
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

/** perl-base, which Debian never leaves out (it is Essential), ships these; the full perl may be absent. */
const PERL_BASE_MODULES = ["Socket", "constant", "strict", "warnings"];

describe("perl programs the templates install on hosts", () => {
  const programs = readdirSync(path.join(ROOT, "templates/hostscripts"))
    .filter((f) => f.endsWith(".pl"))
    .map((f) => `templates/hostscripts/${f}`);

  it("include wg-allowed-add", () => {
    expect(programs).toContain("templates/hostscripts/wg-allowed-add.pl");
  });

  it.each(programs)("%s compiles with warnings on and uses only perl-base modules", (file) => {
    const check = spawnSync("perl", ["-cw", file], { cwd: ROOT, encoding: "utf8" });
    expect(check.stderr).toBe(`${file} syntax OK\n`);
    expect(check.status).toBe(0);
    const used = [
      ...readFileSync(path.join(ROOT, file), "utf8").matchAll(/^\s*(?:use|require) ([\w:]+)/gm),
    ].map((m) => m[1]);
    expect(used.filter((m) => !PERL_BASE_MODULES.includes(m))).toEqual([]);
  });
});

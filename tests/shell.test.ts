/**
 * The prelude every host script starts with: the heredoc that carries a
 * file's content never ends early, whatever lines the content holds; units
 * are enabled, started and restarted by one function; host script files are
 * read as they are, with the templates' constants put in.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as fc from "fast-check";
import { extractFiles, HOST_SCRIPT_DIR, hostScript, SCRIPT_PRELUDE, writeFile } from "../templates/shell";

const line = fc.oneof(
  fc.constantFrom("SWARM_EOF", "SWARM_EOF_1", "SWARM_EOF_2", " SWARM_EOF", "SWARM_EOF ", ""),
  fc.string({ unit: fc.constantFrom("S", "W", "A", "R", "M", "_", "E", "O", "F", "1", "x", "'", "$") }),
);
const content = fc.array(line, { maxLength: 8 }).map((lines) => lines.join("\n"));

describe("writeFile", () => {
  it("chooses a delimiter that is no line of the content, so the content comes back whole", () => {
    fc.assert(
      fc.property(content, (text) => {
        const files = extractFiles(writeFile({ path: "/etc/x", mode: "0644", content: text }));
        expect(files.map((f) => f.content)).toEqual([text.endsWith("\n") ? text : `${text}\n`]);
      }),
    );
  });

  it.each([
    ["the first delimiter as a line", "a\nSWARM_EOF\nb\n"],
    ["both first delimiters, first and last", "SWARM_EOF\nx\nSWARM_EOF_1"],
    ["the delimiter as the whole content", "SWARM_EOF"],
  ])("bash reads back %s exactly", (_what, text) => {
    const script = writeFile({ path: "/etc/x", mode: "0644", content: text }).replace(
      /^swarm_write '\/etc\/x' 0644 root:root /,
      "cat ",
    );
    const result = spawnSync("bash", ["-c", script], { encoding: "utf8" });
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe(text.endsWith("\n") ? text : `${text}\n`);
  });
});

/**
 * Runs `body` after the prelude with a `systemctl` stub: units listed in
 * `enabled`/`active` are so, `failing` units do not start, and every call
 * but the queries is logged.
 */
function withSystemctl(
  body: string,
  state: { enabled?: string[]; active?: string[]; failing?: string[] } = {},
): { status: number | null; stdout: string; stderr: string; calls: string[] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-activate-"));
  try {
    fs.writeFileSync(
      path.join(dir, "systemctl"),
      `#!/bin/bash
enabled=" ${(state.enabled ?? []).join(" ")} " active=" ${(state.active ?? []).join(" ")} " failing=" ${(state.failing ?? []).join(" ")} "
unit=\${*: -1}
case $1 in
  is-enabled) [[ $enabled == *" $unit "* ]]; exit ;;
  is-active) [[ $active == *" $unit "* ]]; exit ;;
esac
echo "systemctl $*" >>"${dir}/calls"
case $1 in start | restart) [[ $failing != *" $unit "* ]] ;; esac
`,
      { mode: 0o755 },
    );
    const result = spawnSync("bash", ["-c", `${SCRIPT_PRELUDE}\nswarm_host=anchor\n${body}`], {
      encoding: "utf8",
      // stdin is not a socket, so bash does not read ~/.bashrc as it would for sshd.
      stdio: ["ignore", "pipe", "pipe"],
      env: { PATH: `${dir}:${process.env.PATH ?? "/usr/bin:/bin"}` },
    });
    const log = path.join(dir, "calls");
    const calls = fs.existsSync(log)
      ? fs
          .readFileSync(log, "utf8")
          .split("\n")
          .filter((l) => l !== "")
      : [];
    return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** What a run of an install script that wrote these files leaves for the activation. */
function wrote(...paths: string[]): string {
  const units = paths.some((p) => p.startsWith("/etc/systemd/system/")) ? "units_written=1\n" : "";
  return `changed+=(${paths.map((p) => `'${p}'`).join(" ")})\n${units}`;
}

const TIMER = "/etc/systemd/system/x.timer";

describe("swarm_activate", () => {
  it("reloads systemd once after units were written, enables and starts a new unit", () => {
    const run = withSystemctl(`${wrote(TIMER)}swarm_reload\nswarm_activate x.timer ${TIMER}\n`);
    expect(run.stderr).toBe("");
    expect(run.calls).toEqual([
      "systemctl daemon-reload",
      "systemctl enable --quiet x.timer",
      "systemctl start x.timer",
    ]);
    expect(run.stdout).toBe("swarm: enabled x.timer\nswarm: started x.timer\n");
  });

  it("restarts an active unit when one of its files was written", () => {
    const program = "/usr/local/lib/swarm/x";
    const run = withSystemctl(`${wrote(program)}swarm_activate x.service ${TIMER} ${program}\n`, {
      enabled: ["x.service"],
      active: ["x.service"],
    });
    expect(run.calls).toEqual(["systemctl restart x.service"]);
    expect(run.stdout).toBe("swarm: restarted x.service\n");
  });

  it("leaves an enabled, active unit alone when nothing of it changed", () => {
    const other = "/etc/systemd/system/y.service";
    const run = withSystemctl(`${wrote(other)}swarm_activate x.timer ${TIMER}\n`, {
      enabled: ["x.timer"],
      active: ["x.timer"],
    });
    // A unit file of another unit was written: systemd reads it, x.timer keeps running.
    expect(run.calls).toEqual(["systemctl daemon-reload"]);
    expect(run.stdout).toBe("");
    expect(run.status).toBe(0);
  });

  it("stops the script, naming the host and where to look, when the unit does not start", () => {
    const run = withSystemctl(`swarm_activate x.timer\necho after\n`, {
      enabled: ["x.timer"],
      failing: ["x.timer"],
    });
    expect(run.status).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe("swarm: anchor: x.timer does not start: see journalctl -u x.timer\n");
  });
});

describe("hostScript", () => {
  // Outside the repository, where the shellcheck of every shell file would meet it.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-hostscript-"));
  const file = path.join(dir, "example");
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("reads the files beside the templates", () => {
    expect(hostScript("prelude.sh")).toBe(SCRIPT_PRELUDE);
    expect(fs.readFileSync(path.join(HOST_SCRIPT_DIR, "prelude.sh"), "utf8")).toBe(
      `# shellcheck shell=bash\n${SCRIPT_PRELUDE}`,
    );
  });

  it("drops a fragment's shellcheck directives and puts constants in, quoted", () => {
    fs.writeFileSync(
      file,
      "# shellcheck shell=bash\n# shellcheck disable=SC2034\nPREFIX='swarm-'\necho \"$PREFIX\"\n",
    );
    expect(hostScript(file)).toBe("PREFIX='swarm-'\necho \"$PREFIX\"\n");
    expect(hostScript(file, { PREFIX: "it's" })).toBe("PREFIX='it'\\''s'\necho \"$PREFIX\"\n");
  });

  it("refuses a constant the file does not assign exactly once", () => {
    fs.writeFileSync(file, "#!/bin/bash\nA=1\nA=2\n");
    expect(() => hostScript(file, { A: "x" })).toThrow(`${file} must assign A on exactly one line, not 2`);
    expect(() => hostScript(file, { B: "x" })).toThrow(`${file} must assign B on exactly one line, not 0`);
  });
});

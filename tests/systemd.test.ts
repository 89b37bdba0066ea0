import { execFileSync, spawnSync } from "node:child_process";
import * as fc from "fast-check";
import {
  execArg,
  execLine,
  normalizePath,
  renderUnit,
  systemdEscapePath,
  timespan,
} from "../templates/systemd";

/** What systemd itself makes of a path. */
function systemdEscape(path: string): string {
  return execFileSync("systemd-escape", ["--path", "--", path], { encoding: "utf8" }).trim();
}

describe("systemdEscapePath", () => {
  it.each([
    "/mnt/meshfs",
    "/",
    "/mnt/mesh-fs",
    "/mnt/my disk",
    "/mnt/.hidden",
    "/.hidden",
    "/mnt/a.b",
    "/mnt/ünïcødé",
    "/mnt/meshfs/",
    "//mnt//meshfs",
    "///",
    "/mnt/./a",
    "/mnt/a/.",
    "/mnt/a_b:c",
    "/mnt/a\\b",
    "/mnt/-a",
    "/mnt/a~b+c@d%e",
    "/mnt/tab\tx",
    "/srv/🦀",
  ])("names %j exactly as systemd-escape --path does", (path) => {
    expect(systemdEscapePath(path)).toBe(systemdEscape(path));
  });

  it("agrees with systemd-escape on arbitrary absolute paths", () => {
    const component = fc.oneof(
      fc.stringMatching(/^[a-z0-9._-]{1,8}$/),
      fc.string({ minLength: 1, maxLength: 6, unit: "grapheme" }),
    );
    const paths = fc
      .array(component, { minLength: 0, maxLength: 4 })
      .map((parts) => `/${parts.join("/")}`)
      .filter((p) => !p.split("/").includes("..") && !p.includes("\0"));
    const samples = fc.sample(paths, { numRuns: 150, seed: 42 });
    // One systemd-escape call for all samples: systemd-escape takes several paths at once.
    const expected = execFileSync("systemd-escape", ["--path", "--", ...samples], { encoding: "utf8" })
      .trim()
      .split(" ");
    expect(samples.map(systemdEscapePath)).toEqual(expected);
  });

  it.each([
    ["a relative path", "mnt/meshfs", /absolute/],
    ["a path with ..", "/mnt/../etc", /\.\./],
  ])("rejects %s, as systemd does", (_, path, message) => {
    expect(() => systemdEscapePath(path)).toThrow(message);
    expect(spawnSync("systemd-escape", ["--path", "--", path]).stderr.toString()).not.toBe("");
  });

  it("normalizes paths the way Where= must spell them", () => {
    expect(normalizePath("//mnt/./meshfs/")).toBe("/mnt/meshfs");
    expect(normalizePath("/")).toBe("/");
  });
});

describe("timespan", () => {
  it.each([
    [0, "0"],
    [5, "5s"],
    [60, "1min"],
    [90, "90s"],
    [600, "10min"],
    [3600, "1h"],
    [5400, "90min"],
    [86400, "1d"],
  ])("%d s is %s", (seconds, text) => {
    expect(timespan(seconds)).toBe(text);
  });

  it("rejects fractions and negatives", () => {
    expect(() => timespan(1.5)).toThrow(/whole number/);
    expect(() => timespan(-1)).toThrow(/whole number/);
  });
});

describe("execArg", () => {
  it.each([
    ["/usr/bin/unison", "/usr/bin/unison"],
    ["50%", "50%%"],
    ["$HOME", "$$HOME"],
    ["/home/a b", '"/home/a b"'],
    ['say "hi"', '"say \\"hi\\""'],
    ["a\\b", '"a\\\\b"'],
  ])("writes %j as %j", (word, text) => {
    expect(execArg(word)).toBe(text);
  });

  it("refuses control characters", () => {
    expect(() => execArg("a\nb")).toThrow(/control character/);
  });

  it("keeps the prefix outside the quoting", () => {
    expect(execLine("+", "/usr/local/lib/swarm/x", "a b")).toBe('+/usr/local/lib/swarm/x "a b"');
  });
});

describe("renderUnit", () => {
  it("writes sections in order, drops undefined settings, doubles % outside Exec lines", () => {
    expect(
      renderUnit(
        ["header"],
        [
          {
            name: "Unit",
            settings: [
              ["Description", "100% sure"],
              ["After", undefined],
            ],
          },
          {
            name: "Service",
            settings: [
              ["ExecStart", execLine("", "/bin/echo", "50%")],
              ["RemainAfterExit", true],
              ["Nice", 10],
            ],
          },
        ],
      ),
    ).toBe(
      "# header\n\n[Unit]\nDescription=100%% sure\n\n[Service]\nExecStart=/bin/echo 50%%\nRemainAfterExit=yes\nNice=10\n",
    );
  });

  it("refuses a value with a line break", () => {
    expect(() => renderUnit([], [{ name: "Unit", settings: [["Description", "a\nb"]] }])).toThrow(
      /line break/,
    );
  });
});

/**
 * systemd unit files as text: path escaping for unit names, quoting for
 * command lines, time spans, and a renderer for `[Section]` + `Key=value`
 * files. Pure functions, so every unit swarm installs is deterministic.
 */
import { formatDuration } from "../config/schemaKit";
import { Seconds } from "../config/types";

/** Every unit of a sync is named after it with this prefix (templates/unison.ts, syncUnitNames). */
export const SYNC_UNIT_PREFIX = "swarm-sync-";

/** Bytes systemd leaves as they are in an escaped name (plus `.`, except in first position). */
const PLAIN = /^[A-Za-z0-9:_.]$/;

/**
 * The unit name stem of a path, exactly as `systemd-escape --path` computes
 * it: duplicate slashes, `.` components and the trailing slash are dropped,
 * the leading slash is removed, `/` becomes `-`, and every other byte
 * outside `[A-Za-z0-9:_.]` (and a leading `.`) becomes `\xNN`. The root is `-`.
 * A mount unit for `/mnt/meshfs` must be called `mnt-meshfs.mount`, or systemd refuses it.
 */
export function systemdEscapePath(path: string): string {
  if (!path.startsWith("/")) {
    throw new Error(`cannot name a unit after ${JSON.stringify(path)}: the path must be absolute`);
  }
  const components = path.split("/").filter((c) => c !== "" && c !== ".");
  if (components.includes("..")) {
    throw new Error(`cannot name a unit after ${JSON.stringify(path)}: remove the ".." components`);
  }
  if (components.length === 0) {
    return "-";
  }
  const bytes = Buffer.from(components.join("/"), "utf8");
  let out = "";
  bytes.forEach((byte, index) => {
    const char = String.fromCharCode(byte);
    if (char === "/") {
      out += "-";
    } else if (byte < 0x80 && PLAIN.test(char) && !(index === 0 && char === ".")) {
      out += char;
    } else {
      out += `\\x${byte.toString(16).padStart(2, "0")}`;
    }
  });
  return out;
}

/** The normalized form of an absolute path, as systemd writes it in `Where=`: `/mnt//a/./b/` is `/mnt/a/b`. */
export function normalizePath(path: string): string {
  const components = path.split("/").filter((c) => c !== "" && c !== ".");
  return `/${components.join("/")}`;
}

/** Whether `path` is `root` or lies below it (`/mnt/meshfs2` is not inside `/mnt/meshfs`); both normalized. */
export function isInside(path: string, root: string): boolean {
  return path === root || path.startsWith(root === "/" ? "/" : `${root}/`);
}

/** A systemd time span for a number of seconds: `90s`, `10min`, `2h`, `1d`; 0 is `0`. */
export function timespan(seconds: Seconds): string {
  if (!Number.isInteger(seconds) || seconds < 0) {
    throw new Error(`a time span must be a whole number of seconds, not ${seconds}`);
  }
  // systemd reads the config's own duration notation; 0 is written bare (TimeoutIdleSec=0 means never).
  return seconds === 0 ? "0" : formatDuration(seconds);
}

/**
 * One word of an `Exec*=` command line. systemd expands `%` specifiers and
 * `$VAR` references in command lines, so both are doubled; words with other
 * characters are double-quoted with C escapes.
 */
export function execArg(word: string): string {
  if (/[\x00-\x1f\x7f]/.test(word)) {
    throw new Error(`${JSON.stringify(word)} contains a control character and cannot be passed to systemd`);
  }
  const escaped = word.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (/^[A-Za-z0-9_@%+=:,./$-]+$/.test(escaped)) {
    return escaped;
  }
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** A command line for `ExecStart=` and friends. The first word may carry systemd prefixes (`+`, `-`). */
export function execLine(prefix: "" | "+" | "-", ...words: string[]): string {
  return `${prefix}${words.map(execArg).join(" ")}`;
}

/**
 * A value of a unit setting, checked to fit on one line. systemd expands `%`
 * specifiers in nearly every setting (even `Where=`), so `%` is doubled.
 */
function settingValue(key: string, value: string, specifiers: boolean): string {
  if (/[\n\r]/.test(value)) {
    throw new Error(`the unit setting ${key}= cannot hold a line break: ${JSON.stringify(value)}`);
  }
  return specifiers ? value.replace(/%/g, "%%") : value;
}

/** A setting: key and value; `undefined` leaves the setting out, so optional settings read naturally. */
export type UnitSetting = readonly [key: string, value: string | number | boolean | undefined];

export interface UnitSection {
  /** `Unit`, `Service`, `Mount`, `Automount`, `Timer` or `Install`. */
  readonly name: string;
  /** In order; a key may repeat. */
  readonly settings: readonly UnitSetting[];
}

/**
 * A unit file: a comment header, then sections. Booleans are written `yes`/`no`.
 * Values of `Exec*` settings must come from `execLine`, which already escapes them.
 */
export function renderUnit(header: readonly string[], sections: readonly UnitSection[]): string {
  const lines = header.map((line) => `# ${line}`.trimEnd());
  for (const section of sections) {
    lines.push("", `[${section.name}]`);
    for (const [key, value] of section.settings) {
      if (value === undefined) {
        continue;
      }
      const text = typeof value === "boolean" ? (value ? "yes" : "no") : String(value);
      lines.push(
        `${key}=${key.startsWith("Exec") ? settingValue(key, text, false) : settingValue(key, text, true)}`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}

/** The header every swarm unit starts with: what installed it and what it is for. */
export function unitHeader(...purpose: string[]): string[] {
  return ["Installed by swarm; changes made here are overwritten on the next deploy.", ...purpose];
}

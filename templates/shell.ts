/**
 * Building blocks of the bash scripts swarm runs on hosts. Every script is
 * idempotent: files are written only when their content, mode or owner
 * differ, and the script reports what it changed on stdout.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as path from "node:path";

/** Quotes a string for bash as one word. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Hex SHA-256 of a text: content hashes used as command triggers. */
export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Where each remote command records what it installed, one file per command name (`swarm-drift` reads them). */
export const OWNED_DIR = "/var/lib/swarm/owned";

/** Where the shell files that run on hosts live, beside the templates that install them. */
export const HOST_SCRIPT_DIR = path.join(__dirname, "hostscripts");

/**
 * The text of a file in `templates/hostscripts` (or at an absolute path). A fragment, which is part of
 * other scripts rather than a program, starts with `# shellcheck` directives
 * for the checker; they are left out. Each of `values` replaces the one line
 * `NAME=...` of the file that assigns it: constants the templates own, so the
 * file can run as it is and still say what the TypeScript says.
 */
export function hostScript(file: string, values: Readonly<Record<string, string>> = {}): string {
  let text = readFileSync(path.resolve(HOST_SCRIPT_DIR, file), "utf8");
  while (text.startsWith("# shellcheck ")) {
    text = text.slice(text.indexOf("\n") + 1);
  }
  for (const [name, value] of Object.entries(values)) {
    const assignment = new RegExp(`^${name}=.*$`, "gm");
    const found = text.match(assignment) ?? [];
    if (found.length !== 1) {
      throw new Error(`${file} must assign ${name} on exactly one line, not ${found.length}`);
    }
    text = text.replace(assignment, () => `${name}=${shellQuote(value)}`);
  }
  return text;
}

/**
 * Functions every host script starts with (`hostscripts/prelude.sh`): `fail`,
 * `swarm_write`, `swarm_changed`, and `swarm_activate`, which enables, starts
 * and restarts a unit after systemd has read the unit files the run wrote.
 */
export const SCRIPT_PRELUDE = hostScript("prelude.sh");

export interface FileSpec {
  /** Absolute path on the host. */
  readonly path: string;
  readonly content: string;
  /** Octal mode, e.g. `0644`. */
  readonly mode: string;
  /** `user:group`. Defaults to `root:root`. */
  readonly owner?: string;
}

/** Whether `line` is one of the lines of `text`; a search, as files can be large and are many. */
function hasLine(text: string, line: string): boolean {
  return (
    text === line ||
    text.startsWith(`${line}\n`) ||
    text.endsWith(`\n${line}`) ||
    text.includes(`\n${line}\n`)
  );
}

/** A heredoc delimiter that does not occur as a line of the content. */
function delimiterFor(content: string): string {
  let delimiter = "SWARM_EOF";
  for (let n = 1; hasLine(content, delimiter); n++) {
    delimiter = `SWARM_EOF_${n}`;
  }
  return delimiter;
}

/** Script lines that install one file; the content travels in a quoted heredoc, so nothing in it is expanded. */
export function writeFile(file: FileSpec): string {
  const body = file.content.endsWith("\n") ? file.content : `${file.content}\n`;
  const delimiter = delimiterFor(body);
  return `swarm_write ${shellQuote(file.path)} ${file.mode} ${file.owner ?? "root:root"} <<'${delimiter}'\n${body}${delimiter}\n`;
}

/** A complete script: prelude, then the given parts in order. */
export function script(...parts: string[]): string {
  return [SCRIPT_PRELUDE, ...parts].join("\n");
}

/** The script inside a command built by `asRoot` (`[sudo -n ]bash -c '<script>'`). */
export function unwrapRootCommand(command: string): string {
  const match = /^(?:sudo -n )?bash -c '([\s\S]*)'$/.exec(command);
  return match ? match[1].replace(/'\\''/g, "'") : command;
}

/** Every file a script installs with `writeFile`, in order: what `npm run render` shows a reviewer. */
export function extractFiles(body: string): FileSpec[] {
  const files: FileSpec[] = [];
  // Content arrives as a heredoc, directly or through a filter that fills in host-side values (`< <(sed ... <<'X'`).
  const pattern =
    /^swarm_write '((?:[^']|'\\'')*)' (\d+) (\S+) (?:<<|< <\(.*<<)'(SWARM_[A-Z_]*EOF(?:_\d+)?)'\n/gm;
  for (let match = pattern.exec(body); match; match = pattern.exec(body)) {
    const start = match.index + match[0].length;
    const end = body.indexOf(`\n${match[4]}\n`, start - 1);
    if (end < 0) {
      break;
    }
    const content = body.slice(start, end + 1);
    files.push({ path: match[1].replace(/'\\''/g, "'"), mode: match[2], owner: match[3], content });
    pattern.lastIndex = end + match[4].length + 2;
  }
  return files;
}

/**
 * Building blocks of the bash scripts swarm runs on hosts. Every script is
 * idempotent: files are written only when their content, mode or owner
 * differ, and the script reports what it changed on stdout.
 */
import { createHash } from "node:crypto";

/** Quotes a string for bash as one word. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Hex SHA-256 of a text: content hashes used as command triggers. */
export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Functions every host script starts with. */
export const SCRIPT_PRELUDE = `set -euo pipefail
umask 022
export LC_ALL=C
changed=()
# swarm_write PATH MODE OWNER:GROUP < content: atomic, and only when something differs.
swarm_write() {
  local path=$1 mode=$2 owner=$3 tmp
  # Create missing parents only: an existing directory keeps its mode (/etc/wireguard stays 0700).
  [ -d "$(dirname "$path")" ] || install -d -m 0755 "$(dirname "$path")"
  tmp=$(mktemp "$path.swarm.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  chown "$owner" "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path" &&
    [ "$(stat -c %a:%U:%G "$path")" = "$(stat -c %a:%U:%G "$tmp")" ]; then
    rm -f "$tmp"
    return 0
  fi
  mv -f "$tmp" "$path"
  changed+=("$path")
  echo "swarm: wrote $path"
}
# swarm_changed PATH...: true when this run wrote any of them.
swarm_changed() {
  local c p
  for c in "\${changed[@]}"; do
    for p in "$@"; do
      [ "$c" = "$p" ] && return 0
    done
  done
  return 1
}
`;

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

/**
 * Runs a host script on this machine without letting it touch the machine:
 * a private mount namespace (an unprivileged user namespace mapped to root)
 * where the directories the script writes are replaced by empty temporary
 * ones, the rest of the root file system is read-only, and the commands that
 * would act on the system (systemctl, ip, apt-get, ...) are stubs that log
 * their arguments and keep state in files the test can read and set.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export interface SandboxResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const RUNNER = `#!/bin/bash
set -euo pipefail
sandbox=$1
shift
mount --bind "$sandbox" "$sandbox"
while [ "$1" != -- ]; do
  mount --bind "$1" "$2"
  shift 2
done
shift
mount -o remount,bind,ro /
cd "$sandbox"
exec env -i PATH="$sandbox/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root SANDBOX="$sandbox" "$@"
`;

export class Sandbox {
  /** Temporary directory holding shadow directories, stubs, state and the call log. */
  readonly dir: string;
  private readonly shadows: Map<string, string>;

  /**
   * @param shadowed absolute directories the script may write; each must exist on this machine.
   * @param stubs command name → bash body run with the command's arguments; every call is logged first.
   */
  constructor(shadowed: readonly string[], stubs: Readonly<Record<string, string>>) {
    this.dir = mkdtempSync(join(tmpdir(), "swarm-sandbox-"));
    this.shadows = new Map(shadowed.map((path, i) => [path, join(this.dir, "shadow", String(i))]));
    for (const shadow of this.shadows.values()) {
      mkdirSync(shadow, { recursive: true });
    }
    mkdirSync(join(this.dir, "bin"));
    mkdirSync(join(this.dir, "state"));
    writeFileSync(join(this.dir, "calls.log"), "");
    for (const [command, body] of Object.entries(stubs)) {
      const path = join(this.dir, "bin", command);
      writeFileSync(
        path,
        `#!/bin/bash\nset -euo pipefail\nprintf '%s\\n' "${command} $*" >>"$SANDBOX/calls.log"\n${body}\n`,
      );
      chmodSync(path, 0o755);
    }
  }

  /** Where a path inside a shadowed directory lives on this machine. */
  outside(path: string): string {
    for (const [inside, shadow] of this.shadows) {
      if (path === inside || path.startsWith(`${inside}/`)) {
        return shadow + path.slice(inside.length);
      }
    }
    throw new Error(`${path} is not inside a shadowed directory`);
  }

  /** Writes a file the script will see at `path` (inside a shadowed directory). */
  write(path: string, content: string, mode = 0o644): void {
    const target = this.outside(path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content);
    chmodSync(target, mode);
  }

  read(path: string): string {
    return readFileSync(this.outside(path), "utf8");
  }

  exists(path: string): boolean {
    try {
      statSync(this.outside(path));
      return true;
    } catch {
      return false;
    }
  }

  /** Octal permission bits, e.g. `600`. */
  mode(path: string): string {
    return (statSync(this.outside(path)).mode & 0o7777).toString(8);
  }

  /** A stub's state file, shared by stubs (as `$SANDBOX/state/<name>`) and the test. */
  state(name: string, value?: string): string | undefined {
    const path = join(this.dir, "state", name);
    if (value !== undefined) {
      writeFileSync(path, value);
      return value;
    }
    try {
      return readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
  }

  /** Stub calls so far, one `command args...` a line; cleared by each read. */
  calls(): string[] {
    const path = join(this.dir, "calls.log");
    const lines = readFileSync(path, "utf8").split("\n").filter(Boolean);
    writeFileSync(path, "");
    return lines;
  }

  /**
   * Runs `script` with bash as root of the sandbox. With `trace`, every
   * program the script executes is recorded with its arguments by strace
   * (returned in `exec`), to prove a secret never reaches an argument list.
   */
  run(script: string, stdin = "", trace = false): SandboxResult & { exec: string } {
    const scriptPath = join(this.dir, "script.sh");
    const runnerPath = join(this.dir, "runner.sh");
    const tracePath = join(this.dir, "exec.trace");
    writeFileSync(scriptPath, script);
    writeFileSync(runnerPath, RUNNER);
    rmSync(tracePath, { force: true });
    const binds = [...this.shadows].flatMap(([inside, shadow]) => [shadow, inside]);
    const command = trace
      ? ["strace", "-f", "-qq", "-s", "4096", "-e", "trace=execve", "-o", tracePath, "bash", scriptPath]
      : ["bash", scriptPath];
    const result = spawnSync(
      "unshare",
      [
        "--mount",
        "--map-root-user",
        "--propagation",
        "private",
        "bash",
        runnerPath,
        this.dir,
        ...binds,
        "--",
        ...command,
      ],
      { input: stdin, encoding: "utf8", timeout: 20000 },
    );
    if (result.error) {
      throw result.error;
    }
    return {
      status: result.status,
      stdout: result.stdout,
      stderr: result.stderr,
      exec: trace ? readFileSync(tracePath, "utf8") : "",
    };
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

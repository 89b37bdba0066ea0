/**
 * Asks every host of a stack for its `swarm-health json` report over SSH,
 * in parallel, the way `npm run status` and `npm run repair` reach them:
 * addresses from the stack (existing hosts) or its outputs (Hetzner hosts),
 * the admin key from `--key` / `SWARM_SSH_KEY` (a file, or the key itself),
 * every host key checked against the stack's pin, else against
 * `--known-hosts` or the user's known_hosts. The lab reaches its hosts
 * through its VM with its own key, unless a key is given.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadStack } from "../config/load";
import { FleetConfig } from "../config/types";
import { LAB_KEY, SSH_CONFIG, labHostKeys } from "../lab/fleet";
import { StatusRow, askHost, pinnedKnownHosts, sshTargets } from "./status";

export interface AskFleetOptions {
  /** Where the stack files live. */
  readonly root: string;
  /** The admin's private key: a file, or the key itself (`SWARM_SSH_KEY`). */
  readonly key?: string;
  /** known_hosts for the hosts the stack pins no key for. */
  readonly knownHosts?: string;
  /** The ssh program; `ssh` on PATH unless given (tests give a stand-in). */
  readonly ssh?: string;
}

/** The stack's validated config and one row per host: its report, or why there is none. */
export interface FleetAnswers {
  readonly config: FleetConfig;
  readonly rows: StatusRow[];
}

/**
 * Loads the stack (throwing `loadStack`'s StackLoadError when it is missing
 * or invalid) and asks every host. Never throws for a host: an unreachable
 * one is a row with an error.
 */
export async function askFleet(stack: string, opts: AskFleetOptions): Promise<FleetAnswers> {
  // The lab keeps its admin key, the hosts' keys and the route through its VM in its state directory.
  const isLab = stack === "lab" && fs.existsSync(LAB_KEY);
  const { config } = loadStack(stack, { dir: opts.root, pinHostKeys: isLab ? labHostKeys() : undefined });
  const labRoute = isLab && opts.key === undefined;
  const key = labRoute ? LAB_KEY : opts.key;
  const sshConfig = labRoute ? SSH_CONFIG : undefined;
  const needsOutputs = config.hosts.some((h) => h.existing === undefined);
  const { outputs, problem } = needsOutputs ? stackOutputs(stack, opts.root) : { outputs: {}, problem: "" };
  const { targets, missing } = sshTargets(config, outputs, problem);
  const secretKey = keyFile(key);
  const pinDir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-ask-"));
  const pinnedKeys = path.join(pinDir, "known_hosts");
  fs.writeFileSync(pinnedKeys, pinnedKnownHosts(targets), { mode: 0o600 });
  try {
    const asked = await Promise.all(
      targets.map((t) =>
        askHost(t, {
          ssh: opts.ssh,
          key: secretKey.file,
          knownHosts: opts.knownHosts,
          pinnedKeys,
          sshConfig,
        }),
      ),
    );
    return { config, rows: [...asked, ...missing] };
  } finally {
    secretKey.cleanup();
    fs.rmSync(pinDir, { recursive: true, force: true });
  }
}

function lastLine(text: string): string {
  return (
    text
      .split("\n")
      .filter((l) => l.trim() !== "")
      .pop() ?? ""
  );
}

/** The stack's outputs from the Pulumi CLI, or why they could not be read. */
function stackOutputs(stack: string, root: string): { outputs?: Record<string, unknown>; problem: string } {
  const candidates = ["pulumi", path.join(root, "node_modules", ".bin", "pulumi")];
  let problem =
    "no Pulumi CLI found: install it (https://www.pulumi.com/docs/install/) and log in to the stack's backend";
  for (const cli of candidates) {
    const result = spawnSync(cli, ["stack", "output", "--json", "--stack", stack], {
      cwd: root,
      encoding: "utf8",
      timeout: 60_000,
    });
    if (result.error !== undefined) {
      continue;
    }
    if (result.status === 0) {
      try {
        return { outputs: JSON.parse(result.stdout) as Record<string, unknown>, problem: "" };
      } catch {
        return { problem: `pulumi stack output printed no JSON` };
      }
    }
    problem = `pulumi stack output --stack ${stack} failed: ${lastLine(result.stderr) || `exit ${result.status}`}`;
  }
  return { problem };
}

/** A key given as text (SWARM_SSH_KEY holding the key itself) goes to a private temporary file. */
function keyFile(key: string | undefined): { file?: string; cleanup: () => void } {
  if (key === undefined || !key.includes("PRIVATE KEY-----")) {
    return { file: key, cleanup: () => undefined };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-ask-"));
  const file = path.join(dir, "key");
  fs.writeFileSync(file, key.endsWith("\n") ? key : `${key}\n`, { mode: 0o600 });
  return { file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

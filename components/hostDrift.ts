/**
 * A host's drift as a Pulumi resource, so that `pulumi refresh` and
 * `pulumi preview --refresh` show it: `@pulumi/command` has no read step
 * (pulumi-command commandController.go declares Create, Update and Delete
 * only; pulumi-command #432), so a refresh leaves every command as it was.
 * This dynamic resource's read runs `swarm-drift` on the host over SSH and
 * returns what it printed as the output `drift`: a refresh that finds a hand
 * edit changes that output, and the refresh shows the change.
 *
 * The provider below is serialized into the state by the SDK
 * (`pulumi.dynamic.Resource` → serializeFunction) and run by Pulumi's
 * dynamic provider host, which loads it from that text
 * (cmd/dynamic-provider `getProvider`: `requireFromString(text).handler()`).
 * So it is self-contained: Node's modules are required inside the
 * functions, and everything else arrives as inputs. Secrets reach a dynamic
 * provider unwrapped (it does not accept secrets), so the connection is
 * plain inside it and secret in the state.
 */
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "./remote";

/** One item `swarm-drift` printed: the step that installed it, its kind, what it is and how it differs. */
export interface DriftEntry {
  readonly step: string;
  readonly kind: string;
  readonly item: string;
  readonly detail: string;
}

/** The inputs of a host's drift resource, as its provider receives them. */
export interface HostDriftInputs {
  readonly host: string;
  readonly connection: SshConnection;
  /** The drift program on the host (`DRIFT_PROGRAM_PATH`). */
  readonly program: string;
  /** Changes whenever a command on the host changes: the drift is read again after each such converge. */
  readonly after: string;
}

/**
 * Runs the drift program on the host over OpenSSH, the host key pinned from
 * the connection, and parses its lines. `SWARM_SSH_CONFIG` names an
 * ssh_config for every connection (a jump host; the lab's route through its
 * VM). Rejects naming the host when it cannot be asked.
 */
async function readDrift(inputs: HostDriftInputs): Promise<DriftEntry[]> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const childProcess = require("node:child_process") as typeof import("node:child_process");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require("node:fs") as typeof import("node:fs");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const os = require("node:os") as typeof import("node:os");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const path = require("node:path") as typeof import("node:path");
  const { connection: c, host, program } = inputs;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-drift-"));
  try {
    const key = path.join(dir, "key");
    const knownHosts = path.join(dir, "known_hosts");
    const alias = `swarm-drift-${host}`;
    fs.writeFileSync(key, c.privateKey.endsWith("\n") ? c.privateKey : `${c.privateKey}\n`, { mode: 0o600 });
    fs.writeFileSync(knownHosts, `${alias} ${c.hostKey}\n`, { mode: 0o600 });
    const sshConfig = process.env.SWARM_SSH_CONFIG;
    const args = [
      ...(sshConfig ? ["-F", sshConfig] : []),
      "-i",
      key,
      "-p",
      String(c.port),
      "-o",
      "BatchMode=yes",
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      `UserKnownHostsFile=${knownHosts}`,
      "-o",
      "GlobalKnownHostsFile=/dev/null",
      "-o",
      `HostKeyAlias=${alias}`,
      "-o",
      `HostKeyAlgorithms=${c.hostKey.split(" ")[0]}`,
      "-o",
      "ConnectTimeout=20",
      `${c.user}@${c.host}`,
      c.user === "root" ? program : `sudo -n ${program}`,
    ];
    // The environment passed on as it is (PATH, SSH_AUTH_SOCK): said explicitly, so a runtime that
    // gives the program a process.env of its own (jest's) still hands it to ssh.
    const result = childProcess.spawnSync("ssh", args, {
      encoding: "utf8",
      timeout: 120_000,
      env: process.env,
    });
    if (result.error !== undefined || result.status !== 0) {
      const why =
        result.error?.message ?? (result.stderr.trim().split("\n").pop() || `exit ${result.status}`);
      throw new Error(`cannot read the drift of ${host} (${c.user}@${c.host}:${c.port}): ${why}`);
    }
    return result.stdout
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => {
        const [step, kind, item, ...detail] = line.split("\t");
        return { step, kind, item, detail: detail.join("\t") };
      });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The fields whose change means the drift is read again: the host, how to reach it, and what ran there. */
function sameHost(olds: HostDriftInputs, news: HostDriftInputs): boolean {
  return (
    olds.host === news.host &&
    olds.program === news.program &&
    olds.after === news.after &&
    JSON.stringify(olds.connection) === JSON.stringify(news.connection)
  );
}

/** The dynamic provider: the drift is read at creation, at every refresh, and after every change on the host. */
export const hostDriftProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: HostDriftInputs) {
    return { id: inputs.host, outs: { ...inputs, drift: await readDrift(inputs) } };
  },
  async read(id: string, props: HostDriftInputs) {
    return { id, props: { ...props, drift: await readDrift(props) } };
  },
  async diff(_id: string, olds: HostDriftInputs, news: HostDriftInputs) {
    return { changes: !sameHost(olds, news) };
  },
  async update(_id: string, _olds: HostDriftInputs, news: HostDriftInputs) {
    return { outs: { ...news, drift: await readDrift(news) } };
  },
};

export interface HostDriftArgs {
  readonly host: string;
  /** The host's SSH connection (secret). */
  readonly connection: pulumi.Input<SshConnection>;
  readonly program: string;
  readonly after: pulumi.Input<string>;
}

/**
 * What differs on a host from what swarm's steps installed there, as of the
 * last read (creation, a change on the host, or a refresh).
 */
export class HostDrift extends pulumi.dynamic.Resource {
  /** Each drifted item; empty when the host is as swarm left it. */
  public readonly drift!: pulumi.Output<DriftEntry[]>;

  constructor(name: string, args: HostDriftArgs, opts?: pulumi.CustomResourceOptions) {
    super(hostDriftProvider, name, { ...args, drift: undefined }, opts, "swarm", "HostDrift");
  }
}

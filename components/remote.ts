import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { hostScript, OWNED_DIR, sha256, shellQuote } from "../templates/shell";

/** How the program reaches a host over SSH. Secret, as it carries the admin private key. */
export interface SshConnection {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly privateKey: string;
  /**
   * The host's SSH host key, `ssh-ed25519 AAAA...`. The provider accepts any
   * key when this is unset; set, it offers only this key's algorithm and
   * refuses every other key.
   */
  readonly hostKey: string;
  /** Failed dials before the provider gives up (its default, 10, is about 11 s against a refusing port). */
  readonly dialErrorLimit: number;
  /** Seconds one dial may take. */
  readonly perDialTimeout: number;
}

/**
 * Dials before a command gives up on a host. The provider retries every
 * failed dial (refused, timed out, or a host key mismatch) after 0.1 s,
 * growing 1.5x per try up to 5 s (pulumi's retry.Until defaults): 10 tries
 * wait about 11 s in all, less than a fresh server takes to start sshd. 40
 * tries wait about 160 s plus the dials themselves.
 */
export const DIAL_ERROR_LIMIT = 40;
/** Seconds per dial: the provider's default, so that a dropped SYN is retried soon. */
export const PER_DIAL_TIMEOUT = 15;

/**
 * The text of one step. Steps whose text depends on Outputs pass it as one
 * Output resolving all of it: the command then derives one Output per
 * property from it. Combining a script, a hash and a teardown that are
 * separate Outputs takes about ten Outputs per command, each carrying the
 * dependencies of them all, which for a step that lists every host of a
 * full mesh dominated evaluation time and memory.
 */
export interface StepText {
  /** Bash script run on create and whenever the owner hash changes. Must be idempotent. */
  readonly script: string;
  /** Hash of everything the script installs. The command re-runs exactly when it changes. */
  readonly ownerHash: string;
  /**
   * Bash script run when the resource is deleted (not when it is replaced;
   * without one, the delete only removes the step's record and marker):
   * the create script records `ownerHash` on the host, and the delete runs
   * only while the host still holds that hash. A replacement writes the new
   * hash before the old resource's delete runs, which then does nothing.
   */
  readonly teardown?: string;
}

/** A step whose owner hash is the hash of its script: what most steps install. */
export function hashedText(script: string, teardown?: string): StepText;
export function hashedText(script: pulumi.Output<string>, teardown?: string): pulumi.Output<StepText>;
export function hashedText(
  script: string | pulumi.Output<string>,
  teardown?: string,
): StepText | pulumi.Output<StepText>;
export function hashedText(
  script: string | pulumi.Output<string>,
  teardown?: string,
): StepText | pulumi.Output<StepText> {
  const text = (body: string): StepText => ({
    script: body,
    ownerHash: sha256(body),
    ...(teardown !== undefined ? { teardown } : {}),
  });
  return typeof script === "string" ? text(script) : script.apply(text);
}

/**
 * A step that installs a key delivered on stdin: its owner hash covers the
 * script and the public key, which changes exactly when the private key does
 * and reveals nothing about it.
 */
export function keyText(
  script: string,
  publicKey: pulumi.Output<string>,
  teardown?: string,
): pulumi.Output<StepText> {
  return publicKey.apply((key) => ({
    script,
    ownerHash: sha256(`${script}\n${key}`),
    ...(teardown !== undefined ? { teardown } : {}),
  }));
}

export interface HostCommandArgs {
  /** The host's SSH connection (an Output holding a secret). */
  readonly connection: pulumi.Input<SshConnection>;
  /** User the connection logs in as; scripts run through `sudo -n` unless it is root. */
  readonly user: string;
  /**
   * What the command installs: its script, owner hash and teardown, plain or
   * as one Output that resolves all three (see `StepText`).
   */
  readonly text: StepText | pulumi.Output<StepText>;
  /** Content delivered on the script's standard input: the way secrets travel, never in arguments. */
  readonly stdin?: pulumi.Input<string>;
  /** The script handles a secret: keep stdout/stderr out of logs and make them secret in state. */
  readonly secret?: boolean;
  /**
   * The stack's `swarm:repairs`: a generation for this command's name is
   * folded into its owner hash, so raising it re-runs exactly this command
   * (see docs/drift.md).
   */
  readonly repairs?: Readonly<Record<string, number>>;
}

const OWNER_DIR = "/var/lib/swarm/owners";
const RECORD_FUNCTIONS = hostScript("record.sh");

/** The owner hash with a repair generation folded in; unchanged without one, so a stack without repairs keeps its hashes. */
export function repairedHash(hash: string, generation: number | undefined): string {
  return generation === undefined ? hash : `${hash} repair ${generation}`;
}

/** Runs `body` with bash on the host, as root. */
export function asRoot(user: string, body: string): string {
  const run = `bash -c ${shellQuote(body)}`;
  return user === "root" ? run : `sudo -n ${run}`;
}

/**
 * A script run on a host over SSH, re-run only when its content hash
 * changes. Every remote step of swarm is one of these.
 */
export function hostCommand(
  name: string,
  args: HostCommandArgs,
  opts: pulumi.CustomResourceOptions,
): command.remote.Command {
  const marker = `${OWNER_DIR}/${name}`;
  const record = `${OWNED_DIR}/${name}`;
  const generation = args.repairs?.[name];
  const create = (body: string, hash: string) =>
    asRoot(
      args.user,
      `${body}\n${RECORD_FUNCTIONS}swarm_record ${shellQuote(record)}\ninstall -d -m 0700 ${OWNER_DIR}\nprintf '%s\\n' ${shellQuote(repairedHash(hash, generation))} > ${shellQuote(marker)}\n`,
    );
  const remove = (body: string, hash: string) =>
    asRoot(
      args.user,
      `set -euo pipefail\nif [ "$(cat ${shellQuote(marker)} 2>/dev/null)" != ${shellQuote(repairedHash(hash, generation))} ]; then\n  echo "swarm: ${name} is owned by a newer version; nothing to remove"\n  exit 0\nfi\n${body}\nrm -f ${shellQuote(marker)} ${shellQuote(record)}\n`,
    );
  const { text } = args;
  const plain = !pulumi.Output.isInstance(text);
  return new command.remote.Command(
    name,
    {
      connection: args.connection,
      create: plain ? create(text.script, text.ownerHash) : text.apply((t) => create(t.script, t.ownerHash)),
      // Without a teardown the delete only forgets the record and the marker: what the step
      // installed stays (an export's dataset must outlive its removal from the config).
      delete: plain
        ? remove(text.teardown ?? "", text.ownerHash)
        : text.apply((t) => remove(t.teardown ?? "", t.ownerHash)),
      stdin: args.stdin,
      triggers: [
        plain
          ? repairedHash(text.ownerHash, generation)
          : text.apply((t) => repairedHash(t.ownerHash, generation)),
      ],
      logging: args.secret ? "none" : "stdoutAndStderr",
      // Otherwise the provider sends the previous stdout/stderr as PULUMI_COMMAND_STDOUT/STDERR
      // through sshd, which refuses them (Debian's AcceptEnv is LANG LC_*): a warning on every
      // update and delete, and no script here reads them.
      addPreviousOutputInEnv: false,
    },
    { ...opts, additionalSecretOutputs: args.secret ? ["stdout", "stderr"] : [] },
  );
}

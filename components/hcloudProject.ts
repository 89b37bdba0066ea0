/**
 * What the program asks the Hetzner Cloud project before it creates
 * anything there: the server types and locations the API offers now, and
 * whether the admin SSH key is already uploaded. The decisions are the
 * plain functions of config/cloud.ts; this module only runs the provider's
 * invokes (once per stack) and turns the answers into a failed preview or
 * an SSH key ID.
 *
 * How a failure reaches `pulumi preview` (read from @pulumi/pulumi 3.248):
 * invokes run during preview too (runtime/invoke.js `invokeOutput`; only
 * unknown inputs make the result unknown, and these invokes take none), so
 * the `apply` below runs in a preview. An error thrown inside an `apply`
 * rejects the Output's promises (output.js `applyHelperAsync`); nothing
 * catches them, so Node reports an unhandled rejection, which the language
 * host's handler (cmd/run/run.js `uncaughtHandler`) logs as an error
 * (without a stack for a `RunError`) and counts as reported, and the
 * process exits with code 32 (cmd/run/index.js), which fails the preview or
 * update. `pulumi.log.error` alone would not: it only counts the error
 * (log/index.js). The same rejection reaches every server through its admin
 * key ID (see `adminSshKey`), so a `pulumi up --skip-preview` creates no
 * server either.
 */
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import {
  catalogueErrors,
  catalogueOf,
  catalogueWarnings,
  chooseAdminKey,
  sshKeyFingerprint,
} from "../config/cloud";
import { formatErrors } from "../config/load";
import { FleetConfig } from "../config/types";

/**
 * Checks every hcloud host's server type and location against the API's
 * catalogue; resolves when all are usable, fails the run with every error
 * otherwise. Call once per stack, and only when it has hcloud hosts.
 */
export function requireCloudCatalogue(config: FleetConfig, now: Date = new Date()): pulumi.Output<void> {
  return pulumi
    .all([hcloud.getServerTypesOutput(), hcloud.getLocationsOutput()])
    .apply(([types, locations]) => {
      const catalogue = catalogueOf(types, locations);
      for (const line of formatErrors(catalogueWarnings(config.hosts, catalogue, now))) {
        void pulumi.log.warn(line);
      }
      const errors = catalogueErrors(config.hosts, catalogue, now);
      if (errors.length > 0) {
        for (const line of formatErrors(errors)) {
          void pulumi.log.error(line);
        }
        throw new pulumi.RunError(
          `${errors.length} Hetzner server type${errors.length === 1 ? "" : "s"} or location${errors.length === 1 ? "" : "s"} ` +
            `the API would refuse (listed above); fix them in the stack file and run pulumi preview again`,
        );
      }
    });
}

export interface AdminSshKeyArgs {
  /** The admin's OpenSSH public key line. */
  readonly publicKey: string;
  /** This stack's labels: what marks a key in the project as this stack's own. */
  readonly labels: Record<string, string>;
  /** Resolves when the cloud config has been checked: no key is created and no ID handed out before. */
  readonly after?: pulumi.Input<unknown>;
}

/**
 * The admin SSH key for the stack's servers: this stack's own
 * `hcloud.SshKey` named `name`, or, when another stack (or a person) has
 * already uploaded a key with the same fingerprint, that key by its ID
 * (Hetzner refuses a second one). See `chooseAdminKey` for why a key with
 * this stack's labels stays managed.
 */
export function adminSshKey(name: string, args: AdminSshKeyArgs): { readonly id: pulumi.Output<string> } {
  const fingerprint = sshKeyFingerprint(args.publicKey);
  const id = pulumi.all([hcloud.getSshKeysOutput(), args.after]).apply(([uploaded]) => {
    const choice = chooseAdminKey(uploaded.sshKeys, fingerprint, args.labels);
    if (choice.kind === "reuse") {
      void pulumi.log.info(
        `the admin key (${fingerprint}) is already in the Hetzner project as ${JSON.stringify(choice.name)} ` +
          `(id ${choice.id}, uploaded by ${choice.owner}): using it instead of uploading it again`,
      );
      return pulumi.output(choice.id);
    }
    return new hcloud.SshKey(name, { publicKey: args.publicKey, labels: args.labels }).id;
  });
  return { id };
}

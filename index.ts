import * as pulumi from "@pulumi/pulumi";
import { ConfigValidationError, readRuntimeConfig } from "./config/load";
import { validateFleetConfig } from "./config/validate";
import { defineFleet } from "./program";

// Every config error is reported at once, before a single resource is registered. Documentation
// placeholders (the example admin key, RFC 5737 ranges) are warnings in a preview and errors in an up.
const { config, errors, warnings } = validateFleetConfig(readRuntimeConfig(), {
  deploying: !pulumi.runtime.isDryRun(),
  otherKeys: Object.keys(pulumi.runtime.allConfig()).filter((key) => !key.startsWith("swarm:")),
});
if (config === undefined) {
  throw new ConfigValidationError(errors);
}
for (const warning of warnings) {
  void pulumi.log.warn(`${warning.path}: ${warning.message}`);
}

/**
 * The stack's outputs, once every resource is defined. The program is an
 * async function (the SDK's runner calls an exported function and awaits
 * it): defining the fleet lets registrations go on between its steps.
 */
export = async () => {
  const fleet = await defineFleet(config, {
    sshPrivateKey: new pulumi.Config("swarm").requireSecret("sshPrivateKey"),
  });
  return {
    /** Per host: mesh address, WireGuard public key, endpoint and SSH address. */
    hosts: fleet.hosts,
    /** The mesh as a Mermaid flowchart (paste into any Markdown that renders Mermaid). */
    topology: fleet.topology,
  };
};

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

const fleet = defineFleet(config, {
  sshPrivateKey: new pulumi.Config("swarm").requireSecret("sshPrivateKey"),
});

/** Per host: mesh address, WireGuard public key, endpoint and SSH address. */
export const hosts = fleet.hosts;
/** The mesh as a Mermaid flowchart (paste into any Markdown that renders Mermaid). */
export const topology = fleet.topology;

import * as pulumi from "@pulumi/pulumi";
import { ConfigValidationError, readRuntimeConfig } from "./config/load";
import { validateFleetConfig } from "./config/validate";
import { defineFleet } from "./program";

// Every config error is reported at once, before a single resource is registered.
const { config, errors } = validateFleetConfig(readRuntimeConfig());
if (config === undefined) {
  throw new ConfigValidationError(errors);
}

const fleet = defineFleet(config, {
  sshPrivateKey: new pulumi.Config("swarm").requireSecret("sshPrivateKey"),
});

/** Per host: mesh address, WireGuard public key, endpoint and SSH address. */
export const hosts = fleet.hosts;
/** The mesh as a Mermaid flowchart (paste into any Markdown that renders Mermaid). */
export const topology = fleet.topology;

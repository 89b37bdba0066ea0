/** Fixtures as the program sees them: raw `swarm:` values run through validation, never typed objects built by hand. */
import { formatErrors } from "../config/load";
import { FleetConfig } from "../config/types";
import { validateFleetConfig } from "../config/validate";

/**
 * The `swarm:` values of a stack (prefix stripped, as a stack file holds
 * them) validated and defaulted; throws with every error when a fixture is
 * not a valid config.
 */
export function validated(raw: Record<string, unknown>): FleetConfig {
  const { config, errors } = validateFleetConfig(raw);
  if (config === undefined) {
    throw new Error(`the fixture's config does not validate:\n${formatErrors(errors).join("\n")}`);
  }
  return config;
}

/**
 * The Hetzner Cloud project as it is now, checked against the config: server
 * types and locations the API offers today, and an admin SSH key that may
 * already be uploaded. Plain values in, errors or a decision out; the
 * lookups that feed these functions are in components/hcloudProject.ts.
 */
import { createHash } from "node:crypto";
import { ConfigError, HostConfig } from "./types";

/** Where and how a server type is offered, as the provider's `getServerTypes` reports it per location. */
export interface ServerTypeOffer {
  readonly location: string;
  /** False while the type is temporarily out of stock in the location. */
  readonly available: boolean;
  readonly deprecated: boolean;
  /** ISO date after which no server of the type can be created in the location; absent when none is set. */
  readonly unavailableAfter?: string;
}

export interface CatalogueServerType {
  readonly name: string;
  /** `x86` or `arm`. */
  readonly architecture: string;
  readonly offers: readonly ServerTypeOffer[];
}

/** The server types and locations of the Hetzner Cloud API, as the provider's invokes return them. */
export interface CloudCatalogue {
  readonly serverTypes: readonly CatalogueServerType[];
  readonly locations: readonly string[];
}

/** The fields of the provider's `getServerTypes` result that the checks read. */
export interface ServerTypesResult {
  readonly serverTypes: readonly {
    readonly name: string;
    readonly architecture: string;
    readonly locations: readonly {
      readonly name: string;
      readonly available: boolean;
      readonly isDeprecated: boolean;
      readonly unavailableAfter: string;
    }[];
  }[];
}

/** The fields of the provider's `getLocations` result that the checks read. */
export interface LocationsResult {
  readonly locations: readonly { readonly name: string }[];
}

/** The catalogue out of the two invoke results (the provider reports "no date" as an empty string). */
export function catalogueOf(types: ServerTypesResult, locations: LocationsResult): CloudCatalogue {
  return {
    serverTypes: types.serverTypes.map((t) => ({
      name: t.name,
      architecture: t.architecture,
      offers: t.locations.map((l) => ({
        location: l.name,
        available: l.available,
        deprecated: l.isDeprecated,
        ...(l.unavailableAfter ? { unavailableAfter: l.unavailableAfter } : {}),
      })),
    })),
    locations: locations.locations.map((l) => l.name),
  };
}

/** The letters a type's name starts with: its series (`cx`, `cpx`, `cax`, `ccx`). */
const series = (name: string): string => /^[a-z]*/.exec(name)?.[0] ?? "";

/**
 * Names in the order people read them (cx23 before cx33 before cx113), those
 * of the series of `near` first: a removed cx22 is answered with cx23 first.
 */
function listed(names: Iterable<string>, near = ""): string {
  const sorted = [...new Set(names)].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  const same = sorted.filter((n) => near !== "" && series(n) === series(near.toLowerCase()));
  const list = [...same, ...sorted.filter((n) => !same.includes(n))];
  return list.length === 0 ? "(none)" : list.join(", ");
}

/** Whether no new server of the type can be created in the offer's location at `now`. */
function retired(offer: ServerTypeOffer, now: Date): boolean {
  return offer.unavailableAfter !== undefined && Date.parse(offer.unavailableAfter) <= now.getTime();
}

/** Types a new server can be created with in `location` at `now`: offered, not deprecated, not retired. */
function creatableIn(catalogue: CloudCatalogue, location: string, now: Date): string[] {
  return catalogue.serverTypes
    .filter((t) => t.offers.some((o) => o.location === location && !o.deprecated && !retired(o, now)))
    .map((t) => t.name);
}

/** Types a new server can be created with somewhere. */
function creatableAnywhere(catalogue: CloudCatalogue, now: Date): string[] {
  return catalogue.locations.flatMap((l) => creatableIn(catalogue, l, now));
}

interface Finding extends ConfigError {
  readonly severity: "error" | "warning";
}

function findings(hosts: readonly HostConfig[], catalogue: CloudCatalogue, now: Date): Finding[] {
  const out: Finding[] = [];
  const locations = new Set(catalogue.locations);
  const types = new Map(catalogue.serverTypes.map((t) => [t.name, t]));
  hosts.forEach((host, i) => {
    const cloud = host.hcloud;
    if (cloud === undefined) {
      return;
    }
    const at = `swarm:hosts[${i}].hcloud`;
    const knownLocation = locations.has(cloud.location);
    if (!knownLocation) {
      out.push({
        severity: "error",
        path: `${at}.location`,
        message: `${JSON.stringify(cloud.location)} is not a Hetzner location: use one of ${listed(catalogue.locations)}`,
      });
    }
    const type = types.get(cloud.serverType);
    if (type === undefined) {
      const choices = knownLocation
        ? `one offered in ${cloud.location}: ${listed(creatableIn(catalogue, cloud.location, now), cloud.serverType)}`
        : `one of ${listed(creatableAnywhere(catalogue, now), cloud.serverType)}`;
      out.push({
        severity: "error",
        path: `${at}.serverType`,
        message: `${JSON.stringify(cloud.serverType)} is not a Hetzner server type (the API no longer lists it, or never did): use ${choices}`,
      });
      return;
    }
    if (!knownLocation) {
      return;
    }
    const offer = type.offers.find((o) => o.location === cloud.location);
    const otherLocations = type.offers
      .filter((o) => !o.deprecated && !retired(o, now))
      .map((o) => o.location);
    // Only a finding names the alternatives: listing them for every host cost a large fleet's validation most of its time here.
    const instead = () => {
      const typesThere = listed(creatableIn(catalogue, cloud.location, now), type.name);
      return otherLocations.length === 0
        ? `use a type offered there (${typesThere})`
        : `use a type offered there (${typesThere}) or move the host to a location that offers ${type.name} (${listed(otherLocations)})`;
    };
    if (offer === undefined) {
      out.push({
        severity: "error",
        path: `${at}.serverType`,
        message: `${type.name} is not offered in ${cloud.location}: ${instead()}`,
      });
    } else if (retired(offer, now)) {
      out.push({
        severity: "error",
        path: `${at}.serverType`,
        message: `${type.name} can no longer be created in ${cloud.location} (unavailable after ${offer.unavailableAfter}): ${instead()}`,
      });
    } else if (offer.deprecated) {
      const until = offer.unavailableAfter === undefined ? "" : ` until ${offer.unavailableAfter}`;
      out.push({
        severity: "warning",
        path: `${at}.serverType`,
        message: `${type.name} is deprecated in ${cloud.location}: new servers can still be created${until}, but plan the move: ${instead()}`,
      });
    } else if (!offer.available) {
      out.push({
        severity: "warning",
        path: `${at}.serverType`,
        message: `${type.name} is temporarily out of stock in ${cloud.location}: creating a new server there fails until it is back; existing servers are not affected`,
      });
    }
  });
  return out;
}

const strip = ({ path, message }: Finding): ConfigError => ({ path, message });

/**
 * Every hcloud host whose server type or location the API would refuse for
 * a new server at `now`: unknown names (such as the CX Gen2 types removed at
 * the end of 2025), a type not offered in the host's location, or one whose
 * removal date in that location has passed. Each names what to use instead.
 */
export function catalogueErrors(
  hosts: readonly HostConfig[],
  catalogue: CloudCatalogue,
  now: Date,
): ConfigError[] {
  return findings(hosts, catalogue, now)
    .filter((f) => f.severity === "error")
    .map(strip);
}

/** Types that still work but are deprecated, or out of stock, in the host's location. */
export function catalogueWarnings(
  hosts: readonly HostConfig[],
  catalogue: CloudCatalogue,
  now: Date,
): ConfigError[] {
  return findings(hosts, catalogue, now)
    .filter((f) => f.severity === "warning")
    .map(strip);
}

/**
 * The fingerprint Hetzner identifies an SSH key by, and refuses a second key
 * with in one project: OpenSSH's legacy MD5 fingerprint, the MD5 of the key
 * blob (the base64 field) as colon-separated lower-case hex, as
 * `ssh-keygen -E md5 -lf key.pub` prints it after `MD5:`. The comment is not
 * part of it. Expects a line that validation accepted.
 */
export function sshKeyFingerprint(publicKeyLine: string): string {
  const blob = publicKeyLine.trim().split(/\s+/)[1] ?? "";
  const digest = createHash("md5").update(Buffer.from(blob, "base64")).digest("hex");
  return (digest.match(/../g) as string[]).join(":");
}

/** An SSH key already in the Hetzner project, as the provider's `getSshKeys` returns it. */
export interface UploadedSshKey {
  readonly id: number | string;
  readonly name: string;
  readonly fingerprint: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** What to do about the admin key: manage it as this stack's own resource, or use a key someone else uploaded. */
export type AdminKeyChoice =
  | { readonly kind: "own" }
  | { readonly kind: "reuse"; readonly id: string; readonly name: string; readonly owner: string };

/**
 * Hetzner keeps one key per fingerprint per project. A key with the admin
 * key's fingerprint that carries all of this stack's labels is the one this
 * stack created: it stays a managed resource (were it "reused", the engine
 * would delete the resource, and with it the key). Any other key with that
 * fingerprint (another stack's, or one uploaded by hand) is used by its ID
 * and never touched. No key: this stack creates its own.
 */
export function chooseAdminKey(
  uploaded: readonly UploadedSshKey[],
  fingerprint: string,
  ownLabels: Readonly<Record<string, string>>,
): AdminKeyChoice {
  const found = uploaded.find((k) => k.fingerprint.toLowerCase() === fingerprint.toLowerCase());
  if (found === undefined) {
    return { kind: "own" };
  }
  const labels = found.labels ?? {};
  if (Object.entries(ownLabels).every(([k, v]) => labels[k] === v)) {
    return { kind: "own" };
  }
  const owner =
    labels.fleet === "swarm" && labels.stack !== undefined
      ? `stack ${labels.stack}`
      : "someone else (no swarm stack labels)";
  return { kind: "reuse", id: String(found.id), name: found.name, owner };
}

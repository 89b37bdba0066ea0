/**
 * What the mock runtime answers for the hcloud provider's invokes: the
 * Hetzner Cloud server types and locations as the API listed them in early
 * 2026 (the CX Gen2 types such as cx22 are gone since the end of 2025), in
 * the shape of the provider's `getServerTypes` / `getLocations` results, and
 * the project's SSH keys (none unless a test uploads some). A snapshot for
 * offline runs, not a source of truth: `pulumi preview` asks the API.
 */

const EU = ["fsn1", "nbg1", "hel1"];
const US = ["ash", "hil"];
const LOCATIONS: readonly { name: string; city: string; country: string; networkZone: string }[] = [
  { name: "fsn1", city: "Falkenstein", country: "DE", networkZone: "eu-central" },
  { name: "nbg1", city: "Nuremberg", country: "DE", networkZone: "eu-central" },
  { name: "hel1", city: "Helsinki", country: "FI", networkZone: "eu-central" },
  { name: "ash", city: "Ashburn, VA", country: "US", networkZone: "us-east" },
  { name: "hil", city: "Hillsboro, OR", country: "US", networkZone: "us-west" },
  { name: "sin", city: "Singapore", country: "SG", networkZone: "ap-southeast" },
];

interface TypeRow {
  readonly name: string;
  readonly architecture: "x86" | "arm";
  readonly category: string;
  readonly cores: number;
  readonly memory: number;
  readonly disk: number;
  readonly locations: readonly string[];
}

const rows = (
  prefix: string,
  sizes: readonly [string, number, number, number][],
  architecture: "x86" | "arm",
  category: string,
  locations: readonly string[],
): TypeRow[] =>
  sizes.map(([suffix, cores, memory, disk]) => ({
    name: `${prefix}${suffix}`,
    architecture,
    category,
    cores,
    memory,
    disk,
    locations,
  }));

const SERVER_TYPES: readonly TypeRow[] = [
  ...rows(
    "cx",
    [
      ["23", 2, 4, 40],
      ["33", 4, 8, 80],
      ["43", 8, 16, 160],
      ["53", 16, 32, 320],
    ],
    "x86",
    "cost_optimized",
    EU,
  ),
  ...rows(
    "cpx",
    [
      ["11", 2, 2, 40],
      ["21", 3, 4, 80],
      ["31", 4, 8, 160],
      ["41", 8, 16, 240],
      ["51", 16, 32, 360],
    ],
    "x86",
    "regular_purpose",
    [...EU, ...US, "sin"],
  ),
  ...rows(
    "cax",
    [
      ["11", 2, 4, 40],
      ["21", 4, 8, 80],
      ["31", 8, 16, 160],
      ["41", 16, 32, 320],
    ],
    "arm",
    "cost_optimized",
    EU,
  ),
  ...rows(
    "ccx",
    [
      ["13", 2, 8, 80],
      ["23", 4, 16, 160],
      ["33", 8, 32, 240],
      ["43", 16, 64, 360],
      ["53", 32, 128, 600],
      ["63", 48, 192, 960],
    ],
    "x86",
    "general_purpose",
    [...EU, ...US, "sin"],
  ),
];

const locationId = (name: string): number => LOCATIONS.findIndex((l) => l.name === name) + 1;

/** `getServerTypes`, as the provider returns it. */
export function serverTypesResult(): Record<string, unknown> {
  const serverTypes = SERVER_TYPES.map((t, i) => ({
    id: i + 1,
    name: t.name,
    description: t.name.toUpperCase(),
    architecture: t.architecture,
    category: t.category,
    cores: t.cores,
    cpuType: t.category === "general_purpose" ? "dedicated" : "shared",
    memory: t.memory,
    disk: t.disk,
    storageType: "local",
    includedTraffic: 0,
    isDeprecated: false,
    deprecationAnnounced: "",
    unavailableAfter: "",
    locations: t.locations.map((l) => ({
      id: locationId(l),
      name: l,
      available: true,
      recommended: true,
      isDeprecated: false,
      deprecationAnnounced: "",
      unavailableAfter: "",
    })),
  }));
  return {
    id: "server_types",
    serverTypes,
    names: serverTypes.map((t) => t.name),
    descriptions: serverTypes.map((t) => t.description),
    serverTypeIds: serverTypes.map((t) => String(t.id)),
  };
}

/** `getLocations`, as the provider returns it. */
export function locationsResult(): Record<string, unknown> {
  const locations = LOCATIONS.map((l, i) => ({
    id: i + 1,
    name: l.name,
    description: `${l.city} DC`,
    city: l.city,
    country: l.country,
    networkZone: l.networkZone,
    latitude: 0,
    longitude: 0,
  }));
  return {
    id: "locations",
    locations,
    names: locations.map((l) => l.name),
    descriptions: locations.map((l) => l.description),
    locationIds: locations.map((l) => String(l.id)),
  };
}

/**
 * The answer to an hcloud invoke token, or undefined for a token this
 * catalogue does not know. `sshKeys` are the keys already in the project,
 * as `getSshKeys` lists them.
 */
export function hcloudInvoke(
  token: string,
  sshKeys: readonly Record<string, unknown>[],
): Record<string, unknown> | undefined {
  switch (token) {
    case "hcloud:index/getServerTypes:getServerTypes":
      return serverTypesResult();
    case "hcloud:index/getLocations:getLocations":
      return locationsResult();
    case "hcloud:index/getSshKeys:getSshKeys":
      return { id: "ssh_keys", sshKeys: [...sshKeys] };
    default:
      return undefined;
  }
}

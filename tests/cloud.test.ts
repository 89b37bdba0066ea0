/**
 * The Hetzner project as it is now: server types and locations checked
 * against the API's catalogue, the admin key's fingerprint, and whether the
 * admin key is this stack's own or someone else's.
 */
import {
  catalogueErrors,
  catalogueOf,
  catalogueWarnings,
  chooseAdminKey,
  CloudCatalogue,
  LocationsResult,
  ServerTypesResult,
  sshKeyFingerprint,
  UploadedSshKey,
} from "../config/cloud";
import { HostConfig } from "../config/types";
import { locationsResult, serverTypesResult } from "../offline/hcloudCatalogue";
import { host } from "./meshFixtures";

const NOW = new Date("2026-03-01T00:00:00Z");

/** The catalogue the mock runtime answers with: today's types and locations. */
const TODAY = catalogueOf(
  serverTypesResult() as unknown as ServerTypesResult,
  locationsResult() as unknown as LocationsResult,
);

const cloudHost = (serverType: string, location: string, name = "anchor"): HostConfig =>
  host({ name, hcloud: { serverType, location, image: "debian-12", ipv4: true } });

const existingHost = (name: string): HostConfig =>
  host({
    name,
    existing: {
      address: "192.0.2.10",
      user: "root",
      port: 22,
      hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKcfp+1S8cYF6Qy1B16GvSNtOm1B2oXyoh0BB/Ghtl3x",
    },
  });

describe("the mock catalogue", () => {
  it("lists today's types and locations, and none of the CX Gen2 types removed at the end of 2025", () => {
    const names = TODAY.serverTypes.map((t) => t.name);
    expect(names).toEqual(
      expect.arrayContaining(["cx23", "cx33", "cx43", "cx53", "cpx11", "cax41", "ccx13"]),
    );
    expect(names).not.toEqual(expect.arrayContaining(["cx22"]));
    expect([...TODAY.locations].sort()).toEqual(["ash", "fsn1", "hel1", "hil", "nbg1", "sin"]);
  });
});

describe.each([
  { what: "cx23 in nbg1", hosts: [cloudHost("cx23", "nbg1")] },
  { what: "cax11 (arm) in hel1", hosts: [cloudHost("cax11", "hel1")] },
  { what: "cpx31 in sin", hosts: [cloudHost("cpx31", "sin")] },
  { what: "ccx13 in ash", hosts: [cloudHost("ccx13", "ash")] },
  { what: "existing hosts (not checked)", hosts: [existingHost("old")] },
])("accepts $what", ({ hosts }) => {
  it("without errors or warnings", () => {
    expect(catalogueErrors(hosts, TODAY, NOW)).toEqual([]);
    expect(catalogueWarnings(hosts, TODAY, NOW)).toEqual([]);
  });
});

describe.each([
  {
    what: "a removed CX Gen2 type",
    hosts: [cloudHost("cx22", "nbg1")],
    errors: [
      {
        path: "swarm:hosts[0].hcloud.serverType",
        message: expect.stringMatching(
          /^"cx22" is not a Hetzner server type .*: use one offered in nbg1: cx23, /,
        ),
      },
    ],
  },
  {
    what: "an unknown location, with every location listed",
    hosts: [cloudHost("cx23", "nbg2")],
    errors: [
      {
        path: "swarm:hosts[0].hcloud.location",
        message: '"nbg2" is not a Hetzner location: use one of ash, fsn1, hel1, hil, nbg1, sin',
      },
    ],
  },
  {
    what: "both names wrong, both reported",
    hosts: [cloudHost("cx11", "us-east")],
    errors: [
      {
        path: "swarm:hosts[0].hcloud.location",
        message: expect.stringContaining('"us-east" is not a Hetzner location'),
      },
      {
        path: "swarm:hosts[0].hcloud.serverType",
        message: expect.stringMatching(
          /^"cx11" is not a Hetzner server type .*: use one of cx23, cx33, cx43, cx53, cax11, /,
        ),
      },
    ],
  },
  {
    what: "a type not offered in the location (arm in the US)",
    hosts: [cloudHost("cax21", "ash")],
    errors: [
      {
        path: "swarm:hosts[0].hcloud.serverType",
        message:
          "cax21 is not offered in ash: use a type offered there (ccx13, ccx23, ccx33, ccx43, ccx53, ccx63, cpx11, cpx21, cpx31, cpx41, cpx51) " +
          "or move the host to a location that offers cax21 (fsn1, hel1, nbg1)",
      },
    ],
  },
  {
    what: "the third host, by its index, among good ones",
    hosts: [cloudHost("cx23", "nbg1", "a"), existingHost("b"), cloudHost("CX23", "fsn1", "c")],
    errors: [{ path: "swarm:hosts[2].hcloud.serverType", message: expect.stringContaining('"CX23"') }],
  },
])("rejects $what", ({ hosts, errors }) => {
  it("with the config path and the valid names", () => {
    expect(catalogueErrors(hosts, TODAY, NOW)).toEqual(errors);
  });
});

/** A small catalogue with deprecations, as the API reports them per location. */
const AGEING: CloudCatalogue = {
  locations: ["fsn1", "nbg1"],
  serverTypes: [
    {
      name: "cx23",
      architecture: "x86",
      offers: [
        { location: "fsn1", available: true, deprecated: false },
        { location: "nbg1", available: false, deprecated: false },
      ],
    },
    {
      name: "cpx21",
      architecture: "x86",
      offers: [
        { location: "fsn1", available: true, deprecated: true, unavailableAfter: "2026-01-01T00:00:00Z" },
        { location: "nbg1", available: true, deprecated: true, unavailableAfter: "2026-09-01T00:00:00Z" },
      ],
    },
  ],
};

describe.each([
  {
    what: "a type past its removal date in the location",
    hosts: [cloudHost("cpx21", "fsn1")],
    errors: [
      {
        path: "swarm:hosts[0].hcloud.serverType",
        message:
          "cpx21 can no longer be created in fsn1 (unavailable after 2026-01-01T00:00:00Z): " +
          "use a type offered there (cx23)",
      },
    ],
    warnings: [],
  },
  {
    what: "a deprecated type before its removal date",
    hosts: [cloudHost("cpx21", "nbg1")],
    errors: [],
    warnings: [
      {
        path: "swarm:hosts[0].hcloud.serverType",
        message: expect.stringMatching(
          /^cpx21 is deprecated in nbg1: new servers can still be created until 2026-09-01T00:00:00Z, but plan the move/,
        ),
      },
    ],
  },
  {
    what: "a type out of stock in the location",
    hosts: [cloudHost("cx23", "nbg1")],
    errors: [],
    warnings: [
      {
        path: "swarm:hosts[0].hcloud.serverType",
        message: expect.stringContaining("cx23 is temporarily out of stock in nbg1"),
      },
    ],
  },
])("ageing types: $what", ({ hosts, errors, warnings }) => {
  it("is an error only when no server can be created", () => {
    expect(catalogueErrors(hosts, AGEING, NOW)).toEqual(errors);
    expect(catalogueWarnings(hosts, AGEING, NOW)).toEqual(warnings);
  });
});

describe("every catalogue error leads to a config that passes", () => {
  /** The lists of names a message offers, in order: after ": " or "one of ", or in parentheses. */
  const offered = (message: string): string[][] =>
    [...message.matchAll(/(?:: |one of |\()([a-z0-9]+(?:, [a-z0-9]+)*)(?=\)|$)/g)].map((m) =>
      m[1].split(", "),
    );

  it.each([
    ["cx22", "nbg1"],
    ["cx23", "nbg2"],
    ["cx11", "us-east"],
    ["cax21", "ash"],
    ["ccx99", "sin"],
  ])("%s in %s", (serverType, location) => {
    let hosts = [cloudHost(serverType, location)];
    // Fix the location first, then the type, each time with the first name offered.
    for (let round = 0; round < 2; round++) {
      const errors = catalogueErrors(hosts, TODAY, NOW);
      if (errors.length === 0) {
        break;
      }
      const first = errors[0];
      const name = offered(first.message)[0][0];
      const cloud = hosts[0].hcloud!;
      hosts = [
        cloudHost(
          first.path.endsWith(".serverType") ? name : cloud.serverType,
          first.path.endsWith(".location") ? name : cloud.location,
        ),
      ];
    }
    expect(catalogueErrors(hosts, TODAY, NOW)).toEqual([]);
  });

  it("a type not offered in its location passes with either fix the message offers", () => {
    const [error] = catalogueErrors([cloudHost("cax21", "ash")], TODAY, NOW);
    const [types, locations] = offered(error.message);
    expect(catalogueErrors([cloudHost(types[0], "ash")], TODAY, NOW)).toEqual([]);
    expect(catalogueErrors([cloudHost("cax21", locations[0])], TODAY, NOW)).toEqual([]);
  });
});

describe("catalogueOf", () => {
  it("reads the provider's shapes, an empty removal date meaning none", () => {
    const catalogue = catalogueOf(
      {
        serverTypes: [
          {
            name: "cx23",
            architecture: "x86",
            locations: [
              { name: "fsn1", available: true, isDeprecated: false, unavailableAfter: "" },
              { name: "nbg1", available: true, isDeprecated: true, unavailableAfter: "2026-06-01T00:00:00Z" },
            ],
          },
        ],
      },
      { locations: [{ name: "fsn1" }, { name: "nbg1" }] },
    );
    expect(catalogue).toEqual({
      locations: ["fsn1", "nbg1"],
      serverTypes: [
        {
          name: "cx23",
          architecture: "x86",
          offers: [
            { location: "fsn1", available: true, deprecated: false },
            { location: "nbg1", available: true, deprecated: true, unavailableAfter: "2026-06-01T00:00:00Z" },
          ],
        },
      ],
    });
  });
});

// Expected values from `ssh-keygen -E md5 -lf key.pub`.
describe.each([
  {
    what: "the example admin key (Ed25519)",
    line: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF6NX6jWXUNMpFM8Ffg3wvvMI/9ABsWk6Bt3gKyAdPGr admin@swarm",
    fingerprint: "f3:80:00:6d:87:4a:73:03:b2:6a:1e:1b:6b:ae:a4:f7",
  },
  {
    what: "the same key without its comment and with extra blanks",
    line: "  ssh-ed25519   AAAAC3NzaC1lZDI1NTE5AAAAIF6NX6jWXUNMpFM8Ffg3wvvMI/9ABsWk6Bt3gKyAdPGr\n",
    fingerprint: "f3:80:00:6d:87:4a:73:03:b2:6a:1e:1b:6b:ae:a4:f7",
  },
  {
    what: "an RSA key",
    line:
      "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCsRfF9UzwZ0dcdcM+iqdxId4AN+d1SDoFQV/ZngCTbNneO4W0EWwhMOXeKZski5ELiUlQqOZMBcLIx6VOhlhkH8flPFXl5SOSmZkjGSVwqi7G2XMSw6a+0Nc3xiqkVDXVUuuNKvKjHbdU/3YqMeFAGXLOQSlP+r4MwP5aacFgS7yhUbLNWdHeXsn/S6hh4ObFqfBoiOvNgpDTGSW6KHYa4ySHDUol6SGH4AJ6shUcMuL9v7nYqhWPMGhD/UOQLoddSVeuMrigg9Uzg/2/TVn3rbWqzvChnqM6fvemKWo77iOkbJsX/zL8AhrUpq2SHM+obV4cRgwlYs/oVgvJb1MPT" +
      " ops@example",
    fingerprint: "dc:ff:af:19:d7:ea:9b:62:59:20:64:37:48:15:3a:82",
  },
])("sshKeyFingerprint of $what", ({ line, fingerprint }) => {
  it("is the colon-separated MD5 of the key blob, as Hetzner shows it", () => {
    expect(sshKeyFingerprint(line)).toBe(fingerprint);
  });
});

const FINGERPRINT = "f3:80:00:6d:87:4a:73:03:b2:6a:1e:1b:6b:ae:a4:f7";
const OWN = { fleet: "swarm", stack: "staging" };
const uploaded = (labels: Record<string, string>, fingerprint = FINGERPRINT): UploadedSshKey => ({
  id: 4711,
  name: "admin",
  fingerprint,
  labels,
});

describe.each([
  { what: "no key uploaded", keys: [], choice: { kind: "own" } },
  { what: "only keys with other fingerprints", keys: [uploaded({}, "00:11:22")], choice: { kind: "own" } },
  {
    what: "this stack's own key (it stays managed: reusing it would delete it)",
    keys: [uploaded(OWN)],
    choice: { kind: "own" },
  },
  {
    what: "this stack's own key with more labels added by hand",
    keys: [uploaded({ ...OWN, team: "ops" })],
    choice: { kind: "own" },
  },
  {
    what: "fingerprints compared whatever their case",
    keys: [uploaded(OWN, FINGERPRINT.toUpperCase())],
    choice: { kind: "own" },
  },
  {
    what: "another stack's key",
    keys: [uploaded({ fleet: "swarm", stack: "prod" })],
    choice: { kind: "reuse", id: "4711", name: "admin", owner: "stack prod" },
  },
  {
    what: "a key uploaded by hand",
    keys: [uploaded({})],
    choice: { kind: "reuse", id: "4711", name: "admin", owner: "someone else (no swarm stack labels)" },
  },
  {
    what: "a key of another fleet with the same stack name",
    keys: [uploaded({ fleet: "other", stack: "staging" })],
    choice: { kind: "reuse", id: "4711", name: "admin", owner: "someone else (no swarm stack labels)" },
  },
])("chooseAdminKey with $what", ({ keys, choice }) => {
  it(`decides ${choice.kind}`, () => {
    expect(chooseAdminKey(keys, FINGERPRINT, OWN)).toEqual(choice);
  });
});

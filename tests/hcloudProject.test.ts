/**
 * The program's questions to the Hetzner project, under the mock runtime:
 * the catalogue check fails the run with every error at once, and the admin
 * key is this stack's own resource or another stack's key by its ID.
 */
import * as pulumi from "@pulumi/pulumi";
import { adminSshKey, requireCloudCatalogue } from "../components/hcloudProject";
import { sshKeyFingerprint } from "../config/cloud";
import { FleetConfig } from "../config/types";
import { installMocks, MockFleet, promiseOf, settle } from "../offline/mockRuntime";
import { defineFleet } from "../program";
import { fleet, host, HUB_FLEET } from "./meshFixtures";

const SSH_KEY_TYPE = "hcloud:index/sshKey:SshKey";
const PUBLIC_KEY = HUB_FLEET.admin.sshPublicKey;

/** What an Output settles to, a failure included and marked handled (`promiseOf` only sees values). */
async function outcome<T>(output: pulumi.Output<T>): Promise<{ value?: T; error?: unknown }> {
  let failure: { error: unknown } | undefined;
  const value = await promiseOf(
    pulumi.recover(output, (error: unknown) => {
      failure = { error };
      return undefined as T;
    }),
  );
  return failure ?? { value };
}

/** The invoke tokens the program asked for. */
function recordInvokes(mocks: MockFleet): string[] {
  const tokens: string[] = [];
  const call = mocks.call.bind(mocks);
  jest.spyOn(mocks, "call").mockImplementation((args) => {
    tokens.push(args.token);
    return call(args);
  });
  return tokens;
}

describe("requireCloudCatalogue", () => {
  afterEach(() => jest.restoreAllMocks());

  it("resolves for the hub fleet's current types and locations", async () => {
    await installMocks();
    expect(await outcome(requireCloudCatalogue(HUB_FLEET))).toEqual({ value: undefined });
  });

  it("fails the run with a RunError after logging every error with its path", async () => {
    await installMocks();
    const logged: string[] = [];
    jest.spyOn(pulumi.log, "error").mockImplementation(async (message: string) => {
      logged.push(message);
    });
    const config: FleetConfig = fleet([
      host({ name: "a", hcloud: { serverType: "cx22", location: "nbg1", image: "debian-12", ipv4: true } }),
      host({ name: "b", hcloud: { serverType: "cx23", location: "fra1", image: "debian-12", ipv4: true } }),
    ]);
    const { error } = await outcome(requireCloudCatalogue(config));
    expect(error).toBeInstanceOf(pulumi.RunError);
    expect((error as Error).message).toMatch(/^2 Hetzner server types or locations the API would refuse/);
    expect(logged).toEqual([
      expect.stringMatching(
        /^swarm:hosts\[0\]\.hcloud\.serverType: "cx22" is not a Hetzner server type .*: cx23, /,
      ),
      expect.stringMatching(
        /^swarm:hosts\[1\]\.hcloud\.location: "fra1" is not a Hetzner location: use one of ash, /,
      ),
    ]);
  });
});

describe("adminSshKey", () => {
  afterEach(() => jest.restoreAllMocks());

  const uploadedBy = (labels: Record<string, string>) => ({
    id: 4711,
    name: "admin-key",
    fingerprint: sshKeyFingerprint(PUBLIC_KEY),
    publicKey: PUBLIC_KEY,
    labels,
  });

  it("creates this stack's own key when the project has none", async () => {
    const mocks = await installMocks(undefined, "staging");
    const key = adminSshKey("admin", { publicKey: PUBLIC_KEY, labels: { fleet: "swarm", stack: "staging" } });
    const id = await promiseOf(key.id);
    const [created] = mocks.ofType(SSH_KEY_TYPE);
    expect(created.name).toBe("admin");
    expect(created.plain).toEqual({ publicKey: PUBLIC_KEY, labels: { fleet: "swarm", stack: "staging" } });
    expect(id).toBe(created.id);
  });

  it("keeps managing the key this stack created, found by the lookup on the next run", async () => {
    const mocks = await installMocks(undefined, "staging");
    mocks.hcloudSshKeys.push(uploadedBy({ fleet: "swarm", stack: "staging" }));
    const key = adminSshKey("admin", { publicKey: PUBLIC_KEY, labels: { fleet: "swarm", stack: "staging" } });
    await promiseOf(key.id);
    expect(mocks.ofType(SSH_KEY_TYPE).map((r) => r.name)).toEqual(["admin"]);
  });

  it.each([
    ["another stack", { fleet: "swarm", stack: "prod" }],
    ["a person, by hand", {}],
  ])(
    "uses a key with the same fingerprint uploaded by %s by its ID, and creates none",
    async (_who, labels) => {
      const mocks = await installMocks(undefined, "staging");
      mocks.hcloudSshKeys.push(uploadedBy(labels), { ...uploadedBy({}), id: 99, fingerprint: "00:01" });
      const info = jest.spyOn(pulumi.log, "info").mockResolvedValue();
      const key = adminSshKey("admin", {
        publicKey: PUBLIC_KEY,
        labels: { fleet: "swarm", stack: "staging" },
      });
      expect(await promiseOf(key.id)).toBe("4711");
      await settle();
      expect(mocks.ofType(SSH_KEY_TYPE)).toEqual([]);
      expect(info).toHaveBeenCalledWith(
        expect.stringContaining('already in the Hetzner project as "admin-key" (id 4711'),
      );
    },
  );

  it("creates no key and hands out no ID while the cloud check fails", async () => {
    const mocks = await installMocks(undefined, "staging");
    const failed = pulumi.output(Promise.reject(new pulumi.RunError("bad server type")));
    const key = adminSshKey("admin", {
      publicKey: PUBLIC_KEY,
      labels: { fleet: "swarm", stack: "staging" },
      after: failed,
    });
    const { error } = await outcome(key.id);
    expect((error as Error).message).toBe("bad server type");
    await settle();
    expect(mocks.ofType(SSH_KEY_TYPE)).toEqual([]);
  });
});

describe("defineFleet asks the Hetzner project once per stack", () => {
  afterEach(() => jest.restoreAllMocks());

  it("one lookup each of server types, locations and SSH keys, for three cloud hosts", async () => {
    const mocks = await installMocks(undefined, "prod");
    const tokens = recordInvokes(mocks);
    await defineFleet(HUB_FLEET, { sshPrivateKey: pulumi.secret("(test)") });
    await settle();
    expect(tokens.sort()).toEqual([
      "hcloud:index/getLocations:getLocations",
      "hcloud:index/getServerTypes:getServerTypes",
      "hcloud:index/getSshKeys:getSshKeys",
    ]);
    // Every server waits for the check through the admin key's ID.
    expect(mocks.ofType(SSH_KEY_TYPE).map((r) => r.name)).toEqual(["admin"]);
    const keyId = mocks.named("admin").id;
    for (const server of mocks.ofType("hcloud:index/server:Server")) {
      expect(server.plain.sshKeys).toEqual([keyId]);
    }
  });

  it("none for a fleet without cloud hosts", async () => {
    const mocks = await installMocks(undefined, "lab");
    const tokens = recordInvokes(mocks);
    const existingOnly = fleet(
      HUB_FLEET.hosts
        .filter((h) => h.existing !== undefined)
        .concat(
          HUB_FLEET.hosts
            .filter((h) => h.existing !== undefined)
            .map((h) => ({ ...h, name: `${h.name}-2`, existing: { ...h.existing!, address: "192.0.2.99" } })),
        ),
    );
    expect(existingOnly.hosts.length).toBe(2);
    await defineFleet(existingOnly, { sshPrivateKey: pulumi.secret("(test)") });
    await settle();
    expect(tokens).toEqual([]);
    expect(mocks.ofType(SSH_KEY_TYPE)).toEqual([]);
  });
});

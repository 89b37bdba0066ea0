/**
 * A step's text (script, owner hash, teardown) given plain or as one Output:
 * the command registers the same inputs either way.
 */
import * as pulumi from "@pulumi/pulumi";
import { hashedText, hostCommand, keyText, StepText } from "../components/remote";
import { installMocks, promiseOf, settle } from "../offline/mockRuntime";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { sha256 } from "../templates/shell";

const connection = {
  host: "203.0.113.3",
  port: 22,
  user: "admin",
  privateKey: "(test key)",
  hostKey: fixtureHostKey("hetzner-native"),
  dialErrorLimit: 40,
  perDialTimeout: 15,
};

describe("a step's text", () => {
  test("hashes its script, or its script and the public key it installs", async () => {
    expect(hashedText("echo hi", "echo bye")).toEqual({
      script: "echo hi",
      ownerHash: sha256("echo hi"),
      teardown: "echo bye",
    });
    expect(hashedText("echo hi")).toEqual({ script: "echo hi", ownerHash: sha256("echo hi") });
    expect(await promiseOf(hashedText(pulumi.output("echo hi"), "echo bye"))).toEqual(
      hashedText("echo hi", "echo bye"),
    );
    expect(await promiseOf(keyText("install key", pulumi.output("ssh-ed25519 AAAA"), "rm key"))).toEqual({
      script: "install key",
      ownerHash: sha256("install key\nssh-ed25519 AAAA"),
      teardown: "rm key",
    });
  });

  test.each([
    ["with a teardown", { script: "echo hi", ownerHash: "h1", teardown: "echo bye" }],
    ["without one", { script: "echo hi", ownerHash: "h1" }],
  ])("registers the same command plain and as an Output, %s", async (_, text: StepText) => {
    const mocks = await installMocks();
    const repairs = { "as-output": 2, plain: 2 };
    hostCommand("plain", { connection, user: "admin", text, repairs }, {});
    hostCommand("as-output", { connection, user: "admin", text: pulumi.output(text), repairs }, {});
    await settle();
    const inputs = (name: string) => {
      const { create, delete: remove, triggers } = mocks.named(name).plain;
      return JSON.parse(JSON.stringify({ create, remove, triggers }).replaceAll(name, "NAME")) as unknown;
    };
    expect(inputs("as-output")).toEqual(inputs("plain"));
    expect(inputs("plain")).toMatchObject({ triggers: ["h1 repair 2"] });
  });
});

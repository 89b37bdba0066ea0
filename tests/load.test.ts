import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import {
  ConfigValidationError,
  StackFileError,
  formatErrors,
  readRuntimeConfig,
  readStackFile,
} from "../config/load";
import { main } from "../scripts/validate";

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "swarm-load-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function stackFile(name: string, text: string): string {
  const file = join(dir, `Pulumi.${name}.yaml`);
  writeFileSync(file, text);
  return file;
}

const SECURE_STACK = `encryptionsalt: v1:abcdefghijk=:v1:lmnop:qrstuv==
config:
  hcloud:token:
    secure: v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBB
  swarm:sshPrivateKey:
    secure: v1:CCCCCCCCCCCCCCCC:DDDDDDDDDDDDDDDDDDDDDDDD
  swarm:mesh:
    cidr: 10.8.0.0/24
    listenPort: 51820
  swarm:hosts:
    - name: a
      existing: {address: 192.0.2.1}
`;

describe("readStackFile", () => {
  it("keeps the swarm: keys without their prefix and lists secure values without decrypting them", () => {
    const { raw, secretKeys } = readStackFile(stackFile("dev", SECURE_STACK));
    expect(raw).toEqual({
      sshPrivateKey: { secure: "v1:CCCCCCCCCCCCCCCC:DDDDDDDDDDDDDDDDDDDDDDDD" },
      mesh: { cidr: "10.8.0.0/24", listenPort: 51820 },
      hosts: [{ name: "a", existing: { address: "192.0.2.1" } }],
    });
    expect(secretKeys).toEqual(["sshPrivateKey"]);
  });

  it("says which file is missing", () => {
    const file = join(dir, "Pulumi.nope.yaml");
    expect(() => readStackFile(file)).toThrow(StackFileError);
    expect(() => readStackFile(file)).toThrow(`${file} does not exist`);
  });

  it("says when the file is not YAML", () => {
    expect(() => readStackFile(stackFile("bad", "config: [unclosed\n"))).toThrow(/is not valid YAML/);
  });

  it("refuses a config section that is not a mapping", () => {
    expect(() => readStackFile(stackFile("list", "config:\n  - a\n"))).toThrow(/config must be a mapping/);
  });

  it("reads an empty file as no config", () => {
    expect(readStackFile(stackFile("empty", ""))).toEqual({ raw: {}, secretKeys: [] });
  });
});

describe("readRuntimeConfig", () => {
  afterEach(() => pulumi.runtime.setAllConfig({}));

  it("reads structured keys as objects and passes other swarm: keys on by name only", () => {
    pulumi.runtime.setAllConfig(
      {
        "swarm:hosts": JSON.stringify([{ name: "a", existing: { address: "192.0.2.1" } }]),
        "swarm:mesh": JSON.stringify({ cidr: "10.8.0.0/24" }),
        "swarm:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----",
        "swarm:colour": "blue",
        "hcloud:token": "not-a-swarm-key",
      },
      ["swarm:sshPrivateKey"],
    );
    const raw = readRuntimeConfig();
    expect(raw).toEqual({
      hosts: [{ name: "a", existing: { address: "192.0.2.1" } }],
      mesh: { cidr: "10.8.0.0/24" },
      sshPrivateKey: null,
      colour: null,
    });
    expect(JSON.stringify(raw)).not.toContain("PRIVATE KEY");
  });
});

describe("formatErrors and ConfigValidationError", () => {
  const errors = [
    { path: "swarm:hosts[0].name", message: "is required: give the host a name" },
    { path: "swarm:mesh.mtu", message: "100 is out of range: use a value from 1280 to 9000" },
  ];

  it("prints one path: message line per error", () => {
    expect(formatErrors(errors)).toEqual([
      "swarm:hosts[0].name: is required: give the host a name",
      "swarm:mesh.mtu: 100 is out of range: use a value from 1280 to 9000",
    ]);
  });

  it("lists every error in the thrown message", () => {
    const error = new ConfigValidationError(errors);
    expect(error).toBeInstanceOf(Error);
    expect(error.errors).toBe(errors);
    expect(error.message).toBe(
      "the swarm stack configuration has 2 errors:\n" +
        "  swarm:hosts[0].name: is required: give the host a name\n" +
        "  swarm:mesh.mtu: 100 is out of range: use a value from 1280 to 9000",
    );
  });
});

describe("npm run validate", () => {
  function run(argv: string[], where: string) {
    const out: string[] = [];
    const err: string[] = [];
    const code = main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) }, where);
    return { code, out, err };
  }

  it("prints a one-line summary for the production stack and exits 0", () => {
    expect(run(["prod"], join(__dirname, ".."))).toEqual({
      code: 0,
      out: ["Pulumi.prod.yaml: 3 hosts, mesh 10.8.0.0/24 (hub anchor), 1 export, 2 mounts, 1 sync: valid"],
      err: [],
    });
  });

  it("prints one path: message line per error and exits 1", () => {
    stackFile(
      "broken",
      `config:
  swarm:hosts:
    - name: Anchor
      hcloud: {serverType: cx23, location: nbg1}
  swarm:mesh:
    cidr: 10.8.0.1/24
  swarm:admin:
    sshPublicKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF6NX6jWXUNMpFM8Ffg3wvvMI/9ABsWk6Bt3gKyAdPGr admin
    sshSourceCidrs: [0.0.0.0/0]
`,
    );
    expect(run(["broken"], dir)).toEqual({
      code: 1,
      out: [],
      err: [
        'swarm:hosts[0].name: "Anchor" is not a valid host name: use lower-case letters, digits and -, starting with a letter, at most 63 characters',
        "swarm:mesh.cidr: 10.8.0.1/24 has host bits set: did you mean 10.8.0.0/24?",
        "swarm:admin.sshSourceCidrs[0]: 0.0.0.0/0 opens SSH to the whole internet: list only the addresses the admin connects from, e.g. 203.0.113.7/32",
      ],
    });
  });

  it("names a missing stack file and exits 1", () => {
    expect(run(["staging"], dir)).toEqual({
      code: 1,
      out: [],
      err: ["Pulumi.staging.yaml does not exist: create it, or name an existing stack (Pulumi.<stack>.yaml)"],
    });
  });

  it("prints usage without a stack", () => {
    expect(run([], dir).code).toBe(2);
  });
});

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import {
  ConfigValidationError,
  StackFileError,
  StackLoadError,
  formatErrors,
  loadStack,
  pinHostKeys,
  readRuntimeConfig,
  readStackFile,
} from "../config/load";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { USAGE, main } from "../scripts/validate";

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

  it("lists every key outside swarm: as written, for the namespace check", () => {
    const file = stackFile("typo", `${SECURE_STACK}  swram:syncs: []\n  Swarm:mounts: []\n`);
    expect(readStackFile(file).otherKeys).toEqual(["Swarm:mounts", "hcloud:token", "swram:syncs"]);
  });

  it("says which file is missing", () => {
    const file = join(dir, "Pulumi.nope.yaml");
    expect(() => readStackFile(file)).toThrow(StackFileError);
    expect(() => readStackFile(file)).toThrow(`${file} does not exist`);
  });

  it("says when the file is not YAML, with the line", () => {
    const file = stackFile("bad", "config: [unclosed\n");
    expect(() => readStackFile(file)).toThrow(new RegExp(`^${file}:2: is not valid YAML: Flow sequence`));
  });

  /** The message readStackFile throws for `text`, with the file's directory left out. */
  function yamlError(text: string): string {
    try {
      readStackFile(stackFile("broken", text));
    } catch (err) {
      expect(err).toBeInstanceOf(StackFileError);
      return (err as Error).message.replaceAll(`${dir}/`, "");
    }
    throw new Error("no error");
  }

  describe.each([
    {
      what: "a key twice in one list entry",
      text: "config:\n  swarm:mesh:\n    cidr: 10.8.0.0/24\n  swarm:hosts:\n    - name: a\n      existing: {address: 192.0.2.1}\n      name: b\n",
      message:
        'Pulumi.broken.yaml:7: in swarm:hosts[0]: name appears twice in one mapping (first on line 5), which Pulumi refuses: keep one, or, if they belong to two list entries, start the second entry with "- "',
    },
    {
      what: "a key twice in a nested mapping",
      text: "config:\n  swarm:health:\n    gate: true\n  swarm:exports:\n    - name: a\n      pool:\n        name: tank\n        name: data\n",
      message:
        "Pulumi.broken.yaml:8: in swarm:exports[0].pool: name appears twice in one mapping (first on line 7)",
    },
    {
      what: "a swarm: key twice",
      text: "config:\n  swarm:mesh:\n    cidr: 10.8.0.0/24\n  hcloud:token: x\n  swarm:mesh:\n    mtu: 1400\n",
      message:
        "Pulumi.broken.yaml:5: swarm:mesh is set twice (first on line 2), which Pulumi refuses: merge the two into one swarm:mesh",
    },
    {
      what: "config twice",
      text: "config:\n  swarm:mesh: {}\nconfig:\n  swarm:hosts: []\n",
      message:
        "Pulumi.broken.yaml:3: config is set twice (first on line 1), which Pulumi refuses: merge the two into one config",
    },
    {
      what: "two documents",
      text: "config:\n  swarm:mesh:\n    cidr: 10.8.0.0/24\n---\nconfig:\n  swarm:hosts: []\n",
      message:
        "Pulumi.broken.yaml:4: a second YAML document starts here: a stack file is one document, and Pulumi reads only the first, ignoring what follows; remove the --- line and merge what follows into the config: section above",
    },
    {
      what: "two documents, the first opened with ---",
      text: "---\nconfig:\n  swarm:mesh: {}\n---\n# staging\nconfig: {}\n",
      message: "Pulumi.broken.yaml:4: a second YAML document starts here",
    },
    {
      what: "a tab inside a swarm: key",
      text: "config:\n  swarm:mesh:\n    cidr: 10.8.0.0/24\n  swarm:hosts:\n    - name: a\n\t  existing: {}\n",
      message: "Pulumi.broken.yaml:6: in swarm:hosts: is not valid YAML: Tabs are not allowed as indentation",
    },
  ])("reports $what", ({ text, message }) => {
    it("with the file, the line and the swarm: key", () => {
      expect(yamlError(text)).toContain(message);
    });

    it("and not the YAML library's advice", () => {
      expect(yamlError(text)).not.toMatch(/parseAllDocuments|at line \d+, column/);
    });
  });

  it("reports every YAML error at once, one line each", () => {
    const error = yamlError(
      "config:\n  swarm:mesh: {a: 1, a: 2}\n  swarm:hosts:\n    - {name: a, name: b}\n---\nx: 1\n",
    );
    expect(error.split("\n")).toEqual([
      expect.stringMatching(/^Pulumi.broken.yaml:2: in swarm:mesh: a appears twice/),
      expect.stringMatching(/^Pulumi.broken.yaml:4: in swarm:hosts\[0\]: name appears twice/),
      expect.stringMatching(/^Pulumi.broken.yaml:5: a second YAML document/),
    ]);
  });

  it("reads a file with a document end marker as one document", () => {
    expect(readStackFile(stackFile("end", "config:\n  swarm:mesh: {}\n...\n")).raw).toEqual({ mesh: {} });
  });

  it("refuses a config section that is not a mapping", () => {
    expect(() => readStackFile(stackFile("list", "config:\n  - a\n"))).toThrow(/config must be a mapping/);
  });

  it("reads an empty file as no config", () => {
    expect(readStackFile(stackFile("empty", ""))).toEqual({ raw: {}, secretKeys: [], otherKeys: [] });
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

  it("prints the example stack's placeholders as warnings and a one-line summary, and exits 0", () => {
    expect(run(["prod"], join(__dirname, ".."))).toEqual({
      code: 0,
      out: [
        "Pulumi.prod.yaml: 3 hosts, mesh 10.8.0.0/24 (hub anchor), 1 export, 1 replica, 2 mounts, 1 sync: valid, with the 2 warnings above to fix before deploying",
      ],
      err: [
        expect.stringMatching(/^warning: swarm:admin.sshPublicKey: is the example key/),
        expect.stringMatching(
          /^warning: swarm:admin.sshSourceCidrs\[0\]: 198.51.100.0\/24 is in the documentation range/,
        ),
      ],
    });
  });

  it("prints a one-line summary and nothing else for a stack without placeholders", () => {
    stackFile(
      "home",
      `config:
  swarm:hosts:
    - name: a
      existing: {address: 192.168.1.10, hostKey: ${fixtureHostKey("a")}}
  swarm:mesh:
    cidr: 10.8.0.0/24
`,
    );
    expect(run(["home"], dir)).toEqual({
      code: 0,
      out: ["Pulumi.home.yaml: 1 host, mesh 10.8.0.0/24 (full), 0 exports, 0 mounts, 0 syncs: valid"],
      err: [],
    });
  });

  it("refuses a misspelt namespace and a private key in plain text, which the stack file alone shows", () => {
    stackFile(
      "slip",
      `config:
  swarm:hosts:
    - name: a
      existing: {address: 192.168.1.10, hostKey: ${fixtureHostKey("a")}}
  swarm:mesh:
    cidr: 10.8.0.0/24
  swram:syncs: []
  swarm:sshPrivateKey: |
    -----BEGIN OPENSSH PRIVATE KEY-----
    b3BlbnNzaC1rZXktdjE=
    -----END OPENSSH PRIVATE KEY-----
`,
    );
    const { code, out, err } = run(["slip"], dir);
    expect({ code, out }).toEqual({ code: 1, out: [] });
    expect(err).toEqual([
      "swram:syncs: is not in the swarm: namespace, so the program never reads it: rename it to swarm:syncs",
      expect.stringMatching(/^swarm:sshPrivateKey: is written in plain text in the stack file/),
    ]);
  });

  it("prints each YAML error on its own line, naming the file without its directory", () => {
    stackFile("twice", "config:\n  swarm:mesh: {}\n  swarm:mesh: {}\n---\n");
    expect(run(["twice"], dir)).toEqual({
      code: 1,
      out: [],
      err: [
        "Pulumi.twice.yaml:3: swarm:mesh is set twice (first on line 2), which Pulumi refuses: merge the two into one swarm:mesh",
        expect.stringMatching(/^Pulumi.twice.yaml:4: a second YAML document starts here/),
      ],
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

  it.each([
    [[], "name the stack"],
    [["prod", "staging"], "unexpected argument staging"],
    [["--strict", "prod"], "Unknown option '--strict'"],
  ])("answers %j with what is wrong and the usage line, exit 2", (argv, message) => {
    expect(run(argv, dir)).toEqual({ code: 2, out: [], err: [message, USAGE] });
  });
});

describe("loadStack", () => {
  const UNPINNED = `config:
  swarm:hosts:
    - name: a
      existing: {address: 192.168.1.10}
    - name: b
      existing: {address: 192.168.1.11, hostKey: ${fixtureHostKey("b")}}
  swarm:mesh:
    cidr: 10.8.0.0/24
`;

  it("returns the validated config and the placeholder warnings of the example stack", () => {
    const { file, config, warnings } = loadStack("prod", { dir: join(__dirname, "..") });
    expect(file).toBe("Pulumi.prod.yaml");
    expect(config.hosts.map((h) => h.name).sort()).toEqual(["anchor", "hetzner-native", "satellite"]);
    expect(warnings.map((w) => w.path)).toEqual([
      "swarm:admin.sshPublicKey",
      "swarm:admin.sshSourceCidrs[0]",
    ]);
  });

  it("pins host keys only where the stack file has none", () => {
    stackFile("pinned", UNPINNED);
    const asked: string[] = [];
    const { config } = loadStack("pinned", {
      dir,
      pinHostKeys: (address) => {
        asked.push(address);
        return fixtureHostKey(`lab ${address}`);
      },
    });
    expect(asked).toEqual(["192.168.1.10"]);
    expect(config.hosts.map((h) => h.existing?.hostKey)).toEqual([
      fixtureHostKey("lab 192.168.1.10"),
      fixtureHostKey("b"),
    ]);
  });

  it("edits the raw values before validating them", () => {
    stackFile("pinned", UNPINNED);
    const { config } = loadStack("pinned", {
      dir,
      pinHostKeys: fixtureHostKey,
      edit: (raw) => ({ ...raw, mesh: { cidr: "10.9.0.0/24" } }),
    });
    expect(config.mesh.cidr).toBe("10.9.0.0/24");
  });

  it("throws every config error at once, as path: message lines under the file's name", () => {
    stackFile("pinned", UNPINNED.replace("10.8.0.0/24", "10.8.0.1/24"));
    let thrown: unknown;
    try {
      loadStack("pinned", { dir });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(StackLoadError);
    const error = thrown as StackLoadError;
    expect(error.file).toBe("Pulumi.pinned.yaml");
    expect(error.invalidConfig).toBe(true);
    expect(error.problems).toEqual([
      expect.stringMatching(/^swarm:hosts\[0\]\.existing\.hostKey: /),
      "swarm:mesh.cidr: 10.8.0.1/24 has host bits set: did you mean 10.8.0.0/24?",
    ]);
    expect(error.message).toBe(`Pulumi.pinned.yaml is invalid:\n${error.problems.join("\n")}`);
  });

  it("throws the file's YAML errors in the same shape, naming the file without its folder", () => {
    stackFile("twice", "config:\n  swarm:mesh: {}\n  swarm:mesh: {}\n");
    expect(() => loadStack("twice", { dir })).toThrow(
      expect.objectContaining({
        file: "Pulumi.twice.yaml",
        invalidConfig: false,
        problems: [
          "Pulumi.twice.yaml:3: swarm:mesh is set twice (first on line 2), which Pulumi refuses: merge the two into one swarm:mesh",
        ],
      }),
    );
  });

  it("leaves a config without a host list to validation", () => {
    expect(pinHostKeys({ mesh: {} }, fixtureHostKey)).toEqual({ mesh: {} });
  });
});

/**
 * `swarm-drift`: the real program run with bash on a temporary record
 * directory, temporary files, and stand-ins for systemctl, wg and zfs on PATH
 * that answer from tables the test writes and log how they were called.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DRIFT_PROGRAM_PATH, HEALTH_PROGRAM_PATH, renderDriftProgram } from "../templates/health";
import { DriftItem, parseHostReport } from "../scripts/hostReports";
import { runHealth } from "./fixtures/health/fleet";

/** How systemctl answers for a unit: its UnitFileState (as `is-enabled` prints it) and ActiveState. */
interface UnitState {
  readonly enabled: string;
  readonly active: string;
}

interface Host {
  /** Record files by step name: their lines, fields joined with tabs here. */
  readonly records?: Readonly<Record<string, readonly (readonly string[])[]>>;
  /** Files to create below the run's directory (`$ROOT` in records), with mode. */
  readonly files?: Readonly<Record<string, { readonly content: string; readonly mode: number }>>;
  /** Units systemctl knows; any other is not found. */
  readonly units?: Readonly<Record<string, UnitState>>;
  /** `wg show <interface> dump` per interface; an interface not listed is down. */
  readonly wg?: Readonly<Record<string, string>>;
  /**
   * `ip -4 route show dev <interface>` per interface; an interface not listed has the route of the
   * fixtures' mesh subnet that its address gives it.
   */
  readonly routes?: Readonly<Record<string, string>>;
  /** `ip -6 route show dev <interface>`, likewise: by default the route of the fixtures' IPv6 prefix. */
  readonly routes6?: Readonly<Record<string, string>>;
  /** `zfs get -H -o value <property> <dataset>` per "<dataset> <property>"; one not listed cannot be read. */
  readonly zfs?: Readonly<Record<string, string>>;
  /** passwd lines `getent passwd` knows; any other user does not exist. */
  readonly passwd?: readonly string[];
}

const STUBS: Record<string, string> = {
  getent: `#!/bin/bash
printf 'getent %s\\n' "$*" >>"$FAKE/calls"
[ "$1 $2" = "passwd --" ] || exit 64
grep -E "^$3:" "$FAKE/passwd" || exit 2
`,
  systemctl: `#!/bin/bash
printf 'systemctl %s\\n' "$*" >>"$FAKE/calls"
[ "$1 $2 $3" = "show -p LoadState,UnitFileState,ActiveState" ] || exit 64
shift 3
[ "$1" != -- ] || shift
# As systemd 252 prints it: a block per unit in the order given, an empty line between blocks;
# a unit it does not know is not-found, inactive, with no unit file state.
sep=
for unit in "$@"; do
  printf '%s' "$sep"
  sep=$'\\n'
  line=$(awk -F'\\t' -v u="$unit" '$1 == u { print $2 "\\t" $3 }' "$FAKE/units")
  if [ -z "$line" ]; then
    printf 'LoadState=not-found\\nActiveState=inactive\\nUnitFileState=\\n'
  else
    case \${line%%$'\\t'*} in masked | masked-runtime) load=masked ;; *) load=loaded ;; esac
    printf 'LoadState=%s\\nActiveState=%s\\nUnitFileState=%s\\n' "$load" "\${line#*$'\\t'}" "\${line%%$'\\t'*}"
  fi
done
`,
  wg: `#!/bin/bash
printf 'wg %s\\n' "$*" >>"$FAKE/calls"
[ "$1 $3" = "show dump" ] || exit 64
if [ ! -e "$FAKE/wg-$2" ]; then
  echo "Unable to access interface: No such device" >&2
  exit 1
fi
cat "$FAKE/wg-$2"
`,
  ip: `#!/bin/bash
printf 'ip %s\\n' "$*" >>"$FAKE/calls"
case "$1 $2 $3 $4" in
"-4 route show dev")
  if [ -e "$FAKE/routes-$5" ]; then
    cat "$FAKE/routes-$5"
  else
    echo "10.8.0.0/24 proto kernel scope link src 10.8.0.1 "
  fi
  ;;
"-6 route show dev")
  if [ -e "$FAKE/routes6-$5" ]; then
    cat "$FAKE/routes6-$5"
  else
    echo "fd31:a7c9:5e04:8::/64 proto kernel metric 256 pref medium"
  fi
  ;;
*) exit 64 ;;
esac
`,
  zfs: `#!/bin/bash
printf 'zfs %s\\n' "$*" >>"$FAKE/calls"
[ "$1 $2 $3 $4" = "get -H -o value" ] || exit 64
value=$(awk -F'\\t' -v d="$6" -v p="$5" '$1 == d && $2 == p { print $3; found = 1 } END { exit !found }' "$FAKE/zfs") || {
  echo "cannot open '$6': dataset does not exist" >&2
  exit 1
}
echo "$value"
`,
};

let bin: string;
beforeAll(() => {
  bin = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-drift-bin-"));
  for (const [name, text] of Object.entries(STUBS)) {
    fs.writeFileSync(path.join(bin, name), text, { mode: 0o755 });
  }
  fs.writeFileSync(path.join(bin, "swarm-drift"), renderDriftProgram(), { mode: 0o755 });
});
afterAll(() => fs.rmSync(bin, { recursive: true, force: true }));

interface DriftRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Output lines split into their four fields. */
  readonly items: string[][];
  /** Every call of the stand-ins. */
  readonly calls: string[];
  readonly root: string;
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** Runs swarm-drift on `host`; `$ROOT` in a record field is the run's directory. */
function runDrift(
  host: Host,
  opts: { recordsDir?: (root: string) => string; env?: Readonly<Record<string, string>> } = {},
): DriftRun {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-drift-"));
  const fake = path.join(root, "fake");
  fs.mkdirSync(fake);
  try {
    for (const [file, spec] of Object.entries(host.files ?? {})) {
      fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      fs.writeFileSync(path.join(root, file), spec.content);
      fs.chmodSync(path.join(root, file), spec.mode);
    }
    const records = path.join(root, "owned");
    if (host.records !== undefined) {
      fs.mkdirSync(records, { mode: 0o700 });
      for (const [step, lines] of Object.entries(host.records)) {
        const text = lines.map((fields) => fields.join("\t").replaceAll("$ROOT", root)).join("\n");
        fs.writeFileSync(path.join(records, step), text === "" ? "" : `${text}\n`, { mode: 0o600 });
      }
    }
    fs.writeFileSync(
      path.join(fake, "units"),
      Object.entries(host.units ?? {})
        .map(([unit, s]) => `${unit}\t${s.enabled}\t${s.active}\n`)
        .join(""),
    );
    for (const [iface, dump] of Object.entries(host.wg ?? {})) {
      fs.writeFileSync(path.join(fake, `wg-${iface}`), dump);
    }
    for (const [iface, routes] of Object.entries(host.routes ?? {})) {
      fs.writeFileSync(path.join(fake, `routes-${iface}`), routes);
    }
    for (const [iface, routes] of Object.entries(host.routes6 ?? {})) {
      fs.writeFileSync(path.join(fake, `routes6-${iface}`), routes);
    }
    fs.writeFileSync(
      path.join(fake, "zfs"),
      Object.entries(host.zfs ?? {})
        .map(([key, value]) => `${key.replace(" ", "\t")}\t${value}\n`)
        .join(""),
    );
    fs.writeFileSync(path.join(fake, "passwd"), (host.passwd ?? []).map((l) => `${l}\n`).join(""));
    fs.writeFileSync(path.join(fake, "calls"), "");
    const result = spawnSync("bash", [path.join(bin, "swarm-drift")], {
      encoding: "utf8",
      env: {
        PATH: `${bin}:${process.env.PATH}`,
        FAKE: fake,
        SWARM_OWNED_DIR: opts.recordsDir?.(root) ?? records,
        ...Object.fromEntries(
          Object.entries(opts.env ?? {}).map(([k, v]) => [k, v.replaceAll("$ROOT", root)]),
        ),
      },
      timeout: 30_000,
    });
    const stdout = result.stdout.replaceAll(root, "$ROOT");
    return {
      code: result.status ?? -1,
      stdout,
      stderr: result.stderr.replaceAll(root, "$ROOT"),
      items: stdout
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => l.split("\t")),
      calls: fs
        .readFileSync(path.join(fake, "calls"), "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => l.replaceAll(root, "$ROOT")),
      root,
    };
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** Who owns a file this test creates: whoever runs the test. */
function ownerHere(): string {
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), "swarm-drift-owner-"));
  try {
    return spawnSync("stat", ["-c", "%U:%G", probe], { encoding: "utf8" }).stdout.trim();
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}
const OWNER = ownerHere();

const KEYS = {
  anchor: "aeKdTgBxYkWJLuJwnkzdWrW/rr1AOx8+/U+qmboubi0=",
  satellite: "MTb/OanSEACPd7qDSBIjfcoJnT/lWTJf3bFPdOGkCAw=",
  rogue: "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/AbCd0=",
};

/** A `wg show wg0 dump`: the interface line, then one line per [key, AllowedIPs, endpoint, handshake, rx, tx]. */
function dump(peers: readonly (readonly [string, string, string?, number?, number?, number?])[]): string {
  const lines = [`(private key)\t${KEYS.anchor}\t51820\toff`];
  for (const [
    key,
    allowed,
    endpoint = "203.0.113.2:51820",
    handshake = 1764089988,
    rx = 1,
    tx = 2,
  ] of peers) {
    lines.push(`${key}\t(none)\t${endpoint}\t${allowed}\t${handshake}\t${rx}\t${tx}\t25`);
  }
  return `${lines.join("\n")}\n`;
}

const CONF = "[Interface]\nAddress = 10.8.0.1/24\n";
const KEY_FILE = "private key\n";

/** A converged host: two files, a timer, two peers on wg0 and a dataset property, as recorded. */
const CONVERGED: Host = {
  records: {
    "mesh-anchor-config": [
      ["file", "$ROOT/etc/wireguard/wg0.conf.public", sha256(CONF), "644", OWNER],
      ["peer", "wg0", "hetzner-native", "vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32"],
      ["peer", "wg0", "satellite", KEYS.satellite, "10.8.0.2/32,10.8.0.12/32"],
      ["interface", "wg0", KEYS.anchor],
    ],
    "meshfs-sftp": [["user", "meshfs", "/var/lib/swarm/meshfs", "/usr/sbin/nologin"]],
    "mesh-anchor-key": [["file", "$ROOT/etc/wireguard/wg0.key", sha256(KEY_FILE), "600", OWNER]],
    "hetzner-native-wiki-sync-units": [["unit", "swarm-sync-wiki.timer"]],
    "meshfs-zfs": [["zfs", "tank/meshfs", "compression", "lz4"]],
  },
  files: {
    "etc/wireguard/wg0.conf.public": { content: CONF, mode: 0o644 },
    "etc/wireguard/wg0.key": { content: KEY_FILE, mode: 0o600 },
  },
  units: { "swarm-sync-wiki.timer": { enabled: "enabled", active: "active" } },
  wg: {
    wg0: dump([
      ["vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32"],
      // The same AllowedIPs in another order: a set, not a text.
      [KEYS.satellite, "10.8.0.12/32,10.8.0.2/32"],
    ]),
  },
  zfs: { "tank/meshfs compression": "lz4" },
  passwd: ["meshfs:x:998:998::/var/lib/swarm/meshfs:/usr/sbin/nologin"],
};

/** CONVERGED with some of its parts replaced. */
const convergedWith = (edit: Partial<Host>): Host => ({ ...CONVERGED, ...edit });

describe("swarm-drift", () => {
  test("a converged host: no output, exit 0, every record compared with the commands the spec names", () => {
    const run = runDrift(CONVERGED);
    expect({ code: run.code, stdout: run.stdout, stderr: run.stderr }).toEqual({
      code: 0,
      stdout: "",
      stderr: "",
    });
    expect([...run.calls].sort()).toEqual([
      "getent passwd -- meshfs",
      "ip -4 route show dev wg0",
      "systemctl show -p LoadState,UnitFileState,ActiveState -- swarm-sync-wiki.timer",
      "wg show wg0 dump",
      "zfs get -H -o value compression tank/meshfs",
    ]);
  });

  test.each([
    ["the interface's own subnet", "10.8.0.0/24 proto kernel scope link src 10.8.0.1 \n"],
    ["narrower routes and a bare address", "10.8.0.0/29 scope link \n10.8.0.12 scope link \n"],
    ["a default route through the interface", "default scope link \n"],
    ["a wider route, after routes of no concern", "10.9.0.0/24 scope link \n10.8.0.0/16 scope link \n"],
  ])("every AllowedIPs block held by a route through the interface: %s", (_, routes) => {
    const run = runDrift(convergedWith({ routes: { wg0: routes } }));
    expect({ code: run.code, stdout: run.stdout }).toEqual({ code: 0, stdout: "" });
  });

  describe("a dual-stack interface", () => {
    const SIX = "fd31:a7c9:5e04:8:dc4b:4e20:3f9d:ddce/128";
    const dual = (routes6?: string): Host =>
      convergedWith({
        records: {
          ...CONVERGED.records,
          "mesh-anchor-config": [
            ["file", "$ROOT/etc/wireguard/wg0.conf.public", sha256(CONF), "644", OWNER],
            ["peer", "wg0", "hetzner-native", "vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32"],
            ["peer", "wg0", "satellite", KEYS.satellite, `10.8.0.2/32,${SIX}`],
            ["interface", "wg0", KEYS.anchor],
          ],
        },
        wg: {
          wg0: dump([
            ["vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32"],
            [KEYS.satellite, `${SIX},10.8.0.2/32`],
          ]),
        },
        ...(routes6 === undefined ? {} : { routes6: { wg0: routes6 } }),
      });

    test.each([
      ["the interface's own /64", undefined],
      [
        "the /128 itself, after a link-local route",
        "fe80::/64 proto kernel metric 256 pref medium\nfd31:a7c9:5e04:8:dc4b:4e20:3f9d:ddce proto boot metric 1024 pref medium\n",
      ],
      ["a wider route", "fd31:a7c9:5e04::/48 metric 1024 pref medium\n"],
      ["a default route through the interface", "default metric 1024 pref medium\n"],
    ])("every IPv6 block held by a route through the interface: %s", (_, routes6) => {
      const run = runDrift(dual(routes6));
      expect({ code: run.code, stdout: run.stdout, stderr: run.stderr }).toEqual({
        code: 0,
        stdout: "",
        stderr: "",
      });
      expect(run.calls.filter((c) => c.startsWith("ip "))).toEqual([
        "ip -4 route show dev wg0",
        "ip -6 route show dev wg0",
      ]);
    });

    test.each([
      ["no IPv6 route at all", ""],
      ["only a link-local one", "fe80::/64 proto kernel metric 256 pref medium\n"],
      ["another /64", "fd31:a7c9:5e04:9::/64 proto kernel metric 256 pref medium\n"],
      ["a narrower block beside it", "fd31:a7c9:5e04:8:dc4b:4e20:3f9d:ddcc/127 metric 1024 pref medium\n"],
    ])("an IPv6 block no route holds is drift: %s", (_, routes6) => {
      const run = runDrift(dual(routes6));
      expect(run.items).toEqual([
        [
          "mesh-anchor-config",
          "peer",
          `wg0 route ${SIX}`,
          "not routed through wg0 (AllowedIPs of peer satellite): its traffic goes elsewhere",
        ],
      ]);
    });

    test("an IPv4-only interface never reads the IPv6 routes", () => {
      expect(runDrift(CONVERGED).calls.filter((c) => c.startsWith("ip -6"))).toEqual([]);
    });
  });

  test("units of every record are asked in one systemctl call, and each answer goes to its own unit", () => {
    const records = {
      ...CONVERGED.records,
      "satellite-wiki-sync-units": [
        ["unit", "swarm-sync-notes.timer"],
        ["unit", "swarm-gone.timer"],
        ["unit", "swarm-sync-late.timer"],
      ],
    };
    const run = runDrift(
      convergedWith({
        records,
        units: {
          ...CONVERGED.units,
          "swarm-sync-notes.timer": { enabled: "disabled", active: "active" },
          "swarm-sync-late.timer": { enabled: "enabled", active: "failed" },
        },
      }),
    );
    expect(run.calls.filter((c) => c.startsWith("systemctl"))).toEqual([
      "systemctl show -p LoadState,UnitFileState,ActiveState -- swarm-sync-wiki.timer swarm-sync-notes.timer swarm-gone.timer swarm-sync-late.timer",
    ]);
    expect(run.items).toEqual([
      ["satellite-wiki-sync-units", "unit", "swarm-gone.timer", "not installed, inactive"],
      ["satellite-wiki-sync-units", "unit", "swarm-sync-late.timer", "inactive (failed)"],
      ["satellite-wiki-sync-units", "unit", "swarm-sync-notes.timer", "disabled"],
    ]);
  });

  test.each<[string, Host, string[][]]>([
    [
      "a hand-edited file",
      convergedWith({
        files: {
          ...CONVERGED.files,
          "etc/wireguard/wg0.conf.public": { content: `${CONF}# mine\n`, mode: 0o644 },
        },
      }),
      [["mesh-anchor-config", "file", "$ROOT/etc/wireguard/wg0.conf.public", "content changed"]],
    ],
    [
      "a key file readable by everyone",
      convergedWith({
        files: { ...CONVERGED.files, "etc/wireguard/wg0.key": { content: KEY_FILE, mode: 0o644 } },
      }),
      [["mesh-anchor-key", "file", "$ROOT/etc/wireguard/wg0.key", "mode 644, expected 600"]],
    ],
    [
      "a file changed in content and mode at once",
      convergedWith({
        files: { ...CONVERGED.files, "etc/wireguard/wg0.key": { content: "another key\n", mode: 0o640 } },
      }),
      [["mesh-anchor-key", "file", "$ROOT/etc/wireguard/wg0.key", "content changed; mode 640, expected 600"]],
    ],
    [
      "a file owned by someone else",
      convergedWith({
        records: {
          ...CONVERGED.records,
          "mesh-anchor-key": [
            ["file", "$ROOT/etc/wireguard/wg0.key", sha256(KEY_FILE), "600", "nobody:nogroup"],
          ],
        },
      }),
      [["mesh-anchor-key", "file", "$ROOT/etc/wireguard/wg0.key", `owner ${OWNER}, expected nobody:nogroup`]],
    ],
    [
      "a removed file",
      convergedWith({ files: { "etc/wireguard/wg0.key": CONVERGED.files!["etc/wireguard/wg0.key"] } }),
      [["mesh-anchor-config", "file", "$ROOT/etc/wireguard/wg0.conf.public", "missing"]],
    ],
    [
      "a directory where a file was",
      convergedWith({
        files: {
          "etc/wireguard/wg0.key": CONVERGED.files!["etc/wireguard/wg0.key"],
          "etc/wireguard/wg0.conf.public/inside": { content: "x", mode: 0o644 },
        },
      }),
      [["mesh-anchor-config", "file", "$ROOT/etc/wireguard/wg0.conf.public", "not a regular file"]],
    ],
    [
      "a disabled timer",
      convergedWith({ units: { "swarm-sync-wiki.timer": { enabled: "disabled", active: "active" } } }),
      [["hetzner-native-wiki-sync-units", "unit", "swarm-sync-wiki.timer", "disabled"]],
    ],
    [
      "a timer disabled and stopped",
      convergedWith({ units: { "swarm-sync-wiki.timer": { enabled: "disabled", active: "inactive" } } }),
      [["hetzner-native-wiki-sync-units", "unit", "swarm-sync-wiki.timer", "disabled, inactive"]],
    ],
    [
      "a masked timer",
      convergedWith({ units: { "swarm-sync-wiki.timer": { enabled: "masked", active: "inactive" } } }),
      [["hetzner-native-wiki-sync-units", "unit", "swarm-sync-wiki.timer", "masked, inactive"]],
    ],
    [
      "a failed unit",
      convergedWith({ units: { "swarm-sync-wiki.timer": { enabled: "enabled", active: "failed" } } }),
      [["hetzner-native-wiki-sync-units", "unit", "swarm-sync-wiki.timer", "inactive (failed)"]],
    ],
    [
      "a unit whose file is gone",
      convergedWith({ units: {} }),
      [["hetzner-native-wiki-sync-units", "unit", "swarm-sync-wiki.timer", "not installed, inactive"]],
    ],
    [
      "a peer's AllowedIPs widened by hand",
      convergedWith({
        wg: {
          wg0: dump([
            ["vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32"],
            [KEYS.satellite, "10.8.0.0/24"],
          ]),
        },
      }),
      [
        [
          "mesh-anchor-config",
          "peer",
          "wg0 peer satellite",
          "AllowedIPs 10.8.0.0/24, expected 10.8.0.2/32,10.8.0.12/32",
        ],
      ],
    ],
    [
      "a peer whose AllowedIPs were emptied",
      convergedWith({
        wg: {
          wg0: dump([
            ["vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "(none)"],
            [KEYS.satellite, "10.8.0.2/32,10.8.0.12/32"],
          ]),
        },
      }),
      [["mesh-anchor-config", "peer", "wg0 peer hetzner-native", "AllowedIPs (none), expected 10.8.0.3/32"]],
    ],
    [
      "a removed peer",
      convergedWith({ wg: { wg0: dump([[KEYS.satellite, "10.8.0.2/32,10.8.0.12/32"]]) } }),
      [["mesh-anchor-config", "peer", "wg0 peer hetzner-native", "missing"]],
    ],
    [
      "a rogue peer added with wg set, under the step that records wg0's peers",
      convergedWith({
        wg: {
          wg0: dump([
            ["vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32"],
            [KEYS.satellite, "10.8.0.2/32,10.8.0.12/32"],
            [KEYS.rogue, "10.8.0.250/32"],
          ]),
        },
      }),
      [
        [
          "mesh-anchor-config",
          "peer",
          `wg0 peer ${KEYS.rogue}`,
          "not in the plan (AllowedIPs 10.8.0.250/32)",
        ],
      ],
    ],
    [
      "the interface's routes deleted by hand: one item per block no route holds",
      convergedWith({ routes: { wg0: "10.8.0.2 scope link \n" } }),
      [
        [
          "mesh-anchor-config",
          "peer",
          "wg0 route 10.8.0.12/32",
          "not routed through wg0 (AllowedIPs of peer satellite): its traffic goes elsewhere",
        ],
        [
          "mesh-anchor-config",
          "peer",
          "wg0 route 10.8.0.3/32",
          "not routed through wg0 (AllowedIPs of peer hetzner-native): its traffic goes elsewhere",
        ],
      ],
    ],
    [
      "a route that holds only part of a block",
      convergedWith({
        records: {
          ...CONVERGED.records,
          "mesh-anchor-config": [
            ["file", "$ROOT/etc/wireguard/wg0.conf.public", sha256(CONF), "644", OWNER],
            ["peer", "wg0", "hetzner-native", "vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32"],
            ["peer", "wg0", "satellite", KEYS.satellite, "10.8.0.2/32,10.20.0.0/24"],
            ["interface", "wg0", KEYS.anchor],
          ],
        },
        wg: {
          wg0: dump([
            ["vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32"],
            [KEYS.satellite, "10.8.0.2/32,10.20.0.0/24"],
          ]),
        },
        routes: { wg0: "10.8.0.0/24 proto kernel scope link src 10.8.0.1 \n10.20.0.0/25 scope link \n" },
      }),
      [
        [
          "mesh-anchor-config",
          "peer",
          "wg0 route 10.20.0.0/24",
          "not routed through wg0 (AllowedIPs of peer satellite): its traffic goes elsewhere",
        ],
      ],
    ],
    [
      "an interface that is down: one item, not one per peer",
      convergedWith({ wg: {} }),
      [["mesh-anchor-config", "peer", "wg0", "interface down (wg show wg0 failed): no peer can be compared"]],
    ],
    [
      "wg0 running another private key than the one swarm installed",
      convergedWith({
        wg: {
          wg0: dump([
            ["vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32"],
            [KEYS.satellite, "10.8.0.12/32,10.8.0.2/32"],
          ]).replace(KEYS.anchor, KEYS.rogue),
        },
      }),
      [["mesh-anchor-config", "peer", "wg0", `runs public key ${KEYS.rogue}, expected ${KEYS.anchor}`]],
    ],
    [
      "the export user removed",
      convergedWith({ passwd: [] }),
      [["meshfs-sftp", "user", "meshfs", "missing"]],
    ],
    [
      "the export user given a shell and another home",
      convergedWith({ passwd: ["meshfs:x:998:998::/home/meshfs:/bin/bash"] }),
      [
        [
          "meshfs-sftp",
          "user",
          "meshfs",
          "home /home/meshfs, expected /var/lib/swarm/meshfs; shell /bin/bash, expected /usr/sbin/nologin",
        ],
      ],
    ],
    [
      "a dataset property changed with zfs set",
      convergedWith({ zfs: { "tank/meshfs compression": "off" } }),
      [["meshfs-zfs", "zfs", "tank/meshfs compression", "off, expected lz4"]],
    ],
    [
      "a dataset zfs cannot read",
      convergedWith({ zfs: {} }),
      [["meshfs-zfs", "zfs", "tank/meshfs compression", "unreadable (zfs get failed), expected lz4"]],
    ],
  ])("%s", (_, host, expected) => {
    const run = runDrift(host);
    expect(run.items).toEqual(expected);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
  });

  test("every kind at once: one line per item, sorted by step, kind and item", () => {
    const run = runDrift(
      convergedWith({
        files: { "etc/wireguard/wg0.key": { content: KEY_FILE, mode: 0o666 } },
        units: { "swarm-sync-wiki.timer": { enabled: "disabled", active: "active" } },
        wg: { wg0: dump([[KEYS.rogue, "10.8.0.250/32"]]) },
        zfs: { "tank/meshfs compression": "off" },
      }),
    );
    expect(run.stdout).toBe(
      [
        "hetzner-native-wiki-sync-units\tunit\tswarm-sync-wiki.timer\tdisabled",
        "mesh-anchor-config\tfile\t$ROOT/etc/wireguard/wg0.conf.public\tmissing",
        `mesh-anchor-config\tpeer\twg0 peer ${KEYS.rogue}\tnot in the plan (AllowedIPs 10.8.0.250/32)`,
        "mesh-anchor-config\tpeer\twg0 peer hetzner-native\tmissing",
        "mesh-anchor-config\tpeer\twg0 peer satellite\tmissing",
        "mesh-anchor-key\tfile\t$ROOT/etc/wireguard/wg0.key\tmode 666, expected 600",
        "meshfs-zfs\tzfs\ttank/meshfs compression\toff, expected lz4",
        "",
      ].join("\n"),
    );
    expect(run.code).toBe(0);
  });

  test.each<[string, Host]>([
    [
      "endpoints, handshakes and byte counters",
      convergedWith({
        wg: {
          wg0: dump([
            ["vna4Vz6u1qEAQNXk0ssd/C/8w5eygcm8iszffnLcSV8=", "10.8.0.3/32", "(none)", 0, 0, 0],
            [
              KEYS.satellite,
              "10.8.0.2/32,10.8.0.12/32",
              "198.51.100.7:40001",
              1764090000,
              99999999,
              12345678,
            ],
          ]),
        },
      }),
    ],
    [
      "a mode recorded with a leading zero",
      convergedWith({
        records: {
          ...CONVERGED.records,
          "mesh-anchor-key": [["file", "$ROOT/etc/wireguard/wg0.key", sha256(KEY_FILE), "0600", OWNER]],
        },
      }),
    ],
    [
      "a static unit (systemctl counts it as enabled, and swarm does not enable it)",
      convergedWith({ units: { "swarm-sync-wiki.timer": { enabled: "static", active: "active" } } }),
    ],
    [
      "owner markers, snapshots and files next to the records that are not records",
      convergedWith({
        files: {
          ...CONVERGED.files,
          "var/lib/swarm/owners/mesh-anchor-config": { content: "hash\n", mode: 0o600 },
        },
        records: { ...CONVERGED.records, ".mesh-anchor-config.tmp": [["unit", "gone.timer"]] },
      }),
    ],
    [
      "a peer recorded with no AllowedIPs, live with none",
      {
        records: { mesh: [["peer", "wg0", "lonely", KEYS.rogue, ""]] },
        wg: { wg0: dump([[KEYS.rogue, "(none)"]]) },
      },
    ],
  ])("runtime state and equivalent forms are not drift: %s", (_, host) => {
    const run = runDrift(host);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
  });

  test("no record directory: no records, no drift", () => {
    const run = runDrift({}, { recordsDir: (root) => path.join(root, "nowhere") });
    expect([run.code, run.stdout, run.stderr]).toEqual([0, "", ""]);
  });

  test("an empty record directory: no drift, and wg is not asked", () => {
    const run = runDrift({ records: {} });
    expect([run.code, run.stdout, run.calls]).toEqual([0, "", []]);
  });

  test("records it cannot read: exit 2, saying which", () => {
    const notDir = runDrift(CONVERGED, { recordsDir: (root) => path.join(root, "etc/wireguard/wg0.key") });
    expect(notDir.code).toBe(2);
    expect(notDir.stdout).toBe("");
    expect(notDir.stderr).toBe("swarm-drift: cannot read $ROOT/etc/wireguard/wg0.key: not a directory\n");
    const recordDir = runDrift(CONVERGED, { recordsDir: (root) => path.join(root, "etc") });
    expect(recordDir.code).toBe(2);
    expect(recordDir.stderr).toBe("swarm-drift: cannot read $ROOT/etc/wireguard: not a regular file\n");
  });

  test("a line of a kind it does not know is skipped with a word on stderr, the rest compared", () => {
    const run = runDrift(
      convergedWith({
        records: { ...CONVERGED.records, "meshfs-users": [["user", "meshfs", "1001"]] },
        zfs: { "tank/meshfs compression": "off" },
      }),
    );
    expect(run.code).toBe(0);
    expect(run.items).toEqual([["meshfs-zfs", "zfs", "tank/meshfs compression", "off, expected lz4"]]);
    expect(run.stderr).toBe(
      "swarm-drift: $ROOT/owned/meshfs-users:1: not a record swarm-drift knows, skipped: user\tmeshfs\t1001\n",
    );
  });

  test("SWARM_DRIFT_SKIP_OWNER_OF leaves out the record holding that file, and only that one", () => {
    const host = convergedWith({ files: {}, zfs: { "tank/meshfs compression": "off" } });
    const skip = (file: string) =>
      runDrift(host, { env: { SWARM_DRIFT_SKIP_OWNER_OF: file } }).items.map((i) => i.slice(0, 3).join(" "));
    const missingKey = "mesh-anchor-key file $ROOT/etc/wireguard/wg0.key";
    const missingConf = "mesh-anchor-config file $ROOT/etc/wireguard/wg0.conf.public";
    const zfs = "meshfs-zfs zfs tank/meshfs compression";
    expect(skip("$ROOT/etc/wireguard/wg0.key")).toEqual([missingConf, zfs]);
    expect(skip("")).toEqual([missingConf, missingKey, zfs]);
    // A path that only starts like a recorded one, or is not a file line, skips nothing.
    expect(skip("$ROOT/etc/wireguard/wg0")).toEqual([missingConf, missingKey, zfs]);
    expect(skip("swarm-sync-wiki.timer")).toEqual([missingConf, missingKey, zfs]);
  });

  test("what swarm-health reports is what swarm-drift printed", () => {
    const drifted = runDrift(
      convergedWith({
        units: { "swarm-sync-wiki.timer": { enabled: "disabled", active: "active" } },
        zfs: { "tank/meshfs compression": "off" },
      }),
    );
    const report = parseHostReport(
      runHealth("hetzner-native", "json", { files: { drift: drifted.stdout } }).stdout,
    );
    expect(report.drift).toEqual<DriftItem[]>(
      drifted.items.map(([step, kind, item, detail]) => ({
        step,
        kind: kind as DriftItem["kind"],
        item,
        detail,
      })),
    );
    expect(report.drift).toHaveLength(2);
  });

  test("installed beside swarm-health", () => {
    expect(path.dirname(DRIFT_PROGRAM_PATH)).toBe(path.dirname(HEALTH_PROGRAM_PATH));
    expect(renderDriftProgram()).toMatch(/^#!\/bin\/bash\n/);
  });
});

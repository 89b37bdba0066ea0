import { execFileSync, spawnSync } from "node:child_process";
import { FleetConfig } from "../config/types";
import {
  formatEndpoint,
  renderWireGuardConfig,
  WireGuardApplyValues,
  wireguardApplyScript,
  wireguardConfigValues,
  wireguardKeyScript,
  wireguardKeyTeardownScript,
  wireguardTeardownScript,
  WG_CONF_PATH,
  WG_KEY_PATH,
  WG_PUBLIC_CONF_PATH,
  WG_USERSPACE_DROPIN,
} from "../templates/wireguard";
import {
  FULL_FLEET,
  HUB_FLEET,
  fleet,
  host,
  identitiesOf,
  plan,
  privateKeyOf,
  publicKeyOf,
} from "./meshFixtures";
import { Sandbox } from "./sandbox";

function applyValues(config: FleetConfig, name: string): WireGuardApplyValues {
  const fleetPlan = plan(config);
  return {
    host: name,
    config: wireguardConfigValues(fleetPlan, name, identitiesOf(config)),
    publicKey: publicKeyOf(name),
    implementation: fleetPlan.byName.get(name)?.config.wireguard ?? "kernel",
  };
}

const FLEETS = [
  { fleet: "hub", config: HUB_FLEET },
  { fleet: "full", config: FULL_FLEET },
];
const HOSTS = FLEETS.flatMap(({ fleet: f, config }) =>
  config.hosts.map((h) => ({ fleet: f, config, host: h.name })),
);

describe.each(HOSTS)("$fleet fleet, host $host", ({ config, host: name }) => {
  const values = applyValues(config, name);
  const publicConfig = renderWireGuardConfig(values.config);

  it("renders wg0.conf.public", () => {
    expect(publicConfig).toMatchSnapshot();
  });

  it("renders the apply script", () => {
    expect(wireguardApplyScript(values)).toMatchSnapshot();
  });

  it("has no private key, one /32 per peer, peers sorted, and ends with a newline", () => {
    expect(publicConfig).not.toMatch(/PrivateKey/);
    for (const h of config.hosts) {
      expect(publicConfig).not.toContain(privateKeyOf(h.name));
    }
    const peers = [...publicConfig.matchAll(/^# (.+)$/gm)].map((m) => m[1]);
    expect(peers).toEqual([...peers].sort());
    expect(peers).toEqual(
      plan(config)
        .byName.get(name)
        ?.peers.map((p) => p.name),
    );
    const firsts = [...publicConfig.matchAll(/^AllowedIPs = ([^,\n]+)/gm)].map((m) => m[1]);
    expect(firsts.every((a) => a.endsWith("/32"))).toBe(true);
    expect(publicConfig.endsWith("\n")).toBe(true);
  });

  it("embeds the expected public key in the apply script, and no private key", () => {
    const text = wireguardApplyScript(values);
    expect(text).toContain(`wg_expected='${publicKeyOf(name)}'`);
    for (const h of config.hosts) {
      expect(text).not.toContain(privateKeyOf(h.name));
    }
  });
});

describe("renderWireGuardConfig", () => {
  it("sorts peers by name whatever order they come in", () => {
    const values = applyValues(FULL_FLEET, "anchor").config;
    const reversed = { ...values, peers: [...values.peers].reverse() };
    expect(renderWireGuardConfig(reversed)).toBe(renderWireGuardConfig(values));
  });

  it("leaves out MTU when unset and PersistentKeepalive when 0", () => {
    const text = renderWireGuardConfig(
      wireguardConfigValues(
        plan(fleet([host({ name: "a" }), host({ name: "b" })], { persistentKeepalive: 0 })),
        "a",
        identitiesOf(fleet([host({ name: "a" }), host({ name: "b" })])),
      ),
    );
    expect(text).not.toMatch(/MTU|PersistentKeepalive/);
  });

  it("lists the peer's mesh /32 first, then its routes", () => {
    const text = renderWireGuardConfig(applyValues(FULL_FLEET, "anchor").config);
    const satellite = plan(FULL_FLEET).byName.get("satellite")?.meshAddress;
    expect(text).toContain(`AllowedIPs = ${satellite}/32, 10.20.0.0/24, 10.21.0.0/24\n`);
  });

  it.each([
    ["203.0.113.1", "203.0.113.1:51820"],
    ["2001:db8::10", "[2001:db8::10]:51820"],
    ["vpn.example.org", "vpn.example.org:51820"],
  ])("writes endpoint %s as %s", (address, endpoint) => {
    expect(formatEndpoint(address, 51820)).toBe(endpoint);
  });

  it("fails naming the peer whose key is unknown", () => {
    const identities = identitiesOf(HUB_FLEET);
    delete identities.satellite;
    expect(() => wireguardConfigValues(plan(HUB_FLEET), "anchor", identities)).toThrow(/satellite/);
  });
});

describe("host scripts", () => {
  const scripts = {
    key: wireguardKeyScript("anchor"),
    keyTeardown: wireguardKeyTeardownScript(),
    teardown: wireguardTeardownScript(),
    ...Object.fromEntries(
      HOSTS.map(({ fleet: f, config, host: h }) => [
        `apply ${f} ${h}`,
        wireguardApplyScript(applyValues(config, h)),
      ]),
    ),
  };

  it.each(Object.entries(scripts))("%s passes bash -n and shellcheck", (_name, text) => {
    expect(spawnSync("bash", ["-n"], { input: text, encoding: "utf8" }).stderr).toBe("");
    const check = spawnSync("shellcheck", ["-s", "bash", "-"], { input: text, encoding: "utf8" });
    expect(check.error).toBeUndefined();
    expect(check.stdout).toBe("");
  });

  it("renders the key script", () => {
    expect(scripts.key).toMatchSnapshot();
  });

  it("renders the teardown scripts", () => {
    expect(scripts.teardown).toMatchSnapshot();
    expect(scripts.keyTeardown).toMatchSnapshot();
  });
});

/**
 * The scripts run for real in a sandbox: files land in shadowed directories,
 * `systemctl`, `ip` and the interface-facing `wg` subcommands are stubs that
 * behave like a host whose wg-quick brings the interface up from wg0.conf.
 * `wg pubkey` and `wg-quick strip` are the real ones.
 */
describe("the scripts on a host", () => {
  const stubs = {
    systemctl: `state=$SANDBOX/state
case " $* " in
*" cat "*) exit 0 ;;
*" disable "*) rm -f "$state/up" ;;
*" --now "* | *" restart "*)
  /usr/bin/wg pubkey </etc/wireguard/wg0.key >"$state/running-key"
  sed -n 's/^Address = //p' /etc/wireguard/wg0.conf >"$state/address"
  sed -n 's/^MTU = //p' /etc/wireguard/wg0.conf >"$state/mtu"
  touch "$state/up"
  ;;
esac`,
    ip: `state=$SANDBOX/state
[ -e "$state/up" ] || exit 1
mtu=$(cat "$state/mtu"); mtu=\${mtu:-1420}
case "$*" in
"link show dev wg0" | "-o link show dev wg0") echo "5: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu $mtu qdisc noqueue state UNKNOWN" ;;
"-4 -o address show dev wg0") echo "5: wg0    inet $(cat "$state/address") scope global wg0\\       valid_lft forever" ;;
*) exit 2 ;;
esac`,
    wg: `state=$SANDBOX/state
case "$1" in
pubkey) exec /usr/bin/wg pubkey ;;
show) [ -e "$state/up" ] || exit 1; cat "$state/running-key" ;;
syncconf) cat "$3" >"$state/synced" ;;
*) exit 2 ;;
esac`,
  };
  let sandbox: Sandbox;
  beforeEach(() => {
    sandbox = new Sandbox(["/etc/wireguard", "/etc/systemd/system"], stubs);
  });
  afterEach(() => sandbox.dispose());

  const installKey = (name: string) => {
    const result = sandbox.run(wireguardKeyScript(name), `${privateKeyOf(name)}\n`, true);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    return result;
  };

  it("refuses a malformed key on standard input and writes nothing", () => {
    const result = sandbox.run(wireguardKeyScript("anchor"), "not-a-key\n");
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /^swarm: anchor: standard input does not hold a base64 Curve25519 private key/,
    );
    expect(sandbox.exists(WG_KEY_PATH)).toBe(false);
  });

  it("installs the key 0600 in a private directory, never passing it as an argument", () => {
    const result = installKey("anchor");
    expect(result.stdout).toContain(`swarm: wrote ${WG_KEY_PATH}`);
    expect(sandbox.read(WG_KEY_PATH)).toBe(`${privateKeyOf("anchor")}\n`);
    expect(sandbox.mode(WG_KEY_PATH)).toBe("600");
    expect(sandbox.mode("/etc/wireguard")).toBe("700");
    expect(result.exec).toContain("execve(");
    expect(result.exec).not.toContain(privateKeyOf("anchor"));
    expect(sandbox.run(wireguardKeyScript("anchor"), `${privateKeyOf("anchor")}\n`).stdout).toBe("");
  });

  it("brings wg0 up the first time, assembling wg0.conf with the key only on the host", () => {
    installKey("hetzner-native");
    const values = applyValues(HUB_FLEET, "hetzner-native");
    const result = sandbox.run(wireguardApplyScript(values), "", true);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const publicConfig = renderWireGuardConfig(values.config);
    expect(sandbox.read(WG_PUBLIC_CONF_PATH)).toBe(publicConfig);
    expect(sandbox.read(WG_CONF_PATH)).toBe(
      publicConfig.replace("[Interface]\n", `[Interface]\nPrivateKey = ${privateKeyOf("hetzner-native")}\n`),
    );
    expect(sandbox.mode(WG_CONF_PATH)).toBe("600");
    expect(sandbox.read(WG_USERSPACE_DROPIN)).toBe(
      "[Service]\nEnvironment=WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go\n",
    );
    expect(sandbox.calls().filter((c) => c.startsWith("systemctl"))).toEqual([
      "systemctl daemon-reload",
      "systemctl enable --now --quiet wg-quick@wg0",
      "systemctl enable --quiet wg-quick@wg0",
    ]);
    expect(result.stdout).toContain("swarm: hetzner-native: started wg-quick@wg0");
    expect(result.exec).not.toContain(privateKeyOf("hetzner-native"));
  });

  it("changes nothing when run again", () => {
    installKey("satellite");
    const script = wireguardApplyScript(applyValues(HUB_FLEET, "satellite"));
    expect(sandbox.run(script).status).toBe(0);
    sandbox.calls();
    const again = sandbox.run(script);
    expect(again.status).toBe(0);
    expect(again.stdout).not.toContain("wrote");
    expect(sandbox.calls().filter((c) => !c.startsWith("ip ") && !c.startsWith("wg "))).toEqual([
      "systemctl enable --quiet wg-quick@wg0",
    ]);
  });

  it("updates peers with wg syncconf, without restarting the interface", () => {
    installKey("anchor");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor"))).status).toBe(0);
    sandbox.calls();
    const changed: FleetConfig = {
      ...HUB_FLEET,
      hosts: HUB_FLEET.hosts.map((h) => (h.name === "satellite" ? { ...h, routes: ["10.30.0.0/24"] } : h)),
    };
    const result = sandbox.run(wireguardApplyScript(applyValues(changed, "anchor")), "", true);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("swarm: anchor: updated wg0 in place with wg syncconf");
    const calls = sandbox.calls();
    expect(calls).toContainEqual(expect.stringMatching(/^wg syncconf wg0 \/dev\/fd\/\d+$/));
    expect(calls.some((c) => c.includes("restart") || c.includes("--now"))).toBe(false);
    // What wg receives is wg-quick's stripped form: the key and peers, no wg-quick settings.
    const synced = sandbox.state("synced") ?? "";
    expect(synced).toContain(`PrivateKey = ${privateKeyOf("anchor")}`);
    expect(synced).toContain("10.30.0.0/24");
    expect(synced).not.toMatch(/^(Address|MTU) =/m);
    expect(result.exec).not.toContain(privateKeyOf("anchor"));
  });

  it("restarts the interface when its address changes", () => {
    installKey("satellite");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "satellite"))).status).toBe(0);
    sandbox.calls();
    const moved: FleetConfig = {
      ...HUB_FLEET,
      hosts: HUB_FLEET.hosts.map((h) => (h.name === "satellite" ? { ...h, meshAddress: "10.8.0.99" } : h)),
    };
    const result = sandbox.run(wireguardApplyScript(applyValues(moved, "satellite")));
    expect(result.status).toBe(0);
    expect(sandbox.calls()).toContain("systemctl restart wg-quick@wg0");
    expect(sandbox.state("address")).toBe("10.8.0.99/24\n");
  });

  it("removes the userspace drop-in and restarts when a host goes back to the kernel implementation", () => {
    installKey("hetzner-native");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "hetzner-native"))).status).toBe(0);
    sandbox.calls();
    const kernel = { ...applyValues(HUB_FLEET, "hetzner-native"), implementation: "kernel" as const };
    const result = sandbox.run(wireguardApplyScript(kernel));
    expect(result.status).toBe(0);
    expect(sandbox.exists(WG_USERSPACE_DROPIN)).toBe(false);
    expect(sandbox.calls().filter((c) => c.startsWith("systemctl"))).toEqual([
      "systemctl daemon-reload",
      "systemctl restart wg-quick@wg0",
      "systemctl enable --quiet wg-quick@wg0",
    ]);
  });

  it("fails naming the host when wg0 runs another key", () => {
    installKey("anchor");
    const script = wireguardApplyScript(applyValues(HUB_FLEET, "anchor"));
    expect(sandbox.run(script).status).toBe(0);
    sandbox.state("running-key", `${publicKeyOf("intruder")}\n`);
    const result = sandbox.run(script);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `swarm: anchor: wg0 runs public key ${publicKeyOf("intruder")}, expected ${publicKeyOf("anchor")}\n`,
    );
  });

  it("fails before touching wg0 when wg0.key is not the expected key", () => {
    installKey("anchor");
    const result = sandbox.run(
      wireguardApplyScript({ ...applyValues(HUB_FLEET, "anchor"), publicKey: publicKeyOf("x") }),
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^swarm: anchor: \/etc\/wireguard\/wg0.key holds the key of /);
    expect(sandbox.exists(WG_CONF_PATH)).toBe(false);
    expect(sandbox.calls().some((c) => c.startsWith("systemctl"))).toBe(false);
  });

  it("fails naming the host when the key was never installed", () => {
    const result = sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "anchor")));
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^swarm: anchor: \/etc\/wireguard\/wg0.key is missing/);
  });

  it("tears everything down", () => {
    installKey("hetzner-native");
    expect(sandbox.run(wireguardApplyScript(applyValues(HUB_FLEET, "hetzner-native"))).status).toBe(0);
    sandbox.calls();
    const result = sandbox.run(
      `set -euo pipefail\n${wireguardTeardownScript()}${wireguardKeyTeardownScript()}`,
    );
    expect(result.status).toBe(0);
    expect(sandbox.calls()).toContain("systemctl disable --now --quiet wg-quick@wg0");
    for (const path of [WG_CONF_PATH, WG_PUBLIC_CONF_PATH, WG_KEY_PATH, WG_USERSPACE_DROPIN]) {
      expect(sandbox.exists(path)).toBe(false);
    }
  });
});

describe("the rendered configuration", () => {
  it("is accepted by wg-quick strip, which leaves only what wg itself reads", () => {
    const sandbox = new Sandbox(["/etc/wireguard"], {});
    try {
      const values = applyValues(FULL_FLEET, "satellite");
      const conf = renderWireGuardConfig(values.config).replace(
        "[Interface]\n",
        `[Interface]\nPrivateKey = ${privateKeyOf("satellite")}\n`,
      );
      sandbox.write(WG_CONF_PATH, conf, 0o600);
      const result = sandbox.run("wg-quick strip wg0");
      expect(result.stderr).toBe("");
      const keys = [...result.stdout.matchAll(/^(\w+) = /gm)].map((m) => m[1]);
      expect(new Set(keys)).toEqual(
        new Set(["PrivateKey", "ListenPort", "PublicKey", "AllowedIPs", "Endpoint"]),
      );
      expect(result.stdout.match(/^\[Peer\]$/gm)).toHaveLength(3);
    } finally {
      sandbox.dispose();
    }
  });

  it("derives public keys with node:crypto that equal wg pubkey", () => {
    for (const name of ["anchor", "satellite"]) {
      const wg = execFileSync("wg", ["pubkey"], { input: `${privateKeyOf(name)}\n` })
        .toString()
        .trim();
      expect(publicKeyOf(name)).toBe(wg);
    }
  });
});

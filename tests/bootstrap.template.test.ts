import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { hostPackages, planFleet } from "../config/model";
import { APT_FUNCTIONS, bootstrapScript } from "../templates/bootstrap";
import { HUB_FLEET } from "./meshFixtures";
import { Sandbox } from "./sandbox";
import { PROD_SYNC, STORAGE_FLEET } from "./storageFixtures";

/** Holds a lock on `path` for `seconds` from another process, as a running apt would; resolves once it is held. */
async function holdLock(path: string, seconds: number): Promise<ChildProcess> {
  const holder = spawn("flock", ["--exclusive", path, "-c", `echo locked; exec sleep ${seconds}`], {
    detached: true,
    stdio: ["ignore", "pipe", "inherit"],
  });
  await once(holder.stdout, "data");
  return holder;
}

const ZFS_HOST = ["openssh-server", "util-linux", "wireguard-tools", "zfsutils-linux"];

describe("bootstrapScript", () => {
  const cases = [
    { host: "satellite", packages: hostPackages(HUB_FLEET.hosts[1], { exports: [], mounts: [], syncs: [] }) },
    { host: "hetzner-native", packages: planFleet(HUB_FLEET).byName.get("hetzner-native")?.packages ?? [] },
    { host: "anchor", packages: ZFS_HOST },
  ];

  it.each(cases)("renders the bootstrap of $host", (values) => {
    expect(bootstrapScript(values)).toMatchSnapshot();
  });

  it.each(cases)("bootstrap of $host passes bash -n and shellcheck", (values) => {
    const text = bootstrapScript(values);
    expect(spawnSync("bash", ["-n"], { input: text, encoding: "utf8" }).stderr).toBe("");
    const check = spawnSync("shellcheck", ["-s", "bash", "-"], { input: text, encoding: "utf8" });
    expect(check.error).toBeUndefined();
    expect(check.stdout).toBe("");
  });

  it("is deterministic whatever the order of packages", () => {
    expect(bootstrapScript({ host: "a", packages: ["b", "a"] })).toBe(
      bootstrapScript({ host: "a", packages: ["a", "b"] }),
    );
  });

  it("installs inotify-tools exactly where a sync runs in watch mode", () => {
    const host = HUB_FLEET.hosts[2];
    const roles = (watch: boolean) => ({ exports: [], mounts: [], syncs: [{ ...PROD_SYNC, watch }] });
    expect(hostPackages(host, roles(true))).toContain("inotify-tools");
    expect(hostPackages(host, roles(false))).not.toContain("inotify-tools");
    // The remote watcher follows the export host over ssh.
    expect(hostPackages(host, roles(true))).toContain("openssh-client");
    expect(hostPackages(host, roles(false))).not.toContain("openssh-client");
  });

  it("installs inotify-tools on an export host exactly while a sync in watch mode follows one of its exports", () => {
    const withWatch = (watch: boolean) =>
      planFleet({ ...STORAGE_FLEET, syncs: STORAGE_FLEET.syncs.map((s) => ({ ...s, watch })) });
    const exportHost = STORAGE_FLEET.exports[0].host;
    expect(withWatch(true).byName.get(exportHost)?.packages).toContain("inotify-tools");
    expect(withWatch(false).byName.get(exportHost)?.packages).not.toContain("inotify-tools");
    // A host that neither syncs nor serves a watched export gets none.
    const bystander = STORAGE_FLEET.hosts.find(
      (h) => h.name !== exportHost && !STORAGE_FLEET.syncs.some((s) => s.host === h.name),
    );
    expect(bystander).toBeDefined();
    expect(withWatch(true).byName.get(bystander?.name ?? "")?.packages).not.toContain("inotify-tools");
  });

  it("only mentions contrib and DKMS when the host needs OpenZFS", () => {
    expect(bootstrapScript({ host: "a", packages: ["wireguard-tools"] })).not.toMatch(
      /swarm_enable_contrib \/etc\/apt|modprobe zfs/,
    );
    expect(bootstrapScript({ host: "a", packages: ZFS_HOST })).toMatch(/swarm_enable_contrib \/etc\/apt/);
  });
});

/**
 * The bootstrap runs for real in a sandbox: apt, dpkg and the kernel are
 * stubs over a package database kept in a state file, and apt's directories
 * are empty stand-ins, so no lock or source of this machine is touched.
 */
describe("the bootstrap on a host", () => {
  const stubs = {
    "cloud-init": `exit "$(cat "$SANDBOX/state/cloud-init-status" 2>/dev/null || echo 0)"`,
    "dpkg-query": `pkg=\${*: -1}
if grep -qx "$pkg" "$SANDBOX/state/installed" 2>/dev/null; then printf installed; else printf not-installed; fi`,
    "apt-get": `skip=
for arg in "$@"; do
  if [ -n "$skip" ]; then skip=; continue; fi
  case "$arg" in
  -o) skip=1 ;;
  -*|install|update) ;;
  *) if ! grep -qx "$arg" "$SANDBOX/state/broken" 2>/dev/null; then echo "$arg" >>"$SANDBOX/state/installed"; fi ;;
  esac
done`,
    "apt-cache": `grep -qx "\${*: -1}" "$SANDBOX/state/available" 2>/dev/null`,
    dpkg: `echo amd64`,
    uname: `cat "$SANDBOX/state/kernel" 2>/dev/null || echo 6.1.0-28-amd64`,
    modprobe: `exit "$(cat "$SANDBOX/state/modprobe-status" 2>/dev/null || echo 0)"`,
  };
  const APT_DIRS = ["/etc/apt", "/var/lib/dpkg", "/var/lib/apt/lists", "/var/cache/apt/archives"];
  let sandbox: Sandbox;
  beforeEach(() => {
    sandbox = new Sandbox(APT_DIRS, stubs);
  });
  afterEach(() => sandbox.dispose());

  const installed = (...packages: string[]) =>
    sandbox.state("installed", packages.map((p) => `${p}\n`).join(""));
  const aptCalls = () =>
    sandbox
      .calls()
      .filter((c) => c.startsWith("apt-get"))
      .map((c) => c.replace(/ -o \S+/g, ""));

  it("touches no network and installs nothing when every package is present", () => {
    installed("openssh-server", "util-linux", "wireguard-tools");
    const result = sandbox.run(
      bootstrapScript({ host: "satellite", packages: ["openssh-server", "util-linux", "wireguard-tools"] }),
    );
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(
      "swarm: satellite bootstrap: already present: openssh-server util-linux wireguard-tools\n",
    );
    const calls = sandbox.calls();
    expect(calls[0]).toBe("cloud-init status --wait");
    expect(calls.filter((c) => !c.startsWith("cloud-init") && !c.startsWith("dpkg-query"))).toEqual([]);
  });

  it("updates the package lists once and installs only what is missing", () => {
    installed("openssh-server", "util-linux");
    const result = sandbox.run(
      bootstrapScript({
        host: "satellite",
        packages: ["openssh-server", "sshfs", "util-linux", "wireguard-tools"],
      }),
    );
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toBe("swarm: satellite bootstrap: installed sshfs wireguard-tools\n");
    expect(aptCalls()).toEqual([
      "apt-get -q -y update",
      "apt-get -q -y install --no-install-recommends sshfs wireguard-tools",
    ]);
    // Once installed, a second run is offline again.
    expect(sandbox.run(bootstrapScript({ host: "satellite", packages: ["sshfs"] })).status).toBe(0);
    expect(aptCalls()).toEqual([]);
  });

  it("carries on with a warning when cloud-init reports errors", () => {
    installed("wireguard-tools");
    sandbox.state("cloud-init-status", "1");
    const result = sandbox.run(bootstrapScript({ host: "anchor", packages: ["wireguard-tools"] }));
    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/^swarm: anchor: cloud-init finished with errors/);
  });

  it("fails naming the host and the packages apt-get did not install", () => {
    sandbox.state("broken", "unison\n");
    const result = sandbox.run(bootstrapScript({ host: "satellite", packages: ["sshfs", "unison"] }));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      "swarm: satellite: apt-get finished but these packages are still not installed: unison; check the host's apt sources\n",
    );
  });

  it("enables contrib and builds OpenZFS with headers installed first", () => {
    installed("openssh-server", "util-linux", "wireguard-tools");
    sandbox.state("available", "linux-headers-6.1.0-28-amd64\n");
    sandbox.write(
      "/etc/apt/sources.list.d/debian.sources",
      "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
    );
    const result = sandbox.run(bootstrapScript({ host: "anchor", packages: ZFS_HOST }));
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(sandbox.read("/etc/apt/sources.list.d/debian.sources")).toContain("Components: main contrib\n");
    expect(result.stdout).toBe(
      "swarm: anchor: enabled the contrib component in /etc/apt/sources.list.d/debian.sources\n" +
        "swarm: anchor bootstrap: installed zfsutils-linux\n",
    );
    const calls = sandbox.calls();
    const apt = calls.filter((c) => c.startsWith("apt-get")).map((c) => c.replace(/ -o \S+/g, ""));
    expect(apt).toEqual([
      "apt-get -q -y update",
      "apt-get -q -y install --no-install-recommends linux-headers-6.1.0-28-amd64 linux-headers-amd64 zfs-dkms",
      "apt-get -q -y install --no-install-recommends zfsutils-linux",
    ]);
    expect(calls).toContain("modprobe zfs");
  });

  it("installs the newest cloud kernel and asks for a reboot when the running kernel's headers are gone", () => {
    sandbox.state("kernel", "6.1.0-13-cloud-amd64\n");
    sandbox.state("modprobe-status", "1");
    const result = sandbox.run(bootstrapScript({ host: "anchor", packages: ["zfsutils-linux"] }));
    expect(result.status).toBe(1);
    expect(aptCalls()).toEqual([
      "apt-get -q -y update",
      "apt-get -q -y install --no-install-recommends linux-image-cloud-amd64 linux-headers-cloud-amd64 zfs-dkms",
    ]);
    expect(result.stderr).toBe(
      "swarm: anchor: the mirror no longer has headers for the running kernel 6.1.0-13-cloud-amd64, so zfs was built for the newer kernel just installed; reboot the host, then run pulumi up again\n",
    );
  });

  it("points at the DKMS build log when the module for the running kernel does not load", () => {
    sandbox.state("available", "linux-headers-6.1.0-28-amd64\n");
    sandbox.state("modprobe-status", "1");
    const result = sandbox.run(bootstrapScript({ host: "anchor", packages: ["zfsutils-linux"] }));
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /^swarm: anchor: zfs-dkms built no loadable module for kernel 6\.1\.0-28-amd64; see dkms status/,
    );
  });

  it("waits for another apt run to release its lock", async () => {
    installed("wireguard-tools");
    sandbox.write("/var/lib/dpkg/lock-frontend", "");
    const lockPath = sandbox.outside("/var/lib/dpkg/lock-frontend");
    const holder = await holdLock(lockPath, 3);
    const started = Date.now();
    const result = sandbox.run(bootstrapScript({ host: "anchor", packages: ["wireguard-tools"] }));
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(
      /^swarm: anchor: waiting for \/var\/lib\/dpkg\/lock-frontend, held by another apt/,
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    await once(holder, "exit");
  });

  it("gives up on a lock held too long, naming the host and the lock", async () => {
    sandbox.write("/var/lib/dpkg/lock", "");
    const lockPath = sandbox.outside("/var/lib/dpkg/lock");
    const holder = await holdLock(lockPath, 10);
    const result = sandbox.run(
      `set -euo pipefail\nswarm_host=anchor\n${APT_FUNCTIONS}\nswarm_wait_unlocked 2 /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock\n`,
    );
    process.kill(-(holder.pid as number));
    await once(holder, "exit");
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      "swarm: anchor: /var/lib/dpkg/lock is still locked after 2 s: another apt or dpkg run holds it; let it finish (or stop it), then run pulumi up again\n",
    );
  });
});

describe("swarm_enable_contrib", () => {
  const run = (sandbox: Sandbox) =>
    sandbox.run(`set -euo pipefail\nswarm_host=anchor\n${APT_FUNCTIONS}\nswarm_enable_contrib /etc/apt\n`);

  it("adds contrib to Debian's one-line sources only, once", () => {
    const sandbox = new Sandbox(["/etc/apt"], {});
    try {
      sandbox.write(
        "/etc/apt/sources.list",
        [
          "deb http://deb.debian.org/debian bookworm main",
          "deb http://security.debian.org/debian-security bookworm-security main non-free-firmware",
          "deb http://mirror.hetzner.com/debian/packages bookworm-updates main contrib",
          "# deb http://deb.debian.org/debian bookworm-backports main",
          "",
        ].join("\n"),
      );
      sandbox.write("/etc/apt/sources.list.d/vendor.list", "deb https://apt.example.org/repo stable main\n");
      const first = run(sandbox);
      expect(first.status).toBe(0);
      expect(first.stdout).toBe("swarm: anchor: enabled the contrib component in /etc/apt/sources.list\n");
      expect(sandbox.read("/etc/apt/sources.list")).toBe(
        [
          "deb http://deb.debian.org/debian bookworm main contrib",
          "deb http://security.debian.org/debian-security bookworm-security main contrib non-free-firmware",
          "deb http://mirror.hetzner.com/debian/packages bookworm-updates main contrib",
          "# deb http://deb.debian.org/debian bookworm-backports main",
          "",
        ].join("\n"),
      );
      expect(sandbox.read("/etc/apt/sources.list.d/vendor.list")).toBe(
        "deb https://apt.example.org/repo stable main\n",
      );
      expect(sandbox.mode("/etc/apt/sources.list")).toBe("644");
      const second = run(sandbox);
      expect(second.status).toBe(0);
      expect(second.stdout).toBe("");
    } finally {
      sandbox.dispose();
    }
  });

  it("adds contrib to deb822 sources", () => {
    const sandbox = new Sandbox(["/etc/apt"], {});
    try {
      const stanza = (suites: string, components: string) =>
        `Types: deb\nURIs: http://deb.debian.org/debian\nSuites: ${suites}\nComponents: ${components}\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`;
      sandbox.write(
        "/etc/apt/sources.list.d/debian.sources",
        `${stanza("bookworm bookworm-updates", "main")}\n${stanza("bookworm-security", "main non-free-firmware")}`,
      );
      expect(run(sandbox).status).toBe(0);
      expect(sandbox.read("/etc/apt/sources.list.d/debian.sources")).toBe(
        `${stanza("bookworm bookworm-updates", "main contrib")}\n${stanza("bookworm-security", "main contrib non-free-firmware")}`,
      );
      expect(run(sandbox).stdout).toBe("");
    } finally {
      sandbox.dispose();
    }
  });
});

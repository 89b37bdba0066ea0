/**
 * The storage components under Pulumi's mock runtime, wired as the program
 * wires them for the production layout: which commands run where, what
 * they carry, and what stays secret.
 */
import * as pulumi from "@pulumi/pulumi";
import { exportWatcherId, MeshfsExport } from "../components/meshfsExport";
import { SshfsAutomount } from "../components/sshfsAutomount";
import { SshKeypair } from "../components/sshKeypair";
import { UnisonSync } from "../components/unisonSync";
import { planFleet } from "../config/model";
import { stepsOf } from "../config/plan";
import { FleetConfig } from "../config/types";
import { unwrapRootCommand } from "../templates/shell";
import { automountUnit, mountUnit } from "../templates/sshfs";
import { syncService, syncTimer, unisonProfile } from "../templates/unison";
import { installMocks, MockFleet, offlineRunner, promiseOf, RecordedResource } from "../offline/mockRuntime";
import { fixtureHostKey } from "../offline/fixtureHostKeys";
import { DIAL_ERROR_LIMIT, PER_DIAL_TIMEOUT } from "../components/remote";
import {
  PROD_MOUNT_PLANS,
  PROD_SYNC_PLAN,
  Raw,
  SSH_FLEET,
  SSH_SYNC_PLAN,
  STORAGE_FLEET,
  VOLUME_DEVICE,
  onLabDisk,
  onSparseFiles,
  storageFleet,
  withSshSync,
} from "./storageFixtures";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";

function isSecretInput(value: unknown): boolean {
  return typeof value === "object" && value !== null && SECRET_SIG in value;
}

function plain(value: unknown): unknown {
  return isSecretInput(value) ? (value as { value: unknown }).value : value;
}

/** The script a command runs: its `create`, without the `bash -c '...'` quoting around it. */
function createOf(resource: RecordedResource): string {
  const create = String(plain(resource.inputs.create));
  const match = /^(?:sudo -n )?bash -c '([\s\S]*)'$/.exec(create);
  if (!match) {
    throw new Error(`${resource.name} does not run bash: ${create.slice(0, 80)}`);
  }
  return match[1].replace(/'\\''/g, "'");
}

function connection(host: string) {
  return pulumi.secret({
    host,
    port: 22,
    user: "root",
    privateKey: "ADMIN-KEY-TEXT",
    hostKey: fixtureHostKey(host),
    dialErrorLimit: DIAL_ERROR_LIMIT,
    perDialTimeout: PER_DIAL_TIMEOUT,
  });
}

interface Built {
  readonly mocks: MockFleet;
  readonly keys: Map<string, SshKeypair>;
  readonly exported: MeshfsExport;
  readonly mounts: SshfsAutomount[];
  readonly syncs: UnisonSync[];
}

/** The storage part of the program: the plan's export, mount and sync steps, wired as program.ts wires them. */
async function build(config: FleetConfig = STORAGE_FLEET): Promise<Built> {
  const mocks = await installMocks();
  const plan = planFleet(config);
  const keys = new Map<string, SshKeypair>();
  const keyOf = (exportName: string, host: string) => {
    const id = `${exportName}-${host}`;
    if (!keys.has(id)) {
      keys.set(id, new SshKeypair(`${id}-client`, { comment: `swarm-${exportName}@${host}` }));
    }
    return keys.get(id) as SshKeypair;
  };
  const watchKeyOf = (host: string, sync: string) => {
    const id = `${host}-${sync}-watch`;
    if (!keys.has(id)) {
      keys.set(id, new SshKeypair(id, { comment: `swarm-watch-${sync}@${host}` }));
    }
    return keys.get(id) as SshKeypair;
  };
  const [step] = stepsOf(plan.steps, "export");
  const exported = new MeshfsExport(step.name, {
    step,
    clientKeys: new Map(
      [...step.clients, ...step.syncServers].map((c) => [c.name, keyOf(step.export.name, c.name).publicKey]),
    ),
    watchKeys: new Map(step.watchers.map((w) => [exportWatcherId(w), watchKeyOf(w.name, w.sync).publicKey])),
    connection: connection(step.host),
    user: "root",
    volumeDevice: pulumi.output(VOLUME_DEVICE),
  });
  const mountSteps = stepsOf(plan.steps, "mount");
  const mounts = mountSteps.map(
    (m) =>
      new SshfsAutomount(
        m.name,
        {
          step: m,
          serverHostKey: exported.hostKey,
          clientKey: keyOf(m.export.name, m.host),
          connection: connection(m.host),
          user: "root",
        },
        { dependsOn: [exported.ready] },
      ),
  );
  const syncs = stepsOf(plan.steps, "sync").map((s) => {
    const { remote } = s;
    const dependsOn =
      remote.kind === "mount" ? [mounts[mountSteps.indexOf(remote.mount)].ready] : [exported.ready];
    const ssh =
      remote.kind === "ssh"
        ? { serverHostKey: exported.hostKey, clientKey: keyOf(remote.export.name, s.host) }
        : undefined;
    const watchKey = s.sync.watch ? watchKeyOf(s.host, s.sync.name) : undefined;
    return new UnisonSync(
      s.name,
      { step: s, ssh, watchKey, connection: connection(s.host), user: "root" },
      { dependsOn },
    );
  });
  await Promise.all([
    promiseOf(exported.hostKey),
    ...mounts.map((m) => promiseOf(m.ready.urn)),
    ...syncs.map((s) => promiseOf(s.ready.urn)),
  ]);
  return { mocks, keys, exported, mounts, syncs };
}

function commands(mocks: MockFleet): RecordedResource[] {
  return mocks.ofType("command:remote:Command");
}

describe("the production storage layout", () => {
  let built: Built;

  beforeAll(async () => {
    built = await build();
  });

  it("runs these commands, each after what it needs", () => {
    const names = commands(built.mocks).map((c) => c.name);
    expect([...names].sort()).toEqual([
      "hetzner-native-meshfs-mount-key",
      "hetzner-native-meshfs-mount-units",
      "hetzner-native-wiki-sync-units",
      "meshfs-hostkey",
      "meshfs-sftp",
      "meshfs-snapshots",
      "meshfs-zfs",
      "satellite-meshfs-mount-key",
      "satellite-meshfs-mount-units",
    ]);
    const before = (a: string, b: string) => expect(names.indexOf(a)).toBeLessThan(names.indexOf(b));
    before("meshfs-zfs", "meshfs-sftp");
    before("meshfs-zfs", "meshfs-snapshots");
    before("meshfs-sftp", "meshfs-hostkey");
    before("meshfs-snapshots", "meshfs-hostkey");
    for (const host of ["satellite", "hetzner-native"]) {
      before("meshfs-hostkey", `${host}-meshfs-mount-units`);
      before(`${host}-meshfs-mount-key`, `${host}-meshfs-mount-units`);
    }
    before("hetzner-native-meshfs-mount-units", "hetzner-native-wiki-sync-units");
  });

  it("registers the components with their types", () => {
    expect(built.exported).toBeInstanceOf(pulumi.ComponentResource);
    expect(built.mounts.map((m) => m.unitName)).toEqual(["mnt-meshfs.automount", "mnt-meshfs.automount"]);
    expect(built.mounts.map((m) => m.mountUnitName)).toEqual(["mnt-meshfs.mount", "mnt-meshfs.mount"]);
    expect(built.syncs[0].timerName).toBe("swarm-sync-wiki.timer");
  });

  it("puts the pool on the host's volume and converges the properties", () => {
    const zfs = createOf(built.mocks.named("meshfs-zfs"));
    expect(zfs).toContain(`zpool create 'tank' '${VOLUME_DEVICE}'`);
    expect(zfs).toContain("modprobe zfs");
    expect(zfs).not.toContain("volume'");
    // The mountpoint in a zfs set of its own, then every other property in one.
    const converge = zfs.split("\n").filter((l) => l.startsWith("zfs_converge "));
    expect(converge).toHaveLength(2);
    expect(converge[0]).toMatch(/ 'mountpoint=\/tank\/meshfs\/state'$/);
    // canmount and readonly too: what makes a promoted replica (received unmounted, read-only) an export.
    expect(converge[1]).toMatch(
      / 'canmount=on' 'compression=lz4' 'refquota=100G' 'snapdir=hidden' 'atime=off' 'readonly=off'$/,
    );
    for (const [property, value] of Object.entries(STORAGE_FLEET.exports[0].properties)) {
      expect(converge[1]).toContain(` '${property}=${value}'`);
    }
    expect(zfs).toContain(".swarm-meshfs");
  });

  it("authorizes exactly the mounting hosts, each from its mesh address, with its own key", async () => {
    const sftp = createOf(built.mocks.named("meshfs-sftp"));
    const lines = sftp.split("\n").filter((l) => l.startsWith("restrict,"));
    const from = lines.map((l) => /from="([^"]+)"/.exec(l)?.[1]).sort();
    expect(from).toEqual(["10.8.0.2/32", "10.8.0.3/32"]);
    for (const host of ["satellite", "hetzner-native"]) {
      const publicKey = await promiseOf(built.keys.get(`meshfs-${host}`)!.publicKey);
      const line = lines.find((l) => l.endsWith(` ${host}`));
      expect(line).toContain(publicKey.split(" ").slice(0, 2).join(" "));
    }
    expect(sftp).toContain('install -d -m 0755 -o "$user" -g "$group" \'/tank/meshfs/state/wiki\'');
  });

  it("reads the export host's key back and pins it on every client", async () => {
    const hostKey = await promiseOf(built.exported.hostKey);
    expect(hostKey).toMatch(/^ssh-ed25519 AAAA\S+$/);
    expect(hostKey).toBe((await offlineRunner("meshfs-hostkey", {})).stdout.trim());
    for (const host of ["satellite", "hetzner-native"]) {
      expect(createOf(built.mocks.named(`${host}-meshfs-mount-units`))).toContain(
        `swarm-meshfs ${hostKey}\n`,
      );
    }
  });

  it("keeps client private keys secret, and out of every script", async () => {
    for (const key of built.keys.values()) {
      expect(await pulumi.isSecret(key.privateKey)).toBe(true);
    }
    for (const host of ["satellite", "hetzner-native"]) {
      const keyCommand = built.mocks.named(`${host}-meshfs-mount-key`);
      expect(isSecretInput(keyCommand.inputs.stdin)).toBe(true);
      expect(plain(keyCommand.inputs.stdin)).toBe(
        await promiseOf(built.keys.get(`meshfs-${host}`)!.privateKey),
      );
      expect(keyCommand.inputs.logging).toBe("none");
    }
    for (const c of commands(built.mocks)) {
      expect(createOf(c)).not.toContain("PRIVATE KEY");
      expect(String(plain(c.inputs.delete) ?? "")).not.toContain("PRIVATE KEY");
    }
  });

  it("installs on each client the units the templates render for it", () => {
    PROD_MOUNT_PLANS.forEach((plan, i) => {
      const create = createOf(built.mocks.named(`${STORAGE_FLEET.mounts[i].host}-meshfs-mount-units`));
      expect(create).toContain(mountUnit(plan));
      expect(create).toContain(automountUnit(plan));
      expect(create).toContain(`id -u '${plan.owner}'`);
    });
    const sync = createOf(built.mocks.named("hetzner-native-wiki-sync-units"));
    expect(sync).toContain(unisonProfile(PROD_SYNC_PLAN));
    expect(sync).toContain(syncService(PROD_SYNC_PLAN));
    expect(sync).toContain(syncTimer(PROD_SYNC_PLAN));
  });

  it("runs every command as root and guards teardown with its owner hash", () => {
    for (const c of commands(built.mocks)) {
      expect(String(plain(c.inputs.create))).toMatch(/^bash -c '/);
      expect(plain(c.inputs.triggers)).toHaveLength(1);
    }
    // Removing an export from the config never touches its data: its delete only forgets the
    // step's marker and record, once the guard has found the marker still holding its hash.
    const remove = String(plain(built.mocks.named("meshfs-zfs").inputs.delete));
    const afterGuard = remove.slice(remove.indexOf("\nfi\n") + 4);
    expect(afterGuard.trim().split("\n")).toEqual([
      "rm -f '\\''/var/lib/swarm/owners/meshfs-zfs'\\'' '\\''/var/lib/swarm/owned/meshfs-zfs'\\''",
      "'",
    ]);
  });
});

/** The triggers of every command, by name: what re-runs when the config changes. */
async function triggersOf(config: FleetConfig): Promise<Map<string, string>> {
  const { mocks } = await build(config);
  return new Map(commands(mocks).map((c) => [c.name, JSON.stringify(plain(c.inputs.triggers))]));
}

function changed(before: Map<string, string>, after: Map<string, string>): string[] {
  return [...after.keys()].filter((name) => before.get(name) !== after.get(name)).sort();
}

describe("what a change re-runs", () => {
  let baseline: Map<string, string>;

  beforeAll(async () => {
    baseline = await triggersOf(STORAGE_FLEET);
  });

  it("re-runs nothing when nothing changed", async () => {
    expect(changed(baseline, await triggersOf(STORAGE_FLEET))).toEqual([]);
  });

  /** The first entry of the raw list `key`, changed by `change`. */
  const first =
    (key: string, change: (item: Raw) => Raw) =>
    (raw: Raw): Raw => {
      const [item, ...rest] = raw[key] as Raw[];
      return { ...raw, [key]: [change(item), ...rest] };
    };

  it.each<[string, (raw: Raw) => Raw, string[]]>([
    [
      "a sync's interval",
      first("syncs", (s) => ({ ...s, interval: "120s" })),
      ["hetzner-native-wiki-sync-units"],
    ],
    [
      "a mount's idle timeout",
      first("mounts", (m) => ({ ...m, idleTimeout: "60s" })),
      ["satellite-meshfs-mount-units"],
    ],
    [
      "the snapshot retention",
      first("exports", (e) => ({ ...e, snapshots: { interval: "1h", retention: { hourly: 24, daily: 7 } } })),
      ["meshfs-snapshots"],
    ],
    [
      "a ZFS property",
      first("exports", (e) => ({ ...e, properties: { ...(e.properties as Raw), atime: "on" } })),
      ["meshfs-zfs"],
    ],
  ])("re-runs only the owning host's command when %s changes", async (_, change, expected) => {
    expect(changed(baseline, await triggersOf(storageFleet(change)))).toEqual(expected);
  });
});

describe("a host that mounts the export twice", () => {
  it("still gets exactly one key line", async () => {
    const twice = storageFleet((raw) => {
      const mounts = raw.mounts as Raw[];
      return { ...raw, mounts: [...mounts, { ...mounts[0], path: "/srv/meshfs" }] };
    });
    const exported = twice.exports[0];
    const plan = planFleet(twice);
    const { mocks } = await build(twice);
    const lines = createOf(mocks.named("meshfs-sftp"))
      .split("\n")
      .filter((l) => l.startsWith("restrict,"));
    expect(lines.map((l) => /from="([^"]+)"/.exec(l)?.[1]).sort()).toEqual(
      exported.clients.map((c) => `${plan.byName.get(c)!.meshAddress}/32`).sort(),
    );
  });
});

describe("the lab's export and one on sparse files", () => {
  it("puts the lab's pool on the VM's virtual disk, on OpenZFS as in prod", async () => {
    const { mocks } = await build(storageFleet(onLabDisk));
    const zfs = createOf(mocks.named("meshfs-zfs"));
    expect(zfs).toContain("modprobe zfs");
    expect(zfs).toContain("zpool create 'tank' '/dev/disk/by-id/virtio-swarm-tank'");
    expect(zfs).not.toContain("truncate");
  });

  it("creates the file-backed pool, and imports it from its folder", async () => {
    const { mocks } = await build(storageFleet(onSparseFiles));
    const zfs = createOf(mocks.named("meshfs-zfs"));
    expect(zfs).toContain("modprobe zfs");
    expect(zfs).toContain("truncate -s '1G' '/var/lib/swarm/tank.img'");
    expect(zfs).toContain("zpool import -d '/var/lib/swarm' 'tank'");
  });
});

describe("a sync over ssh://", () => {
  it("gets its own key line with unison -server, its key as a secret, and the ssh:// profile", async () => {
    const { mocks, keys } = await build(SSH_FLEET);
    const sftp = createOf(mocks.named("meshfs-sftp"));
    expect(sftp).toMatch(
      /restrict,from="10\.8\.0\.4\/32",command="env UNISON=\S+ .*unison -server" ssh-ed25519 \S+ archive sync wiki-copy/,
    );
    expect(sftp).toContain("Match User meshfs Address 10.8.0.4/32\n\tForceCommand env UNISON=");
    expect(sftp).toContain("'/tank/meshfs/state/wiki/.swarm-sync-wiki-copy'");
    const key = mocks.named("archive-wiki-copy-sync-key");
    expect(isSecretInput(key.inputs.stdin)).toBe(true);
    expect(plain(key.inputs.stdin)).toBe(await promiseOf(keys.get("meshfs-archive")!.privateKey));
    const units = createOf(mocks.named("archive-wiki-copy-sync-units"));
    expect(units).toContain(unisonProfile(SSH_SYNC_PLAN));
    expect(units).toContain("root = ssh://meshfs@10.8.0.1//tank/meshfs/state/wiki\n");
    expect(units).not.toContain("PRIVATE KEY");
  });
});

describe("a sync in watch mode", () => {
  it("is followed on the export host by a watch step of its own, with its key as a secret on the sync host", async () => {
    // SSH_FLEET's wiki-copy (archive, ssh://) is watched; prod's wiki (hetzner-native, mount) is made so too.
    const config = storageFleet((raw) =>
      withSshSync({
        ...raw,
        syncs: (raw.syncs as Raw[]).map((s) => ({ ...s, watch: true })),
      }),
    );
    const { mocks, keys } = await build(config);
    const names = mocks.ofType("command:remote:Command").map((c) => c.name);
    const before = (a: string, b: string) => expect(names.indexOf(a)).toBeLessThan(names.indexOf(b));
    before("meshfs-sftp", "meshfs-watch");
    before("meshfs-watch", "meshfs-hostkey");
    const watch = createOf(mocks.named("meshfs-watch"));
    const lines = watch.split("\n").filter((l) => l.startsWith("restrict,"));
    expect(lines).toHaveLength(2);
    for (const [host, sync, address] of [
      ["archive", "wiki-copy", "10.8.0.4"],
      ["hetzner-native", "wiki", "10.8.0.3"],
    ]) {
      const publicKey = await promiseOf(keys.get(`${host}-${sync}-watch`)!.publicKey);
      expect(lines).toContain(
        `restrict,from="${address}/32",command="/usr/local/lib/swarm/meshfs-watch /tank/meshfs/state/wiki" ${publicKey.split(" ").slice(0, 2).join(" ")} swarm-watch-${sync}@${host}`,
      );
      const key = mocks.named(`${host}-${sync}-sync-watch-key`);
      expect(isSecretInput(key.inputs.stdin)).toBe(true);
      expect(plain(key.inputs.stdin)).toBe(await promiseOf(keys.get(`${host}-${sync}-watch`)!.privateKey));
      expect(String(plain(key.inputs.delete))).toContain(`/etc/swarm/unison/${sync}.watch.key`);
      const units = createOf(mocks.named(`${host}-${sync}-sync-units`));
      expect(units).toContain(`swarm_activate 'swarm-sync-${sync}-remote-watch.service'`);
      expect(units).not.toContain("PRIVATE KEY");
      expect(units).not.toContain("StrictHostKeyChecking=no");
    }
    // The mount's pinned key for the mount, the ssh:// profile's for the ssh:// sync.
    expect(createOf(mocks.named("hetzner-native-wiki-sync-units"))).toContain(
      "UserKnownHostsFile=/etc/swarm/meshfs/meshfs.known_hosts",
    );
    expect(createOf(mocks.named("archive-wiki-copy-sync-units"))).toContain(
      "UserKnownHostsFile=/etc/swarm/unison/wiki-copy.known_hosts",
    );
    expect(unwrapRootCommand(String(plain(mocks.named("meshfs-watch").inputs.delete)))).toContain(
      "rm -f '/etc/ssh/sshd_config.d/swarm-watch-meshfs.conf' '/etc/ssh/swarm-authorized-keys/meshfs-watch'",
    );
  });

  it("has no watch step on the export host, and no watch key, when no sync watches", async () => {
    const { mocks } = await build(STORAGE_FLEET);
    const names = mocks.ofType("command:remote:Command").map((c) => c.name);
    expect(names.filter((n) => n.includes("watch"))).toEqual([]);
  });
});

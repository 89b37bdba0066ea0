/**
 * planFleet's steps: every reference resolved once, from validated config.
 */
import { planFleet } from "../config/model";
import { mountHolding, resolveSyncRemote, stepCommandNames, stepsOf, SyncStep } from "../config/plan";
import { FleetConfig } from "../config/types";
import { SSH_FLEET, STORAGE_FLEET, storageFleet, withSshSync } from "./storageFixtures";

describe("planFleet's steps", () => {
  const plan = planFleet(SSH_FLEET);

  it("gives each host its steps in order, and the fleet one entry per component", () => {
    expect(plan.byName.get("hetzner-native")?.steps.map((s) => s.kind)).toEqual([
      "bootstrap",
      "wireguardKey",
      "wireguardConfig",
      "replica",
      "mount",
      "sync",
      "health",
    ]);
    expect(plan.byName.get("anchor")?.steps.map((s) => s.kind)).toEqual([
      "bootstrap",
      "wireguardKey",
      "wireguardConfig",
      "export",
      "health",
    ]);
    expect([...new Set(plan.steps.map((s) => s.kind))]).toEqual([
      "bootstrap",
      "wireguardKey",
      "mesh",
      "export",
      "replica",
      "mount",
      "sync",
      "health",
    ]);
  });

  it("resolves a sync through its mount to the export and its server", () => {
    const [wiki, copy] = stepsOf(plan.steps, "sync");
    expect(wiki.remote.kind).toBe("mount");
    if (wiki.remote.kind === "mount") {
      expect(wiki.remote.mount.host).toBe("hetzner-native");
      expect(wiki.remote.mount.units.path).toBe("/mnt/meshfs");
      expect(wiki.remote.path).toBe("wiki");
    }
    expect(wiki.remote.server).toEqual({ name: "anchor", meshAddress: "10.8.0.1" });
    expect(wiki.units.remote).toEqual({
      kind: "mount",
      path: "/mnt/meshfs/wiki",
      mountPath: "/mnt/meshfs",
      exportName: "meshfs",
    });
    expect(copy.units.remote).toEqual({
      kind: "ssh",
      exportName: "meshfs",
      exportUser: "meshfs",
      serverMeshAddress: "10.8.0.1",
      serverPath: "/tank/meshfs/state/wiki",
    });
  });

  it("gives the export its clients once each, its ssh:// sync servers and its directories", () => {
    const [exported] = stepsOf(plan.steps, "export");
    expect(exported.clients).toEqual([
      { name: "hetzner-native", meshAddress: "10.8.0.3" },
      { name: "satellite", meshAddress: "10.8.0.2" },
    ]);
    expect(exported.syncServers).toEqual([
      { name: "archive", meshAddress: "10.8.0.4", sync: "wiki-copy", path: "wiki" },
    ]);
    expect(exported.sftp.directories).toEqual(["wiki"]);
    expect(exported.usesVolume).toBe(true);
  });

  it("gives the export the syncs that watch it, and each watched sync how to follow its remote root", () => {
    // SSH_FLEET's wiki-copy (archive, ssh://) is watched; the mount's wiki is not.
    const [exported] = stepsOf(plan.steps, "export");
    expect(exported.watchers).toEqual([
      { name: "archive", meshAddress: "10.8.0.4", sync: "wiki-copy", directory: "/tank/meshfs/state/wiki" },
    ]);
    const syncs = stepsOf(plan.steps, "sync");
    expect(syncs.find((s) => s.sync.name === "wiki")?.units.remoteWatch).toBeUndefined();
    expect(syncs.find((s) => s.sync.name === "wiki-copy")?.units.remoteWatch).toEqual({
      login: "meshfs-watch",
      serverMeshAddress: "10.8.0.1",
      directory: "/tank/meshfs/state/wiki",
      hostKeyAlias: "swarm-meshfs",
      knownHosts: "/etc/swarm/unison/wiki-copy.known_hosts",
      wireguardUnit: "wg-quick@wg0.service",
    });
    expect(stepCommandNames(exported)).toEqual([
      "meshfs-zfs",
      "meshfs-sftp",
      "meshfs-watch",
      "meshfs-snapshots",
      "meshfs-hostkey",
    ]);
    expect(stepCommandNames(syncs.find((s) => s.sync.name === "wiki-copy") as SyncStep)).toEqual([
      "archive-wiki-copy-sync-key",
      "archive-wiki-copy-sync-watch-key",
      "archive-wiki-copy-sync-units",
    ]);
  });

  it("gives a watched sync through a mount the mount's pinned host key, and an unwatched export no watch step", () => {
    const watched = planFleet(
      storageFleet((raw) => ({
        ...raw,
        syncs: (raw.syncs as { watch?: boolean }[]).map((s) => ({ ...s, watch: true })),
      })),
    );
    const [sync] = stepsOf(watched.steps, "sync");
    expect(sync.units.remoteWatch?.knownHosts).toBe("/etc/swarm/meshfs/meshfs.known_hosts");
    expect(sync.units.remoteWatch?.directory).toBe("/tank/meshfs/state/wiki");
    const [unwatched] = stepsOf(planFleet(STORAGE_FLEET).steps, "export");
    expect(unwatched.watchers).toEqual([]);
    expect(stepCommandNames(unwatched)).not.toContain("meshfs-watch");
  });

  it("leaves the peers' keys to the health component", () => {
    const health = stepsOf(plan.steps, "health").find((s) => s.host === "satellite");
    expect(health?.expectations.peers).toEqual([{ name: "anchor", meshAddress: "10.8.0.1", publicKey: "" }]);
    expect(health?.everyHost).toBe(false);
  });
});

describe("export directories", () => {
  const directories = (config: FleetConfig) => stepsOf(planFleet(config).steps, "export")[0].sftp.directories;

  it("lists the remote roots of syncs through mounts of the export, with their parents", () => {
    const more = storageFleet((raw) => {
      const withSsh = withSshSync(raw);
      const syncs = withSsh.syncs as Record<string, unknown>[];
      const through = (name: string, mountPath: string) => ({
        ...syncs[0],
        name,
        local: `/home/ai-streamer/${name}`,
        remote: { mountPath },
      });
      return {
        ...withSsh,
        syncs: [...syncs, through("notes", "/mnt/meshfs/team/notes"), through("all", "/mnt/meshfs")],
      };
    });
    expect(directories(more)).toEqual(["team", "team/notes", "wiki"]);
  });

  it("leaves out ssh:// roots: the sftp step creates and marks those", () => {
    const viaSsh = storageFleet((raw) => {
      const withSsh = withSshSync(raw);
      const copy = (withSsh.syncs as Record<string, unknown>[])[1];
      return { ...withSsh, syncs: [{ ...copy, remote: { export: "meshfs", path: "only-over-ssh" } }] };
    });
    expect(directories(viaSsh)).toEqual([]);
  });
});

describe("the lookups validation can call", () => {
  const mounts = [{ host: "a", path: "/mnt/meshfs" }];

  it.each([
    ["/mnt/meshfs", true],
    ["/mnt/meshfs/wiki", true],
    ["/mnt/meshfs//wiki/", true],
    ["/mnt/meshfs2", false],
    ["/mnt", false],
  ])("mountHolding(%s) finds the mount: %p", (path, found) => {
    expect(mountHolding(mounts, "a", path) !== undefined).toBe(found);
    expect(mountHolding(mounts, "b", path)).toBeUndefined();
  });

  it("resolves a remote, or says it does not resolve", () => {
    expect(resolveSyncRemote(STORAGE_FLEET, STORAGE_FLEET.syncs[0])?.export.name).toBe("meshfs");
    expect(
      resolveSyncRemote(STORAGE_FLEET, { host: "hetzner-native", remote: { mountPath: "/srv/elsewhere" } }),
    ).toBeUndefined();
    expect(resolveSyncRemote(STORAGE_FLEET, { host: "archive", remote: { export: "nope" } })).toBeUndefined();
    expect(
      resolveSyncRemote(STORAGE_FLEET, { host: "archive", remote: { export: "meshfs", path: "/a/./b/" } }),
    ).toEqual(expect.objectContaining({ kind: "ssh", path: "a/b" }));
  });
});

/**
 * Wires the components of a fleet from validated config. `index.ts` calls it
 * for `pulumi up`; the offline tools (render, the lab suite, benchmarks) call
 * it under Pulumi's mock runtime.
 */
import * as pulumi from "@pulumi/pulumi";
import { FleetPlan, HostPlan, planFleet } from "./config/model";
import { FleetConfig } from "./config/types";
import * as command from "@pulumi/command";
import { commandChanges, HealthGate } from "./components/healthGate";
import { adminSshKey, requireCloudCatalogue } from "./components/hcloudProject";
import { HetznerHost } from "./components/hetznerHost";
import { exportDirectories, MeshfsExport } from "./components/meshfsExport";
import { SshfsAutomount } from "./components/sshfsAutomount";
import { SshKeypair } from "./components/sshKeypair";
import { UnisonSync } from "./components/unisonSync";
import { WireGuardKeypair } from "./components/wireguardKeypair";
import { WireGuardMesh } from "./components/wireguardMesh";
import { isInside } from "./templates/systemd";
import { renderMermaid } from "./templates/topology";

export interface HostOutputs {
  readonly meshAddress: string;
  readonly publicKey: pulumi.Output<string>;
  readonly endpoint: pulumi.Output<string>;
  /** Address and port the admin reaches the host at over SSH. */
  readonly ssh: pulumi.Output<string>;
  /** The host's SSH host key, as pinned by the program: what `npm run status` checks the host against. */
  readonly hostKey: pulumi.Output<string>;
}

export interface FleetOutputs {
  readonly plan: FleetPlan;
  readonly hosts: Record<string, HostOutputs>;
  readonly topology: string;
}

export interface FleetSecrets {
  /** The admin private key (OpenSSH format), a secret. */
  readonly sshPrivateKey: pulumi.Input<string>;
}

const WIREGUARD_UNIT = "wg-quick@wg0.service";

export function defineFleet(config: FleetConfig, secrets: FleetSecrets): FleetOutputs {
  const plan = planFleet(config);
  const labels = { fleet: "swarm", stack: pulumi.getStack() };

  const needsCloudKey = plan.hosts.some((h) => h.config.hcloud !== undefined);
  const cloudChecked = needsCloudKey ? requireCloudCatalogue(config) : undefined;
  const sshKey = needsCloudKey
    ? adminSshKey("admin", { publicKey: config.admin.sshPublicKey, labels, after: cloudChecked })
    : undefined;

  const hosts = new Map<string, HetznerHost>();
  for (const host of plan.hosts) {
    hosts.set(
      host.name,
      new HetznerHost(host.name, {
        host,
        admin: config.admin,
        sshKeyId: sshKey?.id,
        sshPrivateKey: secrets.sshPrivateKey,
        listenPort: config.mesh.listenPort,
        labels,
      }),
    );
  }
  const machine = (name: string): HetznerHost => hosts.get(name) as HetznerHost;

  const keypairs = new Map(
    plan.hosts.map((h) => [h.name, new WireGuardKeypair(`${h.name}-wg`, { rotation: h.config.keyRotation })]),
  );
  const mesh = new WireGuardMesh("mesh", {
    plan,
    hosts: new Map(
      plan.hosts.map((h) => [
        h.name,
        {
          connection: machine(h.name).connection,
          user: machine(h.name).user,
          endpoint: machine(h.name).publicAddress,
          keypair: keypairs.get(h.name) as WireGuardKeypair,
          bootstrap: machine(h.name).bootstrap,
        },
      ]),
    ),
  });
  const meshReady = (name: string): command.remote.Command =>
    mesh.members.get(name) as command.remote.Command;

  // Every command that runs on a host, for that host's health gate.
  const onHost = new Map<string, command.remote.Command[]>(
    plan.hosts.map((h) => [h.name, [machine(h.name).bootstrap, meshReady(h.name)]]),
  );
  const runsOn = <T extends { commands: readonly command.remote.Command[] }>(
    host: string,
    component: T,
  ): T => {
    onHost.get(host)?.push(...component.commands);
    return component;
  };

  // One client key per (export, client host): a mount and an ssh:// sync on the same host share it.
  const clientKeys = new Map<string, SshKeypair>();
  const clientKey = (exportName: string, host: string): SshKeypair => {
    const id = `${exportName}-${host}`;
    let key = clientKeys.get(id);
    if (!key) {
      key = new SshKeypair(`${id}-client`, { comment: `swarm-${exportName}@${host}` });
      clientKeys.set(id, key);
    }
    return key;
  };

  const exports = new Map<string, MeshfsExport>();
  for (const exported of config.exports) {
    const server = plan.byName.get(exported.host) as HostPlan;
    const client = (host: string) => ({
      name: host,
      meshAddress: (plan.byName.get(host) as HostPlan).meshAddress,
      publicKey: clientKey(exported.name, host).publicKey,
    });
    // Mounting hosts get a chrooted sftp key; ssh:// sync hosts get a key forced to `unison -server`.
    const mounting = [
      ...new Set(config.mounts.filter((m) => m.export === exported.name).map((m) => m.host)),
    ].sort();
    const syncServers = config.syncs
      .filter((s) => s.remote.export === exported.name)
      .map((s) => ({ ...client(s.host), sync: s.name, path: s.remote.path ?? "" }));
    exports.set(
      exported.name,
      runsOn(
        server.name,
        new MeshfsExport(
          exported.name,
          {
            export: exported,
            host: server,
            clients: mounting.map(client),
            syncServers,
            directories: exportDirectories(config, exported.name),
            connection: machine(server.name).connection,
            user: machine(server.name).user,
            volumeDevice: machine(server.name).volumeDevice,
          },
          { dependsOn: [meshReady(server.name)] },
        ),
      ),
    );
  }
  const exportOf = (name: string) => {
    const exported = config.exports.find((e) => e.name === name);
    const component = exports.get(name);
    if (!exported || !component) {
      throw new Error(`export ${name} is not declared; validation should have caught this`);
    }
    return { exported, component, server: plan.byName.get(exported.host) as HostPlan };
  };

  const automounts = new Map<string, SshfsAutomount>();
  for (const mount of config.mounts) {
    const { exported, component, server } = exportOf(mount.export);
    automounts.set(
      `${mount.host}:${mount.path}`,
      runsOn(
        mount.host,
        new SshfsAutomount(
          `${mount.host}-${mount.export}-mount`,
          {
            mount,
            export: exported,
            serverMeshAddress: server.meshAddress,
            serverHostKey: component.hostKey,
            clientKey: clientKey(exported.name, mount.host),
            connection: machine(mount.host).connection,
            user: machine(mount.host).user,
            wireguardUnit: WIREGUARD_UNIT,
          },
          { dependsOn: [component.ready, meshReady(mount.host)] },
        ),
      ),
    );
  }

  for (const sync of config.syncs) {
    const mountPath = sync.remote.mountPath;
    const mount =
      mountPath === undefined
        ? undefined
        : config.mounts.find((m) => m.host === sync.host && isInside(mountPath, m.path));
    const dependsOn: pulumi.Resource[] = [meshReady(sync.host)];
    if (mount) {
      dependsOn.push((automounts.get(`${mount.host}:${mount.path}`) as SshfsAutomount).ready);
    }
    let remoteExport;
    if (sync.remote.export !== undefined) {
      const { exported, component, server } = exportOf(sync.remote.export);
      remoteExport = {
        export: exported,
        serverMeshAddress: server.meshAddress,
        serverHostKey: component.hostKey,
        clientKey: clientKey(exported.name, sync.host),
      };
      dependsOn.push(component.ready);
    }
    runsOn(
      sync.host,
      new UnisonSync(
        `${sync.host}-${sync.name}-sync`,
        {
          sync,
          mount,
          remoteExport,
          connection: machine(sync.host).connection,
          user: machine(sync.host).user,
        },
        { dependsOn },
      ),
    );
  }

  // Last on each host: the health gate, after the host and its peers' tunnels have converged.
  for (const host of plan.hosts) {
    const commands = onHost.get(host.name) ?? [];
    new HealthGate(
      `${host.name}-health`,
      {
        host,
        plan,
        health: config.health,
        publicKeys: mesh.publicKeys,
        connection: machine(host.name).connection,
        user: machine(host.name).user,
        changes: commandChanges(commands),
      },
      { dependsOn: [...commands, ...host.peers.map((p) => meshReady(p.name))] },
    );
  }

  const outputs: Record<string, HostOutputs> = {};
  for (const host of plan.hosts) {
    const h = machine(host.name);
    outputs[host.name] = {
      meshAddress: host.meshAddress,
      publicKey: (keypairs.get(host.name) as WireGuardKeypair).publicKey,
      endpoint: pulumi.interpolate`${h.publicAddress}:${config.mesh.listenPort}`,
      ssh: pulumi.unsecret(h.connection.apply((c) => `${c.user}@${c.host}:${c.port}`)),
      hostKey: h.hostKey,
    };
  }
  return { plan, hosts: outputs, topology: renderMermaid(plan) };
}

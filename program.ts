/**
 * Wires the components of a fleet from validated config. `index.ts` calls it
 * for `pulumi up`; the offline tools (render, the lab suite, benchmarks) call
 * it under Pulumi's mock runtime.
 */
import * as pulumi from "@pulumi/pulumi";
import { FleetPlan, planFleet } from "./config/model";
import { FleetConfig } from "./config/types";
import * as command from "@pulumi/command";
import { commandChanges, HealthGate } from "./components/healthGate";
import { adminSshKey, requireCloudCatalogue } from "./components/hcloudProject";
import { HetznerHost } from "./components/hetznerHost";
import { exportWatcherId, MeshfsExport } from "./components/meshfsExport";
import { SshfsAutomount } from "./components/sshfsAutomount";
import { SshKeypair } from "./components/sshKeypair";
import { UnisonSync } from "./components/unisonSync";
import { WireGuardKeypair } from "./components/wireguardKeypair";
import { ZfsReplica } from "./components/zfsReplica";
import { nextTurn } from "./components/turns";
import { MeshMember, WireGuardMesh } from "./components/wireguardMesh";
import { MountStep } from "./config/plan";
import { renderMermaid } from "./templates/topology";
import { hostPort } from "./config/endpoints";
import { watchKeyComment } from "./templates/meshfsWatch";

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

/**
 * Defines every resource of the fleet, step by step in the plan's order,
 * letting the registrations of each step go on before the next one (see
 * `nextTurn`). Resolves once every resource is defined; their registrations
 * may still be under way.
 */
export async function defineFleet(config: FleetConfig, secrets: FleetSecrets): Promise<FleetOutputs> {
  const plan = planFleet(config);
  const labels = { fleet: "swarm", stack: pulumi.getStack() };
  const needsCloudKey = plan.hosts.some((h) => h.config.hcloud !== undefined);
  const cloudChecked = needsCloudKey ? requireCloudCatalogue(config) : undefined;
  const sshKey = needsCloudKey
    ? adminSshKey("admin", { publicKey: config.admin.sshPublicKey, labels, after: cloudChecked })
    : undefined;

  const machines = new Map<string, HetznerHost>();
  const keypairs = new Map<string, WireGuardKeypair>();
  const exportsByName = new Map<string, MeshfsExport>();
  const automounts = new Map<MountStep, SshfsAutomount>();
  const clientKeys = new Map<string, SshKeypair>();
  const watchKeys = new Map<string, SshKeypair>();
  let mesh: WireGuardMesh | undefined;
  // Every command that runs on a host, for that host's health gate.
  const onHost = new Map<string, command.remote.Command[]>(plan.hosts.map((h) => [h.name, []]));
  const on = (host: string) => {
    const machine = machines.get(host) as HetznerHost;
    return { connection: machine.connection, user: machine.user, repairs: config.repairs };
  };
  const meshReady = (host: string) => (mesh as WireGuardMesh).members.get(host) as command.remote.Command;
  const runsOn = <T extends { commands: readonly command.remote.Command[] }>(
    host: string,
    component: T,
  ): T => {
    onHost.get(host)?.push(...component.commands);
    return component;
  };
  // One client key per (export, client host): a mount and an ssh:// sync on the same host share it.
  const clientKey = (exportName: string, host: string): SshKeypair => {
    const id = `${exportName}-${host}`;
    let key = clientKeys.get(id);
    if (!key) {
      key = new SshKeypair(`${id}-client`, { comment: `swarm-${exportName}@${host}` });
      clientKeys.set(id, key);
    }
    return key;
  };

  // One watch key per sync in watch mode: the export authorizes its public half, the sync host holds it.
  const watchKey = (host: string, sync: string): SshKeypair => {
    const id = `${host}-${sync}`;
    let key = watchKeys.get(id);
    if (!key) {
      key = new SshKeypair(`${id}-watch`, { comment: watchKeyComment(host, sync) });
      watchKeys.set(id, key);
    }
    return key;
  };

  for (const step of plan.steps) {
    await nextTurn();
    switch (step.kind) {
      case "bootstrap": {
        const machine = new HetznerHost(step.name, {
          step,
          sshKeyId: sshKey?.id,
          sshPrivateKey: secrets.sshPrivateKey,
          labels,
          repairs: config.repairs,
        });
        machines.set(step.host, machine);
        onHost.get(step.host)?.push(machine.bootstrap);
        break;
      }
      case "wireguardKey":
        keypairs.set(step.host, new WireGuardKeypair(step.name, { rotation: step.rotation }));
        break;
      case "mesh": {
        const members = step.hosts.map((h): [string, MeshMember] => {
          const machine = machines.get(h.host) as HetznerHost;
          const { bootstrap, publicAddress: endpoint, publicAddress6: endpoint6 } = machine;
          const keypair = keypairs.get(h.host) as WireGuardKeypair;
          return [h.host, { ...on(h.host), endpoint, endpoint6, bootstrap, keypair }];
        });
        mesh = await WireGuardMesh.define(step.name, { step, members: new Map(members) });
        step.hosts.forEach((h) => onHost.get(h.host)?.push(...(mesh?.commands.get(h.host) ?? [])));
        break;
      }
      case "export": {
        const hosts = [...step.clients, ...step.syncServers].map((c) => c.name);
        const keys = new Map(hosts.map((h) => [h, clientKey(step.export.name, h).publicKey]));
        const watched = new Map(
          step.watchers.map((w) => [exportWatcherId(w), watchKey(w.name, w.sync).publicKey]),
        );
        const volumeDevice = machines.get(step.host)?.volumeDevice;
        const args = { step, clientKeys: keys, watchKeys: watched, ...on(step.host), volumeDevice };
        const dependsOn = [meshReady(step.host)];
        exportsByName.set(
          step.export.name,
          runsOn(step.host, new MeshfsExport(step.name, args, { dependsOn })),
        );
        break;
      }
      case "replica": {
        const target = machines.get(step.host) as HetznerHost;
        const side = (host: string) => ({ connection: on(host).connection, user: on(host).user });
        const replica = new ZfsReplica(
          step.name,
          {
            step,
            source: side(step.server.name),
            target: { ...side(step.host), hostKey: target.hostKey, volumeDevice: target.volumeDevice },
            repairs: config.repairs,
          },
          // The export's dataset exists, and both ends of the tunnel are up.
          {
            dependsOn: [
              (exportsByName.get(step.export.name) as MeshfsExport).ready,
              meshReady(step.host),
              meshReady(step.server.name),
            ],
          },
        );
        replica.commandsOn.forEach((commands, host) => onHost.get(host)?.push(...commands));
        break;
      }
      case "mount": {
        const server = exportsByName.get(step.export.name) as MeshfsExport;
        const args = {
          step,
          serverHostKey: server.hostKey,
          clientKey: clientKey(step.export.name, step.host),
          ...on(step.host),
        };
        const dependsOn = [server.ready, meshReady(step.host)];
        automounts.set(step, runsOn(step.host, new SshfsAutomount(step.name, args, { dependsOn })));
        break;
      }
      case "sync": {
        const { remote } = step;
        const server = exportsByName.get(remote.export.name) as MeshfsExport;
        const ssh =
          remote.kind === "ssh"
            ? { serverHostKey: server.hostKey, clientKey: clientKey(remote.export.name, step.host) }
            : undefined;
        const dependsOn: pulumi.Resource[] = [meshReady(step.host)];
        dependsOn.push(
          remote.kind === "mount" ? (automounts.get(remote.mount) as SshfsAutomount).ready : server.ready,
        );
        const watch = step.sync.watch ? watchKey(step.host, step.sync.name) : undefined;
        runsOn(
          step.host,
          new UnisonSync(step.name, { step, ssh, watchKey: watch, ...on(step.host) }, { dependsOn }),
        );
        break;
      }
      case "health": {
        // Last on each host: after the host and its peers' tunnels have converged.
        const commands = onHost.get(step.host) ?? [];
        // Hosts reached through the hub too: the gate pings them.
        const peers = [...step.expectations.peers, ...step.expectations.routed].map((p) => meshReady(p.name));
        const args = {
          step,
          publicKeys: (mesh as WireGuardMesh).publicKeys,
          ...on(step.host),
          changes: commandChanges(commands),
        };
        new HealthGate(step.name, { ...args, after: [...commands, ...peers] });
        break;
      }
    }
  }

  const outputs: Record<string, HostOutputs> = {};
  for (const host of plan.hosts) {
    const h = machines.get(host.name) as HetznerHost;
    outputs[host.name] = {
      meshAddress: host.meshAddress,
      publicKey: (keypairs.get(host.name) as WireGuardKeypair).publicKey,
      endpoint: h.publicAddress.apply((address) => hostPort(address, config.mesh.listenPort)),
      ssh: pulumi.unsecret(h.connection.apply((c) => `${c.user}@${hostPort(c.host, c.port)}`)),
      hostKey: h.hostKey,
    };
  }
  return { plan, hosts: outputs, topology: renderMermaid(plan) };
}

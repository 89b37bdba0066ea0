import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ReplicaStep, WIREGUARD_UNIT } from "../config/plan";
import {
  receiveScript,
  receiveTeardownScript,
  sendKeyScript,
  sendScript,
  sendTeardownScript,
} from "../templates/replica";
import { commandRecord } from "../templates/scrub";
import { SshKeypair } from "./sshKeypair";
import { hashedText, hostCommand, keyText, SshConnection } from "./remote";

/** How the component reaches one host. */
export interface ReplicaSide {
  readonly connection: pulumi.Input<SshConnection>;
  /** SSH user of the connection; scripts run through sudo unless it is root. */
  readonly user: string;
}

export interface ZfsReplicaArgs {
  /** The replica, its export and both hosts, resolved. */
  readonly step: ReplicaStep;
  /** The export host, which sends. */
  readonly source: ReplicaSide;
  /** The replica host, which receives. */
  readonly target: ReplicaSide & {
    /** Its SSH host key, `ssh-ed25519 AAAA...`: the sender pins it. */
    readonly hostKey: pulumi.Input<string>;
    /** Its volume device, which stands for `volume` in the replica's `pool.devices`. */
    readonly volumeDevice?: pulumi.Input<string>;
  };
  /** The stack's `swarm:repairs`. */
  readonly repairs?: Readonly<Record<string, number>>;
}

/**
 * A replica of an export's dataset on another host: the replica host gets
 * its pool and a user that can only receive into the replica, the export
 * host a key of its own for that user and a timer that sends, every
 * interval, what the replica lacks (docs/replicas.md).
 */
export class ZfsReplica extends pulumi.ComponentResource {
  /** Every remote command of the component, by the host it runs on. */
  public readonly commandsOn: ReadonlyMap<string, readonly command.remote.Command[]>;

  constructor(name: string, args: ZfsReplicaArgs, opts?: pulumi.ComponentResourceOptions) {
    super("swarm:meshfs:Replica", name, {}, opts);
    const { step } = args;
    const plan = step.replica;
    const key = new SshKeypair(
      `${name}-sender`,
      { comment: `swarm-${plan.exportName}@${plan.source.host}` },
      { parent: this },
    );

    const receiveName = `${name}-receive`;
    const record = commandRecord(receiveName);
    const receive = pulumi
      .all([key.publicKey, step.usesVolume ? args.target.volumeDevice : undefined])
      .apply(([publicKey, volume]) =>
        receiveScript(
          {
            ...plan,
            pool: {
              ...plan.pool,
              devices: plan.pool.devices.map((d) => (d === "volume" ? (volume as string) : d)),
            },
          },
          publicKey,
          record,
        ),
      );
    const receiveCommand = hostCommand(
      receiveName,
      {
        connection: args.target.connection,
        user: args.target.user,
        repairs: args.repairs,
        text: hashedText(receive, receiveTeardownScript(plan, record)),
      },
      { parent: this },
    );

    const source = { connection: args.source.connection, user: args.source.user, repairs: args.repairs };
    const keyScript = sendKeyScript(plan);
    const keyCommand = hostCommand(
      `${name}-key`,
      {
        ...source,
        stdin: key.privateKey,
        text: keyText(keyScript, key.publicKey),
        secret: true,
      },
      { parent: this },
    );
    const send = pulumi
      .output(args.target.hostKey)
      .apply((hostKey) => sendScript(plan, hostKey, WIREGUARD_UNIT));
    const sendCommand = hostCommand(
      `${name}-send`,
      { ...source, text: hashedText(send, sendTeardownScript(plan)) },
      { parent: this, dependsOn: [keyCommand, receiveCommand] },
    );
    this.commandsOn = new Map([
      [step.host, [receiveCommand]],
      [step.server.name, [keyCommand, sendCommand]],
    ]);
    this.registerOutputs({});
  }
}

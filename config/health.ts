import { ObjectReader } from "./reader";
import { ConfigError, Seconds } from "./types";

/**
 * `swarm:health`: what the health gate run after each converge waits for and
 * tolerates, and where the Prometheus textfile metrics go.
 */
export interface HealthConfig {
  /** How long the gate waits for each peer to answer over the mesh with a fresh handshake. Defaults to 60 s. */
  readonly handshakeWait: Seconds;
  /**
   * A peer whose latest handshake is older than this counts as down. WireGuard
   * re-handshakes every 2 min while traffic flows, so it must exceed that.
   * Defaults to 180 s.
   */
  readonly maxHandshakeAge: Seconds;
  /** Echo requests sent to each peer's mesh address per check; one reply is enough. Defaults to 3. */
  readonly pingCount: number;
  /** Longest the gate waits for an automounted sshfs mount to come up on first access. Defaults to 20 s. */
  readonly mountTimeout: Seconds;
  /**
   * How long the gate waits for a sync whose last run failed to run once more:
   * a failure from before the converge must not fail a converge that fixed it.
   * Defaults to 2 min.
   */
  readonly syncWait: Seconds;
  /** How often the metrics timer rewrites the textfile. Defaults to 60 s. */
  readonly metricsInterval: Seconds;
  /** Absolute directory the node exporter's textfile collector reads. Defaults to `/var/lib/prometheus/node-exporter`. */
  readonly textfileDir: string;
  /** Run the gate after each converge and fail the deployment when it fails. Defaults to true. */
  readonly gate: boolean;
}

export const DEFAULT_HEALTH: HealthConfig = {
  handshakeWait: 60,
  maxHandshakeAge: 180,
  pingCount: 3,
  mountTimeout: 20,
  syncWait: 120,
  metricsInterval: 60,
  textfileDir: "/var/lib/prometheus/node-exporter",
  gate: true,
};

/** WireGuard's REKEY_AFTER_TIME plus its retry window: a busy tunnel's handshake may be this old. */
const MIN_HANDSHAKE_AGE: Seconds = 150;

/**
 * Reads `swarm:health` (absent means all defaults). Every problem is pushed
 * onto `errors` with its path; fields with errors fall back to their default
 * so validation can go on.
 */
export function readHealth(raw: unknown, path: string, errors: ConfigError[]): HealthConfig {
  if (raw === undefined || raw === null) {
    return DEFAULT_HEALTH;
  }
  const reader = ObjectReader.of(path, raw, errors);
  if (reader === undefined) {
    return DEFAULT_HEALTH;
  }
  const handshakeWait = reader.duration("handshakeWait", { min: 1, max: 3600 });
  const maxHandshakeAge = reader.duration("maxHandshakeAge", { min: 1, max: 86400 });
  if (maxHandshakeAge !== undefined && maxHandshakeAge < MIN_HANDSHAKE_AGE) {
    reader.error(
      "maxHandshakeAge",
      `${maxHandshakeAge}s is too short: WireGuard re-handshakes only every 2 min, so a healthy peer's handshake can be that old; use ${MIN_HANDSHAKE_AGE}s or more`,
    );
  }
  const pingCount = reader.integer("pingCount", { min: 1, max: 100 });
  const mountTimeout = reader.duration("mountTimeout", { min: 1, max: 600 });
  const syncWait = reader.duration("syncWait", { min: 1, max: 3600 });
  const metricsInterval = reader.duration("metricsInterval", { min: 10, max: 86400 });
  const textfileDir = reader.string("textfileDir", {
    pattern: /^(?:\/[A-Za-z0-9._@+-]+)+\/?$/,
    patternHint:
      "must be an absolute directory path of letters, digits and . _ @ + -, e.g. /var/lib/prometheus/node-exporter",
  });
  const climbs = textfileDir !== undefined && textfileDir.split("/").includes("..");
  if (climbs) {
    reader.error(
      "textfileDir",
      `${JSON.stringify(textfileDir)} must not contain "..": write the directory plainly`,
    );
  }
  const gate = reader.boolean("gate");
  reader.rejectUnknownKeys();
  return {
    handshakeWait: handshakeWait ?? DEFAULT_HEALTH.handshakeWait,
    maxHandshakeAge:
      maxHandshakeAge !== undefined && maxHandshakeAge >= MIN_HANDSHAKE_AGE
        ? maxHandshakeAge
        : DEFAULT_HEALTH.maxHandshakeAge,
    pingCount: pingCount ?? DEFAULT_HEALTH.pingCount,
    mountTimeout: mountTimeout ?? DEFAULT_HEALTH.mountTimeout,
    syncWait: syncWait ?? DEFAULT_HEALTH.syncWait,
    metricsInterval: metricsInterval ?? DEFAULT_HEALTH.metricsInterval,
    textfileDir:
      textfileDir === undefined || climbs ? DEFAULT_HEALTH.textfileDir : textfileDir.replace(/(.)\/+$/, "$1"),
    gate: gate ?? DEFAULT_HEALTH.gate,
  };
}

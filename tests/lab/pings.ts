/**
 * Continuous pings a lab check keeps going while it changes the fleet, and what they saw.
 *
 * iputils ping stops at SIGINT without waiting for the reply to the request it sent last, and
 * counts that request as lost: its summary line alone can report a loss although nothing was
 * dropped. The replies are read one by one instead (`-D` stamps each line,
 * `-O` reports a request with no answer when the next one goes out), and only the requests sent
 * within the last second before the stop may still be waiting for their answer.
 */

export interface PingTarget {
  name: string;
  address: string;
}

/** Seconds between requests. */
export const PING_INTERVAL = 0.2;

function files(tag: string, target: PingTarget): { log: string; pid: string } {
  const base = `/run/swarm-ping-${tag}-${target.name}`;
  return { log: `${base}.log`, pid: `${base}.pid` };
}

/** The script that starts one ping per target in the background, each with its log and PID file. */
export function startPingsScript(tag: string, targets: readonly PingTarget[]): string {
  return targets
    .map((t) => {
      const f = files(tag, t);
      return `rm -f ${f.log} ${f.pid}; nohup ping -D -O -n -i ${PING_INTERVAL} ${t.address} > ${f.log} 2>&1 & echo $! > ${f.pid}`;
    })
    .join("\n");
}

/** The script that interrupts them all (each by its PID) and lets them print their summaries. */
export function stopPingsScript(tag: string, targets: readonly PingTarget[]): string {
  return `${targets.map((t) => `kill -INT "$(cat ${files(tag, t).pid})"`).join("; ")}; sleep 1`;
}

/** The path of a target's log, for reading it after the stop. */
export function pingLogPath(tag: string, target: PingTarget): string {
  return files(tag, target).log;
}

export interface PingOutcome {
  /** ping's own summary line, or "no summary". */
  summary: string;
  transmitted: number;
  /** Requests without a reply, except those sent in the last second before the stop. */
  lost: number[];
  /** Lines reporting an ICMP error or a send failure: each is a loss too. */
  errors: string[];
}

/** Reads one ping log (`ping -D -O`, interrupted). */
export function pingOutcome(log: string): PingOutcome {
  const lines = log.split("\n");
  const summary = /(\d+) packets transmitted, (\d+) received/.exec(log);
  const transmitted = summary ? Number(summary[1]) : 0;
  const answered = new Set<number>();
  for (const line of lines) {
    const reply = /\bbytes from .*\bicmp_seq=(\d+)\b/.exec(line);
    if (reply) {
      answered.add(Number(reply[1]));
    }
  }
  const inFlight = Math.ceil(1 / PING_INTERVAL);
  const lost: number[] = [];
  for (let seq = 1; seq <= transmitted - inFlight; seq++) {
    if (!answered.has(seq)) {
      lost.push(seq);
    }
  }
  return {
    summary: summary?.[0] ?? "no summary",
    transmitted,
    lost,
    errors: lines.filter((l) => /unreachable|prohibited|error|not available|not permitted/i.test(l)),
  };
}

/**
 * What went wrong for one target, as lines for an error message (empty when nothing did):
 * no summary, too few requests, lost requests (with what ping said about them), ICMP errors.
 */
export function pingProblems(from: string, target: PingTarget, log: string, atLeast: number): string[] {
  const o = pingOutcome(log);
  const where = `${from} → ${target.name} (${target.address})`;
  const problems: string[] = [];
  if (o.transmitted < atLeast) {
    problems.push(`${where}: ${o.summary}, expected at least ${atLeast} requests`);
  }
  if (o.lost.length > 0) {
    const said = log
      .split("\n")
      .filter((l) => o.lost.some((seq) => new RegExp(`\\bicmp_seq=${seq}\\b`).test(l)))
      .slice(0, 5);
    problems.push(
      `${where}: ${o.lost.length} of ${o.transmitted} requests unanswered (icmp_seq ${o.lost.slice(0, 20).join(", ")})${said.length > 0 ? `:\n  ${said.join("\n  ")}` : ""}`,
    );
  }
  if (o.errors.length > 0) {
    problems.push(`${where}: ${o.errors.slice(0, 3).join("; ")}`);
  }
  return problems;
}

import { PING_INTERVAL, pingOutcome, pingProblems, startPingsScript, stopPingsScript } from "./lab/pings";

/** A `ping -D -O -n` log: one line per answered request, "no answer yet" for the others. */
function log(transmitted: number, unanswered: number[], extra: string[] = []): string {
  const lines = ["PING 10.8.0.54 (10.8.0.54) 56(84) bytes of data."];
  for (let seq = 1; seq <= transmitted; seq++) {
    const at = `[1796300000.${String(seq * 2).padStart(6, "0")}]`;
    lines.push(
      unanswered.includes(seq)
        ? `${at} no answer yet for icmp_seq=${seq}`
        : `${at} 64 bytes from 10.8.0.54: icmp_seq=${seq} ttl=64 time=1.42 ms`,
    );
  }
  lines.push(...extra, "", "--- 10.8.0.54 ping statistics ---");
  const received = transmitted - unanswered.length;
  lines.push(
    `${transmitted} packets transmitted, ${received} received, ${Math.round((100 * unanswered.length) / transmitted)}% packet loss, time 999ms`,
  );
  return `${lines.join("\n")}\n`;
}

const target = { name: "hetzner-native", address: "10.8.0.54" };

describe("continuous pings in the lab", () => {
  const inFlight = Math.ceil(1 / PING_INTERVAL);

  test.each([
    ["every request answered", log(100, []), []],
    // The stop interrupts ping before the reply to its last request: not a loss.
    ["the last request still in flight at the stop", log(100, [100]), []],
    ["requests of the last second in flight", log(100, [100 - inFlight + 1, 100]), []],
    ["a request lost while the fleet changed", log(100, [37]), [37]],
    ["several lost, one of them in the last second", log(100, [1, 50, 51, 99]), [1, 50, 51]],
    ["one before the last second", log(100, [100 - inFlight]), [100 - inFlight]],
  ])("%s", (_name, text, lost) => {
    expect(pingOutcome(text).lost).toEqual(lost);
  });

  test("a reply that came after 'no answer yet' is an answer", () => {
    const text = log(20, [7]).replace(
      "no answer yet for icmp_seq=7",
      "no answer yet for icmp_seq=7\n[1796300000.000099] 64 bytes from 10.8.0.54: icmp_seq=7 ttl=64 time=412 ms",
    );
    expect(pingOutcome(text).lost).toEqual([]);
  });

  test("ICMP errors and send failures are problems even when counted as transmitted", () => {
    const text = log(
      20,
      [],
      [
        "[1796300000.000100] From 10.8.0.1 icmp_seq=21 Destination Host Unreachable",
        "ping: sendmsg: Required key not available",
      ],
    );
    const problems = pingProblems("anchor", target, text, 10);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain("Destination Host Unreachable");
    expect(problems[0]).toContain("Required key not available");
  });

  test("a lost request is reported with its sequence number and what ping said about it", () => {
    const problems = pingProblems("anchor", target, log(100, [37]), 10);
    expect(problems).toEqual([
      "anchor → hetzner-native (10.8.0.54): 1 of 100 requests unanswered (icmp_seq 37):\n  [1796300000.000074] no answer yet for icmp_seq=37",
    ]);
  });

  test("too few requests, or no summary at all, is a problem", () => {
    expect(pingProblems("anchor", target, log(4, []), 10)).toEqual([
      "anchor → hetzner-native (10.8.0.54): 4 packets transmitted, 4 received, expected at least 10 requests",
    ]);
    expect(pingProblems("anchor", target, "ping: connect: Network is unreachable\n", 10)).toEqual([
      "anchor → hetzner-native (10.8.0.54): no summary, expected at least 10 requests",
      "anchor → hetzner-native (10.8.0.54): ping: connect: Network is unreachable",
    ]);
  });

  test("each ping is started and stopped by its own PID file", () => {
    const targets = [target, { name: "satellite", address: "10.8.0.217" }];
    const start = startPingsScript("1e", targets);
    expect(start.split("\n")).toHaveLength(2);
    expect(start).toContain(
      "nohup ping -D -O -n -i 0.2 10.8.0.217 > /run/swarm-ping-1e-satellite.log 2>&1 & echo $! > /run/swarm-ping-1e-satellite.pid",
    );
    expect(stopPingsScript("1e", targets)).toBe(
      'kill -INT "$(cat /run/swarm-ping-1e-hetzner-native.pid)"; kill -INT "$(cat /run/swarm-ping-1e-satellite.pid)"; sleep 1',
    );
  });
});

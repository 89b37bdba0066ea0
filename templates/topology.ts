import { FleetPlan } from "../config/model";

/** Mermaid node ids must be plain words; host names may contain `-`. */
function nodeId(host: string): string {
  return `h_${host.replace(/[^A-Za-z0-9]/g, "_")}`;
}

/**
 * The fleet as a Mermaid flowchart: hosts with their mesh addresses (IPv4, and IPv6 on a dual-stack mesh),
 * WireGuard tunnels, which host exports meshfs and which mount it, and sync
 * arrows. Deterministic: edges sorted, so a no-op change renders the same.
 */
export function renderMermaid(plan: FleetPlan): string {
  const { config } = plan;
  const lines = ["flowchart LR"];
  for (const host of [...plan.hosts].sort((a, b) => a.name.localeCompare(b.name))) {
    const role = [
      config.mesh.topology === "hub" && config.mesh.hub === host.name ? "hub" : "",
      ...host.exports.map((e) => `exports ${e.name}`),
    ]
      .filter((r) => r !== "")
      .join(", ");
    // The IPv6 mesh address (a dual-stack mesh) on the line under the IPv4 one: both are long.
    const label = [host.name, host.meshAddress, host.meshAddress6 ?? "", role]
      .filter((p) => p !== "")
      .join("<br/>");
    lines.push(`  ${nodeId(host.name)}["${label}"]`);
  }
  // A full mesh has hosts² tunnels: node ids are made once per host, not once per tunnel end.
  const ids = new Map(plan.hosts.map((h) => [h.name, nodeId(h.name)]));
  // One edge per tunnel, marked when its packets travel over IPv6 (a host reached only over IPv6).
  const tunnels = new Map<string, boolean>();
  for (const host of plan.hosts) {
    for (const peer of host.peers) {
      const [a, b] = host.name < peer.name ? [host.name, peer.name] : [peer.name, host.name];
      const edge = `${ids.get(a) ?? nodeId(a)}\t${ids.get(b) ?? nodeId(b)}`;
      tunnels.set(edge, (tunnels.get(edge) ?? false) || peer.endpointFamily === "IPv6");
    }
  }
  lines.push(
    ...[...tunnels]
      .map(([edge, six]) => {
        const [a, b] = edge.split("\t");
        return `  ${a} ---|${six ? "wg over IPv6" : "wg"}| ${b}`;
      })
      .sort(),
  );
  const storage: string[] = [];
  for (const step of plan.steps) {
    if (step.kind === "mount") {
      storage.push(
        `  ${nodeId(step.server.name)} -.->|"sshfs ${step.export.name} at ${step.mount.path}"| ${nodeId(step.host)}`,
      );
    } else if (step.kind === "sync") {
      const { sync } = step;
      const remote = sync.remote.mountPath ?? `${sync.remote.export}:${sync.remote.path ?? ""}`;
      storage.push(
        `  ${nodeId(step.host)} <==>|"unison ${sync.name}: ${sync.local} ↔ ${remote}"| ${nodeId(step.remote.server.name)}`,
      );
    }
  }
  lines.push(...storage.sort());
  return `${lines.join("\n")}\n`;
}

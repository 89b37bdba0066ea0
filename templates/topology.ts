import { FleetPlan } from "../config/model";

/** Mermaid node ids must be plain words; host names may contain `-`. */
function nodeId(host: string): string {
  return `h_${host.replace(/[^A-Za-z0-9]/g, "_")}`;
}

/**
 * The fleet as a Mermaid flowchart: hosts with their mesh addresses,
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
    const label = [host.name, host.meshAddress, role].filter((p) => p !== "").join("<br/>");
    lines.push(`  ${nodeId(host.name)}["${label}"]`);
  }
  // A full mesh has hosts² tunnels: node ids are made once per host, not once per tunnel end.
  const ids = new Map(plan.hosts.map((h) => [h.name, nodeId(h.name)]));
  const tunnels = new Set<string>();
  for (const host of plan.hosts) {
    for (const peer of host.peers) {
      const [a, b] = host.name < peer.name ? [host.name, peer.name] : [peer.name, host.name];
      tunnels.add(`  ${ids.get(a) ?? nodeId(a)} ---|wg| ${ids.get(b) ?? nodeId(b)}`);
    }
  }
  lines.push(...[...tunnels].sort());
  const storage: string[] = [];
  for (const mount of config.mounts) {
    const exported = config.exports.find((e) => e.name === mount.export);
    if (exported) {
      storage.push(
        `  ${nodeId(exported.host)} -.->|"sshfs ${exported.name} at ${mount.path}"| ${nodeId(mount.host)}`,
      );
    }
  }
  for (const sync of config.syncs) {
    const exportName = sync.remote.export ?? mountContaining(plan, sync.host, sync.remote.mountPath)?.export;
    const server = config.exports.find((e) => e.name === exportName)?.host ?? sync.host;
    const remote = sync.remote.mountPath ?? `${sync.remote.export}:${sync.remote.path ?? ""}`;
    storage.push(
      `  ${nodeId(sync.host)} <==>|"unison ${sync.name}: ${sync.local} ↔ ${remote}"| ${nodeId(server)}`,
    );
  }
  lines.push(...storage.sort());
  return `${lines.join("\n")}\n`;
}

function mountContaining(plan: FleetPlan, host: string, path: string | undefined) {
  if (path === undefined) {
    return undefined;
  }
  return plan.config.mounts.find(
    (m) => m.host === host && (path === m.path || path.startsWith(`${m.path}/`)),
  );
}

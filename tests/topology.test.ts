/** The mesh picture (`renderMermaid`): the recorded health fleet, IPv4-only and dual-stack. */
import { planFleet } from "../config/model";
import { renderMermaid } from "../templates/topology";
import { DUAL_STACK_PLAN, MESH_ADDRESSES6, PLAN, dualStack, fleetWith } from "./fixtures/health/fleet";

describe("renderMermaid", () => {
  test("an IPv4-only mesh: each host with its mesh address", () => {
    const text = renderMermaid(PLAN);
    expect(text).toMatchSnapshot();
    expect(text).not.toContain("fd31:");
  });

  test("a dual-stack mesh: each host's IPv6 mesh address on the line under its IPv4 one", () => {
    const text = renderMermaid(DUAL_STACK_PLAN);
    expect(text).toMatchSnapshot();
    expect(text).toContain(
      `  h_anchor["anchor<br/>10.8.0.1<br/>${MESH_ADDRESSES6.anchor}<br/>exports meshfs"]\n`,
    );
    // Only the node labels change: tunnels, mounts and syncs are drawn as on IPv4.
    expect(text.replace(/<br\/>fd31:[0-9a-f:]+/g, "")).toBe(renderMermaid(PLAN));
  });

  test("a dual-stack hub: allocated IPv6 addresses, the hub marked", () => {
    const plan = planFleet(
      fleetWith((raw) => {
        const dual = dualStack(raw);
        const hosts = (dual.hosts as Record<string, unknown>[]).map(({ meshAddress6: _, ...h }) => h);
        return { ...dual, hosts, mesh: { ...(dual.mesh as object), topology: "hub", hub: "anchor" } };
      }),
    );
    const text = renderMermaid(plan);
    expect(text).toMatchSnapshot();
    for (const host of plan.hosts) {
      expect(text).toContain(`<br/>${host.meshAddress}<br/>${host.meshAddress6}`);
    }
  });
});

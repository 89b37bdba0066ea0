import { labConfig, labDisks, labHosts, labUpArgs, UNBOOTED } from "../lab/fleet";
import { FleetConfig } from "../config/types";

const stack = (name: string): FleetConfig => labConfig(name, UNBOOTED);

describe("what the lab boots for a stack", () => {
  const lab = stack("lab");

  it("boots the hosts on wireguard-go as if their kernel had no WireGuard, and no other", () => {
    expect(lab.hosts.filter((h) => h.wireguard === "wireguard-go").map((h) => h.name)).toEqual(["satellite"]);
  });

  it("gives each pool device named as a VM disk to its export host, then boots every host", () => {
    expect(labUpArgs(lab)).toEqual([
      "--disk",
      "anchor=swarm-tank",
      "--no-kernel-wireguard",
      "satellite",
      ...lab.hosts.map((h) => `${h.name}=${h.existing!.address}`),
    ]);
  });

  it("leaves devices that are not VM disks to the host", () => {
    const other: FleetConfig = {
      ...lab,
      exports: lab.exports.map((e) => ({
        ...e,
        pool: { ...e.pool, devices: ["/dev/sdb", "/dev/disk/by-id/scsi-0HC_Volume_1"] },
      })),
    };
    expect(labDisks(other)).toEqual([]);
  });

  it("refuses a stack with hcloud hosts: the lab boots existing hosts only", () => {
    expect(() => labHosts(stack("prod"))).toThrow(/not an existing host/);
  });
});

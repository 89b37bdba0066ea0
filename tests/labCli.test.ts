import { labConfig, labDisks, labHosts, labRouters, labUpArgs, UNBOOTED } from "../lab/fleet";
import { FleetConfig } from "../config/types";
import { USAGE, main, parseArguments } from "../lab/cli";

const stack = (name: string): FleetConfig => labConfig(name, UNBOOTED);

describe("what the lab boots for a stack", () => {
  const lab = stack("lab");

  it("boots the hosts on wireguard-go as if their kernel had no WireGuard, and no other", () => {
    expect(lab.hosts.filter((h) => h.wireguard === "wireguard-go").map((h) => h.name)).toEqual(["satellite"]);
  });

  it("gives each pool device named as a VM disk to its export or replica host, then boots every host", () => {
    expect(labUpArgs(lab)).toEqual([
      "--disk",
      "anchor=swarm-tank",
      "--disk",
      "satellite=swarm-backup",
      "--no-kernel-wireguard",
      "satellite",
      "--router",
      "anchor",
      ...lab.hosts.map((h) => `${h.name}=${h.existing!.address}`),
    ]);
  });

  it("leaves devices that are not VM disks to the host", () => {
    const other: FleetConfig = {
      ...lab,
      exports: lab.exports.map((e) => ({
        ...e,
        pool: { ...e.pool, devices: ["/dev/sdb", "/dev/disk/by-id/scsi-0HC_Volume_1"] },
        replicas: e.replicas.map((r) => ({ ...r, pool: { ...r.pool, devices: ["/dev/sdc"] } })),
      })),
    };
    expect(labDisks(other)).toEqual([]);
  });

  it("boots the hub of hub routing as a router, and no host when the hub does not route", () => {
    expect(labRouters(lab)).toEqual(["--router", "anchor"]);
    expect(labRouters({ ...lab, mesh: { ...lab.mesh, hubRouting: false } })).toEqual([]);
    expect(labRouters({ ...lab, mesh: { ...lab.mesh, topology: "full" } })).toEqual([]);
  });

  it("refuses a stack with hcloud hosts: the lab boots existing hosts only", () => {
    expect(() => labHosts(stack("prod"))).toThrow(/not an existing host/);
  });
});

describe("npm run lab: the command line (nothing is booted)", () => {
  async function run(argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out, err };
  }

  it.each([[[]], [["help"]], [["--help"]], [["-h"]]])(
    "%j prints the usage and every verb, exit 0",
    async (argv) => {
      const { code, out, err } = await run(argv);
      expect({ code, err }).toEqual({ code: 0, err: [] });
      expect(out[0]).toBe(USAGE);
      for (const verb of ["up", "converge", "status", "ssh", "down"]) {
        expect(out.some((line) => line.startsWith(`  ${verb} `))).toBe(true);
      }
    },
  );

  it.each([
    [["boot"], "unknown command boot: use one of up, converge, status, ssh, down"],
    [["up", "now"], "unexpected argument now"],
    [["down", "--force"], "Unknown option '--force'"],
    [["--verbose", "status"], "Unknown option '--verbose'"],
    [["ssh"], "ssh needs the lab host to reach, e.g. ssh satellite"],
    [["help", "up"], "unexpected argument up"],
  ])("%j says what is wrong, then the usage line, exit 2", async (argv, message) => {
    expect(await run(argv)).toEqual({ code: 2, out: [], err: [message, USAGE] });
  });

  it("passes what follows ssh HOST on to the host as it is, dashes included", () => {
    expect(parseArguments(["ssh", "satellite", "ls", "-la", "/mnt/meshfs"])).toEqual({
      verb: "ssh",
      rest: ["satellite", "ls", "-la", "/mnt/meshfs"],
    });
  });

  it.each(["up", "converge", "status", "down"])("takes %s alone", (verb) => {
    expect(parseArguments([verb])).toEqual({ verb, rest: [] });
  });
});

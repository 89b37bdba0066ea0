/**
 * Scrubs of the export hosts' pools: per pool, a calendar timer runs
 * `zfs-scrub`, which scrubs the pool (or waits for a scrub already running)
 * and writes what the scrub found to a status file that swarm-health reads;
 * and the parts of the export's snapshots step that install those units, or
 * retire the ones no export asks for any more.
 */
import { SCRUB_PERIODS, ScrubSchedule } from "../config/schema";
import { Seconds } from "../config/types";
import { hostScript, OWNED_DIR, shellQuote, writeFile } from "./shell";
import { execLine, renderUnit, timespan, unitHeader } from "./systemd";
import { LIB_DIR, UNIT_DIR } from "./zfs";

export const SCRUB_PROGRAM = `${LIB_DIR}/zfs-scrub`;
/** Where `zfs-scrub` keeps the result of each pool's last finished scrub, one file per pool. */
export const SCRUB_STATUS_DIR = "/var/lib/swarm/scrub";
/**
 * How far a fleet's scrubs are spread: each host's timer fires at its own
 * fixed random offset within this (`FixedRandomDelay=`), so the hosts of a
 * fleet never all read their disks at once, and each at the same time every
 * period. Far below any period, so health's "overdue" is not moved by it.
 */
export const SCRUB_SPREAD: Seconds = 86400;

/** A pool's scrub, as its export asks for it (not when `scrub: off`). */
export interface ScrubPlan {
  readonly pool: string;
  readonly schedule: ScrubSchedule;
}

export function scrubUnitName(pool: string, suffix: "service" | "timer"): string {
  return `swarm-scrub-${pool}.${suffix}`;
}

/** The status file `zfs-scrub` writes when a scrub of `pool` finished. */
export function scrubStatusPath(pool: string): string {
  return `${SCRUB_STATUS_DIR}/${pool}`;
}

/** The longest time between two scrubs of a schedule; health calls a scrub overdue after twice this. */
export function scrubPeriod(schedule: ScrubSchedule): Seconds {
  return SCRUB_PERIODS[schedule];
}

/**
 * The user property on a pool's root dataset that Debian's zfsutils-linux
 * reads before its own monthly scrub of every pool (cron, the second Sunday,
 * at the same minute on every host): `disable` while swarm scrubs the pool,
 * so that a pool is scrubbed on one schedule, spread over the fleet.
 */
export const DEBIAN_SCRUB_PROPERTY = "org.debian:periodic-scrub";

const SCRUB_PROGRAM_TEXT = hostScript("zfs-scrub.sh", { STATUS_DIR: SCRUB_STATUS_DIR });
const RETIRE_FUNCTION = hostScript("scrub-retire.sh", {
  SCRUB_PROGRAM,
  SCRUB_UNIT_DIR: UNIT_DIR,
  DEBIAN_SCRUB_PROPERTY,
});
const ZFS_CONVERGE = hostScript("zfs-converge.sh");

/** `zfs-scrub POOL`: the same text for every pool. */
export function scrubProgram(): string {
  return SCRUB_PROGRAM_TEXT;
}

export function scrubService(plan: ScrubPlan): string {
  return renderUnit(unitHeader(`Scrub of ZFS pool ${plan.pool}.`), [
    {
      name: "Unit",
      settings: [
        ["Description", `Scrub ZFS pool ${plan.pool} and record what the scrub found`],
        ["Documentation", `file:${SCRUB_PROGRAM}`],
        ["After", "zfs.target"],
      ],
    },
    {
      name: "Service",
      settings: [
        ["Type", "oneshot"],
        ["ExecStart", execLine("", SCRUB_PROGRAM, plan.pool)],
        // A scrub of a large pool takes hours or days; the kernel does the work, the program waits.
        ["TimeoutStartSec", "infinity"],
      ],
    },
  ]);
}

export function scrubTimer(plan: ScrubPlan): string {
  return renderUnit(unitHeader(`Scrub of ZFS pool ${plan.pool}.`), [
    { name: "Unit", settings: [["Description", `Scrub ZFS pool ${plan.pool} ${plan.schedule}`]] },
    {
      name: "Timer",
      settings: [
        ["OnCalendar", plan.schedule],
        // A scrub missed while the host was off runs after boot.
        ["Persistent", true],
        ["RandomizedDelaySec", timespan(SCRUB_SPREAD)],
        ["FixedRandomDelay", true],
      ],
    },
    { name: "Install", settings: [["WantedBy", "timers.target"]] },
  ]);
}

/** The record the command called `command` keeps of what it installed (templates/shell.ts OWNED_DIR). */
export function commandRecord(command: string): string {
  return `${OWNED_DIR}/${command}`;
}

/**
 * Lines of the snapshots step's script, after the prelude: installs the
 * pool's scrub program and units, starts the timer and turns Debian's own
 * scrub of the pool off (without `plan`, `scrub: off`, nothing), then
 * retires every other scrub timer the step installed before (a pool renamed,
 * or turned off), as its record (`record`) lists them, unless another export
 * of the same pool still has it; a retired pool is Debian's to scrub again.
 */
export function scrubInstallPart(plan: ScrubPlan | undefined, record: string): string {
  const retire = `${RETIRE_FUNCTION}swarm_scrub_retire ${shellQuote(record)}`;
  if (plan === undefined) {
    return `${retire}\n`;
  }
  const timer = scrubUnitName(plan.pool, "timer");
  const timerPath = `${UNIT_DIR}/${timer}`;
  return [
    writeFile({ path: SCRUB_PROGRAM, content: scrubProgram(), mode: "0755" }),
    writeFile({
      path: `${UNIT_DIR}/${scrubUnitName(plan.pool, "service")}`,
      content: scrubService(plan),
      mode: "0644",
    }),
    writeFile({ path: timerPath, content: scrubTimer(plan), mode: "0644" }),
    `swarm_activate ${shellQuote(timer)} ${shellQuote(timerPath)}\n`,
    ZFS_CONVERGE,
    `# Debian's own monthly scrub of every pool leaves this one to the timer above.
zfs_converge ${shellQuote(plan.pool)} ${shellQuote(`zfs refused a user property on ${plan.pool}, the root dataset of the pool`)} ${shellQuote(`${DEBIAN_SCRUB_PROPERTY}=disable`)}
`,
    `${retire} ${shellQuote(timer)}\n`,
  ].join("");
}

/**
 * Lines of the snapshots step's teardown: stops and removes the scrub units
 * (and program) the step installed, unless another export of the same pool
 * still has them. Never the pool, never a scrub that is running, never the
 * result of the last one.
 */
export function scrubTeardownPart(record: string): string {
  return `${RETIRE_FUNCTION}swarm_scrub_retire ${shellQuote(record)}\n`;
}

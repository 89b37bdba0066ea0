/**
 * `npm run render -- <stack> <outdir>`: evaluates the program offline under
 * Pulumi's mock runtime and writes every file it would push to each host into
 * `<outdir>/<host>/<path>`, plus each host's scripts and the topology, so a
 * reviewer reads exactly what a change produces. Private keys never reach the
 * output: they travel on a command's stdin, which is not rendered.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { LoadedStack, StackLoadError, loadStack } from "../config/load";
import { defineFleet } from "../program";
import { extractFiles, unwrapRootCommand } from "../templates/shell";
import { installMocks, offlineRunner, promiseOf, settle } from "../offline/mockRuntime";
import { labStackHostKeys } from "../lab/fleet";
import { EXIT, Io, UsageError, parseCommandLine, positionalsAs, processIo } from "./commandLine";

const MARKER = ".swarm-render";

interface Connection {
  host: string;
  port: number;
}

export const USAGE = "usage: npm run render -- <stack> <outdir>";

/** `<stack> <outdir>`; throws a UsageError saying what is wrong with the arguments. */
export function parseArguments(argv: readonly string[]): { stack: string; outdir: string } {
  const { positionals } = parseCommandLine(argv, { options: {}, allowPositionals: true });
  const [stack, outdir] = positionalsAs(positionals, ["stack", "outdir"]);
  return { stack, outdir };
}

/**
 * Renders; resolves to the exit code: 0 rendered, 1 an invalid stack or a
 * failed render, 2 usage. `dir` is where stack files live.
 */
export async function main(argv: readonly string[], io: Io = processIo, dir = "."): Promise<number> {
  let args: { stack: string; outdir: string };
  let loaded: LoadedStack;
  try {
    args = parseArguments(argv);
    loaded = loadStack(args.stack, { dir, pinHostKeys: labStackHostKeys(args.stack) });
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(e.message);
      io.err(USAGE);
      return EXIT.usage;
    }
    if (e instanceof StackLoadError) {
      e.problems.forEach((line) => io.err(line));
      return EXIT.failed;
    }
    throw e;
  }
  try {
    io.out(await render(args.stack, loaded, args.outdir));
    return EXIT.ok;
  } catch (e) {
    io.err(`render failed: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT.failed;
  }
}

/** Writes the render of a loaded stack into `outdir`; returns the summary line. */
async function render(stack: string, { file, config }: LoadedStack, outdir: string): Promise<string> {
  prepareOutdir(outdir);

  const mocks = await installMocks(offlineRunner, stack);
  const fleet = await defineFleet(config, { sshPrivateKey: pulumi.secret("(redacted)") });
  const hostAt = new Map<string, string>();
  for (const [name, host] of Object.entries(fleet.hosts)) {
    const ssh = await promiseOf(host.ssh);
    hostAt.set(ssh.replace(/^[^@]*@/, ""), name);
  }
  await settle();

  const counts = new Map<string, number>();
  const manifests = new Map<string, string[]>();
  for (const resource of mocks.ofType("command:remote:Command")) {
    const connection = resource.plain.connection as Connection;
    const host = hostAt.get(`${connection.host}:${connection.port}`);
    if (host === undefined) {
      throw new Error(
        `command ${resource.name} runs on ${connection.host}:${connection.port}, which is no host`,
      );
    }
    const body = unwrapRootCommand(String(resource.plain.create ?? ""));
    writeOut(outdir, host, `commands/${resource.name}.sh`, body);
    const manifest = manifests.get(host) ?? [];
    manifest.push(
      `command ${resource.name}${resource.inputs.stdin !== undefined ? " (stdin: secret, not rendered)" : ""}`,
    );
    for (const file of extractFiles(body)) {
      writeOut(outdir, host, `files${file.path}`, file.content);
      manifest.push(`file ${file.mode} ${file.owner ?? "root:root"} ${file.path}`);
      counts.set(host, (counts.get(host) ?? 0) + 1);
    }
    manifests.set(host, manifest);
  }
  for (const [host, manifest] of manifests) {
    writeOut(outdir, host, "MANIFEST", `${manifest.join("\n")}\n`);
  }
  fs.writeFileSync(path.join(outdir, "topology.mmd"), fleet.topology);
  const summary = [...counts.entries()]
    .sort()
    .map(([host, n]) => `${host} ${n} files`)
    .join(", ");
  return `rendered ${file} into ${outdir}: ${summary}; topology.mmd`;
}

/** Clears a previous render (recognised by its marker) so no stale file survives; refuses any other non-empty folder. */
function prepareOutdir(outdir: string): void {
  if (fs.existsSync(outdir) && fs.readdirSync(outdir).length > 0) {
    if (!fs.existsSync(path.join(outdir, MARKER))) {
      throw new Error(`${outdir} is not empty and holds no earlier render: choose an empty or new folder`);
    }
    fs.rmSync(outdir, { recursive: true });
  }
  fs.mkdirSync(outdir, { recursive: true });
  fs.writeFileSync(path.join(outdir, MARKER), "");
}

function writeOut(outdir: string, host: string, relative: string, content: string): void {
  const target = path.join(outdir, host, relative);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, content);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`render failed: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(EXIT.failed);
    },
  );
}

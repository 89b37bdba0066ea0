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
import { formatErrors, readStackFile } from "../config/load";
import { validateFleetConfig } from "../config/validate";
import { defineFleet } from "../program";
import { extractFiles, unwrapRootCommand } from "../templates/shell";
import { installMocks, offlineRunner, promiseOf, settle } from "../offline/mockRuntime";
import { withLabHostKeys } from "../lab/fleet";

const MARKER = ".swarm-render";

interface Connection {
  host: string;
  port: number;
}

async function main(argv: string[]): Promise<number> {
  const [stack, outdir] = argv;
  if (!stack || !outdir) {
    process.stderr.write("usage: npm run render -- <stack> <outdir>\n");
    return 2;
  }
  const file = `Pulumi.${stack}.yaml`;
  const { raw } = readStackFile(file);
  const { config, errors } = validateFleetConfig(withLabHostKeys(stack, raw));
  if (config === undefined) {
    process.stderr.write(formatErrors(errors).join("\n") + "\n");
    return 1;
  }
  prepareOutdir(outdir);

  const mocks = await installMocks(offlineRunner, stack);
  const fleet = defineFleet(config, { sshPrivateKey: pulumi.secret("(redacted)") });
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
  process.stdout.write(`rendered ${file} into ${outdir}: ${summary}; topology.mmd\n`);
  return 0;
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`render failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);

/**
 * Loads the program the way `pulumi up` does, in a directory installed with
 * `npm ci --omit=dev --omit=optional` (see runtime-install.sh): the SDK's own runner
 * (@pulumi/pulumi/cmd/run/run.js) picks TypeScript and ts-node, registers
 * them with the tsconfig Pulumi.yaml names and requires index.ts; resources go
 * to the offline mock runtime instead of an engine. Plain JavaScript: no
 * TypeScript tooling may be assumed before the runner has loaded its own.
 *
 * Usage: node scripts/runtime-install.cjs [STACK]   (default prod; exit 0 loaded, 1 failed, 2 usage)
 */
/* eslint-disable @typescript-eslint/no-require-imports -- CommonJS on purpose: it runs before any TypeScript loader exists */
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { parseArgs } = require("node:util");
const pulumi = require("@pulumi/pulumi");
const settings = require("@pulumi/pulumi/runtime/settings");
const tsutils = require("@pulumi/pulumi/tsutils");
// run.js requires the runner's entry point (cmd/run/index.js), which starts a run with the process's
// arguments as soon as it is loaded: stand in for it with the one value run.js reads from it.
const entry = require.resolve("@pulumi/pulumi/cmd/run/index.js");
require.cache[entry] = {
  id: entry,
  filename: entry,
  loaded: true,
  exports: { __esModule: true, nodeJSProcessExitedAfterLoggingUserActionableMessage: 32 },
};
const { run } = require("@pulumi/pulumi/cmd/run/run");
const yaml = require("yaml");

const USAGE = "usage: node scripts/runtime-install.cjs [STACK]   (default prod)";
const ROOT = process.cwd();
const stack = stackOf(process.argv.slice(2));

/** The one optional STACK argument; anything else prints what is wrong and the usage, and exits 2. */
function stackOf(argv) {
  try {
    const { positionals } = parseArgs({ args: argv, options: {}, allowPositionals: true, strict: true });
    if (positionals.length > 1) {
      throw new Error(`unexpected argument ${positionals[1]}`);
    }
    return positionals[0] || "prod";
  } catch (err) {
    const message = String(err.message).replace(/\. To specify a positional argument[\s\S]*$/, "");
    console.error(`runtime-install: ${message}\n${USAGE}`);
    process.exit(2);
  }
}

function fail(message) {
  console.error(`runtime-install: ${message}`);
  process.exit(1);
}

async function main() {
  // What the SDK will load: the project's TypeScript, not the copy it bundles.
  const { typescriptRequire } = tsutils.typeScriptRequireStrings();
  const typescript = require(typescriptRequire);
  if (typescriptRequire !== "typescript" || !typescript.version.startsWith("5.")) {
    fail(`the SDK would compile the program with TypeScript ${typescript.version} from ${typescriptRequire}`);
  }

  const file = yaml.parse(fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8"));
  const config = {};
  for (const [key, value] of Object.entries(file.config || {})) {
    config[key] = typeof value === "string" ? value : JSON.stringify(value);
  }
  config["swarm:sshPrivateKey"] =
    "-----BEGIN OPENSSH PRIVATE KEY-----\n(runtime-install)\n-----END OPENSSH PRIVATE KEY-----\n";
  pulumi.runtime.setAllConfig(config, ["swarm:sshPrivateKey"]);

  // The mock runtime is TypeScript: it is loaded on first use, once the runner has registered ts-node.
  let fleet;
  const mocks = () => {
    fleet ??= new (require(path.join(ROOT, "offline", "mockRuntime.ts")).MockFleet)();
    return fleet;
  };
  await pulumi.runtime.setMocks(
    { newResource: (args) => mocks().newResource(args), call: (args) => mocks().call(args) },
    "swarm",
    stack,
    true,
  );

  // What the language host passes on from Pulumi.yaml's runtime options.
  const project = yaml.parse(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8"));
  const options = (project.runtime && project.runtime.options) || {};
  if (options.typescript !== false) {
    process.env.PULUMI_NODEJS_TYPESCRIPT = "true";
  }
  if (options.tsconfig) {
    process.env.PULUMI_NODEJS_TSCONFIG_PATH = options.tsconfig;
  }
  const errors = [];
  await run(
    { _: [ROOT] },
    () => undefined,
    (err) => errors.push(err),
    (err) => errors.includes(err),
  );
  await settings.waitForRPCs();
  if (errors.length > 0 || pulumi.log.hasErrors()) {
    fail(`the program failed: ${errors.map((e) => e.message).join("; ") || "see the errors above"}`);
  }
  // The program is an async function: the runner awaits it and registers what it resolves to as the stack's outputs.
  const root = pulumi.runtime
    .getMonitor()
    .resources.get(`urn:pulumi:${stack}::swarm::pulumi:pulumi:Stack::swarm-${stack}`);
  const state = root && root.state && root.state.toJavaScript ? root.state.toJavaScript() : {};
  const outputs = Object.keys(state).sort().join(", ");
  if (outputs !== "hosts, topology") {
    fail(`the stack's outputs are ${outputs || "none"}, not hosts and topology`);
  }
  const resources = mocks().resources;
  const servers = resources.filter((r) => r.type === "hcloud:index/server:Server").length;
  if (servers === 0) {
    fail(`the program registered no server (${resources.length} resources)`);
  }
  console.log(
    `runtime-install: stack ${stack} loaded with TypeScript ${typescript.version} and no dev dependencies: ` +
      `${resources.length} resources, ${servers} servers, outputs ${outputs}`,
  );
}

main().catch((err) => fail(err && err.stack ? err.stack : String(err)));

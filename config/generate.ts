/**
 * Writes the files that come from the config schema (schema.ts), or with
 * --check only says which are stale: the `config:` section of Pulumi.yaml,
 * the README's configuration reference (between its markers) and
 * schema/stack.schema.json.
 *
 * Usage: npm run generate [-- --check]   (exit 0: up to date or written; 1: stale; 2: usage)
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { Document, Scalar, visit } from "yaml";
import { pulumiConfig, readmeReference, stackJsonSchema } from "./schemaDocs";

const ROOT = join(__dirname, "..");
export const README_BEGIN =
  "<!-- BEGIN config reference: generated from config/schema.ts by npm run generate -->";
export const README_END = "<!-- END config reference -->";

/** One generated file: where it is, and its text as it should be. */
export interface Generated {
  readonly file: string;
  readonly text: string;
}

/** The text as Prettier (the project's config) writes `file`: run as its CLI, which works under jest too. */
function format(text: string, file: string): string {
  const cli = require.resolve("prettier/bin/prettier.cjs");
  return execFileSync(process.execPath, [cli, "--stdin-filepath", file], { input: text, encoding: "utf8" });
}

/** Replaces everything from the line `config:` on. */
function withConfigSection(project: string, config: string): string {
  const at = project.search(/^config:/m);
  if (at < 0) {
    throw new Error("Pulumi.yaml has no config: section to replace");
  }
  return `${project.slice(0, at)}${config}`;
}

function withReference(readme: string, reference: string): string {
  const begin = readme.indexOf(README_BEGIN);
  const end = readme.indexOf(README_END);
  if (begin < 0 || end < begin) {
    throw new Error(
      `README.md needs the lines ${README_BEGIN} and ${README_END} around its configuration reference`,
    );
  }
  return `${readme.slice(0, begin + README_BEGIN.length)}\n\n${reference}\n${readme.slice(end)}`;
}

/** Every generated file with the text it should have, from the files in `root` as they are. */
export async function generatedFiles(root = ROOT): Promise<Generated[]> {
  const projectFile = join(root, "Pulumi.yaml");
  const document = new Document({ config: pulumiConfig() });
  visit(document, {
    Scalar(_, node) {
      // Descriptions as folded blocks (>-): long prose reads better unquoted.
      if (typeof node.value === "string" && node.value.includes(" ")) {
        node.type = Scalar.BLOCK_FOLDED;
      }
    },
  });
  const config = document.toString({ lineWidth: 110, minContentWidth: 0 });
  const comment =
    "  # Generated from config/schema.ts by npm run generate: edit the schema, not this section. Pulumi\n" +
    "  # checks only that a structured value is a mapping or a list; the program's validation checks every field.\n";
  const project = withConfigSection(
    readFileSync(projectFile, "utf8"),
    config.replace(/^config:\n/, `config:\n${comment}`),
  );
  const readmeFile = join(root, "README.md");
  const readme = withReference(readFileSync(readmeFile, "utf8"), readmeReference());
  const schemaFile = join(root, "schema", "stack.schema.json");
  return [
    { file: projectFile, text: format(project, projectFile) },
    { file: readmeFile, text: format(readme, readmeFile) },
    { file: schemaFile, text: format(JSON.stringify(stackJsonSchema()), schemaFile) },
  ];
}

/** The generated files whose text on disk differs from what the schema gives. */
export async function staleFiles(root = ROOT): Promise<string[]> {
  return (await generatedFiles(root))
    .filter((g) => !existsSync(g.file) || readFileSync(g.file, "utf8") !== g.text)
    .map((g) => g.file);
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  let check: boolean;
  try {
    check = parseArgs({ args: argv, options: { check: { type: "boolean", default: false } } }).values.check;
  } catch (error) {
    console.error(`${(error as Error).message}\nusage: npm run generate [-- --check]`);
    return 2;
  }
  if (check) {
    const stale = await staleFiles();
    for (const file of stale) {
      console.error(`${file} is stale: run npm run generate`);
    }
    return stale.length > 0 ? 1 : 0;
  }
  for (const g of await generatedFiles()) {
    mkdirSync(dirname(g.file), { recursive: true });
    writeFileSync(g.file, g.text);
  }
  return 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}

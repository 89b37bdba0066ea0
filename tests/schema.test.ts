import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { main, staleFiles } from "../config/generate";
import { fleetSchema } from "../config/schema";
import { fieldsOf } from "../config/schemaKit";
import { pulumiConfig, stackJsonSchema } from "../config/schemaDocs";

const ROOT = join(__dirname, "..");

describe("files generated from config/schema.ts", () => {
  it("are up to date: run npm run generate after changing the schema", async () => {
    expect(await staleFiles()).toEqual([]);
  });

  it("are found stale when one differs from the schema", async () => {
    const copy = mkdtempSync(join(tmpdir(), "swarm-schema-"));
    try {
      for (const file of ["Pulumi.yaml", "README.md", ".prettierrc.json"]) {
        cpSync(join(ROOT, file), join(copy, file));
      }
      cpSync(join(ROOT, "schema"), join(copy, "schema"), { recursive: true });
      expect(await staleFiles(copy)).toEqual([]);
      const readme = join(copy, "README.md");
      const edited = readFileSync(readme, "utf8").replace(/`51820`/, "`51821`");
      expect(edited).toContain("`51821`");
      writeFileSync(readme, edited);
      expect(await staleFiles(copy)).toEqual([readme]);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it("refuses an unknown option with exit code 2", async () => {
    const error = jest.spyOn(console, "error").mockImplementation(() => undefined);
    await expect(main(["--bogus"])).resolves.toBe(2);
    expect(error).toHaveBeenCalledWith(expect.stringContaining("usage: npm run generate"));
    error.mockRestore();
  });
});

describe("the config schema", () => {
  /** Every field of every section, with its path. */
  function everyField(schema: z.ZodObject, prefix: string): [string, z.ZodType][] {
    return Object.entries(schema.shape).flatMap(([key, s]) => {
      const path = `${prefix}${key}`;
      const inner = fieldsOf(schema).find(([k]) => k === key)?.[1].inner;
      const item = inner instanceof z.ZodArray ? inner.element : inner;
      const nested = item instanceof z.ZodObject ? everyField(item, `${path}.`) : [];
      return [[path, s as z.ZodType] as [string, z.ZodType], ...nested];
    });
  }

  it.each(everyField(fleetSchema, "swarm:"))("describes %s", (_, schema) => {
    expect(z.globalRegistry.get(schema)?.description).toEqual(expect.stringMatching(/\w/));
  });

  it("declares structured keys typed in Pulumi.yaml, with the defaults validation applies", () => {
    const config = pulumiConfig();
    expect(config["swarm:hosts"]).toMatchObject({ type: "array", items: { type: "object" } });
    expect(config["swarm:hosts"]).not.toHaveProperty("default");
    expect(config["swarm:mesh"]).toMatchObject({ type: "object" });
    expect(config["swarm:exports"]).toMatchObject({ type: "array", default: [] });
    expect(config["swarm:health"]).toMatchObject({ type: "object", default: {} });
    expect(config["swarm:sshPrivateKey"]).toMatchObject({ type: "string", secret: true });
  });

  it("declares swarm:repairs an object, which Pulumi checks a stack's value against", () => {
    // Pulumi refuses a stack whose value is not of the declared type ("must be of type 'string'").
    expect(pulumiConfig()["swarm:repairs"]).toMatchObject({ type: "object" });
    const schema = stackJsonSchema() as {
      properties: { config: { properties: Record<string, Record<string, unknown>> } };
    };
    expect(schema.properties.config.properties["swarm:repairs"]).toMatchObject({
      type: "object",
      additionalProperties: { type: "integer", minimum: 1 },
      default: {},
    });
  });

  it("gives editors every field, refuses unknown keys and shows durations as written", () => {
    const schema = stackJsonSchema() as {
      properties: { config: { properties: Record<string, Record<string, unknown>>; required: string[] } };
    };
    const { properties, required } = schema.properties.config;
    expect(Object.keys(properties).sort()).toEqual(
      Object.keys(fleetSchema.shape)
        .map((k) => `swarm:${k}`)
        .sort(),
    );
    expect(required).toEqual(["swarm:hosts", "swarm:mesh"]);
    expect(properties["swarm:mesh"]).toMatchObject({
      additionalProperties: false,
      required: ["cidr"],
      properties: { listenPort: { type: "integer", minimum: 1, maximum: 65535, default: 51820 } },
    });
    const syncs = properties["swarm:syncs"] as { items: { properties: Record<string, unknown> } };
    expect(syncs.items.properties.interval).toMatchObject({ default: "1min" });
    expect(properties["swarm:sshPrivateKey"]).toMatchObject({ required: ["secure"] });
  });
});

/**
 * What the config schema (schema.ts) documents: the `config:` section of
 * Pulumi.yaml, the README's configuration reference and a JSON Schema for
 * stack files. Pure text and values; config/generate.ts writes and checks
 * the files.
 */
import { z } from "zod";
import { fleetSchema } from "./schema";
import { FieldInfo, durations, fieldInfo, fieldsOf, formatDuration, unwrap } from "./schemaKit";

type Field = ReturnType<typeof unwrap>;

/** The element schema of a list, or the schema itself. */
function itemOf(schema: z.ZodType): z.ZodType {
  return schema instanceof z.ZodArray ? (schema.element as z.ZodType) : schema;
}

function descriptionOf(schema: z.ZodType): string {
  return (z.globalRegistry.get(schema)?.description as string | undefined) ?? "";
}

/** A field's default as the docs show it, `required`, or empty. */
function defaultText(f: Field, code: (text: string) => string): string {
  if (f.info.defaultText !== undefined) {
    return f.info.defaultText;
  }
  if (!f.hasDefault) {
    return f.required ? "required" : "";
  }
  const value = f.fallback;
  if (durations.has(f.inner)) {
    return code(formatDuration(value as number));
  }
  if (value === "") {
    return code('""');
  }
  if (Array.isArray(value)) {
    return value.length === 0 ? code("[]") : code(value.join(", "));
  }
  if (typeof value === "object" && value !== null) {
    return "";
  }
  return code(String(value));
}

const markdownCode = (text: string) => `\`${text}\``;
const plain = (text: string) => text;

// ---------------------------------------------------------------- README

interface Row {
  readonly key: string;
  readonly default: string;
  readonly meaning: string;
}

function rowsOf(schema: z.ZodObject, prefix = ""): Row[] {
  return fieldsOf(schema).flatMap(([key, f]) => {
    const row = {
      key: `${prefix}${key}`,
      default: defaultText(f, markdownCode),
      meaning: descriptionOf(schemaAt(schema, key)),
    };
    return f.inner instanceof z.ZodObject ? [row, ...rowsOf(f.inner, `${prefix}${key}.`)] : [row];
  });
}

function schemaAt(schema: z.ZodObject, key: string): z.ZodType {
  return schema.shape[key] as z.ZodType;
}

function kindOf(f: Field): string {
  const kinds = [
    ...(f.inner instanceof z.ZodArray ? ["list"] : []),
    ...(f.required ? ["required"] : []),
    ...(f.info.secret ? ["secret"] : []),
  ];
  return kinds.length > 0 ? ` (${kinds.join(", ")})` : "";
}

/** The README's reference: one heading per `swarm:` key, and a table of its fields. */
export function readmeReference(): string {
  const sections = fieldsOf(fleetSchema).map(([key, f]) => {
    const heading = `### \`swarm:${key}\`${kindOf(f)}`;
    const description = descriptionOf(schemaAt(fleetSchema, key));
    const item = itemOf(f.inner);
    if (!(item instanceof z.ZodObject)) {
      return [heading, "", description].join("\n");
    }
    const table = [
      "| key | default | meaning |",
      "| --- | --- | --- |",
      ...rowsOf(item).map((r) => `| \`${r.key}\` | ${r.default} | ${r.meaning.replace(/\|/g, "\\|")} |`),
    ];
    return [heading, "", description, "", ...table].join("\n");
  });
  return sections.join("\n\n") + "\n";
}

// ---------------------------------------------------------------- Pulumi.yaml

/** `name (required), hcloud {serverType (required), ...}, wireguard (kernel)`: the keys of a mapping, in brief. */
function summary(schema: z.ZodObject): string {
  return fieldsOf(schema)
    .map(([key, f]) => {
      if (f.inner instanceof z.ZodObject) {
        // A mapping whose default is a value of its own (not its fields' defaults) says so.
        const given = f.info.defaultText !== undefined ? ` (${f.info.defaultText.replace(/`/g, "")})` : "";
        return `${key}${given} {${summary(f.inner)}}`;
      }
      const choices =
        f.inner instanceof z.ZodEnum && f.inner.options.length > 1 ? f.inner.options.join(" | ") : "";
      const text = [choices, defaultText(f, plain).replace(/`/g, "")].filter((t) => t !== "").join("; ");
      return text === "" ? key : `${key} (${text})`;
    })
    .join(", ");
}

/** One `config:` entry of Pulumi.yaml per `swarm:` key: its type, default and description. */
export function pulumiConfig(): Record<string, Record<string, unknown>> {
  return Object.fromEntries(
    fieldsOf(fleetSchema).map(([key, f]) => {
      const item = itemOf(f.inner);
      const keys = item instanceof z.ZodObject ? ` Keys: ${summary(item)}.` : "";
      const description = `${descriptionOf(schemaAt(fleetSchema, key))}${keys}`.replace(/`/g, "");
      const type =
        f.inner instanceof z.ZodArray
          ? { type: "array", items: { type: "object" } }
          : f.inner instanceof z.ZodObject || f.inner instanceof z.ZodRecord
            ? { type: "object" }
            : { type: "string" };
      return [
        `swarm:${key}`,
        {
          ...type,
          ...(f.info.secret ? { secret: true } : {}),
          description,
          ...(f.hasDefault && !f.info.custom ? { default: f.fallback } : {}),
        },
      ];
    }),
  );
}

// ---------------------------------------------------------------- JSON Schema

/** A JSON Schema for `Pulumi.<stack>.yaml`: the `swarm:` keys in full, the rest of the file loosely. */
export function stackJsonSchema(): Record<string, unknown> {
  const swarm = z.toJSONSchema(fleetSchema, {
    io: "input",
    unrepresentable: "any",
    target: "draft-2020-12",
    override: ({ zodSchema, jsonSchema }) => {
      const schema = zodSchema as unknown as z.ZodType;
      if (schema instanceof z.ZodObject) {
        jsonSchema.additionalProperties = false;
      }
      if (schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) {
        const f = unwrap(schema);
        jsonSchema.default = durations.has(f.inner) ? formatDuration(f.fallback as number) : f.fallback;
      }
    },
  }) as { properties: Record<string, unknown>; required?: string[] };
  const info = (key: string): FieldInfo => fieldInfo.get(schemaAt(fleetSchema, key)) ?? {};
  const properties = Object.fromEntries(
    Object.entries(swarm.properties).map(([key, value]) => [
      `swarm:${key}`,
      info(key).secret
        ? {
            description: descriptionOf(schemaAt(fleetSchema, key)),
            type: "object",
            properties: { secure: { type: "string" } },
            required: ["secure"],
            additionalProperties: false,
          }
        : value,
    ]),
  );
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $id: "https://swarm.invalid/schema/stack.schema.json",
    title: "swarm stack file (Pulumi.<stack>.yaml)",
    description: "Generated from config/schema.ts by npm run generate; do not edit.",
    type: "object",
    properties: {
      secretsprovider: { type: "string" },
      encryptedkey: { type: "string" },
      encryptionsalt: { type: "string" },
      environment: {},
      config: {
        type: "object",
        properties,
        required: (swarm.required ?? []).map((key) => `swarm:${key}`),
        // Other namespaces (hcloud:token, ...) are the providers' business.
        additionalProperties: true,
      },
    },
  };
}

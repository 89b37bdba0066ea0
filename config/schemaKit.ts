/**
 * The kinds of config field and the reader that walks a schema built from
 * them. zod holds each field's type, default, limits and description, and
 * checks a single value; the walk over mappings and lists is ours, because
 * validation must go on past a wrong field: the cross-field rules in
 * validate.ts still need every field that is right, and the user needs every
 * field that is wrong, each with its path.
 */
import { z } from "zod";
import { ConfigError, Seconds } from "./types";

/** What a field's schema cannot say itself. */
export interface FieldInfo {
  /** The fix `is required:` gives when the field is missing. */
  readonly hint?: string;
  /** The README's default column, where the default is not a value (`allocated`, `wg-quick`). */
  readonly defaultText?: string;
  /**
   * Whether the field is required depends on its siblings, or its message does:
   * validate.ts reports it missing, and the walk does not.
   */
  readonly requiredElsewhere?: boolean;
  /** Read by code of its own (validate.ts): the walk only marks it known. */
  readonly custom?: boolean;
  /** Keys that were fields once: not reported unknown, so that validate.ts can say what to do instead. */
  readonly removedKeys?: readonly string[];
  /** A stack-secret value (`pulumi config set --secret`). */
  readonly secret?: boolean;
}

/** Side metadata of fields and sections, kept out of the JSON Schema. */
export const fieldInfo = z.registry<FieldInfo>();

/** Declares a field: its description (README, Pulumi.yaml, JSON Schema) and what the schema cannot say. */
export function field<S extends z.ZodType>(schema: S, description: string, info: FieldInfo = {}): S {
  const described = schema.meta({ description }) as S;
  fieldInfo.add(described, info);
  return described;
}

// ---------------------------------------------------------------- value kinds

/** How a value is named in a message: `string "x"`, `a list`, `nothing`. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) {
    return "nothing";
  }
  if (Array.isArray(value)) {
    return "a list";
  }
  if (typeof value === "object") {
    return "a mapping";
  }
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** A string; with `pattern`, one that matches it, else `"value" <patternHint>`. */
export function text(
  opts: {
    pattern?: RegExp;
    patternHint?: string;
    /** The whole message when the value is not a string. */
    notString?: (value: unknown) => string;
    /** A further check of the value: the message when it fails. */
    problem?: (value: string) => string | undefined;
    /** The engine hands numbers over as numbers: a number is taken as its text. */
    numbers?: boolean;
  } = {},
): z.ZodType<string> {
  let schema = z.string({
    error: (iss) => opts.notString?.(iss.input) ?? `must be a string, got ${describe(iss.input)}`,
  });
  if (opts.pattern) {
    const { pattern } = opts;
    schema = schema.regex(pattern, {
      error: (iss) => `${JSON.stringify(iss.input)} ${opts.patternHint ?? `must match ${pattern}`}`,
      abort: true,
    });
  }
  const checked = opts.problem ? withProblem(schema, opts.problem) : schema;
  return opts.numbers
    ? (z.preprocess(
        (v) => (typeof v === "number" && Number.isFinite(v) ? String(v) : v),
        checked,
      ) as unknown as z.ZodType<string>)
    : checked;
}

function withProblem<T>(schema: z.ZodType<T>, problem: (value: T) => string | undefined): z.ZodType<T> {
  return schema.superRefine((value, ctx) => {
    const message = problem(value);
    if (message !== undefined) {
      ctx.addIssue({ code: "custom", message, input: value });
    }
  });
}

/** A whole number from `min` to `max`; the digits of a string count (the engine hands numbers over as strings). */
export function integer(min: number, max: number): z.ZodType<number> {
  const range = (iss: { input?: unknown }) =>
    `${String(iss.input)} is out of range: use a value from ${min} to ${max}`;
  const whole = (iss: { input?: unknown }) => `must be a whole number, got ${describe(iss.input)}`;
  return z.preprocess(
    (v) => (typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v),
    z
      .number({ error: whole })
      .int({ error: whole, abort: true })
      .min(min, { error: range })
      .max(max, { error: range }),
  ) as unknown as z.ZodType<number>;
}

/** true or false; so are the strings `"true"` and `"false"`. */
export function boolean(): z.ZodType<boolean> {
  return z.preprocess(
    (v) => (v === "true" ? true : v === "false" ? false : v),
    z.boolean({ error: (iss) => `must be true or false, got ${describe(iss.input)}` }),
  ) as unknown as z.ZodType<boolean>;
}

/** One of `choices`. */
export function oneOf<const T extends readonly [string, ...string[]]>(
  choices: T,
): z.ZodEnum<{ [K in T[number]]: K }> {
  const list = choices.join(", ");
  return z.enum(choices, {
    error: (iss) =>
      typeof iss.input === "string"
        ? `${JSON.stringify(iss.input)} is not allowed: choose one of ${list}`
        : `must be a string, got ${describe(iss.input)}`,
  }) as unknown as z.ZodEnum<{ [K in T[number]]: K }>;
}

const UNITS: Record<string, number> = { s: 1, sec: 1, m: 60, min: 60, h: 3600, d: 86400 };
const DURATION = /^(\d+)\s*(s|sec|m|min|h|d)?$/;

/** Seconds in a duration such as `60s`, `5min`, `1h`, `2d` (a bare number means seconds), or undefined. */
export function parseDuration(value: unknown): Seconds | undefined {
  if (typeof value === "number") {
    return Number.isInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== "string") {
    return undefined;
  }
  const match = DURATION.exec(value.trim());
  if (!match) {
    return undefined;
  }
  return Number(match[1]) * UNITS[match[2] ?? "s"];
}

export function formatDuration(seconds: Seconds): string {
  if (!Number.isFinite(seconds)) {
    return "unlimited";
  }
  for (const [unit, size] of [
    ["d", 86400],
    ["h", 3600],
    ["min", 60],
  ] as const) {
    if (seconds > 0 && seconds % size === 0) {
      return `${seconds / size}${unit}`;
    }
  }
  return `${seconds}s`;
}

/** The schemas `duration` made: their defaults are shown as durations, not seconds. */
export const durations = new WeakSet<z.ZodType>();

/** A duration from `min` to `max` seconds, read into seconds. */
export function duration(
  min: Seconds,
  max: Seconds,
  opts: { problem?: (seconds: Seconds) => string | undefined } = {},
): z.ZodType<Seconds> {
  const notDuration = (value: unknown) =>
    `${JSON.stringify(value)} is not a duration: write a number with a unit, such as 60s, 5min, 1h or 2d`;
  const schema = z
    .union(
      [
        z.int().min(0, { error: (iss) => notDuration(iss.input) }),
        z.string().regex(/^\s*\d+\s*(s|sec|m|min|h|d)?\s*$/, { error: (iss) => notDuration(iss.input) }),
      ],
      { error: (iss) => notDuration(iss.input) },
    )
    .transform((value, ctx) => {
      const seconds = parseDuration(value) as Seconds;
      if (seconds < min || seconds > max) {
        ctx.issues.push({
          code: "custom",
          input: value,
          message: `${JSON.stringify(value)} is out of range: use from ${formatDuration(min)} to ${formatDuration(max)}`,
        });
        return z.NEVER;
      }
      const message = opts.problem?.(seconds);
      if (message !== undefined) {
        ctx.issues.push({ code: "custom", input: value, message });
        return z.NEVER;
      }
      return seconds;
    }) as unknown as z.ZodType<Seconds>;
  durations.add(schema);
  return schema;
}

/** A list of `item`; `notList` and the item's own messages say what is wrong. */
export function list<S extends z.ZodType>(item: S): z.ZodArray<S> {
  return z.array(item);
}

// ---------------------------------------------------------------- the walk

const NONE = Symbol("none");

interface Unwrapped {
  readonly inner: z.ZodType;
  readonly required: boolean;
  /** An absent field takes `fallback`. */
  readonly hasDefault: boolean;
  /** The value an absent field takes; a mapping's default is read as written, filling its own defaults. */
  readonly fallback: unknown;
  readonly info: FieldInfo;
}

/** The field's own schema under its optional or default wrapper, and what absence means. */
export function unwrap(schema: z.ZodType): Unwrapped {
  const info = fieldInfo.get(schema) ?? {};
  if (schema instanceof z.ZodOptional) {
    return { inner: schema.unwrap() as z.ZodType, required: false, hasDefault: false, fallback: NONE, info };
  }
  if (schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) {
    return {
      inner: schema.unwrap() as z.ZodType,
      required: false,
      hasDefault: true,
      fallback: structuredClone(schema.def.defaultValue),
      info,
    };
  }
  return { inner: schema, required: true, hasDefault: false, fallback: NONE, info };
}

/** The fields of a section, each with what `unwrap` tells. */
export function fieldsOf(schema: z.ZodObject): [string, Unwrapped][] {
  return Object.entries(schema.shape).map(([key, s]) => [key, unwrap(s as z.ZodType)]);
}

/** An element of a list of mappings: its path, and its section when it was a mapping. */
export interface Item<T> {
  readonly path: string;
  readonly section?: Section<T>;
}

/** A field whose value is a list, with the path of each valid element (the list keeps the invalid ones out). */
export interface Element<T> {
  readonly value: T;
  readonly path: string;
}

/**
 * One mapping read against its schema: `value` holds every field that is
 * valid or defaulted, and leaves out every field that is missing or wrong
 * (each already reported with its path).
 */
export class Section<T = Record<string, unknown>> {
  readonly value: Partial<T> = {};
  private readonly sections = new Map<string, Section>();
  private readonly lists = new Map<string, Item<unknown>[]>();
  private readonly elementLists = new Map<string, Element<unknown>[]>();

  constructor(
    /** e.g. `swarm:hosts[2]`; the top level is `swarm`, whose keys are written `swarm:key`. */
    readonly path: string,
    /** The mapping as written. */
    readonly raw: Record<string, unknown>,
    readonly errors: ConfigError[],
  ) {}

  at(key: string): string {
    return this.path === "swarm" ? `swarm:${key}` : `${this.path}.${key}`;
  }

  error(key: string | undefined, message: string): void {
    this.errors.push({ path: key === undefined ? this.path : this.at(key), message });
  }

  /** The key is written with a value (not null). */
  has(key: keyof T & string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  /** Drops a field that a check of validate.ts refused. */
  drop(key: keyof T & string): void {
    delete this.value[key];
  }

  /** The nested mapping at `key`, when it was one. */
  sub<K extends keyof T & string>(key: K): Section<NonNullable<T[K]>> | undefined {
    return this.sections.get(key) as Section<NonNullable<T[K]>> | undefined;
  }

  /** Every element of a list of mappings, with its section when it was a mapping. */
  items<K extends keyof T & string>(key: K): Item<ItemOf<T[K]>>[] {
    return (this.lists.get(key) ?? []) as Item<ItemOf<T[K]>>[];
  }

  /** The valid elements of a list of values, with their paths. */
  elements<K extends keyof T & string>(key: K): Element<ItemOf<T[K]>>[] {
    return (this.elementLists.get(key) ?? []) as Element<ItemOf<T[K]>>[];
  }

  /** @internal */
  setSub(key: string, section: Section): void {
    this.sections.set(key, section);
  }

  /** @internal */
  setItems(key: string, items: Item<unknown>[]): void {
    this.lists.set(key, items);
  }

  /** @internal */
  setElements(key: string, elements: Element<unknown>[]): void {
    this.elementLists.set(key, elements);
  }
}

type ItemOf<L> = L extends readonly (infer I)[] ? I : never;

/**
 * Reads `raw` at `path` against an object schema, pushing every problem onto
 * `errors`: a value that is not a mapping, each missing required field with
 * its fix, each wrong field with the message of its kind, each unknown key
 * with the nearest known one. Undefined when `raw` is not a mapping.
 */
export function readSection<S extends z.ZodObject>(
  schema: S,
  raw: unknown,
  path: string,
  errors: ConfigError[],
): Section<z.output<S>> | undefined {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    errors.push({ path, message: `must be an object (a YAML mapping), got ${describe(raw)}` });
    return undefined;
  }
  const section = new Section<z.output<S>>(path, raw as Record<string, unknown>, errors);
  const value = section.value as Record<string, unknown>;
  const fields = fieldsOf(schema);
  for (const [key, f] of fields) {
    if (f.info.custom) {
      continue;
    }
    const given = section.raw[key];
    const absent = given === undefined || given === null;
    if (absent && !f.hasDefault) {
      if (f.required && !f.info.requiredElsewhere) {
        section.error(key, `is required: ${f.info.hint ?? genericHint(f.inner)}`);
      }
      continue;
    }
    const read = readValue(f.inner, absent ? f.fallback : given, section.at(key), errors);
    if (read.section) {
      section.setSub(key, read.section);
    }
    if (read.items) {
      section.setItems(key, read.items);
    }
    if (read.elements) {
      section.setElements(key, read.elements);
    }
    if (read.ok) {
      value[key] = read.value;
    }
  }
  rejectUnknownKeys(section, [...fields.map(([key]) => key), ...(fieldInfo.get(schema)?.removedKeys ?? [])]);
  return section;
}

function genericHint(schema: z.ZodType): string {
  if (schema instanceof z.ZodArray) {
    return "set a list";
  }
  if (schema instanceof z.ZodObject) {
    return "set a mapping";
  }
  if (schema instanceof z.ZodEnum) {
    return `choose one of ${schema.options.join(", ")}`;
  }
  return "set a value";
}

interface Read {
  readonly ok: boolean;
  readonly value?: unknown;
  readonly section?: Section;
  readonly items?: Item<unknown>[];
  readonly elements?: Element<unknown>[];
}

function readValue(schema: z.ZodType, raw: unknown, path: string, errors: ConfigError[]): Read {
  if (schema instanceof z.ZodObject) {
    const section = readSection(schema, raw, path, errors);
    return section ? { ok: true, value: section.value, section } : { ok: false };
  }
  if (schema instanceof z.ZodArray) {
    if (!Array.isArray(raw)) {
      errors.push({ path, message: `must be a list, got ${describe(raw)}` });
      return { ok: false };
    }
    const element = schema.element as z.ZodType;
    if (element instanceof z.ZodObject) {
      const items = raw.map((item, i): Item<unknown> => {
        const itemPath = `${path}[${i}]`;
        return {
          path: itemPath,
          section: readSection(element, item, itemPath, errors) as Section | undefined,
        };
      });
      return { ok: true, value: items.flatMap((item) => item.section?.value ?? []), items };
    }
    const elements = raw.flatMap((item, i) => {
      const read = readValue(element, item, `${path}[${i}]`, errors);
      return read.ok ? [{ value: read.value, path: `${path}[${i}]` }] : [];
    });
    return { ok: true, value: elements.map((e) => e.value), elements };
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    errors.push({ path, message: result.error.issues[0].message });
    return { ok: false };
  }
  return { ok: true, value: result.data };
}

/** Reports each key of the mapping that is not a field, with the nearest field's name when it looks like a typo. */
function rejectUnknownKeys(section: Section, fields: readonly string[]): void {
  const known = [...fields].sort();
  for (const key of Object.keys(section.raw)) {
    if (!known.includes(key)) {
      const near = known.find((k) => k.toLowerCase() === key.toLowerCase() || typoDistance(k, key) <= 2);
      const hint = near ? `did you mean ${near}?` : `known keys: ${known.join(", ")}`;
      section.error(key, `unknown key: remove it (${hint})`);
    }
  }
}

/**
 * Distance between two names where a swapped pair of letters counts as one
 * edit (optimal string alignment): `swram` is one typo away from `swarm`.
 */
export function typoDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** Deeply read-only: the validated config is never changed after validation. */
export type DeepReadonly<T> = T extends (infer I)[]
  ? readonly DeepReadonly<I>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

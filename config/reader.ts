import { ConfigError, Seconds } from "./types";

/**
 * Reads one config object field by field, recording every problem with its
 * path instead of stopping at the first. Readers return `undefined` for a
 * field that is missing or wrong, so validation can go on and report more.
 */
export class ObjectReader {
  private readonly seen = new Set<string>();

  constructor(
    /** Path of this object, e.g. `swarm:hosts[2]`. */
    readonly path: string,
    readonly value: Record<string, unknown>,
    private readonly errors: ConfigError[],
  ) {}

  /** A reader for `value` at `path`, or undefined (with an error) when it is not an object. */
  static of(path: string, value: unknown, errors: ConfigError[]): ObjectReader | undefined {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      errors.push({ path, message: `must be an object (a YAML mapping), got ${describe(value)}` });
      return undefined;
    }
    return new ObjectReader(path, value as Record<string, unknown>, errors);
  }

  at(key: string): string {
    return `${this.path}.${key}`;
  }

  error(key: string | undefined, message: string): void {
    this.errors.push({ path: key === undefined ? this.path : this.at(key), message });
  }

  has(key: string): boolean {
    return this.value[key] !== undefined && this.value[key] !== null;
  }

  /** The raw value, marking the key as known. */
  raw(key: string): unknown {
    this.seen.add(key);
    return this.value[key];
  }

  private missing(key: string, required: boolean, hint: string): undefined {
    if (required) {
      this.error(key, `is required: ${hint}`);
    }
    return undefined;
  }

  string(
    key: string,
    opts: { required?: boolean; hint?: string; pattern?: RegExp; patternHint?: string } = {},
  ): string | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) {
      return this.missing(key, opts.required ?? false, opts.hint ?? "set a string value");
    }
    if (typeof value !== "string") {
      this.error(key, `must be a string, got ${describe(value)}`);
      return undefined;
    }
    if (opts.pattern && !opts.pattern.test(value)) {
      this.error(key, `${JSON.stringify(value)} ${opts.patternHint ?? `must match ${opts.pattern}`}`);
      return undefined;
    }
    return value;
  }

  integer(
    key: string,
    opts: { required?: boolean; hint?: string; min?: number; max?: number } = {},
  ): number | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) {
      return this.missing(key, opts.required ?? false, opts.hint ?? "set a whole number");
    }
    const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
    if (typeof n !== "number" || !Number.isInteger(n)) {
      this.error(key, `must be a whole number, got ${describe(value)}`);
      return undefined;
    }
    const { min = -Infinity, max = Infinity } = opts;
    if (n < min || n > max) {
      this.error(key, `${n} is out of range: use a value from ${min} to ${max}`);
      return undefined;
    }
    return n;
  }

  boolean(key: string): boolean | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) {
      return undefined;
    }
    if (typeof value === "boolean") {
      return value;
    }
    if (value === "true" || value === "false") {
      return value === "true";
    }
    this.error(key, `must be true or false, got ${describe(value)}`);
    return undefined;
  }

  oneOf<T extends string>(
    key: string,
    choices: readonly T[],
    opts: { required?: boolean } = {},
  ): T | undefined {
    const value = this.string(key, { required: opts.required, hint: `choose one of ${choices.join(", ")}` });
    if (value === undefined) {
      return undefined;
    }
    if (!(choices as readonly string[]).includes(value)) {
      this.error(key, `${JSON.stringify(value)} is not allowed: choose one of ${choices.join(", ")}`);
      return undefined;
    }
    return value as T;
  }

  /** A duration such as `60s`, `5min`, `1h`, `2d` (a bare number means seconds). */
  duration(
    key: string,
    opts: { required?: boolean; min?: Seconds; max?: Seconds } = {},
  ): Seconds | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) {
      return this.missing(key, opts.required ?? false, "set a duration such as 60s, 5min or 1h");
    }
    const seconds = parseDuration(value);
    if (seconds === undefined) {
      this.error(
        key,
        `${JSON.stringify(value)} is not a duration: write a number with a unit, such as 60s, 5min, 1h or 2d`,
      );
      return undefined;
    }
    const { min = 0, max = Infinity } = opts;
    if (seconds < min || seconds > max) {
      this.error(
        key,
        `${JSON.stringify(value)} is out of range: use from ${formatDuration(min)} to ${formatDuration(max)}`,
      );
      return undefined;
    }
    return seconds;
  }

  /** An array; each element is passed to `each` with its path. */
  array<T>(
    key: string,
    each: (value: unknown, path: string) => T | undefined,
    opts: { required?: boolean; hint?: string } = {},
  ): T[] | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) {
      return this.missing(key, opts.required ?? false, opts.hint ?? "set a list");
    }
    if (!Array.isArray(value)) {
      this.error(key, `must be a list, got ${describe(value)}`);
      return undefined;
    }
    const out: T[] = [];
    value.forEach((element, i) => {
      const item = each(element, `${this.at(key)}[${i}]`);
      if (item !== undefined) {
        out.push(item);
      }
    });
    return out;
  }

  /** A nested object reader, or undefined when absent (error when required) or not an object. */
  object(key: string, opts: { required?: boolean; hint?: string } = {}): ObjectReader | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) {
      return this.missing(key, opts.required ?? false, opts.hint ?? "set a mapping");
    }
    return ObjectReader.of(this.at(key), value, this.errors);
  }

  /** Reports every key that no reader asked for. Call last. */
  rejectUnknownKeys(): void {
    const known = [...this.seen].sort();
    for (const key of Object.keys(this.value)) {
      if (!this.seen.has(key)) {
        const near = known.find((k) => k.toLowerCase() === key.toLowerCase() || editDistance(k, key) <= 2);
        const hint = near ? `did you mean ${near}?` : `known keys: ${known.join(", ")}`;
        this.error(key, `unknown key: remove it (${hint})`);
      }
    }
  }
}

const UNITS: Record<string, number> = { s: 1, sec: 1, m: 60, min: 60, h: 3600, d: 86400 };

export function parseDuration(value: unknown): Seconds | undefined {
  if (typeof value === "number") {
    return Number.isInteger(value) && value >= 0 ? value : undefined;
  }
  if (typeof value !== "string") {
    return undefined;
  }
  const match = /^(\d+)\s*(s|sec|m|min|h|d)?$/.exec(value.trim());
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

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = next;
    }
  }
  return row[b.length];
}

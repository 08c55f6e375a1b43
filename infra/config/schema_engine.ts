/**
 * The schema engine: key helpers ({@linkcode int}, {@linkcode duration},
 * {@linkcode addrs}…) that each carry a key's type, default, doc and
 * converters, {@linkcode defineSchema} that checks a whole schema, and the
 * types that turn a schema into its typed configuration object. Nothing here
 * knows goim's keys; those are in schema.ts.
 *
 * @module
 */
import { describe, suggest } from "./messages.ts";
import { type Bytes, type Millis, parseBytes, parseDuration } from "./units.ts";

/** The kinds of value a configuration key can hold. */
export type KeyKind =
  | "int"
  | "number"
  | "bool"
  | "string"
  | "enum"
  | "duration"
  | "bytes"
  | "addr"
  | "strings"
  | "addrs"
  | "ints";

/**
 * One configuration key: its kind, default, one-line doc and converters.
 * Build it with {@linkcode int}, {@linkcode duration}, {@linkcode oneOf}, etc.
 */
export interface KeySpec<T> {
  /** The kind of value, for docs and messages. */
  readonly kind: KeyKind;
  /** One line of documentation (rendered into docs/CONFIG.md). */
  readonly doc: string;
  /** The default value, already converted (durations in ms, sizes in bytes). */
  readonly default: T;
  /** The default as written in TOML, e.g. `"8s"` or `["0.0.0.0:3101"]`. */
  readonly defaultToml: string;
  /** Short type label for the reference table, e.g. `int 1..65535`. */
  readonly type: string;
  /** What a valid value looks like, completing "expected …". */
  readonly expected: string;
  /** Converts a parsed TOML value; throws {@linkcode InvalidValue} if unfit. */
  readonly fromToml: (value: unknown) => T;
  /** Converts an environment variable or `--set` value; throws if unfit. */
  readonly fromText: (text: string) => T;
}

/** A schema: dotted key path → key spec. Declare one with {@linkcode defineSchema}. */
export type Schema = { readonly [path: string]: KeySpec<unknown> };

/** Thrown by a key's converters when a value does not fit; the loader adds key and source. */
export class InvalidValue extends Error {
  /** Creates the error; `detail` explains what is wrong beyond the expected shape. */
  constructor(readonly detail?: string) {
    super(detail ?? "invalid value");
    this.name = "InvalidValue";
  }
}

/** Inclusive bounds of a numeric key (durations and sizes take their text form, e.g. `"1s"`). */
export interface Range<T = number> {
  /** Smallest accepted value. */
  readonly min?: T;
  /** Largest accepted value. */
  readonly max?: T;
}

function rangeText(min: unknown, max: unknown): string {
  if (min !== undefined && max !== undefined) return ` from ${min} to ${max}`;
  if (min !== undefined) return ` of at least ${min}`;
  if (max !== undefined) return ` of at most ${max}`;
  return "";
}

function rangeLabel(min: unknown, max: unknown): string {
  if (min !== undefined && max !== undefined) return ` ${min}..${max}`;
  if (min !== undefined) return ` >= ${min}`;
  if (max !== undefined) return ` <= ${max}`;
  return "";
}

function checkRange(n: number, min: number | undefined, max: number | undefined): number {
  if ((min !== undefined && n < min) || (max !== undefined && n > max)) throw new InvalidValue();
  return n;
}

// JSON literals of strings, numbers, booleans and their arrays are valid TOML too.
function tomlLiteral(value: unknown): string {
  return JSON.stringify(value);
}

/** Finishes a spec: validates its default through its own converter so schema typos fail at load. */
function spec<T>(
  s: Omit<KeySpec<T>, "default" | "defaultToml">,
  rawDefault: unknown,
): KeySpec<T> {
  let value: T;
  try {
    value = s.fromToml(rawDefault);
  } catch {
    throw new Error(`config schema: default ${tomlLiteral(rawDefault)} is not ${s.expected}`);
  }
  return Object.freeze({ ...s, default: value, defaultToml: tomlLiteral(rawDefault) });
}

const INT_TEXT_RE = /^[+-]?\d+$/;

function intFrom(v: unknown, range: Range): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v)) throw new InvalidValue();
  return checkRange(v, range.min, range.max);
}

function intFromText(s: string, range: Range): number {
  if (!INT_TEXT_RE.test(s.trim())) throw new InvalidValue();
  return intFrom(Number(s), range);
}

/**
 * An integer key.
 * @example
 * ```ts
 * const schema = defineSchema({ "comet.bucket.count": int(32, "Buckets.", { min: 1 }) });
 * ```
 */
export function int(def: number, doc: string, range: Range = {}): KeySpec<number> {
  return spec<number>({
    kind: "int",
    doc,
    type: "int" + rangeLabel(range.min, range.max),
    expected: "an integer" + rangeText(range.min, range.max),
    fromToml: (v) => intFrom(v, range),
    fromText: (s) => intFromText(s, range),
  }, def);
}

/** A (possibly fractional) number key. */
export function num(def: number, doc: string, range: Range = {}): KeySpec<number> {
  const from = (v: unknown) => {
    if (typeof v !== "number" || !Number.isFinite(v)) throw new InvalidValue();
    return checkRange(v, range.min, range.max);
  };
  return spec<number>({
    kind: "number",
    doc,
    type: "number" + rangeLabel(range.min, range.max),
    expected: "a number" + rangeText(range.min, range.max),
    fromToml: from,
    fromText: (s) => from(s.trim() === "" ? NaN : Number(s)),
  }, def);
}

/** A boolean key; text sources accept true/false/1/0. */
export function bool(def: boolean, doc: string): KeySpec<boolean> {
  return spec<boolean>({
    kind: "bool",
    doc,
    type: "bool",
    expected: "true or false",
    fromToml: (v) => {
      if (typeof v !== "boolean") throw new InvalidValue();
      return v;
    },
    fromText: (s) => {
      const t = s.trim().toLowerCase();
      if (t === "true" || t === "1") return true;
      if (t === "false" || t === "0") return false;
      throw new InvalidValue();
    },
  }, def);
}

/** Options of {@linkcode str}: an optional shape the string must match. */
export interface StrOptions {
  /** Pattern the whole value must match. */
  readonly pattern?: RegExp;
  /** Description of the pattern for messages, e.g. `an http(s) URL`. */
  readonly what?: string;
}

/** A string key, optionally constrained by a pattern. */
export function str(def: string, doc: string, opts: StrOptions = {}): KeySpec<string> {
  const from = (v: unknown) => {
    if (typeof v !== "string") throw new InvalidValue();
    if (opts.pattern && !opts.pattern.test(v)) throw new InvalidValue();
    return v;
  };
  return spec<string>({
    kind: "string",
    doc,
    type: "string",
    expected: opts.what ?? "a string",
    fromToml: from,
    fromText: from,
  }, def);
}

/**
 * A key holding one of a fixed set of strings; its TypeScript type is the union.
 * @example
 * ```ts
 * const level = oneOf(["debug", "info"], "info", "Lowest level logged.");
 * ```
 */
export function oneOf<const V extends readonly [string, ...string[]]>(
  values: V,
  def: V[number],
  doc: string,
): KeySpec<V[number]> {
  const from = (v: unknown): V[number] => {
    if (typeof v !== "string") throw new InvalidValue();
    if ((values as readonly string[]).includes(v)) return v;
    const near = suggest(v, values);
    throw new InvalidValue(near ? `did you mean "${near}"?` : undefined);
  };
  return spec<V[number]>({
    kind: "enum",
    doc,
    type: values.map((v) => `\`${v}\``).join(", "),
    expected: "one of " + values.map((v) => `"${v}"`).join(", "),
    fromToml: from,
    fromText: from,
  }, def);
}

const DURATION_HINT = "units: ms, s, m, h; combinable as in 1m30s";
const BYTES_HINT = "units: B; KiB, MiB, GiB = 1024-based; KB, MB, GB = 1000-based";

/**
 * A duration key, written like `"8s"` and converted to milliseconds.
 * Bare numbers are refused in TOML because their unit would be a guess.
 */
export function duration(def: string, doc: string, range: Range<string> = {}): KeySpec<Millis> {
  const min = range.min === undefined ? 0 : parseDuration(range.min);
  const max = range.max === undefined ? undefined : parseDuration(range.max);
  const fromText = (s: string) => {
    let ms: number;
    try {
      ms = parseDuration(s);
    } catch (e) {
      const whole = (e as Error).message.includes("whole");
      throw new InvalidValue(whole ? "not a whole number of milliseconds" : DURATION_HINT);
    }
    return checkRange(ms, min, max);
  };
  return spec<Millis>({
    kind: "duration",
    doc,
    type: "duration" + rangeLabel(range.min, range.max),
    expected: "a duration" + rangeText(range.min, range.max) + ` (e.g. "8s", "500ms")`,
    fromToml: (v) => {
      if (typeof v !== "string") {
        throw new InvalidValue(
          typeof v === "number"
            ? `a bare number has no unit: write "${v}s" or "${v}ms"`
            : undefined,
        );
      }
      return fromText(v);
    },
    fromText,
  }, def);
}

/** A byte-size key: an integer number of bytes or a string like `"64KiB"`. */
export function bytes(
  def: string | number,
  doc: string,
  range: Range<string | number> = {},
): KeySpec<Bytes> {
  const toBytes = (v: string | number | undefined) => typeof v === "string" ? parseBytes(v) : v;
  const min = toBytes(range.min) ?? 0;
  const max = toBytes(range.max);
  const fromText = (s: string) => {
    let n: number;
    try {
      n = parseBytes(s);
    } catch (e) {
      const whole = (e as Error).message.includes("whole");
      throw new InvalidValue(whole ? "not a whole number of bytes" : BYTES_HINT);
    }
    return checkRange(n, min, max);
  };
  return spec<Bytes>({
    kind: "bytes",
    doc,
    type: "bytes" + rangeLabel(range.min, range.max),
    expected: "a size" + rangeText(range.min, range.max) + ` (e.g. 4096, "64KiB")`,
    fromToml: (v) => {
      if (typeof v === "number") return checkRange(intFrom(v, {}), min, max);
      if (typeof v !== "string") throw new InvalidValue();
      return fromText(v);
    },
    fromText,
  }, def);
}

/** Options of {@linkcode addr} and {@linkcode addrs}. */
export interface AddrOptions {
  /** A listen address: an empty host (goim's `:3101`) means `0.0.0.0`. */
  readonly bind?: boolean;
  /** An empty string is allowed and means "disabled" ({@linkcode addr} only). */
  readonly optional?: boolean;
}

const ADDR_RE = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]/]*):(\d{1,5})$/;

function parseAddr(v: unknown, opts: AddrOptions): string {
  if (typeof v !== "string") throw new InvalidValue();
  if (v === "" && opts.optional) return "";
  const m = ADDR_RE.exec(v.trim());
  if (!m || Number(m[2]) > 65535) throw new InvalidValue();
  if (m[1] === "") {
    if (!opts.bind) throw new InvalidValue("the host is missing");
    return `0.0.0.0:${m[2]}`;
  }
  return v.trim();
}

function addrExpected(opts: AddrOptions): string {
  return `a "host:port" address such as "${opts.bind ? "0.0.0.0" : "127.0.0.1"}:3101"` +
    (opts.optional ? ` or "" to disable` : "");
}

/** A `host:port` key (port 0 = pick a free port, handy in tests). */
export function addr(def: string, doc: string, opts: AddrOptions = {}): KeySpec<string> {
  return spec<string>({
    kind: "addr",
    doc,
    type: "host:port",
    expected: addrExpected(opts),
    fromToml: (v) => parseAddr(v, opts),
    fromText: (s) => parseAddr(s, opts),
  }, def);
}

/** Splits a list from an environment variable or flag: a JSON array, or comma-separated. */
function splitList(s: string): unknown[] {
  const t = s.trim();
  if (t.startsWith("[")) {
    try {
      const v = JSON.parse(t);
      if (Array.isArray(v)) return v;
    } catch {
      // Fall through: reported below as not a list.
    }
    throw new InvalidValue("not a JSON array");
  }
  return t === "" ? [] : t.split(",").map((x) => x.trim());
}

function listSpec<T>(
  kind: KeyKind,
  type: string,
  itemExpected: string,
  example: string,
  item: (v: unknown) => T,
  itemText: (s: string) => T,
  def: readonly unknown[],
  doc: string,
): KeySpec<readonly T[]> {
  const each = (arr: unknown[], conv: (v: never) => T) =>
    Object.freeze(arr.map((v, i) => {
      try {
        return conv(v as never);
      } catch (e) {
        const why = (e as InvalidValue).detail;
        throw new InvalidValue(
          `item ${i + 1} ${describe(v)} is not ${itemExpected}${why ? `: ${why}` : ""}`,
        );
      }
    }));
  return spec<readonly T[]>({
    kind,
    doc,
    type,
    expected: `a list of ${example}`,
    fromToml: (v) => {
      if (!Array.isArray(v)) throw new InvalidValue();
      return each(v, item);
    },
    fromText: (s) => {
      const parts = splitList(s);
      return each(parts, (p: unknown) => typeof p === "string" ? itemText(p) : item(p));
    },
  }, def);
}

/** A list-of-strings key (text sources: comma-separated or a JSON array). */
export function strings(def: readonly string[], doc: string): KeySpec<readonly string[]> {
  const item = (v: unknown) => {
    if (typeof v !== "string") throw new InvalidValue();
    return v;
  };
  return listSpec(
    "strings",
    "list of strings",
    "a string",
    `strings like ["a", "b"]`,
    item,
    item,
    def,
    doc,
  );
}

/** A list of `host:port` addresses. */
export function addrs(
  def: readonly string[],
  doc: string,
  opts: Omit<AddrOptions, "optional"> = {},
): KeySpec<readonly string[]> {
  const item = (v: unknown) => parseAddr(v, opts);
  return listSpec(
    "addrs",
    "list of host:port",
    addrExpected(opts),
    `"host:port" addresses like ["${opts.bind ? "0.0.0.0" : "127.0.0.1"}:3101"]`,
    item,
    item,
    def,
    doc,
  );
}

/** A list-of-integers key. */
export function ints(
  def: readonly number[],
  doc: string,
  range: Range = {},
): KeySpec<readonly number[]> {
  return listSpec(
    "ints",
    "list of int" + rangeLabel(range.min, range.max),
    "an integer" + rangeText(range.min, range.max),
    `integers like [1, 2]` +
      (rangeText(range.min, range.max) ? `, each${rangeText(range.min, range.max)}` : ""),
    (v) => intFrom(v, range),
    (s) => intFromText(s, range),
    def,
    doc,
  );
}

const SEGMENT_RE = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/;

/**
 * Declares a schema and checks its shape: every path segment is snake_case
 * (so the env mapping `.` → `__` is reversible), no key is also a table, and
 * no top-level key is `config` (its env var would be `GOIM_CONFIG`).
 *
 * @example
 * ```ts
 * const schema = defineSchema({
 *   "server.port": int(8080, "Port.", { min: 0, max: 65535 }),
 *   "server.timeout": duration("8s", "Timeout."),
 * });
 * ```
 */
export function defineSchema<const S extends Schema>(schema: S): S {
  const paths = Object.keys(schema);
  for (const p of paths) {
    const segs = p.split(".");
    if (!segs.every((s) => SEGMENT_RE.test(s))) {
      throw new Error(`config schema: "${p}" must be dot-separated snake_case segments`);
    }
    if (segs[0] === "config") throw new Error(`config schema: "${p}": "config" is reserved`);
    for (let i = 1; i < segs.length; i++) {
      const prefix = segs.slice(0, i).join(".");
      if (prefix in schema) {
        throw new Error(`config schema: "${prefix}" is both a key and a table of "${p}"`);
      }
    }
  }
  return Object.freeze(schema);
}

/** The value type of a key spec. */
export type ValueOf<K> = K extends KeySpec<infer T> ? T : never;
/** First segment of a dotted path. */
export type PathHead<P extends string> = P extends `${infer H}.${string}` ? H : P;
/** Nests a map of dotted paths → value types into readonly objects. */
export type Tree<M> = {
  readonly [H in PathHead<keyof M & string>]: H extends keyof M ? M[H]
    : Tree<{ [P in keyof M as P extends `${H}.${infer R}` ? R : never]: M[P] }>;
};

/**
 * The typed configuration object of a schema: dotted paths become nested
 * readonly objects, e.g. `"comet.tcp.bind"` → `cfg.comet.tcp.bind`.
 */
export type ConfigOf<S extends Schema> = Tree<{ [P in keyof S]: ValueOf<S[P]> }>;

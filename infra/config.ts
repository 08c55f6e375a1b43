/**
 * One configuration for every role (comet, logic, job, or all three in one
 * process), declared once as a schema from which the loader, the TypeScript
 * type, the validation messages and docs/CONFIG.md are all derived.
 *
 * Sources, later ones winning: schema defaults ← TOML file (`--config PATH`
 * or `GOIM_CONFIG`) ← environment (`GOIM_COMET__TCP__BIND=…`) ← flags
 * (`--set comet.tcp.bind=…`). Any invalid input throws a {@linkcode ConfigError}
 * that names the key, the source and what was expected.
 *
 * Run as a program it maintains the reference and checks files:
 * `./scripts/deno run -A infra/config.ts --write-docs` regenerates
 * docs/CONFIG.md; `--print [--config F] [--set K=V]` prints the effective
 * configuration as JSON.
 *
 * @example Load in a role's entry point
 * ```ts
 * import { loadConfigOrExit } from "./infra/config.ts";
 * const cfg = loadConfigOrExit(); // reads Deno.args and Deno.env; exit code 2 on error
 * cfg.comet.tcp.bind; // readonly string[], e.g. ["0.0.0.0:3101"]
 * cfg.comet.handshake_timeout; // 8000 (durations are milliseconds)
 * ```
 *
 * @module
 */
import { parse as parseToml, TomlError } from "smol-toml";

// ---------------------------------------------------------------------------
// Units

/** A duration in milliseconds (config durations such as `"8s"` become 8000). */
export type Millis = number;
/** A size in bytes (config sizes such as `"64KiB"` become 65536). */
export type Bytes = number;

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
// `ms` precedes `m` so "5ms" is not read as 5 minutes followed by garbage.
const DURATION_RE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const DURATION_PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;

/**
 * Parses a Go-style duration (`"500ms"`, `"8s"`, `"4m"`, `"1h"`, `"1m30s"`,
 * or `"0"`) into whole milliseconds. Throws a `RangeError` otherwise.
 *
 * @example
 * ```ts
 * parseDuration("1m30s"); // 90000
 * ```
 */
export function parseDuration(text: string): Millis {
  const s = text.trim();
  if (s === "0") return 0;
  if (!DURATION_RE.test(s)) {
    throw new RangeError(`"${text}" is not a duration (use ms, s, m or h, e.g. "500ms", "8s")`);
  }
  let ms = 0;
  for (const [, n, unit] of s.matchAll(DURATION_PART_RE)) ms += Number(n) * DURATION_UNITS[unit];
  // Decimal fractions are inexact in binary ("1.1s" = 1100.0000000000002 ms).
  const rounded = Math.round(ms * 1e6) / 1e6;
  if (!Number.isSafeInteger(rounded)) {
    throw new RangeError(`"${text}" is not a whole number of milliseconds`);
  }
  return rounded;
}

const BYTE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};
const BYTES_RE = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i;

/**
 * Parses a byte size: a plain integer (`"4096"`) or a number with a unit
 * (`"64KiB"`, `"1MiB"`, `"1.5GiB"`; KiB/MiB/GiB are powers of 1024, KB/MB/GB
 * powers of 1000). Throws a `RangeError` otherwise.
 *
 * @example
 * ```ts
 * parseBytes("64KiB"); // 65536
 * ```
 */
export function parseBytes(text: string): Bytes {
  const m = BYTES_RE.exec(text.trim());
  const unit = m ? BYTE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new RangeError(
      `"${text}" is not a size (use bytes or B, KiB, MiB, GiB, KB, MB, GB, e.g. "64KiB")`,
    );
  }
  const n = Math.round(Number(m[1]) * unit * 1e6) / 1e6;
  if (!Number.isSafeInteger(n)) throw new RangeError(`"${text}" is not a whole number of bytes`);
  return n;
}

// ---------------------------------------------------------------------------
// Schema

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

// ---------------------------------------------------------------------------
// The goim configuration

// Schema order is the order of docs/CONFIG.md. Adding a key is one entry here
// (plus `--write-docs`); the type, env var, flag and docs follow from it.
/** Every configuration key of the server, with type, default and doc. */
export const CONFIG_SCHEMA = defineSchema({
  "mode": oneOf(
    ["embedded", "distributed"],
    "embedded",
    "embedded: one process runs comet, logic and job on in-memory engines; distributed: one role per process, sharing Kafka and Redis.",
  ),

  "node.id": str(
    "",
    "Id of this process in the cluster (a comet's id is what routes point at and job dials); empty = the host name. Must be unique per comet.",
  ),
  "node.region": str(
    "",
    "Region of this node (goim REGION); the nodes API prefers comets in the client's region.",
  ),
  "node.zone": str("", "Zone within the region (goim ZONE)."),

  "log.level": oneOf(
    ["debug", "info", "warn", "error"],
    "info",
    "Lowest level written; calls below it cost a no-op call.",
  ),
  "log.format": oneOf(
    ["json", "text"],
    "json",
    "json: one object per line, for collectors; text: for humans. Both go to stderr.",
  ),

  "metrics.enabled": bool(
    true,
    "Serve Prometheus metrics at /metrics on each role's admin endpoint.",
  ),

  "protocol.max_body": bytes(
    4096,
    "Largest body of a client → server frame (goim: 4096); a larger packLen is a protocol error that closes the connection.",
    { min: 0, max: "16MiB" },
  ),

  "comet.tcp.bind": addrs(["0.0.0.0:3101"], "Raw TCP listen addresses; [] disables TCP.", {
    bind: true,
  }),
  "comet.tcp.sndbuf": bytes(
    0,
    "Kernel send buffer per socket (SO_SNDBUF) where the runtime allows setting it (Deno does not yet: a non-zero value logs a warning); 0 = OS default (goim: 4096).",
    { max: "64MiB" },
  ),
  "comet.tcp.rcvbuf": bytes(
    0,
    "Kernel receive buffer per socket (SO_RCVBUF) where the runtime allows setting it (Deno does not yet: a non-zero value logs a warning); 0 = OS default (goim: 4096).",
    { max: "64MiB" },
  ),
  "comet.tcp.keepalive": bool(
    false,
    "TCP keepalive probes; the protocol heartbeat already finds dead peers (goim default false).",
  ),
  "comet.websocket.bind": addrs(
    ["0.0.0.0:3102"],
    "WebSocket (path /sub) listen addresses; [] disables.",
    { bind: true },
  ),
  "comet.websocket.tls_bind": addrs(
    [],
    'WSS listen addresses (goim\'s port is 3103, e.g. ["0.0.0.0:3103"]); [] disables. Needs cert_file and key_file.',
    { bind: true },
  ),
  "comet.websocket.cert_file": str("", "PEM certificate chain file for WSS."),
  "comet.websocket.key_file": str("", "PEM private key file for WSS."),
  "comet.grpc.bind": addr(
    "127.0.0.1:3109",
    "gRPC goim.comet.Comet listen address; job pushes through it. Loopback by default: anyone who reaches it can push to every client (see grpc.token, grpc.tls.*).",
    { bind: true },
  ),
  "comet.admin.bind": addr(
    "127.0.0.1:3190",
    'HTTP admin endpoint of the comet role (/metrics, /healthz); "" disables. Loopback by default because metrics reveal internals.',
    { bind: true, optional: true },
  ),
  "comet.handshake_timeout": duration(
    "8s",
    "Time a new connection has to send its auth frame (op 7) before it is closed.",
    { min: "1ms" },
  ),
  "comet.heartbeat_interval": duration(
    "4m",
    "Heartbeat period expected from clients (goim Node.Heartbeat).",
    { min: "1s" },
  ),
  "comet.heartbeat_max": int(
    2,
    "Heartbeat periods a connection may stay silent: idle timeout = heartbeat_interval × heartbeat_max (goim: 4m × 2).",
    { min: 1, max: 100 },
  ),
  "comet.bucket.count": int(32, "Buckets sharding channels and rooms (goim Bucket.Size).", {
    min: 1,
    max: 4096,
  }),
  "comet.bucket.channel_size": int(
    1024,
    "Expected channels per bucket, a sizing hint (goim Bucket.Channel).",
    { min: 1 },
  ),
  "comet.bucket.room_size": int(
    1024,
    "Expected rooms per bucket, a sizing hint (goim Bucket.Room).",
    { min: 1 },
  ),
  "comet.send_queue.max_bytes": bytes(
    "1MiB",
    "Bytes queued for one connection before send_queue.policy applies. Pushed bytes are shared, so this bounds what a slow client pins, not what each client costs.",
    { min: "1KiB", max: "1GiB" },
  ),
  "comet.send_queue.policy": oneOf(
    ["disconnect", "drop_oldest", "drop_new"],
    "disconnect",
    "When a send queue is full: close the slow client (op 6 first), drop its oldest queued frames, or drop the new frame. Counted in metrics.",
  ),
  "comet.shutdown_deadline": duration(
    "10s",
    "On SIGINT/SIGTERM, time allowed to drain and close connections before exiting anyway.",
  ),
  "comet.renew_online_interval": duration(
    "10s",
    "How often the comet reports its room online counts to logic (goim: 10s).",
    { min: "100ms" },
  ),
  "comet.route_heartbeat_interval": duration(
    "10m",
    "A connection refreshes its route in logic (Heartbeat RPC) at most this often, on client heartbeats; must be below logic.route_ttl (goim: random 10–30m).",
    { min: "1s" },
  ),
  "comet.logic_addrs": addrs(
    ["127.0.0.1:3119"],
    "Logic gRPC addresses this comet calls in distributed mode.",
  ),
  "comet.limits.max_ops": int(
    256,
    "Operations one connection may accept (auth accepts plus op 14); a Sub past it closes the connection (op 6, reason 4007).",
    { min: 1, max: 65536 },
  ),
  "comet.limits.frame_rate": num(
    50,
    "Client frames per second one connection may send on average (token bucket refill); past the burst it is closed (op 6, reason 4007). 0 = unlimited.",
    { min: 0 },
  ),
  "comet.limits.frame_burst": int(
    200,
    "Client frames one connection may send at once before comet.limits.frame_rate applies (token bucket size).",
    { min: 1 },
  ),
  "comet.limits.input_buffer": bytes(
    "64KiB",
    "Input bytes one connection may hold unparsed or waiting (partial frames, WebSocket fragments, frames held back while logic answers); past it the connection is closed (op 6 4007; WebSocket close 1009). Must exceed protocol.max_body + 30.",
    { min: "1KiB", max: "64MiB" },
  ),
  "comet.limits.fd_reserve": int(
    256,
    "File descriptors kept free for the HTTP API, admin, gRPC, Redis and Kafka: new client connections are refused (TCP: op 6 reason 4007; WebSocket upgrade: HTTP 503) once open files reach the process limit (read from the process) minus this.",
    { min: 0 },
  ),
  "comet.websocket.max_fragments": int(
    16,
    "Frames one WebSocket message may be split into (continuations included); more closes the connection (1008).",
    { min: 1, max: 65536 },
  ),
  "comet.weight": int(
    10,
    "Weight of this comet in the nodes API's balancing (goim WEIGHT); 0 = never offered.",
    { min: 0, max: 1_000_000 },
  ),
  "comet.addrs": strings(
    [],
    "Public hosts or IPs clients reach this comet at (goim ADDRS), paired with logic.nodes.*_port by the nodes API; [] = not advertised.",
  ),

  "logic.http.bind": addr(
    "127.0.0.1:3111",
    "HTTP push/online/nodes API (/goim/…) listen address. A non-loopback address needs logic.auth.api_keys or logic.http.insecure = true.",
    { bind: true },
  ),
  "logic.http.insecure": bool(
    false,
    "Allow the push API on a non-loopback address without api_keys (anyone who reaches it can push to every client; logged at WARN).",
  ),
  "logic.http.max_body": bytes(
    "64KiB",
    "Largest push message accepted (bigger: HTTP 413, code -413). Every target queues it, so keep it well below comet.send_queue.max_bytes.",
    { min: 1, max: "16MiB" },
  ),
  "logic.grpc.bind": addr(
    "127.0.0.1:3119",
    "gRPC goim.logic.Logic listen address; comets connect here. Loopback by default: it can create and delete routes (see grpc.token, grpc.tls.*).",
    { bind: true },
  ),
  "logic.admin.bind": addr(
    "127.0.0.1:3191",
    'HTTP admin endpoint of the logic role (/metrics, /healthz); "" disables.',
    {
      bind: true,
      optional: true,
    },
  ),
  "logic.auth.mode": oneOf(
    ["none", "jwt"],
    "none",
    "none: trust mid/key of the auth frame, as goim does; jwt: require a signed token in its token field.",
  ),
  "logic.auth.jwt.algorithm": oneOf(["HS256", "RS256"], "HS256", "JWT signature algorithm."),
  "logic.auth.jwt.secret": str(
    "",
    "HS256 shared secret; prefer the env var GOIM_LOGIC__AUTH__JWT__SECRET to a file.",
  ),
  "logic.auth.jwt.public_key_file": str("", "PEM (SPKI) public key file for RS256."),
  "logic.auth.api_keys": strings(
    [],
    "Keys accepted by the HTTP API; [] leaves it open, as goim does.",
  ),
  "logic.auth.jwt.audience": str(
    "",
    'Required `aud` claim (a token whose aud is neither this string nor a list holding it is refused); "" = not checked.',
  ),
  "logic.auth.jwt.issuer": str("", 'Required `iss` claim; "" = not checked.'),
  "logic.auth.jwt.max_lifetime": duration(
    "0s",
    "Longest token lifetime accepted (exp - iat; a token without iat counts from now); 0 = no limit.",
  ),
  "logic.auth.jwt.close_on_expiry": bool(
    false,
    "Close connections whose token's exp has passed (op 6, reason 4001); false = a connection outlives its token, as with goim.",
  ),
  "logic.route_ttl": duration(
    "30m",
    "Lifetime of a session route (mid/key → comet) that is not refreshed (goim Redis expire: 30m).",
    { min: "1s" },
  ),
  "logic.online_stale_after": duration(
    "60s",
    "Room online counts reported by a comet longer ago than this are ignored.",
    { min: "1s" },
  ),
  "logic.webhook.url": str(
    "",
    'URL that receives upstream client messages (op 4) as HTTP POSTs; "" disables (goim only logs them).',
    { pattern: /^(?:https?:\/\/\S+)?$/, what: `an http:// or https:// URL, or ""` },
  ),
  "logic.webhook.timeout": duration("2s", "Timeout of one webhook delivery.", { min: "1ms" }),
  "logic.webhook.retries": int(
    2,
    "Retries after a failed delivery before the message is dropped and counted.",
    { min: 0, max: 100 },
  ),
  "logic.webhook.buffer": int(
    1024,
    "Messages waiting for delivery; when full, new ones are dropped and counted.",
    { min: 1 },
  ),
  "logic.nodes.default_domain": str(
    "conn.goim.io",
    "Domain the nodes API returns when no comet is known (goim Node.DefaultDomain).",
  ),
  "logic.nodes.host_domain": str(
    ".goim.io",
    "Suffix the nodes API appends to comet host names (goim Node.HostDomain).",
  ),
  "logic.nodes.tcp_port": int(3101, "TCP port the nodes API advertises (goim Node.TCPPort).", {
    min: 1,
    max: 65535,
  }),
  "logic.nodes.ws_port": int(3102, "WebSocket port the nodes API advertises (goim Node.WSPort).", {
    min: 1,
    max: 65535,
  }),
  "logic.nodes.wss_port": int(3103, "WSS port the nodes API advertises (goim Node.WSSPort).", {
    min: 1,
    max: 65535,
  }),
  "logic.nodes.region_weight": num(
    1.6,
    "Weight multiplier of comets in the client's region (goim Node.RegionWeight).",
    { min: 0 },
  ),

  "job.comet_lanes": int(
    32,
    "Ordered worker lanes per comet that pushes are spread over (goim Comet.RoutineSize).",
    { min: 1, max: 1024 },
  ),
  "job.lane_queue": int(
    1024,
    "Pushes queued per lane before the consumer waits (goim Comet.RoutineChan).",
    { min: 1 },
  ),
  "job.room.batch": int(20, "Messages merged into one room broadcast (goim Room.Batch).", {
    min: 1,
    max: 10_000,
  }),
  "job.room.window": duration(
    "20ms",
    "Longest a room message waits for its batch to fill (goim Room.Signal is 1s; shorter keeps latency low).",
    { max: "10s" },
  ),
  "job.room.idle": duration(
    "15m",
    "A room's batcher is released after this long without messages (goim Room.Idle).",
    { min: "1s" },
  ),
  "job.retry.max_attempts": int(
    3,
    "Attempts per push to a comet, the first included; 1 = no retry.",
    { min: 1, max: 100 },
  ),
  "job.retry.base_delay": duration(
    "100ms",
    "Delay before the first retry; doubles on each further attempt.",
  ),
  "job.retry.max_delay": duration("2s", "Upper bound of the retry delay."),
  "job.admin.bind": addr(
    "127.0.0.1:3192",
    'HTTP admin endpoint of the job role (/metrics, /healthz); "" disables.',
    {
      bind: true,
      optional: true,
    },
  ),

  "grpc.token": str(
    "",
    'Shared secret between roles: sent as gRPC metadata `authorization: Bearer <token>` and checked (constant time) by every internal gRPC server; "" = none (needed next to unmodified goim processes). Prefer the env var GOIM_GRPC__TOKEN.',
  ),
  "grpc.tls.cert_file": str(
    "",
    'PEM certificate chain of this process for internal gRPC (server side, and client side for mTLS); "" = plaintext.',
  ),
  "grpc.tls.key_file": str("", "PEM private key matching grpc.tls.cert_file."),
  "grpc.tls.ca_file": str(
    "",
    'PEM CA bundle that peers\' certificates must chain to; with it, servers also require client certificates (mTLS). "" = system roots, no client certificates.',
  ),
  "grpc.tls.server_name": str(
    "",
    'Name checked in the server certificate when dialling (overrides the host of the address); "" = the host dialled.',
  ),

  "http.header_timeout": duration(
    "10s",
    "Every HTTP listener (push API, admin): a connection must send a request's whole header within this time after its first byte (or after the previous response on keep-alive), or it is closed.",
    { min: "1ms" },
  ),
  "http.body_timeout": duration(
    "30s",
    "Every HTTP listener: a request body must arrive whole within this time after its header, or the request fails with 408 and the connection is closed.",
    { min: "1ms" },
  ),
  "http.idle_timeout": duration(
    "60s",
    "Every HTTP listener: a keep-alive connection with no request in progress is closed after this long.",
    { min: "1ms" },
  ),
  "http.max_connections": int(
    1024,
    "Open connections per HTTP listener; further connections get 503 and are closed.",
    { min: 1 },
  ),

  "admin.token": str(
    "",
    'Bearer token required by every admin endpoint but /healthz (Prometheus: authorization.credentials); "" = none. Prefer the env var GOIM_ADMIN__TOKEN.',
  ),
  "admin.insecure": bool(
    false,
    "Allow admin endpoints on a non-loopback address without admin.token (logged at WARN).",
  ),

  "queue.engine": oneOf(
    ["memory", "kafka"],
    "memory",
    "memory: in-process queue (logic and job in one process); kafka: a topic shared by every logic and job.",
  ),
  "queue.memory.capacity": int(
    65536,
    "Messages the in-memory queue holds; when it is full, publishing fails (the push API answers 503).",
    { min: 1 },
  ),
  "queue.kafka.brokers": addrs(["127.0.0.1:9092"], "Kafka bootstrap brokers."),
  "queue.kafka.topic": str(
    "goim-push-topic",
    "Topic carrying PushMsg messages (goim Kafka.Topic).",
  ),
  "queue.kafka.group": str(
    "goim-push-group-job",
    "Consumer group of the job role (goim Kafka.Group).",
  ),
  "queue.kafka.client_id": str("goim", "Kafka client id, shown in broker logs and quotas."),
  "queue.kafka.session_timeout": duration(
    "10s",
    "Job consumer session timeout: a job that dies without leaving the group holds its partitions this long before another takes over (kafkajs default 30s; the broker allows 6s..30m by default).",
    { min: "1s" },
  ),

  "sessions.engine": oneOf(
    ["memory", "redis"],
    "memory",
    "Where session routes (mid/key → comet) live: memory (one logic) or redis (shared by all logics).",
  ),
  "registry.engine": oneOf(
    ["memory", "redis"],
    "memory",
    "Where comets register for logic and job to find: memory (one process) or redis.",
  ),

  "redis.url": str(
    "redis://127.0.0.1:6379",
    "Redis URL: redis:// or rediss://, optionally user:password@ and /db.",
    {
      pattern: /^rediss?:\/\/\S+$/,
      what: `a redis:// or rediss:// URL`,
    },
  ),
  "redis.key_prefix": str("", 'Prefix of every Redis key; "" keeps goim\'s own key names.'),
  "redis.command_timeout": duration(
    "2s",
    "Longest one Redis command may take before it fails; while Redis is down, commands fail at once (nothing is queued).",
    { min: "1ms" },
  ),
});

/** The fully typed, frozen configuration. Durations are milliseconds, sizes bytes. */
export type Config = ConfigOf<typeof CONFIG_SCHEMA>;

/** A dotted key path of the configuration, e.g. `"comet.tcp.bind"`. */
export type ConfigKey = keyof typeof CONFIG_SCHEMA;

/** Intros of the sections of docs/CONFIG.md, by first path segment. */
const SECTION_DOCS: Readonly<Record<string, string>> = {
  mode: "How the roles are deployed.",
  node: "Identity of this process; usually set per process through the environment.",
  log: "Structured logs (infra/log.ts).",
  metrics: "Prometheus metrics (infra/metrics.ts).",
  protocol: "The client wire protocol (PROTOCOL.md).",
  comet: "The comet role: client connections over TCP, WebSocket and WSS.",
  logic: "The logic role: HTTP push API, gRPC for comets, sessions, auth.",
  job: "The job role: consumes the queue and fans pushes out to comets.",
  queue: "The queue between logic and job.",
  sessions: "The session route store.",
  registry: "The comet registry.",
  grpc: "Internal gRPC between the roles (comet ↔ logic, job → comet): credentials and TLS.",
  http: "Limits of every HTTP listener (logic's push API and each role's admin endpoint).",
  admin: "Access to the admin endpoints (/metrics, /healthz) of every role.",
  redis: "Redis connection, used by the redis engines.",
};

/**
 * Shortest HS256 secret accepted (`logic.auth.jwt.secret`, UTF-8 bytes):
 * the hash's size (RFC 7518 §3.2). Anyone holding one token can try
 * secrets offline, so a short one is as good as none.
 */
export const MIN_HS256_SECRET_BYTES = 32;

/** A rule spanning several keys, checked after every source is applied. */
interface CrossCheck {
  /** The key blamed (its source is reported). */
  readonly key: ConfigKey;
  /** The rule, for docs/CONFIG.md. */
  readonly doc: string;
  /** Returns a message when the rule is broken. */
  readonly test: (c: Config) => string | undefined;
  /** Only warn: the setup is odd but can work. */
  readonly warning?: boolean;
}

const CROSS_CHECKS: readonly CrossCheck[] = [
  {
    key: "queue.engine",
    doc:
      `\`mode = "distributed"\` needs \`queue.engine = "kafka"\`: separate processes cannot share an in-memory queue.`,
    test: (c) =>
      c.mode === "distributed" && c.queue.engine === "memory"
        ? `mode "distributed" needs queue.engine = "kafka" (separate processes cannot share an in-memory queue)`
        : undefined,
  },
  {
    key: "registry.engine",
    doc:
      `\`mode = "distributed"\` needs \`registry.engine = "redis"\`, or job and logic never see the comets.`,
    test: (c) =>
      c.mode === "distributed" && c.registry.engine === "memory"
        ? `mode "distributed" needs registry.engine = "redis" (job and logic processes cannot see comets in another process's memory)`
        : undefined,
  },
  {
    key: "sessions.engine",
    warning: true,
    doc:
      `Warning only: \`mode = "distributed"\` with \`sessions.engine = "memory"\` works only with a single logic process.`,
    test: (c) =>
      c.mode === "distributed" && c.sessions.engine === "memory"
        ? `sessions.engine "memory" in mode "distributed" only works with a single logic process`
        : undefined,
  },
  {
    key: "comet.websocket.tls_bind",
    doc: "A non-empty `comet.websocket.tls_bind` needs `cert_file` and `key_file`.",
    test: (c) =>
      c.comet.websocket.tls_bind.length > 0 &&
        (c.comet.websocket.cert_file === "" || c.comet.websocket.key_file === "")
        ? "WSS is enabled but comet.websocket.cert_file or comet.websocket.key_file is empty"
        : undefined,
  },
  {
    key: "logic.auth.mode",
    doc: '`logic.auth.mode = "jwt"` needs `jwt.secret` (HS256) or `jwt.public_key_file` (RS256).',
    test: (c) => {
      const jwt = c.logic.auth.jwt;
      if (c.logic.auth.mode !== "jwt") return undefined;
      if (jwt.algorithm === "HS256" && jwt.secret === "") {
        return `auth mode "jwt" with HS256 needs logic.auth.jwt.secret`;
      }
      if (jwt.algorithm === "RS256" && jwt.public_key_file === "") {
        return `auth mode "jwt" with RS256 needs logic.auth.jwt.public_key_file`;
      }
      return undefined;
    },
  },
  {
    key: "logic.auth.jwt.secret",
    doc:
      `With \`logic.auth.mode = "jwt"\` and HS256, \`jwt.secret\` must be at least ${MIN_HS256_SECRET_BYTES} bytes.`,
    test: (c) => {
      const jwt = c.logic.auth.jwt;
      if (c.logic.auth.mode !== "jwt" || jwt.algorithm !== "HS256" || jwt.secret === "") {
        return undefined; // an empty secret is the rule above's
      }
      const n = new TextEncoder().encode(jwt.secret).length;
      return n < MIN_HS256_SECRET_BYTES
        ? `the HS256 secret is ${n} bytes; at least ${MIN_HS256_SECRET_BYTES} are needed (a short secret can be guessed offline from any token)`
        : undefined;
    },
  },
  {
    key: "comet.route_heartbeat_interval",
    doc: "`comet.route_heartbeat_interval` must be below `logic.route_ttl`, or live routes expire.",
    test: (c) =>
      c.comet.route_heartbeat_interval >= c.logic.route_ttl
        ? `must be below logic.route_ttl (${c.logic.route_ttl} ms), or routes of live connections expire`
        : undefined,
  },
  {
    key: "logic.http.max_body",
    doc:
      "`logic.http.max_body` + 16 must fit in `comet.send_queue.max_bytes`, or one push overflows every queue.",
    test: (c) =>
      c.logic.http.max_body + 16 > c.comet.send_queue.max_bytes
        ? `a push of ${c.logic.http.max_body} bytes would not fit in comet.send_queue.max_bytes (${c.comet.send_queue.max_bytes})`
        : undefined,
  },
];

// ---------------------------------------------------------------------------
// Loading

/** Where a value came from; rendered in messages as `file:line`, `env NAME` or `flag …`. */
export type ConfigSource =
  | { readonly kind: "default" }
  | { readonly kind: "file"; readonly path: string; readonly line?: number }
  | { readonly kind: "env"; readonly name: string }
  | { readonly kind: "flag"; readonly arg: string };

/** Formats a source for a message: `config/x.toml:12`, `env GOIM_X`, `flag --set x=1`, `default`. */
export function formatSource(s: ConfigSource): string {
  switch (s.kind) {
    case "default":
      return "default";
    case "file":
      return s.line ? `${s.path}:${s.line}` : s.path;
    case "env":
      return `env ${s.name}`;
    case "flag":
      return `flag ${s.arg}`;
  }
}

/** One problem found while loading. */
export interface ConfigIssue {
  /** The key concerned, if any (an unknown key is reported as written). */
  readonly key?: string;
  /** Where the offending value came from. */
  readonly source: ConfigSource;
  /** The full one-line message, starting with the source. */
  readonly message: string;
}

/**
 * Invalid configuration. `message` holds one line per problem, each naming
 * the source, the key and what was expected; `issues` has them structured.
 */
export class ConfigError extends Error {
  /** Creates the error from its issues. */
  constructor(readonly issues: readonly ConfigIssue[]) {
    super(
      issues.length === 1
        ? `invalid configuration: ${issues[0].message}`
        : `invalid configuration (${issues.length} problems):\n` +
          issues.map((i) => `  ${i.message}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/** Options of {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /**
   * TOML file to read when neither `--config` nor `GOIM_CONFIG` names one
   * (a program's default path). No file at all is fine: defaults apply.
   */
  readonly file?: string;
  /** Environment; defaults to `Deno.env.toObject()`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Command-line arguments; defaults to `Deno.args`. */
  readonly args?: readonly string[];
  /** Leave arguments other than `--config`/`--set` to the caller instead of rejecting them. */
  readonly ignoreUnknownArgs?: boolean;
  /** Receives warnings (unknown `GOIM_*` variables, odd setups); defaults to stderr. */
  readonly onWarning?: (message: string) => void;
  /** Supplies the host name used when `node.id` is empty; defaults to `Deno.hostname()`. */
  readonly hostname?: () => string;
}

/** Environment variable prefix of configuration keys. */
export const ENV_PREFIX = "GOIM_";
/** Environment variable naming the TOML file. */
export const ENV_CONFIG_FILE = "GOIM_CONFIG";
// GOIM_* names that are not keys but must not trigger "unknown variable" warnings.
const RESERVED_ENV: ReadonlySet<string> = new Set([ENV_CONFIG_FILE]);

/**
 * The environment variable of a key: `GOIM_` + the path upper-cased with
 * `.` written as `__` (segments are snake_case, so this is reversible).
 *
 * @example
 * ```ts
 * envVarName("comet.handshake_timeout"); // "GOIM_COMET__HANDSHAKE_TIMEOUT"
 * ```
 */
export function envVarName(path: string): string {
  return ENV_PREFIX + path.toUpperCase().replaceAll(".", "__");
}

interface Resolved {
  readonly values: Map<string, unknown>;
  readonly sources: Map<string, ConfigSource>;
  readonly issues: ConfigIssue[];
  readonly warnings: string[];
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) {
    const s = JSON.stringify(v);
    return s.length > 60 ? s.slice(0, 57) + "...]" : s;
  }
  if (v instanceof Date) return `a date (${v.toISOString()})`;
  if (typeof v === "object") return "a table";
  if (typeof v === "string") return JSON.stringify(v);
  return String(v);
}

function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

const squash = (s: string) => s.toLowerCase().replace(/[_\-]/g, "");

/**
 * The candidate closest to `input`, or undefined if none is close: same
 * letters ignoring case and `_` (goim's camelCase), a path ending the same
 * way (goim's `[tcp]` for `comet.tcp`), or a small edit distance.
 */
function suggest(input: string, candidates: Iterable<string>): string | undefined {
  const list = [...candidates];
  const sq = squash(input);
  const same = list.find((c) => squash(c) === sq);
  if (same) return same;
  const suffix = list.filter((c) => squash(c).endsWith("." + sq));
  if (suffix.length === 1) return suffix[0];
  const prefix = list.filter((c) => sq.length >= 3 && squash(c).startsWith(sq));
  if (prefix.length === 1) return prefix[0];
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of list) {
    const d = levenshtein(sq, squash(c));
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(2, Math.floor(input.length / 5)) ? best : undefined;
}

/** Best-effort map of dotted path → line number, for messages (smol-toml keeps no positions). */
function tomlLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  let table = "";
  let inMultiline = false;
  const splitKey = (k: string) =>
    k.split(".").map((s) => s.trim().replace(/^["']|["']$/g, "")).join(".");
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    const quotes = (line.match(/"""|'''/g) ?? []).length;
    if (inMultiline) {
      if (quotes % 2 === 1) inMultiline = false;
      return;
    }
    if (quotes % 2 === 1) inMultiline = true;
    const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(line);
    if (header) {
      table = splitKey(header[1]);
      if (!lines.has(table)) lines.set(table, i + 1);
      return;
    }
    const kv =
      /^((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=/
        .exec(line);
    if (kv) {
      const path = (table ? table + "." : "") + splitKey(kv[1]);
      if (!lines.has(path)) lines.set(path, i + 1);
    }
  });
  return lines;
}

function lineOf(lines: Map<string, number>, path: string): number | undefined {
  for (let p = path;; p = p.slice(0, p.lastIndexOf("."))) {
    const n = lines.get(p);
    if (n !== undefined || !p.includes(".")) return n;
  }
}

function isPlainTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function defaultWarn(message: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`goim: warning: ${message}\n`));
}

function resolve(schema: Schema, opts: LoadConfigOptions): Resolved {
  const values = new Map<string, unknown>();
  const sources = new Map<string, ConfigSource>();
  const issues: ConfigIssue[] = [];
  const warnings: string[] = [];
  const paths = Object.keys(schema);
  const tables = new Set(paths.flatMap((p) => {
    const segs = p.split(".");
    return segs.slice(1).map((_, i) => segs.slice(0, i + 1).join("."));
  }));
  for (const p of paths) {
    values.set(p, schema[p].default);
    sources.set(p, { kind: "default" });
  }
  const issue = (source: ConfigSource, key: string | undefined, text: string) =>
    issues.push({ key, source, message: `${formatSource(source)}: ${text}` });
  const set = (
    path: string,
    source: ConfigSource,
    convert: (s: KeySpec<unknown>) => unknown,
    got: unknown,
  ) => {
    const s = schema[path];
    try {
      values.set(path, convert(s));
      sources.set(path, source);
    } catch (e) {
      if (!(e instanceof InvalidValue)) throw e;
      issue(
        source,
        path,
        `${path}: expected ${s.expected}, got ${describe(got)}${e.detail ? ` (${e.detail})` : ""}`,
      );
    }
  };
  const unknownKey = (path: string) => {
    const near = suggest(path, [...paths, ...tables]);
    return `unknown key "${path}"${near ? ` (did you mean "${near}"?)` : ""}`;
  };

  // Flags are read first only to learn --config; they are applied last.
  const env = opts.env ?? Deno.env.toObject();
  const args = opts.args ?? Deno.args;
  const sets: Array<{ arg: string; path: string; value: string }> = [];
  let flagFile: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.indexOf("=");
    const name = a.startsWith("--") && eq > 0 ? a.slice(0, eq) : a;
    if (name !== "--config" && name !== "--set") {
      if (!opts.ignoreUnknownArgs) {
        issue(
          { kind: "flag", arg: a },
          undefined,
          `unknown argument (expected --config PATH or --set KEY=VALUE)`,
        );
      }
      continue;
    }
    let value: string | undefined = eq > 0 && name !== a ? a.slice(eq + 1) : args[++i];
    const arg = name === a ? `${a} ${value ?? ""}`.trim() : a;
    if (value === undefined) {
      issue({ kind: "flag", arg }, undefined, `${name} needs a value`);
      continue;
    }
    if (name === "--config") {
      flagFile = value;
      continue;
    }
    const kv = value.indexOf("=");
    if (kv <= 0) {
      issue(
        { kind: "flag", arg },
        undefined,
        `expected --set KEY=VALUE, e.g. --set comet.tcp.bind=0.0.0.0:3101`,
      );
      continue;
    }
    const path = value.slice(0, kv).trim();
    value = value.slice(kv + 1);
    sets.push({ arg, path, value });
  }

  // File.
  const fileSource: ConfigSource | undefined = flagFile !== undefined
    ? { kind: "flag", arg: `--config ${flagFile}` }
    : env[ENV_CONFIG_FILE]
    ? { kind: "env", name: ENV_CONFIG_FILE }
    : undefined;
  const file = flagFile ?? (env[ENV_CONFIG_FILE] || undefined) ?? opts.file;
  if (file !== undefined) {
    let text: string | undefined;
    try {
      text = Deno.readTextFileSync(file);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound ? "not found" : (e as Error).message;
      issue(
        fileSource ?? { kind: "file", path: file },
        undefined,
        `cannot read config file "${file}": ${why}`,
      );
    }
    if (text !== undefined) {
      let doc: Record<string, unknown> | undefined;
      try {
        doc = parseToml(text);
      } catch (e) {
        if (!(e instanceof TomlError)) throw e;
        const what = e.message.split("\n")[0].replace(/^Invalid TOML document:\s*/, "");
        const block = e.codeblock
          ? "\n" + e.codeblock.replace(/\n+$/, "").replace(/^/gm, "    ")
          : "";
        issue(
          { kind: "file", path: file, line: e.line },
          undefined,
          `invalid TOML at column ${e.column}: ${what}${block}`,
        );
      }
      if (doc) {
        const lines = tomlLines(text);
        const walk = (table: Record<string, unknown>, prefix: string) => {
          for (const [k, v] of Object.entries(table)) {
            const path = prefix ? `${prefix}.${k}` : k;
            const source: ConfigSource = { kind: "file", path: file, line: lineOf(lines, path) };
            if (path in schema) {
              set(path, source, (s) => s.fromToml(v), v);
            } else if (!tables.has(path)) {
              issue(source, path, unknownKey(path));
            } else if (isPlainTable(v)) {
              walk(v, path);
            } else {
              const want = `expected a table of settings ([${path}])`;
              issue(source, path, `${path}: ${want}, got ${describe(v)}`);
            }
          }
        };
        walk(doc, "");
      }
    }
  }

  // Environment.
  const byEnv = new Map(paths.map((p) => [envVarName(p), p]));
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined || RESERVED_ENV.has(name)) continue;
    const path = byEnv.get(name);
    if (path === undefined) {
      const guess = name.slice(ENV_PREFIX.length).toLowerCase().replaceAll("__", ".");
      const near = suggest(guess, paths);
      warnings.push(
        `environment variable ${name} is not a configuration key and is ignored` +
          (near ? ` (did you mean ${envVarName(near)}?)` : ""),
      );
      continue;
    }
    set(path, { kind: "env", name }, (s) => s.fromText(value), value);
  }

  // Flags.
  for (const { arg, path, value } of sets) {
    const source: ConfigSource = { kind: "flag", arg };
    if (path in schema) set(path, source, (s) => s.fromText(value), value);
    else issue(source, path, unknownKey(path));
  }
  return { values, sources, issues, warnings };
}

function buildTree(values: Map<string, unknown>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [path, v] of values) {
    const segs = path.split(".");
    let node = root;
    for (const s of segs.slice(0, -1)) node = (node[s] ??= {}) as Record<string, unknown>;
    node[segs[segs.length - 1]] = v;
  }
  const freeze = (o: Record<string, unknown>): Record<string, unknown> => {
    for (const v of Object.values(o)) if (isPlainTable(v)) freeze(v);
    return Object.freeze(o);
  };
  return freeze(root);
}

/**
 * Loads a configuration for any schema (the engine behind
 * {@linkcode loadConfig}, without the goim-specific rules).
 *
 * @example
 * ```ts
 * const schema = defineSchema({ "http.port": int(8080, "Port.") });
 * const cfg = loadConfigWith(schema, { env: {}, args: ["--set", "http.port=9090"] });
 * cfg.http.port; // 9090
 * ```
 */
export function loadConfigWith<S extends Schema>(
  schema: S,
  options: LoadConfigOptions = {},
): ConfigOf<S> {
  const r = resolve(schema, options);
  const warn = options.onWarning ?? defaultWarn;
  r.warnings.forEach((w) => warn(w));
  if (r.issues.length) throw new ConfigError(r.issues);
  return buildTree(r.values) as ConfigOf<S>;
}

/**
 * Loads the server configuration: defaults ← TOML file ← `GOIM_*`
 * environment ← `--set` flags, then cross-key rules. Derives `node.id` from
 * the host name when empty. Throws {@linkcode ConfigError} on any invalid input.
 *
 * @example
 * ```ts
 * const cfg = loadConfig({ env: {}, args: ["--set", "comet.bucket.count=64"] });
 * cfg.comet.bucket.count; // 64
 * ```
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const r = resolve(CONFIG_SCHEMA, options);
  const warn = options.onWarning ?? defaultWarn;
  r.warnings.forEach((w) => warn(w));
  if (r.issues.length) throw new ConfigError(r.issues);
  if (r.values.get("node.id") === "") {
    let host = "";
    try {
      host = (options.hostname ?? Deno.hostname)();
    } catch {
      // No --allow-sys: fall through to a fixed name; node.id can always be set explicitly.
    }
    r.values.set("node.id", host || "goim");
  }
  const cfg = buildTree(r.values) as Config;
  const issues: ConfigIssue[] = [];
  for (const check of CROSS_CHECKS) {
    const msg = check.test(cfg);
    if (msg === undefined) continue;
    const source = r.sources.get(check.key)!;
    const message = `${formatSource(source)}: ${check.key}: ${msg}`;
    if (check.warning) warn(message);
    else issues.push({ key: check.key, source, message });
  }
  if (issues.length) throw new ConfigError(issues);
  return cfg;
}

/**
 * {@linkcode loadConfig} for entry points: on a {@linkcode ConfigError} it
 * prints the message to stderr and exits with code 2 (usage error).
 */
export function loadConfigOrExit(options: LoadConfigOptions = {}): Config {
  try {
    return loadConfig(options);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    Deno.stderr.writeSync(new TextEncoder().encode(`goim: ${e.message}\n`));
    Deno.exit(2);
  }
}

// ---------------------------------------------------------------------------
// Reference docs

function cell(s: string): string {
  return s.replaceAll("|", "\\|");
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(3, ...rows.map((r) => r[c].length)));
  const line = (r: string[]) => "| " + r.map((x, c) => x.padEnd(widths[c])).join(" | ") + " |";
  return [line(rows[0]), line(widths.map((w) => "-".repeat(w))), ...rows.slice(1).map(line)];
}

/**
 * Renders docs/CONFIG.md from {@linkcode CONFIG_SCHEMA}: sources and
 * precedence, value syntax, cross-key rules, and one table per section.
 * The committed file is this text after `deno fmt` (see
 * {@linkcode formattedConfigReference}).
 */
export function renderConfigReference(): string {
  const out: string[] = [
    "# Configuration reference",
    "",
    "<!-- Generated by renderConfigReference() in infra/config.ts. Do not edit by hand;",
    "regenerate with: ./scripts/deno run -A infra/config.ts --write-docs -->",
    "",
    "Every role (comet, logic, job, or all three in one process) reads the same configuration.",
    "Every key has a default, so no configuration at all runs embedded mode. Examples:",
    "`config/embedded.toml`, `config/distributed.toml`.",
    "",
    "## Sources and precedence",
    "",
    "Later sources override earlier ones, key by key:",
    "",
    "1. The defaults below.",
    "2. A TOML file, named by `--config PATH`, else by the `GOIM_CONFIG` environment variable.",
    "   Keys nest as tables (`[comet.tcp]` then `bind = [...]`) or dotted keys",
    "   (`comet.tcp.bind = [...]`).",
    "3. Environment variables: `GOIM_` + the key upper-cased, with each `.` written as `__`",
    "   (single `_` stays part of a name): `comet.tcp.bind` → `GOIM_COMET__TCP__BIND`,",
    "   `comet.handshake_timeout` → `GOIM_COMET__HANDSHAKE_TIMEOUT`. Other `GOIM_*`",
    "   variables are ignored with a warning.",
    "4. Flags: `--set KEY=VALUE`, repeatable, e.g. `--set comet.tcp.bind=0.0.0.0:4101`.",
    "",
    "Environment and flag values are plain text: `true`/`false` (or `1`/`0`), numbers, durations",
    "and sizes as below, and lists either comma-separated (`0.0.0.0:3101,0.0.0.0:3201`) or as a",
    'JSON array (`["a","b"]`).',
    "",
    "## Value types",
    "",
    '- **duration**: a number with a unit `ms`, `s`, `m` or `h`, combinable: `"500ms"`, `"8s"`,',
    '  `"4m"`, `"1m30s"`, or `"0"`. Code sees milliseconds. A bare number is refused: its unit',
    "  would be a guess.",
    '- **bytes**: an integer number of bytes (`4096` or `"4096"`) or a number with a unit: `"64KiB"`,',
    '  `"1MiB"` (KiB, MiB, GiB = 1024-based; KB, MB, GB = 1000-based; B). Code sees bytes.',
    "- **host:port**: `0.0.0.0:3101`, `[::]:3101`, `redis.local:6379`. Port 0 picks a free port.",
    "  In listen addresses an empty host (goim's `:3101`) means `0.0.0.0`.",
    "- **enum**: exactly one of the listed strings.",
    "",
    "## Validation",
    "",
    "An unknown key (with a suggestion when one is close), a value of the wrong type, out of",
    "range, a bad duration or size, a TOML syntax error, or an unknown flag stops the program",
    "with exit code 2 and a message naming the source (`file:line`, `env NAME` or `flag ...`),",
    "the key and what was expected. Rules across keys:",
    "",
    ...CROSS_CHECKS.map((c) => `- ${c.doc}`),
  ];
  const groups = new Map<string, string[]>();
  for (const path of Object.keys(CONFIG_SCHEMA)) {
    const top = path.split(".")[0];
    groups.set(top, [...(groups.get(top) ?? []), path]);
  }
  for (const [top, paths] of groups) {
    out.push("", `## ${top}`, "");
    if (SECTION_DOCS[top]) out.push(SECTION_DOCS[top], "");
    const rows = [["Key", "Type", "Default", "Description"]];
    for (const p of paths) {
      const s = (CONFIG_SCHEMA as Schema)[p];
      rows.push([`\`${p}\``, cell(s.type), `\`${cell(s.defaultToml)}\``, cell(s.doc)]);
    }
    out.push(...table(rows));
  }
  return out.join("\n") + "\n";
}

/**
 * {@linkcode renderConfigReference} passed through `deno fmt`, i.e. exactly
 * what docs/CONFIG.md must contain. Runs the current Deno executable.
 */
export async function formattedConfigReference(): Promise<string> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext=md", "-"],
    cwd: new URL("..", import.meta.url),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  });
  const child = cmd.spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(renderConfigReference()));
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(`deno fmt failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

/** Path of the generated reference, relative to this file. */
export const CONFIG_DOCS_URL: URL = new URL("../docs/CONFIG.md", import.meta.url);

if (import.meta.main) {
  const args = [...Deno.args];
  if (args.includes("--write-docs")) {
    Deno.mkdirSync(new URL(".", CONFIG_DOCS_URL), { recursive: true });
    Deno.writeTextFileSync(CONFIG_DOCS_URL, await formattedConfigReference());
    console.log(`wrote ${CONFIG_DOCS_URL.pathname}`);
  } else if (args.includes("--print")) {
    const cfg = loadConfigOrExit({ args: args.filter((a) => a !== "--print") });
    console.log(JSON.stringify(cfg, null, 2));
  } else {
    console.error(
      "usage: infra/config.ts --write-docs | --print [--config FILE] [--set KEY=VALUE ...]",
    );
    Deno.exit(2);
  }
}

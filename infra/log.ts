/**
 * Structured, levelled logging: JSON lines for collectors or text for humans.
 *
 * Every line goes to stderr, whatever its level, so that stdout stays clean
 * for tools (`infra/config.ts --print`, benchmarks printing results) and
 * ordering between levels is preserved. Writes are synchronous: a line is
 * never lost when the process exits or crashes right after logging.
 *
 * A disabled level is a shared no-op function, so `log.debug("x", {...})`
 * costs one call plus whatever the caller builds for its arguments; guard
 * expensive fields with {@linkcode Logger.enabled}.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const log = createLogger({ level: "info", format: "json", fields: { role: "comet" } });
 * log.info("listening", { addr: "0.0.0.0:3101" });
 * // {"ts":"2025-01-01T00:00:00.000Z","level":"info","msg":"listening","role":"comet","addr":"0.0.0.0:3101"}
 * const conn = log.child({ key: "k1" });
 * conn.warn("slow client", { queued: 1048576 });
 * ```
 *
 * @module
 */

/** Log levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];
/** Output format: one JSON object per line, or human-readable text. */
export type LogFormat = "json" | "text";
/** Structured fields attached to a line. */
export type LogFields = Readonly<Record<string, unknown>>;

/** A levelled logger. Methods are safe to pass around unbound. */
export interface Logger {
  /** The lowest level this logger writes. */
  readonly level: LogLevel;
  /** Detailed tracing, off in production. */
  debug(msg: string, fields?: LogFields): void;
  /** Normal operation worth recording. */
  info(msg: string, fields?: LogFields): void;
  /** Something unusual that the process handled. */
  warn(msg: string, fields?: LogFields): void;
  /** A failure that needs attention. */
  error(msg: string, fields?: LogFields): void;
  /** Whether `level` would be written: guards costly field building. */
  enabled(level: LogLevel): boolean;
  /** A logger adding `fields` to every line (same level, format and writer). */
  child(fields: LogFields): Logger;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lowest level written (default `"info"`). */
  readonly level?: LogLevel;
  /** Output format (default `"json"`). */
  readonly format?: LogFormat;
  /** Fields on every line, e.g. `{ role: "comet", node: "c1" }`. */
  readonly fields?: LogFields;
  /** Receives each complete line, newline included; defaults to a synchronous stderr write. */
  readonly writer?: (line: string) => void;
  /** Clock in epoch milliseconds (default `Date.now`); injectable for tests. */
  readonly now?: () => number;
}

const RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };
// The line's own keys win; a field with one of these names is written as `_name`.
const RESERVED = new Set(["ts", "level", "msg"]);
const noop = (): void => {};

const encoder = new TextEncoder();

/** Writes all of `line` to stderr, looping because writeSync may write part of it. */
function stderrWriter(line: string): void {
  let buf = encoder.encode(line);
  while (buf.length > 0) buf = buf.subarray(Deno.stderr.writeSync(buf));
}

/** Plain-object form of an error, cause included, for JSON output. */
export function serializeError(err: Error, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = { name: err.name, message: err.message };
  if (err.stack) out.stack = err.stack;
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (err.cause !== undefined) {
    out.cause = err.cause instanceof Error && depth < 4
      ? serializeError(err.cause, depth + 1)
      : String(err.cause);
  }
  return out;
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return serializeError(value);
  if (typeof value === "bigint") return value.toString();
  // Byte buffers would otherwise become {"0":..,"1":..} objects of unbounded size.
  if (value instanceof Uint8Array) return `Uint8Array(${value.length})`;
  return value;
}

function jsonLine(ts: number, level: LogLevel, msg: string, fields: LogFields): string {
  const obj: Record<string, unknown> = { ts: new Date(ts).toISOString(), level, msg };
  for (const k in fields) obj[RESERVED.has(k) ? `_${k}` : k] = fields[k];
  try {
    return JSON.stringify(obj, replacer) + "\n";
  } catch (e) {
    // A cyclic field must not take the process down or lose the message.
    return JSON.stringify({
      ts: obj.ts,
      level,
      msg,
      log_error: `unserializable fields: ${(e as Error).message}`,
    }) + "\n";
  }
}

const BARE_RE = /^[^\s"=\\]+$/;

function textValue(v: unknown): string {
  if (typeof v === "string") return BARE_RE.test(v) ? v : JSON.stringify(v);
  if (v instanceof Error) return JSON.stringify(`${v.name}: ${v.message}`);
  if (v === null || typeof v !== "object") return String(v);
  try {
    return JSON.stringify(v, replacer);
  } catch {
    return "[unserializable]";
  }
}

function textLine(ts: number, level: LogLevel, msg: string, fields: LogFields): string {
  let line = `${new Date(ts).toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}`;
  const stacks: string[] = [];
  for (const k in fields) {
    const v = fields[k];
    line += ` ${k}=${textValue(v)}`;
    if (v instanceof Error && v.stack) stacks.push(v.stack);
  }
  // Stacks on their own indented lines: unparseable as logfmt, but this format is for people.
  for (const s of stacks) line += "\n    " + s.replaceAll("\n", "\n    ");
  return line + "\n";
}

/**
 * Creates a logger. Invalid options throw a `TypeError`.
 *
 * @example Capture lines in a test
 * ```ts
 * const lines: string[] = [];
 * const log = createLogger({ level: "debug", writer: (l) => lines.push(l) });
 * log.debug("hello", { n: 1 });
 * JSON.parse(lines[0]).n; // 1
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const format = options.format ?? "json";
  if (!(level in RANK)) throw new TypeError(`unknown log level "${level}"`);
  if (format !== "json" && format !== "text") throw new TypeError(`unknown log format "${format}"`);
  const writer = options.writer ?? stderrWriter;
  const now = options.now ?? Date.now;
  const render = format === "json" ? jsonLine : textLine;
  return build(level, render, writer, now, { ...options.fields });
}

function build(
  level: LogLevel,
  render: typeof jsonLine,
  writer: (line: string) => void,
  now: () => number,
  bound: LogFields,
): Logger {
  const min = RANK[level];
  const method = (l: LogLevel) =>
    RANK[l] < min ? noop : (msg: string, fields?: LogFields) => {
      // Call fields override bound ones of the same name.
      writer(render(now(), l, msg, fields ? { ...bound, ...fields } : bound));
    };
  return Object.freeze({
    level,
    debug: method("debug"),
    info: method("info"),
    warn: method("warn"),
    error: method("error"),
    enabled: (l: LogLevel) => RANK[l] >= min,
    child: (fields: LogFields) => build(level, render, writer, now, { ...bound, ...fields }),
  });
}

/**
 * Lets a repeated event (a refused connection, a failed accept) be logged
 * at most once per `intervalMs`, with the number of events since the last
 * line, so a flood counts instead of flooding the log.
 *
 * @example
 * ```ts
 * import { createLogger, LogThrottle } from "./log.ts";
 * const log = createLogger();
 * const throttle = new LogThrottle(10_000);
 * const events = throttle.take(); // null while within the interval
 * if (events !== null) log.warn("connection refused", { refused: events });
 * ```
 */
export class LogThrottle {
  #loggedAt = -Infinity;
  #events = 0;

  /** Creates a throttle that opens once per `intervalMs`. */
  constructor(readonly intervalMs: number) {}

  /**
   * Counts one event. Returns the events since the last logged one, this
   * one included, when a line is due now; null (still counting) otherwise.
   */
  take(now: number = performance.now()): number | null {
    this.#events++;
    if (now - this.#loggedAt < this.intervalMs) return null;
    const n = this.#events;
    this.#events = 0;
    this.#loggedAt = now;
    return n;
  }
}

/**
 * The message of a thrown value, for a log field or an error text: an
 * Error's `message`, anything else as a string.
 *
 * @example
 * ```ts
 * import { errorMessage } from "./log.ts";
 * errorMessage(new Error("boom")); // "boom"
 * errorMessage("plain"); // "plain"
 * ```
 */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

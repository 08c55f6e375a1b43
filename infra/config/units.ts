/**
 * Value units of the configuration: durations (`"1m30s"` → milliseconds) and
 * sizes (`"64KiB"` → bytes), as written in TOML, environment and flags.
 *
 * @module
 */

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

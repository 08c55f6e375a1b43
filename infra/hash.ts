/**
 * FNV-1a, 32 bits: the one string hash of the project, in its two flavours.
 *
 * @module
 */

const OFFSET_BASIS = 0x811c9dc5;
const PRIME = 0x01000193;

/**
 * FNV-1a over the UTF-16 code units of `s`, as an unsigned integer: no
 * encoding step, for in-process sharding (job lanes, comet buckets) that
 * only needs a stable, well-spread number, not wire compatibility. Equals
 * {@linkcode fnv1a32Utf8} for ASCII strings only.
 *
 * @example
 * ```ts
 * fnv1a32Utf16("") === 0x811c9dc5; // true: the offset basis
 * ```
 */
export function fnv1a32Utf16(s: string): number {
  let h = OFFSET_BASIS;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, PRIME);
  }
  return h >>> 0;
}

const encoder = new TextEncoder();

/**
 * FNV-1a over the UTF-8 bytes of `key`, as an unsigned integer (Go's
 * `hash/fnv` New32a): for anything that must agree with Go, such as
 * sarama's partitioner.
 *
 * @example
 * ```ts
 * fnv1a32Utf8(""); // 2166136261 (0x811c9dc5)
 * ```
 */
export function fnv1a32Utf8(key: string): number {
  let h = OFFSET_BASIS;
  for (const b of encoder.encode(key)) {
    h ^= b;
    h = Math.imul(h, PRIME);
  }
  return h >>> 0;
}

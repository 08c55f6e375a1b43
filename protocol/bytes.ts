/**
 * The few byte helpers the project needs (jsr:@std/bytes is unreachable here).
 *
 * @module
 */

/**
 * Concatenates byte arrays into one new array.
 *
 * @example
 * ```ts
 * concat([new Uint8Array([1]), new Uint8Array([2, 3])]); // [1, 2, 3]
 * ```
 */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Whether two byte arrays hold the same bytes. */
export function equals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** UTF-8 encodes a string. */
export function utf8(s: string): Uint8Array {
  return enc.encode(s);
}

/** UTF-8 decodes bytes (invalid sequences become U+FFFD). */
export function text(b: Uint8Array): string {
  return dec.decode(b);
}

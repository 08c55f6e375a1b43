/**
 * The few byte helpers the project needs (jsr:@std/bytes is unreachable here),
 * Web APIs only (browser-safe).
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

/**
 * Reads a response body as UTF-8 text, refusing more than `max` bytes: a
 * declared Content-Length over `max` before any byte is read, else once the
 * bytes read pass `max` (the stream is cancelled). Rejects with an `Error`
 * saying `over the <max>-byte limit`.
 *
 * @example
 * ```ts
 * const body = await readCapped(new Response("hello"), 64 * 1024); // "hello"
 * ```
 */
export async function readCapped(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > max) {
    await res.body?.cancel().catch(() => {});
    throw new Error(`answer of ${declared} bytes is over the ${max}-byte limit`);
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > max) {
      await reader.cancel().catch(() => {});
      throw new Error(`answer is over the ${max}-byte limit`);
    }
    chunks.push(value);
  }
  return text(concat(chunks));
}

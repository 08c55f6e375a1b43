/**
 * Reading a push body under `logic.http.max_body`, without ever holding
 * more than the limit.
 *
 * A declared `Content-Length` over the limit is refused before a byte is
 * read. A body without one (chunked) or lying about it is read chunk by
 * chunk and refused as soon as the total passes the limit; the stream is
 * then cancelled, so the rest is never buffered.
 *
 * @module
 */

import { ApiError, ResultCode } from "./result.ts";

const EMPTY = new Uint8Array(0);

function tooLarge(max: number): ApiError {
  return new ApiError(
    ResultCode.PayloadTooLarge,
    `body: larger than logic.http.max_body (${max} bytes)`,
  );
}

/**
 * Reads `req`'s body, at most `max` bytes. Throws an {@linkcode ApiError}
 * -413 when it is larger, -400 when `Content-Length` is malformed or the
 * body stream fails.
 *
 * @example
 * ```ts
 * import { readBody } from "./body.ts";
 * const msg = await readBody(new Request("http://x/", { method: "POST", body: "hi" }), 65536);
 * ```
 */
export async function readBody(req: Request, max: number): Promise<Uint8Array> {
  const header = req.headers.get("content-length");
  let declared: number | undefined;
  if (header !== null) {
    declared = /^\d+$/.test(header.trim()) ? Number(header) : NaN;
    if (!Number.isSafeInteger(declared)) {
      await req.body?.cancel().catch(() => {});
      throw new ApiError(ResultCode.BadRequest, `content-length: not a byte count: ${header}`);
    }
    if (declared > max) {
      await req.body?.cancel().catch(() => {});
      throw tooLarge(max);
    }
  }
  if (req.body === null) return EMPTY;
  const reader = req.body.getReader();
  // With a trustworthy length one exact allocation suffices; otherwise grow by doubling up to max.
  let buf = new Uint8Array(declared ?? Math.min(max, 16 * 1024));
  let len = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (len + value.length > max) {
        await reader.cancel().catch(() => {});
        throw tooLarge(max);
      }
      if (len + value.length > buf.length) {
        const next = new Uint8Array(Math.min(max, Math.max(buf.length * 2, len + value.length)));
        next.set(buf.subarray(0, len));
        buf = next;
      }
      buf.set(value, len);
      len += value.length;
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(ResultCode.BadRequest, `body: could not be read: ${(e as Error).message}`);
  } finally {
    reader.releaseLock();
  }
  return len === buf.length ? buf : buf.subarray(0, len);
}

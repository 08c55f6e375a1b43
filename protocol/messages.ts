/**
 * Bodies of the protocol's own operations: heartbeat counts and op lists.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { HEADER_LEN, readI32, writeHeader, writeU32 } from "./frame.ts";
import { Op } from "./ops.ts";

/**
 * Encodes a whole op 3 frame: body is the room's online count as int32 BE.
 * `ver` and `seq` echo the client's heartbeat.
 *
 * @example
 * ```ts
 * import type { Frame } from "./frame.ts";
 * declare const conn: Deno.Conn, f: Frame, roomOnline: number;
 * conn.write(encodeHeartbeatReply(f.ver, f.seq, roomOnline));
 * ```
 */
export function encodeHeartbeatReply(ver: number, seq: number, online: number): Uint8Array {
  const out = new Uint8Array(HEADER_LEN + 4);
  writeHeader(out, 0, 4, ver, Op.HeartbeatReply, seq);
  writeU32(out, HEADER_LEN, Math.max(0, Math.min(0x7fffffff, Math.trunc(online))));
  return out;
}

/** Reads the online count of an op 3 body (0 when the body is short). */
export function decodeHeartbeatReply(body: Uint8Array): number {
  return body.length >= 4 ? readI32(body, 0) : 0;
}

const utf8 = new TextEncoder();

/**
 * Formats ops for a Sub/Unsub body: ASCII decimal joined by commas.
 *
 * @example
 * ```ts
 * formatOps([1000, 1001]); // Uint8Array of "1000,1001"
 * ```
 */
export function formatOps(ops: readonly number[]): Uint8Array {
  return utf8.encode(ops.join(","));
}

/**
 * Parses a Sub/Unsub body. Empty items are skipped (goim tolerates
 * `1000,`); anything that is not an int32 decimal is a `bad_ops` error.
 */
export function parseOps(body: Uint8Array): number[] {
  const out: number[] = [];
  let cur = 0;
  let digits = 0;
  let neg = false;
  for (let i = 0; i <= body.length; i++) {
    const ch = i < body.length ? body[i] : 44;
    if (ch === 44) {
      // `| 0` folds "-0" to 0 (fits: cur ≤ 2^31 when negative).
      if (digits > 0) out.push(neg ? -cur | 0 : cur);
      else if (neg) throw new ProtocolError("bad_ops", "a lone '-' is not an operation");
      cur = 0;
      digits = 0;
      neg = false;
    } else if (ch >= 48 && ch <= 57) {
      cur = cur * 10 + (ch - 48);
      if (++digits > 10 || cur > 0x7fffffff + (neg ? 1 : 0)) {
        throw new ProtocolError("bad_ops", "operation does not fit in int32");
      }
    } else if (ch === 45 && digits === 0 && !neg) {
      neg = true;
    } else if (ch === 32 && digits === 0 && !neg) {
      // leading spaces are tolerated
    } else {
      throw new ProtocolError("bad_ops", `unexpected byte 0x${ch.toString(16)} in op list`);
    }
  }
  return out;
}

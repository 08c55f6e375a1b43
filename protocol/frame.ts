/**
 * goim v2 frame header encode/decode over `Uint8Array`, zero-copy.
 *
 * Layout (big-endian): packLen u32 | headerLen u16 | ver u16 | op u32 | seq u32 | body.
 * Runs in Deno and browsers (no I/O, Web types only).
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";

/** Size of every goim v2 header; the only headerLen this server accepts. */
export const HEADER_LEN = 16;
/** Default cap on a client→server body (docs/PROTOCOL.md, "Frames"). */
export const DEFAULT_MAX_BODY = 4096;
/** Version the server writes into pushed inner frames and envelopes. */
export const PUSH_VER = 1;

/** A decoded frame; `body` is a view into the decoded input, never a copy. */
export interface Frame {
  /** Protocol version; echoed in replies. */
  ver: number;
  /** Operation code (see `Op`). */
  op: number;
  /** Sequence number; echoed in replies to the client's own requests. */
  seq: number;
  /** Body bytes: a subarray of the input. */
  body: Uint8Array;
}

/** The fields of a frame header as they appear on the wire. */
export interface FrameHeader {
  /** 16 + body length. */
  packLen: number;
  /** Always 16 for a valid frame. */
  headerLen: number;
  /** Protocol version. */
  ver: number;
  /** Operation code. */
  op: number;
  /** Sequence number. */
  seq: number;
}

/** Reads an unsigned 32-bit big-endian integer. */
export function readU32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/** Reads a signed 32-bit big-endian integer. */
export function readI32(b: Uint8Array, o: number): number {
  return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
}

/** Reads an unsigned 16-bit big-endian integer. */
export function readU16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

/** Writes a 32-bit big-endian integer (signed or unsigned input). */
export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** Writes a 16-bit big-endian integer. */
export function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

/**
 * Writes a 16-byte header at `offset` for a body of `bodyLen` bytes.
 *
 * @example
 * ```ts
 * import { Op } from "./ops.ts";
 * declare const body: Uint8Array, seq: number;
 * const out = new Uint8Array(16 + body.length);
 * writeHeader(out, 0, body.length, 1, Op.AuthReply, seq);
 * out.set(body, 16);
 * ```
 */
export function writeHeader(
  out: Uint8Array,
  offset: number,
  bodyLen: number,
  ver: number,
  op: number,
  seq: number,
): void {
  writeU32(out, offset, HEADER_LEN + bodyLen);
  writeU16(out, offset + 4, HEADER_LEN);
  writeU16(out, offset + 6, ver);
  writeU32(out, offset + 8, op);
  writeU32(out, offset + 12, seq);
}

const EMPTY = new Uint8Array(0);

/**
 * Encodes one frame into a new buffer (the body is copied once).
 *
 * @example
 * ```ts
 * import { Op } from "./ops.ts";
 * const bytes = encodeFrame({ ver: 1, op: Op.Heartbeat, seq: 2, body: new Uint8Array() });
 * bytes.length; // 16
 * ```
 */
export function encodeFrame(
  frame: { ver: number; op: number; seq: number; body?: Uint8Array },
): Uint8Array {
  const body = frame.body ?? EMPTY;
  const out = new Uint8Array(HEADER_LEN + body.length);
  writeHeader(out, 0, body.length, frame.ver, frame.op, frame.seq);
  out.set(body, HEADER_LEN);
  return out;
}

/**
 * Decodes the 16-byte header at `offset` without validating it.
 * `ver` is unsigned 16-bit, `op` and `seq` are signed 32-bit, as goim's Go
 * types (int16 ver is always small in practice; int32 op/seq).
 */
export function decodeHeader(b: Uint8Array, offset = 0): FrameHeader {
  if (b.length - offset < HEADER_LEN) {
    throw new ProtocolError(
      "truncated",
      `need ${HEADER_LEN} header bytes, have ${Math.max(0, b.length - offset)}`,
    );
  }
  return {
    packLen: readU32(b, offset),
    headerLen: readU16(b, offset + 4),
    ver: readU16(b, offset + 6),
    op: readI32(b, offset + 8),
    seq: readI32(b, offset + 12),
  };
}

/**
 * Validates a header's packLen and headerLen against the body limit, in
 * that order (packLen too small, packLen too large, headerLen). Throws a
 * {@linkcode ProtocolError} with a clear message when they break the
 * contract.
 */
export function checkHeader(packLen: number, headerLen: number, maxBody: number): void {
  if (packLen < HEADER_LEN) {
    throw new ProtocolError(
      "packlen_too_small",
      `packLen ${packLen} is below the ${HEADER_LEN}-byte header`,
    );
  }
  // packLen is judged before headerLen: a streaming reader sees packLen
  // first, so the error code must not depend on where a read was split.
  if (packLen - HEADER_LEN > maxBody) {
    throw new ProtocolError(
      "packlen_too_large",
      `body of ${packLen - HEADER_LEN} bytes exceeds the ${maxBody}-byte limit`,
    );
  }
  if (headerLen !== HEADER_LEN) {
    throw new ProtocolError("bad_header_len", `headerLen ${headerLen} is not ${HEADER_LEN}`);
  }
}

/** Options for decoding client→server frames. */
export interface DecodeOptions {
  /** Largest accepted body in bytes (default {@linkcode DEFAULT_MAX_BODY}). */
  maxBody?: number;
}

/**
 * Decodes exactly one frame that fills `message` (a WebSocket message).
 * A packLen that disagrees with the message length is a protocol error.
 * The returned body is a subarray of `message`.
 *
 * @example
 * ```ts
 * import { Op } from "./ops.ts";
 * declare const ev: MessageEvent<ArrayBuffer>;
 * declare function auth(body: Uint8Array): void;
 * const f = decodeFrame(new Uint8Array(ev.data));
 * if (f.op === Op.Auth) auth(f.body);
 * ```
 */
export function decodeFrame(message: Uint8Array, opts: DecodeOptions = {}): Frame {
  const maxBody = opts.maxBody ?? DEFAULT_MAX_BODY;
  if (message.length < HEADER_LEN) {
    throw new ProtocolError(
      "truncated",
      `frame of ${message.length} bytes is shorter than the ${HEADER_LEN}-byte header`,
    );
  }
  const packLen = readU32(message, 0);
  checkHeader(packLen, readU16(message, 4), maxBody);
  if (packLen !== message.length) {
    throw new ProtocolError(
      "packlen_mismatch",
      `packLen ${packLen} disagrees with message length ${message.length}`,
    );
  }
  return {
    ver: readU16(message, 6),
    op: readI32(message, 8),
    seq: readI32(message, 12),
    body: message.subarray(HEADER_LEN, packLen),
  };
}

/**
 * Decodes every frame in `bytes`, which must hold whole frames back to back
 * (a TCP push batch, an op 9 envelope's payload). Bodies are subarrays.
 * `maxBody` defaults to unlimited: server→client frames have no cap of their own.
 */
export function decodeFrames(bytes: Uint8Array, opts: DecodeOptions = {}): Frame[] {
  const maxBody = opts.maxBody ?? Number.MAX_SAFE_INTEGER;
  const out: Frame[] = [];
  let o = 0;
  while (o < bytes.length) {
    if (bytes.length - o < HEADER_LEN) {
      throw new ProtocolError(
        "truncated",
        `${bytes.length - o} trailing bytes do not hold a header`,
      );
    }
    const packLen = readU32(bytes, o);
    checkHeader(packLen, readU16(bytes, o + 4), maxBody);
    if (o + packLen > bytes.length) {
      throw new ProtocolError(
        "truncated",
        `frame of ${packLen} bytes overruns the buffer by ${o + packLen - bytes.length}`,
      );
    }
    out.push({
      ver: readU16(bytes, o + 6),
      op: readI32(bytes, o + 8),
      seq: readI32(bytes, o + 12),
      body: bytes.subarray(o + HEADER_LEN, o + packLen),
    });
    o += packLen;
  }
  return out;
}

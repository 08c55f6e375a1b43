/**
 * Streaming frame reader for TCP byte streams.
 *
 * A read may hold half a frame or many frames. Whole frames inside a chunk
 * are handed out as views of that chunk (zero-copy); only a frame split
 * across chunks is copied, into a buffer of exactly that frame's size, so
 * the reader never holds more than one maximum frame.
 *
 * @module
 */

// Imported for the {@linkcode ProtocolError} doc links only.
// deno-lint-ignore no-unused-vars
import type { ProtocolError } from "./errors.ts";
import {
  checkHeader,
  DEFAULT_MAX_BODY,
  type Frame,
  HEADER_LEN,
  readI32,
  readU16,
  readU32,
} from "./frame.ts";

/**
 * A frame as the reader hands it to its callback. The object is reused for
 * every frame of the reader (no allocation per frame), and its bytes may be
 * overwritten by the next read: copy what you keep beyond the callback.
 */
export class FrameCursor implements Frame {
  /** Protocol version. */
  ver = 0;
  /** Operation code. */
  op = 0;
  /** Sequence number. */
  seq = 0;
  /** Buffer holding the frame (the pushed chunk or the reader's own). */
  buf: Uint8Array = new Uint8Array(0);
  /** Offset of the body in {@linkcode FrameCursor.buf}. */
  bodyStart = 0;
  /** End (exclusive) of the body in {@linkcode FrameCursor.buf}. */
  bodyEnd = 0;

  /** Body length in bytes, without creating a view. */
  get bodyLength(): number {
    return this.bodyEnd - this.bodyStart;
  }

  /** The body as a view (created on demand; valid during the callback). */
  get body(): Uint8Array {
    return this.buf.subarray(this.bodyStart, this.bodyEnd);
  }

  /** A detached copy of this frame that stays valid after the callback. */
  toFrame(): Frame {
    return {
      ver: this.ver,
      op: this.op,
      seq: this.seq,
      body: this.buf.slice(this.bodyStart, this.bodyEnd),
    };
  }
}

/** Options for {@linkcode FrameReader}. */
export interface FrameReaderOptions {
  /** Largest accepted body in bytes (default 4096, docs/PROTOCOL.md, "Frames"). */
  maxBody?: number;
}

/**
 * Incremental decoder: push chunks in, get whole frames out.
 *
 * After a {@linkcode ProtocolError} the reader stays failed and rethrows it
 * on every push: the stream is out of sync and the connection must close.
 * The same holds when `onFrame` throws: the rest of that chunk was not
 * read, so later bytes cannot be framed safely (a body could be taken for a
 * header), and the reader rethrows the callback's error on every push.
 *
 * @example
 * ```ts
 * declare const conn: Deno.Conn;
 * declare function handle(op: number, seq: number, body: Uint8Array): void;
 * const reader = new FrameReader({ maxBody: 4096 });
 * for await (const chunk of conn.readable) {
 *   reader.push(chunk, (f) => handle(f.op, f.seq, f.body));
 * }
 * ```
 */
export class FrameReader {
  /** Largest accepted body in bytes. */
  readonly maxBody: number;
  #cursor = new FrameCursor();
  // Header bytes of a frame split before its 16th byte.
  #head: Uint8Array | null = null;
  // The frame being assembled across chunks: exactly packLen bytes.
  #part: Uint8Array | null = null;
  #have = 0;
  #failed = false;
  #error: unknown = null;

  constructor(opts: FrameReaderOptions = {}) {
    const maxBody = opts.maxBody ?? DEFAULT_MAX_BODY;
    if (!Number.isInteger(maxBody) || maxBody < 0 || maxBody > 0x7fffffef) {
      throw new RangeError(`maxBody must be an integer in [0, 2147483631], got ${maxBody}`);
    }
    this.maxBody = maxBody;
  }

  /** Bytes held for a frame split across chunks (never above one max frame). */
  get buffered(): number {
    return this.#have;
  }

  /** Whether a partial frame is held. */
  get partial(): boolean {
    return this.#have > 0;
  }

  /**
   * Feeds one chunk; calls `onFrame` once per whole frame, in order.
   * Throws {@linkcode ProtocolError} on a bad header (frames before it were
   * already delivered), or whatever `onFrame` threw; either way the reader
   * stays failed and rethrows that error on every later push.
   */
  push(chunk: Uint8Array, onFrame: (frame: FrameCursor) => void): void {
    if (this.#failed) throw this.#error;
    try {
      this.#push(chunk, onFrame);
    } catch (e) {
      // A throw from onFrame leaves the unread tail of the chunk unstashed:
      // carrying on would resume mid-frame. Fail for good either way.
      this.#failed = true;
      this.#error = e;
      this.#head = null;
      this.#part = null;
      this.#have = 0;
      throw e;
    }
  }

  /**
   * Collects the frames of `chunk` as detached {@linkcode Frame}s. Convenient
   * outside hot paths; copies each body.
   */
  pushCollect(chunk: Uint8Array): Frame[] {
    const out: Frame[] = [];
    this.push(chunk, (f) => out.push(f.toFrame()));
    return out;
  }

  #push(chunk: Uint8Array, onFrame: (frame: FrameCursor) => void): void {
    const n = chunk.length;
    let o = 0;
    if (this.#have > 0) {
      o = this.#resume(chunk, onFrame);
      if (o < 0) return;
    }
    const c = this.#cursor;
    const maxBody = this.maxBody;
    while (n - o >= HEADER_LEN) {
      const packLen = readU32(chunk, o);
      const headerLen = readU16(chunk, o + 4);
      if (packLen < HEADER_LEN || headerLen !== HEADER_LEN || packLen - HEADER_LEN > maxBody) {
        checkHeader(packLen, headerLen, maxBody);
      }
      if (n - o < packLen) break;
      c.ver = readU16(chunk, o + 6);
      c.op = readI32(chunk, o + 8);
      c.seq = readI32(chunk, o + 12);
      c.buf = chunk;
      c.bodyStart = o + HEADER_LEN;
      c.bodyEnd = o + packLen;
      o += packLen;
      onFrame(c);
    }
    if (o < n) this.#stash(chunk, o);
  }

  // Keeps the tail of a chunk; its header, when whole, was validated above.
  #stash(chunk: Uint8Array, o: number): void {
    const rest = chunk.length - o;
    if (rest >= HEADER_LEN) {
      const part = new Uint8Array(readU32(chunk, o));
      part.set(chunk.subarray(o));
      this.#part = part;
    } else {
      const head = this.#head ??= new Uint8Array(HEADER_LEN);
      head.set(chunk.subarray(o));
      this.#earlyCheck(head, rest);
    }
    this.#have = rest;
  }

  // Fails fast on a bad packLen/headerLen before the whole header arrived.
  #earlyCheck(head: Uint8Array, have: number): void {
    if (have >= 4) {
      const packLen = readU32(head, 0);
      if (packLen < HEADER_LEN || packLen - HEADER_LEN > this.maxBody) {
        checkHeader(packLen, HEADER_LEN, this.maxBody);
      }
      if (have >= 6) checkHeader(packLen, readU16(head, 4), this.maxBody);
    }
  }

  // Completes a split frame; returns the offset after it, or -1 if the chunk ran out.
  #resume(chunk: Uint8Array, onFrame: (frame: FrameCursor) => void): number {
    let o = 0;
    const n = chunk.length;
    if (this.#part === null) {
      const head = this.#head!;
      const take = Math.min(HEADER_LEN - this.#have, n);
      head.set(chunk.subarray(0, take), this.#have);
      this.#have += take;
      o = take;
      if (this.#have < HEADER_LEN) {
        this.#earlyCheck(head, this.#have);
        return -1;
      }
      const packLen = readU32(head, 0);
      checkHeader(packLen, readU16(head, 4), this.maxBody);
      const part = new Uint8Array(packLen);
      part.set(head);
      this.#part = part;
    }
    const part = this.#part!;
    const take = Math.min(part.length - this.#have, n - o);
    part.set(chunk.subarray(o, o + take), this.#have);
    this.#have += take;
    o += take;
    if (this.#have < part.length) return -1;
    this.#part = null;
    this.#have = 0;
    const c = this.#cursor;
    c.ver = readU16(part, 6);
    c.op = readI32(part, 8);
    c.seq = readI32(part, 12);
    c.buf = part;
    c.bodyStart = HEADER_LEN;
    c.bodyEnd = part.length;
    onFrame(c);
    return o;
  }
}

/**
 * Push payloads: inner frames concatenated once, shared by every connection.
 *
 * goim's asymmetry (docs/PROTOCOL.md, "Pushes: how they are framed"): TCP
 * clients get the inner frames back to back; WebSocket clients get one op 9
 * envelope per message. A {@linkcode Batch} is built with 16 bytes reserved
 * in front, so both forms are views of one buffer: `tcp` is
 * `ws.subarray(16)`. Nothing is copied per connection or per transport.
 *
 * @module
 */

import { HEADER_LEN, PUSH_VER, readU32, writeHeader } from "./frame.ts";
import { Op } from "./ops.ts";
import { ProtocolError } from "./errors.ts";

/** Encoded push bytes for both transports, views of one buffer. */
export interface Batch {
  /** Inner frames back to back: what a TCP connection is sent. */
  readonly tcp: Uint8Array;
  /** The op 9 envelope around the same frames: one WebSocket message. */
  readonly ws: Uint8Array;
  /** Number of inner frames. */
  readonly count: number;
}

/** One message to frame as an inner push frame (ver 1, seq 0). */
export interface PushFrame {
  /** The push's business operation. */
  op: number;
  /** The message bytes. */
  body: Uint8Array;
}

function seal(buf: Uint8Array, count: number): Batch {
  writeHeader(buf, 0, buf.length - HEADER_LEN, PUSH_VER, Op.Raw, 0);
  return { tcp: buf.subarray(HEADER_LEN), ws: buf, count };
}

/**
 * Frames one push message for both transports with a single allocation.
 *
 * @example
 * ```ts
 * declare const tcpConn: Deno.Conn, ws: WebSocket;
 * const b = encodePush(1000, new TextEncoder().encode("hello"));
 * tcpConn.write(b.tcp); // one inner frame
 * ws.send(b.ws); // op 9 envelope holding it
 * ```
 */
export function encodePush(op: number, body: Uint8Array): Batch {
  const buf = new Uint8Array(2 * HEADER_LEN + body.length);
  writeHeader(buf, HEADER_LEN, body.length, PUSH_VER, op, 0);
  buf.set(body, 2 * HEADER_LEN);
  return seal(buf, 1);
}

/**
 * Frames many push messages as one batch (room batching): each is copied
 * exactly once into the shared buffer.
 *
 * @example
 * ```ts
 * declare const a: Uint8Array, b: Uint8Array;
 * const batch = encodeBatch([{ op: 1000, body: a }, { op: 1000, body: b }]);
 * batch.count; // 2
 * ```
 */
export function encodeBatch(frames: readonly PushFrame[]): Batch {
  let size = HEADER_LEN;
  for (const f of frames) size += HEADER_LEN + f.body.length;
  const buf = new Uint8Array(size);
  let o = HEADER_LEN;
  for (const f of frames) {
    writeHeader(buf, o, f.body.length, PUSH_VER, f.op, 0);
    buf.set(f.body, o + HEADER_LEN);
    o += HEADER_LEN + f.body.length;
  }
  return seal(buf, frames.length);
}

/**
 * Wraps already-concatenated inner frames (for example a goim job's op 9
 * `Proto.body`) as a batch. Copies once to make room for the envelope;
 * validates that `frames` holds whole frames.
 */
export function batchFromFrames(frames: Uint8Array): Batch {
  let count = 0;
  for (let o = 0; o < frames.length; count++) {
    if (frames.length - o < HEADER_LEN) {
      throw new ProtocolError(
        "truncated",
        `${frames.length - o} trailing bytes do not hold a header`,
      );
    }
    const packLen = readU32(frames, o);
    if (packLen < HEADER_LEN || o + packLen > frames.length) {
      throw new ProtocolError(
        "truncated",
        `inner frame at ${o} has packLen ${packLen} beyond the batch`,
      );
    }
    o += packLen;
  }
  const buf = new Uint8Array(HEADER_LEN + frames.length);
  buf.set(frames, HEADER_LEN);
  return seal(buf, count);
}

/**
 * Accumulates push frames into one growing buffer, then seals a
 * {@linkcode Batch}. Reusable after {@linkcode BatchBuilder.finish}.
 *
 * @example
 * ```ts
 * declare const msgA: Uint8Array, msgB: Uint8Array;
 * const bb = new BatchBuilder();
 * bb.add(1000, msgA);
 * bb.add(1000, msgB);
 * const batch = bb.finish();
 * ```
 */
export class BatchBuilder {
  #buf: Uint8Array;
  #len = HEADER_LEN;
  #count = 0;

  constructor(initialCapacity = 4096) {
    this.#buf = new Uint8Array(Math.max(HEADER_LEN, initialCapacity));
  }

  /** Frames added since the last finish. */
  get count(): number {
    return this.#count;
  }

  /** Bytes of inner frames added since the last finish. */
  get byteLength(): number {
    return this.#len - HEADER_LEN;
  }

  /** Appends one inner frame (ver 1, seq 0). */
  add(op: number, body: Uint8Array): void {
    const need = this.#len + HEADER_LEN + body.length;
    if (need > this.#buf.length) {
      const grown = new Uint8Array(Math.max(need, this.#buf.length * 2));
      grown.set(this.#buf.subarray(0, this.#len));
      this.#buf = grown;
    }
    writeHeader(this.#buf, this.#len, body.length, PUSH_VER, op, 0);
    this.#buf.set(body, this.#len + HEADER_LEN);
    this.#len = need;
    this.#count++;
  }

  /** Seals the frames added so far into a batch of exactly their size and resets. */
  finish(): Batch {
    const buf = this.#buf.slice(0, this.#len);
    const batch = seal(buf, this.#count);
    this.#len = HEADER_LEN;
    this.#count = 0;
    return batch;
  }
}

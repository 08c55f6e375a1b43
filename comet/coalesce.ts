/**
 * Write coalescing: the bytes of one socket write for a run of queued
 * items, and the one-buffer memo that lets a flush pass build them once
 * for many channels.
 *
 * A room broadcast leaves the very same sequence of batches in every
 * member's queue, so consecutive channels of a flush pass usually need
 * identical bytes: building them once per pass instead of once per
 * channel saves a copy per connection. Holding the last buffer is the
 * whole cost. Items are immutable once queued, so identity means identical
 * bytes; the {@linkcode Framing} tells apart the bytes the same items give
 * in different transports.
 *
 * @module
 */

import { HEADER_LEN, Op, PUSH_VER, writeHeader } from "../protocol/mod.ts";
import { type QueueItem, RawFrame } from "./channel.ts";

/**
 * How a run of queued items is framed into bytes: the memo key besides the
 * items themselves.
 */
export const Framing = {
  /** TCP: inner frames and replies back to back. */
  Plain: 0,
  /** One op 9 envelope around the inner frames of a run of pushes. */
  Envelope: 1,
  /** A whole WebSocket send queue: a message per push run and per reply (./websocket.ts). */
  WsQueue: 2,
} as const;

/** One of {@linkcode Framing}. */
export type FramingValue = typeof Framing[keyof typeof Framing];

// The last coalesced buffer and the items it was built from.
let memoItems: readonly QueueItem[] | null = null;
let memoFrom = 0;
let memoTo = 0;
let memoFraming: FramingValue = Framing.Plain;
let memoBuf: Uint8Array = new Uint8Array(0);

/**
 * Coalescing work since start: buffers built (memo misses) and bytes copied
 * into them. Read by bench/comet_throughput.ts; two additions per build.
 */
export const coalesceStats = { builds: 0, bytes: 0 };

function bytesOf(it: QueueItem): Uint8Array {
  return it instanceof Uint8Array ? it : it instanceof RawFrame ? it.bytes : it.tcp;
}

/**
 * Returns the bytes `build()` makes for `items[from, to)`, reusing the
 * previous result when the same items (by identity) in the same `framing`
 * were built last.
 *
 * @example
 * ```ts
 * import type { QueueItem } from "./channel.ts";
 * declare const q: QueueItem[];
 * declare function frameForWebSocket(q: readonly QueueItem[]): Uint8Array;
 * const bytes = memoBytes(q, 0, q.length, Framing.WsQueue, () => frameForWebSocket(q));
 * ```
 */
export function memoBytes(
  items: readonly QueueItem[],
  from: number,
  to: number,
  framing: FramingValue,
  build: () => Uint8Array,
): Uint8Array {
  const m = memoItems;
  if (m !== null && memoFraming === framing && memoTo - memoFrom === to - from) {
    let same = true;
    for (let i = from, j = memoFrom; i < to; i++, j++) {
      if (items[i] !== m[j]) {
        same = false;
        break;
      }
    }
    if (same) return memoBuf;
  }
  const out = build();
  coalesceStats.builds++;
  coalesceStats.bytes += out.length;
  memoItems = items;
  memoFrom = from;
  memoTo = to;
  memoFraming = framing;
  memoBuf = out;
  return out;
}

/**
 * The bytes of `items[from, to)` as one buffer: {@linkcode Framing.Plain}
 * (inner frames and replies back to back) or {@linkcode Framing.Envelope}
 * (one op 9 envelope around the inner frames of a run of pushes). A single
 * item is returned as is (a view of the shared batch, no copy).
 *
 * @example
 * ```ts
 * import type { QueueItem } from "./channel.ts";
 * declare const items: QueueItem[];
 * const bytes = coalesce(items, 0, items.length, Framing.Plain);
 * ```
 */
export function coalesce(
  items: readonly QueueItem[],
  from: number,
  to: number,
  framing: typeof Framing.Plain | typeof Framing.Envelope,
): Uint8Array {
  const envelope = framing === Framing.Envelope;
  if (to - from === 1) {
    const it = items[from];
    if (it instanceof Uint8Array) return it;
    if (it instanceof RawFrame) return it.bytes;
    return envelope ? it.ws : it.tcp;
  }
  return memoBytes(items, from, to, framing, () => {
    let size = envelope ? HEADER_LEN : 0;
    for (let i = from; i < to; i++) size += bytesOf(items[i]).length;
    const out = new Uint8Array(size);
    let o = 0;
    if (envelope) {
      writeHeader(out, 0, size - HEADER_LEN, PUSH_VER, Op.Raw, 0);
      o = HEADER_LEN;
    }
    for (let i = from; i < to; i++) {
      const b = bytesOf(items[i]);
      out.set(b, o);
      o += b.length;
    }
    return out;
  });
}

/** Forgets the coalescing memo (lets its buffer be collected; used at shutdown). */
export function resetCoalesceMemo(): void {
  memoItems = null;
  memoBuf = new Uint8Array(0);
}

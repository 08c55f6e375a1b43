/**
 * Push batching (goim's job/room.go): messages for one key — a room, or a
 * broadcast operation — are merged into one op 9 envelope body, encoded
 * once, and sent to the comets in a single call per comet (BroadcastRoom
 * for a room, Broadcast for an operation).
 *
 * The rule, load-adaptive with no tuning: a batch is sealed when it holds
 * `job.room.batch` frames, when its bytes reach
 * {@linkcode PushBatcherOptions.maxBytes}, or `job.room.window` after its
 * first frame — but at the window only if fewer than
 * {@linkcode PushBatcherOptions.maxInFlight} flushes of this key are still
 * out (handed to the comets and not yet answered). Otherwise the batch keeps
 * growing and is sealed the moment a flush lands. A comet answers a room or
 * broadcast call once the frames are written (comet/service.ts), so the
 * round trip is the comet's own write pass: a quiet room pays at most the
 * window, and a saturated comet, job or socket makes the next batch bigger
 * (more frames per socket write) instead of the backlog longer. Longest
 * delay of a frame: the window plus the flush in flight; largest batch:
 * `job.room.batch` frames or `maxBytes`. goim waits up to a second
 * (Room.Signal); 20 ms keeps pushes interactive.
 *
 * Job keeps one batcher per room and one per unpaced broadcast operation
 * (key `op:<operation>`), all with the same settings.
 *
 * Each {@linkcode PushBatcher.add} resolves with the outcome of the flush
 * that carried its frame, so the queue acknowledges a message only once
 * its batch was handed to the comets. A frame may carry an item (job's
 * stream entry: push id, op, body) that the flush gets with the batch, one
 * per frame in order.
 *
 * @module
 */

import { type Batch, BatchBuilder } from "../protocol/batch.ts";

/** Options of {@linkcode PushBatcher}. */
export interface PushBatcherOptions {
  /** Frames per batch (config `job.room.batch`). */
  batch: number;
  /** Longest a frame waits for its batch to fill, ms (config `job.room.window`). */
  windowMs: number;
  /**
   * Inner-frame bytes that flush a batch early (default 256 KiB), so one
   * batch stays well inside a connection's send queue (comet.send_queue).
   */
  maxBytes?: number;
  /**
   * Flushes of this key out at once before the window stops sealing
   * batches (default {@linkcode BATCH_MAX_IN_FLIGHT}); a full batch is
   * still sealed (the lanes' bounds then hold the consumer back).
   */
  maxInFlight?: number;
}

/**
 * Sends one sealed batch of a key; resolves with an outcome for all its
 * frames. `since` is the stamp given with the batch's first frame, `items`
 * the frames' items in order.
 */
export type FlushBatch<R, I = undefined> = (
  key: string,
  batch: Batch,
  since: number,
  items: I[],
) => Promise<R>;

/** How {@linkcode PushBatcher.add} treats one frame. */
export interface BatchAddOptions<I = undefined> {
  /** Now, ms on the caller's clock: becomes {@linkcode PushBatcher.lastUsed}. */
  at: number;
  /** Flush the batch at once rather than wait for the window (job is stopping). */
  flushNow?: boolean;
  /** The frame's arrival mark (default 0); the flush gets the batch's first one as `since`. */
  stamp?: number;
  /** What the flush gets for this frame in its `items`. */
  item?: I;
}

/** Default of {@linkcode PushBatcherOptions.maxBytes}. */
export const BATCH_MAX_BYTES = 256 * 1024;

/** Default of {@linkcode PushBatcherOptions.maxInFlight}. */
export const BATCH_MAX_IN_FLIGHT = 1;

/** The batcher of one key: a room, or `op:<operation>` for broadcasts. */
export class PushBatcher<R, I = undefined> {
  /** The key, e.g. `live://1000` or `op:1000`. */
  readonly key: string;
  /** Last time a frame was added (ms, from the clock given to add()). */
  lastUsed = 0;
  readonly #options: Required<PushBatcherOptions>;
  readonly #flush: FlushBatch<R, I>;
  readonly #builder = new BatchBuilder(1024);
  #items: I[] = [];
  #timer?: ReturnType<typeof setTimeout>;
  #waiters: ((r: R) => void)[] = [];
  #inFlight = 0;
  #since = 0;
  // The window passed while flushes were out: seal as soon as one lands.
  #due = false;

  /** A batcher for `key` that hands sealed batches to `flush`. */
  constructor(key: string, options: PushBatcherOptions, flush: FlushBatch<R, I>) {
    this.key = key;
    this.#options = { maxBytes: BATCH_MAX_BYTES, maxInFlight: BATCH_MAX_IN_FLIGHT, ...options };
    this.#flush = flush;
  }

  /** Whether nothing is buffered or being sent (the batcher can be dropped). */
  get idle(): boolean {
    return this.#builder.count === 0 && this.#inFlight === 0;
  }

  /**
   * Appends one inner frame (ver 1, op, seq 0, body). Resolves with the
   * outcome of the flush that sends it.
   */
  add(
    op: number,
    body: Uint8Array,
    { at, flushNow = false, stamp = 0, item }: BatchAddOptions<I>,
  ): Promise<R> {
    this.lastUsed = at;
    if (this.#builder.count === 0) this.#since = stamp;
    this.#builder.add(op, body);
    this.#items.push(item as I);
    const p = new Promise<R>((r) => this.#waiters.push(r));
    if (
      flushNow || this.#builder.count >= this.#options.batch ||
      this.#builder.byteLength >= this.#options.maxBytes
    ) {
      this.flush();
    } else if (this.#timer === undefined && !this.#due) {
      this.#timer = setTimeout(this.#windowEnded, this.#options.windowMs);
    }
    return p;
  }

  /** Flushes of this key handed to the comets and not yet answered. */
  get inFlight(): number {
    return this.#inFlight;
  }

  #windowEnded = (): void => {
    this.#timer = undefined;
    if (this.#inFlight >= this.#options.maxInFlight) this.#due = true;
    else this.flush();
  };

  /** Seals and sends what is buffered now (no-op when empty). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#due = false;
    if (this.#builder.count === 0) return;
    const batch = this.#builder.finish();
    const waiters = this.#waiters;
    this.#waiters = [];
    const items = this.#items;
    this.#items = [];
    this.#inFlight++;
    // flush() starts the sends synchronously (lane slots taken in order);
    // only their completion is awaited.
    this.#flush(this.key, batch, this.#since, items).then((r) => {
      this.#inFlight--;
      for (const w of waiters) w(r);
      if (this.#due) this.flush();
    });
  }
}

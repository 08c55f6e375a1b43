/**
 * Write scheduling: one comet-wide loop that gives every channel with
 * something queued its turn at the socket.
 *
 * Why one loop with a few writes in flight (see docs/COMET.md):
 * - Under fan-out the cost is the number of socket writes, not bytes
 *   (docs/PERFORMANCE.md). Channels only queue; the loop visits each dirty
 *   channel once per pass and its whole queue goes out in one write. What
 *   arrives while a pass is running joins the channel's next write: natural
 *   batching that grows with load and adds no delay when idle.
 * - `Deno.Conn.write` completes eagerly when the kernel buffer has room, so
 *   awaiting writes in turn costs a microtask each; measured here, a small
 *   number in flight (16) beats both one at a time and starting every write
 *   of a pass at once (which is 2–3× slower).
 * - A client that never reads has a write that never completes. It holds
 *   one slot; when every slot is held for `stallMs`, the held writes are
 *   detached (left to finish or fail on their own, their channels skip
 *   turns until they do) and the pass goes on. A stuck client therefore
 *   costs the others at most `stallMs`, once, and its queue bound then
 *   decides its fate.
 * - The pass yields to the event loop every `sliceMs` so that reads, gRPC
 *   calls and timers keep running during a long fan-out; pushes those
 *   deliver join the pass still in progress.
 * - A key push must not wait for a fan-out pass to reach its channel (or
 *   for the next pass, when this one is past it): {@linkcode Flusher.expedite}
 *   puts the channel on an urgent list that a running pass works first, at
 *   its start and every 64 channels, so a key push waits at most a slice
 *   (4 ms) of someone else's fan-out.
 * - {@linkcode Flusher.written} tells a caller when what it queued has been
 *   handed to the sockets (the next pass has ended) — and, after a long
 *   pass, once as long again has passed (`holdRatio`). The comet answers
 *   room and broadcast calls then, so job's batches grow with the time a
 *   pass takes (job/batcher.ts): the pass length is the load signal, and a
 *   comet spends at most about half its time in fan-out passes, leaving the
 *   rest to reads, heartbeats and key pushes, while each socket write
 *   carries more frames.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { Channel } from "./channel.ts";

/** Options of {@linkcode Flusher}. */
export interface FlusherOptions {
  /** Writes awaited concurrently (default 16). */
  maxInflight?: number;
  /** When every slot is held this long, the held writes are detached (default 20 ms). */
  stallMs?: number;
  /** Longest a pass runs before yielding to the event loop (default 4 ms). */
  sliceMs?: number;
  /**
   * written() resolves this many pass lengths after the pass ends (default
   * 1: fan-out passes take at most about half the time), for passes of at
   * least {@linkcode HOLD_MIN_PASS_MS}; at most {@linkcode HOLD_MAX_MS}.
   */
  holdRatio?: number;
}

/** Passes shorter than this (ms) are answered at once: nothing to spread. */
export const HOLD_MIN_PASS_MS = 5;

/** Longest hold after a pass (ms), whatever its length. */
export const HOLD_MAX_MS = 250;

/**
 * Runs channel flushes with bounded concurrency.
 *
 * @example
 * ```ts
 * import type { Channel } from "./channel.ts";
 * declare const ch: Channel;
 * const flusher = new Flusher();
 * flusher.schedule(ch); // ch.flush() runs in the next pass
 * await flusher.stop();
 * ```
 */
export class Flusher {
  readonly #maxInflight: number;
  readonly #stallMs: number;
  readonly #sliceMs: number;
  readonly #holdRatio: number;
  #dirty: Channel[] = [];
  // Channels with a key push, worked ahead of the pass in progress.
  #urgent: Channel[] = [];
  #spare: Channel[] = [];
  #running = false;
  #inflight = 0;
  // Writes started in an older generation were detached: their completion no longer frees a slot.
  #generation = 0;
  #wake: (() => void) | null = null;
  #stallTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Times every slot was held for stallMs and the held writes were detached. */
  stalls = 0;
  #idle: Promise<void> | null = null;
  #idleResolve: (() => void) | null = null;
  // written() callers: those waiting for the next pass, and those for the one running.
  #nextPass: (() => void)[] = [];
  #thisPass: (() => void)[] = [];

  /** Creates an idle flusher. */
  constructor(opts: FlusherOptions = {}) {
    this.#maxInflight = Math.max(1, opts.maxInflight ?? 16);
    this.#stallMs = Math.max(1, opts.stallMs ?? 20);
    this.#sliceMs = Math.max(1, opts.sliceMs ?? 4);
    this.#holdRatio = Math.max(0, opts.holdRatio ?? 1);
  }

  /** Channels waiting for their turn. */
  get pending(): number {
    return this.#dirty.length;
  }

  /** Writes currently holding a slot. */
  get inflight(): number {
    return this.#inflight;
  }

  /**
   * `ch` got a key push: while a pass is running, it is written ahead of
   * the channels the pass has not reached yet (and of the next pass);
   * otherwise it is scheduled as usual.
   */
  expedite(ch: Channel): void {
    if (!this.#running) {
      if (!ch.scheduled) this.schedule(ch);
      return;
    }
    if (ch.urgent || this.#stopped) return;
    ch.urgent = true;
    this.#urgent.push(ch);
  }

  /** Queues `ch` for the next pass (the caller checked `ch.scheduled`). */
  schedule(ch: Channel): void {
    ch.scheduled = true;
    this.#dirty.push(ch);
    if (!this.#running && !this.#stopped) {
      this.#running = true;
      // A microtask: everything queued by the current synchronous fan-out lands first.
      queueMicrotask(this.#run);
    }
  }

  /** Resolves when no pass is running (for tests and shutdown). */
  idle(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return this.#idle ??= new Promise((r) => (this.#idleResolve = r));
  }

  /**
   * Resolves when everything queued so far has been handed to its socket:
   * at the end of the pass that starts after this call (a channel already
   * visited by a running pass is written in the next one), plus the hold
   * after a long pass (`holdRatio`). At once when no channel is waiting.
   */
  written(): Promise<void> {
    if (this.#dirty.length === 0 && !this.#running) return Promise.resolve();
    if (this.#stopped) return Promise.resolve();
    return new Promise((r) => this.#nextPass.push(r));
  }

  /** Stops scheduling; pending channels are dropped from the list. Resolves when the loop exits. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const ch of this.#dirty) ch.scheduled = false;
    this.#dirty = [];
    this.#release();
    await this.idle();
    clearTimeout(this.#stallTimer);
  }

  #run = async (): Promise<void> => {
    try {
      let sliceStart = performance.now();
      let n = 0;
      while (this.#dirty.length > 0 && !this.#stopped) {
        const pass = this.#dirty;
        const passStart = performance.now();
        this.#dirty = this.#spare;
        const waiters = this.#nextPass;
        this.#nextPass = this.#thisPass;
        this.#thisPass = waiters;
        for (let i = 0; i < pass.length; i++) {
          if ((i & 63) === 0 && this.#urgent.length > 0) await this.#flushUrgent();
          const ch = pass[i];
          pass[i] = undefined as unknown as Channel;
          ch.scheduled = false;
          const slot = this.#write(ch);
          if (slot !== undefined) await slot;
          if ((++n & 63) === 0 && performance.now() - sliceStart > this.#sliceMs) {
            await new Promise<void>((r) => setImmediate(r));
            sliceStart = performance.now();
          }
          if (this.#stopped) break;
        }
        pass.length = 0;
        this.#spare = pass;
        this.#settle(this.#thisPass, performance.now() - passStart);
      }
    } finally {
      this.#running = false;
      // Every urgent channel is also in a pass (push scheduled it), so what is
      // left here was written by the pass itself.
      for (const ch of this.#urgent) ch.urgent = false;
      this.#urgent = [];
      this.#settle(this.#thisPass);
      // Nothing left to write (or stopped): no pass will come for them.
      if (this.#dirty.length === 0 || this.#stopped) this.#settle(this.#nextPass);
      const r = this.#idleResolve;
      this.#idle = null;
      this.#idleResolve = null;
      r?.();
      // Scheduled while the last pass was finishing up.
      if (this.#dirty.length > 0 && !this.#stopped) {
        this.#running = true;
        queueMicrotask(this.#run);
      }
    }
  };

  // One channel's turn: its write holds a slot until it completes. Returns
  // the wait for a free slot when all are held (the hot path stays sync).
  #write(ch: Channel): Promise<void> | undefined {
    const p = ch.flush();
    if (p === undefined) return undefined;
    this.#inflight++;
    const gen = this.#generation;
    p.then(() => this.#done(gen));
    return this.#inflight >= this.#maxInflight ? this.#slot() : undefined;
  }

  async #flushUrgent(): Promise<void> {
    const list = this.#urgent;
    this.#urgent = [];
    for (const ch of list) {
      ch.urgent = false;
      if (this.#stopped) continue;
      const slot = this.#write(ch);
      if (slot !== undefined) await slot;
    }
  }

  #settle(waiters: (() => void)[], passMs = 0): void {
    if (waiters.length === 0) return;
    const all = waiters.splice(0);
    const hold = passMs >= HOLD_MIN_PASS_MS && !this.#stopped
      ? Math.min(HOLD_MAX_MS, passMs * this.#holdRatio)
      : 0;
    if (hold <= 0) {
      for (const w of all) w();
      return;
    }
    // One timer for every caller of this pass.
    setTimeout(() => {
      for (const w of all) w();
    }, hold);
  }

  #done(gen: number): void {
    if (gen !== this.#generation) return;
    this.#inflight--;
    this.#release();
  }

  #release(): void {
    const w = this.#wake;
    if (w !== null) {
      this.#wake = null;
      clearTimeout(this.#stallTimer);
      this.#stallTimer = undefined;
      w();
    }
  }

  #slot(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#stallTimer = setTimeout(() => {
        this.#stallTimer = undefined;
        // Every slot is held by a write that has not completed in stallMs:
        // those clients are not reading. Stop waiting for them.
        this.#generation++;
        this.#inflight = 0;
        this.stalls++;
        this.#release();
      }, this.#stallMs);
    });
  }
}

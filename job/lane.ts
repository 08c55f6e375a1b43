/**
 * A lane: a bounded FIFO of calls to one comet, worked one at a time by its
 * own async loop (goim's per-comet routine with its RoutineChan).
 *
 * Order: work is started in submission order and never overlaps, so what
 * one key (or room) submits reaches the comet in order. Bound: at most
 * `capacity` items queued; further submissions wait — in submission order —
 * until one leaves, which is how a slow comet slows the queue consumer down
 * (backpressure) instead of growing memory.
 *
 * @module
 */

interface Item<T> {
  work: () => Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

/** Thrown to submissions that a closed lane will never run. */
export class LaneClosedError extends Error {
  /** `reason` says why (the comet left, job is stopping). */
  constructor(reason: string) {
    super(reason);
    this.name = "LaneClosedError";
  }
}

/**
 * One lane.
 *
 * @example
 * ```ts
 * import type { CometRpcClient } from "../proto/grpc.ts";
 * import type { MessageInit, PushMsgReq } from "../proto/messages.ts";
 * declare const comet: CometRpcClient, req: MessageInit<PushMsgReq>;
 * const lane = new Lane(1024);
 * const reply = await lane.submit(() => comet.PushMsg(req)); // waits its turn
 * ```
 */
export class Lane {
  readonly #capacity: number;
  #items: Item<unknown>[] = [];
  #head = 0;
  // Submissions waiting for room, oldest first.
  #waiting: Item<unknown>[] = [];
  #waitHead = 0;
  #running = false;
  #closed?: LaneClosedError;
  #idle?: () => void;

  /** A lane holding at most `capacity` queued items (config `job.lane_queue`). */
  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity);
  }

  /** Items queued or waiting for room (the one being worked included). */
  get depth(): number {
    return this.#items.length - this.#head + this.#waiting.length - this.#waitHead;
  }

  /**
   * Queues `work` (synchronously when there is room: order is fixed at the
   * call) and resolves with its result once it ran. Rejects with
   * {@linkcode LaneClosedError} if the lane closes first.
   */
  submit<T>(work: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise<T>((resolve, reject) => {
      const item = { work, resolve, reject } as Item<unknown>;
      // Behind earlier waiters even if room just appeared: order is the contract.
      if (
        this.#items.length - this.#head < this.#capacity && this.#waitHead === this.#waiting.length
      ) {
        this.#items.push(item);
        if (!this.#running) void this.#loop();
      } else {
        this.#waiting.push(item);
      }
    });
  }

  /**
   * Rejects everything queued or waiting with `reason`; the item being
   * worked finishes. Resolves when the loop is idle.
   */
  close(reason: string): Promise<void> {
    this.#closed ??= new LaneClosedError(reason);
    const left = [...this.#items.slice(this.#head), ...this.#waiting.slice(this.#waitHead)];
    // The running item (if any) is the first of #items; the loop settles it.
    const dropped = this.#running ? left.slice(1) : left;
    this.#items = this.#running ? left.slice(0, 1) : [];
    this.#head = 0;
    this.#waiting = [];
    this.#waitHead = 0;
    for (const it of dropped) it.reject(this.#closed);
    if (!this.#running) return Promise.resolve();
    return new Promise((r) => this.#idle = r);
  }

  async #loop(): Promise<void> {
    this.#running = true;
    while (this.#head < this.#items.length) {
      const it = this.#items[this.#head];
      try {
        it.resolve(await it.work());
      } catch (e) {
        it.reject(e);
      }
      (this.#items as (Item<unknown> | undefined)[])[this.#head++] = undefined;
      if (this.#waitHead < this.#waiting.length) {
        const next = this.#waiting[this.#waitHead];
        (this.#waiting as (Item<unknown> | undefined)[])[this.#waitHead++] = undefined;
        this.#items.push(next);
      }
      if (this.#head > 64 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      if (this.#waitHead > 64 && this.#waitHead * 2 > this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#waitHead);
        this.#waitHead = 0;
      }
    }
    this.#items = [];
    this.#head = 0;
    this.#running = false;
    const idle = this.#idle;
    this.#idle = undefined;
    idle?.();
  }
}

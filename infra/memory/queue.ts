/**
 * In-process push queue for embedded mode (logic and job in one process):
 * a bounded FIFO of {@linkcode PushMsg} objects, no encoding.
 *
 * Delivery model (the same one the Kafka engine gives per partition, so
 * job behaves alike on both):
 *
 * - One ordered stream. The handler is *invoked* in publish order, so it is
 *   invoked in order per partition key too. Up to `maxInFlight` handlers run
 *   at once: a handler that resolves late (job resolves a room message only
 *   when its batch was sent) does not stall the messages behind it, which is
 *   what lets job batch a busy room. A handler that needs order must fix it
 *   before its first `await` (job enqueues into its per-key lane
 *   synchronously).
 * - A message is acknowledged (leaves the queue and frees capacity) when its
 *   handler resolves. A rejected handler is invoked again for the same
 *   message after a backoff (base delay doubling up to a maximum), forever,
 *   and while any message waits for such a retry no *new* message is
 *   dispatched: like a Kafka partition whose offset cannot move. Messages
 *   already in flight at that moment carry on, so a retried message may be
 *   handled after a later one of its key; job never rejects except when it
 *   is stopping, so this only matters for other handlers.
 * - `capacity` bounds queued + in-flight messages; a publish beyond it
 *   rejects at once with {@linkcode QueueUnavailableError} (logic answers the
 *   push with an error; nothing blocks).
 * - `consumer.close()` stops taking new publishes, keeps delivering what is
 *   queued for up to `drainTimeoutMs` (those pushes were already accepted),
 *   then drops the rest (logged, counted by {@linkcode MemoryQueue.dropped})
 *   and waits for the handlers still in flight. A handler that rejects
 *   during close is not retried: its message is dropped.
 *
 * The handler also gets a second argument, {@linkcode PushMeta}, with the
 * publish time, so job can measure end-to-end latency, and an id —
 * `memory/<queue>/<n>`, n counting publishes, `<queue>` random per queue —
 * that stays the same when a rejected message is delivered again.
 *
 * @example
 * ```ts
 * import { createMemoryQueue } from "./queue.ts";
 * const q = createMemoryQueue({ capacity: 1024 });
 * await q.consumer.start(async (msg) => console.log(msg.type, msg.operation));
 * await q.producer.publish({
 *   type: "ROOM", operation: 1000, speed: 0, server: "", room: "live://1", keys: [],
 *   msg: new TextEncoder().encode("hi"),
 * });
 * await q.consumer.close(); // delivers the queued message first
 * ```
 *
 * @module
 */

import type { PushMsg } from "../../proto/messages.ts";
import type { Logger } from "../log.ts";
import { doublingDelay } from "../backoff.ts";
import {
  type PushConsumer,
  type PushHandler,
  type PushMeta,
  type PushProducer,
  QueueUnavailableError,
} from "../queue.ts";

/** Options of {@linkcode createMemoryQueue}. */
export interface MemoryQueueOptions {
  /** Messages held (queued + in flight) before publish fails (config `queue.memory.capacity`). */
  capacity: number;
  /** Handlers running at once (default 1024). */
  maxInFlight?: number;
  /** Delay before re-invoking a rejected handler, doubled per failure (default 100 ms). */
  retryBaseDelayMs?: number;
  /** Upper bound of that delay (default 5000 ms). */
  retryMaxDelayMs?: number;
  /** How long `consumer.close()` keeps delivering queued messages (default 5000 ms). */
  drainTimeoutMs?: number;
  /** Receives handler failures and dropped messages; silent by default. */
  log?: Logger;
  /** Clock for {@linkcode PushMeta.publishedAt} (default `Date.now`). */
  now?: () => number;
}

/** The two ends of one in-memory queue, plus its depth. */
export interface MemoryQueue {
  /** Publishing end (logic). */
  producer: PushProducer;
  /** Consuming end (job). `lag()` is the depth. */
  consumer: PushConsumer & Required<Pick<PushConsumer, "lag">>;
  /** Messages published and not yet acknowledged by the handler (queued + in flight). */
  depth(): number;
  /** Messages dropped because `consumer.close()` gave up on them. */
  dropped(): number;
}

interface Entry {
  msg: PushMsg;
  publishedAt: number;
  /** {@linkcode PushMeta.id}. */
  id: string;
  failures: number;
}

/**
 * Creates a bounded in-memory queue. See the module doc for the delivery
 * model; `capacity` must be a positive integer.
 */
export function createMemoryQueue(options: MemoryQueueOptions): MemoryQueue {
  const q = new MemoryPushQueue(options);
  return {
    producer: {
      publish: (msg) => q.publish(msg),
      healthy: () => q.healthy(),
      close: () => q.closeProducer(),
    },
    consumer: {
      start: (handler) => q.start(handler),
      close: () => q.closeConsumer(),
      lag: () => Promise.resolve(q.size),
    },
    depth: () => q.size,
    dropped: () => q.droppedCount,
  };
}

class MemoryPushQueue {
  readonly #capacity: number;
  readonly #maxInFlight: number;
  readonly #baseDelay: number;
  readonly #maxDelay: number;
  readonly #drainTimeout: number;
  readonly #log?: Logger;
  readonly #now: () => number;

  // Undispatched entries from #head on; compacted lazily so shift is O(1).
  #queue: Entry[] = [];
  #head = 0;
  /** Queued + in flight (+ waiting for a retry). */
  size = 0;
  #inFlight = 0;
  /** Failed entries waiting for their retry; while any exist nothing new is dispatched. */
  readonly #retrying = new Set<Entry>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #handler?: PushHandler;
  #pumpScheduled = false;
  #producerClosed = false;
  #consumerClosing = false;
  #stopped = false;
  droppedCount = 0;
  // PushMeta.id: `memory/<this queue>/<publishes so far>`.
  readonly #idPrefix = `memory/${crypto.randomUUID().slice(0, 8)}/`;
  #published = 0;
  // Wakes close() whenever size or in-flight count drops.
  #onSettle?: () => void;

  constructor(o: MemoryQueueOptions) {
    if (!Number.isSafeInteger(o.capacity) || o.capacity < 1) {
      throw new RangeError(`memory queue capacity must be a positive integer, got ${o.capacity}`);
    }
    this.#capacity = o.capacity;
    this.#maxInFlight = Math.max(1, o.maxInFlight ?? 1024);
    this.#baseDelay = o.retryBaseDelayMs ?? 100;
    this.#maxDelay = o.retryMaxDelayMs ?? 5000;
    this.#drainTimeout = o.drainTimeoutMs ?? 5000;
    this.#log = o.log;
    this.#now = o.now ?? Date.now;
  }

  publish(msg: PushMsg): Promise<void> {
    if (this.#producerClosed || this.#consumerClosing) {
      return Promise.reject(new QueueUnavailableError("memory queue closed"));
    }
    if (this.size >= this.#capacity) {
      return Promise.reject(
        new QueueUnavailableError(`memory queue full (capacity ${this.#capacity})`),
      );
    }
    this.#queue.push({
      msg,
      publishedAt: this.#now(),
      id: this.#idPrefix + ++this.#published,
      failures: 0,
    });
    this.size++;
    this.#schedulePump();
    return Promise.resolve();
  }

  healthy(): boolean {
    return !this.#producerClosed && !this.#consumerClosing && this.size < this.#capacity;
  }

  closeProducer(): Promise<void> {
    this.#producerClosed = true;
    return Promise.resolve();
  }

  start(handler: PushHandler): Promise<void> {
    if (this.#handler) return Promise.reject(new Error("memory queue consumer already started"));
    if (this.#consumerClosing) return Promise.reject(new Error("memory queue consumer closed"));
    this.#handler = handler;
    this.#schedulePump();
    return Promise.resolve();
  }

  async closeConsumer(): Promise<void> {
    if (this.#consumerClosing) {
      while (!this.#stopped) await this.#settled();
      return;
    }
    this.#consumerClosing = true;
    if (this.#handler) {
      let expired = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<void>((r) =>
        timer = setTimeout(() => {
          expired = true;
          r();
        }, this.#drainTimeout)
      );
      while (this.size > 0 && !expired) await Promise.race([this.#settled(), timeout]);
      clearTimeout(timer);
    }
    // Give up on what is left: queued entries and entries waiting for a retry.
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    const left = this.#queue.length - this.#head + this.#retrying.size;
    this.#queue = [];
    this.#head = 0;
    this.#retrying.clear();
    this.size = this.#inFlight;
    if (left > 0) {
      this.droppedCount += left;
      this.#log?.warn("memory queue closed with undelivered messages", { dropped: left });
    }
    this.#stopped = true;
    while (this.#inFlight > 0) await this.#settled();
  }

  #settled(): Promise<void> {
    return new Promise((r) => {
      const prev = this.#onSettle;
      this.#onSettle = () => {
        prev?.();
        r();
      };
    });
  }

  #wake(): void {
    const f = this.#onSettle;
    this.#onSettle = undefined;
    f?.();
  }

  // Dispatch runs in a microtask, never inside publish(): a handler must not
  // run on the publisher's stack (re-entrancy), and publishes made in one
  // turn are then dispatched together, in order.
  #schedulePump(): void {
    if (this.#pumpScheduled || !this.#handler) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    while (
      !this.#stopped && this.#retrying.size === 0 && this.#inFlight < this.#maxInFlight &&
      this.#head < this.#queue.length
    ) {
      const e = this.#queue[this.#head];
      (this.#queue as (Entry | undefined)[])[this.#head++] = undefined;
      this.#dispatch(e);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #dispatch(e: Entry): void {
    this.#inFlight++;
    let p: Promise<void>;
    try {
      p = this.#handler!(e.msg, { publishedAt: e.publishedAt, id: e.id } satisfies PushMeta);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(() => this.#done(e), (err) => this.#failed(e, err));
  }

  #done(e: Entry): void {
    this.#inFlight--;
    this.size--;
    this.#retrying.delete(e);
    this.#wake();
    this.#pump();
  }

  #failed(e: Entry, err: unknown): void {
    this.#inFlight--;
    // While closing a failure is final: the consumer is going away (job
    // rejects only when it abandons messages at shutdown).
    if (this.#consumerClosing) {
      this.size--;
      this.droppedCount++;
      this.#wake();
      return;
    }
    e.failures++;
    this.#retrying.add(e);
    const delay = doublingDelay(this.#baseDelay, this.#maxDelay, e.failures);
    this.#log?.warn("push handler failed; retrying", {
      type: e.msg.type,
      failures: e.failures,
      retryInMs: delay,
      error: err,
    });
    const t = setTimeout(() => {
      this.#timers.delete(t);
      if (!this.#stopped) this.#dispatch(e);
    }, delay);
    this.#timers.add(t);
    this.#wake();
  }
}

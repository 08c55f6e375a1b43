/**
 * Job's side of streams (docs/STREAMS.md): job is the one ordering point of
 * every stream. It appends each room batch and each mid push to the stream
 * history, in queue order, before anything is sent to a comet.
 *
 * - **Order.** Appends to one stream run one after another: the next starts
 *   only once the previous one returned, so positions follow queue order
 *   even across a failure and its retries.
 * - **Nothing lost.** A failing append (the store is down) is retried with
 *   job's backoff (`job.retry.base_delay` doubling to `job.retry.max_delay`)
 *   until it succeeds; meanwhile the message's handler does not resolve, so
 *   the queue keeps it (at-least-once). So is a failing `keysByMids` (the
 *   message has its position; its live connections must still get it). Only
 *   job's stop, once it gives up on draining, ends the retries.
 * - **Append, then look up** ({@linkcode StreamWriter.routeMid}). A mid's
 *   keys are looked up only after its push has its position, so a route
 *   stored before the append is found and one stored after reads the entry
 *   in its recovery. When the stream store and the session store work over
 *   one ordered channel (the same `orderedVia`: one connection to a single
 *   Redis, infra/engines.ts), both calls are issued at once, the lookup
 *   right behind the append: ioredis puts them — and those of concurrent
 *   pushes — in one socket write, and Redis runs them in that order, so the
 *   push costs one round trip instead of two. The order then rests on the
 *   channel (infra/redis/client.ts, "Order") with one exception the
 *   append reports: sent again after NOSCRIPT (`Appended.reissued`), it ran
 *   after the lookup, which is then made again
 *   ({@linkcode StreamWriter.lookupsRedone}). A failed append voids the
 *   lookup sent with it (its answer is dropped, the pair is retried); a
 *   failed lookup after a good append is retried alone. Otherwise (a
 *   cluster, the memory engine, different connections) the lookup is
 *   issued once the append returned.
 * - **Push status** (`ack`) is advisory: `delivered()` gets
 *   `job.retry.max_attempts` attempts, then the failure is logged.
 * - **Push ids.** A message without one (a goim logic's) gets one derived
 *   from the queue's id for it ({@linkcode PushMeta.id}), so a redelivery
 *   carries the same id and the store gives it its first position again.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { PushMeta } from "../infra/queue.ts";
import type { SessionStore } from "../infra/sessions.ts";
import { Sleeper } from "../infra/sleeper.ts";
import type { Appended, PushStatusStore, StreamEntryInit, StreamStore } from "../infra/streams.ts";
import type { PushMsg } from "../proto/messages.ts";
import { checkStreamName, isPushId } from "../infra/stream_rules.ts";
import type { JobMetrics } from "./metrics.ts";
import { inOrder } from "./order.ts";
import { backoffDelay, type RetryPolicy } from "./retry.ts";

/** 22 characters of base64url: the first 16 bytes of SHA-256 of `s` (the shape of logic's ids). */
function hashId(s: string): string {
  return createHash("sha256").update(s).digest().subarray(0, 16).toString("base64url");
}

/**
 * The push id of a message: its own `push_id` when it is a valid one; else
 * one derived from it (a foreign producer's malformed id) or from the
 * queue's id for the message — both the same on every redelivery; else
 * (no queue id: a handler called directly) a fresh random one.
 *
 * @example
 * ```ts
 * import type { PushMsg } from "../proto/messages.ts";
 * declare const msg: PushMsg;
 * pushIdOf(msg, { id: "goim-push-topic/3/1234" }) === pushIdOf(msg, { id: "goim-push-topic/3/1234" }); // true
 * ```
 */
export function pushIdOf(msg: Pick<PushMsg, "push_id">, meta?: PushMeta): string {
  const own = msg.push_id;
  if (own) return isPushId(own) ? own : hashId(`push_id/${own}`);
  if (meta?.id) return hashId(`queue/${meta.id}`);
  return hashId(`random/${crypto.randomUUID()}`);
}

/** Whether the stores take `name` as a stream name (1 … 256 bytes of well-formed UTF-8). */
export function isStreamName(name: string): boolean {
  try {
    checkStreamName(name);
    return true;
  } catch {
    return false;
  }
}

/** What {@linkcode StreamWriter.append} answers when the store refused the entries for good. */
export const REFUSED = "refused";

/** What {@linkcode StreamWriter.routeMid} found for a mid push. */
export interface MidRoute {
  /** The push's position; undefined without a history or when the store refused the entry. */
  appended?: Appended;
  /** The mid's live keys (key → comet), looked up after the append. */
  keys: Map<string, string>;
}

/** The kind of a stream, for metric labels. */
export type StreamKind = "room" | "mid";

/** What {@linkcode StreamWriter} works with. */
export interface StreamWriterOptions {
  /** The history; absent (streams off): mid pushes are looked up and sent without a position. */
  streams?: StreamStore;
  /** Session routes, for a mid's live keys (mid pushes are skipped without it). */
  sessions?: SessionStore;
  /** Push status of `ack` pushes (not recorded without it). */
  pushStatus?: PushStatusStore;
  /** Job's metrics. */
  metrics: JobMetrics;
  /** Backoff between attempts and the attempts of `delivered()` (config `job.retry.*`). */
  retry: RetryPolicy;
  /** Logs a failure, at most once per `key` every few seconds. */
  warn(key: string, text: string, fields: Record<string, unknown>): void;
}

/** Appends in stream order, looks up a mid's keys, records push status; see the module doc. */
export class StreamWriter {
  readonly #o: StreamWriterOptions;
  readonly #sleeper = new Sleeper();
  // Tail of each stream's chain of appends.
  readonly #order = new Map<string, Promise<unknown>>();
  #stopped = false;
  #redone = 0;

  /** A writer over `options.streams`. */
  constructor(options: StreamWriterOptions) {
    this.#o = options;
  }

  /** Whether messages get positions (there is a history). */
  get history(): boolean {
    return this.#o.streams !== undefined;
  }

  /** Whether mid pushes can be handled (there is a session store). */
  get sessions(): boolean {
    return this.#o.sessions !== undefined;
  }

  /**
   * Whether a mid push's append and lookup are issued together: the two
   * stores work over one ordered channel (see the module doc).
   */
  get ordered(): boolean {
    const via = this.#o.streams?.orderedVia;
    return via !== undefined && via === this.#o.sessions?.orderedVia;
  }

  /**
   * Lookups made again because the append they were sent behind was sent
   * again after them (`Appended.reissued`: a flushed script cache).
   */
  get lookupsRedone(): number {
    return this.#redone;
  }

  /**
   * Appends `entries` to `stream` once every earlier append to it returned,
   * retrying until the store takes them. Null once {@linkcode StreamWriter.stop}
   * gave up, or without a history; {@linkcode REFUSED} when the store
   * refused them as invalid (a RangeError: retrying cannot help; job checks
   * names and ids first, so this is a safety net). Never rejects.
   */
  append(
    kind: StreamKind,
    stream: string,
    entries: StreamEntryInit[],
  ): Promise<Appended | typeof REFUSED | null> {
    const store = this.#o.streams;
    if (!store) return Promise.resolve(null);
    return inOrder(
      this.#order,
      stream,
      Promise.resolve(),
      () => this.#retry("append", { stream }, () => this.#appendOnce(store, kind, stream, entries)),
    );
  }

  async #appendOnce(
    store: StreamStore,
    kind: StreamKind,
    stream: string,
    entries: StreamEntryInit[],
  ): Promise<Appended | typeof REFUSED> {
    const started = performance.now();
    let a: Appended;
    try {
      a = await store.append(stream, entries);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      this.#o.metrics.storeFailures.inc({ call: "append" });
      this.#o.warn("refused", "stream store refused an append; sent without positions", {
        stream: stream.slice(0, 64),
        error: e,
      });
      return REFUSED;
    }
    const m = this.#o.metrics;
    m.streamAppends.inc({ kind });
    m.streamAppendEntries.inc({ kind }, entries.length);
    m.streamAppendSeconds.observe({ kind }, (performance.now() - started) / 1000);
    return a;
  }

  /**
   * The live keys of `mid` (key → comet), retried until the store answers.
   * Null once stopped, or when there is no session store.
   */
  keysOf(mid: number): Promise<Map<string, string> | null> {
    const sessions = this.#o.sessions;
    if (!sessions) return Promise.resolve(null);
    return this.#retry("keys_by_mids", { mid }, () => sessions.keysByMids([mid]));
  }

  /**
   * A mid push's store work: `entries` appended to `stream` (as
   * {@linkcode StreamWriter.append}; none without a history), then the live
   * keys of `mid` looked up — issued together when {@linkcode
   * StreamWriter.ordered}, else one after the other (the module doc). Both
   * retried until they succeed; null once stopped or without a session
   * store. Never rejects.
   */
  async routeMid(
    stream: string,
    entries: StreamEntryInit[],
    mid: number,
  ): Promise<MidRoute | null> {
    const store = this.#o.streams, sessions = this.#o.sessions;
    if (!sessions) return null;
    if (!store) {
      const keys = await this.keysOf(mid);
      return keys && { keys };
    }
    if (!this.ordered) {
      const a = await this.append("mid", stream, entries);
      if (a === null) return null;
      const keys = await this.keysOf(mid);
      return keys && { appended: a === REFUSED ? undefined : a, keys };
    }
    const sent = await inOrder(
      this.#order,
      stream,
      Promise.resolve(),
      () =>
        this.#retry("append", { stream }, async () => {
          const appending = this.#appendOnce(store, "mid", stream, entries);
          // Issued right behind the append, on the same channel: it runs after it.
          const lookup = sessions.keysByMids([mid]);
          // Dropped when the append fails (the pair is retried) or was re-sent.
          lookup.catch(() => {});
          const a = await appending;
          return { a, lookup: a !== REFUSED && a.reissued ? undefined : lookup };
        }),
    );
    if (sent === null) return null;
    if (sent.lookup === undefined) this.#redone++;
    const keys = await this.#retry("keys_by_mids", { mid }, () => sessions.keysByMids([mid]), {
      first: sent.lookup,
    });
    return keys && { appended: sent.a === REFUSED ? undefined : sent.a, keys };
  }

  /**
   * Records that push `id` was handed to `sent` connections of `target`
   * (0: offline). At most `job.retry.max_attempts` attempts; never rejects.
   */
  async delivered(id: string, target: string, sent: number): Promise<void> {
    const status = this.#o.pushStatus;
    if (!status) return;
    const max = Math.max(1, this.#o.retry.maxAttempts);
    for (let attempt = 1; !this.#stopped; attempt++) {
      try {
        await status.delivered(id, target, sent);
        return;
      } catch (e) {
        this.#o.metrics.storeFailures.inc({ call: "delivered" });
        if (attempt >= max) {
          this.#o.warn("status", "push status not recorded; giving up", {
            id,
            target,
            attempts: attempt,
            error: e,
          });
          return;
        }
        if (!(await this.#sleeper.sleep(backoffDelay(this.#o.retry, attempt)))) return;
      }
    }
  }

  /** Ends every retry at once (job gives up draining); later calls give up on the first failure. */
  stop(): void {
    this.#stopped = true;
    this.#sleeper.wakeAll();
  }

  // Calls `f` until it resolves; null once stopped. `first`: an attempt already under way.
  async #retry<T>(
    call: "append" | "keys_by_mids",
    fields: Record<string, unknown>,
    f: () => Promise<T>,
    opts: { first?: Promise<T> } = {},
  ): Promise<T | null> {
    let first = opts.first;
    for (let attempt = 1; !this.#stopped; attempt++) {
      try {
        const p = first ?? f();
        first = undefined;
        return await p;
      } catch (e) {
        this.#o.metrics.storeFailures.inc({ call });
        this.#o.warn(call, `${call} failed; retrying`, { ...fields, attempt, error: e });
        if (!(await this.#sleeper.sleep(backoffDelay(this.#o.retry, attempt)))) break;
      }
    }
    return null;
  }
}

/**
 * In-process {@linkcode StreamStore} and {@linkcode PushStatusStore} for the
 * embedded mode, where logic and job share one instance of each.
 *
 * Streams: a Map in least-recently-appended order (an append moves its
 * stream to the end), each stream its kept entries oldest first and a push
 * id → position index for deduplication. Bounds: `size` entries per
 * stream (`streams.history.size`), `maxStreams` streams
 * (`streams.memory.max_streams`) and `maxBytes` bytes
 * (`streams.memory.max_bytes`): past either, the least recently appended
 * streams are dropped whole, so their next append starts a new epoch; and
 * `ttlMs` (`streams.history.ttl`): a stream not appended to for that long
 * reads as having no history. Expiry is lazy: a read drops an expired
 * stream, and each append drops expired streams from the front of the Map
 * (the least recently appended, hence the first to expire), so no timer
 * runs.
 *
 * Bytes are counted, not measured: each entry costs its body, its push id
 * and {@linkcode ENTRY_OVERHEAD_BYTES}, each stream its name and
 * {@linkcode STREAM_OVERHEAD_BYTES} (the heap the rest takes, measured
 * below). An append that alone exceeds `maxBytes` still lands: every other
 * stream is dropped, then this stream's older entries (never those of this
 * append), so the store holds that append only, over the bound until the
 * next append elsewhere drops it. Dropping the stream's own older entries
 * keeps its epoch: a client behind them is told `window_passed`, as by
 * `size`.
 *
 * Push status: a Map in creation order (all records live the same
 * `ttlMs`, so the oldest expire first); each `create` drops the expired
 * ones from the front, and at most `maxTargets` targets are kept over all
 * records (the oldest records are dropped past it), so an app pushing with
 * `ack=1` faster than the TTL lets go cannot grow the process without bound.
 *
 * Every operation is synchronous under the hood, hence atomic; the promises
 * only fit the interfaces. After `close()` every method rejects.
 *
 * Cost, measured on this project's 2-core machine (a throwaway script:
 * `heapUsed + external` of `Deno.memoryUsage` after `gc()` under
 * `--v8-flags=--expose-gc`, over 200 streams of 1000 entries of 50-byte
 * bodies with 22-character push ids, then 50,000 streams of one entry):
 * ≈ 418 B per entry, i.e. ≈ 346 B besides its body and push id (the entry
 * object, its own copy of the body, the id index; the same with 500-byte
 * bodies), and ≈ 527 B per stream besides its entries (the Map slot, the
 * stream object, its array and index). A full stream of small messages is
 * thus ≈ 420 KB, and `max_bytes` is what bounds the process: the default
 * 256 MiB holds ≈ 630 such streams (≈ 630,000 entries).
 * An append of 1 entry ≈ 6 µs, of 256 ≈ 0.5 ms; a recover of 1000 ≈ 15 µs.
 *
 * @example
 * ```ts
 * import { MemoryStreamStore } from "./streams.ts";
 * const store = new MemoryStreamStore({
 *   size: 1000,
 *   ttlMs: 86_400_000,
 *   maxStreams: 100_000,
 *   maxBytes: 256 * 1024 * 1024,
 * });
 * const { epoch, positions } = await store.append("room:live://1", [
 *   { pushId: "p1", op: 1000, body: new TextEncoder().encode("hi") },
 * ]);
 * console.log(epoch, positions); // e.g. "3f9a0c1b2d4e" [1]
 * console.log(await store.recover("room:live://1", { epoch, pos: 0 })); // the entry at 1
 * await store.close();
 * ```
 *
 * @module
 */

import {
  ackCandidates,
  checkEntries,
  checkLimits,
  checkPushId,
  checkRange,
  checkSent,
  checkSince,
  checkStatusTtl,
  checkStreamName,
  checkTargets,
  isPushId,
  isStale,
  newEpoch,
  planRecovery,
  pushStatus,
  replayAnswer,
  type StreamHead,
  type TargetCounters,
} from "../stream_rules.ts";
import type {
  AckReport,
  Appended,
  PushStatus,
  PushStatusStore,
  Recovery,
  StreamEntry,
  StreamEntryInit,
  StreamLimits,
  StreamPosition,
  StreamRange,
  StreamStore,
} from "../streams.ts";

/** Default of {@linkcode MemoryStreamStoreOptions.maxBytes}: `streams.memory.max_bytes`'s, 256 MiB. */
export const DEFAULT_MAX_STREAM_BYTES = 256 * 1024 * 1024;

/**
 * Heap an entry takes besides its body and push id, as counted against
 * `maxBytes`: ≈ 346 B measured (module comment), rounded up.
 */
export const ENTRY_OVERHEAD_BYTES = 350;

/**
 * Heap a stream takes besides its entries and name, as counted against
 * `maxBytes`: ≈ 527 B measured with a 17-byte name (module comment).
 */
export const STREAM_OVERHEAD_BYTES = 512;

/** Options of {@linkcode MemoryStreamStore}. */
export interface MemoryStreamStoreOptions extends StreamLimits {
  /** Streams kept (`streams.memory.max_streams`); the least recently appended goes first. */
  maxStreams: number;
  /**
   * Bytes kept, as counted (`streams.memory.max_bytes`); the least recently
   * appended streams go first. Default {@linkcode DEFAULT_MAX_STREAM_BYTES}.
   */
  maxBytes?: number;
  /** Clock in ms since the epoch; tests inject a fake one. Default `Date.now`. */
  now?: () => number;
}

interface MemStream {
  epoch: string;
  top: number;
  /** Kept entries, oldest first. */
  entries: StreamEntry[];
  /** Push id → position, for every kept entry. */
  ids: Map<string, number>;
  /** Time of the last append. */
  last: number;
  /** What it counts against `maxBytes`: its overhead, name and entries. */
  bytes: number;
}

/** A {@linkcode StreamStore} in a Map (embedded mode). */
export class MemoryStreamStore implements StreamStore {
  readonly #size: number;
  readonly #ttlMs: number;
  readonly #maxStreams: number;
  readonly #maxBytes: number;
  readonly #now: () => number;
  #streams = new Map<string, MemStream>();
  /** Sum of every held stream's `bytes`. */
  #bytes = 0;
  #closed = false;

  /** Throws a RangeError for a size, TTL, stream count or byte bound below 1. */
  constructor(opts: MemoryStreamStoreOptions) {
    checkLimits(opts);
    const maxBytes = opts.maxBytes ?? DEFAULT_MAX_STREAM_BYTES;
    if (!Number.isInteger(opts.maxStreams) || opts.maxStreams < 1) {
      throw new RangeError(`maxStreams must be an integer ≥ 1, got ${opts.maxStreams}`);
    }
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
      throw new RangeError(`maxBytes must be an integer ≥ 1, got ${maxBytes}`);
    }
    this.#size = opts.size;
    this.#ttlMs = opts.ttlMs;
    this.#maxStreams = opts.maxStreams;
    this.#maxBytes = maxBytes;
    this.#now = opts.now ?? Date.now;
  }

  /** Streams held right now (expired ones not yet dropped included). */
  get streams(): number {
    return this.#streams.size;
  }

  /**
   * Bytes held right now as counted against `maxBytes` (expired streams
   * not yet dropped included): for a gauge of the embedded mode's memory.
   */
  get bytes(): number {
    return this.#bytes;
  }

  /** Positions the entries, trims to `size`, evicts past `maxStreams` or `maxBytes`. */
  append(stream: string, entries: readonly StreamEntryInit[]): Promise<Appended> {
    return this.#run(() => {
      checkStreamName(stream);
      checkEntries(entries);
      const now = this.#now();
      let s = this.#live(stream, now);
      if (entries.length === 0) return { epoch: s?.epoch ?? "", positions: [] };
      if (s) this.#streams.delete(stream);
      else {
        const bytes = STREAM_OVERHEAD_BYTES + stream.length;
        s = { epoch: newEpoch(), top: 0, entries: [], ids: new Map(), last: now, bytes };
        this.#bytes += bytes;
      }
      this.#streams.set(stream, s);
      s.last = now;
      const positions: number[] = [];
      let added = 0;
      for (const e of entries) {
        let pos = s.ids.get(e.pushId);
        if (pos === undefined) {
          pos = ++s.top;
          s.ids.set(e.pushId, pos);
          // A copy: the caller's buffer may be a view into a larger one it reuses.
          const kept: StreamEntry = {
            pushId: e.pushId,
            op: e.op,
            body: new Uint8Array(e.body),
            ack: e.ack === true,
            pos,
            time: now,
          };
          s.entries.push(kept);
          this.#count(s, entryBytes(kept));
          added++;
        }
        positions.push(pos);
      }
      this.#trim(s, s.entries.length - this.#size);
      this.#dropOld(s, now);
      if (this.#bytes > this.#maxBytes) {
        // Alone and still over: its older entries go, this append's stay.
        let n = 0;
        for (let over = this.#bytes - this.#maxBytes; over > 0 && n < s.entries.length - added;) {
          over -= entryBytes(s.entries[n++]);
        }
        this.#trim(s, n);
      }
      return { epoch: s.epoch, positions };
    });
  }

  /** The recovery rules of {@linkcode StreamStore.recover}; never creates a stream. */
  recover(stream: string, since: StreamPosition | null): Promise<Recovery> {
    return this.#run(() => {
      checkStreamName(stream);
      checkSince(since);
      const now = this.#now();
      const s = this.#live(stream, now);
      const head = s ? headOf(s) : null;
      const plan = planRecovery(head, since);
      if (typeof plan !== "number") return plan;
      const entries = s!.entries.slice(plan - head!.first);
      return replayAnswer(head!, plan, entries, now, this.#ttlMs);
    });
  }

  /** Up to `limit` entries after `after` (or the last `limit`), stale ones left out. */
  range(stream: string, opts: { after?: number; limit: number }): Promise<StreamRange> {
    return this.#run(() => {
      checkStreamName(stream);
      checkRange(opts);
      const now = this.#now();
      const s = this.#live(stream, now);
      if (!s) return { epoch: "", top: 0, entries: [] };
      const fresh = (e: StreamEntry) => !isStale(e.time, now, this.#ttlMs);
      let entries: StreamEntry[];
      if (opts.after === undefined) {
        entries = s.entries.slice(-opts.limit).filter(fresh);
      } else {
        entries = [];
        const first = headOf(s).first;
        for (let i = Math.max(opts.after + 1 - first, 0); i < s.entries.length; i++) {
          if (entries.length === opts.limit) break;
          if (fresh(s.entries[i])) entries.push(s.entries[i]);
        }
      }
      return { epoch: s.epoch, top: s.top, entries };
    });
  }

  /**
   * Drops a stream's history now (its next append starts a new epoch), as
   * a restart of the process would; whether it had any.
   */
  delete(stream: string): boolean {
    const s = this.#streams.get(stream);
    if (s) this.#drop(stream, s);
    return s !== undefined;
  }

  /** Drops everything; later calls reject. */
  close(): Promise<void> {
    this.#closed = true;
    this.#streams.clear();
    this.#bytes = 0;
    return Promise.resolve();
  }

  /** The stream if it has history at `now`; an expired one is dropped. */
  #live(stream: string, now: number): MemStream | undefined {
    const s = this.#streams.get(stream);
    if (s && isStale(s.last, now, this.#ttlMs)) {
      this.#drop(stream, s);
      return undefined;
    }
    return s;
  }

  /**
   * Drops streams from the front (least recently appended first) while
   * past `maxStreams` or `maxBytes`, or expired; never `current`, the one
   * just appended to (the last in the Map).
   */
  #dropOld(current: MemStream, now: number): void {
    for (const [name, s] of this.#streams) {
      if (s === current) break;
      const over = this.#streams.size > this.#maxStreams || this.#bytes > this.#maxBytes;
      if (!over && !isStale(s.last, now, this.#ttlMs)) break;
      this.#drop(name, s);
    }
  }

  /** Drops a stream and its bytes. */
  #drop(name: string, s: MemStream): void {
    this.#streams.delete(name);
    this.#bytes -= s.bytes;
  }

  /** Drops the `n` oldest entries of `s` (none for n ≤ 0) and their bytes. */
  #trim(s: MemStream, n: number): void {
    if (n <= 0) return;
    for (const old of s.entries.splice(0, n)) {
      s.ids.delete(old.pushId);
      this.#count(s, -entryBytes(old));
    }
  }

  /** Adds `bytes` (negative: removes) to a stream's count and the store's. */
  #count(s: MemStream, bytes: number): void {
    s.bytes += bytes;
    this.#bytes += bytes;
  }

  #run<T>(f: () => T): Promise<T> {
    return settle(this.#closed, "memory stream store", f);
  }
}

/** `f`'s result or throw as a promise; a rejection once the store is closed. */
function settle<T>(closed: boolean, store: string, f: () => T): Promise<T> {
  if (closed) return Promise.reject(new Error(`${store}: closed`));
  try {
    return Promise.resolve(f());
  } catch (e) {
    return Promise.reject(e);
  }
}

/** What an entry counts against `maxBytes` (push ids are ASCII: one byte a character). */
function entryBytes(e: StreamEntry): number {
  return ENTRY_OVERHEAD_BYTES + e.pushId.length + e.body.byteLength;
}

function headOf(s: MemStream): StreamHead {
  return { epoch: s.epoch, top: s.top, first: s.top - s.entries.length + 1 };
}

/** Default of {@linkcode MemoryPushStatusOptions.maxTargets}. */
export const DEFAULT_MAX_STATUS_TARGETS = 1_000_000;

/** Options of {@linkcode MemoryPushStatusStore}. */
export interface MemoryPushStatusOptions {
  /** How long a record is kept after its creation (`streams.status.ttl`). */
  ttlMs: number;
  /**
   * Targets kept over all records (about 150 B each); past it the oldest
   * records are dropped. Default {@linkcode DEFAULT_MAX_STATUS_TARGETS}.
   */
  maxTargets?: number;
  /** Clock in ms since the epoch; tests inject a fake one. Default `Date.now`. */
  now?: () => number;
}

interface StatusRecord {
  created: number;
  /** Target → its counters, in creation order. */
  targets: Map<string, TargetCounters>;
  /** Keys that acked this push (each counts once). */
  keys: Set<string>;
}

/** A {@linkcode PushStatusStore} in a Map (embedded mode). */
export class MemoryPushStatusStore implements PushStatusStore {
  readonly #ttlMs: number;
  readonly #maxTargets: number;
  readonly #now: () => number;
  #records = new Map<string, StatusRecord>();
  #targets = 0;
  #closed = false;

  /** Throws a RangeError for a TTL or target bound below 1. */
  constructor(opts: MemoryPushStatusOptions) {
    checkStatusTtl(opts.ttlMs);
    const max = opts.maxTargets ?? DEFAULT_MAX_STATUS_TARGETS;
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(`maxTargets must be an integer ≥ 1, got ${max}`);
    }
    this.#ttlMs = opts.ttlMs;
    this.#maxTargets = max;
    this.#now = opts.now ?? Date.now;
  }

  /** Records held right now (expired ones not yet dropped included). */
  get records(): number {
    return this.#records.size;
  }

  /** Records the push, all targets pending; replaces an earlier record of the same id. */
  create(id: string, targets: readonly string[]): Promise<void> {
    return this.#run(() => {
      checkPushId(id);
      const unique = checkTargets(targets);
      const now = this.#now();
      this.#drop(id);
      this.#records.set(id, {
        created: now,
        targets: new Map(unique.map((target) => [target, { target, sent: -1, acked: 0 }])),
        keys: new Set(),
      });
      this.#targets += unique.length;
      for (const [old, r] of this.#records) {
        const full = this.#targets > this.#maxTargets && old !== id;
        if (!full && !isStale(r.created, now, this.#ttlMs)) break;
        this.#drop(old);
      }
    });
  }

  /** Adds `sent` to the target's connections; unknown ids and targets are ignored. */
  delivered(id: string, target: string, sent: number): Promise<void> {
    return this.#run(() => {
      checkSent(sent);
      const t = this.#live(id)?.targets.get(target);
      if (t) t.sent = Math.max(t.sent, 0) + sent;
    });
  }

  /** Counts each ack for its key's or its mid's target, once per key. */
  acked(acks: readonly AckReport[]): Promise<void> {
    return this.#run(() => {
      for (const ack of acks) {
        if (!isPushId(ack.pushId)) continue;
        const r = this.#live(ack.pushId);
        if (!r || r.keys.has(ack.key)) continue;
        const [byKey, byMid] = ackCandidates(ack);
        const t = r.targets.get(byKey) ?? r.targets.get(byMid);
        if (!t) continue;
        r.keys.add(ack.key);
        t.acked++;
      }
    });
  }

  /** The push's status, or null. */
  get(id: string): Promise<PushStatus | null> {
    return this.#run(() => {
      const r = this.#live(id);
      return r ? pushStatus(id, r.created, [...r.targets.values()]) : null;
    });
  }

  /** Drops everything; later calls reject. */
  close(): Promise<void> {
    this.#closed = true;
    this.#records.clear();
    this.#targets = 0;
    return Promise.resolve();
  }

  #live(id: string): StatusRecord | undefined {
    const r = this.#records.get(id);
    if (r && isStale(r.created, this.#now(), this.#ttlMs)) {
      this.#drop(id);
      return undefined;
    }
    return r;
  }

  #drop(id: string): void {
    const r = this.#records.get(id);
    if (!r) return;
    this.#records.delete(id);
    this.#targets -= r.targets.size;
  }

  #run<T>(f: () => T): Promise<T> {
    return settle(this.#closed, "memory push status store", f);
  }
}

/**
 * In-process {@linkcode Registry} for embedded mode (comet, logic and job in
 * one process).
 *
 * Each record carries its own expiry (`ttlMs` of its last `register`).
 * Expired records are never listed; `list()` drops the ones it meets and
 * {@linkcode MemoryRegistry.sweep} drops the rest on demand, so memory holds
 * live comets only (a handful of small objects). There is no timer: the
 * record count is tiny and `list()` runs often.
 *
 * @example
 * ```ts
 * import { MemoryRegistry } from "./registry.ts";
 * const reg = new MemoryRegistry();
 * await reg.register({
 *   id: "comet-1", grpcAddr: "127.0.0.1:3109", addrs: ["127.0.0.1"],
 *   tcpPort: 3101, wsPort: 3102, wssPort: 0, weight: 10, connections: 0, ips: 0,
 * }, 10_000);
 * console.log((await reg.list()).map((c) => c.id)); // ["comet-1"]
 * await reg.close();
 * ```
 *
 * @module
 */

import type { CometRecord, Registry } from "../registry.ts";

/** Options of {@linkcode MemoryRegistry}. */
export interface MemoryRegistryOptions {
  /** Clock in ms since the epoch (sets `updated`, decides expiry); default `Date.now`. */
  now?: () => number;
}

interface Entry {
  record: CometRecord;
  expiresAt: number;
}

/** A {@linkcode Registry} in a Map. After `close()` every method rejects. */
export class MemoryRegistry implements Registry {
  #now: () => number;
  #records = new Map<string, Entry>();
  #closed = false;

  /** Creates an empty registry. */
  constructor(opts: MemoryRegistryOptions = {}) {
    this.#now = opts.now ?? Date.now;
  }

  /** Stores a copy with `updated` = now; it expires `ttlMs` later unless registered again. */
  register(record: Omit<CometRecord, "updated">, ttlMs: number): Promise<void> {
    return this.#run(() => {
      if (!(ttlMs > 0)) throw new RangeError(`ttlMs must be > 0, got ${ttlMs}`);
      const now = this.#now();
      // A copy, so the caller's object (and its addrs array) can change without touching ours.
      const copy: CometRecord = { ...record, addrs: [...record.addrs], updated: now };
      this.#records.set(record.id, { record: copy, expiresAt: now + ttlMs });
    });
  }

  /** Forgets the record at once. */
  deregister(id: string): Promise<void> {
    return this.#run(() => void this.#records.delete(id));
  }

  /** Live records (copies), ordered by id; drops expired ones on the way. */
  list(): Promise<CometRecord[]> {
    return this.#run(() => {
      this.sweep();
      return [...this.#records.values()]
        .map((e) => ({ ...e.record, addrs: [...e.record.addrs] }))
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    });
  }

  /** Drops expired records now; returns how many. */
  sweep(): number {
    const now = this.#now();
    let n = 0;
    for (const [id, e] of this.#records) {
      if (e.expiresAt <= now) {
        this.#records.delete(id);
        n++;
      }
    }
    return n;
  }

  /** Forgets every record; later calls reject. */
  close(): Promise<void> {
    this.#closed = true;
    this.#records.clear();
    return Promise.resolve();
  }

  #run<T>(f: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new Error("memory registry is closed"));
    try {
      return Promise.resolve(f());
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

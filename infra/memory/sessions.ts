/**
 * In-process {@linkcode SessionStore} for embedded mode (one logic).
 *
 * Same data model and semantics as the Redis engine (and goim's logic dao):
 * a route per key (`key_<key>` → server) with its own expiry, and one
 * key → server set per mid (`mid_<mid>`) whose expiry is shared by all of
 * its keys and renewed whenever any of them is added or renewed. So, as in
 * goim, a key of a mid can outlive its own route in the mid's set while
 * another key of that mid keeps heartbeating; pushing to it is harmless
 * (the comet no longer has it).
 *
 * Expiry is by timestamp: an expired entry is never returned and is dropped
 * when read, and {@linkcode MemorySessionStore.sweep} (run every
 * `sweepIntervalMs` by an unref'd timer, so it never keeps the process
 * alive) drops the ones nobody reads. Memory therefore grows with live
 * routes only: about 150 B per route (two keys per mid) plus the key
 * strings. A sweep walks every entry, about 50 ms per 1.5 M live entries on
 * this project's 2-core machine (200 ms when it drops them all), which is
 * why it runs only once a minute by default.
 *
 * @example
 * ```ts
 * import { MemorySessionStore } from "./sessions.ts";
 * const store = new MemorySessionStore({ ttlMs: 60_000 });
 * await store.addMapping(42, "key-a", "comet-1");
 * console.log(await store.serversByKeys(["key-a", "nope"])); // ["comet-1", null]
 * console.log(await store.keysByMids([42])); // Map { "key-a" => "comet-1" }
 * await store.close();
 * ```
 *
 * @module
 */

import type { ServerOnline, SessionStore } from "../sessions.ts";

/** goim's Redis `expire` (cmd/logic/logic-example.toml): a route lives 30 min unless renewed. */
export const DEFAULT_ROUTE_TTL_MS = 30 * 60_000;

/** Default interval of the background sweep of {@linkcode MemorySessionStore}. */
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;

/** Options of {@linkcode MemorySessionStore}. */
export interface MemorySessionStoreOptions {
  /**
   * Lifetime of a route (and of a mid's key set, and of a comet's online
   * report) not renewed since; default {@linkcode DEFAULT_ROUTE_TTL_MS}.
   */
  ttlMs?: number;
  /** Clock in ms since the epoch; tests inject a fake one. Default `Date.now`. */
  now?: () => number;
  /** Period of the background sweep; 0 turns it off (call `sweep()` yourself). Default 60 s. */
  sweepIntervalMs?: number;
}

interface Route {
  server: string;
  expiresAt: number;
}

interface MidKeys {
  keys: Map<string, string>;
  expiresAt: number;
}

interface OnlineEntry {
  online: ServerOnline;
  expiresAt: number;
}

/**
 * A {@linkcode SessionStore} in a few Maps. Operations are synchronous under
 * the hood, hence atomic; they return promises only to fit the interface.
 * After {@linkcode MemorySessionStore.close} every method rejects.
 */
export class MemorySessionStore implements SessionStore {
  /** The route TTL in use. */
  readonly ttlMs: number;
  #now: () => number;
  #keys = new Map<string, Route>();
  #mids = new Map<number, MidKeys>();
  #online = new Map<string, OnlineEntry>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  /** Creates an empty store; starts the sweep timer unless `sweepIntervalMs` is 0. */
  constructor(opts: MemorySessionStoreOptions = {}) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_ROUTE_TTL_MS;
    if (!(this.ttlMs > 0)) throw new RangeError(`ttlMs must be > 0, got ${opts.ttlMs}`);
    this.#now = opts.now ?? Date.now;
    const every = opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    if (every > 0) {
      const timer = setInterval(() => this.sweep(), every);
      // A sweep is housekeeping: it must never be what keeps the process alive.
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  /** Number of live-or-not-yet-swept routes, mids and online reports (for metrics and tests). */
  get size(): { keys: number; mids: number; online: number } {
    return { keys: this.#keys.size, mids: this.#mids.size, online: this.#online.size };
  }

  /** Routes `key` (and `mid`'s set when mid > 0) to `server`; renews both TTLs. */
  addMapping(mid: number, key: string, server: string): Promise<void> {
    return this.#run(() => {
      const expiresAt = this.#now() + this.ttlMs;
      if (mid > 0) {
        const m = this.#liveMid(mid);
        if (m) {
          m.keys.set(key, server);
          m.expiresAt = expiresAt;
        } else {
          this.#mids.set(mid, { keys: new Map([[key, server]]), expiresAt });
        }
      }
      this.#keys.set(key, { server, expiresAt });
    });
  }

  /** Renews the TTLs; true only if the key route and (mid > 0) its entry in the mid's set are live. */
  expireMapping(mid: number, key: string): Promise<boolean> {
    return this.#run(() => {
      const expiresAt = this.#now() + this.ttlMs;
      let midHasKey = true;
      if (mid > 0) {
        const m = this.#liveMid(mid);
        if (m) m.expiresAt = expiresAt;
        midHasKey = m?.keys.has(key) ?? false;
      }
      const r = this.#liveKey(key);
      if (r) r.expiresAt = expiresAt;
      // Missing in either place means the caller must re-add, or pushes by mid would miss it.
      return r !== undefined && midHasKey;
    });
  }

  /** Compare-and-delete of each half: removes the key route and the mid's entry only where they still name `server`. */
  delMapping(mid: number, key: string, server: string): Promise<boolean> {
    return this.#run(() => {
      let removed = false;
      if (this.#liveKey(key)?.server === server) {
        this.#keys.delete(key);
        removed = true;
      }
      if (mid > 0) {
        const m = this.#liveMid(mid);
        if (m?.keys.get(key) === server) {
          m.keys.delete(key);
          // Redis drops an empty hash; do the same so both engines agree.
          if (m.keys.size === 0) this.#mids.delete(mid);
          removed = true;
        }
      }
      return removed;
    });
  }

  /** The server of each key or null, in order. */
  serversByKeys(keys: readonly string[]): Promise<(string | null)[]> {
    return this.#run(() => keys.map((k) => this.#liveKey(k)?.server ?? null));
  }

  /**
   * The live key sets of `mids`, merged; a key whose own route expired
   * (a device that stopped beating while another renewed the set) is left
   * out and dropped from the set.
   */
  keysByMids(mids: readonly number[]): Promise<Map<string, string>> {
    return this.#run(() => {
      const out = new Map<string, string>();
      for (const mid of mids) {
        const m = this.#liveMid(mid);
        if (!m) continue;
        for (const k of m.keys.keys()) {
          const route = this.#liveKey(k)?.server;
          if (route === undefined) m.keys.delete(k);
          else out.set(k, route);
        }
      }
      return out;
    });
  }

  /** Stores a copy of the report, replacing the previous one; it expires after the route TTL. */
  addServerOnline(online: ServerOnline): Promise<void> {
    return this.#run(() => {
      // A copy, so a caller mutating its object later cannot change the stored report.
      const copy = { ...online, roomCount: { ...online.roomCount } };
      this.#online.set(online.server, { online: copy, expiresAt: this.#now() + this.ttlMs });
    });
  }

  /** A copy of the last live report, or null. */
  serverOnline(server: string): Promise<ServerOnline | null> {
    return this.#run(() => {
      const e = this.#online.get(server);
      if (!e) return null;
      if (e.expiresAt <= this.#now()) {
        this.#online.delete(server);
        return null;
      }
      return { ...e.online, roomCount: { ...e.online.roomCount } };
    });
  }

  /** Forgets the report. */
  delServerOnline(server: string): Promise<void> {
    return this.#run(() => void this.#online.delete(server));
  }

  /** Drops every expired entry now; returns how many were dropped. */
  sweep(): number {
    const now = this.#now();
    let n = 0;
    for (const map of [this.#keys, this.#mids, this.#online] as Map<unknown, Route>[]) {
      for (const [k, v] of map) {
        if (v.expiresAt <= now) {
          map.delete(k);
          n++;
        }
      }
    }
    return n;
  }

  /** Stops the sweep timer and drops everything; later calls reject. */
  close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#keys.clear();
    this.#mids.clear();
    this.#online.clear();
    return Promise.resolve();
  }

  #run<T>(f: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new Error("memory session store is closed"));
    try {
      return Promise.resolve(f());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #liveKey(key: string): Route | undefined {
    const r = this.#keys.get(key);
    if (r && r.expiresAt <= this.#now()) {
      this.#keys.delete(key);
      return undefined;
    }
    return r;
  }

  #liveMid(mid: number): MidKeys | undefined {
    const m = this.#mids.get(mid);
    if (m && m.expiresAt <= this.#now()) {
      this.#mids.delete(mid);
      return undefined;
    }
    return m;
  }
}

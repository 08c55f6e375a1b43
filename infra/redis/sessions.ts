/**
 * {@linkcode SessionStore} on Redis, shared by every logic process.
 *
 * Key layout (after the optional `keyPrefix`), as in goim's logic dao:
 *
 * | key                 | type   | content                       | TTL                 |
 * | ------------------- | ------ | ----------------------------- | ------------------- |
 * | `mid_<mid>`         | hash   | key → server, for mid > 0     | route TTL, whole set |
 * | `key_<key>`         | string | server                        | route TTL           |
 * | `ol_<server>`       | string | JSON {@linkcode ServerOnline} | route TTL           |
 *
 * `ol_<server>` differs from goim, which splits a comet's rooms over 64
 * hash fields by CityHash32(room) % 64: one JSON value replaces the whole
 * report at once (no stale rooms left in untouched fields) and reads in one
 * GET. TTLs are set in milliseconds (PX/PEXPIRE), goim uses seconds.
 *
 * Writes that touch two keys are atomic: addMapping is one MULTI/EXEC;
 * delMapping is a Lua compare-and-delete, so a late Disconnect from an old
 * comet cannot remove a route that a reconnect already moved elsewhere.
 *
 * @example
 * ```ts ignore
 * import { RedisSessionStore } from "./sessions.ts";
 * const store = await RedisSessionStore.connect({ url: "redis://127.0.0.1:6379", routeTtlMs: 1_800_000 });
 * await store.addMapping(42, "key-a", "comet-1");
 * console.log(await store.keysByMids([42])); // Map { "key-a" => "comet-1" }
 * await store.close();
 * ```
 *
 * @module
 */

import { DEFAULT_ROUTE_TTL_MS } from "../memory/sessions.ts";
import type { ServerOnline, SessionStore } from "../sessions.ts";
import {
  LuaScript,
  RedisConnection,
  type RedisConnectionOptions,
  RedisEngineError,
} from "./client.ts";

/** Options of {@linkcode RedisSessionStore.connect}. */
export interface RedisSessionStoreOptions extends RedisConnectionOptions {
  /**
   * Lifetime of a route, a mid's key set and an online report when not
   * renewed (config `logic.route_ttl`); default 30 min as goim.
   */
  routeTtlMs?: number;
}

// KEYS[1] = key_<key>, KEYS[2] = mid_<mid> (absent when mid <= 0); ARGV[1] = server, ARGV[2] = key.
// Both halves compare before deleting: a reconnect may have moved either to another comet.
const DEL_MAPPING = new LuaScript(`
local removed = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  removed = 1
end
if #KEYS > 1 and redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
  removed = 1
end
return removed
`);

/** A {@linkcode SessionStore} on one Redis connection. After `close()` every method rejects. */
export class RedisSessionStore implements SessionStore {
  /** The route TTL in use. */
  readonly ttlMs: number;
  #conn: RedisConnection;
  #prefix: string;

  private constructor(conn: RedisConnection, ttlMs: number) {
    this.#conn = conn;
    this.#prefix = conn.keyPrefix;
    this.ttlMs = ttlMs;
  }

  /**
   * Connects to Redis; rejects with a `RedisEngineError` when Redis cannot
   * be reached within `commandTimeoutMs`.
   */
  static async connect(opts: RedisSessionStoreOptions): Promise<RedisSessionStore> {
    const ttl = opts.routeTtlMs ?? DEFAULT_ROUTE_TTL_MS;
    if (!(ttl >= 1)) throw new RangeError(`routeTtlMs must be >= 1, got ${opts.routeTtlMs}`);
    return new RedisSessionStore(await RedisConnection.connect(opts), Math.round(ttl));
  }

  /** Whether the Redis connection is up right now (for health checks). */
  get ready(): boolean {
    return this.#conn.ready;
  }

  /** HSET + PEXPIRE `mid_<mid>` (mid > 0) and SET PX `key_<key>`, in one MULTI. */
  async addMapping(mid: number, key: string, server: string): Promise<void> {
    await this.#conn.multi("addMapping", (tx) => {
      if (mid > 0) {
        const mk = this.#midKey(mid);
        tx.hset(mk, key, server).pexpire(mk, this.ttlMs);
      }
      tx.set(this.#keyKey(key), server, "PX", this.ttlMs);
    });
  }

  /** PEXPIRE both keys (+ HEXISTS) in one pipeline; true only if the route and its mid entry exist. */
  async expireMapping(mid: number, key: string): Promise<boolean> {
    const replies = await this.#conn.pipeline("expireMapping", (p) => {
      if (mid > 0) {
        const mk = this.#midKey(mid);
        p.pexpire(mk, this.ttlMs).hexists(mk, key);
      }
      p.pexpire(this.#keyKey(key), this.ttlMs);
    });
    const routeAlive = replies[replies.length - 1] === 1;
    const inMidSet = mid > 0 ? replies[1] === 1 : true;
    // Missing in either place means the caller must re-add, or pushes by mid would miss it.
    return routeAlive && inMidSet;
  }

  /** Lua compare-and-delete of `key_<key>` and the `mid_<mid>` field, each only if it still names `server`. */
  async delMapping(mid: number, key: string, server: string): Promise<boolean> {
    const keys = mid > 0 ? [this.#keyKey(key), this.#midKey(mid)] : [this.#keyKey(key)];
    return (await this.#conn.eval("delMapping", DEL_MAPPING, keys, [server, key])) === 1;
  }

  /** One MGET; null for missing keys, in order. */
  async serversByKeys(keys: readonly string[]): Promise<(string | null)[]> {
    if (keys.length === 0) return [];
    return await this.#conn.call("serversByKeys", (c) => c.mget(keys.map((k) => this.#keyKey(k))));
  }

  /** Pipelined HGETALL of every `mid_<mid>`, merged. */
  async keysByMids(mids: readonly number[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (mids.length === 0) return out;
    const replies = await this.#conn.pipeline("keysByMids", (p) => {
      for (const mid of mids) p.hgetall(this.#midKey(mid));
    });
    for (const r of replies as Record<string, string>[]) {
      for (const k in r) out.set(k, r[k]);
    }
    return out;
  }

  /** SET PX `ol_<server>` to the report as JSON (replaces the whole report). */
  async addServerOnline(online: ServerOnline): Promise<void> {
    const json = JSON.stringify({
      server: online.server,
      roomCount: online.roomCount,
      updated: online.updated,
    });
    await this.#conn.call(
      "addServerOnline",
      (c) => c.set(this.#olKey(online.server), json, "PX", this.ttlMs),
    );
  }

  /** GET `ol_<server>`, parsed; null when absent or expired. */
  async serverOnline(server: string): Promise<ServerOnline | null> {
    const json = await this.#conn.call("serverOnline", (c) => c.get(this.#olKey(server)));
    if (json === null) return null;
    try {
      const v = JSON.parse(json) as ServerOnline;
      return { server: v.server, roomCount: v.roomCount ?? {}, updated: v.updated };
    } catch (err) {
      throw new RedisEngineError(`redis: ${this.#olKey(server)} is not a ServerOnline JSON`, {
        cause: err,
      });
    }
  }

  /** DEL `ol_<server>`. */
  async delServerOnline(server: string): Promise<void> {
    await this.#conn.call("delServerOnline", (c) => c.del(this.#olKey(server)));
  }

  /** Closes the connection (bounded; never hangs on a dead Redis). */
  close(): Promise<void> {
    return this.#conn.close();
  }

  #midKey(mid: number): string {
    return `${this.#prefix}mid_${mid}`;
  }

  #keyKey(key: string): string {
    return `${this.#prefix}key_${key}`;
  }

  #olKey(server: string): string {
    return `${this.#prefix}ol_${server}`;
  }
}

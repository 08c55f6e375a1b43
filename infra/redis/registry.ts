/**
 * {@linkcode Registry} on Redis, shared by every comet, logic and job.
 *
 * goim keeps comets in bilibili/discovery, not Redis, so this layout is our
 * own (after the optional `keyPrefix`):
 *
 * | key            | type   | content                                   | TTL           |
 * | -------------- | ------ | ----------------------------------------- | ------------- |
 * | `comet_<id>`   | string | JSON record without `updated`             | `ttlMs` (PX)  |
 * | `comets`       | zset   | member id, score = `updated` (ms)         | none          |
 *
 * The per-comet key's PX TTL is the truth about liveness; the zset is only
 * an index so `list()` needs no SCAN. `list()` is one Lua script that reads
 * every indexed record and removes members whose record has expired, so a
 * comet re-registering concurrently is never pruned by mistake.
 *
 * `updated` comes from Redis `TIME` inside the register script: one clock
 * for all hosts, so a refresh never moves `updated` backwards even when
 * comets' clocks disagree.
 *
 * The scripts touch keys they compute from the index, so every key of the
 * registry must live in one hash slot. On a Redis Cluster
 * (`redis.cluster.nodes`) the names carry the hash tag `{comets}`: the
 * index is `{comets}` and a record `{comets}comet_<id>` (after the prefix),
 * so the scripts and the MULTI run as on one Redis, on the master of that
 * slot. On a single Redis the names stay as above (no tag), so a cluster of
 * this version and an older one on one Redis keep finding each other.
 *
 * @example
 * ```ts
 * import { RedisRegistry } from "./registry.ts";
 * const reg = await RedisRegistry.connect({ url: "redis://127.0.0.1:6379" });
 * await reg.register({
 *   id: "comet-1", grpcAddr: "10.0.0.5:3109", addrs: ["10.0.0.5"],
 *   tcpPort: 3101, wsPort: 3102, wssPort: 0, weight: 10, connections: 0, ips: 0,
 * }, 10_000);
 * console.log(await reg.list());
 * await reg.close();
 * ```
 *
 * @module
 */

import type { CometRecord, Registry } from "../registry.ts";
import {
  LuaScript,
  RedisConnection,
  type RedisConnectionOptions,
  RedisEngineError,
} from "./client.ts";

/** The hash tag of every registry key on a Redis Cluster: one slot for the index and the records. */
export const CLUSTER_TAG = "{comets}";

/** Options of {@linkcode RedisRegistry.connect}. */
export type RedisRegistryOptions = RedisConnectionOptions;

// KEYS[1] = comets, KEYS[2] = comet_<id>; ARGV[1] = id, ARGV[2] = JSON, ARGV[3] = ttl ms.
const REGISTER = new LuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
return now
`);

// KEYS[1] = comets; ARGV[1] = prefix of comet keys. Returns id, updated, JSON triples.
const LIST = new LuaScript(`
local ids = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #ids, 2 do
  local v = redis.call('GET', ARGV[1] .. ids[i])
  if v then
    out[#out + 1] = ids[i]
    out[#out + 1] = ids[i + 1]
    out[#out + 1] = v
  else
    redis.call('ZREM', KEYS[1], ids[i])
  end
end
return out
`);

/** A {@linkcode Registry} on one Redis connection. After `close()` every method rejects. */
export class RedisRegistry implements Registry {
  #conn: RedisConnection;
  /** The key prefix, plus the hash tag `{comets}` on a cluster. */
  #prefix: string;

  private constructor(conn: RedisConnection) {
    this.#conn = conn;
    this.#prefix = conn.keyPrefix + (conn.cluster ? CLUSTER_TAG : "");
  }

  /**
   * Connects to Redis; rejects with a `RedisEngineError` when Redis cannot
   * be reached within `commandTimeoutMs`.
   */
  static async connect(opts: RedisRegistryOptions): Promise<RedisRegistry> {
    return new RedisRegistry(await RedisConnection.connect(opts));
  }

  /** Whether the Redis connection is up right now (for health checks). */
  get ready(): boolean {
    return this.#conn.ready;
  }

  /** Lua: SET PX `comet_<id>` and ZADD `comets` with `updated` = Redis TIME (ms). */
  async register(record: Omit<CometRecord, "updated">, ttlMs: number): Promise<void> {
    if (!(ttlMs >= 1)) throw new RangeError(`ttlMs must be >= 1, got ${ttlMs}`);
    const { id, grpcAddr, addrs, tcpPort, wsPort, wssPort, weight, connections, ips } = record;
    // region and zone only when set (JSON.stringify drops undefined): a record
    // without them reads back as it was written, by this version and older ones.
    const json = JSON.stringify({
      id,
      grpcAddr,
      addrs,
      tcpPort,
      wsPort,
      wssPort,
      weight,
      connections,
      ips,
      region: record.region || undefined,
      zone: record.zone || undefined,
      // Likewise state: only "draining" is written, so "up" records stay as before.
      state: record.state === "draining" ? "draining" : undefined,
    });
    await this.#conn.eval("register", REGISTER, [this.#index(), this.#cometKey(id)], [
      id,
      json,
      Math.round(ttlMs),
    ]);
  }

  /** DEL `comet_<id>` and ZREM it from `comets`, in one MULTI. */
  async deregister(id: string): Promise<void> {
    await this.#conn.multi("deregister", (tx) => {
      tx.del(this.#cometKey(id)).zrem(this.#index(), id);
    });
  }

  /** Lua: every live record with its `updated`, pruning index members whose record expired; ordered by id. */
  async list(): Promise<CometRecord[]> {
    const flat = await this.#conn.eval("list", LIST, [this.#index()], [this.#cometKey("")]);
    const rows = flat as string[];
    const out: CometRecord[] = [];
    for (let i = 0; i < rows.length; i += 3) {
      let rec: Omit<CometRecord, "updated">;
      try {
        rec = JSON.parse(rows[i + 2]);
      } catch (err) {
        throw new RedisEngineError(`redis: ${this.#cometKey(rows[i])} is not a comet record JSON`, {
          cause: err,
        });
      }
      out.push({ ...rec, id: rows[i], updated: Number(rows[i + 1]) });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Closes the connection (bounded; never hangs on a dead Redis). */
  close(): Promise<void> {
    return this.#conn.close();
  }

  #index(): string {
    // On a cluster the tag is the index's whole name: `{comets}`, not `{comets}comets`.
    return this.#conn.cluster ? this.#prefix : `${this.#prefix}comets`;
  }

  #cometKey(id: string): string {
    return `${this.#prefix}comet_${id}`;
  }
}

/**
 * {@linkcode SessionStore} on Redis, shared by every logic process.
 *
 * Key layout (after the optional `keyPrefix`), as in goim's logic dao:
 *
 * | key                 | type   | content                          | TTL                  |
 * | ------------------- | ------ | -------------------------------- | -------------------- |
 * | `mid_<mid>`         | hash   | key → server, for mid > 0        | route TTL, whole set |
 * | `key_<key>`         | string | server                           | route TTL            |
 * | `ol_<server>`       | hash   | field → JSON, goim's online form | route TTL            |
 *
 * `ol_<server>` is goim's format, byte for byte where it matters, so goim's
 * logic and this one read each other's reports during a migration: a
 * comet's rooms are split over the fields `"0"`..`"63"`, a room going to
 * the decimal of `CityHash32(utf8(room)) % 64` (infra/cityhash.ts), each
 * field holding `{"server":…,"room_count":{room:count,…},"updated":<unix
 * seconds>}` for its rooms, encoded as Go's `json.Marshal` does (keys
 * sorted, `<>&` escaped). A reader merges the fields and takes the newest
 * `updated`. Two choices of ours, both readable by goim:
 *
 * - a write replaces the whole report (DEL + HSET of every field + PEXPIRE
 *   in one MULTI). goim only HSETs the fields it has rooms for, so a field
 *   whose rooms all left keeps its old counts for as long as the comet
 *   keeps reporting; here nothing is left behind, and a string `ol_<server>`
 *   of an older version of this project is replaced instead of failing
 *   with WRONGTYPE;
 * - a report without rooms is field `"0"` with `"room_count":{}`, so it
 *   still carries its time (goim writes nothing, which reads as no report).
 *
 * Reading takes fields 0..63 only, as goim does, in one Lua script bounded
 * by {@linkcode ONLINE_REPORT_MAX_BYTES}; a key of the wrong type, a field
 * that is not goim's JSON or a report over the bound rejects with
 * {@linkcode UnreadableOnlineError}. TTLs are set in milliseconds
 * (PX/PEXPIRE), goim uses seconds.
 *
 * Writes that touch two keys are atomic: addMapping is one MULTI/EXEC;
 * delMapping is a Lua compare-and-delete, so a late Disconnect from an old
 * comet cannot remove a route that a reconnect already moved elsewhere.
 *
 * On a Redis Cluster (`redis.cluster.nodes`) the key names stay goim's (no
 * hash tags: a key's route is looked up by key alone, so `key_<key>` and
 * `mid_<mid>` cannot share a slot), and what spans keys is sent per key:
 * addMapping is a MULTI on `mid_<mid>` (HSET + PEXPIRE) next to a SET PX of
 * `key_<key>`, not atomic together (goim's own pipeline is not either; a
 * failure of either half rejects, and the comet's next heartbeat re-adds);
 * delMapping is one compare-and-delete script per key (each half compared
 * on its own, as the single script does); MGET becomes one GET per key and
 * the pipelines single commands, each redirected on its own during a slot
 * migration (infra/redis/client.ts says why they are not pipelined).
 * `ol_<server>` is one key: its MULTI and script run as they are.
 *
 * @example
 * ```ts
 * import { RedisSessionStore } from "./sessions.ts";
 * const store = await RedisSessionStore.connect({ url: "redis://127.0.0.1:6379", routeTtlMs: 1_800_000 });
 * await store.addMapping(42, "key-a", "comet-1");
 * console.log(await store.keysByMids([42])); // Map { "key-a" => "comet-1" }
 * await store.close();
 * ```
 *
 * @module
 */

import { cityHash32 } from "../cityhash.ts";
import { DEFAULT_ROUTE_TTL_MS } from "../memory/sessions.ts";
import { type ServerOnline, type SessionStore, UnreadableOnlineError } from "../sessions.ts";
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
  /**
   * Bound on one stored online report, all fields' JSON together; default
   * {@linkcode ONLINE_REPORT_MAX_BYTES}. Tests lower it.
   */
  onlineReportMaxBytes?: number;
}

/**
 * Default bound on one comet's stored `ol_<server>` report, its 64 fields'
 * JSON together: 16 MiB, about 500 000 rooms with 20-byte names. A larger
 * report is refused when written and is unreadable when read, so a broken
 * or hostile writer cannot make logic load an unbounded value.
 */
export const ONLINE_REPORT_MAX_BYTES = 16 * 1024 * 1024;

/** goim's number of `ol_<server>` fields: a room goes to `CityHash32(room) % 64`. */
const ONLINE_FIELDS = 64;

/** goim's `room_count` is a `map[string]int32`: larger counts fail its JSON decoding. */
const INT32_MAX = 2 ** 31 - 1;

// KEYS[1] = ol_<server>; ARGV[1] = the byte bound. Reads fields 0..63 as goim does (other
// fields are not goim's and are left alone), measuring them first with HSTRLEN so an
// oversized value is never copied out of Redis. Replies: nil when absent, {'type', t}
// for a key that is not a hash, {'size', n} over the bound, else {'ok', f0, ..., f63}
// with nil for a missing field.
const READ_ONLINE = new LuaScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return false end
if t ~= 'hash' then return {'type', t} end
local total = 0
for i = 0, ${ONLINE_FIELDS - 1} do
  total = total + redis.call('HSTRLEN', KEYS[1], tostring(i))
end
if total > tonumber(ARGV[1]) then return {'size', tostring(total)} end
local out = {'ok'}
for i = 0, ${ONLINE_FIELDS - 1} do
  out[i + 2] = redis.call('HGET', KEYS[1], tostring(i))
end
return out
`);

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

// keysByMids on a single node, one round trip: each mid's fields whose
// key_<key> route is live, with the route's server; dead fields removed.
// KEYS = mid_<mid>…; ARGV[1] = the key_ prefix. Reads routes outside KEYS,
// which only a single node allows (a cluster takes two round trips).
const LIVE_KEYS_OF_MIDS = new LuaScript(`
local out = {}
for i = 1, #KEYS do
  local fields = redis.call('HKEYS', KEYS[i])
  for _, k in ipairs(fields) do
    local server = redis.call('GET', ARGV[1] .. k)
    if server then
      out[#out + 1] = k
      out[#out + 1] = server
    else
      redis.call('HDEL', KEYS[i], k)
    end
  end
end
return out
`);

// Cluster mode: the two halves of DEL_MAPPING, each on one key (one slot).
// KEYS[1] = key_<key>; ARGV[1] = server.
const DEL_ROUTE = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);
// KEYS[1] = mid_<mid>; ARGV[1] = server, ARGV[2] = key.
const DEL_MID_ENTRY = new LuaScript(`
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then return redis.call('HDEL', KEYS[1], ARGV[2]) end
return 0
`);

/** A {@linkcode SessionStore} on one Redis connection. After `close()` every method rejects. */
export class RedisSessionStore implements SessionStore {
  /** The route TTL in use. */
  readonly ttlMs: number;
  /**
   * The connection, on a single Redis (see {@linkcode SessionStore.orderedVia}:
   * `keysByMids` is one EVALSHA, sent before it returns); unset on a cluster.
   * infra/engines.ts opens the stream stores on it.
   */
  readonly orderedVia?: RedisConnection;
  #conn: RedisConnection;
  #prefix: string;
  #onlineMaxBytes: number;

  private constructor(conn: RedisConnection, ttlMs: number, onlineMaxBytes: number) {
    this.#conn = conn;
    if (!conn.cluster) this.orderedVia = conn;
    this.#prefix = conn.keyPrefix;
    this.ttlMs = ttlMs;
    this.#onlineMaxBytes = onlineMaxBytes;
  }

  /**
   * Connects to Redis; rejects with a `RedisEngineError` when Redis cannot
   * be reached within `commandTimeoutMs`.
   */
  static async connect(opts: RedisSessionStoreOptions): Promise<RedisSessionStore> {
    const ttl = opts.routeTtlMs ?? DEFAULT_ROUTE_TTL_MS;
    if (!(ttl >= 1)) throw new RangeError(`routeTtlMs must be >= 1, got ${opts.routeTtlMs}`);
    const max = opts.onlineReportMaxBytes ?? ONLINE_REPORT_MAX_BYTES;
    if (!(Number.isSafeInteger(max) && max >= 1)) {
      throw new RangeError(`onlineReportMaxBytes must be an integer >= 1, got ${max}`);
    }
    return new RedisSessionStore(await RedisConnection.connect(opts), Math.round(ttl), max);
  }

  /** Whether the Redis connection is up right now (for health checks). */
  get ready(): boolean {
    return this.#conn.ready;
  }

  /** HSET + PEXPIRE `mid_<mid>` (mid > 0) and SET PX `key_<key>`, in one MULTI (cluster: per key). */
  async addMapping(mid: number, key: string, server: string): Promise<void> {
    if (this.#conn.cluster) {
      const mk = this.#midKey(mid);
      await Promise.all([
        mid > 0
          ? this.#conn.multi("addMapping", (tx) => tx.hset(mk, key, server).pexpire(mk, this.ttlMs))
          : undefined,
        this.#conn.call("addMapping", (c) => c.set(this.#keyKey(key), server, "PX", this.ttlMs)),
      ]);
      return;
    }
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
    const mk = this.#midKey(mid), kk = this.#keyKey(key);
    const replies = this.#conn.cluster
      ? await this.#conn.call("expireMapping", (c) =>
        Promise.all([
          ...(mid > 0 ? [c.pexpire(mk, this.ttlMs), c.hexists(mk, key)] : []),
          c.pexpire(kk, this.ttlMs),
        ]))
      : await this.#conn.pipeline("expireMapping", (p) => {
        if (mid > 0) p.pexpire(mk, this.ttlMs).hexists(mk, key);
        p.pexpire(kk, this.ttlMs);
      });
    const routeAlive = replies[replies.length - 1] === 1;
    const inMidSet = mid > 0 ? replies[1] === 1 : true;
    // Missing in either place means the caller must re-add, or pushes by mid would miss it.
    return routeAlive && inMidSet;
  }

  /** Lua compare-and-delete of `key_<key>` and the `mid_<mid>` field, each only if it still names `server`. */
  async delMapping(mid: number, key: string, server: string): Promise<boolean> {
    if (this.#conn.cluster) {
      const removed = await Promise.all([
        this.#conn.eval("delMapping", DEL_ROUTE, [this.#keyKey(key)], [server]),
        mid > 0
          ? this.#conn.eval("delMapping", DEL_MID_ENTRY, [this.#midKey(mid)], [server, key])
          : 0,
      ]);
      return removed.some((n) => n === 1);
    }
    const keys = mid > 0 ? [this.#keyKey(key), this.#midKey(mid)] : [this.#keyKey(key)];
    return (await this.#conn.eval("delMapping", DEL_MAPPING, keys, [server, key])) === 1;
  }

  /** One MGET (cluster: a GET per key); null for missing keys, in order. */
  async serversByKeys(keys: readonly string[]): Promise<(string | null)[]> {
    if (keys.length === 0) return [];
    const names = keys.map((k) => this.#keyKey(k));
    return await this.#conn.call(
      "serversByKeys",
      (c) => this.#conn.cluster ? Promise.all(names.map((k) => c.get(k))) : c.mget(names),
    );
  }

  /**
   * Every key of these mids whose own `key_<key>` route is live, with the
   * route's server; fields of dead routes are removed. One Lua script on a
   * single node; on a cluster an HGETALL per mid, then the routes.
   */
  async keysByMids(mids: readonly number[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (mids.length === 0) return out;
    if (!this.#conn.cluster) {
      const flat = await this.#conn.eval(
        "keysByMids",
        LIVE_KEYS_OF_MIDS,
        mids.map((m) => this.#midKey(m)),
        [this.#keyKey("")],
      ) as string[];
      for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i], flat[i + 1]);
      return out;
    }
    // A cluster: one HGETALL per mid, then the routes (other slots).
    const replies = await this.#conn.call(
      "keysByMids",
      (c) => Promise.all(mids.map((m) => c.hgetall(this.#midKey(m)))),
    );
    const keys: string[] = [];
    const owners: number[] = [];
    for (let i = 0; i < replies.length; i++) {
      for (const k in replies[i]) {
        keys.push(k);
        owners.push(mids[i]);
      }
    }
    if (keys.length === 0) return out;
    // The set's TTL is renewed by any device of the mid, so a field can
    // outlive its key's route (a device that stopped beating): trust
    // `key_<key>` and drop such fields.
    const routes = await this.serversByKeys(keys);
    const stale: Promise<unknown>[] = [];
    for (let i = 0; i < keys.length; i++) {
      const server = routes[i];
      if (server !== null) out.set(keys[i], server);
      else {
        stale.push(
          this.#conn.call("keysByMids", (c) => c.hdel(this.#midKey(owners[i]), keys[i])),
        );
      }
    }
    // Best effort: a failed HDEL leaves a field the next lookup drops again.
    if (stale.length > 0) void Promise.allSettled(stale);
    return out;
  }

  /**
   * Replaces `ol_<server>` with the report in goim's fields: DEL, HSET of
   * every field and PEXPIRE in one MULTI. `updated` is stored in whole
   * seconds. Throws a RangeError for a count goim cannot read (not an int32)
   * and a RedisEngineError for a report over the size bound.
   */
  async addServerOnline(online: ServerOnline): Promise<void> {
    const fields = encodeOnline(online);
    let bytes = 0;
    for (const json of Object.values(fields)) bytes += utf8.encode(json).length;
    if (bytes > this.#onlineMaxBytes) {
      throw new RedisEngineError(
        `redis: addServerOnline: the report of ${online.server} is ${bytes} bytes, ` +
          `over the bound of ${this.#onlineMaxBytes}`,
      );
    }
    const key = this.#olKey(online.server);
    await this.#conn.multi("addServerOnline", (tx) => {
      tx.del(key).hset(key, fields).pexpire(key, this.ttlMs);
    });
  }

  /**
   * Reads fields 0..63 of `ol_<server>` (one bounded Lua script) and merges
   * them as goim does; null when the key is absent or expired. `updated`
   * comes back in ms, rounded down to the second. Rejects with
   * {@linkcode UnreadableOnlineError} naming the key (and field) when the
   * report is not goim's format.
   */
  async serverOnline(server: string): Promise<ServerOnline | null> {
    const key = this.#olKey(server);
    const reply = await this.#conn.eval("serverOnline", READ_ONLINE, [key], [
      this.#onlineMaxBytes,
    ]) as (string | null)[] | null;
    if (reply === null) return null;
    const unreadable = (why: string, cause?: unknown) =>
      new UnreadableOnlineError(server, `redis: ${key} ${why}`, { cause });
    if (reply[0] === "type") {
      throw unreadable(`is a ${reply[1]}, not goim's online hash (fields 0..63 of JSON)`);
    }
    if (reply[0] === "size") {
      throw unreadable(
        `holds ${reply[1]} bytes in fields 0..63, over the bound of ` +
          `${this.#onlineMaxBytes}`,
      );
    }
    const rooms = new Map<string, number>();
    let updated: number | undefined;
    for (let i = 0; i < ONLINE_FIELDS; i++) {
      const json = reply[i + 1];
      if (json === null) continue;
      let field: OnlineField;
      try {
        field = decodeOnlineField(json);
      } catch (err) {
        throw unreadable(`field ${i}: ${(err as Error).message}`, err);
      }
      // As goim: the newest field's time, rooms merged (a room lives in one field only).
      if (updated === undefined || field.updated > updated) updated = field.updated;
      for (const [room, n] of field.rooms) rooms.set(room, n);
    }
    if (updated === undefined) throw unreadable("is a hash without any of fields 0..63");
    return { server, roomCount: Object.fromEntries(rooms), updated: updated * 1000 };
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

const utf8 = new TextEncoder();

/** goim's field of `room`: CityHash32 of its UTF-8 bytes, mod 64. */
function onlineField(room: string): number {
  return cityHash32(utf8.encode(room)) % ONLINE_FIELDS;
}

/**
 * A report as goim's `ol_<server>` fields (field → JSON), each JSON as Go's
 * `json.Marshal(model.Online{...})` writes it. No rooms: field "0" with an
 * empty `room_count`, so the report keeps its time.
 */
function encodeOnline(online: ServerOnline): Record<string, string> {
  const byField = new Map<number, [string, number][]>();
  for (const [room, n] of Object.entries(online.roomCount)) {
    if (!Number.isInteger(n) || n < 0 || n > INT32_MAX) {
      throw new RangeError(
        `online count of room ${JSON.stringify(room)} must be an int32 >= 0, got ${n}`,
      );
    }
    const f = onlineField(room);
    const list = byField.get(f);
    if (list) list.push([room, n]);
    else byField.set(f, [[room, n]]);
  }
  if (byField.size === 0) byField.set(0, []);
  const server = goJsonString(online.server);
  const updated = Math.floor(online.updated / 1000);
  const out: Record<string, string> = {};
  for (const [f, list] of byField) {
    // Go's encoding/json writes map keys sorted by their UTF-8 bytes.
    list.sort(([a], [b]) => compareCodePoints(a, b));
    const counts = list.map(([room, n]) => `${goJsonString(room)}:${n}`).join(",");
    out[f] = `{"server":${server},"room_count":{${counts}},"updated":${updated}}`;
  }
  return out;
}

/**
 * A JSON string as Go's encoding/json writes it: like JSON.stringify, plus
 * `<`, `>`, `&`, U+2028 and U+2029 as \u escapes; a lone surrogate, which
 * Go's UTF-8 strings cannot hold, becomes U+FFFD (as it does in the room's
 * hash input).
 */
function goJsonString(s: string): string {
  return JSON.stringify(s.toWellFormed()).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Orders strings by code point, which is the order of their UTF-8 bytes;
 * plain `<` compares UTF-16 units and puts U+10000.. before U+E000..U+FFFF.
 */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (U+10000 and up) after U+E000..U+FFFF.
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

interface OnlineField {
  rooms: [string, number][];
  /** Unix seconds. */
  updated: number;
}

/**
 * One `ol_<server>` field, checked as strictly as Go's json.Unmarshal into
 * goim's model.Online (server a string, counts int32, updated int64), and
 * counts must not be negative (no comet reports that; summing one would
 * corrupt the aggregate). Zero counts are dropped. Throws naming the problem.
 */
function decodeOnlineField(json: string): OnlineField {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw new Error(`is not JSON: ${preview(json)}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new Error(`is not a JSON object: ${preview(json)}`);
  }
  const o = v as Record<string, unknown>;
  if (o.server != null && typeof o.server !== "string") throw new Error(`"server" is not a string`);
  const updated = o.updated ?? 0;
  if (!Number.isSafeInteger(updated)) {
    throw new Error(`"updated" is not an integer (unix seconds): ${preview(String(updated))}`);
  }
  const rooms: [string, number][] = [];
  const counts = o.room_count ?? {};
  if (typeof counts !== "object" || Array.isArray(counts)) {
    throw new Error(`"room_count" is not an object`);
  }
  for (const [room, n] of Object.entries(counts as Record<string, unknown>)) {
    if (!Number.isInteger(n) || (n as number) < 0 || (n as number) > INT32_MAX) {
      throw new Error(`count of room ${preview(JSON.stringify(room))} is not an int32 >= 0`);
    }
    if (n !== 0) rooms.push([room, n as number]);
  }
  return { rooms, updated: updated as number };
}

/** The start of a peer's value for an error message, bounded. */
function preview(s: string): string {
  return s.length <= 64 ? s : `${s.slice(0, 64)}… (${s.length} chars)`;
}

/**
 * {@linkcode StreamStore} and {@linkcode PushStatusStore} on Redis (the
 * distributed mode), shared by every job (which appends) and logic (which
 * recovers, serves the history API and keeps push status).
 *
 * Key layout (after the optional `keyPrefix`). Every key of one stream
 * carries the same hash tag, so a Redis Cluster keeps them in one slot and
 * one Lua script can touch them all; the tag is the stream name with `%`
 * and `}` percent-escaped (`%25`, `%7D`), so a name holding braces can
 * neither end the tag early nor collide with another name:
 *
 * | key              | type   | content                                                   | TTL                  |
 * | ---------------- | ------ | --------------------------------------------------------- | -------------------- |
 * | `st:{<name>}:m`  | hash   | `e` epoch, `t` last position                              | `history.ttl`, all 3 |
 * | `st:{<name>}:l`  | list   | kept entries, oldest first: `pos,time,op,ack,id,body`     | renewed per append   |
 * | `st:{<name>}:i`  | hash   | push id → position, for every kept entry                  |                      |
 * | `ps:{<push id>}` | hash   | `c` created; `t:<target>` → `index,sent,acked`; `k:<key>` | `status.ttl`         |
 *
 * An entry is one list element: decimal position, time (ms, Redis' clock),
 * op and ack flag, the push id, then the body's bytes as they are (read
 * back as Buffers: binary-safe). The position of the element at index `i`
 * is `top − LLEN + 1 + i`, so a replay from a position is one LRANGE.
 *
 * **append** is one Lua script per call (all keys share the slot): it
 * reads the head, starts a fresh epoch when the stream has no history or
 * lost part of it (a key deleted or evicted: the list and the id hash must
 * have one length), looks every push id up with one HMGET, RPUSHes the new
 * entries and HSETs their ids, LTRIMs to `history.size` and HDELs the ids
 * of what it trimmed, and renews the three TTLs. Entry times come from Redis
 * `TIME`, so every job stamps with one clock and the staleness check of a
 * replay compares like with like. **recover** and **range** are one
 * read-only script each.
 *
 * Why a LIST and a HASH. Measured on this project's 2-core machine, Redis
 * 7.0.15, while other test runs loaded it (`MEMORY USAGE … SAMPLES 0`, one
 * stream of 1000 entries of 50-byte bodies with 22-character push ids):
 * the entries cost 103 KB as a LIST, 117 KB as a Redis Stream (XADD with
 * explicit ids `<pos>-0`, a field per attribute), 198 KB as a ZSET scored
 * by position; so a LIST. The push id index costs 72 KB as a HASH, and 25
 * KB as one string of ids searched with `string.find` — but copying that
 * string into Lua and back made an append of one entry cost 400 µs of
 * Redis CPU against 70 µs with the HASH (`INFO commandstats`), and Redis'
 * one thread is shared by every job and logic; LPOS on a list of the ids
 * cost 40 µs per lookup. So ≈ 175 KB per full stream (a stream of 3
 * entries: 744 B). Round trips from Deno, medians: an append of 1 entry to
 * a full stream 0.4 ms, of 256 entries 3.5–5 ms (1.5 ms of it in Redis),
 * a recover of 1000 entries 2.6–3.6 ms, of none 0.25 ms (a throwaway
 * script, not a test).
 *
 * Connections. `connect` opens a connection the store owns (and closes);
 * `open` works on one opened elsewhere — infra/engines.ts passes the
 * session store's on a single Redis, so job's append and the mid lookup
 * that must follow it share one ordered connection (`orderedVia`; the
 * order argument: infra/redis/client.ts, "Order") — and leaves it open on
 * `close`. Key names come from the connection's `keyPrefix`, so stores on
 * one connection share it.
 *
 * Push status: one hash per push id (its own slot on a cluster). `create`
 * is one MULTI (DEL, HSET of every target, PEXPIRE); `delivered` and
 * `acked` are Lua scripts that update a target's counters in place and
 * never create a record (an expired or unknown id is ignored). A batch of
 * acks is one script over all its push ids on a single Redis, and one
 * script per push id on a cluster (their hashes live in different slots).
 *
 * @example
 * ```ts
 * import { RedisStreamStore } from "./streams.ts";
 * const store = await RedisStreamStore.connect({
 *   url: "redis://127.0.0.1:6379", size: 1000, ttlMs: 86_400_000,
 * });
 * const { epoch } = await store.append("mid:42", [
 *   { pushId: "p1", op: 1000, body: new Uint8Array([1, 2, 3]) },
 * ]);
 * console.log(await store.recover("mid:42", { epoch, pos: 0 }));
 * await store.close();
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
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
import {
  LuaScript,
  RedisConnection,
  type RedisConnectionOptions,
  RedisEngineError,
} from "./client.ts";

// KEYS: meta, log, ids. ARGV: size, ttl ms, a fresh epoch, then per entry push id, op, ack, body.
// Replies {epoch, pos…}. Commands take at most CHUNK values (Lua's unpack
// has a C stack of 8000); positions are formatted with %d, as tostring() of
// a Lua number past 1e14 would give an exponent.
const APPEND = new LuaScript(`
local CHUNK = 500
local size, ttl = tonumber(ARGV[1]), ARGV[2]
local m = redis.call('HMGET', KEYS[1], 'e', 't')
local epoch, top = m[1], tonumber(m[2])
local len = redis.call('LLEN', KEYS[2])
if not epoch or not top or len == 0 or top < len or redis.call('HLEN', KEYS[3]) ~= len then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  epoch, top, len = ARGV[3], 0, 0
end
local function chunked(cmd, key, list)
  for i = 1, #list, CHUNK do
    redis.call(cmd, key, unpack(list, i, math.min(i + CHUNK - 1, #list)))
  end
end
local n = (#ARGV - 3) / 4
local held = {}
for c = 0, n - 1, CHUNK do
  local list = {}
  for k = c, math.min(c + CHUNK, n) - 1 do list[#list + 1] = ARGV[4 + k * 4] end
  local got = redis.call('HMGET', KEYS[3], unpack(list))
  for i = 1, #list do held[c + i] = got[i] end
end
local t = redis.call('TIME')
local now = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
local seen, elems, fields, out = {}, {}, {}, {epoch}
for k = 1, n do
  local a = k * 4
  local id = ARGV[a]
  local pos = seen[id] or (held[k] and tonumber(held[k]))
  if not pos then
    top = top + 1
    pos = top
    local p = string.format('%d', pos)
    elems[#elems + 1] = p .. ',' .. now .. ',' .. ARGV[a + 1] .. ',' .. ARGV[a + 2] .. ',' ..
      id .. ',' .. ARGV[a + 3]
    fields[#fields + 1] = id
    fields[#fields + 1] = p
  end
  seen[id] = pos
  out[#out + 1] = pos
end
if #elems > 0 then
  chunked('RPUSH', KEYS[2], elems)
  chunked('HSET', KEYS[3], fields)
  local excess = len + #elems - size
  if excess > 0 then
    local gone = {}
    for _, e in ipairs(redis.call('LRANGE', KEYS[2], 0, excess - 1)) do
      gone[#gone + 1] = string.match(e, '^[^,]*,[^,]*,[^,]*,[^,]*,([^,]*),')
    end
    chunked('HDEL', KEYS[3], gone)
    redis.call('LTRIM', KEYS[2], excess, -1)
  end
  redis.call('HSET', KEYS[1], 'e', epoch, 't', string.format('%d', top))
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return out
`);

// The head of a stream as the readers see it; {false} (a nil reply) when it has no history.
const HEAD = `
local m = redis.call('HMGET', KEYS[1], 'e', 't')
local top = tonumber(m[2])
local len = redis.call('LLEN', KEYS[2])
if not m[1] or not top or len == 0 or top < len then return {false} end
local first = top - len + 1
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
`;

// KEYS: meta, log. ARGV: since epoch, since position (-1: none). Replies
// {epoch, top, first, now, entries…}: the entries after the position when
// the rules of planRecovery (infra/stream_rules.ts) will want them.
const RECOVER = new LuaScript(`${HEAD}
local out = {m[1], top, first, now}
local since = tonumber(ARGV[2])
if since >= 0 and since < top and since + 1 >= first and
    (ARGV[1] == m[1] or (ARGV[1] == '' and since == 0)) then
  local got = redis.call('LRANGE', KEYS[2], since + 1 - first, -1)
  for i = 1, #got do out[#out + 1] = got[i] end
end
return out
`);

// KEYS: meta, log. ARGV: after (-1: the last \`limit\`), limit, ttl ms. Replies
// {epoch, top, entries…}, stale entries skipped (a chunk of \`limit\` at a time).
const RANGE = new LuaScript(`${HEAD}
local after, limit, cutoff = tonumber(ARGV[1]), tonumber(ARGV[2]), now - tonumber(ARGV[3])
local out = {m[1], top}
local function add(list)
  for _, e in ipairs(list) do
    if #out - 2 >= limit then return end
    if tonumber(string.match(e, '^%d+,(%d+),')) > cutoff then out[#out + 1] = e end
  end
end
if after < 0 then
  add(redis.call('LRANGE', KEYS[2], -limit, -1))
else
  local i = math.max(after + 1 - first, 0)
  while #out - 2 < limit and i < len do
    add(redis.call('LRANGE', KEYS[2], i, i + limit - 1))
    i = i + limit
  end
end
return out
`);

// KEYS: ps:{id}. ARGV: target, sent. Adds to the target's sent; nothing for an unknown one.
const DELIVERED = new LuaScript(`
local f = 't:' .. ARGV[1]
local v = redis.call('HGET', KEYS[1], f)
if not v then return 0 end
local i, s, a = string.match(v, '^(%d+),(-?%d+),(%d+)$')
s = math.max(tonumber(s), 0) + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], f, i .. ',' .. string.format('%d', s) .. ',' .. a)
return 1
`);

// KEYS: ps:{id}…. ARGV, per key: n, then n triples of the two targets the ack
// may count for, in order (ackCandidates, infra/stream_rules.ts), and its key;
// k:<key> makes it count once per key.
const ACKED = new LuaScript(`
local j = 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[j])
  j = j + 1
  for _ = 1, n do
    local f = 't:' .. ARGV[j]
    local v = redis.call('HGET', KEYS[i], f)
    if not v then
      f = 't:' .. ARGV[j + 1]
      v = redis.call('HGET', KEYS[i], f)
    end
    if v and redis.call('HSETNX', KEYS[i], 'k:' .. ARGV[j + 2], '1') == 1 then
      local idx, s, a = string.match(v, '^(%d+),(-?%d+),(%d+)$')
      redis.call('HSET', KEYS[i], f, idx .. ',' .. s .. ',' .. (tonumber(a) + 1))
    end
    j = j + 3
  end
end
return 0
`);

/** Options of {@linkcode RedisStreamStore.connect}: the connection and `streams.history.*`. */
export interface RedisStreamStoreOptions extends RedisConnectionOptions, StreamLimits {}

/** A {@linkcode StreamStore} on one Redis connection. After `close()` every method rejects. */
export class RedisStreamStore implements StreamStore {
  /** The connection, on a single Redis (see {@linkcode StreamStore.orderedVia}); unset on a cluster. */
  readonly orderedVia?: RedisConnection;
  #conn: RedisConnection;
  #hold: ConnHold;
  #size: number;
  #ttlMs: number;

  private constructor(conn: RedisConnection, owned: boolean, limits: StreamLimits) {
    this.#conn = conn;
    this.#hold = new ConnHold(conn, owned);
    if (!conn.cluster) this.orderedVia = conn;
    this.#size = limits.size;
    this.#ttlMs = limits.ttlMs;
  }

  /** Connects; rejects with a RedisEngineError when Redis cannot be reached in time. */
  static async connect(opts: RedisStreamStoreOptions): Promise<RedisStreamStore> {
    checkLimits(opts);
    return new RedisStreamStore(await RedisConnection.connect(opts), true, opts);
  }

  /**
   * A store on a connection opened elsewhere (it keeps the connection's key
   * prefix); its `close()` leaves the connection open.
   */
  static open(conn: RedisConnection, limits: StreamLimits): RedisStreamStore {
    checkLimits(limits);
    return new RedisStreamStore(conn, false, limits);
  }

  /** The connection it works over, its own or borrowed. */
  get connection(): RedisConnection {
    return this.#conn;
  }

  /** Whether the Redis connection is up right now (for health checks). */
  get ready(): boolean {
    return this.#hold.ready;
  }

  /**
   * The keys of a stream: meta, log, ids (tests and operators look at them).
   * Throws a RangeError for a name {@linkcode StreamStore.append} refuses.
   */
  keysOf(stream: string): [meta: string, log: string, ids: string] {
    checkStreamName(stream);
    const base = `${this.#conn.keyPrefix}st:{${stream.replace(/[%}]/g, escapeTag)}}`;
    return [`${base}:m`, `${base}:l`, `${base}:i`];
  }

  /**
   * One Lua script: positions, deduplication, trim and TTLs together; sent
   * before this returns its promise, `reissued` when it went again as EVAL.
   */
  async append(stream: string, entries: readonly StreamEntryInit[]): Promise<Appended> {
    this.#hold.check("append");
    const keys = this.keysOf(stream);
    checkEntries(entries);
    if (entries.length === 0) {
      return { epoch: (await this.recover(stream, null)).epoch, positions: [] };
    }
    const args: (string | number | Buffer)[] = [this.#size, this.#ttlMs, newEpoch()];
    for (const e of entries) {
      args.push(
        e.pushId,
        e.op,
        e.ack ? 1 : 0,
        Buffer.from(e.body.buffer, e.body.byteOffset, e.body.byteLength),
      );
    }
    const { reply, reissued } = await this.#conn.evalOrdered("append", APPEND, keys, args, true);
    const r = reply as [Buffer, ...number[]];
    const a: Appended = { epoch: r[0].toString("latin1"), positions: r.slice(1) as number[] };
    if (reissued) a.reissued = true;
    return a;
  }

  /** One read-only Lua script; the rules are planRecovery's (infra/stream_rules.ts). */
  async recover(stream: string, since: StreamPosition | null): Promise<Recovery> {
    this.#hold.check("recover");
    const [meta, log] = this.keysOf(stream);
    checkSince(since);
    const reply = await this.#conn.eval("recover", RECOVER, [meta, log], [
      since?.epoch ?? "",
      since?.pos ?? -1,
    ], true) as (Buffer | number | null)[];
    if (reply[0] === null) return planRecovery(null, since) as Recovery;
    const head: StreamHead = {
      epoch: (reply[0] as Buffer).toString("latin1"),
      top: reply[1] as number,
      first: reply[2] as number,
    };
    const plan = planRecovery(head, since);
    if (typeof plan !== "number") return plan;
    const entries = (reply.slice(4) as Buffer[]).map((b) => decodeEntry(b, this.#conn.target));
    return replayAnswer(head, plan, entries, reply[3] as number, this.#ttlMs);
  }

  /** One read-only Lua script, stale entries skipped in it. */
  async range(stream: string, opts: { after?: number; limit: number }): Promise<StreamRange> {
    this.#hold.check("range");
    const [meta, log] = this.keysOf(stream);
    checkRange(opts);
    const reply = await this.#conn.eval("range", RANGE, [meta, log], [
      opts.after ?? -1,
      opts.limit,
      this.#ttlMs,
    ], true) as (Buffer | number | null)[];
    if (reply[0] === null) return { epoch: "", top: 0, entries: [] };
    return {
      epoch: (reply[0] as Buffer).toString("latin1"),
      top: reply[1] as number,
      entries: (reply.slice(2) as Buffer[]).map((b) => decodeEntry(b, this.#conn.target)),
    };
  }

  /** Closes the connection if its own (bounded; never hangs on a dead Redis). */
  close(): Promise<void> {
    return this.#hold.close();
  }
}

/**
 * A store's hold on its connection: closes it only if the store opened it,
 * and rejects the store's calls once the store is closed either way.
 */
class ConnHold {
  #closed = false;
  constructor(readonly conn: RedisConnection, readonly owned: boolean) {}

  get ready(): boolean {
    return !this.#closed && this.conn.ready;
  }

  /** Throws (the caller is async: it rejects) once the store is closed. */
  check(op: string): void {
    if (this.#closed) {
      throw new RedisEngineError(`redis ${this.conn.target}: ${op}: engine is closed`);
    }
  }

  close(): Promise<void> {
    this.#closed = true;
    return this.owned ? this.conn.close() : Promise.resolve();
  }
}

function escapeTag(c: string): string {
  return c === "%" ? "%25" : "%7D";
}

/**
 * An entry from its list element `pos,time,op,ack,id,body`, parsed by hand:
 * Buffer's indexOf and toString cost ≈ 8 µs an entry under Deno's node
 * compatibility, which made a replay of 1000 entries take 10 ms on the client.
 */
function decodeEntry(b: Buffer, target: string): StreamEntry {
  const u = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  const bad = () =>
    new RedisEngineError(`redis ${target}: a stream entry is not in this store's format`);
  const nums = [0, 0, 0, 0];
  let at = 0;
  for (let f = 0; f < 4; f++) {
    const neg = u[at] === 0x2d;
    if (neg) at++;
    const from = at;
    let n = 0;
    for (let c = u[at]; c !== 0x2c; c = u[++at]) {
      if (!(c >= 0x30 && c <= 0x39)) throw bad();
      n = n * 10 + (c - 0x30);
    }
    if (at === from) throw bad();
    nums[f] = neg ? -n : n;
    at++;
  }
  const idFrom = at;
  while (at < u.length && u[at] !== 0x2c) at++;
  if (at >= u.length) throw bad();
  return {
    pos: nums[0],
    time: nums[1],
    op: nums[2],
    ack: nums[3] === 1,
    pushId: ascii(u, idFrom, at),
    // A copy: the reply's bytes may share a larger pooled buffer.
    body: u.slice(at + 1),
  };
}

/** Bytes `from` … `to` as a string of their char codes (push ids are ASCII, checked on append). */
function ascii(u: Uint8Array, from: number, to: number): string {
  // A loop: String.fromCharCode(...view) costs twice as much through the iterator.
  let s = "";
  for (let i = from; i < to; i++) s += String.fromCharCode(u[i]);
  return s;
}

/** Options of {@linkcode RedisPushStatusStore.connect}. */
export interface RedisPushStatusOptions extends RedisConnectionOptions {
  /** How long a record is kept after its creation (`streams.status.ttl`), ms. */
  ttlMs: number;
}

/** A {@linkcode PushStatusStore} on one Redis connection. After `close()` every method rejects. */
export class RedisPushStatusStore implements PushStatusStore {
  #conn: RedisConnection;
  #hold: ConnHold;
  #ttlMs: number;

  private constructor(conn: RedisConnection, owned: boolean, ttlMs: number) {
    this.#conn = conn;
    this.#hold = new ConnHold(conn, owned);
    this.#ttlMs = ttlMs;
  }

  /** Connects; rejects with a RedisEngineError when Redis cannot be reached in time. */
  static async connect(opts: RedisPushStatusOptions): Promise<RedisPushStatusStore> {
    checkStatusTtl(opts.ttlMs);
    return new RedisPushStatusStore(await RedisConnection.connect(opts), true, opts.ttlMs);
  }

  /**
   * A store on a connection opened elsewhere (it keeps the connection's key
   * prefix); its `close()` leaves the connection open.
   */
  static open(conn: RedisConnection, opts: { ttlMs: number }): RedisPushStatusStore {
    checkStatusTtl(opts.ttlMs);
    return new RedisPushStatusStore(conn, false, opts.ttlMs);
  }

  /** The connection it works over, its own or borrowed. */
  get connection(): RedisConnection {
    return this.#conn;
  }

  /** Whether the Redis connection is up right now (for health checks). */
  get ready(): boolean {
    return this.#hold.ready;
  }

  /** The hash of a push id's status. */
  keyOf(id: string): string {
    return `${this.#conn.keyPrefix}ps:{${id}}`;
  }

  /** DEL, HSET of every target and PEXPIRE in one MULTI. */
  async create(id: string, targets: readonly string[]): Promise<void> {
    this.#hold.check("status create");
    checkPushId(id);
    const unique = checkTargets(targets);
    const fields: Record<string, string> = { c: String(Date.now()) };
    unique.forEach((t, i) => fields[`t:${t}`] = `${i},-1,0`);
    const key = this.keyOf(id);
    await this.#conn.multi("status create", (tx) => {
      tx.del(key).hset(key, fields).pexpire(key, this.#ttlMs);
    });
  }

  /** One Lua script on the push's hash. */
  async delivered(id: string, target: string, sent: number): Promise<void> {
    this.#hold.check("status delivered");
    checkSent(sent);
    if (!isPushId(id)) return;
    await this.#conn.eval("status delivered", DELIVERED, [this.keyOf(id)], [target, sent]);
  }

  /** One Lua script for the whole batch (cluster: one per push id). */
  async acked(acks: readonly AckReport[]): Promise<void> {
    this.#hold.check("status acked");
    const byId = new Map<string, AckReport[]>();
    for (const ack of acks) {
      if (!isPushId(ack.pushId)) continue;
      const list = byId.get(ack.pushId);
      if (list) list.push(ack);
      else byId.set(ack.pushId, [ack]);
    }
    if (byId.size === 0) return;
    const argsOf = (list: AckReport[]) => [
      list.length,
      ...list.flatMap((a) => [...ackCandidates(a), a.key]),
    ];
    if (this.#conn.cluster) {
      await Promise.all(
        [...byId].map(([id, list]) =>
          this.#conn.eval("status acked", ACKED, [this.keyOf(id)], argsOf(list))
        ),
      );
      return;
    }
    const keys: string[] = [], args: (string | number)[] = [];
    for (const [id, list] of byId) {
      keys.push(this.keyOf(id));
      args.push(...argsOf(list));
    }
    await this.#conn.eval("status acked", ACKED, keys, args);
  }

  /** HGETALL of the push's hash. */
  async get(id: string): Promise<PushStatus | null> {
    this.#hold.check("status get");
    if (!isPushId(id)) return null;
    const h = await this.#conn.call("status get", (c) => c.hgetall(this.keyOf(id)));
    if (h.c === undefined) return null;
    const targets: [number, TargetCounters][] = [];
    for (const [f, v] of Object.entries(h)) {
      if (!f.startsWith("t:")) continue;
      const [i, sent, acked] = v.split(",").map(Number);
      targets.push([i, { target: f.slice(2), sent, acked }]);
    }
    targets.sort((a, b) => a[0] - b[0]);
    return pushStatus(id, Number(h.c), targets.map(([, t]) => t));
  }

  /** Closes the connection if its own (bounded; never hangs on a dead Redis). */
  close(): Promise<void> {
    return this.#hold.close();
  }
}

/**
 * `ol_<server>` in goim's online format, against a real Redis: the exact
 * bytes, both directions of goim ⇄ this logic, and an online refresh that
 * skips one unreadable report instead of failing for every comet.
 *
 * How the golden bytes were made: a throwaway Go program (outside this
 * repo, Go 1.26) with goim's `model.Online` struct and the body of goim's
 * internal/logic/dao/redis.go `AddServerOnline` (rooms grouped by
 * `cityhash.CityHash32([]byte(room), uint32(len(room))) % 64` of
 * github.com/zhenjl/cityhash@v0.0.0-20131128155616-cdd6a94144ab, one
 * `json.Marshal(&model.Online{...})` per field) printed the field → JSON
 * map for {@linkcode ROOMS}; the output is pasted as is. The rooms were
 * picked so that fields hold several rooms (key order, escapes).
 */

import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { createLogger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { RedisEngineError } from "../infra/redis/client.ts";
import { RedisSessionStore } from "../infra/redis/sessions.ts";
import { type ServerOnline, UnreadableOnlineError } from "../infra/sessions.ts";
import { createLogicMetrics } from "../logic/metrics.ts";
import { ONLINE_WARN_INTERVAL_MS, OnlineCounts } from "../logic/online.ts";
import { sample } from "./fixtures/comet_fixtures.ts";
import { deleteKeys, redisTestUrl, uniqueKeyPrefix } from "./redis_env.ts";

const redis = await redisTestUrl();

/** The report the Go program encoded (updated 1700000000 s). */
const ROOMS: Record<string, number> = {
  "live://1000": 3,
  "live://86": 4, // same field as live://1000 (43)
  "live://1": 1,
  "live://1001": 7,
  "chat://a<b>&c": 2,
  "live://直播间": 5,
  "z\uffff": 8,
  "z🎉25": 10, // same field as z\uffff (8): UTF-8 order puts U+FFFF first
  'q"\\\b\f\x01\u202860': 11, // same field again: every kind of escape
};

/** HGETALL ol_comet-1 after goim's AddServerOnline of ROOMS, from the Go program. */
const GOLDEN: Record<string, string> = {
  7: '{"server":"comet-1","room_count":{"live://1001":7},"updated":1700000000}',
  8: '{"server":"comet-1","room_count":{"q\\"\\\\\\b\\f\\u0001\\u202860":11,"z\uffff":8,"z🎉25":10},"updated":1700000000}',
  19: '{"server":"comet-1","room_count":{"live://1":1},"updated":1700000000}',
  33: '{"server":"comet-1","room_count":{"live://直播间":5},"updated":1700000000}',
  34:
    '{"server":"comet-1","room_count":{"chat://a\\u003cb\\u003e\\u0026c":2},"updated":1700000000}',
  43: '{"server":"comet-1","room_count":{"live://1000":3,"live://86":4},"updated":1700000000}',
};

/** goim's logic `redis.expire` in the example config: 30 min, in seconds. */
const GOIM_EXPIRE_S = 1800;

/** goim's field of a room, taken from GOLDEN. */
function goldenField(room: string): string {
  return Object.keys(GOLDEN).find((f) => room in JSON.parse(GOLDEN[f]).room_count)!;
}

/**
 * goim's `addServerOnline` for one field, command for command: `HSET key
 * field json` and `EXPIRE key <seconds>` sent together (redigo Send, Send,
 * Flush), one round trip per field.
 */
async function goimWrite(raw: Redis, key: string, fields: Record<string, string>): Promise<void> {
  for (const [field, json] of Object.entries(fields)) {
    const res = await raw.pipeline().hset(key, field, json).expire(key, GOIM_EXPIRE_S).exec();
    for (const [err] of res!) assert.equal(err, null);
  }
}

/** What goim's `json.Unmarshal(b, &model.Online{})` accepts (int32 counts, int64 updated). */
function goUnmarshalOnline(b: string): ServerOnline | null {
  let v: unknown;
  try {
    v = JSON.parse(b);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const o = v as { server?: unknown; room_count?: unknown; updated?: unknown };
  if (o.server != null && typeof o.server !== "string") return null;
  if (o.updated != null && !Number.isSafeInteger(o.updated)) return null;
  const rc = o.room_count ?? {};
  if (typeof rc !== "object" || Array.isArray(rc)) return null;
  for (const n of Object.values(rc)) {
    if (!Number.isInteger(n) || n < -(2 ** 31) || n > 2 ** 31 - 1) return null;
  }
  return {
    server: (o.server as string) ?? "",
    roomCount: rc as Record<string, number>,
    updated: (o.updated as number) ?? 0,
  };
}

/**
 * goim's `dao.ServerOnline`, step for step: `HGET key i` for i in 0..63, a
 * field that is missing or fails to unmarshal is skipped (logged there),
 * the others merged: server from the field, newest `updated`, rooms
 * overwritten in field order. `updated` is in seconds.
 */
async function goimServerOnline(raw: Redis, key: string): Promise<ServerOnline> {
  const online: ServerOnline = { server: "", roomCount: {}, updated: 0 };
  for (let i = 0; i < 64; i++) {
    let b: string | null;
    try {
      b = await raw.hget(key, String(i));
    } catch {
      continue; // e.g. WRONGTYPE: logged by goim, field skipped
    }
    if (b === null) continue;
    const ol = goUnmarshalOnline(b);
    if (ol === null) continue;
    online.server = ol.server;
    if (ol.updated > online.updated) online.updated = ol.updated;
    for (const [room, count] of Object.entries(ol.roomCount)) online.roomCount[room] = count;
  }
  return online;
}

/** goim's `loadOnline`: a report older than 5 min is deleted instead of counted. */
function goimWouldDelete(online: ServerOnline, nowMs: number): boolean {
  return nowMs - online.updated * 1000 > 5 * 60_000;
}

/** A Redis test with its own key prefix, a store on it and a raw client. */
function redisTest(
  name: string,
  fn: (t: { store: RedisSessionStore; raw: Redis; prefix: string }) => Promise<void>,
  opts: { onlineReportMaxBytes?: number } = {},
): void {
  Deno.test({
    name: `goim online format: ${name}`,
    ignore: redis.ignore,
    fn: async () => {
      redis.assertReachable();
      const prefix = uniqueKeyPrefix();
      const store = await RedisSessionStore.connect({
        url: redis.url,
        keyPrefix: prefix,
        routeTtlMs: GOIM_EXPIRE_S * 1000,
        ...opts,
      });
      const raw = new Redis(redis.url);
      try {
        await fn({ store, raw, prefix });
      } finally {
        raw.disconnect();
        await store.close();
        await deleteKeys(redis.url, prefix);
      }
    },
  });
}

redisTest("HGETALL of a written report is goim's fields byte for byte", async (t) => {
  const key = `${t.prefix}ol_comet-1`;
  // Milliseconds are dropped: goim stores unix seconds.
  await t.store.addServerOnline({ server: "comet-1", roomCount: ROOMS, updated: 1700000000_999 });
  assert.equal(await t.raw.type(key), "hash");
  assert.deepEqual(await t.raw.hgetall(key), GOLDEN);
  const ttl = await t.raw.pttl(key);
  assert.ok(ttl > (GOIM_EXPIRE_S - 10) * 1000 && ttl <= GOIM_EXPIRE_S * 1000, `pttl ${ttl}`);
  assert.equal(goldenField("live://1000"), "43");
});

redisTest("a report written as goim writes it is read by this logic", async (t) => {
  const key = `${t.prefix}ol_comet-1`;
  await goimWrite(t.raw, key, GOLDEN);
  const want = { server: "comet-1", roomCount: ROOMS, updated: 1700000000_000 };
  assert.deepEqual(await t.store.serverOnline("comet-1"), want);
  // And goim's own reader agrees (seconds).
  assert.deepEqual(await goimServerOnline(t.raw, key), { ...want, updated: 1700000000 });
});

redisTest("a report this logic writes is read by goim's ServerOnline", async (t) => {
  const now = Date.now();
  const rooms = { "live://1000": 12, "live://1": 1, "chat://x": 3 };
  await t.store.addServerOnline({ server: "comet-2", roomCount: rooms, updated: now });
  const seen = await goimServerOnline(t.raw, `${t.prefix}ol_comet-2`);
  assert.deepEqual(seen, { server: "comet-2", roomCount: rooms, updated: Math.floor(now / 1000) });
  assert.equal(goimWouldDelete(seen, now), false, "goim counts it instead of deleting it");

  // No rooms: still a dated report for goim (field "0"), not an absent one.
  await t.store.addServerOnline({ server: "comet-3", roomCount: {}, updated: now });
  assert.deepEqual(await t.raw.hgetall(`${t.prefix}ol_comet-3`), {
    0: `{"server":"comet-3","room_count":{},"updated":${Math.floor(now / 1000)}}`,
  });
  const empty = await goimServerOnline(t.raw, `${t.prefix}ol_comet-3`);
  assert.deepEqual(empty, { server: "comet-3", roomCount: {}, updated: Math.floor(now / 1000) });
  assert.equal(goimWouldDelete(empty, now), false);
  assert.deepEqual(await t.store.serverOnline("comet-3"), {
    server: "comet-3",
    roomCount: {},
    updated: Math.floor(now / 1000) * 1000,
  });
});

redisTest("a write replaces the whole report; goim's own write leaves stale fields", async (t) => {
  const key = `${t.prefix}ol_comet-1`;
  const later = '{"server":"comet-1","room_count":{"live://1":6},"updated":1700000010}';
  // goim: the rooms of fields it does not write again stay, renewed by every EXPIRE.
  await goimWrite(t.raw, key, GOLDEN);
  await goimWrite(t.raw, key, { 19: later });
  const goim = await goimServerOnline(t.raw, key);
  assert.equal(goim.roomCount["live://1000"], 3, "goim keeps counting a room that left");
  assert.equal(goim.roomCount["live://1"], 6);
  assert.equal(goim.updated, 1700000010);
  // This logic reads the same merge goim does...
  assert.deepEqual(await t.store.serverOnline("comet-1"), {
    server: "comet-1",
    roomCount: { ...ROOMS, "live://1": 6 },
    updated: 1700000010_000,
  });
  // ...but its own write leaves only the report's rooms (DEL + HSET + PEXPIRE in one MULTI).
  await t.store.addServerOnline({
    server: "comet-1",
    roomCount: { "live://1": 6 },
    updated: 1700000010_000,
  });
  assert.deepEqual(await t.raw.hgetall(key), { 19: later });
  assert.deepEqual(await goimServerOnline(t.raw, key), {
    server: "comet-1",
    roomCount: { "live://1": 6 },
    updated: 1700000010,
  });
});

redisTest(
  "unreadable reports reject with UnreadableOnlineError naming key and field",
  async (t) => {
    const key = (s: string) => `${t.prefix}ol_${s}`;
    const cases: [string, (k: string) => Promise<unknown>, RegExp][] = [
      // The layout of this project before goim's format: WRONGTYPE for goim's HGET.
      [
        "old",
        (k) => t.raw.set(k, '{"server":"old","roomCount":{"a":1},"updated":1}'),
        /is a string/,
      ],
      ["list", (k) => t.raw.rpush(k, "x"), /is a list/],
      ["garbage", (k) => t.raw.hset(k, "0", GOLDEN[7], "5", "nope"), /field 5: is not JSON: nope/],
      ["array", (k) => t.raw.hset(k, "3", "[1,2]"), /field 3: is not a JSON object/],
      ["big", (k) => t.raw.hset(k, "1", '{"room_count":{"a":2147483648}}'), /field 1: .*int32/],
      ["negative", (k) => t.raw.hset(k, "1", '{"room_count":{"a":-1}}'), /field 1: .*int32 >= 0/],
      ["float", (k) => t.raw.hset(k, "2", '{"updated":1.5}'), /field 2: "updated" is not an int/],
      ["server", (k) => t.raw.hset(k, "2", '{"server":7}'), /field 2: "server" is not a string/],
      ["rc", (k) => t.raw.hset(k, "2", '{"room_count":[1]}'), /field 2: "room_count" is not an/],
      ["foreign", (k) => t.raw.hset(k, "x", "{}", "64", "{}"), /without any of fields 0\.\.63/],
    ];
    for (const [server, poison, why] of cases) {
      await poison(key(server));
      const err = await t.store.serverOnline(server).then(() => null, (e) => e);
      assert.ok(err instanceof UnreadableOnlineError, `${server}: ${err}`);
      assert.equal(err.server, server);
      assert.match(err.message, new RegExp(`${key(server)} `), server);
      assert.match(err.message, why, server);
    }
    // Fields goim never reads (not 0..63) are ignored next to goim's own, as goim does.
    await t.raw.hset(key("extra"), "0", GOLDEN[7], "64", "garbage", "x", "garbage");
    assert.deepEqual((await t.store.serverOnline("extra"))?.roomCount, { "live://1001": 7 });
    // Zero counts read as absent rooms.
    await t.raw.hset(key("zero"), "0", '{"room_count":{"a":0,"b":2},"updated":1}');
    assert.deepEqual(await t.store.serverOnline("zero"), {
      server: "zero",
      roomCount: { b: 2 },
      updated: 1000,
    });
    // A write replaces a key of the old layout instead of failing with WRONGTYPE.
    await t.store.addServerOnline({ server: "old", roomCount: { "live://1": 2 }, updated: 5000 });
    assert.deepEqual(await t.store.serverOnline("old"), {
      server: "old",
      roomCount: { "live://1": 2 },
      updated: 5000,
    });
  },
);

redisTest("reports over the size bound are refused on write and unreadable on read", async (t) => {
  const rooms: Record<string, number> = {};
  for (let i = 0; i < 40; i++) rooms[`live://${"x".repeat(20)}${i}`] = 1;
  const err = await t.store.addServerOnline({ server: "s", roomCount: rooms, updated: 0 })
    .then(() => null, (e) => e);
  assert.ok(err instanceof RedisEngineError, String(err));
  assert.match(err.message, /report of s is \d+ bytes, over the bound of 1000/);
  assert.equal(await t.raw.exists(`${t.prefix}ol_s`), 0, "nothing written");
  // Another writer stored more: measured in Redis (HSTRLEN), never fetched.
  await t.raw.hset(`${t.prefix}ol_s`, "0", GOLDEN[7], "9", "y".repeat(1000));
  await assert.rejects(
    () => t.store.serverOnline("s"),
    (e) =>
      e instanceof UnreadableOnlineError && /holds 10\d\d bytes .*over the bound/.test(e.message),
  );
  // Below the bound all is well; a huge value in a field goim does not read does not count.
  await t.raw.hdel(`${t.prefix}ol_s`, "9");
  await t.raw.hset(`${t.prefix}ol_s`, "x", "y".repeat(5000));
  assert.deepEqual((await t.store.serverOnline("s"))?.roomCount, { "live://1001": 7 });
  // A count goim cannot hold (int32) is refused before anything is written.
  await assert.rejects(
    () => t.store.addServerOnline({ server: "t", roomCount: { a: 2 ** 31 }, updated: 0 }),
    RangeError,
  );
}, { onlineReportMaxBytes: 1000 });

redisTest("online refresh skips a poisoned report; the other comets still count", async (t) => {
  let now = Date.now();
  const clock = () => now;
  const registry = new MemoryRegistry({ now: clock });
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: "warn", writer: (l) => lines.push(JSON.parse(l)) });
  const metrics = createLogicMetrics();
  const online = new OnlineCounts({
    sessions: t.store,
    registry,
    staleAfterMs: 10 * ONLINE_WARN_INTERVAL_MS,
    now: clock,
    log,
    metrics,
  });
  for (const id of ["c1", "c2", "x", "y"]) {
    await registry.register({
      id,
      grpcAddr: "127.0.0.1:1",
      addrs: [],
      tcpPort: 0,
      wsPort: 0,
      wssPort: 0,
      weight: 10,
      connections: 0,
      ips: 0,
    }, 10 * ONLINE_WARN_INTERVAL_MS);
  }
  // c1 by this logic's format, c2 by goim's writer; x and y poisoned.
  await t.store.addServerOnline({ server: "c1", roomCount: { "live://1": 2 }, updated: now });
  await goimWrite(t.raw, `${t.prefix}ol_c2`, {
    19: `{"server":"c2","room_count":{"live://1":3},"updated":${Math.floor(now / 1000)}}`,
  });
  await t.raw.set(`${t.prefix}ol_x`, "not a hash");
  await t.raw.hset(`${t.prefix}ol_y`, "19", "{garbage");
  const skipped = async () =>
    sample(await metrics.registry.text(), "goim_logic_online_skipped_total", 'reason="unreadable"');

  await online.refresh();
  assert.equal(online.count("live://1"), 5, "c1 and c2 count");
  assert.equal(online.servers, 2);
  assert.equal(await skipped(), 2);
  assert.equal(lines.length, 1, JSON.stringify(lines));
  assert.equal(lines[0].level, "warn");
  assert.match(String(lines[0].msg), /skipped unreadable comet reports/);
  assert.equal(lines[0].skipped, 2);
  assert.deepEqual(lines[0].servers, ["x", "y"]);

  // Rate-limited: counted every time, logged once per ONLINE_WARN_INTERVAL_MS.
  await online.refresh();
  assert.equal(await skipped(), 4);
  assert.equal(lines.length, 1);
  now += ONLINE_WARN_INTERVAL_MS;
  await online.refresh();
  assert.equal(await skipped(), 6);
  assert.equal(lines.length, 2);
  assert.equal(online.count("live://1"), 5);

  // Repaired by a write: y counts again.
  await t.store.addServerOnline({ server: "y", roomCount: { "live://1": 4 }, updated: now });
  await online.refresh();
  assert.equal(online.count("live://1"), 9);
  assert.equal(await skipped(), 7, "only x left");
  await registry.close();
});

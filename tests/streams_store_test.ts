/**
 * Stream and push status stores: the shared suite against memory (and the
 * Redis engines), plus what only one engine has (memory eviction and lazy
 * expiry; the Redis key layout, a partly lost history, an append re-sent
 * after SCRIPT FLUSH, stores on a borrowed connection, and openEngines
 * sharing the session store's connection on a single Redis only).
 */

import assert from "node:assert/strict";
import type { Cluster, Redis } from "ioredis";
import { type EngineName, openEngines } from "../infra/engines.ts";
import {
  ENTRY_OVERHEAD_BYTES,
  MemoryPushStatusStore,
  MemoryStreamStore,
  STREAM_OVERHEAD_BYTES,
} from "../infra/memory/streams.ts";
import { RedisConnection } from "../infra/redis/client.ts";
import type { RedisSessionStore } from "../infra/redis/sessions.ts";
import { RedisPushStatusStore, RedisStreamStore } from "../infra/redis/streams.ts";
import type { StreamEntryInit } from "../infra/streams.ts";
import { streamStoreSuite } from "./engine_suites/streams_suite.ts";
import { testConfig } from "./fixtures/logic_fixtures.ts";
import { type RedisTarget, redisTargets, uniqueKeyPrefix } from "./redis_cluster_env.ts";

const utf8 = new TextEncoder();
const entry = (pushId: string): StreamEntryInit => ({
  pushId,
  op: 1000,
  body: utf8.encode(pushId),
});

// ---------------------------------------------------------------------------- memory

streamStoreSuite("memory", ({ size, ttlMs, statusTtlMs }) => {
  let t = Date.now();
  const now = () => t;
  const streams = new MemoryStreamStore({ size, ttlMs, maxStreams: 10_000, now });
  const status = new MemoryPushStatusStore({ ttlMs: statusTtlMs, now });
  return Promise.resolve({
    streams,
    status,
    // The embedded process has one store: a second job is the same one.
    second: () => Promise.resolve(streams),
    lose: (s: string) => Promise.resolve(void streams.delete(s)),
    advance: (ms: number) => void (t += ms),
    cleanup: async () => {
      await streams.close();
      await status.close();
    },
  });
});

Deno.test("memory streams: past max_streams the least recently appended goes", async () => {
  const store = new MemoryStreamStore({ size: 10, ttlMs: 60_000, maxStreams: 3 });
  try {
    const a = await store.append("a", [entry("x")]);
    const b = await store.append("b", [entry("x")]);
    await store.append("c", [entry("x")]);
    await store.recover("b", null); // reading does not count as use
    assert.equal((await store.append("a", [entry("y")])).epoch, a.epoch, "a is now the newest");
    await store.append("d", [entry("x")]);
    assert.equal(store.streams, 3);
    assert.deepEqual(await store.recover("b", { epoch: b.epoch, pos: 1 }), {
      epoch: "",
      top: 0,
      recovered: false,
      reason: "epoch_changed",
      entries: [],
    }, "b was evicted");
    assert.equal((await store.recover("a", null)).top, 2);
    const b2 = await store.append("b", [entry("x")]);
    assert.notEqual(b2.epoch, b.epoch);
    assert.deepEqual(b2.positions, [1]);
    assert.equal((await store.recover("c", null)).epoch, "", "c, now the oldest, went for b");
  } finally {
    await store.close();
  }
});

Deno.test("memory streams: expired streams are dropped by later appends, unread", async () => {
  let t = 0;
  const store = new MemoryStreamStore({ size: 10, ttlMs: 1000, maxStreams: 100, now: () => t });
  try {
    for (let i = 0; i < 50; i++) await store.append(`s${i}`, [entry("x")]);
    t = 500;
    await store.append("s0", [entry("y")]); // s0 renewed
    t = 1000;
    await store.append("fresh", [entry("x")]);
    assert.equal(store.streams, 2, "s1…s49 expired and dropped; s0 and fresh remain");
    assert.equal((await store.recover("s0", null)).top, 2);
    t = 1500;
    assert.equal((await store.recover("s0", null)).epoch, "", "expired on read too");
    assert.equal(store.streams, 1);
  } finally {
    await store.close();
  }
});

Deno.test("memory streams: past max_bytes the least recently appended streams go whole", async () => {
  const maxBytes = 64 * 1024;
  const store = new MemoryStreamStore({ size: 8, ttlMs: 60_000, maxStreams: 10_000, maxBytes });
  // 10 entries of 50 bytes per stream, trimmed to 8: ≈ 3.8 KB each, so ≈ 17 of 200 fit.
  const batch = ids(10).map((pushId) => ({ pushId, op: 1000, body: new Uint8Array(50) }));
  const cost = (name: string) =>
    STREAM_OVERHEAD_BYTES + name.length +
    batch.slice(2).reduce((n, e) => n + ENTRY_OVERHEAD_BYTES + e.pushId.length + 50, 0);
  try {
    const epochs: string[] = [];
    for (let i = 0; i < 200; i++) {
      epochs.push((await store.append(`room:s${i}`, batch)).epoch);
      assert.ok(store.bytes <= maxBytes, `after s${i}: ${store.bytes} bytes`);
    }
    const kept: number[] = [];
    for (let i = 0; i < 200; i++) {
      const r = await store.recover(`room:s${i}`, { epoch: epochs[i], pos: 2 });
      if (r.recovered) {
        assert.deepEqual([r.epoch, r.top, r.entries.length], [epochs[i], 10, 8], `s${i}`);
        kept.push(i);
      } else {
        assert.deepEqual([r.epoch, r.top, r.reason], ["", 0, "epoch_changed"], `s${i} evicted`);
      }
    }
    const first = 200 - kept.length;
    assert.deepEqual(kept, Array.from({ length: kept.length }, (_, k) => first + k), "the newest");
    assert.equal(store.streams, kept.length);
    // The count is exact (trimmed entries given back), and no more was evicted than needed.
    const held = kept.reduce((n, i) => n + cost(`room:s${i}`), 0);
    assert.equal(store.bytes, held);
    assert.ok(held + cost(`room:s${first - 1}`) > maxBytes, `${kept.length} streams kept`);
    const again = await store.append("room:s0", batch);
    assert.notEqual(again.epoch, epochs[0], "an evicted stream starts a new epoch");
    assert.deepEqual(again.positions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal((await store.recover(`room:s${first}`, null)).epoch, "", "the oldest made room");
    for (const i of [0, ...kept]) store.delete(`room:s${i}`);
    assert.deepEqual([store.bytes, store.streams], [0, 0]);
  } finally {
    await store.close();
  }
});

Deno.test("memory streams: one append over max_bytes lands, alone", async () => {
  const maxBytes = 20_000;
  const store = new MemoryStreamStore({ size: 100, ttlMs: 60_000, maxStreams: 100, maxBytes });
  const big = (pushId: string) => ({ pushId, op: 1000, body: new Uint8Array(10_000).fill(7) });
  try {
    await store.append("room:a", [entry("x")]);
    const old = await store.append("room:big", [entry("o1"), entry("o2")]);
    const huge = await store.append("room:big", ["h1", "h2", "h3"].map(big));
    assert.equal(huge.epoch, old.epoch, "the stream itself is not evicted");
    assert.deepEqual(huge.positions, [3, 4, 5]);
    assert.equal(store.streams, 1, "every other stream made room");
    assert.equal((await store.recover("room:a", null)).epoch, "");
    assert.ok(store.bytes > maxBytes && store.bytes < 3 * 10_000 + 2_000, `${store.bytes}`);
    // Its older entries went too: a client behind them is told so, one at pos 2 gets all three.
    const behind = await store.recover("room:big", { epoch: old.epoch, pos: 1 });
    assert.deepEqual([behind.recovered, behind.reason], [false, "window_passed"]);
    const r = await store.recover("room:big", { epoch: old.epoch, pos: 2 });
    assert.deepEqual(r.entries.map((e) => [e.pos, e.pushId, e.body.length]), [
      [3, "h1", 10_000],
      [4, "h2", 10_000],
      [5, "h3", 10_000],
    ]);
    // The next append elsewhere drops it whole, and the bound holds again.
    await store.append("room:c", [entry("x")]);
    assert.deepEqual([store.streams, (await store.recover("room:big", null)).epoch], [1, ""]);
    assert.ok(store.bytes <= maxBytes);
  } finally {
    await store.close();
  }
});

Deno.test("memory streams: openEngines passes streams.memory.max_bytes", async () => {
  const e = await openEngines(testConfig("streams.memory.max_bytes=1MiB"), ["streams"]);
  try {
    const body = new Uint8Array(100_000);
    for (let i = 0; i < 12; i++) {
      await e.streams.append(`room:${i}`, [{ pushId: "p", op: 1, body }]);
    }
    const store = e.streams as MemoryStreamStore;
    assert.ok(store.bytes <= 1024 * 1024, `${store.bytes}`);
    assert.equal(store.streams, 10, "ten of 100 KB fit in 1 MiB");
    assert.equal((await e.streams.recover("room:1", null)).epoch, "");
    assert.equal((await e.streams.recover("room:2", null)).top, 1);
  } finally {
    await e.close();
  }
});

Deno.test("memory streams: bad bounds throw; a closed store rejects", async () => {
  assert.throws(() => new MemoryStreamStore({ size: 0, ttlMs: 1, maxStreams: 1 }), RangeError);
  assert.throws(() => new MemoryStreamStore({ size: 1, ttlMs: 0, maxStreams: 1 }), RangeError);
  assert.throws(() => new MemoryStreamStore({ size: 1, ttlMs: 1, maxStreams: 0 }), RangeError);
  assert.throws(
    () => new MemoryStreamStore({ size: 1, ttlMs: 1, maxStreams: 1, maxBytes: 0 }),
    RangeError,
  );
  assert.throws(() => new MemoryPushStatusStore({ ttlMs: 0 }), RangeError);
  assert.throws(() => new MemoryPushStatusStore({ ttlMs: 1, maxTargets: 0 }), RangeError);
  const store = new MemoryStreamStore({ size: 1, ttlMs: 1000, maxStreams: 1 });
  const status = new MemoryPushStatusStore({ ttlMs: 1000 });
  await store.close();
  await status.close();
  await assert.rejects(() => store.append("a", [entry("x")]), /closed/);
  await assert.rejects(() => store.recover("a", null), /closed/);
  await assert.rejects(() => status.get("p"), /closed/);
});

Deno.test("memory push status: expired records go on create; maxTargets bounds the rest", async () => {
  let t = 0;
  const status = new MemoryPushStatusStore({ ttlMs: 1000, maxTargets: 10, now: () => t });
  try {
    for (let i = 0; i < 4; i++) await status.create(`old${i}`, ["mid:1", "mid:2"]);
    t = 1000;
    await status.create("new0", ["mid:1", "mid:2", "mid:3"]);
    assert.equal(status.records, 1, "the four expired records were dropped unread");
    await status.create("new1", ["mid:1", "mid:2", "mid:3"]);
    await status.create("new2", ["mid:1", "mid:2", "mid:3"]);
    await status.create("new3", ["mid:1", "mid:2", "mid:3"]); // 12 targets > 10: new0 goes
    assert.equal(status.records, 3);
    assert.equal(await status.get("new0"), null);
    assert.equal((await status.get("new3"))?.pending, 3);
    // One push over the bound on its own is still kept (the others make room).
    const many = Array.from({ length: 20 }, (_, i) => `mid:${i}`);
    await status.create("big", many);
    assert.equal(status.records, 1);
    assert.equal((await status.get("big"))?.targets.length, 20);
  } finally {
    await status.close();
  }
});

// ---------------------------------------------------------------------------- redis

// The single Redis and the 3-master cluster: the suite and the key layout on both.
for (const redis of await redisTargets()) {
  streamStoreSuite(redis.name, async ({ size, ttlMs, statusTtlMs }) => {
    redis.assertReachable();
    const keyPrefix = uniqueKeyPrefix();
    const opened: { close(): Promise<void> }[] = [];
    const open = async <T extends { close(): Promise<void> }>(p: Promise<T>) => {
      const s = await p;
      opened.push(s);
      return s;
    };
    const streamOpts = { ...redis.options(keyPrefix), size, ttlMs };
    const streams = await open(RedisStreamStore.connect(streamOpts));
    const status = await open(
      RedisPushStatusStore.connect({ ...redis.options(keyPrefix), ttlMs: statusTtlMs }),
    );
    return {
      streams,
      status,
      second: () => open(RedisStreamStore.connect(streamOpts)),
      lose: (s: string) => unlink(redis, streams.keysOf(s)),
      cleanup: async () => {
        await redis.deleteKeys(keyPrefix);
        for (const s of opened) await s.close();
      },
    };
  }, { ignore: redis.ignore });

  /**
   * Registers a test on this Redis with stores of size 10 and TTLs of 90 s
   * under a fresh prefix and a plain client to look at the keys; all
   * closed and deleted after (ignored when Redis is absent, failing under CI).
   */
  const redisTest = (name: string, fn: (t: RedisStores) => Promise<void>) =>
    Deno.test({
      name: `${redis.name} streams: ${name}`,
      ignore: redis.ignore,
      fn: async () => {
        redis.assertReachable();
        const prefix = uniqueKeyPrefix();
        const opts = { ...redis.options(prefix), size: 10, ttlMs: 90_000 };
        const [streams, status] = await Promise.all([
          RedisStreamStore.connect(opts),
          RedisPushStatusStore.connect(opts),
        ]);
        const raw = redis.raw();
        try {
          await fn({ streams, status, raw, prefix });
        } finally {
          raw.disconnect();
          await Promise.all([streams.close(), status.close()]);
          await redis.deleteKeys(prefix);
        }
      },
    });

  redisTest("one hash tag per stream, the three keys' TTL renewed by append", async (t) => {
    const { streams: store, raw, prefix } = t;
    assert.deepEqual(store.keysOf("room:live://1"), [
      `${prefix}st:{room:live://1}:m`,
      `${prefix}st:{room:live://1}:l`,
      `${prefix}st:{room:live://1}:i`,
    ]);
    assert.equal(store.keysOf("room:a}b%c{")[1], `${prefix}st:{room:a%7Db%25c{}:l`);
    for (const name of ["room:live://1", "room:}{", "room:{x}", "mid:%7D", "room:é😀"]) {
      const { epoch } = await store.append(name, [entry("a"), entry("b")]);
      const [m, l, i] = store.keysOf(name);
      assert.deepEqual(await raw.hgetall(m), { e: epoch, t: "2" }, name);
      assert.deepEqual(await raw.hgetall(i), { a: "1", b: "2" }, name);
      const [first] = await raw.lrangeBuffer(l, 0, 0);
      assert.match(first.toString("latin1"), /^1,\d{13},1000,0,a,a$/, name);
      for (const k of [m, l, i]) {
        const ttl = await raw.pttl(k);
        assert.ok(ttl > 80_000 && ttl <= 90_000, `${k} pttl ${ttl}`);
      }
      if (redis.clusterNodes.length > 0) {
        const slots = await Promise.all([m, l, i].map((k) => raw.call("CLUSTER", "KEYSLOT", k)));
        assert.equal(new Set(slots).size, 1, `${name}: one slot, got ${slots}`);
      }
    }
    assert.equal(await redis.countKeys(prefix), 15);
    // Trimming keeps the id index in step with the list.
    await store.append("room:live://1", ids(12).map(entry));
    const [, l, i] = store.keysOf("room:live://1");
    assert.equal(await raw.llen(l), 10);
    assert.deepEqual(
      await raw.hgetall(i),
      Object.fromEntries(ids(12).slice(2).map((id, n) => [id, String(n + 5)])),
    );
    // a, b at 1, 2; p0…p11 at 3…14; kept 5…14: p2 is held at 5, p1 was trimmed.
    const again = await store.append("room:live://1", [entry("p2"), entry("p1")]);
    assert.deepEqual(again.positions, [5, 15]);
  });

  redisTest("a history that lost any one of its keys starts a new epoch", async (t) => {
    const { streams: store } = t;
    for (const lost of [0, 1, 2]) {
      const s = `room:part${lost}`;
      const { epoch } = await store.append(s, ids(3).map(entry));
      await t.raw.unlink(store.keysOf(s)[lost]);
      const r = await store.recover(s, { epoch, pos: 1 });
      // Without the meta or the list the readers see no history; the append checks all three.
      if (lost !== 2) assert.deepEqual([r.epoch, r.reason], ["", "epoch_changed"], `lost ${lost}`);
      const again = await store.append(s, [entry("p0"), entry("x")]);
      assert.notEqual(again.epoch, epoch, `lost ${lost}`);
      assert.deepEqual(again.positions, [1, 2], `lost ${lost}`);
      assert.deepEqual((await store.range(s, { limit: 10 })).entries.map((e) => e.pushId), [
        "p0",
        "x",
      ]);
    }
  });

  redisTest("an append sent again as EVAL after SCRIPT FLUSH says so (reissued)", async (t) => {
    const { streams: store, raw } = t;
    const first = await store.append("mid:1", [entry("a")]);
    assert.equal(first.reissued, undefined);
    const masters = redis.clusterNodes.length > 0 ? (raw as Cluster).nodes("master") : [raw];
    for (const m of masters) await m.script("FLUSH");
    const again = await store.append("mid:1", [entry("b")]);
    assert.deepEqual([again.epoch, again.positions, again.reissued], [first.epoch, [2], true]);
    // EVAL cached the script: the next append is a plain EVALSHA again.
    assert.equal((await store.append("mid:1", [entry("c")])).reissued, undefined);
  });

  redisTest("stores opened on a borrowed connection leave it open when closed", async (t) => {
    const conn = await RedisConnection.connect(redis.options(t.prefix));
    try {
      const streams = RedisStreamStore.open(conn, { size: 10, ttlMs: 90_000 });
      const status = RedisPushStatusStore.open(conn, { ttlMs: 90_000 });
      assert.equal(streams.connection, conn);
      assert.equal(status.connection, conn);
      assert.equal(streams.orderedVia, redis.clusterNodes.length > 0 ? undefined : conn);
      // The connection's key prefix names the keys, as the stores that own theirs do.
      assert.deepEqual(streams.keysOf("room:x"), t.streams.keysOf("room:x"));
      assert.equal(status.keyOf("id"), t.status.keyOf("id"));
      await streams.append("room:x", [entry("a")]);
      await status.create("id", ["mid:1"]);
      assert.equal((await t.streams.recover("room:x", null)).top, 1);
      assert.equal((await t.status.get("id"))?.pending, 1);
      await streams.close();
      await status.close();
      assert.equal(streams.ready, false);
      await assert.rejects(streams.append("room:x", [entry("b")]), /append: engine is closed/);
      await assert.rejects(status.get("id"), /status get: engine is closed/);
      assert.equal(conn.ready, true, "the owner's connection is still up");
      assert.equal(await conn.call("ping", (c) => c.ping()), "PONG");
    } finally {
      await conn.close();
    }
  });

  redisTest("push status: one hash per push, TTL from creation", async (t) => {
    const { status, raw, prefix } = t;
    await status.create("Xk3_-9", ["mid:1", "key:a,b"]);
    await status.delivered("Xk3_-9", "mid:1", 2);
    await status.acked([{ pushId: "Xk3_-9", key: "a,b", mid: 1 }]);
    const key = status.keyOf("Xk3_-9");
    assert.equal(key, `${prefix}ps:{Xk3_-9}`);
    const h = await raw.hgetall(key);
    assert.deepEqual({ ...h, c: "" }, {
      c: "",
      "t:mid:1": "0,2,0",
      "t:key:a,b": "1,-1,1",
      "k:a,b": "1",
    });
    const ttl = await raw.pttl(key);
    assert.ok(ttl > 80_000 && ttl <= 90_000, `pttl ${ttl}`);
    assert.equal(await redis.countKeys(prefix), 1, "acks of unknown ids write nothing");
  });
}

// ---------------------------------------------------------------------------- openEngines

/** Appends 7 entries and checks that 5 are kept (the configured size) and a status reads back. */
async function checkOpened(e: Awaited<ReturnType<typeof openEngines<"streams" | "pushStatus">>>) {
  await e.streams.append("room:cfg", ids(7).map(entry));
  assert.deepEqual((await e.streams.range("room:cfg", { limit: 100 })).entries.map((x) => x.pos), [
    3,
    4,
    5,
    6,
    7,
  ]);
  await e.pushStatus.create("cfg", ["mid:1"]);
  assert.equal((await e.pushStatus.get("cfg"))?.pending, 1);
}

Deno.test("engines: the stream stores follow sessions.engine; inMemory forces memory", async () => {
  const mem = await openEngines(testConfig("streams.history.size=5"), ["streams", "pushStatus"]);
  try {
    assert.ok(mem.streams instanceof MemoryStreamStore);
    assert.ok(mem.pushStatus instanceof MemoryPushStatusStore);
    await checkOpened(mem);
  } finally {
    await mem.close();
  }
  // Nothing listens on port 1: a Redis engine would fail to connect.
  const forced = await openEngines(
    testConfig("sessions.engine=redis", "redis.url=redis://127.0.0.1:1", "streams.history.size=5"),
    ["streams", "pushStatus"],
    { inMemory: true },
  );
  try {
    assert.ok(forced.streams instanceof MemoryStreamStore);
    await checkOpened(forced);
  } finally {
    await forced.close();
  }
});

/** openEngines on this Redis under `prefix`, with `streams.history.size` 5. */
function openOn<K extends EngineName>(redis: RedisTarget, prefix: string, names: K[]) {
  return openEngines(
    testConfig(
      "sessions.engine=redis",
      `redis.key_prefix=${prefix}`,
      "streams.history.size=5",
      ...redis.configSets(),
    ),
    names,
  );
}

for (const redis of await redisTargets()) {
  Deno.test({
    name: `${redis.name} engines: sessions.engine = redis opens the Redis stream stores`,
    ignore: redis.ignore,
    fn: async () => {
      redis.assertReachable();
      const prefix = uniqueKeyPrefix();
      const e = await openOn(redis, prefix, ["streams", "pushStatus"]);
      try {
        assert.ok(e.streams instanceof RedisStreamStore);
        assert.ok(e.pushStatus instanceof RedisPushStatusStore);
        await checkOpened(e);
        assert.equal(await redis.countKeys(prefix), 4, "3 stream keys and 1 status, prefixed");
      } finally {
        await e.close();
        await redis.deleteKeys(prefix);
      }
    },
  });

  const single = redis.clusterNodes.length === 0;
  Deno.test({
    name: `${redis.name} engines: with the sessions, the stream stores ${
      single ? "share their connection (orderedVia)" : "keep their own connections"
    }`,
    ignore: redis.ignore,
    fn: async () => {
      redis.assertReachable();
      const prefix = uniqueKeyPrefix();
      const e = await openOn(redis, prefix, ["sessions", "streams", "pushStatus"]);
      try {
        const sessions = e.sessions as RedisSessionStore;
        const streams = e.streams as RedisStreamStore;
        const status = e.pushStatus as RedisPushStatusStore;
        if (single) {
          assert.ok(sessions.orderedVia instanceof RedisConnection);
          assert.equal(streams.orderedVia, sessions.orderedVia);
          assert.equal(streams.connection, sessions.orderedVia);
          assert.equal(status.connection, sessions.orderedVia);
        } else {
          assert.equal(sessions.orderedVia, undefined);
          assert.equal(streams.orderedVia, undefined);
          assert.notEqual(streams.connection, status.connection);
        }
        await checkOpened(e);
        await sessions.addMapping(1, "k1", "c1");
        // One redis.key_prefix for all: 3 stream keys, 1 status, mid_1 and key_k1.
        assert.equal(await redis.countKeys(prefix), 6);
      } finally {
        await e.close();
        await redis.deleteKeys(prefix);
      }
      // Closed in reverse order, the shared connection last: nothing left to reject.
      await assert.rejects(e.sessions.keysByMids([1]), /engine is closed/);
    },
  });
  // Asked for alone (no session store to share), the stream stores open their own.
  Deno.test({
    name:
      `${redis.name} engines: the stream stores asked for without the sessions open their own connections`,
    ignore: redis.ignore,
    fn: async () => {
      redis.assertReachable();
      const e = await openOn(redis, uniqueKeyPrefix(), ["streams", "pushStatus"]);
      try {
        const streams = e.streams as RedisStreamStore;
        assert.notEqual(streams.connection, (e.pushStatus as RedisPushStatusStore).connection);
        assert.equal(streams.orderedVia, single ? streams.connection : undefined);
      } finally {
        await e.close();
      }
    },
  });
}

/** What a Redis-only test gets. */
interface RedisStores {
  streams: RedisStreamStore;
  status: RedisPushStatusStore;
  /** A plain client on the same Redis. */
  raw: Redis | Cluster;
  prefix: string;
}

/** Deletes these keys one by one (on a cluster a command's keys must share a slot). */
async function unlink(redis: RedisTarget, keys: string[]): Promise<void> {
  const raw = redis.raw();
  try {
    for (const k of keys) await raw.unlink(k);
  } finally {
    raw.disconnect();
  }
}

function ids(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `p${i}`);
}

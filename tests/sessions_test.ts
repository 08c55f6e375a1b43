/**
 * Session store: the shared suite against memory and Redis, plus what only
 * one engine has (memory sweeping, Redis key layout and outages).
 */

import assert from "node:assert/strict";
import { DEFAULT_ROUTE_TTL_MS, MemorySessionStore } from "../infra/memory/sessions.ts";
import { RedisEngineError } from "../infra/redis/client.ts";
import { createRedisEngines, RedisSessionStore } from "../infra/redis/mod.ts";
import { sessionStoreSuite } from "./engine_suites/sessions_suite.ts";
import { assertNoLeakedHandles, openHandles, waitFor } from "./engine_suites/harness.ts";
import { hasRedisServerBinary, ownRedisServer } from "./redis_env.ts";
import { redisTargets, uniqueKeyPrefix } from "./redis_cluster_env.ts";

// ---------------------------------------------------------------------------- memory

sessionStoreSuite("memory", ({ ttlMs }) => {
  let t = 1_700_000_000_000;
  const store = new MemorySessionStore({ ttlMs, now: () => t });
  return Promise.resolve({
    store,
    advance: (ms: number) => void (t += ms),
    cleanup: () => store.close(),
  });
});

Deno.test("memory sessions: defaults to goim's 30 min route TTL", async () => {
  const store = new MemorySessionStore();
  try {
    assert.equal(store.ttlMs, DEFAULT_ROUTE_TTL_MS);
    assert.equal(DEFAULT_ROUTE_TTL_MS, 30 * 60_000);
  } finally {
    await store.close();
  }
  assert.throws(() => new MemorySessionStore({ ttlMs: 0 }), RangeError);
});

Deno.test("memory sessions: sweep() drops expired entries nobody reads", async () => {
  let t = 0;
  const store = new MemorySessionStore({ ttlMs: 1000, now: () => t, sweepIntervalMs: 0 });
  try {
    for (let i = 0; i < 100; i++) await store.addMapping(i % 10 + 1, `k${i}`, "s1");
    await store.addServerOnline({ server: "s1", roomCount: {}, updated: 0 });
    t = 500;
    for (let i = 0; i < 10; i++) await store.expireMapping(1, `k${i * 10}`);
    assert.deepEqual(store.size, { keys: 100, mids: 10, online: 1 });
    t = 1000;
    assert.equal(store.sweep(), 90 + 9 + 1);
    assert.deepEqual(store.size, { keys: 10, mids: 1, online: 0 });
    t = 1500;
    assert.equal(store.sweep(), 11);
    assert.deepEqual(store.size, { keys: 0, mids: 0, online: 0 });
  } finally {
    await store.close();
  }
});

Deno.test("memory sessions: the periodic sweep runs and close() stops it", async () => {
  const before = openHandles();
  const store = new MemorySessionStore({ ttlMs: 1, sweepIntervalMs: 10 });
  await store.addMapping(0, "k", "s");
  await waitFor(() => store.size.keys === 0, { timeoutMs: 2000, what: "the timer to sweep k" });
  await store.close();
  await assertNoLeakedHandles(before);
});

// ---------------------------------------------------------------------------- redis

// The single Redis and the 3-master cluster: the suite and the key layout on both.
for (const redis of await redisTargets()) {
  /** Registers a test on this Redis (ignored when it is absent, failing under CI). */
  const redisTest = (name: string, fn: (prefix: string) => Promise<void>) =>
    Deno.test({
      name: `${redis.name} sessions: ${name}`,
      ignore: redis.ignore,
      fn: async () => {
        redis.assertReachable();
        const prefix = uniqueKeyPrefix();
        try {
          await fn(prefix);
        } finally {
          await redis.deleteKeys(prefix);
        }
      },
    });

  sessionStoreSuite(redis.name, async ({ ttlMs }) => {
    redis.assertReachable();
    const keyPrefix = uniqueKeyPrefix();
    const store = await RedisSessionStore.connect({
      ...redis.options(keyPrefix),
      routeTtlMs: ttlMs,
    });
    return {
      store,
      cleanup: async () => {
        await redis.deleteKeys(keyPrefix);
        await store.close();
      },
    };
  }, { ignore: redis.ignore });

  redisTest("uses goim's key layout under the prefix", async (prefix) => {
    const store = await RedisSessionStore.connect({
      ...redis.options(prefix),
      routeTtlMs: 90_000,
    });
    const raw = redis.raw();
    try {
      await store.addMapping(42, "k1", "comet-a");
      await store.addMapping(42, "k2", "comet-b");
      await store.addMapping(0, "k3", "comet-a");
      await store.addServerOnline({ server: "comet-a", roomCount: { "live://1": 2 }, updated: 7 });
      assert.deepEqual(await raw.hgetall(`${prefix}mid_42`), { k1: "comet-a", k2: "comet-b" });
      assert.equal(await raw.get(`${prefix}key_k1`), "comet-a");
      assert.equal(await raw.get(`${prefix}key_k3`), "comet-a");
      assert.equal(await raw.exists(`${prefix}mid_0`), 0, "mid 0 writes no hash");
      // goim's online hash: field CityHash32("live://1") % 64 = 19, updated in seconds
      // (tests/online_goim_format_test.ts has the format's golden tests).
      assert.deepEqual(await raw.hgetall(`${prefix}ol_comet-a`), {
        19: '{"server":"comet-a","room_count":{"live://1":2},"updated":0}',
      });
      for (const k of ["mid_42", "key_k1", "key_k3", "ol_comet-a"]) {
        const ttl = await raw.pttl(`${prefix}${k}`);
        assert.ok(ttl > 80_000 && ttl <= 90_000, `${k} pttl ${ttl}`);
      }
      assert.equal(await redis.countKeys(prefix), 5);

      // A route written by goim itself (no prefix logic involved) is read back.
      await raw.set(`${prefix}key_goim`, "comet-z");
      await raw.hset(`${prefix}mid_43`, "goim", "comet-z");
      assert.deepEqual(await store.serversByKeys(["goim"]), ["comet-z"]);
      assert.equal((await store.keysByMids([43])).get("goim"), "comet-z");
    } finally {
      raw.disconnect();
      await store.close();
    }
  });

  redisTest("prefixes keep stores apart", async (prefix) => {
    const a = await RedisSessionStore.connect(redis.options(`${prefix}a:`));
    const b = await RedisSessionStore.connect(redis.options(`${prefix}b:`));
    try {
      await a.addMapping(1, "k", "sa");
      assert.deepEqual(await b.serversByKeys(["k"]), [null]);
      assert.equal((await b.keysByMids([1])).size, 0);
      assert.equal(a.ttlMs, DEFAULT_ROUTE_TTL_MS);
    } finally {
      await a.close();
      await b.close();
    }
  });

  redisTest("createRedisEngines opens both engines and closes both", async (prefix) => {
    const before = openHandles();
    const e = await createRedisEngines({ ...redis.options(prefix), routeTtlMs: 5000 });
    assert.ok(e.sessions.ready && e.registry.ready);
    await e.sessions.addMapping(1, "k", "s");
    assert.equal(e.sessions.ttlMs, 5000);
    assert.deepEqual(await e.registry.list(), []);
    await e.close();
    await assertNoLeakedHandles(before);
  });
}

Deno.test("redis sessions: connecting to nothing rejects fast and leaves nothing open", async () => {
  const before = openHandles();
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close(); // now nothing listens there
  const t0 = performance.now();
  const err = await RedisSessionStore.connect({
    url: `redis://127.0.0.1:${port}`,
    commandTimeoutMs: 500,
  })
    .then(() => null, (e) => e);
  assert.ok(err instanceof RedisEngineError, String(err));
  assert.match(
    err.message,
    new RegExp(`redis 127\\.0\\.0\\.1:${port}: cannot connect: .*ECONNREFUSED`),
  );
  assert.ok(performance.now() - t0 < 1500, "bounded");
  await assert.rejects(
    () => createRedisEngines({ url: `redis://127.0.0.1:${port}`, commandTimeoutMs: 500 }),
    RedisEngineError,
  );
  await assert.rejects(() => RedisSessionStore.connect({ url: "http://x" }), /invalid url/);
  // ioredis's disconnect() leaves a no-op timer (≤ 500 ms) behind a socket that never
  // connected; nothing else may remain.
  await assertNoLeakedHandles(before, 1500);
});

// A Redis of the test's own, so it can be killed and frozen without touching the shared one.
const ownRedis = await hasRedisServerBinary();
if (!ownRedis) console.warn("note: no redis-server binary; Redis outage tests are ignored");

Deno.test({
  name: "redis sessions: Redis down → fast clear rejections; back → works again",
  ignore: !ownRedis,
  fn: () =>
    ownRedisServer(async (srv) => {
      const before = openHandles();
      const states: string[] = [];
      const store = await RedisSessionStore.connect({
        url: srv.url,
        commandTimeoutMs: 2000,
        onStateChange: (s) => states.push(s),
      });
      try {
        await store.addMapping(1, "k", "s1");
        assert.equal(await store.delMapping(1, "k", "s1"), true, "Lua script loaded");
        await srv.stop();
        await waitFor(() => !store.ready, { timeoutMs: 2000, what: "the client to notice" });
        for (let i = 0; i < 50; i++) {
          const t0 = performance.now();
          const err = await store.serversByKeys(["k"]).then(() => null, (e) => e);
          assert.ok(err instanceof RedisEngineError, String(err));
          assert.match(err.message, /serversByKeys: Redis unreachable/);
          assert.ok(performance.now() - t0 < 250, "rejected at once, not queued until the timeout");
        }
        await assert.rejects(() => store.addMapping(1, "k", "s1"), /addMapping: Redis unreachable/);
        await assert.rejects(() => store.keysByMids([1]), /keysByMids: Redis unreachable/);
        await srv.start();
        await waitFor(() => store.ready, { timeoutMs: 5000, what: "the client to reconnect" });
        await store.addMapping(1, "k", "s1");
        // The new Redis has an empty script cache: EVALSHA falls back to EVAL.
        assert.equal(await store.delMapping(1, "k", "s1"), true);
        assert.deepEqual(states, ["down", "up"]);
      } finally {
        await store.close();
      }
      await assertNoLeakedHandles(before);
    }),
});

Deno.test({
  name: "redis sessions: a Redis that stops answering → commands time out; close() still returns",
  ignore: !ownRedis,
  fn: () =>
    ownRedisServer(async (srv) => {
      const before = openHandles();
      const store = await RedisSessionStore.connect({ url: srv.url, commandTimeoutMs: 300 });
      try {
        srv.pause();
        const t0 = performance.now();
        await assert.rejects(
          () => store.addMapping(1, "k", "s1"),
          /addMapping: no reply within the command timeout/,
        );
        const took = performance.now() - t0;
        assert.ok(took >= 250 && took < 1500, `took ${took} ms`);
        await assert.rejects(() => store.serversByKeys(["k"]), /timeout/);
        srv.resume();
        // (The timed-out MULTI was still delivered and may be applied now: a timeout
        // means "unknown outcome", which is fine for idempotent route writes.)
        await waitFor(() => store.serversByKeys(["k"]).then(() => true, () => false), {
          timeoutMs: 3000,
          what: "the unfrozen Redis to answer",
        });
        srv.pause();
        const c0 = performance.now();
        await store.close(); // QUIT times out, then the socket is dropped
        assert.ok(performance.now() - c0 < 1500, "close is bounded");
        srv.resume();
      } finally {
        srv.resume();
        await store.close();
      }
      await assertNoLeakedHandles(before);
    }),
});

Deno.test({
  name: "redis sessions: operations in flight together each time out at their own deadline",
  ignore: !ownRedis,
  fn: () =>
    ownRedisServer(async (srv) => {
      const before = openHandles();
      const store = await RedisSessionStore.connect({ url: srv.url, commandTimeoutMs: 400 });
      try {
        srv.pause();
        const t0 = performance.now();
        const settledAt = (p: Promise<unknown>) =>
          p.then(() => -1, (err: Error) => {
            assert.match(err.message, /no reply within the command timeout/);
            return performance.now() - t0;
          });
        // One timer serves both (infra/redis/client.ts): the later one must not go early.
        const first = settledAt(store.serversByKeys(["a"]));
        await new Promise((r) => setTimeout(r, 200));
        const second = settledAt(store.serversByKeys(["b"]));
        const [a, b] = await Promise.all([first, second]);
        assert.ok(a >= 350 && a < 1400, `first rejected after ${a} ms`);
        assert.ok(b >= 550 && b < 1600, `second rejected after ${b} ms`);
        srv.resume();
        await waitFor(() => store.serversByKeys(["k"]).then(() => true, () => false), {
          timeoutMs: 3000,
          what: "the unfrozen Redis to answer",
        });
      } finally {
        srv.resume();
        await store.close();
      }
      await assertNoLeakedHandles(before);
    }),
});

Deno.test({
  name: "redis sessions: closing while Redis is down stops reconnecting",
  ignore: !ownRedis,
  fn: () =>
    ownRedisServer(async (srv) => {
      const before = openHandles();
      const store = await RedisSessionStore.connect({ url: srv.url, commandTimeoutMs: 300 });
      await srv.stop();
      await waitFor(() => !store.ready, { timeoutMs: 2000, what: "the client to notice" });
      await store.close();
      await assertNoLeakedHandles(before);
      await assert.rejects(() => store.serversByKeys(["k"]), /engine is closed/);
    }),
});

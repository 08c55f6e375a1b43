/**
 * Comet registry: the shared suite against memory, Redis and Redis Cluster,
 * plus what only one engine has (Redis key layout, pruning, Redis clock).
 */

import assert from "node:assert/strict";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { CLUSTER_TAG, RedisRegistry } from "../infra/redis/registry.ts";
import { comet, registrySuite } from "./engine_suites/registry_suite.ts";
import { waitFor } from "./engine_suites/harness.ts";
import { redisTargets, uniqueKeyPrefix } from "./redis_cluster_env.ts";

registrySuite("memory", () => {
  let t = 1_700_000_000_000;
  const registry = new MemoryRegistry({ now: () => t });
  return Promise.resolve({
    registry,
    advance: (ms: number) => void (t += ms),
    cleanup: () => registry.close(),
  });
});

Deno.test("memory registry: updated comes from the clock; sweep() drops expired", async () => {
  let t = 5000;
  const reg = new MemoryRegistry({ now: () => t });
  try {
    await reg.register(comet("a"), 100);
    await reg.register(comet("b"), 300);
    assert.equal((await reg.list())[0].updated, 5000);
    t += 100;
    assert.equal(reg.sweep(), 1);
    assert.deepEqual((await reg.list()).map((c) => c.id), ["b"]);
  } finally {
    await reg.close();
  }
});

Deno.test("memory registry: records are copies", async () => {
  const reg = new MemoryRegistry();
  try {
    const rec = comet("a");
    await reg.register(rec, 1000);
    rec.addrs.push("changed");
    const [got] = await reg.list();
    assert.deepEqual(got.addrs, ["127.0.0.1", "comet.example"]);
    got.addrs.push("changed too");
    assert.deepEqual((await reg.list())[0].addrs, ["127.0.0.1", "comet.example"]);
  } finally {
    await reg.close();
  }
});

// The single Redis and the 3-master cluster (where the keys carry the hash tag {comets}).
for (const redis of await redisTargets()) {
  registrySuite(redis.name, async () => {
    redis.assertReachable();
    const keyPrefix = uniqueKeyPrefix();
    const registry = await RedisRegistry.connect(redis.options(keyPrefix));
    return {
      registry,
      cleanup: async () => {
        await redis.deleteKeys(keyPrefix);
        await registry.close();
      },
    };
  }, { ignore: redis.ignore });

  Deno.test({
    name: `${redis.name} registry: key layout, Redis clock, and list() prunes dead index members`,
    ignore: redis.ignore,
    fn: async () => {
      redis.assertReachable();
      const prefix = uniqueKeyPrefix();
      const reg = await RedisRegistry.connect(redis.options(prefix));
      const raw = redis.raw();
      // One hash slot for every registry key on a cluster: the tag is the index's name.
      const index = redis.clusterNodes.length > 0 ? `${prefix}${CLUSTER_TAG}` : `${prefix}comets`;
      const record = (id: string) =>
        redis.clusterNodes.length > 0
          ? `${prefix}${CLUSTER_TAG}comet_${id}`
          : `${prefix}comet_${id}`;
      try {
        const t0 = Date.now();
        await reg.register(comet("c1", { connections: 3 }), 500);
        await reg.register(comet("c2"), 60_000);
        assert.deepEqual(await raw.zrange(index, "0", "-1"), ["c1", "c2"]);
        const stored = JSON.parse((await raw.get(record("c1")))!);
        assert.deepEqual(stored, comet("c1", { connections: 3 }), "JSON record without updated");
        const pttl = await raw.pttl(record("c1"));
        assert.ok(pttl > 0 && pttl <= 500, `pttl ${pttl}`);
        // updated is Redis TIME in ms; same machine here, so close to our clock.
        const [c1] = await reg.list();
        assert.ok(Math.abs(c1.updated - t0) < 2000, `updated ${c1.updated} vs now ${t0}`);
        assert.equal(Number(await raw.zscore(index, "c1")), c1.updated);

        await waitFor(async () => (await raw.exists(record("c1"))) === 0, {
          timeoutMs: 5000,
          what: "comet_c1 to expire",
        });
        assert.equal(await raw.zcard(index), 2, "index still names c1 until a list()");
        assert.deepEqual((await reg.list()).map((c) => c.id), ["c2"]);
        assert.deepEqual(await raw.zrange(index, "0", "-1"), ["c2"], "pruned");

        await reg.deregister("c2");
        assert.equal(await raw.exists(index), 0);
        assert.equal(await raw.exists(record("c2")), 0);
        assert.equal(await redis.countKeys(prefix), 0);
      } finally {
        raw.disconnect();
        await reg.close();
        await redis.deleteKeys(prefix);
      }
    },
  });
}

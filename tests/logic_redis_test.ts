// Logic on the Redis engines (distributed mode), on a single Redis and on a
// Redis Cluster: routes written by Connect are what pushes resolve,
// heartbeats bring back lost routes, and two logic processes sharing one
// Redis see each other's online reports.
import assert from "node:assert/strict";
import { RedisRegistry, RedisSessionStore } from "../infra/redis/mod.ts";
import { Logic } from "../logic/logic.ts";
import { redisTargets, uniqueKeyPrefix } from "./redis_cluster_env.ts";
import {
  call,
  comet,
  memoryLogger,
  RecordingProducer,
  testConfig,
  token,
} from "./fixtures/logic_fixtures.ts";

// On the single Redis and on the 3-master cluster.
for (const redis of await redisTargets()) {
  Deno.test({
    name:
      `${redis.name} engines: connect, push by keys and mids, heartbeat re-add, disconnect, shared online`,
    ignore: redis.ignore,
    fn: async () => {
      redis.assertReachable();
      const keyPrefix = uniqueKeyPrefix();
      // streams off: the mid push below is routed by logic, as goim does.
      const config = testConfig(
        "sessions.engine=redis",
        "registry.engine=redis",
        "streams.enabled=false",
      );
      const opts = redis.options(keyPrefix);
      const sessions = await RedisSessionStore.connect({ ...opts, routeTtlMs: 60_000 });
      const sessions2 = await RedisSessionStore.connect({ ...opts, routeTtlMs: 60_000 });
      const registry = await RedisRegistry.connect(opts);
      const producer = new RecordingProducer();
      const logic = new Logic({ config, sessions, registry, producer, log: memoryLogger() });
      // A second logic process on the same Redis.
      const other = new Logic({
        config,
        sessions: sessions2,
        registry,
        producer: new RecordingProducer(),
        log: memoryLogger(),
      });
      try {
        const s = logic.service;
        const a = await s.Connect({ server: "comet-a", cookie: "", token: token({ mid: 31 }) });
        await s.Connect({ server: "comet-b", cookie: "", token: token({ mid: 31, key: "k2" }) });
        const keys = await call(
          logic.handler,
          "POST",
          `/goim/push/keys?operation=1000&keys=${a.key},k2,missing`,
          { body: "x" },
        );
        assert.deepEqual({ ...keys.data as object, id: "" }, { keys: 2, comets: 2, id: "" });
        // The other logic resolves the same routes.
        const mids = await call(other.handler, "POST", "/goim/push/mids?operation=1000&mids=31", {
          body: "y",
        });
        assert.deepEqual({ ...mids.data as object, id: "" }, { keys: 2, comets: 2, id: "" });

        await sessions.delMapping(31, "k2", "comet-b"); // as if Redis lost it
        await s.Heartbeat({ mid: 31, key: "k2", server: "comet-b" });
        assert.deepEqual(await sessions.serversByKeys(["k2"]), ["comet-b"]);

        assert.deepEqual(await s.Disconnect({ mid: 31, key: "k2", server: "comet-a" }), {
          has: false,
        });
        assert.deepEqual(await s.Disconnect({ mid: 31, key: "k2", server: "comet-b" }), {
          has: true,
        });

        await registry.register(comet("comet-a"), 60_000);
        await s.RenewOnline({ server: "comet-a", roomCount: { "live://1": 4 } });
        assert.equal(other.online.count("live://1"), 0);
        await other.online.refresh();
        assert.equal(other.online.count("live://1"), 4);
      } finally {
        await logic.stop();
        await other.stop();
        await sessions.close();
        await sessions2.close();
        await registry.close();
        await redis.deleteKeys(keyPrefix);
      }
    },
  });
}

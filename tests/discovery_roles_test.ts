/**
 * Discovery wired into the roles: the engine opener picks discovery alone
 * or mirrored, and logic registers as goim.logic at its advertised address
 * when started and leaves discovery when stopped.
 */

import assert from "node:assert/strict";
import { DiscoveryClient } from "../infra/discovery/client.ts";
import { CompositeRegistry, DiscoveryRegistry, LOGIC_APPID } from "../infra/discovery/registry.ts";
import { openEngines } from "../infra/engines.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { MemorySessionStore } from "../infra/memory/sessions.ts";
import { RedisRegistry } from "../infra/redis/registry.ts";
import { Logic } from "../logic/logic.ts";
import { memoryLogger, RecordingProducer, testConfig } from "./fixtures/logic_fixtures.ts";
import { discoveryTestNodes, uniqueEnv } from "./discovery_env.ts";
import { redisTestUrl, uniqueKeyPrefix } from "./redis_env.ts";

const disc = await discoveryTestNodes();
const redis = await redisTestUrl();

Deno.test({
  name: "discovery roles: the engine opener picks discovery alone, mirrored, or not at all",
  ignore: redis.ignore,
  fn: async () => {
    redis.assertReachable();
    const common = [
      "discovery.nodes=127.0.0.1:7171",
      `redis.url=${redis.url}`,
      `redis.key_prefix=${uniqueKeyPrefix()}`,
    ];
    const open = async (sets: string[], inMemory = false) => {
      const engines = await openEngines(testConfig(...common, ...sets), ["registry"], {
        inMemory,
      });
      const registry = engines.registry;
      await engines.close();
      return registry;
    };
    // Nothing is sent to discovery until used, so no server is needed here.
    assert.ok((await open(["registry.engine=discovery"])) instanceof DiscoveryRegistry);
    const mirrored = await open(["registry.engine=redis", "discovery.register=true"]);
    assert.ok(mirrored instanceof CompositeRegistry);
    assert.ok((await open(["registry.engine=redis"])) instanceof RedisRegistry);
    assert.ok((await open(["discovery.register=true"])) instanceof CompositeRegistry);
    assert.ok((await open(["registry.engine=discovery"], true)) instanceof MemoryRegistry);
  },
});

Deno.test({
  name: "discovery roles: logic registers as goim.logic at logic.grpc.advertise and leaves on stop",
  ignore: disc.ignore,
  fn: async () => {
    disc.assertReachable();
    const env = uniqueEnv();
    const config = testConfig(
      "registry.engine=discovery",
      `discovery.nodes=${disc.nodes.join(",")}`,
      `discovery.env=${env}`,
      "logic.grpc.advertise=logic-1.internal:3119",
      "node.id=logic-1",
    );
    const engines = await openEngines(config, ["registry"]);
    const logic = new Logic({
      config,
      sessions: new MemorySessionStore({ ttlMs: 60_000 }),
      registry: engines.registry,
      producer: new RecordingProducer(),
      log: memoryLogger(),
    });
    const reader = new DiscoveryClient({ nodes: disc.nodes, env });
    const logics = async () =>
      [...((await reader.fetch(LOGIC_APPID))?.instances.values() ?? [])].flat();
    try {
      await logic.start();
      const [ins, ...more] = await logics();
      assert.equal(more.length, 0);
      assert.equal(ins.hostname, "logic-1");
      assert.deepEqual(ins.addrs, ["grpc://logic-1.internal:3119"]);
      await logic.stop();
      assert.deepEqual(await logics(), []);
    } finally {
      await logic.stop();
      await engines.close();
      reader.close();
    }
  },
});

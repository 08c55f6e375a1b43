/**
 * A draining comet's `state` in every registry engine (docs/CONSOLE.md,
 * "Drain"): written, read back, and absent for an `up` comet so records
 * stay what older versions wrote and read.
 */

import assert from "node:assert/strict";
import { cometInstance, cometRecord } from "../infra/discovery/registry.ts";
import type { Instance } from "../infra/discovery/client.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { RedisRegistry } from "../infra/redis/registry.ts";
import type { Registry } from "../infra/registry.ts";
import { comet } from "./engine_suites/registry_suite.ts";
import { deleteKeys, redisTestUrl, uniqueKeyPrefix } from "./redis_env.ts";

async function roundTrip(registry: Registry): Promise<void> {
  await registry.register(comet("a"), 10_000);
  await registry.register(comet("b", { state: "draining", weight: 0 }), 10_000);
  const [a, b] = await registry.list();
  assert.equal("state" in a, false, "an up comet's record carries no state");
  assert.equal(b.state, "draining");
  assert.equal(b.weight, 0);
  // Back to up (an undrained comet): the field goes away again.
  await registry.register(comet("b"), 10_000);
  assert.equal("state" in (await registry.list())[1], false);
}

Deno.test("registry state: memory engine round trip", async () => {
  const registry = new MemoryRegistry();
  try {
    await roundTrip(registry);
  } finally {
    await registry.close();
  }
});

const redis = await redisTestUrl();

Deno.test({
  name: "registry state: redis engine round trip",
  ignore: redis.ignore,
  fn: async () => {
    redis.assertReachable();
    const keyPrefix = uniqueKeyPrefix();
    const registry = await RedisRegistry.connect({ url: redis.url, keyPrefix });
    try {
      await roundTrip(registry);
    } finally {
      await registry.close();
      await deleteKeys(redis.url, keyPrefix);
    }
  },
});

function instance(metadata: Record<string, string>): Instance {
  return {
    region: "",
    zone: "",
    env: "dev",
    appid: "goim.comet",
    hostname: "c1",
    addrs: ["grpc://127.0.0.1:3109"],
    version: "",
    metadata,
    status: 1,
    regTimestamp: 0n,
    upTimestamp: 0n,
    renewTimestamp: 0n,
    dirtyTimestamp: 0n,
    latestTimestamp: 0n,
  };
}

Deno.test("registry state: discovery metadata says offline and state while draining", () => {
  const up = cometInstance(comet("c1"));
  assert.equal(up.metadata?.offline, "false");
  assert.equal(up.metadata && "state" in up.metadata, false);
  const draining = cometInstance(comet("c1", { state: "draining", weight: 0 }));
  assert.equal(draining.metadata?.offline, "true", "goim's logic offers no offline comet");
  assert.equal(draining.metadata?.state, "draining");

  const back = cometRecord(instance(draining.metadata ?? {}));
  assert.ok(typeof back !== "string");
  assert.equal(back.state, "draining");
  assert.equal(back.weight, 0);
  const upBack = cometRecord(instance(up.metadata ?? {}));
  assert.ok(typeof upBack !== "string");
  assert.equal("state" in upBack, false);
});

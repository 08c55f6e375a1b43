/**
 * The end-to-end suite on the distributed mode: logic, job and two comets
 * as separate processes on a real Kafka, with the Redis engines on a
 * single Redis and on the services' 3-master Redis Cluster.
 */

import assert from "node:assert/strict";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { redisTargets } from "./redis_cluster_env.ts";
import { startDistributedOn } from "./e2e/cluster.ts";
import { deliveryScenario } from "./e2e/suite.ts";

const kafka = await kafkaTestBrokers();

for (const redis of await redisTargets()) {
  const cluster = redis.clusterNodes.length > 0;
  Deno.test({
    name: `distributed${cluster ? " on Redis Cluster" : ""}: two comets, ` +
      "pushes by key, mid, room and all reach exactly the right clients",
    ignore: kafka.ignore || redis.ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const roles = await startDistributedOn({ kafka, redis }, {
        comets: 2,
        set: redis.configSets(),
      });
      // The roles write under redis.key_prefix = <topic>: (tests/e2e/cluster.ts).
      const prefix = `${roles.topic}:`;
      try {
        await deliveryScenario(roles, cluster ? "dist-cluster" : "dist");
        const keys = await redis.countKeys(prefix);
        assert.ok(keys > 0, `routes and registry records on ${redis.name}: ${keys}`);
      } catch (e) {
        for (const p of [roles.logic, roles.job, ...roles.cometProcs]) {
          console.error(`--- ${p.name} ---\n${p.tail(40)}`);
        }
        throw e;
      } finally {
        await roles.stop();
        await redis.deleteKeys(prefix);
      }
    },
  });
}

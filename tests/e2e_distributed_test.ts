/**
 * The end-to-end suite on the distributed mode: logic, job and two comets
 * as separate processes on a real Kafka and a real Redis.
 */

import { kafkaTestBrokers } from "./kafka_env.ts";
import { redisTestUrl } from "./redis_env.ts";
import { startDistributed } from "./e2e/cluster.ts";
import { deliveryScenario } from "./e2e/suite.ts";

const kafka = await kafkaTestBrokers();
const redis = await redisTestUrl();

Deno.test({
  name: "distributed: two comets, pushes by key, mid, room and all reach exactly the right clients",
  ignore: kafka.ignore || redis.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    kafka.assertReachable();
    redis.assertReachable();
    const cluster = await startDistributed({
      comets: 2,
      kafkaBrokers: kafka.brokers.join(","),
      redisUrl: redis.url,
    });
    try {
      await deliveryScenario(cluster, "dist");
    } catch (e) {
      for (const p of [cluster.logic, cluster.job, ...cluster.cometProcs]) {
        console.error(`--- ${p.name} ---\n${p.tail(40)}`);
      }
      throw e;
    } finally {
      await cluster.stop();
    }
  },
});

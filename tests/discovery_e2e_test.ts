/**
 * The distributed mode on bilibili discovery, as processes: logic and job
 * with `registry.engine = "discovery"`, one comet on discovery and one on
 * Redis with `discovery.register = true` (the mixed mode of a migration),
 * real Kafka, Redis and discovery. Pushes by key, mid, room and to all must
 * reach exactly the right clients; goim's view of discovery must show both
 * comets and the logic at their advertised addresses. And a comet whose
 * discovery is down keeps serving, logs, and registers once it is back.
 */

import assert from "node:assert/strict";
import { DiscoveryClient } from "../infra/discovery/client.ts";
import { COMET_APPID, LOGIC_APPID } from "../infra/discovery/registry.ts";
import { freePort, RoleProcess, startDistributed } from "./e2e/cluster.ts";
import { deliveryScenario } from "./e2e/suite.ts";
import { eventually } from "./eventually.ts";
import {
  DISCOVERY_BINARY,
  discoveryTestNodes,
  ownDiscoveryServer,
  uniqueEnv,
} from "./discovery_env.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { redisTestUrl } from "./redis_env.ts";

const kafka = await kafkaTestBrokers();
const redis = await redisTestUrl();
const disc = await discoveryTestNodes();
const ci = Deno.env.get("CI") === "true";
const haveBinary = await Deno.stat(DISCOVERY_BINARY).then(() => true, () => false);

/** Every instance of `appid` in `env`, hostname → its addrs. */
async function instances(nodes: string[], env: string, appid: string) {
  const c = new DiscoveryClient({ nodes, env });
  try {
    const info = await c.fetch(appid);
    return new Map(
      [...(info?.instances.values() ?? [])].flat().map((i) => [i.hostname, i.addrs] as const),
    );
  } finally {
    c.close();
  }
}

Deno.test({
  name:
    "discovery e2e: logic + job on discovery, a discovery comet and a redis + discovery.register comet deliver every push",
  ignore: kafka.ignore || redis.ignore || disc.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    kafka.assertReachable();
    redis.assertReachable();
    disc.assertReachable();
    const env = uniqueEnv();
    // Advertised as localhost (the binds are 127.0.0.1): what job and goim dial is the
    // advertised address, not the bind.
    const cometGrpc = [freePort(), freePort()];
    const cluster = await startDistributed({
      comets: 2,
      kafkaBrokers: kafka.brokers.join(","),
      redisUrl: redis.url,
      set: [
        "registry.engine=discovery",
        `discovery.nodes=${disc.nodes.join(",")}`,
        `discovery.env=${env}`,
        "node.zone=sh001",
      ],
      cometSet: (i) => [
        `comet.grpc.bind=127.0.0.1:${cometGrpc[i]}`,
        `comet.grpc.advertise=localhost:${cometGrpc[i]}`,
        ...(i === 1 ? ["registry.engine=redis", "discovery.register=true"] : []),
      ],
      // goim's roles cannot send a token: the mixed cluster runs without one.
      grpcToken: "",
    });
    const procs = [cluster.logic, cluster.job, ...cluster.cometProcs];
    try {
      const comets = await instances(disc.nodes, env, COMET_APPID);
      assert.deepEqual(
        [...comets.values()].map((a) => a.join()).sort(),
        cometGrpc.map((p) => `grpc://localhost:${p}`).sort(),
      );
      const logics = await instances(disc.nodes, env, LOGIC_APPID);
      assert.equal(logics.size, 1);
      assert.match([...logics.values()][0][0], /^grpc:\/\/127\.0\.0\.1:\d+$/);
      await deliveryScenario(cluster, "disc");
    } catch (e) {
      for (const p of procs) console.error(`--- ${p.name} ---\n${p.tail(40)}`);
      throw e;
    } finally {
      await cluster.stop();
    }
    // Stopped gracefully: every registration was cancelled.
    assert.equal((await instances(disc.nodes, env, COMET_APPID)).size, 0);
    assert.equal((await instances(disc.nodes, env, LOGIC_APPID)).size, 0);
  },
});

Deno.test({
  name:
    "discovery e2e: a comet whose discovery is down keeps serving, logs, and registers once it is up",
  ignore: !ci && !haveBinary,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await ownDiscoveryServer(async (srv) => {
      await srv.stop();
      const env = uniqueEnv();
      const admin = freePort();
      const comet = new RoleProcess("comet", [
        "comet/main.ts",
        ...[
          "registry.engine=discovery",
          `discovery.nodes=${srv.node}`,
          `discovery.env=${env}`,
          "node.id=lonely-comet",
          "log.level=warn",
          "comet.renew_online_interval=200ms",
          `comet.tcp.bind=127.0.0.1:${freePort()}`,
          `comet.websocket.bind=127.0.0.1:${freePort()}`,
          `comet.grpc.bind=127.0.0.1:${freePort()}`,
          // No logic either: its renewals fail and are logged too.
          `comet.logic_addrs=127.0.0.1:${freePort()}`,
          `comet.admin.bind=127.0.0.1:${admin}`,
        ].flatMap((kv) => ["--set", kv]),
      ], admin);
      try {
        await comet.start();
        await eventually(
          () => /registry register failed.*failed on every node/.test(comet.tail(200)),
          "the comet to log its failed registration",
          10_000,
        );
        const health = await fetch(`http://127.0.0.1:${admin}/healthz`);
        await health.body?.cancel();
        assert.equal(health.status, 200);
        await srv.start();
        await eventually(
          async () => (await instances([srv.node], env, COMET_APPID)).has("lonely-comet"),
          "the comet registered once discovery is up",
          10_000,
        );
      } catch (e) {
        console.error(`--- comet ---\n${comet.tail(40)}`);
        throw e;
      } finally {
        await comet.stop();
      }
    });
  },
});

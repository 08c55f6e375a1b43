/**
 * The operator API in the distributed mode: logic, job and two comets as
 * processes on a real Kafka and a real Redis (tests/e2e/cluster.ts), plus
 * an operator's logic with `logic.operator.keys` and `logic.operator.jobs`
 * naming the job's admin endpoint. The shared scenario
 * (tests/fixtures/operator_scenario.ts) runs against it: comets are reached
 * over gRPC with the cluster's grpc.token, the job over HTTP.
 */

import assert from "node:assert/strict";
import { splitHostPort } from "../infra/addr.ts";
import { freePort, RoleProcess, startDistributedOn } from "./e2e/cluster.ts";
import { eventually } from "./eventually.ts";
import { operator, operatorScenario } from "./fixtures/operator_scenario.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { redisTestUrl } from "./redis_env.ts";

const kafka = await kafkaTestBrokers();
const redis = await redisTestUrl();

const KEY = "operator-key-distributed";
const PUSH_KEY = "push-key-distributed";
const ADMIN_TOKEN = "admin-token-distributed";

Deno.test({
  name: "operator API (distributed): keys, sessions, room, kick, drain over gRPC; job figures",
  ignore: kafka.ignore || redis.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await startDistributedOn({ kafka, redis }, { comets: 2 });
    const http = freePort(), admin = freePort();
    const ops = new RoleProcess("operator-logic", [
      "logic/main.ts",
      ...[
        "mode=distributed",
        "queue.engine=kafka",
        "sessions.engine=redis",
        "registry.engine=redis",
        `queue.kafka.brokers=${kafka.brokers.join(",")}`,
        `queue.kafka.topic=${cluster.topic}`,
        `redis.url=${redis.url}`,
        `redis.key_prefix=${cluster.redisPrefix}`,
        "log.level=warn",
        "node.id=operator-logic",
        `logic.http.bind=127.0.0.1:${http}`,
        `logic.grpc.bind=127.0.0.1:${freePort()}`,
        `logic.admin.bind=127.0.0.1:${admin}`,
        `logic.operator.keys=${KEY}`,
        `logic.operator.jobs=127.0.0.1:${cluster.job.adminPort}`,
        `logic.auth.api_keys=${PUSH_KEY}`,
        `admin.token=${ADMIN_TOKEN}`,
      ].flatMap((kv) => ["--set", kv]),
    ], admin);
    ops.env.GOIM_GRPC__TOKEN = cluster.grpcToken;
    try {
      await ops.start();
      const c = {
        admin: `http://127.0.0.1:${admin}`,
        http: `http://127.0.0.1:${http}`,
        comets: cluster.comets.map((e, i) => {
          const { hostname, port } = splitHostPort(e.tcp.slice("tcp://".length));
          return { id: cluster.cometIds[i], tcp: { transport: "tcp" as const, hostname, port } };
        }),
        key: KEY,
        otherKeys: [PUSH_KEY, ADMIN_TOKEN],
      };
      // The job's figures come over HTTP: its lag is a number once Kafka answers.
      await eventually(
        async () => {
          // deno-lint-ignore no-explicit-any
          const o: any = (await operator(c, "GET", "/operator/v1/overview")).body.data;
          return o.mode === "distributed" && o.jobs[0]?.reachable === true &&
            typeof o.queue.lag === "number" && o.comets.length === 2 &&
            // deno-lint-ignore no-explicit-any
            o.comets.every((x: any) => x.reachable && x.state === "up");
        },
        "both comets over gRPC and the job over HTTP",
        20_000,
      );
      await operatorScenario(c);
      // The drained comet is still a running process that answers: drained, not down.
      // deno-lint-ignore no-explicit-any
      const o: any = (await operator(c, "GET", "/operator/v1/overview")).body.data;
      assert.deepEqual(o.totals.comets, { up: 1, draining: 0, drained: 1, down: 0 });
    } catch (e) {
      for (const p of [ops, cluster.logic, cluster.job, ...cluster.cometProcs]) {
        console.error(`--- ${p.name} ---\n${p.tail(40)}`);
      }
      throw e;
    } finally {
      await ops.stop();
      await cluster.stop();
    }
  },
});

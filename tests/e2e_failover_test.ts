/**
 * Distributed mode under failure, with real processes: a job killed with
 * SIGKILL mid-stream, Kafka stopped and started, Redis restarted.
 *
 * The Kafka and Redis that get stopped are private instances started for
 * the test (scripts/services.sh with their own ports and state folder), so
 * tests running in parallel on the shared ones are not disturbed.
 */

import assert from "node:assert/strict";
import { eventually } from "./eventually.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { redisTestUrl } from "./redis_env.ts";
import { freePort, startDistributed, startDistributedOn } from "./e2e/cluster.ts";
import { Recorder } from "./e2e/suite.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const kafka = await kafkaTestBrokers();
const redis = await redisTestUrl();
// The private instances need what CI installs for the shared ones.
const ignore = kafka.ignore || redis.ignore;

/** A private Redis or Kafka run by scripts/services.sh in its own folder. */
class PrivateService {
  readonly dir = Deno.makeTempDirSync({ prefix: "goim-svc-" });
  readonly env: Record<string, string>;
  constructor(readonly name: "redis" | "kafka", ports: Record<string, number>) {
    this.env = {
      SERVICES_DIR: this.dir,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
    };
  }
  async run(verb: "up" | "down" | "restart"): Promise<void> {
    const out = await new Deno.Command("bash", {
      args: [`${ROOT}scripts/services.sh`, verb, this.name],
      env: this.env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const dec = new TextDecoder();
      throw new Error(
        `services.sh ${verb} ${this.name} failed:\n${dec.decode(out.stdout)}${
          dec.decode(out.stderr)
        }`,
      );
    }
  }
  async dispose(): Promise<void> {
    await this.run("down").catch(() => {});
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** The JSON answer of a push. */
interface PushAnswer {
  code: number;
  message: string;
  data: { keys?: number } | null;
}

async function pushStatus(
  http: string,
  path: string,
  body: string,
): Promise<{ status: number; json: PushAnswer }> {
  const res = await fetch(`${http}${path}`, { method: "POST", body });
  return { status: res.status, json: await res.json() };
}

const opts = { ignore, sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name:
    "failover: job killed with SIGKILL mid-stream of 10,000 numbered pushes, restarted: every number arrives",
  ...opts,
  fn: async () => {
    const cluster = await startDistributedOn({ kafka, redis }, {
      comets: 1,
      set: ["queue.kafka.session_timeout=6s"],
    });
    const rec = new Recorder(cluster.comets[0].tcp, {
      mid: 7,
      key: `${cluster.topic}-numbers`,
      room_id: "",
      platform: "test",
      accepts: [1000],
    });
    try {
      await rec.client.connect();
      const total = 10_000;
      const seen = rec.seen;
      let next = 0;
      const sender = async () => {
        while (next < total) {
          const n = next++;
          const r = await pushStatus(
            cluster.http,
            `/goim/push/keys?operation=1000&keys=${cluster.topic}-numbers`,
            String(n),
          );
          assert.equal(r.status, 200, `push ${n}: ${JSON.stringify(r.json)}`);
        }
      };
      const sending = Promise.all(Array.from({ length: 16 }, sender));
      await rec.until(() => seen.size >= 2_000, "2,000 numbers before the kill", 60_000);
      const status = await cluster.job.stop("SIGKILL");
      assert.equal(status?.signal, "SIGKILL");
      const atKill = seen.size;
      await cluster.job.start();
      await sending;
      await rec.until(
        () => seen.size === total,
        `all ${total} numbers (had ${atKill} at the kill)`,
        120_000,
      );
      for (let i = 0; i < total; i++) assert.ok(seen.has(String(i)), `number ${i} arrived`);
    } catch (e) {
      console.error(`--- job ---\n${cluster.job.tail()}\n--- logic ---\n${cluster.logic.tail()}`);
      throw e;
    } finally {
      await rec.client.close();
      await cluster.stop();
    }
  },
});

Deno.test({
  name:
    "failover: Kafka stopped → push API answers 503 with a clear message; Kafka back → pushes flow again",
  ...opts,
  fn: async () => {
    kafka.assertReachable();
    redis.assertReachable();
    const port = freePort();
    const svc = new PrivateService("kafka", {
      KAFKA_PORT: port,
      KAFKA_CONTROLLER_PORT: freePort(),
    });
    await svc.run("up");
    const cluster = await startDistributed({
      comets: 1,
      kafkaBrokers: `127.0.0.1:${port}`,
      redisUrl: redis.url,
      set: ["queue.kafka.session_timeout=6s"],
    }).catch(async (e) => {
      await svc.dispose();
      throw e;
    });
    const key = `${cluster.topic}-k`;
    const rec = new Recorder(cluster.comets[0].tcp, {
      mid: 8,
      key,
      room_id: "",
      platform: "test",
      accepts: [1000],
    });
    try {
      await rec.client.connect();
      const path = `/goim/push/keys?operation=1000&keys=${key}`;
      assert.equal((await pushStatus(cluster.http, path, "before")).status, 200);
      await rec.waitFor("before");

      await svc.run("down");
      let answer: { status: number; json: PushAnswer } | undefined;
      await eventually(
        async () => {
          answer = await pushStatus(cluster.http, path, "while down");
          return answer.status === 503;
        },
        "a 503 while Kafka is down",
        30_000,
        250,
      );
      assert.equal(answer!.json.code, -503);
      assert.match(answer!.json.message, /kafka|queue/i, `clear message: ${answer!.json.message}`);

      await svc.run("up");
      await eventually(
        async () => (await pushStatus(cluster.http, path, "after")).status === 200,
        "pushes accepted again",
        60_000,
        250,
      );
      await rec.waitFor("after", 1000, 60_000);
    } catch (e) {
      console.error(`--- job ---\n${cluster.job.tail()}\n--- logic ---\n${cluster.logic.tail()}`);
      throw e;
    } finally {
      await rec.client.close();
      await cluster.stop();
      await svc.dispose();
    }
  },
});

Deno.test({
  name: "failover: Redis restarted (routes lost) → routes come back through heartbeats",
  ...opts,
  fn: async () => {
    kafka.assertReachable();
    redis.assertReachable();
    const port = freePort();
    const svc = new PrivateService("redis", { REDIS_PORT: port });
    await svc.run("up");
    const cluster = await startDistributed({
      comets: 1,
      kafkaBrokers: kafka.brokers.join(","),
      redisUrl: `redis://127.0.0.1:${port}`,
      // streams off: the mid push's answer counts the routes logic found,
      // which is what this test watches come back.
      set: ["comet.route_heartbeat_interval=1s", "streams.enabled=false"],
    }).catch(async (e) => {
      await svc.dispose();
      throw e;
    });
    const rec = new Recorder(cluster.comets[0].tcp, {
      mid: 9,
      key: `${cluster.topic}-r`,
      room_id: "",
      platform: "test",
      accepts: [1000],
    }, { heartbeatIntervalMs: 300 });
    try {
      await rec.client.connect();
      const path = `/goim/push/mids?operation=1000&mids=9`;
      const first = await pushStatus(cluster.http, path, "before");
      assert.equal(first.json.data?.keys, 1);
      await rec.waitFor("before");

      await svc.run("restart");
      // The restart lost every route (no persistence); comet heartbeats re-add them.
      let n = 0;
      await eventually(
        async () => {
          const r = await pushStatus(cluster.http, path, `after-${n++}`);
          return r.status === 200 && r.json.data?.keys === 1;
        },
        "the route of mid 9 to come back",
        60_000,
        300,
      );
      await rec.waitFor(`after-${n - 1}`, 1000, 30_000);
    } catch (e) {
      console.error(
        `--- comet ---\n${cluster.cometProcs[0].tail()}\n--- logic ---\n${cluster.logic.tail()}`,
      );
      throw e;
    } finally {
      await rec.client.close();
      await cluster.stop();
      await svc.dispose();
    }
  },
});

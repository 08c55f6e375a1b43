/**
 * Job on the real Kafka engine (when the test broker is up): our producer →
 * topic → our consumer → job → fake comets, with per-key order, room
 * batching, and offsets committed once everything was handed over. Then a
 * second job in the same group starts from those commits: nothing is
 * delivered twice, nothing published while no job ran is lost.
 */

import assert from "node:assert/strict";
import { KafkaConsumer } from "../infra/kafka/queue.ts";
import { createMetrics } from "../infra/metrics.ts";
import { decodeFrames } from "../protocol/frame.ts";
import { Job } from "../job/job.ts";
import { FakeComet, testConfig, utf8 } from "./job_fakes.ts";
import { jobOnKafka } from "./job_kafka_env.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { waitFor } from "./engine_suites/harness.ts";

const kafka = await kafkaTestBrokers();
const dec = new TextDecoder();

Deno.test({
  name: "job on kafka: pushes and room messages delivered in order, committed, not redelivered",
  ignore: kafka.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    kafka.assertReachable();
    const env = await jobOnKafka(kafka.brokers);
    const { group, common, producer, registry } = env;
    const comet = new FakeComet("c1");
    const config = testConfig("job.room.window=5ms");
    const startJob = async () => {
      const consumer = new KafkaConsumer({ ...common, group, fromBeginning: true });
      const job = new Job({
        config,
        consumer,
        registry,
        connect: () => comet,
        metrics: createMetrics("job"),
      });
      await job.start();
      return { job, consumer };
    };
    let run = await startJob();
    try {
      const keys = ["k1", "k2", "k3", "k4", "k5"];
      const per = 40;
      const pubs: Promise<void>[] = [];
      for (let i = 0; i < per; i++) {
        for (const k of keys) {
          pubs.push(producer.publish({
            type: "PUSH",
            operation: 1000,
            speed: 0,
            server: "c1",
            room: "",
            keys: [k],
            msg: utf8(String(i)),
          }));
        }
        pubs.push(producer.publish({
          type: "ROOM",
          operation: 1001,
          speed: 0,
          server: "",
          room: "live://k",
          keys: [],
          msg: utf8(String(i)),
        }));
      }
      await Promise.all(pubs);
      const frames = () =>
        comet.of("BroadcastRoom").flatMap((c) => decodeFrames(c.req.proto!.body)).map((f) =>
          Number(dec.decode(f.body))
        );
      await comet.until(
        () => comet.of("PushMsg").length >= per * keys.length && frames().length >= per,
        "every push and room frame",
        20_000,
      );
      for (const k of keys) {
        const got = comet.of("PushMsg").filter((c) => c.req.keys[0] === k).map((c) =>
          Number(dec.decode(c.req.proto!.body))
        );
        assert.deepEqual(got, Array.from({ length: per }, (_, i) => i), k);
      }
      assert.deepEqual(frames(), Array.from({ length: per }, (_, i) => i));
      assert.ok(comet.of("BroadcastRoom").length < per, "room messages were batched");
      await waitFor(async () => (await run.consumer.lag()) === 0, {
        timeoutMs: 10_000,
        what: "offsets committed",
      });
      await run.job.stop();

      // Published while no job runs; the next job of the group picks up from the commits.
      await producer.publish({
        type: "PUSH",
        operation: 1000,
        speed: 0,
        server: "c1",
        room: "",
        keys: ["k1"],
        msg: utf8("while down"),
      });
      const before = comet.of("PushMsg").length;
      run = await startJob();
      await comet.waitCalls("PushMsg", before + 1, 20_000);
      await waitFor(async () => (await run.consumer.lag()) === 0, {
        timeoutMs: 10_000,
        what: "second run committed",
      });
      const after = comet.of("PushMsg").slice(before).map((c) => dec.decode(c.req.proto!.body));
      assert.deepEqual(after, ["while down"], "only the new message, nothing redelivered");
    } finally {
      await run.job.stop();
      await env.close();
    }
  },
});

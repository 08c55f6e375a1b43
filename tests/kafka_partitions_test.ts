/**
 * A push topic with more partitions than jobs (docs/JOB.md, "How many
 * partitions"): 8 partitions, one job consuming all of them, then two
 * jobs in the group splitting them 4 and 4. Every push arrives once, each
 * key's pushes in order and all through the one job that holds its
 * partition.
 */

import assert from "node:assert/strict";
import { KafkaConsumer, saramaPartition } from "../infra/kafka/queue.ts";
import { createLogger } from "../infra/log.ts";
import { createMetrics } from "../infra/metrics.ts";
import { Job } from "../job/job.ts";
import { waitFor } from "./engine_suites/harness.ts";
import { FakeComet, testConfig, utf8 } from "./job_fakes.ts";
import { jobOnKafka } from "./job_kafka_env.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";

const kafka = await kafkaTestBrokers();
const dec = new TextDecoder();
const PARTITIONS = 8;
const PER_KEY = 20;

Deno.test({
  name: "kafka: 8 partitions, 1 job then 2: each push once, per key in order, 4 partitions each",
  ignore: kafka.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    kafka.assertReachable();
    const env = await jobOnKafka(kafka.brokers, PARTITIONS);
    const { topic, group, common, producer, registry } = env;
    // One key per partition, so every partition carries a stream.
    const keys: string[] = [];
    for (let i = 0; keys.length < PARTITIONS; i++) {
      if (
        !keys.some((k) => saramaPartition(k, PARTITIONS) === saramaPartition(`k${i}`, PARTITIONS))
      ) {
        keys.push(`k${i}`);
      }
    }
    const jobs: { job: Job; comet: FakeComet; partitions: () => number[] }[] = [];
    /** A job of the group, its deliveries on its own fake comet, its assignment from its log. */
    const startJob = async (name: string) => {
      let partitions: number[] = [];
      const log = createLogger({
        level: "info",
        writer: (line) => {
          const l = JSON.parse(line);
          if (l.msg === "joined consumer group") partitions = l.assignment?.[topic] ?? [];
        },
      });
      const consumer = new KafkaConsumer({
        ...common,
        group,
        fromBeginning: true,
        sessionTimeoutMs: 6000,
        log,
      });
      const comet = new FakeComet(name);
      const job = new Job({
        config: testConfig(),
        consumer,
        registry,
        connect: () => comet,
        metrics: createMetrics("job"),
      });
      await job.start();
      jobs.push({ job, comet, partitions: () => [...partitions].sort((a, b) => a - b) });
      return { comet, consumer };
    };
    const publish = (round: number) =>
      Promise.all(keys.flatMap((k) =>
        Array.from({ length: PER_KEY }, (_, i) =>
          producer.publish({
            type: "PUSH",
            operation: 1000,
            speed: 0,
            server: "c1",
            room: "",
            keys: [k],
            msg: utf8(`${round}:${i}`),
          }))
      ));
    /** What `comet` got for `key` in `round`, in arrival order. */
    const got = (comet: FakeComet, key: string, round: number) =>
      comet.of("PushMsg").filter((c) => c.req.keys[0] === key)
        .map((c) => dec.decode(c.req.proto!.body))
        .filter((b) => b.startsWith(`${round}:`)).map((b) => Number(b.slice(b.indexOf(":") + 1)));
    const inOrder = Array.from({ length: PER_KEY }, (_, i) => i);
    try {
      // One job: all 8 partitions, every key in order.
      const a = await startJob("a");
      assert.deepEqual(jobs[0].partitions(), [0, 1, 2, 3, 4, 5, 6, 7]);
      await publish(1);
      await a.comet.waitCalls("PushMsg", keys.length * PER_KEY, 20_000);
      for (const k of keys) assert.deepEqual(got(a.comet, k, 1), inOrder, k);
      assert.equal(a.comet.of("PushMsg").length, keys.length * PER_KEY, "each once");
      await waitFor(async () => (await a.consumer.lag()) === 0, {
        timeoutMs: 10_000,
        what: "round 1 committed",
      });

      // A second job joins: the group splits the partitions between them.
      await startJob("b");
      await waitFor(
        () => jobs.every((j) => j.partitions().length === PARTITIONS / 2),
        { timeoutMs: 20_000, what: "both jobs to hold 4 partitions" },
      );
      assert.deepEqual(
        [...jobs[0].partitions(), ...jobs[1].partitions()].sort((x, y) => x - y),
        [0, 1, 2, 3, 4, 5, 6, 7],
        "disjoint, every partition held",
      );
      await publish(2);
      const round2 = () => jobs.reduce((n, j) => n + j.comet.of("PushMsg").length, 0);
      await waitFor(() => round2() >= 2 * keys.length * PER_KEY, {
        timeoutMs: 20_000,
        what: "round 2 delivered",
      });
      for (const k of keys) {
        const owner = jobs.findIndex((j) =>
          j.partitions().includes(saramaPartition(k, PARTITIONS))
        );
        assert.deepEqual(got(jobs[owner].comet, k, 2), inOrder, `${k} through job ${owner}`);
        assert.deepEqual(got(jobs[1 - owner].comet, k, 2), [], `${k} not through the other job`);
      }
      assert.equal(round2(), 2 * keys.length * PER_KEY, "each once: nothing redelivered");
    } finally {
      for (const j of jobs) await j.job.stop();
      await env.close();
    }
  },
});

/**
 * The queue suite against both engines: memory (always) and Kafka (when the
 * test broker is reachable; see tests/kafka_env.ts), plus engine details
 * the suite does not cover.
 */

import assert from "node:assert/strict";
import { createMemoryQueue } from "../infra/memory/queue.ts";
import { fnv1a32Utf8 } from "../infra/hash.ts";
import { KafkaConsumer, KafkaProducer, saramaPartition } from "../infra/kafka/queue.ts";
import { createMetrics } from "../infra/metrics.ts";
import { type QueueHarness, queueSuite } from "./engine_suites/queue_suite.ts";
import { waitFor } from "./engine_suites/harness.ts";
import { deleteTopic, kafkaTestBrokers, produceRaw, uniqueTopic } from "./kafka_env.ts";

function memoryHarness(capacity: number): QueueHarness {
  const q = createMemoryQueue({ capacity, retryBaseDelayMs: 10, drainTimeoutMs: 1000 });
  return {
    producer: q.producer,
    consumer: q.consumer,
    pending: () => Promise.resolve(q.depth()),
    cleanup: async () => {
      await q.producer.close();
      await q.consumer.close();
    },
  };
}

queueSuite("memory", () => Promise.resolve(memoryHarness(10_000)), {
  bounded: (capacity) => memoryHarness(capacity),
});

const kafka = await kafkaTestBrokers();
const kafkaTopics = new WeakMap<QueueHarness, string>();

queueSuite(
  "kafka",
  () => {
    kafka.assertReachable();
    const { topic, group } = uniqueTopic();
    const common = { brokers: kafka.brokers, clientId: "goim-test", topic };
    const producer = new KafkaProducer({ ...common, connectEagerly: false });
    const consumer = new KafkaConsumer({
      ...common,
      group,
      fromBeginning: true,
      retryBaseDelayMs: 20,
      metrics: createMetrics("job"),
    });
    const h: QueueHarness = {
      producer,
      consumer,
      pending: () => consumer.lag(),
      cleanup: async () => {
        await Promise.all([producer.close(), consumer.close()]);
        await deleteTopic(kafka.brokers, topic);
      },
    };
    kafkaTopics.set(h, topic);
    return Promise.resolve(h);
  },
  {
    unreachable: () => ({
      producer: new KafkaProducer({
        brokers: ["127.0.0.1:1"],
        clientId: "goim-test",
        topic: "unreachable",
        publishTimeoutMs: 5000,
        connectEagerly: false,
      }),
      address: "127.0.0.1:1",
    }),
    publishRaw: (h, key, bytes) =>
      produceRaw(kafka.brokers, kafkaTopics.get(h)!, [{ key, value: bytes }]),
  },
  { ignore: kafka.ignore },
);

Deno.test("kafka partitioner matches sarama's hash partitioner", () => {
  // Go: fnv.New32a() over the bytes; sarama: int32(sum) % n, negated if < 0.
  assert.equal(fnv1a32Utf8(""), 0x811c9dc5);
  assert.equal(fnv1a32Utf8("a"), 0xe40c292c);
  assert.equal(fnv1a32Utf8("foobar"), 0xbf9cf968);
  // 0xbf9cf968 as int32 is -1080231576; Go's % truncates: -4, negated → 4.
  assert.equal(saramaPartition("foobar", 7), 4);
  for (const k of ["k1", "live://1000", "1000", "日本"]) {
    const p = saramaPartition(k, 4);
    assert.ok(p >= 0 && p < 4 && p === saramaPartition(k, 4));
  }
});

Deno.test("memory queue: a rejected message holds back newer ones until it succeeds", async () => {
  const q = createMemoryQueue({ capacity: 100, retryBaseDelayMs: 5, maxInFlight: 1 });
  const order: string[] = [];
  let failures = 0;
  await q.consumer.start((m) => {
    const body = new TextDecoder().decode(m.msg);
    if (body === "a" && failures++ < 3) return Promise.reject(new Error("no"));
    order.push(body);
    return Promise.resolve();
  });
  for (const b of ["a", "b", "c"]) {
    await q.producer.publish({
      type: "PUSH",
      operation: 1,
      speed: 0,
      server: "s",
      room: "",
      keys: ["k"],
      msg: new TextEncoder().encode(b),
    });
  }
  await waitFor(() => order.length === 3, { timeoutMs: 2000, what: "all three" });
  assert.deepEqual(order, ["a", "b", "c"]);
  assert.equal(q.depth(), 0);
  await q.consumer.close();
});

Deno.test("memory queue: close drops what it cannot deliver within drainTimeoutMs", async () => {
  const q = createMemoryQueue({ capacity: 100, retryBaseDelayMs: 5, drainTimeoutMs: 50 });
  await q.consumer.start(() => Promise.reject(new Error("always")));
  await q.producer.publish({
    type: "BROADCAST",
    operation: 1,
    speed: 0,
    server: "",
    room: "",
    keys: [],
    msg: new Uint8Array(),
  });
  await q.consumer.close();
  assert.equal(q.dropped(), 1);
  assert.equal(q.depth(), 0);
});

/**
 * What a job test on the test Kafka (./kafka_env.ts) starts from: a fresh
 * topic and group, our producer to the topic, and a memory registry with
 * the fake comet `c1` registered (./job_fakes.ts).
 *
 * @example
 * ```ts
 * import { KafkaConsumer } from "../infra/kafka/queue.ts";
 * import { kafkaTestBrokers } from "./kafka_env.ts";
 * import { jobOnKafka } from "./job_kafka_env.ts";
 * const kafka = await kafkaTestBrokers();
 * const env = await jobOnKafka(kafka.brokers);
 * try {
 *   const consumer = new KafkaConsumer({ ...env.common, group: env.group, fromBeginning: true });
 *   // … a Job over consumer and env.registry, fed by env.producer
 * } finally {
 *   await env.close();
 * }
 * ```
 *
 * @module
 */

import { KafkaProducer } from "../infra/kafka/queue.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { record } from "./job_fakes.ts";
import { deleteTopic, uniqueTopic } from "./kafka_env.ts";
import { createTopic } from "./e2e/cluster.ts";

/** See the module doc. */
export interface JobOnKafka {
  /** The test's own topic. */
  topic: string;
  /** The test's own consumer group. */
  group: string;
  /** The brokers, client id and topic, for a KafkaConsumer or KafkaProducer. */
  common: { brokers: string[]; clientId: string; topic: string };
  /** Publishes to the topic. */
  producer: KafkaProducer;
  /** Holds `record("c1")`. */
  registry: MemoryRegistry;
  /** Closes the producer and the registry and deletes the topic (after the jobs stopped). */
  close(): Promise<void>;
}

/**
 * A topic of its own (created with `partitions` when given, else on first
 * use with the broker's default), a producer to it and a registry with
 * comet `c1`.
 */
export async function jobOnKafka(brokers: string[], partitions?: number): Promise<JobOnKafka> {
  const { topic, group } = uniqueTopic();
  if (partitions !== undefined) await createTopic(brokers, topic, partitions);
  const common = { brokers, clientId: "goim-test", topic };
  const producer = new KafkaProducer({ ...common, connectEagerly: false });
  const registry = new MemoryRegistry();
  await registry.register(record("c1"), 60_000);
  return {
    topic,
    group,
    common,
    producer,
    registry,
    close: async () => {
      await producer.close();
      await registry.close();
      await deleteTopic(brokers, topic);
    },
  };
}

/**
 * The Kafka queue engine for distributed mode: {@linkcode KafkaProducer}
 * (logic) and {@linkcode KafkaConsumer} (job) on npm:kafkajs, speaking
 * goim's record format (key = partition key, value = `goim.logic.PushMsg`
 * protobuf) so goim and this server can share a topic.
 *
 * - Producer: acks = all in-sync replicas, idempotent, sarama-compatible
 *   partitioner, publishes batched while a send is in flight, every publish
 *   bounded by a deadline → {@linkcode QueueUnavailableError} naming the
 *   brokers (./producer.ts).
 * - Consumer: group `queue.kafka.group`, offsets committed only after the
 *   handler resolved (at-least-once), undecodable records counted and
 *   skipped, lag from admin offsets (./consumer.ts).
 * - The topic is created on first use when missing, with the broker's
 *   default partition count and replication factor (`num.partitions`,
 *   `default.replication.factor`): partitioning is an operator's decision,
 *   made once on the broker or by creating the topic beforehand.
 * - kafkajs' own logging goes to our logger, one level down (./client.ts).
 *
 * @example
 * ```ts
 * import { loadConfig } from "../config.ts";
 * import type { Logger } from "../log.ts";
 * import type { Metrics } from "../metrics.ts";
 * import { createKafkaConsumer, createKafkaProducer } from "./queue.ts";
 * declare const log: Logger, metrics: Metrics, body: Uint8Array;
 * const cfg = loadConfig();
 * const producer = createKafkaProducer(cfg, { log });
 * const consumer = createKafkaConsumer(cfg, { log, metrics });
 * await consumer.start(async (msg) => console.log(msg));
 * await producer.publish({ type: "BROADCAST", operation: 1000, speed: 0, server: "", room: "", keys: [], msg: body });
 * ```
 *
 * @module
 */

import type { Config } from "../config.ts";
import { KafkaConsumer, type KafkaConsumerOptions } from "./consumer.ts";
import { KafkaProducer, type KafkaProducerOptions } from "./producer.ts";

export { KafkaConsumer, type KafkaConsumerOptions } from "./consumer.ts";
export { KafkaProducer, type KafkaProducerOptions } from "./producer.ts";
export {
  createKafkaClient,
  ensureTopic,
  type KafkaConnectOptions,
  saramaPartition,
} from "./client.ts";

/** The `queue.kafka.*` part of the configuration. */
export type KafkaQueueConfig = Pick<Config, "queue">;

/**
 * A {@linkcode KafkaProducer} for `cfg.queue.kafka` (brokers, topic,
 * client id); `extra` overrides or adds options (logger, timeouts).
 */
export function createKafkaProducer(
  cfg: KafkaQueueConfig,
  extra: Partial<KafkaProducerOptions> = {},
): KafkaProducer {
  const k = cfg.queue.kafka;
  return new KafkaProducer({
    brokers: k.brokers,
    clientId: k.client_id,
    topic: k.topic,
    ...extra,
  });
}

/**
 * A {@linkcode KafkaConsumer} for `cfg.queue.kafka` (brokers, topic, group,
 * client id); `extra` overrides or adds options (logger, metrics).
 */
export function createKafkaConsumer(
  cfg: KafkaQueueConfig,
  extra: Partial<KafkaConsumerOptions> = {},
): KafkaConsumer {
  const k = cfg.queue.kafka;
  return new KafkaConsumer({
    brokers: k.brokers,
    clientId: k.client_id,
    topic: k.topic,
    group: k.group,
    sessionTimeoutMs: k.session_timeout,
    ...extra,
  });
}

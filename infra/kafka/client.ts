/**
 * What the Kafka producer and consumer share: the kafkajs client with
 * bounded timeouts and our logger, topic creation, and goim's partitioner.
 *
 * Timeouts: kafkajs' defaults retry for about a minute before an operation
 * fails (5 retries up to 30 s apart, 30 s requests). A push API that hangs
 * that long is worse than one that fails, so the client fails fast — a
 * refused connection in well under a second, an unanswered one in about
 * `connectionTimeout` × attempts — and the producer adds its own per-publish
 * deadline on top (see ./producer.ts). The consumer overrides the retry
 * policy with a patient one: it should outlive a broker restart.
 *
 * @module
 */

import { Kafka, type logCreator, logLevel, type PartitionerArgs } from "kafkajs";
// kafkajs' idle 1 ms timer loop, fixed before any client exists.
import "./idle_fix.ts";
import type { Logger } from "../log.ts";
import { fnv1a32Utf8 } from "../hash.ts";

/** Connection settings common to producer, consumer and admin. */
export interface KafkaConnectOptions {
  /** Bootstrap brokers, `host:port` (config `queue.kafka.brokers`). */
  brokers: readonly string[];
  /** Client id shown in broker logs (config `queue.kafka.client_id`). */
  clientId: string;
  /** Where kafkajs' own log lines go (downgraded, see {@linkcode kafkaLogCreator}); silent if absent. */
  log?: Logger;
  /** TCP connect timeout per attempt (default 1000 ms). */
  connectionTimeoutMs?: number;
  /** Timeout of one request to a broker (default 5000 ms). */
  requestTimeoutMs?: number;
}

/** Retry policy of the client and admin: 3 attempts, 100 ms then 200 ms apart. */
export const FAST_RETRY = { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 } as const;

/**
 * Creates a kafkajs client with short timeouts and kafkajs' log routed into
 * `opts.log`.
 *
 * @example
 * ```ts
 * import type { Logger } from "../log.ts";
 * declare const log: Logger;
 * const kafka = createKafkaClient({ brokers: ["127.0.0.1:9092"], clientId: "goim", log });
 * const admin = kafka.admin();
 * ```
 */
export function createKafkaClient(opts: KafkaConnectOptions): Kafka {
  return new Kafka({
    brokers: [...opts.brokers],
    clientId: opts.clientId,
    connectionTimeout: opts.connectionTimeoutMs ?? 1000,
    requestTimeout: opts.requestTimeoutMs ?? 5000,
    retry: { ...FAST_RETRY },
    logLevel: kafkaLogLevel(opts.log),
    logCreator: kafkaLogCreator(opts.log),
  });
}

/** The kafkajs level matching what `log` would write (NOTHING without a logger). */
function kafkaLogLevel(log?: Logger): logLevel {
  if (!log) return logLevel.NOTHING;
  // kafkajs WARN and INFO both land at our info/debug (see below), so only
  // build their strings when those would be written.
  if (log.enabled("debug")) return logLevel.DEBUG;
  if (log.enabled("info")) return logLevel.WARN;
  return logLevel.ERROR;
}

// Messages kafkajs warns about on purpose-made choices of ours.
const EXPECTED_WARNINGS = [
  "Limiting retries for the idempotent producer",
];

/**
 * Routes kafkajs' logger into ours, one level down: kafkajs logs every
 * failed connection attempt and transient broker answer ("coordinator
 * loading") as an error, while the outcome that matters (a publish that
 * failed, a consumer that crashed) is logged by our own code at its true
 * level. So kafkajs ERROR → warn, WARN → info, INFO/DEBUG → debug.
 */
export function kafkaLogCreator(log?: Logger): logCreator {
  if (!log) return () => () => {};
  const l = log.child({ component: "kafkajs" });
  return () => ({ namespace, level, log: entry }) => {
    const { message, timestamp: _ts, logger: _logger, ...fields } = entry;
    const f = { namespace, ...fields };
    if (level === logLevel.ERROR) l.warn(message, f);
    else if (level === logLevel.WARN) {
      if (EXPECTED_WARNINGS.some((w) => message.startsWith(w))) l.debug(message, f);
      else l.info(message, f);
    } else l.debug(message, f);
  };
}

/** `host:port, host:port` for error messages. */
export function brokerList(brokers: readonly string[]): string {
  return brokers.join(", ");
}

/**
 * Creates `topic` when the cluster lacks it, with the broker's default
 * partition count and replication factor (`num.partitions`,
 * `default.replication.factor`; kafkajs sends -1 for both). Resolves true if
 * this call created it. An existing topic is left as it is, whatever its
 * partition count.
 */
export async function ensureTopic(kafka: Kafka, topic: string): Promise<boolean> {
  const admin = kafka.admin({ retry: { ...FAST_RETRY } });
  await admin.connect();
  try {
    const topics = await admin.listTopics();
    if (topics.includes(topic)) return false;
    // false: someone else created it between the two calls; fine either way.
    return await admin.createTopics({ topics: [{ topic }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

/**
 * The partition goim's logic picks for `key`: sarama's default hash
 * partitioner (FNV-1a 32 of the key, as a signed int32, modulo the
 * partition count, negated if negative). Publishing with the same
 * partitioner keeps one key's messages in one partition, and so in order,
 * even when goim's logic and ours publish to the same topic.
 *
 * @example
 * ```ts
 * saramaPartition("live://1000", 4); // always the same partition in 0..3
 * ```
 */
export function saramaPartition(key: string, partitions: number): number {
  const p = (fnv1a32Utf8(key) | 0) % partitions;
  return p < 0 ? -p : p;
}

/** A kafkajs `createPartitioner` applying {@linkcode saramaPartition} to the message key. */
export function saramaPartitioner(): (args: PartitionerArgs) => number {
  return ({ partitionMetadata, message }) => {
    const n = partitionMetadata.length;
    const key = message.key;
    if (key === null || key === undefined) return Math.floor(Math.random() * n);
    return saramaPartition(typeof key === "string" ? key : key.toString("utf8"), n);
  };
}

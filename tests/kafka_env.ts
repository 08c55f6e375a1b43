/**
 * Where the Kafka tests find Kafka, and what they do when it is missing.
 *
 * `GOIM_TEST_KAFKA_BROKERS` (comma-separated `host:port`, default
 * `127.0.0.1:9092`) is probed once (connect + list topics, 3 s bound).
 * Unreachable and `CI=true`: Kafka tests still run and fail with a message
 * saying how to start Kafka. Unreachable otherwise: they are registered
 * with `ignore: true` and a note is printed, so `deno task test` passes on
 * a machine without Kafka.
 *
 * Tests share the one broker: each uses its own topic and group
 * ({@linkcode uniqueTopic}) and deletes the topic afterwards.
 *
 * @example
 * ```ts
 * const kafka = await kafkaTestBrokers();
 * Deno.test({ name: "kafka: x", ignore: kafka.ignore, fn: async () => {
 *   kafka.assertReachable();
 *   const { topic, group } = uniqueTopic();
 *   try {
 *     // … the test, on topic and group
 *   } finally {
 *     await deleteTopic(kafka.brokers, topic);
 *   }
 * }});
 * ```
 *
 * @module
 */

import { Kafka, logLevel } from "kafkajs";
import { type ServiceTarget, serviceTarget } from "./service_env.ts";

/** Env var naming the brokers the tests use. */
export const KAFKA_BROKERS_ENV = "GOIM_TEST_KAFKA_BROKERS";
/** Used when {@linkcode KAFKA_BROKERS_ENV} is unset. */
export const DEFAULT_TEST_KAFKA_BROKERS = "127.0.0.1:9092";

/** The outcome of probing the test Kafka. */
export interface KafkaTestTarget extends ServiceTarget {
  /** The brokers probed (and to use). */
  brokers: string[];
}

let probed: Promise<KafkaTestTarget> | undefined;

/** Probes the test Kafka once per process and tells how to register Kafka tests. */
export function kafkaTestBrokers(): Promise<KafkaTestTarget> {
  return probed ??= probe();
}

async function probe(): Promise<KafkaTestTarget> {
  const brokers = (Deno.env.get(KAFKA_BROKERS_ENV) || DEFAULT_TEST_KAFKA_BROKERS)
    .split(",").map((s) => s.trim()).filter((s) => s !== "");
  const error = await ping(brokers, 3000);
  return {
    brokers,
    ...serviceTarget({
      name: "Kafka",
      where: brokers.join(","),
      service: "kafka",
      envVar: KAFKA_BROKERS_ENV,
      error,
    }),
  };
}

function quietClient(brokers: string[], timeoutMs: number): Kafka {
  return new Kafka({
    brokers,
    clientId: "goim-test",
    connectionTimeout: timeoutMs,
    requestTimeout: timeoutMs,
    retry: { retries: 0 },
    logLevel: logLevel.NOTHING,
  });
}

/** Connects an admin and lists topics within `timeoutMs`; undefined if fine, else the reason. */
export async function ping(brokers: string[], timeoutMs: number): Promise<string | undefined> {
  const admin = quietClient(brokers, timeoutMs).admin();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<never>((_, reject) =>
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
    );
    await Promise.race([admin.connect().then(() => admin.listTopics()), timeout]);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  } finally {
    clearTimeout(timer);
    await admin.disconnect().catch(() => {});
  }
}

/** A fresh topic and group name, e.g. `goimtest-3f9a1c2b` / `goimtest-3f9a1c2b-group`. */
export function uniqueTopic(): { topic: string; group: string } {
  const topic = `goimtest-${crypto.randomUUID().slice(0, 8)}`;
  return { topic, group: `${topic}-group` };
}

/** Deletes `topic` (best effort: a test's cleanup must not hide its real failure). */
export async function deleteTopic(brokers: string[], topic: string): Promise<void> {
  const admin = quietClient(brokers, 5000).admin();
  try {
    await admin.connect();
    await admin.deleteTopics({ topics: [topic], timeout: 5000 });
  } catch {
    // Left behind: harmless, its name is unique.
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** Writes raw records (e.g. garbage bytes) to `topic`, bypassing our producer. */
export async function produceRaw(
  brokers: string[],
  topic: string,
  records: { key: string; value: Uint8Array }[],
): Promise<void> {
  const producer = quietClient(brokers, 5000).producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    const { Buffer } = await import("node:buffer");
    await producer.send({
      topic,
      acks: -1,
      messages: records.map((r) => ({ key: r.key, value: Buffer.from(r.value) })),
    });
  } finally {
    await producer.disconnect();
  }
}

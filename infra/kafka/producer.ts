/**
 * {@linkcode PushProducer} on Kafka (npm:kafkajs): logic's end of the queue.
 *
 * Records are what goim's logic writes: key = {@linkcode partitionKey}
 * (first key, room, or operation), value = {@linkcode encodePushMsg} bytes,
 * partition chosen like sarama's default hash partitioner — so a goim job
 * can consume our topic, our job can consume goim's, and both logics may
 * share one topic without breaking per-key order.
 *
 * Durability: acks = -1 (all in-sync replicas) and kafkajs' idempotent
 * producer (no duplicates from its own internal retries). A publish resolves
 * only once the brokers acknowledged it.
 *
 * Throughput: publishes that arrive while a send is in flight are merged
 * into the next send (one Produce request for many records; no fixed
 * linger delay), at most `maxBatch` records per send.
 *
 * Bounded failure: every publish has its own deadline (`publishTimeoutMs`,
 * default 5 s). Kafka unreachable → the publish rejects with a
 * {@linkcode QueueUnavailableError} naming the brokers, within that bound
 * (a refused connection fails in well under a second). A publish still
 * waiting to be sent at its deadline is withdrawn and never written; one
 * already sent but not yet acknowledged is reported as failed too and *may*
 * still be written — the caller's retry then duplicates it, which
 * at-least-once delivery allows. At most `maxPending` publishes wait for a
 * send; beyond that publish fails at once. After a failed send the kafkajs
 * producer is replaced by a fresh one, so a producer id whose sequence
 * numbers are in doubt is never reused.
 *
 * {@linkcode KafkaProducer.healthy} is the outcome of the last send or
 * connection attempt; a background connect starts at construction.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Kafka, Producer } from "kafkajs";
import type { PushMsg } from "../../proto/messages.ts";
import { encodePushMsg } from "../../proto/push_msg.ts";
import type { Logger } from "../log.ts";
import { partitionKey, type PushProducer, QueueUnavailableError } from "../queue.ts";
import {
  brokerList,
  createKafkaClient,
  ensureTopic,
  FAST_RETRY,
  type KafkaConnectOptions,
  saramaPartitioner,
} from "./client.ts";

/** Options of {@linkcode KafkaProducer}. */
export interface KafkaProducerOptions extends KafkaConnectOptions {
  /** Topic to publish to (config `queue.kafka.topic`). */
  topic: string;
  /** Longest a publish may take before it fails (default 5000 ms). */
  publishTimeoutMs?: number;
  /** Publishes waiting for a send before publish fails at once (default 10000). */
  maxPending?: number;
  /** Records per send (default 1000). */
  maxBatch?: number;
  /** Create the topic (broker defaults) when missing (default true). */
  ensureTopic?: boolean;
  /** Connect in the background at construction, so `healthy()` means something early (default true). */
  connectEagerly?: boolean;
}

interface Pending {
  key: string;
  value: Uint8Array;
  timestamp: number;
  state: "queued" | "sending" | "settled";
  timer: ReturnType<typeof setTimeout> | undefined;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * The Kafka {@linkcode PushProducer}.
 *
 * @example
 * ```ts
 * declare const body: Uint8Array;
 * const producer = new KafkaProducer({ brokers: ["127.0.0.1:9092"], clientId: "goim", topic: "goim-push-topic" });
 * await producer.publish({ type: "PUSH", operation: 1000, speed: 0, server: "comet-1", room: "", keys: ["k1"], msg: body });
 * await producer.close();
 * ```
 */
export class KafkaProducer implements PushProducer {
  readonly #kafka: Kafka;
  readonly #topic: string;
  readonly #brokers: string;
  readonly #timeoutMs: number;
  readonly #maxPending: number;
  readonly #maxBatch: number;
  readonly #ensureTopic: boolean;
  readonly #log?: Logger;

  #producer?: Producer;
  #connecting?: Promise<Producer>;
  #topicReady = false;
  #queue: Pending[] = [];
  #sending?: Promise<void>;
  #healthy = false;
  #closed = false;

  /** Creates the producer; connects in the background unless `connectEagerly` is false. */
  constructor(opts: KafkaProducerOptions) {
    this.#kafka = createKafkaClient(opts);
    this.#topic = opts.topic;
    this.#brokers = brokerList(opts.brokers);
    this.#timeoutMs = opts.publishTimeoutMs ?? 5000;
    this.#maxPending = opts.maxPending ?? 10_000;
    this.#maxBatch = opts.maxBatch ?? 1000;
    this.#ensureTopic = opts.ensureTopic ?? true;
    this.#log = opts.log?.child({ component: "kafka-producer", topic: opts.topic });
    if (opts.connectEagerly ?? true) {
      this.#connect().then(
        () => this.#healthy = true,
        (e) => this.#log?.warn("kafka not reachable yet", { brokers: this.#brokers, error: e }),
      );
    }
  }

  /** Whether the last send or connection attempt reached Kafka. */
  healthy(): boolean {
    return this.#healthy && !this.#closed;
  }

  /** Connects now (topic created if needed); rejects with {@linkcode QueueUnavailableError}. */
  async connect(): Promise<void> {
    try {
      await this.#connect();
      this.#healthy = true;
    } catch (e) {
      this.#healthy = false;
      throw this.#unavailable(`cannot connect: ${(e as Error).message}`, e);
    }
  }

  /**
   * Publishes one message; resolves when all in-sync replicas have it.
   * Rejects with {@linkcode QueueUnavailableError} when Kafka does not take
   * it within `publishTimeoutMs`, and with a `TypeError` for a message that
   * cannot be encoded.
   */
  publish(msg: PushMsg): Promise<void> {
    if (this.#closed) return Promise.reject(new QueueUnavailableError("kafka producer closed"));
    if (this.#queue.length >= this.#maxPending) {
      return Promise.reject(this.#unavailable(`${this.#maxPending} publishes already waiting`));
    }
    let value: Uint8Array;
    try {
      value = encodePushMsg(msg);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<void>((resolve, reject) => {
      const p: Pending = {
        key: partitionKey(msg),
        value,
        timestamp: Date.now(),
        state: "queued",
        timer: undefined,
        resolve,
        reject,
      };
      p.timer = setTimeout(() => this.#expire(p), this.#timeoutMs);
      this.#queue.push(p);
      this.#kick();
    });
  }

  /** Waits for publishes in flight (each bounded by its deadline), then disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#sending) await this.#sending;
    for (const p of this.#queue) {
      this.#settle(p, new QueueUnavailableError("kafka producer closed"));
    }
    this.#queue = [];
    await this.#dropProducer();
  }

  #unavailable(what: string, cause?: unknown): QueueUnavailableError {
    return new QueueUnavailableError(
      `kafka (brokers ${this.#brokers}, topic ${this.#topic}) unavailable: ${what}`,
      cause === undefined ? undefined : { cause },
    );
  }

  #settle(p: Pending, error?: Error): void {
    if (p.state === "settled") return;
    p.state = "settled";
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve();
  }

  #expire(p: Pending): void {
    if (p.state === "settled") return;
    this.#healthy = false;
    if (p.state === "queued") {
      // Never handed to kafkajs: withdraw it, so it is certainly not written.
      const i = this.#queue.indexOf(p);
      if (i >= 0) this.#queue.splice(i, 1);
      this.#settle(p, this.#unavailable(`not sent within ${this.#timeoutMs} ms`));
    } else {
      this.#settle(
        p,
        this.#unavailable(
          `not acknowledged within ${this.#timeoutMs} ms (it may still be written)`,
        ),
      );
    }
  }

  #kick(): void {
    if (this.#sending || this.#queue.length === 0) return;
    this.#sending = this.#sendLoop().finally(() => {
      this.#sending = undefined;
      this.#kick();
    });
  }

  async #sendLoop(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      for (const p of batch) p.state = "sending";
      try {
        const producer = await this.#connect();
        await producer.send({
          topic: this.#topic,
          acks: -1,
          timeout: this.#timeoutMs,
          messages: batch.map((p) => ({
            key: p.key,
            // kafkajs wants a Buffer; a view over the same bytes, not a copy.
            value: Buffer.from(p.value.buffer, p.value.byteOffset, p.value.byteLength),
            timestamp: String(p.timestamp),
          })),
        });
        this.#healthy = true;
        for (const p of batch) this.#settle(p);
      } catch (e) {
        this.#healthy = false;
        const err = this.#unavailable((e as Error).message, e);
        this.#log?.warn("kafka publish failed", {
          brokers: this.#brokers,
          messages: batch.length,
          error: e,
        });
        for (const p of batch) this.#settle(p, err);
        await this.#dropProducer();
      }
    }
  }

  #connect(): Promise<Producer> {
    if (this.#producer) return Promise.resolve(this.#producer);
    return this.#connecting ??= (async () => {
      const producer = this.#kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        // Bounded on purpose (kafkajs warns that unbounded retries protect
        // exactly-once better): a publish must fail within seconds.
        retry: { ...FAST_RETRY },
        createPartitioner: saramaPartitioner,
      });
      try {
        if (this.#ensureTopic && !this.#topicReady) {
          if (await ensureTopic(this.#kafka, this.#topic)) {
            this.#log?.info("created kafka topic", { topic: this.#topic });
          }
          this.#topicReady = true;
        }
        await producer.connect();
      } catch (e) {
        await producer.disconnect().catch(() => {});
        throw e;
      }
      if (this.#closed) {
        await producer.disconnect().catch(() => {});
        throw new QueueUnavailableError("kafka producer closed");
      }
      this.#producer = producer;
      return producer;
    })().finally(() => this.#connecting = undefined);
  }

  async #dropProducer(): Promise<void> {
    const connecting = this.#connecting;
    if (connecting) await connecting.catch(() => {});
    const p = this.#producer;
    this.#producer = undefined;
    if (p) await p.disconnect().catch(() => {});
  }
}

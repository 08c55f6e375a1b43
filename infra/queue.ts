/**
 * The push queue between logic (producer) and job (consumer).
 *
 * Two engines implement it: memory (embedded mode, one process) and Kafka
 * (distributed mode, npm:kafkajs). Roles depend on this interface only.
 *
 * @module
 */

import type { PushMsg } from "../proto/messages.ts";
import { midStream } from "./streams.ts";

/**
 * Thrown by {@linkcode PushQueue.publish} when the message cannot be
 * accepted right now (broker unreachable, bounded buffer full). Logic
 * answers such a push with HTTP 503 and this message.
 */
export class QueueUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "QueueUnavailableError";
  }
}

/**
 * What a queue engine knows about a message besides its content, passed as
 * the optional second argument of a {@linkcode PushHandler}.
 */
export interface PushMeta {
  /** When the message was published, in ms since the epoch (Kafka: the record timestamp). */
  publishedAt?: number;
  /**
   * The message's identity in the queue, the same each time the queue
   * delivers it again (Kafka: `<topic>/<partition>/<offset>`; memory: a
   * sequence number of the queue). Job derives the push id of a message
   * that has none (a goim logic's) from it, so a redelivery still gets its
   * first stream position (docs/STREAMS.md).
   */
  id?: string;
}

/**
 * Handles one consumed message. Resolve once the message has been handed to
 * every comet that should get it; only then does the queue consider it done
 * (the Kafka engine commits its offset). Reject to have it retried. Every
 * engine passes `meta`; a handler that ignores it may take one parameter.
 */
export type PushHandler = (msg: PushMsg, meta?: PushMeta) => Promise<void>;

/** Producer side, used by logic. */
export interface PushProducer {
  /**
   * Publishes one message; resolves when the queue has it durably (Kafka:
   * acknowledged by all in-sync replicas). Rejects with
   * {@linkcode QueueUnavailableError} when it cannot.
   */
  publish(msg: PushMsg): Promise<void>;
  /** Whether the last publish or health probe reached the queue. */
  healthy(): boolean;
  /** Flushes and releases resources. */
  close(): Promise<void>;
}

/** Consumer side, used by job. */
export interface PushConsumer {
  /**
   * Starts delivering messages to `handler`, in order per partition key.
   * Resolves once consuming has started.
   */
  start(handler: PushHandler): Promise<void>;
  /** Stops consuming (after in-flight handlers finish) and releases resources. */
  close(): Promise<void>;
  /**
   * Messages not yet acknowledged, if the engine can tell (memory: the
   * depth; Kafka: uncommitted records). Rejects while that is unknown.
   */
  lag?(): Promise<number>;
  /** Whether consuming works right now, if the engine can tell (Kafka: joined its group). */
  healthy?(): boolean;
}

/**
 * The partition key goim uses: the first key for PUSH, the room for ROOM,
 * the operation for BROADCAST. Messages with one key stay in order. A push
 * to a mid's stream (PUSH with `mid` and no keys, docs/STREAMS.md) is keyed
 * by its stream name `mid:<mid>`, so one mid's pushes stay in order and reach one job.
 *
 * @example
 * ```ts
 * partitionKey({ type: "ROOM", room: "live://1", operation: 1000, keys: [] }); // "live://1"
 * partitionKey({ type: "PUSH", room: "", operation: 1000, keys: [], mid: 42 }); // "mid:42"
 * ```
 */
export function partitionKey(
  msg: Pick<PushMsg, "type" | "keys" | "room" | "operation" | "mid">,
): string {
  switch (msg.type) {
    case "PUSH":
      if (msg.keys.length === 0 && msg.mid) return midStream(msg.mid);
      return msg.keys[0] ?? "";
    case "ROOM":
      return msg.room;
    default:
      return String(msg.operation);
  }
}

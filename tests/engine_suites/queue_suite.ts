/**
 * The behaviour every push queue engine must have (infra/queue.ts), as one
 * suite that tests/queue_test.ts runs against memory and Kafka.
 *
 * Engine-specific checks (a bounded memory queue, an unreachable broker, a
 * garbage record) run only where the harness offers the hook they need.
 *
 * @example
 * ```ts
 * import { createMemoryQueue } from "../../infra/memory/queue.ts";
 * queueSuite("memory", () => {
 *   const q = createMemoryQueue({ capacity: 1000 });
 *   const cleanup = async () => void await Promise.all([q.producer.close(), q.consumer.close()]);
 *   return Promise.resolve({ ...q, pending: () => Promise.resolve(q.depth()), cleanup });
 * });
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import type { PushMsg } from "../../proto/messages.ts";
import {
  partitionKey,
  type PushConsumer,
  type PushMeta,
  type PushProducer,
  QueueUnavailableError,
} from "../../infra/queue.ts";
import { waitFor } from "./harness.ts";
import type { SuiteOptions } from "./sessions_suite.ts";

/** One queue under test. */
export interface QueueHarness {
  /** Publishing end. */
  producer: PushProducer;
  /** Consuming end; the test starts it with its own handler. */
  consumer: PushConsumer;
  /** Messages published and not yet acknowledged (memory: depth; Kafka: uncommitted lag). */
  pending(): Promise<number>;
  /** Closes both ends and deletes what the test created. */
  cleanup(): Promise<void>;
}

/** Engine-specific hooks; a test that needs an absent hook is not registered. */
export interface QueueSuiteHooks {
  /** A queue of this capacity whose consumer never starts (memory). */
  bounded?: (capacity: number) => QueueHarness;
  /** A producer that cannot reach its queue, and the address it names (Kafka at a closed port). */
  unreachable?: () => { producer: PushProducer; address: string };
  /** Writes raw bytes as one record to the harness's queue (Kafka). */
  publishRaw?: (h: QueueHarness, key: string, bytes: Uint8Array) => Promise<void>;
}

/** Builds a fresh, empty queue. */
export type MakeQueue = () => Promise<QueueHarness>;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A complete PushMsg for tests. */
export function pushMsg(over: Partial<PushMsg> & Pick<PushMsg, "type">): PushMsg {
  return {
    operation: 1000,
    speed: 0,
    server: "",
    room: "",
    keys: [],
    msg: new Uint8Array(),
    ...over,
  };
}

interface Received {
  msg: PushMsg;
  meta?: PushMeta;
}

/** A handler that records what it gets, and a way to await a count. */
function recorder(fail?: (msg: PushMsg, calls: number) => boolean) {
  const got: Received[] = [];
  let calls = 0;
  const handler = (msg: PushMsg, meta?: PushMeta): Promise<void> => {
    calls++;
    if (fail?.(msg, calls)) return Promise.reject(new Error("handler failure (test)"));
    got.push({ msg, meta });
    return Promise.resolve();
  };
  const until = (n: number, what = `${n} messages`) =>
    waitFor(() => got.length >= n, { timeoutMs: 20_000, intervalMs: 10, what });
  return { got, handler, until, calls: () => calls };
}

/** Registers the queue tests for one engine as `Deno.test`s named `<name> queue: …`. */
export function queueSuite(
  name: string,
  make: MakeQueue,
  hooks: QueueSuiteHooks = {},
  opts: SuiteOptions = {},
): void {
  const test = (title: string, fn: (h: QueueHarness) => Promise<void>) =>
    Deno.test({
      name: `${name} queue: ${title}`,
      ignore: opts.ignore ?? false,
      sanitizeOps: false,
      sanitizeResources: false,
      fn: async () => {
        const h = await make();
        try {
          await fn(h);
        } finally {
          await h.cleanup();
        }
      },
    });

  test("round trip of PUSH, ROOM and BROADCAST", async ({ producer, consumer }) => {
    const sent = [
      pushMsg({
        type: "PUSH",
        operation: 1001,
        server: "comet-1",
        keys: ["k1", "k2"],
        msg: enc.encode("to keys"),
      }),
      pushMsg({ type: "ROOM", operation: 1002, room: "live://7", msg: enc.encode("to room") }),
      pushMsg({ type: "BROADCAST", operation: 1003, speed: 50, msg: enc.encode("to all") }),
    ];
    const r = recorder();
    await consumer.start(r.handler);
    const before = Date.now();
    for (const m of sent) await producer.publish(m);
    assert.ok(producer.healthy(), "healthy after successful publishes");
    await r.until(3);
    // Different partition keys may be consumed in any order.
    const byType = new Map(r.got.map((g) => [g.msg.type, g]));
    for (const m of sent) {
      const g = byType.get(m.type);
      assert.ok(g, `${m.type} delivered`);
      assert.deepEqual({ ...g.msg, msg: dec.decode(g.msg.msg) }, { ...m, msg: dec.decode(m.msg) });
      const at = g.meta?.publishedAt;
      assert.ok(at !== undefined && at >= before - 1000 && at <= Date.now(), `publishedAt ${at}`);
    }
    assert.equal(r.got.length, 3, "nothing delivered twice");
  });

  test("messages of one partition key are handled in publish order", async ({ producer, consumer }) => {
    const keys = ["k-a", "k-b", "live://x", "k-c", "k-d"];
    const per = 60;
    const r = recorder();
    await consumer.start(r.handler);
    const publishes: Promise<void>[] = [];
    for (let i = 0; i < per; i++) {
      for (const k of keys) {
        const m = k.startsWith("live://")
          ? pushMsg({ type: "ROOM", room: k, msg: enc.encode(String(i)) })
          : pushMsg({ type: "PUSH", server: "c", keys: [k], msg: enc.encode(String(i)) });
        publishes.push(producer.publish(m));
      }
    }
    await Promise.all(publishes);
    await r.until(per * keys.length);
    const seen = new Map<string, number[]>();
    for (const { msg } of r.got) {
      const k = partitionKey(msg);
      seen.set(k, [...(seen.get(k) ?? []), Number(dec.decode(msg.msg))]);
    }
    for (const k of keys) {
      assert.deepEqual(seen.get(k), Array.from({ length: per }, (_, i) => i), `order of ${k}`);
    }
  });

  test("a rejected message is retried until handled, and only then acknowledged", async (h) => {
    const { producer, consumer } = h;
    let failuresLeft = 2;
    const r = recorder((msg) => dec.decode(msg.msg) === "flaky" && failuresLeft-- > 0);
    await consumer.start(r.handler);
    await producer.publish(
      pushMsg({ type: "PUSH", server: "c", keys: ["k"], msg: enc.encode("flaky") }),
    );
    await producer.publish(
      pushMsg({ type: "PUSH", server: "c", keys: ["k"], msg: enc.encode("next") }),
    );
    await r.until(2);
    assert.equal(failuresLeft, -1, "failed twice, then succeeded on the third call");
    // Order between the two is not promised: "next" may be in flight before "flaky" fails.
    assert.deepEqual(r.got.map((g) => dec.decode(g.msg.msg)).sort(), ["flaky", "next"]);
    await waitFor(async () => (await h.pending()) === 0, {
      timeoutMs: 10_000,
      what: "both messages to be acknowledged (committed)",
    });
  });

  test("nothing is acknowledged while its handler has not resolved", async (h) => {
    const { producer, consumer } = h;
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    let started = false;
    await consumer.start(async () => {
      started = true;
      await gate;
    });
    await producer.publish(pushMsg({ type: "ROOM", room: "live://held", msg: enc.encode("x") }));
    await waitFor(() => started, { timeoutMs: 20_000, what: "handler to be invoked" });
    assert.equal(await h.pending(), 1, "still pending while the handler runs");
    release();
    await waitFor(async () => (await h.pending()) === 0, {
      timeoutMs: 10_000,
      what: "the message to be acknowledged",
    });
  });

  test("close waits for handlers in flight", async ({ producer, consumer }) => {
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    let started = false, finished = false;
    await consumer.start(async () => {
      started = true;
      await gate;
      finished = true;
    });
    await producer.publish(pushMsg({ type: "BROADCAST", msg: enc.encode("slow") }));
    await waitFor(() => started, { timeoutMs: 20_000, what: "handler to be invoked" });
    let closed = false;
    const closing = consumer.close().then(() => closed = true);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(closed, false, "close() must not resolve while a handler runs");
    release();
    await closing;
    assert.ok(finished);
  });

  test("publish after close rejects with QueueUnavailableError", async ({ producer }) => {
    await producer.close();
    await assert.rejects(
      producer.publish(pushMsg({ type: "PUSH", server: "c", keys: ["k"] })),
      QueueUnavailableError,
    );
    assert.equal(producer.healthy(), false);
  });

  if (hooks.bounded) {
    const bounded = hooks.bounded;
    Deno.test({
      name: `${name} queue: a full queue rejects publish at once, and takes more when drained`,
      ignore: opts.ignore ?? false,
      fn: async () => {
        const h = bounded(3);
        try {
          for (let i = 0; i < 3; i++) await h.producer.publish(pushMsg({ type: "BROADCAST" }));
          await assert.rejects(
            h.producer.publish(pushMsg({ type: "BROADCAST" })),
            (e: unknown) =>
              e instanceof QueueUnavailableError &&
              /memory queue full \(capacity 3\)/.test(e.message),
          );
          assert.equal(h.producer.healthy(), false);
          assert.equal(await h.pending(), 3);
          const r = recorder();
          await h.consumer.start(r.handler);
          await r.until(3);
          await waitFor(async () => (await h.pending()) === 0, { timeoutMs: 2000, what: "drain" });
          assert.equal(h.producer.healthy(), true);
          await h.producer.publish(pushMsg({ type: "BROADCAST" }));
          await r.until(4);
        } finally {
          await h.cleanup();
        }
      },
    });
  }

  if (hooks.unreachable) {
    const unreachable = hooks.unreachable;
    Deno.test({
      name: `${name} queue: an unreachable queue fails publish within 6 s`,
      // Needs no running engine: it talks to a closed port.
      ignore: false,
      sanitizeOps: false,
      sanitizeResources: false,
      fn: async () => {
        const { producer, address } = unreachable();
        try {
          const t0 = performance.now();
          await assert.rejects(
            producer.publish(pushMsg({ type: "PUSH", server: "c", keys: ["k"] })),
            (e: unknown) => e instanceof QueueUnavailableError && e.message.includes(address),
          );
          const ms = performance.now() - t0;
          assert.ok(ms < 6000, `failed after ${ms.toFixed(0)} ms`);
          assert.equal(producer.healthy(), false);
        } finally {
          await producer.close();
        }
      },
    });
  }

  if (hooks.publishRaw) {
    const publishRaw = hooks.publishRaw;
    test("an undecodable record is skipped and the next one delivered", async (h) => {
      const r = recorder();
      await h.consumer.start(r.handler);
      // Field 1 (type) as a length-delimited field: wire type mismatch + truncation.
      await publishRaw(h, "k", new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0x01]));
      await h.producer.publish(
        pushMsg({ type: "PUSH", server: "c", keys: ["k"], msg: enc.encode("after garbage") }),
      );
      await r.until(1);
      assert.equal(dec.decode(r.got[0].msg.msg), "after garbage");
      await waitFor(async () => (await h.pending()) === 0, {
        timeoutMs: 10_000,
        what: "garbage and message to be committed",
      });
    });
  }
}

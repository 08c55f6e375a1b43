/**
 * kafkajs 2.2.4 re-arms a 1 ms timer per broker connection forever while
 * idle (infra/kafka/idle_fix.ts): an idle job or logic burned CPU for
 * nothing. Against the real broker: a connected, idle producer arms almost
 * no short timers, and still sends at once afterwards.
 */
import assert from "node:assert/strict";
import { createKafkaClient, ensureTopic } from "../infra/kafka/client.ts";
import { idleFixInstalled } from "../infra/kafka/idle_fix.ts";
import { deleteTopic, kafkaTestBrokers, uniqueTopic } from "./kafka_env.ts";

const kafka = await kafkaTestBrokers();

Deno.test({
  name: "kafka idle: a connected producer does not spin a 1 ms timer, and still sends",
  ignore: kafka.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    kafka.assertReachable();
    assert.ok(idleFixInstalled, "the guard found kafkajs' RequestQueue");
    const { topic } = uniqueTopic();
    const client = createKafkaClient({ brokers: kafka.brokers, clientId: "idle-test" });
    const producer = client.producer();
    const original = globalThis.setTimeout;
    let short = 0;
    try {
      await ensureTopic(client, topic);
      await producer.connect();
      await producer.send({ topic, messages: [{ value: "warm" }] });
      // Count the timers of 1 ms or less (negative ones are clamped to 1) while idle.
      // deno-lint-ignore no-explicit-any
      (globalThis as any).setTimeout = (fn: () => void, ms?: number) => {
        if (typeof ms === "number" && ms <= 1) short++;
        return original(fn, ms);
      };
      await new Promise((r) => original(r, 1000));
      globalThis.setTimeout = original;
      // Unfixed: about one per millisecond per connection (≈1,000 here).
      assert.ok(short < 20, `${short} timers of ≤ 1 ms in 1 s idle`);
      const t0 = performance.now();
      await producer.send({ topic, messages: [{ value: "after idle" }] });
      assert.ok(performance.now() - t0 < 5000, "a send after the idle second completes");
    } finally {
      globalThis.setTimeout = original;
      await producer.disconnect();
      await deleteTopic(kafka.brokers, topic);
    }
  },
});

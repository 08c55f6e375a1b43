// Job throughput and latency: queue → job → fake comet (documented in
// docs/JOB.md, not run in CI).
//
//   ./scripts/deno run -A bench/job_load.ts [--engine memory|kafka] [--type push|room]
//       [--count 200000] [--rate 0] [--seconds 10] [--producer-process]
//
// --rate 0 (default): publish --count messages as fast as the queue takes
// them and report messages/s from the first publish to the last message
// handed to the comet. --rate N: publish N messages/s for --seconds and
// report the latency from publish to comet (p50/p90/p99/max). Each message
// body carries its publish time (epoch ms, float64), read by the fake comet.
//
// The fake comet resolves every call at once: what is measured is queue +
// job (decode, lanes, batching, bookkeeping), not gRPC or client sockets.
// PUSH messages go to 10,000 keys on one comet (32 lanes); ROOM messages to
// 100 rooms (batches of job.room.batch = 20, window 20 ms).
//
// --engine kafka needs the broker of scripts/services.sh (or
// GOIM_TEST_KAFKA_BROKERS) and uses a fresh topic (broker default of 4
// partitions) and group, deleted afterwards. With --producer-process the
// producer runs in a child process (this script with --produce), as logic
// would, so producer and job get a core each on a 2-core box.
import { loadConfig } from "../infra/config.ts";
import { createLogger } from "../infra/log.ts";
import { createMemoryQueue } from "../infra/memory/queue.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { createMetrics } from "../infra/metrics.ts";
import type { PushConsumer, PushProducer } from "../infra/queue.ts";
import type { CometApi } from "../proto/api.ts";
import type { PushMsg } from "../proto/messages.ts";
import { decodeFrames } from "../protocol/frame.ts";
import { Job } from "../job/job.ts";
import { arg, flag } from "./lib/args.ts";

const ENGINE = arg("engine", "memory");
const TYPE = arg("type", "push") as "push" | "room";
const COUNT = Number(arg("count", "200000"));
const RATE = Number(arg("rate", "0"));
const SECONDS = Number(arg("seconds", "10"));
const BROKERS = (Deno.env.get("GOIM_TEST_KAFKA_BROKERS") || "127.0.0.1:9092").split(",");
const KEYS = 10_000;
const ROOMS = 100;

const nowMs = () => performance.timeOrigin + performance.now();

function message(i: number): PushMsg {
  const body = new Uint8Array(64);
  new DataView(body.buffer).setFloat64(0, nowMs());
  return TYPE === "room"
    ? {
      type: "ROOM",
      operation: 1000,
      speed: 0,
      server: "",
      room: `live://${i % ROOMS}`,
      keys: [],
      msg: body,
    }
    : {
      type: "PUSH",
      operation: 1000,
      speed: 0,
      server: "c1",
      room: "",
      keys: [`key-${i % KEYS}`],
      msg: body,
    };
}

/** Publishes `count` messages (or `rate`/s for `seconds`), keeping at most `window` unacknowledged. */
async function produce(producer: PushProducer, count: number, rate: number, window = 5000) {
  const inflight = new Set<Promise<void>>();
  let failed = 0;
  const send = async (i: number) => {
    const p = producer.publish(message(i)).catch((e) => {
      if (failed++ === 0) console.error("publish failed:", (e as Error).message);
    });
    inflight.add(p);
    p.finally(() => inflight.delete(p));
    if (inflight.size >= window) await Promise.race(inflight);
  };
  if (rate <= 0) {
    for (let i = 0; i < count; i++) await send(i);
  } else {
    // Publish in 10 ms ticks of rate/100 messages each.
    const perTick = Math.max(1, Math.round(rate / 100));
    const t0 = performance.now();
    let i = 0;
    for (let tick = 0; i < count; tick++) {
      const due = t0 + tick * 10;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      for (let k = 0; k < perTick && i < count; k++) await send(i++);
    }
  }
  await Promise.all(inflight);
  if (failed > 0) console.error(`${failed} publishes failed`);
}

if (flag("produce")) {
  // Child process: publish to Kafka and exit.
  const { KafkaProducer } = await import("../infra/kafka/queue.ts");
  const producer = new KafkaProducer({
    brokers: BROKERS,
    clientId: "goim-bench",
    topic: arg("topic", ""),
  });
  await producer.connect();
  await produce(producer, COUNT, RATE);
  await producer.close();
  Deno.exit(0);
}

const total = RATE > 0 ? Math.round(RATE * SECONDS) : COUNT;
const latencies: number[] = [];
let received = 0;
let firstAt = 0, lastAt = 0;
let done!: () => void;
const allIn = new Promise<void>((r) => done = r);
const note = (body: Uint8Array) => {
  const t = nowMs();
  if (RATE > 0) latencies.push(t - new DataView(body.buffer, body.byteOffset, 8).getFloat64(0));
  if (received++ === 0) firstAt = t;
  lastAt = t;
  if (received === total) done();
};
const comet: CometApi = {
  PushMsg: (req) => {
    note(req.proto!.body);
    return Promise.resolve({});
  },
  BroadcastRoom: (req) => {
    for (const f of decodeFrames(req.proto!.body)) note(f.body);
    return Promise.resolve({});
  },
  Broadcast: () => Promise.resolve({}),
  Rooms: () => Promise.reject(new Error("rooms unknown: send every room")),
};

const config = loadConfig({ env: {}, args: [], onWarning: () => {} });
const registry = new MemoryRegistry();
await registry.register({
  id: "c1",
  grpcAddr: "in-process",
  addrs: [],
  tcpPort: 0,
  wsPort: 0,
  wssPort: 0,
  weight: 1,
  connections: 0,
  ips: 0,
}, 600_000);

let consumer: PushConsumer;
let producer: PushProducer | undefined;
let cleanup = async () => {};
if (ENGINE === "kafka") {
  const { KafkaConsumer, KafkaProducer } = await import("../infra/kafka/queue.ts");
  const { deleteTopic } = await import("../tests/kafka_env.ts");
  const topic = `goimbench-${crypto.randomUUID().slice(0, 8)}`;
  const log = createLogger({ level: "error" });
  consumer = new KafkaConsumer({
    brokers: BROKERS,
    clientId: "goim-bench",
    topic,
    group: `${topic}-job`,
    fromBeginning: true,
    log,
  });
  if (flag("producer-process")) {
    producer = undefined;
    cleanup = () => deleteTopic(BROKERS, topic);
    Deno.env.set("BENCH_TOPIC", topic);
  } else {
    producer = new KafkaProducer({ brokers: BROKERS, clientId: "goim-bench", topic, log });
    cleanup = async () => {
      await producer!.close();
      await deleteTopic(BROKERS, topic);
    };
  }
} else {
  const q = createMemoryQueue({ capacity: Math.max(total, 65_536) });
  consumer = q.consumer;
  producer = q.producer;
}

const job = new Job({
  config,
  consumer,
  registry,
  connect: () => comet,
  metrics: createMetrics("job"),
});
await job.start();
const t0 = nowMs();
let child: Deno.ChildProcess | undefined;
if (producer) {
  await produce(producer, total, RATE);
} else {
  child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--produce",
      "--topic",
      Deno.env.get("BENCH_TOPIC")!,
      "--type",
      TYPE,
      "--count",
      String(total),
      "--rate",
      String(RATE),
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
}
const published = nowMs();
let timer: ReturnType<typeof setTimeout> | undefined;
await Promise.race([allIn, new Promise((r) => timer = setTimeout(r, 120_000))]);
clearTimeout(timer);
if (child) await child.status;
const end = lastAt;
await job.stop();
await cleanup();
await registry.close();

const pct = (p: number) => {
  const s = [...latencies].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const result = {
  engine: ENGINE + (child ? " (producer in a child process)" : ""),
  type: TYPE,
  messages: total,
  received,
  rate: RATE > 0 ? RATE : "max",
  publish_ms: Math.round(published - t0),
  end_to_end_ms: Math.round(end - t0),
  msgs_per_s: Math.round(received / ((end - t0) / 1000)),
  first_delivery_ms: Math.round(firstAt - t0),
  ...(RATE > 0
    ? {
      latency_ms: {
        p50: +pct(50).toFixed(2),
        p90: +pct(90).toFixed(2),
        p99: +pct(99).toFixed(2),
        max: +pct(100).toFixed(2),
      },
    }
    : {}),
};
console.log(JSON.stringify(result));

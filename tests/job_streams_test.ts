/**
 * Job as the ordering point of every stream (docs/STREAMS.md), on the
 * memory queue with fake comets (tests/job_fakes.ts): the queue's new
 * fields and ids, room batches appended and carrying positions, mid pushes
 * appended *before* their keys are looked up, order of many mid pushes
 * across lanes, redelivery getting the first position again, a store that
 * fails and recovers losing nothing, push status of ack pushes, and the
 * plain path when streams are off; with both stores on one ordered channel,
 * the lookup issued together with the append, their failures handled
 * apart, and the lookup redone behind a re-sent append — on fakes, then on
 * the real Redis stores (single node: MONITOR shows Redis ran the append
 * first, also after a SCRIPT FLUSH; cluster: one after the other). Then
 * the same over Kafka when the test broker is up.
 */

import assert from "node:assert/strict";
import type { Cluster, Redis } from "ioredis";
import { openEngines } from "../infra/engines.ts";
import type { RedisStreamStore } from "../infra/redis/streams.ts";
import { partitionKey, type PushMeta } from "../infra/queue.ts";
import { createMemoryQueue } from "../infra/memory/queue.ts";
import { MemorySessionStore } from "../infra/memory/sessions.ts";
import { MemoryPushStatusStore, MemoryStreamStore } from "../infra/memory/streams.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { createMetrics } from "../infra/metrics.ts";
import { KafkaConsumer } from "../infra/kafka/queue.ts";
import type {
  AckReport,
  Appended,
  PushStatus,
  PushStatusStore,
  Recovery,
  StreamEntry,
  StreamEntryInit,
  StreamRange,
  StreamStore,
} from "../infra/streams.ts";
import type { PushMsg } from "../proto/messages.ts";
import { decodePushMsg, encodePushMsg } from "../proto/push_msg.ts";
import { decodeFrames } from "../protocol/frame.ts";
import { Op } from "../protocol/ops.ts";
import { ascendingRuns, Job, type JobDeps } from "../job/job.ts";
import { jobMetrics } from "../job/metrics.ts";
import { pushIdOf, StreamWriter } from "../job/streams.ts";
import { eventually } from "./eventually.ts";
import { FakeComet, type JobHarness, record, startJob, testConfig, utf8 } from "./job_fakes.ts";
import { jobOnKafka } from "./job_kafka_env.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { redisTargets, uniqueKeyPrefix } from "./redis_cluster_env.ts";
import { Rng } from "./prng.ts";

const dec = new TextDecoder();
const hex = (s: string) => new Uint8Array(s.trim().split(/\s+/).map((b) => parseInt(b, 16)));
const PUSH_ID = /^[A-Za-z0-9_-]{22}$/;

// ---- fakes: a tiny stream store, recording sessions and push status ----

/**
 * A stream store after the contract (infra/streams.ts): contiguous
 * positions, one position per push id. Appends can fail or be delayed on
 * demand, and every call is written to `events`.
 */
class FakeStreams implements StreamStore {
  readonly streams = new Map<string, { epoch: string; entries: StreamEntry[] }>();
  /** The next `failures` appends fail as a store that is down would. */
  failures = 0;
  /** Awaited before each append (jitter). */
  delay?: () => Promise<void>;
  /** The next `reissues` appends answer as one re-sent after NOSCRIPT would. */
  reissues = 0;
  /** Set to the sessions' marker: job then issues append and lookup together. */
  orderedVia?: object;
  appends = 0;
  readonly #watchers = new Set<() => void>();

  constructor(readonly events: string[] = []) {}

  async append(stream: string, entries: readonly StreamEntryInit[]): Promise<Appended> {
    this.events.push(`append ${stream}`);
    if (this.delay) await this.delay();
    if (this.failures > 0) {
      this.failures--;
      this.#notify();
      throw new Error("fake store down");
    }
    let s = this.streams.get(stream);
    if (!s) this.streams.set(stream, s = { epoch: `e${this.streams.size + 1}`, entries: [] });
    const positions = entries.map((e) => {
      const held = s.entries.find((x) => x.pushId === e.pushId);
      if (held) return held.pos;
      const pos = s.entries.length + 1;
      s.entries.push({ ...e, pos, time: Date.now() });
      return pos;
    });
    this.appends++;
    this.#notify();
    if (this.reissues > 0) {
      this.reissues--;
      return { epoch: s.epoch, positions, reissued: true };
    }
    return { epoch: s.epoch, positions };
  }

  /** Resolves once `check()` holds, checked at every append (failed ones too). */
  until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#watchers.delete(watch);
        reject(new Error(`fake store: timed out waiting for ${what}`));
      }, timeoutMs);
      const watch = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.#watchers.delete(watch);
        resolve();
      };
      this.#watchers.add(watch);
    });
  }

  #notify(): void {
    for (const w of [...this.#watchers]) w();
  }

  recover(): Promise<Recovery> {
    return Promise.reject(new Error("not used by job"));
  }
  range(): Promise<StreamRange> {
    return Promise.reject(new Error("not used by job"));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Session routes that log each lookup into `events`, optionally after a delay. */
class RecordingSessions extends MemorySessionStore {
  delay?: () => Promise<void>;
  /** The next `failures` lookups fail as a store that is down would. */
  failures = 0;
  /** Set to the stream store's marker: job then issues append and lookup together. */
  orderedVia?: object;
  constructor(readonly events: string[]) {
    super({ ttlMs: 600_000 });
  }
  override async keysByMids(mids: readonly number[]): Promise<Map<string, string>> {
    this.events.push(`keysByMids ${mids.join(",")}`);
    if (this.delay) await this.delay();
    if (this.failures > 0) {
      this.failures--;
      throw new Error("fake sessions down");
    }
    return super.keysByMids(mids);
  }
}

/** Push status that records `delivered` calls. */
class RecordingStatus implements PushStatusStore {
  readonly delivered_: { id: string; target: string; sent: number }[] = [];
  create(): Promise<void> {
    return Promise.resolve();
  }
  delivered(id: string, target: string, sent: number): Promise<void> {
    this.delivered_.push({ id, target, sent });
    return Promise.resolve();
  }
  acked(_acks: readonly AckReport[]): Promise<void> {
    return Promise.resolve();
  }
  get(): Promise<PushStatus | null> {
    return Promise.resolve(null);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

interface StreamsHarness extends JobHarness {
  store: FakeStreams;
  sessions: RecordingSessions;
  status: RecordingStatus;
  events: string[];
}

async function withStreams(
  o: { comets?: string[]; set?: string[]; deps?: Partial<JobDeps> },
  fn: (h: StreamsHarness) => Promise<void>,
): Promise<void> {
  const events: string[] = [];
  const store = new FakeStreams(events);
  const sessions = new RecordingSessions(events);
  const status = new RecordingStatus();
  const h = await startJob({
    comets: o.comets ?? ["c1"],
    set: ["job.room.window=5ms", ...(o.set ?? [])],
    deps: { streams: store, sessions, pushStatus: status, ...o.deps },
  });
  // Comet calls go into the same log, so the order of store and comet calls can be asserted.
  for (const c of h.comets.values()) {
    const push = c.PushMsg;
    c.PushMsg = (req) => {
      events.push(`PushMsg ${c.id} ${req.keys.join(",")}`);
      return push(req);
    };
  }
  try {
    await fn({ ...h, store, sessions, status, events });
  } finally {
    await h.stop();
    await sessions.close();
  }
}

function roomFrames(c: FakeComet): string[] {
  return c.of("BroadcastRoom").flatMap((call) =>
    decodeFrames(call.req.proto!.body).map((f) => dec.decode(f.body))
  );
}

/** A room message to live://r carrying `body`. */
function roomMsg(body: string): PushMsg {
  return {
    type: "ROOM",
    operation: 1000,
    speed: 0,
    server: "",
    room: "live://r",
    keys: [],
    msg: utf8(body),
  };
}

// ---- the queue: codec, partition key, ids ----

Deno.test("PushMsg codec: push_id, mid and ack take fields 100–102, and only when set", () => {
  const bytes = encodePushMsg({
    type: "PUSH",
    operation: 1000,
    msg: utf8("hi"),
    push_id: "abc",
    mid: 2 ** 40 + 5,
    ack: true,
  });
  // 100 → a2 06 (len 3 "abc"), 101 → a8 06 (varint 2^40+5), 102 → b0 06 01.
  assert.deepEqual(
    bytes,
    hex("10 e8 07  3a 02 68 69  a2 06 03 61 62 63  a8 06 85 80 80 80 80 20  b0 06 01"),
  );
  assert.deepEqual(
    decodePushMsg(bytes),
    {
      type: "PUSH",
      operation: 1000,
      speed: 0,
      server: "",
      room: "",
      keys: [],
      msg: utf8("hi"),
      push_id: "abc",
      mid: 2 ** 40 + 5,
      ack: true,
    } satisfies PushMsg,
  );
  // Unset (or default) they leave goim's bytes alone, and a goim message decodes without them.
  const goim = hex("08 01  10 e8 07  2a 0b 6c 69 76 65 3a 2f 2f 31 30 30 30  3a 03 01 02 03");
  const room = {
    type: "ROOM",
    operation: 1000,
    room: "live://1000",
    msg: new Uint8Array([1, 2, 3]),
  };
  assert.deepEqual(encodePushMsg({ ...room, push_id: "", mid: 0, ack: false } as PushMsg), goim);
  assert.equal(Object.hasOwn(decodePushMsg(goim), "push_id"), false);
  assert.equal(Object.hasOwn(decodePushMsg(goim), "mid"), false);
  assert.equal(Object.hasOwn(decodePushMsg(goim), "ack"), false);
  assert.equal(decodePushMsg(encodePushMsg({ mid: -3 })).mid, -3);
});

Deno.test("partitionKey: a mid push is keyed by its stream, a key push by its first key", () => {
  const push = { type: "PUSH" as const, room: "", operation: 1000 };
  assert.equal(partitionKey({ ...push, keys: [], mid: 42 }), "mid:42");
  assert.equal(partitionKey({ ...push, keys: ["k1", "k2"], mid: 42 }), "k1");
  assert.equal(partitionKey({ ...push, keys: ["k1"] }), "k1");
  assert.equal(partitionKey({ ...push, keys: [] }), "");
});

Deno.test("memory queue: each message has its own id, the same when it is delivered again", async () => {
  const q = createMemoryQueue({ capacity: 10, retryBaseDelayMs: 1 });
  const seen: [string, string | undefined][] = [];
  let failed = false;
  let done!: () => void;
  const finished = new Promise<void>((r) => done = r);
  await q.consumer.start((msg, meta) => {
    const body = dec.decode(msg.msg);
    seen.push([body, meta?.id]);
    if (body === "b" && !failed) {
      failed = true;
      return Promise.reject(new Error("once"));
    }
    if (seen.length === 4) done();
    return Promise.resolve();
  });
  for (const body of ["a", "b", "c"]) {
    await q.producer.publish({
      type: "ROOM",
      operation: 1,
      speed: 0,
      server: "",
      room: "r",
      keys: [],
      msg: utf8(body),
    });
  }
  await finished;
  await q.consumer.close();
  const ids = new Map<string, Set<string | undefined>>();
  for (const [body, id] of seen) ids.set(body, (ids.get(body) ?? new Set()).add(id));
  assert.equal(ids.get("b")!.size, 1, "the redelivery had the first delivery's id");
  const distinct = new Set([...ids.values()].map((s) => [...s][0]));
  assert.equal(distinct.size, 3);
  for (const id of distinct) assert.match(id!, /^memory\/[0-9a-f]{8}\/\d+$/);
});

Deno.test("pushIdOf: a message's own id; else one derived from the queue's id, the same each time", () => {
  assert.equal(pushIdOf({ push_id: "Xk3_-9" }), "Xk3_-9");
  const a = pushIdOf({}, { id: "goim-push-topic/3/1234" });
  assert.match(a, PUSH_ID);
  assert.equal(pushIdOf({ push_id: "" }, { id: "goim-push-topic/3/1234" }), a);
  assert.notEqual(pushIdOf({}, { id: "goim-push-topic/3/1235" }), a);
  // A malformed id from a foreign producer is replaced, deterministically.
  const bad = pushIdOf({ push_id: "no spaces/or slashes" });
  assert.match(bad, PUSH_ID);
  assert.equal(pushIdOf({ push_id: "no spaces/or slashes" }), bad);
  assert.match(pushIdOf({ push_id: "x".repeat(65) }), PUSH_ID);
  // No queue id at all: a fresh one each time.
  assert.notEqual(pushIdOf({}), pushIdOf({}));
});

// ---- rooms ----

Deno.test("job streams: room batches are appended whole, positions contiguous across batches", async () => {
  await withStreams({ set: ["job.room.batch=5"] }, async (h) => {
    const c1 = h.comets.get("c1")!;
    for (let i = 0; i < 23; i++) {
      await h.publish({ type: "ROOM", room: "live://1", msg: utf8(`m${i}`), push_id: `p${i}` });
    }
    await c1.until(() => roomFrames(c1).length >= 23, "23 frames");
    const calls = c1.of("BroadcastRoom");
    assert.ok(calls.length >= 5, `${calls.length} batches`);
    assert.equal(h.store.appends, calls.length, "one append per batch");
    assert.deepEqual(roomFrames(c1), Array.from({ length: 23 }, (_, i) => `m${i}`));
    const epoch = calls[0].req.epoch;
    assert.ok(epoch);
    for (const { req } of calls) {
      assert.equal(req.epoch, epoch);
      assert.equal(req.positions!.length, decodeFrames(req.proto!.body).length);
      assert.equal(req.push_ids!.length, req.positions!.length);
    }
    assert.deepEqual(
      calls.flatMap((c) => c.req.positions),
      Array.from({ length: 23 }, (_, i) => i + 1),
    );
    assert.deepEqual(
      calls.flatMap((c) => c.req.push_ids),
      Array.from({ length: 23 }, (_, i) => `p${i}`),
    );
    assert.equal(h.store.streams.get("room:live://1")!.entries.length, 23);
    await eventually(() => h.queue.depth() === 0, "all acknowledged");
    assert.equal(await h.metric("stream_appends_total", { kind: "room" }), calls.length);
    assert.equal(await h.metric("stream_append_entries_total", { kind: "room" }), 23);
    assert.equal(await h.metric("stream_append_seconds_count", { kind: "room" }), calls.length);
  });
});

Deno.test("job streams: a room message without a push id gets one from the queue's id", async () => {
  await withStreams({}, async (h) => {
    const c1 = h.comets.get("c1")!;
    await h.publish({ type: "ROOM", room: "live://2", msg: utf8("goim") });
    await c1.waitCalls("BroadcastRoom", 1);
    const [id] = c1.of("BroadcastRoom")[0].req.push_ids!;
    assert.match(id, PUSH_ID);
    assert.deepEqual(c1.of("BroadcastRoom")[0].req.positions, [1]);
  });
});

// ---- mids ----

Deno.test("job streams: a mid push is appended, then its keys looked up, then pushed to each comet", async () => {
  await withStreams({ comets: ["c1", "c2"] }, async (h) => {
    await h.sessions.addMapping(7, "k-a", "c1");
    await h.sessions.addMapping(7, "k-b", "c2");
    await h.sessions.addMapping(7, "k-c", "c1");
    await h.publish({
      type: "PUSH",
      mid: 7,
      operation: 1002,
      msg: utf8("to 7"),
      push_id: "id7",
      ack: true,
    });
    const [c1, c2] = [h.comets.get("c1")!, h.comets.get("c2")!];
    await c1.waitCalls("PushMsg", 1);
    await c2.waitCalls("PushMsg", 1);
    assert.deepEqual(h.events.slice(0, 2), ["append mid:7", "keysByMids 7"]);
    assert.deepEqual(
      h.events.slice(2).sort(),
      ["PushMsg c1 k-a,k-c", "PushMsg c2 k-b"],
    );
    for (const c of [c1, c2]) {
      const { req } = c.of("PushMsg")[0];
      assert.equal(req.stream, "mid:7");
      assert.equal(req.epoch, h.store.streams.get("mid:7")!.epoch);
      assert.equal(req.pos, 1);
      assert.equal(req.push_id, "id7");
      assert.equal(req.ack, true);
      assert.equal(req.protoOp, 1002);
      assert.equal(dec.decode(req.proto!.body), "to 7");
    }
    await eventually(() => h.queue.depth() === 0, "acknowledged");
    assert.deepEqual(h.status.delivered_, [{ id: "id7", target: "mid:7", sent: 3 }]);
    assert.equal(await h.metric("delivered_total", { type: "PUSH" }), 1);
    const entry = h.store.streams.get("mid:7")!.entries[0];
    assert.equal(entry.ack, true);
    assert.equal(entry.op, 1002);
  });
});

Deno.test("job streams: a mid with no live key is still appended, and reported offline", async () => {
  await withStreams({}, async (h) => {
    await h.publish({ type: "PUSH", mid: 8, msg: utf8("later"), push_id: "id8", ack: true });
    await h.publish({ type: "PUSH", mid: 8, msg: utf8("later 2"), push_id: "id8b" });
    await eventually(() => h.queue.depth() === 0, "acknowledged");
    assert.deepEqual(
      h.store.streams.get("mid:8")!.entries.map((e) => [e.pos, dec.decode(e.body)]),
      [[1, "later"], [2, "later 2"]],
    );
    assert.equal(h.comets.get("c1")!.calls.length, 0);
    assert.deepEqual(h.status.delivered_, [{ id: "id8", target: "mid:8", sent: 0 }]);
    assert.deepEqual(h.events, ["append mid:8", "keysByMids 8", "append mid:8", "keysByMids 8"]);
  });
});

for (const ordered of [false, true]) {
  Deno.test(
    `job streams: 1,000 pushes to 10 mids keep each mid's order across lanes and comets${
      ordered ? " (append and lookup issued together)" : ""
    }`,
    async () => {
      await withStreams(
        { comets: ["c1", "c2"], set: ["job.comet_lanes=8"] },
        async (h) => {
          if (ordered) h.store.orderedVia = h.sessions.orderedVia = {};
          const rng = new Rng(12);
          // Appends and lookups finish out of order: job must still submit in order.
          const jitter = () =>
            new Promise<void>((r) => rng.next() < 0.5 ? queueMicrotask(r) : setTimeout(r, 0));
          h.store.delay = jitter;
          h.sessions.delay = jitter;
          const mids = Array.from({ length: 10 }, (_, i) => 100 + i);
          for (const mid of mids) {
            await h.sessions.addMapping(mid, `k${mid}-1`, "c1");
            await h.sessions.addMapping(mid, `k${mid}-2`, "c2");
          }
          const per = 100;
          for (let i = 0; i < per; i++) {
            for (const mid of mids) {
              await h.publish({ type: "PUSH", mid, msg: utf8(String(i)), push_id: `m${mid}-${i}` });
            }
          }
          for (const c of h.comets.values()) {
            await c.waitCalls("PushMsg", per * mids.length, 20_000);
          }
          for (const c of h.comets.values()) {
            for (const mid of mids) {
              const got = c.of("PushMsg").filter((x) => x.req.stream === `mid:${mid}`);
              assert.deepEqual(
                got.map((x) => [x.req.pos, Number(dec.decode(x.req.proto!.body))]),
                Array.from({ length: per }, (_, i) => [i + 1, i]),
                `${c.id} mid ${mid}`,
              );
            }
          }
          await eventually(() => h.queue.depth() === 0, "all acknowledged");
        },
      );
    },
  );
}

// ---- redelivery ----

Deno.test("job streams: a redelivered message gets its first position again", async () => {
  await withStreams({}, async (h) => {
    await h.sessions.addMapping(9, "k9", "c1");
    const c1 = h.comets.get("c1")!;
    const room = roomMsg("once");
    const mid: PushMsg = { ...room, type: "PUSH", room: "", mid: 9, msg: utf8("to 9") };
    // No push id (a goim logic's): the queue's id gives the same one each time.
    const meta: PushMeta = { id: "topic/0/41" };
    const midMeta: PushMeta = { id: "topic/1/7" };
    await h.job.handle(room, meta);
    await h.job.handle(mid, midMeta);
    await h.job.handle(room, meta);
    await h.job.handle(mid, midMeta);
    const rooms = c1.of("BroadcastRoom");
    assert.equal(rooms.length, 2);
    assert.deepEqual(rooms.map((c) => c.req.positions), [[1], [1]]);
    assert.deepEqual(rooms[0].req.push_ids, rooms[1].req.push_ids);
    const pushes = c1.of("PushMsg");
    assert.deepEqual(pushes.map((c) => c.req.pos), [1, 1]);
    assert.equal(pushes[0].req.push_id, pushes[1].req.push_id);
    assert.equal(h.store.streams.get("room:live://r")!.entries.length, 1);
    assert.equal(h.store.streams.get("mid:9")!.entries.length, 1);

    // A second job (after a failover) on the same store: the same positions again.
    const registry = new MemoryRegistry();
    await registry.register(record("c1"), 60_000);
    const other = new FakeComet("c1");
    const queue = createMemoryQueue({ capacity: 10 });
    const job2 = new Job({
      config: testConfig("job.room.window=5ms"),
      consumer: queue.consumer,
      registry,
      connect: () => other,
      streams: h.store,
      sessions: h.sessions,
      registryPollMs: 60_000,
      roomsRefreshMs: 60_000,
    });
    await job2.start();
    try {
      await job2.handle(room, meta);
      await job2.handle(mid, midMeta);
      assert.deepEqual(other.of("BroadcastRoom")[0].req.positions, [1]);
      assert.deepEqual(other.of("BroadcastRoom")[0].req.push_ids, rooms[0].req.push_ids);
      assert.equal(other.of("PushMsg")[0].req.pos, 1);
      assert.equal(h.store.streams.get("room:live://r")!.entries.length, 1);
    } finally {
      await job2.stop();
      await queue.producer.close();
      await registry.close();
    }
  });
});

// ---- a failing store ----

Deno.test("job streams: a batch whose redelivery goes back in position is sent as ascending runs", async () => {
  await withStreams({}, async (h) => {
    const c1 = h.comets.get("c1")!;
    await h.job.handle(roomMsg("a"), { id: "topic/0/1" });
    // One batch: b is new, a again (a rebalance's redelivery: its first position), then c.
    await Promise.all([
      h.job.handle(roomMsg("b"), { id: "topic/0/2" }),
      h.job.handle(roomMsg("a"), { id: "topic/0/1" }),
      h.job.handle(roomMsg("c"), { id: "topic/0/3" }),
    ]);
    const calls = c1.of("BroadcastRoom");
    // A comet refuses positions that do not ascend (INVALID_ARGUMENT: the batch would be lost).
    assert.deepEqual(calls.map((c) => c.req.positions), [[1], [2], [1, 3]]);
    assert.deepEqual(
      calls.map((c) => decodeFrames(c.req.proto!.body).map((f) => dec.decode(f.body))),
      [["a"], ["b"], ["a", "c"]],
    );
    assert.equal(calls[1].req.push_ids!.length, 1);
    assert.deepEqual(calls[2].req.push_ids, [calls[0].req.push_ids![0], calls[2].req.push_ids![1]]);
    assert.equal(h.store.streams.get("room:live://r")!.entries.length, 3);
  });
});

Deno.test("ascendingRuns: an ascending batch is one run, the same bytes", () => {
  const frames = new Uint8Array([0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 3, 232, 0, 0, 0, 0]);
  const [run, ...rest] = ascendingRuns(frames, [4], ["id"]);
  assert.equal(rest.length, 0);
  assert.equal(run.frames, frames);
  assert.deepEqual(run.positions, [4]);
});

Deno.test("job streams: a store that fails then recovers loses nothing and keeps the order", async () => {
  await withStreams(
    { set: ["job.retry.base_delay=5ms", "job.retry.max_delay=20ms", "job.room.batch=4"] },
    async (h) => {
      await h.sessions.addMapping(5, "k5", "c1");
      const c1 = h.comets.get("c1")!;
      h.store.failures = 1_000_000;
      for (let i = 0; i < 10; i++) {
        await h.publish({ type: "ROOM", room: "live://f", msg: utf8(`r${i}`), push_id: `r${i}` });
        await h.publish({ type: "PUSH", mid: 5, msg: utf8(`m${i}`), push_id: `m${i}` });
      }
      // Failing: appends are retried (both streams), nothing is sent, the queue keeps all 20.
      await h.store.until(() => h.events.length >= 8, "retried appends");
      assert.equal(c1.calls.length, 0);
      assert.equal(h.queue.depth(), 20);
      assert.equal(h.events.filter((e) => e.startsWith("keysByMids")).length, 0);
      assert.ok(await h.metric("stream_store_failures_total", { call: "append" }) >= 4);

      h.store.failures = 0;
      await c1.until(
        () => roomFrames(c1).length >= 10 && c1.of("PushMsg").length >= 10,
        "everything after the store came back",
        10_000,
      );
      assert.deepEqual(roomFrames(c1), Array.from({ length: 10 }, (_, i) => `r${i}`));
      assert.deepEqual(
        c1.of("BroadcastRoom").flatMap((c) => c.req.positions),
        Array.from({ length: 10 }, (_, i) => i + 1),
      );
      assert.deepEqual(
        c1.of("PushMsg").map((c) => [c.req.pos, dec.decode(c.req.proto!.body)]),
        Array.from({ length: 10 }, (_, i) => [i + 1, `m${i}`]),
      );
      await eventually(() => h.queue.depth() === 0, "all acknowledged");
      assert.equal(await h.metric("skipped_total", { reason: "no_comets" }), 0);
    },
  );
});

Deno.test("job streams: stop gives up on a store that stays down, the handler rejects", async () => {
  await withStreams(
    { set: ["job.retry.base_delay=5ms", "job.retry.max_delay=10ms"], deps: { stopTimeoutMs: 100 } },
    async (h) => {
      h.store.failures = 1_000_000;
      await h.publish({ type: "ROOM", room: "live://down", msg: utf8("x"), push_id: "x" });
      await h.store.until(() => h.events.length >= 2, "a retried append");
      assert.equal(h.queue.depth(), 1, "the handler waits while the store is down");
      // After stopTimeoutMs job abandons it: the handler rejects (Kafka would redeliver it;
      // the memory queue, closing, drops it).
      await h.job.stop();
      await h.queue.consumer.close();
      assert.equal(h.queue.dropped(), 1);
      assert.equal(h.comets.get("c1")!.calls.length, 0);
    },
  );
});

// ---- key pushes with ack ----

Deno.test("job streams: a key push carries its push id, with ack its status per key", async () => {
  await withStreams({ comets: ["c1"] }, async (h) => {
    const c1 = h.comets.get("c1")!;
    await h.publish({
      type: "PUSH",
      server: "c1",
      keys: ["k1", "k2"],
      msg: utf8("ack me"),
      push_id: "kid",
      ack: true,
    });
    await h.publish({ type: "PUSH", server: "c1", keys: ["k3"], msg: utf8("plain"), push_id: "p" });
    await h.publish({
      type: "PUSH",
      server: "nowhere",
      keys: ["k4"],
      msg: utf8("lost"),
      push_id: "kid2",
      ack: true,
    });
    await c1.waitCalls("PushMsg", 2);
    await eventually(() => h.queue.depth() === 0, "acknowledged");
    const [acked, plain] = c1.of("PushMsg").map((c) => c.req);
    assert.equal(acked.push_id, "kid");
    assert.equal(acked.ack, true);
    assert.equal(acked.stream, undefined);
    // Without ack it still carries its push id (opted-in clients drop a redelivery by it), no ack.
    assert.equal(plain.push_id, "p");
    assert.equal(plain.ack, undefined);
    assert.deepEqual(h.status.delivered_, [
      { id: "kid", target: "key:k1", sent: 1 },
      { id: "kid", target: "key:k2", sent: 1 },
      { id: "kid2", target: "key:k4", sent: 0 },
    ]);
    assert.equal(h.store.appends, 0, "key pushes are not in a stream");
  });
});

Deno.test("job streams: a broadcast carries one push id per frame, a paced one its own, a redelivery the same", async () => {
  await withStreams({ comets: ["c1", "c2"], set: ["job.room.batch=5"] }, async (h) => {
    for (let i = 0; i < 12; i++) {
      await h.publish({
        type: "BROADCAST",
        operation: 1007,
        msg: utf8(`b${i}`),
        push_id: `id${i}`,
      });
    }
    await h.publish({
      type: "BROADCAST",
      operation: 1007,
      speed: 9,
      msg: utf8("p"),
      push_id: "pid",
    });
    const frames = (c: FakeComet) =>
      c.of("Broadcast").reduce(
        (n, x) => n + (x.req.proto!.op === Op.Raw ? decodeFrames(x.req.proto!.body).length : 1),
        0,
      );
    for (const c of h.comets.values()) {
      await c.until(() => frames(c) >= 13, "13 frames");
      const calls = c.of("Broadcast").map((x) => x.req);
      const [paced] = calls.filter((r) => r.speed > 0);
      assert.deepEqual(paced.push_ids, ["pid"]);
      assert.equal(dec.decode(paced.proto!.body), "p");
      const batches = calls.filter((r) => r.speed === 0);
      assert.ok(batches.length >= 3, `${batches.length} batches of at most 5`);
      for (const r of batches) {
        assert.equal(r.push_ids!.length, decodeFrames(r.proto!.body).length, "one id per frame");
      }
      assert.deepEqual(
        batches.flatMap((r) =>
          decodeFrames(r.proto!.body).map((f, i) => `${dec.decode(f.body)}:${r.push_ids![i]}`)
        ),
        Array.from({ length: 12 }, (_, i) => `b${i}:id${i}`),
      );
    }
    assert.equal(h.store.appends, 0, "broadcasts are not in a stream");

    // A goim logic's broadcasts (no push id) redelivered: the queue's id gives the same one.
    const c1 = h.comets.get("c1")!;
    const before = c1.of("Broadcast").length;
    const msg: PushMsg = {
      type: "BROADCAST",
      operation: 1008,
      speed: 0,
      server: "",
      room: "",
      keys: [],
      msg: utf8("again"),
    };
    const meta: PushMeta = { id: "topic/2/99" };
    await h.job.handle(msg, meta);
    await h.job.handle(msg, meta);
    await h.job.handle({ ...msg, speed: 4 }, meta);
    await h.job.handle({ ...msg, speed: 4 }, meta);
    const again = c1.of("Broadcast").slice(before).map((x) => x.req);
    assert.equal(again.length, 4);
    const [id] = again[0].push_ids!;
    assert.match(id, PUSH_ID);
    assert.deepEqual(again.map((r) => r.push_ids), [[id], [id], [id], [id]]);
  });
});

// ---- streams off ----

Deno.test("job streams: with streams.enabled = false rooms go as goim's, mid pushes without positions", async () => {
  await withStreams({ set: ["streams.enabled=false"] }, async (h) => {
    await h.sessions.addMapping(3, "k3", "c1");
    const c1 = h.comets.get("c1")!;
    await h.publish({ type: "ROOM", room: "live://off", msg: utf8("r"), push_id: "r" });
    await h.publish({ type: "PUSH", mid: 3, msg: utf8("m"), push_id: "m" });
    await c1.waitCalls("BroadcastRoom", 1);
    await c1.waitCalls("PushMsg", 1);
    const room = c1.of("BroadcastRoom")[0].req;
    assert.deepEqual(Object.keys(room).sort(), ["proto", "roomID"]);
    const push = c1.of("PushMsg")[0].req;
    assert.deepEqual(Object.keys(push).sort(), ["keys", "proto", "protoOp"]);
    assert.deepEqual(push.keys, ["k3"]);
    assert.equal(h.events.filter((e) => e.startsWith("append")).length, 0);
  });
});

Deno.test("job streams: without a session store a mid push is skipped as invalid", async () => {
  const h = await startJob({});
  try {
    await h.publish({ type: "PUSH", mid: 3, msg: utf8("m") });
    await eventually(() => h.queue.depth() === 0, "acknowledged");
    assert.equal(await h.metric("skipped_total", { reason: "invalid" }), 1);
  } finally {
    await h.stop();
  }
});

// ---- the real memory engines ----

Deno.test("job streams on the memory stores: positions, dedupe, offline and pending status", async () => {
  const streams = new MemoryStreamStore({ size: 100, ttlMs: 60_000, maxStreams: 100 });
  const pushStatus = new MemoryPushStatusStore({ ttlMs: 60_000 });
  const sessions = new MemorySessionStore();
  const h = await startJob({
    set: ["job.room.window=5ms", "job.room.batch=3"],
    deps: { streams, sessions, pushStatus },
  });
  try {
    await sessions.addMapping(21, "k21", "c1");
    await pushStatus.create("online", ["mid:21"]);
    await pushStatus.create("offline", ["mid:22"]);
    for (let i = 0; i < 7; i++) {
      await h.publish({ type: "ROOM", room: "live://m", msg: utf8(`r${i}`), push_id: `r${i}` });
    }
    await h.publish({ type: "PUSH", mid: 21, msg: utf8("hi"), push_id: "online", ack: true });
    await h.publish({ type: "PUSH", mid: 22, msg: utf8("hi"), push_id: "offline", ack: true });
    // Redelivered (the same push id): no second position.
    await h.publish({ type: "ROOM", room: "live://m", msg: utf8("r6"), push_id: "r6" });
    await eventually(() => h.queue.depth() === 0, "all acknowledged");
    const c1 = h.comets.get("c1")!;
    assert.deepEqual(
      c1.of("BroadcastRoom").flatMap((c) => c.req.positions),
      [1, 2, 3, 4, 5, 6, 7, 7],
    );
    const room = await streams.range("room:live://m", { limit: 100 });
    assert.deepEqual(room.entries.map((e) => e.pos), [1, 2, 3, 4, 5, 6, 7]);
    assert.equal(c1.of("BroadcastRoom")[0].req.epoch, room.epoch);
    const mid = await streams.range("mid:22", { limit: 10 });
    assert.deepEqual(mid.entries.map((e) => [e.pos, e.pushId, e.ack]), [[1, "offline", true]]);
    assert.equal((await pushStatus.get("online"))?.pending, 1);
    assert.equal((await pushStatus.get("offline"))?.offline, 1);
    assert.equal(c1.of("PushMsg")[0].req.pos, 1);
  } finally {
    await h.stop();
    await Promise.all([streams.close(), pushStatus.close(), sessions.close()]);
  }
});

// ---- one ordered channel: append and lookup issued together ----

/** Makes the fakes report one ordered channel, as the Redis stores on one connection do. */
function orderedChannel(h: StreamsHarness): void {
  h.store.orderedVia = h.sessions.orderedVia = {};
}

Deno.test("job streams: on one ordered channel the lookup is issued with the append, not after it", async () => {
  await withStreams({}, async (h) => {
    orderedChannel(h);
    await h.sessions.addMapping(7, "k7", "c1");
    let release!: () => void;
    const held = new Promise<void>((r) => release = r);
    h.store.delay = () => held;
    await h.publish({ type: "PUSH", mid: 7, msg: utf8("x"), push_id: "x7" });
    await eventually(() => h.events.length >= 2, "append and lookup issued");
    assert.deepEqual(h.events, ["append mid:7", "keysByMids 7"]);
    assert.equal(h.store.appends, 0, "the lookup went before the append returned");
    release();
    const c1 = h.comets.get("c1")!;
    await c1.waitCalls("PushMsg", 1);
    const { req } = c1.of("PushMsg")[0];
    assert.deepEqual([req.stream, req.pos, req.keys], ["mid:7", 1, ["k7"]]);
  });
});

Deno.test("job streams: on one ordered channel a failed append voids its lookup; a failed lookup is retried alone", async () => {
  await withStreams(
    { set: ["job.retry.base_delay=5ms", "job.retry.max_delay=10ms"] },
    async (h) => {
      orderedChannel(h);
      await h.sessions.addMapping(7, "k7", "c1");
      const c1 = h.comets.get("c1")!;
      // Two failed appends; the first one's lookup fails too (its rejection must be handled),
      // the second's succeeds (its answer predates the entry: dropped). Then the pair again.
      h.store.failures = 2;
      h.sessions.failures = 1;
      await h.publish({ type: "PUSH", mid: 7, msg: utf8("a"), push_id: "a" });
      await c1.waitCalls("PushMsg", 1);
      const pair = ["append mid:7", "keysByMids 7"];
      assert.deepEqual(h.events, [...pair, ...pair, ...pair, "PushMsg c1 k7"]);
      assert.equal(await h.metric("stream_store_failures_total", { call: "append" }), 2);
      assert.equal(await h.metric("stream_store_failures_total", { call: "keys_by_mids" }), 0);

      // The append succeeds and its lookup fails: only the lookup is retried.
      h.events.length = 0;
      h.sessions.failures = 2;
      await h.publish({ type: "PUSH", mid: 7, msg: utf8("b"), push_id: "b" });
      await c1.waitCalls("PushMsg", 2);
      assert.deepEqual(h.events, [...pair, "keysByMids 7", "keysByMids 7", "PushMsg c1 k7"]);
      assert.equal(await h.metric("stream_store_failures_total", { call: "keys_by_mids" }), 2);
      assert.deepEqual(
        c1.of("PushMsg").map((c) => [c.req.pos, dec.decode(c.req.proto!.body)]),
        [[1, "a"], [2, "b"]],
      );
      assert.equal(h.store.streams.get("mid:7")!.entries.length, 2);
      await eventually(() => h.queue.depth() === 0, "acknowledged");
    },
  );
});

Deno.test("job streams: an append re-sent behind its lookup (NOSCRIPT) gets the lookup made again", async () => {
  await withStreams({}, async (h) => {
    orderedChannel(h);
    await h.sessions.addMapping(7, "k7", "c1");
    const c1 = h.comets.get("c1")!;
    h.store.reissues = 1;
    await h.publish({ type: "PUSH", mid: 7, msg: utf8("a"), push_id: "a" });
    await c1.waitCalls("PushMsg", 1);
    await h.publish({ type: "PUSH", mid: 7, msg: utf8("b"), push_id: "b" });
    await c1.waitCalls("PushMsg", 2);
    assert.deepEqual(h.events, [
      "append mid:7",
      "keysByMids 7",
      "keysByMids 7", // made again, after the append returned
      "PushMsg c1 k7",
      "append mid:7",
      "keysByMids 7",
      "PushMsg c1 k7",
    ]);
  });
});

// ---- the real Redis stores, opened as job opens them ----

/**
 * `target` with `method` wrapped to write `<method> issued` into `log` when
 * called and `<method> returned` once its promise settled.
 */
function spy<T extends object>(target: T, method: keyof T & string, log: string[]): T {
  return new Proxy(target, {
    get(t, k) {
      const v = Reflect.get(t, k);
      if (typeof v !== "function") return v;
      if (k !== method) return v.bind(t);
      return (...args: unknown[]) => {
        log.push(`${method} issued`);
        const p = (v as (...a: unknown[]) => Promise<unknown>).apply(t, args);
        void p.then(() => log.push(`${method} returned`), () => log.push(`${method} failed`));
        return p;
      };
    },
  });
}

/** A command Redis ran, as MONITOR reports it: who sent it (`lua`: a script) and its words. */
interface Executed {
  lua: boolean;
  args: string[];
}

for (const redis of await redisTargets()) {
  const single = redis.clusterNodes.length === 0;
  Deno.test({
    name: `${redis.name} job streams: a mid push's append and lookup ${
      single ? "go together, the append first" : "go one after the other"
    }; after SCRIPT FLUSH the lookup ${single ? "is redone" : "needs no redo"}`,
    ignore: redis.ignore,
    fn: async () => {
      redis.assertReachable();
      const prefix = uniqueKeyPrefix();
      const engines = await openEngines(
        testConfig("sessions.engine=redis", `redis.key_prefix=${prefix}`, ...redis.configSets()),
        ["sessions", "streams", "pushStatus"],
      );
      const raw = redis.raw();
      // MONITOR (single node only: a cluster has one per node) records what Redis ran, in order.
      const monitor = single ? await (raw as Redis).monitor() : undefined;
      const ran: Executed[] = [];
      monitor?.on("monitor", (_time: string, args: string[], source: string) => {
        if (args.some((a) => a.startsWith(prefix))) ran.push({ lua: source === "lua", args });
      });
      const log: string[] = [];
      const metrics = jobMetrics(createMetrics("job"), {
        laneDepth: () => [],
        comets: () => 0,
        rooms: () => 0,
      });
      const writer = new StreamWriter({
        streams: spy(engines.streams, "append", log),
        sessions: spy(engines.sessions, "keysByMids", log),
        metrics,
        retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20 },
        warn: () => {},
      });
      const mid = 4242;
      const stream = `mid:${mid}`;
      const [, list] = (engines.streams as RedisStreamStore).keysOf(stream);
      // The script's own commands: the append's RPUSH, the lookup's HKEYS of mid_<mid>.
      const rpushes = () =>
        ran.flatMap((c, i) =>
          c.lua && c.args[0].toLowerCase() === "rpush" && c.args[1] === list ? [i] : []
        );
      const hkeys = () =>
        ran.flatMap((c, i) =>
          c.lua && c.args[0].toLowerCase() === "hkeys" && c.args[1] === `${prefix}mid_${mid}`
            ? [i]
            : []
        );
      // Once MONITOR reports a command sent after the others, it has reported them all.
      let fences = 0;
      const fence = async () => {
        const key = `${prefix}fence:${++fences}`;
        await raw.exists(key);
        await eventually(() => ran.some((c) => c.args[1] === key), "MONITOR caught up");
      };
      try {
        assert.equal(writer.ordered, single);
        await engines.sessions.addMapping(mid, "before", "c1");
        const first = await writer.routeMid(
          stream,
          [{ pushId: "p1", op: 1000, body: utf8("1") }],
          mid,
        );
        assert.deepEqual(first?.appended?.positions, [1]);
        assert.deepEqual(
          [...first!.keys],
          [["before", "c1"]],
          "a route stored before the append is found",
        );
        // Issued together on one connection; one after the other on a cluster.
        const issued = () => log.indexOf("keysByMids issued") - log.indexOf("append returned");
        assert.equal(Math.sign(issued()), single ? -1 : 1, log.join(", "));
        // A route stored after the append: not found by that lookup, the entry is in its recovery.
        await engines.sessions.addMapping(mid, "after", "c2");
        const r = await engines.streams.recover(stream, { epoch: "", pos: 0 });
        assert.deepEqual(r.entries.map((e) => e.pushId), ["p1"]);
        if (monitor) {
          await fence();
          assert.equal(rpushes().length, 1);
          assert.ok(hkeys().length >= 1);
          assert.ok(rpushes()[0] < hkeys()[0], "Redis ran the append before the lookup");
        }

        // Redis loses its scripts between two pushes, and only the lookup's is loaded again (by
        // another lookup): the append's EVALSHA fails, the lookup sent behind it runs — before
        // the append, which goes again as EVAL. So that lookup is made again, after it.
        const masters = single ? [raw as Redis] : (raw as Cluster).nodes("master");
        for (const m of masters) await m.script("FLUSH");
        await engines.sessions.keysByMids([mid + 1]);
        log.length = 0;
        // The first push may have been redone too: a Redis that had not run the append yet.
        const redoneBefore = writer.lookupsRedone;
        const second = await writer.routeMid(
          stream,
          [{ pushId: "p2", op: 1000, body: utf8("2") }],
          mid,
        );
        assert.deepEqual(second?.appended?.positions, [2]);
        assert.equal(second?.appended?.reissued, true, "sent again as EVAL");
        assert.deepEqual(new Set(second!.keys.keys()), new Set(["before", "after"]));
        assert.equal(writer.lookupsRedone - redoneBefore, single ? 1 : 0);
        if (monitor) {
          await fence();
          const [, append] = rpushes();
          assert.ok(append !== undefined, "the second append ran");
          assert.ok(hkeys().some((i) => i < append), "the lookup sent with it ran before it");
          assert.ok(hkeys().at(-1)! > append, "and was made again after it");
        }
        assert.equal(Math.sign(issued()), single ? -1 : 1, log.join(", "));
      } finally {
        monitor?.disconnect();
        raw.disconnect();
        await engines.close();
        await redis.deleteKeys(prefix);
      }
    },
  });
}

// ---- over Kafka ----

const kafka = await kafkaTestBrokers();

Deno.test({
  name: "job streams on kafka: records without push ids get the same positions in two groups",
  ignore: kafka.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    kafka.assertReachable();
    const env = await jobOnKafka(kafka.brokers);
    const { group, common, producer, registry } = env;
    const store = new FakeStreams();
    const sessions = new MemorySessionStore();
    await sessions.addMapping(11, "k11", "c1");
    const runs: { job: Job; comet: FakeComet }[] = [];
    const run = async (g: string) => {
      const comet = new FakeComet("c1");
      const job = new Job({
        config: testConfig("job.room.window=5ms"),
        consumer: new KafkaConsumer({ ...common, group: g, fromBeginning: true }),
        registry,
        connect: () => comet,
        streams: store,
        sessions,
        metrics: createMetrics("job"),
      });
      runs.push({ job, comet });
      await job.start();
      return comet;
    };
    try {
      const base = { operation: 1000, speed: 0, server: "", keys: [] };
      for (let i = 0; i < 20; i++) {
        await producer.publish({ ...base, type: "ROOM", room: "live://k", msg: utf8(`r${i}`) });
        await producer.publish({ ...base, type: "PUSH", room: "", mid: 11, msg: utf8(`m${i}`) });
      }
      const first = await run(group);
      const second = await run(`${group}-again`);
      for (const c of [first, second]) {
        await c.until(
          () => roomFrames(c).length >= 20 && c.of("PushMsg").length >= 20,
          "every record",
          20_000,
        );
      }
      const view = (c: FakeComet) => ({
        room: c.of("BroadcastRoom").flatMap((x) =>
          x.req.positions!.map((p, i) => [p, x.req.push_ids![i]])
        ),
        mid: c.of("PushMsg").map((x) => [x.req.pos, x.req.push_id, dec.decode(x.req.proto!.body)]),
      });
      const a = view(first);
      assert.deepEqual(a.room.map(([p]) => p), Array.from({ length: 20 }, (_, i) => i + 1));
      assert.deepEqual(
        a.mid.map(([p, , b]) => [p, b]),
        Array.from({ length: 20 }, (_, i) => [i + 1, `m${i}`]),
      );
      for (const [, id] of [...a.room, ...a.mid]) assert.match(String(id), PUSH_ID);
      // The second group read the same records: same ids, same positions, nothing appended twice.
      assert.deepEqual(view(second), a);
      assert.equal(store.streams.get("room:live://k")!.entries.length, 20);
      assert.equal(store.streams.get("mid:11")!.entries.length, 20);
    } finally {
      for (const r of runs) await r.job.stop();
      await sessions.close();
      await env.close();
    }
  },
});

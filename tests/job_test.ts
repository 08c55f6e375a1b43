/**
 * Job against fake comets on the memory queue and registry: routing per
 * message type, order per key, room batching and targeting, retries, skips,
 * comets coming and going, stop.
 */

import assert from "node:assert/strict";
import { eventually } from "./eventually.ts";
import { decodeFrames } from "../protocol/frame.ts";
import { Op } from "../protocol/ops.ts";
import { grpcStatus } from "../proto/grpc.ts";
import type { PushMsg } from "../proto/messages.ts";
import { isTransient } from "../job/retry.ts";
import { RpcError } from "../proto/grpc.ts";
import { Lane, LaneClosedError } from "../job/lane.ts";
import { type JobHarness, startJob, utf8 } from "./job_fakes.ts";

const dec = new TextDecoder();

async function withJob(
  o: Parameters<typeof startJob>[0],
  fn: (h: JobHarness) => Promise<void>,
): Promise<void> {
  const h = await startJob(o);
  try {
    await fn(h);
  } finally {
    await h.stop();
  }
}

Deno.test("job: PUSH goes to the comet named by server, with its keys and operation", async () => {
  await withJob({ comets: ["c1", "c2"] }, async (h) => {
    await h.publish({
      type: "PUSH",
      server: "c2",
      keys: ["k1", "k2"],
      operation: 1001,
      msg: utf8("hi"),
    });
    const c2 = h.comets.get("c2")!;
    await c2.waitCalls("PushMsg", 1);
    const { req } = c2.of("PushMsg")[0];
    assert.deepEqual(req.keys, ["k1", "k2"]);
    assert.equal(req.protoOp, 1001);
    assert.equal(req.proto?.ver, 1);
    assert.equal(req.proto?.op, 1001);
    assert.equal(req.proto?.seq, 0);
    assert.equal(dec.decode(req.proto?.body), "hi");
    assert.equal(h.comets.get("c1")!.calls.length, 0);
    await eventually(() => h.queue.depth() === 0, "acknowledgement");
    assert.equal(await h.metric("delivered_total", { type: "PUSH" }), 1);
    assert.equal(await h.metric("consumed_total", { type: "PUSH" }), 1);
    assert.equal(await h.metric("push_latency_seconds_count", { type: "PUSH" }), 1);
  });
});

Deno.test("job: per-key order holds across 32 lanes and slow calls", async () => {
  await withJob({ comets: ["c1"], set: ["job.comet_lanes=32"] }, async (h) => {
    const c1 = h.comets.get("c1")!;
    // Some calls take a timer turn, some none: lanes progress at different speeds.
    const original = c1.PushMsg;
    let n = 0;
    c1.PushMsg = async (req) => {
      if (n++ % 3 === 0) await new Promise((r) => setTimeout(r, 0));
      return await original(req);
    };
    const keys = Array.from({ length: 40 }, (_, i) => `key-${i}`);
    const per = 25;
    for (let i = 0; i < per; i++) {
      for (const k of keys) {
        await h.publish({ type: "PUSH", server: "c1", keys: [k], msg: utf8(String(i)) });
      }
    }
    await c1.waitCalls("PushMsg", per * keys.length, 10_000);
    const seen = new Map<string, number[]>();
    for (const { req } of c1.of("PushMsg")) {
      const k = req.keys[0];
      seen.set(k, [...(seen.get(k) ?? []), Number(dec.decode(req.proto!.body))]);
    }
    for (const k of keys) {
      assert.deepEqual(
        seen.get(k),
        Array.from({ length: per }, (_, i) => i),
        k,
      );
    }
  });
});

Deno.test("job: 50 room messages become at most 4 BroadcastRoom calls carrying all 50 frames in order", async () => {
  await withJob(
    { comets: ["c1"], set: ["job.room.batch=20", "job.room.window=20ms"] },
    async (h) => {
      const c1 = h.comets.get("c1")!;
      for (let i = 0; i < 50; i++) {
        await h.publish({
          type: "ROOM",
          room: "live://1",
          operation: 1000 + (i % 2),
          msg: utf8(`m${i}`),
        });
      }
      const frames = () =>
        c1.of("BroadcastRoom").reduce((n, c) => n + decodeFrames(c.req.proto!.body).length, 0);
      await c1.until(() => frames() >= 50, "50 frames");
      const calls = c1.of("BroadcastRoom");
      assert.ok(calls.length <= Math.ceil(50 / 20) + 1, `${calls.length} calls`);
      const all = calls.flatMap((c) => {
        assert.equal(c.req.roomID, "live://1");
        assert.equal(c.req.proto!.op, Op.Raw);
        assert.equal(c.req.proto!.ver, 1);
        return decodeFrames(c.req.proto!.body);
      });
      assert.deepEqual(
        all.map((f) => [f.ver, f.op, f.seq, dec.decode(f.body)]),
        Array.from({ length: 50 }, (_, i) => [1, 1000 + (i % 2), 0, `m${i}`]),
      );
      await eventually(() => h.queue.depth() === 0, "all 50 acknowledged");
      assert.equal(await h.metric("delivered_total", { type: "ROOM" }), 50);
    },
  );
});

Deno.test("job: a lone room message is flushed after the window", async () => {
  await withJob({ comets: ["c1"], set: ["job.room.window=50ms"] }, async (h) => {
    const c1 = h.comets.get("c1")!;
    const t0 = performance.now();
    await h.publish({ type: "ROOM", room: "live://2", msg: utf8("solo") });
    await c1.waitCalls("BroadcastRoom", 1, 2000);
    const waited = c1.of("BroadcastRoom")[0].at - t0;
    assert.ok(waited >= 40 && waited < 1000, `flushed after ${waited.toFixed(1)} ms`);
    const [f] = decodeFrames(c1.of("BroadcastRoom")[0].req.proto!.body);
    assert.equal(dec.decode(f.body), "solo");
  });
});

Deno.test("job: room batches go only to comets whose Rooms() has the room, or is unknown", async () => {
  // No comets at start: they register with their rooms set, then job learns of them.
  const h = await startJob({ comets: [], set: ["job.room.window=1ms"] });
  try {
    const a = await h.addComet("a"), b = await h.addComet("b"), u = await h.addComet("unknown");
    a.rooms = { "live://a": true, "live://gone": false };
    b.rooms = { "live://b": true };
    u.rooms = null;
    // Learn the comets (an unknown server triggers a registry refresh), then their rooms.
    await h.publish({ type: "PUSH", server: "a", keys: ["k"] });
    await a.waitCalls("PushMsg", 1);
    await eventually(() => {
      const s = h.job.status().comets;
      return s.length === 3 && s.find((c) => c.id === "a")?.rooms === 1 &&
        s.find((c) => c.id === "b")?.rooms === 1 && b.roomsCalls > 0 && u.roomsCalls > 0;
    }, "rooms of a and b");
    await h.publish({ type: "ROOM", room: "live://a", msg: utf8("for a") });
    await h.publish({ type: "ROOM", room: "live://gone", msg: utf8("nobody but unknown") });
    await u.waitCalls("BroadcastRoom", 2);
    assert.deepEqual(a.of("BroadcastRoom").map((c) => c.req.roomID), ["live://a"]);
    assert.equal(b.of("BroadcastRoom").length, 0);
    assert.deepEqual(u.of("BroadcastRoom").map((c) => c.req.roomID).sort(), [
      "live://a",
      "live://gone",
    ]);
  } finally {
    await h.stop();
  }
});

Deno.test("job: a room no comet has is skipped without calls", async () => {
  await withJob(
    { comets: [], set: ["job.room.window=1ms"], deps: { roomsRefreshMs: 10 } },
    async (h) => {
      const a = await h.addComet("a");
      a.rooms = { "live://other": true };
      await h.publish({ type: "PUSH", server: "a", keys: ["k"] });
      await a.waitCalls("PushMsg", 1);
      await eventually(() => h.job.status().comets[0]?.rooms === 1, "rooms of a");
      await h.publish({ type: "ROOM", room: "live://empty", msg: utf8("x") });
      await eventually(
        async () => (await h.metric("skipped_total", { reason: "no_target" })) === 1,
        "skip",
      );
      assert.equal(a.of("BroadcastRoom").length, 0);
    },
  );
});

Deno.test("job: a paced BROADCAST is its own call to every comet, speed divided among them", async () => {
  await withJob({ comets: ["c1", "c2", "c3"] }, async (h) => {
    await h.publish({ type: "BROADCAST", operation: 1005, speed: 90, msg: utf8("all") });
    await h.publish({ type: "BROADCAST", operation: 1005, speed: 2, msg: utf8("slow") });
    for (const c of h.comets.values()) {
      await c.waitCalls("Broadcast", 2);
      const [first, second] = c.of("Broadcast");
      assert.equal(first.req.protoOp, 1005);
      assert.equal(first.req.proto!.op, 1005);
      assert.equal(dec.decode(first.req.proto!.body), "all");
      assert.equal(first.req.speed, 30);
      assert.equal(dec.decode(second.req.proto!.body), "slow");
      assert.equal(second.req.speed, 1, "never rounded down to 0 (= unpaced)");
    }
  });
});

Deno.test("job: 50 unpaced broadcasts of one op become at most 4 op 9 Broadcast calls per comet, in order", async () => {
  await withJob(
    { comets: ["c1", "c2"], set: ["job.room.batch=20", "job.room.window=20ms"] },
    async (h) => {
      for (let i = 0; i < 50; i++) {
        await h.publish({ type: "BROADCAST", operation: 1007, speed: 0, msg: utf8(`b${i}`) });
      }
      for (const c of h.comets.values()) {
        const frames = () =>
          c.of("Broadcast").reduce((n, x) => n + decodeFrames(x.req.proto!.body).length, 0);
        await c.until(() => frames() >= 50, "50 frames");
        const calls = c.of("Broadcast");
        assert.ok(calls.length <= Math.ceil(50 / 20) + 1, `${calls.length} calls`);
        const all = calls.flatMap((x) => {
          assert.equal(x.req.protoOp, 1007);
          assert.equal(x.req.speed, 0);
          assert.equal(x.req.proto!.op, Op.Raw);
          assert.equal(x.req.proto!.ver, 1);
          return decodeFrames(x.req.proto!.body);
        });
        assert.deepEqual(
          all.map((f) => [f.ver, f.op, f.seq, dec.decode(f.body)]),
          Array.from({ length: 50 }, (_, i) => [1, 1007, 0, `b${i}`]),
        );
      }
      await eventually(() => h.queue.depth() === 0, "all 50 acknowledged");
      assert.equal(await h.metric("delivered_total", { type: "BROADCAST" }), 50);
    },
  );
});

Deno.test("job: broadcasts of different ops are never mixed in one call; a paced one is flushed behind its op's batch", async () => {
  await withJob(
    { comets: ["c1"], set: ["job.room.batch=100", "job.room.window=30ms"] },
    async (h) => {
      const c1 = h.comets.get("c1")!;
      for (let i = 0; i < 6; i++) {
        await h.publish({ type: "BROADCAST", operation: 2000 + (i % 2), msg: utf8(`x${i}`) });
      }
      await h.publish({ type: "BROADCAST", operation: 2000, speed: 50, msg: utf8("paced") });
      const frames = () =>
        c1.of("Broadcast").reduce(
          (n, x) => n + (x.req.proto!.op === Op.Raw ? decodeFrames(x.req.proto!.body).length : 1),
          0,
        );
      await c1.until(() => frames() >= 7, "7 frames");
      const calls = c1.of("Broadcast");
      for (const x of calls) {
        if (x.req.proto!.op !== Op.Raw) continue;
        for (const f of decodeFrames(x.req.proto!.body)) assert.equal(f.op, x.req.protoOp);
      }
      const byOp = (op: number) =>
        calls.filter((x) => x.req.protoOp === op).flatMap((x) =>
          x.req.proto!.op === Op.Raw
            ? decodeFrames(x.req.proto!.body).map((f) => dec.decode(f.body))
            : [`${dec.decode(x.req.proto!.body)}@${x.req.speed}`]
        );
      assert.deepEqual(byOp(2000), ["x0", "x2", "x4", "paced@50"]);
      assert.deepEqual(byOp(2001), ["x1", "x3", "x5"]);
      const paced = calls.filter((x) => x.req.proto!.op === 2000);
      assert.equal(paced.length, 1, "the paced broadcast is its own call, not batched");
      await eventually(() => h.queue.depth() === 0, "all acknowledged");
    },
  );
});

Deno.test("job: a comet that fails UNAVAILABLE then recovers gets the message (retried)", async () => {
  await withJob(
    { comets: ["c1"], set: ["job.retry.max_attempts=3", "job.retry.base_delay=5ms"] },
    async (h) => {
      const c1 = h.comets.get("c1")!;
      c1.failures = 2;
      await h.publish({ type: "PUSH", server: "c1", keys: ["k"], msg: utf8("eventually") });
      await c1.waitCalls("PushMsg", 1);
      assert.equal(c1.attempts, 3);
      await eventually(() => h.queue.depth() === 0, "acknowledgement");
      assert.equal(await h.metric("retried_total"), 2);
      assert.equal(await h.metric("delivered_total", { type: "PUSH" }), 1);
      // INTERNAL (a socket that died mid-call) is retried too.
      c1.failures = 1;
      c1.failCode = grpcStatus.INTERNAL;
      await h.publish({ type: "PUSH", server: "c1", keys: ["k"], msg: utf8("again") });
      await c1.waitCalls("PushMsg", 2);
      assert.equal(await h.metric("retried_total"), 3);
    },
  );
});

Deno.test("job: retries exhausted → skipped and counted; the next message still flows", async () => {
  await withJob(
    { comets: ["c1"], set: ["job.retry.max_attempts=3", "job.retry.base_delay=5ms"] },
    async (h) => {
      const c1 = h.comets.get("c1")!;
      c1.failures = 3;
      await h.publish({ type: "PUSH", server: "c1", keys: ["k"], msg: utf8("lost") });
      await h.publish({ type: "PUSH", server: "c1", keys: ["k"], msg: utf8("next") });
      await c1.waitCalls("PushMsg", 1);
      assert.deepEqual(c1.of("PushMsg").map((c) => dec.decode(c.req.proto!.body)), ["next"]);
      await eventually(() => h.queue.depth() === 0, "both acknowledged");
      assert.equal(await h.metric("skipped_total", { reason: "retries_exhausted" }), 1);
      assert.equal(await h.metric("delivered_total", { type: "PUSH" }), 1);
      // A non-transient error is not retried.
      c1.failures = 1;
      c1.failCode = grpcStatus.INVALID_ARGUMENT;
      const before = c1.attempts;
      await h.publish({ type: "PUSH", server: "c1", keys: ["k"], msg: utf8("bad") });
      await eventually(
        async () => (await h.metric("skipped_total", { reason: "rpc_error" })) === 1,
        "skip",
      );
      assert.equal(c1.attempts - before, 1);
    },
  );
});

Deno.test("job: a comet that is down gets one attempt per message until it answers", async () => {
  await withJob(
    { comets: ["c1"], set: ["job.retry.max_attempts=5", "job.retry.base_delay=5ms"] },
    async (h) => {
      const c1 = h.comets.get("c1")!;
      c1.failures = 7; // 5 for the first message, then 1 each for two more
      for (const b of ["a", "b", "c", "d"]) {
        await h.publish({ type: "PUSH", server: "c1", keys: ["k"], msg: utf8(b) });
      }
      await c1.waitCalls("PushMsg", 1);
      assert.equal(c1.attempts, 8);
      assert.deepEqual(c1.of("PushMsg").map((c) => dec.decode(c.req.proto!.body)), ["d"]);
      await eventually(() => h.queue.depth() === 0, "all acknowledged");
      assert.equal(await h.metric("skipped_total", { reason: "retries_exhausted" }), 3);
    },
  );
});

Deno.test("job: unknown server → one registry refresh, then delivered or skipped", async () => {
  await withJob({ comets: ["c1"] }, async (h) => {
    // Registered after job's last poll: the push itself makes job look again.
    const late = await h.addComet("late");
    await h.publish({ type: "PUSH", server: "late", keys: ["k"], msg: utf8("found") });
    await late.waitCalls("PushMsg", 1);
    await h.publish({ type: "PUSH", server: "nowhere", keys: ["k"], msg: utf8("lost") });
    await eventually(
      async () => (await h.metric("skipped_total", { reason: "unknown_server" })) === 1,
      "unknown_server skip",
    );
    await eventually(() => h.queue.depth() === 0, "acknowledged");
  });
});

Deno.test("job: comets appearing and disappearing in the registry are followed", async () => {
  await withJob({ comets: ["c1"], deps: { registryPollMs: 20 } }, async (h) => {
    const c2 = await h.addComet("c2");
    await eventually(() => h.job.status().comets.length === 2, "c2 to be picked up by the poll");
    await h.publish({ type: "BROADCAST", msg: utf8("both") });
    await c2.waitCalls("Broadcast", 1);
    await h.comets.get("c1")!.waitCalls("Broadcast", 1);
    await h.registry.deregister("c1");
    await eventually(() => h.comets.get("c1")!.closed, "c1's client to be closed");
    assert.deepEqual(h.job.status().comets.map((c) => c.id), ["c2"]);
    await h.publish({ type: "BROADCAST", msg: utf8("one") });
    await c2.waitCalls("Broadcast", 2);
    assert.equal(h.comets.get("c1")!.of("Broadcast").length, 1);
  });
});

Deno.test("job: a full lane holds the handler back (backpressure) and order is kept", async () => {
  await withJob({ comets: ["c1"], set: ["job.comet_lanes=1", "job.lane_queue=2"] }, async (h) => {
    const c1 = h.comets.get("c1")!;
    let release!: () => void;
    c1.gate = new Promise((r) => release = r);
    const msg = (i: number): PushMsg => ({
      type: "PUSH",
      operation: 1000,
      speed: 0,
      server: "c1",
      room: "",
      keys: [`k${i % 2}`],
      msg: utf8(String(i)),
    });
    const done: number[] = [];
    const handled = Array.from(
      { length: 6 },
      (_, i) => h.job.handle(msg(i)).then(() => done.push(i)),
    );
    await c1.until(() => c1.attempts === 1, "the first call to be in flight");
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(done, [], "nothing resolves while the comet holds the first call");
    release();
    await Promise.all(handled);
    assert.deepEqual(done, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(c1.of("PushMsg").map((c) => dec.decode(c.req.proto!.body)), [
      "0",
      "1",
      "2",
      "3",
      "4",
      "5",
    ]);
  });
});

Deno.test("job: stop flushes pending room batches at once and is idempotent", async () => {
  const h = await startJob({ comets: ["c1"], set: ["job.room.window=10s"] });
  try {
    await h.publish({ type: "ROOM", room: "live://s", msg: utf8("last words") });
    await eventually(() => h.job.status().rooms === 1, "the batcher to hold the message");
    const t0 = performance.now();
    await Promise.all([h.job.stop(), h.job.stop()]);
    assert.ok(performance.now() - t0 < 2000, "stop did not wait for the 10 s window");
    assert.equal(h.comets.get("c1")!.of("BroadcastRoom").length, 1);
    assert.equal(h.comets.get("c1")!.closed, true);
    await assert.rejects(h.job.handle({
      type: "PUSH",
      operation: 1,
      speed: 0,
      server: "c1",
      room: "",
      keys: ["k"],
      msg: new Uint8Array(),
    }));
  } finally {
    await h.stop();
  }
});

Deno.test("job: invalid messages are skipped as invalid", async () => {
  await withJob({ comets: ["c1"] }, async (h) => {
    await h.publish({ type: "PUSH", server: "c1", keys: [] });
    await h.publish({ type: "PUSH", server: "", keys: ["k"] });
    await h.publish({ type: "ROOM", room: "" });
    await eventually(
      async () => (await h.metric("skipped_total", { reason: "invalid" })) === 3,
      "skips",
    );
    assert.equal(h.comets.get("c1")!.calls.length, 0);
  });
});

Deno.test("job: metrics expose lane depth, comets and consumer lag", async () => {
  await withJob({ comets: ["c1", "c2"] }, async (h) => {
    const text = await h.metrics.text();
    assert.match(text, /goim_job_comets 2/);
    assert.match(text, /goim_job_lane_depth\{comet="c1"\} 0/);
    assert.match(text, /goim_job_consumer_lag 0/);
  });
});

Deno.test("retry: transient statuses are UNAVAILABLE, INTERNAL and DEADLINE_EXCEEDED", () => {
  for (const code of [grpcStatus.UNAVAILABLE, grpcStatus.INTERNAL, grpcStatus.DEADLINE_EXCEEDED]) {
    assert.ok(isTransient(new RpcError(code, "x")), String(code));
  }
  for (
    const code of [grpcStatus.INVALID_ARGUMENT, grpcStatus.CANCELLED, grpcStatus.UNIMPLEMENTED]
  ) {
    assert.ok(!isTransient(new RpcError(code, "x")), String(code));
  }
  assert.ok(!isTransient(new Error("plain")));
});

Deno.test("lane: closing rejects what waits, lets the running item finish", async () => {
  const lane = new Lane(1);
  let release!: () => void;
  const running = lane.submit(() => new Promise<string>((r) => release = () => r("ran")));
  const queued = lane.submit(() => Promise.resolve("never"));
  const closed = lane.close("test");
  await assert.rejects(queued, LaneClosedError);
  release();
  assert.equal(await running, "ran");
  await closed;
  await assert.rejects(lane.submit(() => Promise.resolve(1)), LaneClosedError);
});

Deno.test("job: room membership refreshes do not spin when Rooms() answers at once", async () => {
  const { RoomSnapshot, Stamps } = await import("../job/membership.ts");
  const stamps = new Stamps();
  let calls = 0;
  const snap = new RoomSnapshot(
    () => {
      calls++;
      return Promise.resolve({ rooms: { "live://a": true } });
    },
    stamps,
    { minGapMs: 0, waitMs: 1000, now: () => 0 },
  );
  // Many batches, each newer than the last answer: every one must be decided by a fresh answer.
  for (let i = 0; i < 50; i++) {
    const since = stamps.next();
    assert.equal(await snap.wants("live://a", since), true);
    assert.equal(await snap.wants("live://b", since), false);
    assert.ok(snap.stamp > since);
  }
  assert.ok(calls >= 50 && calls <= 100, `${calls} Rooms() calls`);
});

/**
 * Stream and push status stores: the shared suite against memory (and the
 * Redis engines), plus what only one engine has (memory eviction and lazy
 * expiry; the Redis key layout and a partly lost history).
 */

import assert from "node:assert/strict";
import { MemoryPushStatusStore, MemoryStreamStore } from "../infra/memory/streams.ts";
import type { StreamEntryInit } from "../infra/streams.ts";
import { streamStoreSuite } from "./engine_suites/streams_suite.ts";

const utf8 = new TextEncoder();
const entry = (pushId: string): StreamEntryInit => ({
  pushId,
  op: 1000,
  body: utf8.encode(pushId),
});

// ---------------------------------------------------------------------------- memory

streamStoreSuite("memory", ({ size, ttlMs, statusTtlMs }) => {
  let t = Date.now();
  const now = () => t;
  const streams = new MemoryStreamStore({ size, ttlMs, maxStreams: 10_000, now });
  const status = new MemoryPushStatusStore({ ttlMs: statusTtlMs, now });
  return Promise.resolve({
    streams,
    status,
    // The embedded process has one store: a second job is the same one.
    second: () => Promise.resolve(streams),
    lose: (s: string) => Promise.resolve(void streams.delete(s)),
    advance: (ms: number) => void (t += ms),
    cleanup: async () => {
      await streams.close();
      await status.close();
    },
  });
});

Deno.test("memory streams: past max_streams the least recently appended goes", async () => {
  const store = new MemoryStreamStore({ size: 10, ttlMs: 60_000, maxStreams: 3 });
  try {
    const a = await store.append("a", [entry("x")]);
    const b = await store.append("b", [entry("x")]);
    await store.append("c", [entry("x")]);
    await store.recover("b", null); // reading does not count as use
    assert.equal((await store.append("a", [entry("y")])).epoch, a.epoch, "a is now the newest");
    await store.append("d", [entry("x")]);
    assert.equal(store.streams, 3);
    assert.deepEqual(await store.recover("b", { epoch: b.epoch, pos: 1 }), {
      epoch: "",
      top: 0,
      recovered: false,
      reason: "epoch_changed",
      entries: [],
    }, "b was evicted");
    assert.equal((await store.recover("a", null)).top, 2);
    const b2 = await store.append("b", [entry("x")]);
    assert.notEqual(b2.epoch, b.epoch);
    assert.deepEqual(b2.positions, [1]);
    assert.equal((await store.recover("c", null)).epoch, "", "c, now the oldest, went for b");
  } finally {
    await store.close();
  }
});

Deno.test("memory streams: expired streams are dropped by later appends, unread", async () => {
  let t = 0;
  const store = new MemoryStreamStore({ size: 10, ttlMs: 1000, maxStreams: 100, now: () => t });
  try {
    for (let i = 0; i < 50; i++) await store.append(`s${i}`, [entry("x")]);
    t = 500;
    await store.append("s0", [entry("y")]); // s0 renewed
    t = 1000;
    await store.append("fresh", [entry("x")]);
    assert.equal(store.streams, 2, "s1…s49 expired and dropped; s0 and fresh remain");
    assert.equal((await store.recover("s0", null)).top, 2);
    t = 1500;
    assert.equal((await store.recover("s0", null)).epoch, "", "expired on read too");
    assert.equal(store.streams, 1);
  } finally {
    await store.close();
  }
});

Deno.test("memory streams: bad bounds throw; a closed store rejects", async () => {
  assert.throws(() => new MemoryStreamStore({ size: 0, ttlMs: 1, maxStreams: 1 }), RangeError);
  assert.throws(() => new MemoryStreamStore({ size: 1, ttlMs: 0, maxStreams: 1 }), RangeError);
  assert.throws(() => new MemoryStreamStore({ size: 1, ttlMs: 1, maxStreams: 0 }), RangeError);
  assert.throws(() => new MemoryPushStatusStore({ ttlMs: 0 }), RangeError);
  assert.throws(() => new MemoryPushStatusStore({ ttlMs: 1, maxTargets: 0 }), RangeError);
  const store = new MemoryStreamStore({ size: 1, ttlMs: 1000, maxStreams: 1 });
  const status = new MemoryPushStatusStore({ ttlMs: 1000 });
  await store.close();
  await status.close();
  await assert.rejects(() => store.append("a", [entry("x")]), /closed/);
  await assert.rejects(() => store.recover("a", null), /closed/);
  await assert.rejects(() => status.get("p"), /closed/);
});

Deno.test("memory push status: expired records go on create; maxTargets bounds the rest", async () => {
  let t = 0;
  const status = new MemoryPushStatusStore({ ttlMs: 1000, maxTargets: 10, now: () => t });
  try {
    for (let i = 0; i < 4; i++) await status.create(`old${i}`, ["mid:1", "mid:2"]);
    t = 1000;
    await status.create("new0", ["mid:1", "mid:2", "mid:3"]);
    assert.equal(status.records, 1, "the four expired records were dropped unread");
    await status.create("new1", ["mid:1", "mid:2", "mid:3"]);
    await status.create("new2", ["mid:1", "mid:2", "mid:3"]);
    await status.create("new3", ["mid:1", "mid:2", "mid:3"]); // 12 targets > 10: new0 goes
    assert.equal(status.records, 3);
    assert.equal(await status.get("new0"), null);
    assert.equal((await status.get("new3"))?.pending, 3);
    // One push over the bound on its own is still kept (the others make room).
    const many = Array.from({ length: 20 }, (_, i) => `mid:${i}`);
    await status.create("big", many);
    assert.equal(status.records, 1);
    assert.equal((await status.get("big"))?.targets.length, 20);
  } finally {
    await status.close();
  }
});

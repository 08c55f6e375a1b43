import assert from "node:assert/strict";
import { PushBatcher } from "../job/batcher.ts";
import type { Batch } from "../protocol/batch.ts";

const body = new Uint8Array([1, 2, 3]);

/** A flush the test answers by hand, recording each batch's frame count. */
function manualFlush() {
  const sent: number[] = [];
  const answers: (() => void)[] = [];
  let landed: () => void = () => {};
  const flush = (_key: string, batch: Batch) => {
    sent.push(batch.count);
    landed();
    return new Promise<string>((r) => answers.push(() => r("ok")));
  };
  const nextFlush = () => new Promise<void>((r) => landed = r);
  return { sent, answers, flush, nextFlush };
}

Deno.test("batcher: a quiet key is flushed at the window, one frame per batch", async () => {
  const m = manualFlush();
  const b = new PushBatcher("room", { batch: 20, windowMs: 5 }, m.flush);
  const flushed = m.nextFlush();
  const p = b.add(1000, body, { at: 0 });
  await flushed;
  assert.deepEqual(m.sent, [1]);
  m.answers[0]();
  assert.equal(await p, "ok");
  assert.ok(b.idle);
});

Deno.test("batcher: while a flush is out the batch grows and is sealed when it lands", async () => {
  const m = manualFlush();
  const b = new PushBatcher("room", { batch: 20, windowMs: 1 }, m.flush);
  let flushed = m.nextFlush();
  void b.add(1000, body, { at: 0 });
  await flushed;
  assert.deepEqual(m.sent, [1]);
  // Three more frames, several windows long: none is sealed while the first flush is out.
  for (let i = 0; i < 3; i++) b.add(1000, body, { at: 0 });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(m.sent, [1], "a window passing with a flush out must not seal the batch");
  assert.equal(b.inFlight, 1);
  flushed = m.nextFlush();
  m.answers[0]();
  await flushed;
  assert.deepEqual(m.sent, [1, 3], "the grown batch goes out as soon as the flush lands");
  m.answers[1]();
});

Deno.test("batcher: a full batch is sealed even while a flush is out", () => {
  const m = manualFlush();
  const b = new PushBatcher("room", { batch: 4, windowMs: 1000 }, m.flush);
  for (let i = 0; i < 4; i++) void b.add(1000, body, { at: 0 });
  assert.deepEqual(m.sent, [4]);
  for (let i = 0; i < 4; i++) void b.add(1000, body, { at: 0 });
  assert.deepEqual(m.sent, [4, 4]);
  assert.equal(b.inFlight, 2);
  m.answers[0]();
  m.answers[1]();
});

Deno.test("batcher: maxInFlight 2 lets a second window seal while one flush is out", async () => {
  const m = manualFlush();
  const b = new PushBatcher("room", { batch: 20, windowMs: 1, maxInFlight: 2 }, m.flush);
  let flushed = m.nextFlush();
  void b.add(1000, body, { at: 0 });
  await flushed;
  flushed = m.nextFlush();
  void b.add(1000, body, { at: 0 });
  await flushed;
  assert.deepEqual(m.sent, [1, 1]);
  m.answers[0]();
  m.answers[1]();
});

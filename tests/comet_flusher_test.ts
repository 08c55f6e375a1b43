/**
 * The comet's write scheduler (comet/flusher.ts) with stand-in channels:
 * a key push is written ahead of a fan-out pass in progress, and
 * written() resolves only once what was queued has been handed over.
 */
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { Flusher, HOLD_MIN_PASS_MS } from "../comet/flusher.ts";
import type { Channel } from "../comet/channel.ts";

/** The parts of a Channel the flusher uses; flush() records the order of turns. */
function fakeChannel(name: string, order: string[], busyMs = 0): Channel {
  return {
    scheduled: false,
    urgent: false,
    flush() {
      order.push(name);
      // A write that costs time, so a pass of many channels spans several slices.
      const end = performance.now() + busyMs;
      while (performance.now() < end) { /* busy */ }
      return undefined;
    },
  } as unknown as Channel;
}

Deno.test("flusher: an expedited channel is written ahead of the rest of a running pass", async () => {
  const order: string[] = [];
  const flusher = new Flusher({ sliceMs: 1 });
  const members = Array.from({ length: 2000 }, (_, i) => fakeChannel(`m${i}`, order, 0.01));
  for (const ch of members) flusher.schedule(ch);
  const key = fakeChannel("key", order);
  // Let the pass start and yield once, then a key push arrives for a channel not in the pass.
  await new Promise<void>((r) => setImmediate(r));
  assert.ok(order.length > 0 && order.length < members.length, `pass under way: ${order.length}`);
  // As Channel.push does: scheduled (so also in the next pass), then expedited by the service.
  flusher.schedule(key);
  flusher.expedite(key);
  const at = order.length;
  await flusher.idle();
  const keyTurn = order.indexOf("key");
  assert.ok(
    keyTurn >= at && keyTurn <= at + 64,
    `written within 64 turns: at ${at}, got ${keyTurn}`,
  );
  assert.ok(keyTurn < members.length, "before the pass reached its end");
  assert.equal(key.urgent, false);
  await flusher.stop();
});

Deno.test("flusher: expedite with no pass running schedules the channel as usual", async () => {
  const order: string[] = [];
  const flusher = new Flusher();
  const ch = fakeChannel("k", order);
  flusher.expedite(ch);
  assert.equal(ch.scheduled, true);
  await flusher.idle();
  await flusher.written();
  assert.deepEqual(order, ["k"]);
  await flusher.stop();
});

Deno.test("flusher: written() resolves after the pass that writes what was queued", async () => {
  const order: string[] = [];
  const flusher = new Flusher({ sliceMs: 1 });
  for (let i = 0; i < 500; i++) flusher.schedule(fakeChannel(`a${i}`, order, 0.01));
  const written = flusher.written().then(() => order.length);
  assert.equal(await written, 500, "every channel queued before written() had its turn");
  assert.equal(await flusher.written().then(() => "idle"), "idle", "at once when nothing waits");
  await flusher.stop();
});

Deno.test("flusher: after a long pass written() holds as long again; holdRatio 0 answers at once", async () => {
  for (const holdRatio of [1, 0]) {
    const order: string[] = [];
    const flusher = new Flusher({ sliceMs: 1, holdRatio });
    // ≈20 ms of writes: over HOLD_MIN_PASS_MS, under HOLD_MAX_MS.
    for (let i = 0; i < 200; i++) flusher.schedule(fakeChannel(`a${i}`, order, 0.1));
    const t0 = performance.now();
    let passEnd = 0;
    const idle = flusher.idle().then(() => passEnd = performance.now());
    await flusher.written();
    const answered = performance.now();
    await idle;
    const pass = passEnd - t0;
    assert.ok(pass >= HOLD_MIN_PASS_MS, `a long pass: ${pass} ms`);
    if (holdRatio === 1) {
      assert.ok(
        answered - passEnd >= pass * 0.9,
        `held ${answered - passEnd} ms after a ${pass} ms pass`,
      );
    } else {
      assert.ok(answered - passEnd < pass, `answered at once: ${answered - passEnd} ms`);
    }
    await flusher.stop();
  }
});

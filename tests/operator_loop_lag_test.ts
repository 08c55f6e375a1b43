/**
 * infra/loop_lag.ts: a blocked loop shows up in the figures and in the
 * process metrics; the last release stops the timer.
 */

import assert from "node:assert/strict";
import {
  acquireLoopLag,
  LOOP_LAG_INTERVAL_MS,
  LOOP_LAG_METRIC,
  loopLag,
} from "../infra/loop_lag.ts";
import { processMetrics } from "../infra/metrics.ts";
import { eventually } from "./eventually.ts";

Deno.test("loop lag: a 250 ms block is measured; released = no figures, no timer", async () => {
  const a = acquireLoopLag();
  const b = acquireLoopLag();
  try {
    // Wait for a first sample, then block the loop on purpose.
    await eventually(() => loopLag() !== null, "a first sample", 2000);
    const until = performance.now() + 250;
    while (performance.now() < until) { /* the block under test */ }
    // The timer due during the block fires up to 250 ms late.
    await eventually(
      () => (loopLag()?.maxMs ?? 0) >= 250 - LOOP_LAG_INTERVAL_MS,
      "the block in the max",
      2000,
    );
    const text = await processMetrics().getSingleMetricAsString(LOOP_LAG_METRIC);
    const max = /stat="max"} ([\d.e+-]+)/.exec(text);
    assert.ok(max && Number(max[1]) >= 0.15, text);
  } finally {
    a.release();
    a.release(); // idempotent: b still holds it
    assert.ok(loopLag() !== null);
    b.release();
  }
  assert.equal(loopLag(), null);
});

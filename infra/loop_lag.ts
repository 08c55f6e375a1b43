/**
 * Event-loop lag of this process: how late a timer fires, sampled every
 * {@linkcode LOOP_LAG_INTERVAL_MS} over the last {@linkcode LOOP_LAG_WINDOW}
 * samples (10 s). A loop busy with a long fan-out or a GC pause delays every
 * read, write and gRPC call of the process by as much, so it is the first
 * figure an operator looks at (docs/CONSOLE.md).
 *
 * Why not `node:perf_hooks` `monitorEventLoopDelay` (and prom-client's
 * `nodejs_eventloop_lag_*`, built on it): under the pinned Deno 2.9.3 it
 * records a few microseconds while the loop is blocked for 200 ms, so it
 * reports nothing useful. A timer that measures its own delay costs ten
 * wake-ups a second and sees exactly what every callback waits.
 *
 * One sampler per process, shared: {@linkcode acquireLoopLag} starts it (the
 * first holder) and each holder releases it (the last one stops the timer),
 * so a role started and stopped in a test leaves no timer behind. The timer
 * is unref'd: it never keeps a process alive. While it runs, the process
 * metrics (infra/metrics.ts `processMetrics`) carry
 * `goim_event_loop_lag_seconds{stat="p50"|"p99"|"max"}`, which is how a
 * console reads the lag of a role it reaches only over HTTP (job).
 *
 * @example
 * ```ts
 * import { acquireLoopLag, loopLag } from "./loop_lag.ts";
 * const hold = acquireLoopLag();
 * // … later
 * loopLag(); // { p50Ms: 0.1, p99Ms: 3.2, maxMs: 12.5, samples: 100 } (null before the first sample)
 * hold.release();
 * ```
 *
 * @module
 */

import { Gauge } from "prom-client";
import { processMetrics } from "./metrics.ts";

/** Sampling period, ms. */
export const LOOP_LAG_INTERVAL_MS = 100;

/** Samples kept: the window the figures cover is this × the interval (10 s). */
export const LOOP_LAG_WINDOW = 100;

/** Name of the process gauge (label `stat`: p50, p99, max; seconds). */
export const LOOP_LAG_METRIC = "goim_event_loop_lag_seconds";

/** Lag over the window, in milliseconds. */
export interface LoopLagStats {
  /** Median delay of a timer. */
  p50Ms: number;
  /** 99th percentile. */
  p99Ms: number;
  /** Longest delay in the window. */
  maxMs: number;
  /** Samples the figures come from (at most {@linkcode LOOP_LAG_WINDOW}). */
  samples: number;
}

/** A hold on the shared sampler; release it once. */
export interface LoopLagHold {
  /** Lets go of the sampler; the last release stops it. Idempotent. */
  release(): void;
}

const ring = new Float64Array(LOOP_LAG_WINDOW);
let filled = 0;
let next = 0;
let holders = 0;
let timer: ReturnType<typeof setInterval> | undefined;
let expected = 0;

function tick(): void {
  const now = performance.now();
  ring[next] = Math.max(0, now - expected);
  next = (next + 1) % LOOP_LAG_WINDOW;
  if (filled < LOOP_LAG_WINDOW) filled++;
  expected = now + LOOP_LAG_INTERVAL_MS;
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** The figures over the window, or null while the sampler has no sample or nobody holds it. */
export function loopLag(): LoopLagStats | null {
  if (filled === 0 || holders === 0) return null;
  const sorted = ring.slice(0, filled).sort();
  const round = (ms: number) => Math.round(ms * 1000) / 1000;
  return {
    p50Ms: round(quantile(sorted, 0.5)),
    p99Ms: round(quantile(sorted, 0.99)),
    maxMs: round(sorted[filled - 1]),
    samples: filled,
  };
}

function defineGauge(): void {
  const registry = processMetrics();
  if (registry.getSingleMetric(LOOP_LAG_METRIC) !== undefined) return;
  new Gauge({
    name: LOOP_LAG_METRIC,
    help:
      `Event-loop lag: how late a ${LOOP_LAG_INTERVAL_MS} ms timer fired, over the last ${LOOP_LAG_WINDOW} samples, by stat (p50, p99, max).`,
    labelNames: ["stat"],
    registers: [registry],
    collect(this: Gauge<"stat">) {
      this.reset();
      const s = loopLag();
      if (s === null) return;
      this.set({ stat: "p50" }, s.p50Ms / 1000);
      this.set({ stat: "p99" }, s.p99Ms / 1000);
      this.set({ stat: "max" }, s.maxMs / 1000);
    },
  });
}

/**
 * Starts the shared sampler if it is not running and returns a hold on it.
 *
 * @example
 * ```ts
 * const hold = acquireLoopLag();
 * hold.release();
 * ```
 */
export function acquireLoopLag(): LoopLagHold {
  if (holders++ === 0) {
    defineGauge();
    filled = 0;
    next = 0;
    expected = performance.now() + LOOP_LAG_INTERVAL_MS;
    const t = setInterval(tick, LOOP_LAG_INTERVAL_MS);
    Deno.unrefTimer(t);
    timer = t;
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      if (--holders === 0) {
        clearInterval(timer);
        timer = undefined;
      }
    },
  };
}

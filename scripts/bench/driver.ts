/**
 * The push driver: POSTs to logic's HTTP push API at a target rate for a
 * bounded time, each body stamped with its send time (wire.ts), and counts
 * what was accepted and how many deliveries that should produce.
 *
 * Rate control is a token bucket: tokens accrue at `rate` per second from
 * the start; a push is sent per token while fewer than `inflight` requests
 * are outstanding. When the server cannot keep up, tokens pile up to a burst
 * of 50 ms worth and the rest are counted as `missed` instead of being sent
 * late in a rush: the offered load never exceeds the target, and the report
 * shows the gap between target and achieved rate.
 *
 * @module
 */

import { LatencyHistogram, type LatencySummary } from "./histogram.ts";
import { encodeBody, nowMs } from "./wire.ts";

/** One push to make: the path (with query) and the deliveries it should cause. */
export interface PushTarget {
  /** e.g. `/goim/push/keys?operation=1000&keys=bench-x-7`. */
  path: string;
  /** Messages the swarm should receive for it. */
  expected: number;
}

/** Options of {@linkcode runDriver}. */
export interface DriverOptions {
  /** Base URL of logic's HTTP API, e.g. `http://127.0.0.1:3111`. */
  http: string;
  /** Pushes per second to offer. */
  rate: number;
  /** How long to push (ms). */
  durationMs: number;
  /** Most requests outstanding at once. */
  inflight: number;
  /** Stream index written into every body (the phase, or one driver of it). */
  phase: number;
  /** Pad bodies to this many bytes (0 = minimal, ≈ 40 bytes). */
  bodyBytes: number;
  /** The n-th push's target (n from 0). */
  target(n: number): PushTarget;
  /** Bearer key for `logic.auth.api_keys`, if the server needs one. */
  apiKey?: string;
  /** Gives up on one request after this long (ms). */
  requestTimeoutMs?: number;
}

/** What a driver run did. */
export interface DriverResult {
  /** Requests sent. */
  sent: number;
  /** Answered 200 with `"code":0`. */
  ok: number;
  /** Failed (HTTP error, non-zero code, network error, timeout). */
  failed: number;
  /** Tokens dropped because `inflight` requests were outstanding too long. */
  missed: number;
  /** Deliveries the accepted pushes should cause. */
  expected: number;
  /** Wall time from first send to last answer (ms). */
  elapsedMs: number;
  /** Requests sent per second of the push window. */
  achievedRate: number;
  /** Send → HTTP answer. */
  http: LatencySummary;
  /** The same as a histogram, for merging the drivers of one phase. */
  httpHistogram: LatencyHistogram;
  /** First distinct error messages. */
  errors: string[];
  /** Requests sent per epoch second. */
  perSecond: Map<number, number>;
  /** Epoch ms of the first send. */
  startedAt: number;
}

/**
 * Pushes at `rate` for `durationMs`, then waits for the answers still
 * outstanding (each bounded by `requestTimeoutMs`).
 *
 * @example
 * ```ts
 * const r = await runDriver({
 *   http: "http://127.0.0.1:3111", rate: 100, durationMs: 2000, inflight: 32, phase: 0,
 *   bodyBytes: 0, target: () => ({ path: "/goim/push/all?operation=1000", expected: 10 }),
 * });
 * console.log(r.ok, r.expected);
 * ```
 */
export async function runDriver(o: DriverOptions): Promise<DriverResult> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (o.apiKey) headers.authorization = `Bearer ${o.apiKey}`;
  const http = new LatencyHistogram();
  const errors: string[] = [];
  const perSecond = new Map<number, number>();
  const burst = Math.max(1, Math.ceil(o.rate * 0.05));
  const timeoutMs = o.requestTimeoutMs ?? 10_000;
  let sent = 0, ok = 0, failed = 0, missed = 0, expected = 0, inFlight = 0;
  let drained: (() => void) | null = null;

  const note = (msg: string) => {
    if (errors.length < 5 && !errors.includes(msg)) errors.push(msg);
  };

  const push = async (n: number): Promise<void> => {
    const tgt = o.target(n);
    const t = nowMs();
    const sec = Math.floor(t / 1000);
    perSecond.set(sec, (perSecond.get(sec) ?? 0) + 1);
    // An own timer rather than AbortSignal.timeout(), whose timer outlives
    // the request (and trips the test sanitizers).
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    try {
      const res = await fetch(o.http + tgt.path, {
        method: "POST",
        headers,
        body: encodeBody(t, o.phase, n, o.bodyBytes),
        signal: ctl.signal,
      });
      const text = await res.text();
      http.record(nowMs() - t);
      if (res.status === 200 && text.includes('"code":0')) {
        ok++;
        expected += tgt.expected;
      } else {
        failed++;
        note(`HTTP ${res.status}: ${text.slice(0, 200)}`);
      }
    } catch (e) {
      failed++;
      note(`${(e as Error).name}: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
      inFlight--;
      if (inFlight === 0 && drained) drained();
    }
  };

  const start = performance.now();
  const startedAt = nowMs();
  const end = start + o.durationMs;
  let issued = 0; // tokens used: sent or missed
  for (;;) {
    const now = performance.now();
    if (now >= end) break;
    // Tokens due by now; the first is due at t = 0.
    let due = Math.floor(((now - start) * o.rate) / 1000) + 1 - issued;
    if (due > burst) {
      missed += due - burst;
      issued += due - burst;
      due = burst;
    }
    while (due > 0 && inFlight < o.inflight) {
      inFlight++;
      void push(sent++);
      issued++;
      due--;
    }
    // Sleep until the next token (timers fire no sooner than ≈ 1 ms); when
    // blocked on `inflight`, re-check after 1 ms rather than spin.
    const nextAt = start + (issued * 1000) / o.rate;
    const wait = due > 0 ? 1 : Math.max(0, Math.min(nextAt, end) - performance.now());
    await new Promise((r) => setTimeout(r, wait));
  }
  if (inFlight > 0) await new Promise<void>((r) => drained = r);
  const elapsedMs = performance.now() - start;
  return {
    sent,
    ok,
    failed,
    missed,
    expected,
    elapsedMs,
    achievedRate: sent / (o.durationMs / 1000),
    http: http.summary(),
    httpHistogram: http,
    errors,
    perSecond,
    startedAt,
  };
}

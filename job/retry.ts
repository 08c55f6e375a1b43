/**
 * When job retries a call to a comet, and how long it waits in between.
 *
 * @module
 */

import { doublingDelay } from "../infra/backoff.ts";
import { grpcStatus, RpcError } from "../proto/grpc.ts";

/** Retry settings (config `job.retry.*`). */
export interface RetryPolicy {
  /** Attempts per call, the first included; 1 = no retry. */
  maxAttempts: number;
  /** Delay before the first retry (ms); doubles on each further one. */
  baseDelayMs: number;
  /** Upper bound of the delay (ms). */
  maxDelayMs: number;
}

// UNAVAILABLE: nothing listens / connection refused. INTERNAL: grpc-js
// reports a socket that died mid-call ("socket has been ended") this way,
// often as the first failure after a comet restart. DEADLINE_EXCEEDED: the
// comet is alive but slow or the network stalled. Anything else (bad
// request, unimplemented, cancelled because we closed the client) would
// fail again the same way.
const TRANSIENT: ReadonlySet<number> = new Set([
  grpcStatus.UNAVAILABLE,
  grpcStatus.INTERNAL,
  grpcStatus.DEADLINE_EXCEEDED,
]);

/**
 * Whether a failed comet call may succeed if tried again: an
 * {@linkcode RpcError} with status UNAVAILABLE, INTERNAL or DEADLINE_EXCEEDED.
 *
 * @example
 * ```ts
 * import { grpcStatus, RpcError } from "../proto/grpc.ts";
 * isTransient(new RpcError(grpcStatus.UNAVAILABLE, "connect ECONNREFUSED")); // true
 * isTransient(new RpcError(grpcStatus.INVALID_ARGUMENT, "keys are required")); // false
 * ```
 */
export function isTransient(err: unknown): boolean {
  return err instanceof RpcError && TRANSIENT.has(err.code);
}

/**
 * The delay before retry number `retry` (1 = the first retry): the base
 * doubled per earlier retry, capped, with ±20% jitter so that the lanes of
 * a comet that just came back do not all call at the same instant.
 *
 * @example
 * ```ts
 * backoffDelay({ maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 2000 }, 2); // 160..240
 * ```
 */
export function backoffDelay(p: RetryPolicy, retry: number, random = Math.random): number {
  return Math.round(doublingDelay(p.baseDelayMs, p.maxDelayMs, retry) * (0.8 + 0.4 * random()));
}

/** A status name for logs and metric labels, e.g. `UNAVAILABLE`; `error` for non-RPC errors. */
export function errorCode(err: unknown): string {
  if (err instanceof RpcError) return grpcStatus[err.code] ?? String(err.code);
  return "error";
}

/**
 * The server side's retry delay: a base doubling per failure, capped.
 * (Reconnecting clients have their own, with jitter options: client/backoff.ts.)
 *
 * @module
 */

/**
 * The delay before retry `n` (1 = the first): `baseMs` doubled per earlier
 * retry, capped at `maxMs`; `n` below 1 counts as 1. No jitter, no rounding.
 *
 * @example
 * ```ts
 * doublingDelay(100, 5000, 1); // 100
 * doublingDelay(100, 5000, 3); // 400
 * doublingDelay(100, 5000, 20); // 5000
 * ```
 */
export function doublingDelay(baseMs: number, maxMs: number, n: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, n - 1));
}

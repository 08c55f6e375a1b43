/**
 * Capped exponential backoff with jitter for reconnects. Pure.
 *
 * Runs in Deno and browsers.
 *
 * @module
 */

/**
 * How the delay is randomised around the exponential base
 * `b = min(maxDelayMs, initialDelayMs × factor^(attempt−1))`:
 *
 * - `"full"`: uniform in `[0, b)`. Spreads a reconnect storm the most, but a
 *   retry may follow almost at once.
 * - `"equal"` (default): uniform in `[b/2, b)`. Still spreads a storm of
 *   clients (after a comet restart) while guaranteeing at least half the base
 *   between attempts, so a down server is never hammered.
 * - `"none"`: exactly `b` (deterministic; for tests and tooling).
 *
 * @example
 * ```ts
 * const opts = { ...DEFAULT_BACKOFF, jitter: "full" as Jitter };
 * backoffDelay(2, opts, () => 0.25); // 250
 * ```
 */
export type Jitter = "full" | "equal" | "none";

/**
 * Reconnect timing; see {@linkcode backoffDelay}.
 *
 * @example
 * ```ts
 * const opts: BackoffOptions = { initialDelayMs: 1000, maxDelayMs: 60_000, factor: 2, jitter: "equal" };
 * backoffDelay(1, opts, () => 0); // 500
 * ```
 */
export interface BackoffOptions {
  /** Base delay before the first reconnect attempt (default 500 ms). */
  initialDelayMs: number;
  /** Cap on the base delay (default 30 000 ms). */
  maxDelayMs: number;
  /** Growth of the base delay per attempt (default 2). */
  factor: number;
  /** Randomisation (default `"equal"`). */
  jitter: Jitter;
}

/**
 * The defaults used by `GoimClient`.
 *
 * @example
 * ```ts
 * backoffDelay(1, DEFAULT_BACKOFF, () => 0); // 250 (equal jitter of 500)
 * ```
 */
export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  factor: 2,
  jitter: "equal",
});

/**
 * Delay in whole milliseconds before reconnect attempt `attempt` (1 = the
 * first attempt after a connection dropped). `random` returns a number in
 * `[0, 1)` like `Math.random`; inject it to make delays deterministic.
 *
 * @example
 * ```ts
 * const opts = { initialDelayMs: 500, maxDelayMs: 30_000, factor: 2, jitter: "none" } as const;
 * backoffDelay(1, opts); // 500
 * backoffDelay(3, opts); // 2000
 * backoffDelay(20, opts); // 30000 (capped)
 * backoffDelay(3, { ...opts, jitter: "equal" }, () => 0.5); // 1500
 * ```
 */
export function backoffDelay(
  attempt: number,
  opts: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const n = Math.max(1, Math.floor(attempt));
  const initial = Math.max(0, opts.initialDelayMs);
  const max = Math.max(initial, opts.maxDelayMs);
  const factor = Math.max(1, opts.factor);
  // factor^(n-1) overflows to Infinity for huge n; min() then caps it.
  const base = Math.min(max, initial * factor ** (n - 1));
  let r = random();
  if (!(r >= 0)) r = 0;
  if (r >= 1) r = 1 - Number.EPSILON;
  switch (opts.jitter) {
    case "full":
      return Math.floor(base * r);
    case "equal":
      return Math.floor(base / 2 + (base / 2) * r);
    default:
      return Math.floor(base);
  }
}

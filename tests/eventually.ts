/**
 * Polling for state that has no event to await (a counter, a health
 * endpoint, a store's TTL). Where an event exists, tests await it instead.
 *
 * @module
 */

/**
 * Resolves once `check()` holds, re-checking every `intervalMs`; throws
 * naming `what` after `timeoutMs`.
 *
 * @example
 * ```ts
 * import type { MemoryQueue } from "../infra/memory/queue.ts";
 * declare const queue: MemoryQueue;
 * await eventually(() => queue.depth() === 0, "the queue to drain", 3000);
 * ```
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
  intervalMs = 10,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

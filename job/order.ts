/**
 * Chains of steps per key: what keeps a room's batches, a stream's appends
 * and a mid's pushes in queue order while different keys run side by side.
 *
 * @module
 */

/**
 * Runs `step` with what `ready` resolves to, once the step chained before
 * it under `key` in `chains` has settled. Steps of one key so run one at a
 * time, in call order, while their `ready` work may overlap. A key whose
 * chain ran empty is forgotten. Rejects when `ready` or `step` does (the
 * chain goes on).
 *
 * @example
 * ```ts
 * const chains = new Map<string, Promise<unknown>>();
 * const slow = new Promise<number>((r) => setTimeout(() => r(1), 10));
 * void inOrder(chains, "room:a", slow, async (n) => console.log("first", n));
 * void inOrder(chains, "room:a", Promise.resolve(2), async (n) => console.log("second", n));
 * ```
 */
export function inOrder<A, T>(
  chains: Map<string, Promise<unknown>>,
  key: string,
  ready: Promise<A>,
  step: (a: A) => T | Promise<T>,
): Promise<T> {
  const prev = chains.get(key);
  // After `prev` whatever `ready` does: a `ready` that rejects early must
  // not let this key's next step start beside the one still running.
  // (`prev` is a chain tail, which never rejects; the catch only marks an
  // early rejection as handled until it is read.)
  if (prev) ready.catch(() => {});
  const run = prev ? prev.then(() => ready).then(step) : ready.then(step);
  const tail = run.then(() => {}, () => {});
  chains.set(key, tail);
  void tail.then(() => {
    if (chains.get(key) === tail) chains.delete(key);
  });
  return run;
}

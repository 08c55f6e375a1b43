/**
 * Interruptible sleeps for retry loops: a component that closes wakes all
 * of its sleepers at once instead of waiting out their backoff timers.
 *
 * @module
 */

/**
 * A set of pending sleeps that {@linkcode Sleeper.wakeAll} cuts short.
 *
 * @example
 * ```ts
 * const sleeper = new Sleeper();
 * const slept = sleeper.sleep(1000); // resolves false if woken early
 * sleeper.wakeAll();
 * await slept; // false
 * ```
 */
export class Sleeper {
  readonly #wakes = new Set<() => void>();
  #closed = false;

  /** Resolves true after `ms`, or false at once if woken (or already closed). */
  sleep(ms: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(t);
        this.#wakes.delete(wake);
        resolve(false);
      };
      const t = setTimeout(() => {
        this.#wakes.delete(wake);
        resolve(true);
      }, ms);
      this.#wakes.add(wake);
    });
  }

  /** Wakes every pending sleep; later sleeps return false at once. */
  wakeAll(): void {
    this.#closed = true;
    for (const wake of [...this.#wakes]) wake();
  }
}

/**
 * A tiny typed event emitter: `on(type, fn)` returns its own unsubscribe.
 *
 * Runs in Deno and browsers.
 *
 * @module
 */

/**
 * A listener for events of payload type `T`.
 *
 * @example
 * ```ts
 * const log: Listener<number> = (n) => console.log(n);
 * new Emitter<{ tick: number }>().on("tick", log);
 * ```
 */
export type Listener<T> = (event: T) => void;

/**
 * Typed emitter over an event map `{ name: payload }`. A listener that throws
 * does not stop the others; its error goes to `onListenerError`.
 *
 * @example
 * ```ts
 * const e = new Emitter<{ tick: number }>();
 * const off = e.on("tick", (n) => console.log(n));
 * e.emit("tick", 1); // logs 1
 * off();
 * ```
 */
export class Emitter<E extends object> {
  #listeners = new Map<keyof E, Set<Listener<never>>>();
  #onListenerError: (error: unknown) => void;

  /** `onListenerError` receives what a listener throws (default: `reportError`). */
  constructor(onListenerError: (error: unknown) => void = defaultReport) {
    this.#onListenerError = onListenerError;
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof E>(type: K, fn: Listener<E[K]>): () => void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, set = new Set());
    set.add(fn as Listener<never>);
    return () => {
      set.delete(fn as Listener<never>);
    };
  }

  /**
   * Resolves with the next event of `type`. Rejects with the signal's reason
   * if `signal` aborts first (the listener is removed either way).
   */
  once<K extends keyof E>(type: K, options: { signal?: AbortSignal } = {}): Promise<E[K]> {
    const { signal } = options;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        off();
        reject(signal!.reason);
      };
      const off = this.on(type, (ev) => {
        off();
        signal?.removeEventListener("abort", onAbort);
        resolve(ev);
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Number of listeners for `type`. */
  listenerCount(type: keyof E): number {
    return this.#listeners.get(type)?.size ?? 0;
  }

  /** Calls every listener of `type` in insertion order. */
  emit<K extends keyof E>(type: K, event: E[K]): void {
    const set = this.#listeners.get(type);
    if (!set || set.size === 0) return;
    for (const fn of [...set]) {
      try {
        (fn as Listener<E[K]>)(event);
      } catch (e) {
        this.#onListenerError(e);
      }
    }
  }
}

function defaultReport(error: unknown): void {
  const g = globalThis as { reportError?: (e: unknown) => void };
  if (typeof g.reportError === "function") g.reportError(error);
  else {queueMicrotask(() => {
      throw error;
    });}
}

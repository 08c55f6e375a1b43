/**
 * `wait=<ms>` of an ack-requested push (docs/STREAMS.md, "Push API"): the
 * HTTP answer is held until every target of the push acked (or was found
 * offline) or the time is up, then reports the counts.
 *
 * The push status store has no change notification (Redis would need a
 * subscription per waiting request), so a wait reads the status: after
 * {@linkcode WAIT_POLL_FIRST_MS}, then twice as long each time up to
 * {@linkcode WAIT_POLL_MAX_MS}. An ack is thus seen within 100 ms, and a
 * wait costs at most ten store reads a second.
 *
 * Bounds: at most `maxWaits` (default {@linkcode MAX_PUSH_WAITS}) requests
 * wait at once per logic; one more is refused with 503 *before* its push is
 * published. A wait ends early when its client closes the connection
 * (nobody would read the answer) and when logic stops (the answer then has
 * the counts so far).
 *
 * @module
 */

import type { PushStatus, PushStatusStore } from "../infra/streams.ts";
import type { LogicMetrics } from "./metrics.ts";
import { ApiError, configured, ResultCode, storeCall } from "./result.ts";

/** Requests that may wait for acks at once, per logic process. */
export const MAX_PUSH_WAITS = 1000;

/** First pause between two reads of a waited push's status. */
export const WAIT_POLL_FIRST_MS = 10;

/** Longest pause between two reads. */
export const WAIT_POLL_MAX_MS = 100;

/** The answer of a waited push: its counts when it ended. */
export interface AckSummary {
  /** The push id. */
  id: string;
  /** Targets of the push (`key:<key>` / `mid:<mid>`). */
  targets: number;
  /** Targets acked by at least one connection. */
  acked: number;
  /** Targets neither acked nor offline. */
  pending: number;
  /** Targets with no live connection when job delivered. */
  offline: number;
}

/** How a wait ended (the `outcome` label of `push_waits_total`). */
export type WaitOutcome = "done" | "timeout" | "gone" | "shutdown" | "refused" | "error";

/** Options of {@linkcode AckWaits}. */
export interface AckWaitsOptions {
  /** Where the status is read. */
  store?: PushStatusStore;
  /** Concurrent waits allowed (default {@linkcode MAX_PUSH_WAITS}). */
  maxWaits?: number;
  /** Counters and the gauge of waits in progress. */
  metrics?: LogicMetrics;
}

/**
 * The waits of one logic: a bounded number of slots, and the polling.
 *
 * @example
 * ```ts
 * import type { PushStatusStore } from "../infra/streams.ts";
 * import { AckWaits } from "./push_wait.ts";
 * declare const store: PushStatusStore;
 * const waits = new AckWaits({ store });
 * const release = waits.reserve(); // before publishing: 503 when full
 * try {
 *   // ... create the status, publish the push ...
 *   const summary = await waits.wait("q3Zk0Xb1T9yW4mVd8sHc2A", 5000);
 * } finally {
 *   release();
 * }
 * ```
 */
export class AckWaits {
  #store?: PushStatusStore;
  #max: number;
  #metrics?: LogicMetrics;
  #active = 0;
  #closing = new AbortController();

  /** Creates the waits over a status store. */
  constructor(opts: AckWaitsOptions) {
    this.#store = opts.store;
    this.#max = opts.maxWaits ?? MAX_PUSH_WAITS;
    this.#metrics = opts.metrics;
  }

  /** Requests waiting now. */
  get active(): number {
    return this.#active;
  }

  /**
   * Takes a slot, or refuses (503) when {@linkcode AckWaitsOptions.maxWaits}
   * requests wait already or logic is stopping. Call the returned function
   * once the request is answered, however it ends.
   */
  reserve(): () => void {
    if (this.#closing.signal.aborted) {
      this.#metrics?.pushWaits.inc({ outcome: "refused" });
      throw new ApiError(ResultCode.Unavailable, "wait: logic is stopping; push again elsewhere");
    }
    if (this.#active >= this.#max) {
      this.#metrics?.pushWaits.inc({ outcome: "refused" });
      throw new ApiError(
        ResultCode.Unavailable,
        `wait: ${this.#max} pushes are waiting for acks already (the most one logic holds); ` +
          "retry later, or push without wait and read GET /goim/push/status?id= later",
      );
    }
    this.#active++;
    this.#metrics?.pushWaitsActive.set(this.#active);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      this.#metrics?.pushWaitsActive.set(this.#active);
    };
  }

  /**
   * Reads push `id`'s status until no target is pending, `ms` have passed,
   * `gone` aborts (the client left) or {@linkcode AckWaits.close}; answers
   * the last counts read. A push missing from the store (expired, or the
   * store lost it) is a 503, as is a store that fails.
   */
  async wait(id: string, ms: number, gone?: AbortSignal): Promise<AckSummary> {
    const deadline = performance.now() + ms;
    let pause = WAIT_POLL_FIRST_MS;
    let outcome: WaitOutcome = "error";
    try {
      for (;;) {
        const status = await this.#read(id);
        if (status.pending === 0) outcome = "done";
        else if (gone?.aborted) outcome = "gone";
        else if (this.#closing.signal.aborted) outcome = "shutdown";
        else if (performance.now() >= deadline) outcome = "timeout";
        else {
          await sleep(Math.min(pause, deadline - performance.now()), gone, this.#closing.signal);
          pause = Math.min(pause * 2, WAIT_POLL_MAX_MS);
          continue;
        }
        return summary(status);
      }
    } finally {
      this.#metrics?.pushWaits.inc({ outcome });
    }
  }

  /** Ends every wait now (they answer their counts so far) and refuses new ones. */
  close(): void {
    this.#closing.abort();
  }

  async #read(id: string): Promise<PushStatus> {
    const store = configured(this.#store, "wait: push status store");
    const status = await storeCall(
      `wait: push status store (GET /goim/push/status?id=${id} later)`,
      () => store.get(id),
    );
    if (status === null) {
      throw new ApiError(
        ResultCode.Unavailable,
        `wait: push ${id} is no longer in the push status store (expired or lost)`,
      );
    }
    return status;
  }
}

/** The counts of a status, as a waited push answers them. */
export function summary(status: PushStatus): AckSummary {
  return {
    id: status.id,
    targets: status.targets.length,
    acked: status.acked,
    pending: status.pending,
    offline: status.offline,
  };
}

/** Resolves after `ms`, or as soon as one of the signals aborts. */
function sleep(ms: number, ...signals: (AbortSignal | undefined)[]): Promise<void> {
  return new Promise((resolve) => {
    const live = signals.filter((s): s is AbortSignal => s !== undefined);
    const done = () => {
      clearTimeout(timer);
      for (const s of live) s.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    for (const s of live) s.addEventListener("abort", done, { once: true });
  });
}

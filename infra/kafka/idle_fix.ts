/**
 * A fix for kafkajs 2.2.4's idle timer loop (kafkajs issues #1556, #1704,
 * #1751; the upstream pull requests are unmerged and 2.2.4 is the latest
 * release).
 *
 * `RequestQueue.scheduleCheckPendingRequests` arms a timer of
 * `throttledUntil - Date.now()` ms even when nothing is pending and the
 * broker is not throttling; `throttledUntil` starts at -1, so the delay is
 * about minus the epoch, the runtime clamps it to 1 ms, the check runs and
 * re-arms it: a 1 ms timer loop per broker connection, for as long as the
 * connection lives (Deno prints "TimeoutNegativeWarning" once). Measured
 * here: an idle job's main thread at 0.064 core.
 *
 * The guard returns early in exactly that case — no pending request and no
 * throttle to wait out. Nothing is lost: a new request is sent at once when
 * the queue can take it, and otherwise lands in `pending`, which schedules
 * the check as before; a fulfilled request re-checks the queue itself.
 *
 * Imported for its effect by ./client.ts, before any client exists.
 *
 * @module
 */

import RequestQueue from "kafkajs/src/network/requestQueue/index.js";

interface Queue {
  pending: unknown[];
  throttledUntil: number;
  scheduleCheckPendingRequests(): void;
}

const proto = (RequestQueue as unknown as { prototype: Queue }).prototype;
const original = proto.scheduleCheckPendingRequests;

/** Whether the guard is installed (for tests). */
export const idleFixInstalled: boolean = typeof original === "function";

if (idleFixInstalled && !(original as { idleFix?: true }).idleFix) {
  const guarded = function (this: Queue): void {
    if (this.pending.length === 0 && !(this.throttledUntil > Date.now())) return;
    original.call(this);
  };
  (guarded as { idleFix?: true }).idleFix = true;
  proto.scheduleCheckPendingRequests = guarded;
}

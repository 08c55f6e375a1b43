/**
 * Job's view of one comet: its client, its lanes, what rooms it has, and
 * the retry loop around every call.
 *
 * Retries: a call failing with a transient status (see ./retry.ts) is
 * retried after a backoff, up to `job.retry.max_attempts` attempts, inside
 * its lane — the lane waits, so what follows for the same key stays behind
 * it. Once a call has exhausted its retries the comet is marked *down*:
 * further calls get a single attempt until one succeeds. Without that, a
 * dead comet would cost every queued message the full retry time, and a
 * 1024-deep lane would take minutes to give up.
 *
 * Key pushes and fan-out calls (BroadcastRoom, Broadcast) have lanes of
 * their own, `job.comet_lanes` each: a comet answers a fan-out call only
 * once its frames are written (comet/service.ts), and a key push must not
 * wait behind that.
 *
 * @module
 */

import { Sleeper } from "../infra/sleeper.ts";
import type { RoomSnapshot } from "./membership.ts";
import type { CometApi } from "../proto/api.ts";
import type { CometRecord } from "../infra/registry.ts";
import type { Logger } from "../infra/log.ts";
import { laneOf } from "./hash.ts";
import { Lane } from "./lane.ts";
import { backoffDelay, errorCode, isTransient, type RetryPolicy } from "./retry.ts";

/** A comet client as job holds it: the API plus an optional close. */
export type CometClient = CometApi & { close?(): void };

/** How one call to a comet ended. */
export type CallOutcome =
  | { ok: true }
  | {
    ok: false;
    reason: "retries_exhausted" | "rpc_error" | "comet_gone" | "stopping";
    error?: unknown;
  };

/** Counters a comet reports into. */
export interface CometHooks {
  /** A retry is about to happen. */
  onRetry(): void;
}

/** Options of {@linkcode CometConn}. */
export interface CometConnOptions {
  /** Lanes (config `job.comet_lanes`). */
  lanes: number;
  /** Items per lane (config `job.lane_queue`). */
  laneQueue: number;
  /** Retry policy (config `job.retry.*`). */
  retry: RetryPolicy;
  /** Logger with the comet's id bound. */
  log: Logger;
  /** Metric hooks. */
  hooks: CometHooks;
}

/** One comet: client, lanes, rooms, retries. */
export class CometConn {
  /** The comet's registry id (what PUSH messages name as `server`). */
  readonly id: string;
  /** The address the client was made for; a change means a new client. */
  readonly grpcAddr: string;
  /** The client. */
  readonly client: CometClient;
  /** Room membership (set by job when it adds the comet). */
  snapshot?: RoomSnapshot;

  readonly #lanes: Lane[];
  readonly #fanoutLanes: Lane[];
  readonly #options: CometConnOptions;
  #down = false;
  #closing?: string;
  readonly #sleeper = new Sleeper();

  /** Wraps `client` for the comet `rec`. */
  constructor(rec: CometRecord, client: CometClient, options: CometConnOptions) {
    this.id = rec.id;
    this.grpcAddr = rec.grpcAddr;
    this.client = client;
    this.#options = options;
    const lanes = () =>
      Array.from({ length: Math.max(1, options.lanes) }, () => new Lane(options.laneQueue));
    this.#lanes = lanes();
    this.#fanoutLanes = lanes();
  }

  /** Items queued in all lanes (waiting submissions included). */
  get depth(): number {
    let n = 0;
    for (const l of this.#lanes) n += l.depth;
    for (const l of this.#fanoutLanes) n += l.depth;
    return n;
  }

  /** Whether the last call gave up after its retries (single attempts until one succeeds). */
  get down(): boolean {
    return this.#down;
  }

  /**
   * Runs `call` in the lane of `laneKey` with retries; never rejects. The
   * lane slot is taken synchronously, so calls submitted in order run in
   * order. `fanout` picks the lanes of room and broadcast calls.
   */
  submit(
    laneKey: string,
    method: string,
    call: (c: CometClient) => Promise<unknown>,
    fanout = false,
  ): Promise<CallOutcome> {
    const group = fanout ? this.#fanoutLanes : this.#lanes;
    const lane = group[laneOf(laneKey, group.length)];
    return lane.submit(() => this.#attempt(method, call)).catch((e) => ({
      ok: false as const,
      reason: this.#closingReason(),
      error: e,
    }));
  }

  async #attempt(method: string, call: (c: CometClient) => Promise<unknown>): Promise<CallOutcome> {
    const max = this.#down ? 1 : Math.max(1, this.#options.retry.maxAttempts);
    for (let attempt = 1;; attempt++) {
      if (this.#closing) return { ok: false, reason: this.#closingReason() };
      try {
        await call(this.client);
        if (this.#down) this.#options.log.info("comet reachable again");
        this.#down = false;
        return { ok: true };
      } catch (e) {
        if (!isTransient(e)) {
          this.#options.log.warn("comet call failed", { method, code: errorCode(e), error: e });
          return { ok: false, reason: "rpc_error", error: e };
        }
        if (attempt >= max) {
          if (!this.#down) {
            this.#options.log.warn("comet unreachable; giving up on this call", {
              method,
              attempts: attempt,
              code: errorCode(e),
              error: e,
            });
          }
          this.#down = true;
          return { ok: false, reason: "retries_exhausted", error: e };
        }
        this.#options.hooks.onRetry();
        if (!(await this.#sleep(backoffDelay(this.#options.retry, attempt)))) {
          return { ok: false, reason: this.#closingReason() };
        }
      }
    }
  }

  #closingReason(): "stopping" | "comet_gone" {
    return this.#closing === "stopping" ? "stopping" : "comet_gone";
  }

  // Sleeps `ms`; false at once when closing meanwhile.
  #sleep(ms: number): Promise<boolean> {
    return this.#closing ? Promise.resolve(false) : this.#sleeper.sleep(ms);
  }

  /**
   * Stops: queued calls end as `comet_gone` (or `stopping`), a retry wait
   * ends at once, the call in flight finishes; then the client is closed.
   * `why` is `"gone"` when the comet left the registry, `"stopping"` when
   * job stops.
   */
  async close(why: "gone" | "stopping"): Promise<void> {
    if (this.#closing) return;
    this.#closing = why === "stopping" ? "stopping" : "gone";
    this.#sleeper.wakeAll();
    await Promise.all(
      [...this.#lanes, ...this.#fanoutLanes].map((l) => l.close(`comet ${this.id} ${why}`)),
    );
    try {
      this.client.close?.();
    } catch (e) {
      this.#options.log.debug("closing comet client failed", { error: e });
    }
  }
}

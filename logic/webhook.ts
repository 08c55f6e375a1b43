/**
 * Delivery of upstream client messages (op 4, the Receive RPC) to an HTTP
 * endpoint, `logic.webhook.url`. goim only logs them.
 *
 * Each message is one `POST` with a JSON body (`content-type:
 * application/json`):
 *
 * ```json
 * {"mid": 42, "op": 4, "seq": 7, "ver": 1, "body_base64": "aGVsbG8="}
 * ```
 *
 * `mid` is the sender, `op`/`seq`/`ver` the frame's header fields and
 * `body_base64` its body in standard base64 with padding.
 *
 * - Any 2xx answer is a delivery. A network error, a timeout
 *   (`logic.webhook.timeout`), 408, 429 or 5xx is retried up to
 *   `logic.webhook.retries` times, waiting {@linkcode BACKOFF_BASE_MS} ×
 *   2^attempt (at most {@linkcode BACKOFF_MAX_MS}) in between; then the
 *   message is dropped (`failed`). Another 4xx means the receiver refuses
 *   it: dropped at once (`rejected`).
 * - Messages wait in a bounded buffer of `logic.webhook.buffer`; when it is
 *   full the newest message is dropped (`buffer_full`), so a slow receiver
 *   costs bounded memory and never slows the comets.
 * - One delivery at a time, so the receiver sees messages in arrival order.
 * - {@linkcode Webhook.close} stops taking messages, lets the buffer drain
 *   for a moment, then aborts and drops the rest (`shutdown`).
 *
 * Every drop is counted in `goim_logic_webhook_dropped_total{reason}`.
 *
 * @module
 */

import { doublingDelay } from "../infra/backoff.ts";
import { Buffer } from "node:buffer";
import type { Logger } from "../infra/log.ts";
import type { LogicMetrics } from "./metrics.ts";

/** Delay before the first retry; doubles per retry. */
export const BACKOFF_BASE_MS = 100;

/** Longest delay between retries. */
export const BACKOFF_MAX_MS = 5000;

/** One upstream message. */
export interface UpstreamMessage {
  /** Sender's user id. */
  mid: number;
  /** Frame op (4 for SendMsg). */
  op: number;
  /** Frame seq. */
  seq: number;
  /** Frame ver. */
  ver: number;
  /** Frame body. */
  body: Uint8Array;
}

/** Why a message was dropped. */
export type WebhookDropReason = "buffer_full" | "failed" | "rejected" | "shutdown";

/** Options of {@linkcode Webhook}. */
export interface WebhookOptions {
  /** Receiver URL. */
  url: string;
  /** Timeout of one attempt, ms. */
  timeoutMs: number;
  /** Retries after the first attempt. */
  retries: number;
  /** Buffer capacity (messages). */
  buffer: number;
  /** Injected fetch (tests); default the global one. */
  fetch?: typeof fetch;
  /** Delay before the first retry (default {@linkcode BACKOFF_BASE_MS}). */
  backoffBaseMs?: number;
  /** Logger. */
  log?: Logger;
  /** Metrics. */
  metrics?: LogicMetrics;
}

class RetryableError extends Error {}

/**
 * The delivery queue.
 *
 * @example
 * ```ts
 * const hook = new Webhook({ url: "http://127.0.0.1:8080/up", timeoutMs: 2000, retries: 2, buffer: 1024 });
 * hook.enqueue({ mid: 1, op: 4, seq: 1, ver: 1, body: new TextEncoder().encode("hi") });
 * await hook.idle();
 * await hook.close(1000);
 * ```
 */
export class Webhook {
  #opts: WebhookOptions;
  #fetch: typeof fetch;
  #queue: UpstreamMessage[] = [];
  #head = 0;
  #running: Promise<void> | undefined;
  #closed = false;
  #abort = new AbortController();
  #idleWaiters: (() => void)[] = [];
  #sleepTimer: ReturnType<typeof setTimeout> | undefined;
  #wake: (() => void) | undefined;

  /** Creates an idle queue; nothing runs until a message arrives. */
  constructor(opts: WebhookOptions) {
    this.#opts = opts;
    this.#fetch = opts.fetch ?? fetch;
  }

  /** Messages waiting (not counting the one being delivered). */
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * Queues a message; returns false (and counts a drop) when the buffer is
   * full or the webhook is closed.
   */
  enqueue(msg: UpstreamMessage): boolean {
    if (this.#closed) {
      this.#drop("shutdown");
      return false;
    }
    if (this.queued >= this.#opts.buffer) {
      this.#drop("buffer_full");
      return false;
    }
    this.#queue.push(msg);
    this.#opts.metrics?.webhookQueued.set(this.queued);
    this.#running ??= this.#run();
    return true;
  }

  /** Resolves once every queued message is delivered or dropped. */
  idle(): Promise<void> {
    if (this.#running === undefined) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Stops taking messages, waits up to `drainMs` for the buffer to drain,
   * then aborts the delivery in flight and drops what is left. Idempotent.
   */
  async close(drainMs: number): Promise<void> {
    this.#closed = true;
    if (this.#running) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<void>((r) => timer = setTimeout(r, drainMs));
      await Promise.race([this.idle(), deadline]);
      clearTimeout(timer);
      this.#abort.abort();
      this.#wake?.();
      await this.#running;
    }
  }

  async #run(): Promise<void> {
    try {
      while (this.queued > 0 && !this.#abort.signal.aborted) {
        const msg = this.#queue[this.#head];
        this.#queue[this.#head++] = undefined as unknown as UpstreamMessage;
        // Compact now and then instead of shift()ing (O(n) per message).
        if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
          this.#queue = this.#queue.slice(this.#head);
          this.#head = 0;
        }
        this.#opts.metrics?.webhookQueued.set(this.queued);
        await this.#deliver(msg);
      }
      // Aborted by close(): what is still queued is lost.
      while (this.queued > 0) {
        this.#head++;
        this.#drop("shutdown");
      }
    } finally {
      this.#queue = [];
      this.#head = 0;
      this.#opts.metrics?.webhookQueued.set(0);
      this.#running = undefined;
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  async #deliver(msg: UpstreamMessage): Promise<void> {
    const body = JSON.stringify({
      mid: msg.mid,
      op: msg.op,
      seq: msg.seq,
      ver: msg.ver,
      body_base64: Buffer.from(msg.body.buffer, msg.body.byteOffset, msg.body.byteLength)
        .toString("base64"),
    });
    const base = this.#opts.backoffBaseMs ?? BACKOFF_BASE_MS;
    for (let attempt = 0;; attempt++) {
      if (this.#abort.signal.aborted) return this.#drop("shutdown");
      try {
        await this.#post(body);
        this.#opts.metrics?.webhookDelivered.inc();
        return;
      } catch (e) {
        if (this.#abort.signal.aborted) return this.#drop("shutdown");
        if (!(e instanceof RetryableError)) {
          this.#opts.log?.warn("webhook refused an upstream message; dropped", {
            mid: msg.mid,
            error: (e as Error).message,
          });
          return this.#drop("rejected");
        }
        if (attempt >= this.#opts.retries) {
          this.#opts.log?.warn("webhook delivery failed; upstream message dropped", {
            mid: msg.mid,
            attempts: attempt + 1,
            error: e.message,
          });
          return this.#drop("failed");
        }
        this.#opts.metrics?.webhookRetries.inc();
        await this.#sleep(doublingDelay(base, BACKOFF_MAX_MS, attempt + 1));
      }
    }
  }

  async #post(body: string): Promise<void> {
    const ctl = new AbortController();
    const onClose = () => ctl.abort();
    this.#abort.signal.addEventListener("abort", onClose, { once: true });
    const timer = setTimeout(() => ctl.abort(), this.#opts.timeoutMs);
    try {
      let res: Response;
      try {
        res = await this.#fetch(this.#opts.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
          signal: ctl.signal,
        });
      } catch (e) {
        throw new RetryableError(
          ctl.signal.aborted && !this.#abort.signal.aborted
            ? `timed out after ${this.#opts.timeoutMs} ms`
            : (e as Error).message,
        );
      }
      // The body is of no use, but unread it would hold the connection.
      await res.body?.cancel().catch(() => {});
      if (res.ok) return;
      const s = res.status;
      if (s === 408 || s === 429 || s >= 500) throw new RetryableError(`HTTP ${s}`);
      throw new Error(`HTTP ${s}`);
    } finally {
      clearTimeout(timer);
      this.#abort.signal.removeEventListener("abort", onClose);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = () => {
        clearTimeout(this.#sleepTimer);
        this.#wake = undefined;
        resolve();
      };
      this.#sleepTimer = setTimeout(() => this.#wake?.(), ms);
    });
  }

  #drop(reason: WebhookDropReason): void {
    this.#opts.metrics?.webhookDropped.inc({ reason });
  }
}

/**
 * Keeps one instance registered in discovery, the way the Go client goim
 * uses does (`naming.Discovery.Register`): register, renew every
 * {@linkcode RENEW_INTERVAL_MS} (goim's `_registerGap`, 30 s), register
 * again when a renew answers -404 (the server forgot it: evicted, or
 * restarted), cancel at the end. Metadata changes go out with `set`, as
 * goim's comet sends its connection counts.
 *
 * Unlike the Go client, a failed registration is retried with a doubling
 * delay ({@linkcode RETRY_BASE_MS} to {@linkcode RETRY_MAX_MS}) instead of
 * panicking the process, and a keeper may be given an expiry: when nobody
 * refreshed it by then it cancels the instance, so a registry record
 * outlives its last refresh by its TTL, as with the other registry
 * engines. A process that dies cannot cancel: discovery itself evicts an
 * instance not renewed for 90 s (`_evictThreshold`, checked once a
 * minute, so 90–150 s; longer while the server's self-preservation holds,
 * up to an hour).
 *
 * All calls of one keeper run one at a time, in order, so a cancel never
 * overtakes the register before it.
 *
 * @module
 */

import { doublingDelay } from "../backoff.ts";
import { errorMessage, type Logger } from "../log.ts";
import { type DiscoveryClient, DiscoveryError, ECODE, type InstanceInit } from "./client.ts";

/** Renewal period (goim/discovery `_registerGap`), ms. */
export const RENEW_INTERVAL_MS = 30_000;
/** First retry delay after a failed register or renew, ms (the Go client's poll retry gap). */
export const RETRY_BASE_MS = 1_000;
/** Longest retry delay, ms. */
export const RETRY_MAX_MS = 30_000;

/** Options of {@linkcode InstanceKeeper}. */
export interface KeeperOptions {
  /** Renewal period, ms ({@linkcode RENEW_INTERVAL_MS}; tests shorten it). */
  renewIntervalMs?: number;
  /** First retry delay, ms ({@linkcode RETRY_BASE_MS}). */
  retryBaseMs?: number;
  /** Longest retry delay, ms ({@linkcode RETRY_MAX_MS}). */
  retryMaxMs?: number;
  /**
   * Retry a failed registration in the background (default true). A caller
   * that calls {@linkcode InstanceKeeper.update} on its own period (a comet)
   * passes false and sees each failure itself.
   */
  retryUnregistered?: boolean;
  /** Where background failures and recoveries are logged. */
  log?: Logger;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function metadataKey(md: Readonly<Record<string, string>> | undefined): string {
  return JSON.stringify(Object.entries(md ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/**
 * One registered instance and its renew loop.
 *
 * @example
 * ```ts
 * import { DiscoveryClient } from "./client.ts";
 * import { InstanceKeeper } from "./keeper.ts";
 * import { createLogger } from "../log.ts";
 * const client = new DiscoveryClient({ nodes: ["127.0.0.1:7171"], env: "dev" });
 * const log = createLogger();
 * const keeper = new InstanceKeeper(client, { appid: "goim.logic", hostname: "logic-1",
 *   addrs: ["grpc://10.0.0.2:3119"], metadata: { weight: "10" } }, { log });
 * keeper.start(); // registers in the background, renews every 30 s
 * await keeper.cancel(); // at shutdown
 * ```
 */
export class InstanceKeeper {
  readonly #client: DiscoveryClient;
  readonly #renewMs: number;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #retry: boolean;
  readonly #log?: Logger;
  #ins: InstanceInit;
  /** What the server has, as far as we know: null = not registered. */
  #sent: { addrs: readonly string[]; version: string; metadata: string } | null = null;
  #chain: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #expiry: ReturnType<typeof setTimeout> | undefined;
  #failures = 0;
  #stopped = false;
  /** Whether a register was ever sent (it may have arrived even if the answer did not). */
  #attempted = false;

  /** Nothing is sent until {@linkcode InstanceKeeper.start} or {@linkcode InstanceKeeper.update}. */
  constructor(client: DiscoveryClient, ins: InstanceInit, opts: KeeperOptions = {}) {
    this.#client = client;
    this.#ins = ins;
    this.#renewMs = opts.renewIntervalMs ?? RENEW_INTERVAL_MS;
    this.#retryBaseMs = opts.retryBaseMs ?? RETRY_BASE_MS;
    this.#retryMaxMs = opts.retryMaxMs ?? RETRY_MAX_MS;
    this.#retry = opts.retryUnregistered ?? true;
    this.#log = opts.log?.child({ appid: ins.appid, hostname: ins.hostname });
  }

  /** Whether the last call that could tell left the instance registered. */
  get registered(): boolean {
    return this.#sent !== null;
  }

  /** Registers in the background (retrying with backoff); resolves after the first attempt. */
  start(): Promise<void> {
    return this.#run(() => this.#tick()).catch(() => {});
  }

  /**
   * Brings the server up to `ins`: registers when it is not registered or
   * its addresses or version changed, sends `set` when only metadata
   * changed, and does nothing otherwise. Rejects with the failure (the
   * keeper stays usable; the next call tries again).
   */
  update(ins: InstanceInit): Promise<void> {
    return this.#run(async () => {
      if (this.#stopped) throw new DiscoveryError("discovery: instance keeper stopped");
      this.#ins = ins;
      const sent = this.#sent;
      if (sent && sameList(sent.addrs, ins.addrs) && sent.version === (ins.version ?? "")) {
        const md = metadataKey(ins.metadata);
        if (md === sent.metadata) return;
        try {
          await this.#client.set(ins.appid, ins.hostname, ins.metadata ?? {});
          sent.metadata = md;
          return;
        } catch (e) {
          // set answers -400 for an instance the server does not know: register it again.
          if (!(e instanceof DiscoveryError) || e.code === undefined) throw e;
        }
      }
      await this.#register();
    });
  }

  /**
   * Cancels the instance after `ms` unless this is called again first;
   * undefined removes the expiry.
   */
  expireIn(ms: number | undefined): void {
    clearTimeout(this.#expiry);
    this.#expiry = undefined;
    if (ms === undefined || this.#stopped) return;
    this.#expiry = setTimeout(() => {
      this.#expiry = undefined;
      void this.#run(async () => {
        if (this.#stopped || this.#sent === null) return;
        clearTimeout(this.#timer);
        this.#sent = null;
        this.#log?.warn("not refreshed within its ttl; cancelling the discovery instance");
        await this.#cancel();
      }).catch((e) =>
        // Unrenewed, discovery evicts it by itself (90-150 s).
        this.#log?.warn("discovery cancel failed", {
          error: errorMessage(e),
        })
      );
    }, ms);
  }

  /** Stops renewing and cancels the instance (a -404 answer is fine); idempotent. */
  cancel(): Promise<void> {
    this.#halt();
    return this.#run(async () => {
      if (!this.#attempted) return;
      this.#sent = null;
      await this.#cancel();
    });
  }

  /** Stops renewing without cancelling (discovery evicts the instance by itself). */
  stop(): void {
    this.#halt();
  }

  #halt(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#expiry);
    this.#timer = this.#expiry = undefined;
  }

  async #cancel(): Promise<void> {
    try {
      await this.#client.cancel(this.#ins.appid, this.#ins.hostname);
    } catch (e) {
      if (e instanceof DiscoveryError && e.code === ECODE.NOTHING_FOUND) return;
      throw e;
    }
  }

  #run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn);
    this.#chain = p.then(() => {}, () => {});
    return p;
  }

  async #register(): Promise<void> {
    const ins = this.#ins;
    this.#attempted = true;
    await this.#client.register(ins);
    this.#sent = {
      addrs: [...ins.addrs],
      version: ins.version ?? "",
      metadata: metadataKey(ins.metadata),
    };
    if (this.#failures > 0) {
      this.#log?.info("discovery registration restored", { after_failures: this.#failures });
    }
    this.#failures = 0;
    this.#schedule(this.#renewMs);
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#run(() => this.#tick()).catch(() => {});
    }, ms);
  }

  // A renew (or a registration while unregistered); failures are logged and retried with backoff.
  async #tick(): Promise<void> {
    if (this.#stopped) return;
    if (this.#sent !== null) {
      try {
        await this.#client.renew(this.#ins.appid, this.#ins.hostname);
        this.#failures = 0;
        this.#schedule(this.#renewMs);
        return;
      } catch (e) {
        if (!(e instanceof DiscoveryError && e.code === ECODE.NOTHING_FOUND)) {
          return this.#failed("renew", e, true);
        }
        this.#sent = null;
        this.#log?.info("discovery forgot the instance (renew answered -404); registering again");
      }
    }
    try {
      await this.#register();
    } catch (e) {
      this.#failed("register", e, this.#retry);
    }
  }

  #failed(what: string, e: unknown, retry: boolean): void {
    this.#failures++;
    const delay = doublingDelay(this.#retryBaseMs, this.#retryMaxMs, this.#failures);
    this.#log?.warn(`discovery ${what} failed`, {
      error: errorMessage(e),
      attempt: this.#failures,
      retry_in_ms: retry ? delay : undefined,
    });
    if (retry) this.#schedule(delay);
  }
}

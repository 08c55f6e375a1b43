/**
 * The one place that knows the Redis client (npm:ioredis): connection
 * options that keep every call bounded, error wrapping, Lua scripts.
 *
 * Policy while Redis is unreachable: commands reject at once (the offline
 * queue is disabled, so nothing piles up in memory), commands already sent
 * reject when the connection drops (no silent resend), a command that gets
 * no reply rejects after `commandTimeoutMs` (a deadline per operation, not
 * ioredis' timer per command: Connect's MULTI of 3 commands armed 5 timers,
 * 8 % of what logic allocates per Connect; and one timer per connection
 * for every operation in flight, as arming and clearing a `setTimeout`
 * costs ≈ 4 µs under Deno, a third of a pipelined GET's client-side time),
 * and the client keeps reconnecting in the background (backoff 50 ms
 * doubling to 1 s) so the engines work again as soon as Redis is back,
 * with no action from callers.
 *
 * Redis Cluster (`clusterNodes`, config `redis.cluster.nodes`): one ioredis
 * `Cluster` client instead, with the same policy. It follows MOVED and ASK
 * redirections by itself (a slot being migrated costs a redirect, not an
 * error; at most 16 per command), retries a command whose node just closed
 * or answered CLUSTERDOWN/TRYAGAIN every 100 ms within those 16, and
 * refreshes the slot map every 5 s and after each MOVED. Where one Redis
 * takes one multi-key command, the engines send one command per key
 * ({@linkcode RedisConnection.cluster}), each redirected on its own. Not
 * auto-pipelined: ioredis retries a redirected pipeline only whole, at the
 * node that redirected one of its commands, and only when nothing in it was
 * a write that succeeded; otherwise the redirected commands fail with the
 * bare MOVED or ASK. With auto-pipelining on, the slot migration of
 * tests/redis_cluster_test.ts fails that way (`serversByKeys: MOVED 11893
 * 127.0.0.1:…`). A key whose master is down fails after those retries, within
 * the command timeout, with an error naming the cluster; keys on the other
 * masters keep working (with `cluster-require-full-coverage no`; by default
 * Redis refuses every key once a master is marked failed).
 *
 * Order (a single Redis). Redis runs one connection's commands in the order
 * it reads them, and ioredis 6.0.0 writes the commands of
 * {@linkcode RedisConnection.call} and {@linkcode RedisConnection.eval} in
 * the order they were issued: each goes into the client's one
 * auto-pipeline (`autoPipelining.js`: key `"main"` on a single node),
 * written as one buffer on the next `setImmediate`, and while one is
 * waiting for its replies the next only collects commands ("ioredis won't
 * serve two pipelines at the same time"). So work two engines issue on one
 * connection, one call after the other in the same tick, runs in that
 * order: the connection is the engines' `orderedVia` (infra/streams.ts,
 * infra/sessions.ts), and job sends a mid push's append and its lookup
 * together (job/streams.ts). What could break that order, and why it does
 * not:
 *
 * - the NOSCRIPT fallback re-sends a script as EVAL once the EVALSHA's
 *   answer came, after anything issued meanwhile: {@linkcode
 *   RedisConnection.evalOrdered} reports it (`reissued`) for the caller to
 *   redo what it sent after;
 * - `multi`, `pipeline` and the commands ioredis never auto-pipelines
 *   (INFO, SCRIPT, SELECT, CLIENT, QUIT…) are written at once, so they can
 *   pass commands still waiting in the auto-pipeline: the ordered pairs
 *   never use them;
 * - while the connection is down nothing is queued (`enableOfflineQueue:
 *   false`: `sendCommand` rejects at once), and a pipeline's commands are
 *   sent in one synchronous loop, so they are all written or all rejected;
 * - a dropped connection fails what is in flight and never sends it again:
 *   with `maxRetriesPerRequest: 0` ioredis' close handler flushes the
 *   command queue on every reconnect attempt (`retryAttempts % 1 === 0`),
 *   which empties the queue `autoResendUnfulfilledCommands` would resend;
 * - a command that times out (`commandTimeoutMs`) may still run, in its
 *   place in the order; the caller sees a failure and sends it again later.
 *
 * @module
 */

import type { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { type ChainableCommander, Cluster, Redis, type RedisCommander } from "ioredis";
import { splitHostPort } from "../addr.ts";

/** Default bound on one command's round trip, and on connecting. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 2000;

/** Connection options shared by the Redis engines. */
export interface RedisConnectionOptions {
  /**
   * `redis://[user:password@]host:port[/db]` or `rediss://…` for TLS. With
   * `clusterNodes` only its user, password and scheme count (every node
   * gets them), and its db must be 0, the only one a cluster has.
   */
  url: string;
  /**
   * Redis Cluster seed nodes, `host:port` (config `redis.cluster.nodes`):
   * any reachable one tells the client the rest. Absent or empty: the
   * single Redis of `url`.
   */
  clusterNodes?: readonly string[];
  /** Prepended to every key (config `redis.key_prefix`); "" keeps goim's key names. */
  keyPrefix?: string;
  /** A command with no reply by then rejects (default 2000 ms); also bounds connecting. */
  commandTimeoutMs?: number;
  /** Told when the connection goes down or comes back (e.g. to log it); never throws. */
  onStateChange?: (state: "up" | "down", error?: Error) => void;
}

/**
 * Thrown by the Redis engines: Redis unreachable, a command timed out, or
 * Redis answered with an error. The message names the operation and the
 * server (never the password); `cause` holds the client's error.
 */
export class RedisEngineError extends Error {
  /** Creates the error; `message` names the operation and `host:port`. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RedisEngineError";
  }
}

/** A Lua script run by EVALSHA, falling back to EVAL when Redis lost its script cache. */
export class LuaScript {
  /** The script's SHA1, as EVALSHA wants it. */
  readonly sha: string;
  /** Hashes `source` once, for EVALSHA. */
  constructor(
    /** Lua source; keys come in KEYS, everything else in ARGV. */
    readonly source: string,
  ) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }
}

/**
 * ioredis' Buffer-reply variants of EVALSHA and EVAL: defined for every
 * command at runtime, missing from its types. (Not `callBuffer`: with
 * auto-pipelining ioredis 6.0.0 drops its command name.)
 */
type BufferScripts = RedisCommander & {
  evalshaBuffer: RedisCommander["evalsha"];
  evalBuffer: RedisCommander["eval"];
};

// EVALSHA with the hash or EVAL with the source: the same arguments after it.
function runScript(
  c: RedisCommander,
  send: RedisCommander["evalsha"],
  script: string,
  keys: readonly string[],
  args: readonly (string | number | Buffer)[],
): Promise<unknown> {
  return send.call(c, script, keys.length, ...keys, ...args);
}

type ExecResult = [error: Error | null, result: unknown][] | null;

/** An operation awaiting its reply ({@linkcode RedisConnection}'s `#bounded`). */
interface InFlight {
  /** `performance.now()` past which it rejects. */
  deadline: number;
  reject: (err: Error) => void;
}

/** What the engines send commands through: one Redis or a cluster (the same commands). */
export type RedisClient = RedisCommander;

/** The reconnect delay after `times` failed attempts: 50 ms doubling, at most 1 s. */
function reconnectDelay(times: number): number {
  return Math.min(50 * 2 ** Math.min(times - 1, 5), 1000);
}

/** Where a connection goes, for messages (never the password), and the client to get there. */
function openClient(opts: RedisConnectionOptions, timeout: number): [Redis | Cluster, string] {
  let u: URL;
  try {
    u = new URL(opts.url);
    if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new Error("not redis://");
  } catch (err) {
    throw new RedisEngineError(
      `redis: invalid url (want redis://host:port or rediss://…): ${(err as Error).message}`,
    );
  }
  // Shared by a single Redis and every node of a cluster.
  const common = {
    // Reject while disconnected instead of buffering without bound.
    enableOfflineQueue: false,
    // A dropped connection fails its in-flight commands instead of resending them later.
    maxRetriesPerRequest: 0,
    // No commandTimeout: #bounded gives each operation one deadline instead of a timer per command.
    connectTimeout: timeout,
    // disconnect() arms a timer that only a later "close" clears; a socket that never
    // connected has already closed, so keep that orphan timer short.
    disconnectTimeout: Math.min(timeout, 500),
  };
  const seeds = opts.clusterNodes ?? [];
  if (seeds.length === 0) {
    const client = new Redis(opts.url, {
      ...common,
      lazyConnect: true,
      retryStrategy: reconnectDelay,
      // Commands issued in one turn of the event loop (those of concurrent
      // pushes) share one socket write: a write costs ≈0.1 ms under Deno's
      // node:net, so per-command writes were a tenth of logic's CPU at
      // 1,000 pushes/s. Off on a cluster (a slot migration then fails
      // commands with MOVED instead of redirecting them).
      enableAutoPipelining: true,
    });
    return [client, `${u.hostname}:${u.port || "6379"}`];
  }
  const db = u.pathname.replace(/^\//, "");
  if (db !== "" && db !== "0") {
    throw new RedisEngineError(`redis: a cluster has only db 0; the url names db ${db}`);
  }
  const nodes = seeds.map((seed) => {
    try {
      return splitHostPort(seed);
    } catch (err) {
      throw new RedisEngineError(
        `redis: invalid cluster node ${JSON.stringify(seed)} (want host:port): ${
          (err as Error).message
        }`,
      );
    }
  });
  const { enableOfflineQueue, ...perNode } = common;
  const client = new Cluster(nodes.map(({ hostname, port }) => ({ host: hostname, port })), {
    lazyConnect: true,
    enableOfflineQueue,
    // ioredis' defaults, written out because the docs promise them: 16 redirections,
    // failover/CLUSTERDOWN/TRYAGAIN retried every 100 ms, slots refreshed every 5 s.
    maxRedirections: 16,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    slotsRefreshInterval: 5000,
    slotsRefreshTimeout: timeout,
    clusterRetryStrategy: reconnectDelay,
    // See the module doc: redirections inside a pipeline fail commands during a migration.
    enableAutoPipelining: false,
    redisOptions: {
      ...perNode,
      username: decodeURIComponent(u.username) || undefined,
      password: decodeURIComponent(u.password) || undefined,
      tls: u.protocol === "rediss:" ? {} : undefined,
    },
  });
  return [client, `cluster ${seeds.join(",")}`];
}

/**
 * One ioredis connection with the engines' policy applied. Engines use
 * {@linkcode RedisConnection.call}, {@linkcode RedisConnection.multi} and
 * {@linkcode RedisConnection.eval}; every failure becomes a
 * {@linkcode RedisEngineError}.
 *
 * @example
 * ```ts
 * const conn = await RedisConnection.connect({ url: "redis://127.0.0.1:6379" });
 * await conn.call("ping", (r) => r.ping());
 * await conn.close();
 * ```
 */
export class RedisConnection {
  /** Key prefix from the options. */
  readonly keyPrefix: string;
  /** `host:port` for messages (no credentials); `cluster host:port,…` for a cluster. */
  readonly target: string;
  /**
   * Whether this is a Redis Cluster: every multi-key command, transaction
   * and script must then keep its keys in one hash slot (ioredis refuses a
   * pipeline or transaction spanning slots, Redis a command or script), so
   * the engines send such work per key instead.
   */
  readonly cluster: boolean;
  #client: Redis | Cluster;
  #closed = false;
  #lastError: Error | undefined;
  #up = false;
  #wasUp = false;
  #timeoutMs: number;
  /**
   * Operations awaiting their reply, oldest first (a Set keeps insertion
   * order): they share `#timeoutMs`, so their deadlines only grow, and one
   * timer, armed for the oldest deadline while any is in flight, serves all.
   */
  #inFlight = new Set<InFlight>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  private constructor(client: Redis | Cluster, target: string, opts: RedisConnectionOptions) {
    this.#client = client;
    this.cluster = client instanceof Cluster;
    this.#timeoutMs = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.target = target;
    this.keyPrefix = opts.keyPrefix ?? "";
    const notify = (state: "up" | "down", err?: Error) => {
      try {
        opts.onStateChange?.(state, err);
      } catch { /* a logging hook must not break the connection */ }
    };
    // ioredis emits "error" on every failed reconnect attempt; report only transitions.
    client.on("error", (err: Error) => {
      this.#lastError = err;
      if (this.#up) {
        this.#up = false;
        notify("down", err);
      }
    });
    client.on("close", () => {
      if (this.#up && !this.#closed) {
        this.#up = false;
        notify("down", this.#lastError);
      }
    });
    client.on("ready", () => {
      if (!this.#up) {
        this.#up = true;
        // The first "ready" is the initial connect, which connect() itself reports.
        if (this.#wasUp) notify("up");
      }
      this.#wasUp = true;
    });
  }

  /**
   * Connects and waits until Redis answers, or rejects with a
   * {@linkcode RedisEngineError} (after at most about `commandTimeoutMs`)
   * and leaves nothing running.
   */
  static async connect(opts: RedisConnectionOptions): Promise<RedisConnection> {
    const timeout = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const [client, target] = openClient(opts, timeout);
    const conn = new RedisConnection(client, target, opts);
    try {
      // connectTimeout ends at the TCP connect; this also bounds the ready check (INFO).
      await conn.#bounded(client.connect());
    } catch (err) {
      client.disconnect();
      const why = conn.#lastError?.message ?? (err as Error).message;
      throw new RedisEngineError(`redis ${target}: cannot connect: ${why}`, { cause: err });
    }
    return conn;
  }

  /** Whether the connection is up right now (it reconnects by itself when not). */
  get ready(): boolean {
    return !this.#closed && this.#client.status === "ready";
  }

  /** Runs one or more commands built by `f`, wrapping any failure. */
  async call<T>(op: string, f: (client: RedisClient) => Promise<T>): Promise<T> {
    this.#checkOpen(op);
    try {
      return await this.#bounded(f(this.#client));
    } catch (err) {
      throw this.#wrap(op, err);
    }
  }

  /**
   * Runs the commands queued by `build` as one MULTI/EXEC transaction
   * (atomic: no other client sees half of it) and returns their replies;
   * rejects if any of them failed.
   */
  multi(op: string, build: (tx: ChainableCommander) => void): Promise<unknown[]> {
    return this.#exec(op, () => {
      const tx = this.#client.multi();
      build(tx);
      return tx.exec();
    });
  }

  /**
   * Sends the commands queued by `build` in one round trip, not atomically
   * (reads), and returns their replies; rejects if any of them failed.
   */
  pipeline(op: string, build: (p: ChainableCommander) => void): Promise<unknown[]> {
    return this.#exec(op, () => {
      const p = this.#client.pipeline();
      build(p);
      return p.exec();
    });
  }

  /**
   * Runs a Lua script atomically (EVALSHA, then EVAL once if Redis forgot
   * it). With `buffers`, bulk replies come back as Buffers (binary-safe).
   */
  async eval(
    op: string,
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number | Buffer)[],
    buffers = false,
  ): Promise<unknown> {
    return (await this.evalOrdered(op, script, keys, args, buffers)).reply;
  }

  /**
   * {@linkcode RedisConnection.eval}, also saying whether the script was
   * sent again as EVAL (`reissued`): it then ran after everything issued on
   * this connection between the call and the EVALSHA's NOSCRIPT answer
   * (the module doc, "Order"). The EVALSHA is issued before this returns
   * its promise.
   */
  evalOrdered(
    op: string,
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number | Buffer)[],
    buffers = false,
  ): Promise<{ reply: unknown; reissued: boolean }> {
    return this.call(op, async (c) => {
      const b = c as BufferScripts;
      try {
        const send = buffers ? b.evalshaBuffer : c.evalsha;
        return { reply: await runScript(c, send, script.sha, keys, args), reissued: false };
      } catch (err) {
        // A restarted or SCRIPT FLUSHed Redis has an empty script cache.
        if (!String((err as Error)?.message).startsWith("NOSCRIPT")) throw err;
        const send = buffers ? b.evalBuffer : c.eval;
        return { reply: await runScript(c, send, script.source, keys, args), reissued: true };
      }
    });
  }

  /**
   * Closes the connection: QUIT when connected (bounded by the command
   * timeout), otherwise drops the socket and stops reconnecting. Idempotent;
   * later calls reject.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#up = false;
    if (this.#client.status === "ready") {
      try {
        await this.#bounded(this.#client.quit());
        return;
      } catch { /* fall through to a hard disconnect */ }
    }
    this.#client.disconnect();
  }

  async #exec(op: string, run: () => Promise<ExecResult>): Promise<unknown[]> {
    this.#checkOpen(op);
    let res: ExecResult;
    try {
      res = await this.#bounded(run());
    } catch (err) {
      throw this.#wrap(op, err);
    }
    if (res === null) {
      throw new RedisEngineError(`redis ${this.target}: ${op}: transaction aborted`);
    }
    // ioredis reports per-command failures (including "not connected") inside the result.
    const failed = res.find(([e]) => e !== null);
    if (failed) throw this.#wrap(op, failed[0]);
    return res.map(([, v]) => v);
  }

  /**
   * `p`, or a rejection with ioredis' own "Command timed out" after the
   * command timeout. A command that never gets its reply stays in ioredis'
   * queue until the connection drops, as it did with ioredis' timeout.
   */
  #bounded<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const op: InFlight = { deadline: performance.now() + this.#timeoutMs, reject };
      this.#inFlight.add(op);
      this.#timer ??= setTimeout(this.#expire, this.#timeoutMs);
      p.then((v) => {
        this.#settled(op);
        resolve(v);
      }, (err) => {
        this.#settled(op);
        reject(err);
      });
    });
  }

  /** Forgets a settled operation; the timer goes with the last one in flight. */
  #settled(op: InFlight): void {
    this.#inFlight.delete(op);
    if (this.#inFlight.size === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  /** The timer: rejects the operations past their deadline, re-arms for the next one. */
  #expire = (): void => {
    this.#timer = undefined;
    const now = performance.now();
    for (const op of this.#inFlight) {
      if (op.deadline > now) {
        this.#timer = setTimeout(this.#expire, op.deadline - now);
        return;
      }
      this.#inFlight.delete(op);
      op.reject(new Error("Command timed out"));
    }
  };

  #checkOpen(op: string): void {
    if (this.#closed) throw new RedisEngineError(`redis ${this.target}: ${op}: engine is closed`);
  }

  #wrap(op: string, err: unknown): RedisEngineError {
    if (err instanceof RedisEngineError) return err;
    const e = err as Error;
    const msg = String(e?.message ?? err);
    let why: string;
    if (this.cluster && /Too many Cluster redirections|Connection is closed/.test(msg)) {
      // One master down: its slots fail, the others' keep working.
      why = `the cluster node serving this key is unreachable or the cluster is down (${msg})`;
    } else if (
      this.#client.status !== "ready" || /Stream isn't writeable|Connection is closed/.test(msg)
    ) {
      const last = this.#lastError ? ` (last error: ${this.#lastError.message})` : "";
      why = `Redis unreachable, reconnecting in the background${last}`;
    } else if (msg === "Command timed out") {
      why = `no reply within the command timeout`;
    } else {
      why = msg;
    }
    return new RedisEngineError(`redis ${this.target}: ${op}: ${why}`, { cause: err });
  }
}

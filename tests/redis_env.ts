/**
 * Where the Redis tests find Redis, and what they do when it is missing.
 *
 * `GOIM_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) is probed once
 * with a PING. Unreachable and `CI=true`: Redis tests still run and fail
 * with a message saying how to start Redis. Unreachable otherwise: they are
 * registered with `ignore: true` and a note is printed, so `deno task test`
 * passes on a machine without Redis.
 *
 * Every Redis test works under its own random key prefix and deletes its
 * keys afterwards, so test files running in parallel on one Redis never
 * see each other's data.
 *
 * @example
 * ```ts
 * const redis = await redisTestUrl();
 * Deno.test({ name: "redis: x", ignore: redis.ignore, fn: async () => {
 *   redis.assertReachable();
 *   const prefix = uniqueKeyPrefix();
 *   try {
 *     // … the test, under prefix
 *   } finally {
 *     await deleteKeys(redis.url, prefix);
 *   }
 * }});
 * ```
 *
 * @module
 */

import { Redis } from "ioredis";
import { freePort } from "./fixtures/ports.ts";
import { type ServiceTarget, serviceTarget } from "./service_env.ts";

/** Env var naming the Redis the tests use. */
export const REDIS_URL_ENV = "GOIM_TEST_REDIS_URL";
/** Used when {@linkcode REDIS_URL_ENV} is unset. */
export const DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379";

/** The outcome of probing the test Redis. */
export interface RedisTestTarget extends ServiceTarget {
  /** The URL probed (and to use). */
  url: string;
}

let probed: Promise<RedisTestTarget> | undefined;

/**
 * Probes the test Redis once per process (PING, 1 s bound) and tells how to
 * register Redis tests.
 */
export function redisTestUrl(): Promise<RedisTestTarget> {
  return probed ??= probe();
}

async function probe(): Promise<RedisTestTarget> {
  const url = Deno.env.get(REDIS_URL_ENV) || DEFAULT_TEST_REDIS_URL;
  const error = await ping(url, 1000);
  return {
    url,
    ...serviceTarget({ name: "Redis", where: url, service: "redis", envVar: REDIS_URL_ENV, error }),
  };
}

/** PINGs `url` within `timeoutMs`; resolves to undefined on PONG, else to the reason. */
export function ping(url: string, timeoutMs: number): Promise<string | undefined> {
  return onConnection(url, timeoutMs, (c) => c.ping()).then(
    (pong) => pong === "PONG" ? undefined : `PING answered ${pong}`,
    (err) => (err as Error).message,
  );
}

/**
 * Runs `f` on a throwaway connection to `url` that never retries or queues
 * and bounds connecting and each command by `timeoutMs`; a failure to
 * connect rejects with the client's last error. Closed when `f` settles.
 */
export async function onConnection<T>(
  url: string,
  timeoutMs: number,
  f: (c: Redis) => Promise<T>,
): Promise<T> {
  const c = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    // Keeps the orphan timer disconnect() leaves behind a refused socket short.
    disconnectTimeout: 100,
  });
  let last: string | undefined;
  c.on("error", (e: Error) => last = e.message);
  try {
    try {
      await c.connect();
    } catch (err) {
      throw new Error(last ?? (err as Error).message, { cause: err });
    }
    return await f(c);
  } finally {
    c.disconnect();
  }
}

/** A fresh random key prefix, e.g. `goimtest:3f9a1c2b:`. */
export function uniqueKeyPrefix(): string {
  return `goimtest:${crypto.randomUUID().slice(0, 8)}:`;
}

// Runs `each` over every batch of keys starting with `prefix` (SCAN), summing what it returns.
async function scanKeys(
  url: string,
  prefix: string,
  each: (c: Redis, keys: string[]) => Promise<number>,
): Promise<number> {
  const c = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  c.on("error", () => {});
  try {
    await c.connect();
    let cursor = "0", n = 0;
    do {
      const [next, keys] = await c.scan(cursor, "MATCH", `${escapeGlob(prefix)}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) n += await each(c, keys);
    } while (cursor !== "0");
    return n;
  } finally {
    c.disconnect();
  }
}

/**
 * Deletes every key starting with `prefix` (SCAN + UNLINK); returns how
 * many. One UNLINK per key, pipelined: on a cluster node (tests/redis_cluster_env.ts
 * calls this per master) the keys of one command must share a slot.
 */
export function deleteKeys(url: string, prefix: string): Promise<number> {
  if (!prefix) return Promise.reject(new Error("deleteKeys: refusing an empty prefix"));
  return scanKeys(url, prefix, async (c, keys) => {
    const replies = await c.pipeline(keys.map((k) => ["unlink", k])).exec() ?? [];
    return replies.reduce((n, [err, v]) => {
      if (err) throw err;
      return n + Number(v);
    }, 0);
  });
}

/** Counts keys starting with `prefix` (for asserting that a test cleaned up or pruned). */
export function countKeys(url: string, prefix: string): Promise<number> {
  return scanKeys(url, prefix, (_c, keys) => Promise.resolve(keys.length));
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, "\\$&");
}

/** A redis-server child process of a test's own, which the test may stop, pause and restart. */
export interface OwnRedisServer {
  /** `redis://127.0.0.1:<port>`. */
  url: string;
  /** Starts it (again) on the same port; resolves once it answers PING. */
  start(): Promise<void>;
  /** Kills it (SIGKILL, like a crash) and waits for the process to exit. */
  stop(): Promise<void>;
  /** Freezes it (SIGSTOP): connections stay open but nothing answers. */
  pause(): void;
  /** Unfreezes it (SIGCONT). */
  resume(): void;
}

/** Whether a `redis-server` binary is on PATH (needed by {@linkcode ownRedisServer}). */
export async function hasRedisServerBinary(): Promise<boolean> {
  try {
    const out = await new Deno.Command("redis-server", { args: ["--version"], stdout: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Runs a throwaway `redis-server` (no persistence) on a free loopback port
 * for tests that kill or freeze Redis; stopped when `fn` settles.
 */
export async function ownRedisServer<T>(fn: (srv: OwnRedisServer) => Promise<T>): Promise<T> {
  const port = freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: Deno.ChildProcess | undefined;
  const srv: OwnRedisServer = {
    url,
    async start() {
      child = new Deno.Command("redis-server", {
        args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout: "null",
        stderr: "null",
      }).spawn();
      const deadline = Date.now() + 5000;
      while ((await ping(url, 200)) !== undefined) {
        if (Date.now() > deadline) throw new Error(`own redis-server on ${port} did not start`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (!child) return;
      const c = child;
      child = undefined;
      try {
        c.kill("SIGCONT");
        c.kill("SIGKILL");
      } catch { /* already gone */ }
      await c.status;
    },
    pause() {
      child?.kill("SIGSTOP");
    },
    resume() {
      child?.kill("SIGCONT");
    },
  };
  await srv.start();
  try {
    return await fn(srv);
  } finally {
    await srv.stop();
  }
}

/**
 * Redis engines for distributed mode: {@linkcode RedisSessionStore} and
 * {@linkcode RedisRegistry} on npm:ioredis, and a factory opening both.
 *
 * Each engine owns one connection (closing one never breaks the other).
 * While Redis is down every call rejects at once with a
 * {@linkcode RedisEngineError} and nothing is queued; a call whose reply
 * never comes rejects after `commandTimeoutMs`; the connections reconnect
 * by themselves when Redis is back.
 *
 * @example
 * ```ts
 * import { createRedisEngines } from "./mod.ts";
 * const { sessions, registry, close } = await createRedisEngines({
 *   url: "redis://127.0.0.1:6379", // config redis.url
 *   keyPrefix: "",                 // config redis.key_prefix
 *   routeTtlMs: 30 * 60_000,       // config logic.route_ttl
 * });
 * await sessions.addMapping(1, "k1", "comet-1");
 * await close();
 * ```
 *
 * @module
 */

import { RedisRegistry } from "./registry.ts";
import { RedisSessionStore, type RedisSessionStoreOptions } from "./sessions.ts";

export {
  DEFAULT_COMMAND_TIMEOUT_MS,
  type RedisConnectionOptions,
  RedisEngineError,
} from "./client.ts";
export { RedisRegistry, type RedisRegistryOptions } from "./registry.ts";
export { RedisSessionStore, type RedisSessionStoreOptions } from "./sessions.ts";

/** Options of {@linkcode createRedisEngines}. */
export type RedisEnginesOptions = RedisSessionStoreOptions;

/** What {@linkcode createRedisEngines} returns. */
export interface RedisEngines {
  /** Session routes and online reports. */
  sessions: RedisSessionStore;
  /** Comet registry. */
  registry: RedisRegistry;
  /** Closes both. */
  close(): Promise<void>;
}

/**
 * Opens a session store and a registry on the same Redis. Rejects (and
 * leaves nothing open) if either cannot connect.
 */
export async function createRedisEngines(opts: RedisEnginesOptions): Promise<RedisEngines> {
  const [s, r] = await Promise.allSettled([
    RedisSessionStore.connect(opts),
    RedisRegistry.connect(opts),
  ]);
  if (s.status === "rejected" || r.status === "rejected") {
    await Promise.all([
      s.status === "fulfilled" ? s.value.close() : undefined,
      r.status === "fulfilled" ? r.value.close() : undefined,
    ]);
    throw s.status === "rejected" ? s.reason : (r as PromiseRejectedResult).reason;
  }
  const sessions = s.value, registry = r.value;
  return {
    sessions,
    registry,
    close: async () => void await Promise.all([sessions.close(), registry.close()]),
  };
}

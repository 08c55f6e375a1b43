/**
 * Opens the engines a process runs on, the same way for every role: the
 * session store (`sessions.engine`), the stream history and push status
 * stores (which follow `sessions.engine`: memory or Redis, single node or
 * `redis.cluster.nodes` alike; docs/STREAMS.md), the comet registry
 * (`registry.engine`), and the queue's producer and consumer
 * (`queue.engine`). Every Redis connection gets `redis.url`,
 * `redis.cluster.nodes`, `redis.key_prefix` and `redis.command_timeout`, and logs when it goes
 * down and comes back; the Kafka ends get the role's logger (and the
 * consumer its metrics).
 *
 * What a role may not run on (a standalone logic on the memory queue, a
 * standalone job on anything but Kafka and a Redis or discovery registry)
 * is the role's own check, made before it calls {@linkcode openEngines}.
 *
 * `registry.engine = "discovery"` opens bilibili discovery (goim's
 * registry); another engine with `discovery.register = true` is written to
 * discovery as well and read from itself (infra/discovery/registry.ts).
 *
 * On a single Redis, the stream and push status stores asked for together
 * with the sessions (job and logic ask for all three) work over the session
 * store's connection: Redis runs one connection's commands in the order it
 * reads them, so job can send a mid push's append and the lookup that must
 * follow it at once (job/streams.ts; `orderedVia` in infra/streams.ts; the
 * order argument in infra/redis/client.ts, "Order"). They share its
 * `redis.key_prefix` (every store's key names come from its connection's),
 * and its state changes are logged as `engine: "sessions"`. The session
 * store owns that connection and closes it last (close() goes in reverse
 * opening order). On a cluster each store keeps its own connection.
 *
 * The Redis, Kafka and discovery engines are imported only when chosen, so
 * a process that needs none never loads ioredis or kafkajs.
 *
 * @module
 */

import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { createMemoryQueue } from "./memory/queue.ts";
import { MemoryRegistry } from "./memory/registry.ts";
import { MemorySessionStore } from "./memory/sessions.ts";
import { MemoryPushStatusStore, MemoryStreamStore } from "./memory/streams.ts";
import type { Metrics } from "./metrics.ts";
import type { PushConsumer, PushProducer } from "./queue.ts";
import type { RedisConnectionOptions } from "./redis/client.ts";
import type { RedisSessionStore } from "./redis/sessions.ts";
import type { Registry } from "./registry.ts";
import type { SessionStore } from "./sessions.ts";
import type { PushStatusStore, StreamStore } from "./streams.ts";

/** Every engine {@linkcode openEngines} can open, by name. */
export interface AllEngines {
  /** Session routes (logic). */
  sessions: SessionStore;
  /** Stream history: job appends, logic recovers and serves the history API. */
  streams: StreamStore;
  /** Status of ack-requested pushes (logic). */
  pushStatus: PushStatusStore;
  /** Comet registry (every role). */
  registry: Registry;
  /** The queue's publishing end (logic). */
  producer: PushProducer;
  /** The queue's consuming end (job). */
  consumer: PushConsumer;
}

/** The name of an engine. */
export type EngineName = keyof AllEngines;

/** The engines asked for, and how to release them. */
export type Engines<K extends EngineName> = Pick<AllEngines, K> & {
  /** Closes every engine, last opened first; a failure is logged and stops none of the others. */
  close(): Promise<void>;
};

/** Options of {@linkcode openEngines}. */
export interface OpenEnginesOptions {
  /** Connection state changes and close failures; the Kafka ends log here too. */
  log?: Logger;
  /** The role's registry, for the Kafka consumer's metrics. */
  metrics?: Metrics;
  /**
   * Every engine in memory whatever the configuration says: the all-in-one
   * process, whose logic and job share one memory queue.
   */
  inMemory?: boolean;
}

/**
 * The Redis connection options of a configuration: `redis.*`, and state
 * changes logged on `log` (a warning when the connection goes down, info
 * when it is back).
 *
 * @example
 * ```ts
 * import type { Config } from "./config.ts";
 * import type { Logger } from "./log.ts";
 * import { RedisRegistry } from "./redis/registry.ts";
 * declare const config: Config, log: Logger;
 * const registry = await RedisRegistry.connect(redisOptions(config, log, "registry"));
 * ```
 */
export function redisOptions(
  config: Pick<Config, "redis">,
  log: Logger | undefined,
  engine: string,
): RedisConnectionOptions {
  return {
    url: config.redis.url,
    clusterNodes: config.redis.cluster.nodes,
    keyPrefix: config.redis.key_prefix,
    commandTimeoutMs: config.redis.command_timeout,
    onStateChange: (state, error) =>
      state === "down"
        ? log?.warn("redis connection down", { engine, error })
        : log?.info("redis connection up", { engine }),
  };
}

// Opening order; close() goes the other way (the producer first, so that
// nothing is published into a queue whose consumer is gone).
const ORDER: readonly EngineName[] = [
  "sessions",
  "streams",
  "pushStatus",
  "registry",
  "consumer",
  "producer",
];

/**
 * Opens the engines named in `names` as the configuration chooses them;
 * when one fails, closes those already opened and rethrows.
 *
 * @example
 * ```ts
 * import { Job, type JobDeps } from "../job/job.ts";
 * declare const { config, connect, log, metrics }: Required<JobDeps>;
 * const engines = await openEngines(config, ["registry", "consumer"], { log, metrics });
 * const job = new Job({ config, ...engines, connect, log, metrics });
 * await engines.close();
 * ```
 */
export async function openEngines<K extends EngineName>(
  config: Config,
  names: readonly K[],
  opts: OpenEnginesOptions = {},
): Promise<Engines<K>> {
  const { log } = opts;
  const opened: { close(): Promise<void> }[] = [];
  const close = async () => {
    for (const e of opened.splice(0).reverse()) {
      await e.close().catch((error) => log?.error("closing an engine failed", { error }));
    }
  };
  const engines: Partial<AllEngines> = {};
  let memoryQueue: ReturnType<typeof createMemoryQueue> | undefined;
  const queue = () => memoryQueue ??= createMemoryQueue({ capacity: config.queue.memory.capacity });
  // Anything but Redis (Kafka for the queue) is the memory engine, as each
  // role's opener had it; the registry may be discovery, alone or mirrored.
  const redis = (key: "sessions" | "registry") => !opts.inMemory && config[key].engine === "redis";
  const kafka = () => !opts.inMemory && config.queue.engine === "kafka";
  // The session store's connection on a single Redis, for the stream stores (the module doc).
  const sessionsConn = () => (engines.sessions as RedisSessionStore | undefined)?.orderedVia;
  try {
    for (const name of ORDER) {
      if (!(names as readonly EngineName[]).includes(name)) continue;
      let engine: AllEngines[EngineName];
      switch (name) {
        case "sessions":
          engine = redis("sessions")
            ? await (await import("./redis/mod.ts")).RedisSessionStore.connect({
              ...redisOptions(config, log, "sessions"),
              routeTtlMs: config.logic.route_ttl,
            })
            : new MemorySessionStore({ ttlMs: config.logic.route_ttl });
          break;
        case "streams": {
          const limits = { size: config.streams.history.size, ttlMs: config.streams.history.ttl };
          const conn = sessionsConn();
          engine = redis("sessions")
            ? conn
              ? (await import("./redis/streams.ts")).RedisStreamStore.open(conn, limits)
              : await (await import("./redis/streams.ts")).RedisStreamStore.connect({
                ...redisOptions(config, log, "streams"),
                ...limits,
              })
            : new MemoryStreamStore({
              ...limits,
              maxStreams: config.streams.memory.max_streams,
              maxBytes: config.streams.memory.max_bytes,
            });
          break;
        }
        case "pushStatus": {
          const ttlMs = config.streams.status.ttl;
          const conn = sessionsConn();
          engine = redis("sessions")
            ? conn
              ? (await import("./redis/streams.ts")).RedisPushStatusStore.open(conn, { ttlMs })
              : await (await import("./redis/streams.ts")).RedisPushStatusStore.connect({
                ...redisOptions(config, log, "push status"),
                ttlMs,
              })
            : new MemoryPushStatusStore({ ttlMs });
          break;
        }
        case "registry": {
          // A lone comet on the memory registry is reachable by nobody
          // (the configuration refuses it for mode = "distributed").
          const discovery = !opts.inMemory &&
            (config.registry.engine === "discovery" || config.discovery.register);
          const primary = discovery && config.registry.engine === "discovery"
            ? null
            : redis("registry")
            ? await (await import("./redis/mod.ts")).RedisRegistry.connect(
              redisOptions(config, log, "registry"),
            )
            : new MemoryRegistry();
          if (!discovery) {
            engine = primary ?? new MemoryRegistry();
            break;
          }
          // discovery alone, or written next to the primary (discovery.register): goim's roles
          // find ours there (infra/discovery/registry.ts).
          try {
            const { openDiscoveryRegistry } = await import("./discovery/registry.ts");
            engine = openDiscoveryRegistry(config, primary, log);
          } catch (e) {
            await primary?.close();
            throw e;
          }
          break;
        }
        case "consumer":
          engine = kafka()
            ? (await import("./kafka/mod.ts")).createKafkaConsumer(config, {
              log,
              metrics: opts.metrics,
            })
            : queue().consumer;
          break;
        case "producer":
          // Kafka connects in the background: a broker that is down makes
          // pushes answer 503 and /healthz report it, rather than keeping
          // the role from starting.
          engine = kafka()
            ? (await import("./kafka/mod.ts")).createKafkaProducer(config, { log })
            : queue().producer;
          break;
      }
      (engines as Record<EngineName, unknown>)[name] = engine;
      opened.push(engine);
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { ...(engines as Pick<AllEngines, K>), close };
}

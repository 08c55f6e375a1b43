/**
 * Opens the engines the standalone logic process (`deno task logic`) runs
 * on, as chosen by `sessions.engine`, `registry.engine` and `queue.engine`.
 *
 * The standalone process refuses `queue.engine = "memory"`: an in-memory
 * queue lives in one process, and job runs in another, so every push would
 * be accepted and never delivered. The all-in-one entry (`deno task
 * start`) builds its own engines and shares one memory queue between logic
 * and job.
 *
 * The Redis and Kafka engines are imported only when chosen, so a process
 * that needs neither never loads ioredis or kafkajs.
 *
 * @module
 */

import type { Config } from "../infra/config.ts";
import type { Logger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { MemorySessionStore } from "../infra/memory/sessions.ts";
import type { PushProducer } from "../infra/queue.ts";
import type { Registry } from "../infra/registry.ts";
import type { SessionStore } from "../infra/sessions.ts";

/** The engines of one logic process, and how to release them. */
export interface LogicEngines {
  /** Session routes. */
  sessions: SessionStore;
  /** Comet registry. */
  registry: Registry;
  /** Queue producer. */
  producer: PushProducer;
  /** Closes all three (each failure is logged, none stops the others). */
  close(): Promise<void>;
}

/** A configuration that cannot run as a standalone logic process. */
export class EngineConfigError extends Error {
  /** `message` says which key to change and how. */
  constructor(message: string) {
    super(message);
    this.name = "EngineConfigError";
  }
}

/**
 * Opens the engines; on failure closes whatever was opened and rethrows.
 *
 * @example
 * ```ts ignore
 * const engines = await openLogicEngines(config, log);
 * const logic = new Logic({ config, ...engines, log });
 * ```
 */
export async function openLogicEngines(config: Config, log?: Logger): Promise<LogicEngines> {
  if (config.queue.engine === "memory") {
    throw new EngineConfigError(
      'queue.engine "memory" cannot serve a standalone logic process: job runs in another ' +
        "process and would never see the pushes. Use `deno task start` (all roles in one " +
        'process) or set queue.engine = "kafka".',
    );
  }
  const opened: { close(): Promise<void> }[] = [];
  const closeAll = async () => {
    for (const e of opened.reverse()) {
      await e.close().catch((error) => log?.error("closing an engine failed", { error }));
    }
  };
  try {
    const redis = {
      url: config.redis.url,
      keyPrefix: config.redis.key_prefix,
      commandTimeoutMs: config.redis.command_timeout,
      onStateChange: (state: "up" | "down", error?: Error) =>
        state === "down"
          ? log?.warn("redis connection down", { error })
          : log?.info("redis connection up"),
    };
    let sessions: SessionStore;
    if (config.sessions.engine === "redis") {
      const { RedisSessionStore } = await import("../infra/redis/mod.ts");
      sessions = await RedisSessionStore.connect({ ...redis, routeTtlMs: config.logic.route_ttl });
    } else {
      sessions = new MemorySessionStore({ ttlMs: config.logic.route_ttl });
    }
    opened.push(sessions);
    let registry: Registry;
    if (config.registry.engine === "redis") {
      const { RedisRegistry } = await import("../infra/redis/mod.ts");
      registry = await RedisRegistry.connect(redis);
    } else {
      registry = new MemoryRegistry();
    }
    opened.push(registry);
    const producer = await openKafkaProducer(config, log);
    opened.push(producer);
    return { sessions, registry, producer, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

async function openKafkaProducer(config: Config, log?: Logger): Promise<PushProducer> {
  const { createKafkaProducer } = await import("../infra/kafka/mod.ts");
  // Connects in the background: a broker that is down makes pushes answer 503 and /healthz
  // report it, rather than keeping the HTTP API from starting.
  return createKafkaProducer(config, { log: log?.child({ component: "kafka" }) });
}

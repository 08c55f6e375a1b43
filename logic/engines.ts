/**
 * The engines the standalone logic process (`deno task logic`) runs on:
 * sessions, registry, queue producer, and the stream history and push
 * status stores (Recover, the history API, `ack=1`), opened by
 * infra/engines.ts as `sessions.engine` (the stream stores follow it),
 * `registry.engine` and `queue.engine` choose.
 *
 * The standalone process refuses `queue.engine = "memory"`: an in-memory
 * queue lives in one process, and job runs in another, so every push would
 * be accepted and never delivered. The all-in-one entry (`deno task
 * start`) shares one memory queue between logic and job.
 *
 * @module
 */

import type { Config } from "../infra/config.ts";
import { type Engines, openEngines } from "../infra/engines.ts";
import type { Logger } from "../infra/log.ts";

/** The engines of one logic process, and how to release them (each failure is logged, none stops the others). */
export type LogicEngines = Engines<
  "sessions" | "registry" | "producer" | "streams" | "pushStatus"
>;

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
 * Throws an {@linkcode EngineConfigError} before opening anything when the
 * configuration cannot serve a standalone logic.
 *
 * @example
 * ```ts
 * import type { Config } from "../infra/config.ts";
 * import type { Logger } from "../infra/log.ts";
 * import { Logic } from "./logic.ts";
 * declare const config: Config, log: Logger;
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
  return await openEngines(config, ["sessions", "streams", "pushStatus", "registry", "producer"], {
    log,
  });
}

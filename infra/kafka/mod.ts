/**
 * The Kafka queue engine (npm:kafkajs): see ./queue.ts. Entry points load
 * this module lazily (a computed `import()`) so that processes on the
 * memory queue never load kafkajs.
 *
 * @example
 * ```ts
 * import type { Config } from "../config.ts";
 * import type { Logger } from "../log.ts";
 * declare const config: Config, log: Logger;
 * const { createKafkaProducer } = await import("./mod.ts");
 * const producer = createKafkaProducer(config, { log });
 * ```
 *
 * @module
 */

export * from "./queue.ts";

/**
 * The Kafka queue engine (npm:kafkajs): see ./queue.ts. Entry points load
 * this module lazily (a computed `import()`) so that processes on the
 * memory queue never load kafkajs.
 *
 * @example
 * ```ts ignore
 * const { createKafkaProducer } = await import("./infra/kafka/mod.ts");
 * const producer = createKafkaProducer(config, { log });
 * ```
 *
 * @module
 */

export * from "./queue.ts";

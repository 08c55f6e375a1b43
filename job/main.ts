/**
 * `deno task job`: the job role as its own process (distributed mode).
 *
 * Reads the configuration (`--config FILE`, `GOIM_*`, `--set K=V`), opens
 * the Kafka consumer (`queue.kafka.*`) and the Redis registry
 * (`registry.engine = "redis"`), dials comets over gRPC as they register
 * (with the grpc.token / grpc.tls.* credentials),
 * serves `/metrics` and `/healthz` on `job.admin.bind`, and on SIGINT or
 * SIGTERM stops consuming, lets consumed messages reach the comets, and
 * exits. Exit codes: 0 after a clean stop, 1 when startup fails, 2 for a
 * configuration error (including engines a standalone job cannot use).
 *
 * @example
 * ```sh
 * deno task job --config config/distributed.toml --set node.id=job-1
 * ```
 *
 * @module
 */

import { type Config, loadConfigOrExit } from "../infra/config.ts";
import type { Logger } from "../infra/log.ts";
import { createMetrics, type Metrics } from "../infra/metrics.ts";
import type { PushConsumer } from "../infra/queue.ts";
import type { Registry } from "../infra/registry.ts";
import { type ClientOptions, createCometClient } from "../proto/grpc.ts";
import { internalClientOptions } from "../proto/security.ts";
import { serveAdminHttp } from "../infra/admin.ts";
import { checkExposureOrExit, type HttpServer } from "../infra/http_server.ts";
import { installCrashGuard, roleLogger, shutdownSignal } from "../infra/process.ts";
import { createJobAdminHandler } from "./admin.ts";
import { Job } from "./job.ts";

/** A configuration a standalone job process cannot run with. */
export class JobConfigError extends Error {
  /** `message` says which key to change. */
  constructor(message: string) {
    super(message);
    this.name = "JobConfigError";
  }
}

/**
 * Throws a {@linkcode JobConfigError} naming every engine a standalone job
 * cannot run on (checked before anything is opened).
 */
export function checkStandaloneConfig(config: Config): void {
  const problems: string[] = [];
  if (config.queue.engine !== "kafka") {
    problems.push(
      `queue.engine "${config.queue.engine}" cannot feed a standalone job process: an in-memory ` +
        "queue lives inside one process and logic runs in another. Set queue.engine = " +
        '"kafka", or run every role in one process with `deno task start`.',
    );
  }
  if (config.registry.engine !== "redis") {
    problems.push(
      `registry.engine "${config.registry.engine}" cannot serve a standalone job process: it ` +
        'would never see comets registered by other processes. Set registry.engine = "redis".',
    );
  }
  if (problems.length > 0) throw new JobConfigError(problems.join("\n"));
}

/** Opens the Kafka consumer named by `queue.kafka.*`; kafkajs is loaded only here. */
export async function openConsumer(
  config: Config,
  log: Logger,
  metrics: Metrics,
): Promise<PushConsumer> {
  checkStandaloneConfig(config);
  const { createKafkaConsumer } = await import("../infra/kafka/mod.ts");
  return createKafkaConsumer(config, { log, metrics });
}

/** Opens the registry named by `registry.engine` (Redis: infra/redis/). */
export async function openRegistry(config: Config): Promise<Registry> {
  checkStandaloneConfig(config);
  // Loaded here, not at the top, so importing this module for its helpers loads no ioredis.
  const { RedisRegistry } = await import("../infra/redis/mod.ts");
  return await RedisRegistry.connect({
    url: config.redis.url,
    keyPrefix: config.redis.key_prefix,
    commandTimeoutMs: config.redis.command_timeout,
  });
}

if (import.meta.main) {
  const config = loadConfigOrExit();
  const log = roleLogger(config, "job");
  installCrashGuard(log);
  checkExposureOrExit(config, { admin: ["job"] }, log);
  const metrics = createMetrics("job");
  let consumer: PushConsumer, registry: Registry, dial: ClientOptions;
  try {
    dial = await internalClientOptions(config.grpc);
  } catch (e) {
    log.error("cannot set up gRPC to comets", { error: e instanceof Error ? e.message : e });
    Deno.exit(2);
  }
  try {
    // openRegistry() checks the configuration before it opens anything.
    registry = await openRegistry(config);
  } catch (e) {
    const usage = e instanceof JobConfigError;
    log.error("cannot open engines", { error: usage ? e.message : e });
    Deno.exit(usage ? 2 : 1);
  }
  try {
    consumer = await openConsumer(config, log, metrics);
  } catch (e) {
    log.error("cannot open engines", { error: e });
    await registry.close();
    Deno.exit(1);
  }
  const job = new Job({
    config,
    consumer,
    registry,
    connect: (rec) => createCometClient(rec.grpcAddr, dial),
    log,
    metrics,
  });
  let admin: HttpServer | undefined;
  try {
    if (config.job.admin.bind !== "") {
      admin = serveAdminHttp(
        { bind: config.job.admin.bind, config, log, metrics },
        createJobAdminHandler(job, config.metrics.enabled),
      );
      log.info("admin listening", { addr: `${admin.addr.hostname}:${admin.addr.port}` });
    }
    await job.start();
  } catch (e) {
    log.error("job failed to start", { error: e });
    await admin?.shutdown();
    await job.stop();
    await registry.close();
    Deno.exit(1);
  }
  const sig = await shutdownSignal();
  log.info("stopping", { signal: sig });
  await job.stop();
  await admin?.shutdown();
  await registry.close();
  Deno.exit(0);
}

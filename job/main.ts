/**
 * `deno task job`: the job role as its own process (distributed mode).
 *
 * Reads the configuration (`--config FILE`, `GOIM_*`, `--set K=V`), opens
 * the Kafka consumer (`queue.kafka.*`), the registry
 * (`registry.engine = "redis"` or `"discovery"`, where goim's comets are
 * found too) and, with `streams.enabled`, the Redis stores logic shares:
 * sessions (a mid's keys), stream history and push status
 * (docs/STREAMS.md), dials comets over gRPC as they register
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

import { serveAdminHttp } from "../infra/admin.ts";
import type { Config } from "../infra/config.ts";
import { joinHostPort } from "../infra/addr.ts";
import { openEngines } from "../infra/engines.ts";
import type { HttpServer } from "../infra/http_server.ts";
import { createMetrics } from "../infra/metrics.ts";
import { runRole, StartupError } from "../infra/process.ts";
import { type ClientOptions, createCometClient } from "../proto/grpc.ts";
import { withPushStream } from "../proto/push_stream.ts";
import { internalClientOptions } from "../proto/security.ts";
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
  if (config.registry.engine === "memory") {
    problems.push(
      `registry.engine "${config.registry.engine}" cannot serve a standalone job process: it ` +
        "would never see comets registered by other processes. Set registry.engine = " +
        '"redis" or "discovery".',
    );
  }
  if (config.streams.enabled && config.sessions.engine !== "redis") {
    problems.push(
      `sessions.engine "${config.sessions.engine}" cannot serve a standalone job process with ` +
        "streams.enabled: job appends to the stream history and looks up a mid's keys, in the " +
        'stores logic reads and writes. Set sessions.engine = "redis" (the stream stores ' +
        "follow it), or streams.enabled = false.",
    );
  }
  if (problems.length > 0) throw new JobConfigError(problems.join("\n"));
}

if (import.meta.main) {
  await runRole({
    role: "job",
    exposure: { admin: ["job"] },
    start: async (config, log) => {
      const metrics = createMetrics("job");
      let dial: ClientOptions;
      try {
        dial = await internalClientOptions(config.grpc);
      } catch (e) {
        throw new StartupError("cannot set up gRPC to comets", 2, {
          cause: e instanceof Error ? e.message : e,
        });
      }
      try {
        checkStandaloneConfig(config);
      } catch (e) {
        throw new StartupError("cannot open engines", 2, { cause: (e as Error).message });
      }
      let engines;
      try {
        engines = await openEngines(
          config,
          config.streams.enabled
            ? ["registry", "consumer", "sessions", "streams", "pushStatus"]
            : ["registry", "consumer"],
          { log, metrics },
        );
      } catch (e) {
        throw new StartupError("cannot open engines", 1, { cause: e });
      }
      const job = new Job({
        config,
        ...engines,
        // Key pushes on one stream per comet (proto/push_stream.ts), unary for a goim comet.
        connect: (rec) =>
          withPushStream(createCometClient(rec.grpcAddr, dial), {
            token: dial.token,
            deadlineMs: dial.deadlineMs,
          }),
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
          log.info("admin listening", { addr: joinHostPort(admin.addr) });
        }
        await job.start();
      } catch (e) {
        await admin?.shutdown();
        await job.stop();
        await engines.close();
        throw e;
      }
      return {
        stop: async () => {
          // Job closes its consumer: consumed messages reach the comets first.
          await job.stop();
          await admin?.shutdown();
          await engines.close();
        },
      };
    },
  });
}

/**
 * The all-in-one entry (`deno task start`): comet, logic and job in one
 * process on the in-memory engines. Nothing to install, nothing to run
 * beside it. Roles call each other through the same APIs they use over gRPC
 * in the distributed mode, but as direct calls.
 *
 * @module
 */

import { joinHostPort } from "./infra/addr.ts";
import { serveAdminHttp } from "./infra/admin.ts";
import type { Config } from "./infra/config.ts";
import type { HttpServer } from "./infra/http_server.ts";
import { openEngines } from "./infra/engines.ts";
import { createLogger, type Logger } from "./infra/log.ts";
import { metricsText, processMetrics } from "./infra/metrics.ts";
import { runRole } from "./infra/process.ts";
import { Comet, type CometAddrs } from "./comet/comet.ts";
import { Logic, type LogicAddrs } from "./logic/logic.ts";
import { Job } from "./job/job.ts";
import type { CometOperatorApi } from "./proto/operator.ts";
import { createJobAdminHandler } from "./job/admin.ts";

/** A running embedded server. */
export interface Embedded {
  /** The comet role. */
  comet: Comet;
  /** The logic role. */
  logic: Logic;
  /** The job role. */
  job: Job;
  /** Where the comet listens (real ports when configured with port 0). */
  cometAddrs: CometAddrs;
  /** Where logic listens. */
  logicAddrs: LogicAddrs;
  /** Job's admin endpoint (`job.admin.bind`), unless that is empty. */
  jobAdmin?: Deno.NetAddr;
  /** Stops every role in order (comet, then job, then logic) and the engines. */
  stop(): Promise<void>;
}

/**
 * Starts comet, logic and job in this process on memory engines.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./infra/config.ts";
 * const server = await startEmbedded(loadConfig({ args: [], env: {} }));
 * await server.stop();
 * ```
 */
export async function startEmbedded(config: Config, log?: Logger): Promise<Embedded> {
  const logger = log ?? createLogger({ level: config.log.level, format: config.log.format });
  const engines = await openEngines(
    config,
    ["sessions", "registry", "producer", "consumer", "streams", "pushStatus"],
    { log: logger, inMemory: true },
  );
  const { sessions, registry, streams, pushStatus } = engines;

  const logic: Logic = new Logic({
    config,
    sessions,
    registry,
    producer: engines.producer,
    streams,
    pushStatus,
    log: logger.child({ role: "logic" }),
    // The console reaches this process's comet and job directly, as job does the comet.
    operator: {
      dialer: {
        dial: (rec): CometOperatorApi => {
          if (rec.id !== comet.id) throw new Error(`embedded logic has no comet ${rec.id}`);
          return comet.operator;
        },
      },
      jobs: [{
        name: "job",
        metrics: (): Promise<string> => metricsText(job.metrics, processMetrics()),
      }],
    },
  });
  const comet = new Comet({
    config,
    logic: logic.service,
    streams: logic.streamsService,
    registry,
    log: logger.child({ role: "comet" }),
  });
  const job = new Job({
    config,
    consumer: engines.consumer,
    registry,
    // Job is the ordering point of every stream (docs/STREAMS.md): it appends, then routes mids.
    streams,
    sessions,
    pushStatus,
    // One process: the only comet is this one, called directly.
    connect: (rec) => {
      if (rec.id !== comet.id) throw new Error(`embedded job has no comet ${rec.id}`);
      return comet.service;
    },
    log: logger.child({ role: "job" }),
  });

  const logicAddrs = await logic.start({ grpc: false });
  const cometAddrs = await comet.start({ grpc: false });
  await job.start();
  let jobAdmin: HttpServer | undefined;
  let stopping: Promise<void> | null = null;
  const stop = () =>
    stopping ??= (async () => {
      await comet.shutdown("server shutting down");
      await job.stop();
      await jobAdmin?.shutdown();
      await logic.stop();
      await engines.close();
    })();
  // As job/main.ts serves it: without it job's series (lag, latency) reach no scrape.
  if (config.job.admin.bind !== "") {
    try {
      jobAdmin = serveAdminHttp(
        {
          bind: config.job.admin.bind,
          config,
          log: logger.child({ role: "job" }),
          metrics: job.metrics,
        },
        createJobAdminHandler(job, config.metrics.enabled),
      );
    } catch (e) {
      await stop();
      throw e;
    }
  }
  return { comet, logic, job, cometAddrs, logicAddrs, jobAdmin: jobAdmin?.addr, stop };
}

if (import.meta.main) {
  await runRole({
    role: "embedded",
    exposure: { api: true, admin: ["comet", "logic", "job"] },
    logger: (config) =>
      createLogger({
        level: config.log.level,
        format: config.log.format,
        fields: { mode: "embedded" },
      }),
    start: async (config, log) => {
      const server = await startEmbedded(config, log);
      const show = (a: Deno.NetAddr[]) => a.map(joinHostPort).join(",");
      log.info("embedded server up", {
        tcp: show(server.cometAddrs.tcp),
        ws: show(server.cometAddrs.ws),
        http: joinHostPort(server.logicAddrs.http),
      });
      return server;
    },
  });
}

/**
 * The all-in-one entry (`deno task start`): comet, logic and job in one
 * process on the in-memory engines. Nothing to install, nothing to run
 * beside it. Roles call each other through the same APIs they use over gRPC
 * in the distributed mode, but as direct calls.
 *
 * @module
 */

import { type Config, loadConfigOrExit } from "./infra/config.ts";
import { checkExposureOrExit } from "./infra/http_server.ts";
import { createLogger, type Logger } from "./infra/log.ts";
import { installCrashGuard } from "./infra/process.ts";
import { MemorySessionStore } from "./infra/memory/sessions.ts";
import { MemoryRegistry } from "./infra/memory/registry.ts";
import { createMemoryQueue } from "./infra/memory/queue.ts";
import { Comet, type CometAddrs } from "./comet/comet.ts";
import { Logic, type LogicAddrs } from "./logic/logic.ts";
import { Job } from "./job/job.ts";

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
  const sessions = new MemorySessionStore({ ttlMs: config.logic.route_ttl });
  const registry = new MemoryRegistry();
  const queue = createMemoryQueue({ capacity: config.queue.memory.capacity });

  const logic = new Logic({
    config,
    sessions,
    registry,
    producer: queue.producer,
    log: logger.child({ role: "logic" }),
  });
  const comet = new Comet({
    config,
    logic: logic.service,
    registry,
    log: logger.child({ role: "comet" }),
  });
  const job = new Job({
    config,
    consumer: queue.consumer,
    registry,
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

  let stopping: Promise<void> | null = null;
  const stop = () =>
    stopping ??= (async () => {
      await comet.shutdown("server shutting down");
      await job.stop();
      await logic.stop();
      await queue.producer.close();
      await queue.consumer.close();
      await sessions.close();
      await registry.close();
    })();
  return { comet, logic, job, cometAddrs, logicAddrs, stop };
}

if (import.meta.main) {
  const config = loadConfigOrExit();
  const log = createLogger({
    level: config.log.level,
    format: config.log.format,
    fields: { mode: "embedded" },
  });
  installCrashGuard(log);
  checkExposureOrExit(config, { api: true, admin: ["comet", "logic"] }, log);
  const server = await startEmbedded(config, log);
  const show = (a: Deno.NetAddr[]) => a.map((x) => `${x.hostname}:${x.port}`).join(",");
  log.info("embedded server up", {
    tcp: show(server.cometAddrs.tcp),
    ws: show(server.cometAddrs.ws),
    http: `${server.logicAddrs.http.hostname}:${server.logicAddrs.http.port}`,
  });
  const onSignal = () => {
    log.info("signal received, shutting down");
    server.stop().then(() => Deno.exit(0), (e) => {
      log.error("shutdown failed", { error: e });
      Deno.exit(1);
    });
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
}

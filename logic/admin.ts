/**
 * The logic role's admin endpoint (`logic.admin.bind`, loopback by default
 * because metrics reveal internals):
 *
 * - `GET /metrics`: Prometheus text, `goim_logic_*` plus process metrics
 *   (404 when `metrics.enabled` is false);
 * - `GET /healthz`: `200 {"status":"ok","queue":true}` while the queue
 *   producer reports healthy, else `503 {"status":"unavailable","queue":false}`,
 *   so a load balancer stops sending pushes to a logic that cannot queue them;
 * - `/console/`: the operator console's page (./console.ts) and
 *   `/operator/v1/…`: the operator API (./operator.ts), both behind
 *   `logic.operator.keys` instead of `admin.token` (a separate key set:
 *   a metrics scraper's token opens no console, an operator's key no
 *   metrics); see {@linkcode LogicConsole} and docs/CONSOLE.md.
 *
 * @module
 */

import { createAdminHandler, requireAdminToken } from "../infra/admin.ts";
import { isLoopbackHost, splitHostPort } from "../infra/addr.ts";
import type { Config } from "../infra/config.ts";
import type { Logger } from "../infra/log.ts";
import { acquireLoopLag, type LoopLagHold } from "../infra/loop_lag.ts";
import type { PushProducer } from "../infra/queue.ts";
import type { Registry } from "../infra/registry.ts";
import type { SessionStore } from "../infra/sessions.ts";
import { internalClientOptions } from "../proto/security.ts";
import { CONSOLE_PREFIX, createConsoleHandler } from "./console.ts";
import type { HttpHandler } from "./http.ts";
import type { LogicMetrics } from "./metrics.ts";
import type { OnlineCounts } from "./online.ts";
import { createOperatorHandler, OPERATOR_PREFIX } from "./operator.ts";
import { OverviewSampler } from "./operator_overview.ts";
import {
  type CometDialer,
  GrpcCometDialer,
  httpJobSource,
  type JobSource,
} from "./operator_sources.ts";

/** What {@linkcode createLogicAdminHandler} needs. */
export interface AdminDeps {
  /** The queue whose health `/healthz` reports. */
  producer: PushProducer;
  /** Metrics to expose; omitted = `/metrics` is 404. */
  metrics?: LogicMetrics;
  /** The operator console; omitted = `/console/` and `/operator/` are 404. */
  console?: LogicConsole;
}

/**
 * Builds the admin handler (infra/admin.ts `createAdminHandler` with
 * logic's health, plus the console's paths when given one).
 *
 * @example
 * ```ts
 * import { type AdminHttpOptions, serveAdminHttp } from "../infra/admin.ts";
 * declare const { config, log }: AdminHttpOptions, { producer, metrics }: AdminDeps;
 * serveAdminHttp({ bind: "127.0.0.1:3191", config, log }, createLogicAdminHandler({ producer, metrics }));
 * ```
 */
export function createLogicAdminHandler(deps: AdminDeps): HttpHandler {
  const admin = createAdminHandler({
    health: () => {
      let healthy = false;
      try {
        healthy = deps.producer.healthy();
      } catch {
        // A throwing probe is as good as a failing one.
      }
      return { healthy, body: { status: healthy ? "ok" : "unavailable", queue: healthy } };
    },
    metrics: deps.metrics?.registry,
  });
  const ops = deps.console;
  if (ops === undefined) return admin;
  return (req, info) => ops.owns(req) ? ops.handler(req, info) : admin(req);
}

/** Options of the embedded wiring: the comet and job objects of this process. */
export interface InProcessOperator {
  /** Reaches each comet's operator service (embedded: the comet's own object). */
  dialer: CometDialer;
  /** The jobs to read (embedded: the process's own job registry). */
  jobs: readonly JobSource[];
}

/** What {@linkcode LogicConsole} is built from. */
export interface LogicConsoleDeps {
  /** `logic.operator.*`, `logic.admin.bind`, `admin.token`, `grpc.*`, `mode`. */
  config: Pick<Config, "logic" | "admin" | "grpc" | "mode">;
  /** Comets. */
  registry: Registry;
  /** Routes. */
  sessions: SessionStore;
  /** Room counts. */
  online: OnlineCounts;
  /** This logic's counters. */
  metrics: LogicMetrics;
  /** Embedded: the process's comet and job; absent = dial comets over gRPC, read `logic.operator.jobs`. */
  inProcess?: InProcessOperator;
  /** Actions, warnings. */
  log: Logger;
}

// Until start(): the gRPC options need the TLS files, read asynchronously.
class DeferredDialer implements CometDialer {
  target: CometDialer | undefined;
  dial: CometDialer["dial"] = (rec) => {
    if (!this.target) throw new Error("the operator console is not started");
    return this.target.dial(rec);
  };
  retain(live: ReadonlySet<string>): void {
    this.target?.retain?.(live);
  }
  close(): void {
    this.target?.close?.();
  }
}

/**
 * The operator console of one logic: page, API and the overview sampler,
 * with their auth rule (docs/CONSOLE.md, "Security"): `logic.operator.keys`
 * when set; none needed when `logic.admin.bind` is loopback (a warning at
 * start says so); off (404 saying why) on any other address without keys.
 *
 * @example
 * ```ts
 * import type { HttpHandler } from "./http.ts";
 * declare const deps: LogicConsoleDeps, token: string, admin: HttpHandler;
 * const ops = new LogicConsole(deps);
 * await ops.start();
 * const handler = ops.guard(token, admin); // the admin listener's handler
 * await ops.stop();
 * ```
 */
export class LogicConsole {
  /** The sampler behind `/operator/v1/overview`. */
  readonly overview: OverviewSampler;
  /** The console's own requests (page and API), already authenticated by its rule. */
  readonly handler: HttpHandler;
  readonly #deps: LogicConsoleDeps;
  readonly #dialer = new DeferredDialer();
  readonly #loopback: boolean;
  #lag: LoopLagHold | undefined;

  /** Wires page, API and sampler; nothing is dialled until {@linkcode LogicConsole.start}. */
  constructor(deps: LogicConsoleDeps) {
    this.#deps = deps;
    const cfg = deps.config;
    const bind = cfg.logic.admin.bind;
    this.#loopback = bind !== "" && isLoopbackHost(splitHostPort(bind).hostname);
    const jobs = deps.inProcess?.jobs ??
      cfg.logic.operator.jobs.map((addr) => httpJobSource(addr, cfg.admin.token));
    this.overview = new OverviewSampler({
      mode: cfg.mode,
      registry: deps.registry,
      dialer: this.#dialer,
      jobs,
      metrics: deps.metrics,
      online: deps.online,
      log: deps.log,
    });
    const api = createOperatorHandler({
      keys: cfg.logic.operator.keys,
      loopback: this.#loopback,
      registry: deps.registry,
      sessions: deps.sessions,
      online: deps.online,
      dialer: this.#dialer,
      overview: this.overview,
      log: deps.log,
    });
    const page = createConsoleHandler();
    this.handler = (req, info) =>
      new URL(req.url).pathname.startsWith(OPERATOR_PREFIX) ? api(req, info) : page(req);
  }

  /** Whether `req` is for the console (page or API) rather than `/metrics` and `/healthz`. */
  owns(req: Request): boolean {
    const path = new URL(req.url).pathname;
    return path === "/console" || path.startsWith(CONSOLE_PREFIX) ||
      path.startsWith(OPERATOR_PREFIX);
  }

  /**
   * The admin listener's handler: console paths as they are (their own key
   * rule), everything else behind `admin.token` (infra/admin.ts
   * `requireAdminToken`).
   */
  guard(adminToken: string, handler: HttpHandler): HttpHandler {
    const guarded = requireAdminToken(adminToken, handler);
    return (req, info) => this.owns(req) ? handler(req, info) : guarded(req, info);
  }

  /** Sets up the comet clients (gRPC options: token, TLS) and logs how the console is reachable. */
  async start(): Promise<void> {
    const d = this.#deps;
    this.#dialer.target = d.inProcess?.dialer ??
      new GrpcCometDialer(await internalClientOptions(d.config.grpc));
    this.#lag = acquireLoopLag();
    const bind = d.config.logic.admin.bind;
    if (bind === "") return;
    if (d.config.logic.operator.keys.length > 0) {
      d.log.info("operator console", { url: `http://${bind}${CONSOLE_PREFIX}`, auth: "keys" });
    } else if (this.#loopback) {
      d.log.warn(
        "operator console open without a key on loopback: anyone on this host can kick users and drain comets; set logic.operator.keys",
        { url: `http://${bind}${CONSOLE_PREFIX}` },
      );
    } else {
      d.log.warn(
        "operator console off: logic.admin.bind is not loopback and logic.operator.keys is empty",
        { bind },
      );
    }
  }

  /** Closes the comet clients and lets a running overview pass finish. */
  async stop(): Promise<void> {
    await this.overview.idle();
    this.#dialer.close();
    this.#lag?.release();
    this.#lag = undefined;
  }
}

/**
 * The logic role: HTTP push/online/nodes/history API, gRPC
 * `goim.logic.Logic` and `goim.logic.Streams` for comets, and the admin
 * endpoint, wired over injected engines.
 *
 * Logic uses its engines but does not own them: whoever created the
 * session store, registry, producer and stream stores closes them after
 * {@linkcode Logic.stop}.
 *
 * @example Embedded, on memory engines
 * ```ts
 * import { loadConfig } from "../infra/config.ts";
 * import { MemoryRegistry } from "../infra/memory/registry.ts";
 * import { MemorySessionStore } from "../infra/memory/sessions.ts";
 * import type { PushProducer } from "../infra/queue.ts";
 * import { Logic } from "./logic.ts";
 *
 * declare const producer: PushProducer;
 * const config = loadConfig({ args: [], env: {} });
 * const logic = new Logic({
 *   config,
 *   sessions: new MemorySessionStore({ ttlMs: config.logic.route_ttl }),
 *   registry: new MemoryRegistry(),
 *   producer, // a PushProducer
 * });
 * const addrs = await logic.start(); // { http: { hostname: "127.0.0.1", port: 3111, ... }, grpc, admin }
 * await logic.stop();
 * ```
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import type { LogicApi } from "../proto/api.ts";
import { type LogicMethods, logicServiceDefinition, RpcError, serveUnary } from "../proto/grpc.ts";
import {
  type StreamsApi,
  type StreamsMethods,
  streamsServiceDefinition,
} from "../proto/streams.ts";
import { bindInternal, createInternalServer } from "../proto/security.ts";
import { advertisedAddr, joinHostPort, splitHostPort } from "../infra/addr.ts";
import type { Config } from "../infra/config.ts";
import { checkExposure, httpLimits, serveHttp } from "../infra/http_server.ts";
import { createLogger, type Logger } from "../infra/log.ts";
import type { Metrics } from "../infra/metrics.ts";
import type { PushProducer } from "../infra/queue.ts";
import type { Registry } from "../infra/registry.ts";
import { canRegisterLogic, type LogicRegistration } from "../infra/discovery/registry.ts";
import type { SessionStore } from "../infra/sessions.ts";
import type { PushStatusStore, StreamStore } from "../infra/streams.ts";
import { createLogicAdminHandler, type InProcessOperator, LogicConsole } from "./admin.ts";
import { type Authenticator, createAuthenticator } from "./auth.ts";
import { createHttpHandler, type HttpHandler } from "./http.ts";
import { createLogicMetrics, type LogicMetrics } from "./metrics.ts";
import { NodeBalancer } from "./nodes.ts";
import { ONLINE_REFRESH_MS, OnlineCounts } from "./online.ts";
import { Pusher } from "./push.ts";
import { AckWaits } from "./push_wait.ts";
import { connectHeartbeatNs, createLogicService } from "./service.ts";
import { createStreamsService } from "./streams_service.ts";
import { Webhook } from "./webhook.ts";

/** Time {@linkcode Logic.stop} gives queued webhook deliveries. */
export const WEBHOOK_DRAIN_MS = 1000;

/** Time {@linkcode Logic.stop} gives gRPC calls in flight before cutting connections. */
export const GRPC_SHUTDOWN_MS = 2000;

/** Time {@linkcode Logic.stop} gives the discovery cancel of `goim.logic` before going on. */
export const DEREGISTER_MS = 2000;

/** What the logic role is built from. */
export interface LogicDeps {
  /** The whole configuration (logic.*, node.*, comet.heartbeat_*, metrics.enabled are read). */
  config: Config;
  /** Session routes and online reports. */
  sessions: SessionStore;
  /** Comet registry. */
  registry: Registry;
  /** Push queue producer. */
  producer: PushProducer;
  /**
   * Stream history (docs/STREAMS.md): Recover and `/goim/history` read it.
   * Absent: every stream recovers `unavailable`, history answers 503.
   */
  streams?: StreamStore;
  /** Status of ack-requested pushes; absent: `ack=1` and `/goim/push/status` answer 503. */
  pushStatus?: PushStatusStore;
  /** Logger; default a JSON logger at `log.level` with `{ role: "logic" }`. */
  log?: Logger;
  /** Role registry (`createMetrics("logic")`); default a fresh one. */
  metrics?: Metrics;
  /** fetch used by the webhook (tests inject one). */
  fetch?: typeof fetch;
  /** Clock in ms since the epoch (online staleness, balancer); default `Date.now`. */
  now?: () => number;
  /**
   * The operator console's comets and jobs in this process (embedded mode);
   * absent = comets over gRPC, jobs from `logic.operator.jobs`.
   */
  operator?: InProcessOperator;
}

/** Bound addresses (real ports when port 0 was configured). */
export interface LogicAddrs {
  /** HTTP API. */
  http: Deno.NetAddr;
  /** gRPC, unless started with `{ grpc: false }`. */
  grpc?: Deno.NetAddr;
  /** Admin endpoint, unless `logic.admin.bind` is empty. */
  admin?: Deno.NetAddr;
}

/** Options of {@linkcode Logic.start}. */
export interface LogicStartOptions {
  /** Serve gRPC (default true); an embedded comet calls {@linkcode Logic.service} and {@linkcode Logic.streamsService} directly. */
  grpc?: boolean;
}

/** The logic role. */
export class Logic {
  /** gRPC handlers, also called in-process by an embedded comet. */
  readonly service: LogicApi;
  /** `goim.logic.Streams` handlers (Recover, Acks), served beside {@linkcode Logic.service}. */
  readonly streamsService: StreamsApi;
  /** The waits of ack-requested pushes (`wait=`). */
  readonly waits: AckWaits;
  /** The whole HTTP API as a plain function. */
  readonly handler: HttpHandler;
  /** The admin endpoint (`/metrics`, `/healthz`, the console) as a plain function, before `admin.token`. */
  readonly adminHandler: HttpHandler;
  /** The operator console (docs/CONSOLE.md), on the admin listener. */
  readonly console: LogicConsole;
  /** The online aggregate (exposed for tests and the embedded process). */
  readonly online: OnlineCounts;
  /** The node balancer. */
  readonly nodes: NodeBalancer;
  /** Upstream delivery, or null when `logic.webhook.url` is empty. */
  readonly webhook: Webhook | null;
  /** The role's metrics. */
  readonly metrics: LogicMetrics;
  /** Token verification. */
  readonly auth: Authenticator;

  #deps: LogicDeps;
  #log: Logger;
  #started = false;
  #stopping: Promise<void> | undefined;
  #servers: Deno.HttpServer[] = [];
  #grpc: grpc.Server | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #registration: LogicRegistration | undefined;

  /** Wires the role; nothing listens until {@linkcode Logic.start}. */
  constructor(deps: LogicDeps) {
    this.#deps = deps;
    const cfg = deps.config;
    this.#log = deps.log ??
      createLogger({ level: cfg.log.level, format: cfg.log.format, fields: { role: "logic" } });
    this.metrics = createLogicMetrics(deps.metrics);
    const now = deps.now ?? Date.now;
    this.auth = createAuthenticator(cfg.logic.auth);
    this.online = new OnlineCounts({
      sessions: deps.sessions,
      registry: deps.registry,
      staleAfterMs: cfg.logic.online_stale_after,
      now,
      log: this.#log,
      metrics: this.metrics,
    });
    this.nodes = new NodeBalancer({ registry: deps.registry, config: cfg, now, log: this.#log });
    const hook = cfg.logic.webhook;
    this.webhook = hook.url === "" ? null : new Webhook({
      url: hook.url,
      timeoutMs: hook.timeout,
      retries: hook.retries,
      buffer: hook.buffer,
      fetch: deps.fetch,
      log: this.#log,
      metrics: this.metrics,
    });
    this.service = createLogicService({
      auth: this.auth,
      sessions: deps.sessions,
      online: this.online,
      nodes: this.nodes,
      webhook: this.webhook,
      heartbeatNs: connectHeartbeatNs(cfg.comet.heartbeat_interval, cfg.comet.heartbeat_max),
      log: this.#log,
      metrics: this.metrics,
    });
    this.streamsService = createStreamsService({
      enabled: cfg.streams.enabled,
      streams: deps.streams,
      pushStatus: deps.pushStatus,
      recoverTimeoutMs: cfg.streams.recover.timeout,
      log: this.#log,
      metrics: this.metrics,
    });
    this.waits = new AckWaits({ store: deps.pushStatus, metrics: this.metrics });
    this.handler = createHttpHandler({
      pusher: new Pusher({
        sessions: deps.sessions,
        producer: deps.producer,
        streams: cfg.streams.enabled,
        pushStatus: deps.pushStatus,
        metrics: this.metrics,
      }),
      maxWaitMs: cfg.logic.push.max_wait,
      waits: this.waits,
      pushStatus: deps.pushStatus,
      streams: deps.streams,
      streamsEnabled: cfg.streams.enabled,
      online: this.online,
      nodes: this.nodes,
      registry: deps.registry,
      maxBody: cfg.logic.http.max_body,
      apiKeys: cfg.logic.auth.api_keys,
      log: this.#log,
      metrics: this.metrics,
    });
    this.console = new LogicConsole({
      config: cfg,
      registry: deps.registry,
      sessions: deps.sessions,
      online: this.online,
      metrics: this.metrics,
      inProcess: deps.operator,
      log: this.#log,
    });
    this.adminHandler = createLogicAdminHandler({
      producer: deps.producer,
      metrics: cfg.metrics.enabled ? this.metrics : undefined,
      console: this.console,
    });
  }

  /**
   * Loads the auth key, then binds HTTP, gRPC (unless `{ grpc: false }`)
   * and admin, starts the periodic online refresh, and registers as
   * `goim.logic` when the registry is (or mirrors to) discovery. On any
   * failure what was started is stopped again and the error is thrown.
   * Call once.
   */
  async start(opts: LogicStartOptions = {}): Promise<LogicAddrs> {
    if (this.#started) throw new Error("logic: start() called twice");
    this.#started = true;
    const cfg = this.#deps.config.logic;
    try {
      await this.auth.ready();
      if (cfg.auth.mode === "none") {
        this.#log.warn(
          'logic.auth.mode is "none": connections are trusted as they claim to be (any mid, any room); set logic.auth.mode = "jwt" in production',
        );
      }
      // The role entries log the warnings; whoever starts Logic gets the refusal.
      const exposure = checkExposure(this.#deps.config, { api: true, admin: ["logic"] });
      if (exposure.errors.length > 0) throw new Error(exposure.errors.join("\n"));
      const addrs: LogicAddrs = { http: this.#serve("logic.http.bind", "api", this.handler) };
      if (opts.grpc !== false) addrs.grpc = await this.#serveGrpc(cfg.grpc.bind);
      if (cfg.admin.bind !== "") {
        await this.console.start();
        addrs.admin = this.#serve(
          "logic.admin.bind",
          "admin",
          // The console keeps its own key rule; the rest wants admin.token.
          this.console.guard(this.#deps.config.admin.token, this.adminHandler),
        );
      }
      this.#timer = setInterval(() => void this.online.refresh(), ONLINE_REFRESH_MS);
      void this.online.refresh();
      const registry = this.#deps.registry;
      if (addrs.grpc && canRegisterLogic(registry)) {
        // goim's comets find logic as goim.logic in discovery; failures are retried and logged.
        this.#registration = await registry.registerLogic({
          id: this.#deps.config.node.id,
          grpcAddr: advertisedAddr(cfg.grpc.advertise, cfg.grpc.bind, addrs.grpc.port),
        });
      }
      this.#log.info("logic started", {
        http: joinHostPort(addrs.http),
        grpc: addrs.grpc && joinHostPort(addrs.grpc),
        admin: addrs.admin && joinHostPort(addrs.admin),
        auth: cfg.auth.mode,
      });
      return addrs;
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /**
   * Leaves discovery (when registered there, at most
   * {@linkcode DEREGISTER_MS}), ends the pushes waiting for acks (they
   * answer their counts so far), stops listening (HTTP servers finish their
   * requests, gRPC calls get {@linkcode GRPC_SHUTDOWN_MS}), drains the webhook for up to
   * {@linkcode WEBHOOK_DRAIN_MS}. Idempotent; engines stay open.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    // Out of discovery first, so goim's comets stop picking this logic before gRPC closes.
    const registration = this.#registration;
    this.#registration = undefined;
    if (registration) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        registration.cancel().catch((error) =>
          this.#log.warn("discovery cancel of goim.logic failed", { error })
        ),
        new Promise<void>((resolve) => timer = setTimeout(resolve, DEREGISTER_MS)),
      ]);
      clearTimeout(timer);
    }
    // Held pushes answer now, or the HTTP servers would wait them out.
    this.waits.close();
    const servers = this.#servers.splice(0);
    await Promise.all([
      ...servers.map((s) => s.shutdown().catch(() => {})),
      this.#stopGrpc(),
    ]);
    await this.webhook?.close(WEBHOOK_DRAIN_MS);
    await this.console.stop();
    // A refresh still reading the store must finish before the caller closes it.
    await this.online.idle();
    if (this.#started) this.#log.info("logic stopped");
  }

  // Every HTTP listener runs on the bounded server (infra/http_server.ts).
  #serve(key: "logic.http.bind" | "logic.admin.bind", listener: string, handler: HttpHandler) {
    const cfg = this.#deps.config;
    const bind = key === "logic.http.bind" ? cfg.logic.http.bind : cfg.logic.admin.bind;
    let server;
    try {
      server = serveHttp(
        { bind, listener, limits: httpLimits(cfg), log: this.#log, metrics: this.metrics.registry },
        handler,
      );
    } catch (e) {
      throw new Error(`${key} ${bind}: ${e instanceof Error ? e.message : e}`);
    }
    this.#servers.push(server);
    return server.addr;
  }

  async #serveGrpc(bind: string): Promise<Deno.NetAddr> {
    const server = createInternalServer(this.#deps.config.grpc, {
      log: this.#log,
      metrics: this.metrics.registry,
    });
    this.#grpc = server;
    const onError = (method: string, error: unknown) => {
      if (error instanceof RpcError) return; // a refusal meant for the caller, not a fault
      this.#log.error("gRPC handler failed", { method, error });
    };
    server.addService(logicServiceDefinition, serveUnary<LogicMethods>(this.service, { onError }));
    // The same server, so the same grpc.token and TLS as goim.logic.Logic.
    server.addService(
      streamsServiceDefinition,
      serveUnary<StreamsMethods>(this.streamsService, { onError }),
    );
    const { hostname } = splitHostPort(bind);
    const port = await bindInternal(server, bind, this.#deps.config.grpc, {
      key: "logic.grpc.bind",
      log: this.#log,
    });
    return { transport: "tcp", hostname, port };
  }

  async #stopGrpc(): Promise<void> {
    const server = this.#grpc;
    if (!server) return;
    this.#grpc = undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
      new Promise<void>((resolve) => timer = setTimeout(resolve, GRPC_SHUTDOWN_MS)),
    ]);
    clearTimeout(timer);
    server.forceShutdown();
  }
}

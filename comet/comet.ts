/**
 * The comet role: client connections over TCP, WebSocket and WSS, the
 * `goim.comet.Comet` service job pushes through, and the periodic work
 * (timeouts, RenewOnline, registration). One object, embeddable: the
 * all-in-one entry passes logic's service object and calls
 * {@linkcode Comet.service} directly; comet/main.ts wires gRPC instead.
 *
 * How the pieces fit (docs/COMET.md has the long version):
 * - ./tcp.ts and ./websocket.ts accept sockets and turn bytes into frames;
 * - ./hub.ts runs each connection's lifecycle (auth via logic, ops,
 *   replacement, timeouts) over ./bucket.ts and ./room.ts;
 * - ./service.ts encodes each push once and queues it on ./channel.ts
 *   send queues, which ./flusher.ts writes out, coalesced;
 * - on the sweep, the descriptor budget (../infra/fds.ts) is re-counted
 *   and every listener checked for a dead accept loop (./socket.ts);
 * - ./online.ts, ./registration.ts, ./admin.ts, ./metrics.ts do the rest.
 *
 * @example
 * ```ts
 * import { loadConfig } from "../infra/config.ts";
 * import { MemoryRegistry } from "../infra/memory/registry.ts";
 * import type { LogicApi } from "../proto/api.ts";
 * import { Comet } from "./comet.ts";
 * declare const logic: LogicApi, body: Uint8Array;
 * const comet = new Comet({ config: loadConfig(), logic, registry: new MemoryRegistry() });
 * const addrs = await comet.start({ grpc: false });
 * await comet.service.BroadcastRoom({ roomID: "live://1000", proto: { ver: 1, op: 1000, seq: 0, body } });
 * await comet.shutdown();
 * ```
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { advertisedAddr, joinHostPort } from "../infra/addr.ts";
import type { Config } from "../infra/config.ts";
import { FdBudget } from "../infra/fds.ts";
import { errorMessage, type Logger, LogThrottle } from "../infra/log.ts";
import { acquireLoopLag } from "../infra/loop_lag.ts";
import { roleLogger } from "../infra/process.ts";
import { type Counter, createMetrics, type Metrics } from "../infra/metrics.ts";
import type { Registry } from "../infra/registry.ts";
import type { CometApi, LogicApi } from "../proto/api.ts";
import type { StreamsApi } from "../proto/streams.ts";
import { type CometHandlers, cometServiceDefinition, RpcError, serveUnary } from "../proto/grpc.ts";
import {
  cometStreamServiceDefinition,
  type PushStreamService,
  servePushStream,
} from "../proto/push_stream.ts";
import {
  type CometOperatorApi,
  type OperatorMethods,
  operatorServiceDefinition,
} from "../proto/operator.ts";
import { bindInternal, createInternalServer } from "../proto/security.ts";
import { ReasonCode } from "../protocol/mod.ts";
import { type Health, serveAdmin } from "./admin.ts";
import { resetCoalesceMemo } from "./coalesce.ts";
import { Flusher } from "./flusher.ts";
import { CometMetrics } from "./metrics.ts";
import { renewOnline } from "./online.ts";
import { CometOperator } from "./operator.ts";
import { Registration } from "./registration.ts";
import { CometService } from "./service.ts";
import { ConnectionHub } from "./hub.ts";
import { type AcceptGate, ListenQueues, type Refusal, SocketServer } from "./socket.ts";
import { listenTcp } from "./tcp.ts";
import { listenWebSocket } from "./websocket.ts";

/** What a comet is built from. */
export interface CometDeps {
  /** The configuration (comet.*, node.id, protocol.max_body, log.*, metrics.*). */
  config: Config;
  /** logic: its service object (embedded) or a gRPC client (distributed). */
  logic: LogicApi;
  /** Where the comet registers itself. */
  registry: Registry;
  /** Logger; default from cfg.log with `role: "comet"`. */
  log?: Logger;
  /** Metrics registry; default `createMetrics("comet")`. */
  metrics?: Metrics;
  /**
   * logic's `goim.logic.Streams` (Recover, Acks): its service object
   * (embedded) or a client (distributed). Without it, connections that opt
   * in to streams still get StreamMsg frames, and every recovery answers
   * `unavailable` (docs/STREAMS.md).
   */
  streams?: StreamsApi;
}

/** Addresses the comet bound (real ports when port 0 was configured). */
export interface CometAddrs {
  /** Raw TCP listeners. */
  tcp: Deno.NetAddr[];
  /** WebSocket listeners (path /sub). */
  ws: Deno.NetAddr[];
  /** WSS listeners (path /sub). */
  wss: Deno.NetAddr[];
  /** gRPC `host:port` job dials, when gRPC is served. */
  grpc?: string;
  /** Admin HTTP endpoint, when enabled. */
  admin?: Deno.NetAddr;
}

/** Options of {@linkcode Comet.start}. */
export interface CometStartOptions {
  /** Serve gRPC `goim.comet.Comet` on comet.grpc.bind (default true; embedded passes false). */
  grpc?: boolean;
}

// A refusal storm logs one line per this period, with the count.
const REFUSAL_LOG_MS = 10_000;
// Refusing on a sample older than this looks again first (one stat call).
const FD_RESAMPLE_MS = 100;

/** Resolves after `p` or `ms`, whichever comes first; clears its timer either way. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), Math.max(0, ms)))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One comet: listeners, connections, the push service and periodic work.
 *
 * @example
 * ```ts
 * declare const { config, logic, registry }: CometDeps;
 * const comet = new Comet({ config, logic, registry });
 * const { tcp, ws } = await comet.start();
 * console.log(comet.stats()); // { connections: 0, rooms: 0, ips: 0 }
 * await comet.shutdown("SIGTERM");
 * ```
 */
export class Comet {
  /** This comet's id (cfg.node.id): the `server` of routes and logic calls. */
  readonly id: string;
  /** PushMsg / Broadcast / BroadcastRoom / Rooms, callable in-process. */
  readonly service: CometApi;
  /** The metrics registry (`goim_comet_*`). */
  readonly metrics: Metrics;
  /** `goim.operator.CometOperator` (logic's console), callable in-process (comet/operator.ts). */
  readonly operator: CometOperatorApi;

  readonly #cfg: Config;
  readonly #logic: LogicApi;
  readonly #log: Logger;
  readonly #cometMetrics: CometMetrics;
  readonly #flusher: Flusher;
  readonly #hub: ConnectionHub;
  readonly #cometService: CometService;
  readonly #registration: Registration;
  readonly #operator: CometOperator;
  #tcp: SocketServer | null = null;
  #ws: SocketServer | null = null;
  #wss: SocketServer | null = null;
  #grpc: grpc.Server | null = null;
  #pushStreams: PushStreamService | null = null;
  #grpcAddr = "";
  #admin: Deno.HttpServer<Deno.NetAddr> | null = null;
  readonly #fds: FdBudget;
  readonly #gate: AcceptGate;
  readonly #relistens: Counter<"transport">;
  readonly #refusals = new LogThrottle(REFUSAL_LOG_MS);
  #listenersCheckedAt = -Infinity;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #renewTimer: ReturnType<typeof setInterval> | undefined;
  #renewing: Promise<void> | null = null;
  #started = false;
  #shutdown: Promise<void> | null = null;

  /** Builds the comet; nothing is bound until {@linkcode Comet.start}. */
  constructor(deps: CometDeps) {
    const cfg = deps.config;
    this.#cfg = cfg;
    this.id = cfg.node.id;
    this.#logic = deps.logic;
    this.#log = deps.log ?? roleLogger(cfg, "comet");
    this.metrics = deps.metrics ?? createMetrics("comet");
    this.#cometMetrics = new CometMetrics(this.metrics);
    this.#flusher = new Flusher();
    this.#hub = new ConnectionHub({
      id: this.id,
      config: cfg,
      logic: deps.logic,
      log: this.#log,
      metrics: this.#cometMetrics,
      flusher: this.#flusher,
      streams: deps.streams,
    });
    this.#cometService = new CometService(this.#hub, this.#cometMetrics, this.#log);
    const reserve = cfg.comet.limits.fd_reserve;
    this.#fds = new FdBudget({ reserve });
    this.#gate = {
      refusing: 0,
      // Refused sockets lingering for their goodbye live in the reserve.
      maxRefusing: Math.max(1, Math.floor(reserve / 4)),
      admit: () => this.#admit(),
      refused: (transport) => this.#refused(transport),
    };
    this.#relistens = this.metrics.counter(
      "listener_restarts_total",
      "Client listeners closed and bound again because they stopped accepting (clients waited in the accept queue), by transport.",
      ["transport"],
    );
    this.service = this.#cometService;
    this.#operator = new CometOperator({
      id: this.id,
      hub: this.#hub,
      metrics: this.#cometMetrics,
      register: () => this.#registration.register(),
      deregister: () => this.#registration.deregister(),
      log: this.#log,
    });
    this.operator = this.#operator;
    this.#registration = new Registration(
      deps.registry,
      cfg.comet.renew_online_interval,
      () => ({
        id: this.id,
        grpcAddr: this.#grpcAddr,
        addrs: [...cfg.comet.addrs],
        tcpPort: this.#tcp?.addrs[0]?.port ?? 0,
        wsPort: this.#ws?.addrs[0]?.port ?? 0,
        wssPort: this.#wss?.addrs[0]?.port ?? 0,
        // A draining comet is offered to no new client (docs/CONSOLE.md, "Drain").
        weight: this.#operator.registryState === "draining" ? 0 : cfg.comet.weight,
        state: this.#operator.registryState,
        connections: this.#hub.connections,
        ips: this.#hub.ips.size,
        region: cfg.node.region,
        zone: cfg.node.zone,
      }),
    );
  }

  /**
   * Binds every configured listener, registers the comet and starts the
   * periodic work. Listeners bound before a failing one are closed again.
   */
  async start(opts: CometStartOptions = {}): Promise<CometAddrs> {
    if (this.#started) throw new Error("comet already started");
    if (this.#shutdown) throw new Error("comet is shut down");
    this.#started = true;
    this.#operator.hold(acquireLoopLag());
    const c = this.#cfg.comet;
    const hub = this.#hub;
    try {
      if (c.tcp.sndbuf > 0 || c.tcp.rcvbuf > 0) {
        this.#log.warn("comet.tcp.sndbuf/rcvbuf are not settable under Deno; using OS defaults");
      }
      if (c.tcp.bind.length > 0) {
        this.#tcp = await listenTcp(hub, {
          binds: c.tcp.bind,
          keepalive: c.tcp.keepalive,
          log: this.#log,
        });
      }
      if (c.websocket.bind.length > 0) {
        this.#ws = await listenWebSocket(hub, {
          binds: c.websocket.bind,
          kind: "ws",
          log: this.#log,
          maxFragments: c.websocket.max_fragments,
          inputBuffer: c.limits.input_buffer,
        });
      }
      if (c.websocket.tls_bind.length > 0) {
        const [cert, key] = await Promise.all([
          Deno.readTextFile(c.websocket.cert_file),
          Deno.readTextFile(c.websocket.key_file),
        ]);
        this.#wss = await listenWebSocket(hub, {
          binds: c.websocket.tls_bind,
          kind: "wss",
          cert,
          key,
          log: this.#log,
          maxFragments: c.websocket.max_fragments,
          inputBuffer: c.limits.input_buffer,
        });
      }
      this.#wireListeners();
      if (opts.grpc ?? true) await this.#startGrpc(c.grpc.bind);
      if (c.admin.bind !== "") {
        this.#admin = serveAdmin({
          bind: c.admin.bind,
          metricsEnabled: this.#cfg.metrics.enabled,
          metrics: this.metrics,
          beforeScrape: () => this.#syncMetrics(),
          health: () => this.#health(),
          // Its HTTP bounds and admin.token come from the same config as the rest.
          config: this.#cfg,
          log: this.#log,
        });
      }
    } catch (e) {
      await this.#stopAccepting(0).finish();
      throw e;
    }
    this.#sweepTimer = setInterval(() => {
      hub.sweep();
      this.#watch();
      this.#syncMetrics();
    }, hub.sweepIntervalMs);
    this.#renewTimer = setInterval(() => void this.#renew(), c.renew_online_interval);
    await this.#renew();
    const addrs: CometAddrs = {
      tcp: this.#tcp?.addrs ?? [],
      ws: this.#ws?.addrs ?? [],
      wss: this.#wss?.addrs ?? [],
    };
    if (this.#grpc) addrs.grpc = this.#grpcAddr;
    if (this.#admin) addrs.admin = this.#admin.addr;
    this.#log.info("comet started", {
      tcp: addrs.tcp.map(joinHostPort),
      ws: addrs.ws.map(joinHostPort),
      wss: addrs.wss.map(joinHostPort),
      grpc: addrs.grpc,
    });
    return addrs;
  }

  /**
   * Bytes waiting in send queues over all connections, not yet handed to a
   * socket (a push queued for 1,000 connections counts 1,000 times, though
   * its bytes exist once). A cheap load signal: it grows when pushes arrive
   * faster than the sockets take them.
   */
  get queuedBytes(): number {
    return this.#hub.queuedBytes;
  }

  /** Connections, rooms and distinct client IPs right now. */
  stats(): { connections: number; rooms: number; ips: number } {
    const hub = this.#hub;
    return { connections: hub.connections, rooms: hub.online.rooms, ips: hub.ips.size };
  }

  /**
   * Graceful shutdown, bounded by comet.shutdown_deadline: stop accepting,
   * deregister, op 6 (4006) to every client and flush, logic.Disconnect for
   * each, close. Whatever is still open at the deadline is closed anyway.
   * Idempotent: later calls return the first call's promise.
   */
  shutdown(reason = "shutdown"): Promise<void> {
    return this.#shutdown ??= this.#doShutdown(reason);
  }

  async #doShutdown(reason: string): Promise<void> {
    const hub = this.#hub;
    const deadline = performance.now() + this.#cfg.comet.shutdown_deadline;
    const left = () => deadline - performance.now();
    hub.shuttingDown = true;
    this.#log.info("comet shutting down", { reason, connections: hub.connections });
    clearInterval(this.#renewTimer);
    this.#cometService.stop();
    this.#operator.stop();
    const listeners = this.#stopAccepting(deadline);
    if (this.#started) {
      try {
        await within(this.#registration.deregister(), left());
      } catch (e) {
        this.#log.warn("registry deregister failed", { error: e });
      }
    }
    hub.endAll(
      { code: ReasonCode.ShuttingDown, message: "server shutting down" },
      "shutdown",
      Math.max(0, left()),
    );
    await within(hub.allClosed(), left());
    if (hub.sockets > 0) {
      this.#log.warn("shutdown deadline reached; closing remaining connections", {
        open: hub.sockets,
      });
      hub.abortAll();
    }
    await within(hub.disconnectsDrained(), left());
    clearInterval(this.#sweepTimer);
    hub.streams.stop();
    await this.#flusher.stop();
    await listeners.finish();
    resetCoalesceMemo();
    this.#syncMetrics();
    this.#log.info("comet stopped", { reason });
  }

  // Descriptors the comet tracks itself: open client sockets, refused ones included.
  #owned(): number {
    return this.#hub.sockets + this.#gate.refusing;
  }

  // At accept, before any channel: whether the new socket fits the budget.
  #admit(): boolean {
    const b = this.#fds;
    const owned = this.#owned();
    if (b.fits(owned)) return true;
    if (b.sampleAge < FD_RESAMPLE_MS) return false;
    // Others may have closed descriptors since the sweep; the socket being
    // decided on is already open (the sample sees it), hence owned + 1.
    b.sample(owned + 1);
    return b.fits(owned);
  }

  #refused(transport: string): void {
    this.#cometMetrics.limitCloses.inc({ limit: "fd_budget" });
    const refused = this.#refusals.take();
    if (refused === null) return;
    this.#log.warn(
      "refusing client connections: open descriptors reached the process limit minus comet.limits.fd_reserve",
      { transport, refused, ...this.#fds.stats(this.#owned()) },
    );
  }

  // Puts every client listener behind the descriptor budget and names it.
  #wireListeners(): void {
    const all: [string, SocketServer | null, Refusal][] = [
      ["tcp", this.#tcp, "op6"],
      ["ws", this.#ws, "http503"],
      ["wss", this.#wss, "http503"],
    ];
    for (const [transport, srv, refusal] of all) {
      srv?.wire({
        transport,
        gate: this.#gate,
        refusal,
        onRelisten: () => this.#relistens.inc({ transport }),
      });
    }
    const b = this.#fds;
    b.sample(this.#owned());
    const st = b.stats(this.#owned());
    if (st.limit === null) {
      // Deno grants /proc only to --allow-all: with narrower flags neither
      // the budget nor the listener watch can see anything.
      this.#log.warn(
        "descriptor budget and listener watch are off: cannot read /proc/self/limits (not Linux, or Deno runs without --allow-all)",
        { ...st },
      );
    } else if (!b.fits(0, 1)) {
      this.#log.warn(
        "comet.limits.fd_reserve leaves no descriptor for clients: every one is refused",
        { ...st },
      );
    } else {
      this.#log.info("descriptor budget", { ...st });
    }
  }

  // On the sweep: re-count descriptors; about once a second, check that
  // every listener still accepts.
  #watch(now = performance.now()): void {
    this.#fds.sample(this.#owned());
    // Checks must be about CHECK_INTERVAL_MS apart even when sweeps are faster.
    if (now - this.#listenersCheckedAt < SocketServer.CHECK_INTERVAL_MS * 0.9) return;
    this.#listenersCheckedAt = now;
    const queues = new ListenQueues();
    try {
      this.#tcp?.check(queues);
      this.#ws?.check(queues);
      this.#wss?.check(queues);
    } finally {
      queues.close();
    }
  }

  #health(): Health {
    const hub = this.#hub;
    const listeners: Health["listeners"] = [];
    const all: [string, SocketServer | null][] = [
      ["tcp", this.#tcp],
      ["ws", this.#ws],
      ["wss", this.#wss],
    ];
    for (const [transport, srv] of all) {
      for (const l of srv?.listeners() ?? []) listeners.push({ transport, ...l });
    }
    return {
      status: hub.shuttingDown
        ? "shutting_down"
        : listeners.every((l) => l.state === "listening")
        ? "ok"
        : "degraded",
      id: this.id,
      ...this.stats(),
      rss: Deno.memoryUsage().rss,
      listeners,
      fds: this.#fds.stats(this.#owned()),
    };
  }

  #syncMetrics(): void {
    const hub = this.#hub;
    const m = this.#cometMetrics;
    m.connections.set({ transport: "tcp" }, hub.byTransport[0]);
    m.connections.set({ transport: "ws" }, hub.byTransport[1]);
    m.connections.set({ transport: "wss" }, hub.byTransport[2]);
    m.rooms.set(hub.online.rooms);
    m.queuedBytes.set(hub.queuedBytes);
    m.streamConnectionsNow = hub.streams.connections;
    m.sync();
  }

  async #renew(): Promise<void> {
    if (this.#renewing) return;
    const hub = this.#hub;
    this.#renewing = (async () => {
      const [online, reg] = await Promise.allSettled([
        renewOnline(this.#logic, this.id, hub.online),
        // A drained comet has left the registry for good.
        this.#operator.registers ? this.#registration.register() : Promise.resolve(),
      ]);
      // Messages only: these repeat every interval while logic or the registry is down.
      if (online.status === "rejected") {
        this.#log.warn("logic RenewOnline failed", { error: errorMessage(online.reason) });
      }
      if (reg.status === "rejected") {
        this.#log.warn("registry register failed", { error: errorMessage(reg.reason) });
      }
    })();
    try {
      await this.#renewing;
    } finally {
      this.#renewing = null;
    }
  }

  async #startGrpc(bind: string): Promise<void> {
    const server = createInternalServer(this.#cfg.grpc, { log: this.#log, metrics: this.metrics });
    const svc = this.#cometService;
    const handlers: CometHandlers = {
      PushMsg: svc.PushMsg,
      Broadcast: svc.Broadcast,
      BroadcastRoom: svc.BroadcastRoom,
      Rooms: svc.Rooms,
    };
    server.addService(
      cometServiceDefinition,
      serveUnary(handlers, {
        onError: (method, error) => this.#log.warn("comet rpc failed", { method, error }),
      }),
    );
    server.addService(
      operatorServiceDefinition,
      serveUnary<OperatorMethods>(this.operator, {
        onError: (method, error) => {
          if (!(error instanceof RpcError)) {
            this.#log.warn("operator rpc failed", { method, error });
          }
        },
      }),
    );
    // Key pushes on a stream (our extension; goim's job keeps using PushMsg).
    this.#pushStreams = servePushStream({
      push: (req) => svc.pushMsg(req, true),
      onBatch: svc.streamBatch,
    });
    server.addService(cometStreamServiceDefinition, this.#pushStreams.implementation);
    this.#grpc = server;
    const port = await bindInternal(server, bind, this.#cfg.grpc, {
      key: "comet.grpc.bind",
      log: this.#log,
    });
    // What job (and goim's job, through discovery) dials: comet.grpc.advertise, or the bind's
    // host made dialable (a wildcard bind advertises the host name).
    this.#grpcAddr = advertisedAddr(this.#cfg.comet.grpc.advertise, bind, port);
  }

  // Stops accepting: every listener closes now (their promises settle once
  // the accepted sockets are gone too, which the caller sees to); gRPC
  // finishes the calls in flight, bounded by `deadline`. The admin endpoint
  // stays up until `finish` so /healthz can say 503 meanwhile.
  #stopAccepting(deadline: number): { accepting: Promise<void>; finish: () => Promise<void> } {
    const left = () => Math.max(0, deadline - performance.now());
    const listeners = [this.#tcp, this.#ws, this.#wss].flatMap((l) => (l ? [l.close()] : []));
    const g = this.#grpc;
    // Long-lived push streams would hold tryShutdown until the deadline.
    this.#pushStreams?.close();
    const accepting = g
      ? within(new Promise<void>((r) => g.tryShutdown(() => r())), left()).then(() =>
        g.forceShutdown()
      )
      : Promise.resolve();
    let finished: Promise<void> | null = null;
    const finish = () =>
      finished ??= (async () => {
        await accepting;
        await within(Promise.all(listeners), left());
        await this.#admin?.shutdown();
      })();
    return { accepting, finish };
  }
}

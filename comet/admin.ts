/**
 * The comet's admin HTTP endpoint (comet.admin.bind): `/metrics` in the
 * Prometheus text format and `/healthz` for load balancers and probes.
 *
 * `/healthz` answers 200 with a small JSON status while the comet serves,
 * and 503 once it is shutting down, so a balancer stops sending clients
 * before the listeners close. It runs on the bounded HTTP server with the
 * `admin.token` check (infra/admin.ts `serveAdminHttp`).
 *
 * @module
 */

import { serveAdminHttp } from "../infra/admin.ts";
import { type Config, loadConfig } from "../infra/config.ts";
import { createLogger, type Logger } from "../infra/log.ts";
import { type Metrics, metricsResponse, processMetrics } from "../infra/metrics.ts";
import type { FdStats } from "../infra/fds.ts";
import type { ListenerStatus } from "./socket.ts";

/** What `/healthz` reports. */
export interface Health {
  /**
   * `ok`; `degraded` when a client listener is not `listening` (see
   * `listeners`), or `shutting_down`: both answered with 503.
   */
  status: "ok" | "degraded" | "shutting_down";
  /** This comet's id. */
  id: string;
  /** Authenticated connections. */
  connections: number;
  /** Rooms with members. */
  rooms: number;
  /** Distinct client IPs. */
  ips: number;
  /** Resident set size of the process in bytes. */
  rss: number;
  /** Every client listener (`tcp`, `ws`, `wss`), its address and state (comet/socket.ts `ListenerState`). */
  listeners: Array<ListenerStatus & { transport: string }>;
  /** Open descriptors, the process limit (null: unknown) and comet.limits.fd_reserve. */
  fds: FdStats;
}

/** Options of {@linkcode serveAdmin}. */
export interface AdminOptions {
  /** `host:port` (comet.admin.bind, non-empty). */
  bind: string;
  /** Serve `/metrics` (metrics.enabled). */
  metricsEnabled: boolean;
  /** The comet's registry. */
  metrics: Metrics;
  /** Folds hot-path counters and gauges in before a scrape. */
  beforeScrape(): void;
  /** The current health. */
  health(): Health;
  /** `http.*` bounds and `admin.token`; absent = the defaults (no token). */
  config?: Pick<Config, "http" | "admin">;
  /** Accept failures and handler errors; absent = a default logger. */
  log?: Logger;
}

/**
 * Starts the admin server.
 *
 * @example
 * ```ts ignore
 * const admin = serveAdmin({ bind: "127.0.0.1:3190", metricsEnabled: true, metrics, beforeScrape, health });
 * await fetch(`http://127.0.0.1:${admin.addr.port}/healthz`);
 * await admin.shutdown();
 * ```
 */
export function serveAdmin(opts: AdminOptions): Deno.HttpServer<Deno.NetAddr> {
  const config = opts.config ?? loadConfig({ args: [], env: {} });
  const log = opts.log ?? createLogger({ fields: { role: "comet" } });
  return serveAdminHttp({ bind: opts.bind, config, log, metrics: opts.metrics }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/healthz") {
      const h = opts.health();
      return Response.json(h, { status: h.status === "ok" ? 200 : 503 });
    }
    if (path === "/metrics" && opts.metricsEnabled) {
      opts.beforeScrape();
      return await metricsResponse(opts.metrics, processMetrics());
    }
    return new Response("not found\n", { status: 404 });
  });
}

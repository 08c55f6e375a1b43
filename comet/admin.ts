/**
 * The comet's admin HTTP endpoint (comet.admin.bind): `/metrics` in the
 * Prometheus text format and `/healthz` for load balancers and probes.
 *
 * `/healthz` answers 200 with a small JSON status while the comet serves,
 * and 503 once it is shutting down, so a balancer stops sending clients
 * before the listeners close. The routes, the bounded HTTP server and the
 * `admin.token` check are every role's (infra/admin.ts); this module says
 * what the comet's health is.
 *
 * @module
 */

import { createAdminHandler, serveAdminHttp } from "../infra/admin.ts";
import type { Config } from "../infra/config.ts";
import type { Logger } from "../infra/log.ts";
import type { Metrics } from "../infra/metrics.ts";
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
  /** `http.*` bounds and `admin.token`. */
  config: Pick<Config, "http" | "admin">;
  /** Accept failures and handler errors. */
  log: Logger;
}

/**
 * Starts the admin server.
 *
 * @example
 * ```ts
 * declare const { metrics, beforeScrape, health, config, log }: AdminOptions;
 * const admin = serveAdmin({
 *   bind: "127.0.0.1:3190", metricsEnabled: true, metrics, beforeScrape, health, config, log,
 * });
 * await fetch(`http://127.0.0.1:${admin.addr.port}/healthz`);
 * await admin.shutdown();
 * ```
 */
export function serveAdmin(opts: AdminOptions): Deno.HttpServer<Deno.NetAddr> {
  const { bind, config, log, metrics } = opts;
  return serveAdminHttp(
    { bind, config, log, metrics },
    createAdminHandler({
      health: () => {
        const body = opts.health();
        return { healthy: body.status === "ok", body };
      },
      metrics: opts.metricsEnabled ? metrics : undefined,
      beforeScrape: opts.beforeScrape,
    }),
  );
}

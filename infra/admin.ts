/**
 * The admin endpoint every role serves, one handler for all
 * ({@linkcode createAdminHandler}): `GET /healthz` (200 when healthy, else
 * 503, with a JSON body) and `GET /metrics` (Prometheus text, own metrics
 * plus process metrics; 404 when disabled). Other methods get 405, other
 * paths 404. What differs per role is only what `/healthz` reports and
 * which registry `/metrics` shows: comet/admin.ts, logic/admin.ts and
 * job/admin.ts supply those.
 *
 * Every admin listener is started by {@linkcode serveAdminHttp} (logic's
 * by its own listener code, with {@linkcode requireAdminToken}): the
 * `http.*` bounds of ./http_server.ts, and with `admin.token` set, every
 * path but `/healthz` answers 401 unless the request carries
 * `Authorization: Bearer <admin.token>` (compared in constant time).
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import type { Config } from "./config.ts";
import { httpLimits, type HttpServer, type ServeHandler, serveHttp } from "./http_server.ts";
import type { Logger } from "./log.ts";
import { type Metrics, metricsResponse, processMetrics } from "./metrics.ts";

/** What an admin handler serves. */
export interface AdminRoutes {
  /** `/healthz`: whether the role is healthy, and the JSON body to answer with. */
  health(): { healthy: boolean; body: unknown };
  /** `/metrics` source; absent = `/metrics` is 404. */
  metrics?: Metrics;
  /** Called before each scrape, to fold counters kept outside the registry in. */
  beforeScrape?(): void;
}

/**
 * Builds the admin request handler.
 *
 * @example
 * ```ts
 * import type { Metrics } from "./metrics.ts";
 * declare const metrics: Metrics;
 * Deno.serve({ hostname: "127.0.0.1", port: 3192 }, createAdminHandler({
 *   health: () => ({ healthy: true, body: { status: "ok" } }),
 *   metrics,
 * }));
 * ```
 */
export function createAdminHandler(routes: AdminRoutes): (req: Request) => Promise<Response> {
  return async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET" } });
    }
    const path = new URL(req.url).pathname;
    if (path === "/healthz") {
      const { healthy, body } = routes.health();
      return Response.json(body, { status: healthy ? 200 : 503 });
    }
    if (path === "/metrics" && routes.metrics) {
      routes.beforeScrape?.();
      return await metricsResponse(routes.metrics, processMetrics());
    }
    return new Response("not found\n", { status: 404 });
  };
}

function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

/**
 * Wraps an admin handler so that, when `token` is not empty, every path
 * but `/healthz` (which probes need without secrets) requires
 * `Authorization: Bearer <token>`; others get 401. Digests are compared, so
 * the time taken says nothing about the token or its length.
 *
 * @example
 * ```ts
 * import type { Config } from "./config.ts";
 * declare const config: Config, routes: AdminRoutes;
 * const guarded = requireAdminToken(config.admin.token, createAdminHandler(routes));
 * ```
 */
export function requireAdminToken<H extends ServeHandler>(token: string, handler: H): H {
  if (token === "") return handler;
  const want = digest(token);
  return ((req, info) => {
    if (new URL(req.url).pathname === "/healthz") return handler(req, info);
    const m = /^Bearer +(\S+) *$/i.exec(req.headers.get("authorization") ?? "");
    if (m !== null && timingSafeEqual(digest(m[1]), want)) return handler(req, info);
    return new Response("unauthorized: send Authorization: Bearer <admin.token>\n", {
      status: 401,
      headers: { "www-authenticate": 'Bearer realm="admin"', "content-type": "text/plain" },
    });
  }) as H;
}

/** Options of {@linkcode serveAdminHttp}. */
export interface AdminHttpOptions {
  /** `host:port` (`<role>.admin.bind`, non-empty). */
  bind: string;
  /** `http.*` bounds and `admin.token`. */
  config: Pick<Config, "http" | "admin">;
  /** Accept failures and handler errors. */
  log: Logger;
  /** The role's registry, for the `http_*` listener metrics. */
  metrics?: Metrics;
}

/**
 * Starts an admin listener: `handler` behind {@linkcode requireAdminToken},
 * on the bounded HTTP server. Throws when `bind` cannot be bound.
 *
 * @example
 * ```ts
 * import type { Config } from "./config.ts";
 * import type { Logger } from "./log.ts";
 * import type { Metrics } from "./metrics.ts";
 * declare const config: Config, log: Logger, metrics: Metrics;
 * declare function handler(req: Request): Promise<Response>;
 * const server = serveAdminHttp({ bind: config.job.admin.bind, config, log, metrics }, handler);
 * ```
 */
export function serveAdminHttp(opts: AdminHttpOptions, handler: ServeHandler): HttpServer {
  return serveHttp(
    {
      bind: opts.bind,
      listener: "admin",
      limits: httpLimits(opts.config),
      log: opts.log,
      metrics: opts.metrics,
    },
    requireAdminToken(opts.config.admin.token, handler),
  );
}

/**
 * The admin endpoint every role serves: `GET /healthz` (200 when healthy,
 * else 503, with a JSON body) and `GET /metrics` (Prometheus text, own
 * metrics plus process metrics; 404 when disabled). Other methods get 405,
 * other paths 404.
 *
 * @module
 */

import { type Metrics, metricsResponse, processMetrics } from "./metrics.ts";

/** What an admin handler serves. */
export interface AdminRoutes {
  /** `/healthz`: whether the role is healthy, and the JSON body to answer with. */
  health(): { healthy: boolean; body: unknown };
  /** `/metrics` source; absent = `/metrics` is 404. */
  metrics?: Metrics;
}

/**
 * Builds the admin request handler.
 *
 * @example
 * ```ts ignore
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
      return await metricsResponse(routes.metrics, processMetrics());
    }
    return new Response("not found\n", { status: 404 });
  };
}

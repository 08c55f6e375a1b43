/**
 * The logic role's admin endpoint (`logic.admin.bind`, loopback by default
 * because metrics reveal internals):
 *
 * - `GET /metrics`: Prometheus text, `goim_logic_*` plus process metrics
 *   (404 when `metrics.enabled` is false);
 * - `GET /healthz`: `200 {"status":"ok","queue":true}` while the queue
 *   producer reports healthy, else `503 {"status":"unavailable","queue":false}`,
 *   so a load balancer stops sending pushes to a logic that cannot queue them.
 *
 * @module
 */

import { metricsResponse, processMetrics } from "../infra/metrics.ts";
import type { PushProducer } from "../infra/queue.ts";
import type { LogicMetrics } from "./metrics.ts";

/** What {@linkcode createAdminHandler} needs. */
export interface AdminDeps {
  /** The queue whose health `/healthz` reports. */
  producer: PushProducer;
  /** Metrics to expose; omitted = `/metrics` is 404. */
  metrics?: LogicMetrics;
}

/**
 * Builds the admin handler.
 *
 * @example
 * ```ts ignore
 * Deno.serve({ port: 3191, hostname: "127.0.0.1" }, createAdminHandler({ producer, metrics }));
 * ```
 */
export function createAdminHandler(deps: AdminDeps): (req: Request) => Promise<Response> {
  return async (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET" } });
    }
    if (path === "/healthz") {
      let healthy = false;
      try {
        healthy = deps.producer.healthy();
      } catch {
        // A throwing probe is as good as a failing one.
      }
      return Response.json(
        { status: healthy ? "ok" : "unavailable", queue: healthy },
        { status: healthy ? 200 : 503 },
      );
    }
    if (path === "/metrics" && deps.metrics) {
      return await metricsResponse(deps.metrics.registry, processMetrics());
    }
    return new Response("not found\n", { status: 404 });
  };
}

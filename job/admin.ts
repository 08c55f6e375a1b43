/**
 * The job role's admin endpoint (`job.admin.bind`, loopback by default):
 *
 * - `GET /metrics`: Prometheus text, `goim_job_*` plus process metrics
 *   (404 when `metrics.enabled` is false);
 * - `GET /healthz`: `200` while job runs and its consumer is healthy, else
 *   `503`; the JSON body lists the comets job delivers to (id, address,
 *   whether it is down, calls queued, rooms known).
 *
 * @module
 */

import { metricsResponse, processMetrics } from "../infra/metrics.ts";
import type { Job } from "./job.ts";

/**
 * Builds the admin handler for `job`; `/metrics` is served when `metrics` is true.
 *
 * @example
 * ```ts ignore
 * Deno.serve({ hostname: "127.0.0.1", port: 3192 }, createJobAdminHandler(job, true));
 * ```
 */
export function createJobAdminHandler(
  job: Job,
  metrics: boolean,
): (req: Request) => Promise<Response> {
  return async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET" } });
    }
    const path = new URL(req.url).pathname;
    if (path === "/healthz") {
      const healthy = job.healthy();
      return Response.json(
        { status: healthy ? "ok" : "unavailable", ...job.status() },
        { status: healthy ? 200 : 503 },
      );
    }
    if (path === "/metrics" && metrics) return await metricsResponse(job.metrics, processMetrics());
    return new Response("not found\n", { status: 404 });
  };
}

/**
 * Splits `host:port` (IPv6 in brackets); an empty host means all interfaces.
 *
 * @example
 * ```ts
 * splitBind("[::1]:3192"); // { hostname: "::1", port: 3192 }
 * ```
 */
export function splitBind(addr: string): { hostname: string; port: number } {
  const i = addr.lastIndexOf(":");
  let host = addr.slice(0, i);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return { hostname: host === "" ? "0.0.0.0" : host, port: Number(addr.slice(i + 1)) };
}

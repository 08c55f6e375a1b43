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

import { createAdminHandler } from "../infra/admin.ts";
import type { Job } from "./job.ts";

/**
 * Builds the admin handler for `job` (infra/admin.ts `createAdminHandler`
 * with job's health); `/metrics` is served when `metrics` is true.
 *
 * @example
 * ```ts
 * import { type AdminHttpOptions, serveAdminHttp } from "../infra/admin.ts";
 * import type { Job } from "./job.ts";
 * declare const { config, log }: AdminHttpOptions, job: Job;
 * serveAdminHttp({ bind: "127.0.0.1:3192", config, log }, createJobAdminHandler(job, true));
 * ```
 */
export function createJobAdminHandler(
  job: Job,
  metrics: boolean,
): (req: Request) => Promise<Response> {
  return createAdminHandler({
    health: () => {
      const healthy = job.healthy();
      return { healthy, body: { status: healthy ? "ok" : "unavailable", ...job.status() } };
    },
    metrics: metrics ? job.metrics : undefined,
  });
}

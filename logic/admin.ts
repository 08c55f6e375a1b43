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

import { createAdminHandler } from "../infra/admin.ts";
import type { PushProducer } from "../infra/queue.ts";
import type { LogicMetrics } from "./metrics.ts";

/** What {@linkcode createLogicAdminHandler} needs. */
export interface AdminDeps {
  /** The queue whose health `/healthz` reports. */
  producer: PushProducer;
  /** Metrics to expose; omitted = `/metrics` is 404. */
  metrics?: LogicMetrics;
}

/**
 * Builds the admin handler (infra/admin.ts `createAdminHandler` with
 * logic's health).
 *
 * @example
 * ```ts
 * import { type AdminHttpOptions, serveAdminHttp } from "../infra/admin.ts";
 * declare const { config, log }: AdminHttpOptions, { producer, metrics }: AdminDeps;
 * serveAdminHttp({ bind: "127.0.0.1:3191", config, log }, createLogicAdminHandler({ producer, metrics }));
 * ```
 */
export function createLogicAdminHandler(deps: AdminDeps): (req: Request) => Promise<Response> {
  return createAdminHandler({
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
}

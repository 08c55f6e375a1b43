/**
 * The logic role's Prometheus metrics, all named `goim_logic_*`, declared
 * in one place so that /metrics documents itself and the modules that
 * count share one set of names.
 *
 * @module
 */

import {
  type Counter,
  createMetrics,
  exponentialBuckets,
  type Gauge,
  type Histogram,
  type Metrics,
} from "../infra/metrics.ts";

/**
 * Every metric of the logic role.
 *
 * @example
 * ```ts
 * import { createLogicMetrics } from "./metrics.ts";
 * const m = createLogicMetrics();
 * m.authFailures.inc({ reason: "expired" });
 * await m.registry.text(); // contains goim_logic_auth_failures_total{reason="expired"} 1
 * ```
 */
export interface LogicMetrics {
  /** The underlying role registry (for `/metrics`). */
  readonly registry: Metrics;
  /** HTTP API requests by route and response code. */
  readonly httpRequests: Counter<"route" | "code">;
  /** HTTP API request latency by route. */
  readonly httpSeconds: Histogram<"route">;
  /** PushMsg messages published to the queue, by type. */
  readonly published: Counter<"type">;
  /** Keys a push was routed to (found a live route). */
  readonly pushTargets: Counter<"kind">;
  /** Publishes refused because the queue was unavailable. */
  readonly queueUnavailable: Counter;
  /** Connect RPCs by result (`ok`, `unauthenticated`, `error`). */
  readonly connects: Counter<"result">;
  /** Rejected authentications by reason (`expired`, `bad_signature`, ...). */
  readonly authFailures: Counter<"reason">;
  /** Disconnect RPCs by whether a route was removed. */
  readonly disconnects: Counter<"removed">;
  /** Heartbeat RPCs by whether the route had to be re-added. */
  readonly heartbeats: Counter<"readded">;
  /** RenewOnline reports received. */
  readonly onlineReports: Counter;
  /** Comets whose room counts are in the current aggregate. */
  readonly onlineServers: Gauge;
  /** Stored online reports a refresh skipped, by reason (`unreadable`, `store`). */
  readonly onlineSkipped: Counter<"reason">;
  /** Upstream messages received (Receive RPC). */
  readonly upstream: Counter;
  /** Upstream messages delivered to the webhook. */
  readonly webhookDelivered: Counter;
  /** Webhook delivery retries. */
  readonly webhookRetries: Counter;
  /** Upstream messages dropped, by reason (`buffer_full`, `failed`, `rejected`, `shutdown`). */
  readonly webhookDropped: Counter<"reason">;
  /** Upstream messages waiting for delivery. */
  readonly webhookQueued: Gauge;
  /** Pushes accepted by the push API, by kind (`keys`, `mids`, `room`, `all`) and `ack`. */
  readonly pushes: Counter<"kind" | "ack">;
  /** Ended waits of ack-requested pushes (`wait=`), by outcome (logic/push_wait.ts). */
  readonly pushWaits: Counter<"outcome">;
  /** Requests waiting for acks now. */
  readonly pushWaitsActive: Gauge;
  /** `GET /goim/push/status` reads by result (`found`, `unknown`, `error`). */
  readonly statusReads: Counter<"result">;
  /** `GET /goim/history` reads by result (`ok`, `disabled`, `error`). */
  readonly historyReads: Counter<"result">;
  /** Recover calls (goim.logic.Streams) by result (`ok`, `invalid`). */
  readonly recoverCalls: Counter<"result">;
  /** Streams Recover answered, by result (`recovered`, `state`, or the reason it was not). */
  readonly recoverStreams: Counter<"result">;
  /** Client acks received through Acks, by result (`recorded`, `invalid`, `dropped`, `error`). */
  readonly acks: Counter<"result">;
}

/** Creates the logic metrics in `registry` (default: a fresh `createMetrics("logic")`). */
export function createLogicMetrics(registry: Metrics = createMetrics("logic")): LogicMetrics {
  const m = registry;
  return {
    registry: m,
    httpRequests: m.counter("http_requests_total", "HTTP API requests by route and code.", [
      "route",
      "code",
    ]),
    httpSeconds: m.histogram(
      "http_request_seconds",
      "HTTP API request latency, body read included.",
      exponentialBuckets(0.0001, 4, 8),
      ["route"],
    ),
    published: m.counter("published_total", "PushMsg messages published to the queue.", ["type"]),
    pushTargets: m.counter(
      "push_targets_total",
      "Keys that pushes by key or mid were routed to (had a live route).",
      ["kind"],
    ),
    queueUnavailable: m.counter(
      "queue_unavailable_total",
      "Pushes answered 503 because the queue refused the message.",
    ),
    connects: m.counter("connects_total", "Connect RPCs by result.", ["result"]),
    authFailures: m.counter("auth_failures_total", "Rejected authentications by reason.", [
      "reason",
    ]),
    disconnects: m.counter("disconnects_total", "Disconnect RPCs by whether a route was removed.", [
      "removed",
    ]),
    heartbeats: m.counter(
      "heartbeats_total",
      "Heartbeat RPCs by whether the route was missing and re-added.",
      ["readded"],
    ),
    onlineReports: m.counter("online_reports_total", "RenewOnline reports received."),
    onlineServers: m.gauge(
      "online_servers",
      "Comets whose fresh room counts are in the online aggregate.",
    ),
    onlineSkipped: m.counter(
      "online_skipped_total",
      "Stored comet online reports a refresh could not read and skipped, by reason.",
      ["reason"],
    ),
    upstream: m.counter("upstream_messages_total", "Upstream client messages received (Receive)."),
    webhookDelivered: m.counter("webhook_delivered_total", "Upstream messages delivered."),
    webhookRetries: m.counter("webhook_retries_total", "Webhook delivery retries."),
    webhookDropped: m.counter("webhook_dropped_total", "Upstream messages dropped, by reason.", [
      "reason",
    ]),
    webhookQueued: m.gauge("webhook_queued", "Upstream messages waiting for delivery."),
    pushes: m.counter("pushes_total", "Pushes accepted by the push API, by kind and ack.", [
      "kind",
      "ack",
    ]),
    pushWaits: m.counter(
      "push_waits_total",
      "Waits for the acks of a push (wait=) that ended, by outcome.",
      ["outcome"],
    ),
    pushWaitsActive: m.gauge("push_waits", "Push API requests waiting for acks now."),
    statusReads: m.counter("push_status_reads_total", "GET /goim/push/status reads by result.", [
      "result",
    ]),
    historyReads: m.counter("history_reads_total", "GET /goim/history reads by result.", [
      "result",
    ]),
    recoverCalls: m.counter("recover_calls_total", "Streams Recover calls by result.", ["result"]),
    recoverStreams: m.counter(
      "recover_streams_total",
      "Streams answered by Recover, by result (recovered, state, or why not).",
      ["result"],
    ),
    acks: m.counter("acks_total", "Client acks received through Streams Acks, by result.", [
      "result",
    ]),
  };
}

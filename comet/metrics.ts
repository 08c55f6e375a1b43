/**
 * The comet's Prometheus metrics (names `goim_comet_*`, see infra/metrics.ts).
 *
 * Counters bumped once per write or per frame would cost a prom-client
 * label lookup on the hottest path of the server, so those are plain
 * numbers here ({@linkcode CometMetrics.framesOut} and friends) that
 * {@linkcode CometMetrics.sync} folds into the real counters: on every
 * timer sweep (about once a second) and right before a `/metrics` scrape.
 * Everything else goes straight to prom-client.
 *
 * @module
 */

import type { Counter, Gauge, Metrics } from "../infra/metrics.ts";

/** Transports a channel can be on, as used in metric labels. */
export type TransportName = "tcp" | "ws" | "wss";

/** Kinds of push served by the comet, as used in metric labels. */
export type PushKind = "keys" | "room" | "broadcast";

/** Index of a transport in the hot-path arrays of {@linkcode CometMetrics}. */
export const TRANSPORT_INDEX: Readonly<Record<TransportName, number>> = { tcp: 0, ws: 1, wss: 2 };

const TRANSPORTS: readonly TransportName[] = ["tcp", "ws", "wss"];

/**
 * The bounds a connection can hit, as `limit` label values of
 * `limit_closes_total` (a closed set keeps the label bounded).
 */
export type LimitName =
  | "input_buffer"
  | "ws_message_size"
  | "ws_fragments"
  | "frame_rate"
  | "max_ops"
  | "fd_budget"
  | "token_expired";

/**
 * Every metric of the comet role, defined once per {@linkcode Metrics}
 * registry (defining twice returns the same metrics).
 *
 * @example
 * ```ts
 * import { createMetrics } from "../infra/metrics.ts";
 * const m = new CometMetrics(createMetrics("comet"));
 * m.framesOut[TRANSPORT_INDEX.tcp] += 10; // hot path: a plain add
 * m.sync(); // folded into goim_comet_frames_out_total{transport="tcp"}
 * ```
 */
export class CometMetrics {
  /** Frames written, per transport index (hot path; folded by sync). */
  readonly framesOut: number[] = [0, 0, 0];
  /** Bytes written, per transport index (hot path; folded by sync). */
  readonly bytesOut: number[] = [0, 0, 0];
  /** Socket writes, per transport index (hot path; folded by sync). */
  readonly writes: number[] = [0, 0, 0];
  /** Frames dropped by `drop_oldest` since the last sync. */
  droppedOldest = 0;
  /** Frames dropped by `drop_new` since the last sync. */
  droppedNew = 0;
  /** Frames discarded from the queues of clients closed as slow consumers. */
  droppedDisconnect = 0;

  /** Open authenticated connections by transport. */
  readonly connections: Gauge<"transport">;
  /** Rooms with at least one member on this comet. */
  readonly rooms: Gauge;
  /** Bytes waiting in send queues (not yet handed to a socket), over all connections. */
  readonly queuedBytes: Gauge;
  /** Frames written to clients by transport (replies and pushed frames). */
  readonly framesOutTotal: Counter<"transport">;
  /** Bytes written to clients by transport. */
  readonly bytesOutTotal: Counter<"transport">;
  /** Socket writes by transport (frames_out_total / writes_total = coalescing). */
  readonly writesTotal: Counter<"transport">;
  /** Push requests served, by kind. */
  readonly pushesTotal: Counter<"kind">;
  /** Pushed frames not delivered because a send queue was full. */
  readonly droppedTotal: Counter<"reason" | "policy">;
  /** Connections closed because their send queue overflowed. */
  readonly slowConsumerDisconnects: Counter;
  /** Auth attempts refused by logic (or failed to reach it). */
  readonly authFailures: Counter;
  /** Connections closed for a malformed frame, by ProtocolError code. */
  readonly protocolErrors: Counter<"code">;
  /** Connections that sent no auth frame in time. */
  readonly handshakeTimeouts: Counter;
  /** Connections closed after heartbeat_interval × heartbeat_max without op 2. */
  readonly idleTimeouts: Counter;
  /** gRPC (or in-process) CometApi calls served, by method. */
  readonly grpcCalls: Counter<"method">;
  /** Upstream op 4 messages handed to logic. */
  readonly upstreamMessages: Counter;
  /** Connections closed, by the reason the server gave (or `client` / `error`). */
  readonly disconnects: Counter<"reason">;
  /** ChangeRoom (op 12) and Sub (op 14) requests refused, wholly or in part, by the auth scope. */
  readonly scopeDenied: Counter<"op">;
  /**
   * Connections closed or refused because they hit a per-connection or
   * process bound, by the bound's name (a fixed set: {@linkcode LimitName}).
   */
  readonly limitCloses: Counter<"limit">;

  /** Defines (or reuses) every comet metric in `m`. */
  constructor(readonly registry: Metrics) {
    this.limitCloses = registry.counter(
      "limit_closes_total",
      "Connections closed or refused for hitting a bound (comet.limits.*, comet.websocket.max_fragments, the descriptor budget), by bound.",
      ["limit"],
    );
    this.connections = registry.gauge(
      "connections",
      "Open authenticated client connections.",
      ["transport"],
    );
    this.rooms = registry.gauge("rooms", "Rooms with at least one member on this comet.");
    this.queuedBytes = registry.gauge(
      "send_queue_bytes",
      "Bytes waiting in send queues over all connections (shared push bytes count once per connection).",
    );
    this.framesOutTotal = registry.counter(
      "frames_out_total",
      "Frames written to clients (pushed inner frames and replies).",
      ["transport"],
    );
    this.bytesOutTotal = registry.counter(
      "sent_bytes_total",
      "Bytes handed to client sockets.",
      ["transport"],
    );
    this.writesTotal = registry.counter(
      "writes_total",
      "Socket writes (each carries everything that was queued for the connection).",
      ["transport"],
    );
    this.pushesTotal = registry.counter(
      "pushes_total",
      "Push requests served (PushMsg = keys, BroadcastRoom = room, Broadcast = broadcast).",
      ["kind"],
    );
    this.droppedTotal = registry.counter(
      "dropped_total",
      "Pushed frames never delivered because a send queue was full, by send_queue.policy.",
      ["reason", "policy"],
    );
    this.slowConsumerDisconnects = registry.counter(
      "slow_consumer_disconnects_total",
      "Connections closed because their bounded send queue overflowed (policy disconnect).",
    );
    this.authFailures = registry.counter("auth_failures_total", "Auth frames refused by logic.");
    this.protocolErrors = registry.counter(
      "protocol_errors_total",
      "Connections closed for a malformed frame, by error code.",
      ["code"],
    );
    this.handshakeTimeouts = registry.counter(
      "handshake_timeouts_total",
      "Connections closed because no auth frame arrived within comet.handshake_timeout.",
    );
    this.idleTimeouts = registry.counter(
      "idle_timeouts_total",
      "Connections closed because no heartbeat arrived within the idle timeout.",
    );
    this.grpcCalls = registry.counter(
      "grpc_calls_total",
      "goim.comet.Comet calls served (gRPC or in-process), by method.",
      ["method"],
    );
    this.upstreamMessages = registry.counter(
      "upstream_messages_total",
      "Upstream messages (op 4) handed to logic.",
    );
    this.disconnects = registry.counter(
      "disconnects_total",
      "Connections closed, by reason.",
      ["reason"],
    );
    this.scopeDenied = registry.counter(
      "scope_denied_total",
      "ChangeRoom (op 12) and Sub (op 14) requests refused, wholly or in part, by the connection's auth scope.",
      ["op"],
    );
  }

  /** Folds the hot-path numbers into their counters and zeroes them. */
  sync(): void {
    for (let i = 0; i < TRANSPORTS.length; i++) {
      const transport = TRANSPORTS[i];
      if (this.framesOut[i] > 0) {
        this.framesOutTotal.inc({ transport }, this.framesOut[i]);
        this.framesOut[i] = 0;
      }
      if (this.bytesOut[i] > 0) {
        this.bytesOutTotal.inc({ transport }, this.bytesOut[i]);
        this.bytesOut[i] = 0;
      }
      if (this.writes[i] > 0) {
        this.writesTotal.inc({ transport }, this.writes[i]);
        this.writes[i] = 0;
      }
    }
    if (this.droppedOldest > 0) {
      this.droppedTotal.inc({ reason: "queue_full", policy: "drop_oldest" }, this.droppedOldest);
      this.droppedOldest = 0;
    }
    if (this.droppedNew > 0) {
      this.droppedTotal.inc({ reason: "queue_full", policy: "drop_new" }, this.droppedNew);
      this.droppedNew = 0;
    }
    if (this.droppedDisconnect > 0) {
      this.droppedTotal.inc(
        { reason: "queue_full", policy: "disconnect" },
        this.droppedDisconnect,
      );
      this.droppedDisconnect = 0;
    }
  }
}

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
  | "token_expired"
  | "stream_sync";

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
  /** Bytes of pushes held during stream recoveries, over all connections (a level, not a count). */
  streamHeldBytes = 0;
  /** Stream frames dropped as already sent (queue redeliveries) since the last sync. */
  streamDuplicates = 0;
  /** Entries replayed by recoveries since the last sync. */
  streamReplayed = 0;
  /** StreamAck ids that matched a tracked push since the last sync. */
  streamAcks = 0;
  /** StreamAck ids this connection did not hold since the last sync. */
  streamAcksUnknown = 0;
  /** Unacked pushes re-sent since the last sync. */
  streamResends = 0;
  /** Unacked pushes forgotten past comet.streams.max_unacked since the last sync. */
  streamForgottenMax = 0;
  /** Unacked pushes given up after comet.streams.ack_retries since the last sync. */
  streamForgottenRetries = 0;
  /** StreamSync frames received since the last sync. */
  streamSyncs = 0;
  /** Opted-in connections open (set by the comet before a scrape). */
  streamConnectionsNow = 0;

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
  /** Opted-in connections (docs/STREAMS.md). */
  readonly streamConnections: Gauge;
  /** Bytes of pushes held while recoveries are out. */
  readonly streamHeld: Gauge;
  /** Streams answered by recoveries, by result. */
  readonly streamRecoveries: Counter<"result">;
  /** Entries replayed. */
  readonly streamReplayedTotal: Counter;
  /** Stream frames dropped as already sent. */
  readonly streamDuplicatesTotal: Counter;
  /** StreamAck ids, by whether they matched a tracked push. */
  readonly streamAcksTotal: Counter<"result">;
  /** Acks not reported to logic, by reason. */
  readonly streamAckReportsDropped: Counter<"reason">;
  /** Unacked pushes re-sent. */
  readonly streamResendsTotal: Counter;
  /** Unacked pushes no longer tracked without an ack, by reason. */
  readonly streamUnackedForgotten: Counter<"reason">;
  /** StreamSync frames received. */
  readonly streamSyncsTotal: Counter;

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
    this.streamConnections = registry.gauge(
      "stream_connections",
      "Open connections that opted in to streams (docs/STREAMS.md).",
    );
    this.streamHeld = registry.gauge(
      "stream_held_bytes",
      "Bytes of pushes held for opted-in connections while their stream recovery is out.",
    );
    this.streamRecoveries = registry.counter(
      "stream_recoveries_total",
      "Streams answered in StreamState after a recovery (connect, StreamSync, room change), by result.",
      ["result"],
    );
    this.streamReplayedTotal = registry.counter(
      "stream_replayed_frames_total",
      "Stream entries replayed to opted-in connections (StreamMsg with flag Replayed).",
    );
    this.streamDuplicatesTotal = registry.counter(
      "stream_duplicates_dropped_total",
      "Stream frames not sent because the connection already had their position (queue redeliveries).",
    );
    this.streamAcksTotal = registry.counter(
      "stream_acks_total",
      "Push ids acked by clients (StreamAck), by result: matched a push the connection holds, or unknown.",
      ["result"],
    );
    this.streamAckReportsDropped = registry.counter(
      "stream_ack_reports_dropped_total",
      "Acks never reported to logic, by reason (backlog full, the Acks call failed, no Streams service).",
      ["reason"],
    );
    this.streamResendsTotal = registry.counter(
      "stream_resends_total",
      "Ack-requested pushes sent again after comet.streams.ack_timeout.",
    );
    this.streamUnackedForgotten = registry.counter(
      "stream_unacked_forgotten_total",
      "Ack-requested pushes no longer tracked without an ack, by reason (max_unacked, retries).",
      ["reason"],
    );
    this.streamSyncsTotal = registry.counter(
      "stream_syncs_total",
      "StreamSync frames received from opted-in connections.",
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
    this.streamHeld.set(this.streamHeldBytes);
    this.streamConnections.set(this.streamConnectionsNow);
    this.#fold(this.streamReplayedTotal, this.streamReplayed);
    this.streamReplayed = 0;
    this.#fold(this.streamDuplicatesTotal, this.streamDuplicates);
    this.streamDuplicates = 0;
    this.#fold(this.streamResendsTotal, this.streamResends);
    this.streamResends = 0;
    this.#fold(this.streamSyncsTotal, this.streamSyncs);
    this.streamSyncs = 0;
    if (this.streamAcks > 0) this.streamAcksTotal.inc({ result: "matched" }, this.streamAcks);
    this.streamAcks = 0;
    if (this.streamAcksUnknown > 0) {
      this.streamAcksTotal.inc({ result: "unknown" }, this.streamAcksUnknown);
    }
    this.streamAcksUnknown = 0;
    if (this.streamForgottenMax > 0) {
      this.streamUnackedForgotten.inc({ reason: "max_unacked" }, this.streamForgottenMax);
    }
    this.streamForgottenMax = 0;
    if (this.streamForgottenRetries > 0) {
      this.streamUnackedForgotten.inc({ reason: "retries" }, this.streamForgottenRetries);
    }
    this.streamForgottenRetries = 0;
  }

  #fold(c: Counter, n: number): void {
    if (n > 0) c.inc(n);
  }
}

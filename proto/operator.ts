/**
 * `goim.operator.CometOperator` (./operator.proto): what logic's operator
 * console (logic/operator.ts, docs/CONSOLE.md) asks each comet: live
 * figures, who is connected under some keys, kick, a room's members, drain.
 *
 * The same two deployments as the goim services (./api.ts): embedded, logic
 * is handed the comet's {@linkcode CometOperatorApi} object itself; in the
 * distributed mode it dials each comet's gRPC address from the registry with
 * {@linkcode createCometOperatorClient}, with the `grpc.token` and TLS
 * options of ./security.ts, and the comet serves the service on the same
 * gRPC server as `goim.comet.Comet` (so the token check covers it).
 *
 * Its own .proto beside goim's (./grpc.ts loads only those): read once, on
 * first import, with ./grpc.ts's loader options; the client is ./grpc.ts's
 * `createServiceClient`.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import type { Api } from "./api.ts";
import {
  type ClientOptions,
  createServiceClient,
  loadServiceDefinition,
  type RpcClient,
} from "./grpc.ts";

/** Keys one Sessions or Kick call may name. */
export const MAX_SESSION_KEYS = 1000;
/** Keys one RoomMembers call returns at most. */
export const MAX_ROOM_SAMPLE = 100;
/** Characters of a kick reason kept (the rest is cut). */
export const MAX_REASON_CHARS = 200;
/** Longest drain deadline a comet accepts, ms (1 h). */
export const MAX_DRAIN_MS = 3_600_000;

/** `StatsReq`. */
export type StatsReq = Record<never, never>;

/** `StatsReply`: live figures of one comet (counters cumulative since its start). */
export interface StatsReply {
  /** node.id. */
  id: string;
  /** `up`, `draining` or `drained`. */
  state: string;
  /** Authenticated connections. */
  connections: number;
  /** Distinct client IPs. */
  ips: number;
  /** Rooms with members here. */
  rooms: number;
  /** Connections by transport (`tcp`, `ws`, `wss`). */
  connections_by_transport: Record<string, number>;
  /** Frames written to clients. */
  frames_out: number;
  /** Bytes written to clients. */
  bytes_out: number;
  /** Pushed frames dropped for a full send queue, by policy. */
  dropped: Record<string, number>;
  /** Connections closed as slow consumers. */
  slow_consumer_disconnects: number;
  /** Connections closed, by reason. */
  disconnects: Record<string, number>;
  /** Push requests served, by kind (`keys`, `room`, `broadcast`). */
  pushes: Record<string, number>;
  /** Whether the loop lag fields hold a measurement. */
  loop_lag_known: boolean;
  /** Event-loop lag p50 over 10 s, ms. */
  loop_lag_p50_ms: number;
  /** p99, ms. */
  loop_lag_p99_ms: number;
  /** Max, ms. */
  loop_lag_max_ms: number;
  /** Resident set size. */
  rss_bytes: number;
  /** Bytes waiting in send queues. */
  queued_bytes: number;
  /** Time since the comet started, ms. */
  uptime_ms: number;
  /** While draining: when it ends at the latest (ms since the epoch); else 0. */
  drain_deadline_ms: number;
}

/** `SessionsReq`. */
export interface SessionsReq {
  /** At most {@linkcode MAX_SESSION_KEYS}. */
  keys: string[];
}

/** One connection, as the console shows it (no token, no message body). */
export interface Session {
  /** Connection key. */
  key: string;
  /** User id. */
  mid: number;
  /** Client IP. */
  ip: string;
  /** Room key, "" when in none. */
  room: string;
  /** When auth completed, ms since the epoch (to the second). */
  connected_at_ms: number;
  /** `tcp`, `ws` or `wss`. */
  transport: string;
}

/** `SessionsReply`. */
export interface SessionsReply {
  /** The named keys connected here. */
  sessions: Session[];
}

/** `KickReq`. */
export interface KickReq {
  /** At most {@linkcode MAX_SESSION_KEYS}. */
  keys: string[];
  /** The op 6 message; cut at {@linkcode MAX_REASON_CHARS}. */
  reason: string;
}

/** `KickReply`. */
export interface KickReply {
  /** Connections now closing with op 6 4008. */
  kicked: number;
}

/** `RoomMembersReq`. */
export interface RoomMembersReq {
  /** Room key (`live://1000`). */
  room: string;
  /** Sample size wanted, at most {@linkcode MAX_ROOM_SAMPLE}. */
  limit: number;
}

/** `RoomMembersReply`. */
export interface RoomMembersReply {
  /** Members here. */
  count: number;
  /** Some of their keys. */
  keys: string[];
}

/** `DrainReq`. */
export interface DrainReq {
  /** The drain ends this long from now at the latest, ms (at most {@linkcode MAX_DRAIN_MS}). */
  deadline_ms: number;
  /** Clients leave (and are told to come back) spread over this long, ms (at most the deadline). */
  spread_ms: number;
}

/** `DrainReply`. */
export interface DrainReply {
  /** The comet's state after the call. */
  state: string;
  /** Connections still open. */
  connections: number;
  /** When the drain ends at the latest, ms since the epoch. */
  drain_deadline_ms: number;
}

/** Request and reply types of each `goim.operator.CometOperator` method. */
export type OperatorMethods = {
  Stats: [StatsReq, StatsReply];
  Sessions: [SessionsReq, SessionsReply];
  Kick: [KickReq, KickReply];
  RoomMembers: [RoomMembersReq, RoomMembersReply];
  Drain: [DrainReq, DrainReply];
};

/** What logic's console calls on a comet: the comet's own object (embedded) or a gRPC client. */
export type CometOperatorApi = Api<OperatorMethods>;

/** A promise-based `goim.operator.CometOperator` client ({@linkcode createCometOperatorClient}). */
export type CometOperatorClient = RpcClient<OperatorMethods>;

/** The grpc-js definition of `goim.operator.CometOperator`, for `server.addService`. */
export const operatorServiceDefinition: grpc.ServiceDefinition = loadServiceDefinition(
  "operator.proto",
  "goim.operator.CometOperator",
);

/**
 * Dials (lazily, on the first call) a comet's operator service. Calls send
 * `opts.token` as `authorization: Bearer` and reject with an
 * {@linkcode RpcError} naming the method and status, like the goim clients
 * of ./grpc.ts.
 *
 * @example
 * ```ts
 * import { createCometOperatorClient } from "./operator.ts";
 * const comet = createCometOperatorClient("127.0.0.1:3109", { token: "secret", deadlineMs: 2000 });
 * const stats = await comet.Stats({});
 * console.log(stats.connections, stats.state);
 * comet.close();
 * ```
 */
export function createCometOperatorClient(
  address: string,
  opts: ClientOptions = {},
): CometOperatorClient {
  return createServiceClient<OperatorMethods>(
    operatorServiceDefinition,
    "goim.operator.CometOperator",
    address,
    opts,
  );
}

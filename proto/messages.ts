/**
 * TypeScript shapes of goim's protobuf messages (`goim.protocol`, `goim.comet`,
 * `goim.logic`), field names exactly as in the .proto files.
 *
 * Decoded messages are complete: every scalar, list and map field is present
 * (proto3 defaults filled in), an unset message field is `null`. Messages you
 * send may omit fields, see {@linkcode MessageInit}.
 *
 * int64 fields (`mid`, `heartbeat`) are plain numbers: ids above 2^53 lose
 * precision. The client token that carries `mid` is JSON, which already limits
 * it to that range, so bigint or string ids would buy nothing end to end.
 *
 * @module
 */

/**
 * A message as you may send it: any field may be left out (it then takes its
 * proto3 default), nested messages may be partial or `null`.
 *
 * Nested message fields are the only ones typed `| null` in decoded messages,
 * which is how this type tells them apart from map fields.
 *
 * @example
 * ```ts
 * import type { MessageInit, PushMsgReq } from "./messages.ts";
 * const req: MessageInit<PushMsgReq> = { keys: ["k1"], proto: { op: 1000 } };
 * ```
 */
export type MessageInit<T> = {
  [K in keyof T]?: null extends T[K] ? MessageInit<NonNullable<T[K]>> | null : T[K];
};

// ---- goim.protocol ----

/** `goim.protocol.Proto`: one client frame (ver, op, seq, body) carried inside RPCs. */
export interface Proto {
  ver: number;
  op: number;
  seq: number;
  body: Uint8Array;
}

// ---- goim.comet ----

/** `goim.comet.PushMsgReq`: push `proto` to the connections with these keys. */
export interface PushMsgReq {
  keys: string[];
  /** The operation connections must accept (their `accepts` set) to get the push. */
  protoOp: number;
  proto: Proto | null;
  /** (100) The mid stream the push has a position in (docs/STREAMS.md); "" or absent: none. */
  stream?: string;
  /** (101) That stream's epoch. */
  epoch?: string;
  /** (102) The position. */
  pos?: number;
  /** (103) The push id; "" or absent: none. */
  push_id?: string;
  /** (104) Opted-in connections are asked to ack. */
  ack?: boolean;
}

/** `goim.comet.PushMsgReply`. */
export type PushMsgReply = Record<never, never>;

/** `goim.comet.BroadcastReq`: push `proto` to every connection that accepts `protoOp`. */
export interface BroadcastReq {
  protoOp: number;
  proto: Proto | null;
  /** Pacing hint (goim: rooms per second); 0 means as fast as possible. */
  speed: number;
  /** (100) One push id per frame of `proto`, in order (docs/STREAMS.md); absent: none. */
  push_ids?: string[];
}

/** `goim.comet.BroadcastReply`. */
export type BroadcastReply = Record<never, never>;

/** `goim.comet.BroadcastRoomReq`: push `proto` to every member of one room. */
export interface BroadcastRoomReq {
  roomID: string;
  proto: Proto | null;
  /** (100) The room stream's epoch (docs/STREAMS.md); "" or absent: no stream. */
  epoch?: string;
  /** (101) One position per frame of the op 9 `proto`, in order. */
  positions?: number[];
  /** (102) One push id per frame, in order. */
  push_ids?: string[];
}

/** `goim.comet.BroadcastRoomReply`. */
export type BroadcastRoomReply = Record<never, never>;

/** `goim.comet.RoomsReq`. */
export type RoomsReq = Record<never, never>;

/** `goim.comet.RoomsReply`: the set of rooms that have members on this comet. */
export interface RoomsReply {
  rooms: Record<string, boolean>;
}

// ---- goim.logic ----

/** Names of `goim.logic.PushMsg.Type` (PUSH = 0, ROOM = 1, BROADCAST = 2). */
export type PushMsgType = "PUSH" | "ROOM" | "BROADCAST";

/** `goim.logic.PushMsg`: the queue message logic publishes and job consumes. */
export interface PushMsg {
  type: PushMsgType;
  operation: number;
  speed: number;
  /** Comet server id, for PUSH (keys are grouped per comet). */
  server: string;
  /** Room key such as `live://1000`, for ROOM. */
  room: string;
  keys: string[];
  msg: Uint8Array;
  /** (100) The push id (docs/STREAMS.md); "" or absent: none. */
  push_id?: string;
  /** (101) A push to this mid's stream: type PUSH without server or keys. */
  mid?: number;
  /** (102) Opted-in connections are asked to ack. */
  ack?: boolean;
}

/** `goim.logic.ConnectReq`: a comet asks logic to authenticate a new connection. */
export interface ConnectReq {
  server: string;
  cookie: string;
  /** The client's op 7 body (a JSON token), as received. */
  token: Uint8Array;
}

/**
 * `goim.logic.ConnectReply`: who the connection is, what it listens to, and
 * (fields 100–104, this project's) what it may change later and when its
 * token expires.
 *
 * The scope fields are optional in this type: a decoded gRPC reply always
 * has them (defaults), but an in-process {@linkcode ConnectReply} written
 * against goim's five fields may leave them out, and absent means the same
 * as the default: unrestricted. Each restriction is a flag plus a list:
 * `*_restricted` false (or absent) = no restriction, list ignored; true =
 * the list is the whole allow-list, an empty list allowing nothing. Leave
 * them out (rather than `false`/`[]`) when unrestricted: protobufjs writes
 * an explicit `false`, and left out the reply's bytes are goim's.
 */
export interface ConnectReply {
  mid: number;
  key: string;
  roomID: string;
  accepts: number[];
  /** Heartbeat interval the comet should enforce (goim: nanoseconds as a Go Duration). */
  heartbeat: number;
  /**
   * (100) Room keys ChangeRoom (op 12) may move to when `rooms_restricted`;
   * an entry ending in `*` matches by prefix. Leaving every room is always allowed.
   */
  allowed_rooms?: string[];
  /** (101) Whether `allowed_rooms` applies. */
  rooms_restricted?: boolean;
  /** (102) Business ops Sub (op 14) may add when `ops_restricted`. Unsub is never restricted. */
  allowed_ops?: number[];
  /** (103) Whether `allowed_ops` applies. */
  ops_restricted?: boolean;
  /**
   * (104) Milliseconds from this reply until the connection's token expires
   * and the comet closes it (op 6, reason 4001); 0 or absent = never. Leave
   * it out rather than 0 when unset, as the scope fields.
   */
  token_expires_in_ms?: number;
  /** (105) The token opted in to streams (docs/STREAMS.md). Leave out when false. */
  streams?: boolean;
  /** (106) The token's `streams.recover` positions. */
  recover?: StreamPositionMsg[];
}

/** `goim.logic.StreamPosition`: a client's last position in a stream. */
export interface StreamPositionMsg {
  stream: string;
  epoch: string;
  pos: number;
}

/** `goim.logic.StreamEntry`: one kept message, as Recover returns it. */
export interface StreamEntryMsg {
  pos: number;
  push_id: string;
  op: number;
  body: Uint8Array;
  ack: boolean;
  time: number;
}

/** `goim.logic.RecoverReq` (service goim.logic.Streams). */
export interface RecoverReq {
  /** What follows each position (epoch "" + pos 0: everything kept, the client saw no history). */
  streams: StreamPositionMsg[];
  /** Streams asked for their epoch and top only. */
  state_only: string[];
}

/** `goim.logic.StreamResult`: one stream's answer to Recover. */
export interface StreamResult {
  stream: string;
  epoch: string;
  top: number;
  recovered: boolean;
  reason: string;
  entries: StreamEntryMsg[];
}

/** `goim.logic.RecoverReply`. */
export interface RecoverReply {
  results: StreamResult[];
}

/** `goim.logic.StreamAck`: one client ack. */
export interface StreamAckMsg {
  push_id: string;
  key: string;
  mid: number;
}

/** `goim.logic.AcksReq`: acks a comet batches to logic. */
export interface AcksReq {
  server: string;
  acks: StreamAckMsg[];
}

/** `goim.logic.AcksReply`. */
export type AcksReply = Record<never, never>;

/** `goim.logic.DisconnectReq`. */
export interface DisconnectReq {
  mid: number;
  key: string;
  server: string;
}

/** `goim.logic.DisconnectReply`: whether logic still had the session. */
export interface DisconnectReply {
  has: boolean;
}

/** `goim.logic.HeartbeatReq`: keeps a session alive in logic's store. */
export interface HeartbeatReq {
  mid: number;
  key: string;
  server: string;
}

/** `goim.logic.HeartbeatReply`. */
export type HeartbeatReply = Record<never, never>;

/** `goim.logic.OnlineReq`: a comet reports its per-room connection counts. */
export interface OnlineReq {
  server: string;
  roomCount: Record<string, number>;
}

/** `goim.logic.OnlineReply`: cluster-wide per-room counts. */
export interface OnlineReply {
  allRoomCount: Record<string, number>;
}

/** `goim.logic.ReceiveReq`: an upstream message (op 4) from a client. */
export interface ReceiveReq {
  mid: number;
  proto: Proto | null;
}

/** `goim.logic.ReceiveReply`. */
export type ReceiveReply = Record<never, never>;

/** `goim.logic.NodesReq`. */
export interface NodesReq {
  platform: string;
  clientIP: string;
}

/** `goim.logic.Backoff`: reconnect backoff advice for clients. */
export interface Backoff {
  max_delay: number;
  base_delay: number;
  factor: number;
  jitter: number;
}

/** `goim.logic.NodesReply`: the comet nodes a client should connect to. */
export interface NodesReply {
  domain: string;
  tcp_port: number;
  ws_port: number;
  wss_port: number;
  heartbeat: number;
  nodes: string[];
  backoff: Backoff | null;
  heartbeat_max: number;
}

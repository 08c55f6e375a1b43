/**
 * The goim v2 operation table (docs/PROTOCOL.md, "Operations").
 *
 * Numbers are the wire contract with every goim client; never renumber.
 *
 * @module
 */

/**
 * Operation codes carried in a frame's `op` field.
 *
 * @example
 * ```ts
 * import type { Frame } from "./frame.ts";
 * import { Op } from "./ops.ts";
 * declare const frame: Frame;
 * declare function reply(op: number): void;
 * if (frame.op === Op.Heartbeat) reply(Op.HeartbeatReply);
 * ```
 */
export const Op = {
  /** Reserved by goim; never sent by this server. */
  Handshake: 0,
  /** Reserved by goim; never sent by this server. */
  HandshakeReply: 1,
  /** c→s: keep-alive; any body. Only this op resets the idle timer. */
  Heartbeat: 2,
  /** s→c: body is an int32 BE online count of the client's room. */
  HeartbeatReply: 3,
  /** c→s: upstream message handed to logic. */
  SendMsg: 4,
  /** s→c: empty body, seq echoed. */
  SendMsgReply: 5,
  /** s→c: sent just before the server closes; body is a JSON reason. */
  DisconnectReply: 6,
  /** c→s: the JSON auth token; must be the first frame. */
  Auth: 7,
  /** s→c: auth succeeded; empty body, ver and seq echoed. */
  AuthReply: 8,
  /** s→c: batch envelope (WebSocket only). */
  Raw: 9,
  /** Reserved by goim; never sent by this server. */
  ProtoReady: 10,
  /** Reserved by goim; never sent by this server. */
  ProtoFinish: 11,
  /** c→s: body is the new room key (`type://id`); empty leaves the room. */
  ChangeRoom: 12,
  /** s→c: echoes the ChangeRoom body. */
  ChangeRoomReply: 13,
  /** c→s: body is comma-joined ASCII decimal ops to accept. */
  Sub: 14,
  /** s→c: echoes the Sub body. */
  SubReply: 15,
  /** c→s: body is comma-joined ASCII decimal ops to stop accepting. */
  Unsub: 16,
  /** s→c: echoes the Unsub body. */
  UnsubReply: 17,
  /** s→c: a push with its stream position or push id (docs/STREAMS.md); opted-in connections only. */
  StreamMsg: 0x7fffff00,
  /** c→s: JSON `{"ids": [...]}`, push ids the client processed. */
  StreamAck: 0x7fffff01,
  /** c→s: JSON `{"recover": [...]}`, replay what follows these positions. */
  StreamSync: 0x7fffff02,
  /** s→c: JSON `{"streams": [...]}`, each stream's epoch, top and recovery result. */
  StreamState: 0x7fffff03,
} as const;

/** First op of the range reserved for stream ops (docs/STREAMS.md); no push may use it. */
export const STREAM_OPS_FIRST = 0x7fffff00;

/** A named operation code. */
export type OpCode = typeof Op[keyof typeof Op];

const names = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));

/**
 * Human name of an operation, for logs; business ops print as `op1000`.
 *
 * @example
 * ```ts
 * opName(7); // "Auth"
 * opName(1000); // "op1000"
 * ```
 */
export function opName(op: number): string {
  return names.get(op) ?? `op${op}`;
}

/**
 * Whether the server may ever send `op` to a client as a push operation.
 * Reserved and protocol ops (0–17) and the stream ops' range
 * (0x7FFFFF00–0x7FFFFFFF) are not business operations.
 */
export function isBusinessOp(op: number): boolean {
  return Number.isInteger(op) && op > Op.UnsubReply && op < STREAM_OPS_FIRST;
}

/**
 * Whether `n` is an int32 (the type of ops on the wire and in goim's protos).
 *
 * @example
 * ```ts
 * isInt32(1000); // true
 * isInt32(2 ** 31); // false
 * ```
 */
export function isInt32(n: unknown): n is number {
  return Number.isInteger(n) && (n as number) >= -(2 ** 31) && (n as number) < 2 ** 31;
}

/**
 * Queue codec for `goim.logic.PushMsg`, the message logic publishes and job
 * consumes, byte for byte as goim's Go code writes it: fields in number order,
 * proto3 defaults (0, "", empty lists and bytes, type PUSH) left out. So a goim
 * job can consume what our logic publishes and the other way round.
 *
 * This project's fields (`push_id` 100, `mid` 101, `ack` 102; docs/STREAMS.md)
 * are written only when set, so a message without them has goim's bytes, and
 * a goim job skips them as unknown fields. Decoding puts them in the result
 * only when set, for the same reason: a goim message decodes to goim's shape.
 *
 * Reads ./logic.proto and ./protocol.proto once, on first import (needs read
 * permission on proto/; `deno compile` needs `--include proto/`). Import this
 * module alone where only the codec is needed: it does not load grpc-js.
 *
 * @module
 */

import protobuf from "protobufjs";
import { fileURLToPath } from "node:url";
import type { MessageInit, PushMsg, PushMsgType } from "./messages.ts";

const root = new protobuf.Root().loadSync(
  fileURLToPath(new URL("./logic.proto", import.meta.url)),
  { keepCase: true },
);
const PushMsgProto = root.lookupType("goim.logic.PushMsg");

const TYPE_NUMBERS: Readonly<Record<PushMsgType, number>> = { PUSH: 0, ROOM: 1, BROADCAST: 2 };
const TYPE_NAMES: readonly PushMsgType[] = ["PUSH", "ROOM", "BROADCAST"];

/**
 * Encodes a PushMsg for the queue. Fields left out take their defaults.
 * Throws on an unknown `type` name, rather than silently sending PUSH.
 *
 * @example
 * ```ts
 * import { encodePushMsg } from "./push_msg.ts";
 * const bytes = encodePushMsg({
 *   type: "ROOM",
 *   operation: 1000,
 *   room: "live://1000",
 *   msg: new TextEncoder().encode("hello"),
 * });
 * ```
 */
export function encodePushMsg(msg: MessageInit<PushMsg>): Uint8Array {
  const fields: Record<string, unknown> = {};
  if (msg.type !== undefined && msg.type !== "PUSH") {
    const type = TYPE_NUMBERS[msg.type];
    if (type === undefined) {
      throw new TypeError(`PushMsg: unknown type ${JSON.stringify(msg.type)}`);
    }
    fields.type = type;
  }
  // protobufjs writes every field that is set, even to its default; Go omits
  // defaults. Setting only non-default fields gives goim's exact bytes.
  if (msg.operation) fields.operation = msg.operation;
  if (msg.speed) fields.speed = msg.speed;
  if (msg.server) fields.server = msg.server;
  if (msg.room) fields.room = msg.room;
  if (msg.keys?.length) fields.keys = msg.keys;
  if (msg.msg?.length) fields.msg = msg.msg;
  if (msg.push_id) fields.push_id = msg.push_id;
  if (msg.mid) fields.mid = msg.mid;
  if (msg.ack) fields.ack = true;
  const out = PushMsgProto.encode(PushMsgProto.fromObject(fields)).finish();
  // finish() may return a Node Buffer; hand out a plain Uint8Array view of it.
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Decodes a PushMsg from the queue. Every goim field is present in the result
 * (defaults filled in); `push_id`, `mid` and `ack` only when set. `msg` is a view into `bytes`, not a copy, so that the
 * body can be framed once and shared by every connection; don't reuse `bytes`
 * while it is in use.
 *
 * Throws on malformed bytes and on a `type` this server does not know (a
 * newer producer's), so the consumer can count and skip the message.
 *
 * @example
 * ```ts
 * import { decodePushMsg, encodePushMsg } from "./push_msg.ts";
 * const m = decodePushMsg(encodePushMsg({ type: "BROADCAST", operation: 1000, speed: 10 }));
 * console.log(m.type, m.operation, m.keys); // "BROADCAST" 1000 []
 * ```
 */
export function decodePushMsg(bytes: Uint8Array): PushMsg {
  const m = PushMsgProto.toObject(PushMsgProto.decode(bytes), {
    defaults: true,
    arrays: true,
    enums: Number,
    longs: Number,
  });
  const type = TYPE_NAMES[m.type];
  if (type === undefined) throw new TypeError(`PushMsg: unknown type ${m.type}`);
  const msg = m.msg as Uint8Array;
  const out: PushMsg = {
    type,
    operation: m.operation,
    speed: m.speed,
    server: m.server,
    room: m.room,
    keys: m.keys,
    msg: new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength),
  };
  if (m.push_id) out.push_id = m.push_id;
  if (m.mid) out.mid = m.mid;
  if (m.ack) out.ack = true;
  return out;
}

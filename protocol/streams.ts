/**
 * The stream ops' bodies (docs/STREAMS.md, "Operations"): the binary
 * `StreamMsg` a server wraps a push in, and the JSON bodies of `StreamAck`,
 * `StreamSync` and `StreamState`, plus the auth token's `streams` field.
 *
 * Every decoder here reads bytes a peer controls: each length is checked
 * against the buffer and the contract's bounds before it is used, and a
 * violation is a {@linkcode ProtocolError} with code `bad_stream` whose
 * message names the field. Pure, Web APIs only (browser-safe).
 *
 * @example
 * ```ts
 * import { encodeFrame } from "./frame.ts";
 * const inner = encodeFrame({ ver: 1, op: 1000, seq: 0, body: new Uint8Array([104, 105]) });
 * const frame = encodeStreamMsg(
 *   { kind: StreamKind.Room, pos: 42, epoch: "e1", pushId: "p1", stream: "room:live://1" },
 *   inner,
 * );
 * const msg = decodeStreamMsg(frame.subarray(16));
 * msg.pos; // 42
 * ```
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import {
  HEADER_LEN,
  PUSH_VER,
  readU16,
  readU32,
  writeHeader,
  writeU16,
  writeU32,
} from "./frame.ts";
import { Op } from "./ops.ts";

/** `StreamMsg.kind`: which stream a wrapped push belongs to. */
export const StreamKind = {
  /** A room stream (`room:<room>`). */
  Room: 1,
  /** A user's stream (`mid:<mid>`). */
  Mid: 2,
  /** No stream: an ack-requested key push (pos 0, no epoch, no stream name). */
  Key: 3,
} as const;

/** One of {@linkcode StreamKind}. */
export type StreamKind = typeof StreamKind[keyof typeof StreamKind];

/** `StreamMsg.flags` bits. */
export const StreamFlag = {
  /** The client is asked to ack the push id once processed. */
  Ack: 1,
  /** Replayed from history (recovery), not live. */
  Replayed: 2,
  /** Sent again after an ack timeout. */
  Resent: 4,
} as const;

/** Every flag bit this version defines; others are refused by the decoder. */
export const STREAM_FLAGS_MASK = 7;
/** Longest epoch, in bytes (ASCII). */
export const MAX_EPOCH_BYTES = 64;
/** Longest push id, in bytes (`[A-Za-z0-9_-]`). */
export const MAX_PUSH_ID_BYTES = 64;
/**
 * Longest stream name a client may name (token `recover`, `StreamSync`), in
 * UTF-8 bytes. A room key longer than this has a stream the client cannot
 * name: it only gets its state.
 */
export const MAX_STREAM_BYTES = 256;
/** Longest stream name on the server's side (`StreamMsg` S is a uint16). */
export const MAX_WIRE_STREAM_BYTES = 0xffff;
/** Most entries of a token's `recover` or a `StreamSync`. */
export const MAX_RECOVER_ENTRIES = 8;
/** Most push ids in one `StreamAck`. */
export const MAX_ACK_IDS = 64;
/** Most streams one `StreamState` lists (a connection has two; a sync names at most 8). */
export const MAX_STATE_STREAMS = 16;
/** Largest position (2^53 − 1: a JavaScript number holds it exactly). */
export const MAX_POS = Number.MAX_SAFE_INTEGER;

/** The fixed part of a StreamMsg body: kind, flags, pos, E, I, S. */
const FIXED = 1 + 1 + 8 + 1 + 1 + 2;
const TWO_32 = 2 ** 32;

/** The fields of a `StreamMsg` besides the wrapped frame. */
export interface StreamMsgFields {
  /** Which stream ({@linkcode StreamKind}). */
  kind: StreamKind;
  /** {@linkcode StreamFlag} bits (default 0). */
  flags?: number;
  /** The position (default 0; 0 for kind Key). */
  pos?: number;
  /** The stream's epoch (default ""; "" for kind Key). */
  epoch?: string;
  /** The push id (default ""). */
  pushId?: string;
  /** The stream name (default ""; "" for kind Key). */
  stream?: string;
}

/** A decoded `StreamMsg` body. */
export interface StreamMsg {
  kind: StreamKind;
  flags: number;
  pos: number;
  epoch: string;
  pushId: string;
  stream: string;
  /** The wrapped goim frame (header + body): a subarray of the decoded body. */
  frame: Uint8Array;
}

function bad(message: string): ProtocolError {
  return new ProtocolError("bad_stream", message);
}

function isPushIdChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 ||
    c === 95;
}

/** Whether `s` is a valid push id: 1 to 64 characters of `[A-Za-z0-9_-]`. */
export function isPushId(s: unknown): s is string {
  if (typeof s !== "string" || s.length === 0 || s.length > MAX_PUSH_ID_BYTES) return false;
  for (let i = 0; i < s.length; i++) if (!isPushIdChar(s.charCodeAt(i))) return false;
  return true;
}

/** Whether `s` is a valid epoch: ASCII of at most 64 bytes ("" included: no history). */
export function isEpoch(s: unknown): s is string {
  return typeof s === "string" && s.length <= MAX_EPOCH_BYTES && isAscii(s);
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

// A room batch wraps many frames of one stream: its name is encoded once.
let lastName = "";
let lastNameBytes = new Uint8Array(0);

function nameBytes(stream: string): Uint8Array {
  if (stream !== lastName) {
    lastNameBytes = utf8.encode(stream);
    lastName = stream;
  }
  return lastNameBytes;
}

function checkKind(kind: number): void {
  if (kind !== StreamKind.Room && kind !== StreamKind.Mid && kind !== StreamKind.Key) {
    throw bad(`kind ${kind} is not 1, 2 or 3`);
  }
}

// Kind 3 names no stream (`bare`: pos 0, no epoch, no name); kinds 1 and 2 name theirs.
function checkKindStream(kind: number, bare: boolean, stream: string): void {
  if (kind === StreamKind.Key) {
    if (!bare) throw bad("kind 3 (no stream) carries pos 0, no epoch and no stream name");
  } else if (!stream.startsWith(kind === StreamKind.Room ? "room:" : "mid:")) {
    throw bad(`a kind ${kind} stream name starts with ${kind === 1 ? "room:" : "mid:"}`);
  }
}

function checkFields(f: StreamMsgFields): void {
  const { kind, flags = 0, pos = 0, epoch = "", pushId = "", stream = "" } = f;
  checkKind(kind);
  if (!Number.isInteger(flags) || flags < 0 || flags > STREAM_FLAGS_MASK) {
    throw bad(`flags ${flags} are not bits 0-2`);
  }
  if (!Number.isSafeInteger(pos) || pos < 0) throw bad(`pos ${pos} is not an integer 0 … 2^53-1`);
  if (!isEpoch(epoch)) throw bad(`epoch must be ASCII of at most ${MAX_EPOCH_BYTES} bytes`);
  if (pushId !== "" && !isPushId(pushId)) {
    throw bad(`push id must be 1-${MAX_PUSH_ID_BYTES} characters of [A-Za-z0-9_-]`);
  }
  checkKindStream(kind, pos === 0 && epoch === "" && stream === "", stream);
}

/**
 * Bytes of the whole `StreamMsg` frame (header included) for these fields
 * around an inner frame of `innerLen` bytes; use with
 * {@linkcode writeStreamMsg} to build many into one buffer.
 */
export function streamMsgLength(fields: StreamMsgFields, innerLen: number): number {
  return HEADER_LEN + FIXED + (fields.epoch?.length ?? 0) + (fields.pushId?.length ?? 0) +
    nameBytes(fields.stream ?? "").length + innerLen;
}

/**
 * Writes one whole `StreamMsg` frame (op StreamMsg, ver 1, seq 0) at
 * `offset` of `out` and returns the offset after it. `out` must have
 * {@linkcode streamMsgLength} bytes free there. Validates the fields and
 * that `inner` is one whole goim frame.
 *
 * @example
 * ```ts
 * declare const inner: Uint8Array;
 * const fields = { kind: StreamKind.Mid, pos: 7, epoch: "e", pushId: "id1", stream: "mid:42" };
 * const out = new Uint8Array(streamMsgLength(fields, inner.length));
 * writeStreamMsg(out, 0, fields, inner);
 * ```
 */
export function writeStreamMsg(
  out: Uint8Array,
  offset: number,
  fields: StreamMsgFields,
  inner: Uint8Array,
): number {
  checkFields(fields);
  checkInner(inner);
  const epoch = fields.epoch ?? "";
  const pushId = fields.pushId ?? "";
  const name = nameBytes(fields.stream ?? "");
  if (name.length > MAX_WIRE_STREAM_BYTES) {
    throw bad(`stream name of ${name.length} bytes is over ${MAX_WIRE_STREAM_BYTES}`);
  }
  const pos = fields.pos ?? 0;
  const bodyLen = FIXED + epoch.length + pushId.length + name.length + inner.length;
  writeHeader(out, offset, bodyLen, PUSH_VER, Op.StreamMsg, 0);
  let o = offset + HEADER_LEN;
  out[o++] = fields.kind;
  out[o++] = fields.flags ?? 0;
  writeU32(out, o, Math.floor(pos / TWO_32));
  writeU32(out, o + 4, pos % TWO_32);
  o += 8;
  out[o++] = epoch.length;
  for (let i = 0; i < epoch.length; i++) out[o++] = epoch.charCodeAt(i);
  out[o++] = pushId.length;
  for (let i = 0; i < pushId.length; i++) out[o++] = pushId.charCodeAt(i);
  writeU16(out, o, name.length);
  out.set(name, o + 2);
  o += 2 + name.length;
  out.set(inner, o);
  return o + inner.length;
}

/**
 * Encodes a complete `StreamMsg` frame (op StreamMsg, ver 1, seq 0) around
 * `inner`, the goim frame (16-byte header + body) the push carries.
 *
 * @example
 * ```ts
 * declare const inner: Uint8Array;
 * encodeStreamMsg({ kind: StreamKind.Key, flags: StreamFlag.Ack, pushId: "Xk3" }, inner);
 * ```
 */
export function encodeStreamMsg(fields: StreamMsgFields, inner: Uint8Array): Uint8Array {
  const out = new Uint8Array(streamMsgLength(fields, inner.length));
  writeStreamMsg(out, 0, fields, inner);
  return out;
}

function checkInner(inner: Uint8Array): void {
  if (inner.length < HEADER_LEN) {
    throw bad(`wrapped frame of ${inner.length} bytes is shorter than a header`);
  }
  const packLen = readU32(inner, 0);
  if (packLen !== inner.length) {
    throw bad(`wrapped frame's packLen ${packLen} disagrees with its ${inner.length} bytes`);
  }
  if (readU16(inner, 4) !== HEADER_LEN) {
    throw bad(`wrapped frame's headerLen ${readU16(inner, 4)} is not ${HEADER_LEN}`);
  }
}

// The last epoch and stream name decoded, with their bytes: a connection's
// messages mostly carry the same two, and comparing a few bytes costs far
// less than building the strings again (a TextDecoder call per message was
// most of a decode).
interface Decoded {
  bytes: Uint8Array;
  text: string;
}
const lastEpoch: Decoded = { bytes: new Uint8Array(0), text: "" };
const lastStream: Decoded = { bytes: new Uint8Array(0), text: "" };
const MAX_REMEMBERED = 256;

function sameBytes(a: Uint8Array, body: Uint8Array, o: number, n: number): boolean {
  if (a.length !== n) return false;
  for (let i = 0; i < n; i++) if (a[i] !== body[o + i]) return false;
  return true;
}

function remember(d: Decoded, body: Uint8Array, o: number, n: number, text: string): void {
  if (n > MAX_REMEMBERED) return;
  d.bytes = body.slice(o, o + n);
  d.text = text;
}

// Bytes already checked to be ASCII, as a string.
function latin1(body: Uint8Array, o: number, n: number): string {
  return n === 0
    ? ""
    : String.fromCharCode.apply(null, body.subarray(o, o + n) as unknown as number[]);
}

/**
 * Decodes a `StreamMsg` body (the frame's body, after its 16-byte header).
 * `frame` in the answer is a subarray of `body`, never a copy. Throws a
 * {@linkcode ProtocolError} (`bad_stream`) for a length that overruns the
 * body, a pos of 2^53 or more, an epoch or push id that is not what the
 * contract allows, a stream name that is not UTF-8 or does not match the
 * kind, or a wrapped frame that is not exactly one goim frame.
 *
 * @example
 * ```ts
 * import type { Frame } from "./frame.ts";
 * import { Op } from "./ops.ts";
 * declare const f: Frame;
 * if (f.op === Op.StreamMsg) console.log(decodeStreamMsg(f.body).stream);
 * ```
 */
export function decodeStreamMsg(body: Uint8Array): StreamMsg {
  if (body.length < FIXED) throw bad(`body of ${body.length} bytes is shorter than ${FIXED}`);
  const kind = body[0];
  checkKind(kind);
  const flags = body[1];
  if (flags & ~STREAM_FLAGS_MASK) throw bad(`flags 0x${flags.toString(16)} set unknown bits`);
  const hi = readU32(body, 2);
  if (hi >= 2 ** 21) throw bad("pos is 2^53 or more");
  const pos = hi * TWO_32 + readU32(body, 6);
  let o = 10;
  const e = body[o++];
  if (e > MAX_EPOCH_BYTES) throw bad(`epoch length ${e} is over ${MAX_EPOCH_BYTES}`);
  if (o + e + 1 > body.length) throw bad(`epoch length ${e} overruns the body`);
  let epoch: string;
  if (sameBytes(lastEpoch.bytes, body, o, e)) epoch = lastEpoch.text;
  else {
    for (let i = 0; i < e; i++) if (body[o + i] > 0x7f) throw bad("epoch is not ASCII");
    epoch = latin1(body, o, e);
    remember(lastEpoch, body, o, e, epoch);
  }
  o += e;
  const idLen = body[o++];
  if (idLen > MAX_PUSH_ID_BYTES) throw bad(`push id length ${idLen} is over ${MAX_PUSH_ID_BYTES}`);
  if (o + idLen + 2 > body.length) throw bad(`push id length ${idLen} overruns the body`);
  for (let i = 0; i < idLen; i++) {
    if (!isPushIdChar(body[o + i])) throw bad("push id is not [A-Za-z0-9_-]");
  }
  const pushId = latin1(body, o, idLen);
  o += idLen;
  const s = readU16(body, o);
  o += 2;
  if (o + s > body.length) throw bad(`stream name length ${s} overruns the body`);
  let stream: string;
  if (sameBytes(lastStream.bytes, body, o, s)) stream = lastStream.text;
  else {
    try {
      stream = strictUtf8.decode(body.subarray(o, o + s));
    } catch {
      throw bad("stream name is not UTF-8");
    }
    remember(lastStream, body, o, s, stream);
  }
  o += s;
  checkKindStream(kind, pos === 0 && e === 0 && s === 0, stream);
  const frame = body.subarray(o);
  checkInner(frame);
  return { kind: kind as StreamKind, flags, pos, epoch, pushId, stream, frame };
}

// ------------------------------------------------------------------ JSON bodies

/** A client's last position in one stream (token `recover`, `StreamSync`). */
export interface StreamRecoverEntry {
  /** The stream name (`room:…`, `mid:…`), 1 to 256 UTF-8 bytes. */
  stream: string;
  /** Its epoch as the client knows it, ≤ 64 ASCII bytes ("" with pos 0: seen with no history). */
  epoch: string;
  /** The last position the client has, 0 … 2^53−1. */
  pos: number;
}

/** The auth token's `streams` field, validated ({@linkcode parseStreamsOption}). */
export interface StreamsOption {
  /** The positions to recover from; empty when the token names none. */
  recover: StreamRecoverEntry[];
}

/** Why a stream was not recovered (docs/STREAMS.md, "StreamState"). */
export type StreamStateReason = "epoch_changed" | "window_passed" | "unavailable" | "disabled";

const REASONS: ReadonlySet<string> = new Set([
  "epoch_changed",
  "window_passed",
  "unavailable",
  "disabled",
]);

/** Whether `s` is one of the four {@linkcode StreamStateReason}s. */
export function isStreamStateReason(s: unknown): s is StreamStateReason {
  return typeof s === "string" && REASONS.has(s);
}

/** One stream of a `StreamState` body. */
export interface StreamStateEntry {
  stream: string;
  /** The stream's current epoch ("" for a stream with no history yet). */
  epoch: string;
  /** Its last position (0: no message yet). */
  pos: number;
  /** For a stream the client named: whether every message after its position follows. */
  recovered?: boolean;
  /** With `recovered: true`: how many replayed `StreamMsg` frames follow. */
  replayed?: number;
  /** With `recovered: false`: why not. */
  reason?: StreamStateReason;
}

function parseJson(body: Uint8Array, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(strictUtf8.decode(body));
  } catch {
    throw bad(`${what} body is not valid UTF-8 JSON`);
  }
  return object(v, `${what} body`);
}

function object(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw bad(`${what} must be a JSON object`);
  }
  return v as Record<string, unknown>;
}

function array(v: unknown, what: string, min: number, max: number): unknown[] {
  if (!Array.isArray(v) || v.length < min || v.length > max) {
    throw bad(`${what} must be an array of ${min} to ${max} entries`);
  }
  return v;
}

function utf8Length(s: string): number {
  // Exact UTF-8 length without allocating (lone surrogates count as U+FFFD).
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

function streamName(v: unknown, what: string, max: number): string {
  if (typeof v !== "string" || v.length === 0 || utf8Length(v) > max) {
    throw bad(`${what} must be a string of 1 to ${max} UTF-8 bytes`);
  }
  return v;
}

function epochOf(v: unknown, what: string): string {
  if (!isEpoch(v)) {
    throw bad(`${what} must be an ASCII string of at most ${MAX_EPOCH_BYTES} bytes`);
  }
  return v;
}

function posOf(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw bad(`${what} must be an integer 0 … 2^53-1`);
  }
  return v;
}

function recoverEntries(v: unknown, what: string): StreamRecoverEntry[] {
  const list = array(v, what, 0, MAX_RECOVER_ENTRIES);
  return list.map((item, i) => {
    const o = object(item, `${what}[${i}]`);
    return {
      stream: streamName(o.stream, `${what}[${i}].stream`, MAX_STREAM_BYTES),
      epoch: epochOf(o.epoch ?? "", `${what}[${i}].epoch`),
      pos: posOf(o.pos ?? 0, `${what}[${i}].pos`),
    };
  });
}

/**
 * Validates the auth token's `streams` field (docs/STREAMS.md, "Opting
 * in"): an object whose optional `recover` holds at most 8 entries of
 * `{stream: 1-256 UTF-8 bytes, epoch: ≤ 64 ASCII bytes, pos: 0 … 2^53−1}`
 * (`epoch` and `pos` default to "" and 0). Other members are ignored.
 * Throws a {@linkcode ProtocolError} (`bad_stream`) naming the field.
 *
 * @example
 * ```ts
 * const token = JSON.parse('{"mid":42,"streams":{"recover":[{"stream":"mid:42","epoch":"a","pos":7}]}}');
 * parseStreamsOption(token.streams).recover[0].pos; // 7
 * ```
 */
export function parseStreamsOption(value: unknown): StreamsOption {
  const o = object(value, "streams");
  return { recover: o.recover === undefined ? [] : recoverEntries(o.recover, "streams.recover") };
}

/**
 * Encodes a `StreamAck` body, `{"ids": [...]}`: 1 to 64 push ids.
 *
 * @example
 * ```ts
 * encodeStreamAck(["Xk3", "Yz9"]); // {"ids":["Xk3","Yz9"]}
 * ```
 */
export function encodeStreamAck(ids: readonly string[]): Uint8Array {
  checkAckIds(ids);
  return utf8.encode(JSON.stringify({ ids }));
}

function checkAckIds(ids: unknown): string[] {
  const list = array(ids, "ids", 1, MAX_ACK_IDS);
  for (let i = 0; i < list.length; i++) {
    if (!isPushId(list[i])) {
      throw bad(`ids[${i}] must be 1-${MAX_PUSH_ID_BYTES} characters of [A-Za-z0-9_-]`);
    }
  }
  return list as string[];
}

/**
 * Parses a `StreamAck` body: its push ids (1 to 64, each
 * `[A-Za-z0-9_-]{1,64}`), or a {@linkcode ProtocolError} (`bad_stream`).
 *
 * @example
 * ```ts
 * parseStreamAck(new TextEncoder().encode('{"ids":["Xk3"]}')); // ["Xk3"]
 * ```
 */
export function parseStreamAck(body: Uint8Array): string[] {
  return checkAckIds(parseJson(body, "StreamAck").ids);
}

/**
 * Encodes a `StreamSync` body, `{"recover": [...]}`: at most 8 positions.
 *
 * @example
 * ```ts
 * encodeStreamSync([{ stream: "room:live://1000", epoch: "b8f1c2", pos: 41 }]);
 * ```
 */
export function encodeStreamSync(recover: readonly StreamRecoverEntry[]): Uint8Array {
  const entries = recoverEntries(recover, "recover");
  return utf8.encode(JSON.stringify({ recover: entries }));
}

/**
 * Parses a `StreamSync` body: `recover`, an array of 0 to 8 entries as in
 * the token, or a {@linkcode ProtocolError} (`bad_stream`).
 *
 * @example
 * ```ts
 * const body = new TextEncoder().encode('{"recover":[{"stream":"mid:42","epoch":"a","pos":7}]}');
 * parseStreamSync(body)[0].stream; // "mid:42"
 * ```
 */
export function parseStreamSync(body: Uint8Array): StreamRecoverEntry[] {
  return recoverEntries(parseJson(body, "StreamSync").recover, "recover");
}

function stateEntry(v: unknown, what: string): StreamStateEntry {
  const o = object(v, what);
  const out: StreamStateEntry = {
    stream: streamName(o.stream, `${what}.stream`, MAX_WIRE_STREAM_BYTES),
    epoch: epochOf(o.epoch, `${what}.epoch`),
    pos: posOf(o.pos, `${what}.pos`),
  };
  if (o.recovered !== undefined) {
    if (typeof o.recovered !== "boolean") throw bad(`${what}.recovered must be a boolean`);
    out.recovered = o.recovered;
  }
  if (o.replayed !== undefined) {
    if (out.recovered !== true) throw bad(`${what}.replayed goes with recovered: true`);
    out.replayed = posOf(o.replayed, `${what}.replayed`);
  }
  if (o.reason !== undefined) {
    if (out.recovered !== false) throw bad(`${what}.reason goes with recovered: false`);
    if (!isStreamStateReason(o.reason)) {
      throw bad(`${what}.reason must be one of ${[...REASONS].join(", ")}`);
    }
    out.reason = o.reason;
  }
  return out;
}

/**
 * Encodes a `StreamState` body, `{"streams": [...]}` (at most 16 streams).
 * Fields are written in the contract's order; absent optional ones are
 * left out.
 *
 * @example
 * ```ts
 * encodeStreamState([{ stream: "mid:42", epoch: "c11e90", pos: 3, recovered: false, reason: "epoch_changed" }]);
 * ```
 */
export function encodeStreamState(streams: readonly StreamStateEntry[]): Uint8Array {
  array(streams, "streams", 0, MAX_STATE_STREAMS);
  const list = streams.map((s, i) => {
    const e = stateEntry(s, `streams[${i}]`);
    return {
      stream: e.stream,
      epoch: e.epoch,
      pos: e.pos,
      recovered: e.recovered,
      replayed: e.replayed,
      reason: e.reason,
    };
  });
  return utf8.encode(JSON.stringify({ streams: list }));
}

/**
 * Parses a `StreamState` body (client side), or a
 * {@linkcode ProtocolError} (`bad_stream`): at most 16 streams, each with
 * `stream`, `epoch` and `pos`; `replayed` only with `recovered: true`,
 * `reason` (one of the four) only with `recovered: false`.
 *
 * @example
 * ```ts
 * const body = new TextEncoder().encode('{"streams":[{"stream":"mid:42","epoch":"a","pos":3}]}');
 * parseStreamState(body)[0].pos; // 3
 * ```
 */
export function parseStreamState(body: Uint8Array): StreamStateEntry[] {
  const list = array(parseJson(body, "StreamState").streams, "streams", 0, MAX_STATE_STREAMS);
  return list.map((v, i) => stateEntry(v, `streams[${i}]`));
}

/**
 * Query-string parsing and validation for the HTTP API. Every failure is an
 * {@linkcode ApiError} with code -400 whose message names the parameter and
 * says what is expected, because goim's bare `-400` leaves callers guessing.
 *
 * Lists accept repeated parameters and comma lists, mixed freely:
 * `keys=a&keys=b,c` is `["a", "b", "c"]`; empty items are skipped.
 *
 * @module
 */

import { isBusinessOp } from "../protocol/ops.ts";
import { isPushId, MAX_PUSH_ID_BYTES, MAX_STREAM_BYTES } from "../protocol/streams.ts";
import { ApiError, ResultCode } from "./result.ts";

/** Most keys, mids or rooms one request may name: bounds the work of one call. */
export const MAX_LIST_ITEMS = 10_000;

/** Largest `limit` of `/goim/online/top`. */
export const MAX_TOP_LIMIT = 1000;

/** `limit` of `/goim/online/top` when absent. */
export const DEFAULT_TOP_LIMIT = 20;

/** Largest `limit` of `/goim/history` (docs/STREAMS.md, "History API"). */
export const MAX_HISTORY_LIMIT = 1000;

/** `limit` of `/goim/history` when absent. */
export const DEFAULT_HISTORY_LIMIT = 100;

const INT_RE = /^[+-]?\d+$/;
const utf8 = new TextEncoder();
const INT32_MAX = 2 ** 31 - 1;

function bad(message: string): ApiError {
  return new ApiError(ResultCode.BadRequest, message);
}

/**
 * A list parameter: every occurrence, each split on commas, trimmed, empty
 * items dropped. Throws when more than {@linkcode MAX_LIST_ITEMS} remain.
 *
 * @example
 * ```ts
 * import { list } from "./params.ts";
 * list(new URLSearchParams("keys=a&keys=b,c"), "keys"); // ["a", "b", "c"]
 * ```
 */
export function list(q: URLSearchParams, name: string): string[] {
  const out: string[] = [];
  for (const value of q.getAll(name)) {
    for (const part of value.split(",")) {
      const item = part.trim();
      if (item === "") continue;
      if (out.length === MAX_LIST_ITEMS) {
        throw bad(`${name}: at most ${MAX_LIST_ITEMS} items per request`);
      }
      out.push(item);
    }
  }
  return out;
}

/** A non-empty list parameter (see {@linkcode list}). */
export function requiredList(q: URLSearchParams, name: string): string[] {
  const items = list(q, name);
  if (items.length === 0) {
    throw bad(`${name}: at least one value is required (repeat ${name}= or separate with commas)`);
  }
  return items;
}

/** A required, non-blank single parameter (trimmed). Several occurrences are refused. */
export function requiredString(q: URLSearchParams, name: string): string {
  const v = optionalString(q, name);
  if (v === undefined || v === "") throw bad(`${name}: required`);
  return v;
}

/** An optional single parameter (trimmed), `undefined` when absent. */
export function optionalString(q: URLSearchParams, name: string): string | undefined {
  const all = q.getAll(name);
  if (all.length > 1) throw bad(`${name}: given ${all.length} times, expected once`);
  return all[0]?.trim();
}

function int(q: URLSearchParams, name: string, min: number, max: number, def?: number): number {
  const v = optionalString(q, name);
  if (v === undefined || v === "") {
    if (def === undefined) throw bad(`${name}: required (an integer from ${min} to ${max})`);
    return def;
  }
  const n = INT_RE.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw bad(`${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

/**
 * The `operation` of a push: an int32 business op, 18 to 2^31-1.
 *
 * Ops 0–17 are the protocol's own (docs/PROTOCOL.md, "Operations"): a push
 * with op 8 would reach clients as an auth reply, op 3 as a heartbeat reply.
 * goim accepts them and lets clients misread the frame; here they are
 * refused. Business ops are 1000 and up by convention, but 18–999 are not
 * forbidden.
 */
export function operation(q: URLSearchParams): number {
  const v = optionalString(q, "operation");
  if (v === undefined || v === "") {
    throw bad(
      "operation: required (a business op: an integer from 18 to 2147483391, 1000+ by convention)",
    );
  }
  const n = INT_RE.test(v) ? Number(v) : NaN;
  if (!isBusinessOp(n)) {
    throw bad(
      `operation: expected a business op (an integer from 18 to 2147483391, 1000+ by convention; ` +
        `0-17 are protocol ops), got ${JSON.stringify(v)}`,
    );
  }
  return n;
}

/**
 * The `mids` of a push: positive integer user ids. int64 in goim, but ids
 * above 2^53 cannot be represented exactly (proto/messages.ts), so they are
 * refused rather than silently rounded to someone else's id. Mid 0 (anonymous
 * connections) never has a key set, so naming it is refused as a mistake.
 */
export function mids(q: URLSearchParams): number[] {
  return requiredList(q, "mids").map((s) => positiveId(s, "mids"));
}

function positiveId(s: string, name: string): number {
  const n = /^\+?\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw bad(
      `${name}: expected positive integer user ids up to ${Number.MAX_SAFE_INTEGER}, got ${
        JSON.stringify(s)
      }`,
    );
  }
  return n;
}

/**
 * `ack` of a key or mid push: `1` asks opted-in connections to ack
 * (docs/STREAMS.md, "Push API"), `0` or absent does not.
 */
export function ack(q: URLSearchParams): boolean {
  const v = optionalString(q, "ack");
  if (v === undefined || v === "" || v === "0") return false;
  if (v === "1") return true;
  throw bad(`ack: expected 0 or 1, got ${JSON.stringify(v)}`);
}

/**
 * `wait` of an ack-requested push: how long to wait for the acks, in ms,
 * 0 to `maxMs` (`logic.push.max_wait`); `undefined` when absent. Only with
 * `ack=1`: without acks there is nothing to wait for.
 */
export function wait(q: URLSearchParams, acked: boolean, maxMs: number): number | undefined {
  const v = optionalString(q, "wait");
  if (v === undefined || v === "") return undefined;
  if (!acked) throw bad("wait: only with ack=1 (it waits for the acks)");
  return int(q, "wait", 0, maxMs);
}

/** A push id parameter (`id` of `/goim/push/status`): 1 to 64 characters of `[A-Za-z0-9_-]`. */
export function pushId(q: URLSearchParams, name = "id"): string {
  const v = requiredString(q, name);
  if (!isPushId(v as unknown)) {
    throw bad(
      `${name}: expected a push id (1 to ${MAX_PUSH_ID_BYTES} characters of A-Z a-z 0-9 _ -), got ${
        JSON.stringify(v.slice(0, 80))
      }`,
    );
  }
  return v;
}

/**
 * The stream of `/goim/history`: exactly one of `stream` (`room:…` or
 * `mid:…`, at most {@linkcode MAX_STREAM_BYTES} bytes), `room` (a room
 * key `type://id`) or `mid` (a positive user id).
 */
export function historyStream(q: URLSearchParams): string {
  const given = ["stream", "room", "mid"].filter((n) => q.has(n));
  if (given.length !== 1) {
    throw bad(
      given.length === 0
        ? "stream: required (stream=room:<room key> or mid:<mid>, or room=<room key>, or mid=<mid>)"
        : `${given.join(", ")}: give only one of stream, room and mid`,
    );
  }
  let stream: string;
  if (given[0] === "mid") {
    stream = `mid:${positiveId(requiredString(q, "mid"), "mid")}`;
  } else if (given[0] === "room") {
    const room = noSpaces("room", requiredString(q, "room"));
    if (!room.includes("://")) {
      throw bad(`room: expected a room key type://id, got ${JSON.stringify(room)}`);
    }
    stream = `room:${room}`;
  } else {
    stream = noSpaces("stream", requiredString(q, "stream"));
    // A mid stream's name is canonical: `mid:+07` names `mid:7`.
    if (stream.startsWith("mid:")) stream = `mid:${positiveId(stream.slice(4), "stream")}`;
    else if (!stream.startsWith("room:") || stream.length === 5) {
      throw bad(
        `stream: expected room:<room key> or mid:<mid>, got ${JSON.stringify(stream.slice(0, 80))}`,
      );
    }
  }
  if (utf8.encode(stream).length > MAX_STREAM_BYTES) {
    throw bad(`${given[0]}: the stream name is longer than ${MAX_STREAM_BYTES} bytes`);
  }
  return stream;
}

/** `after` of `/goim/history`: a position, 0 to 2^53-1; `undefined` when absent. */
export function after(q: URLSearchParams): number | undefined {
  const v = optionalString(q, "after");
  if (v === undefined || v === "") return undefined;
  return int(q, "after", 0, Number.MAX_SAFE_INTEGER);
}

/** `limit` of `/goim/history`: 1..{@linkcode MAX_HISTORY_LIMIT}, default {@linkcode DEFAULT_HISTORY_LIMIT}. */
export function historyLimit(q: URLSearchParams): number {
  return int(q, "limit", 1, MAX_HISTORY_LIMIT, DEFAULT_HISTORY_LIMIT);
}

/** `speed` of a broadcast: an int32 ≥ 0 (goim: rooms per second, 0 = unpaced). Default 0. */
export function speed(q: URLSearchParams): number {
  return int(q, "speed", 0, INT32_MAX, 0);
}

/** `limit` of `/goim/online/top`: 1..{@linkcode MAX_TOP_LIMIT}, default {@linkcode DEFAULT_TOP_LIMIT}. */
export function limit(q: URLSearchParams): number {
  return int(q, "limit", 1, MAX_TOP_LIMIT, DEFAULT_TOP_LIMIT);
}

/**
 * A room `type` (the scheme of a room key `type://id`): required, and free
 * of `://`, `/` and whitespace so that the room key it builds parses back.
 */
export function roomType(q: URLSearchParams): string {
  const t = requiredString(q, "type");
  if (/[\s/:]/.test(t)) {
    throw bad(
      `type: must not contain ':', '/' or spaces (it becomes type://room), got ${
        JSON.stringify(t)
      }`,
    );
  }
  return t;
}

/** A room id (the part after `type://`): required, no whitespace. */
export function roomId(q: URLSearchParams, name = "room"): string {
  return noSpaces(name, requiredString(q, name));
}

/** Room ids of `/goim/online/room` (a list, see {@linkcode list}). */
export function roomIds(q: URLSearchParams): string[] {
  return requiredList(q, "rooms").map((r) => noSpaces("rooms", r));
}

function noSpaces(name: string, value: string): string {
  if (/\s/.test(value)) {
    throw bad(`${name}: must not contain spaces, got ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * The room key goim builds from a type and an id.
 *
 * @example
 * ```ts
 * import { roomKey } from "./params.ts";
 * roomKey("live", "1000"); // "live://1000"
 * ```
 */
export function roomKey(type: string, id: string): string {
  return `${type}://${id}`;
}

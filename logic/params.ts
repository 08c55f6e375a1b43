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
import { ApiError, ResultCode } from "./result.ts";

/** Most keys, mids or rooms one request may name: bounds the work of one call. */
export const MAX_LIST_ITEMS = 10_000;

/** Largest `limit` of `/goim/online/top`. */
export const MAX_TOP_LIMIT = 1000;

/** `limit` of `/goim/online/top` when absent. */
export const DEFAULT_TOP_LIMIT = 20;

const INT_RE = /^[+-]?\d+$/;
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
  return requiredList(q, "mids").map((s) => {
    const n = /^\+?\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(n) || n < 1) {
      throw bad(
        `mids: expected positive integer user ids up to ${Number.MAX_SAFE_INTEGER}, got ${
          JSON.stringify(s)
        }`,
      );
    }
    return n;
  });
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

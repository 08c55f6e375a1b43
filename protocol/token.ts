/**
 * The op 7 auth token: the JSON body of a client's first frame.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { isInt32 } from "./ops.ts";
import type { StreamRecoverEntry } from "./streams.ts";

/**
 * What a goim client sends in its op 7 body (docs/PROTOCOL.md, "Connection
 * lifecycle", step 2).
 * Field names are goim's JSON names.
 */
export interface AuthToken {
  /** User id (int64 in goim; values above 2^53 lose precision in JSON numbers). */
  mid: number;
  /** Connection key; logic generates a UUID when empty. */
  key: string;
  /** Room key such as `live://1000`; empty means no room. */
  room_id: string;
  /** Client platform (`web`, `android`, ...). */
  platform: string;
  /** Business ops this connection accepts for key, mid and broadcast pushes. */
  accepts: number[];
  /** A signed credential (a JWT) when logic's auth mode requires one. */
  token?: string;
  /**
   * Opts the connection in to streams (docs/STREAMS.md, "Opting in"); absent
   * on a goim connection. Not a goim field: a goim logic ignores it.
   */
  streams?: AuthTokenStreams;
}

/**
 * The token's `streams` field: `{}` opts in; `recover` names the client's
 * last positions (at most 8; its room's and its mid's are the ones used).
 *
 * @example
 * ```ts
 * const streams: AuthTokenStreams = {
 *   recover: [{ stream: "room:live://1000", epoch: "b8f1c2", pos: 41 }],
 * };
 * ```
 */
export interface AuthTokenStreams {
  /** One entry per stream: its name, the epoch the client knows and its last position. */
  recover?: StreamRecoverEntry[];
}

const utf8 = new TextEncoder();

/**
 * Encodes a token as an op 7 body (its JSON, in the object's own key
 * order). `streams` is written only when present, so a token without it
 * encodes to the same bytes as before streams existed.
 *
 * @example
 * ```ts
 * encodeAuthToken({ mid: 1, key: "", room_id: "live://1000", platform: "web", accepts: [1000] });
 * ```
 */
export function encodeAuthToken(token: AuthToken): Uint8Array {
  return utf8.encode(JSON.stringify(token));
}

/**
 * Parses and validates an op 7 body. Missing optional fields take their
 * zero values as in goim; wrong types are a {@linkcode ProtocolError}
 * with code `bad_auth_token`.
 * `streams` is not read here: logic validates it on its own with
 * `parseStreamsOption` (protocol/streams.ts), only when present.
 */
export function parseAuthToken(body: Uint8Array): AuthToken {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw new ProtocolError("bad_auth_token", "auth body is not valid UTF-8 JSON");
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new ProtocolError("bad_auth_token", "auth body must be a JSON object");
  }
  const o = v as Record<string, unknown>;
  const mid = o.mid ?? 0;
  if (typeof mid !== "number" || !Number.isInteger(mid) || mid < -(2 ** 63) || mid >= 2 ** 63) {
    throw new ProtocolError("bad_auth_token", "mid must be an int64 number");
  }
  const str = (name: string): string => {
    const s = o[name] ?? "";
    if (typeof s !== "string") {
      throw new ProtocolError("bad_auth_token", `${name} must be a string`);
    }
    return s;
  };
  const accepts = o.accepts ?? [];
  if (!Array.isArray(accepts) || !accepts.every(isInt32)) {
    throw new ProtocolError("bad_auth_token", "accepts must be an array of int32 numbers");
  }
  const token: AuthToken = {
    mid,
    key: str("key"),
    room_id: str("room_id"),
    platform: str("platform"),
    accepts: accepts as number[],
  };
  if (o.token !== undefined) token.token = str("token");
  return token;
}

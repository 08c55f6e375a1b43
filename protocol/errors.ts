/**
 * Typed protocol errors and the JSON reasons carried by op 6 frames.
 *
 * @module
 */

/** Machine-readable cause of a {@linkcode ProtocolError}. */
export type ProtocolErrorCode =
  | "packlen_too_small"
  | "packlen_too_large"
  | "bad_header_len"
  | "packlen_mismatch"
  | "truncated"
  | "bad_ops"
  | "bad_auth_token"
  /** A stream op's body breaks docs/STREAMS.md (protocol/streams.ts). */
  | "bad_stream";

/**
 * Thrown for input that breaks the wire contract. The comet answers it with
 * op 6 carrying {@linkcode ProtocolError.reason} and closes only the
 * offending connection.
 *
 * @example
 * ```ts
 * import type { Frame } from "./frame.ts";
 * import type { FrameReader } from "./reader.ts";
 * declare const reader: FrameReader, chunk: Uint8Array;
 * declare function onFrame(f: Frame): void;
 * try { reader.push(chunk, onFrame); } catch (e) {
 *   if (e instanceof ProtocolError) console.log(e.code, e.message);
 * }
 * ```
 */
export class ProtocolError extends Error {
  /** Machine-readable cause, stable across releases. */
  readonly code: ProtocolErrorCode;

  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }

  /** The op 6 reason for this error (`{"code":4000,...}`). */
  get reason(): DisconnectReason {
    return { code: ReasonCode.ProtocolError, message: `${this.code}: ${this.message}` };
  }
}

/**
 * Numeric codes in op 6 JSON reasons. They sit in the 4000–4999 range that
 * RFC 6455 leaves to applications, so a WebSocket close code can repeat them.
 */
export const ReasonCode = {
  /** A malformed frame (bad packLen, headerLen, body size). */
  ProtocolError: 4000,
  /** The auth token was rejected by logic. */
  AuthFailed: 4001,
  /** No op 7 arrived within the handshake timeout. */
  HandshakeTimeout: 4002,
  /** No op 2 arrived within the idle timeout. */
  IdleTimeout: 4003,
  /** A new connection with the same key replaced this one. */
  Replaced: 4004,
  /** The connection's bounded send queue overflowed. */
  SlowConsumer: 4005,
  /** The server is shutting down. */
  ShuttingDown: 4006,
  /**
   * The connection hit a server-side bound (comet.limits.*: too many
   * accepted operations, frames too fast, too many input bytes waiting),
   * or the server refused it for lack of capacity; the message names it.
   */
  LimitExceeded: 4007,
  /**
   * An operator closed the connection (docs/CONSOLE.md, "Kick"); the
   * message says why. Not a ban: the client may connect again.
   */
  Kicked: 4008,
  /** An internal error on the server's side (logic unreachable, ...). */
  ServerError: 4500,
} as const;

/** The JSON body of an op 6 frame. */
export interface DisconnectReason {
  /** One of {@linkcode ReasonCode}. */
  code: number;
  /** A clear, human-readable explanation. */
  message: string;
  /**
   * A reconnect hint: wait this long (ms) before connecting again, to a
   * comet the nodes API names. Sent with 4006 when an operator drains a
   * comet (docs/CONSOLE.md, "Drain"), each client its own share of the
   * drain's spread so they do not all come back at once. Absent = none.
   */
  reconnect_after_ms?: number;
}

const utf8 = new TextEncoder();

/**
 * Encodes a reason as the op 6 body bytes.
 *
 * @example
 * ```ts
 * encodeReason({ code: ReasonCode.SlowConsumer, message: "slow consumer" });
 * ```
 */
export function encodeReason(reason: DisconnectReason): Uint8Array {
  const hint = reason.reconnect_after_ms;
  return utf8.encode(JSON.stringify(
    validHint(hint)
      ? { code: reason.code, message: reason.message, reconnect_after_ms: hint }
      : { code: reason.code, message: reason.message },
  ));
}

function validHint(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

/**
 * Decodes an op 6 body; a body that is not a reason object comes back as
 * `{code: 0, message: <text>}` so clients never throw on a goim server's
 * free-form text.
 */
export function decodeReason(body: Uint8Array): DisconnectReason {
  const text = new TextDecoder().decode(body);
  try {
    const v = JSON.parse(text);
    if (v && typeof v === "object" && typeof v.code === "number" && typeof v.message === "string") {
      return validHint(v.reconnect_after_ms)
        ? { code: v.code, message: v.message, reconnect_after_ms: v.reconnect_after_ms }
        : { code: v.code, message: v.message };
    }
  } catch {
    // not JSON: fall through
  }
  return { code: 0, message: text };
}

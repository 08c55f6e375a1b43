/**
 * The one error type the client rejects with and reports in events.
 *
 * Runs in Deno and browsers.
 *
 * @module
 */

import type { DisconnectReason } from "../protocol/errors.ts";

/**
 * Machine-readable cause of a {@linkcode GoimClientError}.
 *
 * @example
 * ```ts
 * const retryable = (c: GoimClientErrorCode) => c === "timeout" || c === "disconnected";
 * ```
 */
export type GoimClientErrorCode =
  /** The server answered op 7 with op 6; {@linkcode GoimClientError.reason} says why. */
  | "auth_failed"
  /** No op 8 arrived within `authTimeoutMs` (the connect attempt included). */
  | "auth_timeout"
  /** The transport could not be opened (refused, DNS, TLS, WebSocket upgrade). */
  | "connect_failed"
  /** The connection ended; `reason` holds the server's op 6 reason when one was sent. */
  | "disconnected"
  /** Two heartbeat intervals passed with no op 3 reply. */
  | "heartbeat_timeout"
  /** A request got no reply within its timeout. */
  | "timeout"
  /** A request was made while the client was not connected (or reconnecting). */
  | "not_connected"
  /** `close()` was called. */
  | "closed"
  /** The server sent bytes that break the wire contract. */
  | "protocol";

/**
 * Why a connect, a request or a connection failed.
 *
 * @example
 * ```ts
 * import type { GoimClient } from "./client.ts";
 * declare const client: GoimClient;
 * try {
 *   await client.connect();
 * } catch (e) {
 *   if (e instanceof GoimClientError && e.code === "auth_failed") {
 *     console.log(e.reason?.code, e.reason?.message); // 4001 "..."
 *   }
 * }
 * ```
 */
export class GoimClientError extends Error {
  /** Machine-readable cause. */
  readonly code: GoimClientErrorCode;
  /** The server's op 6 reason (or WebSocket close code 4000–4999), when it gave one. */
  readonly reason?: DisconnectReason;

  /** `options.reason` is the server's op 6 reason; `options.cause` the underlying error. */
  constructor(
    code: GoimClientErrorCode,
    message: string,
    options: { reason?: DisconnectReason; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GoimClientError";
    this.code = code;
    if (options.reason) this.reason = options.reason;
  }
}

/**
 * The transport seam: one small interface over raw TCP and WebSocket, and
 * {@linkcode openTransport}, which picks one by URL scheme.
 *
 * A transport turns bytes into frames and nothing more: TCP runs a
 * `FrameReader` over the byte stream, WebSocket decodes one frame per binary
 * message. Op 9 envelopes, replies and pushes are the client's business.
 *
 * Browsers: this module and `websocket.ts` use only Web APIs. The TCP
 * transport (`tcp.ts`, the only module that references `Deno`) is loaded with
 * a dynamic `import()` for `tcp://` URLs only, so a browser bundle of the
 * WebSocket client never executes it (with code splitting it is not even
 * fetched).
 *
 * @module
 */

import type { Frame } from "../protocol/frame.ts";
import { GoimClientError } from "./errors.ts";
import { openWebSocket } from "./websocket.ts";

/**
 * How a transport ended.
 *
 * @example
 * ```ts
 * const handlers: TransportHandlers = {
 *   onFrame() {},
 *   onClose: (c: TransportClose) => console.log(c.code, c.reason, c.error),
 * };
 * ```
 */
export interface TransportClose {
  /** Why it failed, when it did not end cleanly (I/O or protocol error). */
  error?: unknown;
  /** WebSocket close code, when the transport is a WebSocket. */
  code?: number;
  /** WebSocket close reason, when the transport is a WebSocket. */
  reason?: string;
}

/**
 * What a transport reports to its owner.
 *
 * @example
 * ```ts
 * const handlers: TransportHandlers = {
 *   onFrame: (f) => console.log(f.op, f.body.length),
 *   onClose: (c) => console.log("closed", c.error),
 * };
 * ```
 */
export interface TransportHandlers {
  /**
   * One decoded frame. Its `body` is stable: it is never overwritten by later
   * reads (the TCP transport copies; a WebSocket message is a fresh buffer).
   */
  onFrame(frame: Frame): void;
  /** Called exactly once, after the transport is fully closed. */
  onClose(info: TransportClose): void;
}

/**
 * Options every transport factory receives.
 *
 * @example
 * ```ts
 * declare const handlers: TransportHandlers;
 * const opts: TransportOptions = { maxBody: 1 << 24, handlers, signal: AbortSignal.timeout(5_000) };
 * await openTransport(new URL("ws://127.0.0.1:3102/sub"), opts);
 * ```
 */
export interface TransportOptions {
  /** Largest accepted frame body in bytes (server→client). */
  maxBody: number;
  /** Frame and close callbacks. */
  handlers: TransportHandlers;
  /** Aborts the connect step; the factory then rejects. */
  signal?: AbortSignal;
}

/**
 * An open byte pipe to the comet.
 *
 * @example
 * ```ts
 * import { encodeFrame } from "../protocol/frame.ts";
 * import { Op } from "../protocol/ops.ts";
 * const t = await openTransport(new URL("ws://127.0.0.1:3102/sub"), {
 *   maxBody: 1 << 24,
 *   handlers: { onFrame: (f) => console.log(f.op), onClose: () => {} },
 * });
 * await t.write(encodeFrame({ ver: 1, op: Op.Heartbeat, seq: 1 }));
 * await t.close();
 * ```
 */
export interface Transport {
  /** `"tcp"` or `"ws"`. */
  readonly kind: string;
  /**
   * Writes bytes whole. Writes are serialised (one in flight, the rest queued
   * in order); rejects if the transport is closed or the write fails.
   */
  write(bytes: Uint8Array): Promise<void>;
  /** Closes the transport; resolves after `onClose` has been called. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens a transport; resolves once bytes can be written.
 *
 * @example
 * ```ts
 * import type { AuthToken } from "../protocol/token.ts";
 * import { GoimClient } from "./client.ts";
 * declare const token: AuthToken;
 * const custom: TransportFactory = (url, opts) => openTransport(url, opts);
 * new GoimClient({ url: "ws://127.0.0.1:3102/sub", token, transport: custom });
 * ```
 */
export type TransportFactory = (url: URL, options: TransportOptions) => Promise<Transport>;

/**
 * The default factory: `ws:`/`wss:` open a Web `WebSocket`; `tcp:` opens a
 * raw TCP connection with `Deno.connect` (Deno only; port defaults to 3101).
 *
 * @example
 * ```ts
 * const t = await openTransport(new URL("tcp://127.0.0.1:3101"), {
 *   maxBody: 1 << 24,
 *   handlers: { onFrame: (f) => console.log(f.op), onClose: () => {} },
 * });
 * ```
 */
export async function openTransport(url: URL, options: TransportOptions): Promise<Transport> {
  switch (url.protocol) {
    case "ws:":
    case "wss:":
      return await openWebSocket(url, options);
    case "tcp:": {
      const { openTcp } = await import("./tcp.ts");
      return await openTcp(url, options);
    }
    default:
      throw new GoimClientError(
        "connect_failed",
        `unsupported URL scheme ${url.protocol} (use tcp://, ws:// or wss://)`,
      );
  }
}

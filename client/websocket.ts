/**
 * The WebSocket transport, on the Web `WebSocket` (Deno and browsers).
 *
 * Every binary message holds exactly one frame (a reply, or an op 9 envelope
 * the client unwraps); a packLen that disagrees with the message length is a
 * protocol error. Text messages are read as the same binary layout, as the
 * comet does. Runs in Deno and browsers.
 *
 * @module
 */

import { decodeFrame } from "../protocol/frame.ts";
import { GoimClientError } from "./errors.ts";
import type { Transport, TransportClose, TransportOptions } from "./transport.ts";

/**
 * How long `close()` waits for the closing handshake before giving up on a
 * silent peer (a black-holed network never answers).
 *
 * @example
 * ```ts
 * import type { Transport } from "./transport.ts";
 * declare const transport: Transport;
 * await transport.close(); // resolves within WS_CLOSE_TIMEOUT_MS even if the peer is silent
 * ```
 */
export const WS_CLOSE_TIMEOUT_MS = 3_000;

const utf8 = new TextEncoder();

/**
 * Opens a WebSocket (binaryType `"arraybuffer"`); resolves on `open`.
 *
 * @example
 * ```ts
 * const t = await openWebSocket(new URL("ws://127.0.0.1:3102/sub"), {
 *   maxBody: 1 << 24,
 *   handlers: { onFrame: (f) => console.log(f.op), onClose: (c) => console.log(c.code) },
 * });
 * ```
 */
export function openWebSocket(url: URL, options: TransportOptions): Promise<Transport> {
  return new Promise((resolve, reject) => {
    const { signal } = options;
    if (signal?.aborted) {
      reject(new GoimClientError("closed", "connect aborted", { cause: signal.reason }));
      return;
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      reject(new GoimClientError("connect_failed", `cannot open ${url}: ${e}`, { cause: e }));
      return;
    }
    ws.binaryType = "arraybuffer";
    let aborted = false;
    let failure = "";
    const onAbort = () => {
      aborted = true;
      ws.close();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    ws.onerror = (ev) => {
      failure = (ev as ErrorEvent).message ?? "";
    };
    ws.onclose = (ev) => {
      signal?.removeEventListener("abort", onAbort);
      reject(
        aborted
          ? new GoimClientError("closed", "connect aborted", { cause: signal?.reason })
          : new GoimClientError(
            "connect_failed",
            `WebSocket ${url} failed to open${
              failure ? `: ${failure}` : ""
            } (close code ${ev.code})`,
          ),
      );
    };
    ws.onopen = () => {
      signal?.removeEventListener("abort", onAbort);
      resolve(new WebSocketTransport(ws, options));
    };
  });
}

class WebSocketTransport implements Transport {
  readonly kind = "ws";
  #ws: WebSocket;
  #opts: TransportOptions;
  #error: unknown = undefined;
  #done = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #localClose = false;
  #closed: Promise<void>;
  #resolveClosed!: () => void;

  constructor(ws: WebSocket, opts: TransportOptions) {
    this.#ws = ws;
    this.#opts = opts;
    this.#closed = new Promise((r) => this.#resolveClosed = r);
    ws.onmessage = (ev) => this.#onMessage(ev.data);
    ws.onerror = (ev) => {
      this.#error ??= new Error((ev as ErrorEvent).message || "WebSocket error");
    };
    // The code and reason say why the server closed; an echo of our own close says nothing.
    ws.onclose = (ev) => this.#finish(this.#localClose ? {} : { code: ev.code, reason: ev.reason });
  }

  #onMessage(data: unknown): void {
    if (this.#done) return;
    const bytes = typeof data === "string"
      ? utf8.encode(data)
      : data instanceof ArrayBuffer
      ? new Uint8Array(data)
      : null;
    if (bytes === null) return; // a Blob: impossible with binaryType "arraybuffer"
    let frame;
    try {
      frame = decodeFrame(bytes, { maxBody: this.#opts.maxBody });
    } catch (e) {
      this.#error ??= e;
      this.#startClose(4000, "protocol error");
      return;
    }
    this.#opts.handlers.onFrame(frame);
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.#done || this.#ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new GoimClientError("disconnected", "the WebSocket is not open"));
    }
    try {
      // send() queues in order; the browser/Deno owns the buffering.
      this.#ws.send(bytes as Uint8Array<ArrayBuffer>);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  close(): Promise<void> {
    this.#startClose(1000, "");
    return this.#closed;
  }

  #startClose(code: number, reason: string): void {
    if (this.#done || this.#localClose) return;
    this.#localClose = true;
    this.#closeTimer = setTimeout(() => {
      this.#error ??= new Error("WebSocket closing handshake timed out");
      this.#finish({});
    }, WS_CLOSE_TIMEOUT_MS);
    try {
      this.#ws.close(code, reason);
    } catch {
      this.#finish({});
    }
  }

  #finish(info: TransportClose): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#closeTimer);
    this.#ws.onmessage = null;
    this.#ws.onerror = null;
    this.#ws.onclose = null;
    if (this.#error !== undefined) info.error = this.#error;
    this.#resolveClosed();
    this.#opts.handlers.onClose(info);
  }
}

/**
 * The raw TCP transport, on `Deno.connect` (Deno only).
 *
 * Reads run a `FrameReader` over the byte stream (a read may hold half a
 * frame or many); each frame is copied out of the reused read buffer before
 * it is handed on. Writes loop until every byte is written and are
 * serialised: one in flight, the rest queued in order.
 *
 * This is the only client module that references `Deno`; `transport.ts`
 * imports it dynamically for `tcp://` URLs only.
 *
 * @module
 */

import { FrameReader } from "../protocol/reader.ts";
import { GoimClientError } from "./errors.ts";
import type { Transport, TransportOptions } from "./transport.ts";

/**
 * goim's comet TCP port, used when a `tcp://` URL has none.
 *
 * @example
 * ```ts
 * import type { AuthToken } from "../protocol/token.ts";
 * import { GoimClient } from "./client.ts";
 * declare const token: AuthToken;
 * new GoimClient({ url: "tcp://127.0.0.1", token }); // connects to port 3101
 * ```
 */
export const DEFAULT_TCP_PORT = 3101;

const READ_BUFFER_SIZE = 64 * 1024;

// The slice of the Deno API this module uses, typed locally so the client
// type-checks under a browser `lib` too (where `tcp://` fails clearly).
interface TcpConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
  setNoDelay(noDelay?: boolean): void;
}
interface DenoNet {
  connect(
    opts: { hostname: string; port: number; transport: "tcp"; signal?: AbortSignal },
  ): Promise<TcpConn>;
}

/**
 * Connects to `tcp://host:port` (TCP_NODELAY on); resolves once connected.
 *
 * @example
 * ```ts
 * const t = await openTcp(new URL("tcp://127.0.0.1:3101"), {
 *   maxBody: 1 << 24,
 *   handlers: { onFrame: (f) => console.log(f.op), onClose: (c) => console.log(c.error) },
 * });
 * ```
 */
export async function openTcp(url: URL, options: TransportOptions): Promise<Transport> {
  const deno = (globalThis as { Deno?: DenoNet }).Deno;
  if (!deno) {
    throw new GoimClientError("connect_failed", "tcp:// needs Deno; use ws:// or wss:// here");
  }
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  const port = url.port === "" ? DEFAULT_TCP_PORT : Number(url.port);
  // A private controller: Deno.connect's signal would also close the
  // connection if aborted later, which the transport must own instead.
  const ctl = new AbortController();
  const onAbort = () => ctl.abort(options.signal?.reason);
  if (options.signal?.aborted) throw new GoimClientError("closed", "connect aborted");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let conn: TcpConn;
  try {
    conn = await deno.connect({ hostname, port, transport: "tcp", signal: ctl.signal });
  } catch (e) {
    if (options.signal?.aborted) {
      throw new GoimClientError("closed", "connect aborted", { cause: e });
    }
    throw new GoimClientError("connect_failed", `cannot connect to ${url.host}: ${e}`, {
      cause: e,
    });
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
  }
  try {
    conn.setNoDelay(true);
  } catch {
    // not fatal
  }
  return new TcpTransport(conn, options);
}

class TcpTransport implements Transport {
  readonly kind = "tcp";
  #conn: TcpConn;
  #opts: TransportOptions;
  #closing = false;
  #connClosed = false;
  #error: unknown = undefined;
  #writeTail: Promise<void> = Promise.resolve();
  #closed: Promise<void>;

  constructor(conn: TcpConn, opts: TransportOptions) {
    this.#conn = conn;
    this.#opts = opts;
    this.#closed = this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    const { onFrame } = this.#opts.handlers;
    try {
      const reader = new FrameReader({ maxBody: this.#opts.maxBody });
      const buf = new Uint8Array(READ_BUFFER_SIZE);
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        // toFrame() copies the body: `buf` is overwritten by the next read.
        reader.push(buf.subarray(0, n), (f) => onFrame(f.toFrame()));
        if (this.#closing) break;
      }
    } catch (e) {
      if (!this.#closing) this.#error ??= e;
    }
    this.#shutdown();
    // Let queued writes settle (they fail fast on a closed resource).
    await this.#writeTail;
    const info = this.#error === undefined ? {} : { error: this.#error };
    this.#opts.handlers.onClose(info);
  }

  #shutdown(): void {
    this.#closing = true;
    if (this.#connClosed) return;
    this.#connClosed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.#closing) {
      return Promise.reject(new GoimClientError("disconnected", "the TCP connection is closed"));
    }
    const p = this.#writeTail.then(() => this.#writeAll(bytes));
    this.#writeTail = p.catch(() => {});
    return p;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    if (this.#closing) throw new GoimClientError("disconnected", "the TCP connection is closed");
    let o = 0;
    try {
      while (o < bytes.length) o += await this.#conn.write(bytes.subarray(o));
    } catch (e) {
      // A failed write means the connection is broken: end it.
      if (!this.#closing) {
        this.#error ??= e;
        this.#shutdown();
      }
      throw new GoimClientError("disconnected", `TCP write failed: ${e}`, { cause: e });
    }
  }

  close(): Promise<void> {
    this.#shutdown();
    return this.#closed;
  }
}

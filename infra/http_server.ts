/**
 * The HTTP/1.1 server behind every HTTP listener (logic's push API and each
 * role's admin endpoint), with the bounds `Deno.serve` lacks: a header
 * timeout, a body timeout, an idle timeout, a send timeout and a cap on
 * open connections, plus an accept loop that survives running out of file
 * descriptors.
 *
 * Why not `Deno.serve` (2.9.3): it has no read timeouts and no connection
 * cap (deno issue 3515), it cannot be handed a connection accepted
 * elsewhere, and an accept error (EMFILE) rejects inside it and ends the
 * process. Why not a byte-forwarding gate in front of a private
 * `Deno.serve`: measured here it cut a small JSON route from ≈64k to ≈17k
 * requests/s and takes three descriptors per connection instead of one.
 * This server parses HTTP/1.1 itself on `Deno.listen` connections and
 * calls the same `Request → Response` handlers; measured with wrk against
 * logic, the push route went from ≈10k to ≈15k requests/s (a push body
 * reaches the handler as one buffer, not a stream) and a GET route stayed
 * at par. Why not `node:net` as in comet: in Deno 2.9.3 its server stops
 * accepting for good after one EMFILE, and its per-read/per-write cost
 * halves request/response throughput. The cost of `Deno.Conn`: closing it
 * does not cancel a pending write, so a peer that never reads keeps its
 * descriptor (and its slot under the cap) until it reads or goes away.
 *
 * What a peer sees when it hits a bound (each counted in
 * `http_limit_closes_total{listener,limit}` of the role's registry):
 *
 * - more than `maxConnections` open: `503` and close (`max_connections`);
 * - a header not complete within `headerTimeoutMs` of the connection's
 *   start or of the first byte of a keep-alive request: `408` and close
 *   (`header_timeout`; a fresh connection that sends nothing is closed);
 * - a header over {@linkcode MAX_HEADER_BYTES}: `431` and close
 *   (`header_size`);
 * - a body not complete within `bodyTimeoutMs` of its header: `408` and
 *   close (`body_timeout`);
 * - a response not taken within `idleTimeoutMs`: close (`send_timeout`);
 * - no request on a keep-alive connection for `idleTimeoutMs`: close.
 *
 * Malformed requests (bad request line, header syntax, ambiguous framing
 * such as Content-Length with Transfer-Encoding) get `400`, unsupported
 * transfer codings `501`, other versions than 1.0/1.1 `505`, each with a
 * closed connection. Response bodies are buffered (every handler here
 * answers with a bounded body) and sent with Content-Length. After a final
 * response on a connection that still has unread input, the server half
 * closes and discards input for up to {@linkcode LINGER_MS} so the peer
 * reads the response instead of a reset.
 *
 * Deadlines are one number per connection, checked by one sweep timer per
 * server; nothing is allocated per connection beyond its read buffer.
 *
 * @module
 */

import type { Config } from "./config.ts";
import { errorMessage, type Logger, LogThrottle } from "./log.ts";
import type { Counter, Gauge, Metrics } from "./metrics.ts";
import { isLoopbackHost, joinHostPort, splitHostPort } from "./addr.ts";

/** Largest request line plus header block accepted (bigger: 431). */
export const MAX_HEADER_BYTES = 16 * 1024;

/** How long a closing connection's unread input is drained before the socket is closed. */
export const LINGER_MS = 2000;

/** Request bodies up to this size (with a Content-Length) are read whole before the handler runs. */
export const PREREAD_BYTES = 64 * 1024;

const LINGER_BYTES = 1024 * 1024;
const FIRST_BUFFER = 8 * 1024;
const CHUNK_LINE_MAX = 4096;
const ACCEPT_LOG_EVERY_MS = 10_000;
const ACCEPT_BACKOFF_MAX_MS = 1000;

/** The bounds of one HTTP listener (config `http.*`, durations in ms). */
export interface HttpLimits {
  /** `http.header_timeout`. */
  headerTimeoutMs: number;
  /** `http.body_timeout`. */
  bodyTimeoutMs: number;
  /** `http.idle_timeout` (also bounds how long a response may take to be read). */
  idleTimeoutMs: number;
  /** `http.max_connections`. */
  maxConnections: number;
}

/**
 * The `http.*` limits of a configuration.
 *
 * @example
 * ```ts
 * import type { Config } from "./config.ts";
 * declare const config: Config;
 * const limits = httpLimits(config); // { headerTimeoutMs: 10000, ... }
 * ```
 */
export function httpLimits(config: Pick<Config, "http">): HttpLimits {
  return {
    headerTimeoutMs: config.http.header_timeout,
    bodyTimeoutMs: config.http.body_timeout,
    idleTimeoutMs: config.http.idle_timeout,
    maxConnections: config.http.max_connections,
  };
}

/** A request handler, as `Deno.serve` takes it. */
export type ServeHandler = (
  req: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** Bounds a peer can hit, as `limit` label values (a closed set). */
export type HttpLimitName =
  | "max_connections"
  | "header_timeout"
  | "header_size"
  | "body_timeout"
  | "send_timeout";

/** Options of {@linkcode serveHttp}. */
export interface ServeHttpOptions {
  /** `host:port` to listen on (an empty host = all interfaces). */
  bind: string;
  /** Label of this listener in logs and metrics, e.g. `"api"` or `"admin"`. */
  listener: string;
  /** The bounds. */
  limits: HttpLimits;
  /** Where accept failures and handler errors go. */
  log: Logger;
  /** The role's registry for `http_*` metrics; absent = not counted. */
  metrics?: Metrics;
}

/**
 * Listens on `opts.bind` and serves `handler` within `opts.limits`. Throws
 * synchronously when the address cannot be bound, as `Deno.serve` does.
 *
 * @example
 * ```ts
 * import type { Config } from "./config.ts";
 * import type { Logger } from "./log.ts";
 * declare const config: Config, log: Logger;
 * const server = serveHttp(
 *   { bind: "127.0.0.1:0", listener: "api", limits: httpLimits(config), log },
 *   () => new Response("ok"),
 * );
 * await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * await server.shutdown();
 * ```
 */
export function serveHttp(opts: ServeHttpOptions, handler: ServeHandler): HttpServer {
  return new HttpServer(opts, handler);
}

/**
 * A signal aborted when the client of this request closes its connection
 * (or the connection fails) before the handler answers, for a handler that
 * waits long (logic's `wait=` of an ack-requested push). It starts a read
 * on the connection, so ask only once the request body has been read, and
 * only when you need it: `undefined` before that, or when `info` is not
 * from {@linkcode serveHttp}. A client that half-closes its side after the
 * request counts as gone.
 *
 * @example
 * ```ts
 * import { peerGone } from "./http_server.ts";
 * const handler = async (req: Request, info: Deno.ServeHandlerInfo) => {
 *   await req.bytes();
 *   const gone = peerGone(info);
 *   return new Response(gone?.aborted ? "" : "ok");
 * };
 * ```
 */
export function peerGone(info: Deno.ServeHandlerInfo | undefined): AbortSignal | undefined {
  return info instanceof RequestInfo ? info.peerGone() : undefined;
}

// Where a connection is; each phase but HANDLER has a deadline.
const IDLE = 0; // between requests (or before the first): idle timeout
const HEADER = 1; // a request's header is arriving: header timeout
const BODY = 2; // its body is arriving: body timeout
const HANDLER = 3; // the handler runs: no deadline (not the peer's doing)
const WRITE = 4; // the response is being written: send timeout
const LINGER = 5; // final response sent, input drained until closed

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  301: "Moved Permanently",
  302: "Found",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\s]+) HTTP\/(\d)\.(\d)$/;
const HOST = /^(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const DIGITS = /^\d+$/;
const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");
const latin1 = new TextDecoder("latin1");
const utf8 = new TextEncoder();

/** A request the server refuses before the handler sees it. */
class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly limit?: HttpLimitName) {
    super(message);
  }
}

interface Head {
  method: string;
  url: string;
  /** Header fields as received: name, value, name, value, ... */
  fields: string[];
  /** Content-Length, or -1 for chunked, or 0 for none. */
  length: number;
  keepAlive: boolean;
  http10: boolean;
  expectContinue: boolean;
}

let dateSecond = -1;
let dateValue = "";

function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

function encodeHead(text: string): Uint8Array {
  // Header values are byte strings: anything above 0x7F is one latin-1 byte, not UTF-8.
  // deno-lint-ignore no-control-regex
  if (!/[^\x00-\x7f]/.test(text)) return utf8.encode(text);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

function plainResponse(status: number, text: string, extra = ""): Uint8Array {
  const body = `${text}\n`;
  return encodeHead(
    `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\nconnection: close\r\n${extra}` +
      `content-type: text/plain; charset=utf-8\r\ncontent-length: ${body.length}\r\n` +
      `date: ${httpDate()}\r\n\r\n${body}`,
  );
}

/** `Deno.ServeHandlerInfo` of one request; `completed` is made only when asked for. */
class RequestInfo implements Deno.ServeHandlerInfo<Deno.NetAddr> {
  #done: PromiseWithResolvers<void> | null = null;
  #settled: 0 | 1 | 2 = 0;
  #gone: AbortController | null = null;
  constructor(readonly remoteAddr: Deno.NetAddr, private readonly conn?: Conn) {}
  /** See {@linkcode peerGone}. */
  peerGone(): AbortSignal | undefined {
    const c = this.conn;
    if (this.#gone !== null) return this.#gone.signal;
    // Only once the body is read: a read now cannot take the body's bytes.
    if (c === undefined || c.phase !== HANDLER || c.watch !== null) return undefined;
    const gone = this.#gone = new AbortController();
    if (c.eof || c.closed) {
      gone.abort();
      return gone.signal;
    }
    // Whatever it reads (a pipelined request) stays in the buffer for the
    // next fill(), which takes over this read.
    c.watch = c.fill(MAX_HEADER_BYTES + 4);
    c.watch.then((n) => n === 0 && gone.abort(), () => gone.abort());
    return gone.signal;
  }
  get completed(): Promise<void> {
    if (this.#done === null) {
      this.#done = Promise.withResolvers<void>();
      this.#done.promise.catch(() => {});
      if (this.#settled === 1) this.#done.resolve();
      else if (this.#settled === 2) this.#done.reject(new Deno.errors.Interrupted("not sent"));
    }
    return this.#done.promise;
  }
  settle(ok: boolean): void {
    if (this.#settled !== 0) return;
    this.#settled = ok ? 1 : 2;
    if (this.#done === null) return;
    if (ok) this.#done.resolve();
    else this.#done.reject(new Deno.errors.Interrupted("the response could not be sent"));
  }
}

/** One accepted connection: its read buffer, phase and deadline. */
class Conn {
  buf: Uint8Array = new Uint8Array(FIRST_BUFFER);
  /** Unparsed input is `buf[start, end)`. */
  start = 0;
  end = 0;
  phase = HEADER;
  /** `performance.now()` past which the phase has overrun; 0 = none. */
  deadline: number;
  /** Set when a bound was hit: input is drained, the handler's answer dropped. */
  expired = false;
  closed = false;
  /** Our side sent FIN. */
  halfClosed = false;
  /** The error response being written after a bound was hit. */
  aborting: Promise<void> | null = null;
  lingered = 0;
  /** A read started while the handler runs ({@linkcode peerGone}); the next fill() awaits it. */
  watch: Promise<number> | null = null;
  /** That read saw the peer's FIN. */
  eof = false;
  readonly remote: Deno.NetAddr;

  constructor(readonly conn: Deno.TcpConn, readonly counted: boolean, deadline: number) {
    this.deadline = deadline;
    this.remote = conn.remoteAddr;
  }

  /** Reads more input after `end`, growing the buffer up to `max`; 0 at EOF. */
  async fill(max: number): Promise<number> {
    if (this.watch !== null) {
      const watch = this.watch;
      this.watch = null;
      const n = await watch; // its error is this read's, as if made now
      if (n === 0) this.eof = true;
      return n;
    }
    if (this.eof) return 0;
    if (this.start === this.end) this.start = this.end = 0;
    if (this.end === this.buf.length) {
      if (this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      } else if (this.buf.length < max) {
        const grown = new Uint8Array(Math.min(max, this.buf.length * 2));
        grown.set(this.buf.subarray(0, this.end));
        this.buf = grown;
      } else {
        throw new HttpError(431, "request header too large", "header_size");
      }
    }
    const n = await this.conn.read(this.buf.subarray(this.end));
    if (n === null) return 0;
    this.end += n;
    return n;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed by the peer's reset
    }
  }
}

/** Reads one request body for the handler, after the header. */
class BodyReader {
  #left: number;
  /** Chunked: bytes left in the current chunk, or -1 before a size line. */
  #chunk = -1;
  done = false;
  /** A framing error in the body (bad chunk): answered by the server, whatever the handler says. */
  error: HttpError | null = null;
  #continue: boolean;

  constructor(private readonly c: Conn, length: number, expectContinue: boolean) {
    this.#left = length; // -1 = chunked
    this.#continue = expectContinue;
  }

  /** The next piece of body, or null at its end. Throws when the peer breaks off or times out. */
  async next(): Promise<Uint8Array | null> {
    if (this.done) return null;
    const c = this.c;
    if (this.#continue) {
      this.#continue = false;
      await writeAll(c.conn, CONTINUE);
    }
    let piece: Uint8Array | null;
    try {
      piece = this.#left >= 0 ? await this.#fixed() : await this.#chunked();
    } catch (e) {
      if (e instanceof HttpError) this.error = e;
      throw e;
    }
    if (piece === null) {
      this.done = true;
      if (c.phase === BODY) {
        c.phase = HANDLER;
        c.deadline = 0;
      }
    }
    return piece;
  }

  async #more(): Promise<void> {
    const c = this.c;
    if (c.expired || c.closed) throw new Error("request body timed out");
    const n = await c.fill(MAX_HEADER_BYTES);
    if (c.expired) throw new Error("request body timed out");
    if (n === 0) throw new Error("connection closed before the request body ended");
  }

  async #fixed(): Promise<Uint8Array | null> {
    const c = this.c;
    if (this.#left === 0) return null;
    if (c.start === c.end) {
      if (c.expired || c.closed) throw new Error("request body timed out");
      // Large bodies go straight into their own buffer, no copy.
      const piece = new Uint8Array(Math.min(this.#left, PREREAD_BYTES));
      const n = await c.conn.read(piece);
      if (c.expired) throw new Error("request body timed out");
      if (n === null) throw new Error("connection closed before the request body ended");
      this.#left -= n;
      return piece.subarray(0, n);
    }
    const n = Math.min(this.#left, c.end - c.start);
    const piece = c.buf.slice(c.start, c.start + n);
    c.start += n;
    this.#left -= n;
    return piece;
  }

  async #chunked(): Promise<Uint8Array | null> {
    const c = this.c;
    for (;;) {
      if (this.#chunk > 0) {
        if (c.start === c.end) await this.#more();
        const n = Math.min(this.#chunk, c.end - c.start);
        const piece = c.buf.slice(c.start, c.start + n);
        c.start += n;
        this.#chunk -= n;
        if (this.#chunk === 0) this.#chunk = -2; // its CRLF comes next
        return piece;
      }
      if (this.#chunk === -2) {
        const line = await this.#line();
        if (line !== "") throw new HttpError(400, "chunk not followed by CRLF");
        this.#chunk = -1;
        continue;
      }
      const line = await this.#line();
      const semi = line.indexOf(";");
      const hex = (semi < 0 ? line : line.slice(0, semi)).trim();
      if (!/^[0-9A-Fa-f]{1,13}$/.test(hex)) throw new HttpError(400, "bad chunk size");
      const size = parseInt(hex, 16);
      if (size === 0) {
        // Trailers, up to the empty line; ignored.
        let total = 0;
        for (;;) {
          const t = await this.#line();
          if (t === "") return null;
          total += t.length;
          if (total > MAX_HEADER_BYTES) throw new HttpError(431, "trailers too large");
        }
      }
      this.#chunk = size;
    }
  }

  async #line(): Promise<string> {
    const c = this.c;
    for (;;) {
      const lf = c.buf.subarray(c.start, c.end).indexOf(10);
      if (lf >= 0) {
        const at = c.start + lf;
        if (lf === 0 || c.buf[at - 1] !== 13) throw new HttpError(400, "bare LF in chunked body");
        const line = latin1.decode(c.buf.subarray(c.start, at - 1));
        c.start = at + 1;
        return line;
      }
      if (c.end - c.start > CHUNK_LINE_MAX) throw new HttpError(400, "chunk line too long");
      await this.#more();
    }
  }
}

/** A running HTTP listener; the same surface as `Deno.HttpServer`. */
export class HttpServer implements Deno.HttpServer<Deno.NetAddr> {
  /** The bound address (the real port when 0 was asked for). */
  readonly addr: Deno.NetAddr;
  /** Settles once {@linkcode HttpServer.shutdown} has closed every connection. */
  readonly finished: Promise<void>;

  readonly #opts: ServeHttpOptions;
  readonly #handler: ServeHandler;
  readonly #limits: HttpLimits;
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Conn>();
  readonly #authority: string;
  readonly #sweep: ReturnType<typeof setInterval>;
  #open = 0;
  #refused = 0;
  #closing = false;
  #accepting: Promise<void>;
  #finish: () => void;
  #wakeAccept: (() => void) | null = null;
  readonly #acceptThrottle = new LogThrottle(ACCEPT_LOG_EVERY_MS);
  readonly #limitCloses?: Counter<"listener" | "limit">;
  readonly #acceptErrors?: Counter<"listener">;
  readonly #gauge?: Gauge<"listener">;

  /** Use {@linkcode serveHttp}. */
  constructor(opts: ServeHttpOptions, handler: ServeHandler) {
    this.#opts = opts;
    this.#handler = handler;
    this.#limits = opts.limits;
    const { hostname, port } = splitHostPort(opts.bind);
    this.#listener = Deno.listen({ hostname, port, transport: "tcp" });
    this.addr = this.#listener.addr;
    this.#authority = joinHostPort(this.addr);
    const m = opts.metrics;
    if (m) {
      this.#limitCloses = m.counter(
        "http_limit_closes_total",
        "HTTP connections refused or closed for hitting a bound (http.*), by listener and bound.",
        ["listener", "limit"],
      );
      this.#acceptErrors = m.counter(
        "http_accept_errors_total",
        "Failed accepts on an HTTP listener (e.g. EMFILE: out of file descriptors), by listener.",
        ["listener"],
      );
      this.#gauge = m.gauge("http_connections", "Open HTTP connections, by listener.", [
        "listener",
      ]);
      this.#gauge.set({ listener: opts.listener }, 0);
    }
    const l = opts.limits;
    const tick = Math.max(
      5,
      Math.min(1000, Math.min(l.headerTimeoutMs, l.bodyTimeoutMs, l.idleTimeoutMs) / 4),
    );
    this.#sweep = setInterval(() => this.#expire(), tick);
    Deno.unrefTimer(this.#sweep);
    const { promise, resolve } = Promise.withResolvers<void>();
    this.finished = promise;
    this.#finish = resolve;
    this.#accepting = this.#acceptLoop();
  }

  /** Stops accepting, closes idle connections, lets requests in progress finish. */
  shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      try {
        this.#listener.close();
      } catch {
        // already closed
      }
      this.#wakeAccept?.();
      for (const c of this.#conns) {
        // No request of theirs has reached a handler: nothing to finish.
        if (c.phase === IDLE || c.phase === HEADER) this.#close(c);
      }
      void this.#accepting.then(() => this.#maybeFinished());
    }
    return this.finished;
  }

  /** Keeps the process alive while listening (the default). */
  ref(): void {
    this.#listener.ref();
  }

  /** Lets the process exit while this server listens. */
  unref(): void {
    this.#listener.unref();
  }

  /** Same as {@linkcode HttpServer.shutdown}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  /** Open connections under the cap (tests, metrics). */
  get connections(): number {
    return this.#open;
  }

  // Done once every connection is closed on our side (one whose write is
  // stuck on a peer that does not read must not hold up shutdown).
  #maybeFinished(): void {
    if (!this.#closing) return;
    for (const c of this.#conns) if (!c.closed) return;
    clearInterval(this.#sweep);
    this.#finish();
  }

  #close(c: Conn): void {
    c.close();
    this.#maybeFinished();
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
        backoff = 0;
      } catch (e) {
        if (this.#closing || e instanceof Deno.errors.BadResource) return;
        // EMFILE/ENFILE and friends: the pending connection stays in the
        // backlog; retry, slower and slower, until descriptors are free.
        this.#acceptFailed(e);
        backoff = Math.min(ACCEPT_BACKOFF_MAX_MS, backoff === 0 ? 10 : backoff * 2);
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            this.#wakeAccept = null;
            resolve();
          }, backoff);
          this.#wakeAccept = () => {
            clearTimeout(t);
            this.#wakeAccept = null;
            resolve();
          };
        });
        continue;
      }
      if (this.#closing) {
        try {
          conn.close();
        } catch { /* gone */ }
        return;
      }
      try {
        this.#admit(conn);
      } catch (e) {
        this.#opts.log.error("http connection setup failed", { error: e });
        try {
          conn.close();
        } catch { /* gone */ }
      }
    }
  }

  #acceptFailed(e: unknown): void {
    this.#acceptErrors?.inc({ listener: this.#opts.listener });
    const failures = this.#acceptThrottle.take();
    if (failures === null) return;
    this.#opts.log.error("http accept failed; retrying", {
      listener: this.#opts.listener,
      addr: this.#authority,
      error: errorMessage(e),
      // The failures since the last line, this one not counted.
      suppressed: failures - 1,
    });
  }

  #admit(conn: Deno.TcpConn): void {
    try {
      conn.setNoDelay(true);
    } catch {
      // reset before we got to it
    }
    const now = performance.now();
    if (this.#open >= this.#limits.maxConnections) {
      this.#count("max_connections");
      // Refused connections linger briefly too (so the 503 is read); past
      // another cap's worth of them, they are just closed.
      if (this.#refused >= this.#limits.maxConnections) {
        try {
          conn.close();
        } catch { /* gone */ }
        return;
      }
      const c = new Conn(conn, false, now + LINGER_MS);
      this.#refused++;
      this.#conns.add(c);
      void this.#refuse(c);
      return;
    }
    const c = new Conn(conn, true, now + this.#limits.headerTimeoutMs);
    this.#open++;
    this.#conns.add(c);
    this.#gauge?.set({ listener: this.#opts.listener }, this.#open);
    void this.#serve(c);
  }

  #count(limit: HttpLimitName): void {
    this.#limitCloses?.inc({ listener: this.#opts.listener, limit });
  }

  #release(c: Conn): void {
    c.close();
    if (!this.#conns.delete(c)) return;
    if (c.counted) {
      this.#open--;
      this.#gauge?.set({ listener: this.#opts.listener }, this.#open);
    } else {
      this.#refused--;
    }
    this.#maybeFinished();
  }

  async #refuse(c: Conn): Promise<void> {
    try {
      c.phase = LINGER;
      await writeAll(c.conn, plainResponse(503, "too many connections", "retry-after: 1\r\n"));
      await this.#linger(c);
    } catch {
      // the peer is gone
    } finally {
      this.#release(c);
    }
  }

  // Runs on every sweep tick: any connection past its phase's deadline.
  #expire(): void {
    const now = performance.now();
    for (const c of this.#conns) {
      if (c.deadline === 0 || now < c.deadline) continue;
      c.deadline = 0;
      switch (c.phase) {
        case HEADER:
          this.#count("header_timeout");
          if (c.end > c.start) this.#abort(c, 408, "request header timed out");
          else this.#close(c);
          break;
        case BODY:
          this.#count("body_timeout");
          this.#abort(c, 408, "request body timed out");
          break;
        case WRITE:
          // Deno does not cancel a pending write on close: the descriptor
          // stays (and keeps its slot) until the peer reads or goes away.
          this.#count("send_timeout");
          this.#close(c);
          break;
        default: // IDLE, LINGER
          this.#close(c);
      }
    }
  }

  // A bound was hit while the serve loop (or the handler) waits on a read:
  // answer, half-close and let that read drain input until LINGER_MS.
  #abort(c: Conn, status: number, text: string): void {
    c.expired = true;
    c.phase = LINGER;
    c.deadline = performance.now() + LINGER_MS;
    c.aborting = writeAll(c.conn, plainResponse(status, text))
      .then(() => halfClose(c))
      .catch(() => this.#close(c));
  }

  // Discards input until EOF, LINGER_BYTES, or the deadline closes it.
  async #linger(c: Conn): Promise<void> {
    if (c.aborting) await c.aborting;
    if (c.watch !== null) {
      // One read at a time on a connection: let the handler's watch end first.
      const n = await c.fill(0).catch(() => 0);
      if (n === 0) return;
    }
    if (c.closed) return;
    try {
      await halfClose(c);
    } catch {
      return;
    }
    if (c.deadline === 0 || c.phase !== LINGER) {
      c.phase = LINGER;
      c.deadline = performance.now() + LINGER_MS;
    }
    while (!c.closed && c.lingered < LINGER_BYTES) {
      c.start = c.end = 0;
      const n = await c.conn.read(c.buf);
      if (n === null) return;
      c.lingered += n;
    }
  }

  async #serve(c: Conn): Promise<void> {
    try {
      while (!c.closed) {
        const head = await this.#readHead(c);
        if (head === null) break;
        if (!(await this.#exchange(c, head))) break;
      }
    } catch (e) {
      if (e instanceof HttpError && !c.closed && !c.expired) {
        if (e.limit) this.#count(e.limit);
        this.#opts.log.debug("http request refused", {
          listener: this.#opts.listener,
          status: e.status,
          reason: e.message,
        });
        try {
          c.phase = LINGER;
          c.deadline = performance.now() + LINGER_MS;
          await writeAll(c.conn, plainResponse(e.status, e.message));
          await this.#linger(c);
        } catch {
          // the peer is gone
        }
      }
    } finally {
      if (c.expired && !c.closed) {
        try {
          await this.#linger(c);
        } catch {
          // the peer is gone
        }
      }
      this.#release(c);
    }
  }

  // Reads up to the end of a header block; null when the peer closed (or a
  // bound closed the connection) between requests.
  async #readHead(c: Conn): Promise<Head | null> {
    let scanned = 0; // bytes after c.start known to hold no CRLFCRLF start
    for (;;) {
      // Tolerate stray CRLFs between requests (RFC 9112 §2.2).
      if (scanned === 0) {
        while (c.start < c.end && (c.buf[c.start] === 13 || c.buf[c.start] === 10)) c.start++;
      }
      if (c.phase === IDLE && c.end > c.start) {
        c.phase = HEADER;
        c.deadline = performance.now() + this.#limits.headerTimeoutMs;
      }
      const at = findHeaderEnd(c.buf, c.start + scanned, c.end);
      if (at >= 0) {
        const text = latin1.decode(c.buf.subarray(c.start, at));
        c.start = at + 4;
        return this.#parseHead(text);
      }
      if (c.end - c.start > MAX_HEADER_BYTES) {
        throw new HttpError(431, "request header too large", "header_size");
      }
      scanned = Math.max(0, c.end - c.start - 3);
      const n = await c.fill(MAX_HEADER_BYTES + 4);
      if (c.expired || c.closed) return null;
      if (n === 0) {
        if (c.end > c.start) this.#opts.log.debug("http peer closed mid-header");
        return null;
      }
    }
  }

  #parseHead(text: string): Head {
    const lines = text.split("\r\n");
    const m = REQUEST_LINE.exec(lines[0]);
    if (m === null) {
      if (/ HTTP\/\d+\.\d+$/.test(lines[0]) && !/ HTTP\/1\.[01]$/.test(lines[0])) {
        throw new HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served");
      }
      throw new HttpError(400, "malformed request line");
    }
    const [, method, target, major, minor] = m;
    if (major !== "1" || (minor !== "0" && minor !== "1")) {
      throw new HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served");
    }
    const http10 = minor === "0";
    const fields: string[] = [];
    let host = "", length = 0, chunked = false, sawLength = false;
    let close = false, keepAlive = false, expectContinue = false;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      const colon = line.indexOf(":");
      if (colon <= 0) throw new HttpError(400, "malformed header line");
      const name = line.slice(0, colon);
      if (!TOKEN.test(name)) throw new HttpError(400, "malformed header name");
      const value = trimOws(line.slice(colon + 1));
      // deno-lint-ignore no-control-regex
      if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
        throw new HttpError(400, "control character in header");
      }
      fields.push(name, value);
      switch (name.toLowerCase()) {
        case "host":
          if (host !== "") throw new HttpError(400, "more than one Host header");
          host = value;
          break;
        case "content-length":
          for (const v of value.split(",")) {
            const t = v.trim();
            if (!DIGITS.test(t) || !Number.isSafeInteger(Number(t))) {
              throw new HttpError(400, "malformed Content-Length");
            }
            if (sawLength && Number(t) !== length) {
              throw new HttpError(400, "conflicting Content-Length");
            }
            length = Number(t);
            sawLength = true;
          }
          break;
        case "transfer-encoding": {
          const codings = value.toLowerCase().split(",").map((s) => s.trim()).filter((s) => s);
          if (chunked || codings.length !== 1 || codings[0] !== "chunked") {
            throw new HttpError(501, "only Transfer-Encoding: chunked is supported");
          }
          chunked = true;
          break;
        }
        case "connection":
          for (const v of value.toLowerCase().split(",")) {
            const t = v.trim();
            if (t === "close") close = true;
            else if (t === "keep-alive") keepAlive = true;
          }
          break;
        case "expect":
          if (value.toLowerCase() === "100-continue") expectContinue = true;
          break;
      }
    }
    if (chunked && (sawLength || http10)) {
      throw new HttpError(400, "Transfer-Encoding with Content-Length or HTTP/1.0");
    }
    let url: string;
    if (target.startsWith("/")) {
      url = `http://${HOST.test(host) ? host : this.#authority}${target}`;
    } else if (/^https?:\/\//i.test(target)) {
      url = target;
    } else {
      throw new HttpError(400, "malformed request target");
    }
    return {
      method,
      url,
      fields,
      length: chunked ? -1 : length,
      keepAlive: http10 ? keepAlive && !close : !close,
      http10,
      expectContinue: expectContinue && !http10,
    };
  }

  // One request/response; false when the connection must close after it.
  async #exchange(c: Conn, head: Head): Promise<boolean> {
    const noBody = head.method === "GET" || head.method === "HEAD";
    let body: BodyInit | null = null;
    let reader: BodyReader | null = null;
    let consumed = true;
    if (head.length !== 0) {
      c.phase = BODY;
      c.deadline = performance.now() + this.#limits.bodyTimeoutMs;
      if (head.length > 0 && head.length <= PREREAD_BYTES && c.end - c.start >= head.length) {
        // The common push: the whole body came with the header.
        body = c.buf.slice(c.start, c.start + head.length);
        c.start += head.length;
      } else if (head.length > 0 && head.length <= PREREAD_BYTES) {
        if (head.expectContinue) await writeAll(c.conn, CONTINUE);
        body = await this.#preread(c, head.length);
        if (body === null) return false;
      } else {
        reader = new BodyReader(c, head.length, head.expectContinue);
        consumed = false;
        const r = reader;
        body = new ReadableStream<Uint8Array>({
          async pull(ctl) {
            try {
              const piece = await r.next();
              if (piece === null) ctl.close();
              else ctl.enqueue(piece);
            } catch (e) {
              ctl.error(e);
            }
          },
        }, { highWaterMark: 0 });
      }
      if (noBody) {
        // Framing only: the handler gets no body; one still unread closes the connection.
        body = null;
        reader = null;
      }
    }
    if (reader === null) {
      c.phase = HANDLER;
      c.deadline = 0;
    }
    const info = new RequestInfo(c.remote, c);
    let res: Response;
    try {
      // Headers appended to the new Request's own: several times cheaper
      // than a HeadersInit (measured), and Deno forbids no request header names.
      const req = head.method === "GET"
        ? new Request(head.url)
        : new Request(head.url, { method: head.method, body });
      const headers = req.headers, fields = head.fields;
      for (let i = 0; i < fields.length; i += 2) headers.append(fields[i], fields[i + 1]);
      try {
        res = await this.#handler(req, info);
      } catch (e) {
        this.#opts.log.error("http handler failed", { listener: this.#opts.listener, error: e });
        res = new Response("internal server error\n", { status: 500 });
      }
    } catch (e) {
      // Request() refuses e.g. CONNECT/TRACE or a URL it cannot parse.
      throw new HttpError(400, e instanceof Error ? e.message : "bad request");
    }
    if (reader !== null) {
      consumed = reader.done;
      if (reader.error) {
        await res.body?.cancel().catch(() => {});
        throw reader.error;
      }
    }
    if (c.expired || c.closed) {
      info.settle(false);
      await res.body?.cancel().catch(() => {});
      return false;
    }
    const keepAlive = head.keepAlive && consumed && !this.#closing;
    let bytes: Uint8Array;
    try {
      // Not `res.body`: that getter wraps a buffered body in a stream, which
      // bytes() then drains chunk by chunk (measured ≈ 3 % of a push's CPU).
      bytes = this.#encode(head, res, keepAlive, await res.bytes());
    } catch (e) {
      this.#opts.log.error("http response body failed", {
        listener: this.#opts.listener,
        error: e,
      });
      bytes = plainResponse(500, "internal server error");
      return await this.#final(c, bytes, info, !consumed);
    }
    if (!keepAlive) return await this.#final(c, bytes, info, !consumed);
    c.phase = WRITE;
    c.deadline = performance.now() + this.#limits.idleTimeoutMs;
    try {
      await writeAll(c.conn, bytes);
      info.settle(true);
    } catch (e) {
      info.settle(false);
      throw e;
    }
    if (c.closed) return false;
    if (c.end > c.start) {
      c.phase = HEADER;
      c.deadline = performance.now() + this.#limits.headerTimeoutMs;
    } else {
      c.phase = IDLE;
      c.deadline = performance.now() + this.#limits.idleTimeoutMs;
    }
    return true;
  }

  async #preread(c: Conn, length: number): Promise<Uint8Array<ArrayBuffer> | null> {
    const body = new Uint8Array(length);
    let have = c.end - c.start;
    body.set(c.buf.subarray(c.start, c.end));
    c.start = c.end = 0;
    while (have < length) {
      const n = await c.conn.read(body.subarray(have));
      if (c.expired || c.closed) return null;
      if (n === null) {
        this.#opts.log.debug("http peer closed mid-body");
        return null;
      }
      have += n;
    }
    return body;
  }

  // Sends a response after which the connection closes.
  async #final(c: Conn, bytes: Uint8Array, info: RequestInfo, unread: boolean): Promise<false> {
    c.phase = WRITE;
    c.deadline = performance.now() + this.#limits.idleTimeoutMs;
    try {
      await writeAll(c.conn, bytes);
      info.settle(true);
    } catch {
      info.settle(false);
      return false;
    }
    if (!unread && c.end === c.start) return false;
    c.phase = LINGER;
    c.deadline = performance.now() + LINGER_MS;
    await this.#linger(c).catch(() => {});
    return false;
  }

  #encode(head: Head, res: Response, keepAlive: boolean, body: Uint8Array): Uint8Array {
    const status = res.status;
    let text = `HTTP/1.1 ${status} ${res.statusText || REASONS[status] || ""}\r\n`;
    res.headers.forEach((value, name) => {
      if (
        name === "content-length" || name === "transfer-encoding" || name === "connection" ||
        name === "keep-alive" || name === "date"
      ) return;
      text += `${name}: ${value}\r\n`;
    });
    const bodyless = status === 204 || status === 304;
    if (!bodyless) text += `content-length: ${body.length}\r\n`;
    if (!keepAlive) text += "connection: close\r\n";
    else if (head.http10) text += "connection: keep-alive\r\n";
    text += `date: ${httpDate()}\r\n\r\n`;
    const top = encodeHead(text);
    if (bodyless || head.method === "HEAD" || body.length === 0) return top;
    const out = new Uint8Array(top.length + body.length);
    out.set(top);
    out.set(body, top.length);
    return out;
  }
}

// A header value without its leading and trailing spaces and tabs.
function trimOws(v: string): string {
  let a = 0, b = v.length;
  while (a < b && (v.charCodeAt(a) === 32 || v.charCodeAt(a) === 9)) a++;
  while (b > a && (v.charCodeAt(b - 1) === 32 || v.charCodeAt(b - 1) === 9)) b--;
  return a === 0 && b === v.length ? v : v.slice(a, b);
}

// Index of the CRLFCRLF ending a header block within buf[from, end), or -1.
function findHeaderEnd(buf: Uint8Array, from: number, end: number): number {
  const window = buf.subarray(0, end);
  for (let i = window.indexOf(13, from); i >= 0 && i + 3 < end; i = window.indexOf(13, i + 1)) {
    if (buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

async function halfClose(c: Conn): Promise<void> {
  if (c.halfClosed || c.closed) return;
  c.halfClosed = true;
  await c.conn.closeWrite();
}

export { isLoopbackHost };

/** Which HTTP listeners of a configuration a process serves. */
export interface Exposure {
  /** logic's push API (`logic.http.bind`). */
  api?: boolean;
  /** Roles whose admin endpoint this process serves (`<role>.admin.bind`). */
  admin?: ReadonlyArray<"comet" | "logic" | "job">;
}

/** What {@linkcode checkExposure} found. */
export interface ExposureReport {
  /** Listeners refused: open to the network without a secret nor an explicit insecure flag. */
  errors: string[];
  /** Listeners that run open (say so loudly). */
  warnings: string[];
}

/**
 * The startup rule for HTTP listeners: the push API on a non-loopback
 * address needs `logic.auth.api_keys` or `logic.http.insecure = true`, an
 * admin endpoint on one needs `admin.token` or `admin.insecure = true`.
 * Open listeners (insecure, or no secret on loopback) are warnings.
 *
 * @example
 * ```ts
 * import type { Config } from "./config.ts";
 * declare const config: Config;
 * const { errors, warnings } = checkExposure(config, { api: true, admin: ["logic"] });
 * ```
 */
export function checkExposure(
  config: Pick<Config, "logic" | "comet" | "job" | "admin">,
  which: Exposure,
): ExposureReport {
  const report: ExposureReport = { errors: [], warnings: [] };
  if (which.api) {
    const bind = config.logic.http.bind;
    const keyed = config.logic.auth.api_keys.length > 0;
    if (!keyed && !isLoopbackHost(splitHostPort(bind).hostname)) {
      if (config.logic.http.insecure) {
        report.warnings.push(
          `logic.http.bind ${bind} is reachable from the network with no logic.auth.api_keys ` +
            "(logic.http.insecure = true): anyone who reaches it can push to every client",
        );
      } else {
        report.errors.push(
          `logic.http.bind ${bind} is not a loopback address and logic.auth.api_keys is empty: ` +
            "anyone who reaches it could push to every client. Set logic.auth.api_keys " +
            "(e.g. GOIM_LOGIC__AUTH__API_KEYS), bind 127.0.0.1, or set logic.http.insecure = true.",
        );
      }
    } else if (!keyed) {
      report.warnings.push(
        `logic.auth.api_keys is empty: the push API on ${bind} is open to every process on this host`,
      );
    }
  }
  const token = config.admin.token !== "";
  for (const role of which.admin ?? []) {
    const bind = config[role].admin.bind;
    if (bind === "" || token) continue;
    const key = `${role}.admin.bind`;
    if (!isLoopbackHost(splitHostPort(bind).hostname)) {
      if (config.admin.insecure) {
        report.warnings.push(
          `${key} ${bind} is reachable from the network with no admin.token (admin.insecure = true): ` +
            "anyone who reaches it can read /metrics",
        );
      } else {
        report.errors.push(
          `${key} ${bind} is not a loopback address and admin.token is empty. Set admin.token ` +
            "(e.g. GOIM_ADMIN__TOKEN), bind 127.0.0.1, or set admin.insecure = true.",
        );
      }
    } else {
      report.warnings.push(
        `admin.token is empty: ${key} ${bind} (/metrics) is open to every process on this host`,
      );
    }
  }
  return report;
}

/**
 * Applies {@linkcode checkExposure} at a role's startup: logs each warning,
 * and on any error logs it and exits with code 2 (a configuration error).
 *
 * @example
 * ```ts
 * import type { Config } from "./config.ts";
 * import type { Logger } from "./log.ts";
 * declare const config: Config, log: Logger;
 * checkExposureOrExit(config, { admin: ["job"] }, log);
 * ```
 */
export function checkExposureOrExit(
  config: Pick<Config, "logic" | "comet" | "job" | "admin">,
  which: Exposure,
  log: Logger,
): void {
  const { errors, warnings } = checkExposure(config, which);
  for (const w of warnings) log.warn(w);
  if (errors.length === 0) return;
  for (const e of errors) log.error(`refusing to start: ${e}`);
  Deno.exit(2);
}

/**
 * What the TCP and WebSocket channels share: a `node:net` (or `node:tls`)
 * socket with one coalesced write in flight, input dispatched to the
 * session in order, and the listeners.
 *
 * Why `node:net` rather than `Deno.listen` (measured on this box, see
 * docs/COMET.md): an idle `Deno.listen` connection costs ≈7.6 KB of RSS
 * (2.6 KB of it JS heap) because it must keep a read pending; an idle
 * `node:net` one ≈4.9 KB (1.0 KB heap), and its writes were as fast
 * (≈110k writes/s to 2,000 sockets either way). The difference is the
 * margin that lets a whole connection (channel, frame reader, maps) fit the
 * 8 KB target. WebSocket runs on the same sockets (./websocket.ts).
 *
 * Input ordering: frames are handed to {@linkcode Sessions.frame} in order;
 * while one waits on logic (auth, op 4), later frames are held back and the
 * socket is paused, so a client cannot outrun its own requests and the
 * kernel's receive window pushes back on it. What was read before the
 * pause took effect is held at most comet.limits.input_buffer bytes.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import type { Logger } from "../infra/log.ts";
import { type Frame, HEADER_LEN } from "../protocol/mod.ts";
import { Channel, ChannelState, type QueueItem } from "./channel.ts";
import type { Sessions } from "./session.ts";

/** Property of a node socket holding its channel (shared handlers, no closures per socket). */
export const CHANNEL: unique symbol = Symbol("goim.comet.channel");

/** A node socket tagged with its channel. */
export type TaggedSocket = net.Socket & { [CHANNEL]?: SocketChannel };

// When the input chunk being parsed was read (performance clock): the
// arrival time of every frame in it, for the frame-rate bound. One clock
// read per chunk, not per frame (a flood packs hundreds of frames in a
// read, and the clock costs several times the parse of a small frame).
let inputAt = 0;

/** Frames held back while one waits on logic, and their wire bytes (comet.limits.input_buffer). */
class Backlog {
  readonly frames: Frame[] = [];
  bytes = 0;
}

/** A channel over a node socket: writes, close, ordered input. */
export abstract class SocketChannel extends Channel {
  /** The socket. */
  readonly sock: net.Socket;
  #writing = 0;
  #closed = false;
  #busy = false;
  #backlog: Backlog | null = null;

  /** Wraps an accepted socket and tags it. */
  constructor(sessions: Sessions, sock: net.Socket) {
    super(sessions, sock.remoteAddress ?? "");
    this.sock = sock;
    (sock as TaggedSocket)[CHANNEL] = this;
  }

  /** Where frames go: the host this channel was created with (no second field per connection). */
  get sessions(): Sessions {
    return this.host as Sessions;
  }

  /** Bytes of the write in flight. */
  get inflight(): number {
    return this.#writing;
  }

  /** Whether the socket is closed. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** The bytes of one write for everything queued (transport framing). */
  protected abstract encode(q: readonly QueueItem[]): Uint8Array;
  /** Parses received bytes; calls {@linkcode SocketChannel.dispatch} per frame. */
  abstract input(chunk: Uint8Array): void;
  /** Writes everything queued as one buffer; at most one write in flight. */
  flush(): Promise<void> | undefined {
    if (this.#writing > 0 || this.#closed) return undefined;
    const q = this.takeQueue();
    if (q === null) {
      if (this.state === ChannelState.Closing) this.abort();
      return undefined;
    }
    const buf = this.encode(q);
    this.#writing = buf.length;
    return this.#write(buf, Channel.frameCount(q));
  }

  /** Closes the socket now (idempotent) and reports it once. */
  abort(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.sock.destroy();
    this.host.closed(this);
  }

  /**
   * Hands one frame to the session, in order: the one way in for every
   * transport. Each frame counts against the frame-rate bound as it
   * arrives, held back or not; held-back frames count their bytes against
   * comet.limits.input_buffer until they are handled. `f` may be a reused
   * cursor: frames held back are copied. Called only while parsing a chunk
   * from `onData` (which stamps its arrival time).
   */
  dispatch(f: Frame): void {
    if (this.state >= ChannelState.Closing) return;
    const sessions = this.sessions;
    if (!sessions.admit(this, inputAt)) {
      this.#backlog = null;
      return;
    }
    if (this.#busy) {
      const b = this.#backlog ??= new Backlog();
      const size = HEADER_LEN + f.body.length;
      if (b.bytes + size > sessions.inputBufferBytes) {
        this.#backlog = null;
        sessions.limitExceeded(
          this,
          "input_buffer",
          `more than ${sessions.inputBufferBytes} bytes of frames waiting (comet.limits.input_buffer)`,
        );
        return;
      }
      b.frames.push({ ver: f.ver, op: f.op, seq: f.seq, body: f.body.slice() });
      b.bytes += size;
      return;
    }
    const p = sessions.frame(this, f);
    if (p !== undefined) this.#wait(p);
  }

  #wait(p: Promise<void>): void {
    this.#busy = true;
    this.sock.pause();
    p.then(() => this.#drain());
  }

  #drain(): void {
    this.#busy = false;
    const b = this.#backlog;
    // Bounded by input_buffer (and the frame burst), so shift() stays cheap.
    while (b !== null && b.frames.length > 0 && this.state < ChannelState.Closing) {
      const f = b.frames.shift()!;
      b.bytes -= HEADER_LEN + f.body.length;
      const p = this.sessions.frame(this, f);
      if (p !== undefined) {
        this.#wait(p);
        return;
      }
    }
    this.#backlog = null;
    if (!this.#closed) this.sock.resume();
  }

  #write(buf: Uint8Array, frames: number): Promise<void> {
    return new Promise((resolve) => {
      // The callback runs once the bytes are handed to the kernel (or the
      // socket failed); for a client that does not read that may be never,
      // which the flusher tolerates.
      this.sock.write(buf, (err) => {
        this.#writing = 0;
        if (err) {
          this.abort();
        } else {
          const m = this.host.metrics;
          const t = this.transportIndex;
          m.framesOut[t] += frames;
          m.bytesOut[t] += buf.length;
          m.writes[t]++;
          if (!this.#closed) {
            if (this.q !== null) {
              if (!this.scheduled) this.host.schedule(this);
            } else if (this.state === ChannelState.Closing) {
              this.abort();
            }
          }
        }
        resolve();
      });
    });
  }

  /** Index of this channel's transport in the metrics arrays. */
  protected abstract get transportIndex(): number;
}

function onData(this: TaggedSocket, chunk: Uint8Array): void {
  const ch = this[CHANNEL];
  // Input after the server decided to close is not acted upon.
  if (ch === undefined || ch.state >= ChannelState.Closing) return;
  inputAt = performance.now();
  try {
    ch.input(chunk);
  } catch (e) {
    ch.sessions.protocolError(ch, e);
  }
}

function onClose(this: TaggedSocket): void {
  this[CHANNEL]?.abort();
}

function onError(this: TaggedSocket): void {
  // Resets and the like: 'close' follows and cleans up.
}

/** Options of {@linkcode SocketServer.listen}. */
export interface SocketServerOptions {
  /** `host:port` addresses. */
  binds: readonly string[];
  /**
   * TLS certificate chain and key (PEM) for a TLS server, and how long the
   * TLS handshake may take (sockets reach the comet only once it is done).
   */
  tls?: { cert: string; key: string; handshakeTimeoutMs: number };
  /** SO_KEEPALIVE on accepted sockets. */
  keepalive?: boolean;
  /** Logger. */
  log: Logger;
}

/**
 * Splits `host:port` / `[v6]:port` (an empty host means all interfaces).
 *
 * @example
 * ```ts
 * splitHostPort("[::1]:3101"); // { hostname: "::1", port: 3101 }
 * ```
 */
export function splitHostPort(addr: string): { hostname: string; port: number } {
  const i = addr.lastIndexOf(":");
  if (i < 0) throw new TypeError(`"${addr}" is not host:port`);
  let host = addr.slice(0, i);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new TypeError(`"${addr}" has no valid port`);
  }
  return { hostname: host === "" ? "0.0.0.0" : host, port };
}

/**
 * Listeners (`node:net` or `node:tls`) whose accepted sockets become
 * channels made by `create`.
 *
 * @example
 * ```ts ignore
 * const srv = await SocketServer.listen({ binds: ["127.0.0.1:0"], log }, (sock) => new TcpChannel(sessions, sock));
 * await srv.close();
 * ```
 */
export class SocketServer {
  /** Bound addresses (real ports when 0 was asked). */
  readonly addrs: Deno.NetAddr[];
  readonly #servers: net.Server[];
  #closing: Promise<void> | null = null;

  private constructor(servers: net.Server[]) {
    this.#servers = servers;
    this.addrs = servers.map((s) => {
      const a = s.address() as net.AddressInfo;
      return { transport: "tcp", hostname: a.address, port: a.port };
    });
  }

  /** Binds every address (all or nothing); `create` makes each socket's channel. */
  static async listen(
    opts: SocketServerOptions,
    create: (sock: net.Socket) => SocketChannel,
    onAccept: (ch: SocketChannel) => void,
  ): Promise<SocketServer> {
    const onConnection = (sock: net.Socket) => {
      if (sock.remoteAddress === undefined) {
        sock.destroy(); // already gone
        return;
      }
      sock.setNoDelay(true); // replies should not wait for Nagle; Go sets this too
      if (opts.keepalive) sock.setKeepAlive(true);
      sock.on("data", onData);
      sock.on("close", onClose);
      sock.on("error", onError);
      onAccept(create(sock));
    };
    const servers: net.Server[] = [];
    try {
      for (const bind of opts.binds) {
        const { hostname, port } = splitHostPort(bind);
        const server = opts.tls
          ? tls.createServer({
            cert: opts.tls.cert,
            key: opts.tls.key,
            handshakeTimeout: opts.tls.handshakeTimeoutMs,
          }, onConnection)
          : net.createServer(onConnection);
        server.on("error", (e) => opts.log.error("listener error", { error: e }));
        await new Promise<void>((resolve, reject) => {
          server.once("error", reject);
          server.listen({ host: hostname, port }, () => {
            server.off("error", reject);
            resolve();
          });
        });
        servers.push(server);
      }
    } catch (e) {
      for (const s of servers) s.close();
      throw e;
    }
    return new SocketServer(servers);
  }

  /** Stops accepting. Resolves once the accepted sockets are closed too (the caller closes them). */
  close(): Promise<void> {
    return this.#closing ??= Promise.all(
      this.#servers.map((s) => new Promise<void>((r) => s.close(() => r()))),
    ).then(() => {});
  }
}

/**
 * What the TCP and WebSocket channels share: a `node:net` (or `node:tls`)
 * socket with one coalesced write in flight, input dispatched to the
 * connection hub in order, and the listeners.
 *
 * Why `node:net` rather than `Deno.listen` (measured on this box, see
 * docs/COMET.md): an idle `Deno.listen` connection costs ≈7.6 KB of RSS
 * (2.6 KB of it JS heap) because it must keep a read pending; an idle
 * `node:net` one ≈4.9 KB (1.0 KB heap), and its writes were as fast
 * (≈110k writes/s to 2,000 sockets either way). The difference is the
 * margin that lets a whole connection (channel, frame reader, maps) fit the
 * 8 KB target. WebSocket runs on the same sockets (./websocket.ts).
 *
 * Input ordering: frames are handed to {@linkcode ConnectionHub.frame} in order;
 * while one waits on logic (auth, op 4), later frames are held back and the
 * socket is paused, so a client cannot outrun its own requests and the
 * kernel's receive window pushes back on it. What was read before the
 * pause took effect is held at most comet.limits.input_buffer bytes.
 *
 * Listeners: a new socket passes the comet's {@linkcode AcceptGate} (the
 * descriptor budget) before any channel exists, or gets op 6 (4007) / an
 * HTTP 503 and is closed; and every listener is watched for a dead accept
 * loop and bound again ({@linkcode SocketServer.check}).
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { joinHostPort, splitHostPort } from "../infra/addr.ts";
import { errorMessage, type Logger } from "../infra/log.ts";
import {
  encodeFrame,
  encodeReason,
  type Frame,
  HEADER_LEN,
  Op,
  ReasonCode,
} from "../protocol/mod.ts";
import { Channel, ChannelState, type QueueItem } from "./channel.ts";
import type { ConnectionHub } from "./hub.ts";

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
  constructor(hub: ConnectionHub, sock: net.Socket) {
    super(hub, sock.remoteAddress ?? "");
    this.sock = sock;
    (sock as TaggedSocket)[CHANNEL] = this;
  }

  /** Where frames go: the host this channel was created with (no second field per connection). */
  get hub(): ConnectionHub {
    return this.host as ConnectionHub;
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
   * Hands one frame to the hub, in order: the one way in for every
   * transport. Each frame counts against the frame-rate bound as it
   * arrives, held back or not; held-back frames count their bytes against
   * comet.limits.input_buffer until they are handled. `f` may be a reused
   * cursor: frames held back are copied. Called only while parsing a chunk
   * from `onData` (which stamps its arrival time).
   */
  dispatch(f: Frame): void {
    if (this.state >= ChannelState.Closing) return;
    const hub = this.hub;
    if (!hub.admit(this, inputAt)) {
      this.#backlog = null;
      return;
    }
    if (this.#busy) {
      const b = this.#backlog ??= new Backlog();
      const size = HEADER_LEN + f.body.length;
      if (b.bytes + size > hub.inputBufferBytes) {
        this.#backlog = null;
        hub.limitExceeded(
          this,
          "input_buffer",
          `more than ${hub.inputBufferBytes} bytes of frames waiting (comet.limits.input_buffer)`,
        );
        return;
      }
      b.frames.push({ ver: f.ver, op: f.op, seq: f.seq, body: f.body.slice() });
      b.bytes += size;
      return;
    }
    const p = hub.frame(this, f);
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
      const p = this.hub.frame(this, f);
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
            if (this.queue !== null) {
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
    ch.hub.protocolError(ch, e);
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
 * How a listener tells a client it refuses why: goim op 6 with reason 4007
 * (raw TCP) or `HTTP/1.1 503` (a WebSocket upgrade, before any handshake).
 */
export type Refusal = "op6" | "http503";

/**
 * Decides at accept time, before any channel exists, whether a socket is
 * served (the comet's descriptor budget). One gate serves every listener of
 * a comet; the listeners keep {@linkcode AcceptGate.refusing} up to date.
 */
export interface AcceptGate {
  /** Whether one more client socket may be served now. */
  admit(): boolean;
  /** Called once per refused socket, with the transport of its listener. */
  refused(transport: string): void;
  /** Refused sockets not closed yet: they hold descriptors too. */
  refusing: number;
  /**
   * Refused sockets that may linger for a polite goodbye (reply, then wait
   * for the client to close, at most {@linkcode REFUSE_GRACE_MS}); past it
   * a refused socket is closed at once, so a flood cannot eat the reserve.
   */
  readonly maxRefusing: number;
}

/** How long a refused socket waits for its client to close after the reply. */
export const REFUSE_GRACE_MS = 2000;

const REFUSAL_TEXT = "server at its connection capacity, try again later";
const REFUSAL_BYTES: Readonly<Record<Refusal, Uint8Array>> = {
  op6: encodeFrame({
    ver: 1,
    op: Op.DisconnectReply,
    seq: 0,
    body: encodeReason({ code: ReasonCode.LimitExceeded, message: REFUSAL_TEXT }),
  }),
  http503: new TextEncoder().encode(
    "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n" +
      `Content-Length: ${REFUSAL_TEXT.length + 1}\r\nRetry-After: 5\r\n\r\n${REFUSAL_TEXT}\n`,
  ),
};

const REFUSED: unique symbol = Symbol("goim.comet.refused");
type RefusedSocket = net.Socket & {
  [REFUSED]?: { gate: AcceptGate; timer: ReturnType<typeof setTimeout> };
};

function refuse(sock: net.Socket, gate: AcceptGate, refusal: Refusal, transport: string): void {
  gate.refused(transport);
  if (gate.refusing >= gate.maxRefusing) {
    sock.destroy();
    return;
  }
  gate.refusing++;
  const timer = setTimeout(destroyRefused, REFUSE_GRACE_MS, sock);
  (sock as RefusedSocket)[REFUSED] = { gate, timer };
  sock.on("close", onRefusedClose);
  sock.on("error", onError);
  // Reading what the client sent (its upgrade request, its auth frame)
  // keeps our close from turning into a reset that could drop the reply.
  sock.on("data", ignoreData);
  sock.end(REFUSAL_BYTES[refusal]);
}

function ignoreData(): void {}

function destroyRefused(sock: net.Socket): void {
  sock.destroy();
}

function onRefusedClose(this: RefusedSocket): void {
  const r = this[REFUSED];
  if (r === undefined) return;
  this[REFUSED] = undefined;
  clearTimeout(r.timer);
  r.gate.refusing--;
}

/**
 * What a listener is doing, as `/healthz` reports it: `listening`
 * (accepting, or nothing says otherwise), `stalled` (clients wait in its
 * accept queue and none was accepted over two checks), `down` (closed after
 * a stall and not bound again yet: re-binding is retried at every check) or
 * `unknown` (the process has no descriptor left to check with: nothing can
 * be accepted either).
 */
export type ListenerState = "listening" | "stalled" | "down" | "unknown";

/** One listener's address and state. */
export interface ListenerStatus {
  /** `host:port` bound. */
  addr: string;
  /** See {@linkcode ListenerState}. */
  state: ListenerState;
}

function isExhausted(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === "EMFILE" || code === "ENFILE";
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The 4 or 16 bytes of an IP address literal, or null. */
function ipBytes(host: string): Uint8Array | null {
  const v4 = (s: string): number[] | null => {
    const p = s.split(".");
    if (p.length !== 4) return null;
    const b = p.map((x) => (/^\d{1,3}$/.test(x) ? Number(x) : 256));
    return b.every((x) => x < 256) ? b : null;
  };
  if (!host.includes(":")) {
    const b = v4(host);
    return b ? new Uint8Array(b) : null;
  }
  let h = host;
  const zone = h.indexOf("%");
  if (zone >= 0) h = h.slice(0, zone);
  let tail: number[] = [];
  const lastColon = h.lastIndexOf(":");
  if (h.slice(lastColon + 1).includes(".")) {
    const b = v4(h.slice(lastColon + 1));
    if (b === null) return null;
    tail = b;
    h = h.slice(0, lastColon + 1) + "0:0"; // two placeholder groups, replaced below
  }
  const halves = h.split("::");
  if (halves.length > 2) return null;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - left.length - right.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return null;
  const all = [...left, ...Array(missing).fill("0"), ...right];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(all[i])) return null;
    const v = parseInt(all[i], 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 255;
  }
  if (tail.length === 4) out.set(tail, 12);
  return out;
}

/**
 * The `local_address` of a socket as /proc/net/tcp{,6} prints it: each
 * 32-bit word of the address in host byte order, in hex, then the port.
 */
function procAddress(bytes: Uint8Array, port: number): string {
  let s = "";
  for (let w = 0; w < bytes.length; w += 4) {
    for (let k = 0; k < 4; k++) {
      s += bytes[w + (LITTLE_ENDIAN ? 3 - k : k)].toString(16).padStart(2, "0");
    }
  }
  return `${s.toUpperCase()}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
}

// Bytes per read of a /proc/net file: one line (tcp lines are padded to
// 150 bytes). The kernel formats a record ahead at most, so reads that stop
// at the line wanted do not make it walk the established-connections hash:
// ≈55 µs per lookup here, where one 16 KB read cost ≈2 ms on an idle box.
const PROC_READ = 150;

// The listening sockets of one /proc/net/tcp{,6} file, local_address →
// accept-queue length, read as far as asked. The kernel lists every
// listening socket before any other (its seq_file walks the listening hash
// first), so the first line in another state ends the search.
class ListenTable {
  readonly #path: string;
  readonly #seen = new Map<string, number>();
  #file: Deno.FsFile | null = null;
  #state: "unread" | "reading" | "done" | "exhausted" | "unknown" = "unread";
  #rest = "";
  #header = true;
  #bytes = 0;
  readonly #buf = new Uint8Array(PROC_READ);
  readonly #dec = new TextDecoder();

  constructor(path: string) {
    this.#path = path;
  }

  find(key: string): number | "exhausted" | null {
    if (this.#state === "unread") this.#open();
    while (!this.#seen.has(key) && this.#state === "reading") this.#more();
    if (this.#state === "exhausted") return "exhausted";
    return this.#seen.get(key) ?? null;
  }

  close(): void {
    this.#file?.close();
    this.#file = null;
  }

  #open(): void {
    try {
      this.#file = Deno.openSync(this.#path);
      this.#state = "reading";
    } catch (e) {
      this.#state = isExhausted(e) ? "exhausted" : "unknown";
    }
  }

  #more(): void {
    let n: number | null;
    try {
      n = this.#file!.readSync(this.#buf);
    } catch {
      this.#state = "unknown";
      return;
    }
    this.#bytes += n ?? 0;
    if (n === null || n === 0 || this.#bytes > 1 << 20) {
      this.#state = "done";
      this.close();
      return;
    }
    const lines = (this.#rest + this.#dec.decode(this.#buf.subarray(0, n), { stream: true }))
      .split("\n");
    this.#rest = lines.pop()!;
    for (const line of lines) {
      if (this.#header) {
        this.#header = false;
        continue;
      }
      // "  sl  local_address rem_address   st tx_queue:rx_queue ..."
      const f = line.trim().split(/\s+/);
      if (f[3] !== "0A") {
        this.#state = "done"; // past the listening sockets
        this.close();
        return;
      }
      const rx = f[4]?.split(":")[1];
      if (rx !== undefined) this.#seen.set(f[1], parseInt(rx, 16));
    }
  }
}

/**
 * Accept-queue lengths of this network namespace's listening TCP sockets,
 * from /proc/net/tcp and /proc/net/tcp6 (Linux), read only as far as the
 * listeners asked about: make one per check and close it after.
 *
 * @example
 * ```ts
 * const q = new ListenQueues();
 * q.waiting("127.0.0.1", 3101); // 0: nobody waits to be accepted
 * q.close();
 * ```
 */
export class ListenQueues {
  #v4: ListenTable | null = null;
  #v6: ListenTable | null = null;

  /**
   * Connections waiting to be accepted by the listener bound at
   * `hostname:port`; `"exhausted"` when the process had no descriptor to
   * read with, `null` when unknown (not Linux, or no such listener).
   */
  waiting(hostname: string, port: number): number | "exhausted" | null {
    const b = ipBytes(hostname);
    if (b === null) return null;
    const table = b.length === 4
      ? (this.#v4 ??= new ListenTable("/proc/net/tcp"))
      : (this.#v6 ??= new ListenTable("/proc/net/tcp6"));
    return table.find(procAddress(b, port));
  }

  /** Closes the files read. */
  close(): void {
    this.#v4?.close();
    this.#v6?.close();
  }
}

/** Property of a node server holding its {@linkcode Listener}. */
const LISTENER: unique symbol = Symbol("goim.comet.listener");
type TaggedServer = net.Server & { [LISTENER]?: Listener };

/** Consecutive checks with clients waiting and none accepted that make a listener `stalled`; one more re-binds it. */
const STALL_CHECKS = 2;
/** How often a failing re-bind is logged again. */
const REBIND_LOG_MS = 60_000;

/** One bound address and what the stall detection knows about it. */
class Listener {
  server: net.Server | null = null;
  /** Sockets accepted (counted at the TCP level, before TLS). */
  accepts = 0;
  /** {@linkcode Listener.accepts} at the previous check. */
  seen = 0;
  /** Consecutive checks with clients waiting and no accept. */
  stalls = 0;
  state: ListenerState = "listening";
  binding: Promise<void> | null = null;
  failedLogAt = -Infinity;
  readonly addr: string;

  constructor(readonly hostname: string, readonly port: number) {
    this.addr = joinHostPort(this);
  }
}

function countAccept(this: TaggedServer): void {
  const l = this[LISTENER];
  if (l !== undefined) l.accepts++;
}

/** What the comet tells a {@linkcode SocketServer} after binding it. */
export interface SocketServerWiring {
  /** Transport label for logs, metrics and health (`tcp`, `ws`, `wss`). */
  transport: string;
  /** Admission of new sockets; none admits all. */
  gate?: AcceptGate;
  /** What a refused socket is sent (default `op6`). */
  refusal?: Refusal;
  /** Called after a stalled listener was bound again. */
  onRelisten?: () => void;
}

/**
 * Listeners (`node:net` or `node:tls`) whose accepted sockets become
 * channels made by `create`, optionally put through an
 * {@linkcode AcceptGate} first, and watched by {@linkcode SocketServer.check}.
 *
 * Why the watch: under Deno 2.9.3 a `node:net` listener whose accept fails
 * (EMFILE when the process is out of descriptors, for one) never accepts
 * again. The runtime's accept loop (its libuv emulation in Rust) drops the
 * error without reporting it and without asking to be woken again: no
 * `error` event, `listening` stays true, and new connections pile up in the
 * kernel's accept queue for good. Nothing in JavaScript sees the failed
 * accept (so neither the `error` event nor a wrapped accept can catch it),
 * so the check looks at its effect instead: clients waiting in the
 * listener's accept queue (/proc/net/tcp) over two checks while nothing was
 * accepted. That costs nothing while sockets are accepted (the accept
 * counter moved) and ≈55 µs of /proc reading per idle listener otherwise,
 * opens no connection (a self-connecting probe would, and would need a
 * descriptor exactly when there is none), and finds a dead accept loop
 * whatever killed it. The cure is to close the listener and bind the same
 * address again; connections still queued on the old one are reset (their
 * clients reconnect).
 *
 * @example
 * ```ts
 * import type { Logger } from "../infra/log.ts";
 * import type { ConnectionHub } from "./hub.ts";
 * import { TcpChannel } from "./tcp.ts";
 * declare const hub: ConnectionHub, log: Logger, gate: AcceptGate;
 * const srv = await SocketServer.listen({ binds: ["127.0.0.1:0"], log }, (sock) => new TcpChannel(hub, sock), (ch) => hub.accept(ch));
 * srv.wire({ transport: "tcp", gate, refusal: "op6" });
 * setInterval(() => {
 *   const q = new ListenQueues();
 *   srv.check(q);
 *   q.close();
 * }, SocketServer.CHECK_INTERVAL_MS);
 * await srv.close();
 * ```
 */
export class SocketServer {
  /** How often {@linkcode SocketServer.check} should run; a stall is re-bound within ≈3 of these. */
  static readonly CHECK_INTERVAL_MS = 1000;

  /** Bound addresses (real ports when 0 was asked). */
  readonly addrs: Deno.NetAddr[] = [];
  readonly #opts: SocketServerOptions;
  readonly #create: (sock: net.Socket) => SocketChannel;
  readonly #onAccept: (ch: SocketChannel) => void;
  readonly #listeners: Listener[] = [];
  readonly #retired: Promise<void>[] = [];
  #wiring: SocketServerWiring = { transport: "tcp" };
  #closing: Promise<void> | null = null;

  private constructor(
    opts: SocketServerOptions,
    create: (sock: net.Socket) => SocketChannel,
    onAccept: (ch: SocketChannel) => void,
  ) {
    this.#opts = opts;
    this.#create = create;
    this.#onAccept = onAccept;
  }

  /** Binds every address (all or nothing); `create` makes each socket's channel. */
  static async listen(
    opts: SocketServerOptions,
    create: (sock: net.Socket) => SocketChannel,
    onAccept: (ch: SocketChannel) => void,
  ): Promise<SocketServer> {
    const srv = new SocketServer(opts, create, onAccept);
    try {
      for (const bind of opts.binds) {
        const { hostname, port } = splitHostPort(bind);
        const server = await srv.#bind(hostname, port);
        const a = server.address() as net.AddressInfo;
        const l = new Listener(a.address, a.port);
        srv.#adopt(l, server);
        srv.#listeners.push(l);
        srv.addrs.push({ transport: "tcp", hostname: a.address, port: a.port });
      }
    } catch (e) {
      for (const l of srv.#listeners) l.server?.close();
      throw e;
    }
    return srv;
  }

  /** Sets the transport label, the accept gate and the re-listen hook (call once, right after binding). */
  wire(wiring: SocketServerWiring): void {
    this.#wiring = wiring;
  }

  /** Every listener's address and state. */
  listeners(): ListenerStatus[] {
    return this.#listeners.map((l) => ({ addr: l.addr, state: l.state }));
  }

  /**
   * Looks for stalled listeners and re-binds them; call every
   * {@linkcode SocketServer.CHECK_INTERVAL_MS} with a fresh `queues`
   * (shared by every server checked at that moment).
   */
  check(queues: ListenQueues): void {
    if (this.#closing) return;
    const log = this.#opts.log;
    for (const l of this.#listeners) {
      if (l.server === null) {
        if (l.binding === null) l.binding = this.#rebind(l);
        continue;
      }
      if (l.accepts !== l.seen) {
        l.seen = l.accepts;
        l.stalls = 0;
        l.state = "listening";
        continue;
      }
      const waiting = queues.waiting(l.hostname, l.port);
      if (waiting === "exhausted") {
        l.state = "unknown";
        continue;
      }
      if (waiting === null || waiting === 0) {
        l.stalls = 0;
        l.state = "listening";
        continue;
      }
      l.stalls++;
      if (l.stalls < STALL_CHECKS) continue;
      const fields = { transport: this.#wiring.transport, addr: l.addr, waiting };
      if (l.stalls === STALL_CHECKS) {
        l.state = "stalled";
        log.warn("listener stalled: clients wait in its accept queue and none is accepted", fields);
        continue;
      }
      log.error("listener stopped accepting; closing it and listening again", fields);
      const old = l.server;
      l.server = null;
      l.state = "down";
      l.stalls = 0;
      this.#retired.push(new Promise<void>((r) => old.close(() => r())));
      l.binding = this.#rebind(l);
    }
  }

  /** Stops accepting. Resolves once the accepted sockets are closed too (the caller closes them). */
  close(): Promise<void> {
    return this.#closing ??= (async () => {
      await Promise.all(this.#listeners.map((l) => l.binding));
      await Promise.all([
        ...this.#listeners.flatMap((l) => {
          const s = l.server;
          return s ? [new Promise<void>((r) => s.close(() => r()))] : [];
        }),
        ...this.#retired,
      ]);
    })();
  }

  // One shared connection handler per server (no closure per socket).
  #onConnection = (sock: net.Socket): void => {
    if (sock.remoteAddress === undefined) {
      sock.destroy(); // already gone
      return;
    }
    const w = this.#wiring;
    if (w.gate !== undefined && !w.gate.admit()) {
      refuse(sock, w.gate, w.refusal ?? "op6", w.transport);
      return;
    }
    sock.setNoDelay(true); // replies should not wait for Nagle; Go sets this too
    if (this.#opts.keepalive) sock.setKeepAlive(true);
    sock.on("data", onData);
    sock.on("close", onClose);
    sock.on("error", onError);
    this.#onAccept(this.#create(sock));
  };

  #bind(hostname: string, port: number): Promise<net.Server> {
    const opts = this.#opts;
    const server = opts.tls
      ? tls.createServer({
        cert: opts.tls.cert,
        key: opts.tls.key,
        handshakeTimeout: opts.tls.handshakeTimeoutMs,
      }, this.#onConnection)
      : net.createServer(this.#onConnection);
    return new Promise<net.Server>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: hostname, port }, () => {
        server.off("error", reject);
        server.on("error", (e) => opts.log.error("listener error", { error: e }));
        resolve(server);
      });
    });
  }

  #adopt(l: Listener, server: net.Server): void {
    (server as TaggedServer)[LISTENER] = l;
    // For TLS this is the raw TCP accept, before the handshake.
    server.on("connection", countAccept);
    l.server = server;
    l.seen = l.accepts;
    l.stalls = 0;
    l.state = "listening";
  }

  async #rebind(l: Listener): Promise<void> {
    const log = this.#opts.log;
    const transport = this.#wiring.transport;
    try {
      const server = await this.#bind(l.hostname, l.port);
      if (this.#closing) {
        this.#retired.push(new Promise<void>((r) => server.close(() => r())));
      } else {
        this.#adopt(l, server);
        log.warn("listener bound again and accepting", { transport, addr: l.addr });
        this.#wiring.onRelisten?.();
      }
    } catch (e) {
      l.state = "down";
      const now = performance.now();
      if (now - l.failedLogAt >= REBIND_LOG_MS) {
        l.failedLogAt = now;
        log.error("listening again failed; retrying at every check", {
          transport,
          addr: l.addr,
          error: errorMessage(e),
        });
      }
    } finally {
      l.binding = null;
    }
  }
}

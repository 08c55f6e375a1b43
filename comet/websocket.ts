/**
 * WebSocket and WSS transports (goim internal/comet/server_websocket.go):
 * RFC 6455 on the same `node:net` / `node:tls` sockets as raw TCP, path
 * `/sub` (a query string is accepted), one goim frame per client message.
 * The codec itself (upgrade validation, the bounded frame reader, server
 * frames) is ./ws_codec.ts; this file is the channel glue.
 *
 * Why not `Deno.serve` + `Deno.upgradeWebSocket`: measured here, an idle
 * upgraded socket costs ≈23 KB of RSS against ≈6 KB for this one (the
 * target is 14 KB), and the Web API sends one message per call, so
 * nothing can merge several messages into one write. Here the whole send
 * queue, several WebSocket messages included, leaves in one write like on
 * TCP. No extensions (permessage-deflate) and no subprotocols are
 * negotiated, so every client falls back to plain frames.
 *
 * Framing of pushes (docs/PROTOCOL.md, "Pushes: how they are framed"):
 * consecutive queued pushes become one binary message holding one op 9
 * envelope; replies are one message each.
 *
 * Bounds: what a connection makes the server hold is bounded by the
 * reader's limits (message size, frames per message, input bytes held) and
 * a pong per connection: a ping that arrives while the previous pong is
 * still queued replaces that pong's payload (RFC 6455 §5.5.3 lets a server
 * answer only the latest ping), so a client that pings without reading
 * holds one pong, not one per ping.
 *
 * Close codes: after op 6 the close frame repeats the op 6 reason code
 * (4000–4999), except for the reader's bounds, where op 6 says 4007 and the
 * close frame says which RFC 6455 bound: 1009 (message too big, input
 * held) or 1008 (too many fragments). A client's close is answered per
 * {@linkcode closeAnswer}, without op 6.
 *
 * @module
 */

import type net from "node:net";
import type { Logger } from "../infra/log.ts";
import { type Batch, decodeFrame, HEADER_LEN, Op, PUSH_VER, writeHeader } from "../protocol/mod.ts";
import { ChannelState, type QueueItem, RawFrame } from "./channel.ts";
import { Framing, memoBytes } from "./coalesce.ts";
import { TRANSPORT_INDEX } from "./metrics.ts";
import type { ConnectionHub } from "./hub.ts";
import { SocketChannel, SocketServer } from "./socket.ts";
import {
  closeAnswer,
  closeFrame,
  findHeadEnd,
  MAX_UPGRADE_REQUEST,
  parseUpgrade,
  refusalResponse,
  upgradeResponse,
  WebSocketError,
  writeWsHeader,
  wsFrame,
  wsHeaderLen,
  type WsLimits,
  WsOp,
  WsReader,
  type WsSink,
} from "./ws_codec.ts";

export { MAX_UPGRADE_REQUEST, WebSocketError, wsFrame };

const utf8 = new TextEncoder();
/** Default of comet.websocket.max_fragments. */
const DEFAULT_MAX_FRAGMENTS = 16;
/** Default of comet.limits.input_buffer. */
const DEFAULT_INPUT_BUFFER = 64 * 1024;

function isPush(it: QueueItem): it is Batch {
  return !(it instanceof Uint8Array) && !(it instanceof RawFrame);
}

/**
 * Frames a send queue for WebSocket: each run of pushes → one binary
 * message with one op 9 envelope; each reply → one binary message; raw
 * items (control frames) as they are. One buffer for all of it.
 */
export function encodeWebSocketQueue(q: readonly QueueItem[]): Uint8Array {
  return memoBytes(q, 0, q.length, Framing.WsQueue, () => {
    let size = 0;
    for (let i = 0; i < q.length;) {
      const it = q[i];
      if (it instanceof Uint8Array) {
        size += wsHeaderLen(it.length) + it.length;
        i++;
      } else if (it instanceof RawFrame) {
        size += it.bytes.length;
        i++;
      } else {
        let env = HEADER_LEN;
        for (; i < q.length && isPush(q[i]); i++) env += (q[i] as Batch).tcp.length;
        size += wsHeaderLen(env) + env;
      }
    }
    const out = new Uint8Array(size);
    let o = 0;
    for (let i = 0; i < q.length;) {
      const it = q[i];
      if (it instanceof Uint8Array) {
        o = writeWsHeader(out, o, 0x2, it.length);
        out.set(it, o);
        o += it.length;
        i++;
      } else if (it instanceof RawFrame) {
        out.set(it.bytes, o);
        o += it.bytes.length;
        i++;
      } else {
        let j = i;
        let env = HEADER_LEN;
        for (; j < q.length && isPush(q[j]); j++) env += (q[j] as Batch).tcp.length;
        o = writeWsHeader(out, o, 0x2, env);
        writeHeader(out, o, env - HEADER_LEN, PUSH_VER, Op.Raw, 0);
        o += HEADER_LEN;
        for (; i < j; i++) {
          const t = (q[i] as Batch).tcp;
          out.set(t, o);
          o += t.length;
        }
      }
    }
    return out;
  });
}

/** What every channel of one listener shares (one object, not per connection). */
interface WsListener {
  readonly kind: "ws" | "wss";
  readonly limits: WsLimits;
  // An idle reader for the next chunk of a channel that holds none, so
  // that reading whole messages allocates no reader per chunk.
  spare: WsReader | null;
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// The close code the next ended() uses instead of the op 6 code. Set and
// cleared around one synchronous ConnectionHub.end call, so no channel needs a
// field for the rare close that differs.
let closeOverride = 0;

/** The reader's sink: one object for every channel, the channel as context. */
const SINK: WsSink<WsChannel> = {
  message: (ch, payload) => ch.onMessage(payload),
  control: (ch, opcode, payload) => ch.onControl(opcode, payload),
};

/** A WebSocket (or WSS) connection's channel. */
export class WsChannel extends SocketChannel {
  readonly #listener: WsListener;
  #upgraded = false;
  // Before the upgrade: the request bytes so far. After: the frame reader,
  // only while it holds something (most connections, most of the time, hold
  // nothing between reads).
  #pendingInput: Uint8Array | WsReader | null = null;
  // The queued pong and the queue it went into: while `queue` is still that
  // array the pong has not been taken by a flush (takeQueue swaps in a new
  // array; drop_oldest only removes pushes).
  #pong: RawFrame | null = null;
  #pongQueue: QueueItem[] | null = null;

  /** Wraps an accepted socket (plain or TLS) of a listener. */
  constructor(hub: ConnectionHub, sock: net.Socket, listener: WsListener) {
    super(hub, sock);
    this.#listener = listener;
  }

  /** `"ws"` or `"wss"`. */
  get transport(): "ws" | "wss" {
    return this.#listener.kind;
  }

  /** Metrics index of the transport. */
  protected get transportIndex(): number {
    return TRANSPORT_INDEX[this.#listener.kind];
  }

  /** A push costs at most its envelope plus a WebSocket header. */
  protected pushSize(batch: Batch): number {
    return batch.ws.length + 10;
  }

  /** WebSocket framing of the whole queue (taken for a flush: a queued pong leaves with it). */
  protected encode(q: readonly QueueItem[]): Uint8Array {
    if (q === this.#pongQueue) {
      this.#pong = null;
      this.#pongQueue = null;
    }
    return encodeWebSocketQueue(q);
  }

  /**
   * After op 6, the close frame repeats the reason code (4000–4999), or
   * carries the RFC code of a reader bound. Before the upgrade there is no
   * way to say why: the socket just closes.
   */
  protected override ended(): void {
    if (this.#upgraded) {
      this.appendRaw(closeFrame(closeOverride || this.closeCode, this.closeReason), true);
    } else {
      this.clearQueue();
    }
  }

  /** Parses the upgrade request, then WebSocket frames. */
  input(chunk: Uint8Array): void {
    if (this.#upgraded) this.#frames(chunk);
    else this.#handshake(chunk);
  }

  #handshake(chunk: Uint8Array): void {
    const part = this.#pendingInput as Uint8Array | null;
    const buf = part === null ? chunk : concatBytes(part, chunk);
    this.#pendingInput = null;
    const end = findHeadEnd(buf);
    if (end < 0 ? buf.length > MAX_UPGRADE_REQUEST : end > MAX_UPGRADE_REQUEST) {
      return this.#refuse(431, "request too large");
    }
    if (end < 0) {
      this.#pendingInput = buf.slice();
      return;
    }
    const up = parseUpgrade(buf.subarray(0, end), "/sub");
    if (!up.ok) return this.#refuse(up.status, up.message, up.headers);
    if (this.hub.shuttingDown) return this.#refuse(503, "shutting down");
    // Written directly: nothing can be queued before the upgrade.
    this.sock.write(upgradeResponse(up.accept));
    this.#upgraded = true;
    const rest = buf.subarray(end + 4);
    if (rest.length > 0) this.#frames(rest);
  }

  #refuse(status: number, message: string, headers = ""): void {
    this.hub.endQuietly(
      this,
      `http_${status}`,
      utf8.encode(refusalResponse(status, message, headers)),
    );
  }

  #frames(chunk: Uint8Array): void {
    const l = this.#listener;
    let rx = this.#pendingInput as WsReader | null;
    if (rx === null) {
      rx = l.spare ?? new WsReader(l.limits);
      l.spare = null;
    }
    this.#pendingInput = null;
    try {
      const more = rx.push(chunk, SINK, this);
      // An idle reader holds no state: it serves the next channel. One that
      // failed (below) is dropped.
      if (rx.idle) l.spare = rx;
      else if (more) this.#pendingInput = rx;
    } catch (e) {
      if (!(e instanceof WebSocketError) || e.limit === null) throw e;
      this.#limit(e);
    }
  }

  /** A reader bound: counted, op 6 4007, then a close frame with the bound's RFC code. */
  #limit(e: WebSocketError): void {
    const hub = this.hub;
    if (this.state >= ChannelState.Closing) return;
    hub.metrics.limitCloses.inc({ limit: e.limit! });
    closeOverride = e.closeCode;
    try {
      hub.end(this, e.reason, "limit_exceeded");
    } finally {
      closeOverride = 0;
    }
  }

  /** A whole client message (the reader's sink): one goim frame. Returns whether to read on. */
  onMessage(payload: Uint8Array): boolean {
    this.dispatch(decodeFrame(payload, { maxBody: this.hub.maxBody }));
    return this.#open();
  }

  /** A client control frame (the reader's sink). Returns whether to read on. */
  onControl(opcode: number, payload: Uint8Array): boolean {
    if (opcode === WsOp.Close) {
      const { code, ok } = closeAnswer(payload);
      if (!ok) this.hub.metrics.protocolErrors.inc({ code: "websocket" });
      this.hub.endQuietly(this, ok ? "client" : "protocol_error", closeFrame(code));
      return false;
    }
    if (opcode === WsOp.Ping) {
      const pong = wsFrame(WsOp.Pong, payload);
      const queued = this.#pong;
      if (queued !== null && this.queue === this.#pongQueue) {
        this.replaceRaw(queued, pong);
      } else {
        this.#pong = this.appendRaw(pong);
        this.#pongQueue = this.#pong === null ? null : this.queue;
      }
    }
    return this.#open();
  }

  #open(): boolean {
    return !this.isClosed && this.state < ChannelState.Closing;
  }
}

/** Options of {@linkcode listenWebSocket}. */
export interface WebSocketOptions {
  /** `host:port` addresses (comet.websocket.bind or tls_bind). */
  binds: readonly string[];
  /** `"ws"`, or `"wss"` with `cert` and `key`. */
  kind: "ws" | "wss";
  /** PEM certificate chain (WSS). */
  cert?: string;
  /** PEM private key (WSS). */
  key?: string;
  /** Logger. */
  log: Logger;
  /** Frames one message may span (comet.websocket.max_fragments; default 16). */
  maxFragments?: number;
  /** Input bytes one connection may hold (comet.limits.input_buffer; default 64 KiB). */
  inputBuffer?: number;
}

/**
 * Binds WebSocket (or WSS) listeners; accepted sockets become
 * {@linkcode WsChannel}s, subject to the handshake timeout from the first
 * byte (the HTTP upgrade and op 7 must both arrive in time).
 *
 * @example
 * ```ts
 * import type { Logger } from "../infra/log.ts";
 * import type { ConnectionHub } from "./hub.ts";
 * declare const hub: ConnectionHub, log: Logger;
 * const ws = await listenWebSocket(hub, { binds: ["127.0.0.1:0"], kind: "ws", log });
 * const url = `ws://127.0.0.1:${ws.addrs[0].port}/sub`;
 * await ws.close();
 * ```
 */
export function listenWebSocket(hub: ConnectionHub, opts: WebSocketOptions): Promise<SocketServer> {
  const listener: WsListener = {
    kind: opts.kind,
    limits: {
      maxMessage: hub.maxBody + HEADER_LEN,
      maxFragments: opts.maxFragments ?? DEFAULT_MAX_FRAGMENTS,
      maxBuffered: opts.inputBuffer ?? DEFAULT_INPUT_BUFFER,
    },
    spare: null,
  };
  return SocketServer.listen(
    {
      binds: opts.binds,
      tls: opts.kind === "wss"
        ? { cert: opts.cert!, key: opts.key!, handshakeTimeoutMs: hub.handshakeMs }
        : undefined,
      log: opts.log,
    },
    (sock) => new WsChannel(hub, sock, listener),
    (ch) => hub.accept(ch),
  );
}

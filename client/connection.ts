/**
 * One authenticated session over one transport: the op 7 → 8 handshake,
 * heartbeats and their liveness check, seq-matched requests, op 9 unwrapping
 * and push delivery. It never reconnects; `GoimClient` owns that policy.
 *
 * Runs in Deno and browsers.
 *
 * @module
 */

import { decodeReason, type DisconnectReason, ProtocolError } from "../protocol/errors.ts";
import { decodeFrames, encodeFrame, type Frame } from "../protocol/frame.ts";
import { decodeHeartbeatReply } from "../protocol/messages.ts";
import { Op, STREAM_OPS_FIRST } from "../protocol/ops.ts";
import { type AuthToken, encodeAuthToken } from "../protocol/token.ts";
import { GoimClientError } from "./errors.ts";
import type { Transport, TransportClose, TransportFactory } from "./transport.ts";

/**
 * A message pushed by the server (an inner frame). `body` is stable: it is
 * never reused by the client (on WebSocket it may be a view into the op 9
 * envelope that carried it).
 *
 * @example
 * ```ts
 * import type { GoimClient } from "./client.ts";
 * declare const client: GoimClient;
 * client.on("message", (m: PushMessage) => console.log(m.op, new TextDecoder().decode(m.body)));
 * ```
 */
export interface PushMessage {
  /** The push's operation (≥ 1000 by convention). */
  op: number;
  /** The message bytes. */
  body: Uint8Array;
  /** Frame version (1 for pushes). */
  ver: number;
  /** Frame seq (0 for pushes). */
  seq: number;
  // ---- streams (docs/STREAMS.md), only on a client created with `streams`
  /** The stream (`room:…`, `mid:…`) the message has a position in. */
  stream?: string;
  /** Its position in `stream` (≥ 1, no holes). */
  pos?: number;
  /** The epoch of `pos`. */
  epoch?: string;
  /** The push id (ack-requested and stream messages). */
  pushId?: string;
  /** Replayed from history (recovery), not live. */
  replayed?: boolean;
  /**
   * With `streams.autoAck: false`, on ack-requested messages: tells the
   * server the message was processed (idempotent; sent batched).
   */
  ack?: () => void;
}

/**
 * Why an authenticated connection ended.
 *
 * @example
 * ```ts
 * const opts: Partial<ConnectionOptions> = {
 *   onEnd: (_conn, end: ConnectionEnd) => console.log(end.error.code, end.reason),
 * };
 * ```
 */
export interface ConnectionEnd {
  /** The cause, as a typed error (code `"closed"` after a local close). */
  error: GoimClientError;
  /** The server's op 6 reason (or WebSocket close code 4000–4999), if it gave one. */
  reason?: DisconnectReason;
}

/**
 * Everything one connection needs; `GoimClient` fills it in.
 *
 * @example
 * ```ts
 * import type { AuthToken } from "../protocol/token.ts";
 * import { openTransport } from "./transport.ts";
 * declare const token: AuthToken;
 * const conn = await Connection.open({
 *   url: new URL("ws://127.0.0.1:3102/sub"), token, ver: 1, maxBody: 1 << 24,
 *   authTimeoutMs: 10_000, heartbeatIntervalMs: 240_000, transport: openTransport,
 *   onAuth() {}, onMessage() {}, onHeartbeat() {}, onEnd() {},
 * });
 * ```
 */
export interface ConnectionOptions {
  /** Comet address (`tcp://`, `ws://`, `wss://`). */
  url: URL;
  /** The op 7 body. */
  token: AuthToken;
  /** `ver` written into every client frame. */
  ver: number;
  /** Largest accepted server→client frame body. */
  maxBody: number;
  /** Time allowed from connect start to op 8. */
  authTimeoutMs: number;
  /** Heartbeat period after auth. */
  heartbeatIntervalMs: number;
  /** Opens the transport. */
  transport: TransportFactory;
  /** Aborting it fails a connection that is not yet authenticated. */
  signal?: AbortSignal;
  /** Op 8 arrived; called synchronously, before any later frame is handled. */
  onAuth(conn: Connection): void;
  /** A push arrived. */
  onMessage(message: PushMessage): void;
  /** An op 3 reply arrived with the room's online count. */
  onHeartbeat(online: number): void;
  /**
   * Takes the frames of the stream ops' reserved range (StreamMsg,
   * StreamState: docs/STREAMS.md) instead of `onMessage` when set (a
   * connection that opted in). What it throws is a protocol error: the
   * connection ends with it.
   */
  onStreamFrame?(frame: Frame): void;
  /** The authenticated connection ended (never called if auth failed). */
  onEnd(conn: Connection, end: ConnectionEnd): void;
}

interface Pending {
  replyOps: readonly number[];
  resolve(frame: Frame): void;
  reject(error: unknown): void;
  timer: ReturnType<typeof setTimeout>;
}

const MAX_SEQ = 0x7fffffff;

/**
 * One goim session. Create with {@linkcode Connection.open}, which resolves
 * once the server answered op 8.
 *
 * @example
 * ```ts
 * import { utf8 } from "../protocol/bytes.ts";
 * import { Op } from "../protocol/ops.ts";
 * import type { AuthToken } from "../protocol/token.ts";
 * import { openTransport } from "./transport.ts";
 * declare const token: AuthToken;
 * const conn = await Connection.open({
 *   url: new URL("tcp://127.0.0.1:3101"), token, ver: 1, maxBody: 1 << 24,
 *   authTimeoutMs: 10_000, heartbeatIntervalMs: 240_000, transport: openTransport,
 *   onAuth() {}, onMessage: (m) => console.log(m.op), onHeartbeat() {}, onEnd() {},
 * });
 * await conn.request(Op.ChangeRoom, utf8("live://2"), [Op.ChangeRoomReply], 10_000);
 * await conn.close();
 * ```
 */
export class Connection {
  #opts: ConnectionOptions;
  #transport: Transport | null = null;
  #connectCtl = new AbortController();
  #seq = 0;
  #pending = new Map<number, Pending>();
  #authed = false;
  #ending = false;
  #ended = false;
  #endError: GoimClientError | null = null;
  #reason: DisconnectReason | undefined;
  #authTimer: ReturnType<typeof setTimeout> | undefined;
  #beatTimer: ReturnType<typeof setTimeout> | undefined;
  #unanswered = 0;
  #resolveAuth!: () => void;
  #rejectAuth!: (e: GoimClientError) => void;
  #authPromise: Promise<void>;
  #endedPromise: Promise<void>;
  #resolveEnded!: () => void;
  #onAbort = () => this.#fail(new GoimClientError("closed", "closed by the client"));

  private constructor(opts: ConnectionOptions) {
    this.#opts = opts;
    this.#authPromise = new Promise((resolve, reject) => {
      this.#resolveAuth = resolve;
      this.#rejectAuth = reject;
    });
    this.#endedPromise = new Promise((r) => this.#resolveEnded = r);
  }

  /**
   * Connects, sends op 7 and resolves on op 8. Rejects with a
   * {@linkcode GoimClientError} (`auth_failed` carrying the op 6 reason,
   * `auth_timeout`, `connect_failed`, `disconnected`, `closed`) only after
   * the transport is fully closed.
   */
  static async open(opts: ConnectionOptions): Promise<Connection> {
    const conn = new Connection(opts);
    conn.#start();
    await conn.#authPromise;
    return conn;
  }

  /** Whether op 8 arrived and the connection has not started to end. */
  get ready(): boolean {
    return this.#authed && !this.#ending;
  }

  #start(): void {
    const o = this.#opts;
    this.#authTimer = setTimeout(() => {
      this.#fail(
        new GoimClientError("auth_timeout", `no auth reply within ${o.authTimeoutMs} ms`),
      );
    }, o.authTimeoutMs);
    if (o.signal?.aborted) {
      this.#onAbort();
    } else {
      o.signal?.addEventListener("abort", this.#onAbort, { once: true });
    }
    if (this.#ending) {
      this.#finish({});
      return;
    }
    o.transport(o.url, {
      maxBody: o.maxBody,
      signal: this.#connectCtl.signal,
      handlers: {
        onFrame: (f) => this.#onFrame(f),
        onClose: (info) => this.#finish(info),
      },
    }).then((t) => {
      this.#transport = t;
      if (this.#ending) {
        void t.close();
        return;
      }
      this.#write(Op.Auth, encodeAuthToken(o.token));
    }, (e) => {
      this.#endError ??= e instanceof GoimClientError
        ? e
        : new GoimClientError("connect_failed", `cannot connect to ${o.url}: ${e}`, { cause: e });
      this.#ending = true;
      this.#finish({});
    });
  }

  #nextSeq(): number {
    this.#seq = this.#seq >= MAX_SEQ ? 1 : this.#seq + 1;
    return this.#seq;
  }

  #write(op: number, body: Uint8Array): number {
    const seq = this.#nextSeq();
    // A failed write ends the transport; its onClose settles everything.
    this.#transport?.write(encodeFrame({ ver: this.#opts.ver, op, seq, body })).catch(() => {});
    return seq;
  }

  #onFrame(f: Frame): void {
    if (this.#ending) return;
    switch (f.op) {
      case Op.AuthReply:
        if (!this.#authed) this.#onAuthed();
        return;
      case Op.DisconnectReply:
        this.#reason = decodeReason(f.body);
        this.#shutdown();
        return;
      case Op.Raw: {
        let inner: Frame[];
        try {
          inner = decodeFrames(f.body, { maxBody: this.#opts.maxBody });
        } catch (e) {
          this.#fail(this.#protocolError(e));
          return;
        }
        for (const frame of inner) {
          if (this.#ending) return;
          this.#dispatch(frame);
        }
        return;
      }
      default:
        this.#dispatch(f);
    }
  }

  #dispatch(f: Frame): void {
    if (!this.#authed) return; // nothing but 8 or 6 is expected before auth
    if (f.op === Op.HeartbeatReply) {
      this.#unanswered = 0;
      this.#opts.onHeartbeat(decodeHeartbeatReply(f.body));
      return;
    }
    const p = f.seq !== 0 ? this.#pending.get(f.seq) : undefined;
    if (p && p.replyOps.includes(f.op)) {
      this.#pending.delete(f.seq);
      clearTimeout(p.timer);
      p.resolve(f);
      return;
    }
    // Protocol ops (0–17) are never pushes: a late reply to a timed-out request is dropped.
    if (f.op >= 0 && f.op <= Op.UnsubReply) return;
    const onStream = this.#opts.onStreamFrame;
    // The reserved range is never a push (protocol/ops.ts, isBusinessOp).
    if (onStream && f.op >= STREAM_OPS_FIRST) {
      try {
        onStream(f);
      } catch (e) {
        this.#fail(this.#protocolError(e));
      }
      return;
    }
    this.#opts.onMessage({ op: f.op, body: f.body, ver: f.ver, seq: f.seq });
  }

  #onAuthed(): void {
    this.#authed = true;
    clearTimeout(this.#authTimer);
    this.#authTimer = undefined;
    this.#opts.signal?.removeEventListener("abort", this.#onAbort);
    this.#opts.onAuth(this);
    this.#resolveAuth();
    if (!this.#ending) this.#beat();
  }

  // Sends op 2 now and every interval; two unanswered intervals mean dead.
  #beat(): void {
    this.#beatTimer = undefined;
    if (this.#ending) return;
    if (this.#unanswered >= 2) {
      this.#fail(
        new GoimClientError(
          "heartbeat_timeout",
          `no heartbeat reply for ${2 * this.#opts.heartbeatIntervalMs} ms`,
        ),
      );
      return;
    }
    this.#unanswered++;
    this.#write(Op.Heartbeat, new Uint8Array(0));
    this.#beatTimer = setTimeout(() => this.#beat(), this.#opts.heartbeatIntervalMs);
  }

  /**
   * Sends a request and resolves with the reply whose seq matches and whose
   * op is one of `replyOps`. Rejects on timeout or when the connection ends.
   */
  request(
    op: number,
    body: Uint8Array,
    replyOps: readonly number[],
    timeoutMs: number,
  ): Promise<Frame> {
    if (!this.ready) {
      return Promise.reject(new GoimClientError("not_connected", "the connection is not ready"));
    }
    return new Promise((resolve, reject) => {
      const seq = this.#write(op, body);
      const timer = setTimeout(() => {
        this.#pending.delete(seq);
        reject(new GoimClientError("timeout", `no reply to op ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(seq, { replyOps, resolve, reject, timer });
    });
  }

  /**
   * Sends a frame that gets no reply (stream acks and syncs); does nothing
   * once the connection is not ready.
   */
  send(op: number, body: Uint8Array): void {
    if (this.ready) this.#write(op, body);
  }

  /**
   * Ends the connection (`error` is reported to `onEnd`, default code
   * `"closed"`); resolves once the transport is fully closed.
   */
  close(error?: GoimClientError): Promise<void> {
    this.#fail(error ?? new GoimClientError("closed", "closed by the client"));
    return this.#endedPromise;
  }

  #protocolError(e: unknown): GoimClientError {
    return new GoimClientError(
      "protocol",
      `the server broke the wire contract: ${e instanceof Error ? e.message : e}`,
      { cause: e },
    );
  }

  // The first cause wins: a connection already ending (op 6, server close)
  // keeps its reason even if a timer or close() fires before it finished.
  #fail(error: GoimClientError): void {
    if (this.#ending) return;
    this.#endError = error;
    this.#shutdown();
  }

  #shutdown(): void {
    if (this.#ending) return;
    this.#ending = true;
    clearTimeout(this.#beatTimer);
    this.#beatTimer = undefined;
    if (this.#transport) void this.#transport.close();
    else this.#connectCtl.abort();
    // With neither, the pending transport promise settles and finishes.
  }

  // Called once: after the transport closed, or when it never opened.
  #finish(info: TransportClose): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#ending = true;
    clearTimeout(this.#authTimer);
    clearTimeout(this.#beatTimer);
    this.#opts.signal?.removeEventListener("abort", this.#onAbort);
    const error = this.#endError ?? this.#closeError(info);
    const reason = this.#reason ?? error.reason;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(
        new GoimClientError(
          error.code === "closed" ? "closed" : "disconnected",
          `connection ended: ${error.message}`,
          {
            reason,
            cause: error,
          },
        ),
      );
    }
    this.#pending.clear();
    this.#resolveEnded();
    if (!this.#authed) {
      this.#rejectAuth(error);
    } else {
      this.#opts.onEnd(this, reason ? { error, reason } : { error });
    }
  }

  #closeError(info: TransportClose): GoimClientError {
    let reason = this.#reason;
    if (!reason && info.error instanceof ProtocolError) return this.#protocolError(info.error);
    if (!reason && info.code !== undefined && info.code >= 4000 && info.code <= 4999) {
      reason = { code: info.code, message: info.reason ?? "" };
    }
    if (reason) {
      return this.#authed
        ? new GoimClientError(
          "disconnected",
          `the server disconnected: ${reason.message} (${reason.code})`,
          { reason },
        )
        : new GoimClientError(
          "auth_failed",
          `the server refused the connection: ${reason.message} (${reason.code})`,
          { reason },
        );
    }
    if (info.error !== undefined) {
      return new GoimClientError("disconnected", `connection lost: ${info.error}`, {
        cause: info.error,
      });
    }
    const code = info.code !== undefined ? ` (WebSocket close ${info.code})` : "";
    return new GoimClientError("disconnected", `the server closed the connection${code}`);
  }
}

/**
 * `GoimClient`: a goim v2 client with auth, heartbeats, seq-matched
 * requests, typed events and reconnects with capped exponential backoff,
 * to the same comet or (with `nodes`) to another one from logic's nodes
 * answer or the app's own list (./nodes.ts).
 *
 * Runs in Deno and browsers (with `ws://`/`wss://`; `tcp://` is Deno only).
 *
 * @module
 */

import type { DisconnectReason } from "../protocol/errors.ts";
import { formatOps } from "../protocol/messages.ts";
import { isInt32, Op } from "../protocol/ops.ts";
import type { AuthToken } from "../protocol/token.ts";
import { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.ts";
import { Connection, type ConnectionEnd, type PushMessage } from "./connection.ts";
import { Emitter, type Listener } from "./emitter.ts";
import { GoimClientError } from "./errors.ts";
import { DEFAULT_NODES_TIMEOUT_MS, NodeRotation, type NodeSource, resolveNodes } from "./nodes.ts";
import {
  type StreamPositions,
  type StreamsEvent,
  type StreamsOptions,
  type StreamStats,
  StreamTracker,
  zeroStreamStats,
} from "./streams.ts";
import { openTransport, type TransportFactory } from "./transport.ts";

/**
 * goim's heartbeat interval: 4 minutes (the comet's idle timeout is twice that).
 *
 * @example
 * ```ts
 * import type { AuthToken } from "../protocol/token.ts";
 * declare const url: string, token: AuthToken;
 * new GoimClient({ url, token, heartbeatIntervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS / 8 }); // 30 s
 * ```
 */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 240_000;
/**
 * Default time from connect start to op 8.
 *
 * @example
 * ```ts
 * import type { AuthToken } from "../protocol/token.ts";
 * declare const url: string, token: AuthToken;
 * new GoimClient({ url, token, authTimeoutMs: 2 * DEFAULT_AUTH_TIMEOUT_MS });
 * ```
 */
export const DEFAULT_AUTH_TIMEOUT_MS = 10_000;
/**
 * Default time a request waits for its reply.
 *
 * @example
 * ```ts
 * import type { AuthToken } from "../protocol/token.ts";
 * declare const url: string, token: AuthToken;
 * new GoimClient({ url, token, requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS / 2 });
 * ```
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/**
 * Default cap on a server→client frame body (16 MiB). The protocol puts no
 * cap of its own on server frames; this bounds the memory one frame (or, on
 * WebSocket, one op 9 envelope) may take. A larger frame is a protocol error
 * and ends the connection.
 *
 * @example
 * ```ts
 * import type { AuthToken } from "../protocol/token.ts";
 * declare const url: string, token: AuthToken;
 * new GoimClient({ url, token, maxBody: 4 * DEFAULT_CLIENT_MAX_BODY }); // 64 MiB
 * ```
 */
export const DEFAULT_CLIENT_MAX_BODY = 16 * 1024 * 1024;

/**
 * Reconnect policy; every field is optional in {@linkcode GoimClientOptions}.
 *
 * @example
 * ```ts
 * import type { AuthToken } from "../protocol/token.ts";
 * declare const url: string, token: AuthToken;
 * new GoimClient({
 *   url,
 *   token,
 *   reconnect: { initialDelayMs: 1000, maxDelayMs: 60_000, jitter: "full", stopCodes: [] },
 * });
 * ```
 */
export interface ReconnectOptions extends BackoffOptions {
  /** Reconnect after an unexpected close (default true). */
  enabled: boolean;
  /** Give up after this many consecutive failed attempts (default Infinity). */
  maxAttempts: number;
  /**
   * Op 6 reason codes after which the client does not reconnect. Default:
   * 4001 (auth failed: the same token would fail again) and 4004 (replaced by
   * a newer connection with the same key: reconnecting would kick it, and the
   * two would replace each other forever). Set `[]` to always reconnect.
   */
  stopCodes: readonly number[];
}

/**
 * Options of {@linkcode GoimClient}.
 *
 * @example
 * ```ts
 * const opts: GoimClientOptions = {
 *   url: "wss://push.example.com/sub",
 *   token: { mid: 7, key: "", room_id: "live://1", platform: "web", accepts: [1000] },
 *   heartbeatIntervalMs: 30_000,
 * };
 * new GoimClient(opts);
 * ```
 */
export interface GoimClientOptions {
  /**
   * `tcp://host:3101` (Deno only), `ws://host:3102/sub` or `wss://...`: the
   * comet `connect()` opens. With `nodes`, also the transport (scheme, and
   * the WebSocket path) of the URLs built from a nodes answer, and the
   * fallback while no nodes list could be had.
   */
  url: string | URL;
  /**
   * The op 7 token. The client keeps its own copy, updated by
   * changeRoom/sub/unsub. Its `streams` field is the SDK's: set the
   * `streams` option instead.
   */
  token: AuthToken;
  /** Heartbeat period after auth (default 240 000 ms, goim's 4 min). */
  heartbeatIntervalMs?: number;
  /** Time from connect start to op 8 (default 10 000 ms). */
  authTimeoutMs?: number;
  /** Time a request waits for its reply (default 10 000 ms). */
  requestTimeoutMs?: number;
  /** Reconnect policy (defaults: enabled, 500 ms → 30 s, ×2, equal jitter). */
  reconnect?: Partial<ReconnectOptions>;
  /**
   * Where reconnects find comets (default none: every reconnect goes back to
   * `url`, as before). Logic's `/goim/nodes/weighted` URL or a callback
   * returning comet URLs (./nodes.ts, {@linkcode NodeSource}); it is asked
   * before every reconnect attempt, and the attempt goes to the best-ranked
   * candidate that has not failed since the last successful auth (a killed
   * comet stays listed until its registry record expires). A failed lookup
   * is reported as an `error` event and the last list (else `url`) is used.
   */
  nodes?: NodeSource;
  /** Bound on one nodes lookup (default 5 000 ms). */
  nodesTimeoutMs?: number;
  /** Largest accepted server→client frame body (default 16 MiB). */
  maxBody?: number;
  /** `ver` written into client frames (default 1). */
  ver?: number;
  /** Source of randomness for backoff jitter (default `Math.random`). */
  random?: () => number;
  /** Transport factory (default {@linkcode openTransport}); for tests or custom sockets. */
  transport?: TransportFactory;
  /**
   * Opt in to streams (docs/STREAMS.md, "SDK"): positions, recovery on
   * reconnect, duplicates dropped, gaps filled, acks. `true` takes the
   * defaults of {@linkcode StreamsOptions}. Default off: the connection is a
   * goim one and nothing of this runs.
   */
  streams?: boolean | StreamsOptions;
}

/**
 * Emitted after op 8: the client is connected and authenticated.
 *
 * @example
 * ```ts
 * declare const client: GoimClient;
 * client.on("auth", (a) => console.log(a.reconnected ? "back" : "up", a.token.room_id));
 * ```
 */
export interface AuthEvent {
  /** 0 for `connect()`, else the reconnect attempt that succeeded. */
  attempt: number;
  /** Whether this follows a reconnect. */
  reconnected: boolean;
  /** The token this connection authenticated with. */
  token: AuthToken;
  /** The comet this connection authenticated with. */
  url: string;
}

/**
 * Emitted on every op 3 reply.
 *
 * @example
 * ```ts
 * declare const client: GoimClient;
 * client.on("heartbeat", ({ online }) => console.log("online", online));
 * ```
 */
export interface HeartbeatEvent {
  /** Online count of the client's room (0 when in no room). */
  online: number;
}

/**
 * Emitted when an authenticated connection ended, or a reconnect attempt
 * failed. Not emitted when `connect()` itself rejects.
 *
 * @example
 * ```ts
 * declare const client: GoimClient;
 * client.on("disconnect", (d) => {
 *   if (!d.willReconnect) console.log("gave up:", d.reason ?? d.error.message);
 * });
 * ```
 */
export interface DisconnectEvent {
  /** The server's op 6 reason (or WebSocket close code 4000–4999), if any. */
  reason?: DisconnectReason;
  /** The cause as a typed error (`closed` after `close()`). */
  error: GoimClientError;
  /** Whether a reconnect is scheduled. */
  willReconnect: boolean;
  /** Consecutive failures so far: the number of the next reconnect attempt. */
  attempt: number;
  /** The backoff before that attempt, when one is scheduled. */
  delayMs?: number;
}

/**
 * Emitted when a reconnect attempt starts (after its backoff delay).
 *
 * @example
 * ```ts
 * declare const client: GoimClient;
 * client.on("reconnect", (r) => console.log(`attempt ${r.attempt} after ${r.delayMs} ms`));
 * ```
 */
export interface ReconnectEvent {
  /** 1 for the first attempt after a drop. */
  attempt: number;
  /** The backoff that was waited. */
  delayMs: number;
}

/**
 * The client's events and their payloads.
 *
 * @example
 * ```ts
 * declare const client: GoimClient;
 * const ev: GoimClientEvents["heartbeat"] = await client.once("heartbeat");
 * ```
 */
export interface GoimClientEvents {
  /** Op 8 arrived (first connect and every reconnect). */
  auth: AuthEvent;
  /** A pushed message (one inner frame; op 9 envelopes are unwrapped). */
  message: PushMessage;
  /** An op 3 reply. */
  heartbeat: HeartbeatEvent;
  /** The connection ended or a reconnect attempt failed. */
  disconnect: DisconnectEvent;
  /** A reconnect attempt starts. */
  reconnect: ReconnectEvent;
  /**
   * With `streams`: messages of a stream were lost (not recovered, epoch
   * changed, or a gap the hold bounds gave up on); the app reloads that
   * stream's state.
   */
  streams: StreamsEvent;
  /**
   * Every error that ended a connection or a reconnect attempt (the same
   * error as `disconnect.error`, except `closed`), and errors thrown by
   * listeners, and failed nodes lookups (the attempt then falls back).
   * Listening is optional; a listener error with no `error` listener goes
   * to `reportError`.
   */
  error: unknown;
}

/**
 * Lifecycle state of a {@linkcode GoimClient}.
 *
 * @example
 * ```ts
 * declare const client: GoimClient;
 * declare function showBanner(text: string): void;
 * if (client.state === "reconnecting") showBanner("reconnecting…");
 * ```
 */
export type ClientState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

const utf8 = new TextEncoder();

/**
 * A goim v2 client over raw TCP (Deno) or WebSocket (Deno and browsers).
 *
 * @example
 * ```ts
 * const client = new GoimClient({
 *   url: "ws://127.0.0.1:3102/sub",
 *   token: { mid: 1, key: "", room_id: "live://1000", platform: "web", accepts: [1000] },
 * });
 * client.on("message", (m) => console.log(m.op, new TextDecoder().decode(m.body)));
 * client.on("heartbeat", ({ online }) => console.log("online", online));
 * await client.connect();
 * await client.changeRoom("live://1001");
 * await client.sub([1001]);
 * await client.close();
 * ```
 */
export class GoimClient {
  #url: URL;
  #token: AuthToken;
  #ver: number;
  #maxBody: number;
  #heartbeatIntervalMs: number;
  #authTimeoutMs: number;
  #requestTimeoutMs: number;
  #reconnect: ReconnectOptions;
  #random: () => number;
  #transport: TransportFactory;
  #events: Emitter<GoimClientEvents>;
  #nodes: NodeSource | undefined;
  #nodesTimeoutMs: number;
  #rotation = new NodeRotation();
  /** The last nodes list that resolved. */
  #candidates: URL[] = [];
  /** The comet of the current connection or the last attempt. */
  #target: URL;

  #state: ClientState = "idle";
  #conn: Connection | null = null;
  #opening: Promise<void> | null = null;
  #abort: AbortController | null = null;
  #closing = false;
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #lastOnline: number | undefined;
  #inErrorEmit = false;
  #streams: StreamTracker | null = null;

  /** Validates `options`; nothing connects until {@linkcode GoimClient.connect}. */
  constructor(options: GoimClientOptions) {
    this.#url = typeof options.url === "string" ? new URL(options.url) : new URL(options.url.href);
    this.#target = this.#url;
    this.#token = copyToken(options.token);
    this.#ver = options.ver ?? 1;
    this.#maxBody = options.maxBody ?? DEFAULT_CLIENT_MAX_BODY;
    if (!Number.isInteger(this.#maxBody) || this.#maxBody < 0 || this.#maxBody > 0x7fffffef) {
      throw new RangeError(`maxBody must be an integer in [0, 2147483631], got ${this.#maxBody}`);
    }
    this.#heartbeatIntervalMs = positive(
      "heartbeatIntervalMs",
      options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
    );
    this.#authTimeoutMs = positive(
      "authTimeoutMs",
      options.authTimeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS,
    );
    this.#requestTimeoutMs = positive(
      "requestTimeoutMs",
      options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    );
    this.#reconnect = {
      ...DEFAULT_BACKOFF,
      enabled: true,
      maxAttempts: Infinity,
      stopCodes: [4001, 4004],
      ...options.reconnect,
    };
    this.#random = options.random ?? Math.random;
    this.#transport = options.transport ?? openTransport;
    this.#nodes = options.nodes;
    this.#nodesTimeoutMs = positive(
      "nodesTimeoutMs",
      options.nodesTimeoutMs ?? DEFAULT_NODES_TIMEOUT_MS,
    );
    this.#events = new Emitter<GoimClientEvents>((e) => this.#onListenerError(e));
    if (options.streams) {
      this.#streams = new StreamTracker(options.streams === true ? {} : options.streams, {
        deliver: (m) => this.#events.emit("message", m),
        lost: (ev) => this.#events.emit("streams", ev),
      });
    }
  }

  /** The current lifecycle state. */
  get state(): ClientState {
    return this.#state;
  }

  /** Whether the client is authenticated and can make requests. */
  get connected(): boolean {
    return this.#state === "connected" && this.#conn !== null && this.#conn.ready;
  }

  /** The comet of the current connection, or of the last attempt. */
  get url(): string {
    return this.#target.href;
  }

  /** The online count of the last op 3 reply, `undefined` before the first. */
  get lastOnline(): number | undefined {
    return this.#lastOnline;
  }

  /** The room the next (re)auth joins (updated by {@linkcode GoimClient.changeRoom}). */
  get room(): string {
    return this.#token.room_id;
  }

  /** The ops the next (re)auth accepts (updated by sub/unsub). */
  get accepts(): number[] {
    return [...this.#token.accepts];
  }

  /** A copy of the token the next (re)auth sends. */
  get token(): AuthToken {
    return copyToken(this.#token);
  }

  /**
   * With `streams`: every stream's last delivered position, to persist (for
   * example in `localStorage` from a `message` listener or on `pagehide`)
   * and pass back as `streams.positions`. `{}` without `streams`.
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * declare const storage: { setItem(k: string, v: string): void };
   * storage.setItem("goim.positions", JSON.stringify(client.positions()));
   * ```
   */
  positions(): StreamPositions {
    return this.#streams?.positions() ?? {};
  }

  /**
   * With `streams`: counters since the client was created (duplicates
   * dropped, gaps, syncs, acks sent, messages held now). Zeros without
   * `streams`.
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * console.log("duplicates dropped:", client.streamStats().duplicates);
   * ```
   */
  streamStats(): StreamStats {
    return this.#streams?.stats() ?? zeroStreamStats();
  }

  /**
   * Changes fields of the token used by the next (re)auth, for example a
   * refreshed signed `token`. The current connection is not affected.
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * declare function fetchFreshJwt(): Promise<string>;
   * client.updateToken({ token: await fetchFreshJwt() });
   * ```
   */
  updateToken(patch: Partial<AuthToken>): void {
    this.#token = copyToken({ ...this.#token, ...patch });
  }

  /**
   * Adds a listener; returns a function that removes it.
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * const off = client.on("message", (m) => console.log(m.op));
   * off();
   * ```
   */
  on<K extends keyof GoimClientEvents>(type: K, fn: Listener<GoimClientEvents[K]>): () => void {
    return this.#events.on(type, fn);
  }

  /**
   * Resolves with the next event of `type` (rejects if `signal` aborts first).
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * const { online } = await client.once("heartbeat");
   * ```
   */
  once<K extends keyof GoimClientEvents>(
    type: K,
    options?: { signal?: AbortSignal },
  ): Promise<GoimClientEvents[K]> {
    return this.#events.once(type, options);
  }

  /**
   * Connects and authenticates; resolves after op 8. Rejects with a
   * {@linkcode GoimClientError}: `auth_failed` (its `reason` is the op 6
   * `{code, message}`), `auth_timeout`, `connect_failed`, `disconnected` or
   * `closed`. A failed `connect()` does not reconnect: reconnects start only
   * once a connection was up. Callable again after `close()` or a failure.
   *
   * @example
   * ```ts
   * import { GoimClientError } from "./errors.ts";
   * declare const client: GoimClient;
   * try {
   *   await client.connect();
   * } catch (e) {
   *   if (e instanceof GoimClientError) console.log(e.code, e.reason);
   * }
   * ```
   */
  async connect(): Promise<void> {
    if (this.#state !== "idle" && this.#state !== "closed") {
      throw new Error(`connect() called while ${this.#state}`);
    }
    this.#closing = false;
    this.#attempt = 0;
    this.#state = "connecting";
    this.#abort = new AbortController();
    try {
      await this.#open(0, this.#url);
    } catch (e) {
      if (this.#state === "connecting") this.#state = "closed";
      throw e;
    }
  }

  #open(attempt: number, url: URL): Promise<void> {
    this.#target = url;
    const token = copyToken(this.#token);
    const streams = this.#streams;
    if (streams) token.streams = streams.tokenField(token);
    const opening = Connection.open({
      url,
      token,
      ver: this.#ver,
      maxBody: this.#maxBody,
      authTimeoutMs: this.#authTimeoutMs,
      heartbeatIntervalMs: this.#heartbeatIntervalMs,
      transport: this.#transport,
      signal: this.#abort?.signal,
      onAuth: (conn) => {
        this.#conn = conn;
        streams?.attach({ send: (op, body) => conn.send(op, body) });
        this.#state = "connected";
        this.#attempt = 0;
        this.#rotation.succeeded();
        this.#events.emit("auth", { attempt, reconnected: attempt > 0, token, url: url.href });
      },
      onMessage: (m) => this.#events.emit("message", m),
      onHeartbeat: (online) => {
        this.#lastOnline = online;
        this.#events.emit("heartbeat", { online });
      },
      onStreamFrame: streams ? (f) => streams.frame(f) : undefined,
      onEnd: (conn, end) => this.#onEnd(conn, end),
    }).then(() => {});
    const tracked = opening.finally(() => {
      if (this.#opening === tracked) this.#opening = null;
    });
    this.#opening = tracked;
    return tracked;
  }

  #onEnd(conn: Connection, end: ConnectionEnd): void {
    if (this.#conn === conn) this.#conn = null;
    this.#streams?.detach();
    this.#afterFailure(end.error, end.reason);
  }

  // A connection ended or an attempt failed: reconnect or stop.
  #afterFailure(error: GoimClientError, reason: DisconnectReason | undefined): void {
    const r = this.#reconnect;
    const attempt = ++this.#attempt;
    if (this.#nodes !== undefined) this.#rotation.failed(this.#target);
    const willReconnect = !this.#closing && r.enabled && attempt <= r.maxAttempts &&
      !(reason !== undefined && r.stopCodes.includes(reason.code));
    const delayMs = willReconnect ? backoffDelay(attempt, r, this.#random) : undefined;
    this.#state = willReconnect ? "reconnecting" : "closed";
    if (error.code !== "closed") this.#events.emit("error", error);
    const ev: DisconnectEvent = { error, willReconnect, attempt };
    if (reason) ev.reason = reason;
    if (delayMs !== undefined) ev.delayMs = delayMs;
    this.#events.emit("disconnect", ev);
    if (!willReconnect || this.#closing) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#reconnectAttempt(attempt, delayMs!);
    }, delayMs);
  }

  async #reconnectAttempt(attempt: number, delayMs: number): Promise<void> {
    if (this.#closing) return;
    this.#events.emit("reconnect", { attempt, delayMs });
    if (this.#closing) return;
    try {
      const url = this.#nodes === undefined ? this.#url : await this.#nextNode(this.#nodes);
      if (this.#closing) return;
      await this.#open(attempt, url);
    } catch (e) {
      if (this.#closing) return;
      const error = e instanceof GoimClientError
        ? e
        : new GoimClientError("connect_failed", String(e), { cause: e });
      this.#afterFailure(error, error.reason);
    }
  }

  // The comet a reconnect tries: a fresh list when the source answers, else the last one.
  async #nextNode(source: NodeSource): Promise<URL> {
    try {
      this.#candidates = await resolveNodes(source, this.#url, {
        timeoutMs: this.#nodesTimeoutMs,
        signal: this.#abort?.signal,
      });
    } catch (e) {
      if (!this.#closing) this.#events.emit("error", e);
    }
    return this.#rotation.pick(this.#candidates.length > 0 ? this.#candidates : [this.#url]);
  }

  /**
   * Stops reconnecting and closes the connection; resolves once every socket
   * and timer of the client is released. Pending requests reject with code
   * `closed`. Idempotent.
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * await client.close();
   * client.state; // "closed"
   * ```
   */
  async close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#abort?.abort();
    const conn = this.#conn;
    if (conn) await conn.close(new GoimClientError("closed", "closed by the client"));
    while (this.#opening) await this.#opening.catch(() => {});
    this.#conn = null;
    this.#state = "closed";
  }

  #ready(): Connection {
    const conn = this.#conn;
    if (!conn || !conn.ready || this.#state !== "connected") {
      throw new GoimClientError("not_connected", `not connected (state: ${this.#state})`);
    }
    return conn;
  }

  async #request(op: number, body: Uint8Array, replyOps: readonly number[]): Promise<void> {
    await this.#ready().request(op, body, replyOps, this.#requestTimeoutMs);
  }

  /**
   * Moves to another room (op 12 → 13); `""` leaves the room. On success the
   * room is remembered for reconnects. Rejects when not connected, on
   * timeout, or if the connection drops first.
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * await client.changeRoom("live://1001");
   * client.room; // "live://1001"
   * ```
   */
  async changeRoom(room: string): Promise<void> {
    await this.#request(Op.ChangeRoom, utf8.encode(room), [Op.ChangeRoomReply]);
    this.#token.room_id = room;
  }

  /**
   * Accepts more business ops (op 14 → 15); remembered for reconnects.
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * await client.sub([1001, 1002]);
   * ```
   */
  async sub(ops: readonly number[]): Promise<void> {
    checkOps(ops);
    await this.#request(Op.Sub, formatOps(ops), [Op.SubReply]);
    const set = new Set(this.#token.accepts);
    for (const op of ops) set.add(op);
    this.#token.accepts = [...set];
  }

  /**
   * Stops accepting business ops (op 16 → 17); remembered for reconnects.
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * await client.unsub([1002]);
   * ```
   */
  async unsub(ops: readonly number[]): Promise<void> {
    checkOps(ops);
    await this.#request(Op.Unsub, formatOps(ops), [Op.UnsubReply]);
    const drop = new Set(ops);
    this.#token.accepts = this.#token.accepts.filter((op) => !drop.has(op));
  }

  /**
   * Sends an upstream message (op 4), resolved when the server echoes op 4
   * with an empty body (goim's and this server's answer; op 5, which goim
   * defines but never sends, is accepted too).
   *
   * @example
   * ```ts
   * declare const client: GoimClient;
   * await client.send("hello");
   * ```
   */
  async send(body: Uint8Array | string): Promise<void> {
    const bytes = typeof body === "string" ? utf8.encode(body) : body;
    await this.#request(Op.SendMsg, bytes, [Op.SendMsgReply, Op.SendMsg]);
  }

  #onListenerError(error: unknown): void {
    if (this.#events.listenerCount("error") > 0 && !this.#inErrorEmit) {
      this.#inErrorEmit = true;
      try {
        this.#events.emit("error", error);
      } finally {
        this.#inErrorEmit = false;
      }
      return;
    }
    const g = globalThis as { reportError?: (e: unknown) => void };
    if (typeof g.reportError === "function") g.reportError(error);
    else {
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}

function copyToken(t: AuthToken): AuthToken {
  const out: AuthToken = {
    mid: t.mid,
    key: t.key,
    room_id: t.room_id,
    platform: t.platform,
    accepts: [...t.accepts],
  };
  if (t.token !== undefined) out.token = t.token;
  return out;
}

function positive(name: string, v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`${name} must be > 0, got ${v}`);
  return v;
}

function checkOps(ops: readonly number[]): void {
  for (const op of ops) {
    if (!isInt32(op)) {
      throw new RangeError(`operation ${op} is not an int32`);
    }
  }
}

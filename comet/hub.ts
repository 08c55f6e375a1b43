/**
 * The transport-independent connection lifecycle (docs/PROTOCOL.md,
 * "Connection lifecycle"; goim internal/comet/operation.go and the shared half of
 * server_tcp.go / server_websocket.go): handshake, auth through logic, the
 * client's operations, replacement of a key's older connection, timeouts
 * and the clean-up when a socket goes away.
 *
 * Transports (./tcp.ts, ./websocket.ts) create a {@linkcode Channel}, hand
 * it to {@linkcode ConnectionHub.accept}, feed it frames through
 * {@linkcode ConnectionHub.frame} and report protocol errors; the channel
 * reports its socket's close through {@linkcode ConnectionHub.closed}.
 *
 * Timers: none per connection. Each channel carries one deadline
 * (handshake, then idle, then close grace), plus its token's expiry when
 * logic sent one (ConnectReply field 104: op 6, reason 4001), and
 * {@linkcode ConnectionHub.sweep}, run by the comet on one interval, checks them all.
 *
 * Auth scope: logic's Connect reply may restrict what a connection can
 * change later (ConnectReply fields 100–103, see {@linkcode scopeOf}). A
 * ChangeRoom (op 12) to a room outside it is not applied and its op 13
 * echoes the room the connection is still in; a Sub (op 14) applies only
 * the allowed ops and its op 15 lists those. Neither closes the
 * connection. Unrestricted connections (goim's logic, auth mode none)
 * behave exactly as in goim: replies echo the request.
 *
 * Per-connection bounds (comet.limits.*): at most max_ops accepted
 * operations, whether from the Connect reply or op 14, and client frames
 * at most frame_rate per second after a burst of frame_burst (counted by
 * the transport on arrival, see {@linkcode ConnectionHub.admit}). Past either,
 * op 6 reason 4007 and close, see {@linkcode ConnectionHub.limitExceeded}.
 *
 * Streams (docs/STREAMS.md): a Connect reply with field 105 gives the
 * channel a stream state before it joins its bucket; after op 8 the
 * recovery of its own streams starts, and StreamAck / StreamSync from it,
 * and its room changes, go to {@linkcode CometStreams} (./streams.ts).
 * Stream ops from any other connection are unknown ops, as in goim.
 *
 * @module
 */

import type { Config } from "../infra/config.ts";
import type { Logger } from "../infra/log.ts";
import type { LogicApi } from "../proto/api.ts";
import type { ConnectReply } from "../proto/messages.ts";
import { RpcError } from "../proto/grpc.ts";
import type { StreamsApi } from "../proto/streams.ts";
import {
  type DisconnectReason,
  encodeHeartbeatReply,
  formatOps,
  type Frame,
  Op,
  parseOps,
  ProtocolError,
  ReasonCode,
  STREAM_OPS_FIRST,
} from "../protocol/mod.ts";
import { fnv1a32Utf16 } from "../infra/hash.ts";
import { Bucket } from "./bucket.ts";
import {
  type Channel,
  type ChannelHost,
  type ChannelScope,
  ChannelState,
  type QueuePolicy,
} from "./channel.ts";
import type { Flusher } from "./flusher.ts";
import { type CometMetrics, type LimitName, TRANSPORT_INDEX } from "./metrics.ts";
import { OnlineCounts } from "./online.ts";
import { ChannelStreams, CometStreams } from "./streams.ts";

/** Time a channel closed by the server gets to flush its op 6 before it is cut. */
export const CLOSE_GRACE_MS = 2000;
/** Close grace of a slow consumer: it is not reading, so do not wait long. */
export const SLOW_CLOSE_GRACE_MS = 500;
/** logic.Disconnect calls in flight at once (the rest wait in a queue). */
export const MAX_DISCONNECTS_IN_FLIGHT = 64;

/** What {@linkcode ConnectionHub} is built from. */
export interface ConnectionHubOptions {
  /** This comet's id (cfg.node.id), the `server` of every logic call. */
  id: string;
  /** The configuration (comet.* keys). */
  config: Config;
  /** What the comet calls on logic. */
  logic: LogicApi;
  /** Logger. */
  log: Logger;
  /** Metrics. */
  metrics: CometMetrics;
  /** The write scheduler. */
  flusher: Flusher;
  /** logic's Streams service or client; absent: opted-in connections get `unavailable`. */
  streams?: StreamsApi;
}

const utf8Decoder = new TextDecoder();
const utf8Encoder = new TextEncoder();

/**
 * The auth scope of a Connect reply, or null when it restricts nothing.
 * A `*_restricted` flag that is false or absent (goim's logic never sets
 * it) leaves that side unrestricted whatever the list holds; a true flag
 * makes the list the whole allow-list (empty = nothing allowed).
 *
 * @example
 * ```ts
 * import { scopeOf } from "./hub.ts";
 * scopeOf({ mid: 1, key: "k", roomID: "", accepts: [], heartbeat: 0 }); // null
 * scopeOf({
 *   mid: 1, key: "k", roomID: "", accepts: [], heartbeat: 0,
 *   allowed_rooms: ["live://*"], rooms_restricted: true,
 * }); // { rooms: ["live://*"], ops: null }
 * ```
 */
export function scopeOf(reply: ConnectReply): ChannelScope | null {
  const rooms = reply.rooms_restricted === true ? (reply.allowed_rooms ?? []) : null;
  const ops = reply.ops_restricted === true ? new Set(reply.allowed_ops ?? []) : null;
  return rooms === null && ops === null ? null : { rooms, ops };
}

/**
 * Whether room key `room` is allowed by `patterns` (an entry ending in `*`
 * matches by prefix, as logic's `room` claim). `""` (leave every room) is
 * always allowed, as it is at Connect.
 *
 * @example
 * ```ts
 * import { roomAllowed } from "./hub.ts";
 * roomAllowed(["live://*", "chat://1"], "live://9"); // true
 * roomAllowed(["live://*", "chat://1"], "chat://2"); // false
 * ```
 */
export function roomAllowed(patterns: readonly string[], room: string): boolean {
  if (room === "") return true;
  for (const p of patterns) {
    if (p.endsWith("*") ? room.startsWith(p.slice(0, -1)) : p === room) return true;
  }
  return false;
}

function isWireError(e: unknown): e is { code: string; reason: DisconnectReason } {
  return e instanceof Error && typeof (e as { code?: unknown }).code === "string" &&
    typeof (e as { reason?: unknown }).reason === "object";
}

function abort(ch: Channel): void {
  ch.abort();
}

function errorText(e: unknown): string {
  if (e instanceof RpcError) return e.details || e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/**
 * Every channel of the comet and what happens to them.
 *
 * @example
 * ```ts
 * import type { Frame } from "../protocol/mod.ts";
 * import type { Channel } from "./channel.ts";
 * declare const { id, config, logic, log, metrics, flusher }: ConnectionHubOptions;
 * declare const ch: Channel, frame: Frame;
 * const hub = new ConnectionHub({ id, config, logic, log, metrics, flusher });
 * hub.accept(ch);
 * const p = hub.frame(ch, frame); // a promise while auth or op 4 is in progress
 * ```
 */
export class ConnectionHub implements ChannelHost {
  /** This comet's id. */
  readonly id: string;
  /** The buckets, indexed by `fnv1a32Utf16(key) % count`. */
  readonly buckets: readonly Bucket[];
  /** Room member counts, local and cluster-wide. */
  readonly online: OnlineCounts = new OnlineCounts();
  /** Channels before auth completes (handshake deadline). */
  readonly pending: Set<Channel> = new Set();
  /** Channels the server is closing (close deadline). */
  readonly closing: Set<Channel> = new Set();
  /** Authenticated channels per client IP. */
  readonly ips: Map<string, number> = new Map();
  /** Authenticated channels per transport index (tcp, ws, wss). */
  readonly byTransport: number[] = [0, 0, 0];
  /** Authenticated channels. */
  connections = 0;
  /** Open sockets of every state. */
  sockets = 0;
  /** Set by shutdown: new connections are turned away. */
  shuttingDown = false;

  /** Largest client frame body (protocol.max_body). */
  readonly maxBody: number;
  /** Distinct operations one channel may accept (comet.limits.max_ops). */
  readonly maxOps: number;
  /** Bytes of frames a channel may hold back while logic answers (comet.limits.input_buffer). */
  readonly inputBufferBytes: number;
  // Frame-rate bound as GCRA: ms one frame costs (0 = unlimited), and how
  // far ahead of now a channel's rateAt may run (the burst, with half a
  // frame of slack so float sums never refuse the last frame of a burst).
  readonly #frameCostMs: number;
  readonly #frameSlackMs: number;
  readonly #frameRateText: string;
  /** {@linkcode ChannelHost}: the send queue bound in bytes. */
  readonly maxQueueBytes: number;
  /** {@linkcode ChannelHost}: the overflow policy. */
  readonly policy: QueuePolicy;
  /** {@linkcode ChannelHost}: metrics. */
  readonly metrics: CometMetrics;
  /** {@linkcode ChannelHost}: close grace. */
  readonly closeGraceMs: number = CLOSE_GRACE_MS;
  /** {@linkcode ChannelHost}: bytes queued over every channel, not yet handed to a socket. */
  queuedBytes = 0;
  /** Recoveries, duplicate filter and acks of opted-in channels (./streams.ts). */
  readonly streams: CometStreams;

  readonly #logic: LogicApi;
  readonly #log: Logger;
  readonly #flusher: Flusher;
  /** comet.handshake_timeout in ms. */
  readonly handshakeMs: number;
  readonly #idleMs: number;
  readonly #routeMs: number;
  // logic.Disconnect calls waiting for a slot: [mid, key] pairs, consumed from #disconnectHead.
  #disconnectQueue: Array<[number, string]> = [];
  #disconnectHead = 0;
  #disconnectsInFlight = 0;
  #drainWaiters: Array<() => void> = [];
  #closedWaiters: Array<() => void> = [];

  /** Creates the buckets; nothing runs until transports call in. */
  constructor(opts: ConnectionHubOptions) {
    const c = opts.config.comet;
    this.id = opts.id;
    this.#logic = opts.logic;
    this.#log = opts.log;
    this.metrics = opts.metrics;
    this.#flusher = opts.flusher;
    this.maxBody = opts.config.protocol.max_body;
    this.maxOps = c.limits.max_ops;
    this.inputBufferBytes = c.limits.input_buffer;
    this.#frameCostMs = c.limits.frame_rate > 0 ? 1000 / c.limits.frame_rate : 0;
    this.#frameSlackMs = (c.limits.frame_burst - 0.5) * this.#frameCostMs;
    this.#frameRateText = `more than ${c.limits.frame_burst} frames at once or ` +
      `${c.limits.frame_rate} per second (comet.limits.frame_rate)`;
    this.maxQueueBytes = c.send_queue.max_bytes;
    this.policy = c.send_queue.policy;
    this.handshakeMs = c.handshake_timeout;
    this.#idleMs = c.heartbeat_interval * c.heartbeat_max;
    this.#routeMs = c.route_heartbeat_interval;
    const buckets: Bucket[] = [];
    for (let i = 0; i < c.bucket.count; i++) buckets.push(new Bucket(this.online));
    this.buckets = buckets;
    this.streams = new CometStreams({
      api: opts.streams,
      config: opts.config,
      metrics: opts.metrics,
      log: opts.log,
      host: this,
    });
  }

  /** Period at which {@linkcode ConnectionHub.sweep} should run: fine enough for the shortest deadline. */
  get sweepIntervalMs(): number {
    const shortest = Math.min(
      this.handshakeMs,
      this.#idleMs,
      CLOSE_GRACE_MS,
      this.streams.shortestDeadlineMs,
    );
    return Math.max(10, Math.min(1000, Math.floor(shortest / 4)));
  }

  /** The bucket of `key`. */
  bucket(key: string): Bucket {
    return this.buckets[fnv1a32Utf16(key) % this.buckets.length];
  }

  /** Resolves once what is queued now has been handed to the sockets (Flusher.written). */
  written(): Promise<void> {
    return this.#flusher.written();
  }

  /** A key push was queued for `ch`: write it ahead of a fan-out pass in progress (Flusher.expedite). */
  expedite(ch: Channel): void {
    this.#flusher.expedite(ch);
  }

  /** {@linkcode ChannelHost}: queues a channel for the flusher. */
  schedule(ch: Channel): void {
    this.#flusher.schedule(ch);
  }

  /** A transport accepted a socket: start its handshake clock. */
  accept(ch: Channel): void {
    this.sockets++;
    if (this.shuttingDown) {
      this.end(ch, { code: ReasonCode.ShuttingDown, message: "server shutting down" }, "shutdown");
      return;
    }
    ch.deadline = performance.now() + this.handshakeMs;
    this.pending.add(ch);
  }

  /**
   * Handles one frame from the client. Returns a promise while the frame's
   * handling waits on logic (auth, op 4): the transport must hold back the
   * connection's later frames until it settles, so replies keep their order.
   * `f` may be a reused cursor: anything kept past this call is copied.
   */
  frame(ch: Channel, f: Frame): Promise<void> | undefined {
    const state = ch.state;
    if (state === ChannelState.Handshake) {
      // docs/PROTOCOL.md, "Operations": frames other than op 7 before auth are ignored.
      if (f.op === Op.Auth) return this.#auth(ch, f.ver, f.seq, f.body.slice());
      return undefined;
    }
    if (state !== ChannelState.Open) return undefined;
    // Stream ops of an opted-in channel; never awaited, so the socket keeps reading.
    if (f.op >= STREAM_OPS_FIRST && ch.streams !== null && this.streams.frame(ch, f)) {
      return undefined;
    }
    switch (f.op) {
      case Op.Heartbeat:
        this.#heartbeat(ch, f.ver, f.seq);
        return undefined;
      case Op.ChangeRoom: {
        const body = f.body;
        const roomId = utf8Decoder.decode(body);
        const rooms = ch.scope?.rooms;
        if (rooms != null && !roomAllowed(rooms, roomId)) {
          // Refused: the connection stays where it is and op 13 names that
          // room, so the reply differs from the request (no error op exists
          // for op 12, and closing would punish a client for a stale UI).
          this.#denied(ch, Op.ChangeRoom, { room: roomId });
          const current = ch.room === null ? undefined : utf8Encoder.encode(ch.room.id);
          ch.replyFrame(f.ver, Op.ChangeRoomReply, f.seq, current);
          return undefined;
        }
        const before = ch.room;
        ch.bucket!.changeRoom(ch, roomId);
        ch.replyFrame(f.ver, Op.ChangeRoomReply, f.seq, body);
        if (ch.streams !== null && ch.room !== before) this.streams.roomChanged(ch, roomId);
        return undefined;
      }
      case Op.Sub:
      case Op.Unsub: {
        const body = f.body;
        let ops: number[];
        try {
          ops = parseOps(body);
        } catch (e) {
          this.protocolError(ch, e);
          return undefined;
        }
        if (f.op === Op.Unsub) {
          ch.unwatch(ops);
          ch.replyFrame(f.ver, Op.UnsubReply, f.seq, body);
          return undefined;
        }
        const allowed = ch.scope?.ops;
        if (allowed != null && !ops.every((op) => allowed.has(op))) {
          // Only the allowed subset is added; op 15 lists what was applied
          // (the request's bytes whenever nothing was refused).
          const applied = ops.filter((op) => allowed.has(op));
          this.#denied(ch, Op.Sub, { ops: ops.filter((op) => !allowed.has(op)) });
          if (!ch.watch(applied, this.maxOps)) {
            this.#tooManyOps(ch);
            return undefined;
          }
          ch.replyFrame(f.ver, Op.SubReply, f.seq, formatOps(applied));
          return undefined;
        }
        if (!ch.watch(ops, this.maxOps)) {
          this.#tooManyOps(ch);
          return undefined;
        }
        ch.replyFrame(f.ver, Op.SubReply, f.seq, body);
        return undefined;
      }
      default:
        // op 4 and every op not handled above (op 7 again, reserved and
        // unknown ops) go to logic, as goim's operation.go does; the echo
        // tells the client the comet took it (docs/PROTOCOL.md).
        if (f.op === Op.Auth) {
          // Auth again: echoed like goim, but its body (a credential) is not
          // handed on to logic and its webhook.
          ch.replyFrame(f.ver, f.op, f.seq);
          return undefined;
        }
        return this.#receive(ch, f.ver, f.op, f.seq, f.body.slice());
    }
  }

  /**
   * Counts one client frame against comet.limits.frame_rate / frame_burst,
   * on arrival (`now`: when its bytes were read), whatever its op or the
   * channel's state. Returns false once the channel is over the limit: it
   * is then closing with op 6 4007 and the frame must be dropped.
   *
   * A token bucket kept as one number per channel (GCRA): `rateAt` is when
   * the bucket would be full again; each frame pushes it one frame's cost
   * further, and a frame that would push it more than the burst ahead of
   * now is refused. No timer, and a fresh channel (0) starts full.
   */
  admit(ch: Channel, now: number): boolean {
    const cost = this.#frameCostMs;
    if (cost === 0) return true;
    const at = ch.rateAt > now ? ch.rateAt : now;
    if (at - now > this.#frameSlackMs) {
      this.limitExceeded(ch, "frame_rate", this.#frameRateText);
      return false;
    }
    ch.rateAt = at + cost;
    return true;
  }

  /**
   * A channel hit a per-connection bound: op 6 with reason 4007 and
   * `message`, then close; counted in limit_closes_total{limit}.
   */
  limitExceeded(ch: Channel, limit: LimitName, message: string): void {
    if (ch.state >= ChannelState.Closing) return;
    this.metrics.limitCloses.inc({ limit });
    this.#log.debug("connection over a limit", { ip: ch.ip, key: ch.key, limit, message });
    this.end(ch, { code: ReasonCode.LimitExceeded, message }, "limit_exceeded");
  }

  #tooManyOps(ch: Channel): void {
    this.limitExceeded(
      ch,
      "max_ops",
      `more than ${this.maxOps} operations (comet.limits.max_ops)`,
    );
  }

  /**
   * Input broke the wire contract: op 6 with the reason, then close. Any
   * error with a string `code` and a `reason` counts (ProtocolError, and
   * the WebSocket layer's own).
   */
  protocolError(ch: Channel, err: unknown): void {
    if (err instanceof ProtocolError || isWireError(err)) {
      this.metrics.protocolErrors.inc({ code: err.code });
      this.end(ch, err.reason, "protocol_error");
      return;
    }
    this.#log.error("connection handler failed", { error: err });
    this.end(ch, { code: ReasonCode.ServerError, message: "internal server error" }, "error");
  }

  /**
   * Starts a server-decided close: op 6 with `reason` goes out after what
   * is queued, then the socket closes (at the latest after `graceMs`).
   */
  end(ch: Channel, reason: DisconnectReason, label: string, graceMs = CLOSE_GRACE_MS): void {
    if (ch.state >= ChannelState.Closing) return;
    this.pending.delete(ch);
    ch.end(reason, label, graceMs);
    this.closing.add(ch);
  }

  /** A close without op 6 (client close frame, refused upgrade); see Channel.endQuietly. */
  endQuietly(ch: Channel, label: string, last?: Uint8Array): void {
    if (ch.state >= ChannelState.Closing) return;
    this.pending.delete(ch);
    ch.endQuietly(label, last);
    this.closing.add(ch);
  }

  /** {@linkcode ChannelHost}: a send queue overflowed under policy `disconnect`. */
  slowConsumer(ch: Channel): void {
    if (ch.state >= ChannelState.Closing) return;
    this.metrics.slowConsumerDisconnects.inc();
    this.#log.info("slow consumer disconnected", {
      key: ch.key,
      transport: ch.transport,
      inflight: ch.inflight,
    });
    this.end(
      ch,
      { code: ReasonCode.SlowConsumer, message: "slow consumer" },
      "slow_consumer",
      SLOW_CLOSE_GRACE_MS,
    );
  }

  /** {@linkcode ChannelHost}: a socket closed (either side). Runs once per channel. */
  closed(ch: Channel): void {
    if (ch.state === ChannelState.Closed) return;
    ch.state = ChannelState.Closed;
    this.sockets--;
    this.pending.delete(ch);
    this.closing.delete(ch);
    ch.clearQueue();
    const b = ch.bucket;
    if (b !== null) {
      b.del(ch);
      if (ch.streams !== null) this.streams.closed(ch);
      this.connections--;
      this.byTransport[TRANSPORT_INDEX[ch.transport]]--;
      const n = (this.ips.get(ch.ip) ?? 1) - 1;
      if (n > 0) this.ips.set(ch.ip, n);
      else this.ips.delete(ch.ip);
      // A replaced channel's key lives on in its successor on this comet:
      // disconnecting it would delete the successor's route in logic.
      if (!ch.replaced) this.#disconnect(ch.mid, ch.key);
    }
    this.metrics.disconnects.inc({ reason: ch.closeReason || "client" });
    if (this.sockets === 0) this.#wake(this.#closedWaiters);
  }

  /** Checks every deadline: handshake, idle, token expiry, close grace. */
  sweep(now = performance.now()): void {
    for (const ch of this.pending) {
      if (now >= ch.deadline) {
        this.metrics.handshakeTimeouts.inc();
        this.end(ch, {
          code: ReasonCode.HandshakeTimeout,
          message: `no auth frame within ${this.handshakeMs} ms`,
        }, "handshake_timeout");
      }
    }
    const expire = (ch: Channel) => this.#expire(ch, now);
    for (const b of this.buckets) b.each(expire);
    for (const ch of this.closing) if (ch.overdue(now)) ch.abort();
    this.streams.sweep(now);
  }

  // An open channel past its idle deadline or its token's expiry starts closing.
  #expire(ch: Channel, now: number): void {
    if (ch.state !== ChannelState.Open) return;
    if (now >= ch.deadline) {
      this.metrics.idleTimeouts.inc();
      this.end(ch, {
        code: ReasonCode.IdleTimeout,
        message: `no heartbeat within ${this.#idleMs} ms`,
      }, "idle_timeout");
    } else if (ch.expiresAt !== 0 && now >= ch.expiresAt) {
      this.metrics.limitCloses.inc({ limit: "token_expired" });
      this.end(ch, { code: ReasonCode.AuthFailed, message: "token expired" }, "token_expired");
    }
  }

  /** Ends every open channel with `reason` (shutdown). */
  endAll(reason: DisconnectReason, label: string, graceMs: number): void {
    for (const ch of [...this.pending]) this.end(ch, reason, label, graceMs);
    const end = (ch: Channel) => this.end(ch, reason, label, graceMs);
    for (const b of this.buckets) b.each(end);
  }

  /** Closes every socket now, flushed or not. */
  abortAll(): void {
    for (const ch of [...this.pending]) ch.abort();
    for (const ch of [...this.closing]) ch.abort();
    for (const b of this.buckets) b.each(abort);
  }

  /** Resolves when no socket is open. */
  allClosed(): Promise<void> {
    if (this.sockets === 0) return Promise.resolve();
    return new Promise((r) => this.#closedWaiters.push(r));
  }

  /** Resolves when every logic.Disconnect call has settled. */
  disconnectsDrained(): Promise<void> {
    if (this.#disconnectsInFlight === 0 && this.#disconnectHead === this.#disconnectQueue.length) {
      return Promise.resolve();
    }
    return new Promise((r) => this.#drainWaiters.push(r));
  }

  async #auth(ch: Channel, ver: number, seq: number, token: Uint8Array): Promise<void> {
    ch.state = ChannelState.Authing;
    let reply: ConnectReply;
    try {
      reply = await this.#logic.Connect({ server: this.id, cookie: "", token });
    } catch (e) {
      this.metrics.authFailures.inc();
      const message = errorText(e) || "auth failed";
      this.#log.debug("auth failed", { ip: ch.ip, error: message });
      if (ch.state === ChannelState.Authing) {
        this.end(ch, { code: ReasonCode.AuthFailed, message }, "auth_failed");
      }
      return;
    }
    const mid = reply.mid ?? 0;
    const key = reply.key || crypto.randomUUID();
    if (ch.state !== ChannelState.Authing) {
      // Timed out or went away while logic was deciding: logic holds a route now.
      this.#disconnect(mid, key);
      return;
    }
    if (this.shuttingDown) {
      this.end(ch, { code: ReasonCode.ShuttingDown, message: "server shutting down" }, "shutdown");
      this.#disconnect(mid, key);
      return;
    }
    this.pending.delete(ch);
    ch.mid = mid;
    ch.key = key;
    ch.scope = scopeOf(reply);
    if (!ch.watch(reply.accepts ?? [], this.maxOps)) {
      // Refused rather than truncated: which ops to drop is not ours to
      // pick, and a client told 4007 at once beats one that silently
      // misses pushes.
      this.#tooManyOps(ch);
      this.#disconnect(mid, key);
      return;
    }
    ch.state = ChannelState.Open;
    const now = performance.now();
    ch.deadline = now + this.#idleMs;
    // A token's expiry is a second deadline, checked by the same sweep.
    const ttl = reply.token_expires_in_ms ?? 0;
    ch.expiresAt = ttl > 0 ? now + ttl : 0;
    ch.routeAt = now + this.#routeDelay();
    // Before put: the room counts its opted-in members.
    if (reply.streams === true) ch.streams = new ChannelStreams(mid, reply.roomID ?? "");
    const old = this.bucket(key).put(ch, reply.roomID ?? "");
    this.connections++;
    this.byTransport[TRANSPORT_INDEX[ch.transport]]++;
    this.ips.set(ch.ip, (this.ips.get(ch.ip) ?? 0) + 1);
    ch.replyFrame(ver, Op.AuthReply, seq);
    if (ch.streams !== null) this.streams.connected(ch, reply.recover ?? []);
    if (old !== undefined && old !== ch) {
      old.replaced = true;
      this.end(old, {
        code: ReasonCode.Replaced,
        message: "replaced by a newer connection with the same key",
      }, "replaced");
    }
  }

  /** A request the auth scope refused (wholly or in part): counted, logged at debug. */
  #denied(ch: Channel, op: number, detail: Record<string, unknown>): void {
    this.metrics.scopeDenied.inc({ op: String(op) });
    this.#log.debug("refused by the auth scope", { key: ch.key, mid: ch.mid, op, ...detail });
  }

  #heartbeat(ch: Channel, ver: number, seq: number): void {
    const now = performance.now();
    ch.deadline = now + this.#idleMs;
    const room = ch.room;
    ch.reply(encodeHeartbeatReply(ver, seq, room === null ? 0 : this.online.count(room.id)));
    if (now >= ch.routeAt) {
      ch.routeAt = now + this.#routeDelay();
      this.#logic.Heartbeat({ mid: ch.mid, key: ch.key, server: this.id }).catch((e) =>
        this.#log.warn("logic Heartbeat failed", { key: ch.key, error: errorText(e) })
      );
    }
  }

  async #receive(ch: Channel, ver: number, op: number, seq: number, body: Uint8Array) {
    this.metrics.upstreamMessages.inc();
    try {
      await this.#logic.Receive({ mid: ch.mid, proto: { ver, op, seq, body } });
    } catch (e) {
      // goim acknowledges anyway (its "TODO ack ok&failed"): the echo means
      // received by the comet, not handled by logic.
      this.#log.warn("logic Receive failed", { key: ch.key, error: errorText(e) });
    }
    // goim's binary answers with the request's own op (4 for SendMsg, not
    // the op 5 its constants suggest), an empty body, ver and seq kept.
    ch.replyFrame(ver, op, seq);
  }

  // goim picks a random 10–30 min per connection so that refreshes of
  // connections made together spread out. Here: ¾ to 1× the configured
  // interval, never later than it (it must stay below logic.route_ttl).
  #routeDelay(): number {
    return this.#routeMs * (0.75 + 0.25 * Math.random());
  }

  #disconnect(mid: number, key: string): void {
    this.#disconnectQueue.push([mid, key]);
    this.#pumpDisconnects();
  }

  #pumpDisconnects(): void {
    while (
      this.#disconnectsInFlight < MAX_DISCONNECTS_IN_FLIGHT &&
      this.#disconnectHead < this.#disconnectQueue.length
    ) {
      const [mid, key] = this.#disconnectQueue[this.#disconnectHead++];
      this.#disconnectsInFlight++;
      this.#logic.Disconnect({ mid, key, server: this.id }).catch((e) =>
        this.#log.warn("logic Disconnect failed", { key, error: errorText(e) })
      ).finally(() => {
        this.#disconnectsInFlight--;
        this.#pumpDisconnects();
      });
    }
    if (this.#disconnectHead === this.#disconnectQueue.length) {
      this.#disconnectQueue = [];
      this.#disconnectHead = 0;
      if (this.#disconnectsInFlight === 0) this.#wake(this.#drainWaiters);
    }
  }

  #wake(waiters: Array<() => void>): void {
    const ws = waiters.splice(0);
    for (const w of ws) w();
  }
}

/**
 * The comet's side of streams (docs/STREAMS.md): what an opted-in
 * connection gets beyond goim — its pushes wrapped as `StreamMsg` frames,
 * recovery on connect, on `StreamSync` and after a room change, duplicate
 * positions dropped, ack-requested pushes re-sent until acked, and acks
 * reported to logic.
 *
 * Opt-in is per connection (ConnectReply field 105): such a channel has a
 * {@linkcode ChannelStreams} in `Channel.streams`; every other channel keeps
 * `null` there and pays that null check, nothing else (a room without an
 * opted-in member runs the plain fan-out loop: `Room.streamMembers`; so
 * does a broadcast on a comet without one: `CometStreams.connections`).
 *
 * Recovery. The connection's own streams are `room:<room>` (in a room) and
 * `mid:<mid>` (mid ≠ 0). The comet asks logic's `Recover` for the positions
 * the client named (the token's `recover`, field 106, or a `StreamSync`)
 * and for the state of its other own streams, and HOLDS every push to the
 * channel while the call is out (in order, within comet.send_queue.max_bytes
 * and its policy, see `Channel.push`). Then, in this order: `StreamState`,
 * the replayed entries (`StreamMsg` with flag Replayed, plus Ack when the
 * entry asked for acks), the held pushes minus what the replay covered.
 * A call that fails or outlives `streams.recover.timeout` answers
 * `recovered: false, reason: "unavailable"`: named streams with the
 * client's own epoch and position (it keeps them: a later gap makes it
 * sync), the others with epoch "" and position 0. Other entries a client
 * names (not its own streams) are ignored.
 *
 * A replay is cut to what fits in half of comet.send_queue.max_bytes (at
 * least one entry per stream): `replayed` in `StreamState` says how many
 * follow, and a client still below `pos` after them syncs again from where
 * it is. One sync is in flight per connection and one may wait; a third
 * closes the connection (op 6, 4007, `limit_closes_total{limit="stream_sync"}`).
 *
 * Duplicates. Per connection and own stream the comet keeps the epoch and
 * the last position sent: a push at or below it in the same epoch (a queue
 * redelivery) is dropped, a room batch that overlaps it is sent from the
 * first new position, a new epoch passes and resets it.
 *
 * Acks. An ack-requested push to an opted-in channel is tracked by push id
 * (at most comet.streams.max_unacked; past it the oldest is forgotten) and
 * re-sent with flag Resent after comet.streams.ack_timeout, at most
 * comet.streams.ack_retries times. A `StreamAck` untracks the ids this
 * channel holds (others are ignored and counted) and reports them to logic
 * (`Streams.Acks`) in batches: one call per {@linkcode ACK_BATCH_MS} or
 * {@linkcode MAX_ACKS_PER_CALL} acks, one call in flight, at most
 * {@linkcode MAX_ACK_BACKLOG} waiting (more are dropped and counted). A
 * failed call drops its acks (counted, logged at most every 10 s): the
 * push status stays pending. Timers: recovery deadlines and re-sends are
 * checked by the hub's sweep (`ConnectionHub.sweep`), so they fire up to
 * one sweep interval late; the only timer here is the ack batch's.
 *
 * @module
 */

import type { Config } from "../infra/config.ts";
import { errorMessage, type Logger, LogThrottle } from "../infra/log.ts";
import type { StreamAckMsg, StreamPositionMsg, StreamResult } from "../proto/messages.ts";
import { MAX_ACKS_PER_CALL, type StreamsApi } from "../proto/streams.ts";
import {
  type Batch,
  batchFromFrames,
  encodeFrame,
  encodeStreamState,
  type Frame,
  HEADER_LEN,
  isBusinessOp,
  isEpoch,
  isPushId,
  isStreamStateReason,
  MAX_POS,
  Op,
  parseStreamAck,
  parseStreamSync,
  PUSH_VER,
  readU32,
  StreamFlag,
  StreamKind,
  type StreamMsgFields,
  streamMsgLength,
  type StreamRecoverEntry,
  type StreamStateEntry,
  type StreamStateReason,
  writeHeader,
  writeStreamMsg,
} from "../protocol/mod.ts";
import { type Channel, ChannelState } from "./channel.ts";
import type { CometMetrics } from "./metrics.ts";

/** Longest an ack waits in the comet before it is sent to logic (ms). */
export const ACK_BATCH_MS = 50;
/** Acks waiting for logic at most; more are dropped (counted, logged). */
export const MAX_ACK_BACKLOG = 10_000;
/** A failure storm (logic down, bad answers) logs one line per this period. */
const LOG_EVERY_MS = 10_000;

/** What a stream push carries besides its bytes: built once per push call. */
export class StreamBatch implements Batch {
  /**
   * Wraps frames already framed as `StreamMsg` (`tcp`, inside the op 9
   * envelope `ws`). `positions` has one entry per frame, ascending (empty
   * for kind Key).
   */
  constructor(
    readonly tcp: Uint8Array,
    readonly ws: Uint8Array,
    readonly count: number,
    readonly kind: StreamKind,
    readonly stream: string,
    readonly epoch: string,
    readonly positions: readonly number[],
    readonly pushId: string,
    readonly ack: boolean,
  ) {}

  /** Position of the last frame (0 for kind Key). */
  get last(): number {
    return this.positions.length === 0 ? 0 : this.positions[this.positions.length - 1];
  }
}

/** One frame of a push to wrap: its inner goim frame and its stream fields. */
interface Wrapped {
  fields: StreamMsgFields;
  inner: Uint8Array;
}

// Frames `StreamMsg`s into one buffer with 16 bytes in front for the op 9 envelope.
function sealStreamMsgs(frames: readonly Wrapped[]): { tcp: Uint8Array; ws: Uint8Array } {
  let size = HEADER_LEN;
  for (const w of frames) size += streamMsgLength(w.fields, w.inner.length);
  const buf = new Uint8Array(size);
  let o = HEADER_LEN;
  for (const w of frames) o = writeStreamMsg(buf, o, w.fields, w.inner);
  writeHeader(buf, 0, size - HEADER_LEN, PUSH_VER, Op.Raw, 0);
  return { tcp: buf.subarray(HEADER_LEN), ws: buf };
}

/**
 * Wraps the inner frames of a room push (`frames`: whole goim frames back
 * to back) as `StreamMsg` frames of `room:<roomID>`, one position and push
 * id per frame. Throws a ProtocolError for a field the contract refuses.
 */
export function roomStreamBatch(
  roomID: string,
  frames: Uint8Array,
  epoch: string,
  positions: readonly number[],
  pushIds: readonly string[],
): StreamBatch {
  const stream = `room:${roomID}`;
  const wrapped = wrapFrames(frames, (i) => ({
    kind: StreamKind.Room,
    pos: positions[i],
    epoch,
    pushId: pushIds[i] ?? "",
    stream,
  }));
  const { tcp, ws } = sealStreamMsgs(wrapped);
  return new StreamBatch(
    tcp,
    ws,
    wrapped.length,
    StreamKind.Room,
    stream,
    epoch,
    positions,
    "",
    false,
  );
}

// Each inner frame of `frames` (whole goim frames back to back) with the fields of its index.
function wrapFrames(frames: Uint8Array, fieldsOf: (i: number) => StreamMsgFields): Wrapped[] {
  const wrapped: Wrapped[] = [];
  for (let o = 0, i = 0; o < frames.length; i++) {
    const len = readU32(frames, o);
    wrapped.push({ fields: fieldsOf(i), inner: frames.subarray(o, o + len) });
    o += len;
  }
  return wrapped;
}

/**
 * Wraps the inner frames of a broadcast (`frames`: whole goim frames back
 * to back) as kind Key `StreamMsg` frames (no stream, flags 0), one push id
 * per frame: an opted-in client drops a frame whose push id it has seen
 * (a job redelivery). Throws a ProtocolError for a field the contract
 * refuses.
 */
export function broadcastStreamBatch(frames: Uint8Array, pushIds: readonly string[]): StreamBatch {
  const wrapped = wrapFrames(frames, (i) => ({ kind: StreamKind.Key, pushId: pushIds[i] }));
  const { tcp, ws } = sealStreamMsgs(wrapped);
  return new StreamBatch(tcp, ws, wrapped.length, StreamKind.Key, "", "", [], "", false);
}

/**
 * Wraps one key or mid push (`inner`: its goim frame) as a `StreamMsg`:
 * kind Mid with its position when `stream` is a `mid:` stream, else kind
 * Key (pos 0, no epoch, no name). Throws a ProtocolError for a field the
 * contract refuses.
 */
export function pushStreamBatch(
  inner: Uint8Array,
  stream: string,
  epoch: string,
  pos: number,
  pushId: string,
  ack: boolean,
): StreamBatch {
  const kind = stream === "" ? StreamKind.Key : StreamKind.Mid;
  const fields: StreamMsgFields = kind === StreamKind.Key
    ? { kind, flags: ack ? StreamFlag.Ack : 0, pushId }
    : { kind, flags: ack ? StreamFlag.Ack : 0, pos, epoch, pushId, stream };
  const { tcp, ws } = sealStreamMsgs([{ fields, inner }]);
  return new StreamBatch(
    tcp,
    ws,
    1,
    kind,
    stream,
    kind === StreamKind.Key ? "" : epoch,
    kind === StreamKind.Key ? [] : [pos],
    pushId,
    ack,
  );
}

// The part of a room batch from frame `from` on (a partial overlap; rare: a copy).
function sliceFrom(sb: StreamBatch, from: number): StreamBatch {
  let o = 0;
  for (let i = 0; i < from; i++) o += readU32(sb.tcp, o);
  const rest = sb.tcp.subarray(o);
  const b = batchFromFrames(rest);
  return new StreamBatch(
    b.tcp,
    b.ws,
    sb.count - from,
    sb.kind,
    sb.stream,
    sb.epoch,
    sb.positions.slice(from),
    sb.pushId,
    sb.ack,
  );
}

/** An ack-requested push a channel has not acked yet. */
interface Unacked {
  /** The `StreamMsg` frame as last sent. */
  frame: Uint8Array;
  /** When it was last sent (performance clock, ms). */
  sentAt: number;
  /** Re-sends so far. */
  tries: number;
}

/** A recovery a channel asked for: the positions it named and the streams asked for state only. */
interface RecoverAsk {
  named: StreamRecoverEntry[];
  stateOnly: string[];
}

/**
 * The stream state of one opted-in channel: its own streams, the last
 * position sent of each, the hold during a recovery, and its unacked
 * pushes. Only opted-in channels have one.
 */
export class ChannelStreams {
  /** `mid:<mid>`, or "" for mid 0. */
  readonly midStream: string;
  /** `room:<room>` of the room the channel is in, or "". */
  roomStream: string;
  /** Epoch of the last mid-stream position sent. */
  midEpoch = "";
  /** Last mid-stream position sent; -1: unknown (nothing sent or recovered yet). */
  midPos = -1;
  /** Epoch of the last room-stream position sent. */
  roomEpoch = "";
  /** Last room-stream position sent; -1: unknown. */
  roomPos = -1;
  /** Whether pushes are held (a recovery is out). */
  holding = false;
  /** Pushes held, oldest first. */
  held: Batch[] | null = null;
  /** Bytes of {@linkcode ChannelStreams.held}, as the transport counts them. */
  heldBytes = 0;
  /** The recovery out, or null. */
  current: RecoverAsk | null = null;
  /** When the recovery out gives up (performance clock, ms). */
  deadline = 0;
  /** Numbers recoveries, so a late answer to an abandoned one is ignored. */
  seq = 0;
  /** A StreamSync waiting for the recovery out (at most one). */
  waitingSync: StreamRecoverEntry[] | null = null;
  /** A room change is waiting for the recovery out: ask the new room's state next. */
  roomStateWanted = false;
  /** Ack-requested pushes not acked, in the order they were (re-)sent. */
  unacked: Map<string, Unacked> | null = null;

  /** State for a channel of `mid` in room `roomId` ("" = none). */
  constructor(mid: number, roomId: string) {
    this.midStream = mid !== 0 ? `mid:${mid}` : "";
    this.roomStream = roomId !== "" ? `room:${roomId}` : "";
  }

  /** The channel's own streams. */
  own(): string[] {
    const out: string[] = [];
    if (this.roomStream !== "") out.push(this.roomStream);
    if (this.midStream !== "") out.push(this.midStream);
    return out;
  }

  /** Drops the held pushes (closed, overflowed, or released), keeping the gauge right. */
  dropHeld(metrics: CometMetrics): void {
    metrics.streamHeldBytes -= this.heldBytes;
    this.held = null;
    this.heldBytes = 0;
  }

  /** Records `epoch`/`pos` as the last position of own stream `stream`. */
  setPos(stream: string, epoch: string, pos: number): void {
    if (stream === "") return;
    if (stream === this.roomStream) {
      this.roomEpoch = epoch;
      this.roomPos = pos;
    } else if (stream === this.midStream) {
      this.midEpoch = epoch;
      this.midPos = pos;
    }
  }
}

/** What {@linkcode CometStreams} needs from the hub. */
export interface StreamsHost {
  /** This comet's id (the `server` of Acks calls). */
  readonly id: string;
  /** Closes a channel for a malformed frame (op 6 4000). */
  protocolError(ch: Channel, err: unknown): void;
  /** Closes a channel over a bound (op 6 4007). */
  limitExceeded(ch: Channel, limit: "stream_sync", message: string): void;
}

/** Options of {@linkcode CometStreams}. */
export interface CometStreamsOptions {
  /** logic's Streams service (embedded) or client (distributed); absent: every recovery is unavailable. */
  api?: StreamsApi;
  /** The configuration (streams.recover.timeout, comet.streams.*, comet.send_queue.max_bytes). */
  config: Config;
  /** Metrics. */
  metrics: CometMetrics;
  /** Logger. */
  log: Logger;
  /** The hub. */
  host: StreamsHost;
}

function kindOf(stream: string): StreamKind {
  return stream.startsWith("room:") ? StreamKind.Room : StreamKind.Mid;
}

/**
 * Everything stream-related of one comet: recoveries, duplicate filter,
 * ack tracking and reporting. One per {@linkcode ConnectionHub}.
 *
 * @example
 * ```ts
 * import type { Config } from "../infra/config.ts";
 * import type { Logger } from "../infra/log.ts";
 * import type { CometMetrics } from "./metrics.ts";
 * declare const config: Config, metrics: CometMetrics, log: Logger, host: StreamsHost;
 * const streams = new CometStreams({ config, metrics, log, host });
 * streams.sweep(performance.now()); // re-sends and recovery deadlines
 * streams.stop();
 * ```
 */
export class CometStreams {
  readonly #api: StreamsApi | undefined;
  readonly #metrics: CometMetrics;
  readonly #log: Logger;
  readonly #host: StreamsHost;
  readonly #recoverMs: number;
  readonly #ackMs: number;
  readonly #ackRetries: number;
  readonly #maxUnacked: number;
  readonly #replayBudget: number;
  // Channels with a recovery out, and channels with unacked pushes: what the sweep walks.
  readonly #recovering = new Set<Channel>();
  readonly #acking = new Set<Channel>();
  // Acks waiting for logic.
  #acks: StreamAckMsg[] = [];
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  #ackCall = false;
  #stopped = false;
  readonly #ackFailLog = new LogThrottle(LOG_EVERY_MS);
  readonly #ackDropLog = new LogThrottle(LOG_EVERY_MS);
  readonly #recoverFailLog = new LogThrottle(LOG_EVERY_MS);
  /** Opted-in channels open now; while 0, a broadcast runs the plain loop (comet/service.ts). */
  connections = 0;

  /** Reads its bounds from the configuration. */
  constructor(opts: CometStreamsOptions) {
    const c = opts.config;
    this.#api = opts.api;
    this.#metrics = opts.metrics;
    this.#log = opts.log;
    this.#host = opts.host;
    this.#recoverMs = c.streams.recover.timeout;
    this.#ackMs = c.comet.streams.ack_timeout;
    this.#ackRetries = c.comet.streams.ack_retries;
    this.#maxUnacked = c.comet.streams.max_unacked;
    this.#replayBudget = Math.floor(c.comet.send_queue.max_bytes / 2);
  }

  /** The shortest deadline this checks on the sweep (ms): the hub sweeps at least 4 times as often. */
  get shortestDeadlineMs(): number {
    return Math.min(this.#recoverMs, this.#ackMs);
  }

  // ------------------------------------------------------------ lifecycle

  /**
   * An opted-in channel was authenticated (op 8 queued): recover its own
   * streams, the named ones from `recover` (ConnectReply field 106).
   */
  connected(ch: Channel, recover: readonly StreamPositionMsg[]): void {
    const st = ch.streams!;
    this.connections++;
    const own = st.own();
    const named: StreamRecoverEntry[] = [];
    for (const r of recover) {
      // Logic validated the token (parseStreamsOption); a goim-shaped or
      // broken logic must still not make the comet send what it refuses.
      const epoch = r.epoch ?? "";
      const pos = Number(r.pos ?? 0);
      if (!isEpoch(epoch) || !Number.isSafeInteger(pos) || pos < 0) continue;
      if (own.includes(r.stream) && !named.some((n) => n.stream === r.stream)) {
        named.push({ stream: r.stream, epoch, pos });
      }
    }
    this.#begin(ch, {
      named,
      stateOnly: own.filter((s) => !named.some((n) => n.stream === s)),
    });
  }

  /** An opted-in channel moved to room `roomId` (op 13 queued): its new room's state follows. */
  roomChanged(ch: Channel, roomId: string): void {
    const st = ch.streams!;
    st.roomStream = roomId !== "" ? `room:${roomId}` : "";
    st.roomEpoch = "";
    st.roomPos = -1;
    if (roomId === "") return;
    if (st.current !== null) {
      st.roomStateWanted = true;
      return;
    }
    this.#begin(ch, { named: [], stateOnly: [st.roomStream] });
  }

  /** An opted-in channel closed: forget it. */
  closed(ch: Channel): void {
    const st = ch.streams!;
    this.connections--;
    this.#recovering.delete(ch);
    this.#acking.delete(ch);
    st.current = null;
    st.holding = false;
    st.dropHeld(this.#metrics);
    st.unacked = null;
    st.waitingSync = null;
  }

  /**
   * A stream op from an opted-in channel: handles StreamAck and
   * StreamSync and returns true; false for any other op (the hub then
   * treats it as an unknown op).
   */
  frame(ch: Channel, f: Frame): boolean {
    if (f.op === Op.StreamAck) {
      const ids = this.#parse(ch, parseStreamAck, f.body);
      if (ids !== undefined) this.#ack(ch, ids);
      return true;
    }
    if (f.op === Op.StreamSync) {
      const entries = this.#parse(ch, parseStreamSync, f.body);
      if (entries === undefined) return true;
      this.#metrics.streamSyncs++;
      this.#sync(ch, entries);
      return true;
    }
    return false;
  }

  // A client frame's body parsed, or undefined once the channel got the protocol error.
  #parse<T>(ch: Channel, parse: (body: Uint8Array) => T, body: Uint8Array): T | undefined {
    try {
      return parse(body);
    } catch (e) {
      this.#host.protocolError(ch, e);
      return undefined;
    }
  }

  /** Re-sends unacked pushes that timed out and gives up recoveries past their deadline. */
  sweep(now: number): void {
    for (const ch of this.#recovering) {
      const st = ch.streams!;
      if (now >= st.deadline) this.#finish(ch, st.seq, null);
    }
    for (const ch of this.#acking) this.#resend(ch, now);
  }

  /** Stops the ack batch timer; acks still waiting are dropped. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#acks = [];
  }

  // ------------------------------------------------------------ delivery

  /**
   * Queues a stream push for an opted-in channel: held during a recovery,
   * dropped when the channel already has its positions, cut to the new
   * part of a room batch, tracked when it asks for an ack. Returns whether
   * something was queued (held pushes are not).
   */
  deliver(ch: Channel, sb: StreamBatch): boolean {
    const st = ch.streams!;
    if (st.holding) {
      ch.push(sb);
      return false;
    }
    let b = sb;
    if (sb.kind !== StreamKind.Key) {
      let epoch: string, pos: number;
      if (sb.stream === st.roomStream) {
        epoch = st.roomEpoch;
        pos = st.roomPos;
      } else if (sb.stream === st.midStream) {
        epoch = st.midEpoch;
        pos = st.midPos;
      } else {
        epoch = "";
        pos = -1;
      }
      if (pos >= 0 && epoch === sb.epoch) {
        if (sb.last <= pos) {
          this.#metrics.streamDuplicates += sb.count;
          return false;
        }
        if (sb.positions[0] <= pos) {
          let from = 1;
          while (sb.positions[from] <= pos) from++;
          this.#metrics.streamDuplicates += from;
          b = sliceFrom(sb, from);
        }
      }
      if (!ch.push(b)) return false;
      st.setPos(sb.stream, sb.epoch, sb.last);
    } else if (!ch.push(b)) return false;
    if (sb.ack && sb.pushId !== "") this.#track(ch, sb.pushId, b.tcp);
    return true;
  }

  #track(ch: Channel, pushId: string, frame: Uint8Array): void {
    const st = ch.streams!;
    const m = st.unacked ??= new Map();
    m.delete(pushId); // a redelivery of a tracked push starts its clock again
    m.set(pushId, { frame, sentAt: performance.now(), tries: 0 });
    if (m.size > this.#maxUnacked) {
      m.delete(m.keys().next().value!);
      this.#metrics.streamForgottenMax++;
    }
    this.#acking.add(ch);
  }

  #resend(ch: Channel, now: number): void {
    const st = ch.streams!;
    const m = st.unacked;
    if (m === null || m.size === 0 || ch.state !== ChannelState.Open) {
      this.#acking.delete(ch);
      return;
    }
    // The map is in (re-)send order: stop at the first push not yet due.
    for (const [id, u] of m) {
      if (now - u.sentAt < this.#ackMs) break;
      m.delete(id);
      if (u.tries >= this.#ackRetries) {
        this.#metrics.streamForgottenRetries++;
        continue;
      }
      const b = batchFromFrames(u.frame);
      b.tcp[1 + HEADER_LEN] |= StreamFlag.Resent;
      this.#metrics.streamResends++;
      if (!ch.push(b)) {
        if (ch.state !== ChannelState.Open) return;
      }
      m.set(id, { frame: b.tcp, sentAt: now, tries: u.tries + 1 });
    }
    if (m.size === 0) this.#acking.delete(ch);
  }

  // ------------------------------------------------------------ acks

  #ack(ch: Channel, ids: readonly string[]): void {
    const m = ch.streams!.unacked;
    for (const id of ids) {
      if (m === null || !m.delete(id)) {
        this.#metrics.streamAcksUnknown++;
        continue;
      }
      this.#metrics.streamAcks++;
      this.#report({ push_id: id, key: ch.key, mid: ch.mid });
    }
    if (m !== null && m.size === 0) this.#acking.delete(ch);
  }

  #report(ack: StreamAckMsg): void {
    if (this.#api === undefined || this.#stopped) {
      this.#metrics.streamAckReportsDropped.inc({ reason: "no_logic" });
      return;
    }
    if (this.#acks.length >= MAX_ACK_BACKLOG) {
      this.#metrics.streamAckReportsDropped.inc({ reason: "backlog" });
      const n = this.#ackDropLog.take();
      if (n !== null) {
        this.#log.warn("acks dropped: too many waiting for logic", {
          dropped: n,
          backlog: MAX_ACK_BACKLOG,
        });
      }
      return;
    }
    this.#acks.push(ack);
    if (this.#ackCall) return; // the call's end sends what waits
    if (this.#acks.length >= MAX_ACKS_PER_CALL) {
      clearTimeout(this.#ackTimer);
      this.#ackTimer = undefined;
      this.#sendAcks();
    } else if (this.#ackTimer === undefined) {
      this.#ackTimer = setTimeout(() => {
        this.#ackTimer = undefined;
        this.#sendAcks();
      }, ACK_BATCH_MS);
    }
  }

  #sendAcks(): void {
    if (this.#ackCall || this.#acks.length === 0 || this.#stopped) return;
    const batch = this.#acks.length <= MAX_ACKS_PER_CALL
      ? this.#acks
      : this.#acks.slice(0, MAX_ACKS_PER_CALL);
    this.#acks = batch === this.#acks ? [] : this.#acks.slice(MAX_ACKS_PER_CALL);
    this.#ackCall = true;
    let call: Promise<unknown>;
    try {
      call = this.#api!.Acks({ server: this.#host.id, acks: batch });
    } catch (e) {
      call = Promise.reject(e);
    }
    call.catch((e) => {
      this.#metrics.streamAckReportsDropped.inc({ reason: "logic_error" }, batch.length);
      const n = this.#ackFailLog.take();
      if (n !== null) {
        this.#log.warn("logic Acks failed; acks dropped", {
          calls: n,
          acks: batch.length,
          error: errorMessage(e),
        });
      }
    }).finally(() => {
      this.#ackCall = false;
      if (this.#stopped || this.#acks.length === 0) return;
      if (this.#acks.length >= MAX_ACKS_PER_CALL) this.#sendAcks();
      else if (this.#ackTimer === undefined) {
        this.#ackTimer = setTimeout(() => {
          this.#ackTimer = undefined;
          this.#sendAcks();
        }, ACK_BATCH_MS);
      }
    });
  }

  // ------------------------------------------------------------ recovery

  #sync(ch: Channel, entries: readonly StreamRecoverEntry[]): void {
    const st = ch.streams!;
    if (st.current !== null) {
      if (st.waitingSync !== null) {
        this.#host.limitExceeded(
          ch,
          "stream_sync",
          "a StreamSync while one is in flight and one waits",
        );
        return;
      }
      st.waitingSync = [...entries];
      return;
    }
    this.#begin(ch, this.#syncAsk(st, entries));
  }

  // The own streams a sync names (first entry per stream), plus the room's state when wanted.
  #syncAsk(st: ChannelStreams, entries: readonly StreamRecoverEntry[]): RecoverAsk {
    const own = st.own();
    const named: StreamRecoverEntry[] = [];
    for (const e of entries) {
      if (own.includes(e.stream) && !named.some((n) => n.stream === e.stream)) named.push(e);
    }
    const stateOnly: string[] = [];
    if (
      st.roomStateWanted && st.roomStream !== "" && !named.some((n) => n.stream === st.roomStream)
    ) {
      stateOnly.push(st.roomStream);
    }
    st.roomStateWanted = false;
    return { named, stateOnly };
  }

  #begin(ch: Channel, ask: RecoverAsk): void {
    const st = ch.streams!;
    if (ask.named.length === 0 && ask.stateOnly.length === 0) {
      // Nothing of its own to tell: an empty StreamState still answers.
      this.#state(ch, []);
      this.#next(ch);
      return;
    }
    st.current = ask;
    st.holding = true;
    st.deadline = performance.now() + this.#recoverMs;
    const seq = ++st.seq;
    if (this.#api === undefined) {
      this.#finish(ch, seq, null);
      return;
    }
    this.#recovering.add(ch);
    let call: Promise<{ results?: StreamResult[] }>;
    try {
      call = this.#api.Recover({
        streams: ask.named.map((n) => ({ stream: n.stream, epoch: n.epoch, pos: n.pos })),
        state_only: ask.stateOnly,
      });
    } catch (e) {
      call = Promise.reject(e);
    }
    call.then(
      (reply) => this.#finish(ch, seq, reply.results ?? []),
      (e) => {
        const n = this.#recoverFailLog.take();
        if (n !== null) {
          this.#log.warn("logic Recover failed", { calls: n, error: errorMessage(e) });
        }
        this.#finish(ch, seq, null);
      },
    );
  }

  // The answer (null: failed or timed out) of recovery `seq` of `ch`.
  #finish(ch: Channel, seq: number, results: readonly StreamResult[] | null): void {
    const st = ch.streams!;
    const ask = st.current;
    if (ask === null || seq !== st.seq) return; // abandoned: the deadline answered already
    this.#recovering.delete(ch);
    st.current = null;
    if (ch.state !== ChannelState.Open) {
      st.holding = false;
      st.dropHeld(this.#metrics);
      return;
    }
    try {
      this.#answer(ch, ask, results);
    } catch (e) {
      // A bug here must not leave the channel holding forever.
      this.#log.error("stream recovery failed", { key: ch.key, error: errorMessage(e) });
      st.holding = false;
      this.#host.protocolError(ch, e);
      return;
    }
    this.#next(ch);
  }

  #next(ch: Channel): void {
    const st = ch.streams!;
    if (ch.state !== ChannelState.Open || st.current !== null) return;
    const waiting = st.waitingSync;
    if (waiting !== null) {
      st.waitingSync = null;
      this.#begin(ch, this.#syncAsk(st, waiting));
    } else if (st.roomStateWanted) {
      st.roomStateWanted = false;
      if (st.roomStream !== "") this.#begin(ch, { named: [], stateOnly: [st.roomStream] });
    }
  }

  // StreamState, the replays, the held pushes: in that order, all queued now.
  #answer(ch: Channel, ask: RecoverAsk, results: readonly StreamResult[] | null): void {
    const st = ch.streams!;
    const byStream = new Map<string, StreamResult>();
    for (const r of results ?? []) if (!byStream.has(r.stream)) byStream.set(r.stream, r);
    const states: StreamStateEntry[] = [];
    const replays: Wrapped[] = [];
    const acks: [string, number][] = []; // push id, index in replays
    let budget = Math.max(0, this.#replayBudget - ch.queued - ch.inflight);
    const m = this.#metrics;
    for (const n of ask.named) {
      const r = results === null ? undefined : byStream.get(n.stream);
      const checked = r === undefined ? null : this.#checkResult(r, n);
      if (checked === null) {
        if (results !== null) {
          const k = this.#recoverFailLog.take();
          if (k !== null) {
            this.#log.warn("logic Recover answer unusable", { stream: n.stream, answers: k });
          }
        }
        m.streamRecoveries.inc({ result: "unavailable" });
        states.push({ ...n, recovered: false, reason: "unavailable" });
        continue;
      }
      if (!checked.recovered) {
        const reason = checked.reason;
        m.streamRecoveries.inc({ result: reason });
        states.push({
          stream: n.stream,
          epoch: checked.epoch,
          pos: checked.top,
          recovered: false,
          reason,
        });
        st.setPos(n.stream, checked.epoch, checked.top);
        continue;
      }
      m.streamRecoveries.inc({ result: "recovered" });
      const kind = kindOf(n.stream);
      let replayed = 0;
      let last = checked.entries.length === 0 ? checked.top : n.pos;
      for (const e of checked.entries) {
        const inner = encodeFrame({ ver: PUSH_VER, op: e.op, seq: 0, body: e.body });
        const pushId = e.push_id ?? "";
        const ack = e.ack === true && pushId !== "";
        const fields: StreamMsgFields = {
          kind,
          flags: StreamFlag.Replayed | (ack ? StreamFlag.Ack : 0),
          pos: Number(e.pos),
          epoch: checked.epoch,
          pushId,
          stream: n.stream,
        };
        const size = streamMsgLength(fields, inner.length);
        // At least one entry per stream, so a replay always moves the client on.
        if (replayed > 0 && size > budget) break;
        budget -= size;
        if (ack) acks.push([pushId, replays.length]);
        replays.push({ fields, inner });
        replayed++;
        last = Number(e.pos);
      }
      m.streamReplayed += replayed;
      states.push({
        stream: n.stream,
        epoch: checked.epoch,
        pos: checked.top,
        recovered: true,
        replayed,
      });
      st.setPos(n.stream, checked.epoch, last);
    }
    for (const s of ask.stateOnly) {
      const r = results === null ? undefined : byStream.get(s);
      const checked = r === undefined ? null : this.#checkResult(r, null);
      if (checked === null) {
        m.streamRecoveries.inc({ result: "unavailable" });
        states.push({ stream: s, epoch: "", pos: 0, recovered: false, reason: "unavailable" });
        continue;
      }
      m.streamRecoveries.inc({ result: "state_only" });
      states.push({ stream: s, epoch: checked.epoch, pos: checked.top });
      st.setPos(s, checked.epoch, checked.top);
    }
    this.#state(ch, states);
    st.holding = false;
    if (replays.length > 0) {
      const { tcp, ws } = sealStreamMsgs(replays);
      if (ch.push({ tcp, ws, count: replays.length }) && acks.length > 0) {
        // Each tracked frame is a view of the replay batch.
        const offsets: number[] = [];
        for (let o = 0; o < tcp.length; o += readU32(tcp, o)) offsets.push(o);
        for (const [id, i] of acks) {
          const o = offsets[i];
          this.#track(ch, id, tcp.subarray(o, o + readU32(tcp, o)));
        }
      }
    }
    this.#release(ch);
  }

  #state(ch: Channel, states: StreamStateEntry[]): void {
    ch.reply(encodeFrame({
      ver: PUSH_VER,
      op: Op.StreamState,
      seq: 0,
      body: encodeStreamState(states),
    }));
  }

  // The held pushes, in order, through the duplicate filter.
  #release(ch: Channel): void {
    const st = ch.streams!;
    const held = st.held;
    if (held === null) return;
    st.dropHeld(this.#metrics);
    for (const b of held) {
      if (ch.state !== ChannelState.Open) return;
      if (b instanceof StreamBatch) this.deliver(ch, b);
      else ch.push(b);
      if (st.holding) return; // cannot happen today: nothing starts a recovery from here
    }
  }

  // A logic answer checked against the contract; null when it cannot be used.
  #checkResult(
    r: StreamResult,
    named: StreamRecoverEntry | null,
  ):
    | { epoch: string; top: number; recovered: true; entries: StreamResult["entries"] }
    | { epoch: string; top: number; recovered: false; reason: StreamStateReason }
    | null {
    const top = Number(r.top ?? 0);
    if (!isEpoch(r.epoch ?? "") || !Number.isSafeInteger(top) || top < 0) return null;
    const epoch = r.epoch ?? "";
    if (named === null) return { epoch, top, recovered: true, entries: [] };
    if (r.recovered !== true) {
      return isStreamStateReason(r.reason)
        ? { epoch, top, recovered: false, reason: r.reason }
        : null;
    }
    const entries = r.entries ?? [];
    let prev = named.epoch === epoch ? named.pos : 0;
    for (const e of entries) {
      const pos = Number(e.pos);
      if (!Number.isSafeInteger(pos) || pos <= prev || pos > MAX_POS) return null;
      if (!isBusinessOp(e.op) || !(e.body instanceof Uint8Array)) return null;
      if ((e.push_id ?? "") !== "" && !isPushId(e.push_id)) return null;
      prev = pos;
    }
    return { epoch, top, recovered: true, entries };
  }
}

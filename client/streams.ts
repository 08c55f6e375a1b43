/**
 * The SDK's side of streams (docs/STREAMS.md): positions kept per stream,
 * recovery named in the token, duplicates dropped, gaps held and filled by
 * `StreamSync`, epoch changes reported, acks batched. `GoimClient` owns one
 * {@linkcode StreamTracker} when created with `streams`, and attaches it to
 * each connection in turn; without `streams` none of this runs.
 *
 * What a tracker holds is bounded: positions of at most `maxStreams`
 * streams (least recently moved forgotten first), at most `holdMax` held
 * messages per connection for at most `holdTimeoutMs`, one sync in flight
 * (a second only once the first went `holdTimeoutMs` unanswered, never a
 * third: the comet closes a connection that sends one), push ids remembered for
 * dedupe and re-acks in two LRU sets of {@linkcode STREAM_ID_MEMORY}, and
 * acks flushed at {@linkcode MAX_ACK_IDS} or after `ackDelayMs`.
 *
 * Runs in Deno and browsers.
 *
 * @module
 */

import { ProtocolError } from "../protocol/errors.ts";
import { decodeFrame, type Frame } from "../protocol/frame.ts";
import { isBusinessOp, Op } from "../protocol/ops.ts";
import {
  decodeStreamMsg,
  encodeStreamAck,
  encodeStreamSync,
  MAX_ACK_IDS,
  MAX_RECOVER_ENTRIES,
  MAX_STREAM_BYTES,
  parseStreamsOption,
  parseStreamState,
  StreamFlag,
  StreamKind,
  type StreamMsg,
  type StreamRecoverEntry,
  type StreamStateEntry,
  type StreamStateReason,
} from "../protocol/streams.ts";
import type { AuthToken } from "../protocol/token.ts";
import type { PushMessage } from "./connection.ts";

/**
 * Default bound on messages held behind a gap, per connection (all its
 * streams together; a connection has two).
 *
 * @example
 * ```ts
 * const opts: StreamsOptions = { holdMax: 2 * DEFAULT_STREAM_HOLD_MAX };
 * ```
 */
export const DEFAULT_STREAM_HOLD_MAX = 1000;
/**
 * Default longest a gap is waited for (and a sync for its answer), in ms:
 * past it the held messages are delivered after a `streams` event with
 * reason `"gap"`.
 *
 * @example
 * ```ts
 * const opts: StreamsOptions = { holdTimeoutMs: DEFAULT_STREAM_HOLD_TIMEOUT_MS / 5 }; // 1 s
 * ```
 */
export const DEFAULT_STREAM_HOLD_TIMEOUT_MS = 5_000;
/**
 * Default delay before queued acks are sent (a batch of 64 goes at once).
 *
 * @example
 * ```ts
 * const opts: StreamsOptions = { ackDelayMs: 2 * DEFAULT_STREAM_ACK_DELAY_MS };
 * ```
 */
export const DEFAULT_STREAM_ACK_DELAY_MS = 20;
/**
 * Default number of streams whose positions are kept (the least recently
 * moved is forgotten past it).
 *
 * @example
 * ```ts
 * const opts: StreamsOptions = { maxStreams: DEFAULT_STREAM_MAX_STREAMS * 4 };
 * ```
 */
export const DEFAULT_STREAM_MAX_STREAMS = 64;
/**
 * Push ids remembered to drop re-sent key pushes and to re-ack duplicates
 * (each of two LRU sets).
 *
 * @example
 * ```ts
 * console.log(`key pushes deduplicated over the last ${STREAM_ID_MEMORY} ids`);
 * ```
 */
export const STREAM_ID_MEMORY = 1024;

/**
 * A position in one stream: its epoch and the last position delivered.
 *
 * @example
 * ```ts
 * const p: StreamPosition = { epoch: "b8f1c2", pos: 41 };
 * ```
 */
export interface StreamPosition {
  /** The epoch the position is in (`""`: the stream had no history yet). */
  epoch: string;
  /** The last position delivered (0: none). */
  pos: number;
}

/**
 * Positions by stream name (`room:live://1000`, `mid:42`), as
 * {@linkcode StreamTracker.positions} returns them and `positions` seeds
 * them: plain JSON, fit for `localStorage`.
 *
 * @example
 * ```ts
 * const seeds: StreamPositions = { "room:live://1000": { epoch: "b8f1c2", pos: 41 } };
 * ```
 */
export type StreamPositions = Record<string, StreamPosition>;

/**
 * The `streams` option of `GoimClient` (docs/STREAMS.md, "SDK").
 *
 * @example
 * ```ts
 * declare const saved: string | null; // localStorage.getItem("goim.positions")
 * const opts: StreamsOptions = { positions: saved ? JSON.parse(saved) : {}, autoAck: true };
 * ```
 */
export interface StreamsOptions {
  /** Positions to start from (from an earlier `positions()`); default none. */
  positions?: StreamPositions;
  /**
   * Ack an ack-requested message once the `message` listeners returned
   * (default true). With false, such a message carries `ack()`.
   */
  autoAck?: boolean;
  /** Messages held behind gaps per connection (default 1000). */
  holdMax?: number;
  /** Longest a gap is held and a sync awaited, ms (default 5000). */
  holdTimeoutMs?: number;
  /** Delay before a partial batch of acks is sent, ms (default 20). */
  ackDelayMs?: number;
  /** Streams whose positions are kept (default 64). */
  maxStreams?: number;
}

/**
 * Why a stream's messages could not all be delivered: the server's reasons
 * (`epoch_changed`, `window_passed`, `unavailable`, `disabled`) and the
 * SDK's `gap` (a missing message did not arrive within the hold bounds).
 *
 * @example
 * ```ts
 * const reload = (r: StreamLossReason) => r !== "disabled";
 * ```
 */
export type StreamLossReason = StreamStateReason | "gap";

/**
 * The `streams` event: some messages of `stream` will never be delivered;
 * the app reloads its state of that stream. Delivery continues after `pos`
 * in `epoch`.
 *
 * @example
 * ```ts
 * import type { GoimClient } from "./client.ts";
 * declare const client: GoimClient;
 * declare function reload(stream: string): void;
 * client.on("streams", (ev: StreamsEvent) => reload(ev.stream));
 * ```
 */
export interface StreamsEvent {
  /** The stream (`room:…`, `mid:…`). */
  stream: string;
  /** Always false: the event reports losses only. */
  recovered: false;
  /** Why (a server answer without a reason is reported as `unavailable`). */
  reason: StreamLossReason;
  /** The epoch delivery continues in. */
  epoch: string;
  /** The position delivery continues after. */
  pos: number;
}

/**
 * Counters of a tracker since it was created (all connections).
 *
 * @example
 * ```ts
 * import type { GoimClient } from "./client.ts";
 * declare const client: GoimClient;
 * const { duplicates, gaps } = client.streamStats();
 * ```
 */
export interface StreamStats {
  /** Stream messages delivered as `message` events. */
  delivered: number;
  /** Duplicates dropped (a position already delivered, a key push id already seen). */
  duplicates: number;
  /** Gaps seen (a message after a missing one was held). */
  gaps: number;
  /** Gaps given up on (`streams` event with reason `gap`). */
  gapsLost: number;
  /** `streams` events emitted (every reason). */
  losses: number;
  /** `StreamSync` frames sent. */
  syncs: number;
  /** Push ids acked. */
  acks: number;
  /** `StreamAck` frames sent. */
  ackFrames: number;
  /** Messages held right now. */
  held: number;
}

/**
 * All-zero {@linkcode StreamStats} (what a client without `streams` reports).
 *
 * @example
 * ```ts
 * zeroStreamStats().duplicates; // 0
 * ```
 */
export function zeroStreamStats(): StreamStats {
  return {
    delivered: 0,
    duplicates: 0,
    gaps: 0,
    gapsLost: 0,
    losses: 0,
    syncs: 0,
    acks: 0,
    ackFrames: 0,
    held: 0,
  };
}

/** Where a tracker sends frames and delivers messages; `GoimClient` provides it. */
export interface StreamLink {
  /** Sends a client frame on the current connection (acks, syncs). */
  send(op: number, body: Uint8Array): void;
}

/** What a tracker reports to its owner. */
export interface StreamHooks {
  /** A message to emit as a `message` event (its listeners run synchronously). */
  deliver(message: PushMessage): void;
  /** A `streams` event. */
  lost(event: StreamsEvent): void;
}

interface Held {
  msg: StreamMsg;
  frame: Frame;
}

interface Hold {
  msgs: Map<number, Held>;
  timer: ReturnType<typeof setTimeout>;
}

/** A sync sent and not answered. */
interface InFlight {
  streams: Set<string>;
  /** Unanswered for holdTimeoutMs: its streams may be asked for again, and one more sync may go. */
  stale: boolean;
  timer: ReturnType<typeof setTimeout>;
}

/** A replay announced by a recovered StreamState: `left` replayed messages up to `top`. */
interface Replay {
  top: number;
  left: number;
}

/** A Map-ordered set that forgets its oldest member past `max`. */
class IdMemory {
  #ids = new Set<string>();
  constructor(readonly max: number) {}
  has(id: string): boolean {
    return this.#ids.has(id);
  }
  add(id: string): void {
    this.#ids.delete(id);
    this.#ids.add(id);
    if (this.#ids.size > this.max) this.#ids.delete(this.#ids.values().next().value!);
  }
}

const utf8 = new TextEncoder();

// A stream the client can name in a token or a sync (docs/STREAMS.md, "Opting in").
function nameable(stream: string): boolean {
  return stream.length > 0 && utf8.encode(stream).length <= MAX_STREAM_BYTES;
}

function checkCount(name: string, v: number, min: number): number {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new RangeError(`streams.${name} must be an integer ≥ ${min}, got ${v}`);
  }
  return v;
}

// Seeds are held to the token's bounds (a stream the client cannot name is useless to seed).
function checkPositions(seeds: StreamPositions): StreamRecoverEntry[] {
  if (seeds === null || typeof seeds !== "object") {
    throw new RangeError("streams.positions must be an object of {epoch, pos} by stream");
  }
  return Object.entries(seeds).map(([stream, p]) => {
    if (p === null || typeof p !== "object" || p.epoch === undefined || p.pos === undefined) {
      throw new RangeError(`streams.positions[${JSON.stringify(stream)}] must be {epoch, pos}`);
    }
    try {
      return parseStreamsOption({ recover: [{ stream, epoch: p.epoch, pos: p.pos }] }).recover[0];
    } catch (e) {
      throw new RangeError(`streams.positions: ${(e as Error).message}`, { cause: e });
    }
  });
}

function bad(message: string): ProtocolError {
  return new ProtocolError("bad_stream", message);
}

/**
 * Per-client stream state: positions survive reconnects; holds, the sync in
 * flight and unsent acks belong to one connection ({@linkcode attach} /
 * {@linkcode detach}).
 *
 * @example
 * ```ts
 * import { Op } from "../protocol/ops.ts";
 * declare const frame: import("../protocol/frame.ts").Frame;
 * const tracker = new StreamTracker({}, {
 *   deliver: (m) => console.log(m.stream, m.pos),
 *   lost: (ev) => console.log("reload", ev.stream, ev.reason),
 * });
 * tracker.attach({ send: (op, body) => console.log("send", op, body.length) });
 * if (frame.op === Op.StreamMsg || frame.op === Op.StreamState) tracker.frame(frame);
 * tracker.detach();
 * ```
 */
export class StreamTracker {
  #hooks: StreamHooks;
  #autoAck: boolean;
  #holdMax: number;
  #holdTimeoutMs: number;
  #ackDelayMs: number;
  #maxStreams: number;
  /** Insertion order is recency of the last move: the first one is forgotten first. */
  #positions = new Map<string, StreamPosition>();
  /** The stream #setPos moved last: the newest of #positions unless it was forgotten. */
  #newest: string | undefined;
  #keyIds = new IdMemory(STREAM_ID_MEMORY);
  #acked = new IdMemory(STREAM_ID_MEMORY);
  #stats: StreamStats = zeroStreamStats();

  // ---- per connection
  #link: StreamLink | null = null;
  #holds = new Map<string, Hold>();
  /**
   * Syncs sent and not answered, oldest first (the comet answers them in
   * order). It takes one in flight and one waiting, and closes a
   * connection that sends a third: never more than two here.
   */
  #inflight: InFlight[] = [];
  #syncQueue = new Set<string>();
  #replays = new Map<string, Replay>();
  #acks: string[] = [];
  #ackTimer: ReturnType<typeof setTimeout> | undefined;

  /** Validates `options` (a `RangeError` names the bad field). */
  constructor(options: StreamsOptions, hooks: StreamHooks) {
    this.#hooks = hooks;
    this.#autoAck = options.autoAck ?? true;
    this.#holdMax = checkCount("holdMax", options.holdMax ?? DEFAULT_STREAM_HOLD_MAX, 1);
    this.#holdTimeoutMs = checkCount(
      "holdTimeoutMs",
      options.holdTimeoutMs ?? DEFAULT_STREAM_HOLD_TIMEOUT_MS,
      1,
    );
    this.#ackDelayMs = checkCount(
      "ackDelayMs",
      options.ackDelayMs ?? DEFAULT_STREAM_ACK_DELAY_MS,
      0,
    );
    this.#maxStreams = checkCount(
      "maxStreams",
      options.maxStreams ?? DEFAULT_STREAM_MAX_STREAMS,
      1,
    );
    for (const { stream, epoch, pos } of checkPositions(options.positions ?? {})) {
      this.#setPos(stream, { epoch, pos });
    }
  }

  /** A copy of every stream's position, to persist and pass back as `positions`. */
  positions(): StreamPositions {
    const out: StreamPositions = {};
    for (const [stream, p] of this.#positions) out[stream] = { epoch: p.epoch, pos: p.pos };
    return out;
  }

  /** A copy of the counters. */
  stats(): StreamStats {
    return { ...this.#stats };
  }

  /**
   * The token's `streams` field for a connection with `token`: the
   * positions held of its room's and its mid's streams (mid 0, no user,
   * has none), `{}` when none.
   */
  tokenField(token: AuthToken): NonNullable<AuthToken["streams"]> {
    const own = [
      token.room_id !== "" ? `room:${token.room_id}` : "",
      token.mid !== 0 ? `mid:${token.mid}` : "",
    ];
    const recover: StreamRecoverEntry[] = [];
    for (const stream of own) {
      const p = this.#positions.get(stream);
      if (p && nameable(stream) && recover.length < MAX_RECOVER_ENTRIES) {
        recover.push({ stream, epoch: p.epoch, pos: p.pos });
      }
    }
    return recover.length > 0 ? { recover } : {};
  }

  /** A connection authenticated: acks and syncs go to `link` from now on. */
  attach(link: StreamLink): void {
    this.detach();
    this.#link = link;
  }

  /**
   * The connection ended: drops what belonged to it (held messages, the
   * sync in flight, unsent acks; the next connection's recovery covers
   * them) and its timers. Positions stay.
   */
  detach(): void {
    this.#link = null;
    for (const h of this.#holds.values()) clearTimeout(h.timer);
    this.#holds.clear();
    this.#stats.held = 0;
    for (const f of this.#inflight) clearTimeout(f.timer);
    this.#inflight = [];
    this.#syncQueue.clear();
    this.#replays.clear();
    this.#acks = [];
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
  }

  /**
   * Handles a frame of the stream ops' range on the attached connection:
   * `StreamMsg` and `StreamState`; the others (client→server ops, or ops a
   * later contract adds) are not pushes and are ignored. Throws a
   * {@linkcode ProtocolError} (`bad_stream`) for a body that breaks
   * docs/STREAMS.md: the caller ends the connection.
   */
  frame(f: Frame): void {
    if (f.op === Op.StreamMsg) this.#onMsg(decodeStreamMsg(f.body));
    else if (f.op === Op.StreamState) this.#onState(parseStreamState(f.body));
  }

  // ------------------------------------------------------------ StreamMsg

  #onMsg(msg: StreamMsg): void {
    // The codec checked the wrapped frame's header; its body is bounded by the outer frame's.
    const frame = decodeFrame(msg.frame, { maxBody: msg.frame.length });
    if (!isBusinessOp(frame.op)) throw bad(`wrapped op ${frame.op} is not a business op`);
    if (msg.kind === StreamKind.Key) {
      if (msg.pushId !== "" && this.#keyIds.has(msg.pushId)) return this.#duplicate(msg);
      if (msg.pushId !== "") this.#keyIds.add(msg.pushId);
      this.#deliver(msg, frame);
      return;
    }
    if (msg.epoch === "" || msg.pos === 0) {
      throw bad(`a kind ${msg.kind} message carries an epoch and a position ≥ 1`);
    }
    this.#onStreamMsg(msg, frame);
    if ((msg.flags & StreamFlag.Replayed) !== 0) this.#replayedOne(msg.stream);
  }

  #onStreamMsg(msg: StreamMsg, frame: Frame): void {
    const cur = this.#positions.get(msg.stream);
    if (cur === undefined) {
      // No state named this stream: its first message is the baseline.
      this.#setPos(msg.stream, { epoch: msg.epoch, pos: msg.pos - 1 });
    } else if (cur.epoch === "") {
      // A stream with no history: its first message brings the epoch (not a change).
      this.#setPos(msg.stream, { epoch: msg.epoch, pos: cur.pos });
    } else if (cur.epoch !== msg.epoch) {
      this.#dropHold(msg.stream);
      this.#lose(msg.stream, "epoch_changed", msg.epoch, msg.pos - 1);
    }
    const pos = this.#positions.get(msg.stream)!.pos;
    if (msg.pos <= pos) return this.#duplicate(msg);
    if (msg.pos === pos + 1) {
      this.#advance(msg, frame);
      this.#drain(msg.stream);
      return;
    }
    this.#hold(msg, frame);
  }

  #duplicate(msg: StreamMsg): void {
    this.#stats.duplicates++;
    // The server re-sends an ack-requested message whose ack it did not get: ack it again,
    // but only if it was processed (with manual acks: acked by the app).
    if (
      (msg.flags & StreamFlag.Ack) !== 0 && msg.pushId !== "" &&
      (this.#autoAck || this.#acked.has(msg.pushId))
    ) {
      this.#ack(msg.pushId);
    }
  }

  // Delivers the next message of a stream, moving its position first so that
  // positions() read from a listener includes it.
  #advance(msg: StreamMsg, frame: Frame): void {
    this.#setPos(msg.stream, { epoch: msg.epoch, pos: msg.pos });
    this.#deliver(msg, frame);
  }

  #deliver(msg: StreamMsg, frame: Frame): void {
    const m: PushMessage = { op: frame.op, body: frame.body, ver: frame.ver, seq: frame.seq };
    if (msg.kind !== StreamKind.Key) {
      m.stream = msg.stream;
      m.pos = msg.pos;
      m.epoch = msg.epoch;
    }
    if (msg.pushId !== "") m.pushId = msg.pushId;
    m.replayed = (msg.flags & StreamFlag.Replayed) !== 0;
    const ackable = (msg.flags & StreamFlag.Ack) !== 0 && msg.pushId !== "";
    if (ackable && !this.#autoAck) {
      let done = false;
      m.ack = () => {
        if (done) return;
        done = true;
        this.#ack(msg.pushId);
      };
    }
    this.#stats.delivered++;
    this.#hooks.deliver(m);
    if (ackable && this.#autoAck) this.#ack(msg.pushId);
  }

  // ------------------------------------------------------------ gaps

  #hold(msg: StreamMsg, frame: Frame): void {
    let h = this.#holds.get(msg.stream);
    if (h === undefined) {
      const stream = msg.stream;
      h = {
        msgs: new Map(),
        timer: setTimeout(() => this.#giveUp(stream), this.#holdTimeoutMs),
      };
      this.#holds.set(stream, h);
      this.#stats.gaps++;
    }
    if (h.msgs.has(msg.pos)) {
      // Held, not yet processed: counted, never acked.
      this.#stats.duplicates++;
      return;
    }
    h.msgs.set(msg.pos, { msg, frame });
    this.#stats.held++;
    if (!this.#requestSync(msg.stream)) {
      // Nothing can fill it: waiting would only delay what is here.
      this.#giveUp(msg.stream);
      return;
    }
    if (this.#stats.held > this.#holdMax) {
      let worst = msg.stream;
      for (const [s, o] of this.#holds) {
        if (o.msgs.size > this.#holds.get(worst)!.msgs.size) worst = s;
      }
      this.#giveUp(worst);
    }
  }

  // Past the hold bounds: report the loss, continue from the first held message.
  #giveUp(stream: string): void {
    const h = this.#holds.get(stream);
    const cur = this.#positions.get(stream);
    if (h === undefined || cur === undefined) return;
    clearTimeout(h.timer);
    this.#holds.delete(stream);
    this.#stats.held -= h.msgs.size;
    this.#syncQueue.delete(stream);
    const rest = [...h.msgs.keys()].sort((a, b) => a - b);
    this.#stats.gapsLost++;
    this.#lose(stream, "gap", cur.epoch, rest[0] - 1);
    // Deliver in order; what is still missing further on is a new gap.
    for (const pos of rest) {
      const { msg, frame } = h.msgs.get(pos)!;
      if (this.#link === null) return;
      this.#onHeld(msg, frame);
    }
  }

  // A held message re-enters as if it just arrived (in position order).
  #onHeld(msg: StreamMsg, frame: Frame): void {
    const cur = this.#positions.get(msg.stream);
    if (cur === undefined || cur.epoch !== msg.epoch || msg.pos <= cur.pos) return;
    if (msg.pos === cur.pos + 1) this.#advance(msg, frame);
    else this.#hold(msg, frame);
  }

  // Delivers held messages that now follow the position.
  #drain(stream: string): void {
    const h = this.#holds.get(stream);
    if (h === undefined) return;
    const link = this.#link;
    // The position this loop last advanced to: held messages at or below any
    // other one (moved by a loss, or on entry) are dropped before going on.
    let advanced = -1;
    for (;;) {
      if (this.#link !== link || this.#holds.get(stream) !== h) return;
      const cur = this.#positions.get(stream)!;
      if (cur.pos !== advanced) {
        for (const pos of h.msgs.keys()) {
          if (pos <= cur.pos) {
            h.msgs.delete(pos);
            this.#stats.held--;
          }
        }
      }
      const next = h.msgs.get(cur.pos + 1);
      if (next === undefined) break;
      h.msgs.delete(cur.pos + 1);
      this.#stats.held--;
      this.#advance(next.msg, next.frame);
      advanced = next.msg.pos;
    }
    if (h.msgs.size === 0) {
      clearTimeout(h.timer);
      this.#holds.delete(stream);
    }
  }

  // One replayed message of `stream` was handled. After the last one the
  // StreamState announced, a replay the comet cut short (it sends what fits
  // half its send queue) or a gap still held is synced again from here.
  #replayedOne(stream: string): void {
    const r = this.#replays.get(stream);
    if (r === undefined || --r.left > 0) return;
    this.#replays.delete(stream);
    const cur = this.#positions.get(stream);
    if (cur !== undefined && (cur.pos < r.top || this.#holds.has(stream))) {
      this.#requestSync(stream);
    }
  }

  #dropHold(stream: string): void {
    const h = this.#holds.get(stream);
    if (h === undefined) return;
    clearTimeout(h.timer);
    this.#stats.held -= h.msgs.size;
    this.#holds.delete(stream);
    this.#syncQueue.delete(stream);
  }

  // ------------------------------------------------------------ sync

  // Whether a sync for `stream` is (now) asked for; false when it cannot be.
  #requestSync(stream: string): boolean {
    if (this.#link === null || !nameable(stream)) return false;
    if (
      this.#syncQueue.has(stream) || this.#inflight.some((f) => !f.stale && f.streams.has(stream))
    ) {
      return true;
    }
    this.#syncQueue.add(stream);
    this.#pumpSyncs();
    return true;
  }

  // Sends the queued streams (≤ 8) when no sync is in flight, or when the
  // only one is stale: a server that never answers does not block syncs for
  // good, and the comet's limit of two is never passed.
  #pumpSyncs(): void {
    if (this.#link === null || this.#syncQueue.size === 0) return;
    const n = this.#inflight.length;
    if (n >= 2 || (n === 1 && !this.#inflight[0].stale)) return;
    const entries: StreamRecoverEntry[] = [];
    for (const stream of this.#syncQueue) {
      if (entries.length === MAX_RECOVER_ENTRIES) break;
      this.#syncQueue.delete(stream);
      const p = this.#positions.get(stream);
      if (p) entries.push({ stream, epoch: p.epoch, pos: p.pos });
    }
    if (entries.length === 0) return;
    const f: InFlight = {
      streams: new Set(entries.map((e) => e.stream)),
      stale: false,
      timer: setTimeout(() => {
        f.stale = true;
        this.#pumpSyncs();
      }, this.#holdTimeoutMs),
    };
    this.#inflight.push(f);
    this.#stats.syncs++;
    this.#link.send(Op.StreamSync, encodeStreamSync(entries));
  }

  // ------------------------------------------------------------ StreamState

  #onState(entries: StreamStateEntry[]): void {
    // The answer to the oldest sync names its streams with `recovered` set.
    const head = this.#inflight[0];
    if (head && entries.some((e) => e.recovered !== undefined && head.streams.has(e.stream))) {
      clearTimeout(head.timer);
      this.#inflight.shift();
    }
    for (const e of entries) {
      this.#applyState(e);
      if (this.#link === null) return;
    }
    this.#pumpSyncs();
  }

  #applyState(e: StreamStateEntry): void {
    const cur = this.#positions.get(e.stream);
    this.#replays.delete(e.stream);
    if (e.recovered === false) {
      const reason = e.reason ?? "unavailable";
      let { epoch, pos } = e;
      if (cur !== undefined) {
        if (reason === "unavailable" || reason === "disabled") {
          // The server could not tell: keep what was delivered (a later gap syncs).
          ({ epoch, pos } = cur);
        } else if (cur.epoch === epoch) {
          // Never move back within an epoch: what was delivered stays delivered.
          pos = Math.max(cur.pos, pos);
        } else {
          this.#dropHold(e.stream);
        }
      }
      this.#lose(e.stream, reason, epoch, pos);
      this.#drain(e.stream);
      return;
    }
    if (cur === undefined) {
      // Not named (or forgotten): start at the top, or before the replay that follows.
      const pos = e.recovered ? Math.max(0, e.pos - (e.replayed ?? 0)) : e.pos;
      this.#setPos(e.stream, { epoch: e.epoch, pos });
      return;
    }
    if (cur.epoch !== "" && cur.epoch !== e.epoch) {
      // Its history is gone (a new epoch, or none: "").
      this.#dropHold(e.stream);
      this.#lose(e.stream, "epoch_changed", e.epoch, e.pos);
      return;
    }
    if (cur.epoch === "" && e.epoch !== "") {
      this.#setPos(e.stream, { epoch: e.epoch, pos: cur.pos });
    }
    if (e.recovered === true) {
      // The replay follows this frame (the position stays: it brings it up to the top).
      const left = e.replayed ?? 0;
      if (left > 0 && e.pos > this.#positions.get(e.stream)!.pos) {
        this.#replays.set(e.stream, { top: e.pos, left });
      }
      this.#drain(e.stream);
      return;
    }
    // State only (after auth or op 13, for a stream not named): messages the
    // client missed are asked for, as after changing back into a room.
    if (e.pos > cur.pos && !this.#requestSync(e.stream)) {
      this.#lose(e.stream, "gap", e.epoch, e.pos);
    }
  }

  #lose(stream: string, reason: StreamLossReason, epoch: string, pos: number): void {
    this.#setPos(stream, { epoch, pos });
    this.#stats.losses++;
    this.#hooks.lost({ stream, recovered: false, reason, epoch, pos });
  }

  #setPos(stream: string, p: StreamPosition): void {
    // The common case, the same stream moving again: already the newest, so
    // updated in place (a Map delete and set per message cost more than the rest).
    if (stream === this.#newest && this.#positions.size <= this.#maxStreams) {
      const cur = this.#positions.get(stream);
      if (cur !== undefined) {
        cur.epoch = p.epoch;
        cur.pos = p.pos;
        return;
      }
    }
    this.#newest = stream;
    this.#positions.delete(stream);
    this.#positions.set(stream, p);
    if (this.#positions.size > this.#maxStreams) {
      for (const s of this.#positions.keys()) {
        // Never the stream just set: its caller reads the position back.
        if (s === stream) continue;
        if (!this.#holds.has(s) && !this.#inflight.some((f) => f.streams.has(s))) {
          this.#positions.delete(s);
          this.#syncQueue.delete(s);
          break;
        }
      }
    }
  }

  // ------------------------------------------------------------ acks

  #ack(id: string): void {
    this.#acked.add(id);
    if (this.#link === null) return;
    this.#acks.push(id);
    if (this.#acks.length >= MAX_ACK_IDS) {
      this.#flushAcks();
      return;
    }
    this.#ackTimer ??= setTimeout(() => this.#flushAcks(), this.#ackDelayMs);
  }

  #flushAcks(): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const ids = this.#acks;
    this.#acks = [];
    if (ids.length === 0 || this.#link === null) return;
    this.#stats.acks += ids.length;
    this.#stats.ackFrames++;
    this.#link.send(Op.StreamAck, encodeStreamAck(ids));
  }
}

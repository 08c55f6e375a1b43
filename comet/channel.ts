/**
 * One client connection (goim internal/comet/channel.go): who it is, which
 * room it is in, which push operations it accepts, and its bounded send
 * queue.
 *
 * The queue holds references, never copies: a push is the shared
 * {@linkcode Batch} every recipient gets, a reply is its own small frame.
 * When the flusher (./flusher.ts) gives the channel its turn, the
 * transport subclass (./tcp.ts, ./websocket.ts) turns everything queued
 * into one socket write (built once per flush pass, ./coalesce.ts): TCP concatenates inner frames and replies;
 * WebSocket frames each run of pushes as one op 9 envelope message and
 * each reply as its own message, all in the same write. The bytes bound
 * covers what is queued plus the write in flight, so a client that stops
 * reading trips it whatever the transport.
 *
 * Memory matters here (one object per connection, tens of thousands of
 * them): no closures, no timers, no per-channel arrays until something is
 * queued. Deadlines are plain numbers checked by the comet's periodic
 * sweep.
 *
 * @module
 */

import {
  type Batch,
  type DisconnectReason,
  encodeFrame,
  encodeReason,
  Op,
} from "../protocol/mod.ts";
import type { CometMetrics, TransportName } from "./metrics.ts";
import type { Room } from "./room.ts";
import type { Bucket } from "./bucket.ts";
import type { ChannelStreams } from "./streams.ts";

/** What a send queue does when a push does not fit (config comet.send_queue.policy). */
export type QueuePolicy = "disconnect" | "drop_oldest" | "drop_new";

/**
 * Bytes already framed for the transport (a WebSocket control frame such
 * as pong or close): written as they are, never counted as a goim frame.
 * `bytes` changes only through {@linkcode Channel.replaceRaw}, while the
 * item is still queued (never once a flush took it).
 */
export class RawFrame {
  /** Creates the item. */
  constructor(public bytes: Uint8Array) {}
}

/** A queued item: a shared push batch, a reply frame of this connection, or transport bytes. */
export type QueueItem = Batch | Uint8Array | RawFrame;

/** Lifecycle states of a channel, in order. */
export const ChannelState = {
  /** Connected; waiting for op 7. */
  Handshake: 0,
  /** op 7 received; waiting for logic's Connect reply. */
  Authing: 1,
  /** Authenticated: in a bucket, receives pushes. */
  Open: 2,
  /** Closing: a final op 6 is being flushed; nothing else is accepted. */
  Closing: 3,
  /** The socket is closed. */
  Closed: 4,
} as const;

/** One of {@linkcode ChannelState}. */
export type ChannelStateValue = typeof ChannelState[keyof typeof ChannelState];

/** What a channel needs from the comet around it (one shared object, not per channel). */
export interface ChannelHost {
  /** Queues a channel for its next flush. */
  schedule(ch: Channel): void;
  /** Bytes a channel may hold queued plus in the socket (comet.send_queue.max_bytes). */
  readonly maxQueueBytes: number;
  /** What happens when a push does not fit. */
  readonly policy: QueuePolicy;
  /** Hot-path counters. */
  readonly metrics: CometMetrics;
  /** Milliseconds a closing channel gets to flush its op 6 before it is cut. */
  readonly closeGraceMs: number;
  /** Called once when a channel's queue overflowed under policy `disconnect`. */
  slowConsumer(ch: Channel): void;
  /** Called once when the channel's socket is closed, by either side. */
  closed(ch: Channel): void;
  /** Bytes queued over every channel (kept by the channels). */
  queuedBytes: number;
}

const NO_OPS: readonly number[] = Object.freeze([]);
/**
 * Accepted ops up to this many are kept in an exact-size array (a scan of
 * a few numbers is as fast as a hash lookup, in a third to a half of a
 * Set's memory); more become a Set, so `accepts` stays O(1) either way.
 */
const SMALL_OPS = 16;

/** What {@linkcode Channel.accepts} looks in: NO_OPS, a small array, or a Set. */
type OpSet = readonly number[] | Set<number>;

function hasOp(ops: OpSet, op: number): boolean {
  return ops instanceof Set ? ops.has(op) : ops.includes(op);
}

/**
 * What a connection may change after auth: logic's ConnectReply scope
 * fields (100–103), from the JWT's `room` and `accepts` claims. A null side
 * is unrestricted; an unrestricted connection has no scope object at all.
 */
export interface ChannelScope {
  /** Room patterns op 12 may move to (`*` suffix = prefix match); null = any room. */
  readonly rooms: readonly string[] | null;
  /** Ops op 14 may add; null = any op. */
  readonly ops: ReadonlySet<number> | null;
}

/**
 * A connection's state and send queue; subclassed per transport.
 *
 * Writes happen only in {@linkcode Channel.flush}, called by the flusher;
 * everything else only queues, so a push to ten thousand channels is ten
 * thousand array appends and one flush pass.
 */
export abstract class Channel {
  /** The comet around this channel. */
  readonly host: ChannelHost;
  /** Remote IP (for per-IP counts). */
  readonly ip: string;
  /** Lifecycle state, one of {@linkcode ChannelState}. */
  state: ChannelStateValue = ChannelState.Handshake;
  /** User id from logic's Connect reply. */
  mid = 0;
  /** Connection key from logic's Connect reply (bucket map key). */
  key = "";
  /** The bucket holding this channel once authenticated. */
  bucket: Bucket | null = null;
  /** The room this channel is in (within its bucket), if any. */
  room: Room | null = null;
  /** Previous member of {@linkcode Channel.room} (intrusive list). */
  roomPrev: Channel | null = null;
  /** Next member of {@linkcode Channel.room} (intrusive list). */
  roomNext: Channel | null = null;
  /** Handshake deadline, then idle deadline, then close deadline (ms, performance clock). */
  deadline = 0;
  /**
   * When the connection's token expires and the sweep closes it (ms,
   * performance clock; ConnectReply field 104); 0 = never.
   */
  expiresAt = 0;
  /** When this channel next refreshes its route in logic (ms, performance clock). */
  routeAt = 0;
  /** Set when a newer connection with the same key took over: skip logic.Disconnect. */
  replaced = false;
  /** The auth scope (ops 12 and 14); null = unrestricted (goim's behaviour). */
  scope: ChannelScope | null = null;
  /**
   * Stream state of a connection that opted in (ConnectReply field 105,
   * comet/streams.ts), set before it joins its bucket and never changed;
   * null for every goim connection, which pays only this null check.
   */
  streams: ChannelStreams | null = null;
  /** Whether the channel is in the flusher's list. */
  scheduled = false;
  /** Whether the channel is in the flusher's urgent list (a key push waits in it). */
  urgent = false;
  /** Queued items, oldest first; null when empty (most channels, most of the time). */
  queue: QueueItem[] | null = null;
  #queued = 0;
  /** Why the server closed this channel (metric label); "" while open. */
  closeReason = "";
  /** The op 6 reason code of a server-decided close (WebSocket close code); 1000 otherwise. */
  closeCode = 1000;
  /**
   * Client-frame rate state (comet.limits.frame_rate, see ConnectionHub.admit):
   * the time the token bucket would be full again, one number instead of
   * tokens plus last refill (ms, performance clock; 0 = full).
   */
  rateAt = 0;
  /**
   * When the socket was accepted, in whole seconds of the performance clock:
   * the console's "connected since" (comet/operator.ts). Seconds keep it a
   * small integer, stored in the object like the other numbers here.
   */
  readonly connectedAt: number = Math.floor(performance.now() / 1000);
  #ops: OpSet = NO_OPS;

  /** Creates a channel in the handshake state. */
  constructor(host: ChannelHost, ip: string) {
    this.host = host;
    this.ip = ip;
  }

  /** Transport name, for metrics and stats. */
  abstract get transport(): TransportName;
  /** Bytes of the write in flight (handed to the socket, not yet taken by the kernel). */
  abstract get inflight(): number;
  /** Size a push takes in this transport's queue. */
  protected abstract pushSize(batch: Batch): number;
  /**
   * Hands everything queued to the socket as one write. Returns a promise
   * that settles when that write completes, or undefined when nothing was
   * written (empty queue, or a write already in flight: its completion
   * reschedules the channel). Called by the flusher only.
   */
  abstract flush(): Promise<void> | undefined;
  /** Closes the socket now, without flushing; the transport then reports the close. */
  abstract abort(): void;

  /** Bytes in {@linkcode Channel.queue}. */
  get queued(): number {
    return this.#queued;
  }

  /** Takes the whole queue (for a flush), leaving it empty. */
  takeQueue(): QueueItem[] | null {
    const q = this.queue;
    this.queue = null;
    this.host.queuedBytes -= this.#queued;
    this.#queued = 0;
    return q;
  }

  /** Drops everything queued. */
  clearQueue(): void {
    this.takeQueue();
  }

  #addQueued(n: number): void {
    this.#queued += n;
    this.host.queuedBytes += n;
  }

  /** Whether a key or broadcast push with `op` reaches this channel. */
  accepts(op: number): boolean {
    const ops = this.#ops;
    return ops instanceof Set ? ops.has(op) : ops.includes(op);
  }

  /** How many distinct operations the channel accepts. */
  get opCount(): number {
    const ops = this.#ops;
    return ops instanceof Set ? ops.size : ops.length;
  }

  /**
   * Adds operations to the accepts set (auth, op 14), all or nothing:
   * returns false, changing nothing, when the set would then hold more
   * than `max` distinct operations (comet.limits.max_ops). Linear in
   * `ops` (duplicates included), whatever the set's size.
   */
  watch(ops: readonly number[], max: number): boolean {
    const cur = this.#ops;
    const had = this.opCount;
    let fresh: Set<number> | null = null;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      if (hasOp(cur, op)) continue;
      (fresh ??= new Set()).add(op);
      if (had + fresh.size > max) return false;
    }
    if (fresh === null) return true;
    if (cur instanceof Set) {
      for (const op of fresh) cur.add(op);
    } else if (had + fresh.size <= SMALL_OPS) {
      this.#ops = cur.concat(Array.from(fresh)); // exact size, unlike push
    } else {
      for (const op of cur) fresh.add(op);
      this.#ops = fresh;
    }
    return true;
  }

  /** Removes operations from the accepts set (op 16). Linear in `ops`. */
  unwatch(ops: readonly number[]): void {
    const cur = this.#ops;
    if (ops.length === 0) return;
    if (cur instanceof Set) {
      for (let i = 0; i < ops.length; i++) cur.delete(ops[i]);
      if (cur.size <= SMALL_OPS) this.#ops = cur.size === 0 ? NO_OPS : Array.from(cur);
      return;
    }
    if (cur.length === 0) return;
    // At most SMALL_OPS scans of `ops`.
    const next = cur.filter((op) => !ops.includes(op));
    // slice(): filter's result keeps spare capacity, a copy is exact.
    if (next.length !== cur.length) this.#ops = next.length === 0 ? NO_OPS : next.slice();
  }

  /**
   * Queues a push (shared bytes). Applies the queue policy when it does not
   * fit; returns false when it was not queued.
   */
  push(batch: Batch): boolean {
    if (this.state !== ChannelState.Open) return false;
    const st = this.streams;
    if (st !== null && st.holding) return this.#hold(st, batch);
    const size = this.pushSize(batch);
    const host = this.host;
    if (this.queued + this.inflight + size > host.maxQueueBytes && !this.#makeRoom(size, batch)) {
      return false;
    }
    if (this.queue === null) this.queue = [batch];
    else this.queue.push(batch);
    this.#addQueued(size);
    if (!this.scheduled) host.schedule(this);
    return true;
  }

  /**
   * Queues a reply frame. Replies are never dropped: one that does not fit
   * means the client sends requests without reading the answers, and it is
   * closed as a slow consumer.
   */
  reply(frame: Uint8Array): void {
    if (this.state >= ChannelState.Closing) return;
    if (this.queued + this.inflight + frame.length > this.host.maxQueueBytes) {
      this.#overflow();
      return;
    }
    this.#append(frame);
  }

  /** Queues a reply frame built from its parts. */
  replyFrame(ver: number, op: number, seq: number, body?: Uint8Array): void {
    this.reply(encodeFrame({ ver, op, seq, body }));
  }

  /**
   * Starts a server-decided close: queues op 6 with `reason` behind what is
   * already queued, then closes once it is flushed (or after the close
   * grace, whichever comes first; the sweep enforces it). Idempotent.
   */
  end(reason: DisconnectReason, label: string, graceMs = this.host.closeGraceMs): void {
    if (this.state >= ChannelState.Closing) return;
    this.state = ChannelState.Closing;
    this.closeReason = label;
    this.closeCode = reason.code;
    this.deadline = performance.now() + graceMs;
    this.#append(
      encodeFrame({ ver: 1, op: Op.DisconnectReply, seq: 0, body: encodeReason(reason) }),
    );
    this.ended();
  }

  /**
   * Starts a close without op 6 (the client asked for it, or the socket
   * never got far enough to speak goim): drops what is queued, sends
   * `last` (transport bytes such as a close frame) if given, then closes.
   * Idempotent.
   */
  endQuietly(label: string, last?: Uint8Array, graceMs = this.host.closeGraceMs): void {
    if (this.state >= ChannelState.Closing) return;
    this.state = ChannelState.Closing;
    this.closeReason = label;
    this.deadline = performance.now() + graceMs;
    this.clearQueue();
    if (last !== undefined) this.appendRaw(last, true);
    else if (!this.scheduled) this.host.schedule(this);
  }

  /** Hook run when a close starts (after op 6 is queued): WebSocket queues its close frame. */
  protected ended(): void {}

  /**
   * Queues transport-framed bytes, such as a pong. They count against the
   * send-queue bound like a reply (a client that pings without reading must
   * not grow its queue past `maxQueueBytes`): one that does not fit closes
   * the channel as a slow consumer and returns null. `force` is for the
   * final close frame of a channel already closing, which is tiny and
   * must go out whatever is queued.
   */
  protected appendRaw(bytes: Uint8Array, force = false): RawFrame | null {
    if (!force) {
      if (this.state >= ChannelState.Closing) return null;
      if (this.queued + this.inflight + bytes.length > this.host.maxQueueBytes) {
        this.#overflow();
        return null;
      }
    }
    const item = new RawFrame(bytes);
    if (this.queue === null) this.queue = [item];
    else this.queue.push(item);
    this.#addQueued(bytes.length);
    if (!this.scheduled) this.host.schedule(this);
    return item;
  }

  /**
   * Swaps the bytes of a raw item that is still queued (the caller knows it
   * is: see WsChannel's pong), under the same bound as
   * {@linkcode Channel.appendRaw}. Returns false (and closes the channel
   * as a slow consumer) when the new bytes do not fit.
   */
  protected replaceRaw(item: RawFrame, bytes: Uint8Array): boolean {
    const delta = bytes.length - item.bytes.length;
    if (delta > 0 && this.queued + this.inflight + delta > this.host.maxQueueBytes) {
      this.#overflow();
      return false;
    }
    item.bytes = bytes;
    this.#addQueued(delta);
    return true;
  }

  /** Whether the close grace of a closing channel has run out. */
  overdue(now: number): boolean {
    return this.state === ChannelState.Closing && now >= this.deadline;
  }

  /** Frames held by queued items (a batch counts its inner frames). */
  protected static frameCount(items: readonly QueueItem[]): number {
    let n = 0;
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      n += it instanceof Uint8Array ? 1 : it instanceof RawFrame ? 0 : it.count;
    }
    return n;
  }

  #append(frame: Uint8Array): void {
    if (this.queue === null) this.queue = [frame];
    else this.queue.push(frame);
    this.#addQueued(frame.length);
    if (!this.scheduled) this.host.schedule(this);
  }

  /**
   * Holds a push while a stream recovery is out (comet/streams.ts), in
   * order, under the send-queue bound: what is held counts with what is
   * queued, and the queue policy applies to the held pushes (drop_oldest
   * drops the oldest held one; what is already queued stays).
   */
  #hold(st: ChannelStreams, batch: Batch): boolean {
    const size = this.pushSize(batch);
    const host = this.host;
    const m = host.metrics;
    const max = host.maxQueueBytes;
    if (st.heldBytes + this.queued + this.inflight + size > max) {
      if (host.policy === "disconnect") {
        let frames = batch.count;
        for (const b of st.held ?? []) frames += b.count;
        m.droppedDisconnect += frames;
        st.dropHeld(m);
        this.#overflow();
        return false;
      }
      const held = st.held;
      if (host.policy === "drop_oldest" && held !== null) {
        while (held.length > 0 && st.heldBytes + this.queued + this.inflight + size > max) {
          const old = held.shift()!;
          const n = this.pushSize(old);
          st.heldBytes -= n;
          m.streamHeldBytes -= n;
          m.droppedOldest += old.count;
        }
      }
      if (st.heldBytes + this.queued + this.inflight + size > max) {
        m.droppedNew += batch.count;
        return false;
      }
    }
    if (st.held === null) st.held = [batch];
    else st.held.push(batch);
    st.heldBytes += size;
    m.streamHeldBytes += size;
    return true;
  }

  // Returns true when `size` more bytes now fit (drop_oldest made room).
  #makeRoom(size: number, batch: Batch): boolean {
    const host = this.host;
    if (host.policy === "drop_new") {
      host.metrics.droppedNew += batch.count;
      return false;
    }
    if (host.policy === "drop_oldest") {
      const q = this.queue;
      if (q !== null) {
        // Only pushes are dropped: replies answer the client's own requests.
        let i = 0;
        while (i < q.length && this.queued + this.inflight + size > host.maxQueueBytes) {
          const it = q[i];
          if (it instanceof Uint8Array || it instanceof RawFrame) {
            i++;
            continue;
          }
          q.splice(i, 1);
          this.#addQueued(-this.pushSize(it));
          host.metrics.droppedOldest += it.count;
        }
        if (q.length === 0) this.clearQueue();
      }
      if (this.queued + this.inflight + size <= host.maxQueueBytes) return true;
      // Still no room: what the socket holds cannot be dropped.
      host.metrics.droppedNew += batch.count;
      return false;
    }
    host.metrics.droppedDisconnect += batch.count;
    this.#overflow();
    return false;
  }

  #overflow(): void {
    const q = this.takeQueue();
    if (q !== null) this.host.metrics.droppedDisconnect += Channel.frameCount(q);
    this.host.slowConsumer(this);
  }
}

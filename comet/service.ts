/**
 * `goim.comet.Comet` (PushMsg, Broadcast, BroadcastRoom, Rooms): what job
 * calls, over gRPC in distributed mode or directly in embedded mode (goim
 * internal/comet/grpc/server.go).
 *
 * Each call encodes its message once into a {@linkcode Batch}; every
 * recipient queues a reference to those same bytes. A proto with op 9 is
 * already a batch of inner frames (goim's job concatenates room messages
 * that way) and is wrapped as is.
 *
 * Only business ops are pushed, by the rule logic's HTTP API applies to
 * `operation` ({@linkcode isBusinessOp}: 18 to 2147483391). Ops 0–17 are the
 * protocol's own — a pushed op 8 reads as an auth reply, op 3 as a heartbeat
 * reply, op 6 as a disconnect — so whoever calls, a proto whose op is neither
 * 9 nor a business op, or an op 9 batch with any inner frame that is not, is
 * refused INVALID_ARGUMENT and counted in
 * `pushes_refused_total{reason="reserved_op"}`. goim's job builds inner frames
 * from the pushes' own operations, so it is refused only what no API should
 * have accepted.
 *
 * Stream fields (docs/STREAMS.md; fields 100+ of PushMsgReq, BroadcastReq
 * and BroadcastRoomReq, which a goim job never sets): a push with a
 * position, a push id or an ack request is also wrapped once per call as
 * `StreamMsg` frames (comet/streams.ts) — only when a target opted in (a
 * broadcast: when any channel of this comet did, `CometStreams.connections`)
 * — and those go to the opted-in targets, the plain batch to every other.
 * Malformed stream fields (a position or push id count that is not one per
 * frame, positions not ascending, a bad epoch or push id) are
 * INVALID_ARGUMENT, counted as `invalid`.
 *
 * @module
 */

import type { Logger } from "../infra/log.ts";
import type { Counter } from "../infra/metrics.ts";
import type { CometApi } from "../proto/api.ts";
import { grpcStatus, invalidArgument as invalid, RpcError } from "../proto/grpc.ts";
import type {
  BroadcastReply,
  BroadcastReq,
  BroadcastRoomReply,
  BroadcastRoomReq,
  Proto,
  PushMsgReply,
  PushMsgReq,
  RoomsReply,
} from "../proto/messages.ts";
import {
  type Batch,
  batchFromFrames,
  encodePush,
  isBusinessOp,
  isEpoch,
  isPushId,
  MAX_EPOCH_BYTES,
  MAX_POS,
  Op,
  readU32,
} from "../protocol/mod.ts";
import type { Channel } from "./channel.ts";
import type { CometMetrics } from "./metrics.ts";
import type { ConnectionHub } from "./hub.ts";
import {
  broadcastStreamBatch,
  pushStreamBatch,
  roomStreamBatch,
  type StreamBatch,
} from "./streams.ts";

/** A paced broadcast pushes to this many connections per step at most (10 steps a second). */
export const BROADCAST_STEPS_PER_SECOND = 10;

const EMPTY = new Uint8Array(0);

/** A push refused for a protocol op (0–17): told apart for the metric. */
class ReservedOp extends RpcError {
  constructor(message: string) {
    super(grpcStatus.INVALID_ARGUMENT, message);
  }
}

const BUSINESS_OPS =
  "a business op: 18 to 2147483391; 0-17 are protocol ops, 2147483392 up stream ops";

// Offset of `op` in a frame header: packLen u32, headerLen u16, ver u16, op u32.
const OP_OFFSET = 8;

/** Throws unless every inner frame of a validated op 9 body carries a business op. */
function checkInnerOps(frames: Uint8Array): void {
  for (let o = 0, i = 0; o < frames.length; i++) {
    const op = readU32(frames, o + OP_OFFSET) | 0;
    if (!isBusinessOp(op)) {
      throw new ReservedOp(`op 9 inner frame ${i} has op ${op}, not ${BUSINESS_OPS}`);
    }
    o += readU32(frames, o);
  }
}

function checkEpoch(epoch: string): void {
  if (!isEpoch(epoch)) {
    throw invalid(`epoch must be ASCII of at most ${MAX_EPOCH_BYTES} bytes`);
  }
}

function checkPushId(id: string, what: string): void {
  if (id !== "" && !isPushId(id)) throw invalid(`${what} must be 1-64 characters of [A-Za-z0-9_-]`);
}

/** Throws unless `ids` has one push id per frame; "" (a frame without one) only if `emptyOk`. */
function checkPushIds(ids: readonly string[], frames: number, emptyOk: boolean): void {
  if (ids.length !== frames) throw invalid(`${ids.length} push ids for ${frames} frames`);
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] === "" && !emptyOk) throw invalid(`push_ids[${i}] is empty`);
    checkPushId(ids[i], `push_ids[${i}]`);
  }
}

/** The room push's stream fields, checked against its batch; null when it has none. */
function roomStreamOf(
  req: BroadcastRoomReq,
  batch: Batch,
): { epoch: string; positions: number[]; pushIds: string[] } | null {
  const positions = (req.positions ?? []).map(Number);
  if (positions.length === 0) return null;
  if (positions.length !== batch.count) {
    throw invalid(`${positions.length} positions for ${batch.count} frames`);
  }
  for (let i = 0, prev = 0; i < positions.length; i++) {
    const p = positions[i];
    if (!Number.isSafeInteger(p) || p <= prev || p > MAX_POS) {
      throw invalid(`positions must be ascending integers from 1, got ${p} at ${i}`);
    }
    prev = p;
  }
  const pushIds = req.push_ids ?? [];
  if (pushIds.length !== 0) checkPushIds(pushIds, batch.count, true);
  const epoch = req.epoch ?? "";
  checkEpoch(epoch);
  return { epoch, positions, pushIds };
}

/**
 * The broadcast's push ids, one per frame of its batch; null when it has
 * none (a goim job's broadcast: opted-in channels get the plain frames).
 */
function broadcastIdsOf(req: BroadcastReq, batch: Batch): readonly string[] | null {
  const ids = req.push_ids ?? [];
  if (ids.length === 0) return null;
  checkPushIds(ids, batch.count, false);
  return ids;
}

/**
 * The key or mid push's stream fields; null when opted-in targets get the
 * plain frame too (no push id: a goim job's push). A key push with a push id
 * is wrapped for opted-in targets even without ack, so that the SDK drops
 * it when job redelivers it after a crash.
 */
function pushStreamOf(
  req: PushMsgReq,
): { stream: string; epoch: string; pos: number; pushId: string; ack: boolean } | null {
  const stream = req.stream ?? "";
  const pushId = req.push_id ?? "";
  const ack = req.ack === true;
  if (stream === "" && pushId === "") return null;
  checkPushId(pushId, "push_id");
  if (stream === "") return { stream, epoch: "", pos: 0, pushId, ack };
  if (!stream.startsWith("mid:")) throw invalid(`stream "${stream}" is not a mid: stream`);
  const pos = Number(req.pos ?? 0);
  if (!Number.isSafeInteger(pos) || pos < 1) throw invalid(`pos ${req.pos} is not a position`);
  const epoch = req.epoch ?? "";
  checkEpoch(epoch);
  return { stream, epoch, pos, pushId, ack };
}

/**
 * Encodes a proto from job once, for every recipient and both transports.
 *
 * @example
 * ```ts
 * declare const msg: Uint8Array;
 * const batch = batchOf({ ver: 1, op: 1000, seq: 0, body: msg }); // one inner frame
 * ```
 */
export function batchOf(proto: Proto | null | undefined): Batch {
  if (!proto) throw invalid("proto is required");
  const body = proto.body ?? EMPTY;
  if (proto.op === Op.Raw) {
    let batch: Batch;
    try {
      batch = batchFromFrames(body);
    } catch (e) {
      throw invalid(`op 9 body is not whole frames: ${(e as Error).message}`);
    }
    checkInnerOps(body);
    return batch;
  }
  if (!isBusinessOp(proto.op)) throw new ReservedOp(`op ${proto.op} is not ${BUSINESS_OPS}`);
  return encodePush(proto.op, body);
}

/**
 * The comet's {@linkcode CometApi}.
 *
 * `Broadcast` pacing: `speed` is connections per second, as in goim
 * (which sleeps `channels / speed` seconds after each bucket). With
 * `speed > 0` the call returns at once and the push proceeds in steps of
 * `ceil(speed / 10)` connections every 100 ms over a snapshot of the
 * connections that accept the operation; with `speed = 0` every connection
 * is queued before the call returns.
 *
 * `BroadcastRoom` and unpaced `Broadcast` answer once their frames have been
 * handed to the sockets (the flusher's next pass has ended), not when they
 * are queued: the answer's delay is how busy this comet's writes are, and
 * job grows its next batch for the room meanwhile (job/batcher.ts). So a
 * saturated comet gets fewer, bigger batches — more frames per socket write
 * — instead of a longer backlog. `PushMsg` answers when queued: key pushes
 * are small and must not wait behind a fan-out pass.
 *
 * @example
 * ```ts
 * import type { Logger } from "../infra/log.ts";
 * import type { ConnectionHub } from "./hub.ts";
 * import type { CometMetrics } from "./metrics.ts";
 * declare const hub: ConnectionHub, metrics: CometMetrics, log: Logger, body: Uint8Array;
 * const service = new CometService(hub, metrics, log);
 * await service.BroadcastRoom({ roomID: "live://1000", proto: { ver: 1, op: 1000, seq: 0, body } });
 * service.stop(); // cancels paced broadcasts still running
 * ```
 */
export class CometService implements CometApi {
  readonly #hub: ConnectionHub;
  readonly #metrics: CometMetrics;
  readonly #log: Logger;
  readonly #refused: Counter<"kind" | "reason">;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #stopped = false;

  /** Serves pushes into `hub`. */
  constructor(hub: ConnectionHub, metrics: CometMetrics, log: Logger) {
    this.#hub = hub;
    this.#metrics = metrics;
    this.#log = log;
    this.#refused = metrics.registry.counter(
      "pushes_refused_total",
      "Push requests refused INVALID_ARGUMENT, by kind and reason (reserved_op: a protocol op 0-17 as the op or an op 9 inner op; invalid: any other malformed request).",
      ["kind", "reason"],
    );
  }

  /** Paced broadcasts still running. */
  get pacedBroadcasts(): number {
    return this.#timers.size;
  }

  /** Push to the connections with these keys that accept `protoOp`; unknown keys are skipped. */
  PushMsg = (req: PushMsgReq): Promise<PushMsgReply> => {
    try {
      this.pushMsg(req);
      return Promise.resolve({});
    } catch (e) {
      return Promise.reject(e);
    }
  };

  /**
   * PushMsg, synchronously: throws the RpcError PushMsg would reject with.
   * The stream of key pushes (proto/push_stream.ts) calls it per push with
   * `viaStream`: its calls are counted per batch ({@linkcode CometService.streamBatch}).
   */
  pushMsg(req: PushMsgReq, viaStream = false): void {
    this.#pushSync(viaStream ? null : "PushMsg", "keys", req, () => {
      const keys = req.keys ?? [];
      if (keys.length === 0) throw invalid("keys are required");
      const stream = pushStreamOf(req);
      return (batch) => {
        const op = req.protoOp ?? 0;
        const hub = this.#hub;
        if (stream === null) {
          for (let i = 0; i < keys.length; i++) {
            const key = keys[i];
            const ch = hub.bucket(key).pushKey(key, op, batch);
            if (ch !== undefined) hub.expedite(ch);
          }
          return;
        }
        let sb: StreamBatch | null = null;
        for (let i = 0; i < keys.length; i++) {
          const key = keys[i];
          const ch = hub.bucket(key).channels.get(key);
          if (ch === undefined || !ch.accepts(op)) continue;
          if (ch.streams === null) {
            if (ch.push(batch)) hub.expedite(ch);
            continue;
          }
          sb ??= this.#wrap(() =>
            pushStreamBatch(
              batch.tcp,
              stream.stream,
              stream.epoch,
              stream.pos,
              stream.pushId,
              stream.ack,
            )
          );
          if (hub.streams.deliver(ch, sb)) hub.expedite(ch);
        }
      };
    });
  }

  /** Counts one batch of the key-push stream as a `PushMsgs` call. */
  streamBatch = (): void => {
    this.#metrics.grpcCalls.inc({ method: "PushMsgs" });
  };

  /** Push to every member of a room (no accepts filter). */
  BroadcastRoom = (req: BroadcastRoomReq): Promise<BroadcastRoomReply> =>
    this.#push("BroadcastRoom", "room", req, true, () => {
      const roomID = req.roomID ?? "";
      if (roomID === "") throw invalid("roomID is required");
      return (batch) => {
        const buckets = this.#hub.buckets;
        const stream = roomStreamOf(req, batch);
        if (stream === null) {
          for (let i = 0; i < buckets.length; i++) buckets[i].pushRoom(roomID, batch);
          return;
        }
        let sb: StreamBatch | null = null;
        const wrapped = () =>
          sb ??= this.#wrap(() =>
            roomStreamBatch(roomID, batch.tcp, stream.epoch, stream.positions, stream.pushIds)
          );
        const streams = this.#hub.streams;
        for (let i = 0; i < buckets.length; i++) {
          buckets[i].pushRoomStream(roomID, batch, wrapped, streams);
        }
      };
    });

  /**
   * Push to every connection that accepts `protoOp`, paced by `speed`
   * (connections/s). With `push_ids`, opted-in connections get the frames
   * as kind 3 `StreamMsg`s (built once, and only while this comet has an
   * opted-in connection), the others the plain frames.
   */
  Broadcast = (req: BroadcastReq): Promise<BroadcastReply> =>
    this.#push("Broadcast", "broadcast", req, (req.speed ?? 0) <= 0, () => (batch) => {
      const op = req.protoOp ?? 0;
      const speed = req.speed ?? 0;
      const ids = broadcastIdsOf(req, batch);
      const streams = this.#hub.streams;
      const sb = ids !== null && streams.connections > 0
        ? this.#wrap(() => broadcastStreamBatch(batch.tcp, ids))
        : null;
      if (speed > 0) {
        this.#paced(batch, op, speed, sb);
        return;
      }
      const buckets = this.#hub.buckets;
      if (sb === null) {
        for (let i = 0; i < buckets.length; i++) buckets[i].broadcast(batch, op);
        return;
      }
      for (let i = 0; i < buckets.length; i++) buckets[i].broadcastStream(batch, op, sb, streams);
    });

  /** Rooms with members on this comet. */
  Rooms = (): Promise<RoomsReply> => {
    this.#metrics.grpcCalls.inc({ method: "Rooms" });
    const rooms: Record<string, boolean> = {};
    for (const id of this.#hub.online.roomIds()) rooms[id] = true;
    return Promise.resolve({ rooms });
  };

  /** Cancels paced broadcasts; later paced broadcasts are refused. */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  /**
   * What every push call shares: count the call, validate the request
   * (`prepare` throws on a bad one and returns the delivery), encode the
   * proto once, count the push, deliver unless the batch is empty (an op 9
   * proto with no inner frames); with `whenWritten`, answer once the frames
   * are handed to the sockets. Every error becomes a rejected promise.
   */
  #push(
    method: string,
    kind: string,
    req: { proto?: Proto | null },
    whenWritten: boolean,
    prepare: () => (batch: Batch) => void,
  ): Promise<Record<never, never>> {
    try {
      this.#pushSync(method, kind, req, prepare);
    } catch (e) {
      return Promise.reject(e);
    }
    return whenWritten ? this.#hub.written().then(() => ({})) : Promise.resolve({});
  }

  #pushSync(
    method: string | null,
    kind: string,
    req: { proto?: Proto | null },
    prepare: () => (batch: Batch) => void,
  ): void {
    if (method !== null) this.#metrics.grpcCalls.inc({ method });
    try {
      const deliver = prepare();
      const batch = batchOf(req.proto);
      this.#metrics.pushesTotal.inc({ kind });
      if (batch.count > 0) deliver(batch);
    } catch (e) {
      if (e instanceof RpcError && e.code === grpcStatus.INVALID_ARGUMENT) {
        this.#refused.inc({ kind, reason: e instanceof ReservedOp ? "reserved_op" : "invalid" });
      }
      throw e;
    }
  }

  // Builds StreamMsg frames; a field the wire contract refuses is INVALID_ARGUMENT.
  #wrap(build: () => StreamBatch): StreamBatch {
    try {
      return build();
    } catch (e) {
      throw invalid(`stream fields: ${(e as Error).message}`);
    }
  }

  // `sb`: the broadcast's StreamMsg frames for opted-in targets; null: plain for all.
  #paced(batch: Batch, op: number, speed: number, sb: StreamBatch | null): void {
    if (this.#stopped) throw new RpcError(grpcStatus.UNAVAILABLE, "comet is shutting down");
    const targets: Channel[] = [];
    for (const b of this.#hub.buckets) b.collectAccepting(op, targets);
    const step = Math.max(1, Math.ceil(speed / BROADCAST_STEPS_PER_SECOND));
    const delayMs = (step / speed) * 1000;
    const streams = this.#hub.streams;
    let i = 0;
    const run = (timer?: ReturnType<typeof setTimeout>) => {
      if (timer !== undefined) this.#timers.delete(timer);
      if (this.#stopped) return;
      const end = Math.min(targets.length, i + step);
      if (sb === null) {
        for (; i < end; i++) targets[i].push(batch);
      } else {
        for (; i < end; i++) {
          const ch = targets[i];
          if (ch.streams === null) ch.push(batch);
          else streams.deliver(ch, sb);
        }
      }
      if (i < targets.length) {
        const t: ReturnType<typeof setTimeout> = setTimeout(() => run(t), delayMs);
        this.#timers.add(t);
      } else {
        this.#log.debug("paced broadcast done", { op, connections: targets.length, speed });
      }
    };
    run();
  }
}

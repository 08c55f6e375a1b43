/**
 * The job role: consumes push messages from the queue and hands them to the
 * comets that hold their targets (goim internal/job).
 *
 * - Comets come from the registry, polled every `registryPollMs` (and
 *   again when a PUSH names a comet job does not know). Each comet gets a
 *   client (`deps.connect`) and `job.comet_lanes` lanes (./comet.ts); a
 *   comet that leaves the registry is closed and its queued calls skipped.
 * - Lanes are chosen by hash — of the first key (PUSH), the room (ROOM) or
 *   the operation (BROADCAST) — so everything for one key or room reaches a
 *   comet in queue order. (goim picks lanes round robin and so may reorder.)
 * - PUSH goes to the comet named by `server`, as one PushMsg call. An
 *   unknown server triggers one registry refresh; still unknown → skipped.
 * - ROOM messages are batched per room (./batcher.ts) and the batch — built
 *   once — is sent as BroadcastRoom with op 9 (Raw) to the comets that have
 *   members in the room (./membership.ts: never misses a member).
 * - BROADCAST with `speed` 0 is batched per operation by the same batcher
 *   (key `op:<operation>`, same `job.room.batch` / `job.room.window`) and
 *   each batch goes to every comet as one Broadcast with protoOp =
 *   operation and an op 9 (Raw) proto, so a comet makes one fan-out pass
 *   per batch, not per message. A paced BROADCAST (`speed` > 0) is sent on
 *   its own — after flushing its operation's batch, so order holds — with
 *   `speed` divided by the number of comets as goim does (but never down
 *   to 0, which would mean unpaced).
 *
 * Streams (docs/STREAMS.md; with `streams.enabled` and a `streams` store,
 * ./streams.ts): job is the one ordering point of every stream.
 * - A sealed room batch is appended to `room:<room>` in one call — after
 *   the room's previous append returned — and its BroadcastRoom carries the
 *   epoch, the positions and the push ids (one per inner frame). The
 *   membership decision for it takes a stamp *after* the append, so a
 *   member that a Rooms() answer misses joined after the append and finds
 *   the message in its recovery.
 * - A PUSH with `mid` and no server or keys is appended to `mid:<mid>`;
 *   *then* the mid's live keys are looked up (`sessions.keysByMids`) —
 *   never before, so a connection stored before the append is found and
 *   one stored after reads the message in its recovery — and each comet
 *   holding some gets one PushMsg with the stream, epoch, position, push id
 *   and `ack`, in the lane of the stream name. Appends, lookups and
 *   submissions of one mid run in queue order, so append order is delivery
 *   order at every comet. Without a history (streams off) the keys are
 *   still looked up and pushed, without a position.
 * - Every key push passes its push id through (opted-in clients drop a
 *   redelivery by it), with `ack` also `ack`.
 * - A broadcast carries one push id per frame (`push_ids`), in a batch as
 *   in a paced one, so that opted-in clients drop a redelivered one.
 * - With `ack`, the push status (`pushStatus.delivered`) gets the number
 *   of connections handed the push: per mid the keys found (0: offline),
 *   per key 1 (0 when it could not be handed over).
 * - A store that fails is retried until it answers; the message's handler
 *   waits meanwhile (the queue keeps it). A redelivered message carries the
 *   same push id (./streams.ts, `pushIdOf`) and gets its first position
 *   again, which the comet drops as a duplicate.
 *
 * Acknowledgement: the handler resolves once the message was handed to all
 * its comets — for a room message, once the batch carrying it was sent — or
 * once job gave up on it (skipped: counted by reason, logged, and not
 * blocking the partition). So a committed offset means "delivered to the
 * comet or deliberately dropped". The handler rejects only while job is
 * aborting a stop, so that the queue redelivers those messages later.
 *
 * Room membership: a comet is left out of a room batch only on a Rooms()
 * answer to a call sent after the batch's first message arrived, so a
 * member that joined before a message was published always gets it
 * (./membership.ts). Rooms() is also polled every `roomsRefreshMs`.
 * Batches of one room (or of one broadcast operation) are handed to the
 * comets in order.
 *
 * @example
 * ```ts
 * import { createCometClient } from "../proto/grpc.ts";
 * declare const { config, consumer, registry }: JobDeps;
 * const job = new Job({ config, consumer, registry, connect: (rec) => createCometClient(rec.grpcAddr) });
 * await job.start();
 * // ...
 * await job.stop();
 * ```
 *
 * @module
 */

import type { Config } from "../infra/config.ts";
import type { Logger } from "../infra/log.ts";
import { createMetrics, type Metrics } from "../infra/metrics.ts";
import type { PushConsumer, PushHandler, PushMeta } from "../infra/queue.ts";
import type { CometRecord, Registry } from "../infra/registry.ts";
import type { SessionStore } from "../infra/sessions.ts";
import {
  midStream,
  type PushStatusStore,
  roomStream,
  type StreamEntryInit,
  type StreamStore,
} from "../infra/streams.ts";
import type { CometApi } from "../proto/api.ts";
import type {
  BroadcastReq,
  BroadcastRoomReq,
  Proto,
  PushMsg,
  PushMsgReq,
} from "../proto/messages.ts";
import type { Batch } from "../protocol/batch.ts";
import { Op } from "../protocol/ops.ts";
import { type CallOutcome, CometConn } from "./comet.ts";
import { type JobMetrics, jobMetrics, type SkipReason } from "./metrics.ts";
import { type FlushBatch, PushBatcher } from "./batcher.ts";
import { RoomSnapshot, Stamps } from "./membership.ts";
import { inOrder } from "./order.ts";
import { isStreamName, pushIdOf, REFUSED, StreamWriter } from "./streams.ts";

/** What job needs from its surroundings. */
export interface JobDeps {
  /** The configuration (`job.*` keys). */
  config: Config;
  /** The queue's consuming end. */
  consumer: PushConsumer;
  /** Where comets are found. */
  registry: Registry;
  /** Makes a client for a comet (gRPC in distributed mode, the service object embedded). */
  connect: (rec: CometRecord) => CometApi & { close?(): void };
  /** Logger (silent if absent). */
  log?: Logger;
  /** Metrics registry (a fresh `createMetrics("job")` if absent). */
  metrics?: Metrics;
  /** Clock in ms since the epoch (default `Date.now`): latency and room idleness. */
  now?: () => number;
  /** Registry poll interval (default 3000 ms). */
  registryPollMs?: number;
  /** Rooms() poll interval per comet (default 1000 ms). */
  roomsRefreshMs?: number;
  /** Shortest gap between on-demand Rooms() calls to one comet (default 10 ms). */
  roomsMinGapMs?: number;
  /** Longest a room batch waits for a fresh Rooms() answer before it is sent anyway (default 200 ms). */
  roomsWaitMs?: number;
  /** How long stop() lets queued messages drain before aborting them (default 10000 ms). */
  stopTimeoutMs?: number;
  /**
   * Stream history (docs/STREAMS.md). With `streams.enabled`, room batches
   * and mid pushes are appended and carry positions; absent: none do.
   */
  streams?: StreamStore;
  /** Session routes: a mid's live keys, for mid pushes (skipped as invalid without it). */
  sessions?: SessionStore;
  /** Status of ack-requested pushes (not recorded without it). */
  pushStatus?: PushStatusStore;
}

/** Thrown by the handler for messages job abandons while stopping: the queue keeps them. */
export class JobStoppingError extends Error {
  constructor() {
    super("job is stopping; message left in the queue");
    this.name = "JobStoppingError";
  }
}

type Outcome = { ok: true } | { ok: false; reason: SkipReason | "stopping"; error?: unknown };

const OK: Outcome = { ok: true };
const STOPPING: Outcome = { ok: false, reason: "stopping" };
const NO_COMETS: Outcome = { ok: false, reason: "no_comets" };
const NO_TARGET: Outcome = { ok: false, reason: "no_target" };

/** A PushMsg request for `msg`'s keys (goim's three fields). */
function pushReq(msg: PushMsg): PushMsgReq {
  return {
    keys: msg.keys,
    protoOp: msg.operation,
    proto: { ver: 1, op: msg.operation, seq: 0, body: msg.msg },
  };
}
const NOOP_LOG: Logger = {
  level: "error",
  debug() {},
  info() {},
  warn() {},
  error() {},
  enabled: () => false,
  child: () => NOOP_LOG,
};

/** A room batch ready for the membership decision: its requests and the stamp to decide by. */
interface RoomSend {
  /** One request, or several in order (a batch whose positions go back: see ascendingRuns). */
  reqs: BroadcastRoomReq[];
  since: number;
}

/**
 * Splits a room batch with stream positions into runs whose positions
 * ascend, as a comet requires of one BroadcastRoom. They go back when a
 * batch holds a redelivery of a message the store had already placed —
 * after a rebalance, the new generation's copy of records the old one still
 * had in the open batch, or records a dead job appended but may never have
 * sent: the store gives each its first position again, and each is sent all
 * the same (at-least-once; an opted-in client drops what it had). One run,
 * the usual case, is the batch itself.
 */
export function ascendingRuns(
  frames: Uint8Array,
  positions: number[],
  pushIds: string[],
): { frames: Uint8Array; positions: number[]; pushIds: string[] }[] {
  let ascending = true;
  for (let i = 1; i < positions.length && ascending; i++) {
    ascending = positions[i] > positions[i - 1];
  }
  // The usual case: the batch as it is, nothing copied.
  if (ascending) return [{ frames, positions, pushIds }];
  const view = new DataView(frames.buffer, frames.byteOffset, frames.byteLength);
  const runs: { frames: Uint8Array; positions: number[]; pushIds: string[] }[] = [];
  let start = 0, startAt = 0, at = 0;
  for (let i = 0; i < positions.length; i++) {
    if (i > 0 && positions[i] <= positions[i - 1]) {
      runs.push({
        frames: frames.subarray(startAt, at),
        positions: positions.slice(start, i),
        pushIds: pushIds.slice(start, i),
      });
      start = i;
      startAt = at;
    }
    // Each inner frame starts with its packLen (docs/PROTOCOL.md).
    at += view.getUint32(at);
  }
  runs.push({
    frames: frames.subarray(startAt, at),
    positions: positions.slice(start),
    pushIds: pushIds.slice(start),
  });
  return runs;
}

/** The first failure of several calls, or ok if all succeeded. */
function combine(outcomes: Promise<CallOutcome | Outcome>[]): Promise<Outcome> {
  if (outcomes.length === 1) return outcomes[0];
  return Promise.all(outcomes).then((all) => {
    let first: Outcome = OK;
    for (const o of all) {
      if (o.ok) continue;
      if (o.reason === "stopping") return o;
      if (first.ok) first = o;
    }
    return first;
  });
}

/** Status of a running job, for the admin endpoint. */
export interface JobStatus {
  /** Lifecycle state. */
  state: "new" | "running" | "stopping" | "stopped";
  /** Known comets. */
  comets: { id: string; grpcAddr: string; down: boolean; queued: number; rooms: number | null }[];
  /** Rooms with a live batcher. */
  rooms: number;
}

/** The job role. See the module doc. */
export class Job {
  /** The queue handler (exposed for tests): resolves once the message was handed over or skipped. */
  readonly handle: PushHandler;

  readonly #deps: JobDeps;
  readonly #log: Logger;
  readonly #metrics: JobMetrics;
  readonly #registry: Metrics;
  readonly #now: () => number;
  readonly #stamps = new Stamps();
  // Tail of each room's chain of flushes, so batches of a room stay in order.
  readonly #roomOrder = new Map<string, Promise<unknown>>();
  readonly #comets = new Map<string, CometConn>();
  readonly #rooms = new Map<string, PushBatcher<Outcome, StreamEntryInit | undefined>>();
  // Tail of each mid stream's chain of submissions, so a mid's pushes stay in order.
  readonly #midOrder = new Map<string, Promise<unknown>>();
  // Stream history, lookups and push status; null when job has none of them.
  readonly #writer: StreamWriter | null;
  // Unpaced broadcasts, batched per operation (key `op:<operation>`); items: push ids.
  readonly #broadcasts = new Map<number, PushBatcher<Outcome, string>>();
  // Servers some PUSH is waiting to learn about; later pushes to them queue behind.
  readonly #awaitingServer = new Map<string, Promise<void>>();
  #state: JobStatus["state"] = "new";
  #aborted = false;
  #refreshing?: Promise<void>;
  // When an unknown server last caused a registry refresh.
  readonly #unknownAt = new Map<string, number>();
  #timers: ReturnType<typeof setInterval>[] = [];
  #stopped?: Promise<void>;
  readonly #lastWarn = new Map<string, number>();

  /** Builds the job; nothing runs before {@linkcode Job.start}. */
  constructor(deps: JobDeps) {
    this.#deps = deps;
    this.#log = deps.log ?? NOOP_LOG;
    this.#now = deps.now ?? Date.now;
    this.#registry = deps.metrics ?? createMetrics("job");
    this.#metrics = jobMetrics(this.#registry, {
      laneDepth: () => [...this.#comets.values()].map((c) => [c.id, c.depth]),
      comets: () => this.#comets.size,
      rooms: () => this.#rooms.size,
      lag: deps.consumer.lag?.bind(deps.consumer),
    });
    this.handle = (msg: PushMsg, meta?: PushMeta) => this.#handle(msg, meta);
    const history = deps.config.streams.enabled ? deps.streams : undefined;
    const retry = deps.config.job.retry;
    this.#writer = history || deps.sessions || deps.pushStatus
      ? new StreamWriter({
        streams: history,
        sessions: deps.sessions,
        pushStatus: deps.pushStatus,
        metrics: this.#metrics,
        retry: {
          maxAttempts: retry.max_attempts,
          baseDelayMs: retry.base_delay,
          maxDelayMs: retry.max_delay,
        },
        warn: (key, text, fields) => this.#warnSometimes(`stream:${key}`, text, fields),
      })
      : null;
  }

  /** The metrics registry job reports into. */
  get metrics(): Metrics {
    return this.#registry;
  }

  /** Whether job runs and its consumer (if it can tell) is healthy. */
  healthy(): boolean {
    return this.#state === "running" && (this.#deps.consumer.healthy?.() ?? true);
  }

  /** A snapshot for the admin endpoint. */
  status(): JobStatus {
    return {
      state: this.#state,
      comets: [...this.#comets.values()].map((c) => ({
        id: c.id,
        grpcAddr: c.grpcAddr,
        down: c.down,
        queued: c.depth,
        rooms: c.snapshot?.rooms?.size ?? null,
      })),
      rooms: this.#rooms.size,
    };
  }

  /**
   * Loads the comets, starts the pollers, then starts consuming. Rejects
   * (and leaves nothing running) if the consumer cannot start.
   */
  async start(): Promise<void> {
    if (this.#state !== "new") throw new Error(`job cannot start: it is ${this.#state}`);
    this.#state = "running";
    await this.#refresh();
    this.#refreshRooms();
    const cfg = this.#deps.config.job;
    this.#timers.push(
      setInterval(() => void this.#refresh(), this.#deps.registryPollMs ?? 3000),
      setInterval(() => {
        this.#refreshRooms();
        this.#sweepRooms(cfg.room.idle);
      }, this.#deps.roomsRefreshMs ?? 1000),
    );
    try {
      await this.#deps.consumer.start(this.handle);
    } catch (e) {
      this.#state = "stopping";
      await this.#shutdown();
      throw e;
    }
    this.#log.info("job started", { comets: this.#comets.size });
  }

  /**
   * Stops consuming, lets what was consumed reach the comets (room batches
   * are flushed at once), then closes the comet clients. Messages still
   * queued after `stopTimeoutMs` are abandoned unacknowledged (the handler
   * rejects, so Kafka redelivers them). Idempotent.
   */
  stop(): Promise<void> {
    return this.#stopped ??= (async () => {
      if (this.#state === "new" || this.#state === "stopped") {
        // Never started, or start() failed and already cleaned up.
        this.#state = "stopped";
        return;
      }
      this.#state = "stopping";
      this.#flushAll();
      const ms = this.#deps.stopTimeoutMs ?? 10_000;
      const abort = setTimeout(() => {
        this.#log.warn("stop timed out; abandoning queued messages", { afterMs: ms });
        this.#aborted = true;
        this.#writer?.stop();
        for (const c of this.#comets.values()) void c.close("stopping");
      }, ms);
      try {
        await this.#deps.consumer.close();
      } catch (e) {
        this.#log.error("closing the consumer failed", { error: e });
      } finally {
        clearTimeout(abort);
      }
      await this.#shutdown();
      this.#log.info("job stopped");
    })();
  }

  async #shutdown(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#flushAll();
    // The consumer is closed: a store retry still running has nobody to deliver to.
    this.#writer?.stop();
    await this.#refreshing;
    const comets = [...this.#comets.values()];
    this.#comets.clear();
    this.#rooms.clear();
    this.#broadcasts.clear();
    await Promise.all(comets.map((c) => c.close("stopping")));
    this.#state = "stopped";
  }

  #flushAll(): void {
    for (const b of this.#rooms.values()) b.flush();
    for (const b of this.#broadcasts.values()) b.flush();
  }

  // ---- the handler

  #handle(msg: PushMsg, meta?: PushMeta): Promise<void> {
    this.#metrics.consumed.inc({ type: msg.type });
    if (this.#aborted || this.#state === "stopped") return Promise.reject(new JobStoppingError());
    switch (msg.type) {
      case "PUSH":
        return this.#push(msg, meta);
      case "ROOM":
        return this.#room(msg, meta);
      case "BROADCAST":
        return this.#broadcast(msg, meta);
      default:
        return this.#finish(msg, meta, { ok: false, reason: "invalid" });
    }
  }

  #finish(msg: PushMsg, meta: PushMeta | undefined, o: Outcome): Promise<void> {
    if (o.ok) {
      this.#metrics.delivered.inc({ type: msg.type });
      const at = meta?.publishedAt;
      if (at !== undefined) {
        this.#metrics.latency.observe({ type: msg.type }, Math.max(0, this.#now() - at) / 1000);
      }
      return Promise.resolve();
    }
    if (o.reason === "stopping") return Promise.reject(new JobStoppingError());
    this.#metrics.skipped.inc({ reason: o.reason });
    this.#warnSometimes(`${o.reason}:${msg.type}:${msg.server}`, "push skipped", {
      reason: o.reason,
      type: msg.type,
      operation: msg.operation,
      server: msg.server || undefined,
      room: msg.room || undefined,
      keys: msg.keys.length || undefined,
      error: o.error,
    });
    return Promise.resolve();
  }

  // A storm of skips for one reason and target logs once per 10 s; the
  // counter has the full count.
  #warnSometimes(key: string, text: string, fields: Record<string, unknown>): void {
    const now = this.#now();
    const last = this.#lastWarn.get(key);
    if (last !== undefined && now - last < 10_000) return;
    if (this.#lastWarn.size > 1000) this.#lastWarn.clear();
    this.#lastWarn.set(key, now);
    this.#log.warn(text, fields);
  }

  #push(msg: PushMsg, meta?: PushMeta): Promise<void> {
    if (msg.server === "" && msg.keys.length === 0 && msg.mid) return this.#midPush(msg, meta);
    if (msg.server === "" || msg.keys.length === 0) {
      return this.#finish(msg, meta, { ok: false, reason: "invalid" });
    }
    const req = pushReq(msg);
    // Always the push id: opted-in connections get it (docs/STREAMS.md) and drop a redelivery.
    req.push_id = pushIdOf(msg, meta);
    const ackId = msg.ack ? req.push_id : "";
    if (ackId !== "") req.ack = true;
    const done = (o: Outcome) =>
      this.#keysDelivered(ackId, msg.keys, o).then(() => this.#finish(msg, meta, o));
    const comet = this.#comets.get(msg.server);
    const waiting = this.#awaitingServer.get(msg.server);
    if (comet && !waiting) return this.#pushTo(comet, msg.keys[0], req).then(done);

    // Unknown server: look it up once more. Pushes to the same server that
    // arrive meanwhile line up behind this one, so a key's order holds.
    const submitted = (waiting ?? this.#refreshFor(msg.server)).then(() => {
      const c = this.#comets.get(msg.server);
      return c ? { outcome: this.#pushTo(c, msg.keys[0], req) } : undefined;
    });
    const gate = submitted.then(() => {});
    this.#awaitingServer.set(msg.server, gate);
    void gate.then(() => {
      if (this.#awaitingServer.get(msg.server) === gate) this.#awaitingServer.delete(msg.server);
    });
    return submitted.then(async (s) =>
      done(s ? await s.outcome : { ok: false, reason: "unknown_server" })
    );
  }

  #pushTo(c: CometConn, laneKey: string, req: PushMsgReq): Promise<CallOutcome> {
    return c.submit(laneKey, "PushMsg", (client) => client.PushMsg(req));
  }

  // Push status of an ack-requested key push: each key was handed over (1) or not (0).
  async #keysDelivered(id: string, keys: readonly string[], o: Outcome): Promise<void> {
    if (id === "" || !this.#writer || (!o.ok && o.reason === "stopping")) return;
    const w = this.#writer;
    await Promise.all(keys.map((k) => w.delivered(id, `key:${k}`, o.ok ? 1 : 0)));
  }

  /**
   * A push to a mid's stream: appended, then looked up, then sent to each
   * comet holding some of the mid's keys; every step in the mid's queue
   * order (see the module doc).
   */
  #midPush(msg: PushMsg, meta?: PushMeta): Promise<void> {
    const w = this.#writer;
    if (!w?.sessions) {
      return this.#finish(msg, meta, {
        ok: false,
        reason: "invalid",
        error: "a mid push, but job has no session store to find the mid's keys",
      });
    }
    const mid = msg.mid!;
    const stream = midStream(mid);
    const pushId = w.history || msg.ack ? pushIdOf(msg, meta) : "";
    const entry: StreamEntryInit = { pushId, op: msg.operation, body: msg.msg };
    if (msg.ack) entry.ack = true;
    // Appended, then looked up (./streams.ts); null: job gave up (stopping).
    const found = w.routeMid(stream, [entry], mid);
    return inOrder(this.#midOrder, stream, found, async (f) => {
      if (f === null) return { outcome: Promise.resolve(STOPPING) };
      const req = pushReq(msg);
      if (f.appended) {
        req.stream = stream;
        req.epoch = f.appended.epoch;
        req.pos = f.appended.positions[0];
        req.push_id = pushId;
      }
      if (msg.ack) {
        req.push_id = pushId;
        req.ack = true;
      }
      const status = msg.ack ? w.delivered(pushId, stream, f.keys.size) : undefined;
      const byServer = new Map<string, string[]>();
      for (const [key, server] of f.keys) {
        const keys = byServer.get(server);
        if (keys) keys.push(key);
        else byServer.set(server, [key]);
      }
      for (const server of byServer.keys()) {
        if (!this.#comets.has(server)) await this.#refreshFor(server);
      }
      // Submitted synchronously, in this mid's order, to the lane of its stream.
      const outcomes = [...byServer].map(([server, keys]) => {
        const c = this.#comets.get(server);
        return c
          ? this.#pushTo(c, stream, { ...req, keys })
          : Promise.resolve<Outcome>({ ok: false, reason: "unknown_server" });
      });
      return { outcome: outcomes.length === 0 ? Promise.resolve(OK) : combine(outcomes), status };
    }).then(async ({ outcome, status }) => {
      const o = await outcome;
      await status;
      return this.#finish(msg, meta, o);
    });
  }

  #room(msg: PushMsg, meta?: PushMeta): Promise<void> {
    if (msg.room === "") return this.#finish(msg, meta, { ok: false, reason: "invalid" });
    let b = this.#rooms.get(msg.room);
    if (!b) {
      b = this.#batcher<StreamEntryInit | undefined>(
        msg.room,
        (room, batch, since, items) => this.#flushRoom(room, batch, since, items),
      );
      this.#rooms.set(msg.room, b);
    }
    return b.add(msg.operation, msg.msg, {
      at: this.#now(),
      flushNow: this.#state !== "running",
      stamp: this.#stamps.next(),
      item: this.#roomEntry(msg, meta),
    }).then((o) => this.#finish(msg, meta, o));
  }

  // The stream entry of a room message; undefined when the room has no stream.
  #roomEntry(msg: PushMsg, meta?: PushMeta): StreamEntryInit | undefined {
    if (!this.#writer?.history) return undefined;
    if (!isStreamName(roomStream(msg.room))) {
      this.#warnSometimes("stream:long_room", "room name too long for a stream; no positions", {
        room: msg.room.slice(0, 64),
      });
      return undefined;
    }
    return { pushId: pushIdOf(msg, meta), op: msg.operation, body: msg.msg };
  }

  #flushRoom(
    room: string,
    batch: Batch,
    since: number,
    items: (StreamEntryInit | undefined)[],
  ): Promise<Outcome> {
    this.#metrics.roomBatch.observe(batch.count);
    // One body for every comet: the batch is encoded once.
    const proto = { ver: 1, op: Op.Raw, seq: 0, body: batch.tcp };
    if (!this.#writer || items[0] === undefined) {
      return this.#fanOutRoom(room, Promise.resolve({ reqs: [{ roomID: room, proto }], since }));
    }
    // A room's batches are all with or all without a stream: the choice is the room name's.
    const entries = items as StreamEntryInit[];
    const ready = this.#writer.append("room", roomStream(room), entries).then(
      (a): RoomSend | Outcome => {
        if (a === null) return STOPPING;
        // Decided by a Rooms() call sent after the append (see the module doc).
        const since = this.#stamps.next();
        if (a === REFUSED) return { reqs: [{ roomID: room, proto }], since };
        const runs = ascendingRuns(batch.tcp, a.positions, entries.map((e) => e.pushId));
        const reqs = runs.map((r) => ({
          roomID: room,
          proto: r.frames === batch.tcp ? proto : { ...proto, body: r.frames },
          epoch: a.epoch,
          positions: r.positions,
          push_ids: r.pushIds,
        }));
        return { reqs, since };
      },
    );
    return this.#fanOutRoom(room, ready);
  }

  /**
   * Sends a room batch, once `ready`, to the comets with members in the
   * room. Batches of a room are submitted in order: each decides after the
   * one before it decided and submitted, but deliveries still overlap in
   * the lanes. One request object for every comet.
   */
  #fanOutRoom(room: string, ready: Promise<RoomSend | Outcome>): Promise<Outcome> {
    return inOrder(this.#roomOrder, room, ready, async (s) => {
      if ("ok" in s) return { outcome: Promise.resolve(s) };
      const comets = [...this.#comets.values()];
      if (comets.length === 0) return { outcome: Promise.resolve<Outcome>(NO_COMETS) };
      const wanted = await Promise.all(
        comets.map((c) => c.snapshot ? c.snapshot.wants(room, s.since) : true),
      );
      const targets = comets.filter((_, i) => wanted[i]);
      if (targets.length === 0) return { outcome: Promise.resolve<Outcome>(NO_TARGET) };
      // Every request of the batch to each comet, in order, into the room's lane.
      return {
        outcome: combine(
          targets.flatMap((c) =>
            s.reqs.map((req) =>
              c.submit(room, "BroadcastRoom", (cl) => cl.BroadcastRoom(req), true)
            )
          ),
        ),
      };
    }).then((d) => d.outcome);
  }

  #broadcast(msg: PushMsg, meta?: PushMeta): Promise<void> {
    const op = msg.operation;
    if (msg.speed > 0) {
      // Paced: sent on its own, after what is batched for its operation.
      this.#broadcasts.get(op)?.flush();
      return this.#pacedBroadcast(msg, pushIdOf(msg, meta)).then((o) => this.#finish(msg, meta, o));
    }
    let b = this.#broadcasts.get(op);
    if (!b) {
      b = this.#batcher<string>(
        `op:${op}`,
        (_key, batch, _since, ids) => this.#flushBroadcast(op, batch, ids),
      );
      this.#broadcasts.set(op, b);
    }
    // Each frame's push id: opted-in connections drop a redelivery by it (docs/STREAMS.md).
    return b.add(op, msg.msg, {
      at: this.#now(),
      flushNow: this.#state !== "running",
      item: pushIdOf(msg, meta),
    }).then((o) => this.#finish(msg, meta, o));
  }

  /** A batcher (config `job.room.*`) for a room or, as `op:<operation>`, a broadcast operation. */
  #batcher<I = undefined>(key: string, flush: FlushBatch<Outcome, I>): PushBatcher<Outcome, I> {
    const r = this.#deps.config.job.room;
    return new PushBatcher<Outcome, I>(key, { batch: r.batch, windowMs: r.window }, flush);
  }

  #flushBroadcast(op: number, batch: Batch, pushIds: string[]): Promise<Outcome> {
    const proto = { ver: 1, op: Op.Raw, seq: 0, body: batch.tcp };
    return this.#broadcastAll(op, proto, () => 0, pushIds);
  }

  #pacedBroadcast(msg: PushMsg, pushId: string): Promise<Outcome> {
    const proto = { ver: 1, op: msg.operation, seq: 0, body: msg.msg };
    // goim: speed /= len(comets). Integer division could reach 0 = unpaced.
    return this.#broadcastAll(
      msg.operation,
      proto,
      (comets) => Math.max(1, Math.floor(msg.speed / comets)),
      [pushId],
    );
  }

  // One Broadcast request object, one body for every comet; submitted
  // synchronously, so broadcasts of one operation enter each comet's lane
  // in order. `speed` gets the number of comets; `push_ids` has one id per
  // frame of `proto`.
  #broadcastAll(
    protoOp: number,
    proto: Proto,
    speed: (comets: number) => number,
    pushIds: string[],
  ): Promise<Outcome> {
    const comets = [...this.#comets.values()];
    if (comets.length === 0) return Promise.resolve({ ok: false, reason: "no_comets" });
    const req: BroadcastReq = { protoOp, proto, speed: speed(comets.length), push_ids: pushIds };
    const key = String(protoOp);
    return combine(
      comets.map((c) => c.submit(key, "Broadcast", (cl) => cl.Broadcast(req), true)),
    );
  }

  // ---- comets

  /**
   * A registry refresh because `server` is unknown: joins one in flight,
   * and refreshes for the same server at most once a second, so a storm of
   * pushes to a dead comet costs one list() per second, not one per push.
   */
  #refreshFor(server: string): Promise<void> {
    if (this.#refreshing) return this.#refreshing;
    const now = this.#now();
    const last = this.#unknownAt.get(server);
    if (last !== undefined && now - last < 1000) return Promise.resolve();
    if (this.#unknownAt.size > 1000) this.#unknownAt.clear();
    this.#unknownAt.set(server, now);
    return this.#refresh();
  }

  #refresh(): Promise<void> {
    return this.#refreshing ??= this.#sync().finally(() => this.#refreshing = undefined);
  }

  async #sync(): Promise<void> {
    let records: CometRecord[];
    try {
      records = await this.#deps.registry.list();
    } catch (e) {
      // Keep delivering to the comets we know; the next poll tries again.
      this.#warnSometimes("registry", "registry unavailable; keeping the known comets", {
        error: e,
      });
      return;
    }
    if (this.#state === "stopped") return;
    const seen = new Set<string>();
    for (const rec of records) {
      seen.add(rec.id);
      const old = this.#comets.get(rec.id);
      if (old && old.grpcAddr === rec.grpcAddr) continue;
      if (old) {
        this.#comets.delete(rec.id);
        void old.close("gone");
        this.#log.info("comet moved", { comet: rec.id, from: old.grpcAddr, to: rec.grpcAddr });
      }
      let client;
      try {
        client = this.#deps.connect(rec);
      } catch (e) {
        this.#warnSometimes(`connect:${rec.id}`, "cannot connect to comet", {
          comet: rec.id,
          error: e,
        });
        continue;
      }
      const cfg = this.#deps.config.job;
      const log = this.#log.child({ comet: rec.id });
      const added = new CometConn(rec, client, {
        lanes: cfg.comet_lanes,
        laneQueue: cfg.lane_queue,
        retry: {
          maxAttempts: cfg.retry.max_attempts,
          baseDelayMs: cfg.retry.base_delay,
          maxDelayMs: cfg.retry.max_delay,
        },
        log,
        hooks: { onRetry: () => this.#metrics.retried.inc() },
      });
      this.#comets.set(rec.id, added);
      this.#log.info("comet added", { comet: rec.id, grpcAddr: rec.grpcAddr });
      added.snapshot = new RoomSnapshot(() => added.client.Rooms({}), this.#stamps, {
        minGapMs: this.#deps.roomsMinGapMs ?? 10,
        waitMs: this.#deps.roomsWaitMs ?? 200,
        now: this.#now,
      });
      void added.snapshot.refresh();
    }
    for (const [id, c] of this.#comets) {
      if (seen.has(id)) continue;
      this.#comets.delete(id);
      this.#log.info("comet removed", { comet: id, queued: c.depth });
      void c.close("gone");
    }
  }

  #refreshRooms(): void {
    for (const c of this.#comets.values()) void c.snapshot?.refresh();
  }

  #sweepRooms(idleMs: number): void {
    const now = this.#now();
    for (const [room, b] of this.#rooms) {
      if (b.idle && now - b.lastUsed >= idleMs) this.#rooms.delete(room);
    }
    for (const [op, b] of this.#broadcasts) {
      if (b.idle && now - b.lastUsed >= idleMs) this.#broadcasts.delete(op);
    }
  }
}

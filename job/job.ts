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
import type { CometApi } from "../proto/api.ts";
import type { Proto, PushMsg } from "../proto/messages.ts";
import type { Batch } from "../protocol/batch.ts";
import { Op } from "../protocol/ops.ts";
import { type CallOutcome, CometConn } from "./comet.ts";
import { type JobMetrics, jobMetrics, type SkipReason } from "./metrics.ts";
import { type FlushBatch, PushBatcher } from "./batcher.ts";
import { RoomSnapshot, Stamps } from "./membership.ts";

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
const NOOP_LOG: Logger = {
  level: "error",
  debug() {},
  info() {},
  warn() {},
  error() {},
  enabled: () => false,
  child: () => NOOP_LOG,
};

/** The first failure of several calls, or ok if all succeeded. */
function combine(outcomes: Promise<CallOutcome>[]): Promise<Outcome> {
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
  readonly #rooms = new Map<string, PushBatcher<Outcome>>();
  // Unpaced broadcasts, batched per operation (key `op:<operation>`).
  readonly #broadcasts = new Map<number, PushBatcher<Outcome>>();
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
    if (msg.server === "" || msg.keys.length === 0) {
      return this.#finish(msg, meta, { ok: false, reason: "invalid" });
    }
    const comet = this.#comets.get(msg.server);
    const waiting = this.#awaitingServer.get(msg.server);
    if (comet && !waiting) return this.#pushTo(comet, msg).then((o) => this.#finish(msg, meta, o));

    // Unknown server: look it up once more. Pushes to the same server that
    // arrive meanwhile line up behind this one, so a key's order holds.
    const submitted = (waiting ?? this.#refreshFor(msg.server)).then(() => {
      const c = this.#comets.get(msg.server);
      return c ? { outcome: this.#pushTo(c, msg) } : undefined;
    });
    const gate = submitted.then(() => {});
    this.#awaitingServer.set(msg.server, gate);
    void gate.then(() => {
      if (this.#awaitingServer.get(msg.server) === gate) this.#awaitingServer.delete(msg.server);
    });
    return submitted.then(async (s) =>
      this.#finish(msg, meta, s ? await s.outcome : { ok: false, reason: "unknown_server" })
    );
  }

  #pushTo(c: CometConn, msg: PushMsg): Promise<CallOutcome> {
    const req = {
      keys: msg.keys,
      protoOp: msg.operation,
      proto: { ver: 1, op: msg.operation, seq: 0, body: msg.msg },
    };
    return c.submit(msg.keys[0], "PushMsg", (client) => client.PushMsg(req));
  }

  #room(msg: PushMsg, meta?: PushMeta): Promise<void> {
    if (msg.room === "") return this.#finish(msg, meta, { ok: false, reason: "invalid" });
    let b = this.#rooms.get(msg.room);
    if (!b) {
      b = this.#batcher(msg.room, (room, batch, since) => this.#flushRoom(room, batch, since));
      this.#rooms.set(msg.room, b);
    }
    return b.add(msg.operation, msg.msg, {
      at: this.#now(),
      flushNow: this.#state !== "running",
      stamp: this.#stamps.next(),
    }).then((o) => this.#finish(msg, meta, o));
  }

  #flushRoom(room: string, batch: Batch, since: number): Promise<Outcome> {
    this.#metrics.roomBatch.observe(batch.count);
    if (this.#comets.size === 0) return Promise.resolve({ ok: false, reason: "no_comets" });
    const comets = [...this.#comets.values()];
    // One request object, one body for every comet: the batch is encoded once.
    const req = { roomID: room, proto: { ver: 1, op: Op.Raw, seq: 0, body: batch.tcp } };
    const decide = async (): Promise<CometConn[]> => {
      const wanted = await Promise.all(
        comets.map((c) => c.snapshot ? c.snapshot.wants(room, since) : true),
      );
      return comets.filter((_, i) => wanted[i]);
    };
    // Batches of a room are submitted in order: each decides after the one
    // before it decided and submitted (callbacks on one promise run in
    // registration order), but deliveries still overlap in the lanes.
    const prev = this.#roomOrder.get(room);
    const decided = prev ? prev.then(decide, decide) : decide();
    const outcome = decided.then((targets): Promise<Outcome> | Outcome => {
      if (targets.length === 0) return { ok: false, reason: "no_target" };
      return combine(
        targets.map((c) => c.submit(room, "BroadcastRoom", (cl) => cl.BroadcastRoom(req), true)),
      );
    });
    const tail = decided.then(() => {}, () => {});
    this.#roomOrder.set(room, tail);
    void tail.then(() => {
      if (this.#roomOrder.get(room) === tail) this.#roomOrder.delete(room);
    });
    return outcome;
  }

  #broadcast(msg: PushMsg, meta?: PushMeta): Promise<void> {
    const op = msg.operation;
    if (msg.speed > 0) {
      // Paced: sent on its own, after what is batched for its operation.
      this.#broadcasts.get(op)?.flush();
      return this.#pacedBroadcast(msg).then((o) => this.#finish(msg, meta, o));
    }
    let b = this.#broadcasts.get(op);
    if (!b) {
      b = this.#batcher(`op:${op}`, (_key, batch) => this.#flushBroadcast(op, batch));
      this.#broadcasts.set(op, b);
    }
    return b.add(op, msg.msg, { at: this.#now(), flushNow: this.#state !== "running" })
      .then((o) => this.#finish(msg, meta, o));
  }

  /** A batcher (config `job.room.*`) for a room or, as `op:<operation>`, a broadcast operation. */
  #batcher(key: string, flush: FlushBatch<Outcome>): PushBatcher<Outcome> {
    const r = this.#deps.config.job.room;
    return new PushBatcher<Outcome>(key, { batch: r.batch, windowMs: r.window }, flush);
  }

  #flushBroadcast(op: number, batch: Batch): Promise<Outcome> {
    return this.#broadcastAll(op, { ver: 1, op: Op.Raw, seq: 0, body: batch.tcp }, () => 0);
  }

  #pacedBroadcast(msg: PushMsg): Promise<Outcome> {
    const proto = { ver: 1, op: msg.operation, seq: 0, body: msg.msg };
    // goim: speed /= len(comets). Integer division could reach 0 = unpaced.
    return this.#broadcastAll(
      msg.operation,
      proto,
      (comets) => Math.max(1, Math.floor(msg.speed / comets)),
    );
  }

  // One Broadcast request object, one body for every comet; submitted
  // synchronously, so broadcasts of one operation enter each comet's lane
  // in order. `speed` gets the number of comets.
  #broadcastAll(
    protoOp: number,
    proto: Proto,
    speed: (comets: number) => number,
  ): Promise<Outcome> {
    const comets = [...this.#comets.values()];
    if (comets.length === 0) return Promise.resolve({ ok: false, reason: "no_comets" });
    const req = { protoOp, proto, speed: speed(comets.length) };
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

/**
 * {@linkcode PushConsumer} on Kafka (npm:kafkajs): job's end of the queue.
 *
 * At-least-once: a record's offset is committed only after the handler
 * resolved for it and for every record before it in its partition.
 *
 * Pipelining: within a partition the handler is *invoked* in offset order,
 * but up to `maxInFlight` records are handled at once and fetching goes on
 * meanwhile — job resolves a room message only once its batch was sent (up
 * to job.room.window later), and waiting for that before fetching more
 * would add a window per fetch and stop the next messages from joining the
 * open batch. So the fetch position (kafkajs `resolveOffset`) advances as
 * records are *dispatched*, while the commit position advances, per
 * partition, over the records whose handlers have *finished*, in order;
 * commits are ours (kafkajs `autoCommit` off), at most every
 * `commitIntervalMs`. A handler that needs order fixes it before its first
 * `await` (job enqueues into a per-key lane synchronously). Partitions are
 * consumed concurrently (`partitionsConsumedConcurrently`).
 *
 * Rebalances: after the group rebalances, handlers still running for the
 * old assignment finish but commit nothing; the partition's next owner
 * (possibly us again) starts from the last commit, so those records may be
 * delivered twice — at-least-once, never lost.
 *
 * Failures:
 * - Bytes that do not decode as a PushMsg (or an empty record) are logged,
 *   counted in `skipped_total{reason="undecodable"}` of the given metrics,
 *   and skipped: the partition moves on.
 * - A handler that rejects is invoked again for the same record after a
 *   backoff (doubling up to `retryMaxDelayMs`) until it resolves; the
 *   partition's offset does not move meanwhile. (Job resolves undeliverable
 *   messages itself — it counts and skips them — so this is for failures of
 *   job itself.)
 * - `close()` pauses fetching, waits for the handlers in flight, commits
 *   what they finished, then leaves the group; records not handled are
 *   delivered again to whoever consumes the partition next.
 *
 * Where a new group starts: `fromBeginning` false (default, as goim's
 * sarama consumer) reads only records published after the group first
 * joined; true reads the topic's retained history (use for tests and for a
 * group that must not miss anything published before its first start).
 *
 * The handler's second argument carries the record's timestamp as
 * {@linkcode PushMeta.publishedAt} (our producer sets it to the publish time)
 * and `<topic>/<partition>/<offset>` as {@linkcode PushMeta.id}: the same for
 * every delivery of the record, to any member of any group.
 *
 * @module
 */

import { doublingDelay } from "../backoff.ts";
import { Sleeper } from "../sleeper.ts";
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from "kafkajs";
import type { Admin } from "kafkajs";
import { decodePushMsg } from "../../proto/push_msg.ts";
import type { PushMsg } from "../../proto/messages.ts";
import type { Logger } from "../log.ts";
import type { Counter, Metrics } from "../metrics.ts";
import {
  type PushConsumer,
  type PushHandler,
  type PushMeta,
  QueueUnavailableError,
} from "../queue.ts";
import {
  brokerList,
  createKafkaClient,
  ensureTopic,
  FAST_RETRY,
  type KafkaConnectOptions,
} from "./client.ts";

/** Options of {@linkcode KafkaConsumer}. */
export interface KafkaConsumerOptions extends KafkaConnectOptions {
  /** Topic to consume (config `queue.kafka.topic`). */
  topic: string;
  /** Consumer group (config `queue.kafka.group`). */
  group: string;
  /** Where a group without committed offsets starts: false = new records only (default). */
  fromBeginning?: boolean;
  /** Group session timeout in ms (config `queue.kafka.session_timeout`; default 10000). */
  sessionTimeoutMs?: number;
  /** Records of one partition handled at once (default 1024). */
  maxInFlight?: number;
  /** Partitions handled at once (default 16). */
  partitionsConsumedConcurrently?: number;
  /** Delay before re-invoking a rejected handler, doubled per failure (default 100 ms). */
  retryBaseDelayMs?: number;
  /** Upper bound of that delay (default 5000 ms). */
  retryMaxDelayMs?: number;
  /** Longest a finished record waits for its offset to be committed (default 200 ms). */
  commitIntervalMs?: number;
  /**
   * After a crash kafkajs says it will restart from, how long it may take to
   * rejoin before the consumer is replaced (default 15000 ms).
   */
  recoverTimeoutMs?: number;
  /** How long `start()` waits to join the group (default 30000 ms). */
  startTimeoutMs?: number;
  /** Create the topic (broker defaults) when missing (default true). */
  ensureTopic?: boolean;
  /** Registry receiving `skipped_total{reason="undecodable"}` (job's). */
  metrics?: Metrics;
}

/** Dispatch and completion of one partition's records, for one group generation. */
interface Track {
  generation: number;
  topic: string;
  partition: number;
  /** Dispatched records in offset order from `head`; `done` once handled. */
  entries: { offset: string; done: boolean }[];
  head: number;
  inFlight: number;
  /** Records waiting for a retry: no new record is dispatched meanwhile. */
  retrying: number;
  /** Offset to commit next (last finished + 1), if not committed yet. */
  commit?: string;
  /** Called when inFlight drops. */
  wake?: () => void;
}

/**
 * The Kafka {@linkcode PushConsumer}.
 *
 * @example
 * ```ts
 * const consumer = new KafkaConsumer({
 *   brokers: ["127.0.0.1:9092"], clientId: "goim", topic: "goim-push-topic", group: "goim-push-group-job",
 * });
 * await consumer.start(async (msg) => console.log(msg.type));
 * console.log(await consumer.lag());
 * await consumer.close();
 * ```
 */
export class KafkaConsumer implements PushConsumer {
  readonly #kafka: Kafka;
  readonly #opts: KafkaConsumerOptions;
  readonly #brokers: string;
  readonly #log?: Logger;
  readonly #undecodable?: Counter<"reason">;
  readonly #maxInFlight: number;
  readonly #baseDelay: number;
  readonly #maxDelay: number;

  #handler?: PushHandler;
  #consumer?: Consumer;
  #admin?: Promise<Admin>;
  #closing = false;
  #closed?: Promise<void>;
  #crashed = false;
  #joined = false;
  readonly #sleeper = new Sleeper();
  // Bumped at every group join: tracks of older generations commit nothing.
  #generation = 0;
  readonly #tracks = new Map<number, Track>();
  #commitTimer?: ReturnType<typeof setTimeout>;
  #watchdog?: ReturnType<typeof setTimeout>;
  #committing?: Promise<void>;
  // Handlers running, all generations; close() waits for 0.
  #inFlight = 0;
  #idle: (() => void)[] = [];
  #lagCache?: { at: number; value: Promise<number> };

  /** Creates the consumer; nothing connects before {@linkcode KafkaConsumer.start}. */
  constructor(opts: KafkaConsumerOptions) {
    this.#opts = opts;
    this.#kafka = createKafkaClient(opts);
    this.#brokers = brokerList(opts.brokers);
    this.#log = opts.log?.child({ component: "kafka-consumer", topic: opts.topic });
    this.#undecodable = opts.metrics?.counter(
      "skipped_total",
      "Messages consumed but not delivered, by reason.",
      ["reason"],
    );
    this.#maxInFlight = Math.max(1, opts.maxInFlight ?? 1024);
    this.#baseDelay = opts.retryBaseDelayMs ?? 100;
    this.#maxDelay = opts.retryMaxDelayMs ?? 5000;
  }

  /** Whether the consumer has joined its group and has not crashed for good. */
  healthy(): boolean {
    return this.#joined && !this.#crashed && !this.#closing;
  }

  /**
   * Joins the group and starts handling records; resolves once the group is
   * joined. Rejects with {@linkcode QueueUnavailableError} when Kafka cannot
   * be reached or the join takes longer than `startTimeoutMs`.
   */
  async start(handler: PushHandler): Promise<void> {
    if (this.#handler) throw new Error("kafka consumer already started");
    if (this.#closing) throw new Error("kafka consumer closed");
    this.#handler = handler;
    const o = this.#opts;
    try {
      if (o.ensureTopic ?? true) {
        if (await ensureTopic(this.#kafka, o.topic)) {
          this.#log?.info("created kafka topic", { topic: o.topic });
        }
      }
    } catch (e) {
      throw this.#unavailable(`cannot create or find topic: ${(e as Error).message}`, e);
    }
    await this.#pinGroupStart();
    try {
      await this.#spawn(o.startTimeoutMs ?? 30_000);
    } catch (e) {
      throw e instanceof QueueUnavailableError ? e : this.#unavailable((e as Error).message, e);
    }
  }

  /**
   * Commits a starting offset for every partition the group has none for
   * (the topic's end, or its start with `fromBeginning`), before consuming.
   * Without it, a job that restarts before its first commit would resume
   * "from the latest offset" and skip what was published meanwhile; with it,
   * the reset policy is used exactly once, at the group's first start.
   */
  async #pinGroupStart(): Promise<void> {
    const o = this.#opts;
    const admin = this.#kafka.admin();
    try {
      await admin.connect();
      const [committed] = await admin.fetchOffsets({ groupId: o.group, topics: [o.topic] });
      const missing = (committed?.partitions ?? []).filter((p) => Number(p.offset) < 0);
      if (missing.length === 0) return;
      const ends = new Map(
        (await admin.fetchTopicOffsets(o.topic)).map((
          p,
        ) => [p.partition, o.fromBeginning ? p.low : p.high]),
      );
      await admin.setOffsets({
        groupId: o.group,
        topic: o.topic,
        partitions: missing.map((p) => ({
          partition: p.partition,
          offset: ends.get(p.partition) ?? "0",
        })),
      });
      this.#log?.info("pinned the group's starting offsets", {
        group: o.group,
        partitions: missing.length,
        from: o.fromBeginning ? "beginning" : "end",
      });
    } catch (e) {
      // Another member is running (it owns the offsets) or Kafka is flaky:
      // consuming still works, only the first-start guarantee is weaker.
      this.#log?.warn("could not pin the group's starting offsets", { error: e });
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }

  /**
   * Creates, connects and runs one kafkajs consumer; resolves once it joined
   * the group. A crash kafkajs does not recover from within
   * `recoverTimeoutMs` (it sometimes never rejoins after a broker restart,
   * kafkajs issue #1630) makes the watchdog replace the consumer.
   */
  async #spawn(joinTimeoutMs: number): Promise<void> {
    const o = this.#opts;
    const consumer = this.#kafka.consumer({
      groupId: o.group,
      allowAutoTopicCreation: false,
      // A dead job's partitions move after this; heartbeats at a third of it.
      sessionTimeout: o.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: Math.max(500, Math.floor((o.sessionTimeoutMs ?? 10_000) / 3)),
      // Short fetch waits keep close() quick; an idle topic costs 2 fetches/s.
      maxWaitTimeInMs: 500,
      // Patient, unlike the producer: the consumer should outlive a broker
      // restart; kafkajs restarts it after a retriable crash.
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    this.#consumer = consumer;
    let onJoin!: () => void;
    const joined = new Promise<void>((r) => onJoin = r);
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      if (this.#consumer !== consumer) return;
      this.#generation++;
      this.#tracks.clear();
      this.#joined = true;
      this.#crashed = false;
      clearTimeout(this.#watchdog);
      this.#watchdog = undefined;
      this.#log?.info("joined consumer group", {
        group: o.group,
        memberId: e.payload.memberId,
        assignment: e.payload.memberAssignment,
      });
      onJoin();
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (this.#consumer !== consumer) return;
      const { error, restart } = e.payload;
      this.#joined = false;
      if (!restart) this.#crashed = true;
      this.#log?.error("kafka consumer crashed", { error, restart, brokers: this.#brokers });
      this.#armWatchdog(restart ? (o.recoverTimeoutMs ?? 15_000) : 0);
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [o.topic], fromBeginning: o.fromBeginning ?? false });
      await consumer.run({
        // We commit (see #commit): kafkajs would commit dispatched offsets.
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: o.partitionsConsumedConcurrently ?? 16,
        eachBatch: (p) => this.#eachBatch(p),
      });
      const timeout = new Promise<"timeout">((r) =>
        timer = setTimeout(() => r("timeout"), joinTimeoutMs)
      );
      if (await Promise.race([joined, timeout]) === "timeout") {
        throw new Error(`did not join group ${o.group} within ${joinTimeoutMs} ms`);
      }
    } catch (e) {
      await consumer.disconnect().catch(() => {});
      if (this.#consumer === consumer) this.#consumer = undefined;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  // Replaces the kafkajs consumer unless it rejoins within `ms`.
  #armWatchdog(ms: number): void {
    if (this.#watchdog !== undefined || this.#closing) return;
    this.#watchdog = setTimeout(() => void this.#respawn(), ms);
  }

  async #respawn(): Promise<void> {
    let failures = 0;
    while (!this.#closing && !this.#joined) {
      const old = this.#consumer;
      this.#consumer = undefined;
      this.#log?.warn("replacing the kafka consumer: it did not recover from a crash", {
        brokers: this.#brokers,
      });
      await old?.disconnect().catch(() => {});
      if (this.#closing) break;
      try {
        await this.#spawn(this.#opts.startTimeoutMs ?? 30_000);
      } catch (e) {
        const delay = doublingDelay(500, 10_000, ++failures);
        this.#log?.warn("kafka consumer restart failed; retrying", { error: e, inMs: delay });
        await this.#sleep(delay);
      }
    }
    this.#watchdog = undefined;
  }

  /**
   * Stops: fetching pauses, handlers in flight finish, their offsets are
   * committed, the group is left. Idempotent.
   */
  close(): Promise<void> {
    return this.#closed ??= (async () => {
      this.#closing = true;
      clearTimeout(this.#watchdog);
      this.#sleeper.wakeAll();
      const consumer = this.#consumer;
      if (consumer) {
        try {
          consumer.pause([{ topic: this.#opts.topic }]);
        } catch {
          // Not running (start failed): nothing is fetched anyway.
        }
        while (this.#inFlight > 0) await new Promise<void>((r) => this.#idle.push(r));
        // #advance schedules no more timers once closing: this commit is the last.
        clearTimeout(this.#commitTimer);
        this.#commitTimer = undefined;
        await this.#commit();
        await consumer.disconnect().catch((e) =>
          this.#log?.warn("kafka consumer disconnect failed", { error: e })
        );
      }
      clearTimeout(this.#commitTimer);
      const admin = this.#admin;
      this.#admin = undefined;
      if (admin) await admin.then((a) => a.disconnect()).catch(() => {});
    })();
  }

  /**
   * Records of the topic not yet committed by the group: Σ over partitions
   * of (high watermark − committed offset). A partition without a committed
   * offset counts from its low watermark if `fromBeginning`, else as 0.
   * Cached for one second (it costs two admin requests).
   */
  lag(): Promise<number> {
    const now = Date.now();
    if (this.#lagCache && now - this.#lagCache.at < 1000) return this.#lagCache.value;
    const value = this.#computeLag();
    this.#lagCache = { at: now, value };
    value.catch(() => this.#lagCache = undefined);
    return value;
  }

  async #computeLag(): Promise<number> {
    if (this.#closing) throw new Error("kafka consumer closed");
    const admin = await (this.#admin ??= (async () => {
      const a = this.#kafka.admin({ retry: { ...FAST_RETRY } });
      try {
        await a.connect();
      } catch (e) {
        this.#admin = undefined;
        throw e;
      }
      return a;
    })());
    const o = this.#opts;
    const [ends, committed] = await Promise.all([
      admin.fetchTopicOffsets(o.topic),
      admin.fetchOffsets({ groupId: o.group, topics: [o.topic] }),
    ]);
    const done = new Map<number, number>();
    for (const t of committed) {
      for (const p of t.partitions) done.set(p.partition, Number(p.offset));
    }
    let lag = 0;
    for (const p of ends) {
      const high = Number(p.high);
      const c = done.get(p.partition) ?? -1;
      if (c >= 0) lag += Math.max(0, high - c);
      else if (o.fromBeginning) lag += Math.max(0, high - Number(p.low));
    }
    return lag;
  }

  #unavailable(what: string, cause?: unknown): QueueUnavailableError {
    return new QueueUnavailableError(
      `kafka (brokers ${this.#brokers}, topic ${this.#opts.topic}) unavailable: ${what}`,
      cause === undefined ? undefined : { cause },
    );
  }

  async #eachBatch(p: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, isRunning, isStale } = p;
    const partition = batch.partition;
    let t = this.#tracks.get(partition);
    if (!t || t.generation !== this.#generation) {
      t = {
        generation: this.#generation,
        topic: batch.topic,
        partition,
        entries: [],
        head: 0,
        inFlight: 0,
        retrying: 0,
      };
      this.#tracks.set(partition, t);
    }
    for (const m of batch.messages) {
      while ((t.inFlight >= this.#maxInFlight || t.retrying > 0) && !this.#closing) {
        // Bounded, and held back behind a retry (as a failed record would
        // hold a partition without pipelining): wait for a handler to
        // finish, keeping the group session alive.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((r) => {
          t.wake = r;
          timer = setTimeout(r, 1000);
        });
        clearTimeout(timer);
        await p.heartbeat();
      }
      if (this.#closing || !isRunning() || isStale()) return;
      const entry = { offset: m.offset, done: false };
      t.entries.push(entry);
      t.inFlight++;
      this.#inFlight++;
      const track = t;
      void this.#handleRecord(m, track).then((handled) => {
        track.inFlight--;
        const wake = track.wake;
        track.wake = undefined;
        wake?.();
        if (--this.#inFlight === 0) { for (const r of this.#idle.splice(0)) r(); }
        // An abandoned record (close) stays not done: the commit stops before it.
        if (handled) {
          entry.done = true;
          this.#advance(track);
        }
      });
      // The fetch position moves on; the commit position waits for the handler.
      resolveOffset(m.offset);
    }
  }

  /** Moves a partition's commit position over the finished records at its head. */
  #advance(t: Track): void {
    let last: string | undefined;
    while (t.head < t.entries.length && t.entries[t.head].done) last = t.entries[t.head++].offset;
    if (last === undefined) return;
    if (t.head > 1024 && t.head * 2 > t.entries.length) {
      t.entries = t.entries.slice(t.head);
      t.head = 0;
    }
    t.commit = String(Number(last) + 1);
    if (this.#commitTimer === undefined && !this.#closing) {
      this.#commitTimer = setTimeout(() => {
        this.#commitTimer = undefined;
        void this.#commit();
      }, this.#opts.commitIntervalMs ?? 200);
    }
  }

  /**
   * Commits every current-generation partition whose position moved. Calls
   * run one after another, each sending what has finished by its turn, so
   * none is lost behind a commit in flight.
   */
  #commit(): Promise<void> {
    const run = (this.#committing ?? Promise.resolve()).then(() => this.#commitOnce());
    this.#committing = run;
    void run.finally(() => {
      if (this.#committing === run) this.#committing = undefined;
    });
    return run;
  }

  async #commitOnce(): Promise<void> {
    const offsets = [];
    for (const t of this.#tracks.values()) {
      if (t.commit === undefined || t.generation !== this.#generation) continue;
      offsets.push({ topic: t.topic, partition: t.partition, offset: t.commit });
      t.commit = undefined;
    }
    if (offsets.length === 0 || !this.#consumer) return;
    try {
      await this.#consumer.commitOffsets(offsets);
    } catch (e) {
      // A rebalance or an outage: those records will come again (at-least-once).
      this.#log?.warn("kafka offset commit failed", { error: e });
    }
  }

  /** Handles one record until the handler resolves; false if given up because of close(). */
  #handleRecord(m: KafkaMessage, t: Track): Promise<boolean> {
    const partition = t.partition;
    let msg: PushMsg;
    try {
      if (!m.value || m.value.length === 0) throw new Error("empty record");
      msg = decodePushMsg(m.value);
    } catch (e) {
      this.#undecodable?.inc({ reason: "undecodable" });
      this.#log?.warn("skipped undecodable record", {
        partition,
        offset: m.offset,
        bytes: m.value?.length ?? 0,
        error: (e as Error).message,
      });
      return Promise.resolve(true);
    }
    const ts = Number(m.timestamp);
    const meta: PushMeta = { id: `${t.topic}/${partition}/${m.offset}` };
    if (Number.isFinite(ts) && ts > 0) meta.publishedAt = ts;
    return this.#deliver(msg, meta, t, m.offset);
  }

  async #deliver(
    msg: PushMsg,
    meta: PushMeta,
    t: Track,
    offset: string,
  ): Promise<boolean> {
    let failures = 0;
    try {
      for (;;) {
        try {
          await this.#handler!(msg, meta);
          return true;
        } catch (e) {
          if (this.#closing) return false;
          if (failures++ === 0) t.retrying++;
          const delay = doublingDelay(this.#baseDelay, this.#maxDelay, failures);
          this.#log?.warn("push handler failed; retrying", {
            partition: t.partition,
            offset,
            failures,
            retryInMs: delay,
            error: e,
          });
          if (!(await this.#sleep(delay))) return false;
        }
      }
    } finally {
      if (failures > 0) {
        t.retrying--;
        const wake = t.wake;
        t.wake = undefined;
        wake?.();
      }
    }
  }

  // Sleeps `ms`; false at once when closing meanwhile.
  #sleep(ms: number): Promise<boolean> {
    return this.#closing ? Promise.resolve(false) : this.#sleeper.sleep(ms);
  }
}

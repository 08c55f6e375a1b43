/**
 * Test doubles for job: a fake comet that records calls (and fails on
 * demand), and a harness wiring job to a memory queue and registry.
 *
 * Waiting is event-driven: {@linkcode FakeComet.waitCalls} resolves the
 * moment the n-th call is recorded and fails after a deadline, so tests
 * never sleep to synchronise.
 *
 * @module
 */

import { type Config, loadConfig } from "../infra/config.ts";
import { createMemoryQueue, type MemoryQueue } from "../infra/memory/queue.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { createMetrics, type Metrics } from "../infra/metrics.ts";
import type { CometRecord } from "../infra/registry.ts";
import type { CometApi } from "../proto/api.ts";
import { grpcStatus, RpcError } from "../proto/grpc.ts";
import type {
  BroadcastReq,
  BroadcastRoomReq,
  PushMsg,
  PushMsgReq,
  RoomsReply,
} from "../proto/messages.ts";
import { Job, type JobDeps } from "../job/job.ts";

/** One recorded call. */
export type Call =
  | { method: "PushMsg"; req: PushMsgReq; at: number }
  | { method: "Broadcast"; req: BroadcastReq; at: number }
  | { method: "BroadcastRoom"; req: BroadcastRoomReq; at: number };

type Method = Call["method"];

/** A comet that records calls. Failures and delays are set per test. */
export class FakeComet implements CometApi {
  /** Successful calls, in the order they ran. */
  readonly calls: Call[] = [];
  /** Every attempt, failed ones included. */
  attempts = 0;
  /**
   * Rooms() answer; `null` (the default) makes Rooms() fail, so job treats
   * the rooms as unknown and sends this comet every room batch.
   */
  rooms: Record<string, boolean> | null = null;
  /** Rooms() calls so far. */
  roomsCalls = 0;
  /** The next `failures` calls fail with `failCode`. */
  failures = 0;
  /** Status of those failures (default UNAVAILABLE). */
  failCode: number = grpcStatus.UNAVAILABLE;
  /** When set, each call first awaits this (to hold calls in flight). */
  gate?: Promise<void>;
  /** Whether job closed this client. */
  closed = false;
  readonly #watchers = new Set<() => void>();

  /** A fake comet with id `id` (only used in messages). */
  constructor(readonly id: string) {}

  async #record(call: Call): Promise<Record<never, never>> {
    this.attempts++;
    if (this.gate) await this.gate;
    if (this.failures > 0) {
      this.failures--;
      throw new RpcError(this.failCode, `fake ${this.id} failure`);
    }
    this.calls.push(call);
    for (const w of this.#watchers) w();
    return {};
  }

  PushMsg = (req: PushMsgReq) => this.#record({ method: "PushMsg", req, at: performance.now() });
  Broadcast = (req: BroadcastReq) =>
    this.#record({ method: "Broadcast", req, at: performance.now() });
  BroadcastRoom = (req: BroadcastRoomReq) =>
    this.#record({ method: "BroadcastRoom", req, at: performance.now() });
  Rooms = (): Promise<RoomsReply> => {
    this.roomsCalls++;
    for (const w of this.#watchers) w();
    if (this.rooms === null) {
      return Promise.reject(new RpcError(grpcStatus.UNAVAILABLE, `fake ${this.id} rooms down`));
    }
    return Promise.resolve({ rooms: { ...this.rooms } });
  };

  /** Recorded calls of `method`. */
  of<M extends Method>(method: M): Extract<Call, { method: M }>[] {
    return this.calls.filter((c) => c.method === method) as Extract<Call, { method: M }>[];
  }

  /** Resolves once `check()` holds (checked on every call); rejects after `timeoutMs`. */
  until(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#watchers.delete(watch);
      };
      const watch = () => {
        if (check()) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(`fake comet ${this.id}: timed out after ${timeoutMs} ms waiting for ${what}`),
        );
      }, timeoutMs);
      this.#watchers.add(watch);
    });
  }

  /** Resolves once at least `n` successful calls of `method` were recorded. */
  waitCalls(method: Method, n: number, timeoutMs = 3000): Promise<void> {
    return this.until(() => this.of(method).length >= n, `${n} ${method} calls`, timeoutMs);
  }
}

/** A registry record for a fake comet. */
export function record(id: string): Omit<CometRecord, "updated"> {
  return {
    id,
    grpcAddr: `fake:${id}`,
    addrs: ["127.0.0.1"],
    tcpPort: 3101,
    wsPort: 0,
    wssPort: 0,
    weight: 10,
    connections: 0,
    ips: 0,
  };
}

/** Configuration with defaults plus `--set` overrides (e.g. `"job.room.window=50ms"`). */
export function testConfig(...sets: string[]): Config {
  return loadConfig({ args: sets.flatMap((s) => ["--set", s]), env: {}, onWarning: () => {} });
}

/** A running job on a memory queue and registry, delivering to fake comets. */
export interface JobHarness {
  job: Job;
  queue: MemoryQueue;
  registry: MemoryRegistry;
  metrics: Metrics;
  comets: Map<string, FakeComet>;
  /** Publishes a complete PushMsg built from `m`. */
  publish(m: Partial<PushMsg> & Pick<PushMsg, "type">): Promise<void>;
  /** Registers a new fake comet (job learns of it on its next poll or an unknown PUSH). */
  addComet(id: string): Promise<FakeComet>;
  /** Value of a job metric (`goim_job_` + name) with these labels; 0 if absent. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** Stops job and closes the queue and registry. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startJob}. */
export interface StartJobOptions {
  /** Ids of the fake comets registered before start (default `["c1"]`). */
  comets?: string[];
  /** `--set` overrides. */
  set?: string[];
  /** Extra JobDeps (poll intervals...). */
  deps?: Partial<JobDeps>;
}

const enc = new TextEncoder();

/** Text to bytes. */
export const utf8 = (s: string): Uint8Array => enc.encode(s);

/** Starts a job wired to fakes; call `stop()` in a finally. */
export async function startJob(o: StartJobOptions = {}): Promise<JobHarness> {
  const config = testConfig(...(o.set ?? []));
  const registry = new MemoryRegistry();
  const queue = createMemoryQueue({ capacity: 100_000, retryBaseDelayMs: 10 });
  const metrics = createMetrics("job");
  const comets = new Map<string, FakeComet>();
  const addComet = async (id: string) => {
    const c = new FakeComet(id);
    comets.set(id, c);
    await registry.register(record(id), 60_000);
    return c;
  };
  for (const id of o.comets ?? ["c1"]) await addComet(id);
  const job = new Job({
    config,
    consumer: queue.consumer,
    registry,
    connect: (rec) => {
      const c = comets.get(rec.id);
      if (!c) throw new Error(`no fake comet ${rec.id}`);
      return Object.assign(c, { close: () => void (c.closed = true) });
    },
    metrics,
    registryPollMs: 60_000,
    roomsRefreshMs: 60_000,
    ...o.deps,
  });
  await job.start();
  return {
    job,
    queue,
    registry,
    metrics,
    comets,
    addComet,
    publish: (m) =>
      queue.producer.publish({
        operation: 1000,
        speed: 0,
        server: "",
        room: "",
        keys: [],
        msg: new Uint8Array(),
        ...m,
      }),
    async metric(name, labels = {}) {
      // Histogram series (`x_count`, `x_sum`) live in the metric `x`.
      const full = `goim_job_${name}`;
      const base = full.replace(/_(count|sum)$/, "");
      const m = metrics.registry.getSingleMetric(full) ?? metrics.registry.getSingleMetric(base);
      if (!m) return 0;
      const { values } = await m.get();
      const hit = values.find((v) =>
        [undefined, full].includes((v as { metricName?: string }).metricName) &&
        Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val)
      );
      return hit?.value ?? 0;
    },
    async stop() {
      await job.stop();
      await queue.producer.close();
      await queue.consumer.close();
      await registry.close();
    },
  };
}

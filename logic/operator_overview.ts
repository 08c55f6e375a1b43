/**
 * The console's view of the cluster (docs/CONSOLE.md, "What the page
 * shows"): one {@linkcode Overview} built from the registry, each comet's
 * `Stats` (proto/operator.ts), this logic's own counters, each job's
 * metrics, and the online aggregate, then turned into rates against the
 * previous one.
 *
 * - One pass at a time, shared: calls within {@linkcode OVERVIEW_REUSE_MS}
 *   of the last pass get its result, concurrent calls wait for the pass in
 *   flight, so however many pages are open, a comet answers at most about
 *   one Stats call a second per logic.
 * - Rates are the counters' difference over the time between two passes;
 *   a pass more than {@linkcode RATE_MAX_GAP_MS} after the previous one
 *   has none (a rate over ten minutes is no "per second now"). A counter
 *   that went down (a restarted comet) counts from zero, as Prometheus'
 *   `rate()` does.
 * - Push latency p50/p99 is job's `push_latency_seconds` (publish → handed
 *   to the comets) over the same interval, interpolated in its buckets as
 *   `histogram_quantile` does.
 * - A registered comet that does not answer is `down`. One seen in the
 *   last {@linkcode DOWN_MEMORY_MS} that is no longer registered is asked
 *   too: `drained` when it says so (or went silent after draining), else
 *   `down`; at most {@linkcode MAX_REMEMBERED} are remembered.
 *
 * @module
 */

import { loopLag, type LoopLagStats } from "../infra/loop_lag.ts";
import type { Logger } from "../infra/log.ts";
import type { CometRecord, Registry } from "../infra/registry.ts";
import { errorMessage } from "../infra/log.ts";
import type { StatsReply } from "../proto/operator.ts";
import type { LogicMetrics } from "./metrics.ts";
import type { OnlineCounts } from "./online.ts";
import { parseSamples, type Sample } from "../infra/metrics.ts";
import type { CometDialer, JobSource } from "./operator_sources.ts";

/** A pass younger than this is reused as it is, ms. */
export const OVERVIEW_REUSE_MS = 900;
/** Two passes further apart than this give no rates, ms. */
export const RATE_MAX_GAP_MS = 10_000;
/** How long a comet that left is still listed as down, ms (the page keeps 15 min too). */
export const DOWN_MEMORY_MS = 15 * 60_000;
/** Comets remembered (registered and gone) at most. */
export const MAX_REMEMBERED = 1000;
/** Rooms in the top list. */
export const TOP_ROOMS = 10;

/** A comet's state on the page. */
export type CometViewState = "up" | "draining" | "drained" | "down";

/** Lag figures in ms, or null where the role does not measure (or did not answer). */
export type LagView = { p50: number; p99: number; max: number } | null;

/** One comet on the page. */
export interface CometView {
  /** node.id. */
  id: string;
  /** See {@linkcode CometViewState}. */
  state: CometViewState;
  /** Whether its operator service answered (false: figures from the registry record). */
  reachable: boolean;
  /** Why not, when it did not. */
  error?: string;
  /** gRPC address. */
  grpc_addr: string;
  /** Registry weight (0 while draining). */
  weight: number;
  /** Connections (live, else the record's). */
  connections: number;
  /** Distinct IPs (live, else the record's). */
  ips: number;
  /** Rooms, when reachable. */
  rooms: number | null;
  /** Connections by transport, when reachable. */
  by_transport: Record<string, number> | null;
  /** Frames written per second, when known. */
  frames_out_per_s: number | null;
  /** Event-loop lag. */
  loop_lag_ms: LagView;
  /** Resident memory, when reachable. */
  rss_bytes: number | null;
  /** Bytes in its send queues, when reachable. */
  queued_bytes: number | null;
  /** When a drain ends at the latest (ms since the epoch), while draining. */
  drain_deadline_ms: number | null;
  /** When the registry last had it (ms since the epoch). */
  last_seen: number;
}

/** One job on the page. */
export interface JobView {
  /** Its name (address). */
  name: string;
  /** Whether its metrics could be read. */
  reachable: boolean;
  /** Why not. */
  error?: string;
  /** Messages in the queue not yet acknowledged (Kafka consumer lag), when known. */
  lag: number | null;
  /** Event-loop lag. */
  loop_lag_ms: LagView;
}

/** Per-second rates over the interval since the previous pass. */
export interface Rates {
  /** Push requests accepted by this logic, by kind. */
  pushes_in: { keys: number; mids: number; room: number; all: number };
  /** Frames written by every comet. */
  frames_out: number;
  /** Pushed frames dropped for full send queues, by policy. */
  dropped: Record<string, number>;
  /** Connections closed, by reason (slow_consumer among them). */
  disconnects: Record<string, number>;
  /** Messages every job took from the queue. */
  consumed: number;
}

/** The whole page's data, `GET /operator/v1/overview`. */
export interface Overview {
  /** When the pass ran (ms since the epoch). */
  at: number;
  /** `embedded` or `distributed` (`mode`). */
  mode: string;
  /** Seconds the rates cover; null when there are none yet. */
  interval_s: number | null;
  /** Cluster totals. */
  totals: {
    connections: number;
    ips: number;
    comets: Record<CometViewState, number>;
  };
  /** Every comet, by id. */
  comets: CometView[];
  /** Busiest rooms, cluster-wide (logic's online aggregate). */
  top_rooms: { room: string; count: number }[];
  /** Rates, null on the first pass or after a long gap. */
  rates: Rates | null;
  /** The push queue: summed job lag, null when no job tells. */
  queue: { lag: number | null };
  /** Push latency (publish → handed to the comets) over the interval, null when nothing was pushed or no job tells. */
  latency_ms: { p50: number; p99: number } | null;
  /** Event-loop lag of this logic. */
  logic_loop_lag_ms: LagView;
  /** Every job the console reads. */
  jobs: JobView[];
}

/** What {@linkcode OverviewSampler} reads. */
export interface OverviewDeps {
  /** `mode`. */
  mode: string;
  /** Lists the comets. */
  registry: Registry;
  /** Reaches their operator services. */
  dialer: CometDialer;
  /** The jobs to read. */
  jobs: readonly JobSource[];
  /** This logic's counters (push requests by route). */
  metrics: LogicMetrics;
  /** The cluster's room counts. */
  online: OnlineCounts;
  /** Clock, ms since the epoch. */
  now?: () => number;
  /** Where failed reads are logged (at debug: the page shows them). */
  log?: Logger;
}

interface Counters {
  pushes: Record<string, number>;
  frames: Map<string, number>;
  dropped: Map<string, Record<string, number>>;
  disconnects: Map<string, Record<string, number>>;
  consumed: Map<string, number>;
  latency: Map<string, Map<number, number>>;
}

interface Pass {
  at: number;
  counters: Counters;
  overview: Overview;
}

interface Remembered {
  rec: CometRecord;
  lastSeen: number;
  lastState: CometViewState;
}

const PUSH_ROUTES: Record<string, keyof Rates["pushes_in"]> = {
  "/goim/push/keys": "keys",
  "/goim/push/mids": "mids",
  "/goim/push/room": "room",
  "/goim/push/all": "all",
};

const JOB_SERIES = new Set([
  "goim_job_consumer_lag",
  "goim_job_consumed_total",
  "goim_job_push_latency_seconds_bucket",
  "goim_event_loop_lag_seconds",
]);

function lagOf(s: LoopLagStats | null): LagView {
  return s === null ? null : { p50: s.p50Ms, p99: s.p99Ms, max: s.maxMs };
}

// Counter increase from `before` to `now`; a reset counts from zero.
function increase(now: number, before: number | undefined): number {
  if (before === undefined) return 0;
  return now >= before ? now - before : now;
}

function addRates(
  into: Record<string, number>,
  now: Record<string, number>,
  before: Record<string, number> | undefined,
  seconds: number,
): void {
  if (before === undefined) return;
  for (const [k, v] of Object.entries(now)) {
    into[k] = (into[k] ?? 0) + increase(v, before[k] ?? 0) / seconds;
  }
}

// A comet known from its record only (no live figures).
function unreachable(
  rec: CometRecord,
  state: CometViewState,
  error: string,
  counts: { connections: number; ips: number; weight?: number },
  reachable = false,
): CometView {
  return {
    id: rec.id,
    state,
    reachable,
    error,
    grpc_addr: rec.grpcAddr,
    weight: counts.weight ?? rec.weight,
    connections: counts.connections,
    ips: counts.ips,
    rooms: null,
    by_transport: null,
    frames_out_per_s: null,
    loop_lag_ms: null,
    rss_bytes: null,
    queued_bytes: null,
    drain_deadline_ms: null,
    last_seen: rec.updated,
  };
}

/**
 * `histogram_quantile` over cumulative bucket counts (upper bound → count,
 * +Inf included): linear within the bucket, the highest finite bound when it
 * falls in +Inf. Null with no observation.
 *
 * @example
 * ```ts
 * quantile(0.5, new Map([[0.001, 0], [0.002, 10], [Infinity, 10]])); // 0.0015
 * ```
 */
export function quantile(q: number, buckets: ReadonlyMap<number, number>): number | null {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? (bounds.length ? buckets.get(bounds.at(-1)!)! : 0);
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const b of bounds) {
    const c = buckets.get(b)!;
    if (c >= rank) {
      if (b === Infinity) return lower;
      return lower + (b - lower) * ((rank - below) / Math.max(1e-12, c - below));
    }
    lower = b;
    below = c;
  }
  return lower;
}

/**
 * Builds {@linkcode Overview}s (see the module doc).
 *
 * @example
 * ```ts
 * declare const deps: OverviewDeps;
 * const sampler = new OverviewSampler(deps);
 * const o = await sampler.overview();
 * console.log(o.totals.connections, o.rates?.frames_out);
 * ```
 */
export class OverviewSampler {
  readonly #d: OverviewDeps;
  readonly #now: () => number;
  #last: Pass | undefined;
  #running: Promise<Overview> | undefined;
  readonly #seen = new Map<string, Remembered>();

  /** Reads nothing until the first {@linkcode OverviewSampler.overview}. */
  constructor(deps: OverviewDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** The current overview: a fresh pass, or the last one when it is recent (or one is running). */
  overview(): Promise<Overview> {
    const last = this.#last;
    if (last && this.#now() - last.at < OVERVIEW_REUSE_MS) return Promise.resolve(last.overview);
    this.#running ??= this.#pass().finally(() => this.#running = undefined);
    return this.#running;
  }

  /** Resolves once a pass in flight (if any) has finished. */
  async idle(): Promise<void> {
    await this.#running?.catch(() => {});
  }

  async #pass(): Promise<Overview> {
    const d = this.#d;
    const at = this.#now();
    const records = await d.registry.list();
    const live = new Set(records.map((r) => r.id));
    const gone = this.#goneSince(live, at);
    d.dialer.retain?.(new Set([...live, ...gone.map((g) => g.rec.id)]));
    const [stats, goneStats, jobs, pushes] = await Promise.all([
      Promise.all(records.map((r) => this.#stats(r))),
      // A comet out of the registry may still run: drained, it answers.
      Promise.all(gone.map((g) => this.#stats(g.rec))),
      Promise.all(d.jobs.map((j) => this.#job(j))),
      this.#pushCounts(),
    ]);
    const counters: Counters = {
      pushes,
      frames: new Map(),
      dropped: new Map(),
      disconnects: new Map(),
      consumed: new Map(),
      latency: new Map(),
    };
    const comets: CometView[] = [];
    records.forEach((rec, i) => {
      const s = stats[i];
      comets.push(this.#view(rec, s, at));
      if (typeof s === "string") return;
      counters.frames.set(rec.id, s.frames_out);
      counters.dropped.set(rec.id, s.dropped);
      counters.disconnects.set(rec.id, {
        ...s.disconnects,
        slow_consumer: Math.max(s.disconnects.slow_consumer ?? 0, s.slow_consumer_disconnects),
      });
    });
    gone.forEach((g, i) => comets.push(this.#goneView(g, goneStats[i])));
    comets.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

    const jobViews: JobView[] = [];
    let lag: number | null = null;
    for (const [i, j] of jobs.entries()) {
      const name = d.jobs[i].name;
      if (typeof j === "string") {
        jobViews.push({ name, reachable: false, error: j, lag: null, loop_lag_ms: null });
        continue;
      }
      const view = this.#jobView(name, j, counters);
      if (view.lag !== null) lag = (lag ?? 0) + view.lag;
      jobViews.push(view);
    }

    const prev = this.#last;
    const seconds = prev && at - prev.at <= RATE_MAX_GAP_MS ? (at - prev.at) / 1000 : null;
    const overview: Overview = {
      at,
      mode: d.mode,
      interval_s: seconds && seconds > 0 ? seconds : null,
      totals: this.#totals(comets),
      comets,
      top_rooms: this.#topRooms(),
      rates: seconds && seconds > 0 ? this.#rates(counters, prev!.counters, seconds) : null,
      queue: { lag },
      latency_ms: seconds && seconds > 0 ? this.#latency(counters, prev!.counters) : null,
      logic_loop_lag_ms: lagOf(loopLag()),
      jobs: jobViews,
    };
    this.#last = { at, counters, overview };
    return overview;
  }

  async #stats(rec: CometRecord): Promise<StatsReply | string> {
    try {
      return await this.#d.dialer.dial(rec).Stats({});
    } catch (e) {
      this.#d.log?.debug("operator: comet Stats failed", { comet: rec.id, error: e });
      return errorMessage(e);
    }
  }

  async #job(j: JobSource): Promise<Sample[] | string> {
    try {
      return parseSamples(await j.metrics(), (n) => JOB_SERIES.has(n));
    } catch (e) {
      this.#d.log?.debug("operator: job metrics failed", { job: j.name, error: e });
      return errorMessage(e);
    }
  }

  async #pushCounts(): Promise<Record<string, number>> {
    const out: Record<string, number> = { keys: 0, mids: 0, room: 0, all: 0 };
    for (const v of (await this.#d.metrics.httpRequests.get()).values) {
      const kind = PUSH_ROUTES[String(v.labels.route)];
      if (kind !== undefined && v.labels.code === "200") out[kind] += v.value;
    }
    return out;
  }

  #view(rec: CometRecord, s: StatsReply | string, at: number): CometView {
    const recordState: CometViewState = rec.state === "draining" ? "draining" : "up";
    const prevFrames = this.#last?.counters.frames.get(rec.id);
    const seconds = this.#last ? (at - this.#last.at) / 1000 : 0;
    let view: CometView;
    if (typeof s === "string") {
      view = unreachable(rec, "down", s, { connections: rec.connections, ips: rec.ips });
    } else {
      const state = s.state === "draining" || s.state === "drained" ? s.state : recordState;
      view = {
        id: rec.id,
        state,
        reachable: true,
        grpc_addr: rec.grpcAddr,
        weight: rec.weight,
        connections: s.connections,
        ips: s.ips,
        rooms: s.rooms,
        by_transport: s.connections_by_transport,
        frames_out_per_s: prevFrames !== undefined && seconds > 0 &&
            at - this.#last!.at <= RATE_MAX_GAP_MS
          ? increase(s.frames_out, prevFrames) / seconds
          : null,
        loop_lag_ms: s.loop_lag_known
          ? { p50: s.loop_lag_p50_ms, p99: s.loop_lag_p99_ms, max: s.loop_lag_max_ms }
          : null,
        rss_bytes: s.rss_bytes,
        queued_bytes: s.queued_bytes,
        drain_deadline_ms: s.drain_deadline_ms > 0 ? s.drain_deadline_ms : null,
        last_seen: rec.updated,
      };
    }
    this.#remember(rec, view.state, at);
    return view;
  }

  #remember(rec: CometRecord, state: CometViewState, at: number): void {
    this.#seen.delete(rec.id); // re-inserted last: the map stays ordered by last sight
    this.#seen.set(rec.id, { rec, lastSeen: at, lastState: state });
    while (this.#seen.size > MAX_REMEMBERED) {
      this.#seen.delete(this.#seen.keys().next().value!);
    }
  }

  // Comets seen within DOWN_MEMORY_MS and no longer registered (older ones are forgotten).
  #goneSince(live: ReadonlySet<string>, at: number): Remembered[] {
    const out: Remembered[] = [];
    for (const [id, r] of this.#seen) {
      if (live.has(id)) continue;
      if (at - r.lastSeen > DOWN_MEMORY_MS) this.#seen.delete(id);
      else out.push(r);
    }
    return out;
  }

  // Drained when it says so, or when it went silent after draining; else down.
  #goneView(r: Remembered, s: StatsReply | string): CometView {
    const says = typeof s === "string" ? undefined : s.state;
    if (says === "drained") r.lastState = "drained";
    const drained = says === "drained" ||
      (typeof s === "string" && (r.lastState === "draining" || r.lastState === "drained"));
    const answered = typeof s !== "string";
    return unreachable(
      r.rec,
      drained ? "drained" : "down",
      answered ? "not in the registry" : `not in the registry; ${s}`,
      { connections: answered ? s.connections : 0, ips: answered ? s.ips : 0, weight: 0 },
      answered,
    );
  }

  #jobView(name: string, samples: Sample[], counters: Counters): JobView {
    let lag: number | null = null;
    let consumed = 0;
    const buckets = new Map<number, number>();
    const loop: Record<string, number> = {};
    for (const s of samples) {
      if (s.name === "goim_job_consumer_lag") lag = Number.isFinite(s.value) ? s.value : null;
      else if (s.name === "goim_job_consumed_total") consumed += s.value;
      else if (s.name === "goim_event_loop_lag_seconds") loop[s.labels.stat] = s.value * 1000;
      else {
        const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
        if (!Number.isNaN(le)) buckets.set(le, (buckets.get(le) ?? 0) + s.value);
      }
    }
    counters.consumed.set(name, consumed);
    counters.latency.set(name, buckets);
    const round = (ms: number) => Math.round(ms * 1000) / 1000;
    return {
      name,
      reachable: true,
      lag,
      loop_lag_ms: loop.p50 === undefined
        ? null
        : { p50: round(loop.p50), p99: round(loop.p99 ?? 0), max: round(loop.max ?? 0) },
    };
  }

  #totals(comets: readonly CometView[]): Overview["totals"] {
    const t: Overview["totals"] = {
      connections: 0,
      ips: 0,
      comets: { up: 0, draining: 0, drained: 0, down: 0 },
    };
    for (const c of comets) {
      t.connections += c.connections;
      t.ips += c.ips;
      t.comets[c.state]++;
    }
    return t;
  }

  #topRooms(): Overview["top_rooms"] {
    return Object.entries(this.#d.online.snapshot())
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, TOP_ROOMS)
      .map(([room, count]) => ({ room, count }));
  }

  #rates(now: Counters, before: Counters, seconds: number): Rates {
    const pushes_in = { keys: 0, mids: 0, room: 0, all: 0 };
    for (const k of Object.keys(pushes_in) as (keyof typeof pushes_in)[]) {
      pushes_in[k] = increase(now.pushes[k], before.pushes[k]) / seconds;
    }
    let frames_out = 0;
    for (const [id, v] of now.frames) frames_out += increase(v, before.frames.get(id)) / seconds;
    const dropped: Record<string, number> = {};
    for (const [id, v] of now.dropped) addRates(dropped, v, before.dropped.get(id), seconds);
    const disconnects: Record<string, number> = {};
    for (const [id, v] of now.disconnects) {
      addRates(disconnects, v, before.disconnects.get(id), seconds);
    }
    let consumed = 0;
    for (const [j, v] of now.consumed) consumed += increase(v, before.consumed.get(j)) / seconds;
    return { pushes_in, frames_out, dropped, disconnects, consumed };
  }

  #latency(now: Counters, before: Counters): Overview["latency_ms"] {
    const delta = new Map<number, number>();
    for (const [j, buckets] of now.latency) {
      const old = before.latency.get(j);
      if (old === undefined) continue;
      for (const [le, c] of buckets) {
        delta.set(le, (delta.get(le) ?? 0) + increase(c, old.get(le) ?? 0));
      }
    }
    const p50 = quantile(0.5, delta), p99 = quantile(0.99, delta);
    if (p50 === null || p99 === null) return null;
    const ms = (s: number) => Math.round(s * 1e6) / 1000;
    return { p50: ms(p50), p99: ms(p99) };
  }
}

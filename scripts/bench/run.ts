/**
 * The bench tool's core, callable in-process (tests/bench_tool_test.ts) or
 * from the CLI (scripts/bench/main.ts): start (or target) a server, spawn
 * the swarm workers, connect the clients (spread over every comet the
 * target names), run the push phases, drain, and return a
 * {@linkcode BenchReport}. Every child is stopped on the way out, whatever
 * happened.
 *
 * A phase runs one push driver, or several at once (`mix`, the `sustained`
 * scenario); each driver stamps its own body stream, so its latency and
 * delivery are measured apart from the others'. Every second the sampler
 * reads each server process's CPU and RSS from `/proc` and its event-loop
 * lag (`goim_event_loop_lag_seconds`) from its admin /metrics; each phase
 * reports them per process, and the comets' frames per write.
 *
 * @module
 */

import { JsonLinesChild, pause } from "../../bench/lib/child.ts";
import {
  coresUsed,
  type CpuSnapshot,
  cpuSnapshot,
  readKernelRelease,
  readLoadAvg,
  readMemTotalBytes,
  readRssBytes,
  resolveServerPid,
} from "../../bench/lib/procstat.ts";
import { type DriverResult, type PushTarget, runDriver } from "./driver.ts";
import {
  type HistogramWire,
  LatencyHistogram,
  type LatencySummary,
  type SparseCounts,
} from "./histogram.ts";
import type { ServerReady } from "./server.ts";
import { LOOP_LAG_INTERVAL_MS, LOOP_LAG_METRIC, LOOP_LAG_WINDOW } from "../../infra/loop_lag.ts";
import { parseSamples } from "../../infra/metrics.ts";
import {
  BENCH_OP,
  type ConnectCommand,
  type ConnectedEvent,
  keyOf,
  nowMs,
  roomParams,
  type SecondBin,
  type SwarmLayout,
  transportOf,
  type WorkerStats,
} from "./wire.ts";

const HERE = new URL(".", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;

/**
 * What a phase pushes to. `none` holds the connections (heartbeats only);
 * `mix` runs the phase's `drivers` at the same time.
 */
export type PushKind = "none" | "keys" | "mids" | "room" | "rooms" | "all" | "mix";

/** One push driver of a phase: what it pushes to and how fast. */
export interface DriverSpec {
  /** Push target kind (not `none` or `mix`). */
  kind: Exclude<PushKind, "none" | "mix">;
  /** Pushes per second. */
  rate: number;
}

/** One timed step of a run. */
export interface PhaseSpec {
  /** Label in the report and chart. */
  name: string;
  /** Push target kind (`mix`: the `drivers`). */
  kind: PushKind;
  /** Pushes per second (ignored for `none`; for `mix` the drivers' sum). */
  rate: number;
  /** Push window (ms). */
  durationMs: number;
  /**
   * For `mix`: the drivers that push concurrently through the whole window,
   * each with its own token bucket and `inflight` bound, each measured on
   * its own (`PhaseReport.drivers`).
   */
  drivers?: DriverSpec[];
}

/**
 * The drivers a phase runs: its `drivers` for `mix`, none for `none`, else
 * one of its kind at its rate.
 *
 * @example
 * ```ts
 * driversOf({ name: "room", kind: "room", rate: 40, durationMs: 1000 }); // [{ kind: "room", rate: 40 }]
 * ```
 */
export function driversOf(p: PhaseSpec): DriverSpec[] {
  if (p.kind === "none") return [];
  if (p.kind === "mix") return p.drivers ?? [];
  return [{ kind: p.kind, rate: p.rate }];
}

/** One comet the swarm connects to. */
export interface CometEndpoint {
  /** Name, as in `ExternalServer.roles` when it is one of them (`comet-0`, `server`). */
  name: string;
  /** `tcp://host:port`. */
  tcp: string;
  /** `ws://host:port/sub`. */
  ws: string;
  /** Its pid (for RSS per connection), if known. */
  pid?: number;
  /** Its admin base URL (for /metrics), if known. */
  admin?: string;
}

/** A server process measured on its own. */
export interface ServerRole {
  /** Name, e.g. `logic`, `job`, `comet-0`; `server` for the embedded process. */
  name: string;
  /** Its pid. */
  pid: number;
  /** Its admin base URL, whose /metrics gives the event-loop lag (optional). */
  admin?: string;
}

/** An already-running server to target instead of starting one. */
export interface ExternalServer {
  /** Logic HTTP base URL, e.g. `http://127.0.0.1:3111`. */
  http: string;
  /** Comet TCP URL `tcp://127.0.0.1:3101`. */
  tcp: string;
  /** Comet WebSocket URL `ws://127.0.0.1:3102/sub`. */
  ws: string;
  /** Pid to read RSS and CPU from (optional). */
  serverPid?: number;
  /** Comet admin base URL for /metrics (optional). */
  cometAdmin?: string;
  /**
   * The comets to spread the swarm over (wire.ts `cometsOf`: round robin
   * within each room and transport), so a room spans every comet; default:
   * the one comet of `tcp`, `ws` and `cometAdmin`.
   */
  comets?: CometEndpoint[];
  /**
   * Server processes measured one by one (distributed mode: logic, job,
   * each comet); each phase reports their CPU, RSS and event-loop lag in
   * `roles`. Default: the one process of `serverPid`, if given.
   */
  roles?: ServerRole[];
  /** `distributed` when the bench started the roles itself (the report's `server.mode`). */
  mode?: "distributed";
}

/** A role's event-loop lag over a phase, from its admin /metrics (`goim_event_loop_lag_seconds`). */
export interface LoopLagUse {
  /** Highest p99 the role reported during the phase (ms; each reading covers its last 10 s). */
  p99Ms: number;
  /** Highest max it reported (ms). */
  maxMs: number;
  /** Readings taken (one a second). */
  samples: number;
  /**
   * True when the readings used all lie at least one window (10 s) into
   * the phase, so none covers time before it; false when the phase is
   * shorter and every reading in it was used.
   */
  windowInPhase: boolean;
}

/** One server process's CPU and RSS over a phase (distributed mode). */
export interface RoleUse {
  /** Role name, e.g. `logic`, `job`, `comet-0`. */
  name: string;
  /** Its pid. */
  pid: number;
  /** CPU over the phase, cores (null if unreadable). */
  cores: number | null;
  /** RSS at the phase end, bytes (null if unreadable). */
  rssBytes: number | null;
  /** Event-loop lag over the phase (null: no admin endpoint or no gauge there). */
  loopLag: LoopLagUse | null;
  /** Its comet counters over the phase, when it is one of the swarm's comets. */
  comet?: CometCounters | null;
}

/** Everything a run needs. */
export interface BenchOptions {
  /** Scenario name (report label). */
  scenario: string;
  /** Clients in the swarm. */
  clients: number;
  /** Share of WebSocket clients (0..1). */
  wsRatio: number;
  /** Share of clients opted in to streams (0..1; absent = 0). */
  streamsRatio?: number;
  /** Worker processes. */
  workers: number;
  /** Rooms the clients are spread over. */
  rooms: number;
  /** Room r's members all on comet r mod comets (default: every room on every comet). */
  roomLayout?: "spread" | "pinned";
  /** The phases, in order. */
  phases: PhaseSpec[];
  /** Client heartbeat period (ms). */
  heartbeatMs: number;
  /** Connects in flight per worker. */
  connectConcurrency: number;
  /** Client auth timeout (ms). */
  authTimeoutMs: number;
  /** Body size to pad to (0 = minimal). */
  bodyBytes: number;
  /** Keys or mids per push request. */
  keysPerPush: number;
  /** Push requests in flight at most. */
  inflight: number;
  /** Longest wait after a phase for its messages to arrive (ms). */
  drainMs: number;
  /** Pause after connecting before RSS is read (ms). */
  settleMs: number;
  /** Target this server instead of starting one. */
  external?: ExternalServer;
  /** Extra `--set key=value` for the embedded server. */
  serverSet: string[];
  /** Bearer key for the push API. */
  apiKey?: string;
  /** The offered rates of a `--sweep` (one phase each, in order), for the report. */
  sweep?: number[];
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** One process's CPU over a phase, in cores (CPU seconds / wall seconds). */
export interface CpuUse {
  /** The server under test, every role process together (null if unknown). */
  server: number | null;
  /** This driver process (HTTP pushes, aggregation). */
  driver: number | null;
  /** Each worker. */
  workers: (number | null)[];
  /** Sum of all of the above that are known. */
  total: number;
}

/** Comet counters over a phase, from its /metrics (null if not reachable). */
export interface CometCounters {
  /** socket writes */
  writes: number;
  /** frames written */
  frames: number;
  /** bytes written */
  bytes: number;
  /** frames / writes (coalescing) */
  framesPerWrite: number | null;
  /** slow consumers disconnected */
  slowConsumerDisconnects: number;
  /** frames dropped */
  dropped: number;
  /** push calls the comet took (PushMsg, BroadcastRoom, Broadcast; stream pushes one each) */
  pushCalls?: number;
}

/** What one driver (or all of a phase's together) pushed. */
export interface PushCounts {
  /** Requests sent. */
  sent: number;
  /** Accepted. */
  ok: number;
  /** Failed. */
  failed: number;
  /** Tokens not sent (the server answered too slowly). */
  missed: number;
  /** Requests sent per second of the window. */
  achievedRate: number;
  /** Send → HTTP answer. */
  http: LatencySummary;
  /** First distinct errors. */
  errors: string[];
}

/** One driver of a phase, measured on its own (its own body stream). */
export interface DriverReport {
  /** Push kind. */
  kind: DriverSpec["kind"];
  /** Target pushes/s. */
  targetRate: number;
  /** Its counts. */
  pushes: PushCounts;
  /** Deliveries its accepted pushes should cause. */
  expected: number;
  /** Its messages the swarm received. */
  delivered: number;
  /** delivered / expected (null when nothing was expected). */
  deliveredRatio: number | null;
  /** delivered / (its last receipt − phase start), per second. */
  deliveredPerSec: number;
  /** Push → receipt latency of its messages. */
  latencyMs: LatencySummary;
}

/** The result of one phase. */
export interface PhaseReport {
  /** Label. */
  name: string;
  /** Push kind. */
  kind: PushKind;
  /** Target pushes/s (all drivers). */
  targetRate: number;
  /** Push window (ms). */
  durationMs: number;
  /** Time waited after the window for the last messages (ms). */
  drainMs: number;
  /** Driver counts, all drivers together (null for `none`). */
  pushes: PushCounts | null;
  /** Each driver on its own (one entry unless the phase is a `mix`; absent in old reports). */
  drivers?: DriverReport[];
  /** Deliveries the accepted pushes should cause. */
  expected: number;
  /** Messages the swarm received. */
  delivered: number;
  /** delivered / expected (null when nothing was expected). */
  deliveredRatio: number | null;
  /** delivered / (last receipt − phase start), per second. */
  deliveredPerSec: number;
  /** Push → receipt latency over the phase. */
  latencyMs: LatencySummary;
  /** Heartbeat replies per second over the phase. */
  heartbeatsPerSec: number;
  /** CPU use over the phase (push window + drain). */
  cpu: CpuUse;
  /** Per server process CPU, RSS and loop lag (empty when no server pid is known). */
  roles?: RoleUse[];
  /** Comet counters, every comet together, when all their /metrics are reachable. */
  comet: CometCounters | null;
  /** Epoch ms of the phase start and end (drain included). */
  start: number;
  /** End, epoch ms. */
  end: number;
}

/** One second of the run. */
export interface SeriesPoint {
  /** Seconds since the run's connect phase started. */
  t: number;
  /** Messages delivered in that second. */
  delivered: number;
  /** Latency p50 of that second's messages (ms). */
  p50: number | null;
  /** p99 (ms). */
  p99: number | null;
  /** Pushes sent. */
  pushes: number;
  /** Heartbeat replies received. */
  heartbeats: number;
  /** Clients authenticated. */
  connects: number;
  /** Server cores used in that second (every role process together). */
  serverCores: number | null;
  /** Server RSS (MiB) at the end of that second (every role process together). */
  serverRssMiB: number | null;
  /** All workers' cores together. */
  workerCores: number | null;
  /** Each role's event-loop lag read in that second (ms; its last 10 s), null if unreadable. */
  loopLagMs?: Record<string, { p99: number; max: number } | null>;
}

/** The full result of a run (written as JSON, summarised as text and SVG). */
export interface BenchReport {
  /** Report format version. */
  version: 1;
  /** Scenario name. */
  scenario: string;
  /** ISO time of the start. */
  startedAt: string;
  /** Wall time of the whole run, server start to stop (ms). */
  wallMs: number;
  /** The options used (minus the logger). */
  options: Omit<BenchOptions, "log">;
  /** Where it ran. */
  machine: {
    cpus: number;
    memTotalBytes: number | null;
    kernel: string;
    deno: string;
    loadAvgStart: number[] | null;
    loadAvgEnd: number[] | null;
  };
  /**
   * The server under test. RSS figures are the comets' (every comet
   * together; the embedded process), which hold the connections.
   */
  server: {
    mode: "embedded" | "distributed" | "external";
    /** Comets the swarm was spread over. */
    comets?: number;
    pid: number | null;
    http: string;
    tcp: string;
    ws: string;
    rssBeforeBytes: number | null;
    rssAfterConnectBytes: number | null;
    rssEndBytes: number | null;
    bytesPerConnection: number | null;
  };
  /** Worker clock vs driver clock (ms), measured by ping; latency error is about ±rtt/2 + offset. */
  clock: { worker: number; offsetMs: number; rttMs: number }[];
  /** Connection setup. */
  connect: {
    requested: number;
    connected: number;
    failed: number;
    tcp: number;
    ws: number;
    /** Clients authenticated per comet (`server.comets` entries; absent in old reports). */
    perComet?: number[];
    wallMs: number;
    perSec: number;
    setupMs: LatencySummary;
    errors: string[];
    cpu: CpuUse;
  };
  /** Per worker. */
  workers: {
    index: number;
    pid: number;
    clients: number;
    connected: number;
    rssBytes: number | null;
    exitCode: number | null;
    disconnects: Record<string, number>;
  }[];
  /** Per phase. */
  phases: PhaseReport[];
  /** Heartbeat round trip (client op 2 → op 3) over the whole run. */
  heartbeatRttMs: LatencySummary;
  /** Connections the server ended during the run (slow consumer, …), by reason. */
  disconnects: Record<string, number>;
  /** Per-second series. */
  series: SeriesPoint[];
  /** Phase boundaries in series time (s), the connect phase first. */
  marks: { name: string; t0: number; t1: number }[];
  /** The tool broke (non-zero exit): crashed worker, nothing delivered, … */
  errors: string[];
  /** Worth knowing, not a failure: disconnects, missed pushes, skew. */
  warnings: string[];
}

interface WorkerHandle {
  index: number;
  proc: JsonLinesChild;
  from: number;
  to: number;
  connected: number;
  closing: boolean;
}

interface SecAcc {
  delivered: number;
  hist: LatencyHistogram | null;
  pushes: number;
  heartbeats: number;
  connects: number;
  serverCores: number | null;
  serverRssMiB: number | null;
  workerCores: number | null;
  loopLag: Record<string, { p99: number; max: number } | null> | null;
}

/**
 * Splits `n` clients over `k` workers in contiguous slices, sizes differing
 * by at most one.
 *
 * @example
 * ```ts
 * slices(10, 3); // [[0, 4], [4, 7], [7, 10]]
 * ```
 */
export function slices(n: number, k: number): [number, number][] {
  const out: [number, number][] = [];
  let from = 0;
  for (let w = 0; w < k; w++) {
    const size = Math.floor(n / k) + (w < n % k ? 1 : 0);
    out.push([from, from + size]);
    from += size;
  }
  return out;
}

/**
 * Sums every sample of the named Prometheus metrics (all label sets).
 *
 * @example
 * ```ts
 * sumMetrics('a_total{x="1"} 2\na_total{x="2"} 3\n', ["a_total"]); // { a_total: 5 }
 * ```
 */
export function sumMetrics(text: string, names: string[]): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  for (const x of parseSamples(text, (n) => n in out)) out[x.name] += x.value || 0;
  return out;
}

const COMET_METRICS = [
  "goim_comet_writes_total",
  "goim_comet_frames_out_total",
  "goim_comet_sent_bytes_total",
  "goim_comet_slow_consumer_disconnects_total",
  "goim_comet_dropped_total",
  "goim_comet_pushes_total",
];

/**
 * The values of one metric by the value of one of its labels (samples
 * without that label are skipped).
 *
 * @example
 * ```ts
 * byLabel('lag{stat="p99"} 0.012\nlag{stat="max"} 0.05\n', "lag", "stat"); // { p99: 0.012, max: 0.05 }
 * ```
 */
export function byLabel(text: string, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of parseSamples(text, (n) => n === name)) {
    if (label in x.labels) out[x.labels[label]] = x.value;
  }
  return out;
}

/**
 * GET `admin`/metrics within 5 s: the text, or null when there is no
 * endpoint or it does not answer (a figure is missing, the run goes on).
 */
async function scrape(admin: string | undefined): Promise<string | null> {
  if (!admin) return null;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 5000);
  try {
    const res = await fetch(`${admin}/metrics`, { signal: ctl.signal });
    const text = await res.text();
    return res.ok ? text : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

async function scrapeComet(admin: string | undefined): Promise<Record<string, number> | null> {
  const text = await scrape(admin);
  return text === null ? null : sumMetrics(text, COMET_METRICS);
}

/** How much of a phase the lag gauge's window covers: its samples × period (10 s). */
const LAG_WINDOW_MS = LOOP_LAG_WINDOW * LOOP_LAG_INTERVAL_MS;

/** A role's loop lag now (ms), or null when it has no admin endpoint or no gauge. */
async function scrapeLag(admin: string | undefined): Promise<{ p99: number; max: number } | null> {
  const text = await scrape(admin);
  if (text === null) return null;
  const g = byLabel(text, LOOP_LAG_METRIC, "stat");
  if (!(Number.isFinite(g.p99) && Number.isFinite(g.max))) return null;
  return { p99: g.p99 * 1000, max: g.max * 1000 };
}

/**
 * A role's lag over a phase from its one-a-second readings `[epoch ms,
 * reading]`: the readings at least one window into the phase (none of them
 * covers time before it), or every reading in it when the phase is shorter.
 *
 * @example
 * ```ts
 * phaseLag([[1000, { p99: 2, max: 9 }], [12_000, { p99: 3, max: 4 }]], 0, 13_000);
 * // { p99Ms: 3, maxMs: 4, samples: 1, windowInPhase: true }
 * ```
 */
export function phaseLag(
  readings: [number, { p99: number; max: number }][],
  start: number,
  end: number,
): LoopLagUse | null {
  const inPhase = readings.filter(([t]) => t >= start && t <= end);
  const full = inPhase.filter(([t]) => t - start >= LAG_WINDOW_MS);
  const use = full.length ? full : inPhase;
  if (!use.length) return null;
  return {
    p99Ms: Math.max(...use.map(([, r]) => r.p99)),
    maxMs: Math.max(...use.map(([, r]) => r.max)),
    samples: use.length,
    windowInPhase: full.length > 0,
  };
}

/** Several comets' scrapes added up, metric by metric; null if one is unknown. */
function sumScrapes(all: (Record<string, number> | null)[]): Record<string, number> | null {
  if (!all.length || all.some((m) => m === null)) return null;
  const out: Record<string, number> = {};
  for (const m of all) for (const [k, v] of Object.entries(m!)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function cometDelta(
  a: Record<string, number> | null,
  b: Record<string, number> | null,
): CometCounters | null {
  if (!a || !b) return null;
  const d = (k: string) => b[k] - a[k];
  const writes = d("goim_comet_writes_total"), frames = d("goim_comet_frames_out_total");
  return {
    writes,
    frames,
    bytes: d("goim_comet_sent_bytes_total"),
    framesPerWrite: writes > 0 ? frames / writes : null,
    slowConsumerDisconnects: d("goim_comet_slow_consumer_disconnects_total"),
    dropped: d("goim_comet_dropped_total"),
    pushCalls: d("goim_comet_pushes_total"),
  };
}

/** What {@linkcode pushTargets} needs to know about the swarm. */
export interface TargetContext {
  /** The swarm layout. */
  layout: SwarmLayout;
  /** Indices of the clients that connected. */
  live: number[];
  /** Connected members per room. */
  roomSize: number[];
  /** Keys or mids per request. */
  keysPerPush: number;
}

/**
 * The n-th push of a phase of `kind`: keys and mids walk the connected
 * clients round robin (`keysPerPush` per request); `room` always pushes room
 * 0; `rooms` walks the rooms round robin; `all` broadcasts. `expected` is the
 * number of swarm clients the push reaches.
 *
 * @example
 * ```ts
 * import type { SwarmLayout } from "./wire.ts";
 * declare const layout: SwarmLayout;
 * const t = pushTargets("keys", { layout, live: [0, 1, 2], roomSize: [3], keysPerPush: 1 });
 * t(4).path; // /goim/push/keys?operation=1000&keys=bench-<run>-1
 * ```
 */
export function pushTargets(kind: PushKind, c: TargetContext): (n: number) => PushTarget {
  const q = encodeURIComponent;
  const { layout, live, roomSize, keysPerPush: k } = c;
  switch (kind) {
    case "keys":
    case "mids":
      return (n) => {
        const ids: string[] = [];
        for (let j = 0; j < k; j++) {
          const i = live[(n * k + j) % live.length];
          ids.push(kind === "keys" ? keyOf(layout.runId, i) : String(layout.midBase + i));
        }
        return {
          path: `/goim/push/${kind}?operation=${BENCH_OP}&${kind}=${q(ids.join(","))}`,
          expected: new Set(ids).size,
        };
      };
    case "room":
    case "rooms":
      return (n) => {
        const r = kind === "room" ? 0 : n % roomSize.length;
        const p = roomParams(layout.runId, r);
        return {
          path: `/goim/push/room?operation=${BENCH_OP}&type=${q(p.type)}&room=${q(p.room)}`,
          expected: roomSize[r],
        };
      };
    case "all":
      return () => ({ path: `/goim/push/all?operation=${BENCH_OP}`, expected: live.length });
    // none and mix push nothing themselves (a mix's drivers have kinds of their own)
    default:
      return () => ({ path: "", expected: 0 });
  }
}

/**
 * Starts the embedded server child (scripts/bench/server.ts → main.ts's
 * `startEmbedded`) on free loopback ports and waits for its addresses.
 */
async function startServer(
  extraSets: string[],
  maxLifeMs: number,
): Promise<{ server: JsonLinesChild; target: ExternalServer }> {
  const sets = [
    "comet.tcp.bind=127.0.0.1:0",
    "comet.websocket.bind=127.0.0.1:0",
    "logic.http.bind=127.0.0.1:0",
    "comet.admin.bind=127.0.0.1:0",
    "logic.admin.bind=127.0.0.1:0",
    "job.admin.bind=",
    "log.level=warn",
    ...extraSets,
  ];
  const server = new JsonLinesChild({
    name: "server",
    cwd: ROOT,
    // The permissions of `deno task start`.
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      "--allow-sys",
      `${HERE}server.ts`,
      `--max-life-ms=${maxLifeMs}`,
      ...sets.flatMap((s) => ["--set", s]),
    ],
  });
  try {
    const ready = await server.next("server-ready", 60_000) as unknown as
      & ServerReady
      & Record<string, unknown>;
    return {
      server,
      target: {
        http: `http://${ready.http}`,
        tcp: `tcp://${ready.tcp}`,
        ws: `ws://${ready.ws}/sub`,
        serverPid: ready.pid,
        cometAdmin: ready.cometAdmin ? `http://${ready.cometAdmin}` : undefined,
      },
    };
  } catch (e) {
    await server.stop(5_000);
    throw e;
  }
}

function emptyReport(opts: BenchOptions, machine: BenchReport["machine"]): BenchReport {
  const { log: _drop, ...options } = opts;
  const none = new LatencyHistogram().summary();
  return {
    version: 1,
    scenario: opts.scenario,
    startedAt: new Date().toISOString(),
    wallMs: 0,
    options,
    machine,
    server: {
      mode: opts.external?.mode ?? (opts.external ? "external" : "embedded"),
      pid: null,
      http: "",
      tcp: "",
      ws: "",
      rssBeforeBytes: null,
      rssAfterConnectBytes: null,
      rssEndBytes: null,
      bytesPerConnection: null,
    },
    clock: [],
    connect: {
      requested: opts.clients,
      connected: 0,
      failed: 0,
      tcp: 0,
      ws: 0,
      perComet: [],
      wallMs: 0,
      perSec: 0,
      setupMs: none,
      errors: [],
      cpu: { server: null, driver: null, workers: [], total: 0 },
    },
    workers: [],
    phases: [],
    heartbeatRttMs: none,
    disconnects: {},
    series: [],
    marks: [],
    errors: [],
    warnings: [],
  };
}

/**
 * Runs one benchmark and returns its report. Never throws for a server or
 * worker failure: those land in `report.errors` (the CLI exits non-zero on
 * them); throws only for invalid options.
 *
 * The steps, in order (each a method of {@linkcode BenchRun}): open the
 * server, start the workers, check their clocks, start the per-second
 * sampler, connect the clients, settle and weigh the server, run the
 * phases, collect the workers' statistics, build the series; whatever
 * happened, shut everything down.
 *
 * @example
 * ```ts
 * const report = await runBench({
 *   scenario: "tiny", clients: 20, wsRatio: 0.5, workers: 1, rooms: 1,
 *   phases: [{ name: "room", kind: "room", rate: 10, durationMs: 2000 }],
 *   heartbeatMs: 30_000, connectConcurrency: 50, authTimeoutMs: 30_000, bodyBytes: 0,
 *   keysPerPush: 1, inflight: 64, drainMs: 3000, settleMs: 500, serverSet: [],
 * });
 * console.log(report.phases[0].delivered);
 * ```
 */
export async function runBench(opts: BenchOptions): Promise<BenchReport> {
  validate(opts);
  const wall0 = performance.now();
  const run = new BenchRun(opts, await machineInfo(await readLoadAvg()), wall0);
  try {
    await run.openServer();
    await run.startWorkers();
    await run.checkClocks();
    await run.startSampler();
    if (await run.connectClients()) {
      await run.settle();
      await run.runPhases();
      await run.collectStats();
      run.buildSeries();
    }
  } catch (e) {
    run.report.errors.push(`run failed: ${(e as Error).stack ?? e}`);
  } finally {
    await run.shutdown();
  }
  return run.report;
}

/**
 * The state of one run and its steps, called in order by
 * {@linkcode runBench}. Steps record into `report`; a tool failure goes to
 * `report.errors` and the later steps see it.
 */
class BenchRun {
  /** The report being filled. */
  readonly report: BenchReport;
  readonly #opts: BenchOptions;
  readonly #log: (line: string) => void;
  readonly #wall0: number;
  readonly #layout: SwarmLayout;
  readonly #connectTimeoutMs: number;
  /** Children die on their own after this, whatever happens to this process. */
  readonly #maxLifeMs: number;
  /** Per-second accumulators, by epoch second. */
  readonly #secs = new Map<number, SecAcc>();
  #server: JsonLinesChild | null = null;
  /** Set once the server is stopped on purpose. */
  #srvClosing = false;
  #target: ExternalServer | null = null;
  readonly #workers: WorkerHandle[] = [];
  #sampler: ReturnType<typeof setTimeout> | undefined;
  #samplerStopped = false;
  #sampling: Promise<void> = Promise.resolve();
  #connectStart = 0;
  #connected: ConnectedEvent[] = [];
  readonly #failedIdx = new Set<number>();
  /** Body stream indices of each phase's drivers (see wire.ts `encodeBody`). */
  readonly #streams: number[][] = [];
  /** Each role's loop-lag readings, `[epoch ms, reading]`, one a second. */
  readonly #lag = new Map<string, [number, { p99: number; max: number }][]>();
  /** The loop-lag reading in flight, if any. */
  #lagging: Promise<void> | null = null;

  constructor(opts: BenchOptions, machine: BenchReport["machine"], wall0: number) {
    this.#opts = opts;
    this.#log = opts.log ?? (() => {});
    this.#wall0 = wall0;
    this.#layout = {
      runId: crypto.randomUUID().slice(0, 8),
      // Unique mids per run, so a shared server's other users are not pushed to.
      midBase: 1_000_000_000 + Math.floor(Math.random() * 1_000_000) * 1_000_000,
      wsRatio: opts.wsRatio,
      streamsRatio: opts.streamsRatio ?? 0,
      rooms: opts.rooms,
      pinned: opts.roomLayout === "pinned",
    };
    let stream = 0;
    for (const p of opts.phases) this.#streams.push(driversOf(p).map(() => stream++));
    const pushWindow = opts.phases.reduce((s, p) => s + p.durationMs + opts.drainMs, 0);
    this.#connectTimeoutMs = Math.max(60_000, opts.clients * 5);
    this.#maxLifeMs = this.#connectTimeoutMs + pushWindow + opts.settleMs + 120_000;
    this.report = emptyReport(opts, machine);
  }

  get #errors(): string[] {
    return this.report.errors;
  }

  get #warnings(): string[] {
    return this.report.warnings;
  }

  get #serverPid(): number | undefined {
    return this.#target?.serverPid;
  }

  /** The role processes (every one a server process; one for the embedded server). */
  get #roles(): ServerRole[] {
    return this.#target?.roles ?? [];
  }

  /** The comets the swarm connects to (at least one once the server is open). */
  get #comets(): CometEndpoint[] {
    return this.#target?.comets ?? [];
  }

  /** Pids whose RSS holds the connections: the comets' (or the one server's). */
  get #memPids(): number[] {
    const pids = this.#comets.flatMap((c) => c.pid ? [c.pid] : []);
    const pid = this.#serverPid;
    return pids.length ? pids : pid ? [pid] : [];
  }

  /** Sum of the RSS of `pids` (null when one is unreadable or there is none). */
  async #rss(pids: number[]): Promise<number | null> {
    if (!pids.length) return null;
    const all = await Promise.all(pids.map((p) => readRssBytes(p)));
    return all.some((b) => b === null) ? null : all.reduce<number>((x, b) => x + b!, 0);
  }

  /** Cores of every role process together between two snapshots (null if none is readable). */
  #serverCores(a: CpuSnapshot, b: CpuSnapshot): number | null {
    const used = this.#roles.map((r) => coresUsed(a, b, r.pid)).filter((c) => c !== null);
    return used.length ? used.reduce((x, c) => x + c, 0) : null;
  }

  #sec(s: number): SecAcc {
    let a = this.#secs.get(s);
    if (!a) {
      a = {
        delivered: 0,
        hist: null,
        pushes: 0,
        heartbeats: 0,
        connects: 0,
        serverCores: null,
        serverRssMiB: null,
        workerCores: null,
        loopLag: null,
      };
      this.#secs.set(s, a);
    }
    return a;
  }

  #addBin(b: SecondBin): void {
    const a = this.#sec(b.sec);
    a.delivered += b.frames;
    a.heartbeats += b.heartbeats;
    a.connects += b.authed;
    if (b.hist.length) (a.hist ??= new LatencyHistogram()).mergeSparse(b.hist as SparseCounts);
  }

  #allPids(): number[] {
    const pid = this.#serverPid;
    const roles = this.#roles.map((r) => r.pid).filter((p) => p !== pid);
    return [...(pid ? [pid] : []), ...roles, Deno.pid, ...this.#workers.map((h) => h.proc.pid)];
  }

  #cpuUse(a: CpuSnapshot, b: CpuSnapshot): CpuUse {
    const s = this.#serverCores(a, b);
    const d = coresUsed(a, b, Deno.pid);
    const ws = this.#workers.map((h) => coresUsed(a, b, h.proc.pid));
    const total = [s, d, ...ws].reduce<number>((x, y) => x + (y ?? 0), 0);
    return { server: s, driver: d, workers: ws, total };
  }

  /** Seconds of run time (since the connect step started) at epoch ms `t`. */
  #runTime(t: number): number {
    return (t - this.#connectStart) / 1000;
  }

  /** Targets the given server, or starts the embedded one. */
  async openServer(): Promise<void> {
    const opts = this.#opts;
    let target: ExternalServer;
    if (opts.external) {
      target = { ...opts.external };
      if (target.serverPid) {
        const pid = await resolveServerPid(target.serverPid);
        if (pid !== target.serverPid) {
          this.#log(`--server-pid ${target.serverPid} is a wrapper; measuring its child ${pid}`);
          target.serverPid = pid;
        }
      }
    } else {
      this.#log("starting the embedded server");
      const started = await startServer(opts.serverSet, this.#maxLifeMs);
      this.#server = started.server;
      target = started.target;
    }
    // One comet and one process unless the target names several.
    target.comets ??= [{
      name: "server",
      tcp: target.tcp,
      ws: target.ws,
      pid: target.serverPid,
      admin: target.cometAdmin,
    }];
    target.roles ??= target.serverPid
      ? [{ name: "server", pid: target.serverPid, admin: target.cometAdmin }]
      : [];
    this.#target = target;
    this.report.server.comets = target.comets.length;
    this.report.server.pid = target.serverPid ?? null;
    this.report.server.http = target.http;
    this.report.server.tcp = target.tcp;
    this.report.server.ws = target.ws;
  }

  /**
   * Spawns the swarm workers, waits until each is ready, and from then on
   * counts an exit nobody asked for (worker or server) as a tool failure.
   */
  async startWorkers(): Promise<void> {
    const opts = this.#opts;
    const parts = slices(opts.clients, opts.workers);
    this.#log(`starting ${opts.workers} worker process(es) for ${opts.clients} clients`);
    for (let w = 0; w < opts.workers; w++) {
      const h: WorkerHandle = {
        index: w,
        from: parts[w][0],
        to: parts[w][1],
        connected: 0,
        closing: false,
        proc: null as unknown as JsonLinesChild,
      };
      h.proc = new JsonLinesChild({
        name: `worker ${w}`,
        cwd: ROOT,
        args: ["run", "-A", `${HERE}swarm.ts`, `--max-life-ms=${this.#maxLifeMs}`],
        onEvent: (ev) => {
          if (ev.ev === "tick") {
            for (const b of ev.bins as SecondBin[]) this.#addBin(b);
            h.connected = ev.connected as number;
          } else if (ev.ev === "error") {
            this.#errors.push(`worker ${w}: ${ev.message}`);
          }
        },
      });
      this.#workers.push(h);
    }
    await Promise.all(this.#workers.map((h) => h.proc.next("ready", 60_000)));
    for (const h of this.#workers) {
      h.proc.exited.then((s) => {
        if (!h.closing) {
          this.#errors.push(
            `worker ${h.index} (pid ${h.proc.pid}) exited early with code ${s.code}:\n` +
              h.proc.tail(),
          );
        }
      });
    }
    const srv = this.#server;
    srv?.exited.then((s) => {
      if (!this.#srvClosing) {
        this.#errors.push(
          `server (pid ${srv.pid}) exited early with code ${s.code}:\n${srv.tail()}`,
        );
      }
    });
  }

  /** Are the worker clocks the driver's clock? (Same machine: they should be.) */
  async checkClocks(): Promise<void> {
    for (const h of this.#workers) {
      let best = { offsetMs: 0, rttMs: Infinity };
      for (let i = 0; i < 5; i++) {
        const t0 = nowMs();
        const pong = await h.proc.ask(
          { cmd: "ping", id: i },
          (e) => e.ev === "pong" && e.id === i,
          10_000,
        );
        const t1 = nowMs();
        if (t1 - t0 < best.rttMs) {
          best = { offsetMs: (pong.now as number) - (t0 + t1) / 2, rttMs: t1 - t0 };
        }
      }
      this.report.clock.push({ worker: h.index, ...best });
      if (Math.abs(best.offsetMs) > Math.max(1, best.rttMs)) {
        this.#warnings.push(`worker ${h.index} clock is off by ${best.offsetMs.toFixed(3)} ms`);
      }
    }
  }

  /** Samples server CPU/RSS and worker CPU every second, for the series. */
  async startSampler(): Promise<void> {
    let prev = await cpuSnapshot(this.#allPids());
    const sample = async () => {
      const now = await cpuSnapshot(this.#allPids());
      const a = this.#sec(Math.floor(nowMs() / 1000) - 1);
      a.serverCores = this.#serverCores(prev, now);
      a.workerCores = this.#workers.reduce(
        (x, h) => x + (coresUsed(prev, now, h.proc.pid) ?? 0),
        0,
      );
      const rss = await this.#rss(this.#roles.map((r) => r.pid));
      a.serverRssMiB = rss === null ? null : rss / 1048576;
      prev = now;
      // Not awaited: a role too busy to answer its /metrics must not shift
      // the CPU seconds; a second's reading is skipped while one is pending.
      this.#lagging ??= this.#readLag(a).finally(() => this.#lagging = null);
    };
    const tick = () => {
      if (this.#samplerStopped) return;
      this.#sampler = setTimeout(() => {
        this.#sampling = sample().finally(tick);
      }, 1000 - (nowMs() % 1000) + 2);
    };
    tick();
  }

  /**
   * Reads every role's loop lag from its admin /metrics, in parallel (each
   * bounded by `scrape`'s 5 s), into second `a` and the phase readings.
   */
  async #readLag(a: SecAcc): Promise<void> {
    const withAdmin = this.#roles.filter((r) => r.admin);
    if (!withAdmin.length) return;
    const at = nowMs();
    const lags = await Promise.all(withAdmin.map((r) => scrapeLag(r.admin)));
    a.loopLag = {};
    withAdmin.forEach((r, i) => {
      const reading = lags[i];
      a.loopLag![r.name] = reading;
      if (reading === null) return;
      let list = this.#lag.get(r.name);
      if (!list) this.#lag.set(r.name, list = []);
      list.push([at, reading]);
    });
  }

  /** Connects every client through its worker; false (and an error) when none connected. */
  async connectClients(): Promise<boolean> {
    const opts = this.#opts, report = this.report;
    report.server.rssBeforeBytes = await this.#rss(this.#memPids);
    const comets = this.#comets;
    this.#log(
      `connecting ${opts.clients} clients (ws ratio ${opts.wsRatio}` +
        (opts.streamsRatio ? `, streams ${opts.streamsRatio}` : "") + ")" +
        (comets.length > 1 ? ` over ${comets.length} comets` : ""),
    );
    this.#connectStart = nowMs();
    const cpuA = await cpuSnapshot(this.#allPids());
    this.#connected = await Promise.all(this.#workers.map(async (h) => {
      const cmd: ConnectCommand = {
        cmd: "connect",
        comets: comets.map((c) => ({ tcp: c.tcp, ws: c.ws })),
        from: h.from,
        to: h.to,
        layout: this.#layout,
        heartbeatMs: opts.heartbeatMs,
        concurrency: opts.connectConcurrency,
        authTimeoutMs: opts.authTimeoutMs,
      };
      return await h.proc.ask(cmd, "connected", this.#connectTimeoutMs) as unknown as
        & ConnectedEvent
        & Record<string, unknown>;
    }));
    const cpuB = await cpuSnapshot(this.#allPids());
    const setup = new LatencyHistogram();
    let firstStart = Infinity, lastAuth = 0;
    report.connect.perComet = comets.map(() => 0);
    for (const c of this.#connected) {
      c.perComet.forEach((n, i) => report.connect.perComet![i] += n);
      report.connect.connected += c.authed;
      report.connect.failed += c.failed;
      report.connect.tcp += c.tcp;
      report.connect.ws += c.ws;
      c.failedIdx.forEach((i) => this.#failedIdx.add(i));
      report.connect.errors.push(...c.errors);
      setup.mergeWire(c.setup as HistogramWire);
      firstStart = Math.min(firstStart, c.firstStart);
      lastAuth = Math.max(lastAuth, c.lastAuth);
    }
    report.connect.errors = report.connect.errors.slice(0, 10);
    report.connect.wallMs = Math.max(0, lastAuth - firstStart);
    report.connect.perSec = report.connect.wallMs > 0
      ? report.connect.connected / (report.connect.wallMs / 1000)
      : 0;
    report.connect.setupMs = setup.summary();
    report.connect.cpu = this.#cpuUse(cpuA, cpuB);
    report.marks.push({ name: "connect", t0: 0, t1: this.#runTime(nowMs()) });
    this.#log(
      `connected ${report.connect.connected}/${opts.clients} in ${
        (report.connect.wallMs / 1000).toFixed(1)
      } s (${Math.round(report.connect.perSec)}/s), ${report.connect.failed} failed`,
    );
    if (report.connect.failed > 0) {
      this.#warnings.push(
        `${report.connect.failed} clients failed to connect: ` +
          report.connect.errors.slice(0, 2).join("; "),
      );
    }
    if (report.connect.connected === 0) {
      this.#errors.push("no client connected");
      return false;
    }
    return true;
  }

  /** Settles, then reads the server's RSS with every connection open. */
  async settle(): Promise<void> {
    const report = this.report;
    const t0 = report.marks[report.marks.length - 1].t1;
    await pause(this.#opts.settleMs);
    report.marks.push({ name: "settle", t0, t1: this.#runTime(nowMs()) });
    report.server.rssAfterConnectBytes = await this.#rss(this.#memPids);
    const a = report.server.rssBeforeBytes, b = report.server.rssAfterConnectBytes;
    if (a !== null && b !== null) {
      report.server.bytesPerConnection = (b - a) / report.connect.connected;
    }
  }

  /** Runs the phases in order, stopping at the first tool failure. */
  async runPhases(): Promise<void> {
    const opts = this.#opts;
    // Targets: the clients that connected; room sizes from the layout.
    const live: number[] = [];
    const roomSize = new Array<number>(opts.rooms).fill(0);
    for (let i = 0; i < opts.clients; i++) {
      if (this.#failedIdx.has(i)) continue;
      live.push(i);
      roomSize[i % opts.rooms]++;
    }
    const ctx: TargetContext = {
      layout: this.#layout,
      live,
      roomSize,
      keysPerPush: opts.keysPerPush,
    };
    for (let p = 0; p < opts.phases.length; p++) {
      if (this.#errors.length) break;
      await this.#runPhase(p, ctx);
    }
  }

  /** One phase: its push window (every driver at once), its drain, and its report entry. */
  async #runPhase(p: number, ctx: TargetContext): Promise<void> {
    const opts = this.#opts, target = this.#target!;
    const ph = opts.phases[p];
    const specs = driversOf(ph);
    const what = ph.kind === "mix"
      ? specs.map((d) => `${d.kind} at ${d.rate}/s`).join(" + ") + " "
      : ph.kind === "none"
      ? "none "
      : `${ph.kind} at ${ph.rate}/s `;
    this.#log(`phase ${p} "${ph.name}": ${what}for ${ph.durationMs / 1000} s`);
    const comets = this.#comets;
    const start = nowMs();
    const mA = await Promise.all(comets.map((c) => scrapeComet(c.admin)));
    const cA = await cpuSnapshot(this.#allPids());
    let results: DriverResult[] = [];
    if (!specs.length) {
      await pause(ph.durationMs);
    } else {
      results = await Promise.all(specs.map((d, j) =>
        runDriver({
          http: target.http,
          rate: d.rate,
          durationMs: ph.durationMs,
          inflight: opts.inflight,
          phase: this.#streams[p][j],
          bodyBytes: opts.bodyBytes,
          target: pushTargets(d.kind, ctx),
          apiKey: opts.apiKey,
        })
      ));
      for (const r of results) for (const [s, n] of r.perSecond) this.#sec(s).pushes += n;
    }
    const windowEnd = nowMs();
    const expected = results.reduce((x, r) => x + r.expected, 0);
    if (results.length) await this.#drain(p, expected, windowEnd);
    const end = nowMs();
    const cB = await cpuSnapshot(this.#allPids());
    const mB = await Promise.all(comets.map((c) => scrapeComet(c.admin)));
    const perComet = new Map(comets.map((c, i) => [c.name, cometDelta(mA[i], mB[i])]));
    const none = new LatencyHistogram().summary();
    this.report.phases.push({
      name: ph.name,
      kind: ph.kind,
      targetRate: specs.reduce((x, d) => x + d.rate, 0),
      durationMs: ph.durationMs,
      drainMs: end - windowEnd,
      pushes: results.length ? pushCounts(results) : null,
      drivers: results.map((r, j) => ({
        kind: specs[j].kind,
        targetRate: specs[j].rate,
        pushes: pushCounts([r]),
        expected: r.expected,
        delivered: 0, // filled from the workers' final stats, as below
        deliveredRatio: null,
        deliveredPerSec: 0,
        latencyMs: none,
      })),
      expected,
      delivered: 0, // filled from the workers' final stats
      deliveredRatio: null,
      deliveredPerSec: 0,
      latencyMs: none,
      heartbeatsPerSec: 0, // filled once the last second's bins arrived
      cpu: this.#cpuUse(cA, cB),
      roles: await Promise.all(
        this.#roles.map(async (r) => ({
          name: r.name,
          pid: r.pid,
          cores: coresUsed(cA, cB, r.pid),
          rssBytes: await readRssBytes(r.pid),
          loopLag: phaseLag(this.#lag.get(r.name) ?? [], start, end),
          ...(perComet.has(r.name) ? { comet: perComet.get(r.name) } : {}),
        })),
      ),
      comet: cometDelta(sumScrapes(mA), sumScrapes(mB)),
      start,
      end,
    });
    this.report.marks.push({ name: ph.name, t0: this.#runTime(start), t1: this.#runTime(end) });
    results.forEach((r, j) => {
      const label = specs.length > 1
        ? `phase "${ph.name}" (${specs[j].kind})`
        : `phase "${ph.name}"`;
      if (r.failed > 0) this.#warnings.push(`${label}: ${r.failed} pushes failed: ${r.errors[0]}`);
      if (r.missed > 0) {
        this.#warnings.push(
          `${label}: ${r.missed} pushes not sent (server answered too slowly ` +
            `for ${specs[j].rate}/s with ${opts.inflight} in flight)`,
        );
      }
    });
  }

  /**
   * Waits for a phase's expected count, or until arrivals stop for a quarter
   * of `--drain` (at least 1.5 s): at large fan-out a comet's cycle can leave
   * gaps of seconds between arrivals that are not the end.
   */
  async #drain(p: number, expected: number, windowEnd: number): Promise<void> {
    const idleMs = Math.max(1500, this.#opts.drainMs / 4);
    let last = -1, lastChange = nowMs();
    while (nowMs() - windowEnd < this.#opts.drainMs && !this.#errors.length) {
      const f = await this.#framesOf(p);
      if (f >= expected) break;
      if (f !== last) {
        last = f;
        lastChange = nowMs();
      } else if (nowMs() - lastChange > idleMs) break;
      await pause(20);
    }
  }

  /**
   * Messages of phase p (all its streams) received so far, asked of every
   * worker (a tick would answer up to a second late; a phase's drain should
   * not).
   */
  async #framesOf(p: number): Promise<number> {
    const counts = await Promise.all(this.#workers.map(async (h) => {
      const ev = await h.proc.ask({ cmd: "count" }, "count", 10_000);
      const frames = ev.phaseFrames as Record<string, number>;
      return this.#streams[p].reduce((x, st) => x + (frames[String(st)] ?? 0), 0);
    }));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** Heartbeat replies per second over the whole seconds inside [a, b]. */
  #heartbeatRate(a: number, b: number): number {
    const s0 = Math.ceil(a / 1000), s1 = Math.floor(b / 1000);
    if (s1 <= s0) return 0;
    let n = 0;
    for (let s = s0; s < s1; s++) n += this.#secs.get(s)?.heartbeats ?? 0;
    return n / (s1 - s0);
  }

  /** Asks every worker for its final statistics and fills the per-phase figures. */
  async collectStats(): Promise<void> {
    const report = this.report;
    await pause(1100); // one more tick, so the last second's bins arrive
    report.server.rssEndBytes = await this.#rss(this.#memPids);
    const stats = await Promise.all(
      this.#workers.map(async (h) =>
        await h.proc.ask({ cmd: "stats" }, "stats", 30_000) as unknown as
          & WorkerStats
          & Record<string, unknown>
      ),
    );
    const hbRtt = new LatencyHistogram();
    for (let w = 0; w < this.#workers.length; w++) {
      const s = stats[w], h = this.#workers[w];
      hbRtt.mergeWire(s.heartbeatRtt);
      for (const [why, n] of Object.entries(s.disconnects)) {
        report.disconnects[why] = (report.disconnects[why] ?? 0) + n;
      }
      report.workers.push({
        index: w,
        pid: h.proc.pid,
        clients: h.to - h.from,
        connected: this.#connected[w].authed,
        rssBytes: s.rssBytes,
        exitCode: null,
        disconnects: s.disconnects,
      });
      if (s.foreign > 0) {
        this.#warnings.push(`worker ${w}: ${s.foreign} messages without a bench body`);
      }
    }
    report.heartbeatRttMs = hbRtt.summary();
    const totalDisc = Object.values(report.disconnects).reduce((a, b) => a + b, 0);
    if (totalDisc > 0) {
      this.#warnings.push(
        `the server ended ${totalDisc} connections during the run: ${
          JSON.stringify(report.disconnects)
        }`,
      );
    }
    for (let p = 0; p < report.phases.length; p++) this.#finishPhase(p, stats);
    const pushed = report.phases.some((p) => p.kind !== "none");
    if (pushed && report.phases.every((p) => p.delivered === 0)) {
      this.#errors.push("no message was delivered in any phase");
    }
  }

  /**
   * Fills phase p's delivery, rate and latency from the workers'
   * statistics: each driver from its own stream, the phase from all of them.
   */
  #finishPhase(p: number, stats: WorkerStats[]): void {
    const pr = this.report.phases[p];
    const all = new LatencyHistogram();
    let delivered = 0, lastRecv = 0;
    this.#streams[p].forEach((st, j) => {
      const hist = new LatencyHistogram();
      let n = 0, last = 0;
      for (const s of stats) {
        const ps = s.phases[String(st)];
        if (!ps) continue;
        n += ps.frames;
        hist.mergeWire(ps.hist);
        if (ps.last !== null) last = Math.max(last, ps.last);
      }
      const d = pr.drivers?.[j];
      if (d) fillDelivery(d, n, last, pr.start, hist);
      all.merge(hist);
      delivered += n;
      lastRecv = Math.max(lastRecv, last);
    });
    fillDelivery(pr, delivered, lastRecv, pr.start, all);
    pr.heartbeatsPerSec = this.#heartbeatRate(pr.start, pr.end);
    if (pr.kind !== "none" && pr.pushes && pr.pushes.ok > 0 && delivered === 0) {
      this.#errors.push(`phase "${pr.name}": ${pr.pushes.ok} pushes accepted, nothing delivered`);
    }
    const parts = (pr.drivers?.length ?? 0) > 1
      ? pr.drivers!.map((d) => ({ label: `phase "${pr.name}" (${d.kind})`, r: d }))
      : [{ label: `phase "${pr.name}"`, r: pr }];
    for (const { label, r } of parts) {
      if (r.deliveredRatio !== null && r.deliveredRatio < 0.999) {
        this.#warnings.push(`${label}: delivered ${r.delivered} of ${r.expected} expected`);
      }
    }
    if (pr.latencyMs.negative > 0) {
      this.#warnings.push(
        `phase "${pr.name}": ${pr.latencyMs.negative} negative latencies (clock skew)`,
      );
    }
  }

  /** The per-second series, from the connect step to the last whole second. */
  buildSeries(): void {
    const s0 = Math.floor(this.#connectStart / 1000);
    const sLast = Math.floor(nowMs() / 1000) - 1;
    for (let s = s0; s <= sLast; s++) {
      const a = this.#secs.get(s);
      this.report.series.push({
        t: s - this.#connectStart / 1000 + 1, // the end of that second, in run time
        delivered: a?.delivered ?? 0,
        p50: a?.hist?.percentile(0.5) ?? null,
        p99: a?.hist?.percentile(0.99) ?? null,
        pushes: a?.pushes ?? 0,
        heartbeats: a?.heartbeats ?? 0,
        connects: a?.connects ?? 0,
        serverCores: a?.serverCores ?? null,
        serverRssMiB: a?.serverRssMiB ?? null,
        workerCores: a?.workerCores ?? null,
        ...(a?.loopLag ? { loopLagMs: a.loopLag } : {}),
      });
    }
  }

  /**
   * Stops the sampler, closes the swarm (clients say goodbye), then the
   * server; every child by its pid, each wait bounded.
   */
  async shutdown(): Promise<void> {
    this.#samplerStopped = true;
    clearTimeout(this.#sampler);
    await this.#sampling.catch(() => {});
    await this.#lagging;
    await Promise.all(this.#workers.map(async (h) => {
      h.closing = true;
      await h.proc.ask({ cmd: "close" }, "closed", 30_000).catch(() => {});
      const st = await h.proc.stop(10_000);
      const wr = this.report.workers.find((w) => w.index === h.index);
      if (wr) wr.exitCode = st.code;
      if (st.code !== 0 && !this.#errors.some((x) => x.startsWith(`worker ${h.index} `))) {
        this.#errors.push(`worker ${h.index} exited with code ${st.code}:\n${h.proc.tail()}`);
      }
    }));
    if (this.#server) {
      this.#srvClosing = true;
      await this.#server.stop(15_000);
    }
    this.report.machine.loadAvgEnd = await readLoadAvg();
    this.report.wallMs = performance.now() - this.#wall0;
  }
}

/** The counts of one or several drivers that ran at the same time (rates add up). */
function pushCounts(rs: DriverResult[]): PushCounts {
  const http = new LatencyHistogram();
  for (const r of rs) http.merge(r.httpHistogram);
  const sum = (k: "sent" | "ok" | "failed" | "missed" | "achievedRate") =>
    rs.reduce((x, r) => x + r[k], 0);
  return {
    sent: sum("sent"),
    ok: sum("ok"),
    failed: sum("failed"),
    missed: sum("missed"),
    achievedRate: sum("achievedRate"),
    http: http.summary(),
    errors: [...new Set(rs.flatMap((r) => r.errors))].slice(0, 5),
  };
}

/** Sets delivered, ratio, delivered/s and latency of a phase or driver entry. */
function fillDelivery(
  r: Pick<
    PhaseReport,
    "expected" | "delivered" | "deliveredRatio" | "deliveredPerSec" | "latencyMs"
  >,
  delivered: number,
  lastRecv: number,
  start: number,
  hist: LatencyHistogram,
): void {
  r.delivered = delivered;
  r.deliveredRatio = r.expected > 0 ? delivered / r.expected : null;
  r.deliveredPerSec = delivered > 0 && lastRecv > start
    ? delivered / ((lastRecv - start) / 1000)
    : 0;
  r.latencyMs = hist.summary();
}

function validate(o: BenchOptions): void {
  const bad = (m: string) => {
    throw new RangeError(m);
  };
  if (!Number.isInteger(o.clients) || o.clients < 1) bad(`--clients must be ≥ 1`);
  if (!Number.isInteger(o.workers) || o.workers < 1) bad(`--workers must be ≥ 1`);
  if (o.workers > o.clients) bad(`--workers (${o.workers}) exceeds --clients (${o.clients})`);
  // Each client is one open file in its worker; the box allows 20,000 per process.
  if (Math.ceil(o.clients / o.workers) > 19_000) {
    bad(
      `${Math.ceil(o.clients / o.workers)} clients per worker: keep it under 19,000 ` +
        `(20,000 open files per process); raise --workers`,
    );
  }
  if (!(o.wsRatio >= 0 && o.wsRatio <= 1)) bad(`--ws-ratio must be in 0..1`);
  const sr = o.streamsRatio ?? 0;
  if (!(sr >= 0 && sr <= 1)) bad(`--streams must be in 0..1`);
  if (!Number.isInteger(o.rooms) || o.rooms < 1) bad(`--rooms must be ≥ 1`);
  if (o.rooms > o.clients) bad(`--rooms (${o.rooms}) exceeds --clients (${o.clients})`);
  for (const p of o.phases) {
    if (p.kind === "mix") {
      if (!p.drivers?.length) bad(`phase ${p.name}: a mix needs drivers`);
      for (const d of p.drivers!) {
        if (!(d.rate > 0)) bad(`phase ${p.name}: the ${d.kind} rate must be > 0`);
      }
    } else if (p.kind !== "none" && !(p.rate > 0)) bad(`phase ${p.name}: --rate must be > 0`);
    if (!(p.durationMs > 0)) bad(`phase ${p.name}: --duration must be > 0`);
  }
  if (!(o.keysPerPush >= 1)) bad(`--keys-per-push must be ≥ 1`);
  if (!(o.inflight >= 1)) bad(`--inflight must be ≥ 1`);
}

async function machineInfo(load: [number, number, number] | null) {
  return {
    cpus: navigator.hardwareConcurrency,
    memTotalBytes: await readMemTotalBytes(),
    kernel: await readKernelRelease(),
    deno: Deno.version.deno,
    loadAvgStart: load,
    loadAvgEnd: null as number[] | null,
  };
}

/** Counts clients per transport for a layout (for documentation and tests). */
export function transportCounts(clients: number, wsRatio: number): { tcp: number; ws: number } {
  let ws = 0;
  for (let i = 0; i < clients; i++) if (transportOf(i, wsRatio) === "ws") ws++;
  return { tcp: clients - ws, ws };
}

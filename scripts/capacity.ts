/**
 * The capacity calculator (docs/SCALING.md, "Capacity plan"): from a table of
 * measured unit costs (scripts/capacity_costs.json, each figure with the
 * BENCHMARKS.md section and command it came from), how many comets, logics,
 * jobs, Kafka partitions and Redis shards a load needs, printed as explicit
 * arithmetic a reader can check line by line, then the headroom of every
 * resource and which one binds first as load grows. No network, no
 * measurement: rerun it with new figures.
 *
 * ```sh
 * ./scripts/deno run --allow-read scripts/capacity.ts [--connections N] [--msgs-per-s M]
 *     [--room-fanout F] [--key-share S] [--cores-per-host C] [--mem-per-host GiB]
 *     [--costs costs.json] [--set NAME=VALUE ...] [--json] [--help]
 * ```
 *
 * The model, in short (every step is printed with its numbers):
 *
 * - A delivered message is one message arriving at one connection. A share
 *   `S` are key (or mid) pushes, one push per delivery; the rest are room
 *   pushes of `F` members each. Every connection sits in one room, so each
 *   connection receives `M × (1 − S) / N` room messages per second, and a
 *   job batch holds that rate × `job.room.window` messages (1 to
 *   `job.room.batch`).
 * - Every role process is one core (JavaScript runs on one thread); a host
 *   of `C` cores runs `C` processes, each with `1/C` of its memory. Each
 *   pool is sized so that no resource of it runs above `--utilisation` of
 *   its capacity; the room pass (members of the largest room on one comet ×
 *   the cost of a write) is a latency bound instead, at most `--max-pass-s`.
 * - Costs that depend on the fleet (a room push is one BroadcastRoom per
 *   comet holding members; each job asks every comet for Rooms()) are
 *   solved by iterating the counts to a fixed point.
 * - Headroom = capacity / demand at the planned fleet: the load multiple at
 *   which the resource saturates, for connections and messages growing
 *   together, for connections alone and for messages alone (demand is
 *   taken as linear in load; fixed costs stay fixed).
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Every figure the calculator reads; a costs file must define exactly these. */
export const FIGURE_NAMES = [
  "comet.fd_reserve",
  "comet.base_rss_bytes",
  "comet.mem_per_conn_bytes",
  "comet.mem_per_conn_peak_bytes",
  "comet.write_cpu_us",
  "comet.frame_cpu_ns",
  "comet.heartbeat_cpu_us",
  "comet.accept_cpu_us",
  "comet.stream_push_cpu_us",
  "grpc.unary_call_cpu_us",
  "logic.push_cpu_us",
  "logic.jwt_verify_cpu_us",
  "logic.session_op_cpu_us",
  "job.kafka_push_cpu_us",
  "job.kafka_room_cpu_us",
  "job.stream_push_cpu_us",
  "kafka.partition_mb_s",
  "kafka.record_overhead_bytes",
  "kafka.partitions_per_job",
  "redis.cmds_per_core_s",
  "redis.bytes_per_route",
  "redis.cmds_key_push",
  "redis.cmds_mid_push",
  "redis.cmds_connect",
  "redis.cmds_heartbeat",
  "redis.cmds_disconnect",
  "redis.cmds_online_write",
  "client.heartbeat_s",
  "comet.route_heartbeat_s",
  "comet.route_jitter_min",
  "comet.renew_online_s",
  "job.room_window_ms",
  "job.room_batch",
  "job.rooms_poll_s",
  "job.rooms_min_gap_ms",
] as const;

/** The name of one unit cost. */
export type FigureName = typeof FIGURE_NAMES[number];

/** Where a figure was measured (or what it was derived from) and how to measure it again. */
export interface FigureSource {
  /** A file of this repository: BENCHMARKS.md, a doc, or the code the figure is read from. */
  doc: string;
  /** A heading of `doc` (Markdown), or a text that occurs in it (code). */
  section: string;
  /** The command that measured it, or would. */
  command: string;
}

/** One unit cost with its provenance. */
export interface Figure {
  /** The number the calculator uses (finite, ≥ 0). */
  value: number;
  /** Its unit, for the reader. */
  unit: string;
  /** Where it comes from. */
  source: FigureSource;
  /** True when it was not measured as such (then `derivation` says how it was derived). */
  estimate: boolean;
  /** How the value follows from what was measured. */
  derivation?: string;
  /** Anything else the reader should know. */
  note?: string;
}

/** A full, validated costs table. */
export type Costs = Record<FigureName, Figure>;

/** A costs file or an override that does not follow the schema; the message names the field. */
export class CostsError extends Error {
  override name = "CostsError";
}

const FIGURE_KEYS = new Set(["value", "unit", "source", "estimate", "derivation", "note"]);
const SOURCE_KEYS = ["doc", "section", "command"] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  return v === undefined ? "nothing" : JSON.stringify(v);
}

function nonEmpty(v: unknown, where: string): string {
  if (typeof v !== "string" || v.trim() === "") {
    throw new CostsError(`${where}: expected a non-empty string, got ${describe(v)}`);
  }
  return v;
}

function parseFigure(raw: unknown, where: string): Figure {
  if (!isObject(raw)) throw new CostsError(`${where}: expected an object, got ${describe(raw)}`);
  for (const k of Object.keys(raw)) {
    if (!FIGURE_KEYS.has(k)) {
      throw new CostsError(
        `${where}.${k}: unknown field (allowed: ${[...FIGURE_KEYS].join(", ")})`,
      );
    }
  }
  const value = raw.value;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new CostsError(`${where}.value: expected a finite number ≥ 0, got ${describe(value)}`);
  }
  const unit = nonEmpty(raw.unit, `${where}.unit`);
  const src = raw.source;
  if (!isObject(src)) {
    throw new CostsError(
      `${where}.source: expected {doc, section, command} naming where the figure came from, got ${
        describe(src)
      }`,
    );
  }
  const [doc, section, command] = SOURCE_KEYS.map((k) => nonEmpty(src[k], `${where}.source.${k}`));
  if (raw.estimate !== undefined && typeof raw.estimate !== "boolean") {
    throw new CostsError(
      `${where}.estimate: expected true or false, got ${describe(raw.estimate)}`,
    );
  }
  const estimate = raw.estimate === true;
  const fig: Figure = { value, unit, source: { doc, section, command }, estimate };
  if (raw.derivation !== undefined) {
    fig.derivation = nonEmpty(raw.derivation, `${where}.derivation`);
  }
  if (estimate && fig.derivation === undefined) {
    throw new CostsError(`${where}.derivation: an estimate must say how it was derived`);
  }
  if (raw.note !== undefined) fig.note = nonEmpty(raw.note, `${where}.note`);
  return fig;
}

/**
 * Validates a parsed costs file: `{ "figures": { NAME: Figure, ... } }` with
 * exactly the names of {@linkcode FIGURE_NAMES}. Throws a
 * {@linkcode CostsError} naming the first wrong field.
 *
 * @example
 * ```ts
 * import { parseCosts } from "./capacity.ts";
 * const costs = parseCosts(JSON.parse(await Deno.readTextFile("scripts/capacity_costs.json")));
 * console.log(costs["comet.write_cpu_us"].value); // 12.18
 * ```
 */
export function parseCosts(json: unknown, origin = "costs"): Costs {
  if (!isObject(json) || !isObject(json.figures)) {
    throw new CostsError(`${origin}: expected an object with a "figures" object`);
  }
  const figures = json.figures;
  const known = new Set<string>(FIGURE_NAMES);
  for (const name of Object.keys(figures)) {
    if (!known.has(name)) throw new CostsError(`${origin}: figures.${name}: unknown figure`);
  }
  const out = {} as Costs;
  for (const name of FIGURE_NAMES) {
    if (!(name in figures)) throw new CostsError(`${origin}: figures.${name}: missing`);
    out[name] = parseFigure(figures[name], `${origin}: figures.${name}`);
  }
  return out;
}

/** Reads and validates a costs file; errors name the file. */
export async function loadCosts(path: string): Promise<Costs> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new CostsError(`${path}: cannot read: ${e instanceof Error ? e.message : e}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CostsError(`${path}: not JSON: ${e instanceof Error ? e.message : e}`);
  }
  return parseCosts(json, path);
}

/**
 * A copy of `costs` with some values replaced (`--set NAME=VALUE`); the
 * figure keeps its source and is marked `(set)` in the printout.
 */
export function withOverrides(costs: Costs, sets: Record<string, number>): Costs {
  const out = { ...costs };
  for (const [name, value] of Object.entries(sets)) {
    if (!(name in costs)) throw new CostsError(`--set ${name}: unknown figure`);
    if (!Number.isFinite(value) || value < 0) {
      throw new CostsError(`--set ${name}: expected a finite number ≥ 0, got ${value}`);
    }
    const f = costs[name as FigureName];
    out[name as FigureName] = { ...f, value, note: `set on the command line (file: ${f.value})` };
  }
  return out;
}

/** The traffic to plan for. */
export interface Load {
  /** Concurrent client connections. */
  connections: number;
  /** Messages delivered to connections per second (one message × one connection). */
  msgsPerS: number;
  /** Members of a pushed room (the recipients of one room push), cluster-wide. */
  roomFanout: number;
  /** Share of the delivered messages that come from key or mid pushes (0..1). */
  keyShare: number;
  /** Share of those that are pushes by mid (one more Redis command each; 0..1). */
  midShare: number;
  /** How often a connection is made anew, per connection per hour (churn). */
  reconnectsPerHour: number;
  /** Bytes of a pushed message body. */
  msgBytes: number;
}

/** The machines and the margins. */
export interface Site {
  /** Cores per host: one role process per core. */
  coresPerHost: number;
  /** Memory per host, GiB, shared equally by its processes. */
  memPerHostGiB: number;
  /** Open files a process may hold (`ulimit -n`, systemd LimitNOFILE). */
  fdsPerProcess: number;
  /** Highest share of any capacity a pool is planned to use (0..1]. */
  utilisation: number;
  /** Longest fan-out pass over the largest room's members on one comet, seconds. */
  maxPassS: number;
}

/** The defaults of the command line: 1M connections, 1M msgs/s, half key pushes. */
export const DEFAULT_LOAD: Load = {
  connections: 1_000_000,
  msgsPerS: 1_000_000,
  roomFanout: 10_000,
  keyShare: 0.5,
  midShare: 0.5,
  reconnectsPerHour: 1,
  msgBytes: 100,
};

/**
 * The defaults of the command line. Descriptors: 1,048,576 is Linux's
 * default `fs.nr_open`, the most `LimitNOFILE` may grant without raising it;
 * the development box allows 20,000 (`ulimit -Hn`).
 */
export const DEFAULT_SITE: Site = {
  coresPerHost: 16,
  memPerHostGiB: 64,
  fdsPerProcess: 1_048_576,
  utilisation: 0.5,
  maxPassS: 1,
};

/** One printed line of arithmetic. */
export interface Step {
  /** The heading it is printed under. */
  section: string;
  /** What is computed. */
  label: string;
  /** The arithmetic, with the numbers used (`*` marks an estimated figure). */
  formula: string;
  /** The result. */
  value: number;
  /** Its unit. */
  unit: string;
}

/** A capacity of the planned fleet and the load on it. */
export interface Resource {
  /** What saturates. */
  name: string;
  /** Unit of demand and capacity. */
  unit: string;
  /** Demand that grows with connections. */
  demandConn: number;
  /** Demand that grows with delivered messages. */
  demandMsg: number;
  /** Demand that stays as it is (per process of the fleet). */
  demandFixed: number;
  /** Capacity of the planned fleet at 100 %. */
  capacity: number;
  /** demand / capacity. */
  utilisation: number;
  /** Load multiple at which it saturates, connections and messages together. */
  headroom: number;
  /** The same, connections alone. */
  headroomConn: number;
  /** The same, messages alone. */
  headroomMsg: number;
}

/** The counts of the plan. */
export interface Fleet {
  /** Comet processes. */
  comets: number;
  /** Logic processes. */
  logics: number;
  /** Job processes. */
  jobs: number;
  /** Partitions of the push topic. */
  partitions: number;
  /** Redis shards (masters), one core each. */
  redisShards: number;
  /** Hosts of `coresPerHost` cores for all of the above (Kafka brokers not included). */
  hosts: number;
}

/** The result of {@linkcode plan}. */
export interface Plan {
  /** The traffic planned for. */
  load: Load;
  /** The machines and margins. */
  site: Site;
  /** Every computation, in order. */
  steps: Step[];
  /** How many of each. */
  fleet: Fleet;
  /** What sized each pool. */
  boundBy: Record<"comets" | "logics" | "jobs" | "partitions" | "redisShards", string>;
  /** Every resource of the fleet with its headroom. */
  resources: Resource[];
  /** The resource with the least headroom as everything grows. */
  binding: string;
  /** The same as connections alone grow. */
  bindingConn: string;
  /** The same as messages alone grow. */
  bindingMsg: string;
  /** Set when no fleet meets the load (the iteration did not settle): why. */
  impossible?: string;
}

/**
 * Mean seconds between two Heartbeat RPCs of one connection: the comet waits
 * a delay uniform in [`jitterMin` × `routeS`, `routeS`] (comet/hub.ts,
 * `#routeDelay`), then sends with the next client heartbeat, which comes
 * every `heartbeatS`; so the period is `heartbeatS × ceil(delay /
 * heartbeatS)`, averaged over the delay.
 *
 * @example
 * ```ts
 * import { heartbeatRpcPeriod } from "./capacity.ts";
 * heartbeatRpcPeriod(240, 600, 0.75); // 672: 480 s for 20 % of delays, 720 s for 80 %
 * ```
 */
export function heartbeatRpcPeriod(heartbeatS: number, routeS: number, jitterMin: number): number {
  const lo = jitterMin * routeS, hi = routeS;
  if (hi <= lo) return heartbeatS * Math.max(1, Math.ceil(hi / heartbeatS));
  let sum = 0;
  // ceil(d/h) is constant on each (k−1)h..kh slice of the delay's range.
  for (let k = Math.max(1, Math.ceil(lo / heartbeatS)); (k - 1) * heartbeatS < hi; k++) {
    const a = Math.max(lo, (k - 1) * heartbeatS), b = Math.min(hi, k * heartbeatS);
    if (b > a) sum += (b - a) * k * heartbeatS;
  }
  return sum / (hi - lo);
}

/**
 * Expected number of comets holding at least one member of a room of
 * `members` connections spread at random over `comets`: the comets job sends
 * a room batch to (job/membership.ts).
 */
export function spannedComets(comets: number, members: number): number {
  if (comets <= 1) return Math.min(comets, members > 0 ? 1 : 0);
  return comets * (1 - Math.pow(1 - 1 / comets, members));
}

/** One itemised CPU cost: label, arithmetic, cores, and what makes it grow. */
type Term = [label: string, formula: string, cores: number, kind: "conn" | "msg" | "fixed"];

// Sums a pool's terms by what they grow with.
function sumTerms(terms: Term[]): { conn: number; msg: number; fixed: number; total: number } {
  const s = { conn: 0, msg: 0, fixed: 0, total: 0 };
  for (const [, , cores, kind] of terms) {
    s[kind] += cores;
    s.total += cores;
  }
  return s;
}

const GiB = 1024 ** 3;
const MAX_ITERATIONS = 200;

/** Formats a number for the printout: thousands separators, 3 significant digits below 100. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return x > 0 ? "∞" : "-∞";
  const a = Math.abs(x);
  if (a >= 100) return Math.round(x).toLocaleString("en-US");
  if (a === 0) return "0";
  return String(Number(x.toPrecision(3)));
}

function headrooms(
  r: Omit<Resource, "utilisation" | "headroom" | "headroomConn" | "headroomMsg">,
): Resource {
  const { demandConn: dc, demandMsg: dm, demandFixed: d0, capacity: c } = r;
  const d = dc + dm + d0;
  const grow = (part: number, rest: number) =>
    part > 0 ? Math.max(0, (c - rest - d0) / part) : c >= d ? Infinity : 0;
  return {
    ...r,
    utilisation: c > 0 ? d / c : Infinity,
    headroom: grow(dc + dm, 0),
    headroomConn: grow(dc, dm),
    headroomMsg: grow(dm, dc),
  };
}

function leastBy(resources: Resource[], key: "headroom" | "headroomConn" | "headroomMsg"): string {
  let best: Resource | undefined;
  for (const r of resources) if (best === undefined || r[key] < best[key]) best = r;
  return best === undefined ? "none" : `${best.name} (×${fmt(best[key])})`;
}

/**
 * Computes the plan: traffic, then each pool from its bounds, iterated to a
 * fixed point where costs depend on the fleet, then every resource's
 * headroom. Pure arithmetic; the steps record every number.
 */
export function plan(costs: Costs, load: Load, site: Site): Plan {
  const steps: Step[] = [];
  let section = "";
  const v = (n: FigureName) => costs[n].value;
  // A figure as printed: its value, `*` when estimated.
  const f = (n: FigureName) => `${fmt(v(n))}${costs[n].estimate ? "*" : ""}`;
  const step = (label: string, formula: string, value: number, unit: string) => {
    steps.push({ section, label, formula, value, unit });
    return value;
  };
  const U = site.utilisation;
  const N = load.connections, M = load.msgsPerS, S = load.keyShare, F = load.roomFanout;

  section = "1. Traffic";
  const Mk = step("key/mid deliveries", `${fmt(M)} × ${fmt(S)}`, M * S, "msgs/s");
  const Mr = step("room deliveries", `${fmt(M)} × (1 − ${fmt(S)})`, M * (1 - S), "msgs/s");
  const Pr = step("room pushes", `${fmt(Mr)} / ${fmt(F)} members`, F > 0 ? Mr / F : 0, "/s");
  const rho = step("room msgs per connection", `${fmt(Mr)} / ${fmt(N)}`, Mr / N, "/s");
  const b = step(
    "messages per room batch",
    `clamp(${fmt(rho)} × ${f("job.room_window_ms")} ms, 1, ${f("job.room_batch")})`,
    Math.min(v("job.room_batch"), Math.max(1, rho * v("job.room_window_ms") / 1000)),
    "msgs",
  );
  const Br = step("room batches", `${fmt(Pr)} / ${fmt(b)}`, Pr / b, "/s");
  const writes = step(
    "socket writes",
    `${fmt(Mk)} key + ${fmt(Mr)} room / ${fmt(b)}`,
    Mk + Mr / b,
    "writes/s",
  );
  const Hc = step(
    "client heartbeats",
    `${fmt(N)} / ${f("client.heartbeat_s")} s`,
    N / v("client.heartbeat_s"),
    "/s",
  );
  const period = step(
    "heartbeat RPC period",
    `${f("client.heartbeat_s")} × ceil(U(${f("comet.route_jitter_min")}, 1) × ${
      f("comet.route_heartbeat_s")
    } / ${f("client.heartbeat_s")}), mean`,
    heartbeatRpcPeriod(
      v("client.heartbeat_s"),
      v("comet.route_heartbeat_s"),
      v("comet.route_jitter_min"),
    ),
    "s",
  );
  const Hr = step(
    "heartbeat RPCs (route refresh)",
    `${fmt(N)} / ${fmt(period)} s`,
    N / period,
    "/s",
  );
  const Cn = step(
    "connects (= disconnects)",
    `${fmt(N)} × ${fmt(load.reconnectsPerHour)} / 3600`,
    N * load.reconnectsPerHour / 3600,
    "/s",
  );
  const records = step("Kafka records", `${fmt(Mk)} key + ${fmt(Pr)} room`, Mk + Pr, "/s");
  const mbps = step(
    "Kafka bytes in",
    `${fmt(records)} × (${fmt(load.msgBytes)} + ${f("kafka.record_overhead_bytes")}) B`,
    records * (load.msgBytes + v("kafka.record_overhead_bytes")) / 1e6,
    "MB/s",
  );

  section = "2. Comets: bounds that do not depend on CPU";
  const perComet = step(
    "connections by descriptors",
    `${fmt(U)} × (${fmt(site.fdsPerProcess)} − ${f("comet.fd_reserve")})`,
    U * (site.fdsPerProcess - v("comet.fd_reserve")),
    "per comet",
  );
  const memPerProc = step(
    "memory per process",
    `${fmt(site.memPerHostGiB)} GiB / ${fmt(site.coresPerHost)} cores`,
    site.memPerHostGiB * GiB / site.coresPerHost,
    "B",
  );
  const perCometMem = step(
    "connections by memory",
    `${fmt(U)} × (${fmt(memPerProc)} − ${f("comet.base_rss_bytes")}) / ${
      f("comet.mem_per_conn_peak_bytes")
    } B`,
    Math.max(0, U * (memPerProc - v("comet.base_rss_bytes")) / v("comet.mem_per_conn_peak_bytes")),
    "per comet",
  );
  const kByFds = step(
    "comets by descriptors",
    `ceil(${fmt(N)} / ${fmt(perComet)})`,
    Math.ceil(N / perComet),
    "comets",
  );
  const kByMem = step(
    "comets by memory",
    `ceil(${fmt(N)} / ${fmt(perCometMem)})`,
    Math.ceil(N / perCometMem),
    "comets",
  );
  const writesPerCore = 1e6 / v("comet.write_cpu_us");
  const passMembers = step(
    "room members per comet for the pass bound",
    `1e6 / ${f("comet.write_cpu_us")} µs × ${fmt(site.maxPassS)} s`,
    writesPerCore * site.maxPassS,
    "members",
  );
  const kByPass = Mr > 0
    ? step(
      "comets by room pass",
      `ceil(${fmt(F)} / ${fmt(passMembers)})`,
      Math.ceil(F / passMembers),
      "comets",
    )
    : 0;

  // Fleet-dependent CPU: each pool's itemised terms as a function of the
  // counts. The iteration sums them; the printout shows the same terms.
  const unary = v("grpc.unary_call_cpu_us") / 1e6;
  const us = (n: FigureName) => v(n) / 1e6;
  const roomsRate = (J: number) =>
    Math.min(1000 / v("job.rooms_min_gap_ms"), 1 / v("job.rooms_poll_s") + Br / J);
  const roomCalls = (K: number) => Br * spannedComets(K, F);
  const roomsCalls = (K: number, J: number) => J * K * roomsRate(J);
  // The periodic part of those: what an idle fleet calls anyway.
  const roomsPolls = (K: number, J: number) =>
    J * K * Math.min(roomsRate(J), 1 / v("job.rooms_poll_s"));
  // count × one figure's CPU cost (a µs or ns figure), as a term.
  const per = (label: string, count: number, name: FigureName, kind: Term[3]): Term => {
    const ns = costs[name].unit.startsWith("ns");
    return [
      label,
      `${fmt(count)} × ${f(name)} ${ns ? "ns" : "µs"}`,
      count * v(name) / (ns ? 1e9 : 1e6),
      kind,
    ];
  };
  // job → comet unary calls, each costing both ends the same.
  const jobCometCalls = (K: number, J: number, side: "client" | "server"): Term[] => {
    const each = `× ${f("grpc.unary_call_cpu_us")} µs`;
    const polls = roomsPolls(K, J), onDemand = roomsCalls(K, J) - polls;
    return [
      [
        `BroadcastRoom calls (${side} side)`,
        `${fmt(roomCalls(K))} ${each}`,
        roomCalls(K) * unary,
        "msg",
      ],
      [`Rooms() polls (${side} side)`, `${fmt(polls)} ${each}`, polls * unary, "fixed"],
      [
        `Rooms() calls for batches (${side} side)`,
        `${fmt(onDemand)} ${each}`,
        onDemand * unary,
        "msg",
      ],
    ];
  };
  const cometTerms = (K: number, J: number): Term[] => [
    per("client heartbeats", Hc, "comet.heartbeat_cpu_us", "conn"),
    per("heartbeat RPCs (client side)", Hr, "grpc.unary_call_cpu_us", "conn"),
    [
      "connects + their Connect and Disconnect RPCs",
      `${fmt(Cn)} × (${f("comet.accept_cpu_us")} + 2 × ${f("grpc.unary_call_cpu_us")}) µs`,
      Cn * (us("comet.accept_cpu_us") + 2 * unary),
      "conn",
    ],
    per("writes", writes, "comet.write_cpu_us", "msg"),
    per("frames", M, "comet.frame_cpu_ns", "msg"),
    per("key pushes received on the stream", Mk, "comet.stream_push_cpu_us", "msg"),
    ...jobCometCalls(K, J, "server"),
    [
      "RenewOnline RPCs (client side)",
      `${fmt(K)} / ${f("comet.renew_online_s")} s × ${f("grpc.unary_call_cpu_us")} µs`,
      K / v("comet.renew_online_s") * unary,
      "fixed",
    ],
  ];
  const rpc = `${f("grpc.unary_call_cpu_us")} + ${f("logic.session_op_cpu_us")}`;
  const rpcCpu = unary + us("logic.session_op_cpu_us");
  const logicTerms = (K: number): Term[] => [
    per("push requests", Mk + Pr, "logic.push_cpu_us", "msg"),
    [
      "Connect RPCs",
      `${fmt(Cn)} × (${rpc} + ${f("logic.jwt_verify_cpu_us")}) µs`,
      Cn * (rpcCpu + us("logic.jwt_verify_cpu_us")),
      "conn",
    ],
    ["Disconnect RPCs", `${fmt(Cn)} × (${rpc}) µs`, Cn * rpcCpu, "conn"],
    ["Heartbeat RPCs", `${fmt(Hr)} × (${rpc}) µs`, Hr * rpcCpu, "conn"],
    [
      "RenewOnline RPCs",
      `${fmt(K)} / ${f("comet.renew_online_s")} s × (${rpc}) µs`,
      K / v("comet.renew_online_s") * rpcCpu,
      "fixed",
    ],
  ];
  const jobTerms = (K: number, J: number): Term[] => [
    [
      "key pushes: consume + stream send",
      `${fmt(Mk)} × (${f("job.kafka_push_cpu_us")} + ${f("job.stream_push_cpu_us")}) µs`,
      Mk * (us("job.kafka_push_cpu_us") + us("job.stream_push_cpu_us")),
      "msg",
    ],
    per("room pushes: consume + batch", Pr, "job.kafka_room_cpu_us", "msg"),
    ...jobCometCalls(K, J, "client"),
  ];

  const kStatic = Math.max(1, kByFds, kByMem, kByPass);
  let K = kStatic, J = 1, L = 1, settled = false;
  for (let i = 0; i < MAX_ITERATIONS; i++) {
    const K2 = Math.max(kStatic, Math.ceil(sumTerms(cometTerms(K, J)).total / U));
    const J2 = Math.max(1, Math.ceil(sumTerms(jobTerms(K, J)).total / U));
    const L2 = Math.max(1, Math.ceil(sumTerms(logicTerms(K)).total / U));
    if (K2 === K && J2 === J && L2 === L) {
      settled = true;
      break;
    }
    // Calls each comet serves whatever the comet count (a room spans them
    // all; Rooms() grows with jobs): once they fill a comet's share, no
    // count settles.
    if ((roomCalls(K2) + roomsCalls(K2, J2)) * unary / K2 >= U) {
      [K, J, L] = [K2, J2, L2];
      break;
    }
    [K, J, L] = [K2, J2, L2];
  }
  let impossible: string | undefined;
  if (!settled) {
    const perComet = (roomCalls(K) + roomsCalls(K, J)) * unary / K;
    impossible = `the counts do not settle (stopped at ${fmt(K)} comets, ${fmt(J)} jobs): ` +
      `BroadcastRoom and Rooms() calls cost each comet ${fmt(perComet)} core, ` +
      `which more comets do not reduce (a room spans them all) while more jobs add Rooms() calls; ` +
      `the pool limit is ${fmt(U)} core`;
  }
  // Prints a pool's terms and returns their sums.
  const printTerms = (terms: Term[], what: string) => {
    for (const [label, formula, value] of terms) step(label, formula, value, "cores");
    const sums = sumTerms(terms);
    step(what, "sum of the above", sums.total, "cores");
    return sums;
  };

  section = "3. Comets: CPU (one core each)";
  const spanned = step(
    "comets a room spans",
    `${fmt(K)} × (1 − (1 − 1/${fmt(K)})^${fmt(F)})`,
    spannedComets(K, F),
    "comets",
  );
  step("BroadcastRoom calls", `${fmt(Br)} batches × ${fmt(spanned)} comets`, roomCalls(K), "/s");
  const rr = step(
    "Rooms() calls per job per comet",
    `min(1000 / ${f("job.rooms_min_gap_ms")} ms, 1 / ${f("job.rooms_poll_s")} s + ${fmt(Br)} / ${
      fmt(J)
    } jobs)`,
    roomsRate(J),
    "/s",
  );
  step("Rooms() calls", `${fmt(J)} jobs × ${fmt(K)} comets × ${fmt(rr)}`, roomsCalls(K, J), "/s");
  const cc = printTerms(cometTerms(K, J), "comet CPU");
  const kByCpu = step(
    "comets by CPU",
    `ceil(${fmt(cc.total)} / ${fmt(U)})`,
    Math.ceil(cc.total / U),
    "comets",
  );
  const comets = step(
    "comets",
    `max(descriptors ${fmt(kByFds)}, memory ${fmt(kByMem)}, room pass ${fmt(kByPass)}, CPU ${
      fmt(kByCpu)
    })`,
    K,
    "comets",
  );

  section = "4. Logics (one core each)";
  step("push requests", `${fmt(Mk)} key + ${fmt(Pr)} room`, Mk + Pr, "/s");
  const lc = printTerms(logicTerms(K), "logic CPU");
  const logics = step("logics", `max(1, ceil(${fmt(lc.total)} / ${fmt(U)}))`, L, "logics");

  section = "5. Jobs (one core each)";
  const jc = printTerms(jobTerms(K, J), "job CPU");
  const jobs = step("jobs", `max(1, ceil(${fmt(jc.total)} / ${fmt(U)}))`, J, "jobs");
  step("messages per job", `${fmt(records)} / ${fmt(J)}`, records / J, "msgs/s");

  section = "6. Kafka partitions";
  const pByJobs = step(
    "partitions by jobs",
    `${fmt(J)} × max(1, ${f("kafka.partitions_per_job")})`,
    Math.ceil(J * Math.max(1, v("kafka.partitions_per_job"))),
    "partitions",
  );
  const pByBytes = step(
    "partitions by throughput",
    `ceil(${fmt(mbps)} MB/s / (${fmt(U)} × ${f("kafka.partition_mb_s")} MB/s))`,
    Math.ceil(mbps / (U * v("kafka.partition_mb_s"))),
    "partitions",
  );
  const partitions = step(
    "partitions",
    `max(${fmt(pByJobs)}, ${fmt(pByBytes)})`,
    Math.max(1, pByJobs, pByBytes),
    "partitions",
  );
  step("records per partition", `${fmt(records)} / ${fmt(partitions)}`, records / partitions, "/s");

  section = "7. Redis shards (one core each)";
  const cmdsPush = Mk *
    ((1 - load.midShare) * v("redis.cmds_key_push") + load.midShare * v("redis.cmds_mid_push"));
  step(
    "push lookups",
    `${fmt(Mk)} × (${fmt(1 - load.midShare)} × ${f("redis.cmds_key_push")} + ${
      fmt(load.midShare)
    } × ${f("redis.cmds_mid_push")})`,
    cmdsPush,
    "cmds/s",
  );
  const cmdsHb = step(
    "heartbeat EXPIREs",
    `${fmt(Hr)} × ${f("redis.cmds_heartbeat")}`,
    Hr * v("redis.cmds_heartbeat"),
    "cmds/s",
  );
  const cmdsConn = step(
    "connects + disconnects",
    `${fmt(Cn)} × (${f("redis.cmds_connect")} + ${f("redis.cmds_disconnect")})`,
    Cn * (v("redis.cmds_connect") + v("redis.cmds_disconnect")),
    "cmds/s",
  );
  const cmdsOnline = step(
    "room reports",
    `${fmt(K)} / ${f("comet.renew_online_s")} s × ${f("redis.cmds_online_write")}`,
    K / v("comet.renew_online_s") * v("redis.cmds_online_write"),
    "cmds/s",
  );
  const cmds = cmdsPush + cmdsHb + cmdsConn + cmdsOnline;
  step("Redis commands", "sum of the above", cmds, "cmds/s");
  const rByOps = step(
    "shards by commands",
    `ceil(${fmt(cmds)} / (${fmt(U)} × ${f("redis.cmds_per_core_s")}))`,
    Math.ceil(cmds / (U * v("redis.cmds_per_core_s"))),
    "shards",
  );
  const redisMem = step(
    "route memory",
    `${fmt(N)} × ${f("redis.bytes_per_route")} B`,
    N * v("redis.bytes_per_route"),
    "B",
  );
  const rByMem = step(
    "shards by memory",
    `ceil(${fmt(redisMem)} / (${fmt(U)} × ${fmt(memPerProc)}))`,
    Math.ceil(redisMem / (U * memPerProc)),
    "shards",
  );
  const redisShards = step(
    "shards",
    `max(1, ${fmt(rByOps)}, ${fmt(rByMem)})`,
    Math.max(1, rByOps, rByMem),
    "shards",
  );

  section = "8. Hosts";
  const procs = comets + logics + jobs + redisShards;
  const hosts = step(
    "hosts",
    `ceil((${fmt(comets)} + ${fmt(logics)} + ${fmt(jobs)} + ${fmt(redisShards)}) / ${
      fmt(site.coresPerHost)
    })`,
    Math.ceil(procs / site.coresPerHost),
    "hosts",
  );

  section = "9. Losing one comet";
  const orphans = step("its clients", `${fmt(N)} / ${fmt(comets)}`, N / comets, "connections");
  const connectCost = rpcCpu + us("logic.jwt_verify_cpu_us");
  const spare = step(
    "logic cores free",
    `${fmt(logics)} − ${fmt(lc.total)}`,
    Math.max(0, logics - lc.total),
    "cores",
  );
  step(
    "time for logic to re-authenticate them",
    `${fmt(orphans)} × ${fmt(connectCost * 1e6)} µs / ${fmt(spare)} cores`,
    spare > 0 ? orphans * connectCost / spare : Infinity,
    "s",
  );
  const survivorShare = step(
    "clients each survivor takes",
    `${fmt(orphans)} / ${fmt(comets - 1)}`,
    comets > 1 ? orphans / (comets - 1) : Infinity,
    "connections",
  );
  step(
    "time for a survivor to accept them",
    `${fmt(survivorShare)} × (${f("comet.accept_cpu_us")} + 2 × ${
      f("grpc.unary_call_cpu_us")
    }) µs / (1 − ${fmt(cc.total / comets)}) core`,
    survivorShare * (v("comet.accept_cpu_us") / 1e6 + 2 * unary) /
      Math.max(1e-9, 1 - cc.total / comets),
    "s",
  );
  const capMem = K * memPerProc;
  const resources: Resource[] = [
    headrooms({
      name: "comet descriptors",
      unit: "fds",
      demandConn: N,
      demandMsg: 0,
      demandFixed: K * v("comet.fd_reserve"),
      capacity: K * site.fdsPerProcess,
    }),
    headrooms({
      name: "comet memory",
      unit: "B",
      demandConn: N * v("comet.mem_per_conn_peak_bytes"),
      demandMsg: 0,
      demandFixed: K * v("comet.base_rss_bytes"),
      capacity: capMem,
    }),
    headrooms({
      name: "comet CPU",
      unit: "cores",
      demandConn: cc.conn,
      demandMsg: cc.msg,
      demandFixed: cc.fixed,
      capacity: K,
    }),
  ];
  if (Mr > 0) {
    resources.push(headrooms({
      name: "comet room pass",
      unit: "s",
      demandConn: F / spanned * v("comet.write_cpu_us") / 1e6,
      demandMsg: 0,
      demandFixed: 0,
      capacity: site.maxPassS,
    }));
  }
  resources.push(
    headrooms({
      name: "logic CPU",
      unit: "cores",
      demandConn: lc.conn,
      demandMsg: lc.msg,
      demandFixed: lc.fixed,
      capacity: L,
    }),
    headrooms({
      name: "job CPU",
      unit: "cores",
      demandConn: 0,
      demandMsg: jc.msg,
      demandFixed: jc.fixed,
      capacity: J,
    }),
    headrooms({
      name: "jobs ≤ partitions",
      unit: "cores",
      demandConn: 0,
      demandMsg: jc.msg,
      demandFixed: jc.fixed,
      capacity: partitions,
    }),
    headrooms({
      name: "Kafka partition MB/s",
      unit: "MB/s",
      demandConn: 0,
      demandMsg: mbps,
      demandFixed: 0,
      capacity: partitions * v("kafka.partition_mb_s"),
    }),
    headrooms({
      name: "Redis commands",
      unit: "cmds/s",
      demandConn: cmdsHb + cmdsConn,
      demandMsg: cmdsPush,
      demandFixed: cmdsOnline,
      capacity: redisShards * v("redis.cmds_per_core_s"),
    }),
    headrooms({
      name: "Redis memory",
      unit: "B",
      demandConn: redisMem,
      demandMsg: 0,
      demandFixed: 0,
      capacity: redisShards * memPerProc,
    }),
  );

  const bound = (counts: [string, number][]) => {
    const top = Math.max(...counts.map(([, n]) => n));
    return counts.filter(([, n]) => n === top).map(([what]) => what).join(", ");
  };
  const result: Plan = {
    load,
    site,
    steps,
    fleet: { comets, logics, jobs, partitions, redisShards, hosts },
    boundBy: {
      comets: bound([["descriptors", kByFds], ["memory", kByMem], ["room pass", kByPass], [
        "CPU",
        kByCpu,
      ]]),
      logics: logics === 1 && lc.total / U < 1 ? "one is enough" : "CPU",
      jobs: jobs === 1 && jc.total / U < 1 ? "one is enough" : "CPU",
      partitions: bound([["jobs", pByJobs], ["throughput", pByBytes]]),
      redisShards: bound([["commands", rByOps], ["memory", rByMem]]),
    },
    resources,
    binding: leastBy(resources, "headroom"),
    bindingConn: leastBy(resources, "headroomConn"),
    bindingMsg: leastBy(resources, "headroomMsg"),
  };
  if (impossible !== undefined) result.impossible = impossible;
  return result;
}

function table(rows: string[][], right: boolean[]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) =>
    "  " +
    r.map((cell, i) => right[i] ? cell.padStart(widths[i]) : cell.padEnd(widths[i])).join("  ")
      .trimEnd()
  );
}

// A number and its unit as printed; bytes in MiB or GiB.
function scaled(x: number, unit: string): [string, string] {
  if (unit === "B") return x >= GiB ? [fmt(x / GiB), "GiB"] : [fmt(x / 2 ** 20), "MiB"];
  return [fmt(x), unit];
}

function quantity(x: number, unit: string): string {
  return scaled(x, unit).join(" ");
}

/** The plan as printed: inputs, the arithmetic by section, the fleet, the headroom table. */
export function renderPlan(p: Plan, costs: Costs, costsPath: string): string {
  const { load: l, site: s } = p;
  const estimates = FIGURE_NAMES.filter((n) => costs[n].estimate);
  const out: string[] = [
    `Capacity plan: ${fmt(l.connections)} connections, ${fmt(l.msgsPerS)} delivered msgs/s`,
    `  traffic: key/mid share ${fmt(l.keyShare)} (by mid ${fmt(l.midShare)}), room fan-out ${
      fmt(l.roomFanout)
    }, ${fmt(l.reconnectsPerHour)} reconnects/connection/h, ${fmt(l.msgBytes)} B bodies`,
    `  site: ${fmt(s.coresPerHost)} cores and ${fmt(s.memPerHostGiB)} GiB per host, ${
      fmt(s.fdsPerProcess)
    } fds per process, pools planned at ${fmt(s.utilisation * 100)} %, room pass ≤ ${
      fmt(s.maxPassS)
    } s`,
    `  costs: ${costsPath}; * marks an estimate:`,
  ];
  // The estimates, a few per line.
  for (let i = 0; i < estimates.length; i += 3) {
    out.push(`    ${estimates.slice(i, i + 3).join(", ")}`);
  }
  let section = "";
  const lines: string[][] = [];
  const flush = () => {
    if (lines.length > 0) out.push(...table(lines, [false, false, false, true, false]));
    lines.length = 0;
  };
  for (const st of p.steps) {
    if (st.section !== section) {
      flush();
      section = st.section;
      out.push("", section);
    }
    const [num, unit] = scaled(st.value, st.unit);
    lines.push([st.label, st.formula, "=", num, unit]);
  }
  flush();
  const fl = p.fleet;
  out.push(
    "",
    "Fleet",
    ...table([
      ["comets", fmt(fl.comets), p.boundBy.comets],
      ["logics", fmt(fl.logics), p.boundBy.logics],
      ["jobs", fmt(fl.jobs), p.boundBy.jobs],
      ["Kafka partitions", fmt(fl.partitions), p.boundBy.partitions],
      ["Redis shards", fmt(fl.redisShards), p.boundBy.redisShards],
      ["hosts", fmt(fl.hosts), `${fmt(s.coresPerHost)} processes each, Kafka brokers not included`],
    ], [false, true, false]),
    "",
    "Headroom: load multiple at which each resource saturates (capacity / demand)",
    ...table([
      ["resource", "demand", "capacity", "used", "all ×", "conns ×", "msgs ×"],
      ...p.resources.map((r) => [
        r.name,
        quantity(r.demandConn + r.demandMsg + r.demandFixed, r.unit),
        quantity(r.capacity, r.unit),
        `${fmt(r.utilisation * 100)} %`,
        fmt(r.headroom),
        fmt(r.headroomConn),
        fmt(r.headroomMsg),
      ]),
    ], [false, true, true, true, true, true, true]),
    "",
    `Binds first as everything grows: ${p.binding}`,
    `  as connections alone grow: ${p.bindingConn}`,
    `  as messages alone grow: ${p.bindingMsg}`,
  );
  if (p.impossible !== undefined) out.push("", `NO FLEET MEETS THIS LOAD: ${p.impossible}`);
  return out.join("\n");
}

const USAGE = `usage: ./scripts/deno run --allow-read scripts/capacity.ts [options]

  --connections N          concurrent connections (${fmt(DEFAULT_LOAD.connections)})
  --msgs-per-s M           messages delivered to connections per second (${
  fmt(DEFAULT_LOAD.msgsPerS)
})
  --key-share S            share of deliveries from key/mid pushes, 0..1 (${DEFAULT_LOAD.keyShare})
  --room-fanout F          members of a pushed room (${fmt(DEFAULT_LOAD.roomFanout)})
  --mid-share X            share of key/mid pushes that are by mid, 0..1 (${DEFAULT_LOAD.midShare})
  --reconnects-per-hour R  new connections per connection per hour (${DEFAULT_LOAD.reconnectsPerHour})
  --msg-bytes B            bytes of a message body (${DEFAULT_LOAD.msgBytes})
  --cores-per-host C       cores per host, one role process each (${DEFAULT_SITE.coresPerHost})
  --mem-per-host GiB       memory per host (${DEFAULT_SITE.memPerHostGiB})
  --fds-per-process N      open files per process (${
  fmt(DEFAULT_SITE.fdsPerProcess)
}; this box: 20,000)
  --utilisation U          highest planned share of any capacity, 0..1 (${DEFAULT_SITE.utilisation})
  --max-pass-s T           longest fan-out pass over one room on one comet (${DEFAULT_SITE.maxPassS})
  --costs FILE             unit costs (scripts/capacity_costs.json)
  --set NAME=VALUE         override one figure of the costs file (repeatable)
  --json                   print the plan as JSON instead
  --help                   this text`;

type NumberFlag = { flag: string; min: number; max: number; integer?: boolean };

function numberArg(raw: string | undefined, fallback: number, spec: NumberFlag): number {
  if (raw === undefined) return fallback;
  const x = Number(raw.replaceAll("_", "").replaceAll(",", ""));
  if (
    raw.trim() === "" || !Number.isFinite(x) || x < spec.min || x > spec.max ||
    (spec.integer && !Number.isInteger(x))
  ) {
    throw new CostsError(
      `--${spec.flag}: expected ${
        spec.integer ? "an integer" : "a number"
      } in ${spec.min}..${spec.max}, got ${JSON.stringify(raw)}`,
    );
  }
  return x;
}

/**
 * Parses the command line into a load, a site, the costs path and the
 * overrides; throws a {@linkcode CostsError} with the flag's name on a bad
 * value. Returns null for `--help`.
 */
export function parseCommandLine(args: string[]): {
  load: Load;
  site: Site;
  costsPath: string;
  sets: Record<string, number>;
  json: boolean;
} | null {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      connections: { type: "string" },
      "msgs-per-s": { type: "string" },
      "key-share": { type: "string" },
      "room-fanout": { type: "string" },
      "mid-share": { type: "string" },
      "reconnects-per-hour": { type: "string" },
      "msg-bytes": { type: "string" },
      "cores-per-host": { type: "string" },
      "mem-per-host": { type: "string" },
      "fds-per-process": { type: "string" },
      utilisation: { type: "string" },
      "max-pass-s": { type: "string" },
      costs: { type: "string" },
      set: { type: "string", multiple: true },
      json: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return null;
  const d = DEFAULT_LOAD, ds = DEFAULT_SITE;
  const given = values as Record<string, unknown>;
  const num = (flag: string, fallback: number, min: number, max: number, integer = false) =>
    numberArg(given[flag] as string | undefined, fallback, { flag, min, max, integer });
  const load: Load = {
    connections: num("connections", d.connections, 1, 1e12),
    msgsPerS: num("msgs-per-s", d.msgsPerS, 0, 1e12),
    keyShare: num("key-share", d.keyShare, 0, 1),
    roomFanout: num("room-fanout", d.roomFanout, 1, 1e12),
    midShare: num("mid-share", d.midShare, 0, 1),
    reconnectsPerHour: num("reconnects-per-hour", d.reconnectsPerHour, 0, 3600),
    msgBytes: num("msg-bytes", d.msgBytes, 0, 1e9),
  };
  const site: Site = {
    coresPerHost: num("cores-per-host", ds.coresPerHost, 1, 4096, true),
    memPerHostGiB: num("mem-per-host", ds.memPerHostGiB, 0.001, 1e6),
    fdsPerProcess: num("fds-per-process", ds.fdsPerProcess, 1, 1e9, true),
    utilisation: num("utilisation", ds.utilisation, 0.01, 1),
    maxPassS: num("max-pass-s", ds.maxPassS, 0.001, 3600),
  };
  const sets: Record<string, number> = {};
  for (const s of values.set ?? []) {
    const eq = s.indexOf("=");
    if (eq <= 0) throw new CostsError(`--set: expected NAME=VALUE, got ${JSON.stringify(s)}`);
    sets[s.slice(0, eq)] = numberArg(s.slice(eq + 1), 0, {
      flag: `set ${s.slice(0, eq)}`,
      min: 0,
      max: 1e15,
    });
  }
  const costsPath = values.costs ?? new URL("./capacity_costs.json", import.meta.url).pathname;
  return { load, site, costsPath, sets, json: values.json === true };
}

async function main(): Promise<number> {
  let cli;
  try {
    cli = parseCommandLine(Deno.args);
  } catch (e) {
    console.error(`capacity: ${e instanceof Error ? e.message : e}\n\n${USAGE}`);
    return 2;
  }
  if (cli === null) {
    console.log(USAGE);
    return 0;
  }
  let costs: Costs;
  try {
    costs = withOverrides(await loadCosts(cli.costsPath), cli.sets);
  } catch (e) {
    console.error(`capacity: ${e instanceof Error ? e.message : e}`);
    return 2;
  }
  const p = plan(costs, cli.load, cli.site);
  const shown = Deno.cwd() + "/" === new URL("../", import.meta.url).pathname
    ? cli.costsPath.replace(Deno.cwd() + "/", "")
    : cli.costsPath;
  console.log(cli.json ? JSON.stringify(p, null, 2) : renderPlan(p, costs, shown));
  return p.impossible === undefined ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());

/**
 * What the driver (scripts/bench/main.ts) and its swarm workers
 * (scripts/bench/swarm.ts) share: the deterministic layout of the swarm
 * (which client is TCP or WebSocket, its room, key and mid), the pushed body
 * that carries the send timestamp, and the JSON-line messages between them.
 *
 * The layout is a pure function of the client index so the driver never has
 * to ship 20,000 keys to the workers or back: both compute the same answer.
 *
 * @module
 */

import type { HistogramWire, SparseCounts } from "./histogram.ts";

/** The business operation every bench push uses and every client accepts. */
export const BENCH_OP = 1000;

/** Client transports. */
export type BenchTransport = "tcp" | "ws";

/** Where the swarm connects and how it is laid out. */
export interface SwarmLayout {
  /** Run id: makes keys, mids and rooms unique on a shared server. */
  runId: string;
  /** First mid; client i gets `midBase + i`. */
  midBase: number;
  /** Share of WebSocket clients, 0..1. */
  wsRatio: number;
  /** Number of rooms the clients are spread over (client i → room i mod rooms). */
  rooms: number;
  /**
   * Share of clients that opt in to streams (docs/STREAMS.md), 0..1, spread
   * as {@linkcode transportOf} spreads WebSocket clients. Absent = none.
   */
  streamsRatio?: number;
  /**
   * Every member of room r on comet `r mod comets` (`--room-layout pinned`),
   * instead of every room spanning every comet: shows job's membership
   * filter (comets without members of a room get none of its calls).
   */
  pinned?: boolean;
}

/**
 * Client `i`'s transport: WebSocket for exactly `round(n × wsRatio)` of the
 * first n clients, evenly interleaved (so every worker's slice gets its share).
 *
 * @example
 * ```ts
 * transportOf(0, 0.5); // "tcp"
 * transportOf(1, 0.5); // "ws"
 * ```
 */
export function transportOf(i: number, wsRatio: number): BenchTransport {
  return Math.floor((i + 1) * wsRatio + 1e-9) > Math.floor(i * wsRatio + 1e-9) ? "ws" : "tcp";
}

/**
 * The comet each of clients `0 … count - 1` connects to, of `comets`: round
 * robin within each class of clients that share a room and a transport,
 * each class starting one comet further than the class before it. So every
 * room spans every comet (once it has as many members of a transport as
 * there are comets), every comet gets its share of TCP and of WebSocket
 * clients, and the counts per comet differ by little. (A plain `i mod
 * comets` would put, with 2 comets and half the clients on WebSocket, every
 * TCP client on comet 0 and every WebSocket client on comet 1.) Client i's
 * comet depends only on clients 0 … i, so a worker computes it up to the end
 * of its own slice.
 *
 * @example
 * ```ts
 * const layout = { runId: "a1b2", midBase: 0, wsRatio: 0.5, rooms: 1 };
 * cometsOf(layout, 6, 2); // Uint16Array [0, 1, 1, 0, 0, 1]: TCP 0, 2, 4 → 0, 1, 0; WS 1, 3, 5 → 1, 0, 1
 * ```
 */
export function cometsOf(layout: SwarmLayout, count: number, comets: number): Uint16Array {
  const out = new Uint16Array(count);
  if (layout.pinned) {
    for (let i = 0; i < count; i++) out[i] = (i % layout.rooms) % comets;
    return out;
  }
  const next = new Map<number, number>();
  let classes = 0;
  for (let i = 0; i < count; i++) {
    const cls = (i % layout.rooms) * 2 + (transportOf(i, layout.wsRatio) === "ws" ? 1 : 0);
    const c = next.get(cls) ?? classes++ % comets;
    out[i] = c;
    next.set(cls, (c + 1) % comets);
  }
  return out;
}

/**
 * Client `i`'s connection key (what `/goim/push/keys` targets).
 *
 * @example
 * ```ts
 * keyOf("a1b2", 7); // "bench-a1b2-7"
 * ```
 */
export function keyOf(runId: string, i: number): string {
  return `bench-${runId}-${i}`;
}

/**
 * Room `r`'s id as the HTTP API's `type` and `room` parameters.
 *
 * @example
 * ```ts
 * roomParams("a1b2", 3); // { type: "bench", room: "a1b2-3" }
 * ```
 */
export function roomParams(runId: string, r: number): { type: string; room: string } {
  return { type: "bench", room: `${runId}-${r}` };
}

/**
 * Room `r` as a client's `room_id` (`type://room`).
 *
 * @example
 * ```ts
 * roomIdOf("a1b2", 3); // "bench://a1b2-3"
 * ```
 */
export function roomIdOf(runId: string, r: number): string {
  const p = roomParams(runId, r);
  return `${p.type}://${p.room}`;
}

const enc = new TextEncoder();

/**
 * The pushed body: JSON (any goim consumer can read it) with the send time
 * `t` in epoch milliseconds with µs decimals, the stream `p` it belongs to
 * (a phase, or one of the drivers of a phase that runs several at once:
 * run.ts numbers them) and a sequence number `s`, padded with an `x` field to `size` bytes if asked.
 * The fixed field order lets {@linkcode parseBody} read it without JSON.parse,
 * which matters at hundreds of thousands of messages per second per worker.
 *
 * @example
 * ```ts
 * encodeBody(1764085014970.123, 2, 41); // {"t":1764085014970.123,"p":2,"s":41}
 * ```
 */
export function encodeBody(
  t: number,
  phase: number,
  seq: number,
  size = 0,
): Uint8Array<ArrayBuffer> {
  let s = `{"t":${t.toFixed(3)},"p":${phase},"s":${seq}`;
  const pad = size - s.length - 1;
  if (pad > 7) s += `,"x":"${"x".repeat(pad - 7)}"`;
  return enc.encode(s + "}");
}

/** The fields {@linkcode parseBody} extracts. */
export interface ParsedBody {
  /** Send time, epoch ms. */
  t: number;
  /** Stream index (the phase, or one driver of a phase). */
  p: number;
}

/**
 * Reads `t` and `p` from a body made by {@linkcode encodeBody}, straight from
 * the bytes; returns false when the body is not one (then `out` is untouched).
 *
 * @example
 * ```ts
 * const out = { t: 0, p: 0 };
 * parseBody(encodeBody(1000.5, 1, 0), out); // true; out = { t: 1000.5, p: 1 }
 * ```
 */
export function parseBody(b: Uint8Array, out: ParsedBody): boolean {
  // {"t":   = 7B 22 74 22 3A
  if (b.length < 14 || b[0] !== 0x7b || b[2] !== 0x74 || b[4] !== 0x3a) return false;
  let i = 5;
  let int = 0;
  let c = b[i];
  while (c >= 0x30 && c <= 0x39) {
    int = int * 10 + (c - 0x30);
    c = b[++i];
  }
  let frac = 0, scale = 1;
  if (c === 0x2e) {
    c = b[++i];
    while (c >= 0x30 && c <= 0x39) {
      frac = frac * 10 + (c - 0x30);
      scale *= 10;
      c = b[++i];
    }
  }
  // ,"p":  = 2C 22 70 22 3A
  if (c !== 0x2c || b[i + 2] !== 0x70 || b[i + 4] !== 0x3a) return false;
  i += 5;
  let p = 0;
  c = b[i];
  if (!(c >= 0x30 && c <= 0x39)) return false;
  while (c >= 0x30 && c <= 0x39) {
    p = p * 10 + (c - 0x30);
    c = b[++i];
  }
  out.t = int + frac / scale;
  out.p = p;
  return true;
}

/**
 * Epoch milliseconds with sub-millisecond resolution. Every process on this
 * machine derives `timeOrigin` from the same system clock, so stamps taken in
 * the driver and read in a worker compare directly (the driver checks the
 * offset with a ping at start and reports it).
 */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

// ---------------------------------------------------------------------------
// Driver → worker commands (one JSON object per stdin line).

/** A comet's client endpoints. */
export interface CometAddrs {
  /** `tcp://host:port`. */
  tcp: string;
  /** `ws://host:port/sub`. */
  ws: string;
}

/**
 * Open clients `from` … `to - 1` (global indices) and authenticate them,
 * client i on `comets[cometsOf(layout, to, comets.length)[i]]`.
 */
export interface ConnectCommand {
  /** Command tag. */
  cmd: "connect";
  /** The comets to spread the clients over (at least one). */
  comets: CometAddrs[];
  /** First global client index of this worker. */
  from: number;
  /** One past the last. */
  to: number;
  /** Swarm layout shared with the driver. */
  layout: SwarmLayout;
  /** Client heartbeat period (ms). */
  heartbeatMs: number;
  /** Connections this worker opens at once. */
  concurrency: number;
  /** Time a client has from connect start to op 8 (ms). */
  authTimeoutMs: number;
}

/** Commands the driver sends. */
export type WorkerCommand =
  | ConnectCommand
  | { cmd: "ping"; id: number }
  | { cmd: "count" }
  | { cmd: "stats" }
  | { cmd: "close" };

// ---------------------------------------------------------------------------
// Worker → driver events (one JSON object per stdout line).

/** One second of deliveries, keyed by the epoch second they were received in. */
export interface SecondBin {
  /** `floor(epoch ms / 1000)` of receipt. */
  sec: number;
  /** Messages received in that second. */
  frames: number;
  /** Their latencies, sparse buckets. */
  hist: SparseCounts;
  /** Heartbeat replies received in that second. */
  heartbeats: number;
  /** Clients that authenticated in that second. */
  authed: number;
}

/** Per-stream totals a worker keeps for the whole run. */
export interface PhaseStats {
  /** Messages of that phase received. */
  frames: number;
  /** Their latency histogram. */
  hist: HistogramWire;
  /** Epoch ms of the first and last receipt (null if none). */
  first: number | null;
  /** Epoch ms of the last receipt. */
  last: number | null;
}

/** Final statistics of one worker. */
export interface WorkerStats {
  /** Event tag. */
  ev: "stats";
  /** Per stream index (see {@linkcode encodeBody}). */
  phases: Record<string, PhaseStats>;
  /** Messages whose body was not a bench body (counted, not timed). */
  foreign: number;
  /** Heartbeat replies received. */
  heartbeats: number;
  /** Heartbeat round trips (client op 2 written → op 3 received). */
  heartbeatRtt: HistogramWire;
  /** Authenticated connections that ended before `close`, by reason. */
  disconnects: Record<string, number>;
  /** Clients still connected. */
  connected: number;
  /** Worker's own RSS (bytes). */
  rssBytes: number;
}

/** Result of a connect command. */
export interface ConnectedEvent {
  /** Event tag. */
  ev: "connected";
  /** Clients that authenticated. */
  authed: number;
  /** Clients that failed to connect or authenticate. */
  failed: number;
  /** Global indices of failed clients (first 10,000; the driver skips them as targets). */
  failedIdx: number[];
  /** First error messages, for the report. */
  errors: string[];
  /** Epoch ms when the first connect started and the last auth arrived. */
  firstStart: number;
  /** Epoch ms of the last op 8. */
  lastAuth: number;
  /** Connect start → op 8, per client. */
  setup: HistogramWire;
  /** TCP and WebSocket clients authenticated. */
  tcp: number;
  /** WebSocket clients authenticated. */
  ws: number;
  /** Clients authenticated per comet (index of `ConnectCommand.comets`). */
  perComet: number[];
}

/** Events a worker sends. */
export type WorkerEvent =
  | { ev: "ready"; pid: number }
  | { ev: "progress"; authed: number; failed: number }
  | ConnectedEvent
  | {
    ev: "tick";
    bins: SecondBin[];
    phaseFrames: Record<string, number>;
    connected: number;
    disconnects: number;
  }
  | { ev: "pong"; id: number; now: number }
  | { ev: "count"; phaseFrames: Record<string, number> }
  | WorkerStats
  | { ev: "closed" }
  | { ev: "error"; message: string };

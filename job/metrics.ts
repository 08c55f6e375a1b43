/**
 * The job role's metrics (`goim_job_*`).
 *
 * @module
 */

import {
  type Counter,
  exponentialBuckets,
  type Gauge,
  type Histogram,
  type Metrics,
} from "../infra/metrics.ts";

/** Why a consumed message was not (fully) delivered. */
export type SkipReason =
  | "invalid"
  | "unknown_server"
  | "no_comets"
  | "no_target"
  | "retries_exhausted"
  | "rpc_error"
  | "comet_gone"
  | "undecodable";

/** The metrics job updates. */
export interface JobMetrics {
  /** Messages handed to the handler by the queue. */
  consumed: Counter<"type">;
  /** Messages handed to every comet they were meant for. */
  delivered: Counter<"type">;
  /** Comet calls retried (one per retry). */
  retried: Counter;
  /** Messages given up on, by the first reason. */
  skipped: Counter<"reason">;
  /** Publish → handed to the comets, seconds. */
  latency: Histogram<"type">;
  /** Frames per room batch sent. */
  roomBatch: Histogram;
  /** Stream appends that succeeded, by stream kind (room, mid). */
  streamAppends: Counter<"kind">;
  /** Entries those appends carried. */
  streamAppendEntries: Counter<"kind">;
  /** Duration of a successful append, seconds. */
  streamAppendSeconds: Histogram<"kind">;
  /** Failed stream store calls (append, keys_by_mids, delivered), each retried. */
  storeFailures: Counter<"call">;
}

/** Sources the scrape-time gauges read from. */
export interface JobGaugeSources {
  /** Queue items per comet (lanes, waiting submissions included). */
  laneDepth(): Iterable<[comet: string, depth: number]>;
  /** Comets job currently delivers to. */
  comets(): number;
  /** Room batchers alive. */
  rooms(): number;
  /** Consumer lag, if the engine can tell (Kafka: uncommitted records; memory: depth). */
  lag?(): Promise<number>;
}

/**
 * Defines job's metrics in `m` (a `createMetrics("job")` registry). The
 * gauges read `src` at scrape time, so the hot path only counts.
 */
export function jobMetrics(m: Metrics, src: JobGaugeSources): JobMetrics {
  m.gauge(
    "lane_depth",
    "Calls queued in a comet's lanes, waiting submissions included.",
    ["comet"],
    (g: Gauge<"comet">) => {
      g.reset();
      for (const [comet, depth] of src.laneDepth()) g.set({ comet }, depth);
    },
  );
  m.gauge("comets", "Comets job delivers to.", [], (g: Gauge) => g.set(src.comets()));
  m.gauge("room_batchers", "Rooms with a live batcher.", [], (g: Gauge) => g.set(src.rooms()));
  if (src.lag) {
    const lag = src.lag;
    m.gauge(
      "consumer_lag",
      "Messages in the queue not yet acknowledged by job (Kafka: uncommitted records; NaN while it cannot be read).",
      [],
      async (g: Gauge) => {
        try {
          g.set(await lag());
        } catch {
          // Unknown right now (Kafka unreachable): NaN, not the last value (which would look
          // current) and not a failed scrape (which would hide every other job series).
          g.set(NaN);
        }
      },
    );
  }
  return {
    consumed: m.counter("consumed_total", "Messages taken from the queue.", ["type"]),
    delivered: m.counter("delivered_total", "Messages handed to every comet they were for.", [
      "type",
    ]),
    retried: m.counter("retried_total", "Comet calls retried after a transient failure."),
    skipped: m.counter("skipped_total", "Messages consumed but not delivered, by reason.", [
      "reason",
    ]),
    latency: m.histogram(
      "push_latency_seconds",
      "From publish to handed to the comets.",
      exponentialBuckets(0.001, 2, 14),
      ["type"],
    ),
    roomBatch: m.histogram("room_batch_frames", "Frames per room batch sent.", [
      1,
      2,
      5,
      10,
      20,
      50,
      100,
      200,
      500,
    ]),
    streamAppends: m.counter(
      "stream_appends_total",
      "Appends to the stream history that succeeded (one per room batch or mid push).",
      ["kind"],
    ),
    streamAppendEntries: m.counter(
      "stream_append_entries_total",
      "Messages those appends carried.",
      ["kind"],
    ),
    streamAppendSeconds: m.histogram(
      "stream_append_seconds",
      "Duration of a successful append to the stream history.",
      exponentialBuckets(0.0001, 2, 16),
      ["kind"],
    ),
    storeFailures: m.counter(
      "stream_store_failures_total",
      "Stream store calls that failed (each is retried: append and keys_by_mids until they succeed).",
      ["call"],
    ),
  };
}

/**
 * A latency histogram with fixed logarithmic buckets, so that histograms
 * recorded in different worker processes merge exactly (bucket i means the
 * same range everywhere) and memory stays bounded whatever the message count.
 *
 * Buckets: 16 per octave from 1 µs, 448 in all (1 µs … ≈ 268 s). A bucket is
 * 4.4 % wide, so a percentile read back as the bucket's geometric middle is
 * within ±2.2 % of the true value — finer than the run-to-run noise of any
 * figure this tool reports.
 *
 * @module
 */

/** Lower edge of bucket 0, in milliseconds (1 µs). */
export const HIST_MIN_MS = 0.001;
/** Buckets per doubling of latency. */
export const HIST_STEPS_PER_OCTAVE = 16;
/** Number of buckets: 28 octaves above 1 µs (≈ 268 s). */
export const HIST_BUCKETS = 28 * HIST_STEPS_PER_OCTAVE;

const LOG2_MIN = Math.log2(HIST_MIN_MS);

/**
 * The bucket a latency falls into; below 1 µs (and negative values, which
 * clock skew between processes can produce) → 0, beyond the range → last.
 *
 * @example
 * ```ts
 * bucketOf(1); // 159: 1 ms is ≈ 9.97 octaves above 1 µs
 * ```
 */
export function bucketOf(ms: number): number {
  if (!(ms > HIST_MIN_MS)) return 0;
  const i = Math.floor((Math.log2(ms) - LOG2_MIN) * HIST_STEPS_PER_OCTAVE);
  return i >= HIST_BUCKETS ? HIST_BUCKETS - 1 : i;
}

/**
 * The value reported for bucket `i`: its geometric middle, in milliseconds.
 *
 * @example
 * ```ts
 * bucketValue(bucketOf(5)); // ≈ 5 (within 2.2 %)
 * ```
 */
export function bucketValue(i: number): number {
  return 2 ** (LOG2_MIN + (i + 0.5) / HIST_STEPS_PER_OCTAVE);
}

/**
 * Sparse wire form of a histogram: `[bucket, count, bucket, count, …]` for the
 * non-empty buckets. A second of traffic usually touches a few dozen buckets,
 * so this keeps worker → driver lines small.
 */
export type SparseCounts = number[];

/** Percentiles and extremes of a histogram, in milliseconds (null when empty). */
export interface LatencySummary {
  /** Samples recorded. */
  count: number;
  /** Median. */
  p50: number | null;
  /** 90th percentile. */
  p90: number | null;
  /** 99th percentile. */
  p99: number | null;
  /** 99.9th percentile. */
  p999: number | null;
  /** Smallest sample (exact). */
  min: number | null;
  /** Largest sample (exact). */
  max: number | null;
  /** Mean (exact). */
  mean: number | null;
  /** Samples below zero (receiver clock behind the sender's); counted in bucket 0. */
  negative: number;
}

/**
 * A mergeable log-bucket latency histogram.
 *
 * @example
 * ```ts
 * const h = new LatencyHistogram();
 * h.record(1.5);
 * h.record(3);
 * h.percentile(0.5); // ≈ 1.5
 * const other = new LatencyHistogram();
 * other.mergeSparse(h.toSparse());
 * ```
 */
export class LatencyHistogram {
  /** Count per bucket (Float64: exact integers far beyond 2^32). */
  readonly counts: Float64Array = new Float64Array(HIST_BUCKETS);
  /** Samples recorded. */
  count = 0;
  /** Sum of the samples, for the mean. */
  sum = 0;
  /** Smallest sample. */
  min: number = Infinity;
  /** Largest sample. */
  max: number = -Infinity;
  /** Samples below zero. */
  negative = 0;

  /** Adds one sample (milliseconds). */
  record(ms: number): void {
    this.counts[bucketOf(ms)]++;
    this.count++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
    if (ms < 0) this.negative++;
  }

  /** Adds every sample of `other`. */
  merge(other: LatencyHistogram): void {
    for (let i = 0; i < HIST_BUCKETS; i++) this.counts[i] += other.counts[i];
    this.#mergeTotals(other.count, other.sum, other.min, other.max, other.negative);
  }

  /**
   * Adds a histogram received in wire form (see {@linkcode LatencyHistogram.toWire}).
   *
   * @example
   * ```ts
   * declare const total: LatencyHistogram, line: string;
   * total.mergeWire(JSON.parse(line).hist);
   * ```
   */
  mergeWire(w: HistogramWire): void {
    this.mergeSparse(w.buckets, false);
    this.#mergeTotals(w.count, w.sum, w.min ?? Infinity, w.max ?? -Infinity, w.negative);
  }

  /**
   * Adds sparse bucket counts. With `totals` (default) the count, sum, min
   * and max are updated from the buckets (bucket middles stand in for the
   * exact values); without, only the buckets change (the caller merges exact
   * totals).
   */
  mergeSparse(sparse: SparseCounts, totals = true): void {
    for (let j = 0; j + 1 < sparse.length; j += 2) {
      const i = sparse[j], n = sparse[j + 1];
      if (i < 0 || i >= HIST_BUCKETS) continue;
      this.counts[i] += n;
      if (totals) {
        // Exact values are not in the wire form: bucket middles stand in.
        const v = bucketValue(i);
        this.count += n;
        this.sum += n * v;
        if (v < this.min) this.min = v;
        if (v > this.max) this.max = v;
      }
    }
  }

  #mergeTotals(count: number, sum: number, min: number, max: number, negative: number): void {
    this.count += count;
    this.sum += sum;
    if (min < this.min) this.min = min;
    if (max > this.max) this.max = max;
    this.negative += negative;
  }

  /** The non-empty buckets as `[bucket, count, …]`. */
  toSparse(): SparseCounts {
    const out: number[] = [];
    for (let i = 0; i < HIST_BUCKETS; i++) if (this.counts[i] > 0) out.push(i, this.counts[i]);
    return out;
  }

  /** The whole histogram in a JSON-safe form (exact totals plus sparse buckets). */
  toWire(): HistogramWire {
    return {
      buckets: this.toSparse(),
      count: this.count,
      sum: this.sum,
      min: this.count ? this.min : null,
      max: this.count ? this.max : null,
      negative: this.negative,
    };
  }

  /**
   * The value below which a fraction `q` (0..1) of the samples lie, read as
   * the middle of its bucket and clamped to the exact min/max; null when empty.
   */
  percentile(q: number): number | null {
    if (this.count === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < HIST_BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) {
        const v = bucketValue(i);
        return Math.min(Math.max(v, this.min), this.max);
      }
    }
    return this.max;
  }

  /** p50/p90/p99/p99.9, min, max, mean. */
  summary(): LatencySummary {
    const empty = this.count === 0;
    return {
      count: this.count,
      p50: this.percentile(0.5),
      p90: this.percentile(0.9),
      p99: this.percentile(0.99),
      p999: this.percentile(0.999),
      min: empty ? null : this.min,
      max: empty ? null : this.max,
      mean: empty ? null : this.sum / this.count,
      negative: this.negative,
    };
  }
}

/**
 * A histogram as it travels between processes.
 *
 * @example
 * ```ts
 * const w: HistogramWire = new LatencyHistogram().toWire();
 * ```
 */
export interface HistogramWire {
  /** Sparse bucket counts. */
  buckets: SparseCounts;
  /** Samples. */
  count: number;
  /** Sum of samples (ms). */
  sum: number;
  /** Exact minimum, null when empty. */
  min: number | null;
  /** Exact maximum, null when empty. */
  max: number | null;
  /** Samples below zero. */
  negative: number;
}

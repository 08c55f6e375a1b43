/**
 * Prometheus metrics on prom-client (checked under the pinned Deno 2.9.3:
 * counters, gauges, histograms and the text exposition work; its default
 * process collectors do not, see ./process_metrics.ts).
 *
 * Each role gets its own registry, and every metric it defines is named
 * `goim_<role>_<name>`. Separate registries keep roles independent (a role
 * started twice in one test process gets fresh counters; nothing touches
 * prom-client's global registry), and the prefix guarantees that the three
 * roles of the all-in-one process never clash when their registries are
 * exposed together. A `role` label on shared names was rejected: the roles
 * measure different things, and a clash would only show at scrape time.
 *
 * Process-wide metrics (`process_*` CPU, memory and descriptors, `nodejs_*`
 * V8 heap and event-loop lag, `deno_version_info`; ./process_metrics.ts)
 * live in one separate registry, {@linkcode processMetrics}, because they
 * describe the process, not a role. Every series is listed in
 * docs/METRICS.md.
 *
 * @example
 * ```ts
 * import { createMetrics, metricsResponse, processMetrics } from "./metrics.ts";
 * const m = createMetrics("comet");
 * const conns = m.gauge("connections", "Open client connections.", ["transport"]);
 * conns.inc({ transport: "tcp" });
 * const frames = m.counter("frames_sent_total", "Frames written to clients.");
 * frames.inc(10);
 * Deno.serve((req) =>
 *   new URL(req.url).pathname === "/metrics"
 *     ? metricsResponse(m, processMetrics())
 *     : new Response("not found", { status: 404 })
 * );
 * ```
 *
 * @module
 */
import {
  Counter,
  exponentialBuckets as promExponentialBuckets,
  Gauge,
  Histogram,
  Registry,
} from "prom-client";
import { registerProcessMetrics } from "./process_metrics.ts";

export type { Counter, Gauge, Histogram, Registry };

/**
 * `count` histogram bounds from `start`, each `factor` times the previous.
 * @example
 * ```ts
 * exponentialBuckets(0.001, 2, 4); // [0.001, 0.002, 0.004, 0.008]
 * ```
 */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  return promExponentialBuckets(start, factor, count);
}

/** Content type of the Prometheus text exposition format served at `/metrics`. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** A role's metrics: its registry plus helpers that define prefixed metrics in it. */
export interface Metrics {
  /** The role, e.g. `"comet"`. */
  readonly role: string;
  /** Prefix added to every name defined through the helpers, e.g. `goim_comet_`. */
  readonly prefix: string;
  /** The underlying prom-client registry. */
  readonly registry: Registry;
  /**
   * Defines (or returns the already defined) counter `prefix + name`.
   * Counter names should end in `_total`.
   */
  counter<const L extends string = never>(
    name: string,
    help: string,
    labelNames?: readonly L[],
  ): Counter<L>;
  /**
   * Defines (or returns) gauge `prefix + name`. `collect` runs at each
   * scrape, for values cheaper to read than to track (e.g. a map's size).
   */
  gauge<const L extends string = never>(
    name: string,
    help: string,
    labelNames?: readonly L[],
    collect?: (gauge: Gauge<L>) => void | Promise<void>,
  ): Gauge<L>;
  /** Defines (or returns) histogram `prefix + name` with the given upper bounds. */
  histogram<const L extends string = never>(
    name: string,
    help: string,
    buckets: readonly number[],
    labelNames?: readonly L[],
  ): Histogram<L>;
  /** The registry's text exposition. */
  text(): Promise<string>;
}

/** Options of {@linkcode createMetrics}. */
export interface MetricsOptions {
  /** Name prefix; defaults to `goim_<role>_`. */
  readonly prefix?: string;
  /** Labels added to every sample of this registry (e.g. `{ node: "c1" }`). */
  readonly defaultLabels?: Readonly<Record<string, string>>;
}

const ROLE_RE = /^[a-z][a-z0-9_]*$/;

/**
 * Creates the metrics registry of one role. Defining a name twice returns
 * the first metric when type and labels match, so modules can declare what
 * they use; a mismatch throws.
 *
 * @example
 * ```ts
 * const m = createMetrics("job");
 * const pushes = m.counter("pushes_total", "Pushes sent to comets.", ["result"]);
 * pushes.inc({ result: "ok" });
 * await m.text(); // contains 'goim_job_pushes_total{result="ok"} 1'
 * ```
 */
export function createMetrics(role: string, options: MetricsOptions = {}): Metrics {
  if (!ROLE_RE.test(role)) throw new TypeError(`metrics role "${role}" must be snake_case`);
  const prefix = options.prefix ?? `goim_${role}_`;
  const registry = new Registry();
  if (options.defaultLabels) registry.setDefaultLabels({ ...options.defaultLabels });

  // deno-lint-ignore no-explicit-any
  type AnyCtor = new (...args: any[]) => unknown;
  const define = <M>(
    kind: AnyCtor,
    name: string,
    labelNames: readonly string[],
    make: () => M,
  ): M => {
    const full = prefix + name;
    const existing = registry.getSingleMetric(full);
    if (existing === undefined) return make();
    const labels = (existing as unknown as { labelNames: readonly string[] }).labelNames;
    if (!(existing instanceof kind) || labels.join() !== labelNames.join()) {
      throw new Error(`metric ${full} is already defined with another type or labels`);
    }
    return existing as M;
  };

  return Object.freeze({
    role,
    prefix,
    registry,
    counter<const L extends string = never>(
      name: string,
      help: string,
      labelNames: readonly L[] = [],
    ) {
      return define(
        Counter,
        name,
        labelNames,
        () => new Counter<L>({ name: prefix + name, help, labelNames, registers: [registry] }),
      );
    },
    gauge<const L extends string = never>(
      name: string,
      help: string,
      labelNames: readonly L[] = [],
      collect?: (gauge: Gauge<L>) => void | Promise<void>,
    ) {
      return define(Gauge, name, labelNames, () =>
        new Gauge<L>({
          name: prefix + name,
          help,
          labelNames,
          registers: [registry],
          ...(collect
            ? {
              collect(this: Gauge<L>) {
                return collect(this);
              },
            }
            : {}),
        }));
    },
    histogram<const L extends string = never>(
      name: string,
      help: string,
      buckets: readonly number[],
      labelNames: readonly L[] = [],
    ) {
      return define(Histogram, name, labelNames, () =>
        new Histogram<L>({
          name: prefix + name,
          help,
          labelNames,
          buckets: [...buckets],
          registers: [registry],
        }));
    },
    text: () => registry.metrics(),
  });
}

let processRegistry: Registry | undefined;

/**
 * The process-wide registry with the process metrics (CPU, memory, open
 * fds, V8 heap, event-loop lag; ./process_metrics.ts), created on first use
 * so the all-in-one process registers them once however many roles it runs.
 */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    registerProcessMetrics(processRegistry);
  }
  return processRegistry;
}

/**
 * The text exposition of several registries, concatenated. Names must not
 * repeat across them (role prefixes see to that).
 */
export async function metricsText(...sources: ReadonlyArray<Registry | Metrics>): Promise<string> {
  const texts = await Promise.all(
    sources.map((s) => (s instanceof Registry ? s : s.registry).metrics()),
  );
  return texts.filter((t) => t.trim() !== "").map((t) => (t.endsWith("\n") ? t : t + "\n")).join(
    "\n",
  );
}

/**
 * A `/metrics` response for the given registries, with the Prometheus text
 * content type. A failing collector gives a 500 rather than a partial page,
 * which Prometheus would otherwise record as real values.
 *
 * @example
 * ```ts
 * const res = await metricsResponse(createMetrics("logic"), processMetrics());
 * res.headers.get("content-type"); // "text/plain; version=0.0.4; charset=utf-8"
 * ```
 */
export async function metricsResponse(
  ...sources: ReadonlyArray<Registry | Metrics>
): Promise<Response> {
  try {
    return new Response(await metricsText(...sources), {
      headers: { "content-type": METRICS_CONTENT_TYPE },
    });
  } catch (e) {
    return new Response(`metrics collection failed: ${(e as Error).message}\n`, {
      status: 500,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
}

/** One sample of the text exposition: name, labels, value. */
export interface Sample {
  /** Metric name (with `_bucket`, `_sum`, `_count` for histograms). */
  name: string;
  /** Label values by name. */
  labels: Record<string, string>;
  /** The value (NaN and ±Inf as Prometheus writes them). */
  value: number;
}

const SAMPLE_RE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL_RE = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/**
 * The samples of a Prometheus text exposition whose name `wanted` accepts
 * (comments and other series skipped). A hand-written reader of sample lines
 * only: the npm parsers of this format are unmaintained, and the readers
 * (logic's console, the bench tool) need a few series.
 *
 * @example
 * ```ts
 * parseSamples('a_total{k="v"} 3\n# HELP b x\nb 1\n', (n) => n === "a_total");
 * // [{ name: "a_total", labels: { k: "v" }, value: 3 }]
 * ```
 */
export function parseSamples(text: string, wanted: (name: string) => boolean): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE_RE.exec(line);
    if (m === null || !wanted(m[1])) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL_RE)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const v = m[3];
    const value = v === "+Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

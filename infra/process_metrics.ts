/**
 * The process metrics every role exposes (`process_*`, `nodejs_*`,
 * `deno_version_info`), read from the process itself so that each series is
 * true under Deno.
 *
 * prom-client's default collectors were written for Node and are wrong under
 * Deno in several ways: a /proc read that fails (no read permission, or no
 * descriptor left at EMFILE) leaves `process_resident_memory_bytes` and
 * `process_open_fds` at 0 instead of saying "unknown"; the CPU counters start
 * at zero when prom-client loads, not at process start; Deno's
 * `monitorEventLoopDelay` does not see a blocked loop (a 500 ms busy loop
 * left `nodejs_eventloop_lag_max_seconds` at 2 ms; infra/loop_lag.ts samples
 * the lag instead, as `goim_event_loop_lag_seconds` in the same registry),
 * `nodejs_active_handles` counts nothing, and `nodejs_version_info` names
 * Deno's Node-compatibility version. So this module defines the series
 * itself, on prom-client's types:
 *
 * - CPU: `process.cpuUsage()` (getrusage), since process start;
 * - memory: RSS from `Deno.memoryUsage()`, virtual size and data segment from
 *   `/proc/self/status` (`VmSize`, `VmData`); V8 heap from
 *   `Deno.memoryUsage()` and `v8.getHeapSpaceStatistics()`;
 * - descriptors: infra/fds.ts (`/proc/self/fd`, the soft limit of
 *   `/proc/self/limits`, re-read at each scrape since it can change);
 * - start time: `performance.timeOrigin` (the runtime's start).
 *
 * A series whose source cannot be read when the registry is built (not Linux,
 * or no read permission for /proc: the check never prompts) is not defined
 * at all; one whose read fails at a later scrape reports NaN. Neither shows a
 * made-up 0. Each scrape costs a few /proc reads (tens of µs); on kernels
 * before 6.2 counting descriptors lists /proc/self/fd (≈2 µs per open
 * descriptor, see infra/fds.ts).
 *
 * @example
 * ```ts
 * import { Registry } from "prom-client";
 * import { registerProcessMetrics } from "./process_metrics.ts";
 * const registry = new Registry();
 * registerProcessMetrics(registry);
 * await registry.metrics(); // process_resident_memory_bytes 61440000 ...
 * ```
 *
 * @module
 */

import process from "node:process";
import v8 from "node:v8";
import { Counter, Gauge, type Registry } from "prom-client";
import { countOpenFds, readFdLimit } from "./fds.ts";

const STATUS_FILE = "/proc/self/status";
const FD_DIR = "/proc/self/fd";
const LIMITS_FILE = "/proc/self/limits";

/** Whether `path` may be read without a permission prompt. */
function readable(path: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "read", path }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * The `kB` fields of a `/proc/<pid>/status` text, in bytes (`VmRSS`,
 * `VmSize`, `VmData`, ...).
 *
 * @example
 * ```ts
 * parseProcStatus("VmSize:\t  1024 kB\nVmRSS:\t 512 kB\n").VmRSS; // 524288
 * ```
 */
export function parseProcStatus(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (m) out[m[1]] = Number(m[2]) * 1024;
  }
  return out;
}

function readStatus(): Record<string, number> | null {
  try {
    return parseProcStatus(Deno.readTextFileSync(STATUS_FILE));
  } catch {
    return null;
  }
}

// A counter whose value is read, not counted: set to the reading at each scrape.
function readCounter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect(this: Counter) {
      this.reset();
      this.inc(read());
    },
  });
}

function readGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect(this: Gauge) {
      this.set(read());
    },
  });
}

/**
 * Defines the process metrics in `registry` (see the module comment for
 * each source). Call once per registry; infra/metrics.ts's
 * `processMetrics()` does it for the one process-wide registry.
 */
export function registerProcessMetrics(registry: Registry): void {
  // CPU: getrusage through node:process, in µs since the process started.
  readCounter(
    registry,
    "process_cpu_user_seconds_total",
    "User CPU time spent by the process, in seconds.",
    () => process.cpuUsage().user / 1e6,
  );
  readCounter(
    registry,
    "process_cpu_system_seconds_total",
    "System CPU time spent by the process, in seconds.",
    () => process.cpuUsage().system / 1e6,
  );
  readCounter(
    registry,
    "process_cpu_seconds_total",
    "User and system CPU time spent by the process, in seconds.",
    () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    },
  );
  const start = performance.timeOrigin / 1000;
  readGauge(
    registry,
    "process_start_time_seconds",
    "Start time of the process (its runtime) since the Unix epoch, in seconds.",
    () => start,
  );
  // Deno reads /proc/self/statm itself (no permission needed) and gives 0 when it cannot.
  readGauge(
    registry,
    "process_resident_memory_bytes",
    "Resident set size of the process, in bytes.",
    () => Deno.memoryUsage().rss || NaN,
  );

  if (readable(STATUS_FILE) && readStatus()?.VmSize !== undefined) {
    readGauge(
      registry,
      "process_virtual_memory_bytes",
      "Virtual memory size of the process (VmSize), in bytes.",
      () => readStatus()?.VmSize ?? NaN,
    );
    readGauge(
      registry,
      "process_heap_bytes",
      "Data segment of the process (VmData: heaps and private anonymous mappings), in bytes.",
      () => readStatus()?.VmData ?? NaN,
    );
  }

  if (readable(FD_DIR) && typeof countOpenFds() === "number") {
    const first = readable(LIMITS_FILE) ? readFdLimit() : null;
    let limit = first ?? NaN;
    readGauge(registry, "process_open_fds", "Open file descriptors of the process.", () => {
      const n = countOpenFds();
      // No descriptor left to count with: the process is at its limit.
      if (n === "exhausted") return limit;
      return n ?? NaN;
    });
    if (first !== null) {
      readGauge(
        registry,
        "process_max_fds",
        "Soft limit on open file descriptors of the process (+Inf when unlimited).",
        // Re-read: prlimit can change it at run time. Unreadable (at EMFILE): the last one read.
        () => limit = readFdLimit() ?? limit,
      );
    }
  }

  readGauge(
    registry,
    "nodejs_heap_size_total_bytes",
    "V8 heap size (reserved for JavaScript objects), in bytes.",
    () => Deno.memoryUsage().heapTotal,
  );
  readGauge(
    registry,
    "nodejs_heap_size_used_bytes",
    "V8 heap in use by JavaScript objects, in bytes.",
    () => Deno.memoryUsage().heapUsed,
  );
  readGauge(
    registry,
    "nodejs_external_memory_bytes",
    "Memory outside the V8 heap held by JavaScript objects (ArrayBuffers and the like), in bytes.",
    () => Deno.memoryUsage().external,
  );
  for (
    const [kind, what, field] of [
      ["total", "Size", "space_size"],
      ["used", "Bytes in use", "space_used_size"],
      ["available", "Bytes available", "space_available_size"],
    ] as const
  ) {
    new Gauge({
      name: `nodejs_heap_space_size_${kind}_bytes`,
      help: `${what} of each V8 heap space, in bytes.`,
      labelNames: ["space"],
      registers: [registry],
      collect(this: Gauge<"space">) {
        for (const s of v8.getHeapSpaceStatistics()) {
          // V8's fixed set of spaces (new_space, old_space, code_space, ...), "_space" dropped.
          this.set({ space: s.space_name.replace(/_space$/, "") }, s[field]);
        }
      },
    });
  }
  new Gauge({
    name: "deno_version_info",
    help: "The Deno runtime running the process (value 1; the versions are labels).",
    labelNames: ["version", "v8", "typescript"],
    registers: [registry],
    collect(this: Gauge<"version" | "v8" | "typescript">) {
      const { deno, v8, typescript } = Deno.version;
      this.set({ version: deno, v8, typescript }, 1);
    },
  });
}

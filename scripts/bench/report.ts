/**
 * The readable summary of a {@linkcode BenchReport}: a few aligned tables a
 * person can paste into a note or compare across runs.
 *
 * @module
 */

import type { LatencySummary } from "./histogram.ts";
import type { BenchReport, CpuUse, DriverReport, LoopLagUse, PhaseReport } from "./run.ts";
import { offeredPerSec } from "./svg.ts";

/**
 * A number with thousands separators and `digits` decimals; `—` for null.
 *
 * @example
 * ```ts
 * fmt(1234567.8); // "1,234,568"
 * fmt(0.1234, 2); // "0.12"
 * ```
 */
export function fmt(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/**
 * A latency in ms with precision that suits its size.
 *
 * @example
 * ```ts
 * ms(0.4321); // "0.43"
 * ms(123.4); // "123"
 * ```
 */
export function ms(v: number | null): string {
  if (v === null) return "—";
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : fmt(v);
}

const mib = (b: number | null) => (b === null ? "—" : `${(b / 1048576).toFixed(1)} MiB`);
const cores = (c: number | null) => (c === null ? "—" : c.toFixed(2));

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}

function lat(l: LatencySummary): string[] {
  return [ms(l.p50), ms(l.p99), ms(l.p999), ms(l.max)];
}

/** A role's loop lag cells: p99 and max (ms), `n/a` when its admin gave none. */
function lagCells(l: LoopLagUse | null): string[] {
  if (!l) return ["n/a", "n/a"];
  // A reading whose 10 s window reaches back before the phase is marked.
  const mark = l.windowInPhase ? "" : "*";
  return [ms(l.p99Ms) + mark, ms(l.maxMs) + mark];
}

/** The figures a phase and a driver report alike. */
type DeliveryFigures =
  & Pick<
    DriverReport,
    "targetRate" | "expected" | "delivered" | "deliveredRatio" | "deliveredPerSec" | "latencyMs"
  >
  & { pushes: PhaseReport["pushes"] };

/** Columns of {@linkcode deliveryCells}. */
const DELIVERY_HEAD = [
  "target/s",
  "pushed/s",
  "expected",
  "delivered",
  "ratio",
  "delivered/s",
  "p50",
  "p99",
  "p99.9",
  "max",
];

/** What a phase or one of its drivers pushed and delivered, as table cells. */
function deliveryCells(x: DeliveryFigures, pushed: boolean): string[] {
  return [
    pushed ? fmt(x.targetRate) : "—",
    x.pushes ? fmt(x.pushes.achievedRate) : "—",
    fmt(x.expected),
    fmt(x.delivered),
    x.deliveredRatio === null ? "—" : x.deliveredRatio.toFixed(4),
    fmt(x.deliveredPerSec),
    ...lat(x.latencyMs),
  ];
}

function cpuCell(c: CpuUse): string[] {
  return [cores(c.server), c.workers.map(cores).join("+"), cores(c.driver), cores(c.total)];
}

/**
 * Renders the summary text of a report.
 *
 * @example
 * ```ts
 * import type { BenchReport } from "./run.ts";
 * declare const report: BenchReport;
 * console.log(summarize(report));
 * ```
 */
export function summarize(r: BenchReport): string {
  const o = r.options;
  const out: string[] = [];
  out.push(
    `goim-deno bench — scenario "${r.scenario}", ${r.startedAt}, ${
      (r.wallMs / 1000).toFixed(1)
    } s wall`,
  );
  out.push(
    `machine: ${r.machine.cpus} CPUs, ${
      mib(r.machine.memTotalBytes)
    }, Linux ${r.machine.kernel}, ` +
      `deno ${r.machine.deno}, load ${r.machine.loadAvgStart?.join(" ") ?? "?"} → ${
        r.machine.loadAvgEnd?.join(" ") ?? "?"
      }`,
  );
  const comets = r.server.comets ?? 1;
  out.push(
    `server: ${r.server.mode}${comets > 1 ? `, ${comets} comets` : ""} pid ${
      r.server.pid ?? "?"
    } (${r.server.http}, ${r.server.tcp}, ${r.server.ws}${comets > 1 ? ", …" : ""})`,
  );
  out.push(
    `swarm: ${fmt(o.clients)} clients (${fmt(r.connect.tcp)} TCP, ${
      fmt(r.connect.ws)
    } WebSocket) over ${o.workers} worker process(es), ${o.rooms} room(s), heartbeat ${
      o.heartbeatMs / 1000
    } s${
      (r.connect.perComet?.length ?? 0) > 1
        ? `; per comet ${r.connect.perComet!.map((n) => fmt(n)).join(" / ")}`
        : ""
    }`,
  );
  out.push(
    `clock: worker offsets ${
      r.clock.map((c) => `${c.offsetMs.toFixed(3)} ms (rtt ${c.rttMs.toFixed(2)})`).join(", ")
    }`,
  );
  out.push("");
  out.push("Connections");
  out.push(table(
    [
      "connected",
      "failed",
      "setup/s",
      "setup p50 ms",
      "p99 ms",
      "server cores",
      "RSS before",
      "after",
      "bytes/conn",
    ],
    [[
      fmt(r.connect.connected),
      fmt(r.connect.failed),
      fmt(r.connect.perSec),
      ms(r.connect.setupMs.p50),
      ms(r.connect.setupMs.p99),
      cores(r.connect.cpu.server),
      mib(r.server.rssBeforeBytes),
      mib(r.server.rssAfterConnectBytes),
      fmt(r.server.bytesPerConnection),
    ]],
  ));
  out.push("");
  out.push("Phases (latency = push request sent → message received by a client, ms)");
  out.push(table(
    ["phase", ...DELIVERY_HEAD, "frames/write"],
    r.phases.map((p) => [
      p.name,
      ...deliveryCells(p, p.kind !== "none"),
      p.comet?.framesPerWrite == null ? "—" : p.comet.framesPerWrite.toFixed(1),
    ]),
  ));
  const mixed = r.phases.filter((p) => (p.drivers?.length ?? 0) > 1);
  if (mixed.length) {
    out.push("");
    out.push("Drivers of phases that push several ways at once (each its own latency, ms)");
    out.push(table(
      ["phase", "driver", ...DELIVERY_HEAD],
      mixed.flatMap((p) => p.drivers!.map((d) => [p.name, d.kind, ...deliveryCells(d, true)])),
    ));
  }
  if (o.sweep) {
    out.push("");
    out.push("Sweep (one phase per offered rate; offered = accepted pushes × clients reached, /s)");
    out.push(table(
      [
        "target/s",
        "pushed/s",
        "offered msgs/s",
        "delivered/s",
        "ratio",
        "p50",
        "p99",
        "frames/write",
        "server cores",
      ],
      r.phases.map((p) => [
        fmt(p.targetRate),
        p.pushes ? fmt(p.pushes.achievedRate) : "—",
        fmt(offeredPerSec(p)),
        fmt(p.deliveredPerSec),
        p.deliveredRatio === null ? "—" : p.deliveredRatio.toFixed(4),
        ms(p.latencyMs.p50),
        ms(p.latencyMs.p99),
        p.comet?.framesPerWrite == null ? "—" : p.comet.framesPerWrite.toFixed(1),
        cores(p.cpu.server),
      ]),
    ));
  }
  out.push("");
  out.push("CPU per phase (cores; server = every server process; workers one by one)");
  out.push(table(
    ["phase", "server", "workers", "driver", "total", "heartbeats/s", "HTTP p50 ms", "p99 ms"],
    r.phases.map((p) => [
      p.name,
      ...cpuCell(p.cpu),
      fmt(p.heartbeatsPerSec),
      ms(p.pushes?.http.p50 ?? null),
      ms(p.pushes?.http.p99 ?? null),
    ]),
  ));
  const roles = r.phases.flatMap((p) => (p.roles ?? []).map((x) => ({ phase: p.name, ...x })));
  if (roles.length) {
    out.push("");
    out.push(
      "Server processes per phase (CPU in cores; RSS at the phase end; event-loop lag in ms, " +
        "the highest 10 s p99 and max read during the phase)",
    );
    out.push(table(
      ["phase", "process", "pid", "cores", "RSS", "lag p99", "lag max", "frames/write"],
      roles.map((x) => [
        x.phase,
        x.name,
        String(x.pid),
        cores(x.cores),
        mib(x.rssBytes),
        ...lagCells(x.loopLag ?? null),
        x.comet?.framesPerWrite == null ? "—" : x.comet.framesPerWrite.toFixed(1),
      ]),
    ));
    if (roles.some((x) => x.loopLag && !x.loopLag.windowInPhase)) {
      out.push(
        "  * phase shorter than the 10 s lag window: the readings also cover time before it",
      );
    }
  }
  out.push("");
  out.push(
    `heartbeat round trip (op 2 → op 3): p50 ${ms(r.heartbeatRttMs.p50)} ms, p99 ${
      ms(r.heartbeatRttMs.p99)
    } ms over ${fmt(r.heartbeatRttMs.count)} beats; server RSS at end ${
      mib(r.server.rssEndBytes)
    }; worker RSS ${r.workers.map((w) => mib(w.rssBytes)).join(", ")}`,
  );
  if (r.warnings.length) {
    out.push("");
    out.push("Warnings:");
    for (const w of r.warnings) out.push(`  - ${w}`);
  }
  if (r.errors.length) {
    out.push("");
    out.push("ERRORS (the tool failed):");
    for (const e of r.errors) out.push(`  - ${e}`);
  }
  return out.join("\n") + "\n";
}

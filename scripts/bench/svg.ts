/**
 * The run's charts as self-contained SVG (no browser, no library):
 *
 * - {@linkcode renderChart}, one run over time: per second, delivered
 *   messages (plus connections and heartbeats when there are any) on top,
 *   push → delivery latency p50 and p99 below on a log scale, with the run's
 *   phases marked;
 * - {@linkcode renderSweepChart}, one or more runs against load: per phase,
 *   the comet's frames per socket write on top and latency p50/p99 below,
 *   against the offered messages per second, one line per report (e.g. the
 *   embedded and the distributed sweep of the same scenario).
 *
 * @module
 */

import type { BenchReport, PhaseReport, SeriesPoint } from "./run.ts";

const W = 960, H = 560;
const X0 = 80, X1 = 900;
const A = { top: 60, bottom: 270 }; // throughput panel
const B = { top: 320, bottom: 500 }; // latency panel

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/**
 * Short form of a rate: 950, 12.5k, 1.2M.
 *
 * @example
 * ```ts
 * si(760_000); // "760k"
 * ```
 */
export function si(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e6) return `${+(n / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${+(n / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  return `${+n.toFixed(a >= 10 ? 0 : 1)}`;
}

/**
 * About `count` round tick values (1, 2, 5 × 10^k steps) from 0 to ≥ max.
 *
 * @example
 * ```ts
 * niceTicks(730, 5); // [0, 200, 400, 600, 800]
 * ```
 */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = 0; v < max + step * 0.999; v += step) out.push(+v.toPrecision(12));
  return out;
}

function path(points: [number, number][]): string {
  return points.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join("");
}

/**
 * Whole decades around positive `values`: 10^floor(log min) … 10^ceil(log
 * max), or `def` when there are none.
 *
 * @example
 * ```ts
 * decades([0.4, 37], [0.1, 100]); // [0.1, 100]
 * ```
 */
export function decades(values: number[], def: [number, number]): [number, number] {
  const v = values.filter((x) => x > 0);
  if (!v.length) return def;
  const lo = 10 ** Math.floor(Math.log10(Math.min(...v)));
  return [lo, Math.max(lo * 10, 10 ** Math.ceil(Math.log10(Math.max(...v) * 1.01)))];
}

/**
 * Grid values of a log axis from `lo` to `hi`: 1, 2 and 5 × 10^k, the powers
 * of ten marked major.
 *
 * @example
 * ```ts
 * logTicks(1, 10).map((t) => t.v); // [1, 2, 5, 10]
 * ```
 */
export function logTicks(lo: number, hi: number): { v: number; major: boolean }[] {
  const out: { v: number; major: boolean }[] = [];
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = +(d * m).toPrecision(3);
      if (v > hi * 1.0001) break;
      out.push({ v, major: m === 1 });
    }
  }
  return out;
}

/** Maps [lo, hi] on a log scale onto [a, b] (pixels). */
function logScale(lo: number, hi: number, a: number, b: number): (v: number) => number {
  const l0 = Math.log10(lo), span = Math.log10(hi) - l0;
  return (v) => a + ((Math.log10(v) - l0) / span) * (b - a);
}

/** Horizontal grid lines with labels at `ticks` (`y` maps a value to pixels). */
function hGrid(ticks: { v: number; label: string; stroke: string }[], y: (v: number) => number) {
  return ticks.flatMap((t) => [
    `<line x1="${X0}" x2="${X1}" y1="${y(t.v).toFixed(1)}" y2="${
      y(t.v).toFixed(1)
    }" stroke="${t.stroke}"/>`,
    `<text x="${X0 - 6}" y="${(y(t.v) + 4).toFixed(1)}" text-anchor="end">${t.label}</text>`,
  ]);
}

/** A vertical axis title centred on a panel. */
function yTitle(p: { top: number; bottom: number }, text: string): string {
  const mid = (p.top + p.bottom) / 2;
  return `<text x="18" y="${mid}" transform="rotate(-90 18 ${mid})" text-anchor="middle">${
    esc(text)
  }</text>`;
}

/** The two panels' axes. */
function axes(): string[] {
  return [[A.top, A.bottom], [B.top, B.bottom]].flatMap(([top, bottom]) => [
    `<line x1="${X0}" x2="${X0}" y1="${top}" y2="${bottom}" stroke="#333"/>`,
    `<line x1="${X0}" x2="${X1}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`,
  ]);
}

/** An x tick of the lower panel with its label. */
function xTick(px: number, label: string): string[] {
  return [
    `<line x1="${px.toFixed(1)}" x2="${px.toFixed(1)}" y1="${B.bottom}" y2="${
      B.bottom + 4
    }" stroke="#333"/>`,
    `<text x="${px.toFixed(1)}" y="${B.bottom + 17}" text-anchor="middle">${label}</text>`,
  ];
}

/** The chart's opening: the canvas, a title and a subtitle. */
function head(title: string, subtitle: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${X0}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${X0}" y="40" fill="#555">${esc(subtitle)}</text>`,
  ];
}

/** A legend along the bottom edge: a swatch (dashed if asked) and a label each. */
function legend(items: { label: string; color: string; dash?: boolean }[]): string[] {
  const out: string[] = [];
  let lx = X0;
  for (const k of items) {
    out.push(
      k.dash
        ? `<line x1="${lx}" x2="${lx + 14}" y1="${H - 16}" y2="${
          H - 16
        }" stroke="${k.color}" stroke-width="2" stroke-dasharray="4,2"/>`
        : `<rect x="${lx}" y="${H - 18}" width="14" height="4" fill="${k.color}"/>`,
      `<text x="${lx + 18}" y="${H - 12}">${esc(k.label)}</text>`,
    );
    lx += 26 + k.label.length * 6.5;
  }
  return out;
}

/**
 * Renders the chart of a report.
 *
 * @example
 * ```ts
 * import type { BenchReport } from "./run.ts";
 * declare const report: BenchReport;
 * await Deno.writeTextFile("docs/img/bench-push.svg", renderChart(report));
 * ```
 */
export function renderChart(r: BenchReport): string {
  const s = r.series;
  const tMax = Math.max(1, ...s.map((p) => p.t), ...r.marks.map((m) => m.t1));
  const x = (t: number) => X0 + (Math.min(Math.max(t, 0), tMax) / tMax) * (X1 - X0);
  const c = r.connect;
  const out: string[] = head(
    `goim-deno bench: ${r.scenario}`,
    `${c.connected.toLocaleString("en-US")} clients (${c.tcp} TCP, ${c.ws} WS), ` +
      `${r.options.workers} workers, ${r.machine.cpus} CPUs, ${r.startedAt.slice(0, 16)}Z`,
  );

  // Phase bands and labels across both panels.
  r.marks.forEach((m, i) => {
    const fill = i % 2 ? "#f3f6fa" : "#fafafa";
    out.push(
      `<rect x="${x(m.t0).toFixed(1)}" y="${A.top}" width="${
        Math.max(0, x(m.t1) - x(m.t0)).toFixed(1)
      }" height="${B.bottom - A.top}" fill="${fill}"/>`,
      `<line x1="${x(m.t0).toFixed(1)}" x2="${
        x(m.t0).toFixed(1)
      }" y1="${A.top}" y2="${B.bottom}" ` +
        `stroke="#bbb" stroke-dasharray="3,3"/>`,
      // Short phases (connect, settle) sit side by side: alternate label rows.
      `<text x="${(x(m.t0) + 3).toFixed(1)}" y="${A.top + 12 + (i % 2) * 12}" fill="#777" ` +
        `font-size="11">${esc(m.name)}</text>`,
    );
  });

  // --- panel A: rates --------------------------------------------------------
  const rates: { key: keyof SeriesPoint; label: string; color: string; area?: boolean }[] = [
    { key: "delivered", label: "delivered msgs/s", color: "#1f77b4", area: true },
    { key: "connects", label: "connections/s", color: "#ff7f0e" },
    { key: "heartbeats", label: "heartbeat replies/s", color: "#7f7f7f" },
  ];
  const shown = rates.filter((k) => s.some((p) => (p[k.key] as number) > 0));
  const aMax = Math.max(1, ...shown.flatMap((k) => s.map((p) => p[k.key] as number)));
  const aTicks = niceTicks(aMax);
  const aTop = aTicks[aTicks.length - 1];
  const ya = (v: number) => A.bottom - (v / aTop) * (A.bottom - A.top - 18);
  out.push(...hGrid(aTicks.map((v) => ({ v, label: si(v), stroke: "#e5e5e5" })), ya));
  out.push(yTitle(A, "per second"));
  for (const k of shown) {
    const pts = s.map((p) => [x(p.t - 0.5), ya(p[k.key] as number)] as [number, number]);
    if (k.area && pts.length) {
      const area = `${path(pts)}L${pts[pts.length - 1][0].toFixed(1)},${A.bottom}L${
        pts[0][0].toFixed(1)
      },${A.bottom}Z`;
      out.push(`<path d="${area}" fill="${k.color}" fill-opacity="0.18"/>`);
    }
    out.push(`<path d="${path(pts)}" fill="none" stroke="${k.color}" stroke-width="1.6"/>`);
  }

  // --- panel B: latency (log scale) ------------------------------------------
  const [lo, hi] = decades(s.flatMap((p) => [p.p50 ?? 0, p.p99 ?? 0]), [0.1, 100]);
  const yb = logScale(lo, hi, B.bottom, B.top);
  out.push(...hGrid(logGrid(lo, hi, (v) => `${v}`), yb));
  out.push(yTitle(B, "latency ms (log)"));
  const latSeries: { key: "p50" | "p99"; label: string; color: string }[] = [
    { key: "p50", label: "latency p50", color: "#2ca02c" },
    { key: "p99", label: "latency p99", color: "#d62728" },
  ];
  for (const k of latSeries) {
    // Break the line across seconds without deliveries.
    out.push(...broken(
      s.map((p) => {
        const v = p[k.key];
        return v === null || v <= 0 ? null : [x(p.t - 0.5), yb(v)];
      }),
      k.color,
    ));
  }

  // Axes, x ticks and legend.
  out.push(...axes());
  for (const t of niceTicks(tMax, 10)) {
    if (t > tMax) break;
    out.push(...xTick(x(t), `${t}`));
  }
  out.push(
    `<text x="${(X0 + X1) / 2}" y="${
      B.bottom + 34
    }" text-anchor="middle">seconds since the first connect</text>`,
  );
  out.push(...legend([...shown, ...latSeries]), `</svg>`);
  return out.join("\n") + "\n";
}

/** The log-axis grid of {@linkcode logTicks} as {@linkcode hGrid} ticks. */
function logGrid(lo: number, hi: number, label: (v: number) => string) {
  return logTicks(lo, hi).map((t) => ({
    v: t.v,
    label: label(t.v),
    stroke: t.major ? "#ddd" : "#f0f0f0",
  }));
}

/**
 * A line through `pts`, broken at each null (a single point between breaks
 * is a dot); `dash` draws it dashed.
 */
function broken(pts: ([number, number] | null)[], color: string, dash = false): string[] {
  const out: string[] = [];
  let seg: [number, number][] = [];
  const flush = () => {
    if (seg.length === 1) {
      out.push(
        `<circle cx="${seg[0][0].toFixed(1)}" cy="${seg[0][1].toFixed(1)}" r="2" fill="${color}"/>`,
      );
    } else if (seg.length > 1) {
      out.push(
        `<path d="${path(seg)}" fill="none" stroke="${color}" stroke-width="1.6"${
          dash ? ` stroke-dasharray="5,3"` : ""
        }/>`,
      );
    }
    seg = [];
  };
  for (const p of pts) {
    if (p === null) flush();
    else seg.push(p);
  }
  flush();
  return out;
}

/** A phase's offered load: the deliveries its accepted pushes asked for, per second of window. */
export function offeredPerSec(p: PhaseReport): number {
  return p.durationMs > 0 ? p.expected / (p.durationMs / 1000) : 0;
}

/**
 * The label of a report in an overlay: its mode (and comets), scenario and
 * clients, e.g. `distributed, 2 comets — push_room, 2,000 clients`.
 */
export function reportLabel(r: BenchReport): string {
  const n = r.server.comets ?? 1;
  const mode = `${r.server.mode}${n > 1 ? `, ${n} comets` : ""}`;
  return `${mode} — ${r.scenario}, ${r.connect.connected.toLocaleString("en-US")} clients`;
}

const SWEEP_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#7f7f7f"];

/**
 * Frames per socket write against offered load, one line per report: each
 * pushing phase is a point at x = its offered messages/s (accepted pushes ×
 * the clients each reaches, per second of the window; a log axis when the
 * points span more than 10×), y = Δframes / Δwrites of the comets over the
 * phase (top) and its push → delivery latency p50 (dashed) and p99 (below,
 * log). Meant for `--sweep` runs, where every phase is one offered rate;
 * phases without comet counters are left out of the top panel.
 *
 * @example
 * ```ts
 * import type { BenchReport } from "./run.ts";
 * declare const embedded: BenchReport, distributed: BenchReport;
 * await Deno.writeTextFile("sweep.svg", renderSweepChart([embedded, distributed]));
 * ```
 */
export function renderSweepChart(reports: BenchReport[]): string {
  const lines = reports.map((r, i) => ({
    label: reportLabel(r),
    color: SWEEP_COLORS[i % SWEEP_COLORS.length],
    points: r.phases
      .filter((p) => p.kind !== "none" && offeredPerSec(p) > 0)
      .map((p) => ({
        x: offeredPerSec(p),
        fpw: p.comet?.framesPerWrite ?? null,
        p50: p.latencyMs.p50,
        p99: p.latencyMs.p99,
      }))
      .sort((a, b) => a.x - b.x),
  }));
  const xs = lines.flatMap((l) => l.points.map((p) => p.x));
  const xMin = xs.length ? Math.min(...xs) : 1, xMax = xs.length ? Math.max(...xs) : 10;
  const log = xMax > xMin * 10;
  let x: (v: number) => number;
  let xTicks: { v: number; major: boolean }[];
  if (log) {
    const [lo, hi] = decades(xs, [1, 10]);
    x = logScale(lo, hi, X0, X1);
    xTicks = logTicks(lo, hi);
  } else {
    const ticks = niceTicks(xMax * 1.05, 8);
    const top = ticks[ticks.length - 1];
    x = (v) => X0 + (v / top) * (X1 - X0);
    xTicks = ticks.map((v) => ({ v, major: true }));
  }
  const when = reports.map((r) => r.startedAt.slice(0, 16) + "Z").join(", ");
  const out = head(
    "goim-deno bench: frames per write against offered load",
    `${reports[0]?.machine.cpus ?? "?"} CPUs; ${when}`,
  );
  // Vertical grid at the x ticks, across both panels.
  for (const t of xTicks) {
    out.push(
      `<line x1="${x(t.v).toFixed(1)}" x2="${x(t.v).toFixed(1)}" y1="${A.top}" y2="${B.bottom}" ` +
        `stroke="${t.major ? "#e5e5e5" : "#f3f3f3"}"/>`,
    );
  }

  // --- panel A: frames per write (linear) -----------------------------------
  const fpws = lines.flatMap((l) => l.points.map((p) => p.fpw ?? 0));
  const aTicks = niceTicks(Math.max(1, ...fpws) * 1.25); // headroom for the legend
  const aTop = aTicks[aTicks.length - 1];
  const ya = (v: number) => A.bottom - (v / aTop) * (A.bottom - A.top - 18);
  out.push(...hGrid(aTicks.map((v) => ({ v, label: si(v), stroke: "#e5e5e5" })), ya));
  out.push(yTitle(A, "frames per write"));

  // --- panel B: latency (log) -----------------------------------------------
  const [lo, hi] = decades(
    lines.flatMap((l) => l.points.flatMap((p) => [p.p50 ?? 0, p.p99 ?? 0])),
    [
      0.1,
      100,
    ],
  );
  const yb = logScale(lo, hi, B.bottom, B.top);
  out.push(...hGrid(logGrid(lo, hi, (v) => `${v}`), yb));
  out.push(yTitle(B, "latency ms (log)"));

  for (const l of lines) {
    out.push(...broken(l.points.map((p) => p.fpw === null ? null : [x(p.x), ya(p.fpw)]), l.color));
    for (const p of l.points) {
      if (p.fpw !== null) {
        out.push(
          `<circle cx="${x(p.x).toFixed(1)}" cy="${
            ya(p.fpw).toFixed(1)
          }" r="3" fill="${l.color}"/>`,
        );
      }
    }
    out.push(
      ...broken(l.points.map((p) => p.p99 ? [x(p.x), yb(p.p99)] : null), l.color),
      ...broken(l.points.map((p) => p.p50 ? [x(p.x), yb(p.p50)] : null), l.color, true),
    );
  }

  out.push(...axes());
  for (const t of xTicks) if (t.major || !log) out.push(...xTick(x(t.v), si(t.v)));
  out.push(
    `<text x="${(X0 + X1) / 2}" y="${B.bottom + 34}" text-anchor="middle">offered msgs/s ` +
      `(accepted pushes × clients reached, per second${log ? "; log" : ""})</text>`,
  );
  // One row per report at the top left of the upper panel (labels are long).
  lines.forEach((l, i) => {
    const y = A.top + 14 + i * 16;
    out.push(
      `<rect x="${X0 + 8}" y="${y - 6}" width="14" height="4" fill="${l.color}"/>`,
      `<text x="${X0 + 28}" y="${y}">${esc(l.label)}</text>`,
    );
  });
  out.push(
    ...legend([
      { label: "latency p99 (lower panel)", color: "#555" },
      { label: "latency p50", color: "#555", dash: true },
    ]),
    `</svg>`,
  );
  return out.join("\n") + "\n";
}

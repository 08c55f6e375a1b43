/**
 * The run's chart as a self-contained SVG (no browser, no library): per
 * second, delivered messages (plus connections and heartbeats when there are
 * any) on top, push → delivery latency p50 and p99 below on a log scale,
 * with the run's phases marked.
 *
 * @module
 */

import type { BenchReport, SeriesPoint } from "./run.ts";

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
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
  );
  const c = r.connect;
  out.push(
    `<text x="${X0}" y="22" font-size="15" font-weight="bold">${
      esc(`goim-deno bench: ${r.scenario}`)
    }</text>`,
    `<text x="${X0}" y="40" fill="#555">${
      esc(
        `${c.connected.toLocaleString("en-US")} clients (${c.tcp} TCP, ${c.ws} WS), ` +
          `${r.options.workers} workers, ${r.machine.cpus} CPUs, ${r.startedAt.slice(0, 16)}Z`,
      )
    }</text>`,
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
  for (const v of aTicks) {
    out.push(
      `<line x1="${X0}" x2="${X1}" y1="${ya(v).toFixed(1)}" y2="${
        ya(v).toFixed(1)
      }" stroke="#e5e5e5"/>`,
      `<text x="${X0 - 6}" y="${(ya(v) + 4).toFixed(1)}" text-anchor="end">${si(v)}</text>`,
    );
  }
  out.push(
    `<text x="18" y="${(A.top + A.bottom) / 2}" transform="rotate(-90 18 ${
      (A.top + A.bottom) / 2
    })" text-anchor="middle">per second</text>`,
  );
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
  const lats = s.flatMap((p) => [p.p50, p.p99]).filter((v): v is number => v !== null && v > 0);
  const lo = lats.length ? 10 ** Math.floor(Math.log10(Math.min(...lats))) : 0.1;
  const hi = lats.length ? 10 ** Math.ceil(Math.log10(Math.max(...lats) * 1.01)) : 100;
  const yb = (v: number) =>
    B.bottom - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) *
      (B.bottom - B.top);
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > hi * 1.0001) break;
      out.push(
        `<line x1="${X0}" x2="${X1}" y1="${yb(v).toFixed(1)}" y2="${yb(v).toFixed(1)}" stroke="${
          m === 1 ? "#ddd" : "#f0f0f0"
        }"/>`,
        `<text x="${X0 - 6}" y="${(yb(v) + 4).toFixed(1)}" text-anchor="end">${+v.toPrecision(
          3,
        )}</text>`,
      );
    }
  }
  out.push(
    `<text x="18" y="${(B.top + B.bottom) / 2}" transform="rotate(-90 18 ${
      (B.top + B.bottom) / 2
    })" text-anchor="middle">latency ms (log)</text>`,
  );
  const latSeries: { key: "p50" | "p99"; label: string; color: string }[] = [
    { key: "p50", label: "latency p50", color: "#2ca02c" },
    { key: "p99", label: "latency p99", color: "#d62728" },
  ];
  for (const k of latSeries) {
    // Break the line across seconds without deliveries.
    let seg: [number, number][] = [];
    const flush = () => {
      if (seg.length === 1) {
        out.push(
          `<circle cx="${seg[0][0].toFixed(1)}" cy="${
            seg[0][1].toFixed(1)
          }" r="2" fill="${k.color}"/>`,
        );
      } else if (seg.length > 1) {
        out.push(`<path d="${path(seg)}" fill="none" stroke="${k.color}" stroke-width="1.6"/>`);
      }
      seg = [];
    };
    for (const p of s) {
      const v = p[k.key];
      if (v === null || v <= 0) flush();
      else seg.push([x(p.t - 0.5), yb(v)]);
    }
    flush();
  }

  // Axes, x ticks and legend.
  for (const [top, bottom] of [[A.top, A.bottom], [B.top, B.bottom]]) {
    out.push(
      `<line x1="${X0}" x2="${X0}" y1="${top}" y2="${bottom}" stroke="#333"/>`,
      `<line x1="${X0}" x2="${X1}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`,
    );
  }
  for (const t of niceTicks(tMax, 10)) {
    if (t > tMax) break;
    out.push(
      `<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${B.bottom}" y2="${
        B.bottom + 4
      }" stroke="#333"/>`,
      `<text x="${x(t).toFixed(1)}" y="${B.bottom + 17}" text-anchor="middle">${t}</text>`,
    );
  }
  out.push(
    `<text x="${(X0 + X1) / 2}" y="${
      B.bottom + 34
    }" text-anchor="middle">seconds since the first connect</text>`,
  );
  let lx = X0;
  for (const k of [...shown, ...latSeries]) {
    out.push(
      `<rect x="${lx}" y="${H - 18}" width="14" height="4" fill="${k.color}"/>`,
      `<text x="${lx + 18}" y="${H - 12}">${esc(k.label)}</text>`,
    );
    lx += 26 + k.label.length * 6.5;
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/**
 * The goim operator console's script (docs/CONSOLE.md): plain JavaScript,
 * no build step, type-checked against the DOM by the `check` task
 * (deno.browser.json sets checkJs: a `// @ts-check` or a DOM lib reference
 * here would leak the DOM's types into the repository-wide check).
 *
 * Every second it reads `GET /operator/v1/overview` with the operator key
 * (kept in this tab's sessionStorage only), updates the tiles and tables,
 * and appends a point to each chart, keeping the last 15 minutes in the page.
 * Actions (kick, drain) are POSTs to the same API, each confirmed first.
 * Values are written with textContent, never as HTML.
 *
 * @module
 */

/** Poll period, ms. */
const POLL_MS = 1000;
/** History kept in the page, ms. */
const HISTORY_MS = 15 * 60 * 1000;
const KEY_STORE = "goim-operator-key";

/** @type {any} uPlot's global, from uPlot.iife.min.js. */
const UPlot = /** @type {any} */ (globalThis).uPlot;

let key = sessionStorage.getItem(KEY_STORE) ?? "";
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer;

/** @param {string} id */
function el(id) {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`no element #${id}`);
  return e;
}

/**
 * @param {string} tag
 * @param {string} [text]
 * @param {string} [cls]
 */
function make(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/** @param {number | null | undefined} n @param {number} [digits] */
function num(n, digits = 0) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** @param {number | null | undefined} n */
function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024 * 1024) return `${num(n / 1024, 1)} KiB`;
  return `${num(n / 1024 / 1024, 1)} MiB`;
}

/** @param {Record<string, number> | undefined} o */
function sum(o) {
  return o ? Object.values(o).reduce((a, b) => a + b, 0) : 0;
}

class AuthError extends Error {}

/**
 * Calls the operator API; returns the envelope's `data`.
 * @param {"GET" | "POST"} method
 * @param {string} path
 * @returns {Promise<any>}
 */
async function api(method, path) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${key}` },
    cache: "no-store",
  });
  /** @type {any} */
  let body;
  try {
    body = await res.json();
  } catch {
    body = { message: `HTTP ${res.status}` };
  }
  if (res.status === 401) {
    showLogin("The key was refused.");
    throw new AuthError("unauthorized");
  }
  if (!res.ok) throw new Error(body.message || `HTTP ${res.status}`);
  return body.data;
}

// ---------------------------------------------------------------- charts

/**
 * One live chart: its series, its history, its uPlot.
 * @typedef {{ id: string, series: { label: string, stroke: string }[],
 *   pick: (o: any) => (number | null)[], t: number[], values: (number | null)[][],
 *   plot: any }} Chart
 */

const COLORS = ["#2f6fde", "#1f8b4c", "#b26b00", "#c0392b", "#7d3cc8"];

/** @param {string[]} labels @returns {{ label: string, stroke: string }[]} */
function series(...labels) {
  return labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length] }));
}

/** @param {any[]} list @param {(x: any) => number | null | undefined} f */
function maxOf(list, f) {
  let m = null;
  for (const x of list) {
    const v = f(x);
    if (typeof v === "number" && (m === null || v > m)) m = v;
  }
  return m;
}

/**
 * @typedef {{ id: string, series: { label: string, stroke: string }[],
 *   pick: (o: any) => (number | null)[] }} ChartDef
 */

/** @type {ChartDef[]} */
const chartDefs = [
  {
    id: "chart-connections",
    series: series("connections"),
    pick: (o) => [o.totals.connections],
  },
  {
    id: "chart-pushes",
    series: series("keys", "mids", "room", "all"),
    pick: (o) => {
      const p = o.rates?.pushes_in;
      return p ? [p.keys, p.mids, p.room, p.all] : [null, null, null, null];
    },
  },
  {
    id: "chart-frames",
    series: series("frames out"),
    pick: (o) => [o.rates ? o.rates.frames_out : null],
  },
  {
    id: "chart-drops",
    series: series("dropped", "slow consumers"),
    pick: (o) =>
      o.rates ? [sum(o.rates.dropped), o.rates.disconnects.slow_consumer ?? 0] : [null, null],
  },
  {
    id: "chart-queue",
    series: series("lag"),
    pick: (o) => [o.queue.lag],
  },
  {
    id: "chart-latency",
    series: series("p50", "p99"),
    pick: (o) => (o.latency_ms ? [o.latency_ms.p50, o.latency_ms.p99] : [null, null]),
  },
  {
    id: "chart-loop",
    series: series("logic", "job", "comets (worst)"),
    pick: (o) => [
      o.logic_loop_lag_ms?.p99 ?? null,
      maxOf(o.jobs, (j) => j.loop_lag_ms?.p99),
      maxOf(o.comets, (c) => c.loop_lag_ms?.p99),
    ],
  },
];

/** @type {Chart[]} */
const charts = chartDefs.map((c) => ({ ...c, t: [], values: c.series.map(() => []), plot: null }));

/** @param {Chart} c */
function plotOf(c) {
  const box = el(c.id);
  const opts = {
    width: Math.max(300, box.clientWidth - 8),
    height: 170,
    legend: { live: false },
    cursor: { show: false },
    scales: { x: { time: true } },
    series: [{}, ...c.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5 }))],
    axes: [{}, { size: 60 }],
  };
  return new UPlot(opts, [c.t, ...c.values], box);
}

/** @param {any} o the overview */
function pushPoint(o) {
  const cutoff = (o.at - HISTORY_MS) / 1000;
  for (const c of charts) {
    const vals = c.pick(o);
    c.t.push(o.at / 1000);
    vals.forEach((v, i) => c.values[i].push(v));
    while (c.t.length > 0 && c.t[0] < cutoff) {
      c.t.shift();
      for (const v of c.values) v.shift();
    }
    c.plot ??= plotOf(c);
    c.plot.setData([c.t, ...c.values]);
    const box = el(c.id);
    // For people and tests alike: the newest values and how many points there are.
    box.dataset.last = JSON.stringify(vals);
    box.dataset.points = String(c.t.length);
  }
}

globalThis.addEventListener("resize", () => {
  for (const c of charts) {
    c.plot?.setSize({ width: Math.max(300, el(c.id).clientWidth - 8), height: 170 });
  }
});

// ---------------------------------------------------------------- tables

/**
 * @param {string} id
 * @param {(Node | string)[][]} rows
 */
function fill(id, rows) {
  const body = el(id).querySelector("tbody");
  if (!body) return;
  body.replaceChildren(...rows.map((cells) => {
    const tr = make("tr");
    for (const c of cells) {
      const td = make("td");
      if (typeof c === "string") td.textContent = c;
      else td.append(c);
      tr.append(td);
    }
    return tr;
  }));
}

/** @param {string} label @param {() => void} onClick @param {string} [testid] */
function button(label, onClick, testid) {
  const b = /** @type {HTMLButtonElement} */ (make("button", label, "danger"));
  b.type = "button";
  if (testid) b.dataset.testid = testid;
  b.addEventListener("click", onClick);
  return b;
}

/** @param {string} text @param {boolean} [error] */
function note(text, error = false) {
  const n = el("sessions-note");
  n.textContent = text;
  n.className = error ? "error" : "";
}

/** @param {any} o */
function render(o) {
  el("mode").textContent = o.mode;
  el("total-connections").textContent = num(o.totals.connections);
  el("total-ips").textContent = num(o.totals.ips);
  const s = o.totals.comets;
  el("comet-states").textContent = `${s.up} / ${s.draining} / ${s.down + s.drained}`;
  const p = o.rates?.pushes_in;
  el("pushes-in").textContent = p ? num(p.keys + p.mids + p.room + p.all, 1) : "–";
  el("frames-out").textContent = o.rates ? num(o.rates.frames_out, 1) : "–";
  el("queue-lag").textContent = num(o.queue.lag);
  el("latency").textContent = o.latency_ms
    ? `${num(o.latency_ms.p50, 2)} / ${num(o.latency_ms.p99, 2)}`
    : "–";
  el("drops").textContent = o.rates
    ? num(sum(o.rates.dropped) + (o.rates.disconnects.slow_consumer ?? 0), 1)
    : "–";

  fill(
    "comets",
    o.comets.map((/** @type {any} */ c) => {
      const state = make("span", c.state, `state-${c.state}`);
      if (c.error) state.title = c.error;
      const action = c.state === "up" && c.reachable
        ? button("Drain", () => drain(c.id), `drain-${c.id}`)
        : "";
      return [
        c.id,
        state,
        num(c.connections),
        num(c.ips),
        num(c.rooms),
        num(c.frames_out_per_s, 1),
        num(c.loop_lag_ms?.p99, 1),
        bytes(c.rss_bytes),
        bytes(c.queued_bytes),
        action,
      ];
    }),
  );
  for (const row of el("comets").querySelectorAll("tbody tr")) {
    row.setAttribute("data-comet", row.firstElementChild?.textContent ?? "");
  }

  fill(
    "rooms",
    o.top_rooms.map((/** @type {any} */ r) => [
      r.room,
      num(r.count),
      button("Members", () => members(r.room)),
    ]),
  );

  /** @type {string[][]} */
  const reasons = [];
  if (o.rates) {
    for (const [k, v] of Object.entries(o.rates.disconnects)) {
      if (/** @type {number} */ (v) > 0) {
        reasons.push(["disconnect", k, num(/** @type {number} */ (v), 2)]);
      }
    }
    for (const [k, v] of Object.entries(o.rates.dropped)) {
      if (/** @type {number} */ (v) > 0) {
        reasons.push(["drop", k, num(/** @type {number} */ (v), 2)]);
      }
    }
  }
  fill("reasons", reasons.length ? reasons : [["–", "none in the last second", "0"]]);

  fill(
    "jobs",
    o.jobs.map((/** @type {any} */ j) => [
      j.name,
      j.reachable ? "yes" : `no: ${j.error ?? ""}`,
      num(j.lag),
      num(j.loop_lag_ms?.p99, 1),
    ]),
  );
  pushPoint(o);
}

// ---------------------------------------------------------------- actions

/** @param {string} id */
async function drain(id) {
  const deadline = /** @type {HTMLInputElement} */ (el("drain-deadline")).value.trim();
  const spread = /** @type {HTMLInputElement} */ (el("drain-spread")).value.trim();
  if (
    !confirm(
      `Drain ${id}? Its clients are asked to reconnect elsewhere over ${spread}; it leaves the registry when empty or after ${deadline}. It cannot be undone (restart the comet).`,
    )
  ) return;
  const q = new URLSearchParams({ comet: id, deadline, spread });
  try {
    const r = await api("POST", `/operator/v1/drain?${q}`);
    el("status").textContent = `${id}: ${r.state}, ${r.connections} connections left`;
  } catch (e) {
    if (!(e instanceof AuthError)) el("status").textContent = `drain ${id} failed: ${e}`;
  }
}

/** @param {string} room */
async function members(room) {
  const [type, id] = room.split("://");
  const detail = el("room-detail");
  try {
    const r = await api(
      "GET",
      `/operator/v1/room?${new URLSearchParams({ type, room: id, sample: "20" })}`,
    );
    const list = make("ul");
    for (const k of r.keys) {
      const li = make("li", `${k} `);
      li.append(button("Kick", () => kick("keys", k)));
      list.append(li);
    }
    detail.replaceChildren(
      make("p", `${room}: ${num(r.live_count)} members now (sample of ${r.keys.length})`),
      list,
    );
  } catch (e) {
    if (!(e instanceof AuthError)) detail.replaceChildren(make("p", `room ${room}: ${e}`, "error"));
  }
}

/** @param {"mids" | "keys"} by @param {string} value */
async function kick(by, value) {
  if (
    !confirm(
      `Kick ${
        by === "mids" ? "every connection of mid" : "key"
      } ${value}? The client gets op 6 reason 4008.`,
    )
  ) return;
  const reason = /** @type {HTMLInputElement} */ (el("kick-reason")).value.trim();
  try {
    const r = await api(
      "POST",
      `/operator/v1/kick?${new URLSearchParams({ [by]: value, reason })}`,
    );
    note(
      `kicked ${r.kicked} connection(s)${
        r.errors.length
          ? `; failed on ${r.errors.map((/** @type {any} */ x) => x.comet).join(", ")}`
          : ""
      }`,
    );
    await lookup();
  } catch (e) {
    if (!(e instanceof AuthError)) note(`kick failed: ${e}`, true);
  }
}

async function lookup() {
  const by =
    /** @type {"mids" | "keys"} */ (/** @type {HTMLSelectElement} */ (el("lookup-by")).value);
  const value = /** @type {HTMLInputElement} */ (el("lookup-value")).value.trim();
  const all = el("kick-all");
  if (value === "") return;
  try {
    const r = await api("GET", `/operator/v1/sessions?${new URLSearchParams({ [by]: value })}`);
    fill(
      "sessions",
      r.sessions.map((/** @type {any} */ s) => [
        s.key,
        String(s.mid),
        s.comet,
        s.ip,
        s.room || "–",
        s.transport,
        new Date(s.connected_at_ms).toLocaleString(),
        button("Kick", () => kick("keys", s.key), `kick-${s.key}`),
      ]),
    );
    all.hidden = by !== "mids" || r.sessions.length === 0;
    all.onclick = () => kick("mids", value);
    const extra = r.errors.length
      ? `; comets not answering: ${r.errors.map((/** @type {any} */ x) => x.comet).join(", ")}`
      : "";
    if (!el("sessions-note").textContent?.startsWith("kicked")) {
      note(`${r.sessions.length} session(s)${extra}`);
    }
  } catch (e) {
    if (!(e instanceof AuthError)) note(`lookup failed: ${e}`, true);
  }
}

// ---------------------------------------------------------------- loop

/** @param {string} [error] */
function showLogin(error = "") {
  clearTimeout(timer);
  el("main").hidden = true;
  el("logout").hidden = true;
  el("login").hidden = false;
  el("login-error").textContent = error;
  el("status").textContent = "key needed";
}

async function poll() {
  try {
    const o = await api("GET", "/operator/v1/overview");
    el("main").hidden = false;
    el("login").hidden = true;
    el("logout").hidden = false;
    render(o);
    el("status").textContent = `updated ${new Date(o.at).toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof AuthError) return;
    el("status").textContent = `cannot read the overview: ${e}`;
  }
  timer = setTimeout(poll, POLL_MS);
}

el("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  key = /** @type {HTMLInputElement} */ (el("key")).value.trim();
  sessionStorage.setItem(KEY_STORE, key);
  void poll();
});
el("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORE);
  key = "";
  showLogin();
});
el("lookup").addEventListener("submit", (ev) => {
  ev.preventDefault();
  note("");
  void lookup();
});

void poll();

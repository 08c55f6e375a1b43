/**
 * The bench tool (scripts/bench/): its pure parts (histogram, body codec,
 * layout, comet spread, CLI with `sustained` and `--sweep`, metrics and lag
 * parsing, charts) and three tiny real runs — an embedded server child with
 * 20 clients over two phases, a `sustained` mix of room and mid pushes with
 * 50 clients, and a distributed cluster of two comets that the swarm must
 * span — that must deliver and measure. Figures are never asserted: only
 * that the tool works.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  bucketOf,
  bucketValue,
  HIST_BUCKETS,
  LatencyHistogram,
} from "../scripts/bench/histogram.ts";
import { cometsOf, encodeBody, parseBody, transportOf } from "../scripts/bench/wire.ts";
import {
  type BenchOptions,
  type BenchReport,
  byLabel,
  phaseLag,
  runBench,
  slices,
  sumMetrics,
  transportCounts,
} from "../scripts/bench/run.ts";
import {
  distributedTarget,
  helpText,
  parseCli,
  parseDurationArg,
  parseRates,
  parseRender,
  UsageError,
} from "../scripts/bench/main.ts";
import { startDistributedOn } from "./e2e/cluster.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { redisTestUrl } from "./redis_env.ts";

const kafka = await kafkaTestBrokers();
const redis = await redisTestUrl();
import {
  decades,
  logTicks,
  niceTicks,
  renderChart,
  renderSweepChart,
} from "../scripts/bench/svg.ts";
import { summarize } from "../scripts/bench/report.ts";

Deno.test("bench histogram: buckets, percentiles and merging through the wire form", () => {
  for (const v of [0.002, 0.5, 1, 4.9, 37, 1234, 60_000]) {
    const back = bucketValue(bucketOf(v));
    assert.ok(Math.abs(back - v) / v < 0.025, `${v} → ${back}`);
  }
  assert.equal(bucketOf(-3), 0);
  assert.equal(bucketOf(1e12), HIST_BUCKETS - 1);

  const a = new LatencyHistogram(), b = new LatencyHistogram();
  for (let i = 1; i <= 1000; i++) (i % 2 ? a : b).record(i / 10); // 0.1 … 100 ms
  const m = new LatencyHistogram();
  m.mergeWire(JSON.parse(JSON.stringify(a.toWire())));
  m.mergeWire(JSON.parse(JSON.stringify(b.toWire())));
  const s = m.summary();
  assert.equal(s.count, 1000);
  assert.equal(s.min, 0.1);
  assert.equal(s.max, 100);
  assert.ok(Math.abs(s.p50! - 50) < 50 * 0.03, `p50 ${s.p50}`);
  assert.ok(Math.abs(s.p99! - 99) < 99 * 0.03, `p99 ${s.p99}`);
  assert.ok(s.p999! <= 100 && s.p999! >= 97);
  assert.equal(new LatencyHistogram().summary().p50, null);
});

Deno.test("bench body: send time and phase survive encode → parse, padding honoured", () => {
  const out: { t: number; p: number } = { t: 0, p: 0 };
  const t = 1764085014970.123;
  assert.ok(parseBody(encodeBody(t, 3, 99), out));
  assert.ok(Math.abs(out.t - t) < 1e-6);
  assert.equal(out.p, 3);
  const padded = encodeBody(t, 12, 1, 200);
  assert.equal(padded.length, 200);
  assert.doesNotThrow(() => JSON.parse(new TextDecoder().decode(padded)));
  assert.ok(parseBody(padded, out));
  assert.equal(out.p as number, 12);
  assert.equal(parseBody(new TextEncoder().encode('{"test":1}'), out), false);
});

Deno.test("bench layout: ws ratio is exact and interleaved, slices cover every client", () => {
  assert.deepEqual(transportCounts(200, 0.5), { tcp: 100, ws: 100 });
  assert.deepEqual(transportCounts(1000, 0.25), { tcp: 750, ws: 250 });
  assert.deepEqual(transportCounts(10, 0), { tcp: 10, ws: 0 });
  assert.deepEqual(transportCounts(10, 1), { tcp: 0, ws: 10 });
  // Each half of the swarm gets its share.
  let ws = 0;
  for (let i = 0; i < 100; i++) if (transportOf(i, 0.5) === "ws") ws++;
  assert.equal(ws, 50);
  assert.deepEqual(slices(10, 3), [[0, 4], [4, 7], [7, 10]]);
});

Deno.test("bench layout: --room-layout pinned puts each room's members on one comet", () => {
  const at = cometsOf({ runId: "x", midBase: 0, wsRatio: 0.5, rooms: 6, pinned: true }, 600, 4);
  const cometsOfRoom = new Map<number, Set<number>>();
  at.forEach((c, i) => {
    const room = i % 6;
    if (!cometsOfRoom.has(room)) cometsOfRoom.set(room, new Set());
    cometsOfRoom.get(room)!.add(c);
  });
  for (const [room, comets] of cometsOfRoom) {
    assert.deepEqual([...comets], [room % 4], `room ${room}`);
  }
  assert.throws(() => parseCli(["push_rooms", "--room-layout", "zigzag"]), /spread or pinned/);
  assert.equal(parseCli(["push_rooms", "--room-layout", "pinned"]).options.roomLayout, "pinned");
});

Deno.test("bench layout: clients spread over comets so rooms and transports span them all", () => {
  const layout = (wsRatio: number, rooms: number) => ({ runId: "x", midBase: 0, wsRatio, rooms });
  for (
    const [wsRatio, rooms, clients, comets] of [
      [0.5, 1, 1000, 2],
      [0.5, 100, 3000, 3],
      [0.25, 100, 2000, 2],
      [0, 1, 15_000, 4],
      [0.5, 4, 200, 2],
    ]
  ) {
    const at = cometsOf(layout(wsRatio, rooms), clients, comets);
    const per = new Array(comets).fill(0), perWs = new Array(comets).fill(0);
    const span = Array.from({ length: rooms }, () => new Set<number>());
    for (let i = 0; i < clients; i++) {
      per[at[i]]++;
      if (transportOf(i, wsRatio) === "ws") perWs[at[i]]++;
      span[i % rooms].add(at[i]);
    }
    const label = `ws ${wsRatio}, ${rooms} rooms, ${clients} clients, ${comets} comets`;
    assert.ok(Math.max(...per) - Math.min(...per) <= 1, `${label}: ${per}`);
    assert.ok(Math.max(...perWs) - Math.min(...perWs) <= 1, `${label}: ws ${perWs}`);
    assert.ok(span.every((s) => s.size === comets), `${label}: every room on every comet`);
  }
  // A worker computes only up to its slice's end: the prefix is the same.
  const full = cometsOf(layout(0.5, 3), 100, 3);
  assert.deepEqual(cometsOf(layout(0.5, 3), 40, 3), full.slice(0, 40));
  assert.deepEqual([...cometsOf(layout(0.5, 1), 6, 2)], [0, 1, 1, 0, 0, 1]);
});

Deno.test("bench CLI: scenarios, flags, durations, usage errors", () => {
  const c = parseCli(["push", "--rate", "1000", "--duration=10s", "--by", "mids", "--clients=300"]);
  assert.equal(c.options.phases.length, 1);
  assert.equal(c.options.phases[0].kind, "mids");
  assert.equal(c.options.phases[0].rate, 1000);
  assert.equal(c.options.phases[0].durationMs, 10_000);
  assert.equal(c.options.workers, 2);
  assert.equal(parseCli(["published"]).options.workers, 3);
  assert.equal(parseCli(["smoke"]).options.phases.length, 5);
  assert.equal(parseCli(["push_room", "--out", "x/y.json"]).out, "x/y");
  assert.equal(parseDurationArg("500ms"), 500);
  assert.equal(parseDurationArg("2m"), 120_000);
  assert.equal(parseDurationArg("3"), 3000);
  const ext = parseCli([
    "push",
    "--http",
    "http://127.0.0.1:3111/",
    "--tcp",
    "127.0.0.1:3101",
    "--ws",
    "ws://127.0.0.1:3102/sub",
    "--server-pid",
    "42",
  ]).options.external!;
  assert.deepEqual(ext, {
    http: "http://127.0.0.1:3111",
    tcp: "tcp://127.0.0.1:3101",
    ws: "ws://127.0.0.1:3102/sub",
    serverPid: 42,
  });
  assert.throws(() => parseCli(["nope"]), UsageError);
  assert.throws(() => parseCli(["push", "--bogus", "1"]), UsageError);
  assert.throws(() => parseCli(["push", "--tcp", "127.0.0.1:1"]), UsageError);
  assert.throws(() => parseDurationArg("soon"), UsageError);
  assert.deepEqual(parseCli(["push", "--mode", "distributed", "--comets", "2"]).distributed, {
    comets: 2,
    cpuProfDir: undefined,
  });
  assert.equal(parseCli(["push"]).distributed, undefined);
  assert.throws(() => parseCli(["push", "--mode", "cluster"]), UsageError);
  assert.throws(() => parseCli(["push", "--comets", "2"]), UsageError);
  assert.throws(() => parseCli(["push", "--mode", "distributed", "--comets", "0"]), UsageError);
  assert.throws(
    () => parseCli(["push", "--mode", "distributed", "--http", "http://127.0.0.1:1"]),
    UsageError,
  );
});

Deno.test("bench CLI: sustained (room + mid drivers at once) and its rate flags", () => {
  const d = parseCli(["sustained"]).options;
  assert.equal(d.clients, 15_000);
  assert.equal(d.wsRatio, 0);
  assert.equal(d.rooms, 1);
  assert.equal(d.workers, 3);
  assert.deepEqual(d.phases, [{
    name: "sustained",
    kind: "mix",
    rate: 220,
    durationMs: 60_000,
    drivers: [{ kind: "room", rate: 20 }, { kind: "mids", rate: 200 }],
  }]);
  const c = parseCli([
    "sustained",
    "--room-rate=5",
    "--mid-rate",
    "50",
    "--duration",
    "2s",
    "--clients",
    "50",
    "--mode",
    "distributed",
    "--comets",
    "2",
  ]);
  assert.deepEqual(c.options.phases[0].drivers, [
    { kind: "room", rate: 5 },
    { kind: "mids", rate: 50 },
  ]);
  assert.equal(c.options.phases[0].durationMs, 2000);
  assert.deepEqual(c.distributed, { comets: 2, cpuProfDir: undefined });
  assert.throws(() => parseCli(["push_room", "--room-rate", "5"]), /sustained/);
  assert.throws(() => parseCli(["sustained", "--rate", "5"]), /--room-rate/);
  assert.throws(() => parseCli(["sustained", "--sweep", "5,10"]), /one push phase/);
  assert.match(helpText(), /--room-rate[\s\S]*--mid-rate[\s\S]*--sweep/);
  assert.match(helpText(), /sustained .*\n.*room 20\/s \+ mids 200\/s/);
});

Deno.test("bench CLI: --sweep is one phase per rate; render overlays several reports", () => {
  const c = parseCli(["push_room", "--sweep", "10, 20,40", "--duration", "5s"]);
  assert.deepEqual(
    c.options.phases.map((p) => [p.name, p.kind, p.rate, p.durationMs]),
    [
      ["push room @10/s", "room", 10, 5000],
      ["push room @20/s", "room", 20, 5000],
      ["push room @40/s", "room", 40, 5000],
    ],
  );
  assert.deepEqual(c.options.sweep, [10, 20, 40]);
  assert.equal(parseCli(["push_room"]).options.sweep, undefined);
  assert.equal(parseCli(["push", "--by", "mids", "--sweep", "100"]).options.phases[0].kind, "mids");
  assert.deepEqual(parseRates("1_000,2000"), [1000, 2000]);
  for (const bad of ["", "10,x", "0", "-5", "10,,"]) {
    assert.throws(() => parseRates(bad), UsageError, bad);
  }
  assert.throws(() => parseRates(Array(51).fill(1).join(",")), /at most 50/);
  assert.throws(() => parseCli(["client", "--sweep", "10"]), /one push phase/);
  assert.throws(() => parseCli(["smoke", "--sweep", "10"]), /one push phase/);
  assert.throws(() => parseCli(["push_room", "--sweep", "10", "--rate", "5"]), /drop --rate/);

  assert.deepEqual(parseRender(["a.json"]), { files: ["a.json"], chart: "time", svg: "a.svg" });
  assert.deepEqual(parseRender(["x/a.json", "b.json"]), {
    files: ["x/a.json", "b.json"],
    chart: "sweep",
    svg: "x/a.sweep.svg",
  });
  assert.deepEqual(parseRender(["a.json", "--chart", "sweep", "--svg", "s.svg"]), {
    files: ["a.json"],
    chart: "sweep",
    svg: "s.svg",
  });
  assert.throws(() => parseRender([]), UsageError);
  assert.throws(() => parseRender(["a.json", "b.json", "--chart", "time"]), UsageError);
  assert.throws(() => parseRender(["a.json", "--chart", "bar"]), UsageError);
  assert.throws(() => parseRender(["a.json", "--svg"]), UsageError);
});

Deno.test("bench metrics: Prometheus samples summed over label sets", () => {
  const text = [
    "# HELP goim_comet_writes_total writes",
    'goim_comet_writes_total{transport="tcp"} 10',
    'goim_comet_writes_total{transport="ws"} 5',
    "goim_comet_frames_out_total 7",
    "goim_comet_writes_totalx 100",
  ].join("\n");
  assert.deepEqual(
    sumMetrics(text, ["goim_comet_writes_total", "goim_comet_frames_out_total"]),
    { goim_comet_writes_total: 15, goim_comet_frames_out_total: 7 },
  );
  assert.deepEqual(niceTicks(730, 5), [0, 200, 400, 600, 800]);
  assert.deepEqual(
    byLabel(
      [
        "# TYPE goim_event_loop_lag_seconds gauge",
        'goim_event_loop_lag_seconds{stat="p50"} 0.0001',
        'goim_event_loop_lag_seconds{stat="p99"} 0.0125',
        'goim_event_loop_lag_seconds{stat="max"} 0.25',
        'goim_event_loop_lag_seconds_other{stat="max"} 9',
      ].join("\n"),
      "goim_event_loop_lag_seconds",
      "stat",
    ),
    { p50: 0.0001, p99: 0.0125, max: 0.25 },
  );
  assert.deepEqual(decades([0.4, 37], [0.1, 100]), [0.1, 100]);
  assert.deepEqual(logTicks(1, 100).map((t) => t.v), [1, 2, 5, 10, 20, 50, 100]);
});

Deno.test("bench lag: a phase's readings are those a whole window into it, else all of it", () => {
  const r = (p99: number, max: number) => ({ p99, max });
  const readings: [number, { p99: number; max: number }][] = [
    [500, r(90, 900)], // before the phase
    [2_000, r(50, 500)], // its window reaches back before the phase
    [11_000, r(3, 9)],
    [12_000, r(4, 6)],
    [30_000, r(70, 700)], // after it
  ];
  assert.deepEqual(phaseLag(readings, 1000, 20_000), {
    p99Ms: 4,
    maxMs: 9,
    samples: 2,
    windowInPhase: true,
  });
  assert.deepEqual(phaseLag(readings, 1000, 5_000), {
    p99Ms: 50,
    maxMs: 500,
    samples: 1,
    windowInPhase: false,
  });
  assert.equal(phaseLag(readings, 40_000, 50_000), null);
});

Deno.test({
  name: "bench tool: a tiny real run delivers, measures latency, and leaves nothing running",
  // Spawns processes and sockets; a small, bounded run (≈ 5–8 s).
  fn: async () => {
    const report = await runBench({
      scenario: "test",
      clients: 20,
      wsRatio: 0.5,
      workers: 2,
      rooms: 2,
      phases: [
        { name: "keys", kind: "keys", rate: 50, durationMs: 1000 },
        { name: "room", kind: "room", rate: 10, durationMs: 1000 },
      ],
      heartbeatMs: 30_000,
      connectConcurrency: 20,
      authTimeoutMs: 10_000,
      bodyBytes: 0,
      keysPerPush: 1,
      inflight: 16,
      drainMs: 3000,
      settleMs: 200,
      serverSet: [],
    });
    assert.deepEqual(report.errors, [], summarize(report));
    assert.equal(report.connect.connected, 20);
    assert.equal(report.connect.tcp, 10);
    assert.equal(report.connect.ws, 10);
    assert.equal(report.phases.length, 2);
    for (const p of report.phases) {
      assert.ok(p.pushes && p.pushes.ok > 0, `${p.name}: pushes accepted`);
      assert.ok(p.delivered > 0, `${p.name}: delivered`);
      assert.ok(p.expected > 0);
      for (const q of [p.latencyMs.p50, p.latencyMs.p99, p.latencyMs.p999]) {
        assert.ok(q !== null && q > 0, `${p.name}: latency percentile present`);
      }
    }
    assert.ok(report.workers.every((w) => w.exitCode === 0), "workers exited cleanly");
    assert.ok(report.server.pid !== null && report.server.rssBeforeBytes !== null);
    assert.ok(report.series.length > 0);
    const [server] = report.phases[0].roles!;
    assert.equal(server.name, "server", "the embedded process is the one role");
    assert.ok(server.loopLag !== null, "loop lag read from the comet's admin /metrics");
    assert.ok(report.phases.every((p) => p.comet !== null), "frames per write known");
    const svg = renderChart(report);
    assert.match(svg, /^<svg [^>]*>/);
    assert.match(svg, /<\/svg>\n$/);
    assert.match(summarize(report), /Phases/);
    // The sweep chart takes any reports: one line (and its legend row) each.
    const other = {
      ...report,
      server: { ...report.server, mode: "distributed" as const, comets: 2 },
    };
    const sweep = renderSweepChart([report, other]);
    assert.match(sweep, /^<svg [^>]*>[\s\S]*<\/svg>\n$/);
    assert.match(sweep, /frames per write against offered load/);
    assert.match(sweep, /embedded — test, 20 clients/);
    assert.match(sweep, /distributed, 2 comets — test, 20 clients/);
  },
});

/** Options of a tiny run: `overrides` on top of small, quick defaults. */
function tiny(overrides: Partial<BenchOptions>): BenchOptions {
  return {
    scenario: "test",
    clients: 20,
    wsRatio: 0.5,
    workers: 2,
    rooms: 1,
    phases: [],
    heartbeatMs: 30_000,
    connectConcurrency: 50,
    authTimeoutMs: 10_000,
    bodyBytes: 0,
    keysPerPush: 1,
    inflight: 16,
    drainMs: 5000,
    settleMs: 200,
    serverSet: [],
    ...overrides,
  };
}

/** Asserts each of a mix phase's drivers delivered and has latency of its own. */
function assertDrivers(phase: BenchReport["phases"][number], kinds: string[]): void {
  assert.deepEqual(phase.drivers?.map((d) => d.kind), kinds);
  let delivered = 0;
  for (const d of phase.drivers!) {
    assert.ok(d.pushes.ok > 0 && d.delivered > 0, `${d.kind}: pushed and delivered`);
    assert.ok(d.latencyMs.p50 !== null && d.latencyMs.p99 !== null, `${d.kind}: latency`);
    delivered += d.delivered;
  }
  assert.equal(phase.delivered, delivered, "the phase is the sum of its drivers");
  assert.equal(phase.pushes!.sent, phase.drivers!.reduce((x, d) => x + d.pushes.sent, 0));
}

Deno.test({
  name: "bench tool: sustained pushes room and mids at once, each timed, loop lag per phase",
  // One embedded server child, two workers, 50 clients, a 2 s phase (≈ 5 s).
  fn: async () => {
    const cli = parseCli([
      "sustained",
      "--clients",
      "50",
      "--duration",
      "2s",
      "--room-rate",
      "10",
      "--mid-rate",
      "50",
      "--settle",
      "200ms",
    ]);
    const report = await runBench(cli.options);
    assert.deepEqual(report.errors, [], summarize(report));
    assert.equal(report.connect.connected, 50);
    const [p] = report.phases;
    assert.equal(p.kind, "mix");
    assertDrivers(p, ["room", "mids"]);
    assert.equal(p.drivers![0].expected, p.drivers![0].pushes.ok * 50, "a room push reaches all");
    assert.equal(p.drivers![1].expected, p.drivers![1].pushes.ok, "a mid push reaches one");
    assert.ok(p.roles![0].loopLag !== null, "the server's loop lag");
    assert.ok(report.series.some((s) => s.loopLagMs?.server), "lag in the series");
    const text = summarize(report);
    assert.match(text, /Drivers of phases that push several ways at once/);
    assert.match(text, /sustained +room /);
    assert.match(text, /sustained +mids /);
    assert.match(text, /lag p99 +lag max/);
  },
});

Deno.test({
  name: "bench tool: distributed mode spans every comet, measures every role, stops them all",
  ignore: kafka.ignore || redis.ignore,
  // Role processes and swarm workers; bounded (≈ 15 s, most of it startup).
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await startDistributedOn({ kafka, redis }, { comets: 2 });
    const pids = [cluster.logic, cluster.job, ...cluster.cometProcs].map((p) => p.pid!);
    try {
      const report = await runBench(tiny({
        phases: [{
          name: "mix",
          kind: "mix",
          rate: 30,
          durationMs: 1500,
          drivers: [{ kind: "room", rate: 10 }, { kind: "mids", rate: 20 }],
        }],
        external: distributedTarget(cluster),
      }));
      assert.deepEqual(report.errors, [], summarize(report));
      assert.equal(report.server.mode, "distributed");
      assert.deepEqual(report.connect.perComet, [10, 10], "the swarm spread over both comets");
      const [p] = report.phases;
      assertDrivers(p, ["room", "mids"]);
      assert.deepEqual(p.roles?.map((r) => r.name), ["logic", "job", "comet-0", "comet-1"]);
      assert.deepEqual(p.roles?.map((r) => r.pid), pids);
      for (const r of p.roles!) {
        assert.ok(r.cores !== null && r.rssBytes !== null, r.name);
        assert.ok(r.loopLag !== null, `${r.name}: loop lag from its admin /metrics`);
      }
      for (const r of p.roles!.slice(2)) {
        assert.ok(r.comet && r.comet.frames > 0, `${r.name} wrote frames: the room spans it`);
      }
      assert.ok(p.comet !== null && p.comet.frames >= p.roles![2].comet!.frames, "comets summed");
      assert.match(summarize(report), /Server processes per phase/);
    } finally {
      await cluster.stop();
    }
    for (const pid of pids) {
      assert.equal(await Deno.stat(`/proc/${pid}`).then(() => true, () => false), false, `${pid}`);
    }
  },
});

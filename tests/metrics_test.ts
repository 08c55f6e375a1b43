import assert from "node:assert/strict";
import { Registry } from "prom-client";
import {
  createMetrics,
  exponentialBuckets,
  METRICS_CONTENT_TYPE,
  metricsResponse,
  metricsText,
  processMetrics,
} from "../infra/metrics.ts";

Deno.test("counters, gauges and histograms appear in the text exposition", async () => {
  const m = createMetrics("comet");
  const frames = m.counter("frames_sent_total", "Frames written to clients.", ["transport"]);
  frames.inc({ transport: "tcp" }, 3);
  frames.inc({ transport: "ws" });
  const conns = m.gauge("connections", "Open client connections.");
  conns.set(42);
  assert.deepEqual(exponentialBuckets(0.001, 10, 3), [0.001, 0.01, 0.1]);
  const lat = m.histogram("push_seconds", "Push latency.", [0.001, 0.01, 0.1]);
  lat.observe(0.005);
  lat.observe(0.5);
  const text = await m.text();
  for (
    const line of [
      "# HELP goim_comet_frames_sent_total Frames written to clients.",
      "# TYPE goim_comet_frames_sent_total counter",
      'goim_comet_frames_sent_total{transport="tcp"} 3',
      'goim_comet_frames_sent_total{transport="ws"} 1',
      "# TYPE goim_comet_connections gauge",
      "goim_comet_connections 42",
      "# TYPE goim_comet_push_seconds histogram",
      'goim_comet_push_seconds_bucket{le="0.001"} 0',
      'goim_comet_push_seconds_bucket{le="0.01"} 1',
      'goim_comet_push_seconds_bucket{le="+Inf"} 2',
      "goim_comet_push_seconds_sum 0.505",
      "goim_comet_push_seconds_count 2",
    ]
  ) {
    assert.ok(text.split("\n").includes(line), `missing line ${line}:\n${text}`);
  }
});

Deno.test("a gauge's collect callback runs at scrape time", async () => {
  const m = createMetrics("logic");
  let size = 0;
  m.gauge("routes", "Session routes held.", [], (g) => g.set(size));
  size = 7;
  assert.match(await m.text(), /^goim_logic_routes 7$/m);
});

Deno.test("roles have separate registries; the same short name never clashes", async () => {
  const comet = createMetrics("comet");
  const job = createMetrics("job");
  comet.counter("pushes_total", "Pushes.").inc();
  job.counter("pushes_total", "Pushes.").inc(2);
  const text = await metricsText(comet, job);
  assert.match(text, /^goim_comet_pushes_total 1$/m);
  assert.match(text, /^goim_job_pushes_total 2$/m);
  // A role started twice in one process (tests) starts from zero.
  assert.equal((await createMetrics("comet").text()).trim(), "");
});

Deno.test("defining a name again returns the same metric; a conflicting one throws", () => {
  const m = createMetrics("job");
  const a = m.counter("drops_total", "Drops.", ["reason"]);
  assert.equal(m.counter("drops_total", "Drops.", ["reason"]), a);
  assert.throws(() => m.gauge("drops_total", "Drops."), /already defined/);
  assert.throws(() => m.counter("drops_total", "Drops.", ["other"]), /already defined/);
});

Deno.test("prefix and default labels are configurable", async () => {
  const m = createMetrics("comet", { prefix: "x_", defaultLabels: { node: "c1" } });
  m.counter("events_total", "Events.").inc();
  assert.match(await m.text(), /^x_events_total\{node="c1"\} 1$/m);
  assert.throws(() => createMetrics("Comet"), TypeError);
});

Deno.test("process metrics work under Deno and are created once", async () => {
  const reg = processMetrics();
  assert.equal(processMetrics(), reg);
  const text = await reg.metrics();
  assert.match(text, /^process_resident_memory_bytes \d+/m);
  assert.match(text, /^process_cpu_seconds_total [\d.e+-]+$/m);
  assert.match(text, /^nodejs_heap_size_used_bytes \d+$/m);
});

Deno.test("/metrics response: content type and merged registries", async () => {
  const m = createMetrics("logic");
  m.counter("http_requests_total", "Requests.", ["code"]).inc({ code: "200" });
  const res = await metricsResponse(m, processMetrics());
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), METRICS_CONTENT_TYPE);
  assert.match(METRICS_CONTENT_TYPE, /^text\/plain; version=0\.0\.4/);
  const body = await res.text();
  assert.match(body, /^goim_logic_http_requests_total\{code="200"\} 1$/m);
  assert.match(body, /^process_resident_memory_bytes /m);
});

Deno.test("/metrics answers 500 when a collector fails", async () => {
  const m = createMetrics("comet");
  m.gauge("broken", "Always fails.", [], () => {
    throw new Error("boom");
  });
  const res = await metricsResponse(m);
  assert.equal(res.status, 500);
  assert.match(await res.text(), /boom/);
});

Deno.test("plain prom-client registries can be exposed too", async () => {
  const reg = new Registry();
  const res = await metricsResponse(reg);
  assert.equal(await res.text(), "");
});

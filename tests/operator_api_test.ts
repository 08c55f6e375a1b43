/**
 * The operator API on the embedded server (startEmbedded): the shared
 * scenario (tests/fixtures/operator_scenario.ts), the overview's figures
 * against the server's own counts, the key rule's edges and the bounds.
 */

import assert from "node:assert/strict";
import { createLogger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { MemorySessionStore } from "../infra/memory/sessions.ts";
import { createLogicMetrics } from "../logic/metrics.ts";
import { OnlineCounts } from "../logic/online.ts";
import { createOperatorHandler } from "../logic/operator.ts";
import { OverviewSampler, quantile } from "../logic/operator_overview.ts";
import { parseSamples } from "../infra/metrics.ts";
import { startEmbedded } from "../main.ts";
import { eventually } from "./eventually.ts";
import { TcpTestClient } from "./fixtures/comet_fixtures.ts";
import { embeddedTestConfig } from "./fixtures/embedded_config.ts";
import { operator, operatorScenario } from "./fixtures/operator_scenario.ts";

const KEY = "operator-key-for-tests";
const PUSH_KEY = "push-key-for-tests";
const ADMIN_TOKEN = "admin-token-for-tests";

async function embedded(extra: string[] = []) {
  const config = embeddedTestConfig([
    "node.id=embedded-op",
    "comet.admin.bind=",
    "job.admin.bind=",
    "comet.renew_online_interval=200ms",
    `logic.operator.keys=${KEY}`,
    `logic.auth.api_keys=${PUSH_KEY}`,
    `admin.token=${ADMIN_TOKEN}`,
    ...extra,
  ]);
  const server = await startEmbedded(config, createLogger({ level: "error" }));
  return {
    server,
    cluster: {
      admin: `http://127.0.0.1:${server.logicAddrs.admin!.port}`,
      http: `http://127.0.0.1:${server.logicAddrs.http.port}`,
      comets: [{ id: server.comet.id, tcp: server.cometAddrs.tcp[0] }],
      key: KEY,
      otherKeys: [PUSH_KEY, ADMIN_TOKEN],
    },
  };
}

Deno.test("operator API (embedded): keys, sessions, room, kick, drain", async () => {
  const { server, cluster } = await embedded();
  try {
    await operatorScenario(cluster);
    // The admin token still guards /metrics; the operator key does not open it.
    const metrics = (key: string) =>
      fetch(`${cluster.admin}/metrics`, { headers: { authorization: `Bearer ${key}` } });
    const denied = await metrics(KEY);
    await denied.body?.cancel();
    assert.equal(denied.status, 401);
    const allowed = await metrics(ADMIN_TOKEN);
    await allowed.body?.cancel();
    assert.equal(allowed.status, 200);
  } finally {
    await server.stop();
  }
});

Deno.test("operator API (embedded): the overview matches the server's own counts and rates move", async () => {
  const { server, cluster } = await embedded();
  const clients: TcpTestClient[] = [];
  try {
    for (let i = 0; i < 4; i++) {
      const c = await TcpTestClient.connect(server.cometAddrs.tcp[0]);
      await c.auth({ mid: 10 + i, key: `ov-${i}`, room_id: i < 3 ? "live://top" : "" });
      clients.push(c);
    }
    // deno-lint-ignore no-explicit-any
    const overview = async (): Promise<any> =>
      (await operator(cluster, "GET", "/operator/v1/overview")).body.data;
    // The online aggregate follows RenewOnline (200 ms here).
    await eventually(async () => (await overview()).top_rooms[0]?.count === 3, "top rooms");
    const o = await overview();
    const stats = server.comet.stats();
    assert.equal(o.mode, "embedded");
    assert.equal(o.totals.connections, stats.connections);
    assert.equal(o.totals.ips, stats.ips);
    assert.deepEqual(o.totals.comets, { up: 1, draining: 0, drained: 0, down: 0 });
    assert.deepEqual(o.top_rooms[0], { room: "live://top", count: 3 });
    assert.equal(o.comets[0].connections, 4);
    assert.deepEqual(o.comets[0].by_transport, { tcp: 4, ws: 0, wss: 0 });
    assert.equal(o.jobs[0].name, "job");
    assert.equal(o.jobs[0].reachable, true);
    assert.equal(o.queue.lag, 0);

    // Pushes flow: rates for pushes in, frames out and the queue appear.
    const push = async (path: string) => {
      const res = await fetch(`${cluster.http}${path}`, {
        method: "POST",
        body: "x",
        headers: { authorization: `Bearer ${PUSH_KEY}` },
      });
      assert.equal(res.status, 200, await res.text());
    };
    await eventually(
      async () => {
        await push("/goim/push/room?operation=1000&type=live&room=top");
        await push("/goim/push/keys?operation=1000&keys=ov-3");
        await push("/goim/push/mids?operation=1000&mids=10");
        await push("/goim/push/all?operation=1000");
        const r = (await overview()).rates;
        return r !== null && r.pushes_in.room > 0 && r.pushes_in.keys > 0 &&
          r.pushes_in.mids > 0 && r.pushes_in.all > 0 && r.frames_out > 0 && r.consumed > 0;
      },
      "the rates to show the pushes",
      15_000,
    );
    await eventually(async () => (await overview()).latency_ms !== null, "push latency");
    await eventually(
      async () => (await overview()).logic_loop_lag_ms !== null,
      "logic's event-loop lag",
    );
    const l = (await overview()).comets[0].loop_lag_ms;
    assert.ok(l === null || l.p99 >= 0);
  } finally {
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.done));
    await server.stop();
  }
});

Deno.test("operator API: without keys it is open on loopback only; bounds are enforced", async () => {
  const registry = new MemoryRegistry();
  const sessions = new MemorySessionStore({ ttlMs: 60_000 });
  const metrics = createLogicMetrics();
  const online = new OnlineCounts({ sessions, registry, staleAfterMs: 60_000 });
  const dialer = {
    dial: () => {
      throw new Error("no comet");
    },
  };
  const overview = new OverviewSampler({
    mode: "embedded",
    registry,
    dialer,
    jobs: [],
    metrics,
    online,
  });
  const log = createLogger({ level: "error" });
  const base = { registry, sessions, online, dialer, overview, log };
  try {
    const off = createOperatorHandler({ ...base, keys: [], loopback: false });
    const res = await off(new Request("http://x/operator/v1/overview"));
    assert.equal(res.status, 404);
    assert.match((await res.json()).message, /set logic\.operator\.keys/);

    const open = createOperatorHandler({ ...base, keys: [], loopback: true });
    assert.equal((await open(new Request("http://x/operator/v1/overview"))).status, 200);
    const tooMany = Array.from({ length: 1001 }, (_, i) => `k${i}`).join(",");
    const big = await open(new Request(`http://x/operator/v1/sessions?keys=${tooMany}`));
    assert.equal(big.status, 400);
    assert.match((await big.json()).message, /at most 1000/);
    const both = await open(new Request("http://x/operator/v1/sessions?keys=a&mids=1"));
    assert.equal(both.status, 400);
    const sample = await open(new Request("http://x/operator/v1/room?type=live&room=1&sample=101"));
    assert.equal(sample.status, 400);
    const drain = await open(
      new Request("http://x/operator/v1/drain?comet=c&deadline=2h", { method: "POST" }),
    );
    assert.equal(drain.status, 400);
    const unknown = await open(
      new Request("http://x/operator/v1/drain?comet=nope", { method: "POST" }),
    );
    assert.equal(unknown.status, 404);
    assert.equal(
      (await open(new Request("http://x/operator/v1/nothing"))).status,
      404,
    );
  } finally {
    await overview.idle();
    await registry.close();
    await sessions.close();
  }
});

Deno.test("operator overview helpers: histogram quantiles and the metrics text reader", () => {
  const b = new Map([[0.001, 0], [0.002, 10], [0.004, 20], [Infinity, 20]]);
  assert.equal(quantile(0.5, b), 0.002);
  assert.ok(Math.abs(quantile(0.25, b)! - 0.0015) < 1e-12);
  assert.equal(quantile(0.5, new Map([[1, 0], [Infinity, 0]])), null);
  assert.equal(quantile(0.99, new Map([[1, 0], [Infinity, 5]])), 1, "+Inf: the highest bound");
  const text = [
    "# HELP goim_job_consumer_lag x",
    "goim_job_consumer_lag 7",
    'goim_job_consumed_total{type="ROOM"} 3',
    'goim_job_push_latency_seconds_bucket{le="+Inf",type="PUSH"} 4',
    'other{a="b"} 1',
    'goim_job_x{l="q\\"uote"} NaN',
  ].join("\n");
  const got = parseSamples(text, (n) => n.startsWith("goim_job_"));
  assert.deepEqual(got.slice(0, 3), [
    { name: "goim_job_consumer_lag", labels: {}, value: 7 },
    { name: "goim_job_consumed_total", labels: { type: "ROOM" }, value: 3 },
    {
      name: "goim_job_push_latency_seconds_bucket",
      labels: { le: "+Inf", type: "PUSH" },
      value: 4,
    },
  ]);
  assert.deepEqual(got[3].labels, { l: 'q"uote' });
  assert.ok(Number.isNaN(got[3].value));
});

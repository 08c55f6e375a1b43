// goim.logic.Logic: the service object in-process, the webhook against a real
// receiver, and the gRPC server through a real grpc-js client.
import assert from "node:assert/strict";
import { createLogicClient, grpcStatus, RpcError } from "../proto/grpc.ts";
import { joinHostPort } from "../infra/addr.ts";
import { Webhook } from "../logic/webhook.ts";
import { createLogicMetrics } from "../logic/metrics.ts";
import { comet, logicHarness, token } from "./fixtures/logic_fixtures.ts";

Deno.test("Connect generates a key when none is given, writes the route, replies goim's heartbeat", async () => {
  const h = logicHarness(["comet.heartbeat_interval=30s", "comet.heartbeat_max=3"]);
  try {
    const a = await h.logic.service.Connect({
      server: "comet-1",
      cookie: "",
      token: token({ mid: 5, room_id: "live://9", platform: "web", accepts: [1000, 1002] }),
    });
    assert.match(a.key, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(a.mid, 5);
    assert.equal(a.roomID, "live://9");
    assert.deepEqual(a.accepts, [1000, 1002]);
    // goim: Node.Heartbeat × HeartbeatMax as a Go Duration, i.e. nanoseconds.
    assert.equal(a.heartbeat, 30_000 * 3 * 1_000_000);
    const b = await h.logic.service.Connect({
      server: "comet-1",
      cookie: "",
      token: token({ mid: 5 }),
    });
    assert.notEqual(a.key, b.key);
    assert.deepEqual(await h.sessions.serversByKeys([a.key, b.key]), ["comet-1", "comet-1"]);
    assert.deepEqual([...(await h.sessions.keysByMids([5])).keys()].sort(), [a.key, b.key].sort());
    // A given key is kept.
    const c = await h.logic.service.Connect({
      server: "comet-2",
      cookie: "",
      token: token({ key: "mine" }),
    });
    assert.equal(c.key, "mine");
    assert.deepEqual(await h.sessions.serversByKeys(["mine"]), ["comet-2"]);
    await assert.rejects(
      h.logic.service.Connect({ server: "", cookie: "", token: token({}) }),
      (e: unknown) => e instanceof RpcError && e.code === grpcStatus.INVALID_ARGUMENT,
    );
  } finally {
    await h.close();
  }
});

Deno.test("Disconnect removes the route only while it points at the calling comet", async () => {
  const h = logicHarness();
  try {
    await h.logic.service.Connect({
      server: "comet-1",
      cookie: "",
      token: token({ mid: 1, key: "k" }),
    });
    // The client reconnected to comet-2 before comet-1's Disconnect arrived.
    await h.logic.service.Connect({
      server: "comet-2",
      cookie: "",
      token: token({ mid: 1, key: "k" }),
    });
    assert.deepEqual(await h.logic.service.Disconnect({ mid: 1, key: "k", server: "comet-1" }), {
      has: false,
    });
    assert.deepEqual(await h.sessions.serversByKeys(["k"]), ["comet-2"]);
    assert.deepEqual(await h.logic.service.Disconnect({ mid: 1, key: "k", server: "comet-2" }), {
      has: true,
    });
    assert.deepEqual(await h.sessions.serversByKeys(["k"]), [null]);
    assert.equal((await h.sessions.keysByMids([1])).size, 0);
  } finally {
    await h.close();
  }
});

Deno.test("Heartbeat renews a route and re-adds a missing one", async () => {
  const h = logicHarness(["logic.route_ttl=60s", "comet.route_heartbeat_interval=10s"]);
  try {
    await h.logic.service.Connect({
      server: "comet-1",
      cookie: "",
      token: token({ mid: 3, key: "k3" }),
    });
    h.clock.advance(50_000);
    await h.logic.service.Heartbeat({ mid: 3, key: "k3", server: "comet-1" });
    h.clock.advance(50_000); // 100 s after connect, 50 s after the heartbeat: still alive
    assert.deepEqual(await h.sessions.serversByKeys(["k3"]), ["comet-1"]);
    // The store lost the route (e.g. Redis restarted): the next heartbeat brings it back.
    await h.sessions.delMapping(3, "k3", "comet-1");
    assert.deepEqual(await h.sessions.serversByKeys(["k3"]), [null]);
    await h.logic.service.Heartbeat({ mid: 3, key: "k3", server: "comet-1" });
    assert.deepEqual(await h.sessions.serversByKeys(["k3"]), ["comet-1"]);
    assert.equal((await h.sessions.keysByMids([3])).get("k3"), "comet-1");
    const text = await h.logic.metrics.registry.text();
    assert.match(text, /goim_logic_heartbeats_total\{readded="false"\} 1/);
    assert.match(text, /goim_logic_heartbeats_total\{readded="true"\} 1/);
    await assert.rejects(
      h.logic.service.Heartbeat({ mid: 3, key: "", server: "comet-1" }),
      (e: unknown) => e instanceof RpcError && e.code === grpcStatus.INVALID_ARGUMENT,
    );
  } finally {
    await h.close();
  }
});

Deno.test("RenewOnline aggregates fresh reports across comets and drops stale ones", async () => {
  const h = logicHarness(["logic.online_stale_after=30s"]);
  try {
    const s = h.logic.service;
    let r = await s.RenewOnline({ server: "c1", roomCount: { "live://1": 3, "live://2": 1 } });
    assert.deepEqual(r.allRoomCount, { "live://1": 3, "live://2": 1 });
    h.clock.advance(20_000);
    r = await s.RenewOnline({ server: "c2", roomCount: { "live://1": 4, "chat://x": 2 } });
    assert.deepEqual(r.allRoomCount, { "live://1": 7, "live://2": 1, "chat://x": 2 });
    // c1 reports again: its share is replaced, not added.
    r = await s.RenewOnline({ server: "c1", roomCount: { "live://1": 1 } });
    assert.deepEqual(r.allRoomCount, { "live://1": 5, "chat://x": 2 });
    // 31 s later c2's report is older than 30 s: it no longer counts.
    h.clock.advance(31_000);
    r = await s.RenewOnline({ server: "c1", roomCount: { "live://1": 1, "live://3": 6 } });
    assert.deepEqual(r.allRoomCount, { "live://1": 1, "live://3": 6 });
    assert.equal(h.logic.online.servers, 1);
    assert.equal(h.logic.online.count("live://3"), 6);
    // Bad counts are ignored, not summed.
    r = await s.RenewOnline({ server: "c3", roomCount: { "live://3": -5, "": 9 } });
    assert.deepEqual(r.allRoomCount, { "live://1": 1, "live://3": 6 });
  } finally {
    await h.close();
  }
});

Deno.test("online refresh picks up reports another logic process stored", async () => {
  const h = logicHarness(["logic.online_stale_after=30s"]);
  try {
    await h.registry.register(comet("c9"), 60_000);
    // Stored by another logic sharing the store.
    await h.sessions.addServerOnline({
      server: "c9",
      roomCount: { "live://1": 11 },
      updated: h.clock.now(),
    });
    assert.equal(h.logic.online.count("live://1"), 0, "not read until the next refresh");
    await h.logic.online.refresh();
    assert.equal(h.logic.online.count("live://1"), 11);
    // An old report is not revived.
    await h.sessions.addServerOnline({
      server: "c9",
      roomCount: { "live://1": 99 },
      updated: h.clock.now() - 31_000,
    });
    await h.logic.online.refresh();
    assert.equal(h.logic.online.count("live://1"), 11);
    h.clock.advance(31_000);
    assert.equal(h.logic.online.count("live://1"), 0);
  } finally {
    await h.close();
  }
});

Deno.test("Nodes RPC answers like /goim/nodes/weighted", async () => {
  const h = logicHarness();
  try {
    await h.registry.register(comet("c1", { addrs: ["198.51.100.7"] }), 60_000);
    const reply = await h.logic.service.Nodes({ platform: "android", clientIP: "203.0.113.1" });
    assert.deepEqual(reply.nodes, ["198.51.100.7"]);
    assert.equal(reply.tcp_port, 3101);
    assert.equal(reply.heartbeat, 240);
  } finally {
    await h.close();
  }
});

/** A webhook receiver on a real Deno.serve; `respond` decides each answer. */
function receiver(respond: (n: number) => number = () => 200) {
  const bodies: unknown[] = [];
  let n = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const status = respond(n++);
    bodies.push({ status, body: await req.json(), type: req.headers.get("content-type") });
    return new Response(null, { status });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/upstream`, bodies, server };
}

Deno.test("Receive hands upstream messages to the webhook receiver, in order", async () => {
  const rx = receiver();
  const h = logicHarness([`logic.webhook.url=${rx.url}`]);
  try {
    for (let seq = 1; seq <= 3; seq++) {
      await h.logic.service.Receive({
        mid: 77,
        proto: { ver: 1, op: 4, seq, body: new TextEncoder().encode(`hello ${seq}`) },
      });
    }
    await h.logic.webhook!.idle();
    assert.deepEqual(
      rx.bodies,
      [1, 2, 3].map((seq) => ({
        status: 200,
        type: "application/json",
        body: { mid: 77, op: 4, seq, ver: 1, body_base64: btoa(`hello ${seq}`) },
      })),
    );
    assert.match(await h.logic.metrics.registry.text(), /goim_logic_webhook_delivered_total 3/);
  } finally {
    await h.close();
    await rx.server.shutdown();
  }
});

Deno.test("webhook: a failing receiver gets retries, then the message is dropped and counted", async () => {
  // Fails twice, then accepts: the first message succeeds on its last retry;
  // the second always fails (every later answer is 503) and is dropped.
  const rx = receiver((n) => (n === 2 ? 200 : 503));
  const metrics = createLogicMetrics();
  const hook = new Webhook({
    url: rx.url,
    timeoutMs: 2000,
    retries: 2,
    buffer: 8,
    backoffBaseMs: 1,
    metrics,
  });
  try {
    const msg = (seq: number) => ({ mid: 1, op: 4, seq, ver: 1, body: new Uint8Array([seq]) });
    assert.ok(hook.enqueue(msg(1)));
    assert.ok(hook.enqueue(msg(2)));
    await hook.idle();
    assert.deepEqual(
      rx.bodies.map((
        b,
      ) => [(b as { body: { seq: number } }).body.seq, (b as { status: number }).status]),
      [[1, 503], [1, 503], [1, 200], [2, 503], [2, 503], [2, 503]],
    );
    const text = await metrics.registry.text();
    assert.match(text, /goim_logic_webhook_delivered_total 1/);
    assert.match(text, /goim_logic_webhook_retries_total 4/);
    assert.match(text, /goim_logic_webhook_dropped_total\{reason="failed"\} 1/);
  } finally {
    await hook.close(100);
    await rx.server.shutdown();
  }
});

Deno.test("webhook: 4xx drops at once; a full buffer drops the newest; close drops the rest", async () => {
  const gate = Promise.withResolvers<void>();
  let calls = 0;
  const metrics = createLogicMetrics();
  const fakeFetch: typeof fetch = async (_url, init) => {
    calls++;
    if (calls === 1) return new Response(null, { status: 400 });
    // Hangs until the gate opens or the delivery is aborted by close().
    await Promise.race([
      gate.promise,
      new Promise((_, reject) =>
        init!.signal!.addEventListener("abort", () => reject(new Error("aborted")))
      ),
    ]);
    return new Response(null, { status: 200 });
  };
  const hook = new Webhook({
    url: "http://webhook.test/",
    timeoutMs: 60_000,
    retries: 5,
    buffer: 2,
    fetch: fakeFetch,
    metrics,
  });
  const msg = (seq: number) => ({ mid: 1, op: 4, seq, ver: 1, body: new Uint8Array() });
  assert.ok(hook.enqueue(msg(1))); // refused with 400
  await hook.idle();
  assert.ok(hook.enqueue(msg(2))); // taken into flight, hangs
  assert.ok(hook.enqueue(msg(3)));
  assert.ok(hook.enqueue(msg(4)));
  assert.equal(hook.queued, 2);
  assert.equal(hook.enqueue(msg(5)), false, "buffer full");
  await hook.close(10); // 2 is aborted, 3 and 4 never sent
  assert.equal(hook.enqueue(msg(6)), false, "closed");
  gate.resolve();
  const text = await metrics.registry.text();
  assert.match(text, /goim_logic_webhook_dropped_total\{reason="rejected"\} 1/);
  assert.match(text, /goim_logic_webhook_dropped_total\{reason="buffer_full"\} 1/);
  assert.match(text, /goim_logic_webhook_dropped_total\{reason="shutdown"\} 4/);
  assert.equal(calls, 2);
});

Deno.test("gRPC: a grpc-js client calls Connect, Heartbeat, Disconnect on logic.start()", async () => {
  const h = logicHarness();
  const addrs = await h.logic.start();
  const client = createLogicClient(joinHostPort(addrs.grpc!), { deadlineMs: 5000 });
  try {
    const reply = await client.Connect({
      server: "comet-g",
      token: token({ mid: 12, room_id: "live://1", accepts: [1000] }),
    });
    assert.equal(reply.mid, 12);
    assert.equal(reply.roomID, "live://1");
    assert.deepEqual(reply.accepts, [1000]);
    assert.equal(reply.heartbeat, 480_000_000_000);
    assert.deepEqual(await h.sessions.serversByKeys([reply.key]), ["comet-g"]);
    assert.deepEqual(await client.Heartbeat({ mid: 12, key: reply.key, server: "comet-g" }), {});
    const online = await client.RenewOnline({ server: "comet-g", roomCount: { "live://1": 1 } });
    assert.deepEqual(online.allRoomCount, { "live://1": 1 });
    assert.deepEqual(await client.Disconnect({ mid: 12, key: reply.key, server: "comet-g" }), {
      has: true,
    });
    assert.deepEqual(await h.sessions.serversByKeys([reply.key]), [null]);
    await assert.rejects(
      client.Connect({ server: "comet-g", token: new TextEncoder().encode("not json") }),
      (e: unknown) => e instanceof RpcError && e.code === grpcStatus.UNAUTHENTICATED,
    );
  } finally {
    client.close();
    await h.close();
  }
});

Deno.test("a failing session store is UNAVAILABLE over RPC and -500 over HTTP", async () => {
  const h = logicHarness();
  try {
    await h.sessions.close();
    for (
      const call of [
        () => h.logic.service.Connect({ server: "c", cookie: "", token: token({ mid: 1 }) }),
        () => h.logic.service.Heartbeat({ mid: 1, key: "k", server: "c" }),
        () => h.logic.service.Disconnect({ mid: 1, key: "k", server: "c" }),
        () => h.logic.service.RenewOnline({ server: "c", roomCount: {} }),
      ]
    ) {
      await assert.rejects(call(), (e: unknown) => {
        assert.ok(e instanceof RpcError);
        assert.equal(e.code, grpcStatus.UNAVAILABLE);
        assert.match(e.details, /^session store: \w+ failed: memory session store is closed/);
        return true;
      });
    }
    const res = await h.logic.handler(
      new Request("http://x/goim/push/keys?operation=1000&keys=k", { method: "POST" }),
    );
    assert.equal(res.status, 500);
    assert.match((await res.json()).message, /^server error: memory session store is closed/);
    assert.ok(h.logLines.some((l) => l.includes("session store failed")));
  } finally {
    await h.close().catch(() => {});
  }
});

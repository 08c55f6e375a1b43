// The logic HTTP API through `logic.handler` (no sockets), plus one test
// through the real HTTP server (infra/http_server.ts) on port 0.
import assert from "node:assert/strict";
import { joinHostPort } from "../infra/addr.ts";
import { call, comet, logicHarness, token } from "./fixtures/logic_fixtures.ts";

const utf8 = new TextEncoder();

/** A push answer without its push id, once the id is checked (22 chars of base64url). */
function withoutId(data: unknown): Record<string, unknown> {
  const { id, ...rest } = data as Record<string, unknown>;
  assert.match(String(id), /^[A-Za-z0-9_-]{22}$/);
  return rest;
}

async function connect(
  h: ReturnType<typeof logicHarness>,
  server: string,
  fields: Record<string, unknown>,
): Promise<string> {
  const reply = await h.logic.service.Connect({ server, cookie: "", token: token(fields) });
  return reply.key;
}

Deno.test("push/keys groups routed keys per comet and publishes one PUSH per comet", async () => {
  const h = logicHarness();
  try {
    await connect(h, "comet-a", { mid: 1, key: "k1" });
    await connect(h, "comet-a", { mid: 2, key: "k2" });
    await connect(h, "comet-b", { mid: 3, key: "k3" });
    const r = await call(
      h.logic.handler,
      "POST",
      "/goim/push/keys?operation=1000&keys=k1,k2&keys=k3&keys=unknown,,k1",
      { body: "hello" },
    );
    assert.equal(r.status, 200);
    assert.equal(r.code, 0);
    assert.equal(r.message, "");
    assert.deepEqual(withoutId(r.data), { keys: 3, comets: 2 });
    const msgs = [...h.producer.messages].sort((a, b) => a.server < b.server ? -1 : 1);
    assert.equal(msgs.length, 2);
    assert.deepEqual(
      msgs.map((m) => ({ type: m.type, op: m.operation, server: m.server, keys: m.keys })),
      [
        { type: "PUSH", op: 1000, server: "comet-a", keys: ["k1", "k2"] },
        { type: "PUSH", op: 1000, server: "comet-b", keys: ["k3"] },
      ],
    );
    assert.deepEqual(msgs[0].msg, utf8.encode("hello"));
    // No live route: nothing published, counts say so.
    const none = await call(h.logic.handler, "POST", "/goim/push/keys?operation=1000&keys=nope");
    assert.deepEqual(withoutId(none.data), { keys: 0, comets: 0 });
    assert.equal(h.producer.messages.length, 2);
  } finally {
    await h.close();
  }
});

Deno.test("push/keys and push/mids refuse bad input with -400 naming the parameter", async () => {
  const h = logicHarness();
  try {
    const cases: [string, RegExp][] = [
      ["/goim/push/keys?keys=k1", /^operation: required/],
      ["/goim/push/keys?operation=abc&keys=k1", /^operation: expected a business op/],
      ["/goim/push/keys?operation=8&keys=k1", /0-17 are protocol ops/],
      ["/goim/push/keys?operation=0&keys=k1", /^operation:/],
      ["/goim/push/keys?operation=-1000&keys=k1", /^operation:/],
      ["/goim/push/keys?operation=2147483648&keys=k1", /^operation:/],
      ["/goim/push/keys?operation=1.5&keys=k1", /^operation:/],
      ["/goim/push/keys?operation=1000&operation=1001&keys=k1", /^operation: given 2 times/],
      ["/goim/push/keys?operation=1000", /^keys: at least one value is required/],
      ["/goim/push/keys?operation=1000&keys=,,", /^keys: at least one/],
      ["/goim/push/mids?operation=1000", /^mids: at least one/],
      ["/goim/push/mids?operation=1000&mids=1,x", /^mids: expected positive integer/],
      ["/goim/push/mids?operation=1000&mids=-1", /^mids:/],
      ["/goim/push/mids?operation=1000&mids=0", /^mids:/],
      ["/goim/push/mids?operation=1000&mids=9007199254740993", /^mids:/],
    ];
    for (const [path, re] of cases) {
      const r = await call(h.logic.handler, "POST", path, { body: "x" });
      assert.equal(r.status, 400, path);
      assert.equal(r.code, -400, path);
      assert.match(r.message, re, path);
      assert.equal(r.data, null);
    }
    assert.equal(h.producer.messages.length, 0);
  } finally {
    await h.close();
  }
});

Deno.test("push/mids reaches every live key of the mids (streams off: goim's routing)", async () => {
  const h = logicHarness(["streams.enabled=false"]);
  try {
    await connect(h, "comet-a", { mid: 7, key: "phone" });
    await connect(h, "comet-b", { mid: 7, key: "laptop" });
    await connect(h, "comet-b", { mid: 8, key: "k8" });
    await connect(h, "comet-b", { mid: 9, key: "k9" });
    const r = await call(
      h.logic.handler,
      "POST",
      "/goim/push/mids?operation=1001&mids=7,8&mids=42",
      {
        body: "m",
      },
    );
    assert.equal(r.code, 0);
    assert.deepEqual(withoutId(r.data), { keys: 3, comets: 2 });
    const byServer = Object.fromEntries(
      h.producer.messages.map((m) => [m.server, [...m.keys].sort()]),
    );
    assert.deepEqual(byServer, { "comet-a": ["phone"], "comet-b": ["k8", "laptop"] });
    assert.ok(h.producer.messages.every((m) => m.type === "PUSH" && m.operation === 1001));
  } finally {
    await h.close();
  }
});

Deno.test("push/room publishes one ROOM message for type://room; bad input is -400", async () => {
  const h = logicHarness();
  try {
    const r = await call(
      h.logic.handler,
      "POST",
      "/goim/push/room?operation=1000&type=live&room=1000",
      {
        body: "r",
      },
    );
    assert.equal(r.code, 0);
    assert.deepEqual(withoutId(r.data), { room: "live://1000", queued: 1 });
    assert.equal(h.producer.messages.length, 1);
    const m = h.producer.messages[0];
    assert.deepEqual([m.type, m.room, m.operation, m.server, m.keys], [
      "ROOM",
      "live://1000",
      1000,
      "",
      [],
    ]);
    for (
      const [path, re] of [
        ["/goim/push/room?operation=1000&room=1", /^type: required/],
        ["/goim/push/room?operation=1000&type=live", /^room: required/],
        ["/goim/push/room?operation=1000&type=live&room=", /^room: required/],
        ["/goim/push/room?operation=1000&type=li://ve&room=1", /^type: must not contain/],
        ["/goim/push/room?type=live&room=1", /^operation:/],
      ] as const
    ) {
      const bad = await call(h.logic.handler, "POST", path);
      assert.equal(bad.code, -400, path);
      assert.match(bad.message, re, path);
    }
  } finally {
    await h.close();
  }
});

Deno.test("push/all publishes BROADCAST with speed (default 0); bad speed is -400", async () => {
  const h = logicHarness();
  try {
    assert.deepEqual(
      withoutId(
        (await call(h.logic.handler, "POST", "/goim/push/all?operation=1000", { body: "a" })).data,
      ),
      { queued: 1 },
    );
    await call(h.logic.handler, "POST", "/goim/push/all?operation=1002&speed=5", { body: "b" });
    assert.deepEqual(
      h.producer.messages.map((m) => [m.type, m.operation, m.speed]),
      [["BROADCAST", 1000, 0], ["BROADCAST", 1002, 5]],
    );
    for (const s of ["-1", "x", "2147483648"]) {
      const r = await call(h.logic.handler, "POST", `/goim/push/all?operation=1000&speed=${s}`);
      assert.equal(r.code, -400);
      assert.match(r.message, /^speed: expected an integer from 0 to 2147483647/);
    }
  } finally {
    await h.close();
  }
});

Deno.test("a body over logic.http.max_body is 413, by Content-Length or while streaming", async () => {
  const h = logicHarness(["logic.http.max_body=16"]);
  try {
    const path = "/goim/push/all?operation=1000";
    // Exactly the limit passes.
    assert.equal((await call(h.logic.handler, "POST", path, { body: "x".repeat(16) })).code, 0);
    // Declared too large: refused before reading.
    const declared = await call(h.logic.handler, "POST", path, { body: "x".repeat(17) });
    assert.equal(declared.status, 413);
    assert.equal(declared.code, -413);
    assert.match(declared.message, /logic\.http\.max_body \(16 bytes\)/);
    // No Content-Length: a stream that keeps going is cut off once past the limit.
    let pulled = 0;
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        pulled++;
        c.enqueue(new Uint8Array(10));
        if (pulled > 1000) c.close();
      },
      cancel() {
        cancelled = true;
      },
    });
    const req = new Request(`http://logic.test${path}`, { method: "POST", body: stream });
    assert.equal(req.headers.get("content-length"), null);
    const res = await h.logic.handler(req);
    assert.equal(res.status, 413);
    assert.equal((await res.json()).code, -413);
    assert.ok(cancelled, "the stream was cancelled");
    assert.ok(pulled <= 3, `read only up to the limit, pulled ${pulled} chunks`);
    // A streamed body under the limit is fine.
    const small = new Request(`http://logic.test${path}`, {
      method: "POST",
      body: ReadableStream.from([utf8.encode("abc"), utf8.encode("def")]),
    });
    assert.equal((await (await h.logic.handler(small)).json()).code, 0);
    assert.deepEqual(h.producer.messages.map((m) => m.msg.length), [16, 6]);
  } finally {
    await h.close();
  }
});

Deno.test("503 with a clear message when the queue is unavailable; 500 on other failures", async () => {
  const h = logicHarness();
  try {
    h.producer.down("kafka: no brokers reachable");
    const r = await call(h.logic.handler, "POST", "/goim/push/all?operation=1000", { body: "x" });
    assert.equal(r.status, 503);
    assert.equal(r.code, -503);
    assert.match(r.message, /^queue unavailable, retry later: kafka: no brokers reachable/);
    await connect(h, "comet-a", { key: "k1" });
    const keys = await call(h.logic.handler, "POST", "/goim/push/keys?operation=1000&keys=k1");
    assert.equal(keys.status, 503);
    h.producer.fail = new Error("boom");
    const err = await call(h.logic.handler, "POST", "/goim/push/room?operation=1000&type=a&room=b");
    assert.equal(err.status, 500);
    assert.equal(err.code, -500);
    assert.match(err.message, /boom/);
    const text = await h.logic.metrics.registry.text();
    assert.match(text, /goim_logic_queue_unavailable_total 2/);
  } finally {
    await h.close();
  }
});

Deno.test("API keys: 401 without or with a wrong bearer key, 200 with a configured one", async () => {
  const h = logicHarness(["logic.auth.api_keys=alpha-key,beta-key"]);
  try {
    const path = "/goim/online/total";
    const none = await call(h.logic.handler, "GET", path);
    assert.equal(none.status, 401);
    assert.equal(none.code, -401);
    assert.match(none.message, /Authorization: Bearer/);
    assert.equal(none.res.headers.get("www-authenticate"), 'Bearer realm="goim"');
    for (
      const auth of ["Bearer wrong", "Bearer alpha-ke", "Basic alpha-key", "alpha-key", "Bearer "]
    ) {
      const r = await call(h.logic.handler, "GET", path, { headers: { authorization: auth } });
      assert.equal(r.status, 401, auth);
    }
    for (const auth of ["Bearer alpha-key", "bearer beta-key"]) {
      const r = await call(h.logic.handler, "GET", path, { headers: { authorization: auth } });
      assert.equal(r.status, 200, auth);
    }
    // Pushes too; and nothing is published without the key.
    const push = await call(h.logic.handler, "POST", "/goim/push/all?operation=1000", {
      body: "x",
    });
    assert.equal(push.status, 401);
    assert.equal(h.producer.messages.length, 0);
  } finally {
    await h.close();
  }
});

Deno.test("unknown route is 404, wrong method is 405 with Allow", async () => {
  const h = logicHarness();
  try {
    const nf = await call(h.logic.handler, "GET", "/goim/push/nothing");
    assert.equal(nf.status, 404);
    assert.equal(nf.code, -404);
    assert.match((await call(h.logic.handler, "GET", "/push/keys")).message, /under \/goim\//);
    const wrong = await call(h.logic.handler, "GET", "/goim/push/keys?operation=1000&keys=a");
    assert.equal(wrong.status, 405);
    assert.equal(wrong.code, -405);
    assert.equal(wrong.res.headers.get("allow"), "POST");
    assert.match(wrong.message, /takes POST, not GET/);
    const wrong2 = await call(h.logic.handler, "POST", "/goim/online/total", { body: "x" });
    assert.equal(wrong2.status, 405);
    assert.equal(wrong2.res.headers.get("allow"), "GET");
  } finally {
    await h.close();
  }
});

Deno.test("online/top, online/room and online/total", async () => {
  const h = logicHarness();
  try {
    await h.logic.service.RenewOnline({
      server: "comet-a",
      roomCount: { "live://1": 5, "live://2": 1, "chat://1": 9 },
    });
    await h.logic.service.RenewOnline({
      server: "comet-b",
      roomCount: { "live://2": 7, "live://3": 2, "livex://9": 100 },
    });
    await h.registry.register(comet("comet-a", { connections: 15, ips: 10 }), 60_000);
    await h.registry.register(comet("comet-b", { connections: 110, ips: 40 }), 60_000);

    const top = await call(h.logic.handler, "GET", "/goim/online/top?type=live&limit=2");
    assert.equal(top.code, 0);
    assert.deepEqual(top.data, [{ room_id: "2", count: 8 }, { room_id: "1", count: 5 }]);
    const all = await call(h.logic.handler, "GET", "/goim/online/top?type=live");
    assert.equal((all.data as unknown[]).length, 3, "livex:// is another type");

    const room = await call(
      h.logic.handler,
      "GET",
      "/goim/online/room?type=live&rooms=1,2&rooms=404",
    );
    assert.deepEqual(room.data, { "1": 5, "2": 8, "404": 0 });

    const total = await call(h.logic.handler, "GET", "/goim/online/total");
    assert.deepEqual(total.data, { ip_count: 50, conn_count: 125 });

    for (
      const [path, re] of [
        ["/goim/online/top?limit=3", /^type: required/],
        ["/goim/online/top?type=live&limit=0", /^limit: expected an integer from 1 to 1000/],
        ["/goim/online/top?type=live&limit=1001", /^limit:/],
        ["/goim/online/room?type=live", /^rooms: at least one/],
        ["/goim/online/room?rooms=1", /^type: required/],
      ] as const
    ) {
      const r = await call(h.logic.handler, "GET", path);
      assert.equal(r.code, -400, path);
      assert.match(r.message, re, path);
    }
  } finally {
    await h.close();
  }
});

Deno.test("nodes/weighted and nodes/instances", async () => {
  const h = logicHarness([
    "logic.nodes.host_domain=.im.test",
    "logic.nodes.default_domain=conn.test",
  ]);
  try {
    // No comet: the default domain.
    const empty = await call(h.logic.handler, "GET", "/goim/nodes/weighted?platform=web");
    assert.equal(empty.code, 0);
    const d = empty.data as Record<string, unknown>;
    assert.deepEqual(d.nodes, ["conn.test"]);
    assert.equal(d.domain, "conn.test");
    assert.equal(d.tcp_port, 3101);
    assert.equal(d.ws_port, 3102);
    assert.equal(d.wss_port, 3103);
    assert.equal(d.heartbeat, 240);
    assert.equal(d.heartbeat_max, 2);
    assert.deepEqual(d.backoff, { max_delay: 300, base_delay: 3, factor: 1.8, jitter: 1.3 });

    h.clock.advance(5000); // past the balancer's registry cache
    await h.registry.register(comet("c1", { connections: 100, addrs: ["198.51.100.1"] }), 60_000);
    await h.registry.register(comet("c2", { connections: 10, addrs: ["198.51.100.2"] }), 60_000);
    const web = await call(h.logic.handler, "GET", "/goim/nodes/weighted?platform=web");
    assert.deepEqual((web.data as { nodes: string[] }).nodes, ["c2.im.test", "c1.im.test"]);
    const app = await call(h.logic.handler, "GET", "/goim/nodes/weighted?platform=android");
    assert.deepEqual((app.data as { nodes: string[] }).nodes, ["198.51.100.2", "198.51.100.1"]);

    const inst = await call(h.logic.handler, "GET", "/goim/nodes/instances");
    assert.deepEqual((inst.data as { id: string }[]).map((c) => c.id), ["c1", "c2"]);
  } finally {
    await h.close();
  }
});

Deno.test("metrics count requests by route and code", async () => {
  const h = logicHarness();
  try {
    await call(h.logic.handler, "POST", "/goim/push/all?operation=1000");
    await call(h.logic.handler, "POST", "/goim/push/all?operation=1");
    await call(h.logic.handler, "GET", "/nope");
    const text = await h.logic.metrics.registry.text();
    assert.match(text, /goim_logic_http_requests_total\{route="\/goim\/push\/all",code="200"\} 1/);
    assert.match(text, /goim_logic_http_requests_total\{route="\/goim\/push\/all",code="400"\} 1/);
    assert.match(text, /goim_logic_http_requests_total\{route="unknown",code="404"\} 1/);
    assert.match(text, /goim_logic_published_total\{type="BROADCAST"\} 1/);
  } finally {
    await h.close();
  }
});

Deno.test("through the real HTTP server on port 0: push, admin /healthz and /metrics", async () => {
  const h = logicHarness();
  try {
    const addrs = await h.logic.start({ grpc: false });
    assert.equal(addrs.grpc, undefined);
    assert.equal(addrs.http.hostname, "127.0.0.1");
    assert.ok(addrs.http.port > 0);
    const http = joinHostPort(addrs.http), admin = joinHostPort(addrs.admin!);
    await connect(h, "comet-a", { mid: 1, key: "k1" });
    const res = await fetch(`http://${http}/goim/push/keys?operation=1000&keys=k1`, {
      method: "POST",
      body: "over the wire",
    });
    assert.equal(res.status, 200);
    const json = await res.json();
    assert.deepEqual({ ...json, data: withoutId(json.data) }, {
      code: 0,
      message: "",
      data: { keys: 1, comets: 1 },
    });
    assert.deepEqual(h.producer.messages[0].msg, utf8.encode("over the wire"));

    // A chunked upload over the limit is cut off by the real server too.
    const big = await fetch(`http://${http}/goim/push/all?operation=1000`, {
      method: "POST",
      body: ReadableStream.from([new Uint8Array(40_000), new Uint8Array(40_000)]),
    });
    assert.equal(big.status, 413);
    await big.body?.cancel();

    const health = await fetch(`http://${admin}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok", queue: true });
    h.producer.isHealthy = false;
    const sick = await fetch(`http://${admin}/healthz`);
    assert.equal(sick.status, 503);
    assert.deepEqual(await sick.json(), { status: "unavailable", queue: false });
    const metrics = await fetch(`http://${admin}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /goim_logic_http_requests_total/);
    const warnings = h.logLines.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
    assert.ok(warnings.some((l) => /logic\.auth\.mode is "none"/.test(l.msg)), "mode none warns");
  } finally {
    await h.close();
  }
  await h.logic.stop(); // idempotent
});

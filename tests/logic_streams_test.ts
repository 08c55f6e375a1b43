/**
 * Logic's side of streams (docs/STREAMS.md): the token opt-in in Connect,
 * push ids, mid pushes published one per mid, ack-requested pushes with
 * `wait=` and their status, the history API, and `goim.logic.Streams`
 * (Recover, Acks) over real gRPC — on the memory stream engines, and on
 * the Redis ones (single and cluster), with the queue a recording producer
 * and job's deliveries made by hand.
 */

import assert from "node:assert/strict";
import * as jose from "jose";
import { Buffer } from "node:buffer";
import { createLogicClient, grpcStatus, logicServiceDefinition, RpcError } from "../proto/grpc.ts";
import type { ConnectReply } from "../proto/messages.ts";
import { createStreamsClient, MAX_ACKS_PER_CALL, MAX_RECOVER_STREAMS } from "../proto/streams.ts";
import { joinHostPort } from "../infra/addr.ts";
import { MemoryPushStatusStore, MemoryStreamStore } from "../infra/memory/streams.ts";
import { RedisPushStatusStore, RedisStreamStore } from "../infra/redis/streams.ts";
import { partitionKey } from "../infra/queue.ts";
import type { PushStatusStore, StreamStore } from "../infra/streams.ts";
import { createHttpHandler } from "../logic/http.ts";
import { newPushId, Pusher } from "../logic/push.ts";
import { AckWaits } from "../logic/push_wait.ts";
import { eventually } from "./eventually.ts";
import { call, type LogicHarness, logicHarness, token } from "./fixtures/logic_fixtures.ts";
import { rejectsWith } from "./fixtures/rpc_assert.ts";
import { redisTargets, uniqueKeyPrefix } from "./redis_cluster_env.ts";

const utf8 = new TextEncoder();
const SECRET = "logic-streams-test-secret-0123456789";
const ID = /^[A-Za-z0-9_-]{22}$/;

interface StreamsHarness extends LogicHarness {
  streams: MemoryStreamStore;
  pushStatus: MemoryPushStatusStore;
}

/** A Logic on memory engines with both stream stores. */
function harness(sets: string[] = [], stores: Partial<{ streams: StreamStore }> = {}) {
  const streams = new MemoryStreamStore({ size: 100, ttlMs: 3_600_000, maxStreams: 1000 });
  const pushStatus = new MemoryPushStatusStore({ ttlMs: 3_600_000 });
  const h = logicHarness(sets, { streams: stores.streams ?? streams, pushStatus });
  return {
    ...h,
    streams,
    pushStatus,
    async close() {
      await h.close();
      await streams.close();
      await pushStatus.close();
    },
  } satisfies StreamsHarness;
}

function connect(h: LogicHarness, fields: Record<string, unknown>, server = "comet-a") {
  return h.logic.service.Connect({ server, cookie: "", token: token(fields) });
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A request's envelope and data over a real socket. */
async function httpCall(base: string, method: string, path: string, body?: string) {
  const res = await fetch(`${base}${path}`, { method, body });
  const json = await res.json();
  return { status: res.status, code: json.code, message: json.message, data: json.data };
}

async function metric(h: LogicHarness, line: string): Promise<number> {
  const text = await h.logic.metrics.registry.text();
  const m = text.split("\n").find((l) => l.startsWith(line + " "));
  return m === undefined ? 0 : Number(m.slice(line.length + 1));
}

// ---------------------------------------------------------------- Connect

Deno.test("Connect: a token without streams gets goim's reply bytes (golden)", async () => {
  const h = harness(["comet.heartbeat_interval=30s", "comet.heartbeat_max=3"]);
  try {
    const reply = await connect(h, { mid: 42, key: "k", room_id: "live://1", accepts: [1000] });
    assert.equal(reply.streams, undefined);
    assert.equal(reply.recover, undefined);
    // What the gRPC server writes: goim's five fields and nothing else.
    const bytes = logicServiceDefinition.Connect.responseSerialize(reply) as Uint8Array;
    assert.equal(hex(bytes), "082a12016b1a086c6976653a2f2f312202e807288088aca3cf02");
  } finally {
    await h.close();
  }
});

Deno.test("Connect: a streams field opts in (105) with its recover positions (106), in both auth modes", async () => {
  const recover = [
    { stream: "room:live://1", epoch: "b8f1c2", pos: 41 },
    { stream: "mid:42", epoch: "", pos: 0 },
  ];
  const none = harness();
  const jwt = harness(["logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`]);
  try {
    const a = await connect(none, { mid: 42, room_id: "live://1", streams: { recover } });
    assert.equal(a.streams, true);
    assert.deepEqual(a.recover, recover);
    const b = await connect(none, { mid: 42, streams: {} });
    assert.equal(b.streams, true);
    assert.deepEqual(b.recover, []);

    const signed = await new jose.SignJWT({ sub: "42" }).setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("1h").sign(utf8.encode(SECRET));
    const c = await connect(jwt, { token: signed, streams: { recover: recover.slice(1) } });
    assert.equal(c.mid, 42);
    assert.equal(c.streams, true);
    assert.deepEqual(c.recover, recover.slice(1));

    // Over gRPC: field 105 and 106 on the wire, decoded by the client.
    const addrs = await none.logic.start();
    const client = createLogicClient(joinHostPort(addrs.grpc!), { deadlineMs: 3000 });
    try {
      const r: ConnectReply = await client.Connect({
        server: "comet-a",
        cookie: "",
        token: token({ mid: 42, streams: { recover } }),
      });
      assert.equal(r.streams, true);
      assert.deepEqual(r.recover, recover);
      const plain = await client.Connect({
        server: "comet-a",
        cookie: "",
        token: token({ mid: 1 }),
      });
      assert.equal(plain.streams, false);
      assert.deepEqual(plain.recover, []);
    } finally {
      client.close();
    }
  } finally {
    await none.close();
    await jwt.close();
  }
});

Deno.test("Connect: an invalid streams field is refused as a malformed token", async () => {
  const h = harness();
  try {
    for (
      const streams of [
        [],
        "yes",
        { recover: "x" },
        { recover: Array.from({ length: 9 }, () => ({ stream: "mid:1", epoch: "", pos: 0 })) },
        { recover: [{ stream: "", epoch: "", pos: 0 }] },
        { recover: [{ stream: "x".repeat(257), epoch: "", pos: 0 }] },
        { recover: [{ stream: "mid:1", epoch: "e".repeat(65), pos: 0 }] },
        { recover: [{ stream: "mid:1", epoch: "", pos: -1 }] },
        { recover: [{ stream: "mid:1", epoch: "", pos: 2 ** 53 }] },
      ]
    ) {
      await assert.rejects(
        connect(h, { mid: 1, streams }),
        (e: unknown) =>
          e instanceof RpcError && e.code === grpcStatus.UNAUTHENTICATED &&
          /^malformed: streams/.test(e.message),
        JSON.stringify(streams).slice(0, 60),
      );
    }
    assert.equal(await metric(h, 'goim_logic_auth_failures_total{reason="malformed"}'), 9);
    // Nothing was routed for the refused connections.
    assert.equal((await h.sessions.keysByMids([1])).size, 0);
  } finally {
    await h.close();
  }
});

// ---------------------------------------------------------------- push API

Deno.test("newPushId: 16 random bytes in base64url, drawn in blocks, never repeating", () => {
  const ids = Array.from({ length: 1000 }, newPushId); // several 256-id blocks
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) {
    assert.match(id, ID);
    const bytes = Buffer.from(id, "base64url");
    assert.equal(bytes.length, 16);
    assert.equal(bytes.toString("base64url"), id, "canonical: the last character's spare bits 0");
  }
});

Deno.test("push: every answer and every queue message carries the push id", async () => {
  const h = harness();
  try {
    const k = await connect(h, { mid: 1, key: "k1" });
    const keys = await call(
      h.logic.handler,
      "POST",
      `/goim/push/keys?operation=1000&keys=${k.key}`,
      {
        body: "a",
      },
    );
    const room = await call(
      h.logic.handler,
      "POST",
      "/goim/push/room?operation=1000&type=live&room=1",
      {
        body: "b",
      },
    );
    const all = await call(h.logic.handler, "POST", "/goim/push/all?operation=1000", { body: "c" });
    const ids = [keys, room, all].map((r) => (r.data as { id: string }).id);
    for (const id of ids) assert.match(id, ID);
    assert.equal(new Set(ids).size, 3);
    assert.deepEqual(h.producer.messages.map((m) => [m.type, m.push_id]), [
      ["PUSH", ids[0]],
      ["ROOM", ids[1]],
      ["BROADCAST", ids[2]],
    ]);
    assert.deepEqual(keys.data, { keys: 1, comets: 1, id: ids[0] });
    assert.deepEqual(room.data, { room: "live://1", queued: 1, id: ids[1] });
    assert.deepEqual(all.data, { queued: 1, id: ids[2] });
  } finally {
    await h.close();
  }
});

Deno.test("push/mids with streams on: one PUSH per distinct mid, keyed mid:<mid>, online or not", async () => {
  const h = harness();
  try {
    await connect(h, { mid: 7, key: "phone" });
    const r = await call(
      h.logic.handler,
      "POST",
      "/goim/push/mids?operation=1001&mids=7,8&mids=7,9",
      {
        body: "m",
      },
    );
    assert.equal(r.status, 200);
    const { id } = r.data as { id: string };
    assert.match(id, ID);
    assert.deepEqual(r.data, { id, mids: 3 });
    assert.deepEqual(
      h.producer.messages.map((m) => ({ ...m, msg: new TextDecoder().decode(m.msg) })),
      [7, 8, 9].map((mid) => ({
        type: "PUSH",
        operation: 1001,
        speed: 0,
        server: "",
        room: "",
        keys: [],
        msg: "m",
        push_id: id,
        mid,
      })),
    );
    // Partitioned by the mid's stream: one mid's pushes stay in order, on one job.
    assert.deepEqual(h.producer.messages.map(partitionKey), ["mid:7", "mid:8", "mid:9"]);
    // ack=1: every mid is a target, pending until job delivers.
    const acked = await call(
      h.logic.handler,
      "POST",
      "/goim/push/mids?operation=1001&mids=7,8&ack=1",
      {
        body: "m",
      },
    );
    const ackId = (acked.data as { id: string }).id;
    assert.deepEqual(h.producer.messages.slice(3).map((m) => [m.mid, m.ack, m.push_id]), [
      [7, true, ackId],
      [8, true, ackId],
    ]);
    const status = await h.pushStatus.get(ackId);
    assert.deepEqual(status?.targets.map((t) => [t.target, t.state]), [
      ["mid:7", "pending"],
      ["mid:8", "pending"],
    ]);
    assert.equal(await metric(h, 'goim_logic_pushes_total{kind="mids",ack="true"}'), 1);
    assert.equal(await metric(h, 'goim_logic_pushes_total{kind="mids",ack="false"}'), 1);
  } finally {
    await h.close();
  }
});

Deno.test("push/keys ack=1: every named key is a target, one without a route offline at once", async () => {
  const h = harness();
  try {
    await connect(h, { mid: 1, key: "k1" });
    const r = await call(
      h.logic.handler,
      "POST",
      "/goim/push/keys?operation=1000&keys=k1,gone,k1&ack=1",
      {
        body: "x",
      },
    );
    const { id } = r.data as { id: string };
    assert.deepEqual(r.data, { keys: 1, comets: 1, id });
    assert.equal(h.producer.messages[0].ack, true);
    const status = await call(h.logic.handler, "GET", `/goim/push/status?id=${id}`);
    assert.equal(status.status, 200);
    const data = status.data as Record<string, unknown>;
    assert.equal(typeof data.created, "number");
    assert.deepEqual({ ...data, created: 0 }, {
      id,
      created: 0,
      targets: [
        { target: "key:k1", state: "pending", sent: 0, acked: 0 },
        { target: "key:gone", state: "offline", sent: 0, acked: 0 },
      ],
      acked: 0,
      pending: 1,
      offline: 1,
    });
    // Without ack there is no status to read.
    const plain = await call(h.logic.handler, "POST", "/goim/push/keys?operation=1000&keys=k1", {
      body: "x",
    });
    const unknown = await call(
      h.logic.handler,
      "GET",
      `/goim/push/status?id=${(plain.data as { id: string }).id}`,
    );
    assert.equal(unknown.status, 404);
    assert.equal(unknown.code, -404);
    assert.match(unknown.message, /^push status: no push /);
    assert.equal(unknown.data, null);
    assert.equal(await metric(h, 'goim_logic_push_status_reads_total{result="found"}'), 1);
    assert.equal(await metric(h, 'goim_logic_push_status_reads_total{result="unknown"}'), 1);
  } finally {
    await h.close();
  }
});

Deno.test("push wait: the answer comes once a fake comet's Acks and job's deliveries settle every target", async () => {
  const h = harness([`grpc.token=${SECRET}`]);
  const addrs = await h.logic.start();
  const comet = createStreamsClient(joinHostPort(addrs.grpc!), { deadlineMs: 3000, token: SECRET });
  try {
    const base = `http://${joinHostPort(addrs.http)}`;
    await connect(h, { mid: 1, key: "k1" }, "comet-a");
    await connect(h, { mid: 2, key: "k2" }, "comet-b");
    const t0 = performance.now();
    const answer = httpCall(
      base,
      "POST",
      "/goim/push/keys?operation=1000&keys=k1,k2,k3&ack=1&wait=10000",
      "x",
    );
    await eventually(() => h.producer.messages.length === 2, "both comets' messages published");
    const id = h.producer.messages[0].push_id!;
    assert.equal(h.logic.waits.active, 1);
    // Job hands the push to both comets ...
    await h.pushStatus.delivered(id, "key:k1", 1);
    await h.pushStatus.delivered(id, "key:k2", 1);
    // ... whose clients ack; an unknown id and a malformed one are ignored.
    await comet.Acks({
      server: "comet-a",
      acks: [{ push_id: id, key: "k1", mid: 1 }, { push_id: "nope", key: "k1", mid: 1 }],
    });
    await comet.Acks({
      server: "comet-b",
      acks: [{ push_id: id, key: "k2", mid: 2 }, { push_id: "bad id!", key: "k2", mid: 2 }],
    });
    const r = await answer;
    assert.equal(r.status, 200);
    assert.deepEqual(r.data, { id, targets: 3, acked: 2, pending: 0, offline: 1 });
    assert.ok(performance.now() - t0 < 5000, "answered on the acks, not at the wait's end");
    assert.equal(h.logic.waits.active, 0);
    assert.equal(await metric(h, 'goim_logic_push_waits_total{outcome="done"}'), 1);
    assert.equal(await metric(h, 'goim_logic_acks_total{result="recorded"}'), 3);
    assert.equal(await metric(h, 'goim_logic_acks_total{result="invalid"}'), 1);

    // Nobody acks: the answer comes when the wait is up, with what is pending.
    const late = await httpCall(
      base,
      "POST",
      "/goim/push/keys?operation=1000&keys=k1&ack=1&wait=150",
      "x",
    );
    assert.equal(late.status, 200);
    assert.deepEqual({ ...late.data, id: "" }, {
      id: "",
      targets: 1,
      acked: 0,
      pending: 1,
      offline: 0,
    });
    assert.equal(await metric(h, 'goim_logic_push_waits_total{outcome="timeout"}'), 1);

    // wait=0 answers the counts at once.
    const now = await httpCall(
      base,
      "POST",
      "/goim/push/keys?operation=1000&keys=none&ack=1&wait=0",
      "x",
    );
    assert.deepEqual({ ...now.data, id: "" }, {
      id: "",
      targets: 1,
      acked: 0,
      pending: 0,
      offline: 1,
    });
  } finally {
    comet.close();
    await h.close();
  }
});

Deno.test("push wait: a client that closes its connection ends its wait", async () => {
  const h = harness();
  const addrs = await h.logic.start({ grpc: false });
  try {
    await connect(h, { mid: 1, key: "k1" });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: addrs.http.port });
    await conn.write(utf8.encode(
      "POST /goim/push/keys?operation=1000&keys=k1&ack=1&wait=30000 HTTP/1.1\r\n" +
        "Host: logic\r\nContent-Length: 1\r\n\r\nx",
    ));
    await eventually(() => h.logic.waits.active === 1, "the push to wait");
    const t0 = performance.now();
    conn.close();
    await eventually(() => h.logic.waits.active === 0, "the wait to end", 5000);
    assert.ok(performance.now() - t0 < 2000, "ended by the close, not by wait=30000");
    assert.equal(await metric(h, 'goim_logic_push_waits_total{outcome="gone"}'), 1);
    // The server goes on serving.
    const ok = await httpCall(
      `http://${joinHostPort(addrs.http)}`,
      "POST",
      "/goim/push/keys?operation=1000&keys=k1",
      "y",
    );
    assert.equal(ok.status, 200);
  } finally {
    await h.close();
  }
});

Deno.test("push wait: beyond the bound of concurrent waits, 503 before anything is published", async () => {
  const h = harness();
  try {
    await connect(h, { mid: 1, key: "k1" });
    const waits = new AckWaits({ store: h.pushStatus, maxWaits: 1 });
    const handler = createHttpHandler({
      pusher: new Pusher({ sessions: h.sessions, producer: h.producer, pushStatus: h.pushStatus }),
      online: h.logic.online,
      nodes: h.logic.nodes,
      registry: h.registry,
      maxBody: 1024,
      apiKeys: [],
      waits,
      pushStatus: h.pushStatus,
    });
    const first = call(handler, "POST", "/goim/push/keys?operation=1000&keys=k1&ack=1&wait=10000", {
      body: "x",
    });
    await eventually(() => h.producer.messages.length === 1, "the first push published");
    const second = await call(
      handler,
      "POST",
      "/goim/push/keys?operation=1000&keys=k1&ack=1&wait=10",
      {
        body: "x",
      },
    );
    assert.equal(second.status, 503);
    assert.match(second.message, /^wait: 1 pushes are waiting for acks already/);
    assert.equal(h.producer.messages.length, 1, "the refused push was not published");
    // Without wait it goes through.
    const third = await call(handler, "POST", "/goim/push/keys?operation=1000&keys=k1&ack=1", {
      body: "x",
    });
    assert.equal(third.status, 200);
    waits.close(); // as Logic.stop does: the held answer comes now
    const r = await first;
    assert.equal(r.status, 200);
    assert.equal((r.data as { pending: number }).pending, 1);
    assert.equal(waits.active, 0);
  } finally {
    await h.close();
  }
});

Deno.test("push: bad ack, wait and status parameters are -400 naming the parameter", async () => {
  const h = harness(["logic.push.max_wait=2s"]);
  const off = harness(["streams.enabled=false"]);
  try {
    const cases: [LogicHarness, string, string, RegExp][] = [
      [h, "POST", "/goim/push/keys?operation=1000&keys=k&ack=2", /^ack: expected 0 or 1/],
      [h, "POST", "/goim/push/keys?operation=1000&keys=k&ack=1&ack=1", /^ack: given 2 times/],
      [h, "POST", "/goim/push/keys?operation=1000&keys=k&wait=10", /^wait: only with ack=1/],
      [
        h,
        "POST",
        "/goim/push/keys?operation=1000&keys=k&ack=1&wait=2001",
        /^wait: expected an integer from 0 to 2000/,
      ],
      [h, "POST", "/goim/push/keys?operation=1000&keys=k&ack=1&wait=-1", /^wait:/],
      [h, "POST", "/goim/push/keys?operation=1000&keys=k&ack=1&wait=1s", /^wait:/],
      [h, "POST", "/goim/push/mids?operation=1000&mids=1&ack=yes", /^ack:/],
      [
        h,
        "POST",
        "/goim/push/room?operation=1000&type=live&room=1&ack=1",
        /^ack, wait: only key and mid pushes/,
      ],
      [h, "POST", "/goim/push/all?operation=1000&wait=5", /^ack, wait: only key and mid pushes/],
      [h, "GET", "/goim/push/status", /^id: required/],
      [h, "GET", "/goim/push/status?id=a%20b", /^id: expected a push id/],
      [h, "GET", `/goim/push/status?id=${"a".repeat(65)}`, /^id: expected a push id/],
      [h, "GET", "/goim/push/status?id=a&id=b", /^id: given 2 times/],
      [
        off,
        "POST",
        "/goim/push/mids?operation=1000&mids=1&ack=1",
        /^ack: a push by mids asks for acks only while streams.enabled/,
      ],
    ];
    for (const [hh, method, path, re] of cases) {
      const r = await call(hh.logic.handler, method, path, method === "POST" ? { body: "x" } : {});
      assert.equal(r.status, 400, path);
      assert.equal(r.code, -400, path);
      assert.match(r.message, re, path);
    }
    assert.equal(h.producer.messages.length + off.producer.messages.length, 0);
    // Off, a mid push is routed by logic as goim does, with its id.
    await connect(off, { mid: 1, key: "k" });
    const r = await call(off.logic.handler, "POST", "/goim/push/mids?operation=1000&mids=1", {
      body: "x",
    });
    assert.deepEqual({ ...r.data as object, id: "" }, { keys: 1, comets: 1, id: "" });
    assert.deepEqual(off.producer.messages.map((m) => [m.server, m.keys, m.mid]), [["comet-a", [
      "k",
    ], undefined]]);
  } finally {
    await h.close();
    await off.close();
  }
});

// ---------------------------------------------------------------- history

Deno.test("history: entries after a position, or the last ones, bodies in base64", async () => {
  const h = harness();
  try {
    const ap = await h.streams.append(
      "room:live://1",
      [1, 2, 3, 4].map((n) => ({
        pushId: `push-${n}`,
        op: 1000 + n,
        body: utf8.encode(`body ${n}`),
      })),
    );
    await h.streams.append("mid:42", [{ pushId: "m1", op: 1000, body: new Uint8Array([0, 255]) }]);
    const get = (q: string) => call(h.logic.handler, "GET", `/goim/history?${q}`);

    const r = await get("room=live://1&after=1&limit=2");
    assert.equal(r.status, 200);
    const data = r.data as { entries: { time: number }[] };
    assert.ok(data.entries.every((e) => typeof e.time === "number" && e.time > 0));
    assert.deepEqual({ ...data, entries: data.entries.map((e) => ({ ...e, time: 0 })) }, {
      stream: "room:live://1",
      epoch: ap.epoch,
      pos: 4,
      entries: [
        { pos: 2, id: "push-2", op: 1002, time: 0, body: btoa("body 2") },
        { pos: 3, id: "push-3", op: 1003, time: 0, body: btoa("body 3") },
      ],
    });
    const last = await get(`stream=${encodeURIComponent("room:live://1")}&limit=1`);
    assert.deepEqual((last.data as { entries: { pos: number }[] }).entries.map((e) => e.pos), [4]);
    const all = await get("room=live://1");
    assert.equal((all.data as { entries: unknown[] }).entries.length, 4);
    const mid = await get("mid=42");
    assert.deepEqual((mid.data as { entries: { body: string }[] }).entries.map((e) => e.body), [
      "AP8=",
    ]);
    assert.equal((await get("stream=mid:%2B042")).status, 200, "a mid stream's name is canonical");
    const empty = await get("mid=43");
    assert.deepEqual(empty.data, { stream: "mid:43", epoch: "", pos: 0, entries: [] });
    assert.equal(await metric(h, 'goim_logic_history_reads_total{result="ok"}'), 6);
  } finally {
    await h.close();
  }
});

Deno.test("history: bad parameters are -400, streams off is 404, a failing store 503", async () => {
  const failing: StreamStore = {
    append: () => Promise.reject(new Error("down")),
    recover: () => Promise.reject(new Error("down")),
    range: () => Promise.reject(new Error("store down")),
    close: () => Promise.resolve(),
  };
  const h = harness();
  const off = harness(["streams.enabled=false"]);
  const broken = harness([], { streams: failing });
  try {
    for (
      const [q, re] of [
        ["", /^stream: required/],
        ["room=live://1&mid=1", /^room, mid: give only one/],
        ["stream=foo", /^stream: expected room:<room key> or mid:<mid>/],
        ["stream=room:", /^stream: expected/],
        ["stream=mid:x", /^stream: expected positive integer/],
        ["mid=0", /^mid: expected positive integer/],
        ["mid=", /^mid: required/],
        ["room=nokey", /^room: expected a room key type:\/\/id/],
        [`room=live://${"r".repeat(260)}`, /^room: the stream name is longer than 256 bytes/],
        ["room=live://1&limit=0", /^limit: expected an integer from 1 to 1000/],
        ["room=live://1&limit=1001", /^limit: expected an integer from 1 to 1000/],
        ["room=live://1&after=-1", /^after: expected an integer from 0 to 9007199254740991/],
        ["room=live://1&after=1.5", /^after:/],
        ["room=live://1&after=1&after=2", /^after: given 2 times/],
      ]
    ) {
      const r = await call(h.logic.handler, "GET", `/goim/history?${q}`);
      assert.equal(r.status, 400, String(q));
      assert.match(r.message, re as RegExp, String(q));
    }
    const disabled = await call(off.logic.handler, "GET", "/goim/history?mid=1");
    assert.equal(disabled.status, 404);
    assert.match(disabled.message, /streams.enabled = false/);
    const down = await call(broken.logic.handler, "GET", "/goim/history?mid=1");
    assert.equal(down.status, 503);
    assert.match(down.message, /^history: stream store failed, retry later: store down/);
    const wrong = await call(h.logic.handler, "POST", "/goim/history?mid=1");
    assert.equal(wrong.status, 405);
  } finally {
    await h.close();
    await off.close();
    await broken.close();
  }
});

Deno.test("history and status take the push API's keys", async () => {
  const h = harness(["logic.auth.api_keys=k-1"]);
  try {
    for (const path of ["/goim/history?mid=1", "/goim/push/status?id=abc"]) {
      assert.equal((await call(h.logic.handler, "GET", path)).status, 401, path);
      const r = await call(h.logic.handler, "GET", path, {
        headers: { authorization: "Bearer k-1" },
      });
      assert.notEqual(r.status, 401, path);
    }
  } finally {
    await h.close();
  }
});

// ---------------------------------------------------------------- goim.logic.Streams

Deno.test("Streams Recover over gRPC: replay after a position, state only, epoch changes, the grpc.token", async () => {
  const h = harness([`grpc.token=${SECRET}`]);
  const addrs = await h.logic.start();
  const addr = joinHostPort(addrs.grpc!);
  const comet = createStreamsClient(addr, { deadlineMs: 3000, token: SECRET });
  const anonymous = createStreamsClient(addr, { deadlineMs: 3000 });
  try {
    const { epoch } = await h.streams.append(
      "mid:42",
      [1, 2, 3].map((n) => ({
        pushId: `p${n}`,
        op: 1000,
        body: utf8.encode(`m${n}`),
        ack: n === 3,
      })),
    );
    const r = await comet.Recover({
      streams: [
        { stream: "mid:42", epoch, pos: 1 },
        { stream: "room:live://1", epoch: "old-epoch", pos: 5 },
      ],
      state_only: ["mid:42", "room:live://2"],
    });
    assert.equal(r.results.length, 4);
    const [replay, changed, state, none] = r.results;
    assert.deepEqual(
      {
        ...replay,
        entries: replay.entries.map((e) => ({
          ...e,
          body: new TextDecoder().decode(e.body),
          time: 0,
        })),
      },
      {
        stream: "mid:42",
        epoch,
        top: 3,
        recovered: true,
        reason: "",
        entries: [
          { pos: 2, push_id: "p2", op: 1000, body: "m2", ack: false, time: 0 },
          { pos: 3, push_id: "p3", op: 1000, body: "m3", ack: true, time: 0 },
        ],
      },
    );
    assert.deepEqual(changed, {
      stream: "room:live://1",
      epoch: "",
      top: 0,
      recovered: false,
      reason: "epoch_changed",
      entries: [],
    });
    assert.deepEqual(state, {
      stream: "mid:42",
      epoch,
      top: 3,
      recovered: true,
      reason: "",
      entries: [],
    });
    assert.deepEqual(none, {
      stream: "room:live://2",
      epoch: "",
      top: 0,
      recovered: true,
      reason: "",
      entries: [],
    });
    assert.equal(await metric(h, 'goim_logic_recover_streams_total{result="recovered"}'), 1);
    assert.equal(await metric(h, 'goim_logic_recover_streams_total{result="state"}'), 2);
    assert.equal(await metric(h, 'goim_logic_recover_streams_total{result="epoch_changed"}'), 1);

    await rejectsWith(
      anonymous.Recover({ streams: [], state_only: ["mid:42"] }),
      "UNAUTHENTICATED",
      "Recover",
    );
    await rejectsWith(anonymous.Acks({ server: "x", acks: [] }), "UNAUTHENTICATED", "Acks");

    // Bounds: INVALID_ARGUMENT, for the whole call.
    const many = Array.from({ length: MAX_RECOVER_STREAMS + 1 }, (_, i) => `mid:${i + 1}`);
    await rejectsWith(
      comet.Recover({ streams: [], state_only: many }),
      "INVALID_ARGUMENT",
      "17 streams",
    );
    await rejectsWith(
      comet.Recover({
        streams: [{ stream: "mid:1", epoch: "e".repeat(65), pos: 0 }],
        state_only: [],
      }),
      "INVALID_ARGUMENT",
      "a long epoch",
    );
    await rejectsWith(
      comet.Recover({ streams: [], state_only: [""] }),
      "INVALID_ARGUMENT",
      "an empty stream name",
    );
    // A room key too long for a stream has none: answered as a stream with no history.
    const long = `room:live://${"r".repeat(300)}`;
    const noStream = await comet.Recover({
      streams: [{ stream: long, epoch: "e1", pos: 3 }],
      state_only: [long],
    });
    assert.deepEqual(noStream.results.map((s) => [s.epoch, s.top, s.recovered, s.reason]), [
      ["", 0, false, "epoch_changed"],
      ["", 0, true, ""],
    ]);
    const acks = Array.from(
      { length: MAX_ACKS_PER_CALL + 1 },
      () => ({ push_id: "p", key: "k", mid: 1 }),
    );
    await rejectsWith(comet.Acks({ server: "comet-a", acks }), "INVALID_ARGUMENT", "1025 acks");
    assert.equal(await metric(h, 'goim_logic_recover_calls_total{result="invalid"}'), 3);
  } finally {
    comet.close();
    anonymous.close();
    await h.close();
  }
});

Deno.test("Streams Recover: a failing store answers that stream unavailable; streams off, every stream disabled", async () => {
  const real = new MemoryStreamStore({ size: 10, ttlMs: 60_000, maxStreams: 10 });
  const { epoch } = await real.append("mid:1", [{ pushId: "a", op: 1000, body: utf8.encode("a") }]);
  const store: StreamStore = {
    append: (s, e) => real.append(s, e),
    recover: (s, since) =>
      s === "mid:2"
        ? Promise.reject(new Error("redis down"))
        : s === "mid:3"
        ? new Promise(() => {}) // never answers
        : real.recover(s, since),
    range: (s, o) => real.range(s, o),
    close: () => real.close(),
  };
  const h = harness(["streams.recover.timeout=200ms"], { streams: store });
  const off = harness(["streams.enabled=false"]);
  try {
    const r = await h.logic.streamsService.Recover({
      streams: [{ stream: "mid:1", epoch, pos: 0 }, { stream: "mid:2", epoch: "x", pos: 1 }],
      state_only: ["mid:3"],
    });
    assert.deepEqual(r.results.map((s) => [s.stream, s.recovered, s.reason, s.entries.length]), [
      ["mid:1", true, "", 1],
      ["mid:2", false, "unavailable", 0],
      ["mid:3", false, "unavailable", 0],
    ]);
    assert.equal(await metric(h, 'goim_logic_recover_streams_total{result="unavailable"}'), 2);
    assert.ok(h.logLines.some((l) => l.includes("streams: recover failed")));

    const d = await off.logic.streamsService.Recover({
      streams: [{ stream: "mid:1", epoch, pos: 0 }],
      state_only: ["room:live://1"],
    });
    assert.deepEqual(d.results.map((s) => [s.stream, s.recovered, s.reason]), [
      ["mid:1", false, "disabled"],
      ["room:live://1", false, "disabled"],
    ]);
  } finally {
    await h.close();
    await off.close();
    await real.close();
  }
});

Deno.test("Streams Acks: a failing status store is UNAVAILABLE; acks for a mid target count once per key", async () => {
  const h = harness();
  const failing: PushStatusStore = {
    create: () => Promise.resolve(),
    delivered: () => Promise.resolve(),
    acked: () => Promise.reject(new Error("redis down")),
    get: () => Promise.resolve(null),
    close: () => Promise.resolve(),
  };
  const broken = logicHarness([], { pushStatus: failing });
  try {
    await assert.rejects(
      broken.logic.streamsService.Acks({ server: "c", acks: [{ push_id: "p", key: "k", mid: 1 }] }),
      (e: unknown) =>
        e instanceof RpcError && e.code === grpcStatus.UNAVAILABLE && /redis down/.test(e.message),
    );
    const r = await call(h.logic.handler, "POST", "/goim/push/mids?operation=1000&mids=5&ack=1", {
      body: "x",
    });
    const { id } = r.data as { id: string };
    await h.pushStatus.delivered(id, "mid:5", 2);
    const ack = { push_id: id, key: "phone", mid: 5 };
    await h.logic.streamsService.Acks({ server: "c", acks: [ack, ack, { ...ack, key: "laptop" }] });
    const s = await h.pushStatus.get(id);
    assert.deepEqual(s?.targets, [{ target: "mid:5", state: "acked", sent: 2, acked: 2 }]);
  } finally {
    await h.close();
    await broken.close();
  }
});

// ---------------------------------------------------------------- on Redis

// The distributed mode's stores, on the single Redis and on the cluster.
for (const redis of await redisTargets()) {
  Deno.test({
    name: `${redis.name} stores: ack wait settled by Acks, status, history, Recover`,
    ignore: redis.ignore,
    fn: async () => {
      redis.assertReachable();
      const keyPrefix = uniqueKeyPrefix();
      const streams = await RedisStreamStore.connect({
        ...redis.options(keyPrefix),
        size: 100,
        ttlMs: 3_600_000,
      });
      const pushStatus = await RedisPushStatusStore.connect({
        ...redis.options(keyPrefix),
        ttlMs: 3_600_000,
      });
      const h = logicHarness([], { streams, pushStatus });
      try {
        await connect(h, { mid: 1, key: "k1" });
        const answer = call(
          h.logic.handler,
          "POST",
          "/goim/push/mids?operation=1000&mids=1,2&ack=1&wait=10000",
          { body: "x" },
        );
        await eventually(() => h.producer.messages.length === 2, "both mids' messages published");
        const id = h.producer.messages[0].push_id!;
        // Job: mid 1 handed to its device, mid 2 offline (kept in its stream).
        await pushStatus.delivered(id, "mid:1", 1);
        await pushStatus.delivered(id, "mid:2", 0);
        await h.logic.streamsService.Acks({
          server: "comet-a",
          acks: [{ push_id: id, key: "k1", mid: 1 }],
        });
        const r = await answer;
        assert.deepEqual(r.data, { id, targets: 2, acked: 1, pending: 0, offline: 1 });
        const status = await call(h.logic.handler, "GET", `/goim/push/status?id=${id}`);
        assert.deepEqual((status.data as { targets: unknown[] }).targets, [
          { target: "mid:1", state: "acked", sent: 1, acked: 1 },
          { target: "mid:2", state: "offline", sent: 0, acked: 0 },
        ]);

        const { epoch } = await streams.append("mid:2", [
          { pushId: id, op: 1000, body: utf8.encode("x"), ack: true },
        ]);
        const history = await call(h.logic.handler, "GET", "/goim/history?mid=2");
        assert.deepEqual(
          (history.data as { entries: { id: string; body: string }[] }).entries.map((e) => [
            e.id,
            e.body,
          ]),
          [[id, "eA=="]],
        );
        const rec = await h.logic.streamsService.Recover({
          streams: [{ stream: "mid:2", epoch: "", pos: 0 }],
          state_only: ["room:live://none"],
        });
        assert.deepEqual(
          rec.results.map((s) => [s.stream, s.epoch, s.top, s.recovered, s.entries.length]),
          [["mid:2", epoch, 1, true, 1], ["room:live://none", "", 0, true, 0]],
        );
        assert.equal(rec.results[0].entries[0].ack, true);
      } finally {
        await h.close();
        await streams.close();
        await pushStatus.close();
        await redis.deleteKeys(keyPrefix);
      }
    },
  });
}

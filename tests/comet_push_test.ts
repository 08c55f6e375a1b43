/**
 * Comet pushes over real sockets: key, room and broadcast pushes in goim's
 * framing (TCP: raw inner frames; WebSocket: op 9 envelopes), accepts
 * filtering, op 9 batches from job, coalescing, gRPC and WSS.
 */

import assert from "node:assert/strict";
import { createCometClient } from "../proto/grpc.ts";
import { encodeBatch, Op, ReasonCode } from "../protocol/mod.ts";
import {
  eventually,
  RawWsTestClient,
  sample,
  scrape,
  startComet,
  TcpTestClient,
  TEST_CERT,
  TEST_KEY,
  WsTestClient,
} from "./fixtures/comet_fixtures.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const proto = (op: number, body: string) => ({ ver: 1, op, seq: 0, body: enc.encode(body) });

Deno.test("comet: key pushes honour accepts; TCP gets raw frames, WebSocket an op 9 envelope", async () => {
  const h = await startComet();
  try {
    const t = await TcpTestClient.connect(h.addrs.tcp[0]);
    const w = await WsTestClient.connect(h.addrs.ws[0]);
    await t.auth({ key: "t", accepts: [1000] });
    await w.auth({ key: "w", accepts: [1000, 1001] });
    const s = h.comet.service;
    await s.PushMsg({ keys: ["t", "w", "nobody"], protoOp: 1000, proto: proto(1000, "a") });
    await s.PushMsg({ keys: ["t", "w"], protoOp: 1001, proto: proto(1001, "b") });
    await w.until(() => w.count >= 3, "2 pushes"); // op 8 + 2 pushes
    await t.next((f) => f.op === 1000);
    // The op 1001 push is not for t: a heartbeat round trip proves nothing else is in flight.
    await t.send(Op.Heartbeat);
    await t.next((f) => f.op === Op.HeartbeatReply);
    assert.deepEqual(t.frames.map((f) => f.op), [Op.AuthReply, 1000, Op.HeartbeatReply]);
    assert.equal(t.frames[1].ver, 1);
    assert.equal(t.frames[1].seq, 0);
    assert.equal(text(t.frames[1].body), "a");
    const pushes = w.frames.filter((f) => f.op >= 1000);
    assert.deepEqual(pushes.map((f) => [f.op, text(f.body)]), [[1000, "a"], [1001, "b"]]);
    assert.ok(
      pushes.every((f) => f.envelope >= 0),
      "every WebSocket push arrives in an op 9 envelope",
    );
    t.close();
    w.close();
    await Promise.all([t.done, w.done]);
  } finally {
    await h.close();
  }
});

Deno.test("comet: room pushes reach every member whatever its accepts; broadcast filters", async () => {
  const h = await startComet();
  try {
    const a = await TcpTestClient.connect(h.addrs.tcp[0]);
    const b = await WsTestClient.connect(h.addrs.ws[0]);
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await a.auth({ key: "a", room_id: "live://1", accepts: [] });
    await b.auth({ key: "b", room_id: "live://1", accepts: [2000] });
    await c.auth({ key: "c", room_id: "live://2", accepts: [2000] });
    const s = h.comet.service;
    await s.BroadcastRoom({ roomID: "live://1", proto: proto(1500, "room") });
    await s.BroadcastRoom({ roomID: "live://nobody", proto: proto(1500, "void") });
    await s.Broadcast({ protoOp: 2000, proto: proto(2000, "all"), speed: 0 });
    await b.until(() => b.byOp.get(1500) === 1 && b.byOp.get(2000) === 1, "room + broadcast");
    await c.next((f) => f.op === 2000);
    await a.next((f) => f.op === 1500);
    await a.send(Op.Heartbeat);
    await a.next((f) => f.op === Op.HeartbeatReply);
    assert.equal(a.byOp.get(2000), undefined, "a does not accept 2000");
    assert.equal(c.byOp.get(1500), undefined, "c is in another room");
    assert.deepEqual((await s.Rooms({})).rooms, { "live://1": true, "live://2": true });
    // Paced broadcast (speed in connections per second) returns at once and still arrives.
    await s.Broadcast({ protoOp: 2000, proto: proto(2000, "paced"), speed: 20 });
    await b.until(() => b.byOp.get(2000) === 2, "paced broadcast");
    await c.until(() => c.byOp.get(2000) === 2, "paced broadcast");
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_pushes_total", 'kind="room"'), 2);
    assert.equal(sample(m, "goim_comet_pushes_total", 'kind="broadcast"'), 2);
    assert.ok(sample(m, "goim_comet_frames_out_total", 'transport="tcp"') >= 4);
    for (const x of [a, b, c]) x.close();
    await Promise.all([a.done, b.done, c.done]);
  } finally {
    await h.close();
  }
});

Deno.test("comet: an op 9 proto (job's batch) is delivered as its inner frames", async () => {
  const h = await startComet();
  try {
    const t = await TcpTestClient.connect(h.addrs.tcp[0]);
    const w = await WsTestClient.connect(h.addrs.ws[0]);
    await t.auth({ key: "t", room_id: "live://9" });
    await w.auth({ key: "w", room_id: "live://9" });
    const batch = encodeBatch([
      { op: 1000, body: enc.encode("m1") },
      { op: 1000, body: enc.encode("m2") },
      { op: 1001, body: enc.encode("m3") },
    ]);
    await h.comet.service.BroadcastRoom({
      roomID: "live://9",
      proto: { ver: 1, op: Op.Raw, seq: 0, body: batch.tcp },
    });
    await t.until(() => t.count === 4, "3 frames");
    await w.until(() => w.count === 4, "3 frames");
    assert.deepEqual(t.frames.slice(1).map((f) => text(f.body)), ["m1", "m2", "m3"]);
    assert.ok(!t.frames.some((f) => f.op === Op.Raw), "TCP never sees op 9");
    const envs = new Set(w.frames.slice(1).map((f) => f.envelope));
    assert.equal(envs.size, 1, "one WebSocket message holds the whole batch");
    // A malformed op 9 body is refused.
    await assert.rejects(
      h.comet.service.BroadcastRoom({
        roomID: "live://9",
        proto: { ver: 1, op: Op.Raw, seq: 0, body: new Uint8Array([0, 0, 0, 99]) },
      }),
      /op 9 body/,
    );
    t.close();
    w.close();
    await Promise.all([t.done, w.done]);
  } finally {
    await h.close();
  }
});

Deno.test("comet: Broadcast with an op 9 body (job's broadcast batch) is filtered by accepts on protoOp", async () => {
  const h = await startComet();
  try {
    const yes = await TcpTestClient.connect(h.addrs.tcp[0]);
    const ws = await WsTestClient.connect(h.addrs.ws[0]);
    const no = await TcpTestClient.connect(h.addrs.tcp[0]);
    await yes.auth({ key: "yes", accepts: [3000] });
    await ws.auth({ key: "ws", accepts: [3000] });
    await no.auth({ key: "no", accepts: [3001] });
    const batch = encodeBatch([
      { op: 3000, body: enc.encode("b1") },
      { op: 3000, body: enc.encode("b2") },
      { op: 3000, body: enc.encode("b3") },
    ]);
    await h.comet.service.Broadcast({
      protoOp: 3000,
      proto: { ver: 1, op: Op.Raw, seq: 0, body: batch.tcp },
      speed: 0,
    });
    await yes.until(() => yes.count === 4, "3 frames");
    await ws.until(() => ws.count === 4, "3 frames");
    assert.deepEqual(yes.frames.slice(1).map((f) => [f.op, text(f.body)]), [
      [3000, "b1"],
      [3000, "b2"],
      [3000, "b3"],
    ]);
    assert.ok(!yes.frames.some((f) => f.op === Op.Raw), "TCP never sees op 9");
    assert.deepEqual(ws.frames.slice(1).map((f) => text(f.body)), ["b1", "b2", "b3"]);
    assert.equal(new Set(ws.frames.slice(1).map((f) => f.envelope)).size, 1, "one envelope");
    // `no` does not accept 3000: a heartbeat round trip proves nothing else is in flight.
    await no.send(Op.Heartbeat);
    await no.next((f) => f.op === Op.HeartbeatReply);
    assert.deepEqual(no.frames.map((f) => f.op), [Op.AuthReply, Op.HeartbeatReply]);
    // A malformed op 9 body is refused, as for BroadcastRoom.
    await assert.rejects(
      h.comet.service.Broadcast({
        protoOp: 3000,
        proto: { ver: 1, op: Op.Raw, seq: 0, body: new Uint8Array([0, 0, 0, 99]) },
        speed: 0,
      }),
      /op 9 body/,
    );
    for (const x of [yes, ws, no]) x.close();
    await Promise.all([yes.done, ws.done, no.done]);
  } finally {
    await h.close();
  }
});

Deno.test("comet: pushes queued together leave in one write / one envelope", async () => {
  const h = await startComet();
  try {
    const w = await WsTestClient.connect(h.addrs.ws[0]);
    const t = await TcpTestClient.connect(h.addrs.tcp[0]);
    await w.auth({ key: "w", room_id: "live://c" });
    await t.auth({ key: "t", room_id: "live://c" });
    const s = h.comet.service;
    // Five calls in one turn of the event loop: the flusher runs after them.
    const calls = [];
    for (let i = 0; i < 5; i++) {
      calls.push(s.BroadcastRoom({ roomID: "live://c", proto: proto(1000, `m${i}`) }));
    }
    await Promise.all(calls);
    await w.until(() => w.byOp.get(1000) === 5, "5 frames");
    await t.until(() => t.byOp.get(1000) === 5, "5 frames");
    const pushes = w.frames.filter((f) => f.op === 1000);
    assert.deepEqual(pushes.map((f) => text(f.body)), ["m0", "m1", "m2", "m3", "m4"]);
    assert.equal(new Set(pushes.map((f) => f.envelope)).size, 1, "merged into one envelope");
    assert.deepEqual(t.frames.filter((f) => f.op === 1000).map((f) => text(f.body)), [
      "m0",
      "m1",
      "m2",
      "m3",
      "m4",
    ]);
    w.close();
    t.close();
    await Promise.all([w.done, t.done]);
  } finally {
    await h.close();
  }
});

Deno.test("comet: gRPC goim.comet.Comet serves PushMsg, BroadcastRoom and Rooms", async () => {
  const h = await startComet([], { grpc: true });
  const client = createCometClient(h.addrs.grpc!);
  try {
    assert.match(h.addrs.grpc!, /^127\.0\.0\.1:\d+$/);
    const [rec] = await h.registry.list();
    assert.equal(rec.grpcAddr, h.addrs.grpc);
    const t = await TcpTestClient.connect(h.addrs.tcp[0]);
    await t.auth({ key: "g", room_id: "live://g", accepts: [1000] });
    await client.PushMsg({ keys: ["g"], protoOp: 1000, proto: proto(1000, "via grpc") });
    await client.BroadcastRoom({ roomID: "live://g", proto: proto(1001, "room via grpc") });
    const rooms = await client.Rooms({});
    assert.deepEqual(rooms.rooms, { "live://g": true });
    await t.until(() => t.count === 3, "2 pushes");
    assert.deepEqual(t.frames.slice(1).map((f) => text(f.body)), ["via grpc", "room via grpc"]);
    await assert.rejects(
      client.PushMsg({ keys: [], protoOp: 1000, proto: proto(1000, "x") }),
      /INVALID_ARGUMENT/,
    );
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_grpc_calls_total", 'method="PushMsg"'), 2);
    t.close();
    await t.done;
  } finally {
    client.close();
    await h.close();
  }
});

Deno.test("comet: WSS speaks the same protocol over TLS", async () => {
  const dir = await Deno.makeTempDir({ prefix: "comet_wss_" });
  try {
    await Deno.writeTextFile(`${dir}/cert.pem`, TEST_CERT);
    await Deno.writeTextFile(`${dir}/key.pem`, TEST_KEY);
    const h = await startComet([
      "comet.websocket.tls_bind=127.0.0.1:0",
      `comet.websocket.cert_file=${dir}/cert.pem`,
      `comet.websocket.key_file=${dir}/key.pem`,
    ]);
    try {
      assert.equal(h.addrs.wss.length, 1);
      const c = await RawWsTestClient.connectTls(h.addrs.wss[0], "/sub?room=1");
      await c.auth({ key: "s", room_id: "live://s" });
      await h.comet.service.BroadcastRoom({ roomID: "live://s", proto: proto(1000, "secure") });
      const f = await c.next((f) => f.op === 1000);
      assert.equal(text(f.body), "secure");
      assert.ok(f.envelope >= 0);
      const m = await scrape(h.addrs);
      assert.equal(sample(m, "goim_comet_connections", 'transport="wss"'), 1);
      await h.comet.shutdown();
      await c.waitClosed();
      assert.equal(c.closeCode, ReasonCode.ShuttingDown);
      assert.equal(c.reason()?.code, ReasonCode.ShuttingDown);
      await c.done;
    } finally {
      await h.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("comet: the client SDK (GoimClient) works over TCP and WebSocket", async () => {
  const { GoimClient } = await import("../client/mod.ts");
  const h = await startComet();
  const clients = [
    `tcp://127.0.0.1:${h.addrs.tcp[0].port}`,
    `ws://127.0.0.1:${h.addrs.ws[0].port}/sub`,
  ].map((url, i) =>
    new GoimClient({
      url,
      token: { mid: i, key: `sdk${i}`, room_id: "live://sdk", platform: "test", accepts: [1000] },
      reconnect: { enabled: false },
    })
  );
  try {
    const got: string[][] = clients.map(() => []);
    clients.forEach((c, i) => c.on("message", (m) => got[i].push(`${m.op}:${text(m.body)}`)));
    await Promise.all(clients.map((c) => c.connect()));
    await clients[0].changeRoom("live://sdk2");
    await clients[1].sub([1001]);
    await h.comet.service.BroadcastRoom({ roomID: "live://sdk", proto: proto(1000, "room") });
    await h.comet.service.PushMsg({
      keys: ["sdk0", "sdk1"],
      protoOp: 1001,
      proto: proto(1001, "k"),
    });
    await h.comet.service.BroadcastRoom({ roomID: "live://sdk2", proto: proto(1000, "room2") });
    await eventually(() => got[0].length >= 1 && got[1].length >= 2, "the SDK clients' pushes");
    assert.deepEqual(got[0], ["1000:room2"]);
    assert.deepEqual(got[1], ["1000:room", "1001:k"]);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await h.close();
  }
});

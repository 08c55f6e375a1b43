/**
 * Comet connection lifecycle over real sockets: auth, heartbeat, room
 * changes, sub/unsub, upstream messages, replacement, auth failure,
 * handshake timeout, protocol errors.
 */

import assert from "node:assert/strict";
import { decodeHeartbeatReply, Op, ReasonCode } from "../protocol/mod.ts";
import {
  eventually,
  sample,
  scrape,
  startComet,
  TcpTestClient,
  WsTestClient,
} from "./fixtures/comet_fixtures.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("comet: TCP and WebSocket clients authenticate; op 8 echoes ver and seq", async () => {
  const h = await startComet();
  try {
    const tcp = await TcpTestClient.connect(h.addrs.tcp[0]);
    const ws = await WsTestClient.connect(h.addrs.ws[0], "?platform=web&x=1");
    const a = await tcp.auth({ mid: 7, key: "t1", room_id: "live://1" });
    assert.equal(a.ver, 1);
    assert.equal(a.body.length, 0);
    // A custom ver and seq are echoed.
    await ws.send(
      Op.Auth,
      JSON.stringify({ mid: 8, key: "w1", room_id: "live://1", accepts: [1000] }),
      4242,
    );
    const b = await ws.next((f) => f.op === Op.AuthReply);
    assert.equal(b.seq, 4242);
    assert.equal(b.envelope, -1, "replies are plain frames, not envelopes");
    assert.deepEqual(h.comet.stats(), { connections: 2, rooms: 1, ips: 1 });
    assert.equal(h.logic.connects.length, 2);
    assert.equal(h.logic.connects[0].server, "comet-test");
    assert.equal(h.logic.connects[0].cookie, "");
    assert.equal(JSON.parse(text(h.logic.connects[0].token)).key, "t1");
    tcp.close();
    ws.close();
    await Promise.all([tcp.done, ws.done]);
    await eventually(() => h.logic.disconnects.length === 2, "two Disconnect calls");
    assert.deepEqual(
      h.logic.disconnects.map((d) => d.key).sort(),
      ["t1", "w1"],
    );
    assert.equal(h.logic.disconnects[0].server, "comet-test");
  } finally {
    await h.close();
  }
});

Deno.test("comet: heartbeat answers op 3 with the room's count (local, then cluster-wide)", async () => {
  const h = await startComet();
  try {
    const a = await TcpTestClient.connect(h.addrs.tcp[0]);
    const b = await WsTestClient.connect(h.addrs.ws[0]);
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await a.auth({ key: "a", room_id: "live://7" });
    await b.auth({ key: "b", room_id: "live://7" });
    await c.auth({ key: "c" });
    const seq = await a.send(Op.Heartbeat, "ping");
    const r = await a.next((f) => f.op === Op.HeartbeatReply);
    assert.equal(r.seq, seq);
    assert.equal(decodeHeartbeatReply(r.body), 2, "two members locally");
    await c.send(Op.Heartbeat);
    const rc = await c.next((f) => f.op === Op.HeartbeatReply);
    assert.equal(decodeHeartbeatReply(rc.body), 0, "no room: 0");
    // Once logic reports a cluster-wide count, heartbeats carry it.
    h.logic.allRoomCount = { "live://7": 1234 };
    const renews = h.logic.renews.length;
    await eventually(() => h.logic.renews.length > renews + 1, "a RenewOnline round trip");
    assert.deepEqual(h.logic.renews.at(-1)!.roomCount, { "live://7": 2 });
    assert.equal(h.logic.renews.at(-1)!.server, "comet-test");
    await b.send(Op.Heartbeat);
    const rb = await b.next((f) => f.op === Op.HeartbeatReply);
    assert.equal(decodeHeartbeatReply(rb.body), 1234);
    assert.equal(rb.envelope, -1);
    for (const x of [a, b, c]) x.close();
    await Promise.all([a.done, b.done, c.done]);
  } finally {
    await h.close();
  }
});

Deno.test("comet: only op 2 resets the idle timer; idle clients get op 6 4003", async () => {
  // idle timeout = 1s × 1.
  const h = await startComet(["comet.heartbeat_interval=1s", "comet.heartbeat_max=1"]);
  try {
    const live = await TcpTestClient.connect(h.addrs.tcp[0]);
    const chatty = await TcpTestClient.connect(h.addrs.tcp[0]);
    await live.auth({ key: "live" });
    await chatty.auth({ key: "chatty" });
    const start = performance.now();
    // `live` heartbeats; `chatty` only changes rooms, which must not count as activity.
    while (!chatty.isClosed) {
      await live.send(Op.Heartbeat);
      await chatty.send(Op.ChangeRoom, "live://1").catch(() => {});
      await new Promise((r) => setTimeout(r, 200)); // the client's heartbeat period
      assert.ok(performance.now() - start < 5000, "chatty was never timed out");
    }
    await chatty.waitClosed();
    assert.equal(chatty.reason()?.code, ReasonCode.IdleTimeout);
    assert.ok(performance.now() - start >= 900, "timed out no earlier than the idle timeout");
    assert.equal(live.isClosed, false);
    await live.send(Op.Heartbeat);
    await live.until(() => (live.byOp.get(Op.HeartbeatReply) ?? 0) > 3, "heartbeat replies");
    live.close();
    await Promise.all([live.done, chatty.done]);
  } finally {
    await h.close();
  }
});

Deno.test("comet: client heartbeats refresh the route in logic every route_heartbeat_interval", async () => {
  const h = await startComet(["comet.route_heartbeat_interval=1s"]);
  try {
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ mid: 5, key: "route" });
    await c.send(Op.Heartbeat);
    await c.next((f) => f.op === Op.HeartbeatReply);
    assert.equal(h.logic.heartbeats.length, 0, "not before the interval");
    const start = performance.now();
    while (h.logic.heartbeats.length === 0) {
      assert.ok(performance.now() - start < 3000, "no Heartbeat call within 3 s");
      await c.send(Op.Heartbeat);
      await new Promise((r) => setTimeout(r, 100)); // the client's heartbeat period
    }
    assert.deepEqual(h.logic.heartbeats[0], { mid: 5, key: "route", server: "comet-test" });
    c.close();
    await c.done;
  } finally {
    await h.close();
  }
});

Deno.test("comet: change room and sub/unsub reply with the body echoed", async () => {
  const h = await startComet();
  try {
    for (
      const connect of [
        () => TcpTestClient.connect(h.addrs.tcp[0]),
        () => WsTestClient.connect(h.addrs.ws[0]),
      ]
    ) {
      const c = await connect();
      await c.auth({ key: "r", room_id: "live://1", accepts: [1000] });
      let seq = await c.send(Op.ChangeRoom, "live://2");
      let f = await c.next((f) => f.op === Op.ChangeRoomReply);
      assert.equal(f.seq, seq);
      assert.equal(text(f.body), "live://2");
      assert.deepEqual(Object.keys((await h.comet.service.Rooms({})).rooms), ["live://2"]);
      seq = await c.send(Op.Sub, "1001,1002");
      f = await c.next((f) => f.op === Op.SubReply);
      assert.equal(f.seq, seq);
      assert.equal(text(f.body), "1001,1002");
      seq = await c.send(Op.Unsub, "1000");
      f = await c.next((f) => f.op === Op.UnsubReply);
      assert.equal(text(f.body), "1000");
      // The accepts set now is {1001, 1002}.
      const body = new TextEncoder().encode("x");
      for (const op of [1000, 1001, 1002]) {
        await h.comet.service.PushMsg({
          keys: ["r"],
          protoOp: op,
          proto: { ver: 1, op, seq: 0, body },
        });
      }
      await c.until(() => (c.byOp.get(1001) ?? 0) + (c.byOp.get(1002) ?? 0) === 2, "two pushes");
      assert.equal(c.byOp.get(1000), undefined);
      // Leaving every room.
      await c.send(Op.ChangeRoom, "");
      await c.next((f) => f.op === Op.ChangeRoomReply && f.body.length === 0);
      assert.deepEqual((await h.comet.service.Rooms({})).rooms, {});
      // A bad op list is a protocol error.
      await c.send(Op.Sub, "10x0");
      await c.waitClosed();
      assert.equal(c.reason()?.code, ReasonCode.ProtocolError);
      await c.done;
    }
  } finally {
    await h.close();
  }
});

Deno.test("comet: op 4 goes to logic.Receive and is echoed as op 4, as goim's binary does", async () => {
  const h = await startComet();
  try {
    for (
      const connect of [
        () => TcpTestClient.connect(h.addrs.tcp[0]),
        () => WsTestClient.connect(h.addrs.ws[0]),
      ]
    ) {
      const c = await connect();
      await c.auth({ mid: 99, key: "up" });
      const n = h.logic.receives.length;
      const seq = await c.send(Op.SendMsg, "hello logic");
      const f = await c.next((f) => f.op === Op.SendMsg);
      assert.equal(f.seq, seq);
      assert.equal(f.body.length, 0);
      assert.equal(h.logic.receives.length, n + 1);
      const r = h.logic.receives[n];
      assert.equal(r.mid, 99);
      assert.equal(r.proto!.op, Op.SendMsg);
      assert.equal(r.proto!.seq, seq);
      assert.equal(text(r.proto!.body), "hello logic");
      c.close();
      await c.done;
    }
  } finally {
    await h.close();
  }
});

Deno.test("comet: a second connection with the same key replaces the first (op 6 4004)", async () => {
  const h = await startComet();
  try {
    const old = await TcpTestClient.connect(h.addrs.tcp[0]);
    await old.auth({ mid: 3, key: "dup", room_id: "live://1" });
    const neu = await WsTestClient.connect(h.addrs.ws[0]);
    await neu.auth({ mid: 3, key: "dup", room_id: "live://1" });
    await old.waitClosed();
    assert.equal(old.reason()?.code, ReasonCode.Replaced);
    assert.equal(h.comet.stats().connections, 1);
    // The new connection gets pushes for the key; the old one's close did not
    // disconnect the key in logic.
    const body = new TextEncoder().encode("for dup");
    await h.comet.service.BroadcastRoom({
      roomID: "live://1",
      proto: { ver: 1, op: 1000, seq: 0, body },
    });
    await neu.next((f) => f.op === 1000);
    assert.equal(h.logic.disconnects.length, 0);
    neu.close();
    await Promise.all([old.done, neu.done]);
    await eventually(() => h.logic.disconnects.length === 1, "one Disconnect");
    assert.equal(h.logic.disconnects[0].key, "dup");
  } finally {
    await h.close();
  }
});

Deno.test("comet: a refused token gets op 6 4001 with logic's message, then close", async () => {
  const h = await startComet();
  try {
    const t = await TcpTestClient.connect(h.addrs.tcp[0]);
    await assert.rejects(t.auth({ mid: 1, token: "bad" }), /4001/);
    await t.waitClosed();
    assert.deepEqual(t.reason(), { code: ReasonCode.AuthFailed, message: "invalid token" });
    const w = await WsTestClient.connect(h.addrs.ws[0]);
    await assert.rejects(w.auth({ mid: -1 }), /4001/);
    await w.waitClosed();
    assert.equal(w.closeCode, ReasonCode.AuthFailed, "WebSocket close code repeats the reason");
    await Promise.all([t.done, w.done]);
    assert.equal(h.comet.stats().connections, 0);
    assert.equal(h.logic.disconnects.length, 0, "never connected: no Disconnect");
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_auth_failures_total"), 2);
  } finally {
    await h.close();
  }
});

Deno.test("comet: no op 7 within the handshake timeout gets op 6 4002; earlier ops are ignored", async () => {
  const h = await startComet(["comet.handshake_timeout=300ms"]);
  try {
    const t = await TcpTestClient.connect(h.addrs.tcp[0]);
    const w = await WsTestClient.connect(h.addrs.ws[0]);
    // Ops other than 7 before auth are ignored: no reply.
    await t.send(Op.Heartbeat);
    await w.send(Op.ChangeRoom, "live://1");
    await Promise.all([t.waitClosed(), w.waitClosed()]);
    for (const c of [t, w]) {
      assert.deepEqual(c.frames.map((f) => f.op), [Op.DisconnectReply]);
      assert.equal(c.reason()?.code, ReasonCode.HandshakeTimeout);
    }
    await Promise.all([t.done, w.done]);
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_handshake_timeouts_total"), 2);
  } finally {
    await h.close();
  }
});

Deno.test("comet: a malformed frame closes only its connection (op 6 4000)", async () => {
  const h = await startComet();
  try {
    const good = await TcpTestClient.connect(h.addrs.tcp[0]);
    const goodWs = await WsTestClient.connect(h.addrs.ws[0]);
    await good.auth({ key: "good", room_id: "live://1" });
    await goodWs.auth({ key: "goodws", room_id: "live://1" });
    // TCP: headerLen 15.
    const bad = await TcpTestClient.connect(h.addrs.tcp[0]);
    await bad.auth({ key: "bad", room_id: "live://1" });
    const frame = new Uint8Array(16);
    new DataView(frame.buffer).setUint32(0, 16);
    new DataView(frame.buffer).setUint16(4, 15);
    new DataView(frame.buffer).setUint32(8, Op.Heartbeat);
    await bad.sendRaw(frame);
    // TCP: body above protocol.max_body.
    const big = await TcpTestClient.connect(h.addrs.tcp[0]);
    await big.auth({ key: "big" });
    await big.send(Op.SendMsg, new Uint8Array(4097));
    // WebSocket: packLen disagrees with the message length.
    const badWs = await WsTestClient.connect(h.addrs.ws[0]);
    await badWs.auth({ key: "badws" });
    const mismatch = new Uint8Array(20);
    new DataView(mismatch.buffer).setUint32(0, 16);
    new DataView(mismatch.buffer).setUint16(4, 16);
    await badWs.sendRaw(mismatch);
    await Promise.all([bad.waitClosed(), big.waitClosed(), badWs.waitClosed()]);
    assert.equal(bad.reason()?.code, ReasonCode.ProtocolError);
    assert.match(bad.reason()!.message, /bad_header_len/);
    assert.match(big.reason()!.message, /packlen_too_large/);
    assert.match(badWs.reason()!.message, /packlen_mismatch/);
    // The others are unaffected.
    const body = new TextEncoder().encode("still here");
    await h.comet.service.BroadcastRoom({
      roomID: "live://1",
      proto: { ver: 1, op: 1000, seq: 0, body },
    });
    await good.next((f) => f.op === 1000);
    await goodWs.next((f) => f.op === 1000);
    assert.equal(h.comet.stats().connections, 2);
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_protocol_errors_total", 'code="bad_header_len"'), 1);
    assert.equal(sample(m, "goim_comet_protocol_errors_total", 'code="packlen_too_large"'), 1);
    assert.equal(sample(m, "goim_comet_protocol_errors_total", 'code="packlen_mismatch"'), 1);
    good.close();
    goodWs.close();
    await Promise.all([good.done, goodWs.done, bad.done, big.done, badWs.done]);
  } finally {
    await h.close();
  }
});

Deno.test("comet: admin serves /healthz and /metrics", async () => {
  const h = await startComet();
  try {
    const res = await fetch(`http://127.0.0.1:${h.addrs.admin!.port}/healthz`);
    assert.equal(res.status, 200);
    const health = await res.json();
    assert.equal(health.status, "ok");
    assert.equal(health.id, "comet-test");
    assert.ok(health.rss > 0);
    const m = await scrape(h.addrs);
    assert.match(m, /goim_comet_connections\{transport="tcp"\} 0/);
    const nf = await fetch(`http://127.0.0.1:${h.addrs.admin!.port}/nope`);
    assert.equal(nf.status, 404);
    await nf.body?.cancel();
    // Registered with the bound ports.
    const [rec] = await h.registry.list();
    assert.equal(rec.id, "comet-test");
    assert.equal(rec.tcpPort, h.addrs.tcp[0].port);
    assert.equal(rec.wsPort, h.addrs.ws[0].port);
    assert.equal(rec.grpcAddr, "");
    // Shutdown deregisters.
    await h.comet.shutdown();
    assert.deepEqual(await h.registry.list(), []);
  } finally {
    await h.close();
  }
});

/** Reads exactly `n` bytes from `conn`. */
async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let o = 0;
  while (o < n) {
    const got = await conn.read(out.subarray(o));
    if (got === null) throw new Error(`closed after ${o} of ${n} bytes`);
    o += got;
  }
  return out;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("comet golden: op 4 and an unknown op (99) are echoed with an empty body, ver and seq kept", async () => {
  const h = await startComet();
  const { hostname, port } = h.addrs.tcp[0];
  const conn = await Deno.connect({ hostname, port });
  try {
    const token = new TextEncoder().encode(JSON.stringify({ mid: 5, key: "golden" }));
    const auth = new Uint8Array(16 + token.length);
    const dv = new DataView(auth.buffer);
    dv.setInt32(0, auth.length);
    dv.setInt16(4, 16);
    dv.setInt16(6, 1);
    dv.setInt32(8, Op.Auth);
    dv.setInt32(12, 1);
    auth.set(token, 16);
    await conn.write(auth);
    // op 8 (AuthReply), ver 1, seq 1, no body.
    assert.equal(hex(await readExactly(conn, 16)), "00000010001000010000000800000001");
    const n = h.logic.receives.length;
    // op 4, ver 1, seq 0x0102, body "hi"; then op 99, ver 2, seq 7, body "x".
    await conn.write(
      new Uint8Array([
        ...[0, 0, 0, 18, 0, 16, 0, 1, 0, 0, 0, 4, 0, 0, 1, 2, 104, 105],
        ...[0, 0, 0, 17, 0, 16, 0, 2, 0, 0, 0, 99, 0, 0, 0, 7, 120],
      ]),
    );
    assert.equal(hex(await readExactly(conn, 16)), "00000010001000010000000400000102");
    assert.equal(hex(await readExactly(conn, 16)), "00000010001000020000006300000007");
    // Both went to logic's Receive first, with their bodies.
    assert.deepEqual(
      h.logic.receives.slice(n).map((r) => [r.proto!.op, text(r.proto!.body)]),
      [[4, "hi"], [99, "x"]],
    );
  } finally {
    conn.close();
    await h.close();
  }
});

/**
 * comet/operator.ts over real sockets: Stats counts what the hub holds,
 * Sessions names who is connected, Kick sends op 6 4008, RoomMembers
 * samples a room, Drain empties the comet with 4006 + a reconnect hint and
 * deregisters it; over gRPC the service wants grpc.token like the rest.
 */

import assert from "node:assert/strict";
import { grpcStatus, RpcError } from "../proto/grpc.ts";
import { createCometOperatorClient, MAX_ROOM_SAMPLE } from "../proto/operator.ts";
import { Op, ReasonCode } from "../protocol/mod.ts";
import { eventually, startComet, TcpTestClient, WsTestClient } from "./fixtures/comet_fixtures.ts";
import { rejectsWith } from "./fixtures/rpc_assert.ts";

// In-process calls reject with the RpcError itself (no client prefix).
async function refused(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof RpcError && e.code === grpcStatus.INVALID_ARGUMENT, `${what}: ${e}`);
    return true;
  }, what);
}

Deno.test("operator comet: Stats, Sessions, RoomMembers reflect the connected clients", async () => {
  const h = await startComet();
  const a = await TcpTestClient.connect(h.addrs.tcp[0]);
  const b = await WsTestClient.connect(h.addrs.ws[0]);
  try {
    await a.auth({ mid: 7, key: "ka", room_id: "live://1" });
    await b.auth({ mid: 7, key: "kb", room_id: "live://1" });
    const op = h.comet.operator;
    const stats = await op.Stats({});
    assert.equal(stats.id, "comet-test");
    assert.equal(stats.state, "up");
    assert.equal(stats.connections, 2);
    assert.equal(stats.ips, 1);
    assert.equal(stats.rooms, 1);
    assert.deepEqual(stats.connections_by_transport, { tcp: 1, ws: 1, wss: 0 });
    assert.ok(stats.frames_out >= 2, "two auth replies went out");
    assert.ok(stats.rss_bytes > 0);
    // comet.start holds the loop-lag sampler: a first sample within 100 ms.
    await eventually(async () => (await op.Stats({})).loop_lag_known, "a loop-lag sample");

    const { sessions } = await op.Sessions({ keys: ["ka", "kb", "unknown"] });
    assert.deepEqual(sessions.map((s) => [s.key, s.mid, s.ip, s.room, s.transport]), [
      ["ka", 7, "127.0.0.1", "live://1", "tcp"],
      ["kb", 7, "127.0.0.1", "live://1", "ws"],
    ]);
    for (const s of sessions) {
      assert.ok(Math.abs(s.connected_at_ms - Date.now()) < 60_000, `${s.connected_at_ms}`);
    }

    const members = await op.RoomMembers({ room: "live://1", limit: 1 });
    assert.equal(members.count, 2);
    assert.equal(members.keys.length, 1);
    assert.deepEqual((await op.RoomMembers({ room: "live://2", limit: 5 })).keys, []);
    await refused(
      op.RoomMembers({ room: "live://1", limit: MAX_ROOM_SAMPLE + 1 }),
      "a sample over the bound",
    );
    await refused(
      op.Sessions({ keys: Array.from({ length: 1001 }, (_, i) => `k${i}`) }),
      "too many keys",
    );
  } finally {
    a.close();
    b.close();
    await Promise.all([a.done, b.done]);
    await h.close();
  }
});

Deno.test("operator comet: Kick sends op 6 4008 with the operator's reason, then closes", async () => {
  const h = await startComet();
  const a = await TcpTestClient.connect(h.addrs.tcp[0]);
  const b = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    await a.auth({ mid: 1, key: "ka" });
    await b.auth({ mid: 2, key: "kb" });
    const reason = "abuse report 42 " + "x".repeat(500);
    assert.deepEqual(await h.comet.operator.Kick({ keys: ["ka", "nobody"], reason }), {
      kicked: 1,
    });
    await a.waitClosed();
    const got = a.reason();
    assert.equal(got?.code, ReasonCode.Kicked);
    assert.ok(got?.message.startsWith("closed by an operator: abuse report 42"), got?.message);
    assert.ok((got?.message.length ?? 0) < 260, "the reason is cut at MAX_REASON_CHARS");
    assert.equal(b.isClosed, false);
    await eventually(() => h.comet.stats().connections === 1, "the kicked one to go");
    const stats = await h.comet.operator.Stats({});
    assert.equal(stats.disconnects.kicked, 1);
  } finally {
    a.close();
    b.close();
    await Promise.all([a.done, b.done]);
    await h.close();
  }
});

Deno.test("operator comet: Drain asks every client to leave with a hint, refuses new ones, deregisters", async () => {
  const h = await startComet(["comet.weight=10"]);
  const clients = await Promise.all([0, 1, 2].map(() => TcpTestClient.connect(h.addrs.tcp[0])));
  try {
    for (const [i, c] of clients.entries()) await c.auth({ mid: i, key: `k${i}` });
    await eventually(async () => (await h.registry.list()).length === 1, "the record");
    const reply = await h.comet.operator.Drain({ deadline_ms: 10_000, spread_ms: 300 });
    assert.equal(reply.state, "draining");
    assert.ok(reply.drain_deadline_ms > Date.now());
    // Registered at once with weight 0 and state draining.
    const [rec] = await h.registry.list();
    assert.equal(rec.weight, 0);
    assert.equal(rec.state, "draining");
    // A client arriving now is turned away with 4006.
    const late = await TcpTestClient.connect(h.addrs.tcp[0]);
    await late.waitClosed();
    assert.equal(late.reason()?.code, ReasonCode.ShuttingDown);
    await late.done;

    for (const c of clients) {
      await c.waitClosed();
      const r = c.reason();
      assert.equal(r?.code, ReasonCode.ShuttingDown);
      assert.ok(
        r?.reconnect_after_ms !== undefined && r.reconnect_after_ms <= 300,
        JSON.stringify(r),
      );
    }
    await eventually(async () => (await h.registry.list()).length === 0, "the deregistration");
    assert.equal((await h.comet.operator.Stats({})).state, "drained");
    // A second drain reports and changes nothing.
    assert.equal((await h.comet.operator.Drain({ deadline_ms: 1, spread_ms: 0 })).state, "drained");
  } finally {
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.done));
    await h.close();
  }
});

Deno.test("operator comet: at the deadline whoever is left is closed and the comet deregisters", async () => {
  const h = await startComet();
  const c = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    await c.auth({ mid: 1, key: "k" });
    // Spread longer than the deadline: it is cut to the deadline, so the
    // one client is asked to leave at the deadline at the latest.
    await h.comet.operator.Drain({ deadline_ms: 300, spread_ms: 60_000 });
    await c.waitClosed();
    assert.equal(c.reason()?.code, ReasonCode.ShuttingDown);
    await eventually(async () => (await h.registry.list()).length === 0, "the deregistration");
    await refused(h.comet.operator.Drain({ deadline_ms: -1, spread_ms: 0 }), "a negative deadline");
  } finally {
    c.close();
    await c.done;
    await h.close();
  }
});

Deno.test("operator comet: over gRPC the service needs grpc.token", async () => {
  const h = await startComet(["grpc.token=operator-test-token"], { grpc: true });
  const good = createCometOperatorClient(h.addrs.grpc!, { token: "operator-test-token" });
  const bad = createCometOperatorClient(h.addrs.grpc!, { token: "wrong" });
  const c = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    await c.auth({ mid: 3, key: "k3" });
    assert.equal((await good.Stats({})).connections, 1);
    assert.deepEqual(
      (await good.Sessions({ keys: ["k3"] })).sessions.map((s) => s.mid),
      [3],
    );
    await rejectsWith(bad.Stats({}), "UNAUTHENTICATED", "a wrong token");
    await rejectsWith(bad.Kick({ keys: ["k3"], reason: "" }), "UNAUTHENTICATED", "a wrong token");
    assert.equal(c.isClosed, false);
    assert.deepEqual(await good.Kick({ keys: ["k3"], reason: "" }), { kicked: 1 });
    await c.waitClosed();
    assert.deepEqual(c.reason(), { code: ReasonCode.Kicked, message: "closed by an operator" });
    assert.equal(c.frames.at(-1)?.op, Op.DisconnectReply);
  } finally {
    good.close();
    bad.close();
    c.close();
    await c.done;
    await h.close();
  }
});

/**
 * The comet refuses to push protocol ops (0–17, the rule logic's HTTP API
 * applies to `operation`) whoever asks — an authenticated gRPC caller or
 * the in-process job — as a proto's op and as an inner op of an op 9 batch,
 * so no push can read to a client as an auth reply, heartbeat reply or
 * disconnect. Over real loopback sockets.
 */

import assert from "node:assert/strict";
import { createCometClient } from "../proto/grpc.ts";
import { encodeBatch, Op } from "../protocol/mod.ts";
import { sample, scrape, startComet, TcpTestClient } from "./fixtures/comet_fixtures.ts";
import { rejectsWith } from "./fixtures/rpc_assert.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const proto = (op: number, body: string) => ({ ver: 1, op, seq: 0, body: enc.encode(body) });
const SECRET = "reserved-ops-test-secret";

Deno.test("comet: protocol ops pushed through gRPC are refused even with the token, op 9 inner frames too", async () => {
  const h = await startComet([`grpc.token=${SECRET}`], { grpc: true });
  const job = createCometClient(h.addrs.grpc!, { deadlineMs: 3000, token: SECRET });
  const t = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    // accepts lists 8 as well: the accepts filter is no defence on its own.
    await t.auth({ mid: 7, key: "victim", room_id: "live://1", accepts: [1000, 8, 3] });
    assert.equal(t.byOp.get(Op.AuthReply), 1);
    for (const op of [Op.AuthReply, Op.HeartbeatReply, Op.DisconnectReply, 0, 17, -1]) {
      await rejectsWith(
        job.PushMsg({ keys: ["victim"], protoOp: op, proto: proto(op, "{}") }),
        "INVALID_ARGUMENT",
        `PushMsg op ${op}`,
      );
      await rejectsWith(
        job.Broadcast({ protoOp: op, proto: proto(op, "{}"), speed: 0 }),
        "INVALID_ARGUMENT",
        `Broadcast op ${op}`,
      );
      await rejectsWith(
        job.BroadcastRoom({ roomID: "live://1", proto: proto(op, "{}") }),
        "INVALID_ARGUMENT",
        `BroadcastRoom op ${op}`,
      );
    }
    // An op 9 batch smuggling an auth reply between two business frames.
    const smuggled = encodeBatch([
      { op: 1000, body: enc.encode("before") },
      { op: Op.AuthReply, body: new Uint8Array(0) },
      { op: 1000, body: enc.encode("after") },
    ]);
    await rejectsWith(
      job.BroadcastRoom({
        roomID: "live://1",
        proto: { ver: 1, op: Op.Raw, seq: 0, body: smuggled.tcp },
      }),
      "INVALID_ARGUMENT",
      "op 9 with an inner op 8",
    );
    const nested = encodeBatch([{
      op: Op.Raw,
      body: encodeBatch([{ op: 8, body: new Uint8Array(0) }]).tcp,
    }]);
    await rejectsWith(
      job.Broadcast({
        protoOp: 1000,
        speed: 0,
        proto: { ver: 1, op: Op.Raw, seq: 0, body: nested.tcp },
      }),
      "INVALID_ARGUMENT",
      "op 9 nested in op 9",
    );

    // Business ops, alone and batched as job batches rooms, still pass.
    const fine = encodeBatch([{ op: 1000, body: enc.encode("b1") }, {
      op: 18,
      body: enc.encode("b2"),
    }]);
    await job.BroadcastRoom({
      roomID: "live://1",
      proto: { ver: 1, op: Op.Raw, seq: 0, body: fine.tcp },
    });
    await job.PushMsg({ keys: ["victim"], protoOp: 1000, proto: proto(1000, "single") });
    await t.until(() => t.byOp.get(1000) === 2 && t.byOp.get(18) === 1, "the business pushes");
    assert.deepEqual(
      t.frames.filter((f) => f.op >= 18).map((f) => text(f.body)),
      ["b1", "b2", "single"],
    );
    assert.equal(t.byOp.get(Op.AuthReply), 1, "no forged auth reply");
    assert.equal(t.byOp.get(Op.HeartbeatReply) ?? 0, 0);
    assert.equal(t.byOp.get(Op.DisconnectReply) ?? 0, 0);
    assert.equal(t.isClosed, false);

    const m = await scrape(h.addrs);
    assert.equal(
      sample(m, "goim_comet_pushes_refused_total", 'kind="room",reason="reserved_op"'),
      7,
    );
    assert.equal(
      sample(m, "goim_comet_pushes_refused_total", 'kind="keys",reason="reserved_op"'),
      6,
    );
  } finally {
    t.close();
    await t.done;
    job.close();
    await h.close();
  }
});

Deno.test("comet: the in-process service (embedded job) refuses protocol ops too", async () => {
  const h = await startComet();
  const t = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    await t.auth({ mid: 7, key: "victim", room_id: "live://1", accepts: [1000, 8] });
    await assert.rejects(
      h.comet.service.PushMsg({ keys: ["victim"], protoOp: 8, proto: proto(8, "") }),
      /not a business op/,
    );
    await h.comet.service.PushMsg({ keys: ["victim"], protoOp: 1000, proto: proto(1000, "ok") });
    await t.until(() => t.byOp.get(1000) === 1, "the business push");
    assert.equal(t.byOp.get(Op.AuthReply), 1);
  } finally {
    t.close();
    await t.done;
    await h.close();
  }
});

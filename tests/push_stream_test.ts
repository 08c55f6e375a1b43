/**
 * Key pushes on a stream (proto/push_stream.ts) over real loopback gRPC:
 * against a real comet (delivery, order, refusals, token), against a server
 * that only has goim's Comet service (fallback to unary PushMsg), and
 * against peers that break the stream or never answer (the pushes fail with
 * a status job retries).
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { cometServiceDefinition, createCometClient, serveUnary } from "../proto/grpc.ts";
import type { PushMsgReq } from "../proto/messages.ts";
import {
  cometStreamServiceDefinition,
  MAX_PUSHES_PER_BATCH,
  PushStream,
  servePushStream,
  withPushStream,
} from "../proto/push_stream.ts";
import { startComet, TcpTestClient } from "./fixtures/comet_fixtures.ts";
import { rejectsWith } from "./fixtures/rpc_assert.ts";
import { isTransient } from "../job/retry.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const push = (key: string, body: string) => ({
  keys: [key],
  protoOp: 1000,
  proto: { ver: 1, op: 1000, seq: 0, body: enc.encode(body) },
});
const SECRET = "push-stream-test-secret-0123456789";

async function serve(
  add: (server: grpc.Server) => void,
): Promise<{ addr: string; server: grpc.Server }> {
  const server = new grpc.Server();
  add(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => e ? reject(e) : resolve(p),
    )
  );
  return { addr: `127.0.0.1:${port}`, server };
}

Deno.test("push stream: pushes reach the comet's clients in order, batched while the window is full", async () => {
  const h = await startComet([`grpc.token=${SECRET}`], { grpc: true });
  const batches: number[] = [];
  const client = createCometClient(h.addrs.grpc!, { token: SECRET });
  const stream = new PushStream(client.grpc, (req) => client.PushMsg(req), {
    token: SECRET,
    window: 1,
    onBatch: (n) => batches.push(n),
  });
  const t = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    await t.auth({ mid: 1, key: "k1", room_id: "", accepts: [1000] });
    const all: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) all.push(stream.push(push("k1", `m${i}`)));
    await Promise.all(all);
    await t.until(() => (t.byOp.get(1000) ?? 0) >= 200, "200 pushes");
    const bodies = t.frames.filter((f) => f.op === 1000).map((f) => text(f.body));
    assert.deepEqual(bodies, Array.from({ length: 200 }, (_, i) => `m${i}`));
    // All 200 were submitted in one turn: one batch, not 200 calls.
    assert.deepEqual(batches, [200]);
    assert.equal(stream.unsupported, false);

    // With one batch out, later pushes wait and go together when it is answered.
    batches.length = 0;
    const first = stream.push(push("k1", "a"));
    await Promise.resolve();
    await new Promise((r) => queueMicrotask(() => r(undefined)));
    const rest = [stream.push(push("k1", "b")), stream.push(push("k1", "c"))];
    await Promise.all([first, ...rest]);
    assert.deepEqual(batches, [1, 2]);
  } finally {
    t.close();
    stream.close();
    client.close();
    await h.close();
  }
});

Deno.test("push stream: a refused push fails alone, with the status PushMsg would give", async () => {
  const h = await startComet([], { grpc: true });
  const comet = withPushStream(createCometClient(h.addrs.grpc!));
  const t = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    await t.auth({ mid: 1, key: "k1", room_id: "", accepts: [1000] });
    const ok1 = comet.PushMsg(push("k1", "before"));
    const bad = comet.PushMsg({ keys: [], protoOp: 1000, proto: push("x", "no keys").proto });
    const reserved = comet.PushMsg({
      keys: ["k1"],
      protoOp: 1000,
      proto: { ver: 1, op: 7, seq: 0, body: enc.encode("op 7 is auth") },
    });
    const ok2 = comet.PushMsg(push("k1", "after"));
    await rejectsWith(bad, "INVALID_ARGUMENT", "a push without keys");
    await rejectsWith(reserved, "INVALID_ARGUMENT", "a push of a protocol op");
    await ok1;
    await ok2;
    await t.until(() => (t.byOp.get(1000) ?? 0) >= 2, "the two good pushes");
    assert.deepEqual(t.frames.filter((f) => f.op === 1000).map((f) => text(f.body)), [
      "before",
      "after",
    ]);
  } finally {
    t.close();
    comet.close();
    await h.close();
  }
});

Deno.test("push stream: a wrong token is refused UNAUTHENTICATED and nothing is delivered", async () => {
  const h = await startComet([`grpc.token=${SECRET}`], { grpc: true });
  const client = createCometClient(h.addrs.grpc!, { token: SECRET });
  const stream = new PushStream(client.grpc, (req) => client.PushMsg(req), { token: "wrong" });
  const t = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    await t.auth({ mid: 1, key: "k1", room_id: "", accepts: [1000] });
    await rejectsWith(stream.push(push("k1", "forged")), "UNAUTHENTICATED", "wrong token");
    await client.PushMsg(push("k1", "real"));
    await t.until(() => (t.byOp.get(1000) ?? 0) >= 1, "the real push");
    assert.deepEqual(t.frames.filter((f) => f.op === 1000).map((f) => text(f.body)), ["real"]);
  } finally {
    t.close();
    stream.close();
    client.close();
    await h.close();
  }
});

Deno.test("push stream: a goim comet (no CometStream service) gets unary PushMsg calls, in order", async () => {
  const got: string[] = [];
  const { addr, server } = await serve((s) =>
    s.addService(
      cometServiceDefinition,
      serveUnary({
        PushMsg: (r: unknown) => {
          const req = r as PushMsgReq;
          got.push(text(req.proto!.body));
          return {};
        },
        Broadcast: () => ({}),
        BroadcastRoom: () => ({}),
        Rooms: () => ({ rooms: {} }),
      }),
    )
  );
  const comet = withPushStream(createCometClient(addr));
  try {
    await Promise.all([0, 1, 2, 3].map((i) => comet.PushMsg(push("k", `m${i}`))));
    assert.deepEqual(got, ["m0", "m1", "m2", "m3"]);
    await comet.PushMsg(push("k", "later"));
    assert.deepEqual(got.at(-1), "later");
  } finally {
    comet.close();
    server.forceShutdown();
  }
});

Deno.test("push stream: a peer that never answers fails the batch DEADLINE_EXCEEDED (retryable)", async () => {
  const { addr, server } = await serve((s) =>
    s.addService(cometStreamServiceDefinition, {
      // Reads and never answers.
      PushMsgs: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.on("data", () => {}),
    })
  );
  const client = createCometClient(addr);
  const stream = new PushStream(client.grpc, (req) => client.PushMsg(req), { deadlineMs: 300 });
  try {
    const p = stream.push(push("k", "lost"));
    await rejectsWith(p, "DEADLINE_EXCEEDED", "an unanswered batch");
    await p.catch((e) => assert.ok(isTransient(e), "job's lanes retry it"));
    assert.equal(stream.outstanding, 0);
  } finally {
    stream.close();
    client.close();
    server.forceShutdown();
  }
});

Deno.test("push stream: a stream the peer ends unanswered fails what was sent; later pushes use a new stream", async () => {
  let streams = 0;
  const { addr, server } = await serve((s) =>
    s.addService(cometStreamServiceDefinition, {
      PushMsgs: (call: grpc.ServerDuplexStream<{ seq: number }, unknown>) => {
        streams++;
        // The first stream dies on its first batch; later ones answer.
        const n = streams;
        call.on("data", (req) => {
          if (n === 1) call.end();
          else call.write({ seq: req.seq, errors: [] });
        });
        call.on("error", () => {});
      },
    })
  );
  const client = createCometClient(addr);
  const stream = new PushStream(client.grpc, (req) => client.PushMsg(req));
  try {
    await assert.rejects(stream.push(push("k", "first")), (e) => isTransient(e));
    await stream.push(push("k", "second"));
    assert.equal(streams, 2);
  } finally {
    stream.close();
    client.close();
    server.forceShutdown();
  }
});

Deno.test("push stream: the comet refuses a batch above the bound, push by push", async () => {
  const seen: number[] = [];
  const streams = servePushStream({ push: () => seen.push(1) });
  const { addr, server } = await serve((s) =>
    s.addService(cometStreamServiceDefinition, streams.implementation)
  );
  const client = createCometClient(addr);
  // maxBatch is capped at the comet's bound: to send more, speak the stream directly.
  const call = client.grpc.makeBidiStreamRequest(
    cometStreamServiceDefinition.PushMsgs.path,
    cometStreamServiceDefinition.PushMsgs.requestSerialize,
    cometStreamServiceDefinition.PushMsgs.responseDeserialize,
    new grpc.Metadata(),
  );
  try {
    const reply = new Promise<{ seq: number; errors: { code: number }[] }>((r) =>
      call.once("data", r)
    );
    call.on("error", () => {});
    call.write({
      seq: 7,
      pushes: Array.from({ length: MAX_PUSHES_PER_BATCH + 1 }, () => push("k", "x")),
    });
    const r = await reply;
    assert.equal(r.seq, 7);
    assert.equal(r.errors.length, MAX_PUSHES_PER_BATCH + 1);
    assert.ok(r.errors.every((e) => e.code === grpc.status.INVALID_ARGUMENT));
    assert.equal(seen.length, 0, "no push of an oversized batch is handled");
  } finally {
    call.cancel();
    streams.close();
    client.close();
    server.forceShutdown();
  }
});

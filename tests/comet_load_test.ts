/**
 * Comet under load and at the edges: thousands of connections, a client
 * that stops reading, the queue policies, graceful shutdown.
 */

import assert from "node:assert/strict";
import { Op, ReasonCode } from "../protocol/mod.ts";
import {
  eventually,
  sample,
  scrape,
  startComet,
  TcpTestClient,
  type TestClient,
  WsTestClient,
} from "./fixtures/comet_fixtures.ts";

const enc = new TextEncoder();

/** Opens `n` clients, `concurrency` at a time, each authenticated with `token(i)`. */
async function openMany<C extends TestClient>(
  n: number,
  concurrency: number,
  connect: () => Promise<C>,
  token: (i: number) => Record<string, unknown>,
): Promise<C[]> {
  const out: C[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++;
      const c = await connect();
      out[i] = c;
      await c.auth(token(i));
    }
  }));
  return out;
}

async function closeAll(clients: TestClient[]): Promise<void> {
  for (const c of clients) c?.close();
  await Promise.all(clients.map((c) => c?.done));
}

/** Lets the event loop run (the flusher, socket reads) between pushes. */
const turn = () => new Promise((r) => setTimeout(r, 0));

Deno.test("comet: 2,000 TCP connections all receive room broadcasts", async () => {
  const h = await startComet();
  let clients: TcpTestClient[] = [];
  try {
    clients = await openMany(
      2000,
      64,
      () => TcpTestClient.connect(h.addrs.tcp[0], { bufSize: 4096, keep: false }),
      (i) => ({ mid: i, key: `k${i}`, room_id: "live://big" }),
    );
    assert.equal(h.comet.stats().connections, 2000);
    const rounds = 5;
    for (let r = 0; r < rounds; r++) {
      await h.comet.service.BroadcastRoom({
        roomID: "live://big",
        proto: { ver: 1, op: 1000, seq: 0, body: enc.encode(`round ${r}`) },
      });
      await turn();
    }
    await Promise.all(
      clients.map((c) => c.until(() => c.byOp.get(1000) === rounds, "every round", 20_000)),
    );
  } finally {
    await closeAll(clients);
    await h.close();
  }
});

Deno.test("comet: a client that stops reading is disconnected; 500 others get every message", async () => {
  const h = await startComet([
    "comet.send_queue.max_bytes=64KiB",
    "logic.http.max_body=1KiB",
  ]);
  let others: TcpTestClient[] = [];
  let slow: TcpTestClient | undefined;
  try {
    others = await openMany(
      500,
      64,
      () => TcpTestClient.connect(h.addrs.tcp[0], { bufSize: 4096, keep: false }),
      (i) => ({ mid: i, key: `o${i}`, room_id: "live://r" }),
    );
    slow = await TcpTestClient.connect(h.addrs.tcp[0]);
    await slow.auth({ key: "slow", room_id: "live://r", accepts: [1001] });
    slow.pause();
    const big = new Uint8Array(16 * 1024);
    let rounds = 0;
    // Each round: one small room message for everybody, one big one for the
    // slow client. The next round starts once the 500 have the current one,
    // so the slow client's queue grows only because its socket is stuck.
    while (h.comet.stats().connections > 500) {
      assert.ok(rounds < 2000, "the slow client was never disconnected");
      await h.comet.service.BroadcastRoom({
        roomID: "live://r",
        proto: { ver: 1, op: 1000, seq: 0, body: enc.encode(`m${rounds}`) },
      });
      await h.comet.service.PushMsg({
        keys: ["slow"],
        protoOp: 1001,
        proto: { ver: 1, op: 1001, seq: 0, body: big },
      });
      rounds++;
      await Promise.all(others.map((c) => c.until(() => c.byOp.get(1000) === rounds, "a round")));
    }
    // A few more rounds after the disconnect: the others keep receiving.
    for (let i = 0; i < 5; i++, rounds++) {
      await h.comet.service.BroadcastRoom({
        roomID: "live://r",
        proto: { ver: 1, op: 1000, seq: 0, body: enc.encode(`m${rounds}`) },
      });
      await turn();
    }
    await Promise.all(
      others.map((c) => c.until(() => c.byOp.get(1000) === rounds, `${rounds} messages`, 20_000)),
    );
    assert.ok(others.every((c) => !c.isClosed));
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_slow_consumer_disconnects_total"), 1);
    assert.ok(
      sample(m, "goim_comet_dropped_total", 'reason="queue_full",policy="disconnect"') >= 1,
    );
    // The slow client, reading again, finds its stream ends (op 6 4005 is best effort).
    slow.resume();
    await slow.waitClosed();
    // It got what its socket had taken before the queue overflowed, then (best effort) op 6.
    assert.ok((slow.byOp.get(1001) ?? 0) > 0, "the stuck socket had taken some messages");
    assert.ok((slow.byOp.get(1001) ?? 0) < rounds, "but not all of them");
    const reason = slow.reason();
    if (reason) assert.equal(reason.code, ReasonCode.SlowConsumer);
  } finally {
    await closeAll(others);
    if (slow) await closeAll([slow]);
    await h.close();
  }
});

for (const policy of ["drop_new", "drop_oldest"] as const) {
  Deno.test(`comet: policy ${policy} drops pushes, keeps the client and counts the drops`, async () => {
    const h = await startComet([
      "comet.send_queue.max_bytes=64KiB",
      "logic.http.max_body=1KiB",
      `comet.send_queue.policy=${policy}`,
    ]);
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    try {
      await c.auth({ key: "p", accepts: [1000] });
      c.pause();
      const n = 300;
      for (let i = 0; i < n; i++) {
        const body = new Uint8Array(16 * 1024);
        new DataView(body.buffer).setUint32(0, i);
        await h.comet.service.PushMsg({
          keys: ["p"],
          protoOp: 1000,
          proto: { ver: 1, op: 1000, seq: 0, body },
        });
        if (i % 4 === 3) await turn();
      }
      const m = await scrape(h.addrs);
      const dropped = sample(
        m,
        "goim_comet_dropped_total",
        `reason="queue_full",policy="${policy}"`,
      );
      assert.ok(dropped > 0, "some pushes were dropped");
      assert.equal(h.comet.stats().connections, 1, "not disconnected");
      c.resume();
      // A heartbeat reply is queued behind everything left: once it is here, all is.
      await c.send(Op.Heartbeat);
      await c.next((f) => f.op === Op.HeartbeatReply, 20_000);
      const got = c.frames.filter((f) => f.op === 1000).map((f) =>
        new DataView(f.body.buffer, f.body.byteOffset).getUint32(0)
      );
      assert.equal(got.length + dropped, n, "delivered + dropped = pushed");
      for (let i = 1; i < got.length; i++) assert.ok(got[i] > got[i - 1], "in order");
      if (policy === "drop_oldest") assert.equal(got.at(-1), n - 1, "the newest survives");
    } finally {
      await closeAll([c]);
      await h.close();
    }
  });
}

Deno.test("comet: shutdown sends op 6 4006 to every client, disconnects them in logic, deregisters", async () => {
  const h = await startComet();
  let clients: TestClient[] = [];
  try {
    const tcp = await openMany(
      200,
      32,
      () => TcpTestClient.connect(h.addrs.tcp[0], { bufSize: 4096 }),
      (i) => ({ mid: i, key: `t${i}`, room_id: "live://s" }),
    );
    const ws = await openMany(
      50,
      16,
      () => WsTestClient.connect(h.addrs.ws[0]),
      (i) => ({ mid: i, key: `w${i}`, room_id: "live://s" }),
    );
    clients = [...tcp, ...ws];
    assert.equal((await h.registry.list()).length, 1);
    await h.comet.shutdown("test");
    await Promise.all(clients.map((c) => c.waitClosed()));
    for (const c of clients) assert.equal(c.reason()?.code, ReasonCode.ShuttingDown);
    for (const c of ws) assert.equal((c as WsTestClient).closeCode, ReasonCode.ShuttingDown);
    await eventually(() => h.logic.disconnects.length === 250, "250 Disconnect calls");
    assert.deepEqual(await h.registry.list(), []);
    assert.equal(h.comet.stats().connections, 0);
    // Idempotent.
    await h.comet.shutdown("again");
    // No longer accepting.
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: h.addrs.tcp[0].port }).then((c) => c.close()),
    );
  } finally {
    await closeAll(clients);
    await h.close();
  }
});

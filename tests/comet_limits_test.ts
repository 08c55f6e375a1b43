/**
 * Per-connection bounds of the comet (comet.limits.*), over real sockets
 * against a fake logic: accepted operations (max_ops), client frame rate
 * (frame_rate / frame_burst) and frames held back while logic answers
 * (input_buffer). A connection past a bound gets op 6 reason 4007 and is
 * closed; every other connection carries on.
 */

import assert from "node:assert/strict";
import { Channel, type ChannelHost } from "../comet/channel.ts";
import { Comet } from "../comet/comet.ts";
import { createLogger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import type { ReceiveReq } from "../proto/messages.ts";
import { encodeFrame, Op, parseOps, ReasonCode } from "../protocol/mod.ts";
import {
  cometConfig,
  type CometHarness,
  eventually,
  FakeLogic,
  sample,
  scrape,
  startComet,
  TcpTestClient,
  type TestClient,
  TRANSPORTS,
} from "./fixtures/comet_fixtures.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** `n` frames back to back, as one buffer (one write: the server reads them together). */
function frames(n: number, op: number, body: (i: number) => string = () => ""): Uint8Array {
  const parts = Array.from(
    { length: n },
    (_, i) => encodeFrame({ ver: 1, op, seq: i + 1, body: enc.encode(body(i)) }),
  );
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Sends `bytes` in one go; TCP as one write, WebSocket frame by frame (one message each). */
async function flood(c: TestClient, op: number, n: number, body?: (i: number) => string) {
  if (c instanceof TcpTestClient) {
    // The server may close while the rest is still in flight.
    await c.sendRaw(frames(n, op, body)).catch(() => {});
    return;
  }
  for (let i = 0; i < n && !c.isClosed; i++) {
    await c.send(op, body?.(i) ?? "").catch(() => {});
  }
}

/** Count of received frames with `op`. */
const received = (c: TestClient, op: number) => c.frames.filter((f) => f.op === op).length;

/** Sends op 2 `n` times, each after the previous reply; returns the replies counted. */
async function heartbeats(c: TestClient, n: number): Promise<number> {
  let answered = 0;
  for (let i = 0; i < n; i++) {
    const from = c.frames.length;
    const seq = await c.send(Op.Heartbeat);
    await c.next((f) => f.op === Op.HeartbeatReply && f.seq === seq, undefined, from);
    answered++;
  }
  return answered;
}

/** Broadcasts `op` then a fence op every test client accepts; whether `op` reached `c`. */
async function broadcastArrives(h: CometHarness, c: TestClient, op: number, fenceOp: number) {
  const from = c.frames.length;
  const fence = `fence-${crypto.randomUUID()}`;
  for (const [o, b] of [[op, "probe"], [fenceOp, fence]] as const) {
    await h.comet.service.Broadcast({
      protoOp: o,
      proto: { ver: 1, op: o, seq: 0, body: enc.encode(b) },
      speed: 0,
    });
  }
  await c.next((f) => f.op === fenceOp && text(f.body) === fence, undefined, from);
  return c.frames.slice(from).some((f) => f.op === op);
}

async function limitCloses(h: CometHarness, limit: string): Promise<number> {
  return sample(await scrape(h.addrs), "goim_comet_limit_closes_total", `limit="${limit}"`);
}

for (const [name, connect] of TRANSPORTS) {
  Deno.test(`limits (${name}): Sub spam is closed at max_ops (op 6 4007); others' heartbeats are answered meanwhile`, async () => {
    const h = await startComet();
    try {
      const max = h.config.comet.limits.max_ops;
      const other = await connect(h);
      await other.auth({ key: "other" });
      const spam = await connect(h);
      await spam.auth({ key: "spam" });
      // 1,000 Subs of 20 new ops each: 20,000 distinct ops asked for.
      const PER = 20;
      const body = (i: number) =>
        Array.from({ length: PER }, (_, j) => 100_000 + i * PER + j).join(",");
      const [answered] = await Promise.all([
        heartbeats(other, 50),
        flood(spam, Op.Sub, 1000, body),
      ]);
      await spam.waitClosed();
      assert.deepEqual(spam.reason(), {
        code: ReasonCode.LimitExceeded,
        message: `more than ${max} operations (comet.limits.max_ops)`,
      });
      const applied = spam.frames.filter((f) => f.op === Op.SubReply)
        .reduce((n, f) => n + parseOps(f.body).length, 0);
      assert.equal(applied, Math.floor(max / PER) * PER, "every Sub that fit, none past it");
      assert.equal(answered, 50, "the other client got every heartbeat reply");
      assert.equal(other.isClosed, false);
      assert.equal(await limitCloses(h, "max_ops"), 1);
      other.close();
      await Promise.all([other.done, spam.done]);
    } finally {
      await h.close();
    }
  });

  Deno.test(`limits (${name}): a frame flood past the burst gets op 6 4007, before and after auth`, async () => {
    const BURST = 20;
    const h = await startComet([
      "comet.limits.frame_rate=5",
      `comet.limits.frame_burst=${BURST}`,
    ]);
    try {
      const authed = await connect(h);
      await authed.auth({ key: "flood" });
      await flood(authed, Op.Heartbeat, 200);
      await authed.waitClosed();
      assert.equal(authed.reason()?.code, ReasonCode.LimitExceeded);
      assert.match(authed.reason()!.message, /comet\.limits\.frame_rate/);
      // The auth frame took a token too: at most BURST - 1 heartbeats got in.
      const replies = received(authed, Op.HeartbeatReply);
      assert.ok(replies >= 1 && replies < BURST, `${replies} heartbeat replies`);

      // Unknown ops before auth count the same.
      const early = await connect(h);
      await flood(early, 999, 200);
      await early.waitClosed();
      assert.deepEqual(early.frames.map((f) => f.op), [Op.DisconnectReply]);
      assert.equal(early.reason()?.code, ReasonCode.LimitExceeded);
      assert.equal(await limitCloses(h, "frame_rate"), 2);
      await Promise.all([authed.done, early.done]);
    } finally {
      await h.close();
    }
  });
}

Deno.test("limits: max_ops counts distinct ops, Unsub frees room, a Sub past it closes", async () => {
  const h = await startComet(["comet.limits.max_ops=4"]);
  try {
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ key: "ops", accepts: [1000, 1001] });
    const sub = async (op: number, body: string) => {
      const from = c.frames.length;
      const seq = await c.send(op, body);
      const f = await c.next((f) => f.seq === seq || f.op === Op.DisconnectReply, undefined, from);
      return f.op === Op.DisconnectReply ? "closed" : text(f.body);
    };
    // Duplicates, in the request or already accepted, count once: 4 ops.
    assert.equal(await sub(Op.Sub, "1002,1002,1001,1003"), "1002,1002,1001,1003");
    assert.equal(await sub(Op.Unsub, "1000"), "1000");
    assert.equal(await sub(Op.Sub, "1004"), "1004");
    assert.equal(await broadcastArrives(h, c, 1000, 1004), false, "1000 was dropped");
    for (const op of [1001, 1002, 1003]) assert.equal(await broadcastArrives(h, c, op, 1004), true);
    assert.equal(await sub(Op.Sub, "1001,1005"), "closed");
    assert.equal(c.reason()?.code, ReasonCode.LimitExceeded);
    await c.waitClosed();
    await c.done;
    assert.equal(h.comet.stats().connections, 0);
  } finally {
    await h.close();
  }
});

Deno.test("limits: a Connect reply with more than max_ops accepts is refused (op 6 4007), its route dropped", async () => {
  const h = await startComet(["comet.limits.max_ops=4"]);
  try {
    const ok = await TcpTestClient.connect(h.addrs.tcp[0]);
    await ok.auth({ key: "four", accepts: [1, 2, 3, 4, 4, 3] });
    for (const [name, connect] of TRANSPORTS) {
      const c = await connect(h);
      await assert.rejects(c.auth({ key: `five-${name}`, accepts: [1, 2, 3, 4, 5] }), /4007/);
      await c.waitClosed();
      await c.done;
    }
    assert.deepEqual(h.logic.disconnects.map((d) => d.key).sort(), ["five-tcp", "five-ws"]);
    assert.equal(h.comet.stats().connections, 1);
    assert.equal(await limitCloses(h, "max_ops"), 2);
    // The scope's allowed subset is bounded the same way.
    h.logic.scopes.set("scoped", { allowed_ops: [11, 12, 13, 14, 15], ops_restricted: true });
    const s = await TcpTestClient.connect(h.addrs.tcp[0]);
    await s.auth({ key: "scoped" });
    await s.send(Op.Sub, "11,12,13,14,15,99");
    await s.waitClosed();
    assert.equal(s.reason()?.code, ReasonCode.LimitExceeded);
    assert.equal(received(s, Op.SubReply), 0);
    ok.close();
    await Promise.all([ok.done, s.done]);
  } finally {
    await h.close();
  }
});

Deno.test("limits: a client within frame_rate is never closed; a full burst at once is fine", async () => {
  const BURST = 10;
  const h = await startComet([
    "comet.limits.frame_rate=50",
    `comet.limits.frame_burst=${BURST}`,
  ]);
  try {
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ key: "polite" });
    // The whole burst at once (the auth frame took the first token).
    await c.sendRaw(frames(BURST - 1, Op.Heartbeat));
    await c.until(() => received(c, Op.HeartbeatReply) === BURST - 1, "the burst's replies");
    // Then ~25 frames/s, half the rate, for about a second (pacing, not a wait).
    for (let i = 0; i < 25; i++) {
      await new Promise((r) => setTimeout(r, 40));
      await c.send(Op.Heartbeat);
    }
    await c.until(() => received(c, Op.HeartbeatReply) === BURST - 1 + 25, "every reply");
    assert.equal(c.isClosed, false);
    assert.equal(c.reason(), undefined);
    assert.equal(await limitCloses(h, "frame_rate"), 0);
    c.close();
    await c.done;
  } finally {
    await h.close();
  }
});

/** A logic whose Receive (op 4) waits until {@linkcode HeldLogic.release}. */
class HeldLogic extends FakeLogic {
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => {};

  /** Makes later Receive calls wait. */
  hold(): void {
    this.#gate = new Promise((r) => (this.#open = r));
  }

  /** Lets every waiting Receive answer. */
  release(): void {
    this.#open();
  }

  override async Receive(req: ReceiveReq) {
    this.receives.push(req);
    await this.#gate;
    return {};
  }
}

async function startHeld(sets: string[]) {
  const config = cometConfig(sets);
  const logic = new HeldLogic();
  const registry = new MemoryRegistry();
  const comet = new Comet({ config, logic, registry, log: createLogger({ level: "error" }) });
  const addrs = await comet.start({ grpc: false });
  const h: CometHarness = {
    comet,
    addrs,
    logic,
    registry,
    config,
    async close() {
      logic.release();
      await comet.shutdown("test");
      await registry.close();
    },
  };
  return { h, logic };
}

Deno.test("limits: frames held back while logic answers op 4 are bounded by input_buffer", async () => {
  const { h, logic } = await startHeld(["comet.limits.input_buffer=8KiB"]);
  try {
    const body = () => "x".repeat(1000);
    // Under the cap: held back, then answered in order once logic replies.
    const small = await TcpTestClient.connect(h.addrs.tcp[0]);
    await small.auth({ key: "small" });
    logic.hold();
    await small.sendRaw(frames(5, Op.SendMsg, body));
    await eventually(() => logic.receives.length === 1, "op 4 to reach logic");
    logic.release();
    await small.until(() => received(small, Op.SendMsg) === 5, "five op 4 echoes");
    assert.deepEqual(
      small.frames.filter((f) => f.op === Op.SendMsg).map((f) => f.seq),
      [1, 2, 3, 4, 5],
    );

    // Past it: 20 frames of ~1 KB wait behind the first, more than 8 KiB.
    const big = await TcpTestClient.connect(h.addrs.tcp[0]);
    await big.auth({ key: "big" });
    logic.hold();
    await big.sendRaw(frames(20, Op.SendMsg, body)).catch(() => {});
    await big.waitClosed();
    assert.deepEqual(big.reason(), {
      code: ReasonCode.LimitExceeded,
      message: `more than ${8 * 1024} bytes of frames waiting (comet.limits.input_buffer)`,
    });
    assert.equal(await limitCloses(h, "input_buffer"), 1);
    assert.equal(small.isClosed, false, "only the offender is closed");
    logic.release();
    small.close();
    await Promise.all([small.done, big.done]);
  } finally {
    await h.close();
  }
});

/** A channel with no socket, for the accepts set alone. */
class BareChannel extends Channel {
  get transport(): "tcp" {
    return "tcp";
  }
  get inflight(): number {
    return 0;
  }
  protected pushSize(): number {
    return 0;
  }
  flush(): undefined {
    return undefined;
  }
  abort(): void {}
}

Deno.test("channel: watch is all or nothing at max; accepts across the small-array / Set switch", () => {
  const ch = new BareChannel({} as ChannelHost, "127.0.0.1");
  assert.equal(ch.opCount, 0);
  assert.equal(ch.watch([], 0), true);
  assert.equal(ch.watch([1, 1, 2], 2), true);
  assert.equal(ch.watch([2, 3], 2), false, "one more than max");
  assert.equal(ch.accepts(3), false, "a refused watch adds nothing");
  assert.equal(ch.opCount, 2);
  const many = Array.from({ length: 300 }, (_, i) => 1000 + i);
  assert.equal(ch.watch(many, 302), true);
  assert.equal(ch.opCount, 302);
  assert.ok(many.every((op) => ch.accepts(op)) && ch.accepts(1) && !ch.accepts(999));
  ch.unwatch(many.slice(5));
  assert.equal(ch.opCount, 7);
  assert.deepEqual([1, 2, 1000, 1004, 1005, 999].map((op) => ch.accepts(op)), [
    true,
    true,
    true,
    true,
    false,
    false,
  ]);
  ch.unwatch([1, 2, 1000, 1001, 1002, 1003, 1004, 7]);
  assert.equal(ch.opCount, 0);
  assert.equal(ch.accepts(1), false);
});

/**
 * The comet enforces the auth scope of logic's Connect reply (ConnectReply
 * fields 100–103) on ChangeRoom (op 12) and Sub (op 14), over TCP and
 * WebSocket, against a fake logic.
 *
 * "Does not arrive" is checked with a fence, never a sleep: in-process
 * pushes are queued synchronously and a connection's queue is FIFO, so once
 * a push sent after the forbidden one has arrived, the forbidden one would
 * have arrived before it.
 */

import assert from "node:assert/strict";
import { Op } from "../protocol/mod.ts";
import {
  type CometHarness,
  sample,
  type ScopeFields,
  scrape,
  startComet,
  TcpTestClient,
  type TestClient,
  TRANSPORTS,
  WsTestClient,
} from "./fixtures/comet_fixtures.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);

const SCOPE: ScopeFields = {
  allowed_rooms: ["live://1", "chat://*"],
  rooms_restricted: true,
  allowed_ops: [1000, 1001],
  ops_restricted: true,
};

/** Sends a request and returns the reply with `replyOp` and the same seq. */
async function request(c: TestClient, op: number, replyOp: number, body: string) {
  const from = c.frames.length;
  const seq = await c.send(op, body);
  const f = await c.next((f) => f.op === replyOp, undefined, from);
  assert.equal(f.seq, seq, "the reply echoes seq");
  return text(f.body);
}

/** Pushes `body` to `room` then a fence to `fenceRoom`; returns whether `body` reached `c`. */
async function roomPushArrives(
  h: CometHarness,
  c: TestClient,
  room: string,
  body: string,
  fenceRoom: string,
): Promise<boolean> {
  const from = c.frames.length;
  const fence = `fence-${crypto.randomUUID()}`;
  for (const [roomID, b] of [[room, body], [fenceRoom, fence]]) {
    await h.comet.service.BroadcastRoom({
      roomID,
      proto: { ver: 1, op: 1000, seq: 0, body: enc.encode(b) },
    });
  }
  await c.next((f) => f.op === 1000 && text(f.body) === fence, undefined, from);
  return c.frames.slice(from).some((f) => text(f.body) === body);
}

/** Broadcasts `body` with `op`, then a fence with `fenceOp`; returns whether `body` reached `c`. */
async function broadcastArrives(
  h: CometHarness,
  c: TestClient,
  op: number,
  body: string,
  fenceOp: number,
): Promise<boolean> {
  const from = c.frames.length;
  const fence = `fence-${crypto.randomUUID()}`;
  for (const [o, b] of [[op, body], [fenceOp, fence]] as const) {
    await h.comet.service.Broadcast({
      protoOp: o,
      proto: { ver: 1, op: o, seq: 0, body: enc.encode(b) },
      speed: 0,
    });
  }
  await c.next((f) => f.op === fenceOp && text(f.body) === fence, undefined, from);
  return c.frames.slice(from).some((f) => text(f.body) === body);
}

const rooms = async (h: CometHarness) => Object.keys((await h.comet.service.Rooms({})).rooms);

Deno.test("auth scope: ChangeRoom outside the allowed rooms is refused, the room unchanged", async () => {
  const h = await startComet();
  try {
    let denied = 0;
    for (const [name, connect] of TRANSPORTS) {
      const key = `rooms-${name}`;
      h.logic.scopes.set(key, SCOPE);
      const c = await connect(h);
      await c.auth({ key, room_id: "live://1", accepts: [1000] });

      // Refused: op 13 names the room the connection is still in.
      assert.equal(await request(c, Op.ChangeRoom, Op.ChangeRoomReply, "secret://9"), "live://1");
      denied++;
      assert.deepEqual(await rooms(h), ["live://1"]);
      assert.equal(
        await roomPushArrives(h, c, "secret://9", "leak", "live://1"),
        false,
        `${name}: a push to the refused room must not arrive`,
      );
      // The prefix pattern: chat://* allows chat://lobby, not chat:/x or chatx://1.
      assert.equal(
        await request(c, Op.ChangeRoom, Op.ChangeRoomReply, "chat://lobby"),
        "chat://lobby",
      );
      assert.deepEqual(await rooms(h), ["chat://lobby"]);
      assert.equal(await roomPushArrives(h, c, "chat://lobby", "in-chat", "chat://lobby"), true);
      assert.equal(await roomPushArrives(h, c, "live://1", "old-room", "chat://lobby"), false);
      for (const bad of ["chat:/x", "chatx://1", "live://10", "LIVE://1"]) {
        assert.equal(
          await request(c, Op.ChangeRoom, Op.ChangeRoomReply, bad),
          "chat://lobby",
          `${name}: ${bad}`,
        );
        denied++;
      }
      // Leaving every room is always allowed; a refused change from no room replies empty.
      assert.equal(await request(c, Op.ChangeRoom, Op.ChangeRoomReply, ""), "");
      assert.deepEqual(await rooms(h), []);
      assert.equal(await request(c, Op.ChangeRoom, Op.ChangeRoomReply, "secret://9"), "");
      denied++;
      assert.deepEqual(await rooms(h), []);
      // An exact entry again.
      assert.equal(await request(c, Op.ChangeRoom, Op.ChangeRoomReply, "live://1"), "live://1");
      assert.equal(await roomPushArrives(h, c, "secret://9", "leak-2", "live://1"), false);
      assert.equal(c.isClosed, false, "a refusal never closes the connection");

      const m = await scrape(h.addrs);
      assert.equal(sample(m, "goim_comet_scope_denied_total", 'op="12"'), denied);
      c.close();
      await c.done;
    }
  } finally {
    await h.close();
  }
});

Deno.test("auth scope: Sub adds only the allowed ops; the reply lists what was applied", async () => {
  const h = await startComet();
  try {
    let denied = 0;
    for (const [name, connect] of TRANSPORTS) {
      const key = `ops-${name}`;
      h.logic.scopes.set(key, SCOPE);
      const c = await connect(h);
      await c.auth({ key, accepts: [1000] });

      // 2000 is outside the scope: dropped; 1001 applied; the reply says so.
      assert.equal(await request(c, Op.Sub, Op.SubReply, "1001,2000,1000"), "1001,1000");
      denied++;
      assert.equal(await broadcastArrives(h, c, 2000, "leak", 1001), false, name);
      assert.equal(await broadcastArrives(h, c, 1001, "sub-ok", 1000), true, name);
      // A key push with the refused op does not arrive either.
      const from = c.frames.length;
      for (const op of [2000, 1000]) {
        await h.comet.service.PushMsg({
          keys: [key],
          protoOp: op,
          proto: { ver: 1, op, seq: 0, body: enc.encode(`key-${op}`) },
        });
      }
      await c.next((f) => text(f.body) === "key-1000", undefined, from);
      assert.equal(c.frames.slice(from).some((f) => f.op === 2000), false);
      // Nothing allowed: nothing applied, an empty reply.
      assert.equal(await request(c, Op.Sub, Op.SubReply, "2000,3000"), "");
      denied++;
      assert.equal(await broadcastArrives(h, c, 3000, "leak-3000", 1000), false, name);
      // Everything allowed: the request's bytes echoed as they are (leading space kept).
      assert.equal(await request(c, Op.Sub, Op.SubReply, " 1001"), " 1001");
      // Unsub is never restricted.
      assert.equal(await request(c, Op.Unsub, Op.UnsubReply, "1000,2000"), "1000,2000");
      assert.equal(await broadcastArrives(h, c, 1000, "unsubbed", 1001), false, name);
      // A bad op list is still a protocol error, scope or not.
      assert.equal(c.isClosed, false);
      await c.send(Op.Sub, "10x0");
      await c.waitClosed();
      await c.done;
    }
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_scope_denied_total", 'op="14"'), denied);
  } finally {
    await h.close();
  }
});

Deno.test("auth scope: one side restricted leaves the other free; restricted-to-nothing allows nothing", async () => {
  const h = await startComet();
  try {
    h.logic.scopes.set("rooms-only", { allowed_rooms: [], rooms_restricted: true });
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ key: "rooms-only" });
    assert.equal(await request(c, Op.ChangeRoom, Op.ChangeRoomReply, "live://1"), "");
    assert.deepEqual(await rooms(h), []);
    assert.equal(await request(c, Op.ChangeRoom, Op.ChangeRoomReply, ""), "");
    assert.equal(await request(c, Op.Sub, Op.SubReply, "5000,6000"), "5000,6000");
    assert.equal(await broadcastArrives(h, c, 6000, "ops-free", 5000), true);

    h.logic.scopes.set("ops-only", { allowed_ops: [], ops_restricted: true });
    const d = await WsTestClient.connect(h.addrs.ws[0]);
    await d.auth({ key: "ops-only" });
    assert.equal(await request(d, Op.ChangeRoom, Op.ChangeRoomReply, "any://1"), "any://1");
    assert.equal(await request(d, Op.Sub, Op.SubReply, "1000"), "");
    assert.equal(await roomPushArrives(h, d, "any://1", "rooms-free", "any://1"), true);

    c.close();
    d.close();
    await Promise.all([c.done, d.done]);
  } finally {
    await h.close();
  }
});

Deno.test("auth scope: unrestricted connections behave as goim (lists ignored without the flag)", async () => {
  const h = await startComet();
  try {
    // A reply whose lists are set but flags false restricts nothing.
    const flagsOff: ScopeFields = {
      allowed_rooms: ["live://1"],
      rooms_restricted: false,
      allowed_ops: [1000],
      ops_restricted: false,
    };
    for (const kind of ["no-scope", "flags-off"]) {
      for (const [name, connect] of TRANSPORTS) {
        const key = `${kind}-${name}`;
        if (kind === "flags-off") h.logic.scopes.set(key, flagsOff);
        const c = await connect(h);
        await c.auth({ key, room_id: "live://1", accepts: [1000] });
        assert.equal(await request(c, Op.ChangeRoom, Op.ChangeRoomReply, "other://2"), "other://2");
        assert.equal(await roomPushArrives(h, c, "other://2", "moved", "other://2"), true);
        assert.equal(await request(c, Op.Sub, Op.SubReply, "7000,7001"), "7000,7001");
        assert.equal(await broadcastArrives(h, c, 7001, "subbed", 7000), true);
        c.close();
        await c.done;
      }
    }
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_scope_denied_total", 'op="12"'), 0);
    assert.equal(sample(m, "goim_comet_scope_denied_total", 'op="14"'), 0);
  } finally {
    await h.close();
  }
});

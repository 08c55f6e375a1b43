/**
 * The auth scope end to end: a real logic in auth mode jwt, and a comet
 * calling it in-process (embedded mode: logic's service object) and through
 * gRPC (distributed mode: a grpc-js client), so both carry ConnectReply's
 * fields 100–103 to the comet.
 */

import assert from "node:assert/strict";
import * as jose from "jose";
import { Comet } from "../comet/comet.ts";
import { createLogger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { joinHostPort } from "../infra/addr.ts";
import type { LogicApi } from "../proto/api.ts";
import type { ConnectReply } from "../proto/messages.ts";
import { createLogicClient, logicServiceDefinition } from "../proto/grpc.ts";
import { Op } from "../protocol/mod.ts";
import { cometConfig, TcpTestClient, type TestClient } from "./fixtures/comet_fixtures.ts";
import { logicHarness, token } from "./fixtures/logic_fixtures.ts";

const SECRET = "auth-scope-secret-with-enough-entropy-0123";
const text = (b: Uint8Array) => new TextDecoder().decode(b);

function hs256(claims: jose.JWTPayload): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setExpirationTime("5m")
    .sign(new TextEncoder().encode(SECRET));
}

async function request(c: TestClient, op: number, replyOp: number, body: string) {
  const from = c.frames.length;
  const seq = await c.send(op, body);
  const f = await c.next((f) => f.op === replyOp && f.seq === seq, undefined, from);
  return text(f.body);
}

Deno.test("auth scope: JWT claims reach the comet embedded and over gRPC, and bind ops 12 and 14", async () => {
  const h = logicHarness(["logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`]);
  const addrs = await h.logic.start();
  const client = createLogicClient(joinHostPort(addrs.grpc!), { deadlineMs: 5000 });
  try {
    const scoped = await hs256({
      sub: "42",
      room: ["live://1", "chat://*"],
      accepts: [1000, 1001],
    });
    const open = await hs256({ sub: "43" });
    const modes: Array<[string, LogicApi]> = [["embedded", h.logic.service], ["grpc", client]];
    for (const [mode, logic] of modes) {
      const registry = new MemoryRegistry();
      const comet = new Comet({
        config: cometConfig([`node.id=comet-${mode}`]),
        logic,
        registry,
        log: createLogger({ level: "error" }),
      });
      const caddrs = await comet.start({ grpc: false });
      try {
        const rooms = async () => Object.keys((await comet.service.Rooms({})).rooms).sort();
        const c = await TcpTestClient.connect(caddrs.tcp[0]);
        await c.auth({
          mid: 0,
          key: `s-${mode}`,
          room_id: "live://1",
          accepts: [1000],
          token: scoped,
        });
        assert.equal(
          await request(c, Op.ChangeRoom, Op.ChangeRoomReply, "secret://1"),
          "live://1",
          `${mode}: refused, still in live://1`,
        );
        assert.deepEqual(await rooms(), ["live://1"]);
        assert.equal(await request(c, Op.ChangeRoom, Op.ChangeRoomReply, "chat://9"), "chat://9");
        assert.equal(await request(c, Op.Sub, Op.SubReply, "1001,2000"), "1001", mode);

        // A token without room/accepts claims: unrestricted, as before.
        const u = await TcpTestClient.connect(caddrs.tcp[0]);
        await u.auth({ mid: 0, key: `u-${mode}`, token: open });
        assert.equal(
          await request(u, Op.ChangeRoom, Op.ChangeRoomReply, "secret://1"),
          "secret://1",
        );
        assert.equal(await request(u, Op.Sub, Op.SubReply, "1001,2000"), "1001,2000");
        assert.deepEqual(await rooms(), ["chat://9", "secret://1"]);

        c.close();
        u.close();
        await Promise.all([c.done, u.done]);
      } finally {
        await comet.shutdown("test");
        await registry.close();
      }
    }
  } finally {
    client.close();
    await h.close();
  }
});

Deno.test("auth scope: logic's unrestricted Connect replies serialize to goim's bytes", async () => {
  const goimBytes = (r: ConnectReply) =>
    new Uint8Array(logicServiceDefinition.Connect.responseSerialize({
      mid: r.mid,
      key: r.key,
      roomID: r.roomID,
      accepts: r.accepts,
      heartbeat: r.heartbeat,
    }));
  const serialized = (r: object) =>
    new Uint8Array(logicServiceDefinition.Connect.responseSerialize(r));
  const fields = { mid: 7, key: "k7", room_id: "live://1", accepts: [1000] };

  const none = logicHarness();
  const jwt = logicHarness(["logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`]);
  try {
    const a = await none.logic.service.Connect({
      server: "c",
      cookie: "",
      token: token(fields),
    });
    assert.deepEqual(serialized(a), goimBytes(a), "auth mode none");
    const b = await jwt.logic.service.Connect({
      server: "c",
      cookie: "",
      token: token({ ...fields, token: await hs256({ sub: "7" }) }),
    });
    assert.deepEqual(serialized(b), goimBytes(b), "jwt without room/accepts claims");
    // With claims, the extra fields follow goim's bytes unchanged.
    const c = await jwt.logic.service.Connect({
      server: "c",
      cookie: "",
      token: token({ ...fields, token: await hs256({ sub: "7", room: "live://*" }) }),
    });
    const bytes = serialized(c);
    const prefix = goimBytes(c);
    assert.deepEqual(bytes.subarray(0, prefix.length), prefix);
    assert.ok(bytes.length > prefix.length);
  } finally {
    await none.close();
    await jwt.close();
  }
});

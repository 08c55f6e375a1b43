/**
 * Issue #9 finding 9, `logic.auth.jwt.close_on_expiry`: logic tells the comet
 * when the token expires (ConnectReply field 104, left out when off so the
 * bytes stay goim's), and the comet closes the connection then (op 6,
 * reason 4001) from its periodic sweep. Real sockets (TCP, WebSocket) on a
 * real comet, calling logic in-process and over gRPC.
 */

import assert from "node:assert/strict";
import * as jose from "jose";
import { Comet } from "../comet/comet.ts";
import { createLogger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { joinHostPort } from "../infra/addr.ts";
import type { LogicApi } from "../proto/api.ts";
import { createLogicClient, logicServiceDefinition } from "../proto/grpc.ts";
import { Op, ReasonCode } from "../protocol/mod.ts";
import {
  cometConfig,
  sample,
  TcpTestClient,
  type TestClient,
  WsTestClient,
} from "./fixtures/comet_fixtures.ts";
import { type LogicHarness, logicHarness, token } from "./fixtures/logic_fixtures.ts";

const SECRET = "jwt-expiry-secret-with-enough-entropy-0123";
const JWT = ["logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`];
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const nowS = () => Math.floor(Date.now() / 1000);

/** An HS256 token; `exp` in seconds since the epoch (default in 5 min). */
function hs256(claims: jose.JWTPayload, exp: number = nowS() + 300): Promise<string> {
  return new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setExpirationTime(exp)
    .sign(new TextEncoder().encode(SECRET));
}

async function connect(h: LogicHarness, fields: Record<string, unknown>) {
  return await h.logic.service.Connect({ server: "comet-1", cookie: "", token: token(fields) });
}

Deno.test("jwt close_on_expiry: Connect tells the comet the time left (field 104); off, goim's bytes", async () => {
  const on = logicHarness([...JWT, "logic.auth.jwt.close_on_expiry=true"]);
  const off = logicHarness(JWT);
  try {
    const exp = nowS() + 120;
    const before = Date.now();
    const r = await connect(on, { token: await hs256({ sub: "9" }, exp) });
    const left = r.token_expires_in_ms!;
    assert.ok(left <= exp * 1000 - before && left >= exp * 1000 - Date.now() - 5, String(left));
    // On the wire: field 104, varint (tag c0 06), after goim's fields.
    const bytes = new Uint8Array(logicServiceDefinition.Connect.responseSerialize(r));
    const goim = new Uint8Array(logicServiceDefinition.Connect.responseSerialize({
      mid: r.mid,
      key: r.key,
      roomID: r.roomID,
      accepts: r.accepts,
      heartbeat: r.heartbeat,
    }));
    assert.deepEqual(bytes.subarray(0, goim.length), goim);
    assert.deepEqual([...bytes.subarray(goim.length, goim.length + 2)], [0xc0, 0x06]);
    const decoded = logicServiceDefinition.Connect.responseDeserialize(
      bytes as unknown as Buffer,
    ) as Record<string, unknown>;
    assert.equal(decoded.token_expires_in_ms, left);
    // Off (the default) and mode none: the field is left out, the bytes are goim's.
    const o = await connect(off, { token: await hs256({ sub: "9" }, exp) });
    assert.equal(o.token_expires_in_ms, undefined);
    assert.deepEqual(Object.keys(o).sort(), ["accepts", "heartbeat", "key", "mid", "roomID"]);
  } finally {
    await on.close();
    await off.close();
  }
});

Deno.test("jwt close_on_expiry: a connection whose token expires gets op 6 4001, embedded and over gRPC", async () => {
  const h = logicHarness([...JWT, "logic.auth.jwt.close_on_expiry=true"]);
  const addrs = await h.logic.start();
  const client = createLogicClient(joinHostPort(addrs.grpc!), { deadlineMs: 5000 });
  try {
    const modes: Array<[string, LogicApi]> = [["embedded", h.logic.service], ["grpc", client]];
    for (const [mode, logic] of modes) {
      const registry = new MemoryRegistry();
      const comet = new Comet({
        config: cometConfig([`node.id=comet-exp-${mode}`]),
        logic,
        registry,
        log: createLogger({ level: "error" }),
      });
      const caddrs = await comet.start({ grpc: false });
      const clients: TestClient[] = [];
      try {
        const exp = nowS() + 2;
        const short = await hs256({ sub: "11" }, exp);
        const long = await hs256({ sub: "12" });
        const tcp = await TcpTestClient.connect(caddrs.tcp[0]);
        const ws = await WsTestClient.connect(caddrs.ws[0]);
        const stays = await TcpTestClient.connect(caddrs.tcp[0]);
        clients.push(tcp, ws, stays);
        await tcp.auth({ mid: 0, key: "t", token: short });
        await ws.auth({ mid: 0, key: "w", token: short });
        await stays.auth({ mid: 0, key: "s", token: long });

        for (const c of [tcp, ws]) {
          const f = await c.next((f) => f.op === Op.DisconnectReply, 10_000);
          assert.ok(Date.now() >= exp * 1000 - 50, `${mode}: closed before the token's exp`);
          assert.deepEqual(JSON.parse(text(f.body)), {
            code: ReasonCode.AuthFailed,
            message: "token expired",
          });
          await c.waitClosed();
        }
        assert.equal(ws.closeCode, ReasonCode.AuthFailed, `${mode}: WebSocket close code`);
        assert.equal(stays.isClosed, false, `${mode}: a connection with a valid token stays`);
        const seq = await stays.send(Op.Heartbeat);
        await stays.next((f) => f.op === Op.HeartbeatReply && f.seq === seq);
        assert.equal(
          sample(
            await comet.metrics.text(),
            "goim_comet_limit_closes_total",
            'limit="token_expired"',
          ),
          2,
        );
      } finally {
        for (const c of clients) c.close();
        await Promise.all(clients.map((c) => c.done));
        await comet.shutdown("test");
        await registry.close();
      }
    }
  } finally {
    client.close();
    await h.close();
  }
});

/**
 * The comet's own RFC 6455 server side: upgrade refusals, text messages,
 * fragments, ping/pong, the close handshake and framing violations.
 */

import assert from "node:assert/strict";
import { encodeAuthToken, encodeFrame, Op, ReasonCode } from "../protocol/mod.ts";
import { RawWsTestClient, startComet, WsTestClient } from "./fixtures/comet_fixtures.ts";

const enc = new TextEncoder();

Deno.test("comet ws: refuses what is not a WebSocket upgrade at /sub", async () => {
  const h = await startComet();
  try {
    const ws = h.addrs.ws[0];
    const upgrade =
      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    assert.match(
      await RawWsTestClient.http(
        ws,
        `GET /other HTTP/1.1\r\nHost: x\r\n${upgrade}Sec-WebSocket-Version: 13\r\n\r\n`,
      ),
      /^HTTP\/1\.1 404 /,
    );
    assert.match(
      await RawWsTestClient.http(ws, "GET /sub HTTP/1.1\r\nHost: x\r\n\r\n"),
      /^HTTP\/1\.1 426 /,
    );
    const v8 = await RawWsTestClient.http(
      ws,
      `GET /sub HTTP/1.1\r\nHost: x\r\n${upgrade}Sec-WebSocket-Version: 8\r\n\r\n`,
    );
    assert.match(v8, /^HTTP\/1\.1 426 /);
    assert.match(v8, /Sec-WebSocket-Version: 13/);
    assert.match(
      await RawWsTestClient.http(
        ws,
        `POST /sub HTTP/1.1\r\nHost: x\r\n${upgrade}Sec-WebSocket-Version: 13\r\n\r\n`,
      ),
      /^HTTP\/1\.1 405 /,
    );
    // The RFC 6455 example key gives the RFC's accept value.
    const ok = await Deno.connect({ hostname: "127.0.0.1", port: ws.port });
    await ok.write(
      enc.encode(`GET /sub?x=1 HTTP/1.1\r\nHost: x\r\n${upgrade}Sec-WebSocket-Version: 13\r\n\r\n`),
    );
    const buf = new Uint8Array(1024);
    const n = (await ok.read(buf))!;
    const res = new TextDecoder().decode(buf.subarray(0, n));
    assert.match(res, /^HTTP\/1\.1 101 /);
    assert.match(res, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
    ok.close();
  } finally {
    await h.close();
  }
});

Deno.test("comet ws: text and fragmented messages, ping/pong, client close", async () => {
  const h = await startComet();
  try {
    const c = await RawWsTestClient.connect(h.addrs.ws[0], "/sub?platform=web");
    // The auth frame split over three fragments, the first a text frame.
    const auth = encodeFrame({
      ver: 1,
      op: Op.Auth,
      seq: 5,
      body: encodeAuthToken({
        mid: 1,
        key: "frag",
        room_id: "live://1",
        platform: "t",
        accepts: [],
      }),
    });
    await c.sendWsFrame(0x1, auth.subarray(0, 10), { fin: false });
    await c.sendWsFrame(0x9, enc.encode("ping!")); // a control frame between fragments
    await c.sendWsFrame(0x0, auth.subarray(10, 30), { fin: false });
    await c.sendWsFrame(0x0, auth.subarray(30), { fin: true });
    const ok = await c.next((f) => f.op === Op.AuthReply);
    assert.equal(ok.seq, 5);
    await c.until(() => c.pongs.length === 1, "a pong");
    assert.equal(new TextDecoder().decode(c.pongs[0]), "ping!");
    await c.send(Op.Heartbeat);
    await c.next((f) => f.op === Op.HeartbeatReply);
    // The client closes: the server echoes the code and closes; no op 6.
    await c.sendWsFrame(0x8, new Uint8Array([0x0f, 0xa0])); // 4000
    await c.waitClosed();
    assert.equal(c.closeCode, 4000);
    assert.equal(c.reason(), undefined);
    await c.done;
    // The Web API client closing normally.
    const w = await WsTestClient.connect(h.addrs.ws[0]);
    await w.auth({ key: "web" });
    w.close();
    await w.done;
    assert.equal(w.closeCode, 1000);
  } finally {
    await h.close();
  }
});

Deno.test("comet ws: framing violations are protocol errors (op 6 4000)", async () => {
  const h = await startComet();
  try {
    const unmasked = await RawWsTestClient.connect(h.addrs.ws[0]);
    await unmasked.auth({ key: "u" });
    await unmasked.sendWsFrame(0x2, encodeFrame({ ver: 1, op: Op.Heartbeat, seq: 1 }), {
      mask: false,
    });
    const opcode = await RawWsTestClient.connect(h.addrs.ws[0]);
    await opcode.auth({ key: "o" });
    await opcode.sendWsFrame(0x3, new Uint8Array(16));
    const big = await RawWsTestClient.connect(h.addrs.ws[0]);
    await big.auth({ key: "b" });
    await big.sendWsFrame(0x2, new Uint8Array(16 + 4097));
    await Promise.all([unmasked.waitClosed(), opcode.waitClosed(), big.waitClosed()]);
    for (const c of [unmasked, opcode, big]) {
      assert.equal(c.reason()?.code, ReasonCode.ProtocolError);
      assert.equal(c.closeCode, ReasonCode.ProtocolError);
    }
    assert.match(unmasked.reason()!.message, /masked/);
    assert.match(big.reason()!.message, /packlen_too_large/);
    await Promise.all([unmasked.done, opcode.done, big.done]);
  } finally {
    await h.close();
  }
});

Deno.test("comet ws: a socket that never upgrades is closed at the handshake timeout", async () => {
  const h = await startComet(["comet.handshake_timeout=200ms"]);
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.addrs.ws[0].port });
    await conn.write(enc.encode("GET /sub HTTP/1.1\r\n")); // never finished
    const n = await conn.read(new Uint8Array(64)).catch(() => null);
    assert.equal(n, null, "closed without a byte: there is no WebSocket to say why on");
    conn.close();
  } finally {
    await h.close();
  }
});

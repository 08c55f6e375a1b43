/**
 * The comet's own RFC 6455 server side: upgrade refusals, text messages,
 * fragments, ping/pong, the close handshake and framing violations.
 */

import assert from "node:assert/strict";
import { encodeAuthToken, encodeFrame, Op, ReasonCode } from "../protocol/mod.ts";
import {
  RawWsTestClient,
  sample,
  scrape,
  startComet,
  WsTestClient,
} from "./fixtures/comet_fixtures.ts";

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
    // The Web API client closing normally (1000), then without a code: the
    // server's close carries no code either, which the Web API reports as 1005.
    const w = await WsTestClient.connect(h.addrs.ws[0]);
    await w.auth({ key: "web" });
    w.socket.close(1000);
    await w.done;
    assert.equal(w.closeCode, 1000);
    const w2 = await WsTestClient.connect(h.addrs.ws[0]);
    await w2.auth({ key: "web2" });
    w2.close();
    await w2.done;
    assert.equal(w2.closeCode, 1005);
  } finally {
    await h.close();
  }
});

Deno.test("comet ws: framing violations are protocol errors (op 6 4000), size is a bound (1009)", async () => {
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
    for (const c of [unmasked, opcode]) {
      assert.equal(c.reason()?.code, ReasonCode.ProtocolError);
      assert.equal(c.closeCode, ReasonCode.ProtocolError);
    }
    assert.match(unmasked.reason()!.message, /masked/);
    assert.equal(big.reason()?.code, ReasonCode.LimitExceeded);
    assert.equal(big.closeCode, 1009);
    assert.match(big.reason()!.message, /over 4112 bytes \(protocol\.max_body \+ 16\)/);
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

const UPGRADE = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
const KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

Deno.test("comet ws: the upgrade needs HTTP/1.1+, one Host and a 16-byte key (else 400)", async () => {
  // The accepted upgrade is then closed at the handshake timeout.
  const h = await startComet(["comet.handshake_timeout=200ms"]);
  try {
    const ws = h.addrs.ws[0];
    const status = async (req: string) => {
      const res = await RawWsTestClient.http(ws, req);
      return res.slice(0, res.indexOf("\r\n"));
    };
    const cases: Array<[string, string, RegExp]> = [
      ["HTTP/1.0", `GET /sub HTTP/1.0\r\nHost: x\r\n${UPGRADE}${KEY}\r\n`, /^HTTP\/1\.1 400 /],
      ["HTTP/0.9", `GET /sub HTTP/0.9\r\nHost: x\r\n${UPGRADE}${KEY}\r\n`, /^HTTP\/1\.1 400 /],
      ["no Host", `GET /sub HTTP/1.1\r\n${UPGRADE}${KEY}\r\n`, /^HTTP\/1\.1 400 /],
      ["empty Host", `GET /sub HTTP/1.1\r\nHost:\r\n${UPGRADE}${KEY}\r\n`, /^HTTP\/1\.1 400 /],
      [
        "two Hosts",
        `GET /sub HTTP/1.1\r\nHost: a\r\nHost: b\r\n${UPGRADE}${KEY}\r\n`,
        /^HTTP\/1\.1 400 /,
      ],
      [
        "key x",
        `GET /sub HTTP/1.1\r\nHost: x\r\n${UPGRADE}Sec-WebSocket-Key: x\r\n\r\n`,
        /^HTTP\/1\.1 400 /,
      ],
      [
        "15-byte key",
        `GET /sub HTTP/1.1\r\nHost: x\r\n${UPGRADE}Sec-WebSocket-Key: ${
          btoa("0123456789abcde")
        }\r\n\r\n`,
        /^HTTP\/1\.1 400 /,
      ],
      [
        "17-byte key",
        `GET /sub HTTP/1.1\r\nHost: x\r\n${UPGRADE}Sec-WebSocket-Key: ${
          btoa("0123456789abcdefg")
        }\r\n\r\n`,
        /^HTTP\/1\.1 400 /,
      ],
      ["no key", `GET /sub HTTP/1.1\r\nHost: x\r\n${UPGRADE}\r\n`, /^HTTP\/1\.1 400 /],
      [
        "two keys",
        `GET /sub HTTP/1.1\r\nHost: x\r\n${UPGRADE}${KEY}${KEY}\r\n`,
        /^HTTP\/1\.1 400 /,
      ],
      [
        "a header line without a colon",
        `GET /sub HTTP/1.1\r\nHost: x\r\nbogus\r\n${UPGRADE}${KEY}\r\n`,
        /^HTTP\/1\.1 400 /,
      ],
      ["HTTP/1.1", `GET /sub HTTP/1.1\r\nHost: x\r\n${UPGRADE}${KEY}\r\n`, /^HTTP\/1\.1 101 /],
    ];
    // Every case is tried; the failures are listed together.
    const wrong: string[] = [];
    for (const [what, req, want] of cases) {
      const got = await status(req);
      if (!want.test(got)) wrong.push(`${what}: ${got}`);
    }
    assert.deepEqual(wrong, []);
  } finally {
    await h.close();
  }
});

Deno.test("comet ws: a client close is answered per RFC 6455 (echo, none, 1002, 1007)", async () => {
  const h = await startComet();
  try {
    const ws = h.addrs.ws[0];
    const closeWith = async (payload: Uint8Array, auth: boolean) => {
      const c = await RawWsTestClient.connect(ws);
      if (auth) await c.auth({ key: `close-${payload.join("-")}` });
      await c.sendWsFrame(0x8, payload);
      await c.waitClosed();
      await c.done;
      assert.equal(c.reason(), undefined, "a client close gets no op 6");
      return c;
    };
    const code = (n: number, reason = new Uint8Array(0)) => {
      const p = new Uint8Array(2 + reason.length);
      p[0] = n >> 8;
      p[1] = n & 255;
      p.set(reason, 2);
      return p;
    };
    // Every case is tried; the failures are listed together.
    const wrong: string[] = [];
    const show = (p: Uint8Array | null) =>
      p === null
        ? "none"
        : p.length === 0
        ? "empty"
        : p.length === 1
        ? "1 byte"
        : `${(p[0] << 8) | p[1]}`;
    const check = (what: string, c: RawWsTestClient, want: Uint8Array) => {
      const got = c.closePayload === null ? null : c.closePayload.subarray(0, 2);
      if (show(got) !== show(want)) wrong.push(`${what}: answered ${show(got)}`);
    };
    // No payload: the answer has none (not 1000, not 1005 on the wire).
    check("empty", await closeWith(new Uint8Array(0), true), new Uint8Array(0));
    // Valid codes are echoed (without the reason).
    for (const n of [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999]) {
      check(`code ${n}`, await closeWith(code(n, enc.encode("bye")), n === 1000), code(n));
    }
    // Invalid codes and a 1-byte payload: 1002.
    for (const n of [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]) {
      check(`code ${n}`, await closeWith(code(n), n === 0), code(1002));
    }
    check("1-byte payload", await closeWith(new Uint8Array([3]), true), code(1002));
    // A reason that is not UTF-8: 1007; valid UTF-8 is fine.
    const bad = code(1000, new Uint8Array([0x61, 0xff, 0x62]));
    check("reason not UTF-8", await closeWith(bad, true), code(1007));
    check("UTF-8 reason", await closeWith(code(1000, enc.encode("ünïcødé")), false), code(1000));
    assert.deepEqual(wrong, []);
    const text = await scrape(h.addrs);
    assert.equal(sample(text, "goim_comet_protocol_errors_total", 'code="websocket"'), 13);
  } finally {
    await h.close();
  }
});

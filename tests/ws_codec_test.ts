/**
 * Golden bytes and properties of the pure WebSocket codec
 * (comet/ws_codec.ts): server frames, close frames and answers, upgrade
 * validation, unmasking and reassembly.
 */

import assert from "node:assert/strict";
import {
  acceptValue,
  closeAnswer,
  closeFrame,
  isValidCloseCode,
  parseUpgrade,
  WebSocketError,
  wsFrame,
  wsHeaderLen,
  type WsLimits,
  WsReader,
  type WsSink,
} from "../comet/ws_codec.ts";
import { Rng } from "./prng.ts";

const enc = new TextEncoder();

Deno.test("ws codec: server frame headers at the length-encoding edges", () => {
  const cases: Array<[number, number[]]> = [
    [0, [0x82, 0x00]],
    [125, [0x82, 125]],
    [126, [0x82, 126, 0x00, 0x7e]],
    [65535, [0x82, 126, 0xff, 0xff]],
    [65536, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]],
  ];
  for (const [len, header] of cases) {
    const payload = new Uint8Array(len).map((_, i) => i * 7);
    const f = wsFrame(0x2, payload);
    assert.equal(wsHeaderLen(len), header.length, `header of ${len}`);
    assert.equal(f.length, header.length + len);
    assert.deepEqual([...f.subarray(0, header.length)], header, `header of ${len}`);
    assert.deepEqual(f.subarray(header.length), payload, `payload of ${len}`);
  }
  assert.deepEqual([...wsFrame(0xa, new Uint8Array([1, 2]))], [0x8a, 2, 1, 2]);
});

Deno.test("ws codec: close frame layout", () => {
  // FIN + opcode 8, length, code big-endian, UTF-8 reason.
  assert.deepEqual([...closeFrame(1000, "bye")], [0x88, 5, 0x03, 0xe8, 0x62, 0x79, 0x65]);
  assert.deepEqual([...closeFrame(4007)], [0x88, 2, 0x0f, 0xa7]);
  // No code: an empty payload.
  assert.deepEqual([...closeFrame(0)], [0x88, 0]);
  // A long reason is cut to fit 125 bytes, never inside a character.
  const long = closeFrame(1009, "é".repeat(100));
  assert.equal(long[1], 2 + 122);
  assert.equal(new TextDecoder("utf-8", { fatal: true }).decode(long.subarray(4)), "é".repeat(61));
  const ascii = closeFrame(1002, "x".repeat(300));
  assert.equal(ascii[1], 125);
});

Deno.test("ws codec: close codes a client may send, and the answers", () => {
  const valid = [];
  for (let c = 0; c < 65536; c++) if (isValidCloseCode(c)) valid.push(c);
  const ranges = [[1000, 1003], [1007, 1014], [3000, 4999]];
  assert.equal(valid.length, ranges.reduce((n, [a, b]) => n + b - a + 1, 0));
  for (const c of valid) assert.ok(ranges.some(([a, b]) => c >= a && c <= b), `${c}`);
  const p = (code: number, ...rest: number[]) => new Uint8Array([code >> 8, code & 255, ...rest]);
  assert.deepEqual(closeAnswer(new Uint8Array(0)), { code: 0, ok: true });
  assert.deepEqual(closeAnswer(new Uint8Array([3])), { code: 1002, ok: false });
  assert.deepEqual(closeAnswer(p(1000)), { code: 1000, ok: true });
  assert.deepEqual(closeAnswer(p(4321, ...enc.encode("ok ✓"))), { code: 4321, ok: true });
  for (const bad of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]) {
    assert.deepEqual(closeAnswer(p(bad)), { code: 1002, ok: false }, `${bad}`);
  }
  assert.deepEqual(closeAnswer(p(1000, 0xc3)), { code: 1007, ok: false }, "truncated UTF-8");
  assert.deepEqual(closeAnswer(p(1000, 0xed, 0xa0, 0x80)), { code: 1007, ok: false }, "surrogate");
});

const head = (s: string) => enc.encode(s.replaceAll("\n", "\r\n"));
const GOOD = "Host: h\nUpgrade: websocket\nConnection: keep-alive, Upgrade\n" +
  "Sec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";

Deno.test("ws codec: upgrade validation", () => {
  assert.equal(acceptValue("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert.deepEqual(parseUpgrade(head(`GET /sub?room=1 HTTP/1.1\n${GOOD}`), "/sub"), {
    ok: true,
    accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  });
  // Later HTTP/1.x versions and header case are fine.
  assert.ok(parseUpgrade(head(`GET /sub HTTP/1.1\n${GOOD.toUpperCase()}`), "/sub").ok);
  assert.ok(parseUpgrade(head(`GET /sub HTTP/1.2\n${GOOD}`), "/sub").ok);
  const status = (req: string) => {
    const r = parseUpgrade(head(req), "/sub");
    return r.ok ? 101 : r.status;
  };
  const without = (name: string) => GOOD.split("\n").filter((l) => !l.startsWith(name)).join("\n");
  assert.equal(status(`GET /sub HTTP/1.0\n${GOOD}`), 400);
  assert.equal(status(`GET /sub HTTP/2\n${GOOD}`), 400);
  assert.equal(status(`GET /sub\n${GOOD}`), 400);
  assert.equal(status(`GET  /sub HTTP/1.1\n${GOOD}`), 400);
  assert.equal(status(`GET /sub HTTP/1.1\n${without("Host")}`), 400);
  assert.equal(status(`GET /sub HTTP/1.1\nHost: a\n${GOOD}`), 400);
  assert.equal(
    status(`GET /sub HTTP/1.1\n${without("Sec-WebSocket-Key")}\nSec-WebSocket-Key: x`),
    400,
  );
  assert.equal(
    status(
      `GET /sub HTTP/1.1\n${without("Sec-WebSocket-Key")}\nSec-WebSocket-Key: ${
        btoa("a".repeat(15))
      }`,
    ),
    400,
  );
  assert.equal(status(`GET /sub HTTP/1.1\n${GOOD}\n bogus folded line`), 400);
  assert.equal(status(`POST /sub HTTP/1.1\n${GOOD}`), 405);
  assert.equal(status(`GET /subway HTTP/1.1\n${GOOD}`), 404);
  assert.equal(status(`GET /sub HTTP/1.1\n${without("Upgrade")}`), 426);
  assert.equal(status(`GET /sub HTTP/1.1\n${without("Connection")}`), 426);
  const v8 = parseUpgrade(
    head(`GET /sub HTTP/1.1\n${without("Sec-WebSocket-Version")}\nSec-WebSocket-Version: 8`),
    "/sub",
  );
  assert.deepEqual(v8.ok ? null : [v8.status, v8.headers], [426, "Sec-WebSocket-Version: 13\r\n"]);
});

/** A masked client frame. */
function clientFrame(rng: Rng, opcode: number, fin: boolean, payload: Uint8Array): Uint8Array {
  const len = payload.length;
  const h = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = new Uint8Array(h + 4 + len);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (h === 2) out[1] = 0x80 | len;
  else if (h === 4) {
    out[1] = 0x80 | 126;
    out[2] = len >> 8;
    out[3] = len & 255;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setUint32(6, len);
  }
  const mask = rng.bytes(4);
  out.set(mask, h);
  for (let i = 0; i < len; i++) out[h + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

type Got = Array<[string, Uint8Array]>;
// Payloads may be views of a reused buffer: kept ones are copied.
const SINK: WsSink<Got> = {
  message: (got, p, text) => (got.push([text ? "text" : "binary", p.slice()]), true),
  control: (got, op, p) => (got.push([`control ${op}`, p.slice()]), true),
};
const LIMITS: WsLimits = { maxMessage: 100_000, maxFragments: 16, maxBuffered: 200_000 };

Deno.test("ws codec: unmasking is exact at every length (byte and word paths)", () => {
  const rng = new Rng(7);
  for (let len = 0; len <= 300; len++) {
    // An odd offset in the chunk, so the word path reads unaligned input.
    const payload = rng.bytes(len);
    const f = clientFrame(rng, 0x2, true, payload);
    const chunk = new Uint8Array(f.length + 3);
    chunk.set(f, 3);
    const got: Got = [];
    new WsReader(LIMITS).push(chunk.subarray(3), SINK, got);
    assert.deepEqual(got, [["binary", payload]], `length ${len}`);
  }
});

Deno.test("ws codec: fragments and control frames, the same for every two-way split", () => {
  const rng = new Rng(11);
  const a = rng.bytes(300);
  const stream = new Uint8Array([
    ...clientFrame(rng, 0x1, false, a.subarray(0, 100)),
    ...clientFrame(rng, 0x9, true, enc.encode("ping")),
    ...clientFrame(rng, 0x0, false, new Uint8Array(0)),
    ...clientFrame(rng, 0x0, true, a.subarray(100)),
    ...clientFrame(rng, 0x2, true, new Uint8Array(70_000).fill(9)),
    ...clientFrame(rng, 0xa, true, new Uint8Array(0)),
  ]);
  const want: Got = [
    ["control 9", enc.encode("ping")],
    ["text", a],
    ["binary", new Uint8Array(70_000).fill(9)],
    ["control 10", new Uint8Array(0)],
  ];
  for (let cut = 0; cut <= stream.length; cut += cut < 400 ? 1 : 997) {
    const r = new WsReader(LIMITS);
    const got: Got = [];
    r.push(stream.subarray(0, cut), SINK, got);
    assert.ok(r.held <= LIMITS.maxBuffered);
    r.push(stream.subarray(cut), SINK, got);
    assert.deepEqual(got, want, `cut at ${cut}`);
    assert.ok(r.idle);
  }
});

Deno.test("ws codec: a bound fails before its payload is read; errors say which", () => {
  const lim: WsLimits = { maxMessage: 4112, maxFragments: 16, maxBuffered: 65536 };
  const err = (bytes: number[]) => {
    try {
      new WsReader(lim).push(new Uint8Array(bytes), SINK, []);
    } catch (e) {
      assert.ok(e instanceof WebSocketError);
      return [e.limit, e.closeCode, e.reason.code];
    }
    return null;
  };
  // 2^40 bytes announced: the 10-byte header is enough.
  assert.deepEqual(err([0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0]), ["ws_message_size", 1009, 4007]);
  // 4113 announced with a 16-bit length.
  assert.deepEqual(err([0x82, 0xfe, 0x10, 0x11]), ["ws_message_size", 1009, 4007]);
  assert.deepEqual(err([0x82, 0xfe, 0x10, 0x10]), null, "4112 is fine (and waits)");
  // Framing violations.
  assert.deepEqual(err([0xc2, 0x80]), [null, 4000, 4000], "RSV1");
  assert.deepEqual(err([0x82, 0x00]), [null, 4000, 4000], "unmasked");
  assert.deepEqual(err([0x83, 0x80]), [null, 4000, 4000], "opcode 3");
  assert.deepEqual(err([0x09, 0x80]), [null, 4000, 4000], "fragmented ping");
  assert.deepEqual(err([0x89, 0xfe]), [null, 4000, 4000], "126-byte ping");
  assert.deepEqual(err([0x80, 0x80]), [null, 4000, 4000], "continuation first");
  assert.deepEqual(err([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]), [null, 4000, 4000], "top bit");
  // 15 non-final frames, then a final one: 16 frames are a message; a 17th
  // frame's first two bytes are refused.
  const frags = [0x02, 0x80, 0, 0, 0, 0];
  for (let i = 0; i < 14; i++) frags.push(0x00, 0x80, 0, 0, 0, 0);
  assert.deepEqual(err([...frags, 0x80, 0x80, 0, 0, 0, 0]), null, "16 frames");
  assert.deepEqual(err([...frags, 0x00, 0x80, 0, 0, 0, 0, 0x80, 0x80]), [
    "ws_fragments",
    1008,
    4007,
  ]);
});

Deno.test("ws codec: held bytes stay within the bound under a continuation flood", () => {
  const lim: WsLimits = { maxMessage: 1040, maxFragments: 100_000, maxBuffered: 2048 };
  const r = new WsReader(lim);
  const got: Got = [];
  // Empty non-final fragments with 14-byte headers, one at a time.
  const frame = (op: number) => [op, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
  r.push(new Uint8Array(frame(0x02)), SINK, got);
  let frames = 1;
  assert.throws(
    () => {
      for (;;) {
        r.push(new Uint8Array(frame(0x00)), SINK, got);
        frames++;
        assert.ok(r.held <= lim.maxBuffered, `held ${r.held}`);
      }
    },
    (e) => e instanceof WebSocketError && e.limit === "input_buffer",
  );
  // 146 × 14 = 2044 bytes, and a final fragment needs at least 6 more.
  assert.equal(frames, 145);
  assert.deepEqual(got, []);
});

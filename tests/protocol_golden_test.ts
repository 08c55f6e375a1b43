/**
 * Golden wire bytes for every operation in docs/PROTOCOL.md, written out by
 * hand.
 *
 * Every byte array below is a literal, not the output of the encoder under
 * test: the header fields are spelled out big-endian field by field, and the
 * body bytes are the ASCII codes of the text in the comment beside them
 * (checked once more against `charCodeAt`, which does not involve the codec).
 *
 * Layout: packLen u32 | headerLen u16 | ver u16 | op u32 | seq u32 | body.
 */

import assert from "node:assert/strict";
import {
  type AuthToken,
  BatchBuilder,
  batchFromFrames,
  decodeFrame,
  decodeFrames,
  decodeHeader,
  decodeHeartbeatReply,
  decodeReason,
  encodeAuthToken,
  encodeBatch,
  encodeFrame,
  encodeHeartbeatReply,
  encodePush,
  encodeReason,
  formatOps,
  type Frame,
  FrameReader,
  Op,
  parseAuthToken,
  parseOps,
  ProtocolError,
  type ProtocolErrorCode,
  ReasonCode,
} from "../protocol/mod.ts";

// ------------------------------------------------------------------ helpers

/** ASCII bytes of `s` via charCodeAt: independent of the codec's TextEncoder. */
function ascii(s: string): number[] {
  return Array.from(s, (c) => {
    const code = c.charCodeAt(0);
    assert.ok(code < 128, "golden bodies are ASCII");
    return code;
  });
}

function bytes(a: readonly number[]): Uint8Array {
  return new Uint8Array(a);
}

/** Compares bytes as plain arrays so a failure prints readable numbers. */
function assertBytes(actual: Uint8Array, expected: readonly number[], what: string): void {
  assert.ok(actual instanceof Uint8Array, `${what}: not a Uint8Array`);
  assert.deepEqual(Array.from(actual), Array.from(expected), what);
}

interface Expect {
  ver: number;
  op: number;
  seq: number;
  body: readonly number[];
}

function assertFrame(f: Frame, e: Expect, what: string): void {
  assert.equal(f.ver, e.ver, `${what}: ver`);
  assert.equal(f.op, e.op, `${what}: op`);
  assert.equal(f.seq, e.seq, `${what}: seq`);
  assertBytes(f.body, e.body, `${what}: body`);
}

/** Runs `wire` through a FrameReader as one TCP chunk, collecting detached frames. */
function readTcp(wire: Uint8Array, maxBody?: number): Frame[] {
  return new FrameReader({ maxBody }).pushCollect(wire);
}

function assertProtocolError(fn: () => unknown, code: ProtocolErrorCode, what: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `${what}: expected ProtocolError, got ${e}`);
    assert.equal(e.code, code, `${what}: code (message: ${e.message})`);
    assert.equal(e.name, "ProtocolError");
    assert.ok(e.message.length > 0, `${what}: empty message`);
    return true;
  });
}

// ------------------------------------------------------------------ golden frames
// Bodies (ASCII, see ascii() checks below):
//   "hi"           104 105
//   "live://1000"  108 105 118 101 58 47 47 49 48 48 48
//   "1000,1001"    49 48 48 48 44 49 48 48 49
//   "hello"        104 101 108 108 111

const AUTH_JSON =
  '{"mid":123,"key":"k1","room_id":"live://1000","platform":"web","accepts":[1000,1001]}';
// deno-fmt-ignore
const AUTH_BODY = [
  // {"mid":123,
  123, 34, 109, 105, 100, 34, 58, 49, 50, 51, 44,
  // "key":"k1",
  34, 107, 101, 121, 34, 58, 34, 107, 49, 34, 44,
  // "room_id":"live://1000",
  34, 114, 111, 111, 109, 95, 105, 100, 34, 58, 34, 108, 105, 118, 101, 58, 47, 47, 49, 48, 48,
  48, 34, 44,
  // "platform":"web",
  34, 112, 108, 97, 116, 102, 111, 114, 109, 34, 58, 34, 119, 101, 98, 34, 44,
  // "accepts":[1000,1001]}
  34, 97, 99, 99, 101, 112, 116, 115, 34, 58, 91, 49, 48, 48, 48, 44, 49, 48, 48, 49, 93, 125,
];
const AUTH_TOKEN: AuthToken = {
  mid: 123,
  key: "k1",
  room_id: "live://1000",
  platform: "web",
  accepts: [1000, 1001],
};

const REASON_JSON = '{"code":4004,"message":"replaced"}';
// deno-fmt-ignore
const REASON_BODY = [
  // {"code":4004,
  123, 34, 99, 111, 100, 101, 34, 58, 52, 48, 48, 52, 44,
  // "message":"replaced"}
  34, 109, 101, 115, 115, 97, 103, 101, 34, 58, 34, 114, 101, 112, 108, 97, 99, 101, 100, 34, 125,
];

const ROOM_BODY = [108, 105, 118, 101, 58, 47, 47, 49, 48, 48, 48]; // live://1000
const OPS_BODY = [49, 48, 48, 48, 44, 49, 48, 48, 49]; // 1000,1001

interface Golden extends Expect {
  name: string;
  wire: readonly number[];
}

/** Client → server frames (identical bytes on TCP and WebSocket). */
const CLIENT: Golden[] = [
  {
    name: "Heartbeat(2)",
    ver: 1,
    op: 2,
    seq: 1,
    body: [],
    // packLen 16 | headerLen 16 | ver 1 | op 2 | seq 1
    wire: [0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1],
  },
  {
    name: "SendMsg(4)",
    ver: 1,
    op: 4,
    seq: 2,
    body: [104, 105],
    // packLen 18 | headerLen 16 | ver 1 | op 4 | seq 2 | "hi"
    wire: [0, 0, 0, 18, 0, 16, 0, 1, 0, 0, 0, 4, 0, 0, 0, 2, 104, 105],
  },
  {
    name: "Auth(7)",
    ver: 1,
    op: 7,
    seq: 3,
    body: AUTH_BODY,
    // packLen 101 (16 + 85) | headerLen 16 | ver 1 | op 7 | seq 3 | token JSON
    wire: [0, 0, 0, 101, 0, 16, 0, 1, 0, 0, 0, 7, 0, 0, 0, 3, ...AUTH_BODY],
  },
  {
    name: "ChangeRoom(12)",
    ver: 1,
    op: 12,
    seq: 4,
    body: ROOM_BODY,
    // packLen 27 | headerLen 16 | ver 1 | op 12 | seq 4 | "live://1000"
    wire: [0, 0, 0, 27, 0, 16, 0, 1, 0, 0, 0, 12, 0, 0, 0, 4, ...ROOM_BODY],
  },
  {
    name: "Sub(14)",
    ver: 1,
    op: 14,
    seq: 5,
    body: OPS_BODY,
    // packLen 25 | headerLen 16 | ver 1 | op 14 | seq 5 | "1000,1001"
    wire: [0, 0, 0, 25, 0, 16, 0, 1, 0, 0, 0, 14, 0, 0, 0, 5, ...OPS_BODY],
  },
  {
    name: "Unsub(16)",
    ver: 1,
    op: 16,
    seq: 6,
    body: OPS_BODY,
    // packLen 25 | headerLen 16 | ver 1 | op 16 | seq 6 | "1000,1001"
    wire: [0, 0, 0, 25, 0, 16, 0, 1, 0, 0, 0, 16, 0, 0, 0, 6, ...OPS_BODY],
  },
];

/** Server → client replies: plain frames, one per WebSocket message. */
const REPLIES: Golden[] = [
  {
    name: "HeartbeatReply(3)",
    ver: 1,
    op: 3,
    seq: 1,
    // online count 16909060 = 0x01020304, int32 big-endian
    body: [1, 2, 3, 4],
    // packLen 20 | headerLen 16 | ver 1 | op 3 | seq 1 | count
    wire: [0, 0, 0, 20, 0, 16, 0, 1, 0, 0, 0, 3, 0, 0, 0, 1, 1, 2, 3, 4],
  },
  {
    name: "SendMsgReply(5)",
    ver: 1,
    op: 5,
    seq: 2,
    body: [],
    // packLen 16 | headerLen 16 | ver 1 | op 5 | seq 2
    wire: [0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 5, 0, 0, 0, 2],
  },
  {
    name: "DisconnectReply(6)",
    ver: 1,
    op: 6,
    seq: 0,
    body: REASON_BODY,
    // packLen 50 (16 + 34) | headerLen 16 | ver 1 | op 6 | seq 0 | reason JSON
    wire: [0, 0, 0, 50, 0, 16, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, ...REASON_BODY],
  },
  {
    name: "AuthReply(8) echoing ver 3, seq -2",
    ver: 3,
    op: 8,
    seq: -2,
    body: [],
    // packLen 16 | headerLen 16 | ver 3 | op 8 | seq -2 = 0xfffffffe
    wire: [0, 0, 0, 16, 0, 16, 0, 3, 0, 0, 0, 8, 255, 255, 255, 254],
  },
  {
    name: "AuthReply(8) echoing ver 1, seq 0x01020304",
    ver: 1,
    op: 8,
    seq: 0x01020304,
    body: [],
    wire: [0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 8, 1, 2, 3, 4],
  },
  {
    name: "ChangeRoomReply(13)",
    ver: 1,
    op: 13,
    seq: 4,
    body: ROOM_BODY,
    // packLen 27 | headerLen 16 | ver 1 | op 13 | seq 4 | "live://1000"
    wire: [0, 0, 0, 27, 0, 16, 0, 1, 0, 0, 0, 13, 0, 0, 0, 4, ...ROOM_BODY],
  },
  {
    name: "SubReply(15)",
    ver: 1,
    op: 15,
    seq: 5,
    body: OPS_BODY,
    // packLen 25 | headerLen 16 | ver 1 | op 15 | seq 5 | "1000,1001"
    wire: [0, 0, 0, 25, 0, 16, 0, 1, 0, 0, 0, 15, 0, 0, 0, 5, ...OPS_BODY],
  },
  {
    name: "UnsubReply(17)",
    ver: 1,
    op: 17,
    seq: 6,
    body: OPS_BODY,
    // packLen 25 | headerLen 16 | ver 1 | op 17 | seq 6 | "1000,1001"
    wire: [0, 0, 0, 25, 0, 16, 0, 1, 0, 0, 0, 17, 0, 0, 0, 6, ...OPS_BODY],
  },
];

// Pushes. op 1000 = 0x000003e8 → 0 0 3 232; op 1001 → 0 0 3 233.

/** One push (op 1000, "hello") as a TCP client sees it: the inner frame alone. */
// deno-fmt-ignore
const PUSH_TCP = [
  // packLen 21 | headerLen 16 | ver 1 | op 1000 | seq 0 | "hello"
  0, 0, 0, 21,  0, 16,  0, 1,  0, 0, 3, 232,  0, 0, 0, 0,  104, 101, 108, 108, 111,
];
/** The same push as one WebSocket message: op 9 envelope around the inner frame. */
// deno-fmt-ignore
const PUSH_WS = [
  // packLen 37 (16 + 21) | headerLen 16 | ver 1 | op 9 | seq 0
  0, 0, 0, 37,  0, 16,  0, 1,  0, 0, 0, 9,  0, 0, 0, 0,
  ...PUSH_TCP,
];

/** Two pushes, (1000, "a") and (1001, "bc"), batched for TCP: back to back. */
// deno-fmt-ignore
const BATCH_TCP = [
  // packLen 17 | headerLen 16 | ver 1 | op 1000 | seq 0 | "a"
  0, 0, 0, 17,  0, 16,  0, 1,  0, 0, 3, 232,  0, 0, 0, 0,  97,
  // packLen 18 | headerLen 16 | ver 1 | op 1001 | seq 0 | "bc"
  0, 0, 0, 18,  0, 16,  0, 1,  0, 0, 3, 233,  0, 0, 0, 0,  98, 99,
];
/** The same batch for WebSocket: one op 9 envelope, packLen 16 + 35 = 51. */
// deno-fmt-ignore
const BATCH_WS = [
  // packLen 51 (16 + 35) | headerLen 16 | ver 1 | op 9 | seq 0
  0, 0, 0, 51,  0, 16,  0, 1,  0, 0, 0, 9,  0, 0, 0, 0,
  ...BATCH_TCP,
];

// ------------------------------------------------------------------ sanity of the literals

Deno.test("golden literals: bodies are the ASCII of their texts, packLen = length", () => {
  assert.deepEqual(AUTH_BODY, ascii(AUTH_JSON));
  assert.deepEqual(REASON_BODY, ascii(REASON_JSON));
  assert.deepEqual(ROOM_BODY, ascii("live://1000"));
  assert.deepEqual(OPS_BODY, ascii("1000,1001"));
  assert.deepEqual(PUSH_TCP.slice(16), ascii("hello"));
  for (const g of [...CLIENT, ...REPLIES]) {
    const packLen = ((g.wire[0] << 24) | (g.wire[1] << 16) | (g.wire[2] << 8) | g.wire[3]) >>> 0;
    assert.equal(packLen, g.wire.length, g.name);
    assert.equal(g.wire.length, 16 + g.body.length, g.name);
    assert.deepEqual(g.wire.slice(16), [...g.body], g.name);
  }
  assert.equal(PUSH_TCP.length, 21);
  assert.equal(PUSH_WS.length, 37);
  assert.equal(BATCH_TCP.length, 35);
  assert.equal(BATCH_WS.length, 51);
});

// ------------------------------------------------------------------ client → server

for (const g of CLIENT) {
  Deno.test(`golden c→s ${g.name}: encodeFrame bytes, WS decodeFrame, TCP FrameReader`, () => {
    const wire = bytes(g.wire);
    assertBytes(
      encodeFrame({ ver: g.ver, op: g.op, seq: g.seq, body: bytes(g.body) }),
      g.wire,
      "encodeFrame",
    );
    if (g.body.length === 0) {
      assertBytes(encodeFrame({ ver: g.ver, op: g.op, seq: g.seq }), g.wire, "no body");
    }
    // Header fields.
    assert.deepEqual(decodeHeader(wire), {
      packLen: g.wire.length,
      headerLen: 16,
      ver: g.ver,
      op: g.op,
      seq: g.seq,
    });
    // WebSocket: one frame per binary message; the body is a view.
    const f = decodeFrame(wire);
    assertFrame(f, g, "decodeFrame");
    assert.equal(f.body.buffer, wire.buffer);
    assert.equal(f.body.byteOffset, 16);
    // TCP: a byte stream.
    const got = readTcp(wire);
    assert.equal(got.length, 1);
    assertFrame(got[0], g, "FrameReader");
    const all = decodeFrames(wire, { maxBody: 4096 });
    assert.equal(all.length, 1);
    assertFrame(all[0], g, "decodeFrames");
  });
}

Deno.test("golden c→s: all client frames as one TCP stream, whole and byte by byte", () => {
  const stream = bytes(CLIENT.flatMap((g) => g.wire));
  const whole = readTcp(stream);
  assert.equal(whole.length, CLIENT.length);
  CLIENT.forEach((g, i) => assertFrame(whole[i], g, `whole ${g.name}`));

  const reader = new FrameReader();
  const bytewise: Frame[] = [];
  for (let i = 0; i < stream.length; i++) {
    bytewise.push(...reader.pushCollect(stream.subarray(i, i + 1)));
  }
  assert.equal(reader.buffered, 0);
  assert.equal(reader.partial, false);
  assert.equal(bytewise.length, CLIENT.length);
  CLIENT.forEach((g, i) => assertFrame(bytewise[i], g, `bytewise ${g.name}`));

  const viaFrames = decodeFrames(stream);
  CLIENT.forEach((g, i) => assertFrame(viaFrames[i], g, `decodeFrames ${g.name}`));
});

Deno.test("golden c→s Auth(7): encodeAuthToken / parseAuthToken", () => {
  assertBytes(encodeAuthToken(AUTH_TOKEN), AUTH_BODY, "encodeAuthToken");
  assert.deepEqual(parseAuthToken(bytes(AUTH_BODY)), AUTH_TOKEN);
  // The token as it arrives inside a decoded frame.
  const f = decodeFrame(bytes(CLIENT[2].wire));
  assert.equal(f.op, Op.Auth);
  assert.deepEqual(parseAuthToken(f.body), AUTH_TOKEN);
  // With the optional signed credential.
  const signed = { ...AUTH_TOKEN, token: "abc.def.ghi" };
  assert.deepEqual(parseAuthToken(encodeAuthToken(signed)), signed);
});

Deno.test("golden c→s ChangeRoom(12), Sub(14), Unsub(16): room key and op lists", () => {
  assert.equal(new TextDecoder().decode(decodeFrame(bytes(CLIENT[3].wire)).body), "live://1000");
  assertBytes(formatOps([1000, 1001]), OPS_BODY, "formatOps");
  assert.deepEqual(parseOps(bytes(OPS_BODY)), [1000, 1001]);
  assert.deepEqual(parseOps(decodeFrame(bytes(CLIENT[4].wire)).body), [1000, 1001]);
  assert.deepEqual(parseOps(decodeFrame(bytes(CLIENT[5].wire)).body), [1000, 1001]);
});

// ------------------------------------------------------------------ server → client replies

for (const g of REPLIES) {
  Deno.test(`golden s→c ${g.name}: encodeFrame bytes, WS decodeFrame, TCP FrameReader`, () => {
    const wire = bytes(g.wire);
    assertBytes(
      encodeFrame({ ver: g.ver, op: g.op, seq: g.seq, body: bytes(g.body) }),
      g.wire,
      "encodeFrame",
    );
    assertFrame(decodeFrame(wire), g, "decodeFrame");
    const got = readTcp(wire);
    assert.equal(got.length, 1);
    assertFrame(got[0], g, "FrameReader");
  });
}

Deno.test("golden s→c HeartbeatReply(3): encodeHeartbeatReply / decodeHeartbeatReply", () => {
  assertBytes(encodeHeartbeatReply(1, 1, 0x01020304), REPLIES[0].wire, "encodeHeartbeatReply");
  assert.equal(decodeHeartbeatReply(bytes([1, 2, 3, 4])), 0x01020304);
  // count 0 (no room), ver/seq echoed (ver 2, seq 0x7fffffff).
  // packLen 20 | headerLen 16 | ver 2 | op 3 | seq 0x7fffffff | count 0
  // deno-fmt-ignore
  const zero = [0, 0, 0, 20,  0, 16,  0, 2,  0, 0, 0, 3,  127, 255, 255, 255,  0, 0, 0, 0];
  assertBytes(encodeHeartbeatReply(2, 0x7fffffff, 0), zero, "count 0");
  // Counts are clamped to int32 range and truncated.
  assertBytes(encodeHeartbeatReply(1, 1, -5).subarray(16), [0, 0, 0, 0], "negative count");
  assertBytes(encodeHeartbeatReply(1, 1, 2 ** 40).subarray(16), [127, 255, 255, 255], "huge");
  assertBytes(encodeHeartbeatReply(1, 1, 258.9).subarray(16), [0, 0, 1, 2], "fraction");
  assert.equal(decodeHeartbeatReply(bytes([0, 0, 1])), 0, "short body reads as 0");
});

Deno.test("golden s→c DisconnectReply(6): encodeReason / decodeReason", () => {
  const reason = { code: ReasonCode.Replaced, message: "replaced" };
  assertBytes(encodeReason(reason), REASON_BODY, "encodeReason");
  assert.deepEqual(decodeReason(bytes(REASON_BODY)), reason);
  assertBytes(
    encodeFrame({ ver: 1, op: Op.DisconnectReply, seq: 0, body: encodeReason(reason) }),
    REPLIES[2].wire,
    "op 6 frame",
  );
  // A goim server's free-form text body.
  assert.deepEqual(decodeReason(bytes(ascii("kicked"))), { code: 0, message: "kicked" });
});

// ------------------------------------------------------------------ pushes

Deno.test("golden push op 1000: TCP inner frame, WebSocket op 9 envelope (encodePush)", () => {
  const b = encodePush(1000, bytes(ascii("hello")));
  assertBytes(b.tcp, PUSH_TCP, "encodePush tcp");
  assertBytes(b.ws, PUSH_WS, "encodePush ws");
  assert.equal(b.count, 1);
  assert.equal(b.tcp.buffer, b.ws.buffer);
  assert.equal(b.tcp.byteOffset, b.ws.byteOffset + 16);

  const single = { ver: 1, op: 1000, seq: 0, body: ascii("hello") };
  // TCP client: a plain frame on the stream, no op 9.
  const tcp = readTcp(bytes(PUSH_TCP));
  assert.equal(tcp.length, 1);
  assertFrame(tcp[0], single, "tcp");
  // WebSocket client: decodeFrame gives the envelope; its body holds the inner frames.
  const env = decodeFrame(bytes(PUSH_WS));
  assertFrame(env, { ver: 1, op: Op.Raw, seq: 0, body: PUSH_TCP }, "ws envelope");
  const inner = decodeFrames(env.body);
  assert.equal(inner.length, 1);
  assertFrame(inner[0], single, "ws inner");
  // Equivalent constructions.
  assertBytes(encodeBatch([{ op: 1000, body: bytes(ascii("hello")) }]).ws, PUSH_WS, "batch of 1");
  assertBytes(batchFromFrames(bytes(PUSH_TCP)).ws, PUSH_WS, "batchFromFrames");
  const bb = new BatchBuilder();
  bb.add(1000, bytes(ascii("hello")));
  assertBytes(bb.finish().ws, PUSH_WS, "BatchBuilder");
});

Deno.test("golden push batch of 2: encodeBatch, BatchBuilder, batchFromFrames, decoders", () => {
  const msgs = [
    { op: 1000, body: bytes([97]) },
    { op: 1001, body: bytes([98, 99]) },
  ];
  const expected = [
    { ver: 1, op: 1000, seq: 0, body: [97] },
    { ver: 1, op: 1001, seq: 0, body: [98, 99] },
  ];

  const b = encodeBatch(msgs);
  assertBytes(b.tcp, BATCH_TCP, "encodeBatch tcp");
  assertBytes(b.ws, BATCH_WS, "encodeBatch ws");
  assert.equal(b.count, 2);

  const bb = new BatchBuilder(8); // tiny capacity: forces growth
  assert.equal(bb.count, 0);
  assert.equal(bb.byteLength, 0);
  for (const m of msgs) bb.add(m.op, m.body);
  assert.equal(bb.count, 2);
  assert.equal(bb.byteLength, 35);
  const built = bb.finish();
  assertBytes(built.tcp, BATCH_TCP, "BatchBuilder tcp");
  assertBytes(built.ws, BATCH_WS, "BatchBuilder ws");
  assert.equal(built.count, 2);
  assert.equal(bb.count, 0, "finish resets");
  // Reusable after finish: the next batch does not contain the previous one.
  bb.add(1000, bytes(ascii("hello")));
  assertBytes(bb.finish().ws, PUSH_WS, "BatchBuilder reuse");
  // The first batch was not disturbed by the reuse.
  assertBytes(built.ws, BATCH_WS, "first batch intact");

  const wrapped = batchFromFrames(bytes(BATCH_TCP));
  assertBytes(wrapped.ws, BATCH_WS, "batchFromFrames ws");
  assert.equal(wrapped.count, 2);

  // TCP client sees two frames, never op 9.
  const tcp = readTcp(bytes(BATCH_TCP));
  assert.equal(tcp.length, 2);
  expected.forEach((e, i) => assertFrame(tcp[i], e, `tcp ${i}`));
  // WebSocket client: one envelope holding both.
  const env = decodeFrame(bytes(BATCH_WS));
  assertFrame(env, { ver: 1, op: 9, seq: 0, body: BATCH_TCP }, "envelope");
  const inner = decodeFrames(env.body);
  expected.forEach((e, i) => assertFrame(inner[i], e, `ws inner ${i}`));
});

Deno.test("golden empty batch: envelope with packLen 16 and nothing inside", () => {
  const empty = [0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0];
  assertBytes(encodeBatch([]).ws, empty, "encodeBatch([])");
  assert.equal(encodeBatch([]).tcp.length, 0);
  assertBytes(new BatchBuilder().finish().ws, empty, "BatchBuilder");
  assertBytes(batchFromFrames(new Uint8Array(0)).ws, empty, "batchFromFrames");
  assert.deepEqual(decodeFrames(new Uint8Array(0)), []);
});

Deno.test("golden TCP client stream: AuthReply, HeartbeatReply, a push batch, op 6", () => {
  const stream = bytes([
    ...REPLIES[4].wire, // AuthReply
    ...REPLIES[0].wire, // HeartbeatReply
    ...BATCH_TCP,
    ...PUSH_TCP,
    ...REPLIES[2].wire, // DisconnectReply
  ]);
  const ops = [8, 3, 1000, 1001, 1000, 6];
  for (const size of [1, 2, 3, 5, 16, 17, 50, stream.length]) {
    const r = new FrameReader();
    const got: number[] = [];
    for (let o = 0; o < stream.length; o += size) {
      r.push(stream.subarray(o, o + size), (f) => got.push(f.op));
    }
    assert.deepEqual(got, ops, `chunk size ${size}`);
  }
});

// ------------------------------------------------------------------ error cases

const MAX = 4096;

Deno.test("golden error: packLen < 16 → packlen_too_small", () => {
  // packLen 15 | headerLen 16 | ver 1 | op 2 | seq 1
  const p15 = bytes([0, 0, 0, 15, 0, 16, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1]);
  // packLen 0
  const p0 = bytes([0, 0, 0, 0, 0, 16, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1]);
  for (const [name, w] of [["15", p15], ["0", p0]] as const) {
    assertProtocolError(() => decodeFrame(w), "packlen_too_small", `decodeFrame ${name}`);
    assertProtocolError(() => decodeFrames(w), "packlen_too_small", `decodeFrames ${name}`);
    assertProtocolError(() => readTcp(w), "packlen_too_small", `FrameReader ${name}`);
    // The reader fails as soon as the 4 packLen bytes are in.
    const r = new FrameReader();
    assertProtocolError(
      () => r.push(w.subarray(0, 4), () => {}),
      "packlen_too_small",
      `early ${name}`,
    );
  }
});

Deno.test("golden error: packLen > 16 + maxBody → packlen_too_large", () => {
  // packLen 4113 = 0x00001011: one byte over the 4096-byte default.
  const over = bytes([0, 0, 16, 17, 0, 16, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1]);
  assertProtocolError(() => decodeFrame(over), "packlen_too_large", "decodeFrame header only");
  const full = new Uint8Array(4113);
  full.set(over);
  assertProtocolError(() => decodeFrame(full), "packlen_too_large", "decodeFrame full size");
  assertProtocolError(() => readTcp(over), "packlen_too_large", "FrameReader");
  assertProtocolError(
    () => decodeFrames(over, { maxBody: MAX }),
    "packlen_too_large",
    "decodeFrames",
  );
  const early = new FrameReader();
  assertProtocolError(() => early.push(over.subarray(0, 4), () => {}), "packlen_too_large", "4 B");
  // packLen 0xffffffff
  const huge = bytes([255, 255, 255, 255, 0, 16, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1]);
  assertProtocolError(() => decodeFrame(huge), "packlen_too_large", "0xffffffff");
  assertProtocolError(() => readTcp(huge), "packlen_too_large", "0xffffffff reader");
  // packLen 4112 = 0x00001010: exactly the limit is fine.
  const limit = new Uint8Array(4112);
  limit.set([0, 0, 16, 16, 0, 16, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1]);
  assert.equal(decodeFrame(limit).body.length, 4096);
  assert.equal(readTcp(limit)[0].body.length, 4096);
  // A configured limit: maxBody 64 → packLen 80 ok, 81 too large.
  const p80 = new Uint8Array(80);
  p80.set([0, 0, 0, 80, 0, 16, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1]);
  const p81 = new Uint8Array(81);
  p81.set([0, 0, 0, 81, 0, 16, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1]);
  assert.equal(decodeFrame(p80, { maxBody: 64 }).body.length, 64);
  assert.equal(readTcp(p80, 64).length, 1);
  assertProtocolError(() => decodeFrame(p81, { maxBody: 64 }), "packlen_too_large", "81/64");
  assertProtocolError(() => readTcp(p81, 64), "packlen_too_large", "81/64 reader");
  // Server → client decoding has no cap of its own.
  assert.equal(decodeFrames(full.subarray(0, 4113)).length, 1);
});

Deno.test("golden error: headerLen ≠ 16 → bad_header_len", () => {
  const cases: [string, number[]][] = [
    ["headerLen 17", [0, 0, 0, 16, 0, 17, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1]],
    ["headerLen 0", [0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1]],
    ["headerLen 15", [0, 0, 0, 16, 0, 15, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1]],
    // 0x1000: the right byte in the wrong place (little-endian 16)
    ["headerLen 0x1000", [0, 0, 0, 16, 16, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1]],
  ];
  for (const [name, w] of cases) {
    assertProtocolError(() => decodeFrame(bytes(w)), "bad_header_len", `decodeFrame ${name}`);
    assertProtocolError(() => decodeFrames(bytes(w)), "bad_header_len", `decodeFrames ${name}`);
    assertProtocolError(() => readTcp(bytes(w)), "bad_header_len", `FrameReader ${name}`);
    // Detected once 6 bytes are in.
    const r = new FrameReader();
    r.push(bytes(w.slice(0, 5)), () => {});
    assertProtocolError(() => r.push(bytes(w.slice(5, 6)), () => {}), "bad_header_len", name);
  }
  // packLen is judged before headerLen, so the code never depends on how a
  // TCP read was split: a little-endian client (packLen 0x10000000, headerLen
  // 0x1000) is "too large" whether its header arrives whole or in pieces.
  const le = bytes([16, 0, 0, 0, 16, 0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
  assertProtocolError(() => decodeFrame(le), "packlen_too_large", "little-endian");
  assertProtocolError(() => readTcp(le), "packlen_too_large", "little-endian reader");
  assertProtocolError(
    () => new FrameReader().push(le.subarray(0, 4), () => {}),
    "packlen_too_large",
    "little-endian, 4 bytes",
  );
  // Both wrong, packLen small: packlen_too_small wins.
  const both = bytes([0, 0, 0, 8, 0, 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1]);
  assertProtocolError(() => decodeFrame(both), "packlen_too_small", "both wrong");
});

Deno.test("golden error: WebSocket packLen ≠ message length → packlen_mismatch", () => {
  // packLen 20 in a 16-byte message.
  const short = bytes([0, 0, 0, 20, 0, 16, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1]);
  assertProtocolError(() => decodeFrame(short), "packlen_mismatch", "packLen > length");
  // packLen 16 in a 18-byte message (two trailing bytes).
  const long = bytes([0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 104, 105]);
  assertProtocolError(() => decodeFrame(long), "packlen_mismatch", "packLen < length");
  // Two frames in one WebSocket message are a mismatch too.
  const two = bytes([...CLIENT[0].wire, ...CLIENT[0].wire]);
  assertProtocolError(() => decodeFrame(two), "packlen_mismatch", "two frames");
  // The same bytes are legal on TCP (short simply waits for more).
  const r = new FrameReader();
  assert.deepEqual(r.pushCollect(short), []);
  assert.equal(r.buffered, 16);
  assert.equal(r.pushCollect(bytes([104, 105, 33, 33])).length, 1);
  assert.equal(r.buffered, 0);
  assert.equal(readTcp(long).length, 1);
  assert.equal(new FrameReader().pushCollect(long.subarray(0, 17)).length, 1);
});

Deno.test("golden error: truncated input → truncated", () => {
  assertProtocolError(() => decodeFrame(new Uint8Array(0)), "truncated", "empty message");
  assertProtocolError(() => decodeFrame(bytes(CLIENT[0].wire.slice(0, 15))), "truncated", "15 B");
  assertProtocolError(() => decodeHeader(new Uint8Array(15)), "truncated", "decodeHeader");
  assertProtocolError(() => decodeHeader(new Uint8Array(16), 1), "truncated", "offset");
  assertProtocolError(
    () => decodeFrames(bytes([...CLIENT[0].wire, 0, 0])),
    "truncated",
    "trailing bytes",
  );
  assertProtocolError(
    () => decodeFrames(bytes(CLIENT[1].wire.slice(0, 17))),
    "truncated",
    "body cut",
  );
  assertProtocolError(
    () => batchFromFrames(bytes(BATCH_TCP.slice(0, 34))),
    "truncated",
    "batchFromFrames",
  );
});

Deno.test("golden error: ProtocolError.reason is the op 6 JSON reason", () => {
  let err: unknown;
  try {
    decodeFrame(bytes([0, 0, 0, 15, 0, 16, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1]));
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ProtocolError);
  assert.ok(err instanceof Error);
  const reason = err.reason;
  assert.equal(reason.code, 4000);
  assert.equal(reason.code, ReasonCode.ProtocolError);
  assert.match(reason.message, /^packlen_too_small: /);
  const body = encodeReason(reason);
  assert.deepEqual(decodeReason(body), reason);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(body)), reason);
  // {"code":4000,"message":"packlen_too_small: ...
  assertBytes(body.subarray(0, 24), ascii('{"code":4000,"message":"'), "reason prefix");
});

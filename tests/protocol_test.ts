/**
 * Unit tests for the smaller parts of the protocol module: the op table,
 * the auth token, Sub/Unsub op lists, heartbeat bodies, errors and reasons,
 * byte helpers, and FrameReader edge behaviour.
 */

import assert from "node:assert/strict";
import {
  BatchBuilder,
  batchFromFrames,
  checkHeader,
  concat,
  decodeFrame,
  decodeHeader,
  decodeReason,
  DEFAULT_MAX_BODY,
  encodeFrame,
  encodeReason,
  equals,
  formatOps,
  FrameCursor,
  FrameReader,
  HEADER_LEN,
  isBusinessOp,
  Op,
  opName,
  parseAuthToken,
  parseOps,
  ProtocolError,
  PUSH_VER,
  readI32,
  readU16,
  readU32,
  ReasonCode,
  text,
  utf8,
  writeU16,
  writeU32,
} from "../protocol/mod.ts";

function assertCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof ProtocolError && e.code === code);
}

// ------------------------------------------------------------------ ops

Deno.test("ops: numbers match docs/PROTOCOL.md and docs/STREAMS.md exactly", () => {
  assert.deepEqual({ ...Op }, {
    Handshake: 0,
    HandshakeReply: 1,
    Heartbeat: 2,
    HeartbeatReply: 3,
    SendMsg: 4,
    SendMsgReply: 5,
    DisconnectReply: 6,
    Auth: 7,
    AuthReply: 8,
    Raw: 9,
    ProtoReady: 10,
    ProtoFinish: 11,
    ChangeRoom: 12,
    ChangeRoomReply: 13,
    Sub: 14,
    SubReply: 15,
    Unsub: 16,
    UnsubReply: 17,
    StreamMsg: 2147483392,
    StreamAck: 2147483393,
    StreamSync: 2147483394,
    StreamState: 2147483395,
  });
});

Deno.test("ops: opName and isBusinessOp", () => {
  assert.equal(opName(7), "Auth");
  assert.equal(opName(9), "Raw");
  assert.equal(opName(17), "UnsubReply");
  assert.equal(opName(1000), "op1000");
  assert.equal(opName(-1), "op-1");
  for (let op = 0; op <= 17; op++) assert.equal(isBusinessOp(op), false, `op ${op}`);
  assert.equal(isBusinessOp(18), true);
  assert.equal(isBusinessOp(1000), true);
  assert.equal(isBusinessOp(0x7fffff00 - 1), true);
  assert.equal(isBusinessOp(0x7fffff00), false); // stream ops (docs/STREAMS.md)
  assert.equal(isBusinessOp(0x7fffffff), false);
  assert.equal(isBusinessOp(0x80000000), false);
  assert.equal(isBusinessOp(-1000), false);
  assert.equal(isBusinessOp(1000.5), false);
  assert.equal(isBusinessOp(NaN), false);
});

// ------------------------------------------------------------------ header helpers

Deno.test("header helpers: big-endian read/write, signedness", () => {
  const b = new Uint8Array(8);
  writeU32(b, 0, 0xfffffffe);
  assert.deepEqual([...b.subarray(0, 4)], [255, 255, 255, 254]);
  assert.equal(readU32(b, 0), 0xfffffffe);
  assert.equal(readI32(b, 0), -2);
  writeU32(b, 0, -2); // signed input, same bytes
  assert.deepEqual([...b.subarray(0, 4)], [255, 255, 255, 254]);
  writeU32(b, 4, 0x01020304);
  assert.deepEqual([...b.subarray(4)], [1, 2, 3, 4]);
  writeU16(b, 0, 0xabcd);
  assert.deepEqual([...b.subarray(0, 2)], [0xab, 0xcd]);
  assert.equal(readU16(b, 0), 0xabcd);
  assert.equal(HEADER_LEN, 16);
  assert.equal(DEFAULT_MAX_BODY, 4096);
  assert.equal(PUSH_VER, 1);
});

Deno.test("header: ver is 16 bits on the wire (goim int16); wider values wrap", () => {
  // ver -1 is written as 0xffff and read back unsigned.
  const f = encodeFrame({ ver: -1, op: 2, seq: 0 });
  assert.deepEqual([...f.subarray(6, 8)], [255, 255]);
  assert.equal(decodeHeader(f).ver, 0xffff);
  assert.equal(decodeFrame(encodeFrame({ ver: 0x10001, op: 2, seq: 0 })).ver, 1);
  // op and seq are int32: 2^32 - 1 reads back as -1.
  const g = decodeFrame(encodeFrame({ ver: 1, op: 0xffffffff, seq: 0x80000000 }));
  assert.equal(g.op, -1);
  assert.equal(g.seq, -0x80000000);
});

Deno.test("checkHeader: order of checks is packLen small, packLen large, headerLen", () => {
  assertCode(() => checkHeader(15, 0, 10), "packlen_too_small");
  assertCode(() => checkHeader(27, 0, 10), "packlen_too_large");
  assertCode(() => checkHeader(26, 0, 10), "bad_header_len");
  checkHeader(26, 16, 10);
  checkHeader(16, 16, 0);
  assertCode(() => checkHeader(17, 16, 0), "packlen_too_large");
});

// ------------------------------------------------------------------ FrameReader edges

Deno.test("FrameReader: maxBody validation", () => {
  assert.equal(new FrameReader().maxBody, 4096);
  assert.equal(new FrameReader({ maxBody: 0 }).maxBody, 0);
  assert.equal(new FrameReader({ maxBody: 0x7fffffef }).maxBody, 0x7fffffef);
  for (const bad of [-1, 1.5, NaN, Infinity, 0x7ffffff0]) {
    assert.throws(() => new FrameReader({ maxBody: bad }), RangeError, `maxBody ${bad}`);
  }
});

Deno.test("FrameReader: empty chunks and a zero-length body", () => {
  const r = new FrameReader({ maxBody: 0 });
  const ops: number[] = [];
  r.push(new Uint8Array(0), (f) => ops.push(f.op));
  const hb = encodeFrame({ ver: 1, op: 2, seq: 9 });
  r.push(hb.subarray(0, 3), (f) => ops.push(f.op));
  r.push(new Uint8Array(0), (f) => ops.push(f.op));
  assert.equal(r.buffered, 3);
  r.push(hb.subarray(3), (f) => {
    ops.push(f.op);
    assert.equal(f.bodyLength, 0);
    assert.equal(f.body.length, 0);
  });
  assert.deepEqual(ops, [2]);
  assert.equal(r.buffered, 0);
});

Deno.test("FrameReader: a split frame is reassembled into a buffer of its exact size", () => {
  const f = encodeFrame({ ver: 1, op: 4, seq: 1, body: new Uint8Array(100).fill(7) });
  const r = new FrameReader();
  r.push(f.subarray(0, 50), () => assert.fail("not yet"));
  assert.equal(r.buffered, 50);
  assert.equal(r.partial, true);
  let seen = false;
  r.push(f.subarray(50), (c) => {
    seen = true;
    assert.equal(c.buf.length, 116);
    assert.equal(c.bodyStart, 16);
    assert.equal(c.bodyEnd, 116);
    assert.ok(c.body.every((x) => x === 7));
  });
  assert.ok(seen);
  assert.equal(r.partial, false);
});

Deno.test("FrameReader: the cursor is reused; toFrame detaches", () => {
  const a = encodeFrame({ ver: 1, op: 1000, seq: 1, body: new Uint8Array([1]) });
  const b = encodeFrame({ ver: 1, op: 1001, seq: 2, body: new Uint8Array([2]) });
  const r = new FrameReader();
  const cursors: FrameCursor[] = [];
  const copies = r.pushCollect(concat([a, b]));
  r.push(concat([a, b]), (c) => cursors.push(c));
  assert.equal(cursors.length, 2);
  assert.equal(cursors[0], cursors[1], "one cursor object per reader");
  assert.ok(cursors[0] instanceof FrameCursor);
  assert.deepEqual(copies.map((f) => [f.op, f.seq, [...f.body]]), [
    [1000, 1, [1]],
    [1001, 2, [2]],
  ]);
});

Deno.test("FrameReader: an exception from onFrame fails the reader for good", () => {
  // Frame a, then frame b whose body is itself a well-formed header (op 66).
  // If the reader carried on after the callback threw on a, the unread bytes
  // of the chunk would be lost and b's body would be read as a frame.
  const a = encodeFrame({ ver: 1, op: 1000, seq: 0, body: new Uint8Array([1]) });
  const inner = encodeFrame({ ver: 1, op: 66, seq: 0 });
  const b = encodeFrame({ ver: 1, op: 4, seq: 0, body: inner });
  const stream = concat([a, b]);
  const r = new FrameReader();
  const boom = new Error("handler bug");
  assert.throws(
    () =>
      r.push(stream.subarray(0, a.length + 16), (f) => {
        if (f.op === 1000) throw boom;
      }),
    (e) => e === boom,
  );
  const seen: number[] = [];
  assert.throws(
    () => r.push(stream.subarray(a.length + 16), (f) => seen.push(f.op)),
    (e) => e === boom,
  );
  assert.deepEqual(seen, [], "no frame is ever read from the middle of a body");
  assert.equal(r.buffered, 0);
  // A ProtocolError thrown by the callback (e.g. parseAuthToken) fails it too.
  const r2 = new FrameReader();
  let err: unknown;
  try {
    r2.push(encodeFrame({ ver: 1, op: 7, seq: 1, body: utf8("nope") }), (f) => {
      parseAuthToken(f.body);
    });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ProtocolError && err.code === "bad_auth_token");
  assert.throws(() => r2.push(new Uint8Array(0), () => {}), (e) => e === err);
});

// ------------------------------------------------------------------ batches

Deno.test("BatchBuilder: grows past a body larger than twice its capacity", () => {
  const bb = new BatchBuilder(0);
  const big = new Uint8Array(10_000).fill(3);
  bb.add(1000, new Uint8Array([1]));
  bb.add(1001, big);
  const b = bb.finish();
  assert.equal(b.count, 2);
  assert.equal(b.ws.length, 16 + 17 + 16 + 10_000);
  assert.equal(b.ws.buffer.byteLength, b.ws.length, "finish returns an exact-size buffer");
});

Deno.test("batchFromFrames: rejects bytes that are not whole frames", () => {
  const f = encodeFrame({ ver: 1, op: 1000, seq: 0, body: new Uint8Array(3) });
  assert.equal(batchFromFrames(concat([f, f])).count, 2);
  assert.throws(() => batchFromFrames(f.subarray(0, 10)), ProtocolError);
  assert.throws(() => batchFromFrames(f.subarray(0, 18)), ProtocolError);
  const zero = f.slice();
  writeU32(zero, 0, 0);
  assert.throws(() => batchFromFrames(zero), ProtocolError, "packLen 0 must not loop forever");
});

// ------------------------------------------------------------------ Sub / Unsub bodies

Deno.test("parseOps: accepted forms", () => {
  const p = (s: string) => parseOps(utf8(s));
  assert.deepEqual(p(""), []);
  assert.deepEqual(p(","), []);
  assert.deepEqual(p("1000"), [1000]);
  assert.deepEqual(p("1000,"), [1000]);
  assert.deepEqual(p("1000,,1001"), [1000, 1001]);
  assert.deepEqual(p(" 1000, 1001"), [1000, 1001]);
  assert.deepEqual(p("2147483647"), [2147483647]);
  assert.deepEqual(p("-2147483648"), [-2147483648]);
  assert.deepEqual(p("0"), [0]);
  assert.ok(Object.is(p("-0")[0], 0), "-0 reads as 0, not negative zero");
  assert.deepEqual(p("0001000"), [1000]);
});

Deno.test("parseOps: rejected forms are bad_ops", () => {
  for (
    const s of [
      "2147483648",
      "-2147483649",
      "99999999999",
      "-",
      "1000,-",
      "1a",
      "1000 ",
      "1000;1001",
      "+5",
      "--1",
      "1-2",
      "1.5",
    ]
  ) {
    assertCode(() => parseOps(utf8(s)), "bad_ops");
  }
});

Deno.test("formatOps: ASCII decimal joined by commas", () => {
  assert.equal(text(formatOps([])), "");
  assert.equal(text(formatOps([1000])), "1000");
  assert.equal(text(formatOps([1000, -1, 0])), "1000,-1,0");
});

// ------------------------------------------------------------------ auth token

Deno.test("parseAuthToken: missing fields take goim's zero values", () => {
  assert.deepEqual(parseAuthToken(utf8("{}")), {
    mid: 0,
    key: "",
    room_id: "",
    platform: "",
    accepts: [],
  });
  assert.deepEqual(parseAuthToken(utf8('{"mid":5,"accepts":null,"key":null}')), {
    mid: 5,
    key: "",
    room_id: "",
    platform: "",
    accepts: [],
  });
  // Unknown fields are ignored; token is kept when present.
  const t = parseAuthToken(utf8('{"mid":1,"extra":true,"token":"jwt"}'));
  assert.equal(t.token, "jwt");
  assert.equal("extra" in t, false);
  // A UTF-8 BOM and surrounding whitespace are fine.
  assert.equal(parseAuthToken(new Uint8Array([0xef, 0xbb, 0xbf, ...utf8(' {"mid":2} ')])).mid, 2);
});

Deno.test("parseAuthToken: wrong shapes are bad_auth_token", () => {
  for (
    const s of [
      "",
      "not json",
      "null",
      "[]",
      "42",
      '"str"',
      '{"mid":"1"}',
      '{"mid":1.5}',
      '{"mid":1e300}',
      '{"key":1}',
      '{"room_id":[]}',
      '{"platform":{}}',
      '{"accepts":"1000"}',
      '{"accepts":[1000,"1001"]}',
      '{"accepts":[2147483648]}',
      '{"accepts":[1.5]}',
      '{"token":5}',
      '{"mid":1',
    ]
  ) {
    assertCode(() => parseAuthToken(utf8(s)), "bad_auth_token");
  }
  // Invalid UTF-8.
  assertCode(() => parseAuthToken(new Uint8Array([0x7b, 0xff, 0x7d])), "bad_auth_token");
});

// ------------------------------------------------------------------ errors and reasons

Deno.test("ProtocolError: name, code, message, reason", () => {
  const e = new ProtocolError("bad_ops", "unexpected byte");
  assert.ok(e instanceof Error);
  assert.equal(e.name, "ProtocolError");
  assert.equal(e.code, "bad_ops");
  assert.equal(e.message, "unexpected byte");
  assert.deepEqual(e.reason, { code: 4000, message: "bad_ops: unexpected byte" });
});

Deno.test("ReasonCode: values sit in the 4000–4999 application range", () => {
  assert.deepEqual({ ...ReasonCode }, {
    ProtocolError: 4000,
    AuthFailed: 4001,
    HandshakeTimeout: 4002,
    IdleTimeout: 4003,
    Replaced: 4004,
    SlowConsumer: 4005,
    ShuttingDown: 4006,
    LimitExceeded: 4007,
    Kicked: 4008,
    ServerError: 4500,
  });
});

Deno.test("encodeReason / decodeReason", () => {
  const r = { code: ReasonCode.IdleTimeout, message: 'no heartbeat in 480 s "quoted" 中' };
  assert.deepEqual(decodeReason(encodeReason(r)), r);
  // Extra fields are dropped on encode.
  const extra = { code: 1, message: "m", secret: "x" } as { code: number; message: string };
  assert.equal(text(encodeReason(extra)), '{"code":1,"message":"m"}');
  // Anything that is not a reason object comes back as text with code 0.
  for (const s of ["", "bye", "null", "[1]", '{"code":"1","message":"m"}', '{"code":1}', "{"]) {
    assert.deepEqual(decodeReason(utf8(s)), { code: 0, message: s }, s);
  }
  assert.equal(decodeReason(new Uint8Array([0xff])).message, "\ufffd");
});

// ------------------------------------------------------------------ bytes helpers

Deno.test("bytes helpers: concat, equals, utf8, text", () => {
  assert.deepEqual([...concat([])], []);
  assert.deepEqual([...concat([new Uint8Array([1]), new Uint8Array(0), new Uint8Array([2, 3])])], [
    1,
    2,
    3,
  ]);
  assert.ok(equals(new Uint8Array([1, 2]), new Uint8Array([1, 2])));
  assert.ok(!equals(new Uint8Array([1, 2]), new Uint8Array([1, 3])));
  assert.ok(!equals(new Uint8Array([1]), new Uint8Array([1, 0])));
  assert.deepEqual([...utf8("é")], [0xc3, 0xa9]);
  assert.equal(text(utf8("live://1000 中")), "live://1000 中");
});

Deno.test("encodeReason / decodeReason: the reconnect hint of a drain (docs/PROTOCOL.md)", () => {
  const r = { code: ReasonCode.ShuttingDown, message: "drain", reconnect_after_ms: 1830 };
  assert.equal(
    text(encodeReason(r)),
    '{"code":4006,"message":"drain","reconnect_after_ms":1830}',
  );
  assert.deepEqual(decodeReason(encodeReason(r)), r);
  // Not a non-negative integer: no hint, either way.
  for (const bad of [-1, 1.5, Number.NaN]) {
    const body = encodeReason({ code: 4006, message: "m", reconnect_after_ms: bad });
    assert.equal(text(body), '{"code":4006,"message":"m"}');
  }
  assert.deepEqual(decodeReason(utf8('{"code":4006,"message":"m","reconnect_after_ms":"9"}')), {
    code: 4006,
    message: "m",
  });
});

/**
 * protocol/streams.ts: the stream ops' bodies (docs/STREAMS.md,
 * "Operations"). Round trips, one StreamMsg's golden bytes written out by
 * hand, every malformed case the decoders must refuse, and a small seeded
 * fuzz (`PROTOCOL_SEED` replays a run, as in tests/protocol_fuzz_test.ts).
 */

import assert from "node:assert/strict";
import {
  decodeFrame,
  decodeStreamMsg,
  encodeFrame,
  encodeStreamAck,
  encodeStreamMsg,
  encodeStreamState,
  encodeStreamSync,
  MAX_ACK_IDS,
  MAX_EPOCH_BYTES,
  MAX_POS,
  MAX_PUSH_ID_BYTES,
  MAX_RECOVER_ENTRIES,
  MAX_STATE_STREAMS,
  MAX_STREAM_BYTES,
  Op,
  parseStreamAck,
  parseStreamsOption,
  parseStreamState,
  parseStreamSync,
  ProtocolError,
  StreamFlag,
  StreamKind,
  type StreamMsgFields,
  streamMsgLength,
  writeStreamMsg,
} from "../protocol/mod.ts";
import { Rng, seedFromEnv } from "./prng.ts";
import { flipBits, spliceIn } from "./mutate.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

function inner(op: number, body: string | Uint8Array): Uint8Array {
  return encodeFrame({ ver: 1, op, seq: 0, body: typeof body === "string" ? utf8(body) : body });
}

function refused(fn: () => unknown, what: string): void {
  assert.throws(
    fn,
    (e: unknown) => e instanceof ProtocolError && e.code === "bad_stream",
    what,
  );
}

/** Hand-built StreamMsg body pieces, for malformed variants. */
function rawBody(p: {
  kind?: number;
  flags?: number;
  posHi?: number;
  posLo?: number;
  epoch?: number[];
  id?: number[];
  stream?: number[];
  frame?: number[];
  eLen?: number;
  iLen?: number;
  sLen?: number;
}): Uint8Array {
  const epoch = p.epoch ?? [0x65];
  const id = p.id ?? [0x70];
  const stream = p.stream ?? Array.from(utf8("room:r"));
  const frame = p.frame ?? Array.from(inner(1000, "x"));
  const hi = p.posHi ?? 0, lo = p.posLo ?? 1;
  const sLen = p.sLen ?? stream.length;
  return new Uint8Array([
    p.kind ?? 1,
    p.flags ?? 0,
    hi >>> 24,
    (hi >>> 16) & 255,
    (hi >>> 8) & 255,
    hi & 255,
    lo >>> 24,
    (lo >>> 16) & 255,
    (lo >>> 8) & 255,
    lo & 255,
    p.eLen ?? epoch.length,
    ...epoch,
    p.iLen ?? id.length,
    ...id,
    sLen >>> 8,
    sLen & 255,
    ...stream,
    ...frame,
  ]);
}

// ------------------------------------------------------------------ golden

/**
 * kind 1 (room), flags 1 (ack), pos 42, epoch "e1", push id "p1", stream
 * "room:live://1", wrapping op 1000 "hi". Written out field by field.
 */
const GOLDEN_HEX = [
  // header: packLen 65, headerLen 16, ver 1, op 0x7FFFFF00 (StreamMsg), seq 0
  "00000041",
  "0010",
  "0001",
  "7fffff00",
  "00000000",
  // kind 1, flags 1, pos 42 (u64)
  "01",
  "01",
  "000000000000002a",
  // E 2, "e1"; I 2, "p1"
  "02",
  "6531",
  "02",
  "7031",
  // S 13, "room:live://1"
  "000d",
  "726f6f6d3a6c6976653a2f2f31",
  // the inner frame: packLen 18, headerLen 16, ver 1, op 1000, seq 0, "hi"
  "00000012",
  "0010",
  "0001",
  "000003e8",
  "00000000",
  "6869",
].join("");

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

Deno.test("StreamMsg: golden bytes of one room message", () => {
  const fields: StreamMsgFields = {
    kind: StreamKind.Room,
    flags: StreamFlag.Ack,
    pos: 42,
    epoch: "e1",
    pushId: "p1",
    stream: "room:live://1",
  };
  const frame = encodeStreamMsg(fields, inner(1000, "hi"));
  assert.equal(hex(frame), GOLDEN_HEX);
  const f = decodeFrame(frame);
  assert.equal(f.op, Op.StreamMsg);
  assert.equal(f.ver, 1);
  assert.equal(f.seq, 0);
  const m = decodeStreamMsg(f.body);
  assert.deepEqual({ ...m, frame: undefined }, { ...fields, frame: undefined });
  const innerFrame = decodeFrame(m.frame);
  assert.equal(innerFrame.op, 1000);
  assert.deepEqual(Array.from(innerFrame.body), [0x68, 0x69]);
});

// ------------------------------------------------------------------ round trips

Deno.test("StreamMsg: round trips every kind, flag and bound", () => {
  const cases: StreamMsgFields[] = [
    { kind: StreamKind.Room, pos: 1, epoch: "e", pushId: "a", stream: "room:live://1000" },
    { kind: StreamKind.Mid, flags: 7, pos: MAX_POS, epoch: "x".repeat(64), stream: "mid:42" },
    { kind: StreamKind.Mid, pos: 2 ** 32, epoch: "", pushId: "-_09AZaz", stream: "mid:1" },
    { kind: StreamKind.Key, flags: StreamFlag.Ack | StreamFlag.Resent, pushId: "k".repeat(64) },
    { kind: StreamKind.Room, pos: 0, stream: "room:é 房间 🎉".padEnd(300, "x") },
  ];
  for (const c of cases) {
    const body = new Uint8Array(300).fill(7);
    const frame = encodeStreamMsg(c, inner(2000, body));
    assert.equal(frame.length, streamMsgLength(c, 316));
    const m = decodeStreamMsg(decodeFrame(frame, { maxBody: 1 << 20 }).body);
    assert.equal(m.kind, c.kind);
    assert.equal(m.flags, c.flags ?? 0);
    assert.equal(m.pos, c.pos ?? 0);
    assert.equal(m.epoch, c.epoch ?? "");
    assert.equal(m.pushId, c.pushId ?? "");
    assert.equal(m.stream, c.stream ?? "");
    assert.deepEqual(decodeFrame(m.frame, { maxBody: 1 << 20 }).body, body);
    // zero-copy: the inner frame is a view of the decoded buffer
    assert.equal(m.frame.buffer, frame.buffer);
  }
});

Deno.test("StreamMsg: writeStreamMsg packs several frames into one buffer", () => {
  const a: StreamMsgFields = { kind: StreamKind.Room, pos: 5, epoch: "e", stream: "room:r" };
  const b: StreamMsgFields = { ...a, pos: 6, pushId: "id6" };
  const ia = inner(1000, "one"), ib = inner(1000, "two!");
  const out = new Uint8Array(streamMsgLength(a, ia.length) + streamMsgLength(b, ib.length));
  const mid = writeStreamMsg(out, 0, a, ia);
  assert.equal(writeStreamMsg(out, mid, b, ib), out.length);
  assert.deepEqual(out.subarray(0, mid), encodeStreamMsg(a, ia));
  assert.deepEqual(out.subarray(mid), encodeStreamMsg(b, ib));
});

Deno.test("StreamMsg: the encoder refuses what the contract does not allow", () => {
  const ok = inner(1000, "x");
  const base: StreamMsgFields = { kind: StreamKind.Room, pos: 1, epoch: "e", stream: "room:r" };
  const bad: [string, StreamMsgFields, Uint8Array?][] = [
    ["kind 0", { ...base, kind: 0 as StreamKind }],
    ["kind 4", { ...base, kind: 4 as StreamKind }],
    ["flags 8", { ...base, flags: 8 }],
    ["flags -1", { ...base, flags: -1 }],
    ["pos 2^53", { ...base, pos: 2 ** 53 }],
    ["pos -1", { ...base, pos: -1 }],
    ["pos 1.5", { ...base, pos: 1.5 }],
    ["epoch 65", { ...base, epoch: "e".repeat(MAX_EPOCH_BYTES + 1) }],
    ["epoch non-ASCII", { ...base, epoch: "é" }],
    ["push id 65", { ...base, pushId: "p".repeat(MAX_PUSH_ID_BYTES + 1) }],
    ["push id char", { ...base, pushId: "a b" }],
    ["key with pos", { kind: StreamKind.Key, pos: 1 }],
    ["key with epoch", { kind: StreamKind.Key, epoch: "e" }],
    ["key with stream", { kind: StreamKind.Key, stream: "room:r" }],
    ["room named mid:", { ...base, stream: "mid:1" }],
    ["mid named room:", { ...base, kind: StreamKind.Mid, stream: "room:r" }],
    ["stream over 65535", { ...base, stream: "room:" + "x".repeat(65535) }],
    ["inner short", base, new Uint8Array(15)],
    ["inner packLen", base, ok.subarray(0, 16)],
    [
      "inner headerLen",
      base,
      (() => {
        const f = ok.slice();
        f[5] = 17;
        return f;
      })(),
    ],
  ];
  for (const [what, f, i] of bad) refused(() => encodeStreamMsg(f, i ?? ok), what);
});

// ------------------------------------------------------------------ malformed StreamMsg

Deno.test("StreamMsg: the decoder refuses every malformed body", () => {
  assert.equal(decodeStreamMsg(rawBody({})).pos, 1, "the base case is valid");
  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["shorter than the fixed part", rawBody({}).subarray(0, 13)],
    ["kind 0", rawBody({ kind: 0 })],
    ["kind 4", rawBody({ kind: 4 })],
    ["unknown flag bit", rawBody({ flags: 8 })],
    ["pos 2^53", rawBody({ posHi: 2 ** 21, posLo: 0 })],
    ["pos 2^64-1", rawBody({ posHi: 0xffffffff, posLo: 0xffffffff })],
    ["epoch length 65", rawBody({ epoch: Array(65).fill(0x61) })],
    ["epoch overruns", rawBody({ eLen: 60 }).subarray(0, 40)],
    ["epoch non-ASCII", rawBody({ epoch: [0xc3, 0xa9] })],
    ["push id length 65", rawBody({ id: Array(65).fill(0x61) })],
    ["push id bad char", rawBody({ id: [0x2e] })],
    ["push id overruns", rawBody({ iLen: 200, id: [] }).subarray(0, 20)],
    ["stream overruns", rawBody({ sLen: 0xffff })],
    ["stream not UTF-8", rawBody({ stream: [0x72, 0x6f, 0x6f, 0x6d, 0x3a, 0xff] })],
    ["room kind, mid name", rawBody({ stream: Array.from(utf8("mid:1")) })],
    ["mid kind, room name", rawBody({ kind: 2 })],
    ["key kind with pos", rawBody({ kind: 3, epoch: [], stream: [] })],
    ["key kind with epoch", rawBody({ kind: 3, posLo: 0, stream: [] })],
    ["key kind with stream", rawBody({ kind: 3, posLo: 0, epoch: [] })],
    ["no inner frame", rawBody({ frame: [] })],
    ["inner frame short", rawBody({ frame: Array.from(inner(1000, "x")).slice(0, 15) })],
    ["inner frame truncated", rawBody({ frame: Array.from(inner(1000, "xy")).slice(0, 17) })],
    ["trailing bytes after the inner frame", rawBody({ frame: [...inner(1000, "x"), 0] })],
    ["inner headerLen", rawBody({ frame: [0, 0, 0, 16, 0, 17, 0, 1, 0, 0, 3, 232, 0, 0, 0, 0] })],
  ];
  for (const [what, body] of cases) refused(() => decodeStreamMsg(body), what);
  assert.equal(
    decodeStreamMsg(rawBody({ kind: 3, posLo: 0, epoch: [], stream: [] })).kind,
    3,
    "a valid kind 3",
  );
});

// ------------------------------------------------------------------ JSON bodies

Deno.test("StreamAck: round trip and bounds", () => {
  const ids = Array.from({ length: MAX_ACK_IDS }, (_, i) => `id-${i}_X`);
  assert.deepEqual(parseStreamAck(encodeStreamAck(ids)), ids);
  assert.deepEqual(parseStreamAck(utf8('{"ids":["a"],"other":1}')), ["a"], "unknown keys ignored");
  const bad = [
    "",
    "not json",
    "[]",
    "null",
    '"ids"',
    "{}",
    '{"ids":[]}',
    '{"ids":"a"}',
    '{"ids":[1]}',
    '{"ids":[""]}',
    '{"ids":["a b"]}',
    '{"ids":["é"]}',
    `{"ids":["${"a".repeat(65)}"]}`,
    `{"ids":${JSON.stringify(Array(65).fill("a"))}}`,
  ];
  for (const s of bad) refused(() => parseStreamAck(utf8(s)), s);
  refused(() => parseStreamAck(new Uint8Array([0x7b, 0xff, 0x7d])), "not UTF-8");
  refused(() => encodeStreamAck([]), "encode none");
  refused(() => encodeStreamAck(["a/b"]), "encode bad id");
});

Deno.test("StreamSync and the token's streams: round trip and bounds", () => {
  const entries = [
    { stream: "room:live://1000", epoch: "b8f1c2", pos: 41 },
    { stream: "mid:42", epoch: "", pos: 0 },
    { stream: "x".repeat(MAX_STREAM_BYTES), epoch: "e".repeat(64), pos: MAX_POS },
    { stream: "é".repeat(MAX_STREAM_BYTES / 2), epoch: "", pos: 0 },
  ];
  assert.deepEqual(parseStreamSync(encodeStreamSync(entries)), entries);
  assert.deepEqual(parseStreamSync(utf8('{"recover":[]}')), []);
  assert.deepEqual(parseStreamSync(utf8('{"recover":[{"stream":"mid:1"}]}')), [
    { stream: "mid:1", epoch: "", pos: 0 },
  ], "epoch and pos default to the no-history position");
  assert.deepEqual(parseStreamsOption({}), { recover: [] });
  assert.deepEqual(parseStreamsOption({ recover: entries, more: true }), { recover: entries });

  const badEntries: unknown[] = [
    null,
    [],
    "s",
    {},
    { stream: "" },
    { stream: 1 },
    { stream: "x".repeat(MAX_STREAM_BYTES + 1) },
    { stream: "é".repeat(MAX_STREAM_BYTES / 2 + 1) },
    { stream: "s", epoch: 1 },
    { stream: "s", epoch: "e".repeat(65) },
    { stream: "s", epoch: "é" },
    { stream: "s", pos: -1 },
    { stream: "s", pos: 1.5 },
    { stream: "s", pos: 2 ** 53 },
    { stream: "s", pos: "1" },
  ];
  for (const e of badEntries) {
    refused(() => parseStreamSync(utf8(JSON.stringify({ recover: [e] }))), JSON.stringify(e));
    refused(() => parseStreamsOption({ recover: [e] }), `token ${JSON.stringify(e)}`);
  }
  const nine = Array(MAX_RECOVER_ENTRIES + 1).fill({ stream: "mid:1", epoch: "", pos: 0 });
  refused(() => parseStreamSync(utf8(JSON.stringify({ recover: nine }))), "9 entries");
  refused(() => parseStreamsOption({ recover: nine }), "token: 9 entries");
  for (const v of [null, [], "x", 1, true]) refused(() => parseStreamsOption(v), String(v));
  refused(() => parseStreamsOption({ recover: {} }), "recover not an array");
  for (const s of ["", "{}", '{"recover":null}', '{"recover":{}}', "[]", "x"]) {
    refused(() => parseStreamSync(utf8(s)), s);
  }
  refused(() => encodeStreamSync(nine), "encode 9");
});

Deno.test("StreamState: round trip and bounds", () => {
  const streams = [
    { stream: "room:live://1000", epoch: "b8f1c2", pos: 120, recovered: true, replayed: 79 },
    { stream: "mid:42", epoch: "c11e90", pos: 3, recovered: false, reason: "epoch_changed" },
    { stream: "mid:43", epoch: "", pos: 0 },
  ] as const;
  const body = encodeStreamState(streams);
  assert.equal(
    new TextDecoder().decode(body),
    '{"streams":[{"stream":"room:live://1000","epoch":"b8f1c2","pos":120,"recovered":true,' +
      '"replayed":79},{"stream":"mid:42","epoch":"c11e90","pos":3,"recovered":false,' +
      '"reason":"epoch_changed"},{"stream":"mid:43","epoch":"","pos":0}]}',
  );
  assert.deepEqual(parseStreamState(body), streams);
  const long = "room:" + "x".repeat(1000);
  assert.equal(
    parseStreamState(encodeStreamState([{ stream: long, epoch: "", pos: 0 }]))[0].stream,
    long,
  );

  const bad: unknown[] = [
    { stream: "s", epoch: "e" },
    { stream: "s", pos: 1 },
    { stream: "", epoch: "e", pos: 1 },
    { stream: "s", epoch: "e", pos: -1 },
    { stream: "s", epoch: "e", pos: 1, recovered: 1 },
    { stream: "s", epoch: "e", pos: 1, replayed: 2 },
    { stream: "s", epoch: "e", pos: 1, recovered: false, replayed: 2 },
    { stream: "s", epoch: "e", pos: 1, recovered: true, replayed: -2 },
    { stream: "s", epoch: "e", pos: 1, reason: "unavailable" },
    { stream: "s", epoch: "e", pos: 1, recovered: true, reason: "unavailable" },
    { stream: "s", epoch: "e", pos: 1, recovered: false, reason: "gone" },
  ];
  for (const e of bad) {
    refused(() => parseStreamState(utf8(JSON.stringify({ streams: [e] }))), JSON.stringify(e));
  }
  const many = Array(MAX_STATE_STREAMS + 1).fill({ stream: "s", epoch: "", pos: 0 });
  refused(() => parseStreamState(utf8(JSON.stringify({ streams: many }))), "17 streams");
  refused(() => encodeStreamState(many), "encode 17");
  for (const s of ["", "{}", '{"streams":{}}', "[]"]) refused(() => parseStreamState(utf8(s)), s);
});

// ------------------------------------------------------------------ fuzz

const SEED = seedFromEnv(0x57ea_c0de);

function randomFields(rng: Rng): StreamMsgFields {
  const kind = rng.pick([StreamKind.Room, StreamKind.Mid, StreamKind.Key]);
  const idChars = "abcXYZ019-_";
  const pushId = rng.bool(0.2) ? "" : Array.from(
    { length: rng.int(1, 64) },
    () => idChars[rng.int(0, idChars.length - 1)],
  ).join("");
  if (kind === StreamKind.Key) return { kind, flags: rng.int(0, 7), pushId };
  return {
    kind,
    flags: rng.int(0, 7),
    pos: rng.bool(0.1) ? MAX_POS : rng.int(0, 2 ** 40),
    epoch: "e".repeat(rng.int(0, 64)),
    pushId,
    stream: (kind === StreamKind.Room ? "room:" : "mid:") + "ü".repeat(rng.int(0, 40)),
  };
}

Deno.test("StreamMsg fuzz: mutated bodies decode to a re-encodable message or bad_stream", () => {
  const rng = new Rng(SEED);
  const deadline = performance.now() + 1500;
  let ok = 0, refusedCount = 0, n = 0;
  for (; n < 20_000 && performance.now() < deadline; n++) {
    const fields = randomFields(rng);
    const frame = encodeStreamMsg(fields, inner(1000 + rng.int(0, 9), rng.bytes(rng.int(0, 40))));
    let body = frame.subarray(16);
    const r = rng.next();
    if (r < 0.4) body = flipBits(rng, body);
    else if (r < 0.6) body = body.subarray(0, rng.int(0, body.length - 1));
    else if (r < 0.8) body = spliceIn(body, rng.int(0, body.length), rng.bytes(rng.int(1, 4)));
    else if (r < 0.9) body = rng.bytes(rng.int(0, 80));
    try {
      const m = decodeStreamMsg(body);
      // Whatever decodes is canonical: encoding it again gives the same bytes.
      const again = encodeStreamMsg(m, m.frame).subarray(16);
      assert.deepEqual(again, body, `seed ${SEED} input ${n}`);
      ok++;
    } catch (e) {
      if (!(e instanceof ProtocolError) || e.code !== "bad_stream") {
        throw new Error(`seed ${SEED} input ${n}: ${e}`);
      }
      refusedCount++;
    }
  }
  console.log(`seed ${SEED}: ${n} inputs, ${ok} decoded, ${refusedCount} refused`);
  assert.ok(ok > 0 && refusedCount > 0);
});

Deno.test("JSON bodies fuzz: mutated bodies parse to valid values or bad_stream", () => {
  const rng = new Rng(SEED ^ 0x1234);
  const samples = [
    encodeStreamAck(["Xk3", "Yz9-_", "a".repeat(64)]),
    encodeStreamSync([{ stream: "room:live://1", epoch: "b8", pos: 41 }, {
      stream: "mid:4",
      epoch: "",
      pos: 0,
    }]),
    encodeStreamState([{ stream: "mid:42", epoch: "c1", pos: 3, recovered: true, replayed: 2 }]),
  ];
  const parsers = [
    (b: Uint8Array) => encodeStreamAck(parseStreamAck(b)),
    (b: Uint8Array) => encodeStreamSync(parseStreamSync(b)),
    (b: Uint8Array) => encodeStreamState(parseStreamState(b)),
  ];
  const deadline = performance.now() + 500;
  for (let n = 0; n < 10_000 && performance.now() < deadline; n++) {
    const which = rng.int(0, 2);
    let body = samples[which];
    const r = rng.next();
    if (r < 0.5) body = flipBits(rng, body);
    else if (r < 0.8) body = body.subarray(0, rng.int(0, body.length));
    else body = spliceIn(body, rng.int(0, body.length), utf8(rng.pick(["1", "-", '"', "[", "}"])));
    for (const parse of parsers) {
      try {
        // A value that parses re-encodes (the encoders validate it again).
        parse(body);
      } catch (e) {
        if (!(e instanceof ProtocolError) || e.code !== "bad_stream") {
          throw new Error(`seed ${SEED} input ${n}: ${e}`);
        }
      }
    }
  }
});

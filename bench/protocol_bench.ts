/**
 * Protocol codec micro-benchmarks (`./scripts/deno bench -A bench/`).
 *
 * Every bench that walks a buffer processes a known number of frames and
 * bytes per iteration (in its name), so throughput is derived from the
 * reported time per iteration: frames/s = frames / (ns/iter) × 1e9 and
 * GB/s = bytes / (ns/iter). See BENCHMARKS.md for the figures.
 *
 * @module
 */

import {
  BatchBuilder,
  decodeFrame,
  decodeFrames,
  decodeHeader,
  encodeBatch,
  encodeFrame,
  encodePush,
  type FrameCursor,
  FrameReader,
  HEADER_LEN,
  type PushFrame,
  readI32,
  readU16,
  readU32,
  writeHeader,
} from "../protocol/mod.ts";

// ---------------------------------------------------------------- fixtures

/** Frame size used by the streaming benches: 16-byte header + 48-byte body. */
const FRAME = 64;
const BODY = FRAME - HEADER_LEN;
/** 1 MiB of back-to-back 64-byte frames: 16,384 frames. */
const STREAM_BYTES = 1 << 20;
const STREAM_FRAMES = STREAM_BYTES / FRAME;

function makeStream(): Uint8Array {
  const buf = new Uint8Array(STREAM_BYTES);
  for (let i = 0; i < STREAM_FRAMES; i++) {
    const o = i * FRAME;
    writeHeader(buf, o, BODY, 1, 1000 + (i & 7), i);
    buf.fill(i & 0xff, o + HEADER_LEN, o + FRAME);
  }
  return buf;
}

const stream = makeStream();

function split(buf: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let o = 0; o < buf.length; o += size) out.push(buf.subarray(o, o + size));
  return out;
}

/** 16 chunks of 64 KiB (frames never straddle them). */
const chunks64k = split(stream, 64 * 1024);
/** 7-byte chunks: every frame straddles chunks, every header is split. */
const chunks7 = split(stream, 7);

// Results go to a sink so the JIT cannot drop the work.
let sink = 0;
function consume(v: number): void {
  sink = (sink + v) | 0;
}

// ------------------------------------------------------------ header decode

Deno.bench({
  name: "decodeHeader × 16384 (1 MiB of 64 B frames)",
  group: "header decode",
  baseline: true,
  fn() {
    let s = 0;
    for (let o = 0; o < STREAM_BYTES; o += FRAME) {
      const h = decodeHeader(stream, o);
      s += h.op + h.packLen;
    }
    consume(s);
  },
});

Deno.bench({
  name: "readU32/readU16/readI32 × 16384 (raw header path)",
  group: "header decode",
  fn() {
    let s = 0;
    for (let o = 0; o < STREAM_BYTES; o += FRAME) {
      const packLen = readU32(stream, o);
      const headerLen = readU16(stream, o + 4);
      const ver = readU16(stream, o + 6);
      const op = readI32(stream, o + 8);
      const seq = readI32(stream, o + 12);
      s += packLen + headerLen + ver + op + seq;
    }
    consume(s);
  },
});

// ------------------------------------------------------------ encode/decode

const body48 = stream.subarray(HEADER_LEN, FRAME);
const frame64 = stream.subarray(0, FRAME);
const body4k = new Uint8Array(4096).fill(7);
const frame4k = encodeFrame({ ver: 1, op: 4, seq: 1, body: body4k });

// Reference point: every encoder allocates its output, and allocating a
// Uint8Array, however small, is what dominates their cost.
Deno.bench({
  name: "reference: new Uint8Array(64)",
  group: "encodeFrame",
  fn() {
    consume(new Uint8Array(64).length);
  },
});

Deno.bench({
  name: "encodeFrame 48 B body",
  group: "encodeFrame",
  baseline: true,
  fn() {
    consume(encodeFrame({ ver: 1, op: 1000, seq: 1, body: body48 }).length);
  },
});

Deno.bench({
  name: "encodeFrame 4 KiB body",
  group: "encodeFrame",
  fn() {
    consume(encodeFrame({ ver: 1, op: 1000, seq: 1, body: body4k }).length);
  },
});

Deno.bench({
  name: "decodeFrame 64 B message",
  group: "decodeFrame",
  baseline: true,
  fn() {
    consume(decodeFrame(frame64).op);
  },
});

Deno.bench({
  name: "decodeFrame 4 KiB message",
  group: "decodeFrame",
  fn() {
    consume(decodeFrame(frame4k).body.length);
  },
});

Deno.bench({
  name: "decodeFrames × 16384 (1 MiB, array of Frame)",
  group: "decodeFrame",
  fn() {
    consume(decodeFrames(stream).length);
  },
});

// ------------------------------------------------------------ FrameReader

// A callback that does trivial work per frame, so the bench measures the
// reader and not the consumer.
let opSum = 0;
const onFrame = (f: FrameCursor): void => {
  opSum += f.op;
};

Deno.bench({
  name: "FrameReader 1 MiB, 16384 × 64 B frames, 64 KiB chunks",
  group: "FrameReader",
  baseline: true,
  fn() {
    const r = new FrameReader();
    opSum = 0;
    for (let i = 0; i < chunks64k.length; i++) r.push(chunks64k[i], onFrame);
    consume(opSum);
  },
});

Deno.bench({
  name: "FrameReader 1 MiB, 16384 × 64 B frames, one 1 MiB chunk",
  group: "FrameReader",
  fn() {
    const r = new FrameReader();
    opSum = 0;
    r.push(stream, onFrame);
    consume(opSum);
  },
});

Deno.bench({
  name: "FrameReader 1 MiB, 16384 × 64 B frames, 7 B chunks",
  group: "FrameReader",
  fn() {
    const r = new FrameReader();
    opSum = 0;
    for (let i = 0; i < chunks7.length; i++) r.push(chunks7[i], onFrame);
    consume(opSum);
  },
});

// The comet gives every connection its own closure: same code, a new
// function object per reader, same trivial work as onFrame.
function makeHandler(): (f: FrameCursor) => void {
  return (f) => {
    opSum += f.op;
  };
}

Deno.bench({
  name: "FrameReader 1 MiB, 64 KiB chunks, a fresh closure per reader",
  group: "FrameReader",
  fn() {
    const r = new FrameReader();
    const h = makeHandler();
    opSum = 0;
    for (let i = 0; i < chunks64k.length; i++) r.push(chunks64k[i], h);
    consume(opSum);
  },
});

// Eight unrelated callbacks through the same reader code: a megamorphic
// call site inside FrameReader (worst case for the JIT's inlining).
const distinct: ((f: FrameCursor) => void)[] = [
  (f) => (opSum += f.op),
  (f) => (opSum += f.op + 1),
  (f) => (opSum += f.seq),
  (f) => (opSum ^= f.op),
  (f) => (opSum += f.bodyLength),
  (f) => (opSum += f.ver),
  (f) => (opSum -= f.op),
  (f) => (opSum |= f.op),
];

Deno.bench({
  name: "FrameReader 1 MiB, 64 KiB chunks, 8 distinct callbacks (megamorphic)",
  group: "FrameReader",
  fn() {
    opSum = 0;
    for (let i = 0; i < chunks64k.length; i++) {
      new FrameReader().push(chunks64k[i], distinct[i & 7]);
    }
    consume(opSum);
  },
});

// ------------------------------------------------------------ push encoding

const msg100 = new Uint8Array(100).fill(1);
const hundred: PushFrame[] = Array.from({ length: 100 }, (_, i) => ({
  op: 1000 + (i & 3),
  body: msg100,
}));

Deno.bench({
  name: "encodePush 100 B message",
  group: "push",
  baseline: true,
  fn() {
    consume(encodePush(1000, msg100).ws.length);
  },
});

Deno.bench({
  name: "encodeBatch 100 × 100 B messages",
  group: "push",
  fn() {
    consume(encodeBatch(hundred).ws.length);
  },
});

const builder = new BatchBuilder();
Deno.bench({
  name: "BatchBuilder 100 × add(100 B) + finish",
  group: "push",
  fn() {
    for (let i = 0; i < 100; i++) builder.add(1000, msg100);
    consume(builder.finish().ws.length);
  },
});

globalThis.addEventListener("unload", () => {
  if (sink === 0x7fffffff) console.log(sink);
});

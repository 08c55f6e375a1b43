/**
 * Property / round-trip tests for the protocol codec, driven by a small
 * seeded PRNG (mulberry32). The seed is fixed so runs are reproducible; set
 * `PROTOCOL_SEED=<n>` to replay another one (`PROTOCOL_SEED=random` picks a
 * fresh one). Every failure message names the seed and the case number.
 */

import assert from "node:assert/strict";
import {
  type AuthToken,
  BatchBuilder,
  batchFromFrames,
  checkHeader,
  concat,
  decodeFrame,
  decodeFrames,
  decodeHeader,
  encodeAuthToken,
  encodeBatch,
  encodeFrame,
  encodePush,
  formatOps,
  type Frame,
  type FrameCursor,
  FrameReader,
  parseAuthToken,
  parseOps,
  ProtocolError,
  type PushFrame,
  writeHeader,
} from "../protocol/mod.ts";
import { Rng as BaseRng, seedFromEnv } from "./prng.ts";

// ------------------------------------------------------------------ PRNG

const SEED = seedFromEnv(0x60d1b2c3);

class Rng extends BaseRng {
  int32(): number {
    if (this.bool(0.2)) return this.pick([0, 1, -1, 0x7fffffff, -0x80000000, 1000, 65535, 65536]);
    return (this.next() * 2 ** 32) | 0;
  }
  u16(): number {
    if (this.bool(0.2)) return this.pick([0, 1, 0x7fff, 0x8000, 0xffff]);
    return this.int(0, 0xffff);
  }
  /** A length in [0, max], biased towards the edges and small sizes. */
  len(max: number): number {
    const r = this.next();
    if (r < 0.1) return 0;
    if (r < 0.2) return max;
    if (r < 0.6) return this.int(0, Math.min(max, 32));
    return this.int(0, max);
  }
}

/** Runs `cases` numbered cases, each with its own derived seed, naming it on failure. */
function forAll(name: string, cases: number, fn: (rng: Rng, i: number) => void): void {
  for (let i = 0; i < cases; i++) {
    const seed = (SEED ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
    try {
      fn(new Rng(seed), i);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      console.error(
        `${name}: case ${i} failed (PROTOCOL_SEED=${SEED}, case seed ${seed}): ${msg}`,
      );
      throw e;
    }
  }
}

// ------------------------------------------------------------------ helpers

interface Spec {
  ver: number;
  op: number;
  seq: number;
  body: Uint8Array;
}

function randomFrame(rng: Rng, maxBody: number): Spec {
  return { ver: rng.u16(), op: rng.int32(), seq: rng.int32(), body: rng.bytes(rng.len(maxBody)) };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function assertSameFrame(got: Frame, want: Spec, what: string): void {
  assert.equal(got.ver, want.ver, `${what}: ver`);
  assert.equal(got.op, want.op, `${what}: op`);
  assert.equal(got.seq, want.seq, `${what}: seq`);
  assert.ok(
    sameBytes(got.body, want.body),
    `${what}: body differs (${got.body.length} vs ${want.body.length} bytes)`,
  );
}

function concatSpecs(specs: readonly Spec[]): { stream: Uint8Array; starts: number[] } {
  let n = 0;
  for (const s of specs) n += 16 + s.body.length;
  const stream = new Uint8Array(n);
  const starts: number[] = [];
  let o = 0;
  for (const s of specs) {
    starts.push(o);
    writeHeader(stream, o, s.body.length, s.ver, s.op, s.seq);
    stream.set(s.body, o + 16);
    o += 16 + s.body.length;
  }
  return { stream, starts };
}

/** Chunk sizes for a stream of `n` bytes according to a named plan. */
function splitPlan(rng: Rng, n: number, plan: string): number[] {
  const sizes: number[] = [];
  let left = n;
  while (left > 0) {
    let s: number;
    switch (plan) {
      case "1-byte":
        s = 1;
        break;
      case "whole":
        s = left;
        break;
      case "small":
        s = rng.int(1, 20);
        break;
      case "around-header":
        s = rng.pick([15, 16, 17, 31, 32, 33]);
        break;
      default:
        s = rng.int(1, Math.max(1, Math.min(n, 300)));
    }
    s = Math.min(s, left);
    sizes.push(s);
    left -= s;
  }
  // Empty chunks are legal reads too.
  if (rng.bool(0.3)) sizes.splice(rng.int(0, sizes.length), 0, 0);
  return sizes;
}

/**
 * Copies `bytes[from, from+len)` into a fresh buffer padded with junk on both
 * sides and returns the subarray: the reader must respect byteOffset/length.
 */
function paddedChunk(rng: Rng, bytes: Uint8Array, from: number, len: number): Uint8Array {
  const pad = rng.int(0, 9);
  const backing = new Uint8Array(pad + len + rng.int(0, 9)).fill(0xa5);
  backing.set(bytes.subarray(from, from + len), pad);
  return backing.subarray(pad, pad + len);
}

const MAX_BODIES = [0, 1, 15, 16, 17, 64, 255, 4096];

// ------------------------------------------------------------------ frames

Deno.test(`property: random frames encode → decode round trip (seed ${SEED})`, () => {
  forAll("frame round trip", 3000, (rng) => {
    const maxBody = rng.pick(MAX_BODIES);
    const spec = randomFrame(rng, maxBody);
    const wire = encodeFrame(spec);
    assert.equal(wire.length, 16 + spec.body.length);
    assert.deepEqual(decodeHeader(wire), {
      packLen: wire.length,
      headerLen: 16,
      ver: spec.ver,
      op: spec.op,
      seq: spec.seq,
    });
    const f = decodeFrame(wire, { maxBody });
    assertSameFrame(f, spec, "decodeFrame");
    assert.equal(f.body.buffer, wire.buffer, "decodeFrame body is a view");
    assert.equal(f.body.byteOffset, wire.byteOffset + 16);
    // The encoder copied the body: changing the source leaves the frame alone.
    if (spec.body.length > 0) {
      const before = wire[16];
      spec.body[0] ^= 0xff;
      assert.equal(wire[16], before);
      spec.body[0] ^= 0xff;
    }
    // A smaller limit rejects it exactly when the body is over the limit.
    if (spec.body.length > 0) {
      assert.throws(
        () => decodeFrame(wire, { maxBody: spec.body.length - 1 }),
        (e: unknown) => e instanceof ProtocolError && e.code === "packlen_too_large",
      );
    }
    // Decoding a frame inside a larger buffer (non-zero byteOffset).
    const pad = rng.int(1, 7);
    const host = new Uint8Array(pad + wire.length + pad).fill(0xee);
    host.set(wire, pad);
    const view = host.subarray(pad, pad + wire.length);
    const g = decodeFrame(view, { maxBody });
    assertSameFrame(g, spec, "decodeFrame(view)");
    assert.equal(g.body.byteOffset, pad + 16);
    assert.equal(decodeHeader(host, pad).packLen, wire.length);
  });
});

Deno.test(`property: random streams through decodeFrames (seed ${SEED})`, () => {
  forAll("decodeFrames", 500, (rng) => {
    const specs = Array.from({ length: rng.int(0, 40) }, () => randomFrame(rng, 300));
    const { stream, starts } = concatSpecs(specs);
    const got = decodeFrames(stream);
    assert.equal(got.length, specs.length);
    got.forEach((f, i) => {
      assertSameFrame(f, specs[i], `frame ${i}`);
      assert.equal(f.body.buffer, stream.buffer);
      assert.equal(f.body.byteOffset, starts[i] + 16);
    });
    // Cutting the stream anywhere inside a frame is "truncated".
    if (stream.length > 0) {
      const cut = rng.int(0, stream.length - 1);
      const whole = starts.includes(cut);
      if (!whole) {
        assert.throws(
          () => decodeFrames(stream.subarray(0, cut)),
          (e: unknown) => e instanceof ProtocolError && e.code === "truncated",
        );
      } else {
        assert.equal(decodeFrames(stream.subarray(0, cut)).length, starts.indexOf(cut));
      }
    }
  });
});

// ------------------------------------------------------------------ FrameReader

const PLANS = ["1-byte", "whole", "small", "around-header", "random"];

Deno.test(`property: FrameReader yields the same frames for any chunking (seed ${SEED})`, () => {
  let viewsChecked = 0;
  let copiesChecked = 0;
  forAll("FrameReader chunking", 400, (rng, i) => {
    const maxBody = rng.pick(MAX_BODIES);
    const count = rng.int(0, 30);
    const specs = Array.from({ length: count }, () => randomFrame(rng, maxBody));
    const { stream, starts } = concatSpecs(specs);
    const ends = specs.map((s, k) => starts[k] + 16 + s.body.length);
    const plan = PLANS[i % PLANS.length];
    const sizes = splitPlan(rng, stream.length, plan);

    const reader = new FrameReader({ maxBody });
    assert.equal(reader.maxBody, maxBody);
    let next = 0; // index of the next expected frame
    let pushed = 0;
    let completed = 0; // bytes of frames delivered so far
    for (const size of sizes) {
      const chunkStart = pushed;
      const chunk = paddedChunk(rng, stream, pushed, size);
      reader.push(chunk, (c: FrameCursor) => {
        assert.ok(next < specs.length, "more frames than were sent");
        const want = specs[next];
        const what = `${plan} frame ${next}`;
        assertSameFrame(c, want, what);
        assert.equal(c.bodyLength, want.body.length);
        assert.equal(c.bodyEnd - c.bodyStart, want.body.length);
        const body = c.body;
        if (starts[next] >= chunkStart && ends[next] <= chunkStart + size) {
          // Wholly inside this chunk: zero-copy views of the pushed chunk.
          assert.equal(c.buf, chunk, `${what}: cursor.buf is the chunk`);
          assert.equal(body.buffer, chunk.buffer, `${what}: body shares the chunk's memory`);
          assert.equal(body.byteOffset, chunk.byteOffset + starts[next] - chunkStart + 16);
          viewsChecked++;
        } else {
          assert.notEqual(c.buf, chunk, `${what}: a split frame is reassembled`);
          copiesChecked++;
        }
        // toFrame detaches.
        const copy = c.toFrame();
        assertSameFrame(copy, want, `${what} toFrame`);
        if (copy.body.length > 0) assert.notEqual(copy.body.buffer, c.buf.buffer);
        completed = ends[next];
        next++;
      });
      pushed += size;
      assert.equal(reader.buffered, pushed - completed, `${plan}: buffered after ${pushed}`);
      assert.equal(reader.partial, pushed > completed);
      assert.ok(reader.buffered <= 16 + maxBody);
    }
    assert.equal(next, specs.length, `${plan}: frame count`);
    assert.equal(reader.buffered, 0);
  });
  assert.ok(viewsChecked > 1000, `zero-copy case exercised (${viewsChecked})`);
  assert.ok(copiesChecked > 1000, `split case exercised (${copiesChecked})`);
});

Deno.test(`property: frames before a bad header are delivered; code independent of split (seed ${SEED})`, () => {
  forAll("bad header", 600, (rng, i) => {
    const maxBody = rng.pick(MAX_BODIES);
    const specs = Array.from({ length: rng.int(0, 8) }, () => randomFrame(rng, maxBody));
    const { stream: good } = concatSpecs(specs);
    // A header that breaks at least one rule.
    const bad = new Uint8Array(16 + rng.int(0, 20));
    let packLen: number;
    let headerLen: number;
    do {
      packLen =
        rng.pick([0, 1, 15, 16, 17, 16 + maxBody, 17 + maxBody, 0xffffffff, rng.int32()]) >>>
        0;
      headerLen = rng.pick([16, 16, 0, 15, 17, 0x1000, 0xffff]);
    } while (packLen >= 16 && packLen - 16 <= maxBody && headerLen === 16);
    writeHeader(bad, 0, 0, rng.u16(), rng.int32(), rng.int32());
    new DataView(bad.buffer).setUint32(0, packLen);
    new DataView(bad.buffer).setUint16(4, headerLen);
    let expected = "";
    try {
      checkHeader(packLen, headerLen, maxBody);
    } catch (e) {
      expected = (e as ProtocolError).code;
    }
    assert.notEqual(expected, "");
    const stream = new Uint8Array(good.length + bad.length);
    stream.set(good);
    stream.set(bad, good.length);

    const plan = PLANS[i % PLANS.length];
    const reader = new FrameReader({ maxBody });
    let delivered = 0;
    let error: unknown = null;
    let o = 0;
    for (const size of splitPlan(rng, stream.length, plan)) {
      try {
        reader.push(stream.subarray(o, o + size), () => delivered++);
      } catch (e) {
        error = e;
        break;
      }
      o += size;
    }
    assert.ok(error instanceof ProtocolError, `${plan}: an error is raised`);
    assert.equal(error.code, expected, `${plan}: code`);
    assert.equal(delivered, specs.length, `${plan}: frames before the error`);
    assert.equal(reader.buffered, 0);
    // Failed for good: same error object again, no more frames.
    assert.throws(
      () => reader.push(encodeFrame({ ver: 1, op: 2, seq: 1 }), () => delivered++),
      (e) => e === error,
    );
    assert.equal(delivered, specs.length);
    // decodeFrames agrees.
    assert.throws(
      () => decodeFrames(stream, { maxBody }),
      (e: unknown) => e instanceof ProtocolError && e.code === expected,
    );
  });
});

// ------------------------------------------------------------------ batches

function randomPushes(rng: Rng): PushFrame[] {
  return Array.from({ length: rng.int(0, 30) }, () => ({
    op: rng.bool(0.8) ? rng.int(1000, 1100) : rng.int32(),
    body: rng.bytes(rng.len(rng.pick([0, 8, 200, 5000]))),
  }));
}

function assertBatch(
  b: { tcp: Uint8Array; ws: Uint8Array; count: number },
  msgs: PushFrame[],
  what: string,
): void {
  assert.equal(b.count, msgs.length, `${what}: count`);
  // Same memory: tcp is ws.subarray(16).
  assert.equal(b.tcp.buffer, b.ws.buffer, `${what}: tcp and ws share a buffer`);
  assert.equal(b.tcp.byteOffset, b.ws.byteOffset + 16, `${what}: tcp starts 16 bytes in`);
  assert.equal(b.tcp.length, b.ws.length - 16);
  // The envelope.
  const env = decodeFrame(b.ws, { maxBody: b.ws.length });
  assert.equal(env.ver, 1);
  assert.equal(env.op, 9);
  assert.equal(env.seq, 0);
  assert.equal(env.body.byteOffset, b.tcp.byteOffset);
  assert.equal(env.body.length, b.tcp.length);
  // The inner frames.
  const inner = decodeFrames(b.tcp);
  assert.equal(inner.length, msgs.length, `${what}: inner count`);
  inner.forEach((f, k) =>
    assertSameFrame(f, { ver: 1, op: msgs[k].op, seq: 0, body: msgs[k].body }, `${what} ${k}`)
  );
}

Deno.test(`property: encodeBatch / BatchBuilder / batchFromFrames agree (seed ${SEED})`, () => {
  forAll("batches", 400, (rng) => {
    const msgs = randomPushes(rng);
    const b = encodeBatch(msgs);
    assertBatch(b, msgs, "encodeBatch");

    const bb = new BatchBuilder(rng.pick([0, 1, 16, 100, 4096]));
    // A previous batch in the same builder must not leak into this one.
    if (rng.bool()) {
      bb.add(7777, rng.bytes(rng.int(0, 50)));
      bb.finish();
    }
    for (const m of msgs) bb.add(m.op, m.body);
    assert.equal(bb.count, msgs.length);
    assert.equal(bb.byteLength, b.tcp.length);
    const built = bb.finish();
    assert.ok(sameBytes(built.ws, b.ws), "BatchBuilder bytes equal encodeBatch bytes");
    assertBatch(built, msgs, "BatchBuilder");
    // finish() hands out its own buffer: building more does not disturb it.
    bb.add(1000, new Uint8Array(64).fill(9));
    bb.finish();
    assert.ok(sameBytes(built.ws, b.ws), "finished batch is stable");

    const wrapped = batchFromFrames(b.tcp);
    assert.ok(sameBytes(wrapped.ws, b.ws), "batchFromFrames bytes");
    assertBatch(wrapped, msgs, "batchFromFrames");

    if (msgs.length > 0) {
      const one = encodePush(msgs[0].op, msgs[0].body);
      assertBatch(one, msgs.slice(0, 1), "encodePush");
      // The batch owns its bytes: changing the message afterwards changes nothing.
      if (msgs[0].body.length > 0) {
        const before = b.tcp[16];
        msgs[0].body[0] ^= 0xff;
        assert.equal(b.tcp[16], before);
        assert.equal(one.tcp[16], before);
        msgs[0].body[0] ^= 0xff;
      }
    }
  });
});

Deno.test(`property: a TCP client reassembles many batches split at random (seed ${SEED})`, () => {
  forAll("batch stream", 200, (rng) => {
    const batches = Array.from({ length: rng.int(1, 6) }, () => randomPushes(rng));
    const all = batches.flat();
    const stream = concat(batches.map((m) => encodeBatch(m).tcp));
    const r = new FrameReader({ maxBody: 5000 });
    const got: Frame[] = [];
    let o = 0;
    for (const size of splitPlan(rng, stream.length, rng.pick(PLANS))) {
      got.push(...r.pushCollect(stream.subarray(o, o + size)));
      o += size;
    }
    assert.equal(got.length, all.length);
    got.forEach((f, k) =>
      assertSameFrame(f, { ver: 1, op: all[k].op, seq: 0, body: all[k].body }, `frame ${k}`)
    );
  });
});

// ------------------------------------------------------------------ bodies

Deno.test(`property: formatOps / parseOps round trip (seed ${SEED})`, () => {
  forAll("ops", 2000, (rng) => {
    const ops = Array.from({ length: rng.int(0, 20) }, () => rng.int32());
    const body = formatOps(ops);
    assert.deepEqual(parseOps(body), ops);
    // goim tolerates a trailing comma; empty items are skipped.
    const trailing = new Uint8Array(body.length + 1);
    trailing.set(body);
    trailing[body.length] = 44;
    assert.deepEqual(parseOps(trailing), ops);
  });
});

function randomString(rng: Rng): string {
  const alphabet = ["a", "Z", "0", " ", '"', "\\", "/", ":", "é", "中", "😀", "\n", "\u0000"];
  return Array.from({ length: rng.int(0, 12) }, () => rng.pick(alphabet)).join("");
}

Deno.test(`property: encodeAuthToken / parseAuthToken round trip (seed ${SEED})`, () => {
  forAll("auth token", 1000, (rng) => {
    const token: AuthToken = {
      mid: rng.pick([0, 1, rng.int(0, 2 ** 31), Number.MAX_SAFE_INTEGER, -5]),
      key: randomString(rng),
      room_id: rng.bool() ? `live://${rng.int(0, 99999)}` : randomString(rng),
      platform: rng.pick(["web", "android", "ios", ""]),
      accepts: Array.from({ length: rng.int(0, 5) }, () => rng.int32()),
    };
    if (rng.bool(0.3)) token.token = randomString(rng);
    assert.deepEqual(parseAuthToken(encodeAuthToken(token)), token);
  });
});

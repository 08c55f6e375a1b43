/**
 * Fuzz tests for everything that parses bytes from a client.
 *
 * Seeded (mulberry32) and reproducible: the seed and the counts are printed.
 * Set `PROTOCOL_SEED=<n>` to replay another run, `PROTOCOL_SEED=random` for a
 * fresh one, and `PROTOCOL_FUZZ_SCALE=<k>` to run k times as many inputs.
 *
 * The FrameReader is checked against a reference model of the wire rules
 * (a straight-line parse of the whole input): whatever the chunking, it must
 * deliver exactly the reference's frames, then either hold exactly the
 * reference's leftover bytes or fail with the reference's error code.
 */

import assert from "node:assert/strict";
import {
  decodeFrame,
  decodeFrames,
  decodeReason,
  encodeAuthToken,
  encodeReason,
  formatOps,
  FrameReader,
  parseAuthToken,
  parseOps,
  ProtocolError,
  writeHeader,
} from "../protocol/mod.ts";
import { Rng as BaseRng, seedFromEnv } from "./prng.ts";
import { flipBits, spliceIn } from "./mutate.ts";

// ------------------------------------------------------------------ PRNG and knobs

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env
  }
}

const SEED = seedFromEnv(0x5eed_f00d);
const SCALE = Math.max(0.01, Number(env("PROTOCOL_FUZZ_SCALE") ?? "1") || 1);

class Rng extends BaseRng {
  int32(): number {
    return (this.next() * 2 ** 32) | 0;
  }
}

function seedFor(test: number): number {
  return (SEED ^ Math.imul(test, 0x9e3779b1)) >>> 0;
}

// ------------------------------------------------------------------ input generation

interface Input {
  bytes: Uint8Array;
  /** Offsets where valid frames started before mutation (targets for header edits). */
  starts: number[];
  kind: string;
}

function validStream(rng: Rng, maxBody: number): Input {
  const count = rng.int(0, 8);
  const bodies: number[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng.next();
    bodies.push(
      r < 0.15
        ? 0
        : r < 0.25
        ? maxBody
        : r < 0.35
        ? rng.int(0, maxBody)
        : rng.int(0, Math.min(48, maxBody)),
    );
  }
  let n = 0;
  for (const b of bodies) n += 16 + b;
  const bytes = new Uint8Array(n);
  const starts: number[] = [];
  let o = 0;
  for (const len of bodies) {
    starts.push(o);
    writeHeader(
      bytes,
      o,
      len,
      rng.int(0, 3),
      rng.pick([2, 4, 7, 12, 14, 16, rng.int32()]),
      rng.int32(),
    );
    for (let i = 0; i < len; i++) bytes[o + 16 + i] = rng.byte();
    o += 16 + len;
  }
  return { bytes, starts, kind: "valid" };
}

function edgePackLens(maxBody: number): number[] {
  return [0, 15, 16, 17, maxBody + 16, maxBody + 17, 0xffffffff, 0x7fffffff, 0x80000000];
}
const EDGE_HEADER_LENS = [0, 15, 16, 17, 0x1000, 0xffff];

/** Applies 1–3 random mutations. */
function mutate(rng: Rng, input: Input, maxBody: number): Input {
  let b = input.bytes;
  const kinds: string[] = [];
  const rounds = rng.int(1, 3);
  for (let r = 0; r < rounds; r++) {
    const what = rng.int(0, 7);
    switch (what) {
      case 0: { // flip bits in a few bytes
        if (b.length === 0) break;
        b = flipBits(rng, b);
        kinds.push("flip");
        break;
      }
      case 1: { // truncate
        b = b.slice(0, rng.int(0, b.length));
        kinds.push("truncate");
        break;
      }
      case 2: { // insert random bytes
        const at = rng.int(0, b.length);
        const ins = rng.bytes(rng.int(1, 20));
        b = spliceIn(b, at, ins);
        kinds.push("insert");
        break;
      }
      case 3: { // duplicate a range
        if (b.length === 0) break;
        const from = rng.int(0, b.length - 1);
        const to = rng.int(from, Math.min(b.length, from + 64));
        const at = rng.int(0, b.length);
        const dup = b.slice(from, to);
        b = spliceIn(b, at, dup);
        kinds.push("duplicate");
        break;
      }
      case 4:
      case 5: { // packLen of a frame (or anywhere) to an edge value
        const at = input.starts.length > 0 && rng.bool(0.8)
          ? rng.pick(input.starts)
          : rng.int(0, Math.max(0, b.length - 4));
        if (at + 4 > b.length) break;
        b = b.slice();
        new DataView(b.buffer).setUint32(at, rng.pick(edgePackLens(maxBody)));
        kinds.push("packLen");
        break;
      }
      case 6: { // headerLen to an edge value
        const at = input.starts.length > 0 && rng.bool(0.8)
          ? rng.pick(input.starts)
          : rng.int(0, Math.max(0, b.length - 6));
        if (at + 6 > b.length) break;
        b = b.slice();
        new DataView(b.buffer).setUint16(at + 4, rng.pick(EDGE_HEADER_LENS));
        kinds.push("headerLen");
        break;
      }
      default: { // overwrite a random byte with an interesting value
        if (b.length === 0) break;
        b = b.slice();
        b[rng.int(0, b.length - 1)] = rng.pick([0, 0x0f, 0x10, 0x11, 0x7f, 0x80, 0xff]);
        kinds.push("poke");
      }
    }
  }
  return { bytes: b, starts: input.starts, kind: kinds.join("+") || "unchanged" };
}

function randomInput(rng: Rng, maxBody: number): Input {
  const r = rng.next();
  if (r < 0.15) return { bytes: rng.bytes(rng.int(0, 200)), starts: [], kind: "random" };
  if (r < 0.25) return validStream(rng, maxBody);
  return mutate(rng, validStream(rng, maxBody), maxBody);
}

// ------------------------------------------------------------------ reference model

interface RefFrame {
  ver: number;
  op: number;
  seq: number;
  start: number;
  end: number;
}

interface RefResult {
  frames: RefFrame[];
  /** Bytes after the last whole frame (when no error). */
  leftover: number;
  error: string | null;
}

/**
 * The wire rules applied to the whole input at once: a header is judged as
 * soon as its packLen (4 bytes) and headerLen (6 bytes) are present.
 */
function reference(b: Uint8Array, maxBody: number): RefResult {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const frames: RefFrame[] = [];
  let o = 0;
  for (;;) {
    const rem = b.length - o;
    if (rem < 4) break;
    const packLen = dv.getUint32(o);
    if (packLen < 16) return { frames, leftover: 0, error: "packlen_too_small" };
    if (packLen - 16 > maxBody) return { frames, leftover: 0, error: "packlen_too_large" };
    if (rem < 6) break;
    if (dv.getUint16(o + 4) !== 16) return { frames, leftover: 0, error: "bad_header_len" };
    if (rem < packLen) break;
    frames.push({
      ver: dv.getUint16(o + 6),
      op: dv.getInt32(o + 8),
      seq: dv.getInt32(o + 12),
      start: o,
      end: o + packLen,
    });
    o += packLen;
  }
  return { frames, leftover: b.length - o, error: null };
}

// ------------------------------------------------------------------ chunking

function chunkSizes(rng: Rng, n: number): number[] {
  const plan = rng.int(0, 5);
  const sizes: number[] = [];
  let left = n;
  while (left > 0) {
    let s: number;
    if (plan === 0 && n <= 600) s = 1;
    else if (plan === 1) s = left;
    else if (plan === 2) s = rng.int(1, 7);
    else if (plan === 3) s = rng.pick([1, 4, 6, 15, 16, 17]);
    else s = rng.int(1, Math.max(1, n));
    s = Math.min(s, left);
    sizes.push(s);
    left -= s;
  }
  if (rng.bool(0.1)) sizes.splice(rng.int(0, sizes.length), 0, 0);
  return sizes;
}

// ------------------------------------------------------------------ FrameReader fuzz

interface Stats {
  inputs: number;
  pushes: number;
  frames: number;
  errors: Record<string, number>;
  clean: number;
}

function fuzzReader(maxBody: number, count: number, seed: number): Stats {
  const rng = new Rng(seed);
  const stats: Stats = { inputs: 0, pushes: 0, frames: 0, errors: {}, clean: 0 };
  const cap = 16 + maxBody;
  for (let i = 0; i < count; i++) {
    const input = randomInput(rng, maxBody);
    const b = input.bytes;
    const ref = reference(b, maxBody);
    const where = () =>
      `maxBody ${maxBody}, input ${i} (${input.kind}, ${b.length} B), PROTOCOL_SEED=${SEED}`;
    const reader = new FrameReader({ maxBody });
    let got = 0;
    let error: unknown = null;
    let o = 0;
    for (const size of chunkSizes(rng, b.length)) {
      const chunk = b.subarray(o, o + size);
      stats.pushes++;
      try {
        reader.push(chunk, (f) => {
          const want = ref.frames[got];
          if (
            want === undefined || f.ver !== want.ver || f.op !== want.op || f.seq !== want.seq ||
            f.bodyLength !== want.end - want.start - 16
          ) {
            throw new Error(`frame ${got} differs from the reference: ${where()}`);
          }
          const body = f.body;
          for (let k = 0; k < body.length; k++) {
            if (body[k] !== b[want.start + 16 + k]) {
              throw new Error(`frame ${got} body byte ${k} differs: ${where()}`);
            }
          }
          if (reader.buffered > cap) throw new Error(`buffered ${reader.buffered} > ${cap}`);
          got++;
        });
      } catch (e) {
        error = e;
        break;
      }
      o += size;
      if (reader.buffered > cap) {
        throw new Error(`buffered ${reader.buffered} > ${cap} after a push: ${where()}`);
      }
    }
    stats.inputs++;
    stats.frames += got;
    if (error !== null) {
      if (!(error instanceof ProtocolError)) {
        throw new Error(`non-ProtocolError thrown (${error}): ${where()}`, { cause: error });
      }
      if (error.code !== ref.error) {
        throw new Error(`code ${error.code}, reference says ${ref.error}: ${where()}`);
      }
      // Failed for good: the same error object, whatever comes next.
      for (const next of [new Uint8Array(0), rng.bytes(rng.int(1, 40))]) {
        try {
          reader.push(next, () => {
            throw new Error(`frame delivered after an error: ${where()}`);
          });
          throw new Error(`no error after a failure: ${where()}`);
        } catch (e) {
          if (e !== error) throw new Error(`a different error after a failure: ${where()}`);
        }
      }
      assert.equal(reader.buffered, 0, where());
      stats.errors[error.code] = (stats.errors[error.code] ?? 0) + 1;
    } else {
      if (ref.error !== null) throw new Error(`reference fails with ${ref.error}: ${where()}`);
      if (reader.buffered !== ref.leftover) {
        throw new Error(`buffered ${reader.buffered}, reference ${ref.leftover}: ${where()}`);
      }
      stats.clean++;
    }
    if (got !== ref.frames.length) {
      throw new Error(`${got} frames, reference ${ref.frames.length}: ${where()}`);
    }
  }
  return stats;
}

function report(name: string, seed: number, ms: number, stats: object): void {
  console.log(`${name}: PROTOCOL_SEED=${SEED} (sub-seed ${seed}) ${ms.toFixed(0)} ms`, stats);
}

const READER_INPUTS = Math.round(60_000 * SCALE);

for (const [t, maxBody] of [[1, 64], [2, 4096]] as const) {
  Deno.test(`fuzz: FrameReader maxBody ${maxBody}, ${READER_INPUTS} inputs, random splits (seed ${SEED})`, () => {
    const seed = seedFor(t);
    const t0 = performance.now();
    const stats = fuzzReader(maxBody, READER_INPUTS, seed);
    report(`FrameReader maxBody ${maxBody}`, seed, performance.now() - t0, stats);
    assert.equal(stats.inputs, READER_INPUTS);
    // Every outcome was exercised.
    for (const code of ["packlen_too_small", "packlen_too_large", "bad_header_len"]) {
      assert.ok((stats.errors as Record<string, number>)[code] > 100, `${code} exercised`);
    }
    assert.ok(stats.clean > 1000, "clean inputs exercised");
  });
}

// ------------------------------------------------------------------ one-shot decoders

/** Runs fn and returns the ProtocolError code, or null; anything else fails the test. */
function onlyProtocolError(fn: () => void, where: () => string): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (e instanceof ProtocolError) return e.code;
    throw new Error(`non-ProtocolError (${e}): ${where()}`, { cause: e });
  }
}

const DECODE_INPUTS = Math.round(40_000 * SCALE);

Deno.test(`fuzz: decodeFrame and decodeFrames, ${DECODE_INPUTS} inputs each (seed ${SEED})`, () => {
  const seed = seedFor(3);
  const rng = new Rng(seed);
  const t0 = performance.now();
  const codes: Record<string, number> = {};
  let ok = 0;
  for (let i = 0; i < DECODE_INPUTS; i++) {
    const maxBody = rng.pick([0, 16, 64, 4096]);
    let b: Uint8Array;
    if (rng.bool(0.5)) {
      // One frame, as a WebSocket message, then mutated.
      const s = validStream(rng, maxBody);
      const one = s.starts.length > 0
        ? s.bytes.subarray(0, s.starts[1] ?? s.bytes.length)
        : s.bytes;
      b = rng.bool(0.8) ? mutate(rng, { ...s, bytes: one }, maxBody).bytes : one;
    } else {
      b = randomInput(rng, maxBody).bytes;
    }
    const where = () => `input ${i} (${b.length} B, maxBody ${maxBody}), PROTOCOL_SEED=${SEED}`;
    let frame: ReturnType<typeof decodeFrame> | undefined;
    const c1 = onlyProtocolError(() => {
      frame = decodeFrame(b, { maxBody });
    }, where);
    if (c1 === null) {
      ok++;
      assert.ok(frame !== undefined);
      assert.equal(frame.body.length, b.length - 16, where());
      assert.ok(frame.body.length <= maxBody, where());
      assert.equal(frame.body.buffer, b.buffer);
    } else codes[`decodeFrame ${c1}`] = (codes[`decodeFrame ${c1}`] ?? 0) + 1;

    let frames: ReturnType<typeof decodeFrames> = [];
    const c2 = onlyProtocolError(() => {
      frames = decodeFrames(b, { maxBody });
    }, where);
    if (c2 === null) {
      let total = 0;
      for (const f of frames) total += 16 + f.body.length;
      assert.equal(total, b.length, where());
      // The reference agrees: whole frames only, nothing left over.
      const ref = reference(b, maxBody);
      assert.equal(ref.error, null, where());
      assert.equal(ref.frames.length, frames.length, where());
    } else codes[`decodeFrames ${c2}`] = (codes[`decodeFrames ${c2}`] ?? 0) + 1;
    // Without a cap (server → client decoding) it still only throws ProtocolError.
    onlyProtocolError(() => decodeFrames(b), where);
  }
  report("decodeFrame/decodeFrames", seed, performance.now() - t0, {
    inputs: DECODE_INPUTS,
    ok,
    codes,
  });
  assert.ok(ok > 100);
});

const BODY_INPUTS = Math.round(30_000 * SCALE);

function textyBytes(rng: Rng, alphabet: string, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    b[i] = rng.bool(0.9) ? alphabet.charCodeAt(rng.int(0, alphabet.length - 1)) : rng.byte();
  }
  return b;
}

function mutateBytes(rng: Rng, b: Uint8Array): Uint8Array {
  return mutate(rng, { bytes: b, starts: [], kind: "" }, 4096).bytes;
}

Deno.test(`fuzz: parseOps, ${BODY_INPUTS} inputs (seed ${SEED})`, () => {
  const seed = seedFor(4);
  const rng = new Rng(seed);
  const t0 = performance.now();
  let ok = 0;
  let bad = 0;
  for (let i = 0; i < BODY_INPUTS; i++) {
    const r = rng.next();
    const b = r < 0.3
      ? rng.bytes(rng.int(0, 40))
      : r < 0.7
      ? textyBytes(rng, "0123456789,,- ", rng.int(0, 40))
      : mutateBytes(rng, formatOps(Array.from({ length: rng.int(0, 6) }, () => rng.int32())));
    const where = () => `input ${i} [${b}], PROTOCOL_SEED=${SEED}`;
    let ops: number[] = [];
    const code = onlyProtocolError(() => {
      ops = parseOps(b);
    }, where);
    if (code === null) {
      ok++;
      for (const op of ops) {
        assert.ok(Number.isInteger(op) && op >= -(2 ** 31) && op < 2 ** 31, where());
      }
      // Idempotent through formatOps (no -0, no precision loss).
      assert.deepEqual(parseOps(formatOps(ops)), ops, where());
    } else {
      assert.equal(code, "bad_ops", where());
      bad++;
    }
  }
  report("parseOps", seed, performance.now() - t0, { inputs: BODY_INPUTS, ok, bad });
  assert.ok(ok > 1000 && bad > 1000);
});

Deno.test(`fuzz: parseAuthToken, ${BODY_INPUTS} inputs (seed ${SEED})`, () => {
  const seed = seedFor(5);
  const rng = new Rng(seed);
  const t0 = performance.now();
  let ok = 0;
  let bad = 0;
  const valid = encodeAuthToken({
    mid: 123,
    key: "k1",
    room_id: "live://1000",
    platform: "web",
    accepts: [1000, 1001],
    token: "a.b.c",
  });
  for (let i = 0; i < BODY_INPUTS; i++) {
    const r = rng.next();
    const b = r < 0.2 ? rng.bytes(rng.int(0, 60)) : r < 0.4
      ? textyBytes(
        rng,
        '{}[]":,0123456789-.eE truefalsnul\\"midkeyroom_idacceptsplatformtoken',
        rng.int(0, 60),
      )
      : mutateBytes(rng, valid);
    const where = () =>
      `input ${i} ${JSON.stringify(new TextDecoder().decode(b))}, PROTOCOL_SEED=${SEED}`;
    const code = onlyProtocolError(() => {
      const t = parseAuthToken(b);
      assert.ok(Number.isInteger(t.mid), where());
      assert.equal(typeof t.key, "string");
      assert.equal(typeof t.room_id, "string");
      assert.equal(typeof t.platform, "string");
      assert.ok(Array.isArray(t.accepts) && t.accepts.every((a) => (a | 0) === a), where());
    }, where);
    if (code === null) ok++;
    else {
      assert.equal(code, "bad_auth_token", where());
      bad++;
    }
  }
  report("parseAuthToken", seed, performance.now() - t0, { inputs: BODY_INPUTS, ok, bad });
  assert.ok(ok > 100 && bad > 1000);
});

Deno.test(`fuzz: decodeReason never throws, ${BODY_INPUTS} inputs (seed ${SEED})`, () => {
  const seed = seedFor(6);
  const rng = new Rng(seed);
  const t0 = performance.now();
  let structured = 0;
  const valid = encodeReason({ code: 4004, message: "replaced" });
  for (let i = 0; i < BODY_INPUTS; i++) {
    const r = rng.next();
    const b = r < 0.4
      ? rng.bytes(rng.int(0, 60))
      : r < 0.6
      ? textyBytes(rng, '{}[]":,0123456789-codemessage', rng.int(0, 40))
      : mutateBytes(rng, valid);
    let reason: ReturnType<typeof decodeReason>;
    try {
      reason = decodeReason(b);
    } catch (e) {
      throw new Error(`decodeReason threw ${e} on input ${i}, PROTOCOL_SEED=${SEED}`, { cause: e });
    }
    assert.equal(typeof reason.code, "number");
    assert.equal(typeof reason.message, "string");
    if (reason.code !== 0) structured++;
  }
  report("decodeReason", seed, performance.now() - t0, { inputs: BODY_INPUTS, structured });
});

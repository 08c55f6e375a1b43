/**
 * Fuzz test of the WebSocket frame reader (comet/ws_codec.ts), like
 * tests/protocol_fuzz_test.ts does for protocol/reader.ts.
 *
 * Inputs are valid masked frame streams (fragmented messages, control
 * frames between fragments, every length encoding, sizes around the
 * bounds) and mutations of them (bit flips, truncation, insertions,
 * reserved bits, unmasked frames, bad opcodes, huge 64-bit lengths), plus
 * random bytes, fed in random chunk splits. A reference model parses the
 * whole input in one straight pass; whatever the split, the reader must
 * deliver exactly its messages and control frames, then fail with its
 * error or hold exactly its bytes, never holding more than the bound and
 * never throwing anything but a WebSocketError.
 *
 * Seeded and reproducible: `PROTOCOL_SEED=<n>` replays a run,
 * `PROTOCOL_SEED=random` picks a fresh one, `PROTOCOL_FUZZ_SCALE=<k>` runs k
 * times as many inputs.
 */

import assert from "node:assert/strict";
import { WebSocketError, type WsLimits, WsReader, type WsSink } from "../comet/ws_codec.ts";
import { Rng, seedFromEnv } from "./prng.ts";
import { flipBits, spliceIn } from "./mutate.ts";

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env
  }
}

const SEED = seedFromEnv(0x5eed_0b5e);
const SCALE = Math.max(0.01, Number(env("PROTOCOL_FUZZ_SCALE") ?? "1") || 1);

function seedFor(test: number): number {
  return (SEED ^ Math.imul(test, 0x9e3779b1)) >>> 0;
}

// ------------------------------------------------------------------ generation

interface Input {
  bytes: Uint8Array;
  /** Offsets where frames started before mutation (targets for header edits). */
  starts: number[];
  kind: string;
}

/** A masked client frame; `form` forces a length encoding (7, 16 or 64 bits). */
function clientFrame(
  rng: Rng,
  opcode: number,
  fin: boolean,
  payload: Uint8Array,
  form?: 7 | 16 | 64,
): Uint8Array {
  const len = payload.length;
  const f = form ?? (rng.bool(0.85) ? (len < 126 ? 7 : len < 65536 ? 16 : 64) : rng.pick([16, 64]));
  const h = f === 7 && len < 126 ? 2 : f === 64 || len > 65535 ? 10 : 4;
  const out = new Uint8Array(h + 4 + len);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (h === 2) out[1] = 0x80 | len;
  else if (h === 4) {
    out[1] = 0x80 | 126;
    out[2] = len >>> 8;
    out[3] = len & 255;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setUint32(6, len);
  }
  const mask = rng.bool(0.1) ? new Uint8Array(4) : rng.bytes(4);
  out.set(mask, h);
  for (let i = 0; i < len; i++) out[h + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

function payloadSize(rng: Rng, lim: WsLimits): number {
  const r = rng.next();
  if (r < 0.15) return 0;
  if (r < 0.3) return Math.max(0, lim.maxMessage + rng.int(-3, 2));
  if (r < 0.4) return rng.int(0, lim.maxMessage);
  return rng.int(0, Math.min(40, lim.maxMessage));
}

function controlFrame(rng: Rng): Uint8Array {
  const opcode = rng.pick([0x9, 0x9, 0xa, 0x8]);
  const len = rng.bool(0.05) ? 126 : rng.bool(0.2) ? 125 : rng.int(0, 12);
  return clientFrame(rng, opcode, true, rng.bytes(len), len > 125 ? 16 : undefined);
}

function validStream(rng: Rng, lim: WsLimits): Input {
  const parts: Uint8Array[] = [];
  const messages = rng.int(0, 6);
  for (let m = 0; m < messages; m++) {
    if (rng.bool(0.2)) parts.push(controlFrame(rng));
    const payload = rng.bytes(payloadSize(rng, lim));
    const pieces = rng.bool(0.65) ? 1 : rng.int(2, lim.maxFragments + 2);
    const cuts: number[] = [];
    for (let i = 1; i < pieces; i++) cuts.push(rng.int(0, payload.length));
    cuts.sort((a, b) => a - b);
    let from = 0;
    const opcode = rng.bool(0.3) ? 0x1 : 0x2;
    for (let i = 0; i < pieces; i++) {
      const to = i === pieces - 1 ? payload.length : cuts[i];
      parts.push(
        clientFrame(rng, i === 0 ? opcode : 0x0, i === pieces - 1, payload.subarray(from, to)),
      );
      from = to;
      if (i < pieces - 1 && rng.bool(0.15)) parts.push(controlFrame(rng));
    }
  }
  let n = 0;
  for (const p of parts) n += p.length;
  const bytes = new Uint8Array(n);
  const starts: number[] = [];
  let o = 0;
  for (const p of parts) {
    starts.push(o);
    bytes.set(p, o);
    o += p.length;
  }
  return { bytes, starts, kind: "valid" };
}

function mutate(rng: Rng, input: Input): Input {
  let b = input.bytes;
  const kinds: string[] = [];
  const at = (room: number) =>
    input.starts.length > 0 && rng.bool(0.85)
      ? rng.pick(input.starts)
      : rng.int(0, Math.max(0, b.length - room));
  for (let r = rng.int(1, 3); r > 0; r--) {
    switch (rng.int(0, 9)) {
      case 0: { // flip bits
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
        const i = rng.int(0, b.length);
        const ins = rng.bytes(rng.int(1, 20));
        b = spliceIn(b, i, ins);
        kinds.push("insert");
        break;
      }
      case 3: { // duplicate a range (frames repeated: extra fragments, continuations)
        if (b.length === 0) break;
        const from = rng.pick(input.starts.length > 0 ? input.starts : [0]);
        const to = Math.min(b.length, from + rng.int(1, 200));
        const i = rng.bool(0.5) ? to : rng.int(0, b.length);
        const dup = b.slice(from, to);
        b = spliceIn(b, i, dup);
        kinds.push("duplicate");
        break;
      }
      case 4: { // reserved bits
        const i = at(1);
        if (i >= b.length) break;
        b = b.slice();
        b[i] |= rng.pick([0x10, 0x20, 0x40, 0x70]);
        kinds.push("rsv");
        break;
      }
      case 5: { // unmasked
        const i = at(2);
        if (i + 1 >= b.length) break;
        b = b.slice();
        b[i + 1] &= 0x7f;
        kinds.push("unmasked");
        break;
      }
      case 6: { // a huge or odd 64-bit length
        const i = at(10);
        if (i + 10 > b.length) break;
        b = b.slice();
        b[i + 1] = 0x80 | 127;
        const dv = new DataView(b.buffer);
        dv.setUint32(i + 2, rng.pick([0, 0, 1, 0x7fffffff, 0x80000000, 0xffffffff]));
        dv.setUint32(i + 6, rng.pick([0, 1, 125, 126, 65536, 0xffffffff, rng.int(0, 5000)]));
        kinds.push("len64");
        break;
      }
      case 7: { // opcode
        const i = at(1);
        if (i >= b.length) break;
        b = b.slice();
        b[i] = (b[i] & 0xf0) | rng.int(0, 15);
        kinds.push("opcode");
        break;
      }
      case 8: { // FIN
        const i = at(1);
        if (i >= b.length) break;
        b = b.slice();
        b[i] ^= 0x80;
        kinds.push("fin");
        break;
      }
      default: { // a 7-bit length to an edge value
        const i = at(2);
        if (i + 1 >= b.length) break;
        b = b.slice();
        b[i + 1] = (b[i + 1] & 0x80) | rng.pick([0, 1, 124, 125, 126, 127]);
        kinds.push("len7");
      }
    }
  }
  return { bytes: b, starts: input.starts, kind: kinds.join("+") || "unchanged" };
}

function randomInput(rng: Rng, lim: WsLimits): Input {
  const r = rng.next();
  if (r < 0.1) return { bytes: rng.bytes(rng.int(0, 200)), starts: [], kind: "random" };
  if (r < 0.3) return validStream(rng, lim);
  return mutate(rng, validStream(rng, lim));
}

// ------------------------------------------------------------------ reference model

type Event = { kind: "message"; text: boolean; payload: Uint8Array } | {
  kind: "control";
  opcode: number;
  payload: Uint8Array;
};

interface RefResult {
  events: Event[];
  /** "protocol", a bound's name, or null. */
  error: string | null;
  /** Bytes held at the end (when no error). */
  held: number;
}

/**
 * The rules applied to the whole input in one pass: a frame is judged on
 * its first two bytes (reserved bits, opcode, message state, frames per
 * message, mask, control length, room for its header), then on its length
 * (top bit, message size, room for the frame), then delivered when whole.
 * A non-final fragment must leave room for a final one (6 bytes).
 */
function reference(b: Uint8Array, lim: WsLimits): RefResult {
  const events: Event[] = [];
  let frags: Uint8Array[] | null = null;
  let fragLen = 0;
  let fragWire = 0;
  let text = false;
  let o = 0;
  const fail = (error: string): RefResult => ({ events, error, held: 0 });
  for (;;) {
    const rem = b.length - o;
    if (rem < 2) return { events, error: null, held: fragWire + rem };
    const b0 = b[o], b1 = b[o + 1];
    const opcode = b0 & 15, fin = b0 >= 128, control = opcode >= 8;
    if (b0 & 0x70) return fail("protocol");
    if (opcode > 10 || (opcode > 2 && opcode < 8)) return fail("protocol");
    if (control && !fin) return fail("protocol");
    if (!control && opcode === 0 && frags === null) return fail("protocol");
    if (!control && opcode !== 0 && frags !== null) return fail("protocol");
    if (!control && (!fin || opcode === 0) && (frags?.length ?? 0) + 1 > lim.maxFragments) {
      return fail("ws_fragments");
    }
    if (b1 < 128) return fail("protocol");
    const len7 = b1 & 127;
    if (control && len7 > 125) return fail("protocol");
    const h = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
    const reserve = !control && !fin ? 6 : 0;
    if (fragWire + h + 4 + (len7 < 126 ? len7 : 0) + reserve > lim.maxBuffered) {
      return fail("input_buffer");
    }
    if (rem < h) return { events, error: null, held: fragWire + rem };
    let len = len7;
    if (len7 === 126) len = b[o + 2] * 256 + b[o + 3];
    if (len7 === 127) {
      if (b[o + 2] & 0x80) return fail("protocol");
      const dv = new DataView(b.buffer, b.byteOffset + o + 2, 8);
      len = dv.getUint32(0) * 2 ** 32 + dv.getUint32(4);
    }
    if (!control && fragLen + len > lim.maxMessage) return fail("ws_message_size");
    const wire = h + 4 + len;
    if (fragWire + wire + reserve > lim.maxBuffered) return fail("input_buffer");
    if (rem < wire) return { events, error: null, held: fragWire + wire };
    const payload = new Uint8Array(len);
    for (let i = 0; i < len; i++) payload[i] = b[o + h + 4 + i] ^ b[o + h + (i % 4)];
    o += wire;
    if (control) {
      events.push({ kind: "control", opcode, payload });
    } else if (opcode !== 0 && fin) {
      events.push({ kind: "message", text: opcode === 1, payload });
    } else if (opcode !== 0) {
      frags = [payload];
      fragLen = len;
      fragWire = wire;
      text = opcode === 1;
    } else {
      frags!.push(payload);
      fragLen += len;
      fragWire += wire;
      if (fin) {
        const whole = new Uint8Array(fragLen);
        let k = 0;
        for (const f of frags!) {
          whole.set(f, k);
          k += f.length;
        }
        events.push({ kind: "message", text, payload: whole });
        frags = null;
        fragLen = 0;
        fragWire = 0;
      }
    }
  }
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
    else if (plan === 3) s = rng.pick([1, 2, 3, 4, 6, 10, 14, 15]);
    else s = rng.int(1, Math.max(1, n));
    s = Math.min(s, left);
    sizes.push(s);
    left -= s;
  }
  if (rng.bool(0.1)) sizes.splice(rng.int(0, sizes.length), 0, 0);
  return sizes;
}

// ------------------------------------------------------------------ the fuzz

interface Ctx {
  reader: WsReader;
  events: Event[];
  /** Stop (return false) after this many events; -1 = never. */
  stopAt: number;
  lim: WsLimits;
}

function checkHeld(ctx: Ctx): void {
  if (ctx.reader.held > ctx.lim.maxBuffered) {
    throw new Error(`held ${ctx.reader.held} > ${ctx.lim.maxBuffered}`);
  }
}

const SINK: WsSink<Ctx> = {
  message(ctx, payload, text) {
    checkHeld(ctx);
    // A view of a reused buffer: kept, so copied.
    ctx.events.push({ kind: "message", text, payload: payload.slice() });
    return ctx.events.length !== ctx.stopAt;
  },
  control(ctx, opcode, payload) {
    checkHeld(ctx);
    ctx.events.push({ kind: "control", opcode, payload: payload.slice() });
    return ctx.events.length !== ctx.stopAt;
  },
};

function sameEvent(a: Event, b: Event): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === "message" && b.kind === "message" && a.text !== b.text) return false;
  if (a.kind === "control" && b.kind === "control" && a.opcode !== b.opcode) return false;
  if (a.payload.length !== b.payload.length) return false;
  for (let i = 0; i < a.payload.length; i++) if (a.payload[i] !== b.payload[i]) return false;
  return true;
}

interface Stats {
  inputs: number;
  pushes: number;
  events: number;
  outcomes: Record<string, number>;
}

function fuzz(lim: WsLimits, count: number, seed: number): Stats {
  const rng = new Rng(seed);
  const stats: Stats = { inputs: 0, pushes: 0, events: 0, outcomes: {} };
  for (let i = 0; i < count; i++) {
    const input = randomInput(rng, lim);
    const b = input.bytes;
    const ref = reference(b, lim);
    const stopAt = ref.events.length > 0 && rng.bool(0.05) ? rng.int(1, ref.events.length) : -1;
    const where = () =>
      `input ${i} (${input.kind}, ${b.length} B, limits ${
        JSON.stringify(lim)
      }), PROTOCOL_SEED=${SEED}`;
    const ctx: Ctx = { reader: new WsReader(lim), events: [], stopAt, lim };
    let error: unknown = null;
    let stopped = false;
    let o = 0;
    for (const size of chunkSizes(rng, b.length)) {
      stats.pushes++;
      try {
        if (!ctx.reader.push(b.subarray(o, o + size), SINK, ctx)) {
          stopped = true;
          break;
        }
      } catch (e) {
        error = e;
        break;
      }
      o += size;
      checkHeld(ctx);
    }
    stats.inputs++;
    stats.events += ctx.events.length;
    if (error !== null && !(error instanceof WebSocketError)) {
      throw new Error(`not a WebSocketError (${error}): ${where()}`, { cause: error });
    }
    const want = stopAt > 0 ? ref.events.slice(0, stopAt) : ref.events;
    if (ctx.events.length !== want.length) {
      throw new Error(`${ctx.events.length} events, reference ${want.length}: ${where()}`);
    }
    for (let k = 0; k < want.length; k++) {
      if (!sameEvent(ctx.events[k], want[k])) throw new Error(`event ${k} differs: ${where()}`);
    }
    let outcome: string;
    if (stopAt > 0) {
      if (!stopped) throw new Error(`the sink's stop was not obeyed: ${where()}`);
      outcome = "stopped";
    } else if (error instanceof WebSocketError) {
      outcome = error.limit ?? "protocol";
      if (outcome !== ref.error) {
        throw new Error(`error ${outcome} (${error.message}), reference ${ref.error}: ${where()}`);
      }
      const close = error.limit === null ? 4000 : error.limit === "ws_fragments" ? 1008 : 1009;
      assert.equal(error.closeCode, close, where());
      assert.equal(error.reason.code, error.limit === null ? 4000 : 4007, where());
    } else {
      if (ref.error !== null) throw new Error(`reference fails with ${ref.error}: ${where()}`);
      if (ctx.reader.held !== ref.held) {
        throw new Error(`held ${ctx.reader.held}, reference ${ref.held}: ${where()}`);
      }
      assert.equal(ctx.reader.idle, ctx.reader.held === 0, where());
      outcome = ref.held === 0 ? "clean" : "partial";
    }
    stats.outcomes[outcome] = (stats.outcomes[outcome] ?? 0) + 1;
  }
  return stats;
}

const LIMITS: readonly WsLimits[] = [
  // The comet's defaults with protocol.max_body 4096.
  { maxMessage: 4112, maxFragments: 16, maxBuffered: 65536 },
  // Small: every bound is within reach of small inputs.
  { maxMessage: 80, maxFragments: 4, maxBuffered: 200 },
  // The input bound below the message bound: header bytes decide.
  { maxMessage: 300, maxFragments: 40, maxBuffered: 320 },
];

const INPUTS = Math.round(40_000 * SCALE);

for (const [t, lim] of LIMITS.entries()) {
  Deno.test(`fuzz: WsReader ${JSON.stringify(lim)}, ${INPUTS} inputs, random splits (seed ${SEED})`, () => {
    const seed = seedFor(t + 1);
    const t0 = performance.now();
    const stats = fuzz(lim, INPUTS, seed);
    console.log(
      `WsReader ${JSON.stringify(lim)}: PROTOCOL_SEED=${SEED} (sub-seed ${seed}) ` +
        `${(performance.now() - t0).toFixed(0)} ms`,
      stats,
    );
    assert.equal(stats.inputs, INPUTS);
    // Every outcome was exercised.
    const min = Math.max(1, Math.round(50 * SCALE));
    for (
      const o of ["clean", "partial", "protocol", "ws_message_size", "ws_fragments", "stopped"]
    ) {
      assert.ok(
        (stats.outcomes[o] ?? 0) >= min,
        `${o} exercised: ${JSON.stringify(stats.outcomes)}`,
      );
    }
    if (lim.maxBuffered < lim.maxMessage + 30) {
      assert.ok((stats.outcomes.input_buffer ?? 0) >= min, "input_buffer exercised");
    }
  });
}

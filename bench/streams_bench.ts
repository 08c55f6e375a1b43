/**
 * Per-message cost of streams on the client side: decoding a `StreamMsg`
 * (protocol/streams.ts) and the SDK's handling of one in-order message
 * (client/streams.ts: duplicate check, position, delivery), against
 * decoding a plain goim frame — the room fan-out benchmark showed the
 * SDK's client processes spending twice the CPU with streams on.
 *
 * ```sh
 * ./scripts/deno bench --allow-all bench/streams_bench.ts
 * ```
 *
 * @module
 */

import { StreamTracker } from "../client/streams.ts";
import { decodeFrame, encodeFrame, type Frame } from "../protocol/frame.ts";
import { Op } from "../protocol/ops.ts";
import { decodeStreamMsg, encodeStreamMsg, StreamKind } from "../protocol/streams.ts";

const body = new Uint8Array(50).fill(120);
const inner = encodeFrame({ ver: 1, op: 1000, seq: 0, body });
const stream = "room:live://bench-room-0";
const epoch = "1a2b3c4d5e6f";
const N = 1000;
const frames = Array.from({ length: N }, (_, i) =>
  encodeStreamMsg(
    {
      kind: StreamKind.Room,
      flags: 0,
      pos: i + 1,
      epoch,
      pushId: `AbCdEfGhIjKlMnOpQrSt${(i % 100).toString().padStart(2, "0")}`,
      stream,
    },
    inner,
  ).subarray(16));

let sink = 0;

Deno.bench({
  name: "decodeFrame, plain goim push (50 B)",
  group: "client",
  baseline: true,
  fn() {
    for (let i = 0; i < N; i++) sink += decodeFrame(inner, { maxBody: 1 << 20 }).op;
  },
});

Deno.bench({
  name: "decodeStreamMsg + inner decodeFrame (50 B)",
  group: "client",
  fn() {
    for (let i = 0; i < N; i++) {
      const m = decodeStreamMsg(frames[i]);
      sink += decodeFrame(m.frame, { maxBody: m.frame.length }).op + m.pos;
    }
  },
});

const streamFrames: Frame[] = frames.map((body) => ({ op: Op.StreamMsg, ver: 1, seq: 0, body }));
const hooks = { deliver: (m: { pos?: number }) => void (sink += m.pos!), lost() {} };
const link = { send() {} };

Deno.bench({
  name: "StreamTracker, in order (decode, position, delivery)",
  group: "tracker",
  baseline: true,
  fn() {
    const t = new StreamTracker({}, hooks);
    t.attach(link);
    for (let i = 0; i < N; i++) t.frame(streamFrames[i]);
    t.detach();
  },
});

Deno.bench({
  name: "StreamTracker, 998 held behind a gap, then it is filled",
  group: "tracker",
  fn() {
    const t = new StreamTracker({}, hooks);
    t.attach(link);
    t.frame(streamFrames[0]);
    for (let i = 2; i < N; i++) t.frame(streamFrames[i]);
    t.frame(streamFrames[1]);
    t.detach();
  },
});

globalThis.addEventListener("unload", () => {
  if (sink === 0.5) console.log(sink);
});

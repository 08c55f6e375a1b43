/**
 * Hostile WebSocket clients over real sockets: every frame counts against
 * the bounds (message size, frames per message, input held), before and
 * after auth, and a client that pings without reading holds one pong.
 */

import assert from "node:assert/strict";
import { concat, encodeAuthToken, encodeFrame, Op, ReasonCode } from "../protocol/mod.ts";
import {
  type CometHarness,
  eventually,
  RawWsTestClient,
  sample,
  scrape,
  startComet,
} from "./fixtures/comet_fixtures.ts";

const enc = new TextEncoder();

/** A masked client frame; `len64` forces the 64-bit length form (14-byte header). */
function frame(
  opcode: number,
  payload: Uint8Array,
  opts: { fin?: boolean; len64?: boolean; declared?: number } = {},
): Uint8Array {
  const len = opts.declared ?? payload.length;
  const hdr = opts.len64 || len > 65535 ? 10 : len < 126 ? 2 : 4;
  const out = new Uint8Array(hdr + 4 + payload.length);
  out[0] = (opts.fin ?? true ? 0x80 : 0) | opcode;
  if (hdr === 2) out[1] = 0x80 | len;
  else if (hdr === 4) {
    out[1] = 0x80 | 126;
    out[2] = len >> 8;
    out[3] = len & 255;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(len));
  }
  const mask = [0x12, 0x34, 0x56, 0x78];
  out.set(mask, hdr);
  for (let i = 0; i < payload.length; i++) out[hdr + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let o = 0; o < b.length;) o += await conn.write(b.subarray(o));
}

function authFrame(key: string): Uint8Array {
  return encodeFrame({
    ver: 1,
    op: Op.Auth,
    seq: 1,
    body: encodeAuthToken({ mid: 1, key, room_id: "", platform: "t", accepts: [] }),
  });
}

/** Sends `bytes`, then expects op 6 with `reason` and a close frame with `close`. */
async function expectLimit(
  c: RawWsTestClient,
  bytes: Uint8Array,
  reason: RegExp,
  close: number,
): Promise<void> {
  // The server may close before it has read everything: a reset is fine.
  await writeAll(c.conn, bytes).catch(() => {});
  await c.waitClosed();
  await c.done;
  assert.equal(c.reason()?.code, ReasonCode.LimitExceeded, JSON.stringify(c.reason()));
  assert.match(c.reason()!.message, reason);
  assert.equal(c.closeCode, close);
}

async function limitCloses(h: CometHarness, limit: string): Promise<number> {
  return sample(await scrape(h.addrs), "goim_comet_limit_closes_total", `limit="${limit}"`);
}

// A handshake timeout shorter than the wait, so that a comet without the
// bound fails the test with 4002 rather than hanging.
const SETS = ["comet.handshake_timeout=3s"];

Deno.test("comet ws abuse: a zero-length continuation flood is closed (1008), before and after auth", async () => {
  const h = await startComet(SETS);
  try {
    const flood = concat([
      frame(0x2, new Uint8Array([0]), { fin: false }),
      ...Array.from({ length: 2000 }, () => frame(0x0, new Uint8Array(0), { fin: false })),
    ]);
    const before = await RawWsTestClient.connect(h.addrs.ws[0]);
    await expectLimit(
      before,
      flood,
      /more than 16 frames \(comet\.websocket\.max_fragments\)/,
      1008,
    );
    const after = await RawWsTestClient.connect(h.addrs.ws[0]);
    await after.auth({ key: "flood" });
    await expectLimit(after, flood, /max_fragments/, 1008);
    assert.equal(await limitCloses(h, "ws_fragments"), 2);
    // Nobody else noticed: a new client works.
    const ok = await RawWsTestClient.connect(h.addrs.ws[0]);
    await ok.auth({ key: "fine" });
    ok.close();
    await ok.done;
  } finally {
    await h.close();
  }
});

Deno.test("comet ws abuse: 16 fragments make a message, 17 close the connection (1008)", async () => {
  const h = await startComet(SETS);
  try {
    const auth = authFrame("frag16");
    const split = (n: number) => {
      const parts: Uint8Array[] = [];
      const step = Math.ceil(auth.length / n);
      for (let i = 0; i < n; i++) {
        const body = auth.subarray(Math.min(i * step, auth.length), (i + 1) * step);
        parts.push(frame(i === 0 ? 0x2 : 0x0, body, { fin: i === n - 1 }));
        // A control frame between fragments is not a fragment.
        if (i === 3) parts.push(frame(0x9, enc.encode("p")));
      }
      return concat(parts);
    };
    const ok = await RawWsTestClient.connect(h.addrs.ws[0]);
    await writeAll(ok.conn, split(16));
    await ok.next((f) => f.op === Op.AuthReply);
    const over = await RawWsTestClient.connect(h.addrs.ws[0]);
    await expectLimit(over, split(17), /max_fragments/, 1008);
    assert.equal(await limitCloses(h, "ws_fragments"), 1);
    ok.close();
    await ok.done;
  } finally {
    await h.close();
  }
});

Deno.test("comet ws abuse: a message over protocol.max_body + 16 is closed (1009) before its payload", async () => {
  const h = await startComet(SETS);
  try {
    const ws = h.addrs.ws[0];
    // One frame one byte over (4112 + 1), whole.
    const one = await RawWsTestClient.connect(ws);
    await expectLimit(one, frame(0x2, new Uint8Array(4113)), /over 4112 bytes/, 1009);
    // Fragments that add up to more, after auth.
    const frags = await RawWsTestClient.connect(ws);
    await frags.auth({ key: "frags" });
    await expectLimit(
      frags,
      concat([
        frame(0x2, new Uint8Array(3000), { fin: false }),
        frame(0x0, new Uint8Array(1200)),
      ]),
      /over 4112 bytes/,
      1009,
    );
    // A header announcing 2^40 bytes: closed at once, nothing more is sent.
    const huge = await RawWsTestClient.connect(ws);
    await expectLimit(
      huge,
      frame(0x2, new Uint8Array(0), { declared: 2 ** 40 }).subarray(0, 10),
      /over 4112 bytes/,
      1009,
    );
    assert.equal(await limitCloses(h, "ws_message_size"), 3);
  } finally {
    await h.close();
  }
});

Deno.test("comet ws abuse: input held counts wire bytes, headers included (1009)", async () => {
  // Fragments may be many here, so the input bound is what stops empty ones
  // sent with 14-byte headers: 147 of them are 2058 wire bytes, 0 payload.
  const h = await startComet([
    ...SETS,
    "protocol.max_body=1024",
    "comet.limits.input_buffer=2KiB",
    "comet.websocket.max_fragments=1000",
  ]);
  try {
    const c = await RawWsTestClient.connect(h.addrs.ws[0]);
    await c.auth({ key: "held" });
    const flood = concat([
      frame(0x2, new Uint8Array(0), { fin: false, len64: true }),
      ...Array.from(
        { length: 300 },
        () => frame(0x0, new Uint8Array(0), { fin: false, len64: true }),
      ),
    ]);
    await expectLimit(c, flood, /over 2048 input bytes held \(comet\.limits\.input_buffer\)/, 1009);
    // A partial frame counts too: 1,900 bytes of fragments, then a header
    // announcing 200 more (under the message size) is refused before its payload.
    const p = await RawWsTestClient.connect(h.addrs.ws[0]);
    await expectLimit(
      p,
      concat([
        frame(0x2, new Uint8Array(0), { fin: false, len64: true }),
        ...Array.from(
          { length: 134 },
          () => frame(0x0, new Uint8Array(0), { fin: false, len64: true }),
        ),
        frame(0x0, new Uint8Array(0), { fin: false, declared: 200 }).subarray(0, 4),
      ]),
      /input_buffer/,
      1009,
    );
    assert.equal(await limitCloses(h, "input_buffer"), 2);
  } finally {
    await h.close();
  }
});

/** An upgraded socket that reads nothing after the 101 response. */
async function deafClient(addr: Deno.NetAddr): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
  await writeAll(
    conn,
    enc.encode(
      `GET /sub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    ),
  );
  let head = "";
  const buf = new Uint8Array(1);
  // Byte by byte, so that nothing after the response head is read.
  while (!head.endsWith("\r\n\r\n")) {
    if ((await conn.read(buf)) === null) throw new Error("closed during the upgrade");
    head += String.fromCharCode(buf[0]);
  }
  assert.match(head, /^HTTP\/1\.1 101 /);
  return conn;
}

Deno.test("comet ws abuse: a client that pings and never reads holds one pong, before and after auth", async () => {
  const h = await startComet([...SETS, "comet.send_queue.max_bytes=128KiB"]);
  try {
    const conn = await deafClient(h.addrs.ws[0]);
    // 125-byte pings in writes of 500: 5 MB of pongs if each were answered,
    // far more than the socket buffers and the 128 KiB queue bound hold.
    const burst = concat(
      Array.from({ length: 500 }, (_, i) => frame(0x9, new Uint8Array(125).fill(i & 255))),
    );
    const pings = async (n: number) => {
      for (let i = 0; i < n; i += 500) {
        await writeAll(conn, burst).catch((e) => {
          throw new Error("the comet closed the pinging client", { cause: e });
        });
      }
    };
    let maxQueued = 0;
    const watch = setInterval(() => (maxQueued = Math.max(maxQueued, h.comet.queuedBytes)), 5);
    try {
      await pings(20_000);
      // Input is handled in order: once logic saw the auth, every ping before it was handled.
      await writeAll(conn, frame(0x2, authFrame("pinger")));
      await eventually(() => h.logic.connects.length === 1, "the auth after the pings");
      await pings(20_000);
      await writeAll(conn, frame(0x2, encodeFrame({ ver: 1, op: Op.SendMsg, seq: 2 })));
      await eventually(() => h.logic.receives.length === 1, "the op 4 after the pings");
    } finally {
      clearInterval(watch);
    }
    maxQueued = Math.max(maxQueued, h.comet.queuedBytes);
    // One pong (127 bytes) and the replies (op 8, op 5) at most.
    assert.ok(maxQueued <= 127 + 2 * 18, `queued ${maxQueued} bytes`);
    assert.equal(h.comet.stats().connections, 1, "still connected: not a slow consumer");
    const text = await scrape(h.addrs);
    assert.equal(sample(text, "goim_comet_slow_consumer_disconnects_total"), 0);
    conn.close();
  } finally {
    await h.close();
  }
});

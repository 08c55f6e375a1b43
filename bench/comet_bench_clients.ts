/**
 * Benchmark client process: opens N authenticated connections (TCP or
 * WebSocket) to a comet, joins them to room `live://bench`, and counts
 * every pushed frame (TCP: parsed with protocol's FrameReader; WebSocket:
 * the inner frames of each op 9 envelope). Driven by JSON lines on stdin,
 * answers on stdout. With `--heartbeat=MS` (TCP) every connection sends
 * op 2 every MS ms, all in one burst. Started by bench/comet_memory.ts and
 * bench/comet_throughput.ts through bench/lib/child.ts; not a test, not in CI.
 *
 * Commands:
 * - `{"cmd":"count"}` → `{"ev":"count","frames":…,"heartbeats":…}`
 * - `{"cmd":"wait","total":X,"timeoutMs":T}` → `{"ev":"reached","at":ms,"frames":…,"reached":bool}`
 *   once this process has counted X frames (or T ms passed).
 * - `{"cmd":"exit"}` → closes every connection and exits.
 *
 * @example
 * ```sh
 * ./scripts/deno run -A bench/comet_bench_clients.ts --transport=tcp --port=3101 --n=5000 --prefix=a
 * ```
 *
 * @module
 */

import { encodeAuthToken, encodeFrame, FrameReader, Op, readU32 } from "../protocol/mod.ts";
import { arg } from "./lib/args.ts";
import { readLines } from "./lib/child.ts";

const transport = arg("transport", "tcp");
const port = Number(arg("port", "3101"));
const n = Number(arg("n", "1000"));
const prefix = arg("prefix", "c");
const concurrency = Number(arg("concurrency", "200"));
const bufSize = Number(arg("buf", "32768"));
// TCP only: every N ms all connections send op 2 at once (0 = never).
const heartbeatMs = Number(arg("heartbeat", "0"));

let frames = 0;
let authed = 0;
let failed = 0;
let target = Infinity;
let onTarget: (() => void) | null = null;

function emit(ev: Record<string, unknown>): void {
  console.log(JSON.stringify(ev));
}

function check(): void {
  if (frames >= target && onTarget) {
    const f = onTarget;
    onTarget = null;
    f();
  }
}

const tcpConns: Deno.TcpConn[] = [];
const sockets: WebSocket[] = [];

function countPush(): void {
  frames++;
}

async function tcpClient(i: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  tcpConns.push(conn);
  const token = encodeAuthToken({
    mid: i,
    key: `${prefix}${i}`,
    room_id: "live://bench",
    platform: "bench",
    accepts: [1000],
  });
  await conn.write(encodeFrame({ ver: 1, op: Op.Auth, seq: 1, body: token }));
  const reader = new FrameReader({ maxBody: 64 * 1024 * 1024 });
  const buf = new Uint8Array(bufSize);
  let authedHere = false;
  const onFrame = (f: { op: number }) => {
    if (f.op === Op.AuthReply) {
      authedHere = true;
      authed++;
    } else if (f.op >= 1000) countPush();
  };
  // Resolve connect() once authenticated; keep reading in the background.
  let ready!: () => void;
  const authedP = new Promise<void>((r) => (ready = r));
  (async () => {
    try {
      while (true) {
        const m = await conn.read(buf);
        if (m === null) break;
        reader.push(buf.subarray(0, m), onFrame);
        if (authedHere) ready();
        check();
      }
    } catch {
      // closed
    }
    ready();
  })();
  await authedP;
}

function wsClient(i: number): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/sub`);
    ws.binaryType = "arraybuffer";
    sockets.push(ws);
    ws.onopen = () => {
      const token = encodeAuthToken({
        mid: i,
        key: `${prefix}${i}`,
        room_id: "live://bench",
        platform: "bench",
        accepts: [1000],
      });
      ws.send(encodeFrame({ ver: 1, op: Op.Auth, seq: 1, body: token }));
    };
    ws.onmessage = (ev) => {
      const b = new Uint8Array(ev.data as ArrayBuffer);
      const op = readU32(b, 8);
      if (op === Op.AuthReply) {
        authed++;
        resolve();
      } else if (op === Op.Raw) {
        for (let o = 16; o < b.length; o += readU32(b, o)) frames++;
        check();
      }
    };
    ws.onerror = () => {
      failed++;
      resolve();
    };
    ws.onclose = () => resolve();
  });
}

const start = performance.now();
let next = 0;
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < n) {
    const i = next++;
    try {
      await (transport === "tcp" ? tcpClient(i) : wsClient(i));
    } catch {
      failed++;
    }
  }
}));
emit({ ev: "ready", n, authed, failed, ms: Math.round(performance.now() - start) });

let heartbeats = 0;
if (heartbeatMs > 0 && transport === "tcp") {
  const hb = encodeFrame({ ver: 1, op: Op.Heartbeat, seq: 2, body: new Uint8Array(0) });
  setInterval(() => {
    for (const c of tcpConns) {
      c.write(hb).then(() => heartbeats++, () => {});
    }
  }, heartbeatMs);
}

for await (const line of readLines(Deno.stdin.readable)) {
  const msg = JSON.parse(line);
  if (msg.cmd === "count") emit({ ev: "count", frames, heartbeats });
  else if (msg.cmd === "wait") {
    target = msg.total;
    const reached = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => {
        onTarget = null;
        resolve(false);
      }, msg.timeoutMs ?? 60_000);
      onTarget = () => {
        clearTimeout(t);
        resolve(true);
      };
      check();
    });
    emit({ ev: "reached", at: Date.now(), frames, reached });
    target = Infinity;
  } else if (msg.cmd === "exit") {
    for (const c of tcpConns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    for (const s of sockets) s.close();
    Deno.exit(0);
  }
}
Deno.exit(0);

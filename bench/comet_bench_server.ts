/**
 * Benchmark comet process: a real {@linkcode Comet} (TCP + WebSocket on
 * 127.0.0.1, port 0) with an in-process fake logic and a memory registry,
 * driven by JSON lines on stdin; events go out as JSON lines on stdout.
 * Started by bench/comet_memory.ts and bench/comet_throughput.ts through
 * bench/lib/child.ts; not a test, not in CI.
 *
 * Commands (one JSON object per line):
 * - `{"cmd":"gc"}`: collect garbage (needs `--v8-flags=--expose-gc`), reply
 *   `{"ev":"gc","rss":…,"heapUsed":…}`.
 * - `{"cmd":"stats"}`: reply `{"ev":"stats",…comet.stats()}`.
 * - `{"cmd":"broadcast","batch":N,"seconds":S,"bytes":B}`: call
 *   `service.BroadcastRoom("live://bench")` with N frames of B bytes per call
 *   (an op 9 proto as goim's job sends, or one plain message when N = 1) as
 *   fast as the comet absorbs them for S seconds, yielding to the event loop
 *   after each call; reply `{"ev":"broadcast","calls":…,"startAt":…,"endAt":…}`.
 * - `{"cmd":"counters"}`: reply `{"ev":"counters","writes":…,"frames":…,"bytes":…}`
 *   (TCP totals from the comet's metrics).
 * - `{"cmd":"exit"}`: graceful shutdown, exit 0.
 *
 * @example
 * ```sh
 * ./scripts/deno run -A --v8-flags=--expose-gc bench/comet_bench_server.ts
 * ```
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { coalesceStats } from "../comet/coalesce.ts";
import { Comet } from "../comet/comet.ts";
import { loadConfig } from "../infra/config.ts";
import { createLogger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import type { LogicApi } from "../proto/api.ts";
import { encodeBatch, Op, parseAuthToken } from "../protocol/mod.ts";
import { readLines } from "./lib/child.ts";

/** Logic for benchmarks: trusts every token (like logic's `none` auth mode), records nothing. */
export function benchLogic(): LogicApi {
  let keys = 0;
  return {
    Connect: (req) => {
      const t = parseAuthToken(req.token);
      return Promise.resolve({
        mid: t.mid,
        key: t.key || `k${++keys}`,
        roomID: t.room_id,
        accepts: t.accepts,
        heartbeat: 0,
      });
    },
    Disconnect: () => Promise.resolve({ has: true }),
    Heartbeat: () => Promise.resolve({}),
    RenewOnline: () => Promise.resolve({ allRoomCount: {} }),
    Receive: () => Promise.resolve({}),
    Nodes: () => Promise.reject(new Error("not served")),
  };
}

function emit(ev: Record<string, unknown>): void {
  console.log(JSON.stringify(ev));
}

async function main(): Promise<void> {
  const sets = [
    "node.id=comet-bench",
    "comet.tcp.bind=127.0.0.1:0",
    "comet.websocket.bind=127.0.0.1:0",
    "comet.admin.bind=127.0.0.1:0",
    "comet.handshake_timeout=60s",
    "comet.heartbeat_interval=10m",
    "log.level=warn",
    ...Deno.args,
  ];
  const config = loadConfig({ args: sets.flatMap((s) => ["--set", s]), env: {} });
  const registry = new MemoryRegistry();
  const comet = new Comet({
    config,
    logic: benchLogic(),
    registry,
    log: createLogger({ level: config.log.level, fields: { role: "comet" } }),
  });
  const addrs = await comet.start({ grpc: false });
  emit({
    ev: "ready",
    pid: Deno.pid,
    tcp: addrs.tcp[0].port,
    ws: addrs.ws[0].port,
    admin: addrs.admin?.port,
  });
  const gc = (globalThis as { gc?: () => void }).gc;
  for await (const line of readLines(Deno.stdin.readable)) {
    const msg = JSON.parse(line);
    switch (msg.cmd) {
      case "gc": {
        for (let i = 0; i < 3; i++) {
          gc?.();
          await new Promise((r) => setTimeout(r, 50));
        }
        const m = Deno.memoryUsage();
        emit({ ev: "gc", rss: m.rss, heapUsed: m.heapUsed, external: m.external });
        break;
      }
      case "stats":
        emit({ ev: "stats", ...comet.stats() });
        break;
      case "broadcast":
        emit({
          ev: "broadcast",
          ...await drive(
            comet,
            config.comet.send_queue.max_bytes,
            msg.batch,
            msg.seconds,
            msg.bytes,
          ),
        });
        break;
      case "counters": {
        // Hot-path counters, folded in by the admin endpoint's scrape.
        const text = await (await fetch(`http://127.0.0.1:${addrs.admin!.port}/metrics`)).text();
        const get = (name: string) =>
          Number(
            / (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(
              text.split("\n").find((l) => l.startsWith(`${name}{transport="tcp"}`)) ?? " 0",
            )?.[1] ?? 0,
          );
        emit({
          ev: "counters",
          writes: get("goim_comet_writes_total"),
          frames: get("goim_comet_frames_out_total"),
          bytes: get("goim_comet_sent_bytes_total"),
          builds: coalesceStats.builds,
          copied: coalesceStats.bytes,
        });
        break;
      }
      case "exit":
        await comet.shutdown("bench done");
        await registry.close();
        Deno.exit(0);
    }
  }
  await comet.shutdown("stdin closed");
  await registry.close();
}

async function drive(
  comet: Comet,
  maxQueueBytes: number,
  batch: number,
  seconds: number,
  bytes: number,
) {
  const body = new Uint8Array(bytes).fill(0x61);
  const proto = batch === 1 ? { ver: 1, op: 1000, seq: 0, body } : {
    ver: 1,
    op: Op.Raw,
    seq: 0,
    body: encodeBatch(Array.from({ length: batch }, () => ({ op: 1000, body }))).tcp,
  };
  // "As fast as the comet absorbs them": pause while the send queues hold
  // more than 64 KiB (or 1/16 of their bound) per connection on average, so
  // the run measures delivery, not how fast queues overflow when the
  // clients fall behind.
  const limit = Math.min(maxQueueBytes / 16, 64 * 1024) * comet.stats().connections;
  const startAt = Date.now();
  const until = performance.now() + seconds * 1000;
  let calls = 0;
  let waits = 0;
  while (performance.now() < until) {
    if (comet.queuedBytes > limit) {
      waits++;
      await new Promise((r) => setTimeout(r, 1));
      continue;
    }
    await comet.service.BroadcastRoom({ roomID: "live://bench", proto });
    calls++;
    // One call per turn of the event loop: the flusher's pass yields every
    // few ms, so calls arriving meanwhile join the queues it has not reached.
    await new Promise<void>((r) => setImmediate(r));
  }
  return { calls, waits, frames: calls * batch, startAt, endAt: Date.now(), ...comet.stats() };
}

if (import.meta.main) await main();

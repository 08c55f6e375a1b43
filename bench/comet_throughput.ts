/**
 * Room broadcast throughput of the comet to 10,000 TCP connections.
 *
 * The comet runs in its own process (bench/comet_bench_server.ts) and is
 * driven in-process: `service.BroadcastRoom` with batches of N frames (an
 * op 9 proto, as goim's job sends room batches) as fast as the comet
 * absorbs them, for S seconds per batch size. The connections live in two
 * other processes (bench/comet_bench_clients.ts) that parse every frame
 * with protocol's FrameReader. Delivered frames/s = frames × members /
 * (time the last client process saw its last frame − start of the run).
 * Everything shares the box's 2 cores. With `--heartbeat=MS` every client
 * connection also sends op 2 every MS ms, all at once (a heartbeat storm);
 * `buildsPerSecond` / `copiedMBPerSecond` count the coalesced buffers the
 * comet built (memo misses, comet/coalesce.ts).
 *
 * ```sh
 * ./scripts/deno run -A bench/comet_throughput.ts                       # 10,000 conns, batches 1,10,20,100, 10 s each
 * ./scripts/deno run -A bench/comet_throughput.ts --n=2000 --seconds=3 --batches=10
 * ./scripts/deno run -A bench/comet_throughput.ts --n=10000 --seconds=5 --batches=20,1 --heartbeat=1000
 * ```
 *
 * Target (docs/COMET.md): ≥ 1,000,000 delivered frames/s.
 *
 * @module
 */

import { arg } from "./lib/args.ts";
import { type JsonLinesChild, pause, spawnScript } from "./lib/child.ts";
import { readCpuSeconds } from "./lib/procstat.ts";

const here = new URL(".", import.meta.url).pathname;
const n = Number(arg("n", "10000"));
const procs = Number(arg("procs", "2"));
const seconds = Number(arg("seconds", "10"));
const bytes = Number(arg("bytes", "32"));
const batches = arg("batches", "1,10,20,100").split(",").map(Number);
const serverArgs = arg("server-args", "").split(" ").filter(Boolean);
// Every N ms each client connection sends op 2 (all at once; 0 = never).
const heartbeat = Number(arg("heartbeat", "0"));
// The bench children exit on this command; killed if not gone in 30 s.
const EXIT = { cmd: "exit" };

/** The comet's CPU seconds: the serverCpu column is nothing without them. */
async function cpuSeconds(pid: number): Promise<number> {
  const cpu = await readCpuSeconds(pid);
  if (cpu === null) throw new Error(`no /proc/${pid}/stat`);
  return cpu;
}

const server = spawnScript("comet", `${here}comet_bench_server.ts`, serverArgs);
const clients: JsonLinesChild[] = [];
try {
  const ready = await server.next("ready");
  const per = Math.ceil(n / procs);
  for (let i = 0; i < procs; i++) {
    clients.push(
      spawnScript(`clients${i}`, `${here}comet_bench_clients.ts`, [
        "--transport=tcp",
        `--port=${ready.tcp}`,
        `--n=${Math.min(per, n - i * per)}`,
        `--prefix=t${i}-`,
        "--buf=16384",
        `--heartbeat=${heartbeat}`,
      ]),
    );
  }
  const readies = await Promise.all(clients.map((c) => c.next("ready")));
  const sizes = readies.map((r) => r.authed as number);
  console.error(`connections ready: ${sizes.join(" + ")}`);
  await pause(1000);
  const results = [];
  for (const batch of batches) {
    const before = (await Promise.all(clients.map((c) => c.ask({ cmd: "count" }, "count"))))
      .map((e) => e.frames as number);
    const c0 = await server.ask({ cmd: "counters" }, "counters");
    const cpu0 = await cpuSeconds(server.pid);
    const run = await server.ask({ cmd: "broadcast", batch, seconds, bytes }, "broadcast");
    const perConn = run.frames as number;
    const reached = await Promise.all(
      clients.map((c, i) =>
        c.ask(
          { cmd: "wait", total: before[i] + perConn * sizes[i], timeoutMs: 120_000 },
          "reached",
        )
      ),
    );
    const cpu1 = await cpuSeconds(server.pid);
    const c1 = await server.ask({ cmd: "counters" }, "counters");
    const writes = (c1.writes as number) - (c0.writes as number);
    const builds = (c1.builds as number) - (c0.builds as number);
    const copied = (c1.copied as number) - (c0.copied as number);
    const lastAt = Math.max(...reached.map((r) => r.at as number));
    const delivered = reached.reduce((a, r, i) => a + (r.frames as number) - before[i], 0);
    const elapsed = (lastAt - (run.startAt as number)) / 1000;
    const r = {
      batch,
      calls: run.calls as number,
      driverWaits: run.waits as number,
      connections: run.connections as number,
      allDelivered: reached.every((x) => x.reached),
      deliveredFrames: delivered,
      seconds: +elapsed.toFixed(2),
      framesPerSecond: Math.round(delivered / elapsed),
      callsPerSecond: Math.round((run.calls as number) / elapsed),
      writesPerSecond: Math.round(writes / elapsed),
      framesPerWrite: +(((c1.frames as number) - (c0.frames as number)) / writes).toFixed(1),
      serverCpu: +((cpu1 - cpu0) / elapsed).toFixed(2),
      buildsPerSecond: Math.round(builds / elapsed),
      copiedMBPerSecond: +(copied / elapsed / 1e6).toFixed(1),
    };
    console.log(JSON.stringify(r));
    results.push(r);
    await pause(1000);
  }
  console.table(results);
} finally {
  await Promise.all(clients.map((c) => c.stop(30_000, EXIT)));
  await server.stop(30_000, EXIT);
}

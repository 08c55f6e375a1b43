/**
 * Memory per idle connection of the comet, TCP and WebSocket.
 *
 * Starts a comet in its own process (bench/comet_bench_server.ts), opens N
 * authenticated, idle connections from other processes
 * (bench/comet_bench_clients.ts, ≤ 10,000 per process), and reports the
 * comet's RSS growth per connection: (RSS after − RSS before) / N, both
 * read from /proc/PID/status after forced garbage collections.
 *
 * ```sh
 * ./scripts/deno run -A bench/comet_memory.ts            # 10,000 TCP, then 10,000 WS
 * ./scripts/deno run -A bench/comet_memory.ts --n=2000 --transport=ws
 * ```
 *
 * Targets (docs/COMET.md): ≤ 8 KB per TCP connection, ≤ 14 KB per WebSocket.
 *
 * @module
 */

import { arg } from "./lib/args.ts";
import { type JsonLinesChild, pause, spawnScript } from "./lib/child.ts";
import { readRssBytes } from "./lib/procstat.ts";

const here = new URL(".", import.meta.url).pathname;
const n = Number(arg("n", "10000"));
const perProc = Number(arg("per-proc", "10000"));
const transports = arg("transport", "tcp,ws").split(",");
const serverArgs = arg("server-args", "").split(" ").filter(Boolean);
// The bench children exit on this command; killed if not gone in 30 s.
const EXIT = { cmd: "exit" };

/** The comet's RSS: this bench is nothing without it. */
async function rssOf(pid: number): Promise<number> {
  const rss = await readRssBytes(pid);
  if (rss === null) throw new Error(`no VmRSS for ${pid}`);
  return rss;
}

async function measure(transport: string): Promise<Record<string, number | string>> {
  const server = spawnScript(
    "comet",
    `${here}${arg("server", "comet_bench_server.ts")}`,
    serverArgs,
    ["--expose-gc"],
  );
  const clients: JsonLinesChild[] = [];
  try {
    const ready = await server.next("ready");
    const port = (transport === "tcp" ? ready.tcp : ready.ws) as number;
    await pause(500);
    const gc0 = await server.ask({ cmd: "gc" }, "gc");
    const before = await rssOf(server.pid);
    const t0 = performance.now();
    for (let i = 0, left = n; left > 0; i++, left -= perProc) {
      clients.push(
        spawnScript(`clients${i}`, `${here}comet_bench_clients.ts`, [
          `--transport=${transport}`,
          `--port=${port}`,
          `--n=${Math.min(perProc, left)}`,
          `--prefix=p${i}-`,
          "--buf=1024",
        ]),
      );
    }
    const readies = await Promise.all(clients.map((c) => c.next("ready")));
    const openMs = performance.now() - t0;
    const stats = await server.ask({ cmd: "stats" }, "stats");
    await pause(1000);
    const gc1 = await server.ask({ cmd: "gc" }, "gc");
    const after = await rssOf(server.pid);
    const authed = readies.reduce((a, r) => a + (r.authed as number), 0);
    return {
      transport,
      connections: stats.connections as number,
      authed,
      openSeconds: +(openMs / 1000).toFixed(1),
      rssBeforeMiB: +(before / 2 ** 20).toFixed(1),
      rssAfterMiB: +(after / 2 ** 20).toFixed(1),
      bytesPerConnection: Math.round((after - before) / (stats.connections as number)),
      heapBytesPerConnection: Math.round(
        ((gc1.heapUsed as number) - (gc0.heapUsed as number)) / (stats.connections as number),
      ),
    };
  } finally {
    await Promise.all(clients.map((c) => c.stop(30_000, EXIT)));
    await server.stop(30_000, EXIT);
  }
}

const results = [];
for (const t of transports) {
  const r = await measure(t);
  console.log(JSON.stringify(r));
  results.push(r);
}
console.table(results);

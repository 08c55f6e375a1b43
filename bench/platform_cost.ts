// What the machine charges before any of our code runs: the CPU one
// event-loop wake-up costs, and the CPU one small loopback socket write
// costs, under the pinned Deno. Every role pays the first for each time it
// sleeps and is woken (a read, a timer), the comet pays the second per
// socket write of a fan-out pass, so these two numbers are the floor under
// the CPU and latency figures in BENCHMARKS.md ("The machine's floor").
// Not run in CI.
//
//   ./scripts/deno run -A bench/platform_cost.ts [--wakeups 2000] [--writes 20000]
//
// Wake-ups: a loop of `await setTimeout(ms)` for ms = 1, 5, 20; CPU per
// iteration from process.cpuUsage (user + system). Writes: 200-byte writes
// to a sink in a child process (so its reads are not ours), one after the
// other, for Deno.Conn and node:net; on loopback the sender's system time
// includes the kernel's delivery to the receiving socket.
import net from "node:net";
import process from "node:process";
import { Buffer } from "node:buffer";
import { arg, flag } from "./lib/args.ts";

const SINK_FLAG = "--sink";

if (flag("sink")) {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log((l.addr as Deno.NetAddr).port);
  for await (const c of l) {
    (async () => {
      const b = new Uint8Array(65536);
      try {
        while ((await c.read(b)) !== null) { /* drain */ }
      } catch { /* the writer went away */ }
    })();
  }
}

const WAKEUPS = Number(arg("wakeups", "2000"));
const WRITES = Number(arg("writes", "20000"));
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU microseconds per iteration of `body`, run `n` times. */
async function cpuPer(n: number, body: (i: number) => Promise<unknown> | unknown): Promise<number> {
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await body(i);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

for (const ms of [1, 5, 20]) {
  const n = Math.max(50, Math.round(WAKEUPS / ms));
  const us = await cpuPer(n, () => tick(ms));
  console.log(`wake-up after a ${ms} ms timer: ${us.toFixed(0)} µs CPU (${n} wake-ups)`);
}

const sink = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", new URL(import.meta.url).pathname, SINK_FLAG],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = sink.stdout.getReader();
const { value } = await reader.read();
const port = Number(new TextDecoder().decode(value).trim());
const body = new Uint8Array(200).fill(65);

const conn = await Deno.connect({ hostname: "127.0.0.1", port });
conn.setNoDelay(true);
// Awaited one by one: a write resolves as soon as the kernel took it.
const denoConn = await cpuPer(WRITES, () => conn.write(body));
conn.close();
const sock = net.connect(port, "127.0.0.1");
await new Promise((r) => sock.once("connect", r));
sock.setNoDelay(true);
const buf = Buffer.from(body);
const nodeNet = await cpuPer(
  WRITES,
  () => sock.write(buf) ? undefined : new Promise((r) => sock.once("drain", r)),
);
sock.destroy();
console.log(`200-byte loopback write, Deno.Conn: ${denoConn.toFixed(1)} µs CPU (${WRITES} writes)`);
console.log(`200-byte loopback write, node:net:  ${nodeNet.toFixed(1)} µs CPU (${WRITES} writes)`);
sink.kill();
await sink.status;
await reader.cancel().catch(() => {});

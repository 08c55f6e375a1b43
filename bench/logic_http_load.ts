// Push requests per second through real HTTP on loopback (documented in
// docs/LOGIC.md, not run in CI).
//
//   ./scripts/deno run -A bench/logic_http_load.ts [--seconds 10] [--concurrency 64]
//       [--route keys|mids|room|all] [--same-process]
//
// By default the logic server runs in a child process (this script with
// --serve) and the load loop in this one, so on a 2-core box each gets a
// core; --same-process puts both on one thread for comparison. The load is
// `concurrency` fetch loops on 127.0.0.1, bounded by --seconds, after one
// second of warm-up. Engines: the embedded defaults, memory sessions,
// registry (10,000 routes over 4 comets) and queue, whose consumer
// acknowledges each message at once, standing in for job.
import { loadConfig } from "../infra/config.ts";
import { createLogger } from "../infra/log.ts";
import { createMemoryQueue, type MemoryQueue } from "../infra/memory/queue.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { MemorySessionStore } from "../infra/memory/sessions.ts";
import { Logic } from "../logic/logic.ts";
import { arg, flag } from "./lib/args.ts";
const SECONDS = Math.min(120, Number(arg("seconds", "10")));
const CONCURRENCY = Math.min(1024, Number(arg("concurrency", "64")));
const ROUTE = arg("route", "keys");
const KEYS = 10_000;

async function startServer(): Promise<{ logic: Logic; port: number; close(): Promise<void> }> {
  const config = loadConfig({
    env: {},
    args: [
      "node.id=bench",
      "logic.http.bind=127.0.0.1:0",
      "logic.admin.bind=",
    ].flatMap((s) => ["--set", s]),
  });
  const sessions = new MemorySessionStore({ ttlMs: config.logic.route_ttl, sweepIntervalMs: 0 });
  const registry = new MemoryRegistry();
  const queue: MemoryQueue = createMemoryQueue({ capacity: config.queue.memory.capacity });
  await queue.consumer.start(() => Promise.resolve());
  const logic = new Logic({
    config,
    sessions,
    registry,
    producer: queue.producer,
    log: createLogger({ level: "error" }),
  });
  const utf8 = new TextEncoder();
  for (let i = 0; i < KEYS; i++) {
    await logic.service.Connect({
      server: `comet-${i % 4}`,
      cookie: "",
      token: utf8.encode(JSON.stringify({ mid: (i >> 1) + 1, key: `key-${i}`, accepts: [1000] })),
    });
  }
  const addrs = await logic.start({ grpc: false });
  const port = addrs.http.port;
  return {
    logic,
    port,
    async close() {
      await logic.stop();
      await queue.producer.close();
      await queue.consumer.close();
      await sessions.close();
      await registry.close();
    },
  };
}

function path(n: number): string {
  switch (ROUTE) {
    case "mids":
      return `/goim/push/mids?operation=1000&mids=${(n % (KEYS / 2)) + 1}`;
    case "room":
      return `/goim/push/room?operation=1000&type=live&room=${n % 100}`;
    case "all":
      return `/goim/push/all?operation=1000`;
    default:
      return `/goim/push/keys?operation=1000&keys=key-${n % KEYS}`;
  }
}

async function load(port: number): Promise<void> {
  const body = new TextEncoder().encode(JSON.stringify({ text: "hello from the push API", n: 42 }));
  const base = `http://127.0.0.1:${port}`;
  let n = 0, ok = 0, failed = 0, measuring = false, stop = false;
  const latencies: number[] = [];
  const worker = async () => {
    while (!stop) {
      const t0 = performance.now();
      try {
        const res = await fetch(base + path(n++), { method: "POST", body });
        await res.arrayBuffer();
        if (measuring) {
          if (res.status === 200) ok++;
          else failed++;
          if ((ok & 15) === 0) latencies.push(performance.now() - t0);
        }
      } catch {
        if (measuring) failed++;
      }
    }
  };
  const workers = Array.from({ length: CONCURRENCY }, worker);
  await new Promise((r) => setTimeout(r, 1000));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.all(workers);
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.floor(p * (latencies.length - 1))]?.toFixed(2);
  console.log(JSON.stringify({
    route: ROUTE,
    concurrency: CONCURRENCY,
    seconds: Number(elapsed.toFixed(1)),
    requests_per_s: Math.round(ok / elapsed),
    ok,
    failed,
    latency_ms: { p50: q(0.5), p99: q(0.99) },
    server: flag("same-process") ? "same process" : "child process",
  }));
}

if (flag("serve")) {
  const server = await startServer();
  console.log(server.port);
  // Serve until the parent closes stdin.
  for await (const _ of Deno.stdin.readable) { /* drain */ }
  await server.close();
} else if (flag("same-process")) {
  const server = await startServer();
  await load(server.port);
  await server.close();
} else {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", new URL(import.meta.url).pathname, "--serve"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("server exited before printing its port");
    text += value;
  }
  await load(Number(text.trim()));
  await child.stdin.close();
  await reader.cancel();
  await child.status;
}

/**
 * Idle memory per connection in the distributed mode (issue 11): a real
 * logic (gRPC, Redis sessions and registry), a real job (Kafka) and one
 * comet, each its own `deno run` process started with `--inspect` on a
 * loopback port; N authenticated idle TCP clients in other processes
 * (bench/comet_bench_clients.ts). Before and after the connections, every
 * role gets garbage-collected through its inspector
 * (`HeapProfiler.collectGarbage`), then its RSS (/proc/PID/status) and JS
 * heap (`Deno.memoryUsage()` evaluated through the inspector) are read;
 * the report is the growth per connection of each role.
 *
 * Needs Redis and Kafka from `scripts/services.sh up`.
 *
 * ```sh
 * ./scripts/deno run -A bench/distributed_memory.ts                # 10,000 TCP
 * ./scripts/deno run -A bench/distributed_memory.ts --n=2000 --set comet.x=y
 * ```
 *
 * @module
 */

import { arg } from "./lib/args.ts";
import { type JsonLinesChild, pause, spawnScript } from "./lib/child.ts";
import { readRssBytes } from "./lib/procstat.ts";
import { freePort, RoleProcess } from "../tests/e2e/cluster.ts";

const here = new URL(".", import.meta.url).pathname;
const n = Number(arg("n", "10000"));
const perProc = Number(arg("per-proc", "10000"));
// Idle time after the last connection before the "after" sample, ms.
const settleMs = Number(arg("settle", "2000"));
// With --alloc-top=K: the K call sites that allocated most in each role
// while the connections opened (V8 sampling heap profiler, every 32 KiB).
const allocTop = Number(arg("alloc-top", "0"));
const redisUrl = arg("redis", "redis://127.0.0.1:6379");
const brokers = arg("kafka", "127.0.0.1:9092");
// Extra `--set k=v` for every role (repeatable).
const extraSets = Deno.args.flatMap((a, i) =>
  a === "--set" && Deno.args[i + 1]
    ? [Deno.args[i + 1]]
    : a.startsWith("--set=")
    ? [a.slice(6)]
    : []
);
// An inspector call that does not answer in this time fails the run.
const INSPECTOR_TIMEOUT_MS = 60_000;
// The bench client processes exit on this command; killed if not gone in 30 s.
const EXIT = { cmd: "exit" };

/** A role's memory: RSS before and after forced GC, JS heap and external. */
interface Sample {
  rssNoGc: number;
  rss: number;
  heap: number;
  external: number;
}

/** A node of a V8 sampling heap profile. */
interface AllocNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: AllocNode[];
}

/** One inspector session (Chrome DevTools protocol over a WebSocket). */
class Inspector {
  #ws: WebSocket;
  #id = 0;
  #pending = new Map<number, (r: Record<string, unknown>) => void>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data as string);
      const done = this.#pending.get(m.id);
      if (done) {
        this.#pending.delete(m.id);
        done(m);
      }
    };
  }

  /** Connects to the first target of the inspector on `port`. */
  static async open(port: number): Promise<Inspector> {
    const res = await fetch(`http://127.0.0.1:${port}/json/list`);
    const [target] = await res.json();
    const ws = new WebSocket(target.webSocketDebuggerUrl);
    await new Promise((ok, fail) => {
      ws.onopen = ok;
      ws.onerror = fail;
    });
    return new Inspector(ws);
  }

  /** Sends one method and resolves with its `result`. */
  call(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = ++this.#id;
    this.#ws.send(JSON.stringify({ id, method, params }));
    return new Promise((ok, fail) => {
      const t = setTimeout(() => fail(new Error(`${method}: no answer`)), INSPECTOR_TIMEOUT_MS);
      this.#pending.set(id, (m) => {
        clearTimeout(t);
        if (m.error) fail(new Error(`${method}: ${JSON.stringify(m.error)}`));
        else ok(m.result as Record<string, unknown>);
      });
    });
  }

  /** Two full collections, then RSS and JS heap of the process. */
  async sample(pid: number): Promise<Sample> {
    const rssNoGc = await readRssBytes(pid);
    await this.call("HeapProfiler.collectGarbage");
    await this.call("HeapProfiler.collectGarbage");
    const r = await this.call("Runtime.evaluate", {
      expression: "JSON.stringify(Deno.memoryUsage())",
      returnByValue: true,
    });
    const mem = JSON.parse((r.result as { value: string }).value);
    const rss = await readRssBytes(pid);
    if (rss === null || rssNoGc === null) throw new Error(`no VmRSS for ${pid}`);
    return { rssNoGc, rss, heap: mem.heapUsed, external: mem.external };
  }

  /** Sums a sampling heap profile by allocating function, largest first. */
  async topAllocations(k: number): Promise<string[]> {
    const { profile } = await this.call("HeapProfiler.stopSampling") as {
      profile: { head: AllocNode };
    };
    const by = new Map<string, number>();
    const walk = (node: AllocNode) => {
      const f = node.callFrame;
      const site = `${f.functionName || "(anonymous)"} ${f.url.split("/").slice(-2).join("/")}:${
        f.lineNumber + 1
      }`;
      if (node.selfSize) by.set(site, (by.get(site) ?? 0) + node.selfSize);
      for (const c of node.children) walk(c);
    };
    walk(profile.head);
    const total = [...by.values()].reduce((a, b) => a + b, 0);
    return [
      `${(total / 2 ** 20).toFixed(1)} MiB allocated in all`,
      ...[...by].sort((a, b) => b[1] - a[1]).slice(0, k).map(([site, bytes]) =>
        `${(bytes / 2 ** 20).toFixed(1)} MiB ${site}`
      ),
    ];
  }

  close(): void {
    this.#ws.close();
  }
}

const id = crypto.randomUUID().slice(0, 8);
const topic = `memb-${id}`;
const common = [
  "mode=distributed",
  "queue.engine=kafka",
  "sessions.engine=redis",
  "registry.engine=redis",
  `queue.kafka.brokers=${brokers}`,
  `queue.kafka.topic=${topic}`,
  `queue.kafka.group=${topic}-job`,
  `redis.url=${redisUrl}`,
  `redis.key_prefix=${topic}:`,
  "log.level=warn",
  ...extraSets,
];
const sets = (extra: string[]) => [...common, ...extra].flatMap((kv) => ["--set", kv]);
const logicGrpc = freePort();
const cometTcp = freePort();
const roles: { p: RoleProcess; inspect: number }[] = [];
function role(name: string, main: string, adminKey: string, extra: string[]): RoleProcess {
  const admin = freePort();
  const inspect = freePort();
  const p = new RoleProcess(name, [
    `--inspect=127.0.0.1:${inspect}`,
    main,
    ...sets([`node.id=${name}-${id}`, `${adminKey}=127.0.0.1:${admin}`, ...extra]),
  ], admin);
  p.env.GOIM_GRPC__TOKEN = id;
  roles.push({ p, inspect });
  return p;
}
role("logic", "logic/main.ts", "logic.admin.bind", [
  `logic.http.bind=127.0.0.1:${freePort()}`,
  `logic.grpc.bind=127.0.0.1:${logicGrpc}`,
]);
role("comet", "comet/main.ts", "comet.admin.bind", [
  `comet.tcp.bind=127.0.0.1:${cometTcp}`,
  `comet.websocket.bind=127.0.0.1:${freePort()}`,
  `comet.grpc.bind=127.0.0.1:${freePort()}`,
  `comet.logic_addrs=127.0.0.1:${logicGrpc}`,
]);
role("job", "job/main.ts", "job.admin.bind", []);

const clients: JsonLinesChild[] = [];
const inspectors: Inspector[] = [];
try {
  for (const r of roles) await r.p.start();
  for (const r of roles) inspectors.push(await Inspector.open(r.inspect));
  await pause(2000);
  const before = await Promise.all(roles.map((r, i) => inspectors[i].sample(r.p.pid!)));
  if (allocTop > 0) {
    await Promise.all(inspectors.map((i) =>
      i.call("HeapProfiler.startSampling", {
        samplingInterval: 32768,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      })
    ));
  }
  const t0 = performance.now();
  for (let i = 0, left = n; left > 0; i++, left -= perProc) {
    clients.push(
      spawnScript(`clients${i}`, `${here}comet_bench_clients.ts`, [
        "--transport=tcp",
        `--port=${cometTcp}`,
        `--n=${Math.min(perProc, left)}`,
        `--prefix=p${i}-`,
        "--buf=1024",
      ]),
    );
  }
  const readies = await Promise.all(clients.map((c) => c.next("ready")));
  const openSeconds = +((performance.now() - t0) / 1000).toFixed(1);
  const authed = readies.reduce((a, r) => a + (r.authed as number), 0);
  for (let i = 0; allocTop > 0 && i < roles.length; i++) {
    console.log(
      `${roles[i].p.name}:\n  ${(await inspectors[i].topAllocations(allocTop)).join("\n  ")}`,
    );
  }
  await pause(settleMs);
  const after = await Promise.all(roles.map((r, i) => inspectors[i].sample(r.p.pid!)));
  const kb = (b: number) => +(b / authed / 1024).toFixed(2);
  const rows = roles.map((r, i) => ({
    role: r.p.name,
    rssBeforeMiB: +(before[i].rss / 2 ** 20).toFixed(1),
    rssAfterMiB: +(after[i].rss / 2 ** 20).toFixed(1),
    rssKBPerConn: kb(after[i].rss - before[i].rss),
    rssNoGcKBPerConn: kb(after[i].rssNoGc - before[i].rssNoGc),
    heapKBPerConn: kb(after[i].heap - before[i].heap),
    externalKBPerConn: kb(after[i].external - before[i].external),
  }));
  console.log(JSON.stringify({ n, authed, openSeconds, rows }));
  console.table(rows);
} finally {
  for (const i of inspectors) i.close();
  await Promise.all(clients.map((c) => c.stop(30_000, EXIT)));
  await Promise.all(roles.map((r) => r.p.stop("SIGTERM")));
}

/**
 * Starts the distributed mode for tests: logic, job and N comets as separate
 * `deno run` processes on a real Kafka and a real Redis, each test isolated
 * by its own topic, consumer group and Redis key prefix.
 *
 * @module
 */

import type { Cluster } from "./suite.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A free loopback TCP port (bound, read, released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** One role process of the cluster. */
export class RoleProcess {
  readonly name: string;
  readonly args: string[];
  readonly adminPort: number;
  /** Environment added to the inherited one. */
  readonly env: Record<string, string> = {};
  /** Deno flags before the script, e.g. `--cpu-prof-dir=DIR` (default none). */
  denoFlags: string[] = [];
  #child: Deno.ChildProcess | null = null;
  #log: string[] = [];

  constructor(name: string, args: string[], adminPort: number) {
    this.name = name;
    this.args = args;
    this.adminPort = adminPort;
  }

  /** The last lines the process wrote to stderr, for failure messages. */
  tail(n = 30): string {
    return this.#log.slice(-n).join("\n");
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Spawns the process and waits until its /healthz answers 200. */
  async start(readyMs = 60_000): Promise<void> {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", ...this.denoFlags, ...this.args],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1", KAFKAJS_NO_PARTITIONER_WARNING: "1", ...this.env },
    }).spawn();
    this.#child = child;
    const log = this.#log;
    (async () => {
      const dec = new TextDecoder();
      let rest = "";
      for await (const chunk of child.stderr) {
        rest += dec.decode(chunk, { stream: true });
        const lines = rest.split("\n");
        rest = lines.pop()!;
        log.push(...lines);
        if (log.length > 500) log.splice(0, log.length - 500);
      }
    })().catch(() => {});
    const deadline = Date.now() + readyMs;
    let exited = false;
    child.status.then(() => exited = true);
    for (;;) {
      if (exited) throw new Error(`${this.name} exited during startup:\n${this.tail()}`);
      try {
        const res = await fetch(`http://127.0.0.1:${this.adminPort}/healthz`);
        await res.body?.cancel();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.name} not healthy after ${readyMs} ms:\n${this.tail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Sends `signal` to the process we spawned and waits for it to exit. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus | null> {
    const child = this.#child;
    if (!child) return null;
    this.#child = null;
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 15_000);
    try {
      return await child.status;
    } finally {
      clearTimeout(killer);
    }
  }
}

/** Options of {@linkcode startDistributed}. */
export interface DistributedOptions {
  comets?: number;
  kafkaBrokers: string;
  redisUrl: string;
  /** Extra `--set` pairs for every role. */
  set?: string[];
  /** Extra `--set` pairs for comet `index` only, after `set` (so they override it). */
  cometSet?: (index: number) => string[];
  /**
   * The internal gRPC token every role gets as GOIM_GRPC__TOKEN (the way
   * config/distributed.toml asks for it); default a random one, "" = none.
   */
  grpcToken?: string;
  /** Deno flags for every role process, e.g. `--cpu-prof-dir=DIR` (default none). */
  denoFlags?: string[];
}

/** A running distributed cluster with handles on each process. */
export interface DistributedCluster extends Cluster {
  logic: RoleProcess;
  job: RoleProcess;
  cometProcs: RoleProcess[];
  topic: string;
  /** The internal gRPC token of the roles ("" = none). */
  grpcToken: string;
}

/** Starts logic, job and `comets` comets as processes; stops them all on failure. */
export async function startDistributed(opts: DistributedOptions): Promise<DistributedCluster> {
  const id = crypto.randomUUID().slice(0, 8);
  const topic = `e2e-${id}`;
  const common = [
    "mode=distributed",
    "queue.engine=kafka",
    "sessions.engine=redis",
    "registry.engine=redis",
    `queue.kafka.brokers=${opts.kafkaBrokers}`,
    `queue.kafka.topic=${topic}`,
    `queue.kafka.group=${topic}-job`,
    `redis.url=${opts.redisUrl}`,
    `redis.key_prefix=${topic}:`,
    "log.level=warn",
    "comet.renew_online_interval=300ms",
    ...(opts.set ?? []),
  ];
  const sets = (extra: string[]) => [...common, ...extra].flatMap((kv) => ["--set", kv]);

  const logicHttp = freePort();
  const logicGrpc = freePort();
  const logicAdmin = freePort();
  const logic = new RoleProcess("logic", [
    "logic/main.ts",
    ...sets([
      `node.id=logic-${id}`,
      `logic.http.bind=127.0.0.1:${logicHttp}`,
      `logic.grpc.bind=127.0.0.1:${logicGrpc}`,
      `logic.admin.bind=127.0.0.1:${logicAdmin}`,
    ]),
  ], logicAdmin);

  const cometProcs: RoleProcess[] = [];
  const endpoints: { tcp: string; ws: string }[] = [];
  for (let i = 0; i < (opts.comets ?? 2); i++) {
    const tcp = freePort();
    const ws = freePort();
    const admin = freePort();
    cometProcs.push(
      new RoleProcess(`comet-${i}`, [
        "comet/main.ts",
        ...sets([
          `node.id=comet-${i}-${id}`,
          `comet.tcp.bind=127.0.0.1:${tcp}`,
          `comet.websocket.bind=127.0.0.1:${ws}`,
          `comet.grpc.bind=127.0.0.1:${freePort()}`,
          `comet.logic_addrs=127.0.0.1:${logicGrpc}`,
          `comet.admin.bind=127.0.0.1:${admin}`,
          ...(opts.cometSet?.(i) ?? []),
        ]),
      ], admin),
    );
    endpoints.push({ tcp: `tcp://127.0.0.1:${tcp}`, ws: `ws://127.0.0.1:${ws}/sub` });
  }
  const jobAdmin = freePort();
  const job = new RoleProcess("job", [
    "job/main.ts",
    ...sets([`node.id=job-${id}`, `job.admin.bind=127.0.0.1:${jobAdmin}`]),
  ], jobAdmin);

  const all = [logic, ...cometProcs, job];
  const grpcToken = opts.grpcToken ?? crypto.randomUUID();
  for (const p of all) {
    p.env.GOIM_GRPC__TOKEN = grpcToken;
    p.denoFlags = opts.denoFlags ?? [];
  }
  const stop = async () => {
    await Promise.all(all.map((p) => p.stop("SIGTERM")));
  };
  try {
    await logic.start();
    await Promise.all(cometProcs.map((c) => c.start()));
    await job.start();
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    http: `http://127.0.0.1:${logicHttp}`,
    comets: endpoints,
    stop,
    logic,
    job,
    cometProcs,
    topic,
    grpcToken,
  };
}

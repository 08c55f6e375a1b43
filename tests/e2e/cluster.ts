/**
 * Starts the distributed mode for tests: logics, jobs and comets (one of
 * each role by default, two comets) as separate `deno run` processes on a
 * real Kafka and a real Redis, each test isolated by its own topic,
 * consumer group and Redis key prefix.
 *
 * @module
 */

import { Kafka, logLevel } from "kafkajs";
import { deleteTopic, type KafkaTestTarget } from "../kafka_env.ts";
import type { RedisTestTarget } from "../redis_env.ts";
import { freePort } from "../fixtures/ports.ts";
import type { Cluster } from "./suite.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A free loopback port outside the ephemeral range (tests/fixtures/ports.ts). */
export { freePort };

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
  /** Logic processes (default 1), all on the same topic and Redis prefix. */
  logics?: number;
  /** Job processes (default 1), all in the same consumer group. */
  jobs?: number;
  kafkaBrokers: string;
  redisUrl: string;
  /** Extra `--set` pairs for every role. */
  set?: string[];
  /** Extra `--set` pairs for comet `index` only, after `set` (so they override it). */
  cometSet?: (index: number) => string[];
  /** Extra `--set` pairs for job `index` only (also for jobs added later), after `set`. */
  jobSet?: (index: number) => string[];
  /**
   * Create the topic with this many partitions before any role starts (and
   * delete it in `stop()`); default: the roles create it with the broker's
   * `num.partitions`.
   */
  partitions?: number;
  /**
   * Lay the comets out the way goim's nodes answer can name them: comet i
   * listens on its own loopback address 127.0.0.(i+2), every comet on the
   * same TCP and WebSocket ports, advertises that address (`comet.addrs`),
   * and logic's `logic.nodes.tcp_port` / `ws_port` are those ports. Default
   * false: every comet on 127.0.0.1 with ports of its own, not advertised.
   */
  nodes?: boolean;
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
  /** The first logic (`logicProcs[0]`); `http` is its API. */
  logic: RoleProcess;
  /** The first job (`jobProcs[0]`). */
  job: RoleProcess;
  /** Every logic, in start order. */
  logicProcs: RoleProcess[];
  /** Logic `i`'s HTTP base URL, for every logic. */
  https: string[];
  /** Every job, those added by `addJob` included. */
  jobProcs: RoleProcess[];
  cometProcs: RoleProcess[];
  /** Comet `i`'s `node.id` (the `server` of its routes and registry record). */
  cometIds: string[];
  topic: string;
  /** The job consumer group. */
  group: string;
  /** The Redis key prefix of every role. */
  redisPrefix: string;
  /** The internal gRPC token of the roles ("" = none). */
  grpcToken: string;
  /** Starts one more job in the group (index `jobProcs.length`); `stop()` stops it too. */
  addJob(): Promise<RoleProcess>;
}

/**
 * A loopback port free on every one of `hosts` at once (for comets that
 * share their client ports on distinct loopback addresses); bounded retries.
 */
export function sharedFreePort(hosts: readonly string[]): number {
  for (let tries = 0; tries < 50; tries++) {
    const first = Deno.listen({ hostname: hosts[0], port: 0 });
    const port = (first.addr as Deno.NetAddr).port;
    const held: Deno.Listener[] = [first];
    try {
      for (const hostname of hosts.slice(1)) held.push(Deno.listen({ hostname, port }));
      return port;
    } catch {
      // taken on one of them: try another
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error(`no port free on all of ${hosts.join(", ")} after 50 tries`);
}

/** Creates `topic` with `partitions` partitions (replication 1: the test broker is one node). */
export async function createTopic(
  brokers: string[],
  topic: string,
  partitions: number,
): Promise<void> {
  const admin = new Kafka({ brokers, clientId: "goim-test", logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
      waitForLeaders: true,
    });
  } finally {
    await admin.disconnect();
  }
}

/** Starts the logics, comets and jobs as processes; stops them all on failure. */
export async function startDistributed(opts: DistributedOptions): Promise<DistributedCluster> {
  const id = crypto.randomUUID().slice(0, 8);
  const topic = `e2e-${id}`;
  const group = `${topic}-job`;
  const redisPrefix = `${topic}:`;
  const brokers = opts.kafkaBrokers.split(",");
  const common = [
    "mode=distributed",
    "queue.engine=kafka",
    "sessions.engine=redis",
    "registry.engine=redis",
    `queue.kafka.brokers=${opts.kafkaBrokers}`,
    `queue.kafka.topic=${topic}`,
    `queue.kafka.group=${group}`,
    `redis.url=${opts.redisUrl}`,
    `redis.key_prefix=${redisPrefix}`,
    "log.level=warn",
    "comet.renew_online_interval=300ms",
    ...(opts.set ?? []),
  ];
  const sets = (extra: string[]) => [...common, ...extra].flatMap((kv) => ["--set", kv]);

  const cometCount = opts.comets ?? 2;
  const cometHosts = Array.from(
    { length: cometCount },
    (_, i) => opts.nodes ? `127.0.0.${i + 2}` : "127.0.0.1",
  );
  const shared = opts.nodes
    ? { tcp: sharedFreePort(cometHosts), ws: sharedFreePort(cometHosts) }
    : undefined;

  const logicGrpcs: number[] = [];
  const https: string[] = [];
  const logicProcs: RoleProcess[] = [];
  for (let i = 0; i < (opts.logics ?? 1); i++) {
    const http = freePort();
    const grpc = freePort();
    const admin = freePort();
    logicGrpcs.push(grpc);
    https.push(`http://127.0.0.1:${http}`);
    logicProcs.push(
      new RoleProcess(i === 0 ? "logic" : `logic-${i}`, [
        "logic/main.ts",
        ...sets([
          `node.id=logic-${i}-${id}`,
          `logic.http.bind=127.0.0.1:${http}`,
          `logic.grpc.bind=127.0.0.1:${grpc}`,
          `logic.admin.bind=127.0.0.1:${admin}`,
          ...(shared
            ? [`logic.nodes.tcp_port=${shared.tcp}`, `logic.nodes.ws_port=${shared.ws}`]
            : []),
        ]),
      ], admin),
    );
  }

  const cometProcs: RoleProcess[] = [];
  const cometIds: string[] = [];
  const endpoints: { tcp: string; ws: string }[] = [];
  for (let i = 0; i < cometCount; i++) {
    const host = cometHosts[i];
    const tcp = shared?.tcp ?? freePort();
    const ws = shared?.ws ?? freePort();
    const admin = freePort();
    cometIds.push(`comet-${i}-${id}`);
    cometProcs.push(
      new RoleProcess(`comet-${i}`, [
        "comet/main.ts",
        ...sets([
          `node.id=${cometIds[i]}`,
          `comet.tcp.bind=${host}:${tcp}`,
          `comet.websocket.bind=${host}:${ws}`,
          `comet.grpc.bind=127.0.0.1:${freePort()}`,
          `comet.logic_addrs=${logicGrpcs.map((p) => `127.0.0.1:${p}`).join(",")}`,
          `comet.admin.bind=127.0.0.1:${admin}`,
          ...(shared ? [`comet.addrs=${host}`] : []),
          ...(opts.cometSet?.(i) ?? []),
        ]),
      ], admin),
    );
    endpoints.push({ tcp: `tcp://${host}:${tcp}`, ws: `ws://${host}:${ws}/sub` });
  }

  const grpcToken = opts.grpcToken ?? crypto.randomUUID();
  const prepare = (p: RoleProcess) => {
    p.env.GOIM_GRPC__TOKEN = grpcToken;
    p.denoFlags = opts.denoFlags ?? [];
    return p;
  };
  const jobProcs: RoleProcess[] = [];
  const newJob = () => {
    const i = jobProcs.length;
    const admin = freePort();
    const job = prepare(
      new RoleProcess(i === 0 ? "job" : `job-${i}`, [
        "job/main.ts",
        ...sets([
          `node.id=job-${i}-${id}`,
          `job.admin.bind=127.0.0.1:${admin}`,
          ...(opts.jobSet?.(i) ?? []),
        ]),
      ], admin),
    );
    jobProcs.push(job);
    return job;
  };
  for (let i = 0; i < (opts.jobs ?? 1); i++) newJob();

  for (const p of [...logicProcs, ...cometProcs]) prepare(p);
  const stop = async () => {
    await Promise.all([...logicProcs, ...cometProcs, ...jobProcs].map((p) => p.stop("SIGTERM")));
    if (opts.partitions !== undefined) await deleteTopic(brokers, topic);
  };
  try {
    if (opts.partitions !== undefined) await createTopic(brokers, topic, opts.partitions);
    await Promise.all(logicProcs.map((l) => l.start()));
    await Promise.all(cometProcs.map((c) => c.start()));
    await Promise.all(jobProcs.map((j) => j.start()));
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    http: https[0],
    https,
    comets: endpoints,
    stop,
    logic: logicProcs[0],
    logicProcs,
    job: jobProcs[0],
    jobProcs,
    cometProcs,
    cometIds,
    topic,
    group,
    redisPrefix,
    grpcToken,
    async addJob() {
      const job = newJob();
      await job.start();
      return job;
    },
  };
}

/** The test Kafka and Redis a distributed test runs on (tests/kafka_env.ts, tests/redis_env.ts). */
export interface DistributedServices {
  kafka: Pick<KafkaTestTarget, "brokers" | "assertReachable">;
  /** A single Redis or a tests/redis_cluster_env.ts target (pass its `configSets()` in `set`). */
  redis: Pick<RedisTestTarget, "url" | "assertReachable">;
}

/**
 * {@linkcode startDistributed} on the test services: fails with their CI
 * message when one is unreachable, and fills `kafkaBrokers` and `redisUrl`.
 *
 * @example
 * ```ts
 * import { kafkaTestBrokers } from "../kafka_env.ts";
 * import { redisTestUrl } from "../redis_env.ts";
 * import { startDistributedOn } from "./cluster.ts";
 * const [kafka, redis] = await Promise.all([kafkaTestBrokers(), redisTestUrl()]);
 * const cluster = await startDistributedOn({ kafka, redis }, { comets: 2 });
 * await cluster.stop();
 * ```
 */
export function startDistributedOn(
  { kafka, redis }: DistributedServices,
  opts: Omit<DistributedOptions, "kafkaBrokers" | "redisUrl">,
): Promise<DistributedCluster> {
  kafka.assertReachable();
  redis.assertReachable();
  return startDistributed({ ...opts, kafkaBrokers: kafka.brokers.join(","), redisUrl: redis.url });
}

/**
 * A cluster for the streams end-to-end tests (docs/STREAMS.md), in either
 * mode: `embedded` is `deno task start`'s startEmbedded (one process, memory
 * engines, one comet); `distributed` is tests/e2e/cluster.ts (logic, job and
 * comets as processes on Kafka and Redis; two comets by default).
 *
 * @module
 */

import { createLogger } from "../../infra/log.ts";
import { parseSamples } from "../../infra/metrics.ts";
import { startEmbedded } from "../../main.ts";
import { embeddedTestConfig } from "../fixtures/embedded_config.ts";
import type { KafkaTestTarget } from "../kafka_env.ts";
import { deleteKeys } from "../redis_env.ts";
import { type DistributedCluster, startDistributed } from "./cluster.ts";
import type { Cluster } from "./suite.ts";

/** The two deployment modes. */
export type Mode = "embedded" | "distributed";

/** Options of {@linkcode startStreamsCluster}. */
export interface StreamsClusterOptions {
  /** `--set` pairs for every role (embedded: the one process). */
  set?: string[];
  /** Distributed: comets (default 2). */
  comets?: number;
  /** Distributed: jobs in the group (default 1). */
  jobs?: number;
  /** Distributed: create the topic with this many partitions. */
  partitions?: number;
  /** Distributed: the Kafka (tests/kafka_env.ts). */
  kafka?: Pick<KafkaTestTarget, "brokers" | "assertReachable">;
  /**
   * Distributed: the Redis URL. Its keys under the cluster's prefix are
   * deleted by `stop()` (a private Redis is the test's to throw away).
   */
  redisUrl?: string;
}

/** A running cluster of either mode. */
export interface StreamsCluster extends Cluster {
  mode: Mode;
  /** The processes, in the distributed mode. */
  dist?: DistributedCluster;
  /** The last log lines of every process, for a failure message ("" when embedded). */
  tails(): string;
  /** A comet series summed over every comet and label (`goim_comet_stream_…`), from /metrics. */
  cometMetric(name: string): Promise<number>;
}

/** Sums the samples named `name` on the /metrics pages of `bases` (`http://host:port`). */
export async function sumMetric(bases: readonly string[], name: string): Promise<number> {
  let sum = 0;
  for (const base of bases) {
    const res = await fetch(`${base}/metrics`);
    for (const s of parseSamples(await res.text(), (n) => n === name)) sum += s.value;
  }
  return sum;
}

/** Starts a cluster of `mode`; a distributed one needs `kafka` and `redisUrl`. */
export async function startStreamsCluster(
  mode: Mode,
  opts: StreamsClusterOptions = {},
): Promise<StreamsCluster> {
  if (mode === "embedded") {
    const config = embeddedTestConfig([
      "logic.admin.bind=",
      "job.admin.bind=",
      `node.id=streams-e2e-${crypto.randomUUID().slice(0, 8)}`,
      ...(opts.set ?? []),
    ]);
    const server = await startEmbedded(config, createLogger({ level: "warn" }));
    const tcp = server.cometAddrs.tcp[0];
    const ws = server.cometAddrs.ws[0];
    const admin = `http://127.0.0.1:${server.cometAddrs.admin!.port}`;
    return {
      mode,
      http: `http://127.0.0.1:${server.logicAddrs.http.port}`,
      comets: [{ tcp: `tcp://127.0.0.1:${tcp.port}`, ws: `ws://127.0.0.1:${ws.port}/sub` }],
      stop: () => server.stop(),
      tails: () => "",
      cometMetric: (name) => sumMetric([admin], name),
    };
  }
  const { kafka, redisUrl } = opts;
  if (!kafka || !redisUrl) throw new Error("a distributed cluster needs kafka and redisUrl");
  kafka.assertReachable();
  const dist = await startDistributed({
    kafkaBrokers: kafka.brokers.join(","),
    redisUrl,
    comets: opts.comets ?? 2,
    jobs: opts.jobs ?? 1,
    partitions: opts.partitions,
    set: opts.set,
  });
  return {
    mode,
    dist,
    http: dist.http,
    comets: dist.comets,
    stop: async () => {
      await dist.stop();
      await deleteKeys(redisUrl, dist.redisPrefix).catch(() => {});
    },
    tails: () =>
      [...dist.logicProcs, ...dist.jobProcs, ...dist.cometProcs]
        .map((p) => `--- ${p.name} ---\n${p.tail(30)}`)
        .join("\n"),
    cometMetric: (name) =>
      sumMetric(dist.cometProcs.map((p) => `http://127.0.0.1:${p.adminPort}`), name),
  };
}

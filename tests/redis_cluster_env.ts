/**
 * Where the Redis tests find Redis Cluster, and the Redis targets a test
 * file runs its Redis tests against: the single Redis of tests/redis_env.ts
 * and the 3-master cluster `scripts/services.sh up cluster` starts.
 *
 * `GOIM_TEST_REDIS_CLUSTER_NODES` (comma-separated `host:port`, default
 * `127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003`) is probed once: a seed
 * must answer `CLUSTER INFO` with `cluster_state:ok` within 1 s. The
 * skip-or-fail rule is tests/service_env.ts's, as for the single Redis.
 *
 * Keys: each test works under its own prefix ({@linkcode uniqueKeyPrefix});
 * on a cluster {@linkcode RedisTarget.deleteKeys} scans every master, since
 * a SCAN sees one node's keys only.
 *
 * @example
 * ```ts
 * import { RedisSessionStore } from "../infra/redis/sessions.ts";
 * for (const redis of await redisTargets()) {
 *   Deno.test({ name: `${redis.name}: x`, ignore: redis.ignore, fn: async () => {
 *     redis.assertReachable();
 *     const prefix = uniqueKeyPrefix();
 *     const store = await RedisSessionStore.connect(redis.options(prefix));
 *     try {
 *       // … the test, under prefix
 *     } finally {
 *       await store.close();
 *       await redis.deleteKeys(prefix);
 *     }
 *   }});
 * }
 * ```
 *
 * @module
 */

import { Cluster, Redis } from "ioredis";
import type { RedisConnectionOptions } from "../infra/redis/client.ts";
import { eventually } from "./eventually.ts";
import { freePort } from "./fixtures/ports.ts";
import { type ServiceTarget, serviceTarget } from "./service_env.ts";
import { countKeys, deleteKeys, onConnection, redisTestUrl, uniqueKeyPrefix } from "./redis_env.ts";

export { uniqueKeyPrefix };

/** Env var naming the cluster's seed nodes the tests use. */
export const REDIS_CLUSTER_ENV = "GOIM_TEST_REDIS_CLUSTER_NODES";
/** Used when {@linkcode REDIS_CLUSTER_ENV} is unset (scripts/services.sh's ports). */
export const DEFAULT_TEST_REDIS_CLUSTER_NODES = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

/** One Redis deployment the Redis tests run against. */
export interface RedisTarget extends ServiceTarget {
  /** `redis` or `redis cluster`: the prefix of test names. */
  name: string;
  /** The URL (for a cluster, only its scheme and credentials count). */
  url: string;
  /** Cluster seeds; [] for a single Redis. */
  clusterNodes: string[];
  /** Connection options for the engines, under `keyPrefix`. */
  options(keyPrefix?: string): RedisConnectionOptions;
  /** The `--set` pairs that point a role process at this Redis. */
  configSets(): string[];
  /** A plain ioredis client on it, for looking at keys directly; disconnect it after use. */
  raw(): Redis | Cluster;
  /** Deletes every key starting with `prefix` (every master's, on a cluster); how many. */
  deleteKeys(prefix: string): Promise<number>;
  /** Counts keys starting with `prefix` (every master's, on a cluster). */
  countKeys(prefix: string): Promise<number>;
}

let probed: Promise<RedisTarget> | undefined;

/** The test cluster, probed once per process. */
export function redisClusterTarget(): Promise<RedisTarget> {
  return probed ??= probeCluster();
}

/** The single test Redis and the test cluster, in that order. */
export async function redisTargets(): Promise<RedisTarget[]> {
  const single = await redisTestUrl();
  const one: RedisTarget = {
    ...single,
    name: "redis",
    clusterNodes: [],
    options: (keyPrefix) => ({ url: single.url, keyPrefix }),
    configSets: () => [`redis.url=${single.url}`],
    raw: () => new Redis(single.url),
    deleteKeys: (prefix) => deleteKeys(single.url, prefix),
    countKeys: (prefix) => countKeys(single.url, prefix),
  };
  return [one, await redisClusterTarget()];
}

function seedsFromEnv(): string[] {
  return (Deno.env.get(REDIS_CLUSTER_ENV) || DEFAULT_TEST_REDIS_CLUSTER_NODES)
    .split(",").map((s) => s.trim()).filter((s) => s !== "");
}

async function probeCluster(): Promise<RedisTarget> {
  const seeds = seedsFromEnv();
  const error = await clusterState(seeds, 1000);
  return {
    ...clusterTarget(seeds),
    ...serviceTarget({
      name: "Redis Cluster",
      where: seeds.join(","),
      service: "cluster",
      envVar: REDIS_CLUSTER_ENV,
      error,
    }),
  };
}

/**
 * The {@linkcode RedisTarget} of a cluster with these seeds, without a
 * probe (tests/redis_cluster_test.ts's own clusters are known to be up).
 */
export function clusterTarget(seeds: string[]): Omit<RedisTarget, keyof ServiceTarget> {
  // Only its scheme and credentials count in cluster mode; a seed makes it a valid redis.url.
  const url = `redis://${seeds[0]}`;
  const masters = async () => (await clusterMasters(seeds)).map((a) => `redis://${a}`);
  const sum = async (f: (url: string) => Promise<number>) =>
    (await Promise.all((await masters()).map(f))).reduce((a, b) => a + b, 0);
  return {
    name: "redis cluster",
    url,
    clusterNodes: seeds,
    options: (keyPrefix) => ({ url, clusterNodes: seeds, keyPrefix }),
    configSets: () => [`redis.url=${url}`, `redis.cluster.nodes=${seeds.join(",")}`],
    raw: () =>
      new Cluster(seeds.map((s) => {
        const [host, port] = s.split(":");
        return { host, port: Number(port) };
      })),
    deleteKeys: (prefix) => sum((u) => deleteKeys(u, prefix)),
    countKeys: (prefix) => sum((u) => countKeys(u, prefix)),
  };
}

/** Runs `f` on a short-lived plain connection to `host:port` (tests/redis_env.ts). */
function onNode<T>(addr: string, timeoutMs: number, f: (c: Redis) => Promise<T>): Promise<T> {
  return onConnection(`redis://${addr}`, timeoutMs, f);
}

/** undefined when a seed says `cluster_state:ok`, else why not (each seed's reason). */
export async function clusterState(
  seeds: string[],
  timeoutMs: number,
): Promise<string | undefined> {
  const why: string[] = [];
  for (const seed of seeds) {
    try {
      const info = await onNode(
        seed,
        timeoutMs,
        (c) => c.call("CLUSTER", "INFO") as Promise<string>,
      );
      if (/^cluster_state:ok\r?$/m.test(info)) return undefined;
      why.push(`${seed}: ${/^cluster_state:\w+/m.exec(info)?.[0] ?? "no cluster_state"}`);
    } catch (e) {
      why.push(`${seed}: ${(e as Error).message}`);
    }
  }
  return why.join("; ");
}

/** `host:port` of every master that is not failed, from the first seed that answers CLUSTER NODES. */
export async function clusterMasters(seeds: string[]): Promise<string[]> {
  let last: unknown;
  for (const seed of seeds) {
    try {
      const text = await onNode(seed, 1000, (c) => c.call("CLUSTER", "NODES") as Promise<string>);
      return text.split("\n").filter((l) => l.trim() !== "").flatMap((line) => {
        const [, addr, flags] = line.split(" ");
        const f = flags.split(",");
        return f.includes("master") && !f.some((x) => x.startsWith("fail"))
          ? [addr.replace(/@.*$/, "")]
          : [];
      });
    } catch (e) {
      last = e;
    }
  }
  throw new Error(`no seed of ${seeds.join(",")} answered CLUSTER NODES`, { cause: last });
}

/** A 3-master Redis Cluster of a test's own, which the test may kill nodes of and reshard. */
export interface OwnRedisCluster {
  /** `127.0.0.1:<port>` of the three masters; master `i` serves slot range `i` of three. */
  seeds: string[];
  /** The slots master `i` was given: [first, last]. */
  ranges: [number, number][];
  /** Runs `f` on a plain connection to master `i`. */
  node<T>(i: number, f: (c: Redis) => Promise<T>): Promise<T>;
  /** The hash slot of `key`. */
  slotOf(key: string): Promise<number>;
  /** The master (index) that was given `slot` at the start. */
  ownerOf(slot: number): number;
  /** Kills master `i` (SIGKILL, like a crash) and waits for it to exit. */
  kill(i: number): Promise<void>;
  /** Starts master `i` again on its port; it rejoins from its nodes.conf (its keys are gone). */
  restart(i: number): Promise<void>;
}

/** A loopback port that is free, with its cluster bus port (port + 10000) free too. */
function freeClusterPort(): number {
  return freePort((port) => {
    try {
      Deno.listen({ hostname: "127.0.0.1", port: port + 10000 }).close();
      return true;
    } catch {
      return false; // bus port taken: draw again
    }
  });
}

/**
 * Runs three throwaway `redis-server --cluster-enabled yes` masters (no
 * persistence, node timeout 1 s, `cluster-require-full-coverage no` so the
 * others keep serving while one is down), slots split in three, for tests
 * that kill or reshard nodes; stopped and deleted when `fn` settles.
 * Startup is bounded (10 s).
 */
export async function ownRedisCluster<T>(fn: (c: OwnRedisCluster) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "goim-cluster-" });
  const ports = [freeClusterPort(), freeClusterPort(), freeClusterPort()];
  const seeds = ports.map((p) => `127.0.0.1:${p}`);
  const ranges: [number, number][] = [[0, 5460], [5461, 10922], [10923, 16383]];
  const children: (Deno.ChildProcess | undefined)[] = [];
  const start = (i: number) => {
    children[i] = new Deno.Command("redis-server", {
      args: [
        "--port",
        String(ports[i]),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        `${dir}/nodes-${ports[i]}.conf`,
        "--cluster-node-timeout",
        "1000",
        "--cluster-require-full-coverage",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
  };
  const node = <R>(i: number, f: (c: Redis) => Promise<R>) => onNode(seeds[i], 1000, f);
  const waitFor = (what: string, ok: () => Promise<boolean>) =>
    eventually(() => ok().catch(() => false), `own cluster on ${seeds}: ${what}`, 10_000, 20);
  const allOk = () =>
    Promise.all(seeds.map((s) => clusterState([s], 500))).then((r) => r.every((e) => !e));
  const stop = async (i: number) => {
    const c = children[i];
    children[i] = undefined;
    if (!c) return;
    try {
      c.kill("SIGKILL");
    } catch { /* already gone */ }
    await c.status;
  };
  try {
    ports.forEach((_, i) => start(i));
    await waitFor("every node answers PING", async () => {
      for (let i = 0; i < 3; i++) await node(i, (c) => c.ping());
      return true;
    });
    for (let i = 0; i < 3; i++) {
      await node(i, (c) => c.call("CLUSTER", "ADDSLOTSRANGE", ranges[i][0], ranges[i][1]));
    }
    for (const p of ports.slice(1)) await node(0, (c) => c.call("CLUSTER", "MEET", "127.0.0.1", p));
    await waitFor("cluster_state:ok on every node", allOk);
    return await fn({
      seeds,
      ranges,
      node,
      slotOf: async (key) => Number(await node(0, (c) => c.call("CLUSTER", "KEYSLOT", key))),
      ownerOf: (slot) => ranges.findIndex(([a, b]) => slot >= a && slot <= b),
      kill: stop,
      async restart(i) {
        start(i);
        await waitFor(`node ${i} rejoined`, allOk);
      },
    });
  } finally {
    for (let i = 0; i < 3; i++) await stop(i);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

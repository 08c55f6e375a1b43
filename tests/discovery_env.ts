/**
 * Where the discovery tests find bilibili discovery, and what they do when
 * it is missing.
 *
 * `GOIM_TEST_DISCOVERY_NODES` (comma-separated `host:port`, default
 * `127.0.0.1:7171`, the server `scripts/services.sh up discovery` starts)
 * is probed once (`GET /discovery/nodes`, 1 s bound). Unreachable and
 * `CI=true`: discovery tests still run and fail with a message saying how
 * to start it. Unreachable otherwise: they are registered with
 * `ignore: true` and a note is printed.
 *
 * Tests share the one server: each works in a deploy env of its own
 * ({@linkcode uniqueEnv}; discovery keys instances by appid and env), so
 * parallel test files never see each other's instances.
 *
 * Tests that stop and restart discovery run a server of their own
 * ({@linkcode ownDiscoveryServer}) from the binary services.sh built.
 *
 * @example
 * ```ts
 * import { discoveryTestNodes, uniqueEnv } from "./discovery_env.ts";
 * const disc = await discoveryTestNodes();
 * Deno.test({ name: "discovery: x", ignore: disc.ignore, fn: () => {
 *   disc.assertReachable();
 *   const env = uniqueEnv(); // the test's instances live in this env
 *   console.log(env, disc.nodes);
 * }});
 * ```
 *
 * @module
 */

import { freePort } from "./e2e/cluster.ts";
import { type ServiceTarget, serviceTarget } from "./service_env.ts";

/** Env var naming the discovery nodes the tests use. */
export const DISCOVERY_NODES_ENV = "GOIM_TEST_DISCOVERY_NODES";
/** Used when {@linkcode DISCOVERY_NODES_ENV} is unset. */
export const DEFAULT_TEST_DISCOVERY_NODES = "127.0.0.1:7171";
/** The discovery binary `scripts/services.sh up discovery` builds. */
export const DISCOVERY_BINARY = new URL("../.services/discovery/bin/discovery", import.meta.url)
  .pathname;

/** The outcome of probing the test discovery. */
export interface DiscoveryTestTarget extends ServiceTarget {
  /** The nodes probed (and to use). */
  nodes: string[];
}

let probed: Promise<DiscoveryTestTarget> | undefined;

/** Probes the test discovery once per process and tells how to register discovery tests. */
export function discoveryTestNodes(): Promise<DiscoveryTestTarget> {
  return probed ??= probe();
}

async function probe(): Promise<DiscoveryTestTarget> {
  const nodes = (Deno.env.get(DISCOVERY_NODES_ENV) || DEFAULT_TEST_DISCOVERY_NODES)
    .split(",").map((s) => s.trim()).filter((s) => s !== "");
  const error = await ping(nodes[0] ?? "", 1000);
  return {
    nodes,
    ...serviceTarget({
      name: "discovery",
      where: nodes.join(","),
      service: "discovery",
      envVar: DISCOVERY_NODES_ENV,
      error,
    }),
  };
}

/** GETs `/discovery/nodes` of `node` within `timeoutMs`; undefined when it answers code 0, else why not. */
export async function ping(node: string, timeoutMs: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://${node}/discovery/nodes`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await res.json();
    return res.status === 200 && body?.code === 0
      ? undefined
      : `HTTP ${res.status}, code ${body?.code}`;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** A fresh deploy env, e.g. `goimtest-3f9a1c2b`: the test's own namespace in discovery. */
export function uniqueEnv(): string {
  return `goimtest-${crypto.randomUUID().slice(0, 8)}`;
}

/** A discovery server of a test's own, which it may stop and restart (state is lost, as on a real restart). */
export interface OwnDiscoveryServer {
  /** `127.0.0.1:<port>`. */
  node: string;
  /** Starts it (again) on the same port; resolves once it answers. */
  start(): Promise<void>;
  /** Kills it (SIGKILL, like a crash) and waits for the process to exit. */
  stop(): Promise<void>;
}

/**
 * Runs a throwaway discovery server on a free loopback port (the binary of
 * {@linkcode DISCOVERY_BINARY}); stopped and its folder removed when `fn`
 * settles.
 */
export async function ownDiscoveryServer<T>(
  fn: (srv: OwnDiscoveryServer) => Promise<T>,
): Promise<T> {
  const port = freePort();
  const node = `127.0.0.1:${port}`;
  const dir = await Deno.makeTempDir({ prefix: "goim-discovery-" });
  const conf = `${dir}/discovery.toml`;
  await Deno.writeTextFile(
    conf,
    `nodes = ["${node}"]\n[env]\nregion = "sh"\nzone = "sh001"\nhost = "test-${port}"\n` +
      `DeployEnv = "dev"\n[httpServer]\naddr = "${node}"\n[httpClient]\ndial = "1s"\n` +
      `keepAlive = "120s"\n`,
  );
  let child: Deno.ChildProcess | undefined;
  const srv: OwnDiscoveryServer = {
    node,
    async start() {
      child = new Deno.Command(DISCOVERY_BINARY, {
        args: ["-conf", conf, "-logtostderr=true"],
        cwd: dir,
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      const deadline = Date.now() + 10_000;
      while ((await ping(node, 200)) !== undefined) {
        if (Date.now() > deadline) throw new Error(`own discovery on ${port} did not start`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (!child) return;
      const c = child;
      child = undefined;
      try {
        c.kill("SIGKILL");
      } catch { /* already gone */ }
      await c.status;
    },
  };
  try {
    await srv.start();
    return await fn(srv);
  } finally {
    await srv.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * The discovery registry engine against the real bilibili discovery v1.0.1:
 * the shared registry suite, goim's view of our comets and logics (readers
 * written the way goim's job, logic and comet read discovery), goim's
 * comets in our view, renewals, a discovery that goes down and comes back,
 * and the Redis + discovery composite.
 */

import assert from "node:assert/strict";
import { DiscoveryClient, type Instance } from "../infra/discovery/client.ts";
import {
  canRegisterLogic,
  COMET_APPID,
  CompositeRegistry,
  DiscoveryRegistry,
  type DiscoveryRegistryOptions,
  LOGIC_APPID,
} from "../infra/discovery/registry.ts";
import { createLogger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { RedisRegistry } from "../infra/redis/registry.ts";
import { comet, registrySuite } from "./engine_suites/registry_suite.ts";
import { sleep } from "./engine_suites/harness.ts";
import { eventually } from "./eventually.ts";
import {
  DISCOVERY_BINARY,
  discoveryTestNodes,
  ownDiscoveryServer,
  uniqueEnv,
} from "./discovery_env.ts";
import { deleteKeys, redisTestUrl, uniqueKeyPrefix } from "./redis_env.ts";

const disc = await discoveryTestNodes();
const redis = await redisTestUrl();
const haveBinary = await Deno.stat(DISCOVERY_BINARY).then(() => true, () => false);
const ZONE = "sh001";

function newClient(env: string, nodes = disc.nodes, zone = ZONE) {
  return new DiscoveryClient({ nodes, env, zone, region: "sh", hostname: "test" });
}

function newRegistry(
  env: string,
  over: Partial<DiscoveryRegistryOptions> & { nodes?: string[] } = {},
): DiscoveryRegistry {
  const { nodes, ...rest } = over;
  return new DiscoveryRegistry({ client: newClient(env, nodes), ...rest });
}

/** Cancels whatever the test left in its env (discovery would evict it only after 90 s or more). */
async function sweepEnv(env: string, nodes = disc.nodes): Promise<void> {
  const c = newClient(env, nodes);
  try {
    for (const appid of [COMET_APPID, LOGIC_APPID]) {
      const info = await c.fetch(appid, { status: 3 }).catch(() => null);
      for (const [zone, list] of info?.instances ?? []) {
        const z = newClient(env, nodes, zone);
        for (const ins of list) await z.cancel(appid, ins.hostname).catch(() => {});
        z.close();
      }
    }
  } finally {
    c.close();
  }
}

/** Lines a test logger wrote, parsed. */
function captureLog() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: "debug", writer: (l) => lines.push(JSON.parse(l)) });
  return { log, lines, has: (msg: RegExp) => lines.some((l) => msg.test(String(l.msg))) };
}

registrySuite("discovery", () => {
  disc.assertReachable();
  const env = uniqueEnv();
  // No region: a record read back is the record registered with the client's zone.
  const registry = new DiscoveryRegistry({
    client: new DiscoveryClient({ nodes: disc.nodes, env, zone: ZONE }),
  });
  return Promise.resolve({
    registry,
    location: { region: "", zone: ZONE },
    cleanup: async () => {
      await registry.close();
      await sweepEnv(env);
    },
  });
}, { ignore: disc.ignore });

function test(name: string, fn: (env: string) => Promise<void>, opts: { ignore?: boolean } = {}) {
  Deno.test({
    name: `discovery registry: ${name}`,
    ignore: disc.ignore || (opts.ignore ?? false),
    fn: async () => {
      disc.assertReachable();
      const env = uniqueEnv();
      try {
        await fn(env);
      } finally {
        await sweepEnv(env);
      }
    },
  });
}

// ---- goim's readers, written after goim's Go code (naming/client.go polls, job/job.go
// newAddress, job/comet.go NewComet, logic/logic.go newNodes, logic/balancer.go Update).

interface GoimInstance {
  region: string;
  zone: string;
  hostname: string;
  addrs: string[];
  metadata: Record<string, string> | null;
}

/** What the Go naming client gets for `appid`: the first polls answer (latest_timestamp 0). */
async function goimPoll(env: string, appid: string): Promise<Record<string, GoimInstance[]>> {
  const q = new URLSearchParams({ env, hostname: "goim-job", appid, latest_timestamp: "0" });
  const res = await fetch(`http://${disc.nodes[0]}/discovery/polls?${q}`);
  const body = await res.json();
  assert.equal(body.code, 0, JSON.stringify(body));
  return body.data[appid].instances;
}

/** goim job: the instances of its own zone, each dialled at its (last) grpc:// address. */
function goimJobComets(insMap: Record<string, GoimInstance[]>, zone: string) {
  const comets = new Map<string, string>();
  for (const ins of insMap[zone] ?? []) {
    let grpcAddr = "";
    for (const a of ins.addrs) {
      try {
        const u = new URL(a);
        if (u.protocol === "grpc:") grpcAddr = u.host;
      } catch { /* url.Parse error: skipped */ }
    }
    if (grpcAddr === "") throw new Error(`invalid grpc address:${ins.addrs}`);
    comets.set(ins.hostname, grpcAddr);
  }
  return comets;
}

// Go strconv.ParseInt(s, 10, 32) and ParseBool, failing like Go does.
const parseInt32 = (s: string | undefined) => {
  if (s === undefined || !/^[+-]?\d+$/.test(s)) throw new Error(`ParseInt: "${s}"`);
  return Number(s);
};
const parseBool = (s: string | undefined) => {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(s ?? "")) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(s ?? "")) return false;
  throw new Error(`ParseBool: "${s}"`);
};

/** goim logic newNodes + LoadBalancer.Update: the nodes it offers, with their load. */
function goimLogicNodes(insMap: Record<string, GoimInstance[]>) {
  const nodes: {
    hostname: string;
    region: string;
    weight: number;
    conns: number;
    ips: number;
    addrs: string[];
  }[] = [];
  for (const zins of Object.values(insMap)) {
    for (const ins of zins) {
      const md = ins.metadata;
      if (md === null) continue;
      if (parseBool(md.offline)) continue;
      nodes.push({
        hostname: ins.hostname,
        region: ins.region,
        weight: parseInt32(md.weight),
        conns: parseInt32(md.conn_count),
        ips: parseInt32(md.ip_count),
        addrs: md.addrs.split(","),
      });
    }
  }
  return nodes;
}

test("goim's job and logic find our comet as they find their own", async (env) => {
  const registry = newRegistry(env);
  try {
    await registry.register(
      comet("comet-a", {
        grpcAddr: "10.0.0.5:3109",
        addrs: ["203.0.113.5", "comet-a.example"],
        weight: 7,
        connections: 12,
        ips: 3,
      }),
      30_000,
    );
    const insMap = await goimPoll(env, COMET_APPID);
    assert.deepEqual(Object.keys(insMap), [ZONE]);
    assert.deepEqual([...goimJobComets(insMap, ZONE)], [["comet-a", "10.0.0.5:3109"]]);
    assert.deepEqual(goimLogicNodes(insMap), [{
      hostname: "comet-a",
      region: "sh",
      weight: 7,
      conns: 12,
      ips: 3,
      addrs: ["203.0.113.5", "comet-a.example"],
    }]);
    // New counts reach goim's readers with the next registration (discovery set).
    await registry.register(
      comet("comet-a", { grpcAddr: "10.0.0.5:3109", connections: 40 }),
      30_000,
    );
    assert.equal(goimLogicNodes(await goimPoll(env, COMET_APPID))[0].conns, 40);
    // The gRPC address moved: registered again, job dials the new one.
    await registry.register(comet("comet-a", { grpcAddr: "10.0.0.6:3109" }), 30_000);
    assert.deepEqual(
      [...goimJobComets(await goimPoll(env, COMET_APPID), ZONE)],
      [["comet-a", "10.0.0.6:3109"]],
    );
  } finally {
    await registry.close();
  }
});

test("goim's comets, registered the way goim registers them, are listed for our job and logic", async (env) => {
  const { log, lines } = captureLog();
  const registry = newRegistry(env, { log });
  const goim = newClient(env, disc.nodes, "sh002");
  try {
    // cmd/comet/main.go: weight, offline, addrs; conn_count and ip_count follow with set.
    await goim.register({
      appid: COMET_APPID,
      hostname: "goim-comet-1",
      addrs: ["grpc://10.1.0.1:3109"],
      metadata: { weight: "10", offline: "false", addrs: "198.51.100.1,198.51.100.2" },
    });
    await goim.set(COMET_APPID, "goim-comet-1", { conn_count: "5", ip_count: "2" });
    await goim.register({
      appid: COMET_APPID,
      hostname: "goim-comet-offline",
      addrs: ["grpc://10.1.0.2:3109"],
      metadata: { weight: "10", offline: "true", addrs: "" },
    });
    await goim.register({
      appid: COMET_APPID,
      hostname: "no-grpc",
      addrs: ["http://10.1.0.3:80"],
      metadata: {},
    });
    await registry.register(comet("ours", { grpcAddr: "10.0.0.5:3109" }), 30_000);
    const got = await registry.list();
    assert.deepEqual(got.map((c) => c.id), ["goim-comet-1", "goim-comet-offline", "ours"]);
    const [g1, off] = got;
    assert.deepEqual({ ...g1, updated: 0 }, {
      id: "goim-comet-1",
      grpcAddr: "10.1.0.1:3109",
      addrs: ["198.51.100.1", "198.51.100.2"],
      tcpPort: 0,
      wsPort: 0,
      wssPort: 0,
      weight: 10,
      connections: 5,
      ips: 2,
      updated: 0,
      region: "sh",
      zone: "sh002",
    });
    assert.ok(g1.updated > Date.now() - 60_000 && g1.updated <= Date.now() + 1000);
    // Offline: still delivered to by job, never offered to clients.
    assert.equal(off.weight, 0);
    assert.ok(
      lines.some((l) =>
        /left out/.test(String(l.msg)) && JSON.stringify(l.reasons).includes("no-grpc")
      ),
      JSON.stringify(lines),
    );
  } finally {
    goim.close();
    await registry.close();
  }
});

test("a comet's region and zone are the client's; a record naming others is refused", async (env) => {
  const registry = newRegistry(env);
  try {
    await registry.register(comet("c1", { region: "sh", zone: ZONE }), 30_000);
    const [got] = await registry.list();
    assert.deepEqual([got.region, got.zone], ["sh", ZONE]);
    await assert.rejects(
      () => registry.register(comet("c2", { region: "bj" }), 30_000),
      (e: Error) =>
        e instanceof RangeError && /region "bj" differs .* "sh" \(node\.region\)/.test(e.message),
    );
    await assert.rejects(
      () => registry.register(comet("c2", { zone: "bj001" }), 30_000),
      RangeError,
    );
    assert.deepEqual((await registry.list()).map((c) => c.id), ["c1"]);
  } finally {
    await registry.close();
  }
});

test("a logic registers as goim.logic where goim's comet resolver finds it", async (env) => {
  const registry = newRegistry(env);
  try {
    assert.ok(canRegisterLogic(registry));
    assert.ok(!canRegisterLogic(new MemoryRegistry()));
    const reg = await registry.registerLogic({ id: "logic-1", grpcAddr: "10.0.0.2:3119" });
    // naming/grpc/resolver.go: the instances of $ZONE (else all), the grpc:// address, weight.
    const insMap = await goimPoll(env, LOGIC_APPID);
    const ins = insMap[ZONE];
    assert.equal(ins.length, 1);
    assert.equal(ins[0].hostname, "logic-1");
    assert.equal(new URL(ins[0].addrs.find((a) => a.startsWith("grpc:"))!).host, "10.0.0.2:3119");
    assert.equal(ins[0].metadata?.weight, "10");
    await reg.cancel();
    const c = newClient(env);
    assert.equal(await c.fetch(LOGIC_APPID), null);
    c.close();
  } finally {
    await registry.close();
  }
});

test("renewals run every interval and stop when the registry is closed without deregistering", async (env) => {
  // The real period is 30 s (goim's _registerGap); 150 ms here.
  const registry = newRegistry(env, { renewIntervalMs: 150 });
  const reader = newClient(env);
  const renewed = async () => {
    const info = await reader.fetch(COMET_APPID);
    return (info?.instances.get(ZONE) ?? []).find((i: Instance) => i.hostname === "c1")
      ?.renewTimestamp;
  };
  try {
    await registry.register(comet("c1"), 60_000);
    const first = await renewed();
    assert.ok(first);
    let second: bigint | undefined;
    await eventually(async () => (second = await renewed())! > first, "a renewal", 5000);
    await eventually(async () => (await renewed())! > second!, "another renewal", 5000);
    // A process that stops (here: closes without deregister) stops renewing. discovery then
    // evicts the instance 90 s after its last renewal, checked once a minute: 90-150 s (more
    // while its self-preservation holds). Not waited for here.
    await registry.close();
    const last = await renewed();
    await sleep(600); // four renew periods pass without a renewal
    assert.equal(await renewed(), last);
  } finally {
    reader.close();
    await registry.close();
  }
});

test(
  "discovery down: calls fail cleanly, renewals retry, and everything is back after a restart",
  async () => {
    await ownDiscoveryServer(async (srv) => {
      const env = uniqueEnv();
      const { log, has } = captureLog();
      const registry = newRegistry(env, {
        nodes: [srv.node],
        log,
        renewIntervalMs: 100,
        retryBaseMs: 50,
        retryMaxMs: 200,
      });
      const reader = newClient(env, [srv.node]);
      const present = async (appid: string, id: string) =>
        [...((await reader.fetch(appid).catch(() => null))?.instances.values() ?? [])].flat()
          .some((i) => i.hostname === id);
      try {
        await registry.register(comet("c1", { connections: 1 }), 60_000);
        const logic = await registry.registerLogic({ id: "logic-1", grpcAddr: "127.0.0.1:3119" });
        assert.ok(await present(LOGIC_APPID, "logic-1"));
        await srv.stop();
        // The comet's next registration (new counts) fails with a clear error; it retries itself.
        await assert.rejects(
          () => registry.register(comet("c1", { connections: 2 }), 60_000),
          /failed on every node/,
        );
        await assert.rejects(() => registry.list(), /failed on every node/);
        await eventually(() => has(/discovery renew failed/), "a logged renew failure", 5000);
        // A restarted discovery has forgotten everything: renew answers -404, both register again.
        await srv.start();
        await eventually(() => present(LOGIC_APPID, "logic-1"), "logic registered again", 5000);
        await eventually(() => present(COMET_APPID, "c1"), "comet registered again", 5000);
        await registry.register(comet("c1", { connections: 3 }), 60_000);
        assert.equal((await registry.list())[0].connections, 3);
        await logic.cancel();
        assert.ok(!(await present(LOGIC_APPID, "logic-1")));
      } finally {
        reader.close();
        await registry.close();
      }
    });
  },
  { ignore: !haveBinary && Deno.env.get("CI") !== "true" },
);

test("registry.engine redis + discovery.register: both written, Redis read", async (env) => {
  redis.assertReachable();
  const keyPrefix = uniqueKeyPrefix();
  const primary = await RedisRegistry.connect({ url: redis.url, keyPrefix });
  const discovery = newRegistry(env);
  const both = new CompositeRegistry(primary, discovery);
  try {
    assert.ok(canRegisterLogic(both));
    await both.register(comet("c1"), 30_000);
    assert.deepEqual((await primary.list()).map((c) => c.id), ["c1"]);
    assert.deepEqual((await discovery.list()).map((c) => c.id), ["c1"]);
    // Reads come from Redis only: an instance only discovery has is not listed.
    const goim = newClient(env);
    await goim.register({
      appid: COMET_APPID,
      hostname: "goim-1",
      addrs: ["grpc://10.1.0.1:3109"],
    });
    goim.close();
    assert.deepEqual((await both.list()).map((c) => c.id), ["c1"]);
    const reg = await both.registerLogic({ id: "logic-1", grpcAddr: "10.0.0.2:3119" });
    assert.deepEqual([...goimJobComets(await goimPoll(env, LOGIC_APPID), ZONE)], [[
      "logic-1",
      "10.0.0.2:3119",
    ]]);
    await reg.cancel();
    await both.deregister("c1");
    assert.deepEqual(await primary.list(), []);
    assert.deepEqual((await discovery.list()).map((c) => c.id), ["goim-1"]);
  } finally {
    await both.close();
    await deleteKeys(redis.url, keyPrefix);
  }
}, { ignore: redis.ignore });

test(
  "composite: discovery unreachable fails the call by name, Redis still has the record",
  async (env) => {
    redis.assertReachable();
    const keyPrefix = uniqueKeyPrefix();
    const primary = await RedisRegistry.connect({ url: redis.url, keyPrefix });
    const dead = newRegistry(env, { nodes: ["127.0.0.1:1"] });
    const both = new CompositeRegistry(primary, dead);
    try {
      await assert.rejects(
        () => both.register(comet("c1"), 30_000),
        (e) => e instanceof Error && /^registry register failed \(discovery: /.test(e.message),
      );
      assert.deepEqual((await both.list()).map((c) => c.id), ["c1"]);
    } finally {
      await both.close();
      await deleteKeys(redis.url, keyPrefix);
    }
  },
  { ignore: redis.ignore },
);

Deno.test("discovery registry: a hostile discovery's answers are errors and warnings, never a crash", async () => {
  let renews = 0;
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    (req) => {
      const path = new URL(req.url).pathname;
      if (path.endsWith("/register")) return new Response('{"code":0,"data":null}');
      if (path.endsWith("/renew")) {
        return renews++ % 2 ? new Response("<html>") : new Response("{}");
      }
      if (path.endsWith("/cancel")) return new Response("nope", { status: 502 });
      return new Response(JSON.stringify({
        code: 0,
        data: {
          latest_timestamp: 1,
          instances: {
            z: [
              {
                hostname: "odd",
                addrs: ["grpc://10.0.0.1:3109"],
                metadata: { weight: "1e309", conn_count: "-5" },
              },
              { hostname: "no-port", addrs: ["grpc://10.0.0.2"] },
              { hostname: 5 },
            ],
          },
        },
      }));
    },
  );
  const { log, has } = captureLog();
  const registry = new DiscoveryRegistry({
    client: new DiscoveryClient({ nodes: [`127.0.0.1:${server.addr.port}`], env: "dev" }),
    log,
    renewIntervalMs: 20,
    retryBaseMs: 10,
    retryMaxMs: 40,
  });
  try {
    await registry.register(comet("c1"), 200);
    const [odd, ...rest] = await registry.list();
    assert.equal(rest.length, 0);
    assert.deepEqual([odd.id, odd.weight, odd.connections], ["odd", 0, 0]);
    assert.ok(has(/left out/));
    await eventually(() => has(/discovery renew failed/), "renew failures logged", 5000);
    // The ttl runs out: the cancel fails (HTTP 502) and is logged, nothing throws.
    await eventually(() => has(/discovery cancel failed/), "the failed cancel logged", 5000);
    await assert.rejects(() => registry.deregister("c1"), /HTTP 502/);
  } finally {
    await registry.close();
    ac.abort();
    await server.finished;
  }
});

/**
 * The discovery client against the real bilibili discovery v1.0.1
 * (scripts/services.sh up discovery): each call's parameters and answers,
 * long polls, node failover; and against fake servers for the answers a
 * real one never gives (oversized, not JSON, hanging, malformed
 * instances), which must fail cleanly.
 */

import assert from "node:assert/strict";
import {
  DiscoveryClient,
  DiscoveryError,
  ECODE,
  parseInstancesInfo,
} from "../infra/discovery/client.ts";
import { freePort } from "./e2e/cluster.ts";
import { discoveryTestNodes, uniqueEnv } from "./discovery_env.ts";

const disc = await discoveryTestNodes();

function test(name: string, fn: (env: string) => Promise<void>) {
  Deno.test({
    name: `discovery client: ${name}`,
    ignore: disc.ignore,
    fn: async () => {
      disc.assertReachable();
      await fn(uniqueEnv());
    },
  });
}

function client(env: string, over: Partial<ConstructorParameters<typeof DiscoveryClient>[0]> = {}) {
  return new DiscoveryClient({ nodes: disc.nodes, env, zone: "z1", region: "r1", ...over });
}

test("register, fetch, renew, set, cancel: the round trip", async (env) => {
  const c = client(env);
  try {
    assert.equal(await c.fetch("goim.comet"), null, "nothing registered yet: -404 is null");
    await c.register({
      appid: "goim.comet",
      hostname: "c1",
      addrs: ["grpc://10.0.0.1:3109", "http://10.0.0.1:3190"],
      metadata: { weight: "10", offline: "false" },
      version: "v1",
    });
    const info = await c.fetch("goim.comet");
    assert.ok(info);
    assert.deepEqual([...info.instances.keys()], ["z1"]);
    const [ins] = info.instances.get("z1")!;
    assert.equal(ins.hostname, "c1");
    assert.equal(ins.region, "r1");
    assert.equal(ins.env, env);
    assert.deepEqual(ins.addrs, ["grpc://10.0.0.1:3109", "http://10.0.0.1:3190"]);
    assert.deepEqual({ ...ins.metadata }, { weight: "10", offline: "false" });
    assert.equal(ins.version, "v1");
    assert.equal(ins.status, 1);
    // Go UnixNano, read exactly: beyond 2^53, so a number would have lost digits.
    assert.equal(typeof ins.regTimestamp, "bigint");
    assert.ok(ins.regTimestamp > 2n ** 53n, String(ins.regTimestamp));
    const renewedBefore = ins.renewTimestamp;
    await c.renew("goim.comet", "c1");
    await c.set("goim.comet", "c1", { conn_count: "7" });
    const [after] = (await c.fetch("goim.comet", { zone: "z1" }))!.instances.get("z1")!;
    assert.ok(after.renewTimestamp > renewedBefore);
    // set merges keys into the metadata, as discovery's App.Set unmarshals into the map.
    assert.deepEqual({ ...after.metadata }, { weight: "10", offline: "false", conn_count: "7" });
    // A zone with no instance of the appid is "nothing found" too.
    assert.equal(await c.fetch("goim.comet", { zone: "other" }), null);
    await c.cancel("goim.comet", "c1");
    assert.equal(await c.fetch("goim.comet"), null);
    await assert.rejects(
      () => c.renew("goim.comet", "c1"),
      (e) => e instanceof DiscoveryError && e.code === ECODE.NOTHING_FOUND,
    );
    await assert.rejects(
      () => c.cancel("goim.comet", "c1"),
      (e) => e instanceof DiscoveryError && e.code === ECODE.NOTHING_FOUND,
    );
  } finally {
    c.close();
  }
});

test("a long poll returns when another client registers; the timestamp goes back exactly", async (env) => {
  const a = client(env, { hostname: "poller" });
  const b = client(env);
  try {
    await b.register({ appid: "goim.comet", hostname: "c1", addrs: ["grpc://10.0.0.1:3109"] });
    const first = await a.polls([{ appid: "goim.comet", latestTimestamp: 0n }]);
    assert.ok(first);
    const info = first.get("goim.comet");
    assert.ok(info && info.latestTimestamp > 0n);
    assert.deepEqual(info.instances.get("z1")!.map((i) => i.hostname), ["c1"]);
    // Waiting from that timestamp: the server holds the poll until something changes (or
    // answers at once if the register below overtook the poll: the same answer either way).
    const waiting = a.polls([{ appid: "goim.comet", latestTimestamp: info.latestTimestamp }]);
    await b.register({ appid: "goim.comet", hostname: "c2", addrs: ["grpc://10.0.0.2:3109"] });
    const changed = await waiting;
    assert.ok(changed);
    assert.deepEqual(
      changed.get("goim.comet")!.instances.get("z1")!.map((i) => i.hostname).sort(),
      ["c1", "c2"],
    );
    // An appid nobody registered: -404 at once (the Go client retries a second later).
    await assert.rejects(
      () => a.polls([{ appid: "goim.nobody", latestTimestamp: 0n }]),
      (e) => e instanceof DiscoveryError && e.code === ECODE.NOTHING_FOUND,
    );
    // Aborting a held poll.
    const ac = new AbortController();
    const held = a.polls([{
      appid: "goim.comet",
      latestTimestamp: info.latestTimestamp + 10n ** 15n,
    }], {
      signal: ac.signal,
    });
    ac.abort();
    await assert.rejects(held, /aborted/);
  } finally {
    for (const name of ["c1", "c2"]) await b.cancel("goim.comet", name).catch(() => {});
    a.close();
    b.close();
  }
});

test("nodes lists the server", async (env) => {
  const c = client(env);
  try {
    const nodes = await c.nodes();
    assert.ok(nodes.some((n) => n.addr === disc.nodes[0]), JSON.stringify(nodes));
  } finally {
    c.close();
  }
});

test("failover: a dead node is skipped and the live one becomes current", async (env) => {
  const dead = `127.0.0.1:${freePort()}`;
  const c = client(env, { nodes: [dead, disc.nodes[0]], random: () => 0 });
  try {
    assert.equal(c.currentNode, dead);
    assert.equal(await c.fetch("goim.comet"), null);
    assert.equal(c.currentNode, disc.nodes[0]);
  } finally {
    c.close();
  }
});

test("register and set send what the server requires; a bad answer code is a DiscoveryError", async (env) => {
  const c = client(env);
  try {
    // set on an instance the server does not know answers -400 (discovery's Set).
    await assert.rejects(
      () => c.set("goim.comet", "nobody", { a: "1" }),
      (e) =>
        e instanceof DiscoveryError && e.code === ECODE.PARAMS_ERR &&
        /set goim.comet\/nobody/.test(e.message),
    );
    await assert.rejects(
      () => c.register({ appid: "goim.comet", hostname: "x", addrs: [] }),
      RangeError,
    );
  } finally {
    c.close();
  }
});

// ---- answers a real discovery never gives

/** A fake discovery node answering every request with `answer`. */
async function withFake(
  answer: (req: Request) => Response | Promise<Response>,
  fn: (node: string) => Promise<void>,
): Promise<void> {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    answer,
  );
  try {
    await fn(`127.0.0.1:${server.addr.port}`);
  } finally {
    ac.abort();
    await server.finished;
  }
}

Deno.test("discovery client: an oversized answer is cut off and refused", async () => {
  const big = "x".repeat(64 * 1024);
  await withFake(() => new Response(`{"code":0,"data":"${big}"}`), async (node) => {
    const c = new DiscoveryClient({ nodes: [node], env: "dev", maxResponseBytes: 16 * 1024 });
    try {
      await assert.rejects(() => c.nodes(), /over the 16384-byte limit/);
    } finally {
      c.close();
    }
  });
  // Without a content-length: streamed, refused once the limit is crossed.
  await withFake(() =>
    new Response(
      new ReadableStream({
        pull(ctl) {
          ctl.enqueue(new TextEncoder().encode(big));
        },
      }),
    ), async (node) => {
    const c = new DiscoveryClient({ nodes: [node], env: "dev", maxResponseBytes: 16 * 1024 });
    try {
      await assert.rejects(() => c.nodes(), /over the 16384-byte limit/);
    } finally {
      c.close();
    }
  });
});

Deno.test("discovery client: not JSON, no code, HTTP 500, a hang: each a clear error", async () => {
  const cases: [string, (req: Request) => Response | Promise<Response>, RegExp][] = [
    ["not JSON", () => new Response("<html>"), /not JSON/],
    ["no code", () => new Response('{"data":[]}'), /no integer code/],
    ["HTTP 500", () => new Response("oops", { status: 500 }), /HTTP 500/],
    [
      "hang",
      (req) =>
        new Promise<Response>((resolve) =>
          req.signal.addEventListener("abort", () => resolve(new Response("")))
        ),
      /no answer within 200 ms/,
    ],
  ];
  for (const [what, answer, pattern] of cases) {
    await withFake(answer, async (node) => {
      const c = new DiscoveryClient({ nodes: [node], env: "dev", requestTimeoutMs: 200 });
      try {
        await assert.rejects(
          () => c.fetch("goim.comet"),
          (e) => e instanceof DiscoveryError && pattern.test(e.message) && e.code === undefined,
          what,
        );
      } finally {
        c.close();
      }
    });
  }
});

Deno.test("discovery client: every node down fails within the timeouts, naming each", async () => {
  const nodes = [`127.0.0.1:${freePort()}`, `127.0.0.1:${freePort()}`];
  const c = new DiscoveryClient({ nodes, env: "dev", requestTimeoutMs: 500 });
  try {
    const t0 = performance.now();
    await assert.rejects(
      () => c.register({ appid: "goim.comet", hostname: "h", addrs: ["grpc://1.2.3.4:1"] }),
      (e) => e instanceof DiscoveryError && nodes.every((n) => e.message.includes(n)),
    );
    assert.ok(performance.now() - t0 < 2000);
  } finally {
    c.close();
  }
});

Deno.test("discovery client: malformed instances are left out with a reason, the rest kept", () => {
  const info = parseInstancesInfo({
    latest_timestamp: 1796118325051722630n,
    instances: {
      z1: [
        { hostname: "ok", addrs: ["grpc://1.2.3.4:5"], metadata: { weight: "10" }, status: 1 },
        { hostname: "", addrs: [] },
        { hostname: "bad-md", metadata: { weight: 10 } },
        { hostname: "bad-addrs", addrs: "grpc://x" },
        { hostname: "x".repeat(2000) },
        "junk",
      ],
      z2: null,
    },
  });
  assert.deepEqual(info.instances.get("z1")!.map((i) => i.hostname), ["ok"]);
  assert.equal(info.invalid.length, 5);
  assert.match(info.invalid.join("\n"), /hostname is empty/);
  assert.match(info.invalid.join("\n"), /metadata "weight" is not a string/);
  assert.throws(() => parseInstancesInfo({ instances: [] }), DiscoveryError);
  assert.throws(() => parseInstancesInfo({ instances: { z: "x" } }), DiscoveryError);
  assert.throws(() => parseInstancesInfo("x"), DiscoveryError);
});

Deno.test("discovery client: a fake answer's timestamps are read exactly and polls send them back", async () => {
  const ts = "1796118325051722631";
  let seen = "";
  await withFake((req) => {
    seen = new URL(req.url).searchParams.get("latest_timestamp") ?? "";
    return new Response(
      `{"code":0,"data":{"goim.comet":{"instances":{"z":[]},"latest_timestamp":${ts}}}}`,
    );
  }, async (node) => {
    const c = new DiscoveryClient({ nodes: [node], env: "dev", hostname: "me" });
    try {
      const got = await c.polls([{ appid: "goim.comet", latestTimestamp: 0n }]);
      const latest = got!.get("goim.comet")!.latestTimestamp;
      assert.equal(latest, BigInt(ts));
      await c.polls([{ appid: "goim.comet", latestTimestamp: latest }]);
      assert.equal(seen, ts);
    } finally {
      c.close();
    }
  });
});

Deno.test("discovery client: calls after close() reject; options are checked", async () => {
  const c = new DiscoveryClient({ nodes: ["127.0.0.1:1"], env: "dev" });
  c.close();
  c.close();
  await assert.rejects(() => c.fetch("goim.comet"), /closed/);
  assert.throws(() => new DiscoveryClient({ nodes: [], env: "dev" }), RangeError);
  assert.throws(() => new DiscoveryClient({ nodes: ["http://x:1"], env: "dev" }), RangeError);
  assert.throws(
    () => new DiscoveryClient({ nodes: ["x:1"], env: "dev", requestTimeoutMs: 0 }),
    RangeError,
  );
});

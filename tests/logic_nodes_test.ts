// The node balancer: weights, loads, region preference, flap protection.
import assert from "node:assert/strict";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { HYSTERESIS_CONNS, MAX_NODES, NodeBalancer, NODES_REFRESH_MS } from "../logic/nodes.ts";
import { comet, FakeClock, testConfig } from "./fixtures/logic_fixtures.ts";

function setup(...sets: string[]) {
  const clock = new FakeClock();
  const registry = new MemoryRegistry({ now: clock.now });
  const balancer = new NodeBalancer({
    registry,
    config: testConfig("logic.nodes.host_domain=.im.test", ...sets),
    now: clock.now,
  });
  const order = async () =>
    (await balancer.weighted("web")).nodes.map((n) => n.replace(".im.test", ""));
  /** Registers records and lets the balancer's cache expire so that it sees them. */
  const update = async (...records: Parameters<typeof comet>[]) => {
    clock.advance(NODES_REFRESH_MS);
    for (const [id, fields] of records) await registry.register(comet(id, fields), 60_000);
  };
  return { clock, registry, balancer, order, update };
}

Deno.test("ranks by load per weight, returns at most five, skips unoffered comets", async () => {
  const t = setup();
  await t.update(
    ["a", { connections: 500, weight: 10 }],
    ["b", { connections: 500, weight: 20 }], // half the load per weight
    ["c", { connections: 100, weight: 10 }],
    ["d", { connections: 900, weight: 10 }],
    ["e", { connections: 700, weight: 10 }],
    ["f", { connections: 800, weight: 10 }],
    ["g", { connections: 0, weight: 0 }], // weight 0: never offered
    ["h", { connections: 0, addrs: [] }], // advertises no address
  );
  const order = await t.order();
  assert.equal(order.length, MAX_NODES);
  assert.deepEqual(order, ["c", "b", "a", "e", "f"]);
  const app = await t.balancer.weighted("ios");
  assert.deepEqual(app.nodes.slice(0, 2), ["c.addr.test", "b.addr.test"]);
});

Deno.test("comets in this logic's region get logic.nodes.region_weight", async () => {
  const t = setup("node.region=sh", "logic.nodes.region_weight=2");
  await t.update(
    ["far", { connections: 100, region: "bj" }],
    ["near", { connections: 150, region: "sh" }], // 150 / (10×2) < 100 / 10
  );
  assert.deepEqual(await t.order(), ["near", "far"]);
  const plain = setup("logic.nodes.region_weight=2"); // no node.region: no preference
  await plain.update(["far", { connections: 100, region: "bj" }], [
    "near",
    { connections: 150, region: "sh" },
  ]);
  assert.deepEqual(await plain.order(), ["far", "near"]);
});

Deno.test("flap protection: small load changes keep the order, real ones change it", async () => {
  const t = setup();
  await t.update(["a", { connections: 1000 }], ["b", { connections: 1010 }]);
  assert.deepEqual(await t.order(), ["a", "b"]);
  // a's load rises past b's by a few connections: within the hysteresis band, no reorder.
  await t.update(["a", { connections: 1012 }], ["b", { connections: 1008 }]);
  assert.deepEqual(await t.order(), ["a", "b"]);
  await t.update(["a", { connections: 1030 }], ["b", { connections: 995 }]);
  assert.deepEqual(await t.order(), ["a", "b"]);
  // A real difference (well over 5% of the load) moves b up.
  await t.update(["a", { connections: 1300 }], ["b", { connections: 1000 }]);
  assert.deepEqual(await t.order(), ["b", "a"]);
});

Deno.test("clients handed out between registry updates spread over comets in steps", async () => {
  const t = setup();
  await t.update(["a", { connections: 0 }], ["b", { connections: 0 }]);
  const firsts: string[] = [];
  for (let i = 0; i < 4 * (HYSTERESIS_CONNS + 1); i++) firsts.push((await t.order())[0]);
  const a = firsts.filter((f) => f === "a").length;
  const b = firsts.length - a;
  assert.ok(a > 0 && b > 0, `both get clients: a=${a} b=${b}`);
  assert.ok(Math.abs(a - b) <= 2 * (HYSTERESIS_CONNS + 1), `roughly even: a=${a} b=${b}`);
  // Runs, not alternation: the first node changes only every ~HYSTERESIS_CONNS answers.
  const switches = firsts.filter((f, i) => i > 0 && f !== firsts[i - 1]).length;
  assert.ok(switches <= 4, `switches ${switches}`);
  // A fresh registry record replaces the handed-out estimate with the real count.
  await t.update(["a", { connections: 0 }], ["b", { connections: 500 }]);
  assert.equal((await t.order())[0], "a");
});

Deno.test("the registry is read at most once per NODES_REFRESH_MS; failures keep the last list", async () => {
  const t = setup();
  await t.update(["a", {}]);
  assert.deepEqual(await t.order(), ["a"]);
  await t.registry.register(comet("b"), 60_000);
  assert.deepEqual(await t.order(), ["a"], "cached");
  t.clock.advance(NODES_REFRESH_MS);
  assert.deepEqual((await t.order()).sort(), ["a", "b"]);
  await t.registry.close(); // list() now rejects
  t.clock.advance(NODES_REFRESH_MS);
  assert.deepEqual((await t.order()).sort(), ["a", "b"]);
});

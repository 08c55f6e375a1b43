/**
 * Regions and zones (issue #13 part 4): the CIDR → region table
 * (infra/regions.ts, `logic.nodes.regions`), comets that register their
 * `node.region` / `node.zone`, and logic offering each client the comets of
 * its region first: by the `region` it asks for, else by its IP, else by
 * logic's own region, over a real HTTP socket and through the Nodes RPC.
 */

import assert from "node:assert/strict";
import { Comet } from "../comet/comet.ts";
import { ConfigError } from "../infra/config.ts";
import { createLogger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { MemorySessionStore } from "../infra/memory/sessions.ts";
import { RegionMap } from "../infra/regions.ts";
import { Logic } from "../logic/logic.ts";
import { NodeBalancer, NODES_REFRESH_MS } from "../logic/nodes.ts";
import { cometConfig, FakeLogic } from "./fixtures/comet_fixtures.ts";
import { comet, FakeClock, RecordingProducer, testConfig } from "./fixtures/logic_fixtures.ts";

Deno.test("regions: the most specific network wins; IPv6, mapped IPv4, bare addresses", () => {
  const map = RegionMap.parse([
    "10.0.0.0/8=sh",
    "10.9.0.0/16=bj",
    "10.9.0.0/16=gz", // same network, listed later: never chosen
    "2001:db8::/32=bj",
    "2001:db8:5::/48=sh",
    "192.0.2.7=hk",
    "0.0.0.0/0=world",
  ]);
  assert.equal(map.size, 7);
  assert.equal(map.regionOf("10.1.2.3"), "sh");
  assert.equal(map.regionOf("10.9.0.7"), "bj");
  assert.equal(map.regionOf("::ffff:10.9.0.7"), "bj", "IPv4-mapped, as a dual-stack socket says");
  assert.equal(map.regionOf("2001:db8::1"), "bj");
  assert.equal(map.regionOf("[2001:db8:5::9]"), "sh");
  assert.equal(map.regionOf("2001:db8:5::9%eth0"), "sh");
  assert.equal(map.regionOf("192.0.2.7"), "hk");
  assert.equal(map.regionOf("192.0.2.8"), "world");
  assert.equal(map.regionOf("2001:dead::1"), undefined, "no IPv6 default");
  assert.equal(map.regionOf(""), undefined);
  assert.equal(map.regionOf("not-an-ip"), undefined);
  assert.equal(RegionMap.parse([]).regionOf("10.1.2.3"), undefined);
});

Deno.test("regions: a malformed entry is refused, naming it; so is the config holding it", () => {
  for (
    const [entry, why] of [
      ["10.0.0.0/8", /no '='/],
      ["10.0.0.0/8=", /region must be 1 to 64/],
      ["10.0.0.0/8=s h", /region must be 1 to 64/],
      [`10.0.0.0/8=${"r".repeat(65)}`, /region must be 1 to 64/],
      ["10.0.0/8=sh", /is not an IPv4 or IPv6 network/],
      ["example.com/8=sh", /is not an IPv4 or IPv6 network/],
      ["10.0.0.0/33=sh", /prefix length must be 0 to 32/],
      ["2001:db8::/129=sh", /prefix length must be 0 to 128/],
      ["10.0.0.0/x=sh", /prefix length/],
    ] as const
  ) {
    assert.throws(
      () => RegionMap.parse(["192.0.2.0/24=ok", entry]),
      (e: Error) =>
        e instanceof RangeError && e.message.startsWith(`entry 1 ${JSON.stringify(entry)}: `) &&
        why.test(e.message),
      entry,
    );
  }
  assert.throws(
    () => testConfig('logic.nodes.regions=["10.0.0.0/8=sh","10.0.0.0/99=bj"]'),
    (e: Error) =>
      e instanceof ConfigError &&
      /logic\.nodes\.regions: entry 1 "10\.0\.0\.0\/99=bj"/.test(e.message),
  );
});

Deno.test("regions: a near comet under more load wins by region_weight, by the client's IP", async () => {
  const clock = new FakeClock();
  const registry = new MemoryRegistry({ now: clock.now });
  const balancer = new NodeBalancer({
    registry,
    config: testConfig(
      "node.region=sh",
      "logic.nodes.region_weight=2",
      'logic.nodes.regions=["10.0.0.0/8=sh","192.168.0.0/16=bj"]',
    ),
    now: clock.now,
  });
  try {
    await registry.register(comet("bj-1", { connections: 100, region: "bj" }), 60_000);
    await registry.register(comet("sh-1", { connections: 150, region: "sh" }), 60_000);
    const first = async (ip: string, region?: string) => {
      clock.advance(NODES_REFRESH_MS); // past the balancer's cache of the registry
      return (await balancer.weighted("ios", ip, region)).nodes[0];
    };
    // sh: 150 / (10×2) = 7.5 < 100 / 10; bj: 100 / 20 = 5 < 150 / 10.
    assert.equal(await first("10.1.2.3"), "sh-1.addr.test");
    assert.equal(await first("192.168.7.7"), "bj-1.addr.test");
    assert.equal(await first("203.0.113.1"), "sh-1.addr.test", "unmapped: logic's node.region");
    assert.equal(await first("10.1.2.3", "bj"), "bj-1.addr.test", "the region asked for wins");
    assert.equal(balancer.clientRegion("192.168.7.7"), "bj");
    assert.equal(balancer.clientRegion("203.0.113.1", ""), "sh", "an empty region is none");
    assert.throws(() => balancer.clientRegion("", "x".repeat(65)), /region: expected 1 to 64/);
  } finally {
    await registry.close();
  }
});

Deno.test({
  name:
    "regions: four comets in two regions register region and zone; each client gets its region's first",
  // Comets and logic on real sockets; bounded by their shutdown.
  fn: async () => {
    const registry = new MemoryRegistry();
    const log = createLogger({ level: "error" });
    const comets: Comet[] = [];
    const sessions = new MemorySessionStore();
    const logic = new Logic({
      config: testConfig(
        "logic.admin.bind=",
        "node.region=sh",
        "logic.nodes.host_domain=.im.test",
        "logic.nodes.region_weight=2",
        // The test's HTTP client is 127.0.0.1; the RPC passes other client IPs.
        'logic.nodes.regions=["127.0.0.0/8=bj","10.0.0.0/8=sh","192.168.0.0/16=bj"]',
      ),
      sessions,
      registry,
      producer: new RecordingProducer(),
      log,
    });
    try {
      for (
        const [id, region, zone] of [
          ["bj-1", "bj", "bj001"],
          ["bj-2", "bj", "bj002"],
          ["sh-1", "sh", "sh001"],
          ["sh-2", "sh", "sh001"],
        ]
      ) {
        const c = new Comet({
          config: cometConfig([
            `node.id=${id}`,
            `node.region=${region}`,
            `node.zone=${zone}`,
            `comet.addrs=${id}.example`,
          ]),
          logic: new FakeLogic(),
          registry,
          log,
        });
        comets.push(c);
        await c.start({ grpc: false });
      }
      const { http } = await logic.start({ grpc: false });
      const get = async (query: string) => {
        const res = await fetch(`http://127.0.0.1:${http.port}/goim/nodes/weighted?${query}`);
        return { status: res.status, ...(await res.json()) };
      };
      const order = async (query: string) =>
        (await get(query)).data.nodes.map((n: string) => n.replace(".im.test", ""));
      // No load anywhere: the gained weight puts the client's region first, ids break ties.
      assert.deepEqual(
        await order("platform=web"),
        ["bj-1", "bj-2", "sh-1", "sh-2"],
        "127.0.0.1 → bj",
      );
      assert.deepEqual(await order("platform=web&region=sh"), ["sh-1", "sh-2", "bj-1", "bj-2"]);
      const bad = await get("platform=web&region=no%20such");
      assert.equal(bad.status, 400);
      assert.equal(bad.code, -400);
      assert.match(bad.message, /^region: expected 1 to 64 of A-Z a-z 0-9 \. _ -, got "no such"$/);

      // Through the Nodes RPC, which carries the client's IP.
      const rpc = async (clientIP: string) =>
        (await logic.service.Nodes({ platform: "web", clientIP })).nodes.map((n) =>
          n.replace(".im.test", "")
        ).slice(0, 2).sort();
      assert.deepEqual(await rpc("10.20.30.40"), ["sh-1", "sh-2"]);
      assert.deepEqual(await rpc("192.168.0.9"), ["bj-1", "bj-2"]);
      assert.deepEqual(await rpc("203.0.113.9"), ["sh-1", "sh-2"], "unmapped: logic's node.region");

      // What the comets registered, as /goim/nodes/instances lists it.
      const res = await fetch(`http://127.0.0.1:${http.port}/goim/nodes/instances`);
      const listed = (await res.json()).data as { id: string; region: string; zone: string }[];
      assert.deepEqual(listed.map(({ id, region, zone }) => [id, region, zone]), [
        ["bj-1", "bj", "bj001"],
        ["bj-2", "bj", "bj002"],
        ["sh-1", "sh", "sh001"],
        ["sh-2", "sh", "sh001"],
      ]);
    } finally {
      await logic.stop();
      for (const c of comets) await c.shutdown("test");
      await sessions.close();
      await registry.close();
    }
  },
});

/**
 * The behaviour every {@linkcode SessionStore} engine must have, as one
 * suite that a test file runs once per engine (Centrifuge-style).
 *
 * @example
 * ```ts
 * import { MemorySessionStore } from "../../infra/memory/sessions.ts";
 * sessionStoreSuite("memory", ({ ttlMs }) => {
 *   let t = 0;
 *   const store = new MemorySessionStore({ ttlMs, now: () => t });
 *   return Promise.resolve({ store, advance: (ms) => void (t += ms), cleanup: () => store.close() });
 * });
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ServerOnline, SessionStore } from "../../infra/sessions.ts";
import { assertNoLeakedHandles, openHandles, passTime, waitFor } from "./harness.ts";

/** One store under test, with how to move its clock and how to dispose of it. */
export interface SessionStoreHarness {
  /** The engine under test. */
  store: SessionStore;
  /** Moves the engine's clock forward; absent for engines on real time (Redis). */
  advance?: (ms: number) => void | Promise<void>;
  /** Deletes what the test wrote and closes the store. */
  cleanup: () => Promise<void>;
}

/** Builds a fresh, empty store whose routes live `ttlMs`. */
export type MakeSessionStore = (opts: { ttlMs: number }) => Promise<SessionStoreHarness>;

/** Options of {@linkcode sessionStoreSuite}. */
export interface SuiteOptions {
  /** Register every test ignored (engine not available here). */
  ignore?: boolean;
}

/** Long enough that nothing expires during a test that is not about expiry. */
const LONG_TTL = 60_000;

/**
 * Registers the session store tests for one engine as `Deno.test`s named
 * `<name> sessions: …`.
 */
export function sessionStoreSuite(
  name: string,
  makeStore: MakeSessionStore,
  opts: SuiteOptions = {},
): void {
  const test = (title: string, ttlMs: number, fn: (h: SessionStoreHarness) => Promise<void>) =>
    Deno.test({
      name: `${name} sessions: ${title}`,
      ignore: opts.ignore ?? false,
      fn: async () => {
        const h = await makeStore({ ttlMs });
        try {
          await fn(h);
        } finally {
          await h.cleanup();
        }
      },
    });

  test("add and look up by key and by mid; mid 0 is key-only", LONG_TTL, async ({ store }) => {
    await store.addMapping(1, "k1", "s1");
    await store.addMapping(1, "k2", "s2");
    await store.addMapping(2, "k3", "s1");
    await store.addMapping(0, "k4", "s3");
    assert.deepEqual(await store.serversByKeys(["k1", "k2", "k3", "k4"]), ["s1", "s2", "s1", "s3"]);
    assert.deepEqual(sorted(await store.keysByMids([1])), [["k1", "s1"], ["k2", "s2"]]);
    assert.deepEqual(sorted(await store.keysByMids([2])), [["k3", "s1"]]);
    assert.deepEqual(sorted(await store.keysByMids([0])), []);
    assert.deepEqual(await store.serversByKeys([]), []);
    assert.equal((await store.keysByMids([])).size, 0);
  });

  test("a second addMapping moves the key to another server", LONG_TTL, async ({ store }) => {
    await store.addMapping(7, "k", "s1");
    await store.addMapping(7, "k", "s2");
    assert.deepEqual(await store.serversByKeys(["k"]), ["s2"]);
    assert.deepEqual(sorted(await store.keysByMids([7])), [["k", "s2"]]);
    assert.equal(await store.delMapping(7, "k", "s1"), false, "old server's late Disconnect");
    assert.deepEqual(await store.serversByKeys(["k"]), ["s2"]);
    assert.equal(await store.delMapping(7, "k", "s2"), true);
    assert.deepEqual(await store.serversByKeys(["k"]), [null]);
    assert.equal((await store.keysByMids([7])).size, 0);
  });

  test("expireMapping renews live routes and reports missing ones", LONG_TTL, async ({ store }) => {
    await store.addMapping(1, "k1", "s1");
    await store.addMapping(0, "k2", "s1");
    assert.equal(await store.expireMapping(1, "k1"), true);
    assert.equal(await store.expireMapping(0, "k2"), true);
    assert.equal(await store.expireMapping(0, "k1"), true, "mid 0 checks the key route only");
    assert.equal(await store.expireMapping(1, "nope"), false, "unknown key");
    assert.equal(await store.expireMapping(0, "nope"), false, "unknown key, mid 0");
    assert.equal(await store.expireMapping(1, "k2"), false, "key is not in mid 1's set");
    assert.equal(await store.expireMapping(9, "k1"), false, "unknown mid");
    await store.delMapping(1, "k1", "s1");
    assert.equal(await store.expireMapping(1, "k1"), false, "after delMapping");
    await store.addMapping(1, "k1", "s1");
    assert.equal(await store.expireMapping(1, "k1"), true, "after re-adding");
    // Renewing never creates a route.
    assert.deepEqual(await store.serversByKeys(["nope"]), [null]);
  });

  test("routes, mid sets and online reports expire after the TTL", 1000, async (h) => {
    const { store } = h;
    await store.addMapping(1, "k1", "s1");
    await store.addMapping(0, "k2", "s1");
    await store.addServerOnline({ server: "s1", roomCount: { r: 1 }, updated: 1 });
    if (h.advance) {
      await h.advance(999);
      assert.deepEqual(await store.serversByKeys(["k1", "k2"]), ["s1", "s1"], "alive at ttl-1");
      await h.advance(1);
    } else {
      await waitFor(async () => (await store.serversByKeys(["k1", "k2"])).every((s) => !s), {
        timeoutMs: 5000,
        what: "routes with a 1 s TTL to expire",
      });
    }
    assert.deepEqual(await store.serversByKeys(["k1", "k2"]), [null, null]);
    assert.equal((await store.keysByMids([1])).size, 0);
    assert.equal(await store.serverOnline("s1"), null);
    assert.equal(await store.expireMapping(1, "k1"), false);
    assert.equal(await store.delMapping(1, "k1", "s1"), false);
  });

  test(
    "a device that stopped beating is not a mid's key while another device renews the set",
    1000,
    async (h) => {
      const { store } = h;
      await store.addMapping(7, "phone", "s1");
      await store.addMapping(7, "laptop", "s2");
      // Only the laptop heartbeats; each renewal also pushes back the mid's whole set.
      await passTime(h, 600);
      assert.equal(await store.expireMapping(7, "laptop"), true);
      await passTime(h, 600);
      assert.equal(await store.expireMapping(7, "laptop"), true);
      assert.deepEqual(await store.serversByKeys(["phone", "laptop"]), [null, "s2"]);
      assert.deepEqual([...await store.keysByMids([7])], [["laptop", "s2"]]);
    },
  );

  test("expireMapping and addMapping push the expiry back", 1500, async (h) => {
    const { store } = h;
    await store.addMapping(1, "k1", "s1");
    await store.addMapping(1, "k2", "s1");
    await passTime(h, 900);
    assert.equal(await store.expireMapping(1, "k1"), true);
    await store.addMapping(0, "k3", "s1");
    await passTime(h, 900);
    // 1.8 s after the first add: alive only thanks to the renewal at 0.9 s.
    assert.deepEqual(await store.serversByKeys(["k1", "k2", "k3"]), ["s1", null, "s1"]);
    // The mid set's expiry is shared (goim: one hash) and k2's field outlives its route; goim
    // would still name k2, keysByMids checks the route and leaves it out.
    assert.deepEqual(sorted(await store.keysByMids([1])), [["k1", "s1"]]);
  });

  test("delMapping removes only what still points at the caller", LONG_TTL, async ({ store }) => {
    await store.addMapping(1, "k1", "s1");
    assert.equal(await store.delMapping(1, "k1", "s2"), false);
    assert.deepEqual(await store.serversByKeys(["k1"]), ["s1"]);
    assert.deepEqual(sorted(await store.keysByMids([1])), [["k1", "s1"]]);
    assert.equal(await store.delMapping(1, "k1", "s1"), true);
    assert.equal(await store.delMapping(1, "k1", "s1"), false, "second time: nothing left");
    assert.deepEqual(await store.serversByKeys(["k1"]), [null]);

    // The key route moved (mid 0 touches only key_), the mid set did not: each half is judged alone.
    await store.addMapping(1, "k2", "s1");
    await store.addMapping(0, "k2", "s2");
    assert.equal(await store.delMapping(1, "k2", "s1"), true, "removes the mid's field");
    assert.deepEqual(await store.serversByKeys(["k2"]), ["s2"]);
    assert.equal((await store.keysByMids([1])).size, 0);
    assert.equal(await store.delMapping(0, "k2", "s2"), true);
    assert.deepEqual(await store.serversByKeys(["k2"]), [null]);
    assert.equal(await store.delMapping(0, "never", "s1"), false);
  });

  test(
    "serversByKeys keeps order and answers null for missing keys",
    LONG_TTL,
    async ({ store }) => {
      await store.addMapping(0, "a", "s1");
      await store.addMapping(3, "b", "s2");
      assert.deepEqual(
        await store.serversByKeys(["x", "a", "y", "b", "a", "z"]),
        [null, "s1", null, "s2", "s1", null],
      );
    },
  );

  test("keysByMids merges the key sets of many mids", LONG_TTL, async ({ store }) => {
    await store.addMapping(1, "a1", "s1");
    await store.addMapping(1, "a2", "s2");
    await store.addMapping(2, "b1", "s3");
    await store.addMapping(3, "c1", "s1");
    assert.deepEqual(sorted(await store.keysByMids([1, 2, 404, 1])), [
      ["a1", "s1"],
      ["a2", "s2"],
      ["b1", "s3"],
    ]);
  });

  test("keys and servers with unusual characters round-trip", LONG_TTL, async ({ store }) => {
    const key = "key:with spaces/ünïcode_*?[x]";
    const server = "comet-1.example:3109 ✓";
    await store.addMapping(Number.MAX_SAFE_INTEGER, key, server);
    assert.deepEqual(await store.serversByKeys([key]), [server]);
    assert.deepEqual(sorted(await store.keysByMids([Number.MAX_SAFE_INTEGER])), [[key, server]]);
    assert.equal(await store.delMapping(Number.MAX_SAFE_INTEGER, key, server), true);
  });

  test("online reports: add, replace whole, get, delete", LONG_TTL, async ({ store }) => {
    const first: ServerOnline = {
      server: "s1",
      roomCount: { "live://1": 3, "live://2": 1 },
      updated: 1000,
    };
    await store.addServerOnline(first);
    assert.deepEqual(await store.serverOnline("s1"), first);
    const second: ServerOnline = { server: "s1", roomCount: { "live://3": 7 }, updated: 2000 };
    await store.addServerOnline(second);
    assert.deepEqual(await store.serverOnline("s1"), second, "no rooms left over from the first");
    // Whole seconds: the Redis engine keeps goim's unix seconds.
    await store.addServerOnline({ server: "s2", roomCount: {}, updated: 5000 });
    assert.deepEqual(await store.serverOnline("s2"), {
      server: "s2",
      roomCount: {},
      updated: 5000,
    });
    assert.equal(await store.serverOnline("nope"), null);
    await store.delServerOnline("s1");
    assert.equal(await store.serverOnline("s1"), null);
    await store.delServerOnline("s1"); // deleting again is fine
    assert.deepEqual(await store.serverOnline("s2"), {
      server: "s2",
      roomCount: {},
      updated: 5000,
    });
  });

  test("100 concurrent addMappings all land, each atomically", LONG_TTL, async ({ store }) => {
    const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
    await Promise.all(keys.map((k, i) => store.addMapping(1, k, `s${i % 7}`)));
    const byMid = await store.keysByMids([1]);
    assert.equal(byMid.size, 100);
    assert.deepEqual(await store.serversByKeys(keys), keys.map((_, i) => `s${i % 7}`));
    for (const [i, k] of keys.entries()) assert.equal(byMid.get(k), `s${i % 7}`);

    // One key raced onto 100 servers: key route and mid set must agree on the winner.
    await Promise.all(keys.map((_, i) => store.addMapping(2, "hot", `s${i}`)));
    const [winner] = await store.serversByKeys(["hot"]);
    assert.ok(winner?.startsWith("s"));
    assert.equal((await store.keysByMids([2])).get("hot"), winner);
  });

  test("close() releases everything; later calls reject", LONG_TTL, async (h) => {
    // The harness made its store before this ran; measure around a second one.
    const before = openHandles();
    const other = await makeStore({ ttlMs: LONG_TTL });
    await other.store.addMapping(1, "k", "s1");
    await other.cleanup();
    await assertNoLeakedHandles(before);
    await assert.rejects(() => other.store.serversByKeys(["k"]));
    await assert.rejects(() => other.store.addMapping(1, "k", "s1"));
    await other.store.close(); // closing twice is fine
    await h.store.addMapping(1, "k", "s1"); // the harness's own store is unaffected
  });
}

function sorted(m: Map<string, string>): [string, string][] {
  return [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

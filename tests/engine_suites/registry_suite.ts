/**
 * The behaviour every {@linkcode Registry} engine must have, as one suite
 * that a test file runs once per engine.
 *
 * @example
 * ```ts
 * import { MemoryRegistry } from "../../infra/memory/registry.ts";
 * registrySuite("memory", () => {
 *   let t = 1_000_000;
 *   const registry = new MemoryRegistry({ now: () => t });
 *   return Promise.resolve({ registry, advance: (ms) => void (t += ms), cleanup: () => registry.close() });
 * });
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import type { CometRecord, Registry } from "../../infra/registry.ts";
import { assertNoLeakedHandles, openHandles, passTime, waitFor } from "./harness.ts";
import type { SuiteOptions } from "./sessions_suite.ts";

/** One registry under test, with how to move its clock and how to dispose of it. */
export interface RegistryHarness {
  /** The engine under test. */
  registry: Registry;
  /** Moves the engine's clock forward; absent for engines on real time (Redis). */
  advance?: (ms: number) => void | Promise<void>;
  /** Deletes what the test wrote and closes the registry. */
  cleanup: () => Promise<void>;
  /**
   * The one region and zone the engine files records under, whatever a
   * record says (discovery: its client's, "" when unset); absent = each
   * record's own.
   */
  location?: { region: string; zone: string };
}

/** Builds a fresh, empty registry. */
export type MakeRegistry = () => Promise<RegistryHarness>;

const LONG_TTL = 60_000;

/** A comet record for tests; `id` and any field can be overridden. */
export function comet(
  id: string,
  over: Partial<Omit<CometRecord, "updated">> = {},
): Omit<CometRecord, "updated"> {
  return {
    id,
    grpcAddr: `127.0.0.1:${3109}`,
    addrs: ["127.0.0.1", "comet.example"],
    tcpPort: 3101,
    wsPort: 3102,
    wssPort: 0,
    weight: 10,
    connections: 0,
    ips: 0,
    ...over,
  };
}

/** The non-empty fields of an engine's fixed location, as a record read back carries them. */
function located(where: RegistryHarness["location"]): Partial<CometRecord> {
  const out: Partial<CometRecord> = {};
  if (where?.region) out.region = where.region;
  if (where?.zone) out.zone = where.zone;
  return out;
}

/** Registers the registry tests for one engine as `Deno.test`s named `<name> registry: …`. */
export function registrySuite(name: string, make: MakeRegistry, opts: SuiteOptions = {}): void {
  const test = (title: string, fn: (h: RegistryHarness) => Promise<void>) =>
    Deno.test({
      name: `${name} registry: ${title}`,
      ignore: opts.ignore ?? false,
      fn: async () => {
        const h = await make();
        try {
          await fn(h);
        } finally {
          await h.cleanup();
        }
      },
    });

  test("register then list returns the record with updated set", async (h) => {
    const { registry } = h;
    assert.deepEqual(await registry.list(), []);
    const rec = comet("c1", {
      addrs: ["10.0.0.1"],
      wssPort: 3103,
      weight: 3,
      connections: 12,
      ips: 5,
    });
    await registry.register(rec, LONG_TTL);
    const [got, ...rest] = await registry.list();
    assert.equal(rest.length, 0);
    const { updated, ...fields } = got;
    assert.deepEqual(fields, { ...rec, ...located(h.location) });
    assert.ok(Number.isInteger(updated) && updated > 0, `updated = ${updated}`);
  });

  test("region and zone come back; a record without them has none", async (h) => {
    const where = h.location ?? { region: "sh", zone: "sh001" };
    await h.registry.register(comet("a", where), LONG_TTL);
    await h.registry.register(comet("b"), LONG_TTL);
    const [a, b] = await h.registry.list();
    assert.deepEqual([a.region ?? "", a.zone ?? ""], [where.region, where.zone]);
    const none = h.location ?? { region: "", zone: "" };
    assert.deepEqual([b.region ?? "", b.zone ?? ""], [none.region, none.zone]);
  });

  test("list is ordered by id", async ({ registry }) => {
    for (const id of ["c3", "c1", "c10", "c2"]) await registry.register(comet(id), LONG_TTL);
    assert.deepEqual((await registry.list()).map((c) => c.id), ["c1", "c10", "c2", "c3"]);
  });

  test("register again refreshes the record in place", async (h) => {
    const { registry } = h;
    await registry.register(comet("c1", { connections: 1 }), LONG_TTL);
    const [first] = await registry.list();
    await passTime(h, 5);
    await registry.register(comet("c1", { connections: 5, addrs: ["10.0.0.9"] }), LONG_TTL);
    const all = await registry.list();
    assert.equal(all.length, 1);
    assert.equal(all[0].connections, 5);
    assert.deepEqual(all[0].addrs, ["10.0.0.9"]);
    assert.ok(all[0].updated >= first.updated + 5, `${all[0].updated} vs ${first.updated}`);
  });

  test("each record expires after its own ttl unless refreshed", async (h) => {
    const { registry } = h;
    await registry.register(comet("short"), 1000);
    await registry.register(comet("long"), LONG_TTL);
    await registry.register(comet("renewed"), 1000);
    if (h.advance) {
      await h.advance(600);
      await registry.register(comet("renewed"), 1000);
      await h.advance(400);
    } else {
      await passTime(h, 600);
      await registry.register(comet("renewed"), 1000);
      await waitFor(async () => !(await registry.list()).some((c) => c.id === "short"), {
        timeoutMs: 5000,
        what: "a record with a 1 s ttl to expire",
      });
    }
    assert.deepEqual((await registry.list()).map((c) => c.id), ["long", "renewed"]);
    await registry.register(comet("short"), LONG_TTL);
    assert.deepEqual((await registry.list()).map((c) => c.id), ["long", "renewed", "short"]);
  });

  test("deregister removes at once", async ({ registry }) => {
    await registry.register(comet("a"), LONG_TTL);
    await registry.register(comet("b"), LONG_TTL);
    await registry.deregister("a");
    assert.deepEqual((await registry.list()).map((c) => c.id), ["b"]);
    await registry.deregister("a"); // again: no error
    await registry.deregister("never-registered");
    await registry.deregister("b");
    assert.deepEqual(await registry.list(), []);
  });

  test("a non-positive ttl is rejected", async ({ registry }) => {
    await assert.rejects(() => registry.register(comet("x"), 0), RangeError);
    await assert.rejects(() => registry.register(comet("x"), -5), RangeError);
    assert.deepEqual(await registry.list(), []);
  });

  test("concurrent registers and refreshes", async ({ registry }) => {
    const ids = Array.from({ length: 50 }, (_, i) => `c${String(i).padStart(2, "0")}`);
    await Promise.all(ids.map((id) => registry.register(comet(id), LONG_TTL)));
    await Promise.all(
      ids.map((id, i) => registry.register(comet(id, { connections: i }), LONG_TTL)),
    );
    const all = await registry.list();
    assert.deepEqual(all.map((c) => c.id), ids);
    assert.deepEqual(all.map((c) => c.connections), ids.map((_, i) => i));
  });

  test("close() releases everything; later calls reject", async (h) => {
    const before = openHandles();
    const other = await make();
    await other.registry.register(comet("c1"), LONG_TTL);
    await other.cleanup();
    await assertNoLeakedHandles(before);
    await assert.rejects(() => other.registry.list());
    await assert.rejects(() => other.registry.register(comet("c1"), LONG_TTL));
    await other.registry.close();
    await h.registry.register(comet("c1"), LONG_TTL);
  });
}

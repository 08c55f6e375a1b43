/**
 * The behaviour every {@linkcode StreamStore} and {@linkcode PushStatusStore}
 * engine must have (infra/streams.ts, docs/STREAMS.md), as one suite that a
 * test file runs once per engine: memory, a single Redis, a Redis Cluster.
 *
 * @example
 * ```ts
 * import { MemoryPushStatusStore, MemoryStreamStore } from "../../infra/memory/streams.ts";
 * streamStoreSuite("memory", ({ size, ttlMs, statusTtlMs }) => {
 *   let t = Date.now();
 *   const now = () => t;
 *   const streams = new MemoryStreamStore({ size, ttlMs, maxStreams: 1000, now });
 *   const status = new MemoryPushStatusStore({ ttlMs: statusTtlMs, now });
 *   return Promise.resolve({
 *     streams, status,
 *     second: () => Promise.resolve(streams),
 *     lose: (s) => Promise.resolve(void streams.delete(s)),
 *     advance: (ms) => void (t += ms),
 *     cleanup: async () => { await streams.close(); await status.close(); },
 *   });
 * });
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  MAX_PUSH_TARGETS,
  MAX_RANGE_LIMIT,
  type PushStatusStore,
  type StreamEntryInit,
  type StreamStore,
} from "../../infra/streams.ts";
import { passTime } from "./harness.ts";

/** The stores under test, with how to move their clock, lose a stream and dispose of them. */
export interface StreamStoreHarness {
  /** The stream store under test. */
  streams: StreamStore;
  /** The push status store under test. */
  status: PushStatusStore;
  /**
   * Another stream store on the same data, as a second job would have
   * (memory: the same store, the embedded process has one). `cleanup`
   * closes it.
   */
  second(): Promise<StreamStore>;
  /** Loses a stream's history as a flushed or restarted store would. */
  lose(stream: string): Promise<void>;
  /** Moves the engines' clock forward; absent for engines on real time (Redis). */
  advance?: (ms: number) => void | Promise<void>;
  /** Deletes what the test wrote and closes the stores. */
  cleanup: () => Promise<void>;
}

/** The bounds a harness is built with. */
export interface StreamStoreBounds {
  /** `streams.history.size`. */
  size: number;
  /** `streams.history.ttl`, ms. */
  ttlMs: number;
  /** `streams.status.ttl`, ms. */
  statusTtlMs: number;
}

/** Builds fresh, empty stores with these bounds. */
export type MakeStreamStores = (bounds: StreamStoreBounds) => Promise<StreamStoreHarness>;

/** Options of {@linkcode streamStoreSuite}. */
export interface StreamSuiteOptions {
  /** Register every test ignored (engine not available here). */
  ignore?: boolean;
}

/** Long enough that nothing expires during a test that is not about expiry. */
const LONG = 600_000;
const DEFAULTS: StreamStoreBounds = { size: 1000, ttlMs: LONG, statusTtlMs: LONG };

const utf8 = new TextEncoder();

/** An entry with push id `id` and a body naming it. */
function entry(id: string, extra: Partial<StreamEntryInit> = {}): StreamEntryInit {
  return { pushId: id, op: 1000, body: utf8.encode(`body of ${id}`), ...extra };
}

const ids = (n: number, from = 0, tag = "p") =>
  Array.from({ length: n }, (_, i) => `${tag}${from + i}`);

/**
 * Registers the stream and push status tests for one engine as
 * `Deno.test`s named `<name> streams: …` and `<name> push status: …`.
 */
export function streamStoreSuite(
  name: string,
  make: MakeStreamStores,
  opts: StreamSuiteOptions = {},
): void {
  const test = (
    title: string,
    bounds: Partial<StreamStoreBounds>,
    fn: (h: StreamStoreHarness) => Promise<void>,
  ) =>
    Deno.test({
      name: `${name} ${title}`,
      ignore: opts.ignore ?? false,
      fn: async () => {
        const h = await make({ ...DEFAULTS, ...bounds });
        try {
          await fn(h);
        } finally {
          await h.cleanup();
        }
      },
    });

  // ------------------------------------------------------------------ streams: append

  test("streams: positions 1, 2, 3… under one fresh epoch", {}, async ({ streams }) => {
    const a = await streams.append("room:live://1", ids(3).map((id) => entry(id)));
    assert.match(a.epoch, /^[\x21-\x7e]{1,64}$/, "ASCII, at most 64 bytes");
    assert.deepEqual(a.positions, [1, 2, 3]);
    const b = await streams.append("room:live://1", [entry("p3")]);
    assert.deepEqual(b, { epoch: a.epoch, positions: [4] });
    const other = await streams.append("mid:42", [entry("p0")]);
    assert.deepEqual(other.positions, [1], "streams count on their own");
    assert.notEqual(other.epoch, a.epoch, "each stream gets its own epoch");
    const r = await streams.range("room:live://1", { limit: 10 });
    assert.deepEqual(r.entries.map((e) => [e.pos, e.pushId]), [
      [1, "p0"],
      [2, "p1"],
      [3, "p2"],
      [4, "p3"],
    ]);
    assert.equal(r.epoch, a.epoch);
    assert.equal(r.top, 4);
  });

  test(
    "streams: a push id already held keeps its position and is not added twice",
    {},
    async ({ streams }) => {
      const s = "room:dup";
      const a = await streams.append(s, [entry("a"), entry("b"), entry("a"), entry("c")]);
      assert.deepEqual(a.positions, [1, 2, 1, 3], "a repeat within one call");
      const b = await streams.append(s, [entry("b"), entry("d"), entry("c", { op: 7 })]);
      assert.deepEqual(b.positions, [2, 4, 3], "repeats of earlier calls (a redelivery)");
      assert.equal(b.epoch, a.epoch);
      const r = await streams.range(s, { limit: 100 });
      assert.deepEqual(r.entries.map((e) => [e.pos, e.pushId, e.op]), [
        [1, "a", 1000],
        [2, "b", 1000],
        [3, "c", 1000],
        [4, "d", 1000],
      ]);
    },
  );

  test("streams: an append of nothing creates nothing", {}, async ({ streams }) => {
    assert.deepEqual(await streams.append("room:empty", []), { epoch: "", positions: [] });
    assert.deepEqual(await streams.recover("room:empty", null), {
      epoch: "",
      top: 0,
      recovered: true,
      entries: [],
    });
    const { epoch } = await streams.append("room:empty", [entry("x")]);
    assert.deepEqual(await streams.append("room:empty", []), { epoch, positions: [] });
  });

  test(
    "streams: trimmed to history.size; a trimmed push id is new again",
    { size: 5 },
    async ({ streams }) => {
      const s = "room:trim";
      const { epoch } = await streams.append(s, ids(3).map((id) => entry(id)));
      await streams.append(s, ids(5, 3).map((id) => entry(id)));
      const r = await streams.range(s, { limit: 100 });
      assert.deepEqual(r.entries.map((e) => e.pos), [4, 5, 6, 7, 8]);
      assert.equal(r.top, 8);
      assert.deepEqual((await streams.append(s, [entry("p7"), entry("p0")])).positions, [8, 9]);
      const after = await streams.range(s, { limit: 100 });
      assert.deepEqual(after.entries.map((e) => [e.pos, e.pushId]), [
        [5, "p4"],
        [6, "p5"],
        [7, "p6"],
        [8, "p7"],
        [9, "p0"],
      ]);
      assert.equal(after.epoch, epoch, "trimming keeps the epoch");
      // One call larger than the window keeps its last `size`.
      const big = await streams.append("room:trim2", ids(12).map((id) => entry(id)));
      assert.deepEqual(big.positions, Array.from({ length: 12 }, (_, i) => i + 1));
      const kept = await streams.range("room:trim2", { limit: 100 });
      assert.deepEqual(kept.entries.map((e) => e.pos), [8, 9, 10, 11, 12]);
    },
  );

  test(
    "streams: entries keep push id, op, ack flag, time and bodies byte for byte",
    {},
    async ({ streams }) => {
      const every = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
      const big = crypto.getRandomValues(new Uint8Array(64 * 1024));
      // A view into a larger buffer: only its bytes are the body.
      const backing = utf8.encode("xx,1,2,3,inner,yy");
      const view = backing.subarray(3, 14);
      const viewBytes = view.slice();
      const before = Date.now();
      await streams.append("room:bin", [
        { pushId: "e", op: 0, body: new Uint8Array(0) },
        { pushId: "all", op: -5, body: every, ack: true },
        { pushId: "big", op: 2 ** 31 - 1, body: big, ack: false },
        { pushId: "v-_9", op: 1000, body: view },
      ]);
      backing.fill(0); // the store copied what it keeps
      const after = Date.now();
      const got = (await streams.recover("room:bin", { epoch: "", pos: 0 })).entries;
      assert.deepEqual(
        got.map((e) => [e.pos, e.pushId, e.op, e.ack === true]),
        [[1, "e", 0, false], [2, "all", -5, true], [3, "big", 2 ** 31 - 1, false], [
          4,
          "v-_9",
          1000,
          false,
        ]],
      );
      assert.deepEqual(got[0].body, new Uint8Array(0));
      assert.deepEqual(got[1].body, every);
      assert.deepEqual(got[2].body, big);
      assert.deepEqual(got[3].body, viewBytes);
      for (const e of got) {
        assert.ok(e.body instanceof Uint8Array);
        assert.ok(
          e.time >= before - 1000 && e.time <= after + 1000,
          `time ${e.time} within a second of [${before}, ${after}]`,
        );
      }
    },
  );

  test("streams: 1000 entries in one append come back in order", {}, async ({ streams }) => {
    const s = "room:thousand";
    const body = new Uint8Array(50).fill(0x41);
    const a = await streams.append(s, ids(1000).map((id) => ({ pushId: id, op: 1000, body })));
    assert.deepEqual(a.positions, Array.from({ length: 1000 }, (_, i) => i + 1));
    const r = await streams.recover(s, { epoch: a.epoch, pos: 0 });
    assert.equal(r.recovered, true);
    assert.equal(r.entries.length, 1000);
    assert.ok(r.entries.every((e, i) => e.pos === i + 1 && e.pushId === `p${i}`));
    const page = await streams.range(s, { limit: MAX_RANGE_LIMIT });
    assert.equal(page.entries.length, 1000);
    // A second thousand, half of them repeats: 500 new positions.
    const b = await streams.append(s, ids(1000, 500).map((id) => ({ pushId: id, op: 1, body })));
    assert.deepEqual(b.positions, Array.from({ length: 1000 }, (_, i) => i + 501));
    assert.equal((await streams.recover(s, null)).top, 1500);
  });

  test(
    "streams: names of up to 256 bytes of any UTF-8, braces included, are distinct streams",
    {},
    async ({ streams }) => {
      const names = [
        "room:{a}",
        "room:{a}b",
        "room:}{",
        "room:{",
        "room:}",
        "room:%7D",
        "{}",
        "mid:1 \n\t\u0000",
        "room:" + "é".repeat(125) + "x", // 5 + 250 + 1 = 256 bytes
        "room:" + "😀".repeat(62) + "abc", // 5 + 248 + 3 = 256 bytes
        "room:" + "{".repeat(251),
      ];
      for (const [i, n] of names.entries()) {
        const a = await streams.append(n, ids(i + 1, 0, `n${i}_`).map((id) => entry(id)));
        assert.equal(a.positions.length, i + 1, n);
      }
      for (const [i, n] of names.entries()) {
        const r = await streams.range(n, { limit: 100 });
        assert.deepEqual(r.entries.map((e) => e.pushId), ids(i + 1, 0, `n${i}_`), n);
        assert.equal((await streams.recover(n, null)).top, i + 1, n);
      }
      for (
        const bad of [
          "",
          "room:" + "é".repeat(125) + "xy", // 257 bytes
          "room:" + "a".repeat(252),
          "room:\ud800",
        ]
      ) {
        await assert.rejects(() => streams.append(bad, [entry("x")]), RangeError);
        await assert.rejects(() => streams.recover(bad, null), RangeError);
        await assert.rejects(() => streams.range(bad, { limit: 1 }), RangeError);
      }
    },
  );

  test("streams: bad entries throw a RangeError and append nothing", {}, async ({ streams }) => {
    const s = "room:bad";
    for (
      const bad of [
        { pushId: "", op: 1, body: new Uint8Array() },
        { pushId: "a".repeat(65), op: 1, body: new Uint8Array() },
        { pushId: "a,b", op: 1, body: new Uint8Array() },
        { pushId: "é", op: 1, body: new Uint8Array() },
        { pushId: "ok", op: 1.5, body: new Uint8Array() },
        { pushId: "ok", op: 2 ** 31, body: new Uint8Array() },
        { pushId: "ok", op: 1, body: "text" as unknown as Uint8Array },
      ]
    ) {
      await assert.rejects(() => streams.append(s, [entry("fine"), bad]), RangeError);
    }
    assert.equal((await streams.recover(s, null)).epoch, "", "nothing was appended");
    assert.equal((await streams.append(s, [entry("a".repeat(64))])).positions[0], 1);
  });

  // ------------------------------------------------------------------ streams: recover

  test(
    "streams: recover answers from an unknown stream without creating it",
    {},
    async ({ streams }) => {
      const s = "mid:7";
      const none = { epoch: "", top: 0, entries: [] };
      assert.deepEqual(await streams.recover(s, null), { ...none, recovered: true });
      assert.deepEqual(await streams.recover(s, { epoch: "", pos: 0 }), {
        ...none,
        recovered: true,
      });
      assert.deepEqual(await streams.recover(s, { epoch: "abc", pos: 3 }), {
        ...none,
        recovered: false,
        reason: "epoch_changed",
      });
      assert.deepEqual(await streams.recover(s, { epoch: "", pos: 2 }), {
        ...none,
        recovered: false,
        reason: "epoch_changed",
      });
      assert.deepEqual(await streams.range(s, { limit: 10 }), { epoch: "", top: 0, entries: [] });
      assert.deepEqual(await streams.recover(s, null), { ...none, recovered: true }, "still none");
      assert.deepEqual((await streams.append(s, [entry("x")])).positions, [1]);
    },
  );

  test("streams: recover replays after a position, in order", {}, async ({ streams }) => {
    const s = "room:rec";
    const { epoch } = await streams.append(s, ids(5).map((id) => entry(id)));
    assert.deepEqual(await streams.recover(s, null), {
      epoch,
      top: 5,
      recovered: true,
      entries: [],
    });
    const r = await streams.recover(s, { epoch, pos: 2 });
    assert.equal(r.recovered, true);
    assert.equal(r.reason, undefined);
    assert.deepEqual(r.entries.map((e) => [e.pos, e.pushId]), [[3, "p2"], [4, "p3"], [5, "p4"]]);
    assert.deepEqual(r.entries[0].body, utf8.encode("body of p2"));
    assert.deepEqual(await streams.recover(s, { epoch, pos: 5 }), {
      epoch,
      top: 5,
      recovered: true,
      entries: [],
    }, "at the top: nothing missed");
    assert.equal((await streams.recover(s, { epoch, pos: 0 })).entries.length, 5);
    const changed = { epoch, top: 5, recovered: false, reason: "epoch_changed", entries: [] };
    assert.deepEqual(await streams.recover(s, { epoch: "other", pos: 2 }), changed);
    assert.deepEqual(await streams.recover(s, { epoch, pos: 6 }), changed, "ahead of top");
    assert.deepEqual(await streams.recover(s, { epoch: "", pos: 3 }), changed);
    await assert.rejects(() => streams.recover(s, { epoch, pos: -1 }), RangeError);
    await assert.rejects(() => streams.recover(s, { epoch, pos: 1.5 }), RangeError);
  });

  test(
    "streams: recover from {epoch: '', pos: 0} replays all from position 1, else window_passed",
    { size: 3 },
    async ({ streams }) => {
      const s = "mid:9";
      const { epoch } = await streams.append(s, [entry("a"), entry("b")]);
      const all = await streams.recover(s, { epoch: "", pos: 0 });
      assert.equal(all.recovered, true);
      assert.equal(all.epoch, epoch);
      assert.deepEqual(all.entries.map((e) => e.pos), [1, 2]);
      await streams.append(s, [entry("c"), entry("d")]);
      assert.deepEqual(await streams.recover(s, { epoch: "", pos: 0 }), {
        epoch,
        top: 4,
        recovered: false,
        reason: "window_passed",
        entries: [],
      });
    },
  );

  test(
    "streams: window_passed once the position is trimmed",
    { size: 3 },
    async ({ streams }) => {
      const s = "room:win";
      const { epoch } = await streams.append(s, ids(6).map((id) => entry(id)));
      // Kept: 4, 5, 6. From 3 needs 4 onwards: still there; from 2 needs 3: gone.
      const ok = await streams.recover(s, { epoch, pos: 3 });
      assert.deepEqual(ok.entries.map((e) => e.pos), [4, 5, 6]);
      for (const pos of [0, 1, 2]) {
        assert.deepEqual(await streams.recover(s, { epoch, pos }), {
          epoch,
          top: 6,
          recovered: false,
          reason: "window_passed",
          entries: [],
        }, `from ${pos}`);
      }
    },
  );

  test(
    "streams: an entry older than history.ttl is not replayed, a newer one is",
    { ttlMs: 1000 },
    async (h) => {
      const { streams } = h;
      const s = "room:old";
      const { epoch } = await streams.append(s, [entry("old")]);
      await passTime(h, 600); // real time on Redis: the TTL is what is under test
      await streams.append(s, [entry("new")]);
      await passTime(h, 500); // "old" is 1.1 s old, "new" 0.5 s
      assert.deepEqual(await streams.recover(s, { epoch, pos: 0 }), {
        epoch,
        top: 2,
        recovered: false,
        reason: "window_passed",
        entries: [],
      });
      const r = await streams.recover(s, { epoch, pos: 1 });
      assert.equal(r.recovered, true);
      assert.deepEqual(r.entries.map((e) => e.pushId), ["new"]);
      assert.deepEqual((await streams.range(s, { limit: 10 })).entries.map((e) => e.pushId), [
        "new",
      ]);
      assert.deepEqual(
        (await streams.range(s, { after: 0, limit: 1 })).entries.map((e) => e.pushId),
        ["new"],
        "a stale entry does not use up the limit",
      );
    },
  );

  test(
    "streams: a stream idle for history.ttl loses its history and epoch",
    { ttlMs: 1000 },
    async (h) => {
      const { streams } = h;
      const s = "mid:idle";
      const { epoch } = await streams.append(s, [entry("a"), entry("b")]);
      await passTime(h, 1100); // real time on Redis: the TTL is what is under test
      assert.deepEqual(await streams.recover(s, null), {
        epoch: "",
        top: 0,
        recovered: true,
        entries: [],
      });
      assert.equal((await streams.recover(s, { epoch, pos: 2 })).reason, "epoch_changed");
      const again = await streams.append(s, [entry("a")]);
      assert.notEqual(again.epoch, epoch);
      assert.deepEqual(again.positions, [1], "push id a is new in the new epoch");
    },
  );

  test("streams: a lost history starts a new epoch", {}, async (h) => {
    const { streams } = h;
    const s = "room:lost";
    const { epoch } = await streams.append(s, ids(3).map((id) => entry(id)));
    await h.lose(s);
    assert.equal((await streams.recover(s, { epoch, pos: 3 })).reason, "epoch_changed");
    const again = await streams.append(s, [entry("p2"), entry("p3")]);
    assert.notEqual(again.epoch, epoch);
    assert.deepEqual(again.positions, [1, 2]);
    assert.equal((await streams.recover(s, { epoch, pos: 3 })).reason, "epoch_changed");
  });

  // ------------------------------------------------------------------ streams: range

  test("streams: range gives the last entries or those after a position", {}, async (h) => {
    const { streams } = h;
    const s = "room:range";
    const { epoch } = await streams.append(s, ids(10).map((id) => entry(id)));
    const pos = async (o: { after?: number; limit: number }) =>
      (await streams.range(s, o)).entries.map((e) => e.pos);
    assert.deepEqual(await pos({ limit: 3 }), [8, 9, 10]);
    assert.deepEqual(await pos({ after: 0, limit: 3 }), [1, 2, 3]);
    assert.deepEqual(await pos({ after: 4, limit: 3 }), [5, 6, 7]);
    assert.deepEqual(await pos({ after: 8, limit: 5 }), [9, 10]);
    assert.deepEqual(await pos({ after: 10, limit: 5 }), []);
    assert.deepEqual(await pos({ after: 99, limit: 5 }), []);
    const r = await streams.range(s, { limit: 1 });
    assert.equal(r.epoch, epoch);
    assert.equal(r.top, 10);
    for (const bad of [0, -1, 1.5, MAX_RANGE_LIMIT + 1]) {
      await assert.rejects(() => streams.range(s, { limit: bad }), RangeError, `limit ${bad}`);
    }
    await assert.rejects(() => streams.range(s, { after: -1, limit: 1 }), RangeError);
  });

  // ------------------------------------------------------------------ streams: two jobs

  test(
    "streams: concurrent appends from two stores give unique, contiguous positions",
    {},
    async (h) => {
      const a = h.streams, b = await h.second();
      const s = "room:two-jobs";
      // 40 calls of 3 entries over 60 push ids: each id comes up twice or more, from both stores.
      const calls = Array.from(
        { length: 40 },
        (_, i) => [i, i + 20, (i * 7) % 60].map((n) => `q${n}`),
      );
      const answers = await Promise.all(
        calls.map((c, i) => (i % 2 ? a : b).append(s, c.map((id) => entry(id)))),
      );
      const epochs = new Set(answers.map((x) => x.epoch));
      assert.equal(epochs.size, 1, "one epoch");
      const posOf = new Map<string, number>();
      for (const [i, c] of calls.entries()) {
        for (const [j, id] of c.entries()) {
          const p = answers[i].positions[j];
          if (posOf.has(id)) assert.equal(p, posOf.get(id), `${id}: one position`);
          posOf.set(id, p);
        }
      }
      const distinct = new Set(calls.flat()).size;
      assert.deepEqual(
        [...posOf.values()].sort((x, y) => x - y),
        Array.from({ length: distinct }, (_, i) => i + 1),
        "no hole, no position twice",
      );
      const r = await b.recover(s, { epoch: [...epochs][0], pos: 0 });
      assert.equal(r.entries.length, distinct);
      for (const e of r.entries) assert.equal(posOf.get(e.pushId), e.pos);
    },
  );

  // ------------------------------------------------------------------ push status

  test("push status: created with every target pending", {}, async ({ status }) => {
    const before = Date.now();
    await status.create("push-1", ["mid:1", "key:k2", "mid:1", "key:k3"]);
    const s = await status.get("push-1");
    assert.ok(s);
    assert.ok(s.created >= before - 1000 && s.created <= Date.now() + 1000);
    assert.deepEqual({ ...s, created: 0 }, {
      id: "push-1",
      created: 0,
      targets: [
        { target: "mid:1", state: "pending", sent: 0, acked: 0 },
        { target: "key:k2", state: "pending", sent: 0, acked: 0 },
        { target: "key:k3", state: "pending", sent: 0, acked: 0 },
      ],
      acked: 0,
      pending: 3,
      offline: 0,
    });
    assert.equal(await status.get("push-unknown"), null);
    await status.create("push-none", []);
    assert.deepEqual((await status.get("push-none"))?.targets, []);
  });

  test(
    "push status: sent 0 is offline; later deliveries add; acked beats offline",
    {},
    async ({ status }) => {
      await status.create("p", ["mid:1", "mid:2", "key:k", "mid:3"]);
      await status.delivered("p", "mid:1", 0);
      await status.delivered("p", "mid:2", 2);
      await status.delivered("p", "key:k", 0);
      await status.delivered("p", "mid:9", 5); // not a target: ignored
      await status.delivered("nope", "mid:1", 5); // unknown push: ignored
      let s = await status.get("p");
      assert.deepEqual(s?.targets.map((t) => [t.target, t.state, t.sent]), [
        ["mid:1", "offline", 0],
        ["mid:2", "pending", 2],
        ["key:k", "offline", 0],
        ["mid:3", "pending", 0],
      ]);
      assert.deepEqual([s?.acked, s?.pending, s?.offline], [0, 2, 2]);
      await status.delivered("p", "mid:1", 1);
      await status.delivered("p", "mid:2", 3);
      // A device of mid 3's came online later and acked a replay; k acked after all.
      await status.acked([{ pushId: "p", key: "k", mid: 0 }]);
      s = await status.get("p");
      assert.deepEqual(s?.targets.map((t) => [t.target, t.state, t.sent, t.acked]), [
        ["mid:1", "pending", 1, 0],
        ["mid:2", "pending", 5, 0],
        ["key:k", "acked", 0, 1],
        ["mid:3", "pending", 0, 0],
      ]);
      assert.deepEqual([s?.acked, s?.pending, s?.offline], [1, 3, 0]);
      await assert.rejects(() => status.delivered("p", "mid:1", -1), RangeError);
    },
  );

  test(
    "push status: an ack counts for its key if a target, else its mid; once per key",
    {},
    async ({ status }) => {
      await status.create("p", ["mid:1", "key:solo", "mid:2"]);
      await status.delivered("p", "mid:1", 3);
      await status.acked([
        { pushId: "p", key: "phone", mid: 1 },
        { pushId: "p", key: "phone", mid: 1 }, // the same key again
        { pushId: "p", key: "laptop", mid: 1 },
        { pushId: "p", key: "solo", mid: 2 }, // key:solo is a target: counts there, not for mid 2
        { pushId: "p", key: "stranger", mid: 5 }, // neither a target
        { pushId: "unknown", key: "phone", mid: 1 },
        { pushId: "not a push id!", key: "phone", mid: 1 },
      ]);
      await status.acked([{ pushId: "p", key: "phone", mid: 1 }]); // a later batch
      const s = await status.get("p");
      assert.deepEqual(s?.targets, [
        { target: "mid:1", state: "acked", sent: 3, acked: 2 },
        { target: "key:solo", state: "acked", sent: 0, acked: 1 },
        { target: "mid:2", state: "pending", sent: 0, acked: 0 },
      ]);
      assert.deepEqual([s?.acked, s?.pending, s?.offline], [2, 1, 0]);
      assert.equal(await status.get("unknown"), null, "an ack creates no record");
    },
  );

  test("push status: one batch of acks across many pushes", {}, async ({ status }) => {
    const pushes = Array.from({ length: 30 }, (_, i) => `push-${i}`);
    await Promise.all(pushes.map((id, i) => status.create(id, [`mid:${i}`, `key:k${i}`])));
    await status.acked(pushes.flatMap((pushId, i) => [
      { pushId, key: `other${i}`, mid: i },
      { pushId, key: `k${i}`, mid: 999 },
    ]));
    for (const [i, id] of pushes.entries()) {
      const s = await status.get(id);
      assert.deepEqual(s?.targets.map((t) => [t.target, t.acked]), [
        [`mid:${i}`, 1],
        [`key:k${i}`, 1],
      ], id);
      assert.equal(s?.acked, 2);
    }
  });

  test(
    `push status: ${MAX_PUSH_TARGETS} targets are kept; more throw a RangeError`,
    {},
    async ({ status }) => {
      const targets = Array.from({ length: MAX_PUSH_TARGETS }, (_, i) => `mid:${i + 1}`);
      await status.create("many", targets);
      await status.delivered("many", "mid:10000", 0);
      await status.acked([{ pushId: "many", key: "x", mid: 1 }]);
      const s = await status.get("many");
      assert.equal(s?.targets.length, MAX_PUSH_TARGETS);
      assert.deepEqual([s?.acked, s?.pending, s?.offline], [1, MAX_PUSH_TARGETS - 2, 1]);
      assert.equal(s?.targets[9999].target, "mid:10000", "in creation order");
      await assert.rejects(
        () => status.create("too-many", [...targets, "key:one-more"]),
        RangeError,
      );
      assert.equal(await status.get("too-many"), null);
    },
  );

  test("push status: bad ids and targets throw a RangeError", {}, async ({ status }) => {
    for (const t of ["room:1", "mid:", "mid:x", "key:", "", "mid:1 "]) {
      await assert.rejects(() => status.create("p", [t]), RangeError, JSON.stringify(t));
    }
    for (const id of ["", "a b", "x".repeat(65), "{p}"]) {
      await assert.rejects(() => status.create(id, ["mid:1"]), RangeError, JSON.stringify(id));
    }
    // Keys are whatever the client named itself: any characters.
    await status.create("p", ["key:{a}:b c,d"]);
    await status.acked([{ pushId: "p", key: "{a}:b c,d", mid: 0 }]);
    assert.equal((await status.get("p"))?.acked, 1);
  });

  test(
    "push status: expires streams.status.ttl after creation",
    { statusTtlMs: 1000 },
    async (h) => {
      const { status } = h;
      await status.create("short", ["mid:1"]);
      await passTime(h, 600); // real time on Redis: the TTL is what is under test
      await status.delivered("short", "mid:1", 1);
      await status.acked([{ pushId: "short", key: "k", mid: 1 }]);
      assert.equal((await status.get("short"))?.acked, 1);
      await passTime(h, 500); // 1.1 s after creation; updates do not extend it
      assert.equal(await status.get("short"), null);
      await status.acked([{ pushId: "short", key: "k2", mid: 1 }]);
      assert.equal(await status.get("short"), null);
    },
  );
}

// The SDK's streams (client/streams.ts, docs/STREAMS.md "SDK") over real
// sockets, on both transports, against the in-process fake comet
// (tests/fixtures/fake_comet.ts) scripted frame by frame: the test plays the
// comet's side of StreamState, StreamMsg and the answers to StreamSync.

import assert from "node:assert/strict";
import {
  GoimClient,
  type GoimClientError,
  type GoimClientOptions,
  type PushMessage,
  type StreamsEvent,
  StreamTracker,
} from "../client/mod.ts";
import {
  type AuthToken,
  encodeAuthToken,
  encodeFrame,
  encodeStreamMsg,
  encodeStreamState,
  Op,
  type PushFrame,
  StreamFlag,
  StreamKind,
  type StreamMsgFields,
  type StreamStateEntry,
  text,
  utf8,
} from "../protocol/mod.ts";
import { eventually } from "./eventually.ts";
import { FakeComet, type FakeSession } from "./fixtures/fake_comet.ts";

const KINDS = ["tcp", "ws"] as const;
type Kind = typeof KINDS[number];

const ROOM = "room:live://1000";
const MID = "mid:42";
const TOKEN: AuthToken = {
  mid: 42,
  key: "k-42",
  room_id: "live://1000",
  platform: "test",
  accepts: [1000],
};

// ---- the comet's side

/** A StreamMsg as a push frame (the fake frames it for TCP or in op 9 for WS). */
function streamMsg(fields: StreamMsgFields, body = `m${fields.pos ?? fields.pushId}`): PushFrame {
  const inner = encodeFrame({ ver: 1, op: 1000, seq: 0, body: utf8(body) });
  return { op: Op.StreamMsg, body: encodeStreamMsg(fields, inner).subarray(16) };
}

function roomMsg(epoch: string, pos: number, extra: Partial<StreamMsgFields> = {}): PushFrame {
  return streamMsg({
    kind: StreamKind.Room,
    stream: ROOM,
    epoch,
    pos,
    pushId: `r${pos}`,
    ...extra,
  });
}

function midMsg(epoch: string, pos: number, extra: Partial<StreamMsgFields> = {}): PushFrame {
  return streamMsg({ kind: StreamKind.Mid, stream: MID, epoch, pos, pushId: `m${pos}`, ...extra });
}

function state(...entries: StreamStateEntry[]): PushFrame {
  return { op: Op.StreamState, body: encodeStreamState(entries) };
}

/** Bodies (parsed JSON) of the client frames with `op` the fake received so far. */
function sent<T>(s: FakeSession, op: number): T[] {
  return s.frames.filter((f) => f.op === op).map((f) => JSON.parse(text(f.body)) as T);
}

type Recover = { stream: string; epoch: string; pos: number };
const syncs = (s: FakeSession) => sent<{ recover: Recover[] }>(s, Op.StreamSync);
const acks = (s: FakeSession) => sent<{ ids: string[] }>(s, Op.StreamAck);
/** The op 7 token as sent (the fake's parsed copy drops fields it does not know). */
const rawToken = (s: FakeSession) =>
  JSON.parse(text(s.frames[0].body)) as AuthToken & { streams?: { recover?: Recover[] } };

// ---- the client's side

/** Everything the client emitted, in order. */
class Seen {
  messages: PushMessage[] = [];
  losses: StreamsEvent[] = [];
  errors: unknown[] = [];
  constructor(client: GoimClient) {
    client.on("message", (m) => this.messages.push(m));
    client.on("streams", (e) => this.losses.push(e));
    client.on("error", (e) => this.errors.push(e));
  }
  /** `stream:pos` (or `key:id`) of every message, for order checks. */
  get order(): string[] {
    return this.messages.map((m) => m.stream ? `${m.stream}:${m.pos}` : `key:${m.pushId}`);
  }
  async messagesAtLeast(n: number): Promise<PushMessage[]> {
    await eventually(
      () => this.messages.length >= n,
      `${n} messages (got ${this.messages.length})`,
    );
    return this.messages;
  }
}

async function withStreams(
  kind: Kind,
  opts: Partial<GoimClientOptions>,
  fn: (client: GoimClient, comet: FakeComet, seen: Seen) => Promise<void>,
): Promise<void> {
  const comet = await FakeComet.start();
  const client = new GoimClient({
    url: comet.url(kind),
    token: TOKEN,
    streams: true,
    reconnect: { initialDelayMs: 10, maxDelayMs: 50, jitter: "none" },
    ...opts,
  });
  const seen = new Seen(client);
  try {
    await fn(client, comet, seen);
  } finally {
    await client.close();
    await comet.close();
  }
}

// Connects and plays the comet's answer to a first connect: both streams' state.
async function connectFresh(
  client: GoimClient,
  comet: FakeComet,
  index = 0,
  room: Partial<StreamStateEntry> = {},
  mid: Partial<StreamStateEntry> = {},
): Promise<FakeSession> {
  await client.connect();
  const s = await comet.session(index);
  await s.push([
    state(
      { stream: ROOM, epoch: "E1", pos: 0, ...room },
      { stream: MID, epoch: "M1", pos: 0, ...mid },
    ),
  ]);
  return s;
}

Deno.test("token: without streams it encodes to the same bytes as before", () => {
  const goim = '{"mid":42,"key":"k-42","room_id":"live://1000","platform":"test","accepts":[1000]}';
  assert.equal(text(encodeAuthToken(TOKEN)), goim);
  assert.equal(
    text(encodeAuthToken({ ...TOKEN, streams: {} })),
    goim.slice(0, -1) + ',"streams":{}}',
  );
});

for (const kind of KINDS) {
  Deno.test(`${kind}: without streams nothing changes (no token field, ops as messages)`, async () => {
    await withStreams(kind, { streams: undefined }, async (client, comet, seen) => {
      await client.connect();
      const s = await comet.session(0);
      assert.deepEqual(s.frames[0].body, encodeAuthToken(TOKEN));
      await s.push([roomMsg("E1", 1)]);
      const [m] = await seen.messagesAtLeast(1);
      assert.equal(m.op, Op.StreamMsg);
      assert.equal(m.stream, undefined);
      assert.deepEqual(client.positions(), {});
      assert.equal(client.streamStats().delivered, 0);
    });
  });

  Deno.test(`${kind}: opted in: token streams {}, in-order delivery, duplicates dropped`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s = await connectFresh(client, comet, 0, { pos: 3 });
      assert.deepEqual(rawToken(s).streams, {});
      // A reserved op that is not a push (a goim-style echo) is no message.
      await s.push([{ op: Op.StreamAck, body: new Uint8Array(0) }]);
      await s.push([roomMsg("E1", 4), roomMsg("E1", 5), roomMsg("E1", 4), roomMsg("E1", 2)]);
      await s.push([midMsg("M1", 1, { flags: StreamFlag.Replayed }), roomMsg("E1", 6)]);
      await seen.messagesAtLeast(4);
      assert.deepEqual(seen.order, [`${ROOM}:4`, `${ROOM}:5`, `${MID}:1`, `${ROOM}:6`]);
      const [m4, , m1] = seen.messages;
      assert.deepEqual(
        { op: m4.op, body: text(m4.body), ver: m4.ver, seq: m4.seq, epoch: m4.epoch },
        { op: 1000, body: "m4", ver: 1, seq: 0, epoch: "E1" },
      );
      assert.equal(m4.pushId, "r4");
      assert.equal(m4.replayed, false);
      assert.equal(m1.replayed, true);
      assert.equal(m4.ack, undefined, "not ack-requested: no ack()");
      assert.equal(client.streamStats().duplicates, 2);
      assert.deepEqual(client.positions(), {
        [ROOM]: { epoch: "E1", pos: 6 },
        [MID]: { epoch: "M1", pos: 1 },
      });
      assert.equal(syncs(s).length, 0);
      assert.equal(acks(s).length, 0);
    });
  });

  Deno.test(`${kind}: a gap is held, synced from the held position, filled in order`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      await s.push([roomMsg("E1", 1), roomMsg("E1", 4), roomMsg("E1", 3), roomMsg("E1", 5)]);
      await eventually(() => syncs(s).length === 1, "a StreamSync");
      assert.deepEqual(syncs(s)[0], { recover: [{ stream: ROOM, epoch: "E1", pos: 1 }] });
      assert.deepEqual(seen.order, [`${ROOM}:1`], "nothing after the gap is delivered");
      assert.equal(client.streamStats().held, 3);
      // More live messages while the sync is in flight: held, no second sync.
      await s.push([roomMsg("E1", 6)]);
      await eventually(() => client.streamStats().held === 4, "4 held");
      // The comet's answer: state, then the replay (3 is replayed again: a duplicate).
      const replayed = { flags: StreamFlag.Replayed };
      await s.push([
        state({ stream: ROOM, epoch: "E1", pos: 5, recovered: true, replayed: 4 }),
        roomMsg("E1", 2, replayed),
        roomMsg("E1", 3, replayed),
      ]);
      await seen.messagesAtLeast(6);
      assert.deepEqual(seen.order, [1, 2, 3, 4, 5, 6].map((p) => `${ROOM}:${p}`));
      // 3 was held live: that copy goes first, the replayed one is a duplicate.
      assert.deepEqual(seen.messages.map((m) => m.replayed), [
        false,
        true,
        false,
        false,
        false,
        false,
      ]);
      assert.equal(syncs(s).length, 1);
      const st = client.streamStats();
      assert.deepEqual([st.gaps, st.gapsLost, st.held, st.syncs, st.losses], [1, 0, 0, 1, 0]);
      assert.equal(seen.losses.length, 0);
    });
  });

  Deno.test(`${kind}: an epoch change is a streams event; delivery restarts there`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s = await connectFresh(client, comet, 0, { epoch: "" }); // no history yet
      // The first message's epoch is not a change.
      await s.push([roomMsg("E1", 1), roomMsg("E1", 2), roomMsg("E2", 7), roomMsg("E2", 8)]);
      await seen.messagesAtLeast(4);
      assert.deepEqual(seen.order, [1, 2, 7, 8].map((p) => `${ROOM}:${p}`));
      assert.deepEqual(seen.losses, [
        { stream: ROOM, recovered: false, reason: "epoch_changed", epoch: "E2", pos: 6 },
      ]);
      assert.deepEqual(client.positions()[ROOM], { epoch: "E2", pos: 8 });
    });
  });

  Deno.test(`${kind}: a reconnect names the positions held; not recovered → event`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s0 = await connectFresh(client, comet);
      await s0.push([roomMsg("E1", 1), roomMsg("E1", 2), midMsg("M1", 1)]);
      await seen.messagesAtLeast(3);
      await s0.close();
      const s1 = await comet.session(1);
      assert.deepEqual(rawToken(s1).streams, {
        recover: [{ stream: ROOM, epoch: "E1", pos: 2 }, { stream: MID, epoch: "M1", pos: 1 }],
      });
      // The room was recovered (with a replay), the mid's history was trimmed.
      await s1.push([
        state(
          { stream: ROOM, epoch: "E1", pos: 3, recovered: true, replayed: 1 },
          { stream: MID, epoch: "M1", pos: 9, recovered: false, reason: "window_passed" },
        ),
        roomMsg("E1", 3, { flags: StreamFlag.Replayed }),
        midMsg("M1", 10),
      ]);
      await seen.messagesAtLeast(5);
      assert.deepEqual(seen.order.slice(3), [`${ROOM}:3`, `${MID}:10`]);
      assert.deepEqual(seen.losses, [
        { stream: MID, recovered: false, reason: "window_passed", epoch: "M1", pos: 9 },
      ]);
      assert.equal(syncs(s1).length, 0);
    });
  });

  Deno.test(`${kind}: acks go after the listeners ran, ≤ 64 ids a frame`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      // Each listener call writes an op 4 first: on the wire it precedes any ack of that message.
      client.on("message", (m) => void client.send(`done ${m.pushId}`).catch(() => {}));
      const s = await connectFresh(client, comet);
      const n = 70;
      const batch = Array.from(
        { length: n },
        (_, i) => midMsg("M1", i + 1, { flags: StreamFlag.Ack }),
      );
      await s.push(batch);
      await seen.messagesAtLeast(n);
      await eventually(() => acks(s).flatMap((a) => a.ids).length === n, `${n} ids acked`);
      const frames = acks(s);
      assert.deepEqual(frames.map((a) => a.ids.length), [64, 6]);
      assert.deepEqual(frames.flatMap((a) => a.ids), batch.map((_, i) => `m${i + 1}`));
      // Order on the wire: every id's "done" op 4 before the ack frame carrying it.
      const wire = s.frames.filter((f) => f.op === Op.SendMsg || f.op === Op.StreamAck);
      const done = new Set<string>();
      for (const f of wire) {
        if (f.op === Op.SendMsg) done.add(text(f.body).slice(5));
        else for (const id of JSON.parse(text(f.body)).ids) assert.ok(done.has(id), id);
      }
      // A re-sent duplicate (its ack was lost) is dropped and acked again.
      await s.push([midMsg("M1", 3, { flags: StreamFlag.Ack | StreamFlag.Resent })]);
      await eventually(() => acks(s).length === 3, "the duplicate's ack");
      assert.deepEqual(acks(s)[2], { ids: ["m3"] });
      assert.equal(seen.messages.length, n);
      assert.equal(client.streamStats().acks, n + 1);
    });
  });

  Deno.test(`${kind}: autoAck false: ack() acks once; unacked duplicates are not acked`, async () => {
    await withStreams(kind, { streams: { autoAck: false } }, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      await s.push([midMsg("M1", 1, { flags: StreamFlag.Ack }), midMsg("M1", 2)]);
      const [m1, m2] = await seen.messagesAtLeast(2);
      assert.equal(typeof m1.ack, "function");
      assert.equal(m2.ack, undefined);
      // Re-sent before the app acked: dropped, not acked.
      await s.push([midMsg("M1", 1, { flags: StreamFlag.Ack | StreamFlag.Resent })]);
      await eventually(() => client.streamStats().duplicates === 1, "the duplicate dropped");
      m1.ack!();
      m1.ack!();
      await eventually(() => acks(s).length === 1, "the ack");
      assert.deepEqual(acks(s)[0], { ids: ["m1"] });
      // Re-sent after: acked again.
      await s.push([midMsg("M1", 1, { flags: StreamFlag.Ack | StreamFlag.Resent })]);
      await eventually(() => acks(s).length === 2, "the re-ack");
      assert.deepEqual(acks(s)[1], { ids: ["m1"] });
      assert.equal(seen.messages.length, 2);
    });
  });

  Deno.test(`${kind}: key pushes are delivered once per push id`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      const key = (id: string) =>
        streamMsg({ kind: StreamKind.Key, flags: StreamFlag.Ack, pushId: id });
      await s.push([key("a"), key("b"), key("a")]);
      await eventually(() => acks(s).flatMap((a) => a.ids).length === 3, "3 acks");
      assert.deepEqual(seen.order, ["key:a", "key:b"]);
      assert.deepEqual(acks(s).flatMap((a) => a.ids).sort(), ["a", "a", "b"]);
      assert.equal(seen.messages[0].stream, undefined);
      assert.equal(client.streamStats().duplicates, 1);
    });
  });

  Deno.test(`${kind}: a redelivered broadcast batch is dropped frame by frame`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      // What the comet sends for a broadcast with push ids: kind 3, flags 0, one batch.
      const batch = (ids: string[]) =>
        ids.map((id) => streamMsg({ kind: StreamKind.Key, pushId: id }, `b-${id}`));
      const first = Array.from({ length: 40 }, (_, i) => `b${i}`);
      await s.push(batch(first));
      // Job crashed before committing: the same batch again, with two new ones behind it.
      await s.push(batch([...first, "n1", "n2"]));
      await s.push([roomMsg("E1", 1)]); // a fence: everything before it was handled
      await seen.messagesAtLeast(43);
      assert.deepEqual(
        seen.order,
        [...first, "n1", "n2"].map((id) => `key:${id}`).concat(`${ROOM}:1`),
      );
      assert.deepEqual(
        seen.messages.slice(0, 42).map((m) => text(m.body)),
        [...first, "n1", "n2"].map((id) => `b-${id}`),
      );
      assert.ok(seen.messages.every((m) => m.ack === undefined), "no ack asked");
      assert.equal(client.streamStats().duplicates, 40);
      assert.equal(acks(s).length, 0);
    });
  });

  for (
    const [name, bad] of [
      ["a truncated StreamMsg", { op: Op.StreamMsg, body: new Uint8Array([1, 0, 0]) }],
      ["a StreamState that is not JSON", { op: Op.StreamState, body: utf8("{streams") }],
      [
        "a StreamState with a bad position",
        {
          op: Op.StreamState,
          body: utf8('{"streams":[{"stream":"mid:42","epoch":"M","pos":-1}]}'),
        },
      ],
      ["a room StreamMsg at position 0", roomMsg("E1", 0)],
      [
        "a StreamMsg wrapping a protocol op",
        {
          op: Op.StreamMsg,
          body: encodeStreamMsg(
            { kind: StreamKind.Room, stream: ROOM, epoch: "E1", pos: 1 },
            encodeFrame({ ver: 1, op: Op.AuthReply, seq: 0 }),
          ).subarray(16),
        },
      ],
    ] as const
  ) {
    Deno.test(`${kind}: ${name} fails the connection with a protocol error`, async () => {
      await withStreams(kind, {}, async (client, comet, seen) => {
        const s = await connectFresh(client, comet);
        const dc = client.once("disconnect");
        await s.push([bad]);
        const d = await dc;
        assert.equal(d.error.code, "protocol");
        assert.match(d.error.message, /bad_stream|protocol|wire contract/);
        assert.equal(d.willReconnect, true);
        assert.equal((seen.errors[0] as GoimClientError).code, "protocol");
        assert.equal(seen.messages.length, 0);
        await comet.session(1); // and it reconnects
      });
    });
  }

  Deno.test(`${kind}: past holdMax the gap is given up: event, then delivery`, async () => {
    await withStreams(kind, { streams: { holdMax: 3 } }, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      await s.push([roomMsg("E1", 1), roomMsg("E1", 3), roomMsg("E1", 4), roomMsg("E1", 5)]);
      await eventually(() => client.streamStats().held === 3, "3 held");
      await s.push([roomMsg("E1", 6)]);
      await seen.messagesAtLeast(5);
      assert.deepEqual(seen.order, [1, 3, 4, 5, 6].map((p) => `${ROOM}:${p}`));
      assert.deepEqual(seen.losses, [
        { stream: ROOM, recovered: false, reason: "gap", epoch: "E1", pos: 2 },
      ]);
      assert.deepEqual(client.streamStats().held, 0);
    });
  });

  Deno.test(`${kind}: an unanswered sync gives the gap up after holdTimeoutMs`, async () => {
    await withStreams(kind, { streams: { holdTimeoutMs: 100 } }, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      const t0 = performance.now();
      await s.push([roomMsg("E1", 2)]);
      await eventually(() => seen.losses.length === 1, "the gap event");
      const waited = performance.now() - t0;
      assert.ok(waited >= 90, `gave up after ${waited} ms`);
      assert.deepEqual(seen.losses[0], {
        stream: ROOM,
        recovered: false,
        reason: "gap",
        epoch: "E1",
        pos: 1,
      });
      assert.deepEqual(seen.order, [`${ROOM}:2`]);
      // The sync slot was released: a new gap syncs again.
      await s.push([roomMsg("E1", 4)]);
      await eventually(() => syncs(s).length === 2, "a second sync");
      assert.deepEqual(syncs(s)[1].recover, [{ stream: ROOM, epoch: "E1", pos: 2 }]);
    });
  });

  Deno.test(`${kind}: one sync in flight; the next one waits for its answer`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      await s.push([roomMsg("E1", 2), midMsg("M1", 3)]);
      await eventually(() => client.streamStats().held === 2, "2 held");
      assert.deepEqual(syncs(s).map((x) => x.recover.map((r) => r.stream)), [[ROOM]]);
      await s.push([
        state({ stream: ROOM, epoch: "E1", pos: 2, recovered: true, replayed: 1 }),
        roomMsg("E1", 1, { flags: StreamFlag.Replayed }),
      ]);
      await eventually(() => syncs(s).length === 2, "the queued sync");
      assert.deepEqual(syncs(s)[1], { recover: [{ stream: MID, epoch: "M1", pos: 0 }] });
      await s.push([
        state({ stream: MID, epoch: "M1", pos: 9, recovered: false, reason: "window_passed" }),
      ]);
      await eventually(() => seen.losses.length === 1, "the mid's loss");
      assert.deepEqual(seen.order, [`${ROOM}:1`, `${ROOM}:2`]);
      assert.deepEqual(seen.losses.map((l) => [l.stream, l.reason, l.pos]), [
        [MID, "window_passed", 9],
      ]);
      assert.equal(client.streamStats().held, 0, "mid 3 is before the new baseline: dropped");
    });
  });

  Deno.test(`${kind}: a replay cut short is synced again from where it ended`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      await s.push([roomMsg("E1", 1), roomMsg("E1", 9)]);
      await eventually(() => syncs(s).length === 1, "the first sync");
      const replayed = { flags: StreamFlag.Replayed };
      // The comet sends what fits: 3 of the 7 missing.
      await s.push([
        state({ stream: ROOM, epoch: "E1", pos: 9, recovered: true, replayed: 3 }),
        ...[2, 3, 4].map((p) => roomMsg("E1", p, replayed)),
      ]);
      await eventually(() => syncs(s).length === 2, "a sync after the replay");
      assert.deepEqual(syncs(s)[1].recover, [{ stream: ROOM, epoch: "E1", pos: 4 }]);
      await s.push([
        state({ stream: ROOM, epoch: "E1", pos: 9, recovered: true, replayed: 4 }),
        ...[5, 6, 7, 8].map((p) => roomMsg("E1", p, replayed)),
      ]);
      await seen.messagesAtLeast(9);
      assert.deepEqual(seen.order, [1, 2, 3, 4, 5, 6, 7, 8, 9].map((p) => `${ROOM}:${p}`));
      assert.equal(syncs(s).length, 2);
      assert.equal(seen.losses.length, 0);
    });
  });

  Deno.test(`${kind}: a loss past held messages drops them; the rest drains in order`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      await s.push([roomMsg("E1", 1), roomMsg("E1", 3), roomMsg("E1", 4), roomMsg("E1", 6)]);
      await eventually(() => syncs(s).length === 1, "a StreamSync");
      assert.equal(client.streamStats().held, 3);
      // 2 left the window: delivery continues after 4, so the held 3 and 4 go.
      await s.push([
        state({ stream: ROOM, epoch: "E1", pos: 4, recovered: false, reason: "window_passed" }),
      ]);
      await eventually(() => seen.losses.length === 1, "a streams event");
      assert.deepEqual(seen.losses.map((l) => [l.stream, l.reason, l.epoch, l.pos]), [
        [ROOM, "window_passed", "E1", 4],
      ]);
      assert.equal(client.streamStats().held, 1, "only 6 is still held");
      await s.push([roomMsg("E1", 5), roomMsg("E1", 7)]);
      await seen.messagesAtLeast(4);
      assert.deepEqual(seen.order, [1, 5, 6, 7].map((p) => `${ROOM}:${p}`));
      assert.equal(client.streamStats().held, 0);
      assert.deepEqual(client.positions()[ROOM], { epoch: "E1", pos: 7 });
    });
  });

  Deno.test(`${kind}: "unavailable" keeps the position held; a later gap syncs`, async () => {
    await withStreams(kind, {}, async (client, comet, seen) => {
      const s0 = await connectFresh(client, comet);
      await s0.push([roomMsg("E1", 1), roomMsg("E1", 2)]);
      await seen.messagesAtLeast(2);
      await s0.close();
      const s1 = await comet.session(1);
      // The store did not answer the comet in time.
      await s1.push([
        state(
          { stream: ROOM, epoch: "E1", pos: 2, recovered: false, reason: "unavailable" },
          { stream: MID, epoch: "", pos: 0, recovered: false, reason: "unavailable" },
        ),
        roomMsg("E1", 3),
      ]);
      await seen.messagesAtLeast(3);
      assert.deepEqual(seen.losses.map((l) => [l.stream, l.reason, l.epoch, l.pos]), [
        [ROOM, "unavailable", "E1", 2],
        [MID, "unavailable", "M1", 0],
      ]);
      assert.deepEqual(client.positions(), {
        [ROOM]: { epoch: "E1", pos: 3 },
        [MID]: { epoch: "M1", pos: 0 },
      });
      await s1.push([midMsg("M1", 4)]);
      await eventually(() => syncs(s1).length === 1, "a sync for the mid's gap");
      assert.deepEqual(syncs(s1)[0].recover, [{ stream: MID, epoch: "M1", pos: 0 }]);
    });
  });

  Deno.test(`${kind}: a comet that never answers gets at most two syncs`, async () => {
    await withStreams(kind, { streams: { holdTimeoutMs: 100 } }, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      await s.push([roomMsg("E1", 2), midMsg("M1", 2)]);
      // The mid's sync waits until the room's is stale, then goes: two in flight.
      await eventually(() => client.streamStats().syncs === 2, "the second sync");
      await s.push([roomMsg("E1", 4)]);
      // That gap's hold is given up after the second sync went stale: a third could have gone.
      await eventually(() => seen.losses.length === 3, "three gaps given up");
      assert.equal(client.streamStats().syncs, 2);
      // An answer frees a slot: the next gap syncs at once.
      await s.push([
        state({ stream: ROOM, epoch: "E1", pos: 4, recovered: true, replayed: 0 }),
        roomMsg("E1", 6),
      ]);
      await eventually(() => client.streamStats().syncs === 3, "a sync after the answer");
      assert.deepEqual(syncs(s)[2].recover, [{ stream: ROOM, epoch: "E1", pos: 4 }]);
    });
  });

  Deno.test(`${kind}: back into a room it has a position for, it syncs from there`, async () => {
    const seeds = { "room:live://2000": { epoch: "R2", pos: 5 } };
    await withStreams(kind, { streams: { positions: seeds } }, async (client, comet, seen) => {
      const s = await connectFresh(client, comet);
      assert.deepEqual(rawToken(s).streams, {}, "the seed is not this room's");
      await client.changeRoom("live://2000");
      // After op 13, the comet sends the new room's state (not named: state only).
      await s.push([state({ stream: "room:live://2000", epoch: "R2", pos: 8 })]);
      await eventually(() => syncs(s).length === 1, "a sync for the room");
      assert.deepEqual(syncs(s)[0].recover, [{ stream: "room:live://2000", epoch: "R2", pos: 5 }]);
      const r2 = (pos: number) =>
        streamMsg({ kind: StreamKind.Room, stream: "room:live://2000", epoch: "R2", pos });
      await s.push([
        state({ stream: "room:live://2000", epoch: "R2", pos: 8, recovered: true, replayed: 3 }),
        r2(6),
        r2(7),
        r2(8),
      ]);
      await seen.messagesAtLeast(3);
      assert.deepEqual(seen.order, [6, 7, 8].map((p) => `room:live://2000:${p}`));
      // A reconnect names the new room's position.
      await s.close();
      const s1 = await comet.session(1);
      assert.deepEqual(rawToken(s1).streams?.recover?.[0], {
        stream: "room:live://2000",
        epoch: "R2",
        pos: 8,
      });
    });
  });
}

Deno.test("seeded positions go into the first token; bad seeds are refused", async () => {
  const positions = { [ROOM]: { epoch: "E9", pos: 41 }, "room:other": { epoch: "X", pos: 1 } };
  await withStreams("tcp", { streams: { positions } }, async (client, comet) => {
    assert.deepEqual(client.positions(), positions);
    await client.connect();
    const s = await comet.session(0);
    assert.deepEqual(rawToken(s).streams, { recover: [{ stream: ROOM, epoch: "E9", pos: 41 }] });
  });
  // Mid 0 is no user: it has no stream to name.
  const anon = { "mid:0": { epoch: "Z", pos: 3 } };
  await withStreams("tcp", {
    token: { ...TOKEN, mid: 0, room_id: "" },
    streams: { positions: anon },
  }, async (client, comet) => {
    await client.connect();
    assert.deepEqual(rawToken(await comet.session(0)).streams, {});
  });
  const bad = (p: unknown) =>
    assert.throws(
      () =>
        new GoimClient({
          url: "tcp://127.0.0.1:1",
          token: TOKEN,
          streams: { positions: p as Record<string, { epoch: string; pos: number }> },
        }),
      RangeError,
    );
  bad({ [ROOM]: { epoch: "E", pos: -1 } });
  bad({ [ROOM]: { epoch: "é", pos: 1 } });
  bad({ [ROOM]: { epoch: "x".repeat(65), pos: 1 } });
  bad({ ["room:" + "x".repeat(300)]: { epoch: "E", pos: 1 } });
  bad({ [ROOM]: null });
  assert.throws(
    () => new GoimClient({ url: "tcp://127.0.0.1:1", token: TOKEN, streams: { holdMax: 0 } }),
    RangeError,
  );
});

Deno.test("past maxStreams with every other stream held, a new stream's message is delivered", () => {
  const got: string[] = [];
  const sent: number[] = [];
  const tracker = new StreamTracker({ maxStreams: 1 }, {
    deliver: (m) => got.push(`${m.stream}@${m.pos}`),
    lost() {},
  });
  tracker.attach({ send: (op: number) => void sent.push(op) });
  const msg = (stream: string, pos: number) => {
    const f = streamMsg({ kind: StreamKind.Room, stream, epoch: "E1", pos, pushId: "" });
    tracker.frame({ ver: 1, seq: 0, ...f });
  };
  msg("room:a", 1);
  msg("room:a", 3); // a gap: room:a is held (and synced), so it cannot be forgotten
  assert.ok(sent.includes(Op.StreamSync), "a StreamSync went out for the gap");
  msg("room:b", 1); // used to evict room:b itself, then throw reading it back
  assert.deepEqual(got, ["room:a@1", "room:b@1"]);
  tracker.detach();
});

Deno.test("past maxStreams the least recently moved stream's position is forgotten", () => {
  const tracker = new StreamTracker({ maxStreams: 2 }, { deliver() {}, lost() {} });
  tracker.attach({ send() {} });
  const msg = (stream: string, pos: number) => {
    const f = streamMsg({ kind: StreamKind.Room, stream, epoch: "E1", pos, pushId: "" });
    tracker.frame({ ver: 1, seq: 0, ...f });
  };
  msg("room:a", 1);
  msg("room:b", 1);
  msg("room:a", 2);
  msg("room:a", 3); // a moves again while the newest
  msg("room:c", 1); // b is the least recently moved
  assert.deepEqual(tracker.positions(), {
    "room:a": { epoch: "E1", pos: 3 },
    "room:c": { epoch: "E1", pos: 1 },
  });
  msg("room:c", 2);
  msg("room:b", 5); // b starts over from its first message; a goes
  assert.deepEqual(Object.keys(tracker.positions()), ["room:c", "room:b"]);
  assert.deepEqual(tracker.positions()["room:b"], { epoch: "E1", pos: 5 });
  tracker.detach();
});

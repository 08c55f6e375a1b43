/**
 * The comet's side of streams (docs/STREAMS.md, comet/streams.ts) over real
 * sockets, against a fake logic whose Connect opts a token in when it has
 * a `streams` field, and a fake `goim.logic.Streams` (Recover, Acks) the
 * test controls: recovery and the hold, replay order and duplicates, live
 * room and mid pushes, acks and re-sends, StreamSync, ChangeRoom, and
 * every hostile case the brief names (sync flood, ack flood, other
 * connections' ids, a client that never acks, a Recover that never
 * answers, Acks while logic is down, a 1000-entry answer).
 *
 * "Does not arrive" is checked with a fence (a later push that must arrive
 * after it), never a sleep. Real time passes only where a timeout is under
 * test (ack_timeout, streams.recover.timeout), awaited as an event.
 */

import assert from "node:assert/strict";
import { Comet, type CometAddrs } from "../comet/comet.ts";
import type { Config } from "../infra/config.ts";
import { createLogger } from "../infra/log.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { grpcStatus, RpcError } from "../proto/grpc.ts";
import type {
  AcksReply,
  AcksReq,
  BroadcastReq,
  ConnectReply,
  ConnectReq,
  RecoverReply,
  RecoverReq,
  StreamResult,
} from "../proto/messages.ts";
import { MAX_ACKS_PER_CALL, type StreamsApi } from "../proto/streams.ts";
import {
  decodeFrame,
  decodeStreamMsg,
  encodeBatch,
  encodeFrame,
  encodeStreamAck,
  encodeStreamSync,
  Op,
  parseStreamsOption,
  parseStreamState,
  ReasonCode,
  StreamFlag,
  StreamKind,
  type StreamMsg,
  type StreamStateEntry,
} from "../protocol/mod.ts";
import {
  cometConfig,
  eventually,
  FakeLogic,
  type Received,
  sample,
  scrape,
  TcpTestClient,
  type TestClient,
  WsTestClient,
} from "./fixtures/comet_fixtures.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const proto = (op: number, body: string) => ({ ver: 1, op, seq: 0, body: enc.encode(body) });

/** The inner frames of an op 9 proto, as job's room batches carry them. */
function roomBatch(bodies: string[], op = 1000) {
  return {
    ver: 1,
    op: Op.Raw,
    seq: 0,
    body: encodeBatch(bodies.map((b) => ({ op, body: enc.encode(b) }))).tcp,
  };
}

/** FakeLogic whose Connect opts the token in (fields 105, 106) when it has `streams`. */
class StreamsLogic extends FakeLogic {
  override async Connect(req: ConnectReq): Promise<ConnectReply> {
    const reply = await super.Connect(req);
    const token = JSON.parse(text(req.token));
    if (token.streams !== undefined) {
      const opt = parseStreamsOption(token.streams);
      reply.streams = true;
      reply.recover = opt.recover;
    }
    return reply;
  }
}

interface PendingRecover {
  req: RecoverReq;
  resolve: (r: RecoverReply) => void;
  reject: (e: Error) => void;
}

/** A `goim.logic.Streams` the test drives. */
class FakeStreams implements StreamsApi {
  readonly recovers: RecoverReq[] = [];
  readonly acks: AcksReq[] = [];
  /** answer: at once from `result`; hold: until the test settles it; hang: never; fail: rejects. */
  mode: "answer" | "hold" | "hang" | "fail" = "answer";
  acksFail = false;
  readonly pending: PendingRecover[] = [];
  /** Results by stream; a stream not here answers epoch "e1", top 0. */
  readonly results = new Map<string, Partial<StreamResult>>();

  result(stream: string): StreamResult {
    return {
      stream,
      epoch: "e1",
      top: 0,
      recovered: true,
      reason: "",
      entries: [],
      ...this.results.get(stream),
    };
  }

  answer(req: RecoverReq): RecoverReply {
    return {
      results: [
        ...req.streams.map((s) => {
          const r = this.result(s.stream);
          return { ...r, entries: r.entries.filter((e) => e.pos > s.pos) };
        }),
        ...req.state_only.map((s) => {
          const r = this.result(s);
          return { ...r, entries: [], recovered: true, reason: "" };
        }),
      ],
    };
  }

  Recover(req: RecoverReq): Promise<RecoverReply> {
    this.recovers.push(req);
    switch (this.mode) {
      case "answer":
        return Promise.resolve(this.answer(req));
      case "fail":
        return Promise.reject(new RpcError(grpcStatus.UNAVAILABLE, "logic down"));
      default:
        return new Promise((resolve, reject) => {
          if (this.mode === "hold") this.pending.push({ req, resolve, reject });
        });
    }
  }

  Acks(req: AcksReq): Promise<AcksReply> {
    this.acks.push(req);
    if (this.acksFail) return Promise.reject(new RpcError(grpcStatus.UNAVAILABLE, "logic down"));
    return Promise.resolve({});
  }

  get ackedIds(): string[] {
    return this.acks.flatMap((r) => r.acks.map((a) => a.push_id));
  }
}

interface Harness {
  comet: Comet;
  addrs: CometAddrs;
  logic: StreamsLogic;
  streams: FakeStreams;
  config: Config;
  close(): Promise<void>;
}

async function start(sets: string[] = []): Promise<Harness> {
  const config = cometConfig([
    "comet.streams.ack_timeout=200ms",
    "streams.recover.timeout=300ms",
    ...sets,
  ]);
  const logic = new StreamsLogic();
  const streams = new FakeStreams();
  const registry = new MemoryRegistry();
  const comet = new Comet({
    config,
    logic,
    registry,
    streams,
    log: createLogger({ level: "error" }),
  });
  const addrs = await comet.start({ grpc: false });
  return {
    comet,
    addrs,
    logic,
    streams,
    config,
    async close() {
      await comet.shutdown("test");
      await registry.close();
    },
  };
}

const CONNECT = [
  ["tcp", (h: Harness) => TcpTestClient.connect(h.addrs.tcp[0])],
  ["ws", (h: Harness) => WsTestClient.connect(h.addrs.ws[0])],
] as const;

/** A decoded StreamMsg with its inner frame's op and body text. */
interface Msg extends StreamMsg {
  op: number;
  body: string;
}

function msg(f: Received): Msg {
  const m = decodeStreamMsg(f.body);
  const inner = decodeFrame(m.frame);
  return { ...m, op: inner.op, body: text(inner.body) };
}

function msgs(c: TestClient, from = 0): Msg[] {
  return c.frames.slice(from).filter((f) => f.op === Op.StreamMsg).map(msg);
}

function states(c: TestClient, from = 0): StreamStateEntry[][] {
  return c.frames.slice(from).filter((f) => f.op === Op.StreamState).map((f) =>
    parseStreamState(f.body)
  );
}

/** Pushes a plain room fence and waits for it: everything queued before it has arrived. */
async function fence(h: Harness, c: TestClient, room: string): Promise<void> {
  const body = `fence-${crypto.randomUUID()}`;
  await h.comet.service.BroadcastRoom({ roomID: room, proto: proto(1999, body) });
  await c.next((f) =>
    (f.op === 1999 && text(f.body) === body) ||
    (f.op === Op.StreamMsg && msg(f).body === body)
  );
}

/** What a client saw, in order, as short labels: `state`, `r:<pos>` replayed, `l:<pos>` live, `p:<body>` plain. */
function timeline(c: TestClient, from = 0): string[] {
  const out: string[] = [];
  for (const f of c.frames.slice(from)) {
    if (f.op === Op.StreamState) out.push("state");
    else if (f.op === Op.StreamMsg) {
      const m = msg(f);
      if (m.op === 1999) continue;
      out.push(`${m.flags & StreamFlag.Replayed ? "r" : "l"}:${m.pos}`);
    } else if (f.op >= 1000 && f.op !== 1999) out.push(`p:${text(f.body)}`);
  }
  return out;
}

// ------------------------------------------------------------------ plain connections

Deno.test("streams: a plain connection sending stream ops gets the echo of any unknown op", async () => {
  const h = await start();
  try {
    for (const [name, connect] of CONNECT) {
      const c = await connect(h);
      await c.auth({ key: `plain-${name}` });
      for (const op of [Op.StreamAck, Op.StreamSync, Op.StreamMsg, Op.StreamState]) {
        const body = op === Op.StreamAck ? encodeStreamAck(["x"]) : encodeStreamSync([]);
        const seq = await c.send(op, body);
        const f = await c.next((f) => f.op === op && f.seq === seq);
        assert.equal(f.body.length, 0, `${name}: op ${op} echoed with an empty body`);
      }
      assert.ok(
        c.frames.every((f) => f.op !== Op.StreamState || f.body.length === 0),
        "no StreamState for a plain connection, only the echo",
      );
      assert.equal(h.streams.recovers.length, 0, "no Recover for a plain connection");
      c.close();
      await c.done;
    }
    assert.equal(h.logic.receives.length, 8, "handed to logic like any unknown op");
  } finally {
    await h.close();
  }
});

/** A goim TCP client at the byte level: what it reads after op 8, exactly as sent. */
interface RawClient {
  /** The next `n` bytes the comet sent. */
  read(n: number): Promise<Uint8Array>;
  close(): void;
}

/** Connects a plain TCP client with this token and reads its op 8 away. */
async function rawTcp(h: Harness, token: Record<string, unknown>): Promise<RawClient> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: h.addrs.tcp[0].port });
  const raw = new Uint8Array(4096);
  let got = new Uint8Array(0);
  const read = async (n: number) => {
    while (got.length < n) {
      const k = await conn.read(raw);
      if (k === null) throw new Error("closed");
      const next = new Uint8Array(got.length + k);
      next.set(got);
      next.set(raw.subarray(0, k), got.length);
      got = next;
    }
    const out = got.subarray(0, n);
    got = got.subarray(n);
    return out;
  };
  const body = enc.encode(JSON.stringify(token));
  const auth = new Uint8Array(16 + body.length);
  new DataView(auth.buffer).setUint32(0, 16 + body.length);
  new DataView(auth.buffer).setUint16(4, 16);
  new DataView(auth.buffer).setUint16(6, 1);
  new DataView(auth.buffer).setUint32(8, Op.Auth);
  auth.set(body, 16);
  await conn.write(auth);
  await read(16); // op 8
  return { read, close: () => conn.close() };
}

Deno.test("streams golden: a plain member of a mixed room gets byte-identical frames", async () => {
  const h = await start();
  try {
    const conn = await rawTcp(h, { mid: 5, key: "raw", room_id: "live://g", accepts: [] });
    const opted = await WsTestClient.connect(h.addrs.ws[0]);
    await opted.auth({ key: "opted", room_id: "live://g", streams: {} } as never);
    await opted.next((f) => f.op === Op.StreamState);
    await h.comet.service.BroadcastRoom({
      roomID: "live://g",
      proto: roomBatch(["one", "two"]),
      epoch: "e1",
      positions: [1, 2],
      push_ids: ["p1", "p2"],
    });
    const expected = encodeBatch([{ op: 1000, body: enc.encode("one") }, {
      op: 1000,
      body: enc.encode("two"),
    }]).tcp;
    assert.deepEqual(
      await conn.read(expected.length),
      expected,
      "exactly goim's inner frames, nothing else",
    );
    const m = await opted.until(() => msgs(opted).length === 2, "the opted-in copy").then(() =>
      msgs(opted)
    );
    assert.deepEqual(m.map((x) => [x.kind, x.pos, x.epoch, x.pushId, x.stream, x.body]), [
      [StreamKind.Room, 1, "e1", "p1", "room:live://g", "one"],
      [StreamKind.Room, 2, "e1", "p2", "room:live://g", "two"],
    ]);
    conn.close();
    opted.close();
    await opted.done;
  } finally {
    await h.close();
  }
});

// ------------------------------------------------------------------ recovery on connect

Deno.test("streams: connect recovery holds live pushes, then StreamState, replay, held minus duplicates", async () => {
  const h = await start();
  try {
    for (const [name, connect] of CONNECT) {
      const room = `live://r-${name}`;
      const rs = `room:${room}`;
      h.streams.mode = "hold";
      const c = await connect(h);
      await c.auth({
        mid: 42,
        key: `k-${name}`,
        room_id: room,
        accepts: [1000],
        streams: {
          recover: [{ stream: rs, epoch: "e1", pos: 41 }, {
            stream: "room:other",
            epoch: "e1",
            pos: 1,
          }],
        },
      } as never);
      await eventually(() => h.streams.pending.length === 1, "Recover to be called");
      const { req, resolve } = h.streams.pending.pop()!;
      assert.deepEqual(
        req.streams,
        [{ stream: rs, epoch: "e1", pos: 41 }],
        "only own streams are named",
      );
      assert.deepEqual(req.state_only, ["mid:42"], "the other own stream: state only");
      // Live pushes while the recovery is out: 43-44 overlap the replay, 45 is new.
      await h.comet.service.BroadcastRoom({
        roomID: room,
        proto: roomBatch(["m43", "m44", "m45"]),
        epoch: "e1",
        positions: [43, 44, 45],
      });
      await h.comet.service.PushMsg({
        keys: [`k-${name}`],
        protoOp: 1000,
        proto: proto(1000, "plain-key"),
      });
      assert.equal(timeline(c).length, 0, `${name}: nothing before the StreamState`);
      resolve({
        results: [
          {
            stream: rs,
            epoch: "e1",
            top: 44,
            recovered: true,
            reason: "",
            entries: [42, 43, 44].map((pos) => ({
              pos,
              push_id: `id${pos}`,
              op: 1000,
              body: enc.encode(`m${pos}`),
              ack: false,
              time: 0,
            })),
          },
          { stream: "mid:42", epoch: "me", top: 3, recovered: true, reason: "", entries: [] },
        ],
      });
      await fence(h, c, room);
      assert.deepEqual(timeline(c), ["state", "r:42", "r:43", "r:44", "l:45", "p:plain-key"], name);
      assert.deepEqual(states(c)[0], [
        { stream: rs, epoch: "e1", pos: 44, recovered: true, replayed: 3 },
        { stream: "mid:42", epoch: "me", pos: 3 },
      ]);
      const replayed = msgs(c).filter((m) => m.flags & StreamFlag.Replayed);
      assert.deepEqual(replayed.map((m) => [m.kind, m.stream, m.pushId, m.body, m.flags]), [
        [StreamKind.Room, rs, "id42", "m42", StreamFlag.Replayed],
        [StreamKind.Room, rs, "id43", "m43", StreamFlag.Replayed],
        [StreamKind.Room, rs, "id44", "m44", StreamFlag.Replayed],
      ]);
      c.close();
      await c.done;
    }
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_stream_recoveries_total", 'result="recovered"'), 2);
    assert.equal(sample(m, "goim_comet_stream_recoveries_total", 'result="state_only"'), 2);
    assert.equal(sample(m, "goim_comet_stream_replayed_frames_total"), 6);
    assert.equal(sample(m, "goim_comet_stream_duplicates_dropped_total"), 4);
    assert.equal(sample(m, "goim_comet_stream_held_bytes"), 0);
  } finally {
    await h.close();
  }
});

Deno.test("streams: not recovered (epoch_changed) and no streams at all", async () => {
  const h = await start();
  try {
    h.streams.results.set("mid:7", {
      epoch: "new",
      top: 9,
      recovered: false,
      reason: "epoch_changed",
    });
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth(
      {
        mid: 7,
        key: "ec",
        accepts: [1000],
        streams: { recover: [{ stream: "mid:7", epoch: "old", pos: 3 }] },
      } as never,
    );
    await c.next((f) => f.op === Op.StreamState);
    assert.deepEqual(states(c)[0], [
      { stream: "mid:7", epoch: "new", pos: 9, recovered: false, reason: "epoch_changed" },
    ]);
    // Live from the answer's position on: 9 is a duplicate, 10 passes.
    for (const pos of [9, 10]) {
      await h.comet.service.PushMsg({
        keys: ["ec"],
        protoOp: 1000,
        proto: proto(1000, `mid-${pos}`),
        stream: "mid:7",
        epoch: "new",
        pos,
        push_id: `m${pos}`,
      });
    }
    const none = await TcpTestClient.connect(h.addrs.tcp[0]);
    await none.auth({ mid: 0, key: "none", streams: {} } as never);
    await none.next((f) => f.op === Op.StreamState);
    assert.deepEqual(states(none)[0], [], "no own streams: an empty StreamState");
    await c.until(() => msgs(c).length === 1, "mid 10");
    await c.send(Op.Heartbeat);
    await c.next((f) => f.op === Op.HeartbeatReply);
    assert.deepEqual(msgs(c).map((m) => [m.kind, m.pos, m.body]), [[StreamKind.Mid, 10, "mid-10"]]);
    for (const x of [c, none]) {
      x.close();
      await x.done;
    }
  } finally {
    await h.close();
  }
});

Deno.test("streams hostile: a Recover that never answers times out as unavailable, held pushes follow", async () => {
  const h = await start();
  try {
    h.streams.mode = "hang";
    const c = await WsTestClient.connect(h.addrs.ws[0]);
    const t0 = performance.now();
    await c.auth({
      mid: 3,
      key: "slow",
      room_id: "live://s",
      streams: { recover: [{ stream: "mid:3", epoch: "e", pos: 5 }] },
    } as never);
    await h.comet.service.BroadcastRoom({
      roomID: "live://s",
      proto: roomBatch(["x"]),
      epoch: "e",
      positions: [7],
    });
    await c.next((f) => f.op === Op.StreamState);
    assert.ok(performance.now() - t0 >= 250, "the deadline (300 ms) was waited for");
    assert.deepEqual(states(c)[0], [
      { stream: "mid:3", epoch: "e", pos: 5, recovered: false, reason: "unavailable" },
      { stream: "room:live://s", epoch: "", pos: 0, recovered: false, reason: "unavailable" },
    ]);
    await fence(h, c, "live://s");
    assert.deepEqual(timeline(c), ["state", "l:7"]);
    // Logic rejecting the call is the same answer, at once.
    h.streams.mode = "fail";
    const d = await TcpTestClient.connect(h.addrs.tcp[0]);
    await d.auth({ mid: 4, key: "fail", streams: {} } as never);
    await d.next((f) => f.op === Op.StreamState);
    assert.deepEqual(states(d)[0], [
      { stream: "mid:4", epoch: "", pos: 0, recovered: false, reason: "unavailable" },
    ]);
    for (const x of [c, d]) {
      x.close();
      await x.done;
    }
    assert.equal(
      sample(await scrape(h.addrs), "goim_comet_stream_recoveries_total", 'result="unavailable"'),
      3,
    );
  } finally {
    await h.close();
  }
});

Deno.test("streams hostile: a 1000-entry answer is replayed within half the send queue", async () => {
  const h = await start(["comet.send_queue.max_bytes=64KiB", "logic.http.max_body=16KiB"]);
  try {
    const body = "b".repeat(200);
    h.streams.results.set("mid:9", {
      epoch: "e",
      top: 1000,
      entries: Array.from({ length: 1000 }, (_, i) => ({
        pos: i + 1,
        push_id: `p${i + 1}`,
        op: 1000,
        body: enc.encode(body),
        ack: false,
        time: 0,
      })),
    });
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth(
      {
        mid: 9,
        key: "big",
        streams: { recover: [{ stream: "mid:9", epoch: "e", pos: 0 }] },
      } as never,
    );
    await c.next((f) => f.op === Op.StreamState);
    const [st] = states(c)[0];
    assert.equal(st.recovered, true);
    assert.ok(
      st.replayed! > 50 && st.replayed! < 160,
      `replayed ${st.replayed}: about 32 KiB of 240-byte frames`,
    );
    await c.until(() => msgs(c).length === st.replayed, "the replay");
    assert.deepEqual(
      msgs(c).map((m) => m.pos),
      Array.from({ length: st.replayed! }, (_, i) => i + 1),
    );
    // The client asks for the rest from where it is.
    const from = c.frames.length;
    await c.send(
      Op.StreamSync,
      encodeStreamSync([{ stream: "mid:9", epoch: "e", pos: st.replayed! }]),
    );
    await c.next((f) => f.op === Op.StreamState, undefined, from);
    const [next] = states(c, from)[0];
    await c.until(() => msgs(c, from).length === next.replayed, "the next part");
    assert.equal(msgs(c, from)[0].pos, st.replayed! + 1);
    assert.equal(c.isClosed, false);
    c.close();
    await c.done;
  } finally {
    await h.close();
  }
});

Deno.test("streams hostile: an answer that breaks the contract is unavailable, not replayed", async () => {
  const h = await start();
  try {
    const entry = (pos: number, op = 1000) => ({
      pos,
      push_id: `p${pos}`,
      op,
      body: enc.encode("x"),
      ack: false,
      time: 0,
    });
    const bad: [string, Partial<StreamResult>][] = [
      ["mid:51", { top: 3, entries: [entry(2), entry(3, Op.AuthReply)] }], // a protocol op
      ["mid:52", { top: 3, entries: [entry(3), entry(2)] }], // not ascending
      ["mid:53", { top: 3, entries: [entry(2), entry(2)] }], // a position twice
      ["mid:54", { epoch: "é", top: 3 }], // not ASCII
      ["mid:55", { recovered: false, reason: "because" }], // an unknown reason
    ];
    for (const [stream, r] of bad) {
      h.streams.results.set(stream, r);
      const mid = Number(stream.slice(4));
      const c = await TcpTestClient.connect(h.addrs.tcp[0]);
      await c.auth(
        { mid, key: stream, streams: { recover: [{ stream, epoch: "e1", pos: 1 }] } } as never,
      );
      await c.next((f) => f.op === Op.StreamState);
      assert.deepEqual(states(c)[0], [
        { stream, epoch: "e1", pos: 1, recovered: false, reason: "unavailable" },
      ], stream);
      await c.send(Op.Heartbeat);
      await c.next((f) => f.op === Op.HeartbeatReply);
      assert.equal(msgs(c).length, 0, `${stream}: nothing replayed`);
      c.close();
      await c.done;
    }
  } finally {
    await h.close();
  }
});

// ------------------------------------------------------------------ live pushes

Deno.test("streams live: redeliveries dropped, partial overlap cut, a new epoch passes", async () => {
  const h = await start();
  try {
    h.streams.results.set("room:live://l", { epoch: "e1", top: 10 });
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ mid: 0, key: "live", room_id: "live://l", streams: {} } as never);
    await c.next((f) => f.op === Op.StreamState);
    const room = (bodies: string[], epoch: string, positions: number[]) =>
      h.comet.service.BroadcastRoom({
        roomID: "live://l",
        proto: roomBatch(bodies),
        epoch,
        positions,
      });
    await room(["a", "b"], "e1", [11, 12]);
    await room(["a", "b"], "e1", [11, 12]); // a redelivery
    await room(["b", "c", "d"], "e1", [12, 13, 14]); // overlaps by one
    await room(["old"], "e1", [9]);
    await room(["z"], "e2", [1]); // the history was lost: a new epoch
    await fence(h, c, "live://l");
    assert.deepEqual(msgs(c).filter((m) => m.op === 1000).map((m) => [m.epoch, m.pos, m.body]), [
      ["e1", 11, "a"],
      ["e1", 12, "b"],
      ["e1", 13, "c"],
      ["e1", 14, "d"],
      ["e2", 1, "z"],
    ]);
    c.close();
    await c.done;
  } finally {
    await h.close();
  }
});

Deno.test("streams live: mid and key pushes with a push id are StreamMsg, plain targets get plain frames", async () => {
  const h = await start();
  try {
    const opted = await WsTestClient.connect(h.addrs.ws[0]);
    const plain = await TcpTestClient.connect(h.addrs.tcp[0]);
    await opted.auth({ mid: 8, key: "o", accepts: [1000], streams: {} } as never);
    await plain.auth({ mid: 8, key: "p", accepts: [1000] });
    await opted.next((f) => f.op === Op.StreamState);
    const s = h.comet.service;
    await s.PushMsg({
      keys: ["o", "p"],
      protoOp: 1000,
      proto: proto(1000, "to-mid"),
      stream: "mid:8",
      epoch: "me",
      pos: 1,
      push_id: "pm1",
      ack: true,
    });
    await s.PushMsg({
      keys: ["o", "p"],
      protoOp: 1000,
      proto: proto(1000, "key-ack"),
      push_id: "pk1",
      ack: true,
    });
    await s.PushMsg({
      keys: ["o", "p"],
      protoOp: 1000,
      proto: proto(1000, "key-id"),
      push_id: "pk2",
    });
    // A goim job's key push: no push id, so the plain frame for everyone.
    await s.PushMsg({ keys: ["o", "p"], protoOp: 1000, proto: proto(1000, "key-plain") });
    await opted.until(() => opted.byOp.get(1000) === 1 && msgs(opted).length === 3, "four pushes");
    assert.deepEqual(
      msgs(opted).map((m) => [m.kind, m.flags, m.pos, m.epoch, m.pushId, m.stream, m.body]),
      [
        [StreamKind.Mid, StreamFlag.Ack, 1, "me", "pm1", "mid:8", "to-mid"],
        [StreamKind.Key, StreamFlag.Ack, 0, "", "pk1", "", "key-ack"],
        [StreamKind.Key, 0, 0, "", "pk2", "", "key-id"],
      ],
    );
    assert.equal(text(opted.frames.find((f) => f.op === 1000)!.body), "key-plain");
    await plain.until(() => plain.byOp.get(1000) === 4, "four plain frames");
    assert.deepEqual(plain.frames.filter((f) => f.op === 1000).map((f) => text(f.body)), [
      "to-mid",
      "key-ack",
      "key-id",
      "key-plain",
    ]);
    // Malformed stream fields are refused as a whole.
    await assert.rejects(
      s.BroadcastRoom({
        roomID: "live://x",
        proto: roomBatch(["a", "b"]),
        epoch: "e",
        positions: [1],
      }),
      (e: unknown) => e instanceof RpcError && e.code === grpcStatus.INVALID_ARGUMENT,
    );
    await assert.rejects(
      s.BroadcastRoom({
        roomID: "live://x",
        proto: roomBatch(["a", "b"]),
        epoch: "e",
        positions: [2, 1],
      }),
      (e: unknown) => e instanceof RpcError && e.code === grpcStatus.INVALID_ARGUMENT,
    );
    await assert.rejects(
      s.PushMsg({ keys: ["o"], protoOp: 1000, proto: proto(1000, "x"), stream: "mid:8", pos: 0 }),
      (e: unknown) => e instanceof RpcError && e.code === grpcStatus.INVALID_ARGUMENT,
    );
    await assert.rejects(
      s.PushMsg({
        keys: ["o"],
        protoOp: 1000,
        proto: proto(1000, "x"),
        push_id: "bad id",
        ack: true,
      }),
      (e: unknown) => e instanceof RpcError && e.code === grpcStatus.INVALID_ARGUMENT,
    );
    for (const x of [opted, plain]) {
      x.close();
      await x.done;
    }
  } finally {
    await h.close();
  }
});

Deno.test("streams broadcast: push_ids make kind 3 StreamMsg for opted-in, goim's bytes for plain", async () => {
  const h = await start();
  try {
    const s = h.comet.service;
    const isInvalid = (e: unknown) =>
      e instanceof RpcError && e.code === grpcStatus.INVALID_ARGUMENT;
    const raw = await rawTcp(h, { mid: 0, key: "raw", accepts: [1000] });
    const frame = (body: string) =>
      encodeFrame({ ver: 1, op: 1000, seq: 0, body: enc.encode(body) });
    const batchBytes = (bodies: string[]) => roomBatch(bodies).body;
    // No opted-in channel on the comet yet: push ids change nothing for anyone.
    await s.Broadcast({ protoOp: 1000, proto: roomBatch(["b0"]), speed: 0, push_ids: ["i0"] });
    assert.deepEqual(await raw.read(batchBytes(["b0"]).length), batchBytes(["b0"]));

    const opted: TestClient[] = [];
    for (const [name, connect] of CONNECT) {
      const c = await connect(h);
      await c.auth({ mid: 0, key: `o-${name}`, accepts: [1000], streams: {} } as never);
      await c.next((f) => f.op === Op.StreamState);
      opted.push(c);
    }
    // Opted in, but recovering: broadcasts are held, then follow its StreamState.
    h.streams.mode = "hold";
    const held = await TcpTestClient.connect(h.addrs.tcp[0]);
    await held.auth({ mid: 9, key: "held", accepts: [1000], streams: {} } as never);
    await eventually(() => h.streams.pending.length === 1, "Recover to be called");
    // And one that does not accept the op gets nothing.
    const deaf = await TcpTestClient.connect(h.addrs.tcp[0]);
    await deaf.auth({ mid: 0, key: "deaf", accepts: [1001], streams: {} } as never);

    // Unpaced: an op 9 batch, one push id per frame.
    await s.Broadcast({
      protoOp: 1000,
      proto: roomBatch(["b1", "b2", "b3"]),
      speed: 0,
      push_ids: ["i1", "i2", "i3"],
    });
    // Paced: the single frame and its own id.
    await s.Broadcast({ protoOp: 1000, proto: proto(1000, "b4"), speed: 1000, push_ids: ["i4"] });
    // A goim job's broadcast (no push ids): the plain frames for everyone.
    await s.Broadcast({ protoOp: 1000, proto: roomBatch(["g1", "g2"]), speed: 0 });
    await s.Broadcast({ protoOp: 1000, proto: proto(1000, "g3"), speed: 1000 });
    h.streams.pending.pop()!.resolve(h.streams.answer({ streams: [], state_only: ["mid:9"] }));

    const wrapped = [
      [StreamKind.Key, 0, 0, "", "i1", "", "b1"],
      [StreamKind.Key, 0, 0, "", "i2", "", "b2"],
      [StreamKind.Key, 0, 0, "", "i3", "", "b3"],
      [StreamKind.Key, 0, 0, "", "i4", "", "b4"],
    ];
    for (const c of [...opted, held]) {
      await c.until(() => msgs(c).length === 4 && c.byOp.get(1000) === 3, "4 wrapped + 3 plain");
      assert.deepEqual(
        msgs(c).map((m) => [m.kind, m.flags, m.pos, m.epoch, m.pushId, m.stream, m.body]),
        wrapped,
      );
      assert.deepEqual(c.frames.filter((f) => f.op === 1000).map((f) => text(f.body)), [
        "g1",
        "g2",
        "g3",
      ]);
    }
    assert.deepEqual(
      timeline(held),
      ["state", "l:0", "l:0", "l:0", "l:0", "p:g1", "p:g2", "p:g3"],
      "held until its StreamState, in order",
    );
    const plainBytes = [batchBytes(["b1", "b2", "b3"]), frame("b4"), batchBytes(["g1", "g2"])];
    for (const b of plainBytes) assert.deepEqual(await raw.read(b.length), b);
    assert.deepEqual(await raw.read(frame("g3").length), frame("g3"));

    // Malformed push ids: refused as a whole, counted as invalid, nobody gets a frame.
    const bad: [string, Partial<BroadcastReq>][] = [
      ["a count that is not one per frame", { proto: roomBatch(["x", "y"]), push_ids: ["a"] }],
      ["two ids for a paced frame", { proto: proto(1000, "x"), speed: 5, push_ids: ["a", "b"] }],
      ["an id with a space", { proto: roomBatch(["x"]), push_ids: ["bad id"] }],
      ["an empty id", { proto: roomBatch(["x"]), push_ids: [""] }],
      ["a 65-character id", { proto: proto(1000, "x"), speed: 5, push_ids: ["x".repeat(65)] }],
    ];
    for (const [what, req] of bad) {
      await assert.rejects(
        s.Broadcast({ protoOp: 1000, speed: 0, ...req } as BroadcastReq),
        isInvalid,
        what,
      );
    }
    const m = await scrape(h.addrs);
    assert.equal(
      sample(m, "goim_comet_pushes_refused_total", 'kind="broadcast",reason="invalid"'),
      bad.length,
    );
    await s.Broadcast({ protoOp: 1001, proto: proto(1001, "fence"), speed: 0, push_ids: ["f"] });
    await deaf.until(() => msgs(deaf).length === 1, "the fence");
    assert.deepEqual(msgs(deaf).map((x) => x.body), ["fence"], "only the op it accepts");
    // The plain client got nothing more in between.
    await s.Broadcast({ protoOp: 1000, proto: proto(1000, "end"), speed: 0 });
    assert.deepEqual(await raw.read(frame("end").length), frame("end"));
    for (const c of [...opted, held, deaf]) {
      c.close();
      await c.done;
    }
    raw.close();
  } finally {
    await h.close();
  }
});

// ------------------------------------------------------------------ acks

Deno.test("streams acks: re-sent with Resent after ack_timeout, ack untracks and reaches logic", async () => {
  const h = await start(["comet.streams.ack_retries=2"]);
  try {
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    const other = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ mid: 11, key: "ak", accepts: [1000], streams: {} } as never);
    await other.auth({ mid: 12, key: "other", accepts: [1000], streams: {} } as never);
    await c.next((f) => f.op === Op.StreamState);
    await other.next((f) => f.op === Op.StreamState);
    const s = h.comet.service;
    await s.PushMsg({
      keys: ["ak"],
      protoOp: 1000,
      proto: proto(1000, "a1"),
      push_id: "a1",
      ack: true,
    });
    await s.PushMsg({
      keys: ["ak"],
      protoOp: 1000,
      proto: proto(1000, "a2"),
      push_id: "a2",
      ack: true,
    });
    await c.until(() => msgs(c).length === 2, "two ack-requested pushes");
    // The other connection acking c's id does nothing (it is not its push).
    await other.send(Op.StreamAck, encodeStreamAck(["a1"]));
    await c.send(Op.StreamAck, encodeStreamAck(["a1", "never-sent"]));
    // a2 is re-sent (flag Resent) after 200 ms, twice, then given up.
    await c.until(
      () => msgs(c).filter((m) => m.pushId === "a2" && m.flags & StreamFlag.Resent).length === 2,
      "two re-sends of a2",
      5000,
    );
    await eventually(
      () =>
        h.comet.metrics.text().then((m) =>
          sample(m, "goim_comet_stream_unacked_forgotten_total", 'reason="retries"') === 1
        ),
      "a2 given up",
    );
    assert.equal(msgs(c).filter((m) => m.pushId === "a1").length, 1, "a1 was acked: never re-sent");
    await eventually(() => h.streams.ackedIds.length === 1, "the ack reported");
    assert.deepEqual(h.streams.acks[0].acks, [{ push_id: "a1", key: "ak", mid: 11 }]);
    assert.equal(h.streams.acks[0].server, "comet-test");
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_stream_acks_total", 'result="matched"'), 1);
    assert.equal(sample(m, "goim_comet_stream_acks_total", 'result="unknown"'), 2);
    assert.equal(sample(m, "goim_comet_stream_resends_total"), 2);
    // Malformed ack body: op 6 4000.
    await c.send(Op.StreamAck, '{"ids": 5}');
    await c.waitClosed();
    assert.equal(c.reason()?.code, ReasonCode.ProtocolError);
    assert.match(c.reason()!.message, /bad_stream/);
    other.close();
    await Promise.all([c.done, other.done]);
  } finally {
    await h.close();
  }
});

Deno.test("streams hostile: a client that never acks holds at most max_unacked", async () => {
  const h = await start(["comet.streams.max_unacked=4", "comet.streams.ack_retries=0"]);
  try {
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ mid: 13, key: "lazy", accepts: [1000], streams: {} } as never);
    await c.next((f) => f.op === Op.StreamState);
    for (let i = 0; i < 10; i++) {
      await h.comet.service.PushMsg({
        keys: ["lazy"],
        protoOp: 1000,
        proto: proto(1000, `n${i}`),
        push_id: `n${i}`,
        ack: true,
      });
    }
    await c.until(() => msgs(c).length === 10, "ten pushes");
    const m1 = await scrape(h.addrs);
    assert.equal(
      sample(m1, "goim_comet_stream_unacked_forgotten_total", 'reason="max_unacked"'),
      6,
    );
    await eventually(
      () =>
        h.comet.metrics.text().then((m) =>
          sample(m, "goim_comet_stream_unacked_forgotten_total", 'reason="retries"') === 4
        ),
      "the 4 tracked ones given up (ack_retries 0)",
    );
    // Acking forgotten ones is harmless: unknown.
    await c.send(Op.StreamAck, encodeStreamAck(["n0", "n9"]));
    await c.send(Op.Heartbeat);
    await c.next((f) => f.op === Op.HeartbeatReply);
    assert.equal(
      sample(await scrape(h.addrs), "goim_comet_stream_acks_total", 'result="unknown"'),
      2,
    );
    assert.equal(h.streams.acks.length, 0);
    c.close();
    await c.done;
  } finally {
    await h.close();
  }
});

Deno.test("streams hostile: an ack flood is bounded and batched; Acks failing is counted, never thrown", async () => {
  const h = await start(["comet.streams.max_unacked=4096"]);
  try {
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ mid: 14, key: "flood", accepts: [1000], streams: {} } as never);
    await c.next((f) => f.op === Op.StreamState);
    const ids = Array.from({ length: 2048 }, (_, i) => `f${i}`);
    for (const id of ids) {
      await h.comet.service.PushMsg({
        keys: ["flood"],
        protoOp: 1000,
        proto: proto(1000, id),
        push_id: id,
        ack: true,
      });
    }
    await c.until(() => msgs(c).length === ids.length, "every push");
    // 32 frames of 64 ids each, sent at once, plus 50 frames of 64 unknown ids.
    const frames: Uint8Array[] = [];
    for (let i = 0; i < ids.length; i += 64) frames.push(encodeStreamAck(ids.slice(i, i + 64)));
    for (let i = 0; i < 50; i++) {
      frames.push(encodeStreamAck(Array.from({ length: 64 }, (_, j) => `u${i}_${j}`)));
    }
    for (const f of frames) await c.send(Op.StreamAck, f);
    await eventually(() => h.streams.ackedIds.length === ids.length, "every ack reported");
    await c.send(Op.Heartbeat); // every ack frame before it has been handled
    await c.next((f) => f.op === Op.HeartbeatReply);
    assert.ok(h.streams.acks.every((r) => r.acks.length <= MAX_ACKS_PER_CALL));
    assert.ok(
      h.streams.acks.length >= 2 && h.streams.acks.length <= 8,
      `${h.streams.acks.length} calls`,
    );
    assert.deepEqual(new Set(h.streams.ackedIds), new Set(ids));
    assert.equal(
      sample(await scrape(h.addrs), "goim_comet_stream_acks_total", 'result="unknown"'),
      3200,
    );
    assert.equal(h.comet.stats().connections, 1, "the flood stays within the frame rate burst");

    // Logic down: the acks are dropped and counted, the comet goes on.
    h.streams.acksFail = true;
    const calls = h.streams.acks.length;
    await h.comet.service.PushMsg({
      keys: ["flood"],
      protoOp: 1000,
      proto: proto(1000, "d"),
      push_id: "d1",
      ack: true,
    });
    await c.until(() => msgs(c).some((m) => m.pushId === "d1"), "d1");
    await c.send(Op.StreamAck, encodeStreamAck(["d1"]));
    await eventually(() => h.streams.acks.length === calls + 1, "the failing call");
    await eventually(
      () =>
        h.comet.metrics.text().then((m) =>
          sample(m, "goim_comet_stream_ack_reports_dropped_total", 'reason="logic_error"') === 1
        ),
      "the dropped ack counted",
    );
    c.close();
    await c.done;
  } finally {
    await h.close();
  }
});

// ------------------------------------------------------------------ StreamSync, ChangeRoom

Deno.test("streams hostile: sync flood — one in flight, one waiting, the third closes 4007", async () => {
  const h = await start();
  try {
    const c = await WsTestClient.connect(h.addrs.ws[0]);
    await c.auth({ mid: 21, key: "sync", streams: {} } as never);
    await c.next((f) => f.op === Op.StreamState);
    h.streams.mode = "hold";
    const sync = encodeStreamSync([{ stream: "mid:21", epoch: "e1", pos: 0 }]);
    await c.send(Op.StreamSync, sync);
    await eventually(() => h.streams.pending.length === 1, "the first sync's Recover");
    await c.send(Op.StreamSync, sync); // waits
    await c.send(Op.StreamSync, sync); // one too many
    await c.waitClosed();
    assert.equal(c.reason()?.code, ReasonCode.LimitExceeded);
    const m = await scrape(h.addrs);
    assert.equal(sample(m, "goim_comet_limit_closes_total", 'limit="stream_sync"'), 1);
    assert.equal(sample(m, "goim_comet_stream_syncs_total"), 3);
    h.streams.pending.pop()!.resolve({ results: [] }); // answered after the close: ignored
    await c.done;

    // One waiting is answered after the one in flight, in order; then a malformed sync is 4000.
    const d = await TcpTestClient.connect(h.addrs.tcp[0]);
    h.streams.mode = "answer";
    await d.auth({ mid: 22, key: "sync2", streams: {} } as never);
    await d.next((f) => f.op === Op.StreamState);
    h.streams.mode = "hold";
    await d.send(Op.StreamSync, encodeStreamSync([{ stream: "mid:22", epoch: "e1", pos: 0 }]));
    await eventually(() => h.streams.pending.length === 1, "sync 1");
    await d.send(
      Op.StreamSync,
      encodeStreamSync([{ stream: "mid:22", epoch: "e1", pos: 1 }, {
        stream: "mid:99",
        epoch: "",
        pos: 0,
      }]),
    );
    const first = h.streams.pending.pop()!;
    first.resolve(h.streams.answer(first.req));
    await eventually(() => h.streams.pending.length === 1, "sync 2 after sync 1");
    const second = h.streams.pending.pop()!;
    assert.deepEqual(
      second.req.streams,
      [{ stream: "mid:22", epoch: "e1", pos: 1 }],
      "other streams ignored",
    );
    second.resolve(h.streams.answer(second.req));
    await d.until(() => states(d).length === 3, "three StreamStates");
    await d.send(Op.StreamSync, '{"recover": 1}');
    await d.waitClosed();
    assert.equal(d.reason()?.code, ReasonCode.ProtocolError);
    await d.done;
  } finally {
    await h.close();
  }
});

Deno.test("streams: ChangeRoom sends op 13, then the new room's state; its pushes wait for it", async () => {
  const h = await start();
  try {
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ mid: 0, key: "mover", room_id: "live://a", streams: {} } as never);
    await c.next((f) => f.op === Op.StreamState);
    h.streams.mode = "hold";
    h.streams.results.set("room:live://b", { epoch: "eb", top: 5 });
    const from = c.frames.length;
    await c.send(Op.ChangeRoom, "live://b");
    await c.next((f) => f.op === Op.ChangeRoomReply, undefined, from);
    await eventually(() => h.streams.pending.length === 1, "the new room's Recover");
    const p = h.streams.pending.pop()!;
    assert.deepEqual(p.req, { streams: [], state_only: ["room:live://b"] });
    await h.comet.service.BroadcastRoom({
      roomID: "live://b",
      proto: roomBatch(["b5", "b6"]),
      epoch: "eb",
      positions: [5, 6],
    });
    assert.equal(timeline(c, from).length, 0, "held until the StreamState");
    p.resolve(h.streams.answer(p.req));
    await fence(h, c, "live://b");
    assert.deepEqual(timeline(c, from), ["state", "l:6"]);
    assert.deepEqual(states(c, from)[0], [{ stream: "room:live://b", epoch: "eb", pos: 5 }]);
    assert.equal(
      c.frames.slice(from).findIndex((f) => f.op === Op.ChangeRoomReply),
      0,
      "op 13 first",
    );
    c.close();
    await c.done;
  } finally {
    await h.close();
  }
});

Deno.test("streams: the held pushes are bounded by the send queue and its policy", async () => {
  const h = await start([
    "comet.send_queue.max_bytes=4KiB",
    "logic.http.max_body=1KiB",
    "comet.send_queue.policy=drop_new",
  ]);
  try {
    h.streams.mode = "hold";
    const c = await TcpTestClient.connect(h.addrs.tcp[0]);
    await c.auth({ mid: 0, key: "held", room_id: "live://h", streams: {} } as never);
    await eventually(() => h.streams.pending.length === 1, "Recover");
    for (let i = 1; i <= 40; i++) {
      await h.comet.service.BroadcastRoom({
        roomID: "live://h",
        proto: roomBatch(["x".repeat(200)]),
        epoch: "e1",
        positions: [i],
      });
    }
    const held = sample(await scrape(h.addrs), "goim_comet_stream_held_bytes");
    assert.ok(held > 0 && held <= 4096, `held ${held} bytes`);
    const p = h.streams.pending.pop()!;
    p.resolve(h.streams.answer(p.req));
    await fence(h, c, "live://h");
    const live = msgs(c).filter((m) => m.op === 1000);
    assert.ok(live.length > 5 && live.length < 40, `${live.length} of 40 kept`);
    assert.deepEqual(
      live.map((m) => m.pos),
      Array.from({ length: live.length }, (_, i) => i + 1),
      "the oldest, in order",
    );
    assert.equal(sample(await scrape(h.addrs), "goim_comet_stream_held_bytes"), 0);
    c.close();
    await c.done;
  } finally {
    await h.close();
  }
});

Deno.test("streams: a comet without the Streams service answers unavailable at once", async () => {
  const config = cometConfig();
  const registry = new MemoryRegistry();
  const comet = new Comet({
    config,
    logic: new StreamsLogic(),
    registry,
    log: createLogger({ level: "error" }),
  });
  const addrs = await comet.start({ grpc: false });
  try {
    const c = await TcpTestClient.connect(addrs.tcp[0]);
    await c.auth(
      {
        mid: 31,
        key: "no-api",
        streams: { recover: [{ stream: "mid:31", epoch: "e", pos: 2 }] },
      } as never,
    );
    await c.next((f) => f.op === Op.StreamState);
    assert.deepEqual(states(c)[0], [
      { stream: "mid:31", epoch: "e", pos: 2, recovered: false, reason: "unavailable" },
    ]);
    await c.send(Op.StreamAck, encodeStreamAck(["zz"]));
    await c.send(Op.Heartbeat);
    await c.next((f) => f.op === Op.HeartbeatReply);
    c.close();
    await c.done;
  } finally {
    await comet.shutdown("test");
    await registry.close();
  }
});

/**
 * Streams end to end (docs/STREAMS.md), on both modes: embedded (one
 * process, memory engines) and distributed (2 comets, 1 logic, 1 job as
 * processes on the test Kafka and Redis), with the SDK over real sockets.
 *
 * - Numbered room and mid pushes while devices drop and come back at random:
 *   every device gets every message of its streams exactly once, in order
 *   (tests/e2e/streams_chaos.ts).
 * - A mid offline during 100 pushes gets all 100 at its next connection.
 * - Acks: an unacked message is re-sent (flag Resent) after
 *   `comet.streams.ack_timeout`; `ack=1&wait=` counts acked, pending and
 *   offline targets (mids and keys: a key push is a StreamMsg of kind Key);
 *   `/goim/push/status` reports each target.
 * - A plain goim client beside opted-in ones gets goim's bytes exactly.
 * - Embedded, `streams.history.size` 50: a device offline for 200 pushes is
 *   told `window_passed` (the distributed case is in
 *   tests/streams_failover_test.ts, on its private Redis).
 *
 * The replay figures (how long N missed messages took) are printed.
 */

import assert from "node:assert/strict";
import { concat } from "../protocol/bytes.ts";
import { encodeFrame } from "../protocol/frame.ts";
import { Op } from "../protocol/ops.ts";
import { StreamFlag, StreamKind } from "../protocol/streams.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { redisTestUrl } from "./redis_env.ts";
import { chaosLine, chaosScenario, MID_OP, ROOM_OP } from "./e2e/streams_chaos.ts";
import { type Mode, startStreamsCluster, type StreamsCluster } from "./e2e/streams_cluster.ts";
import { StreamDevice } from "./e2e/streams_device.ts";
import { midTarget, numbered } from "./e2e/streams_load.ts";
import { plainFrames, PlainTap } from "./e2e/streams_plain.ts";
import {
  offlineMidScenario,
  until,
  untilPositioned,
  windowPassedScenario,
} from "./e2e/streams_scenarios.ts";
import { get, push } from "./e2e/suite.ts";

const kafka = await kafkaTestBrokers();
const redis = await redisTestUrl();

/** Short, so the re-send is seen within the test (default 5 s). */
const ACK_TIMEOUT_MS = 300;
const ACK_RETRIES = 3;
/** The `wait` of the push whose counts are checked: one target never acks, so it is waited out. */
const WAIT_MS = 2_000;
const SETS = [
  `comet.streams.ack_timeout=${ACK_TIMEOUT_MS}ms`,
  `comet.streams.ack_retries=${ACK_RETRIES}`,
];
/** Numbered pushes of the chaos run. */
const TOTAL = 10_000;

/** The answer of an ack-requested push with `wait`. */
interface WaitAnswer {
  id: string;
  targets: number;
  acked: number;
  pending: number;
  offline: number;
}

/** The status of an ack-requested push (GET /goim/push/status). */
interface StatusAnswer {
  id: string;
  created: number;
  targets: { target: string; state: string; sent: number; acked: number }[];
  acked: number;
  pending: number;
  offline: number;
}

/**
 * A plain TCP client alone in a room, and another in a room (and sharing a
 * mid) with an opted-in device, get the same pushes: both byte streams are
 * goim's encoding of them, op 8 included.
 */
async function goldenScenario(cluster: StreamsCluster, tag: string, mid: number): Promise<void> {
  const tcp = cluster.comets[0].tcp;
  const rooms = [`live://${tag}-gold-alone`, `live://${tag}-gold-mixed`];
  const mids = [mid, mid + 1];
  const taps: PlainTap[] = [];
  const device = new StreamDevice({
    mid: mids[1],
    room: rooms[1],
    accepts: [MID_OP],
    urls: [tcp],
    label: "opted-in neighbour",
  });
  try {
    for (let i = 0; i < 2; i++) {
      const token = {
        mid: mids[i],
        key: "",
        room_id: rooms[i],
        platform: "test",
        accepts: [MID_OP],
      };
      // The mixed one on the device's comet; the other on the last one.
      const comet = cluster.comets[i === 0 ? cluster.comets.length - 1 : 0];
      taps.push(await PlainTap.open(comet.tcp, token));
    }
    await device.connect();
    await untilPositioned(device, [`room:${rooms[1]}`, `mid:${mids[1]}`]);
    const pushes: { op: number; body: string }[] = [];
    for (let n = 1; n <= 5; n++) {
      const body = `gold#${n}`;
      for (const room of rooms) {
        await push(
          cluster.http,
          `/goim/push/room?operation=${ROOM_OP}&type=live&room=${room.slice("live://".length)}`,
          body,
        );
      }
      pushes.push({ op: ROOM_OP, body });
    }
    // Room and mid pushes travel apart: the mid push goes once the room pushes are in.
    await Promise.all(taps.map((t) => t.until(() => t.ops.length === 6, "5 room pushes")));
    for (const m of mids) {
      await push(cluster.http, `/goim/push/mids?operation=${MID_OP}&mids=${m}`, "gold#mid");
    }
    pushes.push({ op: MID_OP, body: "gold#mid" });
    await Promise.all(taps.map((t) => t.until(() => t.ops.length === 7, "the mid push")));
    await until(() => device.stats.wireMsgs === 6, "the opted-in device's 6 StreamMsg frames");
    const authReply = encodeFrame({ ver: 1, op: Op.AuthReply, seq: 1 });
    const want = concat([authReply, plainFrames(pushes)]);
    assert.deepEqual(taps[0].bytes, want, "alone in its room: goim's bytes");
    assert.deepEqual(taps[1].bytes, want, "beside an opted-in device: the same bytes");
    assert.equal(
      device.of(`room:${rooms[1]}`).length,
      5,
      "the opted-in device got the room pushes",
    );
    assert.equal(device.of(`mid:${mids[1]}`).length, 1, "and the mid push");
  } finally {
    await device.close();
    await Promise.all(taps.map((t) => t.close()));
  }
}

/**
 * Two acking devices, one that never acks, one mid never connected: the
 * re-send after the ack timeout, the counts of `ack=1&wait=`, the status
 * per target.
 */
async function acksScenario(cluster: StreamsCluster, midBase: number): Promise<void> {
  const urls = cluster.comets.map((c) => c.tcp);
  const [silentMid, ackMid1, ackMid2, offMid] = [0, 1, 2, 3].map((i) => midBase + i);
  const silent = new StreamDevice({
    mid: silentMid,
    room: "",
    accepts: [MID_OP],
    urls,
    autoAck: false,
    keepWire: true,
    label: "non-acking device",
  });
  const ackers = [ackMid1, ackMid2].map((mid, i) =>
    new StreamDevice({
      mid,
      room: "",
      accepts: [MID_OP],
      urls,
      first: i + 1,
      key: `acker-${mid}`,
      keepWire: true,
      label: `acker ${mid}`,
    })
  );
  const devices = [silent, ...ackers];
  try {
    await Promise.all(devices.map((d) => d.connect()));
    await Promise.all(devices.map((d) => untilPositioned(d, [`mid:${d.opts.mid}`])));

    // Not acked: sent again, flagged Resent, after the timeout; delivered to the app once.
    const s = midTarget(silentMid, MID_OP);
    const first = await push(cluster.http, `${s.path}&ack=1`, numbered(s, 1)) as { id: string };
    s.sent = 1;
    const copies = () => silent.wire.filter((w) => w.pushId === first.id);
    await until(() => copies().length >= 2, "the unacked message to come again", 10_000);
    const [sent, again] = copies();
    assert.equal(sent.flags, StreamFlag.Ack, "first sent: ack requested");
    assert.equal(again.flags, StreamFlag.Ack | StreamFlag.Resent, "then re-sent, flagged Resent");
    assert.equal(again.pos, sent.pos);
    assert.ok(
      again.at - sent.at >= ACK_TIMEOUT_MS - 100,
      `re-sent ${(again.at - sent.at).toFixed(0)} ms after, not before ${ACK_TIMEOUT_MS} ms`,
    );
    assert.equal(silent.of(s.name).length, 1, "the SDK delivered it once");
    assert.equal(silent.stats.acked, 0, "and never acked it");

    // 2 acking targets, 1 that never acks, 1 offline: waited out, then counted.
    const t0 = performance.now();
    const waited = await push(
      cluster.http,
      `/goim/push/mids?operation=${MID_OP}&mids=${ackMid1},${ackMid2},${silentMid},${offMid}` +
        `&ack=1&wait=${WAIT_MS}`,
      "acks#2",
    ) as WaitAnswer;
    const waitedMs = performance.now() - t0;
    assert.deepEqual(
      { ...waited, id: "" },
      { id: "", targets: 4, acked: 2, pending: 1, offline: 1 },
      JSON.stringify(waited),
    );
    assert.ok(
      waitedMs >= WAIT_MS - 50,
      `a pending target holds the answer to the wait: ${waitedMs}`,
    );
    for (const a of ackers) assert.equal(a.stats.acked, 1, `${a.label} acked once`);

    const status = await get(cluster.http, `/goim/push/status?id=${waited.id}`) as StatusAnswer;
    assert.equal(status.id, waited.id);
    assert.ok(Math.abs(status.created - Date.now()) < 60_000, `created ${status.created}`);
    assert.deepEqual(
      [...status.targets].sort((a, b) => a.target.localeCompare(b.target)),
      [
        { target: `mid:${silentMid}`, state: "pending", sent: 1, acked: 0 },
        { target: `mid:${ackMid1}`, state: "acked", sent: 1, acked: 1 },
        { target: `mid:${ackMid2}`, state: "acked", sent: 1, acked: 1 },
        { target: `mid:${offMid}`, state: "offline", sent: 0, acked: 0 },
      ].sort((a, b) => a.target.localeCompare(b.target)),
    );
    assert.deepEqual([status.acked, status.pending, status.offline], [2, 1, 1]);

    // Every target acks: the answer comes with the acks, not at the deadline.
    const t1 = performance.now();
    const quick = await push(
      cluster.http,
      `/goim/push/mids?operation=${MID_OP}&mids=${ackMid1},${ackMid2}&ack=1&wait=20000`,
      "acks#3",
    ) as WaitAnswer;
    const quickMs = performance.now() - t1;
    assert.deepEqual({ ...quick, id: "" }, {
      id: "",
      targets: 2,
      acked: 2,
      pending: 0,
      offline: 0,
    });
    assert.ok(quickMs < 10_000, `answered when acked, after ${quickMs.toFixed(0)} ms`);

    // By key: a kind 3 StreamMsg (no stream), acked; a key with no route is offline at once.
    const byKey = await push(
      cluster.http,
      `/goim/push/keys?operation=${MID_OP}&keys=acker-${ackMid1},acker-gone&ack=1&wait=20000`,
      "acks#key",
    ) as WaitAnswer;
    assert.deepEqual({ ...byKey, id: "" }, {
      id: "",
      targets: 2,
      acked: 1,
      pending: 0,
      offline: 1,
    });
    const keyMsg = ackers[0].wire.find((w) => w.pushId === byKey.id);
    assert.deepEqual(
      keyMsg && [keyMsg.kind, keyMsg.flags, keyMsg.pos, keyMsg.epoch, keyMsg.stream],
      [StreamKind.Key, StreamFlag.Ack, 0, "", ""],
      "a key push as StreamMsg kind Key",
    );
    assert.deepEqual(ackers[0].plain, [{ op: MID_OP, text: "acks#key" }], "delivered once");
    const keyStatus = await get(cluster.http, `/goim/push/status?id=${byKey.id}`) as StatusAnswer;
    assert.deepEqual(
      [...keyStatus.targets].sort((a, b) => a.target.localeCompare(b.target)),
      [
        { target: `key:acker-${ackMid1}`, state: "acked", sent: 1, acked: 1 },
        { target: "key:acker-gone", state: "offline", sent: 0, acked: 0 },
      ],
    );

    const unknown = await fetch(`${cluster.http}/goim/push/status?id=AAAAAAAAAAAAAAAAAAAAAA`);
    await unknown.body?.cancel();
    assert.equal(unknown.status, 404, "an unknown push id");

    // Re-sent at most ack_retries times (the wait above outlasted them all).
    const resent = copies().length - 1;
    assert.ok(resent >= 1 && resent <= ACK_RETRIES, `re-sent ${resent} times`);
    console.log(
      `acks (${cluster.mode}): re-sent after ${(again.at - sent.at).toFixed(0)} ms, ${resent} ` +
        `re-sends; wait=${WAIT_MS} answered after ${waitedMs.toFixed(0)} ms; all-acked wait ` +
        `answered after ${quickMs.toFixed(0)} ms`,
    );
  } finally {
    await Promise.all(devices.map((d) => d.close()));
  }
}

const MODES: Mode[] = ["embedded", "distributed"];
for (const mode of MODES) {
  const distributed = mode === "distributed";
  Deno.test({
    name: `streams e2e (${mode}): exactly once in order through random reconnects, offline ` +
      "mids, acks, plain clients unchanged",
    ignore: distributed && (kafka.ignore || redis.ignore),
    // kafkajs and ioredis in the role processes' clients are not ours to sanitize.
    sanitizeOps: !distributed,
    sanitizeResources: !distributed,
    fn: async (t) => {
      if (distributed) redis.assertReachable();
      const cluster = await startStreamsCluster(mode, { set: SETS, kafka, redisUrl: redis.url });
      const tag = `s6-${crypto.randomUUID().slice(0, 6)}`;
      const ok: boolean[] = [];
      try {
        ok.push(
          await t.step(
            "a plain goim client gets goim's bytes beside opted-in devices",
            () => goldenScenario(cluster, tag, 4000),
          ),
        );
        ok.push(
          await t.step("a mid offline during 100 pushes gets all 100 in order", async () => {
            const r = await offlineMidScenario(cluster, 2000, 100);
            console.log(`offline mid (${mode}): ${r.count} replayed in ${r.ms.toFixed(0)} ms`);
          }),
        );
        ok.push(
          await t.step("acks: re-send, wait counts, status", () => acksScenario(cluster, 3000)),
        );
        ok.push(
          await t.step(
            `${TOTAL} numbered pushes, 20 devices dropping and coming back: each message once, in order`,
            async () => {
              const f = await chaosScenario(cluster, { tag, midBase: 1000, total: TOTAL });
              console.log(`chaos (${mode}): ${chaosLine(f)}`);
            },
          ),
        );
      } finally {
        if (ok.includes(false)) console.error(cluster.tails());
        await cluster.stop();
      }
    },
  });
}

Deno.test("streams e2e (embedded): a device offline past streams.history.size is told window_passed", async () => {
  const cluster = await startStreamsCluster("embedded", { set: ["streams.history.size=50"] });
  try {
    await windowPassedScenario(cluster, "s6-window", 5000, 50);
  } finally {
    await cluster.stop();
  }
});

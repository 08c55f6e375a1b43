/**
 * The streams end-to-end scenario of issue #12: SDK devices with `streams`
 * on (by default 20 devices in 5 rooms, 16 mids of which 4 have a device on
 * two comets) lose their connection and come back at random while numbered
 * room and mid pushes flow; at the end every device must hold every message
 * of its room's and its mid's stream exactly once, in order, by number and
 * by position (tests/e2e/streams_load.ts).
 *
 * Two kinds of trouble, chosen by a seeded PRNG every `chaosEvery` pushes:
 * a dropped socket (the SDK reconnects by itself, to the other comet when
 * there are two) and a device going offline for a number of pushes, then
 * coming back as a new client seeded with the old one's `positions()` (on
 * the next comet). Offline time is counted in pushes, not in ms, so the
 * scenario needs no sleep.
 *
 * @module
 */

import assert from "node:assert/strict";
import { midStream, roomStream } from "../../infra/streams.ts";
import { eventually } from "../eventually.ts";
import { Rng } from "../prng.ts";
import { type ReplayFigure, StreamDevice } from "./streams_device.ts";
import {
  assertExactlyOnceInOrder,
  hasAll,
  midTarget,
  type NumberedStream,
  pushNext,
  roomTarget,
  runNumbered,
} from "./streams_load.ts";
import type { StreamsCluster } from "./streams_cluster.ts";

/** Op of the room pushes. */
export const ROOM_OP = 1000;
/** Op of the mid pushes. */
export const MID_OP = 1001;
const DUPLICATES = "goim_comet_stream_duplicates_dropped_total";
const REPLAYED = "goim_comet_stream_replayed_frames_total";
/** Longest wait for the devices to catch up once the pushes are done. */
const DRAIN_MS = 60_000;

/** Options of {@linkcode chaosScenario}. */
export interface ChaosOptions {
  /** Makes room names unique to the run. */
  tag: string;
  /** mids are midBase + 0 … */
  midBase: number;
  /** Numbered pushes in all. */
  total: number;
  /** Pushes between two chaos events (default 50). */
  chaosEvery?: number;
  /** PRNG seed (default 12). */
  seed?: number;
  /** Called after every accepted push (the failover test kills a job from here). */
  onPush?: (done: number) => void;
}

/** What the run measured. */
export interface ChaosFigures {
  pushesPerSecond: number;
  devices: number;
  streams: number;
  drops: number;
  offlines: number;
  /** Connections made on another comet than the device's previous one. */
  moves: number;
  /** Connections made on the same comet as the device's previous one. */
  stays: number;
  /** Duplicates the SDKs dropped (the comet's and the store's dedupe let them through). */
  duplicates: number;
  /** Duplicates the comets dropped (`goim_comet_stream_duplicates_dropped_total`). */
  cometDuplicates: number;
  /** Frames the comets replayed (`goim_comet_stream_replayed_frames_total`). */
  cometReplayed: number;
  /** Connections that replayed something. */
  replays: ReplayFigure[];
  /** From the last push to every device holding everything (ms). */
  drainMs: number;
}

/** Runs the scenario on `cluster`; throws on the first device that lacks a message. */
export async function chaosScenario(
  cluster: StreamsCluster,
  opts: ChaosOptions,
): Promise<ChaosFigures> {
  const rng = new Rng(opts.seed ?? 12);
  const chaosEvery = opts.chaosEvery ?? 50;
  const nComets = cluster.comets.length;
  const rooms = Array.from({ length: 5 }, (_, r) => `live://${opts.tag}-r${r}`);
  const devices: StreamDevice[] = [];
  const mine = new Map<StreamDevice, NumberedStream[]>();
  const streams = new Map<string, NumberedStream>();
  for (const room of rooms) streams.set(roomStream(room), roomTarget(room, ROOM_OP));
  for (let i = 0; i < 20; i++) {
    // Devices 2k and 2k+1 (k < 4) share a mid; they sit in different rooms and comets.
    const mid = opts.midBase + (i < 8 ? i >> 1 : i - 4);
    const room = rooms[i % rooms.length];
    const transport = i % 4 < 2 ? "tcp" : "ws";
    if (!streams.has(midStream(mid))) streams.set(midStream(mid), midTarget(mid, MID_OP));
    const d = new StreamDevice({
      mid,
      room,
      accepts: [MID_OP],
      urls: cluster.comets.map((c) => c[transport]),
      first: i % nComets,
      label: `device ${i} (mid ${mid}, ${room}, ${transport})`,
    });
    devices.push(d);
    mine.set(d, [streams.get(roomStream(room))!, streams.get(midStream(mid))!]);
  }
  const all = [...streams.values()];
  const chaos = new Set<Promise<void>>();
  const failures: unknown[] = [];
  const busy = new Set<StreamDevice>();
  const comeBack: { device: StreamDevice; at: number }[] = [];
  const track = (p: Promise<void>) => {
    const t = p.catch((e) => void failures.push(e)).finally(() => chaos.delete(t));
    chaos.add(t);
  };
  const duplicatesBefore = await cluster.cometMetric(DUPLICATES);
  const replayedBefore = await cluster.cometMetric(REPLAYED);
  try {
    await Promise.all(devices.map((d) => d.connect()));
    // A device offline before its first StreamState would hold no position and,
    // by the contract, start at the top when it comes back: wait for them.
    await eventually(
      () => devices.every((d) => mine.get(d)!.every((s) => d.positions()[s.name] !== undefined)),
      "every device to hold a position of both its streams",
      15_000,
      20,
    );

    const onPush = (done: number) => {
      opts.onPush?.(done);
      for (let i = comeBack.length - 1; i >= 0; i--) {
        const c = comeBack[i];
        if (c.at > done) continue;
        comeBack.splice(i, 1);
        track(c.device.connect().finally(() => busy.delete(c.device)));
      }
      if (done % chaosEvery !== 0) return;
      const d = rng.pick(devices);
      if (busy.has(d) || !d.connected) return;
      if (rng.bool()) {
        d.drop();
        return;
      }
      busy.add(d);
      const at = done + rng.int(20, 1000);
      track(d.goOffline().then(() => void comeBack.push({ device: d, at })));
    };
    const pushesPerSecond = await runNumbered(cluster.http, all, opts.total, onPush);
    const lastPush = performance.now();
    while (chaos.size > 0 || comeBack.length > 0) {
      for (const c of comeBack.splice(0)) {
        track(c.device.connect().finally(() => busy.delete(c.device)));
      }
      await Promise.all(chaos);
    }
    if (failures.length > 0) throw failures[0];
    // One more number per stream: once it is in, nothing older is still on its way.
    await Promise.all(all.map((s) => pushNext(cluster.http, s)));
    await eventually(
      () => devices.every((d) => hasAll(d, mine.get(d)!)),
      "every device to hold every number of its streams",
      DRAIN_MS,
      20,
    ).catch((e) => {
      const behind = devices.filter((d) => !hasAll(d, mine.get(d)!)).map((d) =>
        `${d.label}: ${
          mine.get(d)!.map((s) => `${s.name} ${d.of(s.name).length}/${s.sent}`).join(", ")
        }, connected ${d.connected}, events ${JSON.stringify(d.notRecovered)}, errors ${
          d.sdkErrors.slice(-3)
        }`
      );
      throw new Error(`${(e as Error).message}\n${behind.join("\n")}`);
    });
    const drainMs = performance.now() - lastPush;
    for (const d of devices) assertExactlyOnceInOrder(d, mine.get(d)!);
    const sum = (f: (d: StreamDevice) => number) => devices.reduce((a, d) => a + f(d), 0);
    const figures: ChaosFigures = {
      pushesPerSecond,
      devices: devices.length,
      streams: all.length,
      drops: sum((d) => d.stats.drops),
      offlines: sum((d) => d.stats.offlines),
      moves: sum((d) => d.stats.moves),
      stays: sum((d) => d.stats.auths - 1 - d.stats.moves),
      duplicates: sum((d) => d.duplicates()),
      cometDuplicates: await cluster.cometMetric(DUPLICATES) - duplicatesBefore,
      cometReplayed: await cluster.cometMetric(REPLAYED) - replayedBefore,
      replays: devices.flatMap((d) => d.replays),
      drainMs,
    };
    // The run must have put recovery to work, or it proves nothing.
    assert.ok(figures.drops > 0 && figures.offlines > 0, `chaos happened: ${figures.drops} drops`);
    assert.ok(figures.replays.length > 0, "some connections replayed missed messages");
    return figures;
  } finally {
    await Promise.allSettled(chaos);
    await Promise.all(devices.map((d) => d.close()));
  }
}

/** One line of figures for the test log. */
export function chaosLine(f: ChaosFigures): string {
  const counts = f.replays.map((r) => r.count);
  const slowest = f.replays.reduce((a, r) => r.ms > a.ms ? r : a, { count: 0, ms: 0 });
  return `${f.devices} devices, ${f.streams} streams, ${f.pushesPerSecond.toFixed(0)} pushes/s; ` +
    `${f.drops} socket drops, ${f.offlines} offline periods, ${f.moves} reconnects to another comet and ${f.stays} to the same, ` +
    `${f.duplicates} duplicates dropped by the SDKs, ${f.cometDuplicates} by the comets; ` +
    `${f.cometReplayed} frames replayed by the comets; ${f.replays.length} replays of ` +
    `${Math.min(...counts)}–${Math.max(...counts)} messages (sum ${
      counts.reduce((a, b) => a + b, 0)
    }), slowest ${slowest.count} in ${slowest.ms.toFixed(0)} ms; drained ${
      f.drainMs.toFixed(0)
    } ms after the last push`;
}

/**
 * Recovery scenarios of the streams end-to-end tests that both test files
 * run (tests/streams_e2e_test.ts, tests/streams_failover_test.ts): a mid
 * offline while it is pushed to, and a device offline for longer than the
 * kept history.
 *
 * @module
 */

import assert from "node:assert/strict";
import { eventually } from "../eventually.ts";
import { MID_OP } from "./streams_chaos.ts";
import { type ReplayFigure, StreamDevice } from "./streams_device.ts";
import {
  assertExactlyOnceInOrder,
  hasAll,
  midTarget,
  numbered,
  type NumberedStream,
  pushMany,
  pushNext,
  roomTarget,
} from "./streams_load.ts";
import { type Cluster, get, push } from "./suite.ts";

/** Waits until `device` holds a position of each of `streams` (its first StreamState). */
export function untilPositioned(device: StreamDevice, streams: readonly string[]): Promise<void> {
  return eventually(
    () => streams.every((s) => device.positions()[s] !== undefined),
    `${device.label}: a position of ${streams.join(", ")}`,
    15_000,
    10,
  );
}

/**
 * Waits until the history API (docs/STREAMS.md, "History API") at `http`
 * shows `stream` at `top`: the push API accepted a push before job appended it,
 * and a recovery only knows what was appended.
 */
export function untilTop(http: string, stream: string, top: number): Promise<void> {
  let last: unknown;
  return eventually(
    async () => {
      last = await get(
        http,
        `/goim/history?stream=${encodeURIComponent(stream)}&limit=1`,
      );
      return (last as { pos: number }).pos === top;
    },
    `${stream} at position ${top}`,
    30_000,
    20,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}; last answer ${JSON.stringify(last)}`);
  });
}

/** Waits (bounded) until `check` holds, naming `what`. */
export function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  return eventually(check, what, ms, 10);
}

/**
 * A device sees its mid's stream empty (epoch "", pos 0) and goes offline;
 * `count` pushes to the mid follow, which a second device of the mid gets
 * live; when the first comes back it gets all of them, replayed, in order.
 * Returns the replay's figure.
 */
export async function offlineMidScenario(
  cluster: Cluster,
  mid: number,
  count = 100,
): Promise<ReplayFigure> {
  const stream = midTarget(mid, MID_OP);
  const urls = cluster.comets.map((c) => c.tcp);
  const away = new StreamDevice({
    mid,
    room: "",
    accepts: [MID_OP],
    urls,
    label: "offline device",
  });
  const online = new StreamDevice({
    mid,
    room: "",
    accepts: [MID_OP],
    urls,
    first: urls.length - 1,
    label: "online device",
  });
  try {
    await Promise.all([away.connect(), online.connect()]);
    await untilPositioned(away, [stream.name]);
    await untilPositioned(online, [stream.name]);
    assert.deepEqual(away.positions()[stream.name], { epoch: "", pos: 0 }, "an empty stream");
    await away.goOffline();
    for (let i = 0; i < count; i++) {
      const data = await pushNext(cluster.http, stream) as { id: string; mids: number };
      assert.equal(data.mids, 1, `push ${i + 1}: ${JSON.stringify(data)}`);
      assert.match(data.id, /^[A-Za-z0-9_-]{22}$/, "a push id");
    }
    await until(() => hasAll(online, [stream]), "the online device to get them live");
    await away.connect();
    await until(() => hasAll(away, [stream]), `the offline device to get all ${count}`);
    for (const d of [away, online]) assertExactlyOnceInOrder(d, [stream]);
    assert.ok(away.of(stream.name).every((d) => d.replayed), "all replayed from history");
    assert.ok(online.of(stream.name).every((d) => !d.replayed), "the online device got them live");
    assert.equal(away.replays.length, 1);
    return away.replays[0];
  } finally {
    await Promise.all([away.close(), online.close()]);
  }
}

/** A device (not connected yet) in `room` with `mid`, and its two streams. */
export function roomAndMid(
  cluster: Cluster,
  room: string,
  mid: number,
  label: string,
): { device: StreamDevice; streams: NumberedStream[] } {
  return {
    device: new StreamDevice({
      mid,
      room,
      accepts: [MID_OP],
      urls: cluster.comets.map((c) => c.ws),
      label,
    }),
    streams: [roomTarget(room, MID_OP), midTarget(mid, MID_OP)],
  };
}

/**
 * Connects `device`, gets it messages 1…3 of each of `streams` (its room's
 * and its mid's), takes it offline; returns the epoch of each stream.
 */
export async function primeThenOffline(
  cluster: Cluster,
  device: StreamDevice,
  streams: readonly NumberedStream[],
): Promise<string[]> {
  await device.connect();
  await untilPositioned(device, streams.map((s) => s.name));
  await Promise.all(streams.map((s) => pushMany(cluster.http, s, 3)));
  await until(() => hasAll(device, streams), "the first 3 of each stream");
  const epochs = streams.map((s) => device.of(s.name)[0].epoch);
  await device.goOffline();
  return epochs;
}

/**
 * With `streams.history.size` = `size`: a device that got 3 messages of its
 * room and its mid goes offline for 4 × size pushes to each; back, it is
 * told `window_passed` for both (an SDK `streams` event naming the top),
 * and the next message of each arrives live after it.
 */
export async function windowPassedScenario(
  cluster: Cluster,
  tag: string,
  mid: number,
  size: number,
): Promise<void> {
  const { device, streams } = roomAndMid(cluster, `live://${tag}-window`, mid, "window device");
  try {
    const epochs = await primeThenOffline(cluster, device, streams);
    await Promise.all(streams.map((s) => pushMany(cluster.http, s, 4 * size)));
    const top = 3 + 4 * size;
    await Promise.all(streams.map((s) => untilTop(cluster.http, s.name, top)));
    await device.connect();
    await until(() => device.notRecovered.length >= 2, "streams events for both streams");
    assert.deepEqual(
      [...device.notRecovered].sort((a, b) => a.stream.localeCompare(b.stream)),
      streams.map((s, i) => ({
        stream: s.name,
        reason: "window_passed",
        epoch: epochs[i],
        pos: top,
      }))
        .sort((a, b) => a.stream.localeCompare(b.stream)),
    );
    for (const s of streams) {
      await push(cluster.http, s.path, numbered(s, top + 1));
      s.sent = top + 1;
    }
    await until(
      () => streams.every((s) => device.of(s.name).length === 4),
      "the next message of each stream",
    );
    for (const s of streams) {
      assert.deepEqual(
        device.of(s.name).map((d) => [d.n, d.pos]),
        [[1, 1], [2, 2], [3, 3], [top + 1, top + 1]],
        `${s.name}: nothing of the passed window, then live again`,
      );
    }
  } finally {
    await device.close();
  }
}

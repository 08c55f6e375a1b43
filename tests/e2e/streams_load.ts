/**
 * Numbered pushes for the streams end-to-end tests, and the check that a
 * device got every one of them exactly once, in order.
 *
 * Every stream (a room or a mid) has one sender that pushes `<stream>#1`,
 * `<stream>#2`, … one at a time (the next push starts when the push API
 * accepted the previous one), so the order the stream must keep is the
 * numbers' order; the senders of all streams run at once and share one
 * total, which interleaves room and mid pushes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { midStream, roomStream } from "../../infra/streams.ts";
import { push } from "./suite.ts";
import type { StreamDevice } from "./streams_device.ts";

/** One numbered stream and how to push to it. */
export interface NumberedStream {
  /** `room:live://…` or `mid:<n>`. */
  name: string;
  /** The push path (without the body). */
  path: string;
  /** The last number the push API accepted. */
  sent: number;
}

/** A room stream pushed with operation `op` (room pushes ignore accepts). */
export function roomTarget(room: string, op: number): NumberedStream {
  const [type, id] = room.split("://");
  return {
    name: roomStream(room),
    path: `/goim/push/room?operation=${op}&type=${type}&room=${encodeURIComponent(id)}`,
    sent: 0,
  };
}

/** A mid stream pushed with operation `op` (the devices must accept it). */
export function midTarget(mid: number, op: number): NumberedStream {
  return { name: midStream(mid), path: `/goim/push/mids?operation=${op}&mids=${mid}`, sent: 0 };
}

/** The body of number `n` of `stream`. */
export function numbered(stream: NumberedStream, n: number): string {
  return `${stream.name}#${n}`;
}

/** Pushes the next number of `stream`; returns the push answer's `data`. */
export async function pushNext(http: string, stream: NumberedStream): Promise<unknown> {
  const n = stream.sent + 1;
  const data = await push(http, stream.path, numbered(stream, n));
  stream.sent = n;
  return data;
}

/** Pushes `count` numbers to `stream`, one after the other. */
export async function pushMany(http: string, stream: NumberedStream, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await pushNext(http, stream);
}

/**
 * Runs one sender per stream until `total` pushes were accepted in all;
 * `each` runs after every accepted push (the test's chaos hooks in there).
 * Resolves with the pushes per second.
 */
export async function runNumbered(
  http: string,
  streams: NumberedStream[],
  total: number,
  each?: (done: number) => void,
): Promise<number> {
  let issued = 0;
  let done = 0;
  const started = performance.now();
  await Promise.all(streams.map(async (s) => {
    while (issued < total) {
      issued++;
      await pushNext(http, s);
      each?.(++done);
    }
  }));
  return total / ((performance.now() - started) / 1000);
}

/** Whether `device` has every number sent to each of `streams`. */
export function hasAll(device: StreamDevice, streams: readonly NumberedStream[]): boolean {
  return streams.every((s) => device.of(s.name).length >= s.sent);
}

/**
 * Asserts that `device` got numbers 1 … sent of every stream, each once, in
 * order, at positions `firstPos` … (a fresh stream: position = number), in
 * one epoch, and no `streams` event.
 */
export function assertExactlyOnceInOrder(
  device: StreamDevice,
  streams: readonly NumberedStream[],
): void {
  assert.deepEqual(device.errors, [], `${device.label}: bodies match their streams`);
  assert.deepEqual(device.notRecovered, [], `${device.label}: every stream recovered`);
  for (const s of streams) {
    const got = device.of(s.name);
    const want = Array.from({ length: s.sent }, (_, i) => i + 1);
    const numbers = got.map((d) => d.n);
    if (numbers.length !== want.length || numbers.some((n, i) => n !== want[i])) {
      assert.fail(
        `${device.label}, ${s.name}: want 1…${s.sent} once each in order, got ${describe(numbers)}`,
      );
    }
    const offPos = got.filter((d) => d.pos !== d.n);
    assert.deepEqual(offPos.slice(0, 5), [], `${device.label}, ${s.name}: position = number`);
    const epochs = new Set(got.map((d) => d.epoch));
    assert.equal(epochs.size, s.sent > 0 ? 1 : 0, `${device.label}, ${s.name}: one epoch`);
    assert.ok(!epochs.has(""), `${device.label}, ${s.name}: a non-empty epoch`);
  }
}

// A short account of what is wrong with a number sequence (missing, repeated, out of order).
function describe(numbers: number[]): string {
  const seen = new Set<number>();
  const repeated: number[] = [];
  const backwards: string[] = [];
  let max = 0;
  for (const n of numbers) {
    if (seen.has(n)) repeated.push(n);
    else if (n < max) backwards.push(`${n} after ${max}`);
    seen.add(n);
    max = Math.max(max, n);
  }
  const missing: number[] = [];
  for (let n = 1; n <= max; n++) if (!seen.has(n)) missing.push(n);
  return `${numbers.length} messages, max ${max}; missing ${missing.slice(0, 10)}${
    missing.length > 10 ? ` (+${missing.length - 10})` : ""
  }; repeated ${repeated.slice(0, 10)}; out of order ${backwards.slice(0, 5)}`;
}

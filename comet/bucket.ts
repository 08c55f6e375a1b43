/**
 * Buckets: the comet's channels sharded by key (goim internal/comet/bucket.go).
 *
 * A key's bucket is `fnv1a32Utf16(key) % count`. Each bucket maps keys to
 * channels and holds its own {@linkcode Room} objects, so every structure
 * stays small (Map rehashing never touches all connections at once) and a
 * room broadcast walks each bucket's member list. JavaScript has one
 * thread, so buckets are not about locks as in goim; they bound map sizes
 * and keep the layout goim operators know.
 *
 * The walks over a bucket's channels live here (pushes, broadcasts, the
 * comet's sweeps): they are the fan-out's hot path, plain loops over the
 * map or a room's list, with nothing allocated per channel.
 *
 * @module
 */

import type { Batch } from "../protocol/mod.ts";
import type { Channel } from "./channel.ts";
import type { OnlineCounts } from "./online.ts";
import { Room } from "./room.ts";
import type { CometStreams, StreamBatch } from "./streams.ts";

/**
 * One shard of channels and rooms.
 *
 * @example
 * ```ts
 * import type { Batch } from "../protocol/mod.ts";
 * import type { Channel } from "./channel.ts";
 * import type { OnlineCounts } from "./online.ts";
 * declare const online: OnlineCounts, ch: Channel, batch: Batch;
 * const b = new Bucket(online);
 * const old = b.put(ch, "live://1000"); // a replaced channel with the same key, if any
 * b.changeRoom(ch, "live://2000");
 * b.pushRoom("live://2000", batch);
 * b.del(ch);
 * ```
 */
export class Bucket {
  /** Authenticated channels by key. */
  readonly channels: Map<string, Channel> = new Map();
  /** Rooms with members in this bucket, by room id. */
  readonly rooms: Map<string, Room> = new Map();
  readonly #online: OnlineCounts;

  /** Creates an empty bucket that reports room membership to `online`. */
  constructor(online: OnlineCounts) {
    this.#online = online;
  }

  /**
   * Adds an authenticated channel under its key and into room `roomId`
   * ("" = none). Returns the channel it replaced (same key), now out of
   * the map and its room, for the caller to close.
   */
  put(ch: Channel, roomId: string): Channel | undefined {
    const old = this.channels.get(ch.key);
    if (old !== undefined) this.#leave(old);
    this.channels.set(ch.key, ch);
    ch.bucket = this;
    if (roomId !== "") this.#join(ch, roomId);
    return old;
  }

  /** Removes a channel (only if it is still the one under its key) and takes it out of its room. */
  del(ch: Channel): void {
    if (this.channels.get(ch.key) === ch) this.channels.delete(ch.key);
    this.#leave(ch);
  }

  /** Moves a channel to room `roomId`; "" leaves every room. */
  changeRoom(ch: Channel, roomId: string): void {
    if (ch.room !== null && ch.room.id === roomId) return;
    this.#leave(ch);
    if (roomId !== "") this.#join(ch, roomId);
  }

  /** Queues `batch` for every member of room `roomId` in this bucket (no accepts filter). */
  pushRoom(roomId: string, batch: Batch): void {
    const room = this.rooms.get(roomId);
    if (room !== undefined) room.pushAll(batch);
  }

  /**
   * Queues a room push with stream positions: as {@linkcode Bucket.pushRoom}
   * while no member of the room here opted in; otherwise `stream()` (built
   * once per call, shared by every bucket) for opted-in members.
   */
  pushRoomStream(
    roomId: string,
    batch: Batch,
    stream: () => StreamBatch,
    streams: CometStreams,
  ): void {
    const room = this.rooms.get(roomId);
    if (room === undefined) return;
    if (room.streamMembers === 0) room.pushAll(batch);
    else room.pushMixed(batch, stream(), streams);
  }

  /**
   * Queues `batch` for the channel under `key` if it accepts `op`; an
   * unknown key is skipped. Returns the channel when queued.
   */
  pushKey(key: string, op: number, batch: Batch): Channel | undefined {
    const ch = this.channels.get(key);
    return ch !== undefined && ch.accepts(op) && ch.push(batch) ? ch : undefined;
  }

  /** Queues `batch` for every channel of the bucket that accepts `op`. */
  broadcast(batch: Batch, op: number): void {
    for (const ch of this.channels.values()) if (ch.accepts(op)) ch.push(batch);
  }

  /**
   * Queues a broadcast with push ids for every channel that accepts `op`:
   * `sb` (its `StreamMsg` frames, built once per call) for opted-in ones,
   * through their recovery hold, the plain `batch`, byte for byte goim's,
   * for the others. Called only while the comet has an opted-in channel.
   */
  broadcastStream(batch: Batch, op: number, sb: StreamBatch, streams: CometStreams): void {
    for (const ch of this.channels.values()) {
      if (!ch.accepts(op)) continue;
      if (ch.streams === null) ch.push(batch);
      else streams.deliver(ch, sb);
    }
  }

  /** Appends to `out` every channel that accepts `op` (the snapshot a paced broadcast walks). */
  collectAccepting(op: number, out: Channel[]): void {
    for (const ch of this.channels.values()) if (ch.accepts(op)) out.push(ch);
  }

  /**
   * Calls `fn` with every channel, for the comet's sweeps (deadlines,
   * shutdown). `fn` may end, abort or remove the channel it is given: the
   * walk goes on with the next one.
   */
  each(fn: (ch: Channel) => void): void {
    if (this.channels.size === 0) return;
    for (const ch of this.channels.values()) fn(ch);
  }

  #join(ch: Channel, roomId: string): void {
    let room = this.rooms.get(roomId);
    if (room === undefined) {
      room = new Room(roomId);
      this.rooms.set(roomId, room);
    }
    room.put(ch);
    this.#online.join(roomId);
  }

  #leave(ch: Channel): void {
    const room = ch.room;
    if (room === null) return;
    if (room.del(ch)) this.rooms.delete(room.id);
    this.#online.leave(room.id);
  }
}

/**
 * A room's members within one bucket (goim internal/comet/room.go).
 *
 * Members are an intrusive doubly linked list threaded through the
 * channels themselves (`roomPrev`/`roomNext`), as in goim: joining and
 * leaving are O(1) and allocate nothing, and a room costs no per-member
 * memory beyond two fields every channel already has. A room id spans
 * buckets: each bucket holding members of `live://1` has its own `Room`.
 *
 * @module
 */

import type { Batch } from "../protocol/mod.ts";
import type { Channel } from "./channel.ts";
import type { CometStreams, StreamBatch } from "./streams.ts";

/**
 * The members of one room in one bucket.
 *
 * @example
 * ```ts
 * import type { Batch } from "../protocol/mod.ts";
 * import type { Bucket } from "./bucket.ts";
 * import type { Channel } from "./channel.ts";
 * declare const ch: Channel, batch: Batch, bucket: Bucket;
 * const room = new Room("live://1000");
 * room.put(ch);
 * room.pushAll(batch);
 * if (room.del(ch)) bucket.rooms.delete(room.id); // now empty
 * ```
 */
export class Room {
  /** The room key, e.g. `live://1000`. */
  readonly id: string;
  /** First member, or null when empty. */
  head: Channel | null = null;
  /** Members in this bucket. */
  online = 0;
  /**
   * Members that opted in to streams (comet/streams.ts): while 0, a room
   * push runs {@linkcode Room.pushAll}, the plain loop, whatever it carries.
   */
  streamMembers = 0;

  /** Creates an empty room. */
  constructor(id: string) {
    this.id = id;
  }

  /** Adds a channel that is in no room. */
  put(ch: Channel): void {
    ch.roomPrev = null;
    ch.roomNext = this.head;
    if (this.head !== null) this.head.roomPrev = ch;
    this.head = ch;
    ch.room = this;
    this.online++;
    if (ch.streams !== null) this.streamMembers++;
  }

  /**
   * Queues `batch` for every member: room pushes have no accepts filter.
   * The fan-out's inner loop, a plain walk of the list.
   */
  pushAll(batch: Batch): void {
    for (let ch = this.head; ch !== null; ch = ch.roomNext) ch.push(batch);
  }

  /**
   * Queues a room push with a stream position: `sb` (its `StreamMsg`
   * frames) for opted-in members, through their duplicate filter, the
   * plain `batch` for the others, byte for byte what they get without
   * streams.
   */
  pushMixed(batch: Batch, sb: StreamBatch, streams: CometStreams): void {
    for (let ch = this.head; ch !== null; ch = ch.roomNext) {
      if (ch.streams === null) ch.push(batch);
      else streams.deliver(ch, sb);
    }
  }

  /** Removes a member; returns true when the room is now empty. */
  del(ch: Channel): boolean {
    if (ch.room !== this) return this.online === 0;
    if (ch.roomPrev !== null) ch.roomPrev.roomNext = ch.roomNext;
    else this.head = ch.roomNext;
    if (ch.roomNext !== null) ch.roomNext.roomPrev = ch.roomPrev;
    ch.roomPrev = null;
    ch.roomNext = null;
    ch.room = null;
    this.online--;
    if (ch.streams !== null) this.streamMembers--;
    return this.online === 0;
  }
}

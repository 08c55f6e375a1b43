/**
 * Which comets have members in a room, without ever missing one.
 *
 * Job sends a room batch only to comets with members in the room (goim
 * sends it to every comet). A periodic Rooms() snapshot alone is stale: a
 * comet whose first member of a room joined after the last poll would miss
 * that room's messages. So a snapshot only rules a comet out for a batch
 * when the Rooms() call behind it was *sent after the batch's first message
 * arrived* — membership then already includes every client that joined
 * before the message was published. Otherwise job asks again (one call in
 * flight per comet and one queued, shared by every room waiting, calls
 * started at least `minGapMs` apart) and, when no fresh enough answer comes
 * within `waitMs`, sends the batch anyway. A wrong guess costs one call a comet drops; it never
 * costs a message.
 *
 * Freshness is compared on a logical clock ({@linkcode Stamps}), not wall
 * time, so equal milliseconds and clock skew cannot make a stale snapshot
 * look fresh.
 *
 * @module
 */

import type { RoomsReply } from "../proto/messages.ts";

/** A logical clock shared by message arrivals and Rooms() calls. */
export class Stamps {
  #last = 0;
  /** The next stamp; every call returns a larger number. */
  next(): number {
    return ++this.#last;
  }
}

/** Options of {@linkcode RoomSnapshot}. */
export interface RoomSnapshotOptions {
  /** Shortest gap between two Rooms() calls started on demand (ms). */
  minGapMs: number;
  /** Longest a batch waits for a Rooms() answer before it is sent anyway (ms). */
  waitMs: number;
  /** Wall clock for the gap (ms). */
  now: () => number;
}

/** One comet's room membership as job knows it. */
export class RoomSnapshot {
  /** Rooms with members at the last good answer; null = unknown (send everything). */
  rooms: ReadonlySet<string> | null = null;
  /** Stamp taken when the call behind {@linkcode RoomSnapshot.rooms} was sent. */
  stamp = 0;
  readonly #fetch: () => Promise<RoomsReply>;
  readonly #stamps: Stamps;
  readonly #options: RoomSnapshotOptions;
  #inflight: { stamp: number; done: Promise<void> } | null = null;
  #lastStart = -Infinity;
  #next: Promise<void> | null = null;

  constructor(fetch: () => Promise<RoomsReply>, stamps: Stamps, options: RoomSnapshotOptions) {
    this.#fetch = fetch;
    this.#stamps = stamps;
    this.#options = options;
  }

  /** Starts a Rooms() call unless one is in flight; resolves when it settles. */
  refresh(): Promise<void> {
    if (this.#inflight) return this.#inflight.done;
    const stamp = this.#stamps.next();
    this.#lastStart = this.#options.now();
    const done = Promise.resolve().then(() => this.#fetch()).then(
      (r) => {
        if (stamp < this.stamp) return;
        const rooms = new Set<string>();
        for (const [room, has] of Object.entries(r.rooms ?? {})) if (has) rooms.add(room);
        this.rooms = rooms;
        this.stamp = stamp;
      },
      () => {
        // Unknown again: the comet gets every batch until Rooms() answers.
        this.rooms = null;
        this.stamp = stamp;
      },
    ).finally(() => {
      if (this.#inflight?.stamp === stamp) this.#inflight = null;
    });
    this.#inflight = { stamp, done };
    return done;
  }

  /**
   * Whether a batch of `room` whose first message arrived at stamp `since`
   * must go to this comet. Resolves at once when the snapshot is fresh
   * enough; otherwise waits (at most `waitMs`) for a Rooms() call started
   * after `since`, and says yes when none answers in time.
   */
  async wants(room: string, since: number): Promise<boolean> {
    if (this.stamp > since) return this.#member(room);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let late = false;
    const timeout = new Promise<void>((r) =>
      timer = setTimeout(() => {
        late = true;
        r();
      }, this.#options.waitMs)
    );
    try {
      // Each round waits for a call started later than the last; a few rounds at most.
      for (let round = 0; round < 4 && this.stamp <= since && !late; round++) {
        await Promise.race([this.#freshAfter(since), timeout]);
      }
    } finally {
      clearTimeout(timer);
    }
    return this.stamp > since ? this.#member(room) : true;
  }

  // Settles when a Rooms() call started after stamp `since` has settled.
  // Calls are coalesced: one in flight, one queued, starts `minGapMs` apart.
  #freshAfter(since: number): Promise<void> {
    if (this.#inflight && this.#inflight.stamp > since) return this.#inflight.done;
    return this.#next ??= (async () => {
      // Yield first: the assignment to #next must happen before the finally below clears it.
      await Promise.resolve();
      try {
        if (this.#inflight) await this.#inflight.done;
        const wait = this.#lastStart + this.#options.minGapMs - this.#options.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      } finally {
        this.#next = null;
      }
      await this.refresh();
    })();
  }

  #member(room: string): boolean {
    return this.rooms === null || this.rooms.has(room);
  }
}

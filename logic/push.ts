/**
 * Push target resolution and publishing (goim internal/logic/push.go).
 *
 * Pushes by key are resolved through the session routes to the comet
 * holding each key, grouped per comet, and published as one `PUSH` PushMsg
 * per comet (`server` + its `keys`), so job makes one gRPC call per comet.
 * Pushes by mid do the same while `streams.enabled` is false (goim's
 * routing); while it is true they are published as one `PUSH` per mid
 * (`mid`, no server or keys): job gives each its position in the mid's
 * stream first and looks the keys up after (docs/STREAMS.md), so an offline
 * mid's push is kept. Room and broadcast pushes need no routes: one `ROOM`
 * or `BROADCAST` message each; every comet decides locally who gets it.
 *
 * Every push gets a push id ({@linkcode newPushId}), carried in each of its
 * messages (PushMsg 100): the same on a queue redelivery, so job never
 * gives one push two positions. With `ack` (key and mid pushes), the push
 * and its targets (`key:<key>` / `mid:<mid>`) are recorded in the push
 * status store before anything is published, so that job's `delivered`
 * and the comets' acks always find them; a named key without a live route
 * is marked offline at once.
 *
 * A push of several messages publishes them concurrently and is not
 * atomic: when the queue refuses one of them the caller gets 503 although
 * the others may have been queued (a retry, which gets a new push id, can
 * deliver twice to those).
 *
 * @module
 */

import type { PushMsg } from "../proto/messages.ts";
import type { PushProducer } from "../infra/queue.ts";
import type { SessionStore } from "../infra/sessions.ts";
import { midStream, type PushStatusStore } from "../infra/streams.ts";
import type { LogicMetrics } from "./metrics.ts";
import { ApiError, configured, ResultCode, storeCall } from "./result.ts";

/** Random bytes in a push id: 128 bits, so ids never collide in practice. */
export const PUSH_ID_BYTES = 16;

/**
 * A fresh push id: {@linkcode PUSH_ID_BYTES} random bytes from
 * `crypto.getRandomValues`, base64url without padding (22 characters of
 * `[A-Za-z0-9_-]`).
 *
 * Every push takes one, so the random bytes are drawn 4 KiB at a time (256
 * ids) and encoded by table: 0.4 µs an id instead of 2.3 µs for a
 * `getRandomValues` and a `Buffer` per id (measured on the push path's
 * machine).
 *
 * @example
 * ```ts
 * import { newPushId } from "./push.ts";
 * newPushId(); // e.g. "q3Zk0Xb1T9yW4mVd8sHc2A"
 * ```
 */
export function newPushId(): string {
  if (poolAt === pool.length) {
    crypto.getRandomValues(pool);
    poolAt = 0;
  }
  const b = pool;
  let i = poolAt, out = "";
  poolAt += PUSH_ID_BYTES;
  // 15 bytes make 20 characters, the 16th byte the last 2.
  for (const end = i + 15; i < end; i += 3) {
    const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    out += B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63] + B64URL[n & 63];
  }
  return out + B64URL[b[i] >> 2] + B64URL[(b[i] & 3) << 4];
}

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const pool = new Uint8Array(256 * PUSH_ID_BYTES);
let poolAt = pool.length;

/** The push status target of a key (`key:<key>`). */
export function keyTarget(key: string): string {
  return `key:${key}`;
}

/** How one push is published. */
export interface PushOptions {
  /** Its push id (default a fresh {@linkcode newPushId}). */
  id?: string;
  /** Ask opted-in connections to ack, and keep the push's status (key and mid pushes). */
  ack?: boolean;
}

/** What a push by keys (or by mids routed by logic) reached. */
export interface RoutedPush {
  /** Keys that had a live route and were published. */
  keys: number;
  /** Comets (PushMsg messages) they were spread over. */
  comets: number;
  /** The push id. */
  id: string;
}

/** What a push by mids queued while `streams.enabled`: one message per mid. */
export interface StreamedPush {
  /** The push id. */
  id: string;
  /** Distinct mids published (one PushMsg each). */
  mids: number;
}

/** What a room or broadcast push queued. */
export interface QueuedPush {
  /** The push id. */
  id: string;
}

/** Options of {@linkcode Pusher}. */
export interface PusherOptions {
  /** Session routes. */
  sessions: SessionStore;
  /** The queue. */
  producer: PushProducer;
  /**
   * Publish mid pushes one per mid for job to append to their streams
   * (`streams.enabled`); false: route them here, as goim does. Default false.
   */
  streams?: boolean;
  /** Status of ack-requested pushes; absent: `ack` is refused with 503. */
  pushStatus?: PushStatusStore;
  /** Counters (optional). */
  metrics?: LogicMetrics;
}

/**
 * Resolves targets and publishes PushMsg messages.
 *
 * @example
 * ```ts
 * declare const { sessions, producer }: PusherOptions;
 * const pusher = new Pusher({ sessions, producer });
 * await pusher.keys(1000, ["k1", "k2"], new TextEncoder().encode("hi")); // { keys: 2, comets: 1, id }
 * ```
 */
export class Pusher {
  #sessions: SessionStore;
  #producer: PushProducer;
  #streams: boolean;
  #status?: PushStatusStore;
  #metrics?: LogicMetrics;

  /** Creates a pusher over a session store and a producer. */
  constructor(opts: PusherOptions) {
    this.#sessions = opts.sessions;
    this.#producer = opts.producer;
    this.#streams = opts.streams ?? false;
    this.#status = opts.pushStatus;
    this.#metrics = opts.metrics;
  }

  /** Whether mid pushes go one per mid into their streams (`streams.enabled`). */
  get streams(): boolean {
    return this.#streams;
  }

  /**
   * Refuses (400) a push by mids that asks for acks while streams are off:
   * routed by logic, job could not tell which mid a key belongs to, so the
   * mid targets' deliveries would never be recorded. The HTTP route calls it
   * before reading the body.
   */
  checkMidsAck(ack: boolean): void {
    if (ack && !this.#streams) {
      throw new ApiError(
        ResultCode.BadRequest,
        "ack: a push by mids asks for acks only while streams.enabled is true",
      );
    }
  }

  /**
   * Pushes `msg` with `operation` to the connections with these keys. With
   * `ack`, every distinct named key is a target; one without a live route is
   * offline at once.
   */
  async keys(
    operation: number,
    keys: readonly string[],
    msg: Uint8Array,
    opts: PushOptions = {},
  ): Promise<RoutedPush> {
    const id = opts.id ?? newPushId();
    const ack = opts.ack ?? false;
    const unique = [...new Set(keys)];
    const servers = await this.#sessions.serversByKeys(unique);
    const byServer = new Map<string, string[]>();
    const offline: string[] = [];
    for (let i = 0; i < unique.length; i++) {
      const server = servers[i];
      if (server) group(byServer, server, unique[i]);
      else offline.push(unique[i]);
    }
    if (ack) {
      const status = this.#statusStore();
      // A failure is a 503: the push was not published (create) or was not
      // yet, with its offline marks missing (delivered).
      await storeCall("push status store: create", () => status.create(id, unique.map(keyTarget)));
      await storeCall(
        "push status store: delivered",
        () => Promise.all(offline.map((k) => status.delivered(id, keyTarget(k), 0))),
      );
    }
    this.#metrics?.pushes.inc({ kind: "keys", ack: String(ack) });
    return await this.#publishGroups(operation, byServer, msg, "keys", id, ack);
  }

  /**
   * Pushes `msg` to the mids: with streams, one message per distinct mid
   * (job finds the keys, and keeps the push in the mid's stream); without,
   * to every live key of them, grouped per comet as goim does.
   */
  async mids(
    operation: number,
    mids: readonly number[],
    msg: Uint8Array,
    opts: PushOptions = {},
  ): Promise<RoutedPush | StreamedPush> {
    const id = opts.id ?? newPushId();
    const ack = opts.ack ?? false;
    this.checkMidsAck(ack);
    const unique = [...new Set(mids)];
    this.#metrics?.pushes.inc({ kind: "mids", ack: String(ack) });
    if (this.#streams) {
      if (ack) {
        const status = this.#statusStore();
        await storeCall(
          "push status store: create",
          () => status.create(id, unique.map(midStream)),
        );
      }
      await settleAll(unique.map((mid) => {
        const m: PushMsg = {
          type: "PUSH",
          operation,
          speed: 0,
          server: "",
          room: "",
          keys: [],
          msg,
          push_id: id,
          mid,
        };
        if (ack) m.ack = true;
        return this.#publish(m);
      }));
      return { id, mids: unique.length };
    }
    const keyServers = await this.#sessions.keysByMids(unique);
    const byServer = new Map<string, string[]>();
    for (const [key, server] of keyServers) if (key && server) group(byServer, server, key);
    return await this.#publishGroups(operation, byServer, msg, "mids", id, false);
  }

  /** Publishes one ROOM message for `room` (a room key `type://id`). */
  async room(
    operation: number,
    room: string,
    msg: Uint8Array,
    id: string = newPushId(),
  ): Promise<QueuedPush> {
    this.#metrics?.pushes.inc({ kind: "room", ack: "false" });
    await this.#publish({
      type: "ROOM",
      operation,
      speed: 0,
      server: "",
      room,
      keys: [],
      msg,
      push_id: id,
    });
    return { id };
  }

  /** Publishes one BROADCAST message; `speed` paces it (0 = as fast as possible). */
  async all(
    operation: number,
    speed: number,
    msg: Uint8Array,
    id: string = newPushId(),
  ): Promise<QueuedPush> {
    this.#metrics?.pushes.inc({ kind: "all", ack: "false" });
    await this.#publish({
      type: "BROADCAST",
      operation,
      speed,
      server: "",
      room: "",
      keys: [],
      msg,
      push_id: id,
    });
    return { id };
  }

  #statusStore(): PushStatusStore {
    return configured(this.#status, "ack: push status store");
  }

  async #publishGroups(
    operation: number,
    byServer: Map<string, string[]>,
    msg: Uint8Array,
    kind: "keys" | "mids",
    id: string,
    ack: boolean,
  ): Promise<RoutedPush> {
    let keys = 0;
    const sends: Promise<void>[] = [];
    for (const [server, serverKeys] of byServer) {
      keys += serverKeys.length;
      const m: PushMsg = {
        type: "PUSH",
        operation,
        speed: 0,
        server,
        room: "",
        keys: serverKeys,
        msg,
        push_id: id,
      };
      if (ack) m.ack = true;
      sends.push(this.#publish(m));
    }
    await settleAll(sends);
    this.#metrics?.pushTargets.inc({ kind }, keys);
    return { keys, comets: byServer.size, id };
  }

  async #publish(msg: PushMsg): Promise<void> {
    await this.#producer.publish(msg);
    this.#metrics?.published.inc({ type: msg.type });
  }
}

// allSettled first so that no rejection is left unobserved, then report the first failure.
async function settleAll(sends: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(sends);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

function group(map: Map<string, string[]>, server: string, key: string): void {
  const list = map.get(server);
  if (list) list.push(key);
  else map.set(server, [key]);
}

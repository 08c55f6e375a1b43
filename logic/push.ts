/**
 * Push target resolution and publishing (goim internal/logic/push.go).
 *
 * Pushes by key or mid are resolved through the session routes to the comet
 * holding each key, grouped per comet, and published as one `PUSH` PushMsg
 * per comet (`server` + its `keys`), so job makes one gRPC call per comet.
 * Room and broadcast pushes need no routes: one `ROOM` or `BROADCAST`
 * message each; every comet decides locally who gets it.
 *
 * A push to several comets publishes its messages concurrently and is not
 * atomic: when the queue refuses one of them the caller gets 503 although
 * the others may have been queued (a retry can deliver twice to those).
 *
 * @module
 */

import type { PushMsg } from "../proto/messages.ts";
import type { PushProducer } from "../infra/queue.ts";
import type { SessionStore } from "../infra/sessions.ts";
import type { LogicMetrics } from "./metrics.ts";

/** What a push by keys or mids reached. */
export interface RoutedPush {
  /** Keys that had a live route and were published. */
  keys: number;
  /** Comets (PushMsg messages) they were spread over. */
  comets: number;
}

/** Options of {@linkcode Pusher}. */
export interface PusherOptions {
  /** Session routes. */
  sessions: SessionStore;
  /** The queue. */
  producer: PushProducer;
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
 * await pusher.keys(1000, ["k1", "k2"], new TextEncoder().encode("hi")); // { keys: 2, comets: 1 }
 * ```
 */
export class Pusher {
  #sessions: SessionStore;
  #producer: PushProducer;
  #metrics?: LogicMetrics;

  /** Creates a pusher over a session store and a producer. */
  constructor(opts: PusherOptions) {
    this.#sessions = opts.sessions;
    this.#producer = opts.producer;
    this.#metrics = opts.metrics;
  }

  /** Pushes `msg` with `operation` to the connections with these keys. */
  async keys(operation: number, keys: readonly string[], msg: Uint8Array): Promise<RoutedPush> {
    const unique = [...new Set(keys)];
    const servers = await this.#sessions.serversByKeys(unique);
    const byServer = new Map<string, string[]>();
    for (let i = 0; i < unique.length; i++) {
      const server = servers[i];
      if (server) group(byServer, server, unique[i]);
    }
    return await this.#publishGroups(operation, byServer, msg, "keys");
  }

  /** Pushes `msg` to every live key of these mids. */
  async mids(operation: number, mids: readonly number[], msg: Uint8Array): Promise<RoutedPush> {
    const keyServers = await this.#sessions.keysByMids([...new Set(mids)]);
    const byServer = new Map<string, string[]>();
    for (const [key, server] of keyServers) if (key && server) group(byServer, server, key);
    return await this.#publishGroups(operation, byServer, msg, "mids");
  }

  /** Publishes one ROOM message for `room` (a room key `type://id`). */
  async room(operation: number, room: string, msg: Uint8Array): Promise<void> {
    await this.#publish({
      type: "ROOM",
      operation,
      speed: 0,
      server: "",
      room,
      keys: [],
      msg,
    });
  }

  /** Publishes one BROADCAST message; `speed` paces it (0 = as fast as possible). */
  async all(operation: number, speed: number, msg: Uint8Array): Promise<void> {
    await this.#publish({
      type: "BROADCAST",
      operation,
      speed,
      server: "",
      room: "",
      keys: [],
      msg,
    });
  }

  async #publishGroups(
    operation: number,
    byServer: Map<string, string[]>,
    msg: Uint8Array,
    kind: "keys" | "mids",
  ): Promise<RoutedPush> {
    let keys = 0;
    const sends: Promise<void>[] = [];
    for (const [server, serverKeys] of byServer) {
      keys += serverKeys.length;
      sends.push(this.#publish({
        type: "PUSH",
        operation,
        speed: 0,
        server,
        room: "",
        keys: serverKeys,
        msg,
      }));
    }
    // allSettled first so that no rejection is left unobserved, then report the first failure.
    const results = await Promise.allSettled(sends);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    this.#metrics?.pushTargets.inc({ kind }, keys);
    return { keys, comets: byServer.size };
  }

  async #publish(msg: PushMsg): Promise<void> {
    await this.#producer.publish(msg);
    this.#metrics?.published.inc({ type: msg.type });
  }
}

function group(map: Map<string, string[]>, server: string, key: string): void {
  const list = map.get(server);
  if (list) list.push(key);
  else map.set(server, [key]);
}

/**
 * The comet's side of the operator console (docs/CONSOLE.md):
 * `goim.operator.CometOperator` (proto/operator.proto), served on the gRPC
 * port beside `goim.comet.Comet`, or called in-process by an embedded logic.
 *
 * - **Stats**: connections, IPs, rooms, the cumulative counters the console
 *   turns into rates (frames out, drops, disconnects by reason, pushes by
 *   kind), event-loop lag (infra/loop_lag.ts), RSS, send-queue bytes.
 * - **Sessions**: who is connected under some keys: mid, IP, room,
 *   transport, connected since. Never a token or a message body.
 * - **Kick**: op 6 reason 4008 with the operator's message, then close (the
 *   usual close grace: what was queued before goes out first).
 * - **RoomMembers**: a room's member count here and a sample of its keys.
 * - **Drain**: the comet stops taking clients (new ones get op 6 4006, as
 *   during a shutdown), registers at once with weight 0 and state
 *   `draining` (the node balancer offers it to nobody; job still delivers
 *   to the clients it has), and asks its clients to leave, paced evenly over
 *   `spread_ms` in {@linkcode DRAIN_TICK_MS} steps, each with op 6 4006 and
 *   a reconnect hint (`reconnect_after_ms`, a jitter of up to
 *   {@linkcode MAX_RECONNECT_HINT_MS} or the spread, whichever is less). When
 *   the last one has gone, or at `deadline_ms` (the rest are closed then),
 *   it deregisters and stops registering: state `drained`. The process keeps
 *   running until it is stopped; a drain cannot be undone (restart it).
 *
 * Every list is bounded by proto/operator.ts MAX_* and every request field
 * checked: a bad request is INVALID_ARGUMENT with a message naming it.
 *
 * @module
 */

import { loopLag, type LoopLagHold } from "../infra/loop_lag.ts";
import type { Logger } from "../infra/log.ts";
import { invalidArgument as invalid } from "../proto/grpc.ts";
import {
  type CometOperatorApi,
  type DrainReply,
  type DrainReq,
  type KickReply,
  type KickReq,
  MAX_DRAIN_MS,
  MAX_REASON_CHARS,
  MAX_ROOM_SAMPLE,
  MAX_SESSION_KEYS,
  type RoomMembersReply,
  type RoomMembersReq,
  type Session,
  type SessionsReply,
  type SessionsReq,
  type StatsReply,
} from "../proto/operator.ts";
import { type DisconnectReason, ReasonCode } from "../protocol/mod.ts";
import { type Channel, ChannelState } from "./channel.ts";
import type { ConnectionHub } from "./hub.ts";
import type { CometMetrics } from "./metrics.ts";

/** Period of the drain's paced closes, ms. */
export const DRAIN_TICK_MS = 100;

/** Largest reconnect hint a drained client gets, ms. */
export const MAX_RECONNECT_HINT_MS = 2000;

/** What a comet's operator state is. */
export type OperatorState = "up" | "draining" | "drained";

/** What {@linkcode CometOperator} works on. */
export interface CometOperatorOptions {
  /** node.id. */
  id: string;
  /** The comet's connections. */
  hub: ConnectionHub;
  /** Its counters. */
  metrics: CometMetrics;
  /** Registers the comet now (its record factory reads {@linkcode CometOperator.state}). */
  register(): Promise<void>;
  /** Removes its record. */
  deregister(): Promise<void>;
  /** Drain progress and failures. */
  log: Logger;
}

function keysOf(req: { keys?: string[] | null }): string[] {
  const keys = req.keys ?? [];
  if (keys.length > MAX_SESSION_KEYS) {
    throw invalid(`keys: ${keys.length} given, at most ${MAX_SESSION_KEYS}`);
  }
  return keys;
}

function duration(name: string, v: number | undefined, max: number): number {
  const n = v ?? 0;
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw invalid(`${name}: ${n} is not an integer from 0 to ${max} ms`);
  }
  return n;
}

// Sum of a counter's values, or the values by one label.
async function total(c: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> {
  let n = 0;
  for (const v of (await c.get()).values) n += v.value;
  return n;
}

async function byLabel(
  c: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> },
  label: string,
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await c.get()).values) {
    const k = String(v.labels[label] ?? "");
    out[k] = (out[k] ?? 0) + v.value;
  }
  return out;
}

/**
 * The comet's operator service.
 *
 * @example
 * ```ts
 * import type { Logger } from "../infra/log.ts";
 * import type { ConnectionHub } from "./hub.ts";
 * import type { CometMetrics } from "./metrics.ts";
 * declare const hub: ConnectionHub, metrics: CometMetrics, log: Logger;
 * declare function register(): Promise<void>;
 * declare function deregister(): Promise<void>;
 * const op = new CometOperator({ id: "comet-1", hub, metrics, register, deregister, log });
 * await op.Kick({ keys: ["k1"], reason: "abuse report 42" }); // { kicked: 1 }
 * op.stop();
 * ```
 */
export class CometOperator implements CometOperatorApi {
  readonly #o: CometOperatorOptions;
  readonly #started = performance.now();
  #state: OperatorState = "up";
  #deadlineAt = 0; // epoch ms
  #timer: ReturnType<typeof setInterval> | undefined;
  #queue: Channel[] = [];
  #lag: LoopLagHold | undefined;

  /** Serves `opts.hub`; nothing runs until a drain. */
  constructor(opts: CometOperatorOptions) {
    this.#o = opts;
  }

  /** `up`, `draining` or `drained`. */
  get state(): OperatorState {
    return this.#state;
  }

  /** What the registry record says: `draining` while draining, else absent (up). */
  get registryState(): "draining" | undefined {
    return this.#state === "draining" ? "draining" : undefined;
  }

  /** False once drained: the comet must not register again. */
  get registers(): boolean {
    return this.#state !== "drained";
  }

  /** Holds `hold` (the loop-lag sampler) until {@linkcode CometOperator.stop}. */
  hold(hold: LoopLagHold): void {
    this.#lag?.release();
    this.#lag = hold;
  }

  /** Ends a running drain's timer and lets go of the loop-lag sampler (comet shutdown). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
    this.#lag?.release();
    this.#lag = undefined;
  }

  /** Live figures. */
  Stats = async (): Promise<StatsReply> => {
    const { hub, metrics: m } = this.#o;
    m.sync();
    const lag = loopLag();
    return {
      id: this.#o.id,
      state: this.#state,
      connections: hub.connections,
      ips: hub.ips.size,
      rooms: hub.online.rooms,
      connections_by_transport: {
        tcp: hub.byTransport[0],
        ws: hub.byTransport[1],
        wss: hub.byTransport[2],
      },
      frames_out: await total(m.framesOutTotal),
      bytes_out: await total(m.bytesOutTotal),
      dropped: await byLabel(m.droppedTotal, "policy"),
      slow_consumer_disconnects: await total(m.slowConsumerDisconnects),
      disconnects: await byLabel(m.disconnects, "reason"),
      pushes: await byLabel(m.pushesTotal, "kind"),
      loop_lag_known: lag !== null,
      loop_lag_p50_ms: lag?.p50Ms ?? 0,
      loop_lag_p99_ms: lag?.p99Ms ?? 0,
      loop_lag_max_ms: lag?.maxMs ?? 0,
      rss_bytes: Deno.memoryUsage().rss,
      queued_bytes: hub.queuedBytes,
      uptime_ms: Math.round(performance.now() - this.#started),
      drain_deadline_ms: this.#state === "draining" ? this.#deadlineAt : 0,
    };
  };

  /** The named keys' connections here (unknown keys are left out). */
  Sessions = (req: SessionsReq): Promise<SessionsReply> => {
    try {
      const sessions: Session[] = [];
      for (const key of keysOf(req)) {
        const ch = this.#channel(key);
        if (ch === undefined) continue;
        sessions.push({
          key: ch.key,
          mid: ch.mid,
          ip: ch.ip,
          room: ch.room?.id ?? "",
          connected_at_ms: Math.round(performance.timeOrigin + ch.connectedAt * 1000),
          transport: ch.transport,
        });
      }
      return Promise.resolve({ sessions });
    } catch (e) {
      return Promise.reject(e);
    }
  };

  /** op 6 4008 with `reason`, then close, for each named key connected here. */
  Kick = (req: KickReq): Promise<KickReply> => {
    try {
      const keys = keysOf(req);
      const text = (req.reason ?? "").trim().slice(0, MAX_REASON_CHARS);
      const reason: DisconnectReason = {
        code: ReasonCode.Kicked,
        message: text === "" ? "closed by an operator" : `closed by an operator: ${text}`,
      };
      let kicked = 0;
      for (const key of keys) {
        const ch = this.#channel(key);
        if (ch === undefined) continue;
        this.#o.hub.end(ch, reason, "kicked");
        kicked++;
      }
      if (kicked > 0) this.#o.log.info("connections kicked by an operator", { kicked });
      return Promise.resolve({ kicked });
    } catch (e) {
      return Promise.reject(e);
    }
  };

  /** Members of a room here and up to `limit` of their keys. */
  RoomMembers = (req: RoomMembersReq): Promise<RoomMembersReply> => {
    const room = req.room ?? "";
    const limit = req.limit ?? 0;
    if (room === "") return Promise.reject(invalid("room is required"));
    if (!Number.isInteger(limit) || limit < 0 || limit > MAX_ROOM_SAMPLE) {
      return Promise.reject(
        invalid(`limit: ${limit} is not an integer from 0 to ${MAX_ROOM_SAMPLE}`),
      );
    }
    const keys: string[] = [];
    for (const b of this.#o.hub.buckets) {
      if (keys.length >= limit) break;
      for (let ch = b.rooms.get(room)?.head ?? null; ch !== null; ch = ch.roomNext) {
        if (keys.length >= limit) break;
        keys.push(ch.key);
      }
    }
    return Promise.resolve({ count: this.#o.hub.online.local(room), keys });
  };

  /** Starts a drain (see the module doc); a second call while draining only reports. */
  Drain = async (req: DrainReq): Promise<DrainReply> => {
    const deadline = duration("deadline_ms", req.deadline_ms, MAX_DRAIN_MS);
    const spread = Math.min(duration("spread_ms", req.spread_ms, MAX_DRAIN_MS), deadline);
    const hub = this.#o.hub;
    if (this.#state === "up") {
      this.#state = "draining";
      this.#deadlineAt = Date.now() + deadline;
      // New clients are refused with op 6 4006, as during a shutdown.
      hub.shuttingDown = true;
      for (const b of hub.buckets) b.each((ch) => this.#queue.push(ch));
      this.#o.log.info("comet draining", {
        connections: hub.connections,
        deadline_ms: deadline,
        spread_ms: spread,
      });
      try {
        await this.#o.register();
      } catch (e) {
        // The next renew interval registers again, with weight 0.
        this.#o.log.warn("registering as draining failed", { error: e });
      }
      this.#pace(spread);
    }
    return {
      state: this.#state,
      connections: hub.connections,
      drain_deadline_ms: this.#deadlineAt,
    };
  };

  #channel(key: string): Channel | undefined {
    if (typeof key !== "string" || key === "") return undefined;
    const ch = this.#o.hub.bucket(key).channels.get(key);
    return ch !== undefined && ch.state === ChannelState.Open ? ch : undefined;
  }

  #pace(spread: number): void {
    const steps = Math.max(1, Math.ceil(spread / DRAIN_TICK_MS));
    const perStep = Math.max(1, Math.ceil(this.#queue.length / steps));
    const hint = Math.min(spread, MAX_RECONNECT_HINT_MS);
    const step = () => {
      const hub = this.#o.hub;
      const late = Date.now() >= this.#deadlineAt;
      const n = late ? this.#queue.length : perStep;
      for (const ch of this.#queue.splice(0, n)) {
        hub.end(ch, {
          code: ReasonCode.ShuttingDown,
          message: "comet draining: reconnect elsewhere",
          reconnect_after_ms: Math.floor(Math.random() * (hint + 1)),
        }, "drain");
      }
      if (hub.connections === 0 || late) void this.#drained(late);
    };
    step();
    if (this.#state === "draining") this.#timer = setInterval(step, DRAIN_TICK_MS);
  }

  async #drained(late: boolean): Promise<void> {
    if (this.#state !== "draining") return;
    this.#state = "drained";
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
    this.#o.log.info("comet drained; deregistering", {
      at_deadline: late,
      open: this.#o.hub.connections,
    });
    try {
      await this.#o.deregister();
    } catch (e) {
      // It is no longer renewed: the record expires within its TTL.
      this.#o.log.warn("deregister after the drain failed", { error: e });
    }
  }
}

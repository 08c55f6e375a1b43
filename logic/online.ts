/**
 * Cluster-wide room online counts (goim internal/logic/online.go and
 * loadOnline in logic.go).
 *
 * Each comet reports its per-room connection counts every
 * `comet.renew_online_interval` (RenewOnline). Logic stores the report in
 * the session store (so other logic processes see it) and keeps an
 * in-memory aggregate, room → sum over comets, which answers RenewOnline
 * replies and the `/goim/online/*` API without reading every comet's report
 * on every call:
 *
 * - a report received here replaces that comet's share of the aggregate at
 *   once (subtract the old counts, add the new: O(rooms of that comet));
 * - every {@linkcode ONLINE_REFRESH_MS} (goim: 10 s) the reports of every
 *   registered comet, and of every comet seen here, are re-read from the
 *   store, which picks up reports that reached other logic processes;
 * - a comet whose latest report is older than `logic.online_stale_after` is
 *   dropped from the aggregate (checked on every read: O(comets)). goim
 *   uses a fixed 5 min.
 *
 * A report missing from the store (e.g. Redis restarted) leaves the share
 * known here in place until it goes stale. So does a report that cannot be
 * read (another writer's layout, garbage, an unreachable store): the
 * refresh skips that comet only, counts it in `online_skipped_total` and
 * warns at most once per {@linkcode ONLINE_WARN_INTERVAL_MS} per reason;
 * every other comet's report still counts.
 *
 * The Redis engine stores `updated` in whole seconds (goim's format), so a
 * report re-read from it is up to 1 s older than its true time: a comet is
 * dropped at most 1 s early, which `logic.online_stale_after` (>= 1 s,
 * default 60 s) against a 10 s report interval never notices.
 *
 * @module
 */

import type { Logger } from "../infra/log.ts";
import type { Registry } from "../infra/registry.ts";
import { type ServerOnline, type SessionStore, UnreadableOnlineError } from "../infra/sessions.ts";
import type { LogicMetrics } from "./metrics.ts";

/** Period of the background re-read of every comet's report (goim `_onlineTick`). */
export const ONLINE_REFRESH_MS = 10_000;

/**
 * At most one warning per reason per this period about reports a refresh
 * skipped (a poisoned key would otherwise log on every refresh); the
 * `online_skipped_total` metric counts every skip.
 */
export const ONLINE_WARN_INTERVAL_MS = 60_000;

/** Comets named in one such warning (with the first error); its count covers the rest. */
const WARN_SERVERS = 5;

/** Why a refresh skipped a comet's report: its stored value, or the store itself. */
type SkipReason = "unreadable" | "store";

/** One entry of `/goim/online/top` (goim model.Top). */
export interface TopRoom {
  /** Room id without the type (`1000` for `live://1000`). */
  room_id: string;
  /** Connections in the room across the cluster. */
  count: number;
}

/** Options of {@linkcode OnlineCounts}. */
export interface OnlineCountsOptions {
  /** Where reports are stored. */
  sessions: SessionStore;
  /** Lists the comets whose reports to re-read. */
  registry: Registry;
  /** `logic.online_stale_after` in ms. */
  staleAfterMs: number;
  /** Clock, ms since the epoch. */
  now?: () => number;
  /** Logger for store failures during refresh. */
  log?: Logger;
  /** Metrics (optional). */
  metrics?: LogicMetrics;
}

interface Share {
  roomCount: Record<string, number>;
  updated: number;
}

/**
 * The aggregate.
 *
 * @example
 * ```ts
 * declare const { sessions, registry }: OnlineCountsOptions;
 * const online = new OnlineCounts({ sessions, registry, staleAfterMs: 60_000 });
 * await online.report("comet-1", { "live://1": 3 }); // { "live://1": 3 }
 * online.top("live", 10); // [{ room_id: "1", count: 3 }]
 * ```
 */
export class OnlineCounts {
  #sessions: SessionStore;
  #registry: Registry;
  #staleAfterMs: number;
  #now: () => number;
  #log?: Logger;
  #metrics?: LogicMetrics;
  #shares = new Map<string, Share>();
  #total = new Map<string, number>();
  #refreshing: Promise<void> | undefined;
  #lastWarn = new Map<string, number>();

  /** Creates an empty aggregate. */
  constructor(opts: OnlineCountsOptions) {
    this.#sessions = opts.sessions;
    this.#registry = opts.registry;
    this.#staleAfterMs = opts.staleAfterMs;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log;
    this.#metrics = opts.metrics;
  }

  /**
   * Handles a comet's RenewOnline: stores the report (timestamped now),
   * applies it to the aggregate and returns the cluster-wide counts.
   * Rejects when the store fails (the comet retries on its next tick).
   */
  async report(server: string, roomCount: Record<string, number>): Promise<Record<string, number>> {
    const clean: Record<string, number> = {};
    for (const [room, n] of Object.entries(roomCount)) {
      if (room !== "" && Number.isInteger(n) && n > 0) clean[room] = n;
    }
    const updated = this.#now();
    await this.#sessions.addServerOnline({ server, roomCount: clean, updated });
    this.#apply(server, clean, updated);
    this.#metrics?.onlineReports.inc();
    return this.snapshot();
  }

  /** The aggregate as an object (room key → count), stale comets excluded. */
  snapshot(): Record<string, number> {
    this.#evictStale();
    return Object.fromEntries(this.#total);
  }

  /** Count of one room key (0 when unknown). */
  count(room: string): number {
    this.#evictStale();
    return this.#total.get(room) ?? 0;
  }

  /**
   * The `limit` most populated rooms of `type` (room keys `type://…`),
   * most first, ties by room id.
   */
  top(type: string, limit: number): TopRoom[] {
    this.#evictStale();
    const prefix = `${type}://`;
    const out: TopRoom[] = [];
    for (const [room, count] of this.#total) {
      if (room.startsWith(prefix)) out.push({ room_id: room.slice(prefix.length), count });
    }
    out.sort((a, b) => b.count - a.count || (a.room_id < b.room_id ? -1 : 1));
    return out.slice(0, limit);
  }

  /** Counts of these room ids of `type` (0 for unknown rooms), keyed by id as goim does. */
  rooms(type: string, ids: readonly string[]): Record<string, number> {
    this.#evictStale();
    const out: Record<string, number> = {};
    for (const id of ids) out[id] = this.#total.get(`${type}://${id}`) ?? 0;
    return out;
  }

  /** Comets currently in the aggregate. */
  get servers(): number {
    this.#evictStale();
    return this.#shares.size;
  }

  /**
   * Re-reads the stored reports of every registered comet and every comet
   * seen here. Concurrent calls share one pass. A report that cannot be read
   * is skipped (its comet keeps its last share here), counted and warned
   * about; never rejects.
   */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => this.#refreshing = undefined);
    return this.#refreshing;
  }

  /** Resolves once a refresh in flight (if any) has finished; starts none. */
  async idle(): Promise<void> {
    await this.#refreshing;
  }

  async #refresh(): Promise<void> {
    const ids = new Set(this.#shares.keys());
    try {
      for (const c of await this.#registry.list()) ids.add(c.id);
    } catch (e) {
      // Still re-read the comets known here: the store may be fine.
      this.#warnSometimes("registry", "online refresh: cannot list comets; re-reading known ones", {
        error: e,
      });
    }
    const servers = [...ids];
    // One report failing must not cost the others (allSettled, not all).
    const results = await Promise.allSettled(servers.map((id) => this.#sessions.serverOnline(id)));
    const skipped: Record<SkipReason, { server: string; error: unknown }[]> = {
      unreadable: [],
      store: [],
    };
    results.forEach((r, i) => {
      if (r.status === "fulfilled") {
        if (r.value) this.#applyStored(r.value);
        return;
      }
      const reason = r.reason instanceof UnreadableOnlineError ? "unreadable" : "store";
      skipped[reason].push({ server: servers[i], error: r.reason });
    });
    for (const reason of ["unreadable", "store"] as const) {
      const list = skipped[reason];
      if (list.length === 0) continue;
      this.#metrics?.onlineSkipped.inc({ reason }, list.length);
      const what = reason === "unreadable"
        ? "online refresh: skipped unreadable comet reports; the others still count"
        : "online refresh: store failed for some comet reports; keeping their last counts";
      this.#warnSometimes(reason, what, {
        skipped: list.length,
        servers: list.slice(0, WARN_SERVERS).map((s) => s.server),
        error: list[0].error,
      });
    }
    this.#evictStale();
  }

  // The metric has the full count; the log gets one line per kind and period.
  #warnSometimes(kind: string, msg: string, fields: Record<string, unknown>): void {
    if (!this.#log) return;
    const now = this.#now();
    const last = this.#lastWarn.get(kind);
    if (last !== undefined && now - last < ONLINE_WARN_INTERVAL_MS) return;
    this.#lastWarn.set(kind, now);
    this.#log.warn(msg, fields);
  }

  #applyStored(r: ServerOnline): void {
    const known = this.#shares.get(r.server);
    if (known && known.updated >= r.updated) return;
    if (this.#now() - r.updated > this.#staleAfterMs) return;
    this.#apply(r.server, r.roomCount, r.updated);
  }

  #apply(server: string, roomCount: Record<string, number>, updated: number): void {
    this.#remove(server);
    for (const [room, n] of Object.entries(roomCount)) {
      this.#total.set(room, (this.#total.get(room) ?? 0) + n);
    }
    this.#shares.set(server, { roomCount, updated });
    this.#metrics?.onlineServers.set(this.#shares.size);
  }

  #remove(server: string): void {
    const old = this.#shares.get(server);
    if (!old) return;
    for (const [room, n] of Object.entries(old.roomCount)) {
      const left = (this.#total.get(room) ?? 0) - n;
      if (left > 0) this.#total.set(room, left);
      else this.#total.delete(room);
    }
    this.#shares.delete(server);
  }

  #evictStale(): void {
    const oldest = this.#now() - this.#staleAfterMs;
    let evicted = false;
    for (const [server, share] of this.#shares) {
      if (share.updated < oldest) {
        this.#remove(server);
        evicted = true;
      }
    }
    if (evicted) this.#metrics?.onlineServers.set(this.#shares.size);
  }
}

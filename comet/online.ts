/**
 * Room online counts: this comet's own (kept exact as channels join and
 * leave rooms) and the cluster's (from logic's last RenewOnline reply),
 * plus the RenewOnline round trip itself (goim Server.onlineproc).
 *
 * Heartbeat replies (op 3) carry the cluster-wide count of the client's
 * room when logic has reported one, else the local count: both are a map
 * lookup, never a walk over buckets.
 *
 * @module
 */

import type { LogicApi } from "../proto/api.ts";

/**
 * Per-room member counts.
 *
 * @example
 * ```ts
 * const online = new OnlineCounts();
 * online.join("live://1");
 * online.count("live://1"); // 1 (local)
 * online.setCluster({ "live://1": 42 });
 * online.count("live://1"); // 42 (cluster)
 * ```
 */
export class OnlineCounts {
  readonly #local = new Map<string, number>();
  #cluster = new Map<string, number>();

  /** A member joined `room` on this comet. */
  join(room: string): void {
    this.#local.set(room, (this.#local.get(room) ?? 0) + 1);
  }

  /** A member left `room` on this comet. */
  leave(room: string): void {
    const n = (this.#local.get(room) ?? 0) - 1;
    if (n > 0) this.#local.set(room, n);
    else this.#local.delete(room);
  }

  /** Members of `room` on this comet. */
  local(room: string): number {
    return this.#local.get(room) ?? 0;
  }

  /** The online count a heartbeat reply reports: cluster-wide when known, else local. */
  count(room: string): number {
    return this.#cluster.get(room) ?? this.#local.get(room) ?? 0;
  }

  /** Rooms with members on this comet. */
  get rooms(): number {
    return this.#local.size;
  }

  /** This comet's counts, as RenewOnline sends them. */
  roomCount(): Record<string, number> {
    return Object.fromEntries(this.#local);
  }

  /** Room ids with members on this comet. */
  roomIds(): IterableIterator<string> {
    return this.#local.keys();
  }

  /** Replaces the cluster-wide counts with logic's latest reply. */
  setCluster(all: Readonly<Record<string, number>>): void {
    this.#cluster = new Map(Object.entries(all));
  }
}

/**
 * One RenewOnline round trip: reports this comet's counts and keeps the
 * cluster's. Errors propagate (the caller logs them and keeps the last
 * known counts).
 *
 * @example
 * ```ts
 * import type { LogicApi } from "../proto/api.ts";
 * declare const logic: LogicApi;
 * const online = new OnlineCounts();
 * await renewOnline(logic, "comet-1", online);
 * ```
 */
export async function renewOnline(
  logic: LogicApi,
  server: string,
  online: OnlineCounts,
): Promise<void> {
  const reply = await logic.RenewOnline({ server, roomCount: online.roomCount() });
  online.setCluster(reply.allRoomCount ?? {});
}

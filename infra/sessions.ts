/**
 * Session routes and online counts, owned by logic.
 *
 * Mirrors goim's logic dao: key → comet server, mid → {key → server}, both
 * with a TTL renewed by heartbeats, plus each comet's room counts with the
 * time they were reported. Engines: memory (embedded) and Redis.
 *
 * @module
 */

/** A comet's per-room connection counts as last reported by RenewOnline. */
export interface ServerOnline {
  /** Comet server id. */
  server: string;
  /** Room key → connections in that room on this comet. */
  roomCount: Record<string, number>;
  /**
   * When the comet reported it (ms since the epoch). The Redis engine keeps
   * whole seconds (goim's `ol_<server>` format), so it reads back rounded
   * down to the second; the memory engine keeps the milliseconds.
   */
  updated: number;
}

/**
 * Thrown by {@linkcode SessionStore.serverOnline} when a comet's stored
 * report exists but cannot be read: another writer's layout (wrong Redis
 * type), JSON that is not goim's, or a value over the engine's size bound.
 * Only that comet's report is affected; a caller reading many reports
 * skips it and goes on.
 */
export class UnreadableOnlineError extends Error {
  /** Creates the error; `message` names the stored key and what is wrong with it. */
  constructor(
    /** The comet whose report is unreadable. */
    readonly server: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "UnreadableOnlineError";
  }
}

/**
 * The session store. Every method is safe to call concurrently from many
 * logic processes sharing one engine.
 */
export interface SessionStore {
  /**
   * The ordered channel {@linkcode SessionStore.keysByMids} works over,
   * when it has one: its lookup is sent on it before `keysByMids` returns
   * its promise, so it runs after everything sent on that channel before
   * (a stream append: `StreamStore.orderedVia` in infra/streams.ts). The
   * Redis engine on a single node sets it to its connection; unset on a
   * Redis Cluster and in the memory engine.
   */
  readonly orderedVia?: object;
  /**
   * Routes `key` (and, when `mid` > 0, `mid`'s key set) to `server`, with
   * the store's TTL. A second call for the same key moves it.
   */
  addMapping(mid: number, key: string, server: string): Promise<void>;
  /**
   * Renews the TTL of `key`'s route (and `mid`'s key set). Returns whether
   * the route still existed; when it did not, the caller re-adds it (this is
   * how routes come back after a store restart).
   */
  expireMapping(mid: number, key: string): Promise<boolean>;
  /**
   * Removes `key`'s route only if it still points at `server` (a reconnect
   * to another comet must not be undone by the old comet's late
   * Disconnect). Returns whether a route was removed.
   */
  delMapping(mid: number, key: string, server: string): Promise<boolean>;
  /** The server of each key, or null when the key has no live route; same order. */
  serversByKeys(keys: readonly string[]): Promise<(string | null)[]>;
  /** Every live key of these mids with its server (key → server). */
  keysByMids(mids: readonly number[]): Promise<Map<string, string>>;
  /** Stores a comet's room counts (replacing the previous report). */
  addServerOnline(online: ServerOnline): Promise<void>;
  /**
   * A comet's last report, or null. Rejects with
   * {@linkcode UnreadableOnlineError} when the stored report is unreadable,
   * with an engine error when the store is unreachable.
   */
  serverOnline(server: string): Promise<ServerOnline | null>;
  /** Forgets a comet's report (on deregistration). */
  delServerOnline(server: string): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}

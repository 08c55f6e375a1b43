/**
 * The comet registry: which comets exist, where, and how loaded.
 *
 * Comets keep their record fresh; logic reads it for the node balancer and
 * online counts; job reads it to know which comets to deliver to. A record
 * not renewed within its TTL disappears. Engines: memory and Redis.
 *
 * @module
 */

/** What a comet says about itself beside its weight: absent in a record means `up`. */
export type CometState = "up" | "draining";

/** One comet as it advertises itself. */
export interface CometRecord {
  /** Unique server id (goim: hostname); the `server` of routes. */
  id: string;
  /** gRPC address job dials (`host:port`). */
  grpcAddr: string;
  /** Public host names or IPs clients connect to (for /goim/nodes). */
  addrs: string[];
  /** Client ports; 0 when a listener is off. */
  tcpPort: number;
  /** WebSocket port; 0 when off. */
  wsPort: number;
  /** WSS port; 0 when off. */
  wssPort: number;
  /** Static weight for the node balancer (goim default 10). */
  weight: number;
  /** Open client connections. */
  connections: number;
  /** Distinct client IPs. */
  ips: number;
  /**
   * Region the comet runs in (`node.region`; goim REGION); absent or "" =
   * none. The node balancer prefers comets in the client's region.
   * Optional so that records written before it existed still read.
   */
  region?: string;
  /** Zone within the region (`node.zone`; goim ZONE); absent or "" = none. */
  zone?: string;
  /**
   * `draining`: an operator asked the comet to empty itself (docs/CONSOLE.md,
   * "Drain"); it registers with weight 0, so the node balancer offers it to
   * no new client, while job still delivers to the clients it holds. Absent
   * (records of older versions too) = `up`.
   */
  state?: CometState;
  /** Last renewal (ms since the epoch), set by the registry. */
  updated: number;
}

/** The registry engine. */
export interface Registry {
  /** Creates or refreshes a record; it expires `ttlMs` after this call. */
  register(record: Omit<CometRecord, "updated">, ttlMs: number): Promise<void>;
  /** Removes a record at once (graceful shutdown). */
  deregister(id: string): Promise<void>;
  /** Every live record, ordered by id. */
  list(): Promise<CometRecord[]>;
  /** Releases connections. */
  close(): Promise<void>;
}

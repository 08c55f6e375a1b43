/**
 * Stream history and push status: the stores behind positions, recovery,
 * offline delivery and acks (docs/STREAMS.md).
 *
 * Two engines implement both: memory (embedded mode) and Redis (distributed
 * mode). Job appends (it is the one ordering point of each stream), logic
 * reads (recovery on behalf of comets, the history API) and keeps push
 * status.
 *
 * @module
 */

/** A message to append to a stream. */
export interface StreamEntryInit {
  /** The push id: appending an id the stream already holds returns its position again. */
  pushId: string;
  /** The business op. */
  op: number;
  /** The message body. */
  body: Uint8Array;
  /** Whether the push asked for acks (replays ask again). */
  ack?: boolean;
}

/** A message as kept in a stream. */
export interface StreamEntry extends StreamEntryInit {
  /** Its position (≥ 1, no holes). */
  pos: number;
  /** When it was appended, ms since the epoch. */
  time: number;
}

/** What {@linkcode StreamStore.append} assigned. */
export interface Appended {
  /** The stream's epoch. */
  epoch: string;
  /** One position per entry appended, in order (an already-held push id gets its old one). */
  positions: number[];
}

/** Why a recovery failed (docs/STREAMS.md, "Guarantees"). */
export type NotRecoveredReason = "epoch_changed" | "window_passed" | "unavailable" | "disabled";

/** A client's last position in a stream. */
export interface StreamPosition {
  epoch: string;
  pos: number;
}

/** What {@linkcode StreamStore.recover} answers for one stream. */
export interface Recovery {
  /** The stream's current epoch (a fresh one if the stream has no history). */
  epoch: string;
  /** The stream's last position (0: nothing appended in this epoch). */
  top: number;
  /** Whether `entries` are every message after the asked position. */
  recovered: boolean;
  /** Why not, when `recovered` is false. */
  reason?: NotRecoveredReason;
  /** The messages after the asked position, oldest first (empty unless recovered). */
  entries: StreamEntry[];
}

/** What {@linkcode StreamStore.range} answers (the history API). */
export interface StreamRange {
  epoch: string;
  top: number;
  entries: StreamEntry[];
}

/** Bounds every stream engine applies (config `streams.*`). */
export interface StreamLimits {
  /** Messages kept per stream (`streams.history.size`). */
  size: number;
  /** Longest a message is replayed, and an idle stream is kept, in ms (`streams.history.ttl`). */
  ttlMs: number;
}

/** Stream history. */
export interface StreamStore {
  /**
   * Appends entries to one stream, atomically and in order, trimming it to
   * its bounds. Entries whose push id the stream holds keep their position.
   */
  append(stream: string, entries: readonly StreamEntryInit[]): Promise<Appended>;
  /**
   * Everything after `since` (null: only the epoch and top), or why not.
   * Never creates a stream: an unknown stream answers its would-be epoch
   * and top 0, and `epoch_changed` to a non-empty `since.epoch`.
   */
  recover(stream: string, since: StreamPosition | null): Promise<Recovery>;
  /** Up to `limit` entries after `after` (or the last `limit` if absent), for the history API. */
  range(stream: string, opts: { after?: number; limit: number }): Promise<StreamRange>;
  /** Releases resources. */
  close(): Promise<void>;
}

/** One target of an ack-requested push: `mid:<mid>` or `key:<key>`. */
export interface PushTargetStatus {
  target: string;
  /** `acked` once any of its connections acked; `offline` when job found no live connection. */
  state: "pending" | "acked" | "offline";
  /** Connections job handed the push to. */
  sent: number;
  /** Connections that acked. */
  acked: number;
}

/** An ack-requested push and its targets. */
export interface PushStatus {
  id: string;
  /** When logic accepted the push, ms since the epoch. */
  created: number;
  targets: PushTargetStatus[];
  acked: number;
  pending: number;
  offline: number;
}

/** One client ack, as the comet reports it. */
export interface AckReport {
  pushId: string;
  key: string;
  mid: number;
}

/** Status of ack-requested pushes, kept `streams.status.ttl`. */
export interface PushStatusStore {
  /** Records a push and its targets (`mid:<mid>` / `key:<key>`), all pending. */
  create(id: string, targets: readonly string[]): Promise<void>;
  /** Job handed the push for `target` to `sent` connections (0: offline). */
  delivered(id: string, target: string, sent: number): Promise<void>;
  /** Client acks; unknown ids and repeated acks of one key are ignored. */
  acked(acks: readonly AckReport[]): Promise<void>;
  /** The push's status, or null when unknown or expired. */
  get(id: string): Promise<PushStatus | null>;
  /** Releases resources. */
  close(): Promise<void>;
}

/** The stream name of a room key (`live://1` → `room:live://1`). */
export function roomStream(room: string): string {
  return `room:${room}`;
}

/** The stream name of a mid (`42` → `mid:42`). */
export function midStream(mid: number): string {
  return `mid:${mid}`;
}

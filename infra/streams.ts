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
  /**
   * Set when the append's work had to be sent again, later (Redis: EVALSHA
   * answered NOSCRIPT and the script went again as EVAL): it then ran after
   * whatever was sent on {@linkcode StreamStore.orderedVia} in between, so
   * a call issued right after `append` on the same channel may have run
   * before it, and must be made again to follow it.
   */
  reissued?: true;
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
  /** The stream's current epoch; `""` for a stream with no history. */
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
   * The ordered channel {@linkcode StreamStore.append} works over, when it
   * has one: the append's work is sent on it before `append` returns its
   * promise, and the channel executes work in the order it was sent. So a
   * call on another store with the same `orderedVia`
   * (`SessionStore.keysByMids`, infra/sessions.ts) issued right after `append`
   * returned runs after the append — unless the answer is
   * {@linkcode Appended.reissued}. The Redis engine on a single node sets
   * it to its connection (infra/redis/client.ts, "Order" says why the
   * order holds); unset on a Redis Cluster (the keys live on different
   * nodes) and in the memory engine (its calls run when made, so callers
   * just await one after the other).
   */
  readonly orderedVia?: object;
  /**
   * Appends entries to one stream, atomically and in order: positions
   * top+1, top+2, … with no hole. An entry whose push id the stream still
   * holds (or that came earlier in the same call) gets that position again
   * and is not added twice. A stream with no history starts a fresh epoch
   * at position 1. The stream is trimmed to its last `history.size`
   * entries and expires `history.ttl` after its last append. No entries:
   * nothing is created, the answer is the current epoch (`""` if none).
   * Throws a RangeError for a stream name that is empty, not well-formed
   * or over {@linkcode MAX_STREAM_NAME_BYTES}, a push id that is not 1 …
   * {@linkcode MAX_PUSH_ID_LENGTH} of `[A-Za-z0-9_-]`, or an op that is
   * not an int32.
   */
  append(stream: string, entries: readonly StreamEntryInit[]): Promise<Appended>;
  /**
   * Everything after `since`, or why not. Reads only: it never creates a
   * stream, and a stream with no history (never appended, expired, lost,
   * evicted) answers epoch `""` and top 0. In order:
   *
   * - `since` null: the epoch and top, `recovered: true`, no entries;
   * - `since.epoch` is not the stream's epoch → `epoch_changed`, except
   *   `{epoch: "", pos: 0}` ("I saw it with no history"): on a stream with
   *   no history it is recovered with nothing; on one with history every
   *   entry is replayed if the first kept is still position 1, else
   *   `window_passed`;
   * - `since.pos > top` → `epoch_changed` (a client cannot be ahead);
   * - `since.pos == top` → recovered, no entries;
   * - the oldest kept entry is after `since.pos + 1` (trimmed to
   *   `history.size`), or an entry to replay is older than `history.ttl`
   *   → `window_passed`;
   * - else every entry after `since.pos`, oldest first.
   *
   * `epoch` and `top` are the stream's current ones in every answer.
   */
  recover(stream: string, since: StreamPosition | null): Promise<Recovery>;
  /**
   * Up to `limit` (1 … {@linkcode MAX_RANGE_LIMIT}) entries after `after`,
   * or the last `limit` if absent, for the history API; entries older than
   * `history.ttl` are left out. Throws a RangeError for another limit.
   */
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

/**
 * An ack-requested push and its targets. The three counts are disjoint and
 * sum to `targets.length`: `acked` (any connection acked), `offline` (not
 * acked, and job found no live connection: `sent` 0 after a delivery) and
 * `pending` (the rest: not delivered yet, or delivered and not acked).
 */
export interface PushStatus {
  id: string;
  /** When the store recorded the push, ms since the epoch. */
  created: number;
  /** In the order given to {@linkcode PushStatusStore.create}. */
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

/** Status of ack-requested pushes, kept `streams.status.ttl` from creation. */
export interface PushStatusStore {
  /**
   * Records a push and its targets (`mid:<mid>` / `key:<key>`, repeats
   * counted once), all pending. Throws a RangeError beyond
   * {@linkcode MAX_PUSH_TARGETS} targets or for a target of another form.
   */
  create(id: string, targets: readonly string[]): Promise<void>;
  /**
   * Job handed the push for `target` to `sent` connections (0: offline);
   * a later call for the same target adds to `sent`. An unknown id or a
   * target the push does not have is ignored.
   */
  delivered(id: string, target: string, sent: number): Promise<void>;
  /**
   * Client acks. An ack counts for `key:<key>` if that is a target of the
   * push, else for `mid:<mid>` if that is one; one key counts once per
   * push however often it acks. Unknown ids (expired, or not push ids at
   * all: the comet reports what clients send) are ignored.
   */
  acked(acks: readonly AckReport[]): Promise<void>;
  /** The push's status, or null when unknown or expired. */
  get(id: string): Promise<PushStatus | null>;
  /** Releases resources. */
  close(): Promise<void>;
}

/** Longest stream name, in UTF-8 bytes (docs/STREAMS.md, "Opting in"). */
export const MAX_STREAM_NAME_BYTES = 256;

/** Longest epoch, in ASCII bytes. */
export const MAX_EPOCH_BYTES = 64;

/** Longest push id; push ids are ASCII `[A-Za-z0-9_-]` (docs/STREAMS.md, "StreamMsg"). */
export const MAX_PUSH_ID_LENGTH = 64;

/** Largest `limit` of {@linkcode StreamStore.range} (the history API's bound). */
export const MAX_RANGE_LIMIT = 1000;

/** Most targets one ack-requested push may have ({@linkcode PushStatusStore.create}). */
export const MAX_PUSH_TARGETS = 10_000;

/** The stream name of a room key (`live://1` → `room:live://1`). */
export function roomStream(room: string): string {
  return `room:${room}`;
}

/** The stream name of a mid (`42` → `mid:42`). */
export function midStream(mid: number): string {
  return `mid:${mid}`;
}

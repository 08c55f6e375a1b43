/**
 * What both stream engines (infra/memory/streams.ts, infra/redis/streams.ts)
 * decide the same way, in one place: input checks, fresh epochs, the
 * recovery rules of `StreamStore.recover` (infra/streams.ts) and the push status
 * arithmetic. Each engine only says what it holds (a {@linkcode StreamHead}
 * and entries, or per-target counters); the answer is computed here.
 *
 * @module
 */

import {
  type AckReport,
  MAX_PUSH_ID_LENGTH,
  MAX_PUSH_TARGETS,
  MAX_RANGE_LIMIT,
  MAX_STREAM_NAME_BYTES,
  type NotRecoveredReason,
  type PushStatus,
  type PushTargetStatus,
  type Recovery,
  type StreamEntry,
  type StreamEntryInit,
  type StreamLimits,
  type StreamPosition,
} from "./streams.ts";

const utf8 = new TextEncoder();
const PUSH_ID = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_PUSH_ID_LENGTH}}$`);
const INT32_MIN = -(2 ** 31), INT32_MAX = 2 ** 31 - 1;

/** Throws a RangeError unless `stream` is 1 … 256 bytes of well-formed UTF-8. */
export function checkStreamName(stream: string): void {
  if (typeof stream !== "string" || stream === "") {
    throw new RangeError("stream name must be a non-empty string");
  }
  // A lone surrogate would encode as U+FFFD, so two names would share one stream.
  if (!stream.isWellFormed()) throw new RangeError("stream name must be well-formed UTF-8");
  // Each UTF-16 unit is at most 3 UTF-8 bytes: only long names need encoding.
  if (stream.length * 3 > MAX_STREAM_NAME_BYTES) {
    const bytes = utf8.encode(stream).length;
    if (bytes > MAX_STREAM_NAME_BYTES) {
      throw new RangeError(
        `stream name is ${bytes} bytes, over the bound of ${MAX_STREAM_NAME_BYTES}`,
      );
    }
  }
}

/** Whether `id` is a push id: 1 … 64 of `[A-Za-z0-9_-]`. */
export function isPushId(id: unknown): id is string {
  return typeof id === "string" && PUSH_ID.test(id);
}

/** Throws a RangeError for an entry `StreamStore.append` refuses. */
export function checkEntries(entries: readonly StreamEntryInit[]): void {
  for (const e of entries) {
    checkPushId(e.pushId);
    if (!Number.isInteger(e.op) || e.op < INT32_MIN || e.op > INT32_MAX) {
      throw new RangeError(`op must be an int32, got ${e.op}`);
    }
    if (!(e.body instanceof Uint8Array)) throw new RangeError("body must be a Uint8Array");
  }
}

/** Throws a RangeError unless `since` is null or an epoch string and a position 0 … 2^53−1. */
export function checkSince(since: StreamPosition | null): void {
  if (since === null) return;
  if (typeof since.epoch !== "string") throw new RangeError("since.epoch must be a string");
  if (!Number.isSafeInteger(since.pos) || since.pos < 0) {
    throw new RangeError(`since.pos must be an integer 0 … 2^53−1, got ${since.pos}`);
  }
}

/** The range options, checked: `limit` 1 … 1000, `after` absent or an integer ≥ 0. */
export function checkRange(opts: { after?: number; limit: number }): void {
  if (!Number.isInteger(opts.limit) || opts.limit < 1 || opts.limit > MAX_RANGE_LIMIT) {
    throw new RangeError(`limit must be an integer 1 … ${MAX_RANGE_LIMIT}, got ${opts.limit}`);
  }
  if (opts.after !== undefined && !(Number.isSafeInteger(opts.after) && opts.after >= 0)) {
    throw new RangeError(`after must be an integer ≥ 0, got ${opts.after}`);
  }
}

/** Throws a RangeError for limits no engine can keep. */
export function checkLimits(limits: StreamLimits): void {
  if (!Number.isInteger(limits.size) || limits.size < 1) {
    throw new RangeError(`history size must be an integer ≥ 1, got ${limits.size}`);
  }
  if (!Number.isInteger(limits.ttlMs) || limits.ttlMs < 1) {
    throw new RangeError(`history ttl must be an integer ≥ 1 ms, got ${limits.ttlMs}`);
  }
}

/** A fresh epoch: 12 hex digits from 48 random bits (ASCII, far under 64 bytes). */
export function newEpoch(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** What an engine holds of a stream with history. */
export interface StreamHead {
  epoch: string;
  /** Last position. */
  top: number;
  /** Oldest position still kept (top + 1 − kept entries). */
  first: number;
}

/** Whether an entry is too old to replay: `history.ttl` or more before `now`. */
export function isStale(time: number, now: number, ttlMs: number): boolean {
  return time + ttlMs <= now;
}

/**
 * The rules of `StreamStore.recover` up to the entries: the full
 * answer when no entry is needed, or the position the replay starts at
 * (entries from there to `head.top` are needed). `head` null: no history.
 */
export function planRecovery(
  head: StreamHead | null,
  since: StreamPosition | null,
): Recovery | number {
  const epoch = head?.epoch ?? "", top = head?.top ?? 0;
  const answer = (reason?: NotRecoveredReason): Recovery =>
    reason
      ? { epoch, top, recovered: false, reason, entries: [] }
      : { epoch, top, recovered: true, entries: [] };
  if (since === null) return answer();
  // "I saw it with no history": everything kept, if nothing was trimmed yet.
  const blank = since.epoch === "" && since.pos === 0;
  if (head === null) return blank ? answer() : answer("epoch_changed");
  if (since.epoch !== head.epoch && !blank) return answer("epoch_changed");
  if (since.pos > top) return answer("epoch_changed");
  if (since.pos === top) return answer();
  if (head.first > since.pos + 1) return answer("window_passed");
  return since.pos + 1;
}

/**
 * The answer of a replay from `from` (what {@linkcode planRecovery}
 * returned) given the entries the engine read: `window_passed` if any is
 * stale, or if they are not exactly `from` … `head.top` (a history changed
 * underneath, which the engines' atomic reads should never show).
 */
export function replayAnswer(
  head: StreamHead,
  from: number,
  entries: StreamEntry[],
  now: number,
  ttlMs: number,
): Recovery {
  const { epoch, top } = head;
  const complete = entries.length === top - from + 1 && entries[0]?.pos === from &&
    entries[entries.length - 1].pos === top;
  if (!complete || entries.some((e) => isStale(e.time, now, ttlMs))) {
    return { epoch, top, recovered: false, reason: "window_passed", entries: [] };
  }
  return { epoch, top, recovered: true, entries };
}

/**
 * The targets of a new push status, repeats dropped, in order; throws a
 * RangeError for more than {@linkcode MAX_PUSH_TARGETS} or a target that
 * is not `mid:<decimal>` or `key:<non-empty>`.
 */
export function checkTargets(targets: readonly string[]): string[] {
  const unique = [...new Set(targets)];
  if (unique.length > MAX_PUSH_TARGETS) {
    throw new RangeError(
      `a push has at most ${MAX_PUSH_TARGETS} targets, got ${unique.length}`,
    );
  }
  for (const t of unique) {
    if (typeof t !== "string" || !(/^mid:\d+$/.test(t) || /^key:./s.test(t))) {
      throw new RangeError(
        `a target is mid:<mid> or key:<key>, got ${JSON.stringify(String(t).slice(0, 80))}`,
      );
    }
  }
  return unique;
}

/** Throws a RangeError for a push id the status store cannot keep. */
export function checkPushId(id: string): void {
  if (!isPushId(id)) {
    throw new RangeError(
      `push id must be 1 … ${MAX_PUSH_ID_LENGTH} of [A-Za-z0-9_-], got ${
        JSON.stringify(String(id).slice(0, 80))
      }`,
    );
  }
}

/** Throws a RangeError for a `streams.status.ttl` no status store can keep. */
export function checkStatusTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs < 1) {
    throw new RangeError(`status ttl must be an integer ≥ 1 ms, got ${ttlMs}`);
  }
}

/** Throws a RangeError unless `sent` is an integer ≥ 0. */
export function checkSent(sent: number): void {
  if (!Number.isSafeInteger(sent) || sent < 0) {
    throw new RangeError(`sent must be an integer ≥ 0, got ${sent}`);
  }
}

/** The two targets an ack may count for, in the order they are tried. */
export function ackCandidates(ack: AckReport): [string, string] {
  return [`key:${ack.key}`, `mid:${ack.mid}`];
}

/** The counters an engine keeps per target of a push. */
export interface TargetCounters {
  target: string;
  /** Connections handed the push, summed; -1 before the first delivery. */
  sent: number;
  /** Distinct keys that acked. */
  acked: number;
}

/** A {@linkcode PushStatus} from the engine's counters (targets in creation order). */
export function pushStatus(id: string, created: number, targets: TargetCounters[]): PushStatus {
  let acked = 0, offline = 0;
  const out: PushTargetStatus[] = targets.map(({ target, sent, acked: a }) => {
    const state = a > 0 ? "acked" : sent === 0 ? "offline" : "pending";
    if (state === "acked") acked++;
    else if (state === "offline") offline++;
    return { target, state, sent: Math.max(sent, 0), acked: a };
  });
  return { id, created, targets: out, acked, offline, pending: out.length - acked - offline };
}

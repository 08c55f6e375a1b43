/**
 * `goim.logic.Streams` (proto/streams.proto), the service comets call for
 * opted-in connections (docs/STREAMS.md): the same object serves gRPC
 * (logic.ts adds it to the server of `goim.logic.Logic`, behind the same
 * `grpc.token` and TLS) and an embedded comet in-process.
 *
 * | method | does |
 * |--------|------|
 * | Recover | for each named position `StreamStore.recover(stream, {epoch, pos})`, for each `state_only` stream `recover(stream, null)`, all at once; answers one result per stream, named ones first, in request order |
 * | Acks | `PushStatusStore.acked` with the batch |
 *
 * Failure stays per stream: a store that fails, or does not answer within
 * `streams.recover.timeout` (the comet gives up then anyway), makes that
 * stream's result `recovered: false, reason: "unavailable"`, never the
 * whole call. With `streams.enabled = false` every stream answers
 * `disabled` and the store is not asked. A request beyond the bounds
 * ({@linkcode MAX_RECOVER_STREAMS} streams, {@linkcode MAX_ACKS_PER_CALL}
 * acks, stream names of 65,535 bytes, epochs of 64, positions below 2^53)
 * is INVALID_ARGUMENT: the comet checks the client's input before calling.
 * A stream name over 256 bytes (a long room key's) is a stream no store
 * holds: it answers epoch `""`, top 0, as a stream with no history.
 *
 * @module
 */

import { grpcStatus, invalidArgument as invalid, RpcError } from "../proto/grpc.ts";
import type {
  RecoverReply,
  StreamEntryMsg,
  StreamPositionMsg,
  StreamResult,
} from "../proto/messages.ts";
import { MAX_ACKS_PER_CALL, MAX_RECOVER_STREAMS, type StreamsApi } from "../proto/streams.ts";
import { errorMessage, type Logger, LogThrottle } from "../infra/log.ts";
import type {
  AckReport,
  NotRecoveredReason,
  PushStatusStore,
  Recovery,
  StreamEntry,
  StreamStore,
} from "../infra/streams.ts";
import type { LogicMetrics } from "./metrics.ts";
import {
  isPushId,
  MAX_EPOCH_BYTES,
  MAX_STREAM_BYTES,
  MAX_WIRE_STREAM_BYTES,
} from "../protocol/streams.ts";

/** Shortest interval between two "recover failed" log lines (the failures are counted). */
export const RECOVER_FAILURE_LOG_MS = 10_000;

/** What {@linkcode createStreamsService} needs. */
export interface StreamsServiceDeps {
  /** `streams.enabled`: false answers every stream `disabled`. */
  enabled: boolean;
  /** Stream history; absent: every stream answers `unavailable`. */
  streams?: StreamStore;
  /** Push status; absent: acks are counted and dropped. */
  pushStatus?: PushStatusStore;
  /** Longest wait for the store per stream (`streams.recover.timeout`), in ms. */
  recoverTimeoutMs: number;
  /** Logger (store failures, at most one line per {@linkcode RECOVER_FAILURE_LOG_MS}). */
  log?: Logger;
  /** Metrics. */
  metrics?: LogicMetrics;
}

/** The result of a stream outcome counted in `recover_streams_total{result}`. */
type RecoverResult = "recovered" | "state" | NotRecoveredReason;

const utf8 = new TextEncoder();

function checkStream(name: string): void {
  const max = MAX_WIRE_STREAM_BYTES;
  if (
    name === "" || name.length > max || (name.length * 3 > max && utf8.encode(name).length > max)
  ) {
    throw invalid(`stream name must be 1 to ${MAX_WIRE_STREAM_BYTES} bytes`);
  }
}

/**
 * Whether a store can hold `name` (at most 256 bytes): a longer room key
 * has no stream (job cannot append to it), so it is answered as a stream
 * with no history without asking the store.
 */
function storable(name: string): boolean {
  return name.length * 3 <= MAX_STREAM_BYTES || utf8.encode(name).length <= MAX_STREAM_BYTES;
}

function checkPosition(p: StreamPositionMsg): void {
  checkStream(p.stream);
  if (utf8.encode(p.epoch).length > MAX_EPOCH_BYTES) {
    throw invalid(`epoch of ${p.stream} is longer than ${MAX_EPOCH_BYTES} bytes`);
  }
  if (!Number.isSafeInteger(p.pos) || p.pos < 0) {
    throw invalid(`pos of ${p.stream} must be an integer from 0 to 2^53-1`);
  }
}

/**
 * Builds the service object.
 *
 * @example
 * ```ts
 * import type { StreamStore, PushStatusStore } from "../infra/streams.ts";
 * import { createStreamsService } from "./streams_service.ts";
 * declare const streams: StreamStore, pushStatus: PushStatusStore;
 * const service = createStreamsService({ enabled: true, streams, pushStatus, recoverTimeoutMs: 5000 });
 * const reply = await service.Recover({
 *   streams: [{ stream: "mid:42", epoch: "a07d33", pos: 7 }],
 *   state_only: ["room:live://1000"],
 * });
 * ```
 */
export function createStreamsService(deps: StreamsServiceDeps): StreamsApi {
  const { enabled, streams, pushStatus, recoverTimeoutMs, log, metrics } = deps;
  const failures = new LogThrottle(RECOVER_FAILURE_LOG_MS);

  const notRecovered = (stream: string, reason: NotRecoveredReason): StreamResult => ({
    stream,
    epoch: "",
    top: 0,
    recovered: false,
    reason,
    entries: [],
  });

  const one = async (
    stream: string,
    since: StreamPositionMsg | null,
  ): Promise<StreamResult> => {
    let result: StreamResult;
    if (!enabled) result = notRecovered(stream, "disabled");
    else if (streams === undefined) result = notRecovered(stream, "unavailable");
    else if (!storable(stream)) {
      // As a store answers a stream with no history.
      const fresh = since === null || (since.epoch === "" && since.pos === 0);
      result = fresh
        ? { stream, epoch: "", top: 0, recovered: true, reason: "", entries: [] }
        : notRecovered(stream, "epoch_changed");
    } else {
      try {
        const r = await within(
          streams.recover(stream, since && { epoch: since.epoch, pos: since.pos }),
          recoverTimeoutMs,
        );
        result = toResult(stream, r, since === null);
      } catch (e) {
        const failed = failures.take();
        if (failed !== null) log?.warn("streams: recover failed", { stream, failed, error: e });
        result = notRecovered(stream, "unavailable");
      }
    }
    const label: RecoverResult = result.recovered
      ? since === null ? "state" : "recovered"
      : result.reason as NotRecoveredReason;
    metrics?.recoverStreams.inc({ result: label });
    return result;
  };

  return {
    async Recover(req): Promise<RecoverReply> {
      const named = req.streams ?? [];
      const stateOnly = req.state_only ?? [];
      if (named.length + stateOnly.length > MAX_RECOVER_STREAMS) {
        metrics?.recoverCalls.inc({ result: "invalid" });
        throw invalid(`at most ${MAX_RECOVER_STREAMS} streams per Recover`);
      }
      try {
        named.forEach(checkPosition);
        stateOnly.forEach(checkStream);
      } catch (e) {
        metrics?.recoverCalls.inc({ result: "invalid" });
        throw e;
      }
      metrics?.recoverCalls.inc({ result: "ok" });
      const results = await Promise.all([
        ...named.map((p) => one(p.stream, p)),
        ...stateOnly.map((s) => one(s, null)),
      ]);
      return { results };
    },

    async Acks(req) {
      const acks = req.acks ?? [];
      if (acks.length > MAX_ACKS_PER_CALL) {
        throw invalid(`at most ${MAX_ACKS_PER_CALL} acks per Acks call`);
      }
      const reports: AckReport[] = [];
      for (const a of acks) {
        // The comet checked the client's ids; anything else is dropped, counted.
        if (!isPushId(a.push_id)) continue;
        reports.push({ pushId: a.push_id, key: a.key, mid: a.mid });
      }
      if (reports.length < acks.length) {
        metrics?.acks.inc({ result: "invalid" }, acks.length - reports.length);
      }
      if (reports.length === 0) return {};
      if (pushStatus === undefined) {
        metrics?.acks.inc({ result: "dropped" }, reports.length);
        return {};
      }
      try {
        await pushStatus.acked(reports);
      } catch (e) {
        metrics?.acks.inc({ result: "error" }, reports.length);
        log?.warn("streams: recording acks failed", { server: req.server, error: e });
        throw new RpcError(
          grpcStatus.UNAVAILABLE,
          `push status store: acked failed: ${errorMessage(e)}`,
        );
      }
      metrics?.acks.inc({ result: "recorded" }, reports.length);
      return {};
    },
  };
}

function toResult(stream: string, r: Recovery, stateOnly: boolean): StreamResult {
  // A state-only stream always "recovers": nothing was asked of it.
  const recovered = stateOnly || r.recovered;
  return {
    stream,
    epoch: r.epoch,
    top: r.top,
    recovered,
    reason: recovered ? "" : r.reason ?? "unavailable",
    entries: stateOnly || !r.recovered ? [] : r.entries.map(toEntry),
  };
}

function toEntry(e: StreamEntry): StreamEntryMsg {
  return {
    pos: e.pos,
    push_id: e.pushId,
    op: e.op,
    body: e.body,
    ack: e.ack ?? false,
    time: e.time,
  };
}

/** `p`, or a rejection after `ms` (the timer does not keep the process alive past the answer). */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  // A late rejection of `p` after the timeout is nobody's: observe it.
  p.catch(() => {});
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

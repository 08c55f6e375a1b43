/**
 * `goim.logic.Logic`, the service comets call: the same object serves gRPC
 * (through `serveUnary`) and an embedded comet in-process (proto/api.ts).
 *
 * | method | goim | here |
 * |--------|------|------|
 * | Connect | trusts the token JSON, generates a UUID key when empty, writes the route, replies heartbeat = Node.Heartbeat × HeartbeatMax in ns | the same, after {@linkcode Authenticator} (mode `none` or `jwt`; in `jwt` a requested key without a `key` claim becomes `<mid>:<key>`, so no mid can take over another's key); refused → UNAUTHENTICATED; a route that cannot be written → UNAVAILABLE (goim only logs it and lets an unroutable connection in); the reply also carries the JWT's `room`/`accepts` claims as the auth scope (fields 100–103) the comet enforces on ops 12 and 14, with `logic.auth.jwt.close_on_expiry` the time left until the token's `exp` (field 104), when the comet closes the connection, and for a token with a `streams` field (docs/STREAMS.md, "Opting in") `streams: true` and its `recover` positions (105–106); an invalid `streams` field is refused as a malformed token |
 * | Disconnect | DelMapping only if the route points at the caller → has | the same |
 * | Heartbeat | ExpireMapping; AddMapping when it was missing | the same (routes come back after a store restart) |
 * | RenewOnline | stores the report, replies the last aggregate | the same, aggregate in {@linkcode OnlineCounts} |
 * | Receive | logs | queues the message for the webhook |
 * | Nodes | NodesWeighted | {@linkcode NodeBalancer.weighted} |
 *
 * Errors: INVALID_ARGUMENT for a missing `server` or `key`, UNAVAILABLE when
 * the session store fails (the comet may retry), UNAUTHENTICATED for a
 * refused token (with the reason, e.g. `expired: token expired: ...`).
 *
 * @module
 */

import type { LogicApi } from "../proto/api.ts";
import type { ConnectReply } from "../proto/messages.ts";
import { grpcStatus, RpcError } from "../proto/grpc.ts";
import { ProtocolError } from "../protocol/errors.ts";
import { parseStreamsOption, type StreamsOption } from "../protocol/streams.ts";
import { parseAuthToken } from "../protocol/token.ts";
import type { Logger } from "../infra/log.ts";
import type { SessionStore } from "../infra/sessions.ts";
import { type Authenticator, AuthError } from "./auth.ts";
import type { LogicMetrics } from "./metrics.ts";
import type { NodeBalancer } from "./nodes.ts";
import type { OnlineCounts } from "./online.ts";
import type { Webhook } from "./webhook.ts";

/** What {@linkcode createLogicService} needs. */
export interface LogicServiceDeps {
  /** Token verification. */
  auth: Authenticator;
  /** Session routes. */
  sessions: SessionStore;
  /** Online aggregate. */
  online: OnlineCounts;
  /** Node balancer. */
  nodes: NodeBalancer;
  /** Upstream delivery; null when `logic.webhook.url` is empty. */
  webhook: Webhook | null;
  /** Heartbeat advice for Connect replies, in nanoseconds (goim: a Go Duration). */
  heartbeatNs: number;
  /** Key generator (default `crypto.randomUUID`). */
  newKey?: () => string;
  /** Logger. */
  log?: Logger;
  /** Metrics. */
  metrics?: LogicMetrics;
}

/**
 * The heartbeat a Connect reply carries, as goim computes it: the idle
 * timeout `heartbeat_interval × heartbeat_max`, in nanoseconds.
 *
 * @example
 * ```ts
 * import { connectHeartbeatNs } from "./service.ts";
 * connectHeartbeatNs(240_000, 2); // 480_000_000_000 (8 min)
 * ```
 */
export function connectHeartbeatNs(heartbeatIntervalMs: number, heartbeatMax: number): number {
  return heartbeatIntervalMs * heartbeatMax * 1_000_000;
}

function required(value: string, name: string): void {
  if (value === "") throw new RpcError(grpcStatus.INVALID_ARGUMENT, `${name} is required`);
}

function storeFailed(what: string, e: unknown, log?: Logger): RpcError {
  // Logged here: an RpcError is otherwise taken for the caller's problem and not logged.
  log?.warn("session store failed", { op: what, error: e });
  return new RpcError(
    grpcStatus.UNAVAILABLE,
    `session store: ${what} failed: ${e instanceof Error ? e.message : String(e)}`,
  );
}

/**
 * The `streams` field of an op 7 body that {@linkcode parseAuthToken}
 * accepted (so valid JSON), validated by {@linkcode parseStreamsOption};
 * null when absent. Throws its ProtocolError for an invalid one.
 *
 * The token is parsed a second time for it, only when its bytes hold
 * `streams` (a JSON key cannot be spelt without those letters but by
 * escaping them, which no client does), so a goim token costs a byte scan.
 *
 * @example
 * ```ts
 * import { streamsOption } from "./service.ts";
 * const body = new TextEncoder().encode('{"mid":42,"streams":{}}');
 * streamsOption(body); // { recover: [] }
 * ```
 */
export function streamsOption(body: Uint8Array): StreamsOption | null {
  if (!hasStreamsKey(body)) return null;
  const o = JSON.parse(utf8.decode(body)) as Record<string, unknown>;
  return o.streams === undefined ? null : parseStreamsOption(o.streams);
}

const utf8 = new TextDecoder();
const STREAMS_KEY = new TextEncoder().encode("streams");

function hasStreamsKey(body: Uint8Array): boolean {
  const k = STREAMS_KEY;
  for (
    let i = body.indexOf(k[0]);
    i >= 0 && i <= body.length - k.length;
    i = body.indexOf(k[0], i + 1)
  ) {
    let j = 1;
    while (j < k.length && body[i + j] === k[j]) j++;
    if (j === k.length) return true;
  }
  return false;
}

/**
 * Builds the service object.
 *
 * @example
 * ```ts
 * declare const { auth, sessions, online, nodes, heartbeatNs }: LogicServiceDeps;
 * declare const token: Uint8Array; // the client's op 7 body
 * const service = createLogicService({ auth, sessions, online, nodes, webhook: null, heartbeatNs });
 * const reply = await service.Connect({ server: "comet-1", cookie: "", token });
 * ```
 */
export function createLogicService(deps: LogicServiceDeps): LogicApi {
  const { auth, sessions, online, nodes, webhook, log, metrics } = deps;
  const newKey = deps.newKey ?? (() => crypto.randomUUID());
  return {
    async Connect(req) {
      required(req.server, "server");
      let id, streams;
      try {
        const token = parseAuthToken(req.token);
        streams = streamsOption(req.token);
        id = await auth.authenticate(token);
      } catch (e) {
        const reason = e instanceof AuthError
          ? e.reason
          : e instanceof ProtocolError
          ? "malformed"
          : undefined;
        if (reason === undefined) {
          // Not the client's fault (e.g. the RS256 key file is unreadable).
          metrics?.connects.inc({ result: "error" });
          log?.error("connect: authentication failed internally", { error: e });
          throw new RpcError(grpcStatus.INTERNAL, `auth: ${(e as Error).message}`);
        }
        metrics?.authFailures.inc({ reason });
        metrics?.connects.inc({ result: "unauthenticated" });
        log?.info("connect refused", { server: req.server, reason, error: (e as Error).message });
        throw new RpcError(grpcStatus.UNAUTHENTICATED, `${reason}: ${(e as Error).message}`);
      }
      const key = id.key !== "" ? id.key : newKey();
      try {
        await sessions.addMapping(id.mid, key, req.server);
      } catch (e) {
        metrics?.connects.inc({ result: "error" });
        throw storeFailed("addMapping", e, log);
      }
      metrics?.connects.inc({ result: "ok" });
      const reply: ConnectReply = {
        mid: id.mid,
        key,
        roomID: id.roomID,
        accepts: id.accepts,
        heartbeat: deps.heartbeatNs,
      };
      // The auth scope (fields 100–103), set only where the token restricts:
      // an unrestricted reply leaves them out, so its bytes are goim's
      // (protobufjs would put an explicit `false` on the wire).
      if (id.allowedRooms !== null) {
        reply.allowed_rooms = id.allowedRooms;
        reply.rooms_restricted = true;
      }
      if (id.allowedOps !== null) {
        reply.allowed_ops = id.allowedOps;
        reply.ops_restricted = true;
      }
      if (id.expiresAt !== null) {
        // At least 1 (0 means never): a token accepted within the clock
        // tolerance past its exp is closed at the comet's next sweep.
        reply.token_expires_in_ms = Math.min(
          Number.MAX_SAFE_INTEGER,
          Math.max(1, Math.ceil(id.expiresAt - Date.now())),
        );
      }
      // Opted in (fields 105–106); a goim token leaves both out, so its bytes are goim's.
      if (streams !== null) {
        reply.streams = true;
        reply.recover = streams.recover;
      }
      return reply;
    },

    async Disconnect(req) {
      required(req.server, "server");
      required(req.key, "key");
      let has: boolean;
      try {
        has = await sessions.delMapping(req.mid, req.key, req.server);
      } catch (e) {
        throw storeFailed("delMapping", e, log);
      }
      metrics?.disconnects.inc({ removed: String(has) });
      return { has };
    },

    async Heartbeat(req) {
      required(req.server, "server");
      required(req.key, "key");
      try {
        const has = await sessions.expireMapping(req.mid, req.key);
        if (!has) await sessions.addMapping(req.mid, req.key, req.server);
        metrics?.heartbeats.inc({ readded: String(!has) });
      } catch (e) {
        throw storeFailed("heartbeat", e, log);
      }
      return {};
    },

    async RenewOnline(req) {
      required(req.server, "server");
      try {
        return { allRoomCount: await online.report(req.server, req.roomCount) };
      } catch (e) {
        throw storeFailed("addServerOnline", e, log);
      }
    },

    Receive(req) {
      metrics?.upstream.inc();
      const p = req.proto;
      if (webhook === null) {
        log?.debug("upstream message (no webhook configured)", { mid: req.mid, op: p?.op });
      } else {
        webhook.enqueue({
          mid: req.mid,
          op: p?.op ?? 0,
          seq: p?.seq ?? 0,
          ver: p?.ver ?? 0,
          body: p?.body ?? new Uint8Array(0),
        });
      }
      return Promise.resolve({});
    },

    async Nodes(req) {
      return await nodes.weighted(req.platform, req.clientIP);
    },
  };
}

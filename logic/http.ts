/**
 * The HTTP API (goim internal/logic/http), as one plain function
 * `Request → Response` (Hono style): `Deno.serve` runs it, tests call it
 * directly.
 *
 * | method | path | query | data on success |
 * |--------|------|-------|-----------------|
 * | POST | /goim/push/keys | `operation`, `keys` (list), `ack`, `wait` | `{"keys": routed, "comets": n, "id"}` |
 * | POST | /goim/push/mids | `operation`, `mids` (list), `ack`, `wait` | `{"id", "mids": n}` (streams) or `{"keys": routed, "comets": n, "id"}` |
 * | POST | /goim/push/room | `operation`, `type`, `room` | `{"room": "type://room", "queued": 1, "id"}` |
 * | POST | /goim/push/all  | `operation`, `speed` (default 0) | `{"queued": 1, "id"}` |
 * | GET  | /goim/push/status | `id` | the push's status (docs/STREAMS.md) |
 * | GET  | /goim/history | `stream` or `room` or `mid`, `after`, `limit` (1..1000, default 100) | `{"stream", "epoch", "pos", "entries"}` |
 * | GET  | /goim/online/top | `type`, `limit` (1..1000, default 20) | `[{"room_id", "count"}]` |
 * | GET  | /goim/online/room | `type`, `rooms` (list) | `{"<room id>": count}` |
 * | GET  | /goim/online/total | – | `{"ip_count", "conn_count"}` |
 * | GET  | /goim/nodes/weighted | `platform`, `region` (optional) | goim NodesReply |
 * | GET  | /goim/nodes/instances | – | registry records |
 *
 * A push with `ack=1&wait=<ms>` answers `{"id", "targets", "acked",
 * "pending", "offline"}` once no target is pending or the time is up
 * (./push_wait.ts).
 *
 * Push bodies are the message bytes (at most `logic.http.max_body`). Every
 * push answer has `id`, the push id also carried in its queue messages.
 * Responses and error codes: ./result.ts. `routed` counts keys that had a
 * live route (unknown or expired keys are skipped, as in goim); `comets`
 * is the number of PushMsg messages published, one per comet.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { peerGone } from "../infra/http_server.ts";
import { QueueUnavailableError } from "../infra/queue.ts";
import type { Registry } from "../infra/registry.ts";
import type { Logger } from "../infra/log.ts";
import type { PushStatusStore, StreamEntry, StreamStore } from "../infra/streams.ts";
import { createApiKeyCheck } from "./auth.ts";
import { readBody } from "./body.ts";
import type { LogicMetrics } from "./metrics.ts";
import type { NodeBalancer } from "./nodes.ts";
import type { OnlineCounts } from "./online.ts";
import * as p from "./params.ts";
import { newPushId, type Pusher } from "./push.ts";
import { type AckSummary, AckWaits } from "./push_wait.ts";
import { ApiError, configured, fail, ResultCode, storeCall } from "./result.ts";
import { type Route, routeRequest } from "./routes.ts";

/** What {@linkcode createHttpHandler} needs. */
export interface HttpApiDeps {
  /** Publishes pushes. */
  pusher: Pusher;
  /** Online aggregate. */
  online: OnlineCounts;
  /** Node balancer. */
  nodes: NodeBalancer;
  /** Comet registry (online totals). */
  registry: Registry;
  /** `logic.http.max_body`. */
  maxBody: number;
  /** `logic.auth.api_keys`; empty = open. */
  apiKeys: readonly string[];
  /** `logic.push.max_wait`: the largest `wait=`, in ms (default 30 s). */
  maxWaitMs?: number;
  /** The waits of ack-requested pushes (default: new ones over `pushStatus`). */
  waits?: AckWaits;
  /** Push status, for `/goim/push/status`; absent: 503. */
  pushStatus?: PushStatusStore;
  /** Stream history, for `/goim/history`; absent: 503. */
  streams?: StreamStore;
  /** `streams.enabled`; false: `/goim/history` answers 404. Default false. */
  streamsEnabled?: boolean;
  /** Logger for server errors. */
  log?: Logger;
  /** Metrics. */
  metrics?: LogicMetrics;
}

/** The HTTP API handler; `info` (from `Deno.serve`) supplies the client address. */
export type HttpHandler = (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response>;

interface Ctx {
  req: Request;
  q: URLSearchParams;
  clientIP: string;
  info?: Deno.ServeHandlerInfo;
}

/** `logic.push.max_wait` when {@linkcode HttpApiDeps.maxWaitMs} is absent. */
export const DEFAULT_MAX_WAIT_MS = 30_000;

/** Prefix of every API route. */
export const API_PREFIX = "/goim";

/**
 * Builds the handler.
 *
 * @example
 * ```ts
 * declare const { pusher, online, nodes, registry }: HttpApiDeps;
 * const handler = createHttpHandler({ pusher, online, nodes, registry, maxBody: 65536, apiKeys: [] });
 * const res = await handler(new Request("http://x/goim/push/keys?operation=1000&keys=k1", {
 *   method: "POST",
 *   body: "hello",
 * }));
 * await res.json(); // { code: 0, message: "", data: { keys: 1, comets: 1, id: "…" } }
 * ```
 */
export function createHttpHandler(deps: HttpApiDeps): HttpHandler {
  const { pusher, online, nodes, registry, maxBody, log, metrics } = deps;
  const authorized = createApiKeyCheck(deps.apiKeys);
  const body = (req: Request) => readWholeBody(req, maxBody) ?? readBody(req, maxBody);

  const maxWaitMs = deps.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  const waits = deps.waits ?? new AckWaits({ store: deps.pushStatus, metrics });

  // A key or mid push: `ack` and `wait` parsed with the other parameters
  // (before the body), a wait slot taken before anything is published.
  const acked = async (
    { req, q, info }: Ctx,
    push: (body: Uint8Array, id: string, ack: boolean) => Promise<unknown>,
    checkAck: (ack: boolean) => void = () => {},
  ): Promise<unknown> => {
    const ack = p.ack(q);
    const wait = p.wait(q, ack, maxWaitMs);
    checkAck(ack);
    const release = wait === undefined ? undefined : waits.reserve();
    try {
      const id = newPushId();
      const answer = await push(await body(req), id, ack);
      if (wait === undefined) return answer;
      return await waits.wait(id, wait, peerGone(info)) satisfies AckSummary;
    } finally {
      release?.();
    }
  };

  const routes: Record<string, Route<Ctx>> = {
    "/goim/push/keys": {
      method: "POST",
      handle(ctx) {
        const op = p.operation(ctx.q);
        const keys = p.requiredList(ctx.q, "keys");
        return acked(ctx, (msg, id, ack) => pusher.keys(op, keys, msg, { id, ack }));
      },
    },
    "/goim/push/mids": {
      method: "POST",
      handle(ctx) {
        const op = p.operation(ctx.q);
        const mids = p.mids(ctx.q);
        return acked(
          ctx,
          (msg, id, ack) => pusher.mids(op, mids, msg, { id, ack }),
          (ack) => pusher.checkMidsAck(ack),
        );
      },
    },
    "/goim/push/room": {
      method: "POST",
      async handle({ req, q }) {
        const op = p.operation(q);
        const room = p.roomKey(p.roomType(q), p.roomId(q));
        noAck(q, "room");
        const { id } = await pusher.room(op, room, await body(req));
        return { room, queued: 1, id };
      },
    },
    "/goim/push/all": {
      method: "POST",
      async handle({ req, q }) {
        const op = p.operation(q);
        const speed = p.speed(q);
        noAck(q, "all");
        const { id } = await pusher.all(op, speed, await body(req));
        return { queued: 1, id };
      },
    },
    "/goim/push/status": {
      method: "GET",
      async handle({ q }) {
        const id = p.pushId(q);
        const failed = () => metrics?.statusReads.inc({ result: "error" });
        const store = configured(deps.pushStatus, "push status store", failed);
        const status = await storeCall("push status store", () => store.get(id), failed);
        if (status === null) {
          metrics?.statusReads.inc({ result: "unknown" });
          throw new ApiError(
            ResultCode.NotFound,
            `push status: no push ${id} (unknown id, no ack=1, or older than streams.status.ttl)`,
          );
        }
        metrics?.statusReads.inc({ result: "found" });
        return status;
      },
    },
    "/goim/history": {
      method: "GET",
      async handle({ q }) {
        const stream = p.historyStream(q);
        const after = p.after(q);
        const limit = p.historyLimit(q);
        if (!deps.streamsEnabled) {
          metrics?.historyReads.inc({ result: "disabled" });
          throw new ApiError(
            ResultCode.NotFound,
            "history: streams are off on this server (streams.enabled = false)",
          );
        }
        const failed = () => metrics?.historyReads.inc({ result: "error" });
        const store = configured(deps.streams, "history: stream store", failed);
        const range = await storeCall(
          "history: stream store",
          () => store.range(stream, after === undefined ? { limit } : { after, limit }),
          failed,
        );
        metrics?.historyReads.inc({ result: "ok" });
        return {
          stream,
          epoch: range.epoch,
          pos: range.top,
          entries: range.entries.map(historyEntry),
        };
      },
    },
    "/goim/online/top": {
      method: "GET",
      handle: ({ q }) => {
        const type = p.roomType(q);
        return Promise.resolve(online.top(type, p.limit(q)));
      },
    },
    "/goim/online/room": {
      method: "GET",
      handle: ({ q }) => {
        const type = p.roomType(q);
        return Promise.resolve(online.rooms(type, p.roomIds(q)));
      },
    },
    "/goim/online/total": {
      method: "GET",
      async handle() {
        let ips = 0, conns = 0;
        for (const c of await registry.list()) {
          ips += c.ips;
          conns += c.connections;
        }
        return { ip_count: ips, conn_count: conns };
      },
    },
    "/goim/nodes/weighted": {
      method: "GET",
      handle: ({ q, clientIP }) =>
        nodes.weighted(
          p.optionalString(q, "platform") ?? "",
          clientIP,
          p.optionalString(q, "region"),
        ),
    },
    "/goim/nodes/instances": {
      method: "GET",
      handle: () => nodes.instances(),
    },
  };

  const auth = { authorized, keys: "logic.auth.api_keys", realm: "goim" };
  const notFound = (path: string) =>
    `no route ${path}` +
    (path.startsWith(API_PREFIX) ? "" : ` (the API lives under ${API_PREFIX}/)`);
  const dispatch = (req: Request, url: URL, info?: Deno.ServeHandlerInfo): Promise<Response> =>
    routeRequest(
      routes,
      req,
      url,
      info,
      auth,
      (clientIP) => ({ req, q: url.searchParams, clientIP, info }),
      notFound,
    );

  return async (req, info) => {
    const started = metrics ? performance.now() : 0;
    let res: Response;
    let url: URL | undefined;
    try {
      url = new URL(req.url);
      res = await dispatch(req, url, info);
    } catch (e) {
      res = fail(toApiError(e, log, metrics));
      // A refused request's body is never read; release it.
      if (req.body !== null && !req.bodyUsed && !req.body.locked) {
        await req.body.cancel().catch(() => {});
      }
    }
    if (metrics) {
      const path = url?.pathname ?? "";
      const route = Object.hasOwn(routes, path) ? path : "unknown";
      const code = String(res.status);
      metrics.httpRequests.inc({ route, code });
      metrics.httpSeconds.observe({ route }, (performance.now() - started) / 1000);
    }
    return res;
  };
}

/** One entry of a `/goim/history` answer: its body in base64. */
function historyEntry(
  e: StreamEntry,
): { pos: number; id: string; op: number; time: number; body: string } {
  return {
    pos: e.pos,
    id: e.pushId,
    op: e.op,
    time: e.time,
    body: Buffer.from(e.body.buffer, e.body.byteOffset, e.body.byteLength).toString("base64"),
  };
}

// Room and broadcast pushes are in no target list: an ack could not be reported.
function noAck(q: URLSearchParams, kind: string): void {
  if (p.ack(q) || q.has("wait")) {
    throw new ApiError(
      ResultCode.BadRequest,
      `ack, wait: only key and mid pushes ask for acks, not push/${kind}`,
    );
  }
}

// A body that declares a Content-Length within `max`, read with one
// `bytes()` instead of a stream reader: every listener here (and
// `Deno.serve`) frames a request by its Content-Length, so at most `max`
// bytes arrive, and a push body under infra/http_server.ts PREREAD_BYTES is
// already one buffer. Measured: the reader's getReader/releaseLock (which
// builds a TypeError with a stack each time) was ≈ 10 % of the push route's
// CPU. Anything else (no or malformed length, too large) is left to
// readBody, which bounds a stream chunk by chunk; a length that still
// disagrees (a Request built in-process) is refused.
function readWholeBody(req: Request, max: number): Promise<Uint8Array> | null {
  const header = req.headers.get("content-length");
  if (header === null || !/^\d{1,15}$/.test(header)) return null;
  const declared = Number(header);
  if (declared > max) return null;
  return req.bytes().then((bytes) => {
    if (bytes.length !== declared) {
      throw new ApiError(ResultCode.BadRequest, "body: length differs from Content-Length");
    }
    return bytes;
  }, (e) => {
    throw new ApiError(ResultCode.BadRequest, `body: could not be read: ${(e as Error).message}`);
  });
}

function toApiError(e: unknown, log?: Logger, metrics?: LogicMetrics): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof QueueUnavailableError) {
    metrics?.queueUnavailable.inc();
    return new ApiError(ResultCode.Unavailable, `queue unavailable, retry later: ${e.message}`);
  }
  log?.error("HTTP API request failed", { error: e });
  return new ApiError(
    ResultCode.ServerError,
    `server error: ${e instanceof Error ? e.message : String(e)}`,
  );
}

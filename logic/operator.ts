/**
 * The operator API (docs/CONSOLE.md, "Operator API"): JSON over HTTP on
 * logic's admin listener, under {@linkcode OPERATOR_PREFIX}, with a key set
 * of its own (`logic.operator.keys`, `Authorization: Bearer`, compared in
 * constant time): a push API key or the admin token opens nothing here.
 * Without keys it answers only when `logic.admin.bind` is loopback (and
 * logic warns at start); elsewhere it is off (404 saying why).
 *
 * | method | path | query | data |
 * |--------|------|-------|------|
 * | GET  | /operator/v1/overview | – | the page's data (./operator_overview.ts `Overview`) |
 * | GET  | /operator/v1/sessions | `mids` or `keys` (lists) | `{ sessions, missing, errors }` |
 * | POST | /operator/v1/kick | `mids` or `keys`, `reason` | `{ kicked, comets, errors }` |
 * | GET  | /operator/v1/room | `type`, `room`, `sample` (0..100, default 20) | `{ room, count, comets, keys }` |
 * | POST | /operator/v1/drain | `comet`, `deadline` (default 60s), `spread` (default 10s) | the comet's DrainReply |
 *
 * Answers use the push API's envelope (`{"code":0,"message":"","data":…}`,
 * errors as the HTTP status negated: ./result.ts). Lists are bounded: at most
 * {@linkcode MAX_SESSION_KEYS} keys per request (mids are resolved to their
 * keys through the session store first), {@linkcode MAX_ROOM_SAMPLE} keys in
 * a room sample. Nothing answered contains a token or a message body:
 * sessions carry key, mid, comet, IP, room, transport and connect time.
 * Every action (kick, drain) is logged at INFO with the caller's address.
 *
 * @module
 */

import type { Logger } from "../infra/log.ts";
import { errorMessage } from "../infra/log.ts";
import { parseDuration } from "../infra/config/units.ts";
import type { CometRecord, Registry } from "../infra/registry.ts";
import type { SessionStore } from "../infra/sessions.ts";
import {
  type CometOperatorApi,
  MAX_DRAIN_MS,
  MAX_REASON_CHARS,
  MAX_ROOM_SAMPLE,
  MAX_SESSION_KEYS,
  type Session,
} from "../proto/operator.ts";
import { createApiKeyCheck } from "./auth.ts";
import type { OnlineCounts } from "./online.ts";
import type { OverviewSampler } from "./operator_overview.ts";
import type { CometDialer } from "./operator_sources.ts";
import * as p from "./params.ts";
import { ApiError, fail, ResultCode } from "./result.ts";
import { type Route, routeRequest } from "./routes.ts";

/** Prefix of every operator API route. */
export const OPERATOR_PREFIX = "/operator/";

/** Default and bounds of a drain's `deadline` and `spread`. */
export const DRAIN_DEFAULTS = Object.freeze({ deadlineMs: 60_000, spreadMs: 10_000 });

/** Default size of a room's key sample. */
export const DEFAULT_ROOM_SAMPLE = 20;

/** What {@linkcode createOperatorHandler} needs. */
export interface OperatorApiDeps {
  /** `logic.operator.keys`. */
  keys: readonly string[];
  /** Whether the admin listener is on loopback (keys may then be empty). */
  loopback: boolean;
  /** Comets. */
  registry: Registry;
  /** Routes: mid → keys → comet. */
  sessions: SessionStore;
  /** Room counts. */
  online: OnlineCounts;
  /** Reaches comets. */
  dialer: CometDialer;
  /** The overview. */
  overview: OverviewSampler;
  /** Actions and failures. */
  log: Logger;
}

/** A session as the API answers it: the comet's fields plus which comet. */
export type SessionView = Session & { comet: string };

interface Ctx {
  q: URLSearchParams;
  caller: string;
}

function bad(message: string): ApiError {
  return new ApiError(ResultCode.BadRequest, message);
}

function durationParam(q: URLSearchParams, name: string, def: number): number {
  const v = p.optionalString(q, name);
  if (v === undefined || v === "") return def;
  let ms: number;
  try {
    ms = /^\d+$/.test(v) ? Number(v) : parseDuration(v);
  } catch {
    throw bad(
      `${name}: expected a duration like 30s or 2m (or milliseconds), got ${JSON.stringify(v)}`,
    );
  }
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_DRAIN_MS) {
    throw bad(`${name}: must be from 0 to ${MAX_DRAIN_MS / 1000}s, got ${JSON.stringify(v)}`);
  }
  return ms;
}

/**
 * Builds the operator API handler (paths under {@linkcode OPERATOR_PREFIX}).
 *
 * @example
 * ```ts
 * declare const deps: OperatorApiDeps;
 * const handler = createOperatorHandler(deps);
 * const res = await handler(new Request("http://x/operator/v1/sessions?mids=7", {
 *   headers: { authorization: "Bearer operator-key" },
 * }));
 * ```
 */
export function createOperatorHandler(
  deps: OperatorApiDeps,
): (req: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  const { registry, sessions, dialer, log } = deps;
  const authorized = createApiKeyCheck(deps.keys);
  const open = deps.keys.length > 0 || deps.loopback;

  // key → comet for `keys` or `mids`, bounded.
  const targets = async (q: URLSearchParams): Promise<Map<string, string | null>> => {
    const hasMids = q.has("mids"), hasKeys = q.has("keys");
    if (hasMids === hasKeys) throw bad("give either mids or keys (a list)");
    const out = new Map<string, string | null>();
    if (hasKeys) {
      const keys = p.requiredList(q, "keys");
      if (keys.length > MAX_SESSION_KEYS) {
        throw bad(`keys: ${keys.length} given, at most ${MAX_SESSION_KEYS}`);
      }
      const servers = await sessions.serversByKeys(keys);
      keys.forEach((k, i) => out.set(k, servers[i]));
    } else {
      const mids = p.mids(q);
      if (mids.length > MAX_SESSION_KEYS) {
        throw bad(`mids: ${mids.length} given, at most ${MAX_SESSION_KEYS}`);
      }
      for (const [k, server] of await sessions.keysByMids(mids)) out.set(k, server);
      if (out.size > MAX_SESSION_KEYS) {
        throw bad(`mids: they hold ${out.size} keys, at most ${MAX_SESSION_KEYS} per request`);
      }
    }
    return out;
  };

  // Runs `call` on each comet holding some of the keys; keys on unknown comets are `missing`.
  const perComet = async <T>(
    routed: Map<string, string | null>,
    call: (api: CometOperatorApi, keys: string[]) => Promise<T>,
  ) => {
    const byComet = new Map<string, string[]>();
    const missing: string[] = [];
    for (const [k, server] of routed) {
      if (server === null) missing.push(k);
      else byComet.set(server, [...(byComet.get(server) ?? []), k]);
    }
    const records = new Map((await registry.list()).map((r) => [r.id, r]));
    const results: { comet: string; keys: string[]; value: T }[] = [];
    const errors: { comet: string; error: string }[] = [];
    await Promise.all([...byComet].map(async ([comet, keys]) => {
      const rec = records.get(comet);
      if (rec === undefined) {
        errors.push({ comet, error: "not in the registry" });
        return;
      }
      try {
        results.push({ comet, keys, value: await call(dialer.dial(rec), keys) });
      } catch (e) {
        errors.push({ comet, error: errorMessage(e) });
      }
    }));
    return { results, errors, missing };
  };

  const routes: Record<string, Route<Ctx>> = {
    "/operator/v1/overview": {
      method: "GET",
      handle: () => deps.overview.overview(),
    },
    "/operator/v1/sessions": {
      method: "GET",
      async handle({ q }) {
        const routed = await targets(q);
        const { results, errors, missing } = await perComet(
          routed,
          (api, keys) => api.Sessions({ keys }),
        );
        const found: SessionView[] = [];
        for (const r of results) {
          for (const s of r.value.sessions) found.push({ ...s, comet: r.comet });
          // Routed to a comet that does not hold it (yet, or any more).
          const held = new Set(r.value.sessions.map((s) => s.key));
          for (const k of r.keys) if (!held.has(k)) missing.push(k);
        }
        found.sort((a, b) => a.connected_at_ms - b.connected_at_ms || (a.key < b.key ? -1 : 1));
        return { sessions: found, missing: missing.sort(), errors };
      },
    },
    "/operator/v1/kick": {
      method: "POST",
      async handle({ q, caller }) {
        const reason = (p.optionalString(q, "reason") ?? "").slice(0, MAX_REASON_CHARS);
        const routed = await targets(q);
        const { results, errors } = await perComet(
          routed,
          (api, keys) => api.Kick({ keys, reason }),
        );
        const comets: Record<string, number> = {};
        let kicked = 0;
        for (const r of results) {
          comets[r.comet] = r.value.kicked;
          kicked += r.value.kicked;
        }
        log.info("operator kick", {
          caller,
          by: q.has("mids") ? "mids" : "keys",
          targets: routed.size,
          kicked,
          reason,
        });
        return { kicked, comets, errors };
      },
    },
    "/operator/v1/room": {
      method: "GET",
      async handle({ q }) {
        const room = p.roomKey(p.roomType(q), p.roomId(q));
        const v = p.optionalString(q, "sample");
        const sample = v === undefined || v === "" ? DEFAULT_ROOM_SAMPLE : Number(v);
        if (!Number.isInteger(sample) || sample < 0 || sample > MAX_ROOM_SAMPLE) {
          throw bad(`sample: an integer from 0 to ${MAX_ROOM_SAMPLE}, got ${JSON.stringify(v)}`);
        }
        const records = await registry.list();
        const comets: { comet: string; count: number; keys: string[]; error?: string }[] = [];
        await Promise.all(records.map(async (rec) => {
          try {
            const r = await dialer.dial(rec).RoomMembers({ room, limit: sample });
            if (r.count > 0) comets.push({ comet: rec.id, count: r.count, keys: r.keys });
          } catch (e) {
            comets.push({ comet: rec.id, count: 0, keys: [], error: errorMessage(e) });
          }
        }));
        comets.sort((a, b) => b.count - a.count || (a.comet < b.comet ? -1 : 1));
        const live = comets.reduce((n, c) => n + c.count, 0);
        return {
          room,
          // The aggregate the push API reports (RenewOnline, up to one interval old) and a live sum.
          count: deps.online.count(room),
          live_count: live,
          comets,
          keys: comets.flatMap((c) => c.keys).slice(0, sample),
        };
      },
    },
    "/operator/v1/drain": {
      method: "POST",
      async handle({ q, caller }) {
        const id = p.requiredString(q, "comet");
        const deadline = durationParam(q, "deadline", DRAIN_DEFAULTS.deadlineMs);
        const spread = Math.min(durationParam(q, "spread", DRAIN_DEFAULTS.spreadMs), deadline);
        const rec: CometRecord | undefined = (await registry.list()).find((r) => r.id === id);
        if (rec === undefined) {
          throw new ApiError(ResultCode.NotFound, `comet ${JSON.stringify(id)} is not registered`);
        }
        let reply;
        try {
          reply = await dialer.dial(rec).Drain({ deadline_ms: deadline, spread_ms: spread });
        } catch (e) {
          throw new ApiError(ResultCode.Unavailable, `comet ${id}: ${errorMessage(e)}`);
        }
        log.info("operator drain", { caller, comet: id, deadline_ms: deadline, spread_ms: spread });
        return { comet: id, ...reply };
      },
    },
  };

  const auth = { authorized, keys: "logic.operator.keys", realm: "goim operator" };
  return async (req, info) => {
    let res: Response;
    try {
      const url = new URL(req.url);
      if (!open) {
        throw new ApiError(
          ResultCode.NotFound,
          "the operator API is off: set logic.operator.keys (logic.admin.bind is not loopback)",
        );
      }
      res = await routeRequest(
        routes,
        req,
        url,
        info,
        auth,
        (caller) => ({ q: url.searchParams, caller }),
      );
    } catch (e) {
      if (!(e instanceof ApiError)) log.error("operator API request failed", { error: e });
      res = fail(
        e instanceof ApiError ? e : new ApiError(ResultCode.ServerError, errorMessage(e)),
      );
    }
    // Nothing here reads a body: release one a caller sent.
    if (req.body !== null && !req.bodyUsed && !req.body.locked) {
      await req.body.cancel().catch(() => {});
    }
    res.headers.set("cache-control", "no-store");
    return res;
  };
}

/**
 * Authentication: of client connections (the op 7 token a comet forwards in
 * Connect) and of HTTP API callers (API keys).
 *
 * ## Connections (`logic.auth.mode`)
 *
 * - `none` reproduces goim: the token JSON is trusted as sent. Anyone who can
 *   reach a comet can claim any mid, so logic logs a warning at start.
 * - `jwt`: the JSON's `token` field must hold a JWT signed with the
 *   configured algorithm (HS256 shared secret, or RS256 verified with an
 *   SPKI PEM public key). The algorithm is pinned: a token whose header
 *   names another one (`none`, HS256 signed with the RSA public key as the
 *   secret, ...) is refused before its signature is looked at.
 *
 * Claims ({@linkcode ConnectClaims}):
 *
 * | claim     | required | rule |
 * |-----------|----------|------|
 * | `sub`     | yes      | the mid, as a decimal string (`"42"`); the JSON's `mid`, when not 0, must equal it |
 * | `exp`     | yes      | expiry (seconds since the epoch); a token without one is refused |
 * | `nbf`     | no       | not before |
 * | `iat`     | no       | issued at: the start of the lifetime `logic.auth.jwt.max_lifetime` bounds (absent or in the future: now) |
 * | `aud`     | when `logic.auth.jwt.audience` is set | must be that string or a list holding it |
 * | `iss`     | when `logic.auth.jwt.issuer` is set | must equal it |
 * | `room`    | no       | a room key or an array of them: the requested `room_id` must be one (`""` = no room is always allowed); an entry ending in `*` allows every room key with that prefix (`"live://*"`) |
 * | `accepts` | no       | array of int32 ops: the requested `accepts` must be a subset |
 * | `key`     | no       | binds the connection key: the requested `key` must be empty or equal; the reply uses it |
 *
 * `exp` and `nbf` allow {@linkcode JWT_CLOCK_TOLERANCE_S} seconds of clock
 * skew. The key is imported once and cached. An HS256 secret shorter than
 * {@linkcode MIN_HS256_SECRET_BYTES} bytes is refused (by the configuration
 * loader already, and by {@linkcode Authenticator.ready}): a short shared
 * secret can be brute-forced offline from any one token.
 *
 * ## Connection keys in mode `jwt`
 *
 * Without a `key` claim, the key the client asks for is scoped by the mid:
 * the connection's key becomes `<mid>:<key>` ({@linkcode scopedKey}). A mid
 * is digits only, so no other mid can produce that key, and a client can
 * neither replace another user's connection (op 6, 4004) nor receive the
 * pushes addressed to its key. This needs no lookup: routes keep goim's
 * layout. A token with a `key` claim keeps that exact key (the issuer chose
 * it); an empty requested key still gets a generated UUID. Mode `none`
 * trusts the client's key as goim does.
 *
 * ## Expiry of a connection
 *
 * With `logic.auth.jwt.close_on_expiry`, {@linkcode Identity.expiresAt}
 * carries the token's `exp`; Connect passes the time left to the comet
 * (ConnectReply field 104), which closes the connection then with op 6,
 * reason 4001. Off (the default), a connection outlives its token, as in goim.
 *
 * `room` and `accepts` also bound the connection after Connect: they are
 * returned as {@linkcode Identity.allowedRooms} / {@linkcode Identity.allowedOps},
 * which Connect sends to the comet in ConnectReply's scope fields (100–103),
 * and the comet refuses a later ChangeRoom (op 12) to a room outside them
 * and drops ops outside them from a Sub (op 14). An absent claim (and mode
 * `none`) leaves that side unrestricted (`null`).
 *
 * Every refusal is an {@linkcode AuthError} with a stable `reason` (counted
 * in metrics) and a message for logs; Connect turns it into gRPC
 * UNAUTHENTICATED, which the comet sends to the client as op 6 and closes.
 *
 * ## HTTP API keys (`logic.auth.api_keys`)
 *
 * When the list is non-empty, every `/goim/*` route requires
 * `Authorization: Bearer <key>` with one of them, compared in constant time
 * (SHA-256 digests compared with `timingSafeEqual`, so neither the content
 * nor the length of the keys leaks through timing).
 *
 * @module
 */

import * as jose from "jose";
import { createHash, timingSafeEqual } from "node:crypto";
import { isInt32 } from "../protocol/ops.ts";
import type { AuthToken } from "../protocol/token.ts";
import { type Config, MIN_HS256_SECRET_BYTES } from "../infra/config.ts";

/** Clock skew allowed on `exp` and `nbf`, in seconds. */
export const JWT_CLOCK_TOLERANCE_S = 10;

/** Stable machine-readable causes of a refused connection, used as the metrics label. */
export type AuthFailureReason =
  | "malformed"
  | "missing_token"
  | "bad_signature"
  | "alg_not_allowed"
  | "expired"
  | "not_yet_valid"
  | "missing_claim"
  | "bad_subject"
  | "mid_mismatch"
  | "room_not_allowed"
  | "accepts_not_allowed"
  | "key_not_allowed"
  | "bad_audience"
  | "bad_issuer"
  | "lifetime_exceeded"
  | "bad_claim";

/**
 * A refused authentication.
 *
 * @example
 * ```ts
 * import { AuthError } from "./auth.ts";
 * const e = new AuthError("expired", "token expired");
 * e.reason; // "expired"
 * ```
 */
export class AuthError extends Error {
  /** Why, for metrics and for the client's op 6 reason. */
  readonly reason: AuthFailureReason;

  /** `message` is the detail shown in logs and in the gRPC status. */
  constructor(reason: AuthFailureReason, message: string) {
    super(message);
    this.name = "AuthError";
    this.reason = reason;
  }
}

/** The claims logic reads from a connect JWT (see the module docs for the rules). */
export interface ConnectClaims extends jose.JWTPayload {
  /** The mid as a decimal string. */
  sub?: string;
  /** Allowed room keys (`type://id`), or one; `*` suffix = prefix match. */
  room?: string | string[];
  /** Allowed business ops. */
  accepts?: number[];
  /** The connection key this token is bound to. */
  key?: string;
}

/** Who a connection is once authenticated. */
export interface Identity {
  /** User id. */
  mid: number;
  /**
   * Connection key: the `key` claim, else in mode `jwt` the requested key
   * scoped by the mid (`<mid>:<key>`), else as requested; empty = logic
   * generates one.
   */
  key: string;
  /** Room key or `""`. */
  roomID: string;
  /** Client platform. */
  platform: string;
  /** Business ops the connection accepts. */
  accepts: number[];
  /**
   * Room patterns the connection may later move to (the `room` claim; `*`
   * suffix = prefix match); null = unrestricted (no claim, or mode none).
   */
  allowedRooms: string[] | null;
  /** Business ops the connection may later subscribe to (the `accepts` claim); null = unrestricted. */
  allowedOps: number[] | null;
  /**
   * When the connection must be closed: the token's `exp` in ms since the
   * epoch when `logic.auth.jwt.close_on_expiry` is on; null = never.
   */
  expiresAt: number | null;
}

/** Verifies op 7 tokens according to `logic.auth.mode`. */
export interface Authenticator {
  /** The configured mode. */
  readonly mode: "none" | "jwt";
  /** Resolves once the key is loaded; rejects (a config problem) when it cannot be. */
  ready(): Promise<void>;
  /** Checks a parsed token; throws {@linkcode AuthError} when it is refused. */
  authenticate(token: AuthToken): Promise<Identity>;
}

/** The slice of {@linkcode Config} authentication reads. */
export type AuthConfig = Config["logic"]["auth"];

/**
 * Creates the authenticator for `logic.auth`. The key (secret bytes or the
 * PEM file) is loaded at once in the background; {@linkcode Authenticator.ready}
 * reports a missing or unreadable key file.
 *
 * @example
 * ```ts
 * import { createAuthenticator } from "./auth.ts";
 * const auth = createAuthenticator({
 *   mode: "jwt",
 *   jwt: {
 *     algorithm: "HS256",
 *     secret: "a-shared-secret-of-at-least-32-bytes",
 *     public_key_file: "",
 *     audience: "",
 *     issuer: "",
 *     max_lifetime: 0,
 *     close_on_expiry: false,
 *   },
 *   api_keys: [],
 * });
 * await auth.ready();
 * ```
 */
export function createAuthenticator(cfg: AuthConfig): Authenticator {
  if (cfg.mode === "none") {
    return {
      mode: "none",
      ready: () => Promise.resolve(),
      authenticate: (t) => Promise.resolve(identity(t, t.mid, t.key, null, null, null)),
    };
  }
  const alg = cfg.jwt.algorithm;
  const keyPromise: Promise<VerifyKey> = loadKey(cfg);
  // Surfaced through ready() and authenticate(); never an unhandled rejection.
  keyPromise.catch(() => {});
  const options: jose.JWTVerifyOptions = {
    algorithms: [alg],
    clockTolerance: JWT_CLOCK_TOLERANCE_S,
    requiredClaims: ["exp", "sub"],
    // "" = not checked; set, jose also requires the claim to be present.
    audience: cfg.jwt.audience === "" ? undefined : cfg.jwt.audience,
    issuer: cfg.jwt.issuer === "" ? undefined : cfg.jwt.issuer,
  };
  const maxLifetimeMs = cfg.jwt.max_lifetime;
  const closeOnExpiry = cfg.jwt.close_on_expiry;
  return {
    mode: "jwt",
    ready: async () => void await keyPromise,
    async authenticate(t) {
      if (t.token === undefined || t.token === "") {
        throw new AuthError("missing_token", "auth mode jwt: the token field is required");
      }
      const key = await keyPromise;
      let claims: ConnectClaims;
      try {
        claims = (await jose.jwtVerify<ConnectClaims>(t.token, key, options)).payload;
      } catch (e) {
        throw mapJoseError(e);
      }
      // jose checked exp is a number (required) and iat one when present.
      const expMs = (claims.exp as number) * 1000;
      if (maxLifetimeMs > 0) checkLifetime(claims, expMs, maxLifetimeMs);
      return checkClaims(t, claims, closeOnExpiry ? expMs : null);
    },
  };
}

/** An HS256 secret or an imported RS256 public key (jose's own CryptoKey type). */
type VerifyKey = Awaited<ReturnType<typeof jose.importSPKI>> | Uint8Array;

async function loadKey(cfg: AuthConfig): Promise<VerifyKey> {
  if (cfg.jwt.algorithm === "HS256") {
    if (cfg.jwt.secret === "") throw new Error("logic.auth.jwt.secret is empty (HS256)");
    const secret = new TextEncoder().encode(cfg.jwt.secret);
    // loadConfig refuses this already; checked again for authenticators built by hand.
    if (secret.length < MIN_HS256_SECRET_BYTES) {
      throw new Error(
        `logic.auth.jwt.secret is ${secret.length} bytes; HS256 needs at least ${MIN_HS256_SECRET_BYTES}`,
      );
    }
    return secret;
  }
  const file = cfg.jwt.public_key_file;
  if (file === "") throw new Error("logic.auth.jwt.public_key_file is empty (RS256)");
  let pem: string;
  try {
    pem = await Deno.readTextFile(file);
  } catch (e) {
    throw new Error(`logic.auth.jwt.public_key_file: cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return await jose.importSPKI(pem, "RS256");
  } catch (e) {
    throw new Error(
      `logic.auth.jwt.public_key_file: ${file} is not an SPKI PEM RSA public key: ${
        (e as Error).message
      }`,
    );
  }
}

function mapJoseError(e: unknown): AuthError {
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof jose.errors.JWTExpired) return new AuthError("expired", `token expired: ${msg}`);
  if (e instanceof jose.errors.JWSSignatureVerificationFailed) {
    return new AuthError("bad_signature", "token signature does not verify");
  }
  if (e instanceof jose.errors.JOSEAlgNotAllowed) {
    return new AuthError("alg_not_allowed", `token algorithm refused: ${msg}`);
  }
  if (e instanceof jose.errors.JWTClaimValidationFailed) {
    if (e.claim === "nbf") return new AuthError("not_yet_valid", `token not yet valid: ${msg}`);
    if (e.reason === "missing") {
      return new AuthError("missing_claim", `token lacks the ${e.claim} claim`);
    }
    if (e.claim === "aud" && e.reason === "check_failed") {
      return new AuthError("bad_audience", "token aud is not logic.auth.jwt.audience");
    }
    if (e.claim === "iss" && e.reason === "check_failed") {
      return new AuthError("bad_issuer", "token iss is not logic.auth.jwt.issuer");
    }
    return new AuthError("bad_claim", `token claim ${e.claim} invalid: ${msg}`);
  }
  return new AuthError("malformed", `token is not a valid JWT: ${msg}`);
}

/**
 * Refuses a token valid for longer than `maxMs`: exp minus its start, the
 * start being `iat`, or now when `iat` is absent or in the future (a future
 * `iat` must not shorten the lifetime counted).
 */
function checkLifetime(c: ConnectClaims, expMs: number, maxMs: number): void {
  const nowMs = Date.now();
  const startMs = typeof c.iat === "number" ? Math.min(c.iat * 1000, nowMs) : nowMs;
  const lifetimeMs = expMs - startMs;
  if (lifetimeMs > maxMs) {
    throw new AuthError(
      "lifetime_exceeded",
      `token lifetime ${Math.ceil(lifetimeMs / 1000)} s exceeds logic.auth.jwt.max_lifetime (${
        maxMs / 1000
      } s)`,
    );
  }
}

/**
 * The connection key of a client-chosen `key` in mode `jwt` when the token
 * has no `key` claim: `<mid>:<key>`. A mid is digits only, so the prefix up
 * to the first `:` always names the mid and no other mid can produce the
 * key. An empty key stays empty (logic generates one).
 *
 * @example
 * ```ts
 * import { scopedKey } from "./auth.ts";
 * scopedKey(100, "phone"); // "100:phone"
 * scopedKey(100, ""); // ""
 * ```
 */
export function scopedKey(mid: number, key: string): string {
  return key === "" ? "" : `${mid}:${key}`;
}

function checkClaims(t: AuthToken, c: ConnectClaims, expiresAt: number | null): Identity {
  const sub = c.sub;
  const mid = typeof sub === "string" && /^(0|[1-9]\d*)$/.test(sub) ? Number(sub) : NaN;
  if (!Number.isSafeInteger(mid)) {
    throw new AuthError(
      "bad_subject",
      `token sub must be the mid as a decimal string, got ${JSON.stringify(sub)}`,
    );
  }
  if (t.mid !== 0 && t.mid !== mid) {
    throw new AuthError("mid_mismatch", `mid ${t.mid} does not match the token's sub ${sub}`);
  }
  let allowedRooms: string[] | null = null;
  if (c.room !== undefined) {
    const rooms = typeof c.room === "string" ? [c.room] : c.room;
    if (!Array.isArray(rooms) || !rooms.every((r) => typeof r === "string")) {
      throw new AuthError("bad_claim", "token room claim must be a string or an array of strings");
    }
    if (t.room_id !== "" && !rooms.some((r) => roomMatches(r, t.room_id))) {
      throw new AuthError("room_not_allowed", `room ${JSON.stringify(t.room_id)} is not allowed`);
    }
    allowedRooms = [...rooms];
  }
  let allowedOps: number[] | null = null;
  if (c.accepts !== undefined) {
    // int32, as ConnectReply.allowed_ops carries them: a larger number would
    // be truncated on the wire into some other op.
    if (!Array.isArray(c.accepts) || !c.accepts.every(isInt32)) {
      throw new AuthError("bad_claim", "token accepts claim must be an array of int32 numbers");
    }
    allowedOps = [...c.accepts];
    const allowed = new Set(c.accepts);
    const extra = t.accepts.filter((a) => !allowed.has(a));
    if (extra.length > 0) {
      throw new AuthError("accepts_not_allowed", `accepts ${extra.join(",")} not allowed`);
    }
  }
  let key = scopedKey(mid, t.key);
  if (c.key !== undefined) {
    if (typeof c.key !== "string" || c.key === "") {
      throw new AuthError("bad_claim", "token key claim must be a non-empty string");
    }
    if (t.key !== "" && t.key !== c.key) {
      throw new AuthError(
        "key_not_allowed",
        `key ${JSON.stringify(t.key)} is not the token's key`,
      );
    }
    key = c.key;
  }
  return identity(t, mid, key, allowedRooms, allowedOps, expiresAt);
}

/** The {@linkcode Identity} of token `t` once its mid, key, scope and expiry are settled. */
function identity(
  t: AuthToken,
  mid: number,
  key: string,
  allowedRooms: string[] | null,
  allowedOps: number[] | null,
  expiresAt: number | null,
): Identity {
  return {
    mid,
    key,
    roomID: t.room_id,
    platform: t.platform,
    accepts: t.accepts,
    allowedRooms,
    allowedOps,
    expiresAt,
  };
}

/** Whether room key `room` matches a `room` claim entry (`*` suffix = prefix match). */
function roomMatches(pattern: string, room: string): boolean {
  return pattern.endsWith("*") ? room.startsWith(pattern.slice(0, -1)) : pattern === room;
}

/**
 * A checker of `Authorization: Bearer <key>` against `logic.auth.api_keys`.
 * With no keys configured every request passes (goim has no API auth).
 *
 * @example
 * ```ts
 * import { createApiKeyCheck } from "./auth.ts";
 * const allowed = createApiKeyCheck(["k1"]);
 * allowed(new Request("http://x/", { headers: { authorization: "Bearer k1" } })); // true
 * ```
 */
export function createApiKeyCheck(keys: readonly string[]): (req: Request) => boolean {
  if (keys.length === 0) return () => true;
  const digests = keys.map(sha256);
  return (req) => {
    const header = req.headers.get("authorization") ?? "";
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    if (!m) return false;
    const given = sha256(m[1]);
    let match = false;
    // No early exit: the time taken does not depend on which key matched.
    for (const d of digests) match = timingSafeEqual(given, d) || match;
    return match;
  };
}

function sha256(s: string): Uint8Array {
  return createHash("sha256").update(s).digest();
}

/**
 * The HTTP API's response envelope, `{"code":0,"message":"","data":...}`,
 * and its error codes.
 *
 * goim answers every outcome with HTTP 200 and puts the outcome in `code`
 * only. Here the HTTP status matches the outcome as well (docs/LOGIC.md,
 * "Status codes"), and `code` is the status negated, so a goim client that
 * only looks at `code` keeps working and a plain HTTP client sees a proper
 * status.
 *
 * | code | HTTP | meaning |
 * |-----:|-----:|---------|
 * | 0    | 200  | success |
 * | -400 | 400  | bad request: the message names the parameter |
 * | -401 | 401  | missing or wrong `Authorization: Bearer <api key>` |
 * | -404 | 404  | unknown route |
 * | -405 | 405  | known route, wrong method (`Allow` header lists the right one) |
 * | -413 | 413  | push body larger than `logic.http.max_body` |
 * | -500 | 500  | server error (session store or registry failed) |
 * | -503 | 503  | the push queue, the stream store or the push status store cannot answer now; retry later |
 *
 * @module
 */

import { errorMessage } from "../infra/log.ts";

/** Response codes of the HTTP API (`code` field); each is its HTTP status negated. */
export const ResultCode = {
  /** Success. */
  OK: 0,
  /** Bad request (goim RequestErr). */
  BadRequest: -400,
  /** Missing or wrong API key. */
  Unauthorized: -401,
  /** Unknown route. */
  NotFound: -404,
  /** Wrong method for a known route. */
  MethodNotAllowed: -405,
  /** Body over `logic.http.max_body`. */
  PayloadTooLarge: -413,
  /** Server error (goim ServerErr). */
  ServerError: -500,
  /** Queue, stream store or push status store unavailable. */
  Unavailable: -503,
} as const;

/** One of {@linkcode ResultCode}'s values. */
export type ResultCodeValue = typeof ResultCode[keyof typeof ResultCode];

/**
 * An error the HTTP API answers with its own code, status and message.
 * Thrown anywhere below a route handler; anything else becomes -500.
 *
 * @example
 * ```ts
 * import { ApiError, ResultCode } from "./result.ts";
 * throw new ApiError(ResultCode.BadRequest, "keys: at least one key is required");
 * ```
 */
export class ApiError extends Error {
  /** The `code` of the response body. */
  readonly code: ResultCodeValue;
  /** Extra response headers (e.g. `Allow`, `WWW-Authenticate`). */
  readonly headers?: Record<string, string>;

  /** `message` is sent to the caller verbatim: make it say what to fix. */
  constructor(code: ResultCodeValue, message: string, headers?: Record<string, string>) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.headers = headers;
  }

  /** The HTTP status that goes with {@linkcode ApiError.code}. */
  get status(): number {
    return -this.code;
  }
}

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" } as const;

/**
 * A success response: HTTP 200, `{"code":0,"message":"","data":data}`.
 *
 * @example
 * ```ts
 * import { ok } from "./result.ts";
 * const res = ok({ keys: 2, comets: 1 });
 * ```
 */
export function ok(data: unknown): Response {
  return new Response(
    JSON.stringify({ code: ResultCode.OK, message: "", data: data ?? null }),
    { status: 200, headers: JSON_HEADERS },
  );
}

/** The response for an {@linkcode ApiError}: its status, code, message and headers; `data` null. */
export function fail(err: ApiError): Response {
  return new Response(
    JSON.stringify({ code: err.code, message: err.message, data: null }),
    { status: err.status, headers: { ...JSON_HEADERS, ...err.headers } },
  );
}

/**
 * Runs a call to a store (push status, stream history): a failure becomes
 * a 503 `"<what> failed, retry later: <why>"`, after `onFail` (a metric).
 * An ApiError passes through unchanged.
 *
 * @example
 * ```ts
 * import { storeCall } from "./result.ts";
 * declare const get: () => Promise<string | null>;
 * const v = await storeCall("push status store: get", get);
 * ```
 */
export async function storeCall<T>(
  what: string,
  call: () => Promise<T>,
  onFail?: () => void,
): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof ApiError) throw e;
    onFail?.();
    throw new ApiError(ResultCode.Unavailable, `${what} failed, retry later: ${errorMessage(e)}`);
  }
}

/**
 * `store`, or a 503 `"<what>: this logic has none"` (after `onFail`) when it
 * was not configured.
 *
 * @example
 * ```ts
 * import { configured } from "./result.ts";
 * declare const store: Map<string, string> | undefined;
 * const s = configured(store, "push status store");
 * ```
 */
export function configured<T>(store: T | undefined, what: string, onFail?: () => void): T {
  if (store !== undefined) return store;
  onFail?.();
  throw new ApiError(ResultCode.Unavailable, `${what}: this logic has none`);
}

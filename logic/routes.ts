/**
 * Route dispatch shared by logic's two JSON APIs, the push API
 * (./http.ts) and the operator API (./operator.ts): find the route, check
 * the caller's key, check the method, run it — refusals as {@linkcode ApiError}
 * (404, 401 with `www-authenticate`, 405 with `allow`), in that order.
 *
 * @module
 */

import { ApiError, ok, ResultCode } from "./result.ts";

/** One route: its method and its handler, given a context of the API's own. */
export interface Route<C> {
  /** The one method the route takes. */
  method: "GET" | "POST";
  /** Answers with the `data` of a `{code: 0}` reply, or throws an ApiError. */
  handle(ctx: C): Promise<unknown>;
}

/** Who may call an API, and how a refusal says so. */
export interface RouteAuth {
  /** Whether the request carries one of the API's keys. */
  authorized(req: Request): boolean;
  /** The config key holding them, named in the 401 message. */
  keys: string;
  /** The `www-authenticate` realm. */
  realm: string;
}

/**
 * Runs the route of `url.pathname`; `ctx` builds the handler's context from
 * the caller's IP ("" when unknown). `notFound` words the 404.
 *
 * @example
 * ```ts
 * import { type Route, routeRequest } from "./routes.ts";
 * const routes: Record<string, Route<{ ip: string }>> = {
 *   "/ping": { method: "GET", handle: ({ ip }) => Promise.resolve({ ip }) },
 * };
 * const auth = { authorized: () => true, keys: "logic.auth.api_keys", realm: "goim" };
 * const req = new Request("http://x/ping");
 * await routeRequest(routes, req, new URL(req.url), undefined, auth, (ip) => ({ ip }));
 * ```
 */
export async function routeRequest<C>(
  routes: Readonly<Record<string, Route<C>>>,
  req: Request,
  url: URL,
  info: Deno.ServeHandlerInfo | undefined,
  auth: RouteAuth,
  ctx: (ip: string) => C,
  notFound: (path: string) => string = (path) => `no route ${path}`,
): Promise<Response> {
  const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
  if (route === undefined) throw new ApiError(ResultCode.NotFound, notFound(url.pathname));
  if (!auth.authorized(req)) {
    throw new ApiError(
      ResultCode.Unauthorized,
      `unauthorized: send Authorization: Bearer <one of ${auth.keys}>`,
      { "www-authenticate": `Bearer realm="${auth.realm}"` },
    );
  }
  if (req.method !== route.method) {
    throw new ApiError(
      ResultCode.MethodNotAllowed,
      `${url.pathname} takes ${route.method}, not ${req.method}`,
      { allow: route.method },
    );
  }
  const addr = info?.remoteAddr;
  return ok(await route.handle(ctx(addr && "hostname" in addr ? addr.hostname : "")));
}

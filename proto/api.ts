/**
 * Role-to-role APIs as plain async interfaces.
 *
 * A role calls another through these types only. In the embedded mode the
 * callee's service object is passed in directly (no sockets, no encoding);
 * in the distributed mode a gRPC client from ./grpc.ts fills the same slot
 * (a {@linkcode LogicRpcClient} is assignable to {@linkcode LogicApi}). One
 * code path, two deployments.
 *
 * @module
 */

import type { CometMethods, LogicMethods, MethodTable } from "./grpc.ts";

/** Complete request in, complete reply out, one method per RPC. */
export type Api<M extends MethodTable> = {
  [K in keyof M]: (req: M[K][0]) => Promise<M[K][1]>;
};

/**
 * What a comet needs from logic (`goim.logic.Logic`).
 *
 * @example
 * ```ts
 * import type { LogicApi } from "./api.ts";
 * async function auth(logic: LogicApi, token: Uint8Array) {
 *   return await logic.Connect({ server: "comet-1", cookie: "", token });
 * }
 * ```
 */
export type LogicApi = Api<LogicMethods>;

/** What job needs from a comet (`goim.comet.Comet`). */
export type CometApi = Api<CometMethods>;

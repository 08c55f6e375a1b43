/**
 * The logic role: HTTP push/online/nodes API and the gRPC service comets
 * call. Import {@linkcode Logic} to run it over engines you created;
 * `deno task logic` (./main.ts) runs it as its own process.
 *
 * @example
 * ```ts
 * import { Logic, type LogicDeps } from "./mod.ts";
 * declare const { config, sessions, registry, producer }: LogicDeps;
 * const logic = new Logic({ config, sessions, registry, producer });
 * await logic.start();
 * ```
 *
 * @module
 */

export { Logic, type LogicAddrs, type LogicDeps, type LogicStartOptions } from "./logic.ts";
export { type LogicEngines, openLogicEngines } from "./engines.ts";
export { AuthError, type AuthFailureReason, type ConnectClaims } from "./auth.ts";
export { ResultCode } from "./result.ts";

/**
 * goim's inter-service contracts: the `goim.comet.Comet` and `goim.logic.Logic`
 * gRPC services and the `goim.logic.PushMsg` queue message, with packages,
 * names and field numbers exactly as in Terry-Mao/goim, so goim processes and
 * ours can be mixed in one cluster.
 *
 * - ./messages.ts: TypeScript shapes of every message.
 * - ./grpc.ts: service definitions, `serveUnary`, promise-based clients.
 * - ./push_msg.ts: `encodePushMsg` / `decodePushMsg` (import it alone where
 *   grpc-js is not wanted, e.g. a queue consumer).
 *
 * Importing this module reads the .proto files beside it once: it needs read
 * permission on proto/, and `deno compile` needs `--include proto/`.
 *
 * @example
 * ```ts
 * import * as grpc from "@grpc/grpc-js";
 * import { createLogicClient, type LogicHandlers, logicServiceDefinition, serveUnary } from "./mod.ts";
 *
 * declare const handlers: LogicHandlers;
 * const server = new grpc.Server();
 * server.addService(logicServiceDefinition, serveUnary(handlers));
 * server.bindAsync("127.0.0.1:3119", grpc.ServerCredentials.createInsecure(), () => {});
 *
 * const logic = createLogicClient("127.0.0.1:3119");
 * await logic.Heartbeat({ mid: 1, key: "k", server: "comet-1" });
 * ```
 *
 * @module
 */

export * from "./messages.ts";
export * from "./grpc.ts";
export * from "./push_msg.ts";
export * from "./api.ts";

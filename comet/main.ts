/**
 * Distributed entry of the comet role (`deno task comet`): loads the
 * configuration, dials logic over gRPC (round-robin over
 * comet.logic_addrs, with the grpc.token / grpc.tls.* credentials), opens
 * the configured registry (infra/engines.ts), starts the comet and shuts it
 * down gracefully on SIGTERM/SIGINT (exit code 0; 1 when startup fails). An
 * admin endpoint open to the network without admin.token is a
 * configuration error (exit code 2).
 *
 * @example
 * ```sh
 * deno task comet --config config/distributed.toml --set node.id=comet-1
 * ```
 *
 * @module
 */

import { openEngines } from "../infra/engines.ts";
import { runRole, StartupError } from "../infra/process.ts";
import type { LogicApi } from "../proto/api.ts";
import { type ClientOptions, createLogicClient, type LogicRpcClient } from "../proto/grpc.ts";
import { internalClientOptions } from "../proto/security.ts";
import { Comet } from "./comet.ts";
import { errorMessage } from "../infra/log.ts";

/**
 * A {@linkcode LogicApi} that spreads calls over several logic clients in
 * turn (each call goes to the next one).
 *
 * @example
 * ```ts
 * import { createLogicClient } from "../proto/grpc.ts";
 * const logic = roundRobinLogic(["10.0.0.1:3119", "10.0.0.2:3119"].map((a) => createLogicClient(a)));
 * ```
 */
export function roundRobinLogic(clients: readonly LogicRpcClient[]): LogicApi {
  if (clients.length === 0) throw new Error("no logic address configured (comet.logic_addrs)");
  if (clients.length === 1) return clients[0];
  let next = 0;
  const pick = () => clients[next++ % clients.length];
  return {
    Connect: (req) => pick().Connect(req),
    Disconnect: (req) => pick().Disconnect(req),
    Heartbeat: (req) => pick().Heartbeat(req),
    RenewOnline: (req) => pick().RenewOnline(req),
    Receive: (req) => pick().Receive(req),
    Nodes: (req) => pick().Nodes(req),
  };
}

if (import.meta.main) {
  await runRole({
    role: "comet",
    exposure: { admin: ["comet"] },
    start: async (config, log) => {
      let dial: ClientOptions;
      try {
        dial = await internalClientOptions(config.grpc);
      } catch (e) {
        throw new StartupError("cannot set up gRPC to logic", 1, { cause: errorMessage(e) });
      }
      const clients = config.comet.logic_addrs.map((a) => createLogicClient(a, dial));
      const closeClients = () => clients.forEach((c) => c.close());
      let engines;
      try {
        engines = await openEngines(config, ["registry"], { log });
      } catch (e) {
        closeClients();
        throw new StartupError("cannot open engines", 1, { cause: e });
      }
      const comet = new Comet({ config, logic: roundRobinLogic(clients), ...engines, log });
      try {
        await comet.start();
      } catch (e) {
        closeClients();
        await engines.close();
        throw e;
      }
      return {
        stop: async (signal) => {
          try {
            await comet.shutdown(signal);
          } finally {
            closeClients();
            await engines.close();
          }
        },
      };
    },
  });
}

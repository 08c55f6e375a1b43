/**
 * Distributed entry of the comet role (`deno task comet`): loads the
 * configuration, dials logic over gRPC (round-robin over
 * comet.logic_addrs, with the grpc.token / grpc.tls.* credentials, for
 * `goim.logic.Logic` and `goim.logic.Streams` alike), opens
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
import { createStreamsClient, type StreamsApi, type StreamsClient } from "../proto/streams.ts";
import { Comet } from "./comet.ts";
import { errorMessage } from "../infra/log.ts";

// Each call goes to the next client in turn; `methods` names what is spread.
function roundRobin<A extends object>(clients: readonly A[], methods: readonly (keyof A)[]): A {
  if (clients.length === 0) throw new Error("no logic address configured (comet.logic_addrs)");
  if (clients.length === 1) return clients[0];
  let next = 0;
  const out: Record<string, unknown> = {};
  for (const m of methods) {
    out[m as string] = (req: unknown) => {
      const c = clients[next++ % clients.length] as Record<string, (r: unknown) => unknown>;
      return c[m as string](req);
    };
  }
  return out as A;
}

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
  return roundRobin<LogicApi>(clients, [
    "Connect",
    "Disconnect",
    "Heartbeat",
    "RenewOnline",
    "Receive",
    "Nodes",
  ]);
}

/**
 * A {@linkcode StreamsApi} that spreads calls over several logic clients in
 * turn, as {@linkcode roundRobinLogic} does.
 *
 * @example
 * ```ts
 * import { createStreamsClient } from "../proto/streams.ts";
 * const streams = roundRobinStreams(["10.0.0.1:3119"].map((a) => createStreamsClient(a)));
 * ```
 */
export function roundRobinStreams(clients: readonly StreamsClient[]): StreamsApi {
  return roundRobin<StreamsApi>(clients, ["Recover", "Acks"]);
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
      const streamClients = config.comet.logic_addrs.map((a) => createStreamsClient(a, dial));
      const closeClients = () => {
        clients.forEach((c) => c.close());
        streamClients.forEach((c) => c.close());
      };
      let engines;
      try {
        engines = await openEngines(config, ["registry"], { log });
      } catch (e) {
        closeClients();
        throw new StartupError("cannot open engines", 1, { cause: e });
      }
      const comet = new Comet({
        config,
        logic: roundRobinLogic(clients),
        streams: roundRobinStreams(streamClients),
        ...engines,
        log,
      });
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

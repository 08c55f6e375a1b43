/**
 * Distributed entry of the comet role (`deno task comet`): loads the
 * configuration, dials logic over gRPC (round-robin over
 * comet.logic_addrs, with the grpc.token / grpc.tls.* credentials), opens the configured registry, starts the comet and
 * shuts it down gracefully on SIGTERM/SIGINT (exit code 0). An admin
 * endpoint open to the network without admin.token is a configuration
 * error (exit code 2).
 *
 * @example
 * ```sh
 * deno task comet --config config/distributed.toml --set node.id=comet-1
 * ```
 *
 * @module
 */

import { type Config, loadConfigOrExit } from "../infra/config.ts";
import { checkExposureOrExit } from "../infra/http_server.ts";
import { installCrashGuard, roleLogger } from "../infra/process.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import type { Registry } from "../infra/registry.ts";
import type { LogicApi } from "../proto/api.ts";
import { type ClientOptions, createLogicClient, type LogicRpcClient } from "../proto/grpc.ts";
import { internalClientOptions } from "../proto/security.ts";
import { Comet } from "./comet.ts";

/**
 * A {@linkcode LogicApi} that spreads calls over several logic clients in
 * turn (each call goes to the next one).
 *
 * @example
 * ```ts ignore
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

/** Opens the registry engine named by `registry.engine`. */
export async function openRegistry(cfg: Config): Promise<Registry> {
  if (cfg.registry.engine === "redis") {
    // Imported only when used, so the memory setup never loads a Redis client.
    const { RedisRegistry } = await import("../infra/redis/registry.ts");
    return await RedisRegistry.connect({ url: cfg.redis.url, keyPrefix: cfg.redis.key_prefix });
  }
  // Only meaningful when logic and job run in this process too; a lone comet
  // with it is reachable by nobody (config warns for mode = "distributed").
  return new MemoryRegistry();
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function main(): Promise<void> {
  const cfg = loadConfigOrExit();
  const log = roleLogger(cfg, "comet");
  installCrashGuard(log);
  checkExposureOrExit(cfg, { admin: ["comet"] }, log);
  let dial: ClientOptions;
  try {
    dial = await internalClientOptions(cfg.grpc);
  } catch (e) {
    log.error("cannot set up gRPC to logic", { error: messageOf(e) });
    Deno.exit(1);
  }
  const clients = cfg.comet.logic_addrs.map((a) => createLogicClient(a, dial));
  const registry = await openRegistry(cfg);
  const comet = new Comet({ config: cfg, logic: roundRobinLogic(clients), registry, log });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    try {
      await comet.shutdown(signal);
    } finally {
      for (const c of clients) c.close();
      await registry.close();
      Deno.exit(0);
    }
  };
  Deno.addSignalListener("SIGTERM", () => void stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => void stop("SIGINT"));
  try {
    await comet.start();
  } catch (e) {
    log.error("comet failed to start", { error: e });
    for (const c of clients) c.close();
    await registry.close();
    Deno.exit(1);
  }
}

if (import.meta.main) await main();

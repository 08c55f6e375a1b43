/**
 * Process plumbing shared by the role entry points (`*\/main.ts`).
 *
 * @module
 */

import type { Config } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";

/**
 * The logger of a role process: `log.level` and `log.format` from the
 * configuration, every line tagged with the role and `node.id`.
 *
 * @example
 * ```ts ignore
 * const log = roleLogger(config, "job");
 * ```
 */
export function roleLogger(config: Pick<Config, "log" | "node">, role: string): Logger {
  return createLogger({
    level: config.log.level,
    format: config.log.format,
    fields: { role, node: config.node.id },
  });
}

/**
 * Resolves with the first SIGINT or SIGTERM received. The listeners stay
 * installed, so a second signal does not kill the process mid-shutdown.
 *
 * @example
 * ```ts ignore
 * const sig = await shutdownSignal();
 * log.info("stopping", { signal: sig });
 * ```
 */
export function shutdownSignal(): Promise<Deno.Signal> {
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve(sig));
  return promise;
}

/**
 * Splits a `host:port` bind address (IPv6 in brackets); an empty host
 * means all interfaces. Expects an address the configuration already
 * validated (infra/config.ts `addr`).
 *
 * @example
 * ```ts
 * splitBind("[::1]:3192"); // { hostname: "::1", port: 3192 }
 * ```
 */
export function splitBind(addr: string): { hostname: string; port: number } {
  const i = addr.lastIndexOf(":");
  let host = addr.slice(0, i);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return { hostname: host === "" ? "0.0.0.0" : host, port: Number(addr.slice(i + 1)) };
}

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

/** Reports of {@linkcode installCrashGuard} logged per window before the rest are only counted. */
const CRASH_REPORTS_PER_WINDOW = 10;
const CRASH_WINDOW_MS = 10_000;
let crashGuard = false;

/**
 * Keeps a role process alive when a promise rejection goes unhandled or an
 * error escapes an event callback (a listener failing to accept, a socket
 * error nobody listens for): each is logged at error level (at most
 * {@linkcode CRASH_REPORTS_PER_WINDOW} per 10 s, then counted) instead of
 * ending the process and every connection it holds. Installed once per
 * process, by each role's entry; later calls do nothing.
 *
 * @example
 * ```ts ignore
 * const log = roleLogger(config, "logic");
 * installCrashGuard(log);
 * ```
 */
export function installCrashGuard(log: Logger): void {
  if (crashGuard) return;
  crashGuard = true;
  let windowStart = -Infinity, reported = 0, suppressed = 0;
  const report = (what: string, error: unknown) => {
    const now = performance.now();
    if (now - windowStart >= CRASH_WINDOW_MS) {
      if (suppressed > 0) log.error(`${suppressed} more ${what}s were not logged`);
      windowStart = now;
      reported = suppressed = 0;
    }
    if (reported++ < CRASH_REPORTS_PER_WINDOW) log.error(`${what}; kept running`, { error });
    else suppressed++;
  };
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    report("unhandled rejection", e.reason);
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    report("uncaught exception", e.error ?? e.message);
  });
}

/**
 * Process plumbing shared by the role entry points (`*\/main.ts`): every
 * entry is a {@linkcode runRole} call, so each loads its configuration,
 * logs, guards against stray errors, applies the exposure rule, starts and
 * stops on SIGINT/SIGTERM the same way.
 *
 * @module
 */

import { type Config, loadConfigOrExit } from "./config.ts";
import { checkExposureOrExit, type Exposure } from "./http_server.ts";
import { createLogger, type Logger } from "./log.ts";
import { acquireLoopLag } from "./loop_lag.ts";

/**
 * The logger of a role process: `log.level` and `log.format` from the
 * configuration, every line tagged with the role and `node.id`.
 *
 * @example
 * ```ts
 * import type { Config } from "./config.ts";
 * declare const config: Config;
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
 * Call it when the process starts, before anything listens, and await the
 * promise later: Deno 2.9.3 sets its signal handling up on the first
 * listener and aborts the process (ext/signals unwraps an EMFILE) when the
 * descriptors have run out by then, which a loaded server's clients can
 * make happen at any moment once it listens.
 *
 * @example
 * ```ts
 * import type { Logger } from "./log.ts";
 * declare const server: { start(): Promise<void> }, log: Logger;
 * const signal = shutdownSignal(); // first, see above
 * await server.start();
 * log.info("stopping", { signal: await signal });
 * ```
 */
export function shutdownSignal(): Promise<Deno.Signal> {
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve(sig));
  return promise;
}

/** A role that {@linkcode runRole} started. */
export interface RunningRole {
  /** Stops it gracefully, after `signal`; the process exits 0 once this resolves, 1 if it rejects. */
  stop(signal: Deno.Signal): Promise<void>;
}

/**
 * A startup failure that ends the process with `exitCode` and `message`
 * (the reason in `cause`): 2 for a configuration a role cannot run with,
 * 1 for anything else.
 */
export class StartupError extends Error {
  /** `message` says what failed; `options.cause` why. */
  constructor(message: string, readonly exitCode: 1 | 2, options?: ErrorOptions) {
    super(message, options);
    this.name = "StartupError";
  }
}

/** What {@linkcode runRole} runs. */
export interface RoleEntry {
  /** The role's name, for log lines (`role` field, "… failed to start"). */
  role: string;
  /** The listeners it serves, for the exposure rule (infra/http_server.ts `checkExposure`). */
  exposure: Exposure;
  /** Its logger; default {@linkcode roleLogger}. */
  logger?: (config: Config) => Logger;
  /**
   * Opens what it needs and starts it, closing again whatever it opened if
   * it fails; throws a {@linkcode StartupError} to pick the message and the
   * exit code (anything else: "<role> failed to start", exit code 1).
   */
  start(config: Config, log: Logger): Promise<RunningRole>;
}

/**
 * Runs a role process: loads the configuration (`--config`, `GOIM_*`,
 * `--set`; exit code 2 when invalid), installs the crash guard and the
 * shutdown signal listeners, applies the exposure rule (exit code 2), calls
 * `entry.start`, and on the first SIGINT or SIGTERM stops the role and
 * exits (0 after a clean stop, 1 when starting or stopping fails).
 *
 * @example
 * ```ts
 * import type { Config } from "./config.ts";
 * import type { Logger } from "./log.ts";
 * declare function startJob(config: Config, log: Logger): Promise<{ stop(): Promise<void> }>;
 * if (import.meta.main) {
 *   await runRole({ role: "job", exposure: { admin: ["job"] }, start: async (config, log) => {
 *     const job = await startJob(config, log);
 *     return { stop: () => job.stop() };
 *   } });
 * }
 * ```
 */
export async function runRole(entry: RoleEntry): Promise<never> {
  const config = loadConfigOrExit();
  const log = entry.logger?.(config) ?? roleLogger(config, entry.role);
  installCrashGuard(log);
  // Before anything listens: see shutdownSignal.
  const signal = shutdownSignal();
  checkExposureOrExit(config, entry.exposure, log);
  // Every role process measures its event-loop lag (held until exit; unref'd).
  acquireLoopLag();
  let running: RunningRole;
  try {
    running = await entry.start(config, log);
  } catch (e) {
    if (e instanceof StartupError) {
      log.error(e.message, { error: e.cause });
      Deno.exit(e.exitCode);
    }
    log.error(`${entry.role} failed to start`, { error: e });
    Deno.exit(1);
  }
  const sig = await signal;
  log.info("stopping", { signal: sig });
  try {
    await running.stop(sig);
  } catch (e) {
    log.error("shutdown failed", { error: e });
    Deno.exit(1);
  }
  Deno.exit(0);
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
 * ```ts
 * import type { Config } from "./config.ts";
 * declare const config: Config;
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

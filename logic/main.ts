/**
 * `deno task logic`: the logic role as its own process (distributed mode).
 *
 * Reads the configuration (`--config FILE`, `GOIM_*`, `--set K=V`), opens
 * the engines it names (logic/engines.ts), serves HTTP, gRPC and admin, and
 * on SIGINT or SIGTERM stops serving, then closes the engines. Exit codes:
 * 0 after a clean stop, 1 when startup fails, 2 for a configuration error.
 *
 * @example
 * ```sh
 * deno task logic --config config/distributed.toml --set node.id=logic-1
 * ```
 *
 * @module
 */

import { loadConfigOrExit } from "../infra/config.ts";
import { checkExposureOrExit } from "../infra/http_server.ts";
import { installCrashGuard, roleLogger, shutdownSignal } from "../infra/process.ts";
import { EngineConfigError, openLogicEngines } from "./engines.ts";
import { Logic } from "./logic.ts";

if (import.meta.main) {
  const config = loadConfigOrExit();
  const log = roleLogger(config, "logic");
  installCrashGuard(log);
  // Before the engines: an exposed push API is a configuration error (exit 2).
  checkExposureOrExit(config, { api: true, admin: ["logic"] }, log);
  let engines;
  try {
    engines = await openLogicEngines(config, log);
  } catch (e) {
    log.error("cannot open engines", { error: e instanceof EngineConfigError ? e.message : e });
    Deno.exit(e instanceof EngineConfigError ? 2 : 1);
  }
  const logic = new Logic({ config, ...engines, log });
  try {
    await logic.start();
  } catch (e) {
    log.error("logic failed to start", { error: e });
    await engines.close();
    Deno.exit(1);
  }
  const sig = await shutdownSignal();
  log.info("stopping", { signal: sig });
  await logic.stop();
  await engines.close();
  Deno.exit(0);
}

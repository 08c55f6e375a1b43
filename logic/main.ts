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

import { runRole, StartupError } from "../infra/process.ts";
import { EngineConfigError, openLogicEngines } from "./engines.ts";
import { Logic } from "./logic.ts";

if (import.meta.main) {
  await runRole({
    role: "logic",
    // An exposed push API is a configuration error (exit 2), found before the engines open.
    exposure: { api: true, admin: ["logic"] },
    start: async (config, log) => {
      let engines;
      try {
        engines = await openLogicEngines(config, log);
      } catch (e) {
        const usage = e instanceof EngineConfigError;
        throw new StartupError("cannot open engines", usage ? 2 : 1, {
          cause: usage ? e.message : e,
        });
      }
      const logic = new Logic({ config, ...engines, log });
      try {
        await logic.start();
      } catch (e) {
        await engines.close();
        throw e;
      }
      return {
        stop: async () => {
          await logic.stop();
          await engines.close();
        },
      };
    },
  });
}

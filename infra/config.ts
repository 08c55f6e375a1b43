/**
 * One configuration for every role (comet, logic, job, or all three in one
 * process), declared once as a schema from which the loader, the TypeScript
 * type, the validation messages and docs/CONFIG.md are all derived.
 *
 * Sources, later ones winning: schema defaults ← TOML file (`--config PATH`
 * or `GOIM_CONFIG`) ← environment (`GOIM_COMET__TCP__BIND=…`) ← flags
 * (`--set comet.tcp.bind=…`). Any invalid input throws a {@linkcode ConfigError}
 * that names the key, the source and what was expected.
 *
 * Run as a program it maintains the reference and checks files:
 * `./scripts/deno run -A infra/config.ts --write-docs` regenerates
 * docs/CONFIG.md; `--print [--config F] [--set K=V]` prints the effective
 * configuration as JSON.
 *
 * The parts live in infra/config/, one concept a file: `units.ts` (durations,
 * sizes), `schema_engine.ts` (key helpers, {@linkcode defineSchema}, the
 * derived types), `schema.ts` (goim's keys, section intros, cross-key rules),
 * `loader.ts` (sources, errors, {@linkcode loadConfig}), `messages.ts` (how
 * values are quoted, "did you mean") and `docs.ts` (the docs/CONFIG.md
 * renderer). This file is the public API and the CLI.
 *
 * @example Load in a role's entry point
 * ```ts
 * import { loadConfigOrExit } from "./config.ts";
 * const cfg = loadConfigOrExit(); // reads Deno.args and Deno.env; exit code 2 on error
 * cfg.comet.tcp.bind; // readonly string[], e.g. ["0.0.0.0:3101"]
 * cfg.comet.handshake_timeout; // 8000 (durations are milliseconds)
 * ```
 *
 * @module
 */
import { CONFIG_DOCS_URL, formattedConfigReference } from "./config/docs.ts";
import { loadConfigOrExit } from "./config/loader.ts";

// schema.ts also exports what only the loader and the renderer need.
export * from "./config/units.ts";
export * from "./config/schema_engine.ts";
export {
  type Config,
  CONFIG_SCHEMA,
  type ConfigKey,
  MIN_HS256_SECRET_BYTES,
} from "./config/schema.ts";
export * from "./config/loader.ts";
export * from "./config/docs.ts";

if (import.meta.main) {
  const args = [...Deno.args];
  if (args.includes("--write-docs")) {
    Deno.mkdirSync(new URL(".", CONFIG_DOCS_URL), { recursive: true });
    Deno.writeTextFileSync(CONFIG_DOCS_URL, await formattedConfigReference());
    console.log(`wrote ${CONFIG_DOCS_URL.pathname}`);
  } else if (args.includes("--print")) {
    const cfg = loadConfigOrExit({ args: args.filter((a) => a !== "--print") });
    console.log(JSON.stringify(cfg, null, 2));
  } else {
    console.error(
      "usage: infra/config.ts --write-docs | --print [--config FILE] [--set KEY=VALUE ...]",
    );
    Deno.exit(2);
  }
}

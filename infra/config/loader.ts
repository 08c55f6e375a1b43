/**
 * The loader: defaults ← TOML file ← `GOIM_*` environment ← `--set` flags,
 * with every problem reported as a {@linkcode ConfigError} naming the source,
 * the key and what was expected.
 *
 * @module
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { type ConfigOf, InvalidValue, type KeySpec, type Schema } from "./schema_engine.ts";
import { type Config, CONFIG_SCHEMA, CROSS_CHECKS } from "./schema.ts";
import { describe, suggest } from "./messages.ts";

/** Where a value came from; rendered in messages as `file:line`, `env NAME` or `flag …`. */
export type ConfigSource =
  | { readonly kind: "default" }
  | { readonly kind: "file"; readonly path: string; readonly line?: number }
  | { readonly kind: "env"; readonly name: string }
  | { readonly kind: "flag"; readonly arg: string };

/** Formats a source for a message: `config/x.toml:12`, `env GOIM_X`, `flag --set x=1`, `default`. */
export function formatSource(s: ConfigSource): string {
  switch (s.kind) {
    case "default":
      return "default";
    case "file":
      return s.line ? `${s.path}:${s.line}` : s.path;
    case "env":
      return `env ${s.name}`;
    case "flag":
      return `flag ${s.arg}`;
  }
}

/** One problem found while loading. */
export interface ConfigIssue {
  /** The key concerned, if any (an unknown key is reported as written). */
  readonly key?: string;
  /** Where the offending value came from. */
  readonly source: ConfigSource;
  /** The full one-line message, starting with the source. */
  readonly message: string;
}

/**
 * Invalid configuration. `message` holds one line per problem, each naming
 * the source, the key and what was expected; `issues` has them structured.
 */
export class ConfigError extends Error {
  /** Creates the error from its issues. */
  constructor(readonly issues: readonly ConfigIssue[]) {
    super(
      issues.length === 1
        ? `invalid configuration: ${issues[0].message}`
        : `invalid configuration (${issues.length} problems):\n` +
          issues.map((i) => `  ${i.message}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/** Options of {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /**
   * TOML file to read when neither `--config` nor `GOIM_CONFIG` names one
   * (a program's default path). No file at all is fine: defaults apply.
   */
  readonly file?: string;
  /** Environment; defaults to `Deno.env.toObject()`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Command-line arguments; defaults to `Deno.args`. */
  readonly args?: readonly string[];
  /** Leave arguments other than `--config`/`--set` to the caller instead of rejecting them. */
  readonly ignoreUnknownArgs?: boolean;
  /** Receives warnings (unknown `GOIM_*` variables, odd setups); defaults to stderr. */
  readonly onWarning?: (message: string) => void;
  /** Supplies the host name used when `node.id` is empty; defaults to `Deno.hostname()`. */
  readonly hostname?: () => string;
}

/** Environment variable prefix of configuration keys. */
export const ENV_PREFIX = "GOIM_";
/** Environment variable naming the TOML file. */
export const ENV_CONFIG_FILE = "GOIM_CONFIG";
// GOIM_* names that are not keys but must not trigger "unknown variable" warnings.
const RESERVED_ENV: ReadonlySet<string> = new Set([ENV_CONFIG_FILE]);

/**
 * The environment variable of a key: `GOIM_` + the path upper-cased with
 * `.` written as `__` (segments are snake_case, so this is reversible).
 *
 * @example
 * ```ts
 * envVarName("comet.handshake_timeout"); // "GOIM_COMET__HANDSHAKE_TIMEOUT"
 * ```
 */
export function envVarName(path: string): string {
  return ENV_PREFIX + path.toUpperCase().replaceAll(".", "__");
}

interface Resolved {
  readonly values: Map<string, unknown>;
  readonly sources: Map<string, ConfigSource>;
  readonly issues: ConfigIssue[];
  readonly warnings: string[];
}

/** Best-effort map of dotted path → line number, for messages (smol-toml keeps no positions). */
function tomlLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  let table = "";
  let inMultiline = false;
  const splitKey = (k: string) =>
    k.split(".").map((s) => s.trim().replace(/^["']|["']$/g, "")).join(".");
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    const quotes = (line.match(/"""|'''/g) ?? []).length;
    if (inMultiline) {
      if (quotes % 2 === 1) inMultiline = false;
      return;
    }
    if (quotes % 2 === 1) inMultiline = true;
    const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(line);
    if (header) {
      table = splitKey(header[1]);
      if (!lines.has(table)) lines.set(table, i + 1);
      return;
    }
    const kv =
      /^((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=/
        .exec(line);
    if (kv) {
      const path = (table ? table + "." : "") + splitKey(kv[1]);
      if (!lines.has(path)) lines.set(path, i + 1);
    }
  });
  return lines;
}

function lineOf(lines: Map<string, number>, path: string): number | undefined {
  for (let p = path;; p = p.slice(0, p.lastIndexOf("."))) {
    const n = lines.get(p);
    if (n !== undefined || !p.includes(".")) return n;
  }
}

function isPlainTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function defaultWarn(message: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`goim: warning: ${message}\n`));
}

function resolve(schema: Schema, opts: LoadConfigOptions): Resolved {
  const values = new Map<string, unknown>();
  const sources = new Map<string, ConfigSource>();
  const issues: ConfigIssue[] = [];
  const warnings: string[] = [];
  const paths = Object.keys(schema);
  const tables = new Set(paths.flatMap((p) => {
    const segs = p.split(".");
    return segs.slice(1).map((_, i) => segs.slice(0, i + 1).join("."));
  }));
  for (const p of paths) {
    values.set(p, schema[p].default);
    sources.set(p, { kind: "default" });
  }
  const issue = (source: ConfigSource, key: string | undefined, text: string) =>
    issues.push({ key, source, message: `${formatSource(source)}: ${text}` });
  const set = (
    path: string,
    source: ConfigSource,
    convert: (s: KeySpec<unknown>) => unknown,
    got: unknown,
  ) => {
    const s = schema[path];
    try {
      values.set(path, convert(s));
      sources.set(path, source);
    } catch (e) {
      if (!(e instanceof InvalidValue)) throw e;
      issue(
        source,
        path,
        `${path}: expected ${s.expected}, got ${describe(got)}${e.detail ? ` (${e.detail})` : ""}`,
      );
    }
  };
  const unknownKey = (path: string) => {
    const near = suggest(path, [...paths, ...tables]);
    return `unknown key "${path}"${near ? ` (did you mean "${near}"?)` : ""}`;
  };

  // Flags are read first only to learn --config; they are applied last.
  const env = opts.env ?? Deno.env.toObject();
  const args = opts.args ?? Deno.args;
  const sets: Array<{ arg: string; path: string; value: string }> = [];
  let flagFile: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.indexOf("=");
    const name = a.startsWith("--") && eq > 0 ? a.slice(0, eq) : a;
    if (name !== "--config" && name !== "--set") {
      if (!opts.ignoreUnknownArgs) {
        issue(
          { kind: "flag", arg: a },
          undefined,
          `unknown argument (expected --config PATH or --set KEY=VALUE)`,
        );
      }
      continue;
    }
    let value: string | undefined = eq > 0 && name !== a ? a.slice(eq + 1) : args[++i];
    const arg = name === a ? `${a} ${value ?? ""}`.trim() : a;
    if (value === undefined) {
      issue({ kind: "flag", arg }, undefined, `${name} needs a value`);
      continue;
    }
    if (name === "--config") {
      flagFile = value;
      continue;
    }
    const kv = value.indexOf("=");
    if (kv <= 0) {
      issue(
        { kind: "flag", arg },
        undefined,
        `expected --set KEY=VALUE, e.g. --set comet.tcp.bind=0.0.0.0:3101`,
      );
      continue;
    }
    const path = value.slice(0, kv).trim();
    value = value.slice(kv + 1);
    sets.push({ arg, path, value });
  }

  // File.
  const fileSource: ConfigSource | undefined = flagFile !== undefined
    ? { kind: "flag", arg: `--config ${flagFile}` }
    : env[ENV_CONFIG_FILE]
    ? { kind: "env", name: ENV_CONFIG_FILE }
    : undefined;
  const file = flagFile ?? (env[ENV_CONFIG_FILE] || undefined) ?? opts.file;
  if (file !== undefined) {
    let text: string | undefined;
    try {
      text = Deno.readTextFileSync(file);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound ? "not found" : (e as Error).message;
      issue(
        fileSource ?? { kind: "file", path: file },
        undefined,
        `cannot read config file "${file}": ${why}`,
      );
    }
    if (text !== undefined) {
      let doc: Record<string, unknown> | undefined;
      try {
        doc = parseToml(text);
      } catch (e) {
        if (!(e instanceof TomlError)) throw e;
        const what = e.message.split("\n")[0].replace(/^Invalid TOML document:\s*/, "");
        const block = e.codeblock
          ? "\n" + e.codeblock.replace(/\n+$/, "").replace(/^/gm, "    ")
          : "";
        issue(
          { kind: "file", path: file, line: e.line },
          undefined,
          `invalid TOML at column ${e.column}: ${what}${block}`,
        );
      }
      if (doc) {
        const lines = tomlLines(text);
        const walk = (table: Record<string, unknown>, prefix: string) => {
          for (const [k, v] of Object.entries(table)) {
            const path = prefix ? `${prefix}.${k}` : k;
            const source: ConfigSource = { kind: "file", path: file, line: lineOf(lines, path) };
            if (path in schema) {
              set(path, source, (s) => s.fromToml(v), v);
            } else if (!tables.has(path)) {
              issue(source, path, unknownKey(path));
            } else if (isPlainTable(v)) {
              walk(v, path);
            } else {
              const want = `expected a table of settings ([${path}])`;
              issue(source, path, `${path}: ${want}, got ${describe(v)}`);
            }
          }
        };
        walk(doc, "");
      }
    }
  }

  // Environment.
  const byEnv = new Map(paths.map((p) => [envVarName(p), p]));
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined || RESERVED_ENV.has(name)) continue;
    const path = byEnv.get(name);
    if (path === undefined) {
      const guess = name.slice(ENV_PREFIX.length).toLowerCase().replaceAll("__", ".");
      const near = suggest(guess, paths);
      warnings.push(
        `environment variable ${name} is not a configuration key and is ignored` +
          (near ? ` (did you mean ${envVarName(near)}?)` : ""),
      );
      continue;
    }
    set(path, { kind: "env", name }, (s) => s.fromText(value), value);
  }

  // Flags.
  for (const { arg, path, value } of sets) {
    const source: ConfigSource = { kind: "flag", arg };
    if (path in schema) set(path, source, (s) => s.fromText(value), value);
    else issue(source, path, unknownKey(path));
  }
  return { values, sources, issues, warnings };
}

function buildTree(values: Map<string, unknown>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [path, v] of values) {
    const segs = path.split(".");
    let node = root;
    for (const s of segs.slice(0, -1)) node = (node[s] ??= {}) as Record<string, unknown>;
    node[segs[segs.length - 1]] = v;
  }
  const freeze = (o: Record<string, unknown>): Record<string, unknown> => {
    for (const v of Object.values(o)) if (isPlainTable(v)) freeze(v);
    return Object.freeze(o);
  };
  return freeze(root);
}

/**
 * Loads a configuration for any schema (the engine behind
 * {@linkcode loadConfig}, without the goim-specific rules).
 *
 * @example
 * ```ts
 * import { defineSchema, int } from "./schema_engine.ts";
 * const schema = defineSchema({ "http.port": int(8080, "Port.") });
 * const cfg = loadConfigWith(schema, { env: {}, args: ["--set", "http.port=9090"] });
 * cfg.http.port; // 9090
 * ```
 */
export function loadConfigWith<S extends Schema>(
  schema: S,
  options: LoadConfigOptions = {},
): ConfigOf<S> {
  const r = resolve(schema, options);
  const warn = options.onWarning ?? defaultWarn;
  r.warnings.forEach((w) => warn(w));
  if (r.issues.length) throw new ConfigError(r.issues);
  return buildTree(r.values) as ConfigOf<S>;
}

/**
 * Loads the server configuration: defaults ← TOML file ← `GOIM_*`
 * environment ← `--set` flags, then cross-key rules. Derives `node.id` from
 * the host name when empty. Throws {@linkcode ConfigError} on any invalid input.
 *
 * @example
 * ```ts
 * const cfg = loadConfig({ env: {}, args: ["--set", "comet.bucket.count=64"] });
 * cfg.comet.bucket.count; // 64
 * ```
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const r = resolve(CONFIG_SCHEMA, options);
  const warn = options.onWarning ?? defaultWarn;
  r.warnings.forEach((w) => warn(w));
  if (r.issues.length) throw new ConfigError(r.issues);
  if (r.values.get("node.id") === "") {
    let host = "";
    try {
      host = (options.hostname ?? Deno.hostname)();
    } catch {
      // No --allow-sys: fall through to a fixed name; node.id can always be set explicitly.
    }
    r.values.set("node.id", host || "goim");
  }
  const cfg = buildTree(r.values) as Config;
  const issues: ConfigIssue[] = [];
  for (const check of CROSS_CHECKS) {
    const msg = check.test(cfg);
    if (msg === undefined) continue;
    const source = r.sources.get(check.key)!;
    const message = `${formatSource(source)}: ${check.key}: ${msg}`;
    if (check.warning) warn(message);
    else issues.push({ key: check.key, source, message });
  }
  if (issues.length) throw new ConfigError(issues);
  return cfg;
}

/**
 * {@linkcode loadConfig} for entry points: on a {@linkcode ConfigError} it
 * prints the message to stderr and exits with code 2 (usage error).
 */
export function loadConfigOrExit(options: LoadConfigOptions = {}): Config {
  try {
    return loadConfig(options);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    Deno.stderr.writeSync(new TextEncoder().encode(`goim: ${e.message}\n`));
    Deno.exit(2);
  }
}

import assert from "node:assert/strict";
import {
  type Config,
  CONFIG_DOCS_URL,
  CONFIG_SCHEMA,
  ConfigError,
  defineSchema,
  envVarName,
  formattedConfigReference,
  int,
  ints,
  loadConfig,
  type LoadConfigOptions,
  loadConfigWith,
  num,
  parseBytes,
  parseDuration,
  renderConfigReference,
} from "../infra/config.ts";

const ROOT = new URL("../", import.meta.url);

/** Loads with nothing from the real process: no env, no args, fixed host name. */
function load(opts: LoadConfigOptions = {}, warnings: string[] = []): Config {
  return loadConfig({
    env: {},
    args: [],
    hostname: () => "testhost",
    onWarning: (w) => warnings.push(w),
    ...opts,
  });
}

/** Writes `text` to a temporary .toml file and passes its path to `fn`. */
function withToml<T>(text: string, fn: (path: string) => T): T {
  const path = Deno.makeTempFileSync({ prefix: "goim-config-", suffix: ".toml" });
  try {
    Deno.writeTextFileSync(path, text);
    return fn(path);
  } finally {
    Deno.removeSync(path);
  }
}

/** Asserts that loading fails with a ConfigError whose message contains every fragment. */
function assertConfigError(fn: () => unknown, ...fragments: string[]): ConfigError {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
  for (const f of fragments) {
    assert.ok(error.message.includes(f), `message lacks ${JSON.stringify(f)}:\n${error.message}`);
  }
  return error;
}

Deno.test("defaults are goim's and typed: durations in ms, sizes in bytes, lists frozen", () => {
  const cfg = load();
  assert.equal(cfg.mode, "embedded");
  assert.equal(cfg.node.id, "testhost", "empty node.id is derived from the host name");
  assert.deepEqual(cfg.comet.tcp.bind, ["0.0.0.0:3101"]);
  assert.deepEqual(cfg.comet.websocket.bind, ["0.0.0.0:3102"]);
  assert.deepEqual(cfg.comet.websocket.tls_bind, []);
  // Internal and push ports are loopback by default (hardening): only the
  // client-facing comet listeners face the network.
  assert.equal(cfg.comet.grpc.bind, "127.0.0.1:3109");
  assert.equal(cfg.logic.http.bind, "127.0.0.1:3111");
  assert.equal(cfg.logic.grpc.bind, "127.0.0.1:3119");
  assert.equal(cfg.logic.http.insecure, false);
  assert.equal(cfg.grpc.token, "");
  assert.equal(cfg.comet.limits.max_ops, 256);
  assert.equal(cfg.comet.limits.input_buffer, 64 * 1024);
  assert.equal(cfg.http.header_timeout, 10_000);
  assert.deepEqual(cfg.comet.logic_addrs, ["127.0.0.1:3119"]);
  assert.equal(cfg.protocol.max_body, 4096);
  assert.equal(cfg.comet.handshake_timeout, 8000);
  assert.equal(cfg.comet.heartbeat_interval, 4 * 60_000);
  assert.equal(cfg.comet.heartbeat_max, 2);
  assert.equal(cfg.comet.bucket.count, 32);
  assert.equal(cfg.comet.send_queue.max_bytes, 1024 * 1024);
  assert.equal(cfg.comet.send_queue.policy, "disconnect");
  assert.equal(cfg.job.comet_lanes, 32);
  assert.equal(cfg.job.lane_queue, 1024);
  assert.equal(cfg.job.room.batch, 256);
  assert.equal(cfg.job.room.window, 20);
  assert.equal(cfg.queue.kafka.topic, "goim-push-topic");
  assert.equal(cfg.queue.kafka.group, "goim-push-group-job");
  assert.equal(cfg.logic.nodes.region_weight, 1.6);
  assert.equal(cfg.metrics.enabled, true);
  assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.comet.tcp));
  assert.ok(Object.isFrozen(cfg.comet.tcp.bind));
  assert.throws(() => {
    (cfg.comet as { weight: number }).weight = 1;
  }, TypeError);
  // Compile-time: the type follows the schema (these lines fail `deno check` if it drifts).
  const bind: readonly string[] = cfg.comet.tcp.bind;
  const mode: "embedded" | "distributed" = cfg.mode;
  const alg: "HS256" | "RS256" = cfg.logic.auth.jwt.algorithm;
  assert.ok(bind && mode && alg);
});

Deno.test("an explicit node.id is kept", () => {
  assert.equal(load({ args: ["--set", "node.id=comet-7"] }).node.id, "comet-7");
});

Deno.test("file overrides defaults: tables, dotted keys, units, goim-style :port", () => {
  const toml = `
mode = "embedded"

[comet]
weight = 5
handshake_timeout = "1m30s"
send_queue.max_bytes = "256KiB"

[comet.tcp]
bind = [":4101", "127.0.0.1:4201"]
sndbuf = 1024
keepalive = true

[logic.nodes]
region_weight = 2

[job.room]
window = "0"
`;
  const cfg = withToml(toml, (file) => load({ file }));
  assert.equal(cfg.comet.weight, 5);
  assert.equal(cfg.comet.handshake_timeout, 90_000);
  assert.equal(cfg.comet.send_queue.max_bytes, 256 * 1024);
  assert.deepEqual(cfg.comet.tcp.bind, ["0.0.0.0:4101", "127.0.0.1:4201"]);
  assert.equal(cfg.comet.tcp.sndbuf, 1024);
  assert.equal(cfg.comet.tcp.keepalive, true);
  assert.equal(cfg.logic.nodes.region_weight, 2);
  assert.equal(cfg.job.room.window, 0);
  assert.equal(cfg.comet.heartbeat_max, 2, "keys absent from the file keep their default");
});

Deno.test("environment overrides: GOIM_ + path with . as __; lists comma or JSON", () => {
  assert.equal(envVarName("comet.tcp.bind"), "GOIM_COMET__TCP__BIND");
  assert.equal(envVarName("comet.handshake_timeout"), "GOIM_COMET__HANDSHAKE_TIMEOUT");
  const cfg = load({
    env: {
      GOIM_COMET__TCP__BIND: "0.0.0.0:4101, 0.0.0.0:4102",
      GOIM_COMET__WEBSOCKET__BIND: '["0.0.0.0:4103"]',
      GOIM_COMET__HANDSHAKE_TIMEOUT: "3s",
      GOIM_COMET__TCP__KEEPALIVE: "1",
      GOIM_PROTOCOL__MAX_BODY: "8KiB",
      GOIM_LOGIC__AUTH__API_KEYS: "",
      GOIM_MODE: "embedded",
      PATH: "/usr/bin",
    },
  });
  assert.deepEqual(cfg.comet.tcp.bind, ["0.0.0.0:4101", "0.0.0.0:4102"]);
  assert.deepEqual(cfg.comet.websocket.bind, ["0.0.0.0:4103"]);
  assert.equal(cfg.comet.handshake_timeout, 3000);
  assert.equal(cfg.comet.tcp.keepalive, true);
  assert.equal(cfg.protocol.max_body, 8192);
  assert.deepEqual(cfg.logic.auth.api_keys, []);
});

Deno.test("every key's env var maps back to exactly that key", () => {
  const names = Object.keys(CONFIG_SCHEMA).map(envVarName);
  assert.equal(new Set(names).size, names.length);
  assert.ok(!names.includes("GOIM_CONFIG"));
});

Deno.test("flags: --set KEY=VALUE and --set=KEY=VALUE, --config PATH and --config=PATH", () => {
  const cfg = load({
    args: ["--set", "comet.bucket.count=64", "--set=comet.tcp.bind=0.0.0.0:5101,0.0.0.0:5102"],
  });
  assert.equal(cfg.comet.bucket.count, 64);
  assert.deepEqual(cfg.comet.tcp.bind, ["0.0.0.0:5101", "0.0.0.0:5102"]);
  withToml(`comet.weight = 7`, (file) => {
    assert.equal(load({ args: ["--config", file] }).comet.weight, 7);
    assert.equal(load({ args: [`--config=${file}`] }).comet.weight, 7);
    assert.equal(load({ env: { GOIM_CONFIG: file } }).comet.weight, 7);
  });
});

Deno.test("precedence: default < file < env < flag", () => {
  withToml(`[comet]\nweight = 1`, (file) => {
    const env = { GOIM_COMET__WEIGHT: "2" };
    const flag = ["--set", "comet.weight=3"];
    assert.equal(load().comet.weight, 10);
    assert.equal(load({ file }).comet.weight, 1);
    assert.equal(load({ file, env }).comet.weight, 2);
    assert.equal(load({ file, env, args: flag }).comet.weight, 3);
    assert.equal(load({ env, args: flag }).comet.weight, 3);
    assert.equal(load({ file, args: flag }).comet.weight, 3);
  });
});

Deno.test("file choice: --config beats GOIM_CONFIG beats the file option", () => {
  withToml(
    `comet.weight = 1`,
    (a) =>
      withToml(`comet.weight = 2`, (b) =>
        withToml(`comet.weight = 3`, (c) => {
          assert.equal(load({ file: c }).comet.weight, 3);
          assert.equal(load({ file: c, env: { GOIM_CONFIG: b } }).comet.weight, 2);
          assert.equal(
            load({ file: c, env: { GOIM_CONFIG: b }, args: ["--config", a] }).comet.weight,
            1,
          );
        })),
  );
});

Deno.test("unknown key in a file: rejected with its line and a suggestion", () => {
  withToml(`mode = "embedded"\n\n[comet.tcp]\nbnd = [":3101"]\n`, (file) => {
    const e = assertConfigError(
      () => load({ file }),
      `${file}:4`,
      `unknown key "comet.tcp.bnd"`,
      `did you mean "comet.tcp.bind"?`,
    );
    assert.equal(e.issues.length, 1);
    assert.equal(e.issues[0].key, "comet.tcp.bnd");
  });
});

Deno.test("goim-style names get pointed at the right key", () => {
  withToml(`[comet]\nhandshakeTimeout = "8s"\n`, (file) => {
    assertConfigError(() => load({ file }), `did you mean "comet.handshake_timeout"?`);
  });
  withToml(`[tcp]\nbind = [":3101"]\n`, (file) => {
    assertConfigError(() => load({ file }), `${file}:1`, `did you mean "comet.tcp"?`);
  });
  withToml(`[bogus]\nthing = 1\n`, (file) => {
    const e = assertConfigError(() => load({ file }), `unknown key "bogus"`);
    assert.ok(!e.message.includes("did you mean"), e.message);
  });
});

Deno.test("wrong types name the key, the file line and what was expected", () => {
  const cases: Array<[string, string, string[]]> = [
    [
      "comet.tcp.bind",
      `[comet.tcp]\nbind = "0.0.0.0:3101"`,
      [`:2:`, `comet.tcp.bind: expected a list of "host:port" addresses`, `got "0.0.0.0:3101"`],
    ],
    [
      "comet.bucket.count",
      `[comet.bucket]\ncount = "32"`,
      ["comet.bucket.count: expected an integer from 1 to 4096", `got "32"`],
    ],
    ["comet.weight", `comet.weight = 1.5`, ["expected an integer", "got 1.5"]],
    [
      "comet.tcp.keepalive",
      `comet.tcp.keepalive = "yes"`,
      ["comet.tcp.keepalive: expected true or false"],
    ],
    ["mode", `mode = "embeded"`, [
      `mode: expected one of "embedded", "distributed"`,
      `did you mean "embedded"?`,
    ]],
    ["mode", `mode = "distrib"`, [`did you mean "distributed"?`]],
    ["comet", `comet = 1`, ["comet: expected a table of settings ([comet]), got 1"]],
    [
      "comet.tcp.bind",
      `comet.tcp.bind = ["0.0.0.0"]`,
      ['item 1 "0.0.0.0" is not a "host:port" address'],
    ],
    [
      "queue.kafka.brokers",
      `queue.kafka.brokers = [":9092"]`,
      ["the host is missing"],
    ],
    ["redis.url", `redis.url = "http://x"`, ["expected a redis:// or rediss:// URL"]],
  ];
  for (const [key, toml, fragments] of cases) {
    withToml(toml, (file) => {
      const e = assertConfigError(() => load({ file }), file, ...fragments);
      assert.equal(e.issues[0].key, key);
    });
  }
});

Deno.test("out-of-range values state the range", () => {
  withToml(`comet.bucket.count = 0`, (file) => {
    assertConfigError(
      () => load({ file }),
      `${file}:1`,
      "expected an integer from 1 to 4096, got 0",
    );
  });
  assertConfigError(
    () => load({ env: { GOIM_COMET__SEND_QUEUE__MAX_BYTES: "8" } }),
    "env GOIM_COMET__SEND_QUEUE__MAX_BYTES",
    "comet.send_queue.max_bytes",
    "from 1KiB to 1GiB",
  );
  assertConfigError(
    () => load({ args: ["--set", "comet.handshake_timeout=0"] }),
    "flag --set comet.handshake_timeout=0",
    "of at least 1ms",
  );
});

Deno.test("bad durations and sizes explain the syntax", () => {
  withToml(`comet.handshake_timeout = "8 sec"`, (file) => {
    assertConfigError(
      () => load({ file }),
      "comet.handshake_timeout: expected a duration",
      `got "8 sec" (units: ms, s, m, h`,
    );
  });
  withToml(`comet.handshake_timeout = 8`, (file) => {
    assertConfigError(() => load({ file }), `a bare number has no unit: write "8s" or "8ms"`);
  });
  withToml(`comet.send_queue.max_bytes = "1 megabyte"`, (file) => {
    assertConfigError(
      () => load({ file }),
      "comet.send_queue.max_bytes: expected a size",
      "units: B; KiB, MiB, GiB",
    );
  });
});

Deno.test("TOML syntax errors carry the line number", () => {
  withToml(`mode = "embedded"\n[comet\nweight = 1\n`, (file) => {
    const e = assertConfigError(() => load({ file }), `${file}:2`, "invalid TOML");
    assert.equal(e.issues[0].source.kind, "file");
  });
});

Deno.test("a missing file is an error naming where its path came from", () => {
  assertConfigError(
    () => load({ args: ["--config", "/nonexistent/goim.toml"] }),
    "flag --config /nonexistent/goim.toml",
    "not found",
  );
  assertConfigError(
    () => load({ env: { GOIM_CONFIG: "/nonexistent/goim.toml" } }),
    "env GOIM_CONFIG",
  );
});

Deno.test("invalid env values are errors; unknown GOIM_ variables only warn", () => {
  assertConfigError(
    () => load({ env: { GOIM_COMET__BUCKET__COUNT: "many" } }),
    "env GOIM_COMET__BUCKET__COUNT: comet.bucket.count: expected an integer",
    `got "many"`,
  );
  const warnings: string[] = [];
  const cfg = load({ env: { GOIM_COMET_TCP_BIND: "0.0.0.0:1", GOIM_WHATEVER: "x" } }, warnings);
  assert.deepEqual(cfg.comet.tcp.bind, ["0.0.0.0:3101"], "unknown variables are ignored");
  assert.equal(warnings.length, 2);
  assert.match(warnings.join("\n"), /GOIM_COMET_TCP_BIND .*did you mean GOIM_COMET__TCP__BIND\?/);
});

Deno.test("bad flags: unknown key, missing '=', missing value, unknown argument", () => {
  assertConfigError(
    () => load({ args: ["--set", "comet.tcp.bnd=x"] }),
    "flag --set comet.tcp.bnd=x",
    `did you mean "comet.tcp.bind"?`,
  );
  assertConfigError(() => load({ args: ["--set", "comet.weight"] }), "expected --set KEY=VALUE");
  assertConfigError(() => load({ args: ["--config"] }), "--config needs a value");
  assertConfigError(() => load({ args: ["--verbose"] }), "flag --verbose: unknown argument");
  assert.equal(
    load({ args: ["--role", "comet", "--set", "comet.weight=4"], ignoreUnknownArgs: true })
      .comet.weight,
    4,
  );
});

Deno.test("all problems are reported at once, one line each", () => {
  withToml(`comet.weight = "x"\nnope = 1\n`, (file) => {
    const e = assertConfigError(
      () => load({ file, env: { GOIM_COMET__BUCKET__COUNT: "0" }, args: ["--set", "mode=x"] }),
      "(4 problems)",
    );
    assert.deepEqual(e.issues.map((i) => i.source.kind), ["file", "file", "env", "flag"]);
    assert.equal(e.message.split("\n").length, 5);
  });
});

Deno.test("cross-key rules", () => {
  assertConfigError(
    () => load({ args: ["--set", "mode=distributed"] }),
    `queue.engine: mode "distributed" needs queue.engine = "kafka"`,
    `registry.engine`,
  );
  const warnings: string[] = [];
  load({
    env: {
      GOIM_MODE: "distributed",
      GOIM_QUEUE__ENGINE: "kafka",
      GOIM_REGISTRY__ENGINE: "redis",
    },
  }, warnings);
  assert.match(warnings.join(), /sessions\.engine.*single logic process/);
  assertConfigError(
    () => load({ env: { GOIM_COMET__WEBSOCKET__TLS_BIND: "0.0.0.0:3103" } }),
    "env GOIM_COMET__WEBSOCKET__TLS_BIND: comet.websocket.tls_bind: WSS is enabled",
  );
  assertConfigError(
    () => load({ args: ["--set", "logic.auth.mode=jwt"] }),
    "needs logic.auth.jwt.secret",
  );
  const secret32 = "0123456789abcdef0123456789abcdef";
  assert.equal(
    load({ args: ["--set", "logic.auth.mode=jwt", "--set", `logic.auth.jwt.secret=${secret32}`] })
      .logic.auth.mode,
    "jwt",
  );
  assertConfigError(
    () =>
      load({
        args: [
          "--set",
          "logic.auth.mode=jwt",
          "--set",
          `logic.auth.jwt.secret=${secret32.slice(1)}`,
        ],
      }),
    "flag --set logic.auth.jwt.secret=",
    "logic.auth.jwt.secret: the HS256 secret is 31 bytes; at least 32 are needed",
  );
  assertConfigError(
    () => load({ args: ["--set", "comet.route_heartbeat_interval=30m"] }),
    "comet.route_heartbeat_interval: must be below logic.route_ttl",
  );
  assertConfigError(
    () => load({ args: ["--set", "comet.send_queue.max_bytes=32KiB"] }),
    "logic.http.max_body",
  );
});

Deno.test("parseDuration and parseBytes", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("8s"), 8000);
  assert.equal(parseDuration("4m"), 240_000);
  assert.equal(parseDuration("1h1m1s1ms"), 3_661_001);
  assert.equal(parseDuration("1.1s"), 1100);
  assert.equal(parseDuration("0"), 0);
  for (const bad of ["", "8", "8 s", "-1s", "1.5ms", "1d", "s"]) {
    assert.throws(() => parseDuration(bad), RangeError, bad);
  }
  assert.equal(parseBytes("4096"), 4096);
  assert.equal(parseBytes("64KiB"), 65536);
  assert.equal(parseBytes("1MiB"), 1048576);
  assert.equal(parseBytes("1.5GiB"), 1.5 * 2 ** 30);
  assert.equal(parseBytes("2KB"), 2000);
  assert.equal(parseBytes("10 B"), 10);
  assert.equal(parseBytes("1kib"), 1024);
  for (const bad of ["", "k", "1.5", "-1", "1 kilobyte", "1KiBs"]) {
    assert.throws(() => parseBytes(bad), RangeError, bad);
  }
});

Deno.test("the schema engine works for any schema (int lists, numbers)", () => {
  const schema = defineSchema({
    "app.ports": ints([80], "Ports.", { min: 1, max: 65535 }),
    "app.ratio": num(0.5, "Ratio.", { min: 0, max: 1 }),
    "app.n": int(1, "N."),
  });
  const cfg = loadConfigWith(schema, {
    env: { GOIM_APP__PORTS: "81,82" },
    args: ["--set", "app.ratio=0.25"],
  });
  assert.deepEqual(cfg.app.ports, [81, 82]);
  assert.equal(cfg.app.ratio, 0.25);
  assert.equal(cfg.app.n, 1);
  withToml(`app.ports = [1, 70000]`, (file) => {
    assertConfigError(
      () => loadConfigWith(schema, { file, env: {}, args: [] }),
      "app.ports: expected a list of integers like [1, 2], each from 1 to 65535",
      "item 2 70000",
    );
  });
  assertConfigError(
    () => loadConfigWith(schema, { env: {}, args: ["--set", "app.ratio=2"] }),
    'app.ratio: expected a number from 0 to 1, got "2"',
  );
});

Deno.test("defineSchema rejects shapes the loader could not map", () => {
  assert.throws(() => defineSchema({ "a.B": int(1, "x") }), /snake_case/);
  assert.throws(() => defineSchema({ "a__b": int(1, "x") }), /snake_case/);
  assert.throws(() => defineSchema({ "a": int(1, "x"), "a.b": int(1, "x") }), /both a key/);
  assert.throws(() => defineSchema({ "config.x": int(1, "x") }), /reserved/);
  assert.throws(() => int(0, "x", { min: 1 }), /default 0 is not an integer of at least 1/);
});

Deno.test("docs/CONFIG.md is the rendering of the schema", async () => {
  const expected = await formattedConfigReference();
  let actual = "";
  try {
    actual = await Deno.readTextFile(CONFIG_DOCS_URL);
  } catch {
    // Reported below.
  }
  assert.ok(
    actual === expected,
    "docs/CONFIG.md is out of date; regenerate it with:\n" +
      "  ./scripts/deno run -A infra/config.ts --write-docs",
  );
  const raw = renderConfigReference();
  for (const key of Object.keys(CONFIG_SCHEMA)) assert.ok(raw.includes(`\`${key}\``), key);
});

Deno.test("example configs load without errors or warnings", () => {
  for (const name of ["embedded.toml", "distributed.toml"]) {
    const warnings: string[] = [];
    const cfg = load({ file: new URL(`config/${name}`, ROOT).pathname }, warnings);
    assert.deepEqual(warnings, [], name);
    assert.equal(cfg.mode, name.replace(".toml", ""));
  }
  const dist = load({ file: new URL("config/distributed.toml", ROOT).pathname });
  assert.equal(dist.queue.engine, "kafka");
  assert.equal(dist.sessions.engine, "redis");
  assert.equal(dist.registry.engine, "redis");
});

Deno.test("loadConfigOrExit prints the error and exits with code 2", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "infra/config.ts", "--print", "--set", "comet.bucket.count=0"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.match(stderr, /flag --set comet\.bucket\.count=0: comet\.bucket\.count: expected/);
  assert.equal(new TextDecoder().decode(out.stdout), "");
});

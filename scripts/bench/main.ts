/**
 * The bench tool's command line: a goim-style load generator and end-to-end
 * benchmark for this server (BENCHMARKS.md, "Load generator").
 *
 * ```sh
 * ./scripts/deno run -A scripts/bench/main.ts <scenario> [--clients N] [--ws-ratio 0.5]
 *     [--workers K] [--rate R] [--duration 30s] [--rooms M] [--out bench-results/NAME] ...
 * ./scripts/deno run -A scripts/bench/main.ts sustained --room-rate 20 --mid-rate 200
 * ./scripts/deno run -A scripts/bench/main.ts push_room --sweep 10,20,40,80
 * ./scripts/deno run -A scripts/bench/main.ts push_room --mode distributed --comets 2
 * ./scripts/deno run -A scripts/bench/main.ts render A.json B.json --svg sweep.svg
 * ./scripts/deno run -A scripts/bench/main.ts --help
 * ```
 *
 * Every scenario runs against the embedded server (one child process, the
 * default), a server already running (`--http …`), or the distributed
 * topology the tool starts itself (`--mode distributed --comets N`: logic,
 * job and N comets as processes on Kafka and Redis); with several comets
 * the swarm is spread over all of them so every room spans every comet.
 * Each phase reports every server process's CPU, RSS and event-loop lag
 * (read every second from its admin /metrics).
 *
 * Writes NAME.json (the full report), NAME.txt (the summary, also printed)
 * and NAME.svg (the chart over time; a `--sweep` also NAME.sweep.svg, frames
 * per write against offered load). Exits 0 when the run worked — whatever
 * the figures — 1 when the tool broke (a worker or the server crashed,
 * nothing was delivered), 2 on a usage error.
 *
 * @module
 */

import { type BenchOptions, type BenchReport, type ExternalServer, runBench } from "./run.ts";
import { defaultWorkers, type PhaseParams, SCENARIOS, sweepPhases } from "./scenarios.ts";
import { summarize } from "./report.ts";
import { renderChart, renderSweepChart } from "./svg.ts";
import { type DistributedCluster, startDistributed } from "../../tests/e2e/cluster.ts";

/** Brokers and Redis of `scripts/services.sh` (docs/SERVICES.md). */
const KAFKA_BROKERS = "127.0.0.1:9092";
const REDIS_URL = "redis://127.0.0.1:6379";

/**
 * Runs `scripts/services.sh up redis` and `up kafka` (idempotent: running
 * services are left alone; discovery is not needed by this topology).
 */
async function servicesUp(): Promise<void> {
  const root = new URL("../../", import.meta.url).pathname;
  for (const service of ["redis", "kafka"]) {
    const out = await new Deno.Command(`${root}scripts/services.sh`, {
      args: ["up", service],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr);
      throw new Error(`scripts/services.sh up ${service} failed:\n${err}`);
    }
  }
}

/**
 * The bench target of a distributed cluster: the swarm spread over every
 * comet, pushes to logic, and every role process (logic, job, each comet)
 * measured on its own, its loop lag read from its admin endpoint.
 */
export function distributedTarget(c: DistributedCluster): ExternalServer {
  const admin = (p: { adminPort: number }) => `http://127.0.0.1:${p.adminPort}`;
  const comets = c.cometProcs.map((p, i) => ({
    name: p.name,
    tcp: c.comets[i].tcp,
    ws: c.comets[i].ws,
    pid: p.pid,
    admin: admin(p),
  }));
  return {
    http: c.http,
    tcp: comets[0].tcp,
    ws: comets[0].ws,
    serverPid: comets[0].pid,
    cometAdmin: comets[0].admin,
    comets,
    roles: [c.logic, c.job, ...c.cometProcs].map((p) => ({
      name: p.name,
      pid: p.pid!,
      admin: admin(p),
    })),
    mode: "distributed",
  };
}

/** A usage error: printed with the help hint, exit code 2. */
export class UsageError extends Error {}

/**
 * Parses a duration: `30s`, `500ms`, `2m`, or a bare number of seconds.
 *
 * @example
 * ```ts
 * parseDurationArg("1.5s"); // 1500
 * parseDurationArg("20"); // 20000
 * ```
 */
export function parseDurationArg(s: string): number {
  const m = s.trim().match(/^(\d+(?:\.\d+)?)(ms|s|m)?$/);
  if (!m) throw new UsageError(`not a duration: ${s} (use 30s, 500ms, 2m)`);
  const v = Number(m[1]);
  return m[2] === "ms" ? v : m[2] === "m" ? v * 60_000 : v * 1000;
}

/** Parsed command line. */
export interface Cli {
  /** The run's options. */
  options: BenchOptions;
  /** Output path without extension. */
  out: string;
  /** Extra SVG path (e.g. docs/img/bench-push.svg). */
  svg?: string;
  /** No progress lines. */
  quiet: boolean;
  /** `--mode distributed`: start logic, job and this many comets as processes. */
  distributed?: { comets: number; cpuProfDir?: string };
}

/** `--room-layout`: spread (default) or pinned. */
function roomLayout(v: string | undefined): "spread" | "pinned" {
  if (v === undefined || v === "spread") return "spread";
  if (v === "pinned") return "pinned";
  throw new UsageError(`--room-layout must be spread or pinned, got ${JSON.stringify(v)}`);
}

const FLAGS = new Set([
  "clients",
  "ws-ratio",
  "streams",
  "workers",
  "rate",
  "duration",
  "rooms",
  "room-layout",
  "out",
  "by",
  "heartbeat",
  "keys-per-push",
  "size",
  "inflight",
  "connect-concurrency",
  "drain",
  "settle",
  "auth-timeout",
  "http",
  "tcp",
  "ws",
  "server-pid",
  "comet-admin",
  "api-key",
  "server-set",
  "svg",
  "mode",
  "comets",
  "cpu-prof",
  "room-rate",
  "mid-rate",
  "sweep",
]);

/**
 * Parses `--sweep`'s list of rates: positive numbers, comma separated, at
 * most 50 (each one is a phase of `--duration`).
 *
 * @example
 * ```ts
 * parseRates("10,20,40"); // [10, 20, 40]
 * ```
 */
export function parseRates(s: string): number[] {
  const parts = s.split(",").map((x) => x.trim());
  if (parts.every((x) => x === "")) throw new UsageError(`--sweep needs rates, e.g. 10,20,40`);
  if (parts.length > 50) throw new UsageError(`--sweep: at most 50 rates (${parts.length} given)`);
  return parts.map((x) => {
    const v = Number(x.replaceAll("_", ""));
    if (!(Number.isFinite(v) && v > 0)) throw new UsageError(`--sweep: not a rate > 0: ${x}`);
    return v;
  });
}

/**
 * Parses `argv` into run options (throws {@linkcode UsageError}).
 *
 * @example
 * ```ts
 * parseCli(["push", "--rate", "1000", "--duration=10s"]).options.phases[0].rate; // 1000
 * ```
 */
export function parseCli(argv: string[], now = new Date()): Cli {
  const flags = new Map<string, string[]>();
  const pos: string[] = [];
  let quiet = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quiet" || a === "-q") {
      quiet = true;
      continue;
    }
    if (!a.startsWith("--")) {
      pos.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (!FLAGS.has(name)) throw new UsageError(`unknown flag --${name}`);
    let value: string;
    if (eq >= 0) value = a.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
      value = argv[++i];
    }
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  if (pos.length !== 1) throw new UsageError("name one scenario");
  const scenario = pos[0];
  const sc = SCENARIOS[scenario];
  if (!sc) {
    throw new UsageError(
      `unknown scenario ${scenario} (one of ${Object.keys(SCENARIOS).join(", ")})`,
    );
  }
  const get = (n: string) => flags.get(n)?.at(-1);
  const num = (n: string, def: number): number => {
    const v = get(n);
    if (v === undefined) return def;
    const x = Number(v.replaceAll("_", ""));
    if (!Number.isFinite(x)) throw new UsageError(`--${n}: not a number: ${v}`);
    return x;
  };
  const dur = (n: string, def: number) => {
    const v = get(n);
    return v === undefined ? def : parseDurationArg(v);
  };
  const by = get("by") ?? "keys";
  if (by !== "keys" && by !== "mids") throw new UsageError(`--by must be keys or mids`);

  const clients = num("clients", sc.clients);
  const rate = num("rate", sc.rate);
  const durationMs = dur("duration", sc.durationMs);
  if (sc.roomRate === undefined && (get("room-rate") || get("mid-rate"))) {
    throw new UsageError("--room-rate and --mid-rate are for the sustained scenario");
  }
  if (sc.roomRate !== undefined && get("rate")) {
    throw new UsageError(`${scenario}: use --room-rate and --mid-rate, not --rate`);
  }
  const params: PhaseParams = {
    rate,
    durationMs,
    by,
    roomRate: num("room-rate", sc.roomRate ?? 0),
    midRate: num("mid-rate", sc.midRate ?? 0),
  };
  const sweepArg = get("sweep");
  const sweep = sweepArg === undefined ? undefined : parseRates(sweepArg);
  if (sweep && get("rate")) throw new UsageError("--sweep gives the rates: drop --rate");
  const phases = sweep ? sweepPhases(sc, sweep, params) : sc.phases(params);
  if (!phases) {
    throw new UsageError(`--sweep needs a scenario with one push phase, not ${scenario}`);
  }
  let external: ExternalServer | undefined;
  const http = get("http");
  if (http) {
    const tcp = get("tcp") ?? "";
    external = {
      http: http.replace(/\/$/, ""),
      tcp: tcp === "" || tcp.startsWith("tcp://") ? tcp : `tcp://${tcp}`,
      ws: get("ws") ?? "",
    };
    const pid = get("server-pid");
    if (pid) external.serverPid = num("server-pid", 0);
    const admin = get("comet-admin");
    if (admin) external.cometAdmin = admin.replace(/\/$/, "");
  } else if (get("tcp") || get("ws") || get("server-pid")) {
    throw new UsageError("--tcp, --ws and --server-pid target a running server: add --http too");
  }
  const mode = get("mode") ?? "embedded";
  if (mode !== "embedded" && mode !== "distributed") {
    throw new UsageError("--mode must be embedded or distributed");
  }
  if (mode === "distributed" && http) {
    throw new UsageError("--mode distributed starts its own server: drop --http");
  }
  if (mode !== "distributed" && (get("comets") || get("cpu-prof"))) {
    throw new UsageError("--comets and --cpu-prof need --mode distributed");
  }
  const comets = num("comets", 1);
  if (!Number.isInteger(comets) || comets < 1 || comets > 16) {
    throw new UsageError("--comets must be an integer in 1..16");
  }
  const wsRatio = num("ws-ratio", sc.wsRatio);
  if (external) {
    if (wsRatio < 1 && !external.tcp) throw new UsageError("--tcp is needed (ws ratio < 1)");
    if (wsRatio > 0 && !external.ws) throw new UsageError("--ws is needed (ws ratio > 0)");
  }
  const streamsRatio = num("streams", 0);
  const options: BenchOptions = {
    scenario,
    clients,
    wsRatio,
    streamsRatio,
    workers: num("workers", sc.workers || defaultWorkers(clients)),
    rooms: num("rooms", sc.rooms),
    roomLayout: roomLayout(get("room-layout")),
    phases,
    heartbeatMs: dur("heartbeat", sc.heartbeatMs),
    connectConcurrency: num("connect-concurrency", 100),
    authTimeoutMs: dur("auth-timeout", 30_000),
    bodyBytes: num("size", 0),
    keysPerPush: num("keys-per-push", 1),
    inflight: num("inflight", 64),
    drainMs: dur("drain", 5_000),
    settleMs: dur("settle", 2_000),
    external,
    serverSet: flags.get("server-set") ?? [],
    apiKey: get("api-key"),
    ...(sweep ? { sweep } : {}),
  };
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const out = (get("out") ?? `bench-results/${scenario}-${stamp}`).replace(/\.(json|txt|svg)$/, "");
  return {
    options,
    out,
    svg: get("svg"),
    quiet,
    distributed: mode === "distributed" ? { comets, cpuProfDir: get("cpu-prof") } : undefined,
  };
}

/** The `--help` text. */
export function helpText(): string {
  const names = Object.entries(SCENARIOS)
    .map(([n, s]) =>
      `  ${n.padEnd(11)} ${s.description}\n${" ".repeat(14)}defaults: ${s.clients} clients, ` +
      `ws ratio ${s.wsRatio}, ${s.rate ? `${s.rate}/s, ` : ""}${
        s.roomRate ? `room ${s.roomRate}/s + mids ${s.midRate}/s, ` : ""
      }${s.durationMs / 1000} s`
    )
    .join("\n");
  return `Usage: ./scripts/deno run -A scripts/bench/main.ts <scenario> [flags]

Scenarios:
${names}

Swarm:
  --clients N              clients (default per scenario)
  --ws-ratio R             share of WebSocket clients, 0..1
  --streams R              share of clients that opt in to streams (positions,
                           recovery, acks: docs/STREAMS.md), 0..1 (0)
  --workers K              worker processes (default: ≥ 2, ~7,000 clients each)
  --rooms M                rooms the clients are spread over (client i → room i mod M)
  --room-layout L          spread (default: every room on every comet) | pinned (room r's
                           members all on comet r mod N: comets without members get nothing)
  --heartbeat D            client heartbeat period (30s; client scenario 5s)
  --connect-concurrency N  connects in flight per worker (100)
  --auth-timeout D         connect → op 8 limit per client (30s)
Pushes:
  --rate R                 pushes per second (token bucket)
  --duration D             push window per phase (30s, 500ms, 2m; bare = seconds)
  --room-rate R            sustained: room pushes per second (20), at the same time as
  --mid-rate R             sustained: mid pushes per second (200); latency reported per driver
  --sweep R1,R2,...        one phase per rate, in order (scenarios with one push phase):
                           delivered/s, p50/p99 and frames per write per rate, and the chart
                           PATH.sweep.svg of frames per write against offered msgs/s
  --by keys|mids           push scenario: target connection keys or user ids (keys)
  --keys-per-push K        keys or mids per request (1)
  --size B                 pad bodies to B bytes (default ≈ 40)
  --inflight N             push requests in flight at most (64)
  --drain D                longest wait for a phase's last messages (5s; ends sooner
                           once nothing arrived for a quarter of it, at least 1.5 s)
  --settle D               pause after connecting before reading RSS (2s)
Server (default: start main.ts's embedded server as a child on free loopback ports):
  --mode embedded|distributed
                           distributed: scripts/services.sh up (Redis, Kafka), then logic, job
                           and --comets N (1) comets as processes on a fresh topic; the swarm
                           is spread over every comet (round robin within each room and
                           transport: every room spans every comet), pushes go to logic
                           Every mode: CPU, RSS and event-loop lag (p99/max of
                           goim_event_loop_lag_seconds, read every second from the admin
                           /metrics) of each server process, per phase
  --cpu-prof DIR           distributed: V8 CPU profile of every role (written at its exit)
  --server-set k=v         extra --set for that server (repeatable; every role)
  --http URL --tcp HOST:PORT --ws URL [--server-pid PID] [--comet-admin URL] [--api-key K]
                           target a running server instead
Output:
  --out PATH               PATH.json, PATH.txt, PATH.svg (bench-results/<scenario>-<time>)
  --svg PATH               also write the chart here (e.g. docs/img/bench-push.svg)
  --quiet                  no progress lines

Re-render saved reports (summaries to stdout, the chart to PATH):
  ./scripts/deno run -A scripts/bench/main.ts render NAME.json [--svg PATH]
                           the chart over time (default PATH: next to the .json)
  ./scripts/deno run -A scripts/bench/main.ts render A.json [B.json ...] --chart sweep [--svg PATH]
                           frames per write against offered load, one line per report (e.g. an
                           embedded and a distributed sweep); the default chart with two or more
                           reports (default PATH: A.sweep.svg)

Exit: 0 = the run worked (whatever the figures), 1 = the tool broke, 2 = usage.
`;
}

/**
 * Runs `deno fmt` on a chart written into the work tree. The project's
 * `deno fmt --check` covers `.svg` files, and mirroring the formatter's
 * attribute-wrapping rules in the generator would break with any formatter
 * change; formatting with the same pinned binary keeps committed charts
 * check-clean. Best effort: a path outside the tree (or excluded) is left as
 * written.
 */
export async function formatSvg(path: string): Promise<void> {
  try {
    await new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--quiet", path],
      cwd: new URL("../../", import.meta.url).pathname,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
  } catch {
    // no formatter available: the chart is still valid SVG
  }
}

/** Parsed `render` arguments. */
export interface RenderCli {
  /** The report files. */
  files: string[];
  /** `time`: one run over time; `sweep`: frames per write against offered load. */
  chart: "time" | "sweep";
  /** Where the chart goes. */
  svg: string;
}

/**
 * Parses `render <A.json> [B.json …] [--chart time|sweep] [--svg PATH]`:
 * the time chart of one report by default, the sweep chart of several.
 *
 * @example
 * ```ts
 * parseRender(["a.json", "b.json"]); // { files: ["a.json", "b.json"], chart: "sweep", svg: "a.sweep.svg" }
 * ```
 */
export function parseRender(args: string[]): RenderCli {
  const files: string[] = [];
  let chart: string | undefined, svg: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--svg" || a === "--chart") {
      const v = args[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      if (a === "--svg") svg = v;
      else chart = v;
    } else if (a.startsWith("--")) throw new UsageError(`render: unknown flag ${a}`);
    else files.push(a);
  }
  if (!files.length) throw new UsageError("render needs a report .json");
  chart ??= files.length > 1 ? "sweep" : "time";
  if (chart !== "time" && chart !== "sweep") throw new UsageError("--chart must be time or sweep");
  if (chart === "time" && files.length > 1) {
    throw new UsageError("the time chart shows one report: use --chart sweep to overlay");
  }
  const base = files[0].replace(/\.json$/, "");
  return { files, chart, svg: svg ?? `${base}${chart === "sweep" ? ".sweep" : ""}.svg` };
}

/** Writes the report files; returns the paths written. */
export async function writeOutputs(r: BenchReport, out: string, svg?: string): Promise<string[]> {
  const dir = out.includes("/") ? out.slice(0, out.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  const chart = renderChart(r);
  await Deno.writeTextFile(`${out}.json`, JSON.stringify(r, null, 2) + "\n");
  await Deno.writeTextFile(`${out}.txt`, summarize(r));
  await Deno.writeTextFile(`${out}.svg`, chart);
  const paths = [`${out}.json`, `${out}.txt`, `${out}.svg`];
  if (r.options.sweep) {
    await Deno.writeTextFile(`${out}.sweep.svg`, renderSweepChart([r]));
    paths.push(`${out}.sweep.svg`);
  }
  if (svg) {
    if (svg.includes("/")) {
      await Deno.mkdir(svg.slice(0, svg.lastIndexOf("/")), { recursive: true });
    }
    await Deno.writeTextFile(svg, chart);
    await formatSvg(svg);
    paths.push(svg);
  }
  return paths;
}

if (import.meta.main) {
  if (Deno.args.includes("--help") || Deno.args.includes("-h") || Deno.args.length === 0) {
    console.log(helpText());
    Deno.exit(Deno.args.length === 0 ? 2 : 0);
  }
  if (Deno.args[0] === "render") {
    // Re-render saved reports (summaries and a chart) without running anything.
    let r: RenderCli;
    try {
      r = parseRender(Deno.args.slice(1));
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      console.error(`bench: ${e.message} (see --help)`);
      Deno.exit(2);
    }
    const reports = await Promise.all(
      r.files.map(async (f) => JSON.parse(await Deno.readTextFile(f)) as BenchReport),
    );
    await Deno.writeTextFile(
      r.svg,
      r.chart === "sweep" ? renderSweepChart(reports) : renderChart(reports[0]),
    );
    await formatSvg(r.svg);
    for (const report of reports) console.log(summarize(report));
    console.log(`written: ${r.svg}`);
    Deno.exit(0);
  }
  let cli: Cli;
  try {
    cli = parseCli(Deno.args);
  } catch (e) {
    if (e instanceof UsageError || e instanceof RangeError) {
      console.error(`bench: ${e.message} (see --help)`);
      Deno.exit(2);
    }
    throw e;
  }
  const t0 = performance.now();
  const log = cli.quiet
    ? undefined
    : (line: string) =>
      console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(1)}s] ${line}`);
  let report: BenchReport;
  let cluster: DistributedCluster | undefined;
  try {
    let options = cli.options;
    if (cli.distributed) {
      log?.("scripts/services.sh up (Redis, Kafka)");
      await servicesUp();
      log?.(`starting logic, job and ${cli.distributed.comets} comet(s) as processes`);
      cluster = await startDistributed({
        comets: cli.distributed.comets,
        kafkaBrokers: KAFKA_BROKERS,
        redisUrl: REDIS_URL,
        set: ["log.level=warn", ...options.serverSet],
        denoFlags: cli.distributed.cpuProfDir
          ? [`--cpu-prof-dir=${cli.distributed.cpuProfDir}`, "--cpu-prof-md"]
          : [],
      });
      options = { ...options, external: distributedTarget(cluster) };
    }
    report = await runBench({ ...options, log });
  } catch (e) {
    if (e instanceof RangeError) {
      console.error(`bench: ${e.message} (see --help)`);
      await cluster?.stop();
      Deno.exit(2);
    }
    throw e;
  } finally {
    // Every role we started is stopped by its pid, also on failure.
    await cluster?.stop();
  }
  const paths = await writeOutputs(report, cli.out, cli.svg);
  console.log(summarize(report));
  console.log(`written: ${paths.join(", ")}`);
  Deno.exit(report.errors.length ? 1 : 0);
}

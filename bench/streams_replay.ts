/**
 * Replay of missed messages on reconnect (docs/STREAMS.md), both modes:
 * how long a client that missed N pushes to its mid takes, from the start
 * of its reconnect, to have all N (issue 12's target: 1,000 under 50 ms).
 *
 * The server runs in child processes (embedded: scripts/bench/server.ts;
 * distributed: logic, job and a comet on Redis + Kafka, as the bench tool
 * starts them); the one client runs here. Each round: connect with streams
 * on, disconnect, push N numbered messages by mid, wait until the history
 * API shows all N kept, reconnect naming the last position, and time the
 * replay. Rounds are interleaved between the modes; medians are printed.
 *
 * ```sh
 * scripts/services.sh up redis kafka   # distributed mode only
 * ./scripts/deno run -A bench/streams_replay.ts --n 1000 --rounds 5 [--mode embedded|distributed|both]
 * ```
 *
 * @module
 */

import { GoimClient, type StreamPositions } from "../client/mod.ts";
import { startDistributed } from "../tests/e2e/cluster.ts";
import { kafkaTestBrokers } from "../tests/kafka_env.ts";
import { redisTestUrl } from "../tests/redis_env.ts";

const BENCH_OP = 1000;

interface Target {
  name: string;
  http: string;
  tcp: string;
  stop(): Promise<void>;
}

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && Deno.args[i + 1] !== undefined ? Deno.args[i + 1] : def;
}

async function startEmbeddedChild(): Promise<Target> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../scripts/bench/server.ts", import.meta.url).pathname,
      "--max-life-ms=900000",
      "--set",
      "comet.tcp.bind=127.0.0.1:0",
      "--set",
      "comet.websocket.bind=127.0.0.1:0",
      "--set",
      "logic.http.bind=127.0.0.1:0",
      "--set",
      "comet.admin.bind=",
      "--set",
      "logic.admin.bind=",
      "--set",
      "job.admin.bind=",
      "--set",
      "log.level=warn",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("embedded server exited before it was ready");
    buf += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  const ready = JSON.parse(buf.slice(0, buf.indexOf("\n")));
  return {
    name: "embedded",
    http: `http://${ready.http}`,
    tcp: `tcp://${ready.tcp}`,
    stop: async () => {
      await child.stdin.close().catch(() => {});
      await child.status;
    },
  };
}

async function startDistributedTarget(): Promise<Target> {
  const kafka = await kafkaTestBrokers();
  const redis = await redisTestUrl();
  if (kafka.ignore || redis.ignore) throw new Error("distributed mode needs Redis and Kafka up");
  const c = await startDistributed({
    kafkaBrokers: kafka.brokers.join(","),
    redisUrl: redis.url,
    comets: 1,
  });
  return {
    name: "distributed",
    http: c.http,
    tcp: c.comets[0].tcp,
    stop: () => c.stop(),
  };
}

async function push(http: string, mid: number, body: string): Promise<void> {
  const res = await fetch(`${http}/goim/push/mids?operation=${BENCH_OP}&mids=${mid}`, {
    method: "POST",
    body,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`push: HTTP ${res.status} ${text}`);
}

async function historyTop(http: string, mid: number): Promise<number> {
  const res = await fetch(`${http}/goim/history?mid=${mid}&limit=1`);
  const j = await res.json();
  return j.data?.pos ?? 0;
}

/** One round: returns [ms from reconnect start to the Nth message, ms from auth to it]. */
async function round(t: Target, n: number, mid: number): Promise<[number, number]> {
  const token = { mid, key: "", room_id: "", platform: "bench", accepts: [BENCH_OP] };
  const first = new GoimClient({ url: t.tcp, token, streams: true, reconnect: { enabled: false } });
  first.on("error", () => {});
  await first.connect();
  // StreamState follows op 8: the position of the (empty) mid stream comes with it.
  const stream = `mid:${mid}`;
  for (let i = 0; first.positions()[stream] === undefined; i++) {
    if (i > 1000) throw new Error("no StreamState within 5 s");
    await new Promise((r) => setTimeout(r, 5));
  }
  const positions: StreamPositions = first.positions();
  await first.close();
  const top0 = await historyTop(t.http, mid);
  // Sequential in windows of 32: the order of a mid's pushes is the order logic published them.
  for (let i = 0; i < n; i += 32) {
    await Promise.all(
      Array.from({ length: Math.min(32, n - i) }, (_, k) => push(t.http, mid, `m${i + k}`)),
    );
  }
  const deadline = Date.now() + 30_000;
  while ((await historyTop(t.http, mid)) < top0 + n) {
    if (Date.now() > deadline) throw new Error("pushes not all kept within 30 s");
    await new Promise((r) => setTimeout(r, 20));
  }
  const second = new GoimClient({
    url: t.tcp,
    token,
    streams: { positions },
    reconnect: { enabled: false },
  });
  second.on("error", () => {});
  let got = 0, authAt = 0;
  const done = Promise.withResolvers<number>();
  second.on("auth", () => authAt = performance.now());
  second.on("message", (m) => {
    if (m.replayed && ++got === n) done.resolve(performance.now());
  });
  second.on("streams", (ev) => done.reject(new Error(`not recovered: ${ev.reason}`)));
  const t0 = performance.now();
  const stuck = setTimeout(
    () => done.reject(new Error(`replay stuck: ${got} of ${n} after 20 s`)),
    20_000,
  );
  await second.connect();
  const last = await done.promise.finally(() => clearTimeout(stuck));
  await second.close();
  return [last - t0, last - authAt];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

if (import.meta.main) {
  const n = Number(arg("n", "1000"));
  const rounds = Number(arg("rounds", "5"));
  const mode = arg("mode", "both");
  const targets: Target[] = [];
  if (mode === "embedded" || mode === "both") targets.push(await startEmbeddedChild());
  if (mode === "distributed" || mode === "both") targets.push(await startDistributedTarget());
  const results = new Map<string, { total: number[]; sinceAuth: number[] }>();
  try {
    let mid = 900_000_000 + Math.floor(Math.random() * 1_000_000) * 100;
    for (let r = 0; r < rounds; r++) {
      for (const t of targets) {
        const [total, sinceAuth] = await round(t, n, mid++);
        const acc = results.get(t.name) ?? { total: [], sinceAuth: [] };
        acc.total.push(total);
        acc.sinceAuth.push(sinceAuth);
        results.set(t.name, acc);
        console.log(
          `${t.name} round ${r + 1}: ${n} replayed, ${total.toFixed(1)} ms from connect, ` +
            `${sinceAuth.toFixed(1)} ms from op 8`,
        );
      }
    }
  } finally {
    for (const t of targets) await t.stop().catch(() => {});
  }
  for (const [name, acc] of results) {
    console.log(
      `${name}: replay of ${n}: median ${median(acc.total).toFixed(1)} ms from connect ` +
        `(${median(acc.sinceAuth).toFixed(1)} ms from op 8), max ${
          Math.max(...acc.total).toFixed(1)
        } ms, ${rounds} rounds`,
    );
  }
}

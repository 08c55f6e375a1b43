/**
 * A real Prometheus scrapes a running embedded server and the distributed
 * roles (separate processes on the real Redis and Kafka) with
 * examples/prometheus.yml, while real clients connect and pushes flow; its
 * HTTP query API (`/api/v1/query`) must then show each role's key series —
 * connections, pushes, drops, queue lag, latency histograms, process
 * metrics — and show them move. Every series it scraped must be listed in
 * docs/METRICS.md.
 *
 * The example is used as it is, with only its targets, token file and
 * intervals replaced (each must be found, so the two cannot drift apart).
 * Prometheus is the Debian package (`apt-get install prometheus`; .ci/run
 * installs it), or `GOIM_TEST_PROMETHEUS`. Missing: the test is ignored
 * with a note, except with `CI=true`, where it fails.
 */

import assert from "node:assert/strict";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { redisTestUrl } from "./redis_env.ts";
import { freePort, RoleProcess, startDistributed } from "./e2e/cluster.ts";
import { push, Recorder } from "./e2e/suite.ts";
import { TcpTestClient } from "./fixtures/comet_fixtures.ts";
import { eventually } from "./eventually.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const PROMETHEUS = Deno.env.get("GOIM_TEST_PROMETHEUS") || "prometheus";
const PROMTOOL = Deno.env.get("GOIM_TEST_PROMTOOL") || "promtool";
// Every wait below is bounded; together they keep the test well under 60 s once the roles run.
const WAIT_MS = 20_000;

async function version(bin: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(bin, { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return out.success ? undefined : `${bin} --version failed`;
  } catch (e) {
    return `${bin}: ${(e as Error).message}`;
  }
}

const kafka = await kafkaTestBrokers();
const redis = await redisTestUrl();
const missing = (await version(PROMETHEUS)) ?? (await version(PROMTOOL));
const ci = Deno.env.get("CI") === "true";
if (missing !== undefined && !ci) {
  console.warn(`note: ${missing}; the Prometheus test is ignored (apt-get install prometheus)`);
}

/** The example with every `from` replaced by its `to`; each `from` must occur. */
function adapt(example: string, replacements: [string, string][]): string {
  let text = example;
  for (const [from, to] of replacements) {
    assert.ok(text.includes(from), `examples/prometheus.yml holds ${JSON.stringify(from)}`);
    text = text.replaceAll(from, to);
  }
  return text;
}

/** A Prometheus server of the test's own on a free loopback port. */
class Prometheus {
  readonly url: string;
  readonly #child: Deno.ChildProcess;
  #log: string[] = [];

  constructor(dir: string) {
    const port = freePort();
    this.url = `http://127.0.0.1:${port}`;
    const child = new Deno.Command(PROMETHEUS, {
      args: [
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    (async () => {
      for await (const line of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#log.push(line);
        if (this.#log.length > 50) this.#log.shift();
      }
    })().catch(() => {});
  }

  tail(): string {
    return this.#log.join("");
  }

  async ready(): Promise<void> {
    await eventually(
      async () => {
        try {
          const res = await fetch(`${this.url}/-/ready`);
          await res.body?.cancel();
          return res.ok;
        } catch {
          return false;
        }
      },
      `Prometheus ready at ${this.url}: ${this.tail()}`,
      WAIT_MS,
      100,
    );
  }

  /** Runs an instant query; the result vector. */
  async query(
    expr: string,
  ): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = await res.json();
    assert.equal(body.status, "success", `${expr}: ${JSON.stringify(body)}`);
    return body.data.result;
  }

  /** The one value of `expr` (`NaN` when the vector is empty). */
  async value(expr: string): Promise<number> {
    const r = await this.query(expr);
    assert.ok(r.length <= 1, `${expr} is one series: ${JSON.stringify(r)}`);
    return r.length === 0 ? NaN : Number(r[0].value[1]);
  }

  /** Waits until `expr` has a value for which `ok` holds. */
  async until(expr: string, ok: (v: number) => boolean, what: string): Promise<number> {
    let last = NaN;
    await eventually(
      async () => ok(last = await this.value(expr)),
      `${what} (${expr} = ${last})`,
      WAIT_MS,
      200,
    );
    return last;
  }

  /** Metric names of every series scraped from the goim jobs. */
  async names(): Promise<string[]> {
    const res = await fetch(
      `${this.url}/api/v1/label/__name__/values?match[]=${encodeURIComponent('{job=~"goim-.*"}')}`,
    );
    const body = await res.json();
    assert.equal(body.status, "success");
    return body.data;
  }

  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // gone already
    }
    const killer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 10_000);
    try {
      await this.#child.status;
    } finally {
      clearTimeout(killer);
    }
  }
}

/** Where a mode's client-facing parts listen. */
interface Target {
  mode: "embedded" | "distributed";
  http: string;
  tcp: string;
  ws: string;
}

// The settings both modes run with: a small send queue that drops the oldest frames, so a
// client that stops reading makes drops; pushes up to 16 KiB fill it in a few hundred.
const SETTINGS = [
  "comet.send_queue.max_bytes=64KiB",
  "comet.send_queue.policy=drop_oldest",
  "logic.http.max_body=16KiB",
  "comet.renew_online_interval=300ms",
  "log.level=warn",
];

/** Real clients and pushes: by key and room to readers, and enough to one non-reader to drop. */
async function drive(t: Target): Promise<{ reader: Recorder; close(): Promise<void> }> {
  const tag = `prom-${t.mode}`;
  const token = (mid: number, key: string) => ({
    mid,
    key,
    room_id: `live://${tag}`,
    platform: "test",
    accepts: [1000],
  });
  const a = new Recorder(t.tcp, token(1, `${tag}-a`));
  const b = new Recorder(t.ws, token(2, `${tag}-b`));
  const port = Number(new URL(t.tcp.replace("tcp:", "http:")).port);
  let slow: TcpTestClient | undefined;
  const close = async () => {
    slow?.close();
    await Promise.all([a.client.close(), b.client.close()]);
  };
  try {
    await Promise.all([a.client.connect(), b.client.connect()]);
    await push(t.http, `/goim/push/keys?operation=1000&keys=${tag}-a`, "by-key");
    await push(t.http, `/goim/push/room?operation=1000&type=live&room=${tag}`, "by-room");
    await Promise.all([a.waitFor("by-key"), a.waitFor("by-room"), b.waitFor("by-room")]);

    slow = await TcpTestClient.connect({ transport: "tcp", hostname: "127.0.0.1", port }, {
      keep: false,
    });
    await slow.auth({ mid: 3, key: `${tag}-slow`, accepts: [1000] });
    slow.pause();
    // 300 × 16 KiB = 4.8 MiB: more than the socket buffers and the 64 KiB queue hold.
    const body = "x".repeat(16 * 1024 - 64);
    for (let i = 0; i < 300; i += 4) {
      await Promise.all(
        [0, 1, 2, 3].map(() =>
          push(t.http, `/goim/push/keys?operation=1000&keys=${tag}-slow`, body)
        ),
      );
    }
    return { reader: a, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The sum of `metric` over the mode's targets, 0 when it has no series yet. */
const total = (metric: string, mode: string, labels = "") =>
  `sum(${metric}{mode="${mode}"${labels ? "," + labels : ""}}) or vector(0)`;

// The key series of each role: each must exist and rise with the traffic of drive().
const MOVING = [
  ["goim_comet_connections", ""],
  ["goim_comet_pushes_total", 'kind="keys"'],
  ["goim_comet_pushes_total", 'kind="room"'],
  ["goim_comet_sent_bytes_total", ""],
  ["goim_comet_dropped_total", 'policy="drop_oldest"'],
  ["goim_logic_published_total", ""],
  ["goim_logic_http_requests_total", 'route="/goim/push/keys",code="200"'],
  ["goim_logic_http_request_seconds_count", 'route="/goim/push/keys"'],
  ["goim_job_consumed_total", ""],
  ["goim_job_delivered_total", ""],
  ["goim_job_push_latency_seconds_count", ""],
] as const;

Deno.test({
  name: "prometheus: a real Prometheus scrapes every role of both modes; key series exist and move",
  ignore: (kafka.ignore || redis.ignore || missing !== undefined) && !ci,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    kafka.assertReachable();
    redis.assertReachable();
    if (missing !== undefined) {
      throw new Error(`CI=true: ${missing}; install it with apt-get install prometheus`);
    }
    const dir = await Deno.makeTempDir({ prefix: "goim-prometheus-" });
    const adminToken = crypto.randomUUID() + crypto.randomUUID();
    await Deno.writeTextFile(`${dir}/admin_token`, adminToken + "\n");
    const sets = [...SETTINGS, `admin.token=${adminToken}`];

    const ports = { tcp: freePort(), ws: freePort(), http: freePort() };
    const admin = { comet: freePort(), logic: freePort(), job: freePort() };
    const embedded = new RoleProcess("embedded", [
      "main.ts",
      ...[
        ...sets,
        "node.id=prom-embedded",
        `comet.tcp.bind=127.0.0.1:${ports.tcp}`,
        `comet.websocket.bind=127.0.0.1:${ports.ws}`,
        `logic.http.bind=127.0.0.1:${ports.http}`,
        `comet.admin.bind=127.0.0.1:${admin.comet}`,
        `logic.admin.bind=127.0.0.1:${admin.logic}`,
        `job.admin.bind=127.0.0.1:${admin.job}`,
      ].flatMap((kv) => ["--set", kv]),
    ], admin.comet);
    let prometheus: Prometheus | undefined;
    let stopDistributed = () => Promise.resolve();
    const closers: (() => Promise<void>)[] = [];
    let stoppedPid: number | undefined;
    try {
      const [, cluster] = await Promise.all([
        embedded.start(),
        startDistributed({
          comets: 1,
          kafkaBrokers: kafka.brokers.join(","),
          redisUrl: redis.url,
          set: sets,
        }),
      ]);
      stopDistributed = cluster.stop;
      const at = (p: number) => `"127.0.0.1:${p}"`;
      const example = await Deno.readTextFile(`${ROOT}examples/prometheus.yml`);
      const config = adapt(example, [
        ["/etc/prometheus/goim_admin_token", `${dir}/admin_token`],
        ["scrape_interval: 15s", "scrape_interval: 1s"],
        ["scrape_timeout: 10s", "scrape_timeout: 1s"],
        ["evaluation_interval: 15s", "evaluation_interval: 1s"],
        [`"127.0.0.1:3190"`, at(admin.comet)],
        [`"127.0.0.1:3191"`, at(admin.logic)],
        [`"127.0.0.1:3192"`, at(admin.job)],
        [`"comet-1.internal:3190", "comet-2.internal:3190"`, at(cluster.cometProcs[0].adminPort)],
        [`"logic-1.internal:3191"`, at(cluster.logic.adminPort)],
        [`"job-1.internal:3192"`, at(cluster.job.adminPort)],
      ]);
      await Deno.writeTextFile(`${dir}/prometheus.yml`, config);
      // promtool checks what Prometheus will load (the token file must exist: it does here).
      const check = await new Deno.Command(PROMTOOL, {
        args: ["check", "config", `${dir}/prometheus.yml`],
      }).output();
      assert.ok(
        check.success,
        new TextDecoder().decode(check.stdout) + new TextDecoder().decode(check.stderr),
      );

      prometheus = new Prometheus(dir);
      const prom = prometheus;
      await prom.ready();
      // Six targets (three jobs × two modes), each answering with the token.
      await prom.until('count(up{job=~"goim-.*"} == 1)', (v) => v === 6, "every target up");

      const targets: Target[] = [
        {
          mode: "embedded",
          http: `http://127.0.0.1:${ports.http}`,
          tcp: `tcp://127.0.0.1:${ports.tcp}`,
          ws: `ws://127.0.0.1:${ports.ws}/sub`,
        },
        { mode: "distributed", http: cluster.http, ...cluster.comets[0] },
      ];
      const before = new Map<string, number>();
      for (const t of targets) {
        for (const [m, l] of MOVING) {
          before.set(t.mode + m + l, await prom.value(total(m, t.mode, l)));
        }
        assert.equal(before.get(t.mode + "goim_comet_connections"), 0, `${t.mode}: no client yet`);
      }

      const [emb, dist] = await Promise.all(targets.map(drive));
      closers.push(emb.close, dist.close);

      for (const t of targets) {
        for (const [m, l] of MOVING) {
          const was = before.get(t.mode + m + l)!;
          await prom.until(
            total(m, t.mode, l),
            (v) => v > was,
            `${t.mode}: ${m}{${l}} rises from ${was}`,
          );
        }
        assert.equal(await prom.value(total("goim_comet_connections", t.mode)), 3);
        // The latency histograms are whole: buckets up to +Inf, a quantile Prometheus can compute.
        for (const h of ["goim_job_push_latency_seconds", "goim_logic_http_request_seconds"]) {
          const q = await prom.value(
            `histogram_quantile(0.5, sum by (le) (${h}_bucket{mode="${t.mode}"}))`,
          );
          assert.ok(Number.isFinite(q) && q > 0, `${t.mode}: median of ${h} = ${q}`);
        }
        // The queue is drained: the lag series is there and at 0.
        await prom.until(
          `max(goim_job_consumer_lag{mode="${t.mode}"})`,
          (v) => v === 0,
          `${t.mode}: lag 0`,
        );
        // Process metrics of each of the mode's three targets are true values, not 0.
        for (
          const p of [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
          ]
        ) {
          assert.equal(await prom.value(`count(${p}{mode="${t.mode}"} > 0)`), 3, `${t.mode}: ${p}`);
        }
      }

      // Queue lag moves: a frozen comet leaves job's pushes unacknowledged in Kafka.
      stoppedPid = cluster.cometProcs[0].pid!;
      Deno.kill(stoppedPid, "SIGSTOP");
      for (let i = 0; i < 20; i++) {
        await push(
          cluster.http,
          "/goim/push/keys?operation=1000&keys=prom-distributed-a",
          `lag-${i}`,
        );
      }
      await prom.until('max(goim_job_consumer_lag{mode="distributed"})', (v) => v > 0, "lag rises");
      Deno.kill(stoppedPid, "SIGCONT");
      stoppedPid = undefined;
      await prom.until(
        'max(goim_job_consumer_lag{mode="distributed"})',
        (v) => v === 0,
        "lag falls",
      );

      // Everything scraped is documented.
      const docs = await Deno.readTextFile(`${ROOT}docs/METRICS.md`);
      const synthetic = /^(up|scrape_.*)$/;
      const undocumented = (await prom.names()).filter((n) =>
        !synthetic.test(n) && !docs.includes("`" + n.replace(/_(bucket|sum|count)$/, "") + "`") &&
        !docs.includes("`" + n + "`")
      );
      assert.deepEqual(undocumented, [], "every scraped series is in docs/METRICS.md");
    } catch (e) {
      console.error(
        `--- prometheus ---\n${prometheus?.tail()}\n--- embedded ---\n${embedded.tail()}`,
      );
      throw e;
    } finally {
      if (stoppedPid !== undefined) Deno.kill(stoppedPid, "SIGCONT");
      for (const close of closers) await close();
      await prometheus?.stop();
      await Promise.all([embedded.stop(), stopDistributed()]);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

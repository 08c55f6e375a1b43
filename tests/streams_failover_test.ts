/**
 * Streams under failure, distributed mode, real processes (docs/STREAMS.md,
 * "Guarantees"):
 *
 * - The scenario of tests/streams_e2e_test.ts (10,000 numbered room and mid
 *   pushes, 20 devices dropping and coming back) on 2 comets and 2 jobs,
 *   devices moving to the OTHER comet on every reconnect, and one job killed
 *   with SIGKILL mid-stream: the other takes its partitions over (after
 *   the session timeout) from the store's counters, and every device still
 *   gets every message exactly once, in order, at the same positions.
 * - On a private Redis (a redis-server of the test's own: it is flushed,
 *   and tests run in parallel on the shared one): `streams.history.size` 50
 *   and a device offline for 200 pushes → `window_passed`; FLUSHALL while a
 *   device is offline → `epoch_changed` when it comes back, then live
 *   messages in the new epoch.
 */

import assert from "node:assert/strict";
import { eventually } from "./eventually.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { hasRedisServerBinary, onConnection, ownRedisServer, redisTestUrl } from "./redis_env.ts";
import type { RoleProcess } from "./e2e/cluster.ts";
import { chaosLine, chaosScenario } from "./e2e/streams_chaos.ts";
import { startStreamsCluster, type StreamsCluster, sumMetric } from "./e2e/streams_cluster.ts";
import { pushNext } from "./e2e/streams_load.ts";
import {
  primeThenOffline,
  roomAndMid,
  until,
  untilTop,
  windowPassedScenario,
} from "./e2e/streams_scenarios.ts";

const kafka = await kafkaTestBrokers();
const redis = await redisTestUrl();
const ownRedis = await hasRedisServerBinary();
const ci = Deno.env.get("CI") === "true";
if (!ownRedis && !ci) {
  console.warn("note: no redis-server binary; the flushed-Redis test is ignored");
}

/** The broker's minimum: the killed job's partitions move after this (tests/topology_test.ts). */
const SESSION_TIMEOUT_MS = 6_000;
const TOTAL = 10_000;
/** The job is killed once this many pushes were accepted (and both jobs consumed some). */
const KILL_AT = 2_000;
const HISTORY_SIZE = 50;

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Messages a job took from the queue, from its /metrics. */
function consumed(job: RoleProcess): Promise<number> {
  return sumMetric([`http://127.0.0.1:${job.adminPort}`], "goim_job_consumed_total");
}

Deno.test({
  name: `streams failover: a job SIGKILLed mid-stream of ${TOTAL} numbered pushes, devices ` +
    "moving to the other comet: each message once, in order",
  ignore: kafka.ignore || redis.ignore,
  ...opts,
  fn: async () => {
    redis.assertReachable();
    const cluster = await startStreamsCluster("distributed", {
      kafka,
      redisUrl: redis.url,
      comets: 2,
      jobs: 2,
      partitions: 4,
      set: [`queue.kafka.session_timeout=${SESSION_TIMEOUT_MS}ms`],
    });
    const [victim, survivor] = cluster.dist!.jobProcs;
    let kill: Promise<void> | undefined;
    let killedAt = -1;
    let survivorAtKill = 0;
    let victimAtKill = 0;
    try {
      const f = await chaosScenario(cluster, {
        tag: `s6f-${crypto.randomUUID().slice(0, 6)}`,
        midBase: 1000,
        total: TOTAL,
        onPush: (done) => {
          if (done !== KILL_AT) return;
          kill = (async () => {
            // Both hold partitions that carry streams: the victim's must move.
            await eventually(
              async () => (await consumed(victim)) > 0 && (await consumed(survivor)) > 0,
              "both jobs to consume",
              20_000,
              50,
            );
            survivorAtKill = await consumed(survivor);
            victimAtKill = await consumed(victim);
            const status = await victim.stop("SIGKILL");
            assert.equal(status?.signal, "SIGKILL");
            killedAt = done;
          })();
        },
      });
      await kill;
      assert.ok(killedAt > 0, "the job was killed");
      assert.ok(
        (await consumed(survivor)) > survivorAtKill,
        "the surviving job consumed after the kill",
      );
      assert.ok(f.moves > 0, `devices moved to the other comet: ${f.moves}`);
      assert.equal(f.stays, 0, "every reconnect went to the other comet");
      // Every message once, plus what the survivor took again after the kill (at least).
      const redelivered = victimAtKill + (await consumed(survivor)) - (TOTAL + f.streams);
      console.log(
        `failover chaos: job killed after ${killedAt} pushes, ≥ ${redelivered} messages ` +
          `redelivered by the queue; ${chaosLine(f)}`,
      );
    } catch (e) {
      console.error(cluster.tails());
      throw e;
    } finally {
      await kill?.catch(() => {});
      await cluster.stop();
    }
  },
});

/**
 * A device got 3 messages of its room and its mid, goes offline, the Redis
 * is flushed: back, it is told `epoch_changed` for both, with the new
 * epoch, and gets the next message live in it.
 */
async function epochChangedScenario(
  cluster: StreamsCluster,
  redisUrl: string,
  mid: number,
): Promise<void> {
  const dist = cluster.dist!;
  const room = `live://${dist.topic}-epoch`;
  const { device, streams } = roomAndMid(cluster, room, mid, "device across the flush");
  try {
    const before = await primeThenOffline(cluster, device, streams);

    await onConnection(redisUrl, 2_000, (c) => c.flushall());
    // The comets' registry records come back on their next renewal; job routes by them.
    const records = dist.cometIds.map((id) => `${dist.redisPrefix}comet_${id}`);
    await eventually(
      async () =>
        (await onConnection(redisUrl, 1_000, (c) => c.exists(...records))) === records.length,
      "the comets' registry records back after FLUSHALL",
      10_000,
      50,
    );
    // One push each after the flush: the streams go on in a new epoch, at position 1.
    for (const s of streams) await pushNext(cluster.http, s);
    await Promise.all(streams.map((s) => untilTop(cluster.http, s.name, 1)));
    await device.connect();
    await until(() => device.notRecovered.length >= 2, "streams events for both streams");
    const events = [...device.notRecovered].sort((a, b) => a.stream.localeCompare(b.stream));
    const names = streams.map((s) => s.name);
    assert.deepEqual(events.map((e) => e.stream), [...names].sort());
    for (const e of events) {
      const old = before[names.indexOf(e.stream)];
      assert.equal(e.reason, "epoch_changed", JSON.stringify(e));
      assert.notEqual(e.epoch, old, `${e.stream}: a new epoch`);
      assert.notEqual(e.epoch, "", `${e.stream}: the new epoch is named`);
      assert.equal(e.pos, 1, `${e.stream}: the one message since the flush`);
    }
    for (const s of streams) await pushNext(cluster.http, s);
    await until(
      () => streams.every((s) => device.of(s.name).length === 4),
      "the next message of each stream, live in the new epoch",
    );
    for (const s of streams) {
      const last = device.of(s.name)[3];
      const epoch = events.find((e) => e.stream === s.name)!.epoch;
      assert.deepEqual([last.n, last.pos, last.epoch], [5, 2, epoch], `${s.name} after the flush`);
    }
  } finally {
    await device.close();
  }
}

Deno.test({
  name: "streams failover (private Redis): window passed → window_passed; FLUSHALL → epoch_changed",
  ignore: kafka.ignore || (!ownRedis && !ci),
  ...opts,
  fn: () =>
    ownRedisServer(async (srv) => {
      const cluster = await startStreamsCluster("distributed", {
        kafka,
        redisUrl: srv.url,
        comets: 1,
        set: [`streams.history.size=${HISTORY_SIZE}`],
      });
      try {
        await windowPassedScenario(cluster, cluster.dist!.topic, 5000, HISTORY_SIZE);
        await epochChangedScenario(cluster, srv.url, 6000);
      } catch (e) {
        console.error(cluster.tails());
        throw e;
      } finally {
        await cluster.stop();
      }
    }),
});

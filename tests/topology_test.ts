/**
 * Many of each role, with real processes on a real Kafka and Redis: three
 * comets, two logics and two jobs on one topic (6 partitions) and one
 * consumer group.
 *
 * - Pushes by key, mid, room and all, through either logic, reach exactly
 *   the right clients (the suite's sentinel check), before and after the
 *   job changes below.
 * - Numbered streams run throughout — nine keys, one mid with a device on
 *   two comets, one room with a member on every comet — sent one push at a
 *   time per stream, alternating the two logics. One job is killed with
 *   SIGKILL mid-stream: its partitions move to the other (checked in the
 *   group's assignment) and nothing is lost. A third job is added: the
 *   group rebalances onto it and nothing is lost.
 * - Order per key holds throughout: every message a client receives is
 *   either the next number of its stream or one it already had (a
 *   redelivery). docs/JOB.md allows redeliveries after a job dies and on a
 *   rebalance (the next owner starts from the last commit); before the
 *   kill there may be none.
 *
 * What the run measured (stall per change, duplicates per phase) is
 * printed; docs/SCALING.md, "Topology and failure bounds" states it.
 */

import assert from "node:assert/strict";
import { AssignerProtocol, Kafka, logLevel } from "kafkajs";
import { GoimClient } from "../client/mod.ts";
import { saramaPartition } from "../infra/kafka/client.ts";
import { eventually } from "./eventually.ts";
import { kafkaTestBrokers } from "./kafka_env.ts";
import { deleteKeys, redisTestUrl } from "./redis_env.ts";
import { type DistributedCluster, startDistributedOn } from "./e2e/cluster.ts";
import { deliveryScenario, push } from "./e2e/suite.ts";

const kafka = await kafkaTestBrokers();
const redis = await redisTestUrl();

const PARTITIONS = 6;
/** Short, so the killed job's partitions move within seconds (the broker's minimum is 6 s). */
const SESSION_TIMEOUT_MS = 6_000;
/** Added to the session timeout for the rebalance after a kill (measured 0.5–1.4 s). */
const REBALANCE_SLACK_MS = 6_000;
/** Pause between two pushes of one stream: ~30 pushes/s per stream, ~330/s in all. */
const PACE_MS = 30;
const KEY_OP = 1003;
const MID_OP = 1004;
const ROOM_OP = 1005;
const dec = new TextDecoder();

type Phase = "steady" | "after kill" | "after add";

/** What one client saw of one numbered stream. */
class StreamView {
  /** Highest number received. */
  max = 0;
  /** Distinct numbers received. */
  readonly seen = new Set<number>();
  /** Redeliveries (a number received again), per phase. */
  readonly dups: Record<Phase, number> = { steady: 0, "after kill": 0, "after add": 0 };
  /** Numbers that skipped ahead of max + 1: an order violation or a loss. */
  readonly jumps: string[] = [];
  /** Longest time between two new numbers, per phase (ms). */
  readonly stall: Record<Phase, number> = { steady: 0, "after kill": 0, "after add": 0 };
  #lastNew = 0;

  constructor(readonly label: string) {}

  take(n: number, phase: Phase, now: number): void {
    if (this.seen.has(n)) {
      this.dups[phase]++;
      return;
    }
    if (n !== this.max + 1) this.jumps.push(`${n} after ${this.max} (${phase})`);
    if (this.#lastNew > 0) this.stall[phase] = Math.max(this.stall[phase], now - this.#lastNew);
    this.#lastNew = now;
    this.seen.add(n);
    this.max = Math.max(this.max, n);
  }
}

/** One numbered stream: its pushes and every client that must see all of it. */
interface Stream {
  name: string;
  op: number;
  /** The push path for any logic. */
  path: string;
  /** The Kafka partition keys its messages carry (partitionKey in infra/queue.ts). */
  partitionKeys: string[];
  views: StreamView[];
  /** Last number the push API accepted. */
  sent: number;
}

/** partition → the client id of the job holding it, read from the group's assignment. */
async function assignment(brokers: string[], group: string): Promise<Map<number, string>> {
  const admin = new Kafka({ brokers, clientId: "goim-test", logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([group]);
    const out = new Map<number, string>();
    for (const m of groups[0]?.members ?? []) {
      if (m.memberAssignment.length === 0) continue;
      const a = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
      for (const parts of Object.values(a?.assignment ?? {})) {
        for (const p of parts) out.set(p, m.clientId);
      }
    }
    return out;
  } finally {
    await admin.disconnect();
  }
}

const jobClientId = (i: number) => `goim-job-${i}`;

Deno.test({
  name:
    "topology: 3 comets, 2 logics, 2 jobs; a job SIGKILLed and a job added mid-stream lose nothing, per-key order holds",
  ignore: kafka.ignore || redis.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const brokers = kafka.brokers;
    const cluster: DistributedCluster = await startDistributedOn({ kafka, redis }, {
      comets: 3,
      logics: 2,
      jobs: 2,
      partitions: PARTITIONS,
      set: [`queue.kafka.session_timeout=${SESSION_TIMEOUT_MS}ms`],
      jobSet: (i) => [`queue.kafka.client_id=${jobClientId(i)}`],
    });
    const clients: GoimClient[] = [];
    const streams: Stream[] = [];
    let stopping = false;
    let senders: Promise<void> | undefined;
    try {
      // Both jobs hold partitions before anything is pushed.
      let owners = new Map<number, string>();
      await eventually(
        async () => {
          owners = await assignment(brokers, cluster.group);
          return owners.size === PARTITIONS && new Set(owners.values()).size === 2;
        },
        "both jobs to hold partitions",
        30_000,
        200,
      );

      // Exact delivery through either logic.
      await deliveryScenario({ ...cluster, http: cluster.https[0] }, "topo-l0");
      await deliveryScenario({ ...cluster, http: cluster.https[1] }, "topo-l1");

      // The numbered streams.
      let phase: Phase = "steady";
      const tag = cluster.topic;
      const connect = async (comet: number, i: number, token: {
        mid: number;
        key: string;
        room_id: string;
        accepts: number[];
      }, views: Map<number, StreamView>) => {
        const ep = cluster.comets[comet];
        const client = new GoimClient({
          url: i % 2 === 0 ? ep.tcp : ep.ws,
          token: { ...token, platform: "test" },
          heartbeatIntervalMs: 60_000,
          reconnect: { enabled: false },
        });
        client.on("message", (m) => {
          const view = views.get(m.op);
          if (view) view.take(Number(dec.decode(m.body).split(":")[1]), phase, performance.now());
        });
        clients.push(client);
        await client.connect();
      };
      const connecting: Promise<void>[] = [];
      for (let j = 0; j < 9; j++) {
        const key = `${tag}-k${j}`;
        const view = new StreamView(`key ${key} on comet ${j % 3}`);
        streams.push({
          name: `k${j}`,
          op: KEY_OP,
          path: `/goim/push/keys?operation=${KEY_OP}&keys=${key}`,
          partitionKeys: [key],
          views: [view],
          sent: 0,
        });
        connecting.push(
          connect(
            j % 3,
            j,
            { mid: 0, key, room_id: "", accepts: [KEY_OP] },
            new Map([[KEY_OP, view]]),
          ),
        );
      }
      const midKeys = [`${tag}-mid-a`, `${tag}-mid-b`];
      const midViews = midKeys.map((k, i) =>
        new StreamView(`mid 777 device ${k} on comet ${i * 2}`)
      );
      streams.push({
        name: "mid",
        op: MID_OP,
        path: `/goim/push/mids?operation=${MID_OP}&mids=777`,
        // Streams on (the default): one message keyed by the mid's stream.
        partitionKeys: ["mid:777"],
        views: midViews,
        sent: 0,
      });
      midKeys.forEach((key, i) =>
        connecting.push(
          connect(
            i * 2,
            i,
            { mid: 777, key, room_id: "", accepts: [MID_OP] },
            new Map([[MID_OP, midViews[i]]]),
          ),
        )
      );
      const room = `live://${tag}-room`;
      const roomViews = [0, 1, 2].map((c) => new StreamView(`room member on comet ${c}`));
      streams.push({
        name: "room",
        op: ROOM_OP,
        path: `/goim/push/room?operation=${ROOM_OP}&type=live&room=${tag}-room`,
        partitionKeys: [room],
        views: roomViews,
        sent: 0,
      });
      roomViews.forEach((view, c) =>
        connecting.push(
          connect(
            c,
            c + 1,
            { mid: 0, key: `${tag}-member-${c}`, room_id: room, accepts: [] },
            new Map([[ROOM_OP, view]]),
          ),
        )
      );
      await Promise.all(connecting);

      const send = async (s: Stream) => {
        while (!stopping) {
          const n = s.sent + 1;
          const data = await push(cluster.https[n % 2], s.path, `${s.name}:${n}`) as {
            keys?: number;
            mids?: number;
          } | null;
          if (s.op === KEY_OP) {
            assert.equal(data?.keys, s.views.length, `${s.name} #${n}: every target routed`);
          } else if (s.op === MID_OP) {
            // Job resolves the mid's keys after the append; logic queues one message.
            assert.equal(data?.mids, 1, `${s.name} #${n}: queued for its mid`);
          }
          s.sent = n;
          // Pacing of the load, not synchronisation.
          await new Promise((r) => setTimeout(r, PACE_MS));
        }
      };
      senders = Promise.all(streams.map(send)).then(() => {});
      const allViews = streams.flatMap((s) => s.views);
      const everyoneHas = (n: (v: StreamView) => number, what: string, ms = 30_000) =>
        eventually(() => allViews.every((v) => v.max >= n(v)), what, ms, 50);

      await everyoneHas(() => 20, "20 numbers of every stream at every client");

      // Kill the job that carries more of the streams' partitions.
      const streamParts = new Set(
        streams.flatMap((s) => s.partitionKeys.map((k) => saramaPartition(k, PARTITIONS))),
      );
      owners = await assignment(brokers, cluster.group);
      const carried = [0, 1].map((i) =>
        [...streamParts].filter((p) => owners.get(p) === jobClientId(i)).length
      );
      const victim = carried[0] >= carried[1] ? 0 : 1;
      const survivor = 1 - victim;
      assert.ok(carried[victim] > 0, `the killed job carries stream partitions (${carried})`);
      const atKill = new Map(allViews.map((v) => [v, v.max]));
      const killedAt = performance.now();
      phase = "after kill";
      const status = await cluster.jobProcs[victim].stop("SIGKILL");
      assert.equal(status?.signal, "SIGKILL");
      await eventually(
        async () => {
          owners = await assignment(brokers, cluster.group);
          return owners.size === PARTITIONS &&
            [...owners.values()].every((c) => c === jobClientId(survivor));
        },
        "the surviving job to hold every partition",
        60_000,
        200,
      );
      const movedMs = performance.now() - killedAt;
      await everyoneHas((v) => atKill.get(v)! + 20, "20 more numbers everywhere after the kill");
      const flowingAfterKillMs = performance.now() - killedAt;

      // Add a job: the group rebalances onto it.
      const beforeAdd = new Map(allViews.map((v) => [v, v.max]));
      const addedAt = performance.now();
      phase = "after add";
      await cluster.addJob();
      await eventually(
        async () => {
          owners = await assignment(brokers, cluster.group);
          return owners.size === PARTITIONS && [...owners.values()].includes(jobClientId(2)) &&
            [...owners.values()].includes(jobClientId(survivor));
        },
        "the added job to hold partitions",
        60_000,
        200,
      );
      const rebalancedMs = performance.now() - addedAt;
      await everyoneHas((v) => beforeAdd.get(v)! + 20, "20 more numbers everywhere after the add");

      stopping = true;
      await senders;
      senders = undefined;
      for (const s of streams) {
        for (const v of s.views) {
          await eventually(
            () => v.seen.size === s.sent,
            `${v.label}: all ${s.sent} numbers of ${s.name} (has ${v.seen.size}, max ${v.max})`,
            60_000,
            50,
          );
        }
      }
      // A dead member holds its partitions for the session timeout, then one
      // rebalance moves them; an added member costs one rebalance, no timeout.
      assert.ok(
        movedMs <= SESSION_TIMEOUT_MS + REBALANCE_SLACK_MS,
        `partitions moved ${movedMs} ms after the kill`,
      );
      const addStall = Math.max(
        ...streams.flatMap((s) => s.views.map((v) => v.stall["after add"])),
      );
      assert.ok(addStall < SESSION_TIMEOUT_MS, `longest stall after the add: ${addStall} ms`);
      for (const s of streams) {
        for (const v of s.views) {
          assert.deepEqual(v.jumps, [], `${v.label}: every new number is the next one`);
          assert.equal(v.max, s.sent, `${v.label}: nothing beyond what was sent`);
          assert.equal(v.dups.steady, 0, `${v.label}: no redelivery before any job change`);
        }
      }
      const sum = (f: (v: StreamView) => number) => allViews.reduce((a, v) => a + f(v), 0);
      const worst = (p: Phase) => Math.max(...allViews.map((v) => v.stall[p]));
      console.log(
        `topology figures: ${streams.reduce((a, s) => a + s.sent, 0)} numbered pushes, ` +
          `${allViews.length} clients; kill: partitions moved after ${movedMs.toFixed(0)} ms, ` +
          `every stream +20 after ${flowingAfterKillMs.toFixed(0)} ms, longest stall ` +
          `${worst("after kill").toFixed(0)} ms, ${
            sum((v) => v.dups["after kill"])
          } redelivered; ` +
          `add: rebalanced after ${rebalancedMs.toFixed(0)} ms, longest stall ` +
          `${worst("after add").toFixed(0)} ms, ${sum((v) => v.dups["after add"])} redelivered; ` +
          `steady longest stall ${worst("steady").toFixed(0)} ms`,
      );

      // After the changes: still exactly the right clients, through both logics.
      await deliveryScenario({ ...cluster, http: cluster.https[0] }, "topo-after-l0");
      await deliveryScenario({ ...cluster, http: cluster.https[1] }, "topo-after-l1");
    } catch (e) {
      for (const p of [...cluster.logicProcs, ...cluster.jobProcs, ...cluster.cometProcs]) {
        console.error(`--- ${p.name} ---\n${p.tail(30)}`);
      }
      throw e;
    } finally {
      stopping = true;
      await senders?.catch(() => {});
      await Promise.all(clients.map((c) => c.close()));
      await cluster.stop();
      await deleteKeys(redis.url, cluster.redisPrefix);
    }
  },
});

/**
 * The end-to-end suite every deployment mode must pass: real clients (the
 * SDK over TCP and WebSocket) on every comet of a running cluster, pushes
 * through logic's HTTP API, and exact delivery checks.
 *
 * "Exactly the right clients" is checked with a sentinel: once every target
 * has its message, a broadcast sentinel is pushed, and when every client has
 * the sentinel, no client may hold a message meant for others.
 *
 * @module
 */

import assert from "node:assert/strict";
import { GoimClient } from "../../client/mod.ts";
import type { AuthToken } from "../../protocol/token.ts";

/** Where one comet of the cluster listens. */
export interface CometEndpoint {
  /** `tcp://host:port` */
  tcp: string;
  /** `ws://host:port/sub` */
  ws: string;
}

/** A running cluster under test. */
export interface Cluster {
  /** Logic's HTTP base URL, e.g. `http://127.0.0.1:3111`. */
  http: string;
  /** Every comet, at least one. */
  comets: CometEndpoint[];
  /** Stops whatever the cluster started. */
  stop(): Promise<void>;
}

const OP = 1000;
const OTHER_OP = 1001;
const SENTINEL_OP = 1002;
const dec = new TextDecoder();

/** A connected SDK client that records what it received. */
export class Recorder {
  readonly client: GoimClient;
  readonly got: { op: number; text: string }[] = [];
  /** Distinct texts received (any op), updated before waiters are checked. */
  readonly seen = new Set<string>();
  #waiters: { pred: () => boolean; resolve: () => void }[] = [];

  readonly label: string;

  constructor(url: string, token: AuthToken, opts: { heartbeatIntervalMs?: number } = {}) {
    this.label = `${url} mid ${token.mid} key ${token.key}`;
    this.client = new GoimClient({
      url,
      token,
      heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 60_000,
      reconnect: { enabled: true, initialDelayMs: 100, maxDelayMs: 1000 },
    });
    this.client.on("message", (m) => {
      const text = dec.decode(m.body);
      this.got.push({ op: m.op, text });
      this.seen.add(text);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred()) return true;
        w.resolve();
        return false;
      });
    });
  }

  /** Texts received with operation `op`. */
  texts(op = OP): string[] {
    return this.got.filter((m) => m.op === op).map((m) => m.text);
  }

  /** Resolves when `pred` holds; rejects after `ms` with `what` in the message. */
  until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(
          new Error(
            `${this.label}: timed out after ${ms} ms waiting for ${what}; got ${
              JSON.stringify(this.got)
            }`,
          ),
        );
      }, ms);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.push({ pred, resolve: done });
    });
  }

  /** Waits for a message with this op and text. */
  waitFor(text: string, op = OP, ms?: number): Promise<void> {
    return this.until(
      () => this.got.some((m) => m.op === op && m.text === text),
      `${op}:${text}`,
      ms,
    );
  }
}

/** POSTs a push and returns the parsed answer; asserts code 0. */
export async function push(http: string, path: string, body: string): Promise<unknown> {
  const res = await fetch(`${http}${path}`, { method: "POST", body });
  const json = await res.json();
  assert.equal(res.status, 200, `${path}: ${JSON.stringify(json)}`);
  assert.equal(json.code, 0, `${path}: ${JSON.stringify(json)}`);
  return json.data;
}

/** GETs an API route and returns `data`. */
export async function get(http: string, path: string): Promise<unknown> {
  const res = await fetch(`${http}${path}`);
  const json = await res.json();
  assert.equal(res.status, 200, `${path}: ${JSON.stringify(json)}`);
  return json.data;
}

/**
 * Runs the delivery scenario on a cluster: per comet a TCP and a WebSocket
 * client; mid 100+i has two devices on different comets (or transports).
 */
export async function deliveryScenario(cluster: Cluster, tag: string): Promise<void> {
  const n = cluster.comets.length;
  const clients: Recorder[] = [];
  const meta: { mid: number; key: string; room: string; accepts: number[] }[] = [];
  try {
    // Layout: on every comet, a TCP client in room A and a WS client in room B.
    // mid 1 has a device on comet 0 (tcp) and on the last comet (ws).
    for (let c = 0; c < n; c++) {
      for (const transport of ["tcp", "ws"] as const) {
        const i = clients.length;
        const mid = i === 0 || i === 2 * n - 1 ? 1 : 10 + i;
        const room = transport === "tcp" ? `live://${tag}-a` : `live://${tag}-b`;
        const accepts = i === 1 ? [OTHER_OP, SENTINEL_OP] : [OP, SENTINEL_OP];
        const key = `${tag}-key-${i}`;
        meta.push({ mid, key, room, accepts });
        clients.push(
          new Recorder(cluster.comets[c][transport], {
            mid,
            key,
            room_id: room,
            platform: "test",
            accepts,
          }),
        );
      }
    }
    await Promise.all(clients.map((r) => r.client.connect()));

    const expected: string[][] = clients.map(() => []);
    const expect = (pred: (i: number) => boolean, text: string) => {
      clients.forEach((_, i) => {
        if (pred(i)) expected[i].push(text);
      });
    };

    // By key: one client on the last comet.
    const keyTarget = 2 * n - 2;
    await push(
      cluster.http,
      `/goim/push/keys?operation=${OP}&keys=${meta[keyTarget].key}`,
      "by-key",
    );
    expect((i) => i === keyTarget && meta[i].accepts.includes(OP), "by-key");

    // By mid: both devices of mid 1 (different comets when n > 1), filtered by accepts.
    const midData = await push(
      cluster.http,
      `/goim/push/mids?operation=${OP}&mids=1`,
      "by-mid",
    ) as {
      keys?: number;
      mids?: number;
      id?: string;
    };
    // With streams (the default) job routes mids after the append and logic
    // answers the mids it queued; without, logic routes and counts the keys.
    if (midData.keys !== undefined) {
      assert.equal(midData.keys, 2, "both devices of mid 1 are routed");
    } else assert.equal(midData.mids, 1, "one mid queued");
    assert.match(midData.id ?? "", /^[A-Za-z0-9_-]{22}$/, "the push id");
    expect((i) => meta[i].mid === 1 && meta[i].accepts.includes(OP), "by-mid");

    // By room: every member of room A (TCP clients on every comet), accepts ignored.
    await push(cluster.http, `/goim/push/room?operation=${OP}&type=live&room=${tag}-a`, "by-room");
    expect((i) => meta[i].room === `live://${tag}-a`, "by-room");

    // To all: everyone whose accepts holds the op (client 1 accepts only OTHER_OP).
    await push(cluster.http, `/goim/push/all?operation=${OP}`, "to-all");
    expect((i) => meta[i].accepts.includes(OP), "to-all");

    await Promise.all(clients.map((r, i) => Promise.all(expected[i].map((t) => r.waitFor(t)))));

    // Sentinel: once everyone has it, nothing misdirected is still in flight.
    await push(cluster.http, `/goim/push/all?operation=${SENTINEL_OP}`, "sentinel");
    await Promise.all(clients.map((r) => r.waitFor("sentinel", SENTINEL_OP)));
    clients.forEach((r, i) => {
      assert.deepEqual(
        [...r.texts()].sort(),
        [...expected[i]].sort(),
        `client ${i} (mid ${meta[i].mid}, ${meta[i].room}) got exactly its messages`,
      );
    });

    // Online counts: room A has one member per comet, seen cluster-wide by logic
    // once comets have reported (RenewOnline).
    const roomA = `${tag}-a`;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const data = await get(cluster.http, `/goim/online/room?type=live&rooms=${roomA}`) as Record<
        string,
        number
      >;
      const count = data[`live://${roomA}`] ?? data[roomA] ?? 0;
      if (count === n) break;
      if (Date.now() > deadline) {
        assert.fail(`online count of ${roomA} stayed ${JSON.stringify(data)}, want ${n}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await Promise.all(clients.map((r) => r.client.close()));
  }
}

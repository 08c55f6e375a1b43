// The SDK's streams against the real embedded server (main.ts's
// startEmbedded: comet, logic and job in one process on the memory engines),
// over real sockets on both transports: live delivery with positions, an app
// restart that kept its positions and gets what it missed (room and mid),
// a changed room it comes back to, and acks that reach the push API.

import assert from "node:assert/strict";
import {
  GoimClient,
  type PushMessage,
  type StreamPositions,
  type StreamsEvent,
} from "../client/mod.ts";
import { createLogger } from "../infra/log.ts";
import { startEmbedded } from "../main.ts";
import { text } from "../protocol/mod.ts";
import { eventually } from "./eventually.ts";
import { embeddedTestConfig } from "./fixtures/embedded_config.ts";
import { untilTop } from "./e2e/streams_scenarios.ts";
import { push } from "./e2e/suite.ts";

const OP = 1000;

interface Server {
  http: string;
  url: { tcp: string; ws: string };
  stop(): Promise<void>;
}

async function start(): Promise<Server> {
  const config = embeddedTestConfig([
    "comet.admin.bind=",
    "logic.admin.bind=",
    "job.admin.bind=",
    "node.id=sdk-streams",
  ]);
  const server = await startEmbedded(config, createLogger({ level: "warn" }));
  const tcp = server.cometAddrs.tcp[0];
  const ws = server.cometAddrs.ws[0];
  return {
    http: `http://127.0.0.1:${server.logicAddrs.http.port}`,
    url: { tcp: `tcp://127.0.0.1:${tcp.port}`, ws: `ws://127.0.0.1:${ws.port}/sub` },
    stop: () => server.stop(),
  };
}

/** A streams client and what it delivered. */
class App {
  readonly client: GoimClient;
  readonly got: PushMessage[] = [];
  readonly losses: StreamsEvent[] = [];
  constructor(url: string, mid: number, room: string, positions?: StreamPositions) {
    this.client = new GoimClient({
      url,
      token: { mid, key: "", room_id: room, platform: "test", accepts: [OP] },
      streams: { positions },
      reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    });
    this.client.on("message", (m) => this.got.push(m));
    this.client.on("streams", (e) => this.losses.push(e));
  }
  /** `body@stream:pos` of every delivery. */
  seen(stream: string): string[] {
    return this.got.filter((m) => m.stream === stream).map((m) => `${text(m.body)}@${m.pos}`);
  }
  until(check: () => boolean, what: string): Promise<void> {
    return eventually(check, what, 10_000);
  }
}

const pushRoom = (http: string, room: string, body: string) =>
  push(http, `/goim/push/room?operation=${OP}&type=live&room=${room}`, body);
const pushMid = (http: string, mid: number, body: string, query = "") =>
  push(http, `/goim/push/mids?operation=${OP}&mids=${mid}${query}`, body);

for (const kind of ["tcp", "ws"] as const) {
  Deno.test(`${kind}: embedded server: live, restart with positions, room change, acks`, async () => {
    const server = await start();
    const mid = kind === "tcp" ? 7001 : 7002;
    const roomA = `sdk-${kind}-a`, roomB = `sdk-${kind}-b`;
    const A = `room:live://${roomA}`, B = `room:live://${roomB}`, M = `mid:${mid}`;
    let app = new App(server.url[kind], mid, `live://${roomA}`);
    try {
      await app.client.connect();
      // The first StreamState gives both streams a position.
      await app.until(() => app.client.positions()[A] !== undefined, "the room's state");
      await app.until(() => app.client.positions()[M] !== undefined, "the mid's state");
      for (let i = 1; i <= 3; i++) await pushRoom(server.http, roomA, `a${i}`);
      for (let i = 1; i <= 2; i++) await pushMid(server.http, mid, `m${i}`);
      await app.until(() => app.got.length === 5, "5 live messages");
      assert.deepEqual(app.seen(A), ["a1@1", "a2@2", "a3@3"]);
      assert.deepEqual(app.seen(M), ["m1@1", "m2@2"]);
      assert.ok(app.got.every((m) => m.replayed === false && m.pushId !== undefined));

      // An app restart that kept its positions: what was pushed meanwhile is replayed.
      await app.client.close();
      const kept = app.client.positions();
      for (let i = 4; i <= 6; i++) await pushRoom(server.http, roomA, `a${i}`);
      await pushMid(server.http, mid, "m3");
      // Kept before the app comes back, so that all of it is a replay (not live).
      await untilTop(server.http, A, 6);
      await untilTop(server.http, M, 3);
      app = new App(server.url[kind], mid, `live://${roomA}`, kept);
      await app.client.connect();
      await app.until(() => app.got.length === 4, "4 replayed messages");
      assert.deepEqual(app.seen(A), ["a4@4", "a5@5", "a6@6"]);
      assert.deepEqual(app.seen(M), ["m3@3"]);
      assert.ok(app.got.every((m) => m.replayed === true), "all four replayed");
      assert.deepEqual(app.losses, []);

      // Leave for room B, miss messages of A, come back: A's are synced.
      await app.client.changeRoom(`live://${roomB}`);
      await app.until(() => app.client.positions()[B] !== undefined, "room B's state");
      await pushRoom(server.http, roomA, "a7");
      await pushRoom(server.http, roomA, "a8");
      await pushRoom(server.http, roomB, "b1");
      await app.until(() => app.seen(B).length === 1, "b1");
      await app.client.changeRoom(`live://${roomA}`);
      await app.until(() => app.seen(A).length === 5, "a7 and a8 after coming back");
      assert.deepEqual(app.seen(A).slice(3), ["a7@7", "a8@8"]);
      assert.ok(app.client.streamStats().syncs >= 1);

      // An ack-requested push to the mid: the SDK acks, the push API sees it.
      const answer = await pushMid(server.http, mid, "m4", "&ack=1&wait=5000") as {
        acked: number;
        pending: number;
      };
      assert.equal(answer.acked, 1, JSON.stringify(answer));
      assert.equal(answer.pending, 0);
      assert.deepEqual(app.seen(M).at(-1), "m4@4");
      assert.deepEqual(app.losses, []);
      assert.equal(app.client.streamStats().duplicates, 0);
    } finally {
      await app.client.close();
      await server.stop();
    }
  });
}

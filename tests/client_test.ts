// Client SDK over real sockets against the in-process fake comet
// (tests/fixtures/fake_comet.ts), on both transports.

import assert from "node:assert/strict";
import {
  backoffDelay,
  type BackoffOptions,
  GoimClient,
  type GoimClientError,
  type GoimClientEvents,
  type GoimClientOptions,
  type PushMessage,
} from "../client/mod.ts";
import { type AuthToken, ReasonCode, text, utf8 } from "../protocol/mod.ts";
import { FakeComet } from "./fixtures/fake_comet.ts";

const KINDS = ["tcp", "ws"] as const;
type Kind = typeof KINDS[number];

const TOKEN: AuthToken = {
  mid: 42,
  key: "k-42",
  room_id: "live://1000",
  platform: "test",
  accepts: [1000, 1001],
};

// Resolves with the next matching event; fails the test after `ms`.
async function waitEvent<K extends keyof GoimClientEvents>(
  client: GoimClient,
  type: K,
  pred: (ev: GoimClientEvents[K]) => boolean = () => true,
  ms = 5_000,
): Promise<GoimClientEvents[K]> {
  let off = () => {};
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await new Promise<GoimClientEvents[K]>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${String(type)} event within ${ms} ms`)), ms);
      off = client.on(type, (ev) => {
        if (pred(ev)) resolve(ev);
      });
    });
  } finally {
    off();
    clearTimeout(timer);
  }
}

// Collects message events; `until(n)` resolves once n have arrived.
function collectMessages(client: GoimClient) {
  const got: PushMessage[] = [];
  let wake = () => {};
  client.on("message", (m) => {
    got.push(m);
    wake();
  });
  return {
    got,
    async until(n: number, ms = 5_000): Promise<PushMessage[]> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          timer = setTimeout(
            () => reject(new Error(`${got.length}/${n} messages in ${ms} ms`)),
            ms,
          );
          wake = () => {
            if (got.length >= n) resolve();
          };
          wake();
        });
      } finally {
        clearTimeout(timer);
      }
      return got;
    },
  };
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<GoimClientError> {
  try {
    await p;
  } catch (e) {
    const err = e as GoimClientError;
    assert.equal(err.name, "GoimClientError", String(e));
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected a rejection with code ${code}`);
}

// Runs `fn` with a fake comet and a client on `kind`; always releases both.
async function withClient(
  kind: Kind,
  opts: Partial<GoimClientOptions>,
  fn: (client: GoimClient, comet: FakeComet) => Promise<void>,
  comet?: FakeComet,
): Promise<void> {
  const server = comet ?? await FakeComet.start();
  const client = new GoimClient({
    url: server.url(kind),
    token: TOKEN,
    reconnect: { initialDelayMs: 10, maxDelayMs: 50, jitter: "none" },
    ...opts,
  });
  try {
    await fn(client, server);
  } finally {
    await client.close();
    await server.close();
  }
}

for (const kind of KINDS) {
  Deno.test(`${kind}: connect authenticates with the token and emits auth`, async () => {
    await withClient(kind, {}, async (client, comet) => {
      const auth = client.once("auth");
      await client.connect();
      assert.equal(client.state, "connected");
      assert.equal(client.connected, true);
      const ev = await auth;
      assert.equal(ev.attempt, 0);
      assert.equal(ev.reconnected, false);
      const s = await comet.session(0);
      assert.equal(s.kind, kind);
      assert.deepEqual(s.token, TOKEN);
      assert.equal(s.frames[0].op, 7);
    });
  });

  Deno.test(`${kind}: op 6 on auth rejects connect with the reason, no reconnect`, async () => {
    const comet = await FakeComet.start({
      authorize: () => ({ code: ReasonCode.AuthFailed, message: "bad token" }),
    });
    await withClient(kind, {}, async (client) => {
      const err = await rejectsWith(client.connect(), "auth_failed");
      assert.deepEqual(err.reason, { code: 4001, message: "bad token" });
      assert.equal(client.state, "closed");
      assert.equal(comet.auths.length, 1);
      assert.equal(comet.sessions.length, 0);
    }, comet);
  });

  Deno.test(`${kind}: auth timeout rejects connect`, async () => {
    const comet = await FakeComet.start({ silentAuth: true });
    await withClient(kind, { authTimeoutMs: 100 }, async (client) => {
      await rejectsWith(client.connect(), "auth_timeout");
      assert.equal(client.state, "closed");
    }, comet);
  });

  Deno.test(`${kind}: connect to a closed port rejects with connect_failed`, async () => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = l.addr.port;
    l.close();
    const url = kind === "tcp" ? `tcp://127.0.0.1:${port}` : `ws://127.0.0.1:${port}/sub`;
    const client = new GoimClient({ url, token: TOKEN });
    await rejectsWith(client.connect(), "connect_failed");
    assert.equal(client.state, "closed");
    await client.close();
  });

  Deno.test(`${kind}: pushed frames arrive in order as message events`, async () => {
    await withClient(kind, {}, async (client, comet) => {
      const msgs = collectMessages(client);
      await client.connect();
      const s = await comet.session(0);
      const frames = [
        { op: 1000, body: utf8("one") },
        { op: 1001, body: utf8("two") },
        { op: 1000, body: utf8("three") },
      ];
      await s.push(frames); // TCP: one write; WS: one op 9 envelope of 3 frames
      if (kind === "tcp") await s.push(frames, "bytewise");
      const n = kind === "tcp" ? 6 : 3;
      const got = await msgs.until(n);
      assert.equal(got.length, n);
      assert.deepEqual(
        got.map((m) => [m.op, text(m.body), m.ver, m.seq]),
        [...frames, ...(kind === "tcp" ? frames : [])].map((f) => [f.op, text(f.body), 1, 0]),
      );
    });
  });

  Deno.test(`${kind}: a large push (split across reads) arrives intact`, async () => {
    await withClient(kind, {}, async (client, comet) => {
      const msgs = collectMessages(client);
      await client.connect();
      const s = await comet.session(0);
      const big = new Uint8Array(300_000).map((_, i) => i % 251);
      await s.push([{ op: 1000, body: big }, { op: 1001, body: utf8("after") }]);
      const got = await msgs.until(2);
      assert.deepEqual(got[0].body, big);
      assert.equal(text(got[1].body), "after");
    });
  });

  Deno.test(`${kind}: a frame above maxBody ends the connection as a protocol error`, async () => {
    await withClient(
      kind,
      { maxBody: 1024, reconnect: { enabled: false } },
      async (client, comet) => {
        await client.connect();
        const s = await comet.session(0);
        const dc = waitEvent(client, "disconnect");
        await s.push([{ op: 1000, body: new Uint8Array(2048) }]);
        const ev = await dc;
        assert.equal(ev.error.code, "protocol");
        assert.equal(ev.willReconnect, false);
        assert.equal(client.state, "closed");
      },
    );
  });

  Deno.test(`${kind}: changeRoom, sub, unsub and send resolve on their replies`, async () => {
    await withClient(kind, {}, async (client, comet) => {
      await client.connect();
      const s = await comet.session(0);
      await client.changeRoom("live://2000");
      assert.equal(s.room, "live://2000");
      assert.equal(client.room, "live://2000");
      await client.sub([1002, 1003]);
      assert.deepEqual([...s.accepts].sort(), [1000, 1001, 1002, 1003]);
      await client.unsub([1000]);
      assert.deepEqual([...s.accepts].sort(), [1001, 1002, 1003]);
      assert.deepEqual(client.accepts.sort(), [1001, 1002, 1003]);
      await Promise.all([client.send("hello"), client.send(utf8("world"))]);
      assert.deepEqual(s.sent.map(text), ["hello", "world"]);
      // Requests carry distinct seqs, echoed back.
      const seqs = s.frames.map((f) => f.seq);
      assert.equal(new Set(seqs).size, seqs.length);
    });
  });

  Deno.test(`${kind}: requests time out, and reject when the connection drops`, async () => {
    const comet = await FakeComet.start({ ignoreOps: [4, 12] });
    await withClient(kind, { requestTimeoutMs: 100 }, async (client, comet) => {
      await rejectsWith(client.send("x"), "not_connected");
      await client.connect();
      await rejectsWith(client.send("lost"), "timeout");
      const s = await comet.session(0);
      comet.options.ignoreOps = [12];
      const pending = client.changeRoom("live://9");
      const dc = waitEvent(client, "disconnect");
      await s.close();
      await rejectsWith(pending, "disconnected");
      await dc;
      assert.equal(client.room, "live://1000", "room unchanged after a failed change");
    }, comet);
  });

  Deno.test(`${kind}: heartbeats report the online count`, async () => {
    const comet = await FakeComet.start({ online: 1234 });
    await withClient(kind, { heartbeatIntervalMs: 50 }, async (client) => {
      const beats: number[] = [];
      client.on("heartbeat", (h) => beats.push(h.online));
      const first = waitEvent(client, "heartbeat");
      await client.connect();
      assert.deepEqual(await first, { online: 1234 });
      assert.equal(client.lastOnline, 1234);
      comet.options.online = 99;
      // The interval keeps beating: a later reply carries the new count.
      await waitEvent(client, "heartbeat", (h) => h.online === 99);
      assert.ok(beats.length >= 2);
      assert.equal(client.lastOnline, 99);
    }, comet);
  });

  Deno.test(`${kind}: unanswered heartbeats for 2 intervals mean dead`, async () => {
    const comet = await FakeComet.start({ answerHeartbeats: false });
    await withClient(kind, { heartbeatIntervalMs: 30 }, async (client) => {
      await client.connect();
      const ev = await waitEvent(client, "disconnect");
      assert.equal(ev.error.code, "heartbeat_timeout");
      assert.equal(ev.willReconnect, true);
      comet.options.answerHeartbeats = true;
      await waitEvent(client, "auth");
    }, comet);
  });

  Deno.test(`${kind}: server close → reconnect re-auths with the current room and accepts`, async () => {
    await withClient(kind, { random: () => 0.5 }, async (client, comet) => {
      await client.connect();
      await client.changeRoom("live://2000");
      await client.sub([1005]);
      await client.unsub([1000]);
      const s0 = await comet.session(0);

      // An abrupt drop (no op 6).
      let dc = waitEvent(client, "disconnect");
      const rc = waitEvent(client, "reconnect");
      let auth = waitEvent(client, "auth");
      await s0.close();
      const d1 = await dc;
      assert.equal(d1.willReconnect, true);
      assert.equal(d1.attempt, 1);
      assert.equal(d1.delayMs, 10);
      assert.equal(d1.reason, undefined);
      assert.deepEqual(await rc, { attempt: 1, delayMs: 10 });
      const a1 = await auth;
      assert.equal(a1.reconnected, true);
      assert.equal(a1.attempt, 1);
      const s1 = await comet.session(1);
      assert.deepEqual(s1.token, { ...TOKEN, room_id: "live://2000", accepts: [1001, 1005] });
      assert.equal(client.state, "connected");

      // An op 6 with a code that allows reconnecting.
      dc = waitEvent(client, "disconnect");
      auth = waitEvent(client, "auth");
      const reason = { code: ReasonCode.ShuttingDown, message: "bye" };
      await s1.disconnect(reason);
      const d2 = await dc;
      assert.deepEqual(d2.reason, reason);
      assert.equal(d2.attempt, 1, "the attempt counter resets after a successful auth");
      assert.equal(d2.willReconnect, true);
      await auth;
      assert.equal((await comet.session(2)).room, "live://2000");
      await client.send("still works");
    });
  });

  Deno.test(`${kind}: op 6 auth failure on a reconnect stops reconnecting`, async () => {
    await withClient(kind, {}, async (client, comet) => {
      await client.connect();
      const s0 = await comet.session(0);
      comet.options.authorize = () => ({ code: ReasonCode.AuthFailed, message: "revoked" });
      const final = waitEvent(client, "disconnect", (d) => !d.willReconnect);
      await s0.close();
      const d = await final;
      assert.deepEqual(d.reason, { code: 4001, message: "revoked" });
      assert.equal(d.error.code, "auth_failed");
      assert.equal(client.state, "closed");
      assert.equal(comet.auths.length, 2);
    });
  });

  Deno.test(`${kind}: close() during the backoff stops reconnects`, async () => {
    await withClient(
      kind,
      { reconnect: { initialDelayMs: 60_000, jitter: "none" } },
      async (client, comet) => {
        await client.connect();
        const dc = waitEvent(client, "disconnect");
        await (await comet.session(0)).close();
        const d = await dc;
        assert.equal(d.willReconnect, true);
        assert.equal(client.state, "reconnecting");
        await client.close(); // must clear the 60 s timer (the sanitizer checks)
        assert.equal(client.state, "closed");
        assert.equal(comet.auths.length, 1);
      },
    );
  });

  Deno.test(`${kind}: close() while connecting rejects connect with closed`, async () => {
    const comet = await FakeComet.start({ silentAuth: true });
    await withClient(kind, {}, async (client, comet) => {
      const connecting = client.connect();
      assert.equal(client.state, "connecting");
      await comet.auth(0); // op 7 reached the server, which never answers
      await client.close();
      await rejectsWith(connecting, "closed");
      assert.equal(client.state, "closed");
    }, comet);
  });

  Deno.test(`${kind}: a throwing listener is reported as an error event`, async () => {
    await withClient(kind, {}, async (client, comet) => {
      const msgs = collectMessages(client);
      client.on("message", (m) => {
        if (m.op === 1000) throw new Error("listener bug");
      });
      const error = client.once("error");
      await client.connect();
      const s = await comet.session(0);
      await s.push([{ op: 1000, body: utf8("a") }, { op: 1001, body: utf8("b") }]);
      assert.equal((await error as Error).message, "listener bug");
      // The connection and the other listeners carry on.
      assert.deepEqual((await msgs.until(2)).map((m) => m.op), [1000, 1001]);
      await client.send("still up");
    });
  });

  Deno.test(`${kind}: close() while connected emits a final disconnect`, async () => {
    await withClient(kind, {}, async (client, comet) => {
      await client.connect();
      const s = await comet.session(0);
      const dc = waitEvent(client, "disconnect");
      await client.close();
      const d = await dc;
      assert.equal(d.error.code, "closed");
      assert.equal(d.willReconnect, false);
      await s.closed;
      assert.equal(comet.auths.length, 1);
      await rejectsWith(client.send("late"), "not_connected");
      // A closed client can connect again.
      await client.connect();
      await comet.session(1);
    });
  });
}

Deno.test("unsupported URL scheme rejects with connect_failed", async () => {
  const client = new GoimClient({ url: "http://127.0.0.1:1/", token: TOKEN });
  await rejectsWith(client.connect(), "connect_failed");
  await client.close();
});

Deno.test("backoffDelay grows by the factor and caps at maxDelayMs", () => {
  const o: BackoffOptions = { initialDelayMs: 500, maxDelayMs: 30_000, factor: 2, jitter: "none" };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, o)),
    [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000],
  );
  assert.equal(backoffDelay(10_000, o), 30_000, "no overflow for huge attempts");
  assert.equal(backoffDelay(0, o), 500, "attempts below 1 count as 1");
  assert.equal(backoffDelay(3, { ...o, factor: 3 }), 4500);
});

Deno.test("backoffDelay jitter stays within its bounds", () => {
  const base: BackoffOptions = {
    initialDelayMs: 1000,
    maxDelayMs: 8000,
    factor: 2,
    jitter: "full",
  };
  for (const attempt of [1, 2, 3, 4, 10]) {
    const b = Math.min(8000, 1000 * 2 ** (attempt - 1));
    // full: [0, b)
    assert.equal(backoffDelay(attempt, base, () => 0), 0);
    assert.equal(backoffDelay(attempt, base, () => 0.5), b / 2);
    assert.ok(backoffDelay(attempt, base, () => 0.999999) < b);
    // equal: [b/2, b)
    const eq = { ...base, jitter: "equal" as const };
    assert.equal(backoffDelay(attempt, eq, () => 0), b / 2);
    assert.equal(backoffDelay(attempt, eq, () => 0.5), (3 * b) / 4);
    assert.ok(backoffDelay(attempt, eq, () => 0.999999) < b);
  }
  // A misbehaving random() is clamped into [0, 1).
  assert.ok(backoffDelay(1, base, () => 7) < 1000);
  assert.equal(backoffDelay(1, base, () => NaN), 0);
  // Many draws with Math.random stay in range.
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(4, { ...base, jitter: "equal" });
    assert.ok(d >= 4000 && d < 8000, `${d}`);
  }
});

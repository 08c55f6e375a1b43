// The SDK's reconnect to other comets (client/nodes.ts, GoimClient `nodes`):
// URLs built from a goim NodesReply, the rotation order, the bounded nodes
// request against a real HTTP server, and reconnects between real fake
// comets (tests/fixtures/fake_comet.ts) on both transports.

import assert from "node:assert/strict";
import {
  fetchNodeUrls,
  GoimClient,
  type GoimClientError,
  type GoimClientEvents,
  MAX_NODE_CANDIDATES,
  MAX_NODES_REPLY_BYTES,
  NodeRotation,
  type NodesReply,
  nodeUrls,
  openTransport,
  resolveNodes,
} from "../client/mod.ts";
import type { AuthToken } from "../protocol/mod.ts";
import { FakeComet } from "./fixtures/fake_comet.ts";

const TOKEN: AuthToken = {
  mid: 5,
  key: "k-5",
  room_id: "live://1",
  platform: "test",
  accepts: [1000],
};

const reply = (nodes: string[], ports: Partial<NodesReply> = {}): NodesReply => ({
  nodes,
  tcp_port: 3101,
  ws_port: 3102,
  wss_port: 3103,
  ...ports,
});

const hrefs = (urls: URL[]) => urls.map((u) => u.href);

Deno.test("nodeUrls: the template's scheme, the answer's port, the WebSocket path and query", () => {
  const r = reply(["10.0.0.5", "comet-2.example.com"]);
  assert.deepEqual(hrefs(nodeUrls(r, new URL("tcp://127.0.0.1:9999"))), [
    "tcp://10.0.0.5:3101",
    "tcp://comet-2.example.com:3101",
  ]);
  assert.deepEqual(hrefs(nodeUrls(r, new URL("ws://127.0.0.1:1/sub?x=1"))), [
    "ws://10.0.0.5:3102/sub?x=1",
    "ws://comet-2.example.com:3102/sub?x=1",
  ]);
  assert.deepEqual(hrefs(nodeUrls(r, new URL("wss://a.example/sub"))), [
    "wss://10.0.0.5:3103/sub",
    "wss://comet-2.example.com:3103/sub",
  ]);
});

Deno.test("nodeUrls: IPv6 bracketed; ports, paths, credentials and blanks skipped; deduped; capped", () => {
  const tcp = new URL("tcp://127.0.0.1:1");
  assert.deepEqual(
    hrefs(nodeUrls(reply(["::1", "[fe80::1]", "h:80", "a/b", "u@h", "a b", "", "x", "x"]), tcp)),
    ["tcp://[::1]:3101", "tcp://[fe80::1]:3101", "tcp://x:3101"],
  );
  assert.deepEqual(nodeUrls(reply(["x"], { tcp_port: 0 }), tcp), [], "port 0: not offered");
  assert.deepEqual(nodeUrls(reply(["x"], { tcp_port: 70_000 }), tcp), []);
  assert.deepEqual(nodeUrls(reply(["x"]), new URL("http://x/")), [], "not a comet scheme");
  const many = Array.from({ length: 200 }, (_, i) => `n${i}`);
  assert.equal(nodeUrls(reply(many), tcp).length, MAX_NODE_CANDIDATES);
});

Deno.test("NodeRotation: failed comets go last, the longest-ago failure first; auth forgets", () => {
  const [a, b, c] = ["a", "b", "c"].map((h) => new URL(`tcp://${h}:1`));
  const r = new NodeRotation();
  assert.equal(r.pick([a, b, c]), a, "no failure: the answer's order");
  r.failed(a);
  assert.equal(r.pick([a, b, c]), b);
  r.failed(b);
  r.failed(c);
  assert.equal(r.pick([a, b, c]), a, "all failed: the oldest failure");
  r.failed(a);
  assert.equal(r.pick([a, b, c]), b);
  r.succeeded();
  assert.equal(r.pick([a, b, c]), a);
  assert.throws(() => r.pick([]), RangeError);
});

/** A real HTTP server on 127.0.0.1:0 answering every request with `handle`. */
async function withHttp(
  handle: (req: Request) => Response | Promise<Response>,
  fn: (url: string) => Promise<void>,
): Promise<void> {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    handle,
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/goim/nodes/weighted?platform=test`);
  } finally {
    ac.abort();
    await server.finished;
  }
}

const envelope = (data: unknown, code = 0) =>
  Response.json({ code, message: code === 0 ? "" : "nope", data });

async function rejectsWith(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e) => e as GoimClientError);
  assert.ok(err, `expected a rejection matching ${pattern}`);
  assert.equal(err.name, "GoimClientError");
  assert.equal(err.code, "connect_failed");
  assert.match(err.message, pattern);
}

Deno.test("fetchNodeUrls: logic's envelope → comet URLs; every bad answer is a clear connect_failed", async () => {
  const tcp = new URL("tcp://127.0.0.1:1");
  let answer: () => Response | Promise<Response> = () => envelope(reply(["127.0.0.2"]));
  await withHttp(() => answer(), async (url) => {
    assert.deepEqual(hrefs(await fetchNodeUrls(url, tcp)), ["tcp://127.0.0.2:3101"]);

    answer = () => new Response("down", { status: 503 });
    await rejectsWith(fetchNodeUrls(url, tcp), /HTTP 503: down/);
    answer = () => envelope(null, -401);
    await rejectsWith(fetchNodeUrls(url, tcp), /code -401: nope/);
    answer = () => new Response("<html>");
    await rejectsWith(fetchNodeUrls(url, tcp), /not JSON/);
    answer = () => envelope({ nodes: "x" });
    await rejectsWith(fetchNodeUrls(url, tcp), /data.nodes is not a list/);
    answer = () => envelope(reply(["a/b"]));
    await rejectsWith(fetchNodeUrls(url, tcp), /no usable node/);
    answer = () => new Response("x".repeat(MAX_NODES_REPLY_BYTES + 1));
    await rejectsWith(fetchNodeUrls(url, tcp), /over the 65536-byte limit/);
    // Chunked, no Content-Length: the reader stops at the bound.
    answer = () =>
      new Response(
        new ReadableStream({
          pull(c) {
            c.enqueue(new Uint8Array(16 * 1024));
          },
        }),
      );
    await rejectsWith(fetchNodeUrls(url, tcp), /answer is over the 65536-byte limit/);
  });
});

Deno.test("fetchNodeUrls: a server that never answers fails at timeoutMs", async () => {
  let release = () => {};
  const held = new Promise<void>((r) => release = r);
  await withHttp(async () => {
    await held;
    return envelope(reply(["x"]));
  }, async (url) => {
    const t0 = performance.now();
    await rejectsWith(
      fetchNodeUrls(url, new URL("tcp://h:1"), { timeoutMs: 200 }),
      /no answer within 200 ms/,
    );
    const took = performance.now() - t0;
    assert.ok(took >= 190 && took < 2_000, `failed after ${took} ms`);
    release();
  });
});

Deno.test("resolveNodes: a callback's URLs (bounded, other schemes skipped), a failing or silent one rejects", async () => {
  const tcp = new URL("tcp://h:1");
  assert.deepEqual(
    hrefs(
      await resolveNodes(
        () => ["tcp://a:1", "http://b/", "nonsense", new URL("ws://c:2/sub")],
        tcp,
      ),
    ),
    ["tcp://a:1", "ws://c:2/sub"],
  );
  await rejectsWith(resolveNodes(() => Promise.reject(new Error("boom")), tcp), /boom/);
  await rejectsWith(resolveNodes(() => [], tcp), /no usable URL/);
  let release = () => {};
  const silent = new Promise<string[]>((r) => release = () => r([]));
  await rejectsWith(resolveNodes(() => silent, tcp, { timeoutMs: 50 }), /no answer within 50 ms/);
  release();
});

// The next event of `type`; rejects after 5 s.
const next = <K extends keyof GoimClientEvents>(client: GoimClient, type: K) =>
  client.once(type, { signal: AbortSignal.timeout(5_000) });

const portOf = (url: string) => Number(new URL(url).port);

for (const kind of ["tcp", "ws"] as const) {
  Deno.test(`${kind}: with nodes = logic's endpoint, a dropped client reconnects to the comet it names`, async () => {
    const a = await FakeComet.start();
    const b = await FakeComet.start();
    let client: GoimClient | undefined;
    try {
      await withHttp(
        () =>
          envelope(reply(["127.0.0.1"], {
            tcp_port: portOf(b.tcpUrl),
            ws_port: portOf(b.wsUrl),
          })),
        async (endpoint) => {
          client = new GoimClient({
            url: a.url(kind),
            token: TOKEN,
            nodes: endpoint,
            reconnect: { initialDelayMs: 10, maxDelayMs: 50, jitter: "none" },
          });
          const first = next(client, "auth");
          await client.connect();
          assert.equal((await first).url, new URL(a.url(kind)).href);
          const back = next(client, "auth");
          await (await a.session(0)).close();
          const ev = await back;
          assert.equal(ev.url, new URL(b.url(kind)).href, "reconnected to the node of the answer");
          assert.equal(client.url, ev.url);
          assert.deepEqual(await b.auth(0), TOKEN, "same token on the new comet");
          assert.equal(a.auths.length, 1, "the old comet was not tried again");
        },
      );
    } finally {
      await client?.close();
      await a.close();
      await b.close();
    }
  });
}

Deno.test("tcp: with a nodes callback, each reconnect tries the next comet that has not failed", async () => {
  const a = await FakeComet.start();
  const b = await FakeComet.start();
  let bClosed = false;
  let calls = 0;
  const client = new GoimClient({
    url: a.tcpUrl,
    token: TOKEN,
    nodes: () => {
      calls++;
      return [a.tcpUrl, b.tcpUrl];
    },
    reconnect: { initialDelayMs: 10, maxDelayMs: 50, jitter: "none" },
  });
  try {
    await client.connect();
    // a drops the client (a itself stays up): b is next, though listed second.
    let back = next(client, "auth");
    await (await a.session(0)).close();
    assert.equal((await back).url, new URL(b.tcpUrl).href);
    // b dies: a, still listed and never failed since the last auth, is next.
    back = next(client, "auth");
    await b.close();
    bClosed = true;
    assert.equal((await back).url, new URL(a.tcpUrl).href);
    assert.equal(a.sessions.length, 2);
    assert.equal(calls, 2, "one lookup per reconnect attempt");
  } finally {
    await client.close();
    await a.close();
    if (!bClosed) await b.close();
  }
});

Deno.test("tcp: a failed nodes lookup is an error event and the reconnect falls back to url", async () => {
  const a = await FakeComet.start();
  let client: GoimClient | undefined;
  try {
    await withHttp(() => new Response("no", { status: 500 }), async (endpoint) => {
      client = new GoimClient({
        url: a.tcpUrl,
        token: TOKEN,
        nodes: endpoint,
        reconnect: { initialDelayMs: 10, maxDelayMs: 50, jitter: "none" },
      });
      await client.connect();
      const errors: unknown[] = [];
      client.on("error", (e) => errors.push(e));
      const back = next(client, "auth");
      await (await a.session(0)).close();
      assert.equal((await back).url, new URL(a.tcpUrl).href);
      assert.ok(errors.some((e) => /nodes .*HTTP 500: no/.test(String(e))), String(errors));
    });
  } finally {
    await client?.close();
    await a.close();
  }
});

Deno.test("tcp: close() during a nodes lookup stops the reconnect", async () => {
  const a = await FakeComet.start();
  let release = () => {};
  const held = new Promise<string[]>((r) => release = () => r([a.tcpUrl]));
  let asked = () => {};
  const lookup = new Promise<void>((r) => asked = r);
  let opened = 0;
  const client = new GoimClient({
    url: a.tcpUrl,
    token: TOKEN,
    nodes: () => {
      asked();
      return held;
    },
    transport: (url, opts) => {
      opened++;
      return openTransport(url, opts);
    },
    reconnect: { initialDelayMs: 10, maxDelayMs: 50, jitter: "none" },
  });
  try {
    await client.connect();
    await (await a.session(0)).close();
    await lookup;
    await client.close();
    release();
    await held;
    // One macrotask turn: every continuation of the lookup has run by then.
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(client.state, "closed");
    assert.equal(opened, 1, "no transport opened after close()");
  } finally {
    await client.close();
    await a.close();
  }
});

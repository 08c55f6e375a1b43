// infra/http_server.ts over real sockets: HTTP/1.1 framing (keep-alive,
// pipelining, chunked bodies, 100-continue, HEAD), the refusals of
// malformed or ambiguous requests, the idle and send timeouts, shutdown;
// plus the startup exposure rule and the crash guard.
import assert from "node:assert/strict";
import { type Config, loadConfig } from "../infra/config.ts";
import {
  checkExposure,
  type HttpLimits,
  type HttpServer,
  isLoopbackHost,
  MAX_HEADER_BYTES,
  type ServeHandler,
  serveHttp,
} from "../infra/http_server.ts";
import { createLogger } from "../infra/log.ts";
import { createMetrics, type Metrics } from "../infra/metrics.ts";
import { eventually } from "./eventually.ts";
import { rawRequest } from "./fixtures/http_raw.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

const LIMITS: HttpLimits = {
  headerTimeoutMs: 2000,
  bodyTimeoutMs: 2000,
  idleTimeoutMs: 2000,
  maxConnections: 64,
};

/** An echo handler: method, path, body length and text, peer address. */
const echo: ServeHandler = async (req, info) => {
  const body = req.body ? new Uint8Array(await req.arrayBuffer()) : new Uint8Array(0);
  return Response.json({
    method: req.method,
    path: new URL(req.url).pathname,
    host: new URL(req.url).host,
    length: body.length,
    body: text.decode(body.subarray(0, 64)),
    peer: info.remoteAddr.hostname,
    ua: req.headers.get("user-agent"),
  });
};

function start(
  handler: ServeHandler = echo,
  limits: Partial<HttpLimits> = {},
  metrics?: Metrics,
): HttpServer {
  return serveHttp({
    bind: "127.0.0.1:0",
    listener: "test",
    limits: { ...LIMITS, ...limits },
    log: createLogger({ level: "error", writer: () => {} }),
    metrics,
  }, handler);
}

/** Sends `request`, reads until the server closes (or `capMs`). */
async function exchange(port: number, request: string | Uint8Array, capMs = 5000) {
  const r = await rawRequest(port, request, capMs);
  return { out: r.text, closed: r.closedAfter !== null };
}

/** Splits concatenated HTTP responses (Content-Length framed). */
function responses(raw: string): { status: number; headers: string; body: string }[] {
  const list = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) break;
    const head = rest.slice(0, end);
    const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    const status = Number(head.slice(9, 12));
    list.push({ status, headers: head, body: rest.slice(end + 4, end + 4 + len) });
    rest = rest.slice(end + 4 + len);
  }
  return list;
}

Deno.test("keep-alive and pipelining: requests on one connection are answered in order", async () => {
  const server = start();
  try {
    const one = "POST /a HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\n\r\nhello";
    const two = "GET /b HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t\r\n\r\n";
    const last = "GET /c HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
    const { out, closed } = await exchange(server.addr.port, one + two + "\r\n" + last);
    assert.ok(closed);
    const rs = responses(out);
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200]);
    const bodies = rs.map((r) => JSON.parse(r.body));
    assert.deepEqual(bodies.map((b) => [b.method, b.path, b.length]), [
      ["POST", "/a", 5],
      ["GET", "/b", 0],
      ["GET", "/c", 0],
    ]);
    assert.equal(bodies[0].body, "hello");
    assert.equal(bodies[0].host, "example.test");
    assert.equal(bodies[0].peer, "127.0.0.1");
    assert.equal(bodies[1].ua, "t");
    assert.match(rs[2].headers, /\r\nconnection: close/);
    assert.doesNotMatch(rs[0].headers, /connection: close/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("HTTP/1.0 closes unless it asks for keep-alive", async () => {
  const server = start();
  try {
    const plain = await exchange(server.addr.port, "GET /x HTTP/1.0\r\n\r\n");
    assert.ok(plain.closed);
    assert.match(plain.out, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(plain.out, /\r\nconnection: close\r\n/);
    const kept = await exchange(
      server.addr.port,
      "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /y HTTP/1.0\r\n\r\n",
    );
    const rs = responses(kept.out);
    assert.equal(rs.length, 2);
    assert.match(rs[0].headers, /\r\nconnection: keep-alive/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("chunked bodies (extensions, trailers) and large bodies reach the handler whole", async () => {
  const server = start();
  try {
    const chunked = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n" +
      "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const rs = responses((await exchange(server.addr.port, chunked)).out);
    assert.equal(rs.length, 2);
    assert.deepEqual(JSON.parse(rs[0].body).body, "hello world");
    assert.equal(JSON.parse(rs[1].body).path, "/after");
    // Over PREREAD_BYTES: streamed to the handler.
    const big = new Uint8Array(300_000).fill(97);
    const head = utf8.encode(
      `POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n`,
    );
    const both = new Uint8Array(head.length + big.length);
    both.set(head);
    both.set(big, head.length);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    const reading = (async () => {
      let out = "";
      const buf = new Uint8Array(4096);
      while (!out.includes("}")) {
        const n = await conn.read(buf);
        if (n === null) break;
        out += text.decode(buf.subarray(0, n));
      }
      return out;
    })();
    let off = 0;
    while (off < both.length) off += await conn.write(both.subarray(off));
    const got = await reading;
    conn.close();
    assert.equal(JSON.parse(responses(got)[0].body).length, 300_000);
  } finally {
    await server.shutdown();
  }
});

Deno.test("Expect: 100-continue gets 100 Continue before the final response", async () => {
  const server = start();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(utf8.encode(
      "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    ));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    assert.equal(text.decode(buf.subarray(0, n!)), "HTTP/1.1 100 Continue\r\n\r\n");
    await conn.write(utf8.encode("body"));
    let out = "";
    while (!out.includes("}")) out += text.decode(buf.subarray(0, (await conn.read(buf))!));
    conn.close();
    assert.equal(JSON.parse(responses(out)[0].body).body, "body");
  } finally {
    await server.shutdown();
  }
});

Deno.test("HEAD gets the headers and Content-Length of GET, no body", async () => {
  const server = start(() => new Response("twelve bytes"));
  try {
    const { out } = await exchange(
      server.addr.port,
      "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.match(
      out,
      /^HTTP\/1\.1 200 OK\r\n[^]*content-length: 12\r\n[^]*\r\n\r\nHTTP\/1\.1 200 OK/,
    );
    assert.ok(out.endsWith("\r\n\r\ntwelve bytes"));
  } finally {
    await server.shutdown();
  }
});

Deno.test("malformed or ambiguous requests get 400/431/501/505 and a closed connection", async () => {
  const metrics = createMetrics("test");
  const server = start(echo, {}, metrics);
  try {
    const cases: [string, string, number][] = [
      ["no version", "GET /\r\n\r\n", 400],
      ["HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 505],
      ["space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400],
      ["obs-fold", "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400],
      ["two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
      [
        "Content-Length and chunked",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
      ],
      [
        "conflicting Content-Length",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        400,
      ],
      ["negative Content-Length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400],
      ["gzip coding", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501],
      ["bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400],
      ["authority form", "CONNECT example.test:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400],
      ["header too large", `GET / HTTP/1.1\r\nX-Big: ${"a".repeat(MAX_HEADER_BYTES)}\r\n\r\n`, 431],
    ];
    for (const [what, request, status] of cases) {
      const { out, closed } = await exchange(server.addr.port, request);
      assert.ok(closed, `${what}: not closed`);
      assert.equal(Number(out.slice(9, 12)), status, `${what}: ${out.slice(0, 40)}`);
    }
    assert.match(
      await metrics.text(),
      /goim_test_http_limit_closes_total\{listener="test",limit="header_size"\} 1/,
    );
    // Still serving.
    const ok = await exchange(server.addr.port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert.match(ok.out, /^HTTP\/1\.1 200 /);
  } finally {
    await server.shutdown();
  }
});

Deno.test("a handler that throws is a 500; the server keeps serving", async () => {
  const server = start((req) => {
    if (new URL(req.url).pathname === "/boom") throw new Error("handler bug");
    return new Response("fine");
  });
  try {
    const { out } = await exchange(
      server.addr.port,
      "GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.deepEqual(responses(out).map((r) => r.status), [500, 200]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("idle keep-alive connections close after http.idle_timeout", async () => {
  const server = start(echo, { idleTimeoutMs: 300 });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(utf8.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    const t0 = performance.now();
    const buf = new Uint8Array(4096);
    let out = "";
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      out += text.decode(buf.subarray(0, n));
    }
    const elapsed = performance.now() - t0;
    conn.close();
    assert.match(out, /^HTTP\/1\.1 200 /);
    assert.ok(elapsed >= 250 && elapsed < 3000, `closed after ${elapsed} ms`);
  } finally {
    await server.shutdown();
  }
});

Deno.test("a peer that does not read its response is cut off after http.idle_timeout", async () => {
  const metrics = createMetrics("test");
  const big = new Uint8Array(16 * 1024 * 1024);
  const server = start(() => new Response(big), { idleTimeoutMs: 300 }, metrics);
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(utf8.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    await eventually(
      async () => /limit="send_timeout"\} 1/.test(await metrics.text()),
      "the send timeout",
      5000,
    );
    // Its slot is held until the stuck write ends: here, the peer goes away.
    assert.equal(server.connections, 1);
    conn.close();
    await eventually(() => server.connections === 0, "the connection to be released", 5000);
  } finally {
    await server.shutdown();
  }
});

Deno.test("shutdown closes idle connections, finishes requests in progress, then settles", async () => {
  const { promise: release, resolve } = Promise.withResolvers<void>();
  const { promise: entered, resolve: enter } = Promise.withResolvers<void>();
  const server = start(async () => {
    enter();
    await release;
    return new Response("done");
  });
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const busy = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await busy.write(utf8.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  await entered;
  const stopping = server.shutdown();
  const buf = new Uint8Array(4096);
  assert.equal(await idle.read(buf), null, "the idle connection is closed");
  idle.close();
  resolve();
  let out = "";
  for (;;) {
    const n = await busy.read(buf);
    if (n === null) break;
    out += text.decode(buf.subarray(0, n));
  }
  busy.close();
  assert.match(out, /^HTTP\/1\.1 200 OK\r\n[^]*connection: close\r\n[^]*\r\n\r\ndone$/);
  await stopping;
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }));
});

function config(...sets: string[]): Config {
  return loadConfig({ env: {}, args: sets.flatMap((s) => ["--set", s]), onWarning: () => {} });
}

Deno.test("checkExposure: non-loopback without a secret is an error, insecure or loopback a warning", () => {
  assert.ok(isLoopbackHost("127.0.0.1") && isLoopbackHost("[::1]") && isLoopbackHost("localhost"));
  assert.ok(!isLoopbackHost("0.0.0.0") && !isLoopbackHost("::") && !isLoopbackHost("10.0.0.1"));
  const all = { api: true, admin: ["comet", "logic", "job"] as const };
  const open = checkExposure(config(), all);
  assert.deepEqual(open.errors, []);
  assert.equal(open.warnings.length, 4); // API and three admin endpoints open to this host
  const exposed = checkExposure(
    config("logic.http.bind=0.0.0.0:3111", "job.admin.bind=0.0.0.0:3192"),
    all,
  );
  assert.equal(exposed.errors.length, 2);
  assert.match(exposed.errors[0], /^logic\.http\.bind 0\.0\.0\.0:3111 .*api_keys/);
  assert.match(exposed.errors[1], /^job\.admin\.bind 0\.0\.0\.0:3192 .*admin\.token/);
  const insecure = checkExposure(
    config(
      "logic.http.bind=0.0.0.0:3111",
      "logic.http.insecure=true",
      "job.admin.bind=0.0.0.0:3192",
      "admin.insecure=true",
    ),
    all,
  );
  assert.deepEqual(insecure.errors, []);
  assert.ok(insecure.warnings.some((w) => /logic\.http\.insecure = true/.test(w)));
  assert.ok(insecure.warnings.some((w) => /admin\.insecure = true/.test(w)));
  const keyed = checkExposure(
    config(
      "logic.http.bind=0.0.0.0:3111",
      "logic.auth.api_keys=k",
      "comet.admin.bind=0.0.0.0:3190",
      "logic.admin.bind=0.0.0.0:3191",
      "job.admin.bind=0.0.0.0:3192",
      "admin.token=t",
    ),
    all,
  );
  assert.deepEqual(keyed, { errors: [], warnings: [] });
  // Only the listeners a process serves are checked.
  assert.deepEqual(
    checkExposure(config("logic.http.bind=0.0.0.0:3111"), { admin: ["job"] }).errors,
    [],
  );
});

Deno.test("installCrashGuard: an unhandled rejection or uncaught error is logged, not fatal", async () => {
  const script = `
    import { installCrashGuard } from "./infra/process.ts";
    import { createLogger } from "./infra/log.ts";
    installCrashGuard(createLogger({ format: "json" }));
    Promise.reject(new Error("listener rejected"));
    setTimeout(() => { throw new Error("callback threw"); }, 10);
    setTimeout(() => console.log("alive"), 200);
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    cwd: new URL("../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stderr = text.decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  assert.equal(text.decode(out.stdout).trim(), "alive");
  assert.match(stderr, /unhandled rejection; kept running.*listener rejected/);
  assert.match(stderr, /uncaught exception; kept running.*callback threw/);
});

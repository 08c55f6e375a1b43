// Issue #9 findings 3 and 8 (HTTP part), over real sockets: every HTTP
// listener bounds slow headers and bodies and open connections, survives
// running out of file descriptors, and the push API / admin endpoints
// refuse to start open to the network.
import assert from "node:assert/strict";
import { freePort } from "./e2e/cluster.ts";
import { eventually } from "./eventually.ts";
import { logicHarness } from "./fixtures/logic_fixtures.ts";
import { rawRequest, readToEnd } from "./fixtures/http_raw.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const utf8 = new TextEncoder();
const text = new TextDecoder();

/** Reads one response (Content-Length framed) off a kept-alive connection. */
async function readResponse(conn: Deno.Conn): Promise<string> {
  let out = "";
  const buf = new Uint8Array(4096);
  for (;;) {
    const end = out.indexOf("\r\n\r\n");
    if (end >= 0) {
      const len = Number(/content-length: *(\d+)/i.exec(out.slice(0, end))?.[1] ?? 0);
      if (out.length >= end + 4 + len) return out;
    }
    const n = await conn.read(buf);
    if (n === null) return out;
    out += text.decode(buf.subarray(0, n));
  }
}

Deno.test("a request trickling its header gets 408 and is closed after http.header_timeout", async () => {
  const h = logicHarness(["http.header_timeout=300ms"]);
  try {
    const { http } = await h.logic.start({ grpc: false });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: http.port });
    const t0 = performance.now();
    let open = true;
    // One byte every 20 ms: the header would take ~1.5 s.
    const trickle = (async () => {
      for (
        const b of utf8.encode(
          "GET /goim/online/total HTTP/1.1\r\nHost: x\r\nX-Slow: 1234567890\r\n\r\n",
        )
      ) {
        if (!open) return;
        try {
          await conn.write(Uint8Array.of(b));
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const got = await readToEnd(conn, t0);
    open = false;
    await trickle;
    assert.ok(got.closedAfter !== null, "the server never closed the trickling connection");
    assert.match(got.text, /^HTTP\/1\.1 408 /);
    assert.ok(got.closedAfter >= 250, `closed too early: ${got.closedAfter} ms`);
    assert.ok(got.closedAfter < 3000, `closed late: ${got.closedAfter} ms`);
  } finally {
    await h.close();
  }
});

Deno.test("a connection that sends nothing is closed after http.header_timeout", async () => {
  const h = logicHarness(["http.header_timeout=300ms"]);
  try {
    const { http, admin } = await h.logic.start({ grpc: false });
    for (const port of [http.port, admin!.port]) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const got = await readToEnd(conn, performance.now());
      assert.ok(got.closedAfter !== null, `port ${port}: never closed`);
      assert.ok(got.closedAfter >= 250 && got.closedAfter < 3000, `${got.closedAfter} ms`);
      assert.equal(got.text, "");
    }
  } finally {
    await h.close();
  }
});

Deno.test("a body that never completes gets 408 and a closed connection after http.body_timeout", async () => {
  const h = logicHarness(["http.body_timeout=300ms"]);
  try {
    const { http } = await h.logic.start({ grpc: false });
    const cases = {
      "short Content-Length body": "POST /goim/push/all?operation=1000 HTTP/1.1\r\nHost: x\r\n" +
        "Content-Length: 100\r\n\r\nonly ten b",
      "chunked body without its last chunk":
        "POST /goim/push/all?operation=1000 HTTP/1.1\r\nHost: x\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
      "large Content-Length body": "POST /goim/push/all?operation=1000 HTTP/1.1\r\nHost: x\r\n" +
        "Content-Length: 60000\r\n\r\nstarted",
    };
    for (const [what, request] of Object.entries(cases)) {
      const got = await rawRequest(http.port, request);
      assert.ok(got.closedAfter !== null, `${what}: never closed`);
      assert.match(got.text, /^HTTP\/1\.1 408 /, what);
      assert.ok(got.closedAfter >= 250 && got.closedAfter < 3000, `${what}: ${got.closedAfter} ms`);
    }
    assert.equal(h.producer.messages.length, 0, "no partial body was published");
  } finally {
    await h.close();
  }
});

Deno.test("connections over http.max_connections get 503; the ones under it are served", async () => {
  const h = logicHarness(["http.max_connections=3"]);
  const held: Deno.Conn[] = [];
  try {
    const { http, admin } = await h.logic.start({ grpc: false });
    for (let i = 0; i < 3; i++) {
      held.push(await Deno.connect({ hostname: "127.0.0.1", port: http.port }));
    }
    // Each of the three is served, so all three are admitted.
    for (const c of held) {
      await c.write(utf8.encode("GET /goim/online/total HTTP/1.1\r\nHost: x\r\n\r\n"));
      assert.match(await readResponse(c), /^HTTP\/1\.1 200 /);
    }
    const over = await rawRequest(http.port, "GET /goim/online/total HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.ok(over.closedAfter !== null, "the connection over the cap was not closed");
    assert.match(over.text, /^HTTP\/1\.1 503 /);
    // The admitted ones keep working.
    await held[0].write(utf8.encode("GET /goim/online/total HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.match(await readResponse(held[0]), /^HTTP\/1\.1 200 /);
    // Once one closes, a new connection is admitted again.
    held.pop()!.close();
    await eventually(async () => {
      const r = await rawRequest(
        http.port,
        "GET /goim/online/total HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      return /^HTTP\/1\.1 200 /.test(r.text);
    }, "a connection under the cap to be served again");
    const metrics = await (await fetch(`http://127.0.0.1:${admin!.port}/metrics`)).text();
    assert.match(
      metrics,
      /goim_logic_http_limit_closes_total\{listener="api",limit="max_connections"\} [1-9]/,
    );
  } finally {
    for (const c of held) c.close();
    await h.close();
  }
});

Deno.test("admin.token: every admin path but /healthz needs the bearer token", async () => {
  const h = logicHarness(["admin.token=a-long-admin-token-for-tests"]);
  try {
    const { admin, http } = await h.logic.start({ grpc: false });
    const base = `http://127.0.0.1:${admin!.port}`;
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
    for (const authorization of [undefined, "Bearer wrong", "a-long-admin-token-for-tests"]) {
      const res = await fetch(`${base}/metrics`, {
        headers: authorization ? { authorization } : {},
      });
      assert.equal(res.status, 401, `authorization ${authorization}`);
      assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
      await res.body?.cancel();
    }
    const ok = await fetch(`${base}/metrics`, {
      headers: { authorization: "Bearer a-long-admin-token-for-tests" },
    });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /goim_logic_/);
    // The push API is not behind the admin token.
    const api = await fetch(`http://127.0.0.1:${http.port}/goim/online/total`);
    assert.equal(api.status, 200);
    await api.body?.cancel();
  } finally {
    await h.close();
  }
});

/** A role process started for a test; stderr is collected. */
class Role {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  exited: Deno.CommandStatus | null = null;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #pump: Promise<void>;

  constructor(args: string[], opts: { nofile?: number; env?: Record<string, string> } = {}) {
    const deno = ["run", "-A", ...args];
    const cmd = opts.nofile
      ? new Deno.Command("bash", {
        args: ["-c", `ulimit -n ${opts.nofile} && exec "$0" "$@"`, Deno.execPath(), ...deno],
        cwd: ROOT,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
        env: { NO_COLOR: "1", ...opts.env },
      })
      : new Deno.Command(Deno.execPath(), {
        args: deno,
        cwd: ROOT,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
        env: { NO_COLOR: "1", ...opts.env },
      });
    const child = cmd.spawn();
    this.child = child;
    this.status = child.status.then((s) => this.exited = s);
    this.#pump = (async () => {
      let rest = "";
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        const parts = rest.split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
      }
      if (rest) this.lines.push(rest);
    })();
  }

  get stderr(): string {
    return this.lines.join("\n");
  }

  /** The exit status, or null if still running after `ms` (then it is killed). */
  async exitWithin(ms: number): Promise<Deno.CommandStatus | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const st = await Promise.race([
      this.status,
      new Promise<null>((r) => timer = setTimeout(() => r(null), ms)),
    ]);
    clearTimeout(timer);
    if (st === null) await this.stop();
    else await this.#pump;
    return st;
  }

  async stop(): Promise<void> {
    if (this.exited === null) {
      try {
        this.child.kill("SIGTERM");
      } catch {
        // gone
      }
    }
    await this.status;
    await this.#pump;
  }
}

/** `--set` flags of an embedded server on free loopback ports. */
function embeddedArgs(extra: string[] = []): { args: string[]; api: number; admin: number } {
  const api = freePort(), admin = freePort();
  const sets = [
    `comet.tcp.bind=127.0.0.1:${freePort()}`,
    `comet.websocket.bind=127.0.0.1:${freePort()}`,
    `logic.http.bind=127.0.0.1:${api}`,
    `logic.admin.bind=127.0.0.1:${admin}`,
    "comet.admin.bind=",
    "job.admin.bind=",
    "log.format=json",
    ...extra,
  ];
  return { args: ["main.ts", ...sets.flatMap((s) => ["--set", s])], api, admin };
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url);
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

Deno.test("EMFILE on the HTTP API does not end the process; the listener serves again", async () => {
  // 256 descriptors: a few hundred connections exhaust them.
  const { args, api, admin } = embeddedArgs(["http.header_timeout=60s"]);
  const role = new Role(args, { nofile: 256 });
  const held: Deno.Conn[] = [];
  try {
    await eventually(
      () => role.exited === null ? answers(`http://127.0.0.1:${api}/goim/online/total`) : true,
      "the embedded server to answer",
      30_000,
    );
    assert.equal(role.exited, null, role.stderr);
    for (let i = 0; i < 320 && role.exited === null; i++) {
      try {
        held.push(await Deno.connect({ hostname: "127.0.0.1", port: api }));
      } catch {
        break; // refused: the listener is gone (asserted below)
      }
    }
    await eventually(
      () => role.exited !== null || /http accept failed/.test(role.stderr),
      "the accept failure to be logged",
      15_000,
    );
    assert.equal(role.exited, null, `the process died:\n${role.stderr}`);
    assert.match(role.stderr, /Too many open files|os error 24/);
    for (const c of held.splice(0)) c.close();
    await eventually(
      () => answers(`http://127.0.0.1:${api}/goim/online/total`),
      "the push API to answer again",
      15_000,
    );
    assert.ok(await answers(`http://127.0.0.1:${admin}/healthz`), "the admin endpoint answers");
    assert.equal(role.exited, null);
  } finally {
    for (const c of held) c.close();
    await role.stop();
  }
});

Deno.test("the push API on a non-loopback address without api_keys refuses to start (exit 2)", async () => {
  const port = freePort();
  const { args } = embeddedArgs([`logic.http.bind=0.0.0.0:${port}`]);
  const role = new Role(args);
  const st = await role.exitWithin(20_000);
  assert.ok(st !== null, "it started anyway");
  assert.equal(st.code, 2, role.stderr);
  assert.match(role.stderr, /logic\.http\.bind 0\.0\.0\.0:\d+ is not a loopback address/);
  assert.match(role.stderr, /logic\.auth\.api_keys/);
});

Deno.test("with logic.http.insecure the open push API starts and WARNs; with api_keys it starts quietly", async () => {
  const port = freePort();
  const insecure = new Role(
    embeddedArgs([`logic.http.bind=0.0.0.0:${port}`, "logic.http.insecure=true"]).args,
  );
  try {
    await eventually(
      () => insecure.exited !== null || answers(`http://127.0.0.1:${port}/goim/online/total`),
      "the insecure push API to answer",
      30_000,
    );
    assert.equal(insecure.exited, null, insecure.stderr);
    const warn = insecure.lines.map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return {};
      }
    }).find((l) => l.level === "warn" && /logic\.http\.insecure = true/.test(l.msg));
    assert.ok(warn, `no WARN about the open API:\n${insecure.stderr}`);
  } finally {
    await insecure.stop();
  }
  const port2 = freePort();
  const keyed = new Role(
    embeddedArgs([`logic.http.bind=0.0.0.0:${port2}`, "logic.auth.api_keys=k-1234"]).args,
  );
  try {
    await eventually(
      async () => {
        if (keyed.exited !== null) return true;
        try {
          const res = await fetch(`http://127.0.0.1:${port2}/goim/online/total`);
          await res.body?.cancel();
          return res.status === 401;
        } catch {
          return false;
        }
      },
      "the keyed push API to answer 401 without a key",
      30_000,
    );
    assert.equal(keyed.exited, null, keyed.stderr);
    assert.doesNotMatch(keyed.stderr, /api_keys is empty|logic\.http\.insecure/);
  } finally {
    await keyed.stop();
  }
});

Deno.test("an admin endpoint on a non-loopback address without admin.token refuses to start (exit 2)", async () => {
  // Engines that cannot open: only the bind rule can end these with code 2.
  const engines = [
    "queue.engine=kafka",
    "queue.kafka.brokers=127.0.0.1:1",
    "registry.engine=redis",
    "sessions.engine=redis",
    "redis.url=redis://127.0.0.1:1",
  ];
  const cases: [string, string[]][] = [
    ["main.ts", embeddedArgs([`logic.admin.bind=0.0.0.0:${freePort()}`]).args],
    ["comet/main.ts", [
      "comet/main.ts",
      ...[
        `comet.admin.bind=0.0.0.0:${freePort()}`,
        `comet.tcp.bind=127.0.0.1:${freePort()}`,
        `comet.websocket.bind=127.0.0.1:${freePort()}`,
        `comet.grpc.bind=127.0.0.1:${freePort()}`,
        "comet.logic_addrs=127.0.0.1:1",
      ].flatMap((s) => ["--set", s]),
    ]],
    ["job/main.ts", [
      "job/main.ts",
      ...[`job.admin.bind=0.0.0.0:${freePort()}`, ...engines].flatMap((s) => ["--set", s]),
    ]],
  ];
  for (const [name, args] of cases) {
    const role = new Role(args);
    const st = await role.exitWithin(20_000);
    assert.ok(st !== null, `${name} started anyway`);
    assert.equal(st.code, 2, `${name}:\n${role.stderr}`);
    assert.match(role.stderr, /admin\.bind 0\.0\.0\.0:\d+ is not a loopback address/, name);
  }
  // With a token it starts, and the token is enforced.
  const port = freePort();
  const role = new Role(
    embeddedArgs([`logic.admin.bind=0.0.0.0:${port}`]).args,
    { env: { GOIM_ADMIN__TOKEN: "env-admin-token-0123456789" } },
  );
  try {
    await eventually(
      () => role.exited !== null || answers(`http://127.0.0.1:${port}/healthz`),
      "the admin endpoint to answer /healthz",
      30_000,
    );
    assert.equal(role.exited, null, role.stderr);
    const denied = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(denied.status, 401);
    await denied.body?.cancel();
    const allowed = await fetch(`http://127.0.0.1:${port}/metrics`, {
      headers: { authorization: "Bearer env-admin-token-0123456789" },
    });
    assert.equal(allowed.status, 200);
    await allowed.body?.cancel();
  } finally {
    await role.stop();
  }
});

Deno.test("admin.token: the comet's admin endpoint needs it too, /healthz aside", async () => {
  const { startComet } = await import("./fixtures/comet_fixtures.ts");
  const h = await startComet([
    "comet.admin.bind=127.0.0.1:0",
    "admin.token=comet-admin-token-0123456789",
  ]);
  try {
    const base = `http://127.0.0.1:${h.addrs.admin!.port}`;
    const bare = await fetch(`${base}/metrics`);
    assert.equal(bare.status, 401);
    await bare.body?.cancel();
    const wrong = await fetch(`${base}/metrics`, { headers: { authorization: "Bearer nope" } });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const ok = await fetch(`${base}/metrics`, {
      headers: { authorization: "Bearer comet-admin-token-0123456789" },
    });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /goim_comet_/);
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
  } finally {
    await h.close();
  }
});

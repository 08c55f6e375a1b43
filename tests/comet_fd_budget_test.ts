// The comet's descriptor budget and its self-healing listeners, over real
// sockets against a comet in a child process with a small open-files limit
// (tests/fixtures/fd_comet.ts under `ulimit -n`):
// - near the limit, new TCP clients get op 6 (4007) and WebSocket upgrades
//   a 503, while an existing client and the admin endpoint keep working;
// - after the process ran out of descriptors, the TCP listener (which Deno
//   2.9.3 leaves dead after a failed accept) is noticed, reported by
//   /healthz, bound again and accepting.
//
// Run alone: ./scripts/deno test -A tests/comet_fd_budget_test.ts
import assert from "node:assert/strict";
import { ListenQueues, type SocketChannel, SocketServer } from "../comet/socket.ts";
import { createLogger } from "../infra/log.ts";
import { Op, ReasonCode } from "../protocol/mod.ts";
import { eventually, RawWsTestClient, TcpTestClient } from "./fixtures/comet_fixtures.ts";

const fixture = new URL("./fixtures/fd_comet.ts", import.meta.url).pathname;
const denoJson = new URL("../deno.json", import.meta.url).pathname;
const linuxOnly = Deno.build.os !== "linux"; // /proc and ulimit
const utf8 = new TextEncoder();

/** The fixture comet's process: its ports, command replies and log. */
class ChildComet {
  readonly child: Deno.ChildProcess;
  tcp = 0;
  ws = 0;
  admin = 0;
  /** Everything it logged (JSON lines on stderr). */
  log = "";
  readonly #lines: string[] = [];
  #wake: (() => void) | null = null;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #drained: Promise<void>[];

  private constructor(limit: number, sets: string[]) {
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        'ulimit -n "$0" && exec "$@"',
        String(limit),
        Deno.execPath(),
        "run",
        "-A",
        "--quiet",
        "--config",
        denoJson,
        fixture,
        ...sets.flatMap((s) => ["--set", s]),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.#stdin = child.stdin.getWriter();
    this.#drained = [
      (async () => {
        let rest = "";
        for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
          const parts = (rest + chunk).split("\n");
          rest = parts.pop()!;
          this.#lines.push(...parts);
          this.#wake?.();
        }
        this.#wake?.();
      })(),
      (async () => {
        for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
          this.log += chunk;
        }
      })(),
    ];
  }

  /** Spawns the fixture under `ulimit -n limit` and waits until it listens. */
  static async start(limit: number, sets: string[]): Promise<ChildComet> {
    const c = new ChildComet(limit, sets);
    const ports = JSON.parse(await c.line());
    c.tcp = ports.tcp;
    c.ws = ports.ws;
    c.admin = ports.admin;
    return c;
  }

  /** The next line on its stdout. */
  async line(timeoutMs = 20_000): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    while (this.#lines.length === 0) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no line from the child comet; its log:\n${this.log}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#wake = r;
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
      this.#wake = null;
    }
    return this.#lines.shift()!;
  }

  /** Sends a fixture command and returns its answer. */
  async command(cmd: string): Promise<string> {
    await this.#stdin.write(utf8.encode(cmd + "\n"));
    return await this.line();
  }

  /** Closes its stdin (it shuts the comet down and exits); kills it if it does not. */
  async stop(): Promise<void> {
    await this.#stdin.close().catch(() => {});
    const killer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 15_000);
    await this.child.status;
    clearTimeout(killer);
    await Promise.all(this.#drained);
  }
}

/**
 * One keep-alive HTTP/1.1 connection to the admin endpoint, opened before
 * the child runs out of descriptors, so requests need no new one there.
 */
class KeepAlive {
  #conn: Deno.TcpConn | null = null;
  #buf = new Uint8Array(0);

  constructor(readonly port: number) {}

  /** GET `path`: status and body. */
  async get(path: string): Promise<{ status: number; body: string }> {
    this.#conn ??= await Deno.connect({ hostname: "127.0.0.1", port: this.port });
    const conn = this.#conn;
    try {
      await conn.write(utf8.encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
      const head = await this.#until((b) => indexOf(b, "\r\n\r\n"));
      const text = new TextDecoder().decode(head);
      const status = Number(text.split(" ")[1]);
      const len = Number(/content-length:\s*(\d+)/i.exec(text)?.[1]);
      assert.ok(Number.isInteger(len), `a Content-Length in ${text}`);
      const body = await this.#until((b) => (b.length >= len ? len : -1), 0);
      return { status, body: new TextDecoder().decode(body) };
    } catch (e) {
      this.close();
      throw e;
    }
  }

  close(): void {
    try {
      this.#conn?.close();
    } catch {
      // closed
    }
    this.#conn = null;
    this.#buf = new Uint8Array(0);
  }

  // Reads until `end(buffer)` gives an offset; returns the bytes before it
  // and keeps what follows `skip` bytes after it.
  async #until(end: (b: Uint8Array) => number, skip = 4): Promise<Uint8Array> {
    const chunk = new Uint8Array(16384);
    while (true) {
      const at = end(this.#buf);
      if (at >= 0) {
        const out = this.#buf.slice(0, at);
        this.#buf = this.#buf.slice(at + skip);
        return out;
      }
      const n = await this.#conn!.read(chunk);
      if (n === null) throw new Error("admin connection closed");
      const next = new Uint8Array(this.#buf.length + n);
      next.set(this.#buf);
      next.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = next;
    }
  }
}

function indexOf(b: Uint8Array, s: string): number {
  const needle = utf8.encode(s);
  outer: for (let i = 0; i + needle.length <= b.length; i++) {
    for (let k = 0; k < needle.length; k++) if (b[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

interface Health {
  status: string;
  listeners?: { transport: string; addr: string; state: string }[];
  fds?: { open: number; limit: number | null; reserve: number };
}

const LIMIT = 256;
const RESERVE = 64;

Deno.test({
  name: "fd budget: near the limit new TCP clients get op 6 4007 and WebSocket upgrades 503",
  ignore: linuxOnly,
  async fn() {
    const comet = await ChildComet.start(LIMIT, [
      `comet.limits.fd_reserve=${RESERVE}`,
      "comet.handshake_timeout=60s",
    ]);
    const admin = new KeepAlive(comet.admin);
    const clients: TcpTestClient[] = [];
    try {
      const tcp = { transport: "tcp" as const, hostname: "127.0.0.1", port: comet.tcp };
      const ws = { transport: "tcp" as const, hostname: "127.0.0.1", port: comet.ws };
      const existing = await TcpTestClient.connect(tcp);
      clients.push(existing);
      await existing.auth({ mid: 1, key: "existing" });

      const h0: Health = JSON.parse((await admin.get("/healthz")).body);
      assert.ok(h0.fds, "/healthz reports descriptor usage");
      assert.equal(h0.fds.limit, LIMIT);
      assert.equal(h0.fds.reserve, RESERVE);

      // Bring the process to a few descriptors short of limit - reserve.
      const target = LIMIT - RESERVE - 3;
      assert.match(await comet.command(`fill ${target}`), /^filled \d+/);
      await eventually(
        async () => JSON.parse((await admin.get("/healthz")).body).fds.open >= target,
        "the comet to count the filled descriptors",
      );

      // New clients are served until the budget is spent, then refused.
      let refused: TcpTestClient | undefined;
      for (let i = 0; i < 8 && refused === undefined; i++) {
        const c = await TcpTestClient.connect(tcp);
        clients.push(c);
        try {
          await c.auth({ mid: 100 + i, key: `k${i}` }, 5000);
        } catch {
          refused = c;
        }
      }
      assert.ok(refused, "a client was refused within 8 connections");
      await refused.waitClosed();
      const f = refused.frames.find((f) => f.op === Op.DisconnectReply);
      assert.ok(f, "the refused client got op 6");
      assert.equal(refused.reason()?.code, ReasonCode.LimitExceeded);
      assert.equal(refused.frames.length, 1, "op 6 is all it got");

      const upgrade = await RawWsTestClient.http(
        ws,
        `GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      assert.match(upgrade, /^HTTP\/1\.1 503 /);
      assert.match(upgrade, /\r\nConnection: close\r\n/i);

      // The existing client is untouched: a heartbeat is answered.
      const from = existing.frames.length;
      await existing.send(Op.Heartbeat);
      await existing.next((f) => f.op === Op.HeartbeatReply, 5000, from);

      // The admin endpoint takes a new connection and counts the refusals.
      const res = await fetch(`http://127.0.0.1:${comet.admin}/metrics`);
      assert.equal(res.status, 200);
      const text = await res.text();
      const n = Number(
        /goim_comet_limit_closes_total\{limit="fd_budget"\} (\d+)/.exec(text)?.[1] ?? 0,
      );
      assert.ok(n >= 2, `limit_closes_total{limit="fd_budget"} = ${n}, want >= 2`);
      assert.match(comet.log, /refusing client connections/);

      // Descriptors back: clients are served again.
      await comet.command("free");
      await eventually(
        async () => JSON.parse((await admin.get("/healthz")).body).fds.open < target - 50,
        "the comet to count the freed descriptors",
      );
      const again = await TcpTestClient.connect(tcp);
      clients.push(again);
      await again.auth({ mid: 2, key: "again" });
    } finally {
      for (const c of clients) c.close();
      admin.close();
      await comet.stop();
    }
  },
});

Deno.test({
  name: "listener watch: after running out of descriptors the TCP listener accepts again",
  ignore: linuxOnly,
  async fn() {
    // No reserve: the process really runs out, as a leak elsewhere would make it.
    const comet = await ChildComet.start(LIMIT, [
      "comet.limits.fd_reserve=0",
      "comet.handshake_timeout=60s",
    ]);
    const admin = new KeepAlive(comet.admin);
    const conns: Deno.Conn[] = [];
    const clients: TcpTestClient[] = [];
    try {
      const tcp = { transport: "tcp" as const, hostname: "127.0.0.1", port: comet.tcp };
      const h0: Health = JSON.parse((await admin.get("/healthz")).body);
      assert.equal(h0.status, "ok");
      assert.deepEqual(
        h0.listeners?.map((l) => [l.transport, l.addr, l.state]),
        [["tcp", `127.0.0.1:${comet.tcp}`, "listening"], [
          "ws",
          `127.0.0.1:${comet.ws}`,
          "listening",
        ]],
      );

      assert.match(await comet.command("fill"), /^filled \d+/);
      // The kernel completes this handshake; the comet's accept fails (EMFILE).
      conns.push(await Deno.connect(tcp));

      // While it has no descriptor, /healthz (on the open connection) says 503.
      const seen = new Set<string>();
      await eventually(
        async () => {
          const r = await admin.get("/healthz");
          const h: Health = JSON.parse(r.body);
          seen.add(h.listeners?.find((l) => l.transport === "tcp")?.state ?? "?");
          return r.status === 503;
        },
        "/healthz to answer 503 while the process has no descriptor left",
        10_000,
        50,
      );

      assert.match(await comet.command("free"), /^freed \d+/);
      const freedAt = performance.now();
      // Descriptors are back but the listener is stalled: clients wait in
      // its queue. It is reported, closed and bound again.
      await eventually(
        async () => {
          const r = await admin.get("/healthz");
          const h: Health = JSON.parse(r.body);
          seen.add(h.listeners?.find((l) => l.transport === "tcp")?.state ?? "?");
          return r.status === 200 && h.listeners!.every((l) => l.state === "listening");
        },
        "/healthz to be ok again",
        15_000,
        50,
      );
      assert.ok(seen.has("stalled"), `the stall was reported (states seen: ${[...seen]})`);

      // A new client is served (the one queued on the old listener was reset).
      const c = await TcpTestClient.connect(tcp);
      clients.push(c);
      await c.auth({ mid: 7, key: "after" }, 5000);
      const recoveredMs = performance.now() - freedAt;
      assert.ok(
        recoveredMs < 10_000,
        `served ${recoveredMs.toFixed(0)} ms after descriptors were back`,
      );
      assert.match(comet.log, /listener stopped accepting/);
      assert.match(comet.log, /listener bound again and accepting/);
    } finally {
      for (const c of conns) c.close();
      for (const c of clients) c.close();
      admin.close();
      await comet.stop();
    }
  },
});

Deno.test({
  name: "ListenQueues reads a listener's accept queue from /proc (IPv4, wildcard, IPv6)",
  ignore: linuxOnly,
  async fn() {
    const listeners = [
      Deno.listen({ hostname: "127.0.0.1", port: 0 }),
      Deno.listen({ hostname: "0.0.0.0", port: 0 }),
    ];
    try {
      listeners.push(Deno.listen({ hostname: "::1", port: 0 }));
    } catch {
      // no IPv6 loopback here: the IPv4 cases still run
    }
    const conns: Deno.Conn[] = [];
    const waiting = (a: Deno.NetAddr) => {
      const q = new ListenQueues();
      try {
        return q.waiting(a.hostname, a.port);
      } finally {
        q.close();
      }
    };
    try {
      for (const l of listeners) {
        const a = l.addr as Deno.NetAddr;
        assert.equal(waiting(a), 0, `${a.hostname}:${a.port} before any client`);
        const dial = a.hostname === "0.0.0.0" ? "127.0.0.1" : a.hostname;
        // Never accepted: both wait in the kernel's queue.
        for (let i = 0; i < 2; i++) {
          conns.push(await Deno.connect({ hostname: dial, port: a.port }));
        }
        await eventually(() => waiting(a) === 2, `2 clients waiting on ${a.hostname}:${a.port}`);
      }
      const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const gone = closed.addr as Deno.NetAddr;
      closed.close();
      assert.equal(waiting(gone), null, "no such listener");
    } finally {
      for (const c of conns) c.close();
      for (const l of listeners) l.close();
    }
  },
});

Deno.test("SocketServer.check: a queue that stays unaccepted is stalled, then re-bound on the same port", async () => {
  const lines: { msg: string; fields?: Record<string, unknown> }[] = [];
  const log = createLogger({ level: "error" });
  const spy = {
    ...log,
    warn: (msg: string, fields?: Record<string, unknown>) => lines.push({ msg, fields }),
    error: (msg: string, fields?: Record<string, unknown>) => lines.push({ msg, fields }),
  };
  let accepted = 0;
  const srv = await SocketServer.listen(
    { binds: ["127.0.0.1:0"], log: spy },
    (sock) => {
      accepted++;
      sock.destroy();
      return null as unknown as SocketChannel; // no channel needed to count accepts
    },
    () => {},
  );
  let relistens = 0;
  srv.wire({ transport: "tcp", onRelisten: () => relistens++ });
  const port = srv.addrs[0].port;
  // What /proc would say of a dead accept loop: one client waiting, always.
  const stuck = { waiting: () => 1, close() {} } as unknown as ListenQueues;
  try {
    srv.check(stuck);
    assert.equal(srv.listeners()[0].state, "listening", "one check is not evidence");
    srv.check(stuck);
    assert.equal(srv.listeners()[0].state, "stalled");
    srv.check(stuck);
    assert.equal(srv.listeners()[0].state, "down");
    await eventually(() => relistens === 1, "the listener to be bound again");
    assert.deepEqual(srv.listeners(), [{ addr: `127.0.0.1:${port}`, state: "listening" }]);
    assert.deepEqual(lines.map((l) => l.msg), [
      "listener stalled: clients wait in its accept queue and none is accepted",
      "listener stopped accepting; closing it and listening again",
      "listener bound again and accepting",
    ]);
    // The new listener accepts on the same port, and an accept clears a stall.
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    await eventually(() => accepted === 1, "the connection to be accepted");
    c.close();
    srv.check(stuck);
    srv.check(stuck);
    assert.equal(srv.listeners()[0].state, "listening", "an accept since the last check counts");
  } finally {
    await srv.close();
  }
});

// Why Deno is pinned (scripts/deno): Deno 2.9.4 to 2.9.6 abort inside
// node:http2 when a grpc-js peer closes a connection after a few thousand calls
// (deno issue 36788). This test reproduces that load against a logic server in
// a separate process, then checks that the server is still alive and that a
// client survives the server being restarted on the same port.
//
// Run alone: ./scripts/deno test -A tests/grpc_survival_test.ts
import assert from "node:assert/strict";
import { createLogicClient, grpcStatus, type LogicRpcClient, RpcError } from "../proto/mod.ts";

const CYCLES = 20;
const CALLS_PER_CYCLE = 3_000;
const SEQUENTIAL_CALLS = 300; // the rest run 64 at a time
const IN_FLIGHT = 64;
const RESTART_CYCLES = 3; // against the restarted server
const CALL_DEADLINE_MS = 10_000;
// The whole test takes 10-20 s on a 2-core box; past this the server is killed
// so that every pending call fails and the test ends instead of hanging.
const WATCHDOG_MS = 85_000;

const fixture = new URL("./fixtures/grpc_survival_server.ts", import.meta.url);
const config = new URL("../deno.json", import.meta.url);

type ServerProcess = {
  child: Deno.ChildProcess;
  port: number;
  /** Set once the process has exited. */
  exited: Deno.CommandStatus | null;
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
};

/**
 * Spawns the fixture and adds it to `registry` at once (so cleanup and the
 * watchdog see it even if it never starts); resolves once it printed its port,
 * which it does only after it is listening.
 */
async function spawnServer(registry: ServerProcess[], port = 0): Promise<ServerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      "--config",
      config.pathname,
      fixture.pathname,
      "--port",
      `${port}`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit", // a runtime abort's message lands in the test output
  }).spawn();

  let resolveLine!: (line: string) => void;
  let rejectLine!: (err: Error) => void;
  const firstLine = new Promise<string>((resolve, reject) => {
    resolveLine = resolve;
    rejectLine = reject;
  });
  // Reads stdout to its end, so that the pipe never fills and the stream is
  // released when the process exits.
  const drained = (async () => {
    let out = "";
    let seen = false;
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      if (seen) continue;
      out += chunk;
      const newline = out.indexOf("\n");
      if (newline >= 0) {
        seen = true;
        resolveLine(out.slice(0, newline));
      }
    }
    if (!seen) rejectLine(new Error(`server closed stdout before printing its port: ${out}`));
  })();

  const proc: ServerProcess = {
    child,
    port: 0,
    exited: null,
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (proc.exited === null) {
        try {
          child.kill(signal);
        } catch {
          // Exited between the check and the kill.
        }
      }
      const status = await child.status;
      await drained;
      return status;
    },
  };
  registry.push(proc);
  child.status.then((status) => proc.exited = status);

  const line = await firstLine;
  proc.port = Number(line);
  assert.ok(Number.isInteger(proc.port) && proc.port > 0, `bad port line from server: ${line}`);
  return proc;
}

function describeExit(status: Deno.CommandStatus | null): string {
  if (status === null) return "still running";
  return `exited with code ${status.code}${status.signal ? `, signal ${status.signal}` : ""}`;
}

async function call(client: LogicRpcClient, i: number): Promise<void> {
  if (i % 2 === 0) {
    const reply = await client.Connect({ server: "survival", token: new Uint8Array([i & 0xff]) }, {
      deadlineMs: CALL_DEADLINE_MS,
    });
    assert.deepEqual(reply.accepts, [1000]);
  } else {
    assert.deepEqual(
      await client.Heartbeat({ mid: i, key: "k" }, { deadlineMs: CALL_DEADLINE_MS }),
      {},
    );
  }
}

/** One cycle: a fresh connection, thousands of calls, then the client closes it. */
async function cycle(address: string): Promise<void> {
  const client = createLogicClient(address);
  try {
    for (let i = 0; i < SEQUENTIAL_CALLS; i++) await call(client, i);
    let next = SEQUENTIAL_CALLS;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < CALLS_PER_CYCLE) await call(client, next++);
      }),
    );
  } finally {
    client.close();
  }
}

/**
 * Runs `cycles` load cycles against `server`, with a call on `longLived`
 * between them, then checks that the server process is still alive.
 */
async function survive(
  server: ServerProcess,
  cycles: number,
  longLived: LogicRpcClient,
  label: string,
): Promise<void> {
  const address = `127.0.0.1:${server.port}`;
  for (let c = 0; c < cycles; c++) {
    try {
      await cycle(address);
      await call(longLived, c);
    } catch (err) {
      // Diagnostics only: an aborting server is reaped a moment after its
      // sockets reset, and the message should say that it died.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const status = await Promise.race([
        server.child.status,
        new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 2_000)),
      ]);
      clearTimeout(timer);
      throw new Error(`${label}: cycle ${c + 1}/${cycles} failed; server ${describeExit(status)}`, {
        cause: err,
      });
    }
  }
  // Still alive: a fresh connection works and the process has not exited.
  const last = createLogicClient(address);
  try {
    await call(last, 0);
  } finally {
    last.close();
  }
  assert.equal(server.exited, null, `${label}: server ${describeExit(server.exited)}`);
}

Deno.test("gRPC server survives clients closing connections after thousands of calls, and clients survive a server restart", async () => {
  const started = performance.now();
  const servers: ServerProcess[] = [];
  let watchdogFired = false;
  const watchdog = setTimeout(() => {
    watchdogFired = true;
    for (const s of servers) s.stop("SIGKILL");
  }, WATCHDOG_MS);
  let longLived: LogicRpcClient | undefined;
  try {
    const server = await spawnServer(servers);

    // Connected before the load and the restart, and never recreated.
    longLived = createLogicClient(`127.0.0.1:${server.port}`, {
      channelOptions: {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 500,
      },
    });
    await call(longLived, 1);

    await survive(server, CYCLES, longLived, "first server");
    const loadMs = performance.now() - started;

    // Restart on the same port; the long-lived client must find the new server.
    const stopped = await server.stop("SIGTERM");
    assert.equal(
      stopped.signal,
      "SIGTERM",
      `server ${describeExit(stopped)} instead of by SIGTERM`,
    );
    // While it is down calls fail: UNAVAILABLE once grpc-js has seen the
    // connection close, INTERNAL ("socket has been ended by the other party")
    // when the call races that teardown.
    await assert.rejects(
      longLived.Heartbeat({}, { deadlineMs: 5_000 }),
      (err: unknown) =>
        err instanceof RpcError &&
        (err.code === grpcStatus.UNAVAILABLE || err.code === grpcStatus.INTERNAL),
      "a call while the server is down should fail",
    );
    const restarted = await spawnServer(servers, server.port);
    assert.equal(restarted.port, server.port);
    // waitForReady: the call waits for grpc-js to reconnect (bounded by its deadline).
    assert.deepEqual(
      await longLived.Heartbeat({ mid: 1 }, { waitForReady: true, deadlineMs: CALL_DEADLINE_MS }),
      {},
    );
    // The abort this test guards against shows up on a fresh process's first
    // bursts more often than later, so load the new process too.
    await survive(restarted, RESTART_CYCLES, longLived, "restarted server");

    const totalMs = performance.now() - started;
    console.log(
      `${CYCLES} cycles x ${CALLS_PER_CYCLE} calls in ${(loadMs / 1000).toFixed(1)} s; ` +
        `with restart and ${RESTART_CYCLES} more cycles ${(totalMs / 1000).toFixed(1)} s`,
    );
  } finally {
    clearTimeout(watchdog);
    longLived?.close();
    for (const s of servers) await s.stop("SIGKILL");
  }
  assert.ok(!watchdogFired, `test exceeded its ${WATCHDOG_MS} ms budget`);
});

Deno.test("the running Deno is the version scripts/deno pins", async () => {
  const script = await Deno.readTextFile(new URL("../scripts/deno", import.meta.url));
  const pinned = script.match(/^DENO_VERSION="([^"]+)"/m)?.[1];
  assert.ok(pinned, 'DENO_VERSION="..." not found in scripts/deno');
  assert.equal(
    Deno.version.deno,
    pinned,
    `running Deno ${Deno.version.deno}, but scripts/deno pins ${pinned}: run tests via ./scripts/deno`,
  );
});

/**
 * The server under test, as a child process of the bench tool: main.ts's
 * `startEmbedded(config)` (comet + logic + job on the in-memory engines,
 * exactly what `deno task start` runs) plus three things a benchmark child
 * needs and `main.ts` deliberately does not do:
 *
 * - prints the real listen addresses (binds are `127.0.0.1:0`, free ports
 *   picked by the kernel, so runs never collide with a server on 3101/3111)
 *   as one JSON line on stdout;
 * - stops gracefully when stdin closes, so a driver that dies takes its
 *   server with it instead of leaving it running;
 * - exits after `--max-life-ms` whatever happens (a bounded load).
 *
 * Arguments: `--max-life-ms=N` and any `--set key=value` / `--config` flags
 * of docs/CONFIG.md.
 *
 * @example
 * ```sh
 * ./scripts/deno run --allow-net --allow-read --allow-env --allow-sys scripts/bench/server.ts \
 *   --set comet.tcp.bind=127.0.0.1:0 --set logic.http.bind=127.0.0.1:0
 * ```
 *
 * @module
 */

import { startEmbedded } from "../../main.ts";
import { joinHostPort } from "../../infra/addr.ts";
import { loadConfigOrExit } from "../../infra/config.ts";
import { createLogger } from "../../infra/log.ts";
import { shutdownSignal } from "../../infra/process.ts";

/** The line this process prints once it listens. */
export interface ServerReady {
  /** Tag. */
  ev: "server-ready";
  /** This process. */
  pid: number;
  /** `host:port` of the first TCP listener. */
  tcp: string;
  /** `host:port` of the first WebSocket listener. */
  ws: string;
  /** `host:port` of the HTTP push API. */
  http: string;
  /** `host:port` of the comet's admin endpoint (/metrics), if enabled. */
  cometAdmin: string | null;
}

if (import.meta.main) {
  const lifeArg = Deno.args.find((a) => a.startsWith("--max-life-ms="));
  const life = Number(lifeArg?.split("=")[1] ?? "600000");
  const config = loadConfigOrExit({ args: Deno.args.filter((a) => a !== lifeArg) });
  const log = createLogger({
    level: config.log.level,
    format: config.log.format,
    fields: { mode: "embedded" },
  });
  // Registered before anything listens: Deno 2.9.3 aborts if it first sets
  // up signal handling while the process is out of descriptors.
  const signal = shutdownSignal();
  const server = await startEmbedded(config, log);
  const hp = (a: Deno.NetAddr | undefined) => a ? joinHostPort(a) : null;
  const ready: ServerReady = {
    ev: "server-ready",
    pid: Deno.pid,
    tcp: hp(server.cometAddrs.tcp[0]) ?? "",
    ws: hp(server.cometAddrs.ws[0]) ?? "",
    http: hp(server.logicAddrs.http)!,
    cometAdmin: hp(server.cometAddrs.admin),
  };
  console.log(JSON.stringify(ready));

  let stopping = false;
  const stop = async (why: string, code: number) => {
    if (stopping) return;
    stopping = true;
    log.info("bench server stopping", { why });
    // Bounded: comet.shutdown_deadline applies inside; this is the backstop.
    const timer = setTimeout(() => Deno.exit(code), 20_000);
    await server.stop().catch(() => {});
    clearTimeout(timer);
    Deno.exit(code);
  };
  setTimeout(() => stop("max life reached", 3), life);
  signal.then((sig) => stop(sig, 0));
  // stdin EOF = the driver closed it (done) or died: either way, stop.
  (async () => {
    for await (const _ of Deno.stdin.readable) { /* nothing is sent; wait for EOF */ }
    await stop("stdin closed", 0);
  })();
}

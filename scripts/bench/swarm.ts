/**
 * A swarm worker process: holds a slice of the benchmark's clients (TCP
 * and/or WebSocket `GoimClient`s from client/), authenticates them, counts
 * every pushed message and measures its latency from the send time carried
 * in its body. Driven by JSON lines on stdin, answers on stdout (wire.ts).
 * Started by scripts/bench/run.ts, one per worker; not meant to be run by hand.
 *
 * Why separate processes: one process may hold fewer than 20,000 open files
 * on this machine, and one JavaScript thread cannot both parse hundreds of
 * thousands of frames per second and leave the server a core.
 *
 * Bounded by itself: it exits when stdin closes (the driver is gone) or after
 * `--max-life-ms`, whichever comes first, so a crashed driver leaves no load
 * running.
 *
 * @example
 * ```sh
 * ./scripts/deno run -A scripts/bench/swarm.ts --max-life-ms=120000
 * ```
 *
 * @module
 */

import { GoimClient } from "../../client/mod.ts";
import { openTransport, type Transport, type TransportFactory } from "../../client/transport.ts";
import { readLines } from "../../bench/lib/child.ts";
import { readRssBytes } from "../../bench/lib/procstat.ts";
import { LatencyHistogram } from "./histogram.ts";
import {
  BENCH_OP,
  cometsOf,
  type ConnectCommand,
  type ConnectedEvent,
  keyOf,
  nowMs,
  parseBody,
  type ParsedBody,
  type PhaseStats,
  roomIdOf,
  type SecondBin,
  transportOf,
  type WorkerCommand,
  type WorkerEvent,
} from "./wire.ts";

const enc = new TextEncoder();
let outTail: Promise<void> = Promise.resolve();

/** Writes one event line; lines are queued so they never interleave. */
function emit(ev: WorkerEvent): void {
  const bytes = enc.encode(JSON.stringify(ev) + "\n");
  outTail = outTail.then(async () => {
    let o = 0;
    while (o < bytes.length) o += await Deno.stdout.write(bytes.subarray(o));
  }).catch(() => {
    // stdout closed: the driver is gone; the stdin EOF path exits.
  });
}

// --- state ------------------------------------------------------------------

const clients: GoimClient[] = [];
let closing = false;
let connected = 0;
let heartbeats = 0;
let foreign = 0;
let disconnectCount = 0;
const disconnects: Record<string, number> = {};
const heartbeatRtt = new LatencyHistogram();

interface PhaseAcc {
  frames: number;
  hist: LatencyHistogram;
  first: number | null;
  last: number | null;
}
const phases = new Map<number, PhaseAcc>();

// The current second's bin; finished bins wait in `doneBins` for the next tick.
interface Bin {
  sec: number;
  frames: number;
  hist: LatencyHistogram | null;
  heartbeats: number;
  authed: number;
}
let bin: Bin = newBin(Math.floor(nowMs() / 1000));
const doneBins: Bin[] = [];

function newBin(sec: number): Bin {
  return { sec, frames: 0, hist: null, heartbeats: 0, authed: 0 };
}

// The bin for receipt time `now`, rolling over when the second changed.
function binAt(now: number): Bin {
  const sec = Math.floor(now / 1000);
  if (sec !== bin.sec) {
    if (bin.frames || bin.heartbeats || bin.authed) doneBins.push(bin);
    bin = newBin(sec);
  }
  return bin;
}

const parsed: ParsedBody = { t: 0, p: 0 };

// Called for every pushed message of every client: keep it allocation-free.
function onMessage(body: Uint8Array): void {
  const now = nowMs();
  if (!parseBody(body, parsed)) {
    foreign++;
    return;
  }
  const latency = now - parsed.t;
  let acc = phases.get(parsed.p);
  if (acc === undefined) {
    acc = { frames: 0, hist: new LatencyHistogram(), first: now, last: now };
    phases.set(parsed.p, acc);
  }
  acc.frames++;
  acc.hist.record(latency);
  acc.last = now;
  const b = binAt(now);
  b.frames++;
  (b.hist ??= new LatencyHistogram()).record(latency);
}

/**
 * Wraps the SDK's transport to see when a heartbeat (op 2) leaves, so the
 * op 3 reply gives a round trip: the comet's responsiveness under load,
 * which the SDK itself does not expose.
 */
function timedTransport(sentAt: { t: number }): TransportFactory {
  return async (url, options) => {
    const t: Transport = await openTransport(url, options);
    return {
      kind: t.kind,
      write(bytes: Uint8Array): Promise<void> {
        // op is the big-endian int32 at offset 8 of the 16-byte header.
        if (bytes.length >= 16 && bytes[8] === 0 && bytes[9] === 0 && bytes[10] === 0) {
          if (bytes[11] === 2) sentAt.t = performance.now();
        }
        return t.write(bytes);
      },
      close: () => t.close(),
    };
  };
}

// --- connect ------------------------------------------------------------------

async function connectAll(c: ConnectCommand): Promise<void> {
  const setup = new LatencyHistogram();
  const failedIdx: number[] = [];
  const errors: string[] = [];
  let authed = 0, failed = 0, tcp = 0, ws = 0;
  const perComet = new Array<number>(c.comets.length).fill(0);
  const cometOf = cometsOf(c.layout, c.to, c.comets.length);
  let firstStart = Infinity, lastAuth = 0;
  let next = c.from;

  const progress = setInterval(() => emit({ ev: "progress", authed, failed }), 1000);

  const one = async (i: number): Promise<void> => {
    const kind = transportOf(i, c.layout.wsRatio);
    const at = cometOf[i];
    const sentAt = { t: 0 };
    const client = new GoimClient({
      url: kind === "ws" ? c.comets[at].ws : c.comets[at].tcp,
      token: {
        mid: c.layout.midBase + i,
        key: keyOf(c.layout.runId, i),
        room_id: roomIdOf(c.layout.runId, i % c.layout.rooms),
        platform: "bench",
        accepts: [BENCH_OP],
      },
      // Spread over the clients as WebSocket ones are (docs/STREAMS.md).
      ...(transportOf(i, c.layout.streamsRatio ?? 0) === "ws" ? { streams: true } : {}),
      heartbeatIntervalMs: c.heartbeatMs,
      authTimeoutMs: c.authTimeoutMs,
      // A drop must show in the report, not be hidden by a reconnect.
      reconnect: { enabled: false },
      transport: timedTransport(sentAt),
    });
    client.on("message", (m) => onMessage(m.body));
    client.on("heartbeat", () => {
      heartbeats++;
      binAt(nowMs()).heartbeats++;
      if (sentAt.t > 0) heartbeatRtt.record(performance.now() - sentAt.t);
    });
    client.on("disconnect", (d) => {
      connected--;
      if (closing) return;
      disconnectCount++;
      const why = d.reason ? `${d.reason.code} ${d.reason.message}` : d.error.code;
      disconnects[why] = (disconnects[why] ?? 0) + 1;
    });
    client.on("error", () => {}); // reported through "disconnect"
    const start = nowMs();
    if (start < firstStart) firstStart = start;
    try {
      await client.connect();
      const end = nowMs();
      setup.record(end - start);
      if (end > lastAuth) lastAuth = end;
      binAt(end).authed++;
      authed++;
      perComet[at]++;
      connected++;
      if (kind === "ws") ws++;
      else tcp++;
      clients.push(client);
    } catch (e) {
      failed++;
      if (failedIdx.length < 10_000) failedIdx.push(i);
      if (errors.length < 5) errors.push(`client ${i} (${kind}): ${(e as Error).message ?? e}`);
    }
  };

  const lanes = Array.from({ length: Math.max(1, c.concurrency) }, async () => {
    while (next < c.to && !closing) await one(next++);
  });
  await Promise.all(lanes);
  clearInterval(progress);
  const ev: ConnectedEvent = {
    ev: "connected",
    authed,
    failed,
    failedIdx,
    errors,
    firstStart: Number.isFinite(firstStart) ? firstStart : nowMs(),
    lastAuth: lastAuth || nowMs(),
    setup: setup.toWire(),
    tcp,
    ws,
    perComet,
  };
  emit(ev);
}

// --- ticks, stats, close --------------------------------------------------------

function flushBins(): SecondBin[] {
  binAt(nowMs()); // roll over a finished current second
  const out = doneBins.splice(0).map((b) => ({
    sec: b.sec,
    frames: b.frames,
    hist: b.hist ? b.hist.toSparse() : [],
    heartbeats: b.heartbeats,
    authed: b.authed,
  }));
  return out;
}

function phaseFrames(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [p, acc] of phases) out[p] = acc.frames;
  return out;
}

async function stats(): Promise<WorkerEvent> {
  const out: Record<string, PhaseStats> = {};
  for (const [p, acc] of phases) {
    out[p] = { frames: acc.frames, hist: acc.hist.toWire(), first: acc.first, last: acc.last };
  }
  return {
    ev: "stats",
    phases: out,
    foreign,
    heartbeats,
    heartbeatRtt: heartbeatRtt.toWire(),
    disconnects,
    connected,
    rssBytes: (await readRssBytes(Deno.pid)) ?? Deno.memoryUsage().rss,
  };
}

async function closeAll(): Promise<void> {
  closing = true;
  const all = clients.splice(0);
  let k = 0;
  // Bounded parallelism: closing thousands at once would stall the loop.
  await Promise.all(Array.from({ length: 256 }, async () => {
    while (k < all.length) await all[k++].close().catch(() => {});
  }));
}

// Aligned to the next second boundary so bins are complete when sent.
function startTicker(): void {
  const tick = () => {
    emit({
      ev: "tick",
      bins: flushBins(),
      phaseFrames: phaseFrames(),
      connected,
      disconnects: disconnectCount,
    });
    setTimeout(tick, 1000 - (nowMs() % 1000) + 5);
  };
  setTimeout(tick, 1000 - (nowMs() % 1000) + 5);
}

// --- main -------------------------------------------------------------------------

async function handle(cmd: WorkerCommand): Promise<void> {
  switch (cmd.cmd) {
    case "connect":
      await connectAll(cmd);
      return;
    case "ping":
      emit({ ev: "pong", id: cmd.id, now: nowMs() });
      return;
    case "count":
      emit({ ev: "count", phaseFrames: phaseFrames() });
      return;
    case "stats":
      emit(await stats());
      return;
    case "close":
      await closeAll();
      emit({ ev: "closed" });
      await outTail;
      Deno.exit(0);
  }
}

if (import.meta.main) {
  const life = Number(
    Deno.args.find((a) => a.startsWith("--max-life-ms="))?.split("=")[1] ?? "600000",
  );
  // Hard bound on the load this process can generate, whatever the driver does.
  setTimeout(() => {
    console.error(`swarm ${Deno.pid}: max life ${life} ms reached, exiting`);
    Deno.exit(3);
  }, life);
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    emit({ ev: "error", message: `unhandled rejection: ${e.reason}` });
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    emit({ ev: "error", message: `uncaught: ${e.message}` });
  });
  startTicker();
  emit({ ev: "ready", pid: Deno.pid });
  for await (const line of readLines(Deno.stdin.readable)) {
    // Commands run concurrently: stats and pings must answer while connecting.
    handle(JSON.parse(line) as WorkerCommand).catch((e) =>
      emit({ ev: "error", message: `${(e as Error).stack ?? e}` })
    );
  }
  // stdin closed: the driver is gone (or done); release everything and leave.
  await closeAll();
  await outTail;
  Deno.exit(0);
}

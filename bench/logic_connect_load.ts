// JWT (HS256) authentications per second through `service.Connect`, with
// many in flight as a logic serving several comets sees them (documented in
// docs/LOGIC.md, not run in CI):
//
//   ./scripts/deno run -A bench/logic_connect_load.ts [--seconds 5] [--concurrency 64]
//
// Each Connect verifies a distinct JWT (no cache to flatter the figure),
// checks its claims and writes the route to the memory session store.
import * as jose from "jose";
import { loadConfig } from "../infra/config.ts";
import { createLogger } from "../infra/log.ts";
import { createMemoryQueue } from "../infra/memory/queue.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { MemorySessionStore } from "../infra/memory/sessions.ts";
import { Logic } from "../logic/logic.ts";
import { arg } from "./lib/args.ts";
const SECONDS = Math.min(60, Number(arg("seconds", "5")));
const CONCURRENCY = Math.min(1024, Number(arg("concurrency", "64")));
const SECRET = "bench-secret-0123456789abcdef0123456789";
const TOKENS = 5000;

const config = loadConfig({
  env: {},
  args: ["node.id=bench", "logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`]
    .flatMap((s) => ["--set", s]),
});
const sessions = new MemorySessionStore({ ttlMs: config.logic.route_ttl, sweepIntervalMs: 0 });
const registry = new MemoryRegistry();
const queue = createMemoryQueue({ capacity: config.queue.memory.capacity });
const logic = new Logic({
  config,
  sessions,
  registry,
  producer: queue.producer,
  log: createLogger({ level: "error" }),
});
await logic.auth.ready();

const utf8 = new TextEncoder();
const tokens: Uint8Array[] = [];
for (let n = 0; n < TOKENS; n++) {
  const jwt = await new jose.SignJWT({ sub: String(n + 1), room: "live://*", accepts: [1000] })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("1h")
    .sign(utf8.encode(SECRET));
  // A fixed key per token, so the session store holds TOKENS routes, not one per call.
  tokens.push(utf8.encode(JSON.stringify({
    key: `key-${n}`,
    token: jwt,
    room_id: "live://1",
    accepts: [1000],
  })));
}

let i = 0, ok = 0, measuring = false, stop = false;
const worker = async () => {
  while (!stop) {
    await logic.service.Connect({ server: "comet-0", cookie: "", token: tokens[i++ % TOKENS] });
    if (measuring) ok++;
  }
};
const workers = Array.from({ length: CONCURRENCY }, worker);
await new Promise((r) => setTimeout(r, 500));
measuring = true;
const t0 = performance.now();
await new Promise((r) => setTimeout(r, SECONDS * 1000));
measuring = false;
const elapsed = (performance.now() - t0) / 1000;
stop = true;
await Promise.all(workers);
console.log(JSON.stringify({
  connects_per_s: Math.round(ok / elapsed),
  concurrency: CONCURRENCY,
  seconds: Number(elapsed.toFixed(1)),
  algorithm: "HS256",
}));
await logic.stop();
await queue.producer.close();
await queue.consumer.close();
await sessions.close();
await registry.close();

// In-process logic benchmarks (documented in docs/LOGIC.md, not run in CI):
//
//   ./scripts/deno bench -A bench/logic_bench.ts
//
// - push through `logic.handler` (no sockets): keys, mids, room;
// - Connect through `service.Connect`, auth mode none and jwt HS256.
//
// Engines: the embedded defaults (memory session store, registry and queue);
// the queue's consumer acknowledges each message at once, standing in for job.
import * as jose from "jose";
import { loadConfig } from "../infra/config.ts";
import { createLogger } from "../infra/log.ts";
import { createMemoryQueue, type MemoryQueue } from "../infra/memory/queue.ts";
import { MemoryRegistry } from "../infra/memory/registry.ts";
import { MemorySessionStore } from "../infra/memory/sessions.ts";
import { Logic } from "../logic/logic.ts";

const SECRET = "bench-secret-0123456789abcdef0123456789";

const queues: MemoryQueue[] = [];

async function makeLogic(...sets: string[]): Promise<Logic> {
  const config = loadConfig({
    env: {},
    args: ["node.id=bench", ...sets].flatMap((s) => ["--set", s]),
  });
  const queue = createMemoryQueue({ capacity: config.queue.memory.capacity });
  await queue.consumer.start(() => Promise.resolve());
  queues.push(queue);
  return new Logic({
    config,
    sessions: new MemorySessionStore({ ttlMs: config.logic.route_ttl, sweepIntervalMs: 0 }),
    registry: new MemoryRegistry(),
    producer: queue.producer,
    log: createLogger({ level: "error" }),
  });
}

const utf8 = new TextEncoder();
const logic = await makeLogic();
// 10,000 connections over 4 comets, mids 1..5000 with two keys each.
for (let i = 0; i < 10_000; i++) {
  await logic.service.Connect({
    server: `comet-${i % 4}`,
    cookie: "",
    token: utf8.encode(JSON.stringify({ mid: (i >> 1) + 1, key: `key-${i}`, accepts: [1000] })),
  });
}
const body = utf8.encode(JSON.stringify({ text: "hello from the push API", n: 42 }));
let i = 0;

Deno.bench("push/keys, 1 key, via logic.handler", { group: "push" }, async () => {
  const res = await logic.handler(
    new Request(`http://logic/goim/push/keys?operation=1000&keys=key-${i++ % 10_000}`, {
      method: "POST",
      body,
    }),
  );
  await res.arrayBuffer();
});

Deno.bench("push/keys, 10 keys on 4 comets, via logic.handler", { group: "push" }, async () => {
  const base = (i++ * 10) % 9_990;
  const keys = Array.from({ length: 10 }, (_, k) => `key-${base + k}`).join(",");
  const res = await logic.handler(
    new Request(`http://logic/goim/push/keys?operation=1000&keys=${keys}`, {
      method: "POST",
      body,
    }),
  );
  await res.arrayBuffer();
});

Deno.bench("push/mids, 1 mid (2 keys), via logic.handler", { group: "push" }, async () => {
  const res = await logic.handler(
    new Request(`http://logic/goim/push/mids?operation=1000&mids=${(i++ % 5000) + 1}`, {
      method: "POST",
      body,
    }),
  );
  await res.arrayBuffer();
});

Deno.bench("push/room via logic.handler", { group: "push" }, async () => {
  const res = await logic.handler(
    new Request(`http://logic/goim/push/room?operation=1000&type=live&room=${i++ % 100}`, {
      method: "POST",
      body,
    }),
  );
  await res.arrayBuffer();
});

const noneLogic = await makeLogic();
const jwtLogic = await makeLogic("logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`);
await jwtLogic.auth.ready();
// Distinct tokens, as real clients would present (no verification cache to flatter the figure).
const tokens: Uint8Array[] = [];
for (let n = 0; n < 1000; n++) {
  const jwt = await new jose.SignJWT({ sub: String(n + 1), room: "live://*", accepts: [1000] })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("1h")
    .sign(utf8.encode(SECRET));
  // A fixed key per token: the store then holds 1000 routes, not one per iteration.
  tokens.push(
    utf8.encode(
      JSON.stringify({ key: `key-${n}`, token: jwt, room_id: "live://1", accepts: [1000] }),
    ),
  );
}
const plain = utf8.encode(
  JSON.stringify({ mid: 1, key: "k", room_id: "live://1", accepts: [1000] }),
);

Deno.bench("Connect, auth mode none", { group: "connect", baseline: true }, async () => {
  await noneLogic.service.Connect({ server: "comet-0", cookie: "", token: plain });
});

Deno.bench("Connect, auth mode jwt HS256", { group: "connect" }, async () => {
  await jwtLogic.service.Connect({ server: "comet-0", cookie: "", token: tokens[i++ % 1000] });
});

/**
 * Internal gRPC over real loopback sockets, as an outside caller sees it:
 * with `grpc.token` set, comet's `goim.comet.Comet` and logic's
 * `goim.logic.Logic` refuse calls that lack the token (or carry a wrong
 * one) UNAUTHENTICATED before any handler runs, so forged pushes reach no
 * client and forged route / online / upstream calls change nothing. Without
 * the token (goim's behaviour) token-less callers are served as before.
 */

import assert from "node:assert/strict";
import { createCometClient, createLogicClient } from "../proto/grpc.ts";
import { sample, scrape, startComet, TcpTestClient } from "./fixtures/comet_fixtures.ts";
import { logicHarness, token } from "./fixtures/logic_fixtures.ts";
import { eventually } from "./eventually.ts";
import { rejectsWith } from "./fixtures/rpc_assert.ts";

const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const proto = (op: number, body: string) => ({ ver: 1, op, seq: 0, body: enc.encode(body) });
const SECRET = "grpc-auth-test-secret-0123456789";

Deno.test("grpc auth: comet refuses forged PushMsg, Broadcast and BroadcastRoom without the right token", async () => {
  const h = await startComet([`grpc.token=${SECRET}`], { grpc: true });
  const anonymous = createCometClient(h.addrs.grpc!, { deadlineMs: 3000 });
  const wrong = createCometClient(h.addrs.grpc!, { deadlineMs: 3000, token: "not-the-secret" });
  const prefix = createCometClient(h.addrs.grpc!, {
    deadlineMs: 3000,
    token: SECRET.slice(0, -1),
  });
  const job = createCometClient(h.addrs.grpc!, { deadlineMs: 3000, token: SECRET });
  const t = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    await t.auth({ mid: 7, key: "victim", room_id: "live://1", accepts: [1000] });
    for (
      const [name, c] of [["no token", anonymous], ["wrong token", wrong], [
        "prefix",
        prefix,
      ]] as const
    ) {
      await rejectsWith(
        c.PushMsg({ keys: ["victim"], protoOp: 1000, proto: proto(1000, "forged key") }),
        "UNAUTHENTICATED",
        `PushMsg, ${name}`,
      );
      await rejectsWith(
        c.Broadcast({ protoOp: 1000, proto: proto(1000, "forged all"), speed: 0 }),
        "UNAUTHENTICATED",
        `Broadcast, ${name}`,
      );
      await rejectsWith(
        c.BroadcastRoom({ roomID: "live://1", proto: proto(1000, "forged room") }),
        "UNAUTHENTICATED",
        `BroadcastRoom, ${name}`,
      );
      await rejectsWith(c.Rooms({}), "UNAUTHENTICATED", `Rooms, ${name}`);
    }

    // The token opens the same calls; what arrives is only what job sent.
    await job.PushMsg({ keys: ["victim"], protoOp: 1000, proto: proto(1000, "real key") });
    await job.BroadcastRoom({ roomID: "live://1", proto: proto(1000, "real room") });
    assert.deepEqual((await job.Rooms({})).rooms, { "live://1": true });
    await t.until(() => t.byOp.get(1000) === 2, "the two authenticated pushes");
    assert.deepEqual(
      t.frames.filter((f) => f.op === 1000).map((f) => text(f.body)),
      ["real key", "real room"],
    );

    const m = await scrape(h.addrs);
    // Refused before the service: it counted only job's calls.
    assert.equal(sample(m, "goim_comet_grpc_calls_total", 'method="PushMsg"'), 1);
    assert.equal(sample(m, "goim_comet_grpc_calls_total", 'method="Broadcast"'), 0);
    assert.equal(sample(m, "goim_comet_grpc_unauthenticated_total", 'method="PushMsg"'), 3);
    assert.equal(sample(m, "goim_comet_grpc_unauthenticated_total", 'method="Rooms"'), 3);
  } finally {
    t.close();
    await t.done;
    for (const c of [anonymous, wrong, prefix, job]) c.close();
    await h.close();
  }
});

Deno.test("grpc auth: without grpc.token the comet serves token-less callers (unmodified goim job)", async () => {
  const h = await startComet([], { grpc: true });
  const goimJob = createCometClient(h.addrs.grpc!, { deadlineMs: 3000 });
  const t = await TcpTestClient.connect(h.addrs.tcp[0]);
  try {
    await t.auth({ key: "k", room_id: "live://1", accepts: [1000] });
    await goimJob.PushMsg({ keys: ["k"], protoOp: 1000, proto: proto(1000, "from goim") });
    await t.until(() => t.byOp.get(1000) === 1, "the push");
  } finally {
    t.close();
    await t.done;
    goimJob.close();
    await h.close();
  }
});

Deno.test("grpc auth: logic refuses forged Receive, Disconnect, RenewOnline and Connect without the token", async () => {
  const hooks: unknown[] = [];
  const fetchHook: typeof fetch = async (_url, init) => {
    hooks.push(JSON.parse(String(init?.body)));
    return await Promise.resolve(new Response("ok"));
  };
  const h = logicHarness([
    `grpc.token=${SECRET}`,
    "logic.webhook.url=http://hook.test/upstream",
  ], { fetch: fetchHook });
  const addrs = await h.logic.start();
  const target = `127.0.0.1:${addrs.grpc!.port}`;
  const attacker = createLogicClient(target, { deadlineMs: 3000 });
  const guesser = createLogicClient(target, { deadlineMs: 3000, token: `${SECRET}x` });
  const comet = createLogicClient(target, { deadlineMs: 3000, token: SECRET });
  try {
    // A live user, connected through an authenticated comet.
    const reply = await comet.Connect({
      server: "comet-1",
      token: token({ mid: 42, key: "live-key", room_id: "live://9" }),
    });
    assert.equal(reply.key, "live-key");
    await comet.RenewOnline({ server: "comet-1", roomCount: { "live://9": 1 } });
    assert.equal(h.logic.online.count("live://9"), 1);

    for (const [name, c] of [["no token", attacker], ["wrong token", guesser]] as const) {
      await rejectsWith(
        c.Disconnect({ mid: 42, key: "live-key", server: "comet-1" }),
        "UNAUTHENTICATED",
        `Disconnect, ${name}`,
      );
      await rejectsWith(
        c.RenewOnline({ server: "comet-1", roomCount: { "live://9": 999999 } }),
        "UNAUTHENTICATED",
        `RenewOnline, ${name}`,
      );
      await rejectsWith(
        c.Receive({ mid: 100, proto: proto(1000, "from mid 100") }),
        "UNAUTHENTICATED",
        `Receive, ${name}`,
      );
      await rejectsWith(
        c.Connect({ server: "evil", token: token({ mid: 1, key: "evil-key" }) }),
        "UNAUTHENTICATED",
        `Connect, ${name}`,
      );
    }
    assert.deepEqual(await h.sessions.serversByKeys(["live-key", "evil-key"]), ["comet-1", null]);
    assert.equal(h.logic.online.count("live://9"), 1);

    // The same Receive with the token reaches the webhook: the refusal above was the token's.
    await comet.Receive({ mid: 42, proto: proto(1000, "from mid 42") });
    await eventually(() => hooks.length === 1, "the webhook delivery");
    assert.equal((hooks[0] as { mid: number }).mid, 42);

    const m = await h.logic.metrics.registry.text();
    assert.equal(sample(m, "goim_logic_grpc_unauthenticated_total", 'method="Disconnect"'), 2);
    assert.equal(sample(m, "goim_logic_grpc_unauthenticated_total", 'method="Receive"'), 2);
    assert.ok(
      h.logLines.some((l) => l.includes("internal gRPC call refused")),
      "refusals are logged",
    );
  } finally {
    for (const c of [attacker, guesser, comet]) c.close();
    await h.close();
  }
});

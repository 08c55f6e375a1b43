/**
 * Issue #9 findings 7 and 9, auth mode jwt: a client-chosen key cannot pass
 * from one mid to another (no kick, no pushes meant for the other user; real
 * TCP clients on an embedded server); `aud`/`iss` checks; HS256 secrets
 * under 32 bytes refused at startup; a maximum token lifetime. The expiry
 * close is in ./jwt_expiry_test.ts.
 */

import assert from "node:assert/strict";
import * as jose from "jose";
import { ConfigError, loadConfig } from "../infra/config.ts";
import { createLogger } from "../infra/log.ts";
import { createAuthenticator } from "../logic/auth.ts";
import { startEmbedded } from "../main.ts";
import { grpcStatus, RpcError } from "../proto/grpc.ts";
import { Op } from "../protocol/mod.ts";
import { TcpTestClient, type TestClient } from "./fixtures/comet_fixtures.ts";
import { type LogicHarness, logicHarness, token } from "./fixtures/logic_fixtures.ts";

const SECRET = "jwt-hardening-secret-with-enough-entropy-01";
const JWT = ["logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`];
const ROOT = new URL("..", import.meta.url).pathname;
const enc = new TextEncoder();
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const nowS = () => Math.floor(Date.now() / 1000);

/** An HS256 token; `exp` in seconds since the epoch (default in 5 min), null = none. */
function hs256(claims: jose.JWTPayload, exp: number | null = nowS() + 300): Promise<string> {
  const jwt = new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256" });
  if (exp !== null) jwt.setExpirationTime(exp);
  return jwt.sign(enc.encode(SECRET));
}

async function connect(h: LogicHarness, fields: Record<string, unknown>) {
  return await h.logic.service.Connect({ server: "comet-1", cookie: "", token: token(fields) });
}

async function refused(h: LogicHarness, fields: Record<string, unknown>, reason: string) {
  await assert.rejects(connect(h, fields), (e: unknown) => {
    assert.ok(e instanceof RpcError, String(e));
    assert.equal(e.code, grpcStatus.UNAUTHENTICATED);
    assert.ok(e.details.startsWith(`${reason}:`), `expected ${reason}, got ${e.details}`);
    return true;
  });
}

async function pushOk(http: string, path: string, body: string): Promise<void> {
  const res = await fetch(`${http}${path}`, { method: "POST", body });
  const json = await res.json();
  assert.equal(json.code, 0, `${path}: ${JSON.stringify(json)}`);
}

Deno.test("jwt key hijack: a mid-200 token with mid 100's key neither kicks mid 100 nor gets its pushes", async () => {
  const set = (kv: string) => ["--set", kv];
  const config = loadConfig({
    env: {},
    args: [
      "comet.tcp.bind=127.0.0.1:0",
      "comet.websocket.bind=127.0.0.1:0",
      "comet.admin.bind=",
      "logic.http.bind=127.0.0.1:0",
      "logic.admin.bind=",
      "job.admin.bind=",
      "node.id=jwt-hijack",
      ...JWT,
    ].flatMap(set),
  });
  const server = await startEmbedded(config, createLogger({ level: "error" }));
  const http = `http://127.0.0.1:${server.logicAddrs.http.port}`;
  const tcp = server.cometAddrs.tcp[0];
  const victim = await TcpTestClient.connect(tcp);
  const attacker = await TcpTestClient.connect(tcp);
  try {
    const common = { mid: 0, key: "phone", accepts: [1000] };
    await victim.auth({ ...common, token: await hs256({ sub: "100" }) });
    // The attacker's own token is valid: the connection is accepted, under
    // its own mid's key, and takes nothing from mid 100.
    await attacker.auth({ ...common, token: await hs256({ sub: "200" }) });

    const got = (c: TestClient) => c.frames.filter((f) => f.op === 1000).map((f) => text(f.body));
    // Pushes by mid 100 and by its (scoped) key still reach mid 100.
    await pushOk(http, "/goim/push/mids?operation=1000&mids=100", "for-100");
    const first = await victim.next((f) =>
      f.op === Op.DisconnectReply || (f.op === 1000 && text(f.body) === "for-100")
    );
    assert.notEqual(first.op, Op.DisconnectReply, `mid 100 was kicked: ${text(first.body)}`);
    await pushOk(http, "/goim/push/keys?operation=1000&keys=100:phone", "for-100-key");
    await victim.next((f) => f.op === 1000 && text(f.body) === "for-100-key");
    // The fence: a broadcast after them; once the attacker has it, it would
    // have had the pushes above too if its connection held mid 100's key.
    await pushOk(http, "/goim/push/all?operation=1000", "fence");
    await attacker.next((f) => f.op === 1000 && text(f.body) === "fence");
    assert.deepEqual(got(attacker), ["fence"], "mid 200 got none of mid 100's pushes");
    await victim.next((f) => f.op === 1000 && text(f.body) === "fence");
    assert.equal(victim.isClosed, false, "mid 100 was not kicked");
    assert.equal(victim.reason(), undefined, "no op 6 (4004 replaced) for mid 100");
    // Mid 200 reaches its own connection under its own key.
    await pushOk(http, "/goim/push/keys?operation=1000&keys=200:phone", "for-200");
    await attacker.next((f) => f.op === 1000 && text(f.body) === "for-200");
    assert.deepEqual(got(victim), ["for-100", "for-100-key", "fence"]);
  } finally {
    victim.close();
    attacker.close();
    await Promise.all([victim.done, attacker.done]);
    await server.stop();
  }
});

Deno.test("jwt keys: a requested key is scoped by the mid unless the token binds one; mode none trusts it", async () => {
  const h = logicHarness(JWT);
  const none = logicHarness();
  try {
    assert.equal(
      (await connect(h, { key: "phone", token: await hs256({ sub: "200" }) })).key,
      "200:phone",
    );
    assert.equal(
      (await connect(h, { key: "phone", token: await hs256({ sub: "100" }) })).key,
      "100:phone",
    );
    // Someone else's scoped key stays inside the asker's own mid.
    assert.equal(
      (await connect(h, { key: "100:phone", token: await hs256({ sub: "200" }) })).key,
      "200:100:phone",
    );
    // A key claim is the issuer's choice: kept exactly, with or without the request repeating it.
    const bound = await hs256({ sub: "200", key: "device-7" });
    assert.equal((await connect(h, { token: bound })).key, "device-7");
    assert.equal((await connect(h, { key: "device-7", token: bound })).key, "device-7");
    await refused(h, { key: "phone", token: bound }, "key_not_allowed");
    // No key requested: a generated UUID, as goim.
    assert.match((await connect(h, { token: await hs256({ sub: "200" }) })).key, /^[0-9a-f-]{36}$/);
    assert.deepEqual(
      await h.sessions.serversByKeys(["200:phone", "100:phone", "phone"]),
      ["comet-1", "comet-1", null],
      "routes are written under the scoped keys only",
    );
    // Auth mode none: goim's behaviour, the client's key as sent.
    assert.equal((await connect(none, { mid: 100, key: "phone" })).key, "phone");
  } finally {
    await h.close();
    await none.close();
  }
});

Deno.test("jwt aud/iss: checked when configured, refused on mismatch or absence", async () => {
  const h = logicHarness([
    ...JWT,
    "logic.auth.jwt.audience=goim-test",
    "logic.auth.jwt.issuer=https://issuer.test",
  ]);
  const open = logicHarness(JWT);
  try {
    const iss = "https://issuer.test";
    assert.equal(
      (await connect(h, { token: await hs256({ sub: "1", aud: "goim-test", iss }) })).mid,
      1,
    );
    assert.equal(
      (await connect(h, { token: await hs256({ sub: "2", aud: ["other", "goim-test"], iss }) }))
        .mid,
      2,
      "an aud list holding the audience",
    );
    await refused(h, { token: await hs256({ sub: "1", aud: "other", iss }) }, "bad_audience");
    await refused(h, { token: await hs256({ sub: "1", aud: ["a", "b"], iss }) }, "bad_audience");
    await refused(h, { token: await hs256({ sub: "1", iss }) }, "missing_claim");
    await refused(
      h,
      { token: await hs256({ sub: "1", aud: "goim-test", iss: "https://evil.test" }) },
      "bad_issuer",
    );
    await refused(h, { token: await hs256({ sub: "1", aud: "goim-test" }) }, "missing_claim");
    const metrics = await h.logic.metrics.registry.text();
    assert.match(metrics, /goim_logic_auth_failures_total\{reason="bad_audience"\} 2\b/);
    assert.match(metrics, /goim_logic_auth_failures_total\{reason="bad_issuer"\} 1\b/);
    // Not configured: not checked.
    assert.equal(
      (await connect(open, { token: await hs256({ sub: "3", aud: "x", iss: "y" }) })).mid,
      3,
    );
  } finally {
    await h.close();
    await open.close();
  }
});

Deno.test("jwt max_lifetime: exp - iat over it is refused; without iat it counts from now", async () => {
  const h = logicHarness([...JWT, "logic.auth.jwt.max_lifetime=1h"]);
  const off = logicHarness(JWT);
  try {
    const t = nowS();
    const ok = async (claims: jose.JWTPayload, exp: number) =>
      assert.equal((await connect(h, { token: await hs256({ sub: "5", ...claims }, exp) })).mid, 5);
    await ok({ iat: t }, t + 3600);
    await ok({}, t + 1800);
    await ok({ iat: t - 3000 }, t + 600);
    const over = async (
      claims: jose.JWTPayload,
      exp: number | null,
      reason = "lifetime_exceeded",
    ) => await refused(h, { token: await hs256({ sub: "5", ...claims }, exp) }, reason);
    await over({ iat: t }, t + 7200);
    await over({ iat: t - 1800 }, t + 1801 + 60);
    await over({}, t + 3600 + 120);
    // A future iat does not shorten the lifetime counted: it starts now.
    await over({ iat: t + 365 * 86400 }, t + 365 * 86400 + 600);
    // A token without exp never had a bounded lifetime: refused (exp is required anyway).
    await over({ iat: t }, null, "missing_claim");
    // 0 = no limit.
    assert.equal(
      (await connect(off, { token: await hs256({ sub: "6", iat: t }, t + 30 * 86400) })).mid,
      6,
    );
  } finally {
    await h.close();
    await off.close();
  }
});

Deno.test("jwt secret: an HS256 secret under 32 bytes is refused at startup (exit 2)", async () => {
  // The configuration loader, which every role's entry point goes through.
  assert.throws(
    () =>
      loadConfig({
        env: {},
        args: ["--set", "logic.auth.mode=jwt", "--set", "logic.auth.jwt.secret=x"],
      }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /logic\.auth\.jwt\.secret: the HS256 secret is 1 bytes; at least 32/.test(e.message),
  );
  // An authenticator built by hand refuses it too.
  const jwt = {
    algorithm: "HS256" as const,
    secret: "x".repeat(31),
    public_key_file: "",
    audience: "",
    issuer: "",
    max_lifetime: 0,
    close_on_expiry: false,
  };
  await assert.rejects(
    createAuthenticator({ mode: "jwt", jwt, api_keys: [] }).ready(),
    /logic\.auth\.jwt\.secret is 31 bytes; HS256 needs at least 32/,
  );
  await createAuthenticator({ mode: "jwt", jwt: { ...jwt, secret: "x".repeat(32) }, api_keys: [] })
    .ready();

  // A server process (the embedded entry: it starts on memory engines, so
  // nothing but the secret stops it) exits 2 with the reason on stderr.
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "main.ts",
      ...[
        "logic.auth.mode=jwt",
        "logic.auth.jwt.secret=x",
        "logic.http.bind=127.0.0.1:0",
        "logic.admin.bind=",
        "comet.tcp.bind=127.0.0.1:0",
        "comet.websocket.bind=127.0.0.1:0",
        "comet.admin.bind=",
        "job.admin.bind=",
        "node.id=jwt-secret-test",
      ].flatMap((s) => ["--set", s]),
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    child.output(),
    new Promise<null>((r) => timer = setTimeout(() => r(null), 30_000)),
  ]);
  clearTimeout(timer);
  if (outcome === null) {
    child.kill("SIGKILL");
    await child.status;
    assert.fail("the server started with a 1-byte HS256 secret (still running after 30 s)");
  }
  assert.equal(outcome.code, 2);
  assert.match(text(outcome.stderr), /logic\.auth\.jwt\.secret: the HS256 secret is 1 bytes/);
});

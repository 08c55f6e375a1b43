// Connect authentication (auth mode jwt, HS256 and RS256) and API key checks.
import assert from "node:assert/strict";
import * as jose from "jose";
import { grpcStatus, RpcError } from "../proto/grpc.ts";
import { createApiKeyCheck, createAuthenticator } from "../logic/auth.ts";
import { logicHarness, token } from "./fixtures/logic_fixtures.ts";

const SECRET = "test-secret-with-enough-entropy-0123456789";
const now = () => Math.floor(Date.now() / 1000);

function hs256(claims: jose.JWTPayload, secret = SECRET, exp: number | null = now() + 300) {
  const jwt = new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256" });
  if (exp !== null) jwt.setExpirationTime(exp);
  return jwt.sign(new TextEncoder().encode(secret));
}

function b64url(s: string): string {
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

async function refused(
  h: ReturnType<typeof logicHarness>,
  fields: Record<string, unknown>,
  reason: string,
): Promise<void> {
  await assert.rejects(
    h.logic.service.Connect({ server: "comet-1", cookie: "", token: token(fields) }),
    (e: unknown) => {
      assert.ok(e instanceof RpcError, String(e));
      assert.equal(e.code, grpcStatus.UNAUTHENTICATED);
      assert.ok(e.details.startsWith(`${reason}:`), `expected ${reason}, got ${e.details}`);
      return true;
    },
  );
}

Deno.test("jwt HS256: a valid token connects as its sub, within its claims", async () => {
  const h = logicHarness(["logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`]);
  try {
    const jwt = await hs256({
      sub: "42",
      room: ["live://1000", "chat://*"],
      accepts: [1000, 1001],
    });
    const reply = await h.logic.service.Connect({
      server: "comet-1",
      cookie: "",
      token: token({ token: jwt, room_id: "live://1000", accepts: [1000], platform: "web" }),
    });
    assert.equal(reply.mid, 42);
    assert.equal(reply.roomID, "live://1000");
    assert.deepEqual(reply.accepts, [1000]);
    assert.match(reply.key, /^[0-9a-f-]{36}$/);
    assert.deepEqual(await h.sessions.serversByKeys([reply.key]), ["comet-1"]);
    // The JSON mid may repeat the sub; a room matching a wildcard entry; no room at all.
    for (const room_id of ["chat://lobby", ""]) {
      const r = await h.logic.service.Connect({
        server: "comet-1",
        cookie: "",
        token: token({ mid: 42, token: jwt, room_id }),
      });
      assert.equal(r.roomID, room_id);
    }
    // A token with a key claim binds the connection key.
    const bound = await hs256({ sub: "42", key: "device-1" });
    const r = await h.logic.service.Connect({
      server: "comet-1",
      cookie: "",
      token: token({ token: bound }),
    });
    assert.equal(r.key, "device-1");
  } finally {
    await h.close();
  }
});

Deno.test("jwt HS256: forged, expired, malformed or out-of-claim tokens are UNAUTHENTICATED", async () => {
  const h = logicHarness(["logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`]);
  try {
    const good = await hs256({ sub: "7", room: "live://1", accepts: [1000] });
    await refused(h, { room_id: "live://1" }, "missing_token");
    await refused(h, { token: await hs256({ sub: "7" }, "another-secret") }, "bad_signature");
    await refused(
      h,
      { token: good.slice(0, -3) + (good.endsWith("AAA") ? "BBB" : "AAA") },
      "bad_signature",
    );
    await refused(h, { token: await hs256({ sub: "7" }, SECRET, now() - 60) }, "expired");
    await refused(h, { token: await hs256({ sub: "7" }, SECRET, null) }, "missing_claim");
    await refused(h, { token: await hs256({}, SECRET) }, "missing_claim");
    await refused(h, { token: await hs256({ sub: "seven" }) }, "bad_subject");
    await refused(h, { token: await hs256({ sub: "-7" }) }, "bad_subject");
    await refused(h, { token: await hs256({ sub: "7", nbf: now() + 600 }) }, "not_yet_valid");
    await refused(h, { mid: 8, token: good }, "mid_mismatch");
    await refused(h, { token: good, room_id: "live://2" }, "room_not_allowed");
    await refused(
      h,
      { token: good, room_id: "live://1", accepts: [1000, 1001] },
      "accepts_not_allowed",
    );
    await refused(h, { token: await hs256({ sub: "7", key: "k1" }), key: "k2" }, "key_not_allowed");
    // alg none: an unsigned token claiming to need no signature.
    const unsigned = `${b64url('{"alg":"none","typ":"JWT"}')}.${
      b64url(JSON.stringify({ sub: "7", exp: now() + 300 }))
    }.`;
    await refused(h, { token: unsigned }, "alg_not_allowed");
    await refused(h, { token: "not-a-jwt" }, "malformed");
    await refused(h, { token: "a.b.c" }, "malformed");
    // Not JSON at all, or JSON of the wrong shape.
    await assert.rejects(
      h.logic.service.Connect({ server: "c", cookie: "", token: new TextEncoder().encode("{") }),
      (e: unknown) =>
        e instanceof RpcError && e.code === grpcStatus.UNAUTHENTICATED &&
        /^malformed:/.test(e.details),
    );
    await refused(h, { mid: "1" }, "malformed");

    const text = await h.logic.metrics.registry.text();
    for (
      const [reason, n] of [
        ["bad_signature", 2],
        ["expired", 1],
        ["missing_claim", 2],
        ["room_not_allowed", 1],
        ["accepts_not_allowed", 1],
        ["alg_not_allowed", 1],
        ["malformed", 4],
      ] as const
    ) {
      assert.match(
        text,
        new RegExp(`goim_logic_auth_failures_total\\{reason="${reason}"\\} ${n}\\b`),
      );
    }
    assert.match(text, /goim_logic_connects_total\{result="unauthenticated"\} 18\b/);
    assert.deepEqual(h.sessions.size.keys, 0, "no route written for a refused token");
  } finally {
    await h.close();
  }
});

Deno.test("jwt: exp allows a small clock skew", async () => {
  const h = logicHarness(["logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`]);
  try {
    const jwt = await hs256({ sub: "1" }, SECRET, now() - 3);
    const r = await h.logic.service.Connect({
      server: "c",
      cookie: "",
      token: token({ token: jwt }),
    });
    assert.equal(r.mid, 1);
  } finally {
    await h.close();
  }
});

Deno.test("jwt RS256: verifies with the SPKI public key file; refuses alg confusion", async () => {
  const { publicKey, privateKey } = await jose.generateKeyPair("RS256", { extractable: true });
  const pem = await jose.exportSPKI(publicKey);
  const file = await Deno.makeTempFile({ suffix: ".pem" });
  await Deno.writeTextFile(file, pem);
  const h = logicHarness([
    "logic.auth.mode=jwt",
    "logic.auth.jwt.algorithm=RS256",
    `logic.auth.jwt.public_key_file=${file}`,
  ]);
  try {
    const jwt = await new jose.SignJWT({ sub: "99", accepts: [1000] })
      .setProtectedHeader({ alg: "RS256" })
      .setExpirationTime("5m")
      .sign(privateKey);
    const r = await h.logic.service.Connect({
      server: "comet-1",
      cookie: "",
      token: token({ token: jwt, accepts: [1000] }),
    });
    assert.equal(r.mid, 99);
    // HS256 signed with the public key text as the secret: the classic alg confusion.
    await refused(h, { token: await hs256({ sub: "99" }, pem) }, "alg_not_allowed");
    // Signed by another RSA key.
    const other = await jose.generateKeyPair("RS256");
    const forged = await new jose.SignJWT({ sub: "99" }).setProtectedHeader({ alg: "RS256" })
      .setExpirationTime("5m").sign(other.privateKey);
    await refused(h, { token: forged }, "bad_signature");
    const expired = await new jose.SignJWT({ sub: "99" }).setProtectedHeader({ alg: "RS256" })
      .setExpirationTime(now() - 60).sign(privateKey);
    await refused(h, { token: expired }, "expired");
  } finally {
    await h.close();
    await Deno.remove(file);
  }
});

Deno.test("jwt RS256: an unreadable key file fails start() with a clear message", async () => {
  const h = logicHarness([
    "logic.auth.mode=jwt",
    "logic.auth.jwt.algorithm=RS256",
    "logic.auth.jwt.public_key_file=/nonexistent/key.pem",
  ]);
  try {
    await assert.rejects(h.logic.start(), /public_key_file: cannot read \/nonexistent\/key\.pem/);
    // Connect says so too, as an internal error rather than blaming the client.
    await assert.rejects(
      h.logic.service.Connect({ server: "c", cookie: "", token: token({ token: "x" }) }),
      (e: unknown) => e instanceof RpcError && e.code === grpcStatus.INTERNAL,
    );
  } finally {
    await h.close();
  }
});

Deno.test("auth mode none trusts the token JSON as goim does", async () => {
  const auth = createAuthenticator({
    mode: "none",
    jwt: {
      algorithm: "HS256",
      secret: "",
      public_key_file: "",
      audience: "",
      issuer: "",
      max_lifetime: 0,
      close_on_expiry: false,
    },
    api_keys: [],
  });
  assert.deepEqual(
    await auth.authenticate({ mid: 5, key: "k", room_id: "r://1", platform: "ios", accepts: [1] }),
    {
      mid: 5,
      key: "k",
      roomID: "r://1",
      platform: "ios",
      accepts: [1],
      allowedRooms: null,
      allowedOps: null,
      expiresAt: null,
    },
  );
});

Deno.test("jwt: Connect returns the room and accepts claims as the connection's auth scope", async () => {
  const h = logicHarness(["logic.auth.mode=jwt", `logic.auth.jwt.secret=${SECRET}`]);
  const connect = async (claims: jose.JWTPayload, fields: Record<string, unknown> = {}) =>
    await h.logic.service.Connect({
      server: "comet-1",
      cookie: "",
      token: token({ token: await hs256({ sub: "42", ...claims }), ...fields }),
    });
  try {
    // Both claims: both sides restricted, the lists as the token has them.
    const both = await connect(
      { room: ["live://1000", "chat://*"], accepts: [1000, 1001] },
      { room_id: "live://1000", accepts: [1000] },
    );
    assert.deepEqual(both.allowed_rooms, ["live://1000", "chat://*"]);
    assert.equal(both.rooms_restricted, true);
    assert.deepEqual(both.allowed_ops, [1000, 1001]);
    assert.equal(both.ops_restricted, true);
    assert.deepEqual(both.accepts, [1000], "what the connection listens to now is unchanged");
    // A single room string; no accepts claim: ops unrestricted (fields left out).
    const room = await connect({ room: "live://*" });
    assert.deepEqual(room.allowed_rooms, ["live://*"]);
    assert.equal(room.rooms_restricted, true);
    assert.equal(room.ops_restricted, undefined);
    assert.equal(room.allowed_ops, undefined);
    // Empty claims restrict to nothing: the flag is set, the list is empty.
    const none = await connect({ room: [], accepts: [] });
    assert.deepEqual(
      [none.allowed_rooms, none.rooms_restricted, none.allowed_ops, none.ops_restricted],
      [[], true, [], true],
    );
    // No claim at all: no scope fields, the reply is goim's shape.
    const open = await connect({});
    assert.deepEqual(Object.keys(open).sort(), ["accepts", "heartbeat", "key", "mid", "roomID"]);
    // accepts entries travel as int32: anything else is refused rather than truncated.
    await refused(h, { token: await hs256({ sub: "42", accepts: [2 ** 32 + 1000] }) }, "bad_claim");
    await refused(h, { token: await hs256({ sub: "42", accepts: [1000.5] }) }, "bad_claim");
  } finally {
    await h.close();
  }
});

Deno.test("auth mode none: Connect replies carry no auth scope", async () => {
  const h = logicHarness();
  try {
    const r = await h.logic.service.Connect({
      server: "comet-1",
      cookie: "",
      token: token({ mid: 1, room_id: "live://1", accepts: [1000] }),
    });
    assert.equal(r.rooms_restricted, undefined);
    assert.equal(r.ops_restricted, undefined);
  } finally {
    await h.close();
  }
});

Deno.test("API key check: bearer scheme, exact keys only, open when none configured", () => {
  const req = (authorization?: string) =>
    new Request("http://x/", { headers: authorization ? { authorization } : {} });
  assert.equal(createApiKeyCheck([])(req()), true);
  const check = createApiKeyCheck(["k-one", "k-two"]);
  assert.equal(check(req("Bearer k-one")), true);
  assert.equal(check(req("Bearer k-two")), true);
  assert.equal(check(req("BEARER  k-two ")), true);
  for (const bad of [undefined, "Bearer", "Bearer k-on", "Bearer k-one2", "Token k-one", "k-one"]) {
    assert.equal(check(req(bad)), false, String(bad));
  }
});

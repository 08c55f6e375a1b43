// The one host:port parser and printer (infra/addr.ts): its edge rules.
import assert from "node:assert/strict";
import { advertisedAddr, dialableHost, joinHostPort, splitHostPort } from "../infra/addr.ts";

Deno.test("splitHostPort: IPv4, names, bracketed IPv6, port 0", () => {
  assert.deepEqual(splitHostPort("127.0.0.1:3101"), { hostname: "127.0.0.1", port: 3101 });
  assert.deepEqual(splitHostPort("0.0.0.0:0"), { hostname: "0.0.0.0", port: 0 });
  assert.deepEqual(splitHostPort("redis.local:6379"), { hostname: "redis.local", port: 6379 });
  assert.deepEqual(splitHostPort("[::1]:3101"), { hostname: "::1", port: 3101 });
  assert.deepEqual(splitHostPort("[::]:65535"), { hostname: "::", port: 65535 });
  assert.deepEqual(splitHostPort("[::ffff:127.0.0.1]:1"), {
    hostname: "::ffff:127.0.0.1",
    port: 1,
  });
});

Deno.test("splitHostPort: an empty host (goim's :3101) means every interface", () => {
  assert.deepEqual(splitHostPort(":3101"), { hostname: "0.0.0.0", port: 3101 });
});

Deno.test("splitHostPort: bad ports are refused", () => {
  for (
    const bad of ["h:", "h:65536", "h:99999", "h:-1", "h:1e3", "h:0x50", "h: 80", "h:80 ", "h"]
  ) {
    assert.throws(() => splitHostPort(bad), TypeError, bad);
  }
});

Deno.test("splitHostPort: IPv6 without brackets and other malformed hosts are refused", () => {
  for (
    const bad of [
      "::1:3101",
      "::1",
      "fe80::1:80",
      "[::1]",
      "[]:80",
      "[::1:80",
      "a b:80",
      "a/b:80",
      "",
    ]
  ) {
    assert.throws(
      () => splitHostPort(bad),
      (e: unknown) =>
        e instanceof TypeError && e.message.includes(`"${bad}" is not a host:port address`),
      bad,
    );
  }
});

Deno.test("joinHostPort: brackets IPv6 hosts; splitHostPort reads every join back", () => {
  assert.equal(joinHostPort({ hostname: "::1", port: 3101 }), "[::1]:3101");
  assert.equal(joinHostPort({ hostname: "127.0.0.1", port: 0 }), "127.0.0.1:0");
  assert.equal(joinHostPort({ hostname: "redis.local", port: 6379 }), "redis.local:6379");
  for (const a of [{ hostname: "::", port: 1 }, { hostname: "10.0.0.1", port: 65535 }]) {
    assert.deepEqual(splitHostPort(joinHostPort(a)), a);
  }
});

Deno.test("advertisedAddr: the advertise key wins; a wildcard bind advertises the host name", () => {
  assert.equal(
    advertisedAddr("comet-1.internal:3109", "0.0.0.0:3109", 3109),
    "comet-1.internal:3109",
  );
  assert.equal(advertisedAddr("", "127.0.0.1:0", 43109), "127.0.0.1:43109");
  assert.equal(advertisedAddr("", "[::1]:0", 3109), "[::1]:3109");
  assert.equal(advertisedAddr("", "0.0.0.0:3109", 3109), `${Deno.hostname()}:3109`);
  assert.equal(advertisedAddr("", ":3109", 3109), `${Deno.hostname()}:3109`);
  assert.equal(dialableHost("::"), Deno.hostname());
  assert.equal(dialableHost("10.0.0.5"), "10.0.0.5");
});

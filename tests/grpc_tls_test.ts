/**
 * Internal gRPC with `grpc.tls.*` over real loopback sockets: TLS, mTLS
 * (a client without a certificate from the configured CA is refused), the
 * credentials every role builds from the same keys (proto/security.ts), and
 * the startup warning for a port reachable beyond loopback that nothing
 * protects. The CA and certificates are made with `openssl` for each run.
 */

import assert from "node:assert/strict";
import { type Config, loadConfig } from "../infra/config.ts";
import { createCometClient, createLogicClient, RpcError } from "../proto/grpc.ts";
import { exposure, internalClientOptions, isLoopbackHost } from "../proto/security.ts";
import { startComet, TcpTestClient } from "./fixtures/comet_fixtures.ts";
import { logicHarness, memoryLogger, token } from "./fixtures/logic_fixtures.ts";

const enc = new TextEncoder();
const SECRET = "grpc-tls-test-secret";

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** File paths of a throwaway PKI: a CA, a server and a client under it, a rogue CA and client. */
interface Pki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  rogueCa: string;
  rogueCert: string;
  rogueKey: string;
}

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
}

async function makeLeaf(dir: string, ca: string, name: string, usage: string): Promise<void> {
  await Deno.writeTextFile(
    `${dir}/${name}.ext`,
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      `extendedKeyUsage=${usage}`,
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "",
    ].join("\n"),
  );
  await openssl(
    dir,
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${name}`,
  );
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.pem`,
    "-CAkey",
    `${ca}.key`,
    "-set_serial",
    String(Date.now()),
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
  );
}

async function withPki(fn: (pki: Pki) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "grpc_tls_" });
  try {
    await makeCa(dir, "ca");
    await makeCa(dir, "rogue-ca");
    await makeLeaf(dir, "ca", "server", "serverAuth");
    await makeLeaf(dir, "ca", "client", "clientAuth");
    await makeLeaf(dir, "rogue-ca", "rogue", "clientAuth");
    await fn({
      dir,
      ca: `${dir}/ca.pem`,
      serverCert: `${dir}/server.pem`,
      serverKey: `${dir}/server.key`,
      clientCert: `${dir}/client.pem`,
      clientKey: `${dir}/client.key`,
      rogueCa: `${dir}/rogue-ca.pem`,
      rogueCert: `${dir}/rogue.pem`,
      rogueKey: `${dir}/rogue.key`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The `grpc` section a role would load from these `--set` pairs. */
function grpcConfig(...sets: string[]): Config["grpc"] {
  return loadConfig({ env: {}, args: sets.flatMap((s) => ["--set", s]) }).grpc;
}

async function refusedUnavailable(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof RpcError, `${what}: ${e}`);
    assert.match(e.message, /: UNAVAILABLE: /, what);
    return true;
  }, `${what} must not get through`);
}

Deno.test("grpc tls: comet over TLS with a token; plaintext and untrusting clients cannot call", async () => {
  await withPki(async (pki) => {
    const h = await startComet([
      `grpc.token=${SECRET}`,
      `grpc.tls.cert_file=${pki.serverCert}`,
      `grpc.tls.key_file=${pki.serverKey}`,
    ], { grpc: true });
    const job = createCometClient(
      h.addrs.grpc!,
      await internalClientOptions(grpcConfig(
        `grpc.token=${SECRET}`,
        `grpc.tls.ca_file=${pki.ca}`,
        "grpc.tls.server_name=localhost",
      )),
    );
    const plaintext = createCometClient(h.addrs.grpc!, { token: SECRET, deadlineMs: 2000 });
    const untrusting = createCometClient(h.addrs.grpc!, {
      ...(await internalClientOptions(grpcConfig(
        `grpc.token=${SECRET}`,
        `grpc.tls.ca_file=${pki.rogueCa}`,
        "grpc.tls.server_name=localhost",
      ))),
      deadlineMs: 2000,
    });
    const t = await TcpTestClient.connect(h.addrs.tcp[0]);
    try {
      await t.auth({ key: "k", room_id: "live://1", accepts: [1000] });
      await refusedUnavailable(
        plaintext.PushMsg({
          keys: ["k"],
          protoOp: 1000,
          proto: { ver: 1, op: 1000, seq: 0, body: enc.encode("x") },
        }),
        "a plaintext client",
      );
      await refusedUnavailable(
        untrusting.PushMsg({
          keys: ["k"],
          protoOp: 1000,
          proto: { ver: 1, op: 1000, seq: 0, body: enc.encode("x") },
        }),
        "a client that does not trust the server's CA",
      );
      await job.PushMsg({
        keys: ["k"],
        protoOp: 1000,
        proto: { ver: 1, op: 1000, seq: 0, body: enc.encode("over tls") },
      });
      await t.until(() => t.byOp.get(1000) === 1, "the TLS push");
      assert.equal(new TextDecoder().decode(t.frames.find((f) => f.op === 1000)!.body), "over tls");
    } finally {
      t.close();
      await t.done;
      for (const c of [job, plaintext, untrusting]) c.close();
      await h.close();
    }
  });
});

Deno.test("grpc tls: logic over mTLS refuses clients without a certificate from grpc.tls.ca_file", async () => {
  await withPki(async (pki) => {
    const h = logicHarness([
      `grpc.tls.cert_file=${pki.serverCert}`,
      `grpc.tls.key_file=${pki.serverKey}`,
      `grpc.tls.ca_file=${pki.ca}`,
    ]);
    const addrs = await h.logic.start();
    const target = `127.0.0.1:${addrs.grpc!.port}`;
    const common = [`grpc.tls.ca_file=${pki.ca}`, "grpc.tls.server_name=localhost"];
    const comet = createLogicClient(
      target,
      await internalClientOptions(grpcConfig(
        ...common,
        `grpc.tls.cert_file=${pki.clientCert}`,
        `grpc.tls.key_file=${pki.clientKey}`,
      )),
    );
    const noCert = createLogicClient(target, {
      ...(await internalClientOptions(grpcConfig(...common))),
      deadlineMs: 2000,
    });
    const rogue = createLogicClient(target, {
      ...(await internalClientOptions(grpcConfig(
        ...common,
        `grpc.tls.cert_file=${pki.rogueCert}`,
        `grpc.tls.key_file=${pki.rogueKey}`,
      ))),
      deadlineMs: 2000,
    });
    try {
      const forged = { mid: 1, key: "live-key", server: "comet-evil" };
      await refusedUnavailable(noCert.Disconnect(forged), "a client without a certificate");
      await refusedUnavailable(rogue.Disconnect(forged), "a client with another CA's certificate");
      const reply = await comet.Connect({
        server: "comet-1",
        token: token({ mid: 5, key: "live-key" }),
      });
      assert.equal(reply.mid, 5);
      assert.deepEqual(await h.sessions.serversByKeys(["live-key"]), ["comet-1"]);
      assert.equal(
        h.logLines.some((l) => l.includes("INSECURE")),
        false,
        "loopback mTLS: no warning",
      );
    } finally {
      for (const c of [comet, noCert, rogue]) c.close();
      await h.close();
    }
  });
});

Deno.test("grpc tls: unreadable or half-set TLS files stop the server with the key named", async () => {
  const h = logicHarness(["grpc.tls.cert_file=/nonexistent/cert.pem"]);
  try {
    await assert.rejects(h.logic.start(), /grpc\.tls\.cert_file and grpc\.tls\.key_file/);
  } finally {
    await h.close();
  }
  const h2 = logicHarness([
    "grpc.tls.cert_file=/nonexistent/cert.pem",
    "grpc.tls.key_file=/nonexistent/key.pem",
  ]);
  try {
    await assert.rejects(h2.logic.start(), /grpc\.tls\.cert_file \/nonexistent\/cert\.pem/);
  } finally {
    await h2.close();
  }
  await assert.rejects(
    internalClientOptions(grpcConfig("grpc.tls.ca_file=/nonexistent/ca.pem")),
    /grpc\.tls\.ca_file \/nonexistent\/ca\.pem/,
  );
});

Deno.test("grpc tls: a gRPC port beyond loopback with nothing authenticating callers logs a loud WARN", async () => {
  // 192.0.2.1 (TEST-NET-1) is not an address of this machine: the warning
  // comes first, then the bind fails, so no port is ever open beyond loopback.
  const open = logicHarness(["logic.grpc.bind=192.0.2.1:0"]);
  try {
    await assert.rejects(open.logic.start(), /logic\.grpc\.bind 192\.0\.2\.1:0/);
    const warn = open.logLines.find((l) => l.includes("INSECURE"));
    assert.ok(warn, `a warning, got:\n${open.logLines.join("\n")}`);
    assert.match(warn, /"level":"warn"/);
    assert.match(warn, /logic\.grpc\.bind/);
    assert.match(warn, /GOIM_GRPC__TOKEN/);
  } finally {
    await open.close();
  }
  const tokened = logicHarness(["logic.grpc.bind=192.0.2.1:0", `grpc.token=${SECRET}`]);
  try {
    await assert.rejects(tokened.logic.start());
    assert.equal(tokened.logLines.some((l) => l.includes("INSECURE")), false);
  } finally {
    await tokened.close();
  }
  const lines: string[] = [];
  await assert.rejects(
    startComet(["comet.grpc.bind=192.0.2.1:0"], { grpc: true, log: memoryLogger(lines) }),
    /comet\.grpc\.bind 192\.0\.2\.1:0/,
  );
  assert.ok(
    lines.some((l) => l.includes("INSECURE") && l.includes("comet.grpc.bind")),
    lines.join("\n"),
  );

  const none = grpcConfig();
  const mtls = grpcConfig("grpc.tls.cert_file=c", "grpc.tls.key_file=k", "grpc.tls.ca_file=a");
  const tlsOnly = grpcConfig("grpc.tls.cert_file=c", "grpc.tls.key_file=k");
  assert.equal(exposure("127.0.0.1:3109", none), "ok");
  assert.equal(exposure("[::1]:3109", none), "ok");
  assert.equal(exposure("localhost:3109", none), "ok");
  assert.equal(exposure("0.0.0.0:3109", none), "open");
  assert.equal(exposure("[::]:3109", none), "open");
  assert.equal(exposure("10.0.0.5:3109", tlsOnly), "open", "TLS alone authenticates nobody");
  assert.equal(exposure("0.0.0.0:3109", mtls), "ok");
  assert.equal(exposure("0.0.0.0:3109", grpcConfig(`grpc.token=${SECRET}`)), "plaintext-token");
  assert.equal(isLoopbackHost("127.8.9.10"), true);
  assert.equal(isLoopbackHost("::ffff:127.0.0.1"), true);
  assert.equal(isLoopbackHost("128.0.0.1"), false);
});

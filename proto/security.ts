/**
 * Who may call the internal gRPC services (`goim.comet.Comet`,
 * `goim.logic.Logic`): a shared-secret token and optional TLS / mTLS, from
 * the `grpc.*` keys of the configuration.
 *
 * These services carry no end-user authentication of their own: whoever
 * reaches comet's port can push any frame to any client, whoever reaches
 * logic's can create and delete session routes and report online counts. So:
 * - with `grpc.token` set, every server built by
 *   {@linkcode createInternalServer} refuses a call UNAUTHENTICATED unless its
 *   metadata carries `authorization: Bearer <token>` (compared in constant
 *   time), before the request is handed to any handler; clients built with
 *   {@linkcode internalClientOptions} send it on every call;
 * - with `grpc.tls.cert_file` / `key_file` the servers speak TLS; with
 *   `grpc.tls.ca_file` too they require a client certificate that chains to
 *   that CA (mTLS), and clients present theirs;
 * - {@linkcode bindInternal} warns loudly when a server is reachable beyond
 *   loopback and nothing authenticates its callers.
 *
 * `grpc.token = ""` and no TLS is goim's own behaviour, kept so that these
 * roles can run next to unmodified goim processes (which send no token).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createHash, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isLoopbackHost, splitHostPort } from "../infra/addr.ts";
import type { Config } from "../infra/config.ts";
import { type Logger, LogThrottle } from "../infra/log.ts";
import type { Metrics } from "../infra/metrics.ts";
import type { ClientOptions } from "./grpc.ts";

/** The `grpc.*` section of the configuration. */
export type GrpcSecurityConfig = Config["grpc"];

/** The metadata key the token travels in. */
export const AUTHORIZATION_KEY = "authorization";

/** Shortest interval between two "call refused" log lines of one server (the count is kept). */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/** The metadata value a client sends for `token`. */
export function bearer(token: string): string {
  return `Bearer ${token}`;
}

// Digests have one length whatever was sent, so timingSafeEqual applies and
// the comparison time says nothing about where a guess went wrong.
function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/**
 * Whether the `authorization` values of a call prove the token whose
 * {@linkcode bearer} value digests to `expected`: exactly one value, equal to
 * it. Constant time in the content of the value.
 */
export function authorizationMatches(
  values: readonly grpc.MetadataValue[],
  expected: Buffer,
): boolean {
  if (values.length !== 1 || typeof values[0] !== "string") return false;
  return timingSafeEqual(digest(values[0]), expected);
}

/** What {@linkcode createInternalServer} reports refused calls to. */
export interface InternalServerOptions {
  /** Where refusals are logged (at most once per {@linkcode REFUSAL_LOG_INTERVAL_MS}). */
  log?: Logger;
  /** Where `grpc_unauthenticated_total{method}` is counted. */
  metrics?: Metrics;
}

/**
 * A grpc-js server for an internal service. With `cfg.token` set, every call
 * to any service added to it passes a server interceptor that answers
 * UNAUTHENTICATED — without decoding the request or reaching a handler —
 * unless the call carries the token; the `authorization` entry is removed
 * before handlers see the metadata.
 *
 * @example
 * ```ts
 * import type { Config } from "../infra/config.ts";
 * import type { Logger } from "../infra/log.ts";
 * import type { Metrics } from "../infra/metrics.ts";
 * import { type CometHandlers, cometServiceDefinition, serveUnary } from "./grpc.ts";
 * declare const cfg: Config, log: Logger, metrics: Metrics, handlers: CometHandlers;
 * const server = createInternalServer(cfg.grpc, { log, metrics });
 * server.addService(cometServiceDefinition, serveUnary(handlers));
 * const port = await bindInternal(server, cfg.comet.grpc.bind, cfg.grpc, { key: "comet.grpc.bind", log });
 * ```
 */
export function createInternalServer(
  cfg: GrpcSecurityConfig,
  opts: InternalServerOptions = {},
): grpc.Server {
  if (cfg.token === "") return new grpc.Server();
  return new grpc.Server({ interceptors: [tokenInterceptor(cfg.token, opts)] });
}

function tokenInterceptor(token: string, opts: InternalServerOptions): grpc.ServerInterceptor {
  const expected = digest(bearer(token));
  const counter = opts.metrics?.counter(
    "grpc_unauthenticated_total",
    "Internal gRPC calls refused UNAUTHENTICATED for a missing or wrong grpc.token, by method.",
    ["method"],
  );
  const throttle = new LogThrottle(REFUSAL_LOG_INTERVAL_MS);
  const refused = (path: string, peer: string) => {
    const method = path.slice(path.lastIndexOf("/") + 1);
    counter?.inc({ method });
    const n = throttle.take();
    if (opts.log && n !== null) {
      opts.log.warn("internal gRPC call refused: missing or wrong grpc.token", {
        method,
        peer,
        refused: n,
      });
    }
  };
  return (descriptor, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, proceed) => {
            if (authorizationMatches(metadata.get(AUTHORIZATION_KEY), expected)) {
              metadata.remove(AUTHORIZATION_KEY);
              proceed(metadata);
              return;
            }
            // Not calling `proceed` keeps the request from the handler for good.
            refused(descriptor.path, call.getPeer());
            call.sendStatus({
              code: grpc.status.UNAUTHENTICATED,
              details: "missing or wrong grpc.token",
            });
          },
        }),
    });
}

function tlsEnabled(cfg: GrpcSecurityConfig): boolean {
  const t = cfg.tls;
  return t.cert_file !== "" || t.key_file !== "" || t.ca_file !== "";
}

function checkTls(cfg: GrpcSecurityConfig): void {
  if ((cfg.tls.cert_file === "") !== (cfg.tls.key_file === "")) {
    throw new Error("grpc.tls.cert_file and grpc.tls.key_file must be set together");
  }
}

async function pem(key: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new Error(`${key} ${path}: ${(e as Error).message}`);
  }
}

/**
 * Server credentials from `grpc.tls.*`: plaintext when no file is set, TLS
 * with `cert_file` + `key_file`, mTLS (client certificate required, chained
 * to `ca_file`) when `ca_file` is set too. Throws naming the key when a file
 * cannot be read or a server would have TLS settings but no certificate.
 */
export async function serverCredentials(cfg: GrpcSecurityConfig): Promise<grpc.ServerCredentials> {
  if (!tlsEnabled(cfg)) return grpc.ServerCredentials.createInsecure();
  checkTls(cfg);
  const t = cfg.tls;
  if (t.cert_file === "") {
    throw new Error(
      "grpc.tls.ca_file is set but grpc.tls.cert_file / key_file are not: a gRPC server needs its own certificate",
    );
  }
  // One after the other, not Promise.all: with two bad files the error must
  // name the same key every time (the first in config order).
  const cert = await pem("grpc.tls.cert_file", t.cert_file);
  const key = await pem("grpc.tls.key_file", t.key_file);
  const ca = t.ca_file === "" ? null : await pem("grpc.tls.ca_file", t.ca_file);
  // Without a CA, grpc-js leaves `ca` undefined, and Deno's node:tls then
  // sends a Certificate message too large for clients to accept (the
  // handshake fails with "excessive message size"). Our own chain as `ca`
  // changes nothing else: client certificates are not requested then.
  return grpc.ServerCredentials.createSsl(
    ca ?? cert,
    [{ cert_chain: cert, private_key: key }],
    ca !== null,
  );
}

/**
 * Client options from `grpc.*` for dialling another role: the token to send,
 * and TLS when any `grpc.tls.*` file is set (`ca_file` as the trusted roots,
 * else the system's; `cert_file` + `key_file` as the client certificate for
 * mTLS; `server_name` as the name checked in the server's certificate).
 *
 * Deno refuses an IP address as a TLS server name: to dial an IP over TLS,
 * set `grpc.tls.server_name` to a DNS name the server's certificate holds.
 *
 * @example
 * ```ts
 * import type { Config } from "../infra/config.ts";
 * import { createLogicClient } from "./grpc.ts";
 * declare const cfg: Config;
 * const opts = await internalClientOptions(cfg.grpc);
 * const logic = createLogicClient("logic-1.internal:3119", opts);
 * ```
 */
export async function internalClientOptions(cfg: GrpcSecurityConfig): Promise<ClientOptions> {
  const opts: ClientOptions = { token: cfg.token };
  if (!tlsEnabled(cfg)) return opts;
  checkTls(cfg);
  const t = cfg.tls;
  // Sequential for a deterministic error, as in serverCredentials.
  const ca = t.ca_file === "" ? null : await pem("grpc.tls.ca_file", t.ca_file);
  const cert = t.cert_file === "" ? null : await pem("grpc.tls.cert_file", t.cert_file);
  const key = t.key_file === "" ? null : await pem("grpc.tls.key_file", t.key_file);
  opts.credentials = grpc.credentials.createSsl(ca, key, cert);
  if (t.server_name !== "") {
    opts.channelOptions = { "grpc.ssl_target_name_override": t.server_name };
  }
  return opts;
}

export { isLoopbackHost };

/** Options of {@linkcode bindInternal}. */
export interface BindInternalOptions {
  /** The configuration key of the bind address, for messages, e.g. `"comet.grpc.bind"`. */
  key: string;
  /** Where the exposure warning goes. */
  log: Logger;
}

/**
 * How exposed an internal server at `bind` is: `"open"` when it listens
 * beyond loopback and nothing authenticates callers (no token, no mTLS),
 * `"plaintext-token"` when it listens beyond loopback with a token but no
 * TLS (the token crosses the network in clear), else `"ok"`.
 */
export function exposure(bind: string, cfg: GrpcSecurityConfig): "ok" | "open" | "plaintext-token" {
  if (isLoopbackHost(splitHostPort(bind).hostname)) return "ok";
  const mtls = cfg.tls.cert_file !== "" && cfg.tls.ca_file !== "";
  if (cfg.token === "" && !mtls) return "open";
  if (cfg.token !== "" && !tlsEnabled(cfg)) return "plaintext-token";
  return "ok";
}

/**
 * Binds `server` at `bind` with {@linkcode serverCredentials}, after a WARN
 * (or, for a plaintext token, an info line) when {@linkcode exposure} says
 * the port is reachable beyond loopback without caller authentication.
 * Resolves to the bound port; rejects naming `opts.key`.
 */
export async function bindInternal(
  server: grpc.Server,
  bind: string,
  cfg: GrpcSecurityConfig,
  opts: BindInternalOptions,
): Promise<number> {
  const creds = await serverCredentials(cfg);
  const exposed = exposure(bind, cfg);
  if (exposed === "open") {
    opts.log.warn(
      `INSECURE: ${opts.key} ${bind} accepts internal gRPC from beyond loopback and nothing authenticates callers: anyone who reaches it can push to every client or rewrite session routes. Set the same GOIM_GRPC__TOKEN on every role (and grpc.tls.* on an untrusted network), or bind 127.0.0.1.`,
      { key: opts.key, bind },
    );
  } else if (exposed === "plaintext-token") {
    opts.log.info(
      `${opts.key} ${bind}: grpc.token travels in plaintext; set grpc.tls.* unless the network is trusted`,
      { key: opts.key, bind },
    );
  }
  return await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      bind,
      creds,
      (
        err,
        port,
      ) => (err ? reject(new Error(`${opts.key} ${bind}: ${err.message}`)) : resolve(port)),
    )
  );
}

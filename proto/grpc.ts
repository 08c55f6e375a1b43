/**
 * gRPC plumbing for `goim.comet.Comet` and `goim.logic.Logic` on grpc-js:
 * service definitions, promise-based handlers and clients.
 *
 * The .proto files are read from this folder once, when the module is first
 * imported: it needs read permission on proto/, and `deno compile` needs
 * `--include proto/` so that they are inside the binary.
 *
 * Decoding uses proto-loader with `keepCase` (field names exactly as in goim's
 * .proto), `longs: Number` (int64 ids are numbers, see ./messages.ts),
 * `enums: String` and `defaults` (decoded messages are complete).
 * `keepCase` applies to this project's fields too: ConnectReply's auth scope
 * is `allowed_rooms`, `rooms_restricted`, `allowed_ops`, `ops_restricted` in
 * JavaScript as on the wire (never `allowedRooms`), so the object logic's
 * service returns works unchanged in-process and through gRPC.
 *
 * Who may call these services (the `grpc.token` check, TLS and mTLS) is
 * ./security.ts: the roles build their servers and client options there.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import type {
  BroadcastReply,
  BroadcastReq,
  BroadcastRoomReply,
  BroadcastRoomReq,
  ConnectReply,
  ConnectReq,
  DisconnectReply,
  DisconnectReq,
  HeartbeatReply,
  HeartbeatReq,
  MessageInit,
  NodesReply,
  NodesReq,
  OnlineReply,
  OnlineReq,
  PushMsgReply,
  PushMsgReq,
  ReceiveReply,
  ReceiveReq,
  RoomsReply,
  RoomsReq,
} from "./messages.ts";

const protoDir = fileURLToPath(new URL("./", import.meta.url));

// How every .proto of this folder is loaded (see the module doc).
const PROTO_LOAD_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  // Our .proto files import "protocol.proto" where goim imports its Go path.
  includeDirs: [protoDir],
};

/**
 * The grpc-js definition of `service` in `file` of this folder, loaded with
 * the options of the module doc: how the extension services
 * (./push_stream.ts, ./operator.ts) load their own .proto files.
 *
 * @example
 * ```ts
 * import { loadServiceDefinition } from "./grpc.ts";
 * const def = loadServiceDefinition("comet_stream.proto", "goim.comet.CometStream");
 * ```
 */
export function loadServiceDefinition(file: string, service: string): grpc.ServiceDefinition {
  const defs = protoLoader.loadSync(
    fileURLToPath(new URL(`./${file}`, import.meta.url)),
    PROTO_LOAD_OPTIONS,
  );
  const def = defs[service];
  if (def === undefined) throw new Error(`proto/${file} has no service ${service}`);
  return def as grpc.ServiceDefinition;
}

const packageDefinition = protoLoader.loadSync(
  [
    fileURLToPath(new URL("./comet.proto", import.meta.url)),
    fileURLToPath(new URL("./logic.proto", import.meta.url)),
  ],
  PROTO_LOAD_OPTIONS,
);

/**
 * The grpc-js definition of `goim.comet.Comet`, for `server.addService`.
 *
 * @example
 * ```ts
 * import * as grpc from "@grpc/grpc-js";
 * import { cometServiceDefinition, type CometHandlers, serveUnary } from "./mod.ts";
 * declare const handlers: CometHandlers;
 * const server = new grpc.Server();
 * server.addService(cometServiceDefinition, serveUnary(handlers));
 * ```
 */
export const cometServiceDefinition: grpc.ServiceDefinition = packageDefinition[
  "goim.comet.Comet"
] as grpc.ServiceDefinition;

/** The grpc-js definition of `goim.logic.Logic`, for `server.addService`. */
export const logicServiceDefinition: grpc.ServiceDefinition = packageDefinition[
  "goim.logic.Logic"
] as grpc.ServiceDefinition;

/**
 * Raw grpc-js client class for `goim.comet.Comet` (callback style). Prefer
 * {@linkcode createCometClient}.
 */
export const CometClient: grpc.ServiceClientConstructor = grpc.makeClientConstructor(
  cometServiceDefinition,
  "goim.comet.Comet",
);

/**
 * Raw grpc-js client class for `goim.logic.Logic` (callback style). Prefer
 * {@linkcode createLogicClient}.
 */
export const LogicClient: grpc.ServiceClientConstructor = grpc.makeClientConstructor(
  logicServiceDefinition,
  "goim.logic.Logic",
);

/** Request and reply types of each `goim.comet.Comet` method. */
export type CometMethods = {
  PushMsg: [PushMsgReq, PushMsgReply];
  Broadcast: [BroadcastReq, BroadcastReply];
  BroadcastRoom: [BroadcastRoomReq, BroadcastRoomReply];
  Rooms: [RoomsReq, RoomsReply];
};

/** Request and reply types of each `goim.logic.Logic` method. */
export type LogicMethods = {
  Connect: [ConnectReq, ConnectReply];
  Disconnect: [DisconnectReq, DisconnectReply];
  Heartbeat: [HeartbeatReq, HeartbeatReply];
  RenewOnline: [OnlineReq, OnlineReply];
  Receive: [ReceiveReq, ReceiveReply];
  Nodes: [NodesReq, NodesReply];
};

/** Shape of {@linkcode CometMethods} and {@linkcode LogicMethods}: method name to [request, reply]. */
export type MethodTable = { [method: string]: [unknown, unknown] };

/**
 * Server side of a service: one async function per method, named as in the
 * .proto (and in goim's Go code). A handler gets the complete decoded request
 * and may leave default fields out of its reply. Throw {@linkcode RpcError}
 * to choose the status code; any other error is sent as UNKNOWN.
 */
export type Handlers<M extends MethodTable> = {
  [K in keyof M]: (req: M[K][0]) => Promise<MessageInit<M[K][1]>> | MessageInit<M[K][1]>;
};

/**
 * Handlers for `goim.comet.Comet`, as served by comet.
 *
 * @example
 * ```ts
 * import type { CometHandlers } from "./mod.ts";
 * const handlers: CometHandlers = {
 *   PushMsg: async (req) => ({}),
 *   Broadcast: async (req) => ({}),
 *   BroadcastRoom: async (req) => ({}),
 *   Rooms: async () => ({ rooms: { "live://1000": true } }),
 * };
 * ```
 */
export type CometHandlers = Handlers<CometMethods>;

/** Handlers for `goim.logic.Logic`, as served by logic. */
export type LogicHandlers = Handlers<LogicMethods>;

/**
 * An error with a gRPC status code. Thrown by a handler, it reaches the caller
 * with that code and `details`; a failed client call rejects with one.
 *
 * @example
 * ```ts
 * import { grpcStatus, RpcError } from "./mod.ts";
 * throw new RpcError(grpcStatus.UNAUTHENTICATED, "token expired");
 * ```
 */
export class RpcError extends Error {
  /** The gRPC status code. */
  readonly code: grpc.status;
  /** The status details as sent on the wire (the message without any prefix). */
  readonly details: string;

  /** `message` defaults to `details`; clients prefix it with the method and code. */
  constructor(code: grpc.status, details: string, message: string = details) {
    super(message);
    this.name = "RpcError";
    this.code = code;
    this.details = details;
  }
}

/** gRPC status codes (grpc-js `status`), re-exported so callers need not import grpc-js. */
export const grpcStatus: typeof grpc.status = grpc.status;

/**
 * The INVALID_ARGUMENT a service answers a malformed request with.
 *
 * @example
 * ```ts
 * import { invalidArgument } from "./grpc.ts";
 * throw invalidArgument("keys are required");
 * ```
 */
export function invalidArgument(message: string): RpcError {
  return new RpcError(grpc.status.INVALID_ARGUMENT, message);
}

/** Options of {@linkcode serveUnary}. */
export interface ServeOptions {
  /**
   * Called with every error a handler throws or rejects with, before it is
   * sent to the caller: the place to log failures that are not the caller's.
   */
  onError?: (method: string, error: unknown) => void;
}

/**
 * Adapts promise-returning handlers to grpc-js's callback style, for
 * `server.addService`.
 *
 * @example
 * ```ts
 * import * as grpc from "@grpc/grpc-js";
 * import { type LogicHandlers, logicServiceDefinition, serveUnary } from "./mod.ts";
 * declare const handlers: LogicHandlers;
 * const server = new grpc.Server();
 * server.addService(logicServiceDefinition, serveUnary(handlers, { onError: console.error }));
 * ```
 */
export function serveUnary<M extends MethodTable>(
  handlers: Handlers<M>,
  options: ServeOptions = {},
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(handlers)) {
    const handle = handler as (req: unknown) => unknown;
    impl[method] = (
      call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      // Promise.resolve().then also turns a synchronous throw into a rejection.
      Promise.resolve(call.request).then(handle).then(
        (reply) => callback(null, reply ?? {}),
        (error: unknown) => {
          try {
            options.onError?.(method, error);
          } catch {
            // A failing logger must not leave the call unanswered.
          }
          callback(toServerError(error));
        },
      );
    };
  }
  return impl;
}

function toServerError(error: unknown): grpc.ServerErrorResponse {
  if (error instanceof RpcError) {
    return Object.assign(new Error(error.details), { code: error.code, details: error.details });
  }
  const details = error instanceof Error ? error.message : String(error);
  return Object.assign(new Error(details), { code: grpc.status.UNKNOWN, details });
}

/** Options of {@linkcode createCometClient} and {@linkcode createLogicClient}. */
export interface ClientOptions {
  /** Defaults to plaintext (`grpc.credentials.createInsecure()`), as goim uses. */
  credentials?: grpc.ChannelCredentials;
  /** grpc-js channel options (keepalive, reconnect backoff, message sizes...). */
  channelOptions?: grpc.ChannelOptions;
  /** Deadline of a call that sets none, in milliseconds. Default 5000. */
  deadlineMs?: number;
  /**
   * Shared secret sent on every call as metadata `authorization: Bearer
   * <token>` (config `grpc.token`, see ./security.ts); "" or absent sends none.
   */
  token?: string;
}

/** Per-call options of the promise-based clients. */
export interface CallOptions {
  /** This call's deadline in milliseconds from now. */
  deadlineMs?: number;
  /**
   * Wait (until the deadline) for the channel to connect instead of failing at
   * once with UNAVAILABLE while the server is unreachable.
   */
  waitForReady?: boolean;
}

/**
 * A promise-based client: one method per RPC, named as in the .proto. A
 * failed call rejects with an {@linkcode RpcError} whose message names the
 * method and status, e.g. `goim.logic.Logic/Connect: UNAUTHENTICATED: bad token`.
 */
export type RpcClient<M extends MethodTable> =
  & {
    [K in keyof M]: (req: MessageInit<M[K][0]>, opts?: CallOptions) => Promise<M[K][1]>;
  }
  & {
    /** Resolves once the channel is connected; rejects after `deadlineMs`. */
    waitForReady(deadlineMs?: number): Promise<void>;
    /** Closes the channel; calls in flight fail with CANCELLED/UNAVAILABLE. */
    close(): void;
    /** The underlying grpc-js client, e.g. for connectivity state. */
    readonly grpc: grpc.Client;
  };

/** Promise-based `goim.comet.Comet` client, see {@linkcode createCometClient}. */
export type CometRpcClient = RpcClient<CometMethods>;

/** Promise-based `goim.logic.Logic` client, see {@linkcode createLogicClient}. */
export type LogicRpcClient = RpcClient<LogicMethods>;

/**
 * Connects (lazily, on the first call) to a `goim.comet.Comet` server.
 *
 * @example
 * ```ts
 * import { createCometClient } from "./mod.ts";
 * const comet = createCometClient("127.0.0.1:3109");
 * await comet.BroadcastRoom({ roomID: "live://1000", proto: { ver: 1, op: 1000, body: new Uint8Array([1]) } });
 * comet.close();
 * ```
 */
export function createCometClient(address: string, opts: ClientOptions = {}): CometRpcClient {
  return createRpcClient<CometMethods>(
    CometClient,
    cometServiceDefinition,
    "goim.comet.Comet",
    address,
    opts,
  );
}

/**
 * Connects (lazily, on the first call) to a `goim.logic.Logic` server.
 *
 * @example
 * ```ts
 * import { createLogicClient } from "./mod.ts";
 * const logic = createLogicClient("127.0.0.1:3119", { deadlineMs: 2000 });
 * const reply = await logic.Connect({ server: "comet-1", token: new TextEncoder().encode('{"mid":1}') });
 * console.log(reply.mid, reply.key, reply.accepts);
 * logic.close();
 * ```
 */
export function createLogicClient(address: string, opts: ClientOptions = {}): LogicRpcClient {
  return createRpcClient<LogicMethods>(
    LogicClient,
    logicServiceDefinition,
    "goim.logic.Logic",
    address,
    opts,
  );
}

type UnaryMethod = (
  req: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, reply?: unknown) => void,
) => grpc.ClientUnaryCall;

/**
 * A promise-based client for any service of this project's .proto files:
 * what {@linkcode createCometClient} and {@linkcode createLogicClient} are
 * made of, for the extension services (./operator.ts). `service` is the
 * full name (`goim.operator.CometOperator`) that errors are prefixed with.
 *
 * @example
 * ```ts
 * import { cometServiceDefinition, type CometMethods, createServiceClient } from "./grpc.ts";
 * const comet = createServiceClient<CometMethods>(cometServiceDefinition, "goim.comet.Comet", "127.0.0.1:3109");
 * comet.close();
 * ```
 */
export function createServiceClient<M extends MethodTable>(
  definition: grpc.ServiceDefinition,
  service: string,
  address: string,
  opts: ClientOptions = {},
): RpcClient<M> {
  return createRpcClient<M>(
    grpc.makeClientConstructor(definition, service),
    definition,
    service,
    address,
    opts,
  );
}

function createRpcClient<M extends MethodTable>(
  Ctor: grpc.ServiceClientConstructor,
  definition: grpc.ServiceDefinition,
  service: string,
  address: string,
  opts: ClientOptions,
): RpcClient<M> {
  const client = new Ctor(
    address,
    opts.credentials ?? grpc.credentials.createInsecure(),
    opts.channelOptions,
  );
  const defaultDeadlineMs = opts.deadlineMs ?? 5000;
  // Plain metadata rather than grpc-js call credentials: those are refused on
  // plaintext channels, and the token must work there too (loopback, private
  // networks).
  const authorization = opts.token ? `Bearer ${opts.token}` : "";
  const wrapper: Record<string, unknown> = {
    waitForReady(deadlineMs = defaultDeadlineMs): Promise<void> {
      return new Promise((resolve, reject) => {
        client.waitForReady(Date.now() + deadlineMs, (error) => {
          if (error) reject(new RpcError(grpc.status.UNAVAILABLE, error.message));
          else resolve();
        });
      });
    },
    close: () => client.close(),
    grpc: client,
  };
  for (const method of Object.keys(definition)) {
    const unary = (client as unknown as Record<string, UnaryMethod>)[method].bind(client);
    wrapper[method] = (req: unknown, callOpts: CallOptions = {}) =>
      new Promise((resolve, reject) => {
        const metadata = callOpts.waitForReady
          ? new grpc.Metadata({ waitForReady: true })
          : new grpc.Metadata();
        if (authorization !== "") metadata.set("authorization", authorization);
        const deadline = Date.now() + (callOpts.deadlineMs ?? defaultDeadlineMs);
        unary(req ?? {}, metadata, { deadline }, (error, reply) => {
          if (error) {
            const name = grpc.status[error.code] ?? String(error.code);
            reject(
              new RpcError(
                error.code,
                error.details,
                `${service}/${method}: ${name}: ${error.details}`,
              ),
            );
          } else {
            resolve(reply);
          }
        });
      });
  }
  return wrapper as RpcClient<M>;
}

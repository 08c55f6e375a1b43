/**
 * `goim.logic.Streams` (./streams.proto): what a comet asks logic for an
 * opted-in connection's streams — Recover on connect and on StreamSync,
 * Acks as clients ack (docs/STREAMS.md). This project's extension beside
 * goim.logic.Logic, served on logic's gRPC port with the same
 * authentication.
 *
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import type { Api } from "./api.ts";
import {
  type ClientOptions,
  createServiceClient,
  loadServiceDefinition,
  type RpcClient,
} from "./grpc.ts";
import type { AcksReply, AcksReq, RecoverReply, RecoverReq } from "./messages.ts";

/** Full name of the service, as on the wire. */
export const STREAMS_SERVICE = "goim.logic.Streams";

/** Largest number of streams one Recover may name (the token and StreamSync allow 8 each). */
export const MAX_RECOVER_STREAMS = 16;

/** Largest number of acks one Acks call carries (the comet batches up to this many). */
export const MAX_ACKS_PER_CALL = 1024;

/** Method table of `goim.logic.Streams`. */
export type StreamsMethods = {
  Recover: [RecoverReq, RecoverReply];
  Acks: [AcksReq, AcksReply];
};

/** `goim.logic.Streams` as a promise API: logic's service object (embedded) or a gRPC client. */
export type StreamsApi = Api<StreamsMethods>;

/** A promise-based `goim.logic.Streams` client ({@linkcode createStreamsClient}). */
export type StreamsClient = RpcClient<StreamsMethods>;

/** The grpc-js definition of `goim.logic.Streams`, for `server.addService`. */
export const streamsServiceDefinition: grpc.ServiceDefinition = loadServiceDefinition(
  "streams.proto",
  STREAMS_SERVICE,
);

/**
 * A `goim.logic.Streams` client for one logic address.
 *
 * @example
 * ```ts
 * import { createStreamsClient } from "./streams.ts";
 * const logic = createStreamsClient("127.0.0.1:3119", { deadlineMs: 5000 });
 * logic.close();
 * ```
 */
export function createStreamsClient(address: string, opts: ClientOptions = {}): StreamsClient {
  return createServiceClient<StreamsMethods>(
    streamsServiceDefinition,
    STREAMS_SERVICE,
    address,
    opts,
  );
}

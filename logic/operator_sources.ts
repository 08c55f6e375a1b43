/**
 * Where logic's operator console (./operator.ts) reads the other roles:
 *
 * - comets: `goim.operator.CometOperator` (proto/operator.ts), one gRPC
 *   client per comet address from the registry ({@linkcode GrpcCometDialer},
 *   `grpc.token` and TLS from proto/security.ts), or the comet's own object
 *   in the embedded process;
 * - jobs: their Prometheus text, fetched from each `logic.operator.jobs`
 *   admin endpoint with `admin.token` ({@linkcode httpJobSource}), or read
 *   from the embedded job's registry; infra/metrics.ts `parseSamples` reads the
 *   few series the console needs.
 *
 * Every call is bounded: {@linkcode SOURCE_TIMEOUT_MS} per call,
 * {@linkcode MAX_METRICS_BYTES} of metrics text.
 *
 * @module
 */

import type { CometRecord } from "../infra/registry.ts";
import { readCapped } from "../protocol/bytes.ts";
import type { ClientOptions } from "../proto/grpc.ts";
import {
  type CometOperatorApi,
  type CometOperatorClient,
  createCometOperatorClient,
} from "../proto/operator.ts";

/** Deadline of one call to a comet or a job, ms. */
export const SOURCE_TIMEOUT_MS = 1500;

/** Largest metrics text read from a job, bytes. */
export const MAX_METRICS_BYTES = 4 * 1024 * 1024;

/** Finds the operator service of a registered comet. */
export interface CometDialer {
  /** The service of `rec` (throws when there is none). */
  dial(rec: CometRecord): CometOperatorApi;
  /** Forgets clients of comets that are not in `live` (ids) any more. */
  retain?(live: ReadonlySet<string>): void;
  /** Closes every client. */
  close?(): void;
}

/** A job's metrics, by name. */
export interface JobSource {
  /** What the console calls it (its address, or `job` embedded). */
  name: string;
  /** Its Prometheus text exposition. */
  metrics(): Promise<string>;
}

/**
 * Dials comets over gRPC, one client per comet, kept while the comet is
 * registered at the same address.
 *
 * @example
 * ```ts
 * import type { CometRecord } from "../infra/registry.ts";
 * declare const rec: CometRecord;
 * const dialer = new GrpcCometDialer({ token: "secret" });
 * const stats = await dialer.dial(rec).Stats({});
 * dialer.close();
 * ```
 */
export class GrpcCometDialer implements CometDialer {
  readonly #opts: ClientOptions;
  readonly #clients = new Map<string, { addr: string; client: CometOperatorClient }>();

  /** `opts`: proto/security.ts `internalClientOptions(config.grpc)`. */
  constructor(opts: ClientOptions) {
    this.#opts = { ...opts, deadlineMs: SOURCE_TIMEOUT_MS };
  }

  /** The client of `rec.id`, re-dialled when its address changed. */
  dial(rec: CometRecord): CometOperatorApi {
    const known = this.#clients.get(rec.id);
    if (known && known.addr === rec.grpcAddr) return known.client;
    known?.client.close();
    const client = createCometOperatorClient(rec.grpcAddr, this.#opts);
    this.#clients.set(rec.id, { addr: rec.grpcAddr, client });
    return client;
  }

  /** Closes the clients of comets no longer listed. */
  retain(live: ReadonlySet<string>): void {
    for (const [id, { client }] of this.#clients) {
      if (live.has(id)) continue;
      client.close();
      this.#clients.delete(id);
    }
  }

  /** Closes every client. */
  close(): void {
    for (const { client } of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

/**
 * A job read over HTTP: `GET http://<addr>/metrics` with `Authorization:
 * Bearer <adminToken>` when one is set, at most {@linkcode MAX_METRICS_BYTES}
 * within {@linkcode SOURCE_TIMEOUT_MS}.
 *
 * @example
 * ```ts
 * const job = httpJobSource("127.0.0.1:3192", "");
 * const text = await job.metrics();
 * ```
 */
export function httpJobSource(addr: string, adminToken: string, fetcher = fetch): JobSource {
  return {
    name: addr,
    async metrics() {
      const res = await fetcher(`http://${addr}/metrics`, {
        headers: adminToken === "" ? {} : { authorization: `Bearer ${adminToken}` },
        signal: AbortSignal.timeout(SOURCE_TIMEOUT_MS),
      });
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`GET /metrics answered ${res.status}`);
      }
      return await readCapped(res, MAX_METRICS_BYTES);
    },
  };
}

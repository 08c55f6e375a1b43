/**
 * Key pushes on one gRPC stream per comet (`goim.comet.CometStream/PushMsgs`,
 * ./comet_stream.proto): the job side ({@linkcode PushStream}) and the comet
 * side ({@linkcode servePushStream}).
 *
 * Why: one unary PushMsg costs about 0.5 ms of CPU in each process under
 * grpc-js on Deno's node:http2 (BENCHMARKS.md, "Distributed key path"), so at
 * 1,000 key pushes/s the job → comet hop alone wanted a core. On an open
 * stream a batch costs one DATA frame each way.
 *
 * The rule (job side), load-adaptive with no tuning: a push goes out at once
 * — in the batch of everything submitted in the same turn of the event loop —
 * while fewer than {@linkcode PushStreamOptions.window} batches are
 * unanswered; otherwise it waits and joins the next batch, which is sent the
 * moment an answer frees the window. So an idle comet gets one push per
 * batch and a busy one bigger batches, never a longer line of calls. Bounds:
 * at most `window` batches unanswered, at most `maxBatch` pushes per batch,
 * and an unanswered batch older than `deadlineMs` fails the stream.
 *
 * Failure: when the stream fails or ends, every push not yet answered is
 * rejected with an {@linkcode RpcError} (UNAVAILABLE unless the server sent a
 * status), which job's lanes retry (job/retry.ts) on a new stream — the same
 * at-least-once contract as unary calls. A server that answers UNIMPLEMENTED
 * (a goim comet) gets every push, then and later, as goim's unary PushMsg.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import type { MessageInit, PushMsgReq } from "./messages.ts";
import { type CometRpcClient, loadServiceDefinition, RpcError } from "./grpc.ts";
import { AUTHORIZATION_KEY, bearer } from "./security.ts";

/** The grpc-js definition of `goim.comet.CometStream`, for `server.addService`. */
export const cometStreamServiceDefinition: grpc.ServiceDefinition = loadServiceDefinition(
  "comet_stream.proto",
  "goim.comet.CometStream",
);

const method = cometStreamServiceDefinition.PushMsgs;

// An RpcError as the unary clients word them: `<path>: <CODE>: <details>`.
function streamError(code: number, details: string): RpcError {
  return new RpcError(
    code,
    details,
    `${method.path.slice(1)}: ${grpc.status[code] ?? code}: ${details}`,
  );
}

/** `goim.comet.PushMsgsReq`: one batch of key pushes. */
export interface PushMsgsReq {
  seq: number;
  pushes: PushMsgReq[];
}

/** `goim.comet.PushMsgsError`: one refused push of a batch. */
export interface PushMsgsError {
  index: number;
  code: number;
  details: string;
}

/** `goim.comet.PushMsgsReply`: the answer to one batch. */
export interface PushMsgsReply {
  seq: number;
  errors: PushMsgsError[];
}

/** Most pushes the comet takes in one batch; a bigger batch is refused whole. */
export const MAX_PUSHES_PER_BATCH = 4096;

/** Options of {@linkcode servePushStream}. */
export interface ServePushStreamOptions {
  /** Handles one push synchronously; throws an {@linkcode RpcError} to refuse it. */
  push(req: PushMsgReq): void;
  /** Called once per batch with its number of pushes (metrics). */
  onBatch?(pushes: number): void;
}

/** What {@linkcode servePushStream} returns. */
export interface PushStreamService {
  /** For `server.addService(cometStreamServiceDefinition, …)`. */
  implementation: grpc.UntypedServiceImplementation;
  /**
   * Ends every open stream (the comet is stopping): each batch received has
   * been answered, so the peers lose nothing, and the server's graceful
   * shutdown need not wait for long-lived streams.
   */
  close(): void;
}

/**
 * The comet's implementation of `goim.comet.CometStream`: each batch is
 * handled in order, synchronously, and answered before the next is read.
 * An answer the peer does not read pauses the stream (HTTP/2 flow control
 * then stops the peer), so a hostile caller holds at most one batch.
 *
 * @example
 * ```ts
 * import * as grpc from "@grpc/grpc-js";
 * import { cometStreamServiceDefinition, servePushStream } from "./push_stream.ts";
 * const server = new grpc.Server();
 * const streams = servePushStream({ push: (req) => console.log(req.keys) });
 * server.addService(cometStreamServiceDefinition, streams.implementation);
 * streams.close(); // at shutdown
 * ```
 */
export function servePushStream(opts: ServePushStreamOptions): PushStreamService {
  const open = new Set<grpc.ServerDuplexStream<PushMsgsReq, PushMsgsReply>>();
  let closed = false;
  const implementation = {
    PushMsgs: (call: grpc.ServerDuplexStream<PushMsgsReq, PushMsgsReply>) => {
      if (closed) {
        call.end();
        return;
      }
      open.add(call);
      const done = () => open.delete(call);
      call.on("data", (req: PushMsgsReq) => {
        if (closed) return;
        const pushes = req.pushes ?? [];
        const errors: PushMsgsError[] = [];
        if (pushes.length > MAX_PUSHES_PER_BATCH) {
          const details = `more than ${MAX_PUSHES_PER_BATCH} pushes in one batch`;
          for (let i = 0; i < pushes.length; i++) {
            errors.push({ index: i, code: grpc.status.INVALID_ARGUMENT, details });
          }
        } else {
          opts.onBatch?.(pushes.length);
          for (let i = 0; i < pushes.length; i++) {
            try {
              opts.push(pushes[i]);
            } catch (e) {
              const code = e instanceof RpcError ? e.code : grpc.status.UNKNOWN;
              const details = e instanceof RpcError ? e.details : String(e);
              errors.push({ index: i, code, details });
            }
          }
        }
        if (!call.write({ seq: req.seq, errors })) {
          call.pause();
          call.once("drain", () => call.resume());
        }
      });
      call.on("end", () => {
        done();
        call.end();
      });
      // A reset stream: nothing to answer any more.
      call.on("error", done);
      call.on("cancelled", done);
    },
  };
  return {
    implementation,
    close() {
      closed = true;
      for (const call of open) call.end();
      open.clear();
    },
  };
}

/** Options of {@linkcode PushStream}. */
export interface PushStreamOptions {
  /** Batches sent and not yet answered before pushes wait (default 2). */
  window?: number;
  /** Most pushes in one batch (default 512, at most {@linkcode MAX_PUSHES_PER_BATCH}). */
  maxBatch?: number;
  /** An unanswered batch older than this fails the stream, ms (default 5000, the unary deadline). */
  deadlineMs?: number;
  /** Shared secret sent as `authorization: Bearer <token>` (config `grpc.token`). */
  token?: string;
  /** Called once per batch sent with its size (metrics). */
  onBatch?(pushes: number): void;
}

interface Pending {
  req: MessageInit<PushMsgReq>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Sent {
  seq: number;
  items: Pending[];
  at: number;
}

/**
 * Job's side of `goim.comet.CometStream/PushMsgs` for one comet, over an
 * existing grpc-js client's channel. See the module doc for the rule.
 *
 * @example
 * ```ts
 * import { createCometClient } from "./grpc.ts";
 * import { PushStream } from "./push_stream.ts";
 * const comet = createCometClient("127.0.0.1:3109");
 * const stream = new PushStream(comet.grpc, (req) => comet.PushMsg(req));
 * await stream.push({ keys: ["k1"], protoOp: 1000, proto: { ver: 1, op: 1000, body: new Uint8Array([1]) } });
 * stream.close();
 * ```
 */
export class PushStream {
  readonly #client: grpc.Client;
  readonly #unary: (req: MessageInit<PushMsgReq>) => Promise<unknown>;
  readonly #window: number;
  readonly #maxBatch: number;
  readonly #deadlineMs: number;
  readonly #authorization: string;
  readonly #onBatch?: (pushes: number) => void;
  #call: grpc.ClientDuplexStream<PushMsgsReq, PushMsgsReply> | null = null;
  #sent: Sent[] = [];
  #pending: Pending[] = [];
  #seq = 0;
  #scheduled = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Whether the comet does not serve the stream (a goim comet): pushes go as unary PushMsg. */
  unsupported = false;

  /** Streams over `client`'s channel; `unary` is the fallback for a comet without the stream. */
  constructor(
    client: grpc.Client,
    unary: (req: MessageInit<PushMsgReq>) => Promise<unknown>,
    opts: PushStreamOptions = {},
  ) {
    this.#client = client;
    this.#unary = unary;
    this.#window = Math.max(1, opts.window ?? 2);
    this.#maxBatch = Math.min(MAX_PUSHES_PER_BATCH, Math.max(1, opts.maxBatch ?? 512));
    this.#deadlineMs = Math.max(1, opts.deadlineMs ?? 5000);
    this.#authorization = opts.token ? bearer(opts.token) : "";
    this.#onBatch = opts.onBatch;
  }

  /** Pushes waiting for the window plus pushes sent and not answered. */
  get outstanding(): number {
    let n = this.#pending.length;
    for (const s of this.#sent) n += s.items.length;
    return n;
  }

  /** Sends one push; resolves when the comet took it, rejects with an RpcError otherwise. */
  push(req: MessageInit<PushMsgReq>): Promise<void> {
    if (this.unsupported) return this.#unary(req).then(() => {});
    if (this.#closed) {
      return Promise.reject(streamError(grpc.status.UNAVAILABLE, "push stream closed"));
    }
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ req, resolve, reject });
      if (!this.#scheduled && this.#sent.length < this.#window) {
        this.#scheduled = true;
        // Everything submitted in this turn joins one batch.
        queueMicrotask(this.#send);
      }
    });
  }

  /** Fails what is outstanding and ends the stream; later pushes are refused. */
  close(): void {
    this.#closed = true;
    this.#drop(streamError(grpc.status.UNAVAILABLE, "push stream closed"), true);
  }

  #send = (): void => {
    this.#scheduled = false;
    while (this.#pending.length > 0 && this.#sent.length < this.#window && !this.unsupported) {
      const call = this.#call ?? this.#open();
      const items = this.#pending.length <= this.#maxBatch
        ? this.#pending.splice(0)
        : this.#pending.splice(0, this.#maxBatch);
      const seq = ++this.#seq;
      this.#sent.push({ seq, items, at: Date.now() });
      this.#onBatch?.(items.length);
      call.write({ seq, pushes: items.map((p) => p.req as PushMsgReq) });
      this.#timer ??= setTimeout(this.#checkDeadline, this.#deadlineMs);
    }
  };

  #open(): grpc.ClientDuplexStream<PushMsgsReq, PushMsgsReply> {
    const metadata = new grpc.Metadata();
    if (this.#authorization !== "") metadata.set(AUTHORIZATION_KEY, this.#authorization);
    const call = this.#client.makeBidiStreamRequest<PushMsgsReq, PushMsgsReply>(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      metadata,
    );
    this.#call = call;
    call.on("data", (reply: PushMsgsReply) => this.#answered(call, reply));
    call.on("error", (e: grpc.ServiceError) => this.#ended(call, e));
    call.on("end", () => this.#ended(call, null));
    return call;
  }

  #answered(call: grpc.ClientDuplexStream<PushMsgsReq, PushMsgsReply>, reply: PushMsgsReply) {
    if (call !== this.#call) return;
    const first = this.#sent[0];
    if (first === undefined || first.seq !== reply.seq) {
      // Answers come in order; anything else means a broken peer.
      call.cancel();
      this.#ended(call, null, `answer ${reply.seq} out of order`);
      return;
    }
    this.#sent.shift();
    const errors = reply.errors ?? [];
    let e = 0;
    for (let i = 0; i < first.items.length; i++) {
      const err = errors[e];
      if (err !== undefined && err.index === i) {
        e++;
        first.items[i].reject(streamError(err.code, err.details));
      } else {
        first.items[i].resolve();
      }
    }
    if (this.#sent.length === 0) this.#clearTimer();
    if (this.#pending.length > 0 && !this.#scheduled) this.#send();
  }

  #ended(
    call: grpc.ClientDuplexStream<PushMsgsReq, PushMsgsReply>,
    e: grpc.ServiceError | null,
    why = "push stream ended",
  ): void {
    if (call !== this.#call) return;
    this.#call = null;
    if (e !== null && e.code === grpc.status.UNIMPLEMENTED) {
      // A goim comet: what was sent or waits goes as unary calls, in order.
      this.unsupported = true;
      const items = [...this.#sent.flatMap((s) => s.items), ...this.#pending.splice(0)];
      this.#sent = [];
      this.#clearTimer();
      for (const p of items) this.#unary(p.req).then(() => p.resolve(), p.reject);
      return;
    }
    this.#drop(
      e === null ? streamError(grpc.status.UNAVAILABLE, why) : streamError(e.code, e.details),
    );
  }

  /**
   * Gives up on the stream: what it carried fails with `err`. What waits
   * fails too when `withPending` (closing), else it goes on a new stream.
   */
  #drop(err: RpcError, withPending = false): void {
    const call = this.#call;
    this.#call = null;
    const sent = this.#sent;
    this.#sent = [];
    this.#clearTimer();
    for (const s of sent) for (const p of s.items) p.reject(err);
    if (withPending) { for (const p of this.#pending.splice(0)) p.reject(err); }
    call?.cancel();
    if (this.#pending.length > 0 && !this.#scheduled && !this.#closed) this.#send();
  }

  #checkDeadline = (): void => {
    this.#timer = undefined;
    const oldest = this.#sent[0];
    if (oldest === undefined) return;
    const age = Date.now() - oldest.at;
    if (age < this.#deadlineMs) {
      this.#timer = setTimeout(this.#checkDeadline, this.#deadlineMs - age);
      return;
    }
    this.#drop(
      streamError(
        grpc.status.DEADLINE_EXCEEDED,
        `no answer to a push batch in ${this.#deadlineMs} ms`,
      ),
    );
  };

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * `client` with its `PushMsg` carried by a {@linkcode PushStream} over the
 * same channel (falling back to the unary call for a goim comet); `close()`
 * ends the stream and the channel. Everything else is the client as it was.
 *
 * @example
 * ```ts
 * import { createCometClient } from "./grpc.ts";
 * import { withPushStream } from "./push_stream.ts";
 * const comet = withPushStream(createCometClient("127.0.0.1:3109"));
 * await comet.PushMsg({ keys: ["k1"], protoOp: 1000, proto: { ver: 1, op: 1000, body: new Uint8Array([1]) } });
 * comet.close();
 * ```
 */
export function withPushStream(
  client: CometRpcClient,
  opts: PushStreamOptions = {},
): CometRpcClient {
  const unary = client.PushMsg.bind(client);
  const stream = new PushStream(client.grpc, (req) => unary(req), opts);
  const close = client.close.bind(client);
  return Object.assign(client, {
    PushMsg: (req: MessageInit<PushMsgReq>) => stream.push(req).then(() => ({})),
    close: () => {
      stream.close();
      close();
    },
  });
}

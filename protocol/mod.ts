/**
 * The goim v2 client wire codec: frames, operations, the streaming reader,
 * push batches, the auth token and the stream ops' bodies. Pure (no I/O), zero-copy over
 * `Uint8Array`; runs in Deno and browsers.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameReader, Op } from "./mod.ts";
 * const reader = new FrameReader();
 * reader.push(encodeFrame({ ver: 1, op: Op.Heartbeat, seq: 1 }), (f) => console.log(f.op));
 * ```
 *
 * @module
 */

export * from "./ops.ts";
export * from "./errors.ts";
export * from "./frame.ts";
export * from "./reader.ts";
export * from "./batch.ts";
export * from "./token.ts";
export * from "./messages.ts";
export * from "./bytes.ts";
export * from "./streams.ts";

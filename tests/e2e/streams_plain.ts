/**
 * A plain goim client for the golden checks of the streams end-to-end
 * tests: a raw TCP connection (no SDK) that sends op 7 with a token that
 * does not opt in, never writes again, and keeps every byte the comet sends,
 * so a test can compare them with goim's frame encoding byte for byte.
 *
 * @module
 */

import { concat, utf8 } from "../../protocol/bytes.ts";
import { encodeFrame } from "../../protocol/frame.ts";
import { Op } from "../../protocol/ops.ts";
import { FrameReader } from "../../protocol/reader.ts";
import { type AuthToken, encodeAuthToken } from "../../protocol/token.ts";
import { eventually } from "../eventually.ts";

/** A connected raw client; see the module doc. */
export class PlainTap {
  readonly #chunks: Uint8Array[] = [];
  /** Ops of the frames received, in order. */
  readonly ops: number[] = [];
  readonly #conn: Deno.TcpConn;
  readonly #done: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#done = this.#read();
  }

  /** Connects to `tcp://host:port`, authenticates with `token`, waits for op 8. */
  static async open(url: string, token: AuthToken): Promise<PlainTap> {
    const u = new URL(url);
    const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
    const tap = new PlainTap(conn);
    const frame = encodeFrame({ ver: 1, op: Op.Auth, seq: 1, body: encodeAuthToken(token) });
    await conn.write(frame);
    await tap.until(() => tap.ops.includes(Op.AuthReply), "op 8");
    return tap;
  }

  /** Every byte received, in order. */
  get bytes(): Uint8Array {
    return concat(this.#chunks);
  }

  /** Waits (bounded) until `check` holds. */
  until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
    return eventually(check, `plain client: ${what} (ops ${this.ops.slice(-10)})`, ms, 10);
  }

  /** Closes the socket and waits for the reader to end. */
  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    await this.#done;
  }

  async #read(): Promise<void> {
    const reader = new FrameReader({ maxBody: 1 << 20 });
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) return;
        const chunk = buf.slice(0, n);
        this.#chunks.push(chunk);
        reader.push(chunk, (f) => this.ops.push(f.op));
      }
    } catch {
      // closed locally or reset
    }
  }
}

/** goim's encoding of pushes as a TCP client gets them: one frame each, ver 1, seq 0. */
export function plainFrames(pushes: readonly { op: number; body: string }[]): Uint8Array {
  return concat(pushes.map((p) => encodeFrame({ ver: 1, op: p.op, seq: 0, body: utf8(p.body) })));
}

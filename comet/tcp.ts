/**
 * Raw TCP transport (goim internal/comet/server_tcp.go): goim frames
 * straight on the byte stream. Pushes go out as the batches' inner frames
 * back to back (a TCP client never sees op 9), replies in between, the
 * whole send queue in one write.
 *
 * @module
 */

import type net from "node:net";
import type { Logger } from "../infra/log.ts";
import { type Batch, FrameReader } from "../protocol/mod.ts";
import type { QueueItem } from "./channel.ts";
import { coalesce, Framing } from "./coalesce.ts";
import type { ConnectionHub } from "./hub.ts";
import { SocketChannel, SocketServer } from "./socket.ts";

/** A raw TCP connection's channel. */
export class TcpChannel extends SocketChannel {
  readonly #reader: FrameReader;

  /** Wraps an accepted socket. */
  constructor(hub: ConnectionHub, sock: net.Socket) {
    super(hub, sock);
    this.#reader = new FrameReader({ maxBody: hub.maxBody });
  }

  /** Always `"tcp"`. */
  get transport(): "tcp" {
    return "tcp";
  }

  /** Metrics index of TCP. */
  protected get transportIndex(): number {
    return 0;
  }

  /** Inner frames only. */
  protected pushSize(batch: Batch): number {
    return batch.tcp.length;
  }

  /** Everything queued, back to back. */
  protected encode(q: readonly QueueItem[]): Uint8Array {
    return coalesce(q, 0, q.length, Framing.Plain);
  }

  /** Frames the byte stream (a read may hold half a frame or many). */
  input(chunk: Uint8Array): void {
    this.#reader.push(chunk, (f) => this.dispatch(f));
  }
}

/** Options of {@linkcode listenTcp}. */
export interface TcpOptions {
  /** `host:port` addresses (comet.tcp.bind). */
  binds: readonly string[];
  /** SO_KEEPALIVE (comet.tcp.keepalive). */
  keepalive: boolean;
  /** Logger. */
  log: Logger;
}

/**
 * Binds the TCP listeners; accepted sockets become {@linkcode TcpChannel}s.
 *
 * @example
 * ```ts
 * import type { Logger } from "../infra/log.ts";
 * import type { ConnectionHub } from "./hub.ts";
 * declare const hub: ConnectionHub, log: Logger;
 * const tcp = await listenTcp(hub, { binds: ["127.0.0.1:0"], keepalive: false, log });
 * console.log(tcp.addrs[0].port);
 * await tcp.close();
 * ```
 */
export function listenTcp(hub: ConnectionHub, opts: TcpOptions): Promise<SocketServer> {
  return SocketServer.listen(
    { binds: opts.binds, keepalive: opts.keepalive, log: opts.log },
    (sock) => new TcpChannel(hub, sock),
    (ch) => hub.accept(ch),
  );
}

/**
 * One user device for the streams end-to-end tests: the SDK (`GoimClient`
 * with `streams` on) across however many connections and client instances
 * the test puts it through, and everything it saw.
 *
 * - `drop()` ends the socket under the SDK (a network loss): the SDK
 *   reconnects by itself, to the next of `urls` (its `nodes` list: after a
 *   loss the comet it was on goes last, so with two comets it moves to the
 *   other one) and recovers from the positions it holds.
 * - `goOffline()` closes the client and keeps its `positions()`; the next
 *   `connect()` makes a new client seeded with them (an app restart that
 *   kept the positions in storage), on another comet of `urls` than the
 *   last connection's.
 * - A tap under the SDK decodes what crosses the socket: every `StreamMsg`
 *   (with its flags, before the SDK drops duplicates), and the ack ids and
 *   syncs the SDK sends.
 *
 * Message bodies are `<stream>#<n>` (tests/e2e/streams_load.ts); a delivery
 * is recorded per stream with its number and position.
 *
 * @module
 */

import {
  GoimClient,
  openTransport,
  type PushMessage,
  type Transport,
  type TransportFactory,
} from "../../client/mod.ts";
import type { StreamPositions } from "../../client/streams.ts";
import { decodeFrames, type Frame } from "../../protocol/frame.ts";
import { Op } from "../../protocol/ops.ts";
import { decodeStreamMsg, parseStreamAck, type StreamMsg } from "../../protocol/streams.ts";

const dec = new TextDecoder();

/** One message the SDK delivered to the app. */
export interface Delivery {
  /** The number in the body (`<stream>#<n>`). */
  n: number;
  pos: number;
  epoch: string;
  pushId: string;
  replayed: boolean;
  op: number;
}

/** A `streams` event of the SDK: a stream it could not recover. */
export interface NotRecovered {
  stream: string;
  reason: string;
  epoch: string;
  pos: number;
}

/** One connection's recovery: how many messages were replayed, and how long it took. */
export interface ReplayFigure {
  /** Replayed messages delivered on this connection. */
  count: number;
  /** From the start of the connection attempt to the last replayed message (ms). */
  ms: number;
}

/** A StreamMsg as the tap saw it, with when. */
export interface WireMsg extends StreamMsg {
  /** `performance.now()` at receipt. */
  at: number;
  /** The wrapped frame's op. */
  op: number;
}

/** Options of a {@linkcode StreamDevice}. */
export interface DeviceOptions {
  mid: number;
  /** The connection key (default "": logic makes one per connection). */
  key?: string;
  /** Room key (`live://…`), "" for none. */
  room: string;
  accepts: number[];
  /** Comet URLs of one transport; the device starts on `urls[first]` and moves along them. */
  urls: string[];
  /** Index in `urls` of the first comet (default 0). */
  first?: number;
  /** The SDK acks by itself (default true); false: never acks. */
  autoAck?: boolean;
  /** Keep every StreamMsg the tap saw in `wire` (default false: counted only). */
  keepWire?: boolean;
  /** A name for failure messages. */
  label?: string;
}

/** A device: see the module doc. */
export class StreamDevice {
  readonly opts: DeviceOptions;
  readonly label: string;
  /** Deliveries per stream name, in delivery order. */
  readonly got: Map<string, Delivery[]> = new Map();
  /** Messages that came without a stream (key pushes, broadcasts). */
  readonly plain: { op: number; text: string }[] = [];
  /** The SDK's `streams` events. */
  readonly notRecovered: NotRecovered[] = [];
  /** What should never happen: a body naming another stream than the message. */
  readonly errors: string[] = [];
  /** StreamMsg frames seen on the socket (when `keepWire`). */
  readonly wire: WireMsg[] = [];
  /** Counts across connections. */
  readonly stats = {
    /** op 8 received (every connection, reconnects included). */
    auths: 0,
    drops: 0,
    offlines: 0,
    /** StreamMsg frames on the socket, duplicates included. */
    wireMsgs: 0,
    /** Push ids the SDK acked (StreamAck). */
    acked: 0,
    /** StreamSync frames the SDK sent. */
    syncs: 0,
    /** Connections made on another comet than the one before. */
    moves: 0,
  };
  /** One entry per connection that replayed something. */
  readonly replays: ReplayFigure[] = [];
  /** The SDK's `error` events (a connection ended), kept for failure messages. */
  readonly sdkErrors: string[] = [];

  #client: GoimClient | null = null;
  #transport: Transport | null = null;
  #positions: StreamPositions | undefined;
  #cometIndex: number;
  #connStart = 0;
  #replay: ReplayFigure | null = null;
  #lastUrl = "";
  #duplicates = 0;

  constructor(opts: DeviceOptions) {
    this.opts = opts;
    this.#cometIndex = opts.first ?? 0;
    this.label = opts.label ?? `mid ${opts.mid} room ${opts.room || "-"}`;
  }

  /** The SDK client of the current connection, if any. */
  get client(): GoimClient | null {
    return this.#client;
  }

  /** Deliveries of `stream` (empty when none). */
  of(stream: string): Delivery[] {
    return this.got.get(stream) ?? [];
  }

  /** The positions the SDK holds now (or kept while offline). */
  positions(): StreamPositions {
    return this.#client?.positions() ?? { ...this.#positions };
  }

  /** Duplicates the SDK dropped, over every client this device had. */
  duplicates(): number {
    return this.#duplicates + (this.#client?.streamStats().duplicates ?? 0);
  }

  /** Connects a new SDK client (seeded with the positions kept by `goOffline`); resolves after op 8. */
  async connect(): Promise<void> {
    if (this.#client) throw new Error(`${this.label}: already connected`);
    const urls = this.opts.urls.map((u) => new URL(u).href);
    // The first comet, then always another one than the last connection's.
    let url = urls[this.#cometIndex++ % urls.length];
    if (url === this.#lastUrl && urls.length > 1) url = urls[this.#cometIndex++ % urls.length];
    const client = new GoimClient({
      url,
      token: {
        mid: this.opts.mid,
        key: this.opts.key ?? "",
        room_id: this.opts.room,
        platform: "test",
        accepts: this.opts.accepts,
      },
      heartbeatIntervalMs: 60_000,
      reconnect: { enabled: true, initialDelayMs: 50, maxDelayMs: 500 },
      // Rotated so the current comet is first: a reconnect moves to the next one.
      nodes: urls.length > 1 ? () => [url, ...urls.filter((u) => u !== url)] : undefined,
      transport: this.#tap,
      streams: {
        autoAck: this.opts.autoAck ?? true,
        ...(this.#positions ? { positions: this.#positions } : {}),
      },
    });
    client.on("message", (m) => this.#onMessage(m));
    client.on("streams", (e) => {
      if (e.recovered === false) {
        this.notRecovered.push({ stream: e.stream, reason: e.reason, epoch: e.epoch, pos: e.pos });
      }
    });
    client.on("auth", (a) => {
      this.stats.auths++;
      if (this.#lastUrl !== "" && a.url !== this.#lastUrl) this.stats.moves++;
      this.#lastUrl = a.url;
    });
    client.on("reconnect", () => this.#startConnection());
    client.on("error", (e) => {
      if (this.sdkErrors.length < 20) this.sdkErrors.push(String(e));
    });
    this.#client = client;
    this.#startConnection();
    await client.connect();
  }

  /** Ends the socket under the SDK, which reconnects by itself. */
  drop(): void {
    const t = this.#transport;
    if (!t) return;
    this.stats.drops++;
    void t.close();
  }

  /** Closes the client, keeping its positions for the next `connect()`. */
  async goOffline(): Promise<void> {
    const client = this.#client;
    if (!client) return;
    this.#client = null;
    await client.close();
    this.#positions = client.positions();
    this.#duplicates += client.streamStats().duplicates;
    this.stats.offlines++;
  }

  /** Closes the client for good. */
  async close(): Promise<void> {
    const client = this.#client;
    if (!client) return;
    this.#client = null;
    await client.close();
    this.#duplicates += client.streamStats().duplicates;
  }

  /** Whether the SDK is connected now. */
  get connected(): boolean {
    return this.#client?.connected ?? false;
  }

  #startConnection(): void {
    this.#connStart = performance.now();
    this.#replay = null;
  }

  #onMessage(m: PushMessage): void {
    const text = dec.decode(m.body);
    if (m.stream === undefined || m.stream === "") {
      this.plain.push({ op: m.op, text });
      return;
    }
    const hash = text.lastIndexOf("#");
    if (text.slice(0, hash) !== m.stream) {
      this.errors.push(`${m.stream} pos ${m.pos} carried body ${text}`);
    }
    let list = this.got.get(m.stream);
    if (!list) this.got.set(m.stream, list = []);
    list.push({
      n: Number(text.slice(hash + 1)),
      pos: m.pos ?? -1,
      epoch: m.epoch ?? "",
      pushId: m.pushId ?? "",
      replayed: m.replayed ?? false,
      op: m.op,
    });
    if (m.replayed) {
      if (!this.#replay) this.replays.push(this.#replay = { count: 0, ms: 0 });
      this.#replay.count++;
      this.#replay.ms = performance.now() - this.#connStart;
    }
  }

  // Opens the real transport and watches both directions.
  #tap: TransportFactory = async (url, options) => {
    const t = await openTransport(url, {
      ...options,
      handlers: {
        onFrame: (f) => {
          this.#inspect(f);
          options.handlers.onFrame(f);
        },
        onClose: (info) => {
          if (this.#transport === t) this.#transport = null;
          options.handlers.onClose(info);
        },
      },
    });
    this.#transport = t;
    return {
      kind: t.kind,
      close: () => t.close(),
      write: (bytes) => {
        this.#outgoing(bytes);
        return t.write(bytes);
      },
    };
  };

  #inspect(f: Frame): void {
    if (f.op === Op.Raw) {
      for (const inner of decodeFrames(f.body)) this.#inspect(inner);
      return;
    }
    if (f.op !== Op.StreamMsg) return;
    this.stats.wireMsgs++;
    if (!this.opts.keepWire) return;
    const msg = decodeStreamMsg(f.body);
    const op = new DataView(msg.frame.buffer, msg.frame.byteOffset).getInt32(8);
    this.wire.push({ ...msg, frame: msg.frame.slice(), at: performance.now(), op });
  }

  #outgoing(bytes: Uint8Array): void {
    for (const f of decodeFrames(bytes)) {
      if (f.op === Op.StreamAck) this.stats.acked += parseStreamAck(f.body).length;
      else if (f.op === Op.StreamSync) this.stats.syncs++;
    }
  }
}

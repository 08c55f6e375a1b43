/**
 * The server side of RFC 6455 as pure functions and one streaming reader:
 * no sockets, no comet state. ./websocket.ts glues it to a channel.
 *
 * - {@linkcode parseUpgrade} validates an HTTP upgrade request head and
 *   returns the `Sec-WebSocket-Accept` value, or the HTTP status to refuse
 *   it with.
 * - {@linkcode WsReader} turns the bytes of client frames, in chunks of any
 *   size, into whole messages and control frames. Every frame counts
 *   against {@linkcode WsLimits} before its payload is waited for: the
 *   message size (fragments summed), the number of frames per message and
 *   the wire bytes held (fragments received so far plus the frame being
 *   read, headers included). So what one connection makes the server hold
 *   is bounded whatever it sends, and a zero-length continuation counts as
 *   much as any other frame.
 * - {@linkcode wsFrame}, {@linkcode writeWsHeader} and
 *   {@linkcode closeFrame} write server (unmasked) frames;
 *   {@linkcode closeAnswer} says how to answer a client's close frame.
 *
 * Errors are {@linkcode WebSocketError}s only; each carries the op 6 reason
 * to send, the RFC close code and, for a bound, the bound's name.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { type DisconnectReason, ReasonCode } from "../protocol/mod.ts";

/** The RFC 6455 handshake GUID. */
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Largest HTTP upgrade request accepted (request line + headers). */
export const MAX_UPGRADE_REQUEST = 8192;
/** Largest control frame payload (RFC 6455 §5.5). */
export const MAX_CONTROL = 125;
/** Largest client frame header: 2 bytes, a 64-bit length, the mask. */
const MAX_HEADER = 14;
/** The smallest client frame (2 header bytes and the mask). */
const MIN_FRAME = 6;

/** Opcodes (RFC 6455 §5.2). */
export const WsOp = {
  /** A continuation fragment. */
  Continuation: 0x0,
  /** A text message (read as the binary goim layout all the same). */
  Text: 0x1,
  /** A binary message. */
  Binary: 0x2,
  /** Close. */
  Close: 0x8,
  /** Ping. */
  Ping: 0x9,
  /** Pong. */
  Pong: 0xa,
} as const;

/** Close codes the server sends for WebSocket-level failures (RFC 6455 §7.4.1). */
export const WsClose = {
  /** Normal closure. */
  Normal: 1000,
  /** Protocol error (bad close code, 1-byte close payload). */
  ProtocolError: 1002,
  /** Data inconsistent with its type (a close reason that is not UTF-8). */
  InvalidData: 1007,
  /** Policy violation (too many fragments). */
  Policy: 1008,
  /** Message too big (message size, input held). */
  TooBig: 1009,
} as const;

/** Bounds of a {@linkcode WsReader}, names as in `limit_closes_total`. */
export type WsLimitName = "ws_message_size" | "ws_fragments" | "input_buffer";

/**
 * A WebSocket-level violation or a bound hit. Framing violations (unmasked
 * frame, reserved bits, bad opcode...) are op 6 4000 and a close repeating
 * 4000, counted as protocol errors under code `websocket`; a bound is op 6
 * 4007 and a close with {@linkcode WebSocketError.closeCode} (1008/1009),
 * counted under its {@linkcode WebSocketError.limit}.
 */
export class WebSocketError extends Error {
  /** Metric label of protocol errors. */
  readonly code = "websocket";
  /** The bound hit, or null for a framing violation. */
  readonly limit: WsLimitName | null;
  /** The close code after op 6: 1008/1009 for a bound, else the op 6 code (4000). */
  readonly closeCode: number;

  /** Creates the error; `limit` with its RFC close code for a bound. */
  constructor(message: string, limit: WsLimitName | null = null, closeCode = 0) {
    super(message);
    this.name = "WebSocketError";
    this.limit = limit;
    this.closeCode = limit === null ? ReasonCode.ProtocolError : closeCode;
  }

  /** The op 6 reason. */
  get reason(): DisconnectReason {
    return this.limit === null
      ? { code: ReasonCode.ProtocolError, message: `websocket: ${this.message}` }
      : { code: ReasonCode.LimitExceeded, message: `websocket: ${this.message}` };
  }
}

// ------------------------------------------------------------------ upgrade

const latin1 = new TextDecoder("latin1");
const CRLFCRLF = [13, 10, 13, 10];

/**
 * Offset of the blank line ending an HTTP request head in `b`, or -1.
 *
 * @example
 * ```ts
 * findHeadEnd(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n")); // 14
 * ```
 */
export function findHeadEnd(b: Uint8Array): number {
  outer: for (let i = 0; i + 3 < b.length; i++) {
    for (let k = 0; k < 4; k++) if (b[i + k] !== CRLFCRLF[k]) continue outer;
    return i;
  }
  return -1;
}

/** What {@linkcode parseUpgrade} decided. */
export type UpgradeResult =
  | { readonly ok: true; readonly accept: string }
  | {
    readonly ok: false;
    /** HTTP status to refuse with. */
    readonly status: number;
    /** Why, for the response body. */
    readonly message: string;
    /** Extra response header lines (each ending in CRLF). */
    readonly headers?: string;
  };

function refuse(status: number, message: string, headers?: string): UpgradeResult {
  return { ok: false, status, message, headers };
}

// 16 bytes in base64: 22 characters and the padding.
const KEY_RE = /^[A-Za-z0-9+/]{22}==$/;
const REQUEST_LINE_RE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(\d{1,3})\.(\d{1,3})$/;
const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * The `Sec-WebSocket-Accept` value of a key (RFC 6455 §4.2.2).
 *
 * @example
 * ```ts
 * acceptValue("dGhlIHNhbXBsZSBub25jZQ=="); // "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
 * ```
 */
export function acceptValue(key: string): string {
  return createHash("sha1").update(key + WS_GUID).digest("base64");
}

/**
 * Validates an upgrade request head (the bytes before the blank line):
 * `GET <path>[?query]` over HTTP/1.1 or later, one `Host`, `Upgrade:
 * websocket`, `Connection: Upgrade`, `Sec-WebSocket-Version: 13` and a
 * `Sec-WebSocket-Key` of 16 bytes in base64. Returns the accept value, or
 * the status (400, 404, 405, 426) and message to refuse with.
 *
 * @example
 * ```ts
 * const head = new TextEncoder().encode(
 *   "GET /sub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
 *     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13",
 * );
 * parseUpgrade(head, "/sub"); // { ok: true, accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" }
 * ```
 */
export function parseUpgrade(head: Uint8Array, path: string): UpgradeResult {
  const lines = latin1.decode(head).split("\r\n");
  const rl = REQUEST_LINE_RE.exec(lines[0]);
  if (rl === null) return refuse(400, "not an HTTP/1.1 request");
  const major = Number(rl[3]);
  if (major < 1 || (major === 1 && Number(rl[4]) < 1)) {
    return refuse(400, "HTTP/1.1 or later is required");
  }
  if (rl[1] !== "GET") return refuse(405, "use GET");
  const target = rl[2];
  const q = target.indexOf("?");
  // Path only: goim clients may add a query string.
  if ((q < 0 ? target : target.slice(0, q)) !== path) return refuse(404, "not found");
  const headers = new Map<string, string>();
  let hosts = 0;
  for (let i = 1; i < lines.length; i++) {
    const c = lines[i].indexOf(":");
    const name = c > 0 ? lines[i].slice(0, c).toLowerCase() : "";
    if (!TOKEN_RE.test(name)) return refuse(400, "malformed header line");
    const value = lines[i].slice(c + 1).trim();
    if (name === "host") hosts++;
    const prev = headers.get(name);
    headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
  }
  if (hosts !== 1 || headers.get("host") === "") return refuse(400, "exactly one Host header");
  const tokens = (h: string) =>
    (headers.get(h) ?? "").toLowerCase().split(",").map((t) => t.trim());
  if (!tokens("upgrade").includes("websocket") || !tokens("connection").includes("upgrade")) {
    return refuse(426, "expected a WebSocket upgrade");
  }
  if (headers.get("sec-websocket-version") !== "13") {
    return refuse(426, "unsupported WebSocket version", "Sec-WebSocket-Version: 13\r\n");
  }
  const key = headers.get("sec-websocket-key") ?? "";
  if (!KEY_RE.test(key)) return refuse(400, "Sec-WebSocket-Key must be 16 bytes in base64");
  return { ok: true, accept: acceptValue(key) };
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  503: "Service Unavailable",
};

/** The `101 Switching Protocols` response for an accept value. */
export function upgradeResponse(accept: string): string {
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${accept}\r\n\r\n`;
}

/** A complete refusal response (`Connection: close`, text body). */
export function refusalResponse(status: number, message: string, headers = ""): string {
  const body = `${message}\n`;
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
    `Content-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n` +
    `${headers}\r\n${body}`;
}

// ------------------------------------------------------------------ reading

/** Bounds of a {@linkcode WsReader}. */
export interface WsLimits {
  /** Largest message payload, fragments summed (protocol.max_body + 16). */
  readonly maxMessage: number;
  /** Most frames one message may span, continuations included (comet.websocket.max_fragments). */
  readonly maxFragments: number;
  /**
   * Most wire bytes held: fragments of the message in progress plus the
   * frame being read, headers included (comet.limits.input_buffer).
   */
  readonly maxBuffered: number;
}

/**
 * Where a {@linkcode WsReader} delivers; one shared object, the
 * connection passed as `ctx` (no closure per connection). A `false` return
 * stops the reader (the connection is closing): nothing after is read.
 * Payloads may be views of a buffer the next frame reuses: copy what is
 * kept past the call (like protocol/'s FrameReader cursor), and do not feed
 * a reader from inside a sink.
 */
export interface WsSink<C> {
  /** A whole data message (fragments joined); `text` for opcode 1. A view: see above. */
  message(ctx: C, payload: Uint8Array, text: boolean): boolean;
  /** A ping, pong or close frame (unmasked payload, at most 125 bytes). A view. */
  control(ctx: C, opcode: number, payload: Uint8Array): boolean;
}

function violation(message: string): WebSocketError {
  return new WebSocketError(message);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Writes the unmasked `len` bytes at `s` (mask at `m`) of `b` to `out`
 * (which starts 4-byte aligned). Long payloads are copied, then XORed a
 * word at a time; short ones go byte by byte, unrolled by the mask period.
 */
function unmaskTo(out: Uint8Array, b: Uint8Array, m: number, s: number, len: number): void {
  const m0 = b[m], m1 = b[m + 1], m2 = b[m + 2], m3 = b[m + 3];
  let i = 0;
  if (len >= 128) {
    out.set(b.subarray(s, s + len));
    const words = len >>> 2;
    const w = new Uint32Array(out.buffer, out.byteOffset, words);
    const key = LITTLE_ENDIAN
      ? (m0 | (m1 << 8) | (m2 << 16) | (m3 << 24))
      : ((m0 << 24) | (m1 << 16) | (m2 << 8) | m3);
    for (let k = 0; k < words; k++) w[k] ^= key;
    for (i = words << 2; i < len; i++) out[i] ^= b[m + (i & 3)];
    return;
  }
  for (; i + 3 < len; i += 4) {
    out[i] = b[s + i] ^ m0;
    out[i + 1] = b[s + i + 1] ^ m1;
    out[i + 2] = b[s + i + 2] ^ m2;
    out[i + 3] = b[s + i + 3] ^ m3;
  }
  for (; i < len; i++) out[i] = b[s + i] ^ b[m + (i & 3)];
}

// Where whole single-frame messages and control frames are unmasked: a
// view of it goes to the sink, valid during that call only. Allocating a
// fresh array per message costs several times the parse of a small one.
// Grows to the largest such message seen (at most maxMessage).
let scratch = new Uint8Array(4096);

/**
 * A streaming reader of client frames. Push chunks in order; messages and
 * control frames come out through the sink as soon as they are whole.
 *
 * A frame is judged as soon as the bytes that decide are there, in a fixed
 * order (first byte, second byte, length), so the outcome never depends on
 * how the input was split: the same messages, then the same error or the
 * same bytes held. What it holds ({@linkcode WsReader.held}) never exceeds
 * `maxBuffered`: a frame whose header says it would not fit fails before
 * its payload is read, and a non-final fragment must leave room for the
 * smallest final one.
 *
 * @example
 * ```ts
 * const r = new WsReader({ maxMessage: 4112, maxFragments: 16, maxBuffered: 65536 });
 * const out: Uint8Array[] = [];
 * const sink = {
 *   message: (o: Uint8Array[], p: Uint8Array) => (o.push(p.slice()), true),
 *   control: () => true,
 * };
 * // A masked binary frame of 1 byte (mask 0, payload 7), in two chunks.
 * r.push(new Uint8Array([0x82, 0x81, 0, 0]), sink, out);
 * r.push(new Uint8Array([0, 0, 7]), sink, out);
 * out; // [Uint8Array [7]]
 * ```
 */
export class WsReader {
  /** The bounds. */
  readonly limits: WsLimits;
  // An incomplete frame: MAX_HEADER bytes while its header is incomplete
  // (#partWire 0), then exactly its wire size.
  #part: Uint8Array | null = null;
  #partLen = 0;
  #partWire = 0;
  // The message in progress: its fragments' payloads, their sum, the wire
  // bytes they took, whether it is text.
  #frags: Uint8Array[] | null = null;
  #fragLen = 0;
  #fragWire = 0;
  #text = false;

  /** A reader with these bounds. */
  constructor(limits: WsLimits) {
    this.limits = limits;
  }

  /** Wire bytes held: fragments of the message in progress plus the partial frame. */
  get held(): number {
    return this.#fragWire + (this.#partWire > 0 ? this.#partWire : this.#partLen);
  }

  /** Whether nothing is held (no partial frame, no message in progress). */
  get idle(): boolean {
    return this.#part === null && this.#frags === null;
  }

  /**
   * Reads `chunk`. Returns false once the sink stopped it. Throws a
   * {@linkcode WebSocketError} for a violation or a bound (the reader is
   * then unusable); whatever the sink throws passes through.
   */
  push<C>(chunk: Uint8Array, sink: WsSink<C>, ctx: C): boolean {
    const n = chunk.length;
    let o = 0;
    let part = this.#part;
    if (part !== null) {
      if (this.#partWire === 0) {
        const prev = this.#partLen;
        const take = Math.min(MAX_HEADER - prev, n);
        part.set(chunk.subarray(0, take), prev);
        const have = prev + take;
        const wire = this.#header(part, 0, have);
        if (wire < 0) {
          this.#partLen = have;
          return true;
        }
        // The header is whole: hold exactly this frame (a copy of up to
        // MAX_HEADER bytes may have run past its end; those are read again).
        const full = new Uint8Array(wire);
        const keep = Math.min(have, wire);
        full.set(part.subarray(0, keep));
        o = keep - prev;
        part = this.#part = full;
        this.#partLen = keep;
        this.#partWire = wire;
      }
      const take = Math.min(this.#partWire - this.#partLen, n - o);
      part.set(chunk.subarray(o, o + take), this.#partLen);
      this.#partLen += take;
      o += take;
      if (this.#partLen < this.#partWire) return true;
      this.#part = null;
      this.#partLen = 0;
      this.#partWire = 0;
      if (!this.#frame(part, 0, part.length, sink, ctx)) return false;
    }
    let wire = -1;
    while (n - o >= 2) {
      wire = this.#header(chunk, o, n - o);
      if (wire < 0 || n - o < wire) break;
      if (!this.#frame(chunk, o, wire, sink, ctx)) return false;
      o += wire;
      wire = -1;
    }
    if (o < n) {
      // Keep the partial frame (the checks above bound it).
      const rest = chunk.subarray(o);
      if (wire > 0) {
        this.#part = new Uint8Array(wire);
        this.#partWire = wire;
      } else {
        this.#part = new Uint8Array(MAX_HEADER);
      }
      this.#part.set(rest);
      this.#partLen = rest.length;
    }
    return true;
  }

  /**
   * Judges the frame at `o` (`avail` bytes there, at least 1) and returns
   * its wire size, or -1 when its header is not whole yet.
   */
  #header(b: Uint8Array, o: number, avail: number): number {
    if (avail < 2) return -1;
    const b0 = b[o];
    const b1 = b[o + 1];
    const lim = this.limits;
    if ((b0 & 0x70) !== 0) throw violation("reserved bits set without an extension");
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    const control = opcode >= 8;
    if (control ? opcode > WsOp.Pong : opcode > WsOp.Binary) {
      throw violation(`unknown opcode ${opcode}`);
    }
    if (control) {
      if (!fin) throw violation("fragmented control frame");
    } else if (opcode === WsOp.Continuation) {
      if (this.#frags === null) throw violation("continuation without a message");
    } else if (this.#frags !== null) {
      throw violation("new message inside a fragmented one");
    }
    if (!control && (!fin || opcode === WsOp.Continuation)) {
      const frames = (this.#frags === null ? 0 : this.#frags.length) + 1;
      if (frames > lim.maxFragments) {
        throw new WebSocketError(
          `a message in more than ${lim.maxFragments} frames (comet.websocket.max_fragments)`,
          "ws_fragments",
          WsClose.Policy,
        );
      }
    }
    if ((b1 & 0x80) === 0) throw violation("client frames must be masked");
    let len = b1 & 0x7f;
    if (control && len > MAX_CONTROL) throw violation("control frame over 125 bytes");
    const h = len < 126 ? 2 : len === 126 ? 4 : 10;
    // A non-final fragment must leave room for the final one.
    const reserve = !control && !fin ? MIN_FRAME : 0;
    if (this.#fragWire + h + 4 + (len < 126 ? len : 0) + reserve > lim.maxBuffered) {
      throw this.#overBuffer();
    }
    if (avail < h) return -1;
    if (len === 126) {
      len = (b[o + 2] << 8) | b[o + 3];
    } else if (len === 127) {
      if ((b[o + 2] & 0x80) !== 0) throw violation("64-bit length with its top bit set");
      len = b[o + 2] | b[o + 3] | b[o + 4] | b[o + 5]
        ? Infinity
        : ((b[o + 6] << 24) | (b[o + 7] << 16) | (b[o + 8] << 8) | b[o + 9]) >>> 0;
    }
    if (!control && this.#fragLen + len > lim.maxMessage) {
      throw new WebSocketError(
        `message over ${lim.maxMessage} bytes (protocol.max_body + 16)`,
        "ws_message_size",
        WsClose.TooBig,
      );
    }
    const wire = h + 4 + len;
    if (this.#fragWire + wire + reserve > lim.maxBuffered) throw this.#overBuffer();
    return wire;
  }

  #overBuffer(): WebSocketError {
    return new WebSocketError(
      `over ${this.limits.maxBuffered} input bytes held (comet.limits.input_buffer)`,
      "input_buffer",
      WsClose.TooBig,
    );
  }

  /** Delivers the whole frame of `wire` bytes at `o` (already judged). */
  #frame<C>(b: Uint8Array, o: number, wire: number, sink: WsSink<C>, ctx: C): boolean {
    const b0 = b[o];
    const code = b[o + 1] & 0x7f;
    const m = o + (code < 126 ? 2 : code === 126 ? 4 : 10);
    const len = wire - (m - o) - 4;
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    if (fin && opcode !== WsOp.Continuation) {
      if (scratch.length < len) scratch = new Uint8Array(Math.max(len, scratch.length * 2));
      const view = scratch.subarray(0, len);
      unmaskTo(view, b, m, m + 4, len);
      return opcode >= 8
        ? sink.control(ctx, opcode, view)
        : sink.message(ctx, view, opcode === WsOp.Text);
    }
    // A fragment is kept: its own copy.
    const payload = new Uint8Array(len);
    unmaskTo(payload, b, m, m + 4, len);
    if (opcode !== WsOp.Continuation) {
      this.#frags = [payload];
      this.#fragLen = len;
      this.#fragWire = wire;
      this.#text = opcode === WsOp.Text;
      return true;
    }
    const frags = this.#frags!;
    frags.push(payload);
    this.#fragLen += len;
    this.#fragWire += wire;
    if (!fin) return true;
    const whole = new Uint8Array(this.#fragLen);
    let k = 0;
    for (const f of frags) {
      whole.set(f, k);
      k += f.length;
    }
    const text = this.#text;
    this.#frags = null;
    this.#fragLen = 0;
    this.#fragWire = 0;
    this.#text = false;
    return sink.message(ctx, whole, text);
  }
}

// ------------------------------------------------------------------ close

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Whether a client may send `code` in a close frame: 1000–1003, 1007–1014
 * (defined or registered), 3000–4999 (libraries, applications). 1004–1006
 * and 1015 are reserved and never sent; the rest is unassigned.
 */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * How to answer a client's close payload: `code` is what the server's
 * close frame carries (0 = no payload, for a close without a code; the
 * client's own code when valid), `ok` false when the payload broke the
 * rules (1002 for a 1-byte payload or an invalid code, 1007 for a reason
 * that is not UTF-8).
 *
 * @example
 * ```ts
 * closeAnswer(new Uint8Array([0x03, 0xe8])); // { code: 1000, ok: true }
 * closeAnswer(new Uint8Array([0x03, 0xed])); // 1005: { code: 1002, ok: false }
 * ```
 */
export function closeAnswer(payload: Uint8Array): { code: number; ok: boolean } {
  if (payload.length === 0) return { code: 0, ok: true };
  if (payload.length === 1) return { code: WsClose.ProtocolError, ok: false };
  const code = (payload[0] << 8) | payload[1];
  if (!isValidCloseCode(code)) return { code: WsClose.ProtocolError, ok: false };
  if (payload.length > 2) {
    try {
      strictUtf8.decode(payload.subarray(2));
    } catch {
      return { code: WsClose.InvalidData, ok: false };
    }
  }
  return { code, ok: true };
}

// ------------------------------------------------------------------ writing

const utf8 = new TextEncoder();

/** Size of the header of a server (unmasked) frame with `len` payload bytes. */
export function wsHeaderLen(len: number): number {
  return len < 126 ? 2 : len < 65536 ? 4 : 10;
}

/**
 * Writes a FIN server frame header with `opcode` for `len` payload bytes at
 * `o` (the shortest length encoding); returns the offset after it.
 */
export function writeWsHeader(out: Uint8Array, o: number, opcode: number, len: number): number {
  out[o] = 0x80 | opcode;
  if (len < 126) {
    out[o + 1] = len;
    return o + 2;
  }
  if (len < 65536) {
    out[o + 1] = 126;
    out[o + 2] = len >>> 8;
    out[o + 3] = len & 255;
    return o + 4;
  }
  out[o + 1] = 127;
  // Payloads stay far below 2^32: the high half of the 64-bit length is 0.
  out[o + 2] =
    out[o + 3] =
    out[o + 4] =
    out[o + 5] =
      0;
  out[o + 6] = len >>> 24;
  out[o + 7] = (len >>> 16) & 255;
  out[o + 8] = (len >>> 8) & 255;
  out[o + 9] = len & 255;
  return o + 10;
}

/**
 * One complete server frame.
 *
 * @example
 * ```ts
 * wsFrame(0xA, new Uint8Array([1, 2])); // a pong: 8a 02 01 02
 * ```
 */
export function wsFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(wsHeaderLen(payload.length) + payload.length);
  out.set(payload, writeWsHeader(out, 0, opcode, payload.length));
  return out;
}

/**
 * A server close frame: `code` (0 = an empty payload, no code) and a UTF-8
 * reason cut to fit a control frame (never inside a character).
 *
 * @example
 * ```ts
 * closeFrame(1000, "bye"); // 88 05 03 e8 62 79 65
 * ```
 */
export function closeFrame(code: number, reason = ""): Uint8Array {
  if (code === 0) return wsFrame(WsOp.Close, new Uint8Array(0));
  let text = utf8.encode(reason);
  if (text.length > MAX_CONTROL - 2) {
    let end = MAX_CONTROL - 2;
    while (end > 0 && (text[end] & 0xc0) === 0x80) end--;
    text = text.subarray(0, end);
  }
  const p = new Uint8Array(2 + text.length);
  p[0] = code >>> 8;
  p[1] = code & 255;
  p.set(text, 2);
  return wsFrame(WsOp.Close, p);
}

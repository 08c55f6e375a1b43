/**
 * The goim v2 client SDK: {@linkcode GoimClient} over raw TCP or WebSocket,
 * with auth, heartbeats (online counts), seq-matched requests (change room,
 * sub, unsub, send), typed events and reconnects with capped exponential
 * backoff and jitter, optionally to another comet of logic's nodes answer
 * (`nodes`, `nodes.ts`), and, with `streams`, positions, recovery,
 * in-order delivery without duplicates and acks (`streams.ts`,
 * docs/STREAMS.md). Built on the pure codec in `protocol/`.
 *
 * ## Where it runs
 * - **Browsers and Deno**: everything here with `ws://` / `wss://` URLs:
 *   `client.ts`, `connection.ts`, `websocket.ts`, `transport.ts`,
 *   `backoff.ts`, `emitter.ts`, `errors.ts`, `nodes.ts`, `streams.ts` use only Web APIs
 *   (`WebSocket`, `fetch`, `Uint8Array`, `TextEncoder`, `AbortController`,
 *   timers).
 * - **Deno only**: `tcp://` URLs. The TCP transport (`tcp.ts`, on
 *   `Deno.connect`) is the only module that references `Deno`, and it is
 *   loaded by a dynamic `import()` only when a `tcp://` URL is opened, so a
 *   browser bundle of the WebSocket client never runs it. `openTcp` is
 *   deliberately not re-exported here; import `client/tcp.ts` directly to
 *   use it on its own.
 *
 * @example
 * ```ts
 * import { GoimClient } from "./mod.ts";
 *
 * const client = new GoimClient({
 *   url: "tcp://127.0.0.1:3101",
 *   token: { mid: 1, key: "", room_id: "live://1000", platform: "deno", accepts: [1000] },
 * });
 * client.on("message", (m) => console.log(m.op, new TextDecoder().decode(m.body)));
 * client.on("heartbeat", ({ online }) => console.log("online:", online));
 * client.on("disconnect", (d) => console.log("disconnected", d.reason, d.willReconnect));
 * await client.connect();
 * ```
 *
 * @module
 */

export {
  type AuthEvent,
  type ClientState,
  DEFAULT_AUTH_TIMEOUT_MS,
  DEFAULT_CLIENT_MAX_BODY,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  type DisconnectEvent,
  GoimClient,
  type GoimClientEvents,
  type GoimClientOptions,
  type HeartbeatEvent,
  type ReconnectEvent,
  type ReconnectOptions,
} from "./client.ts";
export {
  Connection,
  type ConnectionEnd,
  type ConnectionOptions,
  type PushMessage,
} from "./connection.ts";
export { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF, type Jitter } from "./backoff.ts";
export {
  DEFAULT_NODES_TIMEOUT_MS,
  fetchNodeUrls,
  MAX_NODE_CANDIDATES,
  MAX_NODES_REPLY_BYTES,
  type NodeList,
  NodeRotation,
  type NodeSource,
  type NodesReply,
  nodeUrls,
  resolveNodes,
} from "./nodes.ts";
export {
  DEFAULT_STREAM_ACK_DELAY_MS,
  DEFAULT_STREAM_HOLD_MAX,
  DEFAULT_STREAM_HOLD_TIMEOUT_MS,
  DEFAULT_STREAM_MAX_STREAMS,
  STREAM_ID_MEMORY,
  type StreamHooks,
  type StreamLink,
  type StreamLossReason,
  type StreamPosition,
  type StreamPositions,
  type StreamsEvent,
  type StreamsOptions,
  type StreamStats,
  StreamTracker,
  zeroStreamStats,
} from "./streams.ts";
export { Emitter, type Listener } from "./emitter.ts";
export { GoimClientError, type GoimClientErrorCode } from "./errors.ts";
export {
  openTransport,
  type Transport,
  type TransportClose,
  type TransportFactory,
  type TransportHandlers,
  type TransportOptions,
} from "./transport.ts";
export { openWebSocket, WS_CLOSE_TIMEOUT_MS } from "./websocket.ts";
export type { AuthToken, AuthTokenStreams } from "../protocol/token.ts";
export type { Frame } from "../protocol/frame.ts";
export type { DisconnectReason } from "../protocol/errors.ts";
export { ReasonCode } from "../protocol/errors.ts";

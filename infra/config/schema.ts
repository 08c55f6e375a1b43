/**
 * The goim configuration: every key with its type, default and doc
 * ({@linkcode CONFIG_SCHEMA}), the section intros of docs/CONFIG.md and the
 * rules across keys that the loader checks last.
 *
 * @module
 */
import {
  addr,
  addrs,
  bool,
  bytes,
  type ConfigOf,
  defineSchema,
  duration,
  int,
  num,
  oneOf,
  str,
  strings,
} from "./schema_engine.ts";
import { RegionMap } from "../regions.ts";

// Schema order is the order of docs/CONFIG.md. Adding a key is one entry here
// (plus `--write-docs`); the type, env var, flag and docs follow from it.
/** Every configuration key of the server, with type, default and doc. */
export const CONFIG_SCHEMA = defineSchema({
  "mode": oneOf(
    ["embedded", "distributed"],
    "embedded",
    "embedded: one process runs comet, logic and job on in-memory engines; distributed: one role per process, sharing Kafka and Redis.",
  ),

  "node.id": str(
    "",
    "Id of this process in the cluster (a comet's id is what routes point at and job dials); empty = the host name. Must be unique per comet.",
  ),
  "node.region": str(
    "",
    "Region of this node (goim REGION); the nodes API prefers comets in the client's region.",
  ),
  "node.zone": str("", "Zone within the region (goim ZONE)."),

  "log.level": oneOf(
    ["debug", "info", "warn", "error"],
    "info",
    "Lowest level written; calls below it cost a no-op call.",
  ),
  "log.format": oneOf(
    ["json", "text"],
    "json",
    "json: one object per line, for collectors; text: for humans. Both go to stderr.",
  ),

  "metrics.enabled": bool(
    true,
    "Serve Prometheus metrics at /metrics on each role's admin endpoint.",
  ),

  "protocol.max_body": bytes(
    4096,
    "Largest body of a client → server frame (goim: 4096); a larger packLen is a protocol error that closes the connection.",
    { min: 0, max: "16MiB" },
  ),

  "comet.tcp.bind": addrs(["0.0.0.0:3101"], "Raw TCP listen addresses; [] disables TCP.", {
    bind: true,
  }),
  "comet.tcp.sndbuf": bytes(
    0,
    "Kernel send buffer per socket (SO_SNDBUF) where the runtime allows setting it (Deno does not yet: a non-zero value logs a warning); 0 = OS default (goim: 4096).",
    { max: "64MiB" },
  ),
  "comet.tcp.rcvbuf": bytes(
    0,
    "Kernel receive buffer per socket (SO_RCVBUF) where the runtime allows setting it (Deno does not yet: a non-zero value logs a warning); 0 = OS default (goim: 4096).",
    { max: "64MiB" },
  ),
  "comet.tcp.keepalive": bool(
    false,
    "TCP keepalive probes; the protocol heartbeat already finds dead peers (goim default false).",
  ),
  "comet.websocket.bind": addrs(
    ["0.0.0.0:3102"],
    "WebSocket (path /sub) listen addresses; [] disables.",
    { bind: true },
  ),
  "comet.websocket.tls_bind": addrs(
    [],
    'WSS listen addresses (goim\'s port is 3103, e.g. ["0.0.0.0:3103"]); [] disables. Needs cert_file and key_file.',
    { bind: true },
  ),
  "comet.websocket.cert_file": str("", "PEM certificate chain file for WSS."),
  "comet.websocket.key_file": str("", "PEM private key file for WSS."),
  "comet.grpc.bind": addr(
    "127.0.0.1:3109",
    "gRPC goim.comet.Comet listen address; job pushes through it. Loopback by default: anyone who reaches it can push to every client (see grpc.token, grpc.tls.*).",
    { bind: true },
  ),
  "comet.grpc.advertise": addr(
    "",
    "host:port job (and goim's job, through discovery) dials for this comet's gRPC; \"\" = derived from comet.grpc.bind (a wildcard bind advertises the host name). Set it when the bind address cannot be dialled.",
    { optional: true },
  ),
  "comet.admin.bind": addr(
    "127.0.0.1:3190",
    'HTTP admin endpoint of the comet role (/metrics, /healthz); "" disables. Loopback by default because metrics reveal internals.',
    { bind: true, optional: true },
  ),
  "comet.handshake_timeout": duration(
    "8s",
    "Time a new connection has to send its auth frame (op 7) before it is closed.",
    { min: "1ms" },
  ),
  "comet.heartbeat_interval": duration(
    "4m",
    "Heartbeat period expected from clients (goim Node.Heartbeat).",
    { min: "1s" },
  ),
  "comet.heartbeat_max": int(
    2,
    "Heartbeat periods a connection may stay silent: idle timeout = heartbeat_interval × heartbeat_max (goim: 4m × 2).",
    { min: 1, max: 100 },
  ),
  "comet.bucket.count": int(32, "Buckets sharding channels and rooms (goim Bucket.Size).", {
    min: 1,
    max: 4096,
  }),
  "comet.bucket.channel_size": int(
    1024,
    "Expected channels per bucket, a sizing hint (goim Bucket.Channel).",
    { min: 1 },
  ),
  "comet.bucket.room_size": int(
    1024,
    "Expected rooms per bucket, a sizing hint (goim Bucket.Room).",
    { min: 1 },
  ),
  "comet.send_queue.max_bytes": bytes(
    "1MiB",
    "Bytes queued for one connection before send_queue.policy applies. Pushed bytes are shared, so this bounds what a slow client pins, not what each client costs.",
    { min: "1KiB", max: "1GiB" },
  ),
  "comet.send_queue.policy": oneOf(
    ["disconnect", "drop_oldest", "drop_new"],
    "disconnect",
    "When a send queue is full: close the slow client (op 6 first), drop its oldest queued frames, or drop the new frame. Counted in metrics.",
  ),
  "comet.streams.ack_timeout": duration(
    "5s",
    "An ack-requested push an opted-in connection has not acked (op StreamAck) is sent again after this (docs/STREAMS.md).",
    { min: "100ms", max: "10m" },
  ),
  "comet.streams.ack_retries": int(
    3,
    "Re-sends per unacked push; then the comet stops tracking it (a mid push stays recoverable from its stream).",
    { min: 0, max: 100 },
  ),
  "comet.streams.max_unacked": int(
    256,
    "Unacked pushes tracked per connection; past it the oldest is forgotten (counted) rather than holding memory for a client that never acks.",
    { min: 1, max: 65_536 },
  ),
  "comet.shutdown_deadline": duration(
    "10s",
    "On SIGINT/SIGTERM, time allowed to drain and close connections before exiting anyway.",
  ),
  "comet.renew_online_interval": duration(
    "10s",
    "How often the comet reports its room online counts to logic (goim: 10s).",
    { min: "100ms" },
  ),
  "comet.route_heartbeat_interval": duration(
    "10m",
    "A connection refreshes its route in logic (Heartbeat RPC) at most this often, on client heartbeats; must be below logic.route_ttl (goim: random 10–30m).",
    { min: "1s" },
  ),
  "comet.logic_addrs": addrs(
    ["127.0.0.1:3119"],
    "Logic gRPC addresses this comet calls in distributed mode.",
  ),
  "comet.limits.max_ops": int(
    256,
    "Operations one connection may accept (auth accepts plus op 14); a Sub past it closes the connection (op 6, reason 4007).",
    { min: 1, max: 65536 },
  ),
  "comet.limits.frame_rate": num(
    50,
    "Client frames per second one connection may send on average (token bucket refill); past the burst it is closed (op 6, reason 4007). 0 = unlimited.",
    { min: 0 },
  ),
  "comet.limits.frame_burst": int(
    200,
    "Client frames one connection may send at once before comet.limits.frame_rate applies (token bucket size).",
    { min: 1 },
  ),
  "comet.limits.input_buffer": bytes(
    "64KiB",
    "Input bytes one connection may hold unparsed or waiting (partial frames, WebSocket fragments, frames held back while logic answers); past it the connection is closed (op 6 4007; WebSocket close 1009). Must exceed protocol.max_body + 30.",
    { min: "1KiB", max: "64MiB" },
  ),
  "comet.limits.fd_reserve": int(
    256,
    "File descriptors kept free for the HTTP API, admin, gRPC, Redis and Kafka: new client connections are refused (TCP: op 6 reason 4007; WebSocket upgrade: HTTP 503) once open files reach the process limit (read from the process) minus this.",
    { min: 0 },
  ),
  "comet.websocket.max_fragments": int(
    16,
    "Frames one WebSocket message may be split into (continuations included); more closes the connection (1008).",
    { min: 1, max: 65536 },
  ),
  "comet.weight": int(
    10,
    "Weight of this comet in the nodes API's balancing (goim WEIGHT); 0 = never offered.",
    { min: 0, max: 1_000_000 },
  ),
  "comet.addrs": strings(
    [],
    "Public hosts or IPs clients reach this comet at (goim ADDRS), paired with logic.nodes.*_port by the nodes API; [] = not advertised.",
  ),

  "logic.http.bind": addr(
    "127.0.0.1:3111",
    "HTTP push/online/nodes API (/goim/…) listen address. A non-loopback address needs logic.auth.api_keys or logic.http.insecure = true.",
    { bind: true },
  ),
  "logic.http.insecure": bool(
    false,
    "Allow the push API on a non-loopback address without api_keys (anyone who reaches it can push to every client; logged at WARN).",
  ),
  "logic.http.max_body": bytes(
    "64KiB",
    "Largest push message accepted (bigger: HTTP 413, code -413). Every target queues it, so keep it well below comet.send_queue.max_bytes.",
    { min: 1, max: "16MiB" },
  ),
  "logic.push.max_wait": duration(
    "30s",
    "Largest wait= of an ack-requested push (ack=1): the HTTP answer comes when every target acked or this is up (docs/STREAMS.md).",
    { max: "10m" },
  ),
  "logic.grpc.bind": addr(
    "127.0.0.1:3119",
    "gRPC goim.logic.Logic listen address; comets connect here. Loopback by default: it can create and delete routes (see grpc.token, grpc.tls.*).",
    { bind: true },
  ),
  "logic.grpc.advertise": addr(
    "",
    'host:port comets (goim\'s too, through discovery) dial for this logic; "" = derived from logic.grpc.bind (a wildcard bind advertises the host name).',
    { optional: true },
  ),
  "logic.admin.bind": addr(
    "127.0.0.1:3191",
    'HTTP admin endpoint of the logic role (/metrics, /healthz); "" disables.',
    {
      bind: true,
      optional: true,
    },
  ),
  "logic.auth.mode": oneOf(
    ["none", "jwt"],
    "none",
    "none: trust mid/key of the auth frame, as goim does; jwt: require a signed token in its token field.",
  ),
  "logic.auth.jwt.algorithm": oneOf(["HS256", "RS256"], "HS256", "JWT signature algorithm."),
  "logic.auth.jwt.secret": str(
    "",
    "HS256 shared secret; prefer the env var GOIM_LOGIC__AUTH__JWT__SECRET to a file.",
  ),
  "logic.auth.jwt.public_key_file": str("", "PEM (SPKI) public key file for RS256."),
  "logic.auth.api_keys": strings(
    [],
    "Keys accepted by the HTTP API; [] leaves it open, as goim does.",
  ),
  "logic.auth.jwt.audience": str(
    "",
    'Required `aud` claim (a token whose aud is neither this string nor a list holding it is refused); "" = not checked.',
  ),
  "logic.auth.jwt.issuer": str("", 'Required `iss` claim; "" = not checked.'),
  "logic.auth.jwt.max_lifetime": duration(
    "0s",
    "Longest token lifetime accepted (exp - iat; a token without iat counts from now); 0 = no limit.",
  ),
  "logic.auth.jwt.close_on_expiry": bool(
    false,
    "Close connections whose token's exp has passed (op 6, reason 4001); false = a connection outlives its token, as with goim.",
  ),
  "logic.route_ttl": duration(
    "30m",
    "Lifetime of a session route (mid/key → comet) that is not refreshed (goim Redis expire: 30m).",
    { min: "1s" },
  ),
  "logic.online_stale_after": duration(
    "60s",
    "Room online counts reported by a comet longer ago than this are ignored.",
    { min: "1s" },
  ),
  "logic.webhook.url": str(
    "",
    'URL that receives upstream client messages (op 4) as HTTP POSTs; "" disables (goim only logs them).',
    { pattern: /^(?:https?:\/\/\S+)?$/, what: `an http:// or https:// URL, or ""` },
  ),
  "logic.webhook.timeout": duration("2s", "Timeout of one webhook delivery.", { min: "1ms" }),
  "logic.webhook.retries": int(
    2,
    "Retries after a failed delivery before the message is dropped and counted.",
    { min: 0, max: 100 },
  ),
  "logic.webhook.buffer": int(
    1024,
    "Messages waiting for delivery; when full, new ones are dropped and counted.",
    { min: 1 },
  ),
  "logic.nodes.default_domain": str(
    "conn.goim.io",
    "Domain the nodes API returns when no comet is known (goim Node.DefaultDomain).",
  ),
  "logic.nodes.host_domain": str(
    ".goim.io",
    "Suffix the nodes API appends to comet host names (goim Node.HostDomain).",
  ),
  "logic.nodes.tcp_port": int(3101, "TCP port the nodes API advertises (goim Node.TCPPort).", {
    min: 1,
    max: 65535,
  }),
  "logic.nodes.ws_port": int(3102, "WebSocket port the nodes API advertises (goim Node.WSPort).", {
    min: 1,
    max: 65535,
  }),
  "logic.nodes.wss_port": int(3103, "WSS port the nodes API advertises (goim Node.WSSPort).", {
    min: 1,
    max: 65535,
  }),
  "logic.nodes.region_weight": num(
    1.6,
    "Weight multiplier of comets in the client's region (goim Node.RegionWeight).",
    { min: 0 },
  ),
  "logic.nodes.regions": strings(
    [],
    'Client networks and their regions, "CIDR=region" (e.g. ["10.0.0.0/8=sh", "2001:db8::/32=bj"]; region: 1 to 64 of A-Z a-z 0-9 . _ -). A client\'s region, whose comets get logic.nodes.region_weight: the region parameter it sends, else the most specific network holding its IP (the TCP peer: behind a proxy, the proxy\'s), else node.region (docs/LOGIC.md, "Node balancer").',
  ),

  "logic.operator.keys": strings(
    [],
    "Bearer keys of the operator console and API (/console/, /operator/v1/ on logic.admin.bind; docs/CONSOLE.md), a set of their own: a push API key cannot kick. [] = the console answers only on a loopback logic.admin.bind (logged at WARN) and is off elsewhere. Prefer the env var GOIM_LOGIC__OPERATOR__KEYS.",
  ),
  "logic.operator.jobs": addrs(
    [],
    "Admin endpoints (job.admin.bind) of the job processes whose queue lag, push latency and event-loop lag the console shows, read from their /metrics with admin.token; [] = none (the embedded server passes its own job).",
  ),
  "job.comet_lanes": int(
    32,
    "Ordered worker lanes per comet that pushes are spread over (goim Comet.RoutineSize).",
    { min: 1, max: 1024 },
  ),
  "job.lane_queue": int(
    1024,
    "Pushes queued per lane before the consumer waits (goim Comet.RoutineChan).",
    { min: 1 },
  ),
  "job.room.batch": int(
    256,
    "Largest number of messages merged into one room or broadcast batch (goim Room.Batch is 20 with a 1s window; batches grow only while the comet is still writing the last one).",
    {
      min: 1,
      max: 10_000,
    },
  ),
  "job.room.window": duration(
    "20ms",
    "Longest a room message waits for its batch while no earlier batch of the room is still being written (goim Room.Signal is 1s; shorter keeps latency low).",
    { max: "10s" },
  ),
  "job.room.idle": duration(
    "15m",
    "A room's batcher is released after this long without messages (goim Room.Idle).",
    { min: "1s" },
  ),
  "job.retry.max_attempts": int(
    3,
    "Attempts per push to a comet, the first included; 1 = no retry.",
    { min: 1, max: 100 },
  ),
  "job.retry.base_delay": duration(
    "100ms",
    "Delay before the first retry; doubles on each further attempt.",
  ),
  "job.retry.max_delay": duration("2s", "Upper bound of the retry delay."),
  "job.admin.bind": addr(
    "127.0.0.1:3192",
    'HTTP admin endpoint of the job role (/metrics, /healthz); "" disables.',
    {
      bind: true,
      optional: true,
    },
  ),

  "grpc.token": str(
    "",
    'Shared secret between roles: sent as gRPC metadata `authorization: Bearer <token>` and checked (constant time) by every internal gRPC server; "" = none (needed next to unmodified goim processes). Prefer the env var GOIM_GRPC__TOKEN.',
  ),
  "grpc.tls.cert_file": str(
    "",
    'PEM certificate chain of this process for internal gRPC (server side, and client side for mTLS); "" = plaintext.',
  ),
  "grpc.tls.key_file": str("", "PEM private key matching grpc.tls.cert_file."),
  "grpc.tls.ca_file": str(
    "",
    'PEM CA bundle that peers\' certificates must chain to; with it, servers also require client certificates (mTLS). "" = system roots, no client certificates.',
  ),
  "grpc.tls.server_name": str(
    "",
    'Name checked in the server certificate when dialling (overrides the host of the address); "" = the host dialled.',
  ),

  "http.header_timeout": duration(
    "10s",
    "Every HTTP listener (push API, admin): a new connection must send a whole request header within this time after accept; on keep-alive the next request's header within this time after its first byte (before that, http.idle_timeout applies), or it is closed.",
    { min: "1ms" },
  ),
  "http.body_timeout": duration(
    "30s",
    "Every HTTP listener: a request body must arrive whole within this time after its header, or the request fails with 408 and the connection is closed.",
    { min: "1ms" },
  ),
  "http.idle_timeout": duration(
    "60s",
    "Every HTTP listener: a keep-alive connection with no request in progress is closed after this long.",
    { min: "1ms" },
  ),
  "http.max_connections": int(
    1024,
    "Open connections per HTTP listener; further connections get 503 and are closed.",
    { min: 1 },
  ),

  "admin.token": str(
    "",
    'Bearer token required by every admin endpoint but /healthz (Prometheus: authorization.credentials); "" = none. Prefer the env var GOIM_ADMIN__TOKEN.',
  ),
  "admin.insecure": bool(
    false,
    "Allow admin endpoints on a non-loopback address without admin.token (logged at WARN).",
  ),

  "queue.engine": oneOf(
    ["memory", "kafka"],
    "memory",
    "memory: in-process queue (logic and job in one process); kafka: a topic shared by every logic and job.",
  ),
  "queue.memory.capacity": int(
    65536,
    "Messages the in-memory queue holds; when it is full, publishing fails (the push API answers 503).",
    { min: 1 },
  ),
  "queue.kafka.brokers": addrs(["127.0.0.1:9092"], "Kafka bootstrap brokers."),
  "queue.kafka.topic": str(
    "goim-push-topic",
    "Topic carrying PushMsg messages (goim Kafka.Topic).",
  ),
  "queue.kafka.group": str(
    "goim-push-group-job",
    "Consumer group of the job role (goim Kafka.Group).",
  ),
  "queue.kafka.client_id": str("goim", "Kafka client id, shown in broker logs and quotas."),
  "queue.kafka.session_timeout": duration(
    "10s",
    "Job consumer session timeout: a job that dies without leaving the group holds its partitions this long before another takes over (kafkajs default 30s; the broker allows 6s..30m by default).",
    { min: "1s" },
  ),

  "streams.enabled": bool(
    true,
    "Positions, history and recovery for room and mid pushes (docs/STREAMS.md). false: mid pushes are routed by logic as goim does, and opted-in connections are told reason disabled.",
  ),
  "streams.history.size": int(
    1000,
    "Messages kept per stream (room or mid); a client further behind is told window_passed.",
    { min: 1, max: 100_000 },
  ),
  "streams.history.ttl": duration(
    "24h",
    "A kept message older than this is not replayed (window_passed); a stream without a message for this long loses its history and epoch.",
    { min: "1s", max: "720h" },
  ),
  "streams.memory.max_streams": int(
    100_000,
    "Memory engine (embedded mode): streams kept; past it the least recently written stream is dropped (its epoch changes).",
    { min: 1 },
  ),
  "streams.memory.max_bytes": bytes(
    "256MiB",
    "Memory engine (embedded mode): heap its histories may take (bodies, push ids and a measured overhead per entry and stream); past it the least recently written streams are dropped whole (their epochs change). One append bigger than this still lands, alone.",
    { min: "1MiB" },
  ),
  "streams.recover.timeout": duration(
    "5s",
    "Longest a comet waits for logic's Recover on connect or StreamSync; then it answers reason unavailable and lets live messages through.",
    { min: "100ms", max: "1m" },
  ),
  "streams.status.ttl": duration(
    "1h",
    "How long the status of an ack-requested push is kept for GET /goim/push/status.",
    { min: "1s", max: "720h" },
  ),

  "sessions.engine": oneOf(
    ["memory", "redis"],
    "memory",
    "Where session routes (mid/key → comet) live: memory (one logic) or redis (shared by all logics).",
  ),
  "registry.engine": oneOf(
    ["memory", "redis", "discovery"],
    "memory",
    "Where comets register for logic and job to find: memory (one process), redis, or discovery (bilibili discovery, goim's registry: discovery.nodes).",
  ),
  "discovery.nodes": addrs(
    [],
    'bilibili discovery servers (host:port of their HTTP API). With registry.engine = "discovery" comets and logics are registered and found there; with another engine and discovery.register = true they are also registered there, so goim\'s own job and comet find them.',
  ),
  "discovery.register": bool(
    false,
    "Also register comets as goim.comet and logics as goim.logic in discovery.nodes while registry.engine is memory or redis (mixed clusters during a migration from goim).",
  ),
  "discovery.env": str(
    "dev",
    "Deploy environment of discovery instances (goim DEPLOY_ENV; discovery's env).",
  ),

  "redis.url": str(
    "redis://127.0.0.1:6379",
    "Redis URL: redis:// or rediss://, optionally user:password@ and /db.",
    {
      pattern: /^rediss?:\/\/\S+$/,
      what: `a redis:// or rediss:// URL`,
    },
  ),
  "redis.key_prefix": str("", 'Prefix of every Redis key; "" keeps goim\'s own key names.'),
  "redis.cluster.nodes": addrs(
    [],
    'Redis Cluster seed nodes; any reachable one tells the client the rest. [] = the single Redis at redis.url. Non-empty: the engines run on the cluster, and redis.url gives only the user, password and TLS (rediss://) of every node (its db must be 0). Session keys keep goim\'s names; registry keys get the hash tag {comets} (docs/SERVICES.md, "Redis Cluster").',
  ),
  "redis.command_timeout": duration(
    "2s",
    "Longest one Redis command may take before it fails; while Redis is down, commands fail at once (nothing is queued).",
    { min: "1ms" },
  ),
});

/** The fully typed, frozen configuration. Durations are milliseconds, sizes bytes. */
export type Config = ConfigOf<typeof CONFIG_SCHEMA>;

/** A dotted key path of the configuration, e.g. `"comet.tcp.bind"`. */
export type ConfigKey = keyof typeof CONFIG_SCHEMA;

/** Intros of the sections of docs/CONFIG.md, by first path segment. */
export const SECTION_DOCS: Readonly<Record<string, string>> = {
  mode: "How the roles are deployed.",
  node: "Identity of this process; usually set per process through the environment.",
  log: "Structured logs (infra/log.ts).",
  metrics: "Prometheus metrics (infra/metrics.ts).",
  protocol: "The client wire protocol (docs/PROTOCOL.md).",
  comet: "The comet role: client connections over TCP, WebSocket and WSS.",
  logic: "The logic role: HTTP push API, gRPC for comets, sessions, auth.",
  job: "The job role: consumes the queue and fans pushes out to comets.",
  queue: "The queue between logic and job.",
  streams:
    "Stream positions, history, recovery and push status (docs/STREAMS.md); the store follows sessions.engine.",
  sessions: "The session route store.",
  registry: "The comet registry.",
  discovery: "bilibili discovery, goim's service registry (migration from a running goim cluster).",
  grpc: "Internal gRPC between the roles (comet ↔ logic, job → comet): credentials and TLS.",
  http: "Limits of every HTTP listener (logic's push API and each role's admin endpoint).",
  admin: "Access to the admin endpoints (/metrics, /healthz) of every role.",
  redis: "Redis connection, used by the redis engines.",
};

/**
 * Shortest HS256 secret accepted (`logic.auth.jwt.secret`, UTF-8 bytes):
 * the hash's size (RFC 7518 §3.2). Anyone holding one token can try
 * secrets offline, so a short one is as good as none.
 */
export const MIN_HS256_SECRET_BYTES = 32;

/** A rule spanning several keys, checked after every source is applied. */
export interface CrossCheck {
  /** The key blamed (its source is reported). */
  readonly key: ConfigKey;
  /** The rule, for docs/CONFIG.md. */
  readonly doc: string;
  /** Returns a message when the rule is broken. */
  readonly test: (c: Config) => string | undefined;
  /** Only warn: the setup is odd but can work. */
  readonly warning?: boolean;
}

/** The cross-key rules, in the order loadConfig checks them and docs/CONFIG.md lists them. */
export const CROSS_CHECKS: readonly CrossCheck[] = [
  {
    key: "queue.engine",
    doc:
      `\`mode = "distributed"\` needs \`queue.engine = "kafka"\`: separate processes cannot share an in-memory queue.`,
    test: (c) =>
      c.mode === "distributed" && c.queue.engine === "memory"
        ? `mode "distributed" needs queue.engine = "kafka" (separate processes cannot share an in-memory queue)`
        : undefined,
  },
  {
    key: "registry.engine",
    doc:
      `\`mode = "distributed"\` needs \`registry.engine = "redis"\` or \`"discovery"\`, or job and logic never see the comets.`,
    test: (c) =>
      c.mode === "distributed" && c.registry.engine === "memory"
        ? `mode "distributed" needs registry.engine = "redis" or "discovery" (job and logic processes cannot see comets in another process's memory)`
        : undefined,
  },
  {
    key: "discovery.nodes",
    doc:
      '`registry.engine = "discovery"` and `discovery.register = true` need at least one `discovery.nodes` address.',
    test: (c) =>
      (c.registry.engine === "discovery" || c.discovery.register) && c.discovery.nodes.length === 0
        ? "discovery is used (registry.engine or discovery.register) but discovery.nodes is empty"
        : undefined,
  },
  {
    key: "logic.nodes.regions",
    doc: 'Each `logic.nodes.regions` entry is "CIDR=region" with a valid network and region name.',
    test: (c) => {
      try {
        RegionMap.parse(c.logic.nodes.regions);
        return undefined;
      } catch (e) {
        return `logic.nodes.regions: ${(e as Error).message}`;
      }
    },
  },
  {
    key: "redis.cluster.nodes",
    doc: "A non-empty `redis.cluster.nodes` needs a `redis.url` without a db other than 0.",
    test: (c) => {
      const db = /^rediss?:\/\/[^/]*\/([^?#]*)/.exec(c.redis.url)?.[1] ?? "";
      return c.redis.cluster.nodes.length > 0 && db !== "" && db !== "0"
        ? `redis.cluster.nodes is set but redis.url names db ${db} (a Redis Cluster has only db 0)`
        : undefined;
    },
  },
  {
    key: "sessions.engine",
    warning: true,
    doc:
      `Warning only: \`mode = "distributed"\` with \`sessions.engine = "memory"\` works only with a single logic process.`,
    test: (c) =>
      c.mode === "distributed" && c.sessions.engine === "memory"
        ? `sessions.engine "memory" in mode "distributed" only works with a single logic process`
        : undefined,
  },
  {
    key: "comet.websocket.tls_bind",
    doc: "A non-empty `comet.websocket.tls_bind` needs `cert_file` and `key_file`.",
    test: (c) =>
      c.comet.websocket.tls_bind.length > 0 &&
        (c.comet.websocket.cert_file === "" || c.comet.websocket.key_file === "")
        ? "WSS is enabled but comet.websocket.cert_file or comet.websocket.key_file is empty"
        : undefined,
  },
  {
    key: "logic.auth.mode",
    doc: '`logic.auth.mode = "jwt"` needs `jwt.secret` (HS256) or `jwt.public_key_file` (RS256).',
    test: (c) => {
      const jwt = c.logic.auth.jwt;
      if (c.logic.auth.mode !== "jwt") return undefined;
      if (jwt.algorithm === "HS256" && jwt.secret === "") {
        return `auth mode "jwt" with HS256 needs logic.auth.jwt.secret`;
      }
      if (jwt.algorithm === "RS256" && jwt.public_key_file === "") {
        return `auth mode "jwt" with RS256 needs logic.auth.jwt.public_key_file`;
      }
      return undefined;
    },
  },
  {
    key: "logic.auth.jwt.secret",
    doc:
      `With \`logic.auth.mode = "jwt"\` and HS256, \`jwt.secret\` must be at least ${MIN_HS256_SECRET_BYTES} bytes.`,
    test: (c) => {
      const jwt = c.logic.auth.jwt;
      if (c.logic.auth.mode !== "jwt" || jwt.algorithm !== "HS256" || jwt.secret === "") {
        return undefined; // an empty secret is the rule above's
      }
      const n = new TextEncoder().encode(jwt.secret).length;
      return n < MIN_HS256_SECRET_BYTES
        ? `the HS256 secret is ${n} bytes; at least ${MIN_HS256_SECRET_BYTES} are needed (a short secret can be guessed offline from any token)`
        : undefined;
    },
  },
  {
    key: "comet.route_heartbeat_interval",
    doc: "`comet.route_heartbeat_interval` must be below `logic.route_ttl`, or live routes expire.",
    test: (c) =>
      c.comet.route_heartbeat_interval >= c.logic.route_ttl
        ? `must be below logic.route_ttl (${c.logic.route_ttl} ms), or routes of live connections expire`
        : undefined,
  },
  {
    key: "logic.http.max_body",
    doc:
      "`logic.http.max_body` + 16 must fit in `comet.send_queue.max_bytes`, or one push overflows every queue.",
    test: (c) =>
      c.logic.http.max_body + 16 > c.comet.send_queue.max_bytes
        ? `a push of ${c.logic.http.max_body} bytes would not fit in comet.send_queue.max_bytes (${c.comet.send_queue.max_bytes})`
        : undefined,
  },
];

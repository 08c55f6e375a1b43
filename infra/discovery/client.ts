/**
 * A client of bilibili discovery v1.0.1's HTTP API, the service registry
 * goim's comet, logic and job find each other in (appids `goim.comet`,
 * `goim.logic`).
 *
 * What it speaks, read from the server (`http/discovery.go`,
 * `model/param.go`) and from the Go client goim uses (`naming/client.go`):
 *
 * | call                | request                                                         | answer `data`                  |
 * | ------------------- | --------------------------------------------------------------- | ------------------------------ |
 * | `register`          | POST form region, zone, env, appid, hostname, addrs (repeated), version, status = 1, metadata (JSON map of strings) | null |
 * | `renew`             | POST form region, zone, env, appid, hostname                    | the instance                   |
 * | `cancel`            | POST form region, zone, env, appid, hostname                    | null                           |
 * | `set`               | POST form zone, env, appid, hostname, status = 1, metadata      | null                           |
 * | `fetch`             | GET env, appid, status (1 = up), zone ("" = every zone)         | `{instances: {zone: [..]}, latest_timestamp}` |
 * | `polls`             | GET env, hostname, appid + latest_timestamp (repeated, paired)  | `{appid: {instances, latest_timestamp}}` |
 * | `nodes`             | GET                                                             | `[{addr, status, zone}]`       |
 *
 * Every answer is `{"code": N, "data": ...}` with HTTP 200; `code` is
 * discovery's ecode ({@linkcode ECODE}): 0 ok, -304 not modified (a poll
 * that saw no change within the server's 30 s hold), -400 bad parameters,
 * -404 nothing found (renew of an unknown instance: register again, as the
 * Go client does; fetch or poll of an appid nobody registered), -409
 * conflict, -500 server error. The Go client sends `addrs` comma-joined in
 * one value, which the server stores as one address; this client repeats the
 * parameter, which the server stores as a list (its own API doc does so).
 *
 * Timestamps are Go `UnixNano` values (about 1.8e18), beyond the integers a
 * JS number holds exactly; they are parsed from the JSON source text into
 * `bigint`. A poll must send the server's `latest_timestamp` back unchanged:
 * one rounded down is older than the server's and answers at once, forever.
 *
 * Bounds, so that a broken or hostile discovery answer costs an error, never
 * a crash or unbounded memory:
 *
 * - every request has a timeout ({@linkcode DEFAULT_REQUEST_TIMEOUT_MS};
 *   polls {@linkcode DEFAULT_POLL_TIMEOUT_MS}, above the server's 30 s
 *   hold), and `close()` aborts whatever is in flight;
 * - an answer body larger than `maxResponseBytes`
 *   ({@linkcode DEFAULT_MAX_RESPONSE_BYTES}) is cut off and refused;
 * - an answer that is not HTTP 200 with a JSON `{code}` object counts as a
 *   failure of that node; instances that are not shaped like discovery's
 *   (types, string lengths, {@linkcode INSTANCE_LIMITS}) are left out and
 *   reported in `invalid`, never passed on.
 *
 * Node failover: the client starts at a random node of `nodes` (as the Go
 * client does) and keeps using it; a node that cannot be reached, times
 * out or answers garbage makes the call try the next one, and the next one
 * becomes the current node. A call fails only when every node failed, with
 * a {@linkcode DiscoveryError} naming each node's problem. An ecode answer
 * (-404 and so on) is an answer, not a node failure. Retrying later, with
 * backoff, is the caller's business (infra/discovery/keeper.ts does it for
 * registrations).
 *
 * @example
 * ```ts
 * import { DiscoveryClient } from "./client.ts";
 * const client = new DiscoveryClient({ nodes: ["127.0.0.1:7171"], env: "dev", zone: "sh001" });
 * await client.register({ appid: "goim.comet", hostname: "comet-1", addrs: ["grpc://10.0.0.5:3109"],
 *   metadata: { weight: "10" } });
 * const info = await client.fetch("goim.comet");
 * await client.cancel("goim.comet", "comet-1");
 * client.close();
 * ```
 *
 * @module
 */

import { errorMessage } from "../log.ts";
import { readCapped } from "../../protocol/bytes.ts";

/** discovery's error codes (`errors/errors.go`), the `code` of every answer. */
export const ECODE = Object.freeze({
  OK: 0,
  NOT_MODIFIED: -304,
  PARAMS_ERR: -400,
  NOTHING_FOUND: -404,
  CONFLICT: -409,
  SERVER_ERR: -500,
});

/** Instance status: receives traffic (`model.InstanceStatusUP`). */
export const STATUS_UP = 1;

/** Timeout of one request to one node, ms (the Go client's dial timeout is 3 s). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/** Timeout of one poll, ms: the server holds a poll up to 30 s (`_pollWaitSecond`). */
export const DEFAULT_POLL_TIMEOUT_MS = 40_000;
/** Largest answer body read, bytes (one goim.comet instance is about 600 bytes). */
export const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

/** What an instance in an answer may hold; more makes it invalid (left out). */
export const INSTANCE_LIMITS = Object.freeze({
  /** region, zone, env, appid, hostname, version, and each address. */
  maxStringChars: 1024,
  /** Addresses of one instance. */
  maxAddrs: 64,
  /** Metadata keys of one instance. */
  maxMetadataKeys: 256,
  /** One metadata value (goim's `addrs` is a comma list of public addresses). */
  maxMetadataValueChars: 64 * 1024,
});

/** A discovery call that failed: every node unreachable, a refused answer, or an ecode. */
export class DiscoveryError extends Error {
  /** discovery's ecode when the server answered one ({@linkcode ECODE}); undefined otherwise. */
  readonly code: number | undefined;

  /** `code` is the server's ecode, when there was one. */
  constructor(message: string, code?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "DiscoveryError";
    this.code = code;
  }
}

/** One instance as discovery keeps it (`model.Instance`). Timestamps are ns since the epoch. */
export interface Instance {
  /** Region (goim REGION). */
  region: string;
  /** Zone (goim ZONE); instances are grouped by it. */
  zone: string;
  /** Deploy environment (goim DEPLOY_ENV). */
  env: string;
  /** Service id, e.g. `goim.comet`. */
  appid: string;
  /** Instance id within the appid (goim: the host name, its server id). */
  hostname: string;
  /** `scheme://host:port` addresses, e.g. `grpc://10.0.0.5:3109`. */
  addrs: string[];
  /** Free-form version. */
  version: string;
  /** String map the service publishes (goim: weight, offline, addrs, conn_count, ip_count). */
  metadata: Record<string, string>;
  /** 1 up, 2 waiting. */
  status: number;
  /** When it was registered. */
  regTimestamp: bigint;
  /** When it last became up. */
  upTimestamp: bigint;
  /** Its last renewal. */
  renewTimestamp: bigint;
  /** Its last change (register, set). */
  dirtyTimestamp: bigint;
  /** Its last change as the poll clock counts (often 0). */
  latestTimestamp: bigint;
}

/** One appid's instances in one answer (`model.InstanceInfo`). */
export interface InstancesInfo {
  /** Instances by zone. */
  instances: Map<string, Instance[]>;
  /** The appid's change clock; a poll sends it back to wait for the next change. */
  latestTimestamp: bigint;
  /** Instances of the answer that were left out, and why (at most {@linkcode MAX_INVALID_REPORTED}). */
  invalid: string[];
}

/** Most reasons {@linkcode InstancesInfo.invalid} lists (the rest are only counted in the last one). */
export const MAX_INVALID_REPORTED = 20;

/** A discovery server node (`model.Node`). */
export interface DiscoveryNode {
  /** `host:port` of its HTTP API. */
  addr: string;
  /** 0 up, 1 lost. */
  status: number;
  /** Its zone. */
  zone: string;
}

/** What {@linkcode DiscoveryClient.register} sends. */
export interface InstanceInit {
  /** Service id, e.g. `goim.comet`. */
  appid: string;
  /** Instance id within the appid. */
  hostname: string;
  /** `scheme://host:port` addresses (at least one). */
  addrs: readonly string[];
  /** String metadata (sent as one JSON object). */
  metadata?: Readonly<Record<string, string>>;
  /** Free-form version (default ""). */
  version?: string;
}

/** Options of {@linkcode DiscoveryClient}. */
export interface DiscoveryClientOptions {
  /** `host:port` of the discovery servers' HTTP API (discovery.nodes); at least one. */
  nodes: readonly string[];
  /** Deploy environment of every instance (discovery.env). */
  env: string;
  /** Region sent with registrations (node.region). */
  region?: string;
  /** Zone of this process's registrations (node.zone). */
  zone?: string;
  /** Who polls (the server keys pending polls by it); default the host name. */
  hostname?: string;
  /** Timeout of one request to one node, ms ({@linkcode DEFAULT_REQUEST_TIMEOUT_MS}). */
  requestTimeoutMs?: number;
  /** Timeout of one poll, ms ({@linkcode DEFAULT_POLL_TIMEOUT_MS}). */
  pollTimeoutMs?: number;
  /** Largest answer body, bytes ({@linkcode DEFAULT_MAX_RESPONSE_BYTES}). */
  maxResponseBytes?: number;
  /** Picks the first node (default `Math.random`). */
  random?: () => number;
}

/** One appid of a {@linkcode DiscoveryClient.polls} call. */
export interface PollTarget {
  /** Service id. */
  appid: string;
  /** The `latestTimestamp` of the last answer for it; 0n for the first poll. */
  latestTimestamp: bigint;
}

interface Envelope {
  code: number;
  data: unknown;
}

const TIMESTAMP_KEY = /_timestamp$/;

/**
 * JSON.parse with every `*_timestamp` number read exactly into a bigint from
 * its source text (Go int64 nanoseconds do not fit a double).
 */
function parseJson(text: string): unknown {
  const reviver = (key: string, value: unknown, ctx?: { source?: string }) => {
    if (typeof value !== "number" || !TIMESTAMP_KEY.test(key)) return value;
    const src = ctx?.source;
    if (src !== undefined && /^-?\d{1,20}$/.test(src)) return BigInt(src);
    return Number.isSafeInteger(value) ? BigInt(value) : value;
  };
  return JSON.parse(text, reviver as (key: string, value: unknown) => unknown);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * One instance of an answer, checked field by field; a string saying what
 * is wrong when it is not shaped like discovery's.
 */
export function parseInstance(raw: unknown): Instance | string {
  if (!isObject(raw)) return "not an object";
  const L = INSTANCE_LIMITS;
  const text: Record<string, string> = {};
  for (const k of ["region", "zone", "env", "appid", "hostname", "version"]) {
    const v = raw[k] ?? "";
    if (typeof v !== "string" || v.length > L.maxStringChars) {
      return `${k} is not a string of at most ${L.maxStringChars} characters`;
    }
    text[k] = v;
  }
  if (text.hostname === "") return "hostname is empty";
  const addrs = raw.addrs ?? [];
  if (
    !Array.isArray(addrs) || addrs.length > L.maxAddrs ||
    !addrs.every((a) => typeof a === "string" && a.length <= L.maxStringChars)
  ) {
    return `addrs is not a list of at most ${L.maxAddrs} strings`;
  }
  const md = raw.metadata ?? {};
  if (!isObject(md)) return "metadata is not an object";
  const entries = Object.entries(md);
  if (entries.length > L.maxMetadataKeys) return `metadata has over ${L.maxMetadataKeys} keys`;
  const metadata: Record<string, string> = Object.create(null);
  for (const [k, v] of entries) {
    if (typeof v !== "string" || v.length > L.maxMetadataValueChars) {
      return `metadata ${
        JSON.stringify(k.slice(0, 64))
      } is not a string of at most ${L.maxMetadataValueChars} characters`;
    }
    metadata[k] = v;
  }
  const status = raw.status ?? 0;
  if (typeof status !== "number" || !Number.isInteger(status)) return "status is not an integer";
  const stamps: Record<string, bigint> = {};
  for (const k of ["reg", "up", "renew", "dirty", "latest"]) {
    const v = raw[`${k}_timestamp`] ?? 0n;
    if (typeof v !== "bigint") return `${k}_timestamp is not an integer`;
    stamps[k] = v;
  }
  return {
    region: text.region,
    zone: text.zone,
    env: text.env,
    appid: text.appid,
    hostname: text.hostname,
    addrs: addrs as string[],
    version: text.version,
    metadata,
    status,
    regTimestamp: stamps.reg,
    upTimestamp: stamps.up,
    renewTimestamp: stamps.renew,
    dirtyTimestamp: stamps.dirty,
    latestTimestamp: stamps.latest,
  };
}

/**
 * One appid's `{instances, latest_timestamp}`; throws a
 * {@linkcode DiscoveryError} when the object itself is malformed, leaves
 * out (and lists in `invalid`) the instances that are.
 */
export function parseInstancesInfo(raw: unknown): InstancesInfo {
  if (!isObject(raw)) throw new DiscoveryError("discovery: instances answer is not an object");
  const latest = raw.latest_timestamp ?? 0n;
  if (typeof latest !== "bigint") {
    throw new DiscoveryError("discovery: latest_timestamp is not an integer");
  }
  const zones = raw.instances ?? {};
  if (!isObject(zones)) throw new DiscoveryError("discovery: instances is not an object");
  const instances = new Map<string, Instance[]>();
  const invalid: string[] = [];
  let dropped = 0;
  for (const [zone, list] of Object.entries(zones)) {
    if (list === null) continue;
    if (!Array.isArray(list)) throw new DiscoveryError(`discovery: zone ${zone} is not a list`);
    const good: Instance[] = [];
    list.forEach((item, i) => {
      const ins = parseInstance(item);
      if (typeof ins !== "string") return void good.push(ins);
      dropped++;
      if (invalid.length < MAX_INVALID_REPORTED) invalid.push(`zone ${zone} #${i}: ${ins}`);
    });
    instances.set(zone, good);
  }
  if (dropped > invalid.length) {
    invalid.push(`... ${dropped - invalid.length} more`);
  }
  return { instances, latestTimestamp: latest, invalid };
}

/**
 * A client of one discovery cluster. Safe to share; calls run
 * concurrently. After {@linkcode DiscoveryClient.close} every call rejects.
 */
export class DiscoveryClient {
  readonly #nodes: readonly string[];
  readonly #env: string;
  readonly #region: string;
  readonly #zone: string;
  readonly #hostname: string;
  readonly #requestTimeoutMs: number;
  readonly #pollTimeoutMs: number;
  readonly #maxBytes: number;
  readonly #http: Deno.HttpClient;
  readonly #closing = new AbortController();
  #current: number;

  /** Checks the options; throws a `RangeError` naming a bad one. Opens nothing yet. */
  constructor(opts: DiscoveryClientOptions) {
    if (opts.nodes.length === 0) {
      throw new RangeError("discovery: no node address (discovery.nodes)");
    }
    for (const n of opts.nodes) {
      if (!/^[^\s/?#@]+:\d{1,5}$/.test(n)) {
        throw new RangeError(`discovery: node "${n}" is not a host:port address`);
      }
    }
    const positive = (name: string, v: number | undefined, dflt: number) => {
      const x = v ?? dflt;
      if (!(x > 0)) throw new RangeError(`discovery: ${name} must be > 0, got ${x}`);
      return x;
    };
    this.#nodes = [...opts.nodes];
    this.#env = opts.env;
    this.#region = opts.region ?? "";
    this.#zone = opts.zone ?? "";
    this.#hostname = opts.hostname ?? Deno.hostname();
    this.#requestTimeoutMs = positive(
      "requestTimeoutMs",
      opts.requestTimeoutMs,
      DEFAULT_REQUEST_TIMEOUT_MS,
    );
    this.#pollTimeoutMs = positive("pollTimeoutMs", opts.pollTimeoutMs, DEFAULT_POLL_TIMEOUT_MS);
    this.#maxBytes = positive(
      "maxResponseBytes",
      opts.maxResponseBytes,
      DEFAULT_MAX_RESPONSE_BYTES,
    );
    this.#current = Math.floor((opts.random ?? Math.random)() * this.#nodes.length) %
      this.#nodes.length;
    // Its own pool, so close() also closes the kept-alive connections.
    this.#http = Deno.createHttpClient({ poolMaxIdlePerHost: 4, poolIdleTimeout: 60_000 });
  }

  /** The deploy environment of this client's instances. */
  get env(): string {
    return this.#env;
  }

  /** The zone of this client's registrations. */
  get zone(): string {
    return this.#zone;
  }

  /** The region of this client's registrations. */
  get region(): string {
    return this.#region;
  }

  /** The node calls go to first right now (it moves on failures). */
  get currentNode(): string {
    return this.#nodes[this.#current];
  }

  /** Whether {@linkcode DiscoveryClient.close} was called. */
  get closed(): boolean {
    return this.#closing.signal.aborted;
  }

  /** Registers (or replaces) an instance, status up, in this client's zone and env. */
  async register(ins: InstanceInit): Promise<void> {
    if (ins.addrs.length === 0) throw new RangeError("discovery: register needs an address");
    const form = this.#identity(ins.appid, ins.hostname);
    for (const a of ins.addrs) form.append("addrs", a);
    form.set("version", ins.version ?? "");
    form.set("status", String(STATUS_UP));
    form.set("metadata", JSON.stringify(ins.metadata ?? {}));
    this.#expectOk("register", ins, await this.#call("POST", "register", form));
  }

  /** Renews an instance; a {@linkcode DiscoveryError} with code -404 means: register again. */
  async renew(appid: string, hostname: string): Promise<void> {
    const env = await this.#call("POST", "renew", this.#identity(appid, hostname));
    this.#expectOk("renew", { appid, hostname }, env);
  }

  /** Removes an instance at once; code -404 means it was not there. */
  async cancel(appid: string, hostname: string): Promise<void> {
    const env = await this.#call("POST", "cancel", this.#identity(appid, hostname));
    this.#expectOk("cancel", { appid, hostname }, env);
  }

  /** Replaces an instance's metadata keys (others stay) and sets it up, as the Go client's `Set`. */
  async set(appid: string, hostname: string, metadata: Readonly<Record<string, string>>) {
    const form = this.#identity(appid, hostname);
    form.set("status", String(STATUS_UP));
    form.set("metadata", JSON.stringify(metadata));
    this.#expectOk("set", { appid, hostname }, await this.#call("POST", "set", form));
  }

  /**
   * The up instances of `appid` in `zone` ("" = every zone, the default);
   * null when nobody registered it (-404).
   */
  async fetch(appid: string, opts: { zone?: string; status?: number } = {}) {
    const q = new URLSearchParams({
      env: this.#env,
      appid,
      status: String(opts.status ?? STATUS_UP),
    });
    if (opts.zone) q.set("zone", opts.zone);
    const env = await this.#call("GET", "fetch", q);
    if (env.code === ECODE.NOTHING_FOUND) return null;
    this.#expectOk("fetch", { appid }, env);
    return this.#info(env.data);
  }

  /**
   * Waits (the server holds it up to 30 s) until an appid changes after its
   * `latestTimestamp`; null when nothing changed (-304). An appid that
   * nobody registered makes the server answer -404 at once (thrown); the Go
   * client then retries a second later. `signal` aborts the wait.
   */
  async polls(
    targets: readonly PollTarget[],
    opts: { signal?: AbortSignal } = {},
  ): Promise<Map<string, InstancesInfo | null> | null> {
    if (targets.length === 0) throw new RangeError("discovery: polls needs an appid");
    const q = new URLSearchParams({ env: this.#env, hostname: this.#hostname });
    for (const t of targets) q.append("appid", t.appid);
    for (const t of targets) q.append("latest_timestamp", String(t.latestTimestamp));
    const env = await this.#call("GET", "polls", q, this.#pollTimeoutMs, opts.signal);
    if (env.code === ECODE.NOT_MODIFIED) return null;
    this.#expectOk("polls", { appid: targets.map((t) => t.appid).join(",") }, env);
    if (!isObject(env.data)) throw new DiscoveryError("discovery: polls answer is not an object");
    const out = new Map<string, InstancesInfo | null>();
    for (const [appid, info] of Object.entries(env.data)) {
      // The server answers null for an appid whose last instance just left.
      out.set(appid, info === null ? null : this.#info(info));
    }
    return out;
  }

  /** The discovery nodes of the cluster, as the node asked knows them. */
  async nodes(): Promise<DiscoveryNode[]> {
    const env = await this.#call("GET", "nodes", new URLSearchParams());
    this.#expectOk("nodes", {}, env);
    const list = env.data ?? [];
    if (!Array.isArray(list) || list.length > 4096) {
      throw new DiscoveryError("discovery: nodes answer is not a list");
    }
    return list.flatMap((n) =>
      isObject(n) && typeof n.addr === "string" && n.addr.length <= 1024
        ? [{
          addr: n.addr,
          status: typeof n.status === "number" ? n.status : 0,
          zone: typeof n.zone === "string" ? n.zone : "",
        }]
        : []
    );
  }

  /** Aborts the calls in flight and closes the connections; idempotent. */
  close(): void {
    if (this.closed) return;
    this.#closing.abort(new DiscoveryError("discovery: client closed"));
    this.#http.close();
  }

  #identity(appid: string, hostname: string): URLSearchParams {
    return new URLSearchParams({
      region: this.#region,
      zone: this.#zone,
      env: this.#env,
      appid,
      hostname,
    });
  }

  #info(data: unknown): InstancesInfo {
    return parseInstancesInfo(data);
  }

  #expectOk(op: string, what: { appid?: string; hostname?: string }, env: Envelope): void {
    if (env.code === ECODE.OK) return;
    const subject = [what.appid, what.hostname].filter(Boolean).join("/");
    throw new DiscoveryError(
      `discovery: ${op}${
        subject ? ` ${subject}` : ""
      } (env ${this.#env}, zone "${this.#zone}") answered code ${env.code}`,
      env.code,
    );
  }

  /** One call, trying each node once from the current one; the first node that answers becomes current. */
  async #call(
    method: "GET" | "POST",
    path: string,
    params: URLSearchParams,
    timeoutMs = this.#requestTimeoutMs,
    signal?: AbortSignal,
  ): Promise<Envelope> {
    const failures: string[] = [];
    for (let i = 0; i < this.#nodes.length; i++) {
      if (this.closed) throw new DiscoveryError("discovery: client closed");
      if (signal?.aborted) throw new DiscoveryError("discovery: call aborted", undefined);
      const at = this.#current;
      const node = this.#nodes[at];
      try {
        return await this.#once(node, method, path, params, timeoutMs, signal);
      } catch (e) {
        if (this.closed) throw new DiscoveryError("discovery: client closed");
        if (signal?.aborted) throw new DiscoveryError("discovery: call aborted");
        failures.push(`${node}: ${errorMessage(e)}`);
        // Move on only if no other call moved already.
        if (this.#current === at) this.#current = (at + 1) % this.#nodes.length;
      }
    }
    throw new DiscoveryError(`discovery: ${path} failed on every node (${failures.join("; ")})`);
  }

  async #once(
    node: string,
    method: "GET" | "POST",
    path: string,
    params: URLSearchParams,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Envelope> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const signals = [this.#closing.signal, timeout, ...(signal ? [signal] : [])];
    const url = `http://${node}/discovery/${path}`;
    let res: Response;
    try {
      res = await fetch(method === "GET" ? `${url}?${params}` : url, {
        method,
        client: this.#http,
        signal: AbortSignal.any(signals),
        ...(method === "POST"
          ? {
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: params.toString(),
          }
          : {}),
      });
    } catch (e) {
      throw new Error(timeout.aborted ? `no answer within ${timeoutMs} ms` : errorMessage(e));
    }
    let text: string;
    try {
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => {});
        throw new Error(`HTTP ${res.status}`);
      }
      text = await readCapped(res, this.#maxBytes);
    } catch (e) {
      throw new Error(timeout.aborted ? `no answer within ${timeoutMs} ms` : errorMessage(e));
    }
    let body: unknown;
    try {
      body = parseJson(text);
    } catch {
      throw new Error(`answer is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
    }
    if (!isObject(body) || typeof body.code !== "number" || !Number.isInteger(body.code)) {
      throw new Error(`answer has no integer code: ${JSON.stringify(text.slice(0, 80))}`);
    }
    return { code: body.code, data: body.data };
  }
}

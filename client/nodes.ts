/**
 * Other comets to reconnect to: logic's node list (`GET /goim/nodes/weighted`,
 * goim's NodesReply) or the app's own list, turned into comet URLs that use
 * the transport of the client's `url`, and the order in which a reconnecting
 * client tries them.
 *
 * A comet killed with its clients stays in the nodes answer until its
 * registry record expires (docs/SCALING.md, "Topology and failure bounds"),
 * so the client cannot trust the list alone: {@linkcode NodeRotation} puts
 * the comets that failed since the last successful auth behind the others.
 *
 * Everything a server controls is bounded: one nodes request takes at most
 * its timeout ({@linkcode DEFAULT_NODES_TIMEOUT_MS}), its body at most
 * {@linkcode MAX_NODES_REPLY_BYTES}, and at most
 * {@linkcode MAX_NODE_CANDIDATES} URLs are kept. A failed or malformed answer
 * is an error the caller falls back from, never a crash.
 *
 * Runs in Deno and browsers (`fetch`, `URL`, `AbortController` only).
 *
 * @module
 */

import { readCapped } from "../protocol/bytes.ts";
import { GoimClientError } from "./errors.ts";

/** Default bound on one nodes request, connect to last body byte (5 s). */
export const DEFAULT_NODES_TIMEOUT_MS = 5_000;

/** Largest nodes answer read (64 KiB; goim's answer for 5 comets is under 1 KiB). */
export const MAX_NODES_REPLY_BYTES = 64 * 1024;

/** Most candidate URLs kept from one answer or callback (logic sends at most 5). */
export const MAX_NODE_CANDIDATES = 64;

/**
 * The app's own list of comets: full URLs (`tcp://`, `ws://`, `wss://`),
 * best first. May be async; a throw or rejection counts as "no list".
 *
 * @example
 * ```ts
 * const list: NodeList = () => ["tcp://10.0.0.5:3101", "tcp://10.0.0.6:3101"];
 * ```
 */
export type NodeList = () => readonly (string | URL)[] | Promise<readonly (string | URL)[]>;

/**
 * Where a reconnecting client finds comets: the URL of logic's
 * `/goim/nodes/weighted` (with `?platform=` as the app wants it), or a
 * {@linkcode NodeList}.
 *
 * @example
 * ```ts
 * const fromLogic: NodeSource = "https://push.example.com/goim/nodes/weighted?platform=web";
 * const own: NodeSource = () => ["wss://c1.example.com/sub", "wss://c2.example.com/sub"];
 * ```
 */
export type NodeSource = string | URL | NodeList;

/**
 * The part of goim's NodesReply a client needs (logic answers
 * `{"code":0,"message":"","data":{...}}` with these fields in `data`).
 *
 * @example
 * ```ts
 * const reply: NodesReply = { nodes: ["10.0.0.5"], tcp_port: 3101, ws_port: 3102, wss_port: 3103 };
 * nodeUrls(reply, new URL("ws://any/sub")); // [ws://10.0.0.5:3102/sub]
 * ```
 */
export interface NodesReply {
  /** Host names or IPs of comets, best first. */
  nodes: string[];
  /** Port of the raw TCP listener on every node. */
  tcp_port: number;
  /** Port of the WebSocket listener. */
  ws_port: number;
  /** Port of the WSS listener. */
  wss_port: number;
}

/**
 * Comet URLs for the hosts of a nodes answer, on the transport of
 * `template`: its scheme, the answer's port for that scheme, and (WebSocket)
 * its path and query. Hosts that make no valid URL are skipped; an IPv6
 * address is bracketed. At most {@linkcode MAX_NODE_CANDIDATES}, duplicates
 * removed, in the answer's order.
 *
 * @example
 * ```ts
 * const reply = { nodes: ["10.0.0.5", "::1"], tcp_port: 3101, ws_port: 3102, wss_port: 3103 };
 * nodeUrls(reply, new URL("tcp://127.0.0.1:3101")).map(String);
 * // ["tcp://10.0.0.5:3101", "tcp://[::1]:3101"]
 * ```
 */
export function nodeUrls(reply: NodesReply, template: URL): URL[] {
  const port = template.protocol === "tcp:"
    ? reply.tcp_port
    : template.protocol === "ws:"
    ? reply.ws_port
    : template.protocol === "wss:"
    ? reply.wss_port
    : 0;
  if (!isPort(port)) return [];
  const rest = template.protocol === "tcp:" ? "" : `${template.pathname}${template.search}`;
  const out: URL[] = [];
  for (const node of reply.nodes) {
    const host = hostOf(node);
    const url = host === undefined
      ? undefined
      : parseUrl(`${template.protocol}//${host}:${port}${rest}`);
    if (url) out.push(url);
  }
  return dedupe(out);
}

/**
 * Fetches logic's nodes answer from `endpoint` and returns the comet URLs
 * for `template`'s transport ({@linkcode nodeUrls}). Rejects with a
 * `connect_failed` {@linkcode GoimClientError} naming the problem on a
 * network error, a timeout, a status other than 200, a body over
 * {@linkcode MAX_NODES_REPLY_BYTES}, JSON that is not the envelope, a code
 * other than 0, or an answer without any usable node.
 *
 * Use it to pick the first comet too: `new GoimClient({ url: (await
 * fetchNodeUrls(endpoint, template))[0], nodes: endpoint, ... })`.
 *
 * @example
 * ```ts
 * const urls = await fetchNodeUrls(
 *   "http://127.0.0.1:3111/goim/nodes/weighted?platform=deno",
 *   new URL("tcp://127.0.0.1:3101"),
 * );
 * ```
 */
export async function fetchNodeUrls(
  endpoint: string | URL,
  template: URL,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<URL[]> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_NODES_TIMEOUT_MS;
  const where = String(endpoint);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  const outer = opts.signal;
  const onAbort = () => ctl.abort();
  outer?.addEventListener("abort", onAbort);
  if (outer?.aborted) ctl.abort();
  const fail = (why: string, cause?: unknown) =>
    new GoimClientError("connect_failed", `nodes ${where}: ${why}`, { cause });
  try {
    let res: Response;
    try {
      res = await fetch(endpoint, { signal: ctl.signal, headers: { accept: "application/json" } });
    } catch (e) {
      throw fail(ctl.signal.aborted ? timeoutOrAbort(outer, timeoutMs) : String(e), e);
    }
    let body: string;
    try {
      body = await readCapped(res, MAX_NODES_REPLY_BYTES);
    } catch (e) {
      throw fail(
        ctl.signal.aborted ? timeoutOrAbort(outer, timeoutMs) : (e as Error).message,
        e,
      );
    }
    if (res.status !== 200) throw fail(`HTTP ${res.status}: ${body.slice(0, 200)}`);
    const reply = parseNodesEnvelope(body);
    if (typeof reply === "string") throw fail(reply);
    const urls = nodeUrls(reply, template);
    if (urls.length === 0) {
      throw fail(`no usable node for ${template.protocol}// in ${body.slice(0, 200)}`);
    }
    return urls;
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener("abort", onAbort);
  }
}

/**
 * The candidate URLs of `source` for `template`'s transport: a
 * {@linkcode NodeList}'s URLs (bounded, invalid ones and other schemes
 * skipped; a callback that has not answered within `timeoutMs` counts as
 * failed), or {@linkcode fetchNodeUrls} of an endpoint. Rejects with a
 * `connect_failed` {@linkcode GoimClientError} when there is no usable URL.
 *
 * @example
 * ```ts
 * await resolveNodes(() => ["tcp://10.0.0.5:3101"], new URL("tcp://127.0.0.1:3101"));
 * ```
 */
export async function resolveNodes(
  source: NodeSource,
  template: URL,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<URL[]> {
  if (typeof source !== "function") return await fetchNodeUrls(source, template, opts);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_NODES_TIMEOUT_MS;
  let list: readonly (string | URL)[];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    // A callback cannot be cancelled; past the bound its answer is ignored.
    list = await Promise.race([
      Promise.resolve().then(source),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (e) {
    throw new GoimClientError("connect_failed", `nodes callback failed: ${e}`, { cause: e });
  } finally {
    clearTimeout(timer);
  }
  const out: URL[] = [];
  for (const item of Array.isArray(list) ? list : []) {
    const url = parseUrl(String(item));
    if (url && ["tcp:", "ws:", "wss:"].includes(url.protocol)) out.push(url);
    if (out.length >= MAX_NODE_CANDIDATES) break;
  }
  if (out.length === 0) {
    throw new GoimClientError("connect_failed", "nodes callback returned no usable URL");
  }
  return dedupe(out);
}

/**
 * Which candidate a reconnect tries next. Comets that failed (a connection
 * that ended, an attempt that failed) since the last successful auth go
 * behind every other candidate, the longest-ago failure first, so attempt
 * after attempt walks through the list and a dead comet still listed is
 * tried only after every other one.
 *
 * @example
 * ```ts
 * const r = new NodeRotation();
 * const [a, b] = [new URL("tcp://10.0.0.5:3101"), new URL("tcp://10.0.0.6:3101")];
 * r.failed(a);
 * r.pick([a, b]); // b
 * r.succeeded(); // forget the failures
 * ```
 */
export class NodeRotation {
  #failures = new Map<string, number>();
  #seq = 0;

  /** Records that `url` failed now. */
  failed(url: URL): void {
    this.#failures.delete(url.href);
    this.#failures.set(url.href, ++this.#seq);
    // Bounded like the candidate list: the oldest failure is forgotten first.
    if (this.#failures.size > MAX_NODE_CANDIDATES) {
      this.#failures.delete(this.#failures.keys().next().value!);
    }
  }

  /** Forgets every failure (after a successful auth). */
  succeeded(): void {
    this.#failures.clear();
  }

  /** The candidate to try: the first that has not failed, else the one that failed longest ago. */
  pick(candidates: readonly URL[]): URL {
    if (candidates.length === 0) throw new RangeError("pick: no candidates");
    let best = candidates[0];
    let bestRank = this.#rank(best);
    for (const c of candidates) {
      const r = this.#rank(c);
      if (r < bestRank) {
        best = c;
        bestRank = r;
      }
    }
    return best;
  }

  #rank(url: URL): number {
    return this.#failures.get(url.href) ?? 0;
  }
}

// The envelope `{code, message, data: NodesReply}` as logic writes it, or why not.
function parseNodesEnvelope(body: string): NodesReply | string {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return `not JSON: ${body.slice(0, 200)}`;
  }
  const env = json as { code?: unknown; message?: unknown; data?: unknown };
  if (typeof env !== "object" || env === null) return "not a JSON object";
  if (env.code !== 0) return `code ${String(env.code)}: ${String(env.message ?? "")}`;
  const d = env.data as Partial<NodesReply> | null | undefined;
  if (typeof d !== "object" || d === null || !Array.isArray(d.nodes)) {
    return "data.nodes is not a list";
  }
  return {
    nodes: d.nodes.slice(0, MAX_NODE_CANDIDATES).filter((n): n is string => typeof n === "string"),
    tcp_port: Number(d.tcp_port),
    ws_port: Number(d.ws_port),
    wss_port: Number(d.wss_port),
  };
}

function timeoutOrAbort(outer: AbortSignal | undefined, timeoutMs: number): string {
  return outer?.aborted ? "aborted" : `no answer within ${timeoutMs} ms`;
}

function isPort(p: number): boolean {
  return Number.isInteger(p) && p >= 1 && p <= 65535;
}

// A node as a URL host: a host name or IPv4 as it is, an IPv6 address bracketed;
// undefined for anything else (a port, a path, credentials, spaces).
function hostOf(node: unknown): string | undefined {
  if (typeof node !== "string" || node === "") return undefined;
  if (node.includes(":")) {
    const bare = node.replace(/^\[(.*)\]$/, "$1");
    return /^[0-9a-fA-F:.]+$/.test(bare) ? `[${bare}]` : undefined;
  }
  return /^[A-Za-z0-9._-]+$/.test(node) ? node : undefined;
}

function parseUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

function dedupe(urls: URL[]): URL[] {
  const seen = new Set<string>();
  const out: URL[] = [];
  for (const u of urls) {
    if (seen.has(u.href) || out.length >= MAX_NODE_CANDIDATES) continue;
    seen.add(u.href);
    out.push(u);
  }
  return out;
}

/**
 * The node balancer behind `/goim/nodes/weighted` and the Nodes RPC (goim
 * internal/logic/balancer.go and nodes.go): which comets a client should
 * connect to, best first.
 *
 * ## Choice
 *
 * A comet is offered when its weight is above 0 and it advertises at least
 * one address (`comet.weight`, `comet.addrs`). Each offered comet gets an
 * effective weight: its `weight`, times `logic.nodes.region_weight` when its
 * region (`node.region` of the comet, in its registry record) is the
 * client's region (goim's gain for the client's region). Comets are ranked
 * by load per weight, `connections / effective weight`, lowest first (ties:
 * higher weight, then id), and the first five are returned (goim
 * `_maxNodes`).
 *
 * ## The client's region
 *
 * goim looks the client IP up in a geo-IP database. Here, in order
 * ({@linkcode NodeBalancer.clientRegion}):
 *
 * 1. the `region` the client asks for (`/goim/nodes/weighted?region=`; a
 *    client that knows where it is, or an app that tells it), 1 to 64 of
 *    `A-Z a-z 0-9 . _ -`, else a 400;
 * 2. the region of the most specific network of `logic.nodes.regions`
 *    holding the client's IP (infra/regions.ts);
 * 3. this logic's own `node.region`: the logic a client reached stands for
 *    its region, as DNS steers clients to a logic near them.
 *
 * The region only changes weights: comets elsewhere are still offered when
 * the client's region has none, or only loaded ones.
 *
 * Like goim's `chosen()`, each answer counts one expected connection against
 * the comet ranked first, until that comet's next registry record brings
 * its real count; so between registry updates consecutive clients spread
 * over the comets instead of all going to the one that was idlest.
 *
 * ## Flap protection
 *
 * The ranking uses a sticky load per comet, not the raw count: the sticky
 * value follows the real one only when they differ by more than
 * {@linkcode HYSTERESIS_RATIO} (5%) of it or {@linkcode HYSTERESIS_CONNS}
 * (16) connections, whichever is more. So comets whose loads jitter by a
 * few connections keep their order (clients do not bounce between nodes on
 * every registry update), while a real change of load moves them. Ties keep
 * the previous order.
 *
 * ## Reply
 *
 * goim's NodesReply: `nodes` holds `id + logic.nodes.host_domain` per comet
 * for platform `web` (browsers need names matching TLS certificates) and the
 * comets' advertised addresses otherwise; with no comet on offer it holds
 * `logic.nodes.default_domain`. Ports are `logic.nodes.*_port`; `heartbeat`
 * is `comet.heartbeat_interval` in seconds and `heartbeat_max`
 * `comet.heartbeat_max`; `backoff` is goim's default advice
 * ({@linkcode DEFAULT_BACKOFF}).
 *
 * The registry is read at most every {@linkcode NODES_REFRESH_MS}; when it
 * fails, the last list is used.
 *
 * @module
 */

import type { Backoff, NodesReply } from "../proto/messages.ts";
import type { Config } from "../infra/config.ts";
import type { Logger } from "../infra/log.ts";
import { isRegionName, MAX_REGION_CHARS, RegionMap } from "../infra/regions.ts";
import type { CometRecord, Registry } from "../infra/registry.ts";
import { ApiError, ResultCode } from "./result.ts";

/** Most nodes in one answer (goim `_maxNodes`). */
export const MAX_NODES = 5;

/** Relative load change that re-ranks a comet. */
export const HYSTERESIS_RATIO = 0.05;

/** Absolute load change (connections) that always re-ranks a comet. */
export const HYSTERESIS_CONNS = 16;

/** Longest the balancer reuses one registry listing. */
export const NODES_REFRESH_MS = 1000;

/** goim's default client reconnect backoff advice (conf.Default: seconds, factor, jitter). */
export const DEFAULT_BACKOFF: Readonly<Backoff> = Object.freeze({
  max_delay: 300,
  base_delay: 3,
  factor: 1.8,
  jitter: 1.3,
});

/** The platform that gets host names instead of addresses (goim model.PlatformWeb). */
export const PLATFORM_WEB = "web";

/** Options of {@linkcode NodeBalancer}. */
export interface NodeBalancerOptions {
  /** Where comets are listed. */
  registry: Registry;
  /** Configuration: `logic.nodes.*` (regions too), `node.region`, `comet.heartbeat_*`. */
  config: Pick<Config, "logic" | "node" | "comet">;
  /** Clock, ms since the epoch. */
  now?: () => number;
  /** Logger for registry failures. */
  log?: Logger;
}

interface Node {
  id: string;
  weight: number;
  region: string;
  addrs: string[];
  /** `updated` of the record the count came from. */
  updated: number;
  conns: number;
  /** Clients sent here since that record. */
  handed: number;
  /** Load the ranking uses (see flap protection). */
  sticky: number;
  /** Position in the previous answer, for stable ties. */
  rank: number;
}

/**
 * Ranks comets for new clients.
 *
 * @example
 * ```ts
 * declare const { registry, config }: NodeBalancerOptions;
 * const nodes = new NodeBalancer({ registry, config });
 * const reply = await nodes.weighted("web", "203.0.113.7");
 * reply.nodes; // ["comet-1.goim.io", ...]
 * ```
 */
export class NodeBalancer {
  #registry: Registry;
  #config: NodeBalancerOptions["config"];
  #regions: RegionMap;
  #now: () => number;
  #log?: Logger;
  #nodes = new Map<string, Node>();
  #fetchedAt = -Infinity;
  #fetching: Promise<void> | undefined;

  /** Creates a balancer; the registry is read on first use. */
  constructor(opts: NodeBalancerOptions) {
    this.#registry = opts.registry;
    this.#config = opts.config;
    // The configuration loader checked the entries; a hand-built config is checked here.
    this.#regions = RegionMap.parse(opts.config.logic.nodes.regions);
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log;
  }

  /**
   * goim NodesWeighted: the reply for a client on `platform` at `clientIP`
   * that may name its `region`; rejects with a 400 {@linkcode ApiError}
   * when that region is not a region name.
   */
  async weighted(platform: string, clientIP = "", region?: string): Promise<NodesReply> {
    const where = this.clientRegion(clientIP, region);
    await this.#refresh();
    const n = this.#config.logic.nodes;
    const ranked = this.#rank(where);
    const nodes = platform === PLATFORM_WEB
      ? ranked.map((c) => c.id + n.host_domain)
      : ranked.flatMap((c) => c.addrs);
    return {
      domain: n.default_domain,
      tcp_port: n.tcp_port,
      ws_port: n.ws_port,
      wss_port: n.wss_port,
      heartbeat: Math.floor(this.#config.comet.heartbeat_interval / 1000),
      nodes: nodes.length > 0 ? nodes : [n.default_domain],
      backoff: { ...DEFAULT_BACKOFF },
      heartbeat_max: this.#config.comet.heartbeat_max,
    };
  }

  /**
   * The client's region: `region` when given (throws a 400
   * {@linkcode ApiError} when it is not 1 to 64 of `A-Z a-z 0-9 . _ -`),
   * else the region of `clientIP` in `logic.nodes.regions`, else
   * `node.region`; "" for none.
   */
  clientRegion(clientIP: string, region?: string): string {
    if (region !== undefined && region !== "") {
      if (!isRegionName(region)) {
        throw new ApiError(
          ResultCode.BadRequest,
          `region: expected 1 to ${MAX_REGION_CHARS} of A-Z a-z 0-9 . _ -, got ${
            JSON.stringify(region.slice(0, MAX_REGION_CHARS + 1))
          }`,
        );
      }
      return region;
    }
    return this.#regions.regionOf(clientIP) ?? this.#config.node.region;
  }

  /** Every live comet, fresh from the registry (`/goim/nodes/instances`). */
  async instances(): Promise<CometRecord[]> {
    return await this.#registry.list();
  }

  #rank(region: string): Node[] {
    const gain = this.#config.logic.nodes.region_weight;
    const offered: { node: Node; score: number; weight: number }[] = [];
    for (const node of this.#nodes.values()) {
      const weight = node.weight * (region !== "" && node.region === region ? gain : 1);
      if (!(weight > 0) || node.addrs.length === 0) continue;
      const load = node.conns + node.handed;
      const slack = Math.max(HYSTERESIS_CONNS, node.sticky * HYSTERESIS_RATIO);
      if (Math.abs(load - node.sticky) > slack) node.sticky = load;
      offered.push({ node, score: node.sticky / weight, weight });
    }
    offered.sort((a, b) =>
      a.score - b.score || b.weight - a.weight || a.node.rank - b.node.rank ||
      (a.node.id < b.node.id ? -1 : 1)
    );
    for (const node of this.#nodes.values()) node.rank = Infinity;
    offered.forEach((o, i) => o.node.rank = i);
    if (offered.length > 0) offered[0].node.handed++;
    return offered.slice(0, MAX_NODES).map((o) => o.node);
  }

  #refresh(): Promise<void> {
    if (this.#now() - this.#fetchedAt < NODES_REFRESH_MS) return Promise.resolve();
    this.#fetching ??= this.#fetch().finally(() => this.#fetching = undefined);
    return this.#fetching;
  }

  async #fetch(): Promise<void> {
    let records: CometRecord[];
    try {
      records = await this.#registry.list();
    } catch (e) {
      this.#log?.warn("registry list failed; nodes answer from the last list", { error: e });
      return;
    }
    this.#fetchedAt = this.#now();
    const next = new Map<string, Node>();
    for (const r of records) {
      const old = this.#nodes.get(r.id);
      const fresh = !old || old.updated !== r.updated;
      const conns = fresh ? Math.max(0, r.connections) : old.conns;
      next.set(r.id, {
        id: r.id,
        weight: r.weight,
        region: r.region ?? "",
        addrs: r.addrs.filter((a) => a !== ""),
        updated: r.updated,
        conns,
        // A new record already counts the clients sent before it.
        handed: fresh ? 0 : old.handed,
        sticky: old ? old.sticky : conns,
        rank: old ? old.rank : Infinity,
      });
    }
    this.#nodes = next;
  }
}

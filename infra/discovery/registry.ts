/**
 * {@linkcode Registry} on bilibili discovery, goim's own registry, so that
 * this project's roles and goim's run side by side during a migration:
 * goim's job finds this project's comets, goim's comets find this project's
 * logic, and this project's job and logic find goim's comets.
 *
 * A comet is the instance goim's `cmd/comet/main.go` registers:
 *
 * | field       | value                                                                    |
 * | ----------- | ------------------------------------------------------------------------ |
 * | appid       | `goim.comet`                                                             |
 * | hostname    | the comet's id (`node.id`; goim: its host name, the `server` of routes)  |
 * | addrs       | `["grpc://<grpcAddr>"]` (comet.grpc.advertise, or derived from the bind) |
 * | region/zone | `node.region` / `node.zone` (the client's; a record's own region and zone must match them) |
 * | env         | `discovery.env`                                                          |
 * | metadata    | strings: `weight`, `offline` ("false"; "true" while draining), `addrs` (public client addresses, comma-joined), `conn_count`, `ip_count` |
 *
 * plus `tcp_port`, `ws_port`, `wss_port` and, while the comet drains,
 * `state` = "draining", this project's own keys (goim
 * ignores unknown metadata). goim registers without `conn_count` and
 * `ip_count` and sends them with `set` every 10 s; goim's logic skips an
 * instance until they parse, so they go out with the registration here.
 * The counts reach discovery with `set` whenever they changed at a
 * registration (the comet registers every comet.renew_online_interval,
 * 10 s like goim); renewals run every 30 s ({@linkcode RENEW_INTERVAL_MS}).
 *
 * `list()` reads every up `goim.comet` instance of `discovery.env`, every
 * zone, goim's comets as well as ours, each with its instance's region and
 * zone (left out when ""): the `grpc://` address is where job
 * dials (the last one, as goim's job takes), the metadata gives weight
 * (0 when `offline` is true or the weight does not parse: listed for job,
 * never offered to clients), public addresses and counts. goim's metadata
 * has no ports: they are 0, and the nodes API uses logic.nodes.*_port as
 * it always does. An instance without a usable `grpc://` address is left
 * out with a warning (goim's job refuses it too).
 *
 * A logic registers as `goim.logic` with `grpc://<logic.grpc.advertise or
 * derived>` and metadata `weight` = "10" (goim's default), see
 * {@linkcode DiscoveryRegistry.registerLogic}; goim's comets dial it through
 * their discovery resolver.
 *
 * Expiry: a record a comet stops refreshing is cancelled `ttlMs` after its
 * last registration by this process; if the process dies, discovery evicts
 * it 90–150 s after its last renewal (infra/discovery/keeper.ts).
 *
 * {@linkcode CompositeRegistry} is the mixed mode (`registry.engine =
 * "redis"` or `"memory"` with `discovery.register = true`): writes go to
 * both, reads come from the first.
 *
 * @example
 * ```ts
 * import type { Config } from "../config.ts";
 * import type { CometRecord } from "../registry.ts";
 * import { openDiscoveryRegistry } from "./registry.ts";
 * declare const config: Config; // registry.engine = "discovery"
 * declare const record: Omit<CometRecord, "updated">;
 * const registry = openDiscoveryRegistry(config, null);
 * await registry.register(record, 30_000);
 * console.log(await registry.list());
 * ```
 *
 * @module
 */

import { splitHostPort } from "../addr.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import type { CometRecord, Registry } from "../registry.ts";
import {
  DiscoveryClient,
  DiscoveryError,
  ECODE,
  type Instance,
  type InstanceInit,
} from "./client.ts";
import { InstanceKeeper, type KeeperOptions, RENEW_INTERVAL_MS } from "./keeper.ts";

/** goim's comet appid. */
export const COMET_APPID = "goim.comet";
/** goim's logic appid. */
export const LOGIC_APPID = "goim.logic";
/** Weight a logic registers with (goim's default; the Go resolver uses 10 for none too). */
export const LOGIC_WEIGHT = 10;
/** Shortest gap between two warnings about unusable instances, ms. */
export const INVALID_WARN_MS = 60_000;

/** Metadata keys: goim's (`internal/logic/model/metadata.go`) and this project's ports. */
export const META = Object.freeze({
  WEIGHT: "weight",
  OFFLINE: "offline",
  ADDRS: "addrs",
  CONN_COUNT: "conn_count",
  IP_COUNT: "ip_count",
  TCP_PORT: "tcp_port",
  WS_PORT: "ws_port",
  WSS_PORT: "wss_port",
  STATE: "state",
});

/**
 * A comet record read from discovery: the instance's region and zone come
 * along when it has them (the nodes API prefers comets in the client's
 * region). The same as {@linkcode CometRecord}, kept as a name.
 */
export type DiscoveredComet = CometRecord;

/** A logic's registration in discovery; cancel it before the gRPC server stops. */
export interface LogicRegistration {
  /** Stops renewing and removes the `goim.logic` instance. */
  cancel(): Promise<void>;
}

/** What a logic registers: its id and the gRPC address comets dial. */
export interface LogicInstanceInit {
  /** `node.id`, the instance's hostname. */
  id: string;
  /** `host:port` (logic.grpc.advertise, or derived from logic.grpc.bind). */
  grpcAddr: string;
}

/** A registry that can also announce a logic to goim's comets. */
export interface LogicRegistrar {
  /**
   * Registers a logic as `goim.logic` and keeps it registered (retrying in
   * the background while discovery is unreachable); resolves after the
   * first attempt, whatever its outcome (failures are logged).
   */
  registerLogic(info: LogicInstanceInit): Promise<LogicRegistration>;
}

/** Whether `registry` can register a logic (discovery, alone or mirrored). */
export function canRegisterLogic(registry: Registry): registry is Registry & LogicRegistrar {
  return typeof (registry as Partial<LogicRegistrar>).registerLogic === "function";
}

/** The `goim.comet` instance of a record, with goim's metadata. */
export function cometInstance(record: Omit<CometRecord, "updated">): InstanceInit {
  const draining = record.state === "draining";
  return {
    appid: COMET_APPID,
    hostname: record.id,
    addrs: [`grpc://${record.grpcAddr}`],
    metadata: {
      [META.WEIGHT]: String(record.weight),
      // A draining comet is offline to goim's logic too (it offers no offline comet).
      [META.OFFLINE]: String(draining),
      [META.ADDRS]: record.addrs.join(","),
      [META.CONN_COUNT]: String(record.connections),
      [META.IP_COUNT]: String(record.ips),
      [META.TCP_PORT]: String(record.tcpPort),
      [META.WS_PORT]: String(record.wsPort),
      [META.WSS_PORT]: String(record.wssPort),
      ...(draining ? { [META.STATE]: "draining" } : {}),
    },
  };
}

// Go strconv.ParseInt(s, 10, 32); NaN when it would fail.
function goInt32(s: string | undefined): number {
  if (s === undefined || !/^[+-]?\d{1,10}$/.test(s)) return NaN;
  const n = Number(s);
  return n >= -(2 ** 31) && n < 2 ** 31 ? n : NaN;
}

// Go strconv.ParseBool.
function goBool(s: string | undefined): boolean | undefined {
  if (s === undefined) return undefined;
  if (["1", "t", "T", "TRUE", "true", "True"].includes(s)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(s)) return false;
  return undefined;
}

function count(s: string | undefined): number {
  const n = goInt32(s);
  return n > 0 ? n : 0;
}

function port(s: string | undefined): number {
  const n = goInt32(s);
  return n > 0 && n <= 65535 ? n : 0;
}

/**
 * The comet record of a `goim.comet` instance (goim's or ours), or why it
 * cannot be used: job needs a `grpc://host:port` address.
 */
export function cometRecord(ins: Instance): DiscoveredComet | string {
  let grpcAddr = "";
  for (const a of ins.addrs) {
    // goim's job: url.Parse, scheme grpc, the last one wins.
    if (!a.startsWith("grpc://")) continue;
    const host = a.slice("grpc://".length).replace(/\/.*$/, "");
    try {
      if (splitHostPort(host).port > 0) grpcAddr = host;
    } catch {
      // not host:port: not usable
    }
  }
  if (grpcAddr === "") return `no grpc://host:port address in ${JSON.stringify(ins.addrs)}`;
  const md = ins.metadata;
  const weight = goInt32(md[META.WEIGHT]);
  const offline = goBool(md[META.OFFLINE]) === true;
  const stamp = ins.renewTimestamp > ins.dirtyTimestamp ? ins.renewTimestamp : ins.dirtyTimestamp;
  return {
    id: ins.hostname,
    grpcAddr,
    addrs: (md[META.ADDRS] ?? "").split(",").filter((a) => a !== ""),
    tcpPort: port(md[META.TCP_PORT]),
    wsPort: port(md[META.WS_PORT]),
    wssPort: port(md[META.WSS_PORT]),
    weight: !offline && weight > 0 ? weight : 0,
    connections: count(md[META.CONN_COUNT]),
    ips: count(md[META.IP_COUNT]),
    updated: Number(stamp / 1_000_000n),
    ...(ins.region !== "" ? { region: ins.region } : {}),
    ...(ins.zone !== "" ? { zone: ins.zone } : {}),
    ...(md[META.STATE] === "draining" ? { state: "draining" as const } : {}),
  };
}

/** Options of {@linkcode DiscoveryRegistry}. */
export interface DiscoveryRegistryOptions {
  /** The discovery client (its env, region and zone are the instances'). */
  client: DiscoveryClient;
  /** Close the client with the registry (default true). */
  ownsClient?: boolean;
  /** Where background failures, expiries and unusable instances are logged. */
  log?: Logger;
  /** Renewal period, ms ({@linkcode RENEW_INTERVAL_MS}; tests shorten it). */
  renewIntervalMs?: number;
  /** Retry delays of failed registrations, ms (infra/discovery/keeper.ts defaults). */
  retryBaseMs?: number;
  /** Longest retry delay, ms. */
  retryMaxMs?: number;
}

/** A {@linkcode Registry} on discovery. After `close()` every method rejects. */
export class DiscoveryRegistry implements Registry, LogicRegistrar {
  readonly #client: DiscoveryClient;
  readonly #owns: boolean;
  readonly #log?: Logger;
  readonly #keeperOpts: KeeperOptions;
  readonly #comets = new Map<string, InstanceKeeper>();
  readonly #logics = new Set<InstanceKeeper>();
  #closed = false;
  #lastInvalidWarn = -Infinity;

  /** Wraps a client; sends nothing yet. */
  constructor(opts: DiscoveryRegistryOptions) {
    this.#client = opts.client;
    this.#owns = opts.ownsClient ?? true;
    this.#log = opts.log?.child({ engine: "discovery" });
    this.#keeperOpts = {
      renewIntervalMs: opts.renewIntervalMs ?? RENEW_INTERVAL_MS,
      retryBaseMs: opts.retryBaseMs,
      retryMaxMs: opts.retryMaxMs,
      log: this.#log,
    };
  }

  /** The client underneath (its env, zone and current node). */
  get client(): DiscoveryClient {
    return this.#client;
  }

  /**
   * Registers the comet (first call), then sends changed metadata with
   * `set`, or registers again when its gRPC address changed. Renewals run
   * in the background; the instance is cancelled `ttlMs` after the last
   * call. Rejects when discovery cannot be reached (the comet retries at
   * its next interval).
   */
  async register(record: Omit<CometRecord, "updated">, ttlMs: number): Promise<void> {
    this.#check();
    if (!(ttlMs >= 1)) throw new RangeError(`ttlMs must be >= 1, got ${ttlMs}`);
    // discovery files an instance under the region and zone of the client that
    // registers and renews it; a record saying otherwise would be listed wrongly.
    for (const k of ["region", "zone"] as const) {
      const want = record[k] ?? "";
      if (want !== "" && want !== this.#client[k]) {
        throw new RangeError(
          `comet ${record.id}: ${k} ${JSON.stringify(want)} differs from the discovery ` +
            `client's ${JSON.stringify(this.#client[k])} (node.${k})`,
        );
      }
    }
    let keeper = this.#comets.get(record.id);
    if (!keeper) {
      keeper = new InstanceKeeper(this.#client, cometInstance(record), {
        ...this.#keeperOpts,
        // The comet registers every interval: it sees (and logs) each failure itself.
        retryUnregistered: false,
      });
      this.#comets.set(record.id, keeper);
    }
    keeper.expireIn(ttlMs);
    await keeper.update(cometInstance(record));
  }

  /** Cancels the comet's instance (one registered elsewhere too); unknown ids are fine. */
  async deregister(id: string): Promise<void> {
    this.#check();
    const keeper = this.#comets.get(id);
    this.#comets.delete(id);
    if (keeper) return await keeper.cancel();
    try {
      await this.#client.cancel(COMET_APPID, id);
    } catch (e) {
      if (!(e instanceof DiscoveryError && e.code === ECODE.NOTHING_FOUND)) throw e;
    }
  }

  /** Every up `goim.comet` instance of this env, every zone, as records ordered by id. */
  async list(): Promise<DiscoveredComet[]> {
    this.#check();
    const info = await this.#client.fetch(COMET_APPID);
    if (!info) return [];
    const invalid = [...info.invalid];
    const byId = new Map<string, DiscoveredComet>();
    for (const list of info.instances.values()) {
      for (const ins of list) {
        const rec = cometRecord(ins);
        if (typeof rec === "string") {
          invalid.push(`${ins.zone}/${ins.hostname}: ${rec}`);
          continue;
        }
        // The same hostname in two zones: the fresher one.
        const old = byId.get(rec.id);
        if (!old || rec.updated > old.updated) byId.set(rec.id, rec);
      }
    }
    if (invalid.length > 0) this.#warnInvalid(invalid);
    return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Registers a logic as `goim.logic` ({@linkcode LogicRegistrar.registerLogic}). */
  async registerLogic(info: LogicInstanceInit): Promise<LogicRegistration> {
    this.#check();
    const keeper = new InstanceKeeper(this.#client, {
      appid: LOGIC_APPID,
      hostname: info.id,
      addrs: [`grpc://${info.grpcAddr}`],
      metadata: { [META.WEIGHT]: String(LOGIC_WEIGHT) },
    }, this.#keeperOpts);
    this.#logics.add(keeper);
    await keeper.start();
    return {
      cancel: async () => {
        this.#logics.delete(keeper);
        await keeper.cancel();
      },
    };
  }

  /**
   * Stops every renewal and closes the client. Registrations are not
   * cancelled (deregister first): discovery evicts them by itself.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const k of [...this.#comets.values(), ...this.#logics]) k.stop();
    this.#comets.clear();
    this.#logics.clear();
    if (this.#owns) this.#client.close();
    return Promise.resolve();
  }

  #check(): void {
    if (this.#closed) throw new DiscoveryError("discovery registry is closed");
  }

  #warnInvalid(invalid: string[]): void {
    const now = performance.now();
    if (now - this.#lastInvalidWarn < INVALID_WARN_MS) return;
    this.#lastInvalidWarn = now;
    this.#log?.warn("discovery: goim.comet instances left out", {
      count: invalid.length,
      reasons: invalid.slice(0, 10),
    });
  }
}

/**
 * Writes to a primary registry and to discovery, reads from the primary:
 * `registry.engine = "redis"` (or memory) with `discovery.register = true`,
 * so this project's job and logic keep reading Redis while goim's find the
 * comets (and logics) in discovery.
 */
export class CompositeRegistry implements Registry, LogicRegistrar {
  readonly #primary: Registry;
  readonly #discovery: DiscoveryRegistry;

  /** `primary` is read; both are written. */
  constructor(primary: Registry, discovery: DiscoveryRegistry) {
    this.#primary = primary;
    this.#discovery = discovery;
  }

  /** Registers in both; rejects naming each that failed (the other still has it). */
  register(record: Omit<CometRecord, "updated">, ttlMs: number): Promise<void> {
    return this.#both("register", (r) => r.register(record, ttlMs));
  }

  /** Deregisters from both; rejects naming each that failed. */
  deregister(id: string): Promise<void> {
    return this.#both("deregister", (r) => r.deregister(id));
  }

  /** The primary's records. */
  list(): Promise<CometRecord[]> {
    return this.#primary.list();
  }

  /** Registers the logic in discovery. */
  registerLogic(info: LogicInstanceInit): Promise<LogicRegistration> {
    return this.#discovery.registerLogic(info);
  }

  /** Closes both. */
  close(): Promise<void> {
    return this.#both("close", (r) => r.close());
  }

  async #both(op: string, fn: (r: Registry) => Promise<void>): Promise<void> {
    const [a, b] = await Promise.allSettled([fn(this.#primary), fn(this.#discovery)]);
    const failed: string[] = [];
    const causes: unknown[] = [];
    for (const [name, r] of [["primary", a], ["discovery", b]] as const) {
      if (r.status === "rejected") {
        failed.push(`${name}: ${r.reason instanceof Error ? r.reason.message : r.reason}`);
        causes.push(r.reason);
      }
    }
    if (failed.length > 0) {
      throw new Error(`registry ${op} failed (${failed.join("; ")})`, { cause: causes[0] });
    }
  }
}

/** Options of {@linkcode openDiscoveryRegistry} (tests shorten the periods). */
export type OpenDiscoveryOptions = Omit<DiscoveryRegistryOptions, "client" | "ownsClient">;

/**
 * The registry the configuration asks for around discovery:
 * `registry.engine = "discovery"` gives a {@linkcode DiscoveryRegistry}
 * (`primary` is unused and may be null); another engine with
 * `discovery.register = true` gives a {@linkcode CompositeRegistry} over
 * `primary`; otherwise `primary` itself. Nothing is sent until used.
 */
export function openDiscoveryRegistry(
  config: Pick<Config, "discovery" | "node" | "registry">,
  primary: Registry | null,
  log?: Logger,
  opts: OpenDiscoveryOptions = {},
): Registry {
  const viaDiscovery = config.registry.engine === "discovery";
  if (!viaDiscovery && !config.discovery.register) {
    if (!primary) throw new Error(`registry.engine "${config.registry.engine}" needs its engine`);
    return primary;
  }
  const discovery = new DiscoveryRegistry({
    client: new DiscoveryClient({
      nodes: config.discovery.nodes,
      env: config.discovery.env,
      region: config.node.region,
      zone: config.node.zone,
      hostname: config.node.id,
    }),
    log,
    ...opts,
  });
  if (viaDiscovery) return discovery;
  if (!primary) throw new Error("discovery.register needs the registry.engine it mirrors");
  return new CompositeRegistry(primary, discovery);
}

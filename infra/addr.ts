/**
 * `host:port` addresses: the one parser ({@linkcode splitHostPort}) and the
 * one printer ({@linkcode joinHostPort}) every role uses for binds, dial
 * targets and log lines.
 *
 * The rules are those of the configuration's address keys (infra/config.ts
 * `addr`), so whatever the configuration accepts parses the same way here
 * and nothing else does:
 *
 * - an IPv6 host goes in brackets, `[::1]:3101`; a bare one (`::1:3101`)
 *   is refused, as it cannot be told from a port;
 * - an empty host, goim's `:3101`, means all interfaces (`0.0.0.0`);
 * - the port is 1 to 5 decimal digits, at most 65535 (0 = a free port);
 * - a host holds no white space, `/` or brackets.
 *
 * @module
 */

/** A parsed `host:port`. */
export interface HostPort {
  /** Host name or address, IPv6 without its brackets; `0.0.0.0` for an empty host. */
  hostname: string;
  /** 0 to 65535. */
  port: number;
}

const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/]*)):(\d{1,5})$/;

/**
 * Parses `host:port` by the rules in the module doc; throws a `TypeError`
 * naming the address otherwise.
 *
 * @example
 * ```ts
 * import { splitHostPort } from "./addr.ts";
 * splitHostPort("[::1]:3101"); // { hostname: "::1", port: 3101 }
 * splitHostPort(":3101"); // { hostname: "0.0.0.0", port: 3101 }
 * ```
 */
export function splitHostPort(addr: string): HostPort {
  const m = HOST_PORT.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (m === null || port > 65535) {
    throw new TypeError(
      `"${addr}" is not a host:port address (IPv6 in brackets, port 0-65535), e.g. "127.0.0.1:3101" or "[::1]:3101"`,
    );
  }
  const hostname = m[1] ?? m[2];
  return { hostname: hostname === "" ? "0.0.0.0" : hostname, port };
}

/**
 * Prints an address as `host:port`, with brackets around an IPv6 host, so
 * that {@linkcode splitHostPort} and dialers read it back.
 *
 * @example
 * ```ts
 * import { joinHostPort } from "./addr.ts";
 * joinHostPort({ hostname: "::1", port: 3101 }); // "[::1]:3101"
 * ```
 */
export function joinHostPort(addr: { readonly hostname: string; readonly port: number }): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/**
 * Whether `host` (as in a bind address, brackets allowed) accepts
 * connections only from this machine: `localhost`, `::1`, 127.0.0.0/8,
 * also as an IPv4-mapped IPv6 address. The exposure rules of the HTTP
 * listeners and of internal gRPC both decide with it.
 *
 * @example
 * ```ts
 * import { isLoopbackHost } from "./addr.ts";
 * isLoopbackHost("[::1]"); // true
 * isLoopbackHost("0.0.0.0"); // false
 * ```
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  return h === "localhost" || h === "::1" ||
    /^(?:::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/i.test(h);
}

/**
 * The host peers dial for a listener bound to `host`. A wildcard bind
 * (`0.0.0.0`, `::`, empty) is not dialable, so the machine's host name
 * stands in (goim's server id is the host name too), and `127.0.0.1` when
 * the host name cannot be read.
 *
 * @example
 * ```ts
 * import { dialableHost } from "./addr.ts";
 * dialableHost("10.0.0.5"); // "10.0.0.5"
 * dialableHost("0.0.0.0"); // the host name
 * ```
 */
export function dialableHost(host: string): string {
  if (host !== "0.0.0.0" && host !== "::" && host !== "") return host;
  try {
    return Deno.hostname();
  } catch {
    return "127.0.0.1";
  }
}

/**
 * The `host:port` a server bound to `bind` (listening on `port`, the real
 * one when the bind asked for port 0) tells peers to dial: `advertise` when
 * set (comet.grpc.advertise, logic.grpc.advertise), else the bind's host
 * made dialable ({@linkcode dialableHost}).
 *
 * @example
 * ```ts
 * import { advertisedAddr } from "./addr.ts";
 * advertisedAddr("", "127.0.0.1:0", 43109); // "127.0.0.1:43109"
 * advertisedAddr("comet-1.internal:3109", "0.0.0.0:3109", 3109); // "comet-1.internal:3109"
 * ```
 */
export function advertisedAddr(advertise: string, bind: string, port: number): string {
  if (advertise !== "") return advertise;
  return joinHostPort({ hostname: dialableHost(splitHostPort(bind).hostname), port });
}

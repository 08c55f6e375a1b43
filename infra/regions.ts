/**
 * Which region a client IP is in, from a table of networks
 * (`logic.nodes.regions`): `CIDR=region` entries such as `10.0.0.0/8=sh`
 * or `2001:db8::/32=bj`. goim asks a geo-IP database; an operator's own
 * table of client networks is what a deployment knows for sure.
 *
 * The most specific network holding the address wins (the longest prefix;
 * among equal ones, the first listed). Matching is node:net's `BlockList`,
 * one per entry: the runtime's own IPv4/IPv6 prefix matching, no parser of
 * ours. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a dual-stack
 * listener reports for an IPv4 client) is matched as the IPv4 address.
 * A lookup walks the entries, so the table is meant for tens or hundreds
 * of networks, not a geo-IP database's millions.
 *
 * @example
 * ```ts
 * import { RegionMap } from "./regions.ts";
 * const map = RegionMap.parse(["10.0.0.0/8=sh", "10.9.0.0/16=bj", "2001:db8::/32=bj"]);
 * map.regionOf("10.1.2.3"); // "sh"
 * map.regionOf("10.9.0.7"); // "bj": the more specific network
 * map.regionOf("192.0.2.1"); // undefined
 * ```
 *
 * @module
 */

import { BlockList, isIP } from "node:net";

/** Longest region name accepted, in a table entry or from a client. */
export const MAX_REGION_CHARS = 64;

const REGION_NAME = new RegExp(`^[A-Za-z0-9._-]{1,${MAX_REGION_CHARS}}$`);

/** Whether `s` can name a region: 1 to 64 of `A-Z a-z 0-9 . _ -`. */
export function isRegionName(s: string): boolean {
  return REGION_NAME.test(s);
}

interface Rule {
  list: BlockList;
  family: "ipv4" | "ipv6";
  bits: number;
  region: string;
}

/** An IP as `BlockList` wants it: zone and brackets dropped, IPv4-mapped IPv6 as IPv4. */
function normalise(ip: string): { address: string; family: "ipv4" | "ipv6" } | undefined {
  let a = ip.trim();
  if (a.startsWith("[") && a.endsWith("]")) a = a.slice(1, -1);
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) a = mapped[1];
  const v = isIP(a);
  return v === 4
    ? { address: a, family: "ipv4" }
    : v === 6
    ? { address: a, family: "ipv6" }
    : undefined;
}

/** Client networks and their regions; immutable once parsed. */
export class RegionMap {
  readonly #rules: readonly Rule[];

  private constructor(rules: Rule[]) {
    // Most specific first; a stable sort keeps the listed order among equals.
    this.#rules = rules.sort((a, b) => b.bits - a.bits);
  }

  /** How many networks the table holds. */
  get size(): number {
    return this.#rules.length;
  }

  /**
   * Parses `CIDR=region` entries (a bare address is its own /32 or /128).
   * Throws a RangeError naming the first entry that is not one.
   */
  static parse(entries: readonly string[]): RegionMap {
    const rules = entries.map((entry, i) => {
      const eq = entry.lastIndexOf("=");
      const net = entry.slice(0, eq).trim();
      const region = entry.slice(eq + 1).trim();
      const bad = (why: string) =>
        new RangeError(
          `entry ${i} ${JSON.stringify(entry)}: ${why} (want CIDR=region, e.g. "10.0.0.0/8=sh")`,
        );
      if (eq < 0) throw bad("no '='");
      if (!isRegionName(region)) {
        throw bad(`region must be 1 to ${MAX_REGION_CHARS} of A-Z a-z 0-9 . _ -`);
      }
      const slash = net.indexOf("/");
      const ip = normalise(slash < 0 ? net : net.slice(0, slash));
      if (!ip) throw bad(`${JSON.stringify(net)} is not an IPv4 or IPv6 network`);
      const max = ip.family === "ipv4" ? 32 : 128;
      const text = slash < 0 ? String(max) : net.slice(slash + 1);
      const bits = /^\d{1,3}$/.test(text) ? Number(text) : NaN;
      if (!(bits >= 0 && bits <= max)) throw bad(`prefix length must be 0 to ${max}`);
      const list = new BlockList();
      list.addSubnet(ip.address, bits, ip.family);
      return { list, family: ip.family, bits, region };
    });
    return new RegionMap(rules);
  }

  /** The region of the most specific network holding `ip`; undefined when none does or `ip` is not an IP. */
  regionOf(ip: string): string | undefined {
    if (this.#rules.length === 0) return undefined;
    const a = normalise(ip);
    if (!a) return undefined;
    for (const r of this.#rules) {
      if (r.family === a.family && r.list.check(a.address, a.family)) return r.region;
    }
    return undefined;
  }
}

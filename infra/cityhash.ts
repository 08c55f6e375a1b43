/**
 * CityHash32 (Google's CityHash v1.1, 32-bit variant), as goim computes it
 * with github.com/zhenjl/cityhash to pick the `ol_<server>` hash field of a
 * room: `CityHash32(utf8(room)) % 64` (infra/redis/sessions.ts).
 *
 * No npm package implements the 32-bit variant, so this is a port of the
 * algorithm (MIT-licensed, Google). All arithmetic is on uint32 via
 * `Math.imul` and `>>> 0`; words are read little-endian, as that package
 * does on every platform. Golden-tested against that package's output in
 * tests/cityhash_test.ts.
 *
 * @example
 * ```ts
 * import { cityHash32 } from "./cityhash.ts";
 * cityHash32(new TextEncoder().encode("live://1000")) % 64; // 43
 * ```
 *
 * @module
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const M = 0xe6546b64;

function fetch32(s: Uint8Array, i: number): number {
  return (s[i] | (s[i + 1] << 8) | (s[i + 2] << 16) | (s[i + 3] << 24)) >>> 0;
}

function rotate32(v: number, shift: number): number {
  return shift === 0 ? v >>> 0 : ((v >>> shift) | (v << (32 - shift))) >>> 0;
}

function bswap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

// MurmurHash3's 32-bit finaliser.
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mur(a: number, h: number): number {
  a = Math.imul(rotate32(Math.imul(a, C1), 17), C2);
  h = rotate32((h ^ a) >>> 0, 19);
  return (Math.imul(h, 5) + M) >>> 0;
}

function len0to4(s: Uint8Array): number {
  let b = 0;
  let c = 9;
  for (const byte of s) {
    // The reference reads `signed char`: bytes >= 0x80 count as negative.
    b = (Math.imul(b, C1) + ((byte << 24) >> 24)) >>> 0;
    c = (c ^ b) >>> 0;
  }
  return fmix(mur(b, mur(s.length, c)));
}

function len5to12(s: Uint8Array): number {
  const n = s.length;
  let a = n;
  let b = Math.imul(n, 5) >>> 0;
  let c = 9;
  const d = b;
  a = (a + fetch32(s, 0)) >>> 0;
  b = (b + fetch32(s, n - 4)) >>> 0;
  c = (c + fetch32(s, (n >>> 1) & 4)) >>> 0;
  return fmix(mur(c, mur(b, mur(a, d))));
}

function len13to24(s: Uint8Array): number {
  const n = s.length;
  const a = fetch32(s, (n >>> 1) - 4);
  const b = fetch32(s, 4);
  const c = fetch32(s, n - 8);
  const d = fetch32(s, n >>> 1);
  const e = fetch32(s, 0);
  const f = fetch32(s, n - 4);
  return fmix(mur(f, mur(e, mur(d, mur(c, mur(b, mur(a, n)))))));
}

// rotate32(fetch32(s, i) * c1, 17) * c2, the mixing step of the long path.
function mix(s: Uint8Array, i: number): number {
  return Math.imul(rotate32(Math.imul(fetch32(s, i), C1), 17), C2) >>> 0;
}

function step(h: number, a: number): number {
  return (Math.imul(rotate32((h ^ a) >>> 0, 19), 5) + M) >>> 0;
}

/**
 * CityHash32 of `s` as an unsigned 32-bit integer; equals
 * `cityhash.CityHash32(s, uint32(len(s)))` of github.com/zhenjl/cityhash.
 * Inputs of 4 GiB or more are not supported (the length is a uint32 there).
 */
export function cityHash32(s: Uint8Array): number {
  const n = s.length;
  if (n <= 4) return len0to4(s);
  if (n <= 12) return len5to12(s);
  if (n <= 24) return len13to24(s);

  let h = step(step(n, mix(s, n - 4)), mix(s, n - 16));
  let g = Math.imul(C1, n) >>> 0;
  let f = g;
  g = step(step(g, mix(s, n - 8)), mix(s, n - 12));
  f = (Math.imul(rotate32((f + mix(s, n - 20)) >>> 0, 19), 5) + M) >>> 0;

  // Whole 20-byte blocks from the start; the tail was folded in above.
  const iters = Math.floor((n - 1) / 20);
  for (let i = 0, p = 0; i < iters; i++, p += 20) {
    const a0 = mix(s, p);
    const a1 = fetch32(s, p + 4);
    const a2 = mix(s, p + 8);
    const a3 = mix(s, p + 12);
    const a4 = fetch32(s, p + 16);
    h = (Math.imul(rotate32((h ^ a0) >>> 0, 18), 5) + M) >>> 0;
    f = Math.imul(rotate32((f + a1) >>> 0, 19), C1) >>> 0;
    g = (Math.imul(rotate32((g + a2) >>> 0, 18), 5) + M) >>> 0;
    h = step(h, (a3 + a1) >>> 0);
    g = Math.imul(bswap32((g ^ a4) >>> 0), 5) >>> 0;
    h = bswap32((h + Math.imul(a4, 5)) >>> 0);
    f = (f + a0) >>> 0;
    // permute3(f, h, g): swap(f, h) then swap(f, g).
    [f, h, g] = [g, f, h];
  }

  g = Math.imul(rotate32(Math.imul(rotate32(g, 11), C1), 17), C1) >>> 0;
  f = Math.imul(rotate32(Math.imul(rotate32(f, 11), C1), 17), C1) >>> 0;
  h = (Math.imul(rotate32((h + g) >>> 0, 19), 5) + M) >>> 0;
  h = Math.imul(rotate32(h, 17), C1) >>> 0;
  h = (Math.imul(rotate32((h + f) >>> 0, 19), 5) + M) >>> 0;
  h = Math.imul(rotate32(h, 17), C1) >>> 0;
  return h;
}

/**
 * A small seeded PRNG for reproducible property and fuzz tests.
 *
 * @module
 */

/**
 * mulberry32: a fast 32-bit generator; the same seed gives the same stream.
 *
 * @example
 * ```ts
 * const rand = mulberry32(42);
 * rand(); // a number in [0, 1)
 * ```
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Reads the test seed from `PROTOCOL_SEED` (a number, or `random`), else
 * `fallback`; works without --allow-env.
 */
export function seedFromEnv(fallback: number): number {
  let env: string | undefined;
  try {
    env = Deno.env.get("PROTOCOL_SEED");
  } catch {
    env = undefined; // no --allow-env: use the fixed seed
  }
  if (env === "random") return (Math.random() * 2 ** 32) >>> 0;
  if (env !== undefined && env !== "") return Number(env) >>> 0;
  return fallback;
}

/** Seeded helpers over {@linkcode mulberry32}; tests extend it with biased draws. */
export class Rng {
  /** The next number in [0, 1). */
  readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = mulberry32(seed);
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** True with probability `p`. */
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
  /** A byte in [0, 255]. */
  byte(): number {
    return (this.next() * 256) | 0;
  }
  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.byte();
    return b;
  }
}

/**
 * Byte mutations shared by the fuzz tests (tests/protocol_fuzz_test.ts,
 * tests/ws_codec_fuzz_test.ts). Each returns a new array and draws from
 * `rng` in a fixed order, so a seed replays the same inputs.
 *
 * @module
 */

import type { Rng } from "./prng.ts";

/**
 * Flips one random bit in each of 1–4 random bytes of `b` (non-empty).
 *
 * @example
 * ```ts
 * import { Rng } from "./prng.ts";
 * import { flipBits } from "./mutate.ts";
 * flipBits(new Rng(1), new Uint8Array(8));
 * ```
 */
export function flipBits(rng: Rng, b: Uint8Array): Uint8Array {
  const out = b.slice();
  for (let k = rng.int(1, 4); k > 0; k--) out[rng.int(0, out.length - 1)] ^= 1 << rng.int(0, 7);
  return out;
}

/**
 * `b` with `ins` inserted at index `at`.
 *
 * @example
 * ```ts
 * import { spliceIn } from "./mutate.ts";
 * spliceIn(new Uint8Array([1, 4]), 1, new Uint8Array([2, 3])); // [1, 2, 3, 4]
 * ```
 */
export function spliceIn(b: Uint8Array, at: number, ins: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length + ins.length);
  out.set(b.subarray(0, at));
  out.set(ins, at);
  out.set(b.subarray(at), at + ins.length);
  return out;
}

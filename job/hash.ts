/**
 * Lane choice: a fast string hash, so one key (or room, or operation) always
 * lands in the same lane and keeps its order.
 *
 * @module
 */

import { fnv1a32Utf16 } from "../infra/hash.ts";

/**
 * The lane of `s` among `lanes`: FNV-1a over its UTF-16 code units (no
 * encoding step: the lane only needs a stable, well-spread number, not any
 * wire compatibility).
 *
 * @example
 * ```ts
 * laneOf("user-42", 32) === laneOf("user-42", 32); // true, and 0 <= it < 32
 * ```
 */
export function laneOf(s: string, lanes: number): number {
  return fnv1a32Utf16(s) % lanes;
}

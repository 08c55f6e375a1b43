/**
 * Lane choice: a fast string hash, so one key (or room, or operation) always
 * lands in the same lane and keeps its order.
 *
 * @module
 */

/**
 * FNV-1a over the UTF-16 code units of `s` (no encoding step: the lane
 * only needs a stable, well-spread number, not any wire compatibility).
 *
 * @example
 * ```ts
 * laneOf("user-42", 32) === laneOf("user-42", 32); // true, and 0 <= it < 32
 * ```
 */
export function laneOf(s: string, lanes: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % lanes;
}

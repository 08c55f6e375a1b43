/**
 * Wording shared by the key converters and the loader: how a wrong value is
 * quoted, and the "did you mean" guess for a misspelt key or enum value.
 *
 * @module
 */

/** A value as quoted in a message: strings JSON-quoted, long lists cut, tables named. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) {
    const s = JSON.stringify(v);
    return s.length > 60 ? s.slice(0, 57) + "...]" : s;
  }
  if (v instanceof Date) return `a date (${v.toISOString()})`;
  if (typeof v === "object") return "a table";
  if (typeof v === "string") return JSON.stringify(v);
  return String(v);
}

function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

const squash = (s: string) => s.toLowerCase().replace(/[_\-]/g, "");

/**
 * The candidate closest to `input`, or undefined if none is close: same
 * letters ignoring case and `_` (goim's camelCase), a path ending the same
 * way (goim's `[tcp]` for `comet.tcp`), or a small edit distance.
 */
export function suggest(input: string, candidates: Iterable<string>): string | undefined {
  const list = [...candidates];
  const sq = squash(input);
  const same = list.find((c) => squash(c) === sq);
  if (same) return same;
  const suffix = list.filter((c) => squash(c).endsWith("." + sq));
  if (suffix.length === 1) return suffix[0];
  const prefix = list.filter((c) => sq.length >= 3 && squash(c).startsWith(sq));
  if (prefix.length === 1) return prefix[0];
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of list) {
    const d = levenshtein(sq, squash(c));
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(2, Math.floor(input.length / 5)) ? best : undefined;
}

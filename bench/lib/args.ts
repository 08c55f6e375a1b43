/**
 * Command-line flags of the bench scripts (bench/*.ts), which take few
 * enough options not to need a parser: `--name=value` or `--name value`.
 *
 * @module
 */

/**
 * The value of flag `--name` (the first given), or `def`.
 *
 * @example
 * ```ts
 * arg("n", "10000", ["--n=2000"]); // "2000"
 * arg("engine", "memory", ["--engine", "kafka"]); // "kafka"
 * ```
 */
export function arg(name: string, def: string, argv: readonly string[] = Deno.args): string {
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  if (eq !== undefined) return eq.slice(name.length + 3);
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : def;
}

/** Whether the bare flag `--name` is given. */
export function flag(name: string, argv: readonly string[] = Deno.args): boolean {
  return argv.includes(`--${name}`);
}

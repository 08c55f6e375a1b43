/**
 * The process's file-descriptor budget, read from the process itself:
 * its open-files limit (`/proc/self/limits`, the soft limit, which is the
 * one `open`/`accept` hit; Deno raises it to the hard limit at start) and
 * how many descriptors are open (`/proc/self/fd`).
 *
 * Why a budget: when a process runs out of descriptors, everything in it
 * fails at once (HTTP API, admin, gRPC, Redis, Kafka), and a listener that
 * saw EMFILE may never accept again (see comet/socket.ts). A role that
 * holds many client sockets refuses new clients once open descriptors reach
 * the limit minus a reserve, so the rest of the process always has some.
 *
 * Counting is cheap but not free, so it is not done per accept: the caller
 * {@linkcode FdBudget.sample}s now and then (the comet on its periodic
 * sweep), telling how many descriptors it owns and tracks itself (its live
 * client sockets); the budget keeps the rest ("descriptors owned by others")
 * and answers {@linkcode FdBudget.fits} from that plus the caller's live
 * count, which it knows exactly at every accept.
 *
 * Counting: on Linux 6.2 and later `stat("/proc/self/fd").size` is the
 * number of open descriptors (one syscall, no descriptor needed, so it works
 * at EMFILE too); older kernels list the directory, which costs ≈2 µs per
 * open descriptor and is therefore done at most as often as keeps it under
 * 1 % of a core. Without /proc (not Linux) the budget is unlimited.
 *
 * @example
 * ```ts
 * import { FdBudget } from "./fds.ts";
 * const budget = new FdBudget({ reserve: 256 });
 * let clients = 0;
 * budget.sample(clients); // on a timer
 * if (budget.fits(clients)) clients++; // at accept: one more socket
 * ```
 *
 * @module
 */

const LIMITS_FILE = "/proc/self/limits";
const FD_DIR = "/proc/self/fd";
// Listing /proc/self/fd: re-done at most every 100 × its last duration.
const LIST_COST_FACTOR = 100;
// The limit can change at run time (prlimit on a live process): re-read it this often.
const LIMIT_REREAD_MS = 10_000;

/**
 * The soft open-files limit of this process (`Max open files` in
 * `/proc/self/limits`): `Infinity` when unlimited, `null` when it cannot be
 * read (no /proc).
 *
 * @example
 * ```ts
 * readFdLimit(); // 1024, 1048576, ... on Linux
 * ```
 */
export function readFdLimit(path: string = LIMITS_FILE): number | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return null;
  }
  return parseFdLimit(text);
}

/**
 * The soft limit in the text of a `/proc/<pid>/limits` file (see
 * {@linkcode readFdLimit}).
 *
 * @example
 * ```ts
 * parseFdLimit("Max open files            1024                 4096                 files\n"); // 1024
 * ```
 */
export function parseFdLimit(text: string): number | null {
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  if (line === undefined) return null;
  const soft = line.slice("Max open files".length).trim().split(/\s+/)[0];
  if (soft === "unlimited") return Infinity;
  const n = Number(soft);
  return Number.isInteger(n) && n > 0 ? n : null;
}

function isExhausted(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === "EMFILE" || code === "ENFILE";
}

// Linux ≥ 6.2 reports the count as the directory's size (0 before); null when unknown.
function statFdCount(): number | null {
  try {
    const size = Deno.statSync(FD_DIR).size;
    return size > 0 ? size : null;
  } catch {
    return null;
  }
}

function listFdCount(): number | "exhausted" | null {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(FD_DIR)) n++;
    return n - 1; // the listing's own descriptor
  } catch (e) {
    return isExhausted(e) ? "exhausted" : null;
  }
}

/**
 * Open descriptors of this process, `"exhausted"` when counting needed a
 * descriptor and there was none (the process is at its limit), or `null`
 * when unknown (no /proc).
 *
 * @example
 * ```ts
 * countOpenFds(); // e.g. 27
 * ```
 */
export function countOpenFds(): number | "exhausted" | null {
  return statFdCount() ?? listFdCount();
}

/** Options of {@linkcode FdBudget}. */
export interface FdBudgetOptions {
  /** Descriptors kept free for the rest of the process (e.g. comet.limits.fd_reserve). */
  reserve: number;
  /** Reads the open-files limit (default {@linkcode readFdLimit}); for tests. */
  limit?: () => number | null;
  /** Counts open descriptors (default {@linkcode countOpenFds}); for tests. */
  count?: () => number | "exhausted" | null;
}

/** What {@linkcode FdBudget.stats} reports. */
export interface FdStats {
  /** Open descriptors (at the last sample, corrected by the caller's live count). */
  open: number;
  /** The process's open-files limit; `null` when unknown or unlimited. */
  limit: number | null;
  /** Descriptors kept free for the rest of the process. */
  reserve: number;
}

/**
 * A descriptor budget: whether `owned + extra` more descriptors fit under
 * the limit minus the reserve, given the descriptors others hold at the
 * last {@linkcode FdBudget.sample}.
 *
 * @example
 * ```ts
 * const b = new FdBudget({ reserve: 2, limit: () => 10, count: () => 5 });
 * b.sample(3);  // 5 open, 3 of them the caller's: others hold 2
 * b.fits(3);    // 2 + 3 + 1 <= 10 - 2: true
 * b.fits(6);    // 2 + 6 + 1 > 8: false
 * ```
 */
export class FdBudget {
  /** Descriptors kept free for the rest of the process. */
  readonly reserve: number;
  readonly #readLimit: () => number | null;
  readonly #count: () => number | "exhausted" | null;
  #limit = Infinity;
  #limitAt = -Infinity;
  #others = 0;
  #sampledAt = -Infinity;
  #listNotBefore = -Infinity;

  /** Creates the budget and reads the limit; call {@linkcode FdBudget.sample} before relying on it. */
  constructor(opts: FdBudgetOptions) {
    this.reserve = opts.reserve;
    this.#readLimit = opts.limit ?? readFdLimit;
    this.#count = opts.count ?? (() => this.#defaultCount());
    this.#rereadLimit(performance.now());
  }

  /** The open-files limit in force (`Infinity` when unknown or unlimited). */
  get limit(): number {
    return this.#limit;
  }

  /** Milliseconds since the last sample that counted descriptors. */
  get sampleAge(): number {
    return performance.now() - this.#sampledAt;
  }

  /**
   * Counts open descriptors; `owned` of them are the caller's (it tracks
   * them itself and passes the live number to {@linkcode FdBudget.fits}).
   * Cheap enough for a timer of about a second; listing the directory
   * (kernels before 6.2) is throttled here, so calling it more often is safe.
   */
  sample(owned: number): void {
    const now = performance.now();
    if (now - this.#limitAt >= LIMIT_REREAD_MS) this.#rereadLimit(now);
    const open = this.#count();
    if (open === null) return;
    this.#sampledAt = now;
    // Out of descriptors: whatever others hold is the rest of the limit.
    const total = open === "exhausted" ? this.#limit : open;
    this.#others = Math.max(0, total - owned);
  }

  /** Whether `extra` more descriptors (default one) fit next to the caller's `owned`. */
  fits(owned: number, extra = 1): boolean {
    return this.#others + owned + extra <= this.#limit - this.reserve;
  }

  /** Open descriptors, limit and reserve, for health reports. */
  stats(owned: number): FdStats {
    return {
      open: this.#others + owned,
      limit: Number.isFinite(this.#limit) ? this.#limit : null,
      reserve: this.reserve,
    };
  }

  #rereadLimit(now: number): void {
    this.#limitAt = now;
    // Unreadable (no /proc, or no descriptor to read it with): keep what was known.
    const l = this.#readLimit();
    if (l !== null) this.#limit = l;
  }

  #defaultCount(): number | "exhausted" | null {
    const n = statFdCount();
    if (n !== null) return n;
    const now = performance.now();
    if (now < this.#listNotBefore) return null; // keep the previous sample
    const listed = listFdCount();
    this.#listNotBefore = now + (performance.now() - now) * LIST_COST_FACTOR;
    return listed;
  }
}

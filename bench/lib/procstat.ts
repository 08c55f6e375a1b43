/**
 * The one `/proc` reader of the benchmarks (bench/*.ts and the load
 * generator in scripts/bench/): resident memory and CPU time of any process
 * by pid (the server under test, the swarm workers, the driver itself), load
 * averages and the machine's memory and kernel. Everything returns null
 * rather than throwing when the process is gone or `/proc` is unavailable,
 * so a reading never breaks a run; a bench that cannot do without a figure
 * says so itself.
 *
 * @module
 */

/**
 * Clock ticks per second of `/proc/<pid>/stat` times. The kernel's USER_HZ,
 * which is 100 on every Linux architecture Deno ships for (it is an ABI
 * constant, unlike the internal HZ), so no `getconf CLK_TCK` call is needed.
 */
export const CLOCK_TICKS_PER_SEC = 100;

/**
 * VmRSS of `pid` in bytes, or null.
 *
 * @example
 * ```ts
 * await readRssBytes(Deno.pid); // e.g. 52_428_800
 * ```
 */
export async function readRssBytes(pid: number): Promise<number | null> {
  try {
    const s = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = s.match(/VmRSS:\s+(\d+)\s+kB/);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * User + system CPU time of `pid` in seconds (utime + stime of
 * `/proc/<pid>/stat`, all threads), or null.
 *
 * @example
 * ```ts
 * declare const pid: number;
 * const a = await readCpuSeconds(pid);
 * // … later: (b - a) / wallSeconds = cores used
 * ```
 */
export async function readCpuSeconds(pid: number): Promise<number | null> {
  try {
    const s = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The command name (field 2) may hold spaces and parentheses: split after the last ")".
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    const ticks = Number(rest[11]) + Number(rest[12]);
    return Number.isFinite(ticks) ? ticks / CLOCK_TICKS_PER_SEC : null;
  } catch {
    return null;
  }
}

/** A CPU reading of several processes at one instant. */
export interface CpuSnapshot {
  /** `performance.now()` when taken. */
  at: number;
  /** CPU seconds per pid (null when unreadable). */
  cpu: Map<number, number | null>;
}

/**
 * Reads the CPU time of every pid at (nearly) the same instant.
 *
 * @example
 * ```ts
 * declare const serverPid: number;
 * const a = await cpuSnapshot([serverPid, Deno.pid]);
 * const b = await cpuSnapshot([serverPid, Deno.pid]);
 * coresUsed(a, b, serverPid); // e.g. 0.83
 * ```
 */
export async function cpuSnapshot(pids: number[]): Promise<CpuSnapshot> {
  const values = await Promise.all(pids.map((p) => readCpuSeconds(p)));
  return { at: performance.now(), cpu: new Map(pids.map((p, i) => [p, values[i]])) };
}

/**
 * Cores `pid` used between two snapshots (CPU seconds / wall seconds), or
 * null. The tick resolution is 10 ms, so intervals under a second are coarse.
 */
export function coresUsed(a: CpuSnapshot, b: CpuSnapshot, pid: number): number | null {
  const x = a.cpu.get(pid), y = b.cpu.get(pid);
  const wall = (b.at - a.at) / 1000;
  if (x == null || y == null || wall <= 0) return null;
  return (y - x) / wall;
}

/** Load averages (1, 5, 15 min) from `/proc/loadavg`, or null. */
export async function readLoadAvg(): Promise<[number, number, number] | null> {
  try {
    const [a, b, c] = (await Deno.readTextFile("/proc/loadavg")).split(" ").map(Number);
    return [a, b, c];
  } catch {
    return null;
  }
}

/**
 * The process that actually serves, given the pid a user had at hand: a
 * shell or wrapper (`./scripts/deno …&`'s `$!` may be a subshell) is followed
 * down through its only child, at most 4 levels, until a `deno` process.
 * Reading a wrapper's RSS and CPU would report ≈ 0 for a busy server.
 *
 * @example
 * ```ts
 * await resolveServerPid(906); // 908: bash → deno
 * ```
 */
export async function resolveServerPid(pid: number): Promise<number> {
  let p = pid;
  for (let hop = 0; hop < 4; hop++) {
    try {
      const comm = (await Deno.readTextFile(`/proc/${p}/comm`)).trim();
      if (comm === "deno") return p;
      const kids = (await Deno.readTextFile(`/proc/${p}/task/${p}/children`)).trim().split(/\s+/)
        .filter(Boolean);
      if (kids.length !== 1) return p;
      p = Number(kids[0]);
    } catch {
      return p;
    }
  }
  return p;
}

/** MemTotal of `/proc/meminfo` in bytes, or null. */
export async function readMemTotalBytes(): Promise<number | null> {
  try {
    const m = (await Deno.readTextFile("/proc/meminfo")).match(/MemTotal:\s+(\d+) kB/);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The kernel release (`/proc/sys/kernel/osrelease`), or "" when unreadable. */
export async function readKernelRelease(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/sys/kernel/osrelease")).trim();
  } catch {
    return "";
  }
}

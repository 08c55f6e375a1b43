/**
 * The one child-process harness of the benchmarks (bench/*.ts and the load
 * generator in scripts/bench/): a Deno child spawned with the running Deno
 * binary, commands as JSON lines on its stdin (`{"cmd":…}`), events as JSON
 * lines on its stdout (`{"ev":…}`). Both sides read lines with
 * {@linkcode readLines}. Every child is ended by its own pid (`child.kill`),
 * never by name.
 *
 * Two ways to treat the child's stderr: kept as a tail for error messages
 * (the load generator, whose children are many and chatty), or passed
 * through (`echo`, bench scripts a person watches).
 *
 * @module
 */

/** A parsed JSON event line from a child. */
export type ChildEvent = Record<string, unknown> & { ev?: string };

/** What {@linkcode JsonLinesChild.next} waits for: an `ev` name or a predicate. */
export type EventMatch = string | ((e: ChildEvent) => boolean);

/** Options of {@linkcode JsonLinesChild}. */
export interface ChildOptions {
  /** Name used in messages (`worker 2`, `server`). */
  name: string;
  /** Arguments after `deno` (e.g. `["run", "-A", "scripts/bench/swarm.ts"]`). */
  args: string[];
  /** Working directory. */
  cwd?: string;
  /**
   * Pass the child's stderr through to this process's, and print its stray
   * (non-JSON) stdout lines there with the name as prefix; no tail is kept.
   * Default: stderr is captured as a tail and the child runs with NO_COLOR.
   */
  echo?: boolean;
  /**
   * Keep the events no waiter claimed, for a later {@linkcode JsonLinesChild.next}
   * (in order): for children that only answer and announce, never for ones
   * that stream (the swarm's ticks would pile up).
   */
  keepUnclaimed?: boolean;
  /** Called for every event line, in order. */
  onEvent?: (ev: ChildEvent) => void;
  /** Called for every captured stderr line (after it is added to the tail). */
  onStderr?: (line: string) => void;
}

/**
 * The non-blank lines of a byte stream, as they complete (a last line
 * without a newline included). Ends quietly when the stream errors: it
 * ended with its process.
 *
 * @example
 * ```ts
 * declare function handle(event: unknown): void;
 * for await (const line of readLines(Deno.stdin.readable)) handle(JSON.parse(line));
 * ```
 */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) yield line;
      }
    }
  } catch {
    // the stream ended with the process
  }
  if (buf.trim()) yield buf;
}

/**
 * A Deno child process speaking JSON lines.
 *
 * @example
 * ```ts
 * const c = new JsonLinesChild({ name: "worker 0", args: ["run", "-A", "scripts/bench/swarm.ts"] });
 * await c.next("ready", 30_000);
 * const pong = await c.ask({ cmd: "ping", id: 1 }, "pong", 10_000);
 * await c.stop();
 * ```
 */
export class JsonLinesChild {
  /** Name used in messages. */
  readonly name: string;
  /** The spawned process. */
  readonly child: Deno.ChildProcess;
  /** Resolves with the exit status. */
  readonly exited: Promise<Deno.CommandStatus>;
  #writer: WritableStreamDefaultWriter<Uint8Array> | null;
  #echo: boolean;
  #onEvent?: (ev: ChildEvent) => void;
  #waiters: { pred: (e: ChildEvent) => boolean; resolve: (e: ChildEvent) => void }[] = [];
  #unclaimed: ChildEvent[] | null;
  #tail: string[] = [];
  #status: Deno.CommandStatus | null = null;

  /** Spawns `deno <args>` now. */
  constructor(opts: ChildOptions) {
    this.name = opts.name;
    this.#echo = opts.echo ?? false;
    this.#onEvent = opts.onEvent;
    this.#unclaimed = opts.keepUnclaimed ? [] : null;
    this.child = new Deno.Command(Deno.execPath(), {
      args: opts.args,
      cwd: opts.cwd,
      stdin: "piped",
      stdout: "piped",
      stderr: this.#echo ? "inherit" : "piped",
      env: this.#echo ? undefined : { NO_COLOR: "1" },
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    const readers = [this.#read(this.child.stdout, (line) => this.#onLine(line))];
    if (!this.#echo) {
      readers.push(this.#read(this.child.stderr, (line) => {
        this.#tail.push(line);
        if (this.#tail.length > 40) this.#tail.shift();
        opts.onStderr?.(line);
      }));
    }
    this.exited = this.child.status.then(async (s) => {
      this.#status = s;
      await Promise.all(readers);
      // Nobody will answer now: wake the waiters with a synthetic event.
      for (const w of this.#waiters.splice(0)) w.resolve({ ev: "exit", code: s.code });
      return s;
    });
  }

  /** The child's pid. */
  get pid(): number {
    return this.child.pid;
  }

  /** The exit status once exited, else null. */
  get status(): Deno.CommandStatus | null {
    return this.#status;
  }

  /** The last captured stderr lines (up to 40; none with `echo`). */
  tail(n = 15): string {
    return this.#tail.slice(-n).join("\n");
  }

  async #read(stream: ReadableStream<Uint8Array>, fn: (line: string) => void): Promise<void> {
    for await (const line of readLines(stream)) fn(line);
  }

  #onLine(line: string): void {
    let ev: unknown;
    try {
      ev = JSON.parse(line);
    } catch {
      ev = null;
    }
    if (typeof ev !== "object" || ev === null || Array.isArray(ev)) {
      // Not ours (a stray print): keep it for diagnostics.
      if (this.#echo) console.error(`[${this.name}] ${line.trim()}`);
      else this.#tail.push(`stdout: ${line}`);
      return;
    }
    const e = ev as ChildEvent;
    this.#onEvent?.(e);
    const i = this.#waiters.findIndex((w) => w.pred(e));
    if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(e);
    else this.#unclaimed?.push(e);
  }

  /**
   * The next event matching `match` (rejects after `timeoutMs`, or when the
   * child exits first). Without `keepUnclaimed`, only events from now on:
   * wait before the event can come ({@linkcode ask} does).
   */
  next(match: EventMatch, timeoutMs = 600_000): Promise<ChildEvent> {
    const pred = typeof match === "string" ? (e: ChildEvent) => e.ev === match : match;
    const kept = this.#unclaimed?.findIndex(pred) ?? -1;
    if (kept >= 0) return Promise.resolve(this.#unclaimed!.splice(kept, 1)[0]);
    if (this.#status) {
      return Promise.reject(new Error(`${this.name} exited (code ${this.#status.code})`));
    }
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined = undefined;
      const w = {
        pred,
        resolve: (e: ChildEvent) => {
          clearTimeout(timer);
          if (e.ev === "exit" && !pred(e)) {
            reject(
              new Error(`${this.name} exited (code ${e.code}) while waited on:\n${this.tail()}`),
            );
          } else resolve(e);
        },
      };
      timer = setTimeout(() => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new Error(`${this.name}: no answer within ${timeoutMs} ms\n${this.tail()}`));
      }, timeoutMs);
      this.#waiters.push(w);
    });
  }

  /**
   * Sends `cmd` and resolves with the answer matching `match`, waited for
   * before the command leaves so a quick answer is not missed. Rejects like
   * {@linkcode next}, or at once when stdin is already closed.
   */
  async ask(cmd: unknown, match: EventMatch, timeoutMs?: number): Promise<ChildEvent> {
    const answer = this.next(match, timeoutMs);
    // Handled from now on: an early rejection (the child exited) must not
    // count as unhandled while the command is being written.
    answer.catch(() => {});
    if (!(await this.send(cmd))) {
      throw new Error(`${this.name}: stdin closed, cannot send ${JSON.stringify(cmd)}`);
    }
    return await answer;
  }

  /** Writes one command line; false if stdin is already closed. */
  async send(cmd: unknown): Promise<boolean> {
    if (!this.#writer) return false;
    try {
      await this.#writer.write(new TextEncoder().encode(JSON.stringify(cmd) + "\n"));
      return true;
    } catch {
      return false;
    }
  }

  /** Closes stdin (the children treat EOF as "stop"). */
  async closeStdin(): Promise<void> {
    const w = this.#writer;
    this.#writer = null;
    if (!w) return;
    try {
      await w.close();
    } catch {
      // already closed
    }
  }

  /**
   * Ends the child: sends `farewell` if given (a child that exits on a
   * command), closes stdin, waits `graceMs`, then SIGTERM, then SIGKILL
   * after as long again. Resolves with the exit status.
   */
  async stop(graceMs = 10_000, farewell?: unknown): Promise<Deno.CommandStatus> {
    if (farewell !== undefined) await this.send(farewell);
    await this.closeStdin();
    const kill = (sig: Deno.Signal) => {
      try {
        this.child.kill(sig);
      } catch {
        // already gone
      }
    };
    const t1 = setTimeout(() => kill("SIGTERM"), graceMs);
    const t2 = setTimeout(() => kill("SIGKILL"), 2 * graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(t1);
      clearTimeout(t2);
    }
  }
}

/**
 * Runs a bench script as `deno run -A [--v8-flags=…] script args`, its
 * stderr passed through (`echo`), its unclaimed events kept.
 *
 * @example
 * ```ts
 * const server = spawnScript("comet", "bench/comet_bench_server.ts", [], ["--expose-gc"]);
 * const ready = await server.next("ready");
 * ```
 */
export function spawnScript(
  name: string,
  script: string,
  args: string[] = [],
  v8Flags: string[] = [],
): JsonLinesChild {
  const flags = v8Flags.length ? [`--v8-flags=${v8Flags.join(",")}`] : [];
  return new JsonLinesChild({
    name,
    args: ["run", "-A", ...flags, script, ...args],
    echo: true,
    keepUnclaimed: true,
  });
}

/**
 * Resolves after `ms`: benchmarks let processes settle and hold timed
 * phases with it; it never stands in for an awaited answer.
 */
export function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

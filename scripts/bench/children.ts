/**
 * Child processes of the bench tool (the embedded server and the swarm
 * workers): spawned with the running Deno binary, JSON lines on stdout
 * (events) and stdin (commands), stderr kept as a tail for error messages.
 * Every child is ended by its own pid (`child.kill`), never by name.
 *
 * @module
 */

/** A parsed JSON event line from a child. */
export type ChildEvent = Record<string, unknown> & { ev?: string };

/** Options of {@linkcode JsonLinesChild}. */
export interface ChildOptions {
  /** Name used in messages (`worker 2`, `server`). */
  name: string;
  /** Arguments after `deno` (e.g. `["run", "-A", "scripts/bench/swarm.ts"]`). */
  args: string[];
  /** Working directory. */
  cwd?: string;
  /** Called for every event line, in order. */
  onEvent?: (ev: ChildEvent) => void;
  /** Called for every stderr line (after it is added to the tail). */
  onStderr?: (line: string) => void;
}

/**
 * A Deno child process speaking JSON lines.
 *
 * @example
 * ```ts
 * const c = new JsonLinesChild({ name: "worker 0", args: ["run", "-A", "scripts/bench/swarm.ts"] });
 * await c.next((e) => e.ev === "ready", 30_000);
 * await c.send({ cmd: "close" });
 * await c.exited;
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
  #onEvent?: (ev: ChildEvent) => void;
  #waiters: { pred: (e: ChildEvent) => boolean; resolve: (e: ChildEvent) => void }[] = [];
  #tail: string[] = [];
  #status: Deno.CommandStatus | null = null;
  #readers: Promise<void>[];

  /** Spawns `deno <args>` now. */
  constructor(opts: ChildOptions) {
    this.name = opts.name;
    this.#onEvent = opts.onEvent;
    this.child = new Deno.Command(Deno.execPath(), {
      args: opts.args,
      cwd: opts.cwd,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.#readers = [
      this.#lines(this.child.stdout, (line) => this.#onLine(line)),
      this.#lines(this.child.stderr, (line) => {
        this.#tail.push(line);
        if (this.#tail.length > 40) this.#tail.shift();
        opts.onStderr?.(line);
      }),
    ];
    this.exited = this.child.status.then(async (s) => {
      this.#status = s;
      await Promise.all(this.#readers);
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

  /** The last stderr lines (up to 40). */
  tail(n = 15): string {
    return this.#tail.slice(-n).join("\n");
  }

  async #lines(stream: ReadableStream<Uint8Array>, fn: (line: string) => void): Promise<void> {
    let buf = "";
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) fn(line);
        }
      }
    } catch {
      // the stream ended with the process
    }
    if (buf.trim()) fn(buf);
  }

  #onLine(line: string): void {
    let ev: ChildEvent;
    try {
      ev = JSON.parse(line);
    } catch {
      // Not ours (a stray print): keep it with stderr for diagnostics.
      this.#tail.push(`stdout: ${line}`);
      return;
    }
    this.#onEvent?.(ev);
    const i = this.#waiters.findIndex((w) => w.pred(ev));
    if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(ev);
  }

  /**
   * The next event matching `pred` (rejects after `timeoutMs`, or when the
   * child exits first).
   */
  next(pred: (e: ChildEvent) => boolean, timeoutMs: number): Promise<ChildEvent> {
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
   * Ends the child: closes stdin, waits `graceMs`, then SIGTERM, then SIGKILL
   * after as long again. Resolves with the exit status.
   */
  async stop(graceMs = 10_000): Promise<Deno.CommandStatus> {
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

/**
 * Child processes for the comet benchmarks: spawn a Deno script, send it
 * JSON commands on stdin, await its JSON events on stdout, read its RSS.
 *
 * @module
 */

/** A benchmark child process speaking JSON lines. */
export class BenchProc {
  readonly child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #events: Record<string, unknown>[] = [];
  #wake: (() => void) | null = null;
  #ended = false;
  readonly name: string;

  /** Runs `deno run -A [flags] script args` with the current Deno binary. */
  constructor(name: string, script: string, args: string[] = [], v8Flags: string[] = []) {
    this.name = name;
    const flags = v8Flags.length ? [`--v8-flags=${v8Flags.join(",")}`] : [];
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...flags, script, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.#read();
  }

  /** The child's pid. */
  get pid(): number {
    return this.child.pid;
  }

  /** Sends one command. */
  async send(cmd: Record<string, unknown>): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(JSON.stringify(cmd) + "\n"));
  }

  /** Waits for the next event named `event` (events are consumed in order). */
  async next(event: string, timeoutMs = 600_000): Promise<Record<string, unknown>> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      const i = this.#events.findIndex((e) => e.event === event);
      if (i >= 0) return this.#events.splice(i, 1)[0];
      if (this.#ended) throw new Error(`${this.name} exited before "${event}"`);
      if (performance.now() > deadline) throw new Error(`${this.name}: no "${event}" in time`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#wake = r;
        timer = setTimeout(r, 1000);
      });
      clearTimeout(timer);
    }
  }

  /** Asks the child to exit and waits for it (killing it after `graceMs`). */
  async exit(graceMs = 30_000): Promise<void> {
    try {
      await this.send({ cmd: "exit" });
      await this.#writer.close();
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, graceMs);
    await this.child.status;
    clearTimeout(timer);
  }

  async #read(): Promise<void> {
    let buf = "";
    for await (const chunk of this.child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line.startsWith("{")) this.#events.push(JSON.parse(line));
        else if (line) console.error(`[${this.name}] ${line}`);
      }
      this.#wake?.();
    }
    this.#ended = true;
    this.#wake?.();
  }
}

/** Resident set size of a process in bytes, from /proc/PID/status. */
export async function rssOf(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Resolves after `ms` (benchmarks let processes settle; never used for synchronisation). */
export function settle(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

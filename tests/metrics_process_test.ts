/**
 * The process metrics (infra/process_metrics.ts) are true: a child process
 * (tests/fixtures/process_metrics_child.ts) changes what they measure —
 * opens files, allocates, spins, runs out of descriptors — and each scrape is
 * compared with the child's /proc files read from here, where the reading
 * cannot disturb what it reads.
 *
 * Linux only (the series come from /proc), like the role processes.
 */

import assert from "node:assert/strict";
import { parseProcStatus } from "../infra/process_metrics.ts";
import { parseFdLimit } from "../infra/fds.ts";

const CHILD = new URL("./fixtures/process_metrics_child.ts", import.meta.url).pathname;
const MIB = 1 << 20;

/** The value of an unlabelled series in a text exposition; undefined when absent. */
function valueOf(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

/** Like {@linkcode valueOf}, but the series must be there and finite. */
function must(text: string, name: string): number {
  const v = valueOf(text, name);
  assert.ok(v !== undefined && Number.isFinite(v), `${name} = ${v} in:\n${text}`);
  return v;
}

interface Child {
  pid: number;
  /** Sends one command, resolves with its JSON answer. */
  send(line: string): Promise<Record<string, unknown>>;
  /** Sends `scrape`, resolves with the exposition text. */
  scrape(line?: string): Promise<string>;
  close(): Promise<void>;
}

/** Starts the child (`wrap`: a command line to run it under, e.g. prlimit). */
async function startChild(
  opts: { permissions?: string[]; wrap?: string[] } = {},
): Promise<Child> {
  const deno = [Deno.execPath(), "run", ...(opts.permissions ?? ["--allow-all"]), CHILD];
  const argv = [...(opts.wrap ?? []), ...deno];
  const proc = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  const writer = proc.stdin.getWriter();
  const lines = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const next = async (): Promise<string> => {
    for (;;) {
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        return line;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error("the child exited");
      buf += value;
    }
  };
  const enc = new TextEncoder();
  const send = async (line: string) => {
    await writer.write(enc.encode(line + "\n"));
    return JSON.parse(await next()) as Record<string, unknown>;
  };
  assert.equal(JSON.parse(await next()), "ready");
  return {
    pid: proc.pid,
    send,
    async scrape(line = "scrape") {
      const r = await send(line);
      assert.equal(typeof r.text, "string", JSON.stringify(r));
      return r.text as string;
    },
    async close() {
      await writer.close();
      await lines.cancel();
      await proc.status;
    },
  };
}

/** Runs `fn` on a fresh child and ends the child however `fn` ends. */
async function withChild(
  fn: (child: Child) => Promise<void>,
  opts?: Parameters<typeof startChild>[0],
): Promise<void> {
  const child = await startChild(opts);
  try {
    await fn(child);
  } finally {
    await child.close();
  }
}

const proc = (pid: number, file: string) => Deno.readTextFileSync(`/proc/${pid}/${file}`);

// Between two commands the child's stdin read holds a duplicate of fd 0 (Deno reads stdin on
// a thread), which it does not hold while it scrapes: listings from here may show one more.
function openFdsOf(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

// utime + stime of /proc/<pid>/stat, in seconds (USER_HZ from getconf, 100 on Linux).
async function cpuSecondsOf(pid: number): Promise<number> {
  const out = await new Deno.Command("getconf", { args: ["CLK_TCK"] }).output();
  const hz = Number(new TextDecoder().decode(out.stdout).trim());
  // The command name (field 2) may hold spaces: count fields after its ')'.
  const fields = proc(pid, "stat").slice(proc(pid, "stat").lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / hz;
}

/** Asserts the scraped RSS is the child's VmRSS (give or take 5 %) and returns it. */
function rssMatches(text: string, pid: number): number {
  const rss = must(text, "process_resident_memory_bytes");
  const vmRss = parseProcStatus(proc(pid, "status")).VmRSS;
  assert.ok(near(rss, vmRss, 0.05, 2 * MIB), `RSS ${rss} vs VmRSS ${vmRss}`);
  return rss;
}

// Within `tolerance` (a fraction) of `want`, or within `slack` absolute.
function near(got: number, want: number, tolerance: number, slack = 0): boolean {
  return Math.abs(got - want) <= Math.max(want * tolerance, slack);
}

Deno.test("process metrics: descriptors match /proc and follow opens, closes and prlimit", () =>
  withChild(async (child) => {
    let text = await child.scrape();
    const before = must(text, "process_open_fds");
    assert.ok(near(openFdsOf(child.pid), before, 0, 1), `${before} = entries of /proc/<pid>/fd`);
    assert.equal(must(text, "process_max_fds"), parseFdLimit(proc(child.pid, "limits")));

    await child.send("open 100");
    text = await child.scrape();
    const opened = must(text, "process_open_fds");
    assert.ok(opened >= before + 100, `100 files opened: ${before} -> ${opened}`);
    assert.ok(near(openFdsOf(child.pid), opened, 0, 1));

    await child.send("close");
    assert.equal(must(await child.scrape(), "process_open_fds"), before);

    // The limit is re-read: prlimit on the live process shows at the next scrape.
    const lowered = must(text, "process_max_fds") - 7;
    const p = await new Deno.Command("prlimit", {
      args: ["--pid", String(child.pid), `--nofile=${lowered}:`],
    }).output();
    assert.ok(p.success, new TextDecoder().decode(p.stderr));
    assert.equal(must(await child.scrape(), "process_max_fds"), lowered);
  }));

Deno.test("process metrics: memory matches /proc/<pid>/status and rises by what is allocated", () =>
  withChild(async (child) => {
    let text = await child.scrape();
    const rss = rssMatches(text, child.pid);
    const status = parseProcStatus(proc(child.pid, "status"));
    assert.ok(near(must(text, "process_virtual_memory_bytes"), status.VmSize, 0.01, 4 * MIB));
    assert.ok(near(must(text, "process_heap_bytes"), status.VmData, 0.02, 4 * MIB));
    const external = must(text, "nodejs_external_memory_bytes");

    await child.send("alloc 100");
    text = await child.scrape();
    const rss2 = rssMatches(text, child.pid);
    assert.ok(rss2 - rss >= 95 * MIB, `100 MiB written: RSS ${rss} -> ${rss2}`);
    assert.ok(must(text, "process_virtual_memory_bytes") >= 100 * MIB);
    const external2 = must(text, "nodejs_external_memory_bytes");
    assert.ok(external2 - external >= 95 * MIB, `external ${external} -> ${external2}`);
  }));

Deno.test("process metrics: the V8 heap series rise with live objects and add up", () =>
  withChild(async (child) => {
    let text = await child.scrape();
    const used = must(text, "nodejs_heap_size_used_bytes");
    await child.send("objects 500000");
    text = await child.scrape();
    const used2 = must(text, "nodejs_heap_size_used_bytes");
    // 500 000 objects of two fields plus a string each: well over 20 MB.
    assert.ok(used2 - used >= 20e6, `heap used ${used} -> ${used2}`);
    assert.ok(must(text, "nodejs_heap_size_total_bytes") >= used2);
    const spaces = (kind: string) =>
      text.split("\n").filter((l) => l.startsWith(`nodejs_heap_space_size_${kind}_bytes{space=`))
        .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
    // The spaces are read a moment after the totals: allow what one collection can move.
    assert.ok(near(spaces("used"), used2, 0.05), `sum of spaces ${spaces("used")} vs ${used2}`);
    assert.ok(near(spaces("total"), must(text, "nodejs_heap_size_total_bytes"), 0.05));
  }));

Deno.test("process metrics: CPU seconds match /proc/<pid>/stat and count from process start", () => {
  const spawned = Date.now();
  return withChild(async (child) => {
    let text = await child.scrape();
    const cpu = must(text, "process_cpu_seconds_total");
    // Deno's startup (compiling the fixture) ran before the registry existed; it counts too.
    assert.ok(near(cpu, await cpuSecondsOf(child.pid), 0, 0.05), `cpu ${cpu}`);
    const start = must(text, "process_start_time_seconds");
    assert.ok(
      start * 1000 >= spawned - 10 && start * 1000 <= Date.now(),
      `start ${start * 1000} within [${spawned}, now]`,
    );

    // 300 ms of spinning is at least 50 ms of CPU even on a machine shared with other work.
    await child.send("burn 300");
    text = await child.scrape();
    const cpu2 = must(text, "process_cpu_seconds_total");
    assert.ok(cpu2 - cpu >= 0.05, `300 ms spun: cpu ${cpu} -> ${cpu2}`);
    assert.ok(near(cpu2, await cpuSecondsOf(child.pid), 0, 0.05), `cpu ${cpu2}`);
    const user = must(text, "process_cpu_user_seconds_total");
    const system = must(text, "process_cpu_system_seconds_total");
    assert.ok(near(user + system, cpu2, 0, 0.002), `${user} + ${system} = ${cpu2}`);
  });
});

Deno.test("process metrics: the Deno version is the one running", () =>
  withChild(async (child) => {
    const text = await child.scrape();
    const { deno, v8, typescript } = Deno.version;
    assert.ok(
      text.includes(`deno_version_info{version="${deno}",v8="${v8}",typescript="${typescript}"} 1`),
      text,
    );
    assert.doesNotMatch(text, /^nodejs_version_info/m, "no Node version claimed");
  }));

Deno.test("process metrics: without /proc access the /proc series are absent, never 0", () =>
  withChild(async (child) => {
    const text = await child.scrape();
    for (const name of ["process_open_fds", "process_max_fds", "process_virtual_memory_bytes"]) {
      assert.equal(valueOf(text, name), undefined, `${name} absent`);
    }
    // RSS and CPU need no permission and stay true.
    rssMatches(text, child.pid);
    assert.ok(must(text, "process_cpu_seconds_total") > 0);
  }, { permissions: ["--no-prompt"] })); // no permission at all: /proc reads refused, no prompt

Deno.test("process metrics: out of descriptors, open fds is the limit and nothing reads 0", () =>
  withChild(async (child) => {
    await child.send("fill");
    const text = await child.scrape();
    assert.equal(must(text, "process_open_fds"), 256);
    assert.equal(must(text, "process_max_fds"), 256);
    for (const name of ["process_resident_memory_bytes", "process_virtual_memory_bytes"]) {
      const v = valueOf(text, name);
      // True if it could be read without a descriptor, else NaN ("unknown"): never 0.
      assert.ok(v !== undefined && v !== 0, `${name} = ${v}`);
    }
    await child.send("close");
    assert.ok(must(await child.scrape(), "process_open_fds") < 256);
  }, { wrap: ["prlimit", "--nofile=256:256"] }));

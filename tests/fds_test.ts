// infra/fds.ts: the open-files limit and descriptor count read from the
// process, and the budget arithmetic the comet refuses clients by.
import assert from "node:assert/strict";
import { countOpenFds, FdBudget, parseFdLimit, readFdLimit } from "../infra/fds.ts";

const linuxOnly = Deno.build.os !== "linux";

Deno.test("parseFdLimit reads the soft limit of Max open files", () => {
  const limits =
    "Limit                     Soft Limit           Hard Limit           Units     \n" +
    "Max cpu time              unlimited            unlimited            seconds   \n" +
    "Max open files            1024                 4096                 files     \n";
  assert.equal(parseFdLimit(limits), 1024);
  assert.equal(
    parseFdLimit("Max open files            unlimited            unlimited            files\n"),
    Infinity,
  );
  assert.equal(parseFdLimit("Max processes 10 10 processes\n"), null);
});

Deno.test({
  name: "readFdLimit and countOpenFds read this process",
  ignore: linuxOnly,
  fn() {
    const limit = readFdLimit();
    assert.ok(limit !== null && limit > 0, `limit ${limit}`);
    const before = countOpenFds();
    assert.ok(typeof before === "number" && before > 0, `open ${before}`);
    const files = Array.from({ length: 10 }, () => Deno.openSync("/dev/null"));
    try {
      assert.equal(countOpenFds(), before + 10);
    } finally {
      for (const f of files) f.close();
    }
    assert.equal(countOpenFds(), before);
  },
});

Deno.test("FdBudget: others' descriptors from the sample plus the caller's live count", () => {
  let open: number | "exhausted" | null = 50;
  const b = new FdBudget({ reserve: 10, limit: () => 100, count: () => open });
  b.sample(20); // 30 held by others
  assert.ok(b.fits(59)); // 30 + 59 + 1 = 90 = 100 - 10
  assert.ok(!b.fits(60));
  assert.deepEqual(b.stats(25), { open: 55, limit: 100, reserve: 10 });
  open = "exhausted"; // counting needed a descriptor: at the limit
  b.sample(20);
  assert.ok(!b.fits(20));
  assert.equal(b.stats(20).open, 100);
  open = null; // unknown: the last good sample stands
  b.sample(20);
  assert.equal(b.stats(20).open, 100);
  open = 30;
  b.sample(20);
  assert.ok(b.fits(79) && !b.fits(80)); // 10 held by others now
});

Deno.test("FdBudget without a known limit admits everything", () => {
  const b = new FdBudget({ reserve: 256, limit: () => null, count: () => null });
  b.sample(0);
  assert.ok(b.fits(1_000_000));
  assert.equal(b.stats(3).limit, null);
});

Deno.test("the role tasks' permissions let the descriptor budget read /proc (Linux)", async () => {
  // Deno grants /proc/self/* only to --allow-all; with the narrower flags the
  // tasks once had, the budget and the listener watch were silently off.
  const tasks = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)))
    .tasks as Record<string, string>;
  const probe = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      probe,
      `import { readFdLimit } from ${
        JSON.stringify(new URL("../infra/fds.ts", import.meta.url).href)
      };\n` +
        "console.log(JSON.stringify(readFdLimit()));\n",
    );
    for (const task of ["start", "comet", "logic", "job"]) {
      const words = tasks[task].split(/\s+/);
      assert.equal(words.slice(0, 2).join(" "), "deno run", `task ${task}`);
      const flags = words.slice(2).filter((w) => w.startsWith("-"));
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...flags, probe],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const limit = JSON.parse(new TextDecoder().decode(out.stdout).trim() || "null");
      assert.ok(
        typeof limit === "number" && limit > 0,
        `task ${task} (${flags.join(" ")}) cannot read the open-files limit`,
      );
    }
  } finally {
    await Deno.remove(probe);
  }
});

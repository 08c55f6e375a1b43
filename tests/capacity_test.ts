/**
 * scripts/capacity.ts: the calculator's arithmetic on small cost tables, the
 * costs file's schema errors, the shipped costs file's provenance, and the
 * command line.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Costs,
  CostsError,
  DEFAULT_LOAD,
  DEFAULT_SITE,
  FIGURE_NAMES,
  type FigureName,
  heartbeatRpcPeriod,
  type Load,
  loadCosts,
  parseCommandLine,
  parseCosts,
  plan,
  renderPlan,
  type Site,
  spannedComets,
  withOverrides,
} from "../scripts/capacity.ts";
import { mulberry32 } from "./prng.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const SHIPPED = `${ROOT}scripts/capacity_costs.json`;

/** A costs file's figure as parsed JSON, before validation. */
type RawFigure = Record<string, unknown> & { source: Record<string, unknown> };

/** A costs file body: every figure 0 (free) unless given, with a source. */
function costsJson(
  values: Partial<Record<FigureName, number>> = {},
): { figures: Record<string, RawFigure> } {
  const figures: Record<string, RawFigure> = {};
  for (const name of FIGURE_NAMES) {
    figures[name] = {
      value: values[name] ?? 0,
      unit: "u",
      source: { doc: "BENCHMARKS.md", section: "Comet", command: "a command" },
    };
  }
  return { figures };
}

// A table where everything is free except what a test sets; heartbeats and
// route refreshes keep goim's periods so the arithmetic stays defined.
function tiny(values: Partial<Record<FigureName, number>> = {}): Costs {
  return parseCosts(costsJson({
    "client.heartbeat_s": 240,
    "comet.route_heartbeat_s": 600,
    "comet.route_jitter_min": 0.75,
    "comet.renew_online_s": 10,
    "job.room_window_ms": 20,
    "job.room_batch": 20,
    "job.rooms_poll_s": 1,
    "job.rooms_min_gap_ms": 10,
    "kafka.partition_mb_s": 1e9,
    "redis.cmds_per_core_s": 1e12,
    ...values,
  }));
}

const LOAD: Load = {
  connections: 10_000,
  msgsPerS: 0,
  roomFanout: 100,
  keyShare: 1,
  midShare: 0,
  reconnectsPerHour: 0,
  msgBytes: 100,
};
const SITE: Site = {
  coresPerHost: 4,
  memPerHostGiB: 1024,
  fdsPerProcess: 1_000,
  utilisation: 1,
  maxPassS: 1,
};

function stepValue(p: ReturnType<typeof plan>, label: string, section?: string): number {
  const s = p.steps.find((s) =>
    s.label === label && (section === undefined || s.section.startsWith(section))
  );
  assert.ok(s, `no step "${label}"`);
  return s.value;
}

Deno.test("capacity: connections bound by descriptors: doubling them doubles comets", () => {
  const costs = tiny();
  const a = plan(costs, LOAD, SITE);
  const b = plan(costs, { ...LOAD, connections: 20_000 }, SITE);
  assert.equal(a.fleet.comets, 10); // 10,000 / (1 × (1,000 − 0 reserve))
  assert.equal(b.fleet.comets, 20);
  assert.equal(a.boundBy.comets, "descriptors");
  // The reserve and the utilisation margin shrink each comet's share.
  const c = plan(tiny({ "comet.fd_reserve": 500 }), { ...LOAD }, { ...SITE, utilisation: 0.5 });
  assert.equal(c.fleet.comets, 40); // 10,000 / (0.5 × 500)
});

Deno.test("capacity: comet CPU is writes × the write cost, and doubles with messages", () => {
  const costs = tiny({ "comet.write_cpu_us": 10, "comet.heartbeat_cpu_us": 0 });
  const site = { ...SITE, fdsPerProcess: 1e9 };
  const a = plan(costs, { ...LOAD, msgsPerS: 200_000 }, site);
  // 200,000 key pushes: one write each, 10 µs → 2 cores → 2 comets at 100 %.
  assert.equal(stepValue(a, "socket writes"), 200_000);
  assert.equal(stepValue(a, "comet CPU"), 2);
  assert.equal(a.fleet.comets, 2);
  assert.equal(a.boundBy.comets, "CPU");
  const b = plan(costs, { ...LOAD, msgsPerS: 400_000 }, site);
  assert.equal(b.fleet.comets, 4);
  // At 50 % utilisation twice as many.
  assert.equal(
    plan(costs, { ...LOAD, msgsPerS: 200_000 }, { ...site, utilisation: 0.5 }).fleet.comets,
    4,
  );
});

Deno.test("capacity: room deliveries batch by the per-connection rate, up to job.room.batch", () => {
  const costs = tiny({ "comet.write_cpu_us": 1 });
  const base = { ...LOAD, keyShare: 0, roomFanout: 1_000 };
  // 1 room msg/s per connection × 20 ms → batches of 1 (at least one).
  const slow = plan(costs, { ...base, msgsPerS: 10_000 }, SITE);
  assert.equal(stepValue(slow, "messages per room batch"), 1);
  assert.equal(stepValue(slow, "socket writes"), 10_000);
  // 500/s per connection × 20 ms = 10 messages per batch: a tenth of the writes.
  const fast = plan(costs, { ...base, msgsPerS: 5_000_000 }, SITE);
  assert.equal(stepValue(fast, "messages per room batch"), 10);
  assert.equal(stepValue(fast, "socket writes"), 500_000);
  // 5,000/s would be 100 per batch: capped at 20.
  const capped = plan(costs, { ...base, msgsPerS: 50_000_000 }, SITE);
  assert.equal(stepValue(capped, "messages per room batch"), 20);
});

Deno.test("capacity: the binding resource is the one with the least headroom", () => {
  const costs = tiny({
    "comet.write_cpu_us": 10,
    "logic.push_cpu_us": 30,
    "job.kafka_push_cpu_us": 20,
  });
  const p = plan(costs, { ...LOAD, msgsPerS: 100_000 }, {
    ...SITE,
    fdsPerProcess: 1e9,
    utilisation: 0.7,
  });
  const least = p.resources.reduce((a, b) => b.headroom < a.headroom ? b : a);
  assert.ok(p.binding.startsWith(`${least.name} (`), p.binding);
  for (const r of p.resources) {
    assert.ok(
      r.headroom >= 1 / 0.7 - 1e-9,
      `${r.name} planned above the utilisation: ×${r.headroom}`,
    );
    assert.ok(Math.abs(r.utilisation * r.headroom - 1) < 1e-9 || r.headroom === Infinity, r.name);
  }
  // logic: 100,000 × 30 µs = 3 cores → ceil(3 / 0.7) = 5 logics, ×1.67 headroom;
  // comets: 1 core → 2 (×2); jobs: 2 cores → 3 (×1.5): the jobs bind.
  assert.equal(p.fleet.logics, 5);
  assert.equal(p.fleet.comets, 2);
  assert.equal(p.fleet.jobs, 3);
  assert.ok(p.binding.startsWith("job CPU"), p.binding);
  assert.ok(p.bindingMsg.startsWith("job CPU"), p.bindingMsg);
});

Deno.test("capacity: headroom as connections or messages alone grow", () => {
  // Comet CPU: heartbeats (connections) and writes (messages), one core each.
  const costs = tiny({ "comet.heartbeat_cpu_us": 240, "comet.write_cpu_us": 1 });
  const p = plan(
    costs,
    { ...LOAD, connections: 1_000_000, msgsPerS: 1_000_000 },
    { ...SITE, fdsPerProcess: 1e9, utilisation: 0.5 },
  );
  // 1,000,000 / 240 s × 240 µs = 1 core; 1,000,000 writes × 1 µs = 1 core; RenewOnline is free.
  const cpu = p.resources.find((r) => r.name === "comet CPU");
  assert.ok(cpu);
  assert.equal(p.fleet.comets, 4);
  assert.ok(Math.abs(cpu.demandConn - 1) < 1e-9 && Math.abs(cpu.demandMsg - 1) < 1e-9);
  assert.ok(Math.abs(cpu.headroom - 2) < 1e-9); // 4 / 2
  assert.ok(Math.abs(cpu.headroomConn - 3) < 1e-9); // (4 − 1) / 1
  assert.ok(Math.abs(cpu.headroomMsg - 3) < 1e-9);
  const fds = p.resources.find((r) => r.name === "comet descriptors");
  assert.equal(fds?.headroomMsg, Infinity);
});

Deno.test("capacity: heartbeat RPC period matches a simulation of the comet's rule", () => {
  // 480 s when the delay falls in [450, 480] (20 %), else 720 s.
  assert.equal(heartbeatRpcPeriod(240, 600, 0.75), 0.2 * 480 + 0.8 * 720);
  assert.equal(heartbeatRpcPeriod(240, 240, 1), 240);
  assert.equal(heartbeatRpcPeriod(60, 30, 0.5), 60); // never faster than the client beats
  // The rule of comet/hub.ts #heartbeat: on each client beat, if now ≥ routeAt,
  // send and set routeAt = now + route × U(jitter, 1).
  for (const [hb, route, jitter] of [[240, 600, 0.75], [30, 600, 0.75], [100, 250, 0.5]]) {
    const rand = mulberry32(7);
    let routeAt = route * (jitter + (1 - jitter) * rand()), sends = 0, last = 0, total = 0;
    for (let t = hb; t < 2e8; t += hb) {
      if (t >= routeAt) {
        if (sends > 0) total += t - last;
        sends++;
        last = t;
        routeAt = t + route * (jitter + (1 - jitter) * rand());
      }
    }
    const simulated = total / (sends - 1);
    const closed = heartbeatRpcPeriod(hb, route, jitter);
    assert.ok(
      Math.abs(simulated - closed) / closed < 0.01,
      `${hb}/${route}: ${simulated} vs ${closed}`,
    );
  }
});

Deno.test("capacity: comets a room spans", () => {
  assert.equal(spannedComets(1, 50), 1);
  assert.ok(Math.abs(spannedComets(10, 1) - 1) < 1e-12);
  assert.ok(spannedComets(10, 100_000) > 9.999);
  assert.ok(spannedComets(1_000, 100) < 100 && spannedComets(1_000, 100) > 95);
});

Deno.test("capacity: room calls that every comet serves make a load impossible", () => {
  // 1,000 room batches/s to rooms on every comet, 1 ms of unary cost each:
  // a comet spends a full core on them whatever the comet count.
  const costs = tiny({ "grpc.unary_call_cpu_us": 1_000 });
  const p = plan(
    costs,
    { ...LOAD, connections: 100_000, keyShare: 0, roomFanout: 1_000, msgsPerS: 1_000_000 },
    { ...SITE, fdsPerProcess: 10_000, utilisation: 0.5 },
  );
  assert.ok(p.impossible, "expected no fleet to meet the load");
  assert.match(p.impossible, /BroadcastRoom and Rooms\(\) calls cost each comet/);
  assert.ok(Number.isFinite(p.fleet.comets) && Number.isFinite(p.fleet.jobs));
  assert.match(renderPlan(p, costs, "tiny"), /NO FLEET MEETS THIS LOAD/);
});

Deno.test("capacity: schema errors name the field", () => {
  const bad = (mutate: (j: { figures: Record<string, RawFigure> }) => void, message: RegExp) => {
    const j = costsJson();
    mutate(j);
    assert.throws(
      () => parseCosts(j, "x.json"),
      (e) => e instanceof CostsError && message.test(e.message),
    );
  };
  assert.throws(
    () => parseCosts([], "x.json"),
    /x\.json: expected an object with a "figures" object/,
  );
  bad(
    (j) => delete j.figures["comet.write_cpu_us"],
    /x\.json: figures\.comet\.write_cpu_us: missing/,
  );
  bad(
    (j) => j.figures["comet.writes_cpu"] = { source: {} },
    /figures\.comet\.writes_cpu: unknown figure/,
  );
  bad(
    (j) => j.figures["comet.write_cpu_us"].value = "12",
    /comet\.write_cpu_us\.value: expected a finite number ≥ 0, got "12"/,
  );
  bad(
    (j) => j.figures["comet.write_cpu_us"].value = -1,
    /\.value: expected a finite number ≥ 0, got -1/,
  );
  bad(
    (j) => delete j.figures["comet.write_cpu_us"].unit,
    /comet\.write_cpu_us\.unit: expected a non-empty string, got nothing/,
  );
  bad(
    (j) => j.figures["logic.push_cpu_us"].source = undefined as unknown as RawFigure["source"],
    /logic\.push_cpu_us\.source: expected \{doc, section, command\}/,
  );
  bad(
    (j) => j.figures["logic.push_cpu_us"].source.command = " ",
    /logic\.push_cpu_us\.source\.command: expected a non-empty string/,
  );
  bad((j) => j.figures["logic.push_cpu_us"].estimate = "yes", /\.estimate: expected true or false/);
  bad(
    (j) => j.figures["logic.push_cpu_us"].estimate = true,
    /logic\.push_cpu_us\.derivation: an estimate must say how it was derived/,
  );
  bad((j) => j.figures["logic.push_cpu_us"].vaule = 1, /logic\.push_cpu_us\.vaule: unknown field/);
  assert.throws(() => withOverrides(tiny(), { "no.such": 1 }), /--set no\.such: unknown figure/);
});

Deno.test("capacity: loadCosts names the file it cannot use", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, "{ not json");
    await assert.rejects(loadCosts(`${dir}/bad.json`), /bad\.json: not JSON/);
    await assert.rejects(loadCosts(`${dir}/none.json`), /none\.json: cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// A Markdown section must be one of the doc's headings; in code, the text must occur.
async function sectionExists(doc: string, section: string): Promise<boolean> {
  const text = await Deno.readTextFile(`${ROOT}${doc}`);
  if (!doc.endsWith(".md")) return text.includes(section);
  return text.split("\n").some((l) =>
    /^#{1,6} /.test(l) && l.replace(/^#+ /, "").trim() === section
  );
}

Deno.test("capacity: the shipped costs file parses and every figure names its source", async () => {
  const costs = await loadCosts(SHIPPED);
  for (const name of FIGURE_NAMES) {
    const { source, estimate, derivation } = costs[name];
    assert.ok(
      await sectionExists(source.doc, source.section),
      `${name}: no section "${source.section}" in ${source.doc}`,
    );
    // Every repository file a command names exists.
    for (const path of source.command.match(/[\w./-]+\.(?:ts|md)\b/g) ?? []) {
      await Deno.stat(`${ROOT}${path}`).catch(() => assert.fail(`${name}: ${path} does not exist`));
    }
    if (estimate) assert.ok(derivation, `${name}: an estimate without a derivation`);
  }
  // The measured figures come from BENCHMARKS.md; the rest are config or code facts or estimates.
  const measuredElsewhere = FIGURE_NAMES.filter((n) =>
    !costs[n].estimate && costs[n].unit.includes("µs") && costs[n].source.doc !== "BENCHMARKS.md"
  );
  assert.deepEqual(measuredElsewhere, []);
  // The default plan runs on it and settles.
  const p = plan(costs, DEFAULT_LOAD, DEFAULT_SITE);
  assert.equal(p.impossible, undefined);
  assert.ok(p.fleet.comets >= 1 && p.fleet.logics >= 1 && p.fleet.jobs >= 1);
  assert.ok(p.fleet.partitions >= p.fleet.jobs);
});

Deno.test("capacity: command line values are checked and name the flag", () => {
  const cli = parseCommandLine([
    "--connections",
    "2_000_000",
    "--key-share",
    "0.25",
    "--set",
    "logic.push_cpu_us=430",
  ]);
  assert.ok(cli);
  assert.equal(cli.load.connections, 2_000_000);
  assert.equal(cli.load.keyShare, 0.25);
  assert.deepEqual(cli.sets, { "logic.push_cpu_us": 430 });
  assert.equal(parseCommandLine(["--help"]), null);
  assert.throws(
    () => parseCommandLine(["--key-share", "2"]),
    /--key-share: expected a number in 0\.\.1, got "2"/,
  );
  assert.throws(
    () => parseCommandLine(["--cores-per-host", "1.5"]),
    /--cores-per-host: expected an integer/,
  );
  assert.throws(() => parseCommandLine(["--set", "x"]), /--set: expected NAME=VALUE/);
  assert.throws(() => parseCommandLine(["--conections", "1"]));
});

Deno.test("capacity: the script prints a plan and exits 2 on a bad costs file", async () => {
  const run = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", `${ROOT}scripts/capacity.ts`, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
  const ok = await run(["--connections", "100000", "--msgs-per-s", "50000"]);
  const out = new TextDecoder().decode(ok.stdout);
  assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
  assert.match(out, /Capacity plan: 100,000 connections, 50,000 delivered msgs\/s/);
  assert.match(out, /Binds first as everything grows: /);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.json`, JSON.stringify({ figures: {} }));
    const bad = await run(["--costs", `${dir}/c.json`]);
    assert.equal(bad.code, 2);
    assert.match(
      new TextDecoder().decode(bad.stderr),
      /c\.json: figures\.comet\.fd_reserve: missing/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

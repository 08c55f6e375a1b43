/**
 * Every metric family a running embedded server defines (each role's
 * registry and the process registry, sampled or not) follows the naming
 * and labelling rules of docs/METRICS.md, "Conventions", and has its row
 * there. tests/prometheus_test.ts checks the same for what a real
 * Prometheus scraped from the distributed roles.
 */

import assert from "node:assert/strict";
import { createLogger } from "../infra/log.ts";
import { processMetrics } from "../infra/metrics.ts";
import { startEmbedded } from "../main.ts";
import { eventually } from "./eventually.ts";
import { embeddedTestConfig } from "./fixtures/embedded_config.ts";

const DOC = new URL("../docs/METRICS.md", import.meta.url);

/** Label names that would carry a per-client value (unbounded series). */
const UNBOUNDED_LABELS = new Set([
  "key",
  "keys",
  "mid",
  "mids",
  "room",
  "rooms",
  "ip",
  "addr",
  "address",
  "peer",
  "remote",
  "host",
  "user",
  "token",
  "url",
  "path",
]);

interface Family {
  name: string;
  type: string;
  labels: Set<string>;
}

/** The families of a text exposition: name, type and the label names of its samples. */
function families(text: string): Family[] {
  const out = new Map<string, Family>();
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) out.set(t[1], { name: t[1], type: t[2], labels: new Set() });
    const s = /^([a-z_][a-z0-9_]*)\{([^}]*)\}/.exec(line);
    if (s) {
      const base = s[1].replace(/_(bucket|sum|count)$/, "");
      const f = out.get(s[1]) ?? out.get(base);
      for (const m of s[2].matchAll(/([a-z_][a-z0-9_]*)="/g)) {
        if (m[1] !== "le") f?.labels.add(m[1]);
      }
    }
  }
  return [...out.values()];
}

async function embeddedFamilies(): Promise<{ role: string; families: Family[] }[]> {
  const server = await startEmbedded(embeddedTestConfig(), createLogger({ level: "error" }));
  try {
    // One push of each kind, so that labelled series have samples whose labels can be read.
    const http = `http://127.0.0.1:${server.logicAddrs.http.port}`;
    for (
      const path of [
        "keys?operation=1000&keys=k",
        "mids?operation=1000&mids=1",
        "room?operation=1000&type=live&room=1",
        "all?operation=1000",
      ]
    ) {
      const res = await fetch(`${http}/goim/push/${path}`, { method: "POST", body: "x" });
      await res.body?.cancel();
    }
    await eventually(
      async () => (await server.comet.metrics.text()).includes("goim_comet_pushes_total{"),
      "the room and broadcast pushes to reach the comet",
    );
    return [
      { role: "comet", families: families(await server.comet.metrics.text()) },
      { role: "logic", families: families(await server.logic.metrics.registry.text()) },
      { role: "job", families: families(await server.job.metrics.text()) },
      { role: "process", families: families(await processMetrics().metrics()) },
    ];
  } finally {
    await server.stop();
  }
}

const all = await embeddedFamilies();

Deno.test("metrics: names carry their role, their unit last, and _total on counters only", () => {
  const problems: string[] = [];
  for (const { role, families } of all) {
    for (const { name, type } of families) {
      if (role !== "process" && !name.startsWith(`goim_${role}_`)) {
        problems.push(`${name}: not goim_${role}_*`);
      }
      if (!/^[a-z][a-z0-9_]*$/.test(name)) problems.push(`${name}: not snake_case`);
      if ((type === "counter") !== name.endsWith("_total")) {
        problems.push(
          `${name}: a ${type} ${type === "counter" ? "must" : "must not"} end in _total`,
        );
      }
      // A unit inside the name is its last word (before _total): bytes_out_total was not.
      for (const unit of ["seconds", "bytes"]) {
        const at = name.indexOf(`_${unit}_`);
        if (at >= 0 && name.slice(at) !== `_${unit}_total`) {
          problems.push(`${name}: ${unit} not last`);
        }
      }
      if (type === "histogram" && !/_(seconds|bytes|frames)$/.test(name)) {
        problems.push(`${name}: a histogram names its unit`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

Deno.test("metrics: no label can carry a per-client value", () => {
  const problems = all.flatMap(({ families }) =>
    families.flatMap((f) =>
      [...f.labels].filter((l) => UNBOUNDED_LABELS.has(l)).map((l) => `${f.name}{${l}}`)
    )
  );
  assert.deepEqual(problems, []);
  // The check saw labels at all (the pushes above gave the labelled series samples).
  const pushes = all[0].families.find((f) => f.name === "goim_comet_pushes_total");
  assert.deepEqual([...pushes?.labels ?? []], ["kind"]);
});

Deno.test("metrics: every family has its row in docs/METRICS.md", async () => {
  const doc = await Deno.readTextFile(DOC);
  const rows = new Set([...doc.matchAll(/^\| `([a-z0-9_]+)`/gm)].map((m) => m[1]));
  const spelled = (name: string) => rows.has(name) || doc.includes("`" + name + "`");
  const missing = all.flatMap(({ families }) => families.map((f) => f.name)).filter((n) =>
    !spelled(n)
  );
  assert.deepEqual(missing, [], "add a row to docs/METRICS.md for each");
});

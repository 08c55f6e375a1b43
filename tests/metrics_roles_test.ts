/**
 * The role metrics say what is true and reach a scrape: a value that cannot
 * be read is NaN, never a stale or made-up number, and every role's
 * registry has an admin endpoint in the embedded mode too.
 */

import assert from "node:assert/strict";
import { createLogger } from "../infra/log.ts";
import { createMetrics } from "../infra/metrics.ts";
import { jobMetrics } from "../job/metrics.ts";
import { startEmbedded } from "../main.ts";
import { eventually } from "./eventually.ts";
import { embeddedTestConfig } from "./fixtures/embedded_config.ts";

Deno.test("job: consumer lag is NaN while the queue cannot say, the value once it can", async () => {
  const m = createMetrics("job");
  let lag: () => Promise<number> = () => Promise.resolve(42);
  jobMetrics(m, {
    laneDepth: () => [],
    comets: () => 0,
    rooms: () => 0,
    lag: () => lag(),
  });
  assert.match(await m.text(), /^goim_job_consumer_lag 42$/m);
  lag = () => Promise.reject(new Error("Kafka unreachable"));
  // Not the last value (42 would look current), and the scrape still succeeds.
  assert.match(await m.text(), /^goim_job_consumer_lag Nan$/m);
  lag = () => Promise.resolve(0);
  assert.match(await m.text(), /^goim_job_consumer_lag 0$/m);
});

Deno.test("embedded: job's admin endpoint serves its series (lag, latency) like job/main.ts", async () => {
  const config = embeddedTestConfig(["comet.admin.bind=", "logic.admin.bind="]);
  const server = await startEmbedded(config, createLogger({ level: "error" }));
  try {
    assert.ok(server.jobAdmin, "job.admin.bind is served in embedded mode too");
    const metrics = async () => {
      const res = await fetch(`http://127.0.0.1:${server.jobAdmin!.port}/metrics`);
      assert.equal(res.status, 200);
      return await res.text();
    };
    assert.match(await metrics(), /^goim_job_consumer_lag 0$/m);
    const http = `http://127.0.0.1:${server.logicAddrs.http.port}`;
    const res = await fetch(`${http}/goim/push/all?operation=1000`, { method: "POST", body: "x" });
    assert.equal(res.status, 200, await res.text());
    const count = /^goim_job_push_latency_seconds_count\{type="BROADCAST"\} (\d+)$/m;
    await eventually(async () => Number(count.exec(await metrics())?.[1] ?? 0) === 1, "latency");
  } finally {
    await server.stop();
  }
});

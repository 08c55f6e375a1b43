/**
 * The role metrics say what is true: a value that cannot be read is NaN,
 * never a stale or made-up number.
 */

import assert from "node:assert/strict";
import { createMetrics } from "../infra/metrics.ts";
import { jobMetrics } from "../job/metrics.ts";

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

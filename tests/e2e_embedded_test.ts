/**
 * The end-to-end suite on the embedded default (`deno task start`'s
 * startEmbedded): one process, memory engines, real sockets.
 */

import { createLogger } from "../infra/log.ts";
import { startEmbedded } from "../main.ts";
import { type Cluster, deliveryScenario } from "./e2e/suite.ts";
import { embeddedTestConfig } from "./fixtures/embedded_config.ts";

async function embeddedCluster(): Promise<Cluster> {
  const config = embeddedTestConfig([
    "comet.admin.bind=",
    "logic.admin.bind=",
    "job.admin.bind=",
    "comet.renew_online_interval=200ms",
    "node.id=embedded-e2e",
  ]);
  const server = await startEmbedded(config, createLogger({ level: "warn" }));
  const tcp = server.cometAddrs.tcp[0];
  const ws = server.cometAddrs.ws[0];
  const http = server.logicAddrs.http;
  return {
    http: `http://127.0.0.1:${http.port}`,
    comets: [{ tcp: `tcp://127.0.0.1:${tcp.port}`, ws: `ws://127.0.0.1:${ws.port}/sub` }],
    stop: () => server.stop(),
  };
}

Deno.test("embedded: pushes by key, mid, room and all reach exactly the right clients", async () => {
  const cluster = await embeddedCluster();
  try {
    await deliveryScenario(cluster, "emb");
  } finally {
    await cluster.stop();
  }
});

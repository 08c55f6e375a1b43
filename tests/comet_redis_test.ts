// The comet role process (comet/main.ts) on the Redis registry opens it like logic and job
// do (infra/engines.ts): redis.command_timeout bounds its commands, and a Redis outage and
// recovery are logged. Before, the comet's registry kept the 2 s default and said nothing.
import assert from "node:assert/strict";
import { freePort, RoleProcess } from "./e2e/cluster.ts";
import { eventually } from "./eventually.ts";
import { hasRedisServerBinary, ownRedisServer } from "./redis_env.ts";

const ownRedis = await hasRedisServerBinary();
const ci = Deno.env.get("CI") === "true";
if (!ownRedis && !ci) console.warn("note: no redis-server binary; the comet Redis test is ignored");

const COMMAND_TIMEOUT_MS = 300;

Deno.test({
  name: "comet process: redis.command_timeout bounds registry calls; an outage is logged",
  ignore: !ownRedis && !ci,
  fn: async () => {
    if (!ownRedis) throw new Error("CI=true: no redis-server binary on PATH (scripts/services.sh)");
    await ownRedisServer(async (srv) => {
      const admin = freePort();
      const sets = [
        "mode=distributed",
        "queue.engine=kafka",
        "registry.engine=redis",
        `redis.url=${srv.url}`,
        `redis.command_timeout=${COMMAND_TIMEOUT_MS}ms`,
        "log.level=info",
        "log.format=json",
        "node.id=comet-redis-test",
        "comet.renew_online_interval=200ms",
        "comet.tcp.bind=127.0.0.1:0",
        "comet.websocket.bind=127.0.0.1:0",
        "comet.grpc.bind=127.0.0.1:0",
        // Nobody listens there: RenewOnline fails at once, the registry is what is tested.
        `comet.logic_addrs=127.0.0.1:${freePort()}`,
        `comet.admin.bind=127.0.0.1:${admin}`,
      ];
      const comet = new RoleProcess(
        "comet",
        ["comet/main.ts", ...sets.flatMap((s) => ["--set", s])],
        admin,
      );
      // The comet's JSON log lines written since `since` (wall clock, as their `ts`).
      const logSince = (since: number) =>
        comet.tail(500).split("\n").flatMap((l) => {
          try {
            const rec = JSON.parse(l);
            return Date.parse(rec.ts) >= since ? [rec] : [];
          } catch {
            return [];
          }
        });
      const find = (since: number, msg: string) => logSince(since).find((r) => r.msg === msg);
      await comet.start();
      try {
        // Redis stops answering: the registration's commands must give up after the
        // configured timeout, not the client's 2 s default.
        const paused = Date.now();
        srv.pause();
        await eventually(
          () =>
            /no reply within the command timeout/.test(
              find(paused, "registry register failed")?.error ?? "",
            ),
          "a registration to time out",
          5000,
        );
        const took = Date.now() - paused;
        assert.ok(took < 1500, `timed out after ${took} ms, want about ${COMMAND_TIMEOUT_MS} ms`);
        srv.resume();

        // Redis goes away and comes back: both are logged.
        const killed = Date.now();
        await srv.stop();
        await eventually(
          () => find(killed, "redis connection down") !== undefined,
          "the outage log",
          5000,
        );
        await srv.start();
        await eventually(
          () => find(killed, "redis connection up") !== undefined,
          "the recovery log",
          5000,
        );
        const down = find(killed, "redis connection down");
        assert.equal(down.level, "warn");
        assert.equal(down.engine, "registry");
      } finally {
        srv.resume();
        const status = await comet.stop("SIGTERM");
        assert.equal(status?.code, 0, comet.tail());
      }
    });
  },
});

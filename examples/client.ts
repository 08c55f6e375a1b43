/**
 * A runnable goim client: connects, authenticates, then prints every pushed
 * message (op + body as text) and every heartbeat's online count until
 * Ctrl-C.
 *
 * ```sh
 * ./scripts/deno run -A examples/client.ts --url tcp://127.0.0.1:3101 \
 *   --mid 1 --room live://1000 --accepts 1000,1001
 * ./scripts/deno run -A examples/client.ts --url ws://127.0.0.1:3102/sub --mid 1 --room live://1000
 * ```
 *
 * Flags: `--url` (default `tcp://127.0.0.1:3101`), `--mid` (0), `--key`
 * (empty: the server generates one), `--room` (empty: no room), `--accepts`
 * (comma list, default `1000`), `--platform` (`deno`), `--token` (a signed
 * credential when logic requires one), `--heartbeat` (interval in ms,
 * default 240000 like goim).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { GoimClient, GoimClientError } from "../client/mod.ts";
import { opName } from "../protocol/ops.ts";
import type { AuthToken } from "../protocol/token.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    url: { type: "string", default: "tcp://127.0.0.1:3101" },
    mid: { type: "string", default: "0" },
    key: { type: "string", default: "" },
    room: { type: "string", default: "" },
    accepts: { type: "string", default: "1000" },
    platform: { type: "string", default: "deno" },
    token: { type: "string" },
    heartbeat: { type: "string", default: "240000" },
  },
});

const accepts = values.accepts.split(",").filter((s) => s.trim() !== "").map(Number);
if (accepts.some((op) => !Number.isInteger(op))) {
  console.error(`--accepts must be a comma list of integers, got ${values.accepts}`);
  Deno.exit(2);
}
const token: AuthToken = {
  mid: Number(values.mid),
  key: values.key,
  room_id: values.room,
  platform: values.platform,
  accepts,
};
if (values.token !== undefined) token.token = values.token;

const client = new GoimClient({
  url: values.url,
  token,
  heartbeatIntervalMs: Number(values.heartbeat),
});
const decoder = new TextDecoder();
const now = () => new Date().toISOString();

client.on("auth", (a) => {
  console.log(
    `${now()} ${a.reconnected ? "re-authenticated" : "authenticated"} on ${values.url}` +
      ` as mid ${a.token.mid}, room ${
        JSON.stringify(a.token.room_id)
      }, accepts [${a.token.accepts}]`,
  );
});
client.on("message", (m) => {
  console.log(`${now()} message op=${m.op} (${opName(m.op)}): ${decoder.decode(m.body)}`);
});
client.on("heartbeat", ({ online }) => console.log(`${now()} heartbeat: online=${online}`));
client.on("disconnect", (d) => {
  const why = d.reason ? `${d.reason.message} (${d.reason.code})` : d.error.message;
  const next = d.willReconnect ? `; reconnecting in ${d.delayMs} ms` : "";
  console.log(`${now()} disconnected: ${why}${next}`);
});
client.on("reconnect", (r) => console.log(`${now()} reconnect attempt ${r.attempt}`));

const stop = async () => {
  console.log(`${now()} closing`);
  await client.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);

try {
  await client.connect();
} catch (e) {
  const reason = e instanceof GoimClientError && e.reason
    ? ` [${e.reason.code}: ${e.reason.message}]`
    : "";
  console.error(`connect failed: ${(e as Error).message}${reason}`);
  Deno.removeSignalListener("SIGINT", stop);
  Deno.exit(1);
}

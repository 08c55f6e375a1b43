import assert from "node:assert/strict";
import { createLogger, type LoggerOptions, LogThrottle, serializeError } from "../infra/log.ts";

const T0 = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

/** A logger writing into an array, with a fixed clock. */
function capture(opts: LoggerOptions = {}) {
  const lines: string[] = [];
  const log = createLogger({ now: () => T0, writer: (l) => lines.push(l), ...opts });
  return { log, lines, json: () => lines.map((l) => JSON.parse(l)) };
}

Deno.test("levels below the configured one are dropped", () => {
  const { log, json } = capture({ level: "warn" });
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  assert.deepEqual(json().map((r) => r.level), ["warn", "error"]);
  assert.equal(log.enabled("info"), false);
  assert.equal(log.enabled("error"), true);
});

Deno.test("default level is info and default format is JSON", () => {
  const { log, json } = capture();
  log.debug("hidden");
  log.info("shown");
  assert.deepEqual(json().map((r) => r.msg), ["shown"]);
  assert.equal(log.level, "info");
});

Deno.test("disabled levels are one shared no-op: no formatting, no writer call", () => {
  let calls = 0;
  const log = createLogger({ level: "error", writer: () => calls++ });
  assert.equal(log.debug, log.info, "disabled methods share the no-op");
  const fields = {
    get expensive(): string {
      throw new Error("fields of a disabled level must not be read");
    },
  };
  log.debug("x", fields);
  log.warn("x", fields);
  assert.equal(calls, 0);
});

Deno.test("JSON lines: ts, level, msg first, then bound and call fields", () => {
  const { log, lines } = capture({ fields: { role: "comet" } });
  log.info("listening", { addr: "0.0.0.0:3101", conns: 3 });
  assert.equal(lines.length, 1);
  assert.ok(lines[0].endsWith("\n") && !lines[0].slice(0, -1).includes("\n"));
  const rec = JSON.parse(lines[0]);
  assert.deepEqual(Object.keys(rec), ["ts", "level", "msg", "role", "addr", "conns"]);
  assert.deepEqual(rec, {
    ts: "2025-01-02T03:04:05.678Z",
    level: "info",
    msg: "listening",
    role: "comet",
    addr: "0.0.0.0:3101",
    conns: 3,
  });
});

Deno.test("child adds fields; call fields override; reserved names are kept apart", () => {
  const { log, json } = capture({ fields: { role: "logic", a: 1 } });
  const child = log.child({ conn: "k1", a: 2 });
  child.info("hi", { a: 3, msg: "not the message", level: "x" });
  child.child({ b: true }).warn("deeper");
  log.info("parent unchanged");
  const [first, second, third] = json();
  assert.equal(first.msg, "hi");
  assert.equal(first.level, "info");
  assert.equal(first.a, 3);
  assert.equal(first._msg, "not the message");
  assert.equal(first._level, "x");
  assert.equal(first.conn, "k1");
  assert.deepEqual([second.role, second.conn, second.a, second.b], ["logic", "k1", 2, true]);
  assert.equal(third.conn, undefined);
  assert.equal(third.a, 1);
});

Deno.test("errors are serialised with message, stack and cause", () => {
  const { log, json } = capture();
  const cause = new Error("socket closed");
  const err = new TypeError("push failed", { cause });
  log.error("push", { err, n: 10n, body: new Uint8Array(1000) });
  const rec = json()[0];
  assert.equal(rec.err.name, "TypeError");
  assert.equal(rec.err.message, "push failed");
  assert.match(rec.err.stack, /push failed/);
  assert.equal(rec.err.cause.message, "socket closed");
  assert.equal(rec.n, "10");
  assert.equal(rec.body, "Uint8Array(1000)");
  assert.deepEqual(Object.keys(serializeError(new Error("x"))), ["name", "message", "stack"]);
});

Deno.test("unserialisable fields do not lose the line", () => {
  const { log, json } = capture();
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  log.warn("cyclic", { cyclic });
  const rec = json()[0];
  assert.equal(rec.msg, "cyclic");
  assert.match(rec.log_error, /unserializable/);
});

Deno.test("text format: time, level, message, key=value, stacks indented", () => {
  const { log, lines } = capture({ format: "text", fields: { role: "job" } });
  log.warn("slow comet", { comet: "c1", note: "two words", n: 2, obj: { a: 1 } });
  assert.equal(
    lines[0],
    '2025-01-02T03:04:05.678Z WARN  slow comet role=job comet=c1 note="two words" n=2 obj={"a":1}\n',
  );
  log.error("boom", { err: new Error("bad") });
  assert.match(
    lines[1],
    /^2025-01-02T03:04:05\.678Z ERROR boom role=job err="Error: bad"\n {4}Error: bad\n {4}\s*at /,
  );
});

Deno.test("invalid options throw", () => {
  // @ts-expect-error: not a level
  assert.throws(() => createLogger({ level: "verbose" }), TypeError);
  // @ts-expect-error: not a format
  assert.throws(() => createLogger({ format: "xml" }), TypeError);
});

Deno.test("default writer goes to stderr and leaves stdout clean", async () => {
  const code = `import { createLogger } from "./infra/log.ts";
    createLogger({ fields: { role: "t" } }).info("to stderr", { x: 1 });`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    cwd: new URL("../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0);
  assert.equal(new TextDecoder().decode(out.stdout), "");
  const rec = JSON.parse(new TextDecoder().decode(out.stderr));
  assert.deepEqual([rec.level, rec.msg, rec.role, rec.x], ["info", "to stderr", "t", 1]);
});

Deno.test("LogThrottle: one line per interval, carrying the events since the last", () => {
  const t = new LogThrottle(1000);
  assert.equal(t.take(0), 1);
  assert.equal(t.take(10), null);
  assert.equal(t.take(999), null);
  assert.equal(t.take(1000), 3);
  assert.equal(t.take(1500), null);
  assert.equal(t.take(5000), 2);
});

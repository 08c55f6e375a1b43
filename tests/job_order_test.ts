/** job/order.ts: steps of one key run one at a time, in call order, whatever their `ready` does. */

import assert from "node:assert/strict";
import { inOrder } from "../job/order.ts";

Deno.test("inOrder: a ready that rejects early waits for the step still running", async () => {
  const chains = new Map<string, Promise<unknown>>();
  const log: string[] = [];
  const gate = Promise.withResolvers<void>();
  const first = inOrder(chains, "k", Promise.resolve(1), async () => {
    log.push("first start");
    await gate.promise;
    log.push("first end");
  });
  const second = inOrder(chains, "k", Promise.reject(new Error("ready failed")), () => {
    log.push("second ran");
  });
  const third = inOrder(chains, "k", Promise.resolve(3), () => {
    log.push("third");
  });
  let secondSettled = false;
  second.catch(() => {}).finally(() => secondSettled = true);
  // Let everything that could run now run: nothing may pass the first step.
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(log, ["first start"], "the third step waits for the first");
  assert.equal(secondSettled, false, "the early rejection waits for the first step too");
  gate.resolve();
  await first;
  await assert.rejects(second, /ready failed/);
  await third;
  assert.deepEqual(log, ["first start", "first end", "third"]);
  await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(chains.size, 0, "an empty chain is forgotten");
});

Deno.test("inOrder: different keys run side by side", async () => {
  const chains = new Map<string, Promise<unknown>>();
  const gate = Promise.withResolvers<void>();
  const log: string[] = [];
  const a = inOrder(chains, "a", Promise.resolve(0), async () => {
    await gate.promise;
    log.push("a");
  });
  await inOrder(chains, "b", Promise.resolve(0), () => void log.push("b"));
  assert.deepEqual(log, ["b"]);
  gate.resolve();
  await a;
  assert.deepEqual(log, ["b", "a"]);
});

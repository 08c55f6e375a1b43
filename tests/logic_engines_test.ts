// The standalone logic process's engine selection.
import assert from "node:assert/strict";
import { EngineConfigError, openLogicEngines } from "../logic/engines.ts";
import { testConfig } from "./fixtures/logic_fixtures.ts";

Deno.test("a standalone logic refuses the memory queue with a clear message", async () => {
  await assert.rejects(
    openLogicEngines(testConfig("queue.engine=memory")),
    (e: unknown) =>
      e instanceof EngineConfigError && /queue\.engine "memory" cannot serve a standalone logic/
        .test(e.message) &&
      /deno task start/.test(e.message),
  );
});

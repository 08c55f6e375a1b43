/**
 * Helpers shared by the engine suites: bounded polling, passing time, and
 * a check that an engine left no sockets or timers behind.
 *
 * @module
 */

import { eventually } from "../eventually.ts";
import process from "node:process";

/**
 * Polls `check` every `intervalMs` until it returns true; rejects with
 * `what` after `timeoutMs`. The way to wait for real TTLs without a fixed
 * sleep.
 *
 * @example
 * ```ts
 * import type { SessionStore } from "../../infra/sessions.ts";
 * declare const store: SessionStore;
 * await waitFor(async () => (await store.serversByKeys(["k"]))[0] === null, {
 *   timeoutMs: 4000, what: "route k to expire",
 * });
 * ```
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number; what: string },
): Promise<void> {
  await eventually(check, opts.what, opts.timeoutMs, opts.intervalMs ?? 25);
}

/** Resolves after `ms` (only for letting real time pass, never to synchronise). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Lets `ms` of engine time pass: the engine's fake clock if it has one, else real time. */
export async function passTime(
  h: { advance?: (ms: number) => void | Promise<void> },
  ms: number,
): Promise<void> {
  if (h.advance) await h.advance(ms);
  else await sleep(ms);
}

/** Counts this isolate's open sockets and timers (node's view, which covers npm clients). */
export function openHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r !== "FSReqCallback").length;
}

/**
 * Asserts that the handle count falls back to `before` within `timeoutMs`
 * (sockets close a tick after `close()` resolves, so poll briefly).
 */
export async function assertNoLeakedHandles(before: number, timeoutMs = 1000): Promise<void> {
  try {
    await waitFor(() => openHandles() <= before, { timeoutMs, what: "open handles" });
  } catch {
    throw new Error(
      `still open after ${timeoutMs} ms: ${process.getActiveResourcesInfo()} (${before} before)`,
    );
  }
}

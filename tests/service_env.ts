/**
 * The skip-or-fail rule every integration test environment shares
 * (tests/redis_env.ts, tests/kafka_env.ts, tests/discovery_env.ts): a
 * service that does not answer ignores its tests with a note outside CI,
 * and fails them with a clear message under `CI=true`, where nothing may
 * be skipped.
 *
 * @module
 */

/** How to register and guard the tests of one probed service. */
export interface ServiceTarget {
  /** Whether the probe answered. */
  reachable: boolean;
  /** Register the service's tests with this `ignore` (true only when unreachable and not CI). */
  ignore: boolean;
  /** Throws the CI failure message when unreachable; call it first in each test. */
  assertReachable(): void;
}

/** What {@linkcode serviceTarget} needs to know about a probe. */
export interface ProbeOutcome {
  /** Display name: `Redis`, `Kafka`, `discovery`. */
  name: string;
  /** Where it was probed, e.g. the URL or the brokers joined. */
  where: string;
  /** The `scripts/services.sh up` argument that starts it. */
  service: string;
  /** The environment variable that points the tests elsewhere. */
  envVar: string;
  /** undefined when the probe answered, else why not. */
  error: string | undefined;
}

/**
 * The target for a probe's outcome; prints the "ignored" note once when
 * the service is down outside CI.
 *
 * @example
 * ```ts
 * import { serviceTarget } from "./service_env.ts";
 * const t = serviceTarget({
 *   name: "Redis", where: "redis://127.0.0.1:6379", service: "redis",
 *   envVar: "GOIM_TEST_REDIS_URL", error: undefined,
 * });
 * t.assertReachable();
 * ```
 */
export function serviceTarget(p: ProbeOutcome): ServiceTarget {
  const ci = Deno.env.get("CI") === "true";
  const reachable = p.error === undefined;
  const message = `CI=true: ${p.name} at ${p.where} unreachable (${p.error}); ` +
    `start it with scripts/services.sh up ${p.service}, or point ${p.envVar} at one`;
  if (!reachable && !ci) {
    console.warn(
      `note: ${p.name} at ${p.where} unreachable (${p.error}); ${p.name} tests are ignored. ` +
        `Start it with scripts/services.sh up ${p.service} or set ${p.envVar}.`,
    );
  }
  return {
    reachable,
    ignore: !reachable && !ci,
    assertReachable() {
      if (!reachable) throw new Error(message);
    },
  };
}

/**
 * The comet's record in the registry (infra/registry.ts): where clients
 * and job reach it and how loaded it is. Registered at start and on every
 * renew interval with a TTL of about three intervals, so a comet that dies
 * without deregistering drops out after a few missed renewals.
 *
 * @module
 */

import type { CometRecord, Registry } from "../infra/registry.ts";

/** Renew intervals a record outlives its last registration by. */
export const REGISTRATION_TTL_INTERVALS = 3;

/** The record without `updated` (set by the registry). */
export type CometRecordInit = Omit<CometRecord, "updated">;

/**
 * Keeps one comet registered.
 *
 * @example
 * ```ts
 * import type { Registry } from "../infra/registry.ts";
 * declare const registry: Registry, record: CometRecordInit;
 * const reg = new Registration(registry, 10_000, () => record);
 * await reg.register(); // at start and on every renew tick
 * await reg.deregister(); // at shutdown
 * ```
 */
export class Registration {
  readonly #registry: Registry;
  readonly #ttlMs: number;
  readonly #record: () => CometRecordInit;

  /** `record` is called on each registration for fresh counts. */
  constructor(registry: Registry, renewIntervalMs: number, record: () => CometRecordInit) {
    this.#registry = registry;
    this.#ttlMs = renewIntervalMs * REGISTRATION_TTL_INTERVALS;
    this.#record = record;
  }

  /** TTL given to each registration. */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** Creates or refreshes the record. */
  register(): Promise<void> {
    return this.#registry.register(this.#record(), this.#ttlMs);
  }

  /** Removes the record. */
  deregister(): Promise<void> {
    return this.#registry.deregister(this.#record().id);
  }
}

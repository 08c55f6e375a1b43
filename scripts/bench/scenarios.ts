/**
 * The named scenarios of the bench tool, after goim's benchmark programs
 * (Terry-Mao/goim `benchmarks/`): what each one runs and its defaults, which
 * every CLI flag may override.
 *
 * | scenario     | goim program           | pushes                                          |
 * | ------------ | ---------------------- | ----------------------------------------------- |
 * | `client`     | benchmarks/client      | none: connect, hold, heartbeat                  |
 * | `push`       | benchmarks/push        | one key (or `--by mids`: one mid) per request   |
 * | `push_room`  | benchmarks/push_room   | one room holding every client                   |
 * | `push_rooms` | benchmarks/push_rooms  | round robin over `--rooms` rooms                |
 * | `push_all`   | (the broadcast API)    | every connection                                |
 * | `published`  | goim's published case  | one room, 40/s, as many clients as the box holds |
 * | `sustained`  | —                      | room and mid pushes at once (20/s + 200/s)       |
 * | `smoke`      | —                      | every driver in turn, small: the CI check        |
 *
 * `sustained` is the steady load: 15,000 TCP clients in one room,
 * 20 room pushes/s and 200 mid pushes/s at the same time for a long phase,
 * each driver's latency measured on its own.
 *
 * Any scenario with one push phase can be swept (`--sweep R1,R2,…`,
 * {@linkcode sweepPhases}): the phase once per rate, in order.
 *
 * @module
 */

import type { PhaseSpec, PushKind } from "./run.ts";

/** What a scenario's phases are built from: its defaults after the CLI flags. */
export interface PhaseParams {
  /** Pushes per second. */
  rate: number;
  /** Push window (ms). */
  durationMs: number;
  /** `push`: keys or mids. */
  by: "keys" | "mids";
  /** `sustained`: room pushes per second. */
  roomRate: number;
  /** `sustained`: mid pushes per second. */
  midRate: number;
}

/** Defaults of a scenario; CLI flags override them. */
export interface ScenarioDefaults {
  /** One line for `--help`. */
  description: string;
  /** Clients. */
  clients: number;
  /** WebSocket share. */
  wsRatio: number;
  /** Workers (0 = derived from clients). */
  workers: number;
  /** Rooms the clients spread over. */
  rooms: number;
  /** Pushes per second. */
  rate: number;
  /** Push window (ms). */
  durationMs: number;
  /** Client heartbeat period (ms). */
  heartbeatMs: number;
  /** `sustained`: room pushes per second (`--room-rate`); absent elsewhere. */
  roomRate?: number;
  /** `sustained`: mid pushes per second (`--mid-rate`); absent elsewhere. */
  midRate?: number;
  /**
   * The phases, given the effective rates, duration and `--by` choice. Most
   * scenarios have one phase; smoke runs every driver in turn.
   */
  phases(o: PhaseParams): PhaseSpec[];
}

const one = (name: string, kind: PushKind) => (o: { rate: number; durationMs: number }) => [
  { name, kind, rate: o.rate, durationMs: o.durationMs },
];

/** Every scenario by name. */
export const SCENARIOS: Record<string, ScenarioDefaults> = {
  client: {
    description: "connections only: setup rate, heartbeats, server memory per connection",
    clients: 2000,
    wsRatio: 0.5,
    workers: 0,
    rooms: 1,
    rate: 0,
    durationMs: 20_000,
    // Short so that a bounded run sees every client beat a few times
    // (goim's client beats every 240 s).
    heartbeatMs: 5_000,
    phases: one("hold", "none"),
  },
  push: {
    description: "push to one connection key per request (--by mids: one user id), goim's push",
    clients: 1000,
    wsRatio: 0.5,
    workers: 0,
    rooms: 1,
    rate: 1000,
    durationMs: 20_000,
    heartbeatMs: 30_000,
    phases: (o) => [{ name: `push ${o.by}`, kind: o.by, rate: o.rate, durationMs: o.durationMs }],
  },
  push_room: {
    description: "push to one room that holds every client, goim's push_room",
    clients: 2000,
    wsRatio: 0.5,
    workers: 0,
    rooms: 1,
    rate: 40,
    durationMs: 20_000,
    heartbeatMs: 30_000,
    phases: one("push room", "room"),
  },
  push_rooms: {
    description: "push round robin over --rooms rooms (clients spread evenly), goim's push_rooms",
    clients: 2000,
    wsRatio: 0.5,
    workers: 0,
    rooms: 100,
    rate: 400,
    durationMs: 20_000,
    heartbeatMs: 30_000,
    phases: one("push rooms", "rooms"),
  },
  push_all: {
    description: "broadcast to every connection (/goim/push/all)",
    clients: 2000,
    wsRatio: 0.5,
    workers: 0,
    rooms: 1,
    rate: 10,
    durationMs: 20_000,
    heartbeatMs: 30_000,
    phases: one("push all", "all"),
  },
  published: {
    description: "goim's published case scaled to this box: one room, 40 pushes/s, " +
      "19,000 TCP clients over 3 workers",
    clients: 19_000,
    wsRatio: 0,
    workers: 3,
    rooms: 1,
    rate: 40,
    durationMs: 30_000,
    heartbeatMs: 30_000,
    phases: one("push room", "room"),
  },
  sustained: {
    description: "room and mid pushes at once (--room-rate, --mid-rate) to one room; " +
      "latency per driver, loop lag per role",
    clients: 15_000,
    wsRatio: 0,
    workers: 0,
    rooms: 1,
    rate: 0, // the two rates below
    durationMs: 60_000,
    heartbeatMs: 30_000,
    roomRate: 20,
    midRate: 200,
    phases: (o) => [{
      name: "sustained",
      kind: "mix",
      rate: o.roomRate + o.midRate,
      durationMs: o.durationMs,
      drivers: [{ kind: "room", rate: o.roomRate }, { kind: "mids", rate: o.midRate }],
    }],
  },
  smoke: {
    description: "CI check of the tool: 200 clients (half WebSocket), 2 workers, every driver " +
      "for 2 s at a modest rate",
    clients: 200,
    wsRatio: 0.5,
    workers: 2,
    rooms: 4,
    rate: 0, // per phase below
    durationMs: 2_000,
    heartbeatMs: 1_000,
    phases: (o) => [
      { name: "keys", kind: "keys", rate: 200, durationMs: o.durationMs },
      { name: "mids", kind: "mids", rate: 200, durationMs: o.durationMs },
      { name: "room", kind: "room", rate: 20, durationMs: o.durationMs },
      { name: "rooms", kind: "rooms", rate: 40, durationMs: o.durationMs },
      { name: "all", kind: "all", rate: 5, durationMs: o.durationMs },
    ],
  },
};

/**
 * Workers for `clients` when not given: at least 2 (so the multi-process
 * path is always exercised), about 7,000 clients each beyond that — well
 * under the 20,000 open files a process may hold, and a slice one
 * JavaScript thread can parse frames for.
 *
 * @example
 * ```ts
 * defaultWorkers(200); // 2
 * defaultWorkers(19_000); // 3
 * ```
 */
export function defaultWorkers(clients: number): number {
  return Math.min(clients, Math.max(2, Math.ceil(clients / 7000)));
}

/**
 * A sweep of a one-phase scenario: its phase once per offered rate, in the
 * given order, named with the rate; null when the scenario does not have
 * exactly one phase with one push kind (client, sustained, smoke).
 *
 * @example
 * ```ts
 * const o = { rate: 40, durationMs: 5000, by: "keys" as const, roomRate: 0, midRate: 0 };
 * sweepPhases(SCENARIOS.push_room, [10, 40], o)?.map((p) => p.name);
 * // ["push room @10/s", "push room @40/s"]
 * ```
 */
export function sweepPhases(
  sc: ScenarioDefaults,
  rates: number[],
  o: PhaseParams,
): PhaseSpec[] | null {
  const base = sc.phases(o);
  if (base.length !== 1 || base[0].kind === "none" || base[0].kind === "mix") return null;
  return rates.map((rate) => ({ ...base[0], name: `${base[0].name} @${rate}/s`, rate }));
}

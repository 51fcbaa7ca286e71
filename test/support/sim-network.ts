import type { RaftTransport } from '../../src/master/raft-driver.ts';
import { decodeMessage, encodeMessage, type Message } from '../../src/raft/index.ts';
import type { SimClock, SimRandom } from './sim-env.ts';

/** Per-message fault levels of the simulated network. */
export interface NetworkFaults {
  /** Probability that a message is lost. */
  readonly drop: number;
  /** Probability that a message is delivered twice (the copies travel independently). */
  readonly duplicate: number;
  /** Each copy's delay is uniform in [minDelayMs, maxDelayMs]: different delays reorder. */
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
}

export const RELIABLE_NETWORK: NetworkFaults = { drop: 0, duplicate: 0, minDelayMs: 1, maxDelayMs: 3 };

export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  /** Lost to a cut link or a peer that was down at delivery. */
  blocked: number;
  /** Messages that did not survive the wire encoding: a bug in whoever sent them. */
  malformed: number;
}

export interface TransportHooks {
  /** False once the sending process is dead: what it sends goes nowhere. */
  readonly alive: () => boolean;
  /** Sees every message the process sends, before the network does (the checker's tap). */
  readonly onSend?: (message: Message) => void;
}

/**
 * A seeded network between Raft peers: messages go through the wire codec, may be dropped,
 * duplicated, delayed and reordered, and are checked against the cut links at delivery (a healed
 * link lets in-flight messages through). Deliveries are events of the global clock, so a
 * message in flight outlives its sender; one that arrives at a peer that is down is lost.
 */
export class SimNetwork {
  readonly #clock: SimClock;
  readonly #rng: SimRandom;
  readonly #handlers = new Map<string, (message: Message) => void>();
  readonly #cuts = new Set<string>();
  faults: NetworkFaults = RELIABLE_NETWORK;
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, blocked: 0, malformed: 0 };
  /** In flight at most; beyond it messages are dropped (a congested network). */
  maxInFlight = 20_000;
  #inFlight = 0;

  constructor(clock: SimClock, rng: SimRandom) {
    this.#clock = clock;
    this.#rng = rng;
  }

  /** The transport of one process incarnation of `id`. */
  transport(id: string, hooks: TransportHooks): RaftTransport {
    return {
      send: (message) => {
        if (!hooks.alive()) return;
        hooks.onSend?.(message);
        this.#send(message);
      },
      onMessage: (handler) => {
        if (hooks.alive()) this.#handlers.set(id, handler);
      },
    };
  }

  /** `id` is down: nothing reaches it until a new incarnation registers a handler. */
  detach(id: string): void {
    this.#handlers.delete(id);
  }

  cutOneWay(from: string, to: string): void {
    if (from !== to) this.#cuts.add(`${from}>${to}`);
  }

  cutBoth(a: string, b: string): void {
    this.cutOneWay(a, b);
    this.cutOneWay(b, a);
  }

  /** Cuts every link between `side` and the rest of `all`. */
  partition(side: readonly string[], all: readonly string[]): void {
    const inside = new Set(side);
    for (const a of inside) for (const b of all) if (!inside.has(b)) this.cutBoth(a, b);
  }

  isolate(id: string, all: readonly string[]): void {
    this.partition([id], all);
  }

  heal(): void {
    this.#cuts.clear();
  }

  blocked(from: string, to: string): boolean {
    return this.#cuts.size > 0 && this.#cuts.has(`${from}>${to}`);
  }

  get cutLinks(): number {
    return this.#cuts.size;
  }

  #send(message: Message): void {
    this.stats.sent++;
    const wire = encodeMessage(message);
    if (this.#inFlight >= this.maxInFlight || this.#rng.chance(this.faults.drop)) {
      this.stats.dropped++;
      return;
    }
    const copies = this.#rng.chance(this.faults.duplicate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let k = 0; k < copies; k++) {
      const delay = this.#rng.int(this.faults.minDelayMs, Math.max(this.faults.minDelayMs, this.faults.maxDelayMs));
      this.#inFlight++;
      this.#clock.setTimeout(() => {
        this.#inFlight--;
        this.#deliver(message.from, message.to, wire);
      }, delay);
    }
  }

  #deliver(from: string, to: string, wire: Uint8Array): void {
    const handler = this.#handlers.get(to);
    if (handler === undefined || this.blocked(from, to)) {
      this.stats.blocked++;
      return;
    }
    const message = decodeMessage(wire);
    if (message === null) {
      this.stats.malformed++;
      return;
    }
    this.stats.delivered++;
    handler(message);
  }
}

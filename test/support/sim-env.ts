import type { Clock, Rng, TimerHandle } from '../../src/env/index.ts';
import { seededRng } from '../../src/raft/index.ts';

/**
 * The simulated environment the master simulator runs the real code in: a virtual clock whose
 * timers fire only when the simulation advances it, seeded randomness, and a way to let every
 * promise continuation settle between two events.
 *
 * Why one macrotask turn per event is enough, and deterministic: in the simulation nothing does
 * real I/O and nothing uses a real timer (time, network, disk and the state machine's pauses are
 * all events of this clock). So after an event's callback ran, the only work left in the process
 * is a finite chain of microtasks (promise continuations, each of which may queue more). Node
 * drains the whole microtask queue — including what microtasks queue meanwhile — before it runs
 * the next macrotask; awaiting `setImmediate` is therefore "run every continuation to
 * completion". Every continuation that can still run later waits on a future event of this
 * clock. Microtasks run in FIFO order of the calls that queued them, and those calls come from a
 * deterministic sequence of events, so the interleaving is the same on every run of a seed.
 * (Other macrotasks of the test runner may run in that turn; they touch nothing simulated.)
 */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

interface TimerItem {
  at: number;
  seq: number;
  /** Null once cancelled (lazy deletion from the heap). */
  fn: (() => void) | null;
  readonly owner: ClockScope | null;
}

/** A binary min-heap of timers ordered by (time, insertion order). */
class TimerHeap {
  readonly #heap: TimerItem[] = [];

  get size(): number {
    return this.#heap.length;
  }

  push(item: TimerItem): void {
    const heap = this.#heap;
    heap.push(item);
    let k = heap.length - 1;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (!before(item, heap[parent]!)) break;
      heap[k] = heap[parent]!;
      k = parent;
    }
    heap[k] = item;
  }

  peek(): TimerItem | undefined {
    return this.#heap[0];
  }

  pop(): TimerItem | undefined {
    const heap = this.#heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let k = 0;
      for (;;) {
        const left = 2 * k + 1;
        if (left >= heap.length) break;
        const right = left + 1;
        const child = right < heap.length && before(heap[right]!, heap[left]!) ? right : left;
        if (!before(heap[child]!, last)) break;
        heap[k] = heap[child]!;
        k = child;
      }
      heap[k] = last;
    }
    return top;
  }
}

function before(a: TimerItem, b: TimerItem): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** Thrown out of the run loop when an event callback threw: a bug in the code under test. */
export class SimEventError extends Error {
  constructor(cause: unknown) {
    super(`an event callback threw: ${(cause as Error)?.stack ?? String(cause)}`, { cause });
    this.name = 'SimEventError';
  }
}

/**
 * Virtual time in integer milliseconds. `setTimeout`/`setInterval` put events in a priority
 * queue ordered by (time, insertion order); `runUntil` pops them one at a time, sets the time,
 * runs the callback, lets continuations settle, then calls the `afterEvent` hook (the checker).
 */
export class SimClock implements Clock {
  #now = 0;
  #seq = 0;
  readonly #heap = new TimerHeap();
  #events = 0;
  #afterEvent: (() => void) | undefined;

  now(): number {
    return this.#now;
  }

  /** Events run so far. */
  get events(): number {
    return this.#events;
  }

  /** Called after every event, once its continuations settled. */
  onAfterEvent(hook: () => void): void {
    this.#afterEvent = hook;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.schedule(fn, ms, null);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.scheduleInterval(fn, ms, null);
  }

  /** A clock whose timers die with the scope: the clock of one process incarnation. */
  scope(name: string): ClockScope {
    return new ClockScope(this, name);
  }

  /** @internal */
  schedule(fn: () => void, ms: number, owner: ClockScope | null): TimerHandle {
    const delay = Number.isFinite(ms) && ms > 0 ? Math.floor(ms) : 0;
    const item: TimerItem = { at: this.#now + delay, seq: this.#seq++, fn, owner };
    this.#heap.push(item);
    return {
      cancel: () => {
        item.fn = null;
      },
    };
  }

  /** @internal */
  scheduleInterval(fn: () => void, ms: number, owner: ClockScope | null): TimerHandle {
    const period = Number.isFinite(ms) && ms >= 1 ? Math.floor(ms) : 1;
    let cancelled = false;
    let current: TimerHandle;
    const fire = () => {
      if (cancelled) return;
      current = this.schedule(fire, period, owner); // rescheduled first: fn may cancel it
      fn();
    };
    current = this.schedule(fire, period, owner);
    return {
      cancel: () => {
        cancelled = true;
        current.cancel();
      },
    };
  }

  /** The time of the next live event, or null when none is queued. */
  nextTime(): number | null {
    this.#dropDead();
    return this.#heap.peek()?.at ?? null;
  }

  get pending(): number {
    return this.#heap.size;
  }

  /**
   * Runs every event due at or before `time` (one at a time, each followed by a settle and the
   * afterEvent hook), then sets the clock to `time`. `stop` is checked after every event.
   */
  async runUntil(time: number, stop?: () => boolean): Promise<void> {
    for (;;) {
      if (stop?.()) return;
      this.#dropDead();
      const next = this.#heap.peek();
      if (next === undefined || next.at > time) break;
      await this.#runOne();
    }
    if (time > this.#now) this.#now = time;
  }

  /** Advances the clock by `ms`, running whatever falls due. */
  advance(ms: number, stop?: () => boolean): Promise<void> {
    return this.runUntil(this.#now + ms, stop);
  }

  async #runOne(): Promise<void> {
    const item = this.#heap.pop()!;
    const fn = item.fn!;
    item.fn = null;
    this.#now = item.at;
    this.#events++;
    try {
      fn();
    } catch (err) {
      throw new SimEventError(err);
    }
    await settle();
    this.#afterEvent?.();
  }

  #dropDead(): void {
    for (let top = this.#heap.peek(); top !== undefined && (top.fn === null || (top.owner !== null && top.owner.dead)); top = this.#heap.peek()) {
      this.#heap.pop();
    }
  }
}

/**
 * The clock of one process incarnation: its timers never fire once the process is killed, and
 * it refuses new ones — so everything the dead incarnation was waiting for waits forever.
 */
export class ClockScope implements Clock {
  readonly #clock: SimClock;
  readonly name: string;
  #dead = false;

  constructor(clock: SimClock, name: string) {
    this.#clock = clock;
    this.name = name;
  }

  get dead(): boolean {
    return this.#dead;
  }

  now(): number {
    return this.#clock.now();
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (this.#dead) return { cancel() {} };
    return this.#clock.schedule(fn, ms, this);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    if (this.#dead) return { cancel() {} };
    return this.#clock.scheduleInterval(fn, ms, this);
  }

  /** The process is gone: none of its timers fires again. */
  kill(): void {
    this.#dead = true;
  }

  /** Resolves after `ms` of simulated time (never, once the scope is dead). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => void this.setTimeout(resolve, ms));
  }
}

/** Seeded randomness with the helpers a simulation needs. */
export class SimRandom {
  readonly next: Rng;

  constructor(seed: number) {
    this.next = seededRng(seed >>> 0);
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  /** A fresh 32-bit seed for a derived generator. */
  seed(): number {
    return Math.floor(this.next() * 2 ** 32) >>> 0;
  }

  /** A derived, independent generator. */
  fork(): SimRandom {
    return new SimRandom(this.seed());
  }
}

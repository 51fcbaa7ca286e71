import type { Clock, TimerHandle } from '../../src/env/index.ts';

/**
 * A clock for tests: time moves only when `advance` is called, and timers due by then fire, in
 * time order. Real I/O still runs on real time, so a test waits for the code under test to reach
 * a timer (`until(() => clock.pending > 0)`) before advancing.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: Array<{ at: number; seq: number; fn: () => void; every?: number }> = [];

  constructor(startMs = 1_000_000) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.#timers.length;
  }

  /** When the next timer fires (clock ms), if any. */
  get nextAt(): number | undefined {
    return this.#timers.reduce<number | undefined>((min, t) => (min === undefined || t.at < min ? t.at : min), undefined);
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.#add(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.#add(fn, ms, Math.max(1, ms));
  }

  /** Moves time forward by `ms`, firing every timer due on the way (each at its own time). */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.#now = Math.max(this.#now, due.at);
      this.#timers = this.#timers.filter((t) => t !== due);
      if (due.every !== undefined) this.#timers.push({ ...due, at: due.at + due.every, seq: this.#seq++ });
      due.fn();
    }
    this.#now = end;
  }

  /** Sets the time (forward only), firing what is due. */
  set(ms: number): void {
    this.advance(Math.max(0, ms - this.#now));
  }

  #add(fn: () => void, ms: number, every: number | undefined): TimerHandle {
    const timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, ...(every !== undefined ? { every } : {}) };
    this.#timers.push(timer);
    return { cancel: () => void (this.#timers = this.#timers.filter((t) => t !== timer)) };
  }
}

/** Polls `condition` on real time (I/O under way) until it holds; fails after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

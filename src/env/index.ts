import { randomBytes } from 'node:crypto';

/**
 * The environment a component with side effects takes instead of reaching for globals: time,
 * timers and randomness. Production passes `systemClock`/`systemRng`; the simulator passes a
 * virtual clock whose timers fire when it advances time, so the real code runs deterministically.
 */
export interface TimerHandle {
  /** Stops the timer; a no-op once it fired or was cancelled. */
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic-enough wall clock. */
  now(): number;
  /** Runs `fn` once after `ms`. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Runs `fn` every `ms` until cancelled. */
  setInterval(fn: () => void, ms: number): TimerHandle;
}

/** Node's timers; they do not keep the process alive (a server's sockets do). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
};

/** A number in [0, 1). */
export type Rng = () => number;

export const systemRng: Rng = () => randomBytes(4).readUInt32BE(0) / 2 ** 32;

/** 16 hex characters from `rng` (ids, read contexts): deterministic under a seeded rng. */
export function randomHex(rng: Rng): string {
  let out = '';
  for (let k = 0; k < 4; k++) out += Math.floor(rng() * 0x10000).toString(16).padStart(4, '0');
  return out;
}

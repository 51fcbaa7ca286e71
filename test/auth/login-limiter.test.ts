import { describe, expect, it } from 'vitest';
import { LoginLimiter } from '../../src/auth/index.ts';
import type { LoginCheck } from '../../src/auth/index.ts';

function fakeClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

function locked(c: LoginCheck): number {
  if (c.allowed) throw new Error('allowed');
  return c.retryAfterMs;
}

describe('login limiter: refusals first', () => {
  it('after the free failures, a user is locked with doubling waits, capped', () => {
    const clock = fakeClock();
    const l = new LoginLimiter({ clock, freeFailures: 3, baseDelayMs: 1000, maxDelayMs: 8000 });
    for (let i = 0; i < 3; i++) {
      expect(l.check('alice', 'p1').allowed).toBe(true);
      l.recordFailure('alice', `p${i}`);
    }
    expect(l.check('alice', 'p9').allowed).toBe(true);
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      l.recordFailure('alice', `q${i}`); // a different peer each time: the user's count still grows
      const c = l.check('alice', 'fresh-peer');
      waits.push(locked(c));
      expect(c.allowed === false && c.message).toMatch(/^too many failed logins for user alice: try again in \d+ s$/);
      clock.advance(waits[i] ?? 0);
      expect(l.check('alice', 'fresh-peer').allowed).toBe(true);
    }
    expect(waits).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
  });

  it('a peer guessing many users is locked too, for any user', () => {
    const clock = fakeClock();
    const l = new LoginLimiter({ clock, freeFailures: 2 });
    for (let i = 0; i < 3; i++) l.recordFailure(`user${i}`, 'mallory');
    const c = l.check('someone-else', 'mallory');
    expect(locked(c)).toBe(1000);
    expect(c.allowed === false && c.message).toContain('from this peer');
    expect(l.check('someone-else', 'honest-peer').allowed).toBe(true);
  });

  it('a success clears the user, not the peer', () => {
    const clock = fakeClock();
    const l = new LoginLimiter({ clock, freeFailures: 1 });
    l.recordFailure('alice', 'p');
    l.recordFailure('alice', 'p');
    expect(l.check('alice', 'other').allowed).toBe(false);
    clock.advance(1000);
    l.recordSuccess('alice', 'p');
    expect(l.check('alice', 'other').allowed).toBe(true);
    l.recordFailure('bob', 'p');
    expect(l.check('carol', 'p').allowed).toBe(false); // the peer's count was not reset
  });
});

describe('login limiter', () => {
  it('failures are forgotten a while after the last one', () => {
    const clock = fakeClock();
    const l = new LoginLimiter({ clock, freeFailures: 1, forgetAfterMs: 60_000 });
    l.recordFailure('alice', 'p');
    l.recordFailure('alice', 'p');
    expect(l.check('alice', 'p').allowed).toBe(false);
    clock.advance(60_000);
    expect(l.check('alice', 'p').allowed).toBe(true);
    l.recordFailure('alice', 'p'); // counted from zero again: still free
    expect(l.check('alice', 'p').allowed).toBe(true);
  });

  it('memory is bounded: forgotten entries go first, then the least recently failed', () => {
    const clock = fakeClock();
    const l = new LoginLimiter({ clock, maxEntries: 100, freeFailures: 0, forgetAfterMs: 10_000 });
    for (let i = 0; i < 1000; i++) l.recordFailure(`u${i}`, `p${i}`);
    expect(l.size).toEqual({ users: 100, peers: 100 });
    expect(l.check('u999', 'x').allowed).toBe(false);
    expect(l.check('u0', 'x').allowed).toBe(true);
    clock.advance(10_000);
    l.recordFailure('late', 'late');
    expect(l.size).toEqual({ users: 1, peers: 1 });
  });

  it('bad options are refused', () => {
    const clock = fakeClock();
    expect(() => new LoginLimiter({ clock, maxEntries: 0 })).toThrow(/maxEntries/);
    expect(() => new LoginLimiter({ clock, baseDelayMs: 5000, maxDelayMs: 10 })).toThrow(/maxDelayMs/);
  });
});

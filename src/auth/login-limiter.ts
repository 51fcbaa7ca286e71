import { DfsError } from '../errors/index.ts';
import type { Clock } from '../env/index.ts';

/**
 * Failed logins, limited per user name and per peer with exponential backoff.
 *
 * Each key (a user name, and separately the caller's peer id) may fail `freeFailures` times; each
 * failure after that locks the key for baseDelayMs x 2^(failures beyond the free ones - 1), capped
 * at maxDelayMs. A key's failures are forgotten `forgetAfterMs` after its last failure. A login is
 * refused unread while either its user or its peer is locked, so guessing one user's password
 * from many peers, or many users' from one peer, is slowed alike. A success clears the user's
 * count, not the peer's (a peer with one good account must not reset its guessing of others).
 *
 * Names that are not users count too (so the limiter's answers do not tell which names exist).
 * Memory is bounded: at most `maxEntries` users and as many peers; when full, forgotten entries
 * go first, then the least recently failed. (A flood of failures under fresh names and peers can
 * thus push out a locked entry; each of those failures costs the attacker a full password hash on
 * the master, which is what bounds it.) The master should also bound password checks in flight.
 *
 * Usage on a master: `check(user, peer)` before verifying the password; then `recordFailure` or
 * `recordSuccess`.
 */
export interface LoginLimiterOptions {
  readonly clock: Pick<Clock, 'now'>;
  /** Failures allowed before any wait. Default 5. */
  readonly freeFailures?: number;
  /** The first wait. Default 1 s. */
  readonly baseDelayMs?: number;
  /** The longest wait. Default 15 min. */
  readonly maxDelayMs?: number;
  /** Failures are forgotten this long after a key's last one. Default 1 h. */
  readonly forgetAfterMs?: number;
  /** Users tracked at most (and as many peers). Default 10,000. */
  readonly maxEntries?: number;
}

export type LoginCheck =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly code: 'ERR_UNAUTHENTICATED'; readonly retryAfterMs: number; readonly message: string };

interface Entry {
  failures: number;
  lastFailureMs: number;
  lockedUntilMs: number;
}

class BoundedFailures {
  readonly #entries = new Map<string, Entry>();
  readonly #max: number;
  readonly #forgetAfterMs: number;

  constructor(max: number, forgetAfterMs: number) {
    this.#max = max;
    this.#forgetAfterMs = forgetAfterMs;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string, now: number): Entry | undefined {
    const e = this.#entries.get(key);
    if (e !== undefined && now - e.lastFailureMs >= this.#forgetAfterMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** Records a failure and returns the key's entry, moved to the most recent end. */
  fail(key: string, now: number, lockFor: (failures: number) => number): Entry {
    const e = this.get(key, now) ?? { failures: 0, lastFailureMs: now, lockedUntilMs: 0 };
    this.#entries.delete(key);
    if (this.#entries.size >= this.#max) this.#evict(now);
    e.failures += 1;
    e.lastFailureMs = now;
    e.lockedUntilMs = Math.max(e.lockedUntilMs, now + lockFor(e.failures));
    this.#entries.set(key, e);
    return e;
  }

  clear(key: string): void {
    this.#entries.delete(key);
  }

  #evict(now: number): void {
    for (const [k, e] of this.#entries) if (now - e.lastFailureMs >= this.#forgetAfterMs) this.#entries.delete(k);
    while (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
  }
}

function positiveInt(name: string, value: number, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) throw new DfsError('ERR_INVALID_ARGUMENT', `${name} must be an integer >= ${min}, got ${String(value)}`);
  return value;
}

export class LoginLimiter {
  readonly #clock: Pick<Clock, 'now'>;
  readonly #free: number;
  readonly #base: number;
  readonly #maxDelay: number;
  readonly #users: BoundedFailures;
  readonly #peers: BoundedFailures;

  constructor(options: LoginLimiterOptions) {
    this.#clock = options.clock;
    this.#free = positiveInt('freeFailures', options.freeFailures ?? 5, 0);
    this.#base = positiveInt('baseDelayMs', options.baseDelayMs ?? 1000, 1);
    this.#maxDelay = positiveInt('maxDelayMs', options.maxDelayMs ?? 15 * 60_000, this.#base);
    const forget = positiveInt('forgetAfterMs', options.forgetAfterMs ?? 60 * 60_000, 1);
    const max = positiveInt('maxEntries', options.maxEntries ?? 10_000, 1);
    this.#users = new BoundedFailures(max, forget);
    this.#peers = new BoundedFailures(max, forget);
  }

  /** Whether a login attempt for `user` from `peer` may be checked now. */
  check(user: string, peer: string): LoginCheck {
    const now = this.#clock.now();
    const u = this.#users.get(user, now);
    const p = this.#peers.get(peer, now);
    const until = Math.max(u?.lockedUntilMs ?? 0, p?.lockedUntilMs ?? 0);
    if (until <= now) return { allowed: true };
    const retryAfterMs = until - now;
    const which = (u?.lockedUntilMs ?? 0) >= (p?.lockedUntilMs ?? 0) ? `for user ${user}` : 'from this peer';
    return {
      allowed: false,
      code: 'ERR_UNAUTHENTICATED',
      retryAfterMs,
      message: `too many failed logins ${which}: try again in ${Math.ceil(retryAfterMs / 1000)} s`,
    };
  }

  recordFailure(user: string, peer: string): void {
    const now = this.#clock.now();
    const lockFor = (failures: number): number => {
      const beyond = failures - this.#free;
      return beyond <= 0 ? 0 : Math.min(this.#maxDelay, this.#base * 2 ** Math.min(beyond - 1, 40));
    };
    this.#users.fail(user, now, lockFor);
    this.#peers.fail(peer, now, lockFor);
  }

  recordSuccess(user: string, _peer: string): void {
    this.#users.clear(user);
  }

  /** Entries held (users, peers): for tests and metrics. */
  get size(): { readonly users: number; readonly peers: number } {
    return { users: this.#users.size, peers: this.#peers.size };
  }
}

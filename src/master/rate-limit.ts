import type { Clock } from '../env/index.ts';

/**
 * A token bucket per peer, on the injected clock: `burst` requests at once, then `perSecond`.
 * Cheap guards for requests that cost the leader work a peer could ask for in a loop (a state
 * hash, a replica check, a scrub). Memory is bounded: at most `maxPeers` buckets, the one used
 * least recently dropped first (a dropped peer starts again with a full bucket).
 */
export interface PeerRateLimitOptions {
  readonly clock: Pick<Clock, 'now'>;
  readonly perSecond: number;
  readonly burst: number;
  readonly maxPeers?: number;
}

export class PeerRateLimit {
  readonly #o: PeerRateLimitOptions;
  readonly #buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(options: PeerRateLimitOptions) {
    if (!(options.perSecond > 0 && options.burst >= 1)) throw new Error('a rate limit needs perSecond > 0 and burst >= 1');
    this.#o = options;
  }

  /** Takes one token for `peer`; false when its bucket is empty (the request should be refused). */
  take(peer: string): boolean {
    const now = this.#o.clock.now();
    const b = this.#buckets.get(peer) ?? { tokens: this.#o.burst, atMs: now };
    b.tokens = Math.min(this.#o.burst, b.tokens + (Math.max(0, now - b.atMs) * this.#o.perSecond) / 1000);
    b.atMs = now;
    this.#buckets.delete(peer);
    if (b.tokens < 1) {
      this.#buckets.set(peer, b);
      return false;
    }
    b.tokens -= 1;
    this.#buckets.set(peer, b);
    if (this.#buckets.size > (this.#o.maxPeers ?? 10_000)) {
      const oldest = this.#buckets.keys().next();
      if (oldest.done !== true) this.#buckets.delete(oldest.value);
    }
    return true;
  }
}

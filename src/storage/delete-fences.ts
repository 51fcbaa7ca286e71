import type { ChunkId } from '../chunker/index.ts';
import { DfsError } from '../errors/index.ts';

/** Ids whose put fence is remembered by default (see DeleteFences). */
export const DEFAULT_FENCE_CAPACITY = 1_000_000;

/**
 * Which deletes a node may still carry out, by fence.
 *
 * Every put and every delete a node receives carries a fence: a number issued by the Raft leader
 * from one monotonic counter (term * 2^32 + a per-term counter, so a later leader's fences are
 * larger). A delete decided with fence E must not remove a chunk that a put with fence P > E
 * found or wrote here: the put may belong to a commit the GC did not know about when it decided
 * (it acked at once because the chunk was already here, and the delete would then leave the
 * committed file pointing at nothing).
 *
 * Memory is bounded: the highest put fence is kept per id for at most `capacity` ids, in two
 * generations: puts go into the young one; when it holds half the capacity, the old one is
 * forgotten and the young one becomes old (a put of an old id moves it back to the young one).
 * Forgetting raises `floor` to the highest fence forgotten, and a delete whose fence is not above
 * the floor is refused. So the ids put most recently (at least half the capacity) are known one by
 * one, and everything older coarsely, through the floor. Refusing is always safe (the GC retries
 * later, with a newer fence), so forgetting only ever costs a retry. (Not one Map in LRU order:
 * V8 Maps evicted from the front slow down quadratically, 14 s for 200k evictions at 1M ids.)
 *
 * A fresh process knows no fences at all, so its floor is unknown (undefined) and every delete is
 * refused until `raiseFloor` gives it one at least as high as any fence issued before the start
 * (the leader's next fence, learnt from a heartbeat answer).
 *
 * Not synchronised: the caller checks and acts under its own per-id lock (ChunkStore does).
 */
export class DeleteFences {
  readonly capacity: number;
  /** Ids per generation: the young one is retired when it holds this many. */
  readonly #generation: number;
  #young = new Generation();
  #old = new Generation();
  #floor: number | undefined;

  constructor(options: { readonly capacity?: number; readonly floor?: number } = {}) {
    const capacity = options.capacity ?? DEFAULT_FENCE_CAPACITY;
    if (!(Number.isSafeInteger(capacity) && capacity > 0)) throw new DfsError('ERR_INVALID_ARGUMENT', `fence capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    // old <= g and young < g after every put: at most 2g - 1 <= capacity ids.
    this.#generation = Math.ceil(capacity / 2);
    if (options.floor !== undefined) this.raiseFloor(options.floor);
  }

  /** Deletes with a fence at or below this are refused; undefined (all refused) until raised. */
  get floor(): number | undefined {
    return this.#floor;
  }

  /** Ids whose put fence is remembered now. */
  get size(): number {
    return this.#young.fences.size + this.#old.fences.size;
  }

  /** Lifts the floor to `fence` (never lowers it). */
  raiseFloor(fence: number): void {
    assertFence(fence);
    if (this.#floor === undefined || fence > this.#floor) this.#floor = fence;
  }

  /** Records that a put of `id` with `fence` was accepted (written, or found already stored). */
  notePut(id: ChunkId, fence: number): void {
    assertFence(fence);
    const known = this.#young.fences.get(id) ?? this.#old.fences.get(id);
    this.#old.fences.delete(id); // moves to the young generation (its fence stays in #old.max: harmless)
    this.#young.set(id, known === undefined ? fence : Math.max(known, fence));
    if (this.#young.fences.size >= this.#generation) this.#retire();
  }

  /** Whether a delete of `id` decided with `fence` may remove it. */
  mayDelete(id: ChunkId, fence: number): boolean {
    assertFence(fence);
    if (this.#floor === undefined || fence <= this.#floor) return false;
    // Fences are unique, so equality cannot happen between a put and a delete; refuse it anyway.
    const put = this.#young.fences.get(id) ?? this.#old.fences.get(id);
    return put === undefined || fence > put;
  }

  /** Forgets the old generation (its highest fence becomes the floor for every id); the young one ages. */
  #retire(): void {
    if (this.#old.max !== undefined) this.raiseFloor(this.#old.max);
    this.#old = this.#young;
    this.#young = new Generation();
  }
}

/** Put fences by id, and the highest fence it ever held. */
class Generation {
  readonly fences = new Map<ChunkId, number>();
  max: number | undefined;

  set(id: ChunkId, fence: number): void {
    this.fences.set(id, fence);
    if (this.max === undefined || fence > this.max) this.max = fence;
  }
}

/** A fence is a safe integer >= 0 (it travels as a JSON number). */
export function isFence(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

export function assertFence(value: unknown): asserts value is number {
  if (!isFence(value)) throw new DfsError('ERR_INVALID_ARGUMENT', `a fence must be a safe integer >= 0, got ${String(value)}`);
}

import { type DeleteFences, isFence } from '../storage/index.ts';

/** Fences are term * 2^32 + a per-term counter. */
const TERM_UNIT = 2 ** 32;

/**
 * Gives a node's delete floor (DeleteFences) the leader's fence from heartbeat answers: the
 * leader's next fence, larger than every fence issued before the answer.
 *
 * Why at start: a node that restarts has forgotten which puts it accepted, and a put it acked
 * just before the restart (finding the chunk already stored, so nothing new is on disk) may face
 * a delete decided before that put and still in flight. Until the floor is at least every fence
 * issued before the start, the node cannot tell such a delete from a good one, so it refuses all
 * (DeleteFences starts with no floor). The first answer's fence is such a value: puts accepted
 * after the start are remembered one by one.
 *
 * Why not on every answer: that would refuse every delete decided before the latest heartbeat,
 * one beat behind forever in the worst case; safe, but it would slow GC for nothing, since
 * everything after the start is remembered per id (or covered by the floor when forgotten).
 *
 * Why again when the term grows: the first answer after a restart may come from a deposed leader
 * that has not noticed yet, whose fences are below those of the new leader, which may have issued
 * a put fence the node accepted before it restarted. The first fence of each newer term covers
 * that too. It costs nothing worth keeping: only deletes decided by an earlier leader (or by the
 * new one before this answer; a new leader waits a grace period before collecting) are refused.
 */
export class LeaderFence {
  readonly #fences: DeleteFences;
  /** The highest term whose fence raised the floor; -1 before any. */
  #term = -1;

  constructor(fences: DeleteFences) {
    this.#fences = fences;
  }

  /** Takes the `fence` field of a heartbeat answer, whatever it is: ignored unless a valid fence. */
  observe(fence: unknown): void {
    if (!isFence(fence)) return;
    const term = Math.floor(fence / TERM_UNIT);
    if (term <= this.#term) return;
    this.#term = term;
    this.#fences.raiseFloor(fence);
  }
}

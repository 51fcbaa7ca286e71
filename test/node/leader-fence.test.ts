import { describe, expect, it } from 'vitest';
import { LeaderFence } from '../../src/node/leader-fence.ts';
import { DeleteFences } from '../../src/storage/index.ts';

const fence = (term: number, n: number): number => term * 2 ** 32 + n;

describe('LeaderFence (heartbeat answers raise the delete floor)', () => {
  it('raises the floor with the first valid fence after start, not with later ones of the same term', () => {
    const fences = new DeleteFences();
    const leader = new LeaderFence(fences);
    for (const junk of [undefined, null, '5', -1, 1.5, 2 ** 53, { fence: 5 }]) leader.observe(junk); // an older master, or garbage
    expect(fences.floor).toBeUndefined();
    leader.observe(fence(3, 100));
    expect(fences.floor).toBe(fence(3, 100));
    // Later beats of the same leader leave it: deletes decided in between stay allowed.
    leader.observe(fence(3, 500));
    expect(fences.floor).toBe(fence(3, 100));
    expect(fences.mayDelete('a'.repeat(64), fence(3, 200))).toBe(true);
  });

  it('raises it again for a newer term (the first answer may have come from a deposed leader), never for an older one', () => {
    const fences = new DeleteFences();
    const leader = new LeaderFence(fences);
    leader.observe(fence(3, 100));
    leader.observe(fence(4, 7));
    expect(fences.floor).toBe(fence(4, 7));
    leader.observe(fence(3, 900)); // the deposed leader again
    leader.observe(fence(4, 50));
    expect(fences.floor).toBe(fence(4, 7));
  });
});

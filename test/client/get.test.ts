import { describe, expect, it } from 'vitest';
import { HolderLoad } from '../../src/client/get.ts';

describe('HolderLoad: which replica a get reads first', () => {
  it('spreads equal holders evenly instead of always reading the first listed', () => {
    const load = new HolderLoad();
    const holders = ['a', 'b', 'c'];
    const firsts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const first = load.order(holders, i)[0]!;
      firsts.set(first, (firsts.get(first) ?? 0) + 1);
    }
    expect(Object.fromEntries(firsts)).toEqual({ a: 100, b: 100, c: 100 });
  });

  it('reads from the least busy holder first, and forgets a fetch once it ends', () => {
    const load = new HolderLoad();
    load.start('a');
    load.start('a');
    load.start('b');
    expect(load.order(['a', 'b', 'c'], 0)).toEqual(['c', 'b', 'a']);
    load.end('a');
    load.end('a');
    load.end('b');
    expect(load.order(['a', 'b', 'c'], 0)).toEqual(['a', 'b', 'c']);
    expect(load.order(['a', 'b', 'c'], 1)).toEqual(['b', 'c', 'a']);
  });

  it('keeps every holder, so a failed read can still try the others', () => {
    const load = new HolderLoad();
    load.start('x');
    expect(load.order(['x', 'y'], 7).sort()).toEqual(['x', 'y']);
    expect(load.order([], 3)).toEqual([]);
  });
});

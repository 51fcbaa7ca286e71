import { describe, expect, it } from 'vitest';
import type { Entry, Snapshot } from '../../src/raft/index.ts';
import { RaftInvariantError, RaftNode } from '../../src/raft/index.ts';
import { bytes, config, drainReady, options } from './helpers.ts';

describe('the Ready contract', () => {
  it('bootstrap hands out the configuration as snapshot 0 and the initial hard state to persist', () => {
    const node = RaftNode.bootstrap(options('a'), config(['a', 'b', 'c']));
    const rd = drainReady(node);
    expect(rd.snapshot?.metadata).toEqual({ index: 0, term: 0, config: config(['a', 'b', 'c']) });
    expect(rd.hardState).toEqual({ term: 0, vote: null, commit: 0 });
    expect(node.hasReady()).toBe(false);
  });

  it('forbids a second ready() or any input before advance()', () => {
    const node = RaftNode.bootstrap(options('a'), config(['a', 'b', 'c']));
    node.ready();
    expect(() => node.ready()).toThrow(RaftInvariantError);
    expect(() => node.tick()).toThrow(RaftInvariantError);
    expect(() => node.propose(bytes('x'))).toThrow(RaftInvariantError);
    node.advance();
    expect(() => node.advance()).toThrow(RaftInvariantError);
  });

  it('hands out each entry to persist once and each committed entry to apply once', () => {
    const node = RaftNode.bootstrap(options('solo'), config(['solo']));
    drainReady(node);
    for (let k = 0; k < 25 && node.status().role !== 'leader'; k++) node.tick();
    node.propose(bytes('one'));
    const first = drainReady(node);
    expect(first.entries.map((e) => e.index)).toEqual([1, 2]);
    expect(first.committedEntries.map((e) => e.index)).toEqual([1, 2]);
    expect(first.hardState?.commit).toBe(2);
    node.propose(bytes('two'));
    const second = drainReady(node);
    expect(second.entries.map((e) => e.index)).toEqual([3]);
    expect(second.committedEntries.map((e) => e.index)).toEqual([3]);
  });

  it('restart from exactly what was persisted reproduces the node, and runs are deterministic', () => {
    const run = () => {
      const node = RaftNode.bootstrap(options('solo'), config(['solo']));
      let hardState = { term: 0, vote: null as string | null, commit: 0 };
      let snapshot: Snapshot | null = null;
      let entries: Entry[] = [];
      const trace: string[] = [];
      for (let k = 0; k < 30; k++) {
        node.tick();
        if (node.status().role === 'leader') node.propose(bytes(`t${k}`));
        if (!node.hasReady()) continue;
        const rd = drainReady(node);
        if (rd.snapshot !== null) [snapshot, entries] = [rd.snapshot, []];
        const first = rd.entries[0];
        if (first !== undefined) entries = [...entries.filter((e) => e.index < first.index), ...rd.entries];
        if (rd.hardState !== null) hardState = rd.hardState;
        trace.push(JSON.stringify(rd.committedEntries.map((e) => [e.index, e.term])));
      }
      const restarted = RaftNode.restart(options('solo'), { hardState, snapshot, entries });
      const { role: _r, leaderId: _l, applied: _a, ...durable } = node.status();
      const { role: _r2, leaderId: _l2, applied: _a2, ...recovered } = restarted.status();
      expect(recovered).toEqual(durable);
      expect(drainReady(restarted).committedEntries.length).toBe(node.status().commit);
      return trace.join('|');
    };
    const first = run();
    expect(first).toContain('[[1,');
    expect(run()).toBe(first);
  });
});

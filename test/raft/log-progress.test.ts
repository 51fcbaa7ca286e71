import { describe, expect, it } from 'vitest';
import { RaftLog } from '../../src/raft/log.ts';
import { Inflights, Progress } from '../../src/raft/progress.ts';
import { RaftInvariantError } from '../../src/raft/index.ts';
import { Cluster, bytes, drainReady, entry, terms } from './helpers.ts';

describe('RaftLog', () => {
  it('findConflictByTerm skips every entry of a term above the leader’s (the fast back-off hint)', () => {
    const log = new RaftLog(0, 0, terms(1, 1, 2, 2, 5, 5, 5), 0);
    expect(log.findConflictByTerm(7, 3)).toEqual({ index: 4, term: 2 });
    expect(log.findConflictByTerm(7, 5)).toEqual({ index: 7, term: 5 });
    expect(log.findConflictByTerm(7, 0)).toEqual({ index: 0, term: 0 });
    expect(log.findConflictByTerm(99, 1)).toEqual({ index: 2, term: 1 });
  });

  it('tracks unstable entries and compaction', () => {
    const log = new RaftLog(0, 0, terms(1, 1), 2);
    log.appendNew([entry(3, 2), entry(4, 2)]);
    expect(log.unstableEntries().map((e) => e.index)).toEqual([3, 4]);
    log.stableTo(4);
    log.commitTo(4);
    log.appliedTo(3);
    log.compact(3);
    expect(log.snapshotPoint()).toEqual({ index: 3, term: 2 });
    expect(log.term(2)).toBeNull();
    expect(log.term(3)).toBe(2);
    expect(log.firstIndex()).toBe(4);
    expect(() => log.compact(4)).toThrow(RaftInvariantError); // 4 is not applied yet
  });

  it('slice honours the byte budget but always returns at least one entry', () => {
    const log = new RaftLog(0, 0, [entry(1, 1, 'aaaa'), entry(2, 1, 'bbbb'), entry(3, 1, 'cccc')], 0);
    expect(log.slice(1, 4, 1).map((e) => e.index)).toEqual([1]);
    expect(log.slice(1, 4, 8).map((e) => e.index)).toEqual([1, 2]);
    expect(log.slice(1, 4, 1000).map((e) => e.index)).toEqual([1, 2, 3]);
  });
});

describe('Progress and Inflights (flow control)', () => {
  it('the inflight window is bounded and frees by acknowledged index', () => {
    const inflights = new Inflights(2);
    inflights.add(5);
    inflights.add(9);
    expect(inflights.full()).toBe(true);
    expect(() => inflights.add(12)).toThrow(RaftInvariantError);
    inflights.freeLE(6);
    expect(inflights.count()).toBe(1);
    inflights.freeLE(9);
    expect(inflights.count()).toBe(0);
  });

  it('probe sends one append at a time; replicate streams until the window is full', () => {
    const pr = new Progress(11, 2);
    expect(pr.isPaused()).toBe(false);
    pr.sentEntries(1, 11);
    expect(pr.isPaused()).toBe(true); // probe: wait for the answer
    expect(pr.maybeUpdate(11)).toBe(true);
    pr.becomeReplicate();
    pr.sentEntries(3, 14);
    pr.sentEntries(2, 16);
    expect(pr.next).toBe(17);
    expect(pr.isPaused()).toBe(true); // window of 2 full
    pr.maybeUpdate(14);
    pr.inflights.freeLE(14);
    expect(pr.isPaused()).toBe(false);
  });

  it('a rejection moves next back; a stale rejection is ignored', () => {
    const pr = new Progress(11, 4);
    pr.sentEntries(1, 11); // probe with prevLogIndex 10
    expect(pr.maybeDecrTo(7, 3)).toBe(false); // not the latest probe
    expect(pr.maybeDecrTo(10, 3)).toBe(true);
    expect(pr.next).toBe(4); // jumps to the hint + 1, not one by one
  });

  it('a leader batches the proposals made between two Ready()s into one append per follower', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    for (let k = 0; k < 50; k++) leader.propose(bytes(`p${k}`));
    const appends = drainReady(leader).messages.filter((m) => m.type === 'append');
    expect(appends).toHaveLength(2);
    for (const m of appends) expect(m.type === 'append' && m.entries.length).toBe(50);
  });

  it('bounds uncommitted entries: proposals are refused, not queued without limit', () => {
    const cluster = new Cluster(['a', 'b', 'c'], { maxUncommittedEntries: 10 });
    const leader = cluster.elect('a');
    cluster.filter = () => false;
    const results = Array.from({ length: 12 }, (_, k) => leader.propose(bytes(`${k}`)));
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    expect(results.at(-1)).toEqual({ ok: false, reason: 'too_many_uncommitted_entries' });
  });
});

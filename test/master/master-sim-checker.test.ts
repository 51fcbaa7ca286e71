import { describe, expect, it } from 'vitest';
import { bytesDigest, type DestructiveStep, MasterSimChecker, type MasterObservation } from '../support/master-sim-checker.ts';

/** The master simulator's checker must catch what it claims to: each property on a made-up history. */

const bytes = (s: string) => new TextEncoder().encode(s);
const d = (s: string) => bytesDigest(bytes(s));

function observation(o: Partial<MasterObservation> & { id: string }): MasterObservation {
  return { role: 'follower', statusRole: 'follower', leaderId: null, term: 1, commit: 0, applied: 0, failed: false, writeFailed: false, ...o };
}

function step(s: Partial<DestructiveStep>): DestructiveStep {
  return { master: 'm1', term: 2, currentTerm: 2, role: 'leader', failed: false, applied: 10, requiredCommit: 10, confirmStartedAt: 0, at: 1, ...s };
}

/** Three masters that applied entries 1..n in the same order. */
function applyAll(c: MasterSimChecker, ids: string[], n: number): void {
  for (const id of ids) {
    c.started(id);
    for (let i = 1; i <= n; i++) c.applied(id, i, d(`e${i}`), { ok: true });
  }
}

describe('MasterSimChecker', () => {
  it('digests tell different bytes apart and are stable', () => {
    expect(d('abc')).toBe(d('abc'));
    expect(d('abc')).not.toBe(d('abd'));
    expect(d('')).not.toBe(d('\0'));
  });

  it('Election Safety: one leader per term, seen leading or confirmed by a task', () => {
    const c = new MasterSimChecker();
    c.observe(observation({ id: 'm1', role: 'leader', statusRole: 'leader', term: 2 }));
    c.observe(observation({ id: 'm1', role: 'leader', statusRole: 'leader', term: 2 }));
    c.observe(observation({ id: 'm2', role: 'leader', statusRole: 'leader', term: 3 }));
    expect(c.violation).toBeNull();
    c.destructiveStep(step({ master: 'm3', term: 3, currentTerm: 3 }));
    expect(c.violation?.property).toBe('Election Safety');
  });

  it('tracks the highest commit and term', () => {
    const c = new MasterSimChecker();
    c.observe(observation({ id: 'm1', commit: 7, term: 3 }));
    c.observe(observation({ id: 'm2', commit: 5, term: 4 }));
    expect([c.maxCommit, c.maxTerm]).toEqual([7, 4]);
  });

  it('a failed master must report a follower with no leader, and a failed write must stop the driver', () => {
    const a = new MasterSimChecker();
    a.observe(observation({ id: 'm1', failed: true, writeFailed: true }));
    expect(a.violation).toBeNull();
    a.observe(observation({ id: 'm1', failed: true, role: 'leader', statusRole: 'follower' }));
    expect(a.violation?.property).toBe('Stop on failure');

    const b = new MasterSimChecker();
    b.observe(observation({ id: 'm1', failed: true, leaderId: 'm2' }));
    expect(b.violation?.property).toBe('Stop on failure');

    const c = new MasterSimChecker();
    c.observe(observation({ id: 'm1', writeFailed: true, role: 'leader', statusRole: 'leader' }));
    expect(c.violation?.message).toMatch(/a write failed but the driver runs on/);
  });

  it('a failed master must not send or answer; an unexpected failure is a finding; a late apply is only counted', () => {
    for (const hit of [
      (c: MasterSimChecker) => c.sentAfterFailure('m1', 'append'),
      (c: MasterSimChecker) => c.answeredAfterFailure('m1', 'a read'),
      (c: MasterSimChecker) => c.unexpectedFailure('m1', new Error('boom')),
      (c: MasterSimChecker) => c.sentBeforePersist('m1', 'a vote'),
    ]) {
      const c = new MasterSimChecker();
      hit(c);
      expect(c.violation).not.toBeNull();
    }
    const c = new MasterSimChecker();
    c.appliedAfterFailure('m1', 3);
    expect(c.violation).toBeNull();
    expect(c.counters.appliesAfterFailure).toBe(1);
  });

  it('State Machine Safety: same entries in the same order pass', () => {
    const c = new MasterSimChecker();
    applyAll(c, ['m1', 'm2', 'm3'], 20);
    expect(c.violation).toBeNull();
  });

  it('State Machine Safety: a different entry at an index is caught', () => {
    const c = new MasterSimChecker();
    applyAll(c, ['m1'], 3);
    c.started('m2');
    c.applied('m2', 1, d('e1'), { ok: true });
    c.applied('m2', 2, d('other'), { ok: true });
    expect(c.violation?.property).toBe('State Machine Safety');
  });

  it('State Machine Safety: a master that skipped an entry reaches a different state', () => {
    const c = new MasterSimChecker();
    applyAll(c, ['m1'], 3);
    c.started('m2');
    c.applied('m2', 1, d('e1'), { ok: true });
    c.applied('m2', 3, d('e3'), { ok: true });
    expect(c.violation?.message).toMatch(/different state at 3/);
  });

  it('State Machine Safety: full state hashes must agree where two masters computed one', () => {
    const c = new MasterSimChecker();
    c.started('m1');
    c.started('m2');
    c.applied('m1', 1, d('e1'), { ok: true }, 'aaaa');
    c.applied('m2', 1, d('e1'), { ok: true }, 'aaaa');
    expect(c.violation).toBeNull();
    c.applied('m1', 2, d('e2'), { ok: true }, 'bbbb');
    c.applied('m2', 2, d('e2'), { ok: true }, 'cccc');
    expect(c.violation?.property).toBe('State Machine Safety');
  });

  it('apply order: an index applied twice or backwards is caught', () => {
    const c = new MasterSimChecker();
    applyAll(c, ['m1'], 3);
    c.applied('m1', 3, d('e3'), { ok: true });
    expect(c.violation?.property).toBe('Apply order');
  });

  it('deterministic apply: two masters must get the same result at an index', () => {
    const c = new MasterSimChecker();
    c.started('m1');
    c.started('m2');
    c.applied('m1', 1, d('e1'), { ok: true, value: { created: ['/a'] } });
    c.applied('m2', 1, d('e1'), { ok: true, value: { created: [] } });
    expect(c.violation?.property).toBe('Deterministic apply');
  });

  it('restores: a snapshot continues the chain at its index; one nobody reached is caught', () => {
    const c = new MasterSimChecker();
    applyAll(c, ['m1'], 4);
    c.started('m2');
    c.restored('m2', 3, 'h3');
    c.applied('m2', 4, d('e4'), { ok: true });
    expect(c.violation).toBeNull();
    c.started('m3');
    c.restored('m3', 9, 'h9');
    expect(c.violation?.message).toMatch(/no master reached/);
  });

  it('restores: a restored state whose hash differs from the applied one is caught', () => {
    const c = new MasterSimChecker();
    c.started('m1');
    c.applied('m1', 1, d('e1'), { ok: true }, 'good');
    c.started('m2');
    c.restored('m2', 1, 'bad');
    expect(c.violation?.property).toBe('State Machine Safety');
  });

  it('snapshots: the data is the state captured at the call, and must hold every entry up to its index', () => {
    const a = new MasterSimChecker();
    applyAll(a, ['m1'], 5);
    a.snapshotTaken('m1', 5, 5, 5, 'h', 'h');
    expect(a.violation).toBeNull();
    a.snapshotTaken('m1', 6, 5, 5, 'h', 'h');
    expect(a.violation?.message).toMatch(/data says 6, the state was at 5/);
    const moved = new MasterSimChecker();
    moved.snapshotTaken('m1', 5, 5, 5, 'h', 'other');
    expect(moved.violation?.message).toMatch(/not the state captured/);

    const b = new MasterSimChecker();
    applyAll(b, ['m1'], 5);
    b.snapshotPersisted('m1', 5, 5); // data at 5 covers a snapshot at 5
    b.snapshotPersisted('m1', 7, 5); // 6 and 7 carry no data (no-ops): fine
    expect(b.violation).toBeNull();
    b.snapshotPersisted('m1', 5, 4);
    expect(b.violation?.message).toMatch(/lacks the entry applied at 5/);
  });

  it('exactly once: a retried request applied again must return its first result', () => {
    const c = new MasterSimChecker();
    c.appliedCommand('m1', 4, 'c1', 1, { ok: true, value: { created: ['/a'] } });
    c.appliedCommand('m2', 4, 'c1', 1, { ok: true, value: { created: ['/a'] } });
    c.appliedCommand('m1', 9, 'c1', 1, { ok: true, value: { created: ['/a'] } }); // a deduplicated retry
    expect(c.violation).toBeNull();
    c.appliedCommand('m1', 11, 'c1', 1, { ok: false, code: 'ERR_EXISTS', message: '/a exists' }); // executed twice
    expect(c.violation?.property).toBe('Exactly once');
  });

  it('clients: an answer must be what the log applied, for a request some master applied', () => {
    const c = new MasterSimChecker();
    c.appliedCommand('m1', 4, 'c1', 1, { ok: true });
    c.clientResult('c1', 1, { ok: true });
    expect(c.violation).toBeNull();
    c.clientResult('c1', 1, { ok: false, code: 'ERR_EXISTS', message: 'x' });
    expect(c.violation?.property).toBe('Exactly once');

    const d2 = new MasterSimChecker();
    d2.clientResult('c9', 3, { ok: true });
    expect(d2.violation?.property).toBe('Acknowledged writes');
  });

  it('leader tasks: a step needs the leadership it was confirmed under and a state at least as new as the commit before confirm()', () => {
    const ok = new MasterSimChecker();
    ok.destructiveStep(step({}));
    expect(ok.violation).toBeNull();
    const cases: Array<[Partial<DestructiveStep>, RegExp]> = [
      [{ applied: 9, requiredCommit: 10 }, /stale state/],
      [{ currentTerm: 3 }, /already knew of term 3/],
      [{ role: 'follower' }, /the master is follower/],
      [{ failed: true }, /persistence had failed/],
    ];
    for (const [s, message] of cases) {
      const c = new MasterSimChecker();
      c.destructiveStep(step(s));
      expect(c.violation?.property).toBe('Leader task safety');
      expect(c.violation?.message).toMatch(message);
    }
  });

  it('leader tasks: a step after a higher term is only counted when tolerated (a known bug)', () => {
    const c = new MasterSimChecker({ tolerateStaleTermSteps: true });
    c.destructiveStep(step({ currentTerm: 3 }));
    expect(c.violation).toBeNull();
    expect(c.counters.staleTermSteps).toBe(1);
    c.destructiveStep(step({ applied: 1 }));
    expect(c.violation?.message).toMatch(/stale state/);
  });

  it('convergence: equal applied index and state hash everywhere', () => {
    const c = new MasterSimChecker();
    c.converged([
      { id: 'm1', applied: 9, hash: 'x' },
      { id: 'm2', applied: 9, hash: 'x' },
    ]);
    expect(c.violation).toBeNull();
    c.converged([
      { id: 'm1', applied: 9, hash: 'x' },
      { id: 'm2', applied: 9, hash: 'y' },
    ]);
    expect(c.violation?.property).toBe('Convergence');
  });

  it('keeps the first violation', () => {
    const c = new MasterSimChecker();
    c.fail('First', 'a');
    c.fail('Second', 'b');
    expect(c.violation?.message).toBe('First: a');
  });
});

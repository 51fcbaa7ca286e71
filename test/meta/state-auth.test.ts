import { describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/index.ts';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { type ApplyResult, type MetaCommand, MetaState } from '../../src/meta/index.ts';
import { SnapshotRecordChecker } from '../../src/meta/state.ts';
import { cid, manifestOf } from '../support/meta-fixtures.ts';

const blake3 = await loadBlake3();
const stored = await hashPassword('pw-0123456', { params: { memoryKiB: 8, iterations: 1, parallelism: 1 } });

function driver(state = new MetaState()) {
  let index = 0;
  let seq = 0;
  return {
    state,
    run(cmd: MetaCommand): ApplyResult {
      const result = state.apply(++index, { clientId: 'c1', seq: ++seq, cmd });
      state.checkInvariants();
      return result;
    },
  };
}

const file = (path: string, size: number, owner = 'alice', id = 1): MetaCommand => ({ op: 'commitFile', path, manifest: manifestOf([[cid(id), size]]), owner, nowMs: 1, parents: true, ifAbsent: false });

async function roundTrip(state: MetaState): Promise<MetaState> {
  const checker = new SnapshotRecordChecker();
  const records = [...state.snapshotRecords()].map((r) => checker.check(JSON.parse(JSON.stringify(r))));
  checker.finish();
  const back = await MetaState.restore(records);
  back.checkInvariants();
  expect(back.stateHash(blake3)).toBe(state.stateHash(blake3));
  return back;
}

describe('MetaState users, grants, quotas (negative cases first)', () => {
  it('refuses malformed user commands and a clear password, leaving no trace', () => {
    const d = driver();
    expect(d.run({ op: 'addUser', name: '-bad', password: stored, roles: [], nowMs: 1 })).toMatchObject({ ok: false, code: 'ERR_INVALID_ARGUMENT' });
    expect(d.run({ op: 'addUser', name: 'alice', password: 'hunter2-in-clear', roles: [], nowMs: 1 })).toMatchObject({ ok: false, code: 'ERR_INVALID_ARGUMENT' });
    expect(d.run({ op: 'addUser', name: 'alice', password: stored, roles: ['root' as 'admin'], nowMs: 1 })).toMatchObject({ ok: false, code: 'ERR_INVALID_ARGUMENT' });
    expect(d.run({ op: 'setUserRoles', name: 'nobody', roles: [] })).toMatchObject({ ok: false, code: 'ERR_NOT_FOUND' });
    expect(d.run({ op: 'grant', path: '/', principal: 'nobody', level: 'read' })).toMatchObject({ ok: false, code: 'ERR_NOT_FOUND' });
    expect(d.run({ op: 'grant', path: '/missing', principal: '@reader', level: 'read' })).toMatchObject({ ok: false, code: 'ERR_NOT_FOUND' });
    expect(d.run({ op: 'setAuthKey', key: 'not base64!' })).toMatchObject({ ok: false, code: 'ERR_INVALID_ARGUMENT' });
    expect(d.state.users()).toEqual([]);
    // The applied index moved on; nothing else did.
    expect(d.state.counts).toMatchObject({ users: 0, grants: 0 });
  });

  it('the cluster key is set once; a second proposal is refused', () => {
    const d = driver();
    expect(d.run({ op: 'setAuthKey', key: 'AAAA' })).toEqual({ ok: true });
    expect(d.run({ op: 'setAuthKey', key: 'BBBB' })).toMatchObject({ ok: false, code: 'ERR_EXISTS' });
    expect(d.state.authKey).toBe('AAAA');
  });

  it('token generations only grow: creation and every revoking change set gen to the log index', () => {
    const d = driver();
    d.run({ op: 'addUser', name: 'alice', password: stored, roles: ['writer'], nowMs: 1 });
    const g0 = d.state.user('alice')!.gen;
    d.run({ op: 'setQuota', user: 'alice', maxBytes: 10 });
    expect(d.state.user('alice')!.gen).toBe(g0); // a quota does not log anyone out
    d.run({ op: 'setUserRoles', name: 'alice', roles: ['reader'] });
    const g1 = d.state.user('alice')!.gen;
    expect(g1).toBeGreaterThan(g0);
    d.run({ op: 'removeUser', name: 'alice' });
    d.run({ op: 'addUser', name: 'alice', password: stored, roles: [], nowMs: 2 });
    expect(d.state.user('alice')!.gen).toBeGreaterThan(g1); // old tokens of a removed namesake stay dead
  });

  it('usage follows commit (replace counts the old size off), rm (recursive) and mv; quota is enforced at apply', async () => {
    const d = driver();
    d.run({ op: 'addUser', name: 'alice', password: stored, roles: ['writer'], nowMs: 1 });
    expect(d.run(file('/a/f', 100))).toMatchObject({ ok: true });
    expect(d.state.usage('alice')).toEqual({ bytes: 100, files: 2 }); // /a and /a/f
    expect(d.run(file('/a/f', 40))).toMatchObject({ ok: true });
    expect(d.state.usage('alice')).toEqual({ bytes: 40, files: 2 });
    expect(d.run(file('/a/g', 10, 'bob', 2))).toMatchObject({ ok: true });
    expect(d.state.usage('bob')).toEqual({ bytes: 10, files: 1 });
    expect(d.run({ op: 'mv', from: '/a', to: '/b', nowMs: 2 })).toMatchObject({ ok: true });
    expect(d.state.usage('alice')).toEqual({ bytes: 40, files: 2 });
    d.run({ op: 'setQuota', user: 'alice', maxBytes: 100, maxFiles: 3 });
    expect(d.run(file('/b/h', 61, 'alice', 3))).toMatchObject({ ok: false, code: 'ERR_QUOTA' });
    expect(d.run({ op: 'mkdir', path: '/x/y', parents: true, owner: 'alice', nowMs: 1 })).toMatchObject({ ok: false, code: 'ERR_QUOTA' });
    expect(d.state.stat('/x')).toBeUndefined();
    expect(d.run(file('/b/f', 100))).toMatchObject({ ok: true }); // an overwrite is charged the difference
    await roundTrip(d.state);
    expect(d.run({ op: 'rm', path: '/b', recursive: true })).toMatchObject({ ok: true });
    expect(d.state.usage('alice')).toEqual({ bytes: 0, files: 0 });
    expect(d.state.usage('bob')).toEqual({ bytes: 0, files: 0 });
  });

  it('grants move with mv, go with rm and with their user, and survive a snapshot', async () => {
    const d = driver();
    d.run({ op: 'addUser', name: 'alice', password: stored, roles: [], nowMs: 1 });
    d.run({ op: 'mkdir', path: '/p/q', parents: true, owner: 'root', nowMs: 1 });
    expect(d.run({ op: 'grant', path: '/p/q', principal: 'alice', level: 'write' })).toMatchObject({ ok: true });
    expect(d.run({ op: 'grant', path: '/p', principal: '@reader', level: 'read' })).toMatchObject({ ok: true });
    expect(d.run({ op: 'revoke', path: '/p', principal: '@reader', level: 'write' })).toMatchObject({ ok: false, code: 'ERR_NOT_FOUND' });
    d.run({ op: 'mv', from: '/p', to: '/r', nowMs: 2 });
    expect(d.state.grantsAt('/r/q')).toEqual([{ path: '/r/q', principal: 'alice', level: 'write' }]);
    const back = await roundTrip(d.state);
    expect(back.grantsAt('/r')).toEqual([{ path: '/r', principal: '@reader', level: 'read' }]);
    d.run({ op: 'removeUser', name: 'alice' });
    expect(d.state.grantsAt('/r/q')).toEqual([]);
    d.run({ op: 'rm', path: '/r', recursive: true });
    expect(d.state.counts.grants).toBe(0);
  });

  it('the snapshot checker refuses a user record with a clear password and out-of-order users', () => {
    const header = { t: 'header', version: 1, appliedIndex: 1, settings: { replicationFactor: 3 } };
    const root = { t: 'entry', path: '/', entry: { kind: 'dir', owner: 'root', mtimeMs: 0 } };
    const user = (name: string, password = stored) => ({ t: 'user', user: { name, password, roles: [], disabled: false, gen: 1, createdAtMs: 0 } });
    const check = (records: unknown[]) => () => {
      const c = new SnapshotRecordChecker();
      for (const r of records) c.check(r);
      c.finish();
    };
    expect(check([header, root, user('a', 'clear-text')])).toThrow(/argon2id/);
    expect(check([header, root, user('b'), user('a')])).toThrow(/out of order/);
    expect(check([header, root, user('a'), user('b')])).not.toThrow();
  });
});

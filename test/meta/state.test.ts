import { describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { type ApplyResult, type MetaCommand, MetaState, type SnapshotRecord } from '../../src/meta/index.ts';
import { cid, manifestOf } from '../support/meta-fixtures.ts';

const blake3 = await loadBlake3();

/** Applies commands as one client with increasing sequence numbers. */
function driver(state = new MetaState()) {
  let index = 0;
  let seq = 0;
  return {
    state,
    run(cmd: MetaCommand, clientId = 'c1'): ApplyResult {
      const result = state.apply(++index, { clientId, seq: ++seq, cmd });
      state.checkInvariants();
      return result;
    },
  };
}

const file = (path: string, chunks: Array<[string, number]>, extra: Partial<Extract<MetaCommand, { op: 'commitFile' }>> = {}): MetaCommand => ({
  op: 'commitFile', path, manifest: manifestOf(chunks), owner: 'alice', nowMs: 1000, parents: false, ifAbsent: false, ...extra,
});
const mkdir = (path: string, parents = false): MetaCommand => ({ op: 'mkdir', path, parents, owner: 'alice', nowMs: 1000 });

describe('MetaState namespace', () => {
  it('mkdir, commit, stat and list in name order, paged', () => {
    const d = driver();
    expect(d.run(mkdir('/docs'))).toMatchObject({ ok: true });
    for (const name of ['c', 'a', 'b', 'd']) expect(d.run(file(`/docs/${name}`, [[cid(1), 10]])).ok).toBe(true);
    expect(d.state.stat('/docs/a')).toMatchObject({ kind: 'file', size: 10, owner: 'alice' });
    const page1 = d.state.list('/docs', { limit: 3 });
    expect(page1.entries.map((e) => e.name)).toEqual(['a', 'b', 'c']);
    expect(page1.next).toBe('c');
    const page2 = d.state.list('/docs', { limit: 3, after: page1.next });
    expect(page2.entries.map((e) => e.name)).toEqual(['d']);
    expect(page2.next).toBeUndefined();
    expect(d.state.refCount(cid(1))).toBe(4);
  });

  it('refuses with typed codes and leaves no trace', () => {
    const d = driver();
    d.run(file('/f', [[cid(1), 5]]));
    const entries = () => [...d.state.snapshotRecords()].filter((r) => r.t === 'entry');
    const before = entries();
    const refusals: Array<[MetaCommand, string]> = [
      [mkdir('/a/b'), 'ERR_NOT_FOUND'],
      [mkdir('/f'), 'ERR_EXISTS'],
      [mkdir('/f/x', true), 'ERR_NOT_DIR'],
      [file('/f/x', [[cid(2), 5]], { parents: true }), 'ERR_NOT_DIR'],
      [file('/', [[cid(2), 5]]), 'ERR_IS_DIR'],
      [file('/f', [[cid(2), 5]], { ifAbsent: true }), 'ERR_EXISTS'],
      [file('/g', [[cid(2), 5]], { manifest: { ...manifestOf([[cid(2), 5]]), size: 6 } }), 'ERR_INVALID_MANIFEST'],
      [file('/g', [['nothex', 5]]), 'ERR_INVALID_MANIFEST'],
      [file('relative', [[cid(2), 5]]), 'ERR_INVALID_PATH'],
      [{ op: 'rm', path: '/nope', recursive: false }, 'ERR_NOT_FOUND'],
      [{ op: 'rm', path: '/', recursive: true }, 'ERR_INVALID_PATH'],
      [{ op: 'mv', from: '/nope', to: '/x', nowMs: 1 }, 'ERR_NOT_FOUND'],
      [{ op: 'mv', from: '/f', to: '/no/x', nowMs: 1 }, 'ERR_NOT_FOUND'],
      [{ op: 'setNodeState', nodeId: 'n9', state: 'dead', nowMs: 1 }, 'ERR_NOT_FOUND'],
      [{ op: 'registerNode', nodeId: 'n1', addrs: [], capacityBytes: -1, nowMs: 1 }, 'ERR_INVALID_ARGUMENT'],
      [{ op: 'bogus' } as unknown as MetaCommand, 'ERR_INVALID_ARGUMENT'],
    ];
    for (const [cmd, code] of refusals) {
      const r = d.run(cmd);
      expect(r, JSON.stringify(cmd)).toMatchObject({ ok: false, code });
    }
    // Only the session table moved: the namespace and the reference counts are as before.
    expect(entries()).toEqual(before);
    expect(d.state.refCount(cid(1))).toBe(1);
    expect(d.state.refCount(cid(2))).toBe(0);
  });

  it('replace is atomic and returns the chunks no longer referenced', () => {
    const d = driver();
    d.run(file('/f', [[cid(1), 5], [cid(2), 5]]));
    d.run(file('/g', [[cid(2), 5]]));
    const r = d.run(file('/f', [[cid(3), 7]]));
    expect(r).toEqual({ ok: true, value: { replaced: true, freedChunks: [cid(1)] } });
    expect(d.state.refCount(cid(2))).toBe(1);
    expect(d.state.stat('/f')).toMatchObject({ size: 7 });
  });

  it('rm -r removes a subtree and frees its chunks; plain rm refuses a non-empty directory', () => {
    const d = driver();
    d.run(file('/a/b/c', [[cid(1), 5]], { parents: true }));
    d.run(file('/a/d', [[cid(2), 5]]));
    expect(d.run({ op: 'rm', path: '/a', recursive: false })).toMatchObject({ ok: false, code: 'ERR_NOT_EMPTY' });
    const r = d.run({ op: 'rm', path: '/a', recursive: true });
    expect(r).toMatchObject({ ok: true, value: { removed: 4 } });
    expect(new Set((r as { value: { freedChunks: string[] } }).value.freedChunks)).toEqual(new Set([cid(1), cid(2)]));
    expect(d.state.list('/').entries).toEqual([]);
  });

  it('mv renames files and whole directories atomically, like rename(2)', () => {
    const d = driver();
    d.run(file('/src/x/1', [[cid(1), 5]], { parents: true }));
    d.run(file('/src/2', [[cid(2), 5]]));
    d.run(mkdir('/dst'));
    expect(d.run({ op: 'mv', from: '/src', to: '/dst/moved', nowMs: 5 })).toMatchObject({ ok: true });
    expect(d.state.stat('/src')).toBeUndefined();
    expect(d.state.stat('/dst/moved/x/1')).toMatchObject({ kind: 'file' });
    expect(d.state.list('/dst/moved').entries.map((e) => e.name)).toEqual(['2', 'x']);
    expect(d.run({ op: 'mv', from: '/dst', to: '/dst/moved/inside', nowMs: 5 })).toMatchObject({ ok: false, code: 'ERR_INVALID_PATH' });
    d.run(file('/t', [[cid(3), 5]]));
    expect(d.run({ op: 'mv', from: '/dst/moved/2', to: '/t', nowMs: 6 })).toEqual({ ok: true, value: { replaced: true, freedChunks: [cid(3)] } });
    expect(d.run({ op: 'mv', from: '/t', to: '/dst', nowMs: 6 })).toMatchObject({ ok: false, code: 'ERR_EXISTS' });
  });
});

describe('MetaState sessions and nodes', () => {
  it('a retried command applies once and returns the first result', () => {
    const s = new MetaState();
    const cmd = file('/f', [[cid(1), 5]], { ifAbsent: true });
    const first = s.apply(1, { clientId: 'k', seq: 1, cmd });
    const retry = s.apply(2, { clientId: 'k', seq: 1, cmd });
    expect(first).toEqual({ ok: true, value: { replaced: false, freedChunks: [] } });
    expect(retry).toBe(first);
    expect(s.refCount(cid(1))).toBe(1);
    expect(s.apply(3, { clientId: 'k', seq: 0, cmd })).toMatchObject({ ok: false, code: 'ERR_STALE_REQUEST' });
    expect(() => s.apply(3, { clientId: 'k', seq: 2, cmd })).toThrow(/out of order/);
  });

  it('remembers at most maxSessions clients, evicting the least recently used', () => {
    const s = new MetaState({ maxSessions: 2 });
    s.apply(1, { clientId: 'a', seq: 1, cmd: { op: 'noop' } });
    s.apply(2, { clientId: 'b', seq: 1, cmd: { op: 'noop' } });
    s.apply(3, { clientId: 'a', seq: 2, cmd: { op: 'noop' } });
    s.apply(4, { clientId: 'c', seq: 1, cmd: { op: 'noop' } });
    expect(s.counts.sessions).toBe(2);
    const kept = [...s.snapshotRecords()].filter((r): r is Extract<SnapshotRecord, { t: 'session' }> => r.t === 'session').map((r) => r.clientId);
    expect(kept).toEqual(['a', 'c']);
  });

  it('registers nodes (pending unless admitted) and records state transitions; registering again keeps the state', () => {
    const d = driver();
    d.run({ op: 'registerNode', nodeId: 'n0', addrs: ['/ip4/127.0.0.1/tcp/9'], capacityBytes: 100, nowMs: 5 });
    expect(d.state.node('n0')).toMatchObject({ state: 'pending' });
    d.run({ op: 'registerNode', nodeId: 'n1', addrs: ['/ip4/127.0.0.1/tcp/1'], capacityBytes: 100, nowMs: 10, admit: true });
    expect(d.state.node('n1')).toMatchObject({ state: 'alive' });
    d.run({ op: 'setNodeState', nodeId: 'n1', state: 'dead', nowMs: 20 });
    expect(d.state.node('n1')).toMatchObject({ state: 'dead', stateSinceMs: 20, registeredAtMs: 10 });
    const r = d.run({ op: 'registerNode', nodeId: 'n1', addrs: ['/ip4/127.0.0.1/tcp/2'], capacityBytes: 100, nowMs: 30, admit: true });
    expect(r).toMatchObject({ ok: true, value: { rejoined: true } });
    // Liveness is the failure detector's to set: a node that registers again is not alive by saying so.
    expect(d.state.node('n1')).toMatchObject({ state: 'dead', stateSinceMs: 20, registeredAtMs: 10, addrs: ['/ip4/127.0.0.1/tcp/2'] });
  });

  it('a snapshot restores to the same state hash, reference counts recounted', async () => {
    const d = driver();
    d.run(file('/a/b', [[cid(1), 5], [cid(1), 5]], { parents: true }));
    d.run({ op: 'registerNode', nodeId: 'n1', addrs: ['/x'], capacityBytes: 1, nowMs: 1 });
    const restored = await MetaState.restore(d.state.snapshotRecords());
    restored.checkInvariants();
    expect(restored.stateHash(blake3)).toBe(d.state.stateHash(blake3));
    expect(restored.refCount(cid(1))).toBe(2);
    expect(restored.appliedIndex).toBe(d.state.appliedIndex);
    await expect(MetaState.restore([])).rejects.toThrow(/empty/);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { isDfsError } from '../../src/errors/index.ts';
import { startTestCluster, type TestCluster } from '../support/cluster.ts';

let current: TestCluster | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

async function names(t: TestCluster, dir = '/'): Promise<string[]> {
  const out: string[] = [];
  await t.client(async (c) => {
    let after: string | undefined;
    for (;;) {
      const page = await c.list(dir, { ...(after ? { after } : {}), limit: 500 });
      out.push(...page.entries.map((e) => e.name));
      if (page.next === undefined) break;
      after = page.next;
    }
  });
  return out;
}

describe('three master processes', () => {
  it('keep every acknowledged write through a SIGKILL of the leader; the killed master catches up through a snapshot', async () => {
    const t = (current = await startTestCluster({ masterArgs: ['--snapshot-every', '20'] }));
    const acked: string[] = [];
    await t.client(async (c) => {
      for (let i = 0; i < 30; i++) {
        await c.write({ op: 'mkdir', path: `/before-${i}`, parents: false });
        acked.push(`before-${i}`);
      }
    });
    const oldLeader = await t.leaderName();
    await t.cluster.kill(oldLeader, 'SIGKILL');
    const killedAt = performance.now();
    let failoverMs = 0;
    await t.client(async (c) => {
      for (let i = 0; i < 40; i++) {
        await c.write({ op: 'mkdir', path: `/after-${i}`, parents: false });
        if (i === 0) failoverMs = performance.now() - killedAt;
        acked.push(`after-${i}`);
      }
    });
    console.log(`[masters] first write acknowledged ${failoverMs.toFixed(0)} ms after SIGKILL of leader ${oldLeader}`);
    const newLeader = await t.leaderName();
    expect(newLeader).not.toBe(oldLeader);
    expect((await names(t)).sort()).toEqual([...acked].sort());

    await t.cluster.startMaster(oldLeader);
    const all = await t.converged();
    expect(all).toHaveLength(3);
    for (const s of all) expect(s.stateHash).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(all.map((s) => s.stateHash)).size).toBe(1);
    const back = all.find((s) => s.name === oldLeader)!;
    expect(back.raft.snapshotsRestored).toBeGreaterThan(0);
    expect(back.snapshotIndex).toBeGreaterThan(30);
  });

  it('without a majority, writes fail with ERR_NO_QUORUM in bounded time, and work again when it returns', async () => {
    const t = (current = await startTestCluster());
    await t.client((c) => c.write({ op: 'mkdir', path: '/ok', parents: false }));
    const leader = await t.leaderName();
    const others = t.cluster.spec.masters.map((m) => m.name).filter((n) => n !== leader);
    for (const n of others) await t.cluster.kill(n, 'SIGKILL');
    const started = performance.now();
    const err = await t.client((c) => c.write({ op: 'mkdir', path: '/lost', parents: false }), { timeoutMs: 3_000, attemptTimeoutMs: 1_000 }).catch((e: unknown) => e);
    const elapsedMs = performance.now() - started;
    expect(isDfsError(err, "ERR_NO_QUORUM"), String(err) + " " + (err as { code?: string }).code).toBe(true);
    expect(elapsedMs).toBeLessThan(6_000);
    console.log(`[masters] write without quorum failed with ERR_NO_QUORUM after ${elapsedMs.toFixed(0)} ms`);
    for (const n of others) await t.cluster.startMaster(n);
    await t.client((c) => c.write({ op: 'mkdir', path: '/back', parents: false }));
    const listed = await names(t);
    expect(listed).toContain('ok');
    expect(listed).toContain('back');
  });

  it('all three restarted from disk hold identical state', async () => {
    const t = (current = await startTestCluster({ masterArgs: ['--snapshot-every', '15'] }));
    await t.client(async (c) => {
      for (let i = 0; i < 25; i++) await c.write({ op: 'mkdir', path: `/d${i % 5}/e${i}`, parents: true });
      await c.write({ op: 'mv', from: '/d1', to: '/moved' });
      await c.write({ op: 'rm', path: '/d2', recursive: true });
    });
    const before = await t.converged();
    const listedBefore = await names(t);
    await t.cluster.stop();
    await t.cluster.start();
    const after = await t.converged();
    for (const s of after) expect(s.stateHash).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(after.map((s) => s.stateHash)).size).toBe(1);
    // Same namespace as before the restart (the session table may differ by the new leader's work).
    expect(await names(t)).toEqual(listedBefore);
    expect(after[0]!.counts).toEqual(before[0]!.counts);
  });
});

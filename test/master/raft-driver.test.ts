import { describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { MetaMachine, encodeEnvelope } from '../../src/master/meta-machine.ts';
import { RaftDriver } from '../../src/master/raft-driver.ts';
import { RaftStore } from '../../src/master/raft-store.ts';
import type { ApplyResult, MetaCommand } from '../../src/meta/index.ts';
import { MemoryNetwork } from '../support/memory-transport.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const blake3 = await loadBlake3();
const IDS = ['m1', 'm2', 'm3'];

/** Three drivers on real LevelDB logs in temp dirs, over an in-memory network. */
async function startCluster(options: { snapshotEveryEntries?: number } = {}) {
  const net = new MemoryNetwork();
  const dirs = new Map<string, string>();
  for (const id of IDS) dirs.set(id, await tempDir());
  const drivers = new Map<string, { driver: RaftDriver; machine: MetaMachine }>();
  const start = async (id: string) => {
    const machine = new MetaMachine();
    const driver = await RaftDriver.start({
      id,
      store: await RaftStore.open(dirs.get(id)!),
      transport: net.transport(id),
      machine,
      bootstrap: { voters: IDS, learners: [] },
      tickMs: 10,
      electionTicks: 10,
      requestTimeoutMs: 1_000,
      snapshotEveryEntries: options.snapshotEveryEntries ?? 10_000,
    });
    drivers.set(id, { driver, machine });
    return driver;
  };
  for (const id of IDS) await start(id);
  const live = () => [...drivers.values()].map((d) => d.driver);
  const leader = async (): Promise<RaftDriver> => {
    const any = live()[0]!;
    await any.until(() => live().some((d) => d.role === 'leader'), 5_000);
    return live().find((d) => d.role === 'leader')!;
  };
  const crash = async (id: string) => {
    const d = drivers.get(id)!;
    drivers.delete(id);
    net.isolate(id);
    await d.driver.close(); // only what was synced survives; nothing is flushed on the way out
  };
  const restart = async (id: string) => {
    net.heal(id);
    return start(id);
  };
  const stopAll = async () => {
    for (const id of [...drivers.keys()]) await crash(id);
  };
  return { net, drivers, live, leader, crash, restart, stopAll };
}

let seq = 0;
function mkdir(path: string): Uint8Array {
  const cmd: MetaCommand = { op: 'mkdir', path, parents: true, owner: 'test', nowMs: 1 };
  return encodeEnvelope({ clientId: 'test', seq: ++seq, cmd });
}

describe('RaftDriver: three masters on disk', () => {
  it('elects a leader and replicates applied commands to every master', async () => {
    const c = await startCluster();
    const leader = await c.leader();
    for (let i = 0; i < 20; i++) expect(await leader.propose(mkdir(`/d${i}`))).toMatchObject({ ok: true });
    const target = leader.appliedIndex;
    await Promise.all(c.live().map((d) => d.until(() => d.appliedIndex >= target, 5_000)));
    const hashes = [...c.drivers.values()].map((d) => d.machine.state.stateHash(blake3));
    expect(new Set(hashes).size).toBe(1);
    expect([...c.drivers.values()][0]!.machine.state.list('/').entries).toHaveLength(20);
    await c.stopAll();
  });

  it('a follower refuses proposals with ERR_NOT_LEADER naming the leader', async () => {
    const c = await startCluster();
    const leader = await c.leader();
    const follower = c.live().find((d) => d !== leader)!;
    await follower.until(() => follower.leaderId === leader.id, 5_000);
    const err = await follower.propose(mkdir('/x')).catch((e: unknown) => e);
    expect(isDfsError(err, 'ERR_NOT_LEADER')).toBe(true);
    expect((err as { leaderHint?: string }).leaderHint).toBe(leader.id);
    await c.stopAll();
  });

  it('survives the loss of the leader; the old leader restarts and catches up through a snapshot', async () => {
    const c = await startCluster({ snapshotEveryEntries: 5 });
    const first = await c.leader();
    for (let i = 0; i < 10; i++) await first.propose(mkdir(`/before${i}`));
    await c.crash(first.id);
    const second = await c.leader();
    expect(second.id).not.toBe(first.id);
    for (let i = 0; i < 30; i++) expect(await second.propose(mkdir(`/after${i}`))).toMatchObject({ ok: true });
    expect(second.status().snapshotIndex).toBeGreaterThan(10); // the log was compacted past the old leader
    const back = await c.restart(first.id);
    await back.until(() => back.appliedIndex >= second.appliedIndex, 10_000);
    expect(back.stats.snapshotsRestored).toBeGreaterThan(0);
    const machines = [...c.drivers.values()].map((d) => d.machine.state);
    expect(machines.map((m) => m.list('/', { limit: 100 }).entries.length)).toEqual([40, 40, 40]);
    expect(new Set(machines.map((m) => m.stateHash(blake3))).size).toBe(1);
    await c.stopAll();
  });

  it('without a majority, writes fail within the request timeout, and work again when it returns', async () => {
    const c = await startCluster();
    const leader = await c.leader();
    await leader.propose(mkdir('/ok'));
    const others = c.live().filter((d) => d !== leader).map((d) => d.id);
    for (const id of others) c.net.isolate(id);
    const started = performance.now();
    const err = await leader.propose(mkdir('/lost')).catch((e: unknown) => e);
    expect(isDfsError(err, 'ERR_TIMEOUT') || isDfsError(err, 'ERR_NOT_LEADER')).toBe(true);
    expect(performance.now() - started).toBeLessThan(3_000);
    for (const id of others) c.net.heal(id);
    const again = await c.leader();
    // The lost write may or may not have committed (its outcome was unknown); a retry with a
    // new request id must work.
    const r = (await again.propose(mkdir('/back'))) as ApplyResult;
    expect(r.ok).toBe(true);
    await c.stopAll();
  });

  it('all three restarted from disk hold identical state', async () => {
    const c = await startCluster({ snapshotEveryEntries: 7 });
    const leader = await c.leader();
    for (let i = 0; i < 25; i++) await leader.propose(mkdir(`/r${i}`));
    const target = leader.appliedIndex;
    await Promise.all(c.live().map((d) => d.until(() => d.appliedIndex >= target, 5_000)));
    await c.stopAll();
    for (const id of IDS) await c.restart(id);
    const l2 = await c.leader();
    await l2.propose(mkdir('/r0')); // an idempotent mkdir -p: commits without changing the namespace
    const t2 = l2.appliedIndex;
    await Promise.all(c.live().map((d) => d.until(() => d.appliedIndex >= t2, 5_000)));
    const entries = [...c.drivers.values()].map((d) => JSON.stringify([...d.machine.state.snapshotRecords()].filter((r) => r.t === 'entry')));
    expect(new Set(entries).size).toBe(1);
    expect(new Set([...c.drivers.values()].map((d) => d.machine.state.stateHash(blake3))).size).toBe(1);
    await c.stopAll();
  });
});

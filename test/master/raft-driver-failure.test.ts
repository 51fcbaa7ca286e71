import { describe, expect, it } from 'vitest';
import { isDfsError } from '../../src/errors/index.ts';
import { LeaderTaskHost } from '../../src/master/leader-tasks.ts';
import { MetaMachine, encodeEnvelope } from '../../src/master/meta-machine.ts';
import { type RaftLogStore, RaftDriver, type ReplicatedStateMachine } from '../../src/master/raft-driver.ts';
import { RaftStore } from '../../src/master/raft-store.ts';
import type { MetaCommand } from '../../src/meta/index.ts';
import { FaultyStore, startInProcessMasters } from '../support/master-fixture.ts';
import { MemoryNetwork } from '../support/memory-transport.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();

let seq = 0;
function mkdir(path: string): Uint8Array {
  const cmd: MetaCommand = { op: 'mkdir', path, parents: true, owner: 'test', nowMs: 1 };
  return encodeEnvelope({ clientId: 'test', seq: ++seq, cmd });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How `p` ended within `ms`: its error (or 'resolved'), or 'still pending'. */
function outcome(p: Promise<unknown>, ms: number): Promise<unknown> {
  return Promise.race([
    p.then(
      () => 'resolved',
      (err: unknown) => err,
    ),
    sleep(ms).then(() => 'still pending'),
  ]);
}

/** persistReady blocks until `fail()` (then rejects, as a broken disk would) or `pass()`. */
function gatePersist(store: RaftLogStore): { fail: () => void; pass: () => void } {
  const inner = store.persistReady.bind(store);
  let open!: (ok: boolean) => void;
  const gate = new Promise<boolean>((resolve) => (open = resolve));
  store.persistReady = (rd) =>
    gate.then((ok) => {
      if (!ok) throw new Error('EIO: simulated disk failure');
      return inner(rd);
    });
  return { fail: () => open(false), pass: () => open(true) };
}

describe('RaftDriver: a persist that fails while inputs are queued', () => {
  it('fails the proposals and read barriers queued behind the failed Ready', async () => {
    const c = await startInProcessMasters(tempDir);
    try {
      const L = await c.leader();
      await L.driver.propose(mkdir('/a'));
      const disk = gatePersist(L.store);
      const first = L.driver.propose(mkdir('/b')); // starts a Ready that blocks in persist
      await sleep(20);
      const queued = L.driver.propose(mkdir('/c')); // queued behind it
      const barrier = L.driver.readBarrier(); // queued behind it
      disk.fail();
      const [a, b, r] = await Promise.all([outcome(first, 2_000), outcome(queued, 2_000), outcome(barrier, 2_000)]);
      expect(L.failures).toHaveLength(1);
      for (const err of [a, b, r]) expect(isDfsError(err, 'ERR_NOT_LEADER'), String(err)).toBe(true);
      expect((b as Error).message).toMatch(/not running.*EIO/);
      // A halted driver refuses at once what comes next.
      expect(isDfsError(await outcome(L.driver.propose(mkdir('/d')), 1_000), 'ERR_NOT_LEADER')).toBe(true);
    } finally {
      await c.stop();
    }
  });

  it('stop() during a Ready fails what was queued behind it', async () => {
    const c = await startInProcessMasters(tempDir);
    try {
      const L = await c.leader();
      await L.driver.propose(mkdir('/a'));
      const disk = gatePersist(L.store);
      void L.driver.propose(mkdir('/b')).catch(() => {});
      await sleep(20);
      const queued = L.driver.propose(mkdir('/c'));
      const barrier = L.driver.readBarrier();
      L.driver.stop();
      const [b, r] = await Promise.all([outcome(queued, 1_000), outcome(barrier, 1_000)]);
      for (const err of [b, r]) expect(isDfsError(err, 'ERR_NOT_LEADER'), String(err)).toBe(true);
      expect((b as Error).message).toMatch(/not running/);
      disk.pass();
      expect(await outcome(L.driver.close(), 3_000)).toBe('resolved');
    } finally {
      await c.stop();
    }
  });

  it('a snapshot job waiting for its compact input does not keep close() from returning', async () => {
    const net = new MemoryNetwork();
    const store = new FaultyStore(await RaftStore.open(await tempDir()));
    const meta = new MetaMachine();
    let releaseSnapshot!: () => void;
    const snapshotGate = new Promise<void>((resolve) => (releaseSnapshot = resolve));
    let snapshotStarted = false;
    const machine: ReplicatedStateMachine = {
      apply: (index, data) => meta.apply(index, data),
      snapshot: async () => {
        const data = meta.snapshot(); // captured at the call, as the contract asks
        snapshotStarted = true;
        await snapshotGate;
        return data;
      },
      restore: (data) => meta.restore(data),
    };
    const failures: Error[] = [];
    const driver = await RaftDriver.start({
      id: 'm1',
      store,
      transport: net.transport('m1'),
      machine,
      bootstrap: { voters: ['m1'], learners: [] },
      tickMs: 10,
      electionTicks: 10,
      requestTimeoutMs: 1_000,
      snapshotEveryEntries: 1,
      onFailure: (err) => failures.push(err),
    });
    await driver.until(() => driver.role === 'leader', 5_000);
    await driver.propose(mkdir('/a'));
    await driver.until(() => snapshotStarted, 5_000); // the job waits in machine.snapshot()
    const disk = gatePersist(store);
    const first = driver.propose(mkdir('/b')); // a Ready blocks in persist
    await sleep(20);
    releaseSnapshot(); // the job's compact input queues behind that Ready
    await sleep(20);
    disk.fail();
    expect(isDfsError(await outcome(first, 2_000), 'ERR_NOT_LEADER')).toBe(true);
    expect(failures).toHaveLength(1);
    expect(await outcome(driver.close(), 3_000)).toBe('resolved');
  });
});

describe('LeaderTaskHost: a task in confirm() when the disk fails', () => {
  it('stop() still returns (confirm() rejects as soon as the leadership is lost)', async () => {
    const c = await startInProcessMasters(tempDir);
    try {
      const L = await c.leader();
      let go!: () => void;
      const started = new Promise<void>((resolve) => (go = resolve));
      let confirming = false;
      let confirmed: unknown = 'not yet';
      const host = new LeaderTaskHost({
        driver: L.driver,
        tasks: [
          {
            name: 'gc-like',
            run: async (ctx) => {
              await started;
              confirming = true;
              confirmed = await outcome(ctx.confirm(), 10_000);
              await ctx.sleep(60_000); // rejects at once: the leadership is already lost
            },
          },
        ],
      });
      host.start();
      await L.driver.until(() => host.confirmedTerm !== null, 5_000);
      const disk = gatePersist(L.store);
      void L.driver.propose(mkdir('/b')).catch(() => {});
      await sleep(20);
      go();
      while (!confirming) await sleep(1);
      disk.fail();
      await sleep(50);
      expect(await outcome(host.stop(), 3_000)).toBe('resolved');
      expect(L.failures).toHaveLength(1);
      expect(isDfsError(confirmed, 'ERR_NOT_LEADER'), String(confirmed)).toBe(true);
    } finally {
      await c.stop();
    }
  });

  it('confirm() rejects when the signal aborts even if the barrier never answers', async () => {
    const listeners = new Set<() => void>();
    const driver = {
      role: 'leader',
      term: 3,
      readBarrier: () => (confirmCalls++ === 0 ? Promise.resolve() : new Promise<void>(() => {})), // the host's own confirm passes; the task's never answers
      onChange: (l: () => void) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    };
    let confirmCalls = 0;
    let confirmed: Promise<void> | undefined;
    const host = new LeaderTaskHost({
      driver,
      tasks: [
        {
          name: 'stuck',
          run: async (ctx) => {
            confirmed = ctx.confirm();
            await confirmed;
          },
        },
      ],
    });
    host.start();
    while (!confirmed) await sleep(1);
    const settled = outcome(confirmed, 2_000);
    driver.role = 'follower';
    for (const l of listeners) l();
    const err = await settled;
    expect(isDfsError(err, 'ERR_NOT_LEADER'), String(err)).toBe(true);
    expect(await outcome(host.stop(), 1_000)).toBe('resolved');
  });
});

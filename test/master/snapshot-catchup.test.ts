import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { afterEach, describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { MemoryLogger } from '../../src/log/index.ts';
import { encodeEnvelope, MetaMachine } from '../../src/master/meta-machine.ts';
import { RaftDriver } from '../../src/master/raft-driver.ts';
import { RaftStore } from '../../src/master/raft-store.ts';
import { Libp2pRaftTransport } from '../../src/master/raft-transport.ts';
import type { ApplyResult } from '../../src/meta/index.ts';
import { createPeer, type DfsPeer } from '../../src/net/index.ts';
import { cid, manifestOf } from '../support/meta-fixtures.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const blake3 = await loadBlake3();

/** 16 files of 65,536 chunks (the manifest limit): 1,048,576 chunk references in 16 log entries. */
const FILES = 16;
const CHUNKS_PER_FILE = 65_536;

interface Member {
  readonly key: PrivateKey;
  readonly id: string;
  readonly dir: string;
  port: number;
  running?: { peer: DfsPeer; transport: Libp2pRaftTransport; driver: RaftDriver; machine: MetaMachine };
}

const members: Member[] = [];
afterEach(async () => {
  for (const m of members.splice(0)) await stop(m);
});

async function stop(m: Member): Promise<void> {
  const r = m.running;
  if (!r) return;
  m.running = undefined;
  await r.transport.stop();
  await r.driver.close();
  await r.peer.stop();
}

/** Three masters in this process: real libp2p peers on loopback, real LevelDB logs, the real transport. */
async function startCluster(): Promise<{ members: Member[]; start: (m: Member) => Promise<void>; logger: MemoryLogger }> {
  const logger = new MemoryLogger({ max: 2_000 });
  for (let i = 0; i < 3; i++) {
    const key = await generateKeyPair('Ed25519');
    const probe = await createPeer({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'] });
    const port = Number(probe.listenAddrs.find((a) => a.startsWith('/ip4/127.0.0.1/tcp/'))!.split('/')[4]);
    const id = probe.peerId;
    await probe.stop();
    members.push({ key, id, dir: await tempDir(), port });
  }
  const addrOf = (m: Member) => `/ip4/127.0.0.1/tcp/${m.port}/p2p/${m.id}`;
  const voters = members.map((m) => m.id).sort();
  const start = async (m: Member): Promise<void> => {
    const peer = await createPeer({ privateKey: m.key, listen: [`/ip4/127.0.0.1/tcp/${m.port}`] });
    const others = new Map(members.filter((o) => o !== m).map((o) => [o.id, addrOf(o)]));
    const log = logger.child({ master: m.id.slice(-6) });
    const transport = new Libp2pRaftTransport(peer, others, { snapshotDir: join(m.dir, 'incoming'), logger: log });
    await transport.start();
    const machine = new MetaMachine();
    const driver = await RaftDriver.start({
      id: m.id,
      store: await RaftStore.open(join(m.dir, 'raft')),
      transport,
      machine,
      bootstrap: { voters, learners: [] },
      tickMs: 50,
      electionTicks: 20,
      requestTimeoutMs: 20_000,
      // Compact every few entries, and do not wait for a master that is down.
      snapshotEveryEntries: 16,
      catchUpEntries: 2,
      logger: log,
    });
    m.running = { peer, transport, driver, machine };
  };
  for (const m of members) await start(m);
  return { members, start, logger };
}

async function leaderOf(ms: Member[]): Promise<Member> {
  const live = ms.filter((m) => m.running);
  await live[0]!.running!.driver.until(() => live.some((m) => m.running!.driver.role === 'leader'), 15_000);
  return live.find((m) => m.running!.driver.role === 'leader')!;
}

/** Proposes at whichever master leads, again (same request id: applied once) if leadership moves. */
async function proposeAtLeader(ms: Member[], data: Uint8Array): Promise<ApplyResult> {
  for (let attempt = 0; ; attempt++) {
    const leader = await leaderOf(ms);
    try {
      return (await leader.running!.driver.propose(data)) as ApplyResult;
    } catch (err) {
      if (attempt >= 5 || !(isDfsError(err, 'ERR_NOT_LEADER') || isDfsError(err, 'ERR_TIMEOUT'))) throw err;
    }
  }
}

function commitFile(f: number, seq: number): Uint8Array {
  const chunks: Array<[string, number]> = [];
  for (let i = 0; i < CHUNKS_PER_FILE; i++) chunks.push([cid(f * CHUNKS_PER_FILE + i + 1), 4096 + (i % 7)]);
  return encodeEnvelope({ clientId: 'bulk', seq, cmd: { op: 'commitFile', path: `/big/f${f}`, manifest: manifestOf(chunks), owner: 'test', nowMs: 1_000 + f, parents: true, ifAbsent: false } });
}

/**
 * The longest stall of this process's event loop: wall time between the ticks of a 10 ms
 * interval, and the main thread's CPU time in that gap (the OS may also hand the CPU elsewhere).
 */
function stallMeter(): { stop(): string } {
  let last = performance.now();
  let lastCpu = process.threadCpuUsage();
  let worst = 0;
  let worstCpu = 0;
  const tick = () => {
    const now = performance.now();
    const cpu = process.threadCpuUsage(lastCpu);
    worst = Math.max(worst, now - last);
    worstCpu = Math.max(worstCpu, (cpu.user + cpu.system) / 1000);
    last = now;
    lastCpu = process.threadCpuUsage();
  };
  const timer = setInterval(tick, 10);
  return {
    stop() {
      clearInterval(timer);
      tick();
      return `${worst.toFixed(0)} ms wall / ${worstCpu.toFixed(0)} ms CPU`;
    },
  };
}

describe('a lagging master catches up through a streamed snapshot (LARGE: 1,048,576 chunk references, ~75 MB snapshot)', () => {
  it('a stopped master restarts after the log was compacted past it, installs the snapshot in pieces and reaches the same state hash', { timeout: 180_000 }, async () => {
    const t0 = performance.now();
    const c = await startCluster();
    const leader = await leaderOf(c.members);
    const lagging = c.members.find((m) => m !== leader)!;
    await proposeAtLeader(c.members, encodeEnvelope({ clientId: 'small', seq: 1, cmd: { op: 'mkdir', path: '/early', parents: true, owner: 'test', nowMs: 1 } }));
    await lagging.running!.driver.until(() => lagging.running!.driver.appliedIndex >= leader.running!.driver.appliedIndex, 10_000);
    const laggingApplied = lagging.running!.driver.appliedIndex;
    await stop(lagging);

    const live = c.members.filter((m) => m !== lagging);
    const writing = stallMeter();
    for (let f = 0; f < FILES; f++) {
      const r = await proposeAtLeader(live, commitFile(f, f + 1));
      expect(r.ok, JSON.stringify(r)).toBe(true);
    }
    // 16 small writes more, so that each live master (they compact on their own, every 16
    // entries) takes a snapshot holding every file: the whole 1M-reference state must travel as one.
    const lastFile = Math.max(...live.map((m) => m.running!.driver.appliedIndex));
    for (let i = 0; i < 16; i++) {
      await proposeAtLeader(live, encodeEnvelope({ clientId: 'small', seq: 2 + i, cmd: { op: 'mkdir', path: `/late/d${i}`, parents: true, owner: 'test', nowMs: 2 } }));
    }
    for (const m of live) await m.running!.driver.until(() => m.running!.driver.status().snapshotIndex >= lastFile, 60_000);
    const target = Math.max(...live.map((m) => m.running!.driver.appliedIndex));
    const writeStall = writing.stop();
    for (const m of live) expect(m.running!.driver.status().snapshotIndex).toBeGreaterThan(laggingApplied + 1); // compacted past the stopped master
    expect(live[0]!.running!.machine.state.counts.chunksReferenced).toBe(FILES * CHUNKS_PER_FILE);
    const tWritten = performance.now();

    const catching = stallMeter();
    await c.start(lagging);
    const back = lagging.running!.driver;
    await back.until(() => back.appliedIndex >= target, 60_000);
    const catchUpStall = catching.stop();
    const tCaughtUp = performance.now();

    expect(back.stats.snapshotsRestored).toBeGreaterThan(0);
    expect(lagging.running!.transport.stats.snapshotsReceived).toBeGreaterThan(0);
    expect(lagging.running!.transport.stats.snapshotsRefused).toBe(0);
    expect(live.reduce((n, m) => n + m.running!.transport.stats.snapshotsSent, 0)).toBeGreaterThan(0);
    const snapshotBytes = c.logger.find(/received a snapshot/)[0]!.fields.bytes as number;
    expect(snapshotBytes).toBeGreaterThan(64 * 1024 * 1024); // more than one /dfs/raft frame could carry
    const hashes = c.members.map((m) => m.running!.machine.state.stateHash(blake3));
    expect(new Set(hashes).size).toBe(1);
    expect(lagging.running!.machine.state.counts.chunksReferenced).toBe(FILES * CHUNKS_PER_FILE);
    lagging.running!.machine.state.checkInvariants();

    const took = c.logger.find(/took a snapshot/).map((r) => r.fields.ms as number);
    console.log(
      `[snapshot-catchup] ${FILES * CHUNKS_PER_FILE} chunk refs, snapshot ${(snapshotBytes / 1024 / 1024).toFixed(1)} MiB; ` +
        `writes+compactions ${((tWritten - t0) / 1000).toFixed(1)} s (longest stall of the shared event loop ${writeStall}; snapshots took ${took.join(', ')} ms); ` +
        `catch-up ${((tCaughtUp - tWritten) / 1000).toFixed(1)} s (longest stall ${catchUpStall}; all three masters share this process)`,
    );
  });
});

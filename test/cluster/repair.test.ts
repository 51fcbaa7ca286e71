import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ByteSink, getFile, MetaClient, putFile } from '../../src/client/index.ts';
import { hasChunks } from '../../src/protocol/chunk-client.ts';
import { type Blake3, loadBlake3 } from '../../src/chunker/index.ts';
import type { FileEntry, MasterStatus, NodeView } from '../../src/meta/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { startTestCluster, type TestCluster } from '../support/cluster.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';

/**
 * Issue 14 against real processes: 3 masters, 5 storage nodes, RF 3, a fast failure detector
 * (suspect after 1 s, dead after 3 s). Every wait is on an observed condition, bounded.
 */
const FAST = ['--suspect-after', '1000', '--dead-after', '3000', '--gc-grace-ms', '600000'];
const blake3: Blake3 = await loadBlake3();
let t: TestCluster | undefined;
let peer: DfsPeer | undefined;

afterEach(async () => {
  await peer?.stop();
  await t?.stop();
  peer = undefined;
  t = undefined;
});

async function cluster(nodeArgs: string[] = []) {
  t = await startTestCluster({ nodes: 5, masterArgs: FAST, nodeArgs });
  peer = await t.cluster.createClientPeer();
  // The cluster has users: this client is a writer (a test peer is nobody by itself), made
  // through the admin key; node administration stays with the admin key.
  const password = 'repair-test-password';
  await t.client((c) => c.addUser('tester', password, ['writer']));
  const { token } = await t.client((c) => c.login('tester', password));
  const meta = new MetaClient({ peer, masters: t.cluster.masterAddrs, token });
  const tc = t;
  const p = peer;
  const put = (path: string, data: Uint8Array) => putFile([data] as unknown as AsyncIterable<Uint8Array>, path, { peer: p, meta, blake3 });
  const get = async (path: string): Promise<Buffer> => {
    const parts: Uint8Array[] = [];
    const sink: ByteSink = { write: async (pieces) => void parts.push(...pieces.map((x) => Buffer.from(x))) };
    await getFile(path, sink, { peer: p, meta, blake3 });
    return Buffer.concat(parts);
  };
  // Any master answers status: ask them all and take the leader's (it alone knows chunk health).
  const leaderStatus = async (): Promise<MasterStatus> => {
    const leader = (await meta.statusAll()).find((a) => a.status?.role === 'leader')?.status;
    if (!leader) throw new Error('no leader right now');
    return leader;
  };
  const nodes = async (): Promise<NodeView[]> => (await meta.leaderRequest({ type: 'nodes' })) as NodeView[];
  /** Polls `probe` until it holds; fails with the last value after `timeoutMs`. */
  const until = async <T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    let last: T | undefined;
    for (;;) {
      try {
        last = await probe();
        if (ok(last)) return last;
      } catch {
        // a leader change: ask again
      }
      if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const atRf = () => until('every chunk at RF', leaderStatus, (s) => s.chunks !== undefined && s.chunks.ready && s.chunks.total > 0 && s.chunks.underReplicated === 0 && s.chunks.repairing === 0);
  /** Which running nodes hold each chunk of `path` (asked of every node directly). */
  const holders = async (path: string): Promise<Map<string, string[]>> => {
    const ids = ((await meta.stat(path)) as FileEntry).manifest.chunks.map(([id]) => id);
    const out = new Map(ids.map((id) => [id, [] as string[]]));
    for (const name of tc.cluster.nodeNames.filter((n) => tc.cluster.isRunning(n))) {
      const present = await hasChunks(p, tc.cluster.readyInfo(name).addrs[0]!, ids).catch(() => ids.map(() => false));
      present.forEach((has: boolean, i: number) => has && out.get(ids[i]!)!.push(name));
    }
    return out;
  };
  return { t: tc, meta, put, get, leaderStatus, nodes, until, atRf, holders };
}

const seed = testSeed('repair');

describe('repair after node loss (real processes)', () => {
  it('one node SIGKILLed: back at RF after detection; then a second original holder dies and the file still reads back', async () => {
    const c = await cluster();
    const data = new SeededBytes(seed).bytes(24 * 1024 * 1024);
    await c.put('/r/one', data);
    await c.atRf();
    const before = await c.holders('/r/one');
    const victim = [...before.values()][0]![0]!;
    const killedAt = Date.now();
    await c.t.cluster.kill(victim);
    const dead = await c.until('the victim declared dead', c.nodes, (ns) => ns.some((n) => n.name === victim && n.state === 'dead'));
    const detectedMs = Date.now() - killedAt;
    await c.atRf();
    const repairedMs = Date.now() - killedAt - detectedMs;
    console.log(`[repair] 24 MiB: detection ${(detectedMs / 1000).toFixed(1)} s (dead-after 3 s), back at RF ${(repairedMs / 1000).toFixed(1)} s after it`);
    expect(dead.find((n) => n.name === victim)?.state).toBe('dead');
    const after = await c.holders('/r/one');
    for (const [, names] of after) expect(new Set(names).size).toBeGreaterThanOrEqual(3);
    // A second node that held copies originally goes too: nothing is lost.
    const second = [...before.values()].flat().find((n) => n !== victim)!;
    await c.t.cluster.kill(second);
    expect((await c.get('/r/one')).equals(Buffer.from(data))).toBe(true);
  }, 180_000);

  it('the leader SIGKILLed during a repair: the new leader finishes it', async () => {
    const c = await cluster();
    const data = new SeededBytes(seed + 5).bytes(48 * 1024 * 1024);
    await c.put('/r/leader', data);
    await c.atRf();
    const victim = [...(await c.holders('/r/leader')).values()][0]![0]!;
    await c.t.cluster.kill(victim);
    await c.until('repair under way', c.leaderStatus, (s) => (s.chunks?.repairing ?? 0) > 0 || (s.chunks?.repaired ?? 0) > 0);
    const leader = await c.t.leaderName();
    await c.t.cluster.kill(leader);
    await c.until('a new leader', c.leaderStatus, (s) => s.name !== leader);
    await c.atRf();
    expect((await c.get('/r/leader')).equals(Buffer.from(data))).toBe(true);
  }, 180_000);

  it('two nodes killed at once: nothing lost, everything repaired', async () => {
    const c = await cluster();
    const data = new SeededBytes(seed + 1).bytes(12 * 1024 * 1024);
    await c.put('/r/two', data);
    await c.atRf();
    const [a, b] = c.t.cluster.nodeNames;
    await Promise.all([c.t.cluster.kill(a!), c.t.cluster.kill(b!)]);
    await c.until('both dead', c.nodes, (ns) => ns.filter((n) => n.state === 'dead').length === 2);
    await c.atRf();
    expect((await c.get('/r/two')).equals(Buffer.from(data))).toBe(true);
  }, 180_000);

  it('a node that returns after its data was repaired: extra copies are trimmed, nothing needed is lost', async () => {
    const c = await cluster();
    const data = new SeededBytes(seed + 2).bytes(8 * 1024 * 1024);
    await c.put('/r/back', data);
    await c.atRf();
    const victim = [...(await c.holders('/r/back')).values()][0]![0]!;
    await c.t.cluster.kill(victim);
    await c.until('dead', c.nodes, (ns) => ns.some((n) => n.name === victim && n.state === 'dead'));
    await c.atRf();
    await c.t.cluster.startNode(victim);
    await c.until('alive again', c.nodes, (ns) => ns.every((n) => n.state === 'alive'));
    await c.until('exactly RF copies again', () => c.holders('/r/back'), (h) => [...h.values()].every((names) => names.length === 3));
    expect((await c.get('/r/back')).equals(Buffer.from(data))).toBe(true);
  }, 180_000);

  it('a corrupt chunk file: the scrub finds it, it is copied again from a good one, and a get still reads right', async () => {
    const c = await cluster(['--scrub-interval', '2000']);
    const data = new SeededBytes(seed + 3).bytes(3 * 1024 * 1024);
    await c.put('/r/rot', data);
    await c.atRf();
    const [id, names] = [...(await c.holders('/r/rot'))][0]!;
    const dir = join(c.t.cluster.spec.nodes!.find((n) => n.name === names![0])!.dir, 'chunks', 'chunks', id!.slice(0, 2), id!.slice(2, 4));
    expect(await readdir(dir)).toContain(id);
    await writeFile(join(dir, id!), Buffer.alloc(1024, 7)); // flipped: another length, other bytes
    expect((await c.get('/r/rot')).equals(Buffer.from(data))).toBe(true);
    await c.until('the bad copy gone from that node', () => c.holders('/r/rot'), (h) => !h.get(id!)!.includes(names![0]!));
    await c.atRf();
    await c.until('3 good copies', () => c.holders('/r/rot'), (h) => h.get(id!)!.length === 3);
  }, 180_000);

  it('a drain moves every copy away, never leaving a chunk below RF (sampled), then the node can be removed', async () => {
    const c = await cluster();
    const data = new SeededBytes(seed + 4).bytes(8 * 1024 * 1024);
    await c.put('/r/drain', data);
    await c.atRf();
    const target = [...(await c.holders('/r/drain')).values()][0]![0]!;
    const node = (await c.nodes()).find((n) => n.name === target)!;
    // Node administration comes from the cluster's admin identity (or a master) only.
    const adminPeer = await c.t.cluster.createAdminPeer();
    const admin = new MetaClient({ peer: adminPeer, masters: c.t.cluster.masterAddrs });
    await expect(c.meta.write({ op: 'drainNode', nodeId: node.id })).rejects.toMatchObject({ code: 'ERR_FORBIDDEN' });
    await admin.write({ op: 'drainNode', nodeId: node.id });
    let minCopies = Infinity;
    await c.until(
      'drained',
      async () => {
        const h = await c.holders('/r/drain');
        for (const names of h.values()) minCopies = Math.min(minCopies, names.length);
        return h;
      },
      (h) => [...h.values()].every((names) => !names.includes(target)),
    );
    expect(minCopies).toBeGreaterThanOrEqual(3);
    await admin.write({ op: 'removeNode', nodeId: node.id, force: false });
    admin.close();
    await adminPeer.stop();
    expect((await c.nodes()).some((n) => n.id === node.id)).toBe(false);
    expect((await c.get('/r/drain')).equals(Buffer.from(data))).toBe(true);
  }, 180_000);
});

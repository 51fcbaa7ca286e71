import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Blake3, loadBlake3 } from '../../src/chunker/index.ts';
import { type ByteSink, getFile, MetaClient, putFile } from '../../src/client/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { type FileEntry, META_PROTOCOL, type MasterStatus } from '../../src/meta/index.ts';
import { type DfsPeer, FrameReader, FrameWriter } from '../../src/net/index.ts';
import { signReceipt } from '../../src/net/receipt.ts';
import { CHUNK_PROTOCOL } from '../../src/protocol/chunk-protocol.ts';
import { hasChunks } from '../../src/protocol/chunk-client.ts';
import { startTestCluster, type TestCluster } from '../support/cluster.ts';
import {
  chunkExchange,
  ConnectionSentinel,
  identity,
  insiderPeer,
  logLines,
  metaCall,
  RAFT_PROTOCOL,
  raftFrames,
  sendFrames,
  SNAPSHOT_PROTOCOL,
  snapshotFrames,
  strangerPeer,
} from '../support/attacker.ts';

/**
 * Issue 12's attacks against a real cluster (3 master and 3 storage node processes, `dfs cluster
 * up`'s code): the attacker is a libp2p peer in this process. Unless a test is about the secret,
 * it holds the cluster secret (an insider) but no user, no admin key and no node registration;
 * where a check sits behind a ticket, a second attacker is a user with the writer role
 * ("mallory"), who may read and write files but nothing more. Tests run in order on one cluster.
 */
const blake3: Blake3 = await loadBlake3();
const PASSWORD = 'attack-test-password';
let t: TestCluster;
/** Role-less insider. */
let insider: DfsPeer;
/** An honest writer's peer and client, and the file it stored. */
let alice: { peer: DfsPeer; meta: MetaClient };
/** A malicious writer. */
let mallory: { peer: DfsPeer; meta: MetaClient };
const FILE = '/alice/file.bin';
let fileBytes: Buffer;

async function writer(name: string): Promise<{ peer: DfsPeer; meta: MetaClient }> {
  await t.client((c) => c.addUser(name, PASSWORD, ['writer']));
  const { token } = await t.client((c) => c.login(name, PASSWORD));
  const peer = await t.cluster.createClientPeer();
  return { peer, meta: new MetaClient({ peer, masters: t.cluster.masterAddrs, token }) };
}

beforeAll(async () => {
  t = await startTestCluster({ masters: 3, nodes: 3 });
  insider = await insiderPeer(t.cluster);
  alice = await writer('alice');
  mallory = await writer('mallory');
  fileBytes = randomBytes(3 * 1024 * 1024 + 123);
  await putFile([fileBytes] as unknown as AsyncIterable<Uint8Array>, FILE, { peer: alice.peer, meta: alice.meta, blake3 });
  await t.converged();
}, 90_000);

afterAll(async () => {
  alice?.meta.close();
  mallory?.meta.close();
  await Promise.all([insider?.stop(), alice?.peer.stop(), mallory?.peer.stop()]);
  await t?.stop();
});

const master = (name: string) => t.cluster.spec.masters.find((m) => m.name === name)!;
const node = (name: string) => ({ peerId: t.cluster.readyInfo(name).peerId, addr: t.cluster.readyInfo(name).addrs[0]! });

async function leaderStatus(): Promise<MasterStatus> {
  return t.client((c) => c.waitForLeader(15_000));
}

async function readBack(path: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  const sink: ByteSink = { write: async (pieces) => void parts.push(...pieces.map((p) => Buffer.from(p))) };
  await getFile(path, sink, { peer: alice.peer, meta: alice.meta, blake3 });
  return Buffer.concat(parts);
}

async function fileChunks(path: string): Promise<string[]> {
  return ((await alice.meta.stat(path)) as FileEntry).manifest.chunks.map(([id]) => id);
}

/** Which of the cluster's storage nodes really hold `ids` (asked of each node). */
async function realHolders(ids: readonly string[]): Promise<Map<string, string[]>> {
  const out = new Map(ids.map((id) => [id, [] as string[]]));
  for (const name of t.cluster.nodeNames) {
    const present = await hasChunks(alice.peer, node(name).addr, ids);
    present.forEach((has, i) => has && out.get(ids[i]!)!.push(node(name).peerId));
  }
  return out;
}

/** The leader's holders of `ids` (peer ids), as a locate with the file's path answers them. */
async function leaderHolders(path: string, ids: readonly string[]): Promise<Map<string, string[]>> {
  const located = (await alice.meta.leaderRequest({ type: 'locate', ids: [...ids], path })) as Array<{ id: string; holders: string[] }>;
  return new Map(located.map((l) => [l.id, l.holders.map((a) => a.slice(a.lastIndexOf('/p2p/') + 5))]));
}

describe('6. a peer without the cluster secret, or with another', () => {
  for (const secret of ['none', 'other'] as const) {
    it(`(${secret}) cannot complete a connection to a master or a storage node: the handshake fails`, async () => {
      const stranger = await strangerPeer(secret);
      try {
        for (const [addr, protocol] of [
          [master('m1').addr, META_PROTOCOL],
          [node('n1').addr, CHUNK_PROTOCOL],
        ] as const) {
          const err = await stranger.dialProtocol(addr, protocol, { timeoutMs: 5_000 }).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(isDfsError(err, 'ERR_PEER_UNREACHABLE'), String(err)).toBe(true);
          const causes: string[] = [];
          for (let c = (err as Error).cause; c instanceof Error; c = c.cause) causes.push(c.name);
          expect(causes, (err as Error).message).toContain('EncryptionFailedError');
          expect(stranger.connectedPeers()).toEqual([]);
        }
      } finally {
        await stranger.stop();
      }
    });
  }
});

describe('1. Raft from a peer that is not a member', () => {
  it('appends, heartbeats, votes and timeoutNow with a higher term, and InstallSnapshots (valid and invalid) change nothing', async () => {
    const before = await t.converged();
    const leader = before.find((s) => s.role === 'leader')!;
    const hashes = new Set(before.map((s) => s.stateHash));
    expect(hashes.size).toBe(1);
    const me = insider.peerId;
    const high = leader.term + 50;
    const endings: Array<{ to: string; what: string; closed: boolean; error?: string }> = [];
    for (const m of t.cluster.spec.masters) {
      const other = t.cluster.spec.masters.find((o) => o.name !== m.name)!.peerId;
      const messages = [
        { type: 'append', from: me, to: m.peerId, term: high, prevLogIndex: 0, prevLogTerm: 0, entries: [], commit: 0 },
        { type: 'heartbeat', from: me, to: m.peerId, term: high, commit: 1_000_000, context: null },
        { type: 'vote', from: me, to: m.peerId, term: high, lastLogIndex: 1_000_000, lastLogTerm: high, transfer: true },
        // Spoofed: claiming to be another master (the transport knows who really speaks).
        { type: 'heartbeat', from: other, to: m.peerId, term: high, commit: 1_000_000, context: null },
        { type: 'timeoutNow', from: other, to: m.peerId, term: high },
      ];
      const raft = await sendFrames(insider, m.addr, RAFT_PROTOCOL, raftFrames(messages));
      endings.push({ to: m.name, what: 'raft', ...raft });
      const metadata = { index: 1_000_000, term: high, config: { voters: [me], learners: [] } };
      for (const [what, data, from] of [
        ['snapshot: empty (valid) state', new Uint8Array(0), me],
        ['snapshot: invalid JSON', new TextEncoder().encode('{not json\n'), me],
        ['snapshot: empty state, spoofed from a master', new Uint8Array(0), other],
      ] as const) {
        const snap = await sendFrames(insider, m.addr, SNAPSHOT_PROTOCOL, snapshotFrames({ from, to: m.peerId, term: high, metadata }, data));
        endings.push({ to: m.name, what, ...snap });
      }
    }
    // An election timeout is 10-20 ticks of 50 ms: a master that took the higher term would have
    // changed its role or term by now.
    await sleep(2_000);
    const after = await t.converged();
    for (const e of endings) {
      expect(e.closed, `${e.to} ${e.what}`).toBe(true);
      expect(e.error, `${e.to} ${e.what}`).toBeDefined(); // reset by the master, not closed cleanly
    }
    expect(after.map((s) => [s.name, s.role, s.term, s.leaderId, s.stateHash])).toEqual(before.map((s) => [s.name, s.role, s.term, s.leaderId, leader.stateHash]));
    for (const m of t.cluster.spec.masters) expect(t.cluster.isRunning(m.name)).toBe(true);
    // Every master says why the snapshots went nowhere.
    for (const m of t.cluster.spec.masters) {
      const refused = await logLines(m.dir, /refused a snapshot from a peer that is not a known master/);
      expect(refused.filter((l) => l.includes(me)).length, m.name).toBe(3);
    }
    console.log(`[attack] raft from a non-member: ${endings.length} streams reset (${[...new Set(endings.map((e) => e.error?.replace(/\d+/g, 'N')))].join('; ')}); leader ${leader.name} term ${leader.term} kept; state hash unchanged`);
  }, 60_000);
});

describe('3. spoofed reports and node-state changes', () => {
  it('setNodeState from anyone but a master, heartbeats and reports for another node: refused', async () => {
    const leader = await leaderStatus();
    const addr = master(leader.name).addr;
    const n1 = node('n1').peerId;
    const heartbeat = { type: 'heartbeat', nodeId: n1, freeBytes: 1, capacityBytes: 1, usedBytes: 0, chunkCount: 0, inflight: 0, added: [], removed: (await fileChunks(FILE)).slice(0, 1) };
    const malloryToken = (await t.client((c) => c.login('mallory', PASSWORD))).token;
    for (const [who, extra] of [
      ['insider', {}],
      ['mallory', { token: malloryToken }],
    ] as const) {
      const peer = who === 'insider' ? insider : mallory.peer;
      const setState = await metaCall(peer, addr, { type: 'write', clientId: `${who}-x`, seq: 1, cmd: { op: 'setNodeState', nodeId: n1, state: 'dead' }, ...extra });
      expect(setState, who).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await metaCall(peer, addr, { ...heartbeat, ...extra }), who).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await metaCall(peer, addr, { type: 'report', nodeId: n1, ids: [], first: true, last: true, ...extra }), who).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      // A registration of another peer, and of oneself at another peer's address.
      const reg = (nodeId: string, addrs: string[]) => ({ type: 'write', clientId: `${who}-r`, seq: 2, cmd: { op: 'registerNode', nodeId, addrs, capacityBytes: 1e12 }, ...extra });
      expect(await metaCall(peer, addr, reg(n1, ['/ip4/127.0.0.1/tcp/1'])), who).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await metaCall(peer, addr, reg(peer.peerId, [`/ip4/127.0.0.1/tcp/1/p2p/${n1}`])), who).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
    }
    const nodes = (await t.client((c) => c.leaderRequest({ type: 'nodes' }))) as Array<{ id: string; state: string }>;
    expect(nodes.map((n) => n.state)).toEqual(['alive', 'alive', 'alive']);
    const status = await leaderStatus();
    expect(status.chunks).toMatchObject({ underReplicated: 0, missing: 0 });
  });

  it('a bad-replica report for a good copy: refused from a role-less peer, and from a writer only makes the node verify (the copy stays counted)', async () => {
    const leader = await leaderStatus();
    const addr = master(leader.name).addr;
    const ids = await fileChunks(FILE);
    const n1 = node('n1').peerId;
    expect(await metaCall(insider, addr, { type: 'badReplica', id: ids[0], nodeId: n1 })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
    for (const id of ids) await mallory.meta.leaderRequest({ type: 'badReplica', id, nodeId: n1 });
    // The node verifies at its next heartbeats (every second or so) and finds its copies good.
    await sleep(3_000);
    const holders = await leaderHolders(FILE, ids);
    for (const id of ids) expect(holders.get(id), id).toContain(n1);
    expect((await leaderStatus()).chunks).toMatchObject({ underReplicated: 0, missing: 0 });
    expect((await readBack(FILE)).equals(fileBytes)).toBe(true);
  }, 30_000);
});

describe('4. a put whose pipeline would make a node dial for the attacker (port scanning)', () => {
  it('a pipeline of addresses or of an unknown peer id is refused, and nothing connects to the named port', async () => {
    const sentinel = await ConnectionSentinel.start();
    try {
      const data = randomBytes(1000);
      const id = blake3.hashHex(data);
      const placed = (await mallory.meta.leaderRequest({ type: 'place', chunks: [{ id, size: data.byteLength }], uploadId: 'scan', path: '/mallory/scan' })) as Array<{ targets: string[]; fence: number; ticket: string }>;
      const { targets, fence, ticket } = placed[0]!;
      const first = targets[0]!;
      const stranger = (await identity()).peerId;
      const put = (pipeline: string[], withTicket = true) => chunkExchange(mallory.peer, first, { op: 'put', id, size: data.byteLength, fence, pipeline, ...(withTicket ? { ticket } : {}) }, data);
      for (const pipeline of [[`/ip4/127.0.0.1/tcp/${sentinel.port}`], [`/ip4/127.0.0.1/tcp/${sentinel.port}/p2p/${stranger}`], [`/dns4/localhost/tcp/${sentinel.port}`]]) {
        const { answer } = await put(pipeline);
        expect(answer, pipeline[0]).toMatchObject({ ok: false, code: 'ERR_PROTOCOL', message: expect.stringMatching(/^field pipeline\[0\]/) });
      }
      const unknown = await put([stranger]);
      expect(unknown.answer).toMatchObject({ ok: false, code: 'ERR_PIPELINE', failedCode: 'ERR_FORBIDDEN', failedTarget: `/p2p/${stranger}`, message: expect.stringMatching(/not a storage node this node knows/) });
      // The role-less insider has no ticket: refused before the pipeline is looked at.
      const noTicket = await chunkExchange(insider, first, { op: 'put', id, size: data.byteLength, fence, pipeline: [stranger] }, data);
      expect(noTicket.answer).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
      await sleep(500);
      expect(sentinel.connections).toBe(0);
    } finally {
      await sentinel.close();
    }
  });
});

describe('7. chunk tickets against real storage nodes', () => {
  it('a get with a ticket issued to another peer (stolen), or none, and a put without a ticket: refused', async () => {
    const ids = await fileChunks(FILE);
    const located = (await alice.meta.leaderRequest({ type: 'locate', ids: [ids[0]!], path: FILE })) as Array<{ id: string; holders: string[]; ticket: string }>;
    const { holders, ticket } = located[0]!;
    // The rightful bearer gets the chunk.
    const own = await chunkExchange(alice.peer, holders[0]!, { op: 'get', id: ids[0], ticket });
    expect(own.answer).toMatchObject({ ok: true });
    for (const thief of [insider, mallory.peer]) {
      for (const addr of holders) {
        const stolen = await chunkExchange(thief, addr, { op: 'get', id: ids[0], ticket });
        expect(stolen.answer, addr).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN', message: expect.stringMatching(/bearer|issued to/i) });
        const none = await chunkExchange(thief, addr, { op: 'get', id: ids[0] });
        expect(none.answer, addr).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
      }
    }
    // Locating needs an identity, and read permission on the path.
    const leader = await leaderStatus();
    expect(await metaCall(insider, master(leader.name).addr, { type: 'locate', ids: [ids[0]], path: FILE })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
    const data = randomBytes(2000);
    const put = await chunkExchange(insider, node('n1').addr, { op: 'put', id: blake3.hashHex(data), size: 2000, fence: 1, pipeline: [] }, data);
    expect(put.answer).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
    // With a ticket for another chunk.
    const other = await chunkExchange(alice.peer, holders[0]!, { op: 'get', id: ids[1] ?? ids[0], ticket: ids[1] ? ticket : 'x' });
    expect(other.answer).toMatchObject({ ok: false });
    const has = await hasChunks(insider, node('n1').addr, [blake3.hashHex(data)]);
    expect(has).toEqual([false]);
  });
});

describe('2. fake storage nodes', () => {
  it('a rogue node that acks puts without storing, forging the receipts of the nodes after it, gets no copy counted that is not there', async () => {
    const { key, peerId } = await identity();
    const rogue = await insiderPeer(t.cluster, { privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'] });
    let forged = 0;
    let heartbeats: NodeJS.Timeout | undefined;
    try {
      await rogue.handle(CHUNK_PROTOCOL, async (stream) => {
        const reader = new FrameReader(stream, { maxFrameBytes: 1024 * 1024 });
        const writer = new FrameWriter(stream, { maxFrameBytes: 1024 * 1024 });
        try {
          const header = JSON.parse(new TextDecoder().decode((await reader.read())!.subarray())) as { op: string; id: string; fence: number; pipeline: string[] };
          if (header.op !== 'put') throw new Error('rogue serves puts only');
          let got = 0;
          for (let f = await reader.read(); f !== undefined && f.byteLength > 0; f = await reader.read()) got += f.byteLength;
          void got; // read, and thrown away
          // Its own receipt is real; those of the nodes it should have forwarded to are signed with its key.
          const receipts = [await signReceipt(key, header.id, header.fence)];
          for (const next of header.pipeline) receipts.push({ node: next, sig: (await signReceipt(key, header.id, header.fence)).sig });
          if (header.pipeline.length > 0) forged++;
          await writer.write(new TextEncoder().encode(JSON.stringify({ ok: true, stored: [peerId, ...header.pipeline], receipts })));
          await writer.close();
        } catch (err) {
          stream.abort(err as Error);
        } finally {
          reader.release();
        }
      });
      const leader = await leaderStatus();
      const addr = master(leader.name).addr;
      const listen = rogue.listenAddrs.find((a) => a.startsWith('/ip4/127.0.0.1/'))!;
      const registered = await metaCall(rogue, addr, { type: 'write', clientId: peerId, seq: 1, cmd: { op: 'registerNode', nodeId: peerId, name: 'rogue', addrs: [listen.replace(/\/p2p\/.*$/, '')], capacityBytes: 1e13 } });
      expect(registered.ok, registered.message).toBe(true);
      const beat = () => metaCall(rogue, addr, { type: 'heartbeat', nodeId: peerId, freeBytes: 1e13, capacityBytes: 1e13, usedBytes: 0, chunkCount: 0, inflight: 0, added: [], removed: [] }).catch(() => undefined);
      await beat();
      await metaCall(rogue, addr, { type: 'report', nodeId: peerId, ids: [], first: true, last: true });
      heartbeats = setInterval(() => void beat(), 500);
      await t.cluster.waitForLiveNodes(4);
      // Files of many chunks: most pipelines name the rogue (4 live nodes, RF 3).
      const results: Array<{ path: string; ok: boolean; error?: string }> = [];
      for (let i = 0; i < 4; i++) {
        const path = `/alice/with-rogue-${i}`;
        const bytes = randomBytes(2 * 1024 * 1024);
        try {
          await putFile([bytes] as unknown as AsyncIterable<Uint8Array>, path, { peer: alice.peer, meta: alice.meta, blake3, params: { minSize: 16 * 1024, avgSize: 64 * 1024, maxSize: 256 * 1024 } });
          expect((await readBack(path)).equals(bytes)).toBe(true);
          results.push({ path, ok: true });
        } catch (err) {
          // Refused for want of proof: nothing of it may be committed.
          expect(isDfsError(err, 'ERR_UNDER_REPLICATED') || isDfsError(err, 'ERR_PROTOCOL') || isDfsError(err, 'ERR_PIPELINE'), String(err)).toBe(true);
          expect(await alice.meta.stat(path).then(() => 'exists', (e: unknown) => (isDfsError(e, 'ERR_NOT_FOUND') ? 'absent' : String(e)))).toBe('absent');
          results.push({ path, ok: false, error: String(err) });
        }
      }
      expect(forged).toBeGreaterThan(0);
      let countedOnRogue = 0;
      let chunks = 0;
      for (const r of results.filter((x) => x.ok)) {
        const ids = await fileChunks(r.path);
        const real = await realHolders(ids);
        const counted = await leaderHolders(r.path, ids);
        for (const id of ids) {
          chunks++;
          const honest = (counted.get(id) ?? []).filter((h) => h !== peerId);
          if ((counted.get(id) ?? []).includes(peerId)) countedOnRogue++;
          // No copy is counted on an honest node that does not have it: forged receipts were refused.
          for (const h of honest) expect(real.get(id), `${r.path} ${id}`).toContain(h);
        }
      }
      console.log(`[attack] rogue node: ${forged} puts answered with forged receipts; puts ${results.map((r) => (r.ok ? 'ok' : `failed (${r.error?.slice(0, 120)})`)).join(', ')}; ${countedOnRogue} of ${chunks} chunks count the rogue's own (unverified) copy, none counts a forged one`);
    } finally {
      if (heartbeats) clearInterval(heartbeats);
      await rogue.stop();
    }
  }, 80_000);
});

import { verifyReceipt } from '../../src/net/receipt.ts';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { putChunk } from '../../src/protocol/chunk-client.ts';
import { ControlLoop } from '../../src/node/control-loop.ts';
import type { ControlLoopOptions, CopyChunk, MasterLink } from '../../src/node/control-loop.ts';
import type { HeartbeatRequest, ReplicateCommand } from '../../src/node/control-protocol.ts';
import { ChunkStore } from '../../src/storage/index.ts';
import { startPeer } from '../net/peers.ts';
import { ManualClock, until } from './manual-clock.ts';
import { blake3, makeChunk, MiB, startNode, tempDir } from './node-fixture.ts';
import { clusterKeyText, clusterPrivateKey, ticket } from '../support/tickets.ts';
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys';

/**
 * The node's side of the heartbeat (src/node/control-loop.ts), against a fake master: answers are
 * handed to handleAnswer directly, or returned by a fake link, and time is a manual clock.
 */

const PEER = (n: number): string => `12D3KooW${'A'.repeat(43)}${'123456789'[n]}`; // shaped like a peer id; never dialled here
const ADDR = (n: number): string => `/ip4/127.0.0.1/tcp/${4000 + n}/p2p/${PEER(n)}`;
const SELF = PEER(0);
/** A minimal answer; tests add what they test. */
const BASE = { registered: true, fullReportWanted: false, fence: 5 * 2 ** 32, verify: [], replicate: [], nodesVersion: 'v0' };

/** A fake master: records what the node sends; answers with `next` (or BASE). */
class FakeMaster implements MasterLink {
  readonly beats: HeartbeatRequest[] = [];
  registrations = 0;
  readonly reports: Array<{ ids: string[]; first: boolean; last: boolean }> = [];
  answers: object[] = [];
  /** While set, heartbeats wait for it. */
  gate: Promise<void> | undefined;
  inFlight = 0;
  maxInFlight = 0;

  /** What registration answers with (the state machine's value; a master adds clusterKey). */
  registerAnswer: unknown = undefined;

  async register(): Promise<unknown> {
    this.registrations++;
    return this.registerAnswer;
  }

  async heartbeat(request: HeartbeatRequest): Promise<unknown> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      this.beats.push(request);
      await this.gate;
      return this.answers.shift() ?? BASE;
    } finally {
      this.inFlight--;
    }
  }

  async report(page: { ids: string[]; first: boolean; last: boolean }): Promise<void> {
    this.reports.push(page);
  }
}

type CopyCall = { toAddr: string; id: string; bytes: Uint8Array; fence: number; ticket: string; /** The clock when it started. */ at: number; finish(err?: Error): void };

/**
 * A copy function that records its calls and finishes each when told, or when the loop aborts it
 * (as putChunk does): a test that fails midway still stops, rather than hanging in stop().
 */
function manualCopies(clock: ManualClock): { copy: CopyChunk; calls: CopyCall[]; running: () => number } {
  const calls: CopyCall[] = [];
  let running = 0;
  const copy: CopyChunk = (toAddr, id, bytes, fence, ticket, signal) => {
    running++;
    const done = Promise.withResolvers<void>();
    const abort = (): void => done.reject(signal.reason);
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
    calls.push({ toAddr, id, bytes, fence, ticket, at: clock.now(), finish: (err) => (err ? done.reject(err) : done.resolve()) });
    return done.promise.finally(() => {
      running--;
      signal.removeEventListener('abort', abort);
    });
  };
  return { copy, calls, running: () => running };
}

async function setUp(options: Partial<ControlLoopOptions> = {}) {
  const clock = new ManualClock(0);
  const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, clock: () => clock.now() });
  const master = new FakeMaster();
  const copies = manualCopies(clock);
  const loop = new ControlLoop({ nodeId: SELF, store, link: master, copy: copies.copy, clock, ...options });
  const stop = async (): Promise<void> => {
    await loop.stop();
    await store.close();
  };
  return { clock, store, master, copies, loop, stop };
}

async function putChunks(store: ChunkStore, sizes: number[]): Promise<Array<{ id: string; data: Uint8Array }>> {
  const out = [];
  for (const size of sizes) {
    const c = makeChunk(size);
    await store.put(c.id, c.data);
    out.push(c);
  }
  return out;
}

/** A replicate command; its ticket is only carried here (the fake copies do not check it). */
const copy = (id: string, n: number, extra: Partial<ReplicateCommand> = {}): ReplicateCommand => ({ id, to: PEER(n), toAddr: ADDR(n), fence: 77, ticket: `ticket-${n}`, ...extra });

describe('ControlLoop: the cluster key and replicate tickets', () => {
  it('learns the cluster key from the registration answer or a heartbeat answer; another key later is refused and reported, the first kept', async () => {
    const errors: Array<{ what: string; err: unknown }> = [];
    const { loop, master, stop } = await setUp({ onError: (what, err) => errors.push({ what, err }) });
    try {
      expect(loop.clusterKey.publicKey).toBeUndefined();
      master.registerAnswer = { clusterKey: clusterKeyText };
      await loop.handleAnswer({ ...BASE, registered: false });
      expect(master.registrations).toBe(1);
      expect(loop.clusterKey.publicKey?.equals(clusterPrivateKey.publicKey)).toBe(true);
      // The same key again (every answer carries it) changes nothing and is no error.
      await loop.handleAnswer({ ...BASE, clusterKey: clusterKeyText });
      expect(errors).toEqual([]);
      // Another key: refused, loudly; the node keeps checking tickets with the first.
      const other = await generateKeyPair('Ed25519');
      const otherText = Buffer.from(publicKeyToProtobuf(other.publicKey)).toString('base64');
      await loop.handleAnswer({ ...BASE, clusterKey: otherText, nodesVersion: 'v1', nodes: [{ id: PEER(1), addrs: [ADDR(1)] }] });
      expect(loop.clusterKey.publicKey?.equals(clusterPrivateKey.publicKey)).toBe(true);
      expect(loop.stats.clusterKeyRefusals).toBe(1);
      expect(errors).toMatchObject([{ what: 'cluster key', err: { code: 'ERR_FORBIDDEN', message: expect.stringMatching(/never changes/) } }]);
      // The rest of that answer is still acted on.
      expect(loop.directory.knows(PEER(1))).toBe(true);
      // Text that is no key: reported, nothing learnt from it. Text that is not base64: the answer is malformed.
      await loop.handleAnswer({ ...BASE, clusterKey: 'AAAA' });
      expect(errors.at(-1)).toMatchObject({ what: 'cluster key', err: { code: 'ERR_PROTOCOL' } });
      await expect(loop.handleAnswer({ ...BASE, clusterKey: 'not base64!' })).rejects.toMatchObject({ code: 'ERR_PROTOCOL' });
    } finally {
      await stop();
    }
  });

  it('a heartbeat answer brings the key to a node that registered before masters had one', async () => {
    const { loop, master, stop } = await setUp();
    try {
      master.registerAnswer = { ok: true }; // no key yet
      await loop.handleAnswer({ ...BASE, registered: false });
      expect(loop.clusterKey.publicKey).toBeUndefined();
      await loop.handleAnswer({ ...BASE, clusterKey: clusterKeyText });
      expect(loop.clusterKey.publicKey?.equals(clusterPrivateKey.publicKey)).toBe(true);
    } finally {
      await stop();
    }
  });

  it('replicate: a command without a ticket fails ERR_UNAUTHENTICATED without reading or dialling', async () => {
    const { store, loop, master, copies, stop } = await setUp();
    try {
      const [x] = await putChunks(store, [100]);
      await loop.handleAnswer({ ...BASE, nodes: [{ id: PEER(1), addrs: [ADDR(1)] }], replicate: [copy(x!.id, 1, { ticket: undefined })] });
      await loop.idle();
      expect(copies.calls).toEqual([]);
      await loop.beat();
      expect(master.beats.at(-1)!.replicated).toEqual([{ id: x!.id, to: PEER(1), ok: false, code: 'ERR_UNAUTHENTICATED' }]);
    } finally {
      await stop();
    }
  });
});

describe('ControlLoop: heartbeat answers', () => {
  it('parses the answer with its schema: anything malformed is refused and changes nothing', async () => {
    const { store, loop, copies, stop } = await setUp();
    try {
      const [x] = await putChunks(store, [100]);
      const bad = [
        null,
        { ...BASE, fence: '5' },
        { ...BASE, registered: 'yes' },
        { ...BASE, verify: ['not-an-id'] },
        { ...BASE, replicate: [{ id: x!.id, to: PEER(1), fence: 1 }] }, // no toAddr
        { ...BASE, replicate: [copy(x!.id, 1, { to: '/ip4/1.2.3.4/tcp/1' })] },
        { ...BASE, nodes: [{ id: PEER(1), addrs: 'one' }] },
        { ...BASE, replicate: Array.from({ length: 1025 }, () => copy(x!.id, 1)) },
      ];
      for (const value of bad) await expect(loop.handleAnswer(value)).rejects.toMatchObject({ code: 'ERR_PROTOCOL' });
      await loop.idle();
      expect(copies.calls).toEqual([]);
      expect(store.fences.floor).toBeUndefined();
      expect(loop.directory.version).toBeUndefined();
      // A leader that predates verify/replicate/nodesVersion is still understood.
      await loop.handleAnswer({ registered: true, fullReportWanted: false, fence: 9 });
      expect(store.fences.floor).toBe(9);
    } finally {
      await stop();
    }
  });

  it('verify: re-hashes each chunk; a corrupt or missing one is quarantined and reported removed by the next beat', async () => {
    const { store, loop, master, stop } = await setUp();
    try {
      const [good, rotten, gone] = await putChunks(store, [1000, 2000, 3000]);
      const bytes = await readFile(store.layout.chunkPath(rotten!.id));
      bytes[7]! ^= 1;
      await writeFile(store.layout.chunkPath(rotten!.id), bytes);
      await unlink(store.layout.chunkPath(gone!.id));
      await loop.beat(); // the puts' "added" go out first
      await loop.handleAnswer({ ...BASE, verify: [good!.id, rotten!.id, gone!.id, makeChunk(5).id] });
      await loop.idle();
      expect(loop.stats).toMatchObject({ verified: 1, quarantined: 2 });
      expect(await store.has(rotten!.id)).toBe(false);
      expect(await store.quarantined()).toEqual([expect.stringMatching(new RegExp(`^${rotten!.id}\\.`))]);
      await expect(store.get(rotten!.id)).rejects.toMatchObject({ code: 'ERR_CHUNK_NOT_FOUND' }); // never served
      await loop.beat();
      expect(master.beats.at(-1)!.removed.sort()).toEqual([rotten!.id, gone!.id].sort());
    } finally {
      await stop();
    }
  });

  it('nodes: keeps the list the leader sent, and says which version it holds', async () => {
    const { loop, master, stop } = await setUp();
    try {
      await loop.beat();
      expect(master.beats[0]!.nodesVersion).toBeUndefined();
      master.answers.push({ ...BASE, nodesVersion: 'v7', nodes: [{ id: PEER(1), addrs: [ADDR(1)] }, { id: PEER(2), addrs: ['/ip4/10.0.0.2/tcp/7000'] }] });
      await loop.beat();
      expect(loop.directory.version).toBe('v7');
      expect(loop.directory.addressOf(PEER(1))).toBe(ADDR(1));
      expect(loop.directory.addressOf(PEER(2))).toBe(`/ip4/10.0.0.2/tcp/7000/p2p/${PEER(2)}`);
      expect(loop.directory.addressOf(PEER(3))).toBeUndefined();
      master.answers.push({ ...BASE, nodesVersion: 'v7' }); // unchanged: no list
      await loop.beat();
      await loop.beat();
      expect(master.beats.slice(2).map((b) => b.nodesVersion)).toEqual(['v7', 'v7']);
      expect(loop.directory.knows(PEER(1))).toBe(true);
    } finally {
      await stop();
    }
  });

  it('replicate: copies only to a listed node at an address naming it, and reports each result with the next beat', async () => {
    const { store, loop, master, copies, stop } = await setUp();
    try {
      const [x, rotten] = await putChunks(store, [5000, 6000]);
      const bytes = await readFile(store.layout.chunkPath(rotten!.id));
      bytes[0]! ^= 1;
      await writeFile(store.layout.chunkPath(rotten!.id), bytes);
      const missing = makeChunk(10).id;
      await loop.handleAnswer({
        ...BASE,
        nodesVersion: 'v1',
        nodes: [{ id: PEER(1), addrs: [ADDR(1)] }, { id: PEER(2), addrs: [ADDR(2)] }],
        replicate: [
          copy(x!.id, 1),
          copy(x!.id, 3), // not in the list
          copy(x!.id, 2, { toAddr: ADDR(3) }), // an address that names another peer
          copy(x!.id, 0), // this node itself (not listed either)
          copy(missing, 2),
          copy(rotten!.id, 2),
        ],
      });
      await until(() => copies.calls.length === 1, 5000, 'the copy');
      expect(copies.calls[0]).toMatchObject({ toAddr: ADDR(1), id: x!.id, fence: 77, ticket: 'ticket-1' });
      expect(Buffer.from(copies.calls[0]!.bytes).equals(Buffer.from(x!.data))).toBe(true);
      copies.calls[0]!.finish();
      await loop.idle();
      expect(copies.calls).toHaveLength(1); // nothing else was dialled
      expect(await store.has(rotten!.id)).toBe(false); // a bad local copy is quarantined, not sent
      await loop.beat();
      const results = master.beats.at(-1)!.replicated!;
      expect(new Set(results)).toEqual(
        new Set([
          { id: x!.id, to: PEER(1), ok: true },
          { id: x!.id, to: PEER(3), ok: false, code: 'ERR_FORBIDDEN' },
          { id: x!.id, to: PEER(2), ok: false, code: 'ERR_FORBIDDEN' },
          { id: x!.id, to: PEER(0), ok: false, code: 'ERR_FORBIDDEN' },
          { id: missing, to: PEER(2), ok: false, code: 'ERR_CHUNK_NOT_FOUND' },
          { id: rotten!.id, to: PEER(2), ok: false, code: 'ERR_CHUNK_CORRUPT' },
        ]),
      );
      expect(master.beats.at(-1)!.removed).toContain(rotten!.id);
      // Reported once: the next beat carries none.
      await loop.beat();
      expect(master.beats.at(-1)!.replicated).toBeUndefined();
    } finally {
      await stop();
    }
  });

  it('replicate: at most `replicationConcurrency` copies at once; a failed copy is reported with its code', async () => {
    const { store, loop, master, copies, stop } = await setUp({ replicationConcurrency: 4 });
    try {
      const chunks = await putChunks(store, Array.from({ length: 10 }, (_, i) => 100 + i));
      await loop.handleAnswer({ ...BASE, nodes: [{ id: PEER(1), addrs: [ADDR(1)] }], replicate: chunks.map((c) => copy(c.id, 1)) });
      await until(() => copies.calls.length === 4, 5000, 'four copies');
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(copies.running()).toBe(4);
      expect(loop.copiesQueued).toBe(6);
      // The same command again while it runs is not run twice.
      await loop.handleAnswer({ ...BASE, replicate: [copy(chunks[0]!.id, 1)] });
      for (let done = 0; done < 10; done++) {
        await until(() => copies.calls.length > done, 5000, `copy ${done}`);
        expect(copies.running()).toBeLessThanOrEqual(4);
        const err = Object.assign(new Error('down'), { name: 'DfsError' });
        copies.calls[done]!.finish(done === 3 ? err : undefined);
      }
      await loop.idle();
      expect(copies.calls).toHaveLength(10);
      await loop.beat();
      const results = master.beats.at(-1)!.replicated!;
      expect(results).toHaveLength(10);
      expect(results.filter((r) => !r.ok)).toEqual([{ id: copies.calls[3]!.id, to: PEER(1), ok: false, code: 'ERR_INTERNAL' }]);
      expect(loop.stats).toMatchObject({ copiesOk: 9, copiesFailed: 1 });
    } finally {
      await stop();
    }
  });

  /**
   * Three copies (1 MiB, 1 MiB, 0.5 MiB) at 1 MiB/s: they start at 0, 1 s and 2 s on the clock,
   * in the leader's order. Each step is checked on the manual clock alone: advancing it fires
   * what is due synchronously, so "nothing released yet" is read off its timers, not waited for.
   */
  async function pacedCopies(holdFirstLookup: boolean): Promise<void> {
    const { clock, store, loop, copies, stop } = await setUp({ replicationBytesPerSec: MiB });
    try {
      const chunks = await putChunks(store, [MiB, MiB, MiB / 2]);
      // Optionally, the first chunk's lookup finishes last (as it may, on a loaded machine).
      const firstLookup = Promise.withResolvers<void>();
      let lookups = 0;
      if (holdFirstLookup) {
        const info = store.info.bind(store);
        store.info = async (id) => {
          const record = await info(id);
          if (id === chunks[0]!.id) await firstLookup.promise;
          else lookups++;
          return record;
        };
      }
      await loop.handleAnswer({ ...BASE, nodes: [{ id: PEER(1), addrs: [ADDR(1)] }], replicate: chunks.map((c) => copy(c.id, 1)) });
      if (holdFirstLookup) {
        await until(() => lookups === 2, 5000, 'the other two lookups');
        firstLookup.resolve();
      }
      await until(() => copies.calls.length === 1 && clock.pending === 2, 5000, 'one copy, two waiting');
      expect(clock.nextAt).toBe(1000);
      clock.advance(999);
      expect(clock.pending).toBe(2); // nothing was due
      clock.advance(1);
      await until(() => copies.calls.length === 2, 5000, 'the second copy after 1 s');
      expect(clock.nextAt).toBe(2000);
      clock.advance(999);
      expect(clock.pending).toBe(1);
      clock.advance(1);
      await until(() => copies.calls.length === 3, 5000, 'the third after 2 s');
      expect(copies.calls.map((c) => [c.id, c.at])).toEqual([
        [chunks[0]!.id, 0],
        [chunks[1]!.id, 1000],
        [chunks[2]!.id, 2000],
      ]);
      for (const c of copies.calls) c.finish();
      await loop.idle();
      expect(loop.stats).toMatchObject({ copiesOk: 3, copiesFailed: 0 });
    } finally {
      await stop();
    }
  }

  it('replicate: paced to `replicationBytesPerSec` on the clock', async () => {
    await pacedCopies(false);
  });

  it("replicate: the bandwidth goes in the leader's order, even when a later chunk's lookup finishes first", async () => {
    await pacedCopies(true);
  });

  it('scrubNow: asks the scrubber once, even when repeated while it runs', async () => {
    const scrubs: Array<PromiseWithResolvers<void>> = [];
    const scrubber = { scrubNow: () => (scrubs.push(Promise.withResolvers<void>()), scrubs.at(-1)!.promise) };
    const { loop, stop } = await setUp({ scrubber });
    try {
      await loop.handleAnswer({ ...BASE, scrubNow: true });
      await loop.handleAnswer({ ...BASE, scrubNow: true });
      expect(scrubs).toHaveLength(1);
      scrubs[0]!.resolve();
      await loop.idle();
      await loop.handleAnswer({ ...BASE, scrubNow: true });
      expect(scrubs).toHaveLength(2);
      scrubs[1]!.resolve();
    } finally {
      await stop();
    }
  });

  it('registers, answers the leader\'s wishes (register again, full report) and raises the delete floor', async () => {
    const { store, loop, master, clock, stop } = await setUp();
    try {
      const chunks = await putChunks(store, [10, 20, 30]);
      loop.start();
      await until(() => master.beats.length === 1, 5000, 'the first beat');
      expect(master.registrations).toBe(1);
      expect(master.beats[0]!.added.sort()).toEqual(chunks.map((c) => c.id).sort());
      expect(store.fences.floor).toBe(BASE.fence);
      master.answers.push({ ...BASE, registered: false, fullReportWanted: true });
      clock.advance(1000);
      await until(() => master.reports.length === 1, 5000, 'the full report');
      expect(master.registrations).toBe(2);
      expect(master.reports[0]).toEqual({ ids: chunks.map((c) => c.id).sort(), first: true, last: true });
    } finally {
      await stop();
    }
  });

  it('beats again as soon as a batch of copies finished, never two at once', async () => {
    const { store, loop, master, copies, clock, stop } = await setUp();
    try {
      const chunks = await putChunks(store, [100, 200]);
      master.answers.push({ ...BASE, nodes: [{ id: PEER(1), addrs: [ADDR(1)] }], replicate: chunks.map((c) => copy(c.id, 1)) });
      loop.start();
      await until(() => copies.calls.length === 2, 5000, 'two copies');
      expect(master.beats).toHaveLength(1);
      // A beat is in flight (held by the master) when the copies finish.
      let open!: () => void;
      master.gate = new Promise<void>((resolve) => (open = resolve));
      clock.advance(1000);
      await until(() => master.beats.length === 2, 5000, 'the regular beat');
      copies.calls[0]!.finish();
      copies.calls[1]!.finish();
      await loop.idle();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(master.beats).toHaveLength(2); // not while one is in flight
      master.gate = undefined;
      open();
      // Right after it, without the clock moving: the results go out.
      await until(() => master.beats.length === 3, 5000, 'the early beat');
      expect(master.beats[2]!.replicated).toHaveLength(2);
      expect(master.maxInFlight).toBe(1);
      expect(loop.stats.earlyBeats).toBeGreaterThanOrEqual(1);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(master.beats).toHaveLength(3); // then the cadence again
      clock.advance(1000);
      await until(() => master.beats.length === 4, 5000, 'the next regular beat');
    } finally {
      await stop();
    }
  });

  it('a copy goes to a real node, through putChunk, and its receipt is checked', async () => {
    const target = await startNode();
    const client = await startPeer({ listen: [] });
    const { store, loop, master, stop } = await setUp({
      // What a node does (storage-node.ts): putChunk checks the target's receipt before resolving.
      copy: (toAddr, id, bytes, fence, copyTicket, signal) => putChunk(client, [toAddr], id, bytes, fence, copyTicket, { signal }),
    });
    try {
      const [x] = await putChunks(store, [3 * MiB]);
      await loop.handleAnswer({
        ...BASE,
        nodes: [{ id: target.peer.peerId, addrs: [target.addr] }],
        replicate: [{ id: x!.id, to: target.peer.peerId, toAddr: target.addr, fence: 123, ticket: await ticket('replicate', x!.id, client, { fence: 123 }) }],
      });
      await loop.idle();
      expect(Buffer.from(await target.store.get(x!.id)).equals(Buffer.from(x!.data))).toBe(true);
      await loop.beat();
      const [result] = master.beats.at(-1)!.replicated!;
      expect(result).toMatchObject({ id: x!.id, to: target.peer.peerId, ok: true });
      // The target's own receipt rides along, for the leader to count the copy at once.
      expect(await verifyReceipt(x!.id, 123, { node: target.peer.peerId, sig: result!.sig! })).toBe(true);
      // The fence travelled: a delete decided before it keeps the copy.
      target.store.fences.raiseFloor(0);
      expect(await target.store.delete(x!.id, { fence: 100 })).toBe('kept');
    } finally {
      await stop();
    }
  });
});

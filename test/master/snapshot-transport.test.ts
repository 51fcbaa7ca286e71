import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Uint8ArrayList } from 'uint8arraylist';
import { MemoryLogger } from '../../src/log/index.ts';
import { MetaMachine, encodeEnvelope } from '../../src/master/meta-machine.ts';
import { Libp2pRaftTransport, RAFT_PROTOCOL, SNAPSHOT_PROTOCOL, type RaftTransportOptions } from '../../src/master/raft-transport.ts';
import { FrameWriter } from '../../src/net/index.ts';
import { encodeMessage, type InstallSnapshot, type Message } from '../../src/raft/index.ts';
import { addrOf, startPeer } from '../net/peers.ts';
import { manifestOf, cid } from '../support/meta-fixtures.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const transports: Libp2pRaftTransport[] = [];
afterEach(async () => {
  for (const t of transports.splice(0)) await t.stop();
});

const MiB = 1024 * 1024;

/** Two masters' transports over real libp2p peers; b's snapshot temp files go to `dir`. */
async function pair(options: RaftTransportOptions = {}) {
  const pa = await startPeer();
  const pb = await startPeer();
  const dir = await tempDir();
  const logger = new MemoryLogger();
  const a = new Libp2pRaftTransport(pa, new Map([[pb.peerId, addrOf(pb)]]), { snapshotDir: await tempDir() });
  const b = new Libp2pRaftTransport(pb, new Map([[pa.peerId, addrOf(pa)]]), { snapshotDir: dir, logger, ...options });
  transports.push(a, b);
  await a.start();
  await b.start();
  const got: Message[] = [];
  b.onMessage((m) => got.push(m));
  a.onMessage(() => {});
  return { pa, pb, a, b, dir, logger, got };
}

function snapshotMessage(from: string, to: string, index: number, data: Uint8Array): InstallSnapshot {
  return { type: 'installSnapshot', from, to, term: 3, snapshot: { metadata: { index, term: 2, config: { voters: [from, to].sort(), learners: [] } }, data } };
}

async function until(predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Bytes that are not all alike, so a piece out of place would show. */
function patterned(bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  const view = new DataView(out.buffer);
  for (let i = 0; i + 4 <= bytes; i += 4) view.setUint32(i, Math.imul(i, 2654435761) >>> 0);
  return out;
}

/** Sends raw snapshot-protocol frames from `from` to `to`, as a buggy or hostile peer would. */
async function rawSnapshotStream(from: Awaited<ReturnType<typeof startPeer>>, toAddr: string) {
  const stream = await from.dialProtocol(toAddr, SNAPSHOT_PROTOCOL);
  const writer = new FrameWriter(stream, { maxFrameBytes: 2 * MiB });
  const json = (tag: number, value: unknown) => {
    const body = new TextEncoder().encode(JSON.stringify(value));
    return new Uint8ArrayList(Uint8Array.of(tag), body);
  };
  return {
    stream,
    header: (h: Record<string, unknown>) => writer.write(json(1, h)),
    data: (bytes: Uint8Array) => writer.write(new Uint8ArrayList(Uint8Array.of(2), bytes)),
    end: (sha256: string) => writer.write(json(3, { sha256 })),
    close: () => writer.close(),
  };
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

describe('Libp2pRaftTransport: snapshots on their own stream', () => {
  it('streams an 80 MiB snapshot (more than one 64 MiB frame) intact, and leaves no temp file', async () => {
    const { pa, pb, a, b, dir, got } = await pair({ validateSnapshot: async () => {} });
    const data = patterned(80 * MiB);
    const started = performance.now();
    a.send(snapshotMessage(pa.peerId, pb.peerId, 42, data));
    await until(() => got.length === 1, 30_000);
    const ms = performance.now() - started;
    console.log(`[snapshot-transport] 80 MiB snapshot streamed, checked and handed over in ${ms.toFixed(0)} ms`);
    const m = got[0] as InstallSnapshot;
    expect(m.type).toBe('installSnapshot');
    expect(m.from).toBe(pa.peerId);
    expect(m.snapshot.metadata).toEqual({ index: 42, term: 2, config: { voters: [pa.peerId, pb.peerId].sort(), learners: [] } });
    expect(m.snapshot.data.length).toBe(data.length);
    expect(Buffer.compare(Buffer.from(m.snapshot.data.buffer, m.snapshot.data.byteOffset, m.snapshot.data.length), Buffer.from(data.buffer))).toBe(0);
    expect(a.stats.snapshotsSent).toBe(1);
    expect(b.stats.snapshotsReceived).toBe(1);
    expect(b.stats.snapshotsRefused).toBe(0);
    expect(await readdir(dir)).toEqual([]);
    // The follower is installing it: the leader's next probe does not stream it all again.
    a.send(snapshotMessage(pa.peerId, pb.peerId, 42, data));
    expect(a.stats.snapshotsSkipped).toBe(1);
  });

  it('checks the content with the metadata state machine by default: a valid snapshot passes', async () => {
    const { pa, pb, a, got, dir } = await pair();
    const m = new MetaMachine();
    m.apply(1, encodeEnvelope({ clientId: 'c', seq: 1, cmd: { op: 'commitFile', path: '/a/f', manifest: manifestOf([[cid(1), 10], [cid(2), 20]]), owner: 'o', nowMs: 5, parents: true, ifAbsent: false } }));
    const data = await m.snapshot();
    a.send(snapshotMessage(pa.peerId, pb.peerId, 7, data));
    await until(() => got.length === 1);
    const restored = new MetaMachine();
    await restored.restore((got[0] as InstallSnapshot).snapshot.data);
    expect(restored.state.stat('/a/f')).toMatchObject({ kind: 'file', size: 30 });
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a snapshot that is not valid JSON, or not valid records, before Raft sees it', async () => {
    const { pa, pb, a, b, got, dir, logger } = await pair();
    const bad = [
      new TextEncoder().encode('{"t":"header","version":1,"appliedIndex":1,"settings":{"replicationFactor":3}}\n{not json'),
      new TextEncoder().encode('{"t":"header","version":1,"appliedIndex":1,"settings":{"replicationFactor":3}}\n{"t":"entry","path":"/","entry":{"kind":"dir","owner":"root","mtimeMs":0}}\n{"t":"mystery"}'),
      new TextEncoder().encode('{"t":"entry","path":"/","entry":{"kind":"dir","owner":"root","mtimeMs":0}}'),
      Uint8Array.of(0xff, 0xfe, 0x0a),
    ];
    for (const [i, data] of bad.entries()) {
      a.send(snapshotMessage(pa.peerId, pb.peerId, 10 + i, data));
      // The receiver resets the stream: the sender counts a failure (and is free to send again).
      await until(() => b.stats.snapshotsRefused === i + 1 && a.stats.snapshotSendFailures === i + 1);
    }
    expect(got).toEqual([]);
    expect(b.stats.snapshotsReceived).toBe(0);
    expect(a.stats.snapshotsSent).toBe(0);
    expect(logger.find(/refused a snapshot/).length).toBe(bad.length);
    expect(logger.find(/refused a snapshot/)[0]!.fields.reason).toMatch(/not a valid snapshot/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a bad digest, a truncated stream, extra data, a spoofed sender, and an idle stream; nothing stays on disk', async () => {
    const { pa, pb, b, got, dir, logger } = await pair({ validateSnapshot: async () => {}, snapshotIdleTimeoutMs: 300 });
    const to = addrOf(pb);
    const header = (bytes: number, from = pa.peerId) => ({ from, to: pb.peerId, term: 3, metadata: { index: 5, term: 2, config: { voters: [pa.peerId, pb.peerId].sort(), learners: [] } }, bytes });
    const data = patterned(3 * MiB + 5);
    let refused = 0;
    const expectRefused = async (why: RegExp) => {
      refused++;
      await until(() => b.stats.snapshotsRefused === refused);
      expect(logger.find(/refused a snapshot/).at(-1)!.fields.reason).toMatch(why);
      expect(await readdir(dir)).toEqual([]);
    };

    // Bad digest.
    let s = await rawSnapshotStream(pa, to);
    await s.header(header(data.length));
    for (let at = 0; at < data.length; at += MiB) await s.data(data.subarray(at, at + MiB));
    await s.end('0'.repeat(64));
    await s.close();
    await expectRefused(/digest mismatch/);

    // One flipped bit: the digest is of the real data.
    s = await rawSnapshotStream(pa, to);
    await s.header(header(data.length));
    const flipped = data.slice();
    flipped[2 * MiB + 17]! ^= 1;
    for (let at = 0; at < data.length; at += MiB) await s.data(flipped.subarray(at, at + MiB));
    await s.end(sha256(data));
    await s.close();
    await expectRefused(/digest mismatch/);

    // Truncated: the stream ends after half the data.
    s = await rawSnapshotStream(pa, to);
    await s.header(header(data.length));
    await s.data(data.subarray(0, MiB));
    await s.close();
    await expectRefused(/truncated/);

    // Truncated but with an end frame.
    s = await rawSnapshotStream(pa, to);
    await s.header(header(data.length));
    await s.data(data.subarray(0, MiB));
    await s.end(sha256(data.subarray(0, MiB)));
    await s.close();
    await expectRefused(/truncated/);

    // More data than announced.
    s = await rawSnapshotStream(pa, to);
    await s.header(header(10));
    await s.data(data.subarray(0, 11));
    await expectRefused(/more data than/);

    // A header that claims another sender.
    s = await rawSnapshotStream(pa, to);
    await s.header(header(10, pb.peerId));
    await expectRefused(/claims to be from/);

    // Idle: half a snapshot, then nothing.
    s = await rawSnapshotStream(pa, to);
    await s.header(header(data.length));
    await s.data(data.subarray(0, MiB));
    await expectRefused(/idle/);

    expect(got).toEqual([]);
    expect(b.stats.snapshotsReceived).toBe(0);
  });

  it('refuses a snapshot stream from a peer that is not a known master, before writing anything', async () => {
    const { pb, b, got, dir, logger } = await pair({ validateSnapshot: async () => {} });
    const stranger = await startPeer();
    const s = await rawSnapshotStream(stranger, addrOf(pb));
    await s.header({ from: stranger.peerId, to: pb.peerId, term: 3, metadata: { index: 5, term: 2, config: { voters: [stranger.peerId, pb.peerId].sort(), learners: [] } }, bytes: 10 }).catch(() => {});
    await until(() => b.stats.snapshotsRefused === 1);
    expect(logger.find(/not a known master/)).toHaveLength(1);
    expect(got).toEqual([]);
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a snapshot larger than the limit from its header on', async () => {
    const { pa, pb, a, b, got, dir } = await pair({ validateSnapshot: async () => {}, maxSnapshotBytes: MiB });
    a.send(snapshotMessage(pa.peerId, pb.peerId, 9, patterned(2 * MiB)));
    await until(() => b.stats.snapshotsRefused === 1);
    expect(got).toEqual([]);
    expect(await readdir(dir)).toEqual([]);
  });

  it('drops an InstallSnapshot that comes inline on the raft protocol', async () => {
    const { pa, pb, b, got } = await pair({ validateSnapshot: async () => {} });
    const stream = await pa.dialProtocol(addrOf(pb), RAFT_PROTOCOL);
    const writer = new FrameWriter(stream, { maxFrameBytes: 64 * MiB });
    await writer.write(encodeMessage(snapshotMessage(pa.peerId, pb.peerId, 4, Uint8Array.of(1, 2, 3))));
    await writer.write(encodeMessage({ type: 'heartbeat', from: pa.peerId, to: pb.peerId, term: 3, commit: 0, context: null }));
    await until(() => got.length === 1);
    expect(got[0]!.type).toBe('heartbeat');
    expect(b.stats.droppedMalformed).toBe(1);
  });

  it('keeps one snapshot in flight per peer: a newer one replaces a waiting one, one sent while streaming is dropped', async () => {
    const { pa, pb, a, got, dir } = await pair({ validateSnapshot: async () => {} });
    const big = patterned(40 * MiB);
    a.send(snapshotMessage(pa.peerId, pb.peerId, 1, big));
    a.send(snapshotMessage(pa.peerId, pb.peerId, 2, big)); // replaces 1 while the stream opens
    await until(() => a.stats.snapshotsSkipped === 1);
    // Once streaming (the receiver has its temp file), anything more is dropped.
    let streaming = false;
    while (!streaming) {
      streaming = (await readdir(dir)).length > 0;
      if (!streaming) await new Promise((r) => setTimeout(r, 5));
    }
    a.send(snapshotMessage(pa.peerId, pb.peerId, 3, big));
    await until(() => got.length === 1, 30_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(got.map((m) => (m as InstallSnapshot).snapshot.metadata.index)).toEqual([2]);
    expect(a.stats.snapshotsSkipped).toBe(2);
    expect(a.stats.snapshotsSent).toBe(1);
  });
});

import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDfsError } from '../../src/errors/index.ts';
import { META_PROTOCOL } from '../../src/meta/index.ts';
import { type DfsPeer, RpcChannel, schema, waitForDrain } from '../../src/net/index.ts';
import { startTestCluster, type TestCluster } from '../support/cluster.ts';
import {
  allClosed,
  attackerPeer,
  leaderOf,
  MiB,
  mb,
  muxRequestFrame,
  probeClients,
  report,
  RssWatch,
  rssBytes,
  type StreamFate,
  unfinishedFrames,
  watch,
} from './flood-support.ts';

/**
 * Floods against a cluster of real master processes (the attacked one is the leader), each from
 * one peer in this process that holds the cluster secret (an insider): the attacked master's
 * memory (RSS, sampled every 50 ms) must stay within a stated budget above its warm level, the
 * attacker's streams must be reset, and other clients (status of every master, mkdir, ls through
 * the ordinary MetaClient) must keep working meanwhile. Figures print as `[flood] ...` lines.
 *
 * The budget, +100 MB of RSS: one peer may make a process hold at most 48 MiB of frames it is
 * receiving (all protocols together: FrameReader's receive budget), 16 MiB of metadata requests
 * being handled plus answers waiting for it (serveMuxRpc: 4 x the 4 MiB frame), and not for
 * long: an unfinished frame is reset after 30 s without a byte or under 64 KiB/s over 30 s,
 * unread answers after 30 s. The rest is room for the allocator and the collector.
 */
const RAFT_PROTOCOL = '/dfs/raft/1.0.0';
const RSS_BUDGET = 100 * 1e6;
/** Unfinished frames and unread answers are reset within 30 s (+ 3 s checks, + a loaded host). */
const RESET_WITHIN_MS = 50_000;

let t: TestCluster;
let attacker: DfsPeer;

beforeAll(async () => {
  t = await startTestCluster({ masters: 3 });
  await warmHeaps(t);
}, 120_000);

/**
 * A commit of a 50,000-chunk manifest (~3.85 MB of JSON) of chunks no node holds: a master
 * parses it whole; the leader validates it too, then refuses it (ERR_UNDER_REPLICATED).
 */
function bigCommit(i: number): unknown {
  const chunks = Array.from({ length: 50_000 }, (_, k) => [k.toString(16).padStart(64, '0'), 1024] as const);
  const manifest = { chunker: 'fastcdc2020-v1', params: { minSize: 256, avgSize: 1024, maxSize: 4096 }, size: 50_000 * 1024, blake3: 'a'.repeat(64), chunks };
  return { type: 'write', clientId: `flood-${i}`, seq: 1, cmd: { op: 'commitFile', path: `/big-${i}`, manifest, parents: false, ifAbsent: true } };
}

const metaAnswer = schema.object({ ok: schema.boolean(), code: schema.optional(schema.string()) });

/**
 * Masters run with a 128 MiB initial old generation (cli/v8-flags.ts): a fresh master's RSS
 * grows by about that much under any traffic before its first full collection. So every
 * master's heap is first brought there with harmless traffic (big commits, refused); the
 * budgets below are above that warm level, and measure what a flood makes a master hold.
 */
async function warmHeaps(cluster: TestCluster): Promise<void> {
  const peer = await cluster.cluster.createClientPeer();
  try {
    const request = bigCommit(0);
    await Promise.all(
      cluster.cluster.masterAddrs.map(async (addr) => {
        const channel = new RpcChannel(peer, addr, META_PROTOCOL);
        for (let i = 0; i < 40; i++) await channel.call(request, metaAnswer, { timeoutMs: 10_000 });
        channel.close();
      }),
    );
  } finally {
    await peer.stop();
  }
  const pids = cluster.cluster.pids();
  console.log(`[flood] warm RSS: ${Object.entries(pids).map(([name, pid]) => `${name} ${mb(rssBytes(pid))}`).join(', ')}`);
}

afterAll(async () => {
  await attacker?.stop();
  await t?.stop();
});

/** A new attacking peer, already connected to `addr` (streams opened at once on a fresh connection can overrun libp2p's early-stream bound). */
async function freshAttacker(addr: string): Promise<DfsPeer> {
  await attacker?.stop();
  attacker = await attackerPeer(t.cluster);
  const stream = await attacker.dialProtocol(addr, META_PROTOCOL);
  stream.abort(new Error('connected'));
  return attacker;
}

describe('a master under floods from one peer', () => {
  it('unfinished frames on the metadata and Raft protocols, from many streams: bounded, reset, and others keep working', async () => {
    const leader = await leaderOf(t);
    const peer = await freshAttacker(leader.addr);
    await t.client((c) => c.write({ op: 'mkdir', path: '/unfinished', parents: false }));
    const rss = new RssWatch(leader.pid);
    const stopProbe = new AbortController();
    const probe = probeClients(t, 'unfinished', stopProbe.signal);
    const started = performance.now();

    // Metadata: 64 streams, each a frame just under the 4 MiB limit sent but for its last KiB.
    const meta = unfinishedFrames(peer, leader.addr, META_PROTOCOL, { streams: 64, declared: 4 * MiB - 64, send: 4 * MiB - 1088, trickle: true });
    // Raft: a 60 MB frame announced, 30 MB of it sent, on as many streams as a connection takes.
    const raft = unfinishedFrames(peer, leader.addr, RAFT_PROTOCOL, { streams: 8, declared: 60_000_000, send: 30_000_000, trickle: true });
    await Promise.all([meta.sent, raft.sent]);
    const sentAt = performance.now();
    const fates = [...meta.fates, ...raft.fates];
    const closed = await allClosed(fates, RESET_WITHIN_MS);
    if (!closed) {
      const late = (fs: typeof fates) => fs.map((f) => (f.closedAt === undefined ? 'open' : ((f.closedAt - sentAt) / 1000).toFixed(1))).join(' ');
      console.log(`[flood] not all reset within ${RESET_WITHIN_MS} ms: metadata streams closed at (s) ${late(meta.fates)}; Raft ${late(raft.fates)}`);
    }
    meta.stop();
    raft.stop();
    const resetAfterMs = Math.max(...fates.filter((f) => f.closedAt !== undefined).map((f) => f.closedAt! - sentAt));
    await sleep(1_000);
    stopProbe.abort();
    const probed = await probe;
    const figures = rss.stop();

    const attempted = 64 * (4 * MiB - 1088) + 8 * 30_000_000;
    const after = await leaderOf(t);
    report(`${leader.name}: unfinished frames (64 metadata streams of ~4 MiB, 8 Raft streams of 30 of 60 MB)`, figures, RSS_BUDGET, `leader ${leader.name} term ${leader.term} -> ${after.name} term ${after.term}; attempted ${mb(attempted)}, written by the attacker ${mb(meta.accepted + raft.accepted)}; the last stream reset ${(resetAfterMs / 1000).toFixed(1)} s after the flood; ${probed.rounds} client rounds (slowest ${probed.slowestMs.toFixed(0)} ms), ${probed.failures.length} failed; flood took ${((sentAt - started) / 1000).toFixed(1)} s`);
    const endings = fates.reduce<Record<string, number>>((m, f) => {
      const key = !f.opened ? 'not opened' : f.closedAt === undefined ? 'still open' : (f.error ?? 'closed cleanly').replace(/\d+/g, 'N').slice(0, 120);
      return { ...m, [key]: (m[key] ?? 0) + 1 };
    }, {});
    console.log(`[flood] ${leader.name}: the attacker wrote ${mb(meta.accepted)} on metadata streams (${meta.refusedOpens} not opened), ${mb(raft.accepted)} on Raft streams (${raft.refusedOpens} not opened); endings ${JSON.stringify(endings)}`);
    expect(closed).toBe(true);
    expect(fates.filter((f) => f.opened).every((f) => f.error !== undefined)).toBe(true); // reset, not closed cleanly
    expect(probed.failures).toEqual([]);
    expect(probed.rounds).toBeGreaterThan(5);
    expect(t.cluster.isRunning(leader.name)).toBe(true);
    expect(figures.peak - figures.before).toBeLessThan(RSS_BUDGET);
  }, 150_000);

  it('metadata clients that send many requests and never read the answers: reset, bounded, others keep working', async () => {
    const leader = await leaderOf(t);
    const peer = await freshAttacker(leader.addr);
    // A directory whose listing is a sizeable answer (~20 KB) to a logged-in client. This attacker
    // has no login, so each of its calls is refused: small answers, many calls a second, which is
    // what once piled up a deadline signal and timer per call (+360 MB; see handleUntil).
    await t.client(async (c) => {
      await c.write({ op: 'mkdir', path: '/wide', parents: false });
      for (let i = 0; i < 200; i++) await c.write({ op: 'mkdir', path: `/wide/entry-with-a-longish-name-${String(i).padStart(4, '0')}`, parents: false });
    });
    const rss = new RssWatch(leader.pid);
    const stopProbe = new AbortController();
    const probe = probeClients(t, 'unread', stopProbe.signal);

    // For 10 s, again and again: a stream that never reads (no window goes back to the master,
    // so its answers back up) and sends requests until it is reset, ~800 MB of answers each
    // if the master kept them all.
    const requests = 40_000;
    const batch = (from: number): Uint8Array => {
      const frames = Array.from({ length: 500 }, (_, k) => muxRequestFrame(from + k, { type: 'list', path: '/wide', stale: true }));
      const joined = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0));
      frames.reduce((at, f) => (joined.set(f, at), at + f.byteLength), 0);
      return joined;
    };
    const rounds: Array<{ written: number; fate: StreamFate; resetAfterMs: number }> = [];
    const floodUntil = performance.now() + 10_000;
    while (performance.now() < floodUntil) {
      const stream = await peer.dialProtocol(leader.addr, META_PROTOCOL, { maxOutboundStreams: 1024 });
      const fate = watch(stream);
      stream.pause();
      const startedAt = performance.now();
      let written = 0;
      for (let id = 1; id <= requests && stream.status === 'open'; id += 500) {
        try {
          if (!stream.send(batch(id))) await waitForDrain(stream, { signal: AbortSignal.timeout(RESET_WITHIN_MS) });
        } catch {
          break; // reset (or never drained: then the fate below says so)
        }
        written += 500;
      }
      await allClosed([fate], RESET_WITHIN_MS);
      rounds.push({ written, fate, resetAfterMs: (fate.closedAt ?? performance.now()) - startedAt });
    }
    await sleep(1_000);
    stopProbe.abort();
    const probed = await probe;
    const figures = rss.stop();

    const after = await leaderOf(t);
    const slowest = Math.max(...rounds.map((r) => r.resetAfterMs));
    report(`${leader.name}: clients that never read (list calls without a login, each refused)`, figures, RSS_BUDGET, `leader ${leader.name} term ${leader.term} -> ${after.name} term ${after.term}; ${rounds.length} streams in 10 s, each reset after at most ${(slowest / 1000).toFixed(1)} s and ${Math.max(...rounds.map((r) => r.written))} requests written; ${probed.rounds} client rounds, ${probed.failures.length} failed`);
    for (const r of rounds) {
      expect(r.fate.closedAt).toBeDefined();
      expect(r.fate.error).toBeDefined();
    }
    expect(probed.failures).toEqual([]);
    expect(probed.rounds).toBeGreaterThan(20);
    expect(t.cluster.isRunning(leader.name)).toBe(true);
    expect(figures.peak - figures.before).toBeLessThan(RSS_BUDGET);
  }, 150_000);

  it('oversized metadata requests (10 MB frames) are refused cleanly with ERR_PROTOCOL, at no cost', async () => {
    const leader = await leaderOf(t);
    const peer = await freshAttacker(leader.addr);
    const rss = new RssWatch(leader.pid);
    const stopProbe = new AbortController();
    const probe = probeClients(t, 'oversized', stopProbe.signal);
    const answer = schema.object({ ok: schema.boolean() });
    const pad = 'x'.repeat(10_000_000);
    const outcomes = await Promise.all(
      // 12: within the 16 metadata streams a connection may open (more are refused at open).
      Array.from({ length: 12 }, async () => {
        // A channel of its own (its own stream) each, allowed to send what the master refuses.
        const channel = new RpcChannel(peer, leader.addr, META_PROTOCOL, { maxFrameBytes: 16 * MiB });
        const started = performance.now();
        try {
          await channel.call({ type: 'status', pad }, answer, { timeoutMs: 10_000 });
          return { error: undefined, ms: performance.now() - started };
        } catch (err) {
          return { error: err, ms: performance.now() - started };
        } finally {
          channel.close();
        }
      }),
    );
    await sleep(1_000);
    stopProbe.abort();
    const probed = await probe;
    const figures = rss.stop();
    const first = outcomes[0]!.error as Error | undefined;
    const after = await leaderOf(t);
    report(`${leader.name}: 12 oversized requests of 10 MB`, figures, RSS_BUDGET, `leader ${leader.name} term ${leader.term} -> ${after.name} term ${after.term}; refused with ${outcomes.filter((o) => isDfsError(o.error, 'ERR_PROTOCOL')).length}x ERR_PROTOCOL in at most ${Math.max(...outcomes.map((o) => o.ms)).toFixed(0)} ms ("${first?.message}"); ${probed.rounds} client rounds, ${probed.failures.length} failed`);
    for (const o of outcomes) {
      expect(isDfsError(o.error, 'ERR_PROTOCOL')).toBe(true);
      expect((o.error as Error).message).toMatch(/exceeds the \d+-byte limit/);
    }
    expect(probed.failures).toEqual([]);
    expect(t.cluster.isRunning(leader.name)).toBe(true);
    expect(figures.peak - figures.before).toBeLessThan(RSS_BUDGET);
  }, 120_000);
});

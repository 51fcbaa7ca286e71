import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { silentLogger } from '../../src/log/index.ts';
import { encodeEnvelope, MetaMachine, validateSnapshotData } from '../../src/master/meta-machine.ts';
import { emptySnapshotStreamStats, SnapshotReceiver } from '../../src/master/snapshot-stream.ts';
import type { MetaEnvelope } from '../../src/meta/index.ts';
import { validateMessage } from '../../src/raft/index.ts';
import { envelopeArb } from './arbitraries.ts';
import { FakeStream } from './fake-stream.ts';
import {
  anyBytes,
  anyJsonValue,
  applyByteMutation,
  applyJsonMutation,
  type ByteMutation,
  byteMutation,
  check,
  deepEqual,
  fuzzParams,
  fuzzTimeout,
  type JsonMutation,
  jsonMutation,
  jsonTextWithin,
  runAsync,
  toJsonText,
  utf8,
} from './support.ts';

/**
 * The snapshot stream (src/master/snapshot-stream.ts, `/dfs/raft-snapshot/1.0.0`): a follower
 * reads a header frame (0x01 + JSON), data frames (0x02 + bytes) and an end frame (0x03 + JSON
 * {sha256}) from the leader, through a FrameReader, into a temp file, checks it and hands Raft
 * an InstallSnapshot. Fed arbitrary and mutated streams (over an in-memory stream), receive()
 * must resolve, never reject; to undefined (refused, counted, temp file removed) or to a
 * well-formed InstallSnapshot from the peer that sent it, whose data is a valid snapshot that
 * hashes to the digest sent.
 */

const REMOTE = '12D3KooWANvRsEwvNz9giivGNdRd1CN2AWLCfQsLzumkAJjCNMRi';
const TAG_HEADER = 1;
const TAG_DATA = 2;
const TAG_END = 3;
const MAX_BYTES = 1024 * 1024;

function frame(tag: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 1 + body.length);
  new DataView(out.buffer).setUint32(0, 1 + body.length, false);
  out[4] = tag;
  out.set(body, 5);
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Snapshots of a few small states (made once: making one per input would cost more than the test). */
const snapshots: Uint8Array[] = [];

interface StreamCase {
  readonly snapshot: number;
  readonly term: number;
  readonly index: number;
  readonly pieces: number;
  readonly headerMs: readonly JsonMutation[];
  readonly endMs: readonly JsonMutation[];
  readonly frameMs: ReadonlyArray<{ readonly kind: 'drop' | 'duplicate' | 'swap' | 'retag' | 'insert' | 'bytes'; readonly at: number; readonly at2: number; readonly tag: number; readonly body: Uint8Array; readonly bytes: ByteMutation }>;
  readonly rawMs: readonly ByteMutation[];
  readonly cuts: readonly number[];
}

const frameMutationArb = fc.record({
  kind: fc.constantFrom('drop' as const, 'duplicate' as const, 'swap' as const, 'retag' as const, 'insert' as const, 'bytes' as const),
  at: fc.nat(),
  at2: fc.nat(),
  tag: fc.oneof(fc.constantFrom(TAG_HEADER, TAG_DATA, TAG_END), fc.nat({ max: 255 })),
  body: fc.oneof(anyBytes, anyJsonValue.map((v) => utf8(JSON.stringify(v)))),
  bytes: byteMutation,
});

const streamCaseArb: fc.Arbitrary<StreamCase> = fc.record({
  snapshot: fc.nat({ max: 3 }),
  term: fc.integer({ min: 1, max: 50 }),
  index: fc.integer({ min: 1, max: 10_000 }),
  pieces: fc.integer({ min: 1, max: 3 }),
  headerMs: fc.array(jsonMutation, { maxLength: 2 }),
  endMs: fc.array(jsonMutation, { maxLength: 1 }),
  frameMs: fc.array(frameMutationArb, { maxLength: 2 }),
  rawMs: fc.array(byteMutation, { maxLength: 1 }),
  cuts: fc.array(fc.nat(), { maxLength: 3 }),
});

/** JSON text of `value` with the mutations, each one kept only while the text stays small. */
function mutatedText(value: unknown, ms: readonly JsonMutation[]): string {
  let text = toJsonText(value);
  for (const m of ms) {
    try {
      text = jsonTextWithin(applyJsonMutation(JSON.parse(text), m)) ?? text;
    } catch {
      // nested too deep for JSON.stringify after an earlier mutation: this one is skipped
    }
  }
  return text;
}

/** The frames of a valid stream for the case, then its mutations; the bytes as sent. */
function streamOf(c: StreamCase): { bytes: Uint8Array; intact: boolean; data: Uint8Array } {
  const data = snapshots[c.snapshot % snapshots.length]!;
  const header = mutatedText({ from: REMOTE, to: 'me', term: c.term, metadata: { index: c.index, term: c.term, config: { voters: [REMOTE, 'me'], learners: [] } }, bytes: data.length }, c.headerMs);
  const end = mutatedText({ sha256: createHash('sha256').update(data).digest('hex') }, c.endMs);
  const frames: Uint8Array[] = [frame(TAG_HEADER, utf8(header))];
  const size = Math.ceil(data.length / c.pieces);
  for (let at = 0; at < data.length; at += size) frames.push(frame(TAG_DATA, data.subarray(at, at + size)));
  frames.push(frame(TAG_END, utf8(end)));
  for (const m of c.frameMs) {
    const i = m.at % frames.length;
    switch (m.kind) {
      case 'drop':
        frames.splice(i, 1);
        break;
      case 'duplicate':
        frames.splice(i, 0, frames[i]!);
        break;
      case 'swap': {
        const j = m.at2 % frames.length;
        [frames[i], frames[j]] = [frames[j]!, frames[i]!];
        break;
      }
      case 'retag': {
        const f = frames[i]!.slice();
        f[4] = m.tag;
        frames[i] = f;
        break;
      }
      case 'insert':
        frames.splice(i, 0, frame(m.tag, m.body));
        break;
      case 'bytes': {
        // A frame whose payload changed, its length prefix kept right.
        const body = applyByteMutation(frames[i]!.subarray(5), m.bytes);
        frames[i] = frame(frames[i]![4]!, body);
        break;
      }
    }
  }
  let bytes = concat(frames);
  for (const m of c.rawMs) bytes = applyByteMutation(bytes, m);
  const intact = c.headerMs.length === 0 && c.endMs.length === 0 && c.frameMs.length === 0 && c.rawMs.length === 0;
  return { bytes, intact, data };
}

describe('fuzz: snapshot stream receiver (header, data and end frames)', () => {
  let dir: string;
  let receiver: SnapshotReceiver;
  const stats = emptySnapshotStreamStats();
  let accepted = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dfs-fuzz-snapshot-'));
    receiver = new SnapshotReceiver({ dir, stats, logger: silentLogger, maxBytes: MAX_BYTES, idleTimeoutMs: 30_000, validate: (data) => validateSnapshotData(data) });
    await receiver.start();
    // A few states: empty, and some made by short logs.
    for (let s = 0; s < 4; s++) {
      const m = new MetaMachine();
      const log = fc.sample(fc.array(envelopeArb, { minLength: s * 3, maxLength: s * 3 }), { seed: 1000 + s, numRuns: 1 })[0]!;
      log.forEach((e, i) => m.apply(i + 1, encodeEnvelope(e as unknown as MetaEnvelope)));
      snapshots.push(await m.snapshot());
    }
  });

  afterAll(async () => {
    receiver.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Plays the leader: the bytes, cut into deliveries, then the end of its side. */
  async function receive(bytes: Uint8Array, cuts: readonly number[]): Promise<{ result: Awaited<ReturnType<SnapshotReceiver['receive']>>; stream: FakeStream }> {
    const fake = new FakeStream('/dfs/raft-snapshot/1.0.0');
    const receiving = receiver.receive(fake.stream, REMOTE);
    const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
    let prev = 0;
    for (const p of [...points, bytes.length]) {
      if (p > prev) fake.push(bytes.subarray(prev, p));
      prev = p;
      await new Promise<void>((resolve) => setImmediate(resolve)); // the receiver writes to disk meanwhile
    }
    fake.end();
    return { result: await receiving, stream: fake };
  }

  async function checkOne(bytes: Uint8Array, cuts: readonly number[], intact: boolean, data: Uint8Array | undefined): Promise<void> {
    const before = stats.snapshotsReceived + stats.snapshotsRefused;
    const out = await runAsync('SnapshotReceiver.receive', () => receive(bytes, cuts));
    if (!out.ok) throw new Error('SnapshotReceiver.receive rejected', { cause: out.error });
    const { result: m } = out.value;
    check(stats.snapshotsReceived + stats.snapshotsRefused > before, 'a receive neither counted as received nor as refused');
    check(receiver.tempFiles.length === 0, `temp files left behind: ${receiver.tempFiles.join(', ')}`);
    if (intact) check(m !== undefined && deepEqual(m.snapshot.data, data), 'an intact snapshot stream was refused or changed');
    if (m === undefined) return;
    accepted++;
    check(m.type === 'installSnapshot' && m.from === REMOTE, 'an accepted snapshot not from the peer that sent it');
    check(deepEqual(validateMessage(m), m), 'an accepted snapshot message that validateMessage changes or refuses');
    check(m.snapshot.data.length <= MAX_BYTES, 'an accepted snapshot over the size limit');
    await validateSnapshotData(m.snapshot.data);
  }

  it(
    'receive: arbitrary byte streams are refused cleanly (resolve undefined), never a rejection or a hang',
    async () => {
      const input = fc.oneof(
        fc.record({ bytes: anyBytes, cuts: fc.array(fc.nat(), { maxLength: 2 }) }),
        // Well-framed, arbitrary contents: header-tagged arbitrary JSON first, then anything.
        fc.record({
          bytes: fc
            .tuple(anyJsonValue, fc.array(fc.tuple(fc.nat({ max: 4 }), anyBytes), { maxLength: 3 }))
            .map(([h, rest]) => concat([frame(TAG_HEADER, utf8(JSON.stringify(h))), ...rest.map(([tag, body]) => frame(tag, body))])),
          cuts: fc.array(fc.nat(), { maxLength: 2 }),
        }),
      );
      await fc.assert(
        fc.asyncProperty(input, ({ bytes, cuts }) => checkOne(bytes, cuts, false, undefined)),
        fuzzParams('SnapshotReceiver.receive (arbitrary streams)'),
      );
    },
    fuzzTimeout(),
  );

  it(
    'receive: mutated snapshot streams give a checked InstallSnapshot or a clean refusal; intact ones are accepted',
    async () => {
      await fc.assert(
        fc.asyncProperty(streamCaseArb, async (c) => {
          const { bytes, intact, data } = streamOf(c);
          await checkOne(bytes, c.cuts, intact, data);
        }),
        fuzzParams('SnapshotReceiver.receive (mutated snapshot streams)'),
      );
      console.log(`[fuzz] SnapshotReceiver.receive (mutated snapshot streams): ${accepted} accepted, the rest refused`);
      const left = (await readdir(dir)).filter((n) => n.endsWith('.part'));
      check(left.length === 0, `temp files left on disk: ${left.join(', ')}`);
    },
    fuzzTimeout(),
  );
});

import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import fc from 'fast-check';
import { Uint8ArrayList } from 'uint8arraylist';
import { beforeAll, describe, it } from 'vitest';
import { ERROR_CODES, isDfsError } from '../../src/errors/index.ts';
import { metaResponseSchema } from '../../src/meta/index.ts';
import { ReceiveBudget } from '../../src/net/frame-reader.ts';
import { decodeJson, FrameReader, formatSwarmKey, noisePrologue, swarmKeyFromSecret } from '../../src/net/index.ts';
import { signReceipt, verifyReceipt } from '../../src/net/receipt.ts';
import { parseResponse, parseWireError } from '../../src/net/rpc.ts';
import { chunkIdArb, fenceArb, metaResponseArb } from './arbitraries.ts';
import { FakeStream } from './fake-stream.ts';
import {
  anyBytes,
  anyValue,
  applyByteMutation,
  byteMutation,
  check,
  deepEqual,
  expectCleanError,
  fuzzJsonDecoder,
  fuzzParams,
  fuzzTimeout,
  run,
  runAsync,
  utf8,
} from './support.ts';

/**
 * The network layer's decoders: FrameReader (src/net/frame-reader.ts) cuts a peer's byte stream
 * into length-prefixed frames; decodeJson, parseResponse and parseWireError (src/net/rpc.ts,
 * also used by rpc-mux.ts) read an RPC answer; verifyReceipt (src/net/receipt.ts) checks a
 * storage receipt a peer hands over; swarmKeyFromSecret (src/net/swarm-key.ts) reads a cluster
 * secret file.
 */

// ---------------------------------------------------------------------------------------------
// FrameReader
// ---------------------------------------------------------------------------------------------

/** What a correct reader makes of `bytes`: the frames, then how the stream ends. */
function referenceFrames(bytes: Uint8Array, maxFrameBytes: number): { frames: Uint8Array[]; end: 'clean' | 'truncated' | 'oversized' } {
  const frames: Uint8Array[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (bytes.length - at >= 4) {
    const length = view.getUint32(at, false);
    if (length > maxFrameBytes) return { frames, end: 'oversized' };
    if (bytes.length - at - 4 < length) return { frames, end: 'truncated' };
    frames.push(bytes.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return { frames, end: at === bytes.length ? 'clean' : 'truncated' };
}

function encodeFrames(payloads: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(payloads.reduce((n, p) => n + 4 + p.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const p of payloads) {
    view.setUint32(at, p.length, false);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}

const streamBytesArb: fc.Arbitrary<{ bytes: Uint8Array; kind: string }> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((bytes) => ({ bytes, kind: 'arbitrary' })),
  fc
    .tuple(fc.array(fc.uint8Array({ maxLength: 80 }), { maxLength: 6 }), fc.array(byteMutation, { maxLength: 3 }))
    .map(([payloads, ms]) => {
      let bytes = encodeFrames(payloads);
      for (const m of ms) bytes = applyByteMutation(bytes, m);
      return { bytes, kind: ms.length === 0 ? 'valid' : 'mutated' };
    }),
);

const readerCaseArb = fc.record({
  stream: streamBytesArb,
  /** Where the bytes are cut into deliveries. */
  cuts: fc.array(fc.nat(), { maxLength: 8 }),
  maxFrameBytes: fc.constantFrom(0, 1, 16, 64, 4096),
  highWaterBytes: fc.constantFrom(1, 8, 64, 1024 * 1024),
  /** Bytes a per-peer receive budget allows (0: no budget). */
  budget: fc.constantFrom(0, 0, 0, 8, 40, 200),
  /** Deliveries between which the reader gets a turn (microtask) or none. */
  yieldEvery: fc.constantFrom(0, 1, 2),
});

function cut(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    if (p > prev) out.push(bytes.subarray(prev, p));
    prev = p;
  }
  return out;
}

interface ReaderCase {
  readonly stream: { readonly bytes: Uint8Array };
  readonly cuts: readonly number[];
  readonly maxFrameBytes: number;
  readonly highWaterBytes: number;
  readonly budget: number;
  readonly yieldEvery: number;
}

/** Feeds the case through a FrameReader over a FakeStream; what the reader gave back. */
async function readAll(c: ReaderCase): Promise<{ frames: Uint8Array[]; error: unknown; clean: boolean; stream: FakeStream }> {
  const fake = new FakeStream();
  const reader = new FrameReader(fake.stream, {
    maxFrameBytes: c.maxFrameBytes,
    highWaterBytes: c.highWaterBytes,
    frameIdleTimeoutMs: 0,
    budget: c.budget === 0 ? false : new ReceiveBudget({ perPeerBytes: c.budget, totalBytes: 1024 * 1024 }),
  });
  const frames: Uint8Array[] = [];
  let error: unknown;
  let clean = false;
  const consuming = (async () => {
    try {
      for (;;) {
        const frame = await reader.read();
        if (frame === undefined) {
          clean = true;
          return;
        }
        frames.push(frame.subarray());
      }
    } catch (err) {
      error = err;
    }
  })();
  const pieces = cut(c.stream.bytes, c.cuts);
  for (let i = 0; i < pieces.length; i++) {
    fake.push(pieces[i]!);
    if (c.yieldEvery > 0 && i % c.yieldEvery === 0) await Promise.resolve();
  }
  fake.end();
  await consuming;
  reader.release();
  return { frames, error, clean, stream: fake };
}

describe('fuzz: FrameReader (length-prefixed framing)', () => {
  it(
    'any byte stream, cut anywhere: the frames a correct reader finds, then a clean end or a DfsError; never a hang',
    async () => {
      await fc.assert(
        fc.asyncProperty(readerCaseArb, async (c) => {
          const want = referenceFrames(c.stream.bytes, c.maxFrameBytes);
          const out = await runAsync('FrameReader', () => readAll(c));
          if (!out.ok) throw new Error('FrameReader: the test harness failed', { cause: out.error });
          const { frames, error, clean, stream } = out.value;
          const overloaded = isDfsError(error, 'ERR_OVERLOADED');
          check(!overloaded || c.budget > 0, 'ERR_OVERLOADED without a receive budget');
          // With a budget the reader may stop early (ERR_OVERLOADED): what it gave must be a prefix.
          check(frames.length <= want.frames.length, `${frames.length} frames read, ${want.frames.length} in the stream`);
          frames.forEach((f, i) => check(deepEqual(f, want.frames[i]), `frame ${i} differs from the stream's`));
          if (overloaded) return;
          check(frames.length === want.frames.length, `${frames.length} frames read, ${want.frames.length} in the stream`);
          if (want.end === 'clean') {
            check(clean && error === undefined, `a clean stream ended with ${String(error)}`);
            return;
          }
          check(!clean, `a ${want.end} stream ended cleanly`);
          expectCleanError('FrameReader.read', error, ['ERR_PROTOCOL']);
          // The reader aborts the stream on an oversized frame, unless the stream was over by then.
          if (want.end === 'oversized') check(stream.abortedWith !== undefined || stream.status === 'closed', `an oversized frame left the stream ${stream.status}`);
        }),
        fuzzParams('FrameReader (arbitrary and mutated byte streams)'),
      );
    },
    fuzzTimeout(),
  );
});

// ---------------------------------------------------------------------------------------------
// RPC answers
// ---------------------------------------------------------------------------------------------

const wireErrorArb = fc.record({ code: fc.oneof(fc.constantFrom(...(Object.keys(ERROR_CODES) as string[])), fc.constantFrom('ERR_FROM_THE_FUTURE')), message: fc.string({ maxLength: 40 }) });

describe('fuzz: RPC answers (decodeJson, parseResponse, parseWireError)', () => {
  it(
    'decodeJson: arbitrary bytes give a JSON value or ERR_PROTOCOL',
    () => {
      const fatal = new TextDecoder('utf-8', { fatal: true });
      fc.assert(
        fc.property(anyBytes, fc.array(fc.nat(), { maxLength: 3 }), (bytes, cuts) => {
          const list = new Uint8ArrayList(...cut(bytes, cuts));
          const out = run('decodeJson', () => decodeJson(list));
          let want: unknown;
          let valid = true;
          try {
            want = JSON.parse(fatal.decode(bytes));
          } catch {
            valid = false;
          }
          if (!out.ok) {
            expectCleanError('decodeJson', out.error, ['ERR_PROTOCOL']);
            check(!valid, 'decodeJson refused valid JSON');
          } else {
            check(valid && deepEqual(out.value, want), 'decodeJson returned other than the JSON sent');
          }
        }),
        fuzzParams('rpc decodeJson (arbitrary bytes)'),
      );
    },
    fuzzTimeout(),
  );

  fuzzJsonDecoder({
    name: 'rpc parseResponse (metaResponseSchema)',
    decode: (v) => parseResponse(v, metaResponseSchema),
    valid: fc.oneof(metaResponseArb.map((result) => ({ result })), wireErrorArb.map((error) => ({ error }))),
    // The answer to an `{error}` envelope is the DfsError it carries: thrown, by design.
    accepts: (v) => !Object.hasOwn(v as object, 'error'),
    intactEqual: false,
    idempotent: false,
    contract: (r) => check(deepEqual(metaResponseSchema.parse(r), r), 'parseResponse returned what the schema changes'),
  });

  fuzzJsonDecoder({
    name: 'rpc parseWireError',
    decode: (v) => {
      const err = parseWireError(v);
      check(isDfsError(err), 'parseWireError returned a non-DfsError');
      const sent = (v as { code?: unknown }).code;
      check(typeof sent === 'string' && (Object.hasOwn(ERROR_CODES, sent) ? err.code === sent : err.code === 'ERR_PROTOCOL'), `code ${String(sent)} became ${err.code}`);
      return err;
    },
    valid: wireErrorArb,
    codes: ['ERR_PROTOCOL'],
    intactEqual: false,
    idempotent: false,
  });
});

// ---------------------------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------------------------

interface ReceiptCase {
  readonly key: number;
  readonly chunkId: string;
  readonly fence: number;
  readonly mutate: ReadonlyArray<{ readonly field: 'chunkId' | 'fence' | 'node' | 'sig'; readonly how: number; readonly at: number; readonly value: unknown }>;
}

const receiptCaseArb: fc.Arbitrary<ReceiptCase> = fc.record({
  key: fc.nat({ max: 1 }),
  chunkId: chunkIdArb,
  fence: fenceArb,
  mutate: fc.array(fc.record({ field: fc.constantFrom('chunkId' as const, 'fence' as const, 'node' as const, 'sig' as const), how: fc.nat({ max: 7 }), at: fc.nat(), value: anyValue }), { maxLength: 2 }),
});

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** One mutation of a receipt field: a character changed, cut, added, or the value replaced. */
function mutateField(value: unknown, how: number, at: number, replacement: unknown, other: string): unknown {
  if (how === 7) return replacement;
  if (typeof value === 'number') return [value + 1, value - 1, -1, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY, 0.5][how % 7];
  if (typeof value !== 'string') return replacement;
  const i = value.length === 0 ? 0 : at % value.length;
  switch (how) {
    case 0:
      return value.slice(0, i) + B64[(B64.indexOf(value[i] ?? 'A') + 1 + (at % 63)) % 64] + value.slice(i + 1);
    case 1:
      return value.slice(0, i);
    case 2:
      return `${value}A`;
    case 3:
      return `${value}=`;
    case 4:
      return other;
    case 5:
      return value.toUpperCase();
    default:
      return `${value.slice(0, i)}\u0000${value.slice(i)}`;
  }
}

describe('fuzz: verifyReceipt', () => {
  const keys: PrivateKey[] = [];
  beforeAll(async () => {
    keys.push(await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519'));
  });

  it(
    'verifyReceipt: arbitrary arguments resolve to false, never a throw or a rejection',
    async () => {
      const nodes = keys.map((k) => peerIdFromPrivateKey(k).toString());
      const argArb = fc.tuple(
        fc.oneof(chunkIdArb, anyValue),
        fc.oneof(fenceArb, anyValue),
        fc.oneof(anyValue, fc.record({ node: fc.oneof(fc.constantFrom(...nodes), anyValue), sig: fc.oneof(fc.base64String({ minLength: 88, maxLength: 88 }), anyValue) })),
      );
      await fc.assert(
        fc.asyncProperty(argArb, async ([chunkId, fence, receipt]) => {
          const out = await runAsync('verifyReceipt', () => verifyReceipt(chunkId as string, fence as number, receipt as never));
          if (!out.ok) throw new Error('verifyReceipt threw or rejected', { cause: out.error });
          check(out.value === false, 'verifyReceipt accepted a receipt nobody signed');
        }),
        fuzzParams('verifyReceipt (arbitrary arguments)'),
      );
    },
    fuzzTimeout(),
  );

  it(
    'verifyReceipt: a signed receipt verifies; mutated, it is false unless it still says the same thing',
    async () => {
      const nodes = keys.map((k) => peerIdFromPrivateKey(k).toString());
      await fc.assert(
        fc.asyncProperty(receiptCaseArb, async (c) => {
          const signed = await signReceipt(keys[c.key]!, c.chunkId, c.fence);
          const args: Record<'chunkId' | 'fence' | 'node' | 'sig', unknown> = { chunkId: c.chunkId, fence: c.fence, node: signed.node, sig: signed.sig };
          const others = { chunkId: 'f'.repeat(64), fence: '', node: nodes[1 - c.key]!, sig: '' };
          for (const m of c.mutate) args[m.field] = mutateField(args[m.field], m.how, m.at, m.value, others[m.field]);
          const out = await runAsync('verifyReceipt', () => verifyReceipt(args.chunkId as string, args.fence as number, { node: args.node, sig: args.sig } as never));
          if (!out.ok) throw new Error('verifyReceipt threw or rejected', { cause: out.error });
          check(typeof out.value === 'boolean', 'verifyReceipt gave a non-boolean');
          const sameSig = typeof args.sig === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(args.sig) && deepEqual(new Uint8Array(Buffer.from(args.sig, 'base64')), new Uint8Array(Buffer.from(signed.sig, 'base64')));
          const same = args.chunkId === c.chunkId && args.fence === c.fence && args.node === signed.node && sameSig;
          if (c.mutate.length === 0) check(out.value, 'a freshly signed receipt does not verify');
          if (out.value) check(same, `a mutated receipt verified: ${JSON.stringify(args)}`);
        }),
        fuzzParams('verifyReceipt (mutated signed receipts)'),
      );
    },
    fuzzTimeout(),
  );
});

// ---------------------------------------------------------------------------------------------
// Swarm keys
// ---------------------------------------------------------------------------------------------

const SWARM_KEY_FILE = /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/;
const textDecoder = new TextDecoder();

function checkSwarmKey(input: Uint8Array, key: Uint8Array): void {
  check(SWARM_KEY_FILE.test(textDecoder.decode(key)), 'swarmKeyFromSecret returned no canonical swarm key file');
  check(deepEqual(swarmKeyFromSecret(key), key), 'swarmKeyFromSecret changes its own output');
  if (input.byteLength === 32) check(textDecoder.decode(key).endsWith(Buffer.from(input).toString('hex')), '32 raw bytes did not become their hex');
  check(noisePrologue(input).byteLength > 0, 'no prologue for an accepted secret');
}

describe('fuzz: swarmKeyFromSecret', () => {
  it(
    'swarmKeyFromSecret: arbitrary and mutated secrets give a canonical key file or ERR_INVALID_ARGUMENT',
    () => {
      const validFile = fc
        .tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.constantFrom('\n', '\r\n'), fc.boolean(), fc.constantFrom('', '\n', '\n\n', '\r\n'))
        .map(([key, eol, upper, tail]) => {
          const [h1, h2, hex] = textDecoder.decode(formatSwarmKey(key)).split('\n') as [string, string, string];
          return { bytes: utf8(`${h1}${eol}${h2}${eol}${upper ? hex.toUpperCase() : hex}${tail}`), key };
        });
      const input = fc.oneof(
        anyBytes.map((bytes) => ({ bytes, intact: false })),
        fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => ({ bytes, intact: true })),
        fc.tuple(validFile, fc.array(byteMutation, { maxLength: 3 })).map(([f, ms]) => {
          let bytes = f.bytes;
          for (const m of ms) bytes = applyByteMutation(bytes, m);
          return { bytes, intact: ms.length === 0 };
        }),
      );
      fc.assert(
        fc.property(input, ({ bytes, intact }) => {
          const out = run('swarmKeyFromSecret', () => swarmKeyFromSecret(bytes));
          if (!out.ok) {
            if (intact) throw new Error('swarmKeyFromSecret refused a valid secret', { cause: out.error });
            expectCleanError('swarmKeyFromSecret', out.error, ['ERR_INVALID_ARGUMENT']);
            return;
          }
          checkSwarmKey(bytes, out.value);
        }),
        fuzzParams('swarmKeyFromSecret (arbitrary and mutated secrets)'),
      );
    },
    fuzzTimeout(),
  );
});

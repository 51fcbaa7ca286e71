import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { ERROR_CODES, isDfsError } from '../../src/errors/index.ts';
import { encodeEnvelope, MetaMachine, validateSnapshotData } from '../../src/master/meta-machine.ts';
import type { ApplyResult, MetaEnvelope } from '../../src/meta/index.ts';
import { envelopeArb, pathArb } from './arbitraries.ts';
import {
  anyBytes,
  anyJsonValue,
  applyByteMutation,
  applyJsonMutation,
  type ByteMutation,
  byteMutation,
  check,
  deepEqual,
  expectCleanError,
  fuzzParams,
  fuzzTimeout,
  type JsonMutation,
  jsonMutation,
  mutatedBytes,
  run,
  jsonTextWithin,
  runAsync,
  utf8,
} from './support.ts';

/**
 * The metadata state machine's decoders (src/master/meta-machine.ts): MetaMachine.apply takes a
 * Raft log entry's bytes (written by whichever master led), restore and validateSnapshotData a
 * snapshot's bytes (from the leader, over the snapshot stream, or from disk).
 *
 * apply: any bytes give an ApplyResult (ok, or a refusal with a known code), never a throw; two
 * replicas applying the same entries get the same results and the same stateHash; the state
 * keeps its invariants, and its own snapshot is valid and restores to the same state.
 * restore / validateSnapshotData: a snapshot is accepted by both or refused by both with ERR_IO;
 * a refused one leaves the state as it was; an accepted one gives a state with its invariants
 * that snapshots and restores again to the same state.
 */

const blake3 = await loadBlake3();
const textDecoder = new TextDecoder();

const OPS = ['mkdir', 'commitFile', 'rm', 'mv', 'registerNode', 'setNodeState', 'removeNode', 'noop', 'toString', '__proto__'] as const;

/** Envelopes shaped enough to get past decodeEnvelope, with arbitrary command fields. */
const looseEnvelopeArb = fc.record({
  clientId: fc.oneof(fc.constantFrom('x', 'y', ''), fc.string({ maxLength: 8 })),
  seq: fc.oneof(fc.integer({ min: -2, max: 6 }), fc.constantFrom(2 ** 53 - 1, -(2 ** 53) + 1)),
  cmd: fc.record(
    {
      op: fc.oneof(fc.constantFrom(...OPS), anyJsonValue),
      path: fc.oneof(pathArb, anyJsonValue),
      from: fc.oneof(pathArb, anyJsonValue),
      to: fc.oneof(pathArb, anyJsonValue),
      manifest: anyJsonValue,
      owner: anyJsonValue,
      nowMs: anyJsonValue,
      nodeId: anyJsonValue,
      name: anyJsonValue,
      addrs: anyJsonValue,
      capacityBytes: anyJsonValue,
      state: anyJsonValue,
      parents: anyJsonValue,
      recursive: anyJsonValue,
      ifAbsent: anyJsonValue,
      admit: anyJsonValue,
    },
    { requiredKeys: ['op'] },
  ),
});

type EntryInput = { readonly bytes: Uint8Array };

const entryArb: fc.Arbitrary<EntryInput> = fc.oneof(
  { weight: 1, arbitrary: anyBytes.map((bytes) => ({ bytes })) },
  { weight: 1, arbitrary: looseEnvelopeArb.map((e) => ({ bytes: utf8(JSON.stringify(e)) })) },
  { weight: 2, arbitrary: envelopeArb.map((e) => ({ bytes: encodeEnvelope(e as unknown as MetaEnvelope) })) },
  { weight: 4, arbitrary: mutatedBytes(envelopeArb, (e) => e).map(({ bytes }) => ({ bytes })) },
);

function checkApplyResult(r: ApplyResult): void {
  check(typeof r === 'object' && r !== null, 'apply returned no object');
  if (r.ok === true) {
    check(Object.keys(r).every((k) => k === 'ok' || k === 'value'), `an ok result with other fields: ${Object.keys(r).join(',')}`);
  } else {
    check(r.ok === false, 'a result whose ok is not a boolean');
    check(typeof r.code === 'string' && Object.hasOwn(ERROR_CODES, r.code), `a refusal with an unknown code ${String(r.code)}`);
    check(typeof r.message === 'string', 'a refusal without a message');
  }
}

function applyQuietly(m: MetaMachine, index: number, bytes: Uint8Array): void {
  try {
    m.apply(index, bytes);
  } catch {
    // replayed only to time an entry again: the property already failed if apply threw here
  }
}

/** A fresh machine with entries[0..upTo) applied: for timing an entry a second time. */
function replay(entries: readonly EntryInput[], upTo: number): MetaMachine {
  const m = new MetaMachine();
  for (let i = 0; i < upTo; i++) applyQuietly(m, i + 1, entries[i]!.bytes);
  return m;
}

async function roundTrips(m: MetaMachine, what: string): Promise<void> {
  const data = await m.snapshot();
  await validateSnapshotData(data);
  const back = new MetaMachine();
  await back.restore(data);
  check(back.state.stateHash(blake3) === m.state.stateHash(blake3), `${what}: its own snapshot restores to another state`);
}

const deep = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;

/** What apply did with one entry: the result, or what it threw. */
function applyOutcome(bytes: Uint8Array): ApplyResult | unknown {
  const m = new MetaMachine();
  try {
    return m.apply(1, utf8(textDecoder.decode(bytes)));
  } catch (err) {
    return err;
  }
}

describe('fuzz: MetaMachine.apply (log entry bytes)', () => {
  it(
    'any entries give ApplyResults, never a throw; replicas agree; invariants and snapshots hold',
    async () => {
      // Each input is a short log of 1..4 entries (2.5 on average), so that commands meet a state
      // that earlier ones made: N inputs are N logs, some 2.5 N entries.
      await fc.assert(
        fc.asyncProperty(fc.array(entryArb, { minLength: 1, maxLength: 4 }), async (entries) => {
          const a = new MetaMachine();
          const b = new MetaMachine();
          for (let i = 0; i < entries.length; i++) {
            const { bytes } = entries[i]!;
            let first = true;
            const out = run('MetaMachine.apply', () => {
              if (first) {
                first = false;
                return a.apply(i + 1, bytes);
              }
              return replay(entries, i).apply(i + 1, bytes);
            });
            let other: { ok: true; value: ApplyResult } | { ok: false; error: unknown };
            try {
              other = { ok: true, value: b.apply(i + 1, bytes) };
            } catch (error) {
              other = { ok: false, error };
            }
            if (!out.ok) throw new Error(`MetaMachine.apply threw on entry ${i + 1}`, { cause: out.error });
            check(other.ok && deepEqual(other.value, out.value), 'two replicas got different results for the same entry');
            checkApplyResult(out.value);
          }
          check(a.state.stateHash(blake3) === b.state.stateHash(blake3), 'two replicas that applied the same entries differ');
          a.state.checkInvariants();
          await roundTrips(a, 'a state reached by applying entries');
        }),
        fuzzParams('MetaMachine.apply (logs of 1..4 entries)'),
      );
    },
    fuzzTimeout(),
  );

  // Regression, fixed (src/meta/paths.ts normalizePath, reached from MetaState #mkdir/#rm/#mv/#commitFile):
  // it builds its error message with String(input), which throws TypeError for an object whose
  // toString is not a function (JSON.parse makes `{"toString":0}`). MetaState #execute rethrows
  // non-DfsErrors ("a bug: fail loudly"), so MetaMachine.apply throws: a log entry with such a
  // path makes every master that applies it throw from RaftDriver #applyCommitted. A leader never
  // proposes one (writeCommandSchema checks paths are strings); a faulty or hostile master can.
  it('MetaMachine.apply: a path {"toString":0} is refused, not thrown (it was: TypeError)', () => {
    const r = applyOutcome(utf8('{"clientId":"c","seq":1,"cmd":{"op":"mkdir","path":{"toString":0},"parents":true,"owner":"u","nowMs":0}}'));
    expect(r).toMatchObject({ ok: false, code: 'ERR_INVALID_PATH' });
  });

  // Regression, fixed (src/meta/state.ts): MetaState.apply remembers a session for any non-empty clientId
  // string, but SnapshotRecordChecker #session (checkedId) takes 1..256 characters. A state that
  // applied an entry whose clientId is longer writes snapshots that validateSnapshotData and
  // restore refuse (ERR_IO "record N: clientId must be a string of 1..256 characters"): followers
  // can never install the leader's snapshot, and a master cannot restore its own from disk. A
  // leader never proposes one (metaRequestSchema takes 1..128); a faulty or hostile master can.
  it('MetaMachine: a state that applied a 257-character clientId snapshots and restores (it was: ERR_IO)', async () => {
    const m = new MetaMachine();
    expect(m.apply(1, utf8(JSON.stringify({ clientId: 'x'.repeat(257), seq: 1, cmd: { op: 'noop' } })))).toEqual({ ok: true });
    await roundTrips(m, 'after a long clientId');
  });

  // Regression, fixed (src/meta/state.ts #execute default case): `unknown command ${JSON.stringify(op)}`
  // overflows the stack on an op nested ~5,000 deep: RangeError out of MetaMachine.apply.
  it('MetaMachine.apply: a deeply nested op is refused, not thrown (it was: RangeError)', () => {
    const r = applyOutcome(utf8(`{"clientId":"c","seq":1,"cmd":{"op":${deep(6_000)}}}`));
    expect(r).toMatchObject({ ok: false, code: 'ERR_INVALID_ARGUMENT' });
  });

  // Regression, fixed (src/meta/state.ts #setNodeState): `unknown node state ${JSON.stringify(cmd.state)}`,
  // same overflow.
  it('MetaMachine.apply: a deeply nested node state is refused, not thrown (it was: RangeError)', () => {
    const r = applyOutcome(utf8(`{"clientId":"c","seq":1,"cmd":{"op":"setNodeState","nodeId":"n","nowMs":0,"state":${deep(6_000)}}}`));
    expect(r).toMatchObject({ ok: false, code: 'ERR_INVALID_ARGUMENT' });
  });

  // Regression, fixed (src/meta/manifest.ts validateManifest, see config-manifest.test.ts): a commitFile whose
  // manifest.chunker is nested ~5,000 deep throws RangeError out of MetaMachine.apply.
  it('MetaMachine.apply: a commitFile with a deeply nested chunker is refused, not thrown (it was: RangeError)', () => {
    const r = applyOutcome(utf8(`{"clientId":"c","seq":1,"cmd":{"op":"commitFile","path":"/f","parents":true,"ifAbsent":false,"owner":"u","nowMs":0,"manifest":{"chunker":${deep(6_000)}}}}`));
    expect(r).toMatchObject({ ok: false, code: 'ERR_INVALID_MANIFEST' });
  });
});

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

const HEADER = '{"t":"header","version":1,"appliedIndex":3,"settings":{"replicationFactor":3}}';
const ROOT_ENTRY = '{"t":"entry","path":"/","entry":{"kind":"dir","owner":"root","mtimeMs":0}}';

/** Records of every kind with arbitrary fields, behind a valid header (so the checker reads on). */
const looseRecordArb = fc.record(
  {
    t: fc.constantFrom('entry', 'node', 'session', 'header', 'other'),
    path: fc.oneof(pathArb, anyJsonValue),
    entry: fc.oneof(fc.record({ kind: fc.constantFrom('dir', 'file'), owner: fc.oneof(fc.constant('u'), anyJsonValue), mtimeMs: fc.oneof(fc.nat(), anyJsonValue), size: anyJsonValue, manifest: anyJsonValue }), anyJsonValue),
    node: fc.oneof(fc.record({ id: fc.constantFrom('n1', 'n2'), addrs: anyJsonValue, capacityBytes: anyJsonValue, state: fc.constantFrom('alive', 'x'), registeredAtMs: fc.nat(), stateSinceMs: fc.nat(), name: anyJsonValue }), anyJsonValue),
    clientId: fc.oneof(fc.constantFrom('x', 'y'), anyJsonValue),
    seq: fc.oneof(fc.nat(), anyJsonValue),
    result: fc.oneof(fc.record({ ok: fc.boolean(), value: anyJsonValue, code: fc.constantFrom('ERR_EXISTS', 'ERR_X'), message: anyJsonValue }), anyJsonValue),
  },
  { requiredKeys: ['t'] },
);

const arbitrarySnapshotArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  anyBytes,
  fc.array(fc.oneof(looseRecordArb, anyJsonValue), { maxLength: 6 }).map((rs) => utf8([HEADER, ROOT_ENTRY, ...rs.map((r) => JSON.stringify(r))].join('\n'))),
  fc.array(anyJsonValue, { maxLength: 4 }).map((rs) => utf8(rs.map((r) => JSON.stringify(r)).join('\n'))),
);

interface LineMutation {
  readonly kind: 'drop' | 'duplicate' | 'swap' | 'json' | 'insert' | 'blank';
  readonly at: number;
  readonly at2: number;
  readonly json: JsonMutation;
  readonly line: unknown;
}

const lineMutationArb: fc.Arbitrary<LineMutation> = fc.record({
  kind: fc.constantFrom('drop', 'duplicate', 'swap', 'json', 'json', 'json', 'insert', 'blank'),
  at: fc.nat(),
  at2: fc.nat(),
  json: jsonMutation,
  line: fc.oneof(looseRecordArb, anyJsonValue),
}) as fc.Arbitrary<LineMutation>;

function mutateLines(text: string, ms: readonly LineMutation[]): string {
  const lines = text.split('\n');
  for (const m of ms) {
    const i = m.at % lines.length;
    switch (m.kind) {
      case 'drop':
        if (lines.length > 1) lines.splice(i, 1);
        break;
      case 'duplicate':
        lines.splice(i, 0, lines[i]!);
        break;
      case 'swap': {
        const j = m.at2 % lines.length;
        [lines[i], lines[j]] = [lines[j]!, lines[i]!];
        break;
      }
      case 'json': {
        let record: unknown;
        try {
          record = JSON.parse(lines[i]!);
        } catch {
          break; // a line an earlier mutation broke
        }
        try {
          lines[i] = jsonTextWithin(applyJsonMutation(record, m.json)) ?? lines[i]!;
        } catch {
          // a record an earlier mutation nested too deep for JSON.stringify: left as it is
        }
        break;
      }
      case 'insert':
        lines.splice(i, 0, JSON.stringify(m.line) ?? 'null');
        break;
      case 'blank':
        lines.splice(i, 0, '');
        break;
    }
  }
  return lines.join('\n');
}

const snapshotInputArb = fc.oneof(
  { weight: 1, arbitrary: arbitrarySnapshotArb.map((bytes) => ({ log: [] as unknown[], lineMs: [] as LineMutation[], byteMs: [] as ByteMutation[], raw: bytes as Uint8Array | undefined })) },
  {
    weight: 3,
    arbitrary: fc.record({
      log: fc.array(envelopeArb, { maxLength: 8 }),
      lineMs: fc.array(lineMutationArb, { maxLength: 3 }),
      byteMs: fc.array(byteMutation, { maxLength: 2 }),
      raw: fc.constant(undefined as Uint8Array | undefined),
    }),
  },
);

/** A machine that already holds something, to see that a refused restore leaves it alone. */
function nonEmptyMachine(): MetaMachine {
  const m = new MetaMachine();
  m.apply(1, encodeEnvelope({ clientId: 'w', seq: 1, cmd: { op: 'mkdir', path: '/before', parents: false, owner: 'u', nowMs: 1 } }));
  return m;
}

describe('fuzz: metadata snapshots (restore, validateSnapshotData)', () => {
  it(
    'arbitrary and mutated snapshots are accepted by both or refused by both with ERR_IO; refused ones change nothing',
    async () => {
      await fc.assert(
        fc.asyncProperty(snapshotInputArb, async (input) => {
          let data: Uint8Array;
          let source: MetaMachine | undefined;
          if (input.raw !== undefined) {
            data = input.raw;
          } else {
            source = new MetaMachine();
            input.log.forEach((e, i) => source!.apply(i + 1, encodeEnvelope(e as unknown as MetaEnvelope)));
            data = await source.snapshot();
            if (input.lineMs.length > 0) data = utf8(mutateLines(textDecoder.decode(data), input.lineMs));
            for (const b of input.byteMs) data = applyByteMutation(data, b);
          }
          const intact = source !== undefined && input.lineMs.length === 0 && input.byteMs.length === 0;

          const valid = await runAsync('validateSnapshotData', () => validateSnapshotData(data));
          if (!valid.ok) expectCleanError('validateSnapshotData', valid.error, ['ERR_IO']);
          if (intact) check(valid.ok, 'an intact snapshot was refused');

          const target = nonEmptyMachine();
          const before = target.state.stateHash(blake3);
          let first = true;
          const restored = await runAsync('MetaMachine.restore', async () => {
            // A second run (timing) restores into a fresh machine: the outcome is the first one's.
            const m = first ? target : nonEmptyMachine();
            first = false;
            await m.restore(data);
          });
          if (!restored.ok) {
            expectCleanError('MetaMachine.restore', restored.error, ['ERR_IO']);
            check(!valid.ok, 'restore refused a snapshot validateSnapshotData accepted');
            check(target.state.stateHash(blake3) === before, 'a refused restore changed the state');
            return;
          }
          check(valid.ok, 'restore accepted a snapshot validateSnapshotData refused');
          target.state.checkInvariants();
          if (source !== undefined && intact) check(target.state.stateHash(blake3) === source.state.stateHash(blake3), 'an intact snapshot restored to another state');
          await roundTrips(target, 'a restored state');
        }),
        fuzzParams('MetaMachine.restore + validateSnapshotData (arbitrary and mutated snapshots)'),
      );
    },
    fuzzTimeout(),
  );

  // Regression, fixed (src/meta/state.ts SnapshotRecordChecker #session): a session's ok result `value` is
  // taken unchecked; one nested ~5,000 deep passes validateSnapshotData and restore, and then the
  // restored machine cannot serialise its state: stateHash() and snapshot() throw RangeError (a
  // follower installs such a snapshot and can never compact its log again, nor answer `status
  // --hash`). Only a faulty or hostile master sends one: apply never stores such a value.
  it('restore: a snapshot that validates can be snapshotted again (it was: RangeError on a deep session value)', async () => {
    const data = utf8([HEADER, ROOT_ENTRY, `{"t":"session","clientId":"c","seq":1,"result":{"ok":true,"value":${deep(6_000)}}}`].join('\n'));
    const accepted = await validateSnapshotData(data).then(
      () => true,
      (err: unknown) => {
        if (isDfsError(err, 'ERR_IO')) return false;
        throw err;
      },
    );
    if (!accepted) return;
    const m = new MetaMachine();
    await m.restore(data);
    await expect(m.snapshot()).resolves.toBeInstanceOf(Uint8Array);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeConfigEntry, decodeMessage, encodeConfigEntry, encodeMessage, MESSAGE_TYPES, validateMessage } from '../../src/raft/index.ts';
import type { ConfigEntry, Entry, Message } from '../../src/raft/index.ts';
import { anyBytes, check, deepEqual, fuzzParams, fuzzTimeout, mutatedBytes, run } from './support.ts';

/**
 * The Raft wire codec (src/raft/codec.ts): decodeMessage and decodeConfigEntry take bytes from
 * another master. Contract: they never throw, and return null or a well-formed value, one that
 * validateMessage accepts unchanged and that survives encode/decode unchanged.
 */

const textDecoder = new TextDecoder();

const idArb = fc.oneof(fc.constantFrom('n1', 'n2', 'n3', '12D3KooWPeer', 'x'.repeat(256)), fc.string({ minLength: 1, maxLength: 12 }));
const countArb = fc.oneof(fc.nat({ max: 1_000 }), fc.constantFrom(0, 1, 2 ** 31, 2 ** 53 - 1));
const bytesArb = fc.uint8Array({ maxLength: 48 });

const configArb = fc.uniqueArray(idArb, { minLength: 1, maxLength: 5 }).chain((ids) =>
  fc.integer({ min: 1, max: ids.length }).map((v) => ({ voters: ids.slice(0, v), learners: ids.slice(v) })),
);
const configEntryArb: fc.Arbitrary<ConfigEntry> = fc.record({
  change: fc.record({ type: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const), id: idArb }),
  config: configArb,
});

/** A run of entries after (prevIndex, prevTerm), terms never going back nor past `term`. */
function entriesArb(prevIndex: number, prevTerm: number, term: number): fc.Arbitrary<Entry[]> {
  return fc.array(fc.tuple(fc.nat({ max: 3 }), fc.oneof(bytesArb.map((data) => ({ type: 'normal' as const, data })), configEntryArb.map((c) => ({ type: 'config' as const, data: encodeConfigEntry(c) })))), { maxLength: 4 }).map((raw) => {
    const entries: Entry[] = [];
    let t = Math.max(1, prevTerm);
    for (const [bump, { type, data }] of raw) {
      t = Math.min(term, t + bump);
      entries.push({ index: prevIndex + 1 + entries.length, term: t, type, data });
    }
    return entries;
  });
}

const envelopeArb = fc.record({ from: idArb, to: idArb, term: countArb });
const contextArb = fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 2 ** 53 - 1 }).map(String));

export const messageArb: fc.Arbitrary<Message> = envelopeArb.chain(({ from, to, term }): fc.Arbitrary<Message> => {
  const env = { from, to, term };
  const upToTerm = fc.nat({ max: term });
  return fc.oneof(
    fc.record({ type: fc.constantFrom('preVote' as const, 'vote' as const), lastLogIndex: countArb, lastLogTerm: upToTerm, transfer: fc.boolean() }).map((m) => ({ ...m, ...env })),
    fc.record({ type: fc.constantFrom('preVoteResp' as const, 'voteResp' as const), reject: fc.boolean() }).map((m) => ({ ...m, ...env })),
    fc
      .record({ prevLogIndex: fc.nat({ max: 10_000 }), prevLogTerm: upToTerm, commit: countArb })
      .chain((m) => (term === 0 ? fc.constant([] as Entry[]) : entriesArb(m.prevLogIndex, m.prevLogTerm, term)).map((entries) => ({ type: 'append' as const, ...env, ...m, entries }))),
    fc.record({ reject: fc.boolean(), index: countArb, rejectHint: countArb, logTerm: countArb }).map((m) => ({ type: 'appendResp' as const, ...env, ...m })),
    fc.record({ commit: countArb, context: contextArb }).map((m) => ({ type: 'heartbeat' as const, ...env, ...m })),
    contextArb.map((context) => ({ type: 'heartbeatResp' as const, ...env, context })),
    fc
      .record({ index: fc.nat({ max: 10_000 }), snapTerm: upToTerm, config: configArb, data: bytesArb })
      .map(({ index, snapTerm, config, data }) => {
        const zero = index === 0 || snapTerm === 0;
        return { type: 'installSnapshot' as const, ...env, snapshot: { metadata: { index: zero ? 0 : index, term: zero ? 0 : snapTerm, config }, data } };
      }),
    fc.constant({ type: 'timeoutNow' as const, ...env }),
  );
});

/** The wire form as JSON (what mutations work on). */
const wireJson = (m: Message): unknown => JSON.parse(textDecoder.decode(encodeMessage(m)));

/** What decodeMessage may return: null, or a message its own validation and codec keep as is. */
function checkMessage(decoded: Message | null): void {
  if (decoded === null) return;
  check(MESSAGE_TYPES.includes(decoded.type), `unknown type ${String(decoded.type)}`);
  check(deepEqual(validateMessage(decoded), decoded), 'validateMessage changes or refuses what decodeMessage returned');
  check(deepEqual(decodeMessage(encodeMessage(decoded)), decoded), 'encode/decode changes what decodeMessage returned');
}

function checkConfigEntry(decoded: ConfigEntry | null): void {
  if (decoded === null) return;
  check(deepEqual(decodeConfigEntry(encodeConfigEntry(decoded)), decoded), 'encode/decode changes a decoded config entry');
}

describe('fuzz: Raft wire codec', () => {
  it('the valid-message generator makes messages the codec round-trips (sanity)', () => {
    fc.assert(
      fc.property(messageArb, (m) => {
        expect(validateMessage(m)).toEqual(m);
        expect(decodeMessage(encodeMessage(m))).toEqual(m);
      }),
      { numRuns: 300 },
    );
  });

  it(
    'decodeMessage: arbitrary bytes give null or a well-formed message, never a throw',
    () => {
      fc.assert(
        fc.property(anyBytes, (bytes) => {
          const out = run('decodeMessage', () => decodeMessage(bytes));
          if (!out.ok) throw new Error('decodeMessage threw', { cause: out.error });
          checkMessage(out.value);
        }),
        fuzzParams('raft decodeMessage (arbitrary bytes)'),
      );
    },
    fuzzTimeout(),
  );

  it(
    'decodeMessage: mutated valid messages give null or a well-formed message; intact ones decode as sent',
    () => {
      fc.assert(
        fc.property(mutatedBytes(messageArb, wireJson), ({ bytes, intact, valid }) => {
          const out = run('decodeMessage', () => decodeMessage(bytes));
          if (!out.ok) throw new Error('decodeMessage threw', { cause: out.error });
          if (intact) check(deepEqual(out.value, valid), 'an intact valid message did not decode as sent');
          checkMessage(out.value);
        }),
        fuzzParams('raft decodeMessage (mutated messages)'),
      );
    },
    fuzzTimeout(),
  );

  it(
    'decodeConfigEntry: arbitrary and mutated config entries give null or a well-formed entry',
    () => {
      const input = fc.oneof(
        anyBytes.map((bytes) => ({ bytes, intact: false, valid: undefined as ConfigEntry | undefined })),
        mutatedBytes(configEntryArb, (c) => JSON.parse(textDecoder.decode(encodeConfigEntry(c)))),
      );
      fc.assert(
        fc.property(input, ({ bytes, intact, valid }) => {
          const out = run('decodeConfigEntry', () => decodeConfigEntry(bytes));
          if (!out.ok) throw new Error('decodeConfigEntry threw', { cause: out.error });
          if (intact) check(deepEqual(out.value, valid), 'an intact config entry did not decode as sent');
          checkConfigEntry(out.value);
        }),
        fuzzParams('raft decodeConfigEntry (arbitrary + mutated)'),
      );
    },
    fuzzTimeout(),
  );
});

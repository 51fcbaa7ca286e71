import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Message } from '../../src/raft/index.ts';
import { MAX_ID_LENGTH, MESSAGE_TYPES, RaftNode, decodeMessage, encodeMessage, validateMessage } from '../../src/raft/index.ts';
import { Cluster, bytes, drainReady, entry, nodeWith, options } from './helpers.ts';

const SAMPLES: Message[] = [
  { type: 'preVote', from: 'a', to: 'b', term: 3, lastLogIndex: 9, lastLogTerm: 2, transfer: false },
  { type: 'voteResp', from: 'b', to: 'a', term: 3, reject: true },
  {
    type: 'append',
    from: 'a',
    to: 'b',
    term: 3,
    prevLogIndex: 4,
    prevLogTerm: 2,
    entries: [entry(5, 3, 'x'), { index: 6, term: 3, type: 'normal', data: new Uint8Array([0, 255, 7]) }],
    commit: 4,
  },
  { type: 'appendResp', from: 'b', to: 'a', term: 3, reject: true, index: 4, rejectHint: 3, logTerm: 2 },
  { type: 'heartbeat', from: 'a', to: 'b', term: 3, commit: 4, context: '17' },
  { type: 'heartbeatResp', from: 'b', to: 'a', term: 3, context: null },
  { type: 'installSnapshot', from: 'a', to: 'b', term: 3, snapshot: { metadata: { index: 9, term: 2, config: { voters: ['a', 'b'], learners: ['c'] } }, data: new Uint8Array([1, 2, 3]) } },
  { type: 'timeoutNow', from: 'a', to: 'b', term: 3 },
];

describe('wire codec', () => {
  it('round-trips every message type, including binary payloads', () => {
    expect(new Set(SAMPLES.map((m) => m.type)).size).toBe(MESSAGE_TYPES.length - 2); // vote and preVoteResp share shapes
    for (const m of SAMPLES) expect(decodeMessage(encodeMessage(m))).toEqual(m);
  });

  it('rejects malformed messages instead of throwing', () => {
    const bad: unknown[] = [
      null,
      42,
      'append',
      { type: 'nope', from: 'a', to: 'b', term: 1 },
      { ...SAMPLES[0], term: -1 },
      { ...SAMPLES[0], term: 1.5 },
      { ...SAMPLES[0], from: '' },
      { ...SAMPLES[0], lastLogTerm: 99 }, // a log term above the message term
      { ...SAMPLES[2], entries: [entry(7, 3)] }, // not contiguous with prevLogIndex 4
      { ...SAMPLES[2], entries: [entry(5, 9)] }, // entry from a future term
      { ...SAMPLES[2], entries: [{ index: 5, term: 3, type: 'config', data: bytes('not json') }] },
      { ...SAMPLES[2], entries: [{ index: 5, term: 3, type: 'normal', data: 'AAAA' }] },
      // A heartbeat's context is the leader's read round: a positive decimal integer, nothing else.
      { ...SAMPLES[4], context: 'ctx' },
      { ...SAMPLES[4], context: '0' },
      { ...SAMPLES[4], context: '017' },
      { ...SAMPLES[4], context: 17 },
      { ...SAMPLES[4], context: '99999999999999999' },
      { ...SAMPLES[5], context: 'x'.repeat(1025) },
      { ...SAMPLES[6], snapshot: { metadata: { index: 9, term: 2, config: { voters: ['a', 'a'], learners: [] } }, data: new Uint8Array() } },
    ];
    for (const value of bad) expect(validateMessage(value)).toBeNull();
    expect(decodeMessage(bytes('{not json'))).toBeNull();
    expect(decodeMessage(new Uint8Array([0xff, 0xfe]))).toBeNull();
    expect(decodeMessage(bytes(JSON.stringify({ ...SAMPLES[2], entries: [{ index: 5, term: 3, type: 'normal', data: '!!' }] })))).toBeNull();
  });

  it('never throws on arbitrary bytes or arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (raw) => {
        decodeMessage(raw);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(() => validateMessage(value)).not.toThrow();
        expect(() => decodeMessage(bytes(JSON.stringify(value) ?? 'null'))).not.toThrow();
      }),
      { numRuns: 300 },
    );
  });
});

describe('options', () => {
  it('refuses a node id too long to pass the wire codec', () => {
    const id = 'n'.repeat(MAX_ID_LENGTH + 1);
    expect(() => RaftNode.bootstrap(options(id), { voters: [id], learners: [] })).toThrow(/at most 256/);
  });
});

describe('bad input is dropped and counted, never thrown', () => {
  it('counts messages for another node and responses from unknown peers', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const term = leader.status().term;
    leader.step({ type: 'heartbeatResp', from: 'mallory', to: 'a', term, context: null });
    leader.step({ type: 'appendResp', from: 'mallory', to: 'a', term, reject: false, index: 1, rejectHint: 0, logTerm: 0 });
    leader.step({ type: 'heartbeat', from: 'b', to: 'zz', term, commit: 0, context: null });
    expect(leader.stats.droppedMessages.unknown_peer).toBe(2);
    expect(leader.stats.droppedMessages.wrong_recipient).toBe(1);
    expect(leader.status().role).toBe('leader');
  });

  it('counts acknowledgements of indexes the leader never had', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const term = leader.status().term;
    leader.step({ type: 'appendResp', from: 'b', to: 'a', term, reject: false, index: 1_000_000, rejectHint: 0, logTerm: 0 });
    expect(leader.stats.droppedMessages.impossible_index).toBe(1);
    expect(leader.status().commit).toBeLessThan(1_000_000);
  });

  it('counts a heartbeat commit beyond the log and an append that would rewrite committed entries', () => {
    const node = nodeWith('b', ['a', 'b', 'c'], { term: 2, commit: 2, entries: [entry(1, 1), entry(2, 2)] });
    node.step({ type: 'heartbeat', from: 'a', to: 'b', term: 2, commit: 50, context: null });
    expect(node.stats.droppedMessages.commit_beyond_log).toBe(1);
    node.step({ type: 'append', from: 'a', to: 'b', term: 3, prevLogIndex: 2, prevLogTerm: 2, entries: [entry(3, 3)], commit: 2 });
    node.step({ type: 'append', from: 'a', to: 'b', term: 3, prevLogIndex: 1, prevLogTerm: 1, entries: [entry(2, 3)], commit: 2 });
    expect(node.status().commit).toBe(2);
    expect(node.logTerm(2)).toBe(2);
    expect(drainReady(node).messages.length).toBeGreaterThan(0);
  });

  it('survives a storm of random well-formed messages without throwing', () => {
    const ids = ['a', 'b', 'c', 'x'];
    const message = fc
      .record({
        type: fc.constantFrom(...MESSAGE_TYPES),
        from: fc.constantFrom(...ids),
        to: fc.constantFrom(...ids),
        term: fc.nat(6),
        lastLogIndex: fc.nat(8),
        lastLogTerm: fc.nat(6),
        transfer: fc.boolean(),
        reject: fc.boolean(),
        prevLogIndex: fc.nat(8),
        prevLogTerm: fc.nat(6),
        commit: fc.nat(10),
        index: fc.nat(10),
        rejectHint: fc.nat(10),
        logTerm: fc.nat(6),
        context: fc.constantFrom(null, '1', '2'),
        entries: fc.constant([]),
        snapshot: fc.record({
          metadata: fc.record({ index: fc.nat(8), term: fc.nat(6), config: fc.constant({ voters: ['a', 'b', 'c'], learners: [] }) }),
          data: fc.constant(new Uint8Array()),
        }),
      })
      .map((raw) => validateMessage(raw))
      .filter((m): m is Message => m !== null);
    fc.assert(
      fc.property(fc.array(fc.oneof(message, fc.constant('tick' as const)), { maxLength: 100 }), (inputs) => {
        const cluster = new Cluster(['a', 'b', 'c']);
        const node = cluster.node('a');
        for (const input of inputs) {
          if (input === 'tick') node.tick();
          else node.step(input);
          if (node.hasReady()) drainReady(node);
          if (node.status().role === 'leader') node.propose(bytes('p'));
        }
      }),
      { numRuns: 200 },
    );
  });
});

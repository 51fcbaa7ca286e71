import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { type MetaCommand, type MetaEnvelope, MetaState } from '../../src/meta/index.ts';
import { cid, manifestOf } from '../support/meta-fixtures.ts';
import { propertyRuns, testSeed } from '../support/seed.ts';

const blake3 = await loadBlake3();

// A small universe of names so that commands collide: existing targets, non-empty dirs, cycles.
const pathArb = fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 1, maxLength: 3 }).map((s) => `/${s.join('/')}`);
const chunksArb = fc.array(fc.tuple(fc.integer({ min: 1, max: 6 }).map(cid), fc.integer({ min: 1, max: 100 })), { minLength: 0, maxLength: 4 });

const commandArb: fc.Arbitrary<MetaCommand> = fc.oneof(
  fc.record({ op: fc.constant('mkdir' as const), path: pathArb, parents: fc.boolean(), owner: fc.constant('u'), nowMs: fc.nat() }),
  fc.record({
    op: fc.constant('commitFile' as const),
    path: pathArb,
    manifest: chunksArb.map((c) => manifestOf(c as Array<[string, number]>)),
    owner: fc.constant('u'),
    nowMs: fc.nat(),
    parents: fc.boolean(),
    ifAbsent: fc.boolean(),
  }),
  fc.record({ op: fc.constant('rm' as const), path: pathArb, recursive: fc.boolean() }),
  fc.record({ op: fc.constant('mv' as const), from: pathArb, to: pathArb, nowMs: fc.nat() }),
  fc.record({ op: fc.constant('registerNode' as const), nodeId: fc.constantFrom('n1', 'n2'), addrs: fc.constant(['/ip4/127.0.0.1/tcp/1']), capacityBytes: fc.nat(), nowMs: fc.nat() }),
  fc.record({ op: fc.constant('setNodeState' as const), nodeId: fc.constantFrom('n1', 'n2'), state: fc.constantFrom('alive' as const, 'suspect' as const, 'dead' as const), nowMs: fc.nat() }),
);

/** A log: commands from three clients, some of them retried (same seq again). */
const logArb = fc.array(fc.tuple(commandArb, fc.constantFrom('x', 'y', 'z'), fc.boolean()), { maxLength: 60 }).map((items) => {
  const seqs = new Map<string, number>();
  const log: MetaEnvelope[] = [];
  for (const [cmd, clientId, retry] of items) {
    const seq = (seqs.get(clientId) ?? 0) + 1;
    seqs.set(clientId, seq);
    log.push({ clientId, seq, cmd });
    if (retry) log.push({ clientId, seq, cmd });
  }
  return log;
});

function options(name: string, runs: number): fc.Parameters<unknown> {
  return { seed: testSeed(name), numRuns: propertyRuns(runs) };
}

describe('metadata state machine properties', () => {
  it('invariants hold after every command; reference counts always equal a recount', () => {
    fc.assert(
      fc.property(logArb, (log) => {
        const s = new MetaState();
        log.forEach((e, i) => {
          s.apply(i + 1, e);
          s.checkInvariants();
        });
      }),
      options('meta invariants', 300),
    );
  });

  it('the same log gives the same state, also through a snapshot taken anywhere', async () => {
    await fc.assert(
      fc.asyncProperty(logArb, fc.nat(), async (log, cutAt) => {
        const a = new MetaState();
        const cut = log.length === 0 ? 0 : cutAt % (log.length + 1);
        const results: unknown[] = [];
        log.slice(0, cut).forEach((e, i) => results.push(a.apply(i + 1, e)));
        const b = await MetaState.restore(a.snapshotRecords());
        const c = new MetaState();
        log.forEach((e, i) => {
          const r = c.apply(i + 1, e);
          if (i < cut) expect(r).toEqual(results[i]);
        });
        log.slice(cut).forEach((e, i) => {
          const ra = a.apply(cut + i + 1, e);
          const rb = b.apply(cut + i + 1, e);
          expect(rb).toEqual(ra);
        });
        b.checkInvariants();
        expect(b.stateHash(blake3)).toBe(a.stateHash(blake3));
        expect(c.stateHash(blake3)).toBe(a.stateHash(blake3));
      }),
      options('meta snapshot equivalence', 300),
    );
  });

  it('retries change nothing: a log with retries ends where the log without them does', () => {
    fc.assert(
      fc.property(logArb, (log) => {
        const withRetries = new MetaState();
        log.forEach((e, i) => withRetries.apply(i + 1, e));
        const once = new MetaState();
        const seen = new Set<string>();
        let index = 0;
        for (const e of log) {
          const key = `${e.clientId}:${e.seq}`;
          if (seen.has(key)) continue;
          seen.add(key);
          once.apply(++index, e);
        }
        const strip = (s: MetaState) => [...s.snapshotRecords()].filter((r) => r.t === 'entry' || r.t === 'node');
        expect(strip(withRetries)).toEqual(strip(once));
      }),
      options('meta retries', 300),
    );
  });
});

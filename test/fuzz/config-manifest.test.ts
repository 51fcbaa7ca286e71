import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CHUNKER_ID, isChunkId } from '../../src/chunker/index.ts';
import { clientConfigSchema, parseClientConfig } from '../../src/cluster/client-config.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { type Manifest, validateManifest } from '../../src/meta/index.ts';
import { clientConfigArb, manifestArb } from './arbitraries.ts';
import {
  anyJsonValue,
  applyByteMutation,
  byteMutation,
  check,
  deepEqual,
  expectCleanError,
  fuzzJsonDecoder,
  fuzzParams,
  fuzzTimeout,
  mutatedJson,
  run,
  utf8,
} from './support.ts';

/**
 * validateManifest (src/meta/manifest.ts): a manifest comes from a client (a commitFile), from
 * the Raft log and from snapshots. parseClientConfig (src/cluster/client-config.ts): the config
 * file a client reads (written by `dfs cluster up`, or by hand).
 */

const MANIFEST_KEYS = 'chunker,params,size,blake3,chunks';

function checkManifest(m: Manifest): void {
  check(Object.keys(m).join(',') === MANIFEST_KEYS, `manifest keys not canonical: ${Object.keys(m).join(',')}`);
  check(m.chunker === CHUNKER_ID, 'unknown chunker accepted');
  check(Number.isSafeInteger(m.size) && m.size >= 0, 'size not a count');
  check(typeof m.blake3 === 'string' && isChunkId(m.blake3), 'blake3 not 64 hex digits');
  let total = 0;
  for (const c of m.chunks) {
    check(Array.isArray(c) && c.length === 2 && isChunkId(c[0]), 'a malformed chunk entry');
    check(Number.isSafeInteger(c[1]) && c[1] > 0 && c[1] <= m.params.maxSize, 'a chunk length out of range');
    total += c[1];
  }
  check(total === m.size, 'chunk lengths do not add up to the size');
}

const decoder = new TextDecoder();
const deep = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;

describe('fuzz: validateManifest', () => {
  fuzzJsonDecoder({
    name: 'validateManifest',
    decode: (v) => validateManifest(v),
    valid: manifestArb,
    codes: ['ERR_INVALID_MANIFEST'],
    contract: checkManifest,
  });

  // Regression, fixed (src/meta/manifest.ts): the refusal message does JSON.stringify(m.chunker); a chunker
  // nested ~5,000 deep overflows the stack: RangeError instead of ERR_INVALID_MANIFEST. Reached
  // by a client's commitFile (the leader validates the manifest in MetaService #stamp: the
  // client gets ERR_INTERNAL) and by a log entry (MetaMachine.apply throws, see meta-machine.test.ts).
  it('validateManifest: a deeply nested chunker is refused with ERR_INVALID_MANIFEST (it was: RangeError)', () => {
    const err = (() => {
      try {
        validateManifest(JSON.parse(`{"chunker":${deep(6_000)}}`));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(isDfsError(err, 'ERR_INVALID_MANIFEST')).toBe(true);
  });
});

describe('fuzz: parseClientConfig', () => {
  const checkOne = (text: string, intact: unknown): void => {
    const out = run('parseClientConfig', () => parseClientConfig(text, '/cluster/dfs-client.json'));
    if (!out.ok) {
      if (intact !== undefined) throw new Error('parseClientConfig refused an intact valid config', { cause: out.error });
      expectCleanError('parseClientConfig', out.error, ['ERR_INVALID_ARGUMENT']);
      return;
    }
    if (intact !== undefined) check(deepEqual(out.value, intact), 'an intact config changed');
    check(deepEqual(clientConfigSchema.parse(out.value), out.value), 'parseClientConfig returned what its schema changes');
    check(out.value.masters.length >= 1, 'a config without masters');
  };

  it(
    'parseClientConfig: arbitrary text gives a config or ERR_INVALID_ARGUMENT',
    () => {
      const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), anyJsonValue.map((v) => JSON.stringify(v)), fc.uint8Array({ maxLength: 200 }).map((b) => decoder.decode(b)));
      fc.assert(
        fc.property(text, (t) => checkOne(t, undefined)),
        fuzzParams('parseClientConfig (arbitrary text)'),
      );
    },
    fuzzTimeout(),
  );

  it(
    'parseClientConfig: mutated valid configs give a config or ERR_INVALID_ARGUMENT',
    () => {
      const input = fc.tuple(mutatedJson(clientConfigArb), fc.array(byteMutation, { maxLength: 2 })).map(([m, byteMs]) => {
        let bytes = utf8(m.text);
        for (const b of byteMs) bytes = applyByteMutation(bytes, b);
        // As readFile(path, 'utf8') would give it: invalid UTF-8 becomes U+FFFD.
        return { text: decoder.decode(bytes), intact: m.mutations === 0 && byteMs.length === 0 ? m.valid : undefined };
      });
      fc.assert(
        fc.property(input, ({ text, intact }) => checkOne(text, intact)),
        fuzzParams('parseClientConfig (mutated configs)'),
      );
    },
    fuzzTimeout(),
  );
});

// Regenerates fastcdc2020-v1.json from the plain reference chunker (not the optimised one):
//   npx node test/chunker/vectors/generate.ts > test/chunker/vectors/fastcdc2020-v1.json
// Only ever needed for a new chunker id; the vectors of an existing id must never change.
import { createHash } from 'node:crypto';
import { loadBlake3 } from '../../../src/chunker/index.ts';
import { SeededBytes } from '../../support/prng.ts';
import { referenceChunks } from '../../support/fastcdc-reference.ts';

const blake3 = await loadBlake3();
const sets = [
  { name: 'default', seed: 0x64667331, length: 32 * 1024 * 1024, params: { minSize: 262144, avgSize: 1048576, maxSize: 4194304 } },
  { name: 'small', seed: 0x64667332, length: 1024 * 1024, params: { minSize: 2048, avgSize: 8192, maxSize: 65536 } },
];
const out = {
  chunker: 'fastcdc2020-v1',
  input: 'SeededBytes(seed).bytes(length) from test/support/prng.ts',
  sets: sets.map((s) => {
    const data = new SeededBytes(s.seed).bytes(s.length);
    return {
      ...s,
      inputSha256: createHash('sha256').update(data).digest('hex'),
      chunks: referenceChunks(data, s.params).map(([o, l]) => [o, l, blake3.hashHex(data.subarray(o, o + l))]),
    };
  }),
};
console.log(JSON.stringify(out, null, 1).replace(/\[\n\s+(\d+),\n\s+(\d+),\n\s+("[0-9a-f]+")\n\s+\]/g, '[$1, $2, $3]'));

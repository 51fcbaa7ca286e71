import { describe } from 'vitest';
import { metaRequestSchema, metaResponseSchema, parsePlacements, type Placement } from '../../src/meta/index.ts';
import { metaRequestArb, metaResponseArb, placementsArb } from './arbitraries.ts';
import { check, fuzzJsonDecoder } from './support.ts';

/**
 * The metadata protocol's decoders (src/meta/protocol.ts): what a master parses from a client or
 * a storage node (metaRequestSchema), and what those parse from a master (metaResponseSchema,
 * parsePlacements on a `place` answer's value). A refusal is ERR_PROTOCOL naming the field.
 */

const CHUNK_ID = /^[0-9a-f]{64}$/;

function checkPlacements(placements: Placement[]): void {
  check(Array.isArray(placements), 'parsePlacements returned no array');
  for (const p of placements) {
    check(typeof p.id === 'string' && CHUNK_ID.test(p.id), 'a placement without a chunk id');
    const keys = Object.keys(p).sort().join(',');
    if ('existing' in p) {
      check(keys === 'existing,holders,id' && p.existing === true && Number.isSafeInteger(p.holders) && p.holders >= 0, `a malformed "existing" placement (${keys})`);
    } else {
      check(keys === 'fence,id,targets,ticket' && typeof p.ticket === 'string' && p.ticket.length > 0, `a placement that is neither kind (${keys})`);
      check(Array.isArray(p.targets) && p.targets.every((t) => typeof t === 'string'), 'placement targets are not strings');
      check(Number.isSafeInteger(p.fence) && p.fence >= 0, 'a placement fence that is not a count');
    }
  }
}

describe('fuzz: metadata protocol decoders', () => {
  fuzzJsonDecoder({
    name: 'metaRequestSchema',
    decode: (v) => metaRequestSchema.parse(v),
    valid: metaRequestArb,
    codes: ['ERR_PROTOCOL'],
    contract: (r) => check(typeof r.type === 'string', 'a request without a type'),
  });

  fuzzJsonDecoder({
    name: 'metaResponseSchema',
    decode: (v) => metaResponseSchema.parse(v),
    valid: metaResponseArb,
    codes: ['ERR_PROTOCOL'],
    contract: (r) => check(typeof r.ok === 'boolean', 'a response without ok'),
  });

  fuzzJsonDecoder({
    name: 'parsePlacements',
    decode: (v) => parsePlacements(v),
    valid: placementsArb,
    codes: ['ERR_PROTOCOL'],
    contract: checkPlacements,
  });
});

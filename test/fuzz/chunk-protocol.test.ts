import { describe } from 'vitest';
import { ChunkTargetError, chunkRequestSchema, deleteAnswerSchema, getAnswerSchema, hasAnswerSchema, parseAnswer, putAnswerSchema } from '../../src/protocol/chunk-protocol.ts';
import { heartbeatAnswerSchema } from '../../src/node/control-protocol.ts';
import type { Schema } from '../../src/net/index.ts';
import { chunkAnswerArb, chunkRequestArb, heartbeatAnswerArb } from './arbitraries.ts';
import { check, fuzzJsonDecoder } from './support.ts';

/**
 * The chunk protocol's headers (src/protocol/chunk-protocol.ts), both ways: a storage node parses
 * requests (chunkRequestSchema), a client or a forwarding node parses answers (parseAnswer with
 * the put, get, has or delete schema; a refusal becomes the DfsError it carries), and a storage
 * node parses the leader's heartbeat answer (src/node/control-protocol.ts).
 */

const ANSWER_SCHEMAS: ReadonlyArray<Schema<unknown>> = [putAnswerSchema, getAnswerSchema, hasAnswerSchema, deleteAnswerSchema];

/** The answer schema a caller would use: the one the value looks like, else one picked by its shape. */
function answerSchemaFor(value: unknown): Schema<unknown> {
  if (typeof value === 'object' && value !== null) {
    if ('stored' in value) return putAnswerSchema;
    if ('size' in value) return getAnswerSchema;
    if ('present' in value) return hasAnswerSchema;
    if ('deleted' in value) return deleteAnswerSchema;
  }
  const shape = typeof value === 'object' && value !== null ? Object.keys(value).length : (typeof value).length;
  return ANSWER_SCHEMAS[shape % ANSWER_SCHEMAS.length]!;
}

describe('fuzz: chunk and control protocol decoders', () => {
  fuzzJsonDecoder({
    name: 'chunkRequestSchema',
    decode: (v) => chunkRequestSchema.parse(v),
    valid: chunkRequestArb,
    codes: ['ERR_PROTOCOL'],
    contract: (r) => check(['put', 'get', 'has', 'delete'].includes(r.op), 'a request with an unknown op'),
  });

  fuzzJsonDecoder({
    name: 'chunk parseAnswer',
    decode: (v) => {
      try {
        return parseAnswer(v, answerSchemaFor(v));
      } catch (err) {
        // A refusal naming a failed target must carry it whole.
        if (err instanceof ChunkTargetError) check(typeof err.failedTarget === 'string', 'a ChunkTargetError without its target');
        throw err;
      }
    },
    valid: chunkAnswerArb,
    // A refusal is thrown as the DfsError it carries (any code): a valid one is refused too.
    accepts: (v) => (v as { ok: boolean }).ok,
    contract: (r) => check(typeof r === 'object' && r !== null && (r as { ok?: unknown }).ok === true, 'an answer accepted without ok: true'),
  });

  fuzzJsonDecoder({
    name: 'heartbeatAnswerSchema',
    decode: (v) => heartbeatAnswerSchema.parse(v),
    valid: heartbeatAnswerArb,
    codes: ['ERR_PROTOCOL'],
    contract: (r) => check(typeof r.registered === 'boolean' && Number.isSafeInteger(r.fence), 'a heartbeat answer without registered or fence'),
  });
});

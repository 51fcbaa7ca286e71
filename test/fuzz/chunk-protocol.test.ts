import fc from 'fast-check';
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys';
import { describe } from 'vitest';
import { newTicketClaims, signTicket, TICKET_OPS, TicketVerifier } from '../../src/auth/tickets.ts';
import { DfsError } from '../../src/errors/index.ts';
import { ChunkTargetError, chunkRequestSchema, deleteAnswerSchema, getAnswerSchema, hasAnswerSchema, parseAnswer, putAnswerSchema } from '../../src/protocol/chunk-protocol.ts';
import { decodeClusterKey } from '../../src/node/cluster-key.ts';
import { heartbeatAnswerSchema, registerAnswerSchema } from '../../src/node/control-protocol.ts';
import type { Schema } from '../../src/net/index.ts';
import { chunkAnswerArb, chunkIdArb, chunkRequestArb, fenceArb, heartbeatAnswerArb } from './arbitraries.ts';
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

/** Genuine tickets (signed by the cluster key) for a few requests, and the key's text as masters send it. */
const clusterPrivateKey = await generateKeyPair('Ed25519');
const clusterKeyText = Buffer.from(publicKeyToProtobuf(clusterPrivateKey.publicKey)).toString('base64');
const BEARER = '12D3KooWANvRsEwvNz9giivGNdRd1CN2AWLCfQsLzumkAJjCNMRi';
const NOW = 1_000_000;
const ID = 'a'.repeat(64);
const genuine = await Promise.all(
  TICKET_OPS.map((op, i) => signTicket(clusterPrivateKey, newTicketClaims({ op, ids: [ID, '1'.repeat(64)], bearer: BEARER, now: NOW, ...(i % 2 === 0 ? { fence: 7 } : {}) }))),
);
const genuineSet = new Set(genuine);
const ticketArb = fc.oneof(fc.constantFrom(...genuine), fc.string({ maxLength: 200 }), fc.base64String({ maxLength: 200 }));

/** Requests as clients and nodes send them now: put, get and delete with a ticket. */
const ticketedRequestArb = fc.tuple(chunkRequestArb, ticketArb).map(([r, ticket]) => (r.op === 'has' ? r : { ...r, ticket }));

/** Heartbeat answers from a leader that hands out the cluster key and replicate tickets. */
const keyedHeartbeatAnswerArb = fc
  .tuple(heartbeatAnswerArb, fc.array(fc.record({ id: chunkIdArb, to: fc.constant(BEARER), toAddr: fc.constant(`/ip4/10.0.0.2/tcp/1/p2p/${BEARER}`), fence: fenceArb, ticket: ticketArb }), { maxLength: 3 }))
  .map(([a, replicate]) => ({ ...a, replicate, clusterKey: clusterKeyText }));

/**
 * What a node does with a request's ticket (ChunkService via TicketVerifier): for every op the
 * verdict for the node's checks (bearer, chunk, fence, clock), or the refusal as a DfsError.
 */
const verifier = new TicketVerifier({ publicKey: clusterPrivateKey.publicKey });
function admit(ticket: unknown): string {
  for (const op of TICKET_OPS) {
    const result = verifier.verify(ticket, { now: NOW, op, chunkId: ID, bearerPeerId: BEARER, fence: 7 });
    if (result.ok) return ticket as string;
  }
  const last = verifier.verify(ticket, { now: NOW, op: [...TICKET_OPS], chunkId: ID, bearerPeerId: BEARER });
  throw new DfsError(last.ok ? 'ERR_FORBIDDEN' : last.code, last.ok ? 'fence' : last.message);
}

describe('fuzz: chunk and control protocol decoders', () => {
  fuzzJsonDecoder({
    name: 'chunkRequestSchema (with tickets)',
    decode: (v) => chunkRequestSchema.parse(v),
    valid: ticketedRequestArb,
    codes: ['ERR_PROTOCOL'],
    contract: (r) => check(!('ticket' in r) || r.ticket === undefined || (typeof r.ticket === 'string' && r.ticket.length <= 32 * 1024), 'a ticket that is not a bounded string'),
  });

  fuzzJsonDecoder({
    name: 'node ticket check',
    decode: admit,
    valid: fc.constantFrom(...genuine),
    codes: ['ERR_FORBIDDEN', 'ERR_TOKEN_EXPIRED'],
    // Unforgeable: whatever the mutation, only a genuine ticket's exact text is ever accepted.
    contract: (t) => check(genuineSet.has(t), 'a ticket accepted that the cluster key never signed'),
  });

  fuzzJsonDecoder({
    name: 'heartbeatAnswerSchema (cluster key, replicate tickets)',
    decode: (v) => {
      const answer = heartbeatAnswerSchema.parse(v);
      if (answer.clusterKey !== undefined) decodeClusterKey(answer.clusterKey);
      return answer;
    },
    valid: keyedHeartbeatAnswerArb,
    codes: ['ERR_PROTOCOL'],
    contract: (r) => check(r.clusterKey === undefined || r.clusterKey.length <= 256, 'an unbounded cluster key'),
  });

  fuzzJsonDecoder({
    name: 'registerAnswerSchema + decodeClusterKey',
    decode: (v) => {
      const answer = registerAnswerSchema.parse(v);
      return answer.clusterKey === undefined ? answer : { clusterKey: decodeClusterKey(answer.clusterKey).type };
    },
    valid: fc.constantFrom({ clusterKey: clusterKeyText }, {}),
    intactEqual: false,
    idempotent: false,
    codes: ['ERR_PROTOCOL'],
    contract: (r) => check(r.clusterKey === undefined || r.clusterKey === 'Ed25519', 'a cluster key that is not Ed25519'),
  });

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

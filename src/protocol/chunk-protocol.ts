import { CHUNKER_LIMITS } from '../chunker/index.ts';
import { MAX_TICKET_CHARS } from '../auth/tickets.ts';
import { DfsError, ERROR_CODES } from '../errors/index.ts';
import type { ErrorCode } from '../errors/index.ts';
import { schema } from '../net/index.ts';
import type { Infer, Schema } from '../net/index.ts';

/**
 * `/dfs/chunk/1.0.0`: moving chunk bytes between clients and storage nodes, one stream per
 * operation. Every message is a 4-byte length-prefixed frame (FrameWriter/FrameReader); the first
 * frame each way is a JSON header validated by a schema below, chunk bytes follow as raw frames.
 *
 * put     → `{op:'put', id, size, fence, pipeline, ticket}`, `size` bytes in payload frames (1 byte..1 MiB
 *           each), then the end of the payload: the sender closes its write side, or sends an
 *           empty frame and keeps the stream for further puts (each a header, payload, empty
 *           frame, after the previous answer). A node stores nothing before that end.
 *           `fence` (issued by the leader with the placement) is forwarded unchanged down the
 *           pipeline; each node records it, also when it already had the chunk.
 *           `pipeline`: the PEER IDS of the nodes after this one, in order (never addresses: a
 *           node dials only storage nodes it knows, at the addresses the masters' node list
 *           gives; a next id it does not know is a failed target, ERR_PIPELINE with failedCode
 *           ERR_FORBIDDEN and failedTarget `/p2p/<id>`, and nothing is dialled). A pipeline
 *           naming a node twice, or the receiving node itself, is refused (ERR_PROTOCOL).
 *           ← `{ok:true, stored:[peer ids], receipts:[{node, sig}]}` once every node of the
 *           pipeline has the chunk durably: `stored` is this node and the pipeline, in order;
 *           `receipts` one per stored node (this node's first, then its downstream's as they
 *           came), each the node's own signature over (chunk id, fence) (src/net/receipt.ts).
 *           A forwarding node checks only the shape of its downstream's answer (a receipt from
 *           each later node; a missing one makes the downstream a failed target, failedCode
 *           ERR_PROTOCOL); the client, and the leader before a copy counts, check every signature.
 * get     → `{op:'get', id, offset?, length?, ticket}` ← `{ok:true, size}` then `size` bytes in payload frames.
 *           A get stream may carry further gets: once it has read an answer whole, the client
 *           may send the next get header on the same stream (saving a stream's setup per
 *           chunk); it closes its write side when done. The node answers them in order, ends
 *           the stream after a refusal, and resets it if the client stays silent for the
 *           transfer timeout (a client then opens a new stream).
 * has     → `{op:'has', ids}` ← `{ok:true, present:[booleans, same order]}`.
 * delete  → `{op:'delete', ids, fence, ticket}` ← `{ok:true, deleted: how many were removed, kept:[ids]}`.
 *           `kept`: stored ids the node refused to remove because of the fence: it accepted a
 *           put of them with a larger fence (the chunk may belong to a commit the GC decided
 *           without), or it cannot tell (the fence is not above its floor: after a restart until
 *           it learnt the leader's fence, or for puts it has forgotten). Ids it does not store are
 *           in neither. Refusing is always safe: the GC asks again later with a newer fence.
 *
 * Tickets (src/auth/tickets.ts): put, get and delete carry `ticket`, a master's signed permission
 * (at most MAX_TICKET_CHARS), checked by the node on every request with the cluster's public key
 * alone (learnt from its masters' heartbeat and registration answers), never by asking a master:
 * the signature, the expiry (node clock), the operation, the chunk id among the ticket's ids, the
 * bearer equal to the Noise-authenticated remote peer, and for put and delete the request's fence
 * equal to the ticket's. `has` needs none (it reveals only which ids are stored).
 *   put     op 'put' (a client's first hop) or 'replicate' (a copy the leader ordered; the bearer
 *           is the node sending it). A put FORWARDED down a pipeline carries the original ticket
 *           unchanged: its bearer is the client (or the replicating node), not the forwarding
 *           node, which the receiving node accepts only from a storage node it knows from the
 *           masters' node list (that node checked the bearer and vouches for it); every other
 *           check still applies.
 *   get     op 'get', the bearer the reader. On a get stream carrying several gets each has its own.
 *   delete  op 'delete', every id among the ticket's, the bearer the leader; and, as before, only
 *           from a master.
 * Refusals: ERR_UNAUTHENTICATED (no ticket, malformed, not signed by the cluster key),
 * ERR_TOKEN_EXPIRED (expired: ask the masters for a new one), ERR_FORBIDDEN (another operation,
 * chunk, bearer or fence), ERR_UNAVAILABLE (the node has not heard the cluster key yet).
 *
 * Fences: numbers the Raft leader issues from one monotonic counter (term * 2^32 + a per-term
 * counter, so a later leader's are larger); a safe integer >= 0 on the wire. They order a
 * delete decision against the puts that raced it (see src/storage/delete-fences.ts).
 * Any refusal ← `{ok:false, code, message, failedTarget?, failedCode?}` (an ErrorCode; for
 * ERR_PIPELINE, failedTarget is the multiaddr of the target that failed, or `/p2p/<peer id>` when
 * the node had no address for it, and failedCode what it said).
 */
export const CHUNK_PROTOCOL = '/dfs/chunk/1.0.0';

const MiB = 1024 * 1024;

/** Largest frame either way: payload frames are at most 1 MiB, and so is a header. */
export const CHUNK_FRAME_MAX_BYTES = MiB;
/** Targets a put may carry after the node it is sent to. */
export const PIPELINE_MAX_TARGETS = 8;
/** Ids in one has or delete request. */
export const BATCH_MAX_IDS = 4096;
/** The hard cap on one chunk (the chunker's ceiling); a node may set a lower one. */
export const CHUNK_MAX_BYTES = CHUNKER_LIMITS.maxSizeCeiling;
export const DEFAULT_MAX_INFLIGHT_BYTES = 256 * MiB;
/** Bound on each read and write of a transfer (an idle timeout, not a bound on the whole). */
export const DEFAULT_TRANSFER_TIMEOUT_MS = 30_000;
/** A transfer's whole payload, in transfer timeouts: bounds how long one chunk holds its reservation. */
export const TRANSFER_DEADLINE_FACTOR = 4;
/** Share of a node's in-flight budget one remote peer may hold (see ChunkServiceOptions). */
export const DEFAULT_PEER_INFLIGHT_SHARE = 1 / 4;
/** Concurrent chunk streams one connection may open to a node. */
export const DEFAULT_MAX_INBOUND_STREAMS = 64;
export const MULTIADDR_MAX_CHARS = 1024;

const chunkIdSchema = schema.string({ pattern: /^[0-9a-f]{64}$/ });
/** Longest peer id accepted (an Ed25519 one has 52 characters, an RSA one 46). */
export const PEER_ID_MAX_CHARS = 128;
/** A libp2p peer id in base58btc (what PeerId.toString() gives). */
export const PEER_ID_PATTERN = /^[1-9A-HJ-NP-Za-km-z]+$/;
export const peerIdSchema = schema.string({ minLength: 1, maxLength: PEER_ID_MAX_CHARS, pattern: PEER_ID_PATTERN });
/** A receipt (src/net/receipt.ts): the node's peer id and its Ed25519 signature, base64 (88 chars). */
export const receiptSchema = schema.object({
  node: peerIdSchema,
  sig: schema.string({ maxLength: 128, pattern: /^[A-Za-z0-9+/]+={0,2}$/ }),
});
const idsSchema = schema.array(chunkIdSchema, { maxLength: BATCH_MAX_IDS });
/** A fence (see above): JSON numbers beyond 2^53 lose precision, so the schema refuses them. */
const fenceSchema = schema.integer({ min: 0 });
/**
 * A chunk ticket (see above). Optional on the wire only so that a request without one is answered
 * ERR_UNAUTHENTICATED saying what is missing, not ERR_PROTOCOL; the node refuses it all the same.
 */
const ticketSchema = schema.optional(schema.string({ maxLength: MAX_TICKET_CHARS }));

export const chunkRequestSchema = schema.taggedUnion('op', {
  put: schema.object({
    id: chunkIdSchema,
    size: schema.integer({ min: 0 }),
    fence: fenceSchema,
    /** Peer ids of the nodes after the receiving one (never addresses). */
    pipeline: schema.array(peerIdSchema, { maxLength: PIPELINE_MAX_TARGETS }),
    ticket: ticketSchema,
  }),
  get: schema.object({
    id: chunkIdSchema,
    offset: schema.optional(schema.integer({ min: 0 })),
    length: schema.optional(schema.integer({ min: 0 })),
    ticket: ticketSchema,
  }),
  has: schema.object({ ids: idsSchema }),
  delete: schema.object({ ids: idsSchema, fence: fenceSchema, ticket: ticketSchema }),
});
export type ChunkRequest = Infer<typeof chunkRequestSchema>;
export type PutRequest = Extract<ChunkRequest, { op: 'put' }>;
export type GetRequest = Extract<ChunkRequest, { op: 'get' }>;

export const putAnswerSchema = schema.object({
  ok: schema.literal(true),
  stored: schema.array(peerIdSchema, { maxLength: PIPELINE_MAX_TARGETS + 1 }),
  receipts: schema.array(receiptSchema, { maxLength: PIPELINE_MAX_TARGETS + 1 }),
});
export const getAnswerSchema = schema.object({ ok: schema.literal(true), size: schema.integer({ min: 0, max: CHUNK_MAX_BYTES }) });
export const hasAnswerSchema = schema.object({ ok: schema.literal(true), present: schema.array(schema.boolean(), { maxLength: BATCH_MAX_IDS }) });
export const deleteAnswerSchema = schema.object({
  ok: schema.literal(true),
  deleted: schema.integer({ min: 0, max: BATCH_MAX_IDS }),
  kept: idsSchema,
});
export type DeleteAnswer = Infer<typeof deleteAnswerSchema>;
export type PutAnswer = Infer<typeof putAnswerSchema>;

const refusalSchema = schema.object({
  ok: schema.literal(false),
  code: schema.string({ maxLength: 64 }),
  message: schema.string({ maxLength: 8192 }),
  failedTarget: schema.optional(schema.string({ maxLength: MULTIADDR_MAX_CHARS })),
  failedCode: schema.optional(schema.string({ maxLength: 64 })),
});

export interface Refusal {
  readonly ok: false;
  readonly code: ErrorCode;
  readonly message: string;
  readonly failedTarget?: string;
  readonly failedCode?: ErrorCode;
}

/**
 * A put that failed at a known target. For ERR_PIPELINE, `failedTarget` is the multiaddr of the
 * later pipeline node that failed (the nodes before it kept their copies) and `failedCode` what
 * that node reported; for other codes, it is the node the put was sent to.
 */
export class ChunkTargetError extends DfsError {
  readonly failedTarget: string;
  readonly failedCode: ErrorCode | undefined;

  constructor(code: ErrorCode, message: string, failedTarget: string, options: { failedCode?: ErrorCode | undefined; cause?: unknown } = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ChunkTargetError';
    this.failedTarget = failedTarget;
    this.failedCode = options.failedCode;
  }
}

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** The refusal header for `err` (a DfsError keeps its code; anything else is ERR_INTERNAL). */
export function refusalOf(err: unknown): Refusal {
  if (err instanceof ChunkTargetError) {
    return {
      ok: false,
      code: err.code,
      message: err.message.slice(0, 4096),
      failedTarget: err.failedTarget,
      ...(err.failedCode === undefined ? {} : { failedCode: err.failedCode }),
    };
  }
  if (err instanceof DfsError) return { ok: false, code: err.code, message: err.message.slice(0, 4096) };
  return { ok: false, code: 'ERR_INTERNAL', message: (err instanceof Error ? err.message : String(err)).slice(0, 4096) };
}

/**
 * Parses an answer header: returns it validated by `okSchema`, or throws the refusal it carries
 * as a DfsError (a ChunkTargetError when it names a failed target; a code this build does not
 * know becomes ERR_PROTOCOL).
 */
export function parseAnswer<T>(header: unknown, okSchema: Schema<T>): T {
  if (typeof header === 'object' && header !== null && (header as { ok?: unknown }).ok === false) {
    const refusal = refusalSchema.parse(header);
    if (!isErrorCode(refusal.code)) throw new DfsError('ERR_PROTOCOL', `peer answered with unknown error ${refusal.code}: ${refusal.message}`);
    if (refusal.failedTarget !== undefined) {
      const failedCode = refusal.failedCode !== undefined && isErrorCode(refusal.failedCode) ? refusal.failedCode : undefined;
      throw new ChunkTargetError(refusal.code, refusal.message, refusal.failedTarget, { failedCode });
    }
    throw new DfsError(refusal.code, refusal.message);
  }
  return okSchema.parse(header);
}

const textEncoder = new TextEncoder();

export function encodeHeader(header: object): Uint8Array {
  return textEncoder.encode(JSON.stringify(header));
}


/** `pieces` cut into payload frames of at most CHUNK_FRAME_MAX_BYTES (views, no copy; no empty frame). */
export function* payloadFrames(pieces: readonly Uint8Array[]): Generator<Uint8Array> {
  for (const piece of pieces) {
    for (let at = 0; at < piece.byteLength; at += CHUNK_FRAME_MAX_BYTES) {
      yield piece.subarray(at, Math.min(piece.byteLength, at + CHUNK_FRAME_MAX_BYTES));
    }
  }
}



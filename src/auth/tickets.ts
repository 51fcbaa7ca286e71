import type { PrivateKey, PublicKey } from '@libp2p/interface';
import { DfsError } from '../errors/index.ts';
import { schema } from '../net/schema.ts';
import type { Infer } from '../net/schema.ts';
import { authError } from './errors.ts';
import { peerIdSchema, userNameSchema } from './identity.ts';
import { openEnvelope, signEnvelope } from './signing.ts';

/**
 * Chunk tickets: a master's signed permission for one peer to do one operation on a few chunks,
 * for a short time. A storage node checks a ticket on every chunk request with the cluster's
 * public key alone: it never asks a master (HDFS block tokens, SeaweedFS JWTs).
 *
 * Encoding (see signing.ts): `base64url(JSON claims) + '.' + base64url(signature)`, signed over
 * `dfs/ticket/v1.<base64url claims>` with the cluster key (the same key as login tokens; the
 * context keeps the two apart). Claims:
 *
 *   op      'put' | 'get' | 'replicate' | 'delete'; a ticket is good for exactly that operation.
 *           put: store these chunks (a client's first hop, with the placement's fence); get: read
 *           them; replicate: a node-to-node copy the leader ordered (the bearer is the node that
 *           sends the copy request); delete: remove them (the GC, with the delete's fence).
 *   ids     the chunk ids, sorted, no duplicates, 1..MAX_TICKET_IDS of them.
 *   bearer  the libp2p peer id allowed to present it. The node compares it with the Noise-
 *           authenticated remote peer of the stream, so a stolen ticket is useless to anyone else.
 *   exp     expiry, ms since the epoch (issue time + DEFAULT_TICKET_TTL_MS, 60 s, by default).
 *   fence   optional: when present, the request's fence must be exactly this.
 *
 * IDS, NOT A COMMITMENT. The ticket lists its ids rather than signing a hash of them: a hash would
 * make the bearer send the whole id list (or a Merkle path) with every chunk request anyway, for
 * no saving, and would need a second hash on the node's hot path. The list is bounded instead:
 * MAX_TICKET_IDS (256) ids, ~23 KB of ticket at most; the leader issues one ticket per placement
 * or location batch (a few to a few dozen chunks: ~90 bytes of ticket per id). A node keeps the
 * tickets it has verified in a `TicketVerifier` cache, so a ticket presented again for the next
 * chunk of its batch costs a map lookup, not a signature check.
 *
 * Nodes' clocks: `exp` is compared with the node's clock; masters and nodes are expected within a
 * few seconds of each other (NTP), small next to the 60 s lifetime.
 */
export const TICKET_CONTEXT = 'dfs/ticket/v1';
export const TICKET_OPS = ['put', 'get', 'replicate', 'delete'] as const;
export type TicketOp = (typeof TICKET_OPS)[number];
export const DEFAULT_TICKET_TTL_MS = 60_000;
/** Longest lifetime newTicketClaims gives a ticket. */
export const MAX_TICKET_TTL_MS = 10 * 60_000;
export const MAX_TICKET_IDS = 256;
/** Longest ticket text accepted: room for MAX_TICKET_IDS ids; anything longer is refused unread. */
export const MAX_TICKET_CHARS = 32 * 1024;

/** A chunk id as src/chunker/chunk-id.ts defines it (BLAKE3-256, 64 lowercase hex). */
const CHUNK_ID_PATTERN = /^[0-9a-f]{64}$/;

export const ticketClaimsSchema = schema.object({
  op: schema.oneOf(TICKET_OPS),
  ids: schema.array(schema.string({ pattern: CHUNK_ID_PATTERN }), { minLength: 1, maxLength: MAX_TICKET_IDS }),
  bearer: peerIdSchema,
  exp: schema.integer({ min: 0 }),
  fence: schema.optional(schema.integer({ min: 0 })),
  /**
   * The user the leader issued it for (a login's), if any: a node shares its in-flight budget
   * per user rather than per peer, so one user's many peer ids hold one user's share.
   */
  user: schema.optional(userNameSchema),
});
export type TicketClaims = Infer<typeof ticketClaimsSchema>;

export interface NewTicketClaims {
  readonly op: TicketOp;
  readonly ids: readonly string[];
  readonly bearer: string;
  /** Clock.now() of the signing master. */
  readonly now: number;
  readonly ttlMs?: number;
  readonly fence?: number;
  /** The user it is issued for (see the claim). */
  readonly user?: string;
}

/** The claims of a ticket issued now; ids sorted and de-duplicated. */
export function newTicketClaims({ op, ids, bearer, now, ttlMs = DEFAULT_TICKET_TTL_MS, fence, user }: NewTicketClaims): TicketClaims {
  if (!(Number.isSafeInteger(ttlMs) && ttlMs > 0 && ttlMs <= MAX_TICKET_TTL_MS)) throw new DfsError('ERR_INVALID_ARGUMENT', `a ticket's ttlMs must be an integer in [1, ${MAX_TICKET_TTL_MS}], got ${String(ttlMs)}`);
  const claims: TicketClaims = { op, ids: [...new Set(ids)].sort(), bearer, exp: now + ttlMs, ...(fence === undefined ? {} : { fence }), ...(user === undefined ? {} : { user }) };
  return claims;
}

/**
 * Signs a chunk ticket (ids are sorted and de-duplicated here). Throws ERR_INVALID_ARGUMENT for
 * claims a node would refuse to read (more than MAX_TICKET_IDS ids: split the batch).
 */
export async function signTicket(privateKey: PrivateKey, claims: TicketClaims): Promise<string> {
  let checked: TicketClaims;
  try {
    checked = ticketClaimsSchema.parse({ ...claims, ids: [...new Set(claims.ids)].sort() });
  } catch (err) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `ticket claims: ${(err as Error).message}`);
  }
  return signEnvelope(privateKey, TICKET_CONTEXT, checked);
}

/** What the node knows about the request a ticket came with. */
export interface TicketRequest {
  /** Clock.now() of the node. */
  readonly now: number;
  /** The operation, or the operations of which the ticket may be for any (a put takes 'put' or 'replicate'). */
  readonly op: TicketOp | readonly TicketOp[];
  readonly chunkId: string;
  /** The Noise-authenticated peer id of the stream the request came on. */
  readonly bearerPeerId: string;
  /**
   * The remote (`bearerPeerId`) is a storage node forwarding the request down a pipeline: it
   * checked the bearer itself and vouches for it, so the ticket's bearer is not compared here
   * (everything else is). Only for a remote the caller knows to be a storage node.
   */
  readonly bearerVouched?: boolean;
  /** The request's fence, for operations that carry one (put, delete). */
  readonly fence?: number;
}

export interface VerifyTicketOptions extends TicketRequest {
  /** The cluster's public key. */
  readonly publicKey: PublicKey;
}

export type TicketRefusalReason = 'missing' | 'malformed' | 'signature' | 'expired' | 'wrong-op' | 'wrong-bearer' | 'wrong-chunk' | 'wrong-fence';

export type TicketResult =
  | { readonly ok: true; readonly claims: TicketClaims }
  | { readonly ok: false; readonly code: 'ERR_FORBIDDEN' | 'ERR_TOKEN_EXPIRED'; readonly reason: TicketRefusalReason; readonly message: string };

function refuse(reason: TicketRefusalReason, message: string): TicketResult {
  return { ok: false, code: reason === 'expired' ? 'ERR_TOKEN_EXPIRED' : 'ERR_FORBIDDEN', reason, message };
}

/** The signature-checked, schema-checked claims of a ticket, or why not. */
function openTicket(ticket: string, publicKey: PublicKey): TicketClaims | TicketResult {
  const opened = openEnvelope(ticket, publicKey, TICKET_CONTEXT, MAX_TICKET_CHARS);
  if (!opened.ok) {
    return opened.why === 'malformed'
      ? refuse('malformed', 'the chunk ticket is malformed; ask the masters for a new one')
      : refuse('signature', "the chunk ticket is not signed by this cluster's key (altered, or from another cluster)");
  }
  try {
    return ticketClaimsSchema.parse(opened.claims);
  } catch (err) {
    return refuse('malformed', `the chunk ticket's claims are malformed (${(err as Error).message})`);
  }
}

function hasId(sortedIds: readonly string[], id: string): boolean {
  let lo = 0;
  let hi = sortedIds.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = sortedIds[mid];
    if (v === undefined) return false;
    if (v === id) return true;
    if (v < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

function opMatches(op: TicketOp, wanted: TicketOp | readonly TicketOp[]): boolean {
  return typeof wanted === 'string' ? op === wanted : wanted.includes(op);
}

function opText(op: TicketOp | readonly TicketOp[]): string {
  return typeof op === 'string' ? op : op.join(' or ');
}

/** The request-specific checks, on claims whose signature is already good. */
function checkClaims(claims: TicketClaims, req: TicketRequest): TicketResult {
  if (req.now >= claims.exp) return refuse('expired', `the chunk ticket expired at ${new Date(claims.exp).toISOString()}; ask the masters for a new one`);
  if (!opMatches(claims.op, req.op)) return refuse('wrong-op', `the chunk ticket is for ${claims.op}, not ${opText(req.op)}`);
  if (req.bearerVouched !== true && claims.bearer !== req.bearerPeerId) return refuse('wrong-bearer', `the chunk ticket was issued to peer ${claims.bearer}, not to ${req.bearerPeerId}`);
  if (!hasId(claims.ids, req.chunkId)) return refuse('wrong-chunk', `the chunk ticket does not cover chunk ${req.chunkId}`);
  if (claims.fence !== undefined && claims.fence !== req.fence) {
    return refuse('wrong-fence', `the chunk ticket is for fence ${claims.fence}, the request has ${req.fence === undefined ? 'none' : String(req.fence)}`);
  }
  return { ok: true, claims };
}

/**
 * Checks a ticket for one chunk request, statelessly. Never throws. On a node, prefer a
 * TicketVerifier, which skips the signature check for a ticket it has already verified.
 */
export function verifyTicket(ticket: unknown, options: VerifyTicketOptions): TicketResult {
  if (ticket === undefined || ticket === null || ticket === '') return refuse('missing', `no chunk ticket with the ${opText(options.op)} of chunk ${options.chunkId}; the masters hand one out with each placement or location answer`);
  if (typeof ticket !== 'string') return refuse('malformed', 'the chunk ticket is not a string');
  const claims = openTicket(ticket, options.publicKey);
  return 'ok' in claims ? claims : checkClaims(claims, options);
}

export interface TicketVerifierOptions {
  readonly publicKey: PublicKey;
  /** Verified tickets kept (least recently verified dropped first). Default 1024 (~a few MB at most). */
  readonly cacheSize?: number;
}

/**
 * A node's ticket checker: verifyTicket plus a bounded cache of tickets whose signature and claims
 * were good, keyed by the ticket text. A cached ticket still goes through every request check
 * (expiry, op, bearer, chunk, fence). Refused tickets are not cached (a flood of bad ones cannot
 * push good ones out). Replace the verifier when the cluster key changes.
 */
export class TicketVerifier {
  readonly publicKey: PublicKey;
  readonly #cacheSize: number;
  readonly #cache = new Map<string, TicketClaims>();

  constructor(options: TicketVerifierOptions) {
    this.publicKey = options.publicKey;
    this.#cacheSize = options.cacheSize ?? 1024;
    if (!(Number.isSafeInteger(this.#cacheSize) && this.#cacheSize >= 0)) throw new DfsError('ERR_INVALID_ARGUMENT', `cacheSize must be an integer >= 0, got ${String(options.cacheSize)}`);
  }

  verify(ticket: unknown, request: TicketRequest): TicketResult {
    if (ticket === undefined || ticket === null || ticket === '') return verifyTicket(ticket, { ...request, publicKey: this.publicKey });
    if (typeof ticket !== 'string') return refuse('malformed', 'the chunk ticket is not a string');
    let claims = this.#cache.get(ticket);
    if (claims === undefined) {
      const opened = openTicket(ticket, this.publicKey);
      if ('ok' in opened) return opened;
      claims = opened;
      if (this.#cacheSize > 0 && request.now < claims.exp) {
        if (this.#cache.size >= this.#cacheSize) this.#evict(request.now);
        this.#cache.set(ticket, claims);
      }
    }
    const result = checkClaims(claims, request);
    if (!result.ok && result.reason === 'expired') this.#cache.delete(ticket);
    return result;
  }

  /** How many verified tickets are cached. */
  get size(): number {
    return this.#cache.size;
  }

  #evict(now: number): void {
    for (const [t, c] of this.#cache) if (now >= c.exp) this.#cache.delete(t);
    while (this.#cache.size >= this.#cacheSize) {
      const oldest = this.#cache.keys().next();
      if (oldest.done === true) break;
      this.#cache.delete(oldest.value);
    }
  }
}

/** The error to throw for a refused ticket. */
export function ticketError(result: Extract<TicketResult, { ok: false }>): DfsError {
  return authError(result.code, result.message);
}

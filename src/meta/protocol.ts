import { LEVELS, MAX_PASSWORD_BYTES, MAX_TICKET_CHARS, MAX_TOKEN_CHARS, MAX_TOKEN_TTL_MS, PRINCIPAL_PATTERN, rolesSchema, userNameSchema } from '../auth/index.ts';
import type { Level, Role } from '../auth/index.ts';
import { DfsError } from '../errors/index.ts';
import { type Infer, type Schema, schema } from '../net/index.ts';
import { NODE_STATES } from './commands.ts';

/** Chunks one `place` request may name (and its answer hold). */
export const MAX_PLACE_CHUNKS = 1024;

/**
 * The metadata protocol `/dfs/meta/1.0.0`: one request, one response per stream (net/rpc).
 * Writes go to the leader and carry (clientId, seq) so a retry applies once; reads are
 * linearizable through ReadIndex unless `stale`. A refusal is a normal response
 * `{ ok: false, code, message, leaderHint? }`, so a follower can point at the leader.
 */
export const META_PROTOCOL = '/dfs/meta/1.0.0';

/**
 * Largest frame either way: a commit of the largest manifest (65,536 chunks, ~5 MB of JSON) and
 * up to STORED_ACKS_PER_REQUEST receipts fit; the rest of an upload's receipts go ahead in
 * `proveStored` requests.
 */
export const META_MAX_FRAME_BYTES = 8 * 1024 * 1024;
/** Chunk receipts one request may carry (each ack: up to RF receipts of ~150 bytes). */
export const STORED_ACKS_PER_REQUEST = 1024;

const path = schema.string({ minLength: 1, maxLength: 8192 });
const clientId = schema.string({ minLength: 1, maxLength: 128 });
/** A password in a request (UTF-16 units; hashPassword bounds its UTF-8 bytes again). */
const password = schema.string({ minLength: 1, maxLength: MAX_PASSWORD_BYTES });
const principal = schema.string({ pattern: PRINCIPAL_PATTERN });
const level = schema.oneOf(LEVELS);
const byteCountField = schema.integer({ min: 0 });

/** What a client may ask to write; the leader stamps owner and time before proposing. */
export const writeCommandSchema = schema.taggedUnion('op', {
  mkdir: schema.object({ path, parents: schema.boolean() }),
  rm: schema.object({ path, recursive: schema.boolean() }),
  mv: schema.object({ from: path, to: path }),
  commitFile: schema.object({ path, manifest: schema.unknown(), parents: schema.boolean(), ifAbsent: schema.boolean() }),
  registerNode: schema.object({ nodeId: clientId, name: schema.optional(schema.string({ minLength: 1, maxLength: 64 })), addrs: schema.array(schema.string({ maxLength: 1024 }), { maxLength: 32 }), capacityBytes: schema.integer({ min: 0 }) }),
  setNodeState: schema.object({ nodeId: clientId, state: schema.oneOf(NODE_STATES as unknown as ['pending', 'alive', 'suspect', 'dead', 'draining']) }),
  /** A pending node may get data (`dfs node admit`). */
  admitNode: schema.object({ nodeId: clientId }),
  /** Moves every copy off a node (`dfs node drain`); it may be removed once drained. */
  drainNode: schema.object({ nodeId: clientId }),
  /** Forgets a node (`dfs node rm`): refused while it holds copies others lack, unless `force`. */
  removeNode: schema.object({ nodeId: clientId, force: schema.boolean() }),
  // Users, grants and quotas. Passwords travel in clear only inside the Noise channel; the leader
  // hashes them before anything reaches the Raft log.
  addUser: schema.object({ name: userNameSchema, password, roles: rolesSchema }),
  removeUser: schema.object({ name: userNameSchema }),
  /** Admins set anyone's password; a user changes their own with `oldPassword`. */
  setPassword: schema.object({ name: userNameSchema, password, oldPassword: schema.optional(password) }),
  setUserDisabled: schema.object({ name: userNameSchema, disabled: schema.boolean() }),
  setUserRoles: schema.object({ name: userNameSchema, roles: rolesSchema }),
  /** Bumps the user's token generation: every token issued before stops working. */
  revokeTokens: schema.object({ name: userNameSchema }),
  grant: schema.object({ path, principal, level }),
  /** Without `level`: whatever level the principal has there. */
  revoke: schema.object({ path, principal, level: schema.optional(level) }),
  setQuota: schema.object({ user: userNameSchema, maxBytes: schema.optional(byteCountField), maxFiles: schema.optional(byteCountField) }),
});
export type WriteCommand = Infer<typeof writeCommandSchema>;

/** Bound on chunk ids in one message (heartbeat delta, report page, has/locate batch). */
export const MAX_CHUNK_IDS_PER_MESSAGE = 4096;

const chunkId = schema.string({ pattern: /^[0-9a-f]{64}$/ });
const chunkIds = schema.array(chunkId, { maxLength: MAX_CHUNK_IDS_PER_MESSAGE });
const nodeId = schema.string({ minLength: 1, maxLength: 128 });
/** A pipeline ack: these nodes fsynced this chunk. */
/**
 * Proof that nodes hold a chunk: the receipts they signed for it under the placement's fence
 * (src/net/receipt.ts). A client passes them along; the leader checks each signature.
 */
const storedAck = schema.object({
  id: chunkId,
  fence: schema.integer({ min: 0 }),
  receipts: schema.array(schema.object({ node: nodeId, sig: schema.string({ maxLength: 128 }) }), { maxLength: 16 }),
});
export type StoredAck = Infer<typeof storedAck>;
const byteCount = schema.integer({ min: 0 });

const requestBodySchema = schema.taggedUnion('type', {
  status: schema.object({ withHash: schema.optional(schema.boolean()) }),
  write: schema.object({
    clientId,
    seq: schema.integer({ min: 1 }),
    cmd: writeCommandSchema,
    /** With commitFile: the last of the upload's receipts (the others went in proveStored). */
    stored: schema.optional(schema.array(storedAck, { maxLength: STORED_ACKS_PER_REQUEST })),
    /** With commitFile: the upload (see place) whose chunks this commit names. */
    uploadId: schema.optional(schema.string({ minLength: 1, maxLength: 64 })),
  }),
  /** A storage node's heartbeat (leader only): load, and chunks added or removed since the last. */
  heartbeat: schema.object({
    nodeId,
    freeBytes: byteCount,
    capacityBytes: byteCount,
    usedBytes: byteCount,
    chunkCount: byteCount,
    inflight: byteCount,
    added: chunkIds,
    removed: chunkIds,
    /** The version of the node list the node holds; the answer carries the list when it differs. */
    nodesVersion: schema.optional(schema.string({ maxLength: 64 })),
    /** How the copies the leader asked for went since the last heartbeat. */
    replicated: schema.optional(
      schema.array(
        schema.object({ id: chunkId, to: nodeId, ok: schema.boolean(), code: schema.optional(schema.string({ maxLength: 64 })), sig: schema.optional(schema.string({ maxLength: 128 })) }),
        { maxLength: 1024 },
      ),
    ),
  }),
  /** One page of a storage node's full chunk report. */
  report: schema.object({ nodeId, ids: chunkIds, first: schema.boolean(), last: schema.boolean() }),
  /** Where to store chunks (leader only): existing, or targets for a replication pipeline. */
  place: schema.object({
    chunks: schema.array(schema.object({ id: chunkId, size: byteCount }), { maxLength: MAX_PLACE_CHUNKS }),
    exclude: schema.optional(schema.array(nodeId, { maxLength: 64 })),
    /** The put this placement is for: keeps its chunks from GC until it commits or goes quiet. */
    uploadId: schema.optional(schema.string({ minLength: 1, maxLength: 64 })),
    /** The file being written: the leader checks write permission on it and its owner's quota. */
    path: schema.optional(path),
    /** The whole file's size when known: a put over quota fails before any chunk is sent. */
    fileBytes: schema.optional(byteCount),
  }),
  /** Receipts of an upload's chunks, sent as the upload goes (leader only): proof of copies. */
  proveStored: schema.object({ uploadId: schema.optional(schema.string({ minLength: 1, maxLength: 64 })), acks: schema.array(storedAck, { maxLength: STORED_ACKS_PER_REQUEST }) }),
  /** Which nodes hold these chunks (leader only). */
  locate: schema.object({
    ids: chunkIds,
    /** The file the chunks are read for: read permission on it, and every id must be one of its chunks. */
    path: schema.optional(path),
  }),
  /** The storage nodes as the leader sees them: state, load, last heartbeat, copies under way. */
  nodes: schema.object({}),
  /** Moves up to maxChunks copies from the fullest to the emptiest nodes (`dfs rebalance`). */
  rebalance: schema.object({ maxChunks: schema.integer({ min: 1, max: 1_000_000 }) }),
  /** Asks a storage node (with its next heartbeat answer) to re-hash every chunk now. */
  scrubNode: schema.object({ nodeId }),
  /** A client found a replica missing or corrupt. */
  badReplica: schema.object({ id: chunkId, nodeId }),
  stat: schema.object({ path, stale: schema.optional(schema.boolean()) }),
  list: schema.object({
    path,
    after: schema.optional(schema.string({ maxLength: 1024 })),
    limit: schema.optional(schema.integer({ min: 1, max: 10_000 })),
    stale: schema.optional(schema.boolean()),
  }),
  /** Checks a password and answers a login token (leader only; failures are rate-limited). */
  login: schema.object({ user: userNameSchema, password, ttlMs: schema.optional(schema.integer({ min: 1, max: MAX_TOKEN_TTL_MS })) }),
  /** Who the master takes the caller for. */
  whoami: schema.object({}),
  /** Every user (admins only). */
  users: schema.object({}),
  /** The grants on a path and above it, and its owner. */
  acl: schema.object({ path }),
});

/**
 * Every request may carry `token`: a login token (see src/auth/tokens.ts). The caller's identity
 * comes from it (or from its Noise peer id for masters, admin peers and storage nodes), never
 * from a name the client fills in.
 */
export type MetaRequest = Infer<typeof requestBodySchema> & { readonly token?: string };

const tokenField = schema.optional(schema.string({ minLength: 1, maxLength: MAX_TOKEN_CHARS }));

export const metaRequestSchema: Schema<MetaRequest> = {
  expected: requestBodySchema.expected,
  parseAt(input: unknown, at: string): MetaRequest {
    const body = requestBodySchema.parseAt(input, at);
    const token = tokenField.parseAt((input as { token?: unknown }).token, at === '' ? 'token' : `${at}.token`);
    return token === undefined ? body : { ...body, token };
  },
  parse(input: unknown): MetaRequest {
    return this.parseAt(input, '');
  },
};

/**
 * One chunk of a `place` answer: enough live copies exist, or a pipeline to put it through under
 * `fence`, with the chunk ticket (op put, this chunk, bearer the requesting peer, that fence) the
 * first node checks.
 */
export type Placement =
  | { readonly id: string; readonly existing: true; readonly holders: number }
  | { readonly id: string; readonly targets: readonly string[]; readonly fence: number; readonly ticket: string };

const placementWire = schema.object({
  id: chunkId,
  existing: schema.optional(schema.literal(true)),
  holders: schema.optional(schema.integer({ min: 0 })),
  targets: schema.optional(schema.array(schema.string({ maxLength: 1024 }), { maxLength: 16 })),
  fence: schema.optional(schema.integer({ min: 0 })),
  ticket: schema.optional(schema.string({ minLength: 1, maxLength: MAX_TICKET_CHARS })),
});
const placementsWire = schema.array(placementWire, { maxLength: MAX_PLACE_CHUNKS });

/** A `place` answer's value, checked: every entry is one kind or the other, whole. */
export function parsePlacements(value: unknown): Placement[] {
  return placementsWire.parse(value).map((p, i) => {
    if (p.existing === true && p.holders !== undefined) return { id: p.id, existing: true, holders: p.holders };
    if (p.targets !== undefined && p.fence !== undefined && p.ticket !== undefined) return { id: p.id, targets: p.targets, fence: p.fence, ticket: p.ticket };
    throw new DfsError('ERR_PROTOCOL', `placement ${i} is neither "existing" with holders nor targets with a fence and a ticket`);
  });
}

export const metaResponseSchema = schema.object({
  ok: schema.boolean(),
  value: schema.optional(schema.unknown()),
  code: schema.optional(schema.string({ maxLength: 64 })),
  message: schema.optional(schema.string({ maxLength: 8192 })),
  /** On ERR_NOT_LEADER: the leader's peer id and address, when known. */
  leaderHint: schema.optional(schema.nullable(schema.string({ maxLength: 256 }))),
  leaderAddr: schema.optional(schema.nullable(schema.string({ maxLength: 1024 }))),
});
export type MetaResponse = Infer<typeof metaResponseSchema>;

/** A master's view of itself and of Raft, as `dfs status` shows it. */
export interface MasterStatus {
  readonly name: string;
  readonly peerId: string;
  readonly addrs: readonly string[];
  readonly role: string;
  readonly term: number;
  readonly leaderId: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly snapshotIndex: number;
  /** On the leader: how far each follower's log is behind the leader's last index. */
  readonly followerLag?: Readonly<Record<string, number>>;
  readonly counts: { readonly entries: number; readonly files: number; readonly nodes: number };
  readonly uptimeMs: number;
  /** On the leader: storage nodes heard from recently (placement candidates). */
  readonly liveNodes?: number;
  readonly raft: { readonly electionsStarted: number; readonly becameLeader: number; readonly snapshotsSent: number; readonly snapshotsRestored: number };
  /** BLAKE3 of the whole metadata state at appliedIndex, when asked for (withHash). */
  readonly stateHash?: string;
  /** On the leader: replication health of the referenced chunks. */
  readonly chunks?: {
    /** Chunks committed manifests reference. */
    readonly total: number;
    /** Referenced chunks with fewer counted copies than the replication factor (missing ones included). */
    readonly underReplicated: number;
    /** Referenced chunks no node is known to hold. */
    readonly missing: number;
    /** Copies being made now. */
    readonly repairing: number;
    /** Copies this leader made so far, and how many a second over the last minute. */
    readonly repaired: number;
    readonly copiesPerSecond: number;
    /** Whether the leader has heard every live node's full report (before that it decides nothing). */
    readonly ready: boolean;
  };
}

/** One storage node in a `nodes` answer. */
export interface NodeView {
  readonly id: string;
  readonly name: string | null;
  readonly addr: string;
  readonly state: string;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly freeBytes: number;
  readonly chunks: number;
  /** Milliseconds since the leader last heard it (null: not since this leader took over). */
  readonly heartbeatAgeMs: number | null;
  readonly repairsInFlight: number;
}

/** One user as `dfs user list` shows it (never the password hash). */
export interface UserView {
  readonly name: string;
  readonly roles: Role[];
  readonly disabled: boolean;
  readonly usage: { readonly bytes: number; readonly files: number };
  readonly quota?: { readonly maxBytes?: number; readonly maxFiles?: number };
}

/** One grant in an `acl` answer: on the path itself, or `inherited` from a directory above it. */
export interface AclGrant {
  readonly path: string;
  readonly principal: string;
  readonly level: Level;
  readonly inherited: boolean;
}

/** The answer to `acl`: who owns the path, and every grant that applies to it. */
export interface AclView {
  readonly path: string;
  readonly owner: string | null;
  readonly grants: AclGrant[];
}

/** The answer to `login`. */
export interface LoginResult {
  readonly token: string;
  readonly user: string;
  readonly roles: Role[];
  readonly expiresAtMs: number;
}

/** The answer to `whoami`. */
export interface WhoAmI {
  readonly user: string;
  readonly roles: Role[];
  readonly via: 'token' | 'admin-key' | 'master';
  readonly expiresAtMs?: number;
}

/** One location in a `locate` answer: who holds the chunk, and the get ticket to read it with. */
export interface LocatedChunk {
  readonly id: string;
  /** Holders' multiaddrs, best first. */
  readonly holders: readonly string[];
  readonly ticket: string;
}

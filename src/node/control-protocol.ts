import { type Infer, schema } from '../net/index.ts';
import { MAX_TICKET_CHARS } from '../auth/tickets.ts';
import { peerIdSchema } from '../protocol/chunk-protocol.ts';
import { CLUSTER_KEY_MAX_CHARS } from './cluster-key.ts';

/**
 * The control traffic between a storage node and the leader, carried by the metadata protocol's
 * `heartbeat` request and its answer's value (`/dfs/meta/1.0.0`, src/meta/protocol.ts). The
 * request's schema lives with the metadata protocol; the answer's lives here, because the node
 * is the one that must parse it (to move to src/meta/protocol.ts later).
 *
 * Heartbeat request (node → leader), besides load and chunk deltas:
 *   nodesVersion?  the version of the node list this node holds (absent: none yet); the answer
 *                  carries `nodes` only when it differs.
 *   replicated?    results of the copies finished since the last beat that carried results:
 *                  `{id, to, ok, code?}` (`code` an ErrorCode when !ok), at most
 *                  MAX_REPLICATED_PER_BEAT per beat (the rest go with the next).
 *
 * Heartbeat answer value (leader → node):
 *   registered        false: the node must register (again).
 *   fullReportWanted  the node must send a full chunk report.
 *   fence             the leader's next fence (raises the delete floor once per term, LeaderFence).
 *   verify            chunk ids to re-hash here; a bad one is quarantined and reported removed.
 *   replicate         copies to make: chunk `id` from this node to node `to` (a peer id) at
 *                     `toAddr` (a multiaddr ending /p2p/<to>), under `fence`. Refused without a
 *                     dial unless `toAddr` names `to` and `to` is in the node list.
 *   nodes?            the storage nodes (id, addrs) this node may dial: the whole list, sent
 *                     when the node's `nodesVersion` differs from
 *   nodesVersion      the list's version.
 *   scrubNow?         true: re-hash every chunk now (`dfs node scrub <node> --now`).
 *   clusterKey?       the cluster's public key, base64 of publicKeyToProtobuf: what the node
 *                     checks chunk tickets with (registerNode answers carry it too). The node
 *                     keeps the first it learns; a different one later is refused and logged.
 * Each `replicate` command carries `ticket`: the leader's op 'replicate' ticket for the chunk,
 * bearer this node, the command's fence, sent with the put to the target (which refuses the
 * copy without it).
 * `verify`, `replicate` and `nodesVersion` are read as empty / unknown when absent, so a leader
 * that predates them still drives the rest.
 */

/** Bound on `verify` ids in one answer (the leader queues at most this many per node). */
export const MAX_VERIFY_PER_ANSWER = 4096;
/** Bound on `replicate` commands in one answer (the leader queues at most this many per node). */
export const MAX_REPLICATE_PER_ANSWER = 1024;
/** Bound on nodes in the node list. */
export const MAX_NODES_IN_LIST = 16_384;
/** Bound on addresses per node in the list (as registration allows). */
export const MAX_ADDRS_PER_NODE = 32;
/** Bound on results in one heartbeat request's `replicated`. */
export const MAX_REPLICATED_PER_BEAT = 1024;

const chunkIdSchema = schema.string({ pattern: /^[0-9a-f]{64}$/ });
const addrSchema = schema.string({ minLength: 1, maxLength: 1024 });
const clusterKeySchema = schema.string({ minLength: 1, maxLength: CLUSTER_KEY_MAX_CHARS, pattern: /^[A-Za-z0-9+/]+={0,2}$/ });

export const replicateCommandSchema = schema.object({
  id: chunkIdSchema,
  to: peerIdSchema,
  toAddr: addrSchema,
  fence: schema.integer({ min: 0 }),
  /** Optional only for a leader that predates tickets: the copy is then refused by the target. */
  ticket: schema.optional(schema.string({ maxLength: MAX_TICKET_CHARS })),
});
export type ReplicateCommand = Infer<typeof replicateCommandSchema>;

export const nodeListEntrySchema = schema.object({
  id: peerIdSchema,
  addrs: schema.array(addrSchema, { maxLength: MAX_ADDRS_PER_NODE }),
});
export type NodeListEntry = Infer<typeof nodeListEntrySchema>;

export const heartbeatAnswerSchema = schema.object({
  registered: schema.boolean(),
  fullReportWanted: schema.boolean(),
  fence: schema.integer({ min: 0 }),
  verify: schema.optional(schema.array(chunkIdSchema, { maxLength: MAX_VERIFY_PER_ANSWER })),
  replicate: schema.optional(schema.array(replicateCommandSchema, { maxLength: MAX_REPLICATE_PER_ANSWER })),
  nodes: schema.optional(schema.array(nodeListEntrySchema, { maxLength: MAX_NODES_IN_LIST })),
  nodesVersion: schema.optional(schema.string({ maxLength: 128 })),
  scrubNow: schema.optional(schema.boolean()),
  clusterKey: schema.optional(clusterKeySchema),
});

/** What the node reads of its registerNode answer (the rest is the state machine's business). */
export const registerAnswerSchema = schema.object({ clusterKey: schema.optional(clusterKeySchema) });
export type HeartbeatAnswer = Infer<typeof heartbeatAnswerSchema>;

/** The outcome of one `replicate` command, reported with a later heartbeat. */
export interface ReplicateResult {
  readonly id: string;
  readonly to: string;
  readonly ok: boolean;
  /** Why it failed (an ErrorCode), when !ok. */
  readonly code?: string;
  /** When ok: the target's receipt signature for (id, the command's fence): the target's own proof. */
  readonly sig?: string;
}

/** What a node sends with each heartbeat (the metadata protocol adds `type: 'heartbeat'`). */
export interface HeartbeatRequest {
  readonly nodeId: string;
  readonly freeBytes: number;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly chunkCount: number;
  readonly inflight: number;
  readonly added: string[];
  readonly removed: string[];
  readonly nodesVersion?: string;
  readonly replicated?: ReplicateResult[];
}

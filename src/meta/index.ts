/** The metadata state machine the masters replicate: namespace, manifests, nodes, sessions. */
export { DEFAULT_REPLICATION_FACTOR, MetaState } from './state.ts';
export type { Entry, DirEntry, FileEntry, NodeRecord, ClusterSettings, ListedEntry, SnapshotRecord, MetaStateOptions } from './state.ts';
export type { MetaCommand, MetaEnvelope, ApplyResult, NodeState } from './commands.ts';
export { NODE_STATES } from './commands.ts';
export { validateManifest, encodeManifest, manifestId, MAX_MANIFEST_CHUNKS } from './manifest.ts';
export type { Manifest } from './manifest.ts';
export { normalizePath, parentOf, baseName, joinPath, isWithin, ROOT, PATH_LIMITS } from './paths.ts';
export { MAX_CHUNK_IDS_PER_MESSAGE, MAX_PLACE_CHUNKS, META_MAX_FRAME_BYTES, META_PROTOCOL, STORED_ACKS_PER_REQUEST, metaRequestSchema, metaResponseSchema, parsePlacements, writeCommandSchema } from './protocol.ts';
export type { AclGrant, AclView, LocatedChunk, LoginResult, MetaRequest, MetaResponse, WriteCommand, MasterStatus, NodeView, Placement, StoredAck, UserView, WhoAmI } from './protocol.ts';

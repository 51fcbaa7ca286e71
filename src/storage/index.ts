/** Durable, verified chunk storage for a node: payload files plus a LevelDB index. */
export { ChunkStore } from './chunk-store.ts';
export type { ChunkStoreOptions, ChunkListing, ChunkStoreStats, PutResult, RecoveryReport } from './chunk-store.ts';
export type { ChunkRecord } from './index-record.ts';

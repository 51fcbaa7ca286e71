/** Durable, verified chunk storage for a node: payload files plus a LevelDB index. */
export { ChunkStore } from './chunk-store.ts';
export type {
  ChunkStoreOptions,
  ChunkListing,
  ChunkStoreStats,
  DeleteOutcome,
  PendingPut,
  PutResult,
  RecoveryReport,
  StoreDeleteOptions,
  StorePutOptions,
  VerifyOutcome,
} from './chunk-store.ts';
export { DEFAULT_FENCE_CAPACITY, DeleteFences, assertFence, isFence } from './delete-fences.ts';
export type { ChunkRecord } from './index-record.ts';

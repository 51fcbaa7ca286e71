/** A storage node: chunks on disk, served over /dfs/chunk/1.0.0, reported to the masters. */
export { startStorageNode } from './storage-node.ts';
export type { StorageNode, StorageNodeOptions } from './storage-node.ts';
export { ChunkService } from './chunk-service.ts';

/** A storage node: chunks on disk, served over /dfs/chunk/1.0.0, reported to the masters. */
export { startStorageNode } from './storage-node.ts';
export type { StorageNode, StorageNodeOptions } from './storage-node.ts';
export { ChunkService } from '../protocol/chunk-service.ts';
export type { ChunkServiceOptions, ClusterKeySource } from '../protocol/chunk-service.ts';
export { ClusterKey, decodeClusterKey } from './cluster-key.ts';
export { ControlLoop } from './control-loop.ts';
export type { ControlLoopOptions, CopyChunk, MasterLink } from './control-loop.ts';
export { heartbeatAnswerSchema } from './control-protocol.ts';
export type { HeartbeatAnswer, HeartbeatRequest, NodeListEntry, ReplicateCommand, ReplicateResult } from './control-protocol.ts';
export { NodeDirectory } from './node-directory.ts';
export { checkReceipts, RECEIPT_CONTEXT, receiptBytes, receiptSigner, signReceipt, verifyReceipt } from '../net/receipt.ts';
export type { Receipt, ReceiptSigner } from '../net/receipt.ts';
export { Scrubber } from './scrubber.ts';
export type { ScrubberOptions, ScrubPass } from './scrubber.ts';
